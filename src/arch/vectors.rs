//! Installs the exception vectors (boot/vectors.S, section `.vectors`) at real address 0.

use core::arch::asm;

extern "C" {
    static __vectors_start: u8;
    static __vectors_end: u8;
}

/// Real address the vectors are copied to (MSR[IR|DR] = 0, so interrupts go to 0 + vector).
const VECTOR_BASE: usize = 0;
/// Cache line size on POWER9.
const CACHE_LINE: usize = 128;

/// Copies the vector code to address 0 and makes it visible to instruction fetch.
///
/// # Safety
/// Must run once, on the boot thread, before any interrupt can be taken and while nothing
/// else uses memory below 0x1900 (it overwrites skiboot's vectors, which skiboot only needs
/// when it takes interrupts itself: the image owns the machine from here on).
pub unsafe fn install() {
    // The linker script defines both symbols around the `.vectors` output section.
    let start = core::ptr::addr_of!(__vectors_start) as usize;
    let end = core::ptr::addr_of!(__vectors_end) as usize;
    let len = end - start;
    // SAFETY: [VECTOR_BASE, VECTOR_BASE + len) is real memory below the image that the
    // caller guarantees is ours (see `# Safety`); the source is our own read-only section.
    // Volatile byte stores keep the compiler from treating address 0 as a null pointer.
    unsafe {
        for i in 0..len {
            let b = core::ptr::read_volatile((start + i) as *const u8);
            core::ptr::write_volatile((VECTOR_BASE + i) as *mut u8, b);
        }
    }
    let mut a = VECTOR_BASE;
    while a < VECTOR_BASE + len {
        // SAFETY: cache maintenance on lines we just wrote; no data is changed.
        unsafe { asm!("dcbst 0, {0}", "sync", "icbi 0, {0}", in(reg) a, options(nostack)) };
        a += CACHE_LINE;
    }
    // SAFETY: context synchronisation only.
    unsafe { asm!("sync", "isync", options(nostack)) };
}
