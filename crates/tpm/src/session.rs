//! Authorization sessions: password, HMAC and policy (and trial) sessions.
//!
//! A [`Session`] holds what the caller must remember between commands: the session
//! handle, the session key (from the salt and/or the bind entity's authValue), the
//! latest nonces, the attributes to send, and for a policy session whether
//! PolicyAuthValue was asserted. The arithmetic itself is in
//! [`Tpm::execute`](super::client::Tpm) and [`crypto`].
//!
//! Rules implemented (TPM 2.0 Part 1, 19.6):
//! - HMAC key = sessionKey || authValue, where authValue is left out for the entity
//!   a session is bound to (HMAC sessions), left out unless PolicyAuthValue was
//!   asserted (policy sessions), and left out for sessions that only encrypt or audit.
//! - The same key (with "CFB" KDFa) encrypts the first parameter.
//! - nonceCaller is fresh for every command; nonceTPM is replaced only after the
//!   response HMAC verified.
#![forbid(unsafe_code)]

use super::attrs::SessionAttributes;
use super::consts::SHA256_SIZE;
use super::crypto;
use super::public::Object;

/// What kind of session this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// `TPM_SE_HMAC`: authorizes with the entity's authValue through an HMAC.
    Hmac,
    /// `TPM_SE_POLICY`: authorizes by satisfying the entity's authPolicy.
    Policy,
    /// `TPM_SE_TRIAL`: computes a policy digest; cannot authorize anything.
    Trial,
}

/// The `TPMA_SESSION` bits this client sends and checks in responses (audit is not
/// supported).
pub(super) const SUPPORTED: SessionAttributes = SessionAttributes::CONTINUE_SESSION
    .union(SessionAttributes::DECRYPT)
    .union(SessionAttributes::ENCRYPT);

/// An open TPM authorization session (SHA-256, AES-128-CFB).
pub struct Session {
    pub(super) handle: u32,
    pub(super) kind: SessionKind,
    pub(super) key: [u8; SHA256_SIZE],
    pub(super) key_len: usize,
    pub(super) nonce_tpm: [u8; SHA256_SIZE],
    pub(super) nonce_caller: [u8; SHA256_SIZE],
    pub(super) attributes: u8,
    pub(super) bind_id: Option<[u8; SHA256_SIZE]>,
    pub(super) policy_auth_value: bool,
    pub(super) open: bool,
}

impl core::fmt::Debug for Session {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session")
            .field("handle", &format_args!("{:#010x}", self.handle))
            .field("kind", &self.kind)
            .field("keyed", &(self.key_len != 0))
            .field("bound", &self.bind_id.is_some())
            .field("attributes", &format_args!("{:#04x}", self.attributes))
            .field("open", &self.open)
            .finish()
    }
}

impl Drop for Session {
    /// Wipes the session key (`zeroize`: volatile writes the compiler cannot elide).
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

/// Identifies a bind entity without keeping its authValue: SHA-256(Name || authValue).
pub(super) fn bind_id(name: &[u8], auth: &[u8]) -> [u8; SHA256_SIZE] {
    crypto::sha256(&[b"bind", name, crypto::auth_value_trimmed(auth)])
}

impl Session {
    /// The session handle.
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// The session kind.
    pub fn kind(&self) -> SessionKind {
        self.kind
    }

    /// True until the TPM closed it (continueSession clear) or it was flushed.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// True if the session has a session key (it was salted or bound).
    pub fn is_keyed(&self) -> bool {
        self.key_len != 0
    }

    /// The `TPMA_SESSION` bits sent with each command.
    pub fn attributes(&self) -> u8 {
        self.attributes
    }

    /// Sets the `TPMA_SESSION` bits sent with the next commands (see [`SessionAttributes`]); audit
    /// bits are not supported and are cleared.
    pub fn set_attributes(&mut self, attributes: u8) {
        self.attributes = attributes & SUPPORTED.bits();
    }

    /// True if PolicyAuthValue was asserted since the policy was last reset.
    pub fn policy_needs_auth_value(&self) -> bool {
        self.policy_auth_value
    }

    /// The session key (empty if neither salted nor bound).
    pub(super) fn key(&self) -> &[u8] {
        self.key.get(..self.key_len).unwrap_or(&[])
    }

    /// Whether the authValue of `entity` enters the HMAC and encryption key when
    /// this session authorizes it.
    pub(super) fn auth_value_needed(&self, entity: &Object, auth: &[u8]) -> bool {
        match self.kind {
            SessionKind::Policy | SessionKind::Trial => self.policy_auth_value,
            SessionKind::Hmac => match self.bind_id {
                Some(id) => !crypto::ct_eq(&id, &bind_id(entity.name.as_bytes(), auth)),
                None => true,
            },
        }
    }
}

/// How one command session slot is filled.
pub enum Auth<'s> {
    /// The password pseudo-session (`TPM_RS_PW`) carrying the authValue in clear.
    Password(&'s [u8]),
    /// An HMAC or policy session. For a slot that authorizes a handle, `auth_value`
    /// is that entity's authValue; for a slot past the authorized handles (an
    /// encrypt-only session) it is ignored.
    Session {
        /// The session.
        session: &'s mut Session,
        /// The authorized entity's authValue.
        auth_value: &'s [u8],
    },
}

impl<'s> Auth<'s> {
    /// An HMAC/policy session slot.
    pub fn session(session: &'s mut Session, auth_value: &'s [u8]) -> Self {
        Auth::Session {
            session,
            auth_value,
        }
    }

    /// A session used only for parameter encryption (no entity authorized).
    pub fn encrypt_only(session: &'s mut Session) -> Self {
        Auth::Session {
            session,
            auth_value: &[],
        }
    }
}
