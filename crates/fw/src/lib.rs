//! The firmware role: what a host boot does with the TPM before the hypervisor and the
//! ultravisor run ([`provision()`]), and the key layout both sides agree on (this module).
//!
//! # Key layout
//! - [`PARENT_HANDLE`] `0x81800000`: an RSA-2048 restricted decryption (storage) key,
//!   AES-128-CFB, empty authValue, a primary key of the platform hierarchy
//!   (`TPM_RH_PLATFORM`; 0x81800000..=0x81FFFFFF is the platform persistent range).
//!   It is also the key every salted session is salted to (its Name is pinned).
//! - [`NV_HANDLE`] `0x01400001`: the **door index**, an ordinary NV index the platform
//!   defines (TPMA_NV_PLATFORMCREATE), attributes [`NV_ATTRIBUTES`] (AUTHREAD |
//!   POLICYWRITE | NO_DA | PLATFORMCREATE, never written), authPolicy [`nv_policy`] =
//!   PolicyCommandCode(NV_ChangeAuth) + PolicyPCR(PCR [`DOOR_PCR`] all zero). Its data is
//!   never used; its **authValue** is what authorizes the wrapping key, and it is rotated
//!   every boot by `TPM2_NV_ChangeAuth`.
//! - [`WRAPPING_HANDLE`] `0x81800001`: an RSA-2048 decryption key, OAEP-SHA256, created
//!   once under the parent, attributes [`WRAPPING_ATTRIBUTES`] (userWithAuth clear,
//!   adminWithPolicy set, noDA), authPolicy [`wrapping_policy`] =
//!   PolicyCommandCode(RSA_Decrypt) + PolicySecret(door index's Name). Its own authValue
//!   is empty and worthless: no role of the key accepts it (userWithAuth clear, the
//!   policy has no PolicyAuthValue/PolicyPassword). It is never re-persisted.
//!
//! # Revocation (why no value from an earlier boot works)
//! Every use of the wrapping key needs, in the same policy session, PolicySecret on the
//! door index, i.e. an HMAC over the door index's **current** authValue. The TPM holds
//! exactly one authValue for the index, and `TPM2_NV_ChangeAuth` replaces it in one
//! NV write (atomic in the TPM). So after boot N rotated it, the authValues of boots
//! 1..N-1 authorize nothing; private blobs of the key from any boot (the Create output,
//! recorded on the link) carry the same public area and so the same authPolicy: loading
//! one gains nothing. The key's authPolicy itself cannot be changed (it is in the
//! public area), and ObjectChangeAuth (admin role) would need a PolicyCommandCode the
//! policy does not have. The door index's own policy needs PCR 11 all zero, which holds
//! only between TPM reset and the firmware's extend (the one-way door below), and
//! undefining it needs platform authorization (gone after boot, see below).
//! Who can use the key this boot: only the holder of this boot's door authValue, i.e.
//! the ultravisor ([`UvSecrets`]).
//!
//! # What crosses the link
//! No secret in clear: the door authValue is sent only as the first parameter of
//! NV_DefineSpace (first boot) or NV_ChangeAuth, under a decrypt session salted to the
//! parent whose Name the client recomputed from its public area; the wrapping key's
//! Create sends its (empty) sensitive area under the same session; the ultravisor's
//! PolicySecret proves the authValue by HMAC in a session salted to the pinned parent;
//! platformAuth goes under a salted decrypt session; salts are RSA-OAEP encrypted.
//!
//! # The one-way door (and what it assumes)
//! PCR [`DOOR_PCR`] = 11 is not resettable (TCG PC Client: PCRs 0..=15 return to zero
//! only at TPM reset); provisioning extends it with [`door_closed_digest`] on every path
//! (success or failure), so NV_ChangeAuth of the door index is impossible until the next
//! TPM reset. Assumptions: the firmware is the first TPM user after reset (checked: PCR
//! 11 must read zero, else [`provision::ProvisionError::DoorPcrNotReset`]); the boot
//! chain up to it is trusted; PCR 11's bank is SHA-256 with empty pcrAuth.
//!
//! # The platform hierarchy, and failing closed
//! On success, platformAuth is set to 32 fresh random bytes (sent encrypted) and
//! forgotten: nobody can EvictControl, NV_UndefineSpace, PCR_Allocate, CreatePrimary or
//! HierarchyChangeAuth on the platform until the next TPM reset (which restores the empty
//! platformAuth for the next boot's firmware). The hierarchy stays enabled so the keys
//! and the door index keep working for the ultravisor.
//!
//! On **any** failure (entropy, a TPM still testing after the retry budget, a missing
//! or foreign object, a key of the old shape, a broken PCR bank, a failing command) the
//! firmware fails closed before it hands over: it extends PCR 11, then
//! `TPM2_HierarchyControl(PLATFORM, PLATFORM_NV, NO)` and
//! `TPM2_HierarchyControl(PLATFORM, PLATFORM, NO)` with the (still empty) platformAuth.
//! Neither needs entropy. With phEnableNV and phEnable clear until the next TPM reset,
//! the door index and both persistent keys are unreachable (TPM_RC_HANDLE /
//! TPM_RC_HIERARCHY), and nothing can be authorized on the platform (no EvictControl,
//! PCR_Allocate, HierarchyChangeAuth, NV_ChangeAuth, NV_DefineSpace). The ultravisor
//! gets nothing. **What a failed boot leaves**: PCR 11 extended (if the TPM answered),
//! the platform hierarchy disabled for this TPM power cycle, every persistent object and
//! the door index untouched (nothing is deleted on a failure path). **Recovery**: fix the
//! cause the console names and reboot (a TPM reset re-enables the hierarchy); for a key
//! of the old shape or a foreign object, run the launcher with `--fresh-tpm` (wipes the
//! TPM state: ESM blobs sealed to the old key will no longer open) or remove the object
//! with platform authorization before the firmware runs. A missing SHA-256 PCR bank
//! (PCR_Allocate, which needs platform authorization, so only before the firmware or on a
//! boot that left the platform open) makes PCR 11 unreadable: the boot fails closed with the
//! door "not known closed" but the platform disabled (measured: every host attempt refused);
//! re-allocate the bank under platform authorization before the firmware runs, or
//! `--fresh-tpm`.
//!
//! # Power loss
//! Nothing is re-persisted per boot: the key and the parent are made persistent once,
//! the per-boot rotation is one NV write (NV_ChangeAuth), atomic in the TPM. First boot
//! order: parent (CreatePrimary, EvictControl), door index (NV_DefineSpace with this
//! boot's authValue), key (Create, Load, EvictControl). A cut anywhere leaves either
//! the previous state or a prefix of first creation; the next boot completes it (an
//! index without a key gets a key; a key without its index gets the index back with the
//! same Name, since the Name depends only on the handle, attributes, policy and size).
//! No blob can be sealed before the key exists. **NV writes per boot**: 1 (NV_ChangeAuth)
//! after the first boot, 3 on the first (2 EvictControl, 1 NV_DefineSpace); before this
//! design, 2 per boot (the EvictControl swap), and a cut between them lost the key.
//! Measured (`cargo pef bench`, QEMU 7.2 TCG, swtpm 0.7.1, 5 boots): provisioning with the
//! keys present takes 61 ms in the image (17 TPM commands, 1 NV write), against 64 ms for
//! the previous layout on the same machine; a first boot 0.44-0.58 s (key generation). The
//! ultravisor's unwrap went from 7 ms to 15 ms: each PolicySecret is authorized by a fresh
//! HMAC session salted to the pinned parent (one RSA operation), so the ultravisor keeps
//! only one loaded TPM session between unwraps.
//!
//! # An older key
//! A key at 0x81800001 of the previous layout (authPolicy PolicyOR(A, B), revocable
//! only by re-persisting) is refused as [`provision::ProvisionError::OldShapeKey`] with a
//! console line naming the fix; it is never silently replaced. A newly created wrapping
//! key is announced loudly (`fw: WARNING: created a NEW wrapping key ...`).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod pem;
pub mod provision;

use tpm::consts::{attr, cc, nv, SHA256_SIZE};
use tpm::crypto;
use tpm::policy::{self, PolicyDigest};
use tpm::public::{Name, NvPublic, PcrSelection};
use zeroize::Zeroize;

pub use provision::{close_door, provision, ProvisionError, Provisioned};

/// Persistent handle of the storage parent (the reference firmware's).
pub const PARENT_HANDLE: u32 = 0x8180_0000;
/// Persistent handle of the wrapping (lockbox decryption) key (the reference firmware's).
pub const WRAPPING_HANDLE: u32 = 0x8180_0001;
/// The door index: an NV index in the platform manufacturer's range
/// (0x01400000..=0x017FFFFF) whose authValue authorizes the wrapping key.
pub const NV_HANDLE: u32 = 0x0140_0001;
/// `TPMA_NV` of the door index: AUTHREAD (PolicySecret uses the authValue, which
/// needs it) | POLICYWRITE (writes need the policy, which only allows NV_ChangeAuth: the
/// index is never written, so TPMA_NV_WRITTEN and the Name stay fixed) | NO_DA (a host
/// guessing cannot lock the ultravisor out) | PLATFORMCREATE (defined by the platform;
/// unreachable when phEnableNV is clear).
pub const NV_ATTRIBUTES: u32 = nv::AUTHREAD | nv::POLICYWRITE | nv::NO_DA | nv::PLATFORMCREATE;
/// The door index's data size (unused: the index is never written).
pub const NV_DATA_SIZE: u16 = 1;
/// The PCR that gates NV_ChangeAuth of the door index. Not resettable except by TPM
/// reset; provisioning extends it to close the door (see the module docs).
pub const DOOR_PCR: u32 = 11;
/// Length of the door index's authValue, fresh every boot.
pub const NV_AUTH_LEN: usize = 32;
/// Length of the lockbox symmetric key the wrapping key unwraps.
pub const SYMKEY_LEN: usize = 32;
/// Length of an RSA-2048 ciphertext (a lockbox) and modulus.
pub const RSA2048_BYTES: usize = 256;
/// What provisioning extends into [`DOOR_PCR`] (hashed with SHA-256).
pub const DOOR_CLOSED_EVENT: &[u8] = b"pefbox: door closed";

/// `TPMA_OBJECT` of the wrapping key: fixedTPM | fixedParent | sensitiveDataOrigin |
/// decrypt | adminWithPolicy | noDA; userWithAuth clear (the key's authValue never
/// suffices). noDA: the host relays every byte and can send its own commands; with DA
/// protection its 4th failed attempt would lock the ultravisor out (measured on swtpm:
/// TPM_RC_LOCKOUT), and the authorization is a 32-byte random value anyway.
pub const WRAPPING_ATTRIBUTES: u32 = attr::FIXED_TPM
    | attr::FIXED_PARENT
    | attr::SENSITIVE_DATA_ORIGIN
    | attr::DECRYPT
    | attr::ADMIN_WITH_POLICY
    | attr::NO_DA;

/// The digest provisioning extends into [`DOOR_PCR`]: SHA-256([`DOOR_CLOSED_EVENT`]).
pub fn door_closed_digest() -> [u8; SHA256_SIZE] {
    crypto::sha256(&[DOOR_CLOSED_EVENT])
}

/// The PCR selection of the door: [`DOOR_PCR`] in the SHA-256 bank.
pub fn door_selection() -> PcrSelection {
    PcrSelection::sha256(&[DOOR_PCR])
}

/// The PCR digest the door index's policy expects: SHA-256 of PCR 11's value right
/// after TPM reset (32 zero bytes).
pub fn door_open_pcr_digest() -> [u8; SHA256_SIZE] {
    crypto::sha256(&[&[0u8; SHA256_SIZE]])
}

/// The door index's authPolicy: PolicyCommandCode(NV_ChangeAuth) then PolicyPCR(PCR 11
/// all zero).
pub fn nv_policy() -> PolicyDigest {
    let after_cc = policy::command_code(&policy::INITIAL, cc::NV_CHANGE_AUTH);
    // One bank of 3 octets always fits; the error arm yields a digest no session reaches.
    policy::pcr(&after_cc, &door_selection(), &door_open_pcr_digest()).unwrap_or([0xFF; 32])
}

/// The door index's public area (what NV_DefineSpace sends and NV_ReadPublic returns).
/// `policy` must be [`nv_policy`] (passed in so the borrow outlives the value).
pub fn nv_public(policy: &PolicyDigest) -> NvPublic<'_> {
    NvPublic {
        index: NV_HANDLE,
        attributes: NV_ATTRIBUTES,
        auth_policy: policy,
        data_size: NV_DATA_SIZE,
    }
}

/// The door index's Name, `0x000B || SHA-256(TPMS_NV_PUBLIC)` (fixed: it is never
/// written, so TPMA_NV_WRITTEN never changes it).
pub fn nv_name() -> Name {
    let p = nv_policy();
    nv_public(&p)
        .name()
        .unwrap_or_else(|_| Name::from_handle(NV_HANDLE))
}

/// The wrapping key's authPolicy: PolicyCommandCode(RSA_Decrypt) then
/// PolicySecret(door index, no policyRef).
pub fn wrapping_policy() -> PolicyDigest {
    let after_cc = policy::command_code(&policy::INITIAL, cc::RSA_DECRYPT);
    policy::secret(&after_cc, nv_name().as_bytes(), &[])
}

/// The authPolicy of the previous layout's wrapping key: PolicyOR(A = CommandCode
/// (RSA_Decrypt) + AuthValue, B = CommandCode(ObjectChangeAuth) + PCR 11 all zero).
/// Only to recognise such a key and say what to do ([`ProvisionError::OldShapeKey`]).
pub fn legacy_wrapping_policy() -> PolicyDigest {
    let a = policy::auth_value(&policy::command_code(&policy::INITIAL, cc::RSA_DECRYPT));
    let after_cc = policy::command_code(&policy::INITIAL, cc::OBJECT_CHANGE_AUTH);
    let b =
        policy::pcr(&after_cc, &door_selection(), &door_open_pcr_digest()).unwrap_or([0xFF; 32]);
    policy::or(&[a, b]).unwrap_or([0xFF; 32])
}

/// A secret authValue on the heap: moving its owner moves the pointer, so no stack copy of
/// the value is left behind by a move; the owner zeroizes it in place when dropped.
pub type NvAuth = alloc::boxed::Box<[u8; NV_AUTH_LEN]>;

/// Copies `value` straight into a new heap [`NvAuth`] (no by-value temporary).
pub fn nv_auth_from(value: &[u8; NV_AUTH_LEN]) -> NvAuth {
    let mut b = alloc::boxed::Box::new([0u8; NV_AUTH_LEN]);
    b.copy_from_slice(value);
    b
}

/// What the firmware hands the ultravisor, as a Rust value in memory the hypervisor
/// cannot read (in the reference: the ultravisor's private device tree). Not `Clone`;
/// the authValue lives on the heap ([`NvAuth`]) so moves of this value leave no copy of it;
/// `Debug` never prints it; `Drop` zeroizes it (`zeroize`, not elided).
pub struct UvSecrets {
    /// The door index's authValue for this boot (authorizes the wrapping key through
    /// PolicySecret).
    pub nv_auth: NvAuth,
    /// The wrapping key's Name (`0x000B || SHA-256(public area)`), to pin.
    pub wrapping_name: Name,
    /// The storage parent's Name, to pin as the salt key.
    pub parent_name: Name,
    /// The door index's Name, to pin.
    pub nv_name: Name,
}

impl core::fmt::Debug for UvSecrets {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("UvSecrets")
            .field("nv_auth", &"<redacted>")
            .field("wrapping_name", &self.wrapping_name)
            .field("parent_name", &self.parent_name)
            .field("nv_name", &self.nv_name)
            .finish()
    }
}

impl Drop for UvSecrets {
    fn drop(&mut self) {
        (*self.nv_auth).zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_are_the_documented_digests() {
        // PolicyCommandCode(NV_ChangeAuth) then PolicyPCR over TPML_PCR_SELECTION
        // {1, SHA-256, 3 octets, PCR 11 = bit 3 of octet 1}.
        let nvp = crypto::sha256(&[
            &crypto::sha256(&[&[0u8; 32], &[0, 0, 1, 0x6C], &[0, 0, 1, 0x3B]]),
            &[0, 0, 1, 0x7F],
            &[0, 0, 0, 1, 0, 0x0B, 3, 0x00, 0x08, 0x00],
            &crypto::sha256(&[&[0u8; 32]]),
        ]);
        assert_eq!(nv_policy(), nvp);
        // TPMS_NV_PUBLIC: index, nameAlg, attributes, authPolicy, dataSize.
        let mut m = std::vec::Vec::new();
        m.extend_from_slice(&NV_HANDLE.to_be_bytes());
        m.extend_from_slice(&[0, 0x0B]);
        m.extend_from_slice(&NV_ATTRIBUTES.to_be_bytes());
        m.extend_from_slice(&[0, 32]);
        m.extend_from_slice(&nvp);
        m.extend_from_slice(&[0, 1]);
        let mut name = std::vec![0u8, 0x0B];
        name.extend_from_slice(&crypto::sha256(&[&m]));
        assert_eq!(nv_name().as_bytes(), &name[..]);
        // PolicyCommandCode(RSA_Decrypt) then PolicySecret(nv Name) + H(.. || "").
        let after_cc = crypto::sha256(&[&[0u8; 32], &[0, 0, 1, 0x6C], &[0, 0, 1, 0x59]]);
        let ps = crypto::sha256(&[&after_cc, &[0, 0, 1, 0x51], &name]);
        assert_eq!(wrapping_policy(), crypto::sha256(&[&ps]));
        assert_ne!(wrapping_policy(), legacy_wrapping_policy());
        assert_ne!(door_closed_digest(), [0u8; 32]);
        assert_eq!(NV_ATTRIBUTES & nv::WRITTEN, 0);
    }

    #[test]
    fn secrets_debug_redacts_the_auth() {
        let s = UvSecrets {
            nv_auth: nv_auth_from(&[0xAB; NV_AUTH_LEN]),
            wrapping_name: Name::from_handle(WRAPPING_HANDLE),
            parent_name: Name::from_handle(PARENT_HANDLE),
            nv_name: nv_name(),
        };
        let text = format!("{s:?}");
        assert!(text.contains("redacted"));
        assert!(!text.to_lowercase().contains("abab"));
    }
}
