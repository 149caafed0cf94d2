//! The test bodies and helpers of `tpm_client.rs` that run over any transport (swtpm over
//! TCP there, the I2C simulators in `i2c_tpm.rs`), moved here unchanged but for the
//! transport they take.

use super::tpm::{decrypt, handles_in, salt_key};
use pefbox::tpm::consts::{attr, rh, sa};
use pefbox::tpm::public::{Public, PublicDetail};
use pefbox::tpm::rc::{self, Subject};
use pefbox::tpm::{
    Auth, Error, Object, Session, SessionKind, Template, Tpm, Transport, TransportError,
};
use rand::rngs::OsRng;
use rand::RngCore;
use rsa::{BigUint, Oaep, RsaPublicKey};

pub const PARENT_AUTH: &[u8] = b"parent-auth-value";

pub const KEY_AUTH: &[u8] = b"key-auth-0123456";

pub const ALL_SESSION_ATTRS: u8 = sa::CONTINUE_SESSION | sa::DECRYPT | sa::ENCRYPT;

/// Records every command and response that crosses it.
pub struct Recorder<T> {
    pub inner: T,
    pub log: Vec<(Vec<u8>, Vec<u8>)>,
}

impl<T: Transport> Transport for Recorder<T> {
    fn transact(&mut self, command: &[u8], response: &mut [u8]) -> Result<usize, TransportError> {
        let n = self.inner.transact(command, response)?;
        self.log.push((command.to_vec(), response[..n].to_vec()));
        Ok(n)
    }
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

pub fn owner() -> Object {
    Object::permanent(rh::OWNER)
}

/// Host-side RSA-OAEP-SHA256 encryption to a key's public area.
pub fn oaep_encrypt(
    public: &[u8],
    msg: &[u8],
    rng: &mut (impl rand::CryptoRng + RngCore),
) -> Vec<u8> {
    let p = Public::parse(public).expect("public area");
    let PublicDetail::Rsa {
        modulus, exponent, ..
    } = p.detail
    else {
        panic!("not an RSA key")
    };
    let e = if exponent == 0 { 65537 } else { exponent };
    let key = RsaPublicKey::new(BigUint::from_bytes_be(modulus), BigUint::from(e)).unwrap();
    key.encrypt(rng, Oaep::new::<sha2::Sha256>(), msg).unwrap()
}

pub fn expect_tpm_error<T: std::fmt::Debug>(r: Result<T, Error>) -> rc::ResponseCode {
    match r {
        Err(Error::Tpm(code)) => code,
        other => panic!("expected a TPM error response, got {other:?}"),
    }
}

/// An RSA or ECC storage primary's template.
pub fn storage_template(ecc: bool) -> Template<'static> {
    if ecc {
        Template::ecc_storage()
    } else {
        Template::rsa_storage()
    }
}

/// `TPM2_CreatePrimary` under the owner hierarchy (empty owner password) with authValue `auth`.
pub fn owner_primary<T: Transport>(
    tpm: &mut Tpm<T>,
    template: &Template<'_>,
    auth: &[u8],
) -> Result<Object, Error> {
    tpm.create_primary(&owner(), &mut [Auth::Password(b"")], template, auth)
        .map(|(o, _)| o)
}

/// A random `N`-byte message and its RSA-OAEP encryption to the key with `public`.
pub fn sealed_message<const N: usize>(public: &[u8]) -> ([u8; N], Vec<u8>) {
    let mut msg = [0u8; N];
    OsRng.fill_bytes(&mut msg);
    let ct = oaep_encrypt(public, &msg, &mut OsRng);
    (msg, ct)
}

pub fn decrypt_key_template(policy: &[u8], extra: u32) -> Template<'_> {
    Template::rsa_oaep(
        attr::FIXED_TPM
            | attr::FIXED_PARENT
            | attr::SENSITIVE_DATA_ORIGIN
            | attr::NO_DA
            | attr::DECRYPT
            | extra,
        policy,
    )
}

/// The salted, bound, encrypting HMAC session flow, for either salt key type.
pub fn salted_bound_session_flow<T: Transport>(tpm: &mut Tpm<Recorder<T>>, ecc: bool) {
    let primary = owner_primary(tpm, &storage_template(ecc), PARENT_AUTH).unwrap();
    // The pinned Name: in the product it comes from provisioning; here from CreatePrimary.
    let pinned = primary.name.clone();
    let salt = salt_key(ecc, primary.handle, pinned.as_bytes());
    let mut s = tpm
        .start_auth_session(
            salt,
            Some((&primary, PARENT_AUTH)),
            SessionKind::Hmac,
            ALL_SESSION_ATTRS,
        )
        .unwrap();
    assert!(s.is_keyed() && s.is_open());

    let log_start = tpm.transport_mut().log.len();
    let blob = tpm
        .create(
            &primary,
            &mut [Auth::session(&mut s, PARENT_AUTH)],
            &decrypt_key_template(&[], attr::USER_WITH_AUTH),
            KEY_AUTH,
        )
        .unwrap();
    let key = tpm
        .load(&primary, &mut [Auth::session(&mut s, PARENT_AUTH)], &blob)
        .unwrap();
    assert_eq!(key.handle >> 24, 0x80);

    let (msg, ct) = sealed_message::<32>(&blob.public);
    let decrypts = |tpm: &mut Tpm<Recorder<T>>, s: &mut Session| {
        let mut out = [0u8; 512];
        let n = decrypt(tpm, &key, Auth::session(s, KEY_AUTH), &ct, &mut out).unwrap();
        assert_eq!(
            &out[..n],
            &msg,
            "RSA_Decrypt through the session returns the plaintext"
        );
    };
    decrypts(tpm, &mut s);

    // What crossed the wire: the key's authValue (in Create's encrypted first
    // parameter) and the plaintext (in RSA_Decrypt's encrypted response) never in clear.
    let log = &tpm.transport_mut().log[log_start..];
    assert_eq!(log.len(), 3);
    assert!(log.iter().all(|(c, _)| !contains(c, KEY_AUTH)));
    assert!(log.iter().all(|(_, r)| !contains(r, &msg)));

    // A wrong authValue is refused by the TPM (the HMAC it checks differs) and the
    // session survives the failure.
    let code = expect_tpm_error(decrypt(
        tpm,
        &key,
        Auth::session(&mut s, b"wrong"),
        &ct,
        &mut [0u8; 512],
    ));
    // (noDA key: TPM_RC_BAD_AUTH rather than the lockout-counting TPM_RC_AUTH_FAIL)
    assert_eq!(code.base(), rc::RC_BAD_AUTH, "{code}");
    assert_eq!(code.subject(), Subject::Session(1));
    assert!(code.to_string().starts_with("TPM_RC_BAD_AUTH (session 1)"));
    decrypts(tpm, &mut s);

    // Ending the session with continueSession clear closes it on the TPM too.
    s.set_attributes(sa::ENCRYPT);
    decrypts(tpm, &mut s);
    assert!(!s.is_open());
    assert!(handles_in(tpm, rh::HMAC_SESSION_FIRST).is_empty());
    tpm.flush_context(key.handle).unwrap();
    tpm.flush_context(primary.handle).unwrap();
    assert!(handles_in(tpm, rh::TRANSIENT_FIRST).is_empty());
}
