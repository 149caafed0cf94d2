//! The one seam between TPM protocol code and whatever carries the bytes.
//!
//! A transport failure (the bytes did not make the round trip) is a
//! [`TransportError`]; a TPM error response is *not* a transport failure: it is a
//! valid response whose header carries a non-zero response code, and it is returned
//! as `Ok(len)` for the protocol layer to decode.
#![forbid(unsafe_code)]

use super::wire::{self, cc};

/// Largest TPM command or response any transport in this project carries
/// (the H_TPM_COMM limit, and what most TPMs and the Linux resource manager support).
pub const MAX_TPM_MESSAGE: usize = 4096;

/// Why a command/response round trip failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportError {
    /// The TPM did not answer within the transport's bound.
    Timeout,
    /// The link itself failed (device error, connection lost).
    Io,
    /// The command is larger than the transport can carry.
    CommandTooLarge,
    /// The response does not fit the caller's buffer, or exceeds [`MAX_TPM_MESSAGE`].
    ResponseTooLarge,
    /// The response is not a whole TPM response: shorter than a header, or its
    /// header's size disagrees with the number of bytes delivered.
    Framing,
    /// The carrier refused the request with a status of its own, which only the carrier
    /// interprets.
    Refused(CarrierCode),
}

/// A carrier's own refusal code, opaque to the TPM layer: the carrier that refused knows what
/// it means (for H_TPM_COMM, `uv::hcall` puts the hcall's r3 here); this layer only shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CarrierCode(i64);

impl CarrierCode {
    /// Wraps a carrier's code.
    pub const fn new(code: i64) -> Self {
        CarrierCode(code)
    }

    /// The carrier's code, for the carrier to interpret.
    pub const fn get(self) -> i64 {
        self.0
    }
}

impl core::fmt::Display for CarrierCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl core::fmt::Display for TransportError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TransportError::Timeout => f.write_str("TPM did not answer in time"),
            TransportError::Io => f.write_str("TPM link failed"),
            TransportError::CommandTooLarge => f.write_str("command too large for the transport"),
            TransportError::ResponseTooLarge => f.write_str("response too large"),
            TransportError::Framing => f.write_str("response is not a whole TPM response"),
            TransportError::Refused(s) => write!(f, "carrier refused the request (status {s})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_shows_the_carriers_code_as_a_signed_number() {
        let e = TransportError::Refused(CarrierCode::new(-16));
        assert_eq!(
            std::format!("{e}"),
            "carrier refused the request (status -16)"
        );
        assert_eq!(CarrierCode::new(i64::MIN).get(), i64::MIN);
    }
}

/// Sends one whole TPM command and receives its response.
pub trait Transport {
    /// Sends `command` and writes the response into `response`, returning the number
    /// of response bytes. Implementations bound every wait and never write past
    /// `response.len()`.
    fn transact(&mut self, command: &[u8], response: &mut [u8]) -> Result<usize, TransportError>;
}

/// A transport that counts what crosses it: commands sent (re-sends included) and the
/// successful commands that write the TPM's NV (EvictControl, NV_DefineSpace,
/// NV_UndefineSpace, NV_ChangeAuth, NV_Write): the figure for NV wear per boot.
#[derive(Debug)]
pub struct Counted<T> {
    /// The wrapped transport.
    pub inner: T,
    /// Commands sent.
    pub commands: u32,
    /// Successful NV-writing commands.
    pub nv_writes: u32,
}

impl<T> Counted<T> {
    /// Wraps `inner` with zero counts.
    pub fn new(inner: T) -> Self {
        Counted {
            inner,
            commands: 0,
            nv_writes: 0,
        }
    }
}

/// The command codes [`Counted`] counts as NV writes.
pub const NV_WRITING_COMMANDS: [u32; 5] = [
    cc::EVICT_CONTROL,
    cc::NV_DEFINE_SPACE,
    cc::NV_UNDEFINE_SPACE,
    cc::NV_CHANGE_AUTH,
    cc::NV_WRITE,
];

impl<T: Transport> Transport for Counted<T> {
    fn transact(&mut self, command: &[u8], response: &mut [u8]) -> Result<usize, TransportError> {
        self.commands = self.commands.saturating_add(1);
        let n = self.inner.transact(command, response)?;
        let code = wire::code(command).unwrap_or(0);
        if NV_WRITING_COMMANDS.contains(&code) && wire::code(response) == Some(wire::RC_SUCCESS) {
            self.nv_writes = self.nv_writes.saturating_add(1);
        }
        Ok(n)
    }
}
