//! Target glue for the hypervisor (powerpc64 only): the one unsafe guest-memory copy, the
//! machine's single [`Hypervisor`] instance, and its configuration from the boot facts.
//!
//! Caller memory: the image gives its caller (the ultravisor side, which runs in the same
//! image but reaches the hypervisor only through `sc 1`) one window of RAM, the linker
//! script's `__guest_start..__guest_end` (256 KiB, the last thing in the image; see
//! `platform::layout`). The hypervisor's own
//! image, stacks and heap, skiboot (`SKIBOOT_BASE..+SKIBOOT_SIZE`), low memory holding the
//! vectors, and everything above RAM (MMIO) are refused by the region table.

use crate::platform::tpm_uart::UartTpmLink;
use ::hv::{CallerId, CheckedRange, GuestMemory, GuestRange, Hypervisor, RegionTable};

use crate::platform::layout::{IMAGE_BASE, SKIBOOT_BASE, SKIBOOT_SIZE};

/// Real memory accessed by physical address (the image runs in real mode, so a
/// guest-physical address is the real address).
pub struct RealGuestMemory;

impl GuestMemory for RealGuestMemory {
    fn copy_from_guest(&self, src: &CheckedRange, dst: &mut [u8]) {
        let n = usize::try_from(src.len()).map_or(dst.len(), |l| l.min(dst.len()));
        // SAFETY: `src` was produced by RegionTable::check, so [start, start+len) lies inside
        // the caller window, which is plain RAM owned by neither the hypervisor's data nor
        // its stack; `dst` is the hypervisor's private buffer, so the two cannot overlap.
        unsafe { core::ptr::copy_nonoverlapping(src.start().0 as *const u8, dst.as_mut_ptr(), n) };
    }

    fn copy_to_guest(&self, dst: &CheckedRange, src: &[u8]) {
        let n = usize::try_from(dst.len()).map_or(src.len(), |l| l.min(src.len()));
        // SAFETY: as above, with the roles swapped: `dst` is checked caller memory, `src`
        // the hypervisor's private response buffer.
        unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), dst.start().0 as *mut u8, n) };
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

/// The machine's hypervisor: H_TPM_COMM over the UART link, relaying past [`Observer`].
pub static HV: Hypervisor<UartTpmLink, RealGuestMemory, Observer> =
    Hypervisor::new(RealGuestMemory, OBSERVER);

/// Configures [`HV`]: the caller window as the only caller region, and the link (None when
/// the device tree shows no TPM UART: then H_TPM_COMM answers H_FUNCTION). A bound given
/// in reverse (an end below its start) is refused as [`::hv::RegionError::Wraps`].
pub fn configure(link: Option<UartTpmLink>, ram_top: u64) -> Result<(), ::hv::RegionError> {
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
    HV.reserve_for(CallerId::of(super::uv::SVM_LPID, 0));
    Ok(())
}

/// The caller identity: the calling partition (LPIDR) and hardware thread (PIR), as
/// `LPID << 16 | PIR`. A real hypervisor tells partitions apart the same way.
pub fn caller() -> CallerId {
    CallerId::of(crate::arch::lpid(), crate::arch::pir())
}
