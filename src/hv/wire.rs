//! The little of the TPM 2.0 wire format the hypervisor needs: the command/response
//! header, big-endian readers, and the FlushContext command it sends on CLOSE_SESSION.
//! Command layouts (handle and authorization areas) are the resource manager's, [`super::rm`].
//!
//! Every reader here takes untrusted bytes and returns `Option`: no indexing, no
//! panics. Values are big-endian, as on the TPM wire. Command codes are those of
//! TPM 2.0 Library Part 2, table "TPM_CC".
#![forbid(unsafe_code)]

/// Size of a TPM command or response header: tag (u16), size (u32), code (u32).
pub const HEADER_LEN: usize = 10;

/// `TPM_ST_NO_SESSIONS`: a command or response without an authorization area.
pub const TPM_ST_NO_SESSIONS: u16 = 0x8001;

/// `TPM_RC_SUCCESS`.
pub const TPM_RC_SUCCESS: u32 = 0;

/// `TPM_CC_CreatePrimary`: 1 handle in, 1 handle (a transient object) out.
pub const TPM_CC_CREATE_PRIMARY: u32 = 0x0000_0131;
/// `TPM_CC_Load`: 1 handle in, 1 handle (a transient object) out.
pub const TPM_CC_LOAD: u32 = 0x0000_0157;
/// `TPM_CC_LoadExternal`: no handle in, 1 handle (a transient object) out.
pub const TPM_CC_LOAD_EXTERNAL: u32 = 0x0000_0167;
/// `TPM_CC_CreateLoaded`: 1 handle in, 1 handle (a transient object) out.
pub const TPM_CC_CREATE_LOADED: u32 = 0x0000_0191;
/// `TPM_CC_StartAuthSession`: 2 handles in, 1 handle (a session) out.
pub const TPM_CC_START_AUTH_SESSION: u32 = 0x0000_0176;
/// `TPM_CC_ContextLoad`: no handle in, 1 handle (object or session) out.
pub const TPM_CC_CONTEXT_LOAD: u32 = 0x0000_0161;
/// `TPM_CC_FlushContext`: its one argument, `flushHandle`, is a parameter (not in
/// the handle area) but sits at the same place, right after the header; no handle out.
pub const TPM_CC_FLUSH_CONTEXT: u32 = 0x0000_0165;

/// A TPM command or response header, as read from the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// `TPM_ST_*` tag.
    pub tag: u16,
    /// Total size in bytes, header included, as the header claims it.
    pub size: u32,
    /// Command code (in a command) or response code (in a response).
    pub code: u32,
}

/// Reads a big-endian u16 at `off`, or `None` if `bytes` is too short.
pub fn u16_at(bytes: &[u8], off: usize) -> Option<u16> {
    let end = off.checked_add(2)?;
    let b: [u8; 2] = bytes.get(off..end)?.try_into().ok()?;
    Some(u16::from_be_bytes(b))
}

/// Reads a big-endian u32 at `off`, or `None` if `bytes` is too short.
pub fn u32_at(bytes: &[u8], off: usize) -> Option<u32> {
    let end = off.checked_add(4)?;
    let b: [u8; 4] = bytes.get(off..end)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

/// Reads the header at the start of `bytes`, or `None` if fewer than
/// [`HEADER_LEN`] bytes are given. The size field is returned as claimed, unchecked.
pub fn header(bytes: &[u8]) -> Option<Header> {
    Some(Header {
        tag: u16_at(bytes, 0)?,
        size: u32_at(bytes, 2)?,
        code: u32_at(bytes, 6)?,
    })
}

/// Whether a successful response to command `code` carries a new handle (a transient
/// object, sequence or session) that the hypervisor must track, at the start of the
/// response's handle area (right after the header): the allowlist's creating commands
/// ([`super::rm::ALLOWLIST`]).
pub fn creates_handle(code: u32) -> bool {
    super::rm::lookup(code).is_some_and(|i| i.rsp_handles > 0)
}

/// The 14-byte `TPM2_FlushContext(handle)` command (no sessions).
pub fn flush_context_command(handle: u32) -> [u8; 14] {
    let mut c = [0u8; 14];
    // Fixed offsets into a fixed-size array: in bounds by construction.
    c[0..2].copy_from_slice(&TPM_ST_NO_SESSIONS.to_be_bytes());
    c[2..6].copy_from_slice(&14u32.to_be_bytes());
    c[6..10].copy_from_slice(&TPM_CC_FLUSH_CONTEXT.to_be_bytes());
    c[10..14].copy_from_slice(&handle.to_be_bytes());
    c
}

/// `TPM_CC_ContextSave`.
pub const TPM_CC_CONTEXT_SAVE: u32 = 0x0000_0162;

/// The 14-byte `TPM2_ContextSave(handle)` command.
pub fn context_save_command(handle: u32) -> [u8; 14] {
    let mut c = flush_context_command(handle);
    c[6..10].copy_from_slice(&TPM_CC_CONTEXT_SAVE.to_be_bytes());
    c
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

    #[test]
    fn header_reads_big_endian_and_refuses_short_input() {
        let b = [0x80, 0x01, 0, 0, 0, 0x0E, 0, 0, 0x01, 0x65, 0xAA];
        assert_eq!(
            header(&b),
            Some(Header {
                tag: 0x8001,
                size: 14,
                code: 0x165
            })
        );
        assert_eq!(header(&b[..9]), None);
        assert_eq!(header(&[]), None);
        assert_eq!(u32_at(&b, 8), None);
        assert_eq!(u32_at(&b, usize::MAX), None);
        assert_eq!(u16_at(&b, 9), Some(0x65AA));
    }

    #[test]
    fn flush_command_is_well_formed() {
        let c = flush_context_command(0x8000_0002);
        let h = header(&c).unwrap();
        assert_eq!(h.tag, TPM_ST_NO_SESSIONS);
        assert_eq!(h.size as usize, c.len());
        assert_eq!(h.code, TPM_CC_FLUSH_CONTEXT);
        assert_eq!(u32_at(&c, HEADER_LEN), Some(0x8000_0002));
    }

    #[test]
    fn creating_commands_and_gone_codes() {
        for cc in [0x131, 0x157, 0x167, 0x191, 0x176, 0x161, 0x186, 0x15B] {
            assert!(creates_handle(cc), "{cc:#x}");
        }
        assert!(!creates_handle(TPM_CC_FLUSH_CONTEXT));
        assert!(!creates_handle(0x159));
        assert!(flush_says_gone(0x1C4) && flush_says_gone(0x1CB));
        assert!(!flush_says_gone(0) && !flush_says_gone(0x101));
    }
}
