//! The hypervisor: hcall dispatch and H_TPM_COMM, exactly as
//! `shared/spec/ppc-spapr-uv-hcalls.txt` specifies it, with guest-memory checks
//! and per-caller TPM sessions in static slots.
//!
//! Portable and host-tested. The target glue (the `sc 1` entry, the TPM link,
//! the unsafe guest-memory copy) holds one `static` [`Hypervisor`], calls
//! [`Hypervisor::configure`] once at boot, and [`Hypervisor::hcall`] from the
//! vector with r3 and r4..r12; it writes the [`HcallResult`] back into r3..r12
//! ([`papr::to_regs`]: on failure r4..r12 are zero).
//!
//! # H_TPM_COMM: the checks, in the order they are made
//!
//! Registers: r4 = operation, r5 = in_buffer, r6 = in_size, r7 = out_buffer,
//! r8 = out_size. The first failing row decides the status; nothing after it runs.
//! Every size/address check (rows 4-7) is made on registers only and before any
//! guest byte is read, like QEMU's spapr-tpm-proxy (which checks in_size, then
//! out_size, and addresses not at all). Row 8 needs the command bytes, so it can
//! only come after the in_buffer check.
//!
//! | # | check                                                          | status      |
//! |---|----------------------------------------------------------------|-------------|
//! | 1 | r3 is not H_TPM_COMM (0xEF10)                                  | H_FUNCTION  |
//! | 2 | no TPM configured ([`Hypervisor::configure`] gave no link)     | H_FUNCTION  |
//! | 3 | r4 is neither EXECUTE (1) nor CLOSE_SESSION (2)                | H_PARAMETER |
//! |   | CLOSE_SESSION: r5..r8 are ignored; see "Closing" below         |             |
//! | 4 | in_size > 4096, or in_size < 10 (no room for a TPM header)     | H_P3        |
//! | 5 | out_size < 4096 (any larger value, up to u64::MAX, is legal)   | H_P5        |
//! | 6 | [in_buffer, in_buffer + in_size) wraps or is not caller memory | H_P2        |
//! | 7 | [out_buffer, out_buffer + 4096) wraps or is not caller memory  | H_P4        |
//! | 8 | the command's header size != in_size (read from the private copy) | H_P3     |
//! | 9 | the command is not on the resource manager's allowlist ([`rm::ALLOWLIST`]) | RM response `0x000B0143`, H_SUCCESS |
//! |10 | bad tag / too short for its handle area / authorization area does not parse | RM response `0x000B001E` / `0x000B0142` / `0x000B0144`, H_SUCCESS |
//! |11 | a named transient object, sequence or session is not the caller's own, or the handle is TPM_RH_PLATFORM, _PLATFORM_NV or _LOCKOUT | H_P2 |
//! |12 | the caller has no slot and all [`SESSION_SLOTS`] are taken (the last one is kept for the ultravisor while it has none) | H_RESOURCE |
//! |13 | a creating command and the caller is at its quota (objects or sessions) | RM response `0x000B0902` (objects) / `0x000B0903` (sessions), H_SUCCESS |
//! |14 | the command creates a handle and the caller's table is full (unreachable: the table holds both quotas) | H_RESOURCE |
//! |15 | the link fails or times out (any [`TransportError`]), or an object's context does not load or save | H_RESOURCE |
//! |16 | the response is not whole: < 10 bytes, > 4096, or its header size != bytes delivered | H_RESOURCE |
//! |17 | a successful creating command's response has no handle         | H_RESOURCE  |
//! |18 | otherwise: response copied to out_buffer (GetCapability(handles) filtered to the caller's own), r4 = its length | H_SUCCESS |
//!
//! Notes on the rules:
//! - Out window (row 7): exactly the bytes that may be written are checked. A
//!   response is at most 4096 bytes and out_size is at least 4096, so the window
//!   is `[out_buffer, out_buffer + min(out_size, 4096))` = 4096 bytes, whatever
//!   out_size is. Only the response's own length is ever written (never past
//!   out_size, never past the TPM's actual response).
//! - Addresses: see [`guest`]. A range must lie inside one caller region, must not
//!   wrap past u64::MAX, and caller regions never overlap the hypervisor's or
//!   skiboot's memory or MMIO (refused when the table is built).
//! - Whose regions (rows 6 and 7): "caller memory" is the caller's own table when
//!   [`Hypervisor::set_caller_memory`] gave it one (a secure VM's shared pages, named by
//!   its guest-physical addresses and copied where the hypervisor reaches them,
//!   [`CheckedRange::at`]), and then that table ONLY: an address outside it is H_P2 / H_P4
//!   even inside the default table. Every other caller is checked against the default table
//!   given to [`Hypervisor::configure`].
//! - in_buffer and out_buffer may be equal or overlap: the command is copied into
//!   a private buffer once, before anything reads it (the caller cannot change it
//!   underneath: no double fetch), and the response is copied out last.
//! - On any failure (rows 1-8, 11, 12, 14-17) nothing is written to the caller and r4 = 0.
//! - Rows 9, 10, 13 are the resource manager's own answers ([`rm`]): a 10-byte TPM response
//!   (tag NO_SESSIONS, the code in the resource-manager layer 0x000B0000, as the Linux kernel's
//!   /dev/tpmrm0 and tpm2-abrmd answer), r3 = H_SUCCESS, r4 = 10; nothing is sent to the TPM
//!   and no slot is opened by rows 9-10.
//! - Row 11 checks every handle the command names: the handle area (its size is the
//!   allowlist's), FlushContext's `flushHandle`, ContextLoad's saved session handle, and every
//!   session of the authorization area. A handle nobody owns (flushed, or never created
//!   through H_TPM_COMM) is not the caller's either.
//! - Row 12: EXECUTE opens the caller's slot (its "TPM session") if it has none.
//!   The slot stays open when later rows fail. Callers are told apart by the
//!   [`CallerId`] the glue supplies: the partition ([`CallerId::of`]), so one guest on
//!   many hardware threads is one caller.
//! - Row 13: quotas [`OBJECTS_PER_CALLER`] (objects and sequences) and
//!   [`SESSIONS_PER_CALLER`] (sessions), each caller's own: both are saved contexts between
//!   hcalls, so they exceed what the TPM holds loaded ([`OBJECT_CAPACITY`],
//!   [`SESSION_CAPACITY`]), and every caller's full session quota fits the TPM's
//!   [`ACTIVE_SESSION_CAPACITY`] at once, so none can take what another (the ultravisor's
//!   boot session) is owed. The last free slot is held for the caller named by
//!   [`Hypervisor::reserve_for`] (the ultravisor) while it has none.
//!   A FlushContext the TPM answers "no such handle" forgets the handle too.
//! - Objects and sessions are swapped ([`space`]): between hcalls nothing of any caller is
//!   loaded; a command's named objects are ContextLoaded, their virtual handles
//!   (0x80FFFF00 + i, per caller) rewritten to the TPM's in the handle area, a new object's TPM handle
//!   rewritten to the caller's next virtual one in the response, then every object loaded is
//!   ContextSaved and flushed. FlushContext of an object is answered here (rc 0, nothing
//!   sent). The sessions a command uses (handle area and authorization area) are
//!   ContextLoaded under their own handles and ContextSaved after it unless the TPM ended
//!   them (`continueSession` clear). An object's context that no longer loads (the TPM was
//!   reset) forgets the object (H_RESOURCE, then H_P2 for its handle); a session's forgets
//!   the session and the command goes on, so the TPM answers that the session does not
//!   exist (TPM_RC_REFERENCE_*, what a client re-establishes on), as in the kernel's
//!   resource manager; a TPM warning (e.g. TPM_RC_SESSION_MEMORY) forgets nothing
//!   (H_RESOURCE; TPM_RC_RETRY is re-sent first). An idle
//!   session's context is refreshed before it falls [`REGAP_AT`] behind, so the TPM's
//!   context gap never blocks anyone. GetCapability(handles) lists the caller's own: its
//!   virtual object handles, its sessions as loaded (0x02…) or, when it saved one itself,
//!   saved (0x03…).
//! - Tracking: the response handle of every creating command on the allowlist
//!   (CreatePrimary, Load, LoadExternal, CreateLoaded, StartAuthSession, ContextLoad,
//!   HashSequenceStart, HMAC_Start) is recorded; a successful FlushContext, SequenceComplete
//!   or EventSequenceComplete forgets its handle, and so does a successful command for each
//!   authorization session used with `continueSession` clear (the TPM flushed it).

//! # Closing
//!
//! CLOSE_SESSION with no open slot for the caller: H_SUCCESS, nothing sent. With
//! one: a FlushContext is sent for each handle the slot owns (last created first);
//! success, or a "no such handle" answer (see [`wire::flush_says_gone`]), forgets
//! it. When all are gone the slot is freed and the status is H_SUCCESS. If the
//! link fails, the response is not whole, or the TPM refuses a flush for another
//! reason, the status is H_RESOURCE and the slot stays open holding the handles not
//! yet flushed, so a later CLOSE_SESSION retries (nothing is silently left behind).
//!
//! # Wiring
//!
//! The target glue is `target.rs` (powerpc64 only): one `static` [`Hypervisor`] over the
//! UART TPM link and real memory (the one unsafe copy), configured at boot with the caller
//! window as the only caller region and the image, skiboot, the vectors and MMIO reserved;
//! `src/main.rs`'s `sc 1` dispatcher calls [`Hypervisor::hcall`] for H_TPM_COMM with the
//! caller's `LPID << 16 | PIR` and writes the [`HcallResult`] back into r3..r12. The image to
//! flash uses the [`Quiet`] observer; the self-test image (feature `selftest`) uses `Meddler`,
//! idle unless a self-test arms it ([`Hypervisor::with_observer`]). `Meddler` and
//! `FakeGuestMemory` exist only in test builds (`selftest`; `test-util` for host tests).
//!
//! # Concurrency
//!
//! All state (configuration, link, slots, observer, the two 4 KiB buffers) sits
//! behind one `spin::Mutex`; an hcall holds it from the first check that needs
//! state to the copy-out. The link carries one command at a time anyway.
//!
//! # Unsafe
//!
//! None: the crate is `#![forbid(unsafe_code)]`. The one guest-memory copy is the image's
//! (`src/target/hv.rs`), behind the [`GuestMemory`] trait.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
// All of hv parses caller registers, caller memory and TPM responses: no panics, no
// silent wrap or truncation.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
#![deny(clippy::panic, clippy::arithmetic_side_effects)]
#![deny(clippy::cast_possible_truncation)]

pub mod guest;
pub mod observer;
pub mod rm;
pub mod slots;
pub mod space;
pub mod wire;

#[cfg(test)]
#[allow(clippy::cast_possible_truncation, clippy::arithmetic_side_effects)] // test fixtures
mod tests;

#[cfg(any(test, feature = "test-util"))]
pub use guest::FakeGuestMemory;
pub use guest::{
    CheckedRange, GuestMemory, GuestPhys, GuestRange, RangeError, RegionError, RegionTable,
    MAX_REGIONS,
};
pub use observer::{Delivery, Direction, Quiet, RelayObserver};
#[cfg(any(test, feature = "selftest", feature = "test-util"))]
pub use observer::{Meddle, Meddler};
pub use slots::{
    CallerId, QuotaError, SessionSlots, ACTIVE_SESSION_CAPACITY, OBJECTS_PER_CALLER,
    OBJECT_CAPACITY, SESSIONS_PER_CALLER, SESSION_CAPACITY, SESSION_SLOTS,
};

use papr::{
    HcallResult, PaprError, H_TPM_COMM, TPM_COMM_MAX_IN, TPM_COMM_MIN_OUT,
    TPM_COMM_OP_CLOSE_SESSION, TPM_COMM_OP_EXECUTE,
};
use slots::SlotIndex;
use tpm::attrs::SessionAttributes;
use tpm::transport::{Transport, TransportError, MAX_TPM_MESSAGE};
use tpm::wire::{self as tpm_wire, cc, RC_SUCCESS};

/// H_TPM_COMM's arguments, r4..r8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TpmCommArgs {
    /// r4: TPM_COMM_OP_EXECUTE or TPM_COMM_OP_CLOSE_SESSION.
    pub op: u64,
    /// r5: guest-physical address of the command.
    pub in_buffer: u64,
    /// r6: command size.
    pub in_size: u64,
    /// r7: guest-physical address for the response.
    pub out_buffer: u64,
    /// r8: size of the response buffer.
    pub out_size: u64,
}

impl TpmCommArgs {
    /// Takes r4..r8 from `args` = r4..r12.
    pub const fn from_regs(args: &[u64; 9]) -> Self {
        TpmCommArgs {
            op: args[0],
            in_buffer: args[1],
            in_size: args[2],
            out_buffer: args[3],
            out_size: args[4],
        }
    }
}

/// Why in_size was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InSizeError {
    /// Over 4096.
    TooLarge,
    /// Under 10: no room for a TPM command header.
    TooShort,
    /// The command's header claims this size, not in_size.
    HeaderMismatch(u32),
}

/// Why a TPM response was not passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseError {
    /// Fewer than 10 bytes.
    TooShort,
    /// More than 4096 bytes (or more than the buffer given to the link).
    TooLarge,
    /// The header's size disagrees with the number of bytes delivered.
    SizeMismatch,
    /// A successful creating command's response lacks the new handle.
    MissingHandle,
}

/// Why H_TPM_COMM failed; each maps to exactly one status ([`TpmCommError::status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TpmCommError {
    /// No TPM configured: H_FUNCTION.
    NotConfigured,
    /// Unknown operation in r4: H_PARAMETER.
    UnknownOperation(u64),
    /// in_size invalid: H_P3.
    InSize(InSizeError),
    /// out_size under 4096: H_P5.
    OutSizeTooSmall,
    /// in_buffer not entirely in caller memory: H_P2.
    InBuffer(RangeError),
    /// out_buffer window not entirely in caller memory: H_P4.
    OutBuffer(RangeError),
    /// The command names a transient object, sequence or session the caller does not own: H_P2.
    ForeignHandle(u32),
    /// The command names a handle refused to every caller (platform hierarchy, lockout): H_P2.
    ForbiddenHandle(u32),
    /// All session slots are taken by other callers: H_RESOURCE.
    SlotsExhausted,
    /// The caller's handle table is full and the command would create one: H_RESOURCE.
    HandleTableFull,
    /// The link failed or timed out: H_RESOURCE.
    Link(TransportError),
    /// The TPM's response is not whole: H_RESOURCE.
    BadResponse(ResponseError),
    /// Swapping the caller's object or session `handle` (an object's virtual handle, 0 when
    /// loading one) in or out failed with response code `rc` (its context no longer loads,
    /// or is larger than [`space::CONTEXT_MAX`] / [`space::SESSION_CONTEXT_MAX`]); it is
    /// forgotten: H_RESOURCE.
    Swap {
        /// The virtual handle.
        handle: u32,
        /// The TPM response code (u32::MAX: none).
        rc: u32,
    },
    /// On close, the TPM refused to flush `handle` with response code `rc`: H_RESOURCE.
    FlushRefused {
        /// The handle that stays tracked.
        handle: u32,
        /// The TPM response code.
        rc: u32,
    },
}

impl TpmCommError {
    /// The PAPR status this failure returns in r3.
    pub const fn status(&self) -> PaprError {
        match self {
            TpmCommError::NotConfigured => PaprError::Function,
            TpmCommError::UnknownOperation(_) => PaprError::Parameter,
            TpmCommError::InSize(_) => PaprError::P3,
            TpmCommError::OutSizeTooSmall => PaprError::P5,
            TpmCommError::InBuffer(_)
            | TpmCommError::ForeignHandle(_)
            | TpmCommError::ForbiddenHandle(_) => PaprError::P2,
            TpmCommError::OutBuffer(_) => PaprError::P4,
            TpmCommError::SlotsExhausted
            | TpmCommError::HandleTableFull
            | TpmCommError::Link(_)
            | TpmCommError::BadResponse(_)
            | TpmCommError::Swap { .. }
            | TpmCommError::FlushRefused { .. } => PaprError::Resource,
        }
    }
}

/// Most callers with a region table of their own ([`Hypervisor::set_caller_memory`]).
pub const CALLER_TABLES: usize = 4;

/// Why [`Hypervisor::set_caller_memory`] refused a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerMemoryError {
    /// [`CALLER_TABLES`] other callers already have a table of their own (remove one
    /// first); nothing was changed.
    Full,
    /// The hypervisor's state is held: it stopped inside a call (see
    /// [`Hypervisor::is_busy`]); nothing was changed.
    Busy,
}

struct State<L, O> {
    /// The default caller memory: every caller without a table in `callers`.
    regions: RegionTable,
    /// Callers with a region table of their own, checked against it only.
    callers: [Option<(CallerId, RegionTable)>; CALLER_TABLES],
    reserved: Option<CallerId>,
    /// The newest session-context sequence seen (the TPM's context counter, near enough).
    counter: u64,
    link: Option<L>,
    slots: SessionSlots,
    observer: O,
    cmd: [u8; MAX_TPM_MESSAGE],
    rsp: [u8; MAX_TPM_MESSAGE],
    aux: [u8; MAX_TPM_MESSAGE],
}

/// The hypervisor's H_TPM_COMM service: link `L`, caller memory `M`, observer `O`.
///
/// `const`-constructible so the glue can hold it in a plain `static`
/// (`Hypervisor<L, M>` is `Sync` when `L: Send`, `O: Send` and `M: Sync`).
pub struct Hypervisor<L, M, O = Quiet> {
    memory: M,
    state: spin::Mutex<State<L, O>>,
}

impl<L: Transport, M: GuestMemory, O: RelayObserver> Hypervisor<L, M, O> {
    /// An unconfigured hypervisor: no TPM (H_TPM_COMM answers H_FUNCTION), no
    /// caller memory, all slots free.
    pub const fn new(memory: M, observer: O) -> Self {
        Hypervisor {
            memory,
            state: spin::Mutex::new(State {
                regions: RegionTable::empty(),
                callers: [None; CALLER_TABLES],
                reserved: None,
                counter: 0,
                link: None,
                slots: SessionSlots::new(),
                observer,
                cmd: [0; MAX_TPM_MESSAGE],
                rsp: [0; MAX_TPM_MESSAGE],
                aux: [0; MAX_TPM_MESSAGE],
            }),
        }
    }

    /// Sets the caller memory and the TPM link (`None`: no TPM on this machine).
    /// Meant to be called once at boot, before the first hcall.
    pub fn configure(&self, regions: RegionTable, link: Option<L>) {
        let mut s = self.state.lock();
        s.regions = regions;
        s.link = link;
    }

    /// Gives `caller` a region table of its own (`Some`), or takes it away (`None`: the
    /// caller is checked against the default table from [`Hypervisor::configure`] again;
    /// removing a table the caller does not have is `Ok`). While it has one, H_TPM_COMM's
    /// in_buffer and out_buffer from `caller` are checked against that table only (rows 6
    /// and 7) and copied where it says the hypervisor reaches them. Replacing a caller's
    /// table is always allowed; a table for a new caller when [`CALLER_TABLES`] others have
    /// one is [`CallerMemoryError::Full`].
    pub fn set_caller_memory(
        &self,
        caller: CallerId,
        table: Option<RegionTable>,
    ) -> Result<(), CallerMemoryError> {
        let mut s = self.state.try_lock().ok_or(CallerMemoryError::Busy)?;
        let mine = s
            .callers
            .iter()
            .position(|e| e.is_some_and(|(c, _)| c == caller));
        match (table, mine) {
            (None, Some(i)) => {
                if let Some(e) = s.callers.get_mut(i) {
                    *e = None;
                }
            }
            (None, None) => {}
            (Some(t), Some(i)) => {
                if let Some(e) = s.callers.get_mut(i) {
                    *e = Some((caller, t));
                }
            }
            (Some(t), None) => {
                let free = s
                    .callers
                    .iter_mut()
                    .find(|e| e.is_none())
                    .ok_or(CallerMemoryError::Full)?;
                *free = Some((caller, t));
            }
        }
        Ok(())
    }

    /// Names the caller for which the last free session slot is held: the ultravisor (in
    /// this image, the SVM's partition). Its sessions need no reserve: every caller's
    /// session quota fits the TPM at once ([`SESSIONS_PER_CALLER`]).
    pub fn reserve_for(&self, caller: CallerId) {
        self.state.lock().reserved = Some(caller);
    }

    /// Runs `f` on the observer under the lock (to arm a meddle mode, or read what
    /// a test observer recorded); `None`, without waiting, when the state is held
    /// ([`Hypervisor::is_busy`]).
    pub fn with_observer<R>(&self, f: impl FnOnce(&mut O) -> R) -> Option<R> {
        self.state.try_lock().map(|mut s| f(&mut s.observer))
    }

    /// Runs `f` on the TPM link under the lock (`None` when no TPM is configured, or,
    /// without waiting, when the state is held: [`Hypervisor::is_busy`]). For the machine's
    /// own use outside any hcall, e.g. `TPM2_Shutdown` before power-off.
    pub fn with_link<R>(&self, f: impl FnOnce(&mut L) -> R) -> Option<R> {
        self.state.try_lock()?.link.as_mut().map(f)
    }

    /// Whether the state is held at this moment. Outside any hcall (the machine's own use:
    /// one hardware thread) it is held only by a call that never finished: a hypervisor
    /// stopped inside one. The methods the machine calls from outside the hypervisor
    /// ([`Hypervisor::set_caller_memory`], [`Hypervisor::with_observer`],
    /// [`Hypervisor::with_link`]) then refuse instead of waiting forever.
    pub fn is_busy(&self) -> bool {
        self.state.is_locked()
    }

    /// Number of open session slots.
    pub fn open_sessions(&self) -> usize {
        self.state.lock().slots.open_count()
    }

    /// Number of TPM handles the slot of `caller` tracks (0 if it has no slot).
    pub fn tracked_handles(&self, caller: CallerId) -> usize {
        let s = self.state.lock();
        s.slots.find(caller).map_or(0, |i| {
            let (objects, sessions) = s.slots.counts(i);
            objects.saturating_add(sessions)
        })
    }

    /// Writes the resource manager's 10-byte TPM-format refusal to the caller's out window
    /// (checked in row 7, at least 4096 bytes); returns r4 = 10. Nothing is sent to the TPM.
    fn answer(&self, out: &CheckedRange, r: rm::Refusal) -> u64 {
        self.answer_rc(out, r.rc())
    }

    /// Writes a 10-byte TPM-format response with `rc` to the caller; returns r4 = 10.
    fn answer_rc(&self, out: &CheckedRange, rc: u32) -> u64 {
        let bytes = rm::refusal_response(rc);
        if let Some(dst) = out.prefix(bytes.len() as u64) {
            self.memory.copy_to_guest(&dst, &bytes);
        }
        bytes.len() as u64
    }

    /// The hcall handler: `nr` = r3, `args` = r4..r12; `Ok` is r4..r12 (for H_TPM_COMM,
    /// r4 = the response size and the rest zero). Numbers other than H_TPM_COMM get
    /// H_FUNCTION. Never panics.
    pub fn hcall(&self, caller: CallerId, nr: u64, args: &[u64; 9]) -> HcallResult {
        if nr != H_TPM_COMM {
            return Err(PaprError::Function);
        }
        match self.tpm_comm(caller, TpmCommArgs::from_regs(args)) {
            Ok(r4) => Ok([r4, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(e) => Err(e.status()),
        }
    }

    /// H_TPM_COMM with its reason on failure (for the glue to log). `Ok` is r4:
    /// the number of response bytes written (0 for CLOSE_SESSION).
    pub fn tpm_comm(&self, caller: CallerId, a: TpmCommArgs) -> Result<u64, TpmCommError> {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        // Row 2.
        let Some(link) = st.link.as_mut() else {
            return Err(TpmCommError::NotConfigured);
        };
        let mut io = Io {
            link,
            observer: &mut st.observer,
            rsp: &mut st.rsp,
            aux: &mut st.aux,
        };
        let mut book = Book {
            slots: &mut st.slots,
            counter: &mut st.counter,
        };
        // Row 3.
        match a.op {
            TPM_COMM_OP_EXECUTE => {}
            TPM_COMM_OP_CLOSE_SESSION => {
                return io.close(caller, book.slots).map(|()| 0);
            }
            op => return Err(TpmCommError::UnknownOperation(op)),
        }
        // Row 4.
        if a.in_size > TPM_COMM_MAX_IN {
            return Err(TpmCommError::InSize(InSizeError::TooLarge));
        }
        if a.in_size < wire::HEADER_LEN as u64 {
            return Err(TpmCommError::InSize(InSizeError::TooShort));
        }
        // Row 5.
        if a.out_size < TPM_COMM_MIN_OUT {
            return Err(TpmCommError::OutSizeTooSmall);
        }
        // Rows 6 and 7 check against the caller's own table if it has one, else the default.
        let regions = st
            .callers
            .iter()
            .flatten()
            .find(|(c, _)| *c == caller)
            .map_or(&st.regions, |(_, t)| t);
        // Row 6.
        let in_range = regions
            .check(GuestRange::new(a.in_buffer, a.in_size))
            .map_err(TpmCommError::InBuffer)?;
        // Row 7: the bytes that may be written, min(out_size, 4096) = 4096.
        let window = a.out_size.min(MAX_TPM_MESSAGE as u64);
        let out_range = regions
            .check(GuestRange::new(a.out_buffer, window))
            .map_err(TpmCommError::OutBuffer)?;

        // Copy the command in, once; from here on only the private copy is read.
        // in_size <= 4096 (row 4), so the slice exists.
        let n_in = usize::try_from(a.in_size).unwrap_or(MAX_TPM_MESSAGE);
        let Some(cmd) = st.cmd.get_mut(..n_in) else {
            return Err(TpmCommError::InSize(InSizeError::TooLarge));
        };
        self.memory.copy_from_guest(&in_range, cmd);
        let cmd: &[u8] = cmd;

        // Row 8.
        let hdr = wire::header(cmd).ok_or(TpmCommError::InSize(InSizeError::TooShort))?;
        if u64::from(hdr.size) != a.in_size {
            return Err(TpmCommError::InSize(InSizeError::HeaderMismatch(hdr.size)));
        }
        // Rows 9-10: the resource manager's allowlist and parse; its refusals are TPM-format
        // responses (r3 = H_SUCCESS), written like a TPM's and never sent to it.
        let parsed = match rm::parse(cmd) {
            Ok(p) => p,
            Err(r) => return Ok(self.answer(&out_range, r)),
        };
        // Row 11.
        check_ownership(book.slots, caller, &parsed)?;
        // Row 12.
        let slot = book
            .slots
            .open(caller, st.reserved)
            .map_err(|_| TpmCommError::SlotsExhausted)?;
        // Row 13.
        let new_kind = parsed.new_kind();
        if let Some(kind) = new_kind {
            if let Err(q) = book.slots.admit(slot, kind) {
                let r = match q {
                    QuotaError::Objects => rm::Refusal::ObjectMemory,
                    QuotaError::Sessions => rm::Refusal::SessionMemory,
                };
                return Ok(self.answer(&out_range, r));
            }
        }
        let creates_session = new_kind == Some(rm::Kind::Session);
        let creates_object = matches!(new_kind, Some(rm::Kind::Object | rm::Kind::Sequence));
        // Row 14: unreachable while the session quota is the space's size; kept so a session
        // is never created that the slot cannot record.
        if creates_session && !book.slots.has_room(slot) {
            return Err(TpmCommError::HandleTableFull);
        }
        // FlushContext of one of the caller's objects: it is a saved context, forgotten here.
        if parsed.info.effect == rm::Effect::Flush {
            if let Some(vh) = parsed.param_handle.filter(|h| h >> 24 == 0x80) {
                if let Some(sp) = book.slots.space_mut(slot) {
                    sp.remove(vh);
                }
                return Ok(self.answer_rc(&out_range, RC_SUCCESS));
            }
        }

        // Keep every idle session's context young enough for the TPM's context gap.
        io.regap(&mut book)?;

        // Swap in: ContextLoad each session the command uses (handle area and authorization
        // area) whose context the hypervisor holds. A session keeps its handle.
        // At most 3 handle-area and 3 authorization sessions, and a new one: never full.
        let mut live: heapless::Vec<u32, 8> = heapless::Vec::new();
        let used = parsed
            .handles
            .iter()
            .copied()
            .chain(parsed.sessions.iter().map(|a| a.handle))
            .filter(|h| rm::is_session(*h));
        for h in used {
            if live.iter().any(|l| space::same_session(*l, h)) {
                continue;
            }
            let Some(ctx) = book.slots.space(slot).and_then(|sp| sp.session_context(h)) else {
                continue; // the caller holds its context (it ran ContextSave)
            };
            match io.load(caller, ctx) {
                Ok(_) => {
                    if let Some(sp) = book.slots.space_mut(slot) {
                        sp.drop_session_context(h);
                    }
                    let _ = live.push(h);
                }
                Err(TpmCommError::Swap { rc, .. }) if !is_warning(rc) => {
                    // Its context no longer loads (the TPM was reset): the session is gone.
                    // As the kernel's resource manager does, the command goes on, and the
                    // TPM answers in its own terms that the session does not exist.
                    book.slots.forget_everywhere(h);
                }
                Err(e) => {
                    io.abandon(caller, &mut book, slot, &[], &live);
                    return Err(match e {
                        TpmCommError::Swap { rc, .. } => TpmCommError::Swap { handle: h, rc },
                        e => e,
                    });
                }
            }
        }

        // Swap in: ContextLoad each object the handle area names, and put the TPM's handle
        // in the command's place of the virtual one.
        let mut loaded: heapless::Vec<(u32, u32), 3> = heapless::Vec::new();
        for (k, &vh) in parsed.handles.iter().enumerate() {
            if vh >> 24 != 0x80 {
                continue;
            }
            let p = match loaded.iter().find(|(v, _)| *v == vh) {
                Some(&(_, p)) => p,
                None => {
                    let ctx = book.slots.space(slot).and_then(|sp| sp.context(vh));
                    let r = ctx
                        .ok_or(TpmCommError::ForeignHandle(vh))
                        .and_then(|ctx| io.load(caller, ctx));
                    match r {
                        Ok(p) => {
                            let _ = loaded.push((vh, p));
                            p
                        }
                        Err(e) => {
                            io.abandon(caller, &mut book, slot, &loaded, &live);
                            if let (TpmCommError::Swap { rc, .. }, Some(sp)) =
                                (e, book.slots.space_mut(slot))
                            {
                                if !is_warning(rc) {
                                    sp.remove(vh); // its context no longer loads: gone
                                }
                            }
                            return Err(e);
                        }
                    }
                }
            };
            if let Some(off) = k
                .checked_mul(4)
                .and_then(|o| o.checked_add(wire::HEADER_LEN))
            {
                wire::put_u32_at(&mut st.cmd, off, p);
            }
        }

        // Rows 15-16.
        let cmd = st.cmd.get(..n_in).unwrap_or(&[]);
        io.observer.snoop(caller, Direction::Command, cmd);
        let mut n = match relay(io.link, cmd, io.rsp) {
            Ok(n) => n,
            Err(e) => {
                io.abandon(caller, &mut book, slot, &loaded, &live);
                return Err(e);
            }
        };
        let rsp = io.rsp.get(..n).unwrap_or(&[]);
        io.observer.snoop(caller, Direction::Response, rsp);

        // Row 17 and handle bookkeeping, from the real response.
        let rc = wire::code(rsp).unwrap_or(u32::MAX);
        let mut new_object = None;
        if parsed.info.effect == rm::Effect::Flush && wire::flush_says_gone(rc) {
            // The TPM has no such session (it was reset, or flushed it): not the caller's
            // any more, and no longer counted against its quota.
            if let Some(h) = parsed.param_handle {
                book.slots.forget_everywhere(h);
            }
        }
        if rc == RC_SUCCESS {
            if creates_session || creates_object {
                let Some(h) = wire::u32_at(rsp, wire::HEADER_LEN) else {
                    io.abandon(caller, &mut book, slot, &loaded, &live);
                    return Err(TpmCommError::BadResponse(ResponseError::MissingHandle));
                };
                if creates_object {
                    new_object = Some(h);
                } else if book.slots.record(slot, h) {
                    let _ = live.push(h);
                } else {
                    // Unreachable by row 14; never lose track: flush it back out.
                    let _ = io.flush(caller, h);
                    io.abandon(caller, &mut book, slot, &loaded, &live);
                    return Err(TpmCommError::HandleTableFull);
                }
            }
            // The caller reloaded its own saved session: the hypervisor saves it from now on.
            if parsed.loads_session {
                if let Some(h) = wire::u32_at(rsp, wire::HEADER_LEN) {
                    if book.slots.owns(slot, h) && !live.iter().any(|l| space::same_session(*l, h))
                    {
                        let _ = live.push(h);
                    }
                }
            }
            // The caller saved one of its sessions: it holds the context now.
            if parsed.info.code == cc::CONTEXT_SAVE {
                if let Some(&h) = parsed.handles.first().filter(|h| rm::is_session(**h)) {
                    live.retain(|l| !space::same_session(*l, h));
                    if let Some(seq) = rsp.get(wire::HEADER_LEN..).and_then(space::sequence) {
                        *book.counter = (*book.counter).max(seq);
                    }
                }
            }
            match parsed.info.effect {
                rm::Effect::Flush => {
                    if let Some(h) = parsed.param_handle {
                        book.slots.forget_everywhere(h);
                    }
                }
                rm::Effect::EndsSequence(k) => {
                    // The TPM flushed the sequence: nothing to save.
                    if let Some(&vh) = parsed.handles.get(usize::from(k)) {
                        loaded.retain(|(v, _)| *v != vh);
                        if let Some(sp) = book.slots.space_mut(slot) {
                            sp.remove(vh);
                        }
                    }
                }
                _ => {}
            }
            // The TPM flushes a session used with continueSession clear when the command
            // succeeds.
            for sess in &parsed.sessions {
                if rm::is_session(sess.handle)
                    && !sess.attrs.contains(SessionAttributes::CONTINUE_SESSION)
                {
                    book.slots.forget_everywhere(sess.handle);
                    live.retain(|l| !space::same_session(*l, sess.handle));
                }
            }
            if parsed.filter_handles {
                // The caller is shown its own handles only, as it sees them: its objects
                // under their virtual handles, and its sessions as loaded (0x02…, the
                // hypervisor holds their contexts and loads them on use) or saved (0x03…,
                // the caller holds the context), never what the TPM holds for others.
                let (first, count) = parsed.cap_range;
                let mut list: heapless::Vec<u32, { space::OBJECTS_PER_SPACE }> =
                    heapless::Vec::new();
                if let Some(sp) = book.slots.space(slot) {
                    if first >> 24 == 0x80 {
                        list.extend(sp.handles().filter(|h| *h >= first).take(4));
                    } else {
                        let saved = first >> 24 == 0x03;
                        let from = first & 0x00FF_FFFF;
                        list.extend(
                            sp.sessions()
                                .filter(|h| sp.session_context(*h).is_none() == saved)
                                .filter(|h| *h & 0x00FF_FFFF >= from)
                                .take(space::SESSIONS_PER_SPACE),
                        );
                        list.sort_unstable_by_key(|h| *h & 0x00FF_FFFF);
                    }
                }
                let shown = list.len().min(usize::try_from(count).unwrap_or(usize::MAX));
                let more = shown < list.len();
                n = rm::handle_list_response(io.rsp, list.get(..shown).unwrap_or(&[]), more);
            }
        }

        // Swap out: ContextSave every session still alive, and ContextSave and flush every
        // object loaded for this command and the new one (which gets the caller's next
        // virtual handle in the response). The response waits in `aux` meanwhile.
        if !loaded.is_empty() || new_object.is_some() || !live.is_empty() {
            let main = n.min(MAX_TPM_MESSAGE);
            if let (Some(dst), Some(src)) = (io.aux.get_mut(..main), io.rsp.get(..main)) {
                dst.copy_from_slice(src);
            }
            let mut failed = io.save_sessions(caller, &mut book, slot, &live).err();
            for &(vh, p) in &loaded {
                if let Err(e) = io.save_object(caller, book.slots, slot, vh, p) {
                    failed.get_or_insert(e);
                }
            }
            if let Some(p) = new_object {
                let vh = book
                    .slots
                    .space(slot)
                    .and_then(space::Space::free_handle)
                    .unwrap_or(0);
                match io.save_object(caller, book.slots, slot, vh, p) {
                    Ok(()) => {
                        if let Some(dst) = io.aux.get_mut(wire::HEADER_LEN..wire::HEADER_LEN + 4) {
                            dst.copy_from_slice(&vh.to_be_bytes());
                        }
                    }
                    Err(e) => {
                        failed.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
            if let (Some(dst), Some(src)) = (io.rsp.get_mut(..main), io.aux.get(..main)) {
                dst.copy_from_slice(src);
            }
        }

        // Row 15: copy the response out, last, never more than the window.
        let d = io.observer.meddle(hdr.code, io.rsp, n);
        let len = d.len.min(MAX_TPM_MESSAGE);
        if let (Some(dst), Some(src)) = (out_range.prefix(len as u64), io.rsp.get(..len)) {
            self.memory.copy_to_guest(&dst, src);
        }
        Ok(d.r4)
    }
}

/// Row 11: every handle the command names (handle area, FlushContext's flushHandle,
/// ContextLoad's saved session, the authorization area's sessions) must be the caller's own
/// when it is a transient object, sequence or session, and must not be one refused to all.
fn check_ownership(
    slots: &SessionSlots,
    caller: CallerId,
    parsed: &rm::Parsed,
) -> Result<(), TpmCommError> {
    let mine = slots.find(caller);
    for h in parsed.named() {
        let owned = if h >> 24 == 0x80 {
            mine.and_then(|i| slots.space(i))
                .is_some_and(|sp| sp.contains(h))
        } else {
            slots.owner_of(h) == Some(caller)
        };
        match rm::classify(h) {
            rm::HandleClass::MustOwn if !owned => {
                return Err(TpmCommError::ForeignHandle(h));
            }
            rm::HandleClass::Forbidden => return Err(TpmCommError::ForbiddenHandle(h)),
            _ => {}
        }
    }
    Ok(())
}

/// Sends `cmd` and checks that a whole response came back; returns its length.
fn relay<L: Transport>(
    link: &mut L,
    cmd: &[u8],
    rsp: &mut [u8; MAX_TPM_MESSAGE],
) -> Result<usize, TpmCommError> {
    let n = link.transact(cmd, rsp).map_err(TpmCommError::Link)?;
    if n > rsp.len() {
        return Err(TpmCommError::BadResponse(ResponseError::TooLarge));
    }
    let got = rsp.get(..n).unwrap_or(&[]);
    let h = wire::header(got).ok_or(TpmCommError::BadResponse(ResponseError::TooShort))?;
    if usize::try_from(h.size).ok() != Some(n) {
        return Err(TpmCommError::BadResponse(ResponseError::SizeMismatch));
    }
    Ok(n)
}

/// Whether a response code is a TPM warning that asks for the same command again:
/// TPM_RC_RETRY, TPM_RC_YIELDED, TPM_RC_TESTING (TPM 2.0 Part 2, TPM_RC). swtpm answers
/// TPM_RC_RETRY to the first commands after it restarts (measured: `tpm-fault`).
pub fn says_retry(rc: u32) -> bool {
    matches!(rc, 0x922 | 0x908 | 0x90A)
}

/// Whether a response code is a TPM warning (format 0, TPM_RC_WARN 0x900): the command was
/// not run for a passing reason (memory, rate, retry), so what it names is not known gone.
pub fn is_warning(rc: u32) -> bool {
    rc & 0xFFFF_F980 == 0x900
}

/// How many times the hypervisor sends one of its own commands (ContextLoad, ContextSave,
/// FlushContext) while the TPM answers [`says_retry`].
const OWN_COMMAND_TRIES: usize = 4;

/// [`relay`] for the hypervisor's own commands, re-sent while the TPM says retry.
fn relay_own<L: Transport>(
    link: &mut L,
    cmd: &[u8],
    rsp: &mut [u8; MAX_TPM_MESSAGE],
) -> Result<usize, TpmCommError> {
    let mut n = relay(link, cmd, rsp)?;
    for _ in 1..OWN_COMMAND_TRIES {
        if !wire::code(rsp).is_some_and(says_retry) {
            break;
        }
        n = relay(link, cmd, rsp)?;
    }
    Ok(n)
}

/// The link as the hypervisor's own commands use it (FlushContext, ContextLoad,
/// ContextSave around a caller's command): the transport, the observer that sees every
/// byte that crosses it, the response buffer, and `aux` for a ContextLoad's command. Each
/// of its commands is attributed to the caller it is sent for.
struct Io<'a, L, O> {
    link: &'a mut L,
    observer: &'a mut O,
    rsp: &'a mut [u8; MAX_TPM_MESSAGE],
    aux: &'a mut [u8; MAX_TPM_MESSAGE],
}

impl<L: Transport, O: RelayObserver> Io<'_, L, O> {
    /// Sends one of the hypervisor's own commands for `caller`, re-sent while the TPM says
    /// retry ([`relay_own`]); returns the whole response, which the observer saw too.
    fn own(&mut self, caller: CallerId, cmd: &[u8]) -> Result<&[u8], TpmCommError> {
        exchange(self.link, self.observer, self.rsp, caller, cmd)
    }

    /// Sends FlushContext(handle); returns the TPM's response code.
    fn flush(&mut self, caller: CallerId, handle: u32) -> Result<u32, TpmCommError> {
        let got = self.own(caller, &tpm_wire::flush_context(handle))?;
        wire::code(got).ok_or(TpmCommError::BadResponse(ResponseError::TooShort))
    }

    /// ContextLoads `ctx`; returns the TPM's handle for it.
    fn load(&mut self, caller: CallerId, ctx: &[u8]) -> Result<u32, TpmCommError> {
        // The command is built in `aux`, free while commands are swapped in.
        let Some(cmd) = tpm_wire::context_load_into(self.aux, ctx) else {
            return Err(TpmCommError::Swap { handle: 0, rc: 0 });
        };
        let got = exchange(self.link, self.observer, self.rsp, caller, cmd)?;
        match (wire::code(got), wire::u32_at(got, wire::HEADER_LEN)) {
            (Some(0), Some(h)) => Ok(h),
            (rc, _) => Err(TpmCommError::Swap {
                handle: 0,
                rc: rc.unwrap_or(u32::MAX),
            }),
        }
    }

    /// ContextSaves the TPM's object `p` as the caller's `vh` and flushes it. On failure the
    /// object is flushed and forgotten.
    fn save_object(
        &mut self,
        caller: CallerId,
        slots: &mut SessionSlots,
        slot: SlotIndex,
        vh: u32,
        p: u32,
    ) -> Result<(), TpmCommError> {
        let saved = self
            .own(caller, &tpm_wire::context_save(p))
            .and_then(|got| {
                let rc = wire::code(got).unwrap_or(u32::MAX);
                let stored = rc == 0
                    && got.get(wire::HEADER_LEN..).is_some_and(|ctx| {
                        slots.space_mut(slot).is_some_and(|sp| sp.store(vh, ctx))
                    });
                if stored {
                    Ok(())
                } else {
                    Err(TpmCommError::Swap { handle: vh, rc })
                }
            });
        let flushed = self.flush(caller, p);
        if saved.is_err() {
            if let Some(sp) = slots.space_mut(slot) {
                sp.remove(vh);
            }
        }
        saved?;
        flushed.map(|_| ())
    }

    /// ContextSaves session `h` of slot `slot` (loaded for a command) into its space. On a
    /// refusal the session is flushed and forgotten: nothing of it is left loaded.
    fn save_session(
        &mut self,
        caller: CallerId,
        book: &mut Book<'_>,
        slot: SlotIndex,
        h: u32,
    ) -> Result<(), TpmCommError> {
        let got = self.own(caller, &tpm_wire::context_save(h))?;
        let rc = wire::code(got).unwrap_or(u32::MAX);
        let ctx = got.get(wire::HEADER_LEN..).unwrap_or(&[]);
        if rc == RC_SUCCESS
            && book
                .slots
                .space_mut(slot)
                .is_some_and(|sp| sp.store_session_context(h, ctx))
        {
            if let Some(seq) = space::sequence(ctx) {
                *book.counter = (*book.counter).max(seq);
            }
            return Ok(());
        }
        // Too large to keep, or refused: a saved context the hypervisor does not hold would be
        // unusable and uncounted, and a loaded session would hold one of the TPM's 3 slots.
        let _ = self.flush(caller, h);
        book.slots.forget_everywhere(h);
        Err(TpmCommError::Swap { handle: h, rc })
    }

    /// Saves every session in `live`; the first failure is returned after all were tried.
    fn save_sessions(
        &mut self,
        caller: CallerId,
        book: &mut Book<'_>,
        slot: SlotIndex,
        live: &[u32],
    ) -> Result<(), TpmCommError> {
        let mut failed = Ok(());
        for &h in live {
            if let Err(e) = self.save_session(caller, book, slot, h) {
                if failed.is_ok() {
                    failed = Err(e);
                }
            }
        }
        failed
    }

    /// Puts back what a command that did not complete had swapped in: flushes the TPM's
    /// copies of its objects (their saved contexts are still kept) and saves its sessions.
    /// `loaded` holds the objects loaded for it (virtual handle, TPM handle), `live` the
    /// sessions.
    fn abandon(
        &mut self,
        caller: CallerId,
        book: &mut Book<'_>,
        slot: SlotIndex,
        loaded: &[(u32, u32)],
        live: &[u32],
    ) {
        for &(_, p) in loaded {
            let _ = self.flush(caller, p);
        }
        let _ = self.save_sessions(caller, book, slot, live);
    }

    /// Refreshes the oldest saved sessions of any caller while they are [`REGAP_AT`]
    /// behind. A session whose context no longer loads is forgotten; only a link failure
    /// is an error.
    fn regap(&mut self, book: &mut Book<'_>) -> Result<(), TpmCommError> {
        for _ in 0..SESSION_SLOTS * SESSIONS_PER_CALLER {
            let Some((j, h, seq)) = book.slots.oldest_saved_session() else {
                return Ok(());
            };
            if book.counter.saturating_sub(seq) < REGAP_AT {
                return Ok(());
            }
            let owner = book.slots.caller(j).unwrap_or(CallerId(0));
            let ctx = book.slots.space(j).and_then(|sp| sp.session_context(h));
            let Some(ctx) = ctx else { return Ok(()) };
            match self.load(owner, ctx) {
                Ok(_) => {
                    if let Some(sp) = book.slots.space_mut(j) {
                        sp.drop_session_context(h);
                    }
                    match self.save_session(owner, book, j, h) {
                        Ok(()) | Err(TpmCommError::Swap { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                Err(TpmCommError::Swap { rc, .. }) if !is_warning(rc) => {
                    book.slots.forget_everywhere(h);
                }
                Err(TpmCommError::Swap { .. }) => return Ok(()), // not now: the next command retries
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// CLOSE_SESSION: flush what the caller's slot owns, then free the slot.
    fn close(&mut self, caller: CallerId, slots: &mut SessionSlots) -> Result<(), TpmCommError> {
        let Some(slot): Option<SlotIndex> = slots.find(caller) else {
            return Ok(());
        };
        // A saved session is flushed by its handle like a loaded one (measured on swtpm 0.7.1).
        while let Some(&h) = slots.sessions(slot).last() {
            let rc = self.flush(caller, h)?;
            if rc == RC_SUCCESS || wire::flush_says_gone(rc) {
                slots.forget_everywhere(h);
            } else {
                return Err(TpmCommError::FlushRefused { handle: h, rc });
            }
        }
        // The caller's objects are saved contexts, nothing the TPM holds: forgetting them is
        // all.
        slots.free(slot);
        Ok(())
    }
}

/// [`Io::own`] over the parts of an [`Io`], for a command that lives in one of them.
fn exchange<'r, L: Transport, O: RelayObserver>(
    link: &mut L,
    observer: &mut O,
    rsp: &'r mut [u8; MAX_TPM_MESSAGE],
    caller: CallerId,
    cmd: &[u8],
) -> Result<&'r [u8], TpmCommError> {
    observer.snoop(caller, Direction::Command, cmd);
    let n = relay_own(link, cmd, rsp)?;
    let got = rsp.get(..n).unwrap_or(&[]);
    observer.snoop(caller, Direction::Response, got);
    Ok(got)
}

/// The hypervisor's books that its own commands keep: the callers' slots and the newest
/// session-context sequence seen.
struct Book<'a> {
    slots: &'a mut SessionSlots,
    counter: &'a mut u64,
}

/// A session context older than this (in context-counter steps behind the newest seen) is
/// refreshed before a command: loaded and saved again, as tpm2-abrmd does. A TPM refuses to
/// save any session once the oldest saved one is `TPM_PT_CONTEXT_GAP_MAX` behind
/// (`TPM_RC_CONTEXT_GAP`): 65,535 on swtpm 0.7.1 (measured), 255 on TPMs with an 8-bit
/// context slot. A command saves at most 4 sessions, so 128 leaves room for any TPM.
pub const REGAP_AT: u64 = 128;
