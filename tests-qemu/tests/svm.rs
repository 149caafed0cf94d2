//! The secure-VM story end to end: real image under QEMU powernv9, real swtpm behind the
//! framing relay.
//!
//! - every scenario on one TPM state and one provisioning: a blob for this TPM's key is
//!   accepted, and so is one sealed to two hosts with this TPM second (`lockbox-2`); a
//!   tampered ciphertext, a wrong kernel, wrong bootargs and a blob for another TPM's key
//!   (`sealed to another TPM key: ...`, naming both fingerprints) are each rejected with
//!   their reason;
//! - after the accepted boot, with the same swtpm process (no TPM reset), host software
//!   cannot use the wrapping key: RSA_Decrypt with the empty password, policy branch A with a
//!   guessed authValue, policy branch B (ObjectChangeAuth + PCR 11 all zero) are each refused
//!   by the TPM;
//! - the CLI path a user takes with svm-tools: `pef run --export-wrapping-key`, `pef esm`,
//!   `pef run --initrd --svm-kernel --svm-bootargs`, with the exit status following the
//!   verdict;
//! - the PEM export itself, against a key swtpm created (no image needed).

mod common;

use common::image;
use common::Scratch;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use pefbox::tpm::entropy::FromRng;
use pefbox::tpm::public::Public;
use pefbox::tpm::rc;
use pefbox::tpm::{Auth, Tpm};
use rand::rngs::OsRng;
use rand::RngCore;
use rsa::sha2::Sha256;
use rsa::Oaep;
use xtask::launcher;
use xtask::svm::{self, Scenario};
use xtask::swtpm::Swtpm;
use xtask::verdict::SvmResult;

#[test]
fn scenarios_accept_and_reject_with_reasons_and_the_host_cannot_use_the_key() {
    let work = Scratch::new("svm", "suite");
    let state = work.0.join("tpm");
    let mut base = launcher::RunConfig::new("suite", image());
    base.timeout = Duration::from_secs(60);
    let suite = svm::run_suite(&base, &state, &work.0).expect("suite launched");
    let dump = |r: &launcher::RunReport| {
        format!(
            "{}: {:?}\n--- console ---\n{}",
            r.scenario, r.verdict.problems, r.console
        )
    };
    let prov = suite
        .provisioning
        .as_ref()
        .expect("a fresh state needs a provisioning boot");
    assert!(prov.passed(), "{}", dump(prov));
    assert_eq!(prov.verdict.summary.svm, vec![SvmResult::None]);

    assert_eq!(suite.scenarios.len(), Scenario::ALL.len());
    for (sc, r) in &suite.scenarios {
        // The verdict checks the reason text (SvmExpect::Rejected(reason)).
        assert!(r.passed(), "{}", dump(r));
        assert_eq!(r.verdict.summary.svm.len(), 1, "{}", dump(r));
        eprintln!("{:<20} svm: {}", sc.name(), r.verdict.summary.svm[0]);
    }
    // Each rejection names a different reason; the two accepted ones (this TPM the only
    // recipient, and the second of two) say `accepted`.
    let verdicts: Vec<String> = suite
        .scenarios
        .iter()
        .map(|(_, r)| r.verdict.summary.svm[0].to_string())
        .collect();
    let reasons: std::collections::BTreeSet<&String> = verdicts.iter().collect();
    assert_eq!(reasons.len(), Scenario::ALL.len() - 1, "{reasons:?}");
    let verdict_of = |want: Scenario| {
        let (_, r) = suite.scenarios.iter().find(|(s, _)| *s == want).unwrap();
        r.verdict.summary.svm[0].clone()
    };
    assert_eq!(verdict_of(Scenario::SecondRecipient), SvmResult::Accepted);
    // Another key: refused before the TPM is asked, naming this TPM's fingerprint (the one
    // the session line printed) and the blob's two lockboxes (lockbox-1 and the origin).
    let other = verdict_of(Scenario::OtherKey).to_string();
    let (_, accepted) = &suite.scenarios[0];
    let ours = accepted
        .console
        .lines()
        .find_map(|l| {
            l.split_once("wrapping key fingerprint ")
                .map(|(_, f)| f.trim())
        })
        .expect("the session line names the wrapping key fingerprint")
        .to_string();
    assert_eq!(ours.len(), 64, "{ours}");
    assert!(
        other.starts_with(&format!(
            "rejected: sealed to another TPM key: no lockbox matches this TPM's wrapping key (fingerprint {}...; blob has 2 lockboxes: ",
            &ours[..8]
        )),
        "{other}"
    );
    assert!(!other.contains("0x101"), "{other}");

    // After the accepted boot, same swtpm process.
    let pcr = suite.door_pcr.expect("PCR 11 read");
    assert_ne!(
        pcr, [0u8; 32],
        "the image closed the door (PCR 11 extended)"
    );
    assert_eq!(suite.attempts.len(), 3);
    for a in &suite.attempts {
        eprintln!("host attempt: {a}");
        assert!(a.refused_by_tpm().is_some(), "{a}");
    }
    let code = |i: usize| suite.attempts[i].refused_by_tpm().unwrap();
    // 1: the key refuses password authorization (userWithAuth clear).
    assert_eq!(suite.attempts[0].refused_by, Some("RSA_Decrypt"));
    assert_eq!(code(0).base(), rc::RC_AUTH_UNAVAILABLE);
    // 2: PolicySecret on the door index (real Name) refuses the guessed authValue (noDA:
    // BAD_AUTH).
    assert_eq!(suite.attempts[1].refused_by, Some("PolicySecret"));
    assert_eq!(code(1).base(), rc::RC_BAD_AUTH, "{}", suite.attempts[1]);
    // 3: PCR 11 is no longer zero, so the door index's policy cannot be satisfied.
    assert_eq!(suite.attempts[2].refused_by, Some("PolicyPCR"));
    assert_eq!(code(2).base(), rc::RC_VALUE);
    // The control: against a deliberately open door both succeed (real Names, right
    // cpHash), so the refusals above are the door's doing.
    assert_eq!(suite.open_door.len(), 2);
    for a in &suite.open_door {
        eprintln!("open-door control: {a}");
        assert!(a.outcome.is_ok(), "{a}");
    }
    assert!(suite.passed());
}

fn pef(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pef"))
        .args(args)
        .output()
        .expect("run pef");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn exported_key_and_pef_esm_make_a_blob_the_image_opens() {
    let work = Scratch::new("svm", "cli");
    let img = image();
    let state = work.0.join("tpm");
    let pem = work.0.join("wrapping.pem");
    // Fresh state: provisioning boot, export, then a boot without an SVM.
    let (code, out) = pef(&[
        "run",
        "--image",
        s(&img),
        "--tpm-state",
        s(&state),
        "--no-svm",
        "--export-wrapping-key",
        s(&pem),
    ]);
    assert_eq!(code, 0, "{out}");
    let text = std::fs::read_to_string(&pem).unwrap();
    assert!(text.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{text}");
    assert_eq!(
        svm::read_wrapping_key(&state).unwrap().unwrap().pem,
        text,
        "the exported PEM is the TPM's key"
    );

    // An SVM of our own, sealed with the CLI.
    let kernel = work.0.join("vmlinux");
    let initrd = work.0.join("initrd");
    let secret = work.0.join("secret");
    // The ultravisor runs the kernel in the SVM's partition, so it is a program that keeps
    // the payload ABI (the demo payload), followed by random bytes of its own: the digest
    // covers all of it.
    let mut k = xtask::payload::demo_payload();
    let mut tail = vec![0u8; 96_000];
    OsRng.fill_bytes(&mut tail);
    k.extend_from_slice(&tail);
    std::fs::write(&kernel, &k).unwrap();
    std::fs::write(&initrd, b"an initrd of the SVM's own").unwrap();
    std::fs::write(&secret, b"disk passphrase").unwrap();
    let combined = work.0.join("svm.initrd");
    let args = "root=/dev/vda1 quiet";
    let (code, out) = pef(&[
        "esm",
        "--pubkey",
        s(&pem),
        "--kernel",
        s(&kernel),
        "--initrd",
        s(&initrd),
        "--bootargs",
        args,
        "--attach",
        &format!("luks-key={}", s(&secret)),
        "--out",
        s(&combined),
    ]);
    assert_eq!(code, 0, "{out}");

    let boot = |bootargs: &str| {
        pef(&[
            "run",
            "--image",
            s(&img),
            "--tpm-state",
            s(&state),
            "--initrd",
            s(&combined),
            "--svm-kernel",
            s(&kernel),
            "--svm-bootargs",
            bootargs,
        ])
    };
    let (code, out) = boot(args);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("svm: accepted"), "{out}");
    assert!(
        out.contains("[partition 1] svm-payload: running in partition 1"),
        "{out}"
    );
    // Exit status follows the verdict.
    let (code, out) = boot("root=/dev/vda1 quiet init=/bin/sh");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("svm: rejected: bootargs digest mismatch"),
        "{out}"
    );

    // Bad flags of `esm` and unusable inputs are usage errors (2), each naming the flag.
    let (code, out) = pef(&["esm", "--kernel", s(&kernel), "--out", s(&combined)]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("the following required arguments were not provided:\n  --pubkey <PEM>"),
        "{out}"
    );
    let (code, out) = pef(&[
        "esm",
        "--pubkey",
        s(&kernel),
        "--kernel",
        s(&kernel),
        "--out",
        s(&combined),
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!("pef: esm: --pubkey {}: ", s(&kernel))),
        "{out}"
    );
}

#[test]
fn pem_export_encrypts_to_the_tpm_key() {
    let sw = Swtpm::start().expect("swtpm");
    let mut tpm = Tpm::new(sw.connect().unwrap());
    tpm.seed_entropy(&mut FromRng(OsRng)).unwrap();
    let (obj, blob) = svm::owner_decrypt_primary(&mut tpm).unwrap();
    let (public, pem) = svm::rsa_public_pem(&Public::parse(&blob).unwrap()).unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    assert_eq!(
        xtask::esm::parse_public_key_pem(&pem).unwrap(),
        public,
        "the PEM parses back to the same key"
    );
    let mut secret = [0u8; 32];
    OsRng.fill_bytes(&mut secret);
    let ct = public
        .encrypt(&mut OsRng, Oaep::new::<Sha256>(), &secret)
        .unwrap();
    let mut out = [0u8; 256];
    let n = tpm
        .rsa_decrypt(&obj, &mut [Auth::Password(b"")], &ct, &[], &mut out)
        .unwrap();
    assert_eq!(
        &out[..n],
        &secret,
        "the TPM decrypts what the PEM encrypted"
    );
    // A handle with nothing there reads as "no key", not as an error.
    assert_eq!(svm::read_rsa_key(&mut tpm, 0x8180_0001).unwrap(), None);
}
