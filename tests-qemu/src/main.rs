//! `pef`: the host launcher. Placeholder.
fn main() {}
