//! `pef scenarios`: the secure-VM scenarios on a fresh TPM state, then the host attempts.

use std::process::ExitCode;

use xtask::cli;
use xtask::launcher::Echo;
use xtask::svm;

use crate::{finish, hex, prepare, stop_code, work_dir, RemoveDir};

pub(crate) fn cmd_scenarios(a: cli::ScenariosArgs) -> ExitCode {
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
            let got = r.svm_line().unwrap_or_else(|| "no svm verdict".into());
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
