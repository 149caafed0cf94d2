//! Standard base64 (RFC 4648 section 4: `A-Z a-z 0-9 + /`, `=` padding), encoding only,
//! allocation-free and panic-free (portable, host-tested against the `base64ct` crate).
//!
//! Two users: the PEM text whose SHA-256 is an ESM lockbox's fingerprint
//! (`fw::pem`, 64-character lines = 48 input bytes each) and the `dump-dt`
//! console lines (48 bytes of the device tree per line).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Input bytes per 64-character line (PEM's line length, and `dump-dt`'s).
pub const LINE_BYTES: usize = 48;

/// Length of the encoding of `n` bytes (with padding): `4 * ceil(n / 3)`; `None` on overflow.
pub const fn encoded_len(n: usize) -> Option<usize> {
    (n / 3 + !n.is_multiple_of(3) as usize).checked_mul(4)
}

fn sym(v: u32) -> u8 {
    // `v & 63` is always < 64: the lookup cannot fail; 0 is never used.
    ALPHABET.get((v & 63) as usize).copied().unwrap_or(b'A')
}

/// Encodes `input` into the front of `out` and returns the text; `None` if `out` is shorter
/// than [`encoded_len`]`(input.len())`.
pub fn encode<'o>(input: &[u8], out: &'o mut [u8]) -> Option<&'o str> {
    let len = encoded_len(input.len())?;
    let out = out.get_mut(..len)?;
    for (chunk, dst) in input.chunks(3).zip(out.chunks_mut(4)) {
        let b = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let v = (b(0) << 16) | (b(1) << 8) | b(2);
        let quad = [
            sym(v >> 18),
            sym(v >> 12),
            if chunk.len() > 1 { sym(v >> 6) } else { b'=' },
            if chunk.len() > 2 { sym(v) } else { b'=' },
        ];
        for (d, q) in dst.iter_mut().zip(quad) {
            *d = q;
        }
    }
    core::str::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64ct::{Base64, Encoding};

    #[test]
    fn rfc4648_vectors() {
        let mut buf = [0u8; 16];
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(input.as_bytes(), &mut buf), Some(want), "{input}");
        }
    }

    #[test]
    fn agrees_with_base64ct_and_refuses_short_output() {
        let mut x: u32 = 0x1234_5678;
        let data: std::vec::Vec<u8> = (0..300)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let mut buf = [0u8; 400];
        for n in 0..data.len() {
            let want = Base64::encode_string(&data[..n]);
            assert_eq!(encoded_len(n), Some(want.len()));
            assert_eq!(encode(&data[..n], &mut buf), Some(want.as_str()), "n={n}");
            if n > 0 {
                assert_eq!(encode(&data[..n], &mut buf[..want.len() - 1]), None);
            }
        }
        // Every symbol of the alphabet appears in the encoding of 0..=255 (each 6-bit value).
        let all: std::vec::Vec<u8> = (0..=255u8).collect();
        let text = Base64::encode_string(&all);
        assert_eq!(encode(&all, &mut buf), Some(text.as_str()));
        assert!(ALPHABET.iter().all(|c| text.as_bytes().contains(c)));
        assert_eq!(encoded_len(usize::MAX), None);
        assert_eq!(encoded_len(LINE_BYTES), Some(64));
    }
}
