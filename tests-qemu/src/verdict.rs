//! The console verdict: one pure function, [`judge`], that decides whether a boot passed
//! from the text the image printed and from how QEMU ended.
//!
//! QEMU's exit status is 0 whether the image passed or not, so the verdict comes from the
//! console protocol (declared once in `pefbox::report`, README "Console protocol"):
//! - banner: a line starting `pefbox `;
//! - self-tests: `PASS <name>` / `FAIL <name>: <reason>` and exactly one `<N> passed, <M> failed`;
//! - ultravisor verdict: `svm: accepted`, `svm: rejected: <reason>`, or `svm: none` (no secure
//!   VM given); at most one `svm:` line per boot;
//! - power-off: `pefbox: power-off (<verdict>)`;
//! - fatal: `panicked at ...`, `unexpected interrupt vector 0x...`, skiboot's `Fatal Exception`.
//!
//! This module also parses `bench <key>=<value> ...` lines for the bench command, and
//! extracts the device tree a `dump-dt` boot printed ([`extract_dt_dump`]). Dump lines
//! (`dt-dump: ...`, base64 has no spaces) carry no marker [`judge`] looks at.
#![forbid(unsafe_code)]

use pefbox::report;
use std::fmt;

/// How the QEMU process ended, as the launcher observed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    /// The launcher killed QEMU because the deadline passed.
    pub timed_out: bool,
    /// The launcher killed QEMU because the user interrupted the run (Ctrl-C, SIGTERM).
    pub interrupted: bool,
    /// The launcher killed QEMU shortly after skiboot reported a crash (see
    /// [`FIRMWARE_CRASH`]); the crash line itself is the problem reported.
    pub after_crash: bool,
    /// QEMU's exit code, `None` if it was ended by a signal.
    pub code: Option<i32>,
}

impl ExitInfo {
    /// QEMU exited by itself with status 0 (what a power-off produces).
    pub fn clean() -> Self {
        ExitInfo {
            timed_out: false,
            interrupted: false,
            after_crash: false,
            code: Some(0),
        }
    }
}

/// What the ultravisor verdict line must say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SvmExpect {
    /// No secure VM in this scenario: either no `svm:` line or `svm: none`; an `accepted` or
    /// `rejected` verdict is a problem.
    #[default]
    Absent,
    /// Exactly one `svm: accepted` line.
    Accepted,
    /// Exactly one `svm: rejected: <reason>` line whose reason contains this text (an empty
    /// text accepts any reason).
    Rejected(&'static str),
    /// Do not look at `svm:` lines (beyond requiring at most one).
    Any,
}

impl fmt::Display for SvmExpect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SvmExpect::Absent => write!(f, "no svm verdict or `svm: none`"),
            SvmExpect::Accepted => write!(f, "`svm: accepted`"),
            SvmExpect::Rejected("") => write!(f, "`svm: rejected: <any reason>`"),
            SvmExpect::Rejected(r) => write!(f, "`svm: rejected: ...{r}...`"),
            SvmExpect::Any => write!(f, "any svm verdict"),
        }
    }
}

/// What a scenario expects from the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// The least number of self-tests that must have passed (the count line's N). 0 only
    /// makes sense for boots that skip the self-tests (`selftest=none`, see
    /// [`Expect::for_bootargs`]).
    pub min_passed: u32,
    /// The ultravisor verdict expected.
    pub svm: SvmExpect,
}

impl Default for Expect {
    fn default() -> Self {
        Expect {
            min_passed: 1,
            svm: SvmExpect::Absent,
        }
    }
}

/// True if the bootargs hold the token `selftest=none` (the image then runs no self-test).
pub fn skips_selftests(bootargs: &str) -> bool {
    bootargs.split_whitespace().any(|t| t == "selftest=none")
}

impl Expect {
    /// The default expectation for a boot with these bootargs and this ultravisor verdict:
    /// at least one passed self-test, unless the bootargs say `selftest=none`.
    pub fn for_bootargs(bootargs: Option<&str>, svm: SvmExpect) -> Self {
        Expect {
            min_passed: u32::from(!bootargs.is_some_and(skips_selftests)),
            svm,
        }
    }
}

/// The ultravisor verdict read from the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SvmResult {
    /// `svm: accepted`.
    Accepted,
    /// `svm: rejected: <reason>`, with the reason.
    Rejected(String),
    /// `svm: none`: the image was given no secure VM.
    None,
}

impl fmt::Display for SvmResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SvmResult::Accepted => write!(f, "accepted"),
            SvmResult::Rejected(r) => write!(f, "rejected: {r}"),
            SvmResult::None => write!(f, "none"),
        }
    }
}

/// One reason a boot failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// No line starting `pefbox `.
    NoBanner,
    /// No `<N> passed, <M> failed` line.
    NoCountLine,
    /// More than one count line (the protocol says exactly one).
    ManyCountLines(usize),
    /// The count line reports failures.
    TestsFailed(u32),
    /// Fewer tests passed than the scenario expects.
    TooFewPassed {
        /// The count line's N.
        passed: u32,
        /// The scenario's minimum.
        min: u32,
    },
    /// The count line disagrees with the number of `PASS`/`FAIL` lines.
    CountMismatch {
        /// (passed, failed) as the count line says.
        claimed: (u32, u32),
        /// (passed, failed) as counted from `PASS`/`FAIL` lines.
        seen: (u32, u32),
    },
    /// No `pefbox: power-off (...)` line.
    NoPowerOff,
    /// A forbidden marker appeared; the whole line is kept.
    Forbidden(String),
    /// The ultravisor verdict is not the expected one (`None`: no `svm:` line).
    Svm {
        /// What the scenario expected.
        expected: SvmExpect,
        /// What the console said.
        got: Option<SvmResult>,
    },
    /// More than one `svm:` verdict line in one boot.
    ManySvmVerdicts(usize),
    /// QEMU did not finish before the deadline.
    TimedOut,
    /// The run was interrupted by the user.
    Interrupted,
    /// QEMU exited with a non-zero code or was killed by a signal not sent by the launcher.
    QemuExit(Option<i32>),
    /// The SVM's payload line (`[partition N] svm-payload: running in partition N`) is not
    /// as the verdict requires: missing or repeated after `svm: accepted`, printed before it
    /// or naming another partition, or present at all when the SVM was not accepted.
    Payload(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NoBanner => write!(f, "no `pefbox ` banner line"),
            Problem::NoCountLine => write!(f, "no `<N> passed, <M> failed` line"),
            Problem::ManyCountLines(n) => write!(f, "{n} count lines (expected exactly one)"),
            Problem::TestsFailed(m) => write!(f, "{m} self-test(s) failed"),
            Problem::TooFewPassed { passed, min } => {
                write!(f, "{passed} self-test(s) passed, expected at least {min}")
            }
            Problem::CountMismatch { claimed, seen } => write!(
                f,
                "count line says {} passed, {} failed but the console shows {} PASS and {} FAIL lines",
                claimed.0, claimed.1, seen.0, seen.1
            ),
            Problem::NoPowerOff => write!(f, "no `pefbox: power-off (...)` line"),
            Problem::Forbidden(line) => write!(f, "forbidden console line: {line}"),
            Problem::Svm { expected, got } => match got {
                Some(g) => write!(f, "svm verdict `{g}`, expected {expected}"),
                None => write!(f, "no svm verdict line, expected {expected}"),
            },
            Problem::ManySvmVerdicts(n) => write!(f, "{n} svm verdict lines (expected one)"),
            Problem::TimedOut => write!(f, "timed out (QEMU killed)"),
            Problem::Interrupted => write!(f, "interrupted (QEMU killed)"),
            Problem::QemuExit(Some(c)) => write!(f, "QEMU exited with status {c}"),
            Problem::QemuExit(None) => write!(f, "QEMU was killed by a signal"),
            Problem::Payload(why) => write!(f, "SVM payload: {why}"),
        }
    }
}

/// What the console said, whatever the verdict.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsoleSummary {
    /// The banner line, if any.
    pub banner: Option<String>,
    /// The (passed, failed) numbers of the last count line, if any.
    pub counts: Option<(u32, u32)>,
    /// The number of count lines seen.
    pub count_lines: usize,
    /// Names of the tests with a `PASS` line.
    pub passed_names: Vec<String>,
    /// `FAIL` lines, without the `FAIL ` prefix.
    pub failures: Vec<String>,
    /// Every `svm:` verdict seen, in order.
    pub svm: Vec<SvmResult>,
    /// The text inside `pefbox: power-off (...)`, if that line appeared.
    pub power_off: Option<String>,
    /// Lines carrying a forbidden marker.
    pub forbidden: Vec<String>,
    /// The line number of the first `svm:` verdict line, if any.
    pub svm_line: Option<usize>,
    /// Each payload line (`[partition N] svm-payload: running in partition M`): its line
    /// number, N (who printed it, as the hypervisor says) and M (what it says), in order.
    pub payload: Vec<(usize, u32, String)>,
}

/// The verdict on one boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Every reason the boot failed; empty means it passed.
    pub problems: Vec<Problem>,
    /// What the console said.
    pub summary: ConsoleSummary,
}

impl Verdict {
    /// True when there is no problem.
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// skiboot's own crash texts (seen under QEMU 7.2 / skiboot 7.0): after one of these skiboot
/// hangs or reboots, so the launcher stops QEMU shortly after seeing it.
pub const FIRMWARE_CRASH: [&str; 4] = [
    "Fatal Exception",
    "Fatal TRAP",
    "Fatal MCE",
    "< assert failed at",
];

/// Substrings that fail a boot wherever they appear in a line (plus [`FIRMWARE_CRASH`]).
pub const FORBIDDEN_ANYWHERE: [&str; 2] = ["panicked at", "unexpected interrupt"];

/// True if the line is one of skiboot's crash messages.
pub fn is_firmware_crash(line: &str) -> bool {
    FIRMWARE_CRASH.iter().any(|m| line.contains(m))
}

pub use pefbox::report::parse_count_line;

/// Reads the console protocol out of the text, without judging it.
pub fn summarize(console: &str) -> ConsoleSummary {
    let mut s = ConsoleSummary::default();
    for (n, raw) in console.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if let Some((lpid, text)) = report::parse_partition_line(line) {
            if let Some(said) = text.strip_prefix(report::SVM_PAYLOAD_RUNNING) {
                s.payload.push((n, lpid, said.trim().to_string()));
            }
        }
        if s.banner.is_none() && line.starts_with("pefbox ") {
            s.banner = Some(line.to_string());
        }
        if let Some(c) = parse_count_line(line) {
            s.counts = Some(c);
            s.count_lines += 1;
        }
        if let Some(name) = line.strip_prefix(report::PASS) {
            s.passed_names.push(name.trim().to_string());
        }
        if let Some(fail) = line.strip_prefix(report::FAIL) {
            s.failures.push(fail.to_string());
        }
        if let Some(v) = line.strip_prefix(report::SVM) {
            s.svm_line.get_or_insert(n);
            let v = v.trim();
            if v == report::SVM_ACCEPTED {
                s.svm.push(SvmResult::Accepted);
            } else if v == report::SVM_NONE {
                s.svm.push(SvmResult::None);
            } else if let Some(r) = v.strip_prefix(report::SVM_REJECTED) {
                let r = r.strip_prefix(':').unwrap_or(r).trim();
                s.svm.push(SvmResult::Rejected(r.to_string()));
            }
        }
        if let Some(rest) = line.strip_prefix(report::POWER_OFF) {
            s.power_off = Some(rest.strip_suffix(')').unwrap_or(rest).to_string());
        }
        if FORBIDDEN_ANYWHERE.iter().any(|m| line.contains(m))
            || is_firmware_crash(line)
            || line.starts_with(report::FAIL)
        {
            s.forbidden.push(line.to_string());
        }
    }
    s
}

/// Judges one boot: the console text, how QEMU ended, and what the scenario expects.
pub fn judge(console: &str, exit: ExitInfo, expect: &Expect) -> Verdict {
    let summary = summarize(console);
    let mut problems = Vec::new();
    if exit.interrupted {
        problems.push(Problem::Interrupted);
    } else if exit.timed_out {
        problems.push(Problem::TimedOut);
    } else if exit.code != Some(0) && !exit.after_crash {
        problems.push(Problem::QemuExit(exit.code));
    }
    for line in &summary.forbidden {
        problems.push(Problem::Forbidden(line.clone()));
    }
    if summary.banner.is_none() {
        problems.push(Problem::NoBanner);
    }
    match summary.counts {
        None => problems.push(Problem::NoCountLine),
        Some((passed, failed)) => {
            if summary.count_lines > 1 {
                problems.push(Problem::ManyCountLines(summary.count_lines));
            }
            if failed > 0 {
                problems.push(Problem::TestsFailed(failed));
            }
            if passed < expect.min_passed {
                problems.push(Problem::TooFewPassed {
                    passed,
                    min: expect.min_passed,
                });
            }
            let seen = (
                u32::try_from(summary.passed_names.len()).unwrap_or(u32::MAX),
                u32::try_from(summary.failures.len()).unwrap_or(u32::MAX),
            );
            if seen != (passed, failed) {
                problems.push(Problem::CountMismatch {
                    claimed: (passed, failed),
                    seen,
                });
            }
        }
    }
    if summary.svm.len() > 1 {
        problems.push(Problem::ManySvmVerdicts(summary.svm.len()));
    }
    let got = summary.svm.first().cloned();
    let svm_ok = match (expect.svm, &got) {
        (SvmExpect::Any, _) => true,
        (SvmExpect::Absent, g) => matches!(g, None | Some(SvmResult::None)),
        (SvmExpect::Accepted, g) => *g == Some(SvmResult::Accepted),
        (SvmExpect::Rejected(want), Some(SvmResult::Rejected(reason))) => reason.contains(want),
        (SvmExpect::Rejected(_), _) => false,
    };
    if !svm_ok {
        problems.push(Problem::Svm {
            expected: expect.svm,
            got,
        });
    }
    // Once the verdict is the expected one, the payload must agree with it.
    if let Some(p) = payload_problem(expect.svm, &summary).filter(|_| svm_ok) {
        problems.push(Problem::Payload(p));
    }
    if summary.power_off.is_none() {
        problems.push(Problem::NoPowerOff);
    }
    Verdict { problems, summary }
}

/// The payload line's problem, if any: an accepted SVM runs and says so exactly once, after
/// the verdict, naming the partition that printed it; any other SVM never runs.
fn payload_problem(expect: SvmExpect, s: &ConsoleSummary) -> Option<String> {
    match expect {
        SvmExpect::Any => None,
        SvmExpect::Accepted => match s.payload.as_slice() {
            [] => Some("no `svm-payload: running in partition` line after `svm: accepted`".into()),
            [(n, lpid, said)] => {
                if s.svm_line.is_none_or(|v| *n < v) {
                    Some("its line came before the verdict".into())
                } else if said.parse::<u32>().ok() != Some(*lpid) {
                    Some(format!("partition {lpid} says it runs in partition {said}"))
                } else {
                    None
                }
            }
            many => Some(format!("{} payload lines (expected one)", many.len())),
        },
        SvmExpect::Absent | SvmExpect::Rejected(_) => {
            (!s.payload.is_empty()).then(|| "the SVM ran though it was not accepted".to_string())
        }
    }
}

/// Parses a `bench <key>=<value> ...` line into its pairs; `None` if it is not a bench line.
/// Tokens without `=` are ignored.
pub fn parse_bench_line(line: &str) -> Option<Vec<(String, String)>> {
    let rest = line.trim_end_matches('\r').strip_prefix("bench ")?;
    Some(
        rest.split_whitespace()
            .filter_map(|t| t.split_once('='))
            .filter(|(k, _)| !k.is_empty())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// The device tree a boot with the `dump-dt` bootarg printed (see
/// `pefbox::platform::dt_dump`): the bytes of the `dt-dump: <base64>` lines between
/// `dt-dump: begin <size> bytes sha256=<hex>` and `dt-dump: end`, checked against that
/// size and digest. Lines without the `dt-dump: ` prefix are skipped (the dump sits among
/// other console lines; `\r` line ends are allowed); so is anything after `end`.
pub fn extract_dt_dump(console: &str) -> Result<Vec<u8>, String> {
    use base64ct::{Base64, Encoding};
    use sha2::{Digest, Sha256};
    const PREFIX: &str = "dt-dump: ";
    let mut header: Option<(usize, String)> = None;
    let mut data = Vec::new();
    let mut ended = false;
    for (i, raw) in console.lines().enumerate() {
        let Some(rest) = raw.trim_end_matches('\r').strip_prefix(PREFIX) else {
            continue;
        };
        let at = |what: String| format!("console line {}: {what}", i + 1);
        if let Some(h) = rest.strip_prefix("begin ") {
            if header.is_some() {
                return Err(at("a second `dt-dump: begin`".into()));
            }
            let parsed = h.split_once(" bytes sha256=").and_then(|(n, d)| {
                let hex_ok = d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit());
                Some((n.parse::<usize>().ok()?, d.to_ascii_lowercase())).filter(|_| hex_ok)
            });
            header = Some(parsed.ok_or_else(|| {
                at(format!(
                    "malformed begin line {rest:?} (expected `begin <N> bytes sha256=<64 hex>`)"
                ))
            })?);
        } else if rest == "end" {
            if header.is_none() {
                return Err(at("`dt-dump: end` before `dt-dump: begin`".into()));
            }
            ended = true;
            break;
        } else if header.is_none() {
            return Err(at(format!(
                "no `dt-dump: begin` before this dump line: {rest:?}"
            )));
        } else {
            let bytes =
                Base64::decode_vec(rest).map_err(|e| at(format!("bad base64 {rest:?}: {e}")))?;
            data.extend_from_slice(&bytes);
        }
    }
    let (size, digest) = header.ok_or("no `dt-dump: begin` line (boot without dump-dt?)")?;
    if !ended {
        return Err(format!(
            "no `dt-dump: end` line: dump truncated after {} of {size} bytes",
            data.len()
        ));
    }
    if data.len() != size {
        return Err(format!(
            "dump holds {} bytes, its begin line says {size}",
            data.len()
        ));
    }
    let got: String = Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if got != digest {
        return Err(format!(
            "dump sha256 is {got}, its begin line says {digest}"
        ));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FDT: &[u8] = include_bytes!("../../crates/dtb/testdata/qemu-powernv9.dtb");

    /// A console with the image's own dump lines of `fdt` after the banner.
    fn with_dump(fdt: &[u8]) -> String {
        let mut lines: Vec<String> = GOOD.lines().map(str::to_string).collect();
        let dump = pefbox::platform::dt_dump::lines(fdt).map(|l| format!("{l}\r"));
        lines.splice(2..2, dump);
        lines.join("\n") + "\n"
    }

    #[test]
    fn dt_dump_round_trips_and_does_not_change_the_verdict() {
        let console = with_dump(FDT);
        assert!(console.lines().count() > GOOD.lines().count() + 90);
        assert_eq!(extract_dt_dump(&console), Ok(FDT.to_vec()));
        let v = judge(&console, ExitInfo::clean(), &Expect::default());
        assert_eq!(v.problems, vec![]);
        assert_eq!(
            v.summary,
            judge(GOOD, ExitInfo::clean(), &Expect::default()).summary
        );
        // Empty dump, and a dump at the very end without a trailing newline.
        assert_eq!(extract_dt_dump(&with_dump(&[])), Ok(vec![]));
        let tail: Vec<String> = pefbox::platform::dt_dump::lines(b"abcdef")
            .map(|l| l.to_string())
            .collect();
        assert_eq!(extract_dt_dump(&tail.join("\n")), Ok(b"abcdef".to_vec()));
    }

    #[test]
    fn dt_dump_errors_name_what_is_wrong() {
        use base64ct::Encoding;
        let good = with_dump(FDT);
        let edit = |f: &dyn Fn(&str) -> Option<String>| -> String {
            good.lines()
                .filter_map(|l| match f(l) {
                    Some(x) if x.is_empty() => None,
                    Some(x) => Some(x),
                    None => Some(l.to_string()),
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        let err = |c: &str| extract_dt_dump(c).unwrap_err();
        assert!(err(GOOD).contains("no `dt-dump: begin` line"));
        let no_begin = edit(&|l| l.contains("dt-dump: begin").then(String::new));
        assert!(
            err(&no_begin).contains("no `dt-dump: begin` before"),
            "{}",
            err(&no_begin)
        );
        let no_end = edit(&|l| l.contains("dt-dump: end").then(String::new));
        assert!(
            err(&no_end).contains("no `dt-dump: end` line"),
            "{}",
            err(&no_end)
        );
        let first_data = good
            .lines()
            .find(|l| l.starts_with("dt-dump: ") && !l.contains("begin"))
            .unwrap()
            .trim_end()
            .to_string();
        let bad64 = edit(&|l| {
            (l.trim_end() == first_data)
                .then(|| format!("{}!", &first_data[..first_data.len() - 1]))
        });
        assert!(err(&bad64).contains("bad base64"), "{}", err(&bad64));
        // A whole data line lost: size mismatch; one byte changed (valid base64): digest.
        let short = edit(&|l| (l.trim_end() == first_data).then(String::new));
        assert!(err(&short).contains("dump holds"), "{}", err(&short));
        let flipped = {
            let b64 = first_data.strip_prefix("dt-dump: ").unwrap();
            let mut bytes = base64ct::Base64::decode_vec(b64).unwrap();
            bytes[5] ^= 1;
            format!("dt-dump: {}", base64ct::Base64::encode_string(&bytes))
        };
        let changed = edit(&|l| (l.trim_end() == first_data).then(|| flipped.clone()));
        assert!(
            err(&changed).contains("dump sha256 is "),
            "{}",
            err(&changed)
        );
        // Whatever follows the first complete dump is not looked at.
        assert_eq!(
            extract_dt_dump(&format!("{good}garbage\n{good}")),
            Ok(FDT.to_vec())
        );
        let double_begin = good.replacen(
            "dt-dump: begin",
            "dt-dump: begin 1 bytes sha256=00\ndt-dump: begin",
            1,
        );
        assert!(
            err(&double_begin).contains("malformed begin line"),
            "{}",
            err(&double_begin)
        );
        let begin_line = good.lines().find(|l| l.contains("begin")).unwrap();
        let two_begins = good.replacen(begin_line, &format!("{begin_line}\n{begin_line}"), 1);
        assert!(err(&two_begins).contains("a second `dt-dump: begin`"));
        let unavailable = "pefbox x\ndt-dump: unavailable: device tree unreadable (BadMagic)\n";
        assert!(
            err(unavailable).contains("unavailable"),
            "{}",
            err(unavailable)
        );
    }

    const GOOD: &str = "\
[    0.123456789,5] INIT: Starting kernel at 0x20010000, fdt at 0x3066b8c8\r
pefbox 0.1.0 powernv: 1024 MiB, timebase 512000000 Hz\r
PASS tpm_marshal\r
PASS hcall_bad_op\r
PASS hcall_dead_tpm\r
3 passed, 0 failed\r
pefbox: power-off (pass)\r
";

    fn problems(console: &str, exit: ExitInfo, expect: &Expect) -> Vec<Problem> {
        judge(console, exit, expect).problems
    }

    /// The image to flash: no self-tests, its count line counts the flow's own checks.
    const FLASH: &str = "\
pefbox 0.1.0 (1465ad5388) powernv: IBM PowerNV (emulated by qemu) [qemu,powernv9, ibm,powernv]\r
fw: storage parent 0x81800000 present, door index 0x1c10001 present, wrapping key 0x81800001 present; door auth rotated; PCR 11 extended (door closed); platform auth locked\r
PASS provisioning\r
hv: H_TPM_COMM over the TPM link\r
uv: salted policy session 0x2000000 to 0x81800000 (Name pinned) in 24 ms; wrapping key fingerprint edaa4958\r
PASS uv-session\r
svm: accepted\r
[partition 1] svm-payload: running in partition 1\r
uv: SVM partition 1 exited (UV_SVM_TERMINATE, status 0x0)\r
2 passed, 0 failed\r
hv: TPM2_Shutdown(CLEAR) done\r
pefbox: power-off (pass)\r
";

    #[test]
    fn a_flash_image_boot_is_judged_on_the_flows_checks() {
        let accepted = Expect {
            min_passed: 2,
            svm: SvmExpect::Accepted,
        };
        let v = judge(FLASH, ExitInfo::clean(), &accepted);
        assert_eq!(v.problems, vec![]);
        assert_eq!(v.summary.counts, Some((2, 0)));
        assert_eq!(v.summary.passed_names, ["provisioning", "uv-session"]);
        // A failed session is a FAIL line and a failed count, and the boot fails.
        let failed = FLASH
            .replace(
                "PASS uv-session",
                "FAIL uv-session: no wrapping key was provisioned",
            )
            .replace("2 passed, 0 failed", "1 passed, 1 failed")
            .replace(
                "svm: accepted",
                "svm: rejected: lockbox key not unwrapped: no ultravisor session",
            )
            .replace("[partition 1] svm-payload: running in partition 1\r\n", "")
            .replace("power-off (pass)", "power-off (fail)");
        let p = problems(
            &failed,
            ExitInfo::clean(),
            &Expect {
                min_passed: 1,
                svm: SvmExpect::Any,
            },
        );
        assert_eq!(
            p,
            vec![
                Problem::Forbidden("FAIL uv-session: no wrapping key was provisioned".into()),
                Problem::TestsFailed(1)
            ]
        );
        // A count line that hid the flow's checks would not match its PASS lines.
        let hidden = FLASH.replace("2 passed, 0 failed", "0 passed, 0 failed");
        assert!(problems(&hidden, ExitInfo::clean(), &Expect::default())
            .iter()
            .any(|p| matches!(p, Problem::CountMismatch { .. })));
    }

    #[test]
    fn a_good_boot_passes_and_is_summarized() {
        let v = judge(GOOD, ExitInfo::clean(), &Expect::default());
        assert_eq!(v.problems, vec![]);
        assert!(v.passed());
        assert_eq!(v.summary.counts, Some((3, 0)));
        assert_eq!(v.summary.passed_names[2], "hcall_dead_tpm");
        assert_eq!(v.summary.power_off.as_deref(), Some("pass"));
        assert!(v.summary.banner.unwrap().starts_with("pefbox 0.1.0"));
    }

    /// The problems of `console` after a clean exit, judged by the default expectation.
    fn problems_of(console: &str) -> Vec<Problem> {
        problems(console, ExitInfo::clean(), &Expect::default())
    }

    /// [`problems_of`] the good console with `from` replaced by `to`.
    fn problems_replacing(from: &str, to: &str) -> Vec<Problem> {
        problems_of(&GOOD.replace(from, to))
    }

    #[test]
    fn a_panic_fails_with_its_line() {
        let p = problems_replacing(
            "PASS hcall_bad_op\r\n",
            "panicked at src/selftest/mod.rs:42: boom\r\n",
        );
        assert!(p.contains(&Problem::Forbidden(
            "panicked at src/selftest/mod.rs:42: boom".into()
        )));
        // The PASS line count no longer matches the claimed 3.
        assert!(p.iter().any(|x| matches!(x, Problem::CountMismatch { .. })));
    }

    #[test]
    fn skiboot_crash_and_stray_interrupts_are_forbidden() {
        for bad in [
            "Fatal Exception 0x700 at 0000000020010abc   MSR 9000000000000000",
            "[    0.339107027,3] Fatal TRAP at 0000000030022238   .load_and_boot_kernel+0x630",
            "[    0.338015217,3] < assert failed at core/init.c:556 >",
            "unexpected interrupt vector 0x300",
        ] {
            let console = format!("{GOOD}{bad}\n");
            let p = problems_of(&console);
            assert_eq!(p, vec![Problem::Forbidden(bad.into())], "{bad}");
        }
        // Killed by the launcher after a skiboot crash: the crash line is the reason, not
        // the signal.
        let crash = "Fatal TRAP at 0000000030022238";
        let killed = ExitInfo {
            after_crash: true,
            code: None,
            ..ExitInfo::clean()
        };
        assert_eq!(
            problems(crash, killed, &Expect::default()),
            vec![
                Problem::Forbidden(crash.into()),
                Problem::NoBanner,
                Problem::NoCountLine,
                Problem::NoPowerOff
            ]
        );
    }

    #[test]
    fn a_failed_test_fails_even_if_the_count_line_hides_it() {
        let console = GOOD.replace("PASS hcall_bad_op", "FAIL hcall_bad_op: got -4");
        let p = problems_of(&console);
        assert!(p.contains(&Problem::Forbidden("FAIL hcall_bad_op: got -4".into())));
        assert!(p.contains(&Problem::CountMismatch {
            claimed: (3, 0),
            seen: (2, 1)
        }));
        let honest = console.replace("3 passed, 0 failed", "2 passed, 1 failed");
        let p = problems(&honest, ExitInfo::clean(), &Expect::default());
        assert!(p.contains(&Problem::TestsFailed(1)));
        assert!(!p.iter().any(|x| matches!(x, Problem::CountMismatch { .. })));
    }

    #[test]
    fn missing_markers_are_each_reported() {
        let p = problems("", ExitInfo::clean(), &Expect::default());
        assert_eq!(
            p,
            vec![Problem::NoBanner, Problem::NoCountLine, Problem::NoPowerOff]
        );
    }

    #[test]
    fn zero_tests_is_not_a_pass() {
        let console = "pefbox 0.1.0\n0 passed, 0 failed\npefbox: power-off (pass)\n";
        let p = problems(console, ExitInfo::clean(), &Expect::default());
        assert_eq!(p, vec![Problem::TooFewPassed { passed: 0, min: 1 }]);
        let expect = Expect {
            min_passed: 4,
            ..Expect::default()
        };
        let p = problems(GOOD, ExitInfo::clean(), &expect);
        assert_eq!(p, vec![Problem::TooFewPassed { passed: 3, min: 4 }]);
    }

    #[test]
    fn two_count_lines_fail() {
        let p = problems_replacing(
            "3 passed, 0 failed\r\n",
            "3 passed, 0 failed\n3 passed, 0 failed\n",
        );
        assert!(p.contains(&Problem::ManyCountLines(2)));
    }

    #[test]
    fn timeout_interrupt_and_qemu_status_are_problems() {
        let timed_out = ExitInfo {
            timed_out: true,
            code: None,
            ..ExitInfo::clean()
        };
        let interrupted = ExitInfo {
            interrupted: true,
            code: None,
            ..ExitInfo::clean()
        };
        let crashed = ExitInfo {
            code: Some(1),
            ..ExitInfo::clean()
        };
        for (what, exit, want) in [
            ("timed out", timed_out, Problem::TimedOut),
            ("interrupted", interrupted, Problem::Interrupted),
            ("QEMU exit status 1", crashed, Problem::QemuExit(Some(1))),
        ] {
            assert_eq!(
                problems(GOOD, exit, &Expect::default()),
                vec![want],
                "{what}"
            );
        }
    }

    #[test]
    fn svm_verdict_must_match_the_expectation() {
        let accepted = GOOD.replace(
            "pefbox: power-off",
            "svm: accepted\n[partition 1] svm-payload: running in partition 1\npefbox: power-off",
        );
        let rejected = GOOD.replace(
            "pefbox: power-off",
            "svm: rejected: kernel digest mismatch\npefbox: power-off",
        );
        let want = |svm| Expect {
            svm,
            ..Expect::default()
        };
        assert!(judge(&accepted, ExitInfo::clean(), &want(SvmExpect::Accepted)).passed());
        assert!(judge(
            &rejected,
            ExitInfo::clean(),
            &want(SvmExpect::Rejected("kernel digest"))
        )
        .passed());
        assert!(judge(&rejected, ExitInfo::clean(), &want(SvmExpect::Rejected(""))).passed());
        // The reason must be the expected one.
        assert_eq!(
            problems(
                &rejected,
                ExitInfo::clean(),
                &want(SvmExpect::Rejected("bootargs digest mismatch"))
            ),
            vec![Problem::Svm {
                expected: SvmExpect::Rejected("bootargs digest mismatch"),
                got: Some(SvmResult::Rejected("kernel digest mismatch".into()))
            }]
        );
        assert!(!judge(&accepted, ExitInfo::clean(), &want(SvmExpect::Rejected(""))).passed());
        assert_eq!(
            problems(&rejected, ExitInfo::clean(), &want(SvmExpect::Accepted)),
            vec![Problem::Svm {
                expected: SvmExpect::Accepted,
                got: Some(SvmResult::Rejected("kernel digest mismatch".into()))
            }]
        );
        assert_eq!(
            problems(GOOD, ExitInfo::clean(), &want(SvmExpect::Accepted)),
            vec![Problem::Svm {
                expected: SvmExpect::Accepted,
                got: None
            }]
        );
        // A verdict nobody asked for is also wrong.
        assert!(!judge(&accepted, ExitInfo::clean(), &Expect::default()).passed());
        let twice = accepted.replace("svm: accepted", "svm: accepted\nsvm: accepted");
        assert!(
            problems(&twice, ExitInfo::clean(), &want(SvmExpect::Accepted))
                .contains(&Problem::ManySvmVerdicts(2))
        );
    }

    #[test]
    fn an_accepted_svm_runs_once_after_its_verdict_and_a_rejected_one_never() {
        const RUNS: &str = "[partition 1] svm-payload: running in partition 1";
        let with = |lines: &[&str]| {
            GOOD.replace(
                "pefbox: power-off",
                &format!("{}\npefbox: power-off", lines.join("\n")),
            )
        };
        let want = |svm| Expect {
            svm,
            ..Expect::default()
        };
        let payload = |console: &str, svm| -> Vec<Problem> {
            problems(console, ExitInfo::clean(), &want(svm))
                .into_iter()
                .filter(|p| matches!(p, Problem::Payload(_)))
                .collect()
        };
        assert_eq!(
            payload(&with(&["svm: accepted", RUNS]), SvmExpect::Accepted),
            vec![]
        );
        for (console, why) in [
            (with(&["svm: accepted"]), "no `svm-payload"),
            (with(&[RUNS, "svm: accepted"]), "before the verdict"),
            (with(&["svm: accepted", RUNS, RUNS]), "2 payload lines"),
            (
                with(&[
                    "svm: accepted",
                    "[partition 2] svm-payload: running in partition 1",
                ]),
                "partition 2 says it runs in partition 1",
            ),
            // An SVM that prints the text itself cannot pass for the image's own line.
            (
                with(&["svm: accepted", "svm-payload: running in partition 1"]),
                "no `svm-payload",
            ),
        ] {
            let p = payload(&console, SvmExpect::Accepted);
            assert!(
                matches!(p.as_slice(), [Problem::Payload(w)] if w.contains(why)),
                "{why}: {p:?}"
            );
        }
        let rejected = with(&["svm: rejected: kernel digest mismatch", RUNS]);
        assert_eq!(
            payload(&rejected, SvmExpect::Rejected("kernel digest")),
            vec![Problem::Payload(
                "the SVM ran though it was not accepted".into()
            )]
        );
        let quiet = with(&["svm: rejected: kernel digest mismatch"]);
        assert_eq!(
            payload(&quiet, SvmExpect::Rejected("kernel digest")),
            vec![]
        );
        assert_eq!(payload(&with(&[RUNS]), SvmExpect::Absent).len(), 1);
    }

    #[test]
    fn count_line_parser_is_strict() {
        assert_eq!(parse_count_line("12 passed, 0 failed"), Some((12, 0)));
        assert_eq!(parse_count_line(" 1 passed, 2 failed\r"), Some((1, 2)));
        for bad in [
            "passed, 0 failed",
            "x passed, 0 failed",
            "1 passed, 0 failed!",
            "1 passed 0 failed",
            "-1 passed, 0 failed",
            "99999999999 passed, 0 failed",
            "1 passed, 0 failed extra",
        ] {
            assert_eq!(parse_count_line(bad), None, "{bad}");
        }
    }

    #[test]
    fn bench_lines_parse_into_pairs() {
        assert_eq!(
            parse_bench_line("bench unwrap_us=1234 cmds=7 junk\r"),
            Some(vec![
                ("unwrap_us".to_string(), "1234".to_string()),
                ("cmds".to_string(), "7".to_string())
            ])
        );
        assert_eq!(parse_bench_line("benchmark x=1"), None);
        assert_eq!(parse_bench_line("PASS bench x=1"), None);
    }

    #[test]
    fn svm_none_is_fine_without_an_svm_but_not_as_an_answer_to_one() {
        let none = GOOD.replace("pefbox: power-off", "svm: none\npefbox: power-off");
        let v = judge(&none, ExitInfo::clean(), &Expect::default());
        assert_eq!(v.problems, vec![]);
        assert_eq!(v.summary.svm, vec![SvmResult::None]);
        let want_accept = Expect {
            svm: SvmExpect::Accepted,
            ..Expect::default()
        };
        assert_eq!(
            problems(&none, ExitInfo::clean(), &want_accept),
            vec![Problem::Svm {
                expected: SvmExpect::Accepted,
                got: Some(SvmResult::None)
            }]
        );
        // `svm: none` plus a verdict: two svm lines.
        let both = none.replace("svm: none", "svm: none\nsvm: accepted");
        assert!(
            problems(&both, ExitInfo::clean(), &want_accept).contains(&Problem::ManySvmVerdicts(2))
        );
        // An unasked-for rejection is a problem for a boot without an SVM.
        let rejected = GOOD.replace(
            "pefbox: power-off",
            "svm: rejected: no ESM blob\npefbox: power-off",
        );
        assert!(!judge(&rejected, ExitInfo::clean(), &Expect::default()).passed());
    }

    #[test]
    fn selftest_none_allows_zero_passed_tests_only_when_asked() {
        let console = "pefbox 0.1.0\nsvm: none\n0 passed, 0 failed\npefbox: power-off (pass)\n";
        let quiet =
            Expect::for_bootargs(Some("hcall-probe=1,0,0 selftest=none"), SvmExpect::Absent);
        assert_eq!(quiet.min_passed, 0);
        assert_eq!(problems(console, ExitInfo::clean(), &quiet), vec![]);
        // A token that merely contains the text does not count.
        for args in [
            None,
            Some(""),
            Some("xselftest=none"),
            Some("selftest=nonex"),
        ] {
            let e = Expect::for_bootargs(args, SvmExpect::Absent);
            assert_eq!(e.min_passed, 1, "{args:?}");
            assert_eq!(
                problems(console, ExitInfo::clean(), &e),
                vec![Problem::TooFewPassed { passed: 0, min: 1 }]
            );
        }
        // A failure still fails with selftest=none.
        let failed = "pefbox 0.1.0\nFAIL x: y\n0 passed, 1 failed\npefbox: power-off (fail)\n";
        assert!(!judge(failed, ExitInfo::clean(), &quiet).passed());
    }
}
