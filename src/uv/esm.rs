//! ESM blobs: parsing, decrypting and checking (portable, panic-free, allocation-free).
//!
//! The format is the one open-power/svm-tools writes (`svm-tool esm make`) and the
//! reference ultravisor reads. An ESM blob is a flattened device tree:
//!
//! ```text
//! / { compatible = "ibm,esm";
//!     lockboxes {
//!         origin-lockbox { untrusted-comment; encrypted-symkey;
//!                          pubkey-fingerprint { algorithm = "SHA256"; hash; }; };
//!         lockbox-1      { ...same, encrypted to the TPM's wrapping key... };
//!     };
//!     digest { digests-fdt { algorithm = "AES256-GCM"; untrusted-comment;
//!                            iv (16); mac (16); ciphertext; }; };
//!     file   { files-fdt = <nested FDT: / { compatible = "ibm,esm-file";
//!                  files { <name> { algorithm; untrusted-comment; iv; mac; ciphertext; }; }; }>; };
//! };
//! ```
//!
//! - `encrypted-symkey`: the 32-byte AES-256 key under RSA-OAEP (SHA-256, MGF1-SHA-256,
//!   empty label); 256 bytes for the 2048-bit wrapping key.
//! - `pubkey-fingerprint/hash`: SHA-256 of the recipient's public-key PEM file as given to
//!   svm-tools (a hint for finding a lockbox; nothing here can recompute it from a TPM key).
//! - The GCM entries use a 16-byte IV (PyCryptodome's default nonce), no AAD, 16-byte tag.
//! - The digests plaintext is an FDT with `/digests { algorithm = "SHA512"; rtas; kernel;
//!   kernel-size (u32); initrd; bootargs; }`: SHA-512 of the RTAS image, of the first
//!   `kernel-size` bytes of the loaded kernel, of the initrd after the ESM cpio, and of the
//!   bootargs without their NUL.
//!
//! Nodes are found by name, never by position. Like the reference ultravisor, the lockbox
//! used is `/lockboxes/lockbox-1` (the first recipient svm-tools authorizes, i.e. the TPM).
#![forbid(unsafe_code)]

use core::fmt;

use aes_gcm::aead::consts::U16;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::AeadInPlace;
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, KeyInit};
use sha2::{Digest, Sha512};

use crate::dtb::{Dtb, DtbError, Node};

/// The RTAS image the SVM gets by default: `mr r4,r3; lis r3,0; ori r3,r3,0xf000; sc 1; blr`
/// (the H_RTAS trampoline whose SHA-512 svm-tools stores as the `rtas` digest).
pub const DEFAULT_RTAS: [u8; 20] = [
    0x7c, 0x64, 0x1b, 0x78, 0x3c, 0x60, 0x00, 0x00, 0x60, 0x63, 0xf0, 0x00, 0x44, 0x00, 0x00, 0x22,
    0x4e, 0x80, 0x00, 0x20,
];
/// `compatible` of an ESM blob's root.
pub const ESM_COMPATIBLE: &str = "ibm,esm";
/// `compatible` of the nested files FDT's root.
pub const ESM_FILE_COMPATIBLE: &str = "ibm,esm-file";
/// The only symmetric algorithm svm-tools writes.
pub const GCM_ALGORITHM: &str = "AES256-GCM";
/// The only digest algorithm svm-tools writes.
pub const DIGEST_ALGORITHM: &str = "SHA512";
/// The only fingerprint algorithm svm-tools writes.
pub const FINGERPRINT_ALGORITHM: &str = "SHA256";
/// Path of the lockbox the ultravisor opens.
pub const LOCKBOX_PATH: &str = "/lockboxes/lockbox-1";
/// Path of the encrypted digests entry.
pub const DIGESTS_PATH: &str = "/digest/digests-fdt";
/// Size of the RSA-2048 OAEP `encrypted-symkey`.
pub const ENCRYPTED_SYMKEY_LEN: usize = 256;
/// Size of a GCM IV as svm-tools writes it.
pub const IV_LEN: usize = 16;
/// Size of a GCM tag.
pub const MAC_LEN: usize = 16;
/// Size of a SHA-512 digest.
pub const SHA512_LEN: usize = 64;
/// Largest digests FDT accepted (svm-tools' packed tree is about 600 bytes); it is
/// decrypted into a stack buffer of this size.
pub const MAX_DIGESTS_FDT: usize = 2048;

/// The 16-byte-nonce AES-256-GCM that svm-tools' PyCryptodome default gives.
type Aes256Gcm16 = AesGcm<Aes256, U16>;

/// Why an ESM blob was refused. The `Display` text completes `svm: rejected: <reason>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EsmError {
    /// The blob (or a nested FDT) is not a well-formed device tree.
    Dtb(DtbError),
    /// The root is not `compatible = "ibm,esm"`.
    NotEsm,
    /// No `/lockboxes/lockbox-1`, or it has no `encrypted-symkey`.
    MissingLockbox,
    /// `encrypted-symkey` is not exactly 256 bytes.
    BadSymkeyLength,
    /// `pubkey-fingerprint` is missing, not SHA256, or its hash is not 32 bytes.
    BadFingerprint,
    /// No `/digest/digests-fdt`.
    MissingDigests,
    /// An encrypted entry's `algorithm` is not `AES256-GCM`, or the digests are not SHA512.
    UnsupportedAlgorithm,
    /// An encrypted entry lacks `iv`/`mac`/`ciphertext` or has the wrong IV or tag length.
    BadEncryptedEntry,
    /// The encrypted digests are larger than [`MAX_DIGESTS_FDT`].
    DigestsTooLarge,
    /// The GCM tag did not verify (wrong key or tampered ciphertext).
    DecryptFailed,
    /// The decrypted digests lack a field or have one of the wrong size.
    BadDigests,
    /// The kernel given is shorter than the digests' `kernel-size`.
    KernelTooShort,
    /// SHA-512 of the kernel differs.
    KernelMismatch,
    /// SHA-512 of the initrd differs.
    InitrdMismatch,
    /// SHA-512 of the bootargs differs.
    BootargsMismatch,
    /// SHA-512 of the RTAS image differs.
    RtasMismatch,
    /// No files FDT, or no entry with that name in it.
    FileNotFound,
    /// The output buffer is smaller than the file.
    BufferTooSmall,
}

impl From<DtbError> for EsmError {
    fn from(e: DtbError) -> Self {
        EsmError::Dtb(e)
    }
}

impl fmt::Display for EsmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            EsmError::Dtb(e) => return write!(f, "ESM blob: {e}"),
            EsmError::NotEsm => "not an ESM blob",
            EsmError::MissingLockbox => "ESM blob has no lockbox-1",
            EsmError::BadSymkeyLength => "encrypted symkey has the wrong size",
            EsmError::BadFingerprint => "lockbox fingerprint malformed",
            EsmError::MissingDigests => "ESM blob has no digests",
            EsmError::UnsupportedAlgorithm => "ESM algorithm unsupported",
            EsmError::BadEncryptedEntry => "ESM encrypted entry malformed",
            EsmError::DigestsTooLarge => "ESM digests too large",
            EsmError::DecryptFailed => "ESM authentication failed",
            EsmError::BadDigests => "ESM digests malformed",
            EsmError::KernelTooShort => "kernel shorter than its digest",
            EsmError::KernelMismatch => "kernel digest mismatch",
            EsmError::InitrdMismatch => "initrd digest mismatch",
            EsmError::BootargsMismatch => "bootargs digest mismatch",
            EsmError::RtasMismatch => "rtas digest mismatch",
            EsmError::FileNotFound => "ESM file not found",
            EsmError::BufferTooSmall => "ESM file larger than buffer",
        };
        f.write_str(s)
    }
}

/// One AES-256-GCM entry (`digests-fdt` or a file): IV, tag and ciphertext, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct SealedEntry<'a> {
    /// The 16-byte GCM IV.
    pub iv: &'a [u8; IV_LEN],
    /// The 16-byte GCM tag.
    pub mac: &'a [u8; MAC_LEN],
    /// The ciphertext (same length as the plaintext).
    pub ciphertext: &'a [u8],
}

impl<'a> SealedEntry<'a> {
    /// Reads and checks an entry node: `algorithm = "AES256-GCM"`, 16-byte `iv` and `mac`.
    pub fn from_node(node: &Node<'a>) -> Result<Self, EsmError> {
        match node.property_str("algorithm") {
            Some(GCM_ALGORITHM) => {}
            Some(_) => return Err(EsmError::UnsupportedAlgorithm),
            None => return Err(EsmError::BadEncryptedEntry),
        }
        let iv = node
            .property("iv")
            .and_then(|v| <&[u8; IV_LEN]>::try_from(v).ok())
            .ok_or(EsmError::BadEncryptedEntry)?;
        let mac = node
            .property("mac")
            .and_then(|v| <&[u8; MAC_LEN]>::try_from(v).ok())
            .ok_or(EsmError::BadEncryptedEntry)?;
        let ciphertext = node
            .property("ciphertext")
            .ok_or(EsmError::BadEncryptedEntry)?;
        Ok(SealedEntry {
            iv,
            mac,
            ciphertext,
        })
    }

    /// Decrypts into the front of `out`, returning the plaintext length. On a bad tag the
    /// used part of `out` is zeroed and [`EsmError::DecryptFailed`] returned: no plaintext
    /// is ever released unauthenticated.
    pub fn decrypt_into(&self, symkey: &[u8; 32], out: &mut [u8]) -> Result<usize, EsmError> {
        let len = self.ciphertext.len();
        let buf = out.get_mut(..len).ok_or(EsmError::BufferTooSmall)?;
        buf.copy_from_slice(self.ciphertext);
        let cipher = Aes256Gcm16::new(GenericArray::from_slice(symkey));
        let res = cipher.decrypt_in_place_detached(
            GenericArray::from_slice(self.iv),
            &[],
            buf,
            GenericArray::from_slice(self.mac),
        );
        if res.is_err() {
            buf.fill(0);
            return Err(EsmError::DecryptFailed);
        }
        Ok(len)
    }
}

/// A parsed ESM blob: the lockbox it will open and its sealed entries, borrowed from the
/// blob bytes.
#[derive(Debug, Clone, Copy)]
pub struct EsmBlob<'a> {
    dtb: Dtb<'a>,
    encrypted_symkey: &'a [u8; ENCRYPTED_SYMKEY_LEN],
    fingerprint: &'a [u8; 32],
    digests: SealedEntry<'a>,
    files: Option<Dtb<'a>>,
}

impl<'a> EsmBlob<'a> {
    /// Parses and checks an ESM blob: `compatible = "ibm,esm"`, lockbox-1 with a 256-byte
    /// `encrypted-symkey` and a SHA256 `pubkey-fingerprint`, and a well-formed
    /// `digests-fdt`. A `files-fdt`, when present, must be a valid FDT.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, EsmError> {
        let dtb = Dtb::new(bytes)?;
        if !dtb.root().is_compatible(ESM_COMPATIBLE) {
            return Err(EsmError::NotEsm);
        }
        let lockbox = dtb
            .find_node(LOCKBOX_PATH)
            .ok_or(EsmError::MissingLockbox)?;
        let symkey = lockbox
            .property("encrypted-symkey")
            .ok_or(EsmError::MissingLockbox)?;
        let encrypted_symkey = <&[u8; ENCRYPTED_SYMKEY_LEN]>::try_from(symkey)
            .map_err(|_| EsmError::BadSymkeyLength)?;
        let fp = lockbox
            .child("pubkey-fingerprint")
            .ok_or(EsmError::BadFingerprint)?;
        if fp.property_str("algorithm") != Some(FINGERPRINT_ALGORITHM) {
            return Err(EsmError::BadFingerprint);
        }
        let fingerprint = fp
            .property("hash")
            .and_then(|h| <&[u8; 32]>::try_from(h).ok())
            .ok_or(EsmError::BadFingerprint)?;
        let digests_node = dtb
            .find_node(DIGESTS_PATH)
            .ok_or(EsmError::MissingDigests)?;
        let digests = SealedEntry::from_node(&digests_node)?;
        if digests.ciphertext.len() > MAX_DIGESTS_FDT {
            return Err(EsmError::DigestsTooLarge);
        }
        let files = match dtb.find_node("/file").and_then(|n| n.property("files-fdt")) {
            Some(raw) => Some(Dtb::new(raw)?),
            None => None,
        };
        Ok(EsmBlob {
            dtb,
            encrypted_symkey,
            fingerprint,
            digests,
            files,
        })
    }

    /// The device tree of the whole blob.
    pub fn dtb(&self) -> &Dtb<'a> {
        &self.dtb
    }

    /// lockbox-1's `encrypted-symkey`: what the TPM's RSA_Decrypt (OAEP-SHA256) unwraps.
    pub fn encrypted_symkey(&self) -> &'a [u8; ENCRYPTED_SYMKEY_LEN] {
        self.encrypted_symkey
    }

    /// lockbox-1's `pubkey-fingerprint` hash (SHA-256 of the recipient's PEM file).
    pub fn fingerprint(&self) -> &'a [u8; 32] {
        self.fingerprint
    }

    /// The sealed digests entry.
    pub fn digests_entry(&self) -> &SealedEntry<'a> {
        &self.digests
    }

    /// Decrypts and parses the digests with the unwrapped symmetric key.
    pub fn decrypt_digests(&self, symkey: &[u8; 32]) -> Result<Digests, EsmError> {
        let mut buf = [0u8; MAX_DIGESTS_FDT];
        let n = self.digests.decrypt_into(symkey, &mut buf)?;
        let plain = buf.get(..n).ok_or(EsmError::BadDigests)?;
        let res = Digests::parse(plain);
        buf.fill(0);
        res
    }

    /// Finds the file entry `name` in the nested files FDT (`/files/<name>`).
    pub fn file_entry(&self, name: &str) -> Result<SealedEntry<'a>, EsmError> {
        let files = self.files.as_ref().ok_or(EsmError::FileNotFound)?;
        let node = files
            .find_node("/files")
            .and_then(|f| f.children().find(|c| c.name() == name))
            .ok_or(EsmError::FileNotFound)?;
        SealedEntry::from_node(&node)
    }

    /// Decrypts file `name` into `out`, returning its length.
    pub fn decrypt_file(
        &self,
        name: &str,
        symkey: &[u8; 32],
        out: &mut [u8],
    ) -> Result<usize, EsmError> {
        self.file_entry(name)?.decrypt_into(symkey, out)
    }

    /// Names of the attached files, in order.
    pub fn file_names(&self) -> impl Iterator<Item = &'a str> + 'a {
        let files = self.files.and_then(|d| d.find_node("/files"));
        files
            .into_iter()
            .flat_map(|f| f.children().map(|c| c.name()))
    }
}

/// A guest-physical range named in the SVM's `/chosen`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChosenRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

fn chosen_range(svm_fdt: &Dtb<'_>, start: &str, end: &str) -> Option<ChosenRange> {
    let chosen = svm_fdt.find_node("/chosen")?;
    let start = chosen.property_number(start)?;
    let end = chosen.property_number(end)?;
    (start <= end).then_some(ChosenRange { start, end })
}

/// The ESM blob's range when a boot wrapper placed it separately: `/chosen`
/// `linux,esm-blob-start` / `linux,esm-blob-end` (one or two cells each). `None` when
/// either is absent or the range is inverted; then look in the initrd
/// ([`crate::uv::cpio::split_esm_initrd`]).
pub fn esm_blob_range(svm_fdt: &Dtb<'_>) -> Option<ChosenRange> {
    chosen_range(svm_fdt, "linux,esm-blob-start", "linux,esm-blob-end")
}

/// The initrd's range: `/chosen` `linux,initrd-start` / `linux,initrd-end`.
pub fn initrd_range(svm_fdt: &Dtb<'_>) -> Option<ChosenRange> {
    chosen_range(svm_fdt, "linux,initrd-start", "linux,initrd-end")
}

/// The decrypted `/digests` of an ESM blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    /// SHA-512 of the RTAS image given to the SVM.
    pub rtas: [u8; SHA512_LEN],
    /// SHA-512 of the first `kernel_size` bytes of the SVM kernel.
    pub kernel: [u8; SHA512_LEN],
    /// How many kernel bytes `kernel` covers.
    pub kernel_size: u32,
    /// SHA-512 of the SVM initrd (after the ESM cpio).
    pub initrd: [u8; SHA512_LEN],
    /// SHA-512 of the bootargs, without the terminating NUL.
    pub bootargs: [u8; SHA512_LEN],
}

fn sha512(data: &[u8]) -> [u8; SHA512_LEN] {
    Sha512::digest(data).into()
}

impl Digests {
    /// Parses a decrypted digests FDT (`/digests`, `algorithm = "SHA512"`, four 64-byte
    /// digests and a 4-byte `kernel-size`).
    pub fn parse(plain: &[u8]) -> Result<Self, EsmError> {
        let dtb = Dtb::new(plain)?;
        let node = dtb.find_node("/digests").ok_or(EsmError::BadDigests)?;
        match node.property_str("algorithm") {
            Some(DIGEST_ALGORITHM) => {}
            Some(_) => return Err(EsmError::UnsupportedAlgorithm),
            None => return Err(EsmError::BadDigests),
        }
        let get = |name: &str| -> Result<[u8; SHA512_LEN], EsmError> {
            node.property(name)
                .and_then(|v| <[u8; SHA512_LEN]>::try_from(v).ok())
                .ok_or(EsmError::BadDigests)
        };
        Ok(Digests {
            rtas: get("rtas")?,
            kernel: get("kernel")?,
            kernel_size: node
                .property_u32("kernel-size")
                .ok_or(EsmError::BadDigests)?,
            initrd: get("initrd")?,
            bootargs: get("bootargs")?,
        })
    }

    /// Checks the SVM's components; the error names the first that differs, in the order
    /// kernel, initrd, bootargs, rtas.
    ///
    /// `kernel` is the loaded kernel (at least `kernel_size` bytes; only those are hashed),
    /// `initrd` the SVM initrd after the ESM cpio, `bootargs` the `/chosen/bootargs` value
    /// (one trailing NUL, if present, is not hashed), `rtas` the RTAS image (usually
    /// [`DEFAULT_RTAS`]).
    pub fn verify(
        &self,
        kernel: &[u8],
        initrd: &[u8],
        bootargs: &[u8],
        rtas: &[u8],
    ) -> Result<(), EsmError> {
        let k = kernel
            .get(..self.kernel_size as usize)
            .ok_or(EsmError::KernelTooShort)?;
        if sha512(k) != self.kernel {
            return Err(EsmError::KernelMismatch);
        }
        if sha512(initrd) != self.initrd {
            return Err(EsmError::InitrdMismatch);
        }
        let args = match bootargs.split_last() {
            Some((0, rest)) => rest,
            _ => bootargs,
        };
        if sha512(args) != self.bootargs {
            return Err(EsmError::BootargsMismatch);
        }
        if sha512(rtas) != self.rtas {
            return Err(EsmError::RtasMismatch);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtb::test_builder::FdtBuilder;
    use alloc::vec::Vec;

    const KEY: [u8; 32] = [0x42; 32];

    fn seal(key: &[u8; 32], iv: &[u8; 16], plain: &[u8]) -> (Vec<u8>, [u8; 16]) {
        let mut buf = Vec::from(plain);
        let tag = Aes256Gcm16::new(GenericArray::from_slice(key))
            .encrypt_in_place_detached(GenericArray::from_slice(iv), &[], &mut buf)
            .unwrap();
        (buf, tag.into())
    }

    struct Parts {
        kernel: Vec<u8>,
        initrd: Vec<u8>,
        bootargs: &'static str,
    }

    fn parts() -> Parts {
        Parts {
            kernel: (0..5000u32).map(|i| (i % 251) as u8).collect(),
            initrd: (0..777u32).map(|i| (i * 3) as u8).collect(),
            bootargs: "console=hvc0 svm=on",
        }
    }

    fn digests_fdt(p: &Parts, kernel_size: u32) -> Vec<u8> {
        let mut b = FdtBuilder::new();
        b.begin("")
            .prop_str("compatible", "ibm,esm")
            .begin("digests");
        b.prop_str("algorithm", "SHA512")
            .prop("rtas", &sha512(&DEFAULT_RTAS))
            .prop("kernel", &sha512(&p.kernel[..kernel_size as usize]))
            .prop_u32("kernel-size", kernel_size)
            .prop("initrd", &sha512(&p.initrd))
            .prop("bootargs", &sha512(p.bootargs.as_bytes()));
        b.end().end();
        b.finish()
    }

    fn entry(b: &mut FdtBuilder, name: &str, ct: &[u8], iv: &[u8], mac: &[u8]) {
        b.begin(name)
            .prop_str("untrusted-comment", "")
            .prop("iv", iv)
            .prop("mac", mac)
            .prop("ciphertext", ct)
            .prop_str("algorithm", "AES256-GCM")
            .end();
    }

    fn blob_with(p: &Parts, symkey_len: usize, files: &[(&str, &[u8])]) -> Vec<u8> {
        let (ct, mac) = seal(&KEY, &[9; 16], &digests_fdt(p, 4096));
        let mut f = FdtBuilder::new();
        f.begin("")
            .prop_str("compatible", "ibm,esm-file")
            .begin("files");
        for (i, (name, data)) in files.iter().enumerate() {
            let iv = [i as u8; 16];
            let (fct, fmac) = seal(&KEY, &iv, data);
            entry(&mut f, name, &fct, &iv, &fmac);
        }
        f.end().end();
        let files_fdt = f.finish();
        let mut b = FdtBuilder::new();
        b.begin("").prop_str("compatible", "ibm,esm");
        // svm-tools adds "file" and "digest" before "lockboxes": order must not matter.
        b.begin("file").prop("files-fdt", &files_fdt).end();
        b.begin("digest");
        entry(&mut b, "digests-fdt", &ct, &[9; 16], &mac);
        b.end();
        b.begin("lockboxes");
        for name in ["origin-lockbox", "lockbox-1"] {
            b.begin(name)
                .prop_str("untrusted-comment", name)
                .prop(
                    "encrypted-symkey",
                    &alloc::vec![name.len() as u8; symkey_len],
                )
                .begin("pubkey-fingerprint")
                .prop_str("algorithm", "SHA256")
                .prop("hash", &[name.len() as u8; 32])
                .end()
                .end();
        }
        b.end().end();
        b.finish()
    }

    #[test]
    fn parse_decrypt_verify() {
        let p = parts();
        let blob = blob_with(&p, 256, &[("file-1", b"secret one"), ("k", b"")]);
        let esm = EsmBlob::parse(&blob).unwrap();
        assert_eq!(esm.encrypted_symkey(), &[9u8; 256]);
        assert_eq!(esm.fingerprint(), &[9u8; 32]);
        let d = esm.decrypt_digests(&KEY).unwrap();
        assert_eq!(d.kernel_size, 4096);
        // The kernel may be longer than kernel-size: only the prefix counts.
        d.verify(&p.kernel, &p.initrd, p.bootargs.as_bytes(), &DEFAULT_RTAS)
            .unwrap();
        let mut args_nul = Vec::from(p.bootargs.as_bytes());
        args_nul.push(0);
        d.verify(&p.kernel, &p.initrd, &args_nul, &DEFAULT_RTAS)
            .unwrap();
        let mut out = [0u8; 32];
        let n = esm.decrypt_file("file-1", &KEY, &mut out).unwrap();
        assert_eq!(&out[..n], b"secret one");
        assert_eq!(esm.decrypt_file("k", &KEY, &mut out), Ok(0));
        assert_eq!(
            esm.decrypt_file("file-2", &KEY, &mut out),
            Err(EsmError::FileNotFound)
        );
        assert_eq!(
            esm.decrypt_file("file-1", &KEY, &mut out[..5]),
            Err(EsmError::BufferTooSmall)
        );
        assert_eq!(esm.file_names().collect::<Vec<_>>(), ["file-1", "k"]);
    }

    #[test]
    fn each_tampering_has_its_reason() {
        let p = parts();
        let blob = blob_with(&p, 256, &[]);
        let esm = EsmBlob::parse(&blob).unwrap();
        let d = esm.decrypt_digests(&KEY).unwrap();
        let args = p.bootargs.as_bytes();
        let mut k = p.kernel.clone();
        k[4095] ^= 1;
        assert_eq!(
            d.verify(&k, &p.initrd, args, &DEFAULT_RTAS),
            Err(EsmError::KernelMismatch)
        );
        // A byte past kernel-size is not covered.
        let mut k = p.kernel.clone();
        k[4096] ^= 1;
        assert_eq!(d.verify(&k, &p.initrd, args, &DEFAULT_RTAS), Ok(()));
        assert_eq!(
            d.verify(&p.kernel[..4095], &p.initrd, args, &DEFAULT_RTAS),
            Err(EsmError::KernelTooShort)
        );
        assert_eq!(
            d.verify(&p.kernel, &p.initrd[1..], args, &DEFAULT_RTAS),
            Err(EsmError::InitrdMismatch)
        );
        assert_eq!(
            d.verify(&p.kernel, &p.initrd, b"console=hvc0 svm=off", &DEFAULT_RTAS),
            Err(EsmError::BootargsMismatch)
        );
        let mut rtas = DEFAULT_RTAS;
        rtas[19] = 0;
        assert_eq!(
            d.verify(&p.kernel, &p.initrd, args, &rtas),
            Err(EsmError::RtasMismatch)
        );
        assert_eq!(
            alloc::format!("{}", EsmError::KernelMismatch),
            "kernel digest mismatch"
        );
        // Wrong key, and each ciphertext/IV/tag bit flipped: authentication fails.
        assert_eq!(
            esm.decrypt_digests(&[0x43; 32]),
            Err(EsmError::DecryptFailed)
        );
        let ct = esm.digests_entry().ciphertext;
        let ct_off = ct.as_ptr() as usize - blob.as_ptr() as usize;
        for (off, what) in [
            (ct_off + 17, "ciphertext"),
            (
                esm.digests_entry().iv.as_ptr() as usize - blob.as_ptr() as usize,
                "iv",
            ),
            (
                esm.digests_entry().mac.as_ptr() as usize - blob.as_ptr() as usize + 15,
                "mac",
            ),
        ] {
            let mut bad = blob.clone();
            bad[off] ^= 0x10;
            let esm = EsmBlob::parse(&bad).unwrap();
            assert_eq!(
                esm.decrypt_digests(&KEY),
                Err(EsmError::DecryptFailed),
                "{what}"
            );
        }
    }

    #[test]
    fn structural_rejections() {
        let p = parts();
        assert_eq!(
            EsmBlob::parse(&blob_with(&p, 255, &[])).err(),
            Some(EsmError::BadSymkeyLength)
        );
        assert_eq!(
            EsmBlob::parse(&blob_with(&p, 512, &[])).err(),
            Some(EsmError::BadSymkeyLength)
        );
        assert!(matches!(
            EsmBlob::parse(b"not a dtb at all, not at all......................"),
            Err(EsmError::Dtb(_))
        ));
        // Not ibm,esm.
        let mut b = FdtBuilder::new();
        b.begin("").prop_str("compatible", "ibm,esm-file").end();
        assert_eq!(EsmBlob::parse(&b.finish()).err(), Some(EsmError::NotEsm));
        // No lockbox-1 (only the origin lockbox).
        let mut b = FdtBuilder::new();
        b.begin("").prop_str("compatible", "ibm,esm");
        b.begin("lockboxes")
            .begin("origin-lockbox")
            .prop("encrypted-symkey", &[0; 256]);
        b.end().end().end();
        assert_eq!(
            EsmBlob::parse(&b.finish()).err(),
            Some(EsmError::MissingLockbox)
        );
        // Lockbox without fingerprint; then without digests.
        let mut b = FdtBuilder::new();
        b.begin("").prop_str("compatible", "ibm,esm");
        b.begin("lockboxes")
            .begin("lockbox-1")
            .prop("encrypted-symkey", &[0; 256]);
        b.end().end().end();
        assert_eq!(
            EsmBlob::parse(&b.finish()).err(),
            Some(EsmError::BadFingerprint)
        );
        let mut b = FdtBuilder::new();
        b.begin("").prop_str("compatible", "ibm,esm");
        b.begin("lockboxes")
            .begin("lockbox-1")
            .prop("encrypted-symkey", &[0; 256]);
        b.begin("pubkey-fingerprint")
            .prop_str("algorithm", "SHA256")
            .prop("hash", &[0; 32])
            .end();
        b.end().end();
        let mut nodig = b.clone();
        nodig.end();
        assert_eq!(
            EsmBlob::parse(&nodig.finish()).err(),
            Some(EsmError::MissingDigests)
        );
        for (iv_len, mac_len, alg, want) in [
            (12, 16, "AES256-GCM", EsmError::BadEncryptedEntry),
            (16, 15, "AES256-GCM", EsmError::BadEncryptedEntry),
            (16, 16, "AES128-GCM", EsmError::UnsupportedAlgorithm),
        ] {
            let mut c = b.clone();
            c.begin("digest")
                .begin("digests-fdt")
                .prop_str("algorithm", alg)
                .prop("iv", &alloc::vec![0; iv_len])
                .prop("mac", &alloc::vec![0; mac_len])
                .prop("ciphertext", &[1, 2, 3])
                .end()
                .end()
                .end();
            assert_eq!(EsmBlob::parse(&c.finish()).err(), Some(want));
        }
        let mut c = b.clone();
        c.begin("digest")
            .begin("digests-fdt")
            .prop_str("algorithm", "AES256-GCM");
        c.prop("iv", &[0; 16]).prop("mac", &[0; 16]);
        c.prop("ciphertext", &alloc::vec![0; MAX_DIGESTS_FDT + 1]);
        c.end().end().end();
        assert_eq!(
            EsmBlob::parse(&c.finish()).err(),
            Some(EsmError::DigestsTooLarge)
        );
    }

    #[test]
    fn digests_field_checks() {
        let p = parts();
        let good = digests_fdt(&p, 100);
        assert!(Digests::parse(&good).is_ok());
        let mut b = FdtBuilder::new();
        b.begin("").begin("digests").prop_str("algorithm", "SHA512");
        b.prop("rtas", &[0; 64]).prop("kernel", &[0; 64]);
        b.prop("kernel-size", &[0, 0, 1]); // 3 bytes: wrong
        b.prop("initrd", &[0; 64])
            .prop("bootargs", &[0; 64])
            .end()
            .end();
        assert_eq!(Digests::parse(&b.finish()), Err(EsmError::BadDigests));
        let mut b = FdtBuilder::new();
        b.begin("").begin("digests").prop_str("algorithm", "SHA384");
        b.end().end();
        assert_eq!(
            Digests::parse(&b.finish()),
            Err(EsmError::UnsupportedAlgorithm)
        );
        let mut b = FdtBuilder::new();
        b.begin("").begin("digests").prop_str("algorithm", "SHA512");
        b.prop("rtas", &[0; 63]).end().end();
        assert_eq!(Digests::parse(&b.finish()), Err(EsmError::BadDigests));
    }

    /// Mutated blobs never panic the parser or the decryptor.
    #[test]
    fn fuzz_parse_never_panics() {
        let p = parts();
        let base = blob_with(&p, 256, &[("f", b"abc")]);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut parsed = 0;
        for _ in 0..3000 {
            let mut b = base.clone();
            for _ in 0..1 + (x % 3) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let k = (x % b.len() as u64) as usize;
                b[k] ^= (x >> 32) as u8 | 1;
            }
            if let Ok(esm) = EsmBlob::parse(&b) {
                parsed += 1;
                let _ = esm.decrypt_digests(&KEY);
                let mut out = [0u8; 8];
                let _ = esm.decrypt_file("f", &KEY, &mut out);
                let _ = esm.file_names().count();
            }
        }
        assert!(parsed > 0);
    }
    /// A blob made independently with PyCryptodome + libfdt and put in an initrd with GNU
    /// cpio, as svm-tools does (src/testdata/make_esm_fixture.py).
    #[test]
    fn pycryptodome_libfdt_gnu_cpio_fixture() {
        let initrd = include_bytes!("../testdata/esm-pycryptodome.initrd");
        let key_hex = include_str!("../testdata/esm-pycryptodome.key").trim();
        let mut key = [0u8; 32];
        for (i, b) in key.iter_mut().enumerate() {
            *b = u8::from_str_radix(&key_hex[2 * i..2 * i + 2], 16).unwrap();
        }
        // The SVM parts the script hashed (svm_parts()).
        let kernel: Vec<u8> = (0..40).flat_map(|_| 0..=255u8).collect();
        let svm_initrd = b"pefbox svm initrd\n".repeat(50);
        let bootargs = b"console=hvc0 root=/dev/ram0 svm=on\0";

        let (blob, rest) = crate::uv::cpio::split_esm_initrd(initrd).unwrap();
        assert_eq!(
            blob,
            &include_bytes!("../testdata/esm-pycryptodome.dtb")[..]
        );
        assert_eq!(rest, &svm_initrd[..]);
        let esm = EsmBlob::parse(blob).unwrap();
        let d = esm.decrypt_digests(&key).unwrap();
        assert_eq!(d.kernel_size, 10240);
        d.verify(&kernel, rest, bootargs, &DEFAULT_RTAS).unwrap();
        assert_eq!(
            d.verify(&kernel, rest, b"console=hvc0\0", &DEFAULT_RTAS),
            Err(EsmError::BootargsMismatch)
        );
        let mut out = [0u8; 64];
        let n = esm.decrypt_file("file-1", &key, &mut out).unwrap();
        assert_eq!(&out[..n], b"secret attachment\n");
        let mut wrong = key;
        wrong[31] ^= 1;
        assert_eq!(esm.decrypt_digests(&wrong), Err(EsmError::DecryptFailed));
        assert_eq!(
            esm.decrypt_file("file-1", &wrong, &mut out),
            Err(EsmError::DecryptFailed)
        );
        assert!(
            out.iter().all(|&b| b == 0),
            "no unauthenticated plaintext left"
        );
    }
    #[test]
    fn chosen_ranges() {
        let mut b = FdtBuilder::new();
        b.begin("").begin("chosen");
        b.prop_u64("linux,esm-blob-start", 0x3000_0000)
            .prop_u32("linux,esm-blob-end", 0x3000_1000)
            .prop_u32("linux,initrd-start", 0x2800_0000)
            .prop_u32("linux,initrd-end", 0x27ff_0000);
        b.end().end();
        let blob = b.finish();
        let dtb = Dtb::new(&blob).unwrap();
        assert_eq!(
            esm_blob_range(&dtb),
            Some(ChosenRange {
                start: 0x3000_0000,
                end: 0x3000_1000
            })
        );
        assert_eq!(initrd_range(&dtb), None, "inverted range refused");
        let dtb2 = Dtb::new(include_bytes!("../testdata/qemu-powernv9.dtb")).unwrap();
        assert_eq!(esm_blob_range(&dtb2), None);
        assert_eq!(
            initrd_range(&dtb2),
            Some(ChosenRange {
                start: 0x2800_0000,
                end: 0x2800_03e8
            })
        );
    }
}
