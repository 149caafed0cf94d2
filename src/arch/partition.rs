//! Running code in a guest partition (boot/partition.S): the ultravisor stays in hypervisor
//! state at LPID 0; a guest runs with MSR[HV] clear, in real mode, at its own LPID, so every
//! address it uses goes through that LPID's partition-scoped radix tree (installed with
//! [`set_partition_table`]). Any interrupt the hardware delivers to the hypervisor while the
//! guest runs (its `sc 1`, a partition-scoped miss (HDSI/HISI), the hypervisor decrementer,
//! a hypervisor-privileged instruction (HEAI), an external interrupt) ends [`run`] with the
//! interrupt's registers in an [`Exit`].
//!
//! What a guest can reach is exactly what its tree maps: the ultravisor's stacks, heap and
//! statics are simply absent from it. [`Partitions`] maps only guest memory it handed out,
//! and the [`Grant`]s a hypervisor partition gets (the image's code read-only, the hypervisor's
//! own statics and stack, the shared caller window, device pages above RAM). Every register
//! the guest sees is loaded from its own frame, so nothing the ultravisor left in a register
//! crosses over.

use core::arch::asm;

use super::frame::HcallFrame;

bitflags::bitflags! {
    /// Machine State Register bits the partitions use (Power ISA 3.0B Book III, "Machine
    /// State Register"; bit n of the ISA's MSB-0 numbering is `1 << (63 - n)`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Msr: u64 {
        /// SF (bit 0): 64-bit mode.
        const SF = 1 << 63;
        /// HV (bit 3): hypervisor state.
        const HV = 1 << 60;
        /// VEC (bit 38): vector facility available.
        const VEC = 1 << 25;
        /// VSX (bit 40): VSX facility available.
        const VSX = 1 << 23;
        /// FP (bit 50): floating point available.
        const FP = 1 << 13;
        /// ME (bit 51): machine checks enabled.
        const ME = 1 << 12;
        /// RI (bit 62): recoverable interrupt.
        const RI = 1 << 1;
    }
}

bitflags::bitflags! {
    /// Logical Partitioning Control Register bits the partitions use (Power ISA 3.0B
    /// Book III, "Logical Partitioning Control Register"; MSB-0 bit n is `1 << (63 - n)`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Lpcr: u64 {
        /// UPRT (bit 41): use the process table (radix).
        const UPRT = 1 << 22;
        /// HR (bit 43): partitions use radix translation.
        const HR = 1 << 20;
        /// HDICE (bit 63): the hypervisor decrementer interrupts a guest that runs out.
        const HDICE = 1;
    }
}

/// MSR a guest runs with: SF (64-bit), FP, VEC, VSX, ME, RI; HV, PR, IR, DR and EE clear
/// (supervisor, real mode, big-endian, no external interrupts of its own).
pub const MSR_GUEST: Msr = Msr::SF
    .union(Msr::VEC)
    .union(Msr::VSX)
    .union(Msr::FP)
    .union(Msr::ME)
    .union(Msr::RI);

const _: () = assert!(MSR_GUEST.bits() == 0x8000_0000_0280_3002);
const _: () = assert!(!MSR_GUEST.contains(Msr::HV));

/// Interrupt vectors a guest's run can end with (Power ISA 3.0B Book III, "Interrupt
/// Definitions"), named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vector {
    /// 0x500, hypervisor external interrupt (LPCR[LPES] clear).
    External,
    /// 0x980, hypervisor decrementer: the guest's time budget ran out.
    Hdec,
    /// 0xC00, `sc 1` (an hcall) from the guest.
    Syscall,
    /// 0xE00, hypervisor data storage: a load or store its tree does not allow.
    Hdsi,
    /// 0xE20, hypervisor instruction storage: a fetch its tree does not allow.
    Hisi,
    /// 0xE40, hypervisor emulation assistance: a hypervisor-privileged or illegal instruction.
    Heai,
}

impl Vector {
    /// The vector at `offset`, if it is one of these.
    pub fn at(offset: u64) -> Option<Self> {
        [
            (0x500, Vector::External),
            (0x980, Vector::Hdec),
            (0xC00, Vector::Syscall),
            (0xE00, Vector::Hdsi),
            (0xE20, Vector::Hisi),
            (0xE40, Vector::Heai),
        ]
        .into_iter()
        .find_map(|(o, v)| (o == offset).then_some(v))
    }
}

/// Why and where a guest's run ended: the interrupt's vector and registers.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exit {
    /// The interrupt vector's offset ([`Exit::kind`] names it).
    pub vector: u64,
    /// SRR0 (for `sc 1`: the instruction after it).
    pub srr0: u64,
    /// SRR1.
    pub srr1: u64,
    /// HSRR0 (for HDSI/HISI/HEAI/HDEC: the instruction interrupted).
    pub hsrr0: u64,
    /// HSRR1.
    pub hsrr1: u64,
    /// HDAR: the data address of an HDSI.
    pub hdar: u64,
    /// HDSISR: why.
    pub hdsisr: u64,
    /// ASDR: the guest real address a partition-scoped fault was translating.
    pub asdr: u64,
    /// HEIR: the instruction an HEAI trapped.
    pub heir: u64,
}

impl Exit {
    /// The vector, named (`None` for any other).
    pub fn kind(&self) -> Option<Vector> {
        Vector::at(self.vector)
    }

    /// Where the guest was when it left: the interrupted instruction for the hypervisor
    /// interrupts, the one after `sc` for an hcall.
    pub fn pc(&self) -> u64 {
        if self.kind() == Some(Vector::Syscall) {
            self.srr0
        } else {
            self.hsrr0
        }
    }
}

/// One line: what ended the run and where (the ultravisor's fault reports use it).
impl core::fmt::Display for Exit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.kind() {
            Some(Vector::Syscall) => write!(f, "hcall from {:#x}", self.srr0.wrapping_sub(4)),
            Some(Vector::Hdsi) => write!(
                f,
                "stopped: data access to {:#x} (guest real {:#x}) at {:#x}, HDSISR {:#x}",
                self.hdar, self.asdr, self.hsrr0, self.hdsisr
            ),
            Some(Vector::Hisi) => write!(
                f,
                "stopped: instruction fetch at {:#x} (guest real {:#x})",
                self.hsrr0, self.asdr
            ),
            Some(Vector::Heai) => write!(
                f,
                "stopped: privileged instruction {:#010x} at {:#x}",
                self.heir, self.hsrr0
            ),
            Some(Vector::Hdec) => {
                write!(f, "stopped: time budget exhausted at {:#x}", self.hsrr0)
            }
            _ => write!(
                f,
                "stopped: interrupt {:#x} at {:#x}",
                self.vector,
                self.pc()
            ),
        }
    }
}

/// What boot/partition.S reads and writes (its RB_* offsets).
#[repr(C)]
struct RunBlock {
    frame: *mut HcallFrame,
    host_sp: u64,
    exit: Exit,
}

const _: () = assert!(core::mem::offset_of!(RunBlock, frame) == 0);
const _: () = assert!(core::mem::offset_of!(RunBlock, host_sp) == 8);
const _: () = assert!(core::mem::offset_of!(RunBlock, exit) == 16);
const _: () = assert!(core::mem::size_of::<Exit>() == 9 * 8);

extern "C" {
    fn pefbox_partition_run(run: *mut RunBlock, lpid: u64) -> u64;
}

/// Installs the partition table (`ptcr`: its real address and size, Power ISA PTCR) and
/// turns on radix partitions with the hypervisor decrementer; every cached translation is
/// dropped.
///
/// # Safety
/// `ptcr` must name a partition table whose trees map, for every LPID a guest is run at,
/// no memory the ultravisor relies on; the table must stay in place while guests run.
pub unsafe fn set_partition_table(ptcr: u64) {
    // SAFETY: SPR writes in hypervisor state; the caller vouches for the table. The LPCR
    // bits added change only how guests (MSR[HV] = 0) translate and when HDEC interrupts.
    unsafe {
        asm!(
            "mtspr 464, {ptcr}",
            "mfspr {t}, 318",
            "or {t}, {t}, {bits}",
            "mtspr 318, {t}",
            "isync",
            ptcr = in(reg) ptcr,
            bits = in(reg) (Lpcr::HR | Lpcr::UPRT | Lpcr::HDICE).bits(),
            t = out(reg) _,
            options(nostack)
        )
    };
    flush_translations();
}

/// Drops every cached translation of every partition (after a tree or the table changed).
pub fn flush_translations() {
    // SAFETY: `tlbie` with IS = 3 (everything), RIC = 2 (TLB and page-walk caches), then
    // the barriers it needs; it changes no memory.
    unsafe {
        asm!(
            "ptesync",
            "tlbie {rb}, {rs}, 2, 0, 1",
            "eieio",
            "tlbsync",
            "ptesync",
            rb = in(reg) 3u64 << 10,
            rs = in(reg) 0u64,
            options(nostack)
        )
    };
}

/// Runs the guest whose registers are `frame` (PC in `frame.srr0`) at partition `lpid`
/// for at most `budget` timebase ticks, until an interrupt brings it back; its registers
/// are then in `frame`. The guest's MSR is always [`MSR_GUEST`] (never MSR[HV]).
///
/// # Safety
/// [`set_partition_table`] must have installed a table whose tree for `lpid` maps no memory
/// the ultravisor relies on (its code, stacks, heap, statics, the vectors at 0, the tables
/// themselves): the guest can read, write and execute everything its tree maps.
pub unsafe fn run(frame: &mut HcallFrame, lpid: u32, budget: u32) -> Result<Exit, PartitionError> {
    if lpid == 0 {
        return Err(PartitionError::Lpid(0));
    }
    if budget == 0 || budget > i32::MAX as u32 {
        return Err(PartitionError::Budget(budget));
    }
    frame.srr1 = MSR_GUEST.bits();
    let mut block = RunBlock {
        frame,
        host_sp: 0,
        exit: Exit::default(),
    };
    // SAFETY: HDEC is the hypervisor decrementer: a positive value is the guest's budget.
    unsafe { asm!("mtspr 310, {0}", "isync", in(reg) u64::from(budget), options(nostack)) };
    // SAFETY: the block and the frame live across the call (the assembly stores into both
    // and returns only after the guest exits); the caller vouches for the partition's tree.
    unsafe { pefbox_partition_run(&mut block, u64::from(lpid)) };
    // SAFETY: plain read of the block the assembly filled (volatile: written behind the
    // compiler's back).
    Ok(unsafe { core::ptr::read_volatile(&block.exit) })
}

/// The guest partitions of this boot: the region link.ld reserves for them (radix tables
/// first, then guest memory), the partition table and one tree per LPID. Every mapping a
/// tree gets is checked to point into guest memory handed out here, so a guest can never
/// be given the ultravisor's own memory by mistake; that is what makes [`Partitions::run`]
/// safe to call. Only one exists at a time ([`Partitions::take`]).
pub struct Partitions {
    arena: radix::Arena<'static>,
    table: radix::PartitionTable,
    trees: heapless::Vec<(u32, radix::Tree), 8>,
    /// The first `sealed` trees can no longer change ([`Partitions::mark`]).
    sealed: usize,
    /// Guest memory: [start, end), of which [start, next) is handed out.
    guest: (u64, u64),
    next: u64,
    /// Whether the table is installed (PTCR) with no change to any tree since (a `Cell`, so
    /// that running, which installs it, needs only `&self`: the trees do not change).
    installed: core::cell::Cell<bool>,
}

/// A point [`Partitions::release`] goes back to: the partitions, radix tables and guest
/// memory made after it are given back; the ones before it are sealed.
#[derive(Debug)]
pub struct Mark {
    trees: usize,
    arena: u64,
    next: u64,
}

/// Memory of the image that a partition may be given besides guest memory: the pieces
/// link.ld lays out for the hypervisor partition (`target::hvp`), each mapped at its own
/// address. None of it is memory the ultravisor relies on: the code is mapped read-only,
/// and the rest is the hypervisor's own or shared with it (the ultravisor trusts nothing it
/// reads there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// The image's code and constants, `IMAGE_BASE..__shared_code_end`: read and execute.
    Code,
    /// The hypervisor partition's statics (`.hvdata`): read/write.
    HvData,
    /// The hypervisor partition's stack (`__hvp_stack`): read/write.
    HvStack,
    /// The caller window (`__guest_start..__guest_end`), where the ultravisor's shared pages
    /// are: read/write.
    CallerWindow,
    /// One 4 KiB page of device registers at `page`, which must lie at or above `ram_top`:
    /// read/write, cache-inhibited and guarded.
    Mmio {
        /// The page's real address (4 KiB aligned).
        page: u64,
        /// The end of RAM.
        ram_top: u64,
    },
}

impl Grant {
    /// Its range and access.
    fn range(self) -> Result<(u64, u64, radix::Access), PartitionError> {
        use radix::Access;
        extern "C" {
            static __shared_code_end: u8;
            static __hvdata_start: u8;
            static __hvdata_end: u8;
            static __hvp_stack_bottom: u8;
            static __hvp_stack_top: u8;
        }
        let at = |s: *const u8| s as u64;
        let rw = Access::READ | Access::WRITE;
        Ok(match self {
            Grant::Code => (
                crate::platform::layout::IMAGE_BASE,
                at(core::ptr::addr_of!(__shared_code_end)),
                Access::READ | Access::EXECUTE,
            ),
            Grant::HvData => (
                at(core::ptr::addr_of!(__hvdata_start)),
                at(core::ptr::addr_of!(__hvdata_end)),
                rw,
            ),
            Grant::HvStack => (
                at(core::ptr::addr_of!(__hvp_stack_bottom)),
                at(core::ptr::addr_of!(__hvp_stack_top)),
                rw,
            ),
            Grant::CallerWindow => {
                let (s, e) = crate::platform::layout::guest_window();
                (s, e, rw)
            }
            Grant::Mmio { page, ram_top } => {
                if page < ram_top || page & 0xFFF != 0 {
                    return Err(PartitionError::NotDevice(page));
                }
                (page, page + 4096, rw | Access::CACHE_INHIBITED)
            }
        })
    }
}

/// Set while a [`Partitions`] exists.
static TAKEN: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Bytes of the region that hold radix tables (the rest is guest memory).
const TABLES: usize = 512 * 1024;

/// Why a partition operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionError {
    /// Another [`Partitions`] is in use.
    Busy,
    /// The radix tables' arena refused.
    Arena(radix::ArenaError),
    /// The partition table refused.
    Table(radix::TableError),
    /// The tree refused the mapping.
    Map(radix::MapError),
    /// A mapping's host range is not guest memory handed out by [`Partitions::guest_pages`].
    NotGuestMemory {
        /// Host address.
        host: u64,
        /// Length.
        len: u64,
    },
    /// No guest memory left for the pages asked for.
    OutOfGuestMemory(usize),
    /// The LPID has no partition (or already has one, for [`Partitions::create`]).
    Lpid(u32),
    /// The LPID's tree is sealed by a [`Mark`]: it can no longer change.
    Sealed(u32),
    /// A [`Grant::Mmio`] page that is not a device page above RAM.
    NotDevice(u64),
    /// [`Partitions::release`] of a mark that is not this one's latest.
    StaleMark,
    /// [`Partitions::guest_bytes`]: the range is not all mapped, read-only everywhere, onto
    /// contiguous guest memory.
    NotReadOnly {
        /// Guest-physical start.
        gpa: u64,
        /// Length.
        len: u64,
    },
    /// The time budget is 0 or does not fit the hypervisor decrementer's positive range.
    Budget(u32),
}

impl core::fmt::Display for PartitionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PartitionError::Busy => f.write_str("the partitions are in use"),
            PartitionError::Arena(e) => write!(f, "radix tables: {e}"),
            PartitionError::Table(e) => write!(f, "partition table: {e}"),
            PartitionError::Map(e) => write!(f, "mapping: {e}"),
            PartitionError::NotGuestMemory { host, len } => {
                write!(f, "{host:#x}+{len:#x} is not guest memory")
            }
            PartitionError::OutOfGuestMemory(n) => write!(f, "no room for {n} guest pages"),
            PartitionError::Lpid(0) => f.write_str("LPID 0 is the ultravisor's own"),
            PartitionError::Lpid(l) => write!(f, "LPID {l}: no such partition, or taken"),
            PartitionError::Sealed(l) => write!(f, "LPID {l}: its tree is sealed"),
            PartitionError::NotDevice(p) => {
                write!(f, "{p:#x} is not a page of device registers above RAM")
            }
            PartitionError::StaleMark => f.write_str("the mark is not the latest one"),
            PartitionError::NotReadOnly { gpa, len } => write!(
                f,
                "guest {gpa:#x}+{len:#x} is not mapped read-only, whole, onto its own memory"
            ),
            PartitionError::Budget(b) => write!(f, "time budget {b} ticks is not in 1..2^31"),
        }
    }
}

impl Partitions {
    /// Takes the partition region (radix tables and guest memory), emptied.
    pub fn take() -> Result<Self, PartitionError> {
        use core::sync::atomic::Ordering;
        extern "C" {
            static __partition_start: u8;
            static __partition_end: u8;
        }
        if TAKEN.swap(true, Ordering::Acquire) {
            return Err(PartitionError::Busy);
        }
        let s = core::ptr::addr_of!(__partition_start) as u64;
        let e = core::ptr::addr_of!(__partition_end) as u64;
        let tables_end = s + TABLES as u64;
        // SAFETY: link.ld reserves [__partition_start, __partition_end) for partitions and
        // nothing else refers to it; TAKEN makes this the only live slice of its first
        // TABLES bytes (it is released when this Partitions is dropped, with the arena).
        let tables = unsafe { core::slice::from_raw_parts_mut(s as *mut u8, TABLES) };
        let made = radix::Arena::new(tables, s).and_then(|mut arena| {
            let table = arena.new_partition_table()?;
            Ok((arena, table))
        });
        match made {
            Ok((arena, table)) => Ok(Partitions {
                arena,
                table,
                trees: heapless::Vec::new(),
                sealed: 0,
                guest: (tables_end, e),
                next: tables_end,
                installed: core::cell::Cell::new(false),
            }),
            Err(err) => {
                TAKEN.store(false, Ordering::Release);
                Err(PartitionError::Arena(err))
            }
        }
    }

    /// Hands out `n` zeroed 4 KiB pages of guest memory; returns their host address.
    pub fn guest_pages(&mut self, n: usize) -> Result<u64, PartitionError> {
        let len = (n as u64).checked_mul(4096).filter(|&l| l > 0);
        let Some(end) = len
            .and_then(|l| self.next.checked_add(l))
            .filter(|&e| e <= self.guest.1)
        else {
            return Err(PartitionError::OutOfGuestMemory(n));
        };
        let start = self.next;
        // SAFETY: [start, end) is guest memory of the region this Partitions owns, handed
        // out once; no Rust reference points into it.
        unsafe { core::ptr::write_bytes(start as *mut u8, 0, (end - start) as usize) };
        self.next = end;
        Ok(start)
    }

    /// Copies `bytes` into guest memory at host address `host` (handed out before).
    pub fn write(&mut self, host: u64, bytes: &[u8]) -> Result<(), PartitionError> {
        let len = bytes.len() as u64;
        self.check_guest(host, len)?;
        // SAFETY: [host, host+len) is guest memory handed out by guest_pages (checked);
        // nothing else refers to it.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), host as *mut u8, bytes.len()) };
        super::sync_icache(host, bytes.len());
        Ok(())
    }

    fn check_guest(&self, host: u64, len: u64) -> Result<(), PartitionError> {
        let end = host.checked_add(len);
        if host < self.guest.0 || end.is_none_or(|e| e > self.next) {
            return Err(PartitionError::NotGuestMemory { host, len });
        }
        Ok(())
    }

    /// Gives `lpid` an empty tree (it maps nothing yet) and enters it in the table.
    pub fn create(&mut self, lpid: u32) -> Result<(), PartitionError> {
        if lpid == 0 || self.tree(lpid).is_ok() {
            return Err(PartitionError::Lpid(lpid));
        }
        let tree = self.arena.new_tree().map_err(PartitionError::Arena)?;
        self.table
            .set(&mut self.arena, lpid, &tree)
            .map_err(PartitionError::Table)?;
        self.trees
            .push((lpid, tree))
            .map_err(|_| PartitionError::Lpid(lpid))?;
        self.installed.set(false);
        Ok(())
    }

    fn tree(&self, lpid: u32) -> Result<&radix::Tree, PartitionError> {
        self.trees
            .iter()
            .find(|(l, _)| *l == lpid)
            .map(|(_, t)| t)
            .ok_or(PartitionError::Lpid(lpid))
    }

    /// Maps guest-physical `[gpa, +len)` of `lpid` to guest memory at `host`.
    pub fn map(
        &mut self,
        lpid: u32,
        gpa: u64,
        host: u64,
        len: u64,
        access: radix::Access,
    ) -> Result<(), PartitionError> {
        self.check_guest(host, len)?;
        self.map_any((lpid, gpa), host, len, access)
    }

    /// The mapping itself, for any host range: only [`Self::map`] (guest memory, checked)
    /// and the control below call it.
    fn map_any(
        &mut self,
        (lpid, gpa): (u32, u64),
        host: u64,
        len: u64,
        access: radix::Access,
    ) -> Result<(), PartitionError> {
        if self.trees[..self.sealed].iter().any(|(l, _)| *l == lpid) {
            return Err(PartitionError::Sealed(lpid));
        }
        let tree = *self.tree(lpid)?;
        self.arena
            .map(&tree, gpa, host, len, access)
            .map_err(PartitionError::Map)?;
        self.installed.set(false);
        Ok(())
    }

    /// Maps `grant` into `lpid` at its own addresses (guest real = host real).
    pub fn grant(&mut self, lpid: u32, grant: Grant) -> Result<(), PartitionError> {
        let (start, end, access) = grant.range()?;
        self.map_any((lpid, start), start, end.saturating_sub(start), access)
    }

    /// Seals every partition that exists now (their trees can no longer change) and returns
    /// the point [`Partitions::release`] goes back to.
    pub fn mark(&mut self) -> Mark {
        self.sealed = self.trees.len();
        Mark {
            trees: self.trees.len(),
            arena: self.arena.used(),
            next: self.next,
        }
    }

    /// Gives back every partition, radix table and page of guest memory made since `mark`
    /// (the latest one): their table entries are cleared, the memory zeroed, and the table
    /// reinstalled (dropping every cached translation) before the next run.
    pub fn release(&mut self, mark: Mark) -> Result<(), PartitionError> {
        if mark.trees != self.sealed || mark.trees > self.trees.len() || mark.next > self.next {
            return Err(PartitionError::StaleMark);
        }
        for (lpid, _) in self.trees.iter().skip(mark.trees) {
            self.table
                .clear(&mut self.arena, *lpid)
                .map_err(PartitionError::Table)?;
        }
        self.trees.truncate(mark.trees);
        self.arena
            .rewind(mark.arena)
            .map_err(PartitionError::Arena)?;
        // SAFETY: [mark.next, self.next) is guest memory this Partitions handed out after the
        // mark; its users are gone with their partitions, and no Rust reference points into it.
        unsafe {
            core::ptr::write_bytes(mark.next as *mut u8, 0, (self.next - mark.next) as usize)
        };
        self.next = mark.next;
        self.installed.set(false);
        Ok(())
    }

    /// The control of the isolation self-test: maps one page of the ultravisor's own memory
    /// into `lpid`, read-only (the guest can read it, never change it), to show the
    /// attempts read whatever a tree lets them.
    #[cfg(feature = "selftest")]
    pub fn expose_read_only_for_the_control(
        &mut self,
        lpid: u32,
        gpa: u64,
        host: u64,
    ) -> Result<(), PartitionError> {
        self.map_any((lpid, gpa), host, 4096, radix::Access::READ)
    }

    /// Every range `lpid`'s tree maps, as (guest address, host address, length, access).
    pub fn mappings(&self, lpid: u32) -> Result<heapless::Vec<radix::Mapping, 32>, PartitionError> {
        let tree = self.tree(lpid)?;
        Ok(self.arena.mappings(tree).merged().take(32).collect())
    }

    /// The bytes of guest-physical `[gpa, gpa + len)` of partition `lpid`, for the
    /// ultravisor to read (an SVM's kernel, bootargs, ESM blob): only if `lpid` maps the whole
    /// range readable, onto guest memory contiguous in host addresses, and no partition's tree
    /// maps any byte of it writable. No partition can change them then, and the ultravisor
    /// cannot either while the slice borrows `self` (every write takes `&mut self`).
    pub fn guest_bytes(&self, lpid: u32, gpa: u64, len: u64) -> Result<&[u8], PartitionError> {
        let refused = PartitionError::NotReadOnly { gpa, len };
        let end = gpa
            .checked_add(len)
            .filter(|_| len > 0)
            .ok_or(refused.clone())?;
        let tree = self.tree(lpid)?;
        let m = self
            .arena
            .mappings(tree)
            .merged()
            .find(|m| m.guest <= gpa && end <= m.guest.saturating_add(m.len))
            .ok_or(refused.clone())?;
        if !m.access.contains(radix::Access::READ) || m.access.contains(radix::Access::WRITE) {
            return Err(refused);
        }
        let host = m.host + (gpa - m.guest);
        self.check_guest(host, len)?;
        let writable_elsewhere = self.trees.iter().any(|(_, t)| {
            self.arena.mappings(t).merged().any(|o| {
                o.access.contains(radix::Access::WRITE)
                    && o.host < host + len
                    && host < o.host.saturating_add(o.len)
            })
        });
        if writable_elsewhere {
            return Err(refused);
        }
        let n = usize::try_from(len).map_err(|_| refused)?;
        // SAFETY: [host, host + len) is guest memory this Partitions handed out (checked), which
        // no tree maps writable (checked above), so no partition writes it; the ultravisor
        // writes guest memory only through `&mut self` methods, which cannot run while this
        // shared borrow of `self` lives, and no partition memory is given back before then.
        Ok(unsafe { core::slice::from_raw_parts(host as *const u8, n) })
    }

    /// Where partition `lpid`'s guest-physical `[gpa, gpa + len)` is in host memory, if its
    /// tree maps the whole range, contiguously, as ordinary memory with `access` (for the
    /// ultravisor to serve a partition's request that names a buffer of its own).
    pub fn host_range(&self, lpid: u32, gpa: u64, len: u64, access: radix::Access) -> Option<u64> {
        let end = gpa.checked_add(len).filter(|_| len > 0)?;
        let tree = self.tree(lpid).ok()?;
        let m = self
            .arena
            .mappings(tree)
            .merged()
            .find(|m| m.guest <= gpa && end <= m.guest.saturating_add(m.len))?;
        let ok = m.access.contains(access) && !m.access.contains(radix::Access::CACHE_INHIBITED);
        ok.then(|| m.host + (gpa - m.guest))
    }

    /// The host address of the radix tables (what no guest may reach).
    pub fn tables(&self) -> u64 {
        self.arena.base()
    }

    /// Runs the guest `frame` in partition `lpid` (see [`run`]) for at most `budget`
    /// timebase ticks. The table is (re)installed, and cached translations dropped, only
    /// when a tree changed since the last run.
    pub fn run(
        &self,
        lpid: u32,
        frame: &mut HcallFrame,
        budget: u32,
    ) -> Result<Exit, PartitionError> {
        self.tree(lpid)?;
        if !self.installed.get() {
            // SAFETY: every tree of this table maps only guest memory handed out by this
            // Partitions (map checks it) and the grants (the image's code read-only, the
            // hypervisor partition's own data and stack, the shared caller window, device
            // pages above RAM: nothing the ultravisor relies on), except the control's
            // read-only page, which a guest can read but not change; the table lives as
            // long as self.
            unsafe { set_partition_table(self.table.ptcr()) };
            self.installed.set(true);
        }
        // SAFETY: as above: the installed table is this one, unchanged since.
        unsafe { run(frame, lpid, budget) }
    }
}

impl Drop for Partitions {
    fn drop(&mut self) {
        TAKEN.store(false, core::sync::atomic::Ordering::Release);
    }
}
