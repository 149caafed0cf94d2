//! powernv platform: device-tree facts ([`bootinfo`], portable), the `dump-dt` lines
//! ([`dt_dump`], portable), and on the target the OPAL
//! calls, the LPC 16550 UARTs, the console and the TPM links ([`tpm_link`]: over a 16550,
//! [`tpm_uart`], or over I2C, [`tpm_i2c`]).
pub mod bootinfo;
pub mod dt_dump;

#[cfg(target_arch = "powerpc64")]
pub mod console;
#[cfg(target_arch = "powerpc64")]
pub mod layout;
#[cfg(target_arch = "powerpc64")]
pub mod opal;
#[cfg(target_arch = "powerpc64")]
pub mod tpm_i2c;
#[cfg(target_arch = "powerpc64")]
pub mod tpm_link;
#[cfg(target_arch = "powerpc64")]
pub mod tpm_uart;
#[cfg(target_arch = "powerpc64")]
pub mod uart;
