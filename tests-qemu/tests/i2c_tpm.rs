//! The TPM client (`pefbox::tpm::Tpm`) over `pefbox::tpm_i2c::TpmI2c` over the register-level
//! simulators of `xtask::i2c_sim` (NPCT650 and the TCG I2C map of NPCT75x), each backed by a
//! real swtpm; then one fault at a time, each bounded on the simulated clock and followed by a
//! command that works once the chip answers again.
//!
//! These are simulators: no real Nuvoton chip was driven by these tests.

mod common;

use common::flows::{oaep_encrypt, owner, salted_bound_session_flow, Recorder};
use common::tpm::{decrypt, handles_in, salt_key};
use pefbox::tpm::consts::{attr, rh, sa, su};
use pefbox::tpm::entropy::FromRng;
use pefbox::tpm::rc;
use pefbox::tpm::transport::Transport;
use pefbox::tpm::{Auth, Error, SessionKind, Template, Tpm, TransportError};
use pefbox::tpm_i2c::{Config, RegisterMap, TpmI2c, BUS_TRIES, RESPONSE_TRIES};
use rand::rngs::OsRng;
use rand::RngCore;
use xtask::i2c_sim::{Fault, SimChip, SimClock};
use xtask::swtpm::Swtpm;

/// The client over the I2C transport, every command and response recorded (as `tpm_client.rs`
/// records them over TCP, so its flows run here unchanged).
type I2cTpm = Tpm<Recorder<TpmI2c<SimChip, SimClock>>>;

/// One named client test.
type ClientTest = (&'static str, fn(&mut I2cTpm));

const MAPS: [RegisterMap; 2] = [RegisterMap::Npct650, RegisterMap::TcgI2c];

fn name(map: RegisterMap) -> &'static str {
    match map {
        RegisterMap::Npct650 => "npct650",
        RegisterMap::TcgI2c => "tcg-i2c",
    }
}

/// swtpm, and a client over the simulated chip in front of it, seeded (GetRandom) already.
fn rig(map: RegisterMap) -> (Swtpm, I2cTpm, SimClock) {
    let sw = Swtpm::start().expect("swtpm must be installed and start");
    let clock = SimClock::new();
    let chip = SimChip::new(map, sw.connect().expect("connect to swtpm"), clock.clone());
    let mut tpm = Tpm::new(Recorder {
        inner: TpmI2c::new(chip, clock.clone(), Config::new(map)),
        log: Vec::new(),
    });
    tpm.seed_entropy(&mut FromRng(OsRng))
        .expect("seed over I2C");
    (sw, tpm, clock)
}

fn chip(tpm: &mut I2cTpm) -> &mut SimChip {
    tpm.transport_mut().inner.bus_mut()
}

/// The simulator saw no protocol violation and no guard-time NACK.
fn clean(tpm: &mut I2cTpm) {
    let c = chip(tpm);
    assert!(c.violations.is_empty(), "violations: {:?}", c.violations);
    assert_eq!(c.guard_nacks, 0, "accesses sooner than the guard time");
}

// ---- the client operations, each one test ----

fn startup_and_get_random(tpm: &mut I2cTpm) {
    // swtpm was started with startup-clear: a second Startup is TPM_RC_INITIALIZE, a whole
    // response through the FIFO.
    match tpm.startup(su::CLEAR) {
        Err(Error::Tpm(code)) => assert_eq!(code.base(), rc::RC_INITIALIZE, "{code}"),
        other => panic!("Startup: {other:?}"),
    }
    let mut a = [0u8; 32];
    let mut b = [0u8; 32];
    assert_eq!(tpm.get_random(&mut a).unwrap(), 32);
    assert_eq!(tpm.get_random(&mut b).unwrap(), 32);
    assert_ne!(a, b);
}

fn get_capability(tpm: &mut I2cTpm) {
    // TPM_PT_FAMILY_INDICATOR (0x100) = "2.0\0"; 16 properties from it.
    let mut props = [(0u32, 0u32); 16];
    let (n, _) = tpm.get_capability_properties(0x100, &mut props).unwrap();
    assert!(n >= 2, "{n}");
    assert_eq!(props[0], (0x100, u32::from_be_bytes(*b"2.0\0")));
    assert!(handles_in(tpm, rh::TRANSIENT_FIRST).is_empty());
}

fn create_primary(tpm: &mut I2cTpm) {
    for t in [Template::rsa_storage(), Template::ecc_storage()] {
        let (p, _) = tpm
            .create_primary(&owner(), &mut [Auth::Password(b"")], &t, b"pw")
            .unwrap();
        assert_eq!(p.handle >> 24, 0x80);
        assert_eq!(handles_in(tpm, rh::TRANSIENT_FIRST), vec![p.handle]);
        tpm.flush_context(p.handle).unwrap();
    }
}

/// A salted (RSA or ECC), bound HMAC session with parameter encryption both ways creates and
/// loads an RSA-OAEP key and decrypts through it.
fn salted_session_and_oaep_decrypt(tpm: &mut I2cTpm, ecc: bool) {
    const PARENT: &[u8] = b"parent-auth";
    const KEY: &[u8] = b"key-auth-value";
    let t = if ecc {
        Template::ecc_storage()
    } else {
        Template::rsa_storage()
    };
    let (primary, _) = tpm
        .create_primary(&owner(), &mut [Auth::Password(b"")], &t, PARENT)
        .unwrap();
    let pinned = primary.name.clone();
    let mut s = tpm
        .start_auth_session(
            salt_key(ecc, primary.handle, pinned.as_bytes()),
            Some((&primary, PARENT)),
            SessionKind::Hmac,
            sa::CONTINUE_SESSION | sa::DECRYPT | sa::ENCRYPT,
        )
        .unwrap();
    assert!(s.is_keyed());
    let template = Template::rsa_oaep(
        attr::FIXED_TPM
            | attr::FIXED_PARENT
            | attr::SENSITIVE_DATA_ORIGIN
            | attr::NO_DA
            | attr::DECRYPT
            | attr::USER_WITH_AUTH,
        &[],
    );
    let blob = tpm
        .create(
            &primary,
            &mut [Auth::session(&mut s, PARENT)],
            &template,
            KEY,
        )
        .unwrap();
    let key = tpm
        .load(&primary, &mut [Auth::session(&mut s, PARENT)], &blob)
        .unwrap();
    let mut msg = [0u8; 32];
    OsRng.fill_bytes(&mut msg);
    let ct = oaep_encrypt(&blob.public, &msg, &mut OsRng);
    let mut out = [0u8; 512];
    let n = decrypt(tpm, &key, Auth::session(&mut s, KEY), &ct, &mut out).unwrap();
    assert_eq!(&out[..n], &msg);
    s.set_attributes(sa::ENCRYPT);
    let n = decrypt(tpm, &key, Auth::session(&mut s, KEY), &ct, &mut out).unwrap();
    assert_eq!(&out[..n], &msg);
    assert!(!s.is_open());
    tpm.flush_context(key.handle).unwrap();
    tpm.flush_context(primary.handle).unwrap();
}

fn client_suite(map: RegisterMap) {
    let (_sw, mut tpm, clock) = rig(map);
    let tests: [ClientTest; 7] = [
        ("startup/GetRandom", startup_and_get_random),
        ("GetCapability", get_capability),
        ("CreatePrimary", create_primary),
        ("RSA-salted session, RSA-OAEP decrypt", |t| {
            salted_session_and_oaep_decrypt(t, false)
        }),
        ("ECC-salted session, RSA-OAEP decrypt", |t| {
            salted_session_and_oaep_decrypt(t, true)
        }),
        // tpm_client.rs's own flow, unchanged: it also checks that the key's authValue and
        // the plaintext never cross the link in clear, and a wrong authValue's refusal.
        ("tpm_client's RSA-salted bound session flow", |t| {
            salted_bound_session_flow(t, false)
        }),
        ("tpm_client's ECC-salted bound session flow", |t| {
            salted_bound_session_flow(t, true)
        }),
    ];
    for (what, test) in &tests {
        test(&mut tpm);
        clean(&mut tpm);
        eprintln!("i2c-tpm {}: {what}: ok", name(map));
    }
    let vid = tpm.transport_mut().inner.did_vid().unwrap();
    assert_eq!(vid & 0xffff, 0x1050, "Nuvoton's vendor ID");
    let stats = tpm.transport_mut().inner.stats();
    assert_eq!(stats.bus_retries, 0);
    assert_eq!(stats.response_retries, 0);
    assert!(chip(&mut tpm).commands > 20);
    let (commands, accesses) = (chip(&mut tpm).commands, chip(&mut tpm).accesses);
    println!(
        "i2c-tpm {}: {} client tests passed over the simulator ({commands} commands, \
         {accesses} bus accesses, {} ms simulated)",
        name(map),
        tests.len(),
        clock.now() / 1000
    );
}

#[test]
fn npct650_client_operations_over_the_simulator() {
    client_suite(RegisterMap::Npct650);
}

#[test]
fn tcg_i2c_client_operations_over_the_simulator() {
    client_suite(RegisterMap::TcgI2c);
}

#[test]
fn the_tcg_map_honours_the_guard_time_the_chip_advertises() {
    let sw = Swtpm::start().unwrap();
    let clock = SimClock::new();
    let mut c = SimChip::new(RegisterMap::TcgI2c, sw.connect().unwrap(), clock.clone());
    c.guard_us = 200;
    let mut tpm = Tpm::new(Recorder {
        inner: TpmI2c::new(c, clock, Config::new(RegisterMap::TcgI2c)),
        log: Vec::new(),
    });
    tpm.seed_entropy(&mut FromRng(OsRng)).unwrap();
    assert_eq!(tpm.transport_mut().inner.guard_times_us(), (200, 200));
    create_primary(&mut tpm);
    clean(&mut tpm);
}

// ---- faults ----

/// GetRandom(16), sent as raw bytes, so the transport's own error shows.
fn raw_get_random(tpm: &mut I2cTpm, out: &mut [u8]) -> Result<usize, TransportError> {
    tpm.transport_mut()
        .transact(&pefbox::tpm::wire::get_random(16), out)
}

/// Injects `fault`, checks the next transact ends with `want` within `[min_us, max_us]` of
/// simulated time (from the transact's start, or for a NACKing fault from the first NACK:
/// the moment the chip stopped answering), clears the fault and checks the next command works (the chip recovered).
fn fault_case(
    map: RegisterMap,
    fault: Fault,
    want: Result<(), TransportError>,
    min_us: u64,
    max_us: u64,
) -> I2cTpm {
    let (sw, mut tpm, clock) = rig(map);
    std::mem::forget(sw); // kept running until the process ends (the Tpm is returned)
    chip(&mut tpm).inject(fault);
    let t0 = clock.now();
    let mut out = [0u8; 64];
    let r = raw_get_random(&mut tpm, &mut out).map(|n| {
        assert_eq!(n, 10 + 2 + 16);
        assert_eq!(&out[6..10], &[0, 0, 0, 0], "TPM_RC_SUCCESS");
    });
    let dt = clock.now() - chip(&mut tpm).first_fault_nack_us.unwrap_or(t0);
    assert_eq!(r, want, "{} {fault:?}", name(map));
    assert!(
        (min_us..=max_us).contains(&dt),
        "{} {fault:?}: {dt} µs, not in {min_us}..={max_us}",
        name(map)
    );
    chip(&mut tpm).clear();
    let mut b = [0u8; 32];
    assert_eq!(
        tpm.get_random(&mut b).unwrap(),
        32,
        "{} after {fault:?}",
        name(map)
    );
    create_primary(&mut tpm);
    if want.is_err() {
        assert_eq!(tpm.transport_mut().inner.stats().recoveries, 1);
    }
    clean(&mut tpm);
    eprintln!(
        "i2c-tpm {}: {fault:?}: {r:?} after {dt} µs (simulated), then recovered",
        name(map)
    );
    tpm
}

/// Slack on top of a bound: the last poll interval (10 ms) and the accesses around it.
const SLACK_US: u64 = 25_000;
const A: u64 = 750_000;
const C: u64 = 200_000;
const D: u64 = 30_000;
const COMMAND: u64 = 120_000_000;

#[test]
fn a_lone_nack_is_retried_and_a_run_of_nacks_is_io() {
    for map in MAPS {
        let mut tpm = fault_case(map, Fault::Nack { at: 4, count: 1 }, Ok(()), 0, SLACK_US);
        assert_eq!(tpm.transport_mut().inner.stats().bus_retries, 1);
        assert_eq!(tpm.transport_mut().inner.stats().last_bus_fault, None);
        let mut tpm = fault_case(
            map,
            Fault::Nack {
                at: 4,
                count: u64::from(BUS_TRIES),
            },
            Err(TransportError::Io),
            0,
            5_000,
        );
        // The access that failed is named: which register, read or write, and why.
        let fault = tpm.transport_mut().inner.stats().last_bus_fault;
        let fault = fault.expect("the failed access is recorded");
        assert_eq!(fault.error, pefbox::tpm_i2c::I2cError::Nack);
        assert!(
            fault.to_string().ends_with(": no acknowledge, 3 tries"),
            "{fault}"
        );
    }
}

#[test]
fn burst_count_stuck_at_zero_times_out_and_a_brief_zero_is_waited_out() {
    let bound = |map| match map {
        RegisterMap::Npct650 => D,
        RegisterMap::TcgI2c => A,
    };
    for map in MAPS {
        fault_case(
            map,
            Fault::BurstZero { polls: None },
            Err(TransportError::Timeout),
            bound(map),
            bound(map) + SLACK_US,
        );
        fault_case(
            map,
            Fault::BurstZero { polls: Some(3) },
            Ok(()),
            0,
            SLACK_US,
        );
    }
}

#[test]
fn data_avail_never_coming_times_out_after_the_command_duration_and_the_command_is_aborted() {
    for map in MAPS {
        let mut tpm = fault_case(
            map,
            Fault::DataAvailNever,
            Err(TransportError::Timeout),
            COMMAND,
            COMMAND + SLACK_US,
        );
        assert!(chip(&mut tpm).aborts >= 1, "the stuck command was aborted");
    }
}

#[test]
fn data_avail_stuck_after_the_response_is_framing_after_the_retries() {
    for map in MAPS {
        let mut tpm = fault_case(
            map,
            Fault::DataAvailStuck,
            Err(TransportError::Framing),
            0,
            SLACK_US,
        );
        assert_eq!(
            chip(&mut tpm).response_retries,
            RESPONSE_TRIES - 1,
            "{}",
            name(map)
        );
    }
}

#[test]
fn expect_lying_either_way_is_io() {
    for map in MAPS {
        fault_case(map, Fault::ExpectStuckSet, Err(TransportError::Io), 0, C);
        fault_case(
            map,
            Fault::ExpectEarlyClear { after: 5 },
            Err(TransportError::Io),
            0,
            C,
        );
    }
}

#[test]
fn a_chip_that_stops_answering_fails_fast_and_works_again_when_it_answers() {
    for map in MAPS {
        // Dead from the start, and dead from the middle of a command on (left mid-command).
        fault_case(map, Fault::Dead, Err(TransportError::Io), 0, 5_000);
        for at in [2, 6, 10, 15] {
            fault_case(
                map,
                Fault::Nack {
                    at,
                    count: u64::MAX,
                },
                Err(TransportError::Io),
                0,
                5_000,
            );
        }
        // revive() brings it back.
        let (_sw, mut tpm, _) = rig(map);
        chip(&mut tpm).inject(Fault::Dead);
        let mut out = [0u8; 64];
        for _ in 0..3 {
            assert_eq!(raw_get_random(&mut tpm, &mut out), Err(TransportError::Io));
        }
        chip(&mut tpm).revive();
        assert_eq!(raw_get_random(&mut tpm, &mut out), Ok(28));
        clean(&mut tpm);
    }
}

#[test]
fn a_truncated_response_is_read_again_with_response_retry() {
    for map in MAPS {
        let mut tpm = fault_case(map, Fault::TruncateResponseOnce, Ok(()), 0, SLACK_US);
        assert_eq!(chip(&mut tpm).response_retries, 1);
        assert_eq!(tpm.transport_mut().inner.stats().response_retries, 1);
        clean(&mut tpm);
    }
}

#[test]
fn a_corrupted_response_is_caught_by_the_tcg_checksum_and_read_again() {
    let mut tpm = fault_case(
        RegisterMap::TcgI2c,
        Fault::CorruptResponseOnce,
        Ok(()),
        0,
        SLACK_US,
    );
    assert_eq!(chip(&mut tpm).response_retries, 1);
    clean(&mut tpm);
}

#[test]
fn a_response_larger_than_the_buffer_is_refused_and_the_next_command_works() {
    for map in MAPS {
        let (_sw, mut tpm, _) = rig(map);
        let mut small = [0u8; 20];
        assert_eq!(
            raw_get_random(&mut tpm, &mut small),
            Err(TransportError::ResponseTooLarge)
        );
        let mut out = [0u8; 64];
        assert_eq!(raw_get_random(&mut tpm, &mut out), Ok(28));
        clean(&mut tpm);
    }
}

#[test]
fn a_header_size_that_disagrees_with_the_bytes_is_framing_or_too_large() {
    // GetRandom(16) answers 28 bytes; the buffer holds 64.
    for map in MAPS {
        for (size, want) in [
            (5, TransportError::Framing),               // shorter than a header
            (24, TransportError::Framing),              // left-over data after 24 bytes
            (40, TransportError::Framing),              // dataAvail gone after 28 bytes
            (5000, TransportError::ResponseTooLarge),   // > MAX_TPM_MESSAGE
            (64 + 1, TransportError::ResponseTooLarge), // > the caller's buffer
        ] {
            fault_case(map, Fault::HeaderSize { size }, Err(want), 0, SLACK_US);
        }
    }
}
