//! What of the TPM 2.0 wire format is the hypervisor's own: which responses carry a new
//! handle to track, and which FlushContext answers mean "already gone". The header, the
//! command codes and the fixed commands it sends are [`tpm::wire`]'s (re-exported
//! here for the readers); command layouts (handle and authorization areas) are the
//! resource manager's, [`super::rm`].
#![forbid(unsafe_code)]

pub use tpm::wire::{code, header, put_u32_at, u16_at, u32_at, Header, HEADER_LEN};

/// Whether a successful response to command `code` carries a new handle (a transient
/// object, sequence or session) that the hypervisor must track, at the start of the
/// response's handle area (right after the header): the allowlist's creating commands
/// ([`super::rm::ALLOWLIST`]).
pub fn creates_handle(code: u32) -> bool {
    super::rm::lookup(code).is_some_and(|i| i.rsp_handles > 0)
}

/// Whether a FlushContext response code means "no such handle is loaded", which
/// on CLOSE_SESSION counts as already gone (e.g. a session the TPM flushed itself
/// because the caller cleared `continueSession`).
///
/// Measured against swtpm 0.7.1: flushing an unloaded transient handle answers
/// `0x1C4` (TPM_RC_VALUE, parameter 1), an unloaded session handle `0x1CB`
/// (TPM_RC_HANDLE, parameter 1). The handle-numbered forms (`0x184`, `0x18B`)
/// are accepted too, for TPMs that treat `flushHandle` as a handle.
pub fn flush_says_gone(rc: u32) -> bool {
    matches!(rc, 0x1C4 | 0x1CB | 0x184 | 0x18B)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tpm::wire::cc;

    #[test]
    fn creating_commands_and_gone_codes() {
        for cc in [0x131, 0x157, 0x167, 0x191, 0x176, 0x161, 0x186, 0x15B] {
            assert!(creates_handle(cc), "{cc:#x}");
        }
        assert!(!creates_handle(cc::FLUSH_CONTEXT));
        assert!(!creates_handle(0x159));
        assert!(flush_says_gone(0x1C4) && flush_says_gone(0x1CB));
        assert!(!flush_says_gone(0) && !flush_says_gone(0x101));
    }
}
