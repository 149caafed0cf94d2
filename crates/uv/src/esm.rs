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
//!         lockbox-1      { ...same, encrypted to the first authorized host key... };
//!         lockbox-2      { ...the next authorized host key... }; ...
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
//!   svm-tools; for the TPM's wrapping key the ultravisor recomputes it from the key's
//!   modulus ([`fw::pem::pem_fingerprint`]: the SPKI PEM `tpm2_readpublic -f pem`
//!   and `cargo pef run --export-wrapping-key` write).
//! - The GCM entries use a 16-byte IV (PyCryptodome's default nonce), no AAD, 16-byte tag.
//! - The digests plaintext is an FDT with `/digests { algorithm = "SHA512"; rtas; kernel;
//!   kernel-size (u32); initrd; bootargs; }`: SHA-512 of the RTAS image, of the first
//!   `kernel-size` bytes of the loaded kernel, of the initrd after the ESM cpio, and of the
//!   bootargs without their NUL.
//!
//! Nodes are found by name, never by position.
//!
//! # Which lockbox is opened
//! svm-tools' `esm authorize` adds one lockbox per authorized host key (`lockbox-1`,
//! `lockbox-2`, ...) beside the owner's `origin-lockbox`, so the TPM's lockbox can stand
//! anywhere. Every child node of `/lockboxes` is a candidate, whatever its name; the one
//! opened is the **first, in tree order, whose `pubkey-fingerprint` is well formed
//! (`algorithm = "SHA256"`, 32-byte `hash`) and equals this TPM's wrapping-key
//! fingerprint** ([`EsmBlob::lockbox_for`]). Only that lockbox's `encrypted-symkey` is
//! checked (exactly 256 bytes; else [`EsmError::MissingSymkey`] /
//! [`EsmError::BadSymkeyLength`]); the others belong to other hosts and may use other key
//! sizes. Rules for the odd cases:
//! - **Duplicates** (two lockboxes with this TPM's fingerprint): the first is opened. They
//!   are normal: the owner's origin lockbox may be sealed to the same key (this project's
//!   builder does so). Nothing in the lockboxes is authenticated anyway: a wrong or swapped
//!   symkey fails the digests' GCM tag ([`EsmError::DecryptFailed`]), never opens.
//! - **A malformed fingerprint** in some lockbox is ignored when another lockbox matches
//!   (it cannot be recognised as this TPM's, and the matching one is authenticated by the
//!   GCM tag). When no lockbox matches it is the reason, [`EsmError::BadFingerprint`]
//!   ("lockbox fingerprint malformed"): the damaged lockbox may have been this TPM's, so
//!   "sealed to another TPM key" would not be known to be true.
//! - **No match**: [`EsmError::SealedToAnotherKey`], naming this TPM's fingerprint and
//!   each lockbox's, so a user can tell which key the blob was made for; the TPM is never
//!   asked to decrypt a lockbox that was not made for it.
#![forbid(unsafe_code)]
// Parses the ESM blob of an SVM: no panics, no silent wrap or truncation.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
#![deny(clippy::panic, clippy::arithmetic_side_effects)]
#![deny(clippy::cast_possible_truncation)]

use core::fmt;

use aes_gcm::aead::consts::U16;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::AeadInPlace;
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, KeyInit};
use sha2::{Digest, Sha512};

use dtb::{Dtb, DtbError, Node};

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
/// Path of the node whose children are the lockboxes.
pub const LOCKBOXES_PATH: &str = "/lockboxes";
/// Lockboxes whose fingerprints a [`LockboxMiss`] lists (more are counted, not listed).
pub const MAX_LISTED_LOCKBOXES: usize = 8;
/// Bytes of each fingerprint a rejection shows (as hex).
pub const FINGERPRINT_SHOWN: usize = 4;
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
    /// No `/lockboxes` node, or it has no child.
    MissingLockbox,
    /// The lockbox sealed to this TPM's key has no `encrypted-symkey`.
    MissingSymkey,
    /// The lockbox sealed to this TPM's key has an `encrypted-symkey` that is not exactly
    /// 256 bytes.
    BadSymkeyLength,
    /// No lockbox matches this TPM's key and at least one lockbox's `pubkey-fingerprint` is
    /// missing, not SHA256, or its hash is not 32 bytes.
    BadFingerprint(LockboxMiss),
    /// Every lockbox has a well-formed fingerprint and none is this TPM's wrapping key's.
    SealedToAnotherKey(LockboxMiss),
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
            EsmError::MissingLockbox => "ESM blob has no lockboxes",
            EsmError::MissingSymkey => "this TPM's lockbox has no encrypted symkey",
            EsmError::BadSymkeyLength => "encrypted symkey has the wrong size",
            EsmError::BadFingerprint(miss) => {
                return write!(f, "lockbox fingerprint malformed: {miss}")
            }
            EsmError::SealedToAnotherKey(miss) => {
                return write!(f, "sealed to another TPM key: {miss}")
            }
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

/// Why no lockbox was opened: this TPM's fingerprint and what the blob's lockboxes hold
/// (its `Display` completes `no lockbox matches ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockboxMiss {
    /// This TPM's wrapping-key fingerprint.
    pub ours: [u8; 32],
    /// Number of lockboxes in the blob.
    pub count: usize,
    /// The first bytes of each listed lockbox's fingerprint, in tree order (`None`:
    /// malformed); only the first `listed` entries are meaningful.
    pub seen: [Option<[u8; FINGERPRINT_SHOWN]>; MAX_LISTED_LOCKBOXES],
    /// How many entries of `seen` are filled (`min(count, MAX_LISTED_LOCKBOXES)`).
    pub listed: usize,
    /// Number of lockboxes with a malformed fingerprint.
    pub malformed: usize,
}

impl fmt::Display for LockboxMiss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn short(fp: &[u8]) -> fw::pem::HexPrefix<'_> {
            fw::pem::HexPrefix(fp.get(..FINGERPRINT_SHOWN).unwrap_or(fp))
        }
        write!(
            f,
            "no lockbox matches this TPM's wrapping key (fingerprint {}...; blob has {} lockbox{}",
            short(&self.ours),
            self.count,
            if self.count == 1 { "" } else { "es" }
        )?;
        for (i, fp) in self.seen.iter().take(self.listed).enumerate() {
            f.write_str(if i == 0 { ": " } else { ", " })?;
            match fp {
                Some(fp) => write!(f, "{}...", short(fp))?,
                None => f.write_str("malformed fingerprint")?,
            }
        }
        if let Some(more) = self.count.checked_sub(self.listed).filter(|&m| m > 0) {
            write!(f, ", and {more} more")?;
        }
        f.write_str(")")
    }
}

/// One child of `/lockboxes`, as found (only its fingerprint is read).
#[derive(Clone, Copy)]
pub struct Lockbox<'a> {
    node: Node<'a>,
}

impl<'a> Lockbox<'a> {
    /// The node name (`origin-lockbox`, `lockbox-1`, ...).
    pub fn name(&self) -> &'a str {
        self.node.name()
    }

    /// The `pubkey-fingerprint` hash, if well formed: a `pubkey-fingerprint` child with
    /// `algorithm = "SHA256"` and a 32-byte `hash`.
    pub fn fingerprint(&self) -> Option<&'a [u8; 32]> {
        let fp = self.node.child("pubkey-fingerprint")?;
        if fp.property_str("algorithm") != Some(FINGERPRINT_ALGORITHM) {
            return None;
        }
        fp.property("hash")
            .and_then(|h| <&[u8; 32]>::try_from(h).ok())
    }

    /// The raw `encrypted-symkey`, if present (not length-checked).
    pub fn encrypted_symkey_raw(&self) -> Option<&'a [u8]> {
        self.node.property("encrypted-symkey")
    }
}

/// The lockbox sealed to this TPM's key, checked: what the TPM's RSA_Decrypt unwraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TpmLockbox<'a> {
    /// Its node name.
    pub name: &'a str,
    /// Its 256-byte `encrypted-symkey` (RSA-OAEP-SHA256 of the 32-byte key).
    pub encrypted_symkey: &'a [u8; ENCRYPTED_SYMKEY_LEN],
    /// Its fingerprint (equal to the TPM's).
    pub fingerprint: &'a [u8; 32],
}

/// A parsed ESM blob: its lockboxes and sealed entries, borrowed from the blob bytes.
#[derive(Debug, Clone, Copy)]
pub struct EsmBlob<'a> {
    dtb: Dtb<'a>,
    digests: SealedEntry<'a>,
    files: Option<Dtb<'a>>,
}

impl<'a> EsmBlob<'a> {
    /// Parses and checks an ESM blob: `compatible = "ibm,esm"`, a `/lockboxes` node with at
    /// least one lockbox, and a well-formed `digests-fdt`. A `files-fdt`, when present, must
    /// be a valid FDT. Which lockbox is opened is decided by [`EsmBlob::lockbox_for`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self, EsmError> {
        let dtb = Dtb::new(bytes)?;
        if !dtb.root().is_compatible(ESM_COMPATIBLE) {
            return Err(EsmError::NotEsm);
        }
        let has_lockbox = dtb
            .find_node(LOCKBOXES_PATH)
            .is_some_and(|l| l.children().next().is_some());
        if !has_lockbox {
            return Err(EsmError::MissingLockbox);
        }
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
            digests,
            files,
        })
    }

    /// The device tree of the whole blob.
    pub fn dtb(&self) -> &Dtb<'a> {
        &self.dtb
    }

    /// The children of `/lockboxes`, in tree order.
    pub fn lockboxes(&self) -> impl Iterator<Item = Lockbox<'a>> + 'a {
        let dtb = self.dtb;
        dtb.find_node(LOCKBOXES_PATH)
            .into_iter()
            .flat_map(|l| l.children().map(|node| Lockbox { node }))
    }

    /// The lockbox sealed to the key with this fingerprint (for the TPM's wrapping key,
    /// [`fw::pem::pem_fingerprint`] of its modulus): the first in tree order whose
    /// well-formed fingerprint equals `fingerprint`, with its `encrypted-symkey` checked.
    /// The module docs give the rules for duplicates, malformed fingerprints and no match.
    pub fn lockbox_for(&self, fingerprint: &[u8; 32]) -> Result<TpmLockbox<'a>, EsmError> {
        let mut miss = LockboxMiss {
            ours: *fingerprint,
            count: 0,
            seen: [None; MAX_LISTED_LOCKBOXES],
            listed: 0,
            malformed: 0,
        };
        for lb in self.lockboxes() {
            let fp = lb.fingerprint();
            if let Some(found) = fp.filter(|h| *h == fingerprint) {
                let symkey = lb.encrypted_symkey_raw().ok_or(EsmError::MissingSymkey)?;
                let encrypted_symkey = <&[u8; ENCRYPTED_SYMKEY_LEN]>::try_from(symkey)
                    .map_err(|_| EsmError::BadSymkeyLength)?;
                return Ok(TpmLockbox {
                    name: lb.name(),
                    encrypted_symkey,
                    fingerprint: found,
                });
            }
            if fp.is_none() {
                miss.malformed = miss.malformed.saturating_add(1);
            }
            if let Some(slot) = miss.seen.get_mut(miss.count) {
                *slot = fp.and_then(|h| h.first_chunk::<FINGERPRINT_SHOWN>().copied());
                miss.listed = miss.listed.saturating_add(1);
            }
            miss.count = miss.count.saturating_add(1);
        }
        if miss.count == 0 {
            return Err(EsmError::MissingLockbox);
        }
        Err(if miss.malformed > 0 {
            EsmError::BadFingerprint(miss)
        } else {
            EsmError::SealedToAnotherKey(miss)
        })
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
/// ([`crate::cpio::split_esm_initrd`]).
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
#[allow(clippy::cast_possible_truncation, clippy::arithmetic_side_effects)] // test fixtures
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use dtb::writer::FdtWriter;

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
        let mut b = FdtWriter::new();
        b.begin_node("")
            .property_str("compatible", "ibm,esm")
            .begin_node("digests");
        b.property_str("algorithm", "SHA512")
            .property("rtas", &sha512(&DEFAULT_RTAS))
            .property("kernel", &sha512(&p.kernel[..kernel_size as usize]))
            .property_u32("kernel-size", kernel_size)
            .property("initrd", &sha512(&p.initrd))
            .property("bootargs", &sha512(p.bootargs.as_bytes()));
        b.end_node().end_node();
        b.finish().unwrap()
    }

    fn entry(b: &mut FdtWriter, name: &str, ct: &[u8], iv: &[u8], mac: &[u8]) {
        b.begin_node(name)
            .property_str("untrusted-comment", "")
            .property("iv", iv)
            .property("mac", mac)
            .property("ciphertext", ct)
            .property_str("algorithm", "AES256-GCM")
            .end_node();
    }

    fn blob_with(p: &Parts, symkey_len: usize, files: &[(&str, &[u8])]) -> Vec<u8> {
        let (ct, mac) = seal(&KEY, &[9; 16], &digests_fdt(p, 4096));
        let mut f = FdtWriter::new();
        f.begin_node("")
            .property_str("compatible", "ibm,esm-file")
            .begin_node("files");
        for (i, (name, data)) in files.iter().enumerate() {
            let iv = [i as u8; 16];
            let (fct, fmac) = seal(&KEY, &iv, data);
            entry(&mut f, name, &fct, &iv, &fmac);
        }
        f.end_node().end_node();
        let files_fdt = f.finish().unwrap();
        let mut b = FdtWriter::new();
        b.begin_node("").property_str("compatible", "ibm,esm");
        // svm-tools adds "file" and "digest" before "lockboxes": order must not matter.
        b.begin_node("file")
            .property("files-fdt", &files_fdt)
            .end_node();
        b.begin_node("digest");
        entry(&mut b, "digests-fdt", &ct, &[9; 16], &mac);
        b.end_node();
        b.begin_node("lockboxes");
        for name in ["origin-lockbox", "lockbox-1"] {
            b.begin_node(name)
                .property_str("untrusted-comment", name)
                .property(
                    "encrypted-symkey",
                    &alloc::vec![name.len() as u8; symkey_len],
                )
                .begin_node("pubkey-fingerprint")
                .property_str("algorithm", "SHA256")
                .property("hash", &[name.len() as u8; 32])
                .end_node()
                .end_node();
        }
        b.end_node().end_node();
        b.finish().unwrap()
    }

    #[test]
    fn parse_decrypt_verify() {
        let p = parts();
        let blob = blob_with(&p, 256, &[("file-1", b"secret one"), ("k", b"")]);
        let esm = EsmBlob::parse(&blob).unwrap();
        let lb = esm.lockbox_for(&[9u8; 32]).unwrap();
        assert_eq!(lb.encrypted_symkey, &[9u8; 256]);
        assert_eq!((lb.name, lb.fingerprint), ("lockbox-1", &[9u8; 32]));
        let origin = esm.lockbox_for(&[14u8; 32]).unwrap();
        assert_eq!(origin.name, "origin-lockbox");
        assert_eq!(origin.encrypted_symkey, &[14u8; 256]);
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
        for len in [255, 512] {
            let blob = blob_with(&p, len, &[]);
            let esm = EsmBlob::parse(&blob).unwrap();
            assert_eq!(esm.lockbox_for(&[9; 32]), Err(EsmError::BadSymkeyLength));
        }
        assert!(matches!(
            EsmBlob::parse(b"not a dtb at all, not at all......................"),
            Err(EsmError::Dtb(_))
        ));
        // Not ibm,esm.
        let mut b = FdtWriter::new();
        b.begin_node("")
            .property_str("compatible", "ibm,esm-file")
            .end_node();
        assert_eq!(
            EsmBlob::parse(&b.finish().unwrap()).err(),
            Some(EsmError::NotEsm)
        );
        // No /lockboxes, and an empty one.
        let mut b = FdtWriter::new();
        b.begin_node("")
            .property_str("compatible", "ibm,esm")
            .end_node();
        assert_eq!(
            EsmBlob::parse(&b.finish().unwrap()).err(),
            Some(EsmError::MissingLockbox)
        );
        let mut b = FdtWriter::new();
        b.begin_node("").property_str("compatible", "ibm,esm");
        b.begin_node("lockboxes").end_node().end_node();
        assert_eq!(
            EsmBlob::parse(&b.finish().unwrap()).err(),
            Some(EsmError::MissingLockbox)
        );
        // A lockbox but no digests.
        let mut b = FdtWriter::new();
        b.begin_node("").property_str("compatible", "ibm,esm");
        b.begin_node("lockboxes")
            .begin_node("lockbox-1")
            .property("encrypted-symkey", &[0; 256]);
        b.begin_node("pubkey-fingerprint")
            .property_str("algorithm", "SHA256")
            .property("hash", &[0; 32])
            .end_node();
        b.end_node().end_node();
        let mut nodig = b.clone();
        nodig.end_node();
        assert_eq!(
            EsmBlob::parse(&nodig.finish().unwrap()).err(),
            Some(EsmError::MissingDigests)
        );
        for (iv_len, mac_len, alg, want) in [
            (12, 16, "AES256-GCM", EsmError::BadEncryptedEntry),
            (16, 15, "AES256-GCM", EsmError::BadEncryptedEntry),
            (16, 16, "AES128-GCM", EsmError::UnsupportedAlgorithm),
        ] {
            let mut c = b.clone();
            c.begin_node("digest")
                .begin_node("digests-fdt")
                .property_str("algorithm", alg)
                .property("iv", &alloc::vec![0; iv_len])
                .property("mac", &alloc::vec![0; mac_len])
                .property("ciphertext", &[1, 2, 3])
                .end_node()
                .end_node()
                .end_node();
            assert_eq!(EsmBlob::parse(&c.finish().unwrap()).err(), Some(want));
        }
        let mut c = b.clone();
        c.begin_node("digest")
            .begin_node("digests-fdt")
            .property_str("algorithm", "AES256-GCM");
        c.property("iv", &[0; 16]).property("mac", &[0; 16]);
        c.property("ciphertext", &alloc::vec![0; MAX_DIGESTS_FDT + 1]);
        c.end_node().end_node().end_node();
        assert_eq!(
            EsmBlob::parse(&c.finish().unwrap()).err(),
            Some(EsmError::DigestsTooLarge)
        );
    }

    #[test]
    fn digests_field_checks() {
        let p = parts();
        let good = digests_fdt(&p, 100);
        assert!(Digests::parse(&good).is_ok());
        let mut b = FdtWriter::new();
        b.begin_node("")
            .begin_node("digests")
            .property_str("algorithm", "SHA512");
        b.property("rtas", &[0; 64]).property("kernel", &[0; 64]);
        b.property("kernel-size", &[0, 0, 1]); // 3 bytes: wrong
        b.property("initrd", &[0; 64])
            .property("bootargs", &[0; 64])
            .end_node()
            .end_node();
        assert_eq!(
            Digests::parse(&b.finish().unwrap()),
            Err(EsmError::BadDigests)
        );
        let mut b = FdtWriter::new();
        b.begin_node("")
            .begin_node("digests")
            .property_str("algorithm", "SHA384");
        b.end_node().end_node();
        assert_eq!(
            Digests::parse(&b.finish().unwrap()),
            Err(EsmError::UnsupportedAlgorithm)
        );
        let mut b = FdtWriter::new();
        b.begin_node("")
            .begin_node("digests")
            .property_str("algorithm", "SHA512");
        b.property("rtas", &[0; 63]).end_node().end_node();
        assert_eq!(
            Digests::parse(&b.finish().unwrap()),
            Err(EsmError::BadDigests)
        );
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
                let _ = esm.lockbox_for(&[9; 32]);
                let _ = esm.lockbox_for(&[0; 32]).map_err(|e| alloc::format!("{e}"));
                esm.lockboxes().for_each(|l| {
                    let _ = (l.name(), l.fingerprint(), l.encrypted_symkey_raw());
                });
                let _ = esm.decrypt_digests(&KEY);
                let mut out = [0u8; 8];
                let _ = esm.decrypt_file("f", &KEY, &mut out);
                let _ = esm.file_names().count();
            }
        }
        assert!(parsed > 0);
    }
    /// A blob made independently with PyCryptodome + libfdt and put in an initrd with GNU
    /// cpio, as svm-tools does (testdata/make_esm_fixture.py).
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

        let (blob, rest) = crate::cpio::split_esm_initrd(initrd).unwrap();
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
    /// A lockbox for [`blob_lockboxes`]: name, fingerprint node, `encrypted-symkey`.
    struct Lb {
        name: &'static str,
        fp: Fp,
        symkey: Option<Vec<u8>>,
    }

    enum Fp {
        Sha256([u8; 32]),
        Algorithm(&'static str),
        HashLen(usize),
        Missing,
    }

    fn lb(name: &'static str, fp: u8, symkey: u8) -> Lb {
        Lb {
            name,
            fp: Fp::Sha256([fp; 32]),
            symkey: Some(alloc::vec![symkey; 256]),
        }
    }

    /// A well-formed blob (digests of [`parts`] under [`KEY`]) with these lockboxes, in
    /// this tree order.
    fn blob_lockboxes(lbs: &[Lb]) -> Vec<u8> {
        let (ct, mac) = seal(&KEY, &[9; 16], &digests_fdt(&parts(), 4096));
        let mut b = FdtWriter::new();
        b.begin_node("").property_str("compatible", "ibm,esm");
        b.begin_node("lockboxes");
        for l in lbs {
            b.begin_node(l.name)
                .property_str("untrusted-comment", l.name);
            if let Some(k) = &l.symkey {
                b.property("encrypted-symkey", k);
            }
            match &l.fp {
                Fp::Sha256(h) => {
                    b.begin_node("pubkey-fingerprint")
                        .property_str("algorithm", "SHA256")
                        .property("hash", h)
                        .end_node();
                }
                Fp::Algorithm(a) => {
                    b.begin_node("pubkey-fingerprint")
                        .property_str("algorithm", a)
                        .property("hash", &[0xee; 32])
                        .end_node();
                }
                Fp::HashLen(n) => {
                    b.begin_node("pubkey-fingerprint")
                        .property_str("algorithm", "SHA256")
                        .property("hash", &alloc::vec![0xee; *n])
                        .end_node();
                }
                Fp::Missing => {}
            }
            b.end_node();
        }
        b.end_node();
        b.begin_node("digest");
        entry(&mut b, "digests-fdt", &ct, &[9; 16], &mac);
        b.end_node().end_node();
        b.finish().unwrap()
    }

    const OURS: [u8; 32] = [0x1a; 32];

    fn open_ours(lbs: &[Lb]) -> Result<(&'static str, u8), EsmError> {
        let blob = blob_lockboxes(lbs);
        let esm = EsmBlob::parse(&blob)?;
        let l = esm.lockbox_for(&OURS)?;
        assert_eq!(l.fingerprint, &OURS);
        let name = lbs.iter().find(|x| x.name == l.name).unwrap().name;
        Ok((name, l.encrypted_symkey[0]))
    }

    #[test]
    fn the_tpm_lockbox_is_found_wherever_it_stands() {
        for pos in 0..4 {
            let names = ["origin-lockbox", "lockbox-1", "lockbox-2", "lockbox-3"];
            let lbs: Vec<Lb> = (0..4)
                .map(|i| {
                    let fp = if i == pos { 0x1a } else { 0x90 + i as u8 };
                    lb(names[i], fp, i as u8 + 1)
                })
                .collect();
            assert_eq!(
                open_ours(&lbs),
                Ok((names[pos], pos as u8 + 1)),
                "TPM lockbox at position {pos}"
            );
        }
        // Any child name counts; a non-matching lockbox may hold an RSA-4096 (512-byte)
        // symkey or none at all: it is not this TPM's, so it is not checked.
        let lbs = [
            Lb {
                name: "lockbox-1",
                fp: Fp::Sha256([0x77; 32]),
                symkey: Some(alloc::vec![0; 512]),
            },
            Lb {
                name: "lockbox-2",
                fp: Fp::Sha256([0x78; 32]),
                symkey: None,
            },
            lb("recipient-for-host-b", 0x1a, 0x42),
        ];
        assert_eq!(open_ours(&lbs), Ok(("recipient-for-host-b", 0x42)));
    }

    #[test]
    fn duplicate_matches_open_the_first_in_tree_order() {
        let lbs = [
            lb("lockbox-2", 0x33, 1),
            lb("lockbox-1", 0x1a, 2),
            lb("origin-lockbox", 0x1a, 3),
        ];
        assert_eq!(open_ours(&lbs), Ok(("lockbox-1", 2)));
        // The first match is taken even if it is malformed: a damaged duplicate is refused,
        // not skipped over.
        let mut bad = lb("lockbox-1", 0x1a, 2);
        bad.symkey = Some(alloc::vec![2; 255]);
        let lbs = [bad, lb("origin-lockbox", 0x1a, 3)];
        assert_eq!(open_ours(&lbs), Err(EsmError::BadSymkeyLength));
    }

    #[test]
    fn no_match_is_sealed_to_another_key_with_the_fingerprints() {
        let mut lbs = [lb("lockbox-2", 0x9f, 1), lb("lockbox-1", 0x7a, 2)];
        lbs[0].fp = Fp::Sha256({
            let mut h = [0x9f; 32];
            h[1] = 0x8e;
            h
        });
        let err = open_ours(&lbs).unwrap_err();
        let EsmError::SealedToAnotherKey(miss) = err else {
            panic!("{err:?}");
        };
        assert_eq!((miss.count, miss.listed, miss.malformed), (2, 2, 0));
        assert_eq!(miss.ours, OURS);
        assert_eq!(
            alloc::format!("{err}"),
            "sealed to another TPM key: no lockbox matches this TPM's wrapping key \
             (fingerprint 1a1a1a1a...; blob has 2 lockboxes: 9f8e9f9f..., 7a7a7a7a...)"
        );
        // The same text through the SVM verdict's Rejection.
        assert!(alloc::format!("{}", crate::svm::Rejection::Esm(err))
            .starts_with("sealed to another TPM key: "));
        // One lockbox: singular; many: the first eight listed, the rest counted.
        let one = alloc::format!("{}", open_ours(&[lb("lockbox-1", 0x05, 1)]).unwrap_err());
        assert!(one.ends_with("blob has 1 lockbox: 05050505...)"), "{one}");
        let names = ["a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9", "a10"];
        let many: Vec<Lb> = names.iter().map(|n| lb(n, 0x20, 1)).collect();
        let text = alloc::format!("{}", open_ours(&many).unwrap_err());
        assert_eq!(text.matches("20202020...").count(), 8, "{text}");
        assert!(text.ends_with(", and 2 more)"), "{text}");
    }

    #[test]
    fn malformed_fingerprints_are_ignored_beside_a_match_and_reported_without_one() {
        let malformed = || {
            [
                Lb {
                    name: "a",
                    fp: Fp::Missing,
                    symkey: Some(alloc::vec![0; 256]),
                },
                Lb {
                    name: "b",
                    fp: Fp::Algorithm("SHA1"),
                    symkey: Some(alloc::vec![0; 256]),
                },
                Lb {
                    name: "c",
                    fp: Fp::HashLen(20),
                    symkey: Some(alloc::vec![0; 256]),
                },
                Lb {
                    name: "d",
                    fp: Fp::HashLen(33),
                    symkey: None,
                },
            ]
        };
        for (i, bad) in malformed().into_iter().enumerate() {
            // Beside a match (before or after it): ignored.
            assert_eq!(
                open_ours(&[bad, lb("lockbox-1", 0x1a, 7)]),
                Ok(("lockbox-1", 7)),
                "case {i}"
            );
        }
        for (i, bad) in malformed().into_iter().enumerate() {
            let err = open_ours(&[lb("lockbox-1", 0x55, 1), bad]).unwrap_err();
            let EsmError::BadFingerprint(miss) = err else {
                panic!("case {i}: {err:?}");
            };
            assert_eq!((miss.count, miss.malformed), (2, 1), "case {i}");
            assert_eq!(
                alloc::format!("{err}"),
                "lockbox fingerprint malformed: no lockbox matches this TPM's wrapping key \
                 (fingerprint 1a1a1a1a...; blob has 2 lockboxes: 55555555..., malformed fingerprint)"
            );
        }
    }

    #[test]
    fn the_matching_lockbox_must_hold_a_256_byte_symkey() {
        let mut l = lb("lockbox-1", 0x1a, 1);
        l.symkey = None;
        assert_eq!(open_ours(&[l]), Err(EsmError::MissingSymkey));
        for len in [0, 255, 257, 512] {
            let mut l = lb("lockbox-1", 0x1a, 1);
            l.symkey = Some(alloc::vec![1; len]);
            assert_eq!(open_ours(&[l]), Err(EsmError::BadSymkeyLength), "{len}");
        }
    }

    #[test]
    fn chosen_ranges() {
        let mut b = FdtWriter::new();
        b.begin_node("").begin_node("chosen");
        b.property_u64("linux,esm-blob-start", 0x3000_0000)
            .property_u32("linux,esm-blob-end", 0x3000_1000)
            .property_u32("linux,initrd-start", 0x2800_0000)
            .property_u32("linux,initrd-end", 0x27ff_0000);
        b.end_node().end_node();
        let blob = b.finish().unwrap();
        let dtb = Dtb::new(&blob).unwrap();
        assert_eq!(
            esm_blob_range(&dtb),
            Some(ChosenRange {
                start: 0x3000_0000,
                end: 0x3000_1000
            })
        );
        assert_eq!(initrd_range(&dtb), None, "inverted range refused");
        let dtb2 = Dtb::new(include_bytes!("../../dtb/testdata/qemu-powernv9.dtb")).unwrap();
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
