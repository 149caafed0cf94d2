/*
 * u64 pefbox_sc_regtest(u64 nr, u64 regs[10]): the register-preservation probe behind the
 * `hcall-regs` self-test. Fills every register a hypercall must give back unchanged with a
 * distinct pattern (%r0, %r2, %r13-%r31, CR, CTR, LR, XER, all 64 VSRs = FPRs + VRs), puts a canary
 * on its stack frame, issues `sc 1` with %r3 = regs[0] and %r4..%r12 = regs[1..9], stores %r3..%r12
 * into regs[0..9], then checks everything and returns a mask of what changed:
 * 0x1 %r0, 0x2 %r2, 0x4 %r13, 0x8 %r14-%r31, 0x10 CR, 0x20 CTR, 0x40 XER, 0x80 LR,
 * 0x100 a VSR, 0x200 the stack canary. (%r1 itself: a wrong %r1 would fail the canary or crash.)
 */
    .set    RT_FRAME, 1408
    .set    RT_VSR, 352
    .set    RT_RES, 256
    .set    RT_CANARY, 224

/* A distinct 64-bit pattern for index n (no record forms: CR is left alone). */
.macro PAT reg, n
    lis     \reg, (0x2500 + (\n))
    ori     \reg, \reg, (0x1100 + (\n))
    sldi    \reg, \reg, 32
    oris    \reg, \reg, (0x5A00 + (\n))
    ori     \reg, \reg, (0x3300 + (\n))
.endm

/* r12 |= bit when \a != \e. */
.macro CHK a, e, bit
    cmpd    \a, \e
    beq     9f
    ori     %r12, %r12, \bit
9:
.endm

/* r12 |= bit unless \a holds pattern \n (PAT); clobbers %r7. */
.macro EXPECT a, n, bit
    PAT     %r7, \n
    CHK     \a, %r7, \bit
.endm

    .text
    .globl  pefbox_sc_regtest
    .type   pefbox_sc_regtest, @function
pefbox_sc_regtest:
    mflr    %r0
    std     %r0, 16(%r1)
    stdu    %r1, -RT_FRAME(%r1)
    std     %r4, 48(%r1)
    std     %r2, 56(%r1)
    std     %r13, 64(%r1)
    std     %r14, 72(%r1)
    std     %r15, 80(%r1)
    std     %r16, 88(%r1)
    std     %r17, 96(%r1)
    std     %r18, 104(%r1)
    std     %r19, 112(%r1)
    std     %r20, 120(%r1)
    std     %r21, 128(%r1)
    std     %r22, 136(%r1)
    std     %r23, 144(%r1)
    std     %r24, 152(%r1)
    std     %r25, 160(%r1)
    std     %r26, 168(%r1)
    std     %r27, 176(%r1)
    std     %r28, 184(%r1)
    std     %r29, 192(%r1)
    std     %r30, 200(%r1)
    std     %r31, 208(%r1)
    mfcr    %r0
    std     %r0, 216(%r1)
    .irp    n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63
    stxv    \n, (RT_VSR + 16 * \n)(%r1)
    .endr
    .irp    n, 0,1,2,3
    PAT     %r5, (100 + \n)
    std     %r5, (RT_CANARY + 8 * \n)(%r1)
    .endr
    .irp    n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63
    PAT     %r5, \n
    PAT     %r6, (\n + 64)
    mtvsrdd \n, %r5, %r6
    .endr
    PAT     %r5, 200
    mtlr    %r5
    PAT     %r5, 201
    mtctr   %r5
    lis     %r5, 0x2004
    ori     %r5, %r5, 0x15
    mtxer   %r5
    lis     %r5, 0x1234
    ori     %r5, %r5, 0x5678
    mtcrf   0xff, %r5
    ld      %r12, 48(%r1)
    ld      %r3, 0(%r12)
    ld      %r4, 8(%r12)
    ld      %r5, 16(%r12)
    ld      %r6, 24(%r12)
    ld      %r7, 32(%r12)
    ld      %r8, 40(%r12)
    ld      %r9, 48(%r12)
    ld      %r10, 56(%r12)
    ld      %r11, 64(%r12)
    ld      %r12, 72(%r12)
    PAT     %r0, 0
    PAT     %r2, 2
    PAT     %r13, 13
    .irp    n, 14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    PAT     %r\n, \n
    .endr

    sc      1

    .irp    n, 3,4,5,6,7,8,9,10,11,12
    std     %r\n, (RT_RES + 8 * (\n - 3))(%r1)
    .endr
    mfcr    %r3
    mfctr   %r4
    mflr    %r5
    mfxer   %r6
    li      %r12, 0
    lis     %r7, 0x1234
    ori     %r7, %r7, 0x5678
    CHK     %r3, %r7, 0x10
    EXPECT  %r4, 201, 0x20
    EXPECT  %r5, 200, 0x80
    lis     %r7, 0x2004
    ori     %r7, %r7, 0x15
    and     %r6, %r6, %r7
    CHK     %r6, %r7, 0x40
    EXPECT  %r0, 0, 0x1
    EXPECT  %r2, 2, 0x2
    EXPECT  %r13, 13, 0x4
    .irp    n, 14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    EXPECT  %r\n, \n, 0x8
    .endr
    .irp    n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63
    mfvsrd  %r8, \n
    mfvsrld %r9, \n
    EXPECT  %r8, \n, 0x100
    EXPECT  %r9, (\n + 64), 0x100
    .endr
    .irp    n, 0,1,2,3
    ld      %r8, (RT_CANARY + 8 * \n)(%r1)
    PAT     %r7, (100 + \n)
    CHK     %r8, %r7, 0x200
    .endr
    ld      %r7, 48(%r1)
    .irp    n, 0,1,2,3,4,5,6,7,8,9
    ld      %r8, (RT_RES + 8 * \n)(%r1)
    std     %r8, (8 * \n)(%r7)
    .endr
    mr      %r3, %r12
    ld      %r2, 56(%r1)
    ld      %r13, 64(%r1)
    ld      %r14, 72(%r1)
    ld      %r15, 80(%r1)
    ld      %r16, 88(%r1)
    ld      %r17, 96(%r1)
    ld      %r18, 104(%r1)
    ld      %r19, 112(%r1)
    ld      %r20, 120(%r1)
    ld      %r21, 128(%r1)
    ld      %r22, 136(%r1)
    ld      %r23, 144(%r1)
    ld      %r24, 152(%r1)
    ld      %r25, 160(%r1)
    ld      %r26, 168(%r1)
    ld      %r27, 176(%r1)
    ld      %r28, 184(%r1)
    ld      %r29, 192(%r1)
    ld      %r30, 200(%r1)
    ld      %r31, 208(%r1)
    ld      %r0, 216(%r1)
    mtcrf   0xff, %r0
    .irp    n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63
    lxv     \n, (RT_VSR + 16 * \n)(%r1)
    .endr
    addi    %r1, %r1, RT_FRAME
    ld      %r0, 16(%r1)
    mtlr    %r0
    blr
    .size   pefbox_sc_regtest, . - pefbox_sc_regtest

/*
 * void pefbox_scribble_volatile(void): overwrites every register the ELFv2 ABI lets a call
 * clobber (%r0, %r3-%r12, CTR, XER, CR0/1/5-7, VSR0-13, the low halves of VSR14-31, VSR32-51
 * = %v0-v19). The self-test hcall runs it inside the handler so that `hcall-regs` proves the
 * entry code, not luck, restores the caller's state.
 */
    .globl  pefbox_scribble_volatile
    .type   pefbox_scribble_volatile, @function
pefbox_scribble_volatile:
    li      %r0, -1
    mtctr   %r0
    lis     %r5, 0x6004
    mtxer   %r5
    mtcrf   0xc7, %r0
    .irp    n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13
    xxlnor  \n, \n, \n
    .endr
    .irp    n, 32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51
    xxlnor  \n, \n, \n
    .endr
    li      %r3, -1
    li      %r4, -1
    li      %r6, -1
    li      %r9, -1
    li      %r10, -1
    li      %r11, -1
    li      %r12, -1
    blr
    .size   pefbox_scribble_volatile, . - pefbox_scribble_volatile
