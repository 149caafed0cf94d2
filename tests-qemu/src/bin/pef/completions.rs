//! `pef completions`: a shell completion script on stdout.

use std::process::ExitCode;

use clap::CommandFactory;
use xtask::cli::Cli;

/// Prints the completion script for `shell`.
pub(crate) fn cmd_completions(shell: clap_complete::Shell) -> ExitCode {
    clap_complete::generate(shell, &mut Cli::command(), "pef", &mut std::io::stdout());
    ExitCode::SUCCESS
}
