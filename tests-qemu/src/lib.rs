//! Host side of pefbox: swtpm management, the framing relay, the QEMU launcher,
//! the console verdict, and the ESM blob builder. The `pef` binary is its CLI.

pub mod esm;
pub mod fdt_writer;
pub mod launcher;
pub mod relay;
pub mod svm;
pub mod swtpm;
pub mod tools;
pub mod verdict;
