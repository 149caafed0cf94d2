//! A caller's transient objects as the resource manager keeps them between hcalls: saved
//! contexts (TPMS_CONTEXT, from TPM2_ContextSave) under virtual handles of the caller's own,
//! the way the Linux kernel's /dev/tpmrm0 keeps a "space".
//!
//! Between hcalls no caller's transient object is loaded in the TPM. For one command the
//! hypervisor ContextLoads the objects it names, rewrites their virtual handles in the handle
//! area to the TPM's, relays, gives a newly created object a virtual handle (rewriting the
//! response), then ContextSaves and flushes every object it loaded. So each caller can own
//! [`OBJECTS_PER_SPACE`] objects whatever the others own, even though the TPM holds only 3
//! (a command names at most 2 objects and creates at most 1).
//!
//! Virtual handles are `0x80FFFF00 + index`: the same values in every space, so a caller can
//! neither see nor guess another caller's; the TPM's own handles are never shown to a caller
//! and are refused when named.
//!
//! Memory: [`OBJECTS_PER_SPACE`] contexts of at most [`CONTEXT_MAX`] bytes per space, one
//! space per session slot: 4 x 4 x 2048 = 32 KiB of static state (plus a 4 KiB scratch buffer
//! for the ContextLoad command). Measured on swtpm 0.7.1 (`tpm_capacity_as_measured`): a
//! saved RSA-2048 primary is 1,258 bytes, an ECC P-256 primary 458, an HMAC key 416. A
//! context larger than [`CONTEXT_MAX`] is not kept: the object is flushed and the hcall
//! answers H_RESOURCE.
//!
//! Cost: a command naming k objects adds k ContextLoads before it and, for those k and a new
//! one, a ContextSave and a FlushContext each after it. Sessions are not swapped: they stay
//! loaded under the session quotas (see `slots`).
#![forbid(unsafe_code)]

/// Transient objects (and sequences) one caller may own.
pub const OBJECTS_PER_SPACE: usize = 4;
/// Largest saved context kept (a TPMS_CONTEXT as ContextSave returns it).
pub const CONTEXT_MAX: usize = 2048;
/// The first virtual handle.
pub const VIRTUAL_FIRST: u32 = 0x80FF_FF00;

#[derive(Debug, Clone)]
struct Saved {
    len: usize,
    ctx: [u8; CONTEXT_MAX],
}

/// One caller's saved transient objects.
#[derive(Debug, Clone)]
pub struct Space {
    objects: [Option<Saved>; OBJECTS_PER_SPACE],
}

impl Default for Space {
    fn default() -> Self {
        Self::new()
    }
}

impl Space {
    /// No objects.
    pub const fn new() -> Self {
        Space {
            objects: [const { None }; OBJECTS_PER_SPACE],
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

    /// Forgets every object.
    pub fn clear(&mut self) {
        self.objects = [const { None }; OBJECTS_PER_SPACE];
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
}

#[cfg(test)]
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
}
