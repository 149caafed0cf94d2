//! The TPM 2.0 client: one method per command, over any [`Transport`].
//!
//! Every command goes through [`Tpm::execute`]'s single path: marshal the parameters,
//! encrypt the first one if a session has `decrypt`, compute cpHash and each
//! session's HMAC, send, then treat the response as hostile: check tag, size and
//! response code, split handles / parameters / authorization area (each entry
//! bounds-checked), verify every response HMAC over rpHash, and only then roll the
//! nonces and decrypt the first response parameter. Command methods parse the
//! parameters after that, again with the panic-free [`Reader`].
#![forbid(unsafe_code)]

use super::consts::{alg, cap, cc, rh, sa, se, st, SHA256_SIZE};
use super::crypto::{self, CryptoError};
use super::entropy::{EntropyError, EntropySource, Mixer};
use super::marshal::{ParseError, Reader, WriteError, Writer};
use super::policy::PolicyDigest;
use super::public::{Name, NvPublic, Object, PcrSelection, Public, PublicDetail, Template};
use super::rc::ResponseCode;
use super::session::{bind_id, Auth, Session, SessionKind};
use super::transport::{Transport, TransportError, MAX_TPM_MESSAGE};

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

impl From<TransportError> for Error {
    fn from(e: TransportError) -> Self {
        Error::Transport(e)
    }
}
impl From<ParseError> for Error {
    fn from(e: ParseError) -> Self {
        Error::Parse(e)
    }
}
impl From<WriteError> for Error {
    fn from(e: WriteError) -> Self {
        Error::Marshal(e)
    }
}
impl From<CryptoError> for Error {
    fn from(e: CryptoError) -> Self {
        Error::Crypto(e)
    }
}
impl From<EntropyError> for Error {
    fn from(e: EntropyError) -> Self {
        Error::Entropy(e)
    }
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

/// Where a successful response's pieces are in the client's response buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The response handle (0 if the command returns none).
    pub handle: u32,
    /// Offset range of the (decrypted) parameter area.
    pub params: core::ops::Range<usize>,
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

fn entry_len(nonce: usize, hmac: usize) -> usize {
    4 + 2 + nonce + 1 + 2 + hmac
}

/// Encrypts or decrypts (in place) the contents of the TPM2B at the start of `area`.
fn crypt_first_tpm2b(
    area: &mut [u8],
    key: &[u8; 16],
    iv: &[u8; 16],
    encrypt: bool,
) -> Result<(), ParseError> {
    let size = {
        let mut r = Reader::new(area);
        usize::from(r.u16()?)
    };
    let end = size.checked_add(2).ok_or(ParseError::TooLarge)?;
    let data = area.get_mut(2..end).ok_or(ParseError::Truncated)?;
    if encrypt {
        crypto::aes128_cfb_encrypt(key, iv, data);
    } else {
        crypto::aes128_cfb_decrypt(key, iv, data);
    }
    Ok(())
}

/// The authValue that enters slot `i`'s HMAC key (empty if none does): the
/// authorized entity's, unless the session is bound to that entity (HMAC session)
/// or PolicyAuthValue was not asserted (policy session); never for slots past the
/// authorized handles.
fn hmac_auth<'a>(i: usize, spec: &CommandSpec, handles: &[&Object], auth: &Auth<'a>) -> &'a [u8] {
    match auth {
        Auth::Password(_) => &[],
        Auth::Session {
            session,
            auth_value,
        } => {
            if i >= spec.auth_handles {
                return &[];
            }
            match handles.get(i) {
                Some(entity) if session.auth_value_needed(entity, auth_value) => auth_value,
                _ => &[],
            }
        }
    }
}

/// The authValue that enters slot `i`'s parameter-encryption key: the authorized
/// entity's whenever the slot authorizes a handle, bound or not, policy or not (as
/// the reference TPM does: "no matter if the handle is the session bound entity").
fn cfb_auth<'a>(i: usize, spec: &CommandSpec, auth: &Auth<'a>) -> &'a [u8] {
    match auth {
        Auth::Session { auth_value, .. } if i < spec.auth_handles => auth_value,
        _ => &[],
    }
}

/// `TPM_CC_HierarchyChangeAuth` (TPM 2.0 Part 2, table 12), from the one table.
pub const CC_HIERARCHY_CHANGE_AUTH: u32 = cc::HIERARCHY_CHANGE_AUTH;

/// `TPM_RC_RETRY`: the TPM could not start the command; send it again.
const RC_RETRY: u32 = 0x922;
/// `TPM_RC_YIELDED`: the TPM suspended the command; send it again.
const RC_YIELDED: u32 = 0x908;
/// `TPM_RC_TESTING`: the TPM is self-testing; send it again.
const RC_TESTING: u32 = 0x90A;
/// The waits before each re-send of a command the TPM did not start (TPM_RC_RETRY,
/// TPM_RC_YIELDED, TPM_RC_TESTING), in milliseconds: growing, bounded, 13 re-sends and
/// [`RETRY_BUDGET_MS`] in all; then the warning is returned as the command's error. A
/// TPM still self-testing after that is treated as failed (provisioning fails closed).
pub const RETRY_DELAYS_MS: [u32; 13] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 1000, 1000];
/// The most one command waits in re-sends (the sum of [`RETRY_DELAYS_MS`]): 4.023 s.
pub const RETRY_BUDGET_MS: u32 = {
    let mut sum = 0;
    let mut i = 0;
    while i < RETRY_DELAYS_MS.len() {
        sum += RETRY_DELAYS_MS[i];
        i += 1;
    }
    sum
};
/// How many times a not-started command is re-sent before its warning is returned.
const NOT_STARTED_RETRIES: usize = RETRY_DELAYS_MS.len();

/// A wait of the given milliseconds, supplied by the platform ([`Tpm::set_delay`]): the
/// image backs it with the timebase, host tests with `std::thread::sleep` or a fake.
pub type Delay = fn(u32);

/// The default [`Delay`]: returns at once (a client without a clock re-sends at once).
pub fn no_delay(_ms: u32) {}

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

    /// Runs one command. `handles` are the command's handles in order (the first
    /// `spec.auth_handles` are authorized by the first sessions); `sessions` fills
    /// the authorization area; `params` marshals the parameter area.
    pub fn execute(
        &mut self,
        spec: &CommandSpec,
        handles: &[&Object],
        sessions: &mut [Auth<'_>],
        params: impl FnOnce(&mut Writer<'_>) -> Result<(), WriteError>,
    ) -> Result<Reply, Error> {
        if sessions.len() < spec.auth_handles
            || sessions.len() > MAX_SESSIONS
            || handles.len() < spec.auth_handles
            || handles.len() > 3
        {
            return Err(Error::BadSessions);
        }
        let mut decrypt_at = None;
        let mut encrypt_at = None;
        let mut auth_len = 0usize;
        for (i, s) in sessions.iter_mut().enumerate() {
            match s {
                Auth::Password(pw) => {
                    if pw.len() > MAX_AUTH || i >= spec.auth_handles {
                        return Err(Error::BadSessions);
                    }
                    auth_len += entry_len(0, pw.len());
                }
                Auth::Session { session, .. } => {
                    if !session.open
                        || (session.kind == SessionKind::Trial && i < spec.auth_handles)
                    {
                        return Err(Error::BadSessions);
                    }
                    if session.attributes & sa::DECRYPT != 0 {
                        if decrypt_at.is_some() || !spec.encrypt_command {
                            return Err(Error::BadSessions);
                        }
                        decrypt_at = Some(i);
                    }
                    if session.attributes & sa::ENCRYPT != 0 {
                        if encrypt_at.is_some() || !spec.encrypt_response {
                            return Err(Error::BadSessions);
                        }
                        encrypt_at = Some(i);
                    }
                    let rng = self.rng.as_mut().ok_or(Error::NoEntropy)?;
                    rng.generate(&mut session.nonce_caller);
                    auth_len += entry_len(SHA256_SIZE, SHA256_SIZE);
                }
            }
        }

        // Parameters first, at their final offset.
        let handles_end = 10 + 4 * handles.len();
        let param_off = if sessions.is_empty() {
            handles_end
        } else {
            handles_end + 4 + auth_len
        };
        let param_len = {
            let area = self.cmd.get_mut(param_off..).ok_or(WriteError::Overflow)?;
            let mut w = Writer::new(area);
            params(&mut w)?;
            w.len()
        };
        let total = param_off
            .checked_add(param_len)
            .ok_or(WriteError::Overflow)?;
        if let Some(i) = decrypt_at {
            if let Some(Auth::Session { session, .. }) = sessions.get(i) {
                let av = sessions.get(i).map_or(&[][..], |a| cfb_auth(i, spec, a));
                let (k, iv) = crypto::cfb_key_iv(
                    session.key(),
                    av,
                    &session.nonce_caller,
                    &session.nonce_tpm,
                );
                #[cfg(feature = "observe-secrets")]
                {
                    let first = self.cmd.get(param_off..total).unwrap_or(&[]);
                    let n = first
                        .get(..2)
                        .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
                    self.observe(first.get(2..2 + n).unwrap_or(&[]));
                    self.observe(session.key());
                }
                let area = self
                    .cmd
                    .get_mut(param_off..total)
                    .ok_or(WriteError::Overflow)?;
                crypt_first_tpm2b(area, &k, &iv, true).map_err(|_| Error::BadSessions)?;
            }
        }

        // Header, handles, authorization area.
        let mut names: [&[u8]; 3] = [&[]; 3];
        for (n, h) in names.iter_mut().zip(handles.iter()) {
            *n = h.name.as_bytes();
        }
        let params_bytes = self.cmd.get(param_off..total).ok_or(WriteError::Overflow)?;
        let cp = crypto::cp_hash(
            spec.cc,
            names.get(..handles.len()).unwrap_or(&[]),
            params_bytes,
        );
        let mut head = [0u8; 10 + 12 + 4 + MAX_SESSIONS * (4 + 2 + SHA256_SIZE + 1 + 2 + MAX_AUTH)];
        let mut w = Writer::new(&mut head);
        w.u16(if sessions.is_empty() {
            st::NO_SESSIONS
        } else {
            st::SESSIONS
        })?;
        w.u32(u32::try_from(total).map_err(|_| WriteError::Overflow)?)?;
        w.u32(spec.cc)?;
        for h in handles {
            w.u32(h.handle)?;
        }
        if !sessions.is_empty() {
            w.u32(u32::try_from(auth_len).map_err(|_| WriteError::Overflow)?)?;
        }
        // nonceTPM of a separate decrypt / encrypt session, for the first session's HMAC.
        let mut extra: [[u8; SHA256_SIZE]; 2] = [[0u8; SHA256_SIZE]; 2];
        let mut extra_n = 0usize;
        if spec.auth_handles > 0 {
            for (at, other) in [(decrypt_at, None), (encrypt_at, decrypt_at)] {
                if let Some(j) = at {
                    if j != 0 && Some(j) != other {
                        if let (Some(Auth::Session { session, .. }), Some(slot)) =
                            (sessions.get(j), extra.get_mut(extra_n))
                        {
                            *slot = session.nonce_tpm;
                            extra_n += 1;
                        }
                    }
                }
            }
        }
        for (i, s) in sessions.iter().enumerate() {
            match s {
                Auth::Password(pw) => {
                    w.u32(rh::PW)?;
                    w.tpm2b(&[])?;
                    w.u8(sa::CONTINUE_SESSION)?;
                    w.tpm2b(pw)?;
                }
                Auth::Session { session, .. } => {
                    let av = crypto::auth_value_trimmed(hmac_auth(i, spec, handles, s));
                    self.observe(av);
                    self.observe(session.key());
                    let attrs = [session.attributes];
                    let e0 = extra.first().map_or(&[][..], |e| e.as_slice());
                    let e1 = extra.get(1).map_or(&[][..], |e| e.as_slice());
                    let mut parts: [&[u8]; 6] = [
                        &cp,
                        &session.nonce_caller,
                        &session.nonce_tpm,
                        &[],
                        &[],
                        &attrs,
                    ];
                    if i == 0 && extra_n >= 1 {
                        parts[3] = e0;
                    }
                    if i == 0 && extra_n >= 2 {
                        parts[4] = e1;
                    }
                    let mac = crypto::hmac_sha256_split_key(&[session.key(), av], &parts);
                    w.u32(session.handle)?;
                    w.tpm2b(&session.nonce_caller)?;
                    w.u8(session.attributes)?;
                    w.tpm2b(&mac)?;
                }
            }
        }
        if w.len() != param_off {
            return Err(Error::Marshal(WriteError::Overflow));
        }
        self.cmd
            .get_mut(..param_off)
            .ok_or(WriteError::Overflow)?
            .copy_from_slice(w.written());

        // Round trip. TPM_RC_RETRY, TPM_RC_YIELDED and TPM_RC_TESTING are warnings that the
        // command was not started (sessions untouched): the same bytes are sent again after
        // a growing wait, a bounded number of times (RETRY_DELAYS_MS; libtpms answers the
        // first RSA_Decrypt after a reset with TPM_RC_RETRY).
        let command = self.cmd.get(..total).ok_or(WriteError::Overflow)?;
        let mut n = 0;
        self.executed = self.executed.saturating_add(1);
        for attempt in 0..=NOT_STARTED_RETRIES {
            n = self.transport.transact(command, &mut self.rsp)?;
            let rc = super::wire::code(&self.rsp);
            if !matches!(rc, Some(RC_RETRY | RC_YIELDED | RC_TESTING)) {
                break;
            }
            if let Some(&ms) = RETRY_DELAYS_MS.get(attempt) {
                (self.delay)(ms);
                self.waited_ms = self.waited_ms.saturating_add(u64::from(ms));
            }
        }
        let response = self.rsp.get(..n).ok_or(TransportError::ResponseTooLarge)?;

        // Parse, as hostile input.
        let mut r = Reader::new(response);
        let tag = r.u16()?;
        let size = r.u32()?;
        let rc = r.u32()?;
        if usize::try_from(size).ok() != Some(n) {
            return Err(ParseError::SizeMismatch {
                header: size,
                received: n,
            }
            .into());
        }
        if rc != 0 {
            if tag != st::NO_SESSIONS && tag != st::RSP_COMMAND {
                return Err(ParseError::BadTag(tag).into());
            }
            r.finish()?;
            return Err(Error::Tpm(ResponseCode(rc)));
        }
        let want_tag = if sessions.is_empty() {
            st::NO_SESSIONS
        } else {
            st::SESSIONS
        };
        if tag != want_tag {
            return Err(ParseError::BadTag(tag).into());
        }
        let handle = if spec.response_handles == 1 {
            r.u32()?
        } else {
            0
        };
        let (params_rsp, params_start) = if sessions.is_empty() {
            let start = n.saturating_sub(r.remaining());
            (r.take(r.remaining())?, start)
        } else {
            let psize = usize::try_from(r.u32()?).map_err(|_| ParseError::TooLarge)?;
            let start = n.saturating_sub(r.remaining());
            (r.take(psize)?, start)
        };
        let mut entries: [(&[u8], u8, &[u8]); MAX_SESSIONS] = [(&[], 0, &[]); MAX_SESSIONS];
        for e in entries.iter_mut().take(sessions.len()) {
            let nonce = r.tpm2b(SHA256_SIZE)?;
            let attrs = r.u8()?;
            let mac = r.tpm2b(MAX_AUTH)?;
            *e = (nonce, attrs, mac);
        }
        if r.remaining() != 0 {
            return Err(ParseError::SessionCount.into());
        }

        // Verify every response HMAC before anything is used.
        let rp = crypto::rp_hash(0, spec.cc, params_rsp);
        for (i, (s, (nonce, attrs, mac))) in sessions.iter().zip(entries.iter()).enumerate() {
            match s {
                Auth::Password(_) => {
                    if !nonce.is_empty() || !mac.is_empty() || *attrs != sa::CONTINUE_SESSION {
                        return Err(ParseError::BadValue.into());
                    }
                }
                Auth::Session { session, .. } => {
                    let av = hmac_auth(i, spec, handles, s);
                    let expect = crypto::session_hmac(
                        session.key(),
                        av,
                        &rp,
                        nonce,
                        &session.nonce_caller,
                        *attrs,
                    );
                    if nonce.len() != SHA256_SIZE || !crypto::ct_eq(&expect, mac) {
                        return Err(Error::ResponseHmac {
                            session: (i + 1) as u8,
                        });
                    }
                    let mask = super::session::SUPPORTED.bits();
                    if attrs & mask != session.attributes & mask {
                        return Err(ParseError::BadValue.into());
                    }
                }
            }
        }
        let params_end = params_start.saturating_add(params_rsp.len());
        let mut new_nonces = [[0u8; SHA256_SIZE]; MAX_SESSIONS];
        for (dst, (nonce, _, _)) in new_nonces.iter_mut().zip(entries.iter()) {
            if nonce.len() == SHA256_SIZE {
                dst.copy_from_slice(nonce);
            }
        }

        // Verified: roll nonces, close ended sessions, reset used policy sessions.
        let mut rsp_key = None;
        for (i, s) in sessions.iter_mut().enumerate() {
            let av = cfb_auth(i, spec, s);
            if let Auth::Session { session, .. } = s {
                if let Some(nonce) = new_nonces.get(i) {
                    session.nonce_tpm = *nonce;
                }
                if Some(i) == encrypt_at {
                    rsp_key = Some(crypto::cfb_key_iv(
                        session.key(),
                        av,
                        &session.nonce_tpm,
                        &session.nonce_caller,
                    ));
                }
                if session.attributes & sa::CONTINUE_SESSION == 0 {
                    session.open = false;
                }
                if session.kind == SessionKind::Policy {
                    session.policy_auth_value = false;
                }
            }
        }
        if let Some((k, iv)) = rsp_key {
            let area = self
                .rsp
                .get_mut(params_start..params_end)
                .ok_or(ParseError::Truncated)?;
            crypt_first_tpm2b(area, &k, &iv, false)?;
        }
        Ok(Reply {
            handle,
            params: params_start..params_end,
        })
    }

    fn simple(
        &mut self,
        cc: u32,
        handles: &[&Object],
        params: impl FnOnce(&mut Writer<'_>) -> Result<(), WriteError>,
    ) -> Result<Reply, Error> {
        let spec = CommandSpec {
            cc,
            auth_handles: 0,
            response_handles: 0,
            encrypt_command: false,
            encrypt_response: false,
        };
        self.execute(&spec, handles, &mut [], params)
    }

    /// `TPM2_Startup(startupType)` (see [`su`](super::consts::su)).
    pub fn startup(&mut self, startup_type: u16) -> Result<(), Error> {
        self.simple(cc::STARTUP, &[], |w| w.u16(startup_type))?;
        Ok(())
    }

    /// `TPM2_GetRandom`: fills up to `out.len()` (at most 64) bytes; returns how many
    /// the TPM delivered. These bytes are not authenticated: mix, never use alone.
    pub fn get_random(&mut self, out: &mut [u8]) -> Result<usize, Error> {
        let want = u16::try_from(out.len().min(64)).map_err(|_| Error::BadArgument)?;
        let reply = self.simple(cc::GET_RANDOM, &[], |w| w.u16(want))?;
        let mut r = Reader::new(self.reply_params(&reply));
        let bytes = r.tpm2b(usize::from(want))?;
        r.finish()?;
        out.get_mut(..bytes.len())
            .ok_or(Error::BufferTooSmall)?
            .copy_from_slice(bytes);
        Ok(bytes.len())
    }

    fn get_capability(
        &mut self,
        capability: u32,
        property: u32,
        count: usize,
    ) -> Result<(Reply, bool), Error> {
        let c = u32::try_from(count).map_err(|_| Error::BadArgument)?;
        let reply = self.simple(cc::GET_CAPABILITY, &[], |w| {
            w.u32(capability)?;
            w.u32(property)?;
            w.u32(c)
        })?;
        let mut r = Reader::new(self.reply_params(&reply));
        let more = match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(ParseError::BadValue.into()),
        };
        if r.u32()? != capability {
            return Err(ParseError::BadValue.into());
        }
        Ok((reply, more))
    }

    /// `TPM2_GetCapability(TPM_CAP_HANDLES)`: handles from `first` (e.g.
    /// `0x8000_0000` for transient objects) into `out`; returns (count, moreData).
    pub fn get_capability_handles(
        &mut self,
        first: u32,
        out: &mut [u32],
    ) -> Result<(usize, bool), Error> {
        let (reply, more) = self.get_capability(cap::HANDLES, first, out.len())?;
        let mut r = Reader::new(self.reply_params(&reply));
        r.take(5)?;
        let count = usize::try_from(r.u32()?).map_err(|_| ParseError::TooLarge)?;
        if count > out.len() {
            return Err(ParseError::TooLarge.into());
        }
        for slot in out.iter_mut().take(count) {
            *slot = r.u32()?;
        }
        r.finish()?;
        Ok((count, more))
    }

    /// `TPM2_GetCapability(TPM_CAP_TPM_PROPERTIES)`: (property, value) pairs from
    /// `first` into `out`; returns (count, moreData).
    pub fn get_capability_properties(
        &mut self,
        first: u32,
        out: &mut [(u32, u32)],
    ) -> Result<(usize, bool), Error> {
        let (reply, more) = self.get_capability(cap::TPM_PROPERTIES, first, out.len())?;
        let mut r = Reader::new(self.reply_params(&reply));
        r.take(5)?;
        let count = usize::try_from(r.u32()?).map_err(|_| ParseError::TooLarge)?;
        if count > out.len() {
            return Err(ParseError::TooLarge.into());
        }
        for slot in out.iter_mut().take(count) {
            *slot = (r.u32()?, r.u32()?);
        }
        r.finish()?;
        Ok((count, more))
    }

    /// `TPM2_ReadPublic`: the object's public area, and the object with the Name
    /// computed here from that area (the TPM's claimed Name must agree). Not
    /// authenticated: compare the Name with a pinned one before trusting the key.
    pub fn read_public(&mut self, handle: u32) -> Result<(Object, Blob), Error> {
        let obj = Object::permanent(handle);
        let reply = self.simple(cc::READ_PUBLIC, &[&obj], |_| Ok(()))?;
        let mut r = Reader::new(self.reply_params(&reply));
        let raw = r.tpm2b(MAX_BLOB)?;
        let claimed = r.tpm2b(super::public::MAX_NAME)?;
        let _qualified = r.tpm2b(super::public::MAX_NAME)?;
        r.finish()?;
        let name = Public::parse(raw)?.name()?;
        if !crypto::ct_eq(name.as_bytes(), claimed) {
            return Err(Error::NameMismatch);
        }
        let blob = Blob::from_slice(raw).map_err(|_| ParseError::TooLarge)?;
        Ok((Object { handle, name }, blob))
    }

    fn marshal_create_params(
        w: &mut Writer<'_>,
        template: &Template<'_>,
        user_auth: &[u8],
    ) -> Result<(), WriteError> {
        let m = w.begin_sized()?;
        w.tpm2b(user_auth)?;
        w.tpm2b(&[])?;
        w.end_sized(m)?;
        let m = w.begin_sized()?;
        template.marshal(w)?;
        w.end_sized(m)?;
        w.tpm2b(&[])?; // outsideInfo
        w.u32(0) // creationPCR: empty TPML_PCR_SELECTION
    }

    /// Parses `TPM2B_CREATION_DATA, TPM2B_DIGEST, TPMT_TK_CREATION` (validated, unused).
    fn skip_creation(r: &mut Reader<'_>) -> Result<(), ParseError> {
        r.tpm2b(MAX_TPM_MESSAGE)?;
        r.tpm2b(64)?;
        if r.u16()? != st::CREATION {
            return Err(ParseError::BadValue);
        }
        r.u32()?;
        r.tpm2b(64)?;
        Ok(())
    }

    /// `TPM2_CreatePrimary` under `hierarchy` (e.g. `Object::permanent(TPM_RH_OWNER)`):
    /// returns the loaded object (Name computed from the returned public area and
    /// checked against the TPM's) and its public area.
    pub fn create_primary(
        &mut self,
        hierarchy: &Object,
        sessions: &mut [Auth<'_>],
        template: &Template<'_>,
        user_auth: &[u8],
    ) -> Result<(Object, Blob), Error> {
        let spec = CommandSpec {
            cc: cc::CREATE_PRIMARY,
            auth_handles: 1,
            response_handles: 1,
            encrypt_command: true,
            encrypt_response: true,
        };
        let reply = self.execute(&spec, &[hierarchy], sessions, |w| {
            Self::marshal_create_params(w, template, user_auth)
        })?;
        let mut r = Reader::new(self.reply_params(&reply));
        let raw = r.tpm2b(MAX_BLOB)?;
        Self::skip_creation(&mut r)?;
        let claimed = r.tpm2b(super::public::MAX_NAME)?;
        r.finish()?;
        if reply.handle >> 24 != rh::TRANSIENT_FIRST >> 24 {
            return Err(ParseError::UnexpectedHandle(reply.handle).into());
        }
        let name = Public::parse(raw)?.name()?;
        if !crypto::ct_eq(name.as_bytes(), claimed) {
            return Err(Error::NameMismatch);
        }
        let blob = Blob::from_slice(raw).map_err(|_| ParseError::TooLarge)?;
        Ok((
            Object {
                handle: reply.handle,
                name,
            },
            blob,
        ))
    }

    /// `TPM2_Create` under `parent`: the new key's private and public parts.
    pub fn create(
        &mut self,
        parent: &Object,
        sessions: &mut [Auth<'_>],
        template: &Template<'_>,
        user_auth: &[u8],
    ) -> Result<KeyBlob, Error> {
        let spec = CommandSpec {
            cc: cc::CREATE,
            auth_handles: 1,
            response_handles: 0,
            encrypt_command: true,
            encrypt_response: true,
        };
        let reply = self.execute(&spec, &[parent], sessions, |w| {
            Self::marshal_create_params(w, template, user_auth)
        })?;
        let mut r = Reader::new(self.reply_params(&reply));
        let private = r.tpm2b(MAX_BLOB)?;
        let public = r.tpm2b(MAX_BLOB)?;
        Self::skip_creation(&mut r)?;
        r.finish()?;
        Public::parse(public)?;
        Ok(KeyBlob {
            private: Blob::from_slice(private).map_err(|_| ParseError::TooLarge)?,
            public: Blob::from_slice(public).map_err(|_| ParseError::TooLarge)?,
        })
    }

    /// `TPM2_Load`: loads `blob` under `parent`; the returned Name must equal the one
    /// computed here from `blob.public`.
    pub fn load(
        &mut self,
        parent: &Object,
        sessions: &mut [Auth<'_>],
        blob: &KeyBlob,
    ) -> Result<Object, Error> {
        let name = Public::parse(&blob.public)?.name()?;
        let spec = CommandSpec {
            cc: cc::LOAD,
            auth_handles: 1,
            response_handles: 1,
            encrypt_command: true,
            encrypt_response: true,
        };
        let reply = self.execute(&spec, &[parent], sessions, |w| {
            w.tpm2b(&blob.private)?;
            w.tpm2b(&blob.public)
        })?;
        let mut r = Reader::new(self.reply_params(&reply));
        let claimed = r.tpm2b(super::public::MAX_NAME)?;
        r.finish()?;
        if reply.handle >> 24 != rh::TRANSIENT_FIRST >> 24 {
            return Err(ParseError::UnexpectedHandle(reply.handle).into());
        }
        if !crypto::ct_eq(name.as_bytes(), claimed) {
            return Err(Error::NameMismatch);
        }
        Ok(Object {
            handle: reply.handle,
            name,
        })
    }

    /// `TPM2_EvictControl`: with `object` transient, makes it persistent at
    /// `persistent` and returns the persistent object; with `object` persistent,
    /// evicts it and returns `None`. `auth` is `TPM_RH_OWNER` or `TPM_RH_PLATFORM`.
    pub fn evict_control(
        &mut self,
        auth: &Object,
        sessions: &mut [Auth<'_>],
        object: &Object,
        persistent: u32,
    ) -> Result<Option<Object>, Error> {
        let spec = CommandSpec {
            cc: cc::EVICT_CONTROL,
            auth_handles: 1,
            response_handles: 0,
            encrypt_command: false,
            encrypt_response: false,
        };
        let reply = self.execute(&spec, &[auth, object], sessions, |w| w.u32(persistent))?;
        Reader::new(self.reply_params(&reply)).finish()?;
        if object.handle >> 24 == rh::PERSISTENT_FIRST >> 24 {
            Ok(None)
        } else {
            Ok(Some(Object {
                handle: persistent,
                name: object.name.clone(),
            }))
        }
    }

    /// `TPM2_FlushContext` of a transient object or session handle.
    pub fn flush_context(&mut self, handle: u32) -> Result<(), Error> {
        let reply = self.simple(cc::FLUSH_CONTEXT, &[], |w| w.u32(handle))?;
        Reader::new(self.reply_params(&reply)).finish()?;
        Ok(())
    }

    /// Flushes a session and marks it closed (a closed session is not sent again).
    pub fn flush_session(&mut self, session: &mut Session) -> Result<(), Error> {
        if session.open {
            self.flush_context(session.handle)?;
            session.open = false;
        }
        Ok(())
    }

    /// Reads `handle`'s public area, checks its Name against `pinned` (constant
    /// time) and returns the checked key (used for salting sessions).
    pub fn read_pinned_public(&mut self, handle: u32, pinned: &[u8]) -> Result<Blob, Error> {
        let (obj, blob) = self.read_public(handle)?;
        if !crypto::ct_eq(obj.name.as_bytes(), pinned) {
            return Err(Error::NameMismatch);
        }
        Ok(blob)
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
                if public.attributes & super::consts::attr::DECRYPT == 0
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
                        if curve != super::consts::ECC_NIST_P256 {
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
        let spec = CommandSpec {
            cc: cc::START_AUTH_SESSION,
            auth_handles: 0,
            response_handles: 1,
            encrypt_command: false,
            encrypt_response: false,
        };
        let encrypted_salt = secret.get(..secret_len).unwrap_or(&[]);
        let reply = self.execute(&spec, &[&tpm_key, &bind_obj], &mut [], |w| {
            w.tpm2b(&nonce_caller)?;
            w.tpm2b(encrypted_salt)?;
            w.u8(se_type)?;
            super::public::SymDef::AES_128_CFB.marshal(w)?;
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

    fn policy_cmd(
        &mut self,
        session: &mut Session,
        code: u32,
        params: impl FnOnce(&mut Writer<'_>) -> Result<(), WriteError>,
    ) -> Result<Reply, Error> {
        if !session.open || session.kind == SessionKind::Hmac {
            return Err(Error::BadSessions);
        }
        let obj = Object::permanent(session.handle);
        self.simple(code, &[&obj], params)
    }

    /// `TPM2_PolicyCommandCode`.
    pub fn policy_command_code(&mut self, session: &mut Session, code: u32) -> Result<(), Error> {
        let reply = self.policy_cmd(session, cc::POLICY_COMMAND_CODE, |w| w.u32(code))?;
        Reader::new(self.reply_params(&reply)).finish()?;
        Ok(())
    }

    /// `TPM2_PolicyAuthValue`: later authorizations with this session include the
    /// entity's authValue in the HMAC key.
    pub fn policy_auth_value(&mut self, session: &mut Session) -> Result<(), Error> {
        let reply = self.policy_cmd(session, cc::POLICY_AUTH_VALUE, |_| Ok(()))?;
        Reader::new(self.reply_params(&reply)).finish()?;
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
        let reply = self.policy_cmd(session, cc::POLICY_PCR, |w| {
            w.tpm2b(pcr_digest)?;
            selection.marshal_list(w)
        })?;
        Reader::new(self.reply_params(&reply)).finish()?;
        Ok(())
    }

    /// `TPM2_PolicyOR` over 2..=8 branch digests.
    pub fn policy_or(
        &mut self,
        session: &mut Session,
        branches: &[PolicyDigest],
    ) -> Result<(), Error> {
        if branches.len() < 2 || branches.len() > super::policy::MAX_OR_BRANCHES {
            return Err(Error::BadArgument);
        }
        let count = branches.len() as u32;
        let reply = self.policy_cmd(session, cc::POLICY_OR, |w| {
            w.u32(count)?;
            for b in branches {
                w.tpm2b(b)?;
            }
            Ok(())
        })?;
        Reader::new(self.reply_params(&reply)).finish()?;
        Ok(())
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
        let reply = self.policy_cmd(session, cc::POLICY_RESTART, |_| Ok(()))?;
        Reader::new(self.reply_params(&reply)).finish()?;
        session.policy_auth_value = false;
        Ok(())
    }

    /// `TPM2_ObjectChangeAuth`: the object's private part re-encrypted with
    /// `new_auth` (load it with the same public part to use the new authValue).
    pub fn object_change_auth(
        &mut self,
        object: &Object,
        parent: &Object,
        sessions: &mut [Auth<'_>],
        new_auth: &[u8],
    ) -> Result<Blob, Error> {
        let spec = CommandSpec {
            cc: cc::OBJECT_CHANGE_AUTH,
            auth_handles: 1,
            response_handles: 0,
            encrypt_command: true,
            encrypt_response: true,
        };
        let reply = self.execute(&spec, &[object, parent], sessions, |w| w.tpm2b(new_auth))?;
        let mut r = Reader::new(self.reply_params(&reply));
        let private = r.tpm2b(MAX_BLOB)?;
        r.finish()?;
        Ok(Blob::from_slice(private).map_err(|_| ParseError::TooLarge)?)
    }

    /// `TPM2_HierarchyChangeAuth`: sets the authValue of `hierarchy`
    /// (`TPM_RH_PLATFORM`, `TPM_RH_OWNER`, `TPM_RH_ENDORSEMENT` or `TPM_RH_LOCKOUT`)
    /// to `new_auth` (at most the size of the TPM's context-integrity digest, and at
    /// most [`MAX_AUTH`] here).
    ///
    /// `sessions[0]` authorizes the hierarchy and must be the password session with
    /// its current authValue: the TPM keys the response HMAC of an HMAC or policy
    /// session with the *new* authValue, which [`Tpm::execute`] does not model, so
    /// such a session is refused ([`Error::BadSessions`]) rather than failing the
    /// response check after the change took effect. Add a second session with
    /// `decrypt` ([`Auth::encrypt_only`], salted) to send `new_auth` encrypted; with
    /// only the password session it crosses the link in clear.
    pub fn hierarchy_change_auth(
        &mut self,
        hierarchy: &Object,
        sessions: &mut [Auth<'_>],
        new_auth: &[u8],
    ) -> Result<(), Error> {
        if new_auth.len() > MAX_AUTH {
            return Err(Error::BadArgument);
        }
        if !matches!(sessions.first(), Some(Auth::Password(_))) {
            return Err(Error::BadSessions);
        }
        let spec = CommandSpec {
            cc: CC_HIERARCHY_CHANGE_AUTH,
            auth_handles: 1,
            response_handles: 0,
            encrypt_command: true,
            encrypt_response: false,
        };
        let reply = self.execute(&spec, &[hierarchy], sessions, |w| w.tpm2b(new_auth))?;
        Reader::new(self.reply_params(&reply)).finish()?;
        Ok(())
    }

    /// `TPM2_HierarchyControl(authHandle, enable, state)`: with `state` false, disables
    /// `enable` (`TPM_RH_PLATFORM`: phEnable; `TPM_RH_PLATFORM_NV`: phEnableNV) until the
    /// next TPM reset.
    pub fn hierarchy_control(
        &mut self,
        auth: &Object,
        sessions: &mut [Auth<'_>],
        enable: u32,
        state: bool,
    ) -> Result<(), Error> {
        let spec = CommandSpec {
            cc: cc::HIERARCHY_CONTROL,
            auth_handles: 1,
            response_handles: 0,
            encrypt_command: false,
            encrypt_response: false,
        };
        let reply = self.execute(&spec, &[auth], sessions, |w| {
            w.u32(enable)?;
            w.u8(u8::from(state))
        })?;
        Reader::new(self.reply_params(&reply)).finish()?;
        Ok(())
    }

    /// `TPM2_NV_DefineSpace(authHandle, auth, publicInfo)`. `auth` is the first
    /// parameter: send it under a `decrypt` session.
    pub fn nv_define_space(
        &mut self,
        hierarchy: &Object,
        sessions: &mut [Auth<'_>],
        auth: &[u8],
        public: &NvPublic<'_>,
    ) -> Result<Object, Error> {
        if auth.len() > MAX_AUTH {
            return Err(Error::BadArgument);
        }
        let spec = CommandSpec {
            cc: cc::NV_DEFINE_SPACE,
            auth_handles: 1,
            response_handles: 0,
            encrypt_command: true,
            encrypt_response: false,
        };
        let reply = self.execute(&spec, &[hierarchy], sessions, |w| {
            w.tpm2b(auth)?;
            let m = w.begin_sized()?;
            public.marshal(w)?;
            w.end_sized(m)
        })?;
        Reader::new(self.reply_params(&reply)).finish()?;
        Ok(Object {
            handle: public.index,
            name: public.name()?,
        })
    }

    /// `TPM2_NV_ReadPublic`: the index's marshalled `TPMS_NV_PUBLIC` and the index
    /// as an object named by the Name computed here from it (the TPM's claimed Name
    /// must agree). Not authenticated: compare with a pinned Name.
    pub fn nv_read_public(&mut self, index: u32) -> Result<(Object, Blob), Error> {
        let obj = Object::permanent(index);
        let reply = self.simple(cc::NV_READ_PUBLIC, &[&obj], |_| Ok(()))?;
        let mut r = Reader::new(self.reply_params(&reply));
        let raw = r.tpm2b(super::public::MAX_NV_PUBLIC)?;
        let claimed = r.tpm2b(super::public::MAX_NAME)?;
        r.finish()?;
        let parsed = NvPublic::parse(raw)?;
        if parsed.index != index {
            return Err(ParseError::BadValue.into());
        }
        let name = parsed.name()?;
        if !crypto::ct_eq(name.as_bytes(), claimed) {
            return Err(Error::NameMismatch);
        }
        let blob = Blob::from_slice(raw).map_err(|_| ParseError::TooLarge)?;
        Ok((
            Object {
                handle: index,
                name,
            },
            blob,
        ))
    }

    /// `TPM2_NV_ChangeAuth(nvIndex, newAuth)`: the admin role, so `sessions[0]` must be
    /// a policy session satisfying the index's authPolicy; add a `decrypt` session to
    /// send `new_auth` encrypted.
    pub fn nv_change_auth(
        &mut self,
        index: &Object,
        sessions: &mut [Auth<'_>],
        new_auth: &[u8],
    ) -> Result<(), Error> {
        if new_auth.len() > MAX_AUTH {
            return Err(Error::BadArgument);
        }
        let spec = CommandSpec {
            cc: cc::NV_CHANGE_AUTH,
            auth_handles: 1,
            response_handles: 0,
            encrypt_command: true,
            encrypt_response: false,
        };
        let reply = self.execute(&spec, &[index], sessions, |w| w.tpm2b(new_auth))?;
        Reader::new(self.reply_params(&reply)).finish()?;
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
        if !policy.open || policy.kind == SessionKind::Hmac {
            return Err(Error::BadSessions);
        }
        let spec = CommandSpec {
            cc: cc::POLICY_SECRET,
            auth_handles: 1,
            response_handles: 0,
            encrypt_command: false,
            encrypt_response: false,
        };
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

    /// `TPM2_RSA_Decrypt` with OAEP-SHA256 and `label` (empty, or ending in a NUL);
    /// writes the message into `out` and returns its length.
    pub fn rsa_decrypt(
        &mut self,
        key: &Object,
        sessions: &mut [Auth<'_>],
        ciphertext: &[u8],
        label: &[u8],
        out: &mut [u8],
    ) -> Result<usize, Error> {
        let spec = CommandSpec {
            cc: cc::RSA_DECRYPT,
            auth_handles: 1,
            response_handles: 0,
            encrypt_command: true,
            encrypt_response: true,
        };
        let reply = self.execute(&spec, &[key], sessions, |w| {
            w.tpm2b(ciphertext)?;
            w.u16(alg::OAEP)?;
            w.u16(alg::SHA256)?;
            w.tpm2b(label)
        })?;
        let mut r = Reader::new(self.reply_params(&reply));
        let message = r.tpm2b(super::public::MAX_RSA_BYTES)?;
        r.finish()?;
        out.get_mut(..message.len())
            .ok_or(Error::BufferTooSmall)?
            .copy_from_slice(message);
        Ok(message.len())
    }

    /// `TPM2_PCR_Read` of one SHA-256 selection: returns (pcrUpdateCounter, the
    /// selection the TPM read, number of digests written to `out`).
    pub fn pcr_read(
        &mut self,
        selection: &PcrSelection,
        out: &mut [[u8; SHA256_SIZE]],
    ) -> Result<(u32, Option<PcrSelection>, usize), Error> {
        let reply = self.simple(cc::PCR_READ, &[], |w| selection.marshal_list(w))?;
        let mut r = Reader::new(self.reply_params(&reply));
        let counter = r.u32()?;
        let read = PcrSelection::parse_list(&mut r)?;
        let count = usize::try_from(r.u32()?).map_err(|_| ParseError::TooLarge)?;
        if count > 8 || count > out.len() {
            return Err(ParseError::TooLarge.into());
        }
        for slot in out.iter_mut().take(count) {
            let d = r.tpm2b(SHA256_SIZE)?;
            *slot = <[u8; SHA256_SIZE]>::try_from(d).map_err(|_| ParseError::BadValue)?;
        }
        r.finish()?;
        Ok((counter, read, count))
    }

    /// `TPM2_PCR_Extend` of PCR `index` with one SHA-256 digest.
    pub fn pcr_extend(
        &mut self,
        index: u32,
        sessions: &mut [Auth<'_>],
        digest: &[u8; SHA256_SIZE],
    ) -> Result<(), Error> {
        let spec = CommandSpec {
            cc: cc::PCR_EXTEND,
            auth_handles: 1,
            response_handles: 0,
            encrypt_command: false,
            encrypt_response: false,
        };
        let pcr = Object::pcr(index);
        let reply = self.execute(&spec, &[&pcr], sessions, |w| {
            w.u32(1)?;
            w.u16(alg::SHA256)?;
            w.bytes(digest)
        })?;
        Reader::new(self.reply_params(&reply)).finish()?;
        Ok(())
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
mod retry_tests {
    use super::*;

    /// FAKE TPM: answers the first `warnings` commands with `warning`, then a GetRandom
    /// response of 4 bytes; counts the commands it saw.
    struct FakeBusyTpm {
        warning: u32,
        warnings: usize,
        seen: usize,
    }

    impl Transport for FakeBusyTpm {
        fn transact(&mut self, _c: &[u8], rsp: &mut [u8]) -> Result<usize, TransportError> {
            self.seen += 1;
            if self.seen <= self.warnings {
                let mut r = [0x80, 0x01, 0, 0, 0, 10, 0, 0, 0, 0];
                r[6..].copy_from_slice(&self.warning.to_be_bytes());
                rsp[..10].copy_from_slice(&r);
                return Ok(10);
            }
            let r = [0x80, 0x01, 0, 0, 0, 16, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4];
            rsp[..16].copy_from_slice(&r);
            Ok(16)
        }
    }

    #[test]
    fn not_started_warnings_are_resent_a_bounded_number_of_times() {
        for warning in [RC_RETRY, RC_YIELDED, RC_TESTING] {
            let mut tpm = Tpm::new(FakeBusyTpm {
                warning,
                warnings: 2,
                seen: 0,
            });
            let mut out = [0u8; 4];
            assert_eq!(tpm.get_random(&mut out).unwrap(), 4);
            assert_eq!(out, [1, 2, 3, 4]);
            assert_eq!(tpm.transport_mut().seen, 3);
        }
        let mut tpm = Tpm::new(FakeBusyTpm {
            warning: RC_RETRY,
            warnings: 100,
            seen: 0,
        });
        assert!(matches!(
            tpm.get_random(&mut [0u8; 4]),
            Err(Error::Tpm(ResponseCode(RC_RETRY)))
        ));
        assert_eq!(tpm.transport_mut().seen, NOT_STARTED_RETRIES + 1);
        // Any other error is returned at once.
        let mut tpm = Tpm::new(FakeBusyTpm {
            warning: 0x9a2,
            warnings: 1,
            seen: 0,
        });
        assert!(tpm.get_random(&mut [0u8; 4]).is_err());
        assert_eq!(tpm.transport_mut().seen, 1);
    }

    static WAITS: std::sync::Mutex<std::vec::Vec<u32>> =
        std::sync::Mutex::new(std::vec::Vec::new());

    fn record_wait(ms: u32) {
        WAITS.lock().unwrap().push(ms);
    }

    #[test]
    fn re_sends_wait_longer_each_time_and_stop_at_the_budget() {
        WAITS.lock().unwrap().clear();
        let mut tpm = Tpm::new(FakeBusyTpm {
            warning: RC_TESTING,
            warnings: 1000,
            seen: 0,
        });
        tpm.set_delay(record_wait);
        assert!(matches!(
            tpm.get_random(&mut [0u8; 4]),
            Err(Error::Tpm(ResponseCode(RC_TESTING)))
        ));
        let waits = WAITS.lock().unwrap().clone();
        assert_eq!(
            waits,
            RETRY_DELAYS_MS.to_vec(),
            "one wait before each re-send"
        );
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "growing");
        assert_eq!(waits.iter().sum::<u32>(), RETRY_BUDGET_MS);
        assert_eq!(tpm.retry_waited_ms(), u64::from(RETRY_BUDGET_MS));
        assert_eq!(tpm.transport_mut().seen, RETRY_DELAYS_MS.len() + 1);
    }

    #[test]
    fn wipe_buffers_zeroes_command_and_response() {
        let mut tpm = Tpm::new(FakeBusyTpm {
            warning: RC_RETRY,
            warnings: 0,
            seen: 0,
        });
        assert!(tpm.buffers_are_clear());
        let mut out = [0u8; 4];
        assert_eq!(tpm.get_random(&mut out).unwrap(), 4);
        // The response parameter and the command code stay behind...
        assert!(tpm.buffers_contain(&[1, 2, 3, 4]));
        assert!(tpm.buffers_contain(&cc::GET_RANDOM.to_be_bytes()));
        assert!(!tpm.buffers_are_clear());
        // ...until wiped.
        tpm.wipe_buffers();
        assert!(tpm.buffers_are_clear());
        assert!(!tpm.buffers_contain(&[1, 2, 3, 4]));
        assert!(!tpm.buffers_contain(&[]));
    }

    #[test]
    fn hierarchy_change_auth_needs_the_password_session_first() {
        let mut tpm = Tpm::new(FakeBusyTpm {
            warning: RC_RETRY,
            warnings: 0,
            seen: 0,
        });
        let platform = Object::permanent(rh::PLATFORM);
        assert_eq!(
            tpm.hierarchy_change_auth(&platform, &mut [], b"x"),
            Err(Error::BadSessions)
        );
        assert_eq!(
            tpm.hierarchy_change_auth(&platform, &mut [Auth::Password(b"")], &[0u8; 65]),
            Err(Error::BadArgument)
        );
        // Nothing was sent for either.
        assert_eq!(tpm.transport_mut().seen, 0);
    }
}
