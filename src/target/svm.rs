//! A secure VM, run (powerpc64 only): the ultravisor builds the SVM's partition from what the
//! platform loaded, enters it, serves its ultracalls and reflects every other hcall to the
//! hypervisor partition (`target::hvp`).
//!
//! The partition ([`SVM_LPID`]) maps only the SVM's own memory, by guest-physical address
//! ([`gpa`]): a scratch page it may write, its bounce page (shared with the hypervisor), and
//! its kernel (the payload, read and execute), bootargs, ESM blob and initrd (read-only).
//! Nothing else: not the ultravisor, not the hypervisor, not another partition.
//!
//! The payload ABI (the demo payload is `tests-qemu/src/payload.rs`): entered at its first
//! byte with r3 = its LPID, r4/r5 = its ESM blob's address and length, r6 = the scratch page.
//! Its first hcall must be the ESM ultracall (r3 = [`UV_ESM`], r4/r5 = the blob): the
//! ultravisor then opens the SVM (`uv::svm::open`) with the bytes in the SVM's own memory
//! (the blob it names, the kernel, bootargs and initrd as loaded, read-only, so the SVM
//! cannot change what is checked) and unwraps the lockbox key through H_TPM_COMM from the
//! SVM's bounce page, naming it by the SVM's address, as the SVM itself (caller
//! [`SVM_LPID`]) in a session of its own. Accepted: `svm: accepted`, r3 = 0, and the SVM runs
//! on. Rejected: `svm: rejected: <why>`, and the partition is never entered again, so not one
//! more instruction of the SVM runs. Its exit is the [`UV_SVM_TERMINATE`] ultracall. Any other
//! number in the ultravisor's range answers H_FUNCTION; everything else is reflected into the
//! hypervisor partition with the SVM's registers and its answer put back. A fault, a
//! privileged instruction, an hcall before the ESM call or a spent time budget stops the SVM
//! with a report.

use crate::arch::partition::{Exit, Partitions, Vector};
use crate::arch::{self, HcallFrame};
use crate::fw::UvSecrets;
use crate::papr;
use crate::platform::layout::BouncePage;
use crate::tpm::Tpm;
use ::hv::CallerId;
use ::uv::hcall::{HcallTransport, Hypercall};
use ::uv::svm::{Rejection, SvmPayload};
use ::uv::unwrap::UvSession;
use alloc::format;
use alloc::string::String;
use radix::Access;

/// The SVM's partition.
pub const SVM_LPID: u32 = 1;

pub use papr::{UV_ESM, UV_SVM_TERMINATE};
/// The ultracall numbers (0xF100..0xF200): served by the ultravisor, never reflected.
const ULTRACALLS: core::ops::Range<u64> = 0xF100..0xF200;

/// The SVM's memory, by guest-physical address.
pub mod gpa {
    /// A page the SVM may write (its message buffer).
    pub const SCRATCH: u64 = 0x0000;
    /// Its bounce page, shared with the hypervisor.
    pub const SHARED: u64 = 0x1000;
    /// Where its kernel (the payload) starts; bootargs, ESM blob and initrd follow it, each
    /// page-aligned.
    pub const KERNEL: u64 = 0x1_0000;
}

/// Time one entry may run before the hypervisor decrementer brings the SVM back.
const SLICE_MS: u64 = 100;
/// Slices the SVM may use in all (its own run time; the ultravisor's work is not counted).
const BUDGET_SLICES: u32 = 50;

/// How the SVM's run ended.
pub struct Outcome {
    /// The ESM verdict: `None` if the SVM never made the ESM call.
    pub verdict: Option<Result<(), Rejection>>,
    /// How the partition ended, one line.
    pub end: String,
    /// Timebase ticks the unwrap took (the session of its own, then RSA_Decrypt).
    pub unwrap_ticks: u64,
}

/// Where the SVM's parts are in its memory.
struct Loaded {
    kernel: (u64, u64),
    bootargs: (u64, u64),
    blob: (u64, u64),
    initrd: (u64, u64),
}

fn pages(len: u64) -> u64 {
    len.div_ceil(4096).max(1)
}

/// Copies `bytes` into fresh guest memory and maps it at `at` in the SVM's partition.
fn load(p: &mut Partitions, at: u64, bytes: &[u8], access: Access) -> Result<(u64, u64), String> {
    let len = bytes.len() as u64;
    let n = pages(len);
    let host = p
        .guest_pages(n as usize)
        .map_err(|e| format!("{} bytes: {e}", bytes.len()))?;
    p.write(host, bytes).map_err(|e| format!("{e}"))?;
    p.map(SVM_LPID, at, host, n * 4096, access)
        .map_err(|e| format!("{e}"))?;
    Ok((at, len))
}

/// Builds the SVM's partition from `blob`, `initrd` and `payload` (the kernel and bootargs
/// the platform loaded) and its bounce page.
fn build(
    p: &mut Partitions,
    blob: &[u8],
    initrd: &[u8],
    payload: &SvmPayload<'_>,
) -> Result<(Loaded, BouncePage), String> {
    p.create(SVM_LPID).map_err(|e| format!("{e}"))?;
    let scratch = p.guest_pages(1).map_err(|e| format!("scratch page: {e}"))?;
    let rw = Access::READ | Access::WRITE;
    p.map(SVM_LPID, gpa::SCRATCH, scratch, 4096, rw)
        .map_err(|e| format!("scratch page: {e}"))?;
    let bounce = BouncePage::new(0, gpa::SHARED).ok_or("no shared page for the SVM")?;
    p.map(SVM_LPID, gpa::SHARED, bounce.host(), 4096, rw)
        .map_err(|e| format!("bounce page: {e}"))?;
    let rx = Access::READ | Access::EXECUTE;
    let kernel = load(p, gpa::KERNEL, payload.kernel, rx).map_err(|e| format!("kernel: {e}"))?;
    let next = |(at, len): (u64, u64)| at + pages(len) * 4096;
    let bootargs = load(p, next(kernel), payload.bootargs, Access::READ)
        .map_err(|e| format!("bootargs: {e}"))?;
    let blob = load(p, next(bootargs), blob, Access::READ).map_err(|e| format!("ESM blob: {e}"))?;
    let initrd = load(p, next(blob), initrd, Access::READ).map_err(|e| format!("initrd: {e}"))?;
    let table =
        ::hv::RegionTable::mapped(&[(::hv::GuestRange::new(gpa::SHARED, 4096), bounce.host())])
            .map_err(|e| format!("the hypervisor's map of the bounce page: {e:?}"))?;
    super::hv::HV
        .set_caller_memory(CallerId(SVM_LPID), Some(table))
        .map_err(|e| format!("the hypervisor's map of the bounce page: {e:?}"))?;
    Ok((
        Loaded {
            kernel,
            bootargs,
            blob,
            initrd,
        },
        bounce,
    ))
}

/// H_TPM_COMM and the rest, from the ultravisor on the SVM's behalf: reflected into the
/// hypervisor partition directly (the ultravisor holds the partitions while the SVM runs, so
/// its own `sc 1` entry, which takes them, is not the way).
struct Reflected<'p> {
    p: &'p Partitions,
}

impl Hypercall for Reflected<'_> {
    fn hcall(&mut self, nr: u64, args: [u64; 9]) -> papr::HcallResult {
        super::hvp::reflect_call(self.p, CallerId(SVM_LPID), nr, args)
    }
}

/// The ESM call: open the SVM with what it names and what was loaded, unwrapping the
/// lockbox key in a session of the SVM's own through its bounce page.
fn esm(
    p: &Partitions,
    frame: &HcallFrame,
    at: &Loaded,
    bounce: BouncePage,
    fingerprint: &[u8; 32],
    secrets: &UvSecrets,
    unwrap_ticks: &mut u64,
) -> Result<(), Rejection> {
    let bytes = |(gpa, len): (u64, u64), what: &str| {
        if len == 0 {
            return Ok(&[][..]);
        }
        p.guest_bytes(SVM_LPID, gpa, len)
            .map_err(|e| Rejection::Unwrap(format!("{what}: {e}")))
    };
    let blob = bytes((frame.gpr[4], frame.gpr[5]), "the ESM blob it named")?;
    let payload = SvmPayload {
        kernel: bytes(at.kernel, "kernel")?,
        bootargs: bytes(at.bootargs, "bootargs")?,
        rtas: &::uv::esm::DEFAULT_RTAS,
    };
    let initrd = bytes(at.initrd, "initrd")?;
    ::uv::svm::open(blob, initrd, &payload, fingerprint, |ek| {
        let t0 = arch::timebase();
        let mut tpm = Tpm::new(HcallTransport::new(Reflected { p }, bounce));
        tpm.set_delay(arch::delay_ms);
        let key = tpm
            .seed_entropy(&mut arch::Darn)
            .map_err(|e| format!("seeding entropy: {e}"))
            .and_then(|()| {
                let mut s = UvSession::establish(&mut tpm, secrets)
                    .map_err(|e| format!("the SVM's session: {e}"))?;
                let key = s.unwrap(&mut tpm, ek).map_err(|e| format!("{e}"));
                let _ = s.close(&mut tpm);
                key
            });
        let _ = tpm.into_transport().close_session();
        *unwrap_ticks = arch::timebase() - t0;
        key
    })
}

/// Runs the SVM: builds its partition, enters it, and serves it until it exits or is
/// stopped. Prints the verdict line (`svm: accepted` / `svm: rejected: ...`) when it makes
/// the ESM call.
pub fn run(
    blob: &[u8],
    initrd: &[u8],
    payload: &SvmPayload<'_>,
    fingerprint: &[u8; 32],
    secrets: &UvSecrets,
) -> Result<Outcome, String> {
    let r = super::hvp::lend(|p| {
        let (at, bounce) = build(p, blob, initrd, payload)?;
        let p: &Partitions = p;
        Ok(serve(p, &at, bounce, fingerprint, secrets))
    });
    // The hypervisor forgets the SVM's memory with its partition; the bounce page is wiped.
    let _ = super::hv::HV.set_caller_memory(CallerId(SVM_LPID), None);
    if let Some(mut page) = BouncePage::new(0, gpa::SHARED) {
        ::uv::hcall::SharedPage::store(&mut page, &[0u8; 4096]);
    }
    r
}

fn serve(
    p: &Partitions,
    at: &Loaded,
    bounce: BouncePage,
    fingerprint: &[u8; 32],
    secrets: &UvSecrets,
) -> Outcome {
    let mut frame = alloc::boxed::Box::new(HcallFrame::zeroed());
    frame.srr0 = at.kernel.0;
    frame.gpr[3] = u64::from(SVM_LPID);
    frame.gpr[4] = at.blob.0;
    frame.gpr[5] = at.blob.1;
    frame.gpr[6] = gpa::SCRATCH;
    let mut out = Outcome {
        verdict: None,
        end: String::new(),
        unwrap_ticks: 0,
    };
    let slice = u32::try_from(arch::timebase_hz() / 1000 * SLICE_MS).unwrap_or(i32::MAX as u32);
    let stopped = |e: &Exit| format!("uv: SVM partition {SVM_LPID} {e}");
    let mut slices = 0;
    while slices < BUDGET_SLICES {
        let exit = match p.run(SVM_LPID, &mut frame, slice.max(1)) {
            Ok(e) => e,
            Err(e) => {
                out.end = format!("uv: SVM partition {SVM_LPID} not run: {e}");
                return out;
            }
        };
        match exit.kind() {
            Some(Vector::Hdec) => {
                slices += 1;
                frame.srr0 = exit.hsrr0;
                continue;
            }
            Some(Vector::Syscall) => {}
            _ => {
                out.end = stopped(&exit);
                return out;
            }
        }
        frame.srr0 = exit.srr0;
        let nr = frame.gpr[3];
        let accepted = matches!(out.verdict, Some(Ok(())));
        match nr {
            UV_ESM if out.verdict.is_none() => {
                let v = esm(
                    p,
                    &frame,
                    at,
                    bounce,
                    fingerprint,
                    secrets,
                    &mut out.unwrap_ticks,
                );
                match &v {
                    Ok(()) => {
                        crate::println!("{}{}", crate::report::SVM, crate::report::SVM_ACCEPTED);
                        frame.gpr[3] = papr::H_SUCCESS as u64;
                    }
                    Err(r) => {
                        crate::println!(
                            "{}{}: {r}",
                            crate::report::SVM,
                            crate::report::SVM_REJECTED
                        );
                        out.verdict = Some(v);
                        out.end =
                            format!("uv: SVM partition {SVM_LPID} rejected: never entered again");
                        return out;
                    }
                }
                out.verdict = Some(v);
            }
            UV_SVM_TERMINATE if accepted => {
                out.end = format!(
                    "uv: SVM partition {SVM_LPID} exited (UV_SVM_TERMINATE, status {:#x})",
                    frame.gpr[4]
                );
                return out;
            }
            _ if !accepted => {
                out.end = format!(
                    "uv: SVM partition {SVM_LPID} stopped: hcall {nr:#x} from {:#x} before the ESM call",
                    exit.srr0.wrapping_sub(4)
                );
                return out;
            }
            n if ULTRACALLS.contains(&n) => frame.gpr[3] = papr::H_FUNCTION as u64,
            _ => {
                let mut args = [0u64; 9];
                args.copy_from_slice(&frame.gpr[4..=12]);
                let r = super::hvp::reflect_call(p, CallerId(SVM_LPID), nr, args);
                let ret = papr::to_regs(&r);
                frame.gpr[3] = ret.status as u64;
                frame.gpr[4..=12].copy_from_slice(&ret.out);
            }
        }
    }
    out.end = format!(
        "uv: SVM partition {SVM_LPID} stopped: time budget of {} ms exhausted at {:#x}",
        SLICE_MS * u64::from(BUDGET_SLICES),
        frame.srr0
    );
    out
}
