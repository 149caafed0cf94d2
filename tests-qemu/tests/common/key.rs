//! Host-software attacks on the platform hierarchy shared by the wrapping key's campaigns
//! (host level and boot level): each returns true if it got through.

use pefbox::fw::WRAPPING_HANDLE;
use pefbox::tpm::client::CommandSpec;
use pefbox::tpm::consts::{alg, rh};
use pefbox::tpm::{Auth, Error, Object, Tpm, Transport};

/// `TPM2_PCR_Allocate` with the empty platform password, dropping the SHA-256 bank (SHA-1 keeps
/// all 24 PCRs; SHA-256 none: a bank not listed would stay as it is on swtpm). `Ok(true)` if
/// the TPM accepted the allocation.
pub fn pcr_allocate<T: Transport>(host: &mut Tpm<T>) -> Result<bool, Error> {
    let spec = CommandSpec {
        cc: 0x12B,
        auth_handles: 1,
        response_handles: 0,
        encrypt_command: false,
        encrypt_response: false,
    };
    let reply = host.execute(
        &spec,
        &[&Object::permanent(rh::PLATFORM)],
        &mut [Auth::Password(b"")],
        |w| {
            w.u32(2)?;
            w.u16(alg::SHA1)?;
            w.u8(3)?;
            w.bytes(&[0xFF, 0xFF, 0xFF])?;
            w.u16(alg::SHA256)?;
            w.u8(3)?;
            w.bytes(&[0, 0, 0])
        },
    )?;
    Ok(host.reply_params(&reply).first() == Some(&1))
}

/// `TPM2_EvictControl` of the wrapping key (its real Name) with the empty platform password.
pub fn evict_wrapping_key<T: Transport>(host: &mut Tpm<T>) -> bool {
    host.read_public(WRAPPING_HANDLE)
        .ok()
        .map(|(k, _)| super::tpm::platform_evict(host, &k, WRAPPING_HANDLE).is_ok())
        .unwrap_or(false)
}

/// `TPM2_HierarchyChangeAuth(TPM_RH_PLATFORM)` with the empty platform password.
pub fn change_platform_auth<T: Transport>(host: &mut Tpm<T>) -> bool {
    host.hierarchy_change_auth(
        &Object::permanent(rh::PLATFORM),
        &mut [Auth::Password(b"")],
        b"host-chosen",
    )
    .is_ok()
}
