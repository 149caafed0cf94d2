//! Host side of pefbox: swtpm management, the framing relay, the QEMU launcher,
//! the console verdict, the ESM blob builder, and the demo SVM's payload (a tiny POWER program
//! assembled here). The `pef` binary is its CLI.

pub mod cli;
pub mod esm;
/// Register-level simulators of the NPCT650 and TCG I2C TPMs over swtpm, with fault injection.
pub mod i2c_sim;
pub mod launcher;
pub mod payload;
pub mod relay;
pub mod report;
pub mod svm;
pub mod swtpm;
pub mod tools;
pub mod verdict;
