//! Opening a secure VM: find its ESM blob, have the TPM unwrap the lockbox key, decrypt the
//! digests and check every SVM component against them. One function, [`open`], whose error
//! is the reason printed in the verdict line `svm: rejected: <reason>`.
//!
//! Order of checks (the first failure is the reason): the blob is located (from
//! `/chosen linux,esm-blob-*`, else the initrd's leading ESM cpio), parsed (compatible,
//! lockboxes, digests entry), the lockbox sealed to this TPM's wrapping key chosen by its
//! fingerprint (none: `sealed to another TPM key: ...`, and the TPM is not asked), its key
//! unwrapped (through the caller-supplied unwrapper: the TPM, over H_TPM_COMM), the digests
//! decrypted (AES-256-GCM: a wrong key or
//! a tampered ciphertext fails authentication here), then kernel, initrd, bootargs and RTAS
//! compared with their SHA-512 digests. The unwrapped key is wiped before returning.
#![forbid(unsafe_code)]

use super::cpio::{self, CpioError};
use super::esm::{EsmBlob, EsmError, ENCRYPTED_SYMKEY_LEN};
use core::fmt;

/// What the SVM brings besides its ESM blob.
#[derive(Clone, Copy, Debug)]
pub struct SvmPayload<'a> {
    /// The SVM kernel as loaded (at least the blob's `kernel-size` bytes).
    pub kernel: &'a [u8],
    /// The SVM's bootargs (a trailing NUL, if present, is not hashed).
    pub bootargs: &'a [u8],
    /// The RTAS image given to the SVM (usually `esm::DEFAULT_RTAS`).
    pub rtas: &'a [u8],
}

/// Why an SVM was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Neither an ESM blob range nor an initrd was given.
    NoBlob,
    /// The initrd does not start with a well-formed ESM cpio.
    Cpio(CpioError),
    /// The blob, the digests or a component check failed.
    Esm(EsmError),
    /// The TPM did not unwrap the lockbox key (the text says why).
    Unwrap(alloc::string::String),
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::NoBlob => f.write_str("no ESM blob (no esm-blob range and no initrd)"),
            Rejection::Cpio(e) => write!(f, "{e}"),
            Rejection::Esm(e) => write!(f, "{e}"),
            Rejection::Unwrap(why) => write!(f, "lockbox key not unwrapped: {why}"),
        }
    }
}

/// Finds the ESM blob and the SVM's own initrd: an explicit blob range wins (the initrd is
/// then the SVM's initrd as is); otherwise the initrd must begin with the ESM cpio.
pub fn locate<'a>(
    esm_blob: Option<&'a [u8]>,
    initrd: Option<&'a [u8]>,
) -> Result<(&'a [u8], &'a [u8]), Rejection> {
    match (esm_blob, initrd) {
        (Some(b), i) => Ok((b, i.unwrap_or(&[]))),
        (None, Some(i)) => cpio::split_esm_initrd(i).map_err(Rejection::Cpio),
        (None, None) => Err(Rejection::NoBlob),
    }
}

/// Opens the SVM: parse, pick the lockbox whose fingerprint is `tpm_fingerprint` (the
/// wrapping key's, [`fw::pem::pem_fingerprint`]), unwrap it through `unwrap`,
/// decrypt, verify. `Ok` means every check passed.
pub fn open<E: fmt::Display>(
    blob: &[u8],
    svm_initrd: &[u8],
    payload: &SvmPayload<'_>,
    tpm_fingerprint: &[u8; 32],
    unwrap: impl FnOnce(&[u8; ENCRYPTED_SYMKEY_LEN]) -> Result<[u8; 32], E>,
) -> Result<(), Rejection> {
    let esm = EsmBlob::parse(blob).map_err(Rejection::Esm)?;
    let lockbox = esm.lockbox_for(tpm_fingerprint).map_err(Rejection::Esm)?;
    let mut key =
        unwrap(lockbox.encrypted_symkey).map_err(|e| Rejection::Unwrap(alloc::format!("{e}")))?;
    let digests = esm.decrypt_digests(&key);
    key.fill(0);
    core::hint::black_box(&key);
    let digests = digests.map_err(Rejection::Esm)?;
    digests
        .verify(payload.kernel, svm_initrd, payload.bootargs, payload.rtas)
        .map_err(Rejection::Esm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::esm::DEFAULT_RTAS;

    const INITRD: &[u8] = include_bytes!("../testdata/esm-pycryptodome.initrd");

    fn key() -> [u8; 32] {
        let hex = include_str!("../testdata/esm-pycryptodome.key").trim();
        let mut k = [0u8; 32];
        for (i, b) in k.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
        }
        k
    }

    /// The fixture lockbox's recipient key's fingerprint, recomputed from its modulus as
    /// the image does for the TPM's wrapping key.
    fn fixture_fp() -> [u8; 32] {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        use rsa::traits::PublicKeyParts;
        let k = rsa::RsaPrivateKey::from_pkcs1_pem(include_str!("../testdata/esm-test-rsa.pem"))
            .unwrap();
        fw::pem::pem_fingerprint(&k.n().to_bytes_be(), 65537).unwrap()
    }

    fn kernel() -> std::vec::Vec<u8> {
        (0..40).flat_map(|_| 0..=255u8).collect()
    }

    /// FAKE unwrapper: returns the fixture's key, as the TPM would for the right blob.
    fn fake_tpm(_: &[u8; 256]) -> Result<[u8; 32], &'static str> {
        Ok(key())
    }

    fn run(kernel: &[u8], bootargs: &[u8], initrd: &[u8]) -> Result<(), Rejection> {
        let (blob, svm_initrd) = locate(None, Some(initrd))?;
        let p = SvmPayload {
            kernel,
            bootargs,
            rtas: &DEFAULT_RTAS,
        };
        open(blob, svm_initrd, &p, &fixture_fp(), fake_tpm)
    }

    const ARGS: &[u8] = b"console=hvc0 root=/dev/ram0 svm=on";

    #[test]
    fn accepts_the_fixture_svm() {
        assert_eq!(run(&kernel(), ARGS, INITRD), Ok(()));
    }

    #[test]
    fn each_component_rejected_with_its_reason() {
        let mut k = kernel();
        k[100] ^= 1;
        assert_eq!(
            run(&k, ARGS, INITRD).unwrap_err().to_string(),
            "kernel digest mismatch"
        );
        assert_eq!(
            run(&kernel(), b"console=hvc0", INITRD)
                .unwrap_err()
                .to_string(),
            "bootargs digest mismatch"
        );
        let mut i = INITRD.to_vec();
        *i.last_mut().unwrap() ^= 1;
        assert_eq!(
            run(&kernel(), ARGS, &i).unwrap_err().to_string(),
            "initrd digest mismatch"
        );
        let (blob, rest) = locate(None, Some(INITRD)).unwrap();
        let p = SvmPayload {
            kernel: &kernel(),
            bootargs: ARGS,
            rtas: &[0u8; 20],
        };
        assert_eq!(
            open(blob, rest, &p, &fixture_fp(), fake_tpm)
                .unwrap_err()
                .to_string(),
            "rtas digest mismatch"
        );
        assert_eq!(
            run(&k[..100], ARGS, INITRD),
            Err(Rejection::Esm(EsmError::KernelTooShort))
        );
    }

    /// The fixture's SVM with kernel `k`, its bootargs and the default RTAS.
    fn payload(k: &[u8]) -> SvmPayload<'_> {
        SvmPayload {
            kernel: k,
            bootargs: ARGS,
            rtas: &DEFAULT_RTAS,
        }
    }

    #[test]
    fn wrong_key_and_tpm_failure_are_rejections_never_acceptance() {
        let (blob, rest) = locate(None, Some(INITRD)).unwrap();
        let k = kernel();
        let p = payload(&k);
        let wrong = |_: &[u8; 256]| -> Result<[u8; 32], &str> { Ok([7u8; 32]) };
        assert_eq!(
            open(blob, rest, &p, &fixture_fp(), wrong),
            Err(Rejection::Esm(EsmError::DecryptFailed))
        );
        let refuse = |_: &[u8; 256]| -> Result<[u8; 32], &str> { Err("TPM error 0x9a2") };
        assert_eq!(
            open(blob, rest, &p, &fixture_fp(), refuse)
                .unwrap_err()
                .to_string(),
            "lockbox key not unwrapped: TPM error 0x9a2"
        );
    }

    #[test]
    fn a_blob_for_another_key_is_rejected_without_asking_the_tpm() {
        let (blob, rest) = locate(None, Some(INITRD)).unwrap();
        let k = kernel();
        let p = payload(&k);
        let mut asked = false;
        let mut other = fixture_fp();
        other[0] ^= 0xff;
        let err = open(blob, rest, &p, &other, |_: &[u8; 256]| {
            asked = true;
            Ok::<_, &str>(key())
        })
        .unwrap_err();
        assert!(
            !asked,
            "the TPM is not asked to decrypt another key's lockbox"
        );
        let text = err.to_string();
        assert!(
            text.starts_with(
                "sealed to another TPM key: no lockbox matches this TPM's wrapping key (fingerprint "
            ),
            "{text}"
        );
        // The fixture has origin-lockbox and lockbox-1, both sealed to the fixture key.
        let fp = fw::pem::HexPrefix(&fixture_fp()[..4]).to_string();
        assert!(
            text.ends_with(&std::format!("blob has 2 lockboxes: {fp}..., {fp}...)")),
            "{text}"
        );
    }

    #[test]
    fn locate_rules() {
        assert_eq!(locate(None, None), Err(Rejection::NoBlob));
        assert_eq!(
            locate(None, Some(b"not a cpio")),
            Err(Rejection::Cpio(CpioError::NotCpio))
        );
        let (b, i) = locate(Some(b"blob"), Some(b"initrd")).unwrap();
        assert_eq!((b, i), (&b"blob"[..], &b"initrd"[..]));
    }
}
