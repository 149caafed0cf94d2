//! The hypervisor (`pefbox::hv`) over a real swtpm with fake caller memory: the layout and
//! types the hypervisor's host tests share.

use std::sync::Arc;

use pefbox::hv::{
    CheckedRange, FakeGuestMemory, GuestMemory, GuestRange, Hypervisor, Meddle, Meddler,
    RegionTable,
};
use xtask::swtpm::{Swtpm, SwtpmConn};

/// Where the fake caller memory starts.
pub const RAM_BASE: u64 = 0x1000_0000;
/// Its size.
pub const RAM_LEN: usize = 0x1_0000;
/// The hypervisor's own memory, reserved (never caller memory).
pub const HV_MEM: GuestRange = GuestRange::new(0x2000_0000, 0x100_0000);
/// The command buffer.
pub const IN: u64 = RAM_BASE;
/// The response buffer.
pub const OUT: u64 = RAM_BASE + 0x2000;

/// TPM_RH_NULL.
pub const TPM_RH_NULL: u32 = 0x4000_0007;
/// TPM_RS_PW (the password session).
pub const TPM_RS_PW: u32 = 0x4000_0009;

/// The fake caller memory.
pub type Memory = FakeGuestMemory<RAM_LEN>;

/// The fake caller memory, shared so the test can poke and peek while the hypervisor owns it.
pub struct SharedMemory(pub Arc<Memory>);

impl GuestMemory for SharedMemory {
    fn copy_from_guest(&self, src: &CheckedRange, dst: &mut [u8]) {
        self.0.copy_from_guest(src, dst);
    }
    fn copy_to_guest(&self, dst: &CheckedRange, src: &[u8]) {
        self.0.copy_to_guest(dst, src);
    }
}

/// The hypervisor under test.
pub type Hv = Hypervisor<SwtpmConn, SharedMemory, Meddler>;

/// A hypervisor over a real swtpm (started here; `Swtpm::start` installs swtpm when it is
/// missing, see tools::ensure), with fresh fake caller memory at [`RAM_BASE`] and [`HV_MEM`]
/// reserved, nothing tampered with. The returned [`Swtpm`] keeps the process alive: hold it for
/// the whole test.
pub fn hv_over_swtpm() -> (Swtpm, Arc<Memory>, Box<Hv>) {
    let sw = Swtpm::start().expect("swtpm must start");
    let link = sw.connect().expect("connect to swtpm");
    let mem = Arc::new(Memory::new(RAM_BASE));
    let hv = Box::new(Hypervisor::new(
        SharedMemory(Arc::clone(&mem)),
        Meddler::new(Meddle::Off),
    ));
    let regions =
        RegionTable::new(&[GuestRange::new(RAM_BASE, RAM_LEN as u64)], &[HV_MEM]).unwrap();
    hv.configure(regions, Some(link));
    (sw, mem, hv)
}
