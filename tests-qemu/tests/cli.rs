//! The `pef` program as a user runs it: the message and exit code of each mistake a user can
//! make, `--json` against the console it came from, `--gdb` (halted, then continued over the
//! gdb remote protocol), and SIGKILL of the launcher mid-boot (no QEMU or swtpm left, and the
//! next run on the same TPM state passes).

mod common;

use common::cli::{exited_0, in_scratch, pef, pef_in, text, PEF};
use common::image;
use common::Scratch;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `pef run` without a secure VM, with `bootargs`, then `extra`.
fn no_svm_run<'a>(bootargs: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["run", "--no-svm", "--bootargs", bootargs];
    v.extend_from_slice(extra);
    v
}

/// Runs `pef args` and checks it exits with `code` and that stderr holds `needle`.
fn refused(args: &[&str], code: i32, needle: &str) {
    let o = pef(args);
    let (out, err) = text(&o);
    assert_eq!(
        o.status.code(),
        Some(code),
        "pef {args:?}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"
    );
    assert!(
        err.contains(needle),
        "pef {args:?}: stderr lacks {needle:?}:\n{err}"
    );
}

#[test]
fn each_usage_mistake_gets_its_message_and_exit_code_2() {
    let s = Scratch::new("cli", "usage");
    let empty = s.file("empty.initrd", b"");
    let script = s.file("not-an-image", b"#!/bin/sh\necho hi\n");
    let missing = s.0.join("missing.initrd");
    let state_file = s.file("state-is-a-file", b"x");
    let (e, m, sc, st) = (
        empty.to_str().unwrap(),
        missing.to_str().unwrap(),
        script.to_str().unwrap(),
        state_file.to_str().unwrap(),
    );
    // A flag where a value belongs.
    refused(
        &["run", "--initrd", "--fresh-tpm"],
        2,
        "a value is required for '--initrd <FILE>' but none was supplied",
    );
    // Inputs checked before anything is built or booted, in both spellings.
    refused(
        &["run", &format!("--initrd={m}")],
        2,
        &format!("pef: --initrd {m}: no such file"),
    );
    refused(
        &["run", "--initrd", e],
        2,
        &format!("pef: --initrd {e}: is empty"),
    );
    refused(
        &["run", "--image", sc],
        2,
        &format!("pef: --image {sc}: not an ELF file"),
    );
    refused(
        &["run", "--image", PEF],
        2,
        "a little-endian ELF; the image is a big-endian ELF64 for POWER",
    );
    refused(
        &["run", "--tpm-state", st],
        2,
        "is not a directory (swtpm keeps its state in a directory)",
    );
    refused(
        &["run", "--svm-kernel", "/k"],
        2,
        "the following required arguments were not provided:\n  --initrd <FILE>",
    );
    refused(
        &["run", "--no-svm", "--initrd", e],
        2,
        "the argument '--no-svm' cannot be used with '--initrd <FILE>'",
    );
    refused(
        &["run", "--machine", "powernv8"],
        2,
        "invalid value 'powernv8' for '--machine <MACHINE>'",
    );
    refused(&["run", "--timeout=0"], 2, "--timeout <SECS>");
    refused(
        &["bench", "--bootargs", "x"],
        2,
        "unexpected argument '--bootargs'",
    );
    refused(
        &["esm", "--pubkey", m, "--kernel", sc, "--out", "/tmp/x"],
        2,
        &format!("pef: --pubkey {m}: no such file"),
    );
    refused(&["frobnicate"], 2, "unrecognized subcommand 'frobnicate'");
}

#[test]
fn help_version_and_completions() {
    let o = pef(&["--version"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        text(&o).0.trim(),
        format!("pef {}", env!("CARGO_PKG_VERSION"))
    );
    for sub in ["run", "scenarios", "bench", "esm"] {
        let o = pef(&[sub, "--help"]);
        let (out, _) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{sub}");
        assert!(out.contains(&format!("Usage: pef {sub}")), "{out}");
        assert!(out.contains("Exit status:"), "{sub}: exit codes documented");
    }
    let o = pef(&["completions", "bash"]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    assert!(out.contains("_pef()") && out.contains("--dump-dt"), "{out}");
}

/// `pef run --no-svm` of the test image with `extra` flags and a fake QEMU (named as one:
/// the shell `script`, in a scratch directory named `tag`): refused with exit 3 and `needle`.
fn refused_with_fake_qemu(tag: &str, script: &[u8], extra: &[&str], needle: &str) {
    let s = Scratch::new("cli", tag);
    let fake = s.file("qemu-system-ppc64", script);
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&fake)
        .status()
        .unwrap();
    let img = image();
    let mut args = vec![
        "run",
        "--no-svm",
        "--image",
        img.to_str().unwrap(),
        "--qemu",
        fake.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    refused(&args, 3, needle);
}

/// A fake QEMU that reports an old version.
#[test]
fn a_qemu_older_than_7_2_is_refused_with_what_to_do() {
    refused_with_fake_qemu(
        "oldqemu",
        b"#!/bin/sh\necho 'QEMU emulator version 6.2.0 (Debian 1:6.2+dfsg-2ubuntu6)'\n",
        &[],
        "is QEMU 6.2.0; pefbox needs QEMU 7.2 or newer",
    );
}

/// A machine the QEMU in use lacks (Debian 12's 7.2 has no powernv10-rainier) is refused
/// before anything boots, naming the QEMU that has it. The fake QEMU answers `--version` and
/// `-M help` as 7.2 does.
#[test]
fn a_machine_the_qemu_lacks_is_refused_naming_the_qemu_that_has_it() {
    refused_with_fake_qemu(
        "nomachine",
        b"#!/bin/sh\ncase \"$1\" in\n\
          --version) echo 'QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18)';;\n\
          -M) printf 'Supported machines are:\\npowernv10  IBM PowerNV POWER10\\n\
          powernv9  IBM PowerNV POWER9 (default)\\n';;\nesac\n",
        &["--machine", "powernv10-rainier"],
        "has no machine powernv10-rainier; QEMU 10.0 has it: pass --qemu ",
    );
}

/// The processes whose command line mentions `marker`.
fn processes_with(marker: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmd.contains(marker) && !cmd.contains("cargo") && !cmd.contains(PEF) {
            found.push((pid, cmd));
        }
    }
    found
}

#[test]
fn a_sigkilled_launcher_leaves_no_qemu_or_swtpm_and_the_next_run_passes() {
    let s = Scratch::new("cli", "kill");
    let state = s.0.join("tpm");
    let marker = format!("pef-kill-test-{}", std::process::id());
    // The demo story: a provisioning boot, then the demo SVM's boot, whose blob and kernel
    // are scratch files of the launcher.
    let run = in_scratch(&s.0, &["run", "--bootargs", "selftest=all"]);
    let mut child = Command::new(PEF)
        .args(&run)
        .args(["--qemu-arg=-name", &format!("--qemu-arg={marker}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Mid-boot: once the second boot (the demo SVM's) is provisioning.
    let mut out = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = [0u8; 256];
    while String::from_utf8_lossy(&seen)
        .matches("fw: storage parent")
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "no banner: {seen:?}");
        let n = out.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "pef exited early:\n{}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    let running_qemu = processes_with(&marker);
    let state_str = state.to_str().unwrap().to_string();
    let running_swtpm = processes_with(&state_str);
    assert_eq!(running_qemu.len(), 1, "QEMU runs: {running_qemu:?}");
    assert_eq!(running_swtpm.len(), 1, "swtpm runs: {running_swtpm:?}");
    let scratch = std::env::temp_dir().join(format!("pefbox-swtpm-{}", child.id()));
    assert!(
        scratch.join("demo").is_dir(),
        "the demo files are scratch files"
    );
    child.kill().unwrap(); // SIGKILL: no handler, no Drop guard runs.
    child.wait().unwrap();
    assert!(scratch.is_dir(), "nothing could clean up after SIGKILL");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<_> = processes_with(&marker)
            .into_iter()
            .chain(processes_with(&state_str))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left running after SIGKILL of the launcher: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The state is not locked by a survivor: the next run on it passes, and it sweeps the
    // dead launcher's scratch files.
    let o = pef(&run);
    let (out, _) = exited_0(&o);
    assert!(out.contains("svm: accepted"), "{out}");
    assert!(out.contains("15 passed, 0 failed"), "{out}");
    assert!(!scratch.exists(), "{} left behind", scratch.display());
}

#[test]
fn json_report_matches_the_console_it_came_from() {
    let s = Scratch::new("cli", "json");
    let json = s.0.join("report.json");
    let o = pef_in(&s.0, &["run", "--json", json.to_str().unwrap(), "-q"]);
    let (out, _) = exited_0(&o);
    // --quiet: only the verdict.
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with("pass: svm: accepted; "), "{out}");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(doc["command"], "run");
    assert_eq!(doc["exit_code"], 0);
    assert_eq!(doc["passed"], true);
    let boots = doc["boots"].as_array().unwrap();
    assert_eq!(boots.len(), 2, "a provisioning boot, then the demo SVM");
    assert_eq!(boots[0]["scenario"], "provision");
    assert_eq!(boots[1]["scenario"], "demo-svm");
    for b in boots {
        let log = b["console_log"].as_str().expect("console log path");
        let console = std::fs::read_to_string(log).unwrap();
        let lines: Vec<&str> = console.lines().map(|l| l.trim_end_matches('\r')).collect();
        // Every self-test in the report has its PASS line, and there are no others.
        let passed: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("PASS "))
            .collect();
        let in_json: Vec<&str> = b["selftests"]["passed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(in_json, passed);
        assert!(b["selftests"]["failed"].as_array().unwrap().is_empty());
        let count = format!(
            "{} passed, {} failed",
            b["selftests"]["count_line"]["passed"], b["selftests"]["count_line"]["failed"]
        );
        assert!(lines.contains(&count.as_str()), "{count}");
        // The verdict line.
        let svm = format!("svm: {}", b["svm"]["verdict"].as_str().unwrap());
        assert!(lines.contains(&svm.as_str()), "{svm}");
        // Every bench figure, as the image printed it.
        let bench = b["bench"].as_object().unwrap();
        assert!(bench.contains_key("boot-to-verdict-ms"));
        for (k, v) in bench {
            assert!(
                console.contains(&format!("{k}={v}")),
                "bench {k}={v} not on the console"
            );
        }
        assert_eq!(
            b["banner"].as_str(),
            lines.iter().find(|l| l.starts_with("pefbox ")).copied()
        );
        assert_eq!(b["machine"], "powernv9");
        assert!(b["qemu"]["version"]
            .as_str()
            .unwrap()
            .starts_with(|c: char| c.is_ascii_digit()));
        assert!(b["tpm"]["commands"].as_u64().unwrap() > 0);
        assert!(b["timings_ms"]["qemu_launch_to_exit"].as_f64().unwrap() > 0.0);
        // skiboot's lines are in the log, not on the terminal.
        assert!(console.contains("OPAL"), "skiboot lines belong in the log");
    }
    assert_eq!(boots[1]["svm"]["verdict"], "accepted");

    // --fresh-tpm on that provisioned state says what it destroys, with the key's Name.
    let o = pef_in(&s.0, &no_svm_run("selftest=none", &["--fresh-tpm"]));
    let (_, err) = exited_0(&o);
    let warning = err
        .lines()
        .find(|l| l.starts_with("pef: warning: --fresh-tpm wipes "))
        .unwrap_or_else(|| panic!("no --fresh-tpm warning:\n{err}"));
    assert!(
        warning.contains("and its wrapping key (Name 000b")
            && warning.ends_with("ESM blobs sealed to the old wrapping key will no longer open"),
        "{warning}"
    );
}

/// Minimal gdb remote-protocol client: sends one packet, returns the reply's payload.
fn rsp(stream: &mut TcpStream, payload: &str) -> String {
    let sum: u8 = payload.bytes().fold(0u8, |a, b| a.wrapping_add(b));
    write!(stream, "${payload}#{sum:02x}").unwrap();
    let mut reply = Vec::new();
    let mut b = [0u8; 1];
    loop {
        stream.read_exact(&mut b).unwrap();
        match b[0] {
            b'+' if reply.is_empty() => continue,
            b'#' => {
                let mut cs = [0u8; 2];
                stream.read_exact(&mut cs).unwrap();
                stream.write_all(b"+").unwrap();
                break;
            }
            c => reply.push(c),
        }
    }
    String::from_utf8_lossy(&reply)
        .trim_start_matches('$')
        .to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn gdb_halts_qemu_at_start_and_the_boot_continues_from_the_debugger() {
    let s = Scratch::new("cli", "gdb");
    let img = image();
    let port = free_port();
    let gdb = format!("--gdb={port}");
    let child = Command::new(PEF)
        .args(in_scratch(
            &s.0,
            &no_svm_run("selftest=timebase", &[&gdb, "--timeout", "60"]),
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stream = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("no gdbstub on {port}: {e}"),
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Halted: the stop reply names a signal (S05/T05: SIGTRAP).
    let why = rsp(&mut stream, "?");
    assert!(why.starts_with('S') || why.starts_with('T'), "{why}");
    // Nothing ran yet: the console has no banner while halted.
    write!(stream, "$c#63").unwrap();
    drop(stream);
    let o = child.wait_with_output().unwrap();
    let (out, err) = exited_0(&o);
    assert!(
        err.contains(&format!("target remote 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(
        err.contains(img.to_str().unwrap()),
        "gdb gets the image's symbols: {err}"
    );
    assert!(out.contains("1 passed, 0 failed"), "{out}");
}

#[test]
fn dump_dt_writes_the_device_tree_the_image_received() {
    let s = Scratch::new("cli", "dt");
    let dt = s.0.join("powernv9.dtb");
    let o = pef_in(
        &s.0,
        &no_svm_run("selftest=none", &["--dump-dt", dt.to_str().unwrap()]),
    );
    let (_, err) = exited_0(&o);
    let bytes = std::fs::read(&dt).unwrap_or_else(|e| panic!("{e}\n{err}"));
    assert_eq!(bytes[..4], [0xd0, 0x0d, 0xfe, 0xed], "FDT magic");
    let tree = pefbox::dtb::Dtb::new(&bytes).expect("a valid FDT");
    let chosen = tree.find_node("/chosen").expect("/chosen");
    let args = chosen.property_str("bootargs").expect("bootargs");
    assert!(args.contains("selftest=none dump-dt"), "{args:?}");
    assert!(Path::new(&dt).is_file());
}

#[test]
fn skiboot_lines_go_to_the_log_unless_verbose_which_also_shows_the_qemu_command_line() {
    let s = Scratch::new("cli", "verbosity");
    // skiboot's lines carry its timestamp: `[    0.010555786,5] OPAL v7.0 starting...`.
    let is_skiboot = |l: &str| l.starts_with('[') && l.contains(',') && l.contains("] ");
    let skiboot = |text: &str| text.lines().filter(|l| is_skiboot(l)).count();
    let o = pef_in(&s.0, &no_svm_run("selftest=timebase", &[]));
    let (out, err) = exited_0(&o);
    let banner = out.find("pefbox ").expect("the image's console is shown");
    assert_eq!(
        skiboot(&out[..banner]),
        0,
        "skiboot's boot lines belong in the log:\n{}",
        &out[..banner]
    );
    let log = std::fs::read_to_string(s.0.join("no-svm.log")).unwrap();
    assert!(skiboot(&log) > 10, "the log has skiboot's lines:\n{log}");
    assert!(
        !err.contains("-nodefaults"),
        "no QEMU command line by default"
    );
    assert!(err.contains("pef: booting no-svm"), "phase lines: {err}");

    let o = pef_in(&s.0, &no_svm_run("selftest=timebase", &["-v"]));
    let (out, err) = exited_0(&o);
    assert!(skiboot(&out) > 10, "--verbose shows skiboot:\n{out}");
    let cmd = err
        .lines()
        .find(|l| l.contains("-nodefaults"))
        .unwrap_or_else(|| panic!("--verbose prints QEMU's command line:\n{err}"));
    assert!(
        cmd.contains("-M powernv9") && cmd.contains("-kernel"),
        "{cmd}"
    );
}
