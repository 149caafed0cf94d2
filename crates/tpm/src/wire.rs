//! The TPM 2.0 wire format, once: the command/response header, the command codes with
//! their names, the structure tags, and the fixed commands more than one part of the
//! project sends (Shutdown, FlushContext, ContextSave, ContextLoad) or answers with (a
//! bare response code).
//!
//! The header is a fixed big-endian layout (TPM 2.0 Library Part 1, "Command/Response
//! Structure"), so it is a `zerocopy` struct; every reader takes untrusted bytes and
//! returns `Option` (never panics on short input). Variable bodies (TPM2B, lists) are
//! [`super::marshal`]'s.
#![forbid(unsafe_code)]
// Parses TPM command and response headers: no panics, no silent wrap or truncation.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
#![deny(clippy::panic, clippy::arithmetic_side_effects)]
#![deny(clippy::cast_possible_truncation)]

use zerocopy::byteorder::{BigEndian, U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// The 10-byte header as it lies on the wire: `tag` (`TPM_ST`), `size` (the whole
/// message, header included) and `code` (`TPM_CC` in a command, `TPM_RC` in a response).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, Clone, Copy)]
#[repr(C)]
pub struct WireHeader {
    /// `TPM_ST_*` tag.
    pub tag: U16<BigEndian>,
    /// Total size in bytes, header included.
    pub size: U32<BigEndian>,
    /// Command code or response code.
    pub code: U32<BigEndian>,
}

/// Size of a TPM command or response header: tag (u16), size (u32), code (u32).
pub const HEADER_LEN: usize = core::mem::size_of::<WireHeader>();
const _: () = assert!(HEADER_LEN == 10);
/// [`HEADER_LEN`] in the type of the header's own `size` field.
const HEADER_SIZE: u32 = 10;
const _: () = assert!(HEADER_SIZE as usize == HEADER_LEN);

/// A TPM command or response header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// `TPM_ST_*` tag.
    pub tag: u16,
    /// Total size in bytes, header included, as the header claims it.
    pub size: u32,
    /// Command code (in a command) or response code (in a response).
    pub code: u32,
}

impl Header {
    /// The header at the start of `bytes` and the bytes after it, or `None` if fewer than
    /// [`HEADER_LEN`] bytes are given. The size field is returned as claimed, unchecked.
    pub fn parse(bytes: &[u8]) -> Option<(Header, &[u8])> {
        let (h, rest) = WireHeader::ref_from_prefix(bytes).ok()?;
        Some((
            Header {
                tag: h.tag.get(),
                size: h.size.get(),
                code: h.code.get(),
            },
            rest,
        ))
    }

    /// The 10 bytes of this header.
    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let w = WireHeader {
            tag: U16::new(self.tag),
            size: U32::new(self.size),
            code: U32::new(self.code),
        };
        let mut b = [0u8; HEADER_LEN];
        b.copy_from_slice(w.as_bytes());
        b
    }
}

/// Reads the header at the start of `bytes`, or `None` if fewer than [`HEADER_LEN`]
/// bytes are given. The size field is returned as claimed, unchecked.
pub fn header(bytes: &[u8]) -> Option<Header> {
    Header::parse(bytes).map(|(h, _)| h)
}

/// The code field (command code of a command, response code of a response), or `None`
/// if `bytes` is shorter than a header.
pub fn code(bytes: &[u8]) -> Option<u32> {
    header(bytes).map(|h| h.code)
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

/// Writes `v` big-endian at `off`; false (nothing written) if `bytes` is too short.
pub fn put_u32_at(bytes: &mut [u8], off: usize, v: u32) -> bool {
    match off.checked_add(4).and_then(|end| bytes.get_mut(off..end)) {
        Some(d) => {
            d.copy_from_slice(&v.to_be_bytes());
            true
        }
        None => false,
    }
}

/// Structure tags (`TPM_ST`, TPM 2.0 Library Part 2 §6.9).
pub mod st {
    /// `TPM_ST_RSP_COMMAND`: TPM 1.2-style tag of a response to a malformed command.
    pub const RSP_COMMAND: u16 = 0x00C4;
    /// `TPM_ST_NO_SESSIONS`: a command or response without an authorization area.
    pub const NO_SESSIONS: u16 = 0x8001;
    /// `TPM_ST_SESSIONS`: a command or response with an authorization area.
    pub const SESSIONS: u16 = 0x8002;
    /// `TPM_ST_CREATION`.
    pub const CREATION: u16 = 0x8021;
}

/// `TPM_RC_SUCCESS`.
pub const RC_SUCCESS: u32 = 0;

/// A TPM command code (`TPM_CC`, TPM 2.0 Library Part 2 §6.5.2, table "TPM_CC").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct CommandCode(pub u32);

macro_rules! command_codes {
    ($($konst:ident = $val:literal, $name:literal;)*) => {
        impl CommandCode {
            $(
                #[doc = concat!("`TPM_CC_", $name, "`.")]
                pub const $konst: CommandCode = CommandCode($val);
            )*

            /// Every command code of the table, in increasing order.
            pub const ALL: &'static [CommandCode] = &[$(CommandCode($val)),*];

            /// The TPM 2.0 name of this code (`"CreatePrimary"`, without `TPM2_`), or
            /// `None` for a code not in TPM 2.0 Library rev. 1.59's table.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($val => Some($name),)*
                    _ => None,
                }
            }
        }

        /// The command codes as plain `u32`s, for marshalling and `match` patterns: the
        /// same table as [`CommandCode`].
        pub mod cc {
            $(
                #[doc = concat!("`TPM_CC_", $name, "`.")]
                pub const $konst: u32 = $val;
            )*
        }
    };
}

command_codes! {
    NV_UNDEFINE_SPACE_SPECIAL = 0x11F, "NV_UndefineSpaceSpecial";
    EVICT_CONTROL = 0x120, "EvictControl";
    HIERARCHY_CONTROL = 0x121, "HierarchyControl";
    NV_UNDEFINE_SPACE = 0x122, "NV_UndefineSpace";
    CHANGE_EPS = 0x124, "ChangeEPS";
    CHANGE_PPS = 0x125, "ChangePPS";
    CLEAR = 0x126, "Clear";
    CLEAR_CONTROL = 0x127, "ClearControl";
    CLOCK_SET = 0x128, "ClockSet";
    HIERARCHY_CHANGE_AUTH = 0x129, "HierarchyChangeAuth";
    NV_DEFINE_SPACE = 0x12A, "NV_DefineSpace";
    PCR_ALLOCATE = 0x12B, "PCR_Allocate";
    PCR_SET_AUTH_POLICY = 0x12C, "PCR_SetAuthPolicy";
    PP_COMMANDS = 0x12D, "PP_Commands";
    SET_PRIMARY_POLICY = 0x12E, "SetPrimaryPolicy";
    FIELD_UPGRADE_START = 0x12F, "FieldUpgradeStart";
    CLOCK_RATE_ADJUST = 0x130, "ClockRateAdjust";
    CREATE_PRIMARY = 0x131, "CreatePrimary";
    NV_GLOBAL_WRITE_LOCK = 0x132, "NV_GlobalWriteLock";
    GET_COMMAND_AUDIT_DIGEST = 0x133, "GetCommandAuditDigest";
    NV_INCREMENT = 0x134, "NV_Increment";
    NV_SET_BITS = 0x135, "NV_SetBits";
    NV_EXTEND = 0x136, "NV_Extend";
    NV_WRITE = 0x137, "NV_Write";
    NV_WRITE_LOCK = 0x138, "NV_WriteLock";
    DICTIONARY_ATTACK_LOCK_RESET = 0x139, "DictionaryAttackLockReset";
    DICTIONARY_ATTACK_PARAMETERS = 0x13A, "DictionaryAttackParameters";
    NV_CHANGE_AUTH = 0x13B, "NV_ChangeAuth";
    PCR_EVENT = 0x13C, "PCR_Event";
    PCR_RESET = 0x13D, "PCR_Reset";
    SEQUENCE_COMPLETE = 0x13E, "SequenceComplete";
    SET_ALGORITHM_SET = 0x13F, "SetAlgorithmSet";
    SET_COMMAND_CODE_AUDIT_STATUS = 0x140, "SetCommandCodeAuditStatus";
    FIELD_UPGRADE_DATA = 0x141, "FieldUpgradeData";
    INCREMENTAL_SELF_TEST = 0x142, "IncrementalSelfTest";
    SELF_TEST = 0x143, "SelfTest";
    STARTUP = 0x144, "Startup";
    SHUTDOWN = 0x145, "Shutdown";
    STIR_RANDOM = 0x146, "StirRandom";
    ACTIVATE_CREDENTIAL = 0x147, "ActivateCredential";
    CERTIFY = 0x148, "Certify";
    POLICY_NV = 0x149, "PolicyNV";
    CERTIFY_CREATION = 0x14A, "CertifyCreation";
    DUPLICATE = 0x14B, "Duplicate";
    GET_TIME = 0x14C, "GetTime";
    GET_SESSION_AUDIT_DIGEST = 0x14D, "GetSessionAuditDigest";
    NV_READ = 0x14E, "NV_Read";
    NV_READ_LOCK = 0x14F, "NV_ReadLock";
    OBJECT_CHANGE_AUTH = 0x150, "ObjectChangeAuth";
    POLICY_SECRET = 0x151, "PolicySecret";
    REWRAP = 0x152, "Rewrap";
    CREATE = 0x153, "Create";
    ECDH_ZGEN = 0x154, "ECDH_ZGen";
    HMAC = 0x155, "HMAC";
    IMPORT = 0x156, "Import";
    LOAD = 0x157, "Load";
    QUOTE = 0x158, "Quote";
    RSA_DECRYPT = 0x159, "RSA_Decrypt";
    HMAC_START = 0x15B, "HMAC_Start";
    SEQUENCE_UPDATE = 0x15C, "SequenceUpdate";
    SIGN = 0x15D, "Sign";
    UNSEAL = 0x15E, "Unseal";
    POLICY_SIGNED = 0x160, "PolicySigned";
    CONTEXT_LOAD = 0x161, "ContextLoad";
    CONTEXT_SAVE = 0x162, "ContextSave";
    ECDH_KEY_GEN = 0x163, "ECDH_KeyGen";
    ENCRYPT_DECRYPT = 0x164, "EncryptDecrypt";
    FLUSH_CONTEXT = 0x165, "FlushContext";
    LOAD_EXTERNAL = 0x167, "LoadExternal";
    MAKE_CREDENTIAL = 0x168, "MakeCredential";
    NV_READ_PUBLIC = 0x169, "NV_ReadPublic";
    POLICY_AUTHORIZE = 0x16A, "PolicyAuthorize";
    POLICY_AUTH_VALUE = 0x16B, "PolicyAuthValue";
    POLICY_COMMAND_CODE = 0x16C, "PolicyCommandCode";
    POLICY_COUNTER_TIMER = 0x16D, "PolicyCounterTimer";
    POLICY_CP_HASH = 0x16E, "PolicyCpHash";
    POLICY_LOCALITY = 0x16F, "PolicyLocality";
    POLICY_NAME_HASH = 0x170, "PolicyNameHash";
    POLICY_OR = 0x171, "PolicyOR";
    POLICY_TICKET = 0x172, "PolicyTicket";
    READ_PUBLIC = 0x173, "ReadPublic";
    RSA_ENCRYPT = 0x174, "RSA_Encrypt";
    START_AUTH_SESSION = 0x176, "StartAuthSession";
    VERIFY_SIGNATURE = 0x177, "VerifySignature";
    ECC_PARAMETERS = 0x178, "ECC_Parameters";
    FIRMWARE_READ = 0x179, "FirmwareRead";
    GET_CAPABILITY = 0x17A, "GetCapability";
    GET_RANDOM = 0x17B, "GetRandom";
    GET_TEST_RESULT = 0x17C, "GetTestResult";
    HASH = 0x17D, "Hash";
    PCR_READ = 0x17E, "PCR_Read";
    POLICY_PCR = 0x17F, "PolicyPCR";
    POLICY_RESTART = 0x180, "PolicyRestart";
    READ_CLOCK = 0x181, "ReadClock";
    PCR_EXTEND = 0x182, "PCR_Extend";
    PCR_SET_AUTH_VALUE = 0x183, "PCR_SetAuthValue";
    NV_CERTIFY = 0x184, "NV_Certify";
    EVENT_SEQUENCE_COMPLETE = 0x185, "EventSequenceComplete";
    HASH_SEQUENCE_START = 0x186, "HashSequenceStart";
    POLICY_PHYSICAL_PRESENCE = 0x187, "PolicyPhysicalPresence";
    POLICY_DUPLICATION_SELECT = 0x188, "PolicyDuplicationSelect";
    POLICY_GET_DIGEST = 0x189, "PolicyGetDigest";
    TEST_PARMS = 0x18A, "TestParms";
    COMMIT = 0x18B, "Commit";
    POLICY_PASSWORD = 0x18C, "PolicyPassword";
    ZGEN_2PHASE = 0x18D, "ZGen_2Phase";
    EC_EPHEMERAL = 0x18E, "EC_Ephemeral";
    POLICY_NV_WRITTEN = 0x18F, "PolicyNvWritten";
    POLICY_TEMPLATE = 0x190, "PolicyTemplate";
    CREATE_LOADED = 0x191, "CreateLoaded";
    POLICY_AUTHORIZE_NV = 0x192, "PolicyAuthorizeNV";
    ENCRYPT_DECRYPT_2 = 0x193, "EncryptDecrypt2";
    AC_GET_CAPABILITY = 0x194, "AC_GetCapability";
    AC_SEND = 0x195, "AC_Send";
    POLICY_AC_SEND_SELECT = 0x196, "Policy_AC_SendSelect";
    CERTIFY_X509 = 0x197, "CertifyX509";
    ACT_SET_TIMEOUT = 0x198, "ACT_SetTimeout";
}

impl CommandCode {
    /// The command code of the command in `bytes`, or `None` if it is shorter than a header.
    pub fn of(bytes: &[u8]) -> Option<CommandCode> {
        code(bytes).map(CommandCode)
    }
}

impl From<CommandCode> for u32 {
    fn from(c: CommandCode) -> u32 {
        c.0
    }
}

/// A command or response of header only plus a 4-byte big-endian `u32` parameter.
fn with_u32(tag: u16, code: u32, arg: u32) -> [u8; HEADER_LEN + 4] {
    let mut c = [0u8; HEADER_LEN + 4];
    let (h, p) = c.split_at_mut(HEADER_LEN);
    h.copy_from_slice(
        &Header {
            tag,
            size: HEADER_SIZE + 4,
            code,
        }
        .to_bytes(),
    );
    p.copy_from_slice(&arg.to_be_bytes());
    c
}

/// The 12-byte `TPM2_Shutdown(shutdownType)` command (no sessions); `su` is a `TPM_SU`.
pub fn shutdown(su: u16) -> [u8; HEADER_LEN + 2] {
    let mut c = [0u8; HEADER_LEN + 2];
    let (h, p) = c.split_at_mut(HEADER_LEN);
    h.copy_from_slice(
        &Header {
            tag: st::NO_SESSIONS,
            size: HEADER_SIZE + 2,
            code: cc::SHUTDOWN,
        }
        .to_bytes(),
    );
    p.copy_from_slice(&su.to_be_bytes());
    c
}

/// The 12-byte `TPM2_GetRandom(bytesRequested)` command (no sessions); `const` so a
/// self-test's fixed command is a constant.
pub const fn get_random(bytes_requested: u16) -> [u8; HEADER_LEN + 2] {
    let [t0, t1] = st::NO_SESSIONS.to_be_bytes();
    let [s0, s1, s2, s3] = (HEADER_SIZE + 2).to_be_bytes();
    let [c0, c1, c2, c3] = cc::GET_RANDOM.to_be_bytes();
    let [n0, n1] = bytes_requested.to_be_bytes();
    [t0, t1, s0, s1, s2, s3, c0, c1, c2, c3, n0, n1]
}

/// The 14-byte `TPM2_FlushContext(handle)` command (no sessions).
pub fn flush_context(handle: u32) -> [u8; HEADER_LEN + 4] {
    with_u32(st::NO_SESSIONS, cc::FLUSH_CONTEXT, handle)
}

/// The 14-byte `TPM2_ContextSave(handle)` command (no sessions).
pub fn context_save(handle: u32) -> [u8; HEADER_LEN + 4] {
    with_u32(st::NO_SESSIONS, cc::CONTEXT_SAVE, handle)
}

/// Writes `TPM2_ContextLoad(context)` (no sessions) into the start of `buf`: the header,
/// then the marshalled `TPMS_CONTEXT` `ctx` as it came from a ContextSave response.
/// Returns the command, or `None` if `buf` is too small (or the size overflows a u32).
pub fn context_load_into<'a>(buf: &'a mut [u8], ctx: &[u8]) -> Option<&'a [u8]> {
    let len = HEADER_LEN.checked_add(ctx.len())?;
    let size = u32::try_from(len).ok()?;
    let cmd = buf.get_mut(..len)?;
    let (h, body) = cmd.split_at_mut(HEADER_LEN);
    h.copy_from_slice(
        &Header {
            tag: st::NO_SESSIONS,
            size,
            code: cc::CONTEXT_LOAD,
        }
        .to_bytes(),
    );
    body.copy_from_slice(ctx);
    Some(cmd)
}

/// The 10-byte response carrying only `rc` (tag `TPM_ST_NO_SESSIONS`), as a TPM answers a
/// failed command and a resource manager a refused one.
pub fn rc_response(rc: u32) -> [u8; HEADER_LEN] {
    Header {
        tag: st::NO_SESSIONS,
        size: HEADER_SIZE,
        code: rc,
    }
    .to_bytes()
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
        let (_, rest) = Header::parse(&b).unwrap();
        assert_eq!(rest, &[0xAA]);
        assert_eq!(header(&b[..9]), None);
        assert_eq!(header(&[]), None);
        assert_eq!(code(&b[..9]), None);
        assert_eq!(u32_at(&b, 8), None);
        assert_eq!(u32_at(&b, usize::MAX), None);
        assert_eq!(u16_at(&b, 9), Some(0x65AA));
        assert_eq!(header(&b).unwrap().to_bytes(), b[..10]);
    }

    #[test]
    fn fixed_commands_are_well_formed() {
        let c = flush_context(0x8000_0002);
        let h = header(&c).unwrap();
        assert_eq!(h.tag, st::NO_SESSIONS);
        assert_eq!(h.size as usize, c.len());
        assert_eq!(h.code, cc::FLUSH_CONTEXT);
        assert_eq!(u32_at(&c, HEADER_LEN), Some(0x8000_0002));
        assert_eq!(code(&context_save(7)), Some(cc::CONTEXT_SAVE));
        assert_eq!(
            shutdown(0),
            [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x45, 0, 0]
        );
        assert_eq!(
            rc_response(0x000B_0143),
            [0x80, 0x01, 0, 0, 0, 10, 0, 0x0B, 0x01, 0x43]
        );
        assert_eq!(
            get_random(16),
            [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 16]
        );
        let mut buf = [0u8; 16];
        let c = context_load_into(&mut buf, &[1, 2, 3]).unwrap();
        assert_eq!(header(c).unwrap().size, 13);
        assert_eq!(code(c), Some(cc::CONTEXT_LOAD));
        assert_eq!(&c[10..], &[1, 2, 3]);
        assert!(context_load_into(&mut buf, &[0; 7]).is_none());
    }

    #[test]
    fn command_code_table_is_sorted_and_named() {
        assert!(CommandCode::ALL.windows(2).all(|w| w[0] < w[1]));
        assert!(CommandCode::ALL.iter().all(|c| c.name().is_some()));
        assert_eq!(CommandCode::CREATE_PRIMARY.name(), Some("CreatePrimary"));
        assert_eq!(CommandCode(cc::SHUTDOWN).name(), Some("Shutdown"));
        assert_eq!(CommandCode(0x11E).name(), None);
        assert_eq!(CommandCode::of(&shutdown(0)), Some(CommandCode::SHUTDOWN));
    }
}
