//! `pef build`: the image to flash, its sizes and its path.

use std::process::ExitCode;

use xtask::cli::BuildArgs;
use xtask::launcher::{self, ImageKind};

use crate::stop_code;

/// `pef build`: the image to flash (or, with `--selftest`, the self-test image), its sizes,
/// and last its path.
pub(crate) fn cmd_build(args: BuildArgs) -> ExitCode {
    let kind = if args.selftest {
        ImageKind::Selftest
    } else {
        ImageKind::Flash
    };
    let what = match kind {
        ImageKind::Flash => "the image to flash (no selftest feature)",
        ImageKind::Selftest => "the self-test image (--features selftest)",
    };
    if !args.quiet {
        eprintln!(
            "pef: building {what}: cargo build --release --target {} -p pefbox --target-dir {}",
            launcher::IMAGE_TARGET,
            kind.target_dir().display()
        );
    }
    let image = match launcher::build_image_opts(kind, args.quiet) {
        Ok(p) => p,
        Err(e) => return stop_code(e.into()),
    };
    let loaded = launcher::image_size(&image)
        .map(|s| format!("{} bytes loaded (PT_LOAD), {} bytes ELF", s.loaded, s.file))
        .unwrap_or_else(|e| format!("unreadable ELF ({e})"));
    let stripped = launcher::stripped_size(&image)
        .map(|n| format!("{n} bytes stripped (--strip-all)"))
        .unwrap_or_else(|e| format!("stripped size unknown: {e}"));
    println!("size: {loaded}, {stripped}");
    println!("image: {}", image.display());
    ExitCode::SUCCESS
}
