//! The TPM 2.0 client: one method per command, over any [`Transport`].
//!
//! Every command goes through [`Tpm::execute`]'s single path: marshal the parameters,
//! encrypt the first one if a session has `decrypt`, compute cpHash and each
//! session's HMAC, send, then treat the response as hostile: check tag, size and
//! response code, split handles / parameters / authorization area (each entry
//! bounds-checked), verify every response HMAC over rpHash, and only then roll the
//! nonces and decrypt the first response parameter. Command methods parse the
//! parameters after that, again with the panic-free [`Reader`](crate::marshal::Reader).
#![forbid(unsafe_code)]
// Builds commands and takes apart hostile responses: no panics, no silent wrap or truncation.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
#![deny(clippy::panic, clippy::arithmetic_side_effects)]
#![deny(clippy::cast_possible_truncation)]

mod decrypt;
mod execute;
mod hierarchy;
mod objects;
mod sessions;

use crate::crypto::CryptoError;
use crate::entropy::{EntropyError, EntropySource, Mixer};
use crate::marshal::{ParseError, WriteError};
use crate::public::Name;
use crate::rc::ResponseCode;
use crate::transport::{Transport, TransportError, MAX_TPM_MESSAGE};

pub use execute::{no_delay, Delay, RETRY_BUDGET_MS, RETRY_DELAYS_MS};
pub use hierarchy::CC_HIERARCHY_CHANGE_AUTH;

/// Largest marshalled public area or private blob this client keeps.
pub const MAX_BLOB: usize = 1024;
/// Largest number of sessions in one command (the TPM limit).
pub const MAX_SESSIONS: usize = 3;
/// Largest authValue accepted (a SHA-512 digest; SHA-256 objects allow 32).
pub const MAX_AUTH: usize = 64;

/// An owned marshalled structure (a `TPMT_PUBLIC` or the contents of a `TPM2B_PRIVATE`).
pub type Blob = heapless::Vec<u8, MAX_BLOB>;

/// Why a TPM operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The bytes did not make the round trip.
    Transport(TransportError),
    /// The TPM answered with an error code.
    Tpm(ResponseCode),
    /// The response is malformed.
    Parse(ParseError),
    /// The command could not be marshalled (too large).
    Marshal(WriteError),
    /// A response HMAC did not verify (1-based session number): nothing from the
    /// response was used.
    ResponseHmac {
        /// The session whose HMAC failed.
        session: u8,
    },
    /// A key's Name is not the pinned Name (or the TPM's claimed Name disagrees with
    /// the Name computed from the public area).
    NameMismatch,
    /// A key is not of the type or shape the operation needs.
    WrongKey,
    /// Salt encryption failed.
    Crypto(CryptoError),
    /// The platform entropy source failed.
    Entropy(EntropyError),
    /// A nonce or salt was needed before [`Tpm::seed_entropy`] (or [`Tpm::with_mixer`]).
    NoEntropy,
    /// The sessions given do not fit the command: too few for its authorized
    /// handles, more than three, a closed or trial session authorizing, two
    /// sessions asking for the same encryption, or encryption of a command whose
    /// first parameter cannot be encrypted.
    BadSessions,
    /// A caller-supplied value is out of range (size, count).
    BadArgument,
    /// The caller's output buffer is too small for the result.
    BufferTooSmall,
}

/// `impl From<E> for Error` wrapping `E` in its variant, for each `E => Variant`.
macro_rules! error_from {
    ($($source:ty => $variant:ident),* $(,)?) => {
        $(impl From<$source> for Error {
            fn from(e: $source) -> Self {
                Error::$variant(e)
            }
        })*
    };
}

error_from! {
    TransportError => Transport,
    ParseError => Parse,
    WriteError => Marshal,
    CryptoError => Crypto,
    EntropyError => Entropy,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Transport(e) => write!(f, "transport: {e}"),
            Error::Tpm(rc) => write!(f, "TPM error: {rc}"),
            Error::Parse(e) => write!(f, "malformed response: {e}"),
            Error::Marshal(e) => write!(f, "command: {e}"),
            Error::ResponseHmac { session } => {
                write!(f, "response HMAC of session {session} does not verify")
            }
            Error::NameMismatch => f.write_str("key Name does not match the pinned Name"),
            Error::WrongKey => f.write_str("key has the wrong type or shape"),
            Error::Crypto(e) => write!(f, "crypto: {e}"),
            Error::Entropy(e) => write!(f, "{e}"),
            Error::NoEntropy => f.write_str("random source not seeded"),
            Error::BadSessions => f.write_str("sessions do not fit the command"),
            Error::BadArgument => f.write_str("argument out of range"),
            Error::BufferTooSmall => f.write_str("output buffer too small"),
        }
    }
}

/// The key a session's salt is encrypted to, identified by handle and the Name
/// the caller pinned (obtained out of band: provisioning, a device tree, a build).
#[derive(Debug, Clone, Copy)]
pub enum SaltKey<'a> {
    /// Unsalted (`tpmKey = TPM_RH_NULL`).
    None,
    /// An RSA decryption key: the salt is RSA-OAEP(SHA-256, "SECRET") encrypted.
    Rsa {
        /// The key's handle.
        handle: u32,
        /// The Name the key must have.
        pinned_name: &'a [u8],
    },
    /// An ECC P-256 decryption key: the salt comes from ephemeral ECDH and KDFe.
    Ecc {
        /// The key's handle.
        handle: u32,
        /// The Name the key must have.
        pinned_name: &'a [u8],
    },
}

/// A key created by `TPM2_Create`, to be loaded with [`Tpm::load`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyBlob {
    /// The contents of the `TPM2B_PRIVATE` (encrypted by the parent).
    pub private: Blob,
    /// The marshalled `TPMT_PUBLIC`.
    pub public: Blob,
}

/// The static shape of a command, for [`Tpm::execute`].
#[derive(Debug, Clone, Copy)]
pub struct CommandSpec {
    /// Command code.
    pub cc: u32,
    /// How many of the leading handles need authorization.
    pub auth_handles: usize,
    /// How many handles the response carries (0 or 1).
    pub response_handles: usize,
    /// The first command parameter is a TPM2B and may be encrypted.
    pub encrypt_command: bool,
    /// The first response parameter is a TPM2B and may be encrypted.
    pub encrypt_response: bool,
}

impl CommandSpec {
    /// Command `cc` whose first `auth_handles` handles are authorized, with no response
    /// handle and neither parameter encrypted (the `with_*` methods add those).
    pub const fn new(cc: u32, auth_handles: usize) -> Self {
        CommandSpec {
            cc,
            auth_handles,
            response_handles: 0,
            encrypt_command: false,
            encrypt_response: false,
        }
    }

    /// The same command, whose response carries one handle.
    pub const fn with_response_handle(self) -> Self {
        CommandSpec {
            response_handles: 1,
            ..self
        }
    }

    /// The same command, whose first command parameter is a TPM2B that may be encrypted.
    pub const fn with_command_encryption(self) -> Self {
        CommandSpec {
            encrypt_command: true,
            ..self
        }
    }

    /// The same command, whose first response parameter is a TPM2B that may be encrypted.
    pub const fn with_response_encryption(self) -> Self {
        CommandSpec {
            encrypt_response: true,
            ..self
        }
    }
}

/// Where a successful response's pieces are in the client's response buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The response handle (0 if the command returns none).
    pub handle: u32,
    /// Offset range of the (decrypted) parameter area.
    pub params: core::ops::Range<usize>,
}

/// Refuses a Name that is not `expected` (constant-time comparison).
fn expect_name(name: &Name, expected: &[u8]) -> Result<(), Error> {
    if !crate::crypto::ct_eq(name.as_bytes(), expected) {
        return Err(Error::NameMismatch);
    }
    Ok(())
}

/// Keeps a marshalled structure read from a response (refused if larger than [`MAX_BLOB`]).
fn blob(bytes: &[u8]) -> Result<Blob, ParseError> {
    Blob::from_slice(bytes).map_err(|_| ParseError::TooLarge)
}

/// A TPM 2.0 client over a transport, with fixed command and response buffers.
pub struct Tpm<T: Transport> {
    transport: T,
    rng: Option<Mixer>,
    cmd: [u8; MAX_TPM_MESSAGE],
    rsp: [u8; MAX_TPM_MESSAGE],
    delay: Delay,
    waited_ms: u64,
    executed: u32,
    #[cfg(feature = "observe-secrets")]
    observer: Option<fn(&[u8])>,
}

impl<T: Transport> Tpm<T> {
    /// A client without a seeded random source: call [`Tpm::seed_entropy`] before
    /// starting sessions.
    pub fn new(transport: T) -> Self {
        Tpm {
            transport,
            rng: None,
            cmd: [0u8; MAX_TPM_MESSAGE],
            rsp: [0u8; MAX_TPM_MESSAGE],
            delay: no_delay,
            waited_ms: 0,
            executed: 0,
            #[cfg(feature = "observe-secrets")]
            observer: None,
        }
    }

    /// Test builds only (feature `observe-secrets`): `f` is called with every value this
    /// client treats as secret: the plaintext of each encrypted command parameter, each
    /// salt, each session key and each authValue that keys an HMAC. A test can then
    /// search the link for them.
    #[cfg(feature = "observe-secrets")]
    pub fn set_secret_observer(&mut self, f: Option<fn(&[u8])>) {
        self.observer = f;
    }

    #[allow(unused_variables)]
    fn observe(&self, secret: &[u8]) {
        #[cfg(feature = "observe-secrets")]
        if let Some(f) = self.observer {
            if !secret.is_empty() {
                f(secret);
            }
        }
    }

    /// Sets the wait used between re-sends of a command the TPM did not start (see
    /// [`RETRY_DELAYS_MS`]).
    pub fn set_delay(&mut self, delay: Delay) {
        self.delay = delay;
    }

    /// Commands sent so far (each counted once, however often it was re-sent).
    pub fn commands_executed(&self) -> u32 {
        self.executed
    }

    /// Milliseconds spent waiting to re-send not-started commands so far.
    pub fn retry_waited_ms(&self) -> u64 {
        self.waited_ms
    }

    /// A client using an already seeded mixer.
    pub fn with_mixer(transport: T, mixer: Mixer) -> Self {
        let mut t = Tpm::new(transport);
        t.rng = Some(mixer);
        t
    }

    /// The transport.
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Gives the transport back.
    pub fn into_transport(self) -> T {
        self.transport
    }

    /// Seeds (or reseeds) the random source: 32 bytes of `TPM2_GetRandom` mixed with
    /// platform entropy (see [`entropy`](super::entropy)).
    pub fn seed_entropy(&mut self, platform: &mut dyn EntropySource) -> Result<(), Error> {
        let mut tpm_bytes = [0u8; 32];
        let n = self.get_random(&mut tpm_bytes)?;
        let tpm_bytes = tpm_bytes.get(..n).unwrap_or(&[]);
        match self.rng.as_mut() {
            Some(m) => m.reseed(platform, tpm_bytes)?,
            None => self.rng = Some(Mixer::new(platform, tpm_bytes)?),
        }
        Ok(())
    }

    /// Fills `out` from the client's mixer (for callers needing fresh secrets).
    pub fn random(&mut self, out: &mut [u8]) -> Result<(), Error> {
        self.rng.as_mut().ok_or(Error::NoEntropy)?.generate(out);
        Ok(())
    }

    /// Overwrites the command and response buffers with zeros (`zeroize`: volatile
    /// writes the compiler cannot elide). Both buffers keep the last command and response until the next
    /// command overwrites them, including decrypted response parameters such as an
    /// unwrapped key: call this once such a value has been copied out. Any [`Reply`]
    /// obtained earlier then reads as zeros.
    pub fn wipe_buffers(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.cmd[..]);
        zeroize::Zeroize::zeroize(&mut self.rsp[..]);
    }

    /// True if both buffers are all zero (after [`Tpm::wipe_buffers`], before the next
    /// command). For tests and diagnostics.
    pub fn buffers_are_clear(&self) -> bool {
        self.cmd.iter().chain(self.rsp.iter()).all(|&b| b == 0)
    }

    /// True if `needle` (non-empty) occurs at any offset of the command or the
    /// response buffer (whole buffers, not only the last message's length). For tests
    /// that check a secret does not linger in the client.
    pub fn buffers_contain(&self, needle: &[u8]) -> bool {
        !needle.is_empty()
            && (self.cmd.windows(needle.len()).any(|w| w == needle)
                || self.rsp.windows(needle.len()).any(|w| w == needle))
    }

    /// The parameter bytes of a reply returned by [`Tpm::execute`].
    pub fn reply_params(&self, reply: &Reply) -> &[u8] {
        self.rsp.get(reply.params.clone()).unwrap_or(&[])
    }
}

/// A mutable reference to a transport is a transport (so a caller can keep
/// ownership, e.g. to inspect a recording transport afterwards).
impl<T: Transport + ?Sized> Transport for &mut T {
    fn transact(&mut self, command: &[u8], response: &mut [u8]) -> Result<usize, TransportError> {
        (**self).transact(command, response)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
#[allow(clippy::panic, clippy::arithmetic_side_effects)]
#[allow(clippy::cast_possible_truncation)]
// Test code: a panic there is a failed test.
mod retry_tests;
