//! `pef esm`'s flags, `--attach` parsing and the checks of its files.

use std::path::PathBuf;

use clap::Args;

use super::checks::no_nul;
use super::{check_file, check_output, InputError};

/// `pef esm`.
#[derive(Debug, Args, Clone, PartialEq, Eq, Default)]
pub struct EsmArgs {
    /// A host's wrapping key, public part (SPKI or PKCS#1 PEM, RSA-2048), e.g. from
    /// `pef run --export-wrapping-key` or `tpm2_readpublic -f pem`; repeat it for an SVM that
    /// may run on several hosts (lockbox-1, lockbox-2, ... in order, as svm-tools' authorize)
    #[arg(long, value_name = "PEM", required = true)]
    pub pubkey: Vec<PathBuf>,
    /// The secure VM's kernel as the ultravisor will see it loaded: a real SVM's
    /// `objcopy -O binary vmlinux vmlinux.bin`
    #[arg(long, value_name = "FILE", required = true)]
    pub kernel: PathBuf,
    /// The secure VM's own initrd (its root filesystem cpio) [default: none]
    #[arg(long, value_name = "FILE")]
    pub initrd: Option<PathBuf>,
    /// The secure VM's kernel command line, exactly as it will be passed [default: empty]
    #[arg(long, value_name = "STRING", default_value = "", value_parser = no_nul)]
    pub bootargs: String,
    /// Add FILE to the blob's encrypted files as NAME (repeatable)
    #[arg(long, value_name = "NAME=FILE", value_parser = parse_attach)]
    pub attach: Vec<(String, PathBuf)>,
    /// The initrd to write: ESM cpio + the secure VM's initrd
    #[arg(long, value_name = "FILE", required = true)]
    pub out: PathBuf,
    /// Also write the bare ESM blob
    #[arg(long, value_name = "FILE")]
    pub blob_out: Option<PathBuf>,
}

/// Parses `NAME=FILE` for `--attach` (NAME by svm-tools' rule).
pub fn parse_attach(value: &str) -> Result<(String, PathBuf), String> {
    let (name, file) = value.split_once('=').ok_or("no `=` (expected NAME=FILE)")?;
    if file.is_empty() {
        return Err("no file after `=` (expected NAME=FILE)".into());
    }
    if !crate::esm::valid_file_name(name) {
        return Err(
            "NAME must be a letter then up to 30 of [0-9A-Za-z,._+-] (svm-tools' rule)".into(),
        );
    }
    Ok((name.to_string(), PathBuf::from(file)))
}

/// The checks of `pef esm`'s files.
pub fn check_esm_inputs(a: &EsmArgs) -> Result<(), InputError> {
    for p in &a.pubkey {
        check_file("--pubkey", p, 1 << 20)?;
    }
    check_file("--kernel", &a.kernel, crate::svm::MAX_SVM_KERNEL)?;
    if let Some(i) = &a.initrd {
        check_file("--initrd", i, crate::svm::MAX_INITRD)?;
    }
    for (name, f) in &a.attach {
        check_file("--attach", f, 1 << 20).map_err(|mut e| {
            e.why = format!("(NAME {name}) {}", e.why);
            e
        })?;
    }
    check_output("--out", &a.out)?;
    if let Some(b) = &a.blob_out {
        check_output("--blob-out", b)?;
    }
    Ok(())
}
