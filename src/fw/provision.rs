//! Boot-time provisioning of the ultravisor's TPM keys (the firmware role).
//!
//! [`provision`] runs over the hypervisor's TPM link before the hypervisor starts:
//! 1. checks that PCR [`DOOR_PCR`] is all zero (else [`ProvisionError::DoorPcrNotReset`]);
//! 2. reuses the storage parent at [`PARENT_HANDLE`], or creates it (CreatePrimary under
//!    `TPM_RH_PLATFORM`) and makes it persistent (EvictControl with platform
//!    authorization: 0x81800000..=0x81FFFFFF is the platform persistent range, owner
//!    authorization gets TPM_RC_RANGE); an object of another shape there is an error,
//!    never overwritten;
//! 3. reuses the wrapping key at [`WRAPPING_HANDLE`], or creates it under the parent
//!    (with a throw-away random authValue) and makes it persistent; again, an object of
//!    another shape (attributes, policy, scheme) there is an error. A parent evicted and
//!    re-created from the same platform seed is the same key (CreatePrimary is
//!    deterministic), so an existing wrapping key still rotates under it; if the seed
//!    changed, the rotation's ObjectChangeAuth/Load fails with a TPM error;
//! 4. rotates the wrapping key's authValue: 16 fresh bytes from the client's mixer;
//!    a policy session satisfying branch B (PolicyCommandCode(ObjectChangeAuth),
//!    PolicyPCR(PCR 11 = 0), PolicyOR); `TPM2_ObjectChangeAuth(0x81800001, parent
//!    0x81800000, newAuth)` with the new authValue encrypted by a second, salted session
//!    (salt encrypted to the parent, whose Name was read and recomputed here; that
//!    session is not tied to the key, so its CFB key does not need the old authValue,
//!    which nobody knows any more); Load of the new private under the parent;
//!    EvictControl out of the old persistent object; EvictControl of the loaded one to
//!    the same handle; FlushContext of the transient.
//!    ObjectChangeAuth on the persistent handle works (measured on swtpm 0.7.1 /
//!    libtpms; TPM 2.0 Part 3 allows any loaded object): it returns a new private blob
//!    and leaves the persistent copy unchanged, hence the Load and the swap.
//! 5. closes the door: `TPM2_PCR_Extend(11, SHA-256("pefbox: door closed"))`, and reads
//!    PCR 11 back to check it moved. This step runs whatever happened before (also when
//!    an earlier step failed, even step 1), so that a failed provisioning never leaves
//!    branch B open for keys persisted by an earlier boot. [`close_door`] does it alone.
//! 6. on success only (steps 1 to 5 all passed), locks the platform hierarchy for the
//!    rest of this TPM power cycle: `TPM2_HierarchyChangeAuth(TPM_RH_PLATFORM)`
//!    authorized with the current (empty) platformAuth, setting it to
//!    [`PLATFORM_AUTH_LEN`] fresh bytes from the client's mixer, sent encrypted by a
//!    session salted to the pinned parent (decrypt, not continued); the value is then
//!    overwritten and forgotten. From then on nobody (the hypervisor, the host OS) can
//!    authorize `TPM_RH_PLATFORM`, so nobody can EvictControl (delete or replace) the
//!    two keys, CreatePrimary under the platform, or change platformAuth back until
//!    the next TPM reset, which restores the empty platformAuth for the next boot's
//!    provisioning (the firmware runs first on every boot). The hierarchy stays
//!    enabled (phEnable set): its keys keep working, only its authorization changed.
//!    On a failed provisioning platformAuth stays empty (and the ultravisor gets no
//!    secrets), so recovery tooling can still clean up a foreign object.
//!
//! The new authValues are returned (the wrapping key's) or kept (platformAuth) only as
//! Rust values: they never enter an hcall buffer. On this channel they are sent only
//! encrypted (steps 4 and 6), and the client's buffers are wiped at the end.
//!
//! Known window: a power loss between the two EvictControl calls of step 4 leaves no
//! object at 0x81800001; the next boot creates a new wrapping key (new Name, new public
//! key): ESM blobs sealed to the old one can no longer be opened.
#![forbid(unsafe_code)]

use super::{
    branches, door_open_pcr_digest, door_selection, wrapping_policy, UvSecrets, DOOR_PCR,
    PARENT_HANDLE, RSA2048_BYTES, WRAPPING_ATTRIBUTES, WRAPPING_AUTH_LEN, WRAPPING_HANDLE,
};
use crate::tpm::client::Blob;
use crate::tpm::consts::{alg, cc, rh, sa, SHA256_SIZE};
use crate::tpm::public::{Public, PublicDetail};
use crate::tpm::rc;
use crate::tpm::{Auth, Error, KeyBlob, Name, Object, SaltKey, SessionKind, Template, Tpm};
use crate::tpm::{Session, Transport};

/// Length of the random platformAuth set at the end of a successful provisioning
/// (a SHA-256-sized authValue; never stored, never sent in clear).
pub const PLATFORM_AUTH_LEN: usize = 32;

/// The provisioning step that failed (for error messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Drawing the new authValue from the client's mixer (not seeded?).
    Random,
    /// Reading PCR 11.
    ReadDoorPcr,
    /// Reading the parent's public area.
    ReadParent,
    /// Creating or persisting the parent.
    CreateParent,
    /// Reading the wrapping key's public area.
    ReadKey,
    /// Creating, loading or persisting a new wrapping key.
    CreateKey,
    /// Starting the sessions of the rotation.
    StartSessions,
    /// Satisfying policy branch B.
    PolicyB,
    /// `TPM2_ObjectChangeAuth`.
    ChangeAuth,
    /// Loading the re-authorized key.
    LoadRotated,
    /// Swapping the persistent object.
    Persist,
    /// Flushing transient objects or sessions.
    Flush,
    /// Extending PCR 11 or reading it back.
    CloseDoor,
    /// Setting a random platformAuth (`TPM2_HierarchyChangeAuth`, step 6).
    LockPlatform,
}

impl core::fmt::Display for Step {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Step::Random => "drawing the new authValue",
            Step::ReadDoorPcr => "reading PCR 11",
            Step::ReadParent => "reading the storage parent",
            Step::CreateParent => "creating the storage parent",
            Step::ReadKey => "reading the wrapping key",
            Step::CreateKey => "creating the wrapping key",
            Step::StartSessions => "starting sessions",
            Step::PolicyB => "satisfying policy branch B",
            Step::ChangeAuth => "ObjectChangeAuth",
            Step::LoadRotated => "loading the re-authorized key",
            Step::Persist => "persisting the re-authorized key",
            Step::Flush => "flushing",
            Step::CloseDoor => "closing the door (PCR 11)",
            Step::LockPlatform => "setting a random platformAuth",
        })
    }
}

/// Why provisioning failed. No variant carries a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvisionError {
    /// PCR 11 was not all zero: something used it since TPM reset, so branch B cannot
    /// be satisfied (the key cannot be re-authorized) or was available to someone else.
    DoorPcrNotReset,
    /// The object at 0x81800000 is not an RSA-2048 AES-128-CFB storage key of the
    /// expected template; it is left alone.
    ForeignParent,
    /// The object at 0x81800001 is not a wrapping key of the expected template
    /// (attributes, authPolicy, scheme); it is left alone.
    ForeignKey,
    /// A TPM operation failed.
    Tpm {
        /// Where.
        step: Step,
        /// What.
        error: Error,
    },
    /// PCR 11 did not change after the extend: the door is not known to be closed,
    /// so no secret is handed out.
    DoorNotClosed,
}

impl core::fmt::Display for ProvisionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ProvisionError::DoorPcrNotReset => f.write_str(
                "PCR 11 is not zero at provisioning: something used it since TPM reset; \
                 refusing a key that cannot be re-authorized",
            ),
            ProvisionError::ForeignParent => {
                f.write_str("0x81800000 holds an object that is not the expected storage key")
            }
            ProvisionError::ForeignKey => {
                f.write_str("0x81800001 holds an object that is not the expected wrapping key")
            }
            ProvisionError::Tpm { step, error } => write!(f, "{step}: {error}"),
            ProvisionError::DoorNotClosed => f.write_str("PCR 11 did not change after extend"),
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
    /// True if this boot created the wrapping key.
    pub key_created: bool,
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
            Ok(PublicDetail::Rsa { exponent: 0, .. }) => crate::uv::pem::TPM_DEFAULT_EXPONENT,
            Ok(PublicDetail::Rsa { exponent, .. }) => exponent,
            _ => 0,
        }
    }

    /// The ESM lockbox fingerprint of the wrapping key (SHA-256 of its SPKI PEM, as
    /// exported), or `None` if the public area holds no usable RSA key.
    pub fn wrapping_fingerprint(&self) -> Option<[u8; 32]> {
        crate::uv::pem::pem_fingerprint(self.wrapping_modulus(), self.wrapping_exponent())
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
        crate::tpm::public::KeyShape::Rsa2048 { symmetric, scheme } => (symmetric, scheme),
        crate::tpm::public::KeyShape::EccP256 { .. } => return false,
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

/// Provisions the TPM for this boot (see the module docs) and closes the door behind
/// it. `tpm` must be seeded ([`Tpm::seed_entropy`]): its mixer supplies the new
/// authValue, the nonces and the salt.
pub fn provision<T: Transport>(tpm: &mut Tpm<T>) -> Result<Provisioned, ProvisionError> {
    let mut auth = [0u8; WRAPPING_AUTH_LEN];
    let result = check_and_provision(tpm, &mut auth);
    // Every outcome closes the door: even when nothing was (re)provisioned, keys from
    // an earlier boot may be in the TPM, and branch B must not stay open for the host.
    let closed = close_door(tpm);
    auth.fill(0);
    let outcome = match (result, closed) {
        (Ok(p), Ok(())) => lock_platform(tpm, &p.secrets.parent_name).map(|()| p),
        (Ok(_), Err(e)) => Err(e),
        (Err(e), _) => Err(e),
    };
    // The new authValues crossed the command buffer only encrypted, but nothing of
    // this exchange needs to stay in the client.
    tpm.wipe_buffers();
    outcome
}

/// Step 6: sets platformAuth to [`PLATFORM_AUTH_LEN`] fresh random bytes (sent
/// encrypted to the pinned parent), then forgets them. Needs the empty platformAuth
/// of a freshly reset TPM.
fn lock_platform<T: Transport>(tpm: &mut Tpm<T>, parent_name: &Name) -> Result<(), ProvisionError> {
    let step = at(Step::LockPlatform);
    let mut value = [0u8; PLATFORM_AUTH_LEN];
    tpm.random(&mut value).map_err(&step)?;
    // Salted to the parent (Name recomputed and compared by the client), decrypt only,
    // not continued: the TPM closes it after the command succeeds.
    let enc = tpm.start_auth_session(
        SaltKey::Rsa {
            handle: PARENT_HANDLE,
            pinned_name: parent_name.as_bytes(),
        },
        None,
        SessionKind::Hmac,
        sa::DECRYPT,
    );
    let mut enc = match enc {
        Ok(s) => s,
        Err(e) => {
            value.fill(0);
            core::hint::black_box(&value);
            return Err(ProvisionError::Tpm {
                step: Step::LockPlatform,
                error: e,
            });
        }
    };
    let changed = tpm.hierarchy_change_auth(
        &platform(),
        &mut [Auth::Password(b""), Auth::encrypt_only(&mut enc)],
        &value,
    );
    value.fill(0);
    core::hint::black_box(&value);
    // A no-op after success (the session ended with the command).
    let flushed = tpm.flush_session(&mut enc).map_err(at(Step::Flush));
    changed.map_err(&step)?;
    flushed
}

/// Steps 1 to 4.
fn check_and_provision<T: Transport>(
    tpm: &mut Tpm<T>,
    auth: &mut [u8; WRAPPING_AUTH_LEN],
) -> Result<Provisioned, ProvisionError> {
    tpm.random(auth).map_err(at(Step::Random))?;
    let sel = door_selection();
    let mut pcr = [[0u8; SHA256_SIZE]; 1];
    let (_, read, n) = tpm
        .pcr_read(&sel, &mut pcr)
        .map_err(at(Step::ReadDoorPcr))?;
    if n != 1 || read != Some(sel) {
        return Err(ProvisionError::Tpm {
            step: Step::ReadDoorPcr,
            error: Error::Parse(crate::tpm::marshal::ParseError::BadValue),
        });
    }
    if pcr.first() != Some(&[0u8; SHA256_SIZE]) {
        return Err(ProvisionError::DoorPcrNotReset);
    }
    provision_keys(tpm, auth)
}

/// Closes the door without provisioning: extends PCR [`DOOR_PCR`] with
/// [`door_closed_digest`](super::door_closed_digest) and checks that it moved. For
/// boot paths that skip [`provision`] (which always does this itself): without it, keys
/// persisted by an earlier boot would stay re-authorizable through branch B.
pub fn close_door<T: Transport>(tpm: &mut Tpm<T>) -> Result<(), ProvisionError> {
    let step = at(Step::CloseDoor);
    tpm.pcr_extend(
        DOOR_PCR,
        &mut [Auth::Password(b"")],
        &super::door_closed_digest(),
    )
    .map_err(&step)?;
    let mut pcr = [[0u8; SHA256_SIZE]; 1];
    let (_, _, n) = tpm.pcr_read(&door_selection(), &mut pcr).map_err(&step)?;
    if n != 1 || pcr[0] == [0u8; SHA256_SIZE] {
        return Err(ProvisionError::DoorNotClosed);
    }
    Ok(())
}

/// Steps 2 to 4 (everything between the PCR check and closing the door).
fn provision_keys<T: Transport>(
    tpm: &mut Tpm<T>,
    auth: &[u8; WRAPPING_AUTH_LEN],
) -> Result<Provisioned, ProvisionError> {
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

    let policy = wrapping_policy();
    let template = wrapping_template(&policy);
    let (key, public, key_created) = match read_expected(
        tpm,
        WRAPPING_HANDLE,
        &template,
        Step::ReadKey,
        ProvisionError::ForeignKey,
    )? {
        Some((obj, blob)) => (obj, blob, false),
        None => {
            let (obj, blob) = create_key(tpm, &parent, &template)?;
            (obj, blob, true)
        }
    };

    rotate(tpm, &parent, &key, &public, auth)?;

    Ok(Provisioned {
        secrets: UvSecrets {
            wrapping_auth: *auth,
            wrapping_name: key.name.clone(),
            parent_name: parent.name.clone(),
        },
        wrapping_public: public,
        parent_created,
        key_created,
    })
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

fn create_key<T: Transport>(
    tpm: &mut Tpm<T>,
    parent: &Object,
    template: &Template<'_>,
) -> Result<(Object, Blob), ProvisionError> {
    let step = at(Step::CreateKey);
    // A throw-away authValue: the rotation below replaces it before anyone can use it.
    let mut initial = [0u8; WRAPPING_AUTH_LEN];
    tpm.random(&mut initial).map_err(&step)?;
    let created = tpm.create(parent, &mut [Auth::Password(b"")], template, &initial);
    initial.fill(0);
    let blob = created.map_err(&step)?;
    let transient = tpm
        .load(parent, &mut [Auth::Password(b"")], &blob)
        .map_err(&step)?;
    let persisted = persist(tpm, &transient, WRAPPING_HANDLE, Step::CreateKey)?;
    Ok((persisted, blob.public))
}

/// Step 4: sets `auth` as the wrapping key's authValue through branch B.
fn rotate<T: Transport>(
    tpm: &mut Tpm<T>,
    parent: &Object,
    key: &Object,
    public: &Blob,
    auth: &[u8; WRAPPING_AUTH_LEN],
) -> Result<(), ProvisionError> {
    // The encrypting session: salted to the parent (Name pinned from ReadPublic above,
    // recomputed from the public area by the client), not bound, not authorizing.
    let mut enc = tpm
        .start_auth_session(
            SaltKey::Rsa {
                handle: PARENT_HANDLE,
                pinned_name: parent.name.as_bytes(),
            },
            None,
            SessionKind::Hmac,
            sa::CONTINUE_SESSION | sa::DECRYPT,
        )
        .map_err(at(Step::StartSessions))?;
    let policy = tpm.start_auth_session(SaltKey::None, None, SessionKind::Policy, 0);
    let mut policy = match policy {
        Ok(s) => s,
        Err(e) => {
            let _ = tpm.flush_session(&mut enc);
            return Err(ProvisionError::Tpm {
                step: Step::StartSessions,
                error: e,
            });
        }
    };
    let changed = change_auth(tpm, &mut policy, &mut enc, parent, key, auth);
    // The policy session ends with a successful command (continueSession clear);
    // flush whatever is still open either way.
    let f1 = tpm.flush_session(&mut policy);
    let f2 = tpm.flush_session(&mut enc);
    let private = changed?;
    f1.and(f2).map_err(at(Step::Flush))?;

    let rotated = KeyBlob {
        private,
        public: public.clone(),
    };
    let transient = tpm
        .load(parent, &mut [Auth::Password(b"")], &rotated)
        .map_err(at(Step::LoadRotated))?;
    if transient.name != key.name {
        let _ = tpm.flush_context(transient.handle);
        return Err(ProvisionError::Tpm {
            step: Step::LoadRotated,
            error: Error::NameMismatch,
        });
    }
    let swapped = swap_persistent(tpm, key, &transient);
    let flushed = tpm.flush_context(transient.handle).map_err(at(Step::Flush));
    swapped?;
    flushed
}

fn change_auth<T: Transport>(
    tpm: &mut Tpm<T>,
    policy: &mut Session,
    enc: &mut Session,
    parent: &Object,
    key: &Object,
    auth: &[u8; WRAPPING_AUTH_LEN],
) -> Result<Blob, ProvisionError> {
    let step = at(Step::PolicyB);
    tpm.policy_command_code(policy, cc::OBJECT_CHANGE_AUTH)
        .map_err(&step)?;
    tpm.policy_pcr(policy, &door_open_pcr_digest(), &door_selection())
        .map_err(&step)?;
    tpm.policy_or(policy, &branches()).map_err(&step)?;
    tpm.object_change_auth(
        key,
        parent,
        &mut [Auth::session(policy, &[]), Auth::encrypt_only(enc)],
        auth,
    )
    .map_err(at(Step::ChangeAuth))
}

fn swap_persistent<T: Transport>(
    tpm: &mut Tpm<T>,
    old: &Object,
    transient: &Object,
) -> Result<(), ProvisionError> {
    let step = at(Step::Persist);
    tpm.evict_control(
        &platform(),
        &mut [Auth::Password(b"")],
        old,
        WRAPPING_HANDLE,
    )
    .map_err(&step)?;
    tpm.evict_control(
        &platform(),
        &mut [Auth::Password(b"")],
        transient,
        WRAPPING_HANDLE,
    )
    .map_err(&step)?;
    Ok(())
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
    use crate::tpm::marshal::Writer;
    use crate::tpm::public::{Scheme, SymDef};

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
            WRAPPING_ATTRIBUTES | crate::tpm::consts::attr::USER_WITH_AUTH,
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
            error: Error::Tpm(crate::tpm::ResponseCode(0x99d)),
        };
        let text = format!("{e}");
        assert!(text.starts_with("ObjectChangeAuth: TPM error"), "{text}");
        assert!(format!("{}", ProvisionError::DoorPcrNotReset).contains("PCR 11"));
    }
}
