//! The `dump-dt` bootarg: the flattened device tree the image received, printed on the
//! console so the host can save it (portable, panic-free; host-tested).
//!
//! Lines, in order (the host side is `tests-qemu/src/verdict.rs::extract_dt_dump`):
//!
//! ```text
//! dt-dump: begin <totalsize> bytes sha256=<64 lowercase hex>
//! dt-dump: <standard base64, with padding, of the next up to 48 bytes>   (repeated)
//! dt-dump: end
//! ```
#![forbid(unsafe_code)]

use core::fmt;

use sha2::{Digest, Sha256};

use crate::base64;

/// The prefix of every dump line.
pub const PREFIX: &str = "dt-dump: ";

/// One console line of the dump (its `Display` is the whole line, without the newline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpLine<'a> {
    /// `dt-dump: begin <size> bytes sha256=<hex>`.
    Begin {
        /// Bytes in the dump (the tree's `totalsize`).
        size: usize,
        /// SHA-256 of those bytes.
        sha256: [u8; 32],
    },
    /// `dt-dump: <base64>` of these (at most [`base64::LINE_BYTES`]) bytes.
    Data(&'a [u8]),
    /// `dt-dump: end`.
    End,
}

impl fmt::Display for DumpLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(PREFIX)?;
        match self {
            DumpLine::Begin { size, sha256 } => {
                write!(f, "begin {size} bytes sha256=")?;
                for b in sha256 {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
            DumpLine::Data(chunk) => {
                let mut buf = [0u8; 64];
                f.write_str(base64::encode(chunk, &mut buf).ok_or(fmt::Error)?)
            }
            DumpLine::End => f.write_str("end"),
        }
    }
}

/// The dump of `fdt` (the whole tree, `totalsize` bytes), line by line.
pub fn lines(fdt: &[u8]) -> impl Iterator<Item = DumpLine<'_>> {
    let begin = DumpLine::Begin {
        size: fdt.len(),
        sha256: Sha256::digest(fdt).into(),
    };
    core::iter::once(begin)
        .chain(fdt.chunks(base64::LINE_BYTES).map(DumpLine::Data))
        .chain(core::iter::once(DumpLine::End))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64ct::{Base64, Encoding};
    use std::string::{String, ToString};
    use std::vec::Vec;

    #[test]
    fn dumps_the_qemu_tree_in_48_byte_lines_that_decode_back() {
        let fdt = include_bytes!("../../crates/dtb/testdata/qemu-powernv9.dtb");
        let text: Vec<String> = lines(fdt).map(|l| l.to_string()).collect();
        assert_eq!(text.len(), 2 + fdt.len().div_ceil(48));
        let digest: String = Sha256::digest(fdt)
            .iter()
            .map(|b| std::format!("{b:02x}"))
            .collect();
        assert_eq!(
            text[0],
            std::format!("dt-dump: begin {} bytes sha256={digest}", fdt.len())
        );
        assert_eq!(text.last().unwrap(), "dt-dump: end");
        let mut back = Vec::new();
        for l in &text[1..text.len() - 1] {
            let b64 = l.strip_prefix(PREFIX).unwrap();
            assert!(b64.len() <= 64, "{l}");
            back.extend(Base64::decode_vec(b64).unwrap());
        }
        assert_eq!(back, fdt);
        // Only the last data line may be short; an exact multiple of 48 has no short line.
        assert!(text[1..text.len() - 2].iter().all(|l| l.len() == 9 + 64));
        let exact = [7u8; 96];
        assert_eq!(lines(&exact).count(), 4);
        assert_eq!(
            lines(&[]).map(|l| l.to_string()).collect::<Vec<_>>(),
            [
                "dt-dump: begin 0 bytes sha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "dt-dump: end"
            ]
        );
    }
}
