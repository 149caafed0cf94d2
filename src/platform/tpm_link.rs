//! The hypervisor's TPM link, one [`Transport`] for both kinds the device tree can name
//! ([`BootInfo::tpm_link`](super::bootinfo::BootInfo::tpm_link) chooses): the Nuvoton TPM on
//! an OPAL I2C bus of an OpenPOWER system ([`super::tpm_i2c`]), or the launcher's extra 16550
//! that reaches swtpm under QEMU ([`super::tpm_uart`]). The firmware provisions over it, then
//! hands it to the hypervisor.

use super::bootinfo::{I2cTpmMap, TpmLink};
use super::tpm_i2c::{self, I2cTpmLink};
use super::tpm_uart::UartTpmLink;
use super::uart::Uart16550;
use crate::tpm::transport::{Transport, TransportError};
#[cfg(feature = "selftest")]
use core::sync::atomic::{AtomicU64, Ordering};

/// Timebase ticks spent inside [`Link::transact`] since boot (for the benchmark self-test:
/// the handler's own cost is an hcall's time minus its time on the link). Self-test image
/// only.
#[cfg(feature = "selftest")]
#[link_section = ".hvdata"]
pub static LINK_TICKS: AtomicU64 = AtomicU64::new(0);
/// Round trips made by [`Link::transact`] since boot. Self-test image only.
#[cfg(feature = "selftest")]
#[link_section = ".hvdata"]
pub static LINK_CALLS: AtomicU64 = AtomicU64::new(0);

/// The TPM link in use.
pub enum Link {
    /// The 16550 to swtpm (QEMU).
    Uart(UartTpmLink),
    /// The Nuvoton TPM over I2C (OpenPOWER POWER9).
    I2c(I2cTpmLink),
}

impl Link {
    /// The link the tree describes (`None` for [`TpmLink::None`]), timing with a timebase of
    /// `tb_hz`.
    pub fn open(choice: TpmLink<'_>, tb_hz: u64) -> Option<Link> {
        match choice {
            TpmLink::I2c(t) => Some(Link::I2c(tpm_i2c::open(t.bus, t.addr, t.map, tb_hz))),
            TpmLink::Uart(u) => {
                // SAFETY: the address was translated from the device tree's ns16550 node that
                // skiboot did not reserve; only this link (firmware, then hypervisor) drives it.
                let uart = unsafe { Uart16550::new(u.mmio) };
                Some(Link::Uart(UartTpmLink::new(uart, tb_hz)))
            }
            TpmLink::None => None,
        }
    }

    /// What the link knows of its last failure beyond a [`TransportError`], for the console:
    /// the I2C register access that failed all its tries, and where (the UART link keeps
    /// nothing more).
    pub fn last_fault(&self) -> Option<alloc::string::String> {
        match self {
            Link::Uart(_) => None,
            Link::I2c(l) => l.stats().last_bus_fault.map(|f| {
                let d = l.bus();
                alloc::format!("the I2C TPM at {:#x} on OPAL bus {}: {f}", d.addr, d.bus)
            }),
        }
    }
}

/// The banner's name of a register map.
pub fn map_name(map: I2cTpmMap) -> &'static str {
    match map {
        I2cTpmMap::Npct650 => "NPCT650 register map",
        I2cTpmMap::TcgI2c => "TCG I2C register map",
    }
}

impl Transport for Link {
    fn transact(&mut self, command: &[u8], response: &mut [u8]) -> Result<usize, TransportError> {
        #[cfg(feature = "selftest")]
        let t0 = crate::arch::timebase();
        let r = match self {
            Link::Uart(l) => l.transact(command, response),
            Link::I2c(l) => l.transact(command, response),
        };
        #[cfg(feature = "selftest")]
        {
            LINK_TICKS.fetch_add(crate::arch::timebase() - t0, Ordering::Relaxed);
            LINK_CALLS.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}
