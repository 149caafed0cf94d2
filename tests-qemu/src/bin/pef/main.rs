//! `pef`: the host launcher (`cargo pef run`, `cargo pef scenarios`, `cargo pef bench`,
//! `cargo pef build`, `cargo pef esm`, `cargo pef completions`). The command line is declared in
//! [`xtask::cli`]; `pef --help` and `pef <subcommand> --help` describe every flag and the
//! exit codes.
#![forbid(unsafe_code)]

mod bench;
mod build;
mod completions;
mod esm;
mod run;
mod scenarios;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use xtask::cli::{self, BootOpts, Cli, Cmd};
use xtask::launcher::{self, Echo, ImageKind, LaunchError, RunConfig, RunReport};

/// Why a command stopped before its verdict, and its exit code.
enum Stop {
    /// Bad input (2).
    Usage(String),
    /// Set-up failed (3).
    Setup(String),
}

impl From<LaunchError> for Stop {
    fn from(e: LaunchError) -> Self {
        Stop::Setup(e.to_string())
    }
}

impl From<cli::InputError> for Stop {
    fn from(e: cli::InputError) -> Self {
        Stop::Usage(e.to_string())
    }
}

fn stop_code(s: Stop) -> ExitCode {
    let (msg, code) = match s {
        Stop::Usage(m) => (m, cli::EXIT_USAGE),
        Stop::Setup(m) => (m, cli::EXIT_SETUP),
    };
    eprintln!("pef: {msg}");
    if launcher::interrupted() {
        ExitCode::from(cli::EXIT_INTERRUPTED)
    } else {
        ExitCode::from(code)
    }
}

/// What the terminal shows: phase lines unless `--quiet`.
#[derive(Clone, Copy)]
struct Ui {
    quiet: bool,
    verbose: bool,
}

impl Ui {
    fn new(b: &BootOpts) -> Ui {
        Ui {
            quiet: b.quiet,
            verbose: b.verbose,
        }
    }

    /// One progress line (stderr), unless quiet.
    fn phase(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("pef: {}", msg.as_ref());
        }
    }

    fn echo(&self) -> Echo {
        if self.quiet {
            Echo::Off
        } else if self.verbose {
            Echo::All
        } else {
            Echo::Image
        }
    }
}

/// The QEMU program of `--qemu` (or the PATH's) and, for a QEMU unpacked into a private
/// prefix (`PREFIX/usr/bin/qemu-system-ppc64`), its firmware directory.
fn qemu_choice(b: &BootOpts) -> (Option<PathBuf>, Option<PathBuf>) {
    let Some(q) = &b.qemu else {
        return (None, None);
    };
    let data = q
        .canonicalize()
        .ok()
        .and_then(|p| Some(p.parent()?.parent()?.join("share").join("qemu")))
        .filter(|d| d.join("skiboot.lid").is_file() && !d.starts_with("/usr/share"));
    (Some(q.clone()), data)
}

/// Checks the inputs, makes sure the tools are there, names QEMU, the machine and swtpm,
/// builds the image (unless `--image`), and returns the boot template.
fn prepare(b: &BootOpts, scenario: &str) -> Result<(RunConfig, Ui), Stop> {
    cli::check_boot_inputs(b)?;
    let ui = Ui::new(b);
    launcher::ensure_tools()?;
    let (qemu, data_dir) = qemu_choice(b);
    let mut base = RunConfig::new(scenario, PathBuf::new());
    base.qemu = qemu;
    base.qemu_data_dir = data_dir;
    base.machine = b.machine.name().to_string();
    base.qemu_extra = b.qemu_arg.iter().map(Into::into).collect();
    base.timeout = Duration::from_secs(b.timeout.unwrap_or(60));
    base.echo = ui.echo();
    base.log_dir = Some(
        b.log_dir
            .clone()
            .unwrap_or_else(|| launcher::workspace_root().join("target").join("pef-logs")),
    );
    let id = launcher::qemu_id(&base.qemu_program());
    launcher::check_qemu(&id, b.machine.name())?;
    ui.phase(format!(
        "QEMU {} ({}) -M {}; swtpm {}",
        id.version,
        id.program.display(),
        base.machine,
        xtask::tools::swtpm_version().unwrap_or_else(|e| format!("(version unknown: {e})"))
    ));
    base.image = match &b.image {
        Some(p) => p.clone(),
        None => {
            ui.phase("building the self-test image (cargo build --release --target powerpc64-unknown-linux-musl --features selftest; the first build takes about a minute)");
            launcher::build_image_opts(ImageKind::Selftest, ui.quiet)?
        }
    };
    if let Ok(s) = launcher::image_size(&base.image) {
        ui.phase(format!(
            "image {} ({} bytes, {} loaded)",
            base.image.display(),
            s.file,
            s.loaded
        ));
    }
    if launcher::interrupted() {
        return Err(Stop::Setup("interrupted before boot".into()));
    }
    Ok((base, ui))
}

fn read_file(what: &str, p: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(p).map_err(|e| format!("{what} {}: {e}", p.display()))
}

/// A scratch directory for the demo's files, inside this launcher's own temporary directory
/// (swept by the next launcher if this one is SIGKILLed).
fn work_dir(name: &str) -> PathBuf {
    xtask::swtpm::scratch_dir(name).unwrap_or_else(|_| {
        launcher::workspace_root()
            .join("target")
            .join("pef-work")
            .join(format!("{name}-{}", std::process::id()))
    })
}

/// Removes a directory when dropped.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The verdict line `--quiet` prints for the last boot (and the first failed one).
fn verdict_line(reports: &[RunReport]) -> String {
    let last = |r: &RunReport| {
        let svm = r.svm_line().map(|l| format!("{l}; ")).unwrap_or_default();
        let counts = r
            .verdict
            .summary
            .counts
            .map(|(p, f)| format!("{p} passed, {f} failed"))
            .unwrap_or_else(|| "no count line".into());
        format!("{svm}{counts}")
    };
    match reports.iter().find(|r| !r.passed()) {
        None => format!(
            "pass: {}",
            reports.last().map(last).unwrap_or_else(|| "no boot".into())
        ),
        Some(r) => {
            let problems: Vec<String> = r.verdict.problems.iter().map(|p| p.to_string()).collect();
            let log = r
                .console_log
                .as_ref()
                .map(|l| format!(" (console: {})", l.display()))
                .unwrap_or_default();
            format!("fail: {}: {}{log}", r.scenario, problems.join("; "))
        }
    }
}

/// The end of a booting command: the summary table (or the quiet verdict line), the JSON
/// report, and the exit code.
fn finish(
    ui: Ui,
    command: &str,
    json: Option<&Path>,
    img: &Path,
    reports: &[RunReport],
    extra_ok: bool,
) -> ExitCode {
    let code = if launcher::interrupted() {
        cli::EXIT_INTERRUPTED
    } else if extra_ok && !reports.is_empty() && reports.iter().all(RunReport::passed) {
        cli::EXIT_PASS
    } else {
        cli::EXIT_FAIL
    };
    if ui.quiet {
        println!("{}", verdict_line(reports));
    } else {
        print!("\n{}", launcher::summary_table(reports));
    }
    key_warnings(reports, ui.quiet);
    if let Some(path) = json {
        let doc = xtask::report::json(command, img, reports, code);
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("pef: --json {}: {e}", path.display());
            return ExitCode::from(cli::EXIT_SETUP);
        }
        ui.phase(format!("report written to {}", path.display()));
    }
    ExitCode::from(code)
}

/// Repeats, after the summary, the image's loud lines about the wrapping key: a NEW key
/// (blobs sealed to an earlier key will not open) or a key of the old layout refused. With
/// --quiet (stdout is the verdict line only) they go to stderr.
fn key_warnings(reports: &[RunReport], quiet: bool) {
    for r in reports {
        for line in r.console.lines() {
            if line.starts_with("fw: WARNING: created a NEW wrapping key")
                || (line.starts_with("FAIL provisioning") && line.contains("OLD layout"))
            {
                if quiet {
                    eprintln!("pef: {}: {line}", r.scenario);
                } else {
                    println!("pef: {}: {line}", r.scenario);
                }
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // --help and --version are not errors.
            let code = if e.use_stderr() { cli::EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    launcher::install_interrupt_handler();
    match cli.command {
        Cmd::Run(r) => run::cmd_run(r),
        Cmd::Scenarios(s) => scenarios::cmd_scenarios(s),
        Cmd::Esm(a) => esm::cmd_esm(a),
        Cmd::Bench(b) => bench::cmd_bench(b),
        Cmd::Build(b) => build::cmd_build(b),
        Cmd::Completions { shell } => completions::cmd_completions(shell),
    }
}
