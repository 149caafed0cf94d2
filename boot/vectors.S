/*
 * Exception vectors and the two-stage trap entry.
 *
 * Stage 1 (.vectors, copied to real address 0 by src/arch/vectors.rs): a stub in every
 * 0x20-byte slot from 0x100 to 0x17e0. Each saves %r12 in SPRG0 and branches (absolute,
 * `ba`, since code at 0x2000_0000 is out of branch range) to a trampoline at 0x1800 (any
 * unexpected vector, %r12 = vector number) or 0x1880 (`sc`, vector 0xC00). The trampolines
 * save %r11 in SPRG1 and CTR in SPRG2, then `bctr` to the stage-2 entries in .text.
 * Scratch SPRs: SPRG0 = %r12, SPRG1 = %r11, SPRG2 = CTR, SPRG3 = caller's %r1 (or, for an
 * interrupt taken from a guest partition, its CR: see boot/partition.S). skiboot's own
 * entry code uses HSPRG0/1, which we leave alone.
 */
    .set    TRAMP_EXC, 0x1800
    .set    TRAMP_HCALL, 0x1880

    .section .vectors, "ax"
    .set    vec, 0x100
    .rept   (TRAMP_EXC - 0x100) / 0x20
    .org    vec
    .if     vec == 0xC00
    mtspr   272, %r12
    ba      TRAMP_HCALL
    .else
    mtspr   272, %r12
    li      %r12, vec
    ba      TRAMP_EXC
    .endif
    .set    vec, vec + 0x20
    .endr

    .org    TRAMP_EXC
    mtspr   273, %r11
    mfctr   %r11
    mtspr   274, %r11
    LOAD64  %r11, pefbox_exc_entry
    mtctr   %r11
    bctr

    .org    TRAMP_HCALL
    mtspr   273, %r11
    mfctr   %r11
    mtspr   274, %r11
    mfcr    %r11
    mtspr   275, %r11                /* CR, for a guest's exit (SPRG3) */
    mfspr   %r11, 27                 /* SRR1: the caller's MSR */
    rldicl. %r11, %r11, 4, 63        /* its HV bit */
    beq     1f
    mfspr   %r11, 275
    mtcrf   0xff, %r11
    LOAD64  %r11, pefbox_hcall_entry
    mtctr   %r11
    bctr
1:  li      %r12, 0xC00              /* `sc 1` in a guest partition: back to the ultravisor */
    LOAD64  %r11, pefbox_guest_exit
    mtctr   %r11
    bctr

/*
 * Stage 2, unexpected interrupt: %r12 = vector. Switches to the exception stack (the
 * interrupted state is not resumed), re-enables FP/VEC/VSX and calls
 * pefbox_unexpected_exception(vector, srr0, srr1, hsrr0, hsrr1, dar, dsisr, hdar),
 * which reports and powers off.
 */
    .text
    .globl  pefbox_exc_entry
pefbox_exc_entry:
    /* Taken from a guest partition? The interrupted MSR is in HSRR1 for the hypervisor
     * interrupts (0x500 with LPES clear, 0x980, 0xE00-0xEA0), in SRR1 for the others. A
     * guest's goes back to the ultravisor (boot/partition.S); CR is parked in SPRG3. */
    mfcr    %r11
    mtspr   275, %r11
    cmpdi   %r12, 0x500
    beq     2f
    cmpdi   %r12, 0x980
    beq     2f
    cmpdi   %r12, 0xE00
    blt     1f
    cmpdi   %r12, 0xEA0
    bgt     1f
2:  mfspr   %r11, 315
    b       3f
1:  mfspr   %r11, 27
3:  rldicl. %r11, %r11, 4, 63
    bne     4f
    LOAD64  %r11, pefbox_guest_exit
    mtctr   %r11
    bctr
4:
    LOAD64  %r1, __exc_stack_top
    li      %r0, 0
    stdu    %r0, -128(%r1)
    ENABLE_FP_VEC %r11
    LOAD64  %r2, .TOC.
    mr      %r3, %r12
    mfspr   %r4, 26          /* SRR0 */
    mfspr   %r5, 27          /* SRR1 */
    mfspr   %r6, 314         /* HSRR0 */
    mfspr   %r7, 315         /* HSRR1 */
    mfspr   %r8, 19          /* DAR */
    mfspr   %r9, 18          /* DSISR */
    mfspr   %r10, 307        /* HDAR */
    LOAD64  %r12, pefbox_unexpected_exception
    mtctr   %r12
    bctrl
1:  b       1b

/*
 * Stage 2, hypercall (`sc 1`, taken at 0xC00 with SRR0/SRR1). The caller's complete state is
 * saved in a frame on the hypervisor's own stack (the caller's %r1 is not trusted or used):
 * %r0-%r31, CR, LR, XER, CTR, SRR0/1, all 64 VSRs (which include the FPRs and VRs), FPSCR,
 * VSCR, VRSAVE. Then pefbox_hcall_dispatch(frame) runs; it sets the frame's %r3 to the status
 * and %r4-%r12 to the outputs; everything is restored from the frame, and rfid resumes the
 * caller with its own MSR (FP/VEC/VSX state included).
 *
 * The frame is `arch::frame::HcallFrame` at %r1 + HF_GPR; the HF_* offsets are generated from
 * that struct (`.set` lines ahead of this file, see src/arch/mod.rs), not written here.
 */

    .globl  pefbox_hcall_entry
pefbox_hcall_entry:
    mtspr   275, %r1
    LOAD64  %r1, __hv_stack_top
    addi    %r1, %r1, -HF_SIZE
    std     %r0, (HF_GPR + 8 * 0)(%r1)
    mfspr   %r0, 275
    std     %r0, (HF_GPR + 8 * 1)(%r1)
    std     %r2, (HF_GPR + 8 * 2)(%r1)
    std     %r3, (HF_GPR + 8 * 3)(%r1)
    std     %r4, (HF_GPR + 8 * 4)(%r1)
    std     %r5, (HF_GPR + 8 * 5)(%r1)
    std     %r6, (HF_GPR + 8 * 6)(%r1)
    std     %r7, (HF_GPR + 8 * 7)(%r1)
    std     %r8, (HF_GPR + 8 * 8)(%r1)
    std     %r9, (HF_GPR + 8 * 9)(%r1)
    std     %r10, (HF_GPR + 8 * 10)(%r1)
    mfspr   %r0, 273
    std     %r0, (HF_GPR + 8 * 11)(%r1)
    mfspr   %r0, 272
    std     %r0, (HF_GPR + 8 * 12)(%r1)
    .irp    n, 13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    std     \n, (HF_GPR + 8 * \n)(%r1)
    .endr
    mfcr    %r0
    std     %r0, HF_CR(%r1)
    mfspr   %r0, 274                 /* CTR, parked by the trampoline */
    std     %r0, HF_CTR(%r1)
    mflr    %r0
    std     %r0, HF_LR(%r1)
    mfxer   %r0
    std     %r0, HF_XER(%r1)
    mfspr   %r0, 26
    std     %r0, HF_SRR0(%r1)
    mfspr   %r0, 27
    std     %r0, HF_SRR1(%r1)
    ENABLE_FP_VEC %r0
    STORE_VECTOR_STATE %r1, HF_VSR, HF_FPSCR, HF_VSCR, HF_VRSAVE, %r11
    li      %r0, 0
    std     %r0, 0(%r1)
    LOAD64  %r2, .TOC.
    addi    %r3, %r1, HF_GPR
    LOAD64  %r12, pefbox_hcall_dispatch
    mtctr   %r12
    bctrl

    LOAD_VECTOR_STATE %r1, HF_VSR, HF_FPSCR, HF_VSCR, HF_VRSAVE, %r11
    LOAD_CR_LR_XER_CTR %r1, HF_CR, HF_LR, HF_XER, HF_CTR
    ld      %r0, HF_SRR0(%r1)
    mtspr   26, %r0
    ld      %r0, HF_SRR1(%r1)
    mtspr   27, %r0
    ld      %r0, (HF_GPR + 8 * 0)(%r1)
    .irp    n, 2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    ld      \n, (HF_GPR + 8 * \n)(%r1)
    .endr
    ld      %r1, (HF_GPR + 8 * 1)(%r1)
    rfid
