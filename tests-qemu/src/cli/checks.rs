//! The checks clap cannot make: value parsers and the input files of a boot, with messages
//! that name the flag.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{BootOpts, MAX_SVM_BOOTARGS};

pub(super) fn no_nul(s: &str) -> Result<String, String> {
    if s.contains('\0') {
        Err("contains a NUL byte".into())
    } else {
        Ok(s.to_string())
    }
}

pub(super) fn svm_bootargs(s: &str) -> Result<String, String> {
    let s = no_nul(s)?;
    if s.len() > MAX_SVM_BOOTARGS {
        return Err(format!(
            "{} bytes: the image takes at most {MAX_SVM_BOOTARGS}",
            s.len()
        ));
    }
    Ok(s)
}

/// An input that cannot be used, found before anything was booted (exit code 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    /// The flag, e.g. `--initrd`.
    pub flag: &'static str,
    /// The path given.
    pub path: PathBuf,
    /// What is wrong with it.
    pub why: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.flag, self.path.display(), self.why)
    }
}

impl std::error::Error for InputError {}

pub(super) fn input_err(flag: &'static str, path: &Path, why: impl Into<String>) -> InputError {
    InputError {
        flag,
        path: path.to_path_buf(),
        why: why.into(),
    }
}

/// Checks that `path` is a readable regular file of 1..=`max` bytes.
pub fn check_file(flag: &'static str, path: &Path, max: u64) -> Result<u64, InputError> {
    let meta = std::fs::metadata(path).map_err(|e| {
        input_err(
            flag,
            path,
            match e.kind() {
                std::io::ErrorKind::NotFound => "no such file".to_string(),
                _ => e.to_string(),
            },
        )
    })?;
    if meta.is_dir() {
        return Err(input_err(flag, path, "is a directory, not a file"));
    }
    if meta.len() == 0 {
        return Err(input_err(flag, path, "is empty"));
    }
    if meta.len() > max {
        return Err(input_err(
            flag,
            path,
            format!("is {} bytes; at most {max} bytes are allowed", meta.len()),
        ));
    }
    std::fs::File::open(path).map_err(|e| input_err(flag, path, e.to_string()))?;
    Ok(meta.len())
}

/// Checks that `path` is a file the image would be: a big-endian ELF64 for POWER (EM_PPC64)
/// that QEMU's `-kernel` (at most 128 MiB) takes.
pub fn check_image(flag: &'static str, path: &Path) -> Result<(), InputError> {
    check_file(flag, path, 128 << 20)?;
    let bytes = std::fs::read(path).map_err(|e| input_err(flag, path, e.to_string()))?;
    crate::launcher::elf_ppc64_be(&bytes).map_err(|why| input_err(flag, path, why))
}

/// Checks that a file can be created at `path` (its directory exists).
pub fn check_output(flag: &'static str, path: &Path) -> Result<(), InputError> {
    if path.is_dir() {
        return Err(input_err(flag, path, "is a directory"));
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    match dir {
        Some(d) if !d.is_dir() => Err(input_err(
            flag,
            path,
            format!("directory {} does not exist", d.display()),
        )),
        _ => Ok(()),
    }
}

/// The checks of [`BootOpts`]'s files.
pub fn check_boot_inputs(b: &BootOpts) -> Result<(), InputError> {
    if let Some(i) = &b.image {
        check_image("--image", i)?;
    }
    if let Some(q) = &b.qemu {
        check_file("--qemu", q, u64::MAX)?;
    }
    if let Some(j) = &b.json {
        check_output("--json", j)?;
    }
    if let Some(d) = &b.log_dir {
        if d.exists() && !d.is_dir() {
            return Err(input_err("--log-dir", d, "is not a directory"));
        }
    }
    Ok(())
}
