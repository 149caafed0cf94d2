//! Host-side ESM blob builder: writes the format open-power/svm-tools writes
//! (`svm-tool esm make` + `svm-tool svm add`), which `pefbox::uv::esm` parses.
//!
//! What is established from svm-tools' sources and followed here:
//! - root `compatible = "ibm,esm"`, nodes `lockboxes`, `digest`, `file` (the order
//!   libfdt leaves them in); lockboxes `origin-lockbox` and one `lockbox-<i>` per
//!   authorized host key (`esm authorize`, i = 1, 2, ...; in tree order the last authorized
//!   comes first, `origin-lockbox` last), each with
//!   `untrusted-comment`, `encrypted-symkey` (RSA-OAEP, SHA-256, MGF1-SHA-256, empty label,
//!   of the 32-byte key) and a `pubkey-fingerprint` node (`algorithm = "SHA256"`,
//!   `hash` = SHA-256 of the recipient's public-key PEM file bytes);
//! - `/digest/digests-fdt` and `/files/<name>` entries: `algorithm = "AES256-GCM"`,
//!   `untrusted-comment`, `ciphertext`, `iv` (16 random bytes: PyCryptodome's default GCM
//!   nonce), `mac` (16-byte tag), no AAD;
//! - the digests plaintext: an FDT, root `compatible = "ibm,esm"`, `/digests` with
//!   `algorithm = "SHA512"`, `rtas`, `kernel`, `kernel-size` (4-byte big-endian), `initrd`,
//!   `bootargs` (hashed without a NUL);
//! - `/file/files-fdt`: a nested FDT, root `compatible = "ibm,esm-file"`, node `files`;
//!   absent when there are no files (svm-tools only creates it on the first attach);
//! - the initrd wrapper: a newc cpio of `.`, `opt`, `opt/ibm`, `opt/ibm/pef`,
//!   `opt/ibm/pef/<blob file name>`, `TRAILER!!!`, padded to 512 bytes, then the initrd.
//!
//! Where this differs or could not be established:
//! - svm-tools' `origin-lockbox` holds the key under the *owner's* RSA key; this builder
//!   has only the recipients' keys, so it seals the origin lockbox to the first recipient
//!   (svm-tools' `esm authorize` would refuse a second lockbox for an already-present key,
//!   its validator does not check; the ultravisor opens the first match in tree order).
//! - The kernel digest: svm-tools hashes `objcopy -O binary -S vmlinux` and stores its size;
//!   here `kernel` is taken to be that loadable image already.
//! - The blob's file name inside the cpio is whatever file svm-tools was given; this uses
//!   the name from svm-tools' documentation, [`ESM_BLOB_NAME`]. cpio inode numbers, modes
//!   and mtimes are the builder's own (the ultravisor reads only names and sizes).

use aes_gcm::aead::consts::U16;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::AeadInPlace;
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, KeyInit};
use rand::{CryptoRng, RngCore};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, RsaPublicKey};
use sha2::{Digest, Sha256, Sha512};

use dtb::writer::FdtWriter;

/// The blob's file name inside `opt/ibm/pef/` (the name svm-tools' documentation uses).
pub const ESM_BLOB_NAME: &str = "test_esmb.dtb";
/// The directory svm-tools puts the blob in, inside the cpio.
pub const PEF_DIR: &str = "opt/ibm/pef";

type Aes256Gcm16 = AesGcm<Aes256, U16>;

/// Parses an RSA public key PEM: SPKI ("BEGIN PUBLIC KEY", what `tpm2_readpublic -f pem`
/// writes) or PKCS#1 ("BEGIN RSA PUBLIC KEY").
pub fn parse_public_key_pem(pem: &str) -> Result<RsaPublicKey, String> {
    if pem.contains("BEGIN RSA PUBLIC KEY") {
        RsaPublicKey::from_pkcs1_pem(pem).map_err(|e| format!("PKCS#1 public key: {e}"))
    } else {
        RsaPublicKey::from_public_key_pem(pem).map_err(|e| format!("SPKI public key: {e}"))
    }
}

/// svm-tools' rule for file (node) names: a letter, then up to 30 of `[0-9A-Za-z,._+-]`.
pub fn valid_file_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && name.len() <= 31
        && chars.all(|c| c.is_ascii_alphanumeric() || ",._+-".contains(c))
}

/// The digests FDT (plaintext of `digests-fdt`) for these SVM components.
pub fn digests_fdt(
    kernel: &[u8],
    initrd: &[u8],
    bootargs: &str,
    rtas: &[u8],
) -> Result<Vec<u8>, String> {
    let kernel_size =
        u32::try_from(kernel.len()).map_err(|_| "kernel larger than 4 GiB".to_string())?;
    let mut w = FdtWriter::new();
    w.begin_node("")
        .property_str("compatible", "ibm,esm")
        .begin_node("digests")
        .property("bootargs", &Sha512::digest(bootargs.as_bytes()))
        .property("initrd", &Sha512::digest(initrd))
        .property_u32("kernel-size", kernel_size)
        .property("kernel", &Sha512::digest(kernel))
        .property("rtas", &Sha512::digest(rtas))
        .property_str("algorithm", "SHA512")
        .end_node()
        .end_node();
    w.finish()
}

/// One AES-256-GCM entry as svm-tools stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The random 16-byte IV.
    pub iv: [u8; 16],
    /// The ciphertext (as long as the plaintext).
    pub ciphertext: Vec<u8>,
    /// The 16-byte GCM tag.
    pub mac: [u8; 16],
}

/// AES-256-GCM with a fresh 16-byte IV and no AAD.
pub fn seal<R: RngCore + CryptoRng>(
    symkey: &[u8; 32],
    plaintext: &[u8],
    rng: &mut R,
) -> Result<Sealed, String> {
    let mut iv = [0u8; 16];
    rng.fill_bytes(&mut iv);
    let mut buf = plaintext.to_vec();
    let tag = Aes256Gcm16::new(GenericArray::from_slice(symkey))
        .encrypt_in_place_detached(GenericArray::from_slice(&iv), &[], &mut buf)
        .map_err(|_| "AES-GCM encryption failed".to_string())?;
    Ok(Sealed {
        iv,
        ciphertext: buf,
        mac: tag.into(),
    })
}

fn sealed_entry(w: &mut FdtWriter, name: &str, sealed: &Sealed) {
    w.begin_node(name)
        .property("mac", &sealed.mac)
        .property("iv", &sealed.iv)
        .property("ciphertext", &sealed.ciphertext)
        .property_str("untrusted-comment", "")
        .property_str("algorithm", "AES256-GCM")
        .end_node();
}

/// Builds an ESM blob sealed to one or more recipients, as svm-tools' `esm make` followed by
/// one `esm authorize` per key: `lockbox-<i>` is sealed to `recipient_pems[i - 1]` (each an
/// RSA-2048 public key PEM, SPKI or PKCS#1; its fingerprint is SHA-256 of the PEM text as
/// given), and `origin-lockbox` to the first recipient (see the module docs). In tree order
/// the lockboxes are `lockbox-N`, ..., `lockbox-1`, `origin-lockbox` (libfdt's order).
/// Returns the blob and the symmetric key.
pub fn build_esm_blob<R: RngCore + CryptoRng>(
    recipient_pems: &[&str],
    kernel: &[u8],
    initrd: &[u8],
    bootargs: &str,
    rtas: &[u8],
    files: &[(String, Vec<u8>)],
    rng: &mut R,
) -> Result<(Vec<u8>, [u8; 32]), String> {
    if recipient_pems.is_empty() {
        return Err("an ESM blob needs at least one recipient key".into());
    }
    let mut recipients = Vec::with_capacity(recipient_pems.len());
    for (i, pem) in recipient_pems.iter().enumerate() {
        let key = parse_public_key_pem(pem)
            .map_err(|e| format!("recipient {} (lockbox-{}): {e}", i + 1, i + 1))?;
        if key.size() != 256 {
            return Err(format!(
                "wrapping key is {} bits; the ESM lockbox needs RSA-2048",
                key.size() * 8
            ));
        }
        recipients.push((key, Sha256::digest(pem.as_bytes())));
    }
    if bootargs.contains('\0') {
        return Err("bootargs contain a NUL".into());
    }
    let mut symkey = [0u8; 32];
    rng.fill_bytes(&mut symkey);

    // Node and property order: libfdt (which svm-tools drives) inserts a new subnode or
    // property *first* in its parent, so the packed tree lists them in the reverse of
    // svm-tools' call order. Measured with python3-libfdt 1.6.1 (crates/uv/testdata/
    // make_esm_fixture.py); readers must look things up by name regardless.
    let mut w = FdtWriter::new();
    w.begin_node("").property_str("compatible", "ibm,esm");

    // /lockboxes: svm-tools creates origin-lockbox, then authorizes lockbox-1, lockbox-2,
    // ...: the last one authorized comes first.
    w.begin_node("lockboxes");
    let mut boxes: Vec<(String, String, usize)> = (1..=recipients.len())
        .rev()
        .map(|i| {
            let comment = if recipients.len() == 1 {
                "TPM wrapping key".to_string()
            } else {
                format!("authorized host key {i}")
            };
            (format!("lockbox-{i}"), comment, i - 1)
        })
        .collect();
    boxes.push((
        "origin-lockbox".into(),
        "origin (pefbox builder: sealed to the first recipient)".into(),
        0,
    ));
    for (name, comment, r) in &boxes {
        let (key, fingerprint) = &recipients[*r];
        let enc = key
            .encrypt(rng, Oaep::new::<Sha256>(), &symkey)
            .map_err(|e| format!("RSA-OAEP: {e}"))?;
        w.begin_node(name)
            .property("encrypted-symkey", &enc)
            .property_str("untrusted-comment", comment)
            .begin_node("pubkey-fingerprint")
            .property("hash", fingerprint)
            .property_str("algorithm", "SHA256")
            .end_node()
            .end_node();
    }
    w.end_node();

    // /digest/digests-fdt
    let plain = digests_fdt(kernel, initrd, bootargs, rtas)?;
    let sealed = seal(&symkey, &plain, rng)?;
    w.begin_node("digest");
    sealed_entry(&mut w, "digests-fdt", &sealed);
    w.end_node();

    // /file (files-fdt only when there are files, as svm-tools does); each attach adds
    // its node first, so the last file given comes first.
    w.begin_node("file");
    if !files.is_empty() {
        let mut f = FdtWriter::new();
        f.begin_node("")
            .property_str("compatible", "ibm,esm-file")
            .begin_node("files");
        for (name, data) in files.iter().rev() {
            if !valid_file_name(name) {
                return Err(format!("file name {name:?} is not a valid ESM file name"));
            }
            sealed_entry(&mut f, name, &seal(&symkey, data, rng)?);
        }
        f.end_node().end_node();
        w.property("files-fdt", &f.finish()?);
    }
    w.end_node();
    w.end_node();
    Ok((w.finish()?, symkey))
}

/// Appends one newc cpio member.
fn cpio_member(out: &mut Vec<u8>, ino: u32, mode: u32, name: &str, data: &[u8]) {
    let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
    out.extend_from_slice(b"070701");
    for v in [
        ino,
        mode,
        0, // uid
        0, // gid
        nlink,
        0, // mtime
        data.len() as u32,
        0, // devmajor
        0, // devminor
        0, // rdevmajor
        0, // rdevminor
        name.len() as u32 + 1,
        0, // check
    ] {
        out.extend_from_slice(format!("{v:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
    out.extend_from_slice(data);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// Prepends the ESM cpio (as `svm-tool svm add` makes it) to `svm_initrd`.
pub fn attach_to_initrd(esm_blob: &[u8], svm_initrd: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(esm_blob.len() + svm_initrd.len() + 1024);
    cpio_member(&mut out, 1, 0o040755, ".", &[]);
    cpio_member(&mut out, 2, 0o040755, "opt", &[]);
    cpio_member(&mut out, 3, 0o040755, "opt/ibm", &[]);
    cpio_member(&mut out, 4, 0o040755, PEF_DIR, &[]);
    let blob_path = format!("{PEF_DIR}/{ESM_BLOB_NAME}");
    cpio_member(&mut out, 5, 0o100644, &blob_path, esm_blob);
    cpio_member(&mut out, 0, 0, "TRAILER!!!", &[]);
    while !out.len().is_multiple_of(512) {
        out.push(0);
    }
    out.extend_from_slice(svm_initrd);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pefbox::uv::cpio::{member_at, split_esm_initrd};
    use pefbox::uv::esm::{EsmBlob, EsmError, DEFAULT_RTAS};
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use rsa::pkcs1::EncodeRsaPublicKey;
    use rsa::pkcs8::{EncodePublicKey, LineEnding};
    use rsa::RsaPrivateKey;
    use std::sync::OnceLock;

    /// An RSA-2048 key from `seed` and its SPKI public PEM.
    fn generated(seed: u64) -> (RsaPrivateKey, String) {
        let k = RsaPrivateKey::new(&mut StdRng::seed_from_u64(seed), 2048).unwrap();
        let pem = k.to_public_key().to_public_key_pem(LineEnding::LF).unwrap();
        (k, pem)
    }

    /// One RSA-2048 key per test run (key generation is the slow part).
    fn key() -> &'static (RsaPrivateKey, String) {
        static KEY: OnceLock<(RsaPrivateKey, String)> = OnceLock::new();
        KEY.get_or_init(|| generated(0xe5b))
    }

    struct Svm {
        kernel: Vec<u8>,
        initrd: Vec<u8>,
        bootargs: String,
    }

    fn svm() -> Svm {
        Svm {
            kernel: (0..70_000u32).map(|i| (i * 31 % 256) as u8).collect(),
            initrd: (0..12_345u32).map(|i| (i % 13) as u8).collect(),
            bootargs: "console=hvc0 root=/dev/ram0 svm=on".into(),
        }
    }

    fn build(s: &Svm, seed: u64) -> (Vec<u8>, [u8; 32]) {
        let files = vec![
            ("file-1".to_string(), b"rootfs passphrase".to_vec()),
            ("empty".to_string(), Vec::new()),
        ];
        build_esm_blob(
            &[&key().1],
            &s.kernel,
            &s.initrd,
            &s.bootargs,
            &DEFAULT_RTAS,
            &files,
            &mut StdRng::seed_from_u64(seed),
        )
        .unwrap()
    }

    #[test]
    fn esm_round_trip() {
        let s = svm();
        let (blob, symkey) = build(&s, 1);
        let initrd = attach_to_initrd(&blob, &s.initrd);
        let (b, svm_initrd) = split_esm_initrd(&initrd).unwrap();
        assert_eq!(b, &blob[..]);
        assert_eq!(svm_initrd, &s.initrd[..]);
        let esm = EsmBlob::parse(b).unwrap();
        // The lockbox opens with the private key to exactly the symkey (RSA-OAEP-SHA256).
        let fp: [u8; 32] = Sha256::digest(key().1.as_bytes()).into();
        let lb = esm.lockbox_for(&fp).unwrap();
        assert_eq!(lb.name, "lockbox-1");
        let unwrapped = key()
            .0
            .decrypt(Oaep::new::<Sha256>(), lb.encrypted_symkey)
            .unwrap();
        assert_eq!(unwrapped, symkey);
        // The image's recomputation from the modulus finds the same lockbox.
        let n = key().0.to_public_key().n().to_bytes_be();
        assert_eq!(pefbox::fw::pem::pem_fingerprint(&n, 65537), Some(fp));
        let d = esm.decrypt_digests(&symkey).unwrap();
        assert_eq!(d.kernel_size as usize, s.kernel.len());
        let mut args = s.bootargs.clone().into_bytes();
        args.push(0); // as /chosen/bootargs holds it
        d.verify(&s.kernel, svm_initrd, &args, &DEFAULT_RTAS)
            .unwrap();
        let mut out = [0u8; 64];
        let n = esm.decrypt_file("file-1", &symkey, &mut out).unwrap();
        assert_eq!(&out[..n], b"rootfs passphrase");
        assert_eq!(esm.decrypt_file("empty", &symkey, &mut out), Ok(0));
        assert_eq!(esm.file_names().collect::<Vec<_>>(), ["empty", "file-1"]);
        // Fresh randomness: a second build differs in key and ciphertexts.
        let (blob2, symkey2) = build(&s, 2);
        assert_ne!(symkey, symkey2);
        assert_ne!(blob, blob2);
    }

    #[test]
    fn esm_each_tampering_fails_with_its_reason() {
        let s = svm();
        let (blob, symkey) = build(&s, 3);
        let args = s.bootargs.as_bytes();
        // Ciphertext bit of the digests: authentication fails.
        let esm = EsmBlob::parse(&blob).unwrap();
        let ct = esm.digests_entry().ciphertext;
        let off = ct.as_ptr() as usize - blob.as_ptr() as usize + ct.len() / 2;
        let mut bad = blob.clone();
        bad[off] ^= 0x01;
        assert_eq!(
            EsmBlob::parse(&bad).unwrap().decrypt_digests(&symkey),
            Err(EsmError::DecryptFailed)
        );
        let d = esm.decrypt_digests(&symkey).unwrap();
        let mut k = s.kernel.clone();
        k[40_000] ^= 0x80;
        assert_eq!(
            d.verify(&k, &s.initrd, args, &DEFAULT_RTAS),
            Err(EsmError::KernelMismatch)
        );
        assert_eq!(
            d.verify(
                &s.kernel,
                &s.initrd,
                b"console=hvc0 root=/dev/ram0 svm=off",
                &DEFAULT_RTAS
            ),
            Err(EsmError::BootargsMismatch)
        );
        // Wrong initrd: a byte of the SVM initrd changed inside the combined image.
        let mut combined = attach_to_initrd(&blob, &s.initrd);
        let last = combined.len() - 1;
        combined[last] ^= 0xff;
        let (_, svm_initrd) = split_esm_initrd(&combined).unwrap();
        assert_eq!(
            d.verify(&s.kernel, svm_initrd, args, &DEFAULT_RTAS),
            Err(EsmError::InitrdMismatch)
        );
        let mut rtas = DEFAULT_RTAS;
        rtas[0] = 0x60; // nop instead of mr
        assert_eq!(
            d.verify(&s.kernel, &s.initrd, args, &rtas),
            Err(EsmError::RtasMismatch)
        );
        // The reasons are distinct texts for "svm: rejected: <reason>".
        let reasons: std::collections::BTreeSet<String> = [
            EsmError::DecryptFailed,
            EsmError::KernelMismatch,
            EsmError::BootargsMismatch,
            EsmError::InitrdMismatch,
            EsmError::RtasMismatch,
        ]
        .iter()
        .map(|e| e.to_string())
        .collect();
        assert_eq!(reasons.len(), 5);
        assert!(reasons.contains("kernel digest mismatch"));
    }

    /// A second RSA-2048 key (a foreign host's).
    fn key2() -> &'static (RsaPrivateKey, String) {
        static KEY: OnceLock<(RsaPrivateKey, String)> = OnceLock::new();
        KEY.get_or_init(|| generated(0xf0e))
    }

    #[test]
    fn esm_multi_recipient_blob_has_a_lockbox_per_key_in_svm_tools_order() {
        let s = svm();
        let (a, b) = (key(), key2());
        let (blob, symkey) = build_esm_blob(
            &[&b.1, &a.1, &b.1],
            &s.kernel,
            &s.initrd,
            &s.bootargs,
            &DEFAULT_RTAS,
            &[],
            &mut StdRng::seed_from_u64(7),
        )
        .unwrap();
        let esm = EsmBlob::parse(&blob).unwrap();
        let fp = |pem: &str| -> [u8; 32] { Sha256::digest(pem.as_bytes()).into() };
        let listed: Vec<(String, Option<[u8; 32]>)> = esm
            .lockboxes()
            .map(|l| (l.name().to_string(), l.fingerprint().copied()))
            .collect();
        assert_eq!(
            listed,
            [
                ("lockbox-3".to_string(), Some(fp(&b.1))),
                ("lockbox-2".to_string(), Some(fp(&a.1))),
                ("lockbox-1".to_string(), Some(fp(&b.1))),
                ("origin-lockbox".to_string(), Some(fp(&b.1))),
            ]
        );
        // Each key opens the first lockbox with its fingerprint to the same symkey.
        for (k, want) in [(a, "lockbox-2"), (b, "lockbox-3")] {
            let lb = esm.lockbox_for(&fp(&k.1)).unwrap();
            assert_eq!(lb.name, want);
            let got = k.0.decrypt(Oaep::new::<Sha256>(), lb.encrypted_symkey);
            assert_eq!(got.unwrap(), symkey);
        }
        // A third key finds none: sealed to another key, listing all four.
        let err = esm.lockbox_for(&[0; 32]).unwrap_err();
        assert!(matches!(err, EsmError::SealedToAnotherKey(m) if m.count == 4));
        assert!(build_esm_blob(&[], b"k", b"i", "a", &DEFAULT_RTAS, &[], &mut seeded()).is_err());
        let e = build_esm_blob(
            &[&a.1, "junk"],
            b"k",
            b"i",
            "a",
            &DEFAULT_RTAS,
            &[],
            &mut seeded(),
        )
        .unwrap_err();
        assert!(e.starts_with("recipient 2 (lockbox-2): "), "{e}");
    }

    /// A deterministic RNG for error-path calls.
    fn seeded() -> StdRng {
        StdRng::seed_from_u64(11)
    }

    #[test]
    fn esm_cpio_layout_matches_svm_tools() {
        let blob = vec![0xd0, 0x0d, 0xfe, 0xed, 1, 2, 3];
        let all = attach_to_initrd(&blob, b"INITRD");
        let mut off = 0;
        let mut names = Vec::new();
        loop {
            let m = member_at(&all, off).unwrap();
            names.push(String::from_utf8(m.name.to_vec()).unwrap());
            off = m.next;
            if m.name == b"TRAILER!!!" {
                break;
            }
        }
        assert_eq!(
            names,
            [
                ".",
                "opt",
                "opt/ibm",
                "opt/ibm/pef",
                "opt/ibm/pef/test_esmb.dtb",
                "TRAILER!!!"
            ]
        );
        assert_eq!(&all[all.len() - 6..], b"INITRD");
        assert_eq!((all.len() - 6) % 512, 0);
    }

    #[test]
    fn esm_key_formats() {
        let (priv_key, spki) = key();
        let pkcs1 = priv_key
            .to_public_key()
            .to_pkcs1_pem(LineEnding::LF)
            .unwrap();
        assert!(pkcs1.contains("BEGIN RSA PUBLIC KEY"));
        assert!(spki.contains("BEGIN PUBLIC KEY"));
        assert_eq!(
            parse_public_key_pem(&pkcs1).unwrap(),
            priv_key.to_public_key()
        );
        assert_eq!(
            parse_public_key_pem(spki).unwrap(),
            priv_key.to_public_key()
        );
        let mut rng = StdRng::seed_from_u64(9);
        let (blob, symkey) =
            build_esm_blob(&[&pkcs1], b"k", b"i", "a", &DEFAULT_RTAS, &[], &mut rng).unwrap();
        let esm = EsmBlob::parse(&blob).unwrap();
        let fp: [u8; 32] = Sha256::digest(pkcs1.as_bytes()).into();
        let unwrapped = priv_key
            .decrypt(
                Oaep::new::<Sha256>(),
                esm.lockbox_for(&fp).unwrap().encrypted_symkey,
            )
            .unwrap();
        assert_eq!(unwrapped, symkey);
        assert_eq!(esm.file_names().count(), 0);
        assert!(parse_public_key_pem(
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
        )
        .is_err());
        let small = RsaPrivateKey::new(&mut rng, 1024).unwrap();
        let small_pem = small
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        let err = build_esm_blob(&[&small_pem], b"k", b"i", "a", &DEFAULT_RTAS, &[], &mut rng)
            .unwrap_err();
        assert!(err.contains("1024"), "{err}");
        let bad_name = [("9lives".to_string(), vec![1])];
        assert!(
            build_esm_blob(&[spki], b"k", b"i", "a", &DEFAULT_RTAS, &bad_name, &mut rng).is_err()
        );
        assert!(valid_file_name("file-1") && valid_file_name("a,b.c_d+e-f"));
        assert!(
            !valid_file_name("") && !valid_file_name("a/b") && !valid_file_name(&"a".repeat(32))
        );
    }
    /// Blob, cpio'd initrd, symkey and TEST-ONLY RSA key made by
    /// crates/uv/testdata/make_esm_fixture.py with PyCryptodome + libfdt + GNU cpio.
    const FIX_BLOB: &[u8] = include_bytes!("../../crates/uv/testdata/esm-pycryptodome.dtb");
    const FIX_INITRD: &[u8] = include_bytes!("../../crates/uv/testdata/esm-pycryptodome.initrd");
    const FIX_KEY: &str = include_str!("../../crates/uv/testdata/esm-pycryptodome.key");
    const FIX_RSA: &str = include_str!("../../crates/uv/testdata/esm-test-rsa.pem");

    fn fixture_symkey() -> [u8; 32] {
        let hex = FIX_KEY.trim();
        let mut k = [0u8; 32];
        for (i, b) in k.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
        }
        k
    }

    /// Node names and property names, in tree order, with depth.
    fn shape(blob: &[u8]) -> Vec<String> {
        let dtb = pefbox::dtb::Dtb::new(blob).unwrap();
        let mut out = Vec::new();
        for e in dtb.walk() {
            out.push(format!("{}/{}", e.depth, e.node.name()));
            for p in e.node.properties() {
                out.push(format!("{}  {}", e.depth, p.name));
            }
        }
        out
    }

    #[test]
    fn esm_pycryptodome_fixture_unwraps_with_rsa_oaep() {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        let esm = EsmBlob::parse(FIX_BLOB).unwrap();
        let k = RsaPrivateKey::from_pkcs1_pem(FIX_RSA).unwrap();
        // Our fingerprint rule matches: SHA-256 of the PEM text PyCryptodome exported.
        // PyCryptodome exported the public key as SPKI PEM ("BEGIN PUBLIC KEY") + "\n".
        let spki = k.to_public_key().to_public_key_pem(LineEnding::LF).unwrap();
        let fp: [u8; 32] = Sha256::digest(spki.as_bytes()).into();
        let lb = esm.lockbox_for(&fp).unwrap();
        assert_eq!(lb.name, "lockbox-1");
        // PyCryptodome's PKCS1_OAEP(hashAlgo=SHA256) and ours agree (MGF1-SHA256, no label).
        let unwrapped = k
            .decrypt(Oaep::new::<Sha256>(), lb.encrypted_symkey)
            .unwrap();
        assert_eq!(unwrapped, fixture_symkey());
        let (blob, _) = split_esm_initrd(FIX_INITRD).unwrap();
        assert_eq!(blob, FIX_BLOB);
    }

    #[test]
    fn esm_builder_layout_matches_libfdt_fixture() {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        let fix = EsmBlob::parse(FIX_BLOB).unwrap();
        let key = fixture_symkey();
        let spki = RsaPrivateKey::from_pkcs1_pem(FIX_RSA)
            .map(|k| k.to_public_key().to_public_key_pem(LineEnding::LF).unwrap())
            .unwrap();
        let files = vec![("file-1".to_string(), b"secret attachment\n".to_vec())];
        let (ours, our_key) = build_esm_blob(
            &[&spki],
            b"k",
            b"i",
            "a",
            &DEFAULT_RTAS,
            &files,
            &mut StdRng::seed_from_u64(4),
        )
        .unwrap();
        assert_eq!(shape(&ours), shape(FIX_BLOB));
        let ours_esm = EsmBlob::parse(&ours).unwrap();
        let files_fdt = |b: &EsmBlob<'_>| {
            b.dtb()
                .find_node("/file")
                .unwrap()
                .property("files-fdt")
                .unwrap()
                .to_vec()
        };
        assert_eq!(shape(&files_fdt(&ours_esm)), shape(&files_fdt(&fix)));
        // The decrypted digests trees have the same shape too.
        let plain = |b: &EsmBlob<'_>, k: &[u8; 32]| {
            let e = b.digests_entry();
            let mut out = vec![0u8; e.ciphertext.len()];
            let n = e.decrypt_into(k, &mut out).unwrap();
            out.truncate(n);
            out
        };
        assert_eq!(
            shape(&plain(&ours_esm, &our_key)),
            shape(&plain(&fix, &key))
        );
    }
}
