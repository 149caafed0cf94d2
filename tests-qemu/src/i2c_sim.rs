//! Register-level simulators of the two I2C TPM register maps `pefbox::tpm_i2c` speaks
//! (Nuvoton NPCT650 and the TCG PC Client PTP I2C map of NPCT75x), backed by a real swtpm.
//!
//! [`SimChip`] is a [`tpm_i2c::I2cBus`]: it models the register file and the TIS FIFO state
//! machine (Idle, Ready, Reception, Execution, Completion) and forwards each complete
//! command to swtpm at tpmGo through a [`crate::swtpm::SwtpmConn`]. [`SimClock`] is a
//! simulated [`tpm_i2c::Clock`]: it advances on delays and on every bus access (the chip's
//! share of it), so tests measure the transport's bounds without sleeping.
//!
//! What it models of each chip, and what it does not:
//! - both: TPM_STS (stsValid, commandReady, dataAvail, Expect; writes commandReady, tpmGo,
//!   responseRetry), burstCount (free FIFO space while receiving, bytes left while
//!   completing, at most [`SimChip::burst_max`]), the FIFO (4096 bytes), VID/DID; a
//!   commandReady written during Execution aborts to Idle (so a second one is needed, as
//!   skiboot writes it twice); an empty access is refused (skiboot's rule) and counted as a
//!   [`SimChip::violations`];
//! - TCG map: TPM_LOC_SEL, TPM_ACCESS (locality 0 only: requestUse, activeLocality; STS and
//!   FIFO accesses while it is not active read all-ones and are counted as violations),
//!   TPM_I2C_INTERFACE_CAPABILITY (a guard time the chip enforces: an access sooner than it
//!   after the previous one is NACKed and counted in [`SimChip::guard_nacks`]),
//!   TPM_DATA_CSUM_ENABLE and TPM_DATA_CSUM (CRC-16/KERMIT of the command received, or of
//!   the response bytes read since dataAvail / responseRetry, high byte first);
//! - not modelled: interrupts, localities other than 0, the real chips' timing (execution
//!   is instant here), vendor registers.
//!
//! Faults ([`Fault`]) are injected with [`SimChip::inject`] and cleared with
//! [`SimChip::clear`].
use std::cell::Cell;
use std::rc::Rc;

use pefbox::tpm::transport::{Transport, MAX_TPM_MESSAGE};
use pefbox::tpm_i2c::{access, crc_ccitt, npct650, sts, tcg, Clock, I2cBus, I2cError, RegisterMap};

use crate::swtpm::SwtpmConn;

/// Simulated microseconds, shared by the chip and the transport's clock.
#[derive(Debug, Clone, Default)]
pub struct SimClock(Rc<Cell<u64>>);

impl SimClock {
    /// A clock at 0 µs.
    pub fn new() -> SimClock {
        SimClock::default()
    }

    /// The simulated time, µs.
    pub fn now(&self) -> u64 {
        self.0.get()
    }

    /// Advances the time by `us`.
    pub fn advance(&self, us: u64) {
        self.0.set(self.0.get().saturating_add(us));
    }
}

impl Clock for SimClock {
    fn now_us(&mut self) -> u64 {
        self.now()
    }
    fn delay_us(&mut self, us: u64) {
        self.advance(us);
    }
}

/// The simulated cost of one access: a start, the address and sub-address bytes, the data
/// bytes, at about 400 kHz (~25 µs a byte).
fn access_cost_us(len: usize) -> u64 {
    (2 + len as u64) * 25
}

/// A fault the chip shows until [`SimChip::clear`] (or as said).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Accesses `at..at + count` (counted from the injection, the first is 0) are NACKed.
    Nack {
        /// The first access NACKed.
        at: u64,
        /// How many in a row.
        count: u64,
    },
    /// burstCount reads 0 for `polls` reads (`None`: forever).
    BurstZero {
        /// How many burstCount reads give 0.
        polls: Option<u32>,
    },
    /// After tpmGo the command never completes: dataAvail never comes.
    DataAvailNever,
    /// dataAvail stays set after the last response byte was read.
    DataAvailStuck,
    /// Expect stays set after the last command byte.
    ExpectStuckSet,
    /// Expect clears once `after` command bytes were received, though more are due.
    ExpectEarlyClear {
        /// Bytes received when Expect lies.
        after: usize,
    },
    /// Every access NACKs until [`SimChip::revive`] (or [`SimChip::clear`]).
    Dead,
    /// The first read pass of the next response loses its tail: dataAvail clears after the
    /// header (once; a responseRetry rewinds to the whole response).
    TruncateResponseOnce,
    /// The first read pass of the next response returns one corrupted byte (once; the TCG
    /// checksum shows it).
    CorruptResponseOnce,
    /// Every response's header declares `size` bytes whatever the response's length (the
    /// chip delivers the real bytes, and dataAvail follows them).
    HeaderSize {
        /// The size written into the header.
        size: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Ready,
    Reception,
    Execution,
    Completion,
}

/// A simulated NPCT650 or TCG I2C TPM (see the module documentation).
#[derive(Debug)]
pub struct SimChip {
    map: RegisterMap,
    clock: SimClock,
    tpm: SwtpmConn,
    state: State,
    cmd: Vec<u8>,
    resp: Vec<u8>,
    read_pos: usize,
    /// The largest burstCount the chip reports.
    pub burst_max: usize,
    /// TCG map: the guard time the chip advertises and enforces, µs.
    pub guard_us: u64,
    locality_active: bool,
    loc_sel: u8,
    csum_enabled: bool,
    /// Simulated time at the end of the previous access.
    last_access_end: Option<u64>,
    fault: Option<Fault>,
    accesses_since_fault: u64,
    burst_zero_left: Option<u32>,
    /// Protocol violations seen (accesses the real chip would ignore or mishandle).
    pub violations: Vec<String>,
    /// Accesses NACKed because they came sooner than the guard time.
    pub guard_nacks: u32,
    /// responseRetry writes seen.
    pub response_retries: u32,
    /// Commands forwarded to swtpm.
    pub commands: u32,
    /// Commands aborted by commandReady during Execution.
    pub aborts: u32,
    /// Bus accesses in all.
    pub accesses: u64,
    /// Simulated time of the first access a fault NACKed since the injection (the moment the
    /// chip stopped answering).
    pub first_fault_nack_us: Option<u64>,
}

/// The VID/DID the simulator reports: Nuvoton's vendor ID 0x1050 (PCI-SIG) and a device ID
/// made up here (not a real chip's).
pub const SIM_DID_VID: u32 = 0x00fe_1050;

impl SimChip {
    /// A chip speaking `map`, in front of the swtpm behind `tpm`, timed by `clock`.
    pub fn new(map: RegisterMap, tpm: SwtpmConn, clock: SimClock) -> SimChip {
        SimChip {
            map,
            clock,
            tpm,
            state: State::Idle,
            cmd: Vec::new(),
            resp: Vec::new(),
            read_pos: 0,
            burst_max: match map {
                RegisterMap::Npct650 => 32,
                RegisterMap::TcgI2c => 64,
            },
            guard_us: 100,
            locality_active: false,
            loc_sel: 0xff,
            csum_enabled: false,
            last_access_end: None,
            fault: None,
            accesses_since_fault: 0,
            burst_zero_left: None,
            violations: Vec::new(),
            guard_nacks: 0,
            response_retries: 0,
            commands: 0,
            aborts: 0,
            accesses: 0,
            first_fault_nack_us: None,
        }
    }

    /// Injects `fault` (replacing any other).
    pub fn inject(&mut self, fault: Fault) {
        self.fault = Some(fault);
        self.accesses_since_fault = 0;
        self.first_fault_nack_us = None;
        self.burst_zero_left = match fault {
            Fault::BurstZero { polls } => polls,
            _ => None,
        };
    }

    /// Clears the fault.
    pub fn clear(&mut self) {
        self.fault = None;
    }

    /// The chip answers again after [`Fault::Dead`] (its state is what it was).
    pub fn revive(&mut self) {
        if self.fault == Some(Fault::Dead) {
            self.fault = None;
        }
    }

    /// True while the chip is in the middle of a command (not idle nor ready).
    pub fn busy(&self) -> bool {
        !matches!(self.state, State::Idle | State::Ready)
    }

    /// Common to every access: cost, guard time, NACK faults. `Err` if NACKed.
    fn begin(&mut self, len: usize) -> Result<(), I2cError> {
        self.accesses += 1;
        let start = self.clock.now();
        let sooner = self
            .last_access_end
            .is_some_and(|end| start < end.saturating_add(self.guard_us));
        self.clock.advance(access_cost_us(len));
        self.last_access_end = Some(self.clock.now());
        let n = self.accesses_since_fault;
        self.accesses_since_fault += 1;
        let nacked = match self.fault {
            Some(Fault::Dead) => true,
            Some(Fault::Nack { at, count }) => n >= at && n < at.saturating_add(count),
            _ => false,
        };
        if nacked {
            self.first_fault_nack_us.get_or_insert(start);
            return Err(I2cError::Nack);
        }
        if self.map == RegisterMap::TcgI2c && sooner {
            self.guard_nacks += 1;
            return Err(I2cError::Nack);
        }
        if len == 0 {
            self.violations.push("empty access".into());
            return Err(I2cError::Bus(-1));
        }
        Ok(())
    }

    fn expect(&self) -> bool {
        if self.state != State::Reception {
            return false;
        }
        let due = self.cmd.len() < declared_size(&self.cmd).unwrap_or(usize::MAX);
        match self.fault {
            Some(Fault::ExpectStuckSet) => true,
            Some(Fault::ExpectEarlyClear { after }) if self.cmd.len() >= after => false,
            _ => due,
        }
    }

    fn data_avail(&self) -> bool {
        if self.state != State::Completion {
            return false;
        }
        if self.fault == Some(Fault::TruncateResponseOnce) && self.read_pos >= 10 {
            return false;
        }
        self.read_pos < self.resp.len() || self.fault == Some(Fault::DataAvailStuck)
    }

    fn status(&self) -> u8 {
        let mut s = sts::VALID;
        if self.state == State::Ready {
            s |= sts::COMMAND_READY;
        }
        if self.data_avail() {
            s |= sts::DATA_AVAIL;
        }
        if self.expect() {
            s |= sts::EXPECT;
        }
        s
    }

    fn burst(&mut self) -> u16 {
        if matches!(self.fault, Some(Fault::BurstZero { .. })) {
            match self.burst_zero_left {
                None => return 0,
                Some(0) => {}
                Some(n) => {
                    self.burst_zero_left = Some(n - 1);
                    return 0;
                }
            }
        }
        let b = match self.state {
            State::Ready | State::Reception => MAX_TPM_MESSAGE.saturating_sub(self.cmd.len()),
            State::Completion => self.resp.len().saturating_sub(self.read_pos),
            _ => 0,
        };
        b.min(self.burst_max) as u16
    }

    fn write_sts(&mut self, v: u8) {
        if v & sts::COMMAND_READY != 0 {
            self.state = match self.state {
                State::Execution => {
                    self.aborts += 1;
                    State::Idle
                }
                _ => State::Ready,
            };
            self.cmd.clear();
            self.resp.clear();
            self.read_pos = 0;
        }
        if v & sts::GO != 0 {
            if self.state == State::Reception && !self.expect() {
                self.execute();
            } else {
                self.violations.push(format!(
                    "tpmGo in {:?} (expect {})",
                    self.state,
                    self.expect()
                ));
            }
        }
        if v & sts::RESPONSE_RETRY != 0 {
            self.response_retries += 1;
            if self.state == State::Completion {
                self.read_pos = 0;
                if matches!(
                    self.fault,
                    Some(Fault::TruncateResponseOnce | Fault::CorruptResponseOnce)
                ) {
                    // Once: the pass after the responseRetry is clean.
                    self.fault = None;
                }
            } else {
                self.violations
                    .push(format!("responseRetry in {:?}", self.state));
            }
        }
    }

    fn execute(&mut self) {
        self.state = State::Execution;
        if self.fault == Some(Fault::DataAvailNever) {
            return;
        }
        self.commands += 1;
        let mut out = vec![0u8; MAX_TPM_MESSAGE];
        self.resp = match self.tpm.transact(&self.cmd, &mut out) {
            Ok(n) => out[..n].to_vec(),
            // TPM_RC_FAILURE: the simulator's swtpm link failed.
            Err(_) => vec![0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x01, 0x01],
        };
        if let Some(Fault::HeaderSize { size }) = self.fault {
            self.resp[2..6].copy_from_slice(&size.to_be_bytes());
        }
        self.read_pos = 0;
        self.state = State::Completion;
    }

    fn write_fifo(&mut self, data: &[u8]) {
        match self.state {
            State::Ready | State::Reception => {
                if self.state == State::Reception && !self.expect() {
                    self.violations.push("FIFO write past the command".into());
                    return;
                }
                self.state = State::Reception;
                let room = MAX_TPM_MESSAGE.saturating_sub(self.cmd.len());
                if data.len() > room {
                    self.violations.push("FIFO overflow".into());
                }
                self.cmd.extend_from_slice(&data[..data.len().min(room)]);
            }
            s => self.violations.push(format!("FIFO write in {s:?}")),
        }
    }

    fn read_fifo(&mut self, data: &mut [u8]) {
        if self.state != State::Completion {
            self.violations
                .push(format!("FIFO read in {:?}", self.state));
            data.fill(0xff);
            return;
        }
        for b in data.iter_mut() {
            if !self.data_avail() || self.read_pos >= self.resp.len() {
                self.violations.push("FIFO read past the response".into());
                *b = 0xff;
                continue;
            }
            *b = self.resp[self.read_pos];
            if self.fault == Some(Fault::CorruptResponseOnce) && self.read_pos == 6 {
                *b ^= 0x40;
            }
            self.read_pos += 1;
        }
    }

    fn csum(&self) -> u16 {
        match self.state {
            State::Completion => crc_ccitt(&self.resp[..self.read_pos.min(self.resp.len())]),
            _ => crc_ccitt(&self.cmd),
        }
    }

    fn tcg_locality_ok(&mut self, what: &str) -> bool {
        if self.map != RegisterMap::TcgI2c || self.locality_active {
            return true;
        }
        self.violations.push(format!("{what} without locality 0"));
        false
    }

    fn sts_reg(&self) -> u8 {
        match self.map {
            RegisterMap::Npct650 => npct650::STS,
            RegisterMap::TcgI2c => tcg::STS,
        }
    }

    /// The little-endian interface capability: the guard time for every access pattern.
    fn capability(&self) -> u32 {
        let g = (self.guard_us.min(0xff) as u32) << tcg::GUARD_TIME_SHIFT;
        g | tcg::GUARD_RR | tcg::GUARD_RW | tcg::GUARD_WR | tcg::GUARD_WW
    }
}

fn put(data: &mut [u8], bytes: &[u8]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b = bytes.get(i).copied().unwrap_or(0);
    }
}

impl I2cBus for SimChip {
    fn read_reg(&mut self, reg: u8, data: &mut [u8]) -> Result<(), I2cError> {
        self.begin(data.len())?;
        let sts_reg = self.sts_reg();
        match (self.map, reg) {
            (_, r) if r == sts_reg => {
                if !self.tcg_locality_ok("STS read") {
                    data.fill(0xff);
                    return Ok(());
                }
                let s = self.status();
                let burst = match self.map {
                    RegisterMap::TcgI2c => self.burst(),
                    RegisterMap::Npct650 => 0,
                };
                let [lo, hi] = burst.to_le_bytes();
                put(data, &[s, lo, hi, 0]);
            }
            (RegisterMap::Npct650, npct650::BURST_COUNT) => {
                let b = self.burst().min(0xff) as u8;
                put(data, &[b]);
            }
            (RegisterMap::Npct650, npct650::FIFO_R) | (RegisterMap::TcgI2c, tcg::DATA_FIFO) => {
                if !self.tcg_locality_ok("FIFO read") {
                    data.fill(0xff);
                    return Ok(());
                }
                self.read_fifo(data);
            }
            (RegisterMap::Npct650, npct650::VID_DID) | (RegisterMap::TcgI2c, tcg::DID_VID) => {
                put(data, &SIM_DID_VID.to_le_bytes());
            }
            (RegisterMap::TcgI2c, tcg::LOC_SEL) => put(data, &[self.loc_sel]),
            (RegisterMap::TcgI2c, tcg::ACCESS) => {
                let a = access::VALID
                    | if self.locality_active {
                        access::ACTIVE_LOCALITY
                    } else {
                        0
                    };
                put(data, &[a]);
            }
            (RegisterMap::TcgI2c, tcg::INTERFACE_CAPABILITY) => {
                put(data, &self.capability().to_le_bytes());
            }
            (RegisterMap::TcgI2c, tcg::DATA_CSUM_ENABLE) => {
                put(data, &[u8::from(self.csum_enabled)])
            }
            (RegisterMap::TcgI2c, tcg::DATA_CSUM) => {
                let c = if self.csum_enabled { self.csum() } else { 0 };
                put(data, &c.to_be_bytes());
            }
            _ => {
                self.violations
                    .push(format!("read of unknown register {reg:#x}"));
                data.fill(0);
            }
        }
        Ok(())
    }

    fn write_reg(&mut self, reg: u8, data: &[u8]) -> Result<(), I2cError> {
        self.begin(data.len())?;
        let sts_reg = self.sts_reg();
        let first = data.first().copied().unwrap_or(0);
        match (self.map, reg) {
            (_, r) if r == sts_reg => {
                if self.tcg_locality_ok("STS write") {
                    self.write_sts(first);
                }
            }
            (RegisterMap::Npct650, npct650::FIFO_W) | (RegisterMap::TcgI2c, tcg::DATA_FIFO) => {
                if self.tcg_locality_ok("FIFO write") {
                    self.write_fifo(data);
                }
            }
            (RegisterMap::TcgI2c, tcg::LOC_SEL) => self.loc_sel = first,
            (RegisterMap::TcgI2c, tcg::ACCESS) => {
                if first & access::REQUEST_USE != 0 {
                    if self.loc_sel == 0 {
                        self.locality_active = true;
                    } else {
                        self.violations
                            .push("requestUse without TPM_LOC_SEL = 0".into());
                    }
                }
                if first & access::ACTIVE_LOCALITY != 0 {
                    self.locality_active = false;
                }
            }
            (RegisterMap::TcgI2c, tcg::DATA_CSUM_ENABLE) => self.csum_enabled = first & 1 != 0,
            _ => self
                .violations
                .push(format!("write of unknown register {reg:#x}")),
        }
        Ok(())
    }
}

/// The size a TPM command's header declares, once its 6 first bytes are in.
fn declared_size(cmd: &[u8]) -> Option<usize> {
    let b: [u8; 4] = cmd.get(2..6)?.try_into().ok()?;
    Some(u32::from_be_bytes(b) as usize)
}
