//! Finding the ESM blob in an SVM initrd (portable, panic-free).
//!
//! open-power/svm-tools (`svm-tool svm add`) attaches the ESM blob to an initrd by
//! prepending a "newc" cpio archive made with `find . | cpio --create --format=newc` from a
//! directory holding `opt/ibm/pef/<blob file name>`: members `.`, `opt`, `opt/ibm`,
//! `opt/ibm/pef` (directories, no data), the blob, then `TRAILER!!!`; GNU cpio pads the
//! archive to a multiple of 512 bytes, and the SVM's real initrd follows.
//!
//! As the reference ultravisor does, [`split_esm_initrd`] walks the headers, requires the
//! first member that has data to live under `opt/ibm/pef/`, takes it as the blob, and
//! returns everything after the trailer (rounded up to 512 bytes from the start of the
//! archive) as the SVM initrd whose digest is checked. Unlike the reference (which scans
//! the member for the FDT magic) the blob must begin the member, which is what svm-tools
//! writes.
#![forbid(unsafe_code)]
// Parses the initrd of an SVM: no panics, no silent wrap or truncation.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
#![deny(clippy::panic, clippy::arithmetic_side_effects)]
#![deny(clippy::cast_possible_truncation)]

use core::fmt;
use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

/// A newc header as it lies in the archive: 6 magic bytes and 13 fields of eight ASCII hex
/// digits each (cpio(5), "New ASCII Format").
#[derive(FromBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct NewcHeader {
    magic: [u8; 6],
    ino: [u8; 8],
    mode: [u8; 8],
    uid: [u8; 8],
    gid: [u8; 8],
    nlink: [u8; 8],
    mtime: [u8; 8],
    filesize: [u8; 8],
    devmajor: [u8; 8],
    devminor: [u8; 8],
    rdevmajor: [u8; 8],
    rdevminor: [u8; 8],
    namesize: [u8; 8],
    check: [u8; 8],
}

impl NewcHeader {
    /// The 13 hex fields, in order.
    fn fields(&self) -> [&[u8; 8]; 13] {
        [
            &self.ino,
            &self.mode,
            &self.uid,
            &self.gid,
            &self.nlink,
            &self.mtime,
            &self.filesize,
            &self.devmajor,
            &self.devminor,
            &self.rdevmajor,
            &self.rdevminor,
            &self.namesize,
            &self.check,
        ]
    }
}

/// Size of a newc header: 6 magic bytes and 13 eight-digit hex fields.
pub const NEWC_HEADER_SIZE: usize = core::mem::size_of::<NewcHeader>();
const _: () = assert!(NEWC_HEADER_SIZE == 110);
/// newc magic ("new ASCII" format, no checksum), what `cpio --format=newc` writes.
pub const NEWC_MAGIC: &[u8; 6] = b"070701";
/// newc magic with checksum (`--format=crc`); accepted, checksum not verified.
pub const NEWC_CRC_MAGIC: &[u8; 6] = b"070702";
/// Name of the last member of a cpio archive.
pub const TRAILER_NAME: &str = "TRAILER!!!";
/// Directory (no trailing slash) under which svm-tools places the ESM blob.
pub const PEF_DIR: &str = "opt/ibm/pef";
/// GNU cpio's output block: the archive is padded to a multiple of this.
pub const CPIO_BLOCK: usize = 512;

/// Why an initrd did not yield an ESM blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpioError {
    /// The initrd does not begin with a newc cpio header (so it carries no ESM cpio).
    NotCpio,
    /// A header, name or member data runs past the end of the initrd.
    Truncated,
    /// A header field is not eight hexadecimal digits, or a name is not NUL-terminated.
    BadHeader,
    /// The first member with data is not under `opt/ibm/pef/`.
    NotEsmCpio,
    /// The archive ended (trailer) without a member under `opt/ibm/pef/`.
    NoBlob,
    /// The blob member does not start with the FDT magic.
    NotFdt,
}

impl fmt::Display for CpioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CpioError::NotCpio => "initrd has no ESM cpio",
            CpioError::Truncated => "ESM cpio truncated",
            CpioError::BadHeader => "ESM cpio malformed header",
            CpioError::NotEsmCpio => "initrd cpio is not an ESM cpio",
            CpioError::NoBlob => "ESM cpio has no blob",
            CpioError::NotFdt => "ESM cpio member is not a device tree",
        })
    }
}

/// Parses one eight-digit hex field (exactly 8 bytes, all hex digits).
fn hex8(field: &[u8]) -> Result<u32, CpioError> {
    if field.len() != 8 {
        return Err(CpioError::BadHeader);
    }
    let mut v: u32 = 0;
    for &c in field {
        // 0-9, a-f, A-F.
        let d = char::from(c).to_digit(16).ok_or(CpioError::BadHeader)?;
        v = (v << 4) | d;
    }
    Ok(v)
}

fn align(v: usize, to: usize) -> Option<usize> {
    let mask = to.checked_sub(1)?;
    Some(v.checked_add(mask)? & !mask)
}

/// One member of a newc archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member<'a> {
    /// The member's path (without the NUL).
    pub name: &'a [u8],
    /// The member's `c_mode` field.
    pub mode: u32,
    /// The member's data.
    pub data: &'a [u8],
    /// Offset just past the member's data, padded to 4 (where the next header starts).
    pub next: usize,
}

/// Reads the member whose header starts at `off` in `archive`.
pub fn member_at(archive: &[u8], off: usize) -> Result<Member<'_>, CpioError> {
    let hdr_end = off
        .checked_add(NEWC_HEADER_SIZE)
        .ok_or(CpioError::Truncated)?;
    let bytes = archive.get(off..hdr_end).ok_or(CpioError::Truncated)?;
    let hdr = NewcHeader::ref_from_bytes(bytes).map_err(|_| CpioError::Truncated)?;
    if &hdr.magic != NEWC_MAGIC && &hdr.magic != NEWC_CRC_MAGIC {
        return Err(CpioError::BadHeader);
    }
    for f in hdr.fields() {
        hex8(f)?;
    }
    let mode = hex8(&hdr.mode)?;
    let filesize = hex8(&hdr.filesize)? as usize;
    let namesize = hex8(&hdr.namesize)? as usize;
    let name_end = hdr_end.checked_add(namesize).ok_or(CpioError::Truncated)?;
    let name_nul = archive.get(hdr_end..name_end).ok_or(CpioError::Truncated)?;
    let (last, name) = name_nul.split_last().ok_or(CpioError::BadHeader)?;
    if *last != 0 || name.contains(&0) {
        return Err(CpioError::BadHeader);
    }
    let data_start = align(name_end, 4).ok_or(CpioError::Truncated)?;
    let data_end = data_start
        .checked_add(filesize)
        .ok_or(CpioError::Truncated)?;
    let data = archive
        .get(data_start..data_end)
        .ok_or(CpioError::Truncated)?;
    let next = align(data_end, 4).ok_or(CpioError::Truncated)?;
    Ok(Member {
        name,
        mode,
        data,
        next,
    })
}

/// Is `name` inside the PEF directory (`opt/ibm/pef/...`)?
fn under_pef(name: &[u8]) -> bool {
    name.strip_prefix(PEF_DIR.as_bytes())
        .and_then(|rest| rest.strip_prefix(b"/"))
        .is_some_and(|rest| !rest.is_empty())
}

/// Splits an initrd made by `svm-tool svm add` into `(esm_blob, svm_initrd)`.
///
/// `Err(CpioError::NotCpio)` means the initrd does not start with a cpio archive at all
/// (so there is no ESM cpio); every other error is a malformed archive.
pub fn split_esm_initrd(initrd: &[u8]) -> Result<(&[u8], &[u8]), CpioError> {
    match initrd.get(..6) {
        Some(m) if m == NEWC_MAGIC || m == NEWC_CRC_MAGIC => {}
        _ => return Err(CpioError::NotCpio),
    }
    let mut off = 0usize;
    let mut blob: Option<&[u8]> = None;
    loop {
        let m = member_at(initrd, off)?;
        if m.name == TRAILER_NAME.as_bytes() {
            let blob = blob.ok_or(CpioError::NoBlob)?;
            let end = align(m.next, CPIO_BLOCK).ok_or(CpioError::Truncated)?;
            let rest = initrd.get(end..).ok_or(CpioError::Truncated)?;
            return Ok((blob, rest));
        }
        if !m.data.is_empty() && blob.is_none() {
            if !under_pef(m.name) {
                return Err(CpioError::NotEsmCpio);
            }
            if m.data.get(..4) != Some(&dtb::FDT_MAGIC.to_be_bytes()[..]) {
                return Err(CpioError::NotFdt);
            }
            blob = Some(m.data);
        }
        // Every member advances by at least the header size, so this terminates.
        off = m.next;
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation, clippy::arithmetic_side_effects)] // test fixtures
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn header(out: &mut Vec<u8>, ino: u32, mode: u32, name: &str, size: usize) {
        out.extend_from_slice(NEWC_MAGIC);
        let nlink = if mode & 0o040000 != 0 { 2 } else { 1 };
        for v in [
            ino,
            mode,
            0,
            0,
            nlink,
            0,
            size as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ] {
            out.extend_from_slice(alloc::format!("{v:08x}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }

    fn member(out: &mut Vec<u8>, ino: u32, mode: u32, name: &str, data: &[u8]) {
        header(out, ino, mode, name, data.len());
        out.extend_from_slice(data);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }

    fn fake_blob() -> Vec<u8> {
        let mut b = Vec::from(dtb::FDT_MAGIC.to_be_bytes());
        b.extend_from_slice(&[0xab; 37]);
        b
    }

    /// The layout `find . | cpio -o -H newc` gives for svm-tools' directory.
    fn svm_cpio(blob_name: &str, blob: &[u8], initrd: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        member(&mut a, 1, 0o040755, ".", &[]);
        member(&mut a, 2, 0o040755, "opt", &[]);
        member(&mut a, 3, 0o040755, "opt/ibm", &[]);
        member(&mut a, 4, 0o040755, "opt/ibm/pef", &[]);
        member(&mut a, 5, 0o100644, blob_name, blob);
        member(&mut a, 0, 0, TRAILER_NAME, &[]);
        while !a.len().is_multiple_of(CPIO_BLOCK) {
            a.push(0);
        }
        a.extend_from_slice(initrd);
        a
    }

    #[test]
    fn splits_svm_tools_layout() {
        let blob = fake_blob();
        let initrd: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
        let all = svm_cpio("opt/ibm/pef/test_esmb.dtb", &blob, &initrd);
        let (b, rest) = split_esm_initrd(&all).unwrap();
        assert_eq!(b, &blob[..]);
        assert_eq!(rest, &initrd[..]);
        // Empty SVM initrd: the archive alone.
        let only = svm_cpio("opt/ibm/pef/x", &blob, &[]);
        assert_eq!(split_esm_initrd(&only).unwrap().1, &[] as &[u8]);
    }

    #[test]
    fn rejects_wrong_layouts() {
        let blob = fake_blob();
        assert_eq!(
            split_esm_initrd(b"\x1f\x8b\x08 gzip"),
            Err(CpioError::NotCpio)
        );
        assert_eq!(split_esm_initrd(&[]), Err(CpioError::NotCpio));
        let other = svm_cpio("etc/passwd", &blob, b"x");
        assert_eq!(split_esm_initrd(&other), Err(CpioError::NotEsmCpio));
        let prefix_only = svm_cpio("opt/ibm/pefx", &blob, b"x");
        assert_eq!(split_esm_initrd(&prefix_only), Err(CpioError::NotEsmCpio));
        let not_fdt = svm_cpio("opt/ibm/pef/b", b"hello world", b"x");
        assert_eq!(split_esm_initrd(&not_fdt), Err(CpioError::NotFdt));
        let mut no_blob = Vec::new();
        member(&mut no_blob, 1, 0o040755, ".", &[]);
        member(&mut no_blob, 0, 0, TRAILER_NAME, &[]);
        assert_eq!(split_esm_initrd(&no_blob), Err(CpioError::NoBlob));
        // Truncations anywhere before the trailer's padding fail cleanly.
        let all = svm_cpio("opt/ibm/pef/b", &blob, &[]);
        for cut in 6..all.len() {
            let r = split_esm_initrd(&all[..cut]);
            assert!(r.is_err(), "cut {cut}");
        }
        // A non-hex digit in a size field.
        let mut bad = all.clone();
        bad[6 + 6 * 8] = b'g';
        assert_eq!(split_esm_initrd(&bad), Err(CpioError::BadHeader));
        // A namesize that swallows the NUL terminator check.
        let mut bad = all.clone();
        bad[6 + 11 * 8..6 + 12 * 8].copy_from_slice(b"00000001");
        assert_eq!(split_esm_initrd(&bad), Err(CpioError::BadHeader));
        // A huge file size.
        let mut bad = all;
        bad[6 + 6 * 8..6 + 7 * 8].copy_from_slice(b"ffffffff");
        assert_eq!(split_esm_initrd(&bad), Err(CpioError::Truncated));
    }

    #[test]
    fn fuzz_never_panics() {
        let blob = fake_blob();
        let base = svm_cpio("opt/ibm/pef/b", &blob, &[1, 2, 3]);
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut ok = 0;
        for _ in 0..5000 {
            let mut b = base.clone();
            for _ in 0..1 + next() % 3 {
                let k = (next() % b.len() as u64) as usize;
                b[k] = b"0123456789abcdefgX\0\xff"[(next() % 20) as usize];
            }
            if split_esm_initrd(&b).is_ok() {
                ok += 1;
            }
        }
        assert!(ok > 0);
    }
}
