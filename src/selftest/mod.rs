//! In-image self-tests and the console protocol that reports them (the self-test image only:
//! feature `selftest`; compiled for this crate's host unit tests too).
//!
//! Protocol (read by the host launcher's verdict function, `tests-qemu/src/verdict.rs`):
//! one line per test, `PASS <name>` or `FAIL <name>: <reason>`, then exactly one line
//! `<N> passed, <M> failed` ([`crate::report`]). Tests are selected by the bootarg `selftest=<name>[,<name>...]`
//! (`all`, the default, runs every test marked `default`; a test such as `panic` that
//! deliberately kills the image runs only when named).
#![forbid(unsafe_code)]

pub use crate::report::Tally;

#[cfg(target_arch = "powerpc64")]
pub mod partition;
#[cfg(target_arch = "powerpc64")]
pub mod target;

/// What a failing test reports: one line of text.
pub type TestResult = Result<(), alloc::string::String>;

/// A named self-test.
pub struct Test {
    /// The name on the console and in `selftest=`.
    pub name: &'static str,
    /// Whether `selftest=all` (the default) runs it.
    pub default: bool,
    /// The test body.
    pub run: fn() -> TestResult,
}

/// Whether `name` (a test that is `default` or not) is selected by the `selftest=` value
/// (`None` = bootarg absent = `all`).
pub fn selected(selection: Option<&str>, name: &str, default: bool) -> bool {
    match selection {
        None | Some("") | Some("all") => default,
        Some("none") => false,
        Some(list) => list
            .split(',')
            .any(|n| n == name || (n == "all" && default)),
    }
}

/// Names in the selection that match no test (reported, so a typo is not a silent pass).
pub fn unknown_names<'a>(
    selection: Option<&'a str>,
    tests: &'a [Test],
) -> impl Iterator<Item = &'a str> + 'a {
    selection
        .unwrap_or("")
        .split(',')
        .filter(|n| !n.is_empty() && *n != "all" && *n != "none")
        .filter(move |n| !tests.iter().any(|t| t.name == *n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> TestResult {
        Ok(())
    }

    #[test]
    fn selection_rules() {
        assert!(selected(None, "a", true));
        assert!(!selected(None, "panic", false));
        assert!(selected(Some("all"), "a", true));
        assert!(!selected(Some("all"), "panic", false));
        assert!(selected(Some("panic"), "panic", false));
        assert!(!selected(Some("panic"), "a", true));
        assert!(selected(Some("all,panic"), "panic", false));
        assert!(selected(Some("all,panic"), "a", true));
        assert!(!selected(Some("none"), "a", true));
    }

    #[test]
    fn unknown_names_are_reported() {
        let tests = [Test {
            name: "a",
            default: true,
            run: ok,
        }];
        let u: std::vec::Vec<_> = unknown_names(Some("a,b,all"), &tests).collect();
        assert_eq!(u, ["b"]);
    }
}
pub mod probe;
