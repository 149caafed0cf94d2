/*
 * Image entry. skiboot enters by hrfid with MSR = SF|HV (big-endian, real mode, FP/VEC/VSX
 * off), %r3 = flattened device tree, %r8 = OPAL base, %r9 = OPAL entry.
 * Before any Rust runs: set the MSR (compiled core uses FP and VSX instructions), zero .bss,
 * set up the boot stack with a null back-chain, point %r2 at the TOC, then call
 * rust_entry(fdt, opal_base, opal_entry). Nothing here returns.
 */
    .section .text.entry, "ax"
    .globl  _start
    .type   _start, @function
_start:
    mr      %r14, %r3                 /* device tree */
    mr      %r15, %r8                 /* OPAL base */
    mr      %r16, %r9                 /* OPAL entry */

    LOAD64  %r10, 1f
    mtspr   314, %r10                /* HSRR0 */
    MSR_RUN %r11
    mtspr   315, %r11                /* HSRR1 */
    hrfid

1:  LOAD64  %r3, __bss_start
    LOAD64  %r4, __bss_end
    li      %r0, 0
2:  cmpld   %r3, %r4
    bge     3f
    std     %r0, 0(%r3)
    addi    %r3, %r3, 8
    b       2b

3:  LOAD64  %r1, __boot_stack_top
    li      %r0, 0
    stdu    %r0, -64(%r1)             /* null back-chain, room for the callee's LR save */
    LOAD64  %r2, .TOC.
    mr      %r3, %r14
    mr      %r4, %r15
    mr      %r5, %r16
    LOAD64  %r12, rust_entry
    mtctr   %r12
    bctrl
4:  b       4b
    .size   _start, . - _start

/*
 * u64 opal_call(u64 token, u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5)
 * OPAL ABI: token in %r0, arguments in %r3.., %r2 = OPAL base, big-endian real mode.
 * OPAL clobbers %r2 and may use %r13: both are saved here (Rust's asm! cannot name them).
 */
    .text
    .globl  opal_call
    .type   opal_call, @function
opal_call:
    mflr    %r0
    std     %r0, 16(%r1)
    stdu    %r1, -112(%r1)
    std     %r2, 32(%r1)
    std     %r13, 40(%r1)
    mr      %r0, %r3
    mr      %r3, %r4
    mr      %r4, %r5
    mr      %r5, %r6
    mr      %r6, %r7
    mr      %r7, %r8
    mr      %r8, %r9
    LOAD64  %r11, pefbox_opal_base
    ld      %r2, 0(%r11)
    LOAD64  %r11, pefbox_opal_entry
    ld      %r12, 0(%r11)
    mtctr   %r12
    bctrl
    ld      %r2, 32(%r1)
    ld      %r13, 40(%r1)
    addi    %r1, %r1, 112
    ld      %r0, 16(%r1)
    mtlr    %r0
    blr
    .size   opal_call, . - opal_call
