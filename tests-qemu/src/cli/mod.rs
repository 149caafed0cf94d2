//! The `pef` command line, declared with clap's derive API: subcommands, flags, their checks,
//! and the checks of the input files that run before anything is booted.
//!
//! clap gives `--flag=value` and `--flag value`, refuses a flag where a value belongs
//! (`--initrd --fresh-tpm`), per-subcommand `--help`, `--version` and the completion scripts
//! (`pef completions bash`). What clap cannot know (an input file that is missing, empty or
//! not an ELF) is checked by [`check_run_inputs`] and friends, with messages that name the flag.
#![forbid(unsafe_code)]

use std::fmt;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The exit codes, as `--help` documents them.
pub const EXIT_CODES: &str = "\
Exit status:
  0    every boot passed
  1    a boot ran and failed (its verdict and problems are printed)
  2    usage error or an unusable input file (nothing was booted)
  3    set-up failed: a tool could not be installed, the image did not build, swtpm or QEMU
       could not be started, a provisioning boot failed
  130  interrupted (Ctrl-C or SIGTERM); every child process was stopped";

/// Exit code: every boot passed.
pub const EXIT_PASS: u8 = 0;
/// Exit code: a boot ran and failed.
pub const EXIT_FAIL: u8 = 1;
/// Exit code: usage error or unusable input.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: set-up failed.
pub const EXIT_SETUP: u8 = 3;
/// Exit code: interrupted.
pub const EXIT_INTERRUPTED: u8 = 130;

/// Longest `--svm-bootargs` (the image's limit).
pub const MAX_SVM_BOOTARGS: usize = crate::svm::MAX_SVM_BOOTARGS;

/// `pef`: build, boot and test the pefbox image under QEMU powernv with swtpm.
#[derive(Debug, Parser)]
#[command(
    name = "pef",
    version,
    about = "Build the pefbox image and boot it under QEMU powernv with a software TPM (swtpm)",
    long_about = "Build the pefbox image and boot it under QEMU powernv with a software TPM \
                  (swtpm). `cargo pef` is an alias for this program.\n\n\
                  Every subcommand that boots first makes sure its tools are there: the \
                  powerpc64-unknown-linux-musl Rust target (rustup), QEMU and swtpm (apt-get, \
                  when running as root; otherwise it names the command to run).",
    after_help = EXIT_CODES,
    propagate_version = true,
    arg_required_else_help = true
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// The subcommands.
#[derive(Debug, Subcommand, Clone, PartialEq, Eq)]
pub enum Cmd {
    /// Build the image and boot it with swtpm: by default provisions the TPM state if it has no
    /// key yet, builds the demo secure VM's blob for this TPM's key, boots it and requires
    /// `svm: accepted` and every self-test passing
    #[command(after_help = EXIT_CODES)]
    Run(RunArgs),
    /// The secure-VM scenarios (accepted, tampered ciphertext, wrong kernel, wrong bootargs,
    /// other key, ...) on a fresh TPM state, then host attempts to use the wrapping key
    #[command(after_help = EXIT_CODES)]
    Scenarios(ScenariosArgs),
    /// Boot the demo secure VM N times (after one provisioning boot) and report timings
    #[command(after_help = EXIT_CODES)]
    Bench(BenchArgs),
    /// Build the image to flash (no self-tests, no test hooks) and print its size; the last line
    /// is `image: <path>`
    #[command(after_help = BUILD_EXIT_CODES)]
    Build(BuildArgs),
    /// Build an ESM blob (svm-tools format) sealed to a wrapping key and write it attached to
    /// the secure VM's initrd, as svm-tools does
    #[command(after_help = EXIT_CODES)]
    Esm(EsmArgs),
    /// Print a shell completion script (e.g. `pef completions bash > ~/.local/share/bash-completion/completions/pef`)
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// A QEMU machine the image boots on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Machine {
    /// POWER9 (QEMU 7.2 and later).
    #[default]
    Powernv9,
    /// POWER10.
    Powernv10,
    /// POWER10 with the Rainier board's I2C devices (QEMU 8.2 and later): a PCA9552 at 0x63
    /// on I2C engine 2's bus 1, for `selftest=i2c-opal i2c-rw=...`.
    Powernv10Rainier,
}

impl Machine {
    /// The `-M` name.
    pub fn name(self) -> &'static str {
        match self {
            Machine::Powernv9 => "powernv9",
            Machine::Powernv10 => "powernv10",
            Machine::Powernv10Rainier => "powernv10-rainier",
        }
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Options of every subcommand that boots.
#[derive(Debug, Args, Clone, PartialEq, Eq, Default)]
pub struct BootOpts {
    /// Boot this ELF instead of building the image
    #[arg(long, value_name = "PATH")]
    pub image: Option<PathBuf>,
    /// Kill QEMU after SECS seconds [default: 60; none with --gdb]
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,
    /// The QEMU program [default: qemu-system-ppc64 on the PATH]; a QEMU unpacked into a
    /// private prefix (PREFIX/usr/bin/qemu-system-ppc64) gets `-L PREFIX/usr/share/qemu`
    #[arg(long, value_name = "PATH")]
    pub qemu: Option<PathBuf>,
    /// The QEMU machine
    #[arg(long, value_enum, default_value_t)]
    pub machine: Machine,
    /// One more QEMU argument, appended last (repeatable: `--qemu-arg -d --qemu-arg int`)
    #[arg(long = "qemu-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub qemu_arg: Vec<String>,
    /// Show everything: skiboot's console lines, QEMU's command line and stderr, the relay log
    #[arg(short, long, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Print only the verdict
    #[arg(short, long)]
    pub quiet: bool,
    /// Write the verdict, self-test results, bench figures, timings, machine and versions
    /// to FILE as JSON
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Keep each boot's whole console (skiboot's lines included) in DIR/<scenario>.log
    /// [default: target/pef-logs]
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
}

mod bench;
mod build;
mod checks;
mod esm;
mod run;
mod scenarios;
#[cfg(test)]
mod tests;

pub use bench::BenchArgs;
pub use build::{BuildArgs, BUILD_EXIT_CODES};
pub use checks::{check_boot_inputs, check_file, check_image, check_output, InputError};
pub use esm::{check_esm_inputs, parse_attach, EsmArgs};
pub use run::{check_run_inputs, RunArgs};
pub use scenarios::ScenariosArgs;
