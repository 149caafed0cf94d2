//! Host side of pefbox: swtpm management, the framing relay, the QEMU launcher,
//! the console verdict, and the ESM blob builder. The `pef` binary is its CLI.

pub mod cli;
pub mod esm;
pub mod launcher;
pub mod relay;
pub mod report;
pub mod svm;
pub mod swtpm;
pub mod tools;
pub mod verdict;
