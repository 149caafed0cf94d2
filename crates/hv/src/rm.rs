//! The resource-manager layer of H_TPM_COMM: which commands are relayed at all (the
//! allowlist), where their handles are (handle area, the authorization area's sessions, and
//! the two commands whose handle is a parameter), which handles a caller may name, what each
//! command creates or ends, and the TPM-format refusals this layer answers with.
//!
//! Our hypervisor talks to the TPM directly (QEMU's proxy leans on the Linux kernel's
//! /dev/tpmrm0), so it *is* the resource manager between its callers.
//!
//! # The allowlist
//!
//! [`ALLOWLIST`] holds every relayed command with its layout from TPM 2.0 Library Part 3
//! (rev. 1.59): the number of handles in the command's handle area, how many of them need
//! authorization (so the authorization area holds at least that many sessions), the number
//! of handles in the response's handle area, and what a success creates or ends. A command
//! not on the list is answered by this layer, never sent to the TPM: a 10-byte TPM response
//! (tag `TPM_ST_NO_SESSIONS`) with [`RM_COMMAND_CODE`] = `TPM_RC_COMMAND_CODE` (0x143) in the
//! resource-manager layer (0x000B0000): `0x000B0143`, exactly what the Linux kernel's
//! resource manager answers for a command it does not know (the kernel's tpm2 selftest
//! `SpaceTest.test_invalid_cc` checks `TPM2_RC_COMMAND_CODE | TSS2_RESMGR_TPM_RC_LAYER`).
//! r3 is H_SUCCESS, as for any TPM-format answer. The layer tells the caller "the TPM did
//! not say this": a TPM never sets layer bits.
//!
//! What is left off, and why (each is refused as above):
//! - `Startup`, `Shutdown`: the TPM's power state belongs to the machine (the firmware
//!   starts the TPM after reset; the hypervisor sends `Shutdown(CLEAR)` at power-off). A
//!   guest's `Shutdown(STATE)` would choose for everyone whether the next boot resumes saved
//!   state (measured: swtpm accepts it from any caller, rc 0).
//! - `EvictControl`: persistent objects outlive every caller and fill the TPM's NV, outside
//!   any quota; with platform authorization it deletes the ultravisor's keys. The persistent
//!   keys are provisioned by the firmware, which does not go through the hypervisor.
//! - Hierarchy and machine configuration (`HierarchyControl`, `HierarchyChangeAuth`,
//!   `Clear`, `ClearControl`, `ChangeEPS`/`PPS`, `SetPrimaryPolicy`, `PCR_Allocate`,
//!   `PCR_SetAuthPolicy`/`Value`, `ClockSet`, `ClockRateAdjust`, `SetAlgorithmSet`,
//!   `SetCommandCodeAuditStatus`, `PP_Commands`, `FieldUpgrade*`, `DictionaryAttack*`):
//!   global to every caller (swtpm ran `Clear` and `HierarchyControl` from a guest, rc 0).
//! - NV writes and NV space management (`NV_DefineSpace`, `NV_UndefineSpace*`, `NV_Write`,
//!   `NV_Increment`, `NV_Extend`, `NV_SetBits`, `NV_WriteLock`, `NV_GlobalWriteLock`,
//!   `NV_ReadLock`, `NV_ChangeAuth`, `NV_Certify`): NV is shared, persistent, and not
//!   per-caller; a guest may read (`NV_Read`, `NV_ReadPublic`) but not change it.
//! - `PCR_Reset`, `PCR_Event`: a reset undoes measurements other callers rely on; `PCR_Extend`
//!   covers measuring.
//! - Everything else not listed (audit digests, `GetTime`, `Commit`/`ZGen_2Phase`/
//!   `EC_Ephemeral` (ECDAA), `Rewrap`, `CertifyCreation`, `SelfTest`, vendor codes): no
//!   workload here needs it; an addition is one table row and its layout.
//!
//! # Handles a caller may name
//!
//! Every handle in the handle area, FlushContext's `flushHandle`, ContextLoad's saved session
//! handle and every session handle of the authorization area is classified by [`classify`]:
//! transient objects and sequences (0x80…) and sessions (0x02…, 0x03…) must be owned by the
//! caller; `TPM_RH_PLATFORM`, `TPM_RH_PLATFORM_NV` and `TPM_RH_LOCKOUT` are refused to every
//! caller (the platform hierarchy is the firmware's; lockout authorization resets
//! dictionary-attack state for everyone); the other permanent handles (owner, endorsement,
//! null, password session), PCRs (0x00…), NV indices (0x01…) and persistent objects (0x81…,
//! such as the ultravisor's 0x81800000/1) may be named: the TPM's own authorization governs
//! them.
//!
//! Malformed commands are refused by this layer too, so every handle is found before a
//! command is sent: a tag other than `TPM_ST_NO_SESSIONS`/`TPM_ST_SESSIONS` is
//! [`RM_BAD_TAG`]; a command too short for its handle area (or FlushContext's or
//! ContextLoad's parameter) is [`RM_COMMAND_SIZE`]; an authorization area that does not
//! parse (size past the command, an entry cut short, not exactly filled, no entry, more than
//! three) is [`RM_AUTHSIZE`]. Parsing never panics: every read is checked.
#![forbid(unsafe_code)]

use tpm::attrs::SessionAttributes;
use tpm::wire::{
    header, put_u32_at, rc_response, st, u16_at, u32_at, CommandCode as CC, Header, HEADER_LEN,
};

/// The resource-manager response-code layer (TSS2_RESMGR_TPM_RC_LAYER, 11 << 16).
pub const RM_LAYER: u32 = 0x000B_0000;

/// A command not on the allowlist: `TPM_RC_COMMAND_CODE` in the RM layer.
pub const RM_COMMAND_CODE: u32 = RM_LAYER | 0x143;
/// A tag that is neither `TPM_ST_NO_SESSIONS` nor `TPM_ST_SESSIONS` (or sessions on a
/// GetCapability this layer must rewrite): `TPM_RC_BAD_TAG` in the RM layer.
pub const RM_BAD_TAG: u32 = RM_LAYER | 0x01E;
/// A command too short for its handle area: `TPM_RC_COMMAND_SIZE` in the RM layer.
pub const RM_COMMAND_SIZE: u32 = RM_LAYER | 0x142;
/// An authorization area that does not parse: `TPM_RC_AUTHSIZE` in the RM layer.
pub const RM_AUTHSIZE: u32 = RM_LAYER | 0x144;
/// The caller is at its object quota, or the TPM's object capacity is used:
/// `TPM_RC_OBJECT_MEMORY` in the RM layer (what tpm2-abrmd answers at its per-connection limit).
pub const RM_OBJECT_MEMORY: u32 = RM_LAYER | 0x902;
/// The caller is at its session quota, or the rest is held for the ultravisor:
/// `TPM_RC_SESSION_MEMORY` in the RM layer.
pub const RM_SESSION_MEMORY: u32 = RM_LAYER | 0x903;

/// What a successful command creates: the response's first handle, which the caller then owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A transient object (counts against the object quota).
    Object,
    /// A hash, HMAC or event sequence (a transient object: counts as one).
    Sequence,
    /// An HMAC, policy or trial session (counts against the session quota).
    Session,
}

/// What a command does to the handles the resource manager tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Nothing (beyond the authorization area's `continueSession`).
    None,
    /// Creates one handle of this kind, the response's first handle.
    Creates(Kind),
    /// ContextLoad: the response's handle is an object (new) or a session (already owned),
    /// by the saved context's `savedHandle`.
    ContextLoad,
    /// FlushContext: `flushHandle` (a parameter) is named and forgotten on success.
    Flush,
    /// SequenceComplete / EventSequenceComplete: the sequence at this handle-area index is
    /// ended (the TPM flushes it) on success.
    EndsSequence(u8),
    /// GetCapability: a `TPM_CAP_HANDLES` answer over transient objects or sessions is
    /// rewritten to the caller's own handles.
    Capability,
}

/// One relayed command and its layout (TPM 2.0 Part 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandInfo {
    /// `TPM_CC_*`.
    pub code: u32,
    /// The command's name.
    pub name: &'static str,
    /// Handles in the command's handle area.
    pub handles: u8,
    /// How many of them need authorization (the minimum number of sessions).
    pub auths: u8,
    /// Handles in the response's handle area.
    pub rsp_handles: u8,
    /// What a success does to tracked handles.
    pub effect: Effect,
    /// Why it is relayed.
    pub why: &'static str,
}

/// An allowlist row: the code's name comes from the one command-code table
/// ([`CC::name`]); a code missing there fails the build.
const fn c(
    code: CC,
    handles: u8,
    auths: u8,
    rsp_handles: u8,
    effect: Effect,
    why: &'static str,
) -> CommandInfo {
    let Some(name) = code.name() else {
        // Const-evaluated only (the ALLOWLIST table): this fails the build, never a run.
        #[allow(clippy::panic)]
        {
            panic!("allowlist code not in the TPM_CC table")
        }
    };
    CommandInfo {
        code: code.0,
        name,
        handles,
        auths,
        rsp_handles,
        effect,
        why,
    }
}

use Effect::{Capability, ContextLoad, Creates, EndsSequence, Flush, None as No};
use Kind::{Object, Sequence, Session};

const KEYS: &str = "key use on the caller's own keys";
const POLICY: &str = "policy sessions (the ultravisor's unwrap; guests' sealed data)";
const SEQ: &str = "hash/HMAC sequences";
const OBJ: &str = "object creation and loading under the caller's quota";
const UNWRAP: &str = "the ultravisor's unwrap; key use";
const NAME_CHECK: &str = "the ultravisor's Name check; key use";
const CONTEXTS: &str = "a caller's own saved contexts";
const FREES: &str = "a caller frees its own handles";
const NV: &str = "reading NV (provisioned data)";
const SESSIONS: &str = "sessions under the caller's quota";
const HANDLES: &str = "capability query (handles filtered)";
const ENTROPY: &str = "entropy (every client seeds from it)";

/// Every command the hypervisor relays, in command-code order.
pub const ALLOWLIST: [CommandInfo; 65] = [
    c(CC::CREATE_PRIMARY, 1, 1, 1, Creates(Object), OBJ),
    c(CC::SEQUENCE_COMPLETE, 1, 1, 0, EndsSequence(0), SEQ),
    c(CC::STIR_RANDOM, 0, 0, 0, No, "entropy"),
    c(CC::ACTIVATE_CREDENTIAL, 2, 2, 0, No, "attestation"),
    c(CC::CERTIFY, 2, 2, 0, No, "attestation"),
    c(CC::POLICY_NV, 3, 1, 0, No, POLICY),
    c(CC::DUPLICATE, 2, 1, 0, No, "key backup/migration"),
    c(CC::NV_READ, 2, 1, 0, No, NV),
    c(CC::OBJECT_CHANGE_AUTH, 2, 1, 0, No, KEYS),
    c(CC::POLICY_SECRET, 2, 1, 0, No, POLICY),
    c(CC::CREATE, 1, 1, 0, No, OBJ),
    c(CC::ECDH_ZGEN, 1, 1, 0, No, KEYS),
    c(CC::HMAC, 1, 1, 0, No, KEYS),
    c(CC::IMPORT, 1, 1, 0, No, OBJ),
    c(CC::LOAD, 1, 1, 1, Creates(Object), OBJ),
    c(CC::QUOTE, 1, 1, 0, No, "attestation"),
    c(CC::RSA_DECRYPT, 1, 1, 0, No, UNWRAP),
    c(CC::HMAC_START, 1, 1, 1, Creates(Sequence), SEQ),
    c(CC::SEQUENCE_UPDATE, 1, 1, 0, No, SEQ),
    c(CC::SIGN, 1, 1, 0, No, KEYS),
    c(CC::UNSEAL, 1, 1, 0, No, "sealed data"),
    c(CC::POLICY_SIGNED, 2, 0, 0, No, POLICY),
    c(CC::CONTEXT_LOAD, 0, 0, 1, ContextLoad, CONTEXTS),
    c(CC::CONTEXT_SAVE, 1, 0, 0, No, CONTEXTS),
    c(CC::ECDH_KEY_GEN, 1, 0, 0, No, KEYS),
    c(CC::ENCRYPT_DECRYPT, 1, 1, 0, No, KEYS),
    c(CC::FLUSH_CONTEXT, 0, 0, 0, Flush, FREES),
    c(CC::LOAD_EXTERNAL, 0, 0, 1, Creates(Object), OBJ),
    c(CC::MAKE_CREDENTIAL, 1, 0, 0, No, "attestation"),
    c(CC::NV_READ_PUBLIC, 1, 0, 0, No, NV),
    c(CC::POLICY_AUTHORIZE, 1, 0, 0, No, POLICY),
    c(CC::POLICY_AUTH_VALUE, 1, 0, 0, No, POLICY),
    c(CC::POLICY_COMMAND_CODE, 1, 0, 0, No, POLICY),
    c(CC::POLICY_COUNTER_TIMER, 1, 0, 0, No, POLICY),
    c(CC::POLICY_CP_HASH, 1, 0, 0, No, POLICY),
    c(CC::POLICY_LOCALITY, 1, 0, 0, No, POLICY),
    c(CC::POLICY_NAME_HASH, 1, 0, 0, No, POLICY),
    c(CC::POLICY_OR, 1, 0, 0, No, POLICY),
    c(CC::POLICY_TICKET, 1, 0, 0, No, POLICY),
    c(CC::READ_PUBLIC, 1, 0, 0, No, NAME_CHECK),
    c(CC::RSA_ENCRYPT, 1, 0, 0, No, KEYS),
    c(CC::START_AUTH_SESSION, 2, 0, 1, Creates(Session), SESSIONS),
    c(CC::VERIFY_SIGNATURE, 1, 0, 0, No, KEYS),
    c(CC::ECC_PARAMETERS, 0, 0, 0, No, "capability query"),
    c(CC::GET_CAPABILITY, 0, 0, 0, Capability, HANDLES),
    c(CC::GET_RANDOM, 0, 0, 0, No, ENTROPY),
    c(CC::GET_TEST_RESULT, 0, 0, 0, No, "capability query"),
    c(CC::HASH, 0, 0, 0, No, SEQ),
    c(CC::PCR_READ, 0, 0, 0, No, "measurements"),
    c(CC::POLICY_PCR, 1, 0, 0, No, POLICY),
    c(CC::POLICY_RESTART, 1, 0, 0, No, POLICY),
    c(CC::READ_CLOCK, 0, 0, 0, No, "capability query"),
    c(CC::PCR_EXTEND, 1, 1, 0, No, "measurements (extend only)"),
    c(CC::EVENT_SEQUENCE_COMPLETE, 2, 2, 0, EndsSequence(1), SEQ),
    c(CC::HASH_SEQUENCE_START, 0, 0, 1, Creates(Sequence), SEQ),
    c(CC::POLICY_PHYSICAL_PRESENCE, 1, 0, 0, No, POLICY),
    c(CC::POLICY_DUPLICATION_SELECT, 1, 0, 0, No, POLICY),
    c(CC::POLICY_GET_DIGEST, 1, 0, 0, No, POLICY),
    c(CC::TEST_PARMS, 0, 0, 0, No, "capability query"),
    c(CC::POLICY_PASSWORD, 1, 0, 0, No, POLICY),
    c(CC::POLICY_NV_WRITTEN, 1, 0, 0, No, POLICY),
    c(CC::POLICY_TEMPLATE, 1, 0, 0, No, POLICY),
    c(CC::CREATE_LOADED, 1, 1, 1, Creates(Object), OBJ),
    c(CC::POLICY_AUTHORIZE_NV, 3, 1, 0, No, POLICY),
    c(CC::ENCRYPT_DECRYPT_2, 1, 1, 0, No, KEYS),
];

/// The allowlist entry of `code`, if it is relayed.
pub fn lookup(code: u32) -> Option<&'static CommandInfo> {
    ALLOWLIST
        .binary_search_by_key(&code, |i| i.code)
        .ok()
        .and_then(|i| ALLOWLIST.get(i))
}

/// How the resource manager treats a handle a caller names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandleClass {
    /// A transient object, sequence or session: the caller must own it.
    MustOwn,
    /// Refused to every caller (platform hierarchy, lockout).
    Forbidden,
    /// Shared (owner/endorsement/null hierarchy, password session, PCR, NV index,
    /// persistent object): the TPM's authorization governs it.
    Shared,
}

/// `TPM_RH_LOCKOUT`, `TPM_RH_PLATFORM`, `TPM_RH_PLATFORM_NV`.
const FORBIDDEN: [u32; 3] = [0x4000_000A, 0x4000_000C, 0x4000_000D];

/// The class of handle `h`.
pub fn classify(h: u32) -> HandleClass {
    if matches!(h >> 24, 0x80 | 0x02 | 0x03) {
        HandleClass::MustOwn
    } else if FORBIDDEN.contains(&h) {
        HandleClass::Forbidden
    } else {
        HandleClass::Shared
    }
}

/// Whether `h` names a session (loaded 0x02…, saved 0x03…).
pub fn is_session(h: u32) -> bool {
    matches!(h >> 24, 0x02 | 0x03)
}

/// Most sessions an authorization area may hold (TPM 2.0 Part 1: three).
pub const MAX_SESSIONS: usize = 3;
/// Most handles a command names: 3 in the handle area, 3 sessions, or a parameter handle.
pub const MAX_NAMED: usize = 6;

/// Why this layer answers a command itself; [`Refusal::rc`] is the response code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not on the allowlist.
    CommandCode,
    /// Bad tag, or sessions on a GetCapability this layer must rewrite.
    BadTag,
    /// Too short for its handle area or handle parameter.
    CommandSize,
    /// The authorization area does not parse.
    AuthSize,
    /// Object quota or capacity.
    ObjectMemory,
    /// Session quota or the ultravisor's reserve.
    SessionMemory,
}

impl Refusal {
    /// The response code this layer answers with.
    pub const fn rc(self) -> u32 {
        match self {
            Refusal::CommandCode => RM_COMMAND_CODE,
            Refusal::BadTag => RM_BAD_TAG,
            Refusal::CommandSize => RM_COMMAND_SIZE,
            Refusal::AuthSize => RM_AUTHSIZE,
            Refusal::ObjectMemory => RM_OBJECT_MEMORY,
            Refusal::SessionMemory => RM_SESSION_MEMORY,
        }
    }
}

/// The 10-byte TPM response carrying `rc` (tag `TPM_ST_NO_SESSIONS`).
pub fn refusal_response(rc: u32) -> [u8; 10] {
    rc_response(rc)
}

/// One session of the authorization area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthSession {
    /// `sessionHandle`.
    pub handle: u32,
    /// `sessionAttributes`.
    pub attrs: SessionAttributes,
}

/// A command as the resource manager sees it.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// Its allowlist entry.
    pub info: &'static CommandInfo,
    /// The handle area.
    pub handles: heapless::Vec<u32, 3>,
    /// The authorization area's sessions.
    pub sessions: heapless::Vec<AuthSession, MAX_SESSIONS>,
    /// FlushContext's `flushHandle`, or ContextLoad's `savedHandle` when it is a session.
    pub param_handle: Option<u32>,
    /// ContextLoad only: whether the context is a session's.
    pub loads_session: bool,
    /// GetCapability(TPM_CAP_HANDLES) over transient objects or sessions: the response
    /// must be filtered to the caller's own handles.
    pub filter_handles: bool,
    /// GetCapability's `property` (the first handle asked for) and `propertyCount`.
    pub cap_range: (u32, u32),
}

impl Parsed {
    /// Every handle the caller names, for the ownership check.
    pub fn named(&self) -> impl Iterator<Item = u32> + '_ {
        self.handles
            .iter()
            .copied()
            .chain(self.sessions.iter().map(|s| s.handle))
            .chain(self.param_handle)
    }

    /// What a success creates that counts against a quota (ContextLoad of a session
    /// reloads one the caller already owns: nothing new).
    pub fn new_kind(&self) -> Option<Kind> {
        match self.info.effect {
            Effect::Creates(k) => Some(k),
            Effect::ContextLoad if !self.loads_session => Some(Kind::Object),
            _ => None,
        }
    }
}

/// Parses a command (a whole one: the header's size was checked against in_size) as far as
/// the resource manager needs; `Err` is the refusal this layer answers with.
pub fn parse(cmd: &[u8]) -> Result<Parsed, Refusal> {
    let Header { tag, code, .. } = header(cmd).ok_or(Refusal::CommandSize)?;
    let info = lookup(code).ok_or(Refusal::CommandCode)?;
    if tag != st::NO_SESSIONS && tag != st::SESSIONS {
        return Err(Refusal::BadTag);
    }
    let mut handles = heapless::Vec::new();
    let mut off = HEADER_LEN;
    for _ in 0..info.handles {
        let h = u32_at(cmd, off).ok_or(Refusal::CommandSize)?;
        handles.push(h).map_err(|_| Refusal::CommandSize)?;
        off = off.checked_add(4).ok_or(Refusal::CommandSize)?;
    }
    let mut sessions = heapless::Vec::new();
    if tag == st::SESSIONS {
        let size = u32_at(cmd, off).ok_or(Refusal::AuthSize)?;
        let start = off.checked_add(4).ok_or(Refusal::AuthSize)?;
        let end = usize::try_from(size)
            .ok()
            .and_then(|s| start.checked_add(s))
            .filter(|e| *e <= cmd.len())
            .ok_or(Refusal::AuthSize)?;
        let mut p = start;
        while p < end {
            let handle = u32_at(cmd, p).ok_or(Refusal::AuthSize)?;
            p = skip_tpm2b(cmd, p.checked_add(4).ok_or(Refusal::AuthSize)?)?;
            let attrs = SessionAttributes::from_bits_retain(*cmd.get(p).ok_or(Refusal::AuthSize)?);
            p = skip_tpm2b(cmd, p.checked_add(1).ok_or(Refusal::AuthSize)?)?;
            if p > end {
                return Err(Refusal::AuthSize);
            }
            sessions
                .push(AuthSession { handle, attrs })
                .map_err(|_| Refusal::AuthSize)?;
        }
        if sessions.is_empty() {
            return Err(Refusal::AuthSize);
        }
        off = end;
    }
    let mut param_handle = None;
    let mut loads_session = false;
    let mut filter_handles = false;
    let mut cap_range = (0, 0);
    match info.effect {
        Effect::Flush => param_handle = Some(u32_at(cmd, off).ok_or(Refusal::CommandSize)?),
        Effect::ContextLoad => {
            // TPMS_CONTEXT: sequence (u64), savedHandle (u32), hierarchy, contextBlob.
            let saved = off
                .checked_add(8)
                .and_then(|o| u32_at(cmd, o))
                .ok_or(Refusal::CommandSize)?;
            if is_session(saved) {
                loads_session = true;
                param_handle = Some(saved);
            }
        }
        Effect::Capability => {
            let cap = u32_at(cmd, off);
            let prop = off.checked_add(4).and_then(|o| u32_at(cmd, o));
            if let (Some(1), Some(p)) = (cap, prop) {
                filter_handles = classify(p) == HandleClass::MustOwn;
                let count = off.checked_add(8).and_then(|o| u32_at(cmd, o));
                cap_range = (p, count.unwrap_or(0));
            }
            if filter_handles && tag == st::SESSIONS {
                // The response is rewritten: an audit HMAC over it could not be kept.
                return Err(Refusal::BadTag);
            }
        }
        _ => {}
    }
    Ok(Parsed {
        info,
        handles,
        sessions,
        param_handle,
        loads_session,
        filter_handles,
        cap_range,
    })
}

/// The offset after the TPM2B at `off` (u16 size, then that many bytes), if it fits.
fn skip_tpm2b(b: &[u8], off: usize) -> Result<usize, Refusal> {
    let n = u16_at(b, off).ok_or(Refusal::AuthSize)?;
    let end = off
        .checked_add(2)
        .and_then(|o| o.checked_add(usize::from(n)))
        .filter(|e| *e <= b.len())
        .ok_or(Refusal::AuthSize)?;
    Ok(end)
}

/// Writes a successful GetCapability(TPM_CAP_HANDLES) response listing `handles` (at most
/// 64; moreData YES when `more` or some were cut) into `rsp`; returns its length (0 if
/// `rsp` is too small).
pub fn handle_list_response(rsp: &mut [u8], handles: &[u32], more: bool) -> usize {
    let list = handles.get(..handles.len().min(64)).unwrap_or(&[]);
    let Some(len) = list
        .len()
        .checked_mul(4)
        .and_then(|n| n.checked_add(LIST_OFF))
    else {
        return 0;
    };
    let (Some(r), Ok(size), Ok(count)) = (
        rsp.get_mut(..len),
        u32::try_from(len),
        u32::try_from(list.len()),
    ) else {
        return 0;
    };
    r.fill(0);
    if let Some(d) = r.get_mut(0..2) {
        d.copy_from_slice(&st::NO_SESSIONS.to_be_bytes());
    }
    put_u32_at(r, 2, size);
    if let Some(d) = r.get_mut(HEADER_LEN) {
        *d = u8::from(more || list.len() < handles.len());
    }
    put_u32_at(r, CAP_OFF, 1);
    put_u32_at(r, COUNT_OFF, count);
    let slots = r.get_mut(LIST_OFF..).unwrap_or_default();
    for (d, h) in slots.chunks_exact_mut(4).zip(list) {
        d.copy_from_slice(&h.to_be_bytes());
    }
    len
}

/// Offsets in a GetCapability(TPM_CAP_HANDLES) response: moreData (u8), capability (u32),
/// count (u32), then the handles.
const CAP_OFF: usize = HEADER_LEN + 1;
const COUNT_OFF: usize = CAP_OFF + 4;
const LIST_OFF: usize = COUNT_OFF + 4;

#[cfg(test)]
#[allow(clippy::cast_possible_truncation, clippy::arithmetic_side_effects)] // test fixtures
mod tests {
    use super::*;
    use std::vec::Vec;

    fn cmd(tag: u16, code: u32, body: &[u8]) -> Vec<u8> {
        let mut c = Vec::new();
        c.extend_from_slice(&tag.to_be_bytes());
        c.extend_from_slice(&((10 + body.len()) as u32).to_be_bytes());
        c.extend_from_slice(&code.to_be_bytes());
        c.extend_from_slice(body);
        c
    }

    fn auth(handle: u32, nonce: &[u8], attrs: u8, hmac: &[u8]) -> Vec<u8> {
        let mut a = handle.to_be_bytes().to_vec();
        a.extend_from_slice(&(nonce.len() as u16).to_be_bytes());
        a.extend_from_slice(nonce);
        a.push(attrs);
        a.extend_from_slice(&(hmac.len() as u16).to_be_bytes());
        a.extend_from_slice(hmac);
        a
    }

    #[test]
    fn allowlist_is_sorted_unique_and_consistent() {
        for w in ALLOWLIST.windows(2) {
            assert!(w[0].code < w[1].code, "{} / {}", w[0].name, w[1].name);
        }
        for i in &ALLOWLIST {
            assert_eq!(lookup(i.code), Some(i));
            assert!(i.auths <= i.handles && i.handles <= 3, "{}", i.name);
            let creates = matches!(i.effect, Effect::Creates(_) | Effect::ContextLoad);
            assert_eq!(creates, i.rsp_handles == 1, "{}", i.name);
            assert!(!i.why.is_empty());
        }
        for cc in [
            0x11E, 0x120, 0x121, 0x126, 0x129, 0x137, 0x139, 0x13D, 0x144, 0x145,
        ] {
            assert_eq!(lookup(cc), None, "{cc:#x}");
        }
    }

    #[test]
    fn parses_handle_and_authorization_areas() {
        // PolicySecret(OWNER, session) with a password session and an audit session.
        let mut body = 0x4000_0001u32.to_be_bytes().to_vec();
        body.extend_from_slice(&0x0300_0001u32.to_be_bytes());
        let a = [
            auth(0x4000_0009, &[], 1, &[]),
            auth(0x0200_0004, &[9; 16], 0, &[7; 32]),
        ]
        .concat();
        body.extend_from_slice(&(a.len() as u32).to_be_bytes());
        body.extend_from_slice(&a);
        body.extend_from_slice(&[0; 10]);
        let p = parse(&cmd(0x8002, 0x151, &body)).unwrap();
        assert_eq!(p.info.name, "PolicySecret");
        let named: Vec<u32> = p.named().collect();
        assert_eq!(named, [0x4000_0001, 0x0300_0001, 0x4000_0009, 0x0200_0004]);
        assert!(!p.sessions[1]
            .attrs
            .contains(SessionAttributes::CONTINUE_SESSION));
        assert_eq!(p.new_kind(), None);

        // FlushContext names its parameter; ContextLoad a session's savedHandle.
        let p = parse(&cmd(0x8001, 0x165, &0x8000_0002u32.to_be_bytes())).unwrap();
        assert_eq!(p.named().collect::<Vec<_>>(), [0x8000_0002]);
        let mut ctx = [0u8; 8].to_vec();
        ctx.extend_from_slice(&0x0200_0001u32.to_be_bytes());
        let p = parse(&cmd(0x8001, 0x161, &ctx)).unwrap();
        assert!(p.loads_session);
        assert_eq!(p.named().collect::<Vec<_>>(), [0x0200_0001]);
        assert_eq!(p.new_kind(), None);
        ctx[8..12].copy_from_slice(&0x8000_0000u32.to_be_bytes());
        let p = parse(&cmd(0x8001, 0x161, &ctx)).unwrap();
        assert_eq!(p.new_kind(), Some(Kind::Object));
        assert_eq!(p.named().count(), 0);

        // GetCapability(handles, transient) is filtered, and refused with sessions.
        let gc = [1u32, 0x8000_0000, 16].map(u32::to_be_bytes).concat();
        assert!(parse(&cmd(0x8001, 0x17A, &gc)).unwrap().filter_handles);
        let gc_pcr = [1u32, 0x8100_0000, 16].map(u32::to_be_bytes).concat();
        assert!(!parse(&cmd(0x8001, 0x17A, &gc_pcr)).unwrap().filter_handles);
        let mut with_session = (9u32).to_be_bytes().to_vec();
        with_session.extend_from_slice(&auth(0x0200_0000, &[], 1, &[]));
        with_session.extend_from_slice(&gc);
        assert_eq!(
            parse(&cmd(0x8002, 0x17A, &with_session)).err(),
            Some(Refusal::BadTag)
        );
    }

    #[test]
    fn refuses_unknown_codes_bad_tags_short_and_malformed_areas() {
        assert_eq!(
            parse(&cmd(0x8001, 0x145, &[0, 0])).err(),
            Some(Refusal::CommandCode)
        );
        assert_eq!(
            parse(&cmd(0x1234, 0x17B, &[0, 8])).err(),
            Some(Refusal::BadTag)
        );
        assert_eq!(
            parse(&cmd(0x8001, 0x173, &[0x80, 0])).err(),
            Some(Refusal::CommandSize)
        );
        assert_eq!(
            parse(&cmd(0x8001, 0x165, &[])).err(),
            Some(Refusal::CommandSize)
        );
        assert_eq!(
            parse(&cmd(0x8001, 0x161, &[0; 11])).err(),
            Some(Refusal::CommandSize)
        );
        let h = 0x8000_0000u32.to_be_bytes();
        let good = auth(0x4000_0009, &[], 0, &[]);
        for (size, area) in [
            (0u32, Vec::new()),                     // no entry
            (100, good.clone()),                    // size past the command
            (8, good.clone()),                      // entry cut short by the size
            (10, [good.clone(), vec![0]].concat()), // not exactly filled
            (
                36,
                [good.clone(), good.clone(), good.clone(), good.clone()].concat(),
            ), // 4 entries
            (9, auth(0x4000_0009, &[0; 3], 0, &[])[..9].to_vec()), // nonce past the end
        ] {
            let mut b = h.to_vec();
            b.extend_from_slice(&size.to_be_bytes());
            b.extend_from_slice(&area);
            assert_eq!(
                parse(&cmd(0x8002, 0x15E, &b)).err(),
                Some(Refusal::AuthSize),
                "size {size} area {area:02x?}"
            );
        }
        let mut b = h.to_vec();
        b.extend_from_slice(&9u32.to_be_bytes());
        b.extend_from_slice(&good);
        assert!(parse(&cmd(0x8002, 0x15E, &b)).is_ok());
    }

    #[test]
    fn parse_and_filter_never_panic_on_arbitrary_bytes() {
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let len = (next() % 64) as usize;
            let mut b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if len >= 10 {
                // Mostly real tags and listed codes, so the deeper paths run.
                let i = (next() as usize) % ALLOWLIST.len();
                b[0..2].copy_from_slice(&[0x80, 0x01 + (next() % 2) as u8]);
                b[6..10].copy_from_slice(&ALLOWLIST[i].code.to_be_bytes());
            }
            let _ = parse(&b);
        }
    }

    #[test]
    fn handle_lists_are_whole_responses_with_more_data() {
        let mut r = [0u8; 64];
        let n = handle_list_response(&mut r, &[0x8000_0001, 0x8000_0002], false);
        assert_eq!(n, 27);
        assert_eq!(u32_at(&r, 2), Some(27));
        assert_eq!(
            (u32_at(&r, 6), r[10], u32_at(&r, 11)),
            (Some(0), 0, Some(1))
        );
        assert_eq!(u32_at(&r, 15), Some(2));
        assert_eq!(u32_at(&r, 23), Some(0x8000_0002));
        assert_eq!(handle_list_response(&mut r, &[], true), 19);
        assert_eq!((r[10], u32_at(&r, 15)), (1, Some(0)));
        // Too small a buffer: nothing written.
        assert_eq!(handle_list_response(&mut r[..20], &[1, 2], false), 0);
        let e = refusal_response(RM_COMMAND_CODE);
        assert_eq!(e, [0x80, 0x01, 0, 0, 0, 10, 0x00, 0x0B, 0x01, 0x43]);
    }
}
