//! Running the `pef` program as a user does, for the tests that drive it.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The `pef` binary of this package.
pub const PEF: &str = env!("CARGO_BIN_EXE_pef");

/// Runs `pef args` (stdin closed) to its end.
pub fn pef<S: AsRef<OsStr>>(args: &[S]) -> Output {
    Command::new(PEF)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run pef")
}

/// `args`, then the flags every test boot takes: the test image, a TPM state (`dir/tpm`)
/// and console logs inside the test's scratch directory `dir`.
pub fn in_scratch(dir: &Path, args: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    for (flag, value) in [
        ("--image", super::image()),
        ("--tpm-state", dir.join("tpm")),
        ("--log-dir", dir.to_path_buf()),
    ] {
        v.push(flag.into());
        v.push(value.to_string_lossy().into_owned());
    }
    v
}

/// [`pef`] with [`in_scratch`]'s flags.
pub fn pef_in(dir: &Path, args: &[&str]) -> Output {
    pef(&in_scratch(dir, args))
}

/// stdout and stderr, as text.
pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// stdout and stderr as text, once `o` is checked to be exit status 0 (if not: both).
pub fn exited_0(o: &Output) -> (String, String) {
    let (out, err) = text(o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    (out, err)
}
