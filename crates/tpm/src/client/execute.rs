//! The one execution path every command takes: authorization areas (password, HMAC and
//! policy sessions), parameter encryption (CFB), the hostile-response checks including each
//! response HMAC, and the bounded re-send of commands the TPM did not start.

use super::{CommandSpec, Error, Reply, Tpm, MAX_AUTH, MAX_SESSIONS};
use crate::consts::rh;
use crate::consts::sa;
use crate::consts::st;
use crate::consts::SHA256_SIZE;
use crate::crypto;
use crate::marshal::{ParseError, Reader, WriteError, Writer};
use crate::public::Object;
use crate::rc::ResponseCode;
use crate::session::{Auth, SessionKind};
use crate::transport::{Transport, TransportError};

/// Size of one command authorization entry: session handle, nonce (TPM2B), attributes,
/// HMAC or password (TPM2B).
fn entry_len(nonce: usize, hmac: usize) -> Result<usize, WriteError> {
    const FIXED: usize = 4 + 2 + 1 + 2;
    FIXED
        .checked_add(nonce)
        .and_then(|n| n.checked_add(hmac))
        .ok_or(WriteError::Overflow)
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

/// `TPM_RC_RETRY`: the TPM could not start the command; send it again.
pub(super) const RC_RETRY: u32 = 0x922;
/// `TPM_RC_YIELDED`: the TPM suspended the command; send it again.
pub(super) const RC_YIELDED: u32 = 0x908;
/// `TPM_RC_TESTING`: the TPM is self-testing; send it again.
pub(super) const RC_TESTING: u32 = 0x90A;
/// The waits before each re-send of a command the TPM did not start (TPM_RC_RETRY,
/// TPM_RC_YIELDED, TPM_RC_TESTING), in milliseconds: growing, bounded, 13 re-sends and
/// [`RETRY_BUDGET_MS`] in all; then the warning is returned as the command's error. A
/// TPM still self-testing after that is treated as failed (provisioning fails closed).
pub const RETRY_DELAYS_MS: [u32; 13] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 1000, 1000];
/// The most one command waits in re-sends (the sum of [`RETRY_DELAYS_MS`]): 4.023 s.
pub const RETRY_BUDGET_MS: u32 = {
    // Evaluated by the compiler: an overflow would fail the build.
    let mut sum = 0;
    let mut rest: &[u32] = &RETRY_DELAYS_MS;
    while let [first, tail @ ..] = rest {
        sum += *first;
        rest = tail;
    }
    sum
};
/// How many times a not-started command is re-sent before its warning is returned.
pub(super) const NOT_STARTED_RETRIES: usize = RETRY_DELAYS_MS.len();

/// A wait of the given milliseconds, supplied by the platform ([`Tpm::set_delay`]): the
/// image backs it with the timebase, host tests with `std::thread::sleep` or a fake.
pub type Delay = fn(u32);

/// The default [`Delay`]: returns at once (a client without a clock re-sends at once).
pub fn no_delay(_ms: u32) {}

/// What checking the sessions against the command found.
#[derive(Debug, Clone, Copy)]
struct SessionPlan {
    /// The session that encrypts the first command parameter.
    decrypt_at: Option<usize>,
    /// The session that encrypts the first response parameter.
    encrypt_at: Option<usize>,
    /// Size of the authorization area (without its own size field).
    auth_len: usize,
}

impl SessionPlan {
    /// Counts one more authorization entry into the area's size.
    fn add_entry(&mut self, nonce: usize, hmac: usize) -> Result<(), WriteError> {
        self.auth_len = self
            .auth_len
            .checked_add(entry_len(nonce, hmac)?)
            .ok_or(WriteError::Overflow)?;
        Ok(())
    }
}

/// Where the parameter area lies in the command buffer (the command ends with it).
#[derive(Debug, Clone, Copy)]
struct CommandLayout {
    /// Offset of the parameter area: the end of the header, handles and authorization area.
    param_off: usize,
    /// Total command size.
    total: usize,
}

/// Largest header, handle area and authorization area of a command.
const MAX_HEAD: usize = 10 + 12 + 4 + MAX_SESSIONS * (4 + 2 + SHA256_SIZE + 1 + 2 + MAX_AUTH);

/// The nonceTPM of a separate decrypt / encrypt session (up to two), which enter the
/// first session's command HMAC.
#[derive(Debug, Default)]
struct ExtraNonces {
    nonces: [[u8; SHA256_SIZE]; 2],
    count: usize,
}

impl ExtraNonces {
    /// The `k`th extra nonce as it enters session `i`'s HMAC: only the first session's
    /// HMAC takes them; empty where there is none.
    fn for_session(&self, i: usize, k: usize) -> &[u8] {
        if i == 0 && self.count > k {
            self.nonces.get(k).map_or(&[][..], |e| e.as_slice())
        } else {
            &[]
        }
    }
}

/// What the command HMACs of one command share.
struct CommandHmac<'c> {
    spec: &'c CommandSpec,
    handles: &'c [&'c Object],
    /// cpHash of the command (parameters as sent).
    cp: [u8; SHA256_SIZE],
    extra: ExtraNonces,
}

/// One entry of a response's authorization area, as received (not yet verified).
#[derive(Debug, Clone, Copy, Default)]
struct ResponseAuth<'r> {
    nonce: &'r [u8],
    attrs: u8,
    mac: &'r [u8],
}

/// A success response split into its parts, each bounds-checked (nothing verified yet).
#[derive(Debug)]
struct ResponseParts<'r> {
    /// The response handle (0 if the command returns none).
    handle: u32,
    /// The parameter area.
    params: &'r [u8],
    /// Offset of the parameter area in the response.
    params_start: usize,
    /// One entry per command session.
    entries: [ResponseAuth<'r>; MAX_SESSIONS],
}

impl ResponseParts<'_> {
    /// The new nonceTPM of each session (zeros where the entry's nonce is not a digest).
    fn new_nonces(&self) -> [[u8; SHA256_SIZE]; MAX_SESSIONS] {
        let mut new_nonces = [[0u8; SHA256_SIZE]; MAX_SESSIONS];
        for (dst, e) in new_nonces.iter_mut().zip(self.entries.iter()) {
            if e.nonce.len() == SHA256_SIZE {
                dst.copy_from_slice(e.nonce);
            }
        }
        new_nonces
    }
}

/// The tag of a command with (or without) sessions, and of its success response.
fn session_tag(sessions: &[Auth<'_>]) -> u16 {
    if sessions.is_empty() {
        st::NO_SESSIONS
    } else {
        st::SESSIONS
    }
}

/// The offset of the parameter area: after the header, the handles and (with sessions)
/// the authorization area and its size.
fn param_offset(
    handle_count: usize,
    any_sessions: bool,
    auth_len: usize,
) -> Result<usize, WriteError> {
    let handles_end = handle_count
        .checked_mul(4)
        .and_then(|h| h.checked_add(10))
        .ok_or(WriteError::Overflow)?;
    if any_sessions {
        handles_end
            .checked_add(4)
            .and_then(|e| e.checked_add(auth_len))
            .ok_or(WriteError::Overflow)
    } else {
        Ok(handles_end)
    }
}

/// The nonceTPM of the decrypt and the encrypt session when they are not the first
/// session (and the encrypt one not the decrypt one), for a command that authorizes.
fn extra_nonces(spec: &CommandSpec, sessions: &[Auth<'_>], plan: &SessionPlan) -> ExtraNonces {
    let mut extra = ExtraNonces::default();
    if spec.auth_handles > 0 {
        for (at, other) in [(plan.decrypt_at, None), (plan.encrypt_at, plan.decrypt_at)] {
            if let Some(j) = at {
                if j != 0 && Some(j) != other {
                    if let (Some(Auth::Session { session, .. }), Some(slot)) =
                        (sessions.get(j), extra.nonces.get_mut(extra.count))
                    {
                        *slot = session.nonce_tpm;
                        // At most 2: a slot was free (count < 2) and this loop runs twice.
                        extra.count = extra.count.saturating_add(1);
                    }
                }
            }
        }
    }
    extra
}

/// Splits a response (`response` is exactly the bytes received) as hostile input: tag,
/// size and response code (an error code is returned as [`Error::Tpm`]), the response
/// handle, the parameter area and one authorization entry per command session, with
/// nothing left over.
fn parse_response<'r>(
    response: &'r [u8],
    spec: &CommandSpec,
    sessions: &[Auth<'_>],
) -> Result<ResponseParts<'r>, Error> {
    let n = response.len();
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
    if tag != session_tag(sessions) {
        return Err(ParseError::BadTag(tag).into());
    }
    let handle = if spec.response_handles == 1 {
        r.u32()?
    } else {
        0
    };
    let (params, params_start) = if sessions.is_empty() {
        let start = n.saturating_sub(r.remaining());
        (r.take(r.remaining())?, start)
    } else {
        let psize = usize::try_from(r.u32()?).map_err(|_| ParseError::TooLarge)?;
        let start = n.saturating_sub(r.remaining());
        (r.take(psize)?, start)
    };
    let mut entries = [ResponseAuth::default(); MAX_SESSIONS];
    for e in entries.iter_mut().take(sessions.len()) {
        let nonce = r.tpm2b(SHA256_SIZE)?;
        let attrs = r.u8()?;
        let mac = r.tpm2b(MAX_AUTH)?;
        *e = ResponseAuth { nonce, attrs, mac };
    }
    if r.remaining() != 0 {
        return Err(ParseError::SessionCount.into());
    }
    Ok(ResponseParts {
        handle,
        params,
        params_start,
        entries,
    })
}

/// Verifies every response authorization before anything from the response is used: a
/// password entry must be empty with continueSession; a session entry's HMAC over rpHash
/// must verify (constant time) and its attributes must echo the session's.
fn verify_response_auth(
    spec: &CommandSpec,
    handles: &[&Object],
    sessions: &[Auth<'_>],
    parts: &ResponseParts<'_>,
) -> Result<(), Error> {
    let rp = crypto::rp_hash(0, spec.cc, parts.params);
    for (i, (s, e)) in sessions.iter().zip(parts.entries.iter()).enumerate() {
        match s {
            Auth::Password(_) => {
                if !e.nonce.is_empty() || !e.mac.is_empty() || e.attrs != sa::CONTINUE_SESSION {
                    return Err(ParseError::BadValue.into());
                }
            }
            Auth::Session { session, .. } => {
                let av = hmac_auth(i, spec, handles, s);
                let expect = crypto::session_hmac(
                    session.key(),
                    av,
                    &rp,
                    e.nonce,
                    &session.nonce_caller,
                    e.attrs,
                );
                if e.nonce.len() != SHA256_SIZE || !crypto::ct_eq(&expect, e.mac) {
                    // i < MAX_SESSIONS, so the 1-based number always fits.
                    let number = u8::try_from(i.saturating_add(1)).unwrap_or(u8::MAX);
                    return Err(Error::ResponseHmac { session: number });
                }
                let mask = crate::session::SUPPORTED.bits();
                if e.attrs & mask != session.attributes & mask {
                    return Err(ParseError::BadValue.into());
                }
            }
        }
    }
    Ok(())
}

/// After the response verified: rolls each session's nonceTPM, closes sessions that did
/// not continue, resets the PolicyAuthValue flag of policy sessions; returns the key and
/// IV that decrypt the first response parameter, if a session has `encrypt`.
fn roll_sessions(
    spec: &CommandSpec,
    sessions: &mut [Auth<'_>],
    new_nonces: &[[u8; SHA256_SIZE]; MAX_SESSIONS],
    encrypt_at: Option<usize>,
) -> Option<([u8; 16], [u8; 16])> {
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
    rsp_key
}

impl<T: Transport> Tpm<T> {
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
        let plan = self.check_sessions(spec, handles, sessions)?;

        // Parameters first, at their final offset.
        let param_off = param_offset(handles.len(), !sessions.is_empty(), plan.auth_len)?;
        let layout = self.marshal_params(param_off, params)?;
        if let Some(i) = plan.decrypt_at {
            if let Some(auth) = sessions.get(i) {
                self.encrypt_command_param(spec, i, auth, layout)?;
            }
        }

        // Header, handles, authorization area.
        self.write_head(spec, handles, sessions, &plan, layout)?;

        let n = self.transact_until_started(layout.total)?;
        let response = self.rsp.get(..n).ok_or(TransportError::ResponseTooLarge)?;

        // Parse, as hostile input; verify every response HMAC before anything is used.
        let parts = parse_response(response, spec, sessions)?;
        verify_response_auth(spec, handles, sessions, &parts)?;
        let handle = parts.handle;
        let params_start = parts.params_start;
        let params_end = params_start.saturating_add(parts.params.len());
        let new_nonces = parts.new_nonces();

        // Verified: roll nonces, close ended sessions, reset used policy sessions.
        if let Some((k, iv)) = roll_sessions(spec, sessions, &new_nonces, plan.encrypt_at) {
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

    /// Checks the sessions fit the command (counts, at most one decrypt and one encrypt
    /// session and only where the command allows it, no closed or trial session
    /// authorizing, password sessions only for authorized handles), draws each session's
    /// fresh nonceCaller and sizes the authorization area.
    fn check_sessions(
        &mut self,
        spec: &CommandSpec,
        handles: &[&Object],
        sessions: &mut [Auth<'_>],
    ) -> Result<SessionPlan, Error> {
        if sessions.len() < spec.auth_handles
            || sessions.len() > MAX_SESSIONS
            || handles.len() < spec.auth_handles
            || handles.len() > 3
        {
            return Err(Error::BadSessions);
        }
        let mut plan = SessionPlan {
            decrypt_at: None,
            encrypt_at: None,
            auth_len: 0,
        };
        for (i, s) in sessions.iter_mut().enumerate() {
            match s {
                Auth::Password(pw) => {
                    if pw.len() > MAX_AUTH || i >= spec.auth_handles {
                        return Err(Error::BadSessions);
                    }
                    plan.add_entry(0, pw.len())?;
                }
                Auth::Session { session, .. } => {
                    if !session.open
                        || (session.kind == SessionKind::Trial && i < spec.auth_handles)
                    {
                        return Err(Error::BadSessions);
                    }
                    if session.attributes & sa::DECRYPT != 0 {
                        if plan.decrypt_at.is_some() || !spec.encrypt_command {
                            return Err(Error::BadSessions);
                        }
                        plan.decrypt_at = Some(i);
                    }
                    if session.attributes & sa::ENCRYPT != 0 {
                        if plan.encrypt_at.is_some() || !spec.encrypt_response {
                            return Err(Error::BadSessions);
                        }
                        plan.encrypt_at = Some(i);
                    }
                    let rng = self.rng.as_mut().ok_or(Error::NoEntropy)?;
                    rng.generate(&mut session.nonce_caller);
                    plan.add_entry(SHA256_SIZE, SHA256_SIZE)?;
                }
            }
        }
        Ok(plan)
    }

    /// Marshals the parameter area into the command buffer at `param_off`.
    fn marshal_params(
        &mut self,
        param_off: usize,
        params: impl FnOnce(&mut Writer<'_>) -> Result<(), WriteError>,
    ) -> Result<CommandLayout, Error> {
        let param_len = {
            let area = self.cmd.get_mut(param_off..).ok_or(WriteError::Overflow)?;
            let mut w = Writer::new(area);
            params(&mut w)?;
            w.len()
        };
        let total = param_off
            .checked_add(param_len)
            .ok_or(WriteError::Overflow)?;
        Ok(CommandLayout { param_off, total })
    }

    /// Encrypts the first command parameter (in place) with the CFB key and IV of
    /// session `i`, the one with `decrypt`.
    fn encrypt_command_param(
        &mut self,
        spec: &CommandSpec,
        i: usize,
        auth: &Auth<'_>,
        layout: CommandLayout,
    ) -> Result<(), Error> {
        let Auth::Session { session, .. } = auth else {
            return Ok(());
        };
        let av = cfb_auth(i, spec, auth);
        let (k, iv) =
            crypto::cfb_key_iv(session.key(), av, &session.nonce_caller, &session.nonce_tpm);
        #[cfg(feature = "observe-secrets")]
        {
            let first = self.cmd.get(layout.param_off..layout.total).unwrap_or(&[]);
            let n = crate::wire::u16_at(first, 0).map_or(0, usize::from);
            let contents = first.get(2..).and_then(|c| c.get(..n));
            self.observe(contents.unwrap_or(&[]));
            self.observe(session.key());
        }
        let area = self
            .cmd
            .get_mut(layout.param_off..layout.total)
            .ok_or(WriteError::Overflow)?;
        crypt_first_tpm2b(area, &k, &iv, true).map_err(|_| Error::BadSessions)
    }

    /// Writes the header, the handles and the authorization area (each session's HMAC
    /// over cpHash) in front of the marshalled parameters.
    fn write_head(
        &mut self,
        spec: &CommandSpec,
        handles: &[&Object],
        sessions: &[Auth<'_>],
        plan: &SessionPlan,
        layout: CommandLayout,
    ) -> Result<(), Error> {
        let mut names: [&[u8]; 3] = [&[]; 3];
        for (n, h) in names.iter_mut().zip(handles.iter()) {
            *n = h.name.as_bytes();
        }
        let params_bytes = self
            .cmd
            .get(layout.param_off..layout.total)
            .ok_or(WriteError::Overflow)?;
        let cp = crypto::cp_hash(
            spec.cc,
            names.get(..handles.len()).unwrap_or(&[]),
            params_bytes,
        );
        let mut head = [0u8; MAX_HEAD];
        let mut w = Writer::new(&mut head);
        w.u16(session_tag(sessions))?;
        w.u32(u32::try_from(layout.total).map_err(|_| WriteError::Overflow)?)?;
        w.u32(spec.cc)?;
        for h in handles {
            w.u32(h.handle)?;
        }
        if !sessions.is_empty() {
            w.u32(u32::try_from(plan.auth_len).map_err(|_| WriteError::Overflow)?)?;
        }
        let hmac = CommandHmac {
            spec,
            handles,
            cp,
            extra: extra_nonces(spec, sessions, plan),
        };
        for (i, s) in sessions.iter().enumerate() {
            self.write_auth_entry(&mut w, &hmac, i, s)?;
        }
        if w.len() != layout.param_off {
            return Err(Error::Marshal(WriteError::Overflow));
        }
        self.cmd
            .get_mut(..layout.param_off)
            .ok_or(WriteError::Overflow)?
            .copy_from_slice(w.written());
        Ok(())
    }

    /// Writes session `i`'s command authorization: a password entry, or the session's
    /// handle, nonceCaller, attributes and HMAC over cpHash (and, for the first session,
    /// the nonceTPM of separate decrypt / encrypt sessions).
    fn write_auth_entry(
        &self,
        w: &mut Writer<'_>,
        hmac: &CommandHmac<'_>,
        i: usize,
        s: &Auth<'_>,
    ) -> Result<(), WriteError> {
        match s {
            Auth::Password(pw) => {
                w.u32(rh::PW)?;
                w.tpm2b(&[])?;
                w.u8(sa::CONTINUE_SESSION)?;
                w.tpm2b(pw)
            }
            Auth::Session { session, .. } => {
                let av = crypto::auth_value_trimmed(hmac_auth(i, hmac.spec, hmac.handles, s));
                self.observe(av);
                self.observe(session.key());
                let attrs = [session.attributes];
                let parts: [&[u8]; 6] = [
                    &hmac.cp,
                    &session.nonce_caller,
                    &session.nonce_tpm,
                    hmac.extra.for_session(i, 0),
                    hmac.extra.for_session(i, 1),
                    &attrs,
                ];
                let mac = crypto::hmac_sha256_split_key(&[session.key(), av], &parts);
                w.u32(session.handle)?;
                w.tpm2b(&session.nonce_caller)?;
                w.u8(session.attributes)?;
                w.tpm2b(&mac)
            }
        }
    }

    /// Sends the command and receives the response; returns the response length.
    /// TPM_RC_RETRY, TPM_RC_YIELDED and TPM_RC_TESTING are warnings that the command was
    /// not started (sessions untouched): the same bytes are sent again after a growing
    /// wait, a bounded number of times (RETRY_DELAYS_MS; libtpms answers the first
    /// RSA_Decrypt after a reset with TPM_RC_RETRY).
    fn transact_until_started(&mut self, total: usize) -> Result<usize, Error> {
        let command = self.cmd.get(..total).ok_or(WriteError::Overflow)?;
        let mut n = 0;
        self.executed = self.executed.saturating_add(1);
        for attempt in 0..=NOT_STARTED_RETRIES {
            n = self.transport.transact(command, &mut self.rsp)?;
            let rc = crate::wire::code(&self.rsp);
            if !matches!(rc, Some(RC_RETRY | RC_YIELDED | RC_TESTING)) {
                break;
            }
            if let Some(&ms) = RETRY_DELAYS_MS.get(attempt) {
                (self.delay)(ms);
                self.waited_ms = self.waited_ms.saturating_add(u64::from(ms));
            }
        }
        Ok(n)
    }

    /// [`Tpm::execute`] of a command whose response has no parameters.
    pub(super) fn execute_no_reply(
        &mut self,
        spec: &CommandSpec,
        handles: &[&Object],
        sessions: &mut [Auth<'_>],
        params: impl FnOnce(&mut Writer<'_>) -> Result<(), WriteError>,
    ) -> Result<(), Error> {
        let reply = self.execute(spec, handles, sessions, params)?;
        Reader::new(self.reply_params(&reply)).finish()?;
        Ok(())
    }

    pub(super) fn simple(
        &mut self,
        cc: u32,
        handles: &[&Object],
        params: impl FnOnce(&mut Writer<'_>) -> Result<(), WriteError>,
    ) -> Result<Reply, Error> {
        self.execute(&CommandSpec::new(cc, 0), handles, &mut [], params)
    }
}
