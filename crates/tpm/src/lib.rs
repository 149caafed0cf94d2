//! TPM 2.0 client: marshalling, commands, sessions and their crypto.
//!
//! Portable (`no_std`, no `unsafe`), host-tested. Talks to a TPM only through
//! [`transport::Transport`]: the ultravisor's implementation is H_TPM_COMM, the
//! hypervisor's is its link to the TPM, host tests use swtpm's socket.
//!
//! Layers, bottom up: [`wire`] (the header, command codes and fixed commands), [`marshal`]
//! (panic-free big-endian reader/writer for variable bodies), [`consts`],
//! [`rc`] (response codes), [`public`] (public areas, Names, templates, PCR
//! selections), [`crypto`] (session arithmetic), [`entropy`] (the nonce/salt mixer),
//! [`session`] and [`policy`], and [`client`] (the [`Tpm`] with one method per command).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod attrs;
pub mod client;
pub mod consts;
pub mod crypto;
pub mod entropy;
pub mod marshal;
pub mod policy;
pub mod public;
pub mod rc;
pub mod session;
pub mod transport;
pub mod wire;

#[cfg(test)]
mod fuzz;

pub use client::{Error, KeyBlob, SaltKey, Tpm};
pub use entropy::{EntropySource, Mixer};
pub use public::{Name, Object, Template};
pub use rc::ResponseCode;
pub use session::{Auth, Session, SessionKind};
pub use transport::{Transport, TransportError};
