//! What the image learns from the device tree skiboot hands it (portable, host-tested
//! against a dump of QEMU's powernv9 tree in `crates/dtb/testdata/`).
//!
//! - memory ranges (`/memory@*` `reg`),
//! - the LPC 16550 UARTs, their I/O ports translated through every `ranges` up to a CPU
//!   physical (MMIO) address, and whether skiboot `reserved` them (its own console),
//! - the timebase frequency, `/chosen/bootargs`, the initrd and ESM blob ranges.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
#![deny(clippy::panic, clippy::arithmetic_side_effects)]
#![deny(clippy::cast_possible_truncation)]
#![forbid(unsafe_code)]

use crate::dtb::{Dtb, Node};
use heapless::Vec;

/// Most memory ranges / UARTs recorded.
pub const MAX_RANGES: usize = 8;
/// Most root `compatible` strings recorded.
pub const MAX_COMPATIBLE: usize = 4;

/// One 16550 found on the LPC bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UartInfo {
    /// LPC I/O port (the `reg` address within I/O space).
    pub io_port: u64,
    /// Translated CPU physical address of register 0.
    pub mmio: u64,
    /// `status = "reserved"`: skiboot took it as its console.
    pub reserved: bool,
}

/// Everything the boot path reads from the tree.
#[derive(Clone, Debug, Default)]
pub struct BootInfo<'a> {
    /// `(base, size)` of each RAM range.
    pub memory: Vec<(u64, u64), MAX_RANGES>,
    /// The ns16550 UARTs found, in tree order.
    pub uarts: Vec<UartInfo, MAX_RANGES>,
    /// Timebase ticks per second (`/cpus/*/timebase-frequency`), if given.
    pub timebase_hz: Option<u64>,
    /// `/chosen/bootargs` (empty when absent).
    pub bootargs: &'a str,
    /// `[start, end)` of the initrd (`/chosen` `linux,initrd-start`/`-end`).
    pub initrd: Option<(u64, u64)>,
    /// `[start, end)` of an ESM blob (`/chosen` `linux,esm-blob-start`/`-end`).
    pub esm_blob: Option<(u64, u64)>,
    /// The tree's `model`.
    pub model: &'a str,
    /// The root's `compatible` strings, in order (the first [`MAX_COMPATIBLE`]), e.g.
    /// `qemu,powernv9`, `ibm,powernv`.
    pub compatible: Vec<&'a str, MAX_COMPATIBLE>,
}

impl<'a> BootInfo<'a> {
    /// Reads the tree. Never fails: what is absent or malformed is left out.
    pub fn from_dtb(dtb: &Dtb<'a>) -> Self {
        let mut info = BootInfo::default();
        let root = dtb.root();
        info.model = root.property_str("model").unwrap_or("");
        for c in root.property_strings("compatible") {
            if info.compatible.push(c).is_err() {
                break;
            }
        }
        let (ra, rs) = root.child_cells();
        for mem in root.children().filter(|n| n.base_name() == "memory") {
            if let Ok(regs) = mem.property_pairs("reg", ra, rs) {
                for r in regs {
                    let _ = info.memory.push(r);
                }
            }
        }
        if let Some(cpus) = dtb.find_node("/cpus") {
            info.timebase_hz = cpus
                .children()
                .filter_map(|c| c.property_number("timebase-frequency"))
                .next();
        }
        if let Some(chosen) = dtb.find_node("/chosen") {
            info.bootargs = chosen.property_str("bootargs").unwrap_or("");
            info.initrd = pair(&chosen, "linux,initrd-start", "linux,initrd-end");
            info.esm_blob = pair(&chosen, "linux,esm-blob-start", "linux,esm-blob-end");
        }
        for node in dtb.nodes_compatible("ns16550") {
            let Some(parent) = dtb.parent_of(&node) else {
                continue;
            };
            let Ok(mut regs) = node.reg_with_parent(&parent) else {
                continue;
            };
            let Some((addr, _)) = regs.next() else {
                continue;
            };
            let (pac, _) = parent.child_cells();
            if let Some(mmio) = translate(dtb, &parent, addr as u128, pac) {
                let reserved = node.property_str("status") == Some("reserved");
                let _ = info.uarts.push(UartInfo {
                    io_port: addr & 0xffff_ffff,
                    mmio,
                    reserved,
                });
            }
        }
        info
    }

    /// The console UART: the one skiboot reserved as its console (a human reads it), else none.
    pub fn console_uart(&self) -> Option<UartInfo> {
        self.uarts.iter().copied().find(|u| u.reserved)
    }

    /// The TPM link UART: the first 16550 skiboot did not reserve.
    pub fn tpm_uart(&self) -> Option<UartInfo> {
        self.uarts.iter().copied().find(|u| !u.reserved)
    }
}

fn pair(node: &Node<'_>, a: &str, b: &str) -> Option<(u64, u64)> {
    let s = node.property_number(a)?;
    let e = node.property_number(b)?;
    (e >= s).then_some((s, e))
}

/// Reads `n` (<= 4) big-endian cells from the front of `d` as one number.
fn cells(d: &[u8], n: usize) -> Option<u128> {
    if n > 4 {
        return None;
    }
    let mut v: u128 = 0;
    for c in d.chunks_exact(4).take(n) {
        let c: [u8; 4] = c.try_into().ok()?;
        v = v.checked_shl(32)? | u128::from(u32::from_be_bytes(c));
    }
    (d.len() / 4 >= n).then_some(v)
}

/// Translates `addr` (in the address space of `bus`'s children, `acells` cells wide) up
/// through each ancestor's `ranges` to a root (CPU physical) address. An absent `ranges`
/// ends the walk untranslatable; an empty one is the identity.
fn translate(dtb: &Dtb<'_>, bus: &Node<'_>, mut addr: u128, mut acells: u32) -> Option<u64> {
    let mut cur = *bus;
    while let Some(parent) = dtb.parent_of(&cur) {
        let ranges = cur.property("ranges")?;
        let (pac, _) = parent.child_cells();
        let (_, sc) = cur.child_cells();
        if !ranges.is_empty() {
            let (ca, pa, sz) = (acells as usize, pac as usize, sc as usize);
            if ca > 4 || pa > 4 || sz > 4 {
                return None;
            }
            // At most 12 cells of 4 bytes: none of these can wrap (checked anyway).
            let entry = ca.checked_add(pa)?.checked_add(sz)?.checked_mul(4)?;
            if entry == 0 {
                return None; // all three cell counts 0: no entry can be read (and chunks of 0 panic)
            }
            let mut found = None;
            for e in ranges.chunks_exact(entry) {
                let child = cells(e, ca)?;
                let paddr = cells(e.get(ca.checked_mul(4)?..)?, pa)?;
                let size = cells(e.get(ca.checked_add(pa)?.checked_mul(4)?..)?, sz)?;
                if let Some(off) = addr.checked_sub(child).filter(|off| *off < size) {
                    found = Some(paddr.checked_add(off)?);
                    break;
                }
            }
            addr = found?;
        }
        acells = pac;
        cur = parent;
    }
    u64::try_from(addr).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const QEMU_DTB: &[u8] = include_bytes!("../../crates/dtb/testdata/qemu-powernv9.dtb");

    #[test]
    fn reads_qemu_powernv9_tree() {
        let dtb = Dtb::new(QEMU_DTB).expect("fixture parses");
        let info = BootInfo::from_dtb(&dtb);
        assert_eq!(info.timebase_hz, Some(512_000_000));
        assert_eq!(&info.compatible[..], ["qemu,powernv9", "ibm,powernv"]);
        assert!(!info.memory.is_empty());
        assert_eq!(info.memory[0].0, 0);
        let ports: std::vec::Vec<_> = info.uarts.iter().map(|u| (u.io_port, u.mmio)).collect();
        // The platform notes measured I/O port P at MMIO 0x0006_0300_D001_0000 + P.
        assert!(
            ports.contains(&(0x3f8, 0x0006_0300_d001_03f8)),
            "{ports:x?}"
        );
        assert!(
            ports.contains(&(0x2f8, 0x0006_0300_d001_02f8)),
            "{ports:x?}"
        );
    }

    #[test]
    fn translate_rejects_address_outside_every_range() {
        let dtb = Dtb::new(QEMU_DTB).unwrap();
        let lpc = dtb
            .nodes_compatible("ibm,power9-lpc")
            .next()
            .expect("lpc node");
        // I/O space (1) offset 0x20000 is past the 64 KiB window.
        assert_eq!(translate(&dtb, &lpc, (1u128 << 32) | 0x20000, 2), None);
        // Space 2 is not mapped at all.
        assert_eq!(translate(&dtb, &lpc, 2u128 << 32, 2), None);
    }

    /// A hostile tree whose bus and root both declare 0 address and 0 size cells but give
    /// the bus a non-empty `ranges`: no entry can be read, and nothing panics (it did: a
    /// 0-byte chunk size).
    #[test]
    fn zero_cell_ranges_are_untranslatable_not_a_panic() {
        let mut w = dtb::writer::FdtWriter::new();
        w.begin_node("")
            .property_u32("#address-cells", 0)
            .property_u32("#size-cells", 0);
        w.begin_node("bus")
            .property_u32("#address-cells", 0)
            .property_u32("#size-cells", 0)
            .property("ranges", &[0, 0, 0, 0])
            .end_node();
        w.end_node();
        let blob = w.finish().unwrap();
        let dtb = Dtb::new(&blob).unwrap();
        let bus = dtb.find_node("/bus").unwrap();
        assert_eq!(translate(&dtb, &bus, 0, 0), None);
    }
}
