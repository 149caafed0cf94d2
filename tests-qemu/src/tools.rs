//! The tools a boot needs (placeholder until the shared ensure step lands).

use std::path::Path;
use std::process::Command;

/// `qemu-system-ppc64 --version` of `program`, as (major, minor, micro).
pub fn qemu_version(program: &Path) -> Result<(u32, u32, u32), String> {
    let out = Command::new(program)
        .arg("--version")
        .output()
        .map_err(|e| format!("{}: {e}", program.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text
        .split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .ok_or_else(|| format!("{}: no version in {text:?}", program.display()))?;
    let mut n = v.split('.').map(|x| x.parse::<u32>().ok());
    match (n.next().flatten(), n.next().flatten(), n.next().flatten()) {
        (Some(a), Some(b), c) => Ok((a, b, c.unwrap_or(0))),
        _ => Err(format!("{}: bad version {v:?}", program.display())),
    }
}

/// `swtpm --version`'s number, e.g. `0.7.1`.
pub fn swtpm_version() -> Result<String, String> {
    let out = Command::new("swtpm")
        .arg("--version")
        .output()
        .map_err(|e| format!("swtpm: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .map(|v| v.trim_end_matches(',').to_string())
        .ok_or_else(|| format!("swtpm: no version in {text:?}"))
}
