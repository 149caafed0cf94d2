//! `pef`: the host launcher (`cargo pef run`, `cargo pef scenarios`, `cargo pef bench`,
//! `cargo pef build`, `cargo pef esm`, `cargo pef completions`). The command line is declared in
//! [`tests_qemu::cli`]; `pef --help` and `pef <subcommand> --help` describe every flag and the
//! exit codes.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use tests_qemu::cli::{self, BootOpts, BuildArgs, Cli, Cmd, EsmArgs, RunArgs};
use tests_qemu::launcher::{self, Echo, ImageKind, LaunchError, RunConfig, RunReport};
use tests_qemu::svm;
use tests_qemu::verdict::{parse_bench_line, Expect, SvmExpect};

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
        tests_qemu::tools::swtpm_version().unwrap_or_else(|e| format!("(version unknown: {e})"))
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
    tests_qemu::swtpm::scratch_dir(name).unwrap_or_else(|_| {
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
        let svm = r
            .verdict
            .summary
            .svm
            .first()
            .map(|v| format!("svm: {v}; "))
            .unwrap_or_default();
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
        let doc = tests_qemu::report::json(command, img, reports, code);
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

fn cmd_run(args: RunArgs) -> ExitCode {
    match run(args) {
        Ok(code) => code,
        Err(s) => stop_code(s),
    }
}

fn run(args: RunArgs) -> Result<ExitCode, Stop> {
    cli::check_run_inputs(&args)?;
    let (mut base, ui) = prepare(&args.boot, "run")?;
    if args.gdb.is_some() && args.boot.timeout.is_none() {
        // A person at a debugger sets the pace.
        base.timeout = Duration::from_secs(24 * 3600);
    }
    let state = args
        .tpm_state
        .clone()
        .unwrap_or_else(launcher::default_tpm_state);
    if args.fresh_tpm && state.exists() {
        let old = svm::read_wrapping_key(&state).ok().flatten();
        eprintln!(
            "pef: warning: --fresh-tpm wipes {}{}: ESM blobs sealed to the old wrapping key will no longer open",
            state.display(),
            old.map(|k| format!(" and its wrapping key (Name {})", hex(&k.name)))
                .unwrap_or_default()
        );
        std::fs::remove_dir_all(&state)
            .map_err(|e| Stop::Setup(format!("wiping {}: {e}", state.display())))?;
    }
    let demo = !args.no_svm && args.initrd.is_none();
    let mut reports = Vec::new();
    let mut key = None;
    if demo || args.export_wrapping_key.is_some() {
        if svm::read_wrapping_key(&state)?.is_none() {
            ui.phase(format!(
                "TPM state {} has no wrapping key: provisioning boot (console log {})",
                state.display(),
                base.derive("provision")
                    .console_log_path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ));
        }
        let (k, provisioning) = svm::ensure_wrapping_key(&base, &state)?;
        match provisioning {
            Some(r) => {
                ui.phase(format!(
                    "provisioning boot: created the wrapping key 0x81800001 (Name {})",
                    hex(&k.name)
                ));
                reports.push(r);
            }
            None => ui.phase(format!(
                "wrapping key 0x81800001 present (Name {})",
                hex(&k.name)
            )),
        }
        key = Some(k);
    }
    if let (Some(k), Some(out)) = (&key, &args.export_wrapping_key) {
        svm::export_pem(k, out)?;
        ui.phase(format!(
            "wrapping key 0x81800001 (Name {}) written to {}",
            hex(&k.name),
            out.display()
        ));
    }
    let scenario = if demo {
        "demo-svm"
    } else if args.initrd.is_some() {
        "svm"
    } else {
        "no-svm"
    };
    let mut cfg = base.derive(scenario);
    cfg.gdb = args.gdb;
    let mut bootargs: Vec<String> = args.bootargs.iter().cloned().collect();
    if args.dump_dt.is_some() {
        bootargs.push("dump-dt".into());
    }
    cfg.bootargs = (!bootargs.is_empty()).then(|| bootargs.join(" "));
    cfg.tpm_state = Some(state);
    let mut _work = None;
    let expect_svm = if let Some(k) = key.as_ref().filter(|_| demo) {
        let dir = work_dir("demo");
        let files = svm::build_blob(&k.pem, &svm::demo_svm(), &mut rand::rngs::OsRng)
            .map_err(LaunchError::Boot)
            .and_then(|blob| svm::write_svm_files(&dir, "demo", &blob, &svm::demo_svm()))?;
        files.apply(&mut cfg);
        _work = Some(RemoveDir(dir));
        ui.phase("demo secure VM: ESM blob sealed to the wrapping key");
        SvmExpect::Accepted
    } else if let Some(initrd) = &args.initrd {
        cfg.initrd = Some(initrd.clone());
        cfg.svm_kernel = args.svm_kernel.clone();
        cfg.svm_bootargs = args.svm_bootargs.clone();
        if args.svm_kernel.is_none() {
            eprintln!(
                "pef: note: no --svm-kernel: the image checks the kernel digest against nothing"
            );
        }
        SvmExpect::Accepted
    } else {
        SvmExpect::Absent
    };
    cfg.expect = Expect::for_bootargs(cfg.bootargs.as_deref(), expect_svm);
    ui.phase(format!(
        "booting {scenario} (whole console, skiboot included: {})",
        cfg.console_log_path()
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    ));
    let report = launcher::run(&cfg)?;
    if let Some(out) = &args.dump_dt {
        match tests_qemu::verdict::extract_dt_dump(&report.console) {
            Ok(dt) => match std::fs::write(out, &dt) {
                Ok(()) => ui.phase(format!(
                    "device tree ({} bytes) written to {}",
                    dt.len(),
                    out.display()
                )),
                Err(e) => eprintln!("pef: --dump-dt {}: {e}", out.display()),
            },
            Err(e) => eprintln!("pef: --dump-dt: the console held no usable dump: {e}"),
        }
    }
    reports.push(report);
    Ok(finish(
        ui,
        "run",
        args.boot.json.as_deref(),
        &base.image,
        &reports,
        true,
    ))
}

fn cmd_scenarios(a: cli::ScenariosArgs) -> ExitCode {
    let (base, ui) = match prepare(&a.boot, "scenarios") {
        Ok(p) => p,
        Err(s) => return stop_code(s),
    };
    let work = RemoveDir(work_dir("scenarios"));
    let state = work.0.join("tpm");
    let mut quiet_base = base.clone();
    if !ui.verbose {
        // Eight boots: the table tells the story; --verbose shows every console.
        quiet_base.echo = Echo::Off;
    }
    ui.phase("scenarios: provisioning boot, then one boot per scenario on the same TPM state");
    let suite = match svm::run_suite(&quiet_base, &state, &work.0) {
        Ok(s) => s,
        Err(e) => return stop_code(e.into()),
    };
    let reports = suite.reports();
    if !ui.quiet {
        println!();
        for (sc, r) in &suite.scenarios {
            let got = r
                .verdict
                .summary
                .svm
                .first()
                .map(|v| format!("svm: {v}"))
                .unwrap_or_else(|| "no svm verdict".into());
            println!(
                "  {:<20} expected {:<44} got {got}",
                sc.name(),
                sc.expect().to_string()
            );
        }
        println!("\nhost software after the accepted boot (same swtpm process, no TPM reset):");
        if let Some(pcr) = suite.door_pcr {
            println!("  PCR 11 = {}", hex(&pcr));
        }
        for at in &suite.attempts {
            println!(
                "  {} {at}",
                if at.refused_by_tpm().is_some() {
                    "ok  "
                } else {
                    "FAIL"
                }
            );
        }
        println!("\ncontrol: the same attempts against a deliberately open door (TPM reset, no firmware):");
        for at in &suite.open_door {
            println!(
                "  {} {at}",
                if at.outcome.is_ok() { "ok  " } else { "FAIL" }
            );
        }
    }
    finish(
        ui,
        "scenarios",
        a.boot.json.as_deref(),
        &base.image,
        &reports,
        suite.passed(),
    )
}

fn cmd_esm(a: EsmArgs) -> ExitCode {
    if let Err(e) = cli::check_esm_inputs(&a) {
        return stop_code(e.into());
    }
    let build = || -> Result<(usize, usize), String> {
        let mut pems = Vec::new();
        for p in &a.pubkey {
            let bytes = read_file("--pubkey", p)?;
            let pem = String::from_utf8(bytes)
                .map_err(|_| format!("--pubkey {}: not a text (PEM) file", p.display()))?;
            tests_qemu::esm::parse_public_key_pem(&pem)
                .map_err(|e| format!("--pubkey {}: {e}", p.display()))?;
            pems.push(pem);
        }
        let pems: Vec<&str> = pems.iter().map(String::as_str).collect();
        let kernel = read_file("--kernel", &a.kernel)?;
        let initrd = match &a.initrd {
            Some(p) => read_file("--initrd", p)?,
            None => Vec::new(),
        };
        let mut files = Vec::new();
        for (name, p) in &a.attach {
            files.push((name.clone(), read_file(&format!("--attach {name}="), p)?));
        }
        let (blob, _key) = tests_qemu::esm::build_esm_blob_multi(
            &pems,
            &kernel,
            &initrd,
            &a.bootargs,
            &pefbox::uv::esm::DEFAULT_RTAS,
            &files,
            &mut rand::rngs::OsRng,
        )
        .map_err(|e| format!("building the blob: {e}"))?;
        let out = tests_qemu::esm::attach_to_initrd(&blob, &initrd);
        std::fs::write(&a.out, &out).map_err(|e| format!("--out {}: {e}", a.out.display()))?;
        if let Some(p) = &a.blob_out {
            std::fs::write(p, &blob).map_err(|e| format!("--blob-out {}: {e}", p.display()))?;
        }
        Ok((blob.len(), out.len()))
    };
    match build() {
        Ok((blob, out)) => {
            eprintln!(
                "pef: ESM blob {blob} bytes; {} written ({out} bytes: ESM cpio + initrd)",
                a.out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => stop_code(Stop::Usage(format!("esm: {e}"))),
    }
}

fn cmd_bench(a: cli::BenchArgs) -> ExitCode {
    let (base, ui) = match prepare(&a.boot, "bench") {
        Ok(p) => p,
        Err(s) => return stop_code(s),
    };
    let mut base = base;
    base.echo = if ui.verbose { Echo::All } else { Echo::Off };
    let runs = a.runs;
    // One fresh TPM state for the whole bench: one provisioning boot, then N demo boots.
    let work = RemoveDir(work_dir("bench"));
    let state = work.0.join("tpm");
    let key = match svm::ensure_wrapping_key(&base, &state) {
        Ok((k, Some(r))) => {
            ui.phase(format!(
                "provisioning boot (fresh TPM state): {} in {:.3} s",
                if r.passed() { "pass" } else { "FAIL" },
                r.wall.as_secs_f64()
            ));
            k
        }
        Ok((k, None)) => k,
        Err(e) => return stop_code(e.into()),
    };
    let demo = svm::demo_svm();
    let files = svm::build_blob(&key.pem, &demo, &mut rand::rngs::OsRng)
        .map_err(LaunchError::Boot)
        .and_then(|blob| svm::write_svm_files(&work.0, "demo", &blob, &demo));
    let files = match files {
        Ok(f) => f,
        Err(e) => return stop_code(e.into()),
    };
    let mut reports = Vec::new();
    for i in 0..runs {
        let mut cfg = base.derive(format!("bench-{}", i + 1));
        cfg.tpm_state = Some(state.clone());
        cfg.expect = Expect::for_bootargs(None, SvmExpect::Accepted);
        files.apply(&mut cfg);
        match launcher::run(&cfg) {
            Ok(r) => {
                ui.phase(format!(
                    "run {}/{runs}: {} in {:.3} s",
                    i + 1,
                    if r.passed() { "pass" } else { "FAIL" },
                    r.wall.as_secs_f64()
                ));
                reports.push(r);
            }
            Err(e) => return stop_code(e.into()),
        }
        if launcher::interrupted() {
            break;
        }
    }
    // One more boot for the hypervisor's own costs: the hcall-bench self-test.
    let mut cfg = base.derive("hcall-bench");
    cfg.tpm_state = Some(state.clone());
    cfg.bootargs = Some("selftest=hcall-bench".into());
    match launcher::run(&cfg) {
        Ok(r) => reports.push(r),
        Err(e) => return stop_code(e.into()),
    }
    if !ui.quiet {
        let (demo_boots, hcall_boot) = reports.split_at(reports.len() - 1);
        print!("{}", bench_table(&base.image, demo_boots));
        print!("{}", phase_table(demo_boots));
        print!("{}", hcall_table(&hcall_boot[0]));
        print!("{}", size_table(&base.image));
    }
    finish(
        ui,
        "bench",
        a.boot.json.as_deref(),
        &base.image,
        &reports,
        true,
    )
}

/// The `hcall-bench` self-test's figures beside swtpm's time for GetRandom in the same boot.
fn hcall_table(r: &RunReport) -> String {
    let Some(pairs) = r.console.lines().find_map(|l| {
        parse_bench_line(l).filter(|p| p.iter().any(|(k, _)| k == "getrandom-handler-ns"))
    }) else {
        return "\nhcall-bench: no figures on the console\n".into();
    };
    let get = |k: &str| -> f64 {
        pairs
            .iter()
            .find(|(n, _)| n == k)
            .and_then(|(_, v)| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    let swtpm: Vec<Duration> = r
        .relay
        .records
        .iter()
        .filter(|rec| rec.command_code == 0x17b)
        .filter_map(|rec| rec.response.map(|x| x.swtpm_time))
        .collect();
    let sw_us = launcher::median(&swtpm).map_or(f64::NAN, |d| d.as_secs_f64() * 1e6);
    let handler_us = get("getrandom-handler-ns") / 1000.0;
    format!(
        "\nhypervisor (timebase, {} calls each)          us/call\n\
         sc 1 round trip (echo hcall)              {:>10.2}\n\
         H_TPM_COMM rejected (H_P5, checks only)   {:>10.2}\n\
         GetRandom(16) through H_TPM_COMM          {:>10.2}\n\
           GetRandom: time on the UART link        {:>10.2}\n\
           GetRandom: the handler's own time       {:>10.2}\n\
         swtpm's own time for GetRandom (relay)    {:>10.2}   handler/swtpm = {:.2}\n",
        pairs
            .iter()
            .find(|(k, _)| k == "n")
            .map_or("?", |(_, v)| v.as_str()),
        get("hcall-echo-ns") / 1000.0,
        get("tpm-comm-reject-ns") / 1000.0,
        get("getrandom-hcall-ns") / 1000.0,
        get("getrandom-link-ns") / 1000.0,
        handler_us,
        sw_us,
        handler_us / sw_us
    )
}

/// Where the image's code goes: text symbol sizes by module, from `nm -C -S` (after LTO,
/// inlining moves code into its callers, so the split is approximate).
fn size_table(img: &std::path::Path) -> String {
    let out = match std::process::Command::new("nm")
        .args(["-C", "-S"])
        .arg(img)
        .output()
    {
        Ok(o) if o.status.success() => o.stdout,
        _ => return "\ncode size by module: `nm` (binutils) not available\n".into(),
    };
    let groups: [(&str, &[&str]); 12] = [
        ("pefbox::tpm (TPM client)", &["pefbox::tpm::"]),
        ("pefbox::hv (hypervisor)", &["pefbox::hv::"]),
        ("pefbox::uv (ultravisor)", &["pefbox::uv::"]),
        ("pefbox::fw (provisioning)", &["pefbox::fw::"]),
        ("pefbox::selftest", &["pefbox::selftest::"]),
        ("pefbox::dtb", &["pefbox::dtb"]),
        (
            "pefbox (arch, platform, main)",
            &["pefbox", "rust_entry", "pefbox_"],
        ),
        (
            "sha2, hmac, aes, cfb-mode",
            &["sha2", "hmac", "aes::", "cfb_mode", "digest", "cipher"],
        ),
        ("rsa, num-bigint", &["rsa", "num_bigint", "num_"]),
        (
            "p256, elliptic-curve",
            &[
                "p256",
                "elliptic_curve",
                "primeorder",
                "crypto_bigint",
                "ff::",
                "group",
            ],
        ),
        ("aes-gcm", &["aes_gcm", "ghash", "polyval", "ctr"]),
        ("core, alloc", &["core::", "alloc::", "&"]),
    ];
    let mut sizes = vec![0u64; groups.len() + 1];
    for line in String::from_utf8_lossy(&out).lines() {
        let mut f = line.splitn(4, ' ');
        let (Some(_), Some(size), Some(kind), Some(name)) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        if kind != "t" && kind != "T" {
            continue;
        }
        let Ok(size) = u64::from_str_radix(size, 16) else {
            continue;
        };
        let name = name.trim_start_matches('<');
        let g = groups
            .iter()
            .position(|(_, pre)| pre.iter().any(|p| name.starts_with(p)))
            .unwrap_or(groups.len());
        sizes[g] += size;
    }
    let total: u64 = sizes.iter().sum();
    let mut t = format!(
        "\n{:<32} {:>10}\n",
        "code (text symbols) by module", "bytes"
    );
    for (i, (name, _)) in groups.iter().enumerate() {
        t.push_str(&format!("{name:<32} {:>10}\n", sizes[i]));
    }
    t.push_str(&format!(
        "{:<32} {:>10}\n{:<32} {:>10}\n",
        "other",
        sizes[groups.len()],
        "total",
        total
    ));
    t
}

/// The image's own phase times (timebase) beside the swtpm-side time of the same phases'
/// commands measured at the relay.
fn phase_table(reports: &[RunReport]) -> String {
    let mut image: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    let mut tpm: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    let mut cmds: BTreeMap<&str, usize> = BTreeMap::new();
    for r in reports {
        for line in r.console.lines() {
            for (k, v) in parse_bench_line(line).unwrap_or_default() {
                let key = match k.as_str() {
                    "boot-to-verdict-ms" => "boot-to-verdict",
                    "provision-ms" => "provision",
                    "session-ms" => "session",
                    "unwrap-ms" => "unwrap",
                    _ => continue,
                };
                if let Ok(n) = v.parse() {
                    image.entry(key).or_default().push(n);
                }
            }
        }
        if let Some(p) = launcher::tpm_phases(&r.relay.records) {
            for (k, (n, t)) in [
                ("provision", p.provision),
                ("session", p.session),
                ("unwrap", p.unwrap),
            ] {
                tpm.entry(k).or_default().push(t);
                cmds.insert(k, n);
            }
        }
    }
    let mut out = format!(
        "\n{:<16} {:>14} {:>16} {:>10}\n",
        "phase", "image_ms(med)", "swtpm_ms(med)", "tpm_cmds"
    );
    for k in ["boot-to-verdict", "provision", "session", "unwrap"] {
        let img = image
            .get(k)
            .and_then(|v| launcher::median(v))
            .map(|n| n.to_string())
            .unwrap_or_else(|| "-".into());
        let sw = tpm
            .get(k)
            .and_then(|v| launcher::median(v))
            .map(|d| format!("{:.2}", d.as_secs_f64() * 1000.0))
            .unwrap_or_else(|| "-".into());
        let n = cmds
            .get(k)
            .map(|n| n.to_string())
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!("{k:<16} {img:>14} {sw:>16} {n:>10}\n"));
    }
    out.push_str(
        "image_ms: the image's timebase (bench line); swtpm_ms: swtpm time of that phase's \
         commands at the relay (the rest is the UART link, hcall and image crypto)\n",
    );
    out
}

fn bench_table(img: &std::path::Path, reports: &[RunReport]) -> String {
    let mut out = String::new();
    let walls: Vec<Duration> = reports.iter().map(|r| r.wall).collect();
    let stat = |v: &[Duration]| {
        format!(
            "median {:.3} s  min {:.3} s  max {:.3} s",
            launcher::median(v).unwrap_or_default().as_secs_f64(),
            v.iter().min().copied().unwrap_or_default().as_secs_f64(),
            v.iter().max().copied().unwrap_or_default().as_secs_f64()
        )
    };
    out.push_str(&format!(
        "\nQEMU launch to exit over {} boot(s): {}\n",
        walls.len(),
        stat(&walls)
    ));
    let banners: Vec<Duration> = reports.iter().filter_map(|r| r.to_banner).collect();
    if !banners.is_empty() {
        out.push_str(&format!("QEMU launch to banner: {}\n", stat(&banners)));
    }
    match launcher::image_size(img) {
        Ok(s) => out.push_str(&format!(
            "image {}: {} bytes ELF, {} bytes loaded (PT_LOAD)\n",
            img.display(),
            s.file,
            s.loaded
        )),
        Err(e) => out.push_str(&format!("image size: {e}\n")),
    }
    // NV writes per boot, counted at the relay: successful EvictControl, NV_DefineSpace,
    // NV_UndefineSpace, NV_ChangeAuth and NV_Write.
    let nv: Vec<usize> = reports
        .iter()
        .map(|r| {
            r.relay
                .records
                .iter()
                .filter(|c| {
                    pefbox::tpm::transport::NV_WRITING_COMMANDS.contains(&c.command_code)
                        && c.response.is_some_and(|x| x.code == 0)
                })
                .count()
        })
        .collect();
    if !nv.is_empty() {
        out.push_str(&format!(
            "NV writes per boot (relay: successful EvictControl/NV_DefineSpace/NV_UndefineSpace/NV_ChangeAuth/NV_Write): {nv:?}\n"
        ));
    }
    let per = launcher::per_command(reports);
    if !per.is_empty() {
        out.push_str(&format!(
            "\n{:<12} {:<18} {:>6} {:>10} {:>10} {:>10}\n",
            "tpm_command", "name", "count", "swtpm_us", "max_us", "link_us"
        ));
        for (code, t) in per {
            out.push_str(&format!(
                "0x{code:08x}   {:<18} {:>6} {:>10} {:>10} {:>10}\n",
                pefbox::tpm::wire::CommandCode(code).name().unwrap_or(""),
                t.count,
                t.median_swtpm.as_micros(),
                t.max_swtpm.as_micros(),
                t.median_receive.as_micros()
            ));
        }
        out.push_str(
            "swtpm_us: median swtpm time; link_us: median time for a command to cross the UART\n",
        );
    }
    // `bench key=value` lines: numeric values summarised per key.
    let mut keys: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut other: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in reports {
        for line in r.console.lines() {
            for (k, v) in parse_bench_line(line).unwrap_or_default() {
                match v.parse::<u64>() {
                    Ok(n) => keys.entry(k).or_default().push(n),
                    Err(_) => other.entry(k).or_default().push(v),
                }
            }
        }
    }
    if !keys.is_empty() || !other.is_empty() {
        out.push_str(&format!(
            "\n{:<28} {:>6} {:>12} {:>12} {:>12}\n",
            "bench key", "count", "median", "min", "max"
        ));
        for (k, v) in &keys {
            out.push_str(&format!(
                "{k:<28} {:>6} {:>12} {:>12} {:>12}\n",
                v.len(),
                launcher::median(v).unwrap_or_default(),
                v.iter().min().copied().unwrap_or_default(),
                v.iter().max().copied().unwrap_or_default()
            ));
        }
        for (k, v) in &other {
            out.push_str(&format!("{k:<28} {:>6} {}\n", v.len(), v.join(" ")));
        }
    }
    out
}

/// `pef build`: the image to flash (or, with `--selftest`, the self-test image), its sizes,
/// and last its path.
fn cmd_build(args: BuildArgs) -> ExitCode {
    let kind = if args.selftest {
        ImageKind::Selftest
    } else {
        ImageKind::Flash
    };
    let what = match kind {
        ImageKind::Flash => "the image to flash (no selftest feature)",
        ImageKind::Selftest => "the self-test image (--features selftest)",
    };
    if !args.quiet {
        eprintln!(
            "pef: building {what}: cargo build --release --target {} -p pefbox --target-dir {}",
            launcher::IMAGE_TARGET,
            kind.target_dir().display()
        );
    }
    let image = match launcher::build_image_opts(kind, args.quiet) {
        Ok(p) => p,
        Err(e) => return stop_code(e.into()),
    };
    let loaded = launcher::image_size(&image)
        .map(|s| format!("{} bytes loaded (PT_LOAD), {} bytes ELF", s.loaded, s.file))
        .unwrap_or_else(|e| format!("unreadable ELF ({e})"));
    let stripped = launcher::stripped_size(&image)
        .map(|n| format!("{n} bytes stripped (--strip-all)"))
        .unwrap_or_else(|e| format!("stripped size unknown: {e}"));
    println!("size: {loaded}, {stripped}");
    println!("image: {}", image.display());
    ExitCode::SUCCESS
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
        Cmd::Run(r) => cmd_run(r),
        Cmd::Scenarios(s) => cmd_scenarios(s),
        Cmd::Esm(a) => cmd_esm(a),
        Cmd::Bench(b) => cmd_bench(b),
        Cmd::Build(b) => cmd_build(b),
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "pef", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
    }
}
