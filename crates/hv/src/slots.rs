//! Per-caller TPM sessions in static slots, and the transient handles each owns.
//!
//! A slot is what H_TPM_COMM calls a "TPM session": opened by the first EXECUTE
//! of a caller that has none, closed by CLOSE_SESSION once every handle it owns
//! has been flushed from the TPM (what a resource manager does when its client
//! goes away). No heap: [`SESSION_SLOTS`] slots, each holding its caller's [`Space`].
//!
//! Handle bookkeeping rules:
//! - A handle returned by a successful creating command is recorded in the
//!   caller's slot. The TPM only hands out a handle that is free, so any other
//!   record of the same value (in any slot) is stale (the TPM flushed it by itself,
//!   e.g. a session used with `continueSession` clear) and is dropped first; a
//!   slot never lists a handle twice, and no two slots list the same handle.
//! - A successful FlushContext forgets the handle wherever it is recorded.
#![forbid(unsafe_code)]

use super::space::Space;
use heapless::Vec;

/// Number of concurrent callers with an open session. While the reserved caller (the
/// ultravisor) has none, the others may open one fewer.
pub const SESSION_SLOTS: usize = 4;

/// Transient objects the TPM can hold loaded at once: TPM_PT_HR_TRANSIENT_MIN, the TPM 2.0
/// PC Client minimum, measured on swtpm 0.7.1 (`tpm_capacity_as_measured` in
/// tests-qemu/tests/hv_rm.rs). Sequences are transient objects.
pub const OBJECT_CAPACITY: usize = 3;
/// Sessions the TPM can hold loaded at once: TPM_PT_HR_LOADED_MIN, measured likewise.
pub const SESSION_CAPACITY: usize = 3;
/// Sessions the TPM can keep active (loaded or saved) at once: TPM_PT_ACTIVE_SESSIONS_MAX,
/// the PC Client minimum, measured likewise.
pub const ACTIVE_SESSION_CAPACITY: usize = 64;
/// Transient objects (and sequences) one caller may own: its [`Space`]. They are saved
/// contexts between hcalls, so this may exceed the TPM's [`OBJECT_CAPACITY`].
pub const OBJECTS_PER_CALLER: usize = super::space::OBJECTS_PER_SPACE;
/// Sessions one caller may own. They are saved contexts between hcalls (no session of any
/// caller is loaded then), so what bounds them is the TPM's [`ACTIVE_SESSION_CAPACITY`], and
/// every caller's full quota fits in it at once: no caller can take a session another one is
/// owed, and the ultravisor's boot session always has room.
pub const SESSIONS_PER_CALLER: usize = super::space::SESSIONS_PER_SPACE;

// Every caller at its session quota fits the TPM; a command's sessions (at most 3 in its
// authorization area) and objects (at most 2 named, 1 created) fit the TPM's loaded slots.
const _: () = assert!(SESSION_SLOTS * SESSIONS_PER_CALLER <= ACTIVE_SESSION_CAPACITY);
const _: () = assert!(super::rm::MAX_SESSIONS <= SESSION_CAPACITY);
const _: () = assert!(3 <= OBJECT_CAPACITY);

/// Which quota refused a creating command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaError {
    /// The caller's space holds [`OBJECTS_PER_CALLER`] objects.
    Objects,
    /// The caller owns [`SESSIONS_PER_CALLER`] sessions.
    Sessions,
}

/// Who is calling: a partition ([`CallerId::of`]). Callers are told apart by this value
/// only; one partition on many hardware threads is one caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallerId(pub u32);

impl CallerId {
    /// The caller issuing an hcall from hardware thread `pir` of partition `lpid`: the glue's
    /// one definition of who a caller is (`target.rs` passes LPIDR and PIR). It is the
    /// partition alone: a guest's threads share its slot, handles and quotas, so a guest on
    /// many threads cannot take many slots.
    pub const fn of(lpid: u32, _pir: u32) -> CallerId {
        CallerId(lpid)
    }
}

/// Index of an open slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotIndex(usize);

/// Every slot is taken by another caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotsExhausted;

#[derive(Debug)]
struct Slot {
    caller: CallerId,
    space: Space,
}

/// The session slots.
#[derive(Debug)]
pub struct SessionSlots {
    slots: [Option<Slot>; SESSION_SLOTS],
}

impl Default for SessionSlots {
    fn default() -> Self {
        Self::new()
    }
}

impl SessionSlots {
    /// All slots free.
    pub const fn new() -> Self {
        SessionSlots {
            slots: [const { None }; SESSION_SLOTS],
        }
    }

    /// The open slot of `caller`, if any.
    pub fn find(&self, caller: CallerId) -> Option<SlotIndex> {
        self.slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.caller == caller))
            .map(SlotIndex)
    }

    /// The slot of `caller`, opening a free one if it has none. The last free slot is kept
    /// for `reserved` while it has none.
    pub fn open(
        &mut self,
        caller: CallerId,
        reserved: Option<CallerId>,
    ) -> Result<SlotIndex, SlotsExhausted> {
        if let Some(i) = self.find(caller) {
            return Ok(i);
        }
        let free = self.slots.iter().filter(|s| s.is_none()).count();
        let held = reserved.is_some_and(|r| r != caller && self.find(r).is_none());
        if held && free <= 1 {
            return Err(SlotsExhausted);
        }
        let (i, free) = self
            .slots
            .iter_mut()
            .enumerate()
            .find(|(_, s)| s.is_none())
            .ok_or(SlotsExhausted)?;
        *free = Some(Slot {
            caller,
            space: Space::new(),
        });
        Ok(SlotIndex(i))
    }

    /// The caller of slot `i`.
    pub fn caller(&self, i: SlotIndex) -> Option<CallerId> {
        self.slot(i).map(|s| s.caller)
    }

    fn slot(&self, i: SlotIndex) -> Option<&Slot> {
        self.slots.get(i.0).and_then(Option::as_ref)
    }

    fn slot_mut(&mut self, i: SlotIndex) -> Option<&mut Slot> {
        self.slots.get_mut(i.0).and_then(Option::as_mut)
    }

    /// The saved objects of slot `i`.
    pub fn space(&self, i: SlotIndex) -> Option<&Space> {
        self.slot(i).map(|s| &s.space)
    }

    /// The saved objects of slot `i`, to change.
    pub fn space_mut(&mut self, i: SlotIndex) -> Option<&mut Space> {
        self.slot_mut(i).map(|s| &mut s.space)
    }

    /// The sessions slot `i` owns (empty for a free slot), in the order they were created.
    pub fn sessions(&self, i: SlotIndex) -> Vec<u32, SESSIONS_PER_CALLER> {
        self.space(i)
            .map(|sp| sp.sessions().collect())
            .unwrap_or_default()
    }

    /// Whether slot `i` can record one more session.
    pub fn has_room(&self, i: SlotIndex) -> bool {
        self.space(i)
            .is_some_and(|sp| sp.session_count() < SESSIONS_PER_CALLER)
    }

    /// Whether slot `i` owns session `handle` (either of its two forms: the TPM lists a
    /// loaded policy session 0x03… as 0x02… in GetCapability).
    pub fn owns(&self, i: SlotIndex, handle: u32) -> bool {
        self.space(i).is_some_and(|sp| sp.session(handle).is_some())
    }

    /// Records session `handle` as owned by slot `i`, dropping stale records of it first.
    /// Returns false only if the slot is full (and then records nothing).
    pub fn record(&mut self, i: SlotIndex, handle: u32) -> bool {
        if !self.has_room(i) && !self.owns(i, handle) {
            return false;
        }
        self.forget_everywhere(handle);
        self.space_mut(i).is_some_and(|sp| sp.add_session(handle))
    }

    /// Forgets session `handle` in every slot (it was flushed), whichever of its two handle
    /// forms (0x02…, 0x03…) was recorded.
    pub fn forget_everywhere(&mut self, handle: u32) {
        for s in self.slots.iter_mut().flatten() {
            s.space.remove_session(handle);
        }
    }

    /// The caller whose slot owns session `handle` in exactly this form: a policy session
    /// named as an HMAC session's handle (or the reverse) is no one's.
    pub fn owner_of(&self, handle: u32) -> Option<CallerId> {
        self.slots
            .iter()
            .flatten()
            .find(|s| s.space.session(handle) == Some(handle))
            .map(|s| s.caller)
    }

    /// The saved session with the oldest context of all callers: its slot, handle and
    /// context sequence.
    pub fn oldest_saved_session(&self) -> Option<(SlotIndex, u32, u64)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let (h, seq) = s.as_ref()?.space.oldest_saved_session()?;
                Some((SlotIndex(i), h, seq))
            })
            .min_by_key(|(_, _, seq)| *seq)
    }

    /// Frees slot `i` (the caller flushed what it owned first).
    pub fn free(&mut self, i: SlotIndex) {
        if let Some(s) = self.slots.get_mut(i.0) {
            *s = None;
        }
    }

    /// Objects (in its space) and sessions slot `i` owns.
    pub fn counts(&self, i: SlotIndex) -> (usize, usize) {
        self.slot(i)
            .map_or((0, 0), |s| (s.space.len(), s.space.session_count()))
    }

    /// Objects and sessions all slots own.
    pub fn total_counts(&self) -> (usize, usize) {
        self.slots.iter().flatten().fold((0, 0), |(o, s), slot| {
            (
                o.saturating_add(slot.space.len()),
                s.saturating_add(slot.space.session_count()),
            )
        })
    }

    /// Whether slot `i` may create one more handle of `kind`.
    pub fn admit(&self, i: SlotIndex, kind: super::rm::Kind) -> Result<(), QuotaError> {
        let (_, sessions) = self.counts(i);
        let (_, all_sessions) = self.total_counts();
        match kind {
            super::rm::Kind::Object | super::rm::Kind::Sequence => {
                if self.space(i).and_then(Space::free_handle).is_none() {
                    return Err(QuotaError::Objects);
                }
            }
            super::rm::Kind::Session => {
                if sessions >= SESSIONS_PER_CALLER || all_sessions >= ACTIVE_SESSION_CAPACITY {
                    return Err(QuotaError::Sessions);
                }
            }
        }
        Ok(())
    }

    /// Number of open slots.
    pub fn open_count(&self) -> usize {
        self.slots.iter().flatten().count()
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation, clippy::arithmetic_side_effects)] // test fixtures
mod tests {
    use super::*;
    use crate::rm::Kind;

    #[test]
    fn quotas_are_per_caller() {
        use crate::space::VIRTUAL_FIRST;
        let uv = CallerId(1);
        let mut s = SessionSlots::new();
        let g = s.open(CallerId(2), Some(uv)).unwrap();
        let h = s.open(CallerId(3), Some(uv)).unwrap();
        // Objects: each caller's own space, whatever the others hold.
        for k in 0..OBJECTS_PER_CALLER as u32 {
            assert_eq!(s.admit(g, Kind::Object), Ok(()));
            assert!(s.space_mut(g).unwrap().store(VIRTUAL_FIRST + k, &[1]));
        }
        assert_eq!(s.admit(g, Kind::Object), Err(QuotaError::Objects));
        assert_eq!(s.admit(g, Kind::Sequence), Err(QuotaError::Objects));
        assert_eq!(s.admit(h, Kind::Object), Ok(()));
        // Sessions: each caller's quota, whatever the others hold.
        for k in 0..SESSIONS_PER_CALLER as u32 {
            assert_eq!(s.admit(g, Kind::Session), Ok(()));
            assert!(s.record(g, 0x0200_0000 + k));
        }
        assert_eq!(s.admit(g, Kind::Session), Err(QuotaError::Sessions));
        assert!(!s.record(g, 0x0200_0010));
        let u = s.open(uv, Some(uv)).unwrap();
        for k in 0..SESSIONS_PER_CALLER as u32 {
            assert_eq!(s.admit(h, Kind::Session), Ok(()));
            assert!(s.record(h, 0x0300_0010 + k));
            assert_eq!(s.admit(u, Kind::Session), Ok(()));
            assert!(s.record(u, 0x0200_0020 + k));
        }
        assert_eq!(s.counts(g), (OBJECTS_PER_CALLER, SESSIONS_PER_CALLER));
        assert_eq!(
            s.total_counts(),
            (OBJECTS_PER_CALLER, 3 * SESSIONS_PER_CALLER)
        );
        // A flush makes room.
        s.forget_everywhere(0x0200_0001);
        assert_eq!(s.admit(g, Kind::Session), Ok(()));
    }

    #[test]
    fn the_oldest_saved_session_of_all_callers() {
        let mut s = SessionSlots::new();
        let a = s.open(CallerId(1), None).unwrap();
        let b = s.open(CallerId(2), None).unwrap();
        assert_eq!(s.oldest_saved_session(), None);
        assert!(s.record(a, 0x0200_0000) && s.record(b, 0x0200_0001));
        assert!(s.record(a, 0x0200_0002));
        let sp = s.space_mut(a).unwrap();
        assert!(sp.store_session_context(0x0200_0000, &9u64.to_be_bytes()));
        assert!(sp.store_session_context(0x0200_0002, &8u64.to_be_bytes()));
        let sp = s.space_mut(b).unwrap();
        assert!(sp.store_session_context(0x0200_0001, &5u64.to_be_bytes()));
        assert_eq!(s.oldest_saved_session(), Some((b, 0x0200_0001, 5)));
        s.forget_everywhere(0x0300_0001);
        assert_eq!(s.oldest_saved_session(), Some((a, 0x0200_0002, 8)));
    }

    #[test]
    fn the_last_slot_is_kept_for_the_reserved_caller() {
        let uv = CallerId(1);
        let mut s = SessionSlots::new();
        for c in 2..=SESSION_SLOTS as u32 {
            s.open(CallerId(c), Some(uv)).unwrap();
        }
        assert_eq!(s.open(CallerId(99), Some(uv)), Err(SlotsExhausted));
        assert!(s.open(uv, Some(uv)).is_ok());
        assert_eq!(s.open(CallerId(99), Some(uv)), Err(SlotsExhausted));
    }

    #[test]
    fn a_caller_is_its_partition() {
        assert_eq!(CallerId::of(2, 0), CallerId::of(2, 3));
        assert_ne!(CallerId::of(1, 0), CallerId::of(2, 0));
    }

    #[test]
    fn open_find_exhaust_free() {
        let mut s = SessionSlots::new();
        let a = s.open(CallerId(1), None).unwrap();
        assert_eq!(s.open(CallerId(1), None), Ok(a));
        for c in 2..=SESSION_SLOTS as u32 {
            s.open(CallerId(c), None).unwrap();
        }
        assert_eq!(s.open(CallerId(99), None), Err(SlotsExhausted));
        s.free(a);
        assert_eq!(s.find(CallerId(1)), None);
        assert!(s.open(CallerId(99), None).is_ok());
        assert_eq!(s.open_count(), SESSION_SLOTS);
    }

    #[test]
    fn record_dedups_across_slots_and_fills() {
        let mut s = SessionSlots::new();
        let a = s.open(CallerId(1), None).unwrap();
        let b = s.open(CallerId(2), None).unwrap();
        assert!(s.record(a, 0x0200_0000));
        assert!(s.record(a, 0x0200_0000));
        assert_eq!(s.sessions(a), [0x0200_0000]);
        // The TPM gave the same value to caller 2: caller 1's record was stale.
        assert!(s.record(b, 0x0200_0000));
        assert!(s.sessions(a).is_empty());
        assert_eq!(s.owner_of(0x0200_0000), Some(CallerId(2)));
        // The same session index in its other form is a stale record too.
        assert!(s.record(a, 0x0300_0000));
        assert!(s.sessions(b).is_empty());
        assert_eq!(s.owner_of(0x0200_0000), None);
        assert!(s.owns(a, 0x0200_0000));
        s.forget_everywhere(0x0200_0000);
        assert!(s.sessions(a).is_empty());
        for h in 0..SESSIONS_PER_CALLER as u32 {
            assert!(s.has_room(a));
            assert!(s.record(a, 0x0200_0010 + h));
        }
        assert!(!s.has_room(a));
        assert!(!s.record(a, 0x0200_1000));
        assert_eq!(s.sessions(a).len(), SESSIONS_PER_CALLER);
        s.forget_everywhere(0x0300_0011);
        assert!(s.has_room(a));
        assert!(!s.sessions(a).contains(&0x0200_0011));
    }
}
