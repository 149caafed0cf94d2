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
//! - Where the hypervisor reaches a region's bytes: at the caller's own address in a
//!   table from [`RegionTable::new`] (identity), or at the address given for it in a
//!   table from [`RegionTable::mapped`] (a secure VM's shared pages, named by the VM's
//!   guest-physical addresses and reached by the hypervisor elsewhere). A
//!   [`CheckedRange`] carries both: [`CheckedRange::start`] is what the caller named,
//!   [`CheckedRange::at`] is where [`GuestMemory`] copies.
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
    /// [`RegionTable::mapped`]: entry `index`'s range, moved to where the hypervisor
    /// reaches it, ends past u64::MAX (reach + len overflows u64).
    ReachWraps {
        /// Index of the entry.
        index: usize,
    },
    /// [`RegionTable::mapped`]: the caller ranges of entries `first` and `second`
    /// (`first < second`) overlap, so an address would have two places to be reached at.
    CallerOverlap {
        /// Index of the earlier entry.
        first: usize,
        /// Index of the later entry.
        second: usize,
    },
}

/// Most caller regions (and most reserved regions) a table holds.
pub const MAX_REGIONS: usize = 8;

/// A validated region: `start < end`, no wrap; its first byte is reached at `reach`,
/// and `reach + (end - start)` does not overflow either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Region {
    start: u64,
    end: u64,
    reach: u64,
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
            reach: r.start.0,
        })
    }

    fn overlaps(&self, o: &Region) -> bool {
        self.start < o.end && o.start < self.end
    }
}

/// The guest-physical regions a caller may name, and where the hypervisor reaches
/// each. Built once (from the device tree, by the glue, or from the mapping given
/// for a secure VM); the empty table admits nothing.
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
    /// skiboot's, MMIO windows). The hypervisor reaches each at the caller's own
    /// address ([`CheckedRange::at`] == [`CheckedRange::start`]).
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

    /// A table of mapped regions: each entry is (a range as the caller names it, in
    /// its own guest-physical addresses; the address at which the hypervisor reaches
    /// the range's first byte). A range the table admits is copied at the same offset
    /// from that address ([`CheckedRange::at`]).
    ///
    /// Refused: more than [`MAX_REGIONS`] entries ([`RegionError::TooMany`]), an
    /// empty range ([`RegionError::Empty`]), a caller range ending past u64::MAX
    /// ([`RegionError::Wraps`]) or one that would end past u64::MAX where the
    /// hypervisor reaches it ([`RegionError::ReachWraps`]), and two caller ranges that
    /// overlap ([`RegionError::CallerOverlap`]). The reach addresses are the glue's
    /// (its mapping of the caller's shared pages); nothing else is checked of them.
    pub fn mapped(regions: &[(GuestRange, u64)]) -> Result<RegionTable, RegionError> {
        if regions.len() > MAX_REGIONS {
            return Err(RegionError::TooMany);
        }
        let mut t = RegionTable::empty();
        for (i, (r, reach)) in regions.iter().enumerate() {
            let mut g = Region::from_range(r)?;
            if reach.checked_add(r.len).is_none() {
                return Err(RegionError::ReachWraps { index: i });
            }
            g.reach = *reach;
            for (j, (o, _)) in regions.iter().enumerate().take(i) {
                if Region::from_range(o)?.overlaps(&g) {
                    return Err(RegionError::CallerOverlap {
                        first: j,
                        second: i,
                    });
                }
            }
            if let Some(slot) = t.regions.get_mut(i) {
                *slot = Some(g);
            }
        }
        Ok(t)
    }

    /// Checks an alleged range; on success the range may be read and written (at
    /// [`CheckedRange::at`]).
    pub fn check(&self, r: GuestRange) -> Result<CheckedRange, RangeError> {
        if r.len == 0 {
            return Err(RangeError::Empty);
        }
        let end = r.end().ok_or(RangeError::Wraps)?;
        // The region's reach + its length does not overflow (checked when it was made),
        // and start - g.start < that length, so the sum cannot fail.
        let at = self
            .regions
            .iter()
            .flatten()
            .find(|g| g.start <= r.start.0 && end <= g.end)
            .and_then(|g| g.reach.checked_add(r.start.0.checked_sub(g.start)?));
        match at {
            Some(at) => Ok(CheckedRange {
                start: r.start.0,
                len: r.len,
                at,
            }),
            None => Err(RangeError::NotCallerMemory),
        }
    }
}

/// A guest-physical range that [`RegionTable::check`] found inside caller memory,
/// with where the hypervisor reaches it. Only the check (and
/// [`CheckedRange::prefix`], which shrinks one) can make one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedRange {
    start: u64,
    len: u64,
    at: u64,
}

impl CheckedRange {
    /// First byte, as the caller named it (its guest-physical address).
    pub const fn start(&self) -> GuestPhys {
        GuestPhys(self.start)
    }

    /// Where the hypervisor reaches the first byte: `start()` plus its region's offset
    /// (equal to `start()` in a table from [`RegionTable::new`]). `at() + len()` does
    /// not overflow. This is the address [`GuestMemory`] copies at.
    pub const fn at(&self) -> u64 {
        self.at
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
                at: self.at,
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
///
/// An implementation copies at [`CheckedRange::at`], where the hypervisor reaches the
/// bytes, never at [`CheckedRange::start`] (the caller's own name for them, which for a
/// caller with a mapped table is an address in another address space).
pub trait GuestMemory {
    /// Copies the bytes of `src` into `dst`.
    fn copy_from_guest(&self, src: &CheckedRange, dst: &mut [u8]);
    /// Copies `src` into the guest bytes of `dst`.
    fn copy_to_guest(&self, dst: &CheckedRange, src: &[u8]);
}

/// FAKE guest memory for tests: `N` bytes at `base` as the hypervisor reaches them
/// (it copies at [`CheckedRange::at`]), with counters of the copies made and of any
/// access outside the backing store. Host tests only
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
        let span = self.span(src.at(), n);
        let mut g = self.inner.lock();
        g.reads = g.reads.saturating_add(1);
        match (span.and_then(|s| g.bytes.get(s)), dst.get_mut(..n)) {
            (Some(s), Some(d)) => d.copy_from_slice(s),
            _ => g.out_of_bounds = g.out_of_bounds.saturating_add(1),
        }
    }

    fn copy_to_guest(&self, dst: &CheckedRange, src: &[u8]) {
        let n = usize::try_from(dst.len()).map_or(src.len(), |l| l.min(src.len()));
        let span = self.span(dst.at(), n);
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

    /// An SVM's two shared pages: gpa 0x4000_0000 reached at 0x1000_8000, gpa
    /// 0x4000_1000 (adjacent as the SVM sees it) reached at 0x1000_3000.
    const P0: (GuestRange, u64) = (GuestRange::new(0x4000_0000, 0x1000), 0x1000_8000);
    const P1: (GuestRange, u64) = (GuestRange::new(0x4000_1000, 0x1000), 0x1000_3000);

    #[test]
    fn mapped_table_admits_inside_and_reaches_at_the_offset() {
        let t = RegionTable::mapped(&[P0, P1]).unwrap();
        let r = t.check(GuestRange::new(0x4000_0000, 0x1000)).unwrap();
        assert_eq!(
            (r.start(), r.len(), r.at()),
            (GuestPhys(0x4000_0000), 0x1000, 0x1000_8000)
        );
        let r = t.check(GuestRange::new(0x4000_0010, 12)).unwrap();
        assert_eq!((r.start(), r.at()), (GuestPhys(0x4000_0010), 0x1000_8010));
        let r = t.check(GuestRange::new(0x4000_1FFF, 1)).unwrap();
        assert_eq!(r.at(), 0x1000_3FFF);
        let r = t.check(GuestRange::new(0x4000_1800, 0x800)).unwrap();
        assert_eq!(r.at(), 0x1000_3800);
    }

    #[test]
    fn mapped_table_refuses_straddling_outside_and_wrapping_ranges() {
        let t = RegionTable::mapped(&[P0, P1]).unwrap();
        for (bad, why) in [
            // Straddles the end of the second page.
            (GuestRange::new(0x4000_1FFF, 2), RangeError::NotCallerMemory),
            (
                GuestRange::new(0x4000_1001, 0x1000),
                RangeError::NotCallerMemory,
            ),
            // Straddles the two pages: adjacent as the SVM names them, 0x5000 apart as the
            // hypervisor reaches them; never merged.
            (GuestRange::new(0x4000_0FFF, 2), RangeError::NotCallerMemory),
            (
                GuestRange::new(0x4000_0000, 0x2000),
                RangeError::NotCallerMemory,
            ),
            // Just before, just after.
            (GuestRange::new(0x3FFF_FFFF, 1), RangeError::NotCallerMemory),
            (GuestRange::new(0x4000_2000, 1), RangeError::NotCallerMemory),
            // The reach addresses are not the caller's to name.
            (
                GuestRange::new(0x1000_8000, 16),
                RangeError::NotCallerMemory,
            ),
            (
                GuestRange::new(0x1000_3000, 16),
                RangeError::NotCallerMemory,
            ),
            (GuestRange::new(0x4000_0000, 0), RangeError::Empty),
            (GuestRange::new(0x4000_0000, u64::MAX), RangeError::Wraps),
            (GuestRange::new(u64::MAX, 1), RangeError::Wraps),
        ] {
            assert_eq!(t.check(bad), Err(why), "{bad:?}");
        }
    }

    #[test]
    fn mapped_table_construction_refusals() {
        assert_eq!(
            RegionTable::mapped(&[P0; MAX_REGIONS + 1]),
            Err(RegionError::TooMany)
        );
        assert_eq!(
            RegionTable::mapped(&[P0, (GuestRange::new(0x5000_0000, 0), 0x1000)]),
            Err(RegionError::Empty)
        );
        // The caller's range wraps (ending exactly at 2^64 counts).
        assert_eq!(
            RegionTable::mapped(&[(GuestRange::new(u64::MAX - 0xFFF, 0x1000), 0x1000)]),
            Err(RegionError::Wraps)
        );
        // Where the hypervisor reaches it wraps (ending exactly at 2^64 counts); one byte
        // lower is fine.
        assert_eq!(
            RegionTable::mapped(&[P0, (GuestRange::new(0x5000_0000, 0x1000), u64::MAX - 0xFFF)]),
            Err(RegionError::ReachWraps { index: 1 })
        );
        assert!(
            RegionTable::mapped(&[(GuestRange::new(0x5000_0000, 0x1000), u64::MAX - 0x1000)])
                .is_ok()
        );
        // Caller ranges overlapping each other: same page twice, one byte shared, one
        // inside another.
        assert_eq!(
            RegionTable::mapped(&[P0, P1, (P0.0, 0x2000_0000)]),
            Err(RegionError::CallerOverlap {
                first: 0,
                second: 2
            })
        );
        assert_eq!(
            RegionTable::mapped(&[P1, (GuestRange::new(0x4000_0001, 0x1000), 0x1000_0000)]),
            Err(RegionError::CallerOverlap {
                first: 0,
                second: 1
            })
        );
        assert_eq!(
            RegionTable::mapped(&[(GuestRange::new(0x4000_1100, 16), 0x0), P1]),
            Err(RegionError::CallerOverlap {
                first: 0,
                second: 1
            })
        );
        // Touching is not overlapping; the empty list is the empty table.
        assert!(RegionTable::mapped(&[P0, P1]).is_ok());
        assert_eq!(RegionTable::mapped(&[]), Ok(RegionTable::empty()));
    }

    #[test]
    fn prefix_keeps_the_mapping_and_identity_tables_reach_at_start() {
        let t = RegionTable::mapped(&[P0, P1]).unwrap();
        let r = t.check(GuestRange::new(0x4000_1100, 0x100)).unwrap();
        let p = r.prefix(10).unwrap();
        assert_eq!(
            (p.start(), p.len(), p.at()),
            (GuestPhys(0x4000_1100), 10, 0x1000_3100)
        );
        assert_eq!(r.prefix(0x100), Some(r));
        assert_eq!(r.prefix(0x101), None);
        let r = table().check(GuestRange::new(0x1000_0123, 4096)).unwrap();
        assert_eq!(r.at(), 0x1000_0123);
        assert_eq!(r.prefix(1).map(|p| p.at()), Some(0x1000_0123));
    }

    #[test]
    fn fake_copies_at_the_reach_address() {
        let m: FakeGuestMemory<0x1_0000> = FakeGuestMemory::new(0x1000_0000);
        // The gpa's identity address (0x1000_1000) holds a decoy; the reach holds the bytes.
        let t =
            RegionTable::mapped(&[(GuestRange::new(0x1000_1000, 0x1000), 0x1000_8000)]).unwrap();
        assert!(m.poke(0x1000_1000, &[0xDD; 4]));
        assert!(m.poke(0x1000_8000, &[1, 2, 3, 4]));
        let r = t.check(GuestRange::new(0x1000_1000, 4)).unwrap();
        let mut b = [0u8; 4];
        m.copy_from_guest(&r, &mut b);
        assert_eq!(b, [1, 2, 3, 4]);
        m.copy_to_guest(&r.prefix(2).unwrap(), &[7, 7]);
        let mut reach = [0u8; 4];
        let mut decoy = [0u8; 4];
        assert!(m.peek(0x1000_8000, &mut reach) && m.peek(0x1000_1000, &mut decoy));
        assert_eq!((reach, decoy), ([7, 7, 3, 4], [0xDD; 4]));
        assert_eq!(m.out_of_bounds(), 0);
    }
}
