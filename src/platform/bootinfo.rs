//! What the image learns from the device tree skiboot hands it (portable, host-tested
//! against a dump of QEMU's powernv9 tree in `crates/dtb/testdata/`).
//!
//! - memory ranges (`/memory@*` `reg`),
//! - the LPC 16550 UARTs, their I/O ports translated through every `ranges` up to a CPU
//!   physical (MMIO) address, and whether skiboot `reserved` them (its own console),
//! - the timebase frequency, `/chosen/bootargs`, the initrd and ESM blob ranges,
//! - skiboot's I2C buses (`ibm,opal-i2c` nodes and their `ibm,opal-id`) and a Nuvoton TPM
//!   on one of them (`tpm@<addr>`, `nuvoton,npct650` or `nuvoton,npct75x`), which decides
//!   the TPM link ([`BootInfo::tpm_link`]).
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

/// One I2C bus skiboot offers through OPAL_I2C_REQUEST (an `ibm,opal-i2c` node).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct I2cBusInfo<'a> {
    /// Its `ibm,opal-id`: the bus id OPAL_I2C_REQUEST takes.
    pub opal_id: u32,
    /// Its node's name (`i2c-bus@<port>`).
    pub name: &'a str,
    /// Its engine's node name (`i2cm@<reg>`), when the parent is an I2C master.
    pub engine: &'a str,
}

/// Which register map a Nuvoton TPM on I2C speaks (skiboot `libstb/drivers/tpm_i2c_nuvoton.c`
/// knows both): `nuvoton,npct650` is [`I2cTpmMap::Npct650`], `nuvoton,npct75x` the TCG I2C
/// interface, [`I2cTpmMap::TcgI2c`].
pub use crate::tpm_i2c::RegisterMap as I2cTpmMap;

/// A TPM node under an I2C bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct I2cTpmInfo<'a> {
    /// The bus it is on (`ibm,opal-id` of its parent).
    pub bus: u32,
    /// Its 7-bit address (`reg`).
    pub addr: u16,
    /// Its register map, from `compatible`.
    pub map: I2cTpmMap,
    /// The compatible string that chose the map.
    pub compatible: &'a str,
}

/// The TPM link the tree describes, in the order the image prefers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TpmLink<'a> {
    /// A Nuvoton TPM on an OPAL I2C bus (a POWER9 OpenPOWER system).
    I2c(I2cTpmInfo<'a>),
    /// The launcher's extra 16550 (QEMU, swtpm behind the relay).
    Uart(UartInfo),
    /// Neither.
    None,
}

/// Most I2C buses recorded (QEMU 10.0 powernv9 has 19).
pub const MAX_I2C_BUSES: usize = 32;

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
    /// skiboot's I2C buses, in tree order (the first [`MAX_I2C_BUSES`]).
    pub i2c_buses: Vec<I2cBusInfo<'a>, MAX_I2C_BUSES>,
    /// The first Nuvoton TPM node on one of them, if any.
    pub i2c_tpm: Option<I2cTpmInfo<'a>>,
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
        for bus in dtb.nodes_compatible("ibm,opal-i2c") {
            let Some(opal_id) = bus.property_u32("ibm,opal-id") else {
                continue;
            };
            let engine = dtb.parent_of(&bus).map_or("", |e| e.name());
            let _ = info.i2c_buses.push(I2cBusInfo {
                opal_id,
                name: bus.name(),
                engine,
            });
            if info.i2c_tpm.is_some() {
                continue;
            }
            info.i2c_tpm = bus.children().find_map(|t| i2c_tpm(&t, opal_id));
        }
        info
    }

    /// The TPM link to use: a Nuvoton TPM on I2C if the tree has one, else the TPM UART, else
    /// none.
    pub fn tpm_link(&self) -> TpmLink<'a> {
        match (self.i2c_tpm, self.tpm_uart()) {
            (Some(t), _) => TpmLink::I2c(t),
            (None, Some(u)) => TpmLink::Uart(u),
            (None, None) => TpmLink::None,
        }
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

/// The self-test image's bootarg `tpm-i2c=BUS,ADDR[,MAP]` (BUS and ADDR decimal or `0x` hex,
/// MAP `npct650`, the default, or `tcg`): an I2C TPM the device tree does not name, for
/// driving the I2C link where no TPM node exists (QEMU). Each refusal names the field and why.
pub fn parse_tpm_i2c(v: &str) -> Result<I2cTpmInfo<'static>, alloc::string::String> {
    use alloc::format;
    let mut f = v.split(',');
    let mut number = |what: &str| {
        f.next()
            .and_then(crate::bootargs::parse_number)
            .ok_or_else(|| format!("tpm-i2c={v}: {what} is missing or not a number"))
    };
    let bus = number("BUS")?;
    let addr = number("ADDR")?;
    let bus =
        u32::try_from(bus).map_err(|_| format!("tpm-i2c={v}: BUS {bus:#x} exceeds 32 bits"))?;
    let addr = match u16::try_from(addr) {
        Ok(a) if a < 0x80 => a,
        _ => {
            return Err(format!(
                "tpm-i2c={v}: ADDR {addr:#x} is not a 7-bit address"
            ))
        }
    };
    let (map, compatible) = match f.next() {
        None | Some("npct650") => (I2cTpmMap::Npct650, "nuvoton,npct650"),
        Some("tcg") => (I2cTpmMap::TcgI2c, "nuvoton,npct75x"),
        Some(m) => return Err(format!("tpm-i2c={v}: MAP {m:?} is neither npct650 nor tcg")),
    };
    if f.next().is_some() {
        return Err(format!("tpm-i2c={v}: more than BUS,ADDR,MAP"));
    }
    Ok(I2cTpmInfo {
        bus,
        addr,
        map,
        compatible,
    })
}

/// `node` as a Nuvoton TPM on bus `bus`: a `tpm@` node with a compatible this image knows and
/// a 7-bit `reg`.
fn i2c_tpm<'a>(node: &Node<'a>, bus: u32) -> Option<I2cTpmInfo<'a>> {
    if node.base_name() != "tpm" {
        return None;
    }
    let (map, compatible) = [
        ("nuvoton,npct650", I2cTpmMap::Npct650),
        ("nuvoton,npct75x", I2cTpmMap::TcgI2c),
    ]
    .into_iter()
    .find_map(|(c, m)| node.is_compatible(c).then_some((m, c)))?;
    let addr = node.property_u32("reg").filter(|a| *a < 0x80)?;
    Some(I2cTpmInfo {
        bus,
        addr: u16::try_from(addr).ok()?,
        map,
        compatible,
    })
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
    fn the_tpm_i2c_bootarg_names_a_bus_an_address_and_a_map_or_says_what_is_wrong() {
        let t = parse_tpm_i2c("30,0x57").expect("default map");
        assert_eq!((t.bus, t.addr, t.map), (30, 0x57, I2cTpmMap::Npct650));
        assert_eq!(t.compatible, "nuvoton,npct650");
        let t = parse_tpm_i2c("0x1e,87,tcg").expect("tcg map");
        assert_eq!((t.bus, t.addr, t.map), (30, 87, I2cTpmMap::TcgI2c));
        assert_eq!(t.compatible, "nuvoton,npct75x");
        for (v, why) in [
            ("", "BUS is missing or not a number"),
            ("30", "ADDR is missing or not a number"),
            ("x,0x57", "BUS is missing or not a number"),
            ("0x100000000,0x57", "BUS 0x100000000 exceeds 32 bits"),
            ("30,0x80", "ADDR 0x80 is not a 7-bit address"),
            ("30,0x10000", "ADDR 0x10000 is not a 7-bit address"),
            (
                "30,0x57,npct75x",
                "MAP \"npct75x\" is neither npct650 nor tcg",
            ),
            ("30,0x57,tcg,1", "more than BUS,ADDR,MAP"),
        ] {
            assert_eq!(parse_tpm_i2c(v), Err(format!("tpm-i2c={v}: {why}")), "{v}");
        }
    }

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

    /// A Witherspoon-like tree (AC922: `/xscom@603fc00000000/i2cm@a2000/i2c-bus@0/tpm@57`,
    /// `nuvoton,npct650`), built with the FDT writer: two engines, the TPM on the second
    /// engine's first bus; `map` and `tpm_compat` vary it.
    fn opal_i2c_tree(tpm_compat: Option<&str>) -> std::vec::Vec<u8> {
        let mut w = dtb::writer::FdtWriter::new();
        w.begin_node("")
            .property_u32("#address-cells", 2)
            .property_u32("#size-cells", 2)
            .begin_node("xscom@603fc00000000")
            .property_u32("#address-cells", 1)
            .property_u32("#size-cells", 1);
        let mut id: u32 = 0;
        for engine in ["i2cm@a0000", "i2cm@a2000"] {
            w.begin_node(engine)
                .property_strings("compatible", &["ibm,power8-i2cm", "ibm,power9-i2cm"])
                .property_u32("#address-cells", 1)
                .property_u32("#size-cells", 0);
            for port in 0..2u32 {
                id = id.checked_add(1).unwrap();
                w.begin_node(&format!("i2c-bus@{port}"))
                    .property_strings("compatible", &["ibm,opal-i2c", "ibm,power9-i2c-port"])
                    .property_u32("reg", port)
                    .property_u32("ibm,opal-id", id)
                    .property_u32("#address-cells", 1)
                    .property_u32("#size-cells", 0);
                if let (Some(c), "i2cm@a2000", 0) = (tpm_compat, engine, port) {
                    w.begin_node("tpm@57")
                        .property_strings("compatible", &[c, "tcg,tpm-i2c"])
                        .property_u32("reg", 0x57)
                        .end_node();
                }
                w.end_node();
            }
            w.end_node();
        }
        w.end_node().end_node();
        w.finish().expect("the fixture tree is well formed")
    }

    #[test]
    fn a_witherspoon_like_tree_selects_the_npct650_link_at_0x57_on_its_bus() {
        let bytes = opal_i2c_tree(Some("nuvoton,npct650"));
        let dtb = Dtb::new(&bytes).unwrap();
        let info = BootInfo::from_dtb(&dtb);
        assert_eq!(info.i2c_buses.len(), 4);
        assert_eq!(
            info.i2c_buses[2],
            I2cBusInfo {
                opal_id: 3,
                name: "i2c-bus@0",
                engine: "i2cm@a2000"
            }
        );
        let want = I2cTpmInfo {
            bus: 3,
            addr: 0x57,
            map: I2cTpmMap::Npct650,
            compatible: "nuvoton,npct650",
        };
        assert_eq!(info.tpm_link(), TpmLink::I2c(want));
    }

    #[test]
    fn an_npct75x_tree_selects_the_tcg_register_map() {
        let bytes = opal_i2c_tree(Some("nuvoton,npct75x"));
        let info = BootInfo::from_dtb(&Dtb::new(&bytes).unwrap());
        assert!(
            matches!(info.tpm_link(), TpmLink::I2c(t) if t.map == I2cTpmMap::TcgI2c && t.bus == 3 && t.addr == 0x57),
            "{:?}",
            info.tpm_link()
        );
    }

    #[test]
    fn a_tree_without_a_tpm_selects_none_and_an_unknown_chip_is_not_taken_for_one() {
        for compat in [None, Some("infineon,slb9645tt")] {
            let bytes = opal_i2c_tree(compat);
            let info = BootInfo::from_dtb(&Dtb::new(&bytes).unwrap());
            assert_eq!(info.i2c_buses.len(), 4, "{compat:?}");
            assert_eq!(info.i2c_tpm, None, "{compat:?}");
            assert_eq!(info.tpm_link(), TpmLink::None, "{compat:?}");
        }
    }

    #[test]
    fn qemu_10_powernv9_has_19_opal_i2c_buses_no_tpm_on_them_and_the_uart_link() {
        // A dump of QEMU 10.0.2's powernv9 tree as skiboot hands it over (`cargo pef run
        // --qemu target/qemu-10.0/usr/bin/qemu-system-ppc64 --dump-dt`): its pnv-i2c engines.
        let bytes = include_bytes!("../../crates/dtb/testdata/qemu10-powernv9.dtb");
        let info = BootInfo::from_dtb(&Dtb::new(bytes).unwrap());
        assert_eq!(info.i2c_buses.len(), 19);
        assert_eq!(
            (info.i2c_buses[0].opal_id, info.i2c_buses[0].engine),
            (1, "i2cm@a0000")
        );
        assert_eq!(info.i2c_tpm, None);
        assert!(matches!(info.tpm_link(), TpmLink::Uart(u) if u.io_port == 0x3f8));
        // QEMU 7.2's tree has no I2C engines at all.
        let old = BootInfo::from_dtb(&Dtb::new(QEMU_DTB).unwrap());
        assert!(old.i2c_buses.is_empty());
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
