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

use heapless::Vec;

/// Number of concurrent callers with an open session.
pub const SESSION_SLOTS: usize = 4;

/// Number of live transient objects and sessions one slot can track.
pub const HANDLES_PER_SLOT: usize = 16;

/// Who is calling, as the glue identifies it (for example the hardware thread id,
/// or a partition id). Callers are told apart by this value only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallerId(pub u32);

impl CallerId {
    /// The caller issuing an hcall from hardware thread `pir` of partition `lpid`: the glue's
    /// one definition of who a caller is (`target.rs` passes LPIDR and PIR).
    pub const fn of(lpid: u32, pir: u32) -> CallerId {
        CallerId((lpid << 16) | (pir & 0xffff))
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

    /// The slot of `caller`, opening a free one if it has none.
    pub fn open(&mut self, caller: CallerId) -> Result<SlotIndex, SlotsExhausted> {
        if let Some(i) = self.find(caller) {
            return Ok(i);
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
        });
        Ok(SlotIndex(i))
    }

    fn slot(&self, i: SlotIndex) -> Option<&Slot> {
        self.slots.get(i.0).and_then(Option::as_ref)
    }

    fn slot_mut(&mut self, i: SlotIndex) -> Option<&mut Slot> {
        self.slots.get_mut(i.0).and_then(Option::as_mut)
    }

    /// The handles slot `i` owns (empty for a free slot).
    pub fn handles(&self, i: SlotIndex) -> &[u32] {
        self.slot(i).map_or(&[], |s| s.handles.as_slice())
    }

    /// Whether slot `i` can record one more handle.
    pub fn has_room(&self, i: SlotIndex) -> bool {
        self.slot(i).is_some_and(|s| !s.handles.is_full())
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

    /// Forgets `handle` in every slot (it was flushed).
    pub fn forget_everywhere(&mut self, handle: u32) {
        for s in self.slots.iter_mut().flatten() {
            s.handles.retain(|h| *h != handle);
        }
    }

    /// The caller whose slot owns `handle`, if any.
    pub fn owner_of(&self, handle: u32) -> Option<CallerId> {
        self.slots
            .iter()
            .flatten()
            .find(|s| s.handles.contains(&handle))
            .map(|s| s.caller)
    }

    /// Frees slot `i` (the caller flushed what it owned first).
    pub fn free(&mut self, i: SlotIndex) {
        if let Some(s) = self.slots.get_mut(i.0) {
            *s = None;
        }
    }

    /// Number of open slots.
    pub fn open_count(&self) -> usize {
        self.slots.iter().flatten().count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_find_exhaust_free() {
        let mut s = SessionSlots::new();
        let a = s.open(CallerId(1)).unwrap();
        assert_eq!(s.open(CallerId(1)), Ok(a));
        for c in 2..=SESSION_SLOTS as u32 {
            s.open(CallerId(c)).unwrap();
        }
        assert_eq!(s.open(CallerId(99)), Err(SlotsExhausted));
        s.free(a);
        assert_eq!(s.find(CallerId(1)), None);
        assert!(s.open(CallerId(99)).is_ok());
        assert_eq!(s.open_count(), SESSION_SLOTS);
    }

    #[test]
    fn record_dedups_across_slots_and_fills() {
        let mut s = SessionSlots::new();
        let a = s.open(CallerId(1)).unwrap();
        let b = s.open(CallerId(2)).unwrap();
        assert!(s.record(a, 0x0200_0000));
        assert!(s.record(a, 0x0200_0000));
        assert_eq!(s.handles(a), &[0x0200_0000]);
        // The TPM gave the same value to caller 2: caller 1's record was stale.
        assert!(s.record(b, 0x0200_0000));
        assert_eq!(s.handles(a), &[] as &[u32]);
        assert_eq!(s.owner_of(0x0200_0000), Some(CallerId(2)));
        for h in 0..HANDLES_PER_SLOT as u32 {
            assert!(s.has_room(a));
            assert!(s.record(a, 0x8000_0000 + h));
        }
        assert!(!s.has_room(a));
        assert!(!s.record(a, 0x8000_1000));
        assert_eq!(s.handles(a).len(), HANDLES_PER_SLOT);
        s.forget_everywhere(0x8000_0003);
        assert!(s.has_room(a));
        assert!(!s.handles(a).contains(&0x8000_0003));
    }
}
