//! One boot: swtpm, the relay, QEMU, the console pump, `@@host` directives, the timeout and
//! the verdict.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::{
    command_line, gdb_command, interrupted, io_err, prepare_svm_load, qemu_args, qemu_id,
    set_parent_death_signal, ChildGuard, LaunchError, QemuId, BANNER, CRASH_GRACE, MACHINES,
};
use crate::relay::{Relay, RelayFault, RelayOptions, RelayStats};
use crate::swtpm::Swtpm;
use crate::verdict::{is_firmware_crash, judge, ExitInfo, Expect, Verdict};
use pefbox::report as protocol;

/// One boot to run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// A name for the summary table.
    pub scenario: String,
    /// The image ELF (see [`build_image`](super::build_image)).
    pub image: PathBuf,
    /// `/chosen/bootargs` (QEMU `-append`).
    pub bootargs: Option<String>,
    /// An initrd file (QEMU `-initrd`): for a secure VM, the ESM cpio + the SVM's initrd.
    pub initrd: Option<PathBuf>,
    /// The secure VM's kernel file (loaded at 0x1000_0000, see [`crate::svm`]).
    pub svm_kernel: Option<PathBuf>,
    /// The secure VM's bootargs (loaded at 0x0f00_0000; empty means none are passed).
    pub svm_bootargs: Option<String>,
    /// Kill QEMU after this long.
    pub timeout: Duration,
    /// The swtpm state directory; `None`: a fresh temporary one, removed afterwards.
    pub tpm_state: Option<PathBuf>,
    /// Wipe `tpm_state` before starting.
    pub fresh_tpm: bool,
    /// What to stream to our stdout/stderr while the boot runs.
    pub echo: Echo,
    /// Write the whole console (skiboot's lines included) to `<log_dir>/<scenario>.log`.
    pub log_dir: Option<PathBuf>,
    /// The QEMU program (`None`: `qemu-system-ppc64` on the PATH).
    pub qemu: Option<PathBuf>,
    /// QEMU's firmware directory (`-L`), for a QEMU outside the system (see
    /// [`crate::tools::ensure_qemu10`]); `None`: QEMU's default.
    pub qemu_data_dir: Option<PathBuf>,
    /// The QEMU machine (`-M`): see [`MACHINES`].
    pub machine: String,
    /// Extra QEMU arguments, appended last.
    pub qemu_extra: Vec<OsString>,
    /// Start QEMU halted with its gdbstub on this loopback port.
    pub gdb: Option<u16>,
    /// What the console must show.
    pub expect: Expect,
    /// A fault for the relay to inject (boot-level fault and power-cut campaigns). With
    /// [`RelayFault::CutAfter`], once it takes effect swtpm is SIGKILLed (no Shutdown, no
    /// state save) and QEMU killed: a power cut.
    pub relay_fault: RelayFault,
}

/// What a running boot shows on the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Echo {
    /// Nothing (the report keeps everything).
    #[default]
    Off,
    /// The image's console from its banner on (skiboot's lines only go to the log file).
    Image,
    /// Everything: skiboot's lines, QEMU's stderr, the relay's log.
    All,
}

impl RunConfig {
    /// A default boot of `image`: no bootargs, 60 s timeout, a temporary TPM, no echo.
    pub fn new(scenario: impl Into<String>, image: impl Into<PathBuf>) -> Self {
        RunConfig {
            scenario: scenario.into(),
            image: image.into(),
            bootargs: None,
            initrd: None,
            svm_kernel: None,
            svm_bootargs: None,
            timeout: Duration::from_secs(60),
            tpm_state: None,
            fresh_tpm: false,
            echo: Echo::Off,
            log_dir: None,
            qemu: None,
            qemu_data_dir: None,
            machine: MACHINES[0].to_string(),
            qemu_extra: Vec::new(),
            gdb: None,
            expect: Expect::default(),
            relay_fault: RelayFault::None,
        }
    }

    /// Where this boot's whole console goes, if anywhere.
    pub fn console_log_path(&self) -> Option<PathBuf> {
        let name: String = self
            .scenario
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Some(self.log_dir.as_ref()?.join(format!("{name}.log")))
    }

    /// The QEMU program this boot runs.
    pub fn qemu_program(&self) -> PathBuf {
        self.qemu
            .clone()
            .unwrap_or_else(|| PathBuf::from("qemu-system-ppc64"))
    }

    /// A boot of another scenario with this one's QEMU, machine, timeout, TPM state and
    /// terminal settings (no SVM, no bootargs, the default expectation).
    pub fn derive(&self, scenario: impl Into<String>) -> RunConfig {
        RunConfig {
            scenario: scenario.into(),
            bootargs: None,
            initrd: None,
            svm_kernel: None,
            svm_bootargs: None,
            fresh_tpm: false,
            gdb: None,
            expect: Expect::default(),
            relay_fault: RelayFault::None,
            ..self.clone()
        }
    }
}

/// Everything one boot produced.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The scenario name.
    pub scenario: String,
    /// QEMU's console output (stdout), as text.
    pub console: String,
    /// QEMU's stderr.
    pub stderr: String,
    /// How QEMU ended.
    pub exit: ExitInfo,
    /// The verdict.
    pub verdict: Verdict,
    /// From QEMU's launch to its exit (or to the kill).
    pub wall: Duration,
    /// From QEMU's launch to the image's banner line.
    pub to_banner: Option<Duration>,
    /// What the relay recorded.
    pub relay: RelayStats,
    /// `@@host` verbs handled, in order, with the outcome.
    pub directives: Vec<String>,
    /// The QEMU program and its version (`--version`'s first line).
    pub qemu: QemuId,
    /// The machine booted (`-M`).
    pub machine: String,
    /// The file holding the whole console, if one was written.
    pub console_log: Option<PathBuf>,
}

impl RunReport {
    /// True if the verdict is a pass.
    pub fn passed(&self) -> bool {
        self.verdict.passed()
    }

    /// The boot's (first) secure-VM verdict as the console says it (`svm: <verdict>`), if
    /// there is one.
    pub fn svm_line(&self) -> Option<String> {
        self.verdict
            .summary
            .svm
            .first()
            .map(|v| format!("svm: {v}"))
    }

    /// Total swtpm-side time over every answered command.
    pub fn swtpm_time(&self) -> Duration {
        self.relay
            .records
            .iter()
            .filter_map(|r| r.response.map(|x| x.swtpm_time))
            .sum()
    }
}

/// Starts swtpm for a boot: on `cfg.tpm_state` (wiped first with `fresh_tpm`), or on a fresh
/// temporary state that [`Swtpm`] removes when dropped.
fn start_swtpm(cfg: &RunConfig) -> Result<Swtpm, LaunchError> {
    let started = match &cfg.tpm_state {
        None => Swtpm::start(),
        Some(dir) => {
            if cfg.fresh_tpm && dir.exists() {
                fs::remove_dir_all(dir).map_err(io_err(format!("wiping {}", dir.display())))?;
            }
            Swtpm::start_in(dir)
        }
    };
    // The error names the state and what to do (locked, corrupt, not writable, ...).
    started.map_err(|e| LaunchError::Swtpm(e.to_string()))
}

/// How a [`pump`] copies what it reads to the terminal.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PumpEcho {
    /// Not at all.
    Off,
    /// Whole lines, from the first line starting with `from` on.
    LinesFrom(&'static str),
    /// Every byte as it comes.
    Raw,
}

/// Reads a child's output: copies it to the terminal as `echo` says, to `log` (if any) as
/// it comes, keeps all of it, and sends each complete line (without `\n`/`\r`) to `lines`.
fn pump<R: Read + Send + 'static>(
    mut from: R,
    echo: (PumpEcho, Option<Box<dyn Write + Send>>),
    mut log: Option<fs::File>,
    keep: Arc<Mutex<Vec<u8>>>,
    lines: Option<mpsc::Sender<(Instant, String)>>,
) -> io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("pef-pump".into())
        .spawn(move || {
            let (mode, mut out) = echo;
            let mut started = false;
            let mut buf = [0u8; 4096];
            let mut line: Vec<u8> = Vec::new();
            // A closed terminal or a full disk must not stop the boot: stop writing instead.
            let write = |w: &mut Option<Box<dyn Write + Send>>, data: &[u8]| {
                if let Some(x) = w.as_mut() {
                    if x.write_all(data).and_then(|()| x.flush()).is_err() {
                        *w = None;
                    }
                }
            };
            let mut end_line = |line: &[u8], out: &mut Option<Box<dyn Write + Send>>| {
                let text = String::from_utf8_lossy(line)
                    .trim_end_matches(['\r', '\n'])
                    .to_string();
                if let PumpEcho::LinesFrom(marker) = mode {
                    started |= text.starts_with(marker);
                    if started {
                        write(out, format!("{text}\n").as_bytes());
                    }
                }
                if let Some(tx) = &lines {
                    let _ = tx.send((Instant::now(), text));
                }
            };
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                let data = buf.get(..n).unwrap_or_default();
                if mode == PumpEcho::Raw {
                    write(&mut out, data);
                }
                if let Some(f) = log.as_mut() {
                    if f.write_all(data).is_err() {
                        log = None;
                    }
                }
                keep.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend_from_slice(data);
                for &b in data {
                    line.push(b);
                    if b == b'\n' {
                        end_line(&line, &mut out);
                        line.clear();
                    }
                }
            }
            if !line.is_empty() {
                end_line(&line, &mut out);
            }
        })
}

/// The TPM side of a boot: swtpm and the relay in front of it.
struct TpmSide<'a> {
    swtpm: Swtpm,
    relay: &'a Relay,
}

impl TpmSide<'_> {
    /// Acts on one [`protocol::HostRequest`] verb; returns the answer line to send, and a log entry.
    fn directive(&mut self, verb: &str) -> (String, String) {
        match verb {
            "tpm-stop" => {
                // The relay then fails each command by not answering it.
                self.swtpm.stop();
                (
                    format!("{}\n", protocol::Ack(verb)),
                    "tpm-stop: swtpm stopped".into(),
                )
            }
            "tpm-start" => {
                if self.swtpm.is_running() {
                    return (
                        format!("{}\n", protocol::Ack(verb)),
                        "tpm-start: already running".into(),
                    );
                }
                // Same state directory (and ports); the relay reconnects on the next command.
                match self.swtpm.restart() {
                    Ok(()) => {
                        self.relay.set_upstream(Some(self.swtpm.addr()));
                        let log =
                            format!("tpm-start: swtpm restarted on port {}", self.swtpm.port());
                        (format!("{}\n", protocol::Ack(verb)), log)
                    }
                    Err(e) => (
                        format!("{}\n", protocol::Nak(verb)),
                        format!("tpm-start: restart failed: {e}"),
                    ),
                }
            }
            _ => (
                format!("{}\n", protocol::Nak(verb)),
                format!("{verb}: unknown directive"),
            ),
        }
    }
}

/// Runs one boot to the end and judges it. `Err` only when the boot could not be carried out.
/// (The image shuts the TPM down itself before power-off; see `shutdown_tpm` in src/main.rs.)
pub fn run(cfg: &RunConfig) -> Result<RunReport, LaunchError> {
    run_keeping_tpm(cfg).map(|(report, _swtpm)| report)
}

/// Sends `TPM2_Shutdown(TPM_SU_CLEAR)` to a running swtpm, as an operating system does
/// before its host powers off or reboots. Without it the next startup is non-orderly, and a
/// TPM that saw a dictionary-attack-protected object in use (the wrapping key, every boot)
/// counts a failed authorization: with swtpm's defaults the third such restart in a row
/// puts the TPM in lockout (TPM_RC_LOCKOUT, measured here). `Err` carries the text of a
/// carrier failure or of a TPM error code.
pub fn orderly_shutdown(swtpm: &Swtpm) -> Result<(), String> {
    use pefbox::tpm::{consts::su, wire, Transport};
    let mut conn = swtpm.connect().map_err(|e| format!("connect: {e}"))?;
    let mut rsp = [0u8; 64];
    let n = conn
        .transact(&wire::shutdown(su::CLEAR), &mut rsp)
        .map_err(|e| format!("{e:?}"))?;
    match wire::code(&rsp) {
        Some(wire::RC_SUCCESS) if n == 10 => Ok(()),
        Some(c) => Err(format!("TPM answered 0x{c:x}")),
        None => Err("short response".into()),
    }
}

/// As [`run`], but hands back the boot's swtpm process still running (no TPM reset since the
/// boot), for host-side checks after QEMU exited. Dropping it stops swtpm.
pub fn run_keeping_tpm(cfg: &RunConfig) -> Result<(RunReport, Swtpm), LaunchError> {
    let (svm_load, _bootargs_file) = prepare_svm_load(cfg)?;
    if !cfg.image.is_file() {
        return Err(LaunchError::Io(
            format!("image {}", cfg.image.display()),
            io::Error::new(io::ErrorKind::NotFound, "no such file"),
        ));
    }
    let console_log = cfg.console_log_path();
    let log_file = match &console_log {
        None => None,
        Some(p) => {
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
            }
            Some(fs::File::create(p).map_err(io_err(format!("console log {}", p.display())))?)
        }
    };
    let qemu_id = qemu_id(&cfg.qemu_program());
    let swtpm = start_swtpm(cfg)?;
    let relay = Relay::start(
        Some(swtpm.addr()),
        RelayOptions {
            echo_log: cfg.echo == Echo::All,
            fault: cfg.relay_fault,
            ..RelayOptions::default()
        },
    )
    .map_err(io_err("starting the relay"))?;
    let mut tpm = TpmSide {
        swtpm,
        relay: &relay,
    };

    let args = qemu_args(cfg, relay.port(), &svm_load);
    if cfg.echo == Echo::All {
        eprintln!("pef: {}", command_line(&cfg.qemu_program(), &args));
    }
    let mut cmd = Command::new(cfg.qemu_program());
    cmd.args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    set_parent_death_signal(&mut cmd);
    let start = Instant::now();
    let child = cmd
        .spawn()
        .map_err(io_err(format!("starting {}", cfg.qemu_program().display())))?;
    let mut qemu = ChildGuard {
        child,
        reaped: None,
    };
    if let Some(port) = cfg.gdb {
        eprintln!(
            "pef: QEMU is halted before the first instruction; attach with:\n  {}\n\
             (then `continue`; `break rust_entry` stops at the image's Rust entry)",
            gdb_command(&cfg.image, port)
        );
    }
    let console = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let out = qemu.child.stdout.take();
    let err = qemu.child.stderr.take();
    let mut stdin: Option<ChildStdin> = qemu.child.stdin.take();
    let mut pumps = Vec::new();
    if let Some(out) = out {
        let echo: (PumpEcho, Option<Box<dyn Write + Send>>) = match cfg.echo {
            Echo::Off => (PumpEcho::Off, None),
            Echo::Image => (PumpEcho::LinesFrom(BANNER), Some(Box::new(io::stdout()))),
            Echo::All => (PumpEcho::Raw, Some(Box::new(io::stdout()))),
        };
        pumps.push(
            pump(out, echo, log_file, Arc::clone(&console), Some(tx)).map_err(io_err("pump"))?,
        );
    }
    if let Some(err) = err {
        // QEMU's own complaints (a bad -M, a missing file) are shown whenever anything is.
        let echo: (PumpEcho, Option<Box<dyn Write + Send>>) = match cfg.echo {
            Echo::Off => (PumpEcho::Off, None),
            Echo::Image | Echo::All => (PumpEcho::Raw, Some(Box::new(io::stderr()))),
        };
        pumps.push(pump(err, echo, None, Arc::clone(&stderr), None).map_err(io_err("pump"))?);
    }

    let deadline = start + cfg.timeout;
    let mut exit = ExitInfo {
        timed_out: false,
        interrupted: false,
        after_crash: false,
        code: None,
    };
    // After a skiboot crash message, QEMU hangs or reboots: keep collecting for a moment,
    // then stop it instead of waiting for the timeout.
    let mut crash_cutoff: Option<Instant> = None;
    let mut to_banner = None;
    let mut directives = Vec::new();
    let mut console_open = true;
    let status = loop {
        if interrupted() {
            exit.interrupted = true;
            break qemu.kill_and_reap();
        }
        if let Some(s) = qemu.try_wait().map_err(io_err("waiting for QEMU"))? {
            break Ok(s);
        }
        let now = Instant::now();
        if crash_cutoff.is_some_and(|c| now >= c) {
            exit.after_crash = true;
            break qemu.kill_and_reap();
        }
        if now >= deadline {
            exit.timed_out = true;
            break qemu.kill_and_reap();
        }
        if relay.power_cut() {
            // The power cut of a RelayFault::CutAfter: the TPM loses power first.
            tpm.swtpm.power_cut();
            break qemu.kill_and_reap();
        }
        let wait = (deadline - now).min(Duration::from_millis(50));
        if !console_open {
            thread::sleep(wait);
            continue;
        }
        match rx.recv_timeout(wait) {
            Ok((at, line)) => {
                if crash_cutoff.is_none() && is_firmware_crash(&line) {
                    crash_cutoff = Some(at + CRASH_GRACE);
                }
                if to_banner.is_none() && line.starts_with(BANNER) {
                    to_banner = Some(at.duration_since(start));
                }
                if let Some(verb) = line.strip_prefix(protocol::HOST) {
                    let verb = verb.trim();
                    let (answer, log) = tpm.directive(verb);
                    if cfg.echo == Echo::All {
                        eprintln!("pef: {log}; answering {}", answer.trim_end());
                    }
                    let sent = stdin
                        .as_mut()
                        .map(|s| s.write_all(answer.as_bytes()).and_then(|()| s.flush()));
                    if !matches!(sent, Some(Ok(()))) {
                        stdin = None;
                    }
                    directives.push(log);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => console_open = false,
        }
    };
    let wall = start.elapsed();
    let status = status.map_err(io_err("reaping QEMU"))?;
    exit.code = status.code();
    drop(stdin);
    for p in pumps {
        let _ = p.join();
    }
    let swtpm = tpm.swtpm;
    let relay = relay.stop();
    let take = |b: &Arc<Mutex<Vec<u8>>>| {
        String::from_utf8_lossy(&b.lock().unwrap_or_else(PoisonError::into_inner)).to_string()
    };
    let console = take(&console);
    let verdict = judge(&console, exit, &cfg.expect);
    let report = RunReport {
        scenario: cfg.scenario.clone(),
        console,
        stderr: take(&stderr),
        exit,
        verdict,
        wall,
        to_banner,
        relay,
        directives,
        qemu: qemu_id,
        machine: cfg.machine.clone(),
        console_log,
    };
    Ok((report, swtpm))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TPM2_GetRandom(bytes) with no sessions.
    fn get_random(bytes: u16) -> Vec<u8> {
        pefbox::tpm::wire::get_random(bytes).to_vec()
    }

    /// Sends `command` one byte per write, as a UART does, and reads the whole response
    /// (`None` if nothing came back within `wait`).
    fn transact_bytewise(
        q: &mut std::net::TcpStream,
        command: &[u8],
        wait: Duration,
    ) -> Option<Vec<u8>> {
        for b in command {
            q.write_all(&[*b]).unwrap();
        }
        q.set_read_timeout(Some(wait)).unwrap();
        let mut head = [0u8; 10];
        if q.read_exact(&mut head).is_err() {
            return None;
        }
        let size = pefbox::tpm::wire::header(&head).unwrap().size as usize;
        let mut rest = vec![0u8; size - 10];
        q.read_exact(&mut rest).unwrap();
        let mut all = head.to_vec();
        all.extend_from_slice(&rest);
        Some(all)
    }

    fn rc(response: &[u8]) -> u32 {
        pefbox::tpm::wire::code(response).unwrap()
    }

    #[test]
    fn relay_serves_real_swtpm_and_directives_stop_and_restart_it() {
        let swtpm = Swtpm::start().unwrap();
        let relay = Relay::start(Some(swtpm.addr()), RelayOptions::default()).unwrap();
        let mut tpm = TpmSide {
            swtpm,
            relay: &relay,
        };
        let mut q =
            std::net::TcpStream::connect((std::net::Ipv4Addr::LOCALHOST, relay.port())).unwrap();
        let long = Duration::from_secs(10);

        // Byte-by-byte commands reach swtpm whole: a real answer, not TPM_RC_COMMAND_SIZE.
        let r = transact_bytewise(&mut q, &get_random(16), long).unwrap();
        assert_eq!(rc(&r), 0, "{r:02x?}");
        assert_eq!(r.len(), 10 + 2 + 16);
        assert_eq!(&r[10..12], &[0, 16]);
        let r2 = transact_bytewise(&mut q, &get_random(16), long).unwrap();
        assert_ne!(r[12..], r2[12..], "two GetRandom answers are different");
        // TPM2_Startup(CLEAR) after --flags startup-clear: TPM_RC_INITIALIZE.
        let startup = [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x44, 0, 0];
        assert_eq!(
            rc(&transact_bytewise(&mut q, &startup, long).unwrap()),
            0x100
        );

        // @@host tpm-stop: swtpm is gone, the command is not answered.
        let (answer, _) = tpm.directive("tpm-stop");
        assert_eq!(answer, "@@ack tpm-stop\n");
        assert!(!tpm.swtpm.is_running());
        assert_eq!(
            transact_bytewise(&mut q, &get_random(8), Duration::from_millis(500)),
            None
        );
        // @@host tpm-start: same state, and the relay reconnects on the next command.
        let (answer, log) = tpm.directive("tpm-start");
        assert_eq!(answer, "@@ack tpm-start\n", "{log}");
        let r = transact_bytewise(&mut q, &get_random(8), long).unwrap();
        assert_eq!((rc(&r), r.len()), (0, 20));
        assert_eq!(tpm.directive("tpm-reboot").0, "@@nak tpm-reboot\n");

        drop(tpm);
        let stats = relay.stop();
        let answered: Vec<bool> = stats.records.iter().map(|r| r.response.is_some()).collect();
        assert_eq!(answered, vec![true, true, true, false, true]);
        assert_eq!(stats.records[0].command_code, 0x17b);
        assert!(stats.records[0].response.unwrap().swtpm_time > Duration::ZERO);
        assert!(stats.log.iter().any(|l| l.contains("not answered")));
    }
}
