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
