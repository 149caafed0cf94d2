//! The two image kinds: the image to flash carries none of the test hooks (its symbols and
//! its loaded bytes are searched for them) while the self-test image, searched the same way,
//! has every one (the control that shows the search can find them); the image to flash
//! boots and runs the whole flow (provisioning, the ultravisor session, an accepted SVM);
//! and `cargo pef build` ends with `image: <path>`.

mod common;

use common::{flash_image, image, Scratch};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use object::{Object, ObjectSegment, ObjectSymbol};
use rand::rngs::OsRng;
use xtask::launcher::{self, ImageKind, RunConfig};
use xtask::svm::{self, Scenario};
use xtask::verdict::{Expect, SvmExpect};

/// Every symbol name (mangled, as the ELF holds it) and the bytes the image's PT_LOAD
/// segments load (what skiboot copies into memory, the strings included).
struct Contents {
    symbols: Vec<String>,
    loaded: Vec<u8>,
}

fn contents(path: &Path) -> Contents {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = object::File::parse(&*bytes).expect("an ELF");
    let symbols: Vec<String> = file
        .symbols()
        .filter_map(|s| s.name().ok().map(str::to_string))
        .collect();
    let mut loaded = Vec::new();
    for seg in file.segments() {
        loaded.extend_from_slice(seg.data().expect("segment data"));
    }
    Contents { symbols, loaded }
}

impl Contents {
    fn has_symbol(&self, part: &str) -> bool {
        self.symbols.iter().any(|s| s.contains(part))
    }

    fn has_bytes(&self, text: &str) -> bool {
        self.loaded
            .windows(text.len())
            .any(|w| w == text.as_bytes())
    }
}

/// Symbols of the test hooks (substrings of their mangled names).
const HOOK_SYMBOLS: &[&str] = &[
    "Meddler",                  // the tampering relay observer
    "pefbox_sc_regtest",        // boot/regtest.S: the register-preservation probe
    "pefbox_scribble_volatile", // boot/regtest.S: the echo hcall's register scribbler
    "LINK_TICKS",               // the TPM link counters
    "LINK_CALLS",
    "selftest", // the self-test runner, its tests and hcall-probe (pefbox::selftest::...)
];

/// Strings only the test hooks print or parse.
const HOOK_STRINGS: &[&str] = &["@@host", "hcall-probe", "hcall-echo", "hcall-regs"];

/// Test doubles that no image has (host tests only, feature `test-util`).
const HOST_ONLY_SYMBOLS: &[&str] = &["FakeGuestMemory"];

/// What both images must have: the product (hcall entry and dispatcher, the verdict lines).
const PRODUCT_SYMBOLS: &[&str] = &["pefbox_hcall_entry", "pefbox_hcall_dispatch", "rust_entry"];
/// (The console protocol's pieces, as `pefbox::report` declares them once.)
const PRODUCT_STRINGS: &[&str] = &[
    pefbox::report::SVM,
    pefbox::report::SVM_ACCEPTED,
    pefbox::report::SVM_REJECTED,
    pefbox::report::POWER_OFF,
];

#[test]
fn the_flash_image_has_no_test_hooks_and_the_selftest_image_has_them_all() {
    let (flash, selftest) = (flash_image(), image());
    assert_ne!(flash, selftest, "the two kinds build into different paths");
    assert_eq!(flash, launcher::image_path(ImageKind::Flash));
    assert_eq!(selftest, launcher::image_path(ImageKind::Selftest));
    let f = contents(&flash);
    let s = contents(&selftest);
    let mut found_in_flash = Vec::new();
    for sym in HOOK_SYMBOLS {
        assert!(s.has_symbol(sym), "control: the self-test image has {sym}");
        if f.has_symbol(sym) {
            found_in_flash.push(format!("symbol {sym}"));
        }
    }
    for text in HOOK_STRINGS {
        assert!(
            s.has_bytes(text),
            "control: the self-test image has {text:?}"
        );
        if f.has_bytes(text) {
            found_in_flash.push(format!("string {text:?}"));
        }
    }
    assert!(
        found_in_flash.is_empty(),
        "the image to flash carries test hooks: {found_in_flash:?}"
    );
    for sym in HOST_ONLY_SYMBOLS {
        assert!(
            !f.has_symbol(sym) && !s.has_symbol(sym),
            "{sym} in an image"
        );
    }
    for (name, c) in [("flash", &f), ("self-test", &s)] {
        for sym in PRODUCT_SYMBOLS {
            assert!(c.has_symbol(sym), "{name} image lacks {sym}");
        }
        for text in PRODUCT_STRINGS {
            assert!(c.has_bytes(text), "{name} image lacks {text:?}");
        }
    }
    let (fs, ss) = (
        launcher::image_size(&flash).unwrap(),
        launcher::image_size(&selftest).unwrap(),
    );
    eprintln!(
        "flash image: {} bytes loaded, {} bytes ELF; self-test image: {} loaded, {} ELF",
        fs.loaded, fs.file, ss.loaded, ss.file
    );
    assert!(fs.loaded < ss.loaded, "{fs:?} vs {ss:?}");
}

#[test]
fn the_flash_image_provisions_and_accepts_the_demo_svm() {
    let work = Scratch::new("image", "flash-boot");
    let state = work.0.join("tpm");
    let mut base = RunConfig::new("flash", flash_image());
    base.timeout = Duration::from_secs(60);
    base.log_dir = Some(work.0.clone());
    // The provisioning boot (fresh state), judged with the default expectation.
    let (key, provisioning) = svm::ensure_wrapping_key(&base, &state).expect("provisioning");
    let prov = provisioning.expect("a fresh state needs a provisioning boot");
    assert!(
        prov.passed(),
        "{:?}\n{}",
        prov.verdict.problems,
        prov.console
    );
    let other = svm::foreign_key_pem().expect("a foreign key");
    let files = Scenario::Accepted
        .prepare(&work.0, &key.pem, &other, &mut OsRng)
        .expect("demo SVM files");
    let mut cfg = base.derive("flash-accepted");
    cfg.tpm_state = Some(state.clone());
    // No self-tests: the count line counts the flow's two checks.
    cfg.expect = Expect {
        min_passed: 2,
        svm: SvmExpect::Accepted,
    };
    files.apply(&mut cfg);
    let r = launcher::run(&cfg).expect("launch");
    let dump = format!("{:?}\n--- console ---\n{}", r.verdict.problems, r.console);
    assert!(r.passed(), "{dump}");
    assert_eq!(r.verdict.summary.counts, Some((2, 0)), "{dump}");
    assert_eq!(
        r.verdict.summary.passed_names,
        ["provisioning", "uv-session"],
        "{dump}"
    );
    assert!(r.console.contains("pefbox: power-off (pass)"), "{dump}");
    for hook in ["PASS hcall-echo", "@@host", "hcall-probe"] {
        assert!(!r.console.contains(hook), "{hook} on the console\n{dump}");
    }
}

#[test]
fn pef_build_prints_the_size_and_last_the_image_path() {
    let o = Command::new(env!("CARGO_BIN_EXE_pef"))
        .args(["build", "--release", "-q"])
        .stdin(Stdio::null())
        .output()
        .expect("run pef build");
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{out}\n{err}");
    let last = out.lines().last().unwrap_or_default();
    let path = PathBuf::from(
        last.strip_prefix("image: ")
            .unwrap_or_else(|| panic!("last line {last:?}\n{out}")),
    );
    assert!(path.is_file(), "{}", path.display());
    assert_eq!(path, launcher::image_path(ImageKind::Flash));
    let size = out
        .lines()
        .find(|l| l.starts_with("size: "))
        .unwrap_or_else(|| panic!("no size line:\n{out}"));
    let loaded = launcher::image_size(&path).unwrap().loaded;
    assert!(
        size.contains(&format!("{loaded} bytes loaded (PT_LOAD)")),
        "{size}"
    );
    assert!(size.contains(" bytes stripped"), "{size}");
    eprintln!("{size}");
}
