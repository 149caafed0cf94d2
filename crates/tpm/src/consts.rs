//! TPM 2.0 constants used by this client (TPM 2.0 Library, Part 2: Structures).
#![forbid(unsafe_code)]

/// Structure tags (`TPM_ST`) and command codes (`TPM_CC`): declared once, in [`super::wire`].
pub use super::wire::{cc, st};

/// Algorithm identifiers (`TPM_ALG_ID`).
pub mod alg {
    /// `TPM_ALG_RSA`.
    pub const RSA: u16 = 0x0001;
    /// `TPM_ALG_SHA1`.
    pub const SHA1: u16 = 0x0004;
    /// `TPM_ALG_HMAC`.
    pub const HMAC: u16 = 0x0005;
    /// `TPM_ALG_AES`.
    pub const AES: u16 = 0x0006;
    /// `TPM_ALG_KEYEDHASH`.
    pub const KEYEDHASH: u16 = 0x0008;
    /// `TPM_ALG_XOR`.
    pub const XOR: u16 = 0x000A;
    /// `TPM_ALG_SHA256`.
    pub const SHA256: u16 = 0x000B;
    /// `TPM_ALG_SHA384`.
    pub const SHA384: u16 = 0x000C;
    /// `TPM_ALG_SHA512`.
    pub const SHA512: u16 = 0x000D;
    /// `TPM_ALG_NULL`.
    pub const NULL: u16 = 0x0010;
    /// `TPM_ALG_RSASSA`.
    pub const RSASSA: u16 = 0x0014;
    /// `TPM_ALG_RSAES`.
    pub const RSAES: u16 = 0x0015;
    /// `TPM_ALG_RSAPSS`.
    pub const RSAPSS: u16 = 0x0016;
    /// `TPM_ALG_OAEP`.
    pub const OAEP: u16 = 0x0017;
    /// `TPM_ALG_ECDSA`.
    pub const ECDSA: u16 = 0x0018;
    /// `TPM_ALG_ECDH`.
    pub const ECDH: u16 = 0x0019;
    /// `TPM_ALG_KDF1_SP800_56A`.
    pub const KDF1_SP800_56A: u16 = 0x0020;
    /// `TPM_ALG_KDF1_SP800_108`.
    pub const KDF1_SP800_108: u16 = 0x0022;
    /// `TPM_ALG_ECC`.
    pub const ECC: u16 = 0x0023;
    /// `TPM_ALG_SYMCIPHER`.
    pub const SYMCIPHER: u16 = 0x0025;
    /// `TPM_ALG_CFB`.
    pub const CFB: u16 = 0x0043;
}

/// `TPM_ECC_NIST_P256`.
pub const ECC_NIST_P256: u16 = 0x0003;

/// Reserved and permanent handles (`TPM_RH`, `TPM_RS`) and handle ranges.
pub mod rh {
    /// `TPM_RH_OWNER`: the storage hierarchy.
    pub const OWNER: u32 = 0x4000_0001;
    /// `TPM_RH_NULL`.
    pub const NULL: u32 = 0x4000_0007;
    /// `TPM_RS_PW`: the password pseudo-session.
    pub const PW: u32 = 0x4000_0009;
    /// `TPM_RH_LOCKOUT`.
    pub const LOCKOUT: u32 = 0x4000_000A;
    /// `TPM_RH_ENDORSEMENT`.
    pub const ENDORSEMENT: u32 = 0x4000_000B;
    /// `TPM_RH_PLATFORM`.
    pub const PLATFORM: u32 = 0x4000_000C;
    /// `TPM_RH_PLATFORM_NV` (HierarchyControl: phEnableNV).
    pub const PLATFORM_NV: u32 = 0x4000_000D;
    /// First NV index handle.
    pub const NV_INDEX_FIRST: u32 = 0x0100_0000;
    /// First transient object handle (`TPM_HT_TRANSIENT` << 24).
    pub const TRANSIENT_FIRST: u32 = 0x8000_0000;
    /// First persistent object handle (`TPM_HT_PERSISTENT` << 24).
    pub const PERSISTENT_FIRST: u32 = 0x8100_0000;
    /// First HMAC session handle (`TPM_HT_HMAC_SESSION` << 24).
    pub const HMAC_SESSION_FIRST: u32 = 0x0200_0000;
    /// First policy session handle (`TPM_HT_POLICY_SESSION` << 24).
    pub const POLICY_SESSION_FIRST: u32 = 0x0300_0000;
    /// First PCR handle.
    pub const PCR_FIRST: u32 = 0x0000_0000;
}

/// Object attributes (`TPMA_OBJECT`) as plain `u32`s: the bits of [`super::attrs::ObjectAttributes`].
pub mod attr {
    use super::super::attrs::ObjectAttributes;

    /// `fixedTPM`.
    pub const FIXED_TPM: u32 = ObjectAttributes::FIXED_TPM.bits();
    /// `stClear`.
    pub const ST_CLEAR: u32 = ObjectAttributes::ST_CLEAR.bits();
    /// `fixedParent`.
    pub const FIXED_PARENT: u32 = ObjectAttributes::FIXED_PARENT.bits();
    /// `sensitiveDataOrigin`.
    pub const SENSITIVE_DATA_ORIGIN: u32 = ObjectAttributes::SENSITIVE_DATA_ORIGIN.bits();
    /// `userWithAuth`.
    pub const USER_WITH_AUTH: u32 = ObjectAttributes::USER_WITH_AUTH.bits();
    /// `adminWithPolicy`.
    pub const ADMIN_WITH_POLICY: u32 = ObjectAttributes::ADMIN_WITH_POLICY.bits();
    /// `noDA`.
    pub const NO_DA: u32 = ObjectAttributes::NO_DA.bits();
    /// `encryptedDuplication`.
    pub const ENCRYPTED_DUPLICATION: u32 = ObjectAttributes::ENCRYPTED_DUPLICATION.bits();
    /// `restricted`.
    pub const RESTRICTED: u32 = ObjectAttributes::RESTRICTED.bits();
    /// `decrypt`.
    pub const DECRYPT: u32 = ObjectAttributes::DECRYPT.bits();
    /// `sign` / `encrypt`.
    pub const SIGN: u32 = ObjectAttributes::SIGN.bits();
}

/// Session attributes (`TPMA_SESSION`) as plain `u8`s: the bits of [`super::attrs::SessionAttributes`].
pub mod sa {
    use super::super::attrs::SessionAttributes;

    /// `continueSession`: keep the session open after the command.
    pub const CONTINUE_SESSION: u8 = SessionAttributes::CONTINUE_SESSION.bits();
    /// `auditExclusive`.
    pub const AUDIT_EXCLUSIVE: u8 = SessionAttributes::AUDIT_EXCLUSIVE.bits();
    /// `auditReset`.
    pub const AUDIT_RESET: u8 = SessionAttributes::AUDIT_RESET.bits();
    /// `decrypt`: the first command parameter is encrypted.
    pub const DECRYPT: u8 = SessionAttributes::DECRYPT.bits();
    /// `encrypt`: the first response parameter is encrypted.
    pub const ENCRYPT: u8 = SessionAttributes::ENCRYPT.bits();
    /// `audit`.
    pub const AUDIT: u8 = SessionAttributes::AUDIT.bits();
}

/// NV index attributes (`TPMA_NV`) as plain `u32`s: the bits of [`super::attrs::NvAttributes`].
pub mod nv {
    use super::super::attrs::NvAttributes;

    /// `TPMA_NV_PPWRITE`.
    pub const PPWRITE: u32 = NvAttributes::PPWRITE.bits();
    /// `TPMA_NV_AUTHWRITE`.
    pub const AUTHWRITE: u32 = NvAttributes::AUTHWRITE.bits();
    /// `TPMA_NV_POLICYWRITE`.
    pub const POLICYWRITE: u32 = NvAttributes::POLICYWRITE.bits();
    /// `TPMA_NV_POLICY_DELETE`.
    pub const POLICY_DELETE: u32 = NvAttributes::POLICY_DELETE.bits();
    /// `TPMA_NV_PPREAD`.
    pub const PPREAD: u32 = NvAttributes::PPREAD.bits();
    /// `TPMA_NV_AUTHREAD`.
    pub const AUTHREAD: u32 = NvAttributes::AUTHREAD.bits();
    /// `TPMA_NV_NO_DA`.
    pub const NO_DA: u32 = NvAttributes::NO_DA.bits();
    /// `TPMA_NV_WRITTEN`.
    pub const WRITTEN: u32 = NvAttributes::WRITTEN.bits();
    /// `TPMA_NV_PLATFORMCREATE`.
    pub const PLATFORMCREATE: u32 = NvAttributes::PLATFORMCREATE.bits();
}

/// Session types (`TPM_SE`).
pub mod se {
    /// `TPM_SE_HMAC`.
    pub const HMAC: u8 = 0x00;
    /// `TPM_SE_POLICY`.
    pub const POLICY: u8 = 0x01;
    /// `TPM_SE_TRIAL`.
    pub const TRIAL: u8 = 0x03;
}

/// Capabilities (`TPM_CAP`) and properties (`TPM_PT`).
pub mod cap {
    /// `TPM_CAP_ALGS`.
    pub const ALGS: u32 = 0;
    /// `TPM_CAP_HANDLES`.
    pub const HANDLES: u32 = 1;
    /// `TPM_CAP_PCRS`.
    pub const PCRS: u32 = 5;
    /// `TPM_CAP_TPM_PROPERTIES`.
    pub const TPM_PROPERTIES: u32 = 6;
    /// `TPM_PT_FAMILY_INDICATOR` ("2.0").
    pub const PT_FAMILY_INDICATOR: u32 = 0x100;
    /// `TPM_PT_MANUFACTURER`.
    pub const PT_MANUFACTURER: u32 = 0x105;
    /// `TPM_PT_MAX_COMMAND_SIZE`.
    pub const PT_MAX_COMMAND_SIZE: u32 = 0x11E;
    /// `TPM_PT_MAX_RESPONSE_SIZE`.
    pub const PT_MAX_RESPONSE_SIZE: u32 = 0x11F;
    /// `TPM_PT_STARTUP_CLEAR` (`TPMA_STARTUP_CLEAR`: phEnable bit 0, phEnableNV bit 3).
    pub const PT_STARTUP_CLEAR: u32 = 0x201;
}

/// Startup types (`TPM_SU`).
pub mod su {
    /// `TPM_SU_CLEAR`.
    pub const CLEAR: u16 = 0x0000;
    /// `TPM_SU_STATE`.
    pub const STATE: u16 = 0x0001;
}

/// Size of a SHA-256 digest, the only session and name hash this client uses.
pub const SHA256_SIZE: usize = 32;
