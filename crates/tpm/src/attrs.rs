//! TPM 2.0 attribute bit sets as `bitflags` types, each declared once and citing its
//! TPM 2.0 Library Part 2 (rev. 1.59) section and table. Table numbers shift between
//! revisions; the section and the type name do not.
//!
//! The plain-integer constants in [`super::consts`] (`attr`, `sa`, `nv`) are these
//! bits' `.bits()`, for marshalling and templates.
#![forbid(unsafe_code)]

bitflags::bitflags! {
    /// `TPMA_OBJECT` (Part 2 §8.3.2, table 32, "Definition of (UINT32) TPMA_OBJECT Bits").
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct ObjectAttributes: u32 {
        /// `fixedTPM` (bit 1).
        const FIXED_TPM = 1 << 1;
        /// `stClear` (bit 2).
        const ST_CLEAR = 1 << 2;
        /// `fixedParent` (bit 4).
        const FIXED_PARENT = 1 << 4;
        /// `sensitiveDataOrigin` (bit 5).
        const SENSITIVE_DATA_ORIGIN = 1 << 5;
        /// `userWithAuth` (bit 6).
        const USER_WITH_AUTH = 1 << 6;
        /// `adminWithPolicy` (bit 7).
        const ADMIN_WITH_POLICY = 1 << 7;
        /// `noDA` (bit 10).
        const NO_DA = 1 << 10;
        /// `encryptedDuplication` (bit 11).
        const ENCRYPTED_DUPLICATION = 1 << 11;
        /// `restricted` (bit 16).
        const RESTRICTED = 1 << 16;
        /// `decrypt` (bit 17).
        const DECRYPT = 1 << 17;
        /// `sign` / `encrypt` (bit 18).
        const SIGN = 1 << 18;
        /// `x509sign` (bit 19).
        const X509_SIGN = 1 << 19;
    }
}

bitflags::bitflags! {
    /// `TPMA_SESSION` (Part 2 §8.4, table 33, "Definition of (UINT8) TPMA_SESSION Bits").
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct SessionAttributes: u8 {
        /// `continueSession` (bit 0): keep the session open after the command.
        const CONTINUE_SESSION = 0x01;
        /// `auditExclusive` (bit 1).
        const AUDIT_EXCLUSIVE = 0x02;
        /// `auditReset` (bit 2).
        const AUDIT_RESET = 0x04;
        /// `decrypt` (bit 5): the first command parameter is encrypted.
        const DECRYPT = 0x20;
        /// `encrypt` (bit 6): the first response parameter is encrypted.
        const ENCRYPT = 0x40;
        /// `audit` (bit 7).
        const AUDIT = 0x80;
    }
}

bitflags::bitflags! {
    /// `TPMA_STARTUP_CLEAR` (Part 2 §8.7, table 36, "Definition of (UINT32)
    /// TPMA_STARTUP_CLEAR Bits"), as `TPM_PT_STARTUP_CLEAR` reports it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct StartupClear: u32 {
        /// `phEnable` (bit 0): the platform hierarchy is enabled.
        const PH_ENABLE = 1 << 0;
        /// `shEnable` (bit 1): the storage hierarchy is enabled.
        const SH_ENABLE = 1 << 1;
        /// `ehEnable` (bit 2): the endorsement hierarchy is enabled.
        const EH_ENABLE = 1 << 2;
        /// `phEnableNV` (bit 3): platform NV indices are enabled.
        const PH_ENABLE_NV = 1 << 3;
        /// `orderly` (bit 31): the last shutdown was orderly.
        const ORDERLY = 1 << 31;
    }
}

bitflags::bitflags! {
    /// `TPMA_NV` (Part 2 §13.4, "Definition of (UINT32) TPMA_NV Bits"): the bits this
    /// project sets or reads (`TPM_NT`, bits 4..7, is a field, not a flag).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct NvAttributes: u32 {
        /// `TPMA_NV_PPWRITE` (bit 0).
        const PPWRITE = 1 << 0;
        /// `TPMA_NV_AUTHWRITE` (bit 2).
        const AUTHWRITE = 1 << 2;
        /// `TPMA_NV_POLICYWRITE` (bit 3).
        const POLICYWRITE = 1 << 3;
        /// `TPMA_NV_POLICY_DELETE` (bit 10).
        const POLICY_DELETE = 1 << 10;
        /// `TPMA_NV_PPREAD` (bit 16).
        const PPREAD = 1 << 16;
        /// `TPMA_NV_AUTHREAD` (bit 18).
        const AUTHREAD = 1 << 18;
        /// `TPMA_NV_NO_DA` (bit 25).
        const NO_DA = 1 << 25;
        /// `TPMA_NV_WRITTEN` (bit 29).
        const WRITTEN = 1 << 29;
        /// `TPMA_NV_PLATFORMCREATE` (bit 30).
        const PLATFORMCREATE = 1 << 30;
    }
}

bitflags::bitflags! {
    /// `TPMA_CC` (Part 2 §8.9, table 38, "Definition of (TPM_CC) TPMA_CC Bits"), as
    /// `GetCapability(TPM_CAP_COMMANDS)` reports each command. `commandIndex` (bits 0..15)
    /// and `cHandles` (bits 25..27) are fields: see [`CommandAttributes::command_index`]
    /// and [`CommandAttributes::c_handles`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct CommandAttributes: u32 {
        /// `nv` (bit 22): the command may write NV.
        const NV = 1 << 22;
        /// `extensive` (bit 23): the command may flush many objects.
        const EXTENSIVE = 1 << 23;
        /// `flushed` (bit 24): the context of the command's first handle is flushed.
        const FLUSHED = 1 << 24;
        /// `cHandles` (bits 25..27): the number of handles in the handle area.
        const C_HANDLES = 0b111 << 25;
        /// `rHandle` (bit 28): the response has a handle area.
        const R_HANDLE = 1 << 28;
        /// `V` (bit 29): a vendor-specific command.
        const V = 1 << 29;
        /// `commandIndex` (bits 0..15).
        const COMMAND_INDEX = 0xFFFF;
    }
}

impl CommandAttributes {
    /// `cHandles`: the number of handles in the command's handle area.
    pub const fn c_handles(self) -> u32 {
        (self.bits() & Self::C_HANDLES.bits()) >> 25
    }

    /// `commandIndex`: the command code (bits 0..15 of its `TPM_CC`).
    pub const fn command_index(self) -> u32 {
        self.bits() & Self::COMMAND_INDEX.bits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_attributes_fields() {
        // CreatePrimary as swtpm reports it: index 0x131, 1 handle in, a handle out.
        let a = CommandAttributes::from_bits_retain(0x1240_0131);
        assert_eq!(a.command_index(), 0x131);
        assert_eq!(a.c_handles(), 1);
        assert!(a.contains(CommandAttributes::R_HANDLE));
        assert!(a.contains(CommandAttributes::NV));
    }

    #[test]
    fn startup_clear_bits() {
        let v = StartupClear::from_bits_retain(0x8000_0006);
        assert!(!v.intersects(StartupClear::PH_ENABLE | StartupClear::PH_ENABLE_NV));
        assert!(v.contains(StartupClear::ORDERLY));
    }
}
