//! Target glue for the hypervisor (powerpc64 only): the one unsafe guest-memory copy, the
//! machine's single [`Hypervisor`] instance, its hcall table ([`service`]: H_TPM_COMM,
//! H_PUT_TERM_CHAR, the self-tests' diagnostics), and its configuration from the boot facts.
//! All of it runs in the hypervisor partition (`target::hvp`); its statics are in `.hvdata`.
//!
//! Caller memory: the host's and the ultravisor's own calls name one window of RAM, the linker
//! script's `__guest_start..__guest_end` (256 KiB; see `platform::layout`); the hypervisor's own
//! image, stacks and heap, skiboot (`SKIBOOT_BASE..+SKIBOOT_SIZE`), low memory holding the
//! vectors, and everything above RAM (MMIO) are refused by that region table. A partition that
//! shares memory with the hypervisor (an SVM: its bounce page) gets a table of its own, set by
//! the ultravisor when it builds the partition (`Hypervisor::set_caller_memory`), which maps the
//! partition's guest-physical addresses to where the hypervisor partition reaches those pages.

use crate::platform::tpm_link::Link;
use ::hv::{CallerId, CheckedRange, GuestMemory, GuestRange, Hypervisor, RegionTable};

use crate::platform::layout::{IMAGE_BASE, SKIBOOT_BASE, SKIBOOT_SIZE};

/// Real memory accessed by physical address (the image runs in real mode, so a
/// guest-physical address is the real address).
pub struct RealGuestMemory;

impl GuestMemory for RealGuestMemory {
    fn copy_from_guest(&self, src: &CheckedRange, dst: &mut [u8]) {
        let n = usize::try_from(src.len()).map_or(dst.len(), |l| l.min(dst.len()));
        // SAFETY: `src` was produced by the caller's RegionTable, so [at, at+len) is where the
        // hypervisor reaches that caller's memory: the caller window (identity) or an SVM's
        // bounce page in the shared pool, both RAM that the hypervisor partition maps and
        // that holds neither the hypervisor's data nor its stack; `dst` is the hypervisor's
        // private buffer, so the two cannot overlap.
        unsafe { core::ptr::copy_nonoverlapping(src.at() as *const u8, dst.as_mut_ptr(), n) };
    }

    fn copy_to_guest(&self, dst: &CheckedRange, src: &[u8]) {
        let n = usize::try_from(dst.len()).map_or(src.len(), |l| l.min(src.len()));
        // SAFETY: as above, with the roles swapped: `dst` is checked caller memory, `src`
        // the hypervisor's private response buffer.
        unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), dst.at() as *mut u8, n) };
    }
}

/// The relay observer of [`HV`] in the self-test image: the tampering `Meddler`, inactive
/// unless a self-test arms it.
#[cfg(feature = "selftest")]
pub type Observer = ::hv::Meddler;
/// The relay observer of [`HV`]: in the image to flash the [`::hv::Quiet`] one, which sees
/// and changes nothing (the self-test image has the tampering `Meddler` here).
#[cfg(not(feature = "selftest"))]
pub type Observer = ::hv::Quiet;

#[cfg(feature = "selftest")]
const OBSERVER: Observer = ::hv::Meddler::new(::hv::Meddle::Off);
#[cfg(not(feature = "selftest"))]
const OBSERVER: Observer = ::hv::Quiet;

/// The machine's hypervisor: H_TPM_COMM over the TPM link ([`Link`]: I2C or UART), relaying
/// past [`Observer`].
/// It lives in `.hvdata`, the hypervisor partition's own pages (`target::hvp`).
#[link_section = ".hvdata"]
pub static HV: Hypervisor<Link, RealGuestMemory, Observer> =
    Hypervisor::new(RealGuestMemory, OBSERVER);

/// An hcall handler: the caller and r4..r12 in, the typed return out.
type Handler = fn(CallerId, &[u64; 9]) -> crate::papr::HcallResult;

/// The handler for hcall number `nr`, `None` for one the hypervisor does not implement.
fn handler(nr: u64) -> Option<Handler> {
    match nr {
        crate::papr::H_TPM_COMM => Some(tpm_comm),
        H_PUT_TERM_CHAR => Some(put_term_char),
        #[cfg(feature = "selftest")]
        crate::selftest::target::H_PEFBOX_ECHO => Some(crate::selftest::target::echo),
        #[cfg(feature = "selftest")]
        crate::selftest::target::H_PEFBOX_PEEK => Some(testing::peek),
        #[cfg(feature = "selftest")]
        crate::selftest::target::H_PEFBOX_I2C_RW => Some(testing::i2c_rw),
        _ => None,
    }
}

use crate::papr::H_PUT_TERM_CHAR;

/// A partition's console output not yet printed: each line goes out whole, prefixed with the
/// partition it came from, so no partition can print a line that reads as the image's own
/// (a verdict, a test result).
struct TermLine {
    caller: Option<CallerId>,
    len: usize,
    bytes: [u8; TERM_LINE],
}

/// Longest line a partition prints before it is broken.
const TERM_LINE: usize = 120;

/// One pending line per caller, up to four callers (a fifth's output is dropped: H_RESOURCE).
#[link_section = ".hvdata"]
static TERM: spin::Mutex<[TermLine; 4]> = spin::Mutex::new(
    [const {
        TermLine {
            caller: None,
            len: 0,
            bytes: [0; TERM_LINE],
        }
    }; 4],
);

fn put_term_char(caller: CallerId, args: &[u64; 9]) -> crate::papr::HcallResult {
    use crate::papr::PaprError;
    let (term, len) = (args[0], args[1]);
    if term != 0 || len > 16 {
        return Err(PaprError::Parameter);
    }
    let mut chars = [0u8; 16];
    chars[..8].copy_from_slice(&args[2].to_be_bytes());
    chars[8..].copy_from_slice(&args[3].to_be_bytes());
    let mut lines = TERM.lock();
    let slot = match lines.iter().position(|l| l.caller == Some(caller)) {
        Some(i) => i,
        None => {
            let i = lines
                .iter()
                .position(|l| l.caller.is_none())
                .ok_or(PaprError::Resource)?;
            lines[i].caller = Some(caller);
            i
        }
    };
    let line = &mut lines[slot];
    for &b in &chars[..len as usize] {
        match b {
            b'\r' => {}
            b'\n' => flush_term(line),
            _ => {
                line.bytes[line.len] = if (0x20..0x7f).contains(&b) { b } else { b'?' };
                line.len += 1;
                if line.len == TERM_LINE {
                    flush_term(line);
                }
            }
        }
    }
    Ok([0; 9])
}

fn flush_term(line: &mut TermLine) {
    let text = core::str::from_utf8(&line.bytes[..line.len]).unwrap_or("?");
    let who = line.caller.map_or(0, |c| c.0);
    crate::println!("[partition {who}] {text}");
    line.len = 0;
}

/// H_TPM_COMM, from the calling partition.
fn tpm_comm(caller: CallerId, args: &[u64; 9]) -> crate::papr::HcallResult {
    HV.hcall(caller, crate::papr::H_TPM_COMM, args)
}

/// The hypervisor's hcall table, run in the hypervisor partition for each reflected call
/// (`target::hvp`): the handler `call.regs[0]` names, or H_FUNCTION; its return goes back
/// into `call.regs` (status, then r4..r12).
pub fn service(call: &mut super::hvp::HvCall) {
    let caller = CallerId(call.caller as u32);
    let mut args = [0u64; 9];
    args.copy_from_slice(&call.regs[1..]);
    let r = match handler(call.regs[0]) {
        Some(h) => h(caller, &args),
        None => Err(crate::papr::PaprError::Function),
    };
    let ret = crate::papr::to_regs(&r);
    call.regs[0] = ret.status as u64;
    call.regs[1..].copy_from_slice(&ret.out);
}

/// Configures [`HV`]: the caller window as the only caller region, and the link (None when
/// the device tree shows no TPM: then H_TPM_COMM answers H_FUNCTION). A bound given
/// in reverse (an end below its start) is refused as [`::hv::RegionError::Wraps`].
pub fn configure(link: Option<Link>, ram_top: u64) -> Result<(), ::hv::RegionError> {
    let (gs, ge) = crate::platform::layout::guest_window();
    let span = |start: u64, end: u64| {
        end.checked_sub(start)
            .map(|len| GuestRange::new(start, len))
            .ok_or(::hv::RegionError::Wraps)
    };
    let caller = [span(gs, ge)?];
    let reserved = [
        GuestRange::new(0, 0x1_0000),
        span(IMAGE_BASE, gs)?,
        GuestRange::new(SKIBOOT_BASE, SKIBOOT_SIZE),
        span(ram_top, u64::MAX)?,
    ];
    let table = RegionTable::new(&caller, &reserved)?;
    HV.configure(table, link);
    HV.reserve_for(CallerId::of(super::uv::UV_CALLER, 0));
    Ok(())
}

/// The caller identity of an hcall the ultravisor's `sc 1` entry takes: the partition it is
/// made for ([`crate::arch::hcall_as`]) and the hardware thread (PIR). The hypervisor, in
/// its partition, cannot read who called, so the ultravisor passes it along.
pub fn caller() -> CallerId {
    CallerId::of(crate::arch::acting_for(), crate::arch::pir())
}

/// The hypervisor's side of the self-tests (self-test image only): what runs in its
/// partition, with its storage in the partition's own pages.
#[cfg(feature = "selftest")]
pub mod testing {
    use crate::hv::{CallerId, Direction};
    use crate::tpm::consts::cc;

    /// Everything the hypervisor relayed while the snoop was armed.
    pub struct Recording {
        /// The relayed bytes, commands and responses in order.
        pub bytes: [u8; 32768],
        /// Bytes recorded.
        pub len: usize,
        /// Whether some did not fit.
        pub overflowed: bool,
        /// Commands recorded.
        pub commands: u32,
        /// Whether a TPM2_RSA_Decrypt was among them.
        pub saw_rsa_decrypt: bool,
    }

    /// What the hypervisor relayed while recording: in its own pages (`.hvdata`), since it
    /// records from its partition.
    #[link_section = ".hvdata"]
    pub static RECORDING: spin::Mutex<Recording> = spin::Mutex::new(Recording {
        bytes: [0; 32768],
        len: 0,
        overflowed: false,
        commands: 0,
        saw_rsa_decrypt: false,
    });

    /// The hypervisor's snoop hook: append every relayed byte.
    pub fn record(_caller: CallerId, dir: Direction, bytes: &[u8]) {
        let mut r = RECORDING.lock();
        if dir == Direction::Command {
            r.commands += 1;
            if crate::tpm::wire::code(bytes) == Some(cc::RSA_DECRYPT) {
                r.saw_rsa_decrypt = true;
            }
        }
        let at = r.len;
        match r.bytes.get_mut(at..at + bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                r.len += bytes.len();
            }
            None => r.overflowed = true,
        }
    }

    /// `hv-stopped-holding-state`'s relay hook: a load from the ultravisor's heap, which the
    /// hypervisor partition does not map, so the partition stops (HDSI) inside the relay,
    /// holding its state.
    pub fn fault_in_relay(_caller: CallerId, _dir: Direction, _bytes: &[u8]) {
        extern "C" {
            static __heap_start: u8;
        }
        // SAFETY: a relay hook runs in the hypervisor partition, whose tree does not map the
        // ultravisor's heap: the load stops the partition before it completes, nothing is
        // read. (In hypervisor state it would read one byte of the image's own RAM.)
        let _ = unsafe { core::ptr::read_volatile(core::ptr::addr_of!(__heap_start)) };
    }

    /// `H_PEFBOX_I2C_RW`'s handler (`selftest::target`), run in the hypervisor partition: the
    /// register round trip of `i2c-opal`, through the ultravisor (`platform::tpm_i2c::uv_i2c`)
    /// on the device r4 (bus), r5 (address), r6 (register) names. r4 = 0 or the first failing OPAL
    /// status; r5 = the register's value before; r6, r7 = what read back after writing 0xA5
    /// and 0x5A (the register is restored).
    pub fn i2c_rw(caller: CallerId, args: &[u64; 9]) -> crate::papr::HcallResult {
        use crate::platform::tpm_i2c::uv_i2c;
        if caller != CallerId(0) {
            return Err(crate::papr::PaprError::Function);
        }
        let (Ok(bus), Ok(addr), Ok(reg)) = (
            u32::try_from(args[0]),
            u16::try_from(args[1]),
            u8::try_from(args[2]),
        ) else {
            return Err(crate::papr::PaprError::Parameter);
        };
        let run = || -> Result<[u64; 3], i64> {
            let mut was = [0u8; 1];
            uv_i2c(false, bus, addr, reg, &mut was)?;
            let mut back = [0u64; 2];
            for (slot, pattern) in back.iter_mut().zip([0xA5u8, 0x5A]) {
                uv_i2c(true, bus, addr, reg, &mut [pattern])?;
                let mut b = [0u8; 1];
                uv_i2c(false, bus, addr, reg, &mut b)?;
                *slot = u64::from(b[0]);
            }
            uv_i2c(true, bus, addr, reg, &mut was)?;
            Ok([u64::from(was[0]), back[0], back[1]])
        };
        Ok(match run() {
            Ok([w, a, b]) => [0, w, a, b, 0, 0, 0, 0, 0],
            Err(rc) => [rc as u64, 0, 0, 0, 0, 0, 0, 0, 0],
        })
    }

    /// `H_PEFBOX_PEEK`'s handler (`selftest::target`): the 8 bytes at r4 (8-byte aligned,
    /// else H_P2), in r4. It refuses (H_FUNCTION) to run in hypervisor state, where nothing
    /// would stop the load, and to any caller but the host's self-tests (LPID 0): no
    /// partition may use it to read the hypervisor's memory.
    pub fn peek(caller: CallerId, args: &[u64; 9]) -> crate::papr::HcallResult {
        if crate::arch::hypervisor_state() || caller != CallerId(0) {
            return Err(crate::papr::PaprError::Function);
        }
        if !args[0].is_multiple_of(8) {
            return Err(crate::papr::PaprError::P2);
        }
        // SAFETY: this runs in the hypervisor partition (checked above): the load goes
        // through its radix tree, which maps only memory and registers it was given (the
        // test names no device register); any other address stops the partition (HDSI)
        // before the load completes. The address is 8-byte aligned (checked).
        let v = unsafe { core::ptr::read_volatile(args[0] as *const u64) };
        Ok([v, 0, 0, 0, 0, 0, 0, 0, 0])
    }
}
