//! The hypercall specification as a module: numbers and return codes of
//! `../shared/spec/ppc-spapr-uv-hcalls.txt` ("hypercalls needed by the ultravisor")
//! and the PAPR return codes as QEMU's `include/hw/ppc/spapr.h` defines them.
//!
//! Both the hypervisor (`hv`) and the ultravisor (`uv`) name these; neither reaches
//! into the other. [`HcallResult`] is the typed return both sides exchange: the
//! hypervisor produces one, the `sc 1` entry turns it into registers ([`to_regs`]), and the
//! caller turns the registers back into one ([`from_regs`]).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

/// H_TPM_COMM: send a request to a TPM and receive a response (spec: "H_TPM_COMM (0xef10)").
pub const H_TPM_COMM: u64 = 0xEF10;

/// First hcall number of the range reserved for the ultravisor (0xEF00..0xEF80).
pub const UV_HCALL_RANGE_START: u64 = 0xEF00;
/// One past the last hcall number of the ultravisor range.
pub const UV_HCALL_RANGE_END: u64 = 0xEF80;

/// UV_RETURN: the ultracall a hypervisor makes to give the ultravisor its answer to a
/// reflected hcall (Linux `arch/powerpc/include/asm/ultravisor-api.h`: 0xF11C). Outside the
/// hcall range above: it names the ultravisor, not the hypervisor.
pub const UV_RETURN: u64 = 0xF11C;

/// UV_ESM: the ultracall by which a VM asks to become secure (Linux `ultravisor-api.h`:
/// 0xF110); r4/r5 name its ESM blob.
pub const UV_ESM: u64 = 0xF110;

/// UV_SVM_TERMINATE: a secure VM's exit (Linux `ultravisor-api.h`: 0xF13C); r4 = its status.
pub const UV_SVM_TERMINATE: u64 = 0xF13C;

/// UV_PEFBOX_I2C: this image's ultracall by which the hypervisor partition asks the
/// ultravisor for one OPAL I2C register transfer (OPAL runs in hypervisor state, which the
/// hypervisor no longer has): r4 = 0 read / 1 write, r5 = bus (`ibm,opal-id`), r6 = 7-bit
/// address, r7 = register, r8 = the buffer (in the hypervisor's own memory), r9 = its length
/// (1..=256); r3 = 0 or the OPAL status. Not in Linux's set: numbered from the top of the
/// ultracall range.
pub const UV_PEFBOX_I2C: u64 = 0xF1F0;

/// H_PUT_TERM_CHAR (PAPR): write up to 16 bytes to a virtual terminal; r4 = terminal number,
/// r5 = byte count, r6/r7 = the bytes, the first in r6's most significant byte.
pub const H_PUT_TERM_CHAR: u64 = 0x58;

/// H_HARDWARE: "error" in PAPR's terms; the ultravisor answers it when the hypervisor
/// partition was stopped before it answered a reflected hcall.
pub const H_HARDWARE: HStatus = -1;

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

/// A failed hcall's status: r3 when it is not [`H_SUCCESS`].
///
/// The named variants are the PAPR codes this project uses; any other non-zero r3 (a
/// positive PAPR code such as H_BUSY, or a negative one not listed here) is [`Other`](
/// PaprError::Other), which never holds a named code, so two equal statuses are always
/// the same variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaprError {
    /// [`H_FUNCTION`].
    Function,
    /// [`H_PARAMETER`].
    Parameter,
    /// [`H_RESOURCE`].
    Resource,
    /// [`H_P2`].
    P2,
    /// [`H_P3`].
    P3,
    /// [`H_P4`].
    P4,
    /// [`H_P5`].
    P5,
    /// Any other non-zero status.
    Other(OtherStatus),
}

/// A non-zero status that is none of the named [`PaprError`] codes (only
/// [`PaprError::from_status`] makes one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtherStatus(core::num::NonZeroI64);

impl OtherStatus {
    /// The status value.
    pub const fn get(self) -> HStatus {
        self.0.get()
    }
}

impl PaprError {
    /// The error for status `s`; `None` for [`H_SUCCESS`].
    pub const fn from_status(s: HStatus) -> Option<Self> {
        Some(match s {
            H_FUNCTION => PaprError::Function,
            H_PARAMETER => PaprError::Parameter,
            H_RESOURCE => PaprError::Resource,
            H_P2 => PaprError::P2,
            H_P3 => PaprError::P3,
            H_P4 => PaprError::P4,
            H_P5 => PaprError::P5,
            other => match core::num::NonZeroI64::new(other) {
                Some(v) => PaprError::Other(OtherStatus(v)),
                None => return None,
            },
        })
    }

    /// The status value returned in r3.
    pub const fn status(self) -> HStatus {
        match self {
            PaprError::Function => H_FUNCTION,
            PaprError::Parameter => H_PARAMETER,
            PaprError::Resource => H_RESOURCE,
            PaprError::P2 => H_P2,
            PaprError::P3 => H_P3,
            PaprError::P4 => H_P4,
            PaprError::P5 => H_P5,
            PaprError::Other(o) => o.get(),
        }
    }
}

/// What an hcall returns: `Ok(r4..r12)`, or the failing status (the output registers
/// are then zero, see [`to_regs`]).
pub type HcallResult = Result<[u64; 9], PaprError>;

/// The register image of an hcall's return, r3 and r4..r12, as the `sc 1` entry writes it
/// back: made from an [`HcallResult`] by [`to_regs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HcallReturn {
    /// r3: the PAPR status.
    pub status: HStatus,
    /// r4..r12.
    pub out: [u64; 9],
}

impl HcallReturn {
    /// A return with `status` and all output registers zero.
    pub const fn status(status: HStatus) -> Self {
        HcallReturn {
            status,
            out: [0; 9],
        }
    }
}

/// The registers for `r`: r3 = [`H_SUCCESS`] and r4..r12 = its outputs, or r3 = the error's
/// status and r4..r12 all zero (nothing of a failed call leaks through them).
pub const fn to_regs(r: &HcallResult) -> HcallReturn {
    match r {
        Ok(out) => HcallReturn {
            status: H_SUCCESS,
            out: *out,
        },
        Err(e) => HcallReturn::status(e.status()),
    }
}

/// The typed view of the registers an hcall returned: r3 = [`H_SUCCESS`] gives
/// `Ok(r4..r12)`; any other r3 its [`PaprError`], and r4..r12 are dropped.
pub const fn from_regs(r3: HStatus, out: [u64; 9]) -> HcallResult {
    match PaprError::from_status(r3) {
        None => Ok(out),
        Some(e) => Err(e),
    }
}

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

    #[test]
    fn statuses_convert_both_ways_and_unknown_ones_are_other() {
        assert_eq!(PaprError::from_status(H_SUCCESS), None);
        let named = [
            (H_FUNCTION, PaprError::Function),
            (H_PARAMETER, PaprError::Parameter),
            (H_RESOURCE, PaprError::Resource),
            (H_P2, PaprError::P2),
            (H_P3, PaprError::P3),
            (H_P4, PaprError::P4),
            (H_P5, PaprError::P5),
        ];
        for (code, e) in named {
            assert_eq!(PaprError::from_status(code), Some(e));
            assert_eq!(e.status(), code);
        }
        for other in [1, -1, -3, -54, -59, i64::MIN, i64::MAX] {
            let e = PaprError::from_status(other).unwrap();
            assert!(
                matches!(e, PaprError::Other(o) if o.get() == other),
                "{other}"
            );
            assert_eq!(e.status(), other);
        }
    }

    #[test]
    fn registers_round_trip_and_a_failure_zeroes_the_outputs() {
        let out = [1, 2, 3, 4, 5, 6, 7, 8, u64::MAX];
        assert_eq!(from_regs(H_SUCCESS, out), Ok(out));
        assert_eq!(
            to_regs(&Ok(out)),
            HcallReturn {
                status: H_SUCCESS,
                out
            }
        );
        // A failure's outputs are not kept, and none are written back.
        assert_eq!(from_regs(H_P2, out), Err(PaprError::P2));
        assert_eq!(to_regs(&Err(PaprError::P2)), HcallReturn::status(H_P2));
        for r3 in [H_FUNCTION, H_RESOURCE, H_P5, 1, -1, i64::MIN] {
            let r = from_regs(r3, out);
            assert_eq!(to_regs(&r), HcallReturn::status(r3), "{r3}");
        }
    }
}
