//! The ultravisor: the H_TPM_COMM client ([`hcall`]), the ESM blob format ([`esm`],
//! [`cpio`]), the boot-time session and the unwrap ([`unwrap`]) and the SVM's verification
//! ([`svm`]); the lockbox fingerprint of the TPM's wrapping key is `fw::pem`, the key contract. It shares no
//! state with the hypervisor: its only way there is the hcall (registers plus the shared
//! page), as between two separate firmwares.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod cpio;
pub mod esm;
pub mod hcall;
pub mod svm;
pub mod unwrap;
