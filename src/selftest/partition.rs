//! The partition boundary, attacked (self-tests `partition-isolation` and its control
//! `partition-weakened`, self-test image only).
//!
//! A small guest program (hand-assembled below) runs in partition [`GUEST_LPID`] with
//! MSR[HV] clear, in real mode: every address it uses goes through that partition's radix
//! tree, which maps three pages of its own (vectors, data, code) and nothing else. The
//! ultravisor drives it through [`arch::partition::run`]:
//! - an hcall (`sc 1`) comes back as an exit with the guest's registers;
//! - a load from its own data page works;
//! - a load from each of the ultravisor's regions (heap, boot stack, statics, the hcall
//!   stack, the radix tables, the image's code, skiboot), from the hypervisor partition's
//!   (its statics, its stack, an SVM's bounce page) and from another partition's page is
//!   stopped by the MMU (HDSI) before a byte is read, and the guest goes on at the next
//!   instruction;
//! - a fetch from an unmapped page (HISI), a hypervisor-privileged instruction (HEAI, or the
//!   guest's own program interrupt), and an endless loop (the hypervisor decrementer) all
//!   end the run with a report instead of a crash.
//!
//! The control maps the ultravisor's first heap page into the guest (identity) and runs the
//! same attempts: that one must get through (8 bytes read), which shows the attempts do read
//! whatever the tree lets them.

use crate::arch::partition::{Exit, Partitions, Vector};
use crate::arch::{self, HcallFrame};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use radix::Access;

/// The test guest's partition.
pub const GUEST_LPID: u32 = 2;
/// Another partition beside it, whose page the guest tries to read.
pub const OTHER_LPID: u32 = 3;

/// The test guest's memory, by guest-physical address: its vectors, data and code pages
/// (nothing else is mapped), and a page no tree maps.
struct Layout {
    vectors: u64,
    data: u64,
    code: u64,
    unmapped: u64,
}

const GUEST: Layout = Layout {
    vectors: 0x0000,
    data: 0x1000,
    code: 0x2000,
    unmapped: 0x5000,
};
const PAGE: u64 = 4096;

/// The word at the start of the guest's data page, and the mark (r3) of the guest's own
/// interrupt stubs (r4 = vector, r5 = its SRR0).
const PATTERN: u64 = 0x5AFE_DA7A_0000_0001;
const GUEST_INTERRUPT: u64 = 0x7F00;

/// The guest's routines, as offsets in its code page; each ends in `sc 1` with a mark in r3.
#[derive(Clone, Copy)]
enum Routine {
    /// li r3,0x1234; sc 1
    Hello = 0x00,
    /// li r5,DATA; ld r6,0(r5); li r3,0x1235; sc 1
    ReadData = 0x10,
    /// ld r6,0(r5); li r3,0x1236; sc 1 (r5 set by the ultravisor)
    Probe = 0x20,
    /// b .
    Spin = 0x30,
    /// mtspr LPIDR,r3; li r3,0x1237; sc 1
    Privileged = 0x40,
}

impl Routine {
    /// Its guest-physical address.
    const fn gpa(self) -> u64 {
        GUEST.code + self as u64
    }
}

fn li(rd: u32, imm: i16) -> u32 {
    0x3800_0000 | (rd << 21) | u32::from(imm as u16)
}
fn ld(rd: u32, ra: u32) -> u32 {
    0xE800_0000 | (rd << 21) | (ra << 16)
}
fn mfspr(rd: u32, spr: u32) -> u32 {
    0x7C00_02A6 | (rd << 21) | (((spr & 0x1F) << 5 | spr >> 5) << 11)
}
fn mtspr(spr: u32, rs: u32) -> u32 {
    0x7C00_03A6 | (rs << 21) | (((spr & 0x1F) << 5 | spr >> 5) << 11)
}
const SC1: u32 = 0x4400_0022;
const BRANCH_SELF: u32 = 0x4800_0000;

/// Writes big-endian instruction words into guest memory at host address `at`.
fn put(p: &mut Partitions, at: u64, words: &[u32]) -> Result<(), String> {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
    p.write(at, &bytes).map_err(|e| format!("guest code: {e}"))
}

/// What one set of breach attempts found.
struct Attempts {
    tried: u32,
    stopped: u32,
    bytes_read: u32,
    lines: Vec<String>,
}

/// Host addresses of the ultravisor's own memory, by what lives there, then the hypervisor
/// partition's (its statics, its stack, the SVMs' bounce pages) and another partition's page
/// (`other`).
fn uv_targets(tables: u64, other: u64) -> Vec<(&'static str, u64)> {
    extern "C" {
        static __heap_start: u8;
        static __hv_stack_bottom: u8;
        static __hvdata_start: u8;
        static __hvp_stack_bottom: u8;
        static pefbox_run_block: u8;
        static _start: u8;
    }
    let sp = arch::stack_pointer();
    alloc::vec![
        (
            "ultravisor heap (secrets, sessions)",
            core::ptr::addr_of!(__heap_start) as u64
        ),
        ("ultravisor stack", sp & !7),
        (
            "ultravisor statics",
            core::ptr::addr_of!(pefbox_run_block) as u64
        ),
        (
            "hcall stack",
            core::ptr::addr_of!(__hv_stack_bottom) as u64 + 0x100
        ),
        ("radix tables", tables),
        ("image code", core::ptr::addr_of!(_start) as u64),
        ("skiboot", 0x3000_0000),
        (
            "hypervisor statics",
            core::ptr::addr_of!(__hvdata_start) as u64
        ),
        (
            "hypervisor stack",
            core::ptr::addr_of!(__hvp_stack_bottom) as u64 + 0x100
        ),
        (
            "an SVM's bounce page",
            crate::target::hvp::shared_page(0).unwrap_or(0)
        ),
        ("another partition's page", other),
    ]
}

/// Builds the guest and its tree (with `extra` identity-mapped read/write on top, for the
/// control), installs the table, and runs every check.
fn run_guest(extra: Option<u64>) -> Result<Attempts, String> {
    crate::target::hvp::lend(|p| run_guest_in(p, extra))
}

fn run_guest_in(p: &mut Partitions, extra: Option<u64>) -> Result<Attempts, String> {
    let vectors = p.guest_pages(3).map_err(|e| format!("guest memory: {e}"))?;
    let (data, code) = (vectors + PAGE, vectors + 2 * PAGE);
    // The guest's own interrupt vectors: each reports itself through an hcall.
    for v in (0x100..0x1000u64).step_by(0x80) {
        put(
            p,
            vectors + v,
            &[
                li(4, v as i16),
                li(3, GUEST_INTERRUPT as i16),
                mfspr(5, 26),
                SC1,
            ],
        )?;
    }
    p.write(data, &PATTERN.to_be_bytes())
        .map_err(|e| format!("guest data: {e}"))?;
    put(p, code + Routine::Hello as u64, &[li(3, 0x1234), SC1])?;
    put(
        p,
        code + Routine::ReadData as u64,
        &[li(5, GUEST.data as i16), ld(6, 5), li(3, 0x1235), SC1],
    )?;
    put(
        p,
        code + Routine::Probe as u64,
        &[ld(6, 5), li(3, 0x1236), SC1],
    )?;
    put(p, code + Routine::Spin as u64, &[BRANCH_SELF])?;
    put(
        p,
        code + Routine::Privileged as u64,
        &[mtspr(319, 3), li(3, 0x1237), SC1],
    )?;

    let rx = Access::READ | Access::EXECUTE;
    let tables = p.tables();
    let setup = |p: &mut Partitions| -> Result<(), arch::partition::PartitionError> {
        p.create(GUEST_LPID)?;
        p.map(GUEST_LPID, GUEST.vectors, vectors, PAGE, rx)?;
        p.map(
            GUEST_LPID,
            GUEST.data,
            data,
            PAGE,
            Access::READ | Access::WRITE,
        )?;
        p.map(GUEST_LPID, GUEST.code, code, PAGE, rx)?;
        if let Some(a) = extra {
            p.expose_read_only_for_the_control(GUEST_LPID, a, a)?;
        }
        Ok(())
    };
    setup(p).map_err(|e| format!("partition {GUEST_LPID}: {e}"))?;
    // Another partition, with a page of its own the guest must not reach either.
    let other = p.guest_pages(1).map_err(|e| format!("guest memory: {e}"))?;
    p.write(other, &(!PATTERN).to_be_bytes())
        .and_then(|()| p.create(OTHER_LPID))
        .and_then(|()| {
            p.map(
                OTHER_LPID,
                GUEST.data,
                other,
                PAGE,
                Access::READ | Access::WRITE,
            )
        })
        .map_err(|e| format!("partition {OTHER_LPID}: {e}"))?;

    let budget = u32::try_from(arch::timebase_hz() / 10).unwrap_or(u32::MAX / 2); // 100 ms
    let mut frame = Box::new(HcallFrame::zeroed());
    let go = |frame: &mut HcallFrame, pc: u64| -> Result<Exit, String> {
        frame.srr0 = pc;
        p.run(GUEST_LPID, frame, budget)
            .map_err(|e| format!("run: {e}"))
    };

    let mut lines = Vec::new();
    let e = go(&mut frame, Routine::Hello.gpa())?;
    expect_hcall(&e, &frame, 0x1234, Routine::Hello.gpa() + 8)?;
    lines.push(format!(
        "  partition-isolation: LPID {GUEST_LPID} hcall r3={:#x} from {:#x}",
        frame.gpr[3],
        e.pc() - 4
    ));
    let e = go(&mut frame, Routine::ReadData.gpa())?;
    expect_hcall(&e, &frame, 0x1235, Routine::ReadData.gpa() + 16)?;
    if frame.gpr[6] != PATTERN {
        return Err(format!("own data page read {:#x}", frame.gpr[6]));
    }

    let mut a = Attempts {
        tried: 0,
        stopped: 0,
        bytes_read: 0,
        lines,
    };
    for (what, target) in uv_targets(tables, other) {
        a.tried += 1;
        frame.gpr[5] = target;
        frame.gpr[6] = 0;
        let e = go(&mut frame, Routine::Probe.gpa())?;
        match e.kind() {
            Some(Vector::Hdsi) if e.hdar == target => {
                // Stopped before the load completed: r6 is still 0. Resume after it.
                let hdsisr = e.hdsisr;
                let e = go(&mut frame, e.hsrr0 + 4)?;
                expect_hcall(&e, &frame, 0x1236, Routine::Probe.gpa() + 12)?;
                if frame.gpr[6] == 0 {
                    a.stopped += 1;
                    a.lines.push(format!(
                        "  partition-isolation: LPID {GUEST_LPID} load from {what} at {target:#x}: stopped (HDSI, HDSISR {hdsisr:#x})"
                    ));
                } else {
                    a.bytes_read += 8;
                }
            }
            Some(Vector::Syscall) if frame.gpr[3] == 0x1236 => {
                a.bytes_read += 8;
                // The bytes stay off the console: the control's page holds this boot's secrets.
                a.lines.push(format!(
                    "  partition-isolation: LPID {GUEST_LPID} load from {what} at {target:#x}: READ 8 bytes"
                ));
            }
            _ => return Err(format!("load from {what}: {}", describe(&e))),
        }
    }

    // A fetch from an unmapped page, a privileged instruction, an endless loop.
    let e = go(&mut frame, GUEST.unmapped)?;
    if e.kind() != Some(Vector::Hisi) || e.hsrr0 != GUEST.unmapped {
        return Err(format!(
            "fetch from {:#x}: {}",
            GUEST.unmapped,
            describe(&e)
        ));
    }
    a.lines.push(format!(
        "  partition-isolation: LPID {GUEST_LPID} {}",
        describe(&e)
    ));
    let e = go(&mut frame, Routine::Privileged.gpa())?;
    let stopped = e.kind() == Some(Vector::Heai)
        || (e.kind() == Some(Vector::Syscall) && frame.gpr[3] == GUEST_INTERRUPT);
    if !stopped {
        return Err(format!("mtspr LPIDR: {}", describe(&e)));
    }
    a.lines.push(format!(
        "  partition-isolation: LPID {GUEST_LPID} mtspr LPIDR: {}",
        if e.kind() == Some(Vector::Heai) {
            describe(&e)
        } else {
            format!(
                "its own interrupt {:#x} at {:#x}",
                frame.gpr[4], frame.gpr[5]
            )
        }
    ));
    let e = go(&mut frame, Routine::Spin.gpa())?;
    if e.kind() != Some(Vector::Hdec) {
        return Err(format!("endless loop: {}", describe(&e)));
    }
    a.lines.push(format!(
        "  partition-isolation: LPID {GUEST_LPID} {}",
        describe(&e)
    ));
    Ok(a)
}

fn expect_hcall(e: &Exit, frame: &HcallFrame, mark: u64, pc: u64) -> Result<(), String> {
    if e.kind() != Some(Vector::Syscall) || frame.gpr[3] != mark || e.pc() != pc {
        return Err(format!(
            "expected the guest's hcall {mark:#x} from {:#x}: {} with r3={:#x}",
            pc - 4,
            describe(e),
            frame.gpr[3]
        ));
    }
    Ok(())
}

/// One line: what ended the run and where.
fn describe(e: &Exit) -> String {
    format!("{e}")
}

/// Timebase ticks for `n` round trips of a guest's null hcall: the guest's `sc 1`, its exit
/// to the ultravisor (every register saved), and the re-entry (every register loaded) at
/// the instruction after it (the `hcall-bench` figure `partition-hcall-ns`).
pub fn round_trips(n: u64) -> Result<u64, String> {
    crate::target::hvp::lend(|p| round_trips_in(p, n))
}

fn round_trips_in(p: &mut Partitions, n: u64) -> Result<u64, String> {
    let code = p.guest_pages(1).map_err(|e| format!("guest memory: {e}"))?;
    // sc 1; b .-4: each entry makes one hcall, the next entry resumes at the branch back.
    put(p, code, &[SC1, 0x4BFF_FFFC])?;
    p.create(GUEST_LPID)
        .and_then(|()| p.map(GUEST_LPID, 0, code, PAGE, Access::READ | Access::EXECUTE))
        .map_err(|e| format!("partition {GUEST_LPID}: {e}"))?;
    let budget = u32::try_from(arch::timebase_hz()).unwrap_or(u32::MAX / 2);
    let mut frame = Box::new(HcallFrame::zeroed());
    let t0 = arch::timebase();
    for _ in 0..n {
        let e = p
            .run(GUEST_LPID, &mut frame, budget)
            .map_err(|e| format!("run: {e}"))?;
        if e.kind() != Some(Vector::Syscall) {
            return Err(format!("round trip: {}", describe(&e)));
        }
        frame.srr0 = e.srr0;
    }
    Ok(arch::timebase() - t0)
}

/// Timebase ticks for `n` null hcalls from a partition, reflected: the partition's `sc 1`
/// (hcall 0x4, which no one implements), its exit to the ultravisor, the reflection into the
/// hypervisor partition and its UV_RETURN (H_FUNCTION from its table), the answer put in the
/// partition's registers and the partition resumed (the `hcall-bench` figure
/// `svm-reflected-ns`: an SVM's hcall round trip).
pub fn reflected_round_trips(n: u64) -> Result<u64, String> {
    crate::target::hvp::lend(|p| {
        let code = p.guest_pages(1).map_err(|e| format!("guest memory: {e}"))?;
        put(p, code, &[SC1, 0x4BFF_FFFC])?;
        p.create(GUEST_LPID)
            .and_then(|()| p.map(GUEST_LPID, 0, code, PAGE, Access::READ | Access::EXECUTE))
            .map_err(|e| format!("partition {GUEST_LPID}: {e}"))?;
        let p: &Partitions = p;
        let budget = u32::try_from(arch::timebase_hz()).unwrap_or(u32::MAX / 2);
        let mut frame = Box::new(HcallFrame::zeroed());
        let caller = crate::hv::CallerId(GUEST_LPID);
        let t0 = arch::timebase();
        for _ in 0..n {
            frame.gpr[3] = 0x4;
            let e = p
                .run(GUEST_LPID, &mut frame, budget)
                .map_err(|e| format!("run: {e}"))?;
            if e.kind() != Some(Vector::Syscall) {
                return Err(format!("round trip: {}", describe(&e)));
            }
            let mut regs = [0u64; 10];
            regs.copy_from_slice(&frame.gpr[3..=12]);
            let answer =
                crate::target::hvp::reflect(p, caller, regs).map_err(|e| format!("{e}"))?;
            if answer[0] != crate::papr::H_FUNCTION as u64 {
                return Err(format!("null hcall answered {:#x}", answer[0]));
            }
            frame.gpr[3..=12].copy_from_slice(&answer);
            frame.srr0 = e.srr0;
        }
        Ok(arch::timebase() - t0)
    })
}

/// `partition-isolation`: the guest can reach none of the ultravisor's memory.
pub fn isolation() -> super::TestResult {
    let a = run_guest(None)?;
    for l in &a.lines {
        crate::println!("{l}");
    }
    crate::println!(
        "isolation: {} breach attempts, {} stopped, {} bytes read",
        a.tried,
        a.stopped,
        a.bytes_read
    );
    if a.stopped != a.tried || a.bytes_read != 0 {
        return Err(format!(
            "{} of {} attempts got through, {} bytes read",
            a.tried - a.stopped,
            a.tried,
            a.bytes_read
        ));
    }
    Ok(())
}

/// `partition-weakened`: the control. The ultravisor's first heap page is mapped into the
/// guest on purpose; the same attempt on it must read it.
pub fn weakened() -> super::TestResult {
    extern "C" {
        static __heap_start: u8;
    }
    let heap = core::ptr::addr_of!(__heap_start) as u64;
    let a = run_guest(Some(heap))?;
    for l in a.lines.iter().filter(|l| l.contains(": READ ")) {
        crate::println!("{l}");
    }
    crate::println!(
        "isolation (weakened: heap page {heap:#x} mapped): {} breach attempts, {} stopped, {} bytes read",
        a.tried,
        a.stopped,
        a.bytes_read
    );
    if a.bytes_read != 8 || a.stopped + 1 != a.tried {
        return Err(format!(
            "the exposed page was not read: {} of {} stopped, {} bytes",
            a.stopped, a.tried, a.bytes_read
        ));
    }
    Ok(())
}

/// `hv-isolation`: the hypervisor, in its partition, tries to read the ultravisor's secrets.
///
/// Each attempt is a real `sc 1` of [`H_PEFBOX_PEEK`](super::target::H_PEFBOX_PEEK), which
/// the ultravisor reflects into the hypervisor partition, whose handler loads from the address
/// given: the door authValue (heap), the boot session (its session key; the ultravisor's
/// statics), an unwrapped key on the ultravisor's stack, the start of its heap, its hcall
/// stack (which holds its registers during an hcall), its other statics, the radix tables and
/// skiboot. Each must stop the partition with an HDSI at exactly that address, reported, and
/// answer H_HARDWARE: nothing read. The control is the same load from a page the partition
/// does map (the ultravisor's shared page, holding a pattern the ultravisor put there): it
/// must read the pattern, which shows the attempts read whatever the tree lets them.
pub fn hv_isolation() -> super::TestResult {
    use super::target::H_PEFBOX_PEEK;
    use crate::papr::{H_HARDWARE, H_SUCCESS};
    use crate::platform::layout::{pages, WindowPage};
    extern "C" {
        static __heap_start: u8;
        static __hv_stack_bottom: u8;
        static __partition_start: u8;
        static pefbox_run_block: u8;
    }
    let (key, ek) = super::target::synthetic_lockbox()?;
    let unwrapped = crate::target::uv::unwrap(&ek).map_err(|e| format!("unwrap: {e}"))?;
    if unwrapped != key {
        return Err("the unwrap returned a wrong key".into());
    }
    let (door, session) = {
        let g = crate::target::uv::UV.lock();
        let uv = g.as_ref().ok_or("the ultravisor did not start")?;
        (
            uv.secrets.nv_auth.as_ptr() as u64,
            core::ptr::addr_of!(uv.session) as u64,
        )
    };
    let targets = [
        ("door authValue (ultravisor heap)", door),
        ("boot session and its key (ultravisor statics)", session),
        (
            "unwrapped key (ultravisor stack)",
            unwrapped.as_ptr() as u64,
        ),
        ("ultravisor heap", core::ptr::addr_of!(__heap_start) as u64),
        (
            "ultravisor hcall stack",
            core::ptr::addr_of!(__hv_stack_bottom) as u64 + 0x100,
        ),
        (
            "ultravisor .bss",
            core::ptr::addr_of!(pefbox_run_block) as u64,
        ),
        (
            "radix tables",
            core::ptr::addr_of!(__partition_start) as u64,
        ),
        ("skiboot", 0x3000_0000),
    ];
    let (mut tried, mut stopped, mut bytes_read) = (0u32, 0u32, 0u32);
    let _ = crate::target::hvp::take_last_stop();
    for (what, addr) in targets {
        let target = addr & !7;
        tried += 1;
        let (st, out) = arch::hcall(H_PEFBOX_PEEK, [target, 0, 0, 0, 0, 0, 0, 0, 0]);
        let stop = crate::target::hvp::take_last_stop();
        match (st, stop) {
            (H_HARDWARE, Some(e)) if e.kind() == Some(Vector::Hdsi) && e.hdar == target => {
                stopped += 1;
                crate::println!(
                    "  hv-isolation: partition {} load from {what} at {target:#x}: stopped (HDSI), nothing read",
                    crate::target::hvp::HV_LPID
                );
            }
            (H_SUCCESS, _) => {
                bytes_read += 8;
                // The bytes themselves stay off the console: they are this boot's secrets.
                let _ = out;
                crate::println!(
                    "  hv-isolation: partition {} load from {what} at {target:#x}: READ 8 bytes",
                    crate::target::hvp::HV_LPID
                );
            }
            (st, e) => {
                return Err(format!(
                    "load from {what} at {target:#x}: status {st}, stop {e:?}"
                ))
            }
        }
    }
    crate::println!(
        "isolation: {tried} breach attempts, {stopped} stopped, {bytes_read} bytes read (hypervisor partition {})",
        crate::target::hvp::HV_LPID
    );
    // The control: a page the partition maps.
    let page = WindowPage::new(pages::TEST_IN).ok_or("caller window too small")?;
    page.write(0, &PATTERN.to_be_bytes());
    let (st, out) = arch::hcall(H_PEFBOX_PEEK, [page.addr(), 0, 0, 0, 0, 0, 0, 0, 0]);
    if st != H_SUCCESS || out[0] != PATTERN {
        return Err(format!(
            "control: the load from the shared page {:#x} gave status {st}, {:#x}",
            page.addr(),
            out[0]
        ));
    }
    crate::println!(
        "  hv-isolation: control: load from the shared page {:#x}: read {:#x}, as put there",
        page.addr(),
        out[0]
    );
    if stopped != tried || bytes_read != 0 {
        return Err(format!(
            "{} of {tried} attempts got through, {bytes_read} bytes read",
            tried - stopped
        ));
    }
    Ok(())
}
