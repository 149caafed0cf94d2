//! Target glue (powerpc64 only): what gives the portable role crates their hardware.
//! [`hv`] holds the one unsafe guest-memory copy and the machine's hypervisor instance;
//! [`hvp`] runs that hypervisor in a partition of its own and reflects every hcall to it;
//! [`uv`] runs the ultravisor over real `sc 1` hcalls from its shared page; [`svm`] runs a
//! secure VM in a partition of its own.
pub mod hv;
pub mod hvp;
pub mod svm;
pub mod uv;
