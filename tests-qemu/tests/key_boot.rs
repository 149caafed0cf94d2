//! The wrapping key's campaigns at boot level: the real image under QEMU powernv9, the
//! relay injecting the fault (`RelayFault`), the real swtpm behind it.
//!
//! - `boot_level_power_cut_campaign`: a blob sealed to the key (the demo SVM); then for each
//!   command k = 1..=N of a provisioning boot (N from the image's `provision-commands`), the
//!   power is cut right after command k (the relay forwards nothing more, swtpm is SIGKILLed
//!   with no Shutdown, QEMU killed), then a normal boot on that state must accept the SVM.
//!   Prints `power-cut: <N> cut points, <M> blobs still open`.
//! - `boot_level_fail_closed_campaign`: for each command k = 0..N-1, the relay answers it
//!   with TPM_RC_TESTING more often than the image's retry bound (k = 0 is the GetRandom that
//!   seeds the entropy mixer: the seeding failure); after the boot, on the same powered TPM,
//!   host software tries the key (password, guessed door value, the door itself) and the
//!   platform (PCR_Allocate, EvictControl, HierarchyChangeAuth), all with real Names. Prints
//!   `fail-closed: <N> faults, <M> host attempts, 0 succeeded`.
//!
//! Each cut point or fault runs on a copy of one provisioned state directory.

mod common;

use common::cli::pef_in;
use common::image;
use common::tpm::platform_evict;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pefbox::fw::WRAPPING_HANDLE;
use pefbox::tpm::entropy::FromRng;
use pefbox::tpm::{Auth, Tpm, Transport};
use rand::rngs::OsRng;
use xtask::launcher::{self, RunConfig, RunReport};
use xtask::relay::RelayFault;
use xtask::svm::{self, Scenario};
use xtask::verdict::{parse_bench_line, Expect};

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "pefbox-keyboot-{}-{tag}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn bench_value(r: &RunReport, key: &str) -> Option<u64> {
    r.console
        .lines()
        .filter_map(parse_bench_line)
        .flat_map(|p| p.into_iter())
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.parse().ok())
}

/// A provisioned state (first boot) plus one accepted boot of the demo SVM on it; returns
/// the state, the accepted scenario's config (files in `work`) and N, the number of TPM
/// commands of a provisioning boot with the keys present.
fn template(tag: &str, work: &Path) -> (PathBuf, RunConfig, usize) {
    let state = work.join(format!("{tag}-tpl"));
    let mut base = RunConfig::new(tag, image());
    base.timeout = Duration::from_secs(30);
    let (key, first) = svm::ensure_wrapping_key(&base, &state).expect("provisioning boot");
    let first = first.expect("a fresh state is provisioned");
    println!(
        "boot 1 (fresh state): provision-commands={:?} provision-nv-writes={:?} provision-ms={:?}",
        bench_value(&first, "provision-commands"),
        bench_value(&first, "provision-nv-writes"),
        bench_value(&first, "provision-ms"),
    );
    let other = svm::foreign_key_pem().unwrap();
    let files = Scenario::Accepted
        .prepare(work, &key.pem, &other, &mut OsRng)
        .unwrap();
    let mut cfg = base.derive(format!("{tag}-accepted"));
    cfg.tpm_state = Some(state.clone());
    cfg.expect = Expect::for_bootargs(None, Scenario::Accepted.expect());
    files.apply(&mut cfg);
    let r = launcher::run(&cfg).unwrap();
    assert!(r.passed(), "{}", r.console);
    let n = bench_value(&r, "provision-commands").expect("bench line") as usize;
    println!(
        "boot 2 (keys present): provision-commands={n} provision-nv-writes={:?} provision-ms={:?}",
        bench_value(&r, "provision-nv-writes"),
        bench_value(&r, "provision-ms"),
    );
    (state, cfg, n)
}

#[test]
fn boot_level_power_cut_campaign() {
    let t0 = Instant::now();
    let work = scratch("cut");
    let (tpl, accepted, n) = template("cut", &work);
    let mut open = 0usize;
    for k in 1..=n {
        let state = work.join(format!("cut-{k}"));
        common::copy_dir(&tpl, &state);
        let mut cut = accepted.derive(format!("cut-after-{k}"));
        cut.tpm_state = Some(state.clone());
        cut.relay_fault = RelayFault::CutAfter { after: k };
        let r = launcher::run(&cut).unwrap();
        let cut_seen = r.relay.log.iter().any(|l| l.starts_with("power cut after"));
        let mut next = accepted.derive(format!("after-cut-{k}"));
        next.tpm_state = Some(state.clone());
        next.initrd = accepted.initrd.clone();
        next.svm_kernel = accepted.svm_kernel.clone();
        next.svm_bootargs = accepted.svm_bootargs.clone();
        next.expect = accepted.expect.clone();
        let r2 = launcher::run(&next).unwrap();
        let ok = r2.console.contains("svm: accepted");
        let created = r2.console.contains("created a NEW wrapping key");
        println!(
            "cut after command {k} ({}): next boot {}, blob {}",
            if cut_seen {
                "power cut"
            } else {
                "boot ended first"
            },
            if created {
                "CREATED A NEW KEY"
            } else {
                "reused the key"
            },
            if ok { "opens" } else { "DOES NOT OPEN" }
        );
        open += usize::from(ok && !created);
        let _ = std::fs::remove_dir_all(&state);
    }
    println!(
        "power-cut: {n} cut points, {open} blobs still open ({:.0} s)",
        t0.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&work);
    assert_eq!(open, n);
}

/// The host's attempts on the platform: each true if it got through.
fn platform_attempts<T: Transport>(host: &mut Tpm<T>) -> Vec<(&'static str, bool)> {
    let allocated = common::key::pcr_allocate(host).unwrap_or(false);
    let evicted = common::key::evict_wrapping_key(host);
    let changed = common::key::change_platform_auth(host);
    vec![
        (
            "PCR_Allocate (drop SHA-256), platform, empty password",
            allocated,
        ),
        (
            "EvictControl(0x81800001), platform, empty password",
            evicted,
        ),
        ("HierarchyChangeAuth(platform), empty password", changed),
    ]
}

#[test]
fn boot_level_fail_closed_campaign() {
    let t0 = Instant::now();
    let work = scratch("fail");
    let (tpl, accepted, n) = template("fail", &work);
    let key = {
        let sw = xtask::swtpm::Swtpm::start_in(&tpl).unwrap();
        let mut t = Tpm::new(sw.connect().unwrap());
        t.seed_entropy(&mut FromRng(OsRng)).unwrap();
        let (_, public) = t.read_public(WRAPPING_HANDLE).unwrap();
        let p = pefbox::tpm::public::Public::parse(&public).unwrap();
        let modulus = match p.detail {
            pefbox::tpm::public::PublicDetail::Rsa { modulus, .. } => modulus.to_vec(),
            _ => panic!("RSA"),
        };
        drop(t);
        drop(sw);
        rsa::RsaPublicKey::new(
            rsa::BigUint::from_bytes_be(&modulus),
            rsa::BigUint::from(65537u32),
        )
        .unwrap()
    };
    let ct = svm::lockbox_ciphertext(&key).unwrap();
    let (mut attempts, mut succeeded) = (0usize, 0usize);
    for k in 0..n {
        let state = work.join(format!("fail-{k}"));
        common::copy_dir(&tpl, &state);
        let mut cfg = accepted.derive(format!("testing-at-{k}"));
        cfg.tpm_state = Some(state.clone());
        cfg.relay_fault = RelayFault::Testing { at: k, times: 20 };
        let (r, swtpm) = launcher::run_keeping_tpm(&cfg).unwrap();
        let failed_closed = r
            .console
            .lines()
            .find(|l| l.starts_with("FAIL provisioning"));
        let mut host = Tpm::new(swtpm.connect().unwrap());
        host.seed_entropy(&mut FromRng(OsRng)).unwrap();
        let mut tries: Vec<(String, bool)> = svm::host_attempts(&mut host, &ct)
            .into_iter()
            .map(|a| (a.what.to_string(), a.outcome.is_ok()))
            .collect();
        tries.extend(
            platform_attempts(&mut host)
                .into_iter()
                .map(|(w, ok)| (w.to_string(), ok)),
        );
        let ok: Vec<&(String, bool)> = tries.iter().filter(|t| t.1).collect();
        println!(
            "TPM_RC_TESTING x20 at command {k}: {}; {} host attempts, {} succeeded{}",
            failed_closed.unwrap_or("provisioning did not fail"),
            tries.len(),
            ok.len(),
            ok.iter()
                .map(|t| format!("\n    SUCCEEDED: {}", t.0))
                .collect::<String>()
        );
        assert!(failed_closed.is_some_and(|l| l.contains("platform hierarchy disabled")));
        assert!(!r.console.contains("svm: accepted"));
        attempts += tries.len();
        succeeded += ok.len();
        drop(host);
        drop(swtpm);
        let _ = std::fs::remove_dir_all(&state);
    }
    println!(
        "fail-closed: {n} faults, {attempts} host attempts, {succeeded} succeeded ({:.0} s)",
        t0.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&work);
    assert_eq!(succeeded, 0);
}

/// The launcher's own words about the key: a first boot says loudly that it created a NEW
/// wrapping key (console and after the summary); a key of the previous layout (PolicyOR)
/// is refused with the fix named, never replaced, and the boot fails (exit 1).
#[test]
fn launcher_says_new_key_and_refuses_an_old_layout_key() {
    let work = scratch("words");
    // The TPM state is `work/tpm` (see pef_in).
    let state = work.join("tpm");
    let o = pef_in(&work, &["run"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{out}");
    let after_summary = out
        .lines()
        .filter(|l| l.starts_with("pef: "))
        .collect::<Vec<_>>();
    println!("first run, after the summary: {after_summary:?}");
    assert!(after_summary
        .iter()
        .any(|l| l.contains("fw: WARNING: created a NEW wrapping key 0x81800001")));

    // Replace the key by one of the previous layout (as a state from before this change).
    {
        let sw = xtask::swtpm::Swtpm::start_in(&state).unwrap();
        let mut t = Tpm::new(sw.connect().unwrap());
        t.seed_entropy(&mut FromRng(OsRng)).unwrap();
        let (k, _) = t.read_public(WRAPPING_HANDLE).unwrap();
        platform_evict(&mut t, &k, WRAPPING_HANDLE).unwrap();
        let (parent, _) = t.read_public(pefbox::fw::PARENT_HANDLE).unwrap();
        let legacy = pefbox::fw::legacy_wrapping_policy();
        let template = pefbox::tpm::Template::rsa_oaep(pefbox::fw::WRAPPING_ATTRIBUTES, &legacy);
        let blob = t
            .create(&parent, &mut [Auth::Password(b"")], &template, b"")
            .unwrap();
        let o = t.load(&parent, &mut [Auth::Password(b"")], &blob).unwrap();
        platform_evict(&mut t, &o, WRAPPING_HANDLE).unwrap();
        t.flush_context(o.handle).unwrap();
        drop(t);
        launcher::orderly_shutdown(&sw).unwrap();
    }
    let o = pef_in(&work, &["run"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(1), "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("pef: ") && l.contains("OLD layout"))
        .unwrap_or_else(|| panic!("no old-layout line after the summary:\n{out}"));
    println!("old-layout key, after the summary: {line}");
    assert!(line.contains("--fresh-tpm") && line.contains("failed closed"));
    assert!(
        !out.contains("created a NEW wrapping key"),
        "never replaced silently"
    );
    let _ = std::fs::remove_dir_all(&work);
}
