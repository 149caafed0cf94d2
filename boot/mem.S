/*
 * memcpy, memmove, memset, memcmp, bcmp: the prebuilt `core` of the linux targets does not
 * export them, and writing them in Rust invites the compiler to turn the loop back into a
 * call to itself. Plain byte loops: the image copies kilobytes, not megabytes.
 */
    .text
    .globl  memcpy
    .type   memcpy, @function
memcpy:
    mr      %r6, %r3
    cmpdi   %r5, 0
    beqlr
    mtctr   %r5
    addi    %r4, %r4, -1
    addi    %r6, %r6, -1
1:  lbzu    %r7, 1(%r4)
    stbu    %r7, 1(%r6)
    bdnz    1b
    blr
    .size   memcpy, . - memcpy

    .globl  memmove
    .type   memmove, @function
memmove:
    cmpld   %r3, %r4
    ble     memcpy
    cmpdi   %r5, 0
    beqlr
    add     %r6, %r3, %r5
    add     %r4, %r4, %r5
    mtctr   %r5
1:  lbzu    %r7, -1(%r4)
    stbu    %r7, -1(%r6)
    bdnz    1b
    blr
    .size   memmove, . - memmove

    .globl  memset
    .type   memset, @function
memset:
    mr      %r6, %r3
    cmpdi   %r5, 0
    beqlr
    mtctr   %r5
    addi    %r6, %r6, -1
1:  stbu    %r4, 1(%r6)
    bdnz    1b
    blr
    .size   memset, . - memset

    .globl  memcmp
    .type   memcmp, @function
    .globl  bcmp
    .type   bcmp, @function
memcmp:
bcmp:
    cmpdi   %r5, 0
    beq     2f
    mtctr   %r5
    addi    %r3, %r3, -1
    addi    %r4, %r4, -1
1:  lbzu    %r6, 1(%r3)
    lbzu    %r7, 1(%r4)
    subf.   %r8, %r7, %r6
    bne     3f
    bdnz    1b
2:  li      %r3, 0
    blr
3:  mr      %r3, %r8
    blr
    .size   memcmp, . - memcmp
