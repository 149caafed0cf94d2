//! The TPM FIFO protocol over I2C: the Nuvoton TPM of an OpenPOWER POWER9 system.
//!
//! [`TpmI2c`] is a [`tpm::Transport`] over two seams the caller provides: an [`I2cBus`]
//! (register reads and writes at one 1-byte sub-address, SMBus style; the image implements it
//! over `OPAL_I2C_REQUEST`, host tests over a register-level simulator) and a [`Clock`]
//! (microseconds and a delay). Two register maps are spoken ([`RegisterMap`]):
//!
//! - [`RegisterMap::Npct650`], the map of skiboot's driver for `nuvoton,npct650`
//!   (skiboot `libstb/drivers/tpm_i2c_nuvoton.c`): TPM_STS 0x00 (1 byte), burstCount 0x01
//!   (1 byte: "In i2C, burstCount is 1 byte"), FIFO write 0x20, FIFO read 0x40, VID/DID 0x60
//!   (the VID/DID offset from the later skiboot header, e.g. Dasharo/skiboot). No locality,
//!   no guard times, no checksum.
//! - [`RegisterMap::TcgI2c`], the TCG PC Client PTP I2C map (NPCT75x), as Linux
//!   `drivers/char/tpm/tpm_tis_i2c.c` uses it: TPM_LOC_SEL 0x00, TPM_ACCESS 0x04, TPM_STS
//!   0x18 (4 bytes little-endian, burstCount in bits 8..23, Linux `tpm_tis_core.c`
//!   `get_burstcount`: `(value >> 8) & 0xFFFF`), TPM_DATA_FIFO 0x24,
//!   TPM_I2C_INTERFACE_CAPABILITY 0x30, TPM_DATA_CSUM_ENABLE 0x40, TPM_DATA_CSUM 0x44,
//!   TPM_DID_VID 0x48.
//!
//! # The flow of one [`Transport::transact`]
//!
//! 1. TCG map, first use or after a failure: read the interface capability (guard times) with
//!    the default guard time, write TPM_LOC_SEL = 0, enable the data checksum.
//! 2. TCG map: request locality 0 (TPM_ACCESS requestUse, wait tpmRegValidSts|activeLocality,
//!    bound A).
//! 3. commandReady: write it, wait for it (bound B), twice at most (skiboot
//!    `tpm_set_command_ready`: "The first write to command ready may just abort an
//!    outstanding command"). This is also the recovery of a chip left mid-command by an
//!    earlier failure.
//! 4. The command but its last byte in burstCount-sized chunks (burstCount > 0 waited for,
//!    bound D for NPCT650 as skiboot, A for the TCG map as Linux does for TPM 2.0), after each
//!    chunk stsValid (bound C) with Expect set; then the last byte alone and Expect must be
//!    clear (skiboot `tpm_write_fifo`, Linux `tpm_tis_send_data`). TCG map: the checksum of
//!    the command is compared.
//! 5. tpmGo; wait dataAvail|stsValid, bound [`Timeouts::command_us`] (the execution of a
//!    command is not an interface timeout: Linux waits up to TPM2_DURATION_DEFAULT, 120 s;
//!    skiboot's 750 ms suits its PCR extends only).
//! 6. The 10-byte header, then the rest by burstCount, each chunk with dataAvail checked;
//!    after the last byte stsValid with dataAvail clear (Linux "Error left over data").
//!    TCG map: the response's checksum is compared. A data-transfer failure here (bus error,
//!    dataAvail gone early or still set at the end, checksum mismatch) writes responseRetry
//!    and reads the response again from its start, [`RESPONSE_TRIES`] times in all (Linux
//!    `tpm_tis_recv`, `tpm_i2c_nuvoton.c` `tpm_i2c_recv`).
//! 7. commandReady (the chip back to idle); TCG map: release the locality (TPM_ACCESS
//!    activeLocality).
//!
//! On any failure the transport writes commandReady once (best effort) and remembers to
//! start the next transact from step 1; a chip that answers again then works again.
//!
//! # Errors (the hypervisor turns every one into H_RESOURCE)
//!
//! | what happened                                                        | error |
//! |----------------------------------------------------------------------|-------|
//! | a bounded wait expired (commandReady, locality, burstCount > 0, stsValid, dataAvail), or the bus kept timing out | [`TransportError::Timeout`] |
//! | the bus kept NACKing or failed ([`BUS_TRIES`] tries each access), Expect set after the last byte or clear before it, a checksum mismatch | [`TransportError::Io`] |
//! | a response header size < 10, dataAvail gone before the header's size was read, or still set after it | [`TransportError::Framing`] |
//! | a header size > the caller's buffer or > [`MAX_TPM_MESSAGE`]         | [`TransportError::ResponseTooLarge`] |
//! | a command > [`MAX_TPM_MESSAGE`] (or empty)                           | [`TransportError::CommandTooLarge`] (before any bus access) |
//!
//! Every wait is a deadline on the [`Clock`]; every loop ends at its deadline or after a
//! bounded number of tries, so a chip that stops answering ends the transact, never hangs it.
//!
//! # Bounds (what the host tests measure on the simulated clock, `tests-qemu/tests/i2c_tpm.rs`)
//!
//! - a chip that stops answering: `Io` (or `Timeout` if the bus reports timeouts) within
//!   [`BUS_TRIES`] tries of the first unanswered access, each followed by 250 µs (≈ 1.3 ms
//!   with the simulator's access cost);
//! - burstCount stuck at 0: `Timeout` after D (NPCT650) or A (TCG map) plus one poll
//!   ([`MAX_POLL_US`] at most);
//! - commandReady never set: `Timeout` after 2 × B; stsValid never set: `Timeout` after C;
//! - dataAvail never set after tpmGo: `Timeout` after [`Timeouts::command_us`] plus one poll;
//! - during the response read, each of the [`RESPONSE_TRIES`] passes is bounded as above
//!   (its first wait for dataAvail by A instead of the command duration), so a lying chip
//!   costs at most [`RESPONSE_TRIES`] times those bounds.
//!
//! # The bus rules (skiboot `nuvoton_tpm_quirk`)
//!
//! Nuvoton firmware steals the bus on a 1-byte raw read or a 0-byte write (an i2cdetect
//! probe); skiboot squashes both. This transport only ever makes register accesses (a
//! sub-address byte, then 1 or more data bytes), never a raw read and never an empty write;
//! an [`I2cBus`] implementation may refuse anything else.
//!
//! # Timeouts (TCG PC Client PTP, as Linux `include/linux/tpm.h` `enum tpm2_timeouts` and
//! skiboot `tpm_i2c_nuvoton.c` give them)
//!
//! A = 750 ms, B = 2000 ms, C = 200 ms, D = 30 ms ([`Timeouts::TCG`]).
//!
//! # Guard times (Linux `tpm_tis_i2c.c`, PTP 8.1.10 GUARD_TIME)
//!
//! TCG map: 250 µs after every access until the interface capability is read, then its
//! GUARD_TIME (bits 9..16, µs) after reads if RR or RW (bits 20, 19) and after writes if WR
//! or WW (bits 18, 17); 250 µs after a NACK. NPCT650: no guard time is documented for it
//! (skiboot waits none), so this transport waits the TCG default, 250 µs, after each access.
//!
//! # Data checksum (TCG map; Linux `tpm_tis_i2c_verify_crc`)
//!
//! Enabled by writing 1 to TPM_DATA_CSUM_ENABLE. TPM_DATA_CSUM (2 bytes) holds the CRC of
//! the last command written or response read: Linux `crc_ccitt(0, data, len)` (Linux
//! `lib/crc-ccitt.c`: reflected polynomial 0x8408, initial value 0, i.e. CRC-16/KERMIT),
//! compared byte-swapped with the register read little-endian: the register's first byte is
//! the CRC's high byte ([`crc_ccitt`]).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
#![deny(clippy::panic, clippy::arithmetic_side_effects)]
#![deny(clippy::cast_possible_truncation)]

use tpm::transport::{Transport, TransportError, MAX_TPM_MESSAGE};

/// Why one I2C register access failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum I2cError {
    /// The device did not acknowledge (it is busy, absent, or refused the access).
    Nack,
    /// The bus or the controller timed out.
    Timeout,
    /// The controller failed with a code of its own (e.g. an OPAL return code).
    Bus(i64),
}

/// Register accesses to one I2C device, SMBus style: a 1-byte sub-address, then the data.
///
/// The transport never asks for an empty access (`data` always holds 1 or more bytes, at most
/// [`Config::max_transfer`]), never a raw read without a sub-address and never an empty
/// write: the accesses Nuvoton firmware mishandles (see the crate documentation).
pub trait I2cBus {
    /// Reads `data.len()` bytes from register `reg`.
    fn read_reg(&mut self, reg: u8, data: &mut [u8]) -> Result<(), I2cError>;
    /// Writes `data` to register `reg` in one transfer.
    fn write_reg(&mut self, reg: u8, data: &[u8]) -> Result<(), I2cError>;
}

/// Time, for the bounded waits and the guard times.
pub trait Clock {
    /// A monotonic time in microseconds.
    fn now_us(&mut self) -> u64;
    /// Waits at least `us` microseconds.
    fn delay_us(&mut self, us: u64);
}

/// Which register map the chip speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterMap {
    /// Nuvoton NPCT650 (skiboot's `nuvoton,npct650` map).
    Npct650,
    /// The TCG PC Client PTP I2C interface (Nuvoton NPCT75x).
    TcgI2c,
}

/// TPM_STS bits (TCG PC Client PTP; skiboot and Linux `tpm_tis_core.h` agree).
pub mod sts {
    /// stsValid: Expect and dataAvail are valid.
    pub const VALID: u8 = 0x80;
    /// commandReady: the TPM is ready for a command (write: abort / go ready).
    pub const COMMAND_READY: u8 = 0x40;
    /// tpmGo (write): execute the command in the FIFO.
    pub const GO: u8 = 0x20;
    /// dataAvail: response bytes are available.
    pub const DATA_AVAIL: u8 = 0x10;
    /// Expect: the TPM expects more command bytes.
    pub const EXPECT: u8 = 0x08;
    /// responseRetry (write): the TPM resends the response from its start.
    pub const RESPONSE_RETRY: u8 = 0x02;
    /// Bits that read as zero on the TCG I2C map (Linux `tpm_tis_i2c.c` TPM_STS_READ_ZERO).
    pub const READ_ZERO: u8 = 0x23;
}

/// TPM_ACCESS bits (TCG PC Client PTP; Linux `tpm_tis_core.h`).
pub mod access {
    /// tpmRegValidSts: the other bits are valid.
    pub const VALID: u8 = 0x80;
    /// activeLocality (read: this locality is active; write 1: release it).
    pub const ACTIVE_LOCALITY: u8 = 0x20;
    /// requestUse (write): request this locality.
    pub const REQUEST_USE: u8 = 0x02;
}

/// Register offsets of the NPCT650 map (skiboot `tpm_i2c_nuvoton.c`).
pub mod npct650 {
    /// TPM_STS (1 byte).
    pub const STS: u8 = 0x00;
    /// burstCount (1 byte).
    pub const BURST_COUNT: u8 = 0x01;
    /// The FIFO, writes.
    pub const FIFO_W: u8 = 0x20;
    /// The FIFO, reads.
    pub const FIFO_R: u8 = 0x40;
    /// VID/DID (4 bytes).
    pub const VID_DID: u8 = 0x60;
}

/// Register offsets of the TCG I2C map (Linux `tpm_tis_i2c.c`; STS and FIFO are the TIS
/// offsets 0x18 and 0x24 with the locality stripped).
pub mod tcg {
    /// TPM_LOC_SEL (1 byte).
    pub const LOC_SEL: u8 = 0x00;
    /// TPM_ACCESS (1 byte).
    pub const ACCESS: u8 = 0x04;
    /// TPM_STS (4 bytes, little-endian: status in byte 0, burstCount in bytes 1..3).
    pub const STS: u8 = 0x18;
    /// TPM_DATA_FIFO.
    pub const DATA_FIFO: u8 = 0x24;
    /// TPM_I2C_INTERFACE_CAPABILITY (4 bytes, little-endian).
    pub const INTERFACE_CAPABILITY: u8 = 0x30;
    /// TPM_DATA_CSUM_ENABLE (1 byte).
    pub const DATA_CSUM_ENABLE: u8 = 0x40;
    /// TPM_DATA_CSUM (2 bytes).
    pub const DATA_CSUM: u8 = 0x44;
    /// TPM_DID_VID (4 bytes, little-endian).
    pub const DID_VID: u8 = 0x48;
    /// Interface capability: GUARD_TIME in µs (bits 9..16).
    pub const GUARD_TIME_MASK: u32 = 0x0001_FE00;
    /// Interface capability: the shift of GUARD_TIME.
    pub const GUARD_TIME_SHIFT: u32 = 9;
    /// Interface capability: guard time read-read.
    pub const GUARD_RR: u32 = 0x0010_0000;
    /// Interface capability: guard time read-write.
    pub const GUARD_RW: u32 = 0x0008_0000;
    /// Interface capability: guard time write-read.
    pub const GUARD_WR: u32 = 0x0004_0000;
    /// Interface capability: guard time write-write.
    pub const GUARD_WW: u32 = 0x0002_0000;
    /// Interface capability bit that reads zero (Linux TPM_I2C_INTERFACE_CAPABILITY_ZERO).
    pub const CAPABILITY_READ_ZERO: u32 = 0x8000_0000;
}

/// The default guard time (Linux `tpm_tis_i2c.c` GUARD_TIME_DEFAULT_MIN), also waited after
/// a NACK (GUARD_TIME_ERR_MIN).
pub const GUARD_TIME_DEFAULT_US: u64 = 250;
/// Tries of one bus access that NACKs or times out (Linux retries TPM_RETRY = 50 times; this
/// transport gives up sooner so a dead chip fails a transact in about a millisecond).
pub const BUS_TRIES: u32 = 3;
/// Reads of one response in all (the first and the responseRetry ones).
pub const RESPONSE_TRIES: u32 = 3;
/// The longest poll interval of a wait (skiboot polls every 10 ms); polls start at 100 µs and
/// double.
pub const MAX_POLL_US: u64 = 10_000;
const FIRST_POLL_US: u64 = 100;
const HEADER_LEN: usize = 10;

/// The bounds of the waits, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TIMEOUT_A: locality, burstCount (TCG map), dataAvail after responseRetry.
    pub a_us: u64,
    /// TIMEOUT_B: commandReady.
    pub b_us: u64,
    /// TIMEOUT_C: stsValid after a FIFO access.
    pub c_us: u64,
    /// TIMEOUT_D: burstCount (NPCT650).
    pub d_us: u64,
    /// The execution of a command (tpmGo to dataAvail).
    pub command_us: u64,
}

impl Timeouts {
    /// The TCG values (A 750 ms, B 2000 ms, C 200 ms, D 30 ms) and Linux's
    /// TPM2_DURATION_DEFAULT (120 s) for a command's execution.
    pub const TCG: Timeouts = Timeouts {
        a_us: 750_000,
        b_us: 2_000_000,
        c_us: 200_000,
        d_us: 30_000,
        command_us: 120_000_000,
    };
}

/// How the transport drives the chip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// The register map.
    pub map: RegisterMap,
    /// The wait bounds.
    pub timeouts: Timeouts,
    /// The most bytes one FIFO access carries (a bound of the bus, not of the chip: the
    /// chip's burstCount bounds it too). At least 1.
    pub max_transfer: usize,
    /// TCG map: enable and check the data checksum.
    pub checksum: bool,
}

impl Config {
    /// The defaults for `map`: TCG timeouts, 32-byte transfers, the checksum on (TCG map).
    pub const fn new(map: RegisterMap) -> Config {
        Config {
            map,
            timeouts: Timeouts::TCG,
            max_transfer: 32,
            checksum: true,
        }
    }
}

/// CRC-16 of `data` as Linux `crc_ccitt(0, data, len)` computes it (reflected 0x1021, i.e.
/// polynomial 0x8408 LSB first, initial value 0: CRC-16/KERMIT).
pub fn crc_ccitt(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for b in data {
        crc ^= u16::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x8408
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// A step failed: the error to report, and whether rereading the response may cure it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fail {
    err: TransportError,
    retry: bool,
}

impl From<TransportError> for Fail {
    fn from(err: TransportError) -> Fail {
        Fail { err, retry: false }
    }
}

type Step<T> = Result<T, Fail>;

fn io() -> Fail {
    Fail {
        err: TransportError::Io,
        retry: true,
    }
}

fn framing() -> Fail {
    Fail {
        err: TransportError::Framing,
        retry: true,
    }
}

fn bus_error(e: I2cError) -> Fail {
    Fail {
        err: match e {
            I2cError::Timeout => TransportError::Timeout,
            I2cError::Nack | I2cError::Bus(_) => TransportError::Io,
        },
        retry: true,
    }
}

/// What the transport counts (for tests and the link counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bus accesses that failed and were tried again.
    pub bus_retries: u32,
    /// responseRetry writes.
    pub response_retries: u32,
    /// Transacts that started by recovering the chip after a failure.
    pub recoveries: u32,
    /// The last register access that failed all its [`BUS_TRIES`] tries, if any.
    pub last_bus_fault: Option<BusFault>,
}

/// A register access that failed all its tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusFault {
    /// The register.
    pub reg: u8,
    /// A write (else a read).
    pub write: bool,
    /// The last try's error.
    pub error: I2cError,
}

impl core::fmt::Display for BusFault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let what = match self.error {
            I2cError::Nack => "no acknowledge",
            I2cError::Timeout => "a bus timeout",
            I2cError::Bus(_) => "a controller error",
        };
        write!(
            f,
            "{} of register {:#04x}: {what}",
            if self.write { "write" } else { "read" },
            self.reg
        )?;
        if let I2cError::Bus(c) = self.error {
            write!(f, " ({c})")?;
        }
        write!(f, ", {BUS_TRIES} tries")
    }
}

/// A TPM behind an I2C bus, as a [`Transport`]. See the crate documentation for the flow.
#[derive(Debug)]
pub struct TpmI2c<B, C> {
    bus: B,
    clock: C,
    cfg: Config,
    /// The chip must be (re)initialised before the next command (first use, or a failure).
    needs_init: bool,
    /// Guard time after reads and after writes, µs.
    guard_read_us: u64,
    guard_write_us: u64,
    /// The last transact failed: the next one starts by recovering the chip.
    failed: bool,
    stats: Stats,
}

impl<B: I2cBus, C: Clock> TpmI2c<B, C> {
    /// A transport to the chip on `bus`, timed by `clock`. Nothing is sent until the first
    /// transact.
    pub fn new(bus: B, clock: C, cfg: Config) -> Self {
        let cfg = Config {
            max_transfer: cfg.max_transfer.clamp(1, MAX_TPM_MESSAGE),
            ..cfg
        };
        TpmI2c {
            bus,
            clock,
            cfg,
            needs_init: true,
            guard_read_us: GUARD_TIME_DEFAULT_US,
            guard_write_us: GUARD_TIME_DEFAULT_US,
            failed: false,
            stats: Stats::default(),
        }
    }

    /// The bus.
    pub fn bus(&self) -> &B {
        &self.bus
    }

    /// The bus, mutably (tests inject faults through it).
    pub fn bus_mut(&mut self) -> &mut B {
        &mut self.bus
    }

    /// The clock.
    pub fn clock_mut(&mut self) -> &mut C {
        &mut self.clock
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// What the transport counted so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The guard times in use after reads and after writes, µs.
    pub fn guard_times_us(&self) -> (u64, u64) {
        (self.guard_read_us, self.guard_write_us)
    }

    /// The chip's VID/DID register (little-endian: vendor ID in the low 16 bits).
    pub fn did_vid(&mut self) -> Result<u32, TransportError> {
        let reg = match self.cfg.map {
            RegisterMap::Npct650 => npct650::VID_DID,
            RegisterMap::TcgI2c => tcg::DID_VID,
        };
        let mut b = [0u8; 4];
        self.read(reg, &mut b).map_err(|f| f.err)?;
        Ok(u32::from_le_bytes(b))
    }

    fn guard(&mut self, us: u64) {
        if us > 0 {
            self.clock.delay_us(us);
        }
    }

    /// One register read, tried [`BUS_TRIES`] times, with the guard times.
    fn read(&mut self, reg: u8, data: &mut [u8]) -> Step<()> {
        let mut last = I2cError::Nack;
        for i in 0..BUS_TRIES {
            if i > 0 {
                self.stats.bus_retries = self.stats.bus_retries.saturating_add(1);
            }
            match self.bus.read_reg(reg, data) {
                Ok(()) => {
                    let g = self.guard_read_us;
                    self.guard(g);
                    return Ok(());
                }
                Err(e) => {
                    last = e;
                    self.guard(GUARD_TIME_DEFAULT_US);
                }
            }
        }
        self.stats.last_bus_fault = Some(BusFault {
            reg,
            write: false,
            error: last,
        });
        Err(bus_error(last))
    }

    /// One register write, tried [`BUS_TRIES`] times, with the guard times.
    fn write(&mut self, reg: u8, data: &[u8]) -> Step<()> {
        let mut last = I2cError::Nack;
        for i in 0..BUS_TRIES {
            if i > 0 {
                self.stats.bus_retries = self.stats.bus_retries.saturating_add(1);
            }
            match self.bus.write_reg(reg, data) {
                Ok(()) => {
                    let g = self.guard_write_us;
                    self.guard(g);
                    return Ok(());
                }
                Err(e) => {
                    last = e;
                    self.guard(GUARD_TIME_DEFAULT_US);
                }
            }
        }
        self.stats.last_bus_fault = Some(BusFault {
            reg,
            write: true,
            error: last,
        });
        Err(bus_error(last))
    }

    fn sts_reg(&self) -> u8 {
        match self.cfg.map {
            RegisterMap::Npct650 => npct650::STS,
            RegisterMap::TcgI2c => tcg::STS,
        }
    }

    fn write_sts(&mut self, v: u8) -> Step<()> {
        let reg = self.sts_reg();
        self.write(reg, &[v])
    }

    /// TPM_STS and burstCount. On the TCG map a read with a read-zero bit set reads as
    /// (0, 0) (not valid), so the waits keep polling.
    fn status(&mut self) -> Step<(u8, u16)> {
        match self.cfg.map {
            RegisterMap::Npct650 => {
                let mut s = [0u8; 1];
                self.read(npct650::STS, &mut s)?;
                let [s] = s;
                Ok((s, 0))
            }
            RegisterMap::TcgI2c => {
                let mut b = [0u8; 4];
                self.read(tcg::STS, &mut b)?;
                let [s, lo, hi, _] = b;
                if s & sts::READ_ZERO != 0 {
                    return Ok((0, 0));
                }
                Ok((s, u16::from_le_bytes([lo, hi])))
            }
        }
    }

    fn burst_now(&mut self) -> Step<u16> {
        match self.cfg.map {
            RegisterMap::Npct650 => {
                let mut b = [0u8; 1];
                self.read(npct650::BURST_COUNT, &mut b)?;
                let [b] = b;
                Ok(u16::from(b))
            }
            RegisterMap::TcgI2c => {
                let (s, burst) = self.status()?;
                Ok(if s & sts::VALID != 0 { burst } else { 0 })
            }
        }
    }

    fn deadline(&mut self, us: u64) -> u64 {
        self.clock.now_us().saturating_add(us)
    }

    /// Polls `probe` until it yields a value or `bound_us` passes (then [`TransportError::Timeout`]).
    fn wait<T>(
        &mut self,
        bound_us: u64,
        mut probe: impl FnMut(&mut Self) -> Step<Option<T>>,
    ) -> Step<T> {
        let end = self.deadline(bound_us);
        let mut poll = FIRST_POLL_US;
        loop {
            if let Some(v) = probe(self)? {
                return Ok(v);
            }
            let now = self.clock.now_us();
            if now >= end {
                return Err(Fail {
                    err: TransportError::Timeout,
                    retry: true,
                });
            }
            self.clock.delay_us(poll.min(end.saturating_sub(now)));
            poll = poll.saturating_mul(2).min(MAX_POLL_US);
        }
    }

    fn wait_status(&mut self, mask: u8, want: u8, bound_us: u64) -> Step<u8> {
        self.wait(bound_us, |t| {
            let (s, _) = t.status()?;
            Ok((s & mask == want).then_some(s))
        })
    }

    /// stsValid, then the status (bound C).
    fn valid_status(&mut self) -> Step<u8> {
        let c = self.cfg.timeouts.c_us;
        self.wait_status(sts::VALID, sts::VALID, c)
    }

    fn wait_burst(&mut self) -> Step<usize> {
        let bound = match self.cfg.map {
            RegisterMap::Npct650 => self.cfg.timeouts.d_us,
            RegisterMap::TcgI2c => self.cfg.timeouts.a_us,
        };
        self.wait(bound, |t| {
            let b = t.burst_now()?;
            Ok((b > 0).then_some(usize::from(b)))
        })
    }

    fn fifo_w(&self) -> u8 {
        match self.cfg.map {
            RegisterMap::Npct650 => npct650::FIFO_W,
            RegisterMap::TcgI2c => tcg::DATA_FIFO,
        }
    }

    fn fifo_r(&self) -> u8 {
        match self.cfg.map {
            RegisterMap::Npct650 => npct650::FIFO_R,
            RegisterMap::TcgI2c => tcg::DATA_FIFO,
        }
    }

    /// TCG map: guard times, locality select, checksum enable.
    fn init(&mut self) -> Step<()> {
        if self.cfg.map == RegisterMap::TcgI2c {
            self.guard_read_us = GUARD_TIME_DEFAULT_US;
            self.guard_write_us = GUARD_TIME_DEFAULT_US;
            let mut b = [0u8; 4];
            self.read(tcg::INTERFACE_CAPABILITY, &mut b)?;
            let caps = u32::from_le_bytes(b);
            if caps & tcg::CAPABILITY_READ_ZERO != 0 {
                return Err(io());
            }
            let guard = u64::from((caps & tcg::GUARD_TIME_MASK) >> tcg::GUARD_TIME_SHIFT);
            let on = |m: u32| caps & m != 0;
            self.guard_read_us = if on(tcg::GUARD_RR) || on(tcg::GUARD_RW) {
                guard
            } else {
                0
            };
            self.guard_write_us = if on(tcg::GUARD_WR) || on(tcg::GUARD_WW) {
                guard
            } else {
                0
            };
            self.write(tcg::LOC_SEL, &[0])?;
            let csum = u8::from(self.cfg.checksum);
            self.write(tcg::DATA_CSUM_ENABLE, &[csum])?;
        }
        self.needs_init = false;
        Ok(())
    }

    fn request_locality(&mut self) -> Step<()> {
        if self.cfg.map != RegisterMap::TcgI2c {
            return Ok(());
        }
        self.write(tcg::ACCESS, &[access::REQUEST_USE])?;
        let a = self.cfg.timeouts.a_us;
        let want = access::VALID | access::ACTIVE_LOCALITY;
        self.wait(a, |t| {
            let mut b = [0u8; 1];
            t.read(tcg::ACCESS, &mut b)?;
            let [b] = b;
            Ok((b & want == want).then_some(()))
        })
    }

    fn release_locality(&mut self) -> Step<()> {
        if self.cfg.map != RegisterMap::TcgI2c {
            return Ok(());
        }
        self.write(tcg::ACCESS, &[access::ACTIVE_LOCALITY])
    }

    fn command_ready(&mut self) -> Step<()> {
        let b = self.cfg.timeouts.b_us;
        let mut last = Fail::from(TransportError::Timeout);
        for _ in 0..2 {
            self.write_sts(sts::COMMAND_READY)?;
            match self.wait_status(sts::COMMAND_READY, sts::COMMAND_READY, b) {
                Ok(_) => return Ok(()),
                Err(f) if f.err == TransportError::Timeout => last = f,
                Err(f) => return Err(f),
            }
        }
        Err(last)
    }

    fn checksum_matches(&mut self, data: &[u8]) -> Step<bool> {
        if self.cfg.map != RegisterMap::TcgI2c || !self.cfg.checksum {
            return Ok(true);
        }
        let mut b = [0u8; 2];
        self.read(tcg::DATA_CSUM, &mut b)?;
        Ok(u16::from_be_bytes(b) == crc_ccitt(data))
    }

    fn write_command(&mut self, command: &[u8]) -> Step<()> {
        let Some((last, body)) = command.split_last() else {
            return Err(TransportError::CommandTooLarge.into());
        };
        let reg = self.fifo_w();
        let mut rest = body;
        while !rest.is_empty() {
            let burst = self.wait_burst()?;
            let n = burst.min(self.cfg.max_transfer).min(rest.len());
            let (chunk, tail) = rest.split_at_checked(n).ok_or(TransportError::Io)?;
            self.write(reg, chunk)?;
            rest = tail;
            if self.valid_status()? & sts::EXPECT == 0 {
                // The chip stopped expecting before the last byte.
                return Err(io());
            }
        }
        self.wait_burst()?;
        self.write(reg, core::slice::from_ref(last))?;
        if self.valid_status()? & sts::EXPECT != 0 {
            // The chip still expects bytes after the last one.
            return Err(io());
        }
        if !self.checksum_matches(command)? {
            return Err(io());
        }
        Ok(())
    }

    /// Reads `buf.len()` response bytes in bursts, each chunk with dataAvail checked first.
    fn read_fifo(&mut self, buf: &mut [u8]) -> Step<()> {
        let reg = self.fifo_r();
        let mut rest = buf;
        while !rest.is_empty() {
            if self.valid_status()? & sts::DATA_AVAIL == 0 {
                // The chip has no more bytes, yet the header promised them.
                return Err(framing());
            }
            let burst = self.wait_burst()?;
            let n = burst.min(self.cfg.max_transfer).min(rest.len());
            let (chunk, tail) = core::mem::take(&mut rest)
                .split_at_mut_checked(n)
                .ok_or(TransportError::Io)?;
            self.read(reg, chunk)?;
            rest = tail;
        }
        Ok(())
    }

    fn read_response_once(&mut self, response: &mut [u8], bound_us: u64) -> Step<usize> {
        let want = sts::VALID | sts::DATA_AVAIL;
        self.wait_status(want, want, bound_us)
            .map_err(|f| Fail { retry: false, ..f })?;
        let mut header = [0u8; HEADER_LEN];
        self.read_fifo(&mut header)?;
        let [_, _, s0, s1, s2, s3, ..] = header;
        let size = usize::try_from(u32::from_be_bytes([s0, s1, s2, s3]))
            .map_err(|_| TransportError::ResponseTooLarge)?;
        if size < HEADER_LEN {
            return Err(framing());
        }
        if size > MAX_TPM_MESSAGE || size > response.len() {
            return Err(TransportError::ResponseTooLarge.into());
        }
        let whole = response
            .get_mut(..size)
            .ok_or(TransportError::ResponseTooLarge)?;
        let (head, body) = whole.split_at_mut_checked(HEADER_LEN).ok_or_else(framing)?;
        head.copy_from_slice(&header);
        self.read_fifo(body)?;
        if self.valid_status()? & sts::DATA_AVAIL != 0 {
            // Left-over data: the chip has more than the header said.
            return Err(framing());
        }
        let whole = response
            .get(..size)
            .ok_or(TransportError::ResponseTooLarge)?;
        if !self.checksum_matches(whole)? {
            return Err(io());
        }
        Ok(size)
    }

    fn read_response(&mut self, response: &mut [u8]) -> Step<usize> {
        let mut last = Fail::from(TransportError::Io);
        for i in 0..RESPONSE_TRIES {
            let bound = if i == 0 {
                self.cfg.timeouts.command_us
            } else {
                self.stats.response_retries = self.stats.response_retries.saturating_add(1);
                self.write_sts(sts::RESPONSE_RETRY)?;
                self.cfg.timeouts.a_us
            };
            match self.read_response_once(response, bound) {
                Ok(n) => return Ok(n),
                Err(f) if f.retry => last = f,
                Err(f) => return Err(f),
            }
        }
        Err(last)
    }

    fn run(&mut self, command: &[u8], response: &mut [u8]) -> Step<usize> {
        if self.needs_init {
            self.init()?;
        }
        self.request_locality()?;
        self.command_ready()?;
        self.write_command(command)?;
        self.write_sts(sts::GO)?;
        let n = self.read_response(response)?;
        self.write_sts(sts::COMMAND_READY)?;
        self.release_locality()?;
        Ok(n)
    }
}

impl<B: I2cBus, C: Clock> Transport for TpmI2c<B, C> {
    /// One command through the FIFO; see the crate documentation for the flow, the bounds and
    /// the errors. Never writes past `response.len()`.
    fn transact(&mut self, command: &[u8], response: &mut [u8]) -> Result<usize, TransportError> {
        if command.is_empty() || command.len() > MAX_TPM_MESSAGE {
            return Err(TransportError::CommandTooLarge);
        }
        if self.failed {
            self.stats.recoveries = self.stats.recoveries.saturating_add(1);
        }
        match self.run(command, response) {
            Ok(n) => {
                self.failed = false;
                Ok(n)
            }
            Err(f) => {
                // Best effort: abort whatever the chip holds; the next transact starts over.
                let _ = self.bus.write_reg(self.sts_reg(), &[sts::COMMAND_READY]);
                self.guard(GUARD_TIME_DEFAULT_US);
                self.needs_init = true;
                self.failed = true;
                Err(f.err)
            }
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used
)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_linux_table_and_the_kermit_check_value() {
        // Linux lib/crc-ccitt.c crc_ccitt_table[1] = 0x1189 and [255] = 0x0f78: the CRC of
        // one byte from 0 is the table entry of that byte.
        assert_eq!(crc_ccitt(&[1]), 0x1189);
        assert_eq!(crc_ccitt(&[0xff]), 0x0f78);
        // CRC-16/KERMIT check value.
        assert_eq!(crc_ccitt(b"123456789"), 0x2189);
    }

    struct NoClock(u64);
    impl Clock for NoClock {
        fn now_us(&mut self) -> u64 {
            self.0
        }
        fn delay_us(&mut self, us: u64) {
            self.0 = self.0.saturating_add(us);
        }
    }

    /// A bus where nothing answers.
    struct Dead(u32);
    impl I2cBus for Dead {
        fn read_reg(&mut self, _: u8, _: &mut [u8]) -> Result<(), I2cError> {
            self.0 += 1;
            Err(I2cError::Nack)
        }
        fn write_reg(&mut self, _: u8, data: &[u8]) -> Result<(), I2cError> {
            assert!(!data.is_empty(), "no 0-byte writes");
            self.0 += 1;
            Err(I2cError::Timeout)
        }
    }

    #[test]
    fn a_dead_bus_fails_fast_with_the_bus_error() {
        for map in [RegisterMap::Npct650, RegisterMap::TcgI2c] {
            let mut t = TpmI2c::new(Dead(0), NoClock(0), Config::new(map));
            let cmd = tpm::wire::get_random(8);
            let mut resp = [0u8; 64];
            let want = match map {
                RegisterMap::Npct650 => TransportError::Timeout, // the first access is a write
                RegisterMap::TcgI2c => TransportError::Io,       // the first access is a read
            };
            assert_eq!(t.transact(&cmd, &mut resp), Err(want));
            assert!(t.clock.0 < 5_000, "{map:?}: {} µs", t.clock.0);
            assert!(t.bus.0 <= 2 * BUS_TRIES + 1);
        }
    }

    #[test]
    fn empty_and_oversized_commands_are_refused_before_the_bus() {
        let mut t = TpmI2c::new(Dead(0), NoClock(0), Config::new(RegisterMap::Npct650));
        let mut resp = [0u8; 16];
        assert_eq!(
            t.transact(&[], &mut resp),
            Err(TransportError::CommandTooLarge)
        );
        let big = [0u8; MAX_TPM_MESSAGE + 1];
        assert_eq!(
            t.transact(&big, &mut resp),
            Err(TransportError::CommandTooLarge)
        );
        assert_eq!(t.bus.0, 0);
    }
}
