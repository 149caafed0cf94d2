//! A real swtpm (TPM 2.0 simulator) for tests and the launcher, and a TCP
//! [`Transport`] to it.
//!
//! [`Swtpm`] starts
//! `swtpm socket --tpm2 --server type=tcp,port=P,bindaddr=127.0.0.1 --ctrl type=tcp,port=P2,bindaddr=127.0.0.1 --tpmstate dir=D --flags startup-clear`
//! on free loopback ports, waits (bounded) until it accepts connections, and stops
//! and reaps it on [`Drop`]. [`SwtpmConn`] frames each command/response by the
//! TPM header (swtpm serves one connection at a time and does not reassemble
//! commands, so one command goes in one `write_all`).
//!
//! Starting checks for swtpm first ([`crate::tools::ensure`], which installs it where it can).
//! swtpm's output is kept, and a failed start says why in words a user can act on (state
//! directory not writable, not a directory, corrupt, or locked by another swtpm); an swtpm
//! left holding the state's lock by a launcher that died is killed (once, said on stderr)
//! and the start retried. swtpm gets `PR_SET_PDEATHSIG(SIGKILL)`, so a launcher killed
//! outright leaves none running. Temporary state directories live under one directory per
//! launcher process (`<tmp>/pefbox-swtpm-<pid>/`); those of dead launchers are swept at the
//! first start.
use pefbox::tpm::transport::{Transport, TransportError, MAX_TPM_MESSAGE};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Once, PoisonError};
use std::thread::sleep;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long [`Swtpm::start`] waits for swtpm to accept connections.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Default read/write timeout of a [`SwtpmConn`].
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How many times a start is retried with new ports if swtpm exits (port taken).
const START_ATTEMPTS: u32 = 5;

/// The file in a state directory naming the launcher and the swtpm that use it.
pub const OWNER_FILE: &str = "pef-owner";
/// The prefix of the per-launcher directories holding temporary states.
const TEMP_PREFIX: &str = "pefbox-swtpm-";
/// At most this much of swtpm's output is kept (the end of it).
const OUTPUT_KEEP: usize = 64 * 1024;

/// A running swtpm child process.
#[derive(Debug)]
pub struct Swtpm {
    child: Option<Child>,
    output: Option<Drained>,
    state_dir: PathBuf,
    remove_dir: bool,
    port: u16,
    ctrl_port: u16,
}

fn free_port() -> io::Result<u16> {
    let l = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}

/// This process's directory of temporary states.
fn launcher_temp_dir() -> PathBuf {
    std::env::temp_dir().join(format!("{TEMP_PREFIX}{}", std::process::id()))
}

/// True while a process with this pid exists (possibly as a zombie).
fn pid_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Removes the `pefbox-swtpm-<pid>` directories in `base` whose process is gone (states left
/// by launchers that were killed); returns what it removed.
pub fn sweep_dead_launcher_dirs(base: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(base) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(TEMP_PREFIX))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !pid_alive(pid) && std::fs::remove_dir_all(e.path()).is_ok()
        {
            removed.push(e.path());
        }
    }
    removed
}

/// Sweeps, once per process, the scratch directories of launchers that died.
fn sweep_once() {
    static SWEEP: Once = Once::new();
    SWEEP.call_once(|| {
        sweep_dead_launcher_dirs(&std::env::temp_dir());
    });
}

/// A scratch directory `name` inside this launcher's own temporary directory
/// (`<tmp>/pefbox-swtpm-<pid>/<name>`, created): whatever a SIGKILL leaves there is swept by
/// the next launcher. The caller removes it when done.
pub fn scratch_dir(name: &str) -> io::Result<PathBuf> {
    sweep_once();
    let dir = launcher_temp_dir().join(name);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn temp_state_dir() -> io::Result<PathBuf> {
    sweep_once();
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = launcher_temp_dir().join(format!(
        "{}-{nanos}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    // The launcher directory may be removed by a Swtpm dropped meanwhile: try again.
    let mut last = None;
    for _ in 0..3 {
        match std::fs::create_dir_all(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("creating a temporary swtpm state")))
}

/// What a failed swtpm start means, from its output (measured with swtpm 0.7.1).
#[derive(Debug, Clone, PartialEq, Eq)]
enum StartFailure {
    /// Another swtpm holds the state directory's lock.
    Locked,
    /// The state directory cannot be written (read-only, immutable, no permission).
    NotWritable(String),
    /// A path component is not a directory.
    NotADirectory,
    /// libtpms refused the saved state.
    Corrupt(String),
    /// Anything else (e.g. a port that was taken meanwhile): worth another try on new ports.
    Other,
}

fn classify(output: &str) -> StartFailure {
    let line_with = |needle: &str| {
        output
            .lines()
            .find(|l| l.contains(needle))
            .map(|l| l.trim().to_string())
    };
    if output.contains("Could not lock access to lockfile") {
        return StartFailure::Locked;
    }
    if output.contains("Could not open lockfile: Not a directory") {
        return StartFailure::NotADirectory;
    }
    for e in [
        "Read-only file system",
        "Permission denied",
        "Operation not permitted",
    ] {
        if let Some(l) = line_with(e) {
            return StartFailure::NotWritable(l);
        }
    }
    for e in ["libtpms/tpm2:", "failure mode", "Invalid magic"] {
        if let Some(l) = line_with(e) {
            return StartFailure::Corrupt(l);
        }
    }
    StartFailure::Other
}

/// The error a user sees for a failed start on `dir`.
fn start_error(dir: &Path, failure: &StartFailure, status: &str, output: &str) -> io::Error {
    let dir = dir.display();
    let (kind, msg) = match failure {
        StartFailure::Locked => (
            io::ErrorKind::ResourceBusy,
            format!(
                "swtpm state {dir} is locked by another running swtpm: stop the other `pef run` (or swtpm) using it, or choose another state directory"
            ),
        ),
        StartFailure::NotWritable(line) => (
            io::ErrorKind::PermissionDenied,
            format!(
                "swtpm cannot write its state directory {dir} ({line}): make it writable, or choose another state directory"
            ),
        ),
        StartFailure::NotADirectory => (
            io::ErrorKind::NotADirectory,
            format!(
                "swtpm state {dir} is not a directory: remove the file in the way, or choose another state directory"
            ),
        ),
        StartFailure::Corrupt(line) => (
            io::ErrorKind::InvalidData,
            format!(
                "swtpm state in {dir} is corrupt ({line}): run with --fresh-tpm to wipe it and start with a new TPM (the keys it held are lost)"
            ),
        ),
        StartFailure::Other => (
            io::ErrorKind::Other,
            format!(
                "swtpm exited during start ({status}) on state {dir}: {}",
                if output.trim().is_empty() {
                    "it printed nothing"
                } else {
                    output.trim()
                }
            ),
        ),
    };
    io::Error::new(kind, msg)
}

/// The swtpm that `dir`'s owner file names, if it is a live swtpm on `dir` whose launcher
/// is gone (a leftover that holds the lock).
fn stale_swtpm(dir: &Path) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string(dir.join(OWNER_FILE)).ok()?;
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k)?.trim().parse::<u32>().ok())
    };
    let (launcher, swtpm) = (field("launcher ")?, field("swtpm ")?);
    if pid_alive(launcher) {
        return None;
    }
    let proc_dir = Path::new("/proc").join(swtpm.to_string());
    let comm = std::fs::read_to_string(proc_dir.join("comm")).ok()?;
    let cmdline = std::fs::read(proc_dir.join("cmdline")).ok()?;
    let want = format!("dir={}", dir.display());
    let names_dir = cmdline.split(|b| *b == 0).any(|a| a == want.as_bytes());
    (comm.trim() == "swtpm" && names_dir).then_some((launcher, swtpm))
}

/// SIGKILLs `pid` and waits (up to 2 s) until it is gone or a zombie.
fn kill_and_wait(pid: u32) {
    let Ok(p) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) with a pid just verified to be an swtpm process on our state; it
    // touches no memory of ours.
    unsafe {
        libc::kill(p, libc::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    let status = Path::new("/proc").join(pid.to_string()).join("stat");
    while Instant::now() < deadline {
        match std::fs::read_to_string(&status) {
            // The state is the field after "(comm)".
            Ok(s)
                if s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z')) =>
            {
                return
            }
            Ok(_) => sleep(Duration::from_millis(10)),
            Err(_) => return,
        }
    }
}

impl Swtpm {
    /// Starts swtpm with a fresh temporary state directory (removed on drop).
    pub fn start() -> io::Result<Swtpm> {
        ensure_swtpm()?;
        let dir = temp_state_dir()?;
        let mut t = Swtpm {
            child: None,
            output: None,
            state_dir: dir,
            remove_dir: true,
            port: 0,
            ctrl_port: 0,
        };
        t.spawn_on_free_ports()?;
        Ok(t)
    }

    /// Starts swtpm keeping its state in `dir` (created if absent, kept on drop).
    pub fn start_in(dir: &Path) -> io::Result<Swtpm> {
        ensure_swtpm()?;
        if dir.exists() && !dir.is_dir() {
            return Err(start_error(dir, &StartFailure::NotADirectory, "", ""));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", dir.display())))?;
        let mut t = Swtpm {
            child: None,
            output: None,
            state_dir: dir.to_path_buf(),
            remove_dir: false,
            port: 0,
            ctrl_port: 0,
        };
        t.spawn_on_free_ports()?;
        Ok(t)
    }

    /// The TPM command port (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The control-channel port (127.0.0.1).
    pub fn ctrl_port(&self) -> u16 {
        self.ctrl_port
    }

    /// The TPM command address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port))
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// What swtpm printed so far (stdout and stderr, the last 64 KiB).
    pub fn output(&self) -> String {
        self.output
            .as_ref()
            .map(|(b, _)| {
                String::from_utf8_lossy(&b.lock().unwrap_or_else(PoisonError::into_inner))
                    .into_owned()
            })
            .unwrap_or_default()
    }

    /// True while the child process runs.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Opens a connection for TPM commands (only one is served at a time).
    pub fn connect(&self) -> io::Result<SwtpmConn> {
        SwtpmConn::connect(self.addr(), IO_TIMEOUT)
    }

    fn spawn_on_free_ports(&mut self) -> io::Result<()> {
        let mut last = io::Error::other("swtpm did not start");
        let mut cleared_stale = false;
        for _ in 0..START_ATTEMPTS {
            let port = free_port()?;
            let ctrl = free_port()?;
            if port == ctrl {
                continue;
            }
            self.port = port;
            self.ctrl_port = ctrl;
            match self.spawn() {
                Ok(()) => {
                    self.write_owner();
                    return Ok(());
                }
                Err((StartFailure::Locked, e)) if !cleared_stale => {
                    let Some((launcher, pid)) = stale_swtpm(&self.state_dir) else {
                        return Err(e);
                    };
                    // Written to the descriptor: shown under `cargo test` too.
                    let _ = writeln!(
                        io::stderr(),
                        "pef: killing swtpm (pid {pid}) left holding {} by launcher pid {launcher}, which is gone; starting a new one",
                        self.state_dir.display()
                    );
                    kill_and_wait(pid);
                    cleared_stale = true;
                    last = e;
                }
                Err((StartFailure::Other, e)) => last = e,
                Err((_, e)) => return Err(e),
            }
        }
        Err(last)
    }

    /// Records this process and the swtpm in the state's [`OWNER_FILE`] (best effort).
    fn write_owner(&self) {
        if let Some(c) = &self.child {
            let _ = std::fs::write(
                self.state_dir.join(OWNER_FILE),
                format!("launcher {}\nswtpm {}\n", std::process::id(), c.id()),
            );
        }
    }

    /// Starts the child on the current ports and waits until it accepts.
    fn spawn(&mut self) -> Result<(), (StartFailure, io::Error)> {
        let fail = |e: io::Error| (StartFailure::Other, e);
        // stdout and stderr into one pipe, drained by a thread (swtpm must never block on it).
        let (reader, writer) = io::pipe().map_err(fail)?;
        let writer2 = writer.try_clone().map_err(fail)?;
        let mut cmd = Command::new("swtpm");
        cmd.arg("socket")
            .arg("--tpm2")
            .arg("--server")
            .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", self.port))
            .arg("--ctrl")
            .arg(format!(
                "type=tcp,port={},bindaddr=127.0.0.1",
                self.ctrl_port
            ))
            .arg("--tpmstate")
            .arg(format!("dir={}", self.state_dir.display()))
            .arg("--flags")
            .arg("startup-clear")
            .stdin(Stdio::null())
            .stdout(writer2)
            .stderr(writer);
        crate::launcher::set_parent_death_signal(&mut cmd);
        let spawned = cmd.spawn();
        // Our copies of the pipe's write end go with `cmd`: EOF comes when swtpm exits.
        drop(cmd);
        let child = spawned.map_err(|e| {
            fail(io::Error::new(
                e.kind(),
                format!("starting swtpm: {e} (is it installed? see tools::ensure)"),
            ))
        })?;
        self.child = Some(child);
        self.output = Some(drain(reader).map_err(fail)?);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                let text = self.finish_output();
                let failure = classify(&text);
                let e = start_error(&self.state_dir, &failure, &status.to_string(), &text);
                return Err((failure, e));
            }
            // Probe the control port: it does not take the one TPM connection.
            let ctrl = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.ctrl_port));
            // swtpm listens before libtpms has read the state (measured: with a corrupt state
            // both ports accepted and swtpm then exited), so a connect is not enough: wait for
            // an answer to CMD_GET_CAPABILITY (1), which comes only from the main loop.
            let ok = ctrl_answers(ctrl)
                && TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200)).is_ok();
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                let text = self.finish_output();
                return Err((
                    StartFailure::Other,
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "swtpm did not accept connections within {START_TIMEOUT:?}: {}",
                            text.trim()
                        ),
                    ),
                ));
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// After the child is gone: waits for the output pipe's EOF and returns all of it.
    fn finish_output(&mut self) -> String {
        match self.output.take() {
            Some((buf, thread)) => {
                let _ = thread.join();
                String::from_utf8_lossy(&buf.lock().unwrap_or_else(PoisonError::into_inner))
                    .into_owned()
            }
            None => String::new(),
        }
    }

    fn reap(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        if let Some((_, thread)) = self.output.take() {
            let _ = thread.join();
        }
    }

    fn kill(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
        }
        self.reap();
    }

    /// A power cut: SIGKILL, no shutdown over the control channel (swtpm saves nothing
    /// beyond what it already wrote for each NV change), then reaped. [`Swtpm::restart`]
    /// powers it on again with the same state directory and ports.
    pub fn power_cut(&mut self) {
        self.kill();
    }

    /// Stops swtpm: asks it to shut down over the control channel (so it saves
    /// its state), waits up to 2 s, then kills; always reaps.
    pub fn stop(&mut self) {
        if self.child.is_none() {
            return;
        }
        let ctrl = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.ctrl_port));
        if let Ok(mut s) = TcpStream::connect_timeout(&ctrl, Duration::from_millis(500)) {
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            let _ = s.set_write_timeout(Some(Duration::from_millis(500)));
            // CMD_SHUTDOWN = 3; the answer is a 4-byte result.
            if s.write_all(&3u32.to_be_bytes()).is_ok() {
                let mut r = [0u8; 4];
                let _ = s.read_exact(&mut r);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.is_running() && Instant::now() < deadline {
            sleep(Duration::from_millis(10));
        }
        self.kill();
    }

    /// Stops and starts swtpm again with the same state directory and ports
    /// (a TPM "power cycle": transient objects and sessions are gone, persistent
    /// objects remain). Retries for up to [`START_TIMEOUT`] while the ports are
    /// still held by the old process.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn() {
                Ok(()) => {
                    self.write_owner();
                    return Ok(());
                }
                Err((_, e)) if Instant::now() > deadline => return Err(e),
                Err(_) => sleep(Duration::from_millis(50)),
            }
        }
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        self.stop();
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.state_dir);
            // Gone once empty (the last temporary state of this process).
            let _ = std::fs::remove_dir(launcher_temp_dir());
        } else {
            let _ = std::fs::remove_file(self.state_dir.join(OWNER_FILE));
        }
    }
}

/// True if swtpm's control channel at `ctrl` answers CMD_GET_CAPABILITY (result + caps).
fn ctrl_answers(ctrl: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&ctrl, Duration::from_millis(200)) else {
        return false;
    };
    let t = Some(Duration::from_millis(500));
    let mut answer = [0u8; 8];
    s.set_read_timeout(t).is_ok()
        && s.set_write_timeout(t).is_ok()
        && s.write_all(&1u32.to_be_bytes()).is_ok()
        && s.read_exact(&mut answer).is_ok()
        && answer.get(..4) == Some(&[0, 0, 0, 0][..])
}

/// [`crate::tools::ensure`] for swtpm, as an `io::Error` carrying its text.
fn ensure_swtpm() -> io::Result<()> {
    crate::tools::ensure(&[crate::tools::Tool::Swtpm])
        .map_err(|e| io::Error::new(io::ErrorKind::NotFound, e.to_string()))
}

/// Reads `from` to its end on a thread, keeping the last [`OUTPUT_KEEP`] bytes.
/// A child's output as kept so far, and the thread reading it.
type Drained = (Arc<Mutex<Vec<u8>>>, JoinHandle<()>);

fn drain(mut from: io::PipeReader) -> io::Result<Drained> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&buf);
    let thread = std::thread::Builder::new()
        .name("swtpm-output".into())
        .spawn(move || {
            let mut chunk = [0u8; 4096];
            loop {
                match from.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        let mut b = keep.lock().unwrap_or_else(PoisonError::into_inner);
                        b.extend_from_slice(chunk.get(..n).unwrap_or_default());
                        let excess = b.len().saturating_sub(OUTPUT_KEEP);
                        b.drain(..excess);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        })?;
    Ok((buf, thread))
}

/// One TCP connection to swtpm's command port, as a [`Transport`].
#[derive(Debug)]
pub struct SwtpmConn {
    stream: TcpStream,
    broken: bool,
}

fn io_to_transport(e: io::Error) -> TransportError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => TransportError::Timeout,
        _ => TransportError::Io,
    }
}

impl SwtpmConn {
    /// Connects with `timeout` for the connection and for every later read/write.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<SwtpmConn> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(SwtpmConn {
            stream,
            broken: false,
        })
    }

    fn round_trip(&mut self, command: &[u8], response: &mut [u8]) -> Result<usize, TransportError> {
        if command.len() > MAX_TPM_MESSAGE {
            return Err(TransportError::CommandTooLarge);
        }
        self.stream.write_all(command).map_err(io_to_transport)?;
        let mut header = [0u8; 10];
        self.stream
            .read_exact(&mut header)
            .map_err(io_to_transport)?;
        let size = pefbox::tpm::wire::header(&header).map_or(0, |h| h.size as usize);
        if size < header.len() {
            return Err(TransportError::Framing);
        }
        if size > MAX_TPM_MESSAGE || size > response.len() {
            return Err(TransportError::ResponseTooLarge);
        }
        let (head, rest) = response.split_at_mut(header.len());
        head.copy_from_slice(&header);
        let body = rest
            .get_mut(..size - header.len())
            .ok_or(TransportError::ResponseTooLarge)?;
        self.stream.read_exact(body).map_err(io_to_transport)?;
        Ok(size)
    }
}

impl Transport for SwtpmConn {
    /// Sends the command in one write, reads the 10-byte header and then the rest
    /// by the header's size. After any failure the connection is unusable
    /// (the stream may be desynchronised) and every later call returns `Io`.
    fn transact(&mut self, command: &[u8], response: &mut [u8]) -> Result<usize, TransportError> {
        if self.broken {
            return Err(TransportError::Io);
        }
        let r = self.round_trip(command, response);
        if r.is_err() && r != Err(TransportError::CommandTooLarge) {
            self.broken = true;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pef-swtpm-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let _ = std::fs::remove_file(&d);
        d
    }

    #[test]
    fn swtpm_output_is_classified_as_measured_with_swtpm_0_7_1() {
        let locked = "swtpm: SWTPM_NVRAM_Lock_Dir: Could not lock access to lockfile: Resource \
                      temporarily unavailable\nswtpm: Error: Could not initialize libtpms.\n";
        assert_eq!(classify(locked), StartFailure::Locked);
        let file = "swtpm: SWTPM_NVRAM_Lock_Dir: Could not open lockfile: Not a directory\n";
        assert_eq!(classify(file), StartFailure::NotADirectory);
        for e in [
            "Read-only file system",
            "Operation not permitted",
            "Permission denied",
        ] {
            let ro = format!("swtpm: SWTPM_NVRAM_Lock_Dir: Could not open lockfile: {e}\n");
            assert_eq!(
                classify(&ro),
                StartFailure::NotWritable(ro.trim().to_string())
            );
        }
        let corrupt = "libtpms/tpm2: NV_HEADER_UnmarshalVerbose: Invalid magic. Expected \
                       0xab364723, got 0xf5adb7b1\nlibtpms/tpm2: Entering failure mode; code: \
                       8, location: NvPowerOn line 126\nswtpm: Error: Could not initialize \
                       libtpms.\n";
        assert!(
            matches!(classify(corrupt), StartFailure::Corrupt(l) if l.contains("Invalid magic"))
        );
        assert_eq!(
            classify("swtpm: Could not open TCP socket: Address in use\n"),
            StartFailure::Other
        );
    }

    #[test]
    fn a_state_path_that_is_a_file_is_refused_by_name() {
        let f = scratch("file");
        std::fs::write(&f, b"x").unwrap();
        let e = Swtpm::start_in(&f).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotADirectory);
        assert_eq!(
            e.to_string(),
            format!(
                "swtpm state {} is not a directory: remove the file in the way, or choose \
                 another state directory",
                f.display()
            )
        );
        // A file as a parent: swtpm itself says "Not a directory".
        let e = Swtpm::start_in(&f.join("state")).unwrap_err();
        assert!(e.to_string().contains("creating "), "{e}");
        let _ = std::fs::remove_file(&f);
    }

    #[test]
    fn an_unwritable_state_directory_is_reported_with_swtpm_s_words() {
        // Root bypasses file permissions, not sysfs: swtpm cannot create its lock file in
        // /sys/kernel for anyone (measured: EACCES as root).
        let e = Swtpm::start_in(Path::new("/sys/kernel")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(
            e.to_string(),
            "swtpm cannot write its state directory /sys/kernel (swtpm: SWTPM_NVRAM_Lock_Dir: \
             Could not open lockfile: Permission denied): make it writable, or choose another \
             state directory"
        );
    }

    #[test]
    fn a_corrupt_state_says_to_use_fresh_tpm() {
        let d = scratch("corrupt");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("tpm2-00.permall"), [0xf5u8; 3000]).unwrap();
        let e = Swtpm::start_in(&d).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!(
                "swtpm state in {} is corrupt (libtpms/tpm2: ",
                d.display()
            )),
            "{msg}"
        );
        assert!(
            msg.ends_with(
                "): run with --fresh-tpm to wipe it and start with a new TPM (the keys \
                           it held are lost)"
            ),
            "{msg}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_state_in_use_is_locked_and_a_dead_launcher_s_swtpm_is_cleared() {
        let d = scratch("lock");
        let first = Swtpm::start_in(&d).unwrap();
        // This launcher (alive) owns it: refused, nothing killed.
        let e = Swtpm::start_in(&d).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ResourceBusy);
        assert_eq!(
            e.to_string(),
            format!(
                "swtpm state {} is locked by another running swtpm: stop the other `pef run` \
                 (or swtpm) using it, or choose another state directory",
                d.display()
            )
        );
        drop(first);

        // An swtpm whose launcher is gone (a reaped child's pid stands for the dead launcher).
        let mut orphan = Command::new("swtpm")
            .args([
                "socket",
                "--tpm2",
                "--server",
                "type=tcp,port=0,bindaddr=127.0.0.1",
            ])
            .arg("--tpmstate")
            .arg(format!("dir={}", d.display()))
            .args(["--flags", "startup-clear"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut gone = Command::new("true").spawn().unwrap();
        let dead = gone.id();
        gone.wait().unwrap();
        let deadline = Instant::now() + START_TIMEOUT;
        while !d.join(".lock").exists() && Instant::now() < deadline {
            sleep(Duration::from_millis(10));
        }
        sleep(Duration::from_millis(200));
        std::fs::write(
            d.join(OWNER_FILE),
            format!("launcher {dead}\nswtpm {}\n", orphan.id()),
        )
        .unwrap();
        let second = Swtpm::start_in(&d).expect("the stale swtpm is cleared and the start retried");
        assert!(
            orphan.try_wait().unwrap().is_some(),
            "the orphan swtpm was killed"
        );
        let owner = std::fs::read_to_string(d.join(OWNER_FILE)).unwrap();
        assert!(
            owner.starts_with(&format!("launcher {}\n", std::process::id())),
            "{owner}"
        );
        drop(second);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn sweep_removes_only_dead_launchers_temporary_states() {
        let base = scratch("sweep");
        let mut gone = Command::new("true").spawn().unwrap();
        let dead = gone.id();
        gone.wait().unwrap();
        let dead_dir = base.join(format!("{TEMP_PREFIX}{dead}"));
        let mine = base.join(format!("{TEMP_PREFIX}{}", std::process::id()));
        let live = base.join(format!("{TEMP_PREFIX}1"));
        let other = base.join(format!("{TEMP_PREFIX}notapid"));
        for d in [&dead_dir, &mine, &live, &other] {
            std::fs::create_dir_all(d.join("0-1")).unwrap();
            std::fs::write(d.join("0-1/tpm2-00.permall"), b"x").unwrap();
        }
        assert_eq!(sweep_dead_launcher_dirs(&base), vec![dead_dir.clone()]);
        assert!(!dead_dir.exists());
        assert!(mine.exists() && live.exists() && other.exists());
        assert_eq!(sweep_dead_launcher_dirs(&base), Vec::<PathBuf>::new());
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn temporary_states_live_in_this_launcher_s_directory_and_go_away() {
        let t = Swtpm::start().unwrap();
        let dir = t.state_dir().to_path_buf();
        assert_eq!(dir.parent(), Some(launcher_temp_dir().as_path()));
        let owner = std::fs::read_to_string(dir.join(OWNER_FILE)).unwrap();
        assert!(owner.starts_with(&format!("launcher {}\nswtpm ", std::process::id())));
        drop(t);
        assert!(!dir.exists());
    }
}
