//! The secure VM's kernel and bootargs as QEMU loads them: the `-append` tokens and the
//! checked inputs of a boot.

use std::fs;
use std::path::PathBuf;

use super::{io_err, LaunchError, RunConfig, TempFile};

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

/// Checks the SVM inputs of a boot and writes the bootargs file (removed when the returned
/// guard drops). Errors name the file and the limit.
pub(super) fn prepare_svm_load(
    cfg: &RunConfig,
) -> Result<(SvmLoad, Option<TempFile>), LaunchError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launcher::{qemu_args, run};

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
}
