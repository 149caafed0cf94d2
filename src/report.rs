//! The line every image ends its console with before powering off, read by the launcher's
//! verdict (`tests-qemu/src/verdict.rs`): exactly `N passed, M failed`.
//!
//! What it counts: in the self-test image, N is the self-tests that passed and M every
//! failure (self-tests, `hcall-probe`, and the flow's own checks: provisioning and the
//! ultravisor session, each printed as `FAIL <name>: <reason>`). The image to flash runs no
//! self-tests, so its count line counts the flow's checks that ran, each printed as
//! `PASS <name>` or `FAIL <name>: <reason>` (`2 passed, 0 failed` on a good boot).
#![forbid(unsafe_code)]

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
}
