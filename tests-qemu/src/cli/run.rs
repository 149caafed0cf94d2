//! `pef run`'s flags and the checks of its files.

use std::path::PathBuf;

use clap::Args;

use super::checks::{input_err, no_nul, svm_bootargs};
use super::{check_boot_inputs, check_file, check_output, BootOpts, InputError};

/// `pef run`.
#[derive(Debug, Args, Clone, PartialEq, Eq, Default)]
pub struct RunArgs {
    /// Options shared by every booting subcommand.
    #[command(flatten)]
    pub boot: BootOpts,
    /// The image's /chosen/bootargs (QEMU -append): `selftest=NAME,NAME`, `selftest=none`,
    /// `hcall-probe=...`, `dump-dt` (see the README)
    #[arg(long, value_name = "STRING", value_parser = no_nul)]
    pub bootargs: Option<String>,
    /// Boot this secure VM instead of the demo: an initrd carrying an ESM blob as svm-tools
    /// attaches it (requires `svm: accepted`)
    #[arg(long, value_name = "FILE")]
    pub initrd: Option<PathBuf>,
    /// The secure VM's kernel as loaded: a big-endian program the ultravisor runs in the SVM's
    /// partition, keeping the payload ABI (README, "The PEF privilege model"; the demo payload is
    /// one). The launcher loads up to 64 MiB; the image's SVM partition holds about 3.4 MiB of
    /// kernel, bootargs and initrd, and rejects a larger SVM saying so
    #[arg(long, value_name = "FILE", requires = "initrd")]
    pub svm_kernel: Option<PathBuf>,
    /// The secure VM's bootargs (at most 4096 bytes)
    #[arg(long, value_name = "STRING", requires = "initrd", value_parser = svm_bootargs)]
    pub svm_bootargs: Option<String>,
    /// Boot without a secure VM (expects `svm: none`)
    #[arg(long, conflicts_with = "initrd")]
    pub no_svm: bool,
    /// Write the wrapping key's public part (SPKI PEM, as `tpm2_readpublic -f pem`) before
    /// booting; provisions first if the TPM state has no key yet
    #[arg(long, value_name = "FILE")]
    pub export_wrapping_key: Option<PathBuf>,
    /// The swtpm state directory, kept between runs like a TPM's NV [default: target/swtpm-state]
    #[arg(long, value_name = "DIR")]
    pub tpm_state: Option<PathBuf>,
    /// Wipe the swtpm state first (a new wrapping key: blobs sealed to the old one no longer open)
    #[arg(long)]
    pub fresh_tpm: bool,
    /// Start QEMU halted with its gdbstub on 127.0.0.1:PORT and print the gdb command line
    #[arg(long, value_name = "PORT", num_args = 0..=1, require_equals = true,
          default_missing_value = "1234", value_parser = clap::value_parser!(u16).range(1..))]
    pub gdb: Option<u16>,
    /// Write the flattened device tree the image received to FILE (adds `dump-dt` to the bootargs)
    #[arg(long, value_name = "FILE")]
    pub dump_dt: Option<PathBuf>,
}

/// The checks of `pef run`'s files, before anything is built or booted.
pub fn check_run_inputs(r: &RunArgs) -> Result<(), InputError> {
    check_boot_inputs(&r.boot)?;
    if let Some(i) = &r.initrd {
        check_file("--initrd", i, crate::svm::MAX_INITRD)?;
    }
    if let Some(k) = &r.svm_kernel {
        check_file("--svm-kernel", k, crate::svm::MAX_SVM_KERNEL)?;
    }
    if let Some(p) = &r.export_wrapping_key {
        check_output("--export-wrapping-key", p)?;
    }
    if let Some(p) = &r.dump_dt {
        check_output("--dump-dt", p)?;
    }
    if let Some(s) = &r.tpm_state {
        if s.exists() && !s.is_dir() {
            return Err(input_err(
                "--tpm-state",
                s,
                "is not a directory (swtpm keeps its state in a directory)",
            ));
        }
    }
    Ok(())
}
