//! Boot-time provisioning of the ultravisor's TPM keys (the firmware role; the design
//! and its argument are in the [module docs](super)).
//!
//! [`provision_boot`] (the image) seeds the client's mixer from the platform and the TPM,
//! then runs [`provision`] over the firmware's TPM link before the hypervisor starts:
//! 1. checks that PCR [`DOOR_PCR`] is all zero (else [`ProvisionError::DoorPcrNotReset`]);
//! 2. reuses the storage parent at [`PARENT_HANDLE`] or creates it (CreatePrimary under
//!    `TPM_RH_PLATFORM`, EvictControl); another shape there is [`ProvisionError::ForeignParent`];
//! 3. starts one HMAC session salted to the parent (Name recomputed from its public
//!    area), decrypt, continued: every secret parameter below goes under it;
//! 4. reads the door index [`NV_HANDLE`]: absent, it is defined (NV_DefineSpace under the
//!    platform, the authValue of this boot encrypted); present, its public area must be
//!    exactly [`nv_public`] (else [`ProvisionError::ForeignNvIndex`]);
//! 5. reads the wrapping key at [`WRAPPING_HANDLE`]: absent, it is created under the parent
//!    (Create, sensitive area encrypted; Load; EvictControl) and `key_created` is set (the
//!    image warns loudly); of the old layout, [`ProvisionError::OldShapeKey`]; another
//!    shape, [`ProvisionError::ForeignKey`];
//! 6. unless the index was defined this boot, rotates its authValue: a policy session
//!    satisfying PolicyCommandCode(NV_ChangeAuth) + PolicyPCR(PCR 11 = 0), then
//!    `TPM2_NV_ChangeAuth(NV_HANDLE, newAuth)` with newAuth encrypted: one NV write;
//! 7. closes the door: `TPM2_PCR_Extend(11, SHA-256("pefbox: door closed"))`, read back;
//! 8. locks the platform: `TPM2_HierarchyChangeAuth(TPM_RH_PLATFORM)` to 32 fresh random
//!    bytes, sent encrypted (salted to the parent), then forgotten.
//!
//! Any failure in 1..=8 (and a failure to seed entropy in [`provision_boot`]) runs
//! [`fail_closed`]: PCR 11 extended, then HierarchyControl disables phEnableNV and
//! phEnable with the empty platformAuth (no entropy needed), so the door index and both
//! keys are unreachable and nothing can be authorized on the platform until the next
//! TPM reset. The ultravisor then gets nothing ([`Failed`]).
//!
//! Secrets (the door authValue, platformAuth) live in zeroizing values; the client's
//! buffers are wiped at the end.
#![forbid(unsafe_code)]

use super::{
    door_open_pcr_digest, door_selection, legacy_wrapping_policy, nv_policy, nv_public,
    wrapping_policy, UvSecrets, DOOR_PCR, NV_AUTH_LEN, NV_HANDLE, PARENT_HANDLE, RSA2048_BYTES,
    WRAPPING_ATTRIBUTES, WRAPPING_HANDLE,
};
use tpm::attrs::StartupClear;
use tpm::client::Blob;
use tpm::consts::{alg, cap, cc, rh, sa, SHA256_SIZE};
use tpm::public::{Public, PublicDetail};
use tpm::rc;
use tpm::{Auth, EntropySource, Error, Name, Object, SaltKey, SessionKind, Template, Tpm};
use tpm::{Session, Transport};
use zeroize::Zeroize;

/// Length of the random platformAuth set at the end of a successful provisioning
/// (a SHA-256-sized authValue; never stored, never sent in clear).
pub const PLATFORM_AUTH_LEN: usize = 32;

/// The provisioning step that failed (for error messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Seeding the client's mixer (platform entropy or TPM2_GetRandom).
    Seed,
    /// Drawing the new authValue from the client's mixer (not seeded?).
    Random,
    /// Reading PCR 11.
    ReadDoorPcr,
    /// Reading the parent's public area.
    ReadParent,
    /// Creating or persisting the parent.
    CreateParent,
    /// Reading the door index's public area.
    ReadNvIndex,
    /// Defining the door index.
    DefineNvIndex,
    /// Reading the wrapping key's public area.
    ReadKey,
    /// Creating, loading or persisting a new wrapping key.
    CreateKey,
    /// Starting the sessions.
    StartSessions,
    /// Satisfying the door index's policy (NV_ChangeAuth + PCR 11 = 0).
    PolicyDoor,
    /// `TPM2_NV_ChangeAuth`.
    ChangeAuth,
    /// Flushing transient objects or sessions.
    Flush,
    /// Extending PCR 11 or reading it back.
    CloseDoor,
    /// Setting a random platformAuth (`TPM2_HierarchyChangeAuth`).
    LockPlatform,
    /// Checking, before anything else, that the platform hierarchy is still open.
    CheckPlatform,
}

impl core::fmt::Display for Step {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Step::Seed => "seeding entropy",
            Step::Random => "drawing the new authValue",
            Step::ReadDoorPcr => "reading PCR 11",
            Step::ReadParent => "reading the storage parent",
            Step::CreateParent => "creating the storage parent",
            Step::ReadNvIndex => "reading the door index",
            Step::DefineNvIndex => "defining the door index",
            Step::ReadKey => "reading the wrapping key",
            Step::CreateKey => "creating the wrapping key",
            Step::StartSessions => "starting sessions",
            Step::PolicyDoor => "satisfying the door index's policy",
            Step::ChangeAuth => "NV_ChangeAuth",
            Step::Flush => "flushing",
            Step::CloseDoor => "closing the door (PCR 11)",
            Step::LockPlatform => "setting a random platformAuth",
            Step::CheckPlatform => "checking the platform hierarchy",
        })
    }
}

/// Why provisioning failed. No variant carries a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvisionError {
    /// PCR 11 was not all zero: something used it since TPM reset.
    DoorPcrNotReset,
    /// The object at 0x81800000 is not the expected storage key; left alone.
    ForeignParent,
    /// The object at 0x81800001 is not a wrapping key of the expected template; left alone.
    ForeignKey,
    /// The object at 0x81800001 is a wrapping key of the previous layout (PolicyOR of an
    /// authValue branch and a PCR 11 branch): it cannot be revoked, so it is refused and
    /// left alone (never silently replaced).
    OldShapeKey,
    /// The index at 0x01400001 is not the expected door index; left alone.
    ForeignNvIndex,
    /// A TPM operation failed.
    Tpm {
        /// Where.
        step: Step,
        /// What.
        error: Error,
    },
    /// The platform hierarchy was already locked when this image started, before it touched
    /// anything: firmware before it (skiboot with trusted boot) disabled it or set
    /// platformAuth. Nothing was provisioned.
    PlatformLocked(PlatformLock),
    /// PCR 11 did not change after the extend.
    DoorNotClosed,
}

/// How the platform hierarchy was found locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformLock {
    /// phEnable is clear (TPM_PT_STARTUP_CLEAR).
    Disabled,
    /// platformAuth is not empty: a platform-authorized no-op with the empty password was
    /// refused (its code).
    AuthSet(u32),
}

impl core::fmt::Display for ProvisionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ProvisionError::DoorPcrNotReset => {
                f.write_str("PCR 11 is not zero at provisioning: something used it since TPM reset")
            }
            ProvisionError::ForeignParent => {
                f.write_str("0x81800000 holds an object that is not the expected storage key")
            }
            ProvisionError::ForeignKey => {
                f.write_str("0x81800001 holds an object that is not the expected wrapping key")
            }
            ProvisionError::OldShapeKey => f.write_str(
                "0x81800001 is a wrapping key of the OLD layout (PolicyOR: authValue or \
                 PCR 11 branch; earlier authValues and blobs keep working, it cannot be \
                 revoked): refused. To replace it, run the launcher with --fresh-tpm \
                 (wipes the TPM state: ESM blobs sealed to the old key will no longer \
                 open; re-seal them to the new key from --export-wrapping-key)",
            ),
            ProvisionError::ForeignNvIndex => {
                f.write_str("0x01400001 holds an NV index that is not the expected door index")
            }
            ProvisionError::Tpm { step, error } => write!(f, "{step}: {error}"),
            ProvisionError::DoorNotClosed => f.write_str("PCR 11 did not change after extend"),
            ProvisionError::PlatformLocked(how) => {
                f.write_str("the platform hierarchy was locked before this image ran (")?;
                match how {
                    PlatformLock::Disabled => f.write_str("phEnable clear")?,
                    PlatformLock::AuthSet(rc) => write!(f, "platformAuth set: {rc:#x}")?,
                }
                f.write_str(
                    "; skiboot's trusted boot sets platformAuth, and a failed provisioning \
                     disables the hierarchy until the next TPM reset): nothing provisioned, \
                     the keys not touched",
                )
            }
        }
    }
}

/// What [`fail_closed`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Closed {
    /// PCR 11 was extended (or already not zero).
    pub door: bool,
    /// phEnableNV and phEnable read back clear.
    pub platform_disabled: bool,
}

/// A failed provisioning: the cause, and how the TPM was left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failed {
    /// The first failure.
    pub error: ProvisionError,
    /// What failing closed achieved.
    pub closed: Closed,
}

impl core::fmt::Display for Failed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}; failed closed: ", self.error)?;
        match (self.closed.door, self.closed.platform_disabled) {
            (true, true) => f.write_str(
                "door closed, platform hierarchy disabled until TPM reset, ultravisor gets nothing",
            ),
            (false, true) => f.write_str(
                "door NOT KNOWN CLOSED (PCR 11 not extended: its SHA-256 bank unusable?), \
                 platform hierarchy disabled until TPM reset (door index and keys unreachable), \
                 ultravisor gets nothing",
            ),
            (d, _) => write!(
                f,
                "door {}, platform hierarchy NOT KNOWN DISABLED (TPM not answering?), \
                 ultravisor gets nothing",
                if d { "closed" } else { "NOT KNOWN CLOSED" },
            ),
        }
    }
}

/// The result of a successful [`provision`].
#[derive(Debug)]
pub struct Provisioned {
    /// The ultravisor's secrets for this boot.
    pub secrets: UvSecrets,
    /// The wrapping key's marshalled `TPMT_PUBLIC` (its Name is `secrets.wrapping_name`).
    pub wrapping_public: Blob,
    /// True if this boot created the storage parent.
    pub parent_created: bool,
    /// True if this boot created the wrapping key (a NEW key: blobs sealed to any
    /// earlier key will not open; the image says so loudly).
    pub key_created: bool,
    /// True if this boot defined the door index (first boot, or after a power cut in
    /// first-time creation).
    pub nv_defined: bool,
}

impl Provisioned {
    /// The wrapping key's RSA-2048 modulus (big-endian), for exporting the public key
    /// (exponent 65537) that ESM lockboxes are encrypted to.
    pub fn wrapping_modulus(&self) -> &[u8] {
        match Public::parse(&self.wrapping_public).map(|p| p.detail) {
            Ok(PublicDetail::Rsa { modulus, .. }) => modulus,
            _ => &[],
        }
    }

    /// The wrapping key's public exponent (the TPM's 0 already read as 65537); 0 if the
    /// public area does not parse as RSA.
    pub fn wrapping_exponent(&self) -> u32 {
        match Public::parse(&self.wrapping_public).map(|p| p.detail) {
            Ok(PublicDetail::Rsa { exponent: 0, .. }) => crate::pem::TPM_DEFAULT_EXPONENT,
            Ok(PublicDetail::Rsa { exponent, .. }) => exponent,
            _ => 0,
        }
    }

    /// The ESM lockbox fingerprint of the wrapping key (SHA-256 of its SPKI PEM, as
    /// exported), or `None` if the public area holds no usable RSA key.
    pub fn wrapping_fingerprint(&self) -> Option<[u8; 32]> {
        crate::pem::pem_fingerprint(self.wrapping_modulus(), self.wrapping_exponent())
    }
}

fn at(step: Step) -> impl Fn(Error) -> ProvisionError {
    move |error| ProvisionError::Tpm { step, error }
}

fn is_absent(e: &Error) -> bool {
    matches!(e, Error::Tpm(code) if code.base() == rc::RC_HANDLE)
}

/// The hierarchy both keys live in and whose authorization persists/evicts them:
/// `TPM_RH_PLATFORM` (empty platformAuth, as after every TPM Startup(CLEAR), until
/// step 6 replaces it with a random value nobody keeps). The
/// reference handles 0x81800000.. are in the platform persistent range: EvictControl
/// with `TPM_RH_OWNER` answers TPM_RC_RANGE (0x1cd, measured on swtpm).
fn platform() -> Object {
    Object::permanent(rh::PLATFORM)
}

/// True if `public` is what `template` creates (every field but the unique field).
fn matches_template(public: &Public<'_>, template: &Template<'_>) -> bool {
    let (sym, scheme) = match template.shape {
        tpm::public::KeyShape::Rsa2048 { symmetric, scheme } => (symmetric, scheme),
        tpm::public::KeyShape::EccP256 { .. } => return false,
    };
    let shape_ok = match public.detail {
        PublicDetail::Rsa {
            symmetric,
            scheme: s,
            key_bits,
            exponent,
            modulus,
        } => {
            symmetric == sym
                && s == scheme
                && key_bits == 2048
                && (exponent == 0 || exponent == 65537)
                && modulus.len() == RSA2048_BYTES
        }
        _ => false,
    };
    shape_ok
        && public.object_type == alg::RSA
        && public.name_alg == alg::SHA256
        && public.attributes == template.attributes
        && public.auth_policy == template.auth_policy
}

/// Reads a persistent object and checks its shape: `Ok(None)` if absent,
/// `Err(foreign)` if present but not of `template`'s shape.
fn read_expected<T: Transport>(
    tpm: &mut Tpm<T>,
    handle: u32,
    template: &Template<'_>,
    step: Step,
    foreign: ProvisionError,
) -> Result<Option<(Object, Blob)>, ProvisionError> {
    match tpm.read_public(handle) {
        Ok((obj, blob)) => {
            let ok = Public::parse(&blob)
                .map(|p| matches_template(&p, template))
                .unwrap_or(false);
            if ok {
                Ok(Some((obj, blob)))
            } else {
                Err(foreign)
            }
        }
        Err(e) if is_absent(&e) => Ok(None),
        Err(e) => Err(ProvisionError::Tpm { step, error: e }),
    }
}

/// The wrapping key's template.
fn wrapping_template(policy: &[u8]) -> Template<'_> {
    Template::rsa_oaep(WRAPPING_ATTRIBUTES, policy)
}

/// The image's entry: seeds the client's mixer (`platform` entropy mixed with
/// TPM2_GetRandom), then [`provision`]s. A seeding failure fails closed as well.
pub fn provision_boot<T: Transport>(
    tpm: &mut Tpm<T>,
    platform: &mut dyn EntropySource,
) -> Result<Provisioned, Failed> {
    match tpm.seed_entropy(platform) {
        Ok(()) => provision(tpm),
        Err(error) => {
            let closed = fail_closed(tpm);
            tpm.wipe_buffers();
            Err(Failed {
                error: ProvisionError::Tpm {
                    step: Step::Seed,
                    error,
                },
                closed,
            })
        }
    }
}

/// Provisions the TPM for this boot (see the module docs), closes the door and locks the
/// platform; on any failure fails closed ([`fail_closed`]). `tpm` must be seeded.
pub fn provision<T: Transport>(tpm: &mut Tpm<T>) -> Result<Provisioned, Failed> {
    let mut auth = [0u8; NV_AUTH_LEN];
    let result = provision_keys(tpm, &mut auth)
        .and_then(|p| close_door(tpm).map(|()| p))
        .and_then(|p| lock_platform(tpm, &p.secrets.parent_name).map(|()| p));
    auth.zeroize();
    let outcome = match result {
        Ok(p) => Ok(p),
        Err(error) => Err(Failed {
            error,
            closed: fail_closed(tpm),
        }),
    };
    tpm.wipe_buffers();
    outcome
}

/// Fails closed: extends PCR 11 (if not done), then disables phEnableNV and phEnable
/// with the empty platformAuth until the next TPM reset, and reads the result back.
/// Needs no entropy (password sessions only, no secret). Each step is tried twice.
pub fn fail_closed<T: Transport>(tpm: &mut Tpm<T>) -> Closed {
    let mut closed = Closed::default();
    for _ in 0..2 {
        if !closed.door {
            closed.door = close_door(tpm).is_ok()
                || matches!(door_value(tpm), Ok(v) if v != [0u8; SHA256_SIZE]);
        }
        if !closed.platform_disabled {
            let pw = || [Auth::Password(b"")];
            let _ = tpm.hierarchy_control(&platform(), &mut pw(), rh::PLATFORM_NV, false);
            let _ = tpm.hierarchy_control(&platform(), &mut pw(), rh::PLATFORM, false);
            closed.platform_disabled = platform_disabled(tpm).unwrap_or(false);
        }
        if closed.door && closed.platform_disabled {
            break;
        }
    }
    closed
}

/// Whether the platform hierarchy is as a TPM reset leaves it (enabled, empty platformAuth):
/// read-only, before anything is provisioned. phEnable is read from TPM_PT_STARTUP_CLEAR; the
/// empty platformAuth is shown by `TPM2_HierarchyControl(TPM_RH_PLATFORM, PLATFORM_NV, YES)`,
/// which enables what is already enabled (phEnableNV is checked set first), so it changes
/// nothing; a refused authorization is [`ProvisionError::PlatformLocked`].
fn platform_open<T: Transport>(tpm: &mut Tpm<T>) -> Result<(), ProvisionError> {
    let mut props = [(0u32, 0u32); 1];
    let (n, _) = tpm
        .get_capability_properties(cap::PT_STARTUP_CLEAR, &mut props)
        .map_err(at(Step::CheckPlatform))?;
    let flags = match props.get(..n) {
        Some([(p, v)]) if *p == cap::PT_STARTUP_CLEAR => StartupClear::from_bits_retain(*v),
        _ => {
            return Err(ProvisionError::Tpm {
                step: Step::CheckPlatform,
                error: Error::Parse(tpm::marshal::ParseError::BadValue),
            })
        }
    };
    if !flags.contains(StartupClear::PH_ENABLE) || !flags.contains(StartupClear::PH_ENABLE_NV) {
        return Err(ProvisionError::PlatformLocked(PlatformLock::Disabled));
    }
    match tpm.hierarchy_control(
        &platform(),
        &mut [Auth::Password(b"")],
        rh::PLATFORM_NV,
        true,
    ) {
        Ok(()) => Ok(()),
        Err(Error::Tpm(rc))
            if rc.is_format1()
                && matches!(rc.base(), tpm::rc::RC_BAD_AUTH | tpm::rc::RC_AUTH_FAIL) =>
        {
            Err(ProvisionError::PlatformLocked(PlatformLock::AuthSet(rc.0)))
        }
        Err(error) => Err(ProvisionError::Tpm {
            step: Step::CheckPlatform,
            error,
        }),
    }
}

/// True if TPM_PT_STARTUP_CLEAR reads phEnable and phEnableNV clear.
pub fn platform_disabled<T: Transport>(tpm: &mut Tpm<T>) -> Result<bool, Error> {
    let mut props = [(0u32, 0u32); 1];
    let (n, _) = tpm.get_capability_properties(cap::PT_STARTUP_CLEAR, &mut props)?;
    match props.get(..n) {
        Some([(p, v)]) if *p == cap::PT_STARTUP_CLEAR => {
            let platform = StartupClear::PH_ENABLE | StartupClear::PH_ENABLE_NV;
            Ok(!StartupClear::from_bits_retain(*v).intersects(platform))
        }
        _ => Err(Error::Parse(tpm::marshal::ParseError::BadValue)),
    }
}

fn door_value<T: Transport>(tpm: &mut Tpm<T>) -> Result<[u8; SHA256_SIZE], Error> {
    let mut pcr = [[0u8; SHA256_SIZE]; 1];
    let (_, read, n) = tpm.pcr_read(&door_selection(), &mut pcr)?;
    if n != 1 || read != Some(door_selection()) {
        return Err(Error::Parse(tpm::marshal::ParseError::BadValue));
    }
    Ok(pcr[0])
}

/// Sets platformAuth to [`PLATFORM_AUTH_LEN`] fresh random bytes (sent encrypted to the
/// pinned parent), then forgets them. Needs the empty platformAuth of a fresh TPM reset.
fn lock_platform<T: Transport>(tpm: &mut Tpm<T>, parent_name: &Name) -> Result<(), ProvisionError> {
    let step = at(Step::LockPlatform);
    let mut value = zeroize::Zeroizing::new([0u8; PLATFORM_AUTH_LEN]);
    tpm.random(&mut value[..]).map_err(&step)?;
    let mut enc = salted(tpm, parent_name, sa::DECRYPT).map_err(&step)?;
    let changed = tpm.hierarchy_change_auth(
        &platform(),
        &mut [Auth::Password(b""), Auth::encrypt_only(&mut enc)],
        &value[..],
    );
    // A no-op after success (the session ended with the command).
    let flushed = tpm.flush_session(&mut enc).map_err(at(Step::Flush));
    changed.map_err(&step)?;
    flushed
}

/// An HMAC session salted to the parent (its Name recomputed by the client and compared
/// with `parent_name`), unbound, with `attributes`.
fn salted<T: Transport>(
    tpm: &mut Tpm<T>,
    parent_name: &Name,
    attributes: u8,
) -> Result<Session, Error> {
    tpm.start_auth_session(
        SaltKey::Rsa {
            handle: PARENT_HANDLE,
            pinned_name: parent_name.as_bytes(),
        },
        None,
        SessionKind::Hmac,
        attributes,
    )
}

/// Closes the door without provisioning: extends PCR [`DOOR_PCR`] with
/// [`door_closed_digest`](super::door_closed_digest) and checks that it moved.
pub fn close_door<T: Transport>(tpm: &mut Tpm<T>) -> Result<(), ProvisionError> {
    let step = at(Step::CloseDoor);
    tpm.pcr_extend(
        DOOR_PCR,
        &mut [Auth::Password(b"")],
        &super::door_closed_digest(),
    )
    .map_err(&step)?;
    let v = door_value(tpm).map_err(&step)?;
    if v == [0u8; SHA256_SIZE] {
        return Err(ProvisionError::DoorNotClosed);
    }
    Ok(())
}

/// Steps 1 to 6.
fn provision_keys<T: Transport>(
    tpm: &mut Tpm<T>,
    auth: &mut [u8; NV_AUTH_LEN],
) -> Result<Provisioned, ProvisionError> {
    tpm.random(auth).map_err(at(Step::Random))?;
    if door_value(tpm).map_err(at(Step::ReadDoorPcr))? != [0u8; SHA256_SIZE] {
        return Err(ProvisionError::DoorPcrNotReset);
    }
    // After the door: a second provisioning in one TPM power cycle (its own platformAuth
    // set) is told by the door already closed; firmware that locked the platform before
    // (it leaves PCR 11 alone) by this.
    platform_open(tpm)?;
    let storage = Template::rsa_storage();
    let (parent, parent_created) = match read_expected(
        tpm,
        PARENT_HANDLE,
        &storage,
        Step::ReadParent,
        ProvisionError::ForeignParent,
    )? {
        Some((obj, _)) => (obj, false),
        None => (create_parent(tpm, &storage)?, true),
    };
    let mut enc = salted(tpm, &parent.name, sa::CONTINUE_SESSION | sa::DECRYPT)
        .map_err(at(Step::StartSessions))?;
    let r = provision_with(tpm, &mut enc, &parent, auth);
    let flushed = tpm.flush_session(&mut enc).map_err(at(Step::Flush));
    let (nv, nv_defined, key, public, key_created) = r?;
    flushed?;
    Ok(Provisioned {
        secrets: UvSecrets {
            nv_auth: super::nv_auth_from(auth),
            wrapping_name: key.name.clone(),
            parent_name: parent.name.clone(),
            nv_name: nv.name.clone(),
        },
        wrapping_public: public,
        parent_created,
        key_created,
        nv_defined,
    })
}

type Parts = (Object, bool, Object, Blob, bool);

/// Steps 4 to 6, with `enc` (salted to the parent) encrypting every secret parameter.
fn provision_with<T: Transport>(
    tpm: &mut Tpm<T>,
    enc: &mut Session,
    parent: &Object,
    auth: &[u8; NV_AUTH_LEN],
) -> Result<Parts, ProvisionError> {
    let nvp = nv_policy();
    let expected = nv_public(&nvp);
    let (nv, nv_defined) = match tpm.nv_read_public(NV_HANDLE) {
        Ok((obj, raw)) => {
            let ok = tpm::public::NvPublic::parse(&raw).ok() == Some(expected);
            if !ok {
                return Err(ProvisionError::ForeignNvIndex);
            }
            (obj, false)
        }
        Err(e) if is_absent(&e) => {
            let obj = tpm
                .nv_define_space(
                    &platform(),
                    &mut [Auth::Password(b""), Auth::encrypt_only(enc)],
                    auth,
                    &expected,
                )
                .map_err(at(Step::DefineNvIndex))?;
            (obj, true)
        }
        Err(e) => {
            return Err(ProvisionError::Tpm {
                step: Step::ReadNvIndex,
                error: e,
            })
        }
    };

    let policy = wrapping_policy();
    let template = wrapping_template(&policy);
    let (key, public, key_created) = match tpm.read_public(WRAPPING_HANDLE) {
        Ok((obj, blob)) => {
            let p = Public::parse(&blob).ok();
            if p.map(|p| matches_template(&p, &template)) == Some(true) {
                (obj, blob, false)
            } else if p.map(|p| p.auth_policy == legacy_wrapping_policy()) == Some(true) {
                return Err(ProvisionError::OldShapeKey);
            } else {
                return Err(ProvisionError::ForeignKey);
            }
        }
        Err(e) if is_absent(&e) => {
            let (obj, blob) = create_key(tpm, enc, parent, &template)?;
            (obj, blob, true)
        }
        Err(e) => {
            return Err(ProvisionError::Tpm {
                step: Step::ReadKey,
                error: e,
            })
        }
    };

    if !nv_defined {
        rotate(tpm, enc, &nv, auth)?;
    }
    Ok((nv, nv_defined, key, public, key_created))
}

fn create_parent<T: Transport>(
    tpm: &mut Tpm<T>,
    storage: &Template<'_>,
) -> Result<Object, ProvisionError> {
    let step = at(Step::CreateParent);
    let (transient, _) = tpm
        .create_primary(&platform(), &mut [Auth::Password(b"")], storage, b"")
        .map_err(&step)?;
    persist(tpm, &transient, PARENT_HANDLE, Step::CreateParent)
}

/// EvictControl `transient` to `handle` (platform authorization), then flush the transient
/// whatever the outcome; the persistent object, or the first error (persisting first).
fn persist<T: Transport>(
    tpm: &mut Tpm<T>,
    transient: &Object,
    handle: u32,
    step: Step,
) -> Result<Object, ProvisionError> {
    let persisted = tpm
        .evict_control(&platform(), &mut [Auth::Password(b"")], transient, handle)
        .map_err(at(step));
    let flushed = tpm.flush_context(transient.handle).map_err(at(Step::Flush));
    let persisted = persisted?.ok_or(ProvisionError::Tpm {
        step,
        error: Error::WrongKey,
    })?;
    flushed?;
    Ok(persisted)
}

/// Creates the wrapping key once: its authValue is empty (no role accepts it, see the
/// module docs; the response encryption of the ultravisor's RSA_Decrypt keys on it), its
/// sensitive area goes encrypted under `enc` all the same.
fn create_key<T: Transport>(
    tpm: &mut Tpm<T>,
    enc: &mut Session,
    parent: &Object,
    template: &Template<'_>,
) -> Result<(Object, Blob), ProvisionError> {
    let step = at(Step::CreateKey);
    let blob = tpm
        .create(
            parent,
            &mut [Auth::Password(b""), Auth::encrypt_only(enc)],
            template,
            b"",
        )
        .map_err(&step)?;
    let transient = tpm
        .load(parent, &mut [Auth::Password(b"")], &blob)
        .map_err(&step)?;
    let persisted = persist(tpm, &transient, WRAPPING_HANDLE, Step::CreateKey)?;
    Ok((persisted, blob.public))
}

/// Step 6: sets `auth` as the door index's authValue (NV_ChangeAuth through its policy,
/// newAuth encrypted under `enc`).
fn rotate<T: Transport>(
    tpm: &mut Tpm<T>,
    enc: &mut Session,
    nv: &Object,
    auth: &[u8; NV_AUTH_LEN],
) -> Result<(), ProvisionError> {
    let mut policy = tpm
        .start_auth_session(SaltKey::None, None, SessionKind::Policy, 0)
        .map_err(at(Step::StartSessions))?;
    let changed = (|| {
        let step = at(Step::PolicyDoor);
        tpm.policy_command_code(&mut policy, cc::NV_CHANGE_AUTH)
            .map_err(&step)?;
        tpm.policy_pcr(&mut policy, &door_open_pcr_digest(), &door_selection())
            .map_err(&step)?;
        tpm.nv_change_auth(
            nv,
            &mut [Auth::session(&mut policy, &[]), Auth::encrypt_only(enc)],
            auth,
        )
        .map_err(at(Step::ChangeAuth))
    })();
    // The policy session ends with a successful command (continueSession clear).
    let flushed = tpm.flush_session(&mut policy).map_err(at(Step::Flush));
    changed?;
    flushed
}

/// The wrapping key's Name as `provision` would accept it from `public` (a
/// marshalled `TPMT_PUBLIC`): checks the template shape, then hashes.
pub fn wrapping_name_of(public: &[u8]) -> Option<Name> {
    let policy = wrapping_policy();
    let p = Public::parse(public).ok()?;
    if !matches_template(&p, &wrapping_template(&policy)) {
        return None;
    }
    p.name().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tpm::marshal::Writer;
    use tpm::public::{Scheme, SymDef};

    fn marshal(t: &Template<'_>, modulus_len: usize) -> std::vec::Vec<u8> {
        // A template with a filled unique field, as the TPM returns it.
        let mut buf = [0u8; 600];
        let mut w = Writer::new(&mut buf);
        t.marshal(&mut w).unwrap();
        let n = w.len();
        let mut v = buf[..n - 2].to_vec();
        v.extend_from_slice(&(modulus_len as u16).to_be_bytes());
        v.extend(std::iter::repeat_n(0xA5, modulus_len));
        v
    }

    #[test]
    fn shape_checks_accept_the_templates_and_reject_others() {
        let policy = wrapping_policy();
        let good = marshal(&wrapping_template(&policy), 256);
        assert!(wrapping_name_of(&good).is_some());
        // Wrong policy, wrong attributes (userWithAuth set), wrong modulus size.
        let other_policy = [0u8; 32];
        assert!(wrapping_name_of(&marshal(&wrapping_template(&other_policy), 256)).is_none());
        let lax = Template::rsa_oaep(
            WRAPPING_ATTRIBUTES | tpm::consts::attr::USER_WITH_AUTH,
            &policy,
        );
        assert!(wrapping_name_of(&marshal(&lax, 256)).is_none());
        assert!(wrapping_name_of(&marshal(&wrapping_template(&policy), 128)).is_none());
        // The storage template is not a wrapping key, and the other way round.
        let storage = marshal(&Template::rsa_storage(), 256);
        assert!(wrapping_name_of(&storage).is_none());
        let p = Public::parse(&storage).unwrap();
        assert!(matches_template(&p, &Template::rsa_storage()));
        let g = Public::parse(&good).unwrap();
        assert!(!matches_template(&g, &Template::rsa_storage()));
        assert_eq!(
            SymDef::NULL,
            match g.detail {
                PublicDetail::Rsa { symmetric, .. } => symmetric,
                _ => SymDef::AES_128_CFB,
            }
        );
        assert!(matches!(
            g.detail,
            PublicDetail::Rsa { scheme, .. } if scheme == Scheme::OAEP_SHA256
        ));
    }

    #[test]
    fn errors_name_their_step() {
        let e = ProvisionError::Tpm {
            step: Step::ChangeAuth,
            error: Error::Tpm(tpm::ResponseCode(0x99d)),
        };
        let text = format!("{e}");
        assert!(text.starts_with("NV_ChangeAuth: TPM error"), "{text}");
        assert!(format!("{}", ProvisionError::DoorPcrNotReset).contains("PCR 11"));
        let old = format!("{}", ProvisionError::OldShapeKey);
        assert!(
            old.contains("OLD layout") && old.contains("--fresh-tpm"),
            "{old}"
        );
        let f = Failed {
            error: ProvisionError::ForeignKey,
            closed: Closed {
                door: true,
                platform_disabled: true,
            },
        };
        assert!(format!("{f}").contains("platform hierarchy disabled until TPM reset"));
    }
}
