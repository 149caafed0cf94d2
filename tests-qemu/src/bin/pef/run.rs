//! `pef run`: provision if needed, build the demo secure VM for this TPM's key, boot it.

use std::process::ExitCode;
use std::time::Duration;

use xtask::cli::{self, RunArgs};
use xtask::launcher::{self, LaunchError};
use xtask::svm;
use xtask::verdict::{Expect, SvmExpect};

use crate::{finish, hex, prepare, stop_code, work_dir, RemoveDir, Stop};

pub(crate) fn cmd_run(args: RunArgs) -> ExitCode {
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
        match xtask::verdict::extract_dt_dump(&report.console) {
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
