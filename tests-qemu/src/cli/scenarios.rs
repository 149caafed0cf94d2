//! `pef scenarios`'s flags.

use clap::Args;

use super::BootOpts;

/// `pef scenarios`.
#[derive(Debug, Args, Clone, PartialEq, Eq, Default)]
pub struct ScenariosArgs {
    /// Options shared by every booting subcommand.
    #[command(flatten)]
    pub boot: BootOpts,
}
