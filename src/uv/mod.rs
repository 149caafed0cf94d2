//! placeholder

pub mod cpio;
pub mod esm;
