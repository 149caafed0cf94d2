//! Linker-script facts (link.ld) as typed addresses.

extern "C" {
    static __guest_start: u8;
    static __guest_end: u8;
}

/// The caller memory window `[start, end)`: RAM the image hands to its hcall caller (the
/// ultravisor side and the self-tests). Both sides learn it from here; the hypervisor checks
/// every address against it (`target::hv::configure`).
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
        // SAFETY: the page lies inside the caller window (checked at construction), RAM that
        // no Rust reference points into.
        unsafe { volatile_write(self.addr, off, bytes) }
    }

    /// Copies from offset `off` of the page into `out` (at most to the end of the page).
    pub fn read(&self, off: usize, out: &mut [u8]) {
        // SAFETY: as in `write`.
        unsafe { volatile_read(self.addr, off, out) }
    }
}

/// Copies `bytes` (clamped to the page) to offset `off` of the 4 KiB page at `page`, byte by
/// byte with volatile stores (the other side of a shared page may change it at any time, so
/// the compiler must not assume anything about it).
///
/// # Safety
/// `page` must be a 4 KiB page of RAM that no Rust reference points into.
unsafe fn volatile_write(page: u64, off: usize, bytes: &[u8]) {
    let n = bytes.len().min((PAGE as usize).saturating_sub(off));
    let dst = (page as usize + off) as *mut u8;
    for (i, b) in bytes[..n].iter().enumerate() {
        // SAFETY: [page+off, page+off+n) lies inside the page (clamped above); the caller
        // vouches for the page.
        unsafe { core::ptr::write_volatile(dst.add(i), *b) };
    }
}

/// Copies from offset `off` of the 4 KiB page at `page` into `out` (clamped to the page).
///
/// # Safety
/// As [`volatile_write`].
unsafe fn volatile_read(page: u64, off: usize, out: &mut [u8]) {
    let n = out.len().min((PAGE as usize).saturating_sub(off));
    let src = (page as usize + off) as *const u8;
    for (i, b) in out[..n].iter_mut().enumerate() {
        // SAFETY: as in `volatile_write`, reading.
        *b = unsafe { core::ptr::read_volatile(src.add(i)) };
    }
}

/// A bounce page an SVM shares with the hypervisor: guest memory the ultravisor handed out
/// (`target::hvp::shared_page`), which the SVM's partition maps at `gpa` and the hypervisor's
/// at its own address. The ultravisor's TPM client uses it on the SVM's behalf, naming it by
/// the SVM's address, as the SVM itself would.
#[derive(Clone, Copy, Debug)]
pub struct BouncePage {
    gpa: u64,
    host: u64,
}

impl BouncePage {
    /// Shared page `index` of the pool, as the SVM sees it at `gpa`; `None` past the pool.
    pub fn new(index: usize, gpa: u64) -> Option<Self> {
        crate::target::hvp::shared_page(index).map(|host| Self { gpa, host })
    }

    /// Its host (real) address.
    pub fn host(&self) -> u64 {
        self.host
    }
}

impl crate::uv::hcall::SharedPage for BouncePage {
    fn gpa(&self) -> u64 {
        self.gpa
    }
    fn store(&mut self, bytes: &[u8]) {
        // SAFETY: the page is guest memory of the shared pool (`new`), which no Rust reference
        // points into (only these volatile copies touch it).
        unsafe { volatile_write(self.host, 0, bytes) }
    }
    fn load(&self, out: &mut [u8]) {
        // SAFETY: as in `store`.
        unsafe { volatile_read(self.host, 0, out) }
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

/// The real hypercall: issues the `sc 1` instruction as partition `lpid` (0 = the host;
/// see `arch::hcall_as`).
pub struct RealHypercall {
    /// The partition the calls come from.
    pub lpid: u32,
}

impl crate::uv::hcall::Hypercall for RealHypercall {
    fn hcall(&mut self, nr: u64, args: [u64; 9]) -> crate::papr::HcallResult {
        let (r3, out) = crate::arch::hcall_as(self.lpid, nr, args);
        crate::papr::from_regs(r3, out)
    }
}

extern "C" {
    static __image_end: u8;
}

/// Where the image is loaded (link.ld).
pub const IMAGE_BASE: u64 = 0x2000_0000;
/// skiboot's resident region under QEMU powernv (OPAL base 0x3000_0000, as measured).
pub const SKIBOOT_BASE: u64 = 0x3000_0000;
/// Size reserved for skiboot.
pub const SKIBOOT_SIZE: u64 = 0x0300_0000;

/// Why a payload range cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadError {
    /// `start + len` overflows.
    Wraps,
    /// The range leaves RAM.
    OutsideRam,
    /// The range overlaps the vectors, the image or skiboot.
    Reserved,
}

impl core::fmt::Display for PayloadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            PayloadError::Wraps => "range wraps past the end of the address space",
            PayloadError::OutsideRam => "range is not inside RAM",
            PayloadError::Reserved => "range overlaps the vectors, the image or skiboot",
        })
    }
}

/// A payload that the platform loaded into RAM before the image ran (the initrd, the SVM
/// kernel and bootargs loaded by QEMU's loader), as a read-only slice, after checking that
/// `[start, start + len)` lies in RAM below `ram_top` and clear of the vectors, the image
/// and skiboot.
pub fn payload(start: u64, len: u64, ram_top: u64) -> Result<&'static [u8], PayloadError> {
    let end = start.checked_add(len).ok_or(PayloadError::Wraps)?;
    if end > ram_top {
        return Err(PayloadError::OutsideRam);
    }
    let image_end = core::ptr::addr_of!(__image_end) as u64;
    let overlaps = |b: u64, e: u64| start < e && b < end;
    if overlaps(0, 0x1_0000)
        || overlaps(IMAGE_BASE, image_end)
        || overlaps(SKIBOOT_BASE, SKIBOOT_BASE + SKIBOOT_SIZE)
    {
        return Err(PayloadError::Reserved);
    }
    if len == 0 {
        return Ok(&[]);
    }
    // SAFETY: the range is RAM (below ram_top, from the device tree's memory nodes) that
    // neither the image, its stacks and heap, the vectors nor skiboot use; the platform
    // wrote it before entry and nothing writes it while the image runs.
    Ok(unsafe { core::slice::from_raw_parts(start as *const u8, len as usize) })
}
