//! Big-endian TPM 2.0 marshalling over byte slices, panic-free.
//!
//! [`Reader`] consumes an untrusted byte slice from the front: every read is
//! bounds-checked and returns [`ParseError`] instead of panicking. [`Writer`] fills a
//! caller-provided buffer and reports [`WriteError::Overflow`] when it is full.
#![forbid(unsafe_code)]
// Parses TPM response bodies: no panics, no silent wrap or truncation.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
#![deny(clippy::panic, clippy::arithmetic_side_effects)]
#![deny(clippy::cast_possible_truncation)]

/// Why bytes received from the TPM could not be parsed. Every variant is a
/// property of the (possibly hostile) input, never of this code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// A field needs more bytes than remain.
    Truncated,
    /// Bytes remain after a structure that should have consumed them all.
    TrailingBytes,
    /// The response tag is not the one expected (the received tag).
    BadTag(u16),
    /// The header's size field disagrees with the number of bytes received.
    SizeMismatch {
        /// The size claimed by the header.
        header: u32,
        /// The number of bytes actually received.
        received: usize,
    },
    /// A sized field is larger than the TPM-defined (or this client's) capacity.
    TooLarge,
    /// A selector, algorithm or enumerated value this client does not accept.
    BadValue,
    /// A response handle outside the range the command can return.
    UnexpectedHandle(u32),
    /// The authorization area does not hold exactly one entry per command session.
    SessionCount,
}

impl core::fmt::Display for ParseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ParseError::Truncated => f.write_str("response truncated"),
            ParseError::TrailingBytes => f.write_str("unexpected bytes after a structure"),
            ParseError::BadTag(t) => write!(f, "unexpected tag {t:#06x}"),
            ParseError::SizeMismatch { header, received } => {
                write!(f, "header size {header} but {received} bytes received")
            }
            ParseError::TooLarge => f.write_str("sized field exceeds its capacity"),
            ParseError::BadValue => f.write_str("unsupported or invalid value"),
            ParseError::UnexpectedHandle(h) => write!(f, "unexpected handle {h:#010x}"),
            ParseError::SessionCount => f.write_str("authorization area does not match sessions"),
        }
    }
}

/// A cursor over untrusted big-endian bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// Number of bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// The bytes not yet consumed.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    /// Consumes exactly `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        let (head, tail) = self.buf.split_at_checked(n).ok_or(ParseError::Truncated)?;
        self.buf = tail;
        Ok(head)
    }

    /// Consumes `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], ParseError> {
        let b = self.take(N)?;
        <[u8; N]>::try_from(b).map_err(|_| ParseError::Truncated)
    }

    /// Reads a `u8`.
    pub fn u8(&mut self) -> Result<u8, ParseError> {
        Ok(u8::from_be_bytes(self.array::<1>()?))
    }

    /// Reads a big-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, ParseError> {
        Ok(u16::from_be_bytes(self.array::<2>()?))
    }

    /// Reads a big-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, ParseError> {
        Ok(u32::from_be_bytes(self.array::<4>()?))
    }

    /// Reads a big-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, ParseError> {
        Ok(u64::from_be_bytes(self.array::<8>()?))
    }

    /// Reads a TPM2B (a `u16` size then that many bytes), refusing sizes above `max`.
    pub fn tpm2b(&mut self, max: usize) -> Result<&'a [u8], ParseError> {
        let size = usize::from(self.u16()?);
        if size > max {
            return Err(ParseError::TooLarge);
        }
        self.take(size)
    }

    /// Reads a TPM2B and returns a reader over its contents.
    pub fn sized(&mut self, max: usize) -> Result<Reader<'a>, ParseError> {
        Ok(Reader::new(self.tpm2b(max)?))
    }

    /// Succeeds only if every byte has been consumed.
    pub fn finish(&self) -> Result<(), ParseError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ParseError::TrailingBytes)
        }
    }
}

/// Why a command could not be marshalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// The output buffer is full (commands are limited to
    /// [`MAX_TPM_MESSAGE`](super::transport::MAX_TPM_MESSAGE) bytes).
    Overflow,
    /// A sized field is longer than a TPM2B can describe (or than its type allows).
    FieldTooLarge,
}

impl core::fmt::Display for WriteError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WriteError::Overflow => f.write_str("command does not fit the buffer"),
            WriteError::FieldTooLarge => f.write_str("field too large for its TPM type"),
        }
    }
}

/// A big-endian writer into a fixed buffer.
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// Starts writing at the beginning of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Writer { buf, pos: 0 }
    }

    /// Number of bytes written so far.
    pub fn len(&self) -> usize {
        self.pos
    }

    /// True if nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }

    /// The bytes written so far.
    pub fn written(&self) -> &[u8] {
        self.buf.get(..self.pos).unwrap_or(&[])
    }

    /// Appends raw bytes.
    pub fn bytes(&mut self, data: &[u8]) -> Result<(), WriteError> {
        let end = self
            .pos
            .checked_add(data.len())
            .ok_or(WriteError::Overflow)?;
        let dst = self
            .buf
            .get_mut(self.pos..end)
            .ok_or(WriteError::Overflow)?;
        dst.copy_from_slice(data);
        self.pos = end;
        Ok(())
    }

    /// Appends a `u8`.
    pub fn u8(&mut self, v: u8) -> Result<(), WriteError> {
        self.bytes(&[v])
    }

    /// Appends a big-endian `u16`.
    pub fn u16(&mut self, v: u16) -> Result<(), WriteError> {
        self.bytes(&v.to_be_bytes())
    }

    /// Appends a big-endian `u32`.
    pub fn u32(&mut self, v: u32) -> Result<(), WriteError> {
        self.bytes(&v.to_be_bytes())
    }

    /// Appends a TPM2B: a `u16` size then the bytes.
    pub fn tpm2b(&mut self, data: &[u8]) -> Result<(), WriteError> {
        let size = u16::try_from(data.len()).map_err(|_| WriteError::FieldTooLarge)?;
        self.u16(size)?;
        self.bytes(data)
    }

    /// Starts a TPM2B whose contents are written next; returns a mark for
    /// [`Writer::end_sized`].
    pub fn begin_sized(&mut self) -> Result<usize, WriteError> {
        let mark = self.pos;
        self.u16(0)?;
        Ok(mark)
    }

    /// Patches the size of the TPM2B started at `mark`.
    pub fn end_sized(&mut self, mark: usize) -> Result<(), WriteError> {
        let start = mark.checked_add(2).ok_or(WriteError::Overflow)?;
        let len = self.pos.checked_sub(start).ok_or(WriteError::Overflow)?;
        let size = u16::try_from(len).map_err(|_| WriteError::FieldTooLarge)?;
        let dst = self.buf.get_mut(mark..start).ok_or(WriteError::Overflow)?;
        dst.copy_from_slice(&size.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reads_big_endian_and_stops_at_end() {
        let data = [0x12, 0x34, 0x56, 0x78, 0x9a, 0x00, 0x02, 0xaa, 0xbb, 0xcc];
        let mut r = Reader::new(&data);
        assert_eq!(r.u32().unwrap(), 0x1234_5678);
        assert_eq!(r.u8().unwrap(), 0x9a);
        assert_eq!(r.tpm2b(2).unwrap(), &[0xaa, 0xbb]);
        assert_eq!(r.finish(), Err(ParseError::TrailingBytes));
        assert_eq!(r.u16(), Err(ParseError::Truncated));
        assert_eq!(r.u8().unwrap(), 0xcc);
        assert_eq!(r.u8(), Err(ParseError::Truncated));
        assert!(r.finish().is_ok());
    }

    #[test]
    fn reader_refuses_lying_sizes() {
        assert_eq!(
            Reader::new(&[0x00, 0x05, 1, 2]).tpm2b(64),
            Err(ParseError::Truncated)
        );
        assert_eq!(
            Reader::new(&[0x00, 0x05, 1, 2, 3, 4, 5]).tpm2b(4),
            Err(ParseError::TooLarge)
        );
        assert_eq!(
            Reader::new(&[0xff, 0xff]).tpm2b(usize::MAX),
            Err(ParseError::Truncated)
        );
    }

    #[test]
    fn writer_patches_sizes_and_reports_overflow() {
        let mut buf = [0u8; 8];
        let mut w = Writer::new(&mut buf);
        let m = w.begin_sized().unwrap();
        w.u16(0xbeef).unwrap();
        w.u8(7).unwrap();
        w.end_sized(m).unwrap();
        assert_eq!(w.written(), &[0, 3, 0xbe, 0xef, 7]);
        assert_eq!(w.u32(1), Err(WriteError::Overflow));
        assert_eq!(w.len(), 5);
        assert!(w.tpm2b(&[1]).is_ok());
        assert_eq!(w.u8(1), Err(WriteError::Overflow));
    }
}
