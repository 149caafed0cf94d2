//! `pef`: the host launcher (`cargo pef run`, `cargo pef bench`).
//!
//! Exit codes: 0 the boot(s) passed, 1 a boot failed or could not be launched, 2 usage error,
//! 130 interrupted.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use tests_qemu::launcher::{self, RunConfig, RunReport};
use tests_qemu::verdict::parse_bench_line;

const USAGE: &str = "\
usage: cargo pef run [options]     build the image, boot it under QEMU powernv9 with swtpm, judge it
       cargo pef bench [options]   boot the default image N times and report timings

run options:
  --bootargs STRING         /chosen/bootargs (QEMU -append)
  --initrd FILE             QEMU -initrd
  --svm-kernel FILE         secure-VM kernel (not yet supported)
  --svm-bootargs STRING     secure-VM bootargs (not yet supported)
  --export-wrapping-key FILE  write the wrapping key's public part (not yet supported)
  --timeout SECS            kill QEMU after SECS seconds (default 60)
  --fresh-tpm               wipe the swtpm state (target/swtpm-state) first
  --image PATH              boot this ELF instead of building the image
bench options:
  --runs N                  number of boots (default 5)
  --timeout SECS, --image PATH  as for run
exit status: 0 pass, 1 fail, 2 usage error, 130 interrupted";

/// The `run` subcommand's settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct RunArgs {
    bootargs: Option<String>,
    initrd: Option<PathBuf>,
    svm_kernel: Option<PathBuf>,
    svm_bootargs: Option<String>,
    export_wrapping_key: Option<PathBuf>,
    timeout: Option<u64>,
    fresh_tpm: bool,
    image: Option<PathBuf>,
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
}

/// A command-line mistake (exit code 2).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Usage {
    NoSubcommand,
    UnknownSubcommand(String),
    UnknownFlag(String),
    MissingValue(String),
    BadNumber { flag: String, value: String },
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Usage::NoSubcommand => write!(f, "no subcommand (expected `run` or `bench`)"),
            Usage::UnknownSubcommand(s) => {
                write!(f, "unknown subcommand `{s}` (expected `run` or `bench`)")
            }
            Usage::UnknownFlag(s) => write!(f, "unknown option `{s}`"),
            Usage::MissingValue(s) => write!(f, "option `{s}` needs a value"),
            Usage::BadNumber { flag, value } => {
                write!(
                    f,
                    "option `{flag}` needs a positive whole number, got `{value}`"
                )
            }
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

fn parse(args: &[String]) -> Result<Cli, Usage> {
    let Some((sub, rest)) = args.split_first() else {
        return Err(Usage::NoSubcommand);
    };
    let bench = match sub.as_str() {
        "-h" | "--help" | "help" => return Ok(Cli::Help),
        "run" => false,
        "bench" => true,
        other => return Err(Usage::UnknownSubcommand(other.to_string())),
    };
    let mut run = RunArgs::default();
    let mut runs = 5u32;
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let f = flag.as_str();
        if f == "-h" || f == "--help" {
            return Ok(Cli::Help);
        }
        if f == "--fresh-tpm" && !bench {
            run.fresh_tpm = true;
            continue;
        }
        let takes_value = match f {
            "--timeout" | "--image" => true,
            "--runs" => bench,
            "--bootargs"
            | "--initrd"
            | "--svm-kernel"
            | "--svm-bootargs"
            | "--export-wrapping-key" => !bench,
            _ => false,
        };
        if !takes_value {
            return Err(Usage::UnknownFlag(f.to_string()));
        }
        let value = it
            .next()
            .ok_or_else(|| Usage::MissingValue(f.to_string()))?
            .clone();
        match f {
            "--timeout" => run.timeout = Some(number(f, &value)?),
            "--image" => run.image = Some(value.into()),
            "--runs" => {
                runs = u32::try_from(number(f, &value)?).map_err(|_| Usage::BadNumber {
                    flag: f.to_string(),
                    value: value.clone(),
                })?
            }
            "--bootargs" => run.bootargs = Some(value),
            "--initrd" => run.initrd = Some(value.into()),
            "--svm-kernel" => run.svm_kernel = Some(value.into()),
            "--svm-bootargs" => run.svm_bootargs = Some(value),
            _ => run.export_wrapping_key = Some(value.into()),
        }
    }
    if bench {
        Ok(Cli::Bench {
            runs,
            timeout: run.timeout,
            image: run.image,
        })
    } else {
        Ok(Cli::Run(run))
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

fn cmd_run(args: RunArgs) -> ExitCode {
    let unsupported: Vec<&str> = [
        ("--svm-kernel", args.svm_kernel.is_some()),
        ("--svm-bootargs", args.svm_bootargs.is_some()),
        ("--export-wrapping-key", args.export_wrapping_key.is_some()),
    ]
    .into_iter()
    .filter_map(|(f, set)| set.then_some(f))
    .collect();
    if !unsupported.is_empty() {
        eprintln!(
            "pef: {} not yet supported (the image does not take a secure VM yet)",
            unsupported.join(", ")
        );
        return ExitCode::from(2);
    }
    let img = match image(args.image) {
        Ok(p) => p,
        Err(e) => return launch_failed(&e),
    };
    let mut cfg = RunConfig::new(
        if args.bootargs.is_some() {
            "custom"
        } else {
            "default"
        },
        img,
    );
    cfg.bootargs = args.bootargs;
    cfg.initrd = args.initrd;
    cfg.timeout = Duration::from_secs(args.timeout.unwrap_or(60));
    cfg.tpm_state = Some(launcher::default_tpm_state());
    cfg.fresh_tpm = args.fresh_tpm;
    cfg.echo = true;
    match launcher::run(&cfg) {
        Ok(report) => {
            print!(
                "\n{}",
                launcher::summary_table(std::slice::from_ref(&report))
            );
            exit_for(&[report])
        }
        Err(e) => launch_failed(&e),
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
    let mut reports = Vec::new();
    for i in 0..runs {
        let mut cfg = RunConfig::new(format!("bench-{}", i + 1), &img);
        cfg.timeout = Duration::from_secs(timeout.unwrap_or(60));
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
    print!("{}", launcher::summary_table(&reports));
    print!("{}", bench_table(&img, &reports));
    exit_for(&reports)
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
                export_wrapping_key: Some("/w.pem".into()),
                timeout: Some(7),
                fresh_tpm: true,
                image: Some("/tmp/img".into()),
            })
        );
        assert_eq!(p(&["run"]).unwrap(), Cli::Run(RunArgs::default()));
    }

    #[test]
    fn bench_flags() {
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
            Err(Usage::UnknownFlag("--bootargs".into()))
        );
    }

    #[test]
    fn usage_errors_are_specific() {
        assert_eq!(p(&[]), Err(Usage::NoSubcommand));
        assert_eq!(p(&["boot"]), Err(Usage::UnknownSubcommand("boot".into())));
        assert_eq!(
            p(&["run", "--verbose"]),
            Err(Usage::UnknownFlag("--verbose".into()))
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
        assert_eq!(
            p(&["run", "--runs", "3"]),
            Err(Usage::UnknownFlag("--runs".into()))
        );
        assert!(matches!(
            p(&["bench", "--runs", "99999999999"]),
            Err(Usage::BadNumber { .. })
        ));
        assert_eq!(p(&["run", "--help"]), Ok(Cli::Help));
    }
}
