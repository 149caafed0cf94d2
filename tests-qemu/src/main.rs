//! `pef`: the host launcher (`cargo pef run`, `cargo pef bench`, `cargo pef scenarios`,
//! `cargo pef esm`).
//!
//! Exit codes: 0 the boot(s) passed, 1 a boot failed or could not be launched, 2 usage error,
//! 130 interrupted.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use tests_qemu::launcher::{self, RunConfig, RunReport};
use tests_qemu::svm;
use tests_qemu::verdict::{parse_bench_line, Expect, SvmExpect};

const USAGE: &str = "\
usage: cargo pef run [options]        build the image and boot it under QEMU powernv9 with swtpm:
                                      by default provisions the TPM state if it has no key yet,
                                      builds the demo secure VM's blob for this TPM's key, boots
                                      it and requires `svm: accepted`
       cargo pef scenarios [options]  the secure-VM scenarios (accepted, tampered ciphertext,
                                      wrong kernel, wrong bootargs, other key) on a fresh TPM
                                      state, then host attempts to use the wrapping key
       cargo pef bench [options]      boot the demo secure VM N times and report timings
       cargo pef esm --pubkey PEM --kernel FILE --out FILE [--initrd FILE] [--bootargs STRING]
                     [--attach NAME=FILE ...]
                                      build an ESM blob (svm-tools format) sealed to PEM and
                                      write it attached to the initrd, as svm-tools does

run options:
  --bootargs STRING         the image's /chosen/bootargs (QEMU -append); `selftest=none`
                            allows a boot with no self-test
  --initrd FILE             boot this secure VM instead of the demo: an initrd carrying an
                            ESM blob as svm-tools attaches it (requires `svm: accepted`)
  --svm-kernel FILE         the secure VM's kernel (with --initrd; at most 64 MiB)
  --svm-bootargs STRING     the secure VM's bootargs (with --initrd; at most 4096 bytes)
  --no-svm                  boot without a secure VM (expects `svm: none`)
  --export-wrapping-key FILE  write the wrapping key's public part (SPKI PEM, as
                            `tpm2_readpublic -f pem`) before booting; provisions first if
                            the TPM state has no key yet
  --timeout SECS            kill QEMU after SECS seconds (default 60)
  --tpm-state DIR           the swtpm state directory (default target/swtpm-state)
  --fresh-tpm               wipe the swtpm state first
  --image PATH              boot this ELF instead of building the image
scenarios options:
  --timeout SECS, --image PATH  as for run
bench options:
  --runs N                  number of demo boots (default 5), after one provisioning boot
  --timeout SECS, --image PATH  as for run
esm options:
  --pubkey PEM              the wrapping key's public part (SPKI or PKCS#1 PEM, RSA-2048)
  --kernel FILE             the secure VM's kernel (as loaded)
  --initrd FILE             the secure VM's own initrd (default: none)
  --bootargs STRING         the secure VM's bootargs (default: empty)
  --attach NAME=FILE        add FILE to the blob's encrypted files as NAME (repeatable)
  --out FILE                the initrd to write: ESM cpio + the secure VM's initrd
  --blob-out FILE           also write the bare ESM blob
exit status: 0 pass, 1 fail, 2 usage error, 130 interrupted";

/// The `run` subcommand's settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct RunArgs {
    bootargs: Option<String>,
    initrd: Option<PathBuf>,
    svm_kernel: Option<PathBuf>,
    svm_bootargs: Option<String>,
    no_svm: bool,
    export_wrapping_key: Option<PathBuf>,
    timeout: Option<u64>,
    tpm_state: Option<PathBuf>,
    fresh_tpm: bool,
    image: Option<PathBuf>,
}

/// The `esm` subcommand's settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct EsmArgs {
    pubkey: PathBuf,
    kernel: PathBuf,
    initrd: Option<PathBuf>,
    bootargs: String,
    attach: Vec<(String, PathBuf)>,
    out: PathBuf,
    blob_out: Option<PathBuf>,
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cli {
    Help,
    Run(RunArgs),
    Bench {
        runs: u32,
        timeout: Option<u64>,
        image: Option<PathBuf>,
    },
    Scenarios {
        timeout: Option<u64>,
        image: Option<PathBuf>,
    },
    Esm(EsmArgs),
}

/// A command-line mistake (exit code 2).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Usage {
    NoSubcommand,
    UnknownSubcommand(String),
    UnknownFlag {
        sub: &'static str,
        flag: String,
    },
    MissingValue(String),
    BadNumber {
        flag: String,
        value: String,
    },
    Repeated(String),
    Needs {
        flag: &'static str,
        needs: &'static str,
    },
    Conflict(&'static str, &'static str),
    Missing(&'static str),
    BadAttach {
        value: String,
        why: String,
    },
    TooLong {
        flag: &'static str,
        max: usize,
    },
    Nul(&'static str),
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Usage::NoSubcommand => write!(
                f,
                "no subcommand (expected `run`, `scenarios`, `bench` or `esm`)"
            ),
            Usage::UnknownSubcommand(s) => write!(
                f,
                "unknown subcommand `{s}` (expected `run`, `scenarios`, `bench` or `esm`)"
            ),
            Usage::UnknownFlag { sub, flag } => write!(f, "`{sub}` has no option `{flag}`"),
            Usage::MissingValue(s) => write!(f, "option `{s}` needs a value"),
            Usage::BadNumber { flag, value } => {
                write!(
                    f,
                    "option `{flag}` needs a positive whole number, got `{value}`"
                )
            }
            Usage::Repeated(s) => write!(f, "option `{s}` given twice"),
            Usage::Needs { flag, needs } => write!(f, "option `{flag}` needs `{needs}`"),
            Usage::Conflict(a, b) => write!(f, "options `{a}` and `{b}` exclude each other"),
            Usage::Missing(s) => write!(f, "option `{s}` is required"),
            Usage::BadAttach { value, why } => {
                write!(f, "`--attach {value}`: {why} (expected NAME=FILE)")
            }
            Usage::TooLong { flag, max } => write!(f, "option `{flag}` is longer than {max} bytes"),
            Usage::Nul(s) => write!(f, "option `{s}` contains a NUL byte"),
        }
    }
}

fn number(flag: &str, value: &str) -> Result<u64, Usage> {
    match value.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(Usage::BadNumber {
            flag: flag.to_string(),
            value: value.to_string(),
        }),
    }
}

/// Flags of each subcommand: (name, takes a value, repeatable).
fn flags(sub: &str) -> &'static [(&'static str, bool, bool)] {
    match sub {
        "run" => &[
            ("--bootargs", true, false),
            ("--initrd", true, false),
            ("--svm-kernel", true, false),
            ("--svm-bootargs", true, false),
            ("--no-svm", false, false),
            ("--export-wrapping-key", true, false),
            ("--timeout", true, false),
            ("--tpm-state", true, false),
            ("--fresh-tpm", false, false),
            ("--image", true, false),
        ],
        "bench" => &[
            ("--runs", true, false),
            ("--timeout", true, false),
            ("--image", true, false),
        ],
        "scenarios" => &[("--timeout", true, false), ("--image", true, false)],
        "esm" => &[
            ("--pubkey", true, false),
            ("--kernel", true, false),
            ("--initrd", true, false),
            ("--bootargs", true, false),
            ("--attach", true, true),
            ("--out", true, false),
            ("--blob-out", true, false),
        ],
        _ => &[],
    }
}

fn parse_attach(value: &str) -> Result<(String, PathBuf), Usage> {
    let bad = |why: &str| Usage::BadAttach {
        value: value.to_string(),
        why: why.to_string(),
    };
    let (name, file) = value.split_once('=').ok_or_else(|| bad("no `=`"))?;
    if file.is_empty() {
        return Err(bad("no file after `=`"));
    }
    if !tests_qemu::esm::valid_file_name(name) {
        return Err(bad(
            "NAME must be a letter then up to 30 of [0-9A-Za-z,._+-] (svm-tools' rule)",
        ));
    }
    Ok((name.to_string(), PathBuf::from(file)))
}

fn parse(args: &[String]) -> Result<Cli, Usage> {
    let Some((sub, rest)) = args.split_first() else {
        return Err(Usage::NoSubcommand);
    };
    let sub: &'static str = match sub.as_str() {
        "-h" | "--help" | "help" => return Ok(Cli::Help),
        "run" => "run",
        "bench" => "bench",
        "scenarios" => "scenarios",
        "esm" => "esm",
        other => return Err(Usage::UnknownSubcommand(other.to_string())),
    };
    let table = flags(sub);
    let mut seen: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let f = flag.as_str();
        if f == "-h" || f == "--help" {
            return Ok(Cli::Help);
        }
        let Some(&(name, takes_value, repeatable)) = table.iter().find(|(n, _, _)| *n == f) else {
            return Err(Usage::UnknownFlag {
                sub,
                flag: f.to_string(),
            });
        };
        let value = if takes_value {
            it.next()
                .ok_or_else(|| Usage::MissingValue(f.to_string()))?
                .clone()
        } else {
            String::new()
        };
        let slot = seen.entry(name).or_default();
        if !slot.is_empty() && !repeatable {
            return Err(Usage::Repeated(f.to_string()));
        }
        slot.push(value);
    }
    let one = |name: &str| seen.get(name).and_then(|v| v.first()).cloned();
    let path = |name: &str| one(name).map(PathBuf::from);
    let timeout = one("--timeout")
        .map(|v| number("--timeout", &v))
        .transpose()?;
    match sub {
        "run" => {
            let run = RunArgs {
                bootargs: one("--bootargs"),
                initrd: path("--initrd"),
                svm_kernel: path("--svm-kernel"),
                svm_bootargs: one("--svm-bootargs"),
                no_svm: seen.contains_key("--no-svm"),
                export_wrapping_key: path("--export-wrapping-key"),
                timeout,
                tpm_state: path("--tpm-state"),
                fresh_tpm: seen.contains_key("--fresh-tpm"),
                image: path("--image"),
            };
            for (flag, set) in [
                ("--svm-kernel", run.svm_kernel.is_some()),
                ("--svm-bootargs", run.svm_bootargs.is_some()),
            ] {
                if set && run.initrd.is_none() {
                    return Err(Usage::Needs {
                        flag,
                        needs: "--initrd",
                    });
                }
            }
            if run.no_svm && run.initrd.is_some() {
                return Err(Usage::Conflict("--no-svm", "--initrd"));
            }
            if let Some(b) = &run.svm_bootargs {
                if b.len() > svm::MAX_SVM_BOOTARGS {
                    return Err(Usage::TooLong {
                        flag: "--svm-bootargs",
                        max: svm::MAX_SVM_BOOTARGS,
                    });
                }
                if b.contains('\0') {
                    return Err(Usage::Nul("--svm-bootargs"));
                }
            }
            Ok(Cli::Run(run))
        }
        "bench" => {
            let runs = match one("--runs") {
                None => 5,
                Some(v) => u32::try_from(number("--runs", &v)?).map_err(|_| Usage::BadNumber {
                    flag: "--runs".into(),
                    value: v.clone(),
                })?,
            };
            Ok(Cli::Bench {
                runs,
                timeout,
                image: path("--image"),
            })
        }
        "scenarios" => Ok(Cli::Scenarios {
            timeout,
            image: path("--image"),
        }),
        _ => {
            let bootargs = one("--bootargs").unwrap_or_default();
            if bootargs.contains('\0') {
                return Err(Usage::Nul("--bootargs"));
            }
            let mut attach = Vec::new();
            for v in seen.get("--attach").into_iter().flatten() {
                let (name, file) = parse_attach(v)?;
                if attach.iter().any(|(n, _)| *n == name) {
                    return Err(Usage::BadAttach {
                        value: v.clone(),
                        why: format!("NAME `{name}` attached twice"),
                    });
                }
                attach.push((name, file));
            }
            Ok(Cli::Esm(EsmArgs {
                pubkey: path("--pubkey").ok_or(Usage::Missing("--pubkey"))?,
                kernel: path("--kernel").ok_or(Usage::Missing("--kernel"))?,
                initrd: path("--initrd"),
                bootargs,
                attach,
                out: path("--out").ok_or(Usage::Missing("--out"))?,
                blob_out: path("--blob-out"),
            }))
        }
    }
}

fn image(given: Option<PathBuf>) -> Result<PathBuf, launcher::LaunchError> {
    launcher::ensure_tools()?;
    let img = match given {
        Some(p) => p,
        None => launcher::build_image()?,
    };
    if launcher::interrupted() {
        return Err(launcher::LaunchError::Io(
            "interrupted before boot".into(),
            std::io::Error::from(std::io::ErrorKind::Interrupted),
        ));
    }
    Ok(img)
}

fn read_file(what: &str, p: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(p).map_err(|e| format!("{what} {}: {e}", p.display()))
}

fn secs(t: Option<u64>) -> Duration {
    Duration::from_secs(t.unwrap_or(60))
}

/// A scratch directory under target/ for the demo's files.
fn work_dir(name: &str) -> PathBuf {
    launcher::workspace_root()
        .join("target")
        .join("pef-work")
        .join(format!("{name}-{}", std::process::id()))
}

fn cmd_run(args: RunArgs) -> ExitCode {
    let img = match image(args.image.clone()) {
        Ok(p) => p,
        Err(e) => return launch_failed(&e),
    };
    let state = args
        .tpm_state
        .clone()
        .unwrap_or_else(launcher::default_tpm_state);
    if args.fresh_tpm && state.exists() {
        if let Err(e) = std::fs::remove_dir_all(&state) {
            eprintln!("pef: wiping {}: {e}", state.display());
            return ExitCode::from(1);
        }
    }
    let timeout = secs(args.timeout);
    let demo = !args.no_svm && args.initrd.is_none();
    let mut reports = Vec::new();
    let mut key = None;
    if demo || args.export_wrapping_key.is_some() {
        match svm::ensure_wrapping_key(&img, &state, timeout, true) {
            Ok((k, provisioning)) => {
                if let Some(r) = provisioning {
                    eprintln!("pef: provisioning boot: the TPM state had no wrapping key");
                    reports.push(r);
                }
                key = Some(k);
            }
            Err(e) => return launch_failed(&e),
        }
    }
    if let (Some(k), Some(out)) = (&key, &args.export_wrapping_key) {
        if let Err(e) = svm::export_pem(k, out) {
            return launch_failed(&e);
        }
        eprintln!(
            "pef: wrapping key 0x81800001 (Name {}) written to {}",
            hex(&k.name),
            out.display()
        );
    }
    let mut cfg = RunConfig::new(
        if demo {
            "demo-svm"
        } else if args.initrd.is_some() {
            "svm"
        } else {
            "no-svm"
        },
        &img,
    );
    cfg.bootargs = args.bootargs.clone();
    cfg.timeout = timeout;
    cfg.tpm_state = Some(state);
    cfg.echo = true;
    let mut _work = None;
    let expect_svm = if demo {
        let Some(k) = &key else {
            return ExitCode::from(1);
        };
        let dir = work_dir("demo");
        let files = svm::build_blob(&k.pem, &svm::demo_svm(), &mut rand::rngs::OsRng)
            .map_err(launcher::LaunchError::Boot)
            .and_then(|blob| svm::write_svm_files(&dir, "demo", &blob, &svm::demo_svm()));
        match files {
            Ok(f) => f.apply(&mut cfg),
            Err(e) => return launch_failed(&e),
        }
        _work = Some(RemoveDir(dir));
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
    cfg.expect = Expect::for_bootargs(args.bootargs.as_deref(), expect_svm);
    match launcher::run(&cfg) {
        Ok(report) => {
            reports.push(report);
            print!("\n{}", launcher::summary_table(&reports));
            exit_for(&reports)
        }
        Err(e) => launch_failed(&e),
    }
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

fn cmd_scenarios(timeout: Option<u64>, given: Option<PathBuf>) -> ExitCode {
    let img = match image(given) {
        Ok(p) => p,
        Err(e) => return launch_failed(&e),
    };
    let work = RemoveDir(work_dir("scenarios"));
    let state = work.0.join("tpm");
    let suite = match svm::run_suite(&img, &state, &work.0, secs(timeout), false) {
        Ok(s) => s,
        Err(e) => return launch_failed(&e),
    };
    let reports = suite.reports();
    print!("{}", launcher::summary_table(&reports));
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
    for a in &suite.attempts {
        println!(
            "  {} {a}",
            if a.refused_by_tpm().is_some() {
                "ok  "
            } else {
                "FAIL"
            }
        );
    }
    if launcher::interrupted() {
        ExitCode::from(130)
    } else if suite.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn cmd_esm(a: EsmArgs) -> ExitCode {
    let build = || -> Result<(usize, usize), String> {
        let pem_bytes = read_file("--pubkey", &a.pubkey)?;
        let pem = String::from_utf8(pem_bytes)
            .map_err(|_| format!("--pubkey {}: not a text (PEM) file", a.pubkey.display()))?;
        let kernel = read_file("--kernel", &a.kernel)?;
        if kernel.is_empty() {
            return Err(format!("--kernel {}: empty file", a.kernel.display()));
        }
        let initrd = match &a.initrd {
            Some(p) => read_file("--initrd", p)?,
            None => Vec::new(),
        };
        let mut files = Vec::new();
        for (name, p) in &a.attach {
            files.push((name.clone(), read_file(&format!("--attach {name}="), p)?));
        }
        let (blob, _key) = tests_qemu::esm::build_esm_blob(
            &pem,
            &kernel,
            &initrd,
            &a.bootargs,
            &pefbox::uv::esm::DEFAULT_RTAS,
            &files,
            &mut rand::rngs::OsRng,
        )
        .map_err(|e| format!("--pubkey {}: {e}", a.pubkey.display()))?;
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
        Err(e) => {
            eprintln!("pef: esm: {e}");
            ExitCode::from(1)
        }
    }
}

fn launch_failed(e: &launcher::LaunchError) -> ExitCode {
    eprintln!("pef: {e}");
    if launcher::interrupted() {
        ExitCode::from(130)
    } else {
        ExitCode::from(1)
    }
}

fn exit_for(reports: &[RunReport]) -> ExitCode {
    if launcher::interrupted() {
        ExitCode::from(130)
    } else if reports.iter().all(RunReport::passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn cmd_bench(runs: u32, timeout: Option<u64>, given: Option<PathBuf>) -> ExitCode {
    let img = match image(given) {
        Ok(p) => p,
        Err(e) => return launch_failed(&e),
    };
    // One fresh TPM state for the whole bench: one provisioning boot, then N demo boots.
    let work = RemoveDir(work_dir("bench"));
    let state = work.0.join("tpm");
    let key = match svm::ensure_wrapping_key(&img, &state, secs(timeout), false) {
        Ok((k, Some(r))) => {
            eprintln!(
                "pef: provisioning boot (fresh TPM state): {} in {:.3} s",
                if r.passed() { "pass" } else { "FAIL" },
                r.wall.as_secs_f64()
            );
            k
        }
        Ok((k, None)) => k,
        Err(e) => return launch_failed(&e),
    };
    let demo = svm::demo_svm();
    let files = svm::build_blob(&key.pem, &demo, &mut rand::rngs::OsRng)
        .map_err(launcher::LaunchError::Boot)
        .and_then(|blob| svm::write_svm_files(&work.0, "demo", &blob, &demo));
    let files = match files {
        Ok(f) => f,
        Err(e) => return launch_failed(&e),
    };
    let mut reports = Vec::new();
    for i in 0..runs {
        let mut cfg = RunConfig::new(format!("bench-{}", i + 1), &img);
        cfg.timeout = secs(timeout);
        cfg.tpm_state = Some(state.clone());
        cfg.expect = Expect::for_bootargs(None, SvmExpect::Accepted);
        files.apply(&mut cfg);
        match launcher::run(&cfg) {
            Ok(r) => {
                eprintln!(
                    "pef: run {}/{runs}: {} in {:.3} s",
                    i + 1,
                    if r.passed() { "pass" } else { "FAIL" },
                    r.wall.as_secs_f64()
                );
                reports.push(r);
            }
            Err(e) => return launch_failed(&e),
        }
        if launcher::interrupted() {
            break;
        }
    }
    // One more boot for the hypervisor's own costs: the hcall-bench self-test.
    let mut cfg = RunConfig::new("hcall-bench", &img);
    cfg.timeout = secs(timeout);
    cfg.tpm_state = Some(state.clone());
    cfg.bootargs = Some("selftest=hcall-bench".into());
    match launcher::run(&cfg) {
        Ok(r) => reports.push(r),
        Err(e) => return launch_failed(&e),
    }
    print!("{}", launcher::summary_table(&reports));
    let (demo_boots, hcall_boot) = reports.split_at(reports.len() - 1);
    print!("{}", bench_table(&img, demo_boots));
    print!("{}", phase_table(demo_boots));
    print!("{}", hcall_table(&hcall_boot[0]));
    print!("{}", size_table(&img));
    exit_for(&reports)
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
    let per = launcher::per_command(reports);
    if !per.is_empty() {
        out.push_str(&format!(
            "\n{:<12} {:<18} {:>6} {:>10} {:>10} {:>10}\n",
            "tpm_command", "name", "count", "swtpm_us", "max_us", "link_us"
        ));
        for (code, t) in per {
            out.push_str(&format!(
                "0x{code:08x}   {:<18} {:>6} {:>10} {:>10} {:>10}\n",
                launcher::command_name(code),
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

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cli = match parse(&args) {
        Ok(c) => c,
        Err(u) => {
            eprintln!("pef: {u}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    launcher::install_interrupt_handler();
    match cli {
        Cli::Help => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Cli::Run(r) => cmd_run(r),
        Cli::Scenarios { timeout, image } => cmd_scenarios(timeout, image),
        Cli::Esm(a) => cmd_esm(a),
        Cli::Bench {
            runs,
            timeout,
            image,
        } => cmd_bench(runs, timeout, image),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Cli, Usage> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn run_flags_are_carried() {
        let cli = p(&[
            "run",
            "--bootargs",
            "selftest=panic quiet",
            "--initrd",
            "/tmp/esm",
            "--timeout",
            "7",
            "--fresh-tpm",
            "--image",
            "/tmp/img",
            "--svm-kernel",
            "/k",
            "--svm-bootargs",
            "x=1",
            "--export-wrapping-key",
            "/w.pem",
        ])
        .unwrap();
        assert_eq!(
            cli,
            Cli::Run(RunArgs {
                bootargs: Some("selftest=panic quiet".into()),
                initrd: Some("/tmp/esm".into()),
                svm_kernel: Some("/k".into()),
                svm_bootargs: Some("x=1".into()),
                no_svm: false,
                export_wrapping_key: Some("/w.pem".into()),
                timeout: Some(7),
                tpm_state: None,
                fresh_tpm: true,
                image: Some("/tmp/img".into()),
            })
        );
        assert_eq!(p(&["run"]).unwrap(), Cli::Run(RunArgs::default()));
        assert_eq!(
            p(&["run", "--no-svm", "--bootargs", "selftest=none"]).unwrap(),
            Cli::Run(RunArgs {
                no_svm: true,
                bootargs: Some("selftest=none".into()),
                ..RunArgs::default()
            })
        );
    }

    #[test]
    fn svm_flags_need_an_initrd_and_exclude_no_svm() {
        assert_eq!(
            p(&["run", "--svm-kernel", "/k"]),
            Err(Usage::Needs {
                flag: "--svm-kernel",
                needs: "--initrd"
            })
        );
        assert_eq!(
            p(&["run", "--svm-bootargs", "a"]),
            Err(Usage::Needs {
                flag: "--svm-bootargs",
                needs: "--initrd"
            })
        );
        assert_eq!(
            p(&["run", "--no-svm", "--initrd", "/i"]),
            Err(Usage::Conflict("--no-svm", "--initrd"))
        );
        let long = "a".repeat(svm::MAX_SVM_BOOTARGS + 1);
        assert_eq!(
            p(&["run", "--initrd", "/i", "--svm-bootargs", &long]),
            Err(Usage::TooLong {
                flag: "--svm-bootargs",
                max: svm::MAX_SVM_BOOTARGS
            })
        );
        assert_eq!(
            p(&["run", "--initrd", "/i", "--svm-bootargs", "a\0b"]),
            Err(Usage::Nul("--svm-bootargs"))
        );
        assert_eq!(
            p(&["run", "--initrd", "/a", "--initrd", "/b"]),
            Err(Usage::Repeated("--initrd".into()))
        );
    }

    #[test]
    fn bench_and_scenarios_flags() {
        assert_eq!(
            p(&["bench"]).unwrap(),
            Cli::Bench {
                runs: 5,
                timeout: None,
                image: None
            }
        );
        assert_eq!(
            p(&["bench", "--runs", "3", "--image", "/i"]).unwrap(),
            Cli::Bench {
                runs: 3,
                timeout: None,
                image: Some("/i".into())
            }
        );
        // run-only flags are not bench flags.
        assert_eq!(
            p(&["bench", "--bootargs", "x"]),
            Err(Usage::UnknownFlag {
                sub: "bench",
                flag: "--bootargs".into()
            })
        );
        assert_eq!(
            p(&["scenarios", "--timeout", "9"]).unwrap(),
            Cli::Scenarios {
                timeout: Some(9),
                image: None
            }
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
            Cli::Esm(EsmArgs {
                pubkey: "/k.pem".into(),
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
        for (missing, flag) in [(1, "--pubkey"), (3, "--kernel"), (5, "--out")] {
            let mut a: Vec<&str> = base.to_vec();
            a.drain(missing..missing + 2);
            assert_eq!(p(&a), Err(Usage::Missing(flag)), "{a:?}");
        }
        for (bad, why) in [
            ("noequals", "no `=`"),
            ("name=", "no file"),
            ("1abc=/f", "NAME must"),
            ("a b=/f", "NAME must"),
        ] {
            let mut a = base.to_vec();
            a.extend(["--attach", bad]);
            match p(&a) {
                Err(Usage::BadAttach { value, why: w }) => {
                    assert_eq!(value, bad);
                    assert!(w.contains(why), "{w}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        let mut twice = base.to_vec();
        twice.extend(["--attach", "k=/a", "--attach", "k=/b"]);
        assert!(matches!(p(&twice), Err(Usage::BadAttach { .. })));
        assert_eq!(
            p(&["esm", "--runs", "3"]),
            Err(Usage::UnknownFlag {
                sub: "esm",
                flag: "--runs".into()
            })
        );
    }

    #[test]
    fn usage_errors_are_specific() {
        assert_eq!(p(&[]), Err(Usage::NoSubcommand));
        assert_eq!(p(&["boot"]), Err(Usage::UnknownSubcommand("boot".into())));
        assert_eq!(
            p(&["run", "--verbose"]),
            Err(Usage::UnknownFlag {
                sub: "run",
                flag: "--verbose".into()
            })
        );
        assert_eq!(
            p(&["run", "--timeout"]),
            Err(Usage::MissingValue("--timeout".into()))
        );
        for bad in ["abc", "0", "-3", "1.5"] {
            assert_eq!(
                p(&["run", "--timeout", bad]),
                Err(Usage::BadNumber {
                    flag: "--timeout".into(),
                    value: bad.into()
                })
            );
        }
        assert!(matches!(
            p(&["bench", "--runs", "99999999999"]),
            Err(Usage::BadNumber { .. })
        ));
        assert_eq!(p(&["run", "--help"]), Ok(Cli::Help));
        // Every error has a message naming the flag.
        let e = Usage::Needs {
            flag: "--svm-kernel",
            needs: "--initrd",
        };
        assert_eq!(e.to_string(), "option `--svm-kernel` needs `--initrd`");
    }
}
