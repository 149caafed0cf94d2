//! A small flattened-device-tree writer (DTSpec v0.4 chapter 5, version 17, big-endian),
//! the one FDT builder of the project: the host tools build ESM blobs with it, and the
//! tests build their device trees with it (feature `writer`; the image has no use for it).
//!
//! Layout, as libfdt's `fdt_pack` leaves it: header, memory reservation block, structure
//! block, strings block, no gaps. Property names are deduplicated in the strings block.
//!
//! ```
//! use dtb::writer::FdtWriter;
//! let mut w = FdtWriter::new();
//! w.begin_node("");
//! w.property_str("compatible", "ibm,esm");
//! w.begin_node("digest");
//! w.end_node();
//! w.end_node();
//! let dtb = w.finish().unwrap();
//! assert_eq!(&dtb[..4], &[0xd0, 0x0d, 0xfe, 0xed]);
//! ```

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use zerocopy::byteorder::U32;
use zerocopy::IntoBytes;

use crate::{
    FdtHeader, FDT_BEGIN_NODE, FDT_END, FDT_END_NODE, FDT_MAGIC, FDT_PROP, FDT_VERSION, HEADER_SIZE,
};

/// Builds an FDT node by node. Call [`FdtWriter::begin_node`] with `""` for the root first.
#[derive(Debug, Default, Clone)]
pub struct FdtWriter {
    structure: Vec<u8>,
    strings: Vec<u8>,
    reservations: Vec<(u64, u64)>,
    depth: usize,
    roots: usize,
    error: Option<String>,
}

impl FdtWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    fn word(&mut self, v: u32) {
        self.structure.extend_from_slice(&v.to_be_bytes());
    }

    fn pad(&mut self) {
        while !self.structure.len().is_multiple_of(4) {
            self.structure.push(0);
        }
    }

    fn fail(&mut self, msg: String) {
        if self.error.is_none() {
            self.error = Some(msg);
        }
    }

    /// Adds a memory reservation entry.
    pub fn reserve(&mut self, address: u64, size: u64) -> &mut Self {
        self.reservations.push((address, size));
        self
    }

    /// Opens a node (`""` for the root, then names such as `memory@0`).
    pub fn begin_node(&mut self, name: &str) -> &mut Self {
        if self.depth == 0 {
            self.roots = self.roots.saturating_add(1);
            if !name.is_empty() {
                self.fail(format!("root node must be named \"\", got {name:?}"));
            }
        } else if name.is_empty() || name.contains('\0') || name.contains('/') {
            self.fail(format!("bad node name {name:?}"));
        }
        self.word(FDT_BEGIN_NODE);
        self.structure.extend_from_slice(name.as_bytes());
        self.structure.push(0);
        self.pad();
        self.depth = self.depth.saturating_add(1);
        self
    }

    /// Closes the innermost open node.
    pub fn end_node(&mut self) -> &mut Self {
        if self.depth == 0 {
            self.fail("end_node with no open node".into());
        } else {
            self.depth = self.depth.saturating_sub(1);
        }
        self.word(FDT_END_NODE);
        self
    }

    /// The offset of `name` in the strings block, added if it is not there yet; `None`
    /// once the block outgrows 32-bit offsets.
    fn name_offset(&mut self, name: &str) -> Option<u32> {
        let mut start = 0usize;
        for s in self.strings.split(|&b| b == 0) {
            if s == name.as_bytes() && start < self.strings.len() {
                return u32::try_from(start).ok();
            }
            start = start.checked_add(s.len())?.checked_add(1)?;
        }
        let off = u32::try_from(self.strings.len()).ok()?;
        self.strings.extend_from_slice(name.as_bytes());
        self.strings.push(0);
        Some(off)
    }

    /// Adds a property with a raw value to the open node.
    pub fn property(&mut self, name: &str, value: &[u8]) -> &mut Self {
        if self.depth == 0 {
            self.fail(format!("property {name:?} outside a node"));
        }
        if name.is_empty() || name.contains('\0') {
            self.fail(format!("bad property name {name:?}"));
        }
        let Ok(len) = u32::try_from(value.len()) else {
            self.fail(format!("property {name:?} too large"));
            return self;
        };
        let Some(off) = self.name_offset(name) else {
            self.fail("strings block too large".into());
            return self;
        };
        self.word(FDT_PROP);
        self.word(len);
        self.word(off);
        self.structure.extend_from_slice(value);
        self.pad();
        self
    }

    /// Adds a NUL-terminated string property.
    pub fn property_str(&mut self, name: &str, value: &str) -> &mut Self {
        let mut v = value.as_bytes().to_vec();
        v.push(0);
        self.property(name, &v)
    }

    /// Adds a string-list property (`"a\0b\0"`).
    pub fn property_strings(&mut self, name: &str, values: &[&str]) -> &mut Self {
        let mut v = Vec::new();
        for s in values {
            v.extend_from_slice(s.as_bytes());
            v.push(0);
        }
        self.property(name, &v)
    }

    /// Adds a one-cell (big-endian u32) property.
    pub fn property_u32(&mut self, name: &str, value: u32) -> &mut Self {
        self.property(name, &value.to_be_bytes())
    }

    /// Adds a two-cell (big-endian u64) property.
    pub fn property_u64(&mut self, name: &str, value: u64) -> &mut Self {
        self.property(name, &value.to_be_bytes())
    }

    /// Adds a property of big-endian u32 cells.
    pub fn property_cells(&mut self, name: &str, cells: &[u32]) -> &mut Self {
        let v: Vec<u8> = cells.iter().flat_map(|c| c.to_be_bytes()).collect();
        self.property(name, &v)
    }

    /// Adds an empty (boolean) property.
    pub fn property_empty(&mut self, name: &str) -> &mut Self {
        self.property(name, &[])
    }

    /// Finishes the tree: every node closed, exactly one root.
    pub fn finish(&self) -> Result<Vec<u8>, String> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.depth != 0 {
            return Err(format!("{} node(s) left open", self.depth));
        }
        if self.roots != 1 {
            return Err(format!("{} root nodes", self.roots));
        }
        self.finish_unchecked()
    }

    /// Lays out what was written without the well-formedness checks of [`Self::finish`]
    /// (open nodes, several roots, bad names are kept as written), for tests of readers
    /// that must refuse such trees. Fails only if the tree outgrows 32-bit offsets.
    pub fn finish_unchecked(&self) -> Result<Vec<u8>, String> {
        let mut structure = self.structure.clone();
        structure.extend_from_slice(&FDT_END.to_be_bytes());
        let too_large = || "device tree too large".to_string();
        let rsv_len = self
            .reservations
            .len()
            .checked_add(1)
            .and_then(|n| n.checked_mul(16));
        let off_rsvmap = HEADER_SIZE;
        let off_struct = rsv_len
            .and_then(|l| l.checked_add(off_rsvmap))
            .ok_or_else(too_large)?;
        let off_strings = off_struct
            .checked_add(structure.len())
            .ok_or_else(too_large)?;
        let total = off_strings
            .checked_add(self.strings.len())
            .ok_or_else(too_large)?;
        let word = |v: usize| u32::try_from(v).map(U32::new).map_err(|_| too_large());
        let header = FdtHeader {
            magic: U32::new(FDT_MAGIC),
            totalsize: word(total)?,
            off_dt_struct: word(off_struct)?,
            off_dt_strings: word(off_strings)?,
            off_mem_rsvmap: word(off_rsvmap)?,
            version: U32::new(FDT_VERSION),
            last_comp_version: U32::new(16),
            boot_cpuid_phys: U32::new(0),
            size_dt_strings: word(self.strings.len())?,
            size_dt_struct: word(structure.len())?,
        };
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(header.as_bytes());
        for &(a, s) in self.reservations.iter().chain(core::iter::once(&(0, 0))) {
            out.extend_from_slice(&a.to_be_bytes());
            out.extend_from_slice(&s.to_be_bytes());
        }
        out.extend_from_slice(&structure);
        out.extend_from_slice(&self.strings);
        Ok(out)
    }
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;
    use crate::Dtb;

    #[test]
    fn round_trips_through_the_reader() {
        let mut w = FdtWriter::new();
        w.reserve(0x1000, 0x2000);
        w.begin_node("")
            .property_strings("compatible", &["qemu,powernv9", "ibm,powernv"])
            .property_u32("#address-cells", 2)
            .property_u32("#size-cells", 2);
        w.begin_node("memory@0")
            .property_str("device_type", "memory")
            .property_cells("reg", &[0, 0, 0, 0x4000_0000])
            .end_node();
        w.begin_node("chosen")
            .property_u64("linux,initrd-start", 0x2800_0000)
            .property_empty("flag")
            .property_str("device_type", "x") // name reused from the strings block
            .end_node();
        w.end_node();
        let blob = w.finish().unwrap();
        let dtb = Dtb::new(&blob).unwrap();
        assert!(dtb.root().is_compatible("ibm,powernv"));
        let mem = dtb.find_node("/memory").unwrap();
        assert_eq!(mem.reg(&dtb).unwrap().collect::<Vec<_>>(), [(0, 1 << 30)]);
        let chosen = dtb.find_node("/chosen").unwrap();
        assert_eq!(chosen.property_u64("linux,initrd-start"), Some(0x2800_0000));
        assert_eq!(chosen.property("flag"), Some(&[][..]));
        assert_eq!(chosen.property_str("device_type"), Some("x"));
        assert_eq!(dtb.reservations().collect::<Vec<_>>(), [(0x1000, 0x2000)]);
        // "device_type" is stored once.
        let strings = String::from_utf8_lossy(&blob[blob.len() - 60..]).into_owned();
        assert_eq!(strings.matches("device_type").count(), 1, "{strings:?}");
    }

    #[test]
    fn refuses_malformed_trees() {
        let mut w = FdtWriter::new();
        w.begin_node("");
        assert!(w.finish().unwrap_err().contains("open"));
        let mut w = FdtWriter::new();
        w.begin_node("").end_node().begin_node("").end_node();
        assert!(w.finish().unwrap_err().contains("root"));
        let mut w = FdtWriter::new();
        w.property_u32("x", 1);
        assert!(w.finish().is_err());
        let mut w = FdtWriter::new();
        w.begin_node("").begin_node("a/b").end_node().end_node();
        assert!(w.finish().unwrap_err().contains("bad node name"));
    }
}
