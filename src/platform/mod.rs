//! powernv platform: device-tree facts ([`bootinfo`], portable), the `dump-dt` lines
//! ([`dt_dump`], portable), and on the target the OPAL
//! calls, the LPC 16550 UARTs and the console.
pub mod bootinfo;
pub mod dt_dump;

#[cfg(target_arch = "powerpc64")]
pub mod console;
#[cfg(target_arch = "powerpc64")]
pub mod layout;
#[cfg(target_arch = "powerpc64")]
pub mod opal;
#[cfg(target_arch = "powerpc64")]
pub mod tpm_uart;
#[cfg(target_arch = "powerpc64")]
pub mod uart;
