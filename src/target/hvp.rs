//! The hypervisor partition (powerpc64 only): the hypervisor handler runs one level below the
//! ultravisor, as PEF puts it, in partition [`HV_LPID`] with MSR[HV] clear.
//!
//! Its radix tree ([`start`]) maps, each at its own address, only:
//! - the image's code and constants, read-only and executable ([`Grant::Code`]);
//! - its own statics, the `.hvdata` section ([`Grant::HvData`]: the [`super::hv::HV`]
//!   instance, the console's and the link's state, the self-tests' relay recording);
//! - its own stack ([`Grant::HvStack`]);
//! - the caller window, where the ultravisor's shared pages are ([`Grant::CallerWindow`]);
//! - the SVMs' bounce pages ([`SHARED_PAGES`] pages of guest memory, [`shared_page`]);
//! - the console's and the TPM link's UART registers, cache-inhibited ([`Grant::Mmio`]).
//!
//! The ultravisor's statics, stacks and heap (its authValues, session keys and unwrapped
//! keys), the radix tables and skiboot are in none of them: a load from any of them stops
//! the partition with an HDSI before a byte is read (the `hv-isolation` self-test tries).
//!
//! Every hcall the ultravisor makes is *reflected* ([`call`]): the ultravisor enters the
//! partition at its hcall vector (`pefbox_hv_vector`, boot/partition.S) with the caller's
//! r3..r12 and its identity, the hypervisor serves it (`target::hv::service`) and answers with
//! the UV_RETURN ultracall (`sc 1`, r3 = [`papr::UV_RETURN`], r4 = status, r5..r13 =
//! outputs), which brings the ultravisor back; never a jump. While it serves the call it may
//! ask the ultravisor for an OPAL I2C transfer ([`papr::UV_PEFBOX_I2C`]: OPAL runs in
//! hypervisor state), for the devices the ultravisor allows, after which it is resumed.
//! Anything else that ends the
//! partition's run (a fault, a privileged instruction, a time budget spent) is reported in
//! one line naming the partition, the address and the cause, and the hcall answers
//! H_HARDWARE; the boot goes on.

use crate::arch::partition::{Exit, Grant, PartitionError, Partitions, Vector};
use crate::arch::{self, HcallFrame};
use crate::papr;
use ::hv::CallerId;

/// The hypervisor partition's LPID (the partition table's last entry; LPID 0 is the
/// ultravisor's own, 1 the SVM it acts for, 2 the self-tests' guest).
pub const HV_LPID: u32 = 255;

/// A reflected hcall as the partition's vector hands it to the hypervisor: the caller
/// (`LPID << 16 | PIR`, from the ultravisor) and r3..r12; on return `regs` holds the answer
/// (status, then the nine outputs).
#[repr(C)]
pub struct HvCall {
    /// Who made the call, as the ultravisor saw it.
    pub caller: u64,
    /// r3..r12 in; status and r4..r12 out.
    pub regs: [u64; 10],
}

/// The machine's partitions: the hypervisor partition (sealed at [`start`]) and whatever a
/// user [`lend`]s them for.
static MACHINE: spin::Mutex<Option<Partitions>> = spin::Mutex::new(None);

/// Pages of guest memory the SVMs share with the hypervisor (their bounce pages): handed out
/// and mapped into the hypervisor partition, at their own addresses, before it is sealed; an
/// SVM's partition maps one of them at an address of its own.
pub const SHARED_PAGES: usize = 4;

/// Host address of the first shared page (0 until [`start`]).
static SHARED_POOL: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The host address of shared page `index` (below [`SHARED_PAGES`]), once the partition
/// started.
pub fn shared_page(index: usize) -> Option<u64> {
    let base = SHARED_POOL.load(core::sync::atomic::Ordering::SeqCst);
    (base != 0 && index < SHARED_PAGES).then(|| base + 4096 * index as u64)
}

/// The I2C devices (OPAL bus id, 7-bit address) the hypervisor partition may reach through
/// [`papr::UV_PEFBOX_I2C`]: the TPM the device tree names, and whatever a self-test allows.
static I2C_ALLOWED: spin::Mutex<heapless::Vec<(u32, u16), 4>> =
    spin::Mutex::new(heapless::Vec::new());

/// Lets the hypervisor partition reach the device at `addr` on OPAL I2C bus `bus` (false if
/// four are already allowed).
pub fn allow_i2c(bus: u32, addr: u16) -> bool {
    let mut a = I2C_ALLOWED.lock();
    a.contains(&(bus, addr)) || a.push((bus, addr)).is_ok()
}

/// Takes back [`allow_i2c`].
pub fn disallow_i2c(bus: u32, addr: u16) {
    I2C_ALLOWED.lock().retain(|d| *d != (bus, addr));
}

/// Most ultracalls the hypervisor partition may make while it serves one reflected hcall
/// (a TPM command over I2C takes a few hundred register transfers).
const ULTRACALLS_PER_HCALL: u32 = 20_000;

/// OPAL_PERMISSION, as the ultravisor answers a refused UV_PEFBOX_I2C (OPAL_PARAMETER for
/// a malformed one).
const OPAL_PERMISSION: i64 = -8;

/// Serves the hypervisor partition's UV_PEFBOX_I2C (see [`papr::UV_PEFBOX_I2C`]): only for an
/// allowed device, only with a buffer in the partition's own writable memory, copied through a
/// buffer of the ultravisor's so OPAL never sees a partition address.
fn serve_i2c(p: &Partitions, f: &HcallFrame) -> i64 {
    use crate::platform::opal::{i2c_transfer, I2cError, I2cOp, OPAL_PARAMETER};
    let [op, bus, addr, reg, buf, len] =
        [f.gpr[4], f.gpr[5], f.gpr[6], f.gpr[7], f.gpr[8], f.gpr[9]];
    let op = match op {
        0 => I2cOp::Read,
        1 => I2cOp::Write,
        _ => return OPAL_PARAMETER,
    };
    let (Ok(bus), Ok(addr), Ok(reg)) = (u32::try_from(bus), u16::try_from(addr), u8::try_from(reg))
    else {
        return OPAL_PARAMETER;
    };
    if !I2C_ALLOWED.lock().contains(&(bus, addr)) {
        return OPAL_PERMISSION;
    }
    let n = match usize::try_from(len) {
        Ok(n @ 1..=256) => n,
        _ => return OPAL_PARAMETER,
    };
    let rw = radix::Access::READ | radix::Access::WRITE;
    let Some(host) = p.host_range(HV_LPID, buf, len, rw) else {
        return OPAL_PARAMETER;
    };
    let mut local = [0u8; 256];
    let data = &mut local[..n];
    if op == I2cOp::Write {
        for (i, b) in data.iter_mut().enumerate() {
            // SAFETY: [host, host + n) is memory the hypervisor partition's tree maps
            // read/write (host_range): the hypervisor's own, not the ultravisor's; the
            // partition is not running; a volatile byte read of plain RAM.
            *b = unsafe { core::ptr::read_volatile((host as *const u8).add(i)) };
        }
    }
    let rc = i2c_transfer(bus, addr, reg, op, data).map_or_else(I2cError::code, |()| 0);
    if rc == 0 && op == I2cOp::Read {
        for (i, b) in data.iter().enumerate() {
            // SAFETY: as above, writing the bytes read back into the partition's buffer.
            unsafe { core::ptr::write_volatile((host as *mut u8).add(i), *b) };
        }
    }
    rc
}

/// How the latest reflected hcall that got no answer ended (for the self-tests).
static LAST_STOP: spin::Mutex<Option<Exit>> = spin::Mutex::new(None);

/// How long one entry into the partition may run before the hypervisor decrementer brings
/// it back (the run then resumes where it was, up to [`BUDGET_SLICES`] times).
const SLICE_MS: u64 = 500;
/// Slices one reflected hcall may use: 40 s, beyond the TPM link's longest bound (30 s).
const BUDGET_SLICES: u32 = 80;

/// Why a reflected hcall got no answer.
#[derive(Debug)]
pub enum Stopped {
    /// The partition ended its run with something other than UV_RETURN.
    Exit(Exit),
    /// It made an hcall of its own (r3) instead of answering.
    Hcall(u64),
    /// It ran through its whole budget.
    Budget,
    /// The partitions refused the run.
    Partition(PartitionError),
    /// The partitions are lent to a self-test, or never started.
    Unavailable(&'static str),
}

impl core::fmt::Display for Stopped {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Stopped::Exit(e) => write!(f, "{e}"),
            Stopped::Hcall(nr) => write!(f, "stopped: it made hcall {nr:#x} instead of UV_RETURN"),
            Stopped::Budget => write!(
                f,
                "stopped: time budget of {} ms (or {ULTRACALLS_PER_HCALL} ultracalls) exhausted",
                SLICE_MS * u64::from(BUDGET_SLICES)
            ),
            Stopped::Partition(e) => write!(f, "not run: {e}"),
            Stopped::Unavailable(why) => write!(f, "not run: {why}"),
        }
    }
}

/// Builds the hypervisor partition: its tree maps the grants above and one page of
/// registers for each device in `devices` (MMIO addresses above `ram_top`), then it is
/// sealed. The partitions are the machine's from here on.
///
/// `control` (self-test image only, bootarg `hv-weakened`; always `None` otherwise) also
/// maps that one page of the ultravisor's own memory, read-only: the control that shows the
/// `hv-isolation` attempts read whatever the tree lets them.
pub fn start(ram_top: u64, devices: &[u64], control: Option<u64>) -> Result<(), PartitionError> {
    let mut p = Partitions::take()?;
    p.create(HV_LPID)?;
    for g in [
        Grant::Code,
        Grant::HvData,
        Grant::HvStack,
        Grant::CallerWindow,
    ] {
        p.grant(HV_LPID, g)?;
    }
    let pool = p.guest_pages(SHARED_PAGES)?;
    p.map(
        HV_LPID,
        pool,
        pool,
        4096 * SHARED_PAGES as u64,
        radix::Access::READ | radix::Access::WRITE,
    )?;
    let mut pages: heapless::Vec<u64, 4> = heapless::Vec::new();
    for page in devices.iter().map(|a| a & !0xFFF) {
        if !pages.contains(&page) {
            pages
                .push(page)
                .map_err(|_| PartitionError::NotDevice(page))?;
            p.grant(HV_LPID, Grant::Mmio { page, ram_top })?;
        }
    }
    #[cfg(feature = "selftest")]
    if let Some(page) = control {
        p.expose_read_only_for_the_control(HV_LPID, page, page)?;
    }
    #[cfg(not(feature = "selftest"))]
    let _ = control;
    p.mark();
    *MACHINE.lock() = Some(p);
    SHARED_POOL.store(pool, core::sync::atomic::Ordering::SeqCst);
    Ok(())
}

/// Lends the machine's partitions to `f` (a self-test, the SVM's run): every partition,
/// table and page of guest memory it makes is given back when it returns; the hypervisor
/// partition, sealed, cannot be changed by it.
pub fn lend<R>(
    f: impl FnOnce(&mut Partitions) -> Result<R, alloc::string::String>,
) -> Result<R, alloc::string::String> {
    let mut g = MACHINE.try_lock().ok_or("the partitions are in use")?;
    let p = g.as_mut().ok_or("the hypervisor partition did not start")?;
    let mark = p.mark();
    let r = f(p);
    let released = p.release(mark);
    let r = r?;
    released.map_err(|e| alloc::format!("giving the partitions back: {e}"))?;
    Ok(r)
}

/// The hypervisor partition's mappings, as (guest address, host address, length, access):
/// everything it can reach (the snoop self-test scans them).
pub fn mappings() -> Result<heapless::Vec<radix::Mapping, 32>, alloc::string::String> {
    let g = MACHINE.try_lock().ok_or("the partitions are in use")?;
    let p = g.as_ref().ok_or("the hypervisor partition did not start")?;
    p.mappings(HV_LPID).map_err(|e| alloc::format!("{e}"))
}

/// Reflects one hcall (`regs` = r3..r12 of `caller`) into the hypervisor partition and
/// returns its answer (status, r4..r12).
pub fn reflect(p: &Partitions, caller: CallerId, regs: [u64; 10]) -> Result<[u64; 10], Stopped> {
    extern "C" {
        fn pefbox_hv_vector();
    }
    if super::hv::HV.is_busy() {
        // Stopped inside an earlier call while it held its state: it would only wait on
        // itself until the budget ran out.
        return Err(Stopped::Unavailable(
            "it was stopped inside an earlier call, holding its state: it gets no more calls",
        ));
    }
    let mut frame = HcallFrame::zeroed();
    frame.srr0 = pefbox_hv_vector as *const () as u64;
    frame.gpr[3..=12].copy_from_slice(&regs);
    frame.gpr[14] = u64::from(caller.0);
    let slice = u32::try_from(arch::timebase_hz() / 1000 * SLICE_MS).unwrap_or(i32::MAX as u32);
    let (mut slices, mut ultracalls) = (0, 0);
    while slices < BUDGET_SLICES && ultracalls < ULTRACALLS_PER_HCALL {
        let exit = p
            .run(HV_LPID, &mut frame, slice.max(1))
            .map_err(Stopped::Partition)?;
        match exit.kind() {
            Some(Vector::Hdec) => {
                slices += 1;
                frame.srr0 = exit.hsrr0;
            }
            Some(Vector::Syscall) if frame.gpr[3] == papr::UV_PEFBOX_I2C => {
                ultracalls += 1;
                frame.gpr[3] = serve_i2c(p, &frame) as u64;
                frame.srr0 = exit.srr0;
            }
            Some(Vector::Syscall) if frame.gpr[3] == papr::UV_RETURN => {
                let mut out = [0u64; 10];
                out.copy_from_slice(&frame.gpr[4..=13]);
                return Ok(out);
            }
            Some(Vector::Syscall) => return Err(Stopped::Hcall(frame.gpr[3])),
            _ => return Err(Stopped::Exit(exit)),
        }
    }
    Err(Stopped::Budget)
}

/// An hcall of the ultravisor's own (its `sc 1` entry calls this): reflected into the
/// hypervisor partition ([`reflect_call`]).
pub fn call(caller: CallerId, nr: u64, args: [u64; 9]) -> papr::HcallResult {
    let r = match MACHINE.try_lock() {
        None => Err(Stopped::Unavailable("the partitions are in use")),
        Some(mut g) => match g.as_mut() {
            None => Err(Stopped::Unavailable(
                "the hypervisor partition did not start",
            )),
            Some(p) => reflect(p, caller, regs_of(nr, args)),
        },
    };
    answer(caller, nr, r)
}

/// Hcall `nr` with `args` from `caller`, reflected into the hypervisor partition: its answer,
/// or, when the partition gives none, a one-line report and H_HARDWARE.
pub fn reflect_call(
    p: &Partitions,
    caller: CallerId,
    nr: u64,
    args: [u64; 9],
) -> papr::HcallResult {
    answer(caller, nr, reflect(p, caller, regs_of(nr, args)))
}

/// r3..r12 of hcall `nr` with `args`.
fn regs_of(nr: u64, args: [u64; 9]) -> [u64; 10] {
    let mut regs = [0u64; 10];
    regs[0] = nr;
    regs[1..].copy_from_slice(&args);
    regs
}

/// The typed answer to a reflected hcall; a stop is reported (and kept for the self-tests)
/// and answers H_HARDWARE.
fn answer(caller: CallerId, nr: u64, r: Result<[u64; 10], Stopped>) -> papr::HcallResult {
    match r {
        Ok(r) => {
            let mut out = [0u64; 9];
            out.copy_from_slice(&r[1..]);
            papr::from_regs(r[0] as i64, out)
        }
        Err(why) => {
            if let Stopped::Exit(e) = &why {
                *LAST_STOP.lock() = Some(*e);
            }
            crate::println!(
                "uv: hypervisor partition (LPID {HV_LPID}) {why}; hcall {nr:#x} from LPID {} answered H_HARDWARE",
                caller.0
            );
            Err(papr::PaprError::from_status(papr::H_HARDWARE).unwrap_or(papr::PaprError::Resource))
        }
    }
}

/// How the latest reflected hcall that got no answer was stopped, if by an interrupt (taken:
/// the next call asks afresh).
pub fn take_last_stop() -> Option<Exit> {
    LAST_STOP.lock().take()
}

/// What [`scan`] found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Bytes of RAM the hypervisor partition maps, all read.
    pub bytes: u64,
    /// Ranges read.
    pub ranges: usize,
    /// Occurrences of each needle, in order.
    pub hits: heapless::Vec<usize, 4>,
}

/// Reads everything the hypervisor partition can reach in RAM (every mapping of its tree but
/// the device pages) and counts where each of `needles` occurs: what a hypervisor that went
/// looking could find.
pub fn scan(needles: &[&[u8]]) -> Result<Scan, alloc::string::String> {
    let mut out = Scan::default();
    for _ in needles {
        out.hits.push(0).map_err(|_| "at most 4 needles")?;
    }
    for m in mappings()? {
        if m.access.contains(radix::Access::CACHE_INHIBITED) {
            continue;
        }
        let len = usize::try_from(m.len).map_err(|_| "mapping too long")?;
        // SAFETY: [host, host + len) is RAM the hypervisor partition's tree maps (its code,
        // statics, stack, the caller window); the partition is not running (one hardware
        // thread, and this runs in the ultravisor), nothing writes it while this shared view
        // lives, and it is plain RAM, where any byte is a valid `u8`.
        let bytes = unsafe { core::slice::from_raw_parts(m.host as *const u8, len) };
        for (needle, hits) in needles.iter().zip(out.hits.iter_mut()) {
            if !needle.is_empty() {
                *hits += bytes.windows(needle.len()).filter(|w| w == needle).count();
            }
        }
        out.bytes += m.len;
        out.ranges += 1;
    }
    Ok(out)
}
