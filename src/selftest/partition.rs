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
//!   stack, the radix tables, the image's code, skiboot) is stopped by the MMU (HDSI) before
//!   a byte is read, and the guest goes on at the next instruction;
//! - a fetch from an unmapped page (HISI), a hypervisor-privileged instruction (HEAI, or the
//!   guest's own program interrupt), and an endless loop (the hypervisor decrementer) all
//!   end the run with a report instead of a crash.
//!
//! The control maps the ultravisor's first heap page into the guest (identity) and runs the
//! same attempts: that one must get through (8 bytes read), which shows the attempts do read
//! whatever the tree lets them.

use crate::arch::partition::{vector, Exit, Partitions};
use crate::arch::{self, HcallFrame};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use radix::Access;

/// The test guest's partition.
pub const GUEST_LPID: u32 = 2;

/// Guest-physical layout: vectors, data, code; nothing else is mapped.
const VECTORS_GPA: u64 = 0x0000;
const DATA_GPA: u64 = 0x1000;
const CODE_GPA: u64 = 0x2000;
/// A guest-physical page no tree maps.
const UNMAPPED_GPA: u64 = 0x5000;
const PAGE: u64 = 4096;

/// The word at the start of the guest's data page.
const PATTERN: u64 = 0x5AFE_DA7A_0000_0001;
/// r3 of the guest's own interrupt stubs (r4 = vector, r5 = its SRR0).
const GUEST_INTERRUPT: u64 = 0x7F00;

/// The guest's routines (offsets in its code page), each ending in `sc 1` with a mark.
const HELLO: u64 = CODE_GPA; // li r3,0x1234; sc 1
const READ_DATA: u64 = CODE_GPA + 0x10; // li r5,DATA; ld r6,0(r5); li r3,0x1235; sc 1
const PROBE: u64 = CODE_GPA + 0x20; // ld r6,0(r5); li r3,0x1236; sc 1
const SPIN: u64 = CODE_GPA + 0x30; // b .
const PRIVILEGED: u64 = CODE_GPA + 0x40; // mtspr LPIDR,r3; li r3,0x1237; sc 1

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

/// Host addresses of the ultravisor's own memory, by what lives there.
fn uv_targets(tables: u64) -> Vec<(&'static str, u64)> {
    extern "C" {
        static __heap_start: u8;
        static __hv_stack_bottom: u8;
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
    ]
}

/// Builds the guest and its tree (with `extra` identity-mapped read/write on top, for the
/// control), installs the table, and runs every check.
fn run_guest(extra: Option<u64>) -> Result<Attempts, String> {
    let mut p = Partitions::take().map_err(|e| format!("partitions: {e}"))?;
    let vectors = p.guest_pages(3).map_err(|e| format!("guest memory: {e}"))?;
    let (data, code) = (vectors + PAGE, vectors + 2 * PAGE);
    // The guest's own interrupt vectors: each reports itself through an hcall.
    for v in (0x100..0x1000u64).step_by(0x80) {
        put(
            &mut p,
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
    put(&mut p, code + (HELLO - CODE_GPA), &[li(3, 0x1234), SC1])?;
    put(
        &mut p,
        code + (READ_DATA - CODE_GPA),
        &[li(5, DATA_GPA as i16), ld(6, 5), li(3, 0x1235), SC1],
    )?;
    put(
        &mut p,
        code + (PROBE - CODE_GPA),
        &[ld(6, 5), li(3, 0x1236), SC1],
    )?;
    put(&mut p, code + (SPIN - CODE_GPA), &[BRANCH_SELF])?;
    put(
        &mut p,
        code + (PRIVILEGED - CODE_GPA),
        &[mtspr(319, 3), li(3, 0x1237), SC1],
    )?;

    let rx = Access::READ | Access::EXECUTE;
    let tables = p.tables();
    let setup = |p: &mut Partitions| -> Result<(), arch::partition::PartitionError> {
        p.create(GUEST_LPID)?;
        p.map(GUEST_LPID, VECTORS_GPA, vectors, PAGE, rx)?;
        p.map(
            GUEST_LPID,
            DATA_GPA,
            data,
            PAGE,
            Access::READ | Access::WRITE,
        )?;
        p.map(GUEST_LPID, CODE_GPA, code, PAGE, rx)?;
        if let Some(a) = extra {
            p.expose_read_only_for_the_control(GUEST_LPID, a, a)?;
        }
        Ok(())
    };
    setup(&mut p).map_err(|e| format!("partition {GUEST_LPID}: {e}"))?;

    let budget = u32::try_from(arch::timebase_hz() / 10).unwrap_or(u32::MAX / 2); // 100 ms
    let mut frame = Box::new(HcallFrame::zeroed());
    let mut go = |frame: &mut HcallFrame, pc: u64| -> Result<Exit, String> {
        frame.srr0 = pc;
        p.run(GUEST_LPID, frame, budget)
            .map_err(|e| format!("run: {e}"))
    };

    let mut lines = Vec::new();
    let e = go(&mut frame, HELLO)?;
    expect_hcall(&e, &frame, 0x1234, HELLO + 8)?;
    lines.push(format!(
        "  partition-isolation: LPID {GUEST_LPID} hcall r3={:#x} from {:#x}",
        frame.gpr[3],
        e.pc() - 4
    ));
    let e = go(&mut frame, READ_DATA)?;
    expect_hcall(&e, &frame, 0x1235, READ_DATA + 16)?;
    if frame.gpr[6] != PATTERN {
        return Err(format!("own data page read {:#x}", frame.gpr[6]));
    }

    let mut a = Attempts {
        tried: 0,
        stopped: 0,
        bytes_read: 0,
        lines,
    };
    for (what, target) in uv_targets(tables) {
        a.tried += 1;
        frame.gpr[5] = target;
        frame.gpr[6] = 0;
        let e = go(&mut frame, PROBE)?;
        match e.vector {
            vector::HDSI if e.hdar == target => {
                // Stopped before the load completed: r6 is still 0. Resume after it.
                let hdsisr = e.hdsisr;
                let e = go(&mut frame, e.hsrr0 + 4)?;
                expect_hcall(&e, &frame, 0x1236, PROBE + 12)?;
                if frame.gpr[6] == 0 {
                    a.stopped += 1;
                    a.lines.push(format!(
                        "  partition-isolation: LPID {GUEST_LPID} load from {what} at {target:#x}: stopped (HDSI, HDSISR {hdsisr:#x})"
                    ));
                } else {
                    a.bytes_read += 8;
                }
            }
            vector::SYSCALL if frame.gpr[3] == 0x1236 => {
                a.bytes_read += 8;
                a.lines.push(format!(
                    "  partition-isolation: LPID {GUEST_LPID} load from {what} at {target:#x}: READ {:#x}",
                    frame.gpr[6]
                ));
            }
            _ => return Err(format!("load from {what}: {}", describe(&e))),
        }
    }

    // A fetch from an unmapped page, a privileged instruction, an endless loop.
    let e = go(&mut frame, UNMAPPED_GPA)?;
    if e.vector != vector::HISI || e.hsrr0 != UNMAPPED_GPA {
        return Err(format!("fetch from {UNMAPPED_GPA:#x}: {}", describe(&e)));
    }
    a.lines.push(format!(
        "  partition-isolation: LPID {GUEST_LPID} {}",
        describe(&e)
    ));
    let e = go(&mut frame, PRIVILEGED)?;
    let stopped = e.vector == vector::HEAI
        || (e.vector == vector::SYSCALL && frame.gpr[3] == GUEST_INTERRUPT);
    if !stopped {
        return Err(format!("mtspr LPIDR: {}", describe(&e)));
    }
    a.lines.push(format!(
        "  partition-isolation: LPID {GUEST_LPID} mtspr LPIDR: {}",
        if e.vector == vector::HEAI {
            describe(&e)
        } else {
            format!(
                "its own interrupt {:#x} at {:#x}",
                frame.gpr[4], frame.gpr[5]
            )
        }
    ));
    let e = go(&mut frame, SPIN)?;
    if e.vector != vector::HDEC {
        return Err(format!("endless loop: {}", describe(&e)));
    }
    a.lines.push(format!(
        "  partition-isolation: LPID {GUEST_LPID} {}",
        describe(&e)
    ));
    Ok(a)
}

fn expect_hcall(e: &Exit, frame: &HcallFrame, mark: u64, pc: u64) -> Result<(), String> {
    if e.vector != vector::SYSCALL || frame.gpr[3] != mark || e.pc() != pc {
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
    match e.vector {
        vector::SYSCALL => format!("hcall from {:#x}", e.srr0.wrapping_sub(4)),
        vector::HDSI => format!(
            "stopped: data access to {:#x} (guest real {:#x}) at {:#x}, HDSISR {:#x}",
            e.hdar, e.asdr, e.hsrr0, e.hdsisr
        ),
        vector::HISI => format!(
            "stopped: instruction fetch at {:#x} (guest real {:#x})",
            e.hsrr0, e.asdr
        ),
        vector::HEAI => format!(
            "stopped: privileged instruction {:#010x} at {:#x}",
            e.heir, e.hsrr0
        ),
        vector::HDEC => format!("stopped: time budget exhausted at {:#x}", e.hsrr0),
        v => format!("stopped: interrupt {v:#x} at {:#x}", e.pc()),
    }
}

/// Timebase ticks for `n` round trips of a guest's null hcall: the guest's `sc 1`, its exit
/// to the ultravisor (every register saved), and the re-entry (every register loaded) at
/// the instruction after it (the `hcall-bench` figure `partition-hcall-ns`).
pub fn round_trips(n: u64) -> Result<u64, String> {
    let mut p = Partitions::take().map_err(|e| format!("partitions: {e}"))?;
    let code = p.guest_pages(1).map_err(|e| format!("guest memory: {e}"))?;
    // sc 1; b .-4: each entry makes one hcall, the next entry resumes at the branch back.
    put(&mut p, code, &[SC1, 0x4BFF_FFFC])?;
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
        if e.vector != vector::SYSCALL {
            return Err(format!("round trip: {}", describe(&e)));
        }
        frame.srr0 = e.srr0;
    }
    Ok(arch::timebase() - t0)
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
