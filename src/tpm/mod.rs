//! TPM 2.0 client: marshalling, commands, sessions and their crypto.
//!
//! Portable (`no_std`, no `unsafe`), host-tested. Talks to a TPM only through
//! [`transport::Transport`]: the ultravisor's implementation is H_TPM_COMM, the
//! hypervisor's is its link to the TPM, host tests use swtpm's socket.
#![forbid(unsafe_code)]

pub mod crypto;
pub mod transport;
pub use transport::{Transport, TransportError};
