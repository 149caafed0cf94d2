//! Linker-script facts (link.ld) as typed addresses.

extern "C" {
    static __guest_start: u8;
    static __guest_end: u8;
}

/// The caller memory window `[start, end)`: RAM the image hands to its hcall caller (the
/// ultravisor side and the self-tests). Both sides learn it from here; the hypervisor checks
/// every address against it (`hv::target::configure`).
pub fn guest_window() -> (u64, u64) {
    (
        core::ptr::addr_of!(__guest_start) as u64,
        core::ptr::addr_of!(__guest_end) as u64,
    )
}

/// Size of one page of the caller window.
pub const PAGE: u64 = 4096;

/// Page-sized slots of the caller window, handed out by purpose so that users never overlap.
pub mod pages {
    /// The `hcall-probe` buffer (`buf` / `buf+N`).
    pub const PROBE: u64 = 0;
    /// Self-test request buffer.
    pub const TEST_IN: u64 = 1;
    /// Self-test response buffer.
    pub const TEST_OUT: u64 = 2;
    /// The ultravisor's shared page for H_TPM_COMM.
    pub const UV_SHARED: u64 = 8;
}

/// One 4 KiB page of the caller window, by index (see [`pages`]).
#[derive(Clone, Copy, Debug)]
pub struct WindowPage {
    addr: u64,
}

impl WindowPage {
    /// Page `index` of the caller window; `None` if the window is smaller.
    pub fn new(index: u64) -> Option<Self> {
        let (s, e) = guest_window();
        let addr = s.checked_add(index.checked_mul(PAGE)?)?;
        (addr.checked_add(PAGE)? <= e).then_some(Self { addr })
    }

    /// Its physical (= guest-physical) address.
    pub fn addr(&self) -> u64 {
        self.addr
    }

    /// Copies `bytes` (at most a page; the rest is ignored) to offset `off` of the page.
    pub fn write(&self, off: usize, bytes: &[u8]) {
        let n = bytes.len().min((PAGE as usize).saturating_sub(off));
        // SAFETY: [addr+off, addr+off+n) lies inside this page of the caller window (checked
        // at construction and clamped here), RAM that no Rust reference points into; the
        // volatile copy keeps the compiler from assuming the hypervisor did not touch it.
        unsafe {
            let dst = (self.addr as usize + off) as *mut u8;
            for (i, b) in bytes[..n].iter().enumerate() {
                core::ptr::write_volatile(dst.add(i), *b);
            }
        }
    }

    /// Copies from offset `off` of the page into `out` (at most to the end of the page).
    pub fn read(&self, off: usize, out: &mut [u8]) {
        let n = out.len().min((PAGE as usize).saturating_sub(off));
        // SAFETY: as in `write`, reading.
        unsafe {
            let src = (self.addr as usize + off) as *const u8;
            for (i, b) in out[..n].iter_mut().enumerate() {
                *b = core::ptr::read_volatile(src.add(i));
            }
        }
    }
}

impl crate::uv::hcall::SharedPage for WindowPage {
    fn gpa(&self) -> u64 {
        self.addr
    }
    fn store(&mut self, bytes: &[u8]) {
        self.write(0, bytes);
    }
    fn load(&self, out: &mut [u8]) {
        self.read(0, out);
    }
}

/// Issues hypercalls with the real `sc 1` instruction.
pub struct Sc1;

impl crate::uv::hcall::Hypercall for Sc1 {
    fn hcall(&mut self, nr: u64, args: [u64; 9]) -> (i64, [u64; 9]) {
        crate::arch::hcall(nr, args)
    }
}
