/*
 * Entering a guest partition and coming back (src/arch/partition.rs).
 *
 * pefbox_partition_run(run, lpid): the ultravisor (hypervisor state, LPID 0, real mode)
 * saves what the ELFv2 ABI says a callee preserves (r1, r2, r14-r31, f14-f31, v20-v31, CR,
 * LR), and r13, on its own stack, publishes `run` in pefbox_run_block, sets LPIDR, loads the guest's
 * complete register state from run->frame (an arch::frame::HcallFrame: GPRs, CR, LR, XER,
 * CTR, FPSCR, VSCR, VRSAVE, all 64 VSRs, and SRR0/SRR1 as the guest's PC and MSR) and
 * `hrfid`s into the partition. Every VSR is loaded from the frame, so nothing the
 * ultravisor left in a register is visible to the guest.
 *
 * pefbox_guest_exit: reached from the vector trampolines (boot/vectors.S) when an interrupt
 * was taken from a guest (the interrupted MSR has HV clear), with %r12 = vector and the
 * guest's %r12, %r11, CTR, CR parked in SPRG0..SPRG3. It stores every guest register in
 * run->frame, the interrupt registers in run->exit, restores the ultravisor's saved state
 * and returns the vector from pefbox_partition_run.
 *
 * LPIDR keeps the LPID last run: in hypervisor state it changes no translation (the
 * ultravisor runs in real mode), and writing it costs a whole TLB flush under QEMU (its TCG
 * TLB tags only HV against guest), so it is written only when a different partition runs.
 * The hypervisor partition, run for every hcall, then costs no flush at all.
 *
 * Run block (arch::partition::RunBlock, repr(C)): 0 frame pointer, 8 host stack pointer,
 * 16.. exit: vector, SRR0, SRR1, HSRR0, HSRR1, HDAR, HDSISR, ASDR, HEIR.
 */
    .set    RB_FRAME, 0
    .set    RB_HOST_SP, 8
    .set    RB_VECTOR, 16
    .set    RB_SRR0, 24
    .set    RB_SRR1, 32
    .set    RB_HSRR0, 40
    .set    RB_HSRR1, 48
    .set    RB_HDAR, 56
    .set    RB_HDSISR, 64
    .set    RB_ASDR, 72
    .set    RB_HEIR, 80

    /* Frame-relative offsets of the HcallFrame fields (HF_* are relative to the hcall
     * entry's stack pointer, HF_BASE bytes below the frame). */
    .set    GF_GPR, HF_GPR - HF_BASE
    .set    GF_CR, HF_CR - HF_BASE
    .set    GF_LR, HF_LR - HF_BASE
    .set    GF_XER, HF_XER - HF_BASE
    .set    GF_CTR, HF_CTR - HF_BASE
    .set    GF_SRR0, HF_SRR0 - HF_BASE
    .set    GF_SRR1, HF_SRR1 - HF_BASE
    .set    GF_FPSCR, HF_FPSCR - HF_BASE
    .set    GF_VRSAVE, HF_VRSAVE - HF_BASE
    .set    GF_VSCR, HF_VSCR - HF_BASE
    .set    GF_VSR, HF_VSR - HF_BASE

    /* The host save area on the ultravisor's stack: ELFv2 header (32), r13-r31 (152),
     * f14-f31 (144), 8 of padding, v20-v31 (192). */
    .set    HS_GPR, 32
    .set    HS_FPR, HS_GPR + 19 * 8
    .set    HS_VR, HS_FPR + 18 * 8 + 8
    .set    HS_SIZE, HS_VR + 12 * 16

/* The ultravisor's callee-saved state in the host save area at %r1, moved with \gpr
 * (std/ld), \fpr (stfd/lfd) and \vr (stvx/lvx): r2 (TOC slot), r13-r31, f14-f31,
 * v20-v31. Clobbers %r0. */
.macro HOST_STATE gpr, fpr, vr
    \gpr    %r2, 24(%r1)
    .irp    n, 13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    \gpr    \n, (HS_GPR + 8 * (\n - 13))(%r1)
    .endr
    .irp    n, 14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    \fpr    \n, (HS_FPR + 8 * (\n - 14))(%r1)
    .endr
    .irp    n, 20,21,22,23,24,25,26,27,28,29,30,31
    li      %r0, HS_VR + 16 * (\n - 20)
    \vr     \n, %r1, %r0
    .endr
.endm

    .section .bss
    .balign 8
    .globl  pefbox_run_block
pefbox_run_block:
    .quad   0

    .text
    .globl  pefbox_partition_run
pefbox_partition_run:
    mflr    %r0
    std     %r0, 16(%r1)
    mfcr    %r0
    stw     %r0, 8(%r1)
    stdu    %r1, -HS_SIZE(%r1)
    HOST_STATE std, stfd, stvx

    LOAD64  %r5, pefbox_run_block
    std     %r3, 0(%r5)
    std     %r1, RB_HOST_SP(%r3)
    mfspr   %r0, 319                 /* LPIDR: written only when it changes (see above) */
    cmpd    %r0, %r4
    beq     1f
    mtspr   319, %r4
    isync
1:

    ld      %r6, RB_FRAME(%r3)
    ld      %r0, GF_SRR0(%r6)
    mtspr   314, %r0                 /* HSRR0: the guest's PC */
    ld      %r0, GF_SRR1(%r6)
    mtspr   315, %r0                 /* HSRR1: the guest's MSR (HV clear, checked by the caller) */
    LOAD_CR_LR_XER_CTR %r6, GF_CR, GF_LR, GF_XER, GF_CTR
    LOAD_VECTOR_STATE %r6, GF_VSR, GF_FPSCR, GF_VSCR, GF_VRSAVE, %r7
    .irp    n, 0,1,2,3,4,5,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    ld      \n, (GF_GPR + 8 * \n)(%r6)
    .endr
    ld      %r6, (GF_GPR + 8 * 6)(%r6)
    hrfid

    .globl  pefbox_guest_exit
pefbox_guest_exit:
    LOAD64  %r11, pefbox_run_block
    ld      %r11, 0(%r11)
    std     %r12, RB_VECTOR(%r11)
    ld      %r11, RB_FRAME(%r11)
    .irp    n, 0,1,2,3,4,5,6,7,8,9,10,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    std     \n, (GF_GPR + 8 * \n)(%r11)
    .endr
    mfspr   %r0, 272                 /* SPRG0: the guest's r12 */
    std     %r0, (GF_GPR + 8 * 12)(%r11)
    mfspr   %r0, 273                 /* SPRG1: the guest's r11 */
    std     %r0, (GF_GPR + 8 * 11)(%r11)
    mfspr   %r0, 274                 /* SPRG2: the guest's CTR */
    std     %r0, GF_CTR(%r11)
    mfspr   %r0, 275                 /* SPRG3: the guest's CR */
    std     %r0, GF_CR(%r11)
    mflr    %r0
    std     %r0, GF_LR(%r11)
    mfxer   %r0
    std     %r0, GF_XER(%r11)

    LOAD64  %r12, pefbox_run_block
    ld      %r12, 0(%r12)
    mfspr   %r0, 26
    std     %r0, RB_SRR0(%r12)
    mfspr   %r0, 27
    std     %r0, RB_SRR1(%r12)
    mfspr   %r0, 314
    std     %r0, RB_HSRR0(%r12)
    mfspr   %r0, 315
    std     %r0, RB_HSRR1(%r12)
    mfspr   %r0, 307                 /* HDAR */
    std     %r0, RB_HDAR(%r12)
    mfspr   %r0, 306                 /* HDSISR */
    std     %r0, RB_HDSISR(%r12)
    mfspr   %r0, 816                 /* ASDR: the guest real address of a partition-scoped fault */
    std     %r0, RB_ASDR(%r12)
    mfspr   %r0, 339                 /* HEIR: the instruction an emulation assist trapped */
    std     %r0, RB_HEIR(%r12)

    /* FP, VEC and VSX on (the interrupt cleared them), RI back on; then the guest's
     * floating-point and vector state goes to the frame. */
    mfmsr   %r0
    oris    %r0, %r0, 0x0280
    ori     %r0, %r0, 0x2002
    mtmsrd  %r0
    isync
    STORE_VECTOR_STATE %r11, GF_VSR, GF_FPSCR, GF_VSCR, GF_VRSAVE, %r10

    ld      %r3, RB_VECTOR(%r12)
    ld      %r1, RB_HOST_SP(%r12)
    HOST_STATE ld, lfd, lvx
    addi    %r1, %r1, HS_SIZE
    ld      %r0, 16(%r1)
    mtlr    %r0
    lwz     %r0, 8(%r1)
    mtcrf   0xff, %r0
    blr

/*
 * The hypervisor partition's hcall vector (src/target/hvp.rs). The ultravisor enters the
 * partition here (MSR[HV] clear, real mode, LPID target::hvp::HV_LPID) with the reflected
 * call's r3..r12 and, in r14, the caller (target::hvp::HvCall::caller). On the partition's
 * own stack it builds an HvCall (caller, r3..r12), calls pefbox_hv_service(&call), and gives
 * the answer back with the UV_RETURN ultracall: r3 = UV_RETURN (0xF11C), r4 = status,
 * r5..r13 = the outputs r4..r12. The ultravisor never resumes it after that: the next call
 * enters here again.
 */
    .set    HVC_SIZE, 32 + 11 * 8 + 8    /* ELFv2 header, the HvCall, padding to 16 */
    .globl  pefbox_hv_vector
pefbox_hv_vector:
    LOAD64  %r1, __hvp_stack_top
    LOAD64  %r2, .TOC.
    li      %r0, 0
    stdu    %r0, -HVC_SIZE(%r1)
    std     %r14, 32(%r1)
    .irp    n, 3,4,5,6,7,8,9,10,11,12
    std     \n, (40 + 8 * (\n - 3))(%r1)
    .endr
    addi    %r3, %r1, 32
    LOAD64  %r12, pefbox_hv_service
    mtctr   %r12
    bctrl
    .irp    n, 4,5,6,7,8,9,10,11,12,13
    ld      \n, (40 + 8 * (\n - 4))(%r1)
    .endr
    li      %r3, 0
    ori     %r3, %r3, 0xF11C             /* papr::UV_RETURN */
    sc      1
1:  b       1b
