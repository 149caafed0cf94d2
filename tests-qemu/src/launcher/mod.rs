//! The QEMU launcher: builds the image, starts swtpm and the framing relay, boots
//! `qemu-system-ppc64 -M powernv9`, streams the console live while keeping a copy, answers
//! `@@host` directives, enforces the timeout and judges the boot with [`crate::verdict::judge`].
//!
//! Every child (QEMU, swtpm) is killed and reaped on every path: normal exit, timeout, error
//! returns and panics (Drop guards), Ctrl-C/SIGTERM (the flag set by
//! [`install_interrupt_handler`], polled by the run loop), and the death of the launcher itself
//! (QEMU gets `PR_SET_PDEATHSIG`).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long to keep QEMU running after skiboot printed a crash (to collect its register dump).
pub const CRASH_GRACE: Duration = Duration::from_millis(500);

/// The Rust target the image is built for.
pub const IMAGE_TARGET: &str = "powerpc64-unknown-linux-musl";

/// Why a launch could not be carried out (as opposed to a boot that ran and failed).
#[derive(Debug)]
pub enum LaunchError {
    /// A required program is missing; the text says how to install it.
    MissingTool(String),
    /// `cargo build` of the image failed.
    Build(String),
    /// swtpm could not be started or restarted.
    Swtpm(String),
    /// An I/O operation failed; the text says which.
    Io(String, io::Error),
    /// A boot needed to go on (provisioning) failed, or its inputs are unusable.
    Boot(String),
}

impl fmt::Display for LaunchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LaunchError::MissingTool(s) => write!(f, "{s}"),
            LaunchError::Build(s) => write!(f, "image build failed: {s}"),
            LaunchError::Swtpm(s) => write!(f, "swtpm: {s}"),
            LaunchError::Io(what, e) => write!(f, "{what}: {e}"),
            LaunchError::Boot(s) => write!(f, "{s}"),
        }
    }
}

impl std::error::Error for LaunchError {}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> LaunchError {
    let what = what.into();
    move |e| LaunchError::Io(what, e)
}

/// The workspace root (the directory holding the top-level Cargo.toml).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."))
}

/// Where `run` keeps the swtpm state between boots.
pub fn default_tpm_state() -> PathBuf {
    workspace_root().join("target").join("swtpm-state")
}

mod bench;
mod image;
mod process;
mod qemu;
mod run;
mod svm_load;

pub use bench::{median, per_command, summary_table, tpm_phases, CommandTimes, PhaseTimes};
pub use image::{
    build_image, build_image_opts, elf_ppc64_be, image_path, image_size, stripped_size, ImageKind,
    ImageSize,
};
pub use process::{install_interrupt_handler, interrupted, set_parent_death_signal};
use process::{ChildGuard, TempFile};
pub use qemu::{
    check_qemu, command_line, ensure_tools, gdb_command, qemu_args, qemu_id, shell_quote, QemuId,
    BANNER, MACHINES,
};
pub use run::{orderly_shutdown, run, run_keeping_tpm, Echo, RunConfig, RunReport};
use svm_load::prepare_svm_load;
pub use svm_load::{image_bootargs, SvmLoad};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_root_holds_the_image_crate() {
        assert!(workspace_root().join("Cargo.toml").is_file());
        assert!(workspace_root().join("tests-qemu").is_dir());
    }
}
