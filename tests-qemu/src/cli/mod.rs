//! The `pef` command line, declared with clap's derive API: subcommands, flags, their checks,
//! and the checks of the input files that run before anything is booted.
//!
//! clap gives `--flag=value` and `--flag value`, refuses a flag where a value belongs
//! (`--initrd --fresh-tpm`), per-subcommand `--help`, `--version` and the completion scripts
//! (`pef completions bash`). What clap cannot know (an input file that is missing, empty or
//! not an ELF) is checked by [`check_run_inputs`] and friends, with messages that name the flag.
#![forbid(unsafe_code)]

use std::fmt;
use std::path::{Path, PathBuf};

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
}

impl Machine {
    /// The `-M` name.
    pub fn name(self) -> &'static str {
        match self {
            Machine::Powernv9 => "powernv9",
            Machine::Powernv10 => "powernv10",
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
    /// The secure VM's kernel as loaded (e.g. `objcopy -O binary vmlinux`; at most 64 MiB)
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

/// `pef scenarios`.
#[derive(Debug, Args, Clone, PartialEq, Eq, Default)]
pub struct ScenariosArgs {
    /// Options shared by every booting subcommand.
    #[command(flatten)]
    pub boot: BootOpts,
}

/// `pef bench`.
#[derive(Debug, Args, Clone, PartialEq, Eq, Default)]
pub struct BenchArgs {
    /// Options shared by every booting subcommand.
    #[command(flatten)]
    pub boot: BootOpts,
    /// Number of demo boots, after one provisioning boot
    #[arg(long, value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub runs: u32,
}

/// `pef build`.
#[derive(Debug, Args, Clone, PartialEq, Eq, Default)]
pub struct BuildArgs {
    /// The release profile (the default: the image is always built with it; accepted so that
    /// `cargo pef build --release` reads as it does)
    #[arg(long)]
    pub release: bool,
    /// Build the self-test image instead (feature `selftest`, what `pef run` boots)
    #[arg(long)]
    pub selftest: bool,
    /// No cargo progress lines (the size and `image:` lines are still printed)
    #[arg(short, long)]
    pub quiet: bool,
}

/// The exit codes of `pef build`.
pub const BUILD_EXIT_CODES: &str = "\
Exit status:
  0    the image was built (its path is the last line printed)
  2    usage error
  3    the image target could not be installed or the image did not build";

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

fn no_nul(s: &str) -> Result<String, String> {
    if s.contains('\0') {
        Err("contains a NUL byte".into())
    } else {
        Ok(s.to_string())
    }
}

fn svm_bootargs(s: &str) -> Result<String, String> {
    let s = no_nul(s)?;
    if s.len() > MAX_SVM_BOOTARGS {
        return Err(format!(
            "{} bytes: the image takes at most {MAX_SVM_BOOTARGS}",
            s.len()
        ));
    }
    Ok(s)
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

fn input_err(flag: &'static str, path: &Path, why: impl Into<String>) -> InputError {
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn p(args: &[&str]) -> Result<Cmd, clap::Error> {
        Cli::try_parse_from(std::iter::once("pef").chain(args.iter().copied())).map(|c| c.command)
    }

    fn kind(args: &[&str]) -> ErrorKind {
        p(args).expect_err("must be refused").kind()
    }

    #[test]
    fn clap_definitions_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn run_flags_are_carried_in_both_spellings() {
        let cli = p(&[
            "run",
            "--bootargs",
            "selftest=panic quiet",
            "--initrd=/tmp/esm",
            "--timeout",
            "7",
            "--fresh-tpm",
            "--image",
            "/tmp/img",
            "--svm-kernel",
            "/k",
            "--svm-bootargs=x=1",
            "--export-wrapping-key",
            "/w.pem",
            "--machine=powernv10",
            "--qemu-arg",
            "-d",
            "--qemu-arg=int",
            "--gdb",
            "--dump-dt",
            "/dt.dtb",
            "--json",
            "/r.json",
            "-v",
        ])
        .unwrap();
        assert_eq!(
            cli,
            Cmd::Run(RunArgs {
                boot: BootOpts {
                    image: Some("/tmp/img".into()),
                    timeout: Some(7),
                    qemu: None,
                    machine: Machine::Powernv10,
                    qemu_arg: vec!["-d".into(), "int".into()],
                    verbose: true,
                    quiet: false,
                    json: Some("/r.json".into()),
                    log_dir: None,
                },
                bootargs: Some("selftest=panic quiet".into()),
                initrd: Some("/tmp/esm".into()),
                svm_kernel: Some("/k".into()),
                svm_bootargs: Some("x=1".into()),
                no_svm: false,
                export_wrapping_key: Some("/w.pem".into()),
                tpm_state: None,
                fresh_tpm: true,
                gdb: Some(1234),
                dump_dt: Some("/dt.dtb".into()),
            })
        );
        assert_eq!(p(&["run"]).unwrap(), Cmd::Run(RunArgs::default()));
        match p(&["run", "--gdb=4321", "--no-svm"]).unwrap() {
            Cmd::Run(r) => assert_eq!((r.gdb, r.no_svm), (Some(4321), true)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn svm_flags_need_an_initrd_and_exclude_no_svm() {
        assert_eq!(
            kind(&["run", "--svm-kernel", "/k"]),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            kind(&["run", "--svm-bootargs", "a"]),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            kind(&["run", "--no-svm", "--initrd", "/i"]),
            ErrorKind::ArgumentConflict
        );
        let long = "a".repeat(MAX_SVM_BOOTARGS + 1);
        let e = p(&["run", "--initrd", "/i", "--svm-bootargs", &long]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ValueValidation);
        assert!(e.to_string().contains("at most 4096"), "{e}");
        let ok = "a".repeat(MAX_SVM_BOOTARGS);
        assert!(p(&["run", "--initrd", "/i", "--svm-bootargs", &ok]).is_ok());
        let e = p(&["run", "--initrd", "/i", "--svm-bootargs", "a\0b"]).unwrap_err();
        assert!(e.to_string().contains("NUL"), "{e}");
        assert_eq!(
            kind(&["run", "--initrd", "/a", "--initrd", "/b"]),
            ErrorKind::ArgumentConflict
        );
    }

    #[test]
    fn a_flag_is_never_taken_as_a_value() {
        // `--initrd --fresh-tpm`: the user forgot the file.
        let e = p(&["run", "--initrd", "--fresh-tpm"]).unwrap_err();
        assert!(
            e.to_string()
                .contains("a value is required for '--initrd <FILE>'"),
            "{e}"
        );
        let e = p(&["run", "--timeout", "--no-svm"]).unwrap_err();
        assert!(e.to_string().contains("--timeout <SECS>"), "{e}");
        // --qemu-arg is the one flag whose values are QEMU flags.
        assert!(p(&["run", "--qemu-arg", "-S"]).is_ok());
    }

    #[test]
    fn bench_and_scenarios_flags() {
        assert_eq!(
            p(&["bench"]).unwrap(),
            Cmd::Bench(BenchArgs {
                boot: BootOpts::default(),
                runs: 5
            })
        );
        match p(&["bench", "--runs", "3", "--image", "/i", "-q"]).unwrap() {
            Cmd::Bench(b) => {
                assert_eq!(
                    (b.runs, b.boot.image, b.boot.quiet),
                    (3, Some("/i".into()), true)
                )
            }
            other => panic!("{other:?}"),
        }
        // run-only flags are not bench flags.
        assert_eq!(
            kind(&["bench", "--bootargs", "x"]),
            ErrorKind::UnknownArgument
        );
        match p(&["scenarios", "--timeout", "9"]).unwrap() {
            Cmd::Scenarios(s) => assert_eq!(s.boot.timeout, Some(9)),
            other => panic!("{other:?}"),
        }
        assert_eq!(kind(&["bench", "--runs", "0"]), ErrorKind::ValueValidation);
        assert_eq!(
            kind(&["bench", "--runs", "99999999999"]),
            ErrorKind::ValueValidation
        );
        assert_eq!(kind(&["run", "-v", "-q"]), ErrorKind::ArgumentConflict);
        assert_eq!(
            kind(&["run", "--machine", "powernv8"]),
            ErrorKind::InvalidValue
        );
    }

    #[test]
    fn esm_flags_are_carried_and_checked() {
        let cli = p(&[
            "esm",
            "--pubkey",
            "/k.pem",
            "--kernel",
            "/vmlinux",
            "--initrd",
            "/initrd",
            "--bootargs",
            "root=/dev/sda2",
            "--attach",
            "rootd=/pass",
            "--attach",
            "b.key=/b",
            "--out",
            "/out",
        ])
        .unwrap();
        assert_eq!(
            cli,
            Cmd::Esm(EsmArgs {
                pubkey: vec!["/k.pem".into()],
                kernel: "/vmlinux".into(),
                initrd: Some("/initrd".into()),
                bootargs: "root=/dev/sda2".into(),
                attach: vec![
                    ("rootd".into(), "/pass".into()),
                    ("b.key".into(), "/b".into())
                ],
                out: "/out".into(),
                blob_out: None,
            })
        );
        let base = ["esm", "--pubkey", "/k", "--kernel", "/v", "--out", "/o"];
        assert!(p(&base).is_ok());
        match p(&[
            "esm",
            "--pubkey",
            "/a",
            "--pubkey=/b",
            "--kernel",
            "/v",
            "--out",
            "/o",
        ]) {
            Ok(Cmd::Esm(e)) => assert_eq!(e.pubkey, vec![PathBuf::from("/a"), "/b".into()]),
            other => panic!("{other:?}"),
        }
        for missing in [1, 3, 5] {
            let mut a: Vec<&str> = base.to_vec();
            let flag = a[missing];
            a.drain(missing..missing + 2);
            let e = p(&a).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument, "{a:?}");
            assert!(e.to_string().contains(flag), "{e}");
        }
        for (bad, why) in [
            ("noequals", "no `=`"),
            ("name=", "no file"),
            ("1abc=/f", "NAME must"),
            ("a b=/f", "NAME must"),
        ] {
            let mut a = base.to_vec();
            a.extend(["--attach", bad]);
            let e = p(&a).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ValueValidation);
            assert!(e.to_string().contains(why), "{e}");
        }
        assert_eq!(kind(&["esm", "--runs", "3"]), ErrorKind::UnknownArgument);
    }

    #[test]
    fn usage_errors_are_specific() {
        assert_eq!(
            kind(&[]),
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        );
        assert_eq!(kind(&["boot"]), ErrorKind::InvalidSubcommand);
        assert_eq!(kind(&["run", "--verbos"]), ErrorKind::UnknownArgument);
        for bad in ["abc", "0", "-3", "1.5"] {
            let e = p(&["run", "--timeout", bad]).unwrap_err();
            assert!(
                matches!(
                    e.kind(),
                    ErrorKind::ValueValidation
                        | ErrorKind::InvalidValue
                        | ErrorKind::UnknownArgument
                ),
                "{bad}: {e}"
            );
            // `-3` looks like a flag to clap, which then names it instead.
            assert!(
                e.to_string().contains("--timeout") || e.to_string().contains("'-3'"),
                "{e}"
            );
        }
        assert_eq!(kind(&["run", "--help"]), ErrorKind::DisplayHelp);
        assert_eq!(kind(&["--version"]), ErrorKind::DisplayVersion);
        assert!(matches!(
            p(&["completions", "bash"]).unwrap(),
            Cmd::Completions { .. }
        ));
        assert_eq!(p(&["build"]).unwrap(), Cmd::Build(BuildArgs::default()));
        assert_eq!(
            p(&["build", "--release", "--selftest", "-q"]).unwrap(),
            Cmd::Build(BuildArgs {
                release: true,
                selftest: true,
                quiet: true,
            })
        );
    }

    #[test]
    fn input_files_are_checked_with_the_flag_named() {
        let dir = std::env::temp_dir().join(format!("pef-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty");
        std::fs::write(&empty, b"").unwrap();
        let text = dir.join("text");
        std::fs::write(&text, b"#!/bin/sh\necho not an image\n").unwrap();
        let missing = dir.join("missing");

        let e = check_file("--initrd", &missing, 10).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("--initrd {}: no such file", missing.display())
        );
        let e = check_file("--initrd", &empty, 10).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("--initrd {}: is empty", empty.display())
        );
        let e = check_file("--initrd", &dir, 10).unwrap_err();
        assert!(e.why.contains("is a directory"), "{e}");
        let e = check_file("--svm-kernel", &text, 4).unwrap_err();
        assert!(e.why.contains("at most 4 bytes"), "{e}");
        let e = check_image("--image", &text).unwrap_err();
        assert!(e.why.contains("not an ELF"), "{e}");
        // A little-endian x86-64 ELF (this test program) is an ELF, but not the image.
        let me = std::env::current_exe().unwrap();
        let e = check_image("--image", &me).unwrap_err();
        assert!(e.why.contains("big-endian"), "{e}");
        let e = check_output("--json", &dir.join("no/such/dir/x.json")).unwrap_err();
        assert!(e.why.contains("does not exist"), "{e}");
        assert!(check_output("--json", &dir.join("x.json")).is_ok());
        let r = RunArgs {
            tpm_state: Some(text.clone()),
            ..RunArgs::default()
        };
        assert!(check_run_inputs(&r)
            .unwrap_err()
            .why
            .contains("not a directory"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
