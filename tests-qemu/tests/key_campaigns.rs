//! Attack campaigns on the wrapping key against a real swtpm (host level, no QEMU):
//! provisioning (`pefbox::fw::provision`) runs over a fault-injecting transport, then
//! "host software" (a fresh client on the same powered TPM) tries everything it can.
//!
//! - `fail_closed_campaign`: for an entropy failure and for TPM_RC_TESTING answers at
//!   every provisioning command in turn (more than the client's retry bound), plus a
//!   foreign object at each handle and a missing parent: the host tries the door, every
//!   authValue and private blob of earlier boots, EvictControl, HierarchyChangeAuth and
//!   PCR_Allocate on the platform. Prints `fail-closed: <N> faults, <M> host attempts,
//!   <S> succeeded`; S must be 0.
//! - `power_cut_campaign`: a blob sealed, then for each command k of a provisioning boot
//!   the power is cut right after command k (swtpm SIGKILLed, no Shutdown), then a
//!   normal boot: the blob must open. Prints `power-cut: <N> cut points, <M> blobs still
//!   open`.
//! - `replay_campaign`: boot 1's traffic recorded, three more boots, then every authValue
//!   and private blob of boot 1 tried: prints `replay: <N> values from boot 1 tried, <U>
//!   uses of the key`; U must be 0.
//!
//! Each fault runs on a copy of one provisioned swtpm state directory, so no attempt's
//! effect leaks into the next fault.

mod common;

use pefbox::fw::provision::provision_boot;
use pefbox::fw::{self, Provisioned, PARENT_HANDLE, WRAPPING_HANDLE};
use pefbox::tpm::client::Blob;
use pefbox::tpm::client::CommandSpec;
use pefbox::tpm::consts::{cc, rh, sa};
use pefbox::tpm::entropy::FromRng;
use pefbox::tpm::wire;
use pefbox::tpm::TransportError;
use pefbox::tpm::{Auth, KeyBlob, Object, SaltKey, SessionKind, Tpm, Transport};
use rand::rngs::OsRng;
use rand::RngCore;
use rsa::{BigUint, Oaep, RsaPublicKey};
use std::path::PathBuf;
use xtask::swtpm::{Swtpm, SwtpmConn};

type Log = Vec<(Vec<u8>, Vec<u8>)>;

/// TPM_RC_TESTING.
const RC_TESTING: u32 = 0x90A;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    /// Answer the k-th distinct command (0-based) with TPM_RC_TESTING, `n` times
    /// (each re-send of the same bytes counts), without forwarding it.
    Testing {
        k: usize,
        n: usize,
    },
    /// Forward commands 0..k, then the link is dead (the power is cut right after
    /// command k-1 was answered; the test SIGKILLs swtpm).
    CutAfter(usize),
}

struct Faulty<T> {
    inner: T,
    fault: Fault,
    distinct: usize,
    last: Vec<u8>,
    testing_left: usize,
    last_warned: bool,
    log: Log,
}

impl<T> Faulty<T> {
    fn new(inner: T, fault: Fault) -> Self {
        let testing_left = match fault {
            Fault::Testing { n, .. } => n,
            _ => 0,
        };
        Faulty {
            inner,
            fault,
            distinct: 0,
            last: Vec::new(),
            testing_left,
            last_warned: false,
            log: Vec::new(),
        }
    }
}

impl<T: Transport> Transport for Faulty<T> {
    fn transact(&mut self, command: &[u8], response: &mut [u8]) -> Result<usize, TransportError> {
        // A re-send (the same bytes right after a warning answer) keeps its number.
        let resend = self.last_warned && command == self.last.as_slice();
        if !resend {
            self.distinct += 1;
            self.last = command.to_vec();
        }
        self.last_warned = false;
        let index = self.distinct - 1;
        match self.fault {
            Fault::CutAfter(k) if index >= k => return Err(TransportError::Io),
            Fault::Testing { k, .. } if index == k && self.testing_left > 0 => {
                self.testing_left -= 1;
                self.last_warned = true;
                let mut r = [0x80u8, 0x01, 0, 0, 0, 10, 0, 0, 0, 0];
                r[6..].copy_from_slice(&RC_TESTING.to_be_bytes());
                response[..10].copy_from_slice(&r);
                self.log.push((command.to_vec(), r.to_vec()));
                return Ok(10);
            }
            _ => {}
        }
        let n = self.inner.transact(command, response)?;
        self.last_warned = matches!(
            response.get(6..10),
            Some([0, 0, 0x09, 0x22] | [0, 0, 0x09, 0x08] | [0, 0, 0x09, 0x0A])
        );
        self.log.push((command.to_vec(), response[..n].to_vec()));
        Ok(n)
    }
}

fn client(sw: &Swtpm, fault: Fault) -> Tpm<Faulty<SwtpmConn>> {
    Tpm::new(Faulty::new(sw.connect().expect("connect"), fault))
}

fn seeded(sw: &Swtpm) -> Tpm<SwtpmConn> {
    let mut t = Tpm::new(sw.connect().expect("connect"));
    t.seed_entropy(&mut FromRng(OsRng)).expect("seed");
    t
}

/// A platform entropy source that fails (as `darn` answering all ones would).
struct BrokenEntropy;

impl pefbox::tpm::EntropySource for BrokenEntropy {
    fn fill(&mut self, _out: &mut [u8]) -> Result<(), pefbox::tpm::entropy::EntropyError> {
        Err(pefbox::tpm::entropy::EntropyError)
    }
}

/// One boot's provisioning as the image runs it (`provision_boot`: seeding, then
/// provisioning, failing closed on either): returns the outcome and the distinct-command
/// count and log.
fn boot(
    sw: &Swtpm,
    fault: Fault,
    entropy_fails: bool,
) -> (Result<Provisioned, String>, usize, Log) {
    let mut tpm = client(sw, fault);
    let r = if entropy_fails {
        provision_boot(&mut tpm, &mut BrokenEntropy)
    } else {
        provision_boot(&mut tpm, &mut FromRng(OsRng))
    };
    let r = r.map_err(|e| format!("{e}"));
    let t = tpm.into_transport();
    (r, t.distinct, t.log)
}

/// Commands of `log` that wrote the TPM's NV and succeeded (EvictControl, NV_DefineSpace,
/// NV_UndefineSpace, NV_ChangeAuth, NV_Write).
fn nv_writes(log: &Log) -> usize {
    log.iter()
        .filter(|(c, r)| {
            let code = wire::code(c).unwrap_or(0);
            pefbox::tpm::transport::NV_WRITING_COMMANDS.contains(&code)
                && wire::code(r) == Some(wire::RC_SUCCESS)
        })
        .count()
}

/// What platform software (or a previous owner) left in the TPM before the firmware runs:
/// applied after the TPM reset, with the empty platformAuth of that moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setup {
    None,
    /// An ECC storage primary at 0x81800000 instead of the parent.
    ForeignParent,
    /// An RSA storage primary at 0x81800001 instead of the wrapping key.
    ForeignKey,
    /// A wrapping key of the previous layout (PolicyOR) at 0x81800001.
    OldShapeKey,
    /// Another NV index (AUTHWRITE, empty policy) at 0x01400001.
    ForeignNv,
    /// The parent evicted (the key and the index remain).
    MissingParent,
    /// PCR_Allocate dropped the SHA-256 bank (SHA-1 only), effective at the TPM reset that
    /// follows: reading PCR 11 fails.
    NoSha256Bank,
}

fn platform_pw() -> [Auth<'static>; 1] {
    [Auth::Password(b"")]
}

fn evict<T: Transport>(t: &mut Tpm<T>, handle: u32) {
    let (o, _) = t.read_public(handle).unwrap();
    t.evict_control(
        &Object::permanent(rh::PLATFORM),
        &mut platform_pw(),
        &o,
        handle,
    )
    .unwrap();
}

fn persist_primary<T: Transport>(
    t: &mut Tpm<T>,
    template: &pefbox::tpm::Template<'_>,
    handle: u32,
) {
    let platform = Object::permanent(rh::PLATFORM);
    let (o, _) = t
        .create_primary(&platform, &mut platform_pw(), template, b"")
        .unwrap();
    t.evict_control(&platform, &mut platform_pw(), &o, handle)
        .unwrap();
    t.flush_context(o.handle).unwrap();
}

fn apply(sw: &Swtpm, setup: Setup) {
    if setup == Setup::None {
        return;
    }
    let mut t = seeded(sw);
    let platform = Object::permanent(rh::PLATFORM);
    match setup {
        Setup::None => {}
        Setup::ForeignParent => {
            evict(&mut t, PARENT_HANDLE);
            persist_primary(&mut t, &pefbox::tpm::Template::ecc_storage(), PARENT_HANDLE);
        }
        Setup::ForeignKey => {
            evict(&mut t, WRAPPING_HANDLE);
            persist_primary(
                &mut t,
                &pefbox::tpm::Template::rsa_storage(),
                WRAPPING_HANDLE,
            );
        }
        Setup::OldShapeKey => {
            evict(&mut t, WRAPPING_HANDLE);
            let (parent, _) = t.read_public(PARENT_HANDLE).unwrap();
            let legacy = fw::legacy_wrapping_policy();
            let template = pefbox::tpm::Template::rsa_oaep(fw::WRAPPING_ATTRIBUTES, &legacy);
            let blob = t
                .create(&parent, &mut platform_pw(), &template, b"")
                .unwrap();
            let o = t.load(&parent, &mut platform_pw(), &blob).unwrap();
            t.evict_control(&platform, &mut platform_pw(), &o, WRAPPING_HANDLE)
                .unwrap();
            t.flush_context(o.handle).unwrap();
        }
        Setup::ForeignNv => {
            let (nv, _) = t.nv_read_public(fw::NV_HANDLE).unwrap();
            let spec = CommandSpec {
                cc: cc::NV_UNDEFINE_SPACE,
                auth_handles: 1,
                response_handles: 0,
                encrypt_command: false,
                encrypt_response: false,
            };
            t.execute(&spec, &[&platform, &nv], &mut platform_pw(), |_| Ok(()))
                .unwrap();
            let other = pefbox::tpm::public::NvPublic {
                index: fw::NV_HANDLE,
                attributes: pefbox::tpm::consts::nv::AUTHWRITE
                    | pefbox::tpm::consts::nv::AUTHREAD
                    | pefbox::tpm::consts::nv::PLATFORMCREATE,
                auth_policy: &[],
                data_size: 1,
            };
            t.nv_define_space(&platform, &mut platform_pw(), b"", &other)
                .unwrap();
        }
        Setup::MissingParent => evict(&mut t, PARENT_HANDLE),
        Setup::NoSha256Bank => {
            assert!(
                common::key::pcr_allocate(&mut t).unwrap(),
                "PCR_Allocate(SHA-1 only)"
            );
        }
    }
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "pefbox-campaign-{}-{tag}-{}",
        std::process::id(),
        OsRng.next_u32()
    ));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn modulus_key(p: &Provisioned) -> RsaPublicKey {
    RsaPublicKey::new(
        BigUint::from_bytes_be(p.wrapping_modulus()),
        BigUint::from(65537u32),
    )
    .unwrap()
}

/// A lockbox (OAEP-SHA256) sealed to the wrapping key, and its plaintext.
fn seal(p: &Provisioned) -> ([u8; 256], [u8; 32]) {
    let mut k = [0u8; 32];
    OsRng.fill_bytes(&mut k);
    let ct = modulus_key(p)
        .encrypt(&mut OsRng, Oaep::new::<sha2::Sha256>(), &k)
        .unwrap();
    (ct.try_into().unwrap(), k)
}

/// Every TPM2B_PRIVATE that a Create or ObjectChangeAuth response of `log` returned.
fn recorded_privates(log: &Log) -> Vec<Blob> {
    let mut out = Vec::new();
    for (c, r) in log {
        let code = wire::code(c).unwrap_or(0);
        if (code == cc::CREATE || code == cc::OBJECT_CHANGE_AUTH)
            && wire::code(r) == Some(wire::RC_SUCCESS)
            && r.len() > 16
        {
            let n = u16::from_be_bytes([r[14], r[15]]) as usize;
            if let Some(p) = r.get(16..16 + n) {
                out.push(Blob::from_slice(p).unwrap());
            }
        }
    }
    out
}

/// What the host knows from earlier boots: their secrets (as if recorded or leaked:
/// the strongest assumption) and their recorded traffic.
struct Earlier {
    secrets: Vec<Secret>,
    privates: Vec<Blob>,
    lockbox: [u8; 256],
    plain: [u8; 32],
}

/// One recorded authorization value of an earlier boot.
type Secret = Vec<u8>;

/// A host attempt's outcome: what, and whether it got through.
struct Try {
    what: String,
    succeeded: bool,
}

mod design {
    //! The design-specific host attempts (how "use the key" and "open the door" look):
    //! the door index's authValue authorizes the key through PolicySecret; the door is
    //! NV_ChangeAuth under PCR 11 = 0.
    use super::*;

    /// PolicyCommandCode(RSA_Decrypt) + PolicySecret(door index, `value`) then
    /// RSA_Decrypt of the lockbox with `key`: true if the plaintext came out.
    pub fn decrypt_with_secret<T: Transport>(
        host: &mut Tpm<T>,
        key: &Object,
        value: &[u8],
        e: &Earlier,
    ) -> bool {
        let Ok((nv, _)) = host.nv_read_public(fw::NV_HANDLE) else {
            return false;
        };
        let Ok(mut s) = host.start_auth_session(
            SaltKey::None,
            None,
            SessionKind::Policy,
            sa::CONTINUE_SESSION,
        ) else {
            return false;
        };
        let Ok(mut h) =
            host.start_auth_session(SaltKey::None, None, SessionKind::Hmac, sa::CONTINUE_SESSION)
        else {
            let _ = host.flush_session(&mut s);
            return false;
        };
        let mut out = [0u8; 256];
        let ok = host.policy_command_code(&mut s, cc::RSA_DECRYPT).is_ok()
            && host
                .policy_secret(&nv, &mut s, &mut [Auth::session(&mut h, value)])
                .is_ok()
            && matches!(
                host.rsa_decrypt(key, &mut [Auth::session(&mut s, &[])], &e.lockbox, &[], &mut out),
                Ok(32) if out[..32] == e.plain
            );
        let _ = host.flush_session(&mut s);
        let _ = host.flush_session(&mut h);
        ok
    }

    /// Through the firmware's door (NV_ChangeAuth under PCR 11 = 0): set the host's own
    /// door authValue, then use the key with it.
    pub fn through_the_door<T: Transport>(host: &mut Tpm<T>, e: &Earlier) -> bool {
        let Ok((nv, _)) = host.nv_read_public(fw::NV_HANDLE) else {
            return false;
        };
        let Ok(mut s) = host.start_auth_session(SaltKey::None, None, SessionKind::Policy, 0) else {
            return false;
        };
        let changed = host.policy_command_code(&mut s, cc::NV_CHANGE_AUTH).is_ok()
            && host
                .policy_pcr(&mut s, &fw::door_open_pcr_digest(), &fw::door_selection())
                .is_ok()
            && host
                .nv_change_auth(&nv, &mut [Auth::session(&mut s, &[])], b"host")
                .is_ok();
        let _ = host.flush_session(&mut s);
        if !changed {
            return false;
        }
        let Ok((key, _)) = host.read_public(WRAPPING_HANDLE) else {
            return false;
        };
        decrypt_with_secret(host, &key, b"host", e)
    }

    /// An earlier boot's door authValue on the persistent key.
    pub fn with_old_value<T: Transport>(host: &mut Tpm<T>, value: &[u8], e: &Earlier) -> bool {
        let Ok((key, _)) = host.read_public(WRAPPING_HANDLE) else {
            return false;
        };
        decrypt_with_secret(host, &key, value, e)
    }

    /// A recorded private blob, loaded under the parent, used with an earlier value.
    pub fn with_old_blob<T: Transport>(
        host: &mut Tpm<T>,
        private: &Blob,
        value: &[u8],
        e: &Earlier,
    ) -> bool {
        let Ok((_, public)) = host.read_public(WRAPPING_HANDLE) else {
            return false;
        };
        let Ok((parent, _)) = host.read_public(PARENT_HANDLE) else {
            return false;
        };
        let blob = KeyBlob {
            private: private.clone(),
            public,
        };
        let Ok(t) = host.load(&parent, &mut [Auth::Password(b"")], &blob) else {
            return false;
        };
        let ok = decrypt_with_secret(host, &t, value, e);
        let _ = host.flush_context(t.handle);
        ok
    }

    /// The recorded values of a successful boot.
    pub fn secret_of(p: &Provisioned) -> Secret {
        p.secrets.nv_auth.to_vec()
    }
}

/// Everything the host tries after a boot, on the same powered TPM.
fn host_attempts(sw: &Swtpm, e: &Earlier) -> Vec<Try> {
    let mut host = seeded(sw);
    let mut out = Vec::new();
    out.push(Try {
        what: "use the key through the firmware's door".into(),
        succeeded: design::through_the_door(&mut host, e),
    });
    for (i, v) in e.secrets.iter().enumerate() {
        out.push(Try {
            what: format!("use the key with boot {}'s authValue", i + 1),
            succeeded: design::with_old_value(&mut host, v, e),
        });
    }
    for (j, p) in e.privates.iter().enumerate() {
        for (i, v) in e.secrets.iter().enumerate() {
            out.push(Try {
                what: format!("load recorded private blob {j} with boot {}'s value", i + 1),
                succeeded: design::with_old_blob(&mut host, p, v, e),
            });
        }
    }
    out.push(Try {
        what: "PCR_Allocate (drop the SHA-256 bank), platform, empty password".into(),
        succeeded: common::key::pcr_allocate(&mut host).unwrap_or(false),
    });
    out.push(Try {
        what: "EvictControl(0x81800001), platform, empty password".into(),
        succeeded: common::key::evict_wrapping_key(&mut host),
    });
    out.push(Try {
        what: "HierarchyChangeAuth(platform), empty password".into(),
        succeeded: common::key::change_platform_auth(&mut host),
    });
    out
}

/// The number of TPM commands of a first boot (a fresh state in a scratch directory `tag`).
fn first_boot_commands(tag: &str) -> usize {
    let dir = scratch(tag);
    let sw = Swtpm::start_in(&dir).unwrap();
    let (_, n, _) = boot(&sw, Fault::None, false);
    drop(sw);
    let _ = std::fs::remove_dir_all(&dir);
    n
}

/// A provisioned template state: boot 1 (fresh, recorded) and boot 2, a lockbox sealed.
/// Returns the state directory and what the host knows of boots 1 and 2.
fn template(tag: &str) -> (PathBuf, Earlier, usize) {
    let dir = scratch(tag);
    let mut sw = Swtpm::start_in(&dir).unwrap();
    let (p1, n1, log1) = boot(&sw, Fault::None, false);
    let p1 = p1.expect("boot 1 provisions");
    println!(
        "boot 1 (fresh state): {n1} commands, {} NV writes",
        nv_writes(&log1)
    );
    sw.restart().unwrap();
    let (p2, n2, log2) = boot(&sw, Fault::None, false);
    let p2 = p2.expect("boot 2 provisions");
    println!(
        "boot 2 (keys present): {n2} commands, {} NV writes",
        nv_writes(&log2)
    );
    let (lockbox, plain) = seal(&p2);
    let mut privates = recorded_privates(&log1);
    privates.extend(recorded_privates(&log2));
    let e = Earlier {
        secrets: vec![design::secret_of(&p1), design::secret_of(&p2)],
        privates,
        lockbox,
        plain,
    };
    sw.stop();
    (dir, e, n2)
}

#[test]
fn fail_closed_campaign() {
    let (tpl, e, n) = template("fail");
    // The number of commands of a first boot (fresh state), for TESTING at each of them.
    let first_n = first_boot_commands("first");
    let mut faults = Vec::new();
    faults.push((
        "entropy failure".to_string(),
        Fault::None,
        true,
        Setup::None,
        true,
    ));
    // At each command of a boot with the keys present (on the provisioned template), then
    // of a first boot (fresh state).
    for (boot, commands, provisioned) in [("", n, true), ("first boot, ", first_n, false)] {
        for k in 0..commands {
            faults.push((
                format!("{boot}TPM_RC_TESTING x40 at command {k}"),
                Fault::Testing { k, n: 40 },
                false,
                Setup::None,
                provisioned,
            ));
        }
    }
    for setup in [
        Setup::ForeignParent,
        Setup::ForeignKey,
        Setup::OldShapeKey,
        Setup::ForeignNv,
        Setup::MissingParent,
        Setup::NoSha256Bank,
    ] {
        faults.push((format!("{setup:?}"), Fault::None, false, setup, true));
    }
    let (mut attempts, mut succeeded) = (0usize, 0usize);
    for (what, fault, entropy_fails, setup, provisioned) in &faults {
        let dir = scratch("fault");
        if *provisioned {
            common::copy_dir(&tpl, &dir);
        }
        let mut sw = Swtpm::start_in(&dir).unwrap();
        apply(&sw, *setup);
        if *setup == Setup::NoSha256Bank {
            // The allocation takes effect at the next TPM reset.
            sw.restart().unwrap();
        }
        let (r, _, _) = boot(&sw, *fault, *entropy_fails);
        let tries = host_attempts(&sw, &e);
        let ok: Vec<&Try> = tries.iter().filter(|t| t.succeeded).collect();
        println!(
            "{what}: provisioning {}; {} host attempts, {} succeeded{}",
            match &r {
                Ok(_) => "succeeded".to_string(),
                Err(e) => format!("failed ({e})"),
            },
            tries.len(),
            ok.len(),
            ok.iter()
                .map(|t| format!("\n    SUCCEEDED: {}", t.what))
                .collect::<String>()
        );
        attempts += tries.len();
        succeeded += ok.len();
        drop(sw);
        let _ = std::fs::remove_dir_all(&dir);
    }
    // The control: the same attempts with no firmware run at all (a TPM reset, door open,
    // platform open): the door, PCR_Allocate, EvictControl and HierarchyChangeAuth must get
    // through, so that "0 succeeded" above is the firmware's doing.
    let dir = scratch("control");
    common::copy_dir(&tpl, &dir);
    let sw = Swtpm::start_in(&dir).unwrap();
    let control = host_attempts(&sw, &e);
    for t in &control {
        println!(
            "control (no firmware, door open): {}: {}",
            t.what,
            if t.succeeded { "succeeded" } else { "refused" }
        );
    }
    let got = |w: &str| control.iter().any(|t| t.what.starts_with(w) && t.succeeded);
    assert!(got("use the key through the firmware's door"));
    assert!(got("PCR_Allocate"));
    assert!(got("EvictControl"));
    assert!(got("HierarchyChangeAuth"));
    drop(sw);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "fail-closed: {} faults, {attempts} host attempts, {succeeded} succeeded",
        faults.len()
    );
    let _ = std::fs::remove_dir_all(&tpl);
    assert_eq!(succeeded, 0);
}

#[test]
fn power_cut_campaign() {
    let (tpl, e, n) = template("cut");
    let (mut cuts, mut open) = (0usize, 0usize);
    // Cut right after the k-th command (1-based) of a provisioning boot, k = 1..=n.
    for k in 1..=n {
        let dir = scratch("cut");
        common::copy_dir(&tpl, &dir);
        let mut sw = Swtpm::start_in(&dir).unwrap();
        let (r, _, _) = boot(&sw, Fault::CutAfter(k), false);
        sw.power_cut();
        sw.restart().unwrap();
        let (p, _, _) = boot(&sw, Fault::None, false);
        let opened = match &p {
            Ok(p) => unwrap_with(&sw, p, &e),
            Err(_) => false,
        };
        println!(
            "cut after command {k} ({}): next boot {}, blob {}",
            if r.is_ok() {
                "boot had finished"
            } else {
                "mid-boot"
            },
            match &p {
                Ok(p) if p.key_created => "created a NEW key".to_string(),
                Ok(_) => "reused the key".to_string(),
                Err(e) => format!("failed: {e}"),
            },
            if opened { "opens" } else { "DOES NOT OPEN" }
        );
        cuts += 1;
        open += usize::from(opened);
        drop(sw);
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!("power-cut: {cuts} cut points, {open} blobs still open");
    let _ = std::fs::remove_dir_all(&tpl);
    assert_eq!(open, cuts);
}

/// A cut during first-time creation (fresh state) after each command k: no blob can exist
/// yet, but the next boot must recover the half-created state (not refuse it as foreign),
/// reuse whatever was already persisted (never silently replace it), and the key it ends
/// with must open a blob sealed to it after the next reset.
#[test]
fn power_cut_during_first_creation() {
    let first_n = first_boot_commands("first-n");
    let mut recovered = 0usize;
    for k in 1..=first_n {
        let dir = scratch("first-cut");
        let mut sw = Swtpm::start_in(&dir).unwrap();
        let (r1, _, _) = boot(&sw, Fault::CutAfter(k), false);
        let key_before = r1.is_ok();
        sw.power_cut();
        sw.restart().unwrap();
        let mut t = seeded(&sw);
        let persisted_key = t.read_public(WRAPPING_HANDLE).ok().map(|(o, _)| o.name);
        drop(t);
        let (p, _, _) = boot(&sw, Fault::None, false);
        let ok = match &p {
            Ok(p) => {
                // A key persisted before the cut is reused, never replaced.
                let kept = match &persisted_key {
                    Some(name) => !p.key_created && *name == p.secrets.wrapping_name,
                    None => p.key_created,
                };
                let (lockbox, plain) = seal(p);
                sw.restart().unwrap();
                let (p3, _, _) = boot(&sw, Fault::None, false);
                let e = Earlier {
                    secrets: vec![],
                    privates: vec![],
                    lockbox,
                    plain,
                };
                kept && p3.map(|p3| unwrap_with(&sw, &p3, &e)).unwrap_or(false)
            }
            Err(_) => false,
        };
        println!(
            "first boot cut after command {k}{}: key persisted before the cut: {}; next boot {}",
            if key_before {
                " (boot had finished)"
            } else {
                ""
            },
            persisted_key.is_some(),
            match (&p, ok) {
                (Ok(p), true) if p.key_created => "created the key; blob sealed after opens",
                (Ok(_), true) => "reused the key; blob sealed after opens",
                _ => "DID NOT RECOVER",
            }
        );
        recovered += usize::from(ok);
        drop(sw);
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!("power-cut (first creation): {first_n} cut points, {recovered} recovered");
    assert_eq!(recovered, first_n);
}

fn unwrap_with(sw: &Swtpm, p: &Provisioned, e: &Earlier) -> bool {
    let mut uv = seeded(sw);
    let Ok(mut s) = pefbox::uv::unwrap::UvSession::establish(&mut uv, &p.secrets) else {
        return false;
    };
    let ok = s.unwrap(&mut uv, &e.lockbox).map(|k| k == e.plain) == Ok(true);
    let _ = s.close(&mut uv);
    ok
}

#[test]
fn replay_campaign() {
    let dir = scratch("replay");
    let mut sw = Swtpm::start_in(&dir).unwrap();
    let (p1, _, log1) = boot(&sw, Fault::None, false);
    let p1 = p1.unwrap();
    let mut last = None;
    for _ in 0..3 {
        sw.restart().unwrap();
        let (p, _, _) = boot(&sw, Fault::None, false);
        last = Some(p.unwrap());
    }
    let last = last.unwrap();
    let (lockbox, plain) = seal(&last);
    let e = Earlier {
        secrets: vec![design::secret_of(&p1)],
        privates: recorded_privates(&log1),
        lockbox,
        plain,
    };
    let mut host = seeded(&sw);
    let mut tried = 0usize;
    let mut uses = 0usize;
    for v in &e.secrets {
        tried += 1;
        let u = design::with_old_value(&mut host, v, &e);
        println!(
            "boot 1's authValue on the persistent key: {}",
            if u { "USED THE KEY" } else { "refused" }
        );
        uses += usize::from(u);
    }
    for (j, b) in e.privates.iter().enumerate() {
        tried += 1;
        for v in &e.secrets {
            let u = design::with_old_blob(&mut host, b, v, &e);
            println!(
                "boot 1's private blob {j} loaded, with boot 1's value: {}",
                if u { "USED THE KEY" } else { "refused" }
            );
            uses += usize::from(u);
        }
    }
    // Boot 1's traffic replayed verbatim, command by command, as host software: a use of
    // the key is any of them succeeding with RSA_Decrypt, PolicySecret, NV_ChangeAuth,
    // EvictControl, NV_DefineSpace or HierarchyChangeAuth.
    let mut raw = sw.connect().unwrap();
    drop(host);
    let mut rsp = vec![0u8; 4096];
    for (c, _) in &log1 {
        tried += 1;
        let code = wire::code(c).unwrap_or(0);
        let n = raw.transact(c, &mut rsp).unwrap_or(0);
        let ok = n >= 10 && wire::code(&rsp) == Some(wire::RC_SUCCESS);
        if ok
            && [
                cc::RSA_DECRYPT,
                cc::POLICY_SECRET,
                cc::NV_CHANGE_AUTH,
                cc::EVICT_CONTROL,
                cc::NV_DEFINE_SPACE,
                pefbox::tpm::client::CC_HIERARCHY_CHANGE_AUTH,
            ]
            .contains(&code)
        {
            println!("boot 1's command {code:#x} replayed: USED THE KEY");
            uses += 1;
        }
    }
    drop(raw);
    // The control: this boot's value does open it (so "refused" means something).
    assert!(
        unwrap_with(&sw, &last, &e),
        "control: this boot's ultravisor opens the blob"
    );
    println!("replay: {tried} values from boot 1 tried, {uses} uses of the key");
    drop(sw);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(uses, 0);
}

static SEEN: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

fn collect_secret(s: &[u8]) {
    SEEN.lock().unwrap().push(s.to_vec());
}

/// Every window of `len` bytes of `secret` (the whole secret if shorter) that occurs in
/// any command or response of `log`.
fn leaks(log: &Log, secret: &[u8], len: usize) -> bool {
    let w = len.min(secret.len());
    secret.windows(w).any(|needle| {
        log.iter()
            .any(|(c, r)| c.windows(w).any(|x| x == needle) || r.windows(w).any(|x| x == needle))
    })
}

/// The whole first-boot provisioning (fresh state) and an ultravisor session with two
/// unwraps, recorded byte for byte; the client reports every value it treats as secret
/// (feature `observe-secrets`: the door authValue at NV_DefineSpace, platformAuth at
/// HierarchyChangeAuth, every salt, every session key, the authValue keying each HMAC).
/// No 12-byte window of any of them appears in any relayed byte. Control: the same search
/// finds the door authValue once it is sent in a password session.
#[test]
fn snoop_first_boot_and_ultravisor_find_no_secret_on_the_link() {
    let dir = scratch("snoop");
    let sw = Swtpm::start_in(&dir).unwrap();
    SEEN.lock().unwrap().clear();
    let mut tpm = client(&sw, Fault::None);
    tpm.set_secret_observer(Some(collect_secret));
    let p = provision_boot(&mut tpm, &mut FromRng(OsRng)).expect("first boot provisions");
    assert!(p.key_created && p.nv_defined && p.parent_created);
    let prov_log = std::mem::take(&mut tpm.transport_mut().log);
    let prov_secrets = std::mem::take(&mut *SEEN.lock().unwrap());
    drop(tpm);
    assert!(
        prov_secrets.iter().any(|s| s[..] == p.secrets.nv_auth[..]),
        "the observer saw the door authValue"
    );
    // Salts, session keys, platformAuth: at least the two salted sessions' salts and keys.
    let distinct: std::collections::BTreeSet<&Vec<u8>> = prov_secrets.iter().collect();
    assert!(distinct.len() >= 5, "{} distinct secrets", distinct.len());
    let bytes: usize = prov_log.iter().map(|(c, r)| c.len() + r.len()).sum();
    // The one short value: Create's sensitive area with an empty userAuth and no data
    // (TPM2B_SENSITIVE_CREATE contents 00 00 00 00), encrypted all the same; nothing to find.
    for s in distinct.iter().filter(|s| s.len() < 12) {
        assert!(s.iter().all(|&b| b == 0), "a short secret: {s:02x?}");
    }
    let distinct: std::collections::BTreeSet<&Vec<u8>> =
        distinct.into_iter().filter(|s| s.len() >= 12).collect();
    let found = distinct.iter().filter(|s| leaks(&prov_log, s, 12)).count();
    println!(
        "snoop: first-boot provisioning: {} commands, {bytes} bytes, {} secrets observed \
         (door authValue, platformAuth, salts, session keys), {found} found on the link",
        prov_log.len(),
        distinct.len()
    );
    assert_eq!(found, 0);

    // The ultravisor's channel after the boot: establish, two unwraps, close.
    let (lockbox, plain) = seal(&p);
    let mut uv = client(&sw, Fault::None);
    uv.seed_entropy(&mut FromRng(OsRng)).unwrap();
    uv.set_secret_observer(Some(collect_secret));
    let mut s = pefbox::uv::unwrap::UvSession::establish(&mut uv, &p.secrets).unwrap();
    for _ in 0..2 {
        assert_eq!(s.unwrap(&mut uv, &lockbox).unwrap(), plain);
    }
    s.close(&mut uv).unwrap();
    let uv_log = std::mem::take(&mut uv.transport_mut().log);
    let mut uv_secrets = std::mem::take(&mut *SEEN.lock().unwrap());
    uv_secrets.push(plain.to_vec());
    uv_secrets.push(p.secrets.nv_auth.to_vec());
    uv_secrets.retain(|s| s.len() >= 12);
    let found = uv_secrets.iter().filter(|s| leaks(&uv_log, s, 12)).count();
    println!(
        "snoop: ultravisor: {} commands, {} secrets observed (and the lockbox key), {found} found on the link",
        uv_log.len(),
        uv_secrets.len()
    );
    assert_eq!(found, 0);

    // Control: the search does find the door authValue once it is sent in clear.
    let (nv, _) = uv.nv_read_public(fw::NV_HANDLE).unwrap();
    let mut ps = common::tpm::unsalted_session(&mut uv, SessionKind::Policy);
    let _ = uv.policy_secret(&nv, &mut ps, &mut [Auth::Password(&p.secrets.nv_auth[..])]);
    let _ = uv.flush_session(&mut ps);
    assert!(leaks(&uv.transport_mut().log, &p.secrets.nv_auth[..], 12));
    drop(uv);
    drop(sw);
    let _ = std::fs::remove_dir_all(&dir);
}
