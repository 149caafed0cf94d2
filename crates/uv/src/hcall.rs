//! The ultravisor's side of H_TPM_COMM: a [`Transport`] that carries TPM commands through
//! the hypercall, treating everything the hypervisor hands back as hostile.
//!
//! The command is written to a 4 KiB page shared with the hypervisor ([`SharedPage`]); the
//! same page is named as in_buffer and out_buffer (as IBM's ultravisor does), out_size 4096.
//! What comes back is checked before a byte of it is used:
//!
//! | hypervisor output                                   | result                          |
//! |-----------------------------------------------------|---------------------------------|
//! | r3 != H_SUCCESS (any [`PaprError`])                 | `Refused(r3)`                   |
//! | r4 > 4096, or r4 > the caller's response buffer     | `ResponseTooLarge`              |
//! | r4 < 10, or the header's size != r4                 | `Framing`                       |
//! | otherwise                                           | `Ok(r4)`, r4 bytes copied out   |
//!
//! Nothing here asserts on a value the hypervisor controls (the reference ultravisor
//! `assert`s `rsp_len <= 4096`, so a lying hypervisor can abort it). Integrity of the
//! response *content* is the session layer's job: it verifies the response HMAC before it
//! trusts or decrypts anything (`tpm::client`).
//!
//! The TPM layer knows nothing of PAPR: a refusal reaches it as
//! [`TransportError::Refused`] carrying r3 as an opaque [`CarrierCode`] ([`refused`]).
#![forbid(unsafe_code)]
// Parses the hypervisor's registers and response page: no panics, no silent wrap or truncation.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
#![deny(clippy::panic, clippy::arithmetic_side_effects)]
#![deny(clippy::cast_possible_truncation)]

use papr::{HcallResult, PaprError, H_TPM_COMM, TPM_COMM_OP_CLOSE_SESSION, TPM_COMM_OP_EXECUTE};
use tpm::transport::{CarrierCode, Transport, TransportError, MAX_TPM_MESSAGE};

/// Issues one hypercall: r3 = `nr`, r4..r12 = `args`; returns `Ok(r4..r12)` when r3 is
/// H_SUCCESS, the status otherwise ([`papr::from_regs`]).
pub trait Hypercall {
    /// Makes the call.
    fn hcall(&mut self, nr: u64, args: [u64; 9]) -> HcallResult;
}

/// The transport error for a refused hcall: r3, as a code only this carrier interprets.
pub const fn refused(e: PaprError) -> TransportError {
    TransportError::Refused(CarrierCode::new(e.status()))
}

/// The page the ultravisor shares with the hypervisor for H_TPM_COMM buffers.
pub trait SharedPage {
    /// Its guest-physical address.
    fn gpa(&self) -> u64;
    /// Copies `bytes` (at most 4096) to the start of the page.
    fn store(&mut self, bytes: &[u8]);
    /// Copies the first `out.len()` (at most 4096) bytes of the page into `out`.
    fn load(&self, out: &mut [u8]);
}

/// TPM commands over H_TPM_COMM.
pub struct HcallTransport<H, P> {
    hc: H,
    page: P,
    /// What the last call returned (`None` before the first), for diagnostics.
    pub last: Option<HcallResult>,
}

impl<H: Hypercall, P: SharedPage> HcallTransport<H, P> {
    /// A transport issuing hcalls through `hc` with buffers in `page`.
    pub fn new(hc: H, page: P) -> Self {
        Self {
            hc,
            page,
            last: None,
        }
    }

    /// TPM_COMM_OP_CLOSE_SESSION: the hypervisor flushes what this caller left in the TPM.
    pub fn close_session(&mut self) -> Result<(), TransportError> {
        let r = self.hc.hcall(
            H_TPM_COMM,
            [TPM_COMM_OP_CLOSE_SESSION, 0, 0, 0, 0, 0, 0, 0, 0],
        );
        self.last = Some(r);
        r.map(|_| ()).map_err(refused)
    }

    /// The hypercall issuer (tests inspect fakes through this).
    pub fn hypercall_mut(&mut self) -> &mut H {
        &mut self.hc
    }
}

impl<H: Hypercall, P: SharedPage> Transport for HcallTransport<H, P> {
    fn transact(&mut self, command: &[u8], response: &mut [u8]) -> Result<usize, TransportError> {
        if command.len() > MAX_TPM_MESSAGE {
            return Err(TransportError::CommandTooLarge);
        }
        self.page.store(command);
        let gpa = self.page.gpa();
        let args = [
            TPM_COMM_OP_EXECUTE,
            gpa,
            command.len() as u64,
            gpa,
            MAX_TPM_MESSAGE as u64,
            0,
            0,
            0,
            0,
        ];
        let r = self.hc.hcall(H_TPM_COMM, args);
        self.last = Some(r);
        let [r4, ..] = r.map_err(refused)?;
        let n = usize::try_from(r4)
            .ok()
            .filter(|&n| n <= MAX_TPM_MESSAGE && n <= response.len())
            .ok_or(TransportError::ResponseTooLarge)?;
        if n < 10 {
            return Err(TransportError::Framing);
        }
        let rsp = response
            .get_mut(..n)
            .ok_or(TransportError::ResponseTooLarge)?;
        self.page.load(rsp);
        let size = tpm::wire::header(rsp).map_or(0, |h| u64::from(h.size));
        if size != r4 {
            return Err(TransportError::Framing);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use papr::{from_regs, H_FUNCTION, H_P2, H_RESOURCE, H_SUCCESS};

    /// FAKE hypervisor: answers every EXECUTE with a scripted (r3, r4, page bytes).
    struct FakeHv {
        r3: i64,
        r4: u64,
        reply: std::vec::Vec<u8>,
        page: std::rc::Rc<std::cell::RefCell<[u8; 4096]>>,
        calls: std::vec::Vec<[u64; 9]>,
    }

    impl Hypercall for FakeHv {
        fn hcall(&mut self, nr: u64, args: [u64; 9]) -> HcallResult {
            assert_eq!(nr, H_TPM_COMM);
            self.calls.push(args);
            let mut p = self.page.borrow_mut();
            p[..self.reply.len()].copy_from_slice(&self.reply);
            let mut out = [0; 9];
            out[0] = self.r4;
            from_regs(self.r3, out)
        }
    }

    /// FAKE shared page backed by the same cell the fake hypervisor writes.
    struct FakePage(std::rc::Rc<std::cell::RefCell<[u8; 4096]>>);
    impl SharedPage for FakePage {
        fn gpa(&self) -> u64 {
            0x4000_0000
        }
        fn store(&mut self, bytes: &[u8]) {
            self.0.borrow_mut()[..bytes.len()].copy_from_slice(bytes);
        }
        fn load(&self, out: &mut [u8]) {
            let n = out.len();
            out.copy_from_slice(&self.0.borrow()[..n]);
        }
    }

    fn rsp(size: u32, total: usize) -> std::vec::Vec<u8> {
        let mut v = std::vec![0u8; total];
        v[0] = 0x80;
        v[1] = 0x01;
        v[2..6].copy_from_slice(&size.to_be_bytes());
        v
    }

    fn transport(r3: i64, r4: u64, reply: std::vec::Vec<u8>) -> HcallTransport<FakeHv, FakePage> {
        let page = std::rc::Rc::new(std::cell::RefCell::new([0u8; 4096]));
        let hv = FakeHv {
            r3,
            r4,
            reply,
            page: page.clone(),
            calls: std::vec::Vec::new(),
        };
        HcallTransport::new(hv, FakePage(page))
    }

    const CMD: [u8; 12] = [0x80, 1, 0, 0, 0, 12, 0, 0, 1, 0x7b, 0, 16];

    #[test]
    fn well_formed_response_is_delivered_and_registers_are_as_specified() {
        let mut t = transport(H_SUCCESS, 28, rsp(28, 28));
        let mut out = [0u8; 4096];
        assert_eq!(t.transact(&CMD, &mut out), Ok(28));
        assert_eq!(&out[..6], &[0x80, 1, 0, 0, 0, 28]);
        let a = t.hypercall_mut().calls[0];
        assert_eq!(a[0], TPM_COMM_OP_EXECUTE);
        assert_eq!(
            (a[1], a[2], a[3], a[4]),
            (0x4000_0000, 12, 0x4000_0000, 4096)
        );
    }

    #[test]
    fn hypervisor_status_is_refusal() {
        for st in [H_RESOURCE, H_P2, -1, i64::MIN, 1] {
            let mut t = transport(st, 28, rsp(28, 28));
            assert_eq!(
                t.transact(&CMD, &mut [0u8; 4096]),
                Err(TransportError::Refused(CarrierCode::new(st)))
            );
            assert_eq!(t.last, Some(from_regs(st, [28, 0, 0, 0, 0, 0, 0, 0, 0])));
            assert_eq!(
                t.close_session(),
                Err(TransportError::Refused(CarrierCode::new(st)))
            );
        }
        let mut t = transport(H_FUNCTION, 0, rsp(28, 28));
        assert_eq!(
            std::format!("{}", t.transact(&CMD, &mut [0u8; 4096]).unwrap_err()),
            "carrier refused the request (status -2)"
        );
    }

    #[test]
    fn lying_r4_is_rejected_never_trusted() {
        let mut out = [0u8; 4096];
        for r4 in [4097, u64::MAX, 1 << 32, 8192] {
            let mut t = transport(H_SUCCESS, r4, rsp(28, 28));
            assert_eq!(
                t.transact(&CMD, &mut out),
                Err(TransportError::ResponseTooLarge),
                "r4={r4}"
            );
        }
        for r4 in [0, 9] {
            let mut t = transport(H_SUCCESS, r4, rsp(28, 28));
            assert_eq!(
                t.transact(&CMD, &mut out),
                Err(TransportError::Framing),
                "r4={r4}"
            );
        }
        // r4 disagrees with the header in both directions.
        for r4 in [27, 29, 100] {
            let mut t = transport(H_SUCCESS, r4, rsp(28, 100));
            assert_eq!(
                t.transact(&CMD, &mut out),
                Err(TransportError::Framing),
                "r4={r4}"
            );
        }
    }

    #[test]
    fn r4_larger_than_callers_buffer_is_rejected() {
        let mut t = transport(H_SUCCESS, 28, rsp(28, 28));
        assert_eq!(
            t.transact(&CMD, &mut [0u8; 20]),
            Err(TransportError::ResponseTooLarge)
        );
    }

    #[test]
    fn oversized_command_is_not_sent() {
        let mut t = transport(H_SUCCESS, 28, rsp(28, 28));
        assert_eq!(
            t.transact(&[0u8; 4097], &mut [0u8; 4096]),
            Err(TransportError::CommandTooLarge)
        );
        assert!(t.hypercall_mut().calls.is_empty());
    }
}
