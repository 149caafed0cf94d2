//! The hypercall specification as a module: numbers and return codes of
//! `../shared/spec/ppc-spapr-uv-hcalls.txt` ("hypercalls needed by the ultravisor")
//! and the PAPR return codes as QEMU's `include/hw/ppc/spapr.h` defines them.
//!
//! Both the hypervisor (`hv`) and the ultravisor (`uv`) name these; neither reaches
//! into the other.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// H_TPM_COMM: send a request to a TPM and receive a response (spec: "H_TPM_COMM (0xef10)").
pub const H_TPM_COMM: u64 = 0xEF10;

/// First hcall number of the range reserved for the ultravisor (0xEF00..0xEF80).
pub const UV_HCALL_RANGE_START: u64 = 0xEF00;
/// One past the last hcall number of the ultravisor range.
pub const UV_HCALL_RANGE_END: u64 = 0xEF80;

/// r4 operation: send a request and receive a response, opening a session if needed.
pub const TPM_COMM_OP_EXECUTE: u64 = 0x1;
/// r4 operation: close the existing TPM session, if any.
pub const TPM_COMM_OP_CLOSE_SESSION: u64 = 0x2;

/// Largest request: `in_size` "must be less than or equal to 4KB".
pub const TPM_COMM_MAX_IN: u64 = 4096;
/// Smallest response buffer: `out_size` "must be at least 4KB".
pub const TPM_COMM_MIN_OUT: u64 = 4096;

/// A PAPR hcall status, as returned in r3 (a signed 64-bit value).
pub type HStatus = i64;

/// Request processed successfully.
pub const H_SUCCESS: HStatus = 0;
/// Hcall not supported, or (H_TPM_COMM) TPM access not currently allowed/configured.
pub const H_FUNCTION: HStatus = -2;
/// Invalid parameter; for H_TPM_COMM: invalid TPM operation (r4).
pub const H_PARAMETER: HStatus = -4;
/// Resource problem; for H_TPM_COMM: problem communicating with the TPM.
pub const H_RESOURCE: HStatus = -16;
/// Parameter 2 invalid; for H_TPM_COMM: in_buffer (r5).
pub const H_P2: HStatus = -55;
/// Parameter 3 invalid; for H_TPM_COMM: in_size (r6).
pub const H_P3: HStatus = -56;
/// Parameter 4 invalid; for H_TPM_COMM: out_buffer (r7).
pub const H_P4: HStatus = -57;
/// Parameter 5 invalid; for H_TPM_COMM: out_size (r8).
pub const H_P5: HStatus = -58;

/// The constant's name for a return code defined here (`H_P2` for -55), `None` for any
/// other value.
pub fn name(code: HStatus) -> Option<&'static str> {
    Some(match code {
        H_SUCCESS => "H_SUCCESS",
        H_FUNCTION => "H_FUNCTION",
        H_PARAMETER => "H_PARAMETER",
        H_RESOURCE => "H_RESOURCE",
        H_P2 => "H_P2",
        H_P3 => "H_P3",
        H_P4 => "H_P4",
        H_P5 => "H_P5",
        _ => return None,
    })
}

/// A readable name for a status, for console lines: [`name`], or `unknown`.
pub fn status_name(s: HStatus) -> &'static str {
    name(s).unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_own_name_and_others_none() {
        let codes = [
            (H_SUCCESS, "H_SUCCESS", 0),
            (H_FUNCTION, "H_FUNCTION", -2),
            (H_PARAMETER, "H_PARAMETER", -4),
            (H_RESOURCE, "H_RESOURCE", -16),
            (H_P2, "H_P2", -55),
            (H_P3, "H_P3", -56),
            (H_P4, "H_P4", -57),
            (H_P5, "H_P5", -58),
        ];
        for (code, want, value) in codes {
            assert_eq!(code, value, "{want} has PAPR's value");
            assert_eq!(name(code), Some(want));
            assert_eq!(status_name(code), want);
        }
        for other in [1, -1, -3, -54, -59, i64::MIN, i64::MAX] {
            assert_eq!(name(other), None, "{other}");
            assert_eq!(status_name(other), "unknown");
        }
    }
}
