//! The host side of the secure-VM story: the wrapping key's public part read from the TPM and
//! exported as PEM, the demo SVM, the files a boot with an SVM needs, the accept/reject
//! scenarios, and the host-side attempts to use the wrapping key after boot.
//!
//! How an SVM reaches the image (the image contract, QEMU 7.2 `-device loader` checked here:
//! the bytes are in guest memory at the given address before the first instruction runs):
//! - the initrd (ESM cpio + the SVM's own initrd, as svm-tools attaches it) via `-initrd`;
//! - the SVM kernel via `-device loader,file=K,addr=`[`SVM_KERNEL_ADDR`]`,force-raw=on` and the
//!   bootargs token `svm-kernel=0x10000000,<size>` (at most [`MAX_SVM_KERNEL`] bytes);
//! - the SVM bootargs, a file holding exactly the bootargs bytes (no NUL), via
//!   `-device loader,file=B,addr=`[`SVM_BOOTARGS_ADDR`]`,force-raw=on` and the token
//!   `svm-bootargs=0x0f000000,<len>` (at most [`MAX_SVM_BOOTARGS`] bytes).
//!
//! The wrapping key (0x81800001) is created by the image at its first boot on a fresh TPM
//! state, so [`ensure_wrapping_key`] makes a provisioning boot (no SVM) when a host-side
//! `ReadPublic` finds no key. Every boot starts a fresh swtpm process on the state (a TPM
//! reset, as a real reboot).
#![forbid(unsafe_code)]

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use pefbox::fw::{door_open_pcr_digest, door_selection, NV_HANDLE};
use pefbox::fw::{DOOR_PCR, WRAPPING_HANDLE};
use pefbox::tpm::client::Blob;
use pefbox::tpm::consts::{attr, cc, rh, sa};
use pefbox::tpm::entropy::FromRng;
use pefbox::tpm::public::{PcrSelection, Public, PublicDetail};
use pefbox::tpm::rc::RC_HANDLE;
use pefbox::tpm::{Auth, Error, Object, ResponseCode, SaltKey, SessionKind, Template, Tpm};
use pefbox::tpm::{Session, Transport};
use pefbox::uv::esm::{EsmBlob, DEFAULT_RTAS};
use rand::rngs::OsRng;
use rand::{CryptoRng, RngCore};
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::{BigUint, Oaep, RsaPublicKey};
use sha2::Sha256;

use crate::esm::{attach_to_initrd, build_esm_blob};
use crate::launcher::{self, LaunchError, RunConfig, RunReport};
use crate::payload;
use crate::swtpm::Swtpm;
use crate::verdict::{Expect, SvmExpect};

/// Guest-physical address the SVM kernel is loaded at.
pub const SVM_KERNEL_ADDR: u64 = 0x1000_0000;
/// Guest-physical address the SVM bootargs are loaded at.
pub const SVM_BOOTARGS_ADDR: u64 = 0x0f00_0000;
/// Largest SVM kernel the image takes.
pub const MAX_SVM_KERNEL: u64 = 64 << 20;
/// Largest SVM bootargs the image takes.
pub const MAX_SVM_BOOTARGS: usize = 4096;
/// Largest initrd a boot takes: QEMU loads `-initrd` at 0x2800_0000 and the launcher gives the
/// machine 1 GiB of RAM.
pub const MAX_INITRD: u64 = (1 << 30) - 0x2800_0000;

/// Size of the demo SVM kernel: the demo payload ([`payload::demo_payload`]), one 4 KiB page.
pub const DEMO_KERNEL_LEN: usize = 4096;
/// Size of the demo SVM's own initrd.
pub const DEMO_INITRD_LEN: usize = 4 * 1024;
/// The demo SVM's bootargs.
pub const DEMO_BOOTARGS: &str = "console=hvc0 root=/dev/sda2 svm=on";

/// The parts of a secure VM that its ESM blob covers (RTAS is the image's default stub).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvmParts {
    /// The SVM kernel as loaded.
    pub kernel: Vec<u8>,
    /// The SVM's own initrd (without the ESM cpio).
    pub initrd: Vec<u8>,
    /// The SVM's bootargs.
    pub bootargs: String,
}

/// xorshift64*: deterministic filler for the demo (not cryptographic, not meant to be).
fn filler(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_be_bytes());
    }
    out.truncate(len);
    out
}

/// The demo SVM: as its kernel the demo payload, a small program the ultravisor runs in the
/// SVM's partition ([`payload::demo_payload`], [`DEMO_KERNEL_LEN`] bytes), a 4 KiB
/// pseudo-random initrd and [`DEMO_BOOTARGS`], the same bytes on every call.
pub fn demo_svm() -> SvmParts {
    SvmParts {
        kernel: payload::demo_payload(),
        initrd: filler(0x5eed_494e_4954_5244, DEMO_INITRD_LEN),
        bootargs: DEMO_BOOTARGS.to_string(),
    }
}

/// The wrapping key's public part, as read from the TPM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappingKey {
    /// The key's Name (`0x000B || SHA-256(public area)`), recomputed from the public area.
    pub name: Vec<u8>,
    /// The RSA public key.
    pub public: RsaPublicKey,
    /// The public key as SPKI PEM ("BEGIN PUBLIC KEY", LF line ends), as
    /// `tpm2_readpublic -f pem` writes it.
    pub pem: String,
}

/// Turns a parsed RSA public area into an RSA public key and its SPKI PEM.
pub fn rsa_public_pem(public: &Public<'_>) -> Result<(RsaPublicKey, String), String> {
    let PublicDetail::Rsa {
        exponent, modulus, ..
    } = public.detail
    else {
        return Err("the key is not an RSA key".into());
    };
    // TPM 2.0 Part 2: an exponent of zero means 2^16 + 1.
    let e = if exponent == 0 { 65_537 } else { exponent };
    let key = RsaPublicKey::new(BigUint::from_bytes_be(modulus), BigUint::from(e))
        .map_err(|e| format!("RSA public key: {e}"))?;
    let pem = key
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| format!("PEM encoding: {e}"))?;
    Ok((key, pem))
}

/// `TPM2_ReadPublic(handle)` and the key's PEM; `Ok(None)` if there is no object there.
pub fn read_rsa_key<T: Transport>(
    tpm: &mut Tpm<T>,
    handle: u32,
) -> Result<Option<WrappingKey>, String> {
    let (obj, blob) = match tpm.read_public(handle) {
        Ok(x) => x,
        Err(Error::Tpm(rc)) if rc.base() == RC_HANDLE => return Ok(None),
        Err(e) => return Err(format!("ReadPublic(0x{handle:08x}): {e}")),
    };
    let public = Public::parse(&blob).map_err(|e| format!("public area: {e}"))?;
    let (key, pem) = rsa_public_pem(&public)?;
    Ok(Some(WrappingKey {
        name: obj.name.as_bytes().to_vec(),
        public: key,
        pem,
    }))
}

/// Starts swtpm on `state` (a TPM reset), reads the wrapping key 0x81800001, stops swtpm.
pub fn read_wrapping_key(state: &Path) -> Result<Option<WrappingKey>, LaunchError> {
    let swtpm = Swtpm::start_in(state).map_err(|e| {
        LaunchError::Swtpm(format!(
            "{e} (state {}: is another `pef` using it?)",
            state.display()
        ))
    })?;
    let conn = swtpm
        .connect()
        .map_err(|e| LaunchError::Io("connecting to swtpm".into(), e))?;
    let mut tpm = Tpm::new(conn);
    read_rsa_key(&mut tpm, WRAPPING_HANDLE).map_err(LaunchError::Swtpm)
}

/// The wrapping key of the TPM state `state`; if there is none yet, first boots `image` once
/// without an SVM (the image provisions the key) and returns that boot's report too. The
/// provisioning boot must pass (`svm: none` or no svm line, self-tests passing).
///
/// The boot takes its image, QEMU, machine, timeout and terminal settings from `base`.
pub fn ensure_wrapping_key(
    base: &RunConfig,
    state: &Path,
) -> Result<(WrappingKey, Option<RunReport>), LaunchError> {
    if let Some(k) = read_wrapping_key(state)? {
        return Ok((k, None));
    }
    let mut cfg = base.derive("provision");
    cfg.tpm_state = Some(state.to_path_buf());
    cfg.expect = Expect::default();
    let report = launcher::run(&cfg)?;
    if !report.passed() {
        return Err(LaunchError::Boot(format!(
            "the provisioning boot failed: {}",
            problems_text(&report)
        )));
    }
    match read_wrapping_key(state)? {
        Some(k) => Ok((k, Some(report))),
        None => Err(LaunchError::Boot(
            "the provisioning boot passed but there is no wrapping key at 0x81800001".into(),
        )),
    }
}

fn problems_text(r: &RunReport) -> String {
    r.verdict
        .problems
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Writes the wrapping key's PEM to `path`.
pub fn export_pem(key: &WrappingKey, path: &Path) -> Result<(), LaunchError> {
    fs::write(path, key.pem.as_bytes())
        .map_err(|e| LaunchError::Io(format!("writing {}", path.display()), e))
}

/// A secure VM ready to boot: the files QEMU loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvmFiles {
    /// The combined initrd (ESM cpio + the SVM's initrd).
    pub initrd: PathBuf,
    /// The SVM kernel file.
    pub kernel: PathBuf,
    /// The SVM bootargs.
    pub bootargs: String,
}

impl SvmFiles {
    /// Puts this SVM into a boot configuration (initrd, kernel, bootargs).
    pub fn apply(&self, cfg: &mut RunConfig) {
        cfg.initrd = Some(self.initrd.clone());
        cfg.svm_kernel = Some(self.kernel.clone());
        cfg.svm_bootargs = Some(self.bootargs.clone());
    }
}

/// Writes `<dir>/<stem>.initrd` (the ESM cpio of `blob` + `parts.initrd`) and
/// `<dir>/<stem>.kernel`.
pub fn write_svm_files(
    dir: &Path,
    stem: &str,
    blob: &[u8],
    parts: &SvmParts,
) -> Result<SvmFiles, LaunchError> {
    fs::create_dir_all(dir)
        .map_err(|e| LaunchError::Io(format!("creating {}", dir.display()), e))?;
    let initrd = dir.join(format!("{stem}.initrd"));
    let kernel = dir.join(format!("{stem}.kernel"));
    let write = |p: &Path, data: &[u8]| {
        fs::write(p, data).map_err(|e| LaunchError::Io(format!("writing {}", p.display()), e))
    };
    write(&initrd, &attach_to_initrd(blob, &parts.initrd))?;
    write(&kernel, &parts.kernel)?;
    Ok(SvmFiles {
        initrd,
        kernel,
        bootargs: parts.bootargs.clone(),
    })
}

/// Builds an ESM blob for `parts` sealed to `pem` (no attachments, default RTAS).
pub fn build_blob<R: RngCore + CryptoRng>(
    pem: &str,
    parts: &SvmParts,
    rng: &mut R,
) -> Result<Vec<u8>, String> {
    build_blob_multi(&[pem], parts, rng)
}

/// Builds an ESM blob for `parts` sealed to several recipients in order (`lockbox-1` to
/// the first; see [`build_esm_blob`]), no attachments, default RTAS.
pub fn build_blob_multi<R: RngCore + CryptoRng>(
    pems: &[&str],
    parts: &SvmParts,
    rng: &mut R,
) -> Result<Vec<u8>, String> {
    build_esm_blob(
        pems,
        &parts.kernel,
        &parts.initrd,
        &parts.bootargs,
        &DEFAULT_RTAS,
        &[],
        rng,
    )
    .map(|(blob, _)| blob)
}

/// The secure-VM scenarios: two accepted (this TPM the only or the second recipient), one
/// per rejection reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// The demo SVM with a blob for this TPM's key: all four digests match.
    Accepted,
    /// One bit of the encrypted digests flipped: AES-GCM authentication fails.
    TamperedCiphertext,
    /// The kernel loaded is not the one the blob's digest covers: the defiant payload, which
    /// prints its line even when the ESM call is refused ([`crate::payload::defiant_payload`]).
    WrongKernel,
    /// The bootargs given differ from the ones the blob's digest covers.
    WrongBootargs,
    /// The blob's lockboxes are sealed to another TPM's key: no lockbox has this TPM's
    /// fingerprint, so the image refuses without asking the TPM.
    OtherKey,
    /// The blob is sealed to two hosts, another TPM's key first (`lockbox-1`) and this
    /// TPM's second (`lockbox-2`), as svm-tools' `esm authorize` makes it: accepted.
    SecondRecipient,
}

impl Scenario {
    /// Every scenario, the accepted one first.
    pub const ALL: [Scenario; 6] = [
        Scenario::Accepted,
        Scenario::TamperedCiphertext,
        Scenario::WrongKernel,
        Scenario::WrongBootargs,
        Scenario::OtherKey,
        Scenario::SecondRecipient,
    ];

    /// The scenario's name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Accepted => "svm-accepted",
            Scenario::TamperedCiphertext => "svm-tampered-ct",
            Scenario::WrongKernel => "svm-wrong-kernel",
            Scenario::WrongBootargs => "svm-wrong-bootargs",
            Scenario::OtherKey => "svm-other-key",
            Scenario::SecondRecipient => "svm-second-recipient",
        }
    }

    /// The verdict the image must print.
    pub fn expect(self) -> SvmExpect {
        match self {
            Scenario::Accepted => SvmExpect::Accepted,
            Scenario::TamperedCiphertext => SvmExpect::Rejected("authentication failed"),
            Scenario::WrongKernel => SvmExpect::Rejected("kernel digest mismatch"),
            Scenario::WrongBootargs => SvmExpect::Rejected("bootargs digest mismatch"),
            Scenario::OtherKey => SvmExpect::Rejected(
                "sealed to another TPM key: no lockbox matches this TPM's wrapping key",
            ),
            Scenario::SecondRecipient => SvmExpect::Accepted,
        }
    }

    /// Writes this scenario's files into `dir`: the demo SVM, with a blob sealed to `pem`
    /// (for [`Scenario::OtherKey`] to `other_pem`, for [`Scenario::SecondRecipient`] to
    /// `[other_pem, pem]`), altered as the scenario says.
    pub fn prepare<R: RngCore + CryptoRng>(
        self,
        dir: &Path,
        pem: &str,
        other_pem: &str,
        rng: &mut R,
    ) -> Result<SvmFiles, LaunchError> {
        let demo = demo_svm();
        let sealed_to: &[&str] = match self {
            Scenario::OtherKey => &[other_pem],
            Scenario::SecondRecipient => &[other_pem, pem],
            _ => &[pem],
        };
        let mut blob = build_blob_multi(sealed_to, &demo, rng).map_err(LaunchError::Boot)?;
        let mut booted = demo.clone();
        match self {
            Scenario::Accepted | Scenario::OtherKey | Scenario::SecondRecipient => {}
            Scenario::TamperedCiphertext => {
                let at = digests_ciphertext_offset(&blob).map_err(LaunchError::Boot)?;
                if let Some(b) = blob.get_mut(at) {
                    *b ^= 0x01;
                }
            }
            Scenario::WrongKernel => {
                // Not the kernel the blob's digest covers, and one that prints its line
                // whatever the ESM call answers: the verdict's check that a rejected SVM
                // prints nothing then holds only because the ultravisor never enters it again.
                booted.kernel = crate::payload::defiant_payload();
            }
            Scenario::WrongBootargs => booted.bootargs = DEMO_BOOTARGS.replace("svm=on", "svm=of"),
        }
        write_svm_files(dir, self.name(), &blob, &booted)
    }
}

/// Offset, in `blob`, of the middle byte of the encrypted digests' ciphertext.
pub fn digests_ciphertext_offset(blob: &[u8]) -> Result<usize, String> {
    let esm = EsmBlob::parse(blob).map_err(|e| format!("own blob does not parse: {e}"))?;
    let ct = esm.digests_entry().ciphertext;
    let start = (ct.as_ptr() as usize)
        .checked_sub(blob.as_ptr() as usize)
        .ok_or("ciphertext outside the blob")?;
    Ok(start + ct.len() / 2)
}

/// CreatePrimary under the owner hierarchy (empty auth) of an RSA-2048 OAEP decryption key
/// with an empty authValue and no policy: a key the host can use freely.
pub fn owner_decrypt_primary<T: Transport>(tpm: &mut Tpm<T>) -> Result<(Object, Blob), Error> {
    let template = Template::rsa_oaep(
        attr::FIXED_TPM
            | attr::FIXED_PARENT
            | attr::SENSITIVE_DATA_ORIGIN
            | attr::USER_WITH_AUTH
            | attr::DECRYPT,
        &[],
    );
    tpm.create_primary(
        &Object::permanent(rh::OWNER),
        &mut [Auth::Password(b"")],
        &template,
        b"",
    )
}

/// The public PEM of an RSA-2048 OAEP decryption key created in a throw-away swtpm: a key
/// that is not in the TPM under test (for [`Scenario::OtherKey`]).
pub fn foreign_key_pem() -> Result<String, String> {
    let sw = Swtpm::start().map_err(|e| format!("swtpm: {e}"))?;
    let conn = sw.connect().map_err(|e| format!("swtpm: {e}"))?;
    let mut tpm = Tpm::new(conn);
    tpm.seed_entropy(&mut FromRng(OsRng))
        .map_err(|e| format!("seeding: {e}"))?;
    let (_, blob) = owner_decrypt_primary(&mut tpm).map_err(|e| format!("CreatePrimary: {e}"))?;
    let public = Public::parse(&blob).map_err(|e| format!("public area: {e}"))?;
    Ok(rsa_public_pem(&public)?.1)
}

/// One host-side attempt to use the wrapping key, and how the TPM answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// What was tried.
    pub what: &'static str,
    /// The command the TPM refused (`None` if it refused none).
    pub refused_by: Option<&'static str>,
    /// `Ok(())`: the attempt got through (the key was used or re-authorized); `Err`: why not.
    pub outcome: Result<(), Error>,
}

impl Attempt {
    /// True if the TPM itself refused (a TPM response code, not a local or carrier error).
    pub fn refused_by_tpm(&self) -> Option<ResponseCode> {
        match self.outcome {
            Err(Error::Tpm(rc)) => Some(rc),
            _ => None,
        }
    }
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.outcome, self.refused_by) {
            (Ok(()), _) => write!(
                f,
                "{}: SUCCEEDED (the key is usable by the host)",
                self.what
            ),
            (Err(Error::Tpm(rc)), Some(cmd)) => {
                write!(f, "{}: {cmd} refused with 0x{:03x} {rc}", self.what, rc.0)
            }
            (Err(e), cmd) => write!(
                f,
                "{}: failed in {} without a TPM answer: {e}",
                self.what,
                cmd.unwrap_or("?")
            ),
        }
    }
}

/// A policy session for a host attacker: unsalted, unbound (as anyone can start).
fn attacker_session<T: Transport>(tpm: &mut Tpm<T>) -> Result<Session, Error> {
    tpm.start_auth_session(
        SaltKey::None,
        None,
        SessionKind::Policy,
        sa::CONTINUE_SESSION,
    )
}

/// Runs `step` and records which command failed.
fn step<X>(
    failed_in: &mut Option<&'static str>,
    name: &'static str,
    r: Result<X, Error>,
) -> Result<X, Error> {
    if r.is_err() {
        *failed_in = Some(name);
    }
    r
}

/// What host software can try with the wrapping key after the image booted (same swtpm
/// process, no TPM reset), naming the key, the parent and the door index by their real
/// Names (read from the TPM and recomputed, as the ultravisor does: a handle-only Name
/// would fail every cpHash whatever the door's state):
/// 1. RSA_Decrypt of `ciphertext` with the empty password (userWithAuth is clear);
/// 2. PolicyCommandCode(RSA_Decrypt) + PolicySecret(door index) with `guess` as the door
///    authValue, then RSA_Decrypt;
/// 3. the door: PolicyCommandCode(NV_ChangeAuth) + PolicyPCR(PCR 11 all zero), then
///    NV_ChangeAuth of the door index to a value of the host's choosing, then 2 with it.
///
/// After a good boot each must be refused by the TPM. Against a deliberately open door
/// (PCR 11 still zero), 3 succeeds; with the ultravisor's real value as `guess`, 2
/// succeeds ([`host_attempts_with`]): so a refusal means the door, not the test, held.
/// Every session started is flushed. The key and the index are noDA: guesses lock nothing.
pub fn host_attempts<T: Transport>(tpm: &mut Tpm<T>, ciphertext: &[u8]) -> Vec<Attempt> {
    host_attempts_with(tpm, ciphertext, &[0x5au8; 32])
}

/// [`host_attempts`] with `guess` as the door authValue of attempt 2.
pub fn host_attempts_with<T: Transport>(
    tpm: &mut Tpm<T>,
    ciphertext: &[u8],
    guess: &[u8],
) -> Vec<Attempt> {
    let mut out = Vec::new();
    let mut plain = [0u8; 512];
    let names = (|| {
        let (key, _) = tpm.read_public(WRAPPING_HANDLE)?;
        let (nv, _) = tpm.nv_read_public(NV_HANDLE)?;
        Ok::<_, Error>((key, nv))
    })();
    let (key, nv) = match names {
        Ok(k) => k,
        Err(e) => {
            for what in [ATTEMPT_PASSWORD, ATTEMPT_SECRET, ATTEMPT_DOOR] {
                out.push(Attempt {
                    what,
                    refused_by: Some("ReadPublic"),
                    outcome: Err(e),
                });
            }
            return out;
        }
    };

    // 1. Password authorization with the empty authValue (userWithAuth is clear).
    let mut failed = None;
    let r = step(
        &mut failed,
        "RSA_Decrypt",
        tpm.rsa_decrypt(
            &key,
            &mut [Auth::Password(b"")],
            ciphertext,
            &[],
            &mut plain,
        ),
    );
    out.push(Attempt {
        what: ATTEMPT_PASSWORD,
        refused_by: failed,
        outcome: r.map(|_| ()),
    });

    // 2. PolicySecret on the door index with a guessed authValue.
    let mut failed = None;
    let r = use_with_secret(tpm, &mut failed, &key, &nv, guess, ciphertext, &mut plain);
    out.push(Attempt {
        what: ATTEMPT_SECRET,
        refused_by: failed,
        outcome: r,
    });

    // 3. The door: set the index's authValue to one of the host's choosing, then use it.
    let mut failed = None;
    let r = (|| {
        let mut s = step(&mut failed, "StartAuthSession", attacker_session(tpm))?;
        let r = (|| {
            step(
                &mut failed,
                "PolicyCommandCode",
                tpm.policy_command_code(&mut s, cc::NV_CHANGE_AUTH),
            )?;
            step(
                &mut failed,
                "PolicyPCR",
                tpm.policy_pcr(&mut s, &door_open_pcr_digest(), &door_selection()),
            )?;
            s.set_attributes(0);
            step(
                &mut failed,
                "NV_ChangeAuth",
                tpm.nv_change_auth(&nv, &mut [Auth::session(&mut s, b"")], b"host"),
            )
        })();
        let _ = tpm.flush_session(&mut s);
        r?;
        use_with_secret(tpm, &mut failed, &key, &nv, b"host", ciphertext, &mut plain)
    })();
    out.push(Attempt {
        what: ATTEMPT_DOOR,
        refused_by: failed,
        outcome: r,
    });
    out
}

const ATTEMPT_PASSWORD: &str = "RSA_Decrypt, password session, empty authValue";
const ATTEMPT_SECRET: &str = "RSA_Decrypt, PolicySecret(door index) with a guessed authValue";
const ATTEMPT_DOOR: &str =
    "NV_ChangeAuth of the door index (PolicyPCR 11 = zeros), then RSA_Decrypt with it";

/// PolicyCommandCode(RSA_Decrypt) + PolicySecret(`nv`, `value`) + RSA_Decrypt.
fn use_with_secret<T: Transport>(
    tpm: &mut Tpm<T>,
    failed: &mut Option<&'static str>,
    key: &Object,
    nv: &Object,
    value: &[u8],
    ciphertext: &[u8],
    plain: &mut [u8],
) -> Result<(), Error> {
    let mut s = step(failed, "StartAuthSession", attacker_session(tpm))?;
    let mut h = match tpm.start_auth_session(
        SaltKey::None,
        None,
        SessionKind::Hmac,
        sa::CONTINUE_SESSION,
    ) {
        Ok(h) => h,
        Err(e) => {
            let _ = tpm.flush_session(&mut s);
            *failed = Some("StartAuthSession");
            return Err(e);
        }
    };
    let r = (|| {
        step(
            failed,
            "PolicyCommandCode",
            tpm.policy_command_code(&mut s, cc::RSA_DECRYPT),
        )?;
        step(
            failed,
            "PolicySecret",
            tpm.policy_secret(nv, &mut s, &mut [Auth::session(&mut h, value)]),
        )?;
        step(
            failed,
            "RSA_Decrypt",
            tpm.rsa_decrypt(
                key,
                &mut [Auth::session(&mut s, &[])],
                ciphertext,
                &[],
                plain,
            ),
        )
        .map(|_| ())
    })();
    let _ = tpm.flush_session(&mut s);
    let _ = tpm.flush_session(&mut h);
    r
}

/// Reads PCR 11 (SHA-256).
pub fn read_door_pcr<T: Transport>(tpm: &mut Tpm<T>) -> Result<[u8; 32], Error> {
    let mut d = [[0u8; 32]; 1];
    let (_, _, n) = tpm.pcr_read(&PcrSelection::sha256(&[DOOR_PCR]), &mut d)?;
    if n != 1 {
        return Err(Error::BadArgument);
    }
    Ok(d[0])
}

/// Encrypts a fresh 32-byte secret to `key` as an ESM lockbox does (RSA-OAEP-SHA256, empty
/// label): what a host attacker would hold.
pub fn lockbox_ciphertext(key: &RsaPublicKey) -> Result<Vec<u8>, String> {
    let mut secret = [0u8; 32];
    OsRng.fill_bytes(&mut secret);
    key.encrypt(&mut OsRng, Oaep::new::<Sha256>(), &secret)
        .map_err(|e| format!("RSA-OAEP: {e}"))
}

/// The outcome of [`run_suite`].
#[derive(Debug)]
pub struct SuiteReport {
    /// The provisioning boot, if the state had no key yet.
    pub provisioning: Option<RunReport>,
    /// One report per scenario, in [`Scenario::ALL`] order.
    pub scenarios: Vec<(Scenario, RunReport)>,
    /// The host-side attempts after the accepted boot (same swtpm process).
    pub attempts: Vec<Attempt>,
    /// PCR 11 as the host read it after the accepted boot.
    pub door_pcr: Option<[u8; 32]>,
    /// The control: attempts 2 and 3 of [`host_attempts`] against a deliberately open door
    /// (the same swtpm state after a TPM reset, no firmware run: PCR 11 zero, platform
    /// open); each must SUCCEED, so that the refusals above mean the door held.
    pub open_door: Vec<Attempt>,
}

impl SuiteReport {
    /// Every boot passed, every host attempt was refused by the TPM, and every open-door
    /// control attempt succeeded.
    pub fn passed(&self) -> bool {
        self.provisioning.as_ref().is_none_or(RunReport::passed)
            && self.scenarios.len() == Scenario::ALL.len()
            && self.scenarios.iter().all(|(_, r)| r.passed())
            && self.attempts.len() == 3
            && self.attempts.iter().all(|a| a.refused_by_tpm().is_some())
            && self.open_door.len() == 2
            && self.open_door.iter().all(|a| a.outcome.is_ok())
    }

    /// All boot reports, in order.
    pub fn reports(&self) -> Vec<RunReport> {
        self.provisioning
            .iter()
            .cloned()
            .chain(self.scenarios.iter().map(|(_, r)| r.clone()))
            .collect()
    }
}

/// Runs every [`Scenario`] on one TPM state (provisioning it first if needed), and after the
/// accepted boot, with its swtpm still running, the [`host_attempts`]. `work` holds the
/// scenario files; every boot takes its image, QEMU, machine, timeout and terminal settings
/// from `base`.
pub fn run_suite(base: &RunConfig, state: &Path, work: &Path) -> Result<SuiteReport, LaunchError> {
    let (key, provisioning) = ensure_wrapping_key(base, state)?;
    let other = foreign_key_pem().map_err(LaunchError::Swtpm)?;
    let mut rng = OsRng;
    let mut scenarios = Vec::new();
    let mut attempts = Vec::new();
    let mut door_pcr = None;
    let mut open_door = Vec::new();
    for sc in Scenario::ALL {
        let files = sc.prepare(work, &key.pem, &other, &mut rng)?;
        let mut cfg = base.derive(sc.name());
        cfg.tpm_state = Some(state.to_path_buf());
        cfg.expect = Expect::for_bootargs(None, sc.expect());
        files.apply(&mut cfg);
        if sc == Scenario::Accepted {
            let (report, swtpm) = launcher::run_keeping_tpm(&cfg)?;
            let mut tpm = host_client(&swtpm, "connecting to swtpm after boot")?;
            door_pcr = read_door_pcr(&mut tpm).ok();
            let ct = lockbox_ciphertext(&key.public).map_err(LaunchError::Boot)?;
            attempts = host_attempts(&mut tpm, &ct);
            drop(tpm);
            if let Err(e) = launcher::orderly_shutdown(&swtpm) {
                eprintln!("pef: TPM2_Shutdown after the host attempts: {e}");
            }
            let mut swtpm = swtpm;
            open_door = open_door_control(&mut swtpm, &ct)?;
            if let Err(e) = launcher::orderly_shutdown(&swtpm) {
                eprintln!("pef: TPM2_Shutdown after the open-door control: {e}");
            }
            drop(swtpm);
            scenarios.push((sc, report));
        } else {
            scenarios.push((sc, launcher::run(&cfg)?));
        }
        if launcher::interrupted() {
            break;
        }
    }
    Ok(SuiteReport {
        provisioning,
        scenarios,
        attempts,
        door_pcr,
        open_door,
    })
}

/// A host-software client on `swtpm`, seeded from the OS; `connecting` says what a failed
/// connection was for.
fn host_client(
    swtpm: &crate::swtpm::Swtpm,
    connecting: &str,
) -> Result<Tpm<crate::swtpm::SwtpmConn>, LaunchError> {
    let conn = swtpm
        .connect()
        .map_err(|e| LaunchError::Io(connecting.into(), e))?;
    let mut tpm = Tpm::new(conn);
    tpm.seed_entropy(&mut FromRng(OsRng))
        .map_err(|e| LaunchError::Swtpm(format!("seeding the host client: {e}")))?;
    Ok(tpm)
}

/// The open-door control: a TPM reset (swtpm restarted on the same state) and no firmware,
/// so PCR 11 is zero and the platform open; then attempt 3 (the door, which sets the door
/// index's authValue to "host" and uses the key with it) and attempt 2 with "host" as its
/// guess. Returns those two attempts, in that order; both must succeed.
pub fn open_door_control(
    swtpm: &mut crate::swtpm::Swtpm,
    ciphertext: &[u8],
) -> Result<Vec<Attempt>, LaunchError> {
    swtpm
        .restart()
        .map_err(|e| LaunchError::Io("restarting swtpm for the open-door control".into(), e))?;
    let mut tpm = host_client(swtpm, "connecting to swtpm (open door)")?;
    let first = host_attempts_with(&mut tpm, ciphertext, b"host");
    let again = host_attempts_with(&mut tpm, ciphertext, b"host");
    Ok(first
        .into_iter()
        .skip(2)
        .chain(again.into_iter().skip(1).take(1))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_is_deterministic_and_sized() {
        let a = demo_svm();
        assert_eq!(a, demo_svm());
        assert_eq!(a.kernel.len(), DEMO_KERNEL_LEN);
        assert_eq!(a.initrd.len(), DEMO_INITRD_LEN);
        assert_ne!(a.kernel[..DEMO_INITRD_LEN], a.initrd[..]);
        // The kernel is the payload (a program, not a fill), the initrd is not a constant fill.
        assert_eq!(a.kernel, payload::demo_payload());
        assert_eq!(a.kernel.len(), payload::PAYLOAD_LEN);
        let distinct: std::collections::BTreeSet<u8> = a.initrd.iter().copied().collect();
        assert!(distinct.len() > 250);
    }

    #[test]
    fn scenario_names_and_reasons_are_distinct() {
        let names: std::collections::BTreeSet<_> = Scenario::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(names.len(), Scenario::ALL.len());
        assert_eq!(Scenario::ALL[0].expect(), SvmExpect::Accepted);
        let rejected: Vec<_> = Scenario::ALL
            .iter()
            .filter(|s| s.expect() != SvmExpect::Accepted)
            .collect();
        let reasons: std::collections::BTreeSet<String> =
            rejected.iter().map(|s| format!("{}", s.expect())).collect();
        assert_eq!((rejected.len(), reasons.len()), (4, 4));
        assert_eq!(Scenario::SecondRecipient.expect(), SvmExpect::Accepted);
    }

    /// The second-recipient blob really puts this key second and another first, and the
    /// image's lookup by fingerprint finds this key's lockbox, not lockbox-1.
    #[test]
    fn second_recipient_blob_has_the_key_in_lockbox_2() {
        use rand::SeedableRng;
        use rsa::RsaPrivateKey;
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let pems: Vec<String> = (0..2)
            .map(|_| {
                let k = RsaPrivateKey::new(&mut rng, 2048).unwrap();
                k.to_public_key().to_public_key_pem(LineEnding::LF).unwrap()
            })
            .collect();
        let dir = std::env::temp_dir().join(format!("pef-second-recipient-{}", std::process::id()));
        let files = Scenario::SecondRecipient
            .prepare(&dir, &pems[0], &pems[1], &mut rng)
            .unwrap();
        let initrd = std::fs::read(&files.initrd).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let (blob, _) = pefbox::uv::cpio::split_esm_initrd(&initrd).unwrap();
        let esm = EsmBlob::parse(blob).unwrap();
        let fp = |p: &str| -> [u8; 32] { <Sha256 as sha2::Digest>::digest(p.as_bytes()).into() };
        assert_eq!(esm.lockbox_for(&fp(&pems[0])).unwrap().name, "lockbox-2");
        assert_eq!(esm.lockbox_for(&fp(&pems[1])).unwrap().name, "lockbox-1");
        assert_eq!(esm.lockboxes().count(), 3);
    }
}
