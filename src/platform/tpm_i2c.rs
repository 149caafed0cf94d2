//! The hypervisor's I2C TPM link: the Nuvoton TPM of an OpenPOWER POWER9 system, reached by
//! the portable protocol of [`crate::tpm_i2c`] over OPAL_I2C_REQUEST.
//!
//! The bus ([`OpalI2c`]) makes each register access from where it runs:
//! - in hypervisor state (the firmware's provisioning, before the hypervisor has a partition),
//!   straight through OPAL ([`opal::i2c_transfer`]);
//! - in the hypervisor partition, which has no OPAL (OPAL runs in hypervisor state), through
//!   the ultravisor with this image's ultracall [`crate::papr::UV_PEFBOX_I2C`] ([`uv_i2c`]),
//!   which serves only the device the device tree names (`target::hvp::allow_i2c`).
//!
//! The clock is the timebase ([`Timebase`]). The waits are the TCG ones
//! ([`crate::tpm_i2c::Timeouts::TCG`]) but for a command's execution, bounded here by
//! [`COMMAND_TIMEOUT_MS`], the UART link's bound for key generation: the ultravisor stops a
//! hypervisor that has not answered after 40 s (`target::hvp`), so a longer wait would turn a
//! slow chip's H_RESOURCE into H_HARDWARE.

use super::opal::{self, I2cOp};
use crate::arch;
use crate::tpm_i2c::{Clock, Config, I2cBus, I2cError, RegisterMap, Timeouts, TpmI2c};

/// The bound of a command's execution (tpmGo to dataAvail), as the UART link's
/// [`super::tpm_uart::LONG_TIMEOUT_MS`].
pub const COMMAND_TIMEOUT_MS: u64 = super::tpm_uart::LONG_TIMEOUT_MS;

/// OPAL_I2C_NACK_RCVD: nothing acknowledged the address.
const OPAL_I2C_NACK_RCVD: i64 = -23;
/// OPAL_I2C_TIMEOUT and OPAL_TIMEOUT.
const OPAL_TIMEOUTS: [i64; 2] = [-17, -33];

/// One device on an OPAL I2C bus, as [`I2cBus`]: SMBus register reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpalI2c {
    /// The bus's `ibm,opal-id`.
    pub bus: u32,
    /// The device's 7-bit address.
    pub addr: u16,
}

impl OpalI2c {
    fn transfer(&self, write: bool, reg: u8, buf: &mut [u8]) -> Result<(), I2cError> {
        let rc = if arch::hypervisor_state() {
            let op = if write { I2cOp::Write } else { I2cOp::Read };
            opal::i2c_transfer(self.bus, self.addr, reg, op, buf).map_err(|e| e.code())
        } else {
            uv_i2c(write, self.bus, self.addr, reg, buf)
        };
        rc.map_err(|c| match c {
            OPAL_I2C_NACK_RCVD => I2cError::Nack,
            c if OPAL_TIMEOUTS.contains(&c) => I2cError::Timeout,
            c => I2cError::Bus(c),
        })
    }
}

impl I2cBus for OpalI2c {
    fn read_reg(&mut self, reg: u8, data: &mut [u8]) -> Result<(), I2cError> {
        self.transfer(false, reg, data)
    }

    fn write_reg(&mut self, reg: u8, data: &[u8]) -> Result<(), I2cError> {
        let mut buf = [0u8; 256];
        let Some(b) = buf.get_mut(..data.len()) else {
            return Err(I2cError::Bus(opal::OPAL_PARAMETER));
        };
        b.copy_from_slice(data);
        self.transfer(true, reg, b)
    }
}

/// One OPAL I2C register transfer from the hypervisor partition, through the ultravisor
/// ([`crate::papr::UV_PEFBOX_I2C`]): `write` or read `buf` (1..=256 bytes, in the
/// hypervisor's own memory) at register `reg` of the device at `addr` on OPAL bus `bus`.
/// `Err` is the OPAL status (OPAL_PERMISSION, -8, for a device the ultravisor does not allow).
pub fn uv_i2c(write: bool, bus: u32, addr: u16, reg: u8, buf: &mut [u8]) -> Result<(), i64> {
    let args = [
        u64::from(write),
        u64::from(bus),
        u64::from(addr),
        u64::from(reg),
        buf.as_mut_ptr() as u64,
        buf.len() as u64,
        0,
        0,
        0,
    ];
    match arch::hcall(crate::papr::UV_PEFBOX_I2C, args).0 {
        0 => Ok(()),
        rc => Err(rc),
    }
}

/// The timebase, as the link's [`Clock`], at the frequency it was made with (kept here: the
/// hypervisor partition does not map the image's `.data`, where [`arch::timebase_hz`] is).
#[derive(Debug, Clone, Copy)]
pub struct Timebase {
    /// Ticks per second.
    pub hz: u64,
}

impl Clock for Timebase {
    fn now_us(&mut self) -> u64 {
        let us = u128::from(arch::timebase()) * 1_000_000 / u128::from(self.hz.max(1));
        u64::try_from(us).unwrap_or(u64::MAX)
    }

    fn delay_us(&mut self, us: u64) {
        let ticks = (self.hz / 1_000_000).saturating_mul(us.max(1));
        let start = arch::timebase();
        while arch::timebase().wrapping_sub(start) < ticks {
            core::hint::spin_loop();
        }
    }
}

/// The I2C TPM link.
pub type I2cTpmLink = TpmI2c<OpalI2c, Timebase>;

/// The link to the TPM at `addr` on OPAL bus `bus`, speaking `map`, timed by a timebase of
/// `tb_hz` ticks per second.
pub fn open(bus: u32, addr: u16, map: RegisterMap, tb_hz: u64) -> I2cTpmLink {
    let mut cfg = Config::new(map);
    cfg.timeouts = Timeouts {
        command_us: COMMAND_TIMEOUT_MS * 1000,
        ..Timeouts::TCG
    };
    TpmI2c::new(OpalI2c { bus, addr }, Timebase { hz: tb_hz }, cfg)
}
