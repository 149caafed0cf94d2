//! The one seam between TPM protocol code and whatever carries the bytes.
//!
//! A transport failure (the bytes did not make the round trip) is a
//! [`TransportError`]; a TPM error response is *not* a transport failure: it is a
//! valid response whose header carries a non-zero response code, and it is returned
//! as `Ok(len)` for the protocol layer to decode.
#![forbid(unsafe_code)]

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
    /// The carrier refused the request with a status of its own (for H_TPM_COMM, the
    /// hcall's r3, for example H_RESOURCE = -16 or H_FUNCTION = -2).
    Refused(i64),
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

/// Sends one whole TPM command and receives its response.
pub trait Transport {
    /// Sends `command` and writes the response into `response`, returning the number
    /// of response bytes. Implementations bound every wait and never write past
    /// `response.len()`.
    fn transact(&mut self, command: &[u8], response: &mut [u8]) -> Result<usize, TransportError>;
}
