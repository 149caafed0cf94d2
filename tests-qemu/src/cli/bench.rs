//! `pef bench`'s flags.

use clap::Args;

use super::BootOpts;

/// `pef bench`.
#[derive(Debug, Args, Clone, PartialEq, Eq, Default)]
pub struct BenchArgs {
    /// Options shared by every booting subcommand.
    #[command(flatten)]
    pub boot: BootOpts,
    /// Number of demo boots, after one provisioning boot
    #[arg(long, value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub runs: u32,
}
