//! Ensures the tools a command or test needs, installing what is missing where that can be
//! done from here, so every README command does its own setup on a fresh machine.
//!
//! - [`Tool::ImageTarget`]: the `powerpc64-unknown-linux-musl` standard library of the
//!   toolchain cargo uses (rustup does not add the targets of `rust-toolchain.toml` when the
//!   pinned toolchain is already installed), added with `rustup target add`.
//! - [`Tool::Qemu`]: `qemu-system-ppc64` (at least [`MIN_QEMU`]) and skiboot
//!   (`/usr/share/qemu/skiboot.lid`), from Debian's `qemu-system-ppc` and `qemu-system-data`.
//! - [`Tool::Swtpm`]: `swtpm` and `swtpm_setup`, from `swtpm` and `swtpm-tools`.
//!
//! [`ensure`] is cheap once a tool was found (one mutex, no process spawned, no network) and
//! safe to call from many test threads (a process-wide lock) and from several processes at
//! once (an flock(2) on `target/pef-tools.lock` around every install, with a re-check after
//! taking it). [`ensure_qemu10`] unpacks QEMU 10.0 from Debian's bookworm-backports into
//! `target/qemu-10.0/`, beside the system's QEMU.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, PoisonError};

use crate::launcher::{workspace_root, IMAGE_TARGET};

/// The oldest QEMU this project accepts. 7.2 (Debian 12) is the version every platform fact
/// the image and the launcher rely on was measured with: `-M powernv9`, the LPC I/O window
/// in the device tree, the 16550 receive behaviour, `ipmi-bmc-sim` making
/// OPAL_CEC_POWER_DOWN exit QEMU under `-nodefaults`, and the generic loader's `force-raw`
/// placement before the first instruction (see ../shared/notes/powernv-platform.md). Older
/// versions were never measured, so they are refused instead of guessed at.
pub const MIN_QEMU: (u32, u32, u32) = (7, 2, 0);

/// The command that installs every system tool by hand.
pub const APT_INSTALL_ALL: &str =
    "sudo apt-get install -y qemu-system-ppc qemu-system-data swtpm swtpm-tools";

/// The skiboot firmware QEMU's powernv machines load (package qemu-system-data).
pub const SKIBOOT: &str = "/usr/share/qemu/skiboot.lid";

/// Something a command or test needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tool {
    /// The Rust standard library for [`IMAGE_TARGET`] in the toolchain cargo uses.
    ImageTarget,
    /// `qemu-system-ppc64` >= [`MIN_QEMU`] on PATH and skiboot at [`SKIBOOT`].
    Qemu,
    /// `swtpm` and `swtpm_setup` on PATH.
    Swtpm,
}

/// Why a tool is not available.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolError {
    /// Missing, and it cannot be installed from here: the text names the command to run.
    Missing(String),
    /// An install step ran and failed: the text names the step.
    InstallFailed(String),
    /// The QEMU found is older than [`MIN_QEMU`].
    QemuTooOld {
        /// The binary.
        path: PathBuf,
        /// Its version.
        version: (u32, u32, u32),
    },
    /// `--version` output that is not QEMU's.
    Version(String),
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolError::Missing(s) | ToolError::InstallFailed(s) | ToolError::Version(s) => {
                write!(f, "{s}")
            }
            ToolError::QemuTooOld { path, version } => write!(
                f,
                "{} is QEMU {}.{}.{}; pefbox needs QEMU {}.{} or newer (powernv9 as measured \
                 on 7.2): install a newer one with `{APT_INSTALL_ALL}` (Debian 12 or later)",
                path.display(),
                version.0,
                version.1,
                version.2,
                MIN_QEMU.0,
                MIN_QEMU.1
            ),
        }
    }
}

impl std::error::Error for ToolError {}

/// The tools found (or the error found) by this process so far.
static STATE: Mutex<BTreeMap<Tool, Result<(), ToolError>>> = Mutex::new(BTreeMap::new());

/// Makes every tool in `tools` available, installing what is missing (see the module docs).
/// Idempotent; the second call for a tool costs one mutex. A failure is remembered too, so
/// concurrent tests see one install attempt and the same error.
pub fn ensure(tools: &[Tool]) -> Result<(), ToolError> {
    let mut state = STATE.lock().unwrap_or_else(PoisonError::into_inner);
    let todo: Vec<Tool> = tools
        .iter()
        .copied()
        .filter(|t| !state.contains_key(t))
        .collect();
    if !todo.is_empty() {
        for (tool, result) in check_and_install(&todo) {
            state.insert(tool, result);
        }
    }
    for t in tools {
        if let Some(Err(e)) = state.get(t) {
            return Err(e.clone());
        }
    }
    Ok(())
}

/// What is missing of `tool` right now (human-readable items; empty: present).
fn missing(tool: Tool) -> Vec<String> {
    match tool {
        Tool::ImageTarget => match image_target_dir() {
            Ok(dir) if dir.is_dir() => Vec::new(),
            Ok(dir) => vec![format!("{}", dir.display())],
            Err(e) => vec![e],
        },
        Tool::Qemu => {
            let mut m = Vec::new();
            if find_on_path("qemu-system-ppc64").is_none() {
                m.push("qemu-system-ppc64".to_string());
            }
            if !Path::new(SKIBOOT).is_file() {
                m.push(SKIBOOT.to_string());
            }
            m
        }
        Tool::Swtpm => ["swtpm", "swtpm_setup"]
            .into_iter()
            .filter(|p| find_on_path(p).is_none())
            .map(String::from)
            .collect(),
    }
}

/// The Debian packages that provide the missing items of `tool`.
fn apt_packages(tool: Tool, missing: &[String]) -> Vec<&'static str> {
    let has = |x: &str| missing.iter().any(|m| m == x);
    let mut p = Vec::new();
    match tool {
        Tool::ImageTarget => {}
        Tool::Qemu => {
            if has("qemu-system-ppc64") {
                p.push("qemu-system-ppc");
            }
            if has(SKIBOOT) {
                p.push("qemu-system-data");
            }
        }
        Tool::Swtpm => {
            if has("swtpm") {
                p.push("swtpm");
            }
            if has("swtpm_setup") {
                p.push("swtpm-tools");
            }
        }
    }
    p
}

fn why(tool: Tool) -> &'static str {
    match tool {
        Tool::ImageTarget => "to build the image",
        Tool::Qemu => "to boot the image",
        Tool::Swtpm => "the TPM the tests and boots talk to",
    }
}

fn check_and_install(todo: &[Tool]) -> Vec<(Tool, Result<(), ToolError>)> {
    let mut results = Vec::new();
    let absent: Vec<Tool> = todo
        .iter()
        .copied()
        .filter(|t| !missing(*t).is_empty())
        .collect();
    // Only installs take the cross-process lock; present tools never touch it.
    let _lock = if absent.is_empty() {
        None
    } else {
        match InstallLock::take() {
            Ok(l) => Some(l),
            Err(e) => {
                let err = ToolError::InstallFailed(e);
                return todo.iter().map(|t| (*t, Err(err.clone()))).collect();
            }
        }
    };
    // Re-checked under the lock: another process may have installed it meanwhile.
    let mut apt: Vec<(Tool, Vec<String>)> = Vec::new();
    for &t in todo {
        let m = if absent.contains(&t) {
            missing(t)
        } else {
            Vec::new()
        };
        if m.is_empty() {
            results.push((t, Ok(())));
        } else if t == Tool::ImageTarget {
            results.push((t, add_image_target()));
        } else {
            apt.push((t, m));
        }
    }
    if !apt.is_empty() {
        let packages: Vec<&str> = apt.iter().flat_map(|(t, m)| apt_packages(*t, m)).collect();
        let items: Vec<String> = apt
            .iter()
            .map(|(t, m)| format!("{} ({})", m.join(", "), why(*t)))
            .collect();
        let installed = apt_install(&packages, &items.join("; "));
        for (t, _) in apt {
            let r = installed.clone().and_then(|()| {
                let still = missing(t);
                if still.is_empty() {
                    Ok(())
                } else {
                    Err(ToolError::InstallFailed(format!(
                        "apt-get installed {} but {} is still missing",
                        packages.join(" "),
                        still.join(", ")
                    )))
                }
            });
            results.push((t, r));
        }
    }
    // The version check runs once per process, after QEMU is known to be present.
    for (t, r) in results.iter_mut() {
        if *t == Tool::Qemu && r.is_ok() {
            if let Some(q) = find_on_path("qemu-system-ppc64") {
                *r = qemu_version(&q).and_then(|v| check_qemu_version(&q, v));
            }
        }
    }
    results
}

/// `Err(QemuTooOld)` if `version` is older than [`MIN_QEMU`].
pub fn check_qemu_version(path: &Path, version: (u32, u32, u32)) -> Result<(), ToolError> {
    if version < MIN_QEMU {
        return Err(ToolError::QemuTooOld {
            path: path.to_path_buf(),
            version,
        });
    }
    Ok(())
}

/// The first `program` file in PATH.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// One line on stderr, written to the descriptor itself so that it shows under `cargo test`
/// too (the test harness captures `eprintln!`, not child processes or direct writes).
fn say(line: fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(io::stderr(), "{line}");
}

/// True when this process runs as root (effective uid 0).
pub fn running_as_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions, cannot fail and touches no memory of ours.
    unsafe { libc::geteuid() == 0 }
}

/// An flock(2) on `target/pef-tools.lock`, held until dropped (the kernel drops it when the
/// file is closed, so a killed process never leaves it held).
struct InstallLock {
    _file: fs::File,
}

impl InstallLock {
    fn take() -> Result<InstallLock, String> {
        let dir = workspace_root().join("target");
        let path = dir.join("pef-tools.lock");
        let file = fs::create_dir_all(&dir)
            .and_then(|()| {
                fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
            })
            .map_err(|e| format!("opening the install lock {}: {e}", path.display()))?;
        loop {
            // SAFETY: flock(2) on a descriptor this function owns (kept open in `file`); it
            // touches no memory.
            let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if r == 0 {
                return Ok(InstallLock { _file: file });
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(format!("locking {}: {e}", path.display()));
            }
        }
    }
}

/// `apt-get update` has run in this process.
static APT_UPDATED: Mutex<bool> = Mutex::new(false);

/// `apt-get update` (once per process) and `apt-get install -y packages`, as root; otherwise
/// the error names the command.
fn apt_install(packages: &[&str], what: &str) -> Result<(), ToolError> {
    if !running_as_root() || find_on_path("apt-get").is_none() {
        let how = if find_on_path("apt-get").is_some() {
            format!("install them with `{APT_INSTALL_ALL}`")
        } else {
            "apt-get is not available: install QEMU >= 7.2 (qemu-system-ppc64 with powernv9 \
             and its skiboot.lid) and swtpm with swtpm_setup with this system's package manager"
                .to_string()
        };
        return Err(ToolError::Missing(format!("missing {what}: {how}")));
    }
    say(format_args!(
        "pef: installing {} with apt-get: missing {what}",
        packages.join(" ")
    ));
    apt_update()?;
    run_apt(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(packages),
        &format!("apt-get install -y {}", packages.join(" ")),
    )
}

fn apt_update() -> Result<(), ToolError> {
    let mut done = APT_UPDATED.lock().unwrap_or_else(PoisonError::into_inner);
    if !*done {
        run_apt(
            Command::new("apt-get").args(["update", "-q"]),
            "apt-get update",
        )?;
        *done = true;
    }
    Ok(())
}

/// Runs an apt command non-interactively, its output on our stderr.
fn run_apt(cmd: &mut Command, what: &str) -> Result<(), ToolError> {
    let status = cmd
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(io::stderr())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| ToolError::InstallFailed(format!("running `{what}`: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(ToolError::InstallFailed(format!(
            "`{what}` failed ({status}); its output is above"
        )))
    }
}

/// The channel pinned in the workspace's rust-toolchain.toml.
pub fn pinned_channel() -> Result<String, String> {
    let path = workspace_root().join("rust-toolchain.toml");
    let text = fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    parse_channel(&text).ok_or_else(|| format!("{} names no channel", path.display()))
}

fn parse_channel(toml: &str) -> Option<String> {
    toml.lines().find_map(|l| {
        let v = l.trim().strip_prefix("channel")?.trim().strip_prefix('=')?;
        let v = v.split('#').next()?.trim().trim_matches('"');
        (!v.is_empty()).then(|| v.to_string())
    })
}

/// `<sysroot>/lib/rustlib/<IMAGE_TARGET>` of the rustc cargo uses in the workspace (env
/// `RUSTC` if set, else `rustc`, run in the workspace so rust-toolchain.toml and
/// `RUSTUP_TOOLCHAIN` pick the toolchain exactly as for the image build).
fn image_target_dir() -> Result<PathBuf, String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("running `{} --print sysroot`: {e}", rustc.to_string_lossy()))?;
    if !out.status.success() {
        return Err(format!(
            "`{} --print sysroot` failed: {}",
            rustc.to_string_lossy(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok(Path::new(&sysroot)
        .join("lib")
        .join("rustlib")
        .join(IMAGE_TARGET))
}

/// `rustup target add IMAGE_TARGET --toolchain T`, T = `RUSTUP_TOOLCHAIN` if set (what cargo
/// runs under), else the pinned channel.
fn add_image_target() -> Result<(), ToolError> {
    let toolchain = match std::env::var("RUSTUP_TOOLCHAIN") {
        Ok(t) if !t.is_empty() => t,
        _ => pinned_channel().map_err(ToolError::Missing)?,
    };
    let cmd = format!("rustup target add {IMAGE_TARGET} --toolchain {toolchain}");
    if find_on_path("rustup").is_none() {
        return Err(ToolError::Missing(format!(
            "the Rust standard library for {IMAGE_TARGET} is missing and rustup is not on \
             PATH: install rustup (https://rustup.rs) and run `{cmd}`, or install that \
             target's standard library for this rustc"
        )));
    }
    say(format_args!(
        "pef: adding the image target ({IMAGE_TARGET}) to Rust {toolchain}: `{cmd}`"
    ));
    let status = Command::new("rustup")
        .args(["target", "add", IMAGE_TARGET, "--toolchain", &toolchain])
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .stdout(io::stderr())
        .status()
        .map_err(|e| ToolError::InstallFailed(format!("running `{cmd}`: {e}")))?;
    if !status.success() {
        return Err(ToolError::InstallFailed(format!(
            "`{cmd}` failed ({status}); its output is above"
        )));
    }
    match image_target_dir() {
        Ok(d) if d.is_dir() => Ok(()),
        Ok(d) => Err(ToolError::InstallFailed(format!(
            "`{cmd}` succeeded but {} is still missing: is RUSTC or RUSTUP_TOOLCHAIN pointing \
             at another toolchain?",
            d.display()
        ))),
        Err(e) => Err(ToolError::InstallFailed(e)),
    }
}

/// Parses the first line of `qemu-system-* --version`:
/// `QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18)` -> (7, 2, 22).
pub fn parse_qemu_version(text: &str) -> Option<(u32, u32, u32)> {
    let first = text.lines().next()?;
    let v = first
        .strip_prefix("QEMU emulator version ")?
        .split_whitespace()
        .next()?;
    let mut parts = v.split('.').map(|p| {
        let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u32>().ok()
    });
    let major = parts.next()??;
    let minor = parts.next()??;
    let micro = parts.next().flatten().unwrap_or(0);
    Some((major, minor, micro))
}

/// Runs `path --version` and parses it (see [`parse_qemu_version`]).
pub fn qemu_version(path: &Path) -> Result<(u32, u32, u32), ToolError> {
    let out = Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ToolError::Version(format!("running `{} --version`: {e}", path.display())))?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_qemu_version(&text).ok_or_else(|| {
        ToolError::Version(format!(
            "`{} --version` did not print a QEMU version ({}): {}",
            path.display(),
            out.status,
            format!("{text}{}", String::from_utf8_lossy(&out.stderr)).trim()
        ))
    })
}

/// A QEMU unpacked in a private prefix (see [`ensure_qemu10`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuInstall {
    /// `qemu-system-ppc64`.
    pub binary: PathBuf,
    /// Its firmware directory, for `-L` (`None`: the binary's built-in default).
    pub data_dir: Option<PathBuf>,
    /// Its version.
    pub version: (u32, u32, u32),
}

/// Where [`ensure_qemu10`] keeps QEMU 10.0.
pub fn qemu10_prefix() -> PathBuf {
    workspace_root().join("target").join("qemu-10.0")
}

/// The Debian packages unpacked into the prefix.
const QEMU10_DEBS: [&str; 3] = ["qemu-system-ppc", "qemu-system-common", "qemu-system-data"];

/// The apt sources file that adds Debian 12's backports suite.
const BACKPORTS_SOURCES: &str = "/etc/apt/sources.list.d/bookworm-backports.sources";
const BACKPORTS_STANZA: &str = "Types: deb\nURIs: http://deb.debian.org/debian\n\
    Suites: bookworm-backports\nComponents: main\n\
    Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n";

/// Serialises [`ensure_qemu10`] within the process.
static QEMU10: Mutex<Option<QemuInstall>> = Mutex::new(None);

/// QEMU 10.0 from Debian 12's bookworm-backports, unpacked (`apt-get download` + `dpkg -x`,
/// nothing installed system-wide) into [`qemu10_prefix`], beside the system's QEMU. Run it
/// with `-L <data_dir>`. A second call finds the prefix and does nothing else than run
/// `--version`. Adding the backports suite to apt's sources needs root; so does installing
/// shared libraries the unpacked binary lacks (checked with `ldd`). Without root, the error
/// names the commands.
pub fn ensure_qemu10() -> Result<QemuInstall, ToolError> {
    let mut cached = QEMU10.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(q) = cached.as_ref() {
        return Ok(q.clone());
    }
    let prefix = qemu10_prefix();
    let q = match qemu10_in(&prefix) {
        Some(q) => q?,
        None => {
            let _lock = InstallLock::take().map_err(ToolError::InstallFailed)?;
            match qemu10_in(&prefix) {
                Some(q) => q?,
                None => {
                    install_qemu10(&prefix)?;
                    qemu10_in(&prefix).ok_or_else(|| {
                        ToolError::InstallFailed(format!(
                            "unpacking QEMU 10.0 into {} left no usable qemu-system-ppc64",
                            prefix.display()
                        ))
                    })??
                }
            }
        }
    };
    *cached = Some(q.clone());
    Ok(q)
}

/// The QEMU in a complete prefix (`None`: not there yet).
fn qemu10_in(prefix: &Path) -> Option<Result<QemuInstall, ToolError>> {
    let binary = prefix.join("usr/bin/qemu-system-ppc64");
    let data_dir = prefix.join("usr/share/qemu");
    if !binary.is_file() || !data_dir.join("skiboot.lid").is_file() {
        return None;
    }
    Some(qemu_version(&binary).and_then(|version| {
        if (version.0, version.1) != (10, 0) {
            return Err(ToolError::Version(format!(
                "{} is QEMU {}.{}.{}, not 10.0: remove {} and try again",
                binary.display(),
                version.0,
                version.1,
                version.2,
                prefix.display()
            )));
        }
        Ok(QemuInstall {
            binary,
            data_dir: Some(data_dir),
            version,
        })
    }))
}

/// The commands that set up the prefix by hand.
fn qemu10_manual(prefix: &Path) -> String {
    format!(
        "as root: write {BACKPORTS_SOURCES} with\n{BACKPORTS_STANZA}then run `apt-get update`; \
         then (any user) `mkdir -p /tmp/q10 && cd /tmp/q10 && apt-get download -t \
         bookworm-backports {debs} && for d in *.deb; do dpkg -x \"$d\" {p}; done`",
        debs = QEMU10_DEBS.join(" "),
        p = prefix.display()
    )
}

/// The backports candidate of `qemu-system-ppc` (`apt-cache policy` version table), if any.
fn backports_candidate() -> Option<String> {
    let out = Command::new("apt-cache")
        .args(["policy", "qemu-system-ppc"])
        .stdin(Stdio::null())
        .output()
        .ok()?;
    parse_backports_version(&String::from_utf8_lossy(&out.stdout))
}

/// The version listed right before a `bookworm-backports` source line in `apt-cache policy`.
fn parse_backports_version(policy: &str) -> Option<String> {
    let mut version = None;
    for line in policy.lines() {
        let t = line.trim_start_matches([' ', '*']).trim();
        let mut w = t.split_whitespace();
        match (w.next(), w.next(), w.next()) {
            // "1:10.0.2+ds-2+deb13u1~bpo12+1 100": a version row (version, priority).
            (Some(v), Some(p), None)
                if p.parse::<i32>().is_ok() && v.contains(|c: char| c.is_ascii_digit()) =>
            {
                version = Some(v.to_string());
            }
            _ if t.contains("bookworm-backports") => return version,
            _ => {}
        }
    }
    None
}

fn install_qemu10(prefix: &Path) -> Result<(), ToolError> {
    let root = running_as_root();
    if backports_candidate().is_none() {
        if !root {
            return Err(ToolError::Missing(format!(
                "QEMU 10.0 is not in {} and Debian's bookworm-backports suite is not in apt's \
                 sources; adding it needs root. {}",
                prefix.display(),
                qemu10_manual(prefix)
            )));
        }
        say(format_args!(
            "pef: adding Debian's bookworm-backports suite to apt's sources ({BACKPORTS_SOURCES}) \
             to fetch QEMU 10.0"
        ));
        fs::write(BACKPORTS_SOURCES, BACKPORTS_STANZA)
            .map_err(|e| ToolError::InstallFailed(format!("writing {BACKPORTS_SOURCES}: {e}")))?;
        // Backports are NotAutomatic (priority 100): adding the suite upgrades nothing.
        // Measured here after adding it: `apt-cache policy qemu-system-ppc` kept
        // `Candidate: 1:7.2+dfsg-7+deb12u18+b3` (500) and listed
        // 1:10.0.2+ds-2+deb13u1~bpo12+1 at priority 100.
        run_apt(
            Command::new("apt-get").args(["update", "-q"]),
            "apt-get update",
        )?;
        if backports_candidate().is_none() {
            return Err(ToolError::InstallFailed(format!(
                "after adding {BACKPORTS_SOURCES} and `apt-get update`, `apt-cache policy \
                 qemu-system-ppc` lists no bookworm-backports version (is this Debian 12?)"
            )));
        }
    }
    let staging = PathBuf::from(format!("{}.partial", prefix.display()));
    let debs = staging.join("debs");
    let unpacked = staging.join("root");
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&debs)
        .and_then(|()| fs::create_dir_all(&unpacked))
        .map_err(|e| ToolError::InstallFailed(format!("creating {}: {e}", staging.display())))?;
    say(format_args!(
        "pef: fetching QEMU 10.0 from bookworm-backports ({}) into {} (no system package changes)",
        QEMU10_DEBS.join(", "),
        prefix.display()
    ));
    run_apt(
        Command::new("apt-get")
            .args(["download", "-q", "-t", "bookworm-backports"])
            // As root, apt downloads as `_apt`, which cannot write here: say so up front
            // instead of letting it warn.
            .args(if root {
                &["-o", "APT::Sandbox::User=root"][..]
            } else {
                &[][..]
            })
            .args(QEMU10_DEBS)
            .current_dir(&debs),
        &format!(
            "apt-get download -t bookworm-backports {}",
            QEMU10_DEBS.join(" ")
        ),
    )?;
    let files: Vec<PathBuf> = fs::read_dir(&debs)
        .map_err(|e| ToolError::InstallFailed(format!("reading {}: {e}", debs.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    if files.len() != QEMU10_DEBS.len() {
        return Err(ToolError::InstallFailed(format!(
            "apt-get download left {} .deb files in {}, expected {}",
            files.len(),
            debs.display(),
            QEMU10_DEBS.len()
        )));
    }
    for deb in &files {
        let ok = Command::new("dpkg")
            .arg("-x")
            .arg(deb)
            .arg(&unpacked)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(ToolError::InstallFailed(format!(
                "`dpkg -x {} {}` failed",
                deb.display(),
                unpacked.display()
            )));
        }
    }
    let binary = unpacked.join("usr/bin/qemu-system-ppc64");
    let libs = missing_libraries(&binary)?;
    if !libs.is_empty() {
        // The binary's own Depends (minus the qemu packages unpacked here) are bookworm
        // packages: installing them is what `apt-get install -t bookworm-backports` would do.
        let deb = files
            .iter()
            .find(|f| {
                f.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("qemu-system-ppc_"))
            })
            .ok_or_else(|| ToolError::InstallFailed("no qemu-system-ppc .deb".into()))?;
        let deps = deb_depends(deb)?;
        let what = format!(
            "shared libraries {} that QEMU 10.0 ({}) needs",
            libs.join(", "),
            binary.display()
        );
        let pkgs: Vec<&str> = deps.iter().map(String::as_str).collect();
        if !root {
            return Err(ToolError::Missing(format!(
                "missing {what}: install them with `sudo apt-get install -y {}`",
                pkgs.join(" ")
            )));
        }
        apt_install(&pkgs, &what)?;
        let still = missing_libraries(&binary)?;
        if !still.is_empty() {
            return Err(ToolError::InstallFailed(format!(
                "after installing {}, {} still lacks {}",
                pkgs.join(" "),
                binary.display(),
                still.join(", ")
            )));
        }
    }
    let _ = fs::remove_dir_all(prefix);
    fs::rename(&unpacked, prefix).map_err(|e| {
        ToolError::InstallFailed(format!(
            "moving {} to {}: {e}",
            unpacked.display(),
            prefix.display()
        ))
    })?;
    let _ = fs::remove_dir_all(&staging);
    Ok(())
}

/// The `ldd` lines of `binary` that say `not found` (library names).
fn missing_libraries(binary: &Path) -> Result<Vec<String>, ToolError> {
    let out = Command::new("ldd")
        .arg(binary)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            ToolError::InstallFailed(format!("running `ldd {}`: {e}", binary.display()))
        })?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("not found"))
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect())
}

/// The package names in a .deb's `Depends`, without the qemu packages and version bounds.
fn deb_depends(deb: &Path) -> Result<Vec<String>, ToolError> {
    let out = Command::new("dpkg-deb")
        .args(["-f"])
        .arg(deb)
        .arg("Depends")
        .output()
        .map_err(|e| ToolError::InstallFailed(format!("running dpkg-deb -f: {e}")))?;
    Ok(parse_depends(&String::from_utf8_lossy(&out.stdout)))
}

fn parse_depends(depends: &str) -> Vec<String> {
    depends
        .split(',')
        .filter_map(|d| {
            // "a (>= 1) | b": the first alternative's name.
            let name = d.split('|').next()?.split_whitespace().next()?;
            let name = name.split(':').next()?;
            (!name.is_empty() && !name.starts_with("qemu-")).then(|| name.to_string())
        })
        .collect()
}

/// `swtpm --version`'s number, e.g. `0.7.1`.
pub fn swtpm_version() -> Result<String, String> {
    let out = Command::new("swtpm")
        .arg("--version")
        .output()
        .map_err(|e| format!("swtpm: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .map(|v| v.trim_end_matches(',').to_string())
        .ok_or_else(|| format!("swtpm: no version in {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_version_parses_debian_and_upstream_banners() {
        let debian = "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\n\
                      Copyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n";
        assert_eq!(parse_qemu_version(debian), Some((7, 2, 22)));
        let bpo = "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\n\
                   Copyright (c) 2003-2025 Fabrice Bellard and the QEMU Project developers\n";
        assert_eq!(parse_qemu_version(bpo), Some((10, 0, 2)));
        assert_eq!(
            parse_qemu_version("QEMU emulator version 6.2.0\n"),
            Some((6, 2, 0))
        );
        assert_eq!(
            parse_qemu_version("QEMU emulator version 9.1.50 (v9.1.0-1234-gdeadbeef)"),
            Some((9, 1, 50))
        );
        for garbage in [
            "",
            "qemu-system-ppc64: command not found",
            "QEMU emulator version x.y (foo)",
            "QEMU emulator version 7",
            "Linux 6.1.0-9-amd64",
        ] {
            assert_eq!(parse_qemu_version(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn qemu_older_than_7_2_is_refused_with_the_install_command() {
        let p = Path::new("/usr/bin/qemu-system-ppc64");
        assert_eq!(check_qemu_version(p, (7, 2, 0)), Ok(()));
        assert_eq!(check_qemu_version(p, (10, 0, 2)), Ok(()));
        let e = check_qemu_version(p, (6, 2, 0)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/usr/bin/qemu-system-ppc64 is QEMU 6.2.0; pefbox needs QEMU 7.2 or newer \
             (powernv9 as measured on 7.2): install a newer one with `sudo apt-get install -y \
             qemu-system-ppc qemu-system-data swtpm swtpm-tools` (Debian 12 or later)"
        );
        assert!(check_qemu_version(p, (7, 1, 99)).is_err());
    }

    #[test]
    fn pinned_channel_is_read_from_rust_toolchain_toml() {
        assert_eq!(
            parse_channel("[toolchain]\nchannel = \"1.95.0\"\ncomponents = []\n").as_deref(),
            Some("1.95.0")
        );
        assert_eq!(parse_channel("[toolchain]\nprofile = \"minimal\"\n"), None);
        // The real file pins a channel.
        assert!(!pinned_channel().unwrap().is_empty());
    }

    #[test]
    fn backports_version_comes_from_apt_cache_policy() {
        let policy = "qemu-system-ppc:\n  Installed: 1:7.2+dfsg-7+deb12u18+b3\n  \
            Candidate: 1:7.2+dfsg-7+deb12u18+b3\n  Version table:\n     \
            1:10.0.2+ds-2+deb13u1~bpo12+1 100\n        \
            100 http://deb.debian.org/debian bookworm-backports/main amd64 Packages\n \
            *** 1:7.2+dfsg-7+deb12u18+b3 500\n        \
            500 http://deb.debian.org/debian bookworm/main amd64 Packages\n        \
            100 /var/lib/dpkg/status\n";
        assert_eq!(
            parse_backports_version(policy).as_deref(),
            Some("1:10.0.2+ds-2+deb13u1~bpo12+1")
        );
        let without = "qemu-system-ppc:\n  Installed: (none)\n  Candidate: 1:7.2\n  \
            Version table:\n     1:7.2 500\n        500 http://deb.debian.org/debian \
            bookworm/main amd64 Packages\n";
        assert_eq!(parse_backports_version(without), None);
    }

    #[test]
    fn deb_depends_keep_first_alternatives_and_drop_qemu() {
        let d = "libaio1 (>= 0.3.93), libc6 (>= 2.34), libfoo:any | libbar, \
                 qemu-system-common (= 1:10.0.2), qemu-system-data (>> 1:10.0.2+ds~)\n";
        assert_eq!(parse_depends(d), vec!["libaio1", "libc6", "libfoo"]);
    }

    #[test]
    fn ensure_finds_present_tools_without_installing_and_fast_the_second_time() {
        // On the machines this runs on the tests need swtpm anyway; ensure installs it if
        // absent, after which a second call does no work at all.
        let first = std::time::Instant::now();
        ensure(&[Tool::Swtpm, Tool::ImageTarget]).unwrap();
        let first = first.elapsed();
        assert!(missing(Tool::Swtpm).is_empty());
        assert!(missing(Tool::ImageTarget).is_empty());
        let t = std::time::Instant::now();
        for _ in 0..1000 {
            ensure(&[Tool::Swtpm, Tool::ImageTarget]).unwrap();
        }
        say(format_args!(
            "ensure(Swtpm, ImageTarget): first call {first:?}, then {:?} per call",
            t.elapsed() / 1000
        ));
        assert!(
            t.elapsed() < std::time::Duration::from_millis(50),
            "1000 repeated calls took {:?}",
            t.elapsed()
        );
    }
}
