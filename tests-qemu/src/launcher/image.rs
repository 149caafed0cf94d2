//! The image: which kind to build, the cargo build that makes it, and its sizes.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use super::{io_err, workspace_root, LaunchError, IMAGE_TARGET};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
