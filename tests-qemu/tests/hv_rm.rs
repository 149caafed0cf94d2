//! The hypervisor as a TPM resource manager, against a real swtpm: the allowlist, ownership of
//! every handle (handle area, FlushContext's flushHandle, ContextLoad's saved session, every
//! session of the authorization area), tracking of every creating command, per-partition
//! quotas with capacity held for the ultravisor, GetCapability(handles) filtered per caller.
//!
//! One test per finding of the adversarial review (each prints what happened before it
//! asserts, so a failure shows the attack's result), the Linux kernel's tpm2 `SpaceTest`
//! re-expressed over H_TPM_COMM, tpm2-abrmd's transient-handle tests in spirit, and a soak.
//!
//! "Nothing reached the TPM" is shown by the relay observer's snoop, which sees every byte
//! sent to the TPM (counted per test thread); leaked handles are counted by asking the TPM
//! itself over the hypervisor's link outside any hcall ([`Hypervisor::with_link`]), never
//! through the (filtered) hcall path.

mod common;

use common::hv::*;
use common::tpm::{cmd, PW};

use std::cell::Cell;
use std::sync::Arc;
use std::time::Instant;

use pefbox::hv::{wire, CallerId, Direction};
use pefbox::papr::{
    to_regs, H_P2, H_SUCCESS, H_TPM_COMM, TPM_COMM_OP_CLOSE_SESSION, TPM_COMM_OP_EXECUTE,
};
use pefbox::tpm::attrs::CommandAttributes;
use pefbox::tpm::Transport;
use xtask::swtpm::Swtpm;

/// The ultravisor's partition (as in the image: `uv::target::SVM_LPID`).
const UV: CallerId = CallerId::of(1, 0);
/// Guests: partitions 2, 3, 4 (thread 0).
const G: CallerId = CallerId::of(2, 0);
const H: CallerId = CallerId::of(3, 0);
const K: CallerId = CallerId::of(4, 0);

/// The resource manager's refusals (TPM-format responses, resource-manager layer 0x000B0000,
/// as the Linux kernel's /dev/tpmrm0 and tpm2-abrmd answer).
const RM_COMMAND_CODE: u32 = 0x000B_0143;
const RM_OBJECT_MEMORY: u32 = 0x000B_0902;
const RM_SESSION_MEMORY: u32 = 0x000B_0903;

const TPM_RH_OWNER: u32 = 0x4000_0001;
const TPM_RH_PLATFORM: u32 = 0x4000_000C;
const CONTINUE: u8 = 0x01;

thread_local! {
    static SENT: Cell<usize> = const { Cell::new(0) };
}

/// The relay observer's snoop: counts commands sent to the TPM (by this test's thread).
fn count_sent(_c: CallerId, d: Direction, _b: &[u8]) {
    if d == Direction::Command {
        SENT.with(|s| s.set(s.get() + 1));
    }
}

fn sent() -> usize {
    SENT.with(Cell::get)
}

struct Rig {
    _sw: Swtpm,
    mem: Arc<Memory>,
    hv: Box<Hv>,
}

/// What one EXECUTE returned: r3 and the response bytes (empty unless H_SUCCESS).
#[derive(Debug, Clone)]
struct Out {
    r3: i64,
    rsp: Vec<u8>,
}

impl Out {
    fn rc(&self) -> Option<u32> {
        wire::u32_at(&self.rsp, 6)
    }
    fn ok(&self) -> bool {
        self.r3 == H_SUCCESS && self.rc() == Some(0)
    }
    /// The first handle of the response (creating commands).
    fn handle(&self) -> u32 {
        assert!(self.ok(), "command failed: {self}");
        wire::u32_at(&self.rsp, 10).unwrap()
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.rc() {
            Some(rc) => write!(f, "r3={} rc={rc:#x}", self.r3),
            None => write!(f, "r3={}", self.r3),
        }
    }
}

impl Rig {
    fn new() -> Rig {
        let (sw, mem, hv) = hv_over_swtpm();
        hv.reserve_for(UV);
        hv.with_observer(|o| o.snoop_fn = Some(count_sent));
        Rig { _sw: sw, mem, hv }
    }

    /// EXECUTE `c` as `who`; re-sent while the TPM answers TPM_RC_RETRY (swtpm's first use
    /// of a private key after a reset), as a TPM client does.
    fn exec(&self, who: CallerId, c: &[u8]) -> Out {
        for _ in 0..4 {
            let o = self.exec_once(who, c);
            if o.rc() != Some(0x922) {
                return o;
            }
        }
        self.exec_once(who, c)
    }

    fn exec_once(&self, who: CallerId, c: &[u8]) -> Out {
        assert!(self.mem.poke(IN, c));
        let r = to_regs(&self.hv.hcall(
            who,
            H_TPM_COMM,
            &[
                TPM_COMM_OP_EXECUTE,
                IN,
                c.len() as u64,
                OUT,
                4096,
                0,
                0,
                0,
                0,
            ],
        ));
        let mut rsp = Vec::new();
        if r.status == H_SUCCESS {
            rsp = vec![0u8; r.out[0] as usize];
            assert!(self.mem.peek(OUT, &mut rsp));
        }
        Out { r3: r.status, rsp }
    }

    fn close(&self, who: CallerId) -> i64 {
        to_regs(&self.hv.hcall(
            who,
            H_TPM_COMM,
            &[TPM_COMM_OP_CLOSE_SESSION, 0, 0, 0, 0, 0, 0, 0, 0],
        ))
        .status
    }

    /// CLOSE for each of `callers`, each answered H_SUCCESS.
    fn close_all(&self, callers: &[CallerId]) {
        for &c in callers {
            assert_eq!(self.close(c), H_SUCCESS, "CLOSE {c:?}");
        }
    }

    /// The TPM holds no handle of any of the types `hts` (see [`Rig::tpm_handles`]).
    fn assert_tpm_holds_none(&self, hts: &[u32]) {
        for &ht in hts {
            assert_eq!(
                self.tpm_handles(ht),
                Vec::<u32>::new(),
                "handles of type {ht:#04x} left in the TPM"
            );
        }
    }

    /// `c` sent to the TPM over the link, outside any hcall: the response.
    fn over_link(&self, c: &[u8]) -> Vec<u8> {
        self.hv
            .with_link(|l| {
                let mut out = [0u8; 4096];
                let n = l.transact(c, &mut out).expect("link");
                out[..n].to_vec()
            })
            .unwrap()
    }

    /// What the TPM itself holds of handle type `ht` (0x80 transient, 0x02 loaded sessions,
    /// 0x03 saved sessions), asked over the link outside any hcall: the ground truth.
    fn tpm_handles(&self, ht: u32) -> Vec<u32> {
        handles_of(&self.over_link(&get_cap_handles(ht)))
    }

    /// EXECUTE `c` as `who` up to `max` times, until it is refused: how many succeeded,
    /// and the refusal (None if all `max` succeeded).
    fn until_refused(&self, who: CallerId, c: &[u8], max: usize) -> (usize, Option<Out>) {
        for done in 0..max {
            let o = self.exec(who, c);
            if !o.ok() {
                return (done, Some(o));
            }
        }
        (max, None)
    }

    /// The handles of type `ht` that `who` is shown through H_TPM_COMM.
    fn shown(&self, who: CallerId, ht: u32) -> Vec<u32> {
        let o = self.exec(who, &get_cap_handles(ht));
        assert!(o.ok(), "GetCapability: {o}");
        handles_of(&o.rsp)
    }
}

fn handles_of(rsp: &[u8]) -> Vec<u32> {
    assert_eq!(wire::u32_at(rsp, 6), Some(0), "GetCapability failed");
    let n = wire::u32_at(rsp, 15).unwrap() as usize;
    (0..n)
        .map(|i| wire::u32_at(rsp, 19 + 4 * i).unwrap())
        .collect()
}

fn get_cap_handles(ht: u32) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&1u32.to_be_bytes()); // TPM_CAP_HANDLES
    p.extend_from_slice(&(ht << 24).to_be_bytes());
    p.extend_from_slice(&64u32.to_be_bytes());
    cmd(0x17A, &[], &[], &p)
}

fn get_random() -> Vec<u8> {
    cmd(0x17B, &[], &[], &8u16.to_be_bytes())
}

/// StartAuthSession, unsalted and unbound, SHA-256; `kind` 0 HMAC, 1 policy.
fn start_session(kind: u8) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&[0, 16]);
    p.extend_from_slice(&[0x42; 16]);
    p.extend_from_slice(&[0, 0]);
    p.push(kind);
    p.extend_from_slice(&[0x00, 0x10, 0x00, 0x0B]);
    cmd(0x176, &[TPM_RH_NULL, TPM_RH_NULL], &[], &p)
}

fn create_primary_with(hierarchy: u32, public: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&[0, 4, 0, 0, 0, 0]); // inSensitive: empty userAuth, data
    p.extend_from_slice(&(public.len() as u16).to_be_bytes());
    p.extend_from_slice(public);
    p.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // outsideInfo, creationPCR
    cmd(0x131, &[hierarchy], PW, &p)
}

/// An ECC P-256 restricted decryption key template (a storage parent).
fn ecc_storage() -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&[0x00, 0x23, 0x00, 0x0B]);
    p.extend_from_slice(&0x0003_0072u32.to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&[0x00, 0x06, 0x00, 0x80, 0x00, 0x43]);
    p.extend_from_slice(&[0x00, 0x10, 0x00, 0x03, 0x00, 0x10]);
    p.extend_from_slice(&[0, 0, 0, 0]);
    p
}

/// An HMAC-SHA256 keyed-hash signing key template.
fn hmac_key() -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&[0x00, 0x08, 0x00, 0x0B]);
    p.extend_from_slice(&0x0004_0072u32.to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&[0x00, 0x05, 0x00, 0x0B]); // scheme HMAC, SHA-256
    p.extend_from_slice(&[0, 0]);
    p
}

fn primary() -> Vec<u8> {
    create_primary_with(TPM_RH_NULL, &ecc_storage())
}

fn hmac_primary() -> Vec<u8> {
    create_primary_with(TPM_RH_NULL, &hmac_key())
}

fn hmac(key: u32, data: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&(data.len() as u16).to_be_bytes());
    p.extend_from_slice(data);
    p.extend_from_slice(&[0x00, 0x0B]);
    cmd(0x155, &[key], PW, &p)
}

fn hash_sequence_start() -> Vec<u8> {
    cmd(0x186, &[], &[], &[0, 0, 0x00, 0x0B])
}

fn flush(h: u32) -> Vec<u8> {
    cmd(0x165, &[], &[], &h.to_be_bytes())
}

fn read_public(h: u32) -> Vec<u8> {
    cmd(0x173, &[h], &[], &[])
}

fn policy_get_digest(s: u32) -> Vec<u8> {
    cmd(0x189, &[s], &[], &[])
}

fn policy_command_code(s: u32, code: u32) -> Vec<u8> {
    cmd(0x16C, &[s], &[], &code.to_be_bytes())
}

/// Parameter bytes that make each policy command well formed enough for the TPM to act on
/// it (after the policySession handle).
fn policy_commands(s: u32) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("PolicyRestart", cmd(0x180, &[s], &[], &[])),
        ("PolicyPassword", cmd(0x18C, &[s], &[], &[])),
        ("PolicyAuthValue", cmd(0x16B, &[s], &[], &[])),
        ("PolicyCommandCode", policy_command_code(s, 0x153)),
        ("PolicyPhysicalPresence", cmd(0x187, &[s], &[], &[])),
        ("PolicyLocality", cmd(0x16F, &[s], &[], &[0x01])),
        ("PolicyNvWritten", cmd(0x18F, &[s], &[], &[1])),
        (
            "PolicyCpHash",
            cmd(0x16E, &[s], &[], &[&[0, 32][..], &[7; 32]].concat()),
        ),
        (
            "PolicyNameHash",
            cmd(0x170, &[s], &[], &[&[0, 32][..], &[7; 32]].concat()),
        ),
        (
            "PolicyOR",
            cmd(
                0x171,
                &[s],
                &[],
                &[&[0, 0, 0, 2, 0, 32][..], &[1; 32], &[0, 32], &[2; 32]].concat(),
            ),
        ),
        ("PolicyPCR", cmd(0x17F, &[s], &[], &[0, 0, 0, 0, 0, 0])),
        ("PolicySecret", cmd(0x151, &[TPM_RH_OWNER, s], PW, &[0; 10])),
        ("PolicyGetDigest", policy_get_digest(s)),
    ]
}

/// GetCapability(TPM_CAP_TPM_PROPERTIES, `first`, `n`) over the link: (property, value) pairs.
fn properties(rig: &Rig, first: u32, n: u32) -> Vec<(u32, u32)> {
    let p = [6u32, first, n].map(u32::to_be_bytes).concat();
    let rsp = rig.over_link(&cmd(0x17A, &[], &[], &p));
    let count = wire::u32_at(&rsp, 15).unwrap() as usize;
    (0..count)
        .map(|i| {
            (
                wire::u32_at(&rsp, 19 + 8 * i).unwrap(),
                wire::u32_at(&rsp, 23 + 8 * i).unwrap(),
            )
        })
        .collect()
}

#[test]
fn tpm_capacity_as_measured() {
    let rig = Rig::new();
    // TPM_PT_HR_TRANSIENT_MIN, _PERSISTENT_MIN, _LOADED_MIN, TPM_PT_ACTIVE_SESSIONS_MAX.
    let mut p = properties(&rig, 0x10E, 4);
    // TPM_PT_CONTEXT_GAP_MAX.
    p.extend(properties(&rig, 0x114, 1));
    println!("swtpm: {p:x?}");
    let get = |k| p.iter().find(|(q, _)| *q == k).map(|(_, v)| *v as usize);
    assert!(get(0x10E) >= Some(pefbox::hv::OBJECT_CAPACITY));
    assert!(get(0x110) >= Some(pefbox::hv::SESSION_CAPACITY));
    assert!(get(0x111) >= Some(pefbox::hv::ACTIVE_SESSION_CAPACITY));
    assert!(get(0x114) > Some(pefbox::hv::REGAP_AT as usize));
    // The size of saved contexts (what a context-swapping RM would keep per handle).
    let key = rig.exec(G, &primary()).handle();
    let hmac_key = rig.exec(G, &hmac_primary()).handle();
    let sess = rig.exec(H, &start_session(1)).handle();
    let rsa = rig
        .exec(K, &create_primary_with(TPM_RH_NULL, &rsa_storage()))
        .handle();
    for (what, who, h) in [
        ("RSA-2048 primary", K, rsa),
        ("ECC P-256 primary", G, key),
        ("HMAC key", G, hmac_key),
        ("policy session", H, sess),
    ] {
        let o = rig.exec(who, &cmd(0x162, &[h], &[], &[]));
        assert!(o.ok(), "{o}");
        let n = o.rsp.len() - 10;
        println!("ContextSave({what}): TPMS_CONTEXT {n} bytes");
        let max = match h >> 24 {
            0x80 => pefbox::hv::space::CONTEXT_MAX,
            _ => pefbox::hv::space::SESSION_CONTEXT_MAX,
        };
        assert!(n <= max, "{what}: {n} > {max}");
    }
}

/// The allowlist's layouts against the TPM's own description of its commands:
/// GetCapability(TPM_CAP_COMMANDS) gives each command's TPMA_CC (TPM 2.0 Part 2, TPMA_CC):
/// `cHandles` (bits 25..27, the handle-area size) and `rHandle` (bit 28, a handle in the
/// response). Every relayed command must be one swtpm implements, with the same layout.
#[test]
fn allowlist_layouts_match_the_tpms_own_command_attributes() {
    let rig = Rig::new();
    let p = [2u32, 0x11F, 256].map(u32::to_be_bytes).concat();
    let rsp = rig.over_link(&cmd(0x17A, &[], &[], &p));
    assert_eq!(wire::u32_at(&rsp, 6), Some(0));
    let count = wire::u32_at(&rsp, 15).unwrap() as usize;
    let attrs: std::collections::HashMap<u32, u32> = (0..count)
        .map(|i| wire::u32_at(&rsp, 19 + 4 * i).unwrap())
        .map(|a| (a & 0xFFFF, a))
        .collect();
    println!("swtpm implements {} commands", attrs.len());
    let mut wrong = Vec::new();
    for info in pefbox::hv::rm::ALLOWLIST.iter() {
        let Some(&a) = attrs.get(&info.code) else {
            wrong.push(format!(
                "{} {:#x}: not implemented by swtpm",
                info.name, info.code
            ));
            continue;
        };
        let a = CommandAttributes::from_bits_retain(a);
        let handles = a.c_handles();
        let rhandle = u32::from(a.contains(CommandAttributes::R_HANDLE));
        if handles != u32::from(info.handles) || rhandle != u32::from(info.rsp_handles > 0) {
            wrong.push(format!(
                "{} {:#x}: allowlist {} handles, {} in the response; swtpm {handles}, {rhandle}",
                info.name, info.code, info.handles, info.rsp_handles
            ));
        }
        assert!(
            info.auths <= info.handles,
            "{}: more auths than handles",
            info.name
        );
    }
    println!(
        "{} allowlist entries checked",
        pefbox::hv::rm::ALLOWLIST.len()
    );
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// An RSA-2048 restricted decryption key template (a storage parent).
fn rsa_storage() -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&[0x00, 0x01, 0x00, 0x0B]);
    p.extend_from_slice(&0x0003_0072u32.to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&[0x00, 0x06, 0x00, 0x80, 0x00, 0x43]);
    p.extend_from_slice(&[0x00, 0x10, 0x08, 0x00, 0, 0, 0, 0]);
    p.extend_from_slice(&[0, 0]);
    p
}

#[test]
fn every_caller_holds_more_objects_than_the_tpm_and_uses_each() {
    let rig = Rig::new();
    let callers = [UV, G, H, K];
    let mut keys = Vec::new();
    for &c in &callers {
        for _ in 0..pefbox::hv::OBJECTS_PER_CALLER {
            let k = rig.exec(c, &hmac_primary()).handle();
            keys.push((c, k));
        }
    }
    let loaded = rig.tpm_handles(0x80);
    println!(
        "{} callers x {} objects = {} objects owned; the TPM holds {} loaded",
        callers.len(),
        pefbox::hv::OBJECTS_PER_CALLER,
        keys.len(),
        loaded.len()
    );
    assert_eq!(loaded, Vec::<u32>::new());
    assert!(keys.len() > pefbox::hv::OBJECT_CAPACITY);
    let macs: Vec<Vec<u8>> = keys
        .iter()
        .map(|&(c, k)| {
            let o = rig.exec(c, &hmac(k, b"swap"));
            assert!(o.ok(), "{c:?} {k:#x}: {o}");
            o.rsp
        })
        .collect();
    // Same template, same NULL seed: the same key everywhere, so the same MAC, each computed
    // by a key swapped in for its own caller.
    assert!(macs.windows(2).all(|w| w[0] == w[1]));
    // A child under a swapped parent: Create + Load + use, each across swaps.
    assert_eq!(rig.close(G), H_SUCCESS);
    let parent = rig.exec(G, &primary()).handle();
    let mut p = vec![0, 4, 0, 0, 0, 0];
    let tmpl = hmac_key();
    p.extend_from_slice(&(tmpl.len() as u16).to_be_bytes());
    p.extend_from_slice(&tmpl);
    p.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let created = rig.exec(G, &cmd(0x153, &[parent], PW, &p));
    assert!(created.ok(), "Create: {created}");
    // parameterSize, outPrivate, outPublic, ...
    let r = &created.rsp;
    let priv_len = wire::u16_at(r, 14).unwrap() as usize;
    let pub_at = 16 + priv_len;
    let pub_len = wire::u16_at(r, pub_at).unwrap() as usize;
    let blobs = r[14..pub_at + 2 + pub_len].to_vec();
    let child = rig.exec(G, &cmd(0x157, &[parent], PW, &blobs)).handle();
    println!("G: parent {parent:#x}, child {child:#x} loaded under the swapped parent");
    assert!(rig.exec(G, &hmac(child, b"child")).ok());
    rig.close_all(&callers);
    rig.assert_tpm_holds_none(&[0x80]);
}

#[test]
fn every_caller_holds_more_sessions_than_the_tpm_loads_and_uses_each() {
    let rig = Rig::new();
    let callers = [UV, G, H, K];
    let mut sessions = Vec::new();
    for &c in &callers {
        for _ in 0..pefbox::hv::SESSIONS_PER_CALLER {
            sessions.push((c, rig.exec(c, &start_session(1)).handle()));
        }
    }
    let (loaded, saved) = (rig.tpm_handles(0x02), rig.tpm_handles(0x03));
    println!(
        "{} sessions owned; the TPM holds {} loaded, {} saved",
        sessions.len(),
        loaded.len(),
        saved.len()
    );
    assert_eq!(loaded, Vec::<u32>::new());
    assert_eq!(saved.len(), sessions.len());
    assert!(sessions.len() > pefbox::hv::SESSION_CAPACITY);
    // Each caller's policy sessions advance on their own: PolicyCommandCode on each, then
    // its digest, which differs from a fresh session's and is the same for every session.
    let fresh = rig.exec(G, &policy_get_digest(sessions[3].1));
    assert!(fresh.ok(), "{fresh}");
    let mut digests = Vec::new();
    for &(c, s) in &sessions {
        assert!(rig.exec(c, &policy_command_code(s, 0x159)).ok());
        let d = rig.exec(c, &policy_get_digest(s));
        assert!(d.ok(), "{c:?} {s:#x}: {d}");
        digests.push(d.rsp);
    }
    assert!(digests.windows(2).all(|w| w[0] == w[1]));
    assert_ne!(digests[0], fresh.rsp);
    // At its quota a caller is refused another, and a flush makes room.
    let o = rig.exec(K, &start_session(0));
    assert_eq!(o.rc(), Some(RM_SESSION_MEMORY), "{o}");
    let k = sessions.iter().find(|(c, _)| *c == K).unwrap().1;
    assert!(rig.exec(K, &flush(k)).ok());
    assert!(rig.exec(K, &start_session(0)).ok());
    rig.assert_tpm_holds_none(&[0x02]);
    rig.close_all(&callers);
    rig.assert_tpm_holds_none(&[0x02, 0x03]);
}

/// swtpm refuses to save any session once the oldest saved one is TPM_PT_CONTEXT_GAP_MAX
/// (65,535) saves behind (measured: TPM_RC_CONTEXT_GAP 0x901 from ContextSave). An idle
/// ultravisor session while a guest keeps using its own would then block every caller's
/// sessions; the resource manager refreshes the idle one first.
#[test]
fn an_idle_ultravisor_session_survives_the_tpms_context_gap() {
    let rig = Rig::new();
    let uv = rig.exec(UV, &start_session(1)).handle();
    let g = rig.exec(G, &start_session(1)).handle();
    let c = policy_command_code(g, 0x159);
    let t = Instant::now();
    let mut refused = None;
    let n = 70_000;
    for i in 0..n {
        let o = rig.exec(G, &c);
        if !o.ok() {
            refused = Some((i, o));
            break;
        }
    }
    println!(
        "{n} guest hcalls on its own session in {:.1} s: refused {refused:?}",
        t.elapsed().as_secs_f64()
    );
    let o = rig.exec(UV, &policy_get_digest(uv));
    println!("then the ultravisor's idle session: {o}");
    assert!(
        refused.is_none(),
        "the guest's session was refused: {refused:?}"
    );
    assert!(o.ok(), "the ultravisor's session was lost: {o}");
    rig.close_all(&[G, UV]);
    rig.assert_tpm_holds_none(&[0x03]);
}

// ---- One test per finding ----

#[test]
fn a_guest_cannot_restart_or_satisfy_the_ultravisors_policy_session() {
    let rig = Rig::new();
    let s = rig.exec(UV, &start_session(1)).handle();
    assert!(rig.exec(UV, &policy_command_code(s, 0x159)).ok());
    let before = rig.exec(UV, &policy_get_digest(s));
    assert!(before.ok());
    let mut accepted = Vec::new();
    for (name, c) in policy_commands(s) {
        let n = sent();
        let o = rig.exec(G, &c);
        println!("guest {name} on the ultravisor's session {s:#x}: {o}");
        if o.r3 != H_P2 || sent() != n {
            accepted.push(format!("{name}: {o}"));
        }
    }
    let after = rig.exec(UV, &policy_get_digest(s));
    println!(
        "ultravisor's policy digest unchanged: {}",
        after.rsp == before.rsp
    );
    assert!(accepted.is_empty(), "reached the TPM: {accepted:?}");
    assert_eq!(after.rsp, before.rsp);
}

#[test]
fn a_guest_cannot_use_another_callers_key_or_session() {
    let rig = Rig::new();
    let key = rig.exec(G, &hmac_primary()).handle();
    let mine = rig.exec(G, &hmac(key, b"hello"));
    assert!(mine.ok(), "{mine}");
    let n = sent();
    let theirs = rig.exec(H, &hmac(key, b"hello"));
    println!(
        "caller H: TPM2_HMAC with caller G's key {key:#x}: {theirs}, same MAC: {}",
        theirs.rsp == mine.rsp
    );
    let theirs_reached = (theirs.r3, sent() - n);

    // Every listed command naming G's key in any handle position, and G's HMAC session in
    // H's authorization area.
    let sess = rig.exec(G, &start_session(0)).handle();
    let n = sent();
    let mut leaks = Vec::new();
    for &(code, handles) in &[
        (0x155u32, 1usize), // HMAC
        (0x164, 1),         // EncryptDecrypt
        (0x193, 1),         // EncryptDecrypt2
        (0x154, 1),         // ECDH_ZGen
        (0x163, 1),         // ECDH_KeyGen
        (0x148, 2),         // Certify
        (0x158, 1),         // Quote
        (0x147, 2),         // ActivateCredential
        (0x14B, 2),         // Duplicate
        (0x15D, 1),         // Sign
        (0x177, 1),         // VerifySignature
        (0x159, 1),         // RSA_Decrypt
        (0x174, 1),         // RSA_Encrypt
        (0x15E, 1),         // Unseal
        (0x153, 1),         // Create
        (0x157, 1),         // Load
        (0x191, 1),         // CreateLoaded
        (0x156, 1),         // Import
        (0x150, 2),         // ObjectChangeAuth
        (0x15B, 1),         // HMAC_Start
        (0x162, 1),         // ContextSave
        (0x173, 1),         // ReadPublic
        (0x168, 1),         // MakeCredential
        (0x160, 2),         // PolicySigned (authObject)
    ] {
        for pos in 0..handles {
            let mut hs = vec![TPM_RH_NULL; handles];
            hs[pos] = key;
            let o = rig.exec(H, &cmd(code, &hs, PW, &[0; 8]));
            if o.r3 != H_P2 {
                leaks.push(format!("{code:#x} handle {pos}: {o}"));
            }
        }
        // G's session as H's authorization session.
        let hs = vec![TPM_RH_NULL; handles];
        let o = rig.exec(H, &cmd(code, &hs, &[(sess, CONTINUE)], &[0; 8]));
        if o.r3 != H_P2 {
            leaks.push(format!("{code:#x} with G's session {sess:#x}: {o}"));
        }
    }
    let o = rig.exec(H, &flush(key));
    println!("caller H: FlushContext of G's key: {o}");
    if o.r3 != H_P2 {
        leaks.push(format!("FlushContext: {o}"));
    }
    println!("another caller's handle accepted: {leaks:?}");
    assert_eq!(theirs_reached, (H_P2, 0));
    assert!(leaks.is_empty());
    assert_eq!(sent(), n, "something reached the TPM");
    assert!(rig.exec(G, &hmac(key, b"hello")).ok());
}

#[test]
fn unlisted_commands_get_the_resource_managers_command_code_refusal_and_never_reach_the_tpm() {
    let rig = Rig::new();
    let n = sent();
    let mut wrong = Vec::new();
    for (name, c) in [
        ("TPM_CC_FIRST - 1", cmd(0x11E, &[], &[], &[])),
        ("Startup(CLEAR)", cmd(0x144, &[], &[], &[0, 0])),
        ("Shutdown(STATE)", cmd(0x145, &[], &[], &[0, 1])),
        (
            "EvictControl(PLATFORM, 0x81800001)",
            cmd(
                0x120,
                &[TPM_RH_PLATFORM, 0x8180_0001],
                PW,
                &0x8180_0001u32.to_be_bytes(),
            ),
        ),
        (
            "HierarchyControl",
            cmd(0x121, &[TPM_RH_OWNER], PW, &[0x40, 0, 0, 1, 0]),
        ),
        (
            "HierarchyChangeAuth",
            cmd(0x129, &[TPM_RH_OWNER], PW, &[0, 0]),
        ),
        ("Clear", cmd(0x126, &[0x4000_000A], PW, &[])),
        (
            "DictionaryAttackLockReset",
            cmd(0x139, &[0x4000_000A], PW, &[]),
        ),
        ("PCR_Reset(16)", cmd(0x13D, &[16], PW, &[])),
        (
            "NV_Write",
            cmd(0x137, &[0x0150_0000, 0x0150_0000], PW, &[0, 0, 0, 0]),
        ),
        ("NV_DefineSpace", cmd(0x12A, &[TPM_RH_OWNER], PW, &[0; 8])),
        ("vendor 0x20000000", cmd(0x2000_0000, &[], &[], &[])),
        ("0xFFFFFFFF", cmd(0xFFFF_FFFF, &[], &[], &[])),
    ] {
        let o = rig.exec(G, &c);
        println!("{name}: {o} rsp {:02x?}", o.rsp);
        let want = [0x80, 0x01, 0, 0, 0, 10, 0x00, 0x0B, 0x01, 0x43];
        if o.r3 != H_SUCCESS || o.rsp != want {
            wrong.push(name);
        }
    }
    println!("commands sent to the TPM: {}", sent() - n);
    assert!(
        wrong.is_empty(),
        "not refused as RM_COMMAND_CODE: {wrong:?}"
    );
    assert_eq!(sent(), n);
}

#[test]
fn hash_and_hmac_sequences_are_tracked_and_flushed_on_close() {
    let rig = Rig::new();
    let mut made = Vec::new();
    for c in [
        hash_sequence_start(),
        hash_sequence_start(),
        hash_sequence_start(),
    ] {
        let o = rig.exec(G, &c);
        println!("HashSequenceStart: {o}");
        if o.ok() {
            made.push(o.handle());
        }
    }
    println!(
        "sequences made {made:x?}, tracked handles: {}",
        rig.hv.tracked_handles(G)
    );
    let tracked = rig.hv.tracked_handles(G);
    let foreign_flush = rig.exec(H, &flush(made[0]));
    println!("caller H flushes G's sequence: {foreign_flush}");
    assert_eq!(rig.close(G), H_SUCCESS);
    let left = rig.tpm_handles(0x80);
    println!("after G's CLOSE the TPM holds {left:x?}");
    let next = rig.exec(H, &primary());
    println!("caller H's CreatePrimary: {next}");
    assert_eq!(tracked, made.len());
    assert_eq!(foreign_flush.r3, H_P2);
    assert_eq!(left, Vec::<u32>::new());
    assert!(next.ok());

    // HMAC_Start is tracked the same way; SequenceComplete ends (forgets) a sequence.
    let key = rig.exec(K, &hmac_primary()).handle();
    let seq = rig
        .exec(K, &cmd(0x15B, &[key], PW, &[0, 0, 0x00, 0x0B]))
        .handle();
    assert_eq!(rig.hv.tracked_handles(K), 2);
    let done = rig.exec(
        K,
        &cmd(0x13E, &[seq], PW, &[0, 3, b'a', b'b', b'c', 0x40, 0, 0, 7]),
    );
    assert!(done.ok(), "SequenceComplete: {done}");
    assert_eq!(rig.hv.tracked_handles(K), 1);
    rig.close_all(&[K, H]);
    rig.assert_tpm_holds_none(&[0x80]);
}

#[test]
fn one_caller_cannot_exhaust_objects_or_sessions() {
    let rig = Rig::new();
    let (objects, last) = rig.until_refused(G, &primary(), 5);
    println!("guest G: {objects} objects, then {last:?}");
    let other = rig.exec(H, &primary());
    println!("guest H's CreatePrimary: {other}");
    let object_refusal = last.map(|o| (o.r3, o.rc()));

    let (sessions, last) = rig.until_refused(G, &start_session(1), 5);
    println!("guest G: {sessions} sessions, then {last:?}");
    let o = rig.exec(H, &start_session(1));
    println!("guest H's StartAuthSession: {o}");
    let uv = rig.exec(UV, &start_session(1));
    println!("ultravisor's StartAuthSession: {uv}");
    assert!(o.ok(), "guest H's session was starved by G alone");
    assert!(other.ok(), "guest H's object was starved");
    assert_eq!(object_refusal, Some((H_SUCCESS, Some(RM_OBJECT_MEMORY))));
    assert!(uv.ok(), "the ultravisor's session was starved");
    assert!(rig.exec(UV, &policy_command_code(uv.handle(), 0x159)).ok());
    assert_eq!(
        last.map(|o| (o.r3, o.rc())),
        Some((H_SUCCESS, Some(RM_SESSION_MEMORY)))
    );
    rig.close_all(&[G, H, UV]);
    rig.assert_tpm_holds_none(&[0x80, 0x02]);
}

#[test]
fn one_partition_on_several_hardware_threads_is_one_caller() {
    let rig = Rig::new();
    for pir in 0..4 {
        let o = rig.exec(CallerId::of(2, pir), &get_random());
        println!("partition 2 thread {pir}: GetRandom {o}");
    }
    println!("open slots: {}", rig.hv.open_sessions());
    let uv = rig.exec(UV, &get_random());
    println!("ultravisor's GetRandom: {uv}");
    assert!(uv.ok());
    assert_eq!(rig.hv.open_sessions(), 2);
    // Its threads share one quota and one set of handles.
    let a = rig.exec(CallerId::of(2, 0), &primary()).handle();
    let b = rig.exec(CallerId::of(2, 1), &primary()).handle();
    let c = rig.exec(CallerId::of(2, 2), &primary()).handle();
    let d = rig.exec(CallerId::of(2, 3), &primary()).handle();
    let e = rig.exec(CallerId::of(2, 1), &primary());
    println!(
        "partition 2: {a:#x} on thread 0, {b:#x} on 1, {c:#x} on 2, {d:#x} on 3, then thread 1: {e}"
    );
    assert_eq!(e.rc(), Some(RM_OBJECT_MEMORY));
    assert!(rig.exec(CallerId::of(2, 3), &read_public(a)).ok());
    rig.close_all(&[CallerId::of(2, 3)]);
    rig.assert_tpm_holds_none(&[0x80]);
}

#[test]
fn get_capability_handles_shows_each_caller_only_its_own() {
    let rig = Rig::new();
    let g_obj = rig.exec(G, &primary()).handle();
    let g_sess = rig.exec(G, &start_session(0)).handle();
    let h_obj = rig.exec(H, &primary()).handle();
    let shown_h = (rig.shown(H, 0x80), rig.shown(H, 0x02));
    let shown_g = (rig.shown(G, 0x80), rig.shown(G, 0x02));
    println!("H is shown {shown_h:x?}; G is shown {shown_g:x?}");
    assert_eq!(shown_h, (vec![h_obj], vec![]));
    assert_eq!(shown_g, (vec![g_obj], vec![g_sess]));
    assert_eq!(rig.shown(K, 0x80), Vec::<u32>::new());
    // A policy session is listed by the TPM with its own handle form: still G's.
    assert!(rig.exec(G, &flush(g_sess)).ok());
    let g_policy = rig.exec(G, &start_session(1)).handle();
    let listed = rig.shown(G, 0x02);
    println!("G's policy session {g_policy:#x}; G is shown {listed:x?}");
    assert_eq!(listed, vec![g_policy]);
    assert_eq!(rig.shown(H, 0x02), Vec::<u32>::new());
    // Persistent handles are not per-caller: shown as the TPM lists them.
    let o = rig.exec(K, &get_cap_handles(0x81));
    assert!(o.ok());
}

// ---- The Linux kernel's tpm2 SpaceTest (tools/testing/selftests/tpm2/tpm2_tests.py) ----

#[test]
fn space_test_make_two_spaces() {
    let rig = Rig::new();
    let root1 = rig.exec(G, &primary()).handle();
    let root2 = rig.exec(H, &primary()).handle();
    let root3 = rig.exec(H, &primary()).handle();
    println!("roots {root1:08x} {root2:08x} {root3:08x}");
}

#[test]
fn space_test_flush_context() {
    let rig = Rig::new();
    let root1 = rig.exec(G, &primary()).handle();
    assert!(rig.exec(G, &flush(root1)).ok());
    assert_eq!(rig.hv.tracked_handles(G), 0);
}

#[test]
fn space_test_get_handles() {
    let rig = Rig::new();
    rig.exec(G, &primary()).handle();
    rig.exec(H, &primary()).handle();
    rig.exec(H, &primary()).handle();
    let handles = rig.shown(H, 0x80);
    println!("space2 handles {handles:08x?}");
    assert_eq!(handles.len(), 2);
}

#[test]
fn space_test_invalid_cc() {
    let rig = Rig::new();
    rig.exec(G, &primary()).handle();
    let o = rig.exec(G, &cmd(0x11E, &[], &[], &[])); // TPM2_CC_FIRST - 1
    println!("invalid cc: {o}");
    assert_eq!(o.r3, H_SUCCESS);
    assert_eq!(o.rc(), Some(RM_COMMAND_CODE)); // TPM2_RC_COMMAND_CODE | TSS2_RESMGR_TPM_RC_LAYER
}

// ---- tpm2-abrmd's transient-handle tests, in spirit ----

#[test]
fn abrmd_max_transient_objects_per_caller() {
    let rig = Rig::new();
    let mut made = Vec::new();
    let refusal = loop {
        let o = rig.exec(G, &primary());
        if !o.ok() {
            break o;
        }
        made.push(o.handle());
        assert!(made.len() < 10, "no quota");
    };
    println!("quota: {} transient objects, then {refusal}", made.len());
    assert_eq!(refusal.rc(), Some(RM_OBJECT_MEMORY));
    assert!(rig.exec(G, &flush(made[0])).ok());
    assert!(rig.exec(G, &primary()).ok());
    rig.close_all(&[G]);
    rig.assert_tpm_holds_none(&[0x80]);
}

#[test]
fn abrmd_a_session_from_a_closed_caller_is_unusable() {
    let rig = Rig::new();
    let s = rig.exec(G, &start_session(0)).handle();
    let saved = rig.exec(G, &cmd(0x162, &[s], &[], &[]));
    assert!(saved.ok(), "ContextSave: {saved}");
    let blob = saved.rsp[10..].to_vec();
    assert_eq!(rig.close(G), H_SUCCESS);
    let o = rig.exec(H, &cmd(0x161, &[], &[], &blob));
    println!("H ContextLoads G's saved session after G closed: {o}");
    assert!(!o.ok());
    let o = rig.exec(H, &cmd(0x173, &[TPM_RH_NULL], &[(s, CONTINUE)], &[]));
    println!("H names G's old session {s:#x}: {o}");
    assert!(!o.ok());
    rig.assert_tpm_holds_none(&[0x02, 0x03]);
}

// ---- Soak ----

/// xorshift64: deterministic, so a failure replays.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn soak_four_callers_ten_thousand_hcalls() {
    const HCALLS: usize = 10_000;
    let rig = Rig::new();
    let callers = [UV, G, H, K];
    let mut owned: Vec<Vec<u32>> = vec![Vec::new(); 4];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut hcalls, mut wrong_owner, mut undefined) = (0usize, 0usize, Vec::new());
    let mut refusals = std::collections::BTreeMap::<String, usize>::new();
    let t0 = Instant::now();
    while hcalls < HCALLS {
        let i = rng.below(4);
        let who = callers[i];
        hcalls += 1;
        match rng.below(10) {
            0 => {
                assert_eq!(rig.close(who), H_SUCCESS);
                owned[i].clear();
            }
            1..=3 => {
                let c = match rng.below(3) {
                    0 => primary(),
                    1 => hash_sequence_start(),
                    _ => start_session(rng.below(2) as u8),
                };
                let o = rig.exec(who, &c);
                if o.ok() {
                    owned[i].push(o.handle());
                } else if o.r3 == H_SUCCESS
                    && matches!(o.rc(), Some(RM_OBJECT_MEMORY | RM_SESSION_MEMORY))
                {
                    *refusals
                        .entry(format!("{:#x}", o.rc().unwrap()))
                        .or_default() += 1;
                } else {
                    undefined.push(format!("create {who:?}: {o}"));
                }
            }
            4 | 5 => {
                // Use an own handle.
                if let Some(&h) = owned[i].get(rng.below(owned[i].len().max(1))) {
                    let c = if h >> 24 == 0x80 {
                        read_public(h)
                    } else {
                        cmd(0x17B, &[], &[(h, CONTINUE)], &8u16.to_be_bytes())
                    };
                    let o = rig.exec(who, &c);
                    // A hash sequence has no public area: TPM_RC_HANDLE-class answers are
                    // the TPM's, not the RM's.
                    if o.r3 != H_SUCCESS {
                        undefined.push(format!("use own {h:#x}: {o}"));
                    }
                } else {
                    let o = rig.exec(who, &get_random());
                    assert!(o.ok());
                }
            }
            6 | 7 => {
                // Attack: another caller's handle. Object handles are virtual and per caller
                // (each caller's first object is 0x80ffff00), so only a value the attacker
                // does not own itself names another's object.
                let j = (i + 1 + rng.below(3)) % 4;
                let theirs: Vec<u32> = owned[j]
                    .iter()
                    .copied()
                    .filter(|h| !owned[i].contains(h))
                    .collect();
                if let Some(&h) = theirs.get(rng.below(theirs.len().max(1))) {
                    let c = match rng.below(3) {
                        0 => flush(h),
                        1 if h >> 24 == 0x80 => read_public(h),
                        _ => cmd(0x173, &[TPM_RH_NULL], &[(h, CONTINUE)], &[]),
                    };
                    let o = rig.exec(who, &c);
                    if o.ok() {
                        wrong_owner += 1;
                        println!("wrong-owner success: {who:?} on {h:#x}: {o}");
                    } else if o.r3 != H_P2 {
                        undefined.push(format!("foreign {h:#x}: {o}"));
                    }
                } else {
                    let o = rig.exec(who, &get_random());
                    assert!(o.ok());
                }
            }
            _ => {
                // Flush an own handle.
                if !owned[i].is_empty() {
                    let k = rng.below(owned[i].len());
                    let h = owned[i].swap_remove(k);
                    let o = rig.exec(who, &flush(h));
                    if !o.ok() {
                        undefined.push(format!("flush own {h:#x}: {o}"));
                    }
                } else {
                    let o = rig.exec(who, &get_random());
                    assert!(o.ok());
                }
            }
        }
    }
    rig.close_all(&callers);
    let leaked =
        rig.tpm_handles(0x80).len() + rig.tpm_handles(0x02).len() + rig.tpm_handles(0x03).len();
    println!(
        "soak: {hcalls} hcalls, {leaked} leaked handles, {wrong_owner} wrong-owner successes \
         ({:.1} s; RM refusals {refusals:?}; undefined outcomes {})",
        t0.elapsed().as_secs_f64(),
        undefined.len()
    );
    assert_eq!(leaked, 0);
    assert_eq!(wrong_owner, 0);
    assert!(
        undefined.is_empty(),
        "{:?}",
        &undefined[..undefined.len().min(10)]
    );
}
