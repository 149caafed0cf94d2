//! The console: the 16550 that skiboot reserved as its own console (found through the device
//! tree), written directly; OPAL_CONSOLE_WRITE when no UART is usable. Lines are kept whole
//! by a lock; the panic and exception paths bypass the lock (`write_raw`) so a fault while
//! printing cannot deadlock the report.

use super::{opal, uart::Uart16550};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};

/// MMIO base of the console UART; 0 = none, use OPAL. The hypervisor owns the console, so
/// this and [`LOCK`] live in its partition's pages (`.hvdata`, see `target::hvp`); the
/// ultravisor and the firmware print through the same UART.
#[link_section = ".hvdata"]
static UART_BASE: AtomicU64 = AtomicU64::new(0);
/// Serialises whole `print!` calls across hardware threads.
#[link_section = ".hvdata"]
static LOCK: spin::Mutex<()> = spin::Mutex::new(());

/// Tries at [`LOCK`] before a print goes ahead without it: a partition stopped in the middle
/// of a print leaves it held, and the ultravisor's report of that must still come out.
const LOCK_SPINS: u32 = 1_000_000;

/// Polls of LSR per byte before the UART is declared dead and OPAL takes over.
const TX_SPINS: u32 = 1_000_000;

/// Uses the 16550 at `mmio` for the console from now on.
///
/// # Safety
/// `mmio` must be a 16550 register block translated from the device tree, not driven by
/// anything else while the image runs.
pub unsafe fn use_uart(mmio: u64) {
    // SAFETY: forwarded from this function's contract.
    let u = unsafe { Uart16550::new(mmio) };
    if u.looks_present() {
        u.init();
        UART_BASE.store(mmio, Ordering::SeqCst);
    }
}

/// The console UART, if one is in use.
fn uart() -> Option<Uart16550> {
    match UART_BASE.load(Ordering::SeqCst) {
        0 => None,
        // SAFETY: only `use_uart` stores a non-zero base, under its contract.
        b => Some(unsafe { Uart16550::new(b) }),
    }
}

/// Writes bytes without taking the lock (`\n` becomes `\r\n`).
pub fn write_raw(s: &[u8]) {
    if !crate::arch::hypervisor_state() {
        // In a partition: the UART or nothing (OPAL runs in hypervisor state).
        if let Some(u) = uart() {
            for &b in s {
                if (b == b'\n' && !u.send(b'\r', TX_SPINS)) || !u.send(b, TX_SPINS) {
                    return;
                }
            }
        }
        return;
    }
    match uart() {
        Some(u) => {
            for &b in s {
                if b == b'\n' && !u.send(b'\r', TX_SPINS) {
                    UART_BASE.store(0, Ordering::SeqCst);
                    opal::console_write(s);
                    return;
                }
                if !u.send(b, TX_SPINS) {
                    UART_BASE.store(0, Ordering::SeqCst);
                    opal::console_write(s);
                    return;
                }
            }
        }
        None => {
            opal::console_write(s);
        }
    }
}

struct Raw;
impl Write for Raw {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_raw(s.as_bytes());
        Ok(())
    }
}

/// Formats to the console under the lock.
pub fn print(args: fmt::Arguments<'_>) {
    let _g = (0..LOCK_SPINS).find_map(|_| LOCK.try_lock());
    let _ = Raw.write_fmt(args);
}

/// Formats to the console without the lock (panic / fatal paths only).
pub fn print_unlocked(args: fmt::Arguments<'_>) {
    let _ = Raw.write_fmt(args);
}

/// Reads one line from the console input into `buf` (without the line end), polling at most
/// `max_polls` times. Returns the line, or `None` on timeout or with no UART. Self-test image
/// only (the launcher's answers to `@@host` directives).
#[cfg(feature = "selftest")]
pub fn read_line(buf: &mut [u8], max_polls: u64) -> Option<&str> {
    let u = uart()?;
    let mut n = 0;
    for _ in 0..max_polls {
        if let Some(b) = u.try_recv() {
            match b {
                b'\n' => return core::str::from_utf8(&buf[..n]).ok(),
                b'\r' => {}
                _ if n < buf.len() => {
                    buf[n] = b;
                    n += 1;
                }
                _ => {}
            }
        }
    }
    None
}

/// `print!` to the console.
#[macro_export]
macro_rules! print {
    ($($t:tt)*) => { $crate::platform::console::print(format_args!($($t)*)) };
}

/// `println!` to the console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($t:tt)*) => { $crate::platform::console::print(format_args!("{}\n", format_args!($($t)*))) };
}
