//! Process hygiene: children killed and reaped on every path, the SIGINT/SIGTERM flag, the
//! parent-death signal, and temporary files removed on drop.

use std::fs;
use std::io;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use super::{io_err, LaunchError};

/// A temporary file removed on drop.
pub(super) struct TempFile(pub(super) PathBuf);

impl TempFile {
    pub(super) fn new(stem: &str, data: &[u8]) -> Result<TempFile, LaunchError> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir =
            crate::swtpm::scratch_dir("files").map_err(io_err("creating a scratch directory"))?;
        let p = dir.join(format!(
            "{stem}-{}",
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::write(&p, data).map_err(io_err(format!("writing {}", p.display())))?;
        Ok(TempFile(p))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

static INTERRUPTED: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();

fn interrupted_flag() -> &'static Arc<AtomicBool> {
    INTERRUPTED.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Makes SIGINT and SIGTERM set a flag that running boots poll: they then kill QEMU, stop swtpm
/// and return an interrupted verdict, so every child is reaped. Call once, from the CLI.
/// (signal-hook's flag handler: an atomic store, async-signal-safe.)
pub fn install_interrupt_handler() {
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(interrupted_flag())) {
            eprintln!("pef: cannot handle signal {sig}: {e}");
        }
    }
}

/// True once SIGINT or SIGTERM arrived (after [`install_interrupt_handler`]).
pub fn interrupted() -> bool {
    interrupted_flag().load(Ordering::SeqCst)
}

/// A child process that is killed and reaped when dropped.
pub(super) struct ChildGuard {
    pub(super) child: Child,
    pub(super) reaped: Option<ExitStatus>,
}

impl ChildGuard {
    pub(super) fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.reaped.is_none() {
            self.reaped = self.child.try_wait()?;
        }
        Ok(self.reaped)
    }

    pub(super) fn kill_and_reap(&mut self) -> io::Result<ExitStatus> {
        if let Some(s) = self.reaped {
            return Ok(s);
        }
        // kill() fails only if the process already exited; wait() reaps it either way.
        let _ = self.child.kill();
        let s = self.child.wait()?;
        self.reaped = Some(s);
        Ok(s)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Err(e) = self.kill_and_reap() {
            eprintln!("pef: could not reap QEMU: {e}");
        }
    }
}

/// Makes the kernel send SIGKILL to the child (QEMU, swtpm) if the launcher dies without
/// cleaning up (e.g. SIGKILLed). Note: the signal follows the death of the spawning *thread*.
pub fn set_parent_death_signal(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2), which
    // is async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
