//! Real boots: the image under `qemu-system-ppc64 -M powernv9` with a real swtpm behind the
//! framing relay, driven through the launcher's library API and judged by its verdict.
//! Each boot takes about 1.5 s; the image is built once (target/image) per test binary.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use tests_qemu::launcher::{self, RunConfig};
use tests_qemu::verdict::{Expect, Problem, SvmExpect, SvmResult};

fn image() -> PathBuf {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            launcher::ensure_tools().expect("qemu-system-ppc64 and swtpm");
            launcher::build_image().expect("image build")
        })
        .clone()
}

fn config(scenario: &str) -> RunConfig {
    let mut cfg = RunConfig::new(scenario, image());
    cfg.timeout = Duration::from_secs(30);
    cfg
}

#[test]
fn default_boot_passes_every_self_test_and_powers_off() {
    let r = launcher::run(&config("default")).expect("launch");
    assert!(
        r.passed(),
        "problems: {:?}\n--- console ---\n{}\n--- stderr ---\n{}",
        r.verdict.problems,
        r.console,
        r.stderr
    );
    let (passed, failed) = r.verdict.summary.counts.expect("count line");
    assert!(passed > 0);
    assert_eq!(failed, 0);
    assert_eq!(passed as usize, r.verdict.summary.passed_names.len());
    assert_eq!(r.exit.code, Some(0), "QEMU exits by itself after power-off");
    assert_eq!(
        r.verdict.summary.svm,
        vec![SvmResult::None],
        "no secure VM given: exactly one `svm: none`"
    );
    assert!(!r.exit.timed_out);
    assert!(r.to_banner.is_some_and(|b| b < r.wall));
    assert!(
        r.wall < Duration::from_secs(10),
        "boot took {:?} (budget 10 s)",
        r.wall
    );
}

#[test]
fn selftest_panic_fails_with_the_panic_message_on_the_console() {
    let mut cfg = config("panic");
    cfg.bootargs = Some("selftest=panic".into());
    let r = launcher::run(&cfg).expect("launch");
    assert!(!r.passed(), "a panicking boot must fail:\n{}", r.console);
    let panic_line = r
        .console
        .lines()
        .find(|l| l.contains("panicked at "))
        .unwrap_or_else(|| panic!("no panic message on the console:\n{}", r.console));
    assert!(r.verdict.problems.contains(&Problem::Forbidden(
        panic_line.trim_end_matches('\r').into()
    )));
    // The image still powers off after a panic, so QEMU exits by itself.
    assert!(!r.exit.timed_out, "{:?}", r.verdict.problems);
}

#[test]
fn a_boot_past_its_deadline_is_killed_and_judged_timed_out() {
    let mut cfg = config("timeout");
    cfg.timeout = Duration::from_millis(300);
    let r = launcher::run(&cfg).expect("launch");
    assert!(r.exit.timed_out);
    assert_eq!(r.exit.code, None, "QEMU was killed by the launcher");
    assert!(r.verdict.problems.contains(&Problem::TimedOut));
    assert!(r.wall < Duration::from_secs(3), "kill took {:?}", r.wall);
}

#[test]
fn selftest_none_with_a_probe_passes_without_self_tests() {
    let mut cfg = config("probe-only");
    let bootargs = "hcall-probe=1,buf,12,buf,4096 selftest=none";
    cfg.bootargs = Some(bootargs.into());
    cfg.expect = Expect::for_bootargs(Some(bootargs), SvmExpect::Absent);
    let r = launcher::run(&cfg).expect("launch");
    assert!(
        r.passed(),
        "problems: {:?}\n--- console ---\n{}",
        r.verdict.problems,
        r.console
    );
    assert_eq!(r.verdict.summary.counts, Some((0, 0)), "{}", r.console);
    // Without the expectation derived from the bootargs, the same console fails.
    let strict = tests_qemu::verdict::judge(&r.console, r.exit, &Expect::default());
    assert!(strict
        .problems
        .contains(&Problem::TooFewPassed { passed: 0, min: 1 }));
}
