//! The hcall save frame: the caller's complete register state as `pefbox_hcall_entry`
//! (boot/vectors.S) stores it on the hypervisor's stack before it calls the dispatcher.
//!
//! One source of truth: the assembly's `HF_*` offsets are generated from this struct
//! (`const` operands of the `global_asm!` in `arch/mod.rs`), and the asserts below pin the
//! layout itself, so neither side can drift from the other or from what the instructions
//! that touch the frame require.

use core::mem::{offset_of, size_of};

use crate::papr::{to_regs, HcallResult};

/// The caller's registers at `sc 1`, as saved by the entry and restored before `rfid`.
///
/// It sits at [`HCALL_FRAME_BASE`] above the entry's stack pointer: the bytes below it are
/// the ELFv2 stack header (back chain, CR, LR and TOC save slots) that the called dispatcher
/// may write, so they stay outside the struct.
#[repr(C, align(16))]
pub struct HcallFrame {
    /// r0..r31 (r1 is the caller's own stack pointer, r3 the hcall number then the status,
    /// r4..r12 the arguments then the outputs).
    pub gpr: [u64; 32],
    /// CR.
    pub cr: u64,
    /// LR.
    pub lr: u64,
    /// XER.
    pub xer: u64,
    /// CTR (the vector trampoline parks it in SPRG2).
    pub ctr: u64,
    /// SRR0: where `rfid` resumes the caller.
    pub srr0: u64,
    /// SRR1: the caller's MSR.
    pub srr1: u64,
    /// FPSCR (stored with `stfd` from `mffs`).
    pub fpscr: u64,
    /// VRSAVE (SPR 256).
    pub vrsave: u64,
    _pad: [u64; 2],
    /// VSCR, in a whole quadword (`stvx`/`lvx` of v0).
    pub vscr: [u8; 16],
    /// VSR0..VSR63 (they include the FPRs and the VRs).
    pub vsr: [[u8; 16]; 64],
    _reserved: [u8; 16],
}

impl HcallFrame {
    /// Every register zero (a guest partition's state before it first runs).
    pub const fn zeroed() -> Self {
        HcallFrame {
            gpr: [0; 32],
            cr: 0,
            lr: 0,
            xer: 0,
            ctr: 0,
            srr0: 0,
            srr1: 0,
            fpscr: 0,
            vrsave: 0,
            _pad: [0; 2],
            vscr: [0; 16],
            vsr: [[0; 16]; 64],
            _reserved: [0; 16],
        }
    }
}

/// Where the frame starts above the entry's stack pointer. The ELFv2 header needs 32 bytes;
/// the entry has always reserved 48 (the ELFv1 header's size), kept so the layout is
/// unchanged.
pub const HCALL_FRAME_BASE: usize = 48;
/// How far the entry lowers the stack pointer: header and frame.
pub const HCALL_STACK_SIZE: usize = HCALL_FRAME_BASE + size_of::<HcallFrame>();

// The layout the entry assembly was written against (its `.set HF_*` values before they were
// generated from this struct): changing the struct must be a deliberate change here too.
const _: () = assert!(HCALL_FRAME_BASE + offset_of!(HcallFrame, gpr) == 48);
const _: () = assert!(HCALL_FRAME_BASE + offset_of!(HcallFrame, cr) == 304);
const _: () = assert!(HCALL_FRAME_BASE + offset_of!(HcallFrame, lr) == 312);
const _: () = assert!(HCALL_FRAME_BASE + offset_of!(HcallFrame, xer) == 320);
const _: () = assert!(HCALL_FRAME_BASE + offset_of!(HcallFrame, ctr) == 328);
const _: () = assert!(HCALL_FRAME_BASE + offset_of!(HcallFrame, srr0) == 336);
const _: () = assert!(HCALL_FRAME_BASE + offset_of!(HcallFrame, srr1) == 344);
const _: () = assert!(HCALL_FRAME_BASE + offset_of!(HcallFrame, fpscr) == 352);
const _: () = assert!(HCALL_FRAME_BASE + offset_of!(HcallFrame, vrsave) == 360);
const _: () = assert!(HCALL_FRAME_BASE + offset_of!(HcallFrame, vscr) == 384);
const _: () = assert!(HCALL_FRAME_BASE + offset_of!(HcallFrame, vsr) == 400);
const _: () = assert!(HCALL_STACK_SIZE == 1440);
// What the instructions need: the stack pointer stays 16-byte aligned (ELFv2), `stvx`/`lvx`
// ignore the low 4 address bits so VSCR's quadword must be aligned, and every `std`/`ld`
// displacement is a multiple of 4 (DS form) that fits 16 signed bits.
const _: () = assert!(HCALL_STACK_SIZE.is_multiple_of(16));
const _: () = assert!(HCALL_FRAME_BASE.is_multiple_of(16));
const _: () = assert!((HCALL_FRAME_BASE + offset_of!(HcallFrame, vscr)).is_multiple_of(16));
const _: () = assert!((HCALL_FRAME_BASE + offset_of!(HcallFrame, vsr)).is_multiple_of(16));
const _: () = assert!(HCALL_STACK_SIZE < 0x8000);

impl HcallFrame {
    /// r3: the hcall number.
    pub fn nr(&self) -> u64 {
        self.gpr[3]
    }

    /// r4..r12: the arguments.
    pub fn args(&self) -> [u64; 9] {
        let g = &self.gpr;
        [g[4], g[5], g[6], g[7], g[8], g[9], g[10], g[11], g[12]]
    }

    /// Sets r3..r12 to the registers of `r` ([`to_regs`]: on failure r4..r12 are zero); the
    /// entry restores every other register as it was.
    pub fn set_return(&mut self, r: &HcallResult) {
        let regs = to_regs(r);
        self.gpr[3] = regs.status as u64;
        for (g, v) in self.gpr[4..=12].iter_mut().zip(regs.out) {
            *g = v;
        }
    }
}
