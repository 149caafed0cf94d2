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
                ErrorKind::ValueValidation | ErrorKind::InvalidValue | ErrorKind::UnknownArgument
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
