//! OPAL firmware calls (skiboot's runtime interface), through `opal_call` in boot/entry.S.

use core::sync::atomic::{AtomicU64, Ordering};

/// OPAL base (r8 at entry); read by `opal_call` in boot/entry.S. Zero until entry stores it.
#[no_mangle]
static pefbox_opal_base: AtomicU64 = AtomicU64::new(0);
/// OPAL entry point (r9 at entry); read by `opal_call` in boot/entry.S.
#[no_mangle]
static pefbox_opal_entry: AtomicU64 = AtomicU64::new(0);

extern "C" {
    fn opal_call(token: u64, a0: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64;
}

/// OPAL_CONSOLE_WRITE.
pub const CONSOLE_WRITE: u64 = 1;
/// OPAL_CEC_POWER_DOWN.
pub const CEC_POWER_DOWN: u64 = 5;
/// OPAL_POLL_EVENTS.
pub const POLL_EVENTS: u64 = 10;

/// Records where OPAL is (called once from the entry path).
pub fn init(base: u64, entry: u64) {
    pefbox_opal_base.store(base, Ordering::SeqCst);
    pefbox_opal_entry.store(entry, Ordering::SeqCst);
}

/// True once `init` has run with a non-zero entry.
pub fn present() -> bool {
    pefbox_opal_entry.load(Ordering::SeqCst) != 0
}

fn call(token: u64, a: [u64; 6]) -> i64 {
    if !present() {
        return -1;
    }
    // SAFETY: opal_call follows the OPAL ABI (token in r0, r2 = OPAL base, r2/r13 saved);
    // arguments are plain values or pointers to our own live memory (see callers).
    unsafe { opal_call(token, a[0], a[1], a[2], a[3], a[4], a[5]) }
}

/// Writes `bytes` to OPAL console 0 (skiboot's console). Returns false if OPAL refused.
pub fn console_write(bytes: &[u8]) -> bool {
    let mut off = 0;
    let mut tries = 0;
    while off < bytes.len() && tries < 1000 {
        let rest = &bytes[off..];
        // OPAL reads and updates the big-endian length in place.
        let len = core::cell::UnsafeCell::new((rest.len() as u64).to_be());
        let rc = call(
            CONSOLE_WRITE,
            [0, len.get() as u64, rest.as_ptr() as u64, 0, 0, 0],
        );
        let done = u64::from_be(len.into_inner()) as usize;
        if rc != 0 && rc != -6 {
            // -6 = OPAL_BUSY_EVENT / partial: anything else is a refusal.
            return false;
        }
        off += done.min(rest.len());
        if done == 0 {
            tries += 1;
            call(POLL_EVENTS, [0; 6]);
        }
    }
    off == bytes.len()
}

/// Powers the machine off through OPAL and never returns (QEMU exits ~0.5 s later).
pub fn power_off() -> ! {
    call(CEC_POWER_DOWN, [0; 6]);
    loop {
        call(POLL_EVENTS, [0; 6]);
    }
}

/// OPAL_CHECK_ASYNC_COMPLETION: whether an asynchronous call finished, with its message.
pub const CHECK_ASYNC_COMPLETION: u64 = 86;
/// OPAL_I2C_REQUEST: one transfer on an OPAL I2C bus (`ibm,opal-id`), completed
/// asynchronously.
pub const I2C_REQUEST: u64 = 109;
/// OPAL_PARAMETER.
pub const OPAL_PARAMETER: i64 = -1;
/// OPAL_BUSY: not finished yet.
const OPAL_BUSY: i64 = -2;
/// OPAL_ASYNC_COMPLETION: accepted; the result comes through OPAL_CHECK_ASYNC_COMPLETION.
const OPAL_ASYNC_COMPLETION: i64 = -15;

/// What one OPAL I2C register transfer does (SMBus style: a one-byte register number, then
/// the data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum I2cOp {
    /// OPAL_I2C_SM_READ (2): read the register's bytes.
    Read,
    /// OPAL_I2C_SM_WRITE (3): write them.
    Write,
}

/// Why an OPAL I2C transfer failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum I2cError {
    /// OPAL refused the request outright (r3 of OPAL_I2C_REQUEST), e.g. OPAL_PARAMETER for a
    /// bus id it does not know.
    Refused(i64),
    /// The transfer ran and failed (its completion's result), e.g. OPAL_I2C_NACK_RCVD: no
    /// device answered at the address.
    Failed(i64),
    /// No completion within the bound.
    Timeout,
    /// The buffer is empty or larger than a transfer takes.
    Length(usize),
}

impl I2cError {
    /// The OPAL status this failure stands for, as the ultravisor answers it to the
    /// hypervisor partition: the code OPAL gave, OPAL_TIMEOUT (-33) for no completion,
    /// OPAL_PARAMETER for a bad length.
    pub fn code(self) -> i64 {
        match self {
            I2cError::Refused(c) | I2cError::Failed(c) => c,
            I2cError::Timeout => -33,
            I2cError::Length(_) => OPAL_PARAMETER,
        }
    }

    /// skiboot's name for a status (`include/opal-api.h`).
    pub fn name(code: i64) -> &'static str {
        match code {
            OPAL_PARAMETER => "OPAL_PARAMETER",
            OPAL_BUSY => "OPAL_BUSY",
            -6 => "OPAL_HARDWARE",
            -7 => "OPAL_UNSUPPORTED",
            -8 => "OPAL_PERMISSION",
            -9 => "OPAL_NO_MEM",
            -17 => "OPAL_I2C_TIMEOUT",
            -18 => "OPAL_I2C_INVALID_CMD",
            -19 => "OPAL_I2C_LBUS_PARITY",
            -20 => "OPAL_I2C_BKEND_OVERRUN",
            -21 => "OPAL_I2C_BKEND_ACCESS",
            -22 => "OPAL_I2C_ARBT_LOST",
            -23 => "OPAL_I2C_NACK_RCVD",
            -24 => "OPAL_I2C_STOP_ERR",
            -33 => "OPAL_TIMEOUT",
            _ => "unknown",
        }
    }
}

impl core::fmt::Display for I2cError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            I2cError::Refused(c) => write!(f, "OPAL refused the request: {} ({c})", Self::name(*c)),
            I2cError::Failed(c) => write!(f, "the transfer failed: {} ({c})", Self::name(*c)),
            I2cError::Timeout => f.write_str("no completion within 1 s"),
            I2cError::Length(n) => write!(f, "{n} bytes: a transfer takes 1..=256"),
        }
    }
}

/// The token of the next asynchronous OPAL call.
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

/// One register transfer: `op` on register `reg` of the device at 7-bit `addr` on OPAL I2C bus
/// `bus`, with `buf` as the data (1..=256 bytes), polled to completion within one second
/// (OPAL_CHECK_ASYNC_COMPLETION, with OPAL_POLL_EVENTS between checks). Hypervisor state only
/// (OPAL runs there): the ultravisor and the firmware.
pub fn i2c_transfer(
    bus: u32,
    addr: u16,
    reg: u8,
    op: I2cOp,
    buf: &mut [u8],
) -> Result<(), I2cError> {
    if buf.is_empty() || buf.len() > 256 {
        return Err(I2cError::Length(buf.len()));
    }
    // struct opal_i2c_request, big-endian: u8 type, u8 flags, u8 subaddr_sz, u8 reserved,
    // be16 addr, be16 reserved2, be32 subaddr, be32 size, be64 buffer_ra.
    #[repr(C, align(8))]
    struct Request([u8; 24]);
    let mut req = Request([0; 24]);
    req.0[0] = match op {
        I2cOp::Read => 2,
        I2cOp::Write => 3,
    };
    req.0[2] = 1;
    req.0[4..6].copy_from_slice(&addr.to_be_bytes());
    req.0[8..12].copy_from_slice(&u32::from(reg).to_be_bytes());
    req.0[12..16].copy_from_slice(&(buf.len() as u32).to_be_bytes());
    req.0[16..24].copy_from_slice(&(buf.as_mut_ptr() as u64).to_be_bytes());
    let token = NEXT_TOKEN.fetch_add(1, Ordering::SeqCst);
    let rc = call(
        I2C_REQUEST,
        [
            token,
            u64::from(bus),
            &req as *const Request as u64,
            0,
            0,
            0,
        ],
    );
    if rc != OPAL_ASYNC_COMPLETION {
        return Err(I2cError::Refused(rc));
    }
    // struct opal_msg: be32 type, be32 reserved, be64 params[8]; params[1] is the result.
    #[repr(C, align(8))]
    struct Msg([u8; 72]);
    let mut msg = Msg([0; 72]);
    let tb_hz = crate::arch::timebase_hz();
    let t0 = crate::arch::timebase();
    loop {
        let rc = call(
            CHECK_ASYNC_COMPLETION,
            [&mut msg as *mut Msg as u64, 72, token, 0, 0, 0],
        );
        if rc == 0 {
            let mut r = [0u8; 8];
            r.copy_from_slice(&msg.0[16..24]);
            return match i64::from_be_bytes(r) {
                0 => Ok(()),
                e => Err(I2cError::Failed(e)),
            };
        }
        if rc != OPAL_BUSY {
            return Err(I2cError::Failed(rc));
        }
        if crate::arch::timebase().wrapping_sub(t0) > tb_hz {
            return Err(I2cError::Timeout);
        }
        call(POLL_EVENTS, [0; 6]);
    }
}
