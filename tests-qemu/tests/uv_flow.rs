//! Firmware provisioning (`pefbox::fw`) and the ultravisor's session + unwrap
//! (`pefbox::uv::unwrap`) against a real swtpm (`xtask::swtpm`), one per test.
//!
//! 1. Provisioning on a fresh TPM creates the parent and the wrapping key with the
//!    documented policy (checked against digests the TPM computes in trial sessions);
//!    after a TPM reset (swtpm restart, same state) it reuses both and rotates the auth.
//! 2. A standard OAEP-SHA256 lockbox (svm-tools format blob, and plain `rsa` OAEP)
//!    unwraps to its 32-byte key through establish + unwrap, several times on one
//!    session; the whole SVM check (`uv::svm::open`) passes with it.
//! 3. Snooping: neither the symmetric keys nor the auth appear at any offset in any
//!    command or response byte (provisioning and ultravisor channels separately).
//! 4. After provisioning, host software on the same TPM cannot decrypt with or
//!    re-authorize the wrapping key, nor reset PCR 11 (but can reset PCR 16: the
//!    reference's hole).
//! 5. A bit flipped in the RSA_Decrypt response (header, parameters, auth area) makes
//!    unwrap fail, never return a key; the next unwrap recovers.
//! 6. After provisioning, platform authorization is gone until the next TPM reset: host
//!    software cannot evict the keys or change platformAuth back; the keys still work;
//!    a TPM reset restores the empty platformAuth and provisioning succeeds again.
//! 7. After an unwrap (successful or not), the key is in neither of the client's
//!    buffers; without the wipe it would be.

mod common;

use common::tpm::{cmd, decrypt, handles_in, platform_evict, unsalted_session, PW};
use pefbox::fw::{self, provision, ProvisionError, Provisioned, PARENT_HANDLE, WRAPPING_HANDLE};
use pefbox::tpm::client::CommandSpec;
use pefbox::tpm::consts::{cc, rh, sa};
use pefbox::tpm::crypto;
use pefbox::tpm::entropy::FromRng;
use pefbox::tpm::public::{PcrSelection, Public};
use pefbox::tpm::rc::{self, ResponseCode};
use pefbox::tpm::{Auth, Error, Object, SessionKind, Tpm, Transport, TransportError};
use pefbox::uv::esm::{EsmBlob, DEFAULT_RTAS};
use pefbox::uv::svm::{self, SvmPayload};
use pefbox::uv::unwrap::{UnwrapError, UvSession};
use rand::rngs::OsRng;
use rand::RngCore;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::{BigUint, Oaep, RsaPublicKey};
use std::time::Instant;
use xtask::esm::build_esm_blob;
use xtask::swtpm::{Swtpm, SwtpmConn};

/// Flips `mask` in byte `offset` of the response to the next command with code `cc`.
#[derive(Clone, Copy, Debug)]
struct Tamper {
    cc: u32,
    offset: usize,
    mask: u8,
}

/// Records every command and response byte that crosses it, and applies a [`Tamper`].
struct Recorder<T> {
    inner: T,
    log: Vec<(Vec<u8>, Vec<u8>)>,
    tamper: Option<Tamper>,
}

fn command_code(command: &[u8]) -> u32 {
    pefbox::tpm::wire::code(command).unwrap_or(0)
}

impl<T: Transport> Transport for Recorder<T> {
    fn transact(&mut self, command: &[u8], response: &mut [u8]) -> Result<usize, TransportError> {
        let n = self.inner.transact(command, response)?;
        if let Some(t) = self.tamper {
            if t.cc == command_code(command) && t.offset < n {
                response[t.offset] ^= t.mask;
                self.tamper = None;
            }
        }
        self.log.push((command.to_vec(), response[..n].to_vec()));
        Ok(n)
    }
}

type TestTpm = Tpm<Recorder<SwtpmConn>>;

fn connect(sw: &Swtpm) -> TestTpm {
    let conn = sw.connect().expect("connect to swtpm");
    let mut tpm = Tpm::new(Recorder {
        inner: conn,
        log: Vec::new(),
        tamper: None,
    });
    tpm.seed_entropy(&mut FromRng(OsRng)).expect("seed");
    tpm.transport_mut().log.clear();
    tpm
}

/// Provisions `tpm` and prints how long it took and how many commands it sent (`what`
/// names the case in the output); a refusal fails the test with `what`.
fn timed_provision(tpm: &mut TestTpm, what: &str) -> Provisioned {
    let t = Instant::now();
    let p = provision(tpm).unwrap_or_else(|e| panic!("provision ({what}): {e}"));
    println!(
        "provision ({what}): {:?}, {} commands",
        t.elapsed(),
        tpm.transport_mut().log.len()
    );
    p
}

/// A TPM reset: the client dropped, swtpm restarted on the same state, a new client.
fn reset(sw: &mut Swtpm, tpm: TestTpm) -> TestTpm {
    drop(tpm);
    sw.restart().expect("restart swtpm");
    connect(sw)
}

/// A swtpm for one test, a client on it, and the TPM provisioned through that client.
fn provisioned() -> (Swtpm, TestTpm, Provisioned) {
    let sw = Swtpm::start().expect("swtpm must be installed and start");
    let mut tpm = connect(&sw);
    let p = provision(&mut tpm).expect("provision");
    (sw, tpm, p)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every offset of every command and response in the log.
fn log_contains(log: &[(Vec<u8>, Vec<u8>)], needle: &[u8]) -> bool {
    log.iter()
        .any(|(c, r)| contains(c, needle) || contains(r, needle))
}

/// Successful commands with this code (the client re-sends a command the TPM answered
/// with TPM_RC_RETRY, which swtpm does for the first use of an RSA key).
fn count_ok(log: &[(Vec<u8>, Vec<u8>)], code: u32) -> usize {
    ok_commands(log, code).count()
}

fn ok_commands(log: &[(Vec<u8>, Vec<u8>)], code: u32) -> impl Iterator<Item = &(Vec<u8>, Vec<u8>)> {
    log.iter()
        .filter(move |(c, r)| command_code(c) == code && r.get(6..10) == Some(&[0, 0, 0, 0]))
}

fn pcr_value<T: Transport>(tpm: &mut Tpm<T>, index: u32) -> [u8; 32] {
    let mut v = [[0u8; 32]; 1];
    let (_, _, n) = tpm
        .pcr_read(&PcrSelection::sha256(&[index]), &mut v)
        .unwrap();
    assert_eq!(n, 1);
    v[0]
}

fn wrapping_key(p: &Provisioned) -> RsaPublicKey {
    assert_eq!(p.wrapping_modulus().len(), 256);
    RsaPublicKey::new(
        BigUint::from_bytes_be(p.wrapping_modulus()),
        BigUint::from(65537u32),
    )
    .unwrap()
}

fn wrapping_pem(p: &Provisioned) -> String {
    wrapping_key(p).to_public_key_pem(LineEnding::LF).unwrap()
}

fn oaep_lockbox(p: &Provisioned, msg: &[u8]) -> [u8; 256] {
    let ct = wrapping_key(p)
        .encrypt(&mut OsRng, Oaep::new::<sha2::Sha256>(), msg)
        .unwrap();
    ct.try_into().unwrap()
}

/// A random 32-byte key and its lockbox for `p`'s wrapping key.
fn random_lockbox(p: &Provisioned) -> ([u8; 32], [u8; 256]) {
    let mut k = [0u8; 32];
    OsRng.fill_bytes(&mut k);
    (k, oaep_lockbox(p, &k))
}

/// The wrapping key as an object (its handle and provisioned Name).
fn wrapping_object(p: &Provisioned) -> Object {
    Object {
        handle: WRAPPING_HANDLE,
        name: p.secrets.wrapping_name.clone(),
    }
}

/// An ultravisor session on `tpm` for `p`: established, one unwrap of `msg`'s lockbox
/// (which must give `msg` back), closed.
fn unwrap_on<T: Transport>(tpm: &mut Tpm<T>, p: &Provisioned, msg: &[u8; 32]) {
    let mut s = UvSession::establish(tpm, &p.secrets).unwrap();
    assert_eq!(s.unwrap(tpm, &oaep_lockbox(p, msg)).unwrap(), *msg);
    s.close(tpm).unwrap();
}

/// PolicySecret on the door index `nv` into `ps`, authorized through a one-shot unsalted
/// HMAC session with `auth`.
fn door_policy_secret<T: Transport>(
    tpm: &mut Tpm<T>,
    nv: &Object,
    ps: &mut pefbox::tpm::Session,
    auth: &[u8],
) -> Result<(), Error> {
    let mut hs = unsalted_session(tpm, SessionKind::Hmac);
    let r = tpm.policy_secret(nv, ps, &mut [Auth::session(&mut hs, auth)]);
    tpm.flush_session(&mut hs).unwrap();
    r
}

/// TPM2_GetCapability(TPM_CAP_TPM_PROPERTIES) from `first`, up to `max` (property, value).
fn properties<T: Transport>(tpm: &mut Tpm<T>, first: u32, max: usize) -> Vec<(u32, u32)> {
    let mut props = vec![(0u32, 0u32); max];
    let (n, _) = tpm.get_capability_properties(first, &mut props).unwrap();
    props.truncate(n);
    props
}

/// An ESM blob (svm-tools format) for a small random SVM, and its symmetric key.
struct Svm {
    blob: Vec<u8>,
    symkey: [u8; 32],
    kernel: Vec<u8>,
    initrd: Vec<u8>,
    bootargs: String,
}

fn make_svm(p: &Provisioned) -> Svm {
    let mut kernel = vec![0u8; 8192];
    OsRng.fill_bytes(&mut kernel);
    let initrd = b"svm initrd".to_vec();
    let bootargs = "console=hvc0 root=/dev/sda2".to_string();
    let (blob, symkey) = build_esm_blob(
        &[&wrapping_pem(p)],
        &kernel,
        &initrd,
        &bootargs,
        &DEFAULT_RTAS,
        &[],
        &mut OsRng,
    )
    .unwrap();
    Svm {
        blob,
        symkey,
        kernel,
        initrd,
        bootargs,
    }
}

/// The lockbox the ultravisor would open: found by the fingerprint the image recomputes
/// from the provisioned modulus (the blob's was hashed from the host's PEM export).
fn lockbox_of(p: &Provisioned, svm: &Svm) -> [u8; 256] {
    let fp = p.wrapping_fingerprint().expect("RSA wrapping key");
    *EsmBlob::parse(&svm.blob)
        .unwrap()
        .lockbox_for(&fp)
        .expect("the blob has a lockbox for this TPM's key")
        .encrypted_symkey
}

fn expect_tpm_error<T: std::fmt::Debug>(what: &str, r: Result<T, Error>) -> ResponseCode {
    match r {
        Err(Error::Tpm(code)) => {
            println!("{what}: {code} = {:#x}", code.0);
            code
        }
        other => panic!("{what}: expected a TPM error response, got {other:?}"),
    }
}

fn no_transients_or_sessions<T: Transport>(tpm: &mut Tpm<T>) {
    assert_eq!(handles_in(tpm, rh::TRANSIENT_FIRST), Vec::<u32>::new());
    assert_eq!(handles_in(tpm, rh::HMAC_SESSION_FIRST), Vec::<u32>::new());
    assert_eq!(handles_in(tpm, rh::POLICY_SESSION_FIRST), Vec::<u32>::new());
}

#[test]
fn provision_creates_then_reuses_and_rotates_across_tpm_resets() {
    let mut sw = Swtpm::start().expect("swtpm must be installed and start");
    let (p1, tpm) = {
        let mut tpm = connect(&sw);
        assert_eq!(pcr_value(&mut tpm, fw::DOOR_PCR), [0u8; 32]);
        let p = timed_provision(&mut tpm, "fresh TPM: create both + rotate");
        assert!(p.parent_created && p.key_created);
        let persistent = handles_in(&mut tpm, rh::PERSISTENT_FIRST);
        assert!(persistent.contains(&PARENT_HANDLE) && persistent.contains(&WRAPPING_HANDLE));
        no_transients_or_sessions(&mut tpm);

        // The key as the TPM holds it: Name, attributes, policy.
        let (obj, public) = tpm.read_public(WRAPPING_HANDLE).unwrap();
        assert_eq!(obj.name, p.secrets.wrapping_name);
        assert_eq!(public, p.wrapping_public);
        let pub_area = Public::parse(&public).unwrap();
        assert_eq!(pub_area.attributes, fw::WRAPPING_ATTRIBUTES);
        assert_eq!(pub_area.auth_policy, fw::wrapping_policy());
        let (parent, _) = tpm.read_public(PARENT_HANDLE).unwrap();
        assert_eq!(parent.name, p.secrets.parent_name);

        // The door index as the TPM holds it: Name, attributes, policy (never written).
        let (nv, nv_raw) = tpm.nv_read_public(fw::NV_HANDLE).unwrap();
        assert_eq!(nv.name, p.secrets.nv_name);
        assert_eq!(nv.name, fw::nv_name());
        let nvp = pefbox::tpm::public::NvPublic::parse(&nv_raw).unwrap();
        assert_eq!(nvp.attributes, fw::NV_ATTRIBUTES);
        assert_eq!(nvp.auth_policy, fw::nv_policy());
        assert!(p.nv_defined);

        // The policy arithmetic, recomputed by the TPM itself in trial sessions.
        let mut trial = unsalted_session(&mut tpm, SessionKind::Trial);
        tpm.policy_command_code(&mut trial, cc::NV_CHANGE_AUTH)
            .unwrap();
        tpm.policy_pcr(
            &mut trial,
            &fw::door_open_pcr_digest(),
            &fw::door_selection(),
        )
        .unwrap();
        assert_eq!(tpm.policy_get_digest(&mut trial).unwrap(), fw::nv_policy());
        tpm.policy_restart(&mut trial).unwrap();
        tpm.policy_command_code(&mut trial, cc::RSA_DECRYPT)
            .unwrap();
        // PolicySecret checks the authorization even in a trial session.
        door_policy_secret(&mut tpm, &nv, &mut trial, &p.secrets.nv_auth[..]).unwrap();
        assert_eq!(
            tpm.policy_get_digest(&mut trial).unwrap(),
            fw::wrapping_policy()
        );
        tpm.flush_session(&mut trial).unwrap();

        // The door is closed: PCR 11 = SHA-256(0...0 || SHA-256("pefbox: door closed")).
        assert_eq!(
            pcr_value(&mut tpm, fw::DOOR_PCR),
            crypto::sha256(&[&[0u8; 32], &fw::door_closed_digest()])
        );
        // A second provisioning in the same TPM power cycle is refused, clearly.
        let again = provision(&mut tpm).err();
        assert_eq!(
            again.map(|f| f.error),
            Some(ProvisionError::DoorPcrNotReset)
        );
        println!("second provision without reset: {}", again.unwrap());
        // The key works with this boot's auth.
        unwrap_on(&mut tpm, &p, &[0x5Au8; 32]);
        (p, tpm)
    };

    // Reboot: a TPM reset (swtpm restart with the same state).
    let mut tpm = reset(&mut sw, tpm);
    assert_eq!(pcr_value(&mut tpm, fw::DOOR_PCR), [0u8; 32], "PCR 11 reset");
    let p2 = timed_provision(&mut tpm, "after reset: reuse + rotate");
    assert!(
        !p2.parent_created && !p2.key_created && !p2.nv_defined,
        "keys and index reused"
    );
    assert_eq!(p2.secrets.parent_name, p1.secrets.parent_name);
    assert_eq!(p2.secrets.wrapping_name, p1.secrets.wrapping_name);
    assert_eq!(p2.wrapping_public, p1.wrapping_public);
    assert_ne!(p2.secrets.nv_auth, p1.secrets.nv_auth, "rotated");
    no_transients_or_sessions(&mut tpm);

    // Last boot's auth no longer works; this boot's does.
    let msg = [0xC3u8; 32];
    let lockbox = oaep_lockbox(&p2, &msg);
    let mut old = UvSession::establish(&mut tpm, &p1.secrets).unwrap();
    let e = old.unwrap(&mut tpm, &lockbox).unwrap_err();
    println!("unwrap with last boot's auth: {e}");
    assert!(
        matches!(e, UnwrapError::Tpm { code, .. } if code.base() == rc::RC_BAD_AUTH),
        "{e:?}"
    );
    old.close(&mut tpm).unwrap();
    let mut s = UvSession::establish(&mut tpm, &p2.secrets).unwrap();
    assert_eq!(s.unwrap(&mut tpm, &lockbox).unwrap(), msg);
    s.close(&mut tpm).unwrap();
    no_transients_or_sessions(&mut tpm);
}

#[test]
fn unwrap_standard_lockboxes_on_one_session() {
    let (_sw, mut tpm, p) = provisioned();
    let svm1 = make_svm(&p);
    let svm2 = make_svm(&p);
    assert_ne!(svm1.symkey, svm2.symkey);

    tpm.transport_mut().log.clear();
    let t = Instant::now();
    let mut s = UvSession::establish(&mut tpm, &p.secrets).unwrap();
    println!("establish: {:?}", t.elapsed());
    let handle = s.session_handle();
    assert_eq!(handle >> 24, rh::POLICY_SESSION_FIRST >> 24);

    let t = Instant::now();
    assert_eq!(
        s.unwrap(&mut tpm, &lockbox_of(&p, &svm1)).unwrap(),
        svm1.symkey
    );
    println!("unwrap 1: {:?}", t.elapsed());
    let t = Instant::now();
    assert_eq!(
        s.unwrap(&mut tpm, &lockbox_of(&p, &svm2)).unwrap(),
        svm2.symkey
    );
    println!("unwrap 2: {:?}", t.elapsed());
    // Plain `rsa` crate OAEP-SHA256 with the default (empty) label.
    let mut k3 = [0u8; 32];
    OsRng.fill_bytes(&mut k3);
    assert_eq!(s.unwrap(&mut tpm, &oaep_lockbox(&p, &k3)).unwrap(), k3);
    // The full SVM check with the unwrap as its unwrapper.
    let payload = SvmPayload {
        kernel: &svm1.kernel,
        bootargs: svm1.bootargs.as_bytes(),
        rtas: &DEFAULT_RTAS,
    };
    let fp = p.wrapping_fingerprint().unwrap();
    svm::open(&svm1.blob, &svm1.initrd, &payload, &fp, |c| {
        s.unwrap(&mut tpm, c)
    })
    .expect("svm accepted");
    // svm2's kernel under svm1's blob: the digests (opened with the right key) disagree.
    let wrong = SvmPayload {
        kernel: &svm2.kernel,
        ..payload
    };
    assert!(svm::open(&svm1.blob, &svm1.initrd, &wrong, &fp, |c| {
        s.unwrap(&mut tpm, c)
    })
    .is_err());

    // One session for all of them, RSA_Decrypt responses encrypted.
    assert_eq!(s.session_handle(), handle);
    let log = &tpm.transport_mut().log;
    // One kept policy session, and one one-shot HMAC session per PolicySecret (5 unwraps).
    assert_eq!(count_ok(log, cc::START_AUTH_SESSION), 1 + 5);
    assert_eq!(count_ok(log, cc::RSA_DECRYPT), 5);
    for (c, r) in ok_commands(log, cc::RSA_DECRYPT) {
        // attributes byte of the command's one session and of the response's:
        // continueSession | encrypt.
        assert_eq!(
            c[10 + 4 + 4 + 4 + 2 + 32],
            sa::CONTINUE_SESSION | sa::ENCRYPT
        );
        assert_eq!(r[10 + 4 + 34 + 34], sa::CONTINUE_SESSION | sa::ENCRYPT);
    }

    // The 32-byte length check: a lockbox of 31 bytes is refused, and so is garbage;
    // the session recovers afterwards.
    let e = s
        .unwrap(&mut tpm, &oaep_lockbox(&p, &[7u8; 31]))
        .unwrap_err();
    assert_eq!(e, UnwrapError::WrongLength(31));
    let mut garbage = [0u8; 256];
    OsRng.fill_bytes(&mut garbage);
    garbage[0] = 0x01;
    let e = s.unwrap(&mut tpm, &garbage).unwrap_err();
    println!("garbage lockbox: {e}");
    assert!(
        matches!(
            e,
            UnwrapError::Tpm {
                phase: pefbox::uv::unwrap::Phase::Decrypt,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        s.unwrap(&mut tpm, &lockbox_of(&p, &svm2)).unwrap(),
        svm2.symkey
    );

    s.close(&mut tpm).unwrap();
    no_transients_or_sessions(&mut tpm);
}

#[test]
fn snooping_the_transport_finds_neither_keys_nor_auth() {
    // Firmware's channel (provisioning) alone.
    let (_sw, mut tpm, p) = provisioned();
    let auth = *p.secrets.nv_auth;
    let prov_log = std::mem::take(&mut tpm.transport_mut().log);
    assert!(count_ok(&prov_log, cc::NV_DEFINE_SPACE) == 1);
    assert!(
        !log_contains(&prov_log, &auth),
        "auth visible on the provisioning channel"
    );

    // The ultravisor's channel: establish and several unwraps.
    let svms: Vec<Svm> = (0..3).map(|_| make_svm(&p)).collect();
    let mut s = UvSession::establish(&mut tpm, &p.secrets).unwrap();
    for svm in &svms {
        assert_eq!(
            s.unwrap(&mut tpm, &lockbox_of(&p, svm)).unwrap(),
            svm.symkey
        );
    }
    s.close(&mut tpm).unwrap();
    let uv_log = std::mem::take(&mut tpm.transport_mut().log);
    assert_eq!(count_ok(&uv_log, cc::RSA_DECRYPT), 3);
    assert!(
        !log_contains(&uv_log, &auth),
        "auth visible to the hypervisor"
    );
    for svm in &svms {
        assert!(!log_contains(&uv_log, &svm.symkey), "symkey visible");
        assert!(!log_contains(&prov_log, &svm.symkey));
    }
    let bytes: usize = uv_log.iter().map(|(c, r)| c.len() + r.len()).sum();
    println!(
        "searched {} provisioning and {} ultravisor messages ({bytes} bytes) at every offset",
        prov_log.len(),
        uv_log.len()
    );

    // Control: the search does find a value that is sent in clear (a password).
    let _ = decrypt(
        &mut tpm,
        &wrapping_object(&p),
        Auth::Password(&auth),
        &lockbox_of(&p, &svms[0]),
        &mut [0u8; 256],
    );
    assert!(log_contains(&tpm.transport_mut().log, &auth));
}

/// PCR_Reset through the client's generic command path (no method for it).
fn pcr_reset<T: Transport>(tpm: &mut Tpm<T>, index: u32) -> Result<(), Error> {
    let spec = CommandSpec {
        cc: 0x13D,
        auth_handles: 1,
        response_handles: 0,
        encrypt_command: false,
        encrypt_response: false,
    };
    tpm.execute(
        &spec,
        &[&Object::pcr(index)],
        &mut [Auth::Password(b"")],
        |_| Ok(()),
    )
    .map(|_| ())
}

#[test]
fn host_software_cannot_use_or_reauthorize_the_key_after_provisioning() {
    let (sw, fw_tpm, p) = provisioned();
    drop(fw_tpm);
    // "Host software": a fresh client on the same TPM, no reset.
    let mut host = connect(&sw);
    let key = wrapping_object(&p);
    let parent = Object {
        handle: PARENT_HANDLE,
        name: p.secrets.parent_name.clone(),
    };
    let (k, lockbox) = random_lockbox(&p);
    let mut out = [0u8; 256];

    // Password authorization, empty and guessed: userWithAuth is clear.
    for (what, pw) in [
        ("RSA_Decrypt, empty password", &b""[..]),
        ("RSA_Decrypt, guessed password", &b"0123456789abcdef"[..]),
    ] {
        let code = expect_tpm_error(
            what,
            decrypt(&mut host, &key, Auth::Password(pw), &lockbox, &mut out),
        );
        assert_eq!(code.base(), rc::RC_AUTH_UNAVAILABLE & 0xFFF, "{code}");
    }

    // PolicySecret on the door index without its authValue.
    let (nv, _) = host.nv_read_public(fw::NV_HANDLE).unwrap();
    assert_eq!(nv.name, p.secrets.nv_name);
    let mut ps = unsalted_session(&mut host, SessionKind::Policy);
    let mut hs = unsalted_session(&mut host, SessionKind::Hmac);
    // More attempts than TPM_PT_MAX_AUTH_FAIL (3 in swtpm): the index is noDA, so they
    // neither lock it (a host-triggered denial of service that would outlive reboots)
    // nor slow anyone down; a 256-bit fresh auth needs no lockout.
    for attempt in 0..5 {
        host.policy_restart(&mut ps).unwrap();
        host.policy_command_code(&mut ps, cc::RSA_DECRYPT).unwrap();
        let code = expect_tpm_error(
            &format!("PolicySecret(door index) with a wrong auth (attempt {attempt})"),
            host.policy_secret(
                &nv,
                &mut ps,
                &mut [Auth::session(&mut hs, b"guessed-auth-123")],
            ),
        );
        assert_eq!(
            code.base(),
            rc::RC_BAD_AUTH,
            "{code} (noDA: BAD_AUTH, not AUTH_FAIL)"
        );
    }
    // Without PolicySecret the digest is not the key's authPolicy.
    host.policy_restart(&mut ps).unwrap();
    host.policy_command_code(&mut ps, cc::RSA_DECRYPT).unwrap();
    let code = expect_tpm_error(
        "RSA_Decrypt after PolicyCommandCode alone",
        decrypt(
            &mut host,
            &key,
            Auth::session(&mut ps, b""),
            &lockbox,
            &mut out,
        ),
    );
    assert_eq!(code.base(), rc::RC_POLICY_FAIL, "{code}");
    host.flush_session(&mut hs).unwrap();

    // The door: PolicyPCR with the all-zero expectation fails now.
    host.policy_restart(&mut ps).unwrap();
    host.policy_command_code(&mut ps, cc::NV_CHANGE_AUTH)
        .unwrap();
    let code = expect_tpm_error(
        "PolicyPCR(PCR 11 = 0) after the door closed",
        host.policy_pcr(&mut ps, &fw::door_open_pcr_digest(), &fw::door_selection()),
    );
    assert_eq!(code.base(), rc::RC_VALUE, "{code}");
    // With the current PCR value the digest is not the index's authPolicy.
    host.policy_pcr(&mut ps, &[], &fw::door_selection())
        .unwrap();
    let code = expect_tpm_error(
        "NV_ChangeAuth after PolicyPCR(current PCR 11)",
        host.nv_change_auth(&nv, &mut [Auth::session(&mut ps, b"")], b"new"),
    );
    assert_eq!(code.base(), rc::RC_POLICY_FAIL, "{code}");
    host.flush_session(&mut ps).unwrap();
    // NV_ChangeAuth with a password: the admin role of an NV index needs a policy session.
    let code = expect_tpm_error(
        "NV_ChangeAuth, empty password",
        host.nv_change_auth(&nv, &mut [Auth::Password(b"")], b"new"),
    );
    assert_eq!(
        code.0, 0x124,
        "TPM_RC_AUTH_TYPE: the admin role needs a policy session"
    );
    // ObjectChangeAuth on the key: adminWithPolicy, and the policy is RSA_Decrypt only.
    let code = expect_tpm_error(
        "ObjectChangeAuth(key), empty password",
        host.object_change_auth(&key, &parent, &mut [Auth::Password(b"")], b"new"),
    );
    assert_eq!(code.0, 0x124, "TPM_RC_AUTH_TYPE");

    // PCR 11 cannot be reset by software; PCR 16 (the reference's choice) can.
    let code = expect_tpm_error("PCR_Reset(11)", pcr_reset(&mut host, fw::DOOR_PCR));
    assert_ne!(code.0, 0);
    assert_ne!(pcr_value(&mut host, fw::DOOR_PCR), [0u8; 32]);
    pcr_reset(&mut host, 16).expect("PCR 16 is resettable (the reference's hole)");
    println!("PCR_Reset(16): success (a door on PCR 16 could be reopened by the host)");

    let props = properties(&mut host, 0x20E, 2);
    println!("DA: {props:?} (TPM_PT_LOCKOUT_COUNTER, TPM_PT_MAX_AUTH_FAIL)");
    assert_eq!(props.first(), Some(&(0x20E, 0)), "no DA count");
    no_transients_or_sessions(&mut host);
    drop(host);

    // The ultravisor still unwraps after all that.
    unwrap_on(&mut connect(&sw), &p, &k);
}

/// TPM2_Clear authorized by the lockout hierarchy with its empty password, sent as raw bytes
/// (the client has no Clear: nothing of ours ever clears a TPM). Returns the response code.
fn clear_with_lockout<T: Transport>(tpm: &mut Tpm<T>) -> u32 {
    let mut r = [0u8; 64];
    let n = tpm
        .transport_mut()
        .transact(&cmd(cc::CLEAR, &[rh::LOCKOUT], PW, &[]), &mut r)
        .expect("Clear sent");
    assert!(n >= 10, "a TPM response header");
    u32::from_be_bytes(r[6..10].try_into().unwrap())
}

/// Why the owner-hierarchy key layout (README, "Real hardware") is not built. The host OS
/// can hold ownerAuth and lockoutAuth (both empty here, as on a host that never set them);
/// with them it evicts an owner-range persistent key and TPM2_Clears the owner hierarchy. A
/// key kept the way an owner layout would keep it (a storage primary under the owner,
/// persistent at 0x81000001) is gone after either, for good after Clear (the owner seed is
/// new: the same template gives another key). The platform layout's parent, wrapping key and
/// door index survive both, and the ultravisor unwraps after them.
#[test]
fn the_host_can_destroy_an_owner_range_key_but_not_the_platform_layout() {
    const OWNER_KEY: u32 = 0x8100_0001;
    let (sw, fw_tpm, p) = provisioned();
    drop(fw_tpm);
    let mut host = connect(&sw);
    let owner = Object::permanent(rh::OWNER);
    let template = pefbox::tpm::Template::rsa_storage();
    let owner_key = |host: &mut TestTpm| {
        let (t, _) = host
            .create_primary(&owner, &mut [Auth::Password(b"")], &template, b"")
            .unwrap();
        let kept = host
            .evict_control(&owner, &mut [Auth::Password(b"")], &t, OWNER_KEY)
            .unwrap()
            .expect("made persistent");
        host.flush_context(t.handle).unwrap();
        kept
    };

    // EvictControl with ownerAuth: the owner-range key goes, the platform keys are refused.
    let kept = owner_key(&mut host);
    for (what, handle, name) in [
        ("parent", PARENT_HANDLE, p.secrets.parent_name.clone()),
        ("wrapping key", WRAPPING_HANDLE, wrapping_object(&p).name),
    ] {
        let code = expect_tpm_error(
            &format!("EvictControl(owner, platform {what})"),
            host.evict_control(
                &owner,
                &mut [Auth::Password(b"")],
                &Object { handle, name },
                handle,
            ),
        );
        assert_eq!(code.base(), 0x085, "{what}: TPM_RC_HIERARCHY, not {code}");
    }
    let gone = host
        .evict_control(&owner, &mut [Auth::Password(b"")], &kept, OWNER_KEY)
        .expect("the owner evicts its own key");
    assert!(gone.is_none());
    assert!(!persistent_handles(&mut host).contains(&OWNER_KEY));

    // TPM2_Clear with lockoutAuth: the owner-range key goes, and cannot be made again.
    let kept = owner_key(&mut host);
    assert_eq!(clear_with_lockout(&mut host), 0, "Clear succeeded");
    let left = persistent_handles(&mut host);
    assert!(!left.contains(&OWNER_KEY), "{left:x?}");
    assert!(
        left.contains(&PARENT_HANDLE) && left.contains(&WRAPPING_HANDLE),
        "{left:x?}"
    );
    let remade = owner_key(&mut host);
    assert_ne!(remade.name, kept.name, "a new owner seed: another key");
    let (nv, _) = host.nv_read_public(fw::NV_HANDLE).unwrap();
    assert_eq!(nv.name, p.secrets.nv_name, "the door index survived Clear");
    no_transients_or_sessions(&mut host);
    drop(host);

    let (k, _) = random_lockbox(&p);
    unwrap_on(&mut connect(&sw), &p, &k);
}

#[test]
fn tampered_responses_never_yield_a_key() {
    let (_sw, mut tpm, p) = provisioned();
    let (k, lockbox) = random_lockbox(&p);
    let mut s = UvSession::establish(&mut tpm, &p.secrets).unwrap();
    assert_eq!(s.unwrap(&mut tpm, &lockbox).unwrap(), k);
    let n = tpm.transport_mut().log.last().unwrap().1.len();
    // tag(2) size(4) rc(4) parameterSize(4) TPM2B message(2+32) nonce(2+32) attrs(1) hmac(2+32)
    assert_eq!(n, 10 + 4 + 34 + 34 + 1 + 34);
    let positions = [
        ("tag", 1usize),
        ("size", 5),
        ("response code", 9),
        ("parameterSize", 13),
        ("message size", 15),
        ("message first byte", 16),
        ("message last byte", 47),
        ("nonceTPM size", 49),
        ("nonceTPM", 60),
        ("session attributes", 82),
        ("hmac size", 84),
        ("hmac last byte", n - 1),
    ];
    for (what, offset) in positions {
        for mask in [0x01u8, 0x80] {
            tpm.transport_mut().tamper = Some(Tamper {
                cc: cc::RSA_DECRYPT,
                offset,
                mask,
            });
            let r = s.unwrap(&mut tpm, &lockbox);
            assert!(
                tpm.transport_mut().tamper.is_none(),
                "tamper at {what} applied"
            );
            match r {
                Ok(key) => panic!("tampered {what} ({offset}, {mask:#x}) yielded a key {key:02x?}"),
                Err(e) => {
                    if mask == 1 {
                        println!("flip at {what} (offset {offset}): {e}");
                    }
                }
            }
            // The session recovers (re-established) and returns the right key.
            assert_eq!(s.unwrap(&mut tpm, &lockbox).unwrap(), k);
        }
    }
    // An HMAC or parameter flip is reported as what it is.
    refused_after_parameter_flip(&mut tpm, &mut s, &lockbox);
    s.close(&mut tpm).unwrap();

    // Pinned Names: a wrong wrapping Name or parent Name is refused at establish.
    let with =
        |w: &pefbox::tpm::Name, pa: &pefbox::tpm::Name, nv: &pefbox::tpm::Name| fw::UvSecrets {
            nv_auth: p.secrets.nv_auth.clone(),
            wrapping_name: w.clone(),
            parent_name: pa.clone(),
            nv_name: nv.clone(),
        };
    let s_ = &p.secrets;
    for bad in [
        with(&s_.parent_name, &s_.parent_name, &s_.nv_name),
        with(&s_.wrapping_name, &s_.wrapping_name, &s_.nv_name),
        with(&s_.wrapping_name, &s_.parent_name, &s_.parent_name),
    ] {
        assert_eq!(
            UvSession::establish(&mut tpm, &bad).unwrap_err(),
            UnwrapError::NameMismatch
        );
    }
    no_transients_or_sessions(&mut tpm);
}

/// One bit of the RSA_Decrypt response's parameters flipped: the unwrap of `lockbox` fails
/// the response HMAC check and says so.
fn refused_after_parameter_flip(tpm: &mut TestTpm, s: &mut UvSession, lockbox: &[u8; 256]) {
    tpm.transport_mut().tamper = Some(Tamper {
        cc: cc::RSA_DECRYPT,
        offset: 30,
        mask: 0x10,
    });
    assert_eq!(
        s.unwrap(tpm, lockbox).unwrap_err(),
        UnwrapError::ResponseAuth
    );
}

fn persistent_handles<T: Transport>(tpm: &mut Tpm<T>) -> Vec<u32> {
    handles_in(tpm, rh::PERSISTENT_FIRST)
}

/// Makes a primary from `template` under the platform hierarchy persistent at `handle`.
fn persist_foreign<T: Transport>(
    tpm: &mut Tpm<T>,
    template: &pefbox::tpm::Template<'_>,
    handle: u32,
) -> Object {
    let platform = Object::permanent(rh::PLATFORM);
    let (t, _) = tpm
        .create_primary(&platform, &mut [Auth::Password(b"")], template, b"")
        .unwrap();
    let p = platform_evict(tpm, &t, handle).unwrap().unwrap();
    tpm.flush_context(t.handle).unwrap();
    p
}

/// A foreign primary from `template` persistent at `handle`, then provisioning: refused as
/// `want`, the door closed all the same and the platform hierarchy disabled. Returns the
/// foreign object.
fn foreign_refused(
    tpm: &mut TestTpm,
    template: &pefbox::tpm::Template<'_>,
    handle: u32,
    want: ProvisionError,
) -> Object {
    let foreign = persist_foreign(tpm, template, handle);
    let e = provision(tpm).unwrap_err().error;
    println!("foreign {handle:#x}: {e}");
    assert_eq!(e, want);
    assert_ne!(pcr_value(tpm, fw::DOOR_PCR), [0u8; 32], "door closed");
    // Failed closed: the platform hierarchy is disabled, its objects unreachable.
    assert!(fw::provision::platform_disabled(tpm).unwrap());
    foreign
}

#[test]
fn provisioning_refuses_used_pcr_11_and_foreign_objects_and_still_closes_the_door() {
    // PCR 11 used before provisioning: refused before anything is created.
    let sw = Swtpm::start().expect("swtpm must be installed and start");
    let mut tpm = connect(&sw);
    tpm.pcr_extend(fw::DOOR_PCR, &mut [Auth::Password(b"")], &[1u8; 32])
        .unwrap();
    let e = provision(&mut tpm).unwrap_err().error;
    assert_eq!(e, ProvisionError::DoorPcrNotReset);
    assert_eq!(persistent_handles(&mut tpm), Vec::<u32>::new());
    assert_ne!(pcr_value(&mut tpm, fw::DOOR_PCR), [0u8; 32]);
    drop(tpm);
    drop(sw);

    // A failure before anything else (here: no entropy) still closes the door.
    let sw = Swtpm::start().expect("swtpm must be installed and start");
    let mut unseeded = Tpm::new(sw.connect().unwrap());
    let e = provision(&mut unseeded).unwrap_err().error;
    println!("unseeded client: {e}");
    assert!(
        matches!(
            e,
            ProvisionError::Tpm {
                error: Error::NoEntropy,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        pcr_value(&mut unseeded, fw::DOOR_PCR),
        crypto::sha256(&[&[0u8; 32], &fw::door_closed_digest()]),
        "door closed"
    );
    drop(unseeded);
    drop(sw);

    // A foreign object at 0x81800001: refused, left alone, and the door still closes.
    let mut sw = Swtpm::start().expect("swtpm must be installed and start");
    let mut tpm = connect(&sw);
    let foreign = foreign_refused(
        &mut tpm,
        &pefbox::tpm::Template::rsa_storage(),
        WRAPPING_HANDLE,
        ProvisionError::ForeignKey,
    );
    let code = expect_tpm_error(
        "ReadPublic(0x81800001) after failing closed",
        tpm.read_public(WRAPPING_HANDLE).map(|_| ()),
    );
    assert_eq!(code.base(), rc::RC_HANDLE, "{code}");
    no_transients_or_sessions(&mut tpm);
    // Left alone: after a TPM reset it is still there.
    let mut tpm = reset(&mut sw, tpm);
    assert_eq!(
        tpm.read_public(WRAPPING_HANDLE).unwrap().0.name,
        foreign.name
    );

    // A foreign object at 0x81800000 (an ECC storage key): refused the same way.
    for h in [WRAPPING_HANDLE, PARENT_HANDLE] {
        let o = tpm.read_public(h).unwrap().0;
        platform_evict(&mut tpm, &o, h).unwrap();
    }
    let foreign = foreign_refused(
        &mut tpm,
        &pefbox::tpm::Template::ecc_storage(),
        PARENT_HANDLE,
        ProvisionError::ForeignParent,
    );
    let mut tpm = reset(&mut sw, tpm);
    assert_eq!(tpm.read_public(PARENT_HANDLE).unwrap().0.name, foreign.name);
    assert_eq!(persistent_handles(&mut tpm), vec![PARENT_HANDLE]);
}

#[test]
fn a_parent_recreated_from_the_same_seed_still_rotates_the_key() {
    let (mut sw, tpm, p1) = provisioned();
    // After a TPM reset and before provisioning, platformAuth is empty again: evict the
    // parent (as platform software running before the firmware could).
    let mut tpm = reset(&mut sw, tpm);
    let parent = tpm.read_public(PARENT_HANDLE).unwrap().0;
    platform_evict(&mut tpm, &parent, PARENT_HANDLE).unwrap();
    assert_eq!(persistent_handles(&mut tpm), vec![WRAPPING_HANDLE]);
    let p2 = provision(&mut tpm).unwrap();
    assert!(p2.parent_created && !p2.key_created);
    assert_eq!(p2.secrets.parent_name, p1.secrets.parent_name);
    assert_eq!(p2.secrets.wrapping_name, p1.secrets.wrapping_name);
    unwrap_on(&mut tpm, &p2, &[0x11u8; 32]);
}

/// What host software with the empty platform password can still do to the keys.
fn host_platform_attempts<T: Transport>(host: &mut Tpm<T>, p: &Provisioned) -> Vec<ResponseCode> {
    let platform = Object::permanent(rh::PLATFORM);
    let mut codes = Vec::new();
    for (what, handle, name) in [
        (
            "EvictControl(0x81800001), platform, empty password",
            WRAPPING_HANDLE,
            &p.secrets.wrapping_name,
        ),
        (
            "EvictControl(0x81800000), platform, empty password",
            PARENT_HANDLE,
            &p.secrets.parent_name,
        ),
    ] {
        let obj = Object {
            handle,
            name: name.clone(),
        };
        codes.push(expect_tpm_error(what, platform_evict(host, &obj, handle)));
    }
    codes.push(expect_tpm_error(
        "HierarchyChangeAuth(platform, back to empty), empty password",
        host.hierarchy_change_auth(&platform, &mut [Auth::Password(b"")], b""),
    ));
    codes.push(expect_tpm_error(
        "HierarchyChangeAuth(platform, to a known value), empty password",
        host.hierarchy_change_auth(&platform, &mut [Auth::Password(b"")], b"host-chosen"),
    ));
    codes.push(expect_tpm_error(
        "CreatePrimary(platform), empty password",
        host.create_primary(
            &platform,
            &mut [Auth::Password(b"")],
            &pefbox::tpm::Template::rsa_storage(),
            b"",
        )
        .map(|_| ()),
    ));
    codes
}

fn unwrap_once(sw: &Swtpm, p: &Provisioned) {
    let mut k = [0u8; 32];
    OsRng.fill_bytes(&mut k);
    unwrap_on(&mut connect(sw), p, &k);
}

#[test]
fn platform_authorization_is_gone_after_provisioning_until_tpm_reset() {
    let mut sw = Swtpm::start().expect("swtpm must be installed and start");
    let mut fw_tpm = connect(&sw);
    let p1 = provision(&mut fw_tpm).expect("provision on a fresh TPM");
    let log = std::mem::take(&mut fw_tpm.transport_mut().log);
    assert!(fw_tpm.buffers_are_clear(), "provisioning wipes the client");
    drop(fw_tpm);

    // Exactly one HierarchyChangeAuth, after the door closed, newAuth sent through a
    // second (salted HMAC) session with decrypt, a 32-byte TPM2B.
    let hca = pefbox::tpm::client::CC_HIERARCHY_CHANGE_AUTH;
    assert_eq!(count_ok(&log, hca), 1);
    let last_extend = log
        .iter()
        .rposition(|(c, _)| command_code(c) == cc::PCR_EXTEND)
        .unwrap();
    let change = log
        .iter()
        .position(|(c, r)| command_code(c) == hca && r.get(6..10) == Some(&[0, 0, 0, 0]))
        .unwrap();
    assert!(
        change > last_extend,
        "platformAuth changes after the door closed"
    );
    let (c, _) = &log[change];
    // header(10) platform handle(4) authSize(4) | PW session: handle 4, nonce 2, attrs 1,
    // hmac 2 | HMAC session: handle 4, nonce 2+32, attrs 1, hmac 2+32 | newAuth 2+32
    assert_eq!(&c[10..14], &rh::PLATFORM.to_be_bytes());
    assert_eq!(&c[18..22], &rh::PW.to_be_bytes());
    let s2 = 18 + 9;
    assert_eq!(
        c[s2] as u32,
        rh::HMAC_SESSION_FIRST >> 24,
        "second session is HMAC"
    );
    assert_eq!(c[s2 + 4 + 34], sa::DECRYPT, "decrypt, not continued");
    let new_auth = &c[s2 + 4 + 34 + 1 + 34..];
    assert_eq!(new_auth.len(), 2 + 32);
    assert_eq!(&new_auth[..2], &[0, 32]);
    assert_ne!(&new_auth[2..], &[0u8; 32]);

    // Host software after the firmware, same TPM power cycle.
    let mut host = connect(&sw);
    let codes = host_platform_attempts(&mut host, &p1);
    for code in &codes {
        assert_eq!(code.base(), rc::RC_BAD_AUTH, "{code}");
    }
    assert_eq!(
        persistent_handles(&mut host),
        vec![PARENT_HANDLE, WRAPPING_HANDLE],
        "both keys still there"
    );
    // The platform hierarchy is still enabled (only its authorization changed), and its
    // authorization failures are not dictionary-attack counted.
    assert_eq!(properties(&mut host, 0x20E, 1), [(0x20E, 0)], "no DA count");
    let st = properties(&mut host, 0x201, 1); // TPM_PT_STARTUP_CLEAR
    assert_eq!(st.len(), 1);
    println!("TPM_PT_STARTUP_CLEAR: {:#x}", st[0].1);
    assert_eq!(st[0].1 & 1, 1, "phEnable still set");
    no_transients_or_sessions(&mut host);
    drop(host);

    // The ultravisor still establishes and unwraps.
    unwrap_once(&sw, &p1);

    // TPM reset (reboot): platformAuth is empty again, and provisioning (which needs
    // it at start) succeeds, rotates, and locks again.
    sw.restart().expect("restart swtpm");
    let mut fw_tpm = connect(&sw);
    let p2 = provision(&mut fw_tpm).expect("provision after the TPM reset");
    assert!(!p2.parent_created && !p2.key_created);
    assert_eq!(p2.secrets.wrapping_name, p1.secrets.wrapping_name);
    assert_ne!(p2.secrets.nv_auth, p1.secrets.nv_auth);
    assert_eq!(count_ok(&fw_tpm.transport_mut().log, hca), 1);
    drop(fw_tpm);
    let mut host = connect(&sw);
    for code in host_platform_attempts(&mut host, &p2) {
        assert_eq!(code.base(), rc::RC_BAD_AUTH, "{code}");
    }
    drop(host);
    unwrap_once(&sw, &p2);
}

#[test]
fn unwrap_leaves_no_key_in_the_client() {
    let (_sw, mut tpm, p) = provisioned();
    let (k, lockbox) = random_lockbox(&p);

    // Control: the same RSA_Decrypt through the client without the wipe leaves the key
    // in the response buffer (the search would find it).
    let mut ps = unsalted_session(&mut tpm, SessionKind::Policy);
    tpm.policy_command_code(&mut ps, cc::RSA_DECRYPT).unwrap();
    let (nv, _) = tpm.nv_read_public(fw::NV_HANDLE).unwrap();
    door_policy_secret(&mut tpm, &nv, &mut ps, &p.secrets.nv_auth[..]).unwrap();
    let mut out = [0u8; 256];
    let n = decrypt(
        &mut tpm,
        &wrapping_object(&p),
        Auth::session(&mut ps, &[]),
        &lockbox,
        &mut out,
    )
    .unwrap();
    assert_eq!(&out[..n], &k);
    assert!(
        tpm.buffers_contain(&k),
        "control: the key lingers without the wipe"
    );
    tpm.flush_session(&mut ps).unwrap();

    // Through the ultravisor: gone after each unwrap, also after a failed one.
    let mut s = UvSession::establish(&mut tpm, &p.secrets).unwrap();
    for _ in 0..2 {
        assert_eq!(s.unwrap(&mut tpm, &lockbox).unwrap(), k);
        assert!(!tpm.buffers_contain(&k), "key left in the client");
        assert!(tpm.buffers_are_clear());
    }
    // A 31-byte plaintext (refused by length): also wiped.
    let short = [0x6Du8; 31];
    let e = s.unwrap(&mut tpm, &oaep_lockbox(&p, &short)).unwrap_err();
    assert_eq!(e, UnwrapError::WrongLength(31));
    assert!(!tpm.buffers_contain(&short) && tpm.buffers_are_clear());
    // A tampered response (HMAC fails): also wiped.
    refused_after_parameter_flip(&mut tpm, &mut s, &lockbox);
    assert!(tpm.buffers_are_clear());
    assert_eq!(s.unwrap(&mut tpm, &lockbox).unwrap(), k);
    assert!(!tpm.buffers_contain(&k));
    s.close(&mut tpm).unwrap();
}

/// A TPM reset (swtpm restarted) under a running ultravisor: its kept session is gone, the
/// first policy command is refused with TPM_RC_REFERENCE_*, and the unwrap establishes a
/// new salted session and succeeds, once, without the caller doing anything.
#[test]
fn unwrap_recovers_when_the_tpm_lost_the_session() {
    let (mut sw, mut tpm, p) = provisioned();
    let mut s = UvSession::establish(&mut tpm, &p.secrets).unwrap();
    let before = s.session_handle();
    let mut k = [0u8; 32];
    OsRng.fill_bytes(&mut k);
    assert_eq!(s.unwrap(&mut tpm, &oaep_lockbox(&p, &k)).unwrap(), k);
    let mut tpm = reset(&mut sw, tpm);
    tpm.transport_mut().log.clear();
    OsRng.fill_bytes(&mut k);
    assert_eq!(s.unwrap(&mut tpm, &oaep_lockbox(&p, &k)).unwrap(), k);
    let log = &tpm.transport_mut().log;
    assert_eq!(
        count_ok(log, 0x176),
        2,
        "exactly one new policy session after the reset (and the unwrap's one-shot HMAC session)"
    );
    println!(
        "session {before:#x} lost at reset; recovered with {:#x}",
        s.session_handle()
    );
}

/// Firmware before this image locked the platform hierarchy (skiboot's trusted boot sets a
/// random platformAuth before it starts its payload; a platform may also disable it):
/// provisioning says so, as its one reason, and provisions nothing: no key, no parent, no
/// door index. Each case on a fresh TPM; the same provisioning succeeds on an untouched one.
#[test]
fn a_platform_hierarchy_locked_before_the_image_is_reported_and_nothing_is_provisioned() {
    use pefbox::fw::provision::PlatformLock;
    let platform = Object::permanent(rh::PLATFORM);
    for case in ["platformAuth set", "phEnable clear"] {
        let sw = Swtpm::start().expect("swtpm must be installed and start");
        let mut tpm = connect(&sw);
        match case {
            "platformAuth set" => tpm
                .hierarchy_change_auth(&platform, &mut [Auth::Password(b"")], b"skiboot's random")
                .unwrap(),
            _ => tpm
                .hierarchy_control(&platform, &mut [Auth::Password(b"")], rh::PLATFORM, false)
                .unwrap(),
        }
        let e = provision(&mut tpm).unwrap_err().error;
        println!("{case}: {e}");
        match (case, e) {
            ("platformAuth set", ProvisionError::PlatformLocked(PlatformLock::AuthSet(rc))) => {
                assert_eq!(ResponseCode(rc).base(), rc::RC_BAD_AUTH, "{rc:#x}")
            }
            ("phEnable clear", ProvisionError::PlatformLocked(PlatformLock::Disabled)) => {}
            (case, e) => panic!("{case}: {e:?}"),
        }
        assert!(e.to_string().contains("nothing provisioned"), "{e}");
        assert_eq!(persistent_handles(&mut tpm), Vec::<u32>::new(), "{case}");
        let code = expect_tpm_error(
            "NV_ReadPublic(door index)",
            tpm.nv_read_public(fw::NV_HANDLE).map(|_| ()),
        );
        assert_eq!(code.base(), rc::RC_HANDLE, "{case}: {code}");
        no_transients_or_sessions(&mut tpm);
    }
    // The control: an untouched TPM provisions.
    let sw = Swtpm::start().expect("swtpm must be installed and start");
    let mut tpm = connect(&sw);
    provision(&mut tpm).expect("an untouched TPM provisions");
}
