//! `pef bench`: N boots of the demo secure VM and the timing tables.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use xtask::cli;
use xtask::launcher::{self, Echo, LaunchError, RunReport};
use xtask::svm;
use xtask::verdict::{parse_bench_line, Expect, SvmExpect};

use crate::{finish, prepare, stop_code, work_dir, RemoveDir};

pub(crate) fn cmd_bench(a: cli::BenchArgs) -> ExitCode {
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
         sc 1 answered by the ultravisor (direct)  {:>10.2}\n\
         sc 1 reflected to the hypervisor partition{:>10.2}\n\
         guest partition's sc 1: exit and re-entry {:>10.2}\n\
         an SVM's null hcall, reflected and back   {:>10.2}\n\
         H_TPM_COMM rejected (H_P5, checks only)   {:>10.2}\n\
         GetRandom(16) through H_TPM_COMM          {:>10.2}\n\
           GetRandom: time on the UART link        {:>10.2}\n\
           GetRandom: the handler's own time       {:>10.2}\n\
         swtpm's own time for GetRandom (relay)    {:>10.2}   handler/swtpm = {:.2}\n",
        pairs
            .iter()
            .find(|(k, _)| k == "n")
            .map_or("?", |(_, v)| v.as_str()),
        get("hcall-direct-ns") / 1000.0,
        get("hcall-echo-ns") / 1000.0,
        get("partition-hcall-ns") / 1000.0,
        get("svm-reflected-ns") / 1000.0,
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
    let groups: [(&str, &[&str]); 13] = [
        ("tpm (TPM client crate)", &["tpm::"]),
        ("hv (hypervisor crate)", &["hv::"]),
        ("uv (ultravisor crate)", &["uv::"]),
        ("fw (provisioning crate)", &["fw::"]),
        ("pefbox::selftest", &["pefbox::selftest::"]),
        ("dtb (device tree crate)", &["dtb::"]),
        ("radix (partition tables crate)", &["radix::"]),
        (
            "pefbox (arch, platform, target, main), papr, base64",
            &["pefbox", "rust_entry", "pefbox_", "papr::", "base64::"],
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
