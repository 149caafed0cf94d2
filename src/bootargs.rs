//! Bootargs lookup (both images): the `key=value` and bare-flag tokens of the kernel command
//! line skiboot passes, and the number syntax bootargs use (decimal or `0x` hex). Used by the
//! ultravisor (`svm-kernel=`, `svm-bootargs=`), `dump-dt`, and the self-test options.
#![forbid(unsafe_code)]

/// The value of option `key` in a bootargs string of whitespace-separated
/// `key=value` tokens; the last occurrence wins (as on Linux). A bare `key`
/// token (no `=`) has no value and is not a match; `key=` gives `Some("")`.
pub fn bootarg<'a>(args: &'a str, key: &str) -> Option<&'a str> {
    args.split_ascii_whitespace()
        .rev()
        .filter_map(|tok| tok.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// True if the bootargs hold the bare token `key` (a flag such as `dump-dt`; `key=...` is
/// not the flag).
pub fn bootarg_flag(args: &str, key: &str) -> bool {
    args.split_ascii_whitespace().any(|tok| tok == key)
}

/// Why a number did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumError {
    /// Nothing at all.
    Empty,
    /// More than 64 bits.
    Overflow,
    /// Not a number.
    Junk,
}

/// Parses a decimal or `0x` hexadecimal u64.
pub(crate) fn number(s: &str) -> Result<u64, NumError> {
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => (h, 16),
        None => (s, 10),
    };
    if digits.is_empty() {
        return Err(if s.is_empty() {
            NumError::Empty
        } else {
            NumError::Junk
        });
    }
    let mut v: u64 = 0;
    for c in digits.chars() {
        let d = c.to_digit(radix).ok_or(NumError::Junk)?;
        v = v
            .checked_mul(u64::from(radix))
            .and_then(|v| v.checked_add(u64::from(d)))
            .ok_or(NumError::Overflow)?;
    }
    Ok(v)
}

/// A decimal or `0x` hexadecimal u64 (the grammar's `number`), for other bootargs that take
/// numbers; `None` when empty, not a number, or over 64 bits.
pub fn parse_number(s: &str) -> Option<u64> {
    number(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_bare_tokens() {
        assert!(bootarg_flag("dump-dt selftest=none", "dump-dt"));
        assert!(bootarg_flag("a\tdump-dt", "dump-dt"));
        assert!(!bootarg_flag("dump-dt=1 selftest=none", "dump-dt"));
        assert!(!bootarg_flag("xdump-dt dump-dtx", "dump-dt"));
        assert!(!bootarg_flag("", "dump-dt"));
    }

    #[test]
    fn bootarg_finds_exact_keys() {
        let a =
            "console=hvc0  hcall-probe=1,buf,12,buf,4096 quiet x=1\tx=2 empty= hcall-probe-extra=9";
        assert_eq!(bootarg(a, "hcall-probe"), Some("1,buf,12,buf,4096"));
        assert_eq!(bootarg(a, "x"), Some("2"));
        assert_eq!(bootarg(a, "empty"), Some(""));
        assert_eq!(bootarg(a, "quiet"), None);
        assert_eq!(bootarg(a, "hcall"), None);
        assert_eq!(bootarg(a, "missing"), None);
        assert_eq!(bootarg("", "x"), None);
        assert_eq!(bootarg("k=a=b", "k"), Some("a=b"));
    }
}

/// Parses an `ADDR,LEN` bootarg value (each decimal or `0x` hex) such as
/// `svm-kernel=0x10000000,262144`.
pub fn parse_range(v: &str) -> Result<(u64, u64), &'static str> {
    let (a, l) = v.split_once(',').ok_or("expected ADDR,LEN")?;
    match (parse_number(a), parse_number(l)) {
        (Some(a), Some(l)) => Ok((a, l)),
        (None, _) => Err("ADDR is not a decimal or 0x-hex 64-bit number"),
        (_, None) => Err("LEN is not a decimal or 0x-hex 64-bit number"),
    }
}

#[cfg(test)]
mod parse_range_tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("0x10000000,262144"), Ok((0x1000_0000, 262_144)));
        assert_eq!(parse_range("16,0x10"), Ok((16, 16)));
        assert!(parse_range("0x10000000").is_err());
        assert!(parse_range("0x,1").is_err());
        assert!(parse_range("1,-1").is_err());
        assert!(parse_range("1,99999999999999999999999").is_err());
        assert!(parse_range(",1").is_err());
    }
}
