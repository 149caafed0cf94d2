//! A real swtpm (TPM 2.0 simulator) for tests and the launcher, and a TCP
//! [`Transport`] to it.
//!
//! [`Swtpm`] starts
//! `swtpm socket --tpm2 --server type=tcp,port=P,bindaddr=127.0.0.1 --ctrl type=tcp,port=P2,bindaddr=127.0.0.1 --tpmstate dir=D --flags startup-clear`
//! on free loopback ports, waits (bounded) until it accepts connections, and stops
//! and reaps it on [`Drop`]. [`SwtpmConn`] frames each command/response by the
//! TPM header (swtpm serves one connection at a time and does not reassemble
//! commands, so one command goes in one `write_all`).
use pefbox::tpm::transport::{Transport, TransportError, MAX_TPM_MESSAGE};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// How long [`Swtpm::start`] waits for swtpm to accept connections.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Default read/write timeout of a [`SwtpmConn`].
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How many times a start is retried with new ports if swtpm exits (port taken).
const START_ATTEMPTS: u32 = 5;

/// A running swtpm child process.
#[derive(Debug)]
pub struct Swtpm {
    child: Option<Child>,
    state_dir: PathBuf,
    remove_dir: bool,
    port: u16,
    ctrl_port: u16,
}

fn free_port() -> io::Result<u16> {
    let l = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}

fn temp_state_dir() -> io::Result<PathBuf> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "pefbox-swtpm-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

impl Swtpm {
    /// Starts swtpm with a fresh temporary state directory (removed on drop).
    pub fn start() -> io::Result<Swtpm> {
        let dir = temp_state_dir()?;
        let mut t = Swtpm {
            child: None,
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
        std::fs::create_dir_all(dir)?;
        let mut t = Swtpm {
            child: None,
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
        for _ in 0..START_ATTEMPTS {
            let port = free_port()?;
            let ctrl = free_port()?;
            if port == ctrl {
                continue;
            }
            self.port = port;
            self.ctrl_port = ctrl;
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Starts the child on the current ports and waits until it accepts.
    fn spawn(&mut self) -> io::Result<()> {
        let mut cmd = Command::new("swtpm");
        die_with_parent(&mut cmd);
        let child = cmd
            .arg("socket")
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
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if !self.is_running() {
                self.reap();
                return Err(io::Error::other("swtpm exited during start"));
            }
            // Probe the control port: it does not take the one TPM connection.
            let ctrl = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.ctrl_port));
            let ok = TcpStream::connect_timeout(&ctrl, Duration::from_millis(200)).is_ok()
                && TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200)).is_ok();
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "swtpm did not accept connections in time",
                ));
            }
            sleep(Duration::from_millis(20));
        }
    }

    fn reap(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
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
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => sleep(Duration::from_millis(50)),
            }
        }
    }
}

/// Makes the kernel SIGKILL swtpm when the thread that started it dies without cleaning up
/// (e.g. the launcher SIGKILLed): without it swtpm outlived the launcher and kept the state
/// directory locked.
fn die_with_parent(cmd: &mut Command) {
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

impl Drop for Swtpm {
    fn drop(&mut self) {
        self.stop();
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.state_dir);
        }
    }
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
        let size = u32::from_be_bytes([header[2], header[3], header[4], header[5]]) as usize;
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
