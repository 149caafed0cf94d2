//! Target glue (powerpc64 only): what gives the portable role crates their hardware.
//! [`hv`] holds the one unsafe guest-memory copy and the machine's hypervisor instance;
//! [`uv`] runs the ultravisor over real `sc 1` hcalls from its shared page.
pub mod hv;
pub mod uv;
