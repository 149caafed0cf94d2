//! Host tests of H_TPM_COMM through [`Hypervisor::hcall`], with a FAKE TPM link
//! and FAKE guest memory: every row of the validation table, its order, the
//! boundaries, the session slots and the flush on close.

use super::*;
use papr::{
    to_regs, HcallReturn, H_FUNCTION, H_P2, H_P3, H_P4, H_P5, H_PARAMETER, H_RESOURCE, H_SUCCESS,
};
use std::sync::{Arc, Mutex};
use std::vec::Vec;

const RAM_BASE: u64 = 0x1000_0000;
const RAM_LEN: usize = 0x1_0000;
const RAM_END: u64 = RAM_BASE + RAM_LEN as u64;
const HV_MEM: GuestRange = GuestRange::new(0x2000_0000, 0x100_0000);
const IN: u64 = RAM_BASE;
const OUT: u64 = RAM_BASE + 0x2000;

const EXEC: u64 = TPM_COMM_OP_EXECUTE;
const CLOSE: u64 = TPM_COMM_OP_CLOSE_SESSION;
const A: CallerId = CallerId(1);
const B: CallerId = CallerId(2);

/// What the FAKE TPM does with the next commands.
#[derive(Clone, Debug)]
enum FakeMode {
    /// Behave: hand out handles, honour FlushContext, answer others with `extra`
    /// parameter bytes (0x5A) after a success header.
    Normal { extra: usize },
    /// Every transact fails with this error.
    Fail(TransportError),
    /// Put these bytes in the response buffer (as many as fit) and return `claim`.
    Raw { bytes: Vec<u8>, claim: usize },
}

#[derive(Debug)]
struct FakeTpmState {
    mode: FakeMode,
    next_object: u32,
    next_session: u32,
    live: Vec<u32>,
    flushed: Vec<u32>,
    commands: Vec<Vec<u8>>,
    refuse_flush_rc: Option<u32>,
    refuse_load_rc: Option<u32>,
    retry_loads: usize,
    sequence: u64,
}

/// FAKE TPM link: shared state so the test can inspect it after the hypervisor owns the link.
#[derive(Clone)]
struct FakeTpm(Arc<Mutex<FakeTpmState>>);

impl FakeTpm {
    fn new() -> Self {
        FakeTpm(Arc::new(Mutex::new(FakeTpmState {
            mode: FakeMode::Normal { extra: 0 },
            next_object: 0x8000_0000,
            next_session: 0x0200_0000,
            live: Vec::new(),
            flushed: Vec::new(),
            commands: Vec::new(),
            refuse_flush_rc: None,
            refuse_load_rc: None,
            retry_loads: 0,
            sequence: 0,
        })))
    }
    fn set_mode(&self, m: FakeMode) {
        self.0.lock().unwrap().mode = m;
    }
    fn commands(&self) -> usize {
        self.0.lock().unwrap().commands.len()
    }
    /// The codes of the commands sent after the first `n`.
    fn codes_since(&self, n: usize) -> Vec<u32> {
        let s = self.0.lock().unwrap();
        s.commands[n..]
            .iter()
            .map(|c| wire::code(c).unwrap())
            .collect()
    }
    fn last_command(&self) -> Vec<u8> {
        self.0.lock().unwrap().commands.last().cloned().unwrap()
    }
    fn live(&self) -> Vec<u32> {
        self.0.lock().unwrap().live.clone()
    }
    fn flushed(&self) -> Vec<u32> {
        self.0.lock().unwrap().flushed.clone()
    }
    /// The sequence of the last context saved.
    fn sequence(&self) -> u64 {
        self.0.lock().unwrap().sequence
    }
    /// The TPM drops a handle by itself (a session used without continueSession).
    fn forget_live(&self, h: u32) {
        self.0.lock().unwrap().live.retain(|x| *x != h);
    }
}

/// The fake's TPMS_CONTEXT of session `h` saved at `seq`.
fn session_context(h: u32, seq: u64) -> Vec<u8> {
    let mut ctx = seq.to_be_bytes().to_vec();
    ctx.extend_from_slice(&h.to_be_bytes());
    ctx.extend_from_slice(&0x4000_0007u32.to_be_bytes());
    ctx.extend_from_slice(&[0, 4]);
    ctx.extend_from_slice(&h.to_be_bytes());
    ctx
}

/// A TPM response with a correct header: tag NO_SESSIONS, `rc`, `body` (the same layout
/// as [`command`]'s, the code in the command code's place).
fn response(rc: u32, body: &[u8]) -> Vec<u8> {
    command(rc, body)
}

impl Transport for FakeTpm {
    fn transact(&mut self, command: &[u8], out: &mut [u8]) -> Result<usize, TransportError> {
        let mut s = self.0.lock().unwrap();
        s.commands.push(command.to_vec());
        let r = match s.mode.clone() {
            FakeMode::Fail(e) => return Err(e),
            FakeMode::Raw { bytes, claim } => {
                let n = bytes.len().min(out.len());
                out[..n].copy_from_slice(&bytes[..n]);
                return Ok(claim);
            }
            FakeMode::Normal { extra } => {
                let code = wire::code(command).unwrap();
                let saved = wire::u32_at(command, 18).filter(|_| code == cc::CONTEXT_LOAD);
                if let (true, Some(_)) = (s.retry_loads > 0, saved) {
                    s.retry_loads -= 1;
                    response(0x922, &[])
                } else if let (Some(rc), Some(_)) = (s.refuse_load_rc, saved) {
                    response(rc, &[])
                } else if let Some(h) = saved.filter(|h| rm::is_session(*h)) {
                    // A session's context loads under its own handle.
                    response(0, &h.to_be_bytes())
                } else if wire::creates_handle(code) {
                    let h = if code == cc::START_AUTH_SESSION {
                        s.next_session += 1;
                        s.next_session - 1
                    } else {
                        s.next_object += 1;
                        s.next_object - 1
                    };
                    s.live.push(h);
                    response(0, &h.to_be_bytes())
                } else if code == cc::CONTEXT_SAVE {
                    // A TPMS_CONTEXT naming the object in its blob (a session: its handle as
                    // savedHandle too), with a growing sequence.
                    let h = wire::u32_at(command, 10).unwrap();
                    s.sequence += 1;
                    let mut ctx = s.sequence.to_be_bytes().to_vec();
                    let saved = if rm::is_session(h) { h } else { 0x8000_0000 };
                    ctx.extend_from_slice(&saved.to_be_bytes());
                    ctx.extend_from_slice(&0x4000_0007u32.to_be_bytes());
                    ctx.extend_from_slice(&[0, 4]);
                    ctx.extend_from_slice(&h.to_be_bytes());
                    response(0, &ctx)
                } else if code == cc::FLUSH_CONTEXT {
                    let h = wire::u32_at(command, 10).unwrap();
                    if let Some(rc) = s.refuse_flush_rc {
                        response(rc, &[])
                    } else if s.live.contains(&h) {
                        s.live.retain(|x| *x != h);
                        s.flushed.push(h);
                        response(0, &[])
                    } else {
                        response(if h >> 24 == 0x80 { 0x1C4 } else { 0x1CB }, &[])
                    }
                } else {
                    response(0, &vec![0x5A; extra])
                }
            }
        };
        out[..r.len()].copy_from_slice(&r);
        Ok(r.len())
    }
}

type Hv = Hypervisor<FakeTpm, FakeGuestMemory<RAM_LEN>, Meddler>;

fn setup() -> (Box<Hv>, FakeTpm) {
    let tpm = FakeTpm::new();
    let hv = Box::new(Hypervisor::new(
        FakeGuestMemory::new(RAM_BASE),
        Meddler::new(Meddle::Off),
    ));
    let regions =
        RegionTable::new(&[GuestRange::new(RAM_BASE, RAM_LEN as u64)], &[HV_MEM]).unwrap();
    hv.configure(regions, Some(tpm.clone()));
    (hv, tpm)
}

/// A TPM command with a correct header: tag NO_SESSIONS, `code`, `body`.
fn command(code: u32, body: &[u8]) -> Vec<u8> {
    let mut c = Vec::new();
    c.extend_from_slice(&0x8001u16.to_be_bytes());
    c.extend_from_slice(&((10 + body.len()) as u32).to_be_bytes());
    c.extend_from_slice(&code.to_be_bytes());
    c.extend_from_slice(body);
    c
}

const CC_GET_RANDOM: u32 = 0x17B;
const CC_READ_PUBLIC: u32 = 0x173;

fn get_random() -> Vec<u8> {
    command(CC_GET_RANDOM, &8u16.to_be_bytes())
}

fn call<L: Transport>(
    hv: &Hypervisor<L, FakeGuestMemory<RAM_LEN>, Meddler>,
    who: CallerId,
    op: u64,
    inb: u64,
    ins: u64,
    outb: u64,
    outs: u64,
) -> HcallReturn {
    to_regs(&hv.hcall(who, H_TPM_COMM, &[op, inb, ins, outb, outs, 0, 0, 0, 0]))
}

/// Puts `cmd` at IN and executes it with the response at OUT (out_size 4096).
fn exec(hv: &Hv, who: CallerId, cmd: &[u8]) -> HcallReturn {
    assert!(hv.memory.poke(IN, cmd));
    call(hv, who, EXEC, IN, cmd.len() as u64, OUT, 4096)
}

fn created_handle(hv: &Hv, r: &HcallReturn) -> u32 {
    assert_eq!(r.status, H_SUCCESS);
    assert_eq!(r.out[0], 14);
    let mut b = [0u8; 14];
    assert!(hv.memory.peek(OUT, &mut b));
    wire::u32_at(&b, 10).unwrap()
}

/// TPM2_StartAuthSession(tpmKey NULL, bind NULL), as the fake TPM takes it.
fn start_auth_session() -> Vec<u8> {
    command(0x176, &[0x40, 0, 0, 7, 0x40, 0, 0, 7])
}

/// Starts a session for `who`; returns its handle.
fn started_session(hv: &Hv, who: CallerId) -> u32 {
    created_handle(hv, &exec(hv, who, &start_auth_session()))
}

fn peek(hv: &Hv, addr: u64, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    assert!(hv.memory.peek(addr, &mut v));
    v
}

#[test]
fn every_failure_has_the_status_of_its_row() {
    let rows = [
        (TpmCommError::NotConfigured, H_FUNCTION),
        (TpmCommError::UnknownOperation(3), H_PARAMETER),
        (TpmCommError::InSize(InSizeError::TooLarge), H_P3),
        (TpmCommError::InSize(InSizeError::TooShort), H_P3),
        (TpmCommError::InSize(InSizeError::HeaderMismatch(12)), H_P3),
        (TpmCommError::OutSizeTooSmall, H_P5),
        (TpmCommError::InBuffer(RangeError::Wraps), H_P2),
        (TpmCommError::OutBuffer(RangeError::NotCallerMemory), H_P4),
        (TpmCommError::ForeignHandle(0x8000_0000), H_P2),
        (TpmCommError::ForbiddenHandle(0x4000_000C), H_P2),
        (TpmCommError::SlotsExhausted, H_RESOURCE),
        (TpmCommError::HandleTableFull, H_RESOURCE),
        (TpmCommError::Link(TransportError::Timeout), H_RESOURCE),
        (
            TpmCommError::BadResponse(ResponseError::MissingHandle),
            H_RESOURCE,
        ),
        (TpmCommError::Swap { handle: 0, rc: 0 }, H_RESOURCE),
        (TpmCommError::FlushRefused { handle: 0, rc: 0 }, H_RESOURCE),
    ];
    for (e, status) in rows {
        assert_eq!(e.status().status(), status, "{e:?}");
        assert_eq!(to_regs(&Err(e.status())), HcallReturn::status(status));
    }
}

#[test]
fn unknown_hcall_numbers_are_h_function() {
    let (hv, tpm) = setup();
    for nr in [0, 4, 0xEF0C, 0xEF11, 0xEF14, u64::MAX] {
        let r = to_regs(&hv.hcall(A, nr, &[EXEC, IN, 12, OUT, 4096, 0, 0, 0, 0]));
        assert_eq!(r, HcallReturn::status(H_FUNCTION), "nr {nr:#x}");
    }
    assert_eq!(tpm.commands(), 0);
}

#[test]
fn no_tpm_configured_is_h_function_before_anything_else() {
    let hv: Hv = Hypervisor::new(FakeGuestMemory::new(RAM_BASE), Meddler::new(Meddle::Off));
    assert_eq!(call(&hv, A, EXEC, IN, 12, OUT, 4096).status, H_FUNCTION);
    assert_eq!(call(&hv, A, 7, 0, 0, 0, 0).status, H_FUNCTION);
    assert_eq!(call(&hv, A, CLOSE, 0, 0, 0, 0).status, H_FUNCTION);
    // Memory configured but no link: still H_FUNCTION.
    let regions = RegionTable::new(&[GuestRange::new(RAM_BASE, 4096)], &[]).unwrap();
    hv.configure(regions, None);
    assert_eq!(call(&hv, A, EXEC, IN, 12, OUT, 4096).status, H_FUNCTION);
}

#[test]
fn unknown_operation_is_h_parameter_even_with_every_other_argument_wrong() {
    let (hv, tpm) = setup();
    for op in [0, 3, 0x100, u64::MAX] {
        assert_eq!(call(&hv, A, op, IN, 12, OUT, 4096).status, H_PARAMETER);
        assert_eq!(
            call(&hv, A, op, u64::MAX, 0, u64::MAX, 0).status,
            H_PARAMETER
        );
    }
    assert_eq!(tpm.commands(), 0);
    assert_eq!(hv.memory.reads(), 0);
}

#[test]
fn in_size_boundaries() {
    let (hv, tpm) = setup();
    for bad in [0u64, 1, 9, 4097, 0x1_0000, u64::MAX] {
        let r = call(&hv, A, EXEC, IN, bad, OUT, 4096);
        assert_eq!(r, HcallReturn::status(H_P3), "in_size {bad}");
    }
    assert_eq!(tpm.commands(), 0);
    assert_eq!(hv.memory.reads(), 0);

    // 10: a bare header is a legal size.
    let r = exec(&hv, A, &command(CC_GET_RANDOM, &[]));
    assert_eq!((r.status, r.out[0]), (H_SUCCESS, 10));
    // 4096: the largest.
    let big = command(CC_GET_RANDOM, &[7u8; 4086]);
    assert_eq!(big.len(), 4096);
    let r = exec(&hv, A, &big);
    assert_eq!((r.status, r.out[0]), (H_SUCCESS, 10));
    assert_eq!(tpm.last_command(), big);
}

#[test]
fn in_size_must_match_the_header() {
    let (hv, tpm) = setup();
    let c = get_random(); // 12 bytes, header says 12
    assert!(hv.memory.poke(IN, &c));
    for n in [10u64, 11, 13, 4096] {
        let r = call(&hv, A, EXEC, IN, n, OUT, 4096);
        assert_eq!(r, HcallReturn::status(H_P3), "in_size {n}");
    }
    assert_eq!(
        hv.tpm_comm(
            A,
            TpmCommArgs::from_regs(&[EXEC, IN, 13, OUT, 4096, 0, 0, 0, 0])
        ),
        Err(TpmCommError::InSize(InSizeError::HeaderMismatch(12)))
    );
    assert_eq!(tpm.commands(), 0);
    assert_eq!(hv.memory.writes(), 0);
    assert_eq!(hv.open_sessions(), 0);
}

#[test]
fn out_size_boundaries() {
    let (hv, _tpm) = setup();
    assert!(hv.memory.poke(IN, &get_random()));
    for bad in [0u64, 10, 4095] {
        assert_eq!(call(&hv, A, EXEC, IN, 12, OUT, bad).status, H_P5, "{bad}");
    }
    for good in [4096u64, 4097, 1 << 40, u64::MAX] {
        let r = call(&hv, A, EXEC, IN, 12, OUT, good);
        assert_eq!((r.status, r.out[0]), (H_SUCCESS, 10), "{good}");
    }
}

#[test]
fn in_buffer_edges_wrap_and_foreign_memory() {
    let (hv, tpm) = setup();
    let c = get_random();
    // Ends exactly at the region's end: fine.
    let at_end = RAM_END - c.len() as u64;
    assert!(hv.memory.poke(at_end, &c));
    assert_eq!(call(&hv, A, EXEC, at_end, 12, OUT, 4096).status, H_SUCCESS);
    // One byte further: refused.
    for bad in [
        at_end + 1,
        RAM_END,
        RAM_BASE - 1,
        0,
        u64::MAX,
        u64::MAX - 11, // ends exactly at 2^64: wraps
        u64::MAX - 5,
        0x2000_0000, // the hypervisor's own memory
        0x2080_0000,
    ] {
        let r = call(&hv, A, EXEC, bad, 12, OUT, 4096);
        assert_eq!(r, HcallReturn::status(H_P2), "in_buffer {bad:#x}");
    }
    assert_eq!(tpm.commands(), 1);
    assert_eq!(hv.memory.out_of_bounds(), 0);
}

#[test]
fn out_buffer_window_is_4096_bytes_whatever_out_size() {
    let (hv, tpm) = setup();
    assert!(hv.memory.poke(IN, &get_random()));
    let last = RAM_END - 4096;
    assert_eq!(call(&hv, A, EXEC, IN, 12, last, 4096).status, H_SUCCESS);
    assert_eq!(call(&hv, A, EXEC, IN, 12, last, u64::MAX).status, H_SUCCESS);
    // The response (10 bytes) would fit, but the window does not: refused before relaying.
    let before = tpm.commands();
    for bad in [
        last + 1,
        RAM_END - 10,
        RAM_BASE - 1,
        u64::MAX - 4095, // ends exactly at 2^64
        u64::MAX,
        0x2000_0000,
    ] {
        let r = call(&hv, A, EXEC, IN, 12, bad, u64::MAX);
        assert_eq!(r, HcallReturn::status(H_P4), "out_buffer {bad:#x}");
    }
    assert_eq!(tpm.commands(), before);
    assert_eq!(hv.memory.out_of_bounds(), 0);
}

#[test]
fn order_of_checks_when_several_are_wrong() {
    let (hv, tpm) = setup();
    let bad_addr = 0x2000_0000;
    // op beats everything.
    assert_eq!(
        call(&hv, A, 9, bad_addr, 0, bad_addr, 0).status,
        H_PARAMETER
    );
    // in_size beats out_size and both addresses.
    assert_eq!(call(&hv, A, EXEC, bad_addr, 4097, bad_addr, 0).status, H_P3);
    assert_eq!(call(&hv, A, EXEC, bad_addr, 0, bad_addr, 0).status, H_P3);
    // out_size beats both addresses.
    assert_eq!(
        call(&hv, A, EXEC, bad_addr, 12, bad_addr, 4095).status,
        H_P5
    );
    // in_buffer beats out_buffer.
    assert_eq!(
        call(&hv, A, EXEC, bad_addr, 12, bad_addr, 4096).status,
        H_P2
    );
    // out_buffer beats the header check (which needs the command bytes).
    assert!(hv.memory.poke(IN, &get_random()));
    assert_eq!(call(&hv, A, EXEC, IN, 13, bad_addr, 4096).status, H_P4);
    assert_eq!(hv.memory.reads(), 0);
    assert_eq!(call(&hv, A, EXEC, IN, 13, OUT, 4096).status, H_P3);
    assert_eq!(tpm.commands(), 0);
}

#[test]
fn same_address_buffers_and_exact_write_length() {
    let (hv, tpm) = setup();
    tpm.set_mode(FakeMode::Normal { extra: 6 });
    // A 40-byte command; in == out. The 16-byte response overwrites its start only.
    let c = command(CC_GET_RANDOM, &[0xC3; 30]);
    assert!(hv.memory.poke(IN, &c));
    let r = call(&hv, A, EXEC, IN, c.len() as u64, IN, 4096);
    assert_eq!((r.status, r.out[0]), (H_SUCCESS, 16));
    assert_eq!(tpm.last_command(), c);
    let mem = peek(&hv, IN, 40);
    assert_eq!(&mem[..16], &response(0, &[0x5A; 6])[..]);
    assert_eq!(&mem[16..], &c[16..]);
    assert_eq!(hv.memory.bytes_written(), 16);
    // Overlapping, out starts inside in.
    let c = command(CC_GET_RANDOM, &[0x11; 30]);
    assert!(hv.memory.poke(IN, &c));
    let r = call(&hv, A, EXEC, IN, c.len() as u64, IN + 4, 4096);
    assert_eq!((r.status, r.out[0]), (H_SUCCESS, 16));
    assert_eq!(tpm.last_command(), c);
    assert_eq!(peek(&hv, IN + 4, 16), response(0, &[0x5A; 6]));
    assert_eq!(peek(&hv, IN, 4), c[..4].to_vec());
    // The command was fetched once per call (no double fetch).
    assert_eq!(hv.memory.reads(), 2);
}

#[test]
fn nothing_written_past_the_response() {
    let (hv, tpm) = setup();
    tpm.set_mode(FakeMode::Normal { extra: 10 });
    assert!(hv.memory.poke(OUT, &[0xAA; 4096]));
    let r = exec(&hv, A, &get_random());
    assert_eq!((r.status, r.out[0]), (H_SUCCESS, 20));
    assert_eq!(peek(&hv, OUT + 20, 4076), vec![0xAA; 4076]);
    assert_eq!(hv.memory.bytes_written(), 20);
    // A full 4096-byte response is delivered whole.
    tpm.set_mode(FakeMode::Normal { extra: 4086 });
    let r = exec(&hv, A, &get_random());
    assert_eq!((r.status, r.out[0]), (H_SUCCESS, 4096));
}

#[test]
fn malformed_or_oversized_responses_are_h_resource_and_write_nothing() {
    let (hv, tpm) = setup();
    assert!(hv.memory.poke(OUT, &[0xAA; 4096]));
    let good = response(0, &[1, 2, 3]);
    let mut big_header = response(0, &[]);
    big_header[2..6].copy_from_slice(&5000u32.to_be_bytes());
    let cases = [
        // Claims more bytes than the buffer it was given (larger than out_size/4096).
        (vec![0u8; 4096], 5000, ResponseError::TooLarge),
        (vec![0u8; 4096], 4097, ResponseError::TooLarge),
        (good.clone(), 9, ResponseError::TooShort),
        (good.clone(), 0, ResponseError::TooShort),
        (good.clone(), 12, ResponseError::SizeMismatch),
        (good.clone(), 14, ResponseError::SizeMismatch),
        (big_header, 10, ResponseError::SizeMismatch),
    ];
    assert!(hv.memory.poke(IN, &get_random()));
    for (bytes, claim, why) in cases {
        tpm.set_mode(FakeMode::Raw { bytes, claim });
        let r = call(&hv, A, EXEC, IN, 12, OUT, u64::MAX);
        assert_eq!(r, HcallReturn::status(H_RESOURCE));
        assert_eq!(
            hv.tpm_comm(
                A,
                TpmCommArgs::from_regs(&[EXEC, IN, 12, OUT, 4096, 0, 0, 0, 0])
            ),
            Err(TpmCommError::BadResponse(why))
        );
    }
    // The transport reporting a too-large response itself.
    tpm.set_mode(FakeMode::Fail(TransportError::ResponseTooLarge));
    assert_eq!(call(&hv, A, EXEC, IN, 12, OUT, 4096).status, H_RESOURCE);
    assert_eq!(hv.memory.writes(), 0);
    assert_eq!(peek(&hv, OUT, 4096), vec![0xAA; 4096]);
    // The well-formed one passes.
    tpm.set_mode(FakeMode::Raw {
        bytes: good,
        claim: 13,
    });
    assert_eq!(call(&hv, A, EXEC, IN, 12, OUT, 4096).out[0], 13);
}

#[test]
fn link_timeout_and_failure_are_h_resource() {
    let (hv, tpm) = setup();
    for e in [
        TransportError::Timeout,
        TransportError::Io,
        TransportError::Framing,
    ] {
        tpm.set_mode(FakeMode::Fail(e));
        let r = exec(&hv, A, &get_random());
        assert_eq!(r, HcallReturn::status(H_RESOURCE));
        assert_eq!(
            hv.tpm_comm(
                A,
                TpmCommArgs::from_regs(&[EXEC, IN, 12, OUT, 4096, 0, 0, 0, 0])
            ),
            Err(TpmCommError::Link(e))
        );
    }
    assert_eq!(hv.memory.writes(), 0);
}

#[test]
fn close_without_a_session_sends_nothing() {
    let (hv, tpm) = setup();
    let r = call(&hv, A, CLOSE, u64::MAX, u64::MAX, u64::MAX, 0);
    assert_eq!(r, HcallReturn::status(H_SUCCESS));
    assert_eq!(tpm.commands(), 0);
}

const V0: u32 = space::VIRTUAL_FIRST;

#[test]
fn objects_are_swapped_out_between_hcalls_under_virtual_handles() {
    let (hv, tpm) = setup();
    let primary = created_handle(&hv, &exec(&hv, A, &command(0x131, &[0x40, 0, 0, 1])));
    assert_eq!(primary, V0);
    // Nothing stays loaded: created, saved, flushed.
    assert!(tpm.live().is_empty());
    let cmds = tpm.commands();
    let loaded = created_handle(&hv, &exec(&hv, A, &command(0x157, &primary.to_be_bytes())));
    assert_eq!(loaded, V0 + 1);
    // ContextLoad(primary), Load, ContextSave+Flush of both.
    assert_eq!(tpm.commands(), cmds + 6);
    let sent: Vec<Vec<u8>> = tpm.0.lock().unwrap().commands[cmds..].to_vec();
    assert_eq!(wire::code(&sent[0]), Some(cc::CONTEXT_LOAD));
    let physical = wire::u32_at(&sent[1], 10).unwrap();
    assert_eq!(wire::code(&sent[1]), Some(0x157));
    assert_eq!(physical >> 24, 0x80);
    assert_ne!(physical, primary);
    assert!(tpm.live().is_empty());
    // B's first object has the same virtual value: its own.
    let others = created_handle(&hv, &exec(&hv, B, &command(0x167, &[])));
    assert_eq!(others, V0);
    assert_eq!(hv.tracked_handles(A), 2);
    // A TPM handle is never the caller's: refused.
    assert_eq!(
        exec(&hv, A, &command(CC_READ_PUBLIC, &physical.to_be_bytes())),
        HcallReturn::status(H_P2)
    );
    // GetCapability(transient) lists the caller's virtual handles.
    let gc = [1u32, 0x8000_0000, 16].map(u32::to_be_bytes).concat();
    let r = exec(&hv, A, &command(0x17A, &gc));
    assert_eq!(r.out[0], 27);
    let rsp = peek(&hv, OUT, 27);
    assert_eq!(wire::u32_at(&rsp, 15), Some(2));
    assert_eq!(
        (wire::u32_at(&rsp, 19), wire::u32_at(&rsp, 23)),
        (Some(V0), Some(V0 + 1))
    );
    // Flushing an object is the resource manager's alone: nothing sent.
    let cmds = tpm.commands();
    let r = exec(&hv, A, &command(cc::FLUSH_CONTEXT, &loaded.to_be_bytes()));
    assert_eq!((r.status, r.out[0]), (H_SUCCESS, 10));
    assert_eq!(peek(&hv, OUT, 10), response(0, &[]));
    assert_eq!(tpm.commands(), cmds);
    assert_eq!(hv.tracked_handles(A), 1);
}

#[test]
fn close_flushes_what_the_session_created_and_only_that() {
    let (hv, tpm) = setup();
    let primary = created_handle(&hv, &exec(&hv, A, &command(0x131, &[0x40, 0, 0, 1])));
    let session = started_session(&hv, A);
    let b_session = started_session(&hv, B);
    created_handle(&hv, &exec(&hv, A, &command(0x157, &primary.to_be_bytes())));
    assert_eq!(hv.open_sessions(), 2);
    assert_eq!(hv.tracked_handles(A), 3);
    let sent_before_close = tpm.commands();
    assert_eq!(call(&hv, A, CLOSE, 0, 0, 0, 0).status, H_SUCCESS);
    // Only the session is in the TPM; the objects were saved contexts.
    assert_eq!(tpm.commands(), sent_before_close + 1);
    assert_eq!(tpm.flushed().last(), Some(&session));
    assert_eq!(tpm.live(), vec![b_session]);
    assert_eq!(hv.open_sessions(), 1);
    assert_eq!(hv.tracked_handles(A), 0);
    // Closing again: no session, nothing sent.
    assert_eq!(call(&hv, A, CLOSE, 0, 0, 0, 0).status, H_SUCCESS);
    assert_eq!(tpm.commands(), sent_before_close + 1);
}

#[test]
fn close_treats_handle_not_found_as_gone() {
    let (hv, tpm) = setup();
    let s = started_session(&hv, A);
    tpm.forget_live(s); // the TPM flushed the session itself
    let flushed = tpm.flushed().len();
    assert_eq!(call(&hv, A, CLOSE, 0, 0, 0, 0).status, H_SUCCESS);
    assert_eq!(hv.open_sessions(), 0);
    assert_eq!(tpm.flushed().len(), flushed);
}

#[test]
fn a_context_that_no_longer_loads_forgets_the_object() {
    let (hv, tpm) = setup();
    let h = created_handle(&hv, &exec(&hv, A, &command(0x131, &[0x40, 0, 0, 1])));
    let refused = response(0x1DF, &[]); // TPM_RC_INTEGRITY, parameter 1: say, after a TPM reset
    tpm.set_mode(FakeMode::Raw {
        claim: refused.len(),
        bytes: refused,
    });
    assert_eq!(
        exec(&hv, A, &command(CC_READ_PUBLIC, &h.to_be_bytes())),
        HcallReturn::status(H_RESOURCE)
    );
    tpm.set_mode(FakeMode::Normal { extra: 0 });
    assert_eq!(hv.tracked_handles(A), 0);
    assert_eq!(
        exec(&hv, A, &command(CC_READ_PUBLIC, &h.to_be_bytes())),
        HcallReturn::status(H_P2)
    );
}

#[test]
fn close_keeps_the_slot_when_flushing_fails_and_can_retry() {
    let (hv, tpm) = setup();
    let h = started_session(&hv, A);
    tpm.set_mode(FakeMode::Fail(TransportError::Timeout));
    assert_eq!(call(&hv, A, CLOSE, 0, 0, 0, 0).status, H_RESOURCE);
    assert_eq!(hv.tracked_handles(A), 1);
    tpm.set_mode(FakeMode::Normal { extra: 0 });
    tpm.0.lock().unwrap().refuse_flush_rc = Some(0x902); // TPM_RC_OBJECT_MEMORY, say
    assert_eq!(
        hv.tpm_comm(A, TpmCommArgs::from_regs(&[CLOSE; 9])),
        Err(TpmCommError::FlushRefused {
            handle: h,
            rc: 0x902
        })
    );
    assert_eq!(hv.open_sessions(), 1);
    tpm.0.lock().unwrap().refuse_flush_rc = None;
    assert_eq!(call(&hv, A, CLOSE, 0, 0, 0, 0).status, H_SUCCESS);
    assert_eq!(tpm.flushed(), vec![h]);
    assert_eq!(hv.open_sessions(), 0);
}

#[test]
fn slots_exhausted_is_h_resource_without_relaying() {
    let (hv, tpm) = setup();
    for c in 0..SESSION_SLOTS as u32 {
        assert_eq!(
            exec(&hv, CallerId(100 + c), &get_random()).status,
            H_SUCCESS
        );
    }
    let sent = tpm.commands();
    let r = exec(&hv, CallerId(7), &get_random());
    assert_eq!(r, HcallReturn::status(H_RESOURCE));
    assert_eq!(
        hv.tpm_comm(
            CallerId(7),
            TpmCommArgs::from_regs(&[EXEC, IN, 12, OUT, 4096, 0, 0, 0, 0])
        ),
        Err(TpmCommError::SlotsExhausted)
    );
    assert_eq!(tpm.commands(), sent);
    // A caller that has a slot is still served; after one closes, the newcomer is.
    assert_eq!(exec(&hv, CallerId(100), &get_random()).status, H_SUCCESS);
    assert_eq!(
        call(&hv, CallerId(101), CLOSE, 0, 0, 0, 0).status,
        H_SUCCESS
    );
    assert_eq!(exec(&hv, CallerId(7), &get_random()).status, H_SUCCESS);
}

/// A ContextLoad body whose TPMS_CONTEXT saved a transient object (savedHandle 0x80000000).
fn object_context() -> Vec<u8> {
    let mut b = vec![0u8; 8];
    b.extend_from_slice(&0x8000_0000u32.to_be_bytes());
    b.extend_from_slice(&[0x40, 0, 0, 7, 0, 0]);
    b
}

/// The resource manager's 10-byte TPM-format refusal with `rc`.
fn rm_refusal(rc: u32) -> Vec<u8> {
    response(rc, &[])
}

#[test]
fn quotas_refuse_creating_commands_before_sending() {
    let (hv, tpm) = setup();
    for _ in 0..OBJECTS_PER_CALLER {
        created_handle(&hv, &exec(&hv, A, &command(0x167, &[])));
    }
    // More objects than the TPM holds (3): they are saved contexts.
    const { assert!(OBJECTS_PER_CALLER > OBJECT_CAPACITY) };
    let sent = tpm.commands();
    for c in [
        command(0x131, &[0x40, 0, 0, 1]),
        command(0x157, &V0.to_be_bytes()),
        command(0x167, &[]),
        command(0x191, &[0x40, 0, 0, 1]),
        command(0x161, &object_context()),
        command(0x186, &[0, 0, 0, 0x0B]),
    ] {
        let r = exec(&hv, A, &c);
        assert_eq!((r.status, r.out[0]), (H_SUCCESS, 10), "{:02x?}", &c[6..10]);
        assert_eq!(peek(&hv, OUT, 10), rm_refusal(rm::RM_OBJECT_MEMORY));
    }
    assert_eq!(tpm.commands(), sent);
    for _ in 0..SESSIONS_PER_CALLER {
        started_session(&hv, A);
    }
    let sent2 = tpm.commands();
    let r = exec(&hv, A, &start_auth_session());
    assert_eq!((r.status, r.out[0]), (H_SUCCESS, 10));
    assert_eq!(peek(&hv, OUT, 10), rm_refusal(rm::RM_SESSION_MEMORY));
    assert_eq!(tpm.commands(), sent2);
    // Another caller has its own full quota of objects.
    for _ in 0..OBJECTS_PER_CALLER {
        created_handle(&hv, &exec(&hv, B, &command(0x167, &[])));
    }
    let r = exec(&hv, B, &command(0x167, &[]));
    assert_eq!(r.out[0], 10);
    assert_eq!(peek(&hv, OUT, 10), rm_refusal(rm::RM_OBJECT_MEMORY));
    // Other commands still go through, and a flush makes room.
    assert_eq!(exec(&hv, A, &get_random()).status, H_SUCCESS);
    assert_eq!(
        exec(&hv, A, &command(0x165, &V0.to_be_bytes())).status,
        H_SUCCESS
    );
    assert_eq!(created_handle(&hv, &exec(&hv, A, &command(0x167, &[]))), V0);
    // Close flushes the sessions; no object was ever left loaded.
    assert_eq!(call(&hv, A, CLOSE, 0, 0, 0, 0).status, H_SUCCESS);
    assert_eq!(call(&hv, B, CLOSE, 0, 0, 0, 0).status, H_SUCCESS);
    assert!(tpm.live().is_empty());
}

#[test]
fn unlisted_and_malformed_commands_are_answered_by_the_resource_manager() {
    let (hv, tpm) = setup();
    for (c, rc) in [
        (command(0x145, &[0, 0]), rm::RM_COMMAND_CODE), // Shutdown
        (
            command(0x120, &[0x40, 0, 0, 1, 0x81, 0, 0, 1]),
            rm::RM_COMMAND_CODE,
        ),
        (command(0x2000_0000, &[]), rm::RM_COMMAND_CODE),
        (command(0x173, &[0x80, 0]), rm::RM_COMMAND_SIZE), // ReadPublic without its handle
        (command(0x165, &[]), rm::RM_COMMAND_SIZE),        // FlushContext without flushHandle
    ] {
        let r = exec(&hv, A, &c);
        assert_eq!((r.status, r.out[0]), (H_SUCCESS, 10));
        assert_eq!(peek(&hv, OUT, 10), rm_refusal(rc), "{:02x?}", &c[6..10]);
    }
    let mut bad_tag = get_random();
    bad_tag[..2].copy_from_slice(&[0x12, 0x34]);
    exec(&hv, A, &bad_tag);
    assert_eq!(peek(&hv, OUT, 10), rm_refusal(rm::RM_BAD_TAG));
    let mut bad_auth = command(0x15E, &[0x40, 0, 0, 1, 0, 0, 0, 50]);
    bad_auth[..2].copy_from_slice(&[0x80, 0x02]);
    exec(&hv, A, &bad_auth);
    assert_eq!(peek(&hv, OUT, 10), rm_refusal(rm::RM_AUTHSIZE));
    assert_eq!(tpm.commands(), 0);
    // Refusals open no slot... but the caller's slot is opened only by relayed commands.
    assert_eq!(hv.open_sessions(), 0);
}

/// ReadPublic(NULL) with session `s` as its authorization session, `continueSession` set.
fn read_public_with_session(s: u32) -> Vec<u8> {
    let mut body = 0x4000_0007u32.to_be_bytes().to_vec();
    body.extend_from_slice(&9u32.to_be_bytes());
    body.extend_from_slice(&s.to_be_bytes());
    body.extend_from_slice(&[0, 0, 1, 0, 0]);
    let mut c = command(CC_READ_PUBLIC, &body);
    c[..2].copy_from_slice(&[0x80, 0x02]);
    c
}

const CC_START_AUTH_SESSION: u32 = cc::START_AUTH_SESSION;
const CC_CONTEXT_LOAD: u32 = cc::CONTEXT_LOAD;
const CC_CONTEXT_SAVE: u32 = cc::CONTEXT_SAVE;

#[test]
fn sessions_are_saved_between_hcalls_and_loaded_for_the_command_that_uses_them() {
    let (hv, tpm) = setup();
    let n = tpm.commands();
    let sas = start_auth_session();
    let s = created_handle(&hv, &exec(&hv, A, &sas));
    assert_eq!(tpm.codes_since(n), [CC_START_AUTH_SESSION, CC_CONTEXT_SAVE]);
    let saved_at = tpm.sequence();
    // Used: loaded from exactly the context saved, then saved again under its own handle.
    let n = tpm.commands();
    let mut c = read_public_with_session(s);
    assert_eq!(exec(&hv, A, &c).status, H_SUCCESS);
    assert_eq!(
        tpm.codes_since(n),
        [CC_CONTEXT_LOAD, CC_READ_PUBLIC, CC_CONTEXT_SAVE]
    );
    let load = tpm.0.lock().unwrap().commands[n].clone();
    assert_eq!(&load[10..], &session_context(s, saved_at)[..]);
    // A command not naming it loads nothing.
    let n = tpm.commands();
    assert_eq!(exec(&hv, A, &get_random()).status, H_SUCCESS);
    assert_eq!(tpm.codes_since(n), [CC_GET_RANDOM]);
    // continueSession clear: the TPM ends it; nothing to save, nothing tracked.
    let attrs = c.len() - 3;
    c[attrs] = 0;
    let n = tpm.commands();
    assert_eq!(exec(&hv, A, &c).status, H_SUCCESS);
    assert_eq!(tpm.codes_since(n), [CC_CONTEXT_LOAD, CC_READ_PUBLIC]);
    assert_eq!(hv.tracked_handles(A), 0);
    // The quota is the space's, more than the TPM holds loaded.
    for _ in 0..SESSIONS_PER_CALLER {
        created_handle(&hv, &exec(&hv, A, &sas));
    }
    assert_eq!(hv.tracked_handles(A), SESSIONS_PER_CALLER);
}

#[test]
fn three_sessions_in_one_authorization_area_are_all_loaded_for_the_command() {
    let (hv, tpm) = setup();
    let sas = start_auth_session();
    let s: Vec<u32> = (0..3)
        .map(|_| created_handle(&hv, &exec(&hv, A, &sas)))
        .collect();
    let mut body = 27u32.to_be_bytes().to_vec();
    for h in &s {
        body.extend_from_slice(&h.to_be_bytes());
        body.extend_from_slice(&[0, 0, 1, 0, 0]);
    }
    body.extend_from_slice(&8u16.to_be_bytes());
    let mut c = command(CC_GET_RANDOM, &body);
    c[..2].copy_from_slice(&[0x80, 0x02]);
    let n = tpm.commands();
    assert_eq!(exec(&hv, A, &c).status, H_SUCCESS);
    assert_eq!(
        tpm.codes_since(n),
        [
            CC_CONTEXT_LOAD,
            CC_CONTEXT_LOAD,
            CC_CONTEXT_LOAD,
            CC_GET_RANDOM,
            CC_CONTEXT_SAVE,
            CC_CONTEXT_SAVE,
            CC_CONTEXT_SAVE
        ]
    );
}

#[test]
fn a_caller_that_saves_its_own_session_holds_its_context_until_it_loads_it() {
    let (hv, tpm) = setup();
    let sas = start_auth_session();
    let s = created_handle(&hv, &exec(&hv, A, &sas));
    let n = tpm.commands();
    let r = exec(&hv, A, &command(CC_CONTEXT_SAVE, &s.to_be_bytes()));
    assert_eq!(r.status, H_SUCCESS);
    // Loaded for the caller's ContextSave, and not saved again after it.
    assert_eq!(tpm.codes_since(n), [CC_CONTEXT_LOAD, CC_CONTEXT_SAVE]);
    let ctx = peek(&hv, OUT + 10, r.out[0] as usize - 10);
    // Used now, it is not loaded by the hypervisor (it has no context for it).
    let n = tpm.commands();
    assert_eq!(exec(&hv, A, &read_public_with_session(s)).status, H_SUCCESS);
    assert_eq!(tpm.codes_since(n), [CC_READ_PUBLIC]);
    // Still the caller's: another may not load it; the caller may, and it is saved after.
    assert_eq!(
        exec(&hv, B, &command(CC_CONTEXT_LOAD, &ctx)),
        HcallReturn::status(H_P2)
    );
    let n = tpm.commands();
    assert_eq!(
        exec(&hv, A, &command(CC_CONTEXT_LOAD, &ctx)).status,
        H_SUCCESS
    );
    assert_eq!(tpm.codes_since(n), [CC_CONTEXT_LOAD, CC_CONTEXT_SAVE]);
    let n = tpm.commands();
    assert_eq!(exec(&hv, A, &read_public_with_session(s)).status, H_SUCCESS);
    assert_eq!(
        tpm.codes_since(n),
        [CC_CONTEXT_LOAD, CC_READ_PUBLIC, CC_CONTEXT_SAVE]
    );
}

#[test]
fn an_idle_sessions_context_is_refreshed_before_it_falls_behind_the_context_gap() {
    let (hv, tpm) = setup();
    let sas = start_auth_session();
    let idle = created_handle(&hv, &exec(&hv, A, &sas));
    let busy = created_handle(&hv, &exec(&hv, B, &sas));
    let mut idle_at = tpm.sequence() - 1;
    let mut refreshed = 0;
    for _ in 0..3 * REGAP_AT {
        let n = tpm.commands();
        assert_eq!(
            exec(&hv, B, &read_public_with_session(busy)).status,
            H_SUCCESS
        );
        let codes = tpm.codes_since(n);
        if codes.len() == 5 {
            // A's context loaded and saved again first, then B's command as usual.
            let sent = tpm.0.lock().unwrap().commands[n..n + 2].to_vec();
            assert_eq!(wire::u32_at(&sent[0], 18), Some(idle));
            assert_eq!(sent[1][10..14], idle.to_be_bytes());
            idle_at = tpm.sequence() - 1;
            refreshed += 1;
        } else {
            assert_eq!(codes, [CC_CONTEXT_LOAD, CC_READ_PUBLIC, CC_CONTEXT_SAVE]);
        }
        // A's saved context never falls more than REGAP_AT (and this command's save) behind.
        assert!(tpm.sequence() - idle_at <= REGAP_AT + 1);
    }
    assert!(refreshed >= 2, "{refreshed} refreshes");
    assert_eq!(
        exec(&hv, A, &read_public_with_session(idle)).status,
        H_SUCCESS
    );
}

#[test]
fn a_context_load_the_tpm_asks_to_retry_is_sent_again_and_a_warning_forgets_nothing() {
    let (hv, tpm) = setup();
    let s = started_session(&hv, A);
    // TPM_RC_RETRY (swtpm's first answers after a restart): re-sent, then it goes through.
    tpm.0.lock().unwrap().retry_loads = 2;
    let n = tpm.commands();
    assert_eq!(exec(&hv, A, &read_public_with_session(s)).status, H_SUCCESS);
    assert_eq!(
        tpm.codes_since(n),
        [
            CC_CONTEXT_LOAD,
            CC_CONTEXT_LOAD,
            CC_CONTEXT_LOAD,
            CC_READ_PUBLIC,
            CC_CONTEXT_SAVE
        ]
    );
    // A warning that is not retried here (TPM_RC_SESSION_MEMORY): H_RESOURCE, and the
    // session and its context are kept for the next command.
    tpm.0.lock().unwrap().refuse_load_rc = Some(0x903);
    assert_eq!(
        exec(&hv, A, &read_public_with_session(s)),
        HcallReturn::status(H_RESOURCE)
    );
    tpm.0.lock().unwrap().refuse_load_rc = None;
    assert_eq!(hv.tracked_handles(A), 1);
    assert_eq!(exec(&hv, A, &read_public_with_session(s)).status, H_SUCCESS);
}

#[test]
fn a_session_whose_context_no_longer_loads_is_forgotten() {
    let (hv, tpm) = setup();
    let s = started_session(&hv, A);
    tpm.0.lock().unwrap().refuse_load_rc = Some(0x1DF); // TPM_RC_INTEGRITY: a reset TPM
    let n = tpm.commands();
    // The command goes on: the TPM itself answers that the session does not exist.
    assert_eq!(exec(&hv, A, &read_public_with_session(s)).status, H_SUCCESS);
    assert_eq!(tpm.codes_since(n), [CC_CONTEXT_LOAD, CC_READ_PUBLIC]);
    tpm.0.lock().unwrap().refuse_load_rc = None;
    assert_eq!(hv.tracked_handles(A), 0);
    assert_eq!(
        exec(&hv, A, &read_public_with_session(s)),
        HcallReturn::status(H_P2)
    );
}

#[test]
fn authorization_area_sessions_must_be_the_callers_own() {
    let (hv, tpm) = setup();
    let s = started_session(&hv, A);
    // ReadPublic(NULL) with A's session as B's authorization session.
    let mut c = read_public_with_session(s);
    let sent = tpm.commands();
    assert_eq!(exec(&hv, B, &c), HcallReturn::status(H_P2));
    assert_eq!(tpm.commands(), sent);
    assert_eq!(exec(&hv, A, &c).status, H_SUCCESS);
    // continueSession clear: the TPM flushed it on success, the slot forgets it.
    let attrs = c.len() - 3;
    c[attrs] = 0;
    assert_eq!(exec(&hv, A, &c).status, H_SUCCESS);
    assert_eq!(hv.tracked_handles(A), 0);
    // The platform hierarchy and lockout are refused to everyone.
    for h in [0x4000_000Cu32, 0x4000_000A, 0x4000_000D] {
        let r = exec(&hv, A, &command(0x131, &h.to_be_bytes()));
        assert_eq!(r, HcallReturn::status(H_P2), "{h:#x}");
    }
}

#[test]
fn a_caller_may_not_name_another_callers_handles() {
    let (hv, tpm) = setup();
    let h = created_handle(&hv, &exec(&hv, A, &command(0x131, &[0x40, 0, 0, 1])));
    let sent = tpm.commands();
    for c in [
        command(cc::FLUSH_CONTEXT, &h.to_be_bytes()),
        command(CC_READ_PUBLIC, &h.to_be_bytes()),
        command(0x157, &h.to_be_bytes()),
    ] {
        assert_eq!(exec(&hv, B, &c).status, H_P2);
    }
    assert_eq!(tpm.commands(), sent);
    assert_eq!(hv.tracked_handles(A), 1);
    // The owner may.
    assert_eq!(
        exec(&hv, A, &command(CC_READ_PUBLIC, &h.to_be_bytes())).status,
        H_SUCCESS
    );
}

#[test]
fn a_reused_handle_value_moves_to_its_new_owner() {
    let (hv, tpm) = setup();
    let s = started_session(&hv, A);
    // The TPM drops A's session by itself and hands the same value to B.
    tpm.forget_live(s);
    tpm.0.lock().unwrap().next_session = s;
    let s2 = started_session(&hv, B);
    assert_eq!(s2, s);
    assert_eq!((hv.tracked_handles(A), hv.tracked_handles(B)), (0, 1));
    // A's close must not flush B's session.
    assert_eq!(call(&hv, A, CLOSE, 0, 0, 0, 0).status, H_SUCCESS);
    assert_eq!(tpm.live(), vec![s]);
}

static SNOOPED: Mutex<Vec<(u32, bool, Vec<u8>)>> = Mutex::new(Vec::new());

fn record_snoop(c: CallerId, d: Direction, b: &[u8]) {
    SNOOPED
        .lock()
        .unwrap()
        .push((c.0, d == Direction::Command, b.to_vec()));
}

#[test]
fn observer_snoops_every_relayed_byte_including_close_flushes() {
    let (hv, tpm) = setup();
    let who = CallerId(0x5A00_0001); // unique to this test: SNOOPED is shared
    hv.with_observer(|o| o.snoop_fn = Some(record_snoop));
    let c = start_auth_session();
    let h = created_handle(&hv, &exec(&hv, who, &c));
    let seq = tpm.sequence();
    assert_eq!(call(&hv, who, CLOSE, 0, 0, 0, 0).status, H_SUCCESS);
    let mine: Vec<_> = SNOOPED
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.0 == who.0)
        .cloned()
        .collect();
    assert_eq!(
        mine,
        vec![
            (who.0, true, c),
            (who.0, false, response(0, &h.to_be_bytes())),
            (who.0, true, tpm_wire::context_save(h).to_vec()),
            (who.0, false, response(0, &session_context(h, seq))),
            (who.0, true, tpm_wire::flush_context(h).to_vec()),
            (who.0, false, response(0, &[])),
        ]
    );
}

#[test]
fn observer_meddling_modes() {
    let (hv, tpm) = setup();
    tpm.set_mode(FakeMode::Normal { extra: 6 });
    let honest = response(0, &[0x5A; 6]);

    hv.with_observer(|o| o.mode = Meddle::FlipBit { byte: 12, bit: 1 });
    let r = exec(&hv, A, &get_random());
    let mut flipped = honest.clone();
    flipped[12] ^= 2;
    assert_eq!((r.status, r.out[0]), (H_SUCCESS, 16));
    assert_eq!(peek(&hv, OUT, 16), flipped);

    hv.with_observer(|o| o.mode = Meddle::Truncate(5));
    assert!(hv.memory.poke(OUT, &[0; 16]));
    let r = exec(&hv, A, &get_random());
    assert_eq!(r.out[0], 5);
    let mut want = honest[..5].to_vec();
    want.extend_from_slice(&[0; 11]);
    assert_eq!(peek(&hv, OUT, 16), want);

    hv.with_observer(|o| o.mode = Meddle::LieSize(u64::MAX));
    let r = exec(&hv, A, &get_random());
    assert_eq!((r.status, r.out[0]), (H_SUCCESS, u64::MAX));
    assert_eq!(peek(&hv, OUT, 16), honest);

    hv.with_observer(|o| o.mode = Meddle::ReplayPrevious);
    tpm.set_mode(FakeMode::Normal { extra: 1 });
    let r = exec(&hv, A, &get_random());
    assert_eq!(r.out[0], 11); // first response under replay: delivered, remembered
    tpm.set_mode(FakeMode::Normal { extra: 2 });
    let r = exec(&hv, A, &get_random());
    assert_eq!(r.out[0], 11);
    assert_eq!(peek(&hv, OUT, 11), response(0, &[0x5A]));
    // Handle bookkeeping uses the real response even when meddled.
    hv.with_observer(|o| o.mode = Meddle::Truncate(3));
    tpm.set_mode(FakeMode::Normal { extra: 0 });
    assert_eq!(exec(&hv, A, &command(0x167, &[])).out[0], 3);
    assert_eq!(hv.tracked_handles(A), 1);
    assert_eq!(hv.memory.out_of_bounds(), 0);
}

#[test]
fn a_missing_handle_in_a_creating_response_is_h_resource() {
    let (hv, tpm) = setup();
    let short = response(0, &[]);
    tpm.set_mode(FakeMode::Raw {
        claim: short.len(),
        bytes: short,
    });
    assert_eq!(
        exec(&hv, A, &command(0x131, &[0x40, 0, 0, 1])).status,
        H_RESOURCE
    );
    assert_eq!(hv.memory.writes(), 0);
    // A failed creating command records nothing and is passed on.
    let err = response(0x2C4, &[]);
    tpm.set_mode(FakeMode::Raw {
        claim: err.len(),
        bytes: err.clone(),
    });
    let r = exec(&hv, A, &command(0x131, &[0x40, 0, 0, 1]));
    assert_eq!((r.status, r.out[0]), (H_SUCCESS, 10));
    assert_eq!(peek(&hv, OUT, 10), err);
    assert_eq!(hv.tracked_handles(A), 0);
}

#[test]
fn two_hardware_threads_share_one_hypervisor() {
    let (hv, tpm) = setup();
    let hv: &Hv = &hv;
    // Each thread uses its own 4 KiB of caller memory for in and out.
    std::thread::scope(|s| {
        for t in 0..2u32 {
            s.spawn(move || {
                let buf = RAM_BASE + 0x8000 + u64::from(t) * 0x1000;
                for _ in 0..50 {
                    let c = command(0x167, &[]);
                    assert!(hv.memory.poke(buf, &c));
                    let r = call(hv, CallerId(t), EXEC, buf, 10, buf, 4096);
                    assert_eq!((r.status, r.out[0]), (H_SUCCESS, 14));
                    assert_eq!(call(hv, CallerId(t), CLOSE, 0, 0, 0, 0).status, H_SUCCESS);
                }
            });
        }
    });
    assert!(tpm.live().is_empty());
    assert_eq!(tpm.flushed().len(), 100);
    assert_eq!(hv.open_sessions(), 0);
}

/// A secure VM: a caller with a table of its own.
const SVM: CallerId = CallerId(7);
/// The SVM's shared pages, named by ITS guest-physical addresses. The first two are also
/// addresses of the default window (the SVM's numbers mean nothing there); the third is
/// far from it. Each is reached by the hypervisor elsewhere in the fake's 64 KiB.
const SVM_IN: u64 = RAM_BASE + 0x4000;
const SVM_OUT: u64 = RAM_BASE + 0x5000;
const SVM_FAR: u64 = 0x8000_0000;
const REACH_IN: u64 = RAM_BASE + 0x8000;
const REACH_OUT: u64 = RAM_BASE + 0xC000;
const REACH_FAR: u64 = RAM_BASE + 0xA000;

fn svm_table() -> RegionTable {
    RegionTable::mapped(&[
        (GuestRange::new(SVM_IN, 0x1000), REACH_IN),
        (GuestRange::new(SVM_OUT, 0x1000), REACH_OUT),
        (GuestRange::new(SVM_FAR, 0x1000), REACH_FAR),
    ])
    .unwrap()
}

/// A 12-byte GetRandom unlike [`get_random`]'s: what sits at an SVM gpa's identity address.
fn decoy() -> Vec<u8> {
    command(CC_GET_RANDOM, &0xDDu16.to_be_bytes())
}

#[test]
fn an_svms_buffers_are_read_and_written_where_the_hypervisor_reaches_them() {
    let (hv, tpm) = setup();
    hv.set_caller_memory(SVM, Some(svm_table())).unwrap();
    tpm.set_mode(FakeMode::Normal { extra: 6 });
    let rsp = response(0, &[0x5A; 6]);
    // The command at the reach address; a decoy at the gpa as an address of the default
    // window; the out page's identity address and reach filled with 0xAA.
    assert!(hv.memory.poke(REACH_IN, &get_random()));
    assert!(hv.memory.poke(SVM_IN, &decoy()));
    assert!(hv.memory.poke(SVM_OUT, &[0xAA; 4096]));
    assert!(hv.memory.poke(REACH_OUT, &[0xAA; 4096]));
    let r = call(&hv, SVM, EXEC, SVM_IN, 12, SVM_OUT, 4096);
    assert_eq!((r.status, r.out[0]), (H_SUCCESS, 16));
    assert_eq!(tpm.last_command(), get_random());
    assert_eq!(peek(&hv, REACH_OUT, 16), rsp);
    assert_eq!(peek(&hv, REACH_OUT + 16, 16), vec![0xAA; 16]);
    assert_eq!(peek(&hv, SVM_OUT, 4096), vec![0xAA; 4096]);
    assert_eq!(peek(&hv, SVM_IN, 12), decoy());
    // A command at an offset inside a page, and in == out on the far page.
    assert!(hv
        .memory
        .poke(REACH_IN + 0x100, &command(CC_GET_RANDOM, &[0x12, 0x34])));
    let r = call(&hv, SVM, EXEC, SVM_IN + 0x100, 12, SVM_OUT, 4096);
    assert_eq!((r.status, r.out[0]), (H_SUCCESS, 16));
    assert_eq!(tpm.last_command(), command(CC_GET_RANDOM, &[0x12, 0x34]));
    let c = command(CC_GET_RANDOM, &[0xC3; 30]);
    assert!(hv.memory.poke(REACH_FAR, &c));
    let r = call(&hv, SVM, EXEC, SVM_FAR, c.len() as u64, SVM_FAR, 4096);
    assert_eq!((r.status, r.out[0]), (H_SUCCESS, 16));
    assert_eq!(tpm.last_command(), c);
    assert_eq!(peek(&hv, REACH_FAR, 40)[..16], rsp[..]);
    assert_eq!(peek(&hv, REACH_FAR, 40)[16..], c[16..]);
    // The resource manager's own answers go to the reach address too.
    assert!(hv.memory.poke(REACH_IN, &command(0x0FFF_FFFF, &[0; 2])));
    let r = call(&hv, SVM, EXEC, SVM_IN, 12, SVM_OUT, 4096);
    assert_eq!((r.status, r.out[0]), (H_SUCCESS, 10));
    assert_eq!(peek(&hv, REACH_OUT, 10), rm_refusal(0x000B_0143));
    assert_eq!(peek(&hv, SVM_OUT, 10), vec![0xAA; 10]);
    assert_eq!(hv.memory.out_of_bounds(), 0);
}

#[test]
fn an_svm_naming_memory_outside_its_shared_pages_is_h_p2_or_h_p4() {
    let (hv, tpm) = setup();
    hv.set_caller_memory(SVM, Some(svm_table())).unwrap();
    assert!(hv.memory.poke(REACH_IN, &get_random()));
    assert!(hv.memory.poke(IN, &get_random()));
    assert!(hv.memory.poke(REACH_IN + 0xFF8, &get_random()[..8]));
    // in_buffer: the default window (the caller's IN), the reach addresses, straddling the
    // end of a page, straddling two pages adjacent as the SVM names them, wrapping.
    for bad in [
        IN,
        OUT,
        RAM_END - 12,
        REACH_IN,
        REACH_FAR,
        SVM_IN + 0x1000 - 11,
        SVM_FAR + 0x1000 - 11,
        SVM_FAR - 1,
        u64::MAX - 11,
        0x2000_0000,
    ] {
        let r = call(&hv, SVM, EXEC, bad, 12, SVM_OUT, 4096);
        assert_eq!(r, HcallReturn::status(H_P2), "in_buffer {bad:#x}");
    }
    // out_buffer: the 4096-byte window must be one of its pages.
    for bad in [
        OUT,
        IN,
        REACH_OUT,
        SVM_OUT + 1,
        SVM_IN + 0x800,
        SVM_FAR + 10,
        u64::MAX - 4095,
    ] {
        let r = call(&hv, SVM, EXEC, SVM_IN, 12, bad, 4096);
        assert_eq!(r, HcallReturn::status(H_P4), "out_buffer {bad:#x}");
    }
    // The order of the checks is unchanged: sizes first, then in, then out.
    assert_eq!(call(&hv, SVM, EXEC, IN, 4097, OUT, 0).status, H_P3);
    assert_eq!(call(&hv, SVM, EXEC, IN, 12, OUT, 4095).status, H_P5);
    assert_eq!(call(&hv, SVM, EXEC, IN, 12, OUT, 4096).status, H_P2);
    assert_eq!(tpm.commands(), 0);
    assert_eq!((hv.memory.reads(), hv.memory.writes()), (0, 0));
    // Its own pages still work.
    let r = call(&hv, SVM, EXEC, SVM_IN, 12, SVM_OUT, 4096);
    assert_eq!((r.status, r.out[0]), (H_SUCCESS, 10));

    // A caller without a table of its own is unaffected: the default window, identity.
    let r = exec(&hv, B, &get_random());
    assert_eq!((r.status, r.out[0]), (H_SUCCESS, 10));
    assert!(hv.memory.poke(SVM_IN, &decoy()));
    let r = call(&hv, B, EXEC, SVM_IN, 12, OUT, 4096);
    assert_eq!((r.status, r.out[0]), (H_SUCCESS, 10));
    assert_eq!(tpm.last_command(), decoy());
    assert_eq!(call(&hv, B, EXEC, SVM_FAR, 12, OUT, 4096).status, H_P2);
    assert_eq!(call(&hv, B, EXEC, IN, 12, SVM_FAR, 4096).status, H_P4);
    assert_eq!(hv.memory.out_of_bounds(), 0);
}

#[test]
fn removing_a_callers_table_returns_it_to_the_default() {
    let (hv, tpm) = setup();
    hv.set_caller_memory(SVM, Some(svm_table())).unwrap();
    assert!(hv.memory.poke(IN, &get_random()));
    assert_eq!(call(&hv, SVM, EXEC, IN, 12, OUT, 4096).status, H_P2);
    hv.set_caller_memory(SVM, None).unwrap();
    let r = call(&hv, SVM, EXEC, IN, 12, OUT, 4096);
    assert_eq!((r.status, r.out[0]), (H_SUCCESS, 10));
    // Its gpas are addresses of the default window again (identity), or nothing.
    assert!(hv.memory.poke(SVM_IN, &decoy()));
    assert!(hv.memory.poke(REACH_IN, &get_random()));
    let r = call(&hv, SVM, EXEC, SVM_IN, 12, SVM_OUT, 4096);
    assert_eq!((r.status, r.out[0]), (H_SUCCESS, 10));
    assert_eq!(tpm.last_command(), decoy());
    assert_eq!(peek(&hv, SVM_OUT, 10), response(0, &[]));
    assert_eq!(call(&hv, SVM, EXEC, SVM_FAR, 12, OUT, 4096).status, H_P2);
    // Removing a table it does not have is fine.
    assert_eq!(hv.set_caller_memory(SVM, None), Ok(()));
    assert_eq!(hv.memory.out_of_bounds(), 0);
}

#[test]
fn at_most_four_callers_have_tables_of_their_own() {
    let (hv, tpm) = setup();
    assert_eq!(CALLER_TABLES, 4);
    for c in 10..14 {
        assert_eq!(hv.set_caller_memory(CallerId(c), Some(svm_table())), Ok(()));
    }
    let fifth = CallerId(14);
    assert_eq!(
        hv.set_caller_memory(fifth, Some(svm_table())),
        Err(CallerMemoryError::Full)
    );
    // Refused means unchanged: the fifth is checked against the default table.
    assert!(hv.memory.poke(IN, &get_random()));
    assert_eq!(call(&hv, fifth, EXEC, IN, 12, OUT, 4096).status, H_SUCCESS);
    assert_eq!(call(&hv, fifth, EXEC, SVM_FAR, 12, OUT, 4096).status, H_P2);
    // Replacing one of the four's tables is allowed, and the new one is the one used.
    let one_page = RegionTable::mapped(&[(GuestRange::new(SVM_FAR, 0x2000), REACH_IN)]).unwrap();
    assert_eq!(hv.set_caller_memory(CallerId(11), Some(one_page)), Ok(()));
    assert!(hv.memory.poke(REACH_IN, &get_random()));
    assert_eq!(
        call(&hv, CallerId(11), EXEC, SVM_FAR, 12, SVM_FAR + 0x1000, 4096).status,
        H_SUCCESS
    );
    assert_eq!(peek(&hv, REACH_IN + 0x1000, 10), response(0, &[]));
    assert_eq!(
        call(&hv, CallerId(11), EXEC, SVM_IN, 12, SVM_FAR + 0x1000, 4096).status,
        H_P2
    );
    assert_eq!(
        call(&hv, CallerId(12), EXEC, SVM_IN, 12, SVM_OUT, 4096).status,
        H_SUCCESS
    );
    // Removing one makes room for the fifth.
    assert_eq!(hv.set_caller_memory(CallerId(10), None), Ok(()));
    assert_eq!(hv.set_caller_memory(fifth, Some(svm_table())), Ok(()));
    assert_eq!(call(&hv, fifth, EXEC, IN, 12, OUT, 4096).status, H_P2);
    assert_eq!(
        hv.set_caller_memory(CallerId(10), Some(svm_table())),
        Err(CallerMemoryError::Full)
    );
    assert_eq!(tpm.commands(), 3);
    assert_eq!(hv.memory.out_of_bounds(), 0);
}
