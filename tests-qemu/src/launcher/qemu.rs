//! The QEMU side of a boot: its command line, its version and machine checks, and the
//! command lines printed for a user (gdb, the QEMU invocation).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use super::{image_bootargs, LaunchError, RunConfig, SvmLoad};

/// Checks that QEMU (with skiboot) and swtpm are installed, installing them with apt-get when
/// running as root on a machine that has it; otherwise the error names the command. See
/// [`crate::tools::ensure`].
pub fn ensure_tools() -> Result<(), LaunchError> {
    crate::tools::ensure(&[crate::tools::Tool::Qemu, crate::tools::Tool::Swtpm])
        .map_err(|e| LaunchError::MissingTool(e.to_string()))
}

/// The machines the image boots on (`-M`); the first is the default. `powernv10-rainier`
/// (QEMU 8.2 and later) is POWER10 with the Rainier board's I2C devices (a PCA9552 and a
/// PCA9554 on engine 2's bus 1), the one QEMU machine with a device on an OPAL I2C bus: QEMU
/// 10.0.2's `-device` cannot attach one to a `pnv-i2c` bus (measured: "Bus 'pnv-i2c.0' not
/// found").
pub const MACHINES: [&str; 3] = ["powernv9", "powernv10", "powernv10-rainier"];

/// Which QEMU ran a boot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QemuId {
    /// The program.
    pub program: PathBuf,
    /// `x.y.z` from `--version`, or `"unknown"`.
    pub version: String,
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
            MACHINES.join(", ")
        )));
    }
    // Debian 12's QEMU 7.2 has no powernv10-rainier: say so before booting.
    let out = std::process::Command::new(&id.program)
        .args(["-M", "help"])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            LaunchError::MissingTool(format!("running `{} -M help`: {e}", id.program.display()))
        })?;
    let list = String::from_utf8_lossy(&out.stdout);
    if !has_machine(&list, machine) {
        return Err(LaunchError::MissingTool(format!(
            "QEMU {} ({}) has no machine {machine}; QEMU 10.0 has it: pass --qemu {} \
             (the test command unpacks QEMU 10.0 there from Debian's bookworm-backports)",
            id.version,
            id.program.display(),
            crate::tools::qemu10_prefix()
                .join("usr/bin/qemu-system-ppc64")
                .display()
        )));
    }
    Ok(())
}

/// Whether `-M help`'s `list` (one `name  description` line per machine) names `machine`.
fn has_machine(list: &str, machine: &str) -> bool {
    list.lines()
        .any(|l| l.split_whitespace().next() == Some(machine))
}

/// The first word of the image's banner line (the console protocol).
pub use pefbox::report::BANNER;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_machine_is_found_by_its_first_word_in_the_help_list() {
        let list =
            "Supported machines are:\npowernv10            IBM PowerNV (Non-Virtualized) POWER10\n\
                    powernv10-rainier    IBM PowerNV (Non-Virtualized) POWER10 Rainier\n\
                    powernv9             IBM PowerNV (Non-Virtualized) POWER9 (default)\n";
        assert!(has_machine(list, "powernv10-rainier"));
        assert!(has_machine(list, "powernv10"));
        assert!(!has_machine(list, "powernv10-rain"));
        assert!(!has_machine(
            "powernv9 IBM PowerNV POWER9\n",
            "powernv10-rainier"
        ));
    }

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
}
