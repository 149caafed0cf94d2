//! TPM 2.0 session cryptography with SHA-256: KDFa, KDFe, session keys, command/response HMACs,
//! AES-128-CFB parameter encryption, and the salt encryption of `TPM2_StartAuthSession` (RSA-OAEP
//! or ECDH P-256).
//!
//! Formulas are those of the TPM 2.0 library specification, Part 1, checked against the
//! reference implementation's behaviour (which swtpm/libtpms share):
//! - KDFa (11.4.10.2): `K(i) = HMAC(key, [i]32 || Label || 0x00 || ContextU || ContextV || [L]32)`.
//! - KDFe (11.4.10.3): `K(i) = H([i]32 || Z || Use || 0x00 || PartyUInfo || PartyVInfo)`.
//! - For both, a label that already ends in a zero byte gets no second one (as the reference
//!   TPM does), and an empty label still gets its single 0x00.
//! - An authValue is used with its trailing zero bytes removed, as the TPM does for every
//!   entity (`EntityGetAuthValue`). The functions here that take an authValue remove them
//!   themselves, so callers may pass the value as stored.
//!
//! Every function here is total: no panics on any input, no `unsafe`, no heap use except inside
//! the RSA arithmetic.
#![forbid(unsafe_code)]
// Session cryptography over hostile lengths and keys: no panics, no silent wrap or truncation.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
#![deny(clippy::panic, clippy::arithmetic_side_effects)]
#![deny(clippy::cast_possible_truncation)]

use aes::Aes128;
use cfb_mode::cipher::{AsyncStreamCipher, KeyIvInit};
use hmac::{Hmac, Mac};
use p256::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
use p256::{AffinePoint, EncodedPoint, NonZeroScalar};
use rand_core::CryptoRngCore;
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPublicKey};
use sha2::{Digest, Sha256};

/// Size in bytes of a SHA-256 digest (and so of a SHA-256 session key).
pub const SHA256_LEN: usize = 32;

/// Size in bits of a SHA-256 digest (the KDF length of a session key).
const SHA256_BITS: u32 = 256;
const _: () = assert!(SHA256_BITS as usize == SHA256_LEN * 8);

/// SHA-256 (and HMAC-SHA256) input block size in bytes.
const SHA256_BLOCK_LEN: usize = 64;

/// The KDF label of a session key (Part 1, 19.6.8), without its terminating NUL.
pub const LABEL_SESSION_KEY: &[u8] = b"ATH";
/// The KDF label of CFB parameter encryption (Part 1, 21.3), without its terminating NUL.
pub const LABEL_CFB: &[u8] = b"CFB";
/// The label of salt encryption and of the ECC salt KDFe (Part 1, 11.4.10.3 / Annex B, C),
/// without its terminating NUL.
pub const LABEL_SECRET: &[u8] = b"SECRET";
/// The OAEP label used for a session salt: `"SECRET"` with its NUL (7 bytes).
pub const OAEP_LABEL_SECRET: &[u8] = b"SECRET\0";

/// Smallest RSA modulus accepted for salt / key encryption, in bits.
pub const RSA_MIN_BITS: usize = 1024;
/// Largest RSA modulus accepted, in bits (the `rsa` crate's limit; TPMs stop at 4096 too).
pub const RSA_MAX_BITS: usize = 4096;
/// The public exponent a TPM means when a key's `exponent` field is 0.
pub const RSA_DEFAULT_EXPONENT: u32 = 65537;

/// Errors of the asymmetric operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptoError {
    /// The public key is malformed: RSA modulus or exponent unusable, or an ECC point that is
    /// not on the curve.
    BadPublicKey,
    /// The message does not fit the RSA-OAEP block (`modulus_len - 2*32 - 2` bytes at most).
    MessageTooLong,
    /// The output buffer is smaller than the ciphertext (the modulus length).
    OutputTooSmall,
    /// The random number generator failed.
    Rng,
}

impl core::fmt::Display for CryptoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s = match self {
            CryptoError::BadPublicKey => "unusable public key",
            CryptoError::MessageTooLong => "message too long for RSA-OAEP",
            CryptoError::OutputTooSmall => "output buffer too small",
            CryptoError::Rng => "random number generator failed",
        };
        f.write_str(s)
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

/// Overwrites a buffer that held key material (best effort: no `unsafe`, so no volatile write;
/// `black_box` keeps the stores from being optimised away in practice).
fn wipe(buf: &mut [u8]) {
    buf.fill(0);
    core::hint::black_box(buf);
}

/// `auth` without its trailing zero bytes: the form in which the TPM uses every authValue
/// (HMAC keys, session keys, parameter-encryption keys).
pub fn auth_value_trimmed(auth: &[u8]) -> &[u8] {
    let mut trimmed = auth;
    while let [rest @ .., 0] = trimmed {
        trimmed = rest;
    }
    trimmed
}

/// True when the label needs the spec's terminating 0x00 appended (it does not already end in
/// one; an empty label gets one too), exactly as the reference TPM decides.
fn label_needs_nul(label: &[u8]) -> bool {
    label.last() != Some(&0)
}

/// An HMAC-SHA256 instance keyed with the concatenation of `key_parts`, without needing a
/// buffer as long as the key: HMAC pads a short key with zeros to the block size and hashes a
/// key longer than the block, so both are done here into one 64-byte block.
fn hmac_keyed(key_parts: &[&[u8]]) -> Hmac<Sha256> {
    let total = key_parts
        .iter()
        .fold(0usize, |n, p| n.saturating_add(p.len()));
    let mut block = [0u8; SHA256_BLOCK_LEN];
    if total > SHA256_BLOCK_LEN {
        let mut digest = sha256(key_parts);
        block
            .iter_mut()
            .zip(digest.iter())
            .for_each(|(b, d)| *b = *d);
        wipe(&mut digest);
    } else {
        let mut at = 0usize;
        for part in key_parts {
            for (b, k) in block.iter_mut().skip(at).zip(part.iter()) {
                *b = *k;
            }
            at = at.saturating_add(part.len());
        }
    }
    let mac = <Hmac<Sha256> as Mac>::new(&block.into());
    wipe(&mut block);
    mac
}

fn hmac_finish(mac: Hmac<Sha256>) -> [u8; SHA256_LEN] {
    mac.finalize().into_bytes().into()
}

/// Fills `out` with `block(1) || block(2) || ...` (the last block cut to fit), wiping each
/// block once copied: the counter mode of KDFa and KDFe.
fn fill_counter_mode(out: &mut [u8], mut block: impl FnMut(u32) -> [u8; SHA256_LEN]) {
    let mut counter: u32 = 0;
    for chunk in out.chunks_mut(SHA256_LEN) {
        counter = counter.wrapping_add(1);
        let mut b = block(counter);
        chunk.iter_mut().zip(b.iter()).for_each(|(o, x)| *o = *x);
        wipe(&mut b);
    }
}

// ---------------------------------------------------------------------------------------------
// Hashes and KDFs
// ---------------------------------------------------------------------------------------------

/// SHA-256 over the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> [u8; SHA256_LEN] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// HMAC-SHA256 over the concatenation of `parts`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; SHA256_LEN] {
    hmac_sha256_split_key(&[key], parts)
}

/// HMAC-SHA256 keyed with the concatenation of `key_parts` (e.g. `sessionKey || authValue`)
/// over the concatenation of `parts`. The parts are used exactly as given (no trimming).
pub fn hmac_sha256_split_key(key_parts: &[&[u8]], parts: &[&[u8]]) -> [u8; SHA256_LEN] {
    let mut mac = hmac_keyed(key_parts);
    for p in parts {
        mac.update(p);
    }
    hmac_finish(mac)
}

/// KDFa with the key given as the concatenation of `key_parts`; see [`kdfa_sha256`].
pub fn kdfa_sha256_split_key(
    key_parts: &[&[u8]],
    label: &[u8],
    context_u: &[u8],
    context_v: &[u8],
    bits: u32,
    out: &mut [u8],
) {
    let keyed = hmac_keyed(key_parts);
    let nul = label_needs_nul(label);
    fill_counter_mode(out, |counter| {
        let mut mac = keyed.clone();
        mac.update(&counter.to_be_bytes());
        mac.update(label);
        if nul {
            mac.update(&[0]);
        }
        mac.update(context_u);
        mac.update(context_v);
        mac.update(&bits.to_be_bytes());
        hmac_finish(mac)
    });
}

/// KDFa (TPM 2.0 Part 1, 11.4.10.2), SHA-256 HMAC, counter mode. Fills `out` with the first
/// `out.len()` bytes of the stream; `bits` is the value encoded in the KDF (usually out.len()*8).
/// Label is written with its terminating NUL (as the spec requires: "label" || 0x00).
///
/// As in the reference TPM, a label that already ends in 0x00 gets no second NUL, and no bits
/// are masked when `bits` is not a multiple of 8 (the caller masks if it needs to).
pub fn kdfa_sha256(
    key: &[u8],
    label: &[u8],
    context_u: &[u8],
    context_v: &[u8],
    bits: u32,
    out: &mut [u8],
) {
    kdfa_sha256_split_key(&[key], label, context_u, context_v, bits, out);
}

/// KDFe (Part 1, 11.4.10.3) with SHA-256: Hash(counter || Z || label\0 || partyU || partyV).
///
/// Fills `out` with the first `out.len()` bytes of the stream. `bits` is not hashed by KDFe; as
/// in the reference TPM, when it is not a multiple of 8 the unused high bits of `out[0]` are
/// cleared.
pub fn kdfe_sha256(
    z: &[u8],
    label: &[u8],
    party_u: &[u8],
    party_v: &[u8],
    bits: u32,
    out: &mut [u8],
) {
    let nul = label_needs_nul(label);
    fill_counter_mode(out, |counter| {
        let mut h = Sha256::new();
        h.update(counter.to_be_bytes());
        h.update(z);
        h.update(label);
        if nul {
            h.update([0u8]);
        }
        h.update(party_u);
        h.update(party_v);
        h.finalize().into()
    });
    let rem = bits % 8;
    if rem != 0 {
        if let Some(first) = out.first_mut() {
            // rem is 1..=7, so 1 << rem is 2..=128 and the subtraction never wraps.
            *first &= (1u8 << rem).wrapping_sub(1);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Session arithmetic
// ---------------------------------------------------------------------------------------------

/// sessionKey = KDFa(SHA256, bindAuth || salt, "ATH", nonceTPM, nonceCaller, 256); all-empty
/// (unbound, unsalted) gives an empty key: return None then.
///
/// `bind_auth` is the bind entity's authValue (trailing zeros are removed here, as the TPM
/// does). Caveat from the spec/reference TPM: a session *bound* to an entity whose authValue is
/// empty and *unsalted* still gets a key (KDFa over an empty key), which this signature cannot
/// tell from "unbound"; use [`session_key_derived`] for that case.
pub fn session_key(
    bind_auth: &[u8],
    salt: &[u8],
    nonce_tpm: &[u8],
    nonce_caller: &[u8],
) -> Option<[u8; SHA256_LEN]> {
    if auth_value_trimmed(bind_auth).is_empty() && salt.is_empty() {
        return None;
    }
    Some(session_key_derived(
        bind_auth,
        salt,
        nonce_tpm,
        nonce_caller,
    ))
}

/// The session key as the TPM computes it whenever `bind` or `tpmKey` is not TPM_RH_NULL
/// (Part 1, 19.6.8): always `KDFa(SHA256, bindAuth || salt, "ATH", nonceTPM, nonceCaller, 256)`,
/// even when that key is empty. Trailing zeros of `bind_auth` are removed.
pub fn session_key_derived(
    bind_auth: &[u8],
    salt: &[u8],
    nonce_tpm: &[u8],
    nonce_caller: &[u8],
) -> [u8; SHA256_LEN] {
    let mut key = [0u8; SHA256_LEN];
    kdfa_sha256_split_key(
        &[auth_value_trimmed(bind_auth), salt],
        LABEL_SESSION_KEY,
        nonce_tpm,
        nonce_caller,
        SHA256_BITS,
        &mut key,
    );
    key
}

/// cpHash = SHA256(commandCode || Name(handle 1) || ... || parameters) (Part 1, 18.7), where
/// `parameters` is the marshalled parameter area as sent (so already encrypted if the first
/// parameter is encrypted).
pub fn cp_hash(command_code: u32, names: &[&[u8]], parameters: &[u8]) -> [u8; SHA256_LEN] {
    let mut h = Sha256::new();
    h.update(command_code.to_be_bytes());
    for n in names {
        h.update(n);
    }
    h.update(parameters);
    h.finalize().into()
}

/// rpHash = SHA256(responseCode || commandCode || parameters) (Part 1, 18.8); `parameters` is
/// the response parameter area as received. Only computed for a TPM_RC_SUCCESS response.
pub fn rp_hash(response_code: u32, command_code: u32, parameters: &[u8]) -> [u8; SHA256_LEN] {
    sha256(&[
        &response_code.to_be_bytes(),
        &command_code.to_be_bytes(),
        parameters,
    ])
}

/// A session HMAC (Part 1, 19.6.5):
/// `HMAC(sessionKey || authValue, pHash || nonceNewer || nonceOlder || sessionAttributes)`.
///
/// Command: `p_hash` = cpHash, newer = nonceCaller, older = nonceTPM. Response: `p_hash` =
/// rpHash, newer = the new nonceTPM, older = nonceCaller. Pass an empty `auth_value` where the
/// spec leaves it out (the bind entity of a bound session; a policy session without
/// PolicyAuthValue). Trailing zeros of `auth_value` are removed. For the rare form with
/// nonceTPMdecrypt / nonceTPMencrypt, use [`hmac_sha256_split_key`] directly.
pub fn session_hmac(
    session_key: &[u8],
    auth_value: &[u8],
    p_hash: &[u8],
    nonce_newer: &[u8],
    nonce_older: &[u8],
    session_attributes: u8,
) -> [u8; SHA256_LEN] {
    hmac_sha256_split_key(
        &[session_key, auth_value_trimmed(auth_value)],
        &[p_hash, nonce_newer, nonce_older, &[session_attributes]],
    )
}

/// AES-128-CFB parameter encryption key and IV: KDFa(SHA256, sessionKey || authValue, "CFB",
/// nonceNewer, nonceOlder, 128 + 128) split into key (16) and iv (16).
///
/// Command parameters: newer = nonceCaller, older = nonceTPM; response parameters: newer =
/// nonceTPM, older = nonceCaller. Trailing zeros of `auth_value` are removed.
pub fn cfb_key_iv(
    session_key: &[u8],
    auth_value: &[u8],
    nonce_newer: &[u8],
    nonce_older: &[u8],
) -> ([u8; 16], [u8; 16]) {
    let mut stream = [0u8; 32];
    kdfa_sha256_split_key(
        &[session_key, auth_value_trimmed(auth_value)],
        LABEL_CFB,
        nonce_newer,
        nonce_older,
        256,
        &mut stream,
    );
    let mut key = [0u8; 16];
    let mut iv = [0u8; 16];
    let (k, v) = stream.split_at(16);
    key.copy_from_slice(k);
    iv.copy_from_slice(v);
    wipe(&mut stream);
    (key, iv)
}

/// In-place AES-128-CFB (full-block feedback, as TPM 2.0 uses) encryption; any length, the last
/// partial block is XORed with the leading bytes of its keystream block.
pub fn aes128_cfb_encrypt(key: &[u8; 16], iv: &[u8; 16], data: &mut [u8]) {
    cfb_mode::Encryptor::<Aes128>::new(key.into(), iv.into()).encrypt(data);
}

/// In-place AES-128-CFB (full-block feedback) decryption, the inverse of
/// [`aes128_cfb_encrypt`].
pub fn aes128_cfb_decrypt(key: &[u8; 16], iv: &[u8; 16], data: &mut [u8]) {
    cfb_mode::Decryptor::<Aes128>::new(key.into(), iv.into()).decrypt(data);
}

/// Constant-time equality (the time depends only on the lengths, which are not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    core::hint::black_box(diff) == 0
}

// ---------------------------------------------------------------------------------------------
// Salt encryption
// ---------------------------------------------------------------------------------------------

/// Encrypts a session salt to an RSA public key: RSAES-OAEP with SHA-256 (the key's nameAlg),
/// MGF1-SHA-256, label "SECRET\0" (7 bytes incl. NUL). `modulus` big-endian, `exponent` 0 means 65537.
/// Writes the ciphertext (modulus length) into `out`, returns its length.
pub fn rsa_oaep_encrypt_salt(
    modulus: &[u8],
    exponent: u32,
    salt: &[u8],
    rng: &mut impl CryptoRngCore,
    out: &mut [u8],
) -> Result<usize, CryptoError> {
    rsa_oaep_encrypt(modulus, exponent, OAEP_LABEL_SECRET, salt, rng, out)
}

/// MGF1-SHA-256 (RFC 8017, B.2.1): XORs the mask generated from `seed` into `data`.
fn mgf1_xor(seed: &[u8], data: &mut [u8]) {
    let mut counter: u32 = 0;
    for chunk in data.chunks_mut(SHA256_LEN) {
        let mut mask = sha256(&[seed, &counter.to_be_bytes()]);
        chunk
            .iter_mut()
            .zip(mask.iter())
            .for_each(|(d, m)| *d ^= *m);
        wipe(&mut mask);
        counter = counter.wrapping_add(1);
    }
}

/// Checks an RSA public key as a TPM would present it (big-endian modulus without a leading
/// zero byte, odd, 1024..=4096 bits; exponent 0 = 65537, odd, >= 3).
fn rsa_public_key(modulus: &[u8], exponent: u32) -> Result<RsaPublicKey, CryptoError> {
    let e = if exponent == 0 {
        RSA_DEFAULT_EXPONENT
    } else {
        exponent
    };
    let top = modulus.first().copied().unwrap_or(0);
    let odd = modulus.last().is_some_and(|b| b & 1 == 1);
    let bits = modulus.len().saturating_mul(8);
    if top == 0 || !odd || e < 3 || e % 2 == 0 || !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
        return Err(CryptoError::BadPublicKey);
    }
    RsaPublicKey::new(BigUint::from_bytes_be(modulus), BigUint::from(e))
        .map_err(|_| CryptoError::BadPublicKey)
}

/// General RSA-OAEP-SHA256 encryption with any label (the ESM lockbox uses an empty label).
///
/// RSAES-OAEP-ENCRYPT of RFC 8017 7.1.1 with SHA-256 and MGF1-SHA-256; the 32-byte OAEP seed is
/// drawn from `rng` (one `try_fill_bytes`). The modulus must be given at its full size (no
/// leading zero byte), odd, 1024..=4096 bits. Writes the ciphertext (modulus length) into `out`,
/// returns its length.
pub fn rsa_oaep_encrypt(
    modulus: &[u8],
    exponent: u32,
    label: &[u8],
    msg: &[u8],
    rng: &mut impl CryptoRngCore,
    out: &mut [u8],
) -> Result<usize, CryptoError> {
    let key = rsa_public_key(modulus, exponent)?;
    let k = modulus.len();
    // k >= 128 here, so this never fails; the message must leave room for 2 hashes + 2 bytes.
    let max_msg = k
        .checked_sub(2 * SHA256_LEN + 2)
        .ok_or(CryptoError::BadPublicKey)?;
    if msg.len() > max_msg {
        return Err(CryptoError::MessageTooLong);
    }
    if out.len() < k {
        return Err(CryptoError::OutputTooSmall);
    }

    // EM = 0x00 || maskedSeed (32) || maskedDB (k - 33), DB = lHash || PS || 0x01 || M.
    let mut em = [0u8; RSA_MAX_BITS / 8];
    let em = em.get_mut(..k).ok_or(CryptoError::BadPublicKey)?;
    let (_, rest) = em.split_at_mut(1);
    let (seed, db) = rest.split_at_mut(SHA256_LEN);
    rng.try_fill_bytes(seed).map_err(|_| CryptoError::Rng)?;
    let lhash = sha256(&[label]);
    let (db_hash, db_rest) = db.split_at_mut(SHA256_LEN);
    db_hash.copy_from_slice(&lhash);
    // db_rest is k - 65 bytes and msg at most k - 66: there is room for PS and the 0x01.
    let one_at = db_rest
        .len()
        .checked_sub(msg.len())
        .and_then(|n| n.checked_sub(1))
        .ok_or(CryptoError::MessageTooLong)?;
    let (_ps, tail) = db_rest.split_at_mut(one_at);
    let (one, m) = tail.split_at_mut(1);
    one.fill(1);
    m.copy_from_slice(msg);
    mgf1_xor(seed, db);
    mgf1_xor(db, seed);

    // EM < n because its top byte is 0 and n's is not.
    let m_int = BigUint::from_bytes_be(em);
    wipe(em);
    let c = m_int.modpow(key.e(), key.n());
    drop(m_int);
    let c_bytes = c.to_bytes_be();
    if c_bytes.len() > k || c >= *key.n() {
        return Err(CryptoError::BadPublicKey);
    }
    let out = out.get_mut(..k).ok_or(CryptoError::OutputTooSmall)?;
    let pad_len = k
        .checked_sub(c_bytes.len())
        .ok_or(CryptoError::BadPublicKey)?;
    let (pad, body) = out.split_at_mut(pad_len);
    pad.fill(0);
    body.copy_from_slice(&c_bytes);
    Ok(k)
}

/// What [`ecc_p256_salt`] returns: `(salt, ephemeral x, ephemeral y)`, 32 bytes each, big-endian.
pub type EccSalt = ([u8; 32], [u8; 32], [u8; 32]);

/// ECC P-256 salt: ephemeral key pair, Z = x of (eph_priv * tpm_pub), salt = KDFe(Z, "SECRET",
/// eph.x, tpm.x, 256). Returns (salt, eph_x, eph_y). Rejects points not on the curve.
///
/// The ephemeral scalar is 32 bytes from `rng.try_fill_bytes`, read big-endian and retried
/// (at most 16 draws) while it is zero or not below the group order.
pub fn ecc_p256_salt(
    tpm_x: &[u8; 32],
    tpm_y: &[u8; 32],
    rng: &mut impl CryptoRngCore,
) -> Result<EccSalt, CryptoError> {
    let encoded = EncodedPoint::from_affine_coordinates(tpm_x.into(), tpm_y.into(), false);
    let tpm_point: Option<AffinePoint> = AffinePoint::from_encoded_point(&encoded).into();
    let tpm_point = tpm_point.ok_or(CryptoError::BadPublicKey)?;

    let mut scalar = None;
    for _ in 0..16 {
        let mut repr = p256::FieldBytes::default();
        rng.try_fill_bytes(&mut repr)
            .map_err(|_| CryptoError::Rng)?;
        let candidate: Option<NonZeroScalar> = NonZeroScalar::from_repr(repr).into();
        wipe(&mut repr);
        if candidate.is_some() {
            scalar = candidate;
            break;
        }
    }
    let scalar = scalar.ok_or(CryptoError::Rng)?;

    let eph = *p256::PublicKey::from_secret_scalar(&scalar).as_affine();
    let eph_enc = eph.to_encoded_point(false);
    let (eph_x, eph_y): ([u8; 32], [u8; 32]) = match (eph_enc.x(), eph_enc.y()) {
        (Some(x), Some(y)) => ((*x).into(), (*y).into()),
        // Only the identity has no coordinates, and k*G with 0 < k < n is never the identity.
        _ => return Err(CryptoError::Rng),
    };
    let shared = p256::ecdh::diffie_hellman(scalar, tpm_point);
    let mut salt = [0u8; 32];
    kdfe_sha256(
        shared.raw_secret_bytes(),
        LABEL_SECRET,
        &eph_x,
        tpm_x,
        256,
        &mut salt,
    );
    Ok((salt, eph_x, eph_y))
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
#[allow(clippy::panic, clippy::arithmetic_side_effects)]
#[allow(clippy::cast_possible_truncation)]
// Test code: a panic there is a failed test.
mod tests {
    //! Known-answer tests. Unless a test says otherwise, expected values are in [`kat`], which
    //! is the verbatim output of `crates/tpm/src/testdata/gen_kat.py`: computed with Python's
    //! `cryptography` (OpenSSL) and hashlib/hmac, independently of this file. Re-derive with
    //! `python3 crates/tpm/src/testdata/gen_kat.py` and compare.
    use super::*;
    use p256::ProjectivePoint;
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::{Oaep, RsaPrivateKey};

    #[rustfmt::skip]
    mod kat {
        // Generated by crates/tpm/src/testdata/gen_kat.py -- do not edit by hand.
        pub const KDFA1_KEY: &str = "7431b4a0c36dacaeffe0bf514a9f1c691705dd40";
        pub const KDFA1_CTX_U: &str = "7c67872eac9bb6b98c6db0707f37ae748d3efa473456e49b1cfc5b8e14571ada";
        pub const KDFA1_OUT: &str = "39afeebd594f79d8e2414538f5217efb";
        pub const KDFA2_KEY: &str = "9dd33dc44644e584d5c082ca1ae8417d1fe6e64919faeb62b7d26df330d80abf8e8f36d9b19afca6a50aad8dc00a50a957f3a81934cd87442d52c7afb02ec1049391855095947b89f30582c5387449f225bab54828d8fd05dd6e216737a695b9fb7f6087";
        pub const KDFA2_CTX_U: &str = "3fca7f0f950523ec32729f6685b3e9d7";
        pub const KDFA2_CTX_V: &str = "0583a1b77b7ad0038e64e0cad7994528ed883ad12477c7bf";
        pub const KDFA2_OUT: &str = "16dca7d96dd86ef9bfaaf35486bc93cedcde8a196837b89f35a696086038d811e82f967c79c7a16a543e2886aeca0a143f1dc4b34d15ea4c120f40a1dc0a95a62df6fb2540f4874e83d922987a637b62";
        pub const KDFE_Z: &str = "ff8fc5ea8a568fae395c65a72ff1472a1699901ccd2b4e4feae4942b8dd29c91";
        pub const KDFE_U: &str = "ce42569d29cc59d6856fed80519906eb222336ee6c8bee831aecc89b6f800694";
        pub const KDFE_V: &str = "e8943749816662b84f96721c0630f6c5eb84c9bc099b8bff684badad80c011be";
        pub const KDFE_OUT48: &str = "989c15b1c012002e16b5a0cb0bb247278246a13b8957b2685d9a8e7fc0edfa1394541f7ffba7fd6e0775a13857138411";
        pub const SESS_BIND_AUTH: &str = "bbf88189e9e857ce8c01dcf4a294312c";
        pub const SESS_SALT: &str = "c976a21ec77f1ba6c719c720aaeb90d637b517ddb9239dc2823a6b342198a2fe";
        pub const SESS_NONCE_TPM: &str = "27d6a4a9bfee5fa17bdbd7c804225c8655460578380269e397157637492ca5c9";
        pub const SESS_NONCE_CALLER: &str = "d45a6141ea9ac3bc0e02ee4b9b341199c001cee017c87dfc92bcd2b77f25b7d9";
        pub const SESS_KEY: &str = "e0997472f272c0cdbe80ef76ad67ded17d662e150fb3c1485ddf3afde80d1c31";
        pub const SESS_AUTH_VALUE: &str = "1f4f927366ef06f89de8381810fe238d";
        pub const SESS_KEY_NAME: &str = "000b0ff58adcda35d46cead53cc40767466eeca7b681cdb977e1f79ed9e2387dfcb9";
        pub const SESS_CMD_PARAMS: &str = "0f048c9426c2612ce9ffe35f2cc005a18177e19db1ff018aad3f8abe3a9016b57e78be5b952a3d5a9b89ac2266";
        pub const SESS_CP_HASH: &str = "fc85c6bf437b410bcaf5ecc315929e45811af63a4dc7a59ea75dfaa8c79f3191";
        pub const SESS_CMD_HMAC: &str = "2a1a387b2bc907afd8e537581861140f3ba74d8e3b4c0086375944d15f407a12";
        pub const SESS_NONCE_TPM2: &str = "3cb5d1ba76930ca71273f77846935a218befda9607812bc6ae1cced15a9176aa";
        pub const SESS_RSP_PARAMS: &str = "8c6cdc5c381d02c36eb1a3b9cea423e4cb48194a3b2c6cbc0296aa54884c28556c0d";
        pub const SESS_RP_HASH: &str = "86ace71384e4aa6fee345327e9f8bf28655405329861582070ef6634730928bc";
        pub const SESS_RSP_HMAC: &str = "498bb9f6b974328cb2ff691a0eadb36adcceb533d0bb6d495815562b15a4333e";
        pub const SESS_EMPTY_KEY_KDFA: &str = "67e85b3cb0bb8ec86d5230324123e76e928f613555743312cfdf3b076dc81b21";
        pub const CFB_KEY: &str = "9f3ebd8efcf167e553b2db51848120ba";
        pub const CFB_IV: &str = "3cc09fd0cd490b55180f6f07342ad89a";
        pub const CFB_PT: &str = "8fbd2fd172bfb43862c859946de18af3939ce463d17c4095654f3ad6218acff9158add196d";
        pub const CFB_CT: &str = "669d7fa67b093a41c46290fc6b3736d91cfe2e911232c443378012b2ec8a3424bb91f92c49";
        pub const OAEP_N: &str = "961c957d626c6a24394a334203674e191c08822abb3724877f4dfef4cd52531534590a58dbb297f51425857be876d1e76efd239f100480933d6677356c72044623447bbd059edce88840e5d5f8071120775c2c05dd669e2b8758e67a29f2b348944673df4944e4f8ef6c635488daf701afc532a8ceba14b4d2d017e20542e55111e2026e2380b2048291872a2690901aaf02581378ce354497440c82551d461cdfe452e98dba1b075f603a224ab470fab21d335bd94f047e867acd82c9cf0e964b77404e4af31bfb613c50dbedb65a5d80c9bfcbaec1b88198a611c492b0d1da9fd1e6c325d400cb76e05a39024a8ea4873f4399cf1d231b4feff8a054cfb449";
        pub const OAEP_SEED: &str = "fe7de145e02d94deeb15b43186dc4f3d8c29b83f26235ad6dbb55fa8ed69e6f6";
        pub const OAEP_SALT: &str = "3965e2ffdd8047584e8cfe63f33b64e7ee017f2060691988b6dbbac2548d43ba";
        pub const OAEP_CT: &str = "0f3a158321169207e299d39aa0718dd67e64f49175335882b97eb3ff6ba1faff1ef95a0c2456a49710ac2d146e7f495f90a3f8fde6a156a75790e05a5f9ee7685bd6a7e729bd1077a6541b2956def45555f3eb3a8cf954885d2c90d6eb5f56248dfc23a5535e2d9a1bd30b44a18a891ae832f6abacecae9311bb33478e7ed873f32716142f8e6a3bb6a3f9c0d84a06c22f7769fef88411996c6462d1b1cb07446833c3f7121a74e1ca631cb2c0d3168523959b8ce9e2fb1231133b68d1f4c9fe161afdb208aa5b2d8a94e30dbf7579b0e48e01595e041e4998af7b6a772a17ba6929e446d914f5fed48d93ce96aabd8fc1069e593d30da1b7b747e05ae446f29";
        pub const OAEP_E: u32 = 65537;
        pub const ECC_TPM_PRIV: &str = "5bc73a5cf5c16225dc7a93791a6e63b7df62a14291533c7f3c8db4139dbdab3b";
        pub const ECC_TPM_X: &str = "99396028186c630fed600d80670a499a859e4da5843372d3fe973210903b1868";
        pub const ECC_TPM_Y: &str = "8e95fafb7887989a6e51ba7a1ffe7b8bb64d317795df932fa9a69499e5315489";
        pub const ECC_EPH_PRIV: &str = "95187e6480fb4efb7b5b6015c4e706f4632de6386f6bc612af3cf9446d3115b2";
        pub const ECC_EPH_X: &str = "dfda4834294e65e1a995379130ce00b85a152da3c2e936826bc2871bc296df2b";
        pub const ECC_EPH_Y: &str = "7a6d79141eb423f2e1f8b436fe72150d50d398745082548360326fdec32e8f70";
        pub const ECC_Z: &str = "e9d467fb53713bc91960c40e97e118c02e1beadee40ee99afab2f2f39fcb1b7f";
        pub const ECC_SALT: &str = "ed88aa178fd314daa50b8336e90ffc9805c95f07ff96404777b9b2814bc66dec";
    }

    fn hex(s: &str) -> Vec<u8> {
        assert!(s.len().is_multiple_of(2), "odd hex length");
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
            .collect()
    }

    fn hex32(s: &str) -> [u8; 32] {
        hex(s).try_into().expect("32 bytes")
    }

    fn hex16(s: &str) -> [u8; 16] {
        hex(s).try_into().expect("16 bytes")
    }

    /// Test-only fake RNG: hands out `script` first, then a deterministic SHA-256 counter
    /// stream. Lets a test fix the OAEP seed or the ephemeral ECC scalar. Not random at all.
    struct FakeScriptedRng {
        script: Vec<u8>,
        pos: usize,
        counter: u64,
    }

    impl FakeScriptedRng {
        fn new(script: &[u8]) -> Self {
            Self {
                script: script.to_vec(),
                pos: 0,
                counter: 0,
            }
        }
    }

    impl rand_core::RngCore for FakeScriptedRng {
        fn next_u32(&mut self) -> u32 {
            let mut b = [0u8; 4];
            self.fill_bytes(&mut b);
            u32::from_le_bytes(b)
        }
        fn next_u64(&mut self) -> u64 {
            let mut b = [0u8; 8];
            self.fill_bytes(&mut b);
            u64::from_le_bytes(b)
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for d in dest.iter_mut() {
                if let Some(b) = self.script.get(self.pos) {
                    *d = *b;
                    self.pos += 1;
                } else {
                    let block = sha256(&[b"fake rng", &self.counter.to_be_bytes()]);
                    *d = block[0];
                    self.counter += 1;
                }
            }
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }
    impl rand_core::CryptoRng for FakeScriptedRng {}

    /// Test-only fake RNG whose every draw fails.
    struct FakeFailingRng;

    impl rand_core::RngCore for FakeFailingRng {
        fn next_u32(&mut self) -> u32 {
            0
        }
        fn next_u64(&mut self) -> u64 {
            0
        }
        fn fill_bytes(&mut self, _dest: &mut [u8]) {}
        fn try_fill_bytes(&mut self, _dest: &mut [u8]) -> Result<(), rand_core::Error> {
            let code = core::num::NonZeroU32::new(rand_core::Error::CUSTOM_START).expect("nonzero");
            Err(rand_core::Error::from(code))
        }
    }
    impl rand_core::CryptoRng for FakeFailingRng {}

    // ---- KDFa: gen_kat.py (cryptography KBKDFHMAC, SP 800-108 counter mode) ----

    #[test]
    fn kdfa_kat_single_block() {
        let mut out = [0u8; 16];
        kdfa_sha256(
            &hex(kat::KDFA1_KEY),
            b"STORAGE",
            &hex(kat::KDFA1_CTX_U),
            b"",
            128,
            &mut out,
        );
        assert_eq!(out.to_vec(), hex(kat::KDFA1_OUT));
    }

    #[test]
    fn kdfa_kat_multi_block_long_key() {
        // 80 bytes = 3 HMAC blocks; a 100-byte key exceeds the HMAC block, so it is hashed.
        let key = hex(kat::KDFA2_KEY);
        let (u, v) = (hex(kat::KDFA2_CTX_U), hex(kat::KDFA2_CTX_V));
        let mut out = [0u8; 80];
        kdfa_sha256(&key, b"ATH", &u, &v, 640, &mut out);
        assert_eq!(out.to_vec(), hex(kat::KDFA2_OUT));
        // The same key given in pieces, split across the 64-byte boundary.
        let mut split = [0u8; 80];
        kdfa_sha256_split_key(
            &[&key[..10], &key[10..70], &key[70..]],
            b"ATH",
            &u,
            &v,
            640,
            &mut split,
        );
        assert_eq!(split, out);
        // A shorter output is a prefix of the stream only when `bits` is the same.
        let mut prefix = [0u8; 40];
        kdfa_sha256(&key, b"ATH", &u, &v, 640, &mut prefix);
        assert_eq!(prefix[..], out[..40]);
        kdfa_sha256(&key, b"ATH", &u, &v, 320, &mut prefix);
        assert_ne!(prefix[..], out[..40], "[L] must be part of every block");
    }

    #[test]
    fn kdfa_label_nul_rule() {
        // Reference TPM: a label already ending in 0x00 gets no second NUL.
        let key = hex(kat::KDFA1_KEY);
        let u = hex(kat::KDFA1_CTX_U);
        let mut a = [0u8; 16];
        let mut b = [0u8; 16];
        kdfa_sha256(&key, b"STORAGE\0", &u, b"", 128, &mut a);
        assert_eq!(a.to_vec(), hex(kat::KDFA1_OUT));
        // An empty label still contributes its single 0x00: HMAC(key, [1] || 00 || u || [L]).
        kdfa_sha256(&key, b"", &u, b"", 128, &mut b);
        let manual = hmac_sha256(
            &key,
            &[&1u32.to_be_bytes(), &[0], &u, &128u32.to_be_bytes()],
        );
        assert_eq!(b[..], manual[..16]);
    }

    // ---- KDFe: gen_kat.py (cryptography ConcatKDFHash, SP 800-56A single-step) ----

    #[test]
    fn kdfe_kat() {
        let (z, u, v) = (hex(kat::KDFE_Z), hex(kat::KDFE_U), hex(kat::KDFE_V));
        let mut out = [0u8; 48];
        kdfe_sha256(&z, b"SECRET", &u, &v, 384, &mut out);
        assert_eq!(out.to_vec(), hex(kat::KDFE_OUT48));
        // KDFe does not hash the length, so 256 bits is the 32-byte prefix.
        let mut short = [0u8; 32];
        kdfe_sha256(&z, b"SECRET", &u, &v, 256, &mut short);
        assert_eq!(short[..], out[..32]);
        // A bit count that is not a multiple of 8 clears the unused high bits of byte 0.
        let mut masked = [0u8; 32];
        kdfe_sha256(&z, b"SECRET", &u, &v, 253, &mut masked);
        assert_eq!(masked[0], out[0] & 0x1f);
        assert_eq!(masked[1..], out[1..32]);
    }

    // ---- session key, cpHash/rpHash and session HMACs: gen_kat.py (hashlib, hmac, KBKDFHMAC) ----

    #[test]
    fn session_key_kat() {
        let key = session_key(
            &hex(kat::SESS_BIND_AUTH),
            &hex(kat::SESS_SALT),
            &hex(kat::SESS_NONCE_TPM),
            &hex(kat::SESS_NONCE_CALLER),
        );
        assert_eq!(key, Some(hex32(kat::SESS_KEY)));
        // Trailing zeros of the bind authValue are not part of the key (EntityGetAuthValue).
        let mut padded = hex(kat::SESS_BIND_AUTH);
        padded.extend_from_slice(&[0, 0, 0]);
        let key2 = session_key(
            &padded,
            &hex(kat::SESS_SALT),
            &hex(kat::SESS_NONCE_TPM),
            &hex(kat::SESS_NONCE_CALLER),
        );
        assert_eq!(key2, key);
        // Salted only (bind = TPM_RH_NULL): still a key, and a different one.
        let salted = session_key(
            b"",
            &hex(kat::SESS_SALT),
            &hex(kat::SESS_NONCE_TPM),
            &hex(kat::SESS_NONCE_CALLER),
        );
        assert!(salted.is_some());
        assert_ne!(salted, key);
    }

    #[test]
    fn session_key_unbound_unsalted_is_none_but_bound_empty_auth_is_derived() {
        let (nt, nc) = (hex(kat::SESS_NONCE_TPM), hex(kat::SESS_NONCE_CALLER));
        assert_eq!(session_key(b"", b"", &nt, &nc), None);
        assert_eq!(session_key(&[0, 0], b"", &nt, &nc), None);
        assert_eq!(
            session_key_derived(b"", b"", &nt, &nc),
            hex32(kat::SESS_EMPTY_KEY_KDFA)
        );
    }

    #[test]
    fn command_and_response_hmac_kat() {
        let sk = hex32(kat::SESS_KEY);
        let auth = hex(kat::SESS_AUTH_VALUE);
        let (nt, nc) = (hex(kat::SESS_NONCE_TPM), hex(kat::SESS_NONCE_CALLER));
        // TPM2_RSA_Decrypt (0x159) on one key handle.
        let cp = cp_hash(
            0x0000_0159,
            &[&hex(kat::SESS_KEY_NAME)],
            &hex(kat::SESS_CMD_PARAMS),
        );
        assert_eq!(cp, hex32(kat::SESS_CP_HASH));
        let cmd = session_hmac(&sk, &auth, &cp, &nc, &nt, 0x21);
        assert_eq!(cmd, hex32(kat::SESS_CMD_HMAC));
        // Also as the raw building blocks, with sessionKey || authValue as one key.
        let mut key = sk.to_vec();
        key.extend_from_slice(&auth);
        assert_eq!(hmac_sha256(&key, &[&cp, &nc, &nt, &[0x21]]), cmd);
        // Attributes, nonces order and authValue all matter.
        assert_ne!(session_hmac(&sk, &auth, &cp, &nc, &nt, 0x01), cmd);
        assert_ne!(session_hmac(&sk, &auth, &cp, &nt, &nc, 0x21), cmd);
        assert_ne!(session_hmac(&sk, b"", &cp, &nc, &nt, 0x21), cmd);
        // Trailing zeros of authValue are dropped, as the TPM does.
        let mut auth0 = auth.clone();
        auth0.push(0);
        assert_eq!(session_hmac(&sk, &auth0, &cp, &nc, &nt, 0x21), cmd);

        let rp = rp_hash(0, 0x0000_0159, &hex(kat::SESS_RSP_PARAMS));
        assert_eq!(rp, hex32(kat::SESS_RP_HASH));
        let rsp = session_hmac(&sk, &auth, &rp, &hex(kat::SESS_NONCE_TPM2), &nc, 0x41);
        assert_eq!(rsp, hex32(kat::SESS_RSP_HMAC));
        assert!(ct_eq(&rsp, &hex(kat::SESS_RSP_HMAC)));
    }

    // ---- CFB parameter encryption ----

    #[test]
    fn cfb_parameter_encryption_kat() {
        // Key/IV: gen_kat.py (KBKDFHMAC "CFB"); ciphertext: gen_kat.py (cryptography AES-CFB).
        let (key, iv) = cfb_key_iv(
            &hex(kat::SESS_KEY),
            &hex(kat::SESS_AUTH_VALUE),
            &hex(kat::SESS_NONCE_CALLER),
            &hex(kat::SESS_NONCE_TPM),
        );
        assert_eq!(key, hex16(kat::CFB_KEY));
        assert_eq!(iv, hex16(kat::CFB_IV));
        let mut data = hex(kat::CFB_PT); // 37 bytes: two full blocks and a partial one
        aes128_cfb_encrypt(&key, &iv, &mut data);
        assert_eq!(data, hex(kat::CFB_CT));
        aes128_cfb_decrypt(&key, &iv, &mut data);
        assert_eq!(data, hex(kat::CFB_PT));
        // Swapping the nonces (the response direction) gives other keys.
        let (key_r, iv_r) = cfb_key_iv(
            &hex(kat::SESS_KEY),
            &hex(kat::SESS_AUTH_VALUE),
            &hex(kat::SESS_NONCE_TPM),
            &hex(kat::SESS_NONCE_CALLER),
        );
        assert_ne!((key_r, iv_r), (key, iv));
    }

    #[test]
    fn cfb128_aes128_nist_sp800_38a() {
        // NIST SP 800-38A, F.3.13 (CFB128-AES128.Encrypt) and F.3.14 (Decrypt).
        let key = hex16("2b7e151628aed2a6abf7158809cf4f3c");
        let iv = hex16("000102030405060708090a0b0c0d0e0f");
        let pt = hex(concat!(
            "6bc1bee22e409f96e93d7e117393172a",
            "ae2d8a571e03ac9c9eb76fac45af8e51",
            "30c81c46a35ce411e5fbc1191a0a52ef",
            "f69f2445df4f9b17ad2b417be66c3710"
        ));
        let ct = hex(concat!(
            "3b3fd92eb72dad20333449f8e83cfb4a",
            "c8a64537a0b3a93fcde3cdad9f1ce58b",
            "26751f67a3cbb140b1808cf187a4f4df",
            "c04b05357c5d1c0eeac4c66f9ff7f2e6"
        ));
        let mut data = pt.clone();
        aes128_cfb_encrypt(&key, &iv, &mut data);
        assert_eq!(data, ct);
        aes128_cfb_decrypt(&key, &iv, &mut data);
        assert_eq!(data, pt);
        // A partial final block is the matching prefix of the full-length result.
        let mut part = pt[..21].to_vec();
        aes128_cfb_encrypt(&key, &iv, &mut part);
        assert_eq!(part[..], ct[..21]);
    }

    // ---- RSA-OAEP salt ----

    fn test_rsa_key() -> RsaPrivateKey {
        // Throwaway test key made by gen_kat.py (PKCS#1 DER).
        RsaPrivateKey::from_pkcs1_der(include_bytes!("testdata/rsa2048_test_key.der"))
            .expect("test key")
    }

    fn decrypt_with_label(key: &RsaPrivateKey, label: &str, ct: &[u8]) -> Option<Vec<u8>> {
        key.decrypt(Oaep::new_with_label::<Sha256, _>(label), ct)
            .ok()
    }

    #[test]
    fn oaep_salt_kat_fixed_seed() {
        // gen_kat.py builds EM with this seed and checks it with OpenSSL's OAEP decrypt.
        let n = hex(kat::OAEP_N);
        let mut rng = FakeScriptedRng::new(&hex(kat::OAEP_SEED));
        let mut out = [0u8; 512];
        let len = rsa_oaep_encrypt_salt(&n, kat::OAEP_E, &hex(kat::OAEP_SALT), &mut rng, &mut out)
            .expect("encrypt");
        assert_eq!(len, 256);
        assert_eq!(out[..len].to_vec(), hex(kat::OAEP_CT));
        // exponent 0 means 65537: same seed, same ciphertext.
        let mut rng = FakeScriptedRng::new(&hex(kat::OAEP_SEED));
        let mut out0 = [0u8; 256];
        rsa_oaep_encrypt_salt(&n, 0, &hex(kat::OAEP_SALT), &mut rng, &mut out0).expect("encrypt");
        assert_eq!(out0[..], out[..256]);
    }

    #[test]
    fn oaep_salt_decrypts_only_with_secret_nul_label() {
        // Independent check with the rsa crate's OAEP decryption and the private key.
        let key = test_rsa_key();
        let n = key.n().to_bytes_be();
        assert_eq!(n, hex(kat::OAEP_N));
        let salt = sha256(&[b"a salt"]);
        let mut rng = FakeScriptedRng::new(b"");
        let mut ct = [0u8; 256];
        let len = rsa_oaep_encrypt_salt(&n, 65537, &salt, &mut rng, &mut ct).expect("encrypt");
        assert_eq!(len, 256);
        assert_eq!(
            decrypt_with_label(&key, "SECRET\0", &ct),
            Some(salt.to_vec())
        );
        assert_eq!(decrypt_with_label(&key, "SECRET", &ct), None);
        assert_eq!(decrypt_with_label(&key, "", &ct), None);
        // Randomised: a second encryption differs but decrypts the same.
        let mut ct2 = [0u8; 256];
        rsa_oaep_encrypt_salt(&n, 65537, &salt, &mut rng, &mut ct2).expect("encrypt");
        assert_ne!(ct, ct2);
        assert_eq!(
            decrypt_with_label(&key, "SECRET\0", &ct2),
            Some(salt.to_vec())
        );
    }

    #[test]
    fn oaep_general_label_and_empty_label() {
        let key = test_rsa_key();
        let n = key.n().to_bytes_be();
        let msg = [0x5au8; 32];
        let mut rng = FakeScriptedRng::new(b"");
        let mut ct = [0u8; 256];
        rsa_oaep_encrypt(&n, 0, b"", &msg, &mut rng, &mut ct).expect("encrypt");
        assert_eq!(decrypt_with_label(&key, "", &ct), Some(msg.to_vec()));
        assert_eq!(decrypt_with_label(&key, "SECRET\0", &ct), None);
        // Longest message that fits: k - 2*32 - 2 = 190 bytes.
        let long = [7u8; 190];
        rsa_oaep_encrypt(&n, 0, b"DUPLICATE\0", &long, &mut rng, &mut ct).expect("encrypt");
        assert_eq!(
            decrypt_with_label(&key, "DUPLICATE\0", &ct),
            Some(long.to_vec())
        );
    }

    #[test]
    fn oaep_errors() {
        let n = hex(kat::OAEP_N);
        let mut rng = FakeScriptedRng::new(b"");
        let mut out = [0u8; 256];
        let e = |r: Result<usize, CryptoError>| r.expect_err("must fail");
        assert_eq!(
            e(rsa_oaep_encrypt(
                &n,
                0,
                b"",
                &[0u8; 191],
                &mut rng,
                &mut out
            )),
            CryptoError::MessageTooLong
        );
        assert_eq!(
            e(rsa_oaep_encrypt_salt(
                &n,
                0,
                &[1; 32],
                &mut rng,
                &mut out[..255]
            )),
            CryptoError::OutputTooSmall
        );
        assert_eq!(
            e(rsa_oaep_encrypt_salt(
                &n,
                0,
                &[1; 32],
                &mut FakeFailingRng,
                &mut out
            )),
            CryptoError::Rng
        );
        // Unusable keys.
        let mut even = n.clone();
        *even.last_mut().unwrap() &= 0xfe;
        let mut leading_zero = vec![0u8];
        leading_zero.extend_from_slice(&n[1..]);
        for (modulus, exp) in [
            (&even[..], 65537),
            (&leading_zero[..], 65537),
            (&n[..64], 65537), // 512 bits: too small
            (&[][..], 65537),  // empty
            (&n[..], 1),       // exponent 1
            (&n[..], 65536),   // even exponent
        ] {
            assert_eq!(
                e(rsa_oaep_encrypt_salt(
                    modulus, exp, &[1; 32], &mut rng, &mut out
                )),
                CryptoError::BadPublicKey
            );
        }
        let big = vec![0xffu8; 513]; // 4104 bits
        let mut big_out = vec![0u8; 513];
        assert_eq!(
            e(rsa_oaep_encrypt_salt(
                &big,
                0,
                &[1; 32],
                &mut rng,
                &mut big_out
            )),
            CryptoError::BadPublicKey
        );
    }

    // ---- ECC P-256 salt ----

    #[test]
    fn ecc_salt_kat_fixed_ephemeral() {
        // gen_kat.py: cryptography ECDH with the same scalars, KDFe via ConcatKDFHash.
        let mut rng = FakeScriptedRng::new(&hex(kat::ECC_EPH_PRIV));
        let (salt, ex, ey) =
            ecc_p256_salt(&hex32(kat::ECC_TPM_X), &hex32(kat::ECC_TPM_Y), &mut rng).expect("salt");
        assert_eq!(ex, hex32(kat::ECC_EPH_X));
        assert_eq!(ey, hex32(kat::ECC_EPH_Y));
        assert_eq!(salt, hex32(kat::ECC_SALT));
        // A first draw that is not a valid scalar (>= n) is skipped.
        let mut script = vec![0xffu8; 32];
        script.extend_from_slice(&hex(kat::ECC_EPH_PRIV));
        let mut rng = FakeScriptedRng::new(&script);
        let again =
            ecc_p256_salt(&hex32(kat::ECC_TPM_X), &hex32(kat::ECC_TPM_Y), &mut rng).expect("salt");
        assert_eq!(again, (salt, ex, ey));
    }

    #[test]
    fn ecc_salt_recomputed_from_tpm_private_key() {
        // What the TPM does: Z = x(d_tpm * Q_eph), salt = KDFe(Z, "SECRET", Q_eph.x, Q_tpm.x).
        let d_tpm: Option<NonZeroScalar> =
            NonZeroScalar::from_repr(hex32(kat::ECC_TPM_PRIV).into()).into();
        let d_tpm = d_tpm.expect("scalar");
        let q_tpm = (ProjectivePoint::GENERATOR * *d_tpm)
            .to_affine()
            .to_encoded_point(false);
        let (tx, ty): ([u8; 32], [u8; 32]) =
            ((*q_tpm.x().unwrap()).into(), (*q_tpm.y().unwrap()).into());
        assert_eq!((tx, ty), (hex32(kat::ECC_TPM_X), hex32(kat::ECC_TPM_Y)));
        // The shared secret of the KAT ephemeral key matches OpenSSL's ECDH (gen_kat.py).
        let eph_enc = EncodedPoint::from_affine_coordinates(
            &hex32(kat::ECC_EPH_X).into(),
            &hex32(kat::ECC_EPH_Y).into(),
            false,
        );
        let eph: Option<AffinePoint> = AffinePoint::from_encoded_point(&eph_enc).into();
        let z = p256::ecdh::diffie_hellman(d_tpm, eph.expect("KAT ephemeral point"));
        assert_eq!(z.raw_secret_bytes().to_vec(), hex(kat::ECC_Z));
        let mut rng = FakeScriptedRng::new(b"");
        for _ in 0..3 {
            let (salt, ex, ey) = ecc_p256_salt(&tx, &ty, &mut rng).expect("salt");
            let eph_enc = EncodedPoint::from_affine_coordinates(&ex.into(), &ey.into(), false);
            let eph: Option<AffinePoint> = AffinePoint::from_encoded_point(&eph_enc).into();
            let z = p256::ecdh::diffie_hellman(d_tpm, eph.expect("ephemeral point on curve"));
            let mut expect = [0u8; 32];
            kdfe_sha256(z.raw_secret_bytes(), b"SECRET", &ex, &tx, 256, &mut expect);
            assert_eq!(salt, expect);
        }
    }

    #[test]
    fn ecc_salt_rejects_bad_points_and_rng_failure() {
        let tx = hex32(kat::ECC_TPM_X);
        let mut ty = hex32(kat::ECC_TPM_Y);
        let mut rng = FakeScriptedRng::new(b"");
        ty[31] ^= 1; // off the curve
        assert_eq!(
            ecc_p256_salt(&tx, &ty, &mut rng),
            Err(CryptoError::BadPublicKey)
        );
        assert_eq!(
            ecc_p256_salt(&[0; 32], &[0; 32], &mut rng),
            Err(CryptoError::BadPublicKey)
        );
        assert_eq!(
            ecc_p256_salt(&[0xff; 32], &[0xff; 32], &mut rng),
            Err(CryptoError::BadPublicKey)
        );
        let ty = hex32(kat::ECC_TPM_Y);
        assert_eq!(
            ecc_p256_salt(&tx, &ty, &mut FakeFailingRng),
            Err(CryptoError::Rng)
        );
        // An RNG stuck on an invalid scalar gives up instead of looping forever.
        let mut stuck = FakeScriptedRng::new(&[0u8; 32 * 16]);
        assert_eq!(ecc_p256_salt(&tx, &ty, &mut stuck), Err(CryptoError::Rng));
    }

    // ---- small helpers ----

    #[test]
    fn ct_eq_and_trim() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(!ct_eq(&[0x80], &[0x00]));
        assert_eq!(auth_value_trimmed(&[1, 0, 2, 0, 0]), &[1, 0, 2]);
        assert_eq!(auth_value_trimmed(&[0, 0]), &[] as &[u8]);
        assert_eq!(auth_value_trimmed(&[]), &[] as &[u8]);
    }

    #[test]
    fn sha256_and_hmac_published_vectors() {
        // FIPS 180-2 "abc"; RFC 4231 test case 2 (HMAC-SHA256, key "Jefe").
        assert_eq!(
            sha256(&[b"a", b"bc"]).to_vec(),
            hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(
            hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]).to_vec(),
            hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
        // RFC 4231 test case 6: a 131-byte key (longer than the block) is hashed first.
        let key = [0xaau8; 131];
        assert_eq!(
            hmac_sha256(
                &key,
                &[b"Test Using Larger Than Block-Size Key - Hash Key First"]
            )
            .to_vec(),
            hex("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
        );
    }
}
