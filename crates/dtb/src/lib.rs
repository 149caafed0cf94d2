//! A panic-free, allocation-free reader for flattened device trees (FDT, DTSpec v0.4
//! chapter 5: version 17, big-endian).
//!
//! It reads the tree skiboot hands the image at boot and, later, device trees embedded in
//! hostile ESM blobs, so every offset and length is checked and nothing here indexes out of
//! bounds, unwraps or overflows.
//!
//! [`Dtb::new`] validates the header and walks the whole structure block once (tokens,
//! nesting, names, property string offsets), so the accessors afterwards return plain
//! `Option`s and iterators: on a tree that passed validation they cannot meet an
//! inconsistency, and if they ever did they would stop rather than panic.
//!
//! ```text
//! let dtb = Dtb::new(bytes)?;
//! let chosen = dtb.find_node("/chosen").ok_or(..)?;
//! let args = chosen.property_str("bootargs");
//! for mem in dtb.nodes_named("memory") { for (base, size) in mem.reg()? { .. } }
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
// Parses skiboot's tree and hostile ESM blobs: no panics, no silent wrap or truncation.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
#![deny(clippy::panic, clippy::arithmetic_side_effects)]
#![deny(clippy::cast_possible_truncation)]

#[cfg(any(test, feature = "writer"))]
extern crate alloc;

#[cfg(any(test, feature = "writer"))]
pub mod writer;

use core::fmt;
use zerocopy::byteorder::{BigEndian, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// The FDT header magic, `0xd00dfeed`.
pub const FDT_MAGIC: u32 = 0xd00d_feed;
/// Size of the version-17 header in bytes.
pub const HEADER_SIZE: usize = 40;
/// The device-tree version this reader understands (and [`writer`] writes).
pub const FDT_VERSION: u32 = 17;
/// The deepest node nesting accepted (the root is depth 0). Linux uses 64 as well.
pub const MAX_DEPTH: usize = 64;

/// The FDT header as it lies at the start of a tree (DTSpec v0.4, 5.2: ten big-endian
/// 32-bit fields), read by [`Dtb::new`] and written by [`writer`].
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, Clone, Copy)]
#[repr(C)]
pub struct FdtHeader {
    /// [`FDT_MAGIC`].
    pub magic: U32<BigEndian>,
    /// The whole tree's size in bytes, header included.
    pub totalsize: U32<BigEndian>,
    /// Offset of the structure block.
    pub off_dt_struct: U32<BigEndian>,
    /// Offset of the strings block.
    pub off_dt_strings: U32<BigEndian>,
    /// Offset of the memory reservation block.
    pub off_mem_rsvmap: U32<BigEndian>,
    /// The tree's version ([`FDT_VERSION`]).
    pub version: U32<BigEndian>,
    /// The oldest version it is compatible with.
    pub last_comp_version: U32<BigEndian>,
    /// The boot CPU's physical id.
    pub boot_cpuid_phys: U32<BigEndian>,
    /// Size of the strings block.
    pub size_dt_strings: U32<BigEndian>,
    /// Size of the structure block.
    pub size_dt_struct: U32<BigEndian>,
}

const _: () = assert!(core::mem::size_of::<FdtHeader>() == HEADER_SIZE);

const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

/// Why a device tree (or a property in it) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtbError {
    /// Fewer bytes than the header or than `totalsize` claims.
    Truncated,
    /// The first word is not [`FDT_MAGIC`].
    BadMagic,
    /// `version` is below 17 or `last_comp_version` above 17.
    UnsupportedVersion,
    /// A block offset/size in the header points outside `totalsize` (or overflows).
    BadBlock,
    /// The memory reservation block has no terminating all-zero entry.
    BadReservationMap,
    /// The structure block has an unknown token, a token that does not fit, or a token
    /// out of place (e.g. a property outside a node, unbalanced nodes, data after `FDT_END`).
    BadStructure,
    /// A node name is not NUL-terminated or not UTF-8.
    BadName,
    /// A property name offset points outside the strings block, or the name is not a
    /// NUL-terminated UTF-8 string.
    BadPropertyName,
    /// Nodes nest deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A property value does not have the size its reader needs (e.g. `reg` not a
    /// multiple of the entry size, `#address-cells` above 2).
    BadPropertyValue,
}

impl fmt::Display for DtbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            DtbError::Truncated => "device tree truncated",
            DtbError::BadMagic => "device tree bad magic",
            DtbError::UnsupportedVersion => "device tree unsupported version",
            DtbError::BadBlock => "device tree block outside totalsize",
            DtbError::BadReservationMap => "device tree reservation map unterminated",
            DtbError::BadStructure => "device tree malformed structure block",
            DtbError::BadName => "device tree malformed node name",
            DtbError::BadPropertyName => "device tree malformed property name",
            DtbError::TooDeep => "device tree nested too deep",
            DtbError::BadPropertyValue => "device tree property value has the wrong size",
        };
        f.write_str(s)
    }
}

/// Reads a big-endian u32 at `off`, or `None` when it does not fit.
fn be32(bytes: &[u8], off: usize) -> Option<u32> {
    let end = off.checked_add(4)?;
    let b: [u8; 4] = bytes.get(off..end)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

/// Reads a big-endian u64 at `off`, or `None` when it does not fit.
fn be64(bytes: &[u8], off: usize) -> Option<u64> {
    let hi = be32(bytes, off)?;
    let lo = be32(bytes, off.checked_add(4)?)?;
    Some((u64::from(hi) << 32) | u64::from(lo))
}

/// Rounds `v` up to a multiple of 4.
fn align4(v: usize) -> Option<usize> {
    Some(v.checked_add(3)? & !3)
}

/// Reads a NUL-terminated string starting at `off` in `bytes`; returns it without the NUL.
fn cstr_at(bytes: &[u8], off: usize) -> Option<&[u8]> {
    let rest = bytes.get(off..)?;
    let len = rest.iter().position(|&b| b == 0)?;
    rest.get(..len)
}

/// One token of the structure block.
#[derive(Clone, Copy)]
enum Token<'a> {
    Begin { name: &'a [u8] },
    End,
    Prop { name_off: u32, value: &'a [u8] },
    Nop,
    Finish,
}

/// Decodes the token at `pos` of `structure`; returns it and the offset of the next token.
fn token_at(structure: &[u8], pos: usize) -> Result<(Token<'_>, usize), DtbError> {
    let tag = be32(structure, pos).ok_or(DtbError::BadStructure)?;
    let after = pos.checked_add(4).ok_or(DtbError::BadStructure)?;
    match tag {
        FDT_BEGIN_NODE => {
            let name = cstr_at(structure, after).ok_or(DtbError::BadName)?;
            let end = after
                .checked_add(name.len())
                .and_then(|v| v.checked_add(1))
                .and_then(align4)
                .ok_or(DtbError::BadStructure)?;
            if end > structure.len() {
                return Err(DtbError::BadStructure);
            }
            Ok((Token::Begin { name }, end))
        }
        FDT_END_NODE => Ok((Token::End, after)),
        FDT_PROP => {
            let len = be32(structure, after).ok_or(DtbError::BadStructure)?;
            let name_off = be32(structure, after.wrapping_add(4)).ok_or(DtbError::BadStructure)?;
            let start = after.checked_add(8).ok_or(DtbError::BadStructure)?;
            let stop = start
                .checked_add(len as usize)
                .ok_or(DtbError::BadStructure)?;
            let value = structure.get(start..stop).ok_or(DtbError::BadStructure)?;
            let next = align4(stop).ok_or(DtbError::BadStructure)?;
            if next > structure.len() {
                return Err(DtbError::BadStructure);
            }
            Ok((Token::Prop { name_off, value }, next))
        }
        FDT_NOP => Ok((Token::Nop, after)),
        FDT_END => Ok((Token::Finish, after)),
        _ => Err(DtbError::BadStructure),
    }
}

/// The structure and strings blocks: what nodes and properties need to read themselves.
#[derive(Clone, Copy)]
struct Blocks<'a> {
    structure: &'a [u8],
    strings: &'a [u8],
}

impl<'a> Blocks<'a> {
    fn token(&self, pos: usize) -> Option<(Token<'a>, usize)> {
        token_at(self.structure, pos).ok()
    }

    fn prop_name(&self, off: u32) -> Option<&'a str> {
        let raw = cstr_at(self.strings, off as usize)?;
        core::str::from_utf8(raw).ok()
    }

    /// The node whose `FDT_BEGIN_NODE` token is at `offset`.
    fn node_at(&self, offset: usize) -> Option<Node<'a>> {
        match self.token(offset)? {
            (Token::Begin { name }, body) => Some(Node {
                blocks: *self,
                offset,
                body,
                name: core::str::from_utf8(name).ok()?,
            }),
            _ => None,
        }
    }

    /// Offset just past the `FDT_END_NODE` matching the node whose body starts at `body`.
    fn skip_node(&self, body: usize) -> Option<usize> {
        let mut pos = body;
        let mut depth = 1usize;
        loop {
            let (tok, next) = self.token(pos)?;
            match tok {
                Token::Begin { .. } => depth = depth.checked_add(1)?,
                Token::End => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        return Some(next);
                    }
                }
                Token::Finish => return None,
                Token::Prop { .. } | Token::Nop => {}
            }
            pos = next;
        }
    }
}

/// A validated flattened device tree borrowed from a byte slice.
#[derive(Clone, Copy)]
pub struct Dtb<'a> {
    bytes: &'a [u8],
    blocks: Blocks<'a>,
    rsvmap: &'a [u8],
    boot_cpuid: u32,
}

impl fmt::Debug for Dtb<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dtb")
            .field("total_size", &self.bytes.len())
            .field("boot_cpuid", &self.boot_cpuid)
            .finish()
    }
}

impl<'a> Dtb<'a> {
    /// Reads `totalsize` from a header, checking only the magic and that the header fits.
    ///
    /// The boot code holds a raw pointer to the tree: it reads [`HEADER_SIZE`] bytes, asks
    /// this for the size, then makes the full slice and calls [`Dtb::new`].
    pub fn total_size(header: &[u8]) -> Result<usize, DtbError> {
        let (h, _) = FdtHeader::ref_from_prefix(header).map_err(|_| DtbError::Truncated)?;
        if h.magic.get() != FDT_MAGIC {
            return Err(DtbError::BadMagic);
        }
        let total = h.totalsize.get() as usize;
        if total < HEADER_SIZE {
            return Err(DtbError::BadBlock);
        }
        Ok(total)
    }

    /// Validates `bytes` as a version-17 FDT. Bytes after `totalsize` are ignored.
    pub fn new(bytes: &'a [u8]) -> Result<Dtb<'a>, DtbError> {
        let total = Self::total_size(bytes)?;
        let bytes = bytes.get(..total).ok_or(DtbError::Truncated)?;
        let (h, _) = FdtHeader::ref_from_prefix(bytes).map_err(|_| DtbError::Truncated)?;
        let off_struct = h.off_dt_struct.get() as usize;
        let off_strings = h.off_dt_strings.get() as usize;
        let off_rsvmap = h.off_mem_rsvmap.get() as usize;
        let version = h.version.get();
        let last_comp = h.last_comp_version.get();
        let boot_cpuid = h.boot_cpuid_phys.get();
        let size_strings = h.size_dt_strings.get() as usize;
        let size_struct = h.size_dt_struct.get() as usize;
        if version < FDT_VERSION || last_comp > FDT_VERSION {
            return Err(DtbError::UnsupportedVersion);
        }
        let block = |off: usize, size: usize| -> Result<&'a [u8], DtbError> {
            if off < HEADER_SIZE {
                return Err(DtbError::BadBlock);
            }
            let end = off.checked_add(size).ok_or(DtbError::BadBlock)?;
            bytes.get(off..end).ok_or(DtbError::BadBlock)
        };
        let structure = block(off_struct, size_struct)?;
        let strings = block(off_strings, size_strings)?;
        if off_rsvmap < HEADER_SIZE {
            return Err(DtbError::BadBlock);
        }
        let rsv_all = bytes.get(off_rsvmap..).ok_or(DtbError::BadBlock)?;
        // The reservation map runs to its first all-zero entry.
        let mut rsv_len = 0usize;
        loop {
            let addr = be64(rsv_all, rsv_len).ok_or(DtbError::BadReservationMap)?;
            let size = be64(rsv_all, rsv_len.wrapping_add(8)).ok_or(DtbError::BadReservationMap)?;
            if addr == 0 && size == 0 {
                break;
            }
            rsv_len = rsv_len.checked_add(16).ok_or(DtbError::BadReservationMap)?;
        }
        let rsvmap = rsv_all.get(..rsv_len).ok_or(DtbError::BadReservationMap)?;
        let dtb = Dtb {
            bytes,
            blocks: Blocks { structure, strings },
            rsvmap,
            boot_cpuid,
        };
        dtb.validate_structure()?;
        Ok(dtb)
    }

    /// One pass over the structure block: exactly one root node, balanced nesting within
    /// [`MAX_DEPTH`], properties only inside nodes with resolvable names, `FDT_END` last.
    fn validate_structure(&self) -> Result<(), DtbError> {
        let mut pos = 0usize;
        let mut depth = 0usize;
        let mut roots = 0usize;
        loop {
            let (tok, next) = token_at(self.blocks.structure, pos)?;
            match tok {
                Token::Begin { name } => {
                    if depth == 0 {
                        roots = roots.checked_add(1).ok_or(DtbError::BadStructure)?;
                        if roots > 1 || !name.is_empty() {
                            return Err(DtbError::BadStructure);
                        }
                    }
                    if core::str::from_utf8(name).is_err() {
                        return Err(DtbError::BadName);
                    }
                    depth = depth.checked_add(1).ok_or(DtbError::TooDeep)?;
                    if depth > MAX_DEPTH {
                        return Err(DtbError::TooDeep);
                    }
                }
                Token::End => {
                    depth = depth.checked_sub(1).ok_or(DtbError::BadStructure)?;
                }
                Token::Prop { name_off, .. } => {
                    if depth == 0 {
                        return Err(DtbError::BadStructure);
                    }
                    self.blocks
                        .prop_name(name_off)
                        .ok_or(DtbError::BadPropertyName)?;
                }
                Token::Nop => {}
                Token::Finish => {
                    if depth != 0 || roots != 1 || next != self.blocks.structure.len() {
                        return Err(DtbError::BadStructure);
                    }
                    return Ok(());
                }
            }
            pos = next;
        }
    }

    /// The validated bytes (exactly `totalsize` long).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The header's `boot_cpuid_phys`.
    pub fn boot_cpuid(&self) -> u32 {
        self.boot_cpuid
    }

    /// The root node `/`.
    pub fn root(&self) -> Node<'a> {
        // Validation guarantees that the first token other than FDT_NOP begins the root.
        let mut pos = 0usize;
        while let Some((Token::Nop, next)) = self.blocks.token(pos) {
            pos = next;
        }
        self.blocks.node_at(pos).unwrap_or(Node {
            // Unreachable on a validated tree; an empty node keeps the API total.
            blocks: Blocks {
                structure: &[],
                strings: &[],
            },
            offset: 0,
            body: 0,
            name: "",
        })
    }

    /// Finds a node by absolute path (`/`, `/chosen`, `/lockboxes/lockbox-1`).
    ///
    /// A path component without `@` also matches a node named `component@unit`
    /// (so `/memory` finds `memory@0`); the first match in tree order wins. A component
    /// with `@` must match exactly.
    pub fn find_node(&self, path: &str) -> Option<Node<'a>> {
        let rest = path.strip_prefix('/')?;
        let mut node = self.root();
        for comp in rest.split('/').filter(|c| !c.is_empty()) {
            node = node.child(comp)?;
        }
        Some(node)
    }

    /// Every node depth-first (document order), with its depth and parent.
    pub fn walk(&self) -> Walk<'a> {
        Walk {
            blocks: self.blocks,
            pos: 0,
            stack: [0; MAX_DEPTH],
            depth: 0,
            done: false,
        }
    }

    /// Every node, depth-first, whose name is `name` or `name@<unit>`
    /// (e.g. `nodes_named("memory")` yields `memory@0`, `memory@40000000`).
    pub fn nodes_named<'n>(&self, name: &'n str) -> impl Iterator<Item = Node<'a>> + 'n
    where
        'a: 'n,
    {
        self.walk()
            .map(|e| e.node)
            .filter(move |n| name_matches(n.name, name))
    }

    /// Every node, depth-first, whose `compatible` list contains `compat`.
    pub fn nodes_compatible<'n>(&self, compat: &'n str) -> impl Iterator<Item = Node<'a>> + 'n
    where
        'a: 'n,
    {
        self.walk()
            .map(|e| e.node)
            .filter(move |n| n.is_compatible(compat))
    }

    /// The memory reservation block's `(address, size)` entries (terminator excluded).
    pub fn reservations(&self) -> Reservations<'a> {
        Reservations {
            map: self.rsvmap,
            pos: 0,
        }
    }

    /// The parent of `node`, or `None` for the root.
    pub fn parent_of(&self, node: &Node<'a>) -> Option<Node<'a>> {
        self.walk()
            .find(|e| e.node.offset == node.offset)
            .and_then(|e| e.parent)
    }
}

/// Does node name `full` (maybe `base@unit`) match lookup `want`?
fn name_matches(full: &str, want: &str) -> bool {
    if full == want {
        return true;
    }
    if want.contains('@') {
        return false;
    }
    match full.split_once('@') {
        Some((base, _)) => base == want,
        None => false,
    }
}

/// One node of a validated tree. Cheap to copy.
#[derive(Clone, Copy)]
pub struct Node<'a> {
    blocks: Blocks<'a>,
    offset: usize,
    body: usize,
    name: &'a str,
}

impl fmt::Debug for Node<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name)
            .field("offset", &self.offset)
            .finish()
    }
}

impl PartialEq for Node<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.offset == other.offset && core::ptr::eq(self.blocks.structure, other.blocks.structure)
    }
}

impl<'a> Node<'a> {
    /// The full node name, with unit address (`memory@0`); `""` for the root.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The name without its unit address (`memory` for `memory@0`).
    pub fn base_name(&self) -> &'a str {
        match self.name.split_once('@') {
            Some((b, _)) => b,
            None => self.name,
        }
    }

    /// The unit address part of the name (`0` for `memory@0`), if any.
    pub fn unit_address(&self) -> Option<&'a str> {
        self.name.split_once('@').map(|(_, u)| u)
    }

    /// The offset of this node's `FDT_BEGIN_NODE` token in the structure block
    /// (a stable identity for the node).
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// This node's properties, in order.
    pub fn properties(&self) -> Properties<'a> {
        Properties {
            blocks: self.blocks,
            pos: self.body,
            depth: 0,
            done: false,
        }
    }

    /// This node's direct children, in order.
    pub fn children(&self) -> Children<'a> {
        Children {
            blocks: self.blocks,
            pos: self.body,
            done: false,
        }
    }

    /// The first direct child named `name` (unit-address-insensitive when `name` has no `@`).
    pub fn child(&self, name: &str) -> Option<Node<'a>> {
        self.children().find(|c| name_matches(c.name, name))
    }

    /// The raw value of property `name`.
    pub fn property(&self, name: &str) -> Option<&'a [u8]> {
        self.properties().find(|p| p.name == name).map(|p| p.value)
    }

    /// Does this node have property `name` (possibly empty, like `primary;`)?
    pub fn has_property(&self, name: &str) -> bool {
        self.property(name).is_some()
    }

    /// Property `name` as one big-endian u32 (exactly 4 bytes).
    pub fn property_u32(&self, name: &str) -> Option<u32> {
        let v = self.property(name)?;
        if v.len() != 4 {
            return None;
        }
        be32(v, 0)
    }

    /// Property `name` as one big-endian u64 (exactly 8 bytes).
    pub fn property_u64(&self, name: &str) -> Option<u64> {
        let v = self.property(name)?;
        if v.len() != 8 {
            return None;
        }
        be64(v, 0)
    }

    /// Property `name` as a number of one or two cells (4 or 8 bytes), as Linux reads
    /// `linux,initrd-start`, which firmware writes either way.
    pub fn property_number(&self, name: &str) -> Option<u64> {
        let v = self.property(name)?;
        match v.len() {
            4 => be32(v, 0).map(u64::from),
            8 => be64(v, 0),
            _ => None,
        }
    }

    /// Property `name` as a string: the bytes up to the first NUL, which must exist, as UTF-8.
    pub fn property_str(&self, name: &str) -> Option<&'a str> {
        let v = self.property(name)?;
        let s = cstr_at(v, 0)?;
        core::str::from_utf8(s).ok()
    }

    /// Property `name` as a string list (`"a\0b\0"`): its strings in order. Empty when absent.
    pub fn property_strings(&self, name: &str) -> StrList<'a> {
        StrList {
            data: self.property(name).unwrap_or(&[]),
        }
    }

    /// Does string-list property `name` contain `s`?
    pub fn property_contains(&self, name: &str, s: &str) -> bool {
        self.property_strings(name).any(|x| x == s)
    }

    /// Does this node's `compatible` list contain `compat`?
    pub fn is_compatible(&self, compat: &str) -> bool {
        self.property_contains("compatible", compat)
    }

    /// Property `name` as a sequence of big-endian u32 cells; `None` if absent or not a
    /// multiple of 4 bytes.
    pub fn property_cells(&self, name: &str) -> Option<Cells<'a>> {
        let v = self.property(name)?;
        if !v.len().is_multiple_of(4) {
            return None;
        }
        Some(Cells { data: v })
    }

    /// This node's own `#address-cells` and `#size-cells` (what its children's `reg` uses),
    /// defaulting to 2 and 1 as DTSpec 2.3.5 says.
    pub fn child_cells(&self) -> (u32, u32) {
        (
            self.property_u32("#address-cells").unwrap_or(2),
            self.property_u32("#size-cells").unwrap_or(1),
        )
    }

    /// Reads property `name` as `(address, size)` pairs of `address_cells` + `size_cells`
    /// cells each (each count at most 2).
    pub fn property_pairs(
        &self,
        name: &str,
        address_cells: u32,
        size_cells: u32,
    ) -> Result<RegIter<'a>, DtbError> {
        let v = self.property(name).ok_or(DtbError::BadPropertyValue)?;
        RegIter::new(v, address_cells, size_cells)
    }

    /// This node's `reg` entries, using `parent`'s `#address-cells` / `#size-cells`.
    ///
    /// Use [`Dtb::parent_of`] to get the parent, or [`Node::reg`] to let it find it.
    pub fn reg_with_parent(&self, parent: &Node<'a>) -> Result<RegIter<'a>, DtbError> {
        let (a, s) = parent.child_cells();
        self.property_pairs("reg", a, s)
    }

    /// This node's `reg` entries; the parent is located by a walk of `dtb`.
    pub fn reg(&self, dtb: &Dtb<'a>) -> Result<RegIter<'a>, DtbError> {
        let (a, s) = match dtb.parent_of(self) {
            Some(p) => p.child_cells(),
            None => (2, 1),
        };
        self.property_pairs("reg", a, s)
    }
}

/// A property: name and raw value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Property<'a> {
    /// The property name.
    pub name: &'a str,
    /// The raw value bytes.
    pub value: &'a [u8],
}

/// Iterator over one node's properties (see [`Node::properties`]).
pub struct Properties<'a> {
    blocks: Blocks<'a>,
    pos: usize,
    depth: usize,
    done: bool,
}

impl<'a> Iterator for Properties<'a> {
    type Item = Property<'a>;

    fn next(&mut self) -> Option<Property<'a>> {
        while !self.done {
            let Some((tok, next)) = self.blocks.token(self.pos) else {
                self.done = true;
                return None;
            };
            self.pos = next;
            match tok {
                Token::Begin { .. } => match self.depth.checked_add(1) {
                    Some(d) => self.depth = d,
                    None => self.done = true,
                },
                Token::End => match self.depth.checked_sub(1) {
                    Some(d) => self.depth = d,
                    None => self.done = true,
                },
                Token::Finish => self.done = true,
                Token::Nop => {}
                Token::Prop { name_off, value } => {
                    if self.depth == 0 {
                        match self.blocks.prop_name(name_off) {
                            Some(name) => return Some(Property { name, value }),
                            None => self.done = true,
                        }
                    }
                }
            }
        }
        None
    }
}

/// Iterator over one node's direct children (see [`Node::children`]).
pub struct Children<'a> {
    blocks: Blocks<'a>,
    pos: usize,
    done: bool,
}

impl<'a> Iterator for Children<'a> {
    type Item = Node<'a>;

    fn next(&mut self) -> Option<Node<'a>> {
        while !self.done {
            let Some((tok, next)) = self.blocks.token(self.pos) else {
                self.done = true;
                return None;
            };
            match tok {
                Token::Begin { .. } => {
                    let node = self.blocks.node_at(self.pos);
                    match (node, self.blocks.skip_node(next)) {
                        (Some(n), Some(after)) => {
                            self.pos = after;
                            return Some(n);
                        }
                        _ => self.done = true,
                    }
                }
                Token::End | Token::Finish => self.done = true,
                Token::Nop | Token::Prop { .. } => self.pos = next,
            }
        }
        None
    }
}

/// One step of [`Dtb::walk`].
#[derive(Debug, Clone, Copy)]
pub struct WalkEntry<'a> {
    /// The node.
    pub node: Node<'a>,
    /// Its depth: 0 for the root, 1 for its children, ...
    pub depth: usize,
    /// Its parent (`None` for the root).
    pub parent: Option<Node<'a>>,
}

/// Depth-first iterator over every node (see [`Dtb::walk`]).
pub struct Walk<'a> {
    blocks: Blocks<'a>,
    pos: usize,
    stack: [usize; MAX_DEPTH],
    depth: usize,
    done: bool,
}

impl<'a> Iterator for Walk<'a> {
    type Item = WalkEntry<'a>;

    fn next(&mut self) -> Option<WalkEntry<'a>> {
        while !self.done {
            let Some((tok, next)) = self.blocks.token(self.pos) else {
                self.done = true;
                return None;
            };
            let here = self.pos;
            self.pos = next;
            match tok {
                Token::Begin { .. } => {
                    let parent = match self.depth.checked_sub(1) {
                        Some(i) => self.stack.get(i).and_then(|&off| self.blocks.node_at(off)),
                        None => None,
                    };
                    let (Some(node), Some(slot), Some(deeper)) = (
                        self.blocks.node_at(here),
                        self.stack.get_mut(self.depth),
                        self.depth.checked_add(1),
                    ) else {
                        self.done = true;
                        return None;
                    };
                    *slot = here;
                    let depth = self.depth;
                    self.depth = deeper;
                    return Some(WalkEntry {
                        node,
                        depth,
                        parent,
                    });
                }
                Token::End => match self.depth.checked_sub(1) {
                    Some(d) => self.depth = d,
                    None => self.done = true,
                },
                Token::Finish => self.done = true,
                Token::Nop | Token::Prop { .. } => {}
            }
        }
        None
    }
}

/// Iterator over the strings of a string-list property.
#[derive(Clone)]
pub struct StrList<'a> {
    data: &'a [u8],
}

impl<'a> Iterator for StrList<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        while !self.data.is_empty() {
            let len = self
                .data
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(self.data.len());
            let (s, rest) = self.data.split_at(len);
            self.data = rest.get(1..).unwrap_or(&[]);
            if let Ok(s) = core::str::from_utf8(s) {
                return Some(s);
            }
        }
        None
    }
}

/// Iterator over the big-endian u32 cells of a property.
#[derive(Clone)]
pub struct Cells<'a> {
    data: &'a [u8],
}

impl Iterator for Cells<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let v = be32(self.data, 0)?;
        self.data = self.data.get(4..).unwrap_or(&[]);
        Some(v)
    }
}

/// Iterator over `(address, size)` pairs of a `reg`-style property.
#[derive(Clone)]
pub struct RegIter<'a> {
    data: &'a [u8],
    address_cells: usize,
    size_cells: usize,
}

impl<'a> RegIter<'a> {
    fn new(data: &'a [u8], address_cells: u32, size_cells: u32) -> Result<Self, DtbError> {
        if address_cells > 2 || size_cells > 2 {
            return Err(DtbError::BadPropertyValue);
        }
        let entry = address_cells
            .checked_add(size_cells)
            .filter(|&cells| cells != 0)
            .and_then(|cells| cells.checked_mul(4))
            .ok_or(DtbError::BadPropertyValue)? as usize;
        if !data.len().is_multiple_of(entry) {
            return Err(DtbError::BadPropertyValue);
        }
        Ok(RegIter {
            data,
            address_cells: address_cells as usize,
            size_cells: size_cells as usize,
        })
    }
}

/// Reads an `n`-cell (n <= 2) big-endian number at the start of `data`.
fn read_cells(data: &[u8], n: usize) -> Option<u64> {
    match n {
        0 => Some(0),
        1 => be32(data, 0).map(u64::from),
        2 => be64(data, 0),
        _ => None,
    }
}

impl Iterator for RegIter<'_> {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        let a_len = self.address_cells.checked_mul(4)?;
        let addr = read_cells(self.data, self.address_cells)?;
        let size = read_cells(self.data.get(a_len..)?, self.size_cells)?;
        let entry = a_len.checked_add(self.size_cells.checked_mul(4)?)?;
        self.data = self.data.get(entry..).unwrap_or(&[]);
        Some((addr, size))
    }
}

/// Iterator over the memory reservation block (see [`Dtb::reservations`]).
pub struct Reservations<'a> {
    map: &'a [u8],
    pos: usize,
}

impl Iterator for Reservations<'_> {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        let addr = be64(self.map, self.pos)?;
        let size = be64(self.map, self.pos.checked_add(8)?)?;
        self.pos = self.pos.checked_add(16)?;
        Some((addr, size))
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation, clippy::arithmetic_side_effects)] // test fixtures
mod tests {
    use super::writer::FdtWriter;
    use super::*;
    use alloc::vec::Vec;

    const QEMU_DTB: &[u8] = include_bytes!("../testdata/qemu-powernv9.dtb");

    fn sample() -> Vec<u8> {
        let mut b = FdtWriter::new();
        b.reserve(0x3000_0000, 0x1000_0000).reserve(0x1000, 0x20);
        b.begin_node("")
            .property_str("compatible", "ibm,esm")
            .property_u32("#address-cells", 2)
            .property_u32("#size-cells", 2);
        b.begin_node("chosen")
            .property_str("bootargs", "console=hvc0 x=1")
            .property_u64("linux,initrd-start", 0x2800_0000)
            .property_u32("linux,initrd-end", 0x2800_1000)
            .end_node();
        b.begin_node("memory@0")
            .property_cells("reg", &[0, 0, 0, 0x4000_0000])
            .end_node();
        b.begin_node("memory@40000000")
            .property_cells("reg", &[0, 0x4000_0000, 0, 0x1000_0000, 1, 0, 0, 0x100])
            .end_node();
        b.begin_node("lockboxes")
            .begin_node("lockbox-1")
            .property("encrypted-symkey", &[7u8; 256])
            .end_node()
            .begin_node("lockbox-2")
            .property("encrypted-symkey", &[8u8; 256])
            .end_node()
            .end_node();
        b.begin_node("memory-controller")
            .property("x", &[])
            .end_node();
        b.end_node();
        b.finish().unwrap()
    }

    #[test]
    fn header_checks() {
        let blob = sample();
        assert_eq!(Dtb::total_size(&blob[..40]), Ok(blob.len()));
        assert_eq!(Dtb::total_size(&blob[..39]), Err(DtbError::Truncated));
        let mut bad = blob.clone();
        bad[0] ^= 1;
        assert_eq!(Dtb::new(&bad).err(), Some(DtbError::BadMagic));
        assert_eq!(
            Dtb::new(&blob[..blob.len() - 1]).err(),
            Some(DtbError::Truncated)
        );
        let mut v16 = blob.clone();
        v16[20..24].copy_from_slice(&16u32.to_be_bytes());
        assert_eq!(Dtb::new(&v16).err(), Some(DtbError::UnsupportedVersion));
        let mut big = blob.clone();
        big[36..40].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
        assert_eq!(Dtb::new(&big).err(), Some(DtbError::BadBlock));
        // Trailing bytes past totalsize are ignored.
        let mut longer = blob.clone();
        longer.extend_from_slice(&[0xff; 13]);
        assert_eq!(Dtb::new(&longer).unwrap().as_bytes().len(), blob.len());
    }

    #[test]
    fn structure_errors() {
        // Unbalanced: a node left open before FDT_END.
        let mut b = FdtWriter::new();
        b.begin_node("").begin_node("a");
        b.end_node();
        assert_eq!(
            Dtb::new(&b.finish_unchecked().unwrap()).err(),
            Some(DtbError::BadStructure)
        );
        // Two roots.
        let mut b = FdtWriter::new();
        b.begin_node("").end_node().begin_node("").end_node();
        assert_eq!(
            Dtb::new(&b.finish_unchecked().unwrap()).err(),
            Some(DtbError::BadStructure)
        );
        // Property string offset out of range.
        let mut blob = sample();
        let dtb = Dtb::new(&blob).unwrap();
        let size_strings = dtb.blocks.strings.len() as u32;
        let off_struct = be32(&blob, 8).unwrap() as usize;
        // First token of the root is BEGIN(""), 8 bytes; then the compatible PROP.
        let nameoff_at = off_struct + 8 + 8;
        blob[nameoff_at..nameoff_at + 4].copy_from_slice(&size_strings.to_be_bytes());
        assert_eq!(Dtb::new(&blob).err(), Some(DtbError::BadPropertyName));
        // Too deep.
        let mut b = FdtWriter::new();
        for _ in 0..=MAX_DEPTH {
            b.begin_node("");
        }
        for _ in 0..=MAX_DEPTH {
            b.end_node();
        }
        assert!(Dtb::new(&b.finish_unchecked().unwrap()).is_err());
        let mut b = FdtWriter::new();
        b.begin_node("");
        for _ in 1..MAX_DEPTH {
            b.begin_node("n");
        }
        for _ in 0..MAX_DEPTH {
            b.end_node();
        }
        let deep = b.finish().unwrap();
        let dtb = Dtb::new(&deep).unwrap();
        assert_eq!(dtb.walk().last().unwrap().depth, MAX_DEPTH - 1);
        let mut b = FdtWriter::new();
        b.begin_node("");
        for _ in 0..MAX_DEPTH {
            b.begin_node("n");
        }
        for _ in 0..=MAX_DEPTH {
            b.end_node();
        }
        assert_eq!(
            Dtb::new(&b.finish_unchecked().unwrap()).err(),
            Some(DtbError::TooDeep)
        );
    }

    #[test]
    fn lookups_on_built_tree() {
        let blob = sample();
        let dtb = Dtb::new(&blob).unwrap();
        assert!(dtb.root().is_compatible("ibm,esm"));
        assert!(!dtb.root().is_compatible("ibm,es"));
        let chosen = dtb.find_node("/chosen").unwrap();
        assert_eq!(chosen.property_str("bootargs"), Some("console=hvc0 x=1"));
        assert_eq!(chosen.property_u64("linux,initrd-start"), Some(0x2800_0000));
        assert_eq!(chosen.property_u32("linux,initrd-start"), None);
        assert_eq!(
            chosen.property_number("linux,initrd-end"),
            Some(0x2800_1000)
        );
        assert_eq!(
            chosen.property_number("linux,initrd-start"),
            Some(0x2800_0000)
        );
        assert!(dtb.find_node("/nope").is_none());
        assert!(dtb.find_node("chosen").is_none());
        assert_eq!(dtb.find_node("/").unwrap().name(), "");
        // Unit-address-insensitive match, first in order; exact when '@' given.
        assert_eq!(dtb.find_node("/memory").unwrap().name(), "memory@0");
        assert_eq!(
            dtb.find_node("/memory@40000000").unwrap().name(),
            "memory@40000000"
        );
        assert!(dtb.find_node("/memory@4").is_none());
        let mems: Vec<_> = dtb.nodes_named("memory").map(|n| n.name()).collect();
        assert_eq!(mems, ["memory@0", "memory@40000000"]);
        let regs: Vec<_> = dtb
            .nodes_named("memory")
            .flat_map(|n| n.reg(&dtb).unwrap())
            .collect();
        assert_eq!(
            regs,
            [
                (0, 0x4000_0000),
                (0x4000_0000, 0x1000_0000),
                (1 << 32, 0x100)
            ]
        );
        let lb = dtb.find_node("/lockboxes/lockbox-2").unwrap();
        assert_eq!(lb.property("encrypted-symkey"), Some(&[8u8; 256][..]));
        let kids: Vec<_> = dtb
            .find_node("/lockboxes")
            .unwrap()
            .children()
            .map(|n| n.name())
            .collect();
        assert_eq!(kids, ["lockbox-1", "lockbox-2"]);
        assert!(dtb
            .find_node("/memory-controller")
            .unwrap()
            .has_property("x"));
        assert_eq!(
            dtb.reservations().collect::<Vec<_>>(),
            [(0x3000_0000, 0x1000_0000), (0x1000, 0x20)]
        );
        let walk: Vec<_> = dtb
            .walk()
            .map(|e| (e.node.name(), e.depth, e.parent.map(|p| p.name())))
            .collect();
        assert_eq!(
            walk,
            [
                ("", 0, None),
                ("chosen", 1, Some("")),
                ("memory@0", 1, Some("")),
                ("memory@40000000", 1, Some("")),
                ("lockboxes", 1, Some("")),
                ("lockbox-1", 2, Some("lockboxes")),
                ("lockbox-2", 2, Some("lockboxes")),
                ("memory-controller", 1, Some("")),
            ]
        );
        assert_eq!(dtb.parent_of(&lb).unwrap().name(), "lockboxes");
        assert!(dtb.parent_of(&dtb.root()).is_none());
    }

    #[test]
    fn qemu_powernv9_tree() {
        let dtb = Dtb::new(QEMU_DTB).unwrap();
        assert_eq!(
            Dtb::total_size(&QEMU_DTB[..HEADER_SIZE]),
            Ok(QEMU_DTB.len())
        );
        assert!(dtb.root().is_compatible("ibm,powernv"));
        assert!(dtb.root().is_compatible("qemu,powernv9"));
        let chosen = dtb.find_node("/chosen").unwrap();
        assert_eq!(chosen.property_str("bootargs"), Some("console=hvc0 pef=1"));
        assert_eq!(
            chosen.property_number("linux,initrd-start"),
            Some(0x2800_0000)
        );
        assert_eq!(
            chosen.property_number("linux,initrd-end"),
            Some(0x2800_03e8)
        );
        // Memory: /memory@0 with reg = <0 0 0 0x40000000> under #address/#size-cells 2/2.
        let mem: Vec<_> = dtb
            .nodes_named("memory")
            .flat_map(|n| n.reg(&dtb).unwrap())
            .collect();
        assert_eq!(mem, [(0, 1 << 30)]);
        assert_eq!(
            dtb.find_node("/memory")
                .unwrap()
                .property_str("device_type"),
            Some("memory")
        );
        // The LPC bus and its UARTs: reg = <1 0x3f8 8> under #address-cells 2, #size-cells 1.
        let lpc = dtb.nodes_compatible("ibm,power9-lpc").next().unwrap();
        assert_eq!(lpc.name(), "lpc@0");
        assert_eq!(
            dtb.parent_of(&lpc).unwrap().name(),
            "lpcm-opb@6030000000000"
        );
        let ranges: Vec<u32> = lpc.property_cells("ranges").unwrap().collect();
        assert_eq!(ranges[4..8], [1, 0, 0xd001_0000, 0x10000]);
        let mut uarts: Vec<(&str, u64, u64)> = lpc
            .children()
            .filter(|n| n.is_compatible("ns16550"))
            .map(|n| {
                let (a, s) = n.reg_with_parent(&lpc).unwrap().next().unwrap();
                (n.name(), a, s)
            })
            .collect();
        uarts.sort();
        assert_eq!(
            uarts,
            [
                ("isa-serial@i2f8", (1 << 32) | 0x2f8, 8),
                ("isa-serial@i3f8", (1 << 32) | 0x3f8, 8)
            ]
        );
        let s = dtb.find_node("/lpcm-opb/lpc/isa-serial@i3f8").unwrap();
        assert_eq!(s.unit_address(), Some("i3f8"));
        assert_eq!(s.base_name(), "isa-serial");
        assert_eq!(
            s.reg(&dtb).unwrap().collect::<Vec<_>>(),
            [((1 << 32) | 0x3f8, 8)]
        );
        // Timebase frequency on every cpu under /cpus.
        let cpus = dtb.find_node("/cpus").unwrap();
        let tb: Vec<u32> = cpus
            .children()
            .filter(|c| c.property_str("device_type") == Some("cpu"))
            .filter_map(|c| c.property_u32("timebase-frequency"))
            .collect();
        assert_eq!(tb, [512_000_000]);
        // Walk: depths/parents are consistent with child iteration.
        let mut count = 0;
        for e in dtb.walk() {
            count += 1;
            if let Some(p) = e.parent {
                assert!(p.children().any(|c| c == e.node));
                assert_eq!(dtb.parent_of(&e.node), Some(p));
            } else {
                assert_eq!(e.depth, 0);
            }
        }
        assert!(count > 30, "{count}");
        assert_eq!(dtb.reservations().count(), 0);
    }

    /// xorshift64*: a seeded PRNG so the fuzz run is reproducible.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Exercises every accessor on a tree that passed validation.
    fn exercise(dtb: &Dtb<'_>) -> usize {
        let mut seen = 0usize;
        for e in dtb.walk() {
            seen += 1;
            let n = e.node;
            for p in n.properties() {
                seen += p.value.len();
                let _ = n.property_u32(p.name);
                let _ = n.property_u64(p.name);
                let _ = n.property_number(p.name);
                let _ = n.property_str(p.name);
                seen += n.property_strings(p.name).count();
                seen += n.property_cells(p.name).map_or(0, |c| c.count());
            }
            if let Ok(r) = n.reg(dtb) {
                seen += r.count();
            }
            seen += n.children().count();
            let _ = n.child("memory");
        }
        let _ = dtb.find_node("/lpcm-opb/lpc/isa-serial@i3f8");
        let _ = dtb.find_node("/chosen");
        seen += dtb.nodes_named("memory").count();
        seen += dtb.reservations().count();
        seen
    }

    #[test]
    fn fuzz_mutated_blobs_never_panic() {
        let seeds = [Vec::from(QEMU_DTB), sample()];
        let mut rng = Rng(0x0005_eed0_fd7b);
        let mut accepted = 0;
        for i in 0..6000 {
            let mut b = seeds[i % 2].clone();
            let edits = 1 + rng.below(4);
            for _ in 0..edits {
                match rng.below(5) {
                    0 => {
                        let k = rng.below(b.len());
                        b[k] ^= 1 << rng.below(8);
                    }
                    1 => {
                        let k = rng.below(b.len());
                        b[k] = rng.next() as u8;
                    }
                    2 => {
                        // Corrupt a header or token word with an interesting value.
                        let k = rng.below(b.len() / 4) * 4;
                        let v: u32 = [0, 1, 2, 3, 4, 9, 0xffff_ffff, 0x8000_0000, 40][rng.below(9)];
                        b[k..k + 4].copy_from_slice(&v.to_be_bytes());
                    }
                    3 => {
                        let k = rng.below(b.len());
                        b.truncate(k.max(HEADER_SIZE + 8));
                    }
                    _ => {
                        let k = rng.below(10) * 4;
                        let v = (rng.next() as u32) % (b.len() as u32 + 64);
                        b[k..k + 4].copy_from_slice(&v.to_be_bytes());
                    }
                }
            }
            if let Ok(dtb) = Dtb::new(&b) {
                accepted += 1;
                exercise(&dtb);
            }
        }
        // The mutations must leave some trees valid, or the accessors were not exercised.
        assert!(accepted > 100, "accepted {accepted}");
    }
}
