//! The re-send of commands the TPM did not start, buffer wiping and the password session
//! HierarchyChangeAuth needs.

use super::execute::{NOT_STARTED_RETRIES, RC_RETRY, RC_TESTING, RC_YIELDED};
use super::*;
use crate::consts::{cc, rh};
use crate::public::Object;
use crate::session::Auth;

/// FAKE TPM: answers the first `warnings` commands with `warning`, then a GetRandom
/// response of 4 bytes; counts the commands it saw.
struct FakeBusyTpm {
    warning: u32,
    warnings: usize,
    seen: usize,
}

impl Transport for FakeBusyTpm {
    fn transact(&mut self, _c: &[u8], rsp: &mut [u8]) -> Result<usize, TransportError> {
        self.seen += 1;
        if self.seen <= self.warnings {
            let mut r = [0x80, 0x01, 0, 0, 0, 10, 0, 0, 0, 0];
            r[6..].copy_from_slice(&self.warning.to_be_bytes());
            rsp[..10].copy_from_slice(&r);
            return Ok(10);
        }
        let r = [0x80, 0x01, 0, 0, 0, 16, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4];
        rsp[..16].copy_from_slice(&r);
        Ok(16)
    }
}

#[test]
fn not_started_warnings_are_resent_a_bounded_number_of_times() {
    for warning in [RC_RETRY, RC_YIELDED, RC_TESTING] {
        let mut tpm = Tpm::new(FakeBusyTpm {
            warning,
            warnings: 2,
            seen: 0,
        });
        let mut out = [0u8; 4];
        assert_eq!(tpm.get_random(&mut out).unwrap(), 4);
        assert_eq!(out, [1, 2, 3, 4]);
        assert_eq!(tpm.transport_mut().seen, 3);
    }
    let mut tpm = Tpm::new(FakeBusyTpm {
        warning: RC_RETRY,
        warnings: 100,
        seen: 0,
    });
    assert!(matches!(
        tpm.get_random(&mut [0u8; 4]),
        Err(Error::Tpm(ResponseCode(RC_RETRY)))
    ));
    assert_eq!(tpm.transport_mut().seen, NOT_STARTED_RETRIES + 1);
    // Any other error is returned at once.
    let mut tpm = Tpm::new(FakeBusyTpm {
        warning: 0x9a2,
        warnings: 1,
        seen: 0,
    });
    assert!(tpm.get_random(&mut [0u8; 4]).is_err());
    assert_eq!(tpm.transport_mut().seen, 1);
}

static WAITS: std::sync::Mutex<std::vec::Vec<u32>> = std::sync::Mutex::new(std::vec::Vec::new());

fn record_wait(ms: u32) {
    WAITS.lock().unwrap().push(ms);
}

#[test]
fn re_sends_wait_longer_each_time_and_stop_at_the_budget() {
    WAITS.lock().unwrap().clear();
    let mut tpm = Tpm::new(FakeBusyTpm {
        warning: RC_TESTING,
        warnings: 1000,
        seen: 0,
    });
    tpm.set_delay(record_wait);
    assert!(matches!(
        tpm.get_random(&mut [0u8; 4]),
        Err(Error::Tpm(ResponseCode(RC_TESTING)))
    ));
    let waits = WAITS.lock().unwrap().clone();
    assert_eq!(
        waits,
        RETRY_DELAYS_MS.to_vec(),
        "one wait before each re-send"
    );
    assert!(waits.windows(2).all(|w| w[0] <= w[1]), "growing");
    assert_eq!(waits.iter().sum::<u32>(), RETRY_BUDGET_MS);
    assert_eq!(tpm.retry_waited_ms(), u64::from(RETRY_BUDGET_MS));
    assert_eq!(tpm.transport_mut().seen, RETRY_DELAYS_MS.len() + 1);
}

#[test]
fn wipe_buffers_zeroes_command_and_response() {
    let mut tpm = Tpm::new(FakeBusyTpm {
        warning: RC_RETRY,
        warnings: 0,
        seen: 0,
    });
    assert!(tpm.buffers_are_clear());
    let mut out = [0u8; 4];
    assert_eq!(tpm.get_random(&mut out).unwrap(), 4);
    // The response parameter and the command code stay behind...
    assert!(tpm.buffers_contain(&[1, 2, 3, 4]));
    assert!(tpm.buffers_contain(&cc::GET_RANDOM.to_be_bytes()));
    assert!(!tpm.buffers_are_clear());
    // ...until wiped.
    tpm.wipe_buffers();
    assert!(tpm.buffers_are_clear());
    assert!(!tpm.buffers_contain(&[1, 2, 3, 4]));
    assert!(!tpm.buffers_contain(&[]));
}

#[test]
fn hierarchy_change_auth_needs_the_password_session_first() {
    let mut tpm = Tpm::new(FakeBusyTpm {
        warning: RC_RETRY,
        warnings: 0,
        seen: 0,
    });
    let platform = Object::permanent(rh::PLATFORM);
    assert_eq!(
        tpm.hierarchy_change_auth(&platform, &mut [], b"x"),
        Err(Error::BadSessions)
    );
    assert_eq!(
        tpm.hierarchy_change_auth(&platform, &mut [Auth::Password(b"")], &[0u8; 65]),
        Err(Error::BadArgument)
    );
    // Nothing was sent for either.
    assert_eq!(tpm.transport_mut().seen, 0);
}
