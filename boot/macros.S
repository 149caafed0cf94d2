/* Shared assembler macros. Included by the other boot/*.S files (see src/arch/mod.rs). */

/* Load a 64-bit absolute address (or constant) into \reg. */
.macro LOAD64 reg, sym
    lis     \reg, (\sym)@highest
    ori     \reg, \reg, (\sym)@higher
    rldicr  \reg, \reg, 32, 31
    oris    \reg, \reg, (\sym)@h
    ori     \reg, \reg, (\sym)@l
.endm

/* MSR bits we run with: SF | HV | VEC | VSX | FP | ME | RI (big-endian, real mode, EE off). */
.macro MSR_RUN reg
    lis     \reg, 0x9000
    sldi    \reg, \reg, 32
    oris    \reg, \reg, 0x0280      /* VEC (bit 38 = 1<<25), VSX (1<<23) */
    ori     \reg, \reg, 0x3002      /* FP (1<<13), ME (1<<12), RI (1<<1) */
.endm

/* Turn FP, VEC and VSX back on in the current MSR (interrupts clear them). */
.macro ENABLE_FP_VEC scratch
    mfmsr   \scratch
    oris    \scratch, \scratch, 0x0280
    ori     \scratch, \scratch, 0x2000
    mtmsrd  \scratch
    isync
.endm

/* VSR0..VSR63 moved with \op (stxv or lxv) to or from \base + \vsr + 16 * n. */
.macro VSRS op, base, vsr
    .irp    n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    \op     \n, (\vsr + 16 * \n)(\base)
    .endr
    .irp    n, 32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63
    \op     \n, (\vsr + 16 * \n)(\base)
    .endr
.endm

/* CR, LR, XER and CTR loaded from a register frame at \base (offsets \cr, \lr, \xer,
 * \ctr); clobbers %r0. */
.macro LOAD_CR_LR_XER_CTR base, cr, lr, xer, ctr
    ld      %r0, \cr(\base)
    mtcrf   0xff, %r0
    ld      %r0, \lr(\base)
    mtlr    %r0
    ld      %r0, \xer(\base)
    mtxer   %r0
    ld      %r0, \ctr(\base)
    mtctr   %r0
.endm

/* The floating-point and vector state of a register frame (arch::frame::HcallFrame): all
 * 64 VSRs (which hold the FPRs and VRs), FPSCR, VSCR and VRSAVE, at offsets \vsr, \fpscr,
 * \vscr, \vrsave from \base. Stored after the VSRs, so %f0/%v0 may then be used; \scratch
 * is clobbered. FP/VEC/VSX must be on. */
.macro STORE_VECTOR_STATE base, vsr, fpscr, vscr, vrsave, scratch
    VSRS    stxv, \base, \vsr
    mffs    %f0
    stfd    %f0, \fpscr(\base)
    mfvscr  %v0
    addi    \scratch, \base, \vscr
    stvx    %v0, 0, \scratch
    mfspr   \scratch, 256
    std     \scratch, \vrsave(\base)
.endm

/* The reverse of STORE_VECTOR_STATE: VRSAVE, VSCR and FPSCR first (through %v0/%f0), then
 * every VSR. */
.macro LOAD_VECTOR_STATE base, vsr, fpscr, vscr, vrsave, scratch
    ld      \scratch, \vrsave(\base)
    mtspr   256, \scratch
    addi    \scratch, \base, \vscr
    lvx     %v0, 0, \scratch
    mtvscr  %v0
    lfd     %f0, \fpscr(\base)
    mtfsf   0xff, %f0
    VSRS    lxv, \base, \vsr
.endm
