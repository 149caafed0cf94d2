//! A caller's transient objects and sessions as the resource manager keeps them between
//! hcalls: saved contexts (TPMS_CONTEXT, from TPM2_ContextSave), the way the Linux kernel's
//! /dev/tpmrm0 keeps a "space".
//!
//! Between hcalls nothing of any caller is loaded in the TPM. For one command the
//! hypervisor ContextLoads the objects and sessions it names, rewrites the objects' virtual
//! handles in the handle area to the TPM's, relays, gives a newly created object a virtual
//! handle (rewriting the response), then ContextSaves every object (and flushes it) and every
//! session still alive. So each caller can own [`OBJECTS_PER_SPACE`] objects and
//! [`SESSIONS_PER_SPACE`] sessions whatever the others own, even though the TPM holds only 3
//! of each loaded (a command names at most 2 objects and creates at most 1, and uses at most
//! 3 sessions).
//!
//! Objects get virtual handles `0x80FFFF00 + index`: the same values in every space, so a
//! caller can neither see nor guess another caller's; the TPM's own object handles are never
//! shown to a caller and are refused when named. Sessions keep the TPM's handle, as in the
//! kernel's resource manager: a saved session keeps its handle across ContextSave and
//! ContextLoad, and the TPM never gives one session's handle to another while it is saved.
//!
//! A session has no context here while it is loaded for a command, and none while its caller
//! holds the context itself (the caller ran ContextSave on it): the caller's ContextLoad
//! brings it back, and the hypervisor saves it again after that command.
//!
//! Memory: per space [`OBJECTS_PER_SPACE`] contexts of at most [`CONTEXT_MAX`] bytes and
//! [`SESSIONS_PER_SPACE`] of at most [`SESSION_CONTEXT_MAX`], one space per session slot:
//! 4 x (4 x 2048 + 3 x 512) = 38 KiB of static state (plus a 4 KiB scratch buffer for the
//! ContextLoad command). Measured on swtpm 0.7.1 (`tpm_capacity_as_measured`): a saved
//! RSA-2048 primary is 1,258 bytes, an ECC P-256 primary 458, an HMAC key 416, a SHA-256
//! policy or HMAC session 270. A context larger than its slot is not kept: the object or
//! session is flushed and the hcall answers H_RESOURCE.
//!
//! Cost: a command naming k objects and s sessions adds k + s ContextLoads before it and, for
//! those and a new one, a ContextSave each after it (and a FlushContext per object).
#![forbid(unsafe_code)]

/// Transient objects (and sequences) one caller may own.
pub const OBJECTS_PER_SPACE: usize = 4;
/// Largest saved context kept (a TPMS_CONTEXT as ContextSave returns it).
pub const CONTEXT_MAX: usize = 2048;
/// The first virtual handle.
pub const VIRTUAL_FIRST: u32 = 0x80FF_FF00;
/// Sessions one caller may own (the Linux kernel's space holds 3 too: a command's
/// authorization area has at most 3).
pub const SESSIONS_PER_SPACE: usize = 3;
/// Largest saved session context kept.
pub const SESSION_CONTEXT_MAX: usize = 512;

/// An owned session: its TPM handle, and its saved context when the hypervisor holds it.
#[derive(Debug, Clone)]
struct SessionEntry {
    handle: u32,
    saved: Option<(usize, [u8; SESSION_CONTEXT_MAX])>,
}

/// Whether two handles name the same session: the TPM numbers HMAC (0x02…) and policy
/// (0x03…) sessions in one space, and lists a policy session under either form.
pub fn same_session(a: u32, b: u32) -> bool {
    let session = |h: u32| matches!(h >> 24, 0x02 | 0x03);
    session(a) && session(b) && a & 0x00FF_FFFF == b & 0x00FF_FFFF
}

/// A saved context's `sequence` (the first 8 bytes of TPMS_CONTEXT): the TPM's context
/// counter when it was saved.
pub fn sequence(ctx: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(ctx.get(..8)?.try_into().ok()?))
}

#[derive(Debug, Clone)]
struct Saved {
    len: usize,
    ctx: [u8; CONTEXT_MAX],
}

/// One caller's saved transient objects and its sessions.
#[derive(Debug, Clone)]
pub struct Space {
    objects: [Option<Saved>; OBJECTS_PER_SPACE],
    sessions: [Option<SessionEntry>; SESSIONS_PER_SPACE],
}

impl Default for Space {
    fn default() -> Self {
        Self::new()
    }
}

impl Space {
    /// No objects, no sessions.
    pub const fn new() -> Self {
        Space {
            objects: [const { None }; OBJECTS_PER_SPACE],
            sessions: [const { None }; SESSIONS_PER_SPACE],
        }
    }

    fn index(vh: u32) -> Option<usize> {
        let i = usize::try_from(vh.checked_sub(VIRTUAL_FIRST)?).ok()?;
        (i < OBJECTS_PER_SPACE).then_some(i)
    }

    /// Whether `vh` names an object of this space.
    pub fn contains(&self, vh: u32) -> bool {
        Self::index(vh)
            .and_then(|i| self.objects.get(i))
            .is_some_and(Option::is_some)
    }

    /// The saved context of `vh`.
    pub fn context(&self, vh: u32) -> Option<&[u8]> {
        let s = self.objects.get(Self::index(vh)?)?.as_ref()?;
        s.ctx.get(..s.len)
    }

    /// The virtual handle a new object would get, if the space has room.
    pub fn free_handle(&self) -> Option<u32> {
        let i = self.objects.iter().position(Option::is_none)?;
        VIRTUAL_FIRST.checked_add(u32::try_from(i).ok()?)
    }

    /// Stores `ctx` as the context of `vh` (new or replaced). False if `vh` is not a virtual
    /// handle of this space's range or `ctx` is longer than [`CONTEXT_MAX`].
    pub fn store(&mut self, vh: u32, ctx: &[u8]) -> bool {
        let (Some(i), true) = (Self::index(vh), ctx.len() <= CONTEXT_MAX) else {
            return false;
        };
        let Some(slot) = self.objects.get_mut(i) else {
            return false;
        };
        let mut s = Saved {
            len: ctx.len(),
            ctx: [0; CONTEXT_MAX],
        };
        if let Some(dst) = s.ctx.get_mut(..ctx.len()) {
            dst.copy_from_slice(ctx);
        }
        *slot = Some(s);
        true
    }

    /// Forgets `vh`.
    pub fn remove(&mut self, vh: u32) {
        if let Some(s) = Self::index(vh).and_then(|i| self.objects.get_mut(i)) {
            *s = None;
        }
    }

    /// Forgets every object and session.
    pub fn clear(&mut self) {
        self.objects = [const { None }; OBJECTS_PER_SPACE];
        self.sessions = [const { None }; SESSIONS_PER_SPACE];
    }

    /// The virtual handles in use, in increasing order.
    pub fn handles(&self) -> impl Iterator<Item = u32> + '_ {
        (VIRTUAL_FIRST..)
            .zip(self.objects.iter())
            .filter(|(_, s)| s.is_some())
            .map(|(h, _)| h)
    }

    /// Number of objects.
    pub fn len(&self) -> usize {
        self.objects.iter().flatten().count()
    }

    /// Whether the space holds no object.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn session_entry(&self, h: u32) -> Option<&SessionEntry> {
        self.sessions
            .iter()
            .flatten()
            .find(|e| same_session(e.handle, h))
    }

    fn session_entry_mut(&mut self, h: u32) -> Option<&mut SessionEntry> {
        self.sessions
            .iter_mut()
            .flatten()
            .find(|e| same_session(e.handle, h))
    }

    /// The owned session that `h` names, in the form it was recorded (either form matches).
    pub fn session(&self, h: u32) -> Option<u32> {
        self.session_entry(h).map(|e| e.handle)
    }

    /// The owned sessions' handles, in the order they were added.
    pub fn sessions(&self) -> impl Iterator<Item = u32> + '_ {
        self.sessions.iter().flatten().map(|e| e.handle)
    }

    /// Number of sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.iter().flatten().count()
    }

    /// Records a new session `h` (loaded: no context yet). False if the space holds
    /// [`SESSIONS_PER_SPACE`] already; a session it already records is replaced.
    pub fn add_session(&mut self, h: u32) -> bool {
        self.remove_session(h);
        match self.sessions.iter_mut().find(|e| e.is_none()) {
            Some(free) => {
                *free = Some(SessionEntry {
                    handle: h,
                    saved: None,
                });
                true
            }
            None => false,
        }
    }

    /// The saved context of session `h`, when the hypervisor holds it.
    pub fn session_context(&self, h: u32) -> Option<&[u8]> {
        let (len, ctx) = self.session_entry(h)?.saved.as_ref()?;
        ctx.get(..*len)
    }

    /// Drops the saved context of session `h` (it was loaded: a context loads once), keeping
    /// the session.
    pub fn drop_session_context(&mut self, h: u32) {
        if let Some(e) = self.session_entry_mut(h) {
            e.saved = None;
        }
    }

    /// Stores `ctx` as the saved context of session `h`. False if `h` is not owned here or
    /// `ctx` is longer than [`SESSION_CONTEXT_MAX`].
    pub fn store_session_context(&mut self, h: u32, ctx: &[u8]) -> bool {
        let Some(e) = self.session_entry_mut(h) else {
            return false;
        };
        let mut buf = [0; SESSION_CONTEXT_MAX];
        match buf.get_mut(..ctx.len()) {
            Some(dst) => dst.copy_from_slice(ctx),
            None => return false,
        }
        e.saved = Some((ctx.len(), buf));
        true
    }

    /// Forgets session `h` (either form).
    pub fn remove_session(&mut self, h: u32) {
        for e in &mut self.sessions {
            if e.as_ref().is_some_and(|e| same_session(e.handle, h)) {
                *e = None;
            }
        }
    }

    /// The saved session with the smallest context sequence, and that sequence.
    pub fn oldest_saved_session(&self) -> Option<(u32, u64)> {
        self.sessions
            .iter()
            .flatten()
            .filter_map(|e| {
                let (len, ctx) = e.saved.as_ref()?;
                Some((e.handle, sequence(ctx.get(..*len)?)?))
            })
            .min_by_key(|(_, seq)| *seq)
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation, clippy::arithmetic_side_effects)] // test fixtures
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn store_find_remove_and_bounds() {
        let mut s = Space::new();
        assert_eq!(s.free_handle(), Some(VIRTUAL_FIRST));
        assert!(s.store(VIRTUAL_FIRST, &[1, 2, 3]));
        assert!(s.contains(VIRTUAL_FIRST));
        assert_eq!(s.context(VIRTUAL_FIRST), Some(&[1u8, 2, 3][..]));
        assert_eq!(s.free_handle(), Some(VIRTUAL_FIRST + 1));
        assert!(!s.store(VIRTUAL_FIRST + OBJECTS_PER_SPACE as u32, &[1]));
        assert!(!s.store(0x8000_0000, &[1]));
        assert!(!s.store(VIRTUAL_FIRST + 1, &[0; CONTEXT_MAX + 1]));
        assert!(s.store(VIRTUAL_FIRST + 1, &[0; CONTEXT_MAX]));
        for k in 2..OBJECTS_PER_SPACE as u32 {
            assert!(s.store(VIRTUAL_FIRST + k, &[9]));
        }
        assert_eq!(s.free_handle(), None);
        assert_eq!(s.len(), OBJECTS_PER_SPACE);
        s.remove(VIRTUAL_FIRST);
        assert!(!s.contains(VIRTUAL_FIRST) && !s.contains(0) && !s.contains(u32::MAX));
        assert_eq!(s.handles().next(), Some(VIRTUAL_FIRST + 1));
        assert_eq!(s.handles().collect::<Vec<_>>().len(), OBJECTS_PER_SPACE - 1);
        s.clear();
        assert!(s.is_empty());
    }

    #[test]
    fn sessions_by_either_form_contexts_and_the_oldest() {
        let mut s = Space::new();
        assert!(s.add_session(0x0300_0001));
        assert_eq!(s.session(0x0200_0001), Some(0x0300_0001));
        assert_eq!(s.session(0x0300_0002), None);
        assert_eq!(s.session(0x8000_0001), None);
        assert_eq!(s.session_context(0x0300_0001), None);
        let mut ctx = 7u64.to_be_bytes().to_vec();
        ctx.extend_from_slice(&[1, 2, 3]);
        assert!(s.store_session_context(0x0200_0001, &ctx));
        assert_eq!(s.session_context(0x0300_0001), Some(&ctx[..]));
        assert!(!s.store_session_context(0x0200_0009, &ctx));
        assert!(!s.store_session_context(0x0300_0001, &[0; SESSION_CONTEXT_MAX + 1]));
        assert!(s.add_session(0x0200_0002));
        assert!(s.store_session_context(0x0200_0002, &3u64.to_be_bytes()));
        assert_eq!(s.oldest_saved_session(), Some((0x0200_0002, 3)));
        s.drop_session_context(0x0200_0002);
        assert_eq!(s.oldest_saved_session(), Some((0x0300_0001, 7)));
        assert!(s.add_session(0x0200_0003));
        assert!(!s.add_session(0x0200_0004));
        assert_eq!(s.session_count(), SESSIONS_PER_SPACE);
        // Re-adding a session it owns replaces it (a stale record), never duplicates.
        assert!(s.add_session(0x0200_0003));
        assert_eq!(s.session_count(), SESSIONS_PER_SPACE);
        s.remove_session(0x0300_0002);
        assert_eq!(s.sessions().collect::<Vec<_>>(), [0x0300_0001, 0x0200_0003]);
        assert_eq!(sequence(&[1, 2]), None);
        s.clear();
        assert_eq!(s.session_count(), 0);
    }
}
