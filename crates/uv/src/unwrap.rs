//! The ultravisor's boot-time TPM sessions and the lockbox unwrap.
//!
//! [`UvSession::establish`] runs once at boot, through H_TPM_COMM (any [`Transport`]):
//! 1. `TPM2_ReadPublic(0x81800001)` and `TPM2_NV_ReadPublic(0x01400001)`: the Names
//!    recomputed from the returned public areas must equal the Names provisioning handed
//!    over ([`UvSecrets::wrapping_name`], [`UvSecrets::nv_name`]);
//! 2. `TPM2_StartAuthSession`: a POLICY session, SHA-256, AES-128-CFB, continueSession and
//!    encrypt, **salted** to the storage parent 0x81800000 whose Name is pinned
//!    ([`UvSecrets::parent_name`]; the client reads the public area, recomputes the Name
//!    and compares before encrypting the salt), kept for the boot.
//!
//! [`UvSession::unwrap`], per lockbox: PolicyCommandCode(RSA_Decrypt); PolicySecret(door
//! index) authorized by a one-shot HMAC session, also salted to the pinned parent, with
//! this boot's door authValue (the value enters only HMAC keys, never a byte on the link;
//! continueSession clear, so the TPM ends it with the command: the ultravisor holds one
//! TPM session between unwraps, as before, out of the three swtpm can load); then `TPM2_RSA_Decrypt(0x81800001, scheme NULL,
//! label empty)` with continueSession|encrypt. The wrapping key's own authValue is empty,
//! so the response's CFB key is the salted policy session's key alone, secret from the
//! hypervisor. The client verifies the response HMAC before it decrypts the response
//! parameter; the plaintext must be exactly 32 bytes. Any failure marks the sessions stale;
//! the next unwrap flushes them and establishes new ones. After every unwrap the client's
//! buffers are wiped ([`Tpm::wipe_buffers`]).
//!
//! Hostile hypervisor: a substituted key or index changes a Name in cpHash and fails the
//! HMAC at the TPM (and the pinned-Name checks here); a substituted parent cannot decrypt
//! the salt, so every HMAC fails; a forged or modified response fails the response HMAC
//! here. None of these yields a key.
#![forbid(unsafe_code)]

use fw::WRAPPING_HANDLE;
use fw::{UvSecrets, NV_HANDLE, PARENT_HANDLE, RSA2048_BYTES, SYMKEY_LEN};
use tpm::client::CommandSpec;
use tpm::consts::{alg, cc, sa};
use tpm::crypto;
use tpm::marshal::Reader;
use tpm::{
    Auth, Error, Name, Object, ResponseCode, SaltKey, Session, SessionKind, Tpm, Transport,
    TransportError,
};
use zeroize::Zeroize;

/// Which part of the flow a TPM error answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// ReadPublic / StartAuthSession.
    Establish,
    /// The policy commands.
    Policy,
    /// RSA_Decrypt.
    Decrypt,
    /// FlushContext.
    Close,
}

/// Why a session could not be established or a lockbox not unwrapped. `Display` is
/// the reason after `uv::svm`'s prefix: `svm: rejected: lockbox key not unwrapped:
/// <this>`, e.g. `TPM error 0x98e in RSA_Decrypt (...)` or `response authentication
/// failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnwrapError {
    /// The TPM answered with an error code.
    Tpm {
        /// During what.
        phase: Phase,
        /// The code.
        code: ResponseCode,
    },
    /// A response HMAC did not verify: the response was forged or modified.
    ResponseAuth,
    /// The key at 0x81800001 or 0x81800000 is not the one provisioning pinned.
    NameMismatch,
    /// The response is malformed (size, tag, session area, parameters).
    Malformed,
    /// The hcall (or other carrier) failed.
    Transport(TransportError),
    /// The unwrapped plaintext is not 32 bytes (its length).
    WrongLength(usize),
    /// Any other client failure (entropy, marshalling, sessions).
    Client(Error),
}

impl core::fmt::Display for UnwrapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            UnwrapError::Tpm { phase, code } => {
                let during = match phase {
                    Phase::Establish => "session setup",
                    Phase::Policy => "the policy commands",
                    Phase::Decrypt => "RSA_Decrypt",
                    Phase::Close => "FlushContext",
                };
                write!(f, "TPM error {:#x} in {during} ({code})", code.0)
            }
            UnwrapError::ResponseAuth => f.write_str("response authentication failed"),
            UnwrapError::NameMismatch => {
                f.write_str("TPM key is not the provisioned key (Name mismatch)")
            }
            UnwrapError::Malformed => f.write_str("malformed TPM response"),
            UnwrapError::Transport(e) => write!(f, "TPM unreachable: {e}"),
            UnwrapError::WrongLength(n) => {
                write!(f, "unwrapped key has {n} bytes, expected {SYMKEY_LEN}")
            }
            UnwrapError::Client(e) => write!(f, "TPM client: {e}"),
        }
    }
}

fn classify(phase: Phase) -> impl Fn(Error) -> UnwrapError {
    move |e| match e {
        Error::Tpm(code) => UnwrapError::Tpm { phase, code },
        Error::ResponseHmac { .. } => UnwrapError::ResponseAuth,
        Error::NameMismatch => UnwrapError::NameMismatch,
        Error::Parse(_) => UnwrapError::Malformed,
        Error::Transport(t) => UnwrapError::Transport(t),
        other => UnwrapError::Client(other),
    }
}

/// TPM_RC_REFERENCE_H0..H6 and TPM_RC_REFERENCE_S0..S6 (warnings 0x910..=0x91E): the
/// handle or session named does not exist at the TPM.
fn session_vanished(code: ResponseCode) -> bool {
    (0x910..=0x91E).contains(&code.0)
}

/// Session attributes the ultravisor sends: keep the session, encrypt the response.
const ATTRIBUTES: u8 = sa::CONTINUE_SESSION | sa::ENCRYPT;

/// The ultravisor's salted sessions to the wrapping key, kept for the boot.
pub struct UvSession {
    session: Session,
    auth: fw::NvAuth,
    key: Object,
    nv: Object,
    parent_name: Name,
    stale: bool,
}

impl core::fmt::Debug for UvSession {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("UvSession")
            .field("session", &self.session)
            .field("key", &self.key)
            .field("stale", &self.stale)
            .finish_non_exhaustive()
    }
}

impl Drop for UvSession {
    fn drop(&mut self) {
        (*self.auth).zeroize();
    }
}

fn start<T: Transport>(
    tpm: &mut Tpm<T>,
    wrapping_name: &Name,
    nv_name: &Name,
    parent_name: &Name,
) -> Result<Session, UnwrapError> {
    let (read, _) = tpm
        .read_public(WRAPPING_HANDLE)
        .map_err(classify(Phase::Establish))?;
    if !crypto::ct_eq(read.name.as_bytes(), wrapping_name.as_bytes()) {
        return Err(UnwrapError::NameMismatch);
    }
    let (nv, _) = tpm
        .nv_read_public(NV_HANDLE)
        .map_err(classify(Phase::Establish))?;
    if !crypto::ct_eq(nv.name.as_bytes(), nv_name.as_bytes()) {
        return Err(UnwrapError::NameMismatch);
    }
    tpm.start_auth_session(salt_key(parent_name), None, SessionKind::Policy, ATTRIBUTES)
        .map_err(classify(Phase::Establish))
}

fn salt_key(parent_name: &Name) -> SaltKey<'_> {
    SaltKey::Rsa {
        handle: PARENT_HANDLE,
        pinned_name: parent_name.as_bytes(),
    }
}

impl UvSession {
    /// Verifies the pinned Names and starts the salted sessions (see the module docs).
    /// `tpm` must be seeded (nonces and salts come from its mixer).
    pub fn establish<T: Transport>(
        tpm: &mut Tpm<T>,
        secrets: &UvSecrets,
    ) -> Result<UvSession, UnwrapError> {
        let session = start(
            tpm,
            &secrets.wrapping_name,
            &secrets.nv_name,
            &secrets.parent_name,
        )?;
        Ok(UvSession {
            session,
            auth: fw::nv_auth_from(&secrets.nv_auth),
            key: Object {
                handle: WRAPPING_HANDLE,
                name: secrets.wrapping_name.clone(),
            },
            nv: Object {
                handle: NV_HANDLE,
                name: secrets.nv_name.clone(),
            },
            parent_name: secrets.parent_name.clone(),
            stale: false,
        })
    }

    /// The TPM session handle (for diagnostics and tests).
    pub fn session_handle(&self) -> u32 {
        self.session.handle()
    }

    /// False after a failure until the next [`UvSession::unwrap`] re-establishes.
    pub fn is_fresh(&self) -> bool {
        !self.stale && self.session.is_open()
    }

    /// Unwraps one lockbox (RSA-2048 OAEP-SHA256, empty label) into its 32-byte key,
    /// re-establishing the session first if a previous call failed. On every outcome
    /// the client's buffers are wiped before this returns (the key is only in the
    /// returned value).
    pub fn unwrap<T: Transport>(
        &mut self,
        tpm: &mut Tpm<T>,
        encrypted_symkey: &[u8; RSA2048_BYTES],
    ) -> Result<[u8; SYMKEY_LEN], UnwrapError> {
        let mut result = self.unwrap_once(tpm, encrypted_symkey);
        // The session handle no longer exists at the TPM (it was reset, e.g. swtpm
        // restarted, or the session was flushed behind our back): the first policy command
        // is refused with TPM_RC_REFERENCE_*. The failed attempt marked the session stale,
        // so one retry establishes a new salted session (Names still pinned) and goes on.
        // Nothing about the retry trusts the refusal: at worst it costs one more session.
        if let Err(UnwrapError::Tpm {
            phase: Phase::Policy,
            code,
        }) = result
        {
            if session_vanished(code) {
                result = self.unwrap_once(tpm, encrypted_symkey);
            }
        }
        tpm.wipe_buffers();
        result
    }

    fn unwrap_once<T: Transport>(
        &mut self,
        tpm: &mut Tpm<T>,
        encrypted_symkey: &[u8; RSA2048_BYTES],
    ) -> Result<[u8; SYMKEY_LEN], UnwrapError> {
        if self.stale || !self.session.is_open() {
            // Best effort: the old handle may be gone or desynchronised.
            let _ = tpm.flush_session(&mut self.session);
            self.session = start(tpm, &self.key.name, &self.nv.name, &self.parent_name)?;
            self.stale = false;
        }
        self.stale = true;
        self.satisfy_policy(tpm)?;
        let key = self.decrypt(tpm, encrypted_symkey)?;
        self.stale = false;
        Ok(key)
    }

    fn satisfy_policy<T: Transport>(&mut self, tpm: &mut Tpm<T>) -> Result<(), UnwrapError> {
        let e = classify(Phase::Policy);
        tpm.policy_command_code(&mut self.session, cc::RSA_DECRYPT)
            .map_err(&e)?;
        // One-shot (continueSession clear): the TPM ends it when PolicySecret succeeds.
        let mut hmac = tpm
            .start_auth_session(salt_key(&self.parent_name), None, SessionKind::Hmac, 0)
            .map_err(&e)?;
        let r = tpm.policy_secret(
            &self.nv,
            &mut self.session,
            &mut [Auth::session(&mut hmac, &self.auth[..])],
        );
        if r.is_err() {
            let _ = tpm.flush_session(&mut hmac);
        }
        r.map_err(&e)
    }

    fn decrypt<T: Transport>(
        &mut self,
        tpm: &mut Tpm<T>,
        ciphertext: &[u8; RSA2048_BYTES],
    ) -> Result<[u8; SYMKEY_LEN], UnwrapError> {
        let e = classify(Phase::Decrypt);
        let spec = CommandSpec::RSA_DECRYPT;
        // The response must come back encrypted: refuse to send otherwise.
        if self.session.attributes() & sa::ENCRYPT == 0 {
            return Err(UnwrapError::Client(Error::BadSessions));
        }
        let reply = tpm
            .execute(
                &spec,
                &[&self.key],
                // The key's own authValue is empty (see fw's module docs).
                &mut [Auth::session(&mut self.session, &[])],
                |w| {
                    w.tpm2b(ciphertext)?;
                    w.u16(alg::NULL)?; // inScheme: the key's own (OAEP-SHA256)
                    w.tpm2b(&[]) // label: empty
                },
            )
            .map_err(&e)?;
        // Only reached after the response HMAC verified and the parameter was decrypted.
        let mut r = Reader::new(tpm.reply_params(&reply));
        let message = r.tpm2b(RSA2048_BYTES).map_err(|_| UnwrapError::Malformed)?;
        r.finish().map_err(|_| UnwrapError::Malformed)?;
        <[u8; SYMKEY_LEN]>::try_from(message).map_err(|_| UnwrapError::WrongLength(message.len()))
    }

    /// Flushes the session (nothing is left in the TPM) and forgets the authValue.
    pub fn close<T: Transport>(mut self, tpm: &mut Tpm<T>) -> Result<(), UnwrapError> {
        self.flush(tpm)
    }

    /// Flushes the session in the TPM but keeps this value (its authValue is wiped when it
    /// drops): for a caller that must free the TPM's session before it has a replacement
    /// to put in this one's place. Using it afterwards fails with a TPM error.
    pub fn flush<T: Transport>(&mut self, tpm: &mut Tpm<T>) -> Result<(), UnwrapError> {
        tpm.flush_session(&mut self.session)
            .map_err(classify(Phase::Close))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_well_after_svm_rejected() {
        let e = UnwrapError::Tpm {
            phase: Phase::Decrypt,
            code: ResponseCode(0x98e),
        };
        let t = format!("{e}");
        assert!(t.starts_with("TPM error 0x98e in RSA_Decrypt ("), "{t}");
        assert_eq!(
            format!("{}", UnwrapError::ResponseAuth),
            "response authentication failed"
        );
        assert_eq!(
            format!("{}", UnwrapError::WrongLength(31)),
            "unwrapped key has 31 bytes, expected 32"
        );
        assert_eq!(
            classify(Phase::Decrypt)(Error::ResponseHmac { session: 1 }),
            UnwrapError::ResponseAuth
        );
        assert_eq!(
            classify(Phase::Policy)(Error::Tpm(ResponseCode(0x184))),
            UnwrapError::Tpm {
                phase: Phase::Policy,
                code: ResponseCode(0x184)
            }
        );
    }
}
