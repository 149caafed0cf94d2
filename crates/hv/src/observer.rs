//! The relay observer: a test-build seam that sees every byte relayed to and from
//! the TPM ("snoop") and may tamper with the response handed to the caller
//! ("meddle"), to let tests play a malicious hypervisor. Default: [`Quiet`], which
//! does nothing and costs nothing, and is the only observer the image to flash has:
//! the tampering `Meddler` exists only with feature `selftest` (the self-test image),
//! `test-util` (host tests) or in this crate's unit tests.
//!
//! Where it sits: the observer is called under the hypervisor's lock. `snoop` sees
//! each command as sent and each response as received (the hypervisor's own
//! FlushContext traffic on CLOSE_SESSION included). `meddle` runs after the
//! hypervisor has validated the response and updated its handle table from the
//! real bytes; whatever it returns is clamped to the 4096-byte checked out window,
//! so even a meddling observer cannot make the hypervisor write outside caller
//! memory. It can make r4 lie freely (r4 is only a register).
#![forbid(unsafe_code)]

use super::slots::CallerId;
use tpm::transport::MAX_TPM_MESSAGE;

/// Which way relayed bytes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// To the TPM.
    Command,
    /// From the TPM.
    Response,
}

/// What the caller is given after meddling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Bytes of the (possibly altered) response buffer to copy to the caller
    /// (clamped to 4096 by the hypervisor; 0 writes nothing).
    pub len: usize,
    /// Value returned in r4.
    pub r4: u64,
}

/// Sees and may alter relayed traffic. Every method has a do-nothing default.
pub trait RelayObserver {
    /// Called with every command sent to and every response received from the TPM.
    fn snoop(&mut self, _caller: CallerId, _dir: Direction, _bytes: &[u8]) {}

    /// Called with the validated response (`len` bytes in `response`) to the caller's
    /// command `code` before it is copied to the caller (after the hypervisor's own swap
    /// commands). May rewrite the buffer and choose what is delivered.
    fn meddle(
        &mut self,
        _code: u32,
        _response: &mut [u8; MAX_TPM_MESSAGE],
        len: usize,
    ) -> Delivery {
        Delivery {
            len,
            r4: len as u64,
        }
    }
}

/// The default observer: sees nothing, changes nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl RelayObserver for Quiet {}

/// One way to tamper with a response.
#[cfg(any(test, feature = "selftest", feature = "test-util"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Meddle {
    /// Deliver the response as received.
    #[default]
    Off,
    /// XOR bit `bit` (0..8) of byte `byte` (ignored if past the response).
    FlipBit {
        /// Byte offset.
        byte: usize,
        /// Bit number, 0 = least significant (taken modulo 8).
        bit: u8,
    },
    /// Deliver only the first `len` bytes (r4 says `len` too).
    Truncate(usize),
    /// Deliver the real bytes but return this in r4.
    LieSize(u64),
    /// Deliver the previous response seen instead of this one (the first
    /// response is delivered unchanged, and remembered).
    ReplayPrevious,
}

/// A ready-made test observer: an optional snoop function (e.g. one that scans
/// for secrets or prints to the console) and one [`Meddle`] mode.
#[cfg(any(test, feature = "selftest", feature = "test-util"))]
pub struct Meddler {
    /// The tampering to apply to every response delivered to a caller.
    pub mode: Meddle,
    /// Called with every relayed command and response.
    pub snoop_fn: Option<fn(CallerId, Direction, &[u8])>,
    /// Meddle only with responses to this command code (None: every response).
    pub only_cc: Option<u32>,
    previous: [u8; MAX_TPM_MESSAGE],
    previous_len: Option<usize>,
}

#[cfg(any(test, feature = "selftest", feature = "test-util"))]
impl Meddler {
    /// A meddler with `mode` and no snoop function.
    pub const fn new(mode: Meddle) -> Self {
        Meddler {
            mode,
            snoop_fn: None,
            only_cc: None,
            previous: [0; MAX_TPM_MESSAGE],
            previous_len: None,
        }
    }

    /// Sets the mode (and forgets any remembered response for [`Meddle::ReplayPrevious`]).
    pub fn arm(&mut self, mode: Meddle, only_cc: Option<u32>) {
        self.mode = mode;
        self.only_cc = only_cc;
        self.previous_len = None;
    }
}

#[cfg(any(test, feature = "selftest", feature = "test-util"))]
impl RelayObserver for Meddler {
    fn snoop(&mut self, caller: CallerId, dir: Direction, bytes: &[u8]) {
        if let Some(f) = self.snoop_fn {
            f(caller, dir, bytes);
        }
    }

    fn meddle(&mut self, code: u32, response: &mut [u8; MAX_TPM_MESSAGE], len: usize) -> Delivery {
        let len = len.min(MAX_TPM_MESSAGE);
        let honest = Delivery {
            len,
            r4: len as u64,
        };
        if self.only_cc.is_some_and(|cc| cc != code) {
            return honest;
        }
        match self.mode {
            Meddle::Off => honest,
            Meddle::FlipBit { byte, bit } => {
                if byte < len {
                    if let Some(b) = response.get_mut(byte) {
                        *b ^= 1u8 << (bit % 8);
                    }
                }
                honest
            }
            Meddle::Truncate(n) => {
                let n = n.min(len);
                Delivery {
                    len: n,
                    r4: n as u64,
                }
            }
            Meddle::LieSize(r4) => Delivery { len, r4 },
            Meddle::ReplayPrevious => match self.previous_len.replace(len) {
                Some(p) => {
                    core::mem::swap(response, &mut self.previous);
                    Delivery {
                        len: p,
                        r4: p as u64,
                    }
                }
                None => {
                    self.previous.copy_from_slice(response);
                    honest
                }
            },
        }
    }
}

#[cfg(test)]
mod only_cc_tests {
    use super::*;

    #[test]
    fn meddles_only_with_the_chosen_command() {
        let mut m = Meddler::new(Meddle::Off);
        m.arm(Meddle::FlipBit { byte: 12, bit: 0 }, Some(0x159));
        let mut rsp = [0u8; MAX_TPM_MESSAGE];
        m.meddle(0x17b, &mut rsp, 20);
        assert_eq!(rsp[12], 0, "GetRandom's response left alone");
        m.meddle(0x159, &mut rsp, 20);
        assert_eq!(rsp[12], 1, "RSA_Decrypt's response flipped");
    }
}
