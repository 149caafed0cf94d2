//! Guest-physical addresses: an address a caller names is an allegation until
//! [`RegionTable::check`] turns it into a [`CheckedRange`], the only thing
//! [`GuestMemory`] accepts.
//!
//! Rules:
//! - A range is `[start, start + len)`. `start + len` must not overflow u64 (a
//!   range that wraps, or that would end past the last byte of the address space,
//!   is [`RangeError::Wraps`]); an empty range is [`RangeError::Empty`].
//! - A range is caller memory when it lies entirely inside ONE region of the table.
//!   Adjacent regions are not merged (the glue passes one window of RAM).
//! - The table is built once from the regions the caller may name and the regions
//!   it must never reach (the hypervisor image, skiboot/OPAL, MMIO): a caller
//!   region that overlaps a reserved one is refused at construction, so every
//!   checked range is outside reserved memory by construction.
#![forbid(unsafe_code)]

/// A guest-physical address as the caller alleged it (not yet checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GuestPhys(pub u64);

/// A guest-physical range `[start, start + len)` as alleged (not yet checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GuestRange {
    /// First byte.
    pub start: GuestPhys,
    /// Length in bytes.
    pub len: u64,
}

impl GuestRange {
    /// The range of `len` bytes starting at `start`.
    pub const fn new(start: u64, len: u64) -> Self {
        GuestRange {
            start: GuestPhys(start),
            len,
        }
    }

    /// One past the last byte, or `None` if that does not fit in u64 (the range wraps).
    pub const fn end(&self) -> Option<u64> {
        self.start.0.checked_add(self.len)
    }
}

/// Why an alleged range is not caller memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeError {
    /// Zero length.
    Empty,
    /// `start + len` overflows u64.
    Wraps,
    /// Not entirely inside one region the caller may name.
    NotCallerMemory,
}

/// Why a region table cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionError {
    /// More regions than [`MAX_REGIONS`] (caller or reserved).
    TooMany,
    /// A region has zero length.
    Empty,
    /// A region's end overflows u64.
    Wraps,
    /// Caller region `caller` overlaps reserved region `reserved` (indices into the
    /// slices given to [`RegionTable::new`]).
    OverlapsReserved {
        /// Index of the caller region.
        caller: usize,
        /// Index of the reserved region.
        reserved: usize,
    },
}

/// Most caller regions (and most reserved regions) a table holds.
pub const MAX_REGIONS: usize = 8;

/// A validated region: `start < end`, no wrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Region {
    start: u64,
    end: u64,
}

impl Region {
    fn from_range(r: &GuestRange) -> Result<Region, RegionError> {
        if r.len == 0 {
            return Err(RegionError::Empty);
        }
        let end = r.end().ok_or(RegionError::Wraps)?;
        Ok(Region {
            start: r.start.0,
            end,
        })
    }

    fn overlaps(&self, o: &Region) -> bool {
        self.start < o.end && o.start < self.end
    }
}

/// The guest-physical regions a caller may name. Built once (from the device
/// tree, by the glue); the empty table admits nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionTable {
    regions: [Option<Region>; MAX_REGIONS],
}

impl RegionTable {
    /// The table that admits no address at all.
    pub const fn empty() -> Self {
        RegionTable {
            regions: [None; MAX_REGIONS],
        }
    }

    /// A table admitting ranges inside any one of `caller`, after checking that
    /// none of them overlaps any of `reserved` (the hypervisor's own memory,
    /// skiboot's, MMIO windows).
    pub fn new(caller: &[GuestRange], reserved: &[GuestRange]) -> Result<Self, RegionError> {
        if caller.len() > MAX_REGIONS || reserved.len() > MAX_REGIONS {
            return Err(RegionError::TooMany);
        }
        let mut t = RegionTable::empty();
        for (ci, (slot, c)) in t.regions.iter_mut().zip(caller.iter()).enumerate() {
            let cr = Region::from_range(c)?;
            for (ri, r) in reserved.iter().enumerate() {
                let rr = Region::from_range(r)?;
                if cr.overlaps(&rr) {
                    return Err(RegionError::OverlapsReserved {
                        caller: ci,
                        reserved: ri,
                    });
                }
            }
            *slot = Some(cr);
        }
        Ok(t)
    }

    /// Checks an alleged range; on success the range may be read and written.
    pub fn check(&self, r: GuestRange) -> Result<CheckedRange, RangeError> {
        if r.len == 0 {
            return Err(RangeError::Empty);
        }
        let end = r.end().ok_or(RangeError::Wraps)?;
        let inside = self
            .regions
            .iter()
            .flatten()
            .any(|g| g.start <= r.start.0 && end <= g.end);
        if inside {
            Ok(CheckedRange {
                start: r.start.0,
                len: r.len,
            })
        } else {
            Err(RangeError::NotCallerMemory)
        }
    }
}

/// A guest-physical range that [`RegionTable::check`] found inside caller memory.
/// Only the check (and [`CheckedRange::prefix`], which shrinks one) can make one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedRange {
    start: u64,
    len: u64,
}

impl CheckedRange {
    /// First byte.
    pub const fn start(&self) -> GuestPhys {
        GuestPhys(self.start)
    }

    /// Length in bytes (never zero, and `start + len` does not overflow).
    pub const fn len(&self) -> u64 {
        self.len
    }

    /// Always false: a checked range is never empty. (For clippy's `len_without_is_empty`.)
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first `n` bytes of this range, if `1 <= n <= len`.
    pub const fn prefix(&self, n: u64) -> Option<CheckedRange> {
        if n == 0 || n > self.len {
            None
        } else {
            Some(CheckedRange {
                start: self.start,
                len: n,
            })
        }
    }
}

/// Access to the caller's memory, implemented by the glue (the one unsafe copy)
/// and by `FakeGuestMemory` in tests.
///
/// The hypervisor always passes a buffer whose length equals the range's length;
/// an implementation must copy at most `min(range.len(), buf.len())` bytes and
/// touch nothing outside the range.
pub trait GuestMemory {
    /// Copies the bytes of `src` into `dst`.
    fn copy_from_guest(&self, src: &CheckedRange, dst: &mut [u8]);
    /// Copies `src` into the guest bytes of `dst`.
    fn copy_to_guest(&self, dst: &CheckedRange, src: &[u8]);
}

/// FAKE guest memory for tests: `N` bytes at guest-physical `base`, with counters
/// of the copies made and of any access outside the backing store. Host tests only
/// (`cfg(test)` or feature `test-util`); never in an image.
#[cfg(any(test, feature = "test-util"))]
pub struct FakeGuestMemory<const N: usize> {
    base: u64,
    inner: spin::Mutex<FakeInner<N>>,
}

#[cfg(any(test, feature = "test-util"))]
struct FakeInner<const N: usize> {
    bytes: [u8; N],
    reads: usize,
    writes: usize,
    bytes_written: u64,
    out_of_bounds: usize,
}

#[cfg(any(test, feature = "test-util"))]
impl<const N: usize> FakeGuestMemory<N> {
    /// A zero-filled fake of `N` bytes at `base`.
    pub const fn new(base: u64) -> Self {
        FakeGuestMemory {
            base,
            inner: spin::Mutex::new(FakeInner {
                bytes: [0; N],
                reads: 0,
                writes: 0,
                bytes_written: 0,
                out_of_bounds: 0,
            }),
        }
    }

    /// Byte offset range in the backing store for `[addr, addr + len)`, if it fits.
    fn span(&self, addr: u64, len: usize) -> Option<core::ops::Range<usize>> {
        let off = usize::try_from(addr.checked_sub(self.base)?).ok()?;
        let end = off.checked_add(len)?;
        (end <= N).then_some(off..end)
    }

    /// Writes `data` at `addr` (test set-up; not counted). Returns false if out of the fake.
    pub fn poke(&self, addr: u64, data: &[u8]) -> bool {
        let mut g = self.inner.lock();
        match self.span(addr, data.len()).and_then(|s| g.bytes.get_mut(s)) {
            Some(d) => {
                d.copy_from_slice(data);
                true
            }
            None => false,
        }
    }

    /// Reads `out.len()` bytes at `addr` (test inspection; not counted).
    pub fn peek(&self, addr: u64, out: &mut [u8]) -> bool {
        let g = self.inner.lock();
        match self.span(addr, out.len()).and_then(|s| g.bytes.get(s)) {
            Some(d) => {
                out.copy_from_slice(d);
                true
            }
            None => false,
        }
    }

    /// Number of `copy_from_guest` calls so far.
    pub fn reads(&self) -> usize {
        self.inner.lock().reads
    }

    /// Number of `copy_to_guest` calls so far.
    pub fn writes(&self) -> usize {
        self.inner.lock().writes
    }

    /// Total bytes written by `copy_to_guest` so far.
    pub fn bytes_written(&self) -> u64 {
        self.inner.lock().bytes_written
    }

    /// Number of copies that reached outside the fake's backing store (must stay 0).
    pub fn out_of_bounds(&self) -> usize {
        self.inner.lock().out_of_bounds
    }
}

#[cfg(any(test, feature = "test-util"))]
impl<const N: usize> GuestMemory for FakeGuestMemory<N> {
    fn copy_from_guest(&self, src: &CheckedRange, dst: &mut [u8]) {
        let n = usize::try_from(src.len()).map_or(dst.len(), |l| l.min(dst.len()));
        let span = self.span(src.start().0, n);
        let mut g = self.inner.lock();
        g.reads = g.reads.saturating_add(1);
        match (span.and_then(|s| g.bytes.get(s)), dst.get_mut(..n)) {
            (Some(s), Some(d)) => d.copy_from_slice(s),
            _ => g.out_of_bounds = g.out_of_bounds.saturating_add(1),
        }
    }

    fn copy_to_guest(&self, dst: &CheckedRange, src: &[u8]) {
        let n = usize::try_from(dst.len()).map_or(src.len(), |l| l.min(src.len()));
        let span = self.span(dst.start().0, n);
        let mut g = self.inner.lock();
        g.writes = g.writes.saturating_add(1);
        g.bytes_written = g.bytes_written.saturating_add(n as u64);
        let copied = match (span, src.get(..n)) {
            (Some(sp), Some(s)) => match g.bytes.get_mut(sp) {
                Some(d) => {
                    d.copy_from_slice(s);
                    true
                }
                None => false,
            },
            _ => false,
        };
        if !copied {
            g.out_of_bounds = g.out_of_bounds.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAM: GuestRange = GuestRange::new(0x1000_0000, 0x10_0000);
    const HV: GuestRange = GuestRange::new(0x2000_0000, 0x100_0000);
    const OPAL: GuestRange = GuestRange::new(0x3000_0000, 0x100_0000);

    fn table() -> RegionTable {
        RegionTable::new(&[RAM], &[HV, OPAL]).unwrap()
    }

    #[test]
    fn edges_of_a_region() {
        let t = table();
        let end = 0x1000_0000 + 0x10_0000;
        assert!(t.check(GuestRange::new(0x1000_0000, 1)).is_ok());
        assert!(t.check(GuestRange::new(0x1000_0000, 0x10_0000)).is_ok());
        assert!(t.check(GuestRange::new(end - 1, 1)).is_ok());
        assert!(t.check(GuestRange::new(end - 4096, 4096)).is_ok());
        assert_eq!(
            t.check(GuestRange::new(end - 4095, 4096)),
            Err(RangeError::NotCallerMemory)
        );
        assert_eq!(
            t.check(GuestRange::new(end, 1)),
            Err(RangeError::NotCallerMemory)
        );
        assert_eq!(
            t.check(GuestRange::new(0x1000_0000 - 1, 2)),
            Err(RangeError::NotCallerMemory)
        );
        assert_eq!(
            t.check(GuestRange::new(0x1000_0000, 0)),
            Err(RangeError::Empty)
        );
    }

    #[test]
    fn wrapping_and_reserved_memory_are_refused() {
        let t = table();
        assert_eq!(
            t.check(GuestRange::new(u64::MAX, 1)),
            Err(RangeError::Wraps)
        );
        assert_eq!(
            t.check(GuestRange::new(0x1000_0000, u64::MAX)),
            Err(RangeError::Wraps)
        );
        // Ending exactly at 2^64 counts as wrapping; ending one byte earlier does not.
        assert_eq!(
            t.check(GuestRange::new(u64::MAX - 9, 10)),
            Err(RangeError::Wraps)
        );
        assert_eq!(
            t.check(GuestRange::new(u64::MAX - 10, 10)),
            Err(RangeError::NotCallerMemory)
        );
        assert_eq!(
            t.check(GuestRange::new(0x2000_0000, 16)),
            Err(RangeError::NotCallerMemory)
        );
        assert_eq!(
            t.check(GuestRange::new(0x3000_0100, 16)),
            Err(RangeError::NotCallerMemory)
        );
        assert_eq!(
            RegionTable::empty().check(GuestRange::new(0x1000_0000, 1)),
            Err(RangeError::NotCallerMemory)
        );
    }

    #[test]
    fn table_construction_refuses_overlap_wrap_and_excess() {
        let bad = GuestRange::new(0x1FFF_F000, 0x2000);
        assert_eq!(
            RegionTable::new(&[RAM, bad], &[HV, OPAL]),
            Err(RegionError::OverlapsReserved {
                caller: 1,
                reserved: 0
            })
        );
        assert_eq!(
            RegionTable::new(&[GuestRange::new(u64::MAX, 2)], &[]),
            Err(RegionError::Wraps)
        );
        assert_eq!(
            RegionTable::new(&[GuestRange::new(5, 0)], &[]),
            Err(RegionError::Empty)
        );
        assert_eq!(
            RegionTable::new(&[RAM; MAX_REGIONS + 1], &[]),
            Err(RegionError::TooMany)
        );
        // Touching (not overlapping) a reserved region is fine.
        assert!(RegionTable::new(&[GuestRange::new(0x1F00_0000, 0x100_0000)], &[HV]).is_ok());
    }

    #[test]
    fn prefix_stays_inside() {
        let r = table().check(GuestRange::new(0x1000_0000, 4096)).unwrap();
        assert_eq!(r.prefix(10).map(|p| p.len()), Some(10));
        assert_eq!(
            r.prefix(4096).map(|p| p.start()),
            Some(GuestPhys(0x1000_0000))
        );
        assert_eq!(r.prefix(0), None);
        assert_eq!(r.prefix(4097), None);
    }

    #[test]
    fn fake_counts_and_bounds() {
        let m: FakeGuestMemory<64> = FakeGuestMemory::new(0x1000);
        assert!(m.poke(0x1000, &[1, 2, 3]));
        assert!(!m.poke(0x103F, &[1, 2]));
        let t = RegionTable::new(&[GuestRange::new(0x1000, 0x1000)], &[]).unwrap();
        let mut b = [0u8; 3];
        m.copy_from_guest(&t.check(GuestRange::new(0x1000, 3)).unwrap(), &mut b);
        assert_eq!(b, [1, 2, 3]);
        assert_eq!((m.reads(), m.out_of_bounds()), (1, 0));
        m.copy_to_guest(&t.check(GuestRange::new(0x1100, 2)).unwrap(), &[9, 9]);
        assert_eq!((m.writes(), m.out_of_bounds()), (1, 1));
    }
}
