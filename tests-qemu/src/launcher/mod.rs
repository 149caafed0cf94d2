//! The QEMU launcher: builds the image, starts swtpm and the framing relay, boots
//! `qemu-system-ppc64 -M powernv9`, streams the console live while keeping a copy, answers
//! `@@host` directives, enforces the timeout and judges the boot with [`crate::verdict::judge`].
//!
//! Every child (QEMU, swtpm) is killed and reaped on every path: normal exit, timeout, error
//! returns and panics (Drop guards), Ctrl-C/SIGTERM (the flag set by
//! [`install_interrupt_handler`], polled by the run loop), and the death of the launcher itself
//! (QEMU gets `PR_SET_PDEATHSIG`).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::relay::{Relay, RelayFault, RelayOptions, RelayStats};
use crate::swtpm::Swtpm;
use crate::verdict::{is_firmware_crash, judge, ExitInfo, Expect, Verdict};

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

/// Which image to build: the two are built with different features into different target
/// directories, so neither build overwrites the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// The image to flash (`cargo pef build`): no `selftest` feature, no test hooks.
    Flash,
    /// The self-test image (`cargo pef run`, `scenarios`, `bench`, the boot tests): feature
    /// `selftest` (the in-image self-tests, `hcall-probe`, `@@host` directives, ...).
    Selftest,
}

impl ImageKind {
    /// Its cargo target directory: `target/image` (flash) or `target/image-selftest`.
    pub fn target_dir(self) -> PathBuf {
        workspace_root().join("target").join(match self {
            ImageKind::Flash => "image",
            ImageKind::Selftest => "image-selftest",
        })
    }

    /// The cargo features it is built with.
    pub fn features(self) -> &'static [&'static str] {
        match self {
            ImageKind::Flash => &[],
            ImageKind::Selftest => &["--features", "selftest"],
        }
    }
}

/// The image ELF that [`build_image`] produces for `kind`.
pub fn image_path(kind: ImageKind) -> PathBuf {
    kind.target_dir()
        .join(IMAGE_TARGET)
        .join("release")
        .join("pefbox")
}

/// Checks that QEMU (with skiboot) and swtpm are installed, installing them with apt-get when
/// running as root on a machine that has it; otherwise the error names the command. See
/// [`crate::tools::ensure`].
pub fn ensure_tools() -> Result<(), LaunchError> {
    crate::tools::ensure(&[crate::tools::Tool::Qemu, crate::tools::Tool::Swtpm])
        .map_err(|e| LaunchError::MissingTool(e.to_string()))
}

/// Builds the image of `kind` in its own target directory (no lock fight with an outer
/// `cargo test`, and none with the other kind) and returns the ELF's path. Cargo's output
/// goes to our stderr.
pub fn build_image(kind: ImageKind) -> Result<PathBuf, LaunchError> {
    build_image_opts(kind, false)
}

/// As [`build_image`]; `quiet` passes `-q` to cargo (no progress lines).
pub fn build_image_opts(kind: ImageKind, quiet: bool) -> Result<PathBuf, LaunchError> {
    crate::tools::ensure(&[crate::tools::Tool::ImageTarget])
        .map_err(|e| LaunchError::MissingTool(e.to_string()))?;
    let root = workspace_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    if quiet {
        cmd.arg("-q");
    }
    let status = cmd
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--target",
            IMAGE_TARGET,
            "-p",
            "pefbox",
        ])
        .args(kind.features())
        .arg("--target-dir")
        .arg(kind.target_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .map_err(io_err("running cargo"))?;
    if !status.success() {
        return Err(LaunchError::Build(format!("cargo exited with {status}")));
    }
    let image = image_path(kind);
    if !image.is_file() {
        return Err(LaunchError::Build(format!(
            "{} was not produced",
            image.display()
        )));
    }
    Ok(image)
}

/// The secure VM's kernel and bootargs as QEMU loads them (see [`crate::svm`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SvmLoad {
    /// The kernel file and its size in bytes.
    pub kernel: Option<(PathBuf, u64)>,
    /// A file holding exactly the bootargs bytes, and their length.
    pub bootargs: Option<(PathBuf, usize)>,
}

impl SvmLoad {
    /// The `-append` tokens that tell the image where the SVM kernel and bootargs are.
    pub fn bootargs_tokens(&self) -> Vec<String> {
        let mut t = Vec::new();
        if let Some((_, size)) = &self.kernel {
            t.push(format!(
                "svm-kernel={:#x},{size}",
                crate::svm::SVM_KERNEL_ADDR
            ));
        }
        if let Some((_, len)) = &self.bootargs {
            t.push(format!(
                "svm-bootargs={:#x},{len}",
                crate::svm::SVM_BOOTARGS_ADDR
            ));
        }
        t
    }
}

/// The image's `/chosen/bootargs`: the user's bootargs, then the SVM tokens.
pub fn image_bootargs(bootargs: Option<&str>, svm: &SvmLoad) -> Option<String> {
    let mut parts: Vec<String> = bootargs
        .filter(|b| !b.trim().is_empty())
        .map(|b| b.trim().to_string())
        .into_iter()
        .collect();
    parts.extend(svm.bootargs_tokens());
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// The QEMU command line (without the program name) for one boot of `cfg`, its TPM link a
/// TCP client of the relay on `relay_port`.
pub fn qemu_args(cfg: &RunConfig, relay_port: u16, svm: &SvmLoad) -> Vec<OsString> {
    let (image, bootargs, initrd) = (
        cfg.image.as_path(),
        cfg.bootargs.as_deref(),
        cfg.initrd.as_deref(),
    );
    let mut a: Vec<OsString> = Vec::new();
    if let Some(dir) = &cfg.qemu_data_dir {
        // A QEMU unpacked into a private prefix finds its firmware (skiboot) here.
        a.push("-L".into());
        a.push(dir.as_os_str().to_owned());
    }
    a.push("-M".into());
    a.push(cfg.machine.as_str().into());
    a.extend(
        [
            "-m",
            "1G",
            "-nodefaults",
            "-display",
            "none",
            // The BMC makes OPAL_CEC_POWER_DOWN work with -nodefaults, so QEMU exits.
            "-device",
            "ipmi-bmc-sim,id=bmc0",
            "-device",
            "isa-ipmi-bt,bmc=bmc0,irq=10",
        ]
        .iter()
        .map(OsString::from),
    );
    a.push("-kernel".into());
    a.push(image.as_os_str().to_owned());
    // The TPM link: the first UART (0x3f8) is a TCP client of the relay.
    a.push("-chardev".into());
    a.push(format!("socket,id=tpm,host=127.0.0.1,port={relay_port},nodelay=on").into());
    a.push("-serial".into());
    a.push("chardev:tpm".into());
    // The console: created last, so skiboot (then the image) uses it; 0x2f8.
    a.push("-chardev".into());
    a.push("stdio,id=con,signal=off".into());
    a.push("-device".into());
    a.push("isa-serial,chardev=con,iobase=0x2f8,irq=3".into());
    if let Some(b) = image_bootargs(bootargs, svm) {
        a.push("-append".into());
        a.push(b.into());
    }
    if let Some(i) = initrd {
        a.push("-initrd".into());
        a.push(i.as_os_str().to_owned());
    }
    // QEMU 7.2 generic loader: raw bytes at a guest-physical address, present before the
    // first instruction (checked with the monitor's `xp` under -S).
    let loads = [
        (
            svm.kernel.as_ref().map(|(p, _)| p),
            crate::svm::SVM_KERNEL_ADDR,
        ),
        (
            svm.bootargs.as_ref().map(|(p, _)| p),
            crate::svm::SVM_BOOTARGS_ADDR,
        ),
    ];
    for (file, addr) in loads {
        if let Some(file) = file {
            let mut d = OsString::from("loader,file=");
            d.push(file.as_os_str());
            d.push(format!(",addr={addr:#x},force-raw=on"));
            a.push("-device".into());
            a.push(d);
        }
    }
    if let Some(port) = cfg.gdb {
        // Halted before the first instruction, gdbstub on loopback only.
        a.push("-S".into());
        a.push("-gdb".into());
        a.push(format!("tcp:127.0.0.1:{port}").into());
    }
    a.extend(cfg.qemu_extra.iter().cloned());
    a
}

/// The `gdb` command line that attaches to a boot started with [`RunConfig::gdb`], with the
/// image's symbols (the ELF keeps its symbol table).
pub fn gdb_command(image: &Path, port: u16) -> String {
    format!(
        "gdb-multiarch -q {} -ex 'set endian big' -ex 'set architecture powerpc:common64' \
         -ex 'target remote 127.0.0.1:{port}'",
        shell_quote(&image.to_string_lossy())
    )
}

/// `s` quoted for a POSIX shell when it needs it.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// A command line as a user would paste it into a shell.
pub fn command_line(program: &Path, args: &[OsString]) -> String {
    std::iter::once(program.as_os_str())
        .chain(args.iter().map(OsString::as_os_str))
        .map(|a| shell_quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks the SVM inputs of a boot and writes the bootargs file (removed when the returned
/// guard drops). Errors name the file and the limit.
fn prepare_svm_load(cfg: &RunConfig) -> Result<(SvmLoad, Option<TempFile>), LaunchError> {
    let mut load = SvmLoad::default();
    if let Some(k) = &cfg.svm_kernel {
        let size = fs::metadata(k)
            .map_err(io_err(format!("SVM kernel {}", k.display())))?
            .len();
        if size == 0 || size > crate::svm::MAX_SVM_KERNEL {
            return Err(LaunchError::Boot(format!(
                "SVM kernel {} is {size} bytes: it must be 1..={} bytes",
                k.display(),
                crate::svm::MAX_SVM_KERNEL
            )));
        }
        load.kernel = Some((k.clone(), size));
    }
    let mut guard = None;
    if let Some(b) = cfg.svm_bootargs.as_deref().filter(|b| !b.is_empty()) {
        if b.len() > crate::svm::MAX_SVM_BOOTARGS || b.contains('\0') {
            return Err(LaunchError::Boot(format!(
                "SVM bootargs are {} bytes{}: at most {} bytes, no NUL",
                b.len(),
                if b.contains('\0') { " with a NUL" } else { "" },
                crate::svm::MAX_SVM_BOOTARGS
            )));
        }
        let file = TempFile::new("svm-bootargs", b.as_bytes())?;
        load.bootargs = Some((file.0.clone(), b.len()));
        guard = Some(file);
    }
    Ok((load, guard))
}

/// A temporary file removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(stem: &str, data: &[u8]) -> Result<TempFile, LaunchError> {
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
struct ChildGuard {
    child: Child,
    reaped: Option<ExitStatus>,
}

impl ChildGuard {
    fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.reaped.is_none() {
            self.reaped = self.child.try_wait()?;
        }
        Ok(self.reaped)
    }

    fn kill_and_reap(&mut self) -> io::Result<ExitStatus> {
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

/// One boot to run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// A name for the summary table.
    pub scenario: String,
    /// The image ELF (see [`build_image`]).
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

/// The machines the image boots on (`-M`); the first is the default.
pub const MACHINES: [&str; 2] = ["powernv9", "powernv10"];

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

/// Which QEMU ran a boot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QemuId {
    /// The program.
    pub program: PathBuf,
    /// `x.y.z` from `--version`, or `"unknown"`.
    pub version: String,
}

impl RunReport {
    /// True if the verdict is a pass.
    pub fn passed(&self) -> bool {
        self.verdict.passed()
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
    /// Acts on one `@@host` verb; returns the answer line to send, and a log entry.
    fn directive(&mut self, verb: &str) -> (String, String) {
        match verb {
            "tpm-stop" => {
                // The relay then fails each command by not answering it.
                self.swtpm.stop();
                (format!("@@ack {verb}\n"), "tpm-stop: swtpm stopped".into())
            }
            "tpm-start" => {
                if self.swtpm.is_running() {
                    return (
                        format!("@@ack {verb}\n"),
                        "tpm-start: already running".into(),
                    );
                }
                // Same state directory (and ports); the relay reconnects on the next command.
                match self.swtpm.restart() {
                    Ok(()) => {
                        self.relay.set_upstream(Some(self.swtpm.addr()));
                        let log =
                            format!("tpm-start: swtpm restarted on port {}", self.swtpm.port());
                        (format!("@@ack {verb}\n"), log)
                    }
                    Err(e) => (
                        format!("@@nak {verb}\n"),
                        format!("tpm-start: restart failed: {e}"),
                    ),
                }
            }
            _ => (
                format!("@@nak {verb}\n"),
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
                if let Some(verb) = line.strip_prefix("@@host ") {
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

/// Refuses a QEMU older than [`crate::tools::MIN_QEMU`] or one whose version cannot be read,
/// and a machine the image does not boot on, with a message saying what to do.
pub fn check_qemu(id: &QemuId, machine: &str) -> Result<(), LaunchError> {
    let version = crate::tools::qemu_version(&id.program)
        .map_err(|e| LaunchError::MissingTool(e.to_string()))?;
    crate::tools::check_qemu_version(&id.program, version)
        .map_err(|e| LaunchError::MissingTool(e.to_string()))?;
    if !MACHINES.contains(&machine) {
        return Err(LaunchError::MissingTool(format!(
            "machine {machine}: the image boots on {}",
            MACHINES.join(" and ")
        )));
    }
    Ok(())
}

/// The first word of the image's banner line (the console protocol).
pub const BANNER: &str = "pefbox ";

/// The QEMU program and its version, asked once per program and process.
pub fn qemu_id(program: &Path) -> QemuId {
    static SEEN: Mutex<BTreeMap<PathBuf, String>> = Mutex::new(BTreeMap::new());
    let mut seen = SEEN.lock().unwrap_or_else(PoisonError::into_inner);
    let version = seen
        .entry(program.to_path_buf())
        .or_insert_with(|| {
            crate::tools::qemu_version(program)
                .map(|(a, b, c)| format!("{a}.{b}.{c}"))
                .unwrap_or_else(|_| "unknown".into())
        })
        .clone();
    QemuId {
        program: program.to_path_buf(),
        version,
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

/// Sizes of the image ELF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageSize {
    /// Bytes of the ELF file.
    pub file: u64,
    /// Bytes of the file that PT_LOAD segments load (what skiboot copies), summed.
    pub loaded: u64,
}

/// The size of `path` once stripped (`llvm-objcopy --strip-all`: no symbols, no non-loaded
/// sections), measured on a copy beside it that is removed again. The toolchain's own
/// `rust-objcopy` is used (rustc ships it), else `llvm-objcopy` from the PATH; the error
/// says when neither runs.
pub fn stripped_size(path: &Path) -> Result<u64, String> {
    static N: AtomicU32 = AtomicU32::new(0);
    let host_bin = Command::new("rustc")
        .current_dir(workspace_root())
        .args(["--print", "target-libdir"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|d| {
            Some(
                Path::new(d.trim())
                    .parent()?
                    .join("bin")
                    .join("rust-objcopy"),
            )
        });
    let tools: Vec<PathBuf> = host_bin
        .into_iter()
        .chain([PathBuf::from("llvm-objcopy")])
        .collect();
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(
        ".stripped-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let out = path.with_file_name(name);
    let mut why = Vec::new();
    for tool in &tools {
        let r = Command::new(tool)
            .arg("--strip-all")
            .arg(path)
            .arg(&out)
            .stdin(Stdio::null())
            .output();
        match r {
            Ok(o) if o.status.success() => {
                let size = fs::metadata(&out).map(|m| m.len());
                let _ = fs::remove_file(&out);
                return size.map_err(|e| format!("{}: {e}", out.display()));
            }
            Ok(o) => why.push(format!(
                "{}: {}",
                tool.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => why.push(format!("{}: {e}", tool.display())),
        }
    }
    let _ = fs::remove_file(&out);
    Err(format!("no objcopy to strip with ({})", why.join("; ")))
}

/// Reads the file size and the PT_LOAD file sizes of an ELF (either class or byte order).
pub fn image_size(path: &Path) -> io::Result<ImageSize> {
    use object::read::elf::{FileHeader, ProgramHeader};
    let bytes = fs::read(path)?;
    let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    fn loaded<H: FileHeader>(bytes: &[u8]) -> Result<u64, String> {
        let h = H::parse(bytes).map_err(|e| format!("not an ELF file: {e}"))?;
        let e = h.endian().map_err(|e| e.to_string())?;
        let headers = h.program_headers(e, bytes).map_err(|e| e.to_string())?;
        Ok(headers
            .iter()
            .filter(|p| p.p_type(e) == object::elf::PT_LOAD)
            .map(|p| p.p_filesz(e).into())
            .fold(0u64, u64::saturating_add))
    }
    let loaded = match object::FileKind::parse(&*bytes) {
        Ok(object::FileKind::Elf64) => {
            loaded::<object::elf::FileHeader64<object::Endianness>>(&bytes)
        }
        Ok(object::FileKind::Elf32) => {
            loaded::<object::elf::FileHeader32<object::Endianness>>(&bytes)
        }
        _ => Err("not an ELF file".to_string()),
    }
    .map_err(bad)?;
    Ok(ImageSize {
        file: bytes.len() as u64,
        loaded,
    })
}

/// `Ok` if `bytes` are an executable the image could be: a big-endian ELF64 for POWER
/// (EM_PPC64), as skiboot runs it; otherwise what it is instead.
pub fn elf_ppc64_be(bytes: &[u8]) -> Result<(), String> {
    use object::read::elf::FileHeader;
    let h = match object::FileKind::parse(bytes) {
        Ok(object::FileKind::Elf64) => {
            object::elf::FileHeader64::<object::Endianness>::parse(bytes)
                .map_err(|e| format!("not an ELF file: {e}"))?
        }
        Ok(object::FileKind::Elf32) => {
            return Err("a 32-bit ELF; the image is a big-endian ELF64 for POWER".into())
        }
        _ => {
            return Err(
                "not an ELF file (expected the pefbox image, a big-endian ELF64 for POWER)".into(),
            )
        }
    };
    let e = h.endian().map_err(|e| e.to_string())?;
    if e != object::Endianness::Big {
        return Err("a little-endian ELF; the image is a big-endian ELF64 for POWER".into());
    }
    if h.e_machine(e) != object::elf::EM_PPC64 {
        return Err(format!(
            "an ELF for machine {}, not POWER (EM_PPC64 = 21)",
            h.e_machine(e)
        ));
    }
    Ok(())
}

/// The median of a list (the lower middle for an even count); `None` if empty.
pub fn median<T: Ord + Copy>(values: &[T]) -> Option<T> {
    let mut v = values.to_vec();
    v.sort_unstable();
    v.get(v.len().checked_sub(1)? / 2).copied()
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// The end-of-run summary table, one row per boot.
pub fn summary_table(reports: &[RunReport]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<20} {:<18} {:>7} {:>6} {:>6} {:<12} {:>9} {:>9} {:>8} {:>10}\n",
        "scenario",
        "qemu/machine",
        "verdict",
        "passed",
        "failed",
        "svm",
        "banner_ms",
        "boot_ms",
        "tpm_cmds",
        "swtpm_ms"
    ));
    for r in reports {
        let (p, f) = r
            .verdict
            .summary
            .counts
            .map(|(p, f)| (p.to_string(), f.to_string()))
            .unwrap_or_else(|| ("-".into(), "-".into()));
        let svm = r
            .verdict
            .summary
            .svm
            .first()
            .map(|s| match s {
                crate::verdict::SvmResult::Accepted => "accepted".to_string(),
                crate::verdict::SvmResult::Rejected(_) => "rejected".to_string(),
                crate::verdict::SvmResult::None => "none".to_string(),
            })
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{:<20} {:<18} {:>7} {:>6} {:>6} {:<12} {:>9} {:>9} {:>8} {:>10}\n",
            r.scenario,
            format!("{}/{}", r.qemu.version, r.machine),
            if r.passed() { "PASS" } else { "FAIL" },
            p,
            f,
            svm,
            r.to_banner.map(ms).unwrap_or_else(|| "-".into()),
            ms(r.wall),
            r.relay.records.len(),
            format!("{:.2}", r.swtpm_time().as_secs_f64() * 1000.0),
        ));
    }
    for r in reports.iter().filter(|r| !r.passed()) {
        out.push_str(&format!("{}: FAIL\n", r.scenario));
        for p in &r.verdict.problems {
            out.push_str(&format!("  - {p}\n"));
        }
        if let Some(log) = &r.console_log {
            out.push_str(&format!(
                "  whole console (skiboot included): {}\n",
                log.display()
            ));
        }
    }
    out
}

/// Relay timings of one TPM command code over many boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommandTimes {
    /// Answered commands.
    pub count: usize,
    /// Median swtpm-side time.
    pub median_swtpm: Duration,
    /// Largest swtpm-side time.
    pub max_swtpm: Duration,
    /// Median time for the command's bytes to cross the TPM link into the relay.
    pub median_receive: Duration,
}

/// Relay timings aggregated per TPM command code.
pub fn per_command(reports: &[RunReport]) -> BTreeMap<u32, CommandTimes> {
    let mut by: BTreeMap<u32, (Vec<Duration>, Vec<Duration>)> = BTreeMap::new();
    for r in reports {
        for rec in &r.relay.records {
            if let Some(resp) = rec.response {
                let e = by.entry(rec.command_code).or_default();
                e.0.push(resp.swtpm_time);
                e.1.push(rec.receive_time);
            }
        }
    }
    by.into_iter()
        .map(|(code, (t, rx))| {
            let times = CommandTimes {
                count: t.len(),
                median_swtpm: median(&t).unwrap_or_default(),
                max_swtpm: t.iter().copied().max().unwrap_or_default(),
                median_receive: median(&rx).unwrap_or_default(),
            };
            (code, times)
        })
        .collect()
}

/// swtpm-side time of the image's TPM work, split by phase (see [`tpm_phases`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PhaseTimes {
    /// Provisioning: every command before the ultravisor's session (count, swtpm time).
    pub provision: (usize, Duration),
    /// The ultravisor's session: ReadPublic/NV_ReadPublic of the pinned keys +
    /// StartAuthSession.
    pub session: (usize, Duration),
    /// The unwrap: from its PolicyCommandCode to RSA_Decrypt.
    pub unwrap: (usize, Duration),
}

/// Splits a boot's relay records by phase, by the command sequence the image contract fixes:
/// the unwrap is the first `RSA_Decrypt` and what the ultravisor sends right before it for
/// it (walking back to its `PolicyCommandCode`, at most six commands: the policy commands,
/// the one-shot HMAC session's salt-key `ReadPublic` and `StartAuthSession`,
/// `PolicySecret`); the session is the
/// `StartAuthSession` and the `ReadPublic`/`NV_ReadPublic` of the pinned keys right before
/// those; every earlier command is provisioning. `None` if the boot issued no `RSA_Decrypt`.
pub fn tpm_phases(records: &[crate::relay::RelayRecord]) -> Option<PhaseTimes> {
    use pefbox::tpm::consts::cc;
    let decrypt = records
        .iter()
        .position(|r| r.command_code == cc::RSA_DECRYPT)?;
    let unwrap_cmds = [
        cc::POLICY_COMMAND_CODE,
        cc::POLICY_AUTH_VALUE,
        cc::POLICY_OR,
        cc::POLICY_SECRET,
        cc::START_AUTH_SESSION,
        cc::READ_PUBLIC,
    ];
    let code = |i: usize| records.get(i).map(|r| r.command_code);
    // Back to the PolicyCommandCode that opens the unwrap, if it is within reach.
    let mut unwrap_start = decrypt;
    for back in 1..=6 {
        let Some(i) = decrypt.checked_sub(back) else {
            break;
        };
        match code(i) {
            Some(c) if c == cc::POLICY_COMMAND_CODE => {
                unwrap_start = i;
                break;
            }
            Some(c) if unwrap_cmds.contains(&c) => {}
            _ => break,
        }
    }
    let mut session_start = unwrap_start;
    if session_start > 0 && code(session_start - 1) == Some(cc::START_AUTH_SESSION) {
        session_start -= 1;
        while session_start > 0
            && matches!(code(session_start - 1), Some(c) if c == cc::READ_PUBLIC || c == cc::NV_READ_PUBLIC)
        {
            session_start -= 1;
        }
    }
    let sum = |rs: &[crate::relay::RelayRecord]| {
        (
            rs.len(),
            rs.iter()
                .filter_map(|r| r.response.map(|x| x.swtpm_time))
                .sum(),
        )
    };
    Some(PhaseTimes {
        provision: sum(records.get(..session_start).unwrap_or_default()),
        session: sum(records.get(session_start..unwrap_start).unwrap_or_default()),
        unwrap: sum(records.get(unwrap_start..=decrypt).unwrap_or_default()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_args_put_the_console_uart_last_and_the_tpm_on_the_relay() {
        let mut cfg = RunConfig::new("x", "/x/pefbox");
        cfg.bootargs = Some("selftest=panic".into());
        let a = qemu_args(&cfg, 4321, &SvmLoad::default());
        let s: Vec<String> = a.iter().map(|o| o.to_string_lossy().into_owned()).collect();
        let at = |x: &str| s.iter().position(|y| y == x).unwrap();
        assert_eq!(s[at("-kernel") + 1], "/x/pefbox");
        assert_eq!(s[at("-append") + 1], "selftest=panic");
        assert!(s.contains(&"socket,id=tpm,host=127.0.0.1,port=4321,nodelay=on".to_string()));
        assert!(at("chardev:tpm") < at("isa-serial,chardev=con,iobase=0x2f8,irq=3"));
        assert!(!s.contains(&"-initrd".to_string()));
        assert_eq!(s[at("-M") + 1], "powernv9");
        assert!(!s.contains(&"-L".to_string()));
    }

    #[test]
    fn svm_inputs_become_loader_devices_and_bootargs_tokens() {
        let svm = SvmLoad {
            kernel: Some(("/w/k.bin".into(), 262_144)),
            bootargs: Some(("/t/b".into(), 34)),
        };
        let mut cfg = RunConfig::new("x", "/x/pefbox");
        cfg.bootargs = Some(" quiet ".into());
        cfg.machine = "powernv10".into();
        cfg.qemu_data_dir = Some("/q/share".into());
        let a = qemu_args(&cfg, 1, &svm);
        let s: Vec<String> = a.iter().map(|o| o.to_string_lossy().into_owned()).collect();
        let at = |x: &str| s.iter().position(|y| y == x).unwrap();
        assert_eq!(
            s[at("-append") + 1],
            "quiet svm-kernel=0x10000000,262144 svm-bootargs=0xf000000,34"
        );
        assert!(s.contains(&"loader,file=/w/k.bin,addr=0x10000000,force-raw=on".to_string()));
        assert!(s.contains(&"loader,file=/t/b,addr=0xf000000,force-raw=on".to_string()));
        assert_eq!(s[at("-M") + 1], "powernv10");
        assert_eq!(s[at("-L") + 1], "/q/share");
        // No user bootargs: only the tokens; nothing at all: no -append.
        assert_eq!(
            image_bootargs(None, &svm).as_deref(),
            Some("svm-kernel=0x10000000,262144 svm-bootargs=0xf000000,34")
        );
        assert_eq!(image_bootargs(Some("  "), &SvmLoad::default()), None);
    }

    #[test]
    fn svm_limits_are_enforced_before_boot() {
        let mut cfg = RunConfig::new("x", "/nonexistent/image");
        cfg.svm_bootargs = Some("a".repeat(crate::svm::MAX_SVM_BOOTARGS + 1));
        assert!(matches!(run(&cfg), Err(LaunchError::Boot(_))));
        cfg.svm_bootargs = Some("a\0b".into());
        assert!(matches!(run(&cfg), Err(LaunchError::Boot(_))));
        cfg.svm_bootargs = Some("a".repeat(crate::svm::MAX_SVM_BOOTARGS));
        let (load, file) = prepare_svm_load(&cfg).unwrap();
        let (path, len) = load.bootargs.clone().unwrap();
        assert_eq!(len, crate::svm::MAX_SVM_BOOTARGS);
        assert_eq!(
            fs::read(&path).unwrap(),
            cfg.svm_bootargs.as_ref().unwrap().as_bytes()
        );
        drop(file);
        assert!(
            !path.exists(),
            "the bootargs file is removed after the boot"
        );
        let empty = TempFile::new("empty-kernel", b"").unwrap();
        cfg.svm_bootargs = None;
        cfg.svm_kernel = Some(empty.0.clone());
        assert!(matches!(run(&cfg), Err(LaunchError::Boot(_))));
        cfg.svm_kernel = Some("/nonexistent/kernel".into());
        assert!(matches!(run(&cfg), Err(LaunchError::Io(..))));
    }

    fn rec(code: u32, us: u64) -> crate::relay::RelayRecord {
        crate::relay::RelayRecord {
            command_code: code,
            command_size: 10,
            receive_time: Duration::ZERO,
            response: Some(crate::relay::ResponseInfo {
                size: 10,
                code: 0,
                swtpm_time: Duration::from_micros(us),
            }),
        }
    }

    #[test]
    fn tpm_phases_split_provisioning_session_and_unwrap() {
        use pefbox::tpm::consts::cc;
        let records = vec![
            rec(cc::PCR_READ, 1),
            rec(cc::READ_PUBLIC, 2),
            rec(cc::POLICY_COMMAND_CODE, 4),
            rec(cc::POLICY_OR, 8),
            rec(cc::PCR_EXTEND, 16),
            rec(cc::READ_PUBLIC, 32),
            rec(cc::START_AUTH_SESSION, 64),
            rec(cc::POLICY_COMMAND_CODE, 128),
            rec(cc::POLICY_AUTH_VALUE, 256),
            rec(cc::POLICY_OR, 512),
            rec(cc::RSA_DECRYPT, 1024),
            rec(cc::GET_RANDOM, 2048),
        ];
        let p = tpm_phases(&records).unwrap();
        assert_eq!(p.provision, (5, Duration::from_micros(31)));
        assert_eq!(p.session, (2, Duration::from_micros(96)));
        assert_eq!(p.unwrap, (4, Duration::from_micros(1920)));
        assert_eq!(tpm_phases(&records[..5]), None);
        // RSA_Decrypt first: no session, no provisioning.
        let p = tpm_phases(&records[10..]).unwrap();
        assert_eq!((p.provision.0, p.session.0, p.unwrap.0), (0, 0, 1));
        // Today's sequence: the pinned keys read, the boot session, then an unwrap with a
        // one-shot HMAC session for PolicySecret (its StartAuthSession is the unwrap's).
        let records = vec![
            rec(cc::PCR_EXTEND, 1),
            rec(cc::READ_PUBLIC, 2),
            rec(cc::READ_PUBLIC, 4),
            rec(cc::NV_READ_PUBLIC, 8),
            rec(cc::START_AUTH_SESSION, 16),
            rec(cc::POLICY_COMMAND_CODE, 32),
            rec(cc::READ_PUBLIC, 64),
            rec(cc::START_AUTH_SESSION, 128),
            rec(cc::POLICY_SECRET, 256),
            rec(cc::RSA_DECRYPT, 512),
        ];
        let p = tpm_phases(&records).unwrap();
        assert_eq!(p.provision, (1, Duration::from_micros(1)));
        assert_eq!(p.session, (4, Duration::from_micros(30)));
        assert_eq!(p.unwrap, (5, Duration::from_micros(992)));
    }

    #[test]
    fn median_is_the_lower_middle() {
        assert_eq!(median::<u32>(&[]), None);
        assert_eq!(median(&[5]), Some(5));
        assert_eq!(median(&[9, 1, 5]), Some(5));
        assert_eq!(median(&[4, 1, 3, 2]), Some(2));
    }

    #[test]
    fn image_size_reads_pt_load_of_an_elf() {
        // This test binary is an ELF64 on Linux hosts: its PT_LOAD bytes are nonzero and
        // no larger than the file.
        let me = std::env::current_exe().unwrap();
        let s = image_size(&me).unwrap();
        assert!(s.loaded > 0 && s.loaded <= s.file, "{s:?}");
        let dir = std::env::temp_dir().join(format!("pef-elf-{}", std::process::id()));
        fs::write(&dir, b"\x7fELF\x02\x02\x01").unwrap();
        assert!(
            image_size(&dir).is_err(),
            "truncated header must be an error"
        );
        fs::write(&dir, b"#!/bin/sh\n").unwrap();
        assert!(image_size(&dir).is_err());
        let _ = fs::remove_file(&dir);
    }

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

    #[test]
    fn workspace_root_holds_the_image_crate() {
        assert!(workspace_root().join("Cargo.toml").is_file());
        assert!(workspace_root().join("tests-qemu").is_dir());
    }
}
