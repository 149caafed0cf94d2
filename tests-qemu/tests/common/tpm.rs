//! TPM client helpers the swtpm-backed tests share.

use pefbox::tpm::consts::{rh, sa};
use pefbox::tpm::{Auth, Error, Object, SaltKey, Session, SessionKind, Tpm, Transport};

/// The handles of `first`'s type (its top byte) that the TPM lists from `first` on
/// (TPM2_GetCapability(TPM_CAP_HANDLES), up to 64).
pub fn handles_in<T: Transport>(tpm: &mut Tpm<T>, first: u32) -> Vec<u32> {
    let mut out = [0u32; 64];
    let (n, _) = tpm.get_capability_handles(first, &mut out).unwrap();
    out[..n]
        .iter()
        .copied()
        .filter(|h| h >> 24 == first >> 24)
        .collect()
}

/// An unsalted, unbound session of `kind` with continueSession set (no parameter
/// encryption).
pub fn unsalted_session<T: Transport>(tpm: &mut Tpm<T>, kind: SessionKind) -> Session {
    tpm.start_auth_session(SaltKey::None, None, kind, sa::CONTINUE_SESSION)
        .expect("StartAuthSession (unsalted)")
}

/// `TPM2_RSA_Decrypt` of `ciphertext` (OAEP-SHA256, empty label) with `key`, authorized by
/// `auth` alone; the message goes to `out`, its length is returned.
pub fn decrypt<T: Transport>(
    tpm: &mut Tpm<T>,
    key: &Object,
    auth: Auth<'_>,
    ciphertext: &[u8],
    out: &mut [u8],
) -> Result<usize, Error> {
    tpm.rsa_decrypt(key, &mut [auth], ciphertext, &[], out)
}

/// The salt key for a session salted to `handle`, an ECC P-256 key if `ecc`, else RSA-2048,
/// which must have the Name `pinned_name`.
pub fn salt_key(ecc: bool, handle: u32, pinned_name: &[u8]) -> SaltKey<'_> {
    if ecc {
        SaltKey::Ecc {
            handle,
            pinned_name,
        }
    } else {
        SaltKey::Rsa {
            handle,
            pinned_name,
        }
    }
}

/// `TPM2_EvictControl` of `object` at `handle` (persisting it there, or evicting it if it is
/// the persistent one), under the platform hierarchy with the empty platform password.
pub fn platform_evict<T: Transport>(
    tpm: &mut Tpm<T>,
    object: &Object,
    handle: u32,
) -> Result<Option<Object>, Error> {
    tpm.evict_control(
        &Object::permanent(rh::PLATFORM),
        &mut [Auth::Password(b"")],
        object,
        handle,
    )
}

/// A command as raw bytes, for what the client does not send (a refused or foreign command):
/// tag SESSIONS when `auths` is not empty (each a session handle and attributes, empty nonce
/// and HMAC: password sessions with an empty password and policy sessions that need no HMAC).
pub fn cmd(code: u32, handles: &[u32], auths: &[(u32, u8)], params: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for h in handles {
        b.extend_from_slice(&h.to_be_bytes());
    }
    if !auths.is_empty() {
        b.extend_from_slice(&(9 * auths.len() as u32).to_be_bytes());
        for (h, a) in auths {
            b.extend_from_slice(&h.to_be_bytes());
            b.extend_from_slice(&[0, 0, *a, 0, 0]);
        }
    }
    b.extend_from_slice(params);
    let tag: u16 = if auths.is_empty() { 0x8001 } else { 0x8002 };
    let mut c = Vec::new();
    c.extend_from_slice(&tag.to_be_bytes());
    c.extend_from_slice(&((10 + b.len()) as u32).to_be_bytes());
    c.extend_from_slice(&code.to_be_bytes());
    c.extend_from_slice(&b);
    c
}

/// One empty password session (TPM_RS_PW), for [`cmd`].
pub const PW: &[(u32, u8)] = &[(rh::PW, 0)];
