//! Per-caller TPM sessions in static slots, and the transient handles each owns.
//!
//! A slot is what H_TPM_COMM calls a "TPM session": opened by the first EXECUTE
//! of a caller that has none, closed by CLOSE_SESSION once every handle it owns
//! has been flushed from the TPM (what a resource manager does when its client
//! goes away). No heap: [`SESSION_SLOTS`] slots of [`HANDLES_PER_SLOT`] handles.
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
/// Transient objects (and sequences) one caller may own: its [`Space`]. They are saved
/// contexts between hcalls, so this may exceed the TPM's [`OBJECT_CAPACITY`].
pub const OBJECTS_PER_CALLER: usize = super::space::OBJECTS_PER_SPACE;
/// Sessions one caller may own (loaded or saved). With [`RESERVED_SESSIONS`] held for the
/// ultravisor, `SESSION_CAPACITY - RESERVED_SESSIONS - SESSIONS_PER_CALLER` = 1 is always
/// left for another guest: no one caller can starve another of sessions.
pub const SESSIONS_PER_CALLER: usize = 1;
/// Sessions the reserved caller (the ultravisor) may own: its boot session, and a new one
/// while it re-establishes after a failure. Even then one is left for a guest.
pub const RESERVED_CALLER_SESSIONS: usize = 2;
/// Sessions held back for the reserved caller (the ultravisor's boot session) while it owns
/// fewer: the other callers together may own at most `SESSION_CAPACITY - 1` then. Its keys
/// are persistent, so no transient object is held back for it.
pub const RESERVED_SESSIONS: usize = 1;

/// Number of sessions one slot's table can track: the session quota, so the table cannot
/// fill before the quota refuses. (Objects live in the slot's [`Space`].)
pub const HANDLES_PER_SLOT: usize = RESERVED_CALLER_SESSIONS;

// No one caller can own all the sessions; a command's objects (at most 2 named, 1 created)
// fit the TPM.
const _: () = assert!(SESSIONS_PER_CALLER + RESERVED_SESSIONS < SESSION_CAPACITY);
const _: () = assert!(RESERVED_CALLER_SESSIONS < SESSION_CAPACITY);
const _: () = assert!(SESSIONS_PER_CALLER <= RESERVED_CALLER_SESSIONS);
const _: () = assert!(3 <= OBJECT_CAPACITY);

/// Which quota refused a creating command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaError {
    /// The caller's space holds [`OBJECTS_PER_CALLER`] objects.
    Objects,
    /// The caller owns [`SESSIONS_PER_CALLER`], or the rest is the reserved caller's.
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
    handles: Vec<u32, HANDLES_PER_SLOT>,
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
            handles: Vec::new(),
            space: Space::new(),
        });
        Ok(SlotIndex(i))
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

    /// The sessions slot `i` owns (empty for a free slot).
    pub fn handles(&self, i: SlotIndex) -> &[u32] {
        self.slot(i).map_or(&[], |s| s.handles.as_slice())
    }

    /// Whether slot `i` can record one more handle.
    pub fn has_room(&self, i: SlotIndex) -> bool {
        self.slot(i).is_some_and(|s| !s.handles.is_full())
    }

    /// Whether slot `i` owns `handle` (for a session, any record of the same session index:
    /// the TPM lists a loaded policy session 0x03… as 0x02… in GetCapability).
    pub fn owns(&self, i: SlotIndex, handle: u32) -> bool {
        self.handles(i).iter().any(|h| same(*h, handle))
    }

    /// Records `handle` as owned by slot `i`, dropping stale records of it first.
    /// Returns false only if the slot is full (and then records nothing).
    pub fn record(&mut self, i: SlotIndex, handle: u32) -> bool {
        self.forget_everywhere(handle);
        match self.slot_mut(i) {
            Some(s) => s.handles.push(handle).is_ok(),
            None => false,
        }
    }

    /// Forgets `handle` in every slot (it was flushed). A session is forgotten by its index,
    /// whichever of its two handle forms (0x02…, 0x03…) was recorded.
    pub fn forget_everywhere(&mut self, handle: u32) {
        for s in self.slots.iter_mut().flatten() {
            s.handles.retain(|h| !same(*h, handle));
        }
    }

    /// The caller whose slot owns `handle`, if any. A record is the caller's only in the
    /// exact form it was created, except that a session listed in either form is its owner's.
    pub fn owner_of(&self, handle: u32) -> Option<CallerId> {
        self.slots
            .iter()
            .flatten()
            .find(|s| s.handles.contains(&handle))
            .map(|s| s.caller)
    }

    /// The caller whose slot owns the TPM object or session `handle` names, matching a
    /// session by index (for GetCapability lists).
    pub fn owner_of_listed(&self, handle: u32) -> Option<CallerId> {
        self.slots
            .iter()
            .flatten()
            .find(|s| s.handles.iter().any(|h| same(*h, handle)))
            .map(|s| s.caller)
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
            .map_or((0, 0), |s| (s.space.len(), count(&s.handles).1))
    }

    /// Objects and sessions all slots own.
    pub fn total_counts(&self) -> (usize, usize) {
        self.slots.iter().flatten().fold((0, 0), |(o, s), slot| {
            (o + slot.space.len(), s + count(&slot.handles).1)
        })
    }

    /// Whether slot `i` may create one more handle of `kind`, given the reserved caller.
    pub fn admit(
        &self,
        i: SlotIndex,
        kind: super::rm::Kind,
        reserved: Option<CallerId>,
    ) -> Result<(), QuotaError> {
        let (_, sessions) = self.counts(i);
        let (_, all_sessions) = self.total_counts();
        match kind {
            super::rm::Kind::Object | super::rm::Kind::Sequence => {
                if self.space(i).and_then(Space::free_handle).is_none() {
                    return Err(QuotaError::Objects);
                }
            }
            super::rm::Kind::Session => {
                let me = self.slot(i).map(|s| s.caller);
                let (held, quota) = match reserved {
                    Some(r) if Some(r) != me => {
                        let theirs = self.find(r).map_or(0, |j| self.counts(j).1);
                        (
                            RESERVED_SESSIONS.saturating_sub(theirs),
                            SESSIONS_PER_CALLER,
                        )
                    }
                    Some(_) => (0, RESERVED_CALLER_SESSIONS),
                    None => (0, SESSIONS_PER_CALLER),
                };
                if sessions >= quota
                    || all_sessions.saturating_add(1).saturating_add(held) > SESSION_CAPACITY
                {
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

/// Whether two handles name the same TPM object or session: equal, or both sessions with the
/// same index (the TPM numbers HMAC and policy sessions in one space).
fn same(a: u32, b: u32) -> bool {
    let session = |h: u32| matches!(h >> 24, 0x02 | 0x03);
    a == b || (session(a) && session(b) && a & 0x00FF_FFFF == b & 0x00FF_FFFF)
}

fn count(handles: &[u32]) -> (usize, usize) {
    handles.iter().fold((0, 0), |(o, s), h| match h >> 24 {
        0x80 => (o + 1, s),
        0x02 | 0x03 => (o, s + 1),
        _ => (o, s),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hv::rm::Kind;

    #[test]
    fn quotas_capacity_and_the_reserve() {
        use crate::hv::space::VIRTUAL_FIRST;
        let uv = CallerId(1);
        let mut s = SessionSlots::new();
        let g = s.open(CallerId(2), Some(uv)).unwrap();
        let h = s.open(CallerId(3), Some(uv)).unwrap();
        // Objects: each caller's own space, whatever the others hold.
        for k in 0..OBJECTS_PER_CALLER as u32 {
            assert_eq!(s.admit(g, Kind::Object, Some(uv)), Ok(()));
            assert!(s.space_mut(g).unwrap().store(VIRTUAL_FIRST + k, &[1]));
        }
        assert_eq!(s.admit(g, Kind::Object, Some(uv)), Err(QuotaError::Objects));
        assert_eq!(
            s.admit(g, Kind::Sequence, Some(uv)),
            Err(QuotaError::Objects)
        );
        assert_eq!(s.admit(h, Kind::Object, Some(uv)), Ok(()));
        // Sessions: one per guest, one of the three held for the ultravisor while it has none.
        assert_eq!(s.admit(g, Kind::Session, Some(uv)), Ok(()));
        assert!(s.record(g, 0x0200_0000));
        assert_eq!(
            s.admit(g, Kind::Session, Some(uv)),
            Err(QuotaError::Sessions)
        );
        assert_eq!(s.admit(h, Kind::Session, Some(uv)), Ok(()));
        assert!(s.record(h, 0x0300_0001));
        let k = s.open(CallerId(4), Some(uv)).unwrap();
        assert_eq!(
            s.admit(k, Kind::Session, Some(uv)),
            Err(QuotaError::Sessions)
        );
        let u = s.open(uv, Some(uv)).unwrap();
        assert_eq!(s.admit(u, Kind::Session, Some(uv)), Ok(()));
        // The ultravisor may hold two; then one guest's session still fits.
        s.forget_everywhere(0x0300_0001);
        assert!(s.record(u, 0x0200_0002));
        assert_eq!(s.admit(u, Kind::Session, Some(uv)), Ok(()));
        assert!(s.record(u, 0x0200_0003));
        assert_eq!(
            s.admit(u, Kind::Session, Some(uv)),
            Err(QuotaError::Sessions)
        );
        assert_eq!(
            s.admit(h, Kind::Session, Some(uv)),
            Err(QuotaError::Sessions)
        );
        assert_eq!(s.counts(g), (OBJECTS_PER_CALLER, 1));
        assert_eq!(s.total_counts(), (OBJECTS_PER_CALLER, 3));
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
        assert_eq!(s.handles(a), &[0x0200_0000]);
        // The TPM gave the same value to caller 2: caller 1's record was stale.
        assert!(s.record(b, 0x0200_0000));
        assert_eq!(s.handles(a), &[] as &[u32]);
        assert_eq!(s.owner_of(0x0200_0000), Some(CallerId(2)));
        // The same session index in its other form is a stale record too.
        assert!(s.record(a, 0x0300_0000));
        assert_eq!(s.handles(b), &[] as &[u32]);
        assert_eq!(s.owner_of_listed(0x0200_0000), Some(CallerId(1)));
        assert_eq!(s.owner_of(0x0200_0000), None);
        s.forget_everywhere(0x0200_0000);
        assert_eq!(s.handles(a), &[] as &[u32]);
        for h in 0..HANDLES_PER_SLOT as u32 {
            assert!(s.has_room(a));
            assert!(s.record(a, 0x8000_0000 + h));
        }
        assert!(!s.has_room(a));
        assert!(!s.record(a, 0x8000_1000));
        assert_eq!(s.handles(a).len(), HANDLES_PER_SLOT);
        s.forget_everywhere(0x8000_0001);
        assert!(s.has_room(a));
        assert!(!s.handles(a).contains(&0x8000_0001));
    }
}
