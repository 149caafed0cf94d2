//! TPM response codes (`TPM_RC`), decoded into something a person can read.
//!
//! Format-1 codes (bit 7 set) name an error and the parameter, handle or session it
//! concerns; format-0 codes are TPM 2.0 errors, warnings, vendor codes or TPM 1.2
//! codes. [`ResponseCode`]'s `Display` prints e.g. `TPM_RC_AUTH_FAIL (session 1)
//! [0x98e]`.
#![forbid(unsafe_code)]

/// A non-zero TPM response code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseCode(pub u32);

/// What a response code refers to (format-1 codes only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// The code does not name a parameter, handle or session.
    None,
    /// Command parameter number (1-based).
    Parameter(u8),
    /// Command handle number (1-based).
    Handle(u8),
    /// Authorization session number (1-based).
    Session(u8),
}

/// `TPM_RC_INITIALIZE`: TPM2_Startup already done or not yet done.
pub const RC_INITIALIZE: u32 = 0x100;
/// `TPM_RC_AUTH_UNAVAILABLE`.
pub const RC_AUTH_UNAVAILABLE: u32 = 0x12F;
/// `TPM_RC_AUTH_FAIL` (format 1, base code without subject bits).
pub const RC_AUTH_FAIL: u32 = 0x08E;
/// `TPM_RC_POLICY_FAIL` (format 1).
pub const RC_POLICY_FAIL: u32 = 0x09D;
/// `TPM_RC_POLICY_CC` (format 1): the policy's command code is not this command's.
pub const RC_POLICY_CC: u32 = 0x0A4;
/// `TPM_RC_BAD_AUTH` (format 1).
pub const RC_BAD_AUTH: u32 = 0x0A2;
/// `TPM_RC_VALUE` (format 1).
pub const RC_VALUE: u32 = 0x084;
/// `TPM_RC_HANDLE` (format 1).
pub const RC_HANDLE: u32 = 0x08B;

const FMT1: u32 = 0x080;
const VER1: u32 = 0x100;
const WARN: u32 = 0x900;

impl ResponseCode {
    /// True for format-1 codes (bit 7 set).
    pub fn is_format1(self) -> bool {
        self.0 & FMT1 != 0
    }

    /// True for format-0 warnings (`TPM_RC_WARN` set): the command may be retried.
    pub fn is_warning(self) -> bool {
        !self.is_format1() && self.0 & 0xD80 == WARN
    }

    /// The code with the parameter/handle/session number removed: for a format-1
    /// code, `0x080 | error number`; otherwise the code itself.
    pub fn base(self) -> u32 {
        if self.is_format1() {
            FMT1 | (self.0 & 0x3F)
        } else {
            self.0
        }
    }

    /// The parameter, handle or session a format-1 code concerns.
    pub fn subject(self) -> Subject {
        if !self.is_format1() {
            return Subject::None;
        }
        let n = ((self.0 >> 8) & 0xF) as u8;
        if self.0 & 0x040 != 0 {
            Subject::Parameter(n)
        } else if n == 0 {
            Subject::None
        } else if n & 0x8 != 0 {
            Subject::Session(n & 0x7)
        } else {
            Subject::Handle(n)
        }
    }

    /// The specification's name of the code (without subject), if known.
    pub fn name(self) -> Option<&'static str> {
        if self.0 & !0xFFF != 0 {
            return None;
        }
        if self.is_format1() {
            return fmt1_name(self.0 & 0x3F);
        }
        if self.0 & VER1 == 0 {
            return None; // a TPM 1.2 code
        }
        if self.0 & 0x400 != 0 {
            return None; // vendor-defined
        }
        let e = self.0 & 0x7F;
        if self.0 & 0x800 != 0 {
            warn_name(e)
        } else {
            fmt0_name(e)
        }
    }
}

fn fmt1_name(e: u32) -> Option<&'static str> {
    Some(match e {
        0x01 => "TPM_RC_ASYMMETRIC",
        0x02 => "TPM_RC_ATTRIBUTES",
        0x03 => "TPM_RC_HASH",
        0x04 => "TPM_RC_VALUE",
        0x05 => "TPM_RC_HIERARCHY",
        0x07 => "TPM_RC_KEY_SIZE",
        0x08 => "TPM_RC_MGF",
        0x09 => "TPM_RC_MODE",
        0x0A => "TPM_RC_TYPE",
        0x0B => "TPM_RC_HANDLE",
        0x0C => "TPM_RC_KDF",
        0x0D => "TPM_RC_RANGE",
        0x0E => "TPM_RC_AUTH_FAIL",
        0x0F => "TPM_RC_NONCE",
        0x10 => "TPM_RC_PP",
        0x12 => "TPM_RC_SCHEME",
        0x15 => "TPM_RC_SIZE",
        0x16 => "TPM_RC_SYMMETRIC",
        0x17 => "TPM_RC_TAG",
        0x18 => "TPM_RC_SELECTOR",
        0x1A => "TPM_RC_INSUFFICIENT",
        0x1B => "TPM_RC_SIGNATURE",
        0x1C => "TPM_RC_KEY",
        0x1D => "TPM_RC_POLICY_FAIL",
        0x1F => "TPM_RC_INTEGRITY",
        0x20 => "TPM_RC_TICKET",
        0x21 => "TPM_RC_RESERVED_BITS",
        0x22 => "TPM_RC_BAD_AUTH",
        0x23 => "TPM_RC_EXPIRED",
        0x24 => "TPM_RC_POLICY_CC",
        0x25 => "TPM_RC_BINDING",
        0x26 => "TPM_RC_CURVE",
        0x27 => "TPM_RC_ECC_POINT",
        _ => return None,
    })
}

fn fmt0_name(e: u32) -> Option<&'static str> {
    Some(match e {
        0x00 => "TPM_RC_INITIALIZE",
        0x01 => "TPM_RC_FAILURE",
        0x03 => "TPM_RC_SEQUENCE",
        0x0B => "TPM_RC_PRIVATE",
        0x19 => "TPM_RC_HMAC",
        0x20 => "TPM_RC_DISABLED",
        0x21 => "TPM_RC_EXCLUSIVE",
        0x24 => "TPM_RC_AUTH_TYPE",
        0x25 => "TPM_RC_AUTH_MISSING",
        0x26 => "TPM_RC_POLICY",
        0x27 => "TPM_RC_PCR",
        0x28 => "TPM_RC_PCR_CHANGED",
        0x2D => "TPM_RC_UPGRADE",
        0x2E => "TPM_RC_TOO_MANY_CONTEXTS",
        0x2F => "TPM_RC_AUTH_UNAVAILABLE",
        0x30 => "TPM_RC_REBOOT",
        0x31 => "TPM_RC_UNBALANCED",
        0x42 => "TPM_RC_COMMAND_SIZE",
        0x43 => "TPM_RC_COMMAND_CODE",
        0x44 => "TPM_RC_AUTHSIZE",
        0x45 => "TPM_RC_AUTH_CONTEXT",
        0x46 => "TPM_RC_NV_RANGE",
        0x47 => "TPM_RC_NV_SIZE",
        0x48 => "TPM_RC_NV_LOCKED",
        0x49 => "TPM_RC_NV_AUTHORIZATION",
        0x4A => "TPM_RC_NV_UNINITIALIZED",
        0x4B => "TPM_RC_NV_SPACE",
        0x4C => "TPM_RC_NV_DEFINED",
        0x50 => "TPM_RC_BAD_CONTEXT",
        0x51 => "TPM_RC_CPHASH",
        0x52 => "TPM_RC_PARENT",
        0x53 => "TPM_RC_NEEDS_TEST",
        0x54 => "TPM_RC_NO_RESULT",
        0x55 => "TPM_RC_SENSITIVE",
        _ => return None,
    })
}

fn warn_name(e: u32) -> Option<&'static str> {
    Some(match e {
        0x01 => "TPM_RC_CONTEXT_GAP",
        0x02 => "TPM_RC_OBJECT_MEMORY",
        0x03 => "TPM_RC_SESSION_MEMORY",
        0x04 => "TPM_RC_MEMORY",
        0x05 => "TPM_RC_SESSION_HANDLES",
        0x06 => "TPM_RC_OBJECT_HANDLES",
        0x07 => "TPM_RC_LOCALITY",
        0x08 => "TPM_RC_YIELDED",
        0x09 => "TPM_RC_CANCELED",
        0x0A => "TPM_RC_TESTING",
        0x10 => "TPM_RC_REFERENCE_H0",
        0x11 => "TPM_RC_REFERENCE_H1",
        0x12 => "TPM_RC_REFERENCE_H2",
        0x13 => "TPM_RC_REFERENCE_H3",
        0x14 => "TPM_RC_REFERENCE_H4",
        0x15 => "TPM_RC_REFERENCE_H5",
        0x16 => "TPM_RC_REFERENCE_H6",
        0x18 => "TPM_RC_REFERENCE_S0",
        0x19 => "TPM_RC_REFERENCE_S1",
        0x1A => "TPM_RC_REFERENCE_S2",
        0x1B => "TPM_RC_REFERENCE_S3",
        0x1C => "TPM_RC_REFERENCE_S4",
        0x1D => "TPM_RC_REFERENCE_S5",
        0x1E => "TPM_RC_REFERENCE_S6",
        0x20 => "TPM_RC_NV_RATE",
        0x21 => "TPM_RC_LOCKOUT",
        0x22 => "TPM_RC_RETRY",
        0x23 => "TPM_RC_NV_UNAVAILABLE",
        _ => return None,
    })
}

impl core::fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n)?,
            None if self.0 & !0xFFF != 0 => f.write_str("non-TPM response code")?,
            None if !self.is_format1() && self.0 & VER1 == 0 => f.write_str("TPM 1.2 code")?,
            None if !self.is_format1() && self.0 & 0x400 != 0 => {
                f.write_str("vendor-defined code")?
            }
            None => f.write_str("unknown TPM code")?,
        }
        match self.subject() {
            Subject::None => {}
            Subject::Parameter(n) => write!(f, " (parameter {n})")?,
            Subject::Handle(n) => write!(f, " (handle {n})")?,
            Subject::Session(n) => write!(f, " (session {n})")?,
        }
        write!(f, " [{:#x}]", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn format1_codes_name_their_subject() {
        let rc = ResponseCode(0x98E);
        assert_eq!(rc.base(), RC_AUTH_FAIL);
        assert_eq!(rc.subject(), Subject::Session(1));
        assert_eq!(rc.to_string(), "TPM_RC_AUTH_FAIL (session 1) [0x98e]");
        let rc = ResponseCode(0x1C4);
        assert_eq!(rc.base(), RC_VALUE);
        assert_eq!(rc.subject(), Subject::Parameter(1));
        assert_eq!(rc.to_string(), "TPM_RC_VALUE (parameter 1) [0x1c4]");
        let rc = ResponseCode(0x18B);
        assert_eq!(rc.subject(), Subject::Handle(1));
        assert_eq!(rc.to_string(), "TPM_RC_HANDLE (handle 1) [0x18b]");
        assert_eq!(ResponseCode(0x0A2).subject(), Subject::None);
        assert_eq!(ResponseCode(0xFD5).subject(), Subject::Parameter(15));
    }

    #[test]
    fn format0_codes_errors_warnings_vendor_and_legacy() {
        assert_eq!(ResponseCode(0x100).to_string(), "TPM_RC_INITIALIZE [0x100]");
        assert_eq!(
            ResponseCode(0x12F).to_string(),
            "TPM_RC_AUTH_UNAVAILABLE [0x12f]"
        );
        let w = ResponseCode(0x902);
        assert!(w.is_warning());
        assert_eq!(w.to_string(), "TPM_RC_OBJECT_MEMORY [0x902]");
        assert!(!ResponseCode(0x101).is_warning());
        assert_eq!(ResponseCode(0x1E).to_string(), "TPM 1.2 code [0x1e]");
        assert_eq!(
            ResponseCode(0x500).to_string(),
            "vendor-defined code [0x500]"
        );
        assert_eq!(
            ResponseCode(0x8_0001).to_string(),
            "non-TPM response code [0x80001]"
        );
        assert_eq!(ResponseCode(0x17F).to_string(), "unknown TPM code [0x17f]");
    }
}
