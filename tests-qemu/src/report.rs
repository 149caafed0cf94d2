//! The `--json` report: the verdict, self-test results, bench figures, timings, machine and
//! versions of every boot a command made, read from the same console the verdict was judged on.
#![forbid(unsafe_code)]

use std::path::Path;

use serde_json::{json, Map, Value};

use crate::launcher::{self, RunReport};
use crate::verdict::{parse_bench_line, SvmResult};

/// Version of the report's layout; bumped when a field changes meaning.
pub const SCHEMA: u32 = 1;

fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// `bench key=value` lines of a console, numbers as numbers; a key seen twice keeps its
/// last value.
pub fn bench_figures(console: &str) -> Map<String, Value> {
    let mut out = Map::new();
    for line in console.lines() {
        for (k, v) in parse_bench_line(line).unwrap_or_default() {
            let value = v
                .parse::<u64>()
                .map(Value::from)
                .or_else(|_| v.parse::<f64>().map(Value::from))
                .unwrap_or(Value::String(v));
            out.insert(k, value);
        }
    }
    out
}

/// One boot as JSON.
pub fn boot(r: &RunReport) -> Value {
    let s = &r.verdict.summary;
    let failed: Vec<Value> = s
        .failures
        .iter()
        .map(|f| {
            let (name, reason) = f.split_once(": ").unwrap_or((f.as_str(), ""));
            json!({ "name": name, "reason": reason })
        })
        .collect();
    let svm = s.svm.first().map(|v| match v {
        SvmResult::Accepted => json!({ "verdict": "accepted" }),
        SvmResult::Rejected(why) => json!({ "verdict": "rejected", "reason": why }),
        SvmResult::None => json!({ "verdict": "none" }),
    });
    json!({
        "scenario": r.scenario,
        "passed": r.passed(),
        "problems": r.verdict.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        "banner": s.banner,
        "svm": svm,
        "selftests": {
            "passed": s.passed_names,
            "failed": failed,
            "count_line": s.counts.map(|(p, f)| json!({ "passed": p, "failed": f })),
        },
        "bench": bench_figures(&r.console),
        "timings_ms": {
            "qemu_launch_to_exit": ms(r.wall),
            "qemu_launch_to_banner": r.to_banner.map(ms),
        },
        "tpm": {
            "commands": r.relay.records.len(),
            "swtpm_ms": ms(r.swtpm_time()),
        },
        "qemu": {
            "program": r.qemu.program.display().to_string(),
            "version": r.qemu.version,
        },
        "machine": r.machine,
        "power_off": s.power_off,
        "exit": {
            "timed_out": r.exit.timed_out,
            "interrupted": r.exit.interrupted,
            "qemu_status": r.exit.code,
        },
        "console_log": r.console_log.as_ref().map(|p| p.display().to_string()),
    })
}

/// The whole report of one command.
pub fn json(command: &str, image: &Path, reports: &[RunReport], exit_code: u8) -> Value {
    let size = launcher::image_size(image).ok();
    json!({
        "schema": SCHEMA,
        "pef_version": env!("CARGO_PKG_VERSION"),
        "command": command,
        "passed": exit_code == 0,
        "exit_code": exit_code,
        "swtpm_version": crate::tools::swtpm_version().ok(),
        "image": {
            "path": image.display().to_string(),
            "bytes": size.map(|s| s.file),
            "loaded_bytes": size.map(|s| s.loaded),
        },
        "boots": reports.iter().map(boot).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_figures_keep_numbers_as_numbers() {
        let f = bench_figures(
            "x\nbench boot-to-verdict-ms=805 provision-ms=75\r\nbench ratio=0.36 name=abc\n",
        );
        assert_eq!(f["boot-to-verdict-ms"], json!(805));
        assert_eq!(f["provision-ms"], json!(75));
        assert_eq!(f["ratio"], json!(0.36));
        assert_eq!(f["name"], json!("abc"));
        assert_eq!(f.len(), 4);
    }
}
