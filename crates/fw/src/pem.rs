//! The ESM lockbox fingerprint of an RSA public key, recomputed from its modulus and
//! exponent (portable, allocation-free, panic-free).
//!
//! svm-tools' `pubkey-fingerprint/hash` is SHA-256 of the recipient's public-key PEM file.
//! For the TPM's wrapping key that file is what `tpm2_readpublic -f pem` writes and what the
//! launcher exports (`cargo pef run --export-wrapping-key`, the `rsa` crate's
//! `to_public_key_pem(LineEnding::LF)`), byte for byte:
//!
//! ```text
//! -----BEGIN PUBLIC KEY-----\n
//! <base64 of the DER SubjectPublicKeyInfo, 64 characters a line>\n ...
//! -----END PUBLIC KEY-----\n
//! ```
//!
//! The SPKI is `SEQUENCE { SEQUENCE { OID rsaEncryption, NULL }, BIT STRING (0 unused bits)
//! { SEQUENCE { INTEGER n, INTEGER e } } }` in DER (minimal INTEGERs: no leading zero byte
//! unless the top bit is set). [`pem_fingerprint`] hashes that text as it is produced, in a
//! fixed stack buffer.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
#![deny(clippy::panic, clippy::arithmetic_side_effects)]
#![deny(clippy::cast_possible_truncation)]
#![forbid(unsafe_code)]

use sha2::{Digest, Sha256};

use base64;

/// Largest modulus accepted (RSA-4096).
pub const MAX_MODULUS: usize = 512;
/// Room for the DER SPKI of the largest key: the modulus, a sign byte, the exponent and at
/// most 40 bytes of tags and lengths.
pub const MAX_SPKI: usize = MAX_MODULUS + 64;

/// The public exponent a TPM means when its `exponent` field is 0 (TPM 2.0 Part 2).
pub const TPM_DEFAULT_EXPONENT: u32 = 65537;

const PEM_BEGIN: &[u8] = b"-----BEGIN PUBLIC KEY-----\n";
const PEM_END: &[u8] = b"-----END PUBLIC KEY-----\n";
/// AlgorithmIdentifier { rsaEncryption (1.2.840.113549.1.1.1), NULL }.
const RSA_ALGORITHM_ID: [u8; 15] = [
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];

/// A bounded DER writer: every push is checked, nothing panics.
struct Der<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl Der<'_> {
    fn bytes(&mut self, b: &[u8]) -> Option<()> {
        let end = self.len.checked_add(b.len())?;
        self.buf.get_mut(self.len..end)?.copy_from_slice(b);
        self.len = end;
        Some(())
    }

    /// A tag and a definite length (short form, or long form with 1 or 2 bytes).
    fn header(&mut self, tag: u8, len: usize) -> Option<()> {
        match (u8::try_from(len), u16::try_from(len)) {
            (Ok(l @ 0..=0x7f), _) => self.bytes(&[tag, l]),
            (Ok(l), _) => self.bytes(&[tag, 0x81, l]),
            (_, Ok(l)) => {
                let [hi, lo] = l.to_be_bytes();
                self.bytes(&[tag, 0x82, hi, lo])
            }
            _ => None,
        }
    }

    /// An INTEGER holding the unsigned big-endian `magnitude` (already without leading zeros).
    fn integer(&mut self, magnitude: &[u8]) -> Option<()> {
        let sign = needs_sign_byte(magnitude);
        self.header(0x02, integer_content_len(magnitude))?;
        if sign {
            self.bytes(&[0])?;
        }
        if magnitude.is_empty() {
            return self.bytes(&[0]);
        }
        self.bytes(magnitude)
    }
}

fn header_len(content: usize) -> usize {
    match content {
        0..=0x7f => 2,
        0x80..=0xff => 3,
        _ => 4,
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b.get(first..).unwrap_or(&[])
}

fn needs_sign_byte(magnitude: &[u8]) -> bool {
    magnitude.first().is_some_and(|&b| b & 0x80 != 0)
}

fn integer_content_len(magnitude: &[u8]) -> usize {
    if magnitude.is_empty() {
        1
    } else {
        // A slice's length is below isize::MAX, so one more cannot wrap.
        magnitude
            .len()
            .saturating_add(usize::from(needs_sign_byte(magnitude)))
    }
}

/// Writes the DER SubjectPublicKeyInfo of the RSA key (`modulus` big-endian, leading zero
/// bytes allowed; `exponent` 0 means 65537) into `out`, returning it. `None` if the modulus
/// is empty (all zero) or longer than [`MAX_MODULUS`] bytes, or `out` is too small.
pub fn spki_der<'o>(modulus: &[u8], exponent: u32, out: &'o mut [u8]) -> Option<&'o [u8]> {
    let n = strip_zeros(modulus);
    if n.is_empty() || n.len() > MAX_MODULUS {
        return None;
    }
    let e_value = if exponent == 0 {
        TPM_DEFAULT_EXPONENT
    } else {
        exponent
    };
    let e_bytes = e_value.to_be_bytes();
    let e = strip_zeros(&e_bytes);
    // Each element: its header and its content (at most MAX_MODULUS + a few bytes each, so
    // no sum can wrap; checked anyway).
    let tlv = |c: usize| header_len(c).checked_add(c);
    let rsapk_content = tlv(integer_content_len(n))?.checked_add(tlv(integer_content_len(e))?)?;
    let bits_content = tlv(rsapk_content)?.checked_add(1)?;
    let spki_content = tlv(bits_content)?.checked_add(RSA_ALGORITHM_ID.len())?;
    let mut w = Der { buf: out, len: 0 };
    w.header(0x30, spki_content)?;
    w.bytes(&RSA_ALGORITHM_ID)?;
    w.header(0x03, bits_content)?;
    w.bytes(&[0])?;
    w.header(0x30, rsapk_content)?;
    w.integer(n)?;
    w.integer(e)?;
    let len = w.len;
    w.buf.get(..len)
}

/// SHA-256 of the key's SPKI PEM text (see the module docs): the `pubkey-fingerprint/hash`
/// svm-tools writes into a lockbox sealed to this key. `None` as for [`spki_der`].
pub fn pem_fingerprint(modulus: &[u8], exponent: u32) -> Option<[u8; 32]> {
    let mut der_buf = [0u8; MAX_SPKI];
    let der = spki_der(modulus, exponent, &mut der_buf)?;
    let mut h = Sha256::new();
    h.update(PEM_BEGIN);
    let mut line = [0u8; 64];
    for chunk in der.chunks(base64::LINE_BYTES) {
        h.update(base64::encode(chunk, &mut line)?.as_bytes());
        h.update(b"\n");
    }
    h.update(PEM_END);
    Some(h.finalize().into())
}

/// The first `N` bytes of a fingerprint as lowercase hex (for console lines).
pub struct HexPrefix<'a>(pub &'a [u8]);

impl core::fmt::Display for HexPrefix<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation, clippy::arithmetic_side_effects)] // test fixtures
mod tests {
    use super::*;
    use rsa::pkcs8::{EncodePublicKey, LineEnding};
    use rsa::traits::PublicKeyParts;
    use rsa::{BigUint, RsaPublicKey};

    /// The PEM the host launcher exports for a key (tests-qemu `rsa_public_pem`).
    fn host_pem(modulus: &[u8], e: u32) -> std::string::String {
        RsaPublicKey::new(BigUint::from_bytes_be(modulus), BigUint::from(e))
            .unwrap()
            .to_public_key_pem(LineEnding::LF)
            .unwrap()
    }

    fn sha256(b: &[u8]) -> [u8; 32] {
        Sha256::digest(b).into()
    }

    /// Random odd moduli of every length class: RSA-1024/2048/3072/4096 with the top bit
    /// set (a sign byte in DER), with the top bit clear, and with leading zero bytes given.
    #[test]
    fn matches_the_rsa_crate_pem_for_random_keys() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        };
        let mut cases = 0;
        for bytes in [128usize, 256, 384, 512, 255, 129] {
            for top in [0xffu8, 0x80, 0x7f, 0x01] {
                for e in [65537u32, 3, 0x0101_0001] {
                    let mut n: std::vec::Vec<u8> = (0..bytes).map(|_| next()).collect();
                    n[0] = top;
                    *n.last_mut().unwrap() |= 1;
                    let pem = host_pem(&n, e);
                    let mut der = [0u8; MAX_SPKI];
                    let key =
                        RsaPublicKey::new(BigUint::from_bytes_be(&n), BigUint::from(e)).unwrap();
                    assert_eq!(
                        spki_der(&n, e, &mut der).unwrap(),
                        key.to_public_key_der().unwrap().as_bytes(),
                        "{bytes} bytes, top {top:#x}, e {e}"
                    );
                    assert_eq!(pem_fingerprint(&n, e), Some(sha256(pem.as_bytes())));
                    // Leading zero bytes in the input do not change the key.
                    let mut padded = std::vec![0u8, 0];
                    padded.extend_from_slice(&n);
                    assert_eq!(pem_fingerprint(&padded, e), Some(sha256(pem.as_bytes())));
                    cases += 1;
                }
            }
        }
        assert_eq!(cases, 72);
    }

    /// Real keys (generated, so valid RSA): the TPM's exponent field 0 means 65537.
    #[test]
    fn matches_generated_keys_and_tpm_exponent_zero() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        let mut seen = std::collections::BTreeSet::new();
        for bits in [1024, 1024, 2048] {
            let k = rsa::RsaPrivateKey::new(&mut rng, bits).unwrap();
            let n = k.n().to_bytes_be();
            let pem = k.to_public_key().to_public_key_pem(LineEnding::LF).unwrap();
            let fp = pem_fingerprint(&n, 0).unwrap();
            assert_eq!(fp, sha256(pem.as_bytes()));
            assert_eq!(pem_fingerprint(&n, 65537), Some(fp));
            assert_ne!(pem_fingerprint(&n, 3), Some(fp));
            seen.insert(fp);
        }
        assert_eq!(seen.len(), 3, "distinct keys, distinct fingerprints");
    }

    /// The PyCryptodome fixture's lockbox fingerprint (crates/uv/testdata/make_esm_fixture.py)
    /// is recomputed from the key's modulus alone.
    #[test]
    fn matches_the_pycryptodome_fixture() {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        let k =
            rsa::RsaPrivateKey::from_pkcs1_pem(include_str!("../../uv/testdata/esm-test-rsa.pem"))
                .unwrap();
        let blob = include_bytes!("../../uv/testdata/esm-pycryptodome.dtb");
        let dtb = dtb::Dtb::new(blob).unwrap();
        let hash = dtb
            .find_node("/lockboxes/lockbox-1/pubkey-fingerprint")
            .and_then(|n| n.property("hash"))
            .unwrap();
        let e = u32::try_from(
            k.e()
                .to_bytes_be()
                .iter()
                .fold(0u64, |a, &b| a << 8 | u64::from(b)),
        )
        .unwrap();
        assert_eq!(&pem_fingerprint(&k.n().to_bytes_be(), e).unwrap()[..], hash);
    }

    #[test]
    fn refuses_what_it_cannot_encode() {
        let mut out = [0u8; MAX_SPKI];
        assert_eq!(pem_fingerprint(&[], 65537), None);
        assert_eq!(pem_fingerprint(&[0; 300], 65537), None);
        assert_eq!(pem_fingerprint(&[0x80; MAX_MODULUS + 1], 65537), None);
        assert!(pem_fingerprint(&[0x80; MAX_MODULUS], 65537).is_some());
        assert_eq!(spki_der(&[0xc5; 256], 65537, &mut out[..200]), None);
        assert_eq!(
            alloc::format!("{}", HexPrefix(&[0x1a, 0x2b, 0x03])),
            "1a2b03"
        );
    }
}
