//! Partition-scoped radix translation for POWER9 (Power ISA 3.0B), built without allocation.
//!
//! The ultravisor (hypervisor state, real mode) gives each guest partition (MSR\[HV\]=0,
//! LPIDR = n, n != 0) a partition-scoped radix tree: every guest real address goes through
//! the tree of the partition's LPID, found through the partition table that PTCR (SPR 464)
//! points at. A guest reaches only what its tree maps.
//!
//! The formats are the ones of Power ISA 3.0B Book III, radix tree translation and the
//! partition table, with the field masks QEMU uses (`target/ppc/mmu-book3s-v3.h`,
//! `target/ppc/mmu-radix64.h`) and its walk (`target/ppc/mmu-radix64.c`). Every table entry
//! is a big-endian doubleword in memory.
//!
//! - [`Arena`] is the memory every table comes from: a caller-given byte slice and the real
//!   address of its first byte. It hands out zeroed, size-aligned directories.
//! - [`Tree`] is one partition's tree ("52-bit" tree: levels of 13, 9, 9 and 9 bits), filled by
//!   [`Arena::map`] with 1 GiB, 2 MiB and 4 KiB leaves, read back by [`Arena::translate`] (the
//!   hardware walk, from the bytes) and [`Arena::mappings`] (every mapped range).
//! - [`PartitionTable`] is a 4 KiB partition table (PATS = 0, LPIDs 1..=255); [`pate`] is the
//!   entry of a tree and [`PartitionTable::ptcr`] the value for PTCR.
//!
//! Nothing here panics on any input (the module takes the hostile-bytes deny list): every
//! refusal is a variant of [`ArenaError`], [`MapError`] or [`TableError`].
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
#![deny(clippy::panic, clippy::arithmetic_side_effects)]
#![deny(clippy::cast_possible_truncation)]

use core::fmt;

#[cfg(test)]
mod tests;

// ---------------------------------------------------------------------------------------------
// Format constants.
// ---------------------------------------------------------------------------------------------

/// PTCR (SPR 464) PATB: real address of the partition table, bits 4..51 (Power ISA 3.0B Book III,
/// partition table; QEMU `PTCR_PATB`). The table is aligned to its size.
pub const PTCR_PATB: u64 = 0x0FFF_FFFF_FFFF_F000;
/// PTCR PATS: the partition table is 2^(12+PATS) bytes (Power ISA 3.0B Book III, partition
/// table; QEMU `PTCR_PATS`).
pub const PTCR_PATS: u64 = 0x1F;
/// Bytes of one partition-table entry (two doublewords, dw0 and dw1), indexed by LPID (QEMU
/// `ppc64_v3_get_pate`: `patb + 16 * lpid`).
pub const PATE_BYTES: u64 = 16;

/// PATE dw0 HR: the partition uses radix translation (Power ISA 3.0B Book III, partition
/// table; QEMU `PATE0_HR`, which its walk requires).
pub const PATE0_HR: u64 = 0x8000_0000_0000_0000;
/// PATE dw0 RTS1: the top two bits of the 5-bit radix tree size (QEMU `PRTBE_R_GET_RTS`:
/// `(dw0 >> 58) & 0x18`).
pub const PATE0_RTS1: u64 = 0x6000_0000_0000_0000;
/// Shift of [`PATE0_RTS1`]: RTS1 = RTS >> 3 sits at bit value 2^61.
pub const PATE0_RTS1_SHIFT: u32 = 61;
/// PATE dw0 RTS2: the low three bits of the radix tree size (QEMU `PRTBE_R_GET_RTS`:
/// `(dw0 >> 5) & 0x7`).
pub const PATE0_RTS2: u64 = 0xE0;
/// Shift of [`PATE0_RTS2`].
pub const PATE0_RTS2_SHIFT: u32 = 5;
/// PATE dw0 RPDB: real address of the root directory (QEMU `PRTBE_R_RPDB`).
pub const PATE0_RPDB: u64 = 0x0FFF_FFFF_FFFF_FF00;
/// PATE dw0 RPDS: log2 of the number of root directory entries (QEMU `PRTBE_R_RPDS`).
pub const PATE0_RPDS: u64 = 0x1F;
/// The radix tree size is RTS + 31 address bits (QEMU `PRTBE_R_GET_RTS`: `... + 31`).
pub const RTS_BIAS: u64 = 31;

/// Address bits a tree translates: the "52-bit" tree of POWER9 (QEMU only accepts a root level
/// with 52 bits and 13 bits of index).
pub const TREE_BITS: u64 = 52;
/// RTS of a 52-bit tree: 52 - 31 = 21 = 0b10101.
pub const RTS_52: u64 = 21;
/// Index bits of the root directory (RPDS) of a 52-bit tree: address bits 51..39.
pub const ROOT_NLS: u64 = 13;
/// Index bits of every lower directory (NLS): bits 38..30, 29..21 and 20..12.
pub const LOWER_NLS: u64 = 9;
/// Bytes of the root directory (2^13 entries of 8 bytes); it is aligned to its size.
pub const ROOT_BYTES: u64 = 0x1_0000;
/// Bytes of a lower directory (2^9 entries of 8 bytes); it is aligned to its size.
pub const DIR_BYTES: u64 = 0x1000;

/// PDE/PTE V: the entry is valid (Power ISA 3.0B Book III, radix tree translation; QEMU
/// `R_PTE_VALID`).
pub const PTE_V: u64 = 0x8000_0000_0000_0000;
/// PTE L: the entry is a leaf (QEMU `R_PTE_LEAF`); clear in a directory entry.
pub const PTE_L: u64 = 0x4000_0000_0000_0000;
/// PTE RPN: the page-size-aligned real address (QEMU `R_PTE_RPN`).
pub const PTE_RPN: u64 = 0x01FF_FFFF_FFFF_F000;
/// PTE R: reference. QEMU faults a partition-scoped access whose PTE lacks it, so every leaf
/// has it (QEMU `R_PTE_R`).
pub const PTE_R: u64 = 0x100;
/// PTE C: change. QEMU faults a partition-scoped store whose PTE lacks it, so every leaf has it
/// (QEMU `R_PTE_C`).
pub const PTE_C: u64 = 0x80;
/// PTE ATT: storage attributes (QEMU `R_PTE_ATT`).
pub const PTE_ATT: u64 = 0x30;
/// ATT 0b00: normal memory (QEMU `R_PTE_ATT_NORMAL`).
pub const PTE_ATT_NORMAL: u64 = 0x00;
/// ATT 0b10: non-idempotent I/O, i.e. cache-inhibited and guarded, for MMIO (QEMU
/// `R_PTE_ATT_NI_IO`; QEMU faults an instruction fetch from it).
pub const PTE_ATT_NI_IO: u64 = 0x20;
/// EAA privilege bit (QEMU `R_PTE_EAA_PRIV`); never set here (partition-scoped checks ignore it).
pub const PTE_EAA_PRIV: u64 = 0x8;
/// EAA read (QEMU `R_PTE_EAA_R`).
pub const PTE_EAA_READ: u64 = 0x4;
/// EAA read/write (QEMU `R_PTE_EAA_RW`: grants read and write).
pub const PTE_EAA_READ_WRITE: u64 = 0x2;
/// EAA execute (QEMU `R_PTE_EAA_X`).
pub const PTE_EAA_EXECUTE: u64 = 0x1;
/// PDE NLB: real address of the next-level directory (QEMU `R_PDE_NLB`).
pub const PDE_NLB: u64 = 0x0FFF_FFFF_FFFF_FF00;
/// PDE NLS: index bits of the next-level directory (QEMU `R_PDE_NLS`; QEMU faults below 5).
pub const PDE_NLS: u64 = 0x1F;

/// 4 KiB: a leaf in the last level, and the alignment every mapping needs.
pub const PAGE_4K: u64 = 0x1000;
/// 2 MiB: a leaf in the third level.
pub const PAGE_2M: u64 = 0x20_0000;
/// 1 GiB: a leaf in the level after the root.
pub const PAGE_1G: u64 = 0x4000_0000;
/// One past the highest guest real address a tree maps: 2^52.
pub const GUEST_LIMIT: u64 = 0x0010_0000_0000_0000;
/// One past the highest host real address a leaf can hold: 2^57 (the end of [`PTE_RPN`]).
pub const HOST_LIMIT: u64 = 0x0200_0000_0000_0000;
/// One past the highest real address a table can be at: 2^60 (the end of [`PDE_NLB`],
/// [`PATE0_RPDB`] and [`PTCR_PATB`]).
pub const TABLE_LIMIT: u64 = 0x1000_0000_0000_0000;
/// Bytes of a [`PartitionTable`]: 4 KiB (PATS = 0).
pub const PARTITION_TABLE_BYTES: u64 = 0x1000;
/// LPIDs a [`PartitionTable`] holds: 2^(8+PATS) = 256 (LPID 0, the hypervisor's, is refused).
pub const PARTITION_TABLE_ENTRIES: u32 = 256;

// ---------------------------------------------------------------------------------------------
// Access.
// ---------------------------------------------------------------------------------------------

bitflags::bitflags! {
    /// What a guest may do with a mapped range.
    ///
    /// `WRITE` implies `READ` (the leaf gets EAA read and read/write; a translation reports both).
    /// `WRITE | EXECUTE` is allowed (the caller decides whether a partition may run code it
    /// writes). The set must hold at least one of `READ`, `WRITE`, `EXECUTE`;
    /// `CACHE_INHIBITED | EXECUTE` is refused, since the hardware faults every instruction
    /// fetch from non-idempotent I/O.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct Access: u8 {
        /// Loads (EAA read).
        const READ = 0x1;
        /// Stores, and loads (EAA read/write).
        const WRITE = 0x2;
        /// Instruction fetches (EAA execute).
        const EXECUTE = 0x4;
        /// Cache-inhibited, guarded storage (ATT non-idempotent I/O), for MMIO.
        const CACHE_INHIBITED = 0x8;
    }
}

/// The leaf bits (everything but RPN) for `access`.
fn leaf_bits(access: Access) -> Result<u64, MapError> {
    let unknown = access.bits() & !Access::all().bits();
    if unknown != 0 {
        return Err(MapError::UnknownAccessBits { bits: unknown });
    }
    if !access.intersects(Access::READ | Access::WRITE | Access::EXECUTE) {
        return Err(MapError::NoAccess);
    }
    if access.contains(Access::EXECUTE | Access::CACHE_INHIBITED) {
        return Err(MapError::ExecuteCacheInhibited);
    }
    let mut bits = PTE_V | PTE_L | PTE_R | PTE_C;
    if access.contains(Access::CACHE_INHIBITED) {
        bits |= PTE_ATT_NI_IO;
    } else {
        bits |= PTE_ATT_NORMAL;
    }
    if access.intersects(Access::READ | Access::WRITE) {
        bits |= PTE_EAA_READ;
    }
    if access.contains(Access::WRITE) {
        bits |= PTE_EAA_READ_WRITE;
    }
    if access.contains(Access::EXECUTE) {
        bits |= PTE_EAA_EXECUTE;
    }
    Ok(bits)
}

/// What a partition-scoped access through leaf `pte` may do, as QEMU checks it: no R faults
/// everything, no C faults stores, non-idempotent I/O faults fetches, EAA read/write grants read
/// too. `None` when nothing is allowed.
fn leaf_access(pte: u64) -> Option<Access> {
    if pte & PTE_R == 0 {
        return None;
    }
    let mut access = Access::empty();
    let ni_io = pte & PTE_ATT == PTE_ATT_NI_IO;
    if pte & (PTE_EAA_READ | PTE_EAA_READ_WRITE) != 0 {
        access |= Access::READ;
    }
    if pte & PTE_EAA_READ_WRITE != 0 && pte & PTE_C != 0 {
        access |= Access::WRITE;
    }
    if pte & PTE_EAA_EXECUTE != 0 && !ni_io {
        access |= Access::EXECUTE;
    }
    if access.is_empty() {
        return None;
    }
    if ni_io {
        access |= Access::CACHE_INHIBITED;
    }
    Some(access)
}

// ---------------------------------------------------------------------------------------------
// Errors.
// ---------------------------------------------------------------------------------------------

/// Why the arena refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArenaError {
    /// The arena's base real address is not 4 KiB aligned.
    Misaligned {
        /// The base given.
        base: u64,
    },
    /// The arena does not fit below [`TABLE_LIMIT`] (where table addresses end).
    OutOfRange {
        /// The base given.
        base: u64,
        /// The length of the slice.
        len: u64,
    },
    /// Not enough memory left for the request (after aligning it).
    Exhausted {
        /// Bytes asked for, alignment padding included.
        requested: u64,
        /// Bytes left.
        available: u64,
    },
    /// [`Arena::rewind`] to a point beyond what is handed out.
    Rewind {
        /// The point asked for.
        to: u64,
        /// Bytes handed out.
        used: u64,
    },
}

impl fmt::Display for ArenaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Misaligned { base } => {
                write!(f, "arena base {base:#x} is not 4 KiB aligned")
            }
            Self::OutOfRange { base, len } => write!(
                f,
                "arena at {base:#x} of {len:#x} bytes does not end below {TABLE_LIMIT:#x}"
            ),
            Self::Exhausted {
                requested,
                available,
            } => write!(
                f,
                "arena exhausted: {requested:#x} bytes needed, {available:#x} left"
            ),
            Self::Rewind { to, used } => write!(
                f,
                "cannot rewind the arena to {to:#x}: only {used:#x} bytes are handed out"
            ),
        }
    }
}

/// Why [`Arena::map`] refused. Every variant is found before anything is written, so a refused
/// call leaves the tree and the arena as they were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// The length is zero.
    ZeroLength,
    /// The guest address, host address or length is not a multiple of 4 KiB.
    Unaligned {
        /// Guest real address asked for.
        guest: u64,
        /// Host real address asked for.
        host: u64,
        /// Length asked for.
        len: u64,
    },
    /// Address plus length wraps around 2^64.
    Overflow {
        /// The address (guest or host) that wraps.
        addr: u64,
        /// Length asked for.
        len: u64,
    },
    /// The guest range does not end at or below 2^52 ([`GUEST_LIMIT`]).
    GuestOutOfRange {
        /// Guest real address asked for.
        guest: u64,
        /// Length asked for.
        len: u64,
    },
    /// The host range does not end at or below 2^57 ([`HOST_LIMIT`], what a leaf can hold).
    HostOutOfRange {
        /// Host real address asked for.
        host: u64,
        /// Length asked for.
        len: u64,
    },
    /// The host range overlaps the arena itself: a guest would see (or write) its own tables.
    CoversArena {
        /// Host real address asked for.
        host: u64,
        /// Length asked for.
        len: u64,
    },
    /// The access set has none of `READ`, `WRITE`, `EXECUTE`.
    NoAccess,
    /// The access set has bits that name no flag.
    UnknownAccessBits {
        /// The unknown bits.
        bits: u8,
    },
    /// `EXECUTE` with `CACHE_INHIBITED`: the hardware faults every such fetch.
    ExecuteCacheInhibited,
    /// Part of the guest range is already mapped (by a leaf of any size).
    AlreadyMapped {
        /// The first guest address in the range found mapped.
        guest: u64,
    },
    /// The tree's root is not a 64 KiB aligned directory inside this arena.
    ForeignTree {
        /// The root's real address.
        root: u64,
    },
    /// Not enough arena memory for the directories the mapping needs (counted first).
    OutOfMemory(ArenaError),
    /// A directory entry on the way points outside the arena or has a size this crate never
    /// writes (the arena bytes were changed behind its back).
    Corrupt {
        /// Real address of the entry.
        entry: u64,
    },
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroLength => write!(f, "refused to map a zero-length range"),
            Self::Unaligned { guest, host, len } => write!(
                f,
                "refused to map guest {guest:#x} to host {host:#x} for {len:#x} bytes: not 4 KiB aligned"
            ),
            Self::Overflow { addr, len } => {
                write!(f, "refused to map {addr:#x} + {len:#x}: wraps around")
            }
            Self::GuestOutOfRange { guest, len } => write!(
                f,
                "refused to map guest {guest:#x} + {len:#x}: beyond the 52-bit guest real address space"
            ),
            Self::HostOutOfRange { host, len } => write!(
                f,
                "refused to map host {host:#x} + {len:#x}: beyond what a leaf can address"
            ),
            Self::CoversArena { host, len } => write!(
                f,
                "refused to map host {host:#x} + {len:#x}: it overlaps the translation tables"
            ),
            Self::NoAccess => write!(f, "refused to map with no read, write or execute access"),
            Self::UnknownAccessBits { bits } => {
                write!(f, "refused to map with unknown access bits {bits:#x}")
            }
            Self::ExecuteCacheInhibited => {
                write!(f, "refused to map cache-inhibited memory as executable")
            }
            Self::AlreadyMapped { guest } => {
                write!(f, "refused to map: guest {guest:#x} is already mapped")
            }
            Self::ForeignTree { root } => {
                write!(f, "tree root {root:#x} is not a root directory of this arena")
            }
            Self::OutOfMemory(e) => write!(f, "refused to map: {e}"),
            Self::Corrupt { entry } => {
                write!(f, "directory entry at {entry:#x} is not one this arena wrote")
            }
        }
    }
}

impl From<ArenaError> for MapError {
    fn from(e: ArenaError) -> Self {
        Self::OutOfMemory(e)
    }
}

/// Why a [`PartitionTable`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableError {
    /// LPID 0 is the hypervisor's own; a guest never runs with it.
    ReservedLpid,
    /// The LPID does not fit the table (256 entries).
    LpidOutOfRange {
        /// The LPID given.
        lpid: u32,
    },
    /// The table is not a 4 KiB aligned table inside this arena.
    ForeignTable {
        /// The table's real address.
        base: u64,
    },
    /// The tree's root is not a 64 KiB aligned directory inside this arena.
    ForeignTree {
        /// The root's real address.
        root: u64,
    },
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReservedLpid => write!(f, "LPID 0 is the hypervisor's; refused for a guest"),
            Self::LpidOutOfRange { lpid } => write!(
                f,
                "LPID {lpid} does not fit a partition table of {PARTITION_TABLE_ENTRIES} entries"
            ),
            Self::ForeignTable { base } => {
                write!(f, "partition table {base:#x} is not a table of this arena")
            }
            Self::ForeignTree { root } => {
                write!(
                    f,
                    "tree root {root:#x} is not a root directory of this arena"
                )
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Geometry and byte access.
// ---------------------------------------------------------------------------------------------

/// The low `bits` bits set (all of them from 64 on).
fn low_mask(bits: u64) -> u64 {
    u32::try_from(bits)
        .ok()
        .and_then(|b| 1u64.checked_shl(b))
        .map_or(u64::MAX, |v| v.wrapping_sub(1))
}

/// `addr >> shift` (0 from 64 on).
fn shr(addr: u64, shift: u64) -> u64 {
    u32::try_from(shift)
        .ok()
        .and_then(|s| addr.checked_shr(s))
        .unwrap_or(0)
}

/// `v << shift`, `None` from 64 on.
fn shl(v: u64, shift: u64) -> Option<u64> {
    u32::try_from(shift).ok().and_then(|s| v.checked_shl(s))
}

/// (NLS, index shift) of each level of the trees built here.
fn geometry(level: usize) -> Option<(u64, u64)> {
    match level {
        0 => Some((ROOT_NLS, 39)),
        1 => Some((LOWER_NLS, 30)),
        2 => Some((LOWER_NLS, 21)),
        3 => Some((LOWER_NLS, 12)),
        _ => None,
    }
}

/// The level configurations POWER9 supports and QEMU accepts (`ppc_radix64_is_valid_level`):
/// a 52-bit root of 13 bits, two levels of 9 and a last level of 9 (4 KiB pages) or 5 (64 KiB).
fn valid_level(level: usize, psize: u64, nls: u64) -> bool {
    match level {
        0 => psize == TREE_BITS && nls == ROOT_NLS,
        1 | 2 => nls == LOWER_NLS,
        3 => nls == LOWER_NLS || nls == 5,
        _ => false,
    }
}

/// A found leaf: the guest address it starts at, its size as log2, and the entry.
#[derive(Debug, Clone, Copy)]
struct Leaf {
    guest: u64,
    shift: u64,
    pte: u64,
}

impl Leaf {
    fn mapping(&self) -> Option<Mapping> {
        Some(Mapping {
            guest: self.guest,
            host: self.pte & PTE_RPN & !low_mask(self.shift),
            len: shl(1, self.shift)?,
            access: leaf_access(self.pte)?,
        })
    }
}

/// Read-only view of arena bytes at their real addresses.
#[derive(Clone, Copy)]
struct Mem<'m> {
    bytes: &'m [u8],
    base: u64,
}

impl Mem<'_> {
    fn range(&self, addr: u64, len: u64) -> Option<core::ops::Range<usize>> {
        let start = usize::try_from(addr.checked_sub(self.base)?).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        (end <= self.bytes.len()).then_some(start..end)
    }

    fn read(&self, addr: u64) -> Option<u64> {
        let b = self.bytes.get(self.range(addr, 8)?)?;
        Some(u64::from_be_bytes(b.try_into().ok()?))
    }

    /// The hardware walk (QEMU `ppc_radix64_walk_tree`) from a root of `root_nls` index bits in
    /// a tree of `tree_bits` address bits.
    fn walk(&self, root: u64, root_nls: u64, tree_bits: u64, eaddr: u64) -> Option<Leaf> {
        let (mut dir, mut nls, mut psize) = (root, root_nls, tree_bits);
        let mut level = 0usize;
        loop {
            if !valid_level(level, psize, nls) {
                return None;
            }
            // QEMU clears the low bits of a misaligned directory base (and logs it).
            dir &= !low_mask(nls.checked_add(3)?);
            let shift = psize.checked_sub(nls)?;
            let index = shr(eaddr, shift) & low_mask(nls);
            let entry = self.read(dir.checked_add(index.checked_mul(8)?)?)?;
            if entry & PTE_V == 0 {
                return None;
            }
            psize = shift;
            if entry & PTE_L != 0 {
                return Some(Leaf {
                    guest: eaddr & !low_mask(psize) & low_mask(tree_bits),
                    shift: psize,
                    pte: entry,
                });
            }
            dir = entry & PDE_NLB;
            nls = entry & PDE_NLS;
            level = level.checked_add(1)?;
        }
    }

    /// The first usable leaf at or after `from` in the directory at `dir` (level `level`, `nls`
    /// index bits, covering `psize` address bits), with the same level checks as [`Mem::walk`].
    fn next_leaf(&self, dir: u64, nls: u64, psize: u64, level: usize, from: u64) -> Option<Leaf> {
        if !valid_level(level, psize, nls) {
            return None;
        }
        let dir = dir & !low_mask(nls.checked_add(3)?);
        let shift = psize.checked_sub(nls)?;
        let entries = shl(1, nls)?;
        let first = shr(from, shift) & low_mask(nls);
        let prefix = from & !low_mask(psize);
        let mut i = first;
        while i < entries {
            let start = prefix | shl(i, shift)?;
            let sub_from = if i == first { from } else { start };
            let entry = dir
                .checked_add(i.checked_mul(8)?)
                .and_then(|a| self.read(a))
                .unwrap_or(0);
            if entry & PTE_V != 0 {
                if entry & PTE_L != 0 {
                    if leaf_access(entry).is_some() {
                        return Some(Leaf {
                            guest: start,
                            shift,
                            pte: entry,
                        });
                    }
                } else if let Some(leaf) = self.next_leaf(
                    entry & PDE_NLB,
                    entry & PDE_NLS,
                    shift,
                    level.checked_add(1)?,
                    sub_from,
                ) {
                    return Some(leaf);
                }
            }
            i = i.checked_add(1)?;
        }
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Trees, the partition table.
// ---------------------------------------------------------------------------------------------

/// A partition-scoped radix tree: the real address of its 64 KiB root directory in an
/// [`Arena`]. Only [`Arena::new_tree`] makes one; use it with the arena that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tree {
    root: u64,
}

impl Tree {
    /// Real address of the root directory.
    pub fn root(&self) -> u64 {
        self.root
    }
}

/// The partition-table entry for a guest whose guest real addresses go through `tree`:
/// dw0 = HR | RTS (52-bit tree) | RPDB (the root) | RPDS (13). dw1, the process table, is 0:
/// a guest that only runs in real mode (MSR\[IR\]=MSR\[DR\]=0) never reads it; a guest that
/// turns translation on needs a process table there.
pub fn pate(tree: &Tree) -> (u64, u64) {
    let rts1 = (RTS_52 >> 3) << PATE0_RTS1_SHIFT;
    let rts2 = (RTS_52 & 7) << PATE0_RTS2_SHIFT;
    let dw0 = PATE0_HR | rts1 | rts2 | (tree.root & PATE0_RPDB) | ROOT_NLS;
    (dw0, 0)
}

/// A 4 KiB partition table (PATS = 0: 256 entries) in an [`Arena`]. Only
/// [`Arena::new_partition_table`] makes one; use it with the arena that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartitionTable {
    base: u64,
}

impl PartitionTable {
    /// Real address of the table.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The value for PTCR (SPR 464): PATB = the table, PATS = 0.
    pub fn ptcr(&self) -> u64 {
        self.base & PTCR_PATB
    }

    /// Real address of the entry of `lpid` (1..=255).
    fn entry_addr(&self, arena: &Arena<'_>, lpid: u32) -> Result<u64, TableError> {
        if lpid == 0 {
            return Err(TableError::ReservedLpid);
        }
        if lpid >= PARTITION_TABLE_ENTRIES {
            return Err(TableError::LpidOutOfRange { lpid });
        }
        if self.base & low_mask(12) != 0 || !arena.holds(self.base, PARTITION_TABLE_BYTES) {
            return Err(TableError::ForeignTable { base: self.base });
        }
        u64::from(lpid)
            .checked_mul(PATE_BYTES)
            .and_then(|o| self.base.checked_add(o))
            .ok_or(TableError::ForeignTable { base: self.base })
    }

    fn write(&self, arena: &mut Arena<'_>, lpid: u32, dw: (u64, u64)) -> Result<(), TableError> {
        let at = self.entry_addr(arena, lpid)?;
        let foreign = TableError::ForeignTable { base: self.base };
        arena.write(at, dw.0).ok_or(foreign)?;
        arena
            .write(at.checked_add(8).ok_or(foreign)?, dw.1)
            .ok_or(foreign)
    }

    /// Makes partition `lpid` (1..=255) translate through `tree` (replacing any tree it had).
    /// The hardware may cache partition-table entries and translations: after changing an entry
    /// the partition may already have used, invalidate what is cached for the LPID (`tlbie` with
    /// RIC=2 for it, then `eieio; tlbsync; ptesync`) before running it again.
    pub fn set(&self, arena: &mut Arena<'_>, lpid: u32, tree: &Tree) -> Result<(), TableError> {
        if !arena.holds_root(tree) {
            return Err(TableError::ForeignTree { root: tree.root });
        }
        self.write(arena, lpid, pate(tree))
    }

    /// Makes partition `lpid` (1..=255) translate nothing (its entry is zeroed: HR clear, so any
    /// access it makes faults).
    pub fn clear(&self, arena: &mut Arena<'_>, lpid: u32) -> Result<(), TableError> {
        self.write(arena, lpid, (0, 0))
    }

    /// The entry (dw0, dw1) of `lpid` (1..=255), as the arena holds it.
    pub fn entry(&self, arena: &Arena<'_>, lpid: u32) -> Result<(u64, u64), TableError> {
        let at = self.entry_addr(arena, lpid)?;
        let foreign = TableError::ForeignTable { base: self.base };
        let mem = arena.mem();
        let dw0 = mem.read(at).ok_or(foreign)?;
        let dw1 = mem.read(at.checked_add(8).ok_or(foreign)?).ok_or(foreign)?;
        Ok((dw0, dw1))
    }
}

// ---------------------------------------------------------------------------------------------
// Mapping listing.
// ---------------------------------------------------------------------------------------------

/// One mapped range: guest real addresses [guest, guest + len) reach host real addresses
/// [host, host + len) with `access`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mapping {
    /// First guest real address.
    pub guest: u64,
    /// First host real address.
    pub host: u64,
    /// Length in bytes.
    pub len: u64,
    /// What the guest may do there (as [`Arena::translate`] reports it).
    pub access: Access,
}

/// Every leaf of a tree in guest address order, from [`Arena::mappings`]; [`Mappings::merged`]
/// joins neighbours.
#[derive(Clone)]
pub struct Mappings<'m> {
    mem: Mem<'m>,
    root: u64,
    cursor: Option<u64>,
}

impl Mappings<'_> {
    /// The same ranges, with neighbours that continue each other (guest and host contiguous,
    /// same access) joined.
    pub fn merged(self) -> Merged<Self> {
        Merged {
            inner: self,
            pending: None,
        }
    }
}

impl Iterator for Mappings<'_> {
    type Item = Mapping;

    fn next(&mut self) -> Option<Mapping> {
        loop {
            let from = self.cursor?;
            if from >= GUEST_LIMIT {
                self.cursor = None;
                return None;
            }
            let Some(leaf) = self.mem.next_leaf(self.root, ROOT_NLS, TREE_BITS, 0, from) else {
                self.cursor = None;
                return None;
            };
            let len = shl(1, leaf.shift);
            self.cursor = len.and_then(|l| leaf.guest.checked_add(l));
            // Never go backwards (a leaf can only start before `from` in bytes this crate did
            // not write).
            if leaf.guest < from {
                continue;
            }
            if let Some(m) = leaf.mapping() {
                return Some(m);
            }
        }
    }
}

/// Joins the contiguous neighbours of a [`Mapping`] iterator (see [`Mappings::merged`]).
#[derive(Clone)]
pub struct Merged<I> {
    inner: I,
    pending: Option<Mapping>,
}

impl<I: Iterator<Item = Mapping>> Iterator for Merged<I> {
    type Item = Mapping;

    fn next(&mut self) -> Option<Mapping> {
        let mut cur = match self.pending.take() {
            Some(m) => m,
            None => self.inner.next()?,
        };
        for next in self.inner.by_ref() {
            let joins = cur.access == next.access
                && cur.guest.checked_add(cur.len) == Some(next.guest)
                && cur.host.checked_add(cur.len) == Some(next.host);
            match cur.len.checked_add(next.len) {
                Some(len) if joins => cur.len = len,
                _ => {
                    self.pending = Some(next);
                    return Some(cur);
                }
            }
        }
        Some(cur)
    }
}

// ---------------------------------------------------------------------------------------------
// The arena.
// ---------------------------------------------------------------------------------------------

/// One piece of a mapping: a leaf at `level` (1: 1 GiB, 2: 2 MiB, 3: 4 KiB).
#[derive(Debug, Clone, Copy)]
struct Chunk {
    guest: u64,
    host: u64,
    level: usize,
}

/// The leaves of [guest, +left) -> [host, +left): the largest leaf both addresses and the
/// length allow at each step.
struct Chunks {
    guest: u64,
    host: u64,
    left: u64,
}

impl Iterator for Chunks {
    type Item = Chunk;

    fn next(&mut self) -> Option<Chunk> {
        if self.left == 0 {
            return None;
        }
        let fits =
            |size: u64| (self.guest | self.host) & size.wrapping_sub(1) == 0 && self.left >= size;
        let (level, size) = if fits(PAGE_1G) {
            (1, PAGE_1G)
        } else if fits(PAGE_2M) {
            (2, PAGE_2M)
        } else {
            (3, PAGE_4K)
        };
        let chunk = Chunk {
            guest: self.guest,
            host: self.host,
            level,
        };
        match (
            self.left.checked_sub(size),
            self.guest.checked_add(size),
            self.host.checked_add(size),
        ) {
            (Some(left), Some(g), Some(h)) => {
                self.left = left;
                self.guest = g;
                self.host = h;
            }
            _ => self.left = 0,
        }
        Some(chunk)
    }
}

/// The memory all tables come from: `&mut [u8]` whose first byte is at real address `base`.
/// Directories are handed out zeroed and aligned to their size in real addresses; nothing is
/// ever freed.
pub struct Arena<'a> {
    bytes: &'a mut [u8],
    base: u64,
    next: u64,
}

impl<'a> Arena<'a> {
    /// An arena over `bytes`, whose first byte is at real address `base` (4 KiB aligned; the
    /// whole slice must lie below 2^60). The previous contents do not matter.
    pub fn new(bytes: &'a mut [u8], base: u64) -> Result<Self, ArenaError> {
        if base & low_mask(12) != 0 {
            return Err(ArenaError::Misaligned { base });
        }
        let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        match base.checked_add(len) {
            Some(end) if end <= TABLE_LIMIT => Ok(Self {
                bytes,
                base,
                next: 0,
            }),
            _ => Err(ArenaError::OutOfRange { base, len }),
        }
    }

    /// Real address of the arena's first byte.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The arena's bytes, tables included, as the hardware reads them (from [`Arena::base`]).
    pub fn bytes(&self) -> &[u8] {
        self.bytes
    }

    /// Bytes handed out so far (alignment padding included).
    pub fn used(&self) -> u64 {
        self.next
    }

    /// Gives back everything handed out after `used` (a value [`Arena::used`] returned
    /// earlier): those bytes are zeroed and handed out again. Every tree and table made after
    /// that point is gone with them; a tree made before it must not have grown since (its new
    /// directories would be given back too). The caller keeps that rule; pefbox's
    /// `Partitions` does it by sealing the trees that exist at a mark. `used` beyond what is
    /// handed out is refused and changes nothing.
    pub fn rewind(&mut self, used: u64) -> Result<(), ArenaError> {
        let range = usize::try_from(used)
            .ok()
            .zip(usize::try_from(self.next).ok());
        let Some(freed) = range.and_then(|(s, e)| self.bytes.get_mut(s..e)) else {
            return Err(ArenaError::Rewind {
                to: used,
                used: self.next,
            });
        };
        freed.fill(0);
        self.next = used;
        Ok(())
    }

    fn len(&self) -> u64 {
        u64::try_from(self.bytes.len()).unwrap_or(u64::MAX)
    }

    fn mem(&self) -> Mem<'_> {
        Mem {
            bytes: self.bytes,
            base: self.base,
        }
    }

    /// Whether [addr, addr + len) lies in the part handed out.
    fn holds(&self, addr: u64, len: u64) -> bool {
        let Some(off) = addr.checked_sub(self.base) else {
            return false;
        };
        off.checked_add(len).is_some_and(|end| end <= self.next)
    }

    fn holds_root(&self, tree: &Tree) -> bool {
        tree.root & low_mask(16) == 0 && self.holds(tree.root, ROOT_BYTES)
    }

    /// The real address the next allocation of `align` would start at, as an offset.
    fn aligned_next(&self, align: u64) -> Option<u64> {
        let cur = self.base.checked_add(self.next)?;
        let mask = align.checked_sub(1)?;
        let start = cur.checked_add(mask)? & !mask;
        start.checked_sub(self.base)
    }

    fn exhausted(&self, requested: u64) -> ArenaError {
        ArenaError::Exhausted {
            requested,
            available: self.len().saturating_sub(self.next),
        }
    }

    /// `size` zeroed bytes aligned to `align` (a power of two) in real addresses.
    fn alloc(&mut self, size: u64, align: u64) -> Result<u64, ArenaError> {
        let start = self.aligned_next(align);
        let end = start.and_then(|s| s.checked_add(size));
        let (Some(start), Some(end)) = (start, end) else {
            return Err(self.exhausted(size));
        };
        if end > self.len() {
            return Err(self.exhausted(end.saturating_sub(self.next)));
        }
        let range = usize::try_from(start).ok().zip(usize::try_from(end).ok());
        let Some(slice) = range.and_then(|(s, e)| self.bytes.get_mut(s..e)) else {
            return Err(self.exhausted(size));
        };
        slice.fill(0);
        self.next = end;
        self.base.checked_add(start).ok_or(ArenaError::OutOfRange {
            base: self.base,
            len: self.len(),
        })
    }

    /// Whether `dirs` lower directories fit; `Err` says how much they need.
    fn reserve(&self, dirs: u64) -> Result<(), ArenaError> {
        let start = self.aligned_next(DIR_BYTES);
        let bytes = dirs.checked_mul(DIR_BYTES);
        let end = start.zip(bytes).and_then(|(s, b)| s.checked_add(b));
        match end {
            Some(end) if end <= self.len() => Ok(()),
            _ => Err(self.exhausted(end.map_or(u64::MAX, |e| e.saturating_sub(self.next)))),
        }
    }

    fn write(&mut self, addr: u64, value: u64) -> Option<()> {
        let range = self.mem().range(addr, 8)?;
        self.bytes
            .get_mut(range)?
            .copy_from_slice(&value.to_be_bytes());
        Some(())
    }

    /// A new, empty tree: a zeroed 64 KiB root directory aligned to 64 KiB in real addresses.
    pub fn new_tree(&mut self) -> Result<Tree, ArenaError> {
        Ok(Tree {
            root: self.alloc(ROOT_BYTES, ROOT_BYTES)?,
        })
    }

    /// A new, empty 4 KiB partition table (every LPID translates nothing until
    /// [`PartitionTable::set`]).
    pub fn new_partition_table(&mut self) -> Result<PartitionTable, ArenaError> {
        Ok(PartitionTable {
            base: self.alloc(PARTITION_TABLE_BYTES, PARTITION_TABLE_BYTES)?,
        })
    }

    /// Maps guest real addresses [guest, guest + len) to host real addresses
    /// [host, host + len) in `tree`, with 1 GiB or 2 MiB leaves where both addresses and the
    /// rest of the length allow, 4 KiB leaves elsewhere. Every leaf has R and C set.
    ///
    /// Everything is checked before anything is written (the arguments, overlap with any
    /// existing leaf, the directories on the way, the directories needed against the memory
    /// left), so a refused call changes nothing and an accepted one cannot fail half-way.
    ///
    /// This only turns invalid entries valid, which needs no TLB invalidation; the stores still
    /// have to be ordered before the partition's accesses (`ptesync` before entering it).
    pub fn map(
        &mut self,
        tree: &Tree,
        guest: u64,
        host: u64,
        len: u64,
        access: Access,
    ) -> Result<(), MapError> {
        let bits = leaf_bits(access)?;
        if len == 0 {
            return Err(MapError::ZeroLength);
        }
        if (guest | host | len) & low_mask(12) != 0 {
            return Err(MapError::Unaligned { guest, host, len });
        }
        let guest_end = guest
            .checked_add(len)
            .ok_or(MapError::Overflow { addr: guest, len })?;
        let host_end = host
            .checked_add(len)
            .ok_or(MapError::Overflow { addr: host, len })?;
        if guest_end > GUEST_LIMIT {
            return Err(MapError::GuestOutOfRange { guest, len });
        }
        if host_end > HOST_LIMIT {
            return Err(MapError::HostOutOfRange { host, len });
        }
        let arena_end = self.base.saturating_add(self.len());
        if host < arena_end && self.base < host_end {
            return Err(MapError::CoversArena { host, len });
        }
        if !self.holds_root(tree) {
            return Err(MapError::ForeignTree { root: tree.root });
        }
        let dirs = self.walk_range(tree.root, guest, host, len, bits, false)?;
        self.reserve(dirs)?;
        self.walk_range(tree.root, guest, host, len, bits, true)?;
        Ok(())
    }

    /// The next-level directory an entry points at, if it is one this crate writes.
    fn child(&self, entry: u64, at: u64) -> Result<u64, MapError> {
        let dir = entry & PDE_NLB;
        if entry & PDE_NLS != LOWER_NLS || dir & low_mask(12) != 0 || !self.holds(dir, DIR_BYTES) {
            return Err(MapError::Corrupt { entry: at });
        }
        Ok(dir)
    }

    /// Goes through the leaves of a mapping. Without `apply`, checks for overlap and counts the
    /// directories to create; with it, creates them and writes the leaves.
    fn walk_range(
        &mut self,
        root: u64,
        guest: u64,
        host: u64,
        len: u64,
        bits: u64,
        apply: bool,
    ) -> Result<u64, MapError> {
        let mut new_dirs: u64 = 0;
        // Per level, the guest region (address >> parent shift) of the last directory counted
        // as new: the leaves come in address order, so each is counted once.
        let mut last_new: [Option<u64>; 4] = [None; 4];
        let chunks = Chunks {
            guest,
            host,
            left: len,
        };
        for c in chunks {
            let mut dir = Some(root);
            let mut level = 0usize;
            while level < c.level {
                let (nls, shift) = geometry(level).ok_or(MapError::Corrupt { entry: root })?;
                let child_level = level.saturating_add(1);
                let mut count_new = || {
                    let key = shr(c.guest, shift);
                    if let Some(last) = last_new.get_mut(child_level) {
                        if *last != Some(key) {
                            *last = Some(key);
                            new_dirs = new_dirs.saturating_add(1);
                        }
                    }
                };
                dir = match dir {
                    None => {
                        count_new();
                        None
                    }
                    Some(d) => {
                        let at = entry_addr(d, c.guest, nls, shift)
                            .ok_or(MapError::Corrupt { entry: d })?;
                        let entry = self.mem().read(at).ok_or(MapError::Corrupt { entry: at })?;
                        if entry & PTE_V == 0 {
                            if apply {
                                let nd = self.alloc(DIR_BYTES, DIR_BYTES)?;
                                self.write(at, PTE_V | (nd & PDE_NLB) | LOWER_NLS)
                                    .ok_or(MapError::Corrupt { entry: at })?;
                                Some(nd)
                            } else {
                                count_new();
                                None
                            }
                        } else if entry & PTE_L != 0 {
                            return Err(MapError::AlreadyMapped { guest: c.guest });
                        } else {
                            Some(self.child(entry, at)?)
                        }
                    }
                };
                level = child_level;
            }
            // The leaf slot, in an existing directory (a new one is empty).
            let Some(d) = dir else { continue };
            let (nls, shift) = geometry(c.level).ok_or(MapError::Corrupt { entry: d })?;
            let at = entry_addr(d, c.guest, nls, shift).ok_or(MapError::Corrupt { entry: d })?;
            let entry = self.mem().read(at).ok_or(MapError::Corrupt { entry: at })?;
            if entry & PTE_V != 0 {
                let first = if entry & PTE_L != 0 {
                    c.guest
                } else {
                    let child = self.child(entry, at)?;
                    let from = c.guest;
                    let child_level = c.level.saturating_add(1);
                    self.mem()
                        .next_leaf(child, LOWER_NLS, shift, child_level, from)
                        .map_or(from, |l| l.guest.max(from))
                };
                return Err(MapError::AlreadyMapped { guest: first });
            }
            if apply {
                self.write(at, bits | (c.host & PTE_RPN))
                    .ok_or(MapError::Corrupt { entry: at })?;
            }
        }
        Ok(new_dirs)
    }

    /// Where guest real address `guest` goes in `tree`, and what the guest may do there: the
    /// hardware's walk (as QEMU's `ppc_radix64_walk_tree` and its partition-scoped checks do it)
    /// over the bytes in the arena. `None` where any access would fault.
    ///
    /// Like QEMU's walk, only the low 52 bits of `guest` select the entry (higher bits are
    /// shifted out of every index), so an address at or above 2^52 translates as its low
    /// 52 bits do; the host address gets none of them.
    pub fn translate(&self, tree: &Tree, guest: u64) -> Option<(u64, Access)> {
        let leaf = self.mem().walk(tree.root, ROOT_NLS, TREE_BITS, guest)?;
        let m = leaf.mapping()?;
        Some((m.host | (guest & low_mask(leaf.shift)), m.access))
    }

    /// As [`Arena::translate`], but from a PTCR value and an LPID, the way the hardware starts:
    /// the partition table at PATB (2^(8+PATS) entries, in this arena), the entry of `lpid`
    /// (HR set, LPID not 0 for a guest), its RTS, RPDB and RPDS.
    pub fn translate_partition(&self, ptcr: u64, lpid: u32, guest: u64) -> Option<(u64, Access)> {
        let mem = self.mem();
        let entries = shl(1, (ptcr & PTCR_PATS).checked_add(8)?)?;
        if lpid == 0 || u64::from(lpid) >= entries {
            return None;
        }
        let at = (ptcr & PTCR_PATB).checked_add(u64::from(lpid).checked_mul(PATE_BYTES)?)?;
        let dw0 = mem.read(at)?;
        if dw0 & PATE0_HR == 0 {
            return None;
        }
        let rts = (shr(dw0, 58) & 0x18) | (shr(dw0, 5) & 7);
        let bits = rts.checked_add(RTS_BIAS)?;
        let leaf = mem.walk(dw0 & PATE0_RPDB, dw0 & PATE0_RPDS, bits, guest)?;
        let m = leaf.mapping()?;
        Some((m.host | (guest & low_mask(leaf.shift)), m.access))
    }

    /// Every leaf of `tree` a guest can use, in guest address order (what [`Arena::translate`]
    /// reports for each address of it): everything the partition can reach.
    pub fn mappings(&self, tree: &Tree) -> Mappings<'_> {
        Mappings {
            mem: self.mem(),
            root: tree.root,
            cursor: Some(0),
        }
    }
}

/// Real address of the entry for `guest` in the directory at `dir`.
fn entry_addr(dir: u64, guest: u64, nls: u64, shift: u64) -> Option<u64> {
    let index = shr(guest, shift) & low_mask(nls);
    dir.checked_add(index.checked_mul(8)?)
}
