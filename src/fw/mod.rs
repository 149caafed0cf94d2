//! The firmware role: what a host boot does with the TPM before the hypervisor and the
//! ultravisor run ([`provision()`]), and the key layout both sides agree on (this module).
//!
//! # Key layout (the reference firmware's, so existing tooling works)
//! - [`PARENT_HANDLE`] `0x81800000`: an RSA-2048 restricted decryption (storage) key,
//!   AES-128-CFB, empty authValue, a primary key of the platform hierarchy
//!   (`TPM_RH_PLATFORM`): handles 0x81800000..=0x81FFFFFF are the platform persistent
//!   range (EvictControl with owner authorization answers TPM_RC_RANGE), and a platform
//!   key also survives a `TPM2_Clear` by the owner.
//! - [`WRAPPING_HANDLE`] `0x81800001`: an RSA-2048 decryption key, scheme OAEP-SHA256,
//!   created under the parent, attributes [`WRAPPING_ATTRIBUTES`] (userWithAuth clear,
//!   adminWithPolicy set: every use goes through its policy; noDA set, see there),
//!   authPolicy
//!   [`wrapping_policy`] = PolicyOR(A, B):
//!   - A ([`branch_decrypt`]) = PolicyCommandCode(RSA_Decrypt) + PolicyAuthValue: the
//!     ultravisor's branch, needs this boot's authValue;
//!   - B ([`branch_change_auth`]) = PolicyCommandCode(ObjectChangeAuth) +
//!     PolicyPCR(PCR [`DOOR_PCR`], SHA-256 bank, value all zero): the firmware's branch,
//!     to set a fresh authValue at boot.
//!
//! # The one-way door (and what it assumes)
//! The reference firmware puts branch B on PCR 16, the debug PCR, which any software can
//! reset (`TPM2_PCR_Reset` at locality 0) and which nothing extends after provisioning:
//! host software can satisfy B and re-authorize the key. Here B is on PCR
//! [`DOOR_PCR`] = 11, which is **not** resettable (TCG PC Client profile: PCRs 0..=15
//! only return to zero at TPM reset, i.e. host reboot), and provisioning extends it with
//! [`door_closed_digest`] right after it rotated the authValue (and on every failure
//! path once it started), so B cannot be satisfied again until the next TPM reset; A
//! needs the fresh authValue, which only the ultravisor holds (handed over as a Rust
//! value, never through hcall buffers, see [`UvSecrets`]).
//!
//! Assumptions, stated:
//! - The firmware is the first code to use the TPM after a TPM reset, and nothing extends
//!   PCR 11 before provisioning. This is detected, not assumed silently: if PCR 11 is not
//!   all zero at provisioning, [`provision::provision`] fails with
//!   [`provision::ProvisionError::DoorPcrNotReset`] instead of using a key it cannot rotate.
//! - Whoever runs before provisioning could already have used branch B: the guarantee is
//!   only as good as the boot chain up to this firmware.
//! - Platform hierarchy authorization can evict or replace both keys. platformAuth is
//!   empty after every TPM Startup(CLEAR); provisioning needs that (it creates and
//!   persists the keys with it) and, once it succeeded and the door is closed, sets
//!   platformAuth to 32 fresh random bytes that it sends encrypted (salted session to
//!   the pinned parent) and then overwrites and forgets (step 6 of [`provision()`]). So
//!   after a successful provisioning nobody can authorize `TPM_RH_PLATFORM` until the
//!   next TPM reset: host software cannot EvictControl the keys (measured on swtpm:
//!   TPM_RC_BAD_AUTH), nor HierarchyChangeAuth the platform back. The hierarchy stays
//!   enabled (phEnable is not cleared), so the keys keep working. This assumes, as
//!   above, that the firmware is the first to use the TPM after every TPM reset (else
//!   whoever came first could set platformAuth itself: provisioning then fails at its
//!   first platform-authorized command, or at step 6, and reports it). Not covered: a
//!   failed provisioning leaves platformAuth empty (on purpose, so a foreign object can
//!   be cleaned up; the ultravisor gets no secrets that boot), and `TPM2_Clear` with
//!   lockout authorization or the owner's hierarchies are not this firmware's to lock
//!   (platform keys survive `TPM2_Clear` anyway). Even with platform authorization the
//!   keys cannot be swapped unnoticed: a replaced key has another Name, and the
//!   ultravisor pins both Names (salted session to the pinned parent, cpHash over the
//!   pinned wrapping key Name), so it refuses to use it (denial of service, not
//!   disclosure).
//! - PCR 11's bank is SHA-256 and its authorization (pcrAuth) is empty, as the TCG PC
//!   Client profile sets it.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod provision;

use crate::tpm::consts::{attr, cc, SHA256_SIZE};
use crate::tpm::crypto;
use crate::tpm::policy::{self, PolicyDigest};
use crate::tpm::public::{Name, PcrSelection};

pub use provision::{close_door, provision, ProvisionError, Provisioned};

/// Persistent handle of the storage parent (the reference firmware's).
pub const PARENT_HANDLE: u32 = 0x8180_0000;
/// Persistent handle of the wrapping (lockbox decryption) key (the reference firmware's).
pub const WRAPPING_HANDLE: u32 = 0x8180_0001;
/// The PCR that gates branch B (re-authorization). Not resettable except by TPM reset;
/// provisioning extends it to close the door (see the module docs).
pub const DOOR_PCR: u32 = 11;
/// Length of the wrapping key's authValue, fresh every boot.
pub const WRAPPING_AUTH_LEN: usize = 16;
/// Length of the lockbox symmetric key the wrapping key unwraps.
pub const SYMKEY_LEN: usize = 32;
/// Length of an RSA-2048 ciphertext (a lockbox) and modulus.
pub const RSA2048_BYTES: usize = 256;
/// What provisioning extends into [`DOOR_PCR`] (hashed with SHA-256).
pub const DOOR_CLOSED_EVENT: &[u8] = b"pefbox: door closed";

/// `TPMA_OBJECT` of the wrapping key: fixedTPM | fixedParent | sensitiveDataOrigin |
/// decrypt | adminWithPolicy | noDA; userWithAuth clear (the authValue alone never
/// suffices).
///
/// noDA is a deliberate difference from the reference layout: the authValue is 16
/// fresh random bytes per boot, so dictionary-attack protection adds nothing against
/// guessing, while it hands the host (which relays every byte and may send its own
/// commands) a denial of service that outlives reboots: measured on swtpm, the host's
/// 4th wrong-auth RSA_Decrypt attempt on a DA-protected key answers TPM_RC_LOCKOUT
/// (0x921), and from then on the ultravisor's unwraps fail the same way until the
/// lockout recovery time has passed.
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

/// The PCR selection of branch B: [`DOOR_PCR`] in the SHA-256 bank.
pub fn door_selection() -> PcrSelection {
    PcrSelection::sha256(&[DOOR_PCR])
}

/// The PCR digest branch B expects: SHA-256 of PCR 11's value right after TPM reset
/// (32 zero bytes).
pub fn door_open_pcr_digest() -> [u8; SHA256_SIZE] {
    crypto::sha256(&[&[0u8; SHA256_SIZE]])
}

/// Branch A: PolicyCommandCode(RSA_Decrypt) then PolicyAuthValue.
pub fn branch_decrypt() -> PolicyDigest {
    policy::auth_value(&policy::command_code(&policy::INITIAL, cc::RSA_DECRYPT))
}

/// Branch B: PolicyCommandCode(ObjectChangeAuth) then PolicyPCR(PCR 11 all zero).
pub fn branch_change_auth() -> PolicyDigest {
    let after_cc = policy::command_code(&policy::INITIAL, cc::OBJECT_CHANGE_AUTH);
    // The selection is one bank of 3 octets: it always fits the 16-byte buffer, so the
    // error arm is unreachable; it still yields a digest no session can reach.
    policy::pcr(&after_cc, &door_selection(), &door_open_pcr_digest()).unwrap_or([0xFF; 32])
}

/// The two branches in PolicyOR order (A, B).
pub fn branches() -> [PolicyDigest; 2] {
    [branch_decrypt(), branch_change_auth()]
}

/// The wrapping key's authPolicy: PolicyOR(A, B).
pub fn wrapping_policy() -> PolicyDigest {
    policy::or(&branches()).unwrap_or([0xFF; 32])
}

/// What the firmware hands the ultravisor, as a Rust value in memory the hypervisor
/// cannot read (in the reference: the ultravisor's private device tree). `Debug`
/// never prints the authValue; `Drop` overwrites it.
#[derive(Clone)]
pub struct UvSecrets {
    /// The wrapping key's authValue for this boot.
    pub wrapping_auth: [u8; WRAPPING_AUTH_LEN],
    /// The wrapping key's Name (`0x000B || SHA-256(public area)`), to pin.
    pub wrapping_name: Name,
    /// The storage parent's Name, to pin as the salt key.
    pub parent_name: Name,
}

impl core::fmt::Debug for UvSecrets {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("UvSecrets")
            .field("wrapping_auth", &"<redacted>")
            .field("wrapping_name", &self.wrapping_name)
            .field("parent_name", &self.parent_name)
            .finish()
    }
}

impl Drop for UvSecrets {
    fn drop(&mut self) {
        self.wrapping_auth.fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_is_or_of_the_two_documented_branches() {
        let a = crypto::sha256(&[
            &crypto::sha256(&[&[0u8; 32], &[0, 0, 1, 0x6C], &[0, 0, 1, 0x59]]),
            &[0, 0, 1, 0x6B],
        ]);
        assert_eq!(branch_decrypt(), a);
        // PolicyPCR over TPML_PCR_SELECTION {1, SHA-256, 3 octets, PCR 11 = bit 3 of octet 1}.
        let b = crypto::sha256(&[
            &crypto::sha256(&[&[0u8; 32], &[0, 0, 1, 0x6C], &[0, 0, 1, 0x50]]),
            &[0, 0, 1, 0x7F],
            &[0, 0, 0, 1, 0, 0x0B, 3, 0x00, 0x08, 0x00],
            &crypto::sha256(&[&[0u8; 32]]),
        ]);
        assert_eq!(branch_change_auth(), b);
        assert_eq!(
            wrapping_policy(),
            crypto::sha256(&[&[0u8; 32], &[0, 0, 1, 0x71], &a, &b])
        );
        assert_ne!(door_closed_digest(), [0u8; 32]);
    }

    #[test]
    fn secrets_debug_redacts_the_auth() {
        let s = UvSecrets {
            wrapping_auth: [0xAB; WRAPPING_AUTH_LEN],
            wrapping_name: Name::from_handle(WRAPPING_HANDLE),
            parent_name: Name::from_handle(PARENT_HANDLE),
        };
        let text = format!("{s:?}");
        assert!(text.contains("redacted"));
        assert!(!text.to_lowercase().contains("abab"));
    }
}
