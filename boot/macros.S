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
