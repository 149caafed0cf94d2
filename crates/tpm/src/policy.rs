//! Policy digest arithmetic (TPM 2.0 Part 3, the "policyDigest is updated" clauses),
//! for computing an object's `authPolicy` off the TPM (what a trial session would return).
#![forbid(unsafe_code)]

use super::consts::{cc, SHA256_SIZE};
use super::crypto;
use super::marshal::{WriteError, Writer};
use super::public::PcrSelection;

/// A SHA-256 policy digest.
pub type PolicyDigest = [u8; SHA256_SIZE];

/// The digest every policy session starts from (all zeros).
pub const INITIAL: PolicyDigest = [0u8; SHA256_SIZE];

/// Most branches a PolicyOR accepts (`TPML_DIGEST` in PolicyOR holds 2..=8).
pub const MAX_OR_BRANCHES: usize = 8;

/// `TPM2_PolicyCommandCode`: `H(old || TPM_CC_PolicyCommandCode || code)`.
pub fn command_code(old: &PolicyDigest, code: u32) -> PolicyDigest {
    crypto::sha256(&[
        old,
        &cc::POLICY_COMMAND_CODE.to_be_bytes(),
        &code.to_be_bytes(),
    ])
}

/// `TPM2_PolicyAuthValue`: `H(old || TPM_CC_PolicyAuthValue)`.
pub fn auth_value(old: &PolicyDigest) -> PolicyDigest {
    crypto::sha256(&[old, &cc::POLICY_AUTH_VALUE.to_be_bytes()])
}

/// `TPM2_PolicyOR`: `H(0...0 || TPM_CC_PolicyOR || digest_1 || ... || digest_n)`;
/// `None` unless 2..=8 branches are given.
pub fn or(branches: &[PolicyDigest]) -> Option<PolicyDigest> {
    if branches.len() < 2 || branches.len() > MAX_OR_BRANCHES {
        return None;
    }
    let mut buf = [0u8; SHA256_SIZE * (MAX_OR_BRANCHES + 1) + 4];
    let mut w = Writer::new(&mut buf);
    w.bytes(&INITIAL).ok()?;
    w.u32(cc::POLICY_OR).ok()?;
    for b in branches {
        w.bytes(b).ok()?;
    }
    Some(crypto::sha256(&[w.written()]))
}

/// `TPM2_PolicyPCR`: `H(old || TPM_CC_PolicyPCR || pcrs || pcrDigest)` where `pcrs`
/// is the marshalled `TPML_PCR_SELECTION` and `pcr_digest` the SHA-256 of the
/// concatenated selected PCR values.
pub fn pcr(
    old: &PolicyDigest,
    selection: &PcrSelection,
    pcr_digest: &PolicyDigest,
) -> Result<PolicyDigest, WriteError> {
    let mut buf = [0u8; 16];
    let mut w = Writer::new(&mut buf);
    selection.marshal_list(&mut w)?;
    Ok(crypto::sha256(&[
        old,
        &cc::POLICY_PCR.to_be_bytes(),
        w.written(),
        pcr_digest,
    ]))
}

/// `TPM2_PolicySecret` (no cpHash, no expiration): `H(H(old || TPM_CC_PolicySecret ||
/// authName) || policyRef)` (PolicyUpdate always hashes policyRef, even empty).
pub fn secret(old: &PolicyDigest, auth_name: &[u8], policy_ref: &[u8]) -> PolicyDigest {
    let d = crypto::sha256(&[old, &cc::POLICY_SECRET.to_be_bytes(), auth_name]);
    crypto::sha256(&[&d, policy_ref])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn or_needs_two_to_eight_branches_and_is_order_sensitive() {
        let a = auth_value(&command_code(&INITIAL, cc::RSA_DECRYPT));
        let b = auth_value(&command_code(&INITIAL, cc::OBJECT_CHANGE_AUTH));
        assert_ne!(a, b);
        assert!(or(&[a]).is_none());
        assert!(or(&[a; 9]).is_none());
        assert_ne!(or(&[a, b]), or(&[b, a]));
        assert_eq!(
            or(&[a, b]).unwrap(),
            crypto::sha256(&[&[0u8; 32], &[0, 0, 1, 0x71], &a, &b])
        );
    }
}
