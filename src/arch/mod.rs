//! POWER9 architecture layer (target-only): the boot and vector assembly, special-purpose
//! registers, the timebase, the `darn` random-number instruction, the `sc 1` instruction,
//! and vector installation. Everything register-level lives here and in `platform`.
//!
//! Unsafe discipline: each `unsafe` block carries a `// SAFETY:` comment; functions that
//! touch arbitrary memory are `unsafe fn` with a `# Safety` section.

use core::arch::{asm, global_asm};

// All boot assembly is one module-level block so the shared macros are defined once, and so
// the hcall frame's offsets (`HF_*`, used by boot/vectors.S) can be generated from
// `frame::HcallFrame` as `const` operands: one source of truth for both sides. With operands
// the template is a format string (`options(raw)` forbids them), so the .S files must not
// contain `{` or `}` (they do not; a stray one fails the build, it cannot slip through).
global_asm!(
    ".set HF_GPR, {gpr}",
    ".set HF_CR, {cr}",
    ".set HF_LR, {lr}",
    ".set HF_XER, {xer}",
    ".set HF_CTR, {ctr}",
    ".set HF_SRR0, {srr0}",
    ".set HF_SRR1, {srr1}",
    ".set HF_FPSCR, {fpscr}",
    ".set HF_VRSAVE, {vrsave}",
    ".set HF_VSCR, {vscr}",
    ".set HF_VSR, {vsr}",
    ".set HF_SIZE, {size}",
    ".set HF_BASE, {base}",
    concat!(
        include_str!("../../boot/macros.S"),
        include_str!("../../boot/entry.S"),
        include_str!("../../boot/vectors.S"),
        include_str!("../../boot/mem.S"),
        include_str!("../../boot/partition.S"),
    ),
    gpr = const HCALL_FRAME_BASE + offset_of!(HcallFrame, gpr),
    cr = const HCALL_FRAME_BASE + offset_of!(HcallFrame, cr),
    lr = const HCALL_FRAME_BASE + offset_of!(HcallFrame, lr),
    xer = const HCALL_FRAME_BASE + offset_of!(HcallFrame, xer),
    ctr = const HCALL_FRAME_BASE + offset_of!(HcallFrame, ctr),
    srr0 = const HCALL_FRAME_BASE + offset_of!(HcallFrame, srr0),
    srr1 = const HCALL_FRAME_BASE + offset_of!(HcallFrame, srr1),
    fpscr = const HCALL_FRAME_BASE + offset_of!(HcallFrame, fpscr),
    vrsave = const HCALL_FRAME_BASE + offset_of!(HcallFrame, vrsave),
    vscr = const HCALL_FRAME_BASE + offset_of!(HcallFrame, vscr),
    vsr = const HCALL_FRAME_BASE + offset_of!(HcallFrame, vsr),
    size = const HCALL_STACK_SIZE,
    base = const HCALL_FRAME_BASE,
);

// The self-tests' register probes (uses none of the shared macros): self-test image only.
#[cfg(feature = "selftest")]
global_asm!(include_str!("../../boot/regtest.S"), options(raw));

pub mod frame;
pub mod partition;
pub mod vectors;

use core::mem::offset_of;
pub use frame::HcallFrame;
use frame::{HCALL_FRAME_BASE, HCALL_STACK_SIZE};

/// The current stack pointer (r1).
pub fn stack_pointer() -> u64 {
    let sp: u64;
    // SAFETY: copies r1; reads no memory.
    unsafe { asm!("mr {0}, 1", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    sp
}

/// Makes `len` bytes of freshly written code at real address `addr` visible to
/// instruction fetch (TCG does not model caches; hardware does).
pub fn sync_icache(addr: u64, len: usize) {
    const CACHE_LINE: u64 = 128;
    let end = addr.saturating_add(len as u64);
    let mut a = addr & !(CACHE_LINE - 1);
    while a < end {
        // SAFETY: cache maintenance on lines of memory we own; no data is changed.
        unsafe { asm!("dcbst 0, {0}", "sync", "icbi 0, {0}", in(reg) a, options(nostack)) };
        a += CACHE_LINE;
    }
    // SAFETY: context synchronisation only.
    unsafe { asm!("sync", "isync", options(nostack)) };
}

/// Timebase ticks per second, as the device tree gave it (set once at boot).
static TIMEBASE_HZ: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(512_000_000);

/// Records the timebase frequency from the device tree (ignored if zero).
pub fn set_timebase_hz(hz: u64) {
    if hz != 0 {
        TIMEBASE_HZ.store(hz, core::sync::atomic::Ordering::Relaxed);
    }
}

/// Timebase ticks per second (512 MHz until the device tree says otherwise).
pub fn timebase_hz() -> u64 {
    TIMEBASE_HZ.load(core::sync::atomic::Ordering::Relaxed)
}

/// Busy-waits `ms` milliseconds on the timebase (the TPM client's re-send delay).
pub fn delay_ms(ms: u32) {
    let ticks = (timebase_hz() / 1000).saturating_mul(u64::from(ms));
    let start = timebase();
    while timebase().wrapping_sub(start) < ticks {
        core::hint::spin_loop();
    }
}

/// Reads the timebase register.
#[inline(always)]
pub fn timebase() -> u64 {
    let tb: u64;
    // SAFETY: mftb reads a free-running counter; no memory or state is touched.
    unsafe { asm!("mftb {0}", out(reg) tb, options(nomem, nostack, preserves_flags)) };
    tb
}

/// One 64-bit conditioned random number from the POWER9 `darn` instruction, or `None`
/// when the hardware reports failure (all ones), as ISA 3.0 specifies.
pub fn darn() -> Option<u64> {
    for _ in 0..16 {
        let v: u64;
        // SAFETY: darn writes one register and touches no memory.
        unsafe { asm!("darn {0}, 1", out(reg) v, options(nomem, nostack)) };
        if v != u64::MAX {
            return Some(v);
        }
    }
    None
}

/// The hardware thread id (PIR), used as the hypercall caller identity.
pub fn pir() -> u32 {
    let v: u64;
    // SAFETY: reading PIR (SPR 1023) has no side effects.
    unsafe { asm!("mfspr {0}, 1023", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v as u32
}

/// Issues `sc 1` with r3 = `nr` and r4..r12 = `args`; returns (r3, r4..r12).
///
/// The registers PAPR lets a hypercall clobber beyond its outputs (r0, CTR, XER, CR0/1/5-7)
/// are declared clobbered; that our own handler preserves them anyway is checked by the
/// `hcall-regs` self-test through `sc_regtest`.
pub fn hcall(nr: u64, args: [u64; 9]) -> (i64, [u64; 9]) {
    let mut r3 = nr;
    let [mut r4, mut r5, mut r6, mut r7, mut r8, mut r9, mut r10, mut r11, mut r12] = args;
    // SAFETY: `sc 1` enters our own hypervisor entry (boot/vectors.S), which saves and
    // restores every register except r3..r12 and returns with rfid to the next instruction.
    // Guest buffers named in the arguments are only read/written by the hypervisor within
    // the caller's memory window after validation.
    unsafe {
        asm!(
            "sc 1",
            inout("r3") r3, inout("r4") r4, inout("r5") r5, inout("r6") r6, inout("r7") r7,
            inout("r8") r8, inout("r9") r9, inout("r10") r10, inout("r11") r11, inout("r12") r12,
            out("r0") _, out("ctr") _, out("xer") _,
            out("cr0") _, out("cr1") _, out("cr5") _, out("cr6") _, out("cr7") _,
        );
    }
    (r3 as i64, [r4, r5, r6, r7, r8, r9, r10, r11, r12])
}

/// Whether the code runs in hypervisor state (MSR[HV]): the ultravisor and the firmware do;
/// the hypervisor partition and every guest do not.
pub fn hypervisor_state() -> bool {
    let msr: u64;
    // SAFETY: reading the MSR has no side effects (`mfmsr` is privileged, not
    // hypervisor-privileged: a partition's supervisor code may read it).
    unsafe { asm!("mfmsr {0}", out(reg) msr, options(nomem, nostack, preserves_flags)) };
    msr & partition::Msr::HV.bits() != 0
}

/// The partition the ultravisor's current hcall is made for (0: its own); see [`hcall_as`].
static ACTING_FOR: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// The partition the hcall being taken is made for: what [`hcall_as`] named, 0 otherwise.
pub fn acting_for() -> u32 {
    ACTING_FOR.load(core::sync::atomic::Ordering::SeqCst)
}

/// Issues `sc 1` on behalf of partition `lpid`, so the hypervisor, which keys its
/// per-caller state by partition, sees the call coming from that partition: the ultravisor
/// passes the identity along with the reflected call (`target::hvp`), as it knows whom it
/// acts for. (LPIDR itself is left alone: it names the partition last run, and QEMU drops
/// its whole TLB on every write of it.)
pub fn hcall_as(lpid: u32, nr: u64, args: [u64; 9]) -> (i64, [u64; 9]) {
    use core::sync::atomic::Ordering;
    ACTING_FOR.store(lpid, Ordering::SeqCst);
    let r = hcall(nr, args);
    ACTING_FOR.store(0, Ordering::SeqCst);
    r
}

#[cfg(feature = "selftest")]
extern "C" {
    fn pefbox_sc_regtest(nr: u64, regs: *mut u64) -> u64;
}

/// Runs the register-preservation probe in `boot/regtest.S`: fills every register the
/// hypercall must preserve (r0, r2, r13-r31, CR, CTR, LR, XER, all 64 VSRs) with distinct
/// patterns, issues `sc 1` with r3 = `nr` and r4..r12 = `regs[1..]`, stores r3..r12 back into
/// `regs`, and returns a bit mask of the preserved-register groups that came back changed
/// (0 = everything survived), plus a stack canary check. Self-test image only.
#[cfg(feature = "selftest")]
pub fn sc_regtest(nr: u64, regs: &mut [u64; 10]) -> u64 {
    regs[0] = nr;
    // SAFETY: the routine reads and writes exactly 10 u64s at `regs` and restores every
    // non-volatile register before returning (boot/regtest.S).
    unsafe { pefbox_sc_regtest(nr, regs.as_mut_ptr()) }
}

/// Executes `trap` (a program interrupt at 0x700): the unexpected-interrupt path's test.
/// Self-test image only.
#[cfg(feature = "selftest")]
pub fn trap() {
    // SAFETY: `trap` raises a program interrupt, which the installed vectors report and
    // turn into a power-off; no memory is touched.
    unsafe { asm!("trap", options(nomem, nostack)) };
}

#[cfg(feature = "selftest")]
extern "C" {
    fn pefbox_scribble_volatile();
}

/// Overwrites every ABI-volatile register (boot/regtest.S), for the hcall self-tests.
/// Self-test image only.
#[cfg(feature = "selftest")]
pub fn scribble_volatile() {
    // SAFETY: the routine only changes registers the ELFv2 ABI lets a call clobber.
    unsafe { pefbox_scribble_volatile() };
}

/// The POWER9 `darn` instruction as a platform entropy source for the TPM client's mixer.
pub struct Darn;

impl crate::tpm::EntropySource for Darn {
    fn fill(&mut self, out: &mut [u8]) -> Result<(), crate::tpm::entropy::EntropyError> {
        for chunk in out.chunks_mut(8) {
            let v = darn().ok_or(crate::tpm::entropy::EntropyError)?;
            chunk.copy_from_slice(&v.to_be_bytes()[..chunk.len()]);
        }
        Ok(())
    }
}
