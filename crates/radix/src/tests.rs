#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

use super::*;

const BASE: u64 = 0x4000_0000_0000; // real address of the test arenas

/// What the independent walker returns: QEMU's outcome for one access.
#[derive(Debug, PartialEq, Eq)]
enum Fault {
    NoPate,
    BadPate,
    BadConfig,
    NoPte,
    Prot,
    Rc,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Load,
    Store,
    Fetch,
}

/// A second walker, written from QEMU's code (`ppc64_v3_get_pate`, `validate_pate`,
/// `ppc_radix64_walk_tree`/`next_level`/`is_valid_level`, `check_prot`, `check_rc`) rather than
/// from this crate, over raw memory at real address `base`.
fn qemu_xlate(
    mem: &[u8],
    base: u64,
    ptcr: u64,
    lpid: u64,
    g_raddr: u64,
    kind: Kind,
) -> Result<u64, Fault> {
    let ld = |addr: u64| -> u64 {
        let off = (addr - base) as usize;
        u64::from_be_bytes(mem[off..off + 8].try_into().unwrap())
    };
    // ppc64_v3_get_pate
    let patb = ptcr & 0x0FFF_FFFF_FFFF_F000;
    let pats = 1u64 << ((ptcr & 0x1F) + 12 - 4);
    if pats <= lpid {
        return Err(Fault::NoPate);
    }
    let dw0 = ld(patb + 16 * lpid);
    // validate_pate (guest: MSR[HV]=0)
    if dw0 & 0x8000_0000_0000_0000 == 0 || lpid == 0 {
        return Err(Fault::BadPate);
    }
    let mut psize = (((dw0 >> 58) & 0x18) | ((dw0 >> 5) & 0x7)) + 31;
    let mut nls = dw0 & 0x1F;
    let base_addr = dw0 & 0x0FFF_FFFF_FFFF_FF00;
    let mut pte_addr = base_addr + ((g_raddr >> (psize - nls)) & ((1 << nls) - 1)) * 8;
    let mut level = 0;
    let pde = loop {
        let ok = match level {
            0 => psize == 52 && nls == 13,
            1 | 2 => nls == 9,
            3 => nls == 9 || nls == 5,
            _ => false,
        };
        if !ok {
            return Err(Fault::BadConfig);
        }
        level += 1;
        let pde = ld(pte_addr);
        if pde & 0x8000_0000_0000_0000 == 0 {
            return Err(Fault::NoPte);
        }
        psize -= nls;
        if pde & 0x4000_0000_0000_0000 != 0 {
            break pde;
        }
        nls = pde & 0x1F;
        let nlb = pde & 0x0FFF_FFFF_FFFF_FF00;
        let index = (g_raddr >> (psize - nls)) & ((1 << nls) - 1);
        pte_addr = nlb + index * 8;
    };
    // ppc_radix64_check_prot, partition-scoped
    if pde & 0x30 == 0x20 && kind == Kind::Fetch {
        return Err(Fault::Prot);
    }
    let read = pde & 0x4 != 0 || pde & 0x2 != 0;
    let write = pde & 0x2 != 0;
    let exec = pde & 0x1 != 0;
    let allowed = match kind {
        Kind::Load => read,
        Kind::Store => write,
        Kind::Fetch => exec,
    };
    if !allowed {
        return Err(Fault::Prot);
    }
    // ppc_radix64_check_rc
    if pde & 0x100 == 0 || (kind == Kind::Store && pde & 0x80 == 0) {
        return Err(Fault::Rc);
    }
    let rpn = pde & 0x01FF_FFFF_FFFF_F000;
    let mask = (1u64 << psize) - 1;
    Ok((rpn & !mask) | (g_raddr & mask))
}

/// Checks `translate`, `translate_partition` and the independent walker agree at `g`, and
/// returns the translation.
fn check_at(
    arena: &Arena<'_>,
    table: &PartitionTable,
    lpid: u32,
    tree: &Tree,
    g: u64,
) -> Option<(u64, Access)> {
    let t = arena.translate(tree, g);
    assert_eq!(
        arena.translate_partition(table.ptcr(), lpid, g),
        t,
        "partition walk at {g:#x}"
    );
    let q = |k| {
        qemu_xlate(
            arena.bytes(),
            arena.base(),
            table.ptcr(),
            u64::from(lpid),
            g,
            k,
        )
    };
    match t {
        None => {
            for k in [Kind::Load, Kind::Store, Kind::Fetch] {
                assert!(q(k).is_err(), "QEMU walk reaches {g:#x}");
            }
        }
        Some((h, a)) => {
            let expect = |allowed: bool, k| {
                if allowed {
                    assert_eq!(q(k), Ok(h), "QEMU walk at {g:#x}");
                } else {
                    assert!(q(k).is_err(), "QEMU walk allows at {g:#x}");
                }
            };
            expect(a.contains(Access::READ), Kind::Load);
            expect(a.contains(Access::WRITE), Kind::Store);
            expect(a.contains(Access::EXECUTE), Kind::Fetch);
        }
    }
    t
}

fn buf(len: usize) -> Vec<u8> {
    vec![0xA5; len] // never zero: the arena must zero what it hands out
}

const RW: Access = Access::READ.union(Access::WRITE);

#[test]
fn pate_and_ptcr_encodings() {
    let tree = Tree { root: 0x1_0000 };
    // HR 0x8000.. | RTS1 0b10 << 61 = 0x4000.. | RTS2 0b101 << 5 = 0xA0 | RPDB 0x1_0000 | RPDS 13
    assert_eq!(pate(&tree), (0xC000_0000_0001_00AD, 0));
    let tree = Tree {
        root: 0x0000_0123_4567_0000,
    };
    assert_eq!(pate(&tree), (0xC000_0123_4567_00AD, 0));
    // QEMU's RTS decode of dw0 gives 52 bits.
    let dw0 = pate(&tree).0;
    assert_eq!((((dw0 >> 58) & 0x18) | ((dw0 >> 5) & 7)) + 31, 52);

    let mut mem = buf(0x3_0000);
    let mut arena = Arena::new(&mut mem, 0x20_0000).unwrap();
    let table = arena.new_partition_table().unwrap();
    assert_eq!(table.base(), 0x20_0000);
    assert_eq!(table.ptcr(), 0x20_0000); // PATS 0
    let tree = arena.new_tree().unwrap();
    assert_eq!(tree.root(), 0x21_0000); // 64 KiB aligned after the 4 KiB table
    table.set(&mut arena, 5, &tree).unwrap();
    assert_eq!(table.entry(&arena, 5).unwrap(), (0xC000_0000_0021_00AD, 0));
    // In memory, big-endian at PATB + 16 * 5.
    let off = 0x50;
    assert_eq!(
        &arena.bytes()[off..off + 16],
        &[0xC0, 0, 0, 0, 0, 0x21, 0, 0xAD, 0, 0, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(table.entry(&arena, 6).unwrap(), (0, 0));
    assert_eq!(
        table.set(&mut arena, 0, &tree),
        Err(TableError::ReservedLpid)
    );
    assert_eq!(
        table.set(&mut arena, 256, &tree),
        Err(TableError::LpidOutOfRange { lpid: 256 })
    );
    table.set(&mut arena, 255, &tree).unwrap();
    let bogus = Tree { root: 0x1_0000 };
    assert_eq!(
        table.set(&mut arena, 7, &bogus),
        Err(TableError::ForeignTree { root: 0x1_0000 })
    );
    let other = PartitionTable { base: 0x10_0000 };
    assert_eq!(
        other.set(&mut arena, 7, &tree),
        Err(TableError::ForeignTable { base: 0x10_0000 })
    );
    table.clear(&mut arena, 5).unwrap();
    assert_eq!(table.entry(&arena, 5).unwrap(), (0, 0));
}

#[test]
fn pte_and_pde_encodings() {
    let mut mem = buf(0x4_0000);
    let mut arena = Arena::new(&mut mem, 0x100_0000).unwrap();
    let tree = arena.new_tree().unwrap();
    arena
        .map(&tree, 0x4000_1000, 0x2_0000_3000, PAGE_4K, RW)
        .unwrap();
    let rd = |arena: &Arena<'_>, addr: u64| {
        let off = (addr - arena.base()) as usize;
        u64::from_be_bytes(arena.bytes()[off..off + 8].try_into().unwrap())
    };
    // Root index (0x4000_1000 >> 39) = 0: a PDE to the first 4 KiB directory after the root.
    assert_eq!(rd(&arena, tree.root()), 0x8000_0000_0101_0009);
    // Level 1 index (>> 30 & 0x1FF) = 1.
    assert_eq!(rd(&arena, 0x101_0000 + 8), 0x8000_0000_0101_1009);
    // Level 2 index (>> 21 & 0x1FF) = 0.
    assert_eq!(rd(&arena, 0x101_1000), 0x8000_0000_0101_2009);
    // Level 3 index (>> 12 & 0x1FF) = 1: V | L | RPN | R | C | EAA R | RW.
    assert_eq!(rd(&arena, 0x101_2000 + 8), 0xC000_0002_0000_3186);
    // Execute-only, MMIO read-only.
    arena
        .map(&tree, 0x4000_2000, 0x3000, PAGE_4K, Access::EXECUTE)
        .unwrap();
    assert_eq!(rd(&arena, 0x101_2000 + 16), 0xC000_0000_0000_3181);
    arena
        .map(
            &tree,
            0x4000_3000,
            0x6_0302_0000_0000,
            PAGE_4K,
            Access::READ | Access::CACHE_INHIBITED,
        )
        .unwrap();
    assert_eq!(rd(&arena, 0x101_2000 + 24), 0xC006_0302_0000_01A4);
    assert_eq!(
        arena.translate(&tree, 0x4000_3010),
        Some((0x6_0302_0000_0010, Access::READ | Access::CACHE_INHIBITED))
    );
}

/// An arena, a table and trees for LPIDs 1 and 2.
fn setup(mem: &mut [u8]) -> (Arena<'_>, PartitionTable, Tree, Tree) {
    let mut arena = Arena::new(mem, BASE).unwrap();
    let table = arena.new_partition_table().unwrap();
    let t1 = arena.new_tree().unwrap();
    let t2 = arena.new_tree().unwrap();
    table.set(&mut arena, 1, &t1).unwrap();
    table.set(&mut arena, 2, &t2).unwrap();
    (arena, table, t1, t2)
}

#[allow(clippy::too_many_arguments)]
/// Checks a range maps linearly (at its ends, middle and every `step`) and its neighbours don't.
fn check_range(
    arena: &Arena<'_>,
    table: &PartitionTable,
    lpid: u32,
    tree: &Tree,
    g: u64,
    h: u64,
    len: u64,
    a: Access,
) {
    let step = (len / 64).max(PAGE_4K);
    let mut off = 0;
    while off < len {
        for o in [off, off + 8, off + PAGE_4K - 1] {
            assert_eq!(check_at(arena, table, lpid, tree, g + o), Some((h + o, a)));
        }
        off += step;
    }
    assert_eq!(
        check_at(arena, table, lpid, tree, g + len - 1),
        Some((h + len - 1, a))
    );
    if g > 0 {
        assert_eq!(check_at(arena, table, lpid, tree, g - 1), None);
    }
    assert_eq!(check_at(arena, table, lpid, tree, g + len), None);
}

#[test]
fn round_trips_at_each_size() {
    let mut mem = buf(0x40_0000);
    let (mut arena, table, t1, t2) = setup(&mut mem);
    let cases = [
        (0x1000, 0x8000_0000, PAGE_4K),        // one 4 KiB page
        (0x20_0000, 0x1_0020_0000, PAGE_2M),   // one 2 MiB leaf
        (0x4000_0000, 0x2_4000_0000, PAGE_1G), // one 1 GiB leaf
        (
            0x1_0000_0000,
            0x3_0000_0000,
            PAGE_1G + 2 * PAGE_2M + 3 * PAGE_4K,
        ), // mixed
        (0x2_001F_F000, 0x4_001F_F000, PAGE_4K + PAGE_2M + PAGE_4K), // 4K, 2M, 4K
        (0x3_0000_1000, 0x5_0000_0000, 2 * PAGE_2M), // unequal alignment: all 4 KiB
        (0xF_FFFF_FFFF_F000, 0x6_0000_0000, PAGE_4K), // the last guest page
    ];
    for (g, h, len) in cases {
        arena.map(&t1, g, h, len, RW).unwrap();
        check_range(&arena, &table, 1, &t1, g, h, len, RW);
        // LPID 2 sees none of it.
        assert_eq!(check_at(&arena, &table, 2, &t2, g), None);
        assert_eq!(arena.translate_partition(table.ptcr(), 3, g), None);
        assert_eq!(arena.translate_partition(table.ptcr(), 0, g), None);
    }
    // The leaf sizes chosen.
    let sizes: Vec<u64> = arena.mappings(&t1).map(|m| m.len).collect();
    let count = |s| sizes.iter().filter(|&&l| l == s).count();
    assert_eq!(count(PAGE_1G), 2);
    assert_eq!(count(PAGE_2M), 1 + 2 + 1);
    assert_eq!(count(PAGE_4K), 1 + 3 + 2 + 1024 + 1);
    // Merged, the listing is the cases back, in guest order.
    let merged: Vec<(u64, u64, u64)> = arena
        .mappings(&t1)
        .merged()
        .map(|m| (m.guest, m.host, m.len))
        .collect();
    let mut want: Vec<(u64, u64, u64)> = cases.to_vec();
    want.sort();
    assert_eq!(merged, want);
    assert!(arena.mappings(&t2).next().is_none());
    // Above 2^52, the walk uses the low 52 bits, as QEMU's does.
    assert_eq!(
        arena.translate(&t1, GUEST_LIMIT | 0x1008),
        Some((0x8000_0008, RW))
    );
}

#[test]
fn access_sets() {
    let mut mem = buf(0x20_0000);
    let (mut arena, table, t1, _) = setup(&mut mem);
    let sets = [
        (Access::READ, Access::READ),
        (Access::WRITE, RW),
        (RW, RW),
        (Access::EXECUTE, Access::EXECUTE),
        (
            Access::READ | Access::EXECUTE,
            Access::READ | Access::EXECUTE,
        ),
        (Access::WRITE | Access::EXECUTE, RW | Access::EXECUTE),
        (RW | Access::CACHE_INHIBITED, RW | Access::CACHE_INHIBITED),
    ];
    for (i, (asked, got)) in sets.into_iter().enumerate() {
        let g = (i as u64) * 2 * PAGE_2M;
        arena
            .map(&t1, g, 0x1_0000_0000 + g, PAGE_2M, asked)
            .unwrap();
        check_range(&arena, &table, 1, &t1, g, 0x1_0000_0000 + g, PAGE_2M, got);
    }
    let g = 0x4000_0000;
    assert_eq!(
        arena.map(&t1, g, 0, PAGE_4K, Access::empty()),
        Err(MapError::NoAccess)
    );
    assert_eq!(
        arena.map(&t1, g, 0, PAGE_4K, Access::CACHE_INHIBITED),
        Err(MapError::NoAccess)
    );
    assert_eq!(
        arena.map(
            &t1,
            g,
            0,
            PAGE_4K,
            Access::EXECUTE | Access::CACHE_INHIBITED
        ),
        Err(MapError::ExecuteCacheInhibited)
    );
    assert_eq!(
        arena.map(&t1, g, 0, PAGE_4K, Access::from_bits_retain(0x31)),
        Err(MapError::UnknownAccessBits { bits: 0x30 })
    );
}

#[test]
fn argument_refusals() {
    let mut mem = buf(0x20_0000);
    let (mut arena, _, t1, _) = setup(&mut mem);
    let used = arena.used();
    let r = Access::READ;
    assert_eq!(arena.map(&t1, 0, 0, 0, r), Err(MapError::ZeroLength));
    for (g, h, l) in [(0x800, 0, PAGE_4K), (0, 0x10, PAGE_4K), (0, 0, 0x1001)] {
        assert_eq!(
            arena.map(&t1, g, h, l, r),
            Err(MapError::Unaligned {
                guest: g,
                host: h,
                len: l
            })
        );
    }
    let top = 0xFFFF_FFFF_FFFF_F000;
    assert_eq!(
        arena.map(&t1, top, 0, 0x2000, r),
        Err(MapError::Overflow {
            addr: top,
            len: 0x2000
        })
    );
    assert_eq!(
        arena.map(&t1, 0, top, 0x2000, r),
        Err(MapError::Overflow {
            addr: top,
            len: 0x2000
        })
    );
    assert_eq!(
        arena.map(&t1, GUEST_LIMIT - PAGE_4K, 0, 0x2000, r),
        Err(MapError::GuestOutOfRange {
            guest: GUEST_LIMIT - PAGE_4K,
            len: 0x2000
        })
    );
    assert_eq!(
        arena.map(&t1, GUEST_LIMIT, 0, PAGE_4K, r),
        Err(MapError::GuestOutOfRange {
            guest: GUEST_LIMIT,
            len: PAGE_4K
        })
    );
    assert_eq!(
        arena.map(&t1, 0, HOST_LIMIT, PAGE_4K, r),
        Err(MapError::HostOutOfRange {
            host: HOST_LIMIT,
            len: PAGE_4K
        })
    );
    // The host range may not touch the arena (its own tables), not even its unused end.
    for h in [BASE - PAGE_4K, BASE, BASE + 0x1F_F000] {
        assert_eq!(
            arena.map(&t1, 0, h, 0x2000, r),
            Err(MapError::CoversArena {
                host: h,
                len: 0x2000
            })
        );
    }
    arena.map(&t1, 0, BASE - 0x2000, 0x2000, r).unwrap();
    arena.map(&t1, 0x2000, BASE + 0x20_0000, 0x2000, r).unwrap();
    // Trees of no arena, or not at a root.
    for root in [0x1_0000, BASE + 0x1000, BASE + 0x10_0000] {
        assert_eq!(
            arena.map(&Tree { root }, 0x10_0000, 0, PAGE_4K, r),
            Err(MapError::ForeignTree { root })
        );
    }
    assert!(arena.used() > used); // the two good maps made directories
                                  // Every message is specific.
    let msg = MapError::AlreadyMapped { guest: 0x2000 }.to_string();
    assert_eq!(msg, "refused to map: guest 0x2000 is already mapped");
    assert!(MapError::OutOfMemory(ArenaError::Exhausted {
        requested: 0x1000,
        available: 0
    })
    .to_string()
    .contains("0x1000 bytes needed"));
}

#[test]
fn overlap_refusals() {
    let mut mem = buf(0x40_0000);
    let (mut arena, table, t1, t2) = setup(&mut mem);
    let r = Access::READ;
    // A 2 MiB leaf, then 4 KiB pages inside it and ranges crossing into it.
    arena
        .map(&t1, 0x40_0000, 0x1_0040_0000, PAGE_2M, r)
        .unwrap();
    for (g, len, first) in [
        (0x40_0000, PAGE_4K, 0x40_0000),
        (0x5F_F000, PAGE_4K, 0x5F_F000),
        (0x3F_F000, 0x2000, 0x40_0000),
        (0x20_0000, 2 * PAGE_2M, 0x40_0000),
        (0, PAGE_1G, 0x40_0000),
    ] {
        let before = arena.used();
        assert_eq!(
            arena.map(&t1, g, 0x2_0000_0000 + (g & (PAGE_1G - 1)), len, r),
            Err(MapError::AlreadyMapped { guest: first }),
            "{g:#x}+{len:#x}"
        );
        assert_eq!(arena.used(), before);
    }
    // 0x3F_F000 itself stayed unmapped (checked before writing).
    assert_eq!(check_at(&arena, &table, 1, &t1, 0x3F_F000), None);
    // The other way: 4 KiB pages, then 2 MiB and 1 GiB leaves over them.
    arena
        .map(&t1, 0x4000_3000, 0x3_0000_3000, PAGE_4K, r)
        .unwrap();
    for (g, len) in [(0x4000_0000, PAGE_2M), (0x4000_0000, PAGE_1G)] {
        assert_eq!(
            arena.map(&t1, g, 0x4_0000_0000, len, r),
            Err(MapError::AlreadyMapped { guest: 0x4000_3000 })
        );
    }
    // The same page is free in the other partition's tree.
    arena
        .map(&t2, 0x4000_0000, 0x4_0000_0000, PAGE_1G, r)
        .unwrap();
    check_range(
        &arena,
        &table,
        2,
        &t2,
        0x4000_0000,
        0x4_0000_0000,
        PAGE_1G,
        r,
    );
    check_range(&arena, &table, 1, &t1, 0x40_0000, 0x1_0040_0000, PAGE_2M, r);
    check_range(
        &arena,
        &table,
        1,
        &t1,
        0x4000_3000,
        0x3_0000_3000,
        PAGE_4K,
        r,
    );
    // Right next to existing mappings is fine.
    arena
        .map(&t1, 0x3F_F000, 0x5_0000_0000, PAGE_4K, r)
        .unwrap();
    arena
        .map(&t1, 0x60_0000, 0x5_0060_0000, PAGE_2M, r)
        .unwrap();
}

#[test]
fn arena_refusals_and_exhaustion() {
    let mut mem = buf(0x1_0000);
    assert_eq!(
        Arena::new(&mut mem, 0x800).err(),
        Some(ArenaError::Misaligned { base: 0x800 })
    );
    assert_eq!(
        Arena::new(&mut mem, TABLE_LIMIT - 0x1000).err(),
        Some(ArenaError::OutOfRange {
            base: TABLE_LIMIT - 0x1000,
            len: 0x1_0000
        })
    );
    // The root is aligned in real addresses: at base 0x1000 it starts at 0x1_0000, past the end.
    let mut arena = Arena::new(&mut mem, 0x1000).unwrap();
    assert_eq!(
        arena.new_tree(),
        Err(ArenaError::Exhausted {
            requested: 0x1_F000,
            available: 0x1_0000
        })
    );
    assert_eq!(arena.used(), 0);

    // A root and two lower directories: room for one 4 KiB page's path but one level short.
    let mut mem = buf(0x1_2000);
    let mut arena = Arena::new(&mut mem, 0x10_0000).unwrap();
    let tree = arena.new_tree().unwrap();
    let r = Access::READ;
    assert_eq!(
        arena.map(&tree, 0, 0, PAGE_4K, r),
        Err(MapError::OutOfMemory(ArenaError::Exhausted {
            requested: 0x3000,
            available: 0x2000
        }))
    );
    assert_eq!(arena.used(), 0x1_0000); // nothing was written
    assert!(arena.mappings(&tree).next().is_none());
    // A 1 GiB leaf needs one directory; a 2 MiB one two.
    arena.map(&tree, 0, 0x1_0000_0000, PAGE_1G, r).unwrap();
    arena
        .map(&tree, PAGE_1G, 0x1_4000_0000, PAGE_2M, r)
        .unwrap();
    assert_eq!(arena.used(), 0x1_2000);
    assert_eq!(
        arena.map(&tree, PAGE_1G + PAGE_2M, 0x4000_0000, PAGE_4K, r),
        Err(MapError::OutOfMemory(ArenaError::Exhausted {
            requested: 0x1000,
            available: 0
        }))
    );
    // What still fits: another 2 MiB leaf in the same directory.
    arena
        .map(&tree, PAGE_1G + PAGE_2M, 0x8000_0000, PAGE_2M, r)
        .unwrap();
    // The root's 64 KiB alignment counts in what it needs: 0x12_0000 is the next root address.
    assert_eq!(
        arena.new_tree(),
        Err(ArenaError::Exhausted {
            requested: 0x1_E000,
            available: 0
        })
    );
    assert_eq!(
        arena.new_partition_table(),
        Err(ArenaError::Exhausted {
            requested: 0x1000,
            available: 0
        })
    );
    // Directories come zeroed from a dirty buffer: the listing is exactly the three leaves.
    let listed: Vec<(u64, u64)> = arena.mappings(&tree).map(|m| (m.guest, m.len)).collect();
    assert_eq!(
        listed,
        [
            (0, PAGE_1G),
            (PAGE_1G, PAGE_2M),
            (PAGE_1G + PAGE_2M, PAGE_2M)
        ]
    );
}

#[test]
fn rewind_gives_back_what_came_after_the_mark() {
    let mut mem = buf(0x8_0000);
    let mut arena = Arena::new(&mut mem, BASE).unwrap();
    let table = arena.new_partition_table().unwrap();
    let kept = arena.new_tree().unwrap();
    arena.map(&kept, 0, 0x1000_0000, 0x1000, RW).unwrap();
    table.set(&mut arena, 1, &kept).unwrap();
    let mark = arena.used();
    let gone = arena.new_tree().unwrap();
    arena.map(&gone, 0x2000, 0x2000_0000, 0x1000, RW).unwrap();
    assert!(arena.used() > mark);
    // Beyond what is handed out: refused, nothing changes.
    let used = arena.used();
    assert_eq!(
        arena.rewind(used + 1),
        Err(ArenaError::Rewind { to: used + 1, used })
    );
    assert_eq!(arena.used(), used);
    arena.rewind(mark).unwrap();
    assert_eq!(arena.used(), mark);
    // Everything after the mark is zero again; the tree before it still translates.
    let off = usize::try_from(mark).unwrap();
    assert!(arena.bytes()[off..].iter().all(|&b| b == 0xA5 || b == 0));
    assert!(arena.bytes()[off..used as usize].iter().all(|&b| b == 0));
    assert_eq!(arena.translate(&kept, 0x10), Some((0x1000_0010, RW)));
    // The same space is handed out again, zeroed.
    let again = arena.new_tree().unwrap();
    assert_eq!(again.root(), gone.root());
    assert_eq!(arena.translate(&again, 0x2000), None);
}

#[test]
fn corrupt_bytes_never_panic() {
    // Arbitrary bytes as a tree: translate, the listing and map neither panic nor loop.
    let mut seed = 0x1234_5678_9ABC_DEF0u64;
    for round in 0..6 {
        let mut mem = buf(0x3_0000);
        let mut arena = Arena::new(&mut mem, 0x10_0000).unwrap();
        let tree = arena.new_tree().unwrap();
        let table = arena.new_partition_table().unwrap();
        // Fill the root and table with valid-looking entries pointing around the arena.
        for i in 0..(0x1_1000 / 8) {
            let v = xorshift(&mut seed);
            let v = match round % 3 {
                0 => v,
                1 => PTE_V | (v & (0x1_FF00 | 0x1F)) | 0x10_0000,
                _ => PTE_V | (v & (PTE_L | PTE_RPN | 0x1FF)),
            };
            let _ = arena.write(0x10_0000 + i * 8, v);
        }
        for _ in 0..200 {
            let g = xorshift(&mut seed);
            let _ = arena.translate(&tree, g);
            let _ = arena.translate_partition(table.ptcr() | (g & 0x1F), (g >> 40) as u32, g);
            let _ = arena.map(&tree, g & 0xF_FFFF_F000, 0, PAGE_4K, Access::READ);
        }
        assert!(arena.mappings(&tree).take(1000).count() <= 1000);
    }
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// A reference model: the mapped ranges, as asked for.
#[derive(Default)]
struct Model {
    ranges: Vec<(u64, u64, u64, Access)>,
}

impl Model {
    fn lookup(&self, g: u64) -> Option<(u64, Access)> {
        self.ranges
            .iter()
            .find(|&&(rg, _, len, _)| g >= rg && g - rg < len)
            .map(|&(rg, rh, _, a)| (rh + (g - rg), a))
    }
    fn first_overlap(&self, g: u64, len: u64) -> Option<u64> {
        self.ranges
            .iter()
            .filter(|&&(rg, _, rl, _)| rg < g + len && g < rg + rl)
            .map(|&(rg, _, _, _)| rg.max(g))
            .min()
    }
}

fn normalized(a: Access) -> Access {
    if a.contains(Access::WRITE) {
        a | Access::READ
    } else {
        a
    }
}

#[test]
fn fuzz_against_model() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let accesses = [
        Access::READ,
        RW,
        Access::EXECUTE,
        Access::READ | Access::EXECUTE,
        Access::READ | Access::CACHE_INHIBITED,
        Access::WRITE | Access::CACHE_INHIBITED,
    ];
    for run in 0..4 {
        // Small arenas run out part-way; larger ones don't.
        let size = [0x4_0000, 0x20_0000, 0x80_0000, 0x80_0000][run];
        let mut mem = buf(size);
        let (mut arena, table, t1, t2) = setup(&mut mem);
        let mut models = [Model::default(), Model::default()];
        let (mut ok, mut overlap, mut oom) = (0, 0, 0);
        for _ in 0..2500 {
            let r = xorshift(&mut seed);
            let which = (r & 1) as usize;
            let tree = [t1, t2][which];
            // Guests in the first 8 GiB (plus a far window), hosts 2 MiB or 4 KiB aligned so
            // large leaves happen.
            let (g, h, len) = match (r >> 1) % 8 {
                0 => (
                    ((r >> 8) % 8) * PAGE_1G,
                    ((r >> 16) % 64) * PAGE_1G + 0x100_0000_0000,
                    PAGE_1G * (1 + (r >> 24) % 2),
                ),
                1..=3 => (
                    ((r >> 8) % 4096) * PAGE_2M,
                    ((r >> 20) % 4096) * PAGE_2M + 0x200_0000_0000,
                    PAGE_2M * (1 + (r >> 32) % 3) + PAGE_4K * ((r >> 40) % 3),
                ),
                4 => (
                    0xF_F000_0000_0000 + ((r >> 8) % 512) * PAGE_4K,
                    ((r >> 20) % 4096) * PAGE_4K,
                    PAGE_4K * (1 + (r >> 40) % 8),
                ),
                _ => (
                    ((r >> 8) % 0x20_0000) * PAGE_4K,
                    ((r >> 30) % 0x10_0000) * PAGE_4K + 0x300_0000_0000,
                    PAGE_4K * (1 + (r >> 52) % 16),
                ),
            };
            let a = accesses[((r >> 60) % accesses.len() as u64) as usize];
            let used = arena.used();
            let model = &mut models[which];
            match arena.map(&tree, g, h, len, a) {
                Ok(()) => {
                    assert_eq!(model.first_overlap(g, len), None);
                    model.ranges.push((g, h, len, normalized(a)));
                    ok += 1;
                }
                Err(MapError::AlreadyMapped { guest }) => {
                    assert_eq!(model.first_overlap(g, len), Some(guest), "{g:#x}+{len:#x}");
                    assert_eq!(arena.used(), used);
                    overlap += 1;
                }
                Err(MapError::OutOfMemory(_)) => {
                    assert_eq!(arena.used(), used);
                    oom += 1;
                }
                Err(e) => panic!("unexpected {e}"),
            }
            // Spot checks as we go.
            let probe = g + (r >> 13) % len;
            for lpid in [1u32, 2] {
                let i = lpid as usize - 1;
                let tree = [t1, t2][i];
                for p in [probe, g, g + len - 1, g.wrapping_sub(1), g + len] {
                    assert_eq!(
                        check_at(&arena, &table, lpid, &tree, p),
                        models[i].lookup(p),
                        "lpid {lpid} at {p:#x}"
                    );
                }
            }
        }
        println!("run {run}: {ok} mapped, {overlap} overlaps, {oom} out of memory");
        assert!(ok > 50 && overlap > 50, "{ok} {overlap} {oom}");
        if run == 0 {
            assert!(oom > 0);
        }
        // The listing is exactly the model, per tree.
        for (i, tree) in [t1, t2].iter().enumerate() {
            let mut want: Vec<(u64, u64, u64, Access)> = models[i].ranges.clone();
            want.sort_by_key(|m| m.0);
            let mut got = Vec::new();
            let mut prev_end = 0;
            for m in arena.mappings(tree) {
                assert!(m.guest >= prev_end);
                prev_end = m.guest + m.len;
                assert_eq!(
                    check_at(&arena, &table, i as u32 + 1, tree, m.guest),
                    Some((m.host, m.access))
                );
                got.push(m);
            }
            // Every listed byte is in the model with the same host and access, and the total
            // lengths agree.
            for m in &got {
                assert_eq!(models[i].lookup(m.guest), Some((m.host, m.access)));
                assert_eq!(
                    models[i].lookup(m.guest + m.len - 1),
                    Some((m.host + m.len - 1, m.access))
                );
            }
            let total: u64 = got.iter().map(|m| m.len).sum();
            assert_eq!(total, want.iter().map(|m| m.2).sum::<u64>());
            let merged: u64 = arena.mappings(tree).merged().map(|m| m.len).sum();
            assert_eq!(merged, total);
            assert!(arena.mappings(tree).merged().count() <= want.len());
        }
    }
}

#[test]
fn error_messages_are_distinct() {
    let errs = [
        MapError::ZeroLength,
        MapError::Unaligned {
            guest: 1,
            host: 2,
            len: 3,
        },
        MapError::Overflow { addr: 1, len: 2 },
        MapError::GuestOutOfRange { guest: 1, len: 2 },
        MapError::HostOutOfRange { host: 1, len: 2 },
        MapError::CoversArena { host: 1, len: 2 },
        MapError::NoAccess,
        MapError::UnknownAccessBits { bits: 0x10 },
        MapError::ExecuteCacheInhibited,
        MapError::AlreadyMapped { guest: 1 },
        MapError::ForeignTree { root: 1 },
        MapError::OutOfMemory(ArenaError::Misaligned { base: 1 }),
        MapError::Corrupt { entry: 1 },
    ];
    let table = [
        TableError::ReservedLpid,
        TableError::LpidOutOfRange { lpid: 300 },
        TableError::ForeignTable { base: 1 },
        TableError::ForeignTree { root: 1 },
    ];
    let arena = [
        ArenaError::Misaligned { base: 1 },
        ArenaError::OutOfRange { base: 1, len: 2 },
        ArenaError::Exhausted {
            requested: 1,
            available: 2,
        },
    ];
    for mut msgs in [
        errs.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        table.iter().map(|e| e.to_string()).collect(),
        arena.iter().map(|e| e.to_string()).collect(),
    ] {
        let n = msgs.len();
        msgs.sort();
        msgs.dedup();
        assert_eq!(msgs.len(), n);
    }
}
