//! `pef build`'s flags and exit codes.

use clap::Args;

/// `pef build`.
#[derive(Debug, Args, Clone, PartialEq, Eq, Default)]
pub struct BuildArgs {
    /// The release profile (the default: the image is always built with it; accepted so that
    /// `cargo pef build --release` reads as it does)
    #[arg(long)]
    pub release: bool,
    /// Build the self-test image instead (feature `selftest`, what `pef run` boots)
    #[arg(long)]
    pub selftest: bool,
    /// No cargo progress lines (the size and `image:` lines are still printed)
    #[arg(short, long)]
    pub quiet: bool,
}

/// The exit codes of `pef build`.
pub const BUILD_EXIT_CODES: &str = "\
Exit status:
  0    the image was built (its path is the last line printed)
  2    usage error
  3    the image target could not be installed or the image did not build";
