//! The console protocol, declared once: what the image prints and the launcher's verdict
//! (`tests-qemu/src/verdict.rs`) reads. Each line starts at column 0:
//! - `PASS <name>` ([`Pass`]) and `FAIL <name>: <reason>` ([`Fail`]) for each check;
//! - `svm: accepted`, `svm: none` or `svm: rejected: <why>` ([`SVM`]);
//! - the count line, exactly `N passed, M failed` ([`Tally`], read back by
//!   [`parse_count_line`]);
//! - `pefbox: power-off (<verdict>)` ([`PowerOff`]) last.
//!
//! A partition's own console output (the SVM's, through H_PUT_TERM_CHAR) comes out one line at
//! a time as `[partition <LPID>] <line>` ([`PARTITION`]), so it never starts a line of the
//! protocol.
//!
//! The banner, the first line the image prints, starts with [`BANNER`]. The self-test
//! image can also ask the host launcher to act ([`HostRequest`], `@@host <verb>`); the
//! launcher answers on the console's input with `@@ack <verb>` ([`Ack`]) once done or
//! `@@nak <verb>` ([`Nak`]) if it cannot.
//!
//! The count line is the one every image ends its console with before powering off.
//!
//! What it counts: in the self-test image, N is the self-tests that passed and M every
//! failure (self-tests, `hcall-probe`, and the flow's own checks: provisioning and the
//! ultravisor session, each printed as `FAIL <name>: <reason>`). The image to flash runs no
//! self-tests, so its count line counts the flow's checks that ran, each printed as
//! `PASS <name>` or `FAIL <name>: <reason>` (`2 passed, 0 failed` on a good boot).
#![forbid(unsafe_code)]

/// Prefix of a passed check's line.
pub const PASS: &str = "PASS ";
/// Prefix of a failed check's line.
pub const FAIL: &str = "FAIL ";
/// Prefix of the SVM verdict line; what follows is [`SVM_ACCEPTED`], [`SVM_NONE`] or
/// [`SVM_REJECTED`] then `: <why>`.
pub const SVM: &str = "svm: ";
/// The SVM's ESM blob opened and its kernel and bootargs matched.
pub const SVM_ACCEPTED: &str = "accepted";
/// No SVM was given.
pub const SVM_NONE: &str = "none";
/// The SVM was refused.
pub const SVM_REJECTED: &str = "rejected";
/// Prefix of the last line; the verdict and `)` follow.
pub const POWER_OFF: &str = "pefbox: power-off (";

/// Prefix of every line a partition prints (H_PUT_TERM_CHAR): `[partition <LPID>] ` then the
/// line. The hypervisor adds it, so no partition can print a line of the protocol above.
pub const PARTITION: &str = "[partition ";

/// What the demo SVM prints once it runs after `svm: accepted` (its LPID follows).
pub const SVM_PAYLOAD_RUNNING: &str = "svm-payload: running in partition ";

/// A partition's console line split into (the LPID the hypervisor named, the line); `None`
/// for any other line.
pub fn parse_partition_line(line: &str) -> Option<(u32, &str)> {
    let rest = line.strip_prefix(PARTITION)?;
    let (lpid, text) = rest.split_once("] ")?;
    Some((lpid.parse().ok()?, text))
}

/// The banner's first word: `pefbox <version> powernv: <model>...`.
pub const BANNER: &str = "pefbox ";
/// Prefix of a request to the host launcher; the verb follows.
pub const HOST: &str = "@@host ";
/// Prefix of the launcher's answer that the request was carried out.
pub const ACK: &str = "@@ack ";
/// Prefix of the launcher's answer that the request could not be carried out.
pub const NAK: &str = "@@nak ";

/// `@@host <verb>`.
pub struct HostRequest<'a>(pub &'a str);
/// `@@ack <verb>`.
pub struct Ack<'a>(pub &'a str);
/// `@@nak <verb>`.
pub struct Nak<'a>(pub &'a str);

impl core::fmt::Display for HostRequest<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{HOST}{}", self.0)
    }
}

impl core::fmt::Display for Ack<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{ACK}{}", self.0)
    }
}

impl core::fmt::Display for Nak<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{NAK}{}", self.0)
    }
}

/// `PASS <name>`.
pub struct Pass<'a>(pub &'a str);

impl core::fmt::Display for Pass<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{PASS}{}", self.0)
    }
}

/// `FAIL <name>: <reason>`.
pub struct Fail<'a, R>(pub &'a str, pub R);

impl<R: core::fmt::Display> core::fmt::Display for Fail<'_, R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{FAIL}{}: {}", self.0, self.1)
    }
}

/// `pefbox: power-off (<verdict>)`.
pub struct PowerOff<'a>(pub &'a str);

impl core::fmt::Display for PowerOff<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{POWER_OFF}{})", self.0)
    }
}

/// Reads a count line `<N> passed, <M> failed` back (surrounding whitespace allowed).
pub fn parse_count_line(line: &str) -> Option<(u32, u32)> {
    let rest = line.trim();
    let (n, rest) = rest.split_once(' ')?;
    let rest = rest.strip_prefix("passed, ")?;
    let (m, rest) = rest.split_once(' ')?;
    if rest != "failed" {
        return None;
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(n) || !digits(m) {
        return None;
    }
    Some((n.parse().ok()?, m.parse().ok()?))
}

/// Pass/fail counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Tests that passed.
    pub passed: u32,
    /// Tests that failed.
    pub failed: u32,
}

impl core::fmt::Display for Tally {
    /// The final line, exactly `N passed, M failed`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} passed, {} failed", self.passed, self.failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_line_format() {
        assert_eq!(
            std::format!(
                "{}",
                Tally {
                    passed: 3,
                    failed: 0
                }
            ),
            "3 passed, 0 failed"
        );
    }

    #[test]
    fn every_line_reads_back() {
        let t = Tally {
            passed: 12,
            failed: 1,
        };
        assert_eq!(parse_count_line(&std::format!("{t}\r")), Some((12, 1)));
        assert_eq!(parse_count_line("12 passed, 1 failed, really"), None);
        assert_eq!(parse_count_line("x passed, 1 failed"), None);
        assert_eq!(std::format!("{}", Pass("tpm")), "PASS tpm");
        assert_eq!(std::format!("{}", Fail("uv", "gone")), "FAIL uv: gone");
        assert_eq!(
            std::format!("{}", PowerOff("pass")),
            "pefbox: power-off (pass)"
        );
    }
}
