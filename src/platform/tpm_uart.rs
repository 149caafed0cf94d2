//! The hypervisor's TPM link under QEMU: a 16550 UART whose other end (QEMU's `-serial chardev`
//! socket) reaches swtpm through the launcher's framing relay (`tests-qemu/src/relay.rs`).
//!
//! Framing: the command goes out whole; the response is read as a 10-byte header, then
//! exactly the header's `responseSize - 10` bytes. Every wait is bounded by the timebase:
//! [`DEFAULT_TIMEOUT_MS`] for ordinary commands, [`LONG_TIMEOUT_MS`] for key generation
//! (the TCG PC Client PTP's command durations are the guide: 750 ms..2 s typical, key
//! generation "long"). After a round trip that ended early (timeout, framing error), the
//! next command first waits for the line to stay quiet for a moment and discards what
//! arrives (a late answer), so one slow answer cannot desynchronise the link; this is how
//! the link recovers when a stopped TPM comes back. After a clean round trip only bytes
//! already in the FIFO are discarded (there should be none), which costs nothing.

use super::uart::Uart16550;
use crate::arch;
use crate::tpm::transport::{Transport, TransportError, MAX_TPM_MESSAGE};
use crate::tpm::wire::{self, cc};

/// Bound for an ordinary command's whole round trip.
pub const DEFAULT_TIMEOUT_MS: u64 = 2_000;
/// Bound for commands that may generate keys (CreatePrimary, Create, CreateLoaded).
pub const LONG_TIMEOUT_MS: u64 = 30_000;
/// How long the line must stay quiet before a command is sent (drain of late bytes).
const DRAIN_QUIET_MS: u64 = 2;

/// A TPM reached over a 16550.
pub struct UartTpmLink {
    uart: Uart16550,
    tb_hz: u64,
    /// The previous round trip ended early (timeout, framing): a late answer may still arrive.
    dirty: bool,
}

impl UartTpmLink {
    /// A link over `uart`, timing with a timebase of `tb_hz` ticks per second.
    pub fn new(uart: Uart16550, tb_hz: u64) -> Self {
        uart.init();
        Self {
            uart,
            tb_hz: tb_hz.max(1),
            dirty: false,
        }
    }

    fn ticks(&self, ms: u64) -> u64 {
        self.tb_hz / 1000 * ms
    }

    fn drain(&self) {
        let quiet = self.ticks(DRAIN_QUIET_MS);
        let mut last = arch::timebase();
        let give_up = last + self.ticks(DEFAULT_TIMEOUT_MS);
        loop {
            let now = arch::timebase();
            if self.uart.try_recv().is_some() {
                last = now;
            } else if now.wrapping_sub(last) > quiet || now > give_up {
                return;
            }
        }
    }

    fn recv_exact(&self, buf: &mut [u8], deadline: u64) -> Result<(), TransportError> {
        for b in buf.iter_mut() {
            loop {
                if let Some(v) = self.uart.try_recv() {
                    *b = v;
                    break;
                }
                if arch::timebase() > deadline {
                    return Err(TransportError::Timeout);
                }
            }
        }
        Ok(())
    }
}

impl Transport for UartTpmLink {
    fn transact(&mut self, command: &[u8], response: &mut [u8]) -> Result<usize, TransportError> {
        if self.dirty {
            self.drain();
        } else {
            while self.uart.try_recv().is_some() {}
        }
        let r = self.round_trip(command, response);
        self.dirty = r.is_err();
        r
    }
}

impl UartTpmLink {
    fn round_trip(&mut self, command: &[u8], response: &mut [u8]) -> Result<usize, TransportError> {
        if command.len() > MAX_TPM_MESSAGE {
            return Err(TransportError::CommandTooLarge);
        }
        let ms = match wire::code(command).unwrap_or(0) {
            cc::CREATE_PRIMARY | cc::CREATE | cc::CREATE_LOADED => LONG_TIMEOUT_MS,
            _ => DEFAULT_TIMEOUT_MS,
        };
        let deadline = arch::timebase() + self.ticks(ms);
        for &b in command {
            loop {
                if self.uart.can_send() {
                    self.uart.send(b, 1);
                    break;
                }
                if arch::timebase() > deadline {
                    return Err(TransportError::Timeout);
                }
            }
        }
        let mut header = [0u8; 10];
        self.recv_exact(&mut header, deadline)?;
        let size = wire::header(&header).map_or(0, |h| h.size as usize);
        if size < header.len() {
            return Err(TransportError::Framing);
        }
        if size > MAX_TPM_MESSAGE || size > response.len() {
            return Err(TransportError::ResponseTooLarge);
        }
        response[..10].copy_from_slice(&header);
        self.recv_exact(&mut response[10..size], deadline)?;
        Ok(size)
    }
}
