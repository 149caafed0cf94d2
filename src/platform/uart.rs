//! A 16550 UART on the LPC bus, reached through cache-inhibited MMIO. In hypervisor state
//! (the firmware and the ultravisor, real mode) that takes `lbzcix`/`stbcix`; in the
//! hypervisor partition (MSR[HV] clear, where those are hypervisor-privileged) plain loads
//! and stores, which its radix tree maps to the registers as cache-inhibited, guarded
//! storage (`target::hvp`). Addresses come from the device tree (`platform::BootInfo`).

use core::arch::asm;

const RBR_THR: u64 = 0;
const IER: u64 = 1;
const FCR: u64 = 2;
const LCR: u64 = 3;
const MCR: u64 = 4;
const LSR: u64 = 5;
const LSR_DR: u8 = 0x01;
const LSR_THRE: u8 = 0x20;

/// A 16550 whose register 0 is at the MMIO address `base`.
#[derive(Clone, Copy, Debug)]
pub struct Uart16550 {
    base: u64,
}

impl Uart16550 {
    /// # Safety
    /// `base` must be the MMIO address of a 16550's register block (8 registers), as
    /// translated from the device tree, that nothing else drives concurrently.
    pub const unsafe fn new(base: u64) -> Self {
        Self { base }
    }

    /// MMIO address of register 0.
    pub fn base(&self) -> u64 {
        self.base
    }

    fn read(&self, reg: u64) -> u8 {
        let a = self.base + reg;
        if !crate::arch::hypervisor_state() {
            // SAFETY: `new`'s contract: `a` is one of this UART's registers, which the
            // partition's tree maps cache-inhibited and guarded (a volatile load is one access).
            return unsafe { core::ptr::read_volatile(a as *const u8) };
        }
        let v: u64;
        // SAFETY: `new`'s contract: `a` is one of this UART's registers.
        unsafe { asm!("lbzcix {0}, 0, {1}", out(reg) v, in(reg) a, options(nostack)) };
        v as u8
    }

    fn write(&self, reg: u64, v: u8) {
        let a = self.base + reg;
        if !crate::arch::hypervisor_state() {
            // SAFETY: as in `read`, storing; `sync` orders it before the next access.
            unsafe {
                core::ptr::write_volatile(a as *mut u8, v);
                asm!("sync", options(nostack));
            }
            return;
        }
        // SAFETY: `new`'s contract: `a` is one of this UART's registers.
        unsafe {
            asm!("stbcix {0}, 0, {1}", "sync", in(reg) v as u64, in(reg) a, options(nostack))
        };
    }

    /// 8N1, FIFOs on and cleared, interrupts off. (QEMU ignores the divisor.)
    pub fn init(&self) {
        self.write(IER, 0);
        self.write(LCR, 0x03);
        // FIFOs on and cleared, receive trigger level 14: QEMU then hands the UART up to
        // 14 bytes per read of its chardev instead of 1 (measured: GetRandom 5 ms -> see README).
        self.write(FCR, 0xC7);
        self.write(MCR, 0x03);
    }

    /// True when the transmitter can take a byte.
    pub fn can_send(&self) -> bool {
        self.read(LSR) & LSR_THRE != 0
    }

    /// Sends one byte, waiting (bounded by `spins` polls) for room. False if it never came.
    pub fn send(&self, b: u8, spins: u32) -> bool {
        for _ in 0..spins {
            if self.can_send() {
                self.write(RBR_THR, b);
                return true;
            }
        }
        false
    }

    /// One received byte, if any.
    pub fn try_recv(&self) -> Option<u8> {
        if self.read(LSR) & LSR_DR != 0 {
            Some(self.read(RBR_THR))
        } else {
            None
        }
    }

    /// Whether the device answers like a 16550 (LSR not floating at 0xFF).
    pub fn looks_present(&self) -> bool {
        self.read(LSR) != 0xFF
    }
}
