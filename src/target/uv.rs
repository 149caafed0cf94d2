//! The ultravisor as the image runs it (powerpc64 only, safe code): its TPM client over real
//! `sc 1` H_TPM_COMM (reflected into the hypervisor partition) with the shared page of the
//! caller window, the boot-time salted session, and finding the SVM the platform loaded (which
//! `target::svm` then runs).
//!
//! The firmware's handoff ([`UvSecrets`]) arrives as a Rust value and stays in the
//! ultravisor's own memory (the image's heap and statics, which no partition's tree maps);
//! only the shared page (`platform::layout::pages::UV_SHARED`) is ever named to the hypervisor.

use crate::bootargs::bootarg;
use crate::fw::UvSecrets;
use crate::platform::bootinfo::BootInfo;
use crate::platform::layout::{self, pages, RealHypercall, WindowPage};
use crate::tpm::Tpm;
use ::uv::hcall::HcallTransport;
use ::uv::svm::{self, Rejection, SvmPayload};
use ::uv::unwrap::{UnwrapError, UvSession};
use alloc::format;
use alloc::string::String;

/// The caller identity the ultravisor's own H_TPM_COMM calls carry (its boot-time session):
/// one past the last LPID the partition table holds, so no partition is ever taken for it.
/// (Calls on an SVM's behalf carry that SVM's LPID, `target::svm`; the host's own, such as
/// the hypervisor self-tests', LPID 0.)
pub const UV_CALLER: u32 = 256;

/// The ultravisor's TPM client: commands travel through H_TPM_COMM.
pub type UvTpm = Tpm<HcallTransport<RealHypercall, WindowPage>>;

/// The running ultravisor.
pub struct Uv {
    /// Its TPM client.
    pub tpm: UvTpm,
    /// The salted policy session kept for the boot.
    pub session: UvSession,
    /// The firmware's handoff (kept for re-establishing, and for the snoop self-test's
    /// search of the relayed bytes).
    pub secrets: UvSecrets,
    /// The wrapping key's modulus (the self-tests encrypt synthetic lockboxes to it).
    pub modulus: heapless::Vec<u8, 512>,
}

/// The one ultravisor instance (None until [`start`] succeeds).
pub static UV: spin::Mutex<Option<Uv>> = spin::Mutex::new(None);

/// A TPM client over H_TPM_COMM on the ultravisor's shared page, seeded with TPM and `darn`
/// entropy.
pub fn client() -> Result<UvTpm, String> {
    let page = WindowPage::new(pages::UV_SHARED).ok_or("caller window too small")?;
    let mut tpm = Tpm::new(HcallTransport::new(RealHypercall { lpid: UV_CALLER }, page));
    tpm.set_delay(crate::arch::delay_ms);
    tpm.seed_entropy(&mut crate::arch::Darn)
        .map_err(|e| format!("seeding entropy: {e}"))?;
    Ok(tpm)
}

/// Starts the ultravisor: client, pinned-Name salted session. Stores it in [`UV`].
pub fn start(secrets: UvSecrets, modulus: &[u8]) -> Result<u32, String> {
    let mut tpm = client()?;
    let session = UvSession::establish(&mut tpm, &secrets).map_err(|e| format!("{e}"))?;
    let handle = session.session_handle();
    let modulus = heapless::Vec::from_slice(modulus).map_err(|_| "modulus too large")?;
    *UV.lock() = Some(Uv {
        tpm,
        session,
        secrets,
        modulus,
    });
    Ok(handle)
}

/// Unwraps one lockbox with the boot's session.
pub fn unwrap(ek: &[u8; 256]) -> Result<[u8; 32], UnwrapError> {
    let mut g = UV.lock();
    let uv = g.as_mut().ok_or(UnwrapError::Malformed)?;
    let Uv { tpm, session, .. } = uv;
    session.unwrap(tpm, ek)
}

/// What the platform gave for an SVM.
pub enum SvmInput {
    /// No ESM blob range and no initrd: nothing to open.
    None,
    /// An SVM to open.
    Some {
        /// The ESM blob.
        blob: &'static [u8],
        /// The SVM's own initrd (after the ESM cpio).
        initrd: &'static [u8],
        /// The kernel and bootargs loaded by the platform, and the RTAS image.
        payload: SvmPayload<'static>,
    },
}

fn region(info: &BootInfo<'_>, key: &str, ram_top: u64) -> Result<&'static [u8], Rejection> {
    let Some(v) = bootarg(info.bootargs, key) else {
        return Ok(&[]);
    };
    let bad = |why: String| Rejection::Unwrap(format!("bootarg {key}={v}: {why}"));
    let (a, l) = crate::bootargs::parse_range(v).map_err(|e| bad(e.into()))?;
    layout::payload(a, l, ram_top).map_err(|e| bad(format!("{e}")))
}

/// Finds the SVM's parts: the ESM blob (`/chosen linux,esm-blob-*` or the initrd's ESM
/// cpio), the kernel (`svm-kernel=ADDR,LEN`) and bootargs (`svm-bootargs=ADDR,LEN`).
pub fn svm_input(info: &BootInfo<'_>, ram_top: u64) -> Result<SvmInput, Rejection> {
    let range = |r: Option<(u64, u64)>, what: &str| -> Result<Option<&'static [u8]>, Rejection> {
        match r {
            None => Ok(None),
            Some((s, e)) => layout::payload(s, e - s, ram_top)
                .map(Some)
                .map_err(|err| Rejection::Unwrap(format!("{what}: {err}"))),
        }
    };
    let blob = range(info.esm_blob, "ESM blob")?;
    let initrd = range(info.initrd, "initrd")?;
    if blob.is_none() && initrd.is_none() {
        return Ok(SvmInput::None);
    }
    let (blob, initrd) = svm::locate(blob, initrd)?;
    let kernel = region(info, "svm-kernel", ram_top)?;
    let bootargs = region(info, "svm-bootargs", ram_top)?;
    Ok(SvmInput::Some {
        blob,
        initrd,
        payload: SvmPayload {
            kernel,
            bootargs,
            rtas: &::uv::esm::DEFAULT_RTAS,
        },
    })
}
