//! H_TPM_COMM's CLOSE_SESSION against a real TPM: the hypervisor (`pefbox::hv`) with fake
//! guest memory in front of a real swtpm (`xtask::swtpm`, TCP), so the resource-manager
//! flush on close is checked against what a TPM actually holds (GetCapability of its
//! handles), not against a fake's bookkeeping.

mod common;

use common::hv::*;

use pefbox::hv::{wire, CallerId};
use pefbox::papr::{
    to_regs, HcallReturn, H_SUCCESS, H_TPM_COMM, TPM_COMM_OP_CLOSE_SESSION, TPM_COMM_OP_EXECUTE,
};
use pefbox::tpm::wire::{cc, st, Header, HEADER_LEN};

const EXEC: u64 = TPM_COMM_OP_EXECUTE;
const CLOSE: u64 = TPM_COMM_OP_CLOSE_SESSION;
const A: CallerId = CallerId(1);
const B: CallerId = CallerId(2);

/// A TPM command with a correct header: tag NO_SESSIONS, `code`, `body`.
fn command(code: u32, body: &[u8]) -> Vec<u8> {
    let size = (HEADER_LEN + body.len()) as u32;
    let mut c = Header {
        tag: st::NO_SESSIONS,
        size,
        code,
    }
    .to_bytes()
    .to_vec();
    c.extend_from_slice(body);
    c
}

fn call(hv: &Hv, who: CallerId, op: u64, inb: u64, ins: u64, outb: u64, outs: u64) -> HcallReturn {
    to_regs(&hv.hcall(who, H_TPM_COMM, &[op, inb, ins, outb, outs, 0, 0, 0, 0]))
}

/// CreatePrimary in the null hierarchy: an ECC P-256 restricted decryption key.
fn create_primary() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&TPM_RH_NULL.to_be_bytes());
    // Password authorization area: handle, empty nonce, attrs 0, empty hmac.
    b.extend_from_slice(&9u32.to_be_bytes());
    b.extend_from_slice(&TPM_RS_PW.to_be_bytes());
    b.extend_from_slice(&[0, 0, 0, 0, 0]);
    // inSensitive: empty userAuth and data.
    b.extend_from_slice(&[0, 4, 0, 0, 0, 0]);
    // inPublic.
    let mut p = Vec::new();
    p.extend_from_slice(&0x0023u16.to_be_bytes()); // ECC
    p.extend_from_slice(&0x000Bu16.to_be_bytes()); // SHA-256
    p.extend_from_slice(&0x0003_0072u32.to_be_bytes()); // fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|restricted|decrypt
    p.extend_from_slice(&[0, 0]); // authPolicy
    p.extend_from_slice(&[0x00, 0x06, 0x00, 0x80, 0x00, 0x43]); // AES-128-CFB
    p.extend_from_slice(&[0x00, 0x10]); // scheme NULL
    p.extend_from_slice(&[0x00, 0x03]); // NIST P-256
    p.extend_from_slice(&[0x00, 0x10]); // kdf NULL
    p.extend_from_slice(&[0, 0, 0, 0]); // unique: empty x, y
    b.extend_from_slice(&(p.len() as u16).to_be_bytes());
    b.extend_from_slice(&p);
    b.extend_from_slice(&[0, 0]); // outsideInfo
    b.extend_from_slice(&[0, 0, 0, 0]); // creationPCR: none
    let mut c = command(cc::CREATE_PRIMARY, &b);
    c[..2].copy_from_slice(&0x8002u16.to_be_bytes());
    c
}

/// StartAuthSession: unsalted, unbound HMAC session, SHA-256.
fn start_auth_session() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&TPM_RH_NULL.to_be_bytes());
    b.extend_from_slice(&TPM_RH_NULL.to_be_bytes());
    b.extend_from_slice(&[0, 16]);
    b.extend_from_slice(&[0x42; 16]); // nonceCaller
    b.extend_from_slice(&[0, 0]); // encryptedSalt
    b.push(0x00); // TPM_SE_HMAC
    b.extend_from_slice(&[0x00, 0x10]); // symmetric NULL
    b.extend_from_slice(&[0x00, 0x0B]); // SHA-256
    command(cc::START_AUTH_SESSION, &b)
}

/// The handles of type `ht` (0x80 transient, 0x02 loaded session) the TPM holds, asked over
/// the hypervisor's link outside any hcall (through H_TPM_COMM a caller is shown only its own
/// handles, see hv_rm.rs). `who` then checks the filtered view agrees for its own.
fn handles(hv: &Hv, mem: &Memory, who: CallerId, ht: u32) -> Vec<u32> {
    let mut b = Vec::new();
    b.extend_from_slice(&1u32.to_be_bytes()); // TPM_CAP_HANDLES
    b.extend_from_slice(&(ht << 24).to_be_bytes());
    b.extend_from_slice(&64u32.to_be_bytes());
    let c = command(0x17A, &b);
    let list = |rsp: &[u8]| -> Vec<u32> {
        assert_eq!(wire::code(rsp), Some(0), "GetCapability failed");
        // moreData(1) capability(4) count(4) handles...
        let n = wire::u32_at(rsp, 15).unwrap() as usize;
        (0..n)
            .map(|i| wire::u32_at(rsp, 19 + 4 * i).unwrap())
            .collect()
    };
    let all = hv
        .with_link(|l| {
            let mut out = [0u8; 4096];
            let n = pefbox::tpm::Transport::transact(l, &c, &mut out).expect("link");
            list(&out[..n])
        })
        .unwrap();
    assert!(mem.poke(IN, &c));
    let r = call(hv, who, EXEC, IN, c.len() as u64, OUT, 4096);
    assert_eq!(r.status, H_SUCCESS);
    let mut rsp = vec![0u8; r.out[0] as usize];
    assert!(mem.peek(OUT, &mut rsp));
    assert!(list(&rsp).is_empty(), "the observer owns nothing");
    all
}

#[test]
fn close_leaves_no_transient_objects_or_sessions_in_a_real_tpm() {
    // The TPM link is a TCP connection to a real swtpm (`Swtpm::start` installs swtpm when
    // it is missing, see tools::ensure); `_sw` keeps the process alive for the whole test.
    let (_sw, mem, hv) = hv_over_swtpm();
    let observer = CallerId(9);

    // Caller A: two primaries (one flushed by A itself) and a session.
    let mut made = Vec::new();
    for c in [create_primary(), create_primary(), start_auth_session()] {
        assert!(mem.poke(IN, &c));
        let r = call(&hv, A, EXEC, IN, c.len() as u64, OUT, 4096);
        assert_eq!(r.status, H_SUCCESS);
        let mut rsp = vec![0u8; r.out[0] as usize];
        assert!(mem.peek(OUT, &mut rsp));
        assert_eq!(wire::code(&rsp), Some(0), "TPM refused {:02x?}", &c[6..10]);
        made.push(wire::u32_at(&rsp, 10).unwrap());
    }
    let c = command(cc::FLUSH_CONTEXT, &made[0].to_be_bytes());
    assert!(mem.poke(IN, &c));
    assert_eq!(call(&hv, A, EXEC, IN, 14, OUT, 4096).status, H_SUCCESS);
    assert_eq!(hv.tracked_handles(A), 2);
    // Caller B: one primary that A's close must leave alone.
    let c = create_primary();
    assert!(mem.poke(IN, &c));
    assert_eq!(
        call(&hv, B, EXEC, IN, c.len() as u64, OUT, 4096).status,
        H_SUCCESS
    );
    let mut b_rsp = [0u8; 14];
    assert!(mem.peek(OUT, &mut b_rsp));
    let b_handle = wire::u32_at(&b_rsp, 10).unwrap();

    // Objects and sessions are saved contexts between hcalls (the resource manager swaps
    // them), objects under virtual handles of each caller's own: the TPM holds none of them
    // loaded, and A's session saved.
    assert_eq!((made[1], b_handle), (0x80FF_FF01, 0x80FF_FF00));
    assert_eq!(handles(&hv, &mem, observer, 0x80), Vec::<u32>::new());
    assert_eq!(handles(&hv, &mem, observer, 0x02), Vec::<u32>::new());
    let saved = handles(&hv, &mem, observer, 0x03);
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0] & 0x00FF_FFFF, made[2] & 0x00FF_FFFF);

    assert_eq!(call(&hv, A, CLOSE, 0, 0, 0, 0).status, H_SUCCESS);
    assert_eq!(hv.tracked_handles(B), 1);
    assert_eq!(handles(&hv, &mem, observer, 0x02), Vec::<u32>::new());
    assert_eq!(handles(&hv, &mem, observer, 0x03), Vec::<u32>::new());
    assert_eq!(call(&hv, B, CLOSE, 0, 0, 0, 0).status, H_SUCCESS);
    assert_eq!(hv.tracked_handles(B), 0);
    assert_eq!(handles(&hv, &mem, observer, 0x80), Vec::<u32>::new());
    assert_eq!(call(&hv, observer, CLOSE, 0, 0, 0, 0).status, H_SUCCESS);
    assert_eq!(hv.open_sessions(), 0);
}
