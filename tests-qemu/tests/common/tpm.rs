//! TPM client helpers the swtpm-backed tests share.

use pefbox::tpm::{Tpm, Transport};

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
