//! The portable TPM client (`pefbox::tpm`) against a real swtpm started by each test
//! on free loopback ports (`xtask::swtpm`).
//!
//! Covered: salted (RSA-2048 OAEP and ECC P-256 ECDH) and bound HMAC sessions with
//! AES-CFB parameter encryption both ways creating, loading and using an RSA-OAEP
//! key; policy sessions (CommandCode + AuthValue under PolicyOR, PolicyPCR) checked
//! against the TPM's own digests; ObjectChangeAuth; EvictControl there and back;
//! PCR_Extend/PCR_Read; GetCapability; response codes; the pinned-Name check; and a
//! bit-flip tamper test over every response that carries a response HMAC.

mod common;

use common::flows::*;

use common::tpm::{decrypt, handles_in, salt_key, unsalted_session};
use pefbox::tpm::consts::{attr, cap, cc, rh, sa, su};
use pefbox::tpm::crypto;
use pefbox::tpm::entropy::{EntropyError, EntropySource, FromRng, Mixer};
use pefbox::tpm::policy;
use pefbox::tpm::public::{PcrSelection, Public};
use pefbox::tpm::rc::{self, Subject};
use pefbox::tpm::{
    Auth, Error, KeyBlob, Object, SaltKey, Session, SessionKind, Template, Tpm, Transport,
    TransportError,
};
use rand::rngs::{OsRng, StdRng};
use rand::{RngCore, SeedableRng};
use xtask::swtpm::{Swtpm, SwtpmConn};

const NEW_KEY_AUTH: &[u8] = b"rotated-key-auth";
const PERSISTENT: u32 = 0x8100_0123;

fn os_entropy() -> FromRng<OsRng> {
    FromRng(OsRng)
}

fn start() -> (Swtpm, Tpm<Recorder<SwtpmConn>>) {
    let sw = Swtpm::start().expect("swtpm must be installed and start");
    let conn = sw.connect().expect("connect to swtpm");
    let mut tpm = Tpm::new(Recorder {
        inner: conn,
        log: Vec::new(),
    });
    tpm.seed_entropy(&mut os_entropy()).expect("seed");
    (sw, tpm)
}

/// PolicyCommandCode(`code`), PolicyAuthValue, then PolicyOR over `branches` on `ps`: the
/// branch of the key's policy for `code`.
fn satisfy_branch<T: Transport>(
    tpm: &mut Tpm<T>,
    ps: &mut Session,
    code: u32,
    branches: &[policy::PolicyDigest],
) -> Result<(), Error> {
    tpm.policy_command_code(ps, code)?;
    tpm.policy_auth_value(ps)?;
    tpm.policy_or(ps, branches)
}

/// Creates and loads, under `parent` (password `parent_auth`), an RSA-OAEP decryption key
/// with authValue [`KEY_AUTH`], authPolicy `policy` and the attributes `extra` on top of
/// [`decrypt_key_template`]'s.
fn load_decrypt_key<T: Transport>(
    tpm: &mut Tpm<T>,
    parent: &Object,
    parent_auth: &[u8],
    policy: &[u8],
    extra: u32,
) -> (KeyBlob, Object) {
    let blob = tpm
        .create(
            parent,
            &mut [Auth::Password(parent_auth)],
            &decrypt_key_template(policy, extra),
            KEY_AUTH,
        )
        .unwrap();
    let key = tpm
        .load(parent, &mut [Auth::Password(parent_auth)], &blob)
        .unwrap();
    (blob, key)
}

/// `TPM2_EvictControl` of `object` at [`PERSISTENT`] (there, or back if it is the persistent
/// one), the owner authorized through `s` with the empty owner authValue.
fn owner_evict<T: Transport>(
    tpm: &mut Tpm<T>,
    s: &mut Session,
    object: &Object,
) -> Result<Option<Object>, Error> {
    tpm.evict_control(&owner(), &mut [Auth::session(s, b"")], object, PERSISTENT)
}

#[test]
fn rsa_salted_bound_hmac_session_creates_loads_and_decrypts() {
    let (_sw, mut tpm) = start();
    salted_bound_session_flow(&mut tpm, false);
}

#[test]
fn ecc_salted_bound_hmac_session_creates_loads_and_decrypts() {
    let (_sw, mut tpm) = start();
    salted_bound_session_flow(&mut tpm, true);
}

#[test]
fn salting_to_a_key_whose_name_is_not_the_pinned_one_is_refused_before_any_use() {
    let (_sw, mut tpm) = start();
    let a = owner_primary(&mut tpm, &Template::rsa_storage(), b"").unwrap();
    let b = owner_primary(&mut tpm, &Template::ecc_storage(), b"").unwrap();
    let before = tpm.transport_mut().log.len();
    let r = tpm.start_auth_session(
        SaltKey::Rsa {
            handle: a.handle,
            pinned_name: b.name.as_bytes(),
        },
        None,
        SessionKind::Hmac,
        ALL_SESSION_ATTRS,
    );
    assert!(matches!(r, Err(Error::NameMismatch)), "{r:?}");
    let sent = &tpm.transport_mut().log[before..];
    assert_eq!(sent.len(), 1, "only ReadPublic was sent");
    assert_eq!(&sent[0].0[6..10], &cc::READ_PUBLIC.to_be_bytes());
    // The right Name but the wrong key type is refused too.
    let r = tpm.start_auth_session(
        SaltKey::Ecc {
            handle: a.handle,
            pinned_name: a.name.as_bytes(),
        },
        None,
        SessionKind::Hmac,
        0,
    );
    assert!(matches!(r, Err(Error::WrongKey)), "{r:?}");
}

fn branch(code: u32) -> policy::PolicyDigest {
    policy::auth_value(&policy::command_code(&policy::INITIAL, code))
}

#[test]
fn policy_or_session_decrypts_changes_auth_and_key_persists_and_evicts() {
    let (_sw, mut tpm) = start();
    let a = branch(cc::RSA_DECRYPT);
    let b = branch(cc::OBJECT_CHANGE_AUTH);
    let key_policy = policy::or(&[a, b]).unwrap();

    // The client's policy arithmetic equals the TPM's (trial session).
    let mut trial = unsalted_session(&mut tpm, SessionKind::Trial);
    tpm.policy_command_code(&mut trial, cc::RSA_DECRYPT)
        .unwrap();
    tpm.policy_auth_value(&mut trial).unwrap();
    assert_eq!(tpm.policy_get_digest(&mut trial).unwrap(), a);
    tpm.policy_or(&mut trial, &[a, b]).unwrap();
    assert_eq!(tpm.policy_get_digest(&mut trial).unwrap(), key_policy);
    tpm.policy_restart(&mut trial).unwrap();
    assert_eq!(tpm.policy_get_digest(&mut trial).unwrap(), policy::INITIAL);
    // PolicyPCR over PCR 16 with the value read now.
    let sel = PcrSelection::sha256(&[16]);
    let mut vals = [[0u8; 32]; 8];
    let (_, _, n) = tpm.pcr_read(&sel, &mut vals).unwrap();
    assert_eq!(n, 1);
    let pcr_digest = crypto::sha256(&[&vals[0]]);
    tpm.policy_pcr(&mut trial, &pcr_digest, &sel).unwrap();
    assert_eq!(
        tpm.policy_get_digest(&mut trial).unwrap(),
        policy::pcr(&policy::INITIAL, &sel, &pcr_digest).unwrap()
    );
    tpm.flush_session(&mut trial).unwrap();

    let primary = owner_primary(&mut tpm, &Template::ecc_storage(), PARENT_AUTH).unwrap();
    let pinned = primary.name.clone();
    let salt = salt_key(true, primary.handle, pinned.as_bytes());
    let (blob, key) = load_decrypt_key(
        &mut tpm,
        &primary,
        PARENT_AUTH,
        &key_policy,
        attr::ADMIN_WITH_POLICY,
    );
    assert_eq!(
        Public::parse(&blob.public).unwrap().auth_policy,
        &key_policy
    );
    let (msg, ct) = sealed_message::<48>(&blob.public);
    let mut out = [0u8; 512];

    // userWithAuth is clear: an HMAC session cannot use the key.
    let mut hs = tpm
        .start_auth_session(salt, None, SessionKind::Hmac, sa::CONTINUE_SESSION)
        .unwrap();
    let code = expect_tpm_error(decrypt(
        &mut tpm,
        &key,
        Auth::session(&mut hs, KEY_AUTH),
        &ct,
        &mut out,
    ));
    assert_eq!(code.0, rc::RC_AUTH_UNAVAILABLE, "{code}");
    tpm.flush_session(&mut hs).unwrap();

    // Branch A through a salted policy session, the response encrypted.
    let mut ps = tpm
        .start_auth_session(
            salt,
            None,
            SessionKind::Policy,
            sa::CONTINUE_SESSION | sa::ENCRYPT,
        )
        .unwrap();
    let run_a = |tpm: &mut Tpm<Recorder<SwtpmConn>>,
                 ps: &mut Session,
                 key: &Object,
                 auth: &[u8],
                 out: &mut [u8]| {
        satisfy_branch(tpm, ps, cc::RSA_DECRYPT, &[a, b])?;
        decrypt(tpm, key, Auth::session(ps, auth), &ct, out)
    };
    let before = tpm.transport_mut().log.len();
    let n = run_a(&mut tpm, &mut ps, &key, KEY_AUTH, &mut out).unwrap();
    assert_eq!(&out[..n], &msg);
    assert!(tpm.transport_mut().log[before..]
        .iter()
        .all(|(_, r)| !contains(r, &msg)));
    // The wrong authValue fails the session HMAC at the TPM.
    let code = expect_tpm_error(run_a(&mut tpm, &mut ps, &key, b"not-the-auth", &mut out));
    assert_eq!(code.base(), rc::RC_BAD_AUTH, "{code}");
    tpm.policy_restart(&mut ps).unwrap();
    // Branch A's policy does not authorize ObjectChangeAuth.
    satisfy_branch(&mut tpm, &mut ps, cc::RSA_DECRYPT, &[a, b]).unwrap();
    let code = expect_tpm_error(tpm.object_change_auth(
        &key,
        &primary,
        &mut [Auth::session(&mut ps, KEY_AUTH)],
        NEW_KEY_AUTH,
    ));
    assert_eq!(code.base(), rc::RC_POLICY_CC, "{code}");
    tpm.policy_restart(&mut ps).unwrap();

    // Branch B: ObjectChangeAuth, the new authValue sent encrypted.
    ps.set_attributes(ALL_SESSION_ATTRS);
    satisfy_branch(&mut tpm, &mut ps, cc::OBJECT_CHANGE_AUTH, &[a, b]).unwrap();
    let before = tpm.transport_mut().log.len();
    let new_private = tpm
        .object_change_auth(
            &key,
            &primary,
            &mut [Auth::session(&mut ps, KEY_AUTH)],
            NEW_KEY_AUTH,
        )
        .unwrap();
    assert!(!contains(&tpm.transport_mut().log[before].0, NEW_KEY_AUTH));
    ps.set_attributes(sa::CONTINUE_SESSION | sa::ENCRYPT);
    tpm.flush_context(key.handle).unwrap();
    let rotated = KeyBlob {
        private: new_private,
        public: blob.public.clone(),
    };
    let key2 = tpm
        .load(&primary, &mut [Auth::Password(PARENT_AUTH)], &rotated)
        .unwrap();
    assert_eq!(key2.name, key.name, "same public area, same Name");
    let n = run_a(&mut tpm, &mut ps, &key2, NEW_KEY_AUTH, &mut out).unwrap();
    assert_eq!(&out[..n], &msg);
    let code = expect_tpm_error(run_a(&mut tpm, &mut ps, &key2, KEY_AUTH, &mut out));
    assert_eq!(
        code.base(),
        rc::RC_BAD_AUTH,
        "the old authValue no longer works: {code}"
    );
    tpm.policy_restart(&mut ps).unwrap();

    // EvictControl to a persistent handle (owner authorized through an HMAC session
    // salted to the pinned key), use it there, and evict it again.
    let mut hs = tpm
        .start_auth_session(salt, None, SessionKind::Hmac, sa::CONTINUE_SESSION)
        .unwrap();
    let persisted = owner_evict(&mut tpm, &mut hs, &key2)
        .unwrap()
        .expect("persisted");
    assert_eq!(persisted.handle, PERSISTENT);
    assert!(handles_in(&mut tpm, rh::PERSISTENT_FIRST).contains(&PERSISTENT));
    tpm.flush_context(key2.handle).unwrap();
    let (read_back, _) = tpm.read_public(PERSISTENT).unwrap();
    assert_eq!(read_back.name, key.name);
    let n = run_a(&mut tpm, &mut ps, &persisted, NEW_KEY_AUTH, &mut out).unwrap();
    assert_eq!(&out[..n], &msg, "the persistent key decrypts");
    let gone = owner_evict(&mut tpm, &mut hs, &persisted).unwrap();
    assert!(gone.is_none());
    assert!(!handles_in(&mut tpm, rh::PERSISTENT_FIRST).contains(&PERSISTENT));

    tpm.flush_session(&mut hs).unwrap();
    tpm.flush_session(&mut ps).unwrap();
    tpm.flush_context(primary.handle).unwrap();
    assert!(handles_in(&mut tpm, rh::TRANSIENT_FIRST).is_empty());
    assert!(handles_in(&mut tpm, rh::HMAC_SESSION_FIRST).is_empty());
}

#[test]
fn pcr_extend_through_an_hmac_session_and_read_back() {
    let (_sw, mut tpm) = start();
    let sel = PcrSelection::sha256(&[16]);
    let mut vals = [[0u8; 32]; 8];
    let (counter0, read, n) = tpm.pcr_read(&sel, &mut vals).unwrap();
    assert_eq!((n, read), (1, Some(sel)));
    let old = vals[0];
    let mut s = unsalted_session(&mut tpm, SessionKind::Hmac);
    let mut d = [0u8; 32];
    OsRng.fill_bytes(&mut d);
    tpm.pcr_extend(16, &mut [Auth::session(&mut s, b"")], &d)
        .unwrap();
    let (counter1, _, n) = tpm.pcr_read(&sel, &mut vals).unwrap();
    assert_eq!(n, 1);
    assert_eq!(vals[0], crypto::sha256(&[&old, &d]));
    assert!(counter1 >= counter0);
    tpm.flush_session(&mut s).unwrap();
}

#[test]
fn capabilities_random_and_response_codes() {
    let (_sw, mut tpm) = start();
    let mut props = [(0u32, 0u32); 4];
    let (n, _) = tpm
        .get_capability_properties(cap::PT_FAMILY_INDICATOR, &mut props)
        .unwrap();
    assert!(n >= 1);
    assert_eq!(
        props[0],
        (cap::PT_FAMILY_INDICATOR, u32::from_be_bytes(*b"2.0\0"))
    );
    let mut a = [0u8; 32];
    let mut b = [0u8; 32];
    assert_eq!(tpm.get_random(&mut a).unwrap(), 32);
    assert_eq!(tpm.get_random(&mut b).unwrap(), 32);
    assert_ne!(a, b);
    // swtpm ran TPM2_Startup already (startup-clear): a second one is TPM_RC_INITIALIZE.
    let code = expect_tpm_error(tpm.startup(su::CLEAR));
    assert_eq!(code.0, rc::RC_INITIALIZE);
    assert_eq!(code.to_string(), "TPM_RC_INITIALIZE [0x100]");
    // A handle that does not exist: format-1 code naming handle 1.
    let code = expect_tpm_error(tpm.read_public(0x80ff_ff00));
    // (libtpms answers TPM_RC_VALUE for an unloaded transient handle)
    assert!(
        [rc::RC_HANDLE, rc::RC_VALUE].contains(&code.base()),
        "{code}"
    );
    assert_eq!(code.subject(), Subject::Handle(1), "{code}");
    assert!(code.to_string().contains("(handle 1)"));
}

#[test]
fn swtpm_restart_keeps_persistent_state_and_drops_transient() {
    let (mut sw, mut tpm) = start();
    let primary = owner_primary(&mut tpm, &Template::ecc_storage(), b"").unwrap();
    tpm.evict_control(&owner(), &mut [Auth::Password(b"")], &primary, PERSISTENT)
        .unwrap();
    drop(tpm);
    sw.restart().unwrap();
    let mut tpm = Tpm::new(sw.connect().unwrap());
    tpm.seed_entropy(&mut os_entropy()).unwrap();
    assert!(handles_in(&mut tpm, rh::TRANSIENT_FIRST).is_empty());
    let (p, _) = tpm.read_public(PERSISTENT).unwrap();
    assert_eq!(p.name, primary.name);
    sw.stop();
    let dead = tpm.get_random(&mut [0u8; 8]);
    assert!(matches!(dead, Err(Error::Transport(_))), "{dead:?}");
}

// ------------------------------------------------------------------------------------
// Tamper test
// ------------------------------------------------------------------------------------

/// A fixed "platform" source so a recorded flow can be replayed exactly; test only.
struct FakeFixedEntropy;
impl EntropySource for FakeFixedEntropy {
    fn fill(&mut self, out: &mut [u8]) -> Result<(), EntropyError> {
        for (i, b) in out.iter_mut().enumerate() {
            *b = i as u8 ^ 0x5a;
        }
        Ok(())
    }
}

/// Replays recorded responses, refusing any command that differs from the recorded
/// one, with optionally one bit of one response flipped.
struct Replay<'a> {
    log: &'a [(Vec<u8>, Vec<u8>)],
    next: usize,
    flip: Option<(usize, usize)>,
    diverged: bool,
}

impl Transport for Replay<'_> {
    fn transact(&mut self, command: &[u8], response: &mut [u8]) -> Result<usize, TransportError> {
        let Some((c, r)) = self.log.get(self.next) else {
            self.diverged = true;
            return Err(TransportError::Io);
        };
        if c.as_slice() != command {
            self.diverged = true;
            return Err(TransportError::Io);
        }
        response[..r.len()].copy_from_slice(r);
        if let Some((i, bit)) = self.flip {
            if i == self.next {
                response[bit / 8] ^= 0x80 >> (bit % 8);
            }
        }
        self.next += 1;
        Ok(r.len())
    }
}

/// Everything the tamper test exercises: RSA-salted bound HMAC session with
/// encryption both ways (Create, Load, RSA_Decrypt), an ECC-salted policy session
/// (PolicyOR branch A: RSA_Decrypt, branch B: ObjectChangeAuth), and EvictControl
/// there and back through an HMAC session.
fn tamper_flow<T: Transport>(tpm: &mut Tpm<T>) -> Result<(), Error> {
    tpm.seed_entropy(&mut FakeFixedEntropy)?;
    let mut host_rng = StdRng::seed_from_u64(7);
    let rsa_primary = owner_primary(tpm, &Template::rsa_storage(), PARENT_AUTH)?;
    let rsa_name = rsa_primary.name.clone();
    let mut s = tpm.start_auth_session(
        salt_key(false, rsa_primary.handle, rsa_name.as_bytes()),
        Some((&rsa_primary, PARENT_AUTH)),
        SessionKind::Hmac,
        ALL_SESSION_ATTRS,
    )?;
    let a = branch(cc::RSA_DECRYPT);
    let b = branch(cc::OBJECT_CHANGE_AUTH);
    let key_policy = policy::or(&[a, b]).expect("two branches");
    let blob = tpm.create(
        &rsa_primary,
        &mut [Auth::session(&mut s, PARENT_AUTH)],
        &decrypt_key_template(&key_policy, attr::USER_WITH_AUTH | attr::ADMIN_WITH_POLICY),
        KEY_AUTH,
    )?;
    let key = tpm.load(
        &rsa_primary,
        &mut [Auth::session(&mut s, PARENT_AUTH)],
        &blob,
    )?;
    let msg = [0x42u8; 32];
    let ct = oaep_encrypt(&blob.public, &msg, &mut host_rng);
    let mut out = [0u8; 512];
    let n = decrypt(tpm, &key, Auth::session(&mut s, KEY_AUTH), &ct, &mut out)?;
    assert_eq!(
        &out[..n],
        &msg,
        "a tampered response must never yield a wrong value"
    );

    let ecc_primary = owner_primary(tpm, &Template::ecc_storage(), b"")?;
    let ecc_name = ecc_primary.name.clone();
    let mut ps = tpm.start_auth_session(
        salt_key(true, ecc_primary.handle, ecc_name.as_bytes()),
        None,
        SessionKind::Policy,
        sa::CONTINUE_SESSION | sa::ENCRYPT,
    )?;
    // The salt key is not needed once the session exists (swtpm has 3 object slots).
    tpm.flush_context(ecc_primary.handle)?;
    satisfy_branch(tpm, &mut ps, cc::RSA_DECRYPT, &[a, b])?;
    let n = decrypt(tpm, &key, Auth::session(&mut ps, KEY_AUTH), &ct, &mut out)?;
    assert_eq!(
        &out[..n],
        &msg,
        "a tampered response must never yield a wrong value"
    );
    ps.set_attributes(ALL_SESSION_ATTRS);
    satisfy_branch(tpm, &mut ps, cc::OBJECT_CHANGE_AUTH, &[a, b])?;
    tpm.object_change_auth(
        &key,
        &rsa_primary,
        &mut [Auth::session(&mut ps, KEY_AUTH)],
        NEW_KEY_AUTH,
    )?;
    // EvictControl has no encryptable parameter: the session only authorizes it.
    s.set_attributes(sa::CONTINUE_SESSION);
    let persisted = owner_evict(tpm, &mut s, &key)?.ok_or(Error::BadArgument)?;
    owner_evict(tpm, &mut s, &persisted)?;
    tpm.flush_session(&mut s)?;
    tpm.flush_session(&mut ps)?;
    for h in [key.handle, rsa_primary.handle] {
        tpm.flush_context(h)?;
    }
    Ok(())
}

/// For a recorded (command, response): the response's bit range that is covered by
/// a response HMAC (None if the response carries none), excluding the response
/// handle, which TPM 2.0 leaves out of rpHash.
fn authenticated_bits(command: &[u8], response: &[u8]) -> Option<(usize, std::ops::Range<usize>)> {
    if response[0..2] != [0x80, 0x02] {
        return None;
    }
    let code = pefbox::tpm::wire::code(command).unwrap();
    let handles = match code {
        cc::CREATE_PRIMARY | cc::LOAD | cc::START_AUTH_SESSION => 1,
        _ => 0,
    };
    let mut at = 10 + 4 * handles;
    let psize = u32::from_be_bytes(response[at..at + 4].try_into().unwrap()) as usize;
    at += 4 + psize;
    let mut any_hmac = false;
    while at < response.len() {
        let nonce = u16::from_be_bytes([response[at], response[at + 1]]) as usize;
        at += 2 + nonce + 1;
        let mac = u16::from_be_bytes([response[at], response[at + 1]]) as usize;
        at += 2 + mac;
        any_hmac |= mac > 0;
    }
    any_hmac.then_some((handles * 4, 0..response.len() * 8))
}

#[test]
fn tamper_every_bit_of_every_authenticated_response_is_rejected() {
    let sw = Swtpm::start().unwrap();
    let fixed_mixer = || Mixer::new(&mut FakeFixedEntropy, b"tamper-test").unwrap();
    let mut tpm = Tpm::with_mixer(
        Recorder {
            inner: sw.connect().unwrap(),
            log: Vec::new(),
        },
        fixed_mixer(),
    );
    tamper_flow(&mut tpm).expect("recorded flow against swtpm");
    let log = tpm.into_transport().log;

    // Control: the untouched recording replays to success, so the replay is exact.
    let mut replay = Replay {
        log: &log,
        next: 0,
        flip: None,
        diverged: false,
    };
    let mut tpm = Tpm::with_mixer(&mut replay, fixed_mixer());
    tamper_flow(&mut tpm).expect("unmodified replay succeeds");
    assert_eq!(replay.next, log.len());

    let mut cases = 0usize;
    let mut rejected = 0usize;
    let mut covered = Vec::new();
    let mut failures = Vec::new();
    for (i, (c, r)) in log.iter().enumerate() {
        let Some((handle_bytes, bits)) = authenticated_bits(c, r) else {
            continue;
        };
        covered.push(pefbox::tpm::wire::code(c).unwrap());
        for bit in bits {
            // Response handle bits (bytes 10..10+4*handles) are not covered by rpHash.
            if bit / 8 >= 10 && bit / 8 < 10 + handle_bytes {
                continue;
            }
            cases += 1;
            let mut replay = Replay {
                log: &log,
                next: 0,
                flip: Some((i, bit)),
                diverged: false,
            };
            let mut tpm = Tpm::with_mixer(&mut replay, fixed_mixer());
            let result = tamper_flow(&mut tpm);
            if result.is_err() && replay.next == i + 1 && !replay.diverged {
                rejected += 1;
            } else if failures.len() < 10 {
                failures.push((i, bit, format!("{result:?}"), replay.next));
            }
        }
    }
    println!(
        "tamper: {cases} cases, {rejected} rejected (every bit of the {} responses with a \
         response HMAC except response-handle bits; command codes (hex): {:x?})",
        covered.len(),
        covered
    );
    assert!(failures.is_empty(), "accepted tampering: {failures:?}");
    assert_eq!(rejected, cases);
    assert!(covered.len() >= 7, "{covered:x?}");
}

#[test]
fn separate_encrypt_session_beside_an_authorizing_session() {
    // Slot 1 authorizes (unsalted HMAC session with the key's authValue), slot 2 is a
    // salted session that only encrypts both ways: the first session's HMAC then
    // covers slot 2's nonceTPM (decrypt/encrypt nonces), which the TPM checks.
    let (_sw, mut tpm) = start();
    let primary = owner_primary(&mut tpm, &Template::rsa_storage(), b"").unwrap();
    let (blob, key) = load_decrypt_key(&mut tpm, &primary, b"", &[], attr::USER_WITH_AUTH);
    let mut auth = unsalted_session(&mut tpm, SessionKind::Hmac);
    let name = primary.name.clone();
    let mut enc = tpm
        .start_auth_session(
            salt_key(false, primary.handle, name.as_bytes()),
            None,
            SessionKind::Hmac,
            ALL_SESSION_ATTRS,
        )
        .unwrap();
    let (msg, ct) = sealed_message::<32>(&blob.public);
    let mut out = [0u8; 512];
    for _ in 0..3 {
        let before = tpm.transport_mut().log.len();
        let n = tpm
            .rsa_decrypt(
                &key,
                &mut [
                    Auth::session(&mut auth, KEY_AUTH),
                    Auth::encrypt_only(&mut enc),
                ],
                &ct,
                &[],
                &mut out,
            )
            .unwrap();
        assert_eq!(&out[..n], &msg);
        let (cmd, rsp) = &tpm.transport_mut().log[before];
        assert!(
            !contains(cmd, &ct[..32]),
            "ciphertext parameter sent encrypted"
        );
        assert!(!contains(rsp, &msg), "plaintext returned encrypted");
    }
    tpm.flush_session(&mut auth).unwrap();
    tpm.flush_session(&mut enc).unwrap();
    tpm.flush_context(key.handle).unwrap();
    tpm.flush_context(primary.handle).unwrap();
}

#[test]
fn ultravisor_unwrap_path_timing() {
    // The path the ultravisor takes per unwrap: ReadPublic + salted policy session
    // to the pinned key, PolicyCommandCode + PolicyAuthValue + PolicyOR,
    // RSA_Decrypt with the response encrypted, session closed by continueSession=0.
    let (_sw, mut tpm) = start();
    let a = branch(cc::RSA_DECRYPT);
    let b = branch(cc::OBJECT_CHANGE_AUTH);
    let key_policy = policy::or(&[a, b]).unwrap();
    for ecc in [false, true] {
        let primary = owner_primary(&mut tpm, &storage_template(ecc), b"").unwrap();
        let (blob, key) = load_decrypt_key(
            &mut tpm,
            &primary,
            b"",
            &key_policy,
            attr::ADMIN_WITH_POLICY,
        );
        let pinned = primary.name.clone();
        let (msg, ct) = sealed_message::<32>(&blob.public);
        let mut times = Vec::new();
        for _ in 0..15 {
            let t0 = std::time::Instant::now();
            let salt = salt_key(ecc, primary.handle, pinned.as_bytes());
            let mut ps = tpm
                .start_auth_session(salt, None, SessionKind::Policy, sa::ENCRYPT)
                .unwrap();
            satisfy_branch(&mut tpm, &mut ps, cc::RSA_DECRYPT, &[a, b]).unwrap();
            let mut out = [0u8; 512];
            let n = decrypt(
                &mut tpm,
                &key,
                Auth::session(&mut ps, KEY_AUTH),
                &ct,
                &mut out,
            )
            .unwrap();
            times.push(t0.elapsed());
            assert_eq!(&out[..n], &msg);
            assert!(!ps.is_open());
        }
        times.sort();
        println!(
            "unwrap path ({} salt): median {:?} over {} runs (6 commands incl. ReadPublic)",
            if ecc { "ECC P-256" } else { "RSA-2048" },
            times[times.len() / 2],
            times.len()
        );
        assert!(handles_in(&mut tpm, rh::POLICY_SESSION_FIRST).is_empty());
        tpm.flush_context(key.handle).unwrap();
        tpm.flush_context(primary.handle).unwrap();
    }
}
