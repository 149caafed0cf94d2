//! Sessions and policy: StartAuthSession (salted, bound), flushing a session, and the policy
//! commands.

use super::{CommandSpec, Error, Reply, SaltKey, Tpm};
use crate::consts::alg;
use crate::consts::cc;
use crate::consts::rh;
use crate::consts::se;
use crate::consts::SHA256_SIZE;
use crate::crypto;
use crate::marshal::{ParseError, Reader, WriteError, Writer};
use crate::policy::PolicyDigest;
use crate::public::{Name, Object, PcrSelection, Public, PublicDetail};
use crate::session::{bind_id, Auth, Session, SessionKind};
use crate::transport::{Transport, MAX_TPM_MESSAGE};

/// Refuses a session that is closed or not a policy (or trial) session.
fn policy_session_open(session: &Session) -> Result<(), Error> {
    if !session.open || session.kind == SessionKind::Hmac {
        return Err(Error::BadSessions);
    }
    Ok(())
}

impl<T: Transport> Tpm<T> {
    /// Flushes a session and marks it closed (a closed session is not sent again).
    pub fn flush_session(&mut self, session: &mut Session) -> Result<(), Error> {
        if session.open {
            self.flush_context(session.handle)?;
            session.open = false;
        }
        Ok(())
    }

    /// `TPM2_StartAuthSession` with SHA-256 and AES-128-CFB.
    ///
    /// `salt`: the key the salt is encrypted to; its public area is read back and its
    /// Name recomputed here and compared with the pinned Name before it is used.
    /// `bind`: the bind entity and its authValue. `attributes`: the `TPMA_SESSION`
    /// bits sent with each later command (continueSession, decrypt, encrypt).
    pub fn start_auth_session(
        &mut self,
        salt: SaltKey<'_>,
        bind: Option<(&Object, &[u8])>,
        kind: SessionKind,
        attributes: u8,
    ) -> Result<Session, Error> {
        if self.rng.is_none() {
            return Err(Error::NoEntropy);
        }
        let mut salt_value = [0u8; SHA256_SIZE];
        let mut salt_len = 0usize;
        let mut secret = [0u8; 512];
        let mut secret_len = 0usize;
        let tpm_key = match salt {
            SaltKey::None => Object::permanent(rh::NULL),
            SaltKey::Rsa {
                handle,
                pinned_name,
            }
            | SaltKey::Ecc {
                handle,
                pinned_name,
            } => {
                let blob = self.read_pinned_public(handle, pinned_name)?;
                let public = Public::parse(&blob)?;
                if public.attributes & crate::consts::attr::DECRYPT == 0
                    || public.name_alg != alg::SHA256
                {
                    return Err(Error::WrongKey);
                }
                let rng = self.rng.as_mut().ok_or(Error::NoEntropy)?;
                match (salt, public.detail) {
                    (
                        SaltKey::Rsa { .. },
                        PublicDetail::Rsa {
                            exponent, modulus, ..
                        },
                    ) => {
                        rng.generate(&mut salt_value);
                        salt_len = SHA256_SIZE;
                        secret_len = crypto::rsa_oaep_encrypt_salt(
                            modulus,
                            exponent,
                            &salt_value,
                            rng,
                            &mut secret,
                        )?;
                    }
                    (SaltKey::Ecc { .. }, PublicDetail::Ecc { curve, x, y, .. }) => {
                        if curve != crate::consts::ECC_NIST_P256 {
                            return Err(Error::WrongKey);
                        }
                        let tx = <[u8; 32]>::try_from(x).map_err(|_| Error::WrongKey)?;
                        let ty = <[u8; 32]>::try_from(y).map_err(|_| Error::WrongKey)?;
                        let (s, ex, ey) = crypto::ecc_p256_salt(&tx, &ty, rng)?;
                        salt_value = s;
                        salt_len = SHA256_SIZE;
                        let mut w = Writer::new(&mut secret);
                        w.tpm2b(&ex)?;
                        w.tpm2b(&ey)?;
                        secret_len = w.len();
                    }
                    _ => return Err(Error::WrongKey),
                }
                Object {
                    handle,
                    name: Name::from_handle(handle),
                }
            }
        };
        let bind_obj = match bind {
            Some((o, _)) => o.clone(),
            None => Object::permanent(rh::NULL),
        };
        let mut nonce_caller = [0u8; SHA256_SIZE];
        self.random(&mut nonce_caller)?;
        let se_type = match kind {
            SessionKind::Hmac => se::HMAC,
            SessionKind::Policy => se::POLICY,
            SessionKind::Trial => se::TRIAL,
        };
        let spec = CommandSpec::new(cc::START_AUTH_SESSION, 0).with_response_handle();
        let encrypted_salt = secret.get(..secret_len).unwrap_or(&[]);
        let reply = self.execute(&spec, &[&tpm_key, &bind_obj], &mut [], |w| {
            w.tpm2b(&nonce_caller)?;
            w.tpm2b(encrypted_salt)?;
            w.u8(se_type)?;
            crate::public::SymDef::AES_128_CFB.marshal(w)?;
            w.u16(alg::SHA256)
        })?;
        let mut r = Reader::new(self.reply_params(&reply));
        let nonce = r.tpm2b(SHA256_SIZE)?;
        r.finish()?;
        let nonce_tpm = <[u8; SHA256_SIZE]>::try_from(nonce).map_err(|_| ParseError::BadValue)?;
        let want_type = match kind {
            SessionKind::Hmac => rh::HMAC_SESSION_FIRST,
            _ => rh::POLICY_SESSION_FIRST,
        };
        if reply.handle >> 24 != want_type >> 24 {
            return Err(ParseError::UnexpectedHandle(reply.handle).into());
        }
        let salt_bytes = salt_value.get(..salt_len).unwrap_or(&[]);
        let (key, key_len, bind_id_v) = match bind {
            None if salt_len == 0 => ([0u8; SHA256_SIZE], 0, None),
            _ => {
                let bind_auth = bind.map_or(&[][..], |(_, a)| a);
                let k =
                    crypto::session_key_derived(bind_auth, salt_bytes, &nonce_tpm, &nonce_caller);
                let id = bind.map(|(o, a)| bind_id(o.name.as_bytes(), a));
                (k, SHA256_SIZE, id)
            }
        };
        self.observe(salt_bytes);
        self.observe(key.get(..key_len).unwrap_or(&[]));
        zeroize::Zeroize::zeroize(&mut salt_value);
        let mut s = Session {
            handle: reply.handle,
            kind,
            key,
            key_len,
            nonce_tpm,
            nonce_caller,
            attributes: 0,
            bind_id: bind_id_v,
            policy_auth_value: false,
            open: true,
        };
        s.set_attributes(attributes);
        Ok(s)
    }

    pub(super) fn policy_cmd(
        &mut self,
        session: &mut Session,
        code: u32,
        params: impl FnOnce(&mut Writer<'_>) -> Result<(), WriteError>,
    ) -> Result<Reply, Error> {
        policy_session_open(session)?;
        let obj = Object::permanent(session.handle);
        self.simple(code, &[&obj], params)
    }

    /// A policy command whose response has no parameters.
    fn policy_cmd_no_reply(
        &mut self,
        session: &mut Session,
        code: u32,
        params: impl FnOnce(&mut Writer<'_>) -> Result<(), WriteError>,
    ) -> Result<(), Error> {
        let reply = self.policy_cmd(session, code, params)?;
        Reader::new(self.reply_params(&reply)).finish()?;
        Ok(())
    }

    /// `TPM2_PolicyCommandCode`.
    pub fn policy_command_code(&mut self, session: &mut Session, code: u32) -> Result<(), Error> {
        self.policy_cmd_no_reply(session, cc::POLICY_COMMAND_CODE, |w| w.u32(code))
    }

    /// `TPM2_PolicyAuthValue`: later authorizations with this session include the
    /// entity's authValue in the HMAC key.
    pub fn policy_auth_value(&mut self, session: &mut Session) -> Result<(), Error> {
        self.policy_cmd_no_reply(session, cc::POLICY_AUTH_VALUE, |_| Ok(()))?;
        session.policy_auth_value = true;
        Ok(())
    }

    /// `TPM2_PolicyPCR` with the expected digest of the selected PCRs (empty to let
    /// the TPM use the current values).
    pub fn policy_pcr(
        &mut self,
        session: &mut Session,
        pcr_digest: &[u8],
        selection: &PcrSelection,
    ) -> Result<(), Error> {
        self.policy_cmd_no_reply(session, cc::POLICY_PCR, |w| {
            w.tpm2b(pcr_digest)?;
            selection.marshal_list(w)
        })
    }

    /// `TPM2_PolicyOR` over 2..=8 branch digests.
    pub fn policy_or(
        &mut self,
        session: &mut Session,
        branches: &[PolicyDigest],
    ) -> Result<(), Error> {
        if branches.len() < 2 || branches.len() > crate::policy::MAX_OR_BRANCHES {
            return Err(Error::BadArgument);
        }
        let count = u32::try_from(branches.len()).map_err(|_| Error::BadArgument)?;
        self.policy_cmd_no_reply(session, cc::POLICY_OR, |w| {
            w.u32(count)?;
            for b in branches {
                w.tpm2b(b)?;
            }
            Ok(())
        })
    }

    /// `TPM2_PolicyGetDigest`.
    pub fn policy_get_digest(&mut self, session: &mut Session) -> Result<PolicyDigest, Error> {
        let reply = self.policy_cmd(session, cc::POLICY_GET_DIGEST, |_| Ok(()))?;
        let mut r = Reader::new(self.reply_params(&reply));
        let d = r.tpm2b(SHA256_SIZE)?;
        r.finish()?;
        Ok(<PolicyDigest>::try_from(d).map_err(|_| ParseError::BadValue)?)
    }

    /// `TPM2_PolicyRestart`: back to the initial digest.
    pub fn policy_restart(&mut self, session: &mut Session) -> Result<(), Error> {
        self.policy_cmd_no_reply(session, cc::POLICY_RESTART, |_| Ok(()))?;
        session.policy_auth_value = false;
        Ok(())
    }

    /// `TPM2_PolicySecret(authHandle, policySession)` with no nonceTPM, cpHash,
    /// policyRef or expiration: `sessions[0]` authorizes `auth_entity` (an HMAC session
    /// with its authValue, so the value never crosses the link).
    pub fn policy_secret(
        &mut self,
        auth_entity: &Object,
        policy: &mut Session,
        sessions: &mut [Auth<'_>],
    ) -> Result<(), Error> {
        policy_session_open(policy)?;
        let spec = CommandSpec::new(cc::POLICY_SECRET, 1);
        let ps = Object::permanent(policy.handle);
        let reply = self.execute(&spec, &[auth_entity, &ps], sessions, |w| {
            w.tpm2b(&[])?; // nonceTPM
            w.tpm2b(&[])?; // cpHashA
            w.tpm2b(&[])?; // policyRef
            w.u32(0) // expiration
        })?;
        let mut r = Reader::new(self.reply_params(&reply));
        r.tpm2b(MAX_TPM_MESSAGE)?; // timeout
        r.u16()?; // ticket tag
        r.u32()?; // ticket hierarchy
        r.tpm2b(64)?; // ticket digest
        r.finish()?;
        Ok(())
    }
}
