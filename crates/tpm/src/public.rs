//! Object public areas (`TPMT_PUBLIC`), Names, templates and PCR selections.
//!
//! [`Public::parse`] reads a public area returned by the TPM as hostile input and
//! keeps the exact bytes it was parsed from, so that [`Public::name`] hashes what the
//! TPM hashes: `Name = nameAlg || SHA-256(TPMT_PUBLIC)`.
#![forbid(unsafe_code)]

use super::consts::{alg, attr, ECC_NIST_P256, SHA256_SIZE};
use super::crypto;
use super::marshal::{ParseError, Reader, WriteError, Writer};

/// Largest Name this client holds: a `TPM_ALG_ID` and a SHA-512 digest.
pub const MAX_NAME: usize = 2 + 64;
/// Largest RSA modulus accepted (4096 bits).
pub const MAX_RSA_BYTES: usize = 512;
/// Largest ECC coordinate accepted (P-521).
pub const MAX_ECC_BYTES: usize = 66;
/// Largest digest accepted in a public area.
pub const MAX_DIGEST: usize = 64;

/// The Name of a TPM entity: for objects `nameAlg || H(public area)`, for
/// permanent handles, PCRs and sessions the 4-byte handle.
#[derive(Clone, PartialEq, Eq)]
pub struct Name {
    len: u8,
    buf: [u8; MAX_NAME],
}

impl Name {
    /// A Name from its bytes (at most [`MAX_NAME`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Name, ParseError> {
        let mut buf = [0u8; MAX_NAME];
        let dst = buf.get_mut(..bytes.len()).ok_or(ParseError::TooLarge)?;
        dst.copy_from_slice(bytes);
        let len = u8::try_from(bytes.len()).map_err(|_| ParseError::TooLarge)?;
        Ok(Name { len, buf })
    }

    /// The Name of a handle-named entity (hierarchy, PCR, session).
    pub fn from_handle(handle: u32) -> Name {
        let mut buf = [0u8; MAX_NAME];
        let b = handle.to_be_bytes();
        buf[0] = b[0];
        buf[1] = b[1];
        buf[2] = b[2];
        buf[3] = b[3];
        Name { len: 4, buf }
    }

    /// The Name's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..usize::from(self.len)).unwrap_or(&[])
    }
}

impl core::fmt::Debug for Name {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Name(")?;
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// A TPM entity a command refers to: its handle and its Name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    /// The handle.
    pub handle: u32,
    /// The Name that enters command parameter hashes.
    pub name: Name,
}

impl Object {
    /// A permanent entity (hierarchy such as `TPM_RH_OWNER`, or a PCR), named by its handle.
    pub fn permanent(handle: u32) -> Object {
        Object {
            handle,
            name: Name::from_handle(handle),
        }
    }

    /// The PCR with this index.
    pub fn pcr(index: u32) -> Object {
        Object::permanent(index)
    }
}

/// A symmetric definition (`TPMT_SYM_DEF_OBJECT`); `alg == TPM_ALG_NULL` means none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SymDef {
    /// Algorithm (`TPM_ALG_AES` or `TPM_ALG_NULL`).
    pub alg: u16,
    /// Key size in bits (0 when `alg` is NULL).
    pub key_bits: u16,
    /// Mode (`TPM_ALG_CFB`; 0 when `alg` is NULL).
    pub mode: u16,
}

impl SymDef {
    /// No symmetric algorithm.
    pub const NULL: SymDef = SymDef {
        alg: alg::NULL,
        key_bits: 0,
        mode: 0,
    };
    /// AES-128 in CFB mode.
    pub const AES_128_CFB: SymDef = SymDef {
        alg: alg::AES,
        key_bits: 128,
        mode: alg::CFB,
    };

    fn parse(r: &mut Reader<'_>) -> Result<SymDef, ParseError> {
        let a = r.u16()?;
        if a == alg::NULL {
            return Ok(SymDef::NULL);
        }
        if a != alg::AES {
            return Err(ParseError::BadValue);
        }
        Ok(SymDef {
            alg: a,
            key_bits: r.u16()?,
            mode: r.u16()?,
        })
    }

    /// Marshals the definition.
    pub fn marshal(&self, w: &mut Writer<'_>) -> Result<(), WriteError> {
        w.u16(self.alg)?;
        if self.alg != alg::NULL {
            w.u16(self.key_bits)?;
            w.u16(self.mode)?;
        }
        Ok(())
    }
}

/// A scheme with its hash (`TPMT_*_SCHEME`, `TPMT_KDF_SCHEME`); `TPM_ALG_NULL` means none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scheme {
    /// Scheme algorithm.
    pub scheme: u16,
    /// Its hash algorithm (0 if the scheme has none).
    pub hash: u16,
}

impl Scheme {
    /// No scheme.
    pub const NULL: Scheme = Scheme {
        scheme: alg::NULL,
        hash: 0,
    };
    /// RSA-OAEP with SHA-256.
    pub const OAEP_SHA256: Scheme = Scheme {
        scheme: alg::OAEP,
        hash: alg::SHA256,
    };

    fn parse(r: &mut Reader<'_>, allowed: &[u16]) -> Result<Scheme, ParseError> {
        let scheme = r.u16()?;
        if scheme == alg::NULL || scheme == alg::RSAES {
            return Ok(Scheme { scheme, hash: 0 });
        }
        if !allowed.contains(&scheme) {
            return Err(ParseError::BadValue);
        }
        Ok(Scheme {
            scheme,
            hash: r.u16()?,
        })
    }

    fn marshal(&self, w: &mut Writer<'_>) -> Result<(), WriteError> {
        w.u16(self.scheme)?;
        if self.scheme != alg::NULL && self.scheme != alg::RSAES {
            w.u16(self.hash)?;
        }
        Ok(())
    }
}

/// The type-specific part of a public area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublicDetail<'a> {
    /// An RSA key.
    Rsa {
        /// Symmetric algorithm of a storage key.
        symmetric: SymDef,
        /// Encryption/signing scheme.
        scheme: Scheme,
        /// Modulus size in bits.
        key_bits: u16,
        /// Public exponent as stored (0 means 65537).
        exponent: u32,
        /// The modulus (big-endian).
        modulus: &'a [u8],
    },
    /// An ECC key.
    Ecc {
        /// Symmetric algorithm of a storage key.
        symmetric: SymDef,
        /// Scheme.
        scheme: Scheme,
        /// Curve (`TPM_ECC_CURVE`).
        curve: u16,
        /// KDF scheme.
        kdf: Scheme,
        /// Public point x coordinate.
        x: &'a [u8],
        /// Public point y coordinate.
        y: &'a [u8],
    },
    /// A keyed-hash object (HMAC key or sealed data).
    KeyedHash {
        /// Scheme (`TPM_ALG_HMAC`, `TPM_ALG_XOR` or NULL).
        scheme: Scheme,
        /// The unique field.
        unique: &'a [u8],
    },
    /// A symmetric cipher key.
    SymCipher {
        /// Its algorithm.
        symmetric: SymDef,
        /// The unique field.
        unique: &'a [u8],
    },
}

/// A parsed public area, borrowing the bytes it was parsed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Public<'a> {
    /// The exact marshalled `TPMT_PUBLIC` (what the Name hashes).
    pub raw: &'a [u8],
    /// Object type (`TPM_ALG_RSA`, `TPM_ALG_ECC`, ...).
    pub object_type: u16,
    /// Name algorithm.
    pub name_alg: u16,
    /// `TPMA_OBJECT` bits.
    pub attributes: u32,
    /// Policy digest authorizing use of the object (may be empty).
    pub auth_policy: &'a [u8],
    /// Type-specific parameters and unique field.
    pub detail: PublicDetail<'a>,
}

const RSA_SCHEMES: &[u16] = &[alg::OAEP, alg::RSASSA, alg::RSAPSS];
const ECC_SCHEMES: &[u16] = &[alg::ECDH, alg::ECDSA];
const KDF_SCHEMES: &[u16] = &[alg::KDF1_SP800_56A, alg::KDF1_SP800_108];

impl<'a> Public<'a> {
    /// Parses a whole marshalled `TPMT_PUBLIC` (the contents of a `TPM2B_PUBLIC`);
    /// every byte must be consumed.
    pub fn parse(raw: &'a [u8]) -> Result<Public<'a>, ParseError> {
        let mut r = Reader::new(raw);
        let object_type = r.u16()?;
        let name_alg = r.u16()?;
        let attributes = r.u32()?;
        let auth_policy = r.tpm2b(MAX_DIGEST)?;
        let detail = match object_type {
            alg::RSA => {
                let symmetric = SymDef::parse(&mut r)?;
                let scheme = Scheme::parse(&mut r, RSA_SCHEMES)?;
                let key_bits = r.u16()?;
                let exponent = r.u32()?;
                let modulus = r.tpm2b(MAX_RSA_BYTES)?;
                PublicDetail::Rsa {
                    symmetric,
                    scheme,
                    key_bits,
                    exponent,
                    modulus,
                }
            }
            alg::ECC => {
                let symmetric = SymDef::parse(&mut r)?;
                let scheme = Scheme::parse(&mut r, ECC_SCHEMES)?;
                let curve = r.u16()?;
                let kdf = Scheme::parse(&mut r, KDF_SCHEMES)?;
                let x = r.tpm2b(MAX_ECC_BYTES)?;
                let y = r.tpm2b(MAX_ECC_BYTES)?;
                PublicDetail::Ecc {
                    symmetric,
                    scheme,
                    curve,
                    kdf,
                    x,
                    y,
                }
            }
            alg::KEYEDHASH => {
                let s = r.u16()?;
                let scheme = match s {
                    alg::NULL => Scheme::NULL,
                    alg::HMAC => Scheme {
                        scheme: s,
                        hash: r.u16()?,
                    },
                    alg::XOR => {
                        let hash = r.u16()?;
                        let _kdf = r.u16()?;
                        Scheme { scheme: s, hash }
                    }
                    _ => return Err(ParseError::BadValue),
                };
                let unique = r.tpm2b(MAX_DIGEST)?;
                PublicDetail::KeyedHash { scheme, unique }
            }
            alg::SYMCIPHER => {
                let symmetric = SymDef::parse(&mut r)?;
                let unique = r.tpm2b(MAX_DIGEST)?;
                PublicDetail::SymCipher { symmetric, unique }
            }
            _ => return Err(ParseError::BadValue),
        };
        r.finish()?;
        Ok(Public {
            raw,
            object_type,
            name_alg,
            attributes,
            auth_policy,
            detail,
        })
    }

    /// Computes the Name, `nameAlg || SHA-256(TPMT_PUBLIC)`. Only SHA-256 Names
    /// are supported ([`ParseError::BadValue`] otherwise).
    pub fn name(&self) -> Result<Name, ParseError> {
        if self.name_alg != alg::SHA256 {
            return Err(ParseError::BadValue);
        }
        let digest = crypto::sha256(&[self.raw]);
        let mut buf = [0u8; 2 + SHA256_SIZE];
        let (head, tail) = buf.split_at_mut(2);
        head.copy_from_slice(&alg::SHA256.to_be_bytes());
        tail.copy_from_slice(&digest);
        Name::from_bytes(&buf)
    }
}

/// An NV index's public area (`TPMS_NV_PUBLIC`), SHA-256 nameAlg.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NvPublic<'a> {
    /// The index handle.
    pub index: u32,
    /// `TPMA_NV` bits.
    pub attributes: u32,
    /// The index's authPolicy.
    pub auth_policy: &'a [u8],
    /// The data size.
    pub data_size: u16,
}

/// Largest marshalled `TPMS_NV_PUBLIC` this client builds (4 + 2 + 4 + 2 + 64 + 2).
pub const MAX_NV_PUBLIC: usize = 78;

impl<'a> NvPublic<'a> {
    /// Marshals the `TPMS_NV_PUBLIC` (no size prefix).
    pub fn marshal(&self, w: &mut Writer<'_>) -> Result<(), WriteError> {
        w.u32(self.index)?;
        w.u16(alg::SHA256)?;
        w.u32(self.attributes)?;
        w.tpm2b(self.auth_policy)?;
        w.u16(self.data_size)
    }

    /// The Name, `TPM_ALG_SHA256 || SHA-256(TPMS_NV_PUBLIC)` (it changes with the
    /// attributes, e.g. when TPMA_NV_WRITTEN is set).
    pub fn name(&self) -> Result<Name, WriteError> {
        let mut buf = [0u8; MAX_NV_PUBLIC];
        let mut w = Writer::new(&mut buf);
        self.marshal(&mut w)?;
        let digest = crypto::sha256(&[w.written()]);
        let mut n = [0u8; 2 + SHA256_SIZE];
        let (head, tail) = n.split_at_mut(2);
        head.copy_from_slice(&alg::SHA256.to_be_bytes());
        tail.copy_from_slice(&digest);
        Name::from_bytes(&n).map_err(|_| WriteError::Overflow)
    }

    /// Parses a whole marshalled `TPMS_NV_PUBLIC` (hostile input; SHA-256 only).
    pub fn parse(raw: &'a [u8]) -> Result<NvPublic<'a>, ParseError> {
        let mut r = Reader::new(raw);
        let index = r.u32()?;
        if r.u16()? != alg::SHA256 {
            return Err(ParseError::BadValue);
        }
        let attributes = r.u32()?;
        let auth_policy = r.tpm2b(MAX_DIGEST)?;
        let data_size = r.u16()?;
        r.finish()?;
        Ok(NvPublic {
            index,
            attributes,
            auth_policy,
            data_size,
        })
    }
}

/// The key shape of a [`Template`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyShape {
    /// RSA-2048, exponent 65537.
    Rsa2048 {
        /// Symmetric algorithm (storage keys: AES-128-CFB; others NULL).
        symmetric: SymDef,
        /// Scheme (storage keys: NULL; decryption keys: OAEP-SHA256).
        scheme: Scheme,
    },
    /// ECC NIST P-256.
    EccP256 {
        /// Symmetric algorithm (storage keys: AES-128-CFB; others NULL).
        symmetric: SymDef,
        /// Scheme (NULL for storage keys).
        scheme: Scheme,
    },
}

/// A public template for CreatePrimary / Create (nameAlg SHA-256).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Template<'a> {
    /// Key type and parameters.
    pub shape: KeyShape,
    /// `TPMA_OBJECT` bits.
    pub attributes: u32,
    /// Policy digest (empty for none).
    pub auth_policy: &'a [u8],
}

const STORAGE_ATTRS: u32 = attr::FIXED_TPM
    | attr::FIXED_PARENT
    | attr::SENSITIVE_DATA_ORIGIN
    | attr::USER_WITH_AUTH
    | attr::NO_DA
    | attr::RESTRICTED
    | attr::DECRYPT;

impl Template<'static> {
    /// An RSA-2048 restricted decryption (storage) key, AES-128-CFB.
    pub fn rsa_storage() -> Self {
        Template {
            shape: KeyShape::Rsa2048 {
                symmetric: SymDef::AES_128_CFB,
                scheme: Scheme::NULL,
            },
            attributes: STORAGE_ATTRS,
            auth_policy: &[],
        }
    }

    /// An ECC P-256 restricted decryption (storage) key, AES-128-CFB.
    pub fn ecc_storage() -> Self {
        Template {
            shape: KeyShape::EccP256 {
                symmetric: SymDef::AES_128_CFB,
                scheme: Scheme::NULL,
            },
            attributes: STORAGE_ATTRS,
            auth_policy: &[],
        }
    }
}

impl<'a> Template<'a> {
    /// An RSA-2048 OAEP-SHA256 decryption key with the given attributes (which
    /// should include `decrypt`) and policy.
    pub fn rsa_oaep(attributes: u32, auth_policy: &'a [u8]) -> Self {
        Template {
            shape: KeyShape::Rsa2048 {
                symmetric: SymDef::NULL,
                scheme: Scheme::OAEP_SHA256,
            },
            attributes,
            auth_policy,
        }
    }

    /// Marshals the template as a `TPMT_PUBLIC` (not size-prefixed).
    pub fn marshal(&self, w: &mut Writer<'_>) -> Result<(), WriteError> {
        match self.shape {
            KeyShape::Rsa2048 { .. } => w.u16(alg::RSA)?,
            KeyShape::EccP256 { .. } => w.u16(alg::ECC)?,
        }
        w.u16(alg::SHA256)?;
        w.u32(self.attributes)?;
        w.tpm2b(self.auth_policy)?;
        match self.shape {
            KeyShape::Rsa2048 { symmetric, scheme } => {
                symmetric.marshal(w)?;
                scheme.marshal(w)?;
                w.u16(2048)?;
                w.u32(0)?;
                w.tpm2b(&[])?;
            }
            KeyShape::EccP256 { symmetric, scheme } => {
                symmetric.marshal(w)?;
                scheme.marshal(w)?;
                w.u16(ECC_NIST_P256)?;
                Scheme::NULL.marshal(w)?;
                w.tpm2b(&[])?;
                w.tpm2b(&[])?;
            }
        }
        Ok(())
    }
}

/// Largest number of PCR select octets accepted (32 PCRs).
pub const MAX_PCR_SELECT: usize = 4;

/// A selection of PCRs in one bank (`TPMS_PCR_SELECTION`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcrSelection {
    /// Bank hash algorithm.
    pub hash: u16,
    /// Number of valid select octets.
    pub size: u8,
    /// Bitmap: PCR `i` is bit `i % 8` of octet `i / 8`.
    pub select: [u8; MAX_PCR_SELECT],
}

impl PcrSelection {
    /// A SHA-256 bank selection of the given PCRs (indices 0..24; others ignored).
    pub fn sha256(pcrs: &[u32]) -> Self {
        let mut select = [0u8; MAX_PCR_SELECT];
        for &p in pcrs {
            if p < 24 {
                if let Some(b) = select.get_mut((p / 8) as usize) {
                    *b |= 1 << (p % 8);
                }
            }
        }
        PcrSelection {
            hash: alg::SHA256,
            size: 3,
            select,
        }
    }

    /// True if no PCR is selected.
    pub fn is_empty(&self) -> bool {
        self.select.iter().all(|&b| b == 0)
    }

    /// Marshals a `TPML_PCR_SELECTION` holding this one selection.
    pub fn marshal_list(&self, w: &mut Writer<'_>) -> Result<(), WriteError> {
        w.u32(1)?;
        w.u16(self.hash)?;
        w.u8(self.size)?;
        let sel = self
            .select
            .get(..usize::from(self.size))
            .ok_or(WriteError::FieldTooLarge)?;
        w.bytes(sel)
    }

    /// Parses a `TPML_PCR_SELECTION` that must hold zero or one selection;
    /// returns `None` for an empty list.
    pub fn parse_list(r: &mut Reader<'_>) -> Result<Option<PcrSelection>, ParseError> {
        match r.u32()? {
            0 => Ok(None),
            1 => {
                let hash = r.u16()?;
                let size = r.u8()?;
                if usize::from(size) > MAX_PCR_SELECT {
                    return Err(ParseError::TooLarge);
                }
                let mut select = [0u8; MAX_PCR_SELECT];
                let bytes = r.take(usize::from(size))?;
                select
                    .get_mut(..bytes.len())
                    .ok_or(ParseError::TooLarge)?
                    .copy_from_slice(bytes);
                Ok(Some(PcrSelection { hash, size, select }))
            }
            _ => Err(ParseError::TooLarge),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_round_trips_through_the_parser() {
        let mut buf = [0u8; 512];
        for t in [
            Template::rsa_storage(),
            Template::ecc_storage(),
            Template::rsa_oaep(attr::DECRYPT | attr::NO_DA, &[7u8; 32]),
        ] {
            let mut w = Writer::new(&mut buf);
            t.marshal(&mut w).unwrap();
            let len = w.len();
            let raw = buf.get(..len).unwrap();
            let p = Public::parse(raw).unwrap();
            assert_eq!(p.attributes, t.attributes);
            assert_eq!(p.auth_policy, t.auth_policy);
            assert_eq!(p.name_alg, alg::SHA256);
            match (p.detail, t.shape) {
                (
                    PublicDetail::Rsa {
                        scheme,
                        symmetric,
                        key_bits,
                        ..
                    },
                    KeyShape::Rsa2048 {
                        scheme: s,
                        symmetric: y,
                    },
                ) => {
                    assert_eq!((scheme, symmetric, key_bits), (s, y, 2048));
                }
                (
                    PublicDetail::Ecc {
                        curve, symmetric, ..
                    },
                    KeyShape::EccP256 { symmetric: y, .. },
                ) => {
                    assert_eq!((curve, symmetric), (ECC_NIST_P256, y));
                }
                other => panic!("shape mismatch {other:?}"),
            }
            let name = p.name().unwrap();
            assert_eq!(name.as_bytes().len(), 34);
            assert_eq!(name.as_bytes().get(2..).unwrap(), &crypto::sha256(&[raw]));
            // Every strict prefix is rejected, and so is a trailing byte.
            for cut in 0..len {
                assert!(Public::parse(buf.get(..cut).unwrap()).is_err());
            }
            assert_eq!(
                Public::parse(buf.get(..len + 1).unwrap()),
                Err(ParseError::TrailingBytes)
            );
        }
    }

    #[test]
    fn pcr_selection_round_trip() {
        let s = PcrSelection::sha256(&[0, 7, 16, 23, 99]);
        assert_eq!(s.select, [0x81, 0x00, 0x81, 0x00]);
        let mut buf = [0u8; 16];
        let mut w = Writer::new(&mut buf);
        s.marshal_list(&mut w).unwrap();
        let n = w.len();
        let mut r = Reader::new(buf.get(..n).unwrap());
        assert_eq!(PcrSelection::parse_list(&mut r).unwrap(), Some(s));
        assert!(r.finish().is_ok());
        let mut r = Reader::new(&[0, 0, 0, 1, 0, 0x0b, 9, 0, 0, 0]);
        assert_eq!(PcrSelection::parse_list(&mut r), Err(ParseError::TooLarge));
    }

    #[test]
    fn names_of_handles() {
        assert_eq!(Name::from_handle(0x4000_0001).as_bytes(), &[0x40, 0, 0, 1]);
        assert!(Name::from_bytes(&[0u8; 67]).is_err());
    }
}
