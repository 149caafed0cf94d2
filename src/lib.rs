//! pefbox: both sides of the PEF hypercall H_TPM_COMM for POWER9 powernv.
//!
//! The image crate: the arch, the platform, the target glue that gives the portable role
//! crates their hardware, and the self-tests. The roles are crates of their own (under
//! `crates/`, each `#![forbid(unsafe_code)]`, re-exported here), so the compiler holds
//! their boundaries; `tests-qemu/tests/layering.rs` holds the allowed edges between them
//! (`uv` and `hv` never reach each other). The image's entry point is `src/main.rs`.
//!
//! Crate and module map (see README.md for the picture):
//! - [`papr`]: the hypercall specification as constants and the typed return (portable).
//! - [`base64`]: standard base64 encoding (portable).
//! - [`dtb`]: a panic-free flattened device tree reader, and the writer of host tools (portable).
//! - [`tpm`]: TPM 2.0 wire format, marshalling, commands, sessions and their crypto (portable).
//! - [`tpm_i2c`]: the TPM FIFO protocol over I2C (NPCT650 and TCG I2C maps) behind a bus and
//!   a clock seam (portable; host-tested against register-level simulators only).
//! - [`fw`]: firmware provisioning of the ultravisor's TPM keys, the key layout and the
//!   wrapping key's fingerprint: the contract both sides share (portable).
//! - [`hv`]: the hypervisor: H_TPM_COMM, guest memory, session slots, the resource manager.
//! - [`uv`]: the ultravisor: hcall client, boot-time session, ESM unwrap, SVM verification.
//! - [`bootargs`]: the bootargs lookup and number syntax (portable).
//! - [`report`]: the console protocol the image speaks and the verdict reads (portable).
//! - [`platform`]: device-tree facts (portable) and, on the target, OPAL, UARTs, console.
//! - `arch`, `target` (powerpc64 only): vectors, registers, and the roles' target glue.
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
pub use dtb;
pub use fw;
pub use hv;
pub use papr;
pub mod report;
#[cfg(any(test, feature = "selftest"))]
pub mod selftest;
pub use tpm;
pub use tpm_i2c;
pub use uv;

#[cfg(target_arch = "powerpc64")]
pub mod arch;
pub mod platform;
#[cfg(target_arch = "powerpc64")]
pub mod target;
