//! Support shared by the integration tests (each test binary uses part of it).
#![allow(dead_code)]

pub mod cli;
pub mod flows;
pub mod hv;
pub mod key;
pub mod tpm;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use xtask::launcher::{self, ImageKind};

/// The image of `kind`, built into `cell` once per test binary after the tools are ensured
/// (`build` names it if the build fails).
fn built_once(cell: &OnceLock<PathBuf>, kind: ImageKind, build: &str) -> PathBuf {
    cell.get_or_init(|| {
        launcher::ensure_tools().expect("qemu-system-ppc64 and swtpm");
        launcher::build_image(kind).expect(build)
    })
    .clone()
}

/// The self-test image (`target/image-selftest`), built once per test binary after the tools
/// are ensured.
pub fn image() -> PathBuf {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    built_once(&IMAGE, ImageKind::Selftest, "self-test image build")
}

/// The image to flash (`target/image`, no `selftest` feature), built once per test binary
/// after the tools are ensured.
pub fn flash_image() -> PathBuf {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    built_once(&IMAGE, ImageKind::Flash, "flash image build")
}

/// A scratch directory (`<tmp>/pef-<tag>-<name>-<pid>`), emptied at creation and removed on
/// drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// A fresh directory for one test.
    pub fn new(tag: &str, name: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("pef-{tag}-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }

    /// Writes `data` to `name` inside the directory and returns its path.
    pub fn file(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, data).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copies the regular files of `from` into `to` (created if missing), e.g. a provisioned
/// swtpm state template into a test's own state directory.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}
