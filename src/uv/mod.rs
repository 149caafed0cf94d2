//! The ultravisor: the H_TPM_COMM client ([`hcall`]), the ESM blob format ([`esm`],
//! [`cpio`]) and the lockbox fingerprint of the TPM's wrapping key ([`pem`]). It shares no
//! state with the hypervisor: its only way there is the hcall (registers plus the shared
//! page), as between two separate firmwares.
#![forbid(unsafe_code)]

pub mod cpio;
pub mod esm;
pub mod hcall;
pub mod pem;
pub mod svm;
#[cfg(target_arch = "powerpc64")]
pub mod target;
pub mod unwrap;
