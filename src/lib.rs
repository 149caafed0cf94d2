//! pefbox: both sides of the PEF hypercall H_TPM_COMM for POWER9 powernv.
//!
//! The library holds everything that can be compiled and unit-tested on the host
//! (`cargo test`), plus, on `powerpc64` only, the thin target layer (`arch`, the
//! register-poking parts of `platform`). The image's entry point is `src/main.rs`.
//!
//! Module map (see README.md for the picture):
//! - [`papr`]: the hypercall specification as constants (portable).
//! - [`base64`]: standard base64 encoding (portable).
//! - [`dtb`]: a panic-free flattened device tree reader (portable).
//! - [`tpm`]: TPM 2.0 marshalling, commands, sessions and their crypto (portable).
//! - [`fw`]: firmware provisioning of the ultravisor's TPM keys, and the key layout (portable).
//! - [`hv`]: the hypervisor: hcall dispatch, H_TPM_COMM, guest memory, session slots, links.
//! - [`uv`]: the ultravisor: hcall client, boot-time session, ESM unwrap.
//! - [`bootargs`]: the bootargs lookup and number syntax (portable).
//! - [`report`]: the count line every image ends its console with (portable).
//! - `selftest` (feature `selftest`, and host tests): named in-image tests and their hooks.
//!
//! Features: `selftest` builds the self-test image (`cargo pef run`, the boot tests); without
//! it the image is the one to flash (`cargo pef build`), which carries no test hooks.
//! `test-util` gives host tests the test doubles (`hv::FakeGuestMemory`, the tampering
//! `hv::Meddler` observer); `observe-secrets` lets them see the TPM client's secrets.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub use base64;
pub mod bootargs;
pub mod dtb;
pub mod fw;
pub mod hv;
pub use papr;
pub mod report;
#[cfg(any(test, feature = "selftest"))]
pub mod selftest;
pub use tpm;
pub mod uv;

#[cfg(target_arch = "powerpc64")]
pub mod arch;
pub mod platform;
