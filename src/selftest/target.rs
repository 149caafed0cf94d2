//! The self-tests that run inside the image (target-only): they issue real `sc 1`
//! hypercalls and read real registers.

use super::{Test, TestResult};
use crate::arch::{self, HcallFrame};
use crate::papr::{
    H_FUNCTION, H_P2, H_P3, H_P4, H_P5, H_PARAMETER, H_RESOURCE, H_SUCCESS, H_TPM_COMM,
    TPM_COMM_OP_CLOSE_SESSION, TPM_COMM_OP_EXECUTE,
};
use crate::platform::layout::{guest_window, pages, RealHypercall, WindowPage};
use crate::tpm::consts::{rh, sa};
use crate::tpm::{Auth, Object, SaltKey, SessionKind, Template, Tpm};
use crate::uv::hcall::HcallTransport;
use alloc::format;
use alloc::string::String;

/// Image-private diagnostic hcall (outside PAPR's and the ultravisor's ranges): returns
/// H_SUCCESS with r4..r12 = !(r4..r12), after scribbling over every ABI-volatile register
/// inside the handler. Used only by the tests below.
pub const H_PEFBOX_ECHO: u64 = 0xF3FC;

/// Image-private null ultracall for `hcall-bench`: the ultravisor's `sc 1` entry answers it
/// itself (H_SUCCESS, r4..r12 unchanged) instead of reflecting it, so it costs what every
/// hcall cost before the hypervisor had a partition of its own.
pub const H_PEFBOX_UV_NULL: u64 = 0xF3F4;

/// Image-private diagnostic hcall for the `hv-i2c` self-test: the hypervisor, in its
/// partition, makes the register round trip of `i2c-opal` through the ultravisor's
/// UV_PEFBOX_I2C (`target::hv::testing::i2c_rw`).
pub const H_PEFBOX_I2C_RW: u64 = 0xF3EC;

/// Image-private diagnostic hcall for the `hv-isolation` self-test: the hypervisor, in its
/// partition, loads the 8 bytes at r4 (8-byte aligned, else H_P2) and returns them in r4.
/// An address its tree does not map stops the partition before the load completes.
pub const H_PEFBOX_PEEK: u64 = 0xF3F0;

/// [`H_PEFBOX_ECHO`]'s handler (the hypervisor's table, `target::hv`): scribbles over every
/// ABI-volatile register, then returns r4..r12 inverted.
pub fn echo(_: ::hv::CallerId, args: &[u64; 9]) -> crate::papr::HcallResult {
    arch::scribble_volatile();
    Ok(args.map(|a| !a))
}

/// Every image self-test, in run order.
pub const TESTS: &[Test] = &[
    Test {
        name: "hcall-echo",
        default: true,
        run: hcall_echo,
    },
    Test {
        name: "hcall-regs",
        default: true,
        run: hcall_regs,
    },
    Test {
        name: "hcall-unknown",
        default: true,
        run: hcall_unknown,
    },
    Test {
        name: "timebase",
        default: true,
        run: timebase,
    },
    Test {
        name: "darn",
        default: true,
        run: darn,
    },
    Test {
        name: "tpm-getrandom",
        default: true,
        run: tpm_getrandom,
    },
    Test {
        name: "tpm-getcapability",
        default: true,
        run: tpm_getcapability,
    },
    Test {
        name: "tpm-bad-tag",
        default: true,
        run: tpm_bad_tag,
    },
    Test {
        name: "tpm-comm-args",
        default: true,
        run: tpm_comm_args,
    },
    Test {
        name: "tpm-same-buffer",
        default: true,
        run: tpm_same_buffer,
    },
    Test {
        name: "tpm-close",
        default: true,
        run: tpm_close,
    },
    Test {
        name: "tpm-leak",
        default: true,
        run: tpm_leak,
    },
    Test {
        name: "tpm-fault",
        default: false,
        run: tpm_fault,
    },
    Test {
        name: "uv-snoop",
        default: true,
        run: uv_snoop,
    },
    Test {
        name: "partition-isolation",
        default: true,
        run: super::partition::isolation,
    },
    Test {
        name: "hv-isolation",
        default: true,
        run: super::partition::hv_isolation,
    },
    Test {
        name: "i2c-opal",
        default: false,
        run: i2c_opal,
    },
    Test {
        name: "hv-i2c",
        default: false,
        run: hv_i2c,
    },
    Test {
        name: "hv-stopped-holding-state",
        default: false,
        run: hv_stopped_holding_state,
    },
    Test {
        name: "partition-weakened",
        default: false,
        run: super::partition::weakened,
    },
    Test {
        name: "uv-tamper",
        default: false,
        run: uv_tamper,
    },
    Test {
        name: "hcall-bench",
        default: false,
        run: hcall_bench,
    },
    Test {
        name: "panic",
        default: false,
        run: deliberate_panic,
    },
    Test {
        name: "trap",
        default: false,
        run: deliberate_trap,
    },
];

fn hcall_echo() -> TestResult {
    let args = [
        1,
        2,
        3,
        u64::MAX,
        0x8000_0000_0000_0000,
        6,
        7,
        8,
        0xdead_beef_cafe_f00d,
    ];
    let (st, out) = arch::hcall(H_PEFBOX_ECHO, args);
    if st != H_SUCCESS {
        return Err(format!("status {st}"));
    }
    for (i, (a, o)) in args.iter().zip(out.iter()).enumerate() {
        if *o != !*a {
            return Err(format!("r{} came back {o:#x}, expected {:#x}", i + 4, !*a));
        }
    }
    Ok(())
}

fn hcall_regs() -> TestResult {
    let mut regs = [0u64; 10];
    for (i, r) in regs.iter_mut().enumerate().skip(1) {
        *r = 0x0101_0101_0101_0101u64.wrapping_mul(i as u64);
    }
    let sent = regs;
    let changed = arch::sc_regtest(H_PEFBOX_ECHO, &mut regs);
    if changed != 0 {
        return Err(format!(
            "preserved registers changed across sc 1: mask {changed:#x} (see boot/regtest.S)"
        ));
    }
    if regs[0] != H_SUCCESS as u64 {
        return Err(format!("status {:#x}", regs[0]));
    }
    for i in 1..10 {
        if regs[i] != !sent[i] {
            return Err(format!("output r{} = {:#x}", i + 3, regs[i]));
        }
    }
    Ok(())
}

fn hcall_unknown() -> TestResult {
    for nr in [0u64, 0x4, 0xEF00, 0xEF14, 0xF11C, 0xF3F8, u64::MAX] {
        let (st, _) = arch::hcall(nr, [0; 9]);
        if st != H_FUNCTION {
            return Err(format!("hcall {nr:#x} returned {st}, expected H_FUNCTION"));
        }
    }
    Ok(())
}

fn timebase() -> TestResult {
    let a = arch::timebase();
    let mut b = a;
    for _ in 0..1000 {
        b = arch::timebase();
        if b > a {
            return Ok(());
        }
    }
    Err(format!("timebase did not advance: {a} then {b}"))
}

fn darn() -> TestResult {
    let a = arch::darn().ok_or("darn reported failure")?;
    let b = arch::darn().ok_or("darn reported failure")?;
    let c = arch::darn().ok_or("darn reported failure")?;
    if a == b && b == c {
        return Err(format!("darn returned {a:#x} three times"));
    }
    Ok(())
}

fn deliberate_panic() -> TestResult {
    panic!("deliberate panic selected by bootargs");
}

fn deliberate_trap() -> TestResult {
    arch::trap();
    Err("trap returned".into())
}

// ---- H_TPM_COMM through real `sc 1` to the TPM behind the link ----

const GET_RANDOM_16: [u8; 12] = crate::tpm::wire::get_random(16);
/// GetCapability(TPM_CAP_TPM_PROPERTIES, TPM_PT_MANUFACTURER, 1).
const GET_CAP_MANUFACTURER: [u8; 22] = [
    0x80, 0x01, 0, 0, 0, 22, 0, 0, 0x01, 0x7a, 0, 0, 0, 6, 0, 0, 0x01, 0x05, 0, 0, 0, 1,
];

fn page(i: u64) -> WindowPage {
    WindowPage::new(i).expect("caller window holds the self-test pages")
}

/// EXECUTE with `cmd` in TEST_IN and the response in TEST_OUT; returns (r3, r4, response).
fn execute(cmd: &[u8]) -> (i64, u64, [u8; 64]) {
    let (pin, pout) = (page(pages::TEST_IN), page(pages::TEST_OUT));
    pin.write(0, cmd);
    let args = [
        TPM_COMM_OP_EXECUTE,
        pin.addr(),
        cmd.len() as u64,
        pout.addr(),
        4096,
        0,
        0,
        0,
        0,
    ];
    let (st, out) = arch::hcall(H_TPM_COMM, args);
    let mut rsp = [0u8; 64];
    pout.read(0, &mut rsp);
    (st, out[0], rsp)
}

fn rsp_size(r: &[u8]) -> u64 {
    crate::tpm::wire::header(r).map_or(0, |h| u64::from(h.size))
}

fn rsp_code(r: &[u8]) -> u32 {
    crate::tpm::wire::code(r).unwrap_or(u32::MAX)
}

fn close() -> i64 {
    arch::hcall(
        H_TPM_COMM,
        [TPM_COMM_OP_CLOSE_SESSION, 0, 0, 0, 0, 0, 0, 0, 0],
    )
    .0
}

fn tpm_getrandom() -> TestResult {
    let (st, r4, rsp) = execute(&GET_RANDOM_16);
    if st != H_SUCCESS {
        return Err(format!("r3 = {st}"));
    }
    if r4 != 28 || rsp_size(&rsp) != 28 || rsp_code(&rsp) != 0 {
        return Err(format!(
            "r4 {r4}, header size {}, rc {:#x}",
            rsp_size(&rsp),
            rsp_code(&rsp)
        ));
    }
    if rsp[10..12] != [0, 16] || rsp[12..28].iter().all(|b| *b == 0) {
        return Err(format!("random bytes missing: {:02x?}", &rsp[10..28]));
    }
    let (_, _, again) = execute(&GET_RANDOM_16);
    if again[12..28] == rsp[12..28] {
        return Err("two GetRandom calls returned the same bytes".into());
    }
    Ok(())
}

fn tpm_getcapability() -> TestResult {
    let (st, r4, rsp) = execute(&GET_CAP_MANUFACTURER);
    if st != H_SUCCESS || rsp_code(&rsp) != 0 || r4 != rsp_size(&rsp) {
        return Err(format!("r3 {st}, r4 {r4}, rc {:#x}", rsp_code(&rsp)));
    }
    // moreData(1) capability(4) count(4) property(4) value(4)
    let prop = u32::from_be_bytes([rsp[19], rsp[20], rsp[21], rsp[22]]);
    if rsp[11..15] != [0, 0, 0, 6] || prop != 0x105 {
        return Err(format!(
            "unexpected capability data {:02x?}",
            &rsp[10..r4 as usize]
        ));
    }
    Ok(())
}

fn tpm_bad_tag() -> TestResult {
    let mut cmd = GET_RANDOM_16;
    cmd[0] = 0x12;
    cmd[1] = 0x34;
    let (st, r4, rsp) = execute(&cmd);
    // A refusal is a normal TPM-format response: the hcall succeeds and carries the code.
    // The hypervisor's resource manager answers a bad tag itself (TPM_RC_BAD_TAG in the
    // RM layer, 0xb001e) without sending it; swtpm 0.7.1 would have answered 0x84.
    if st != H_SUCCESS {
        return Err(format!("r3 = {st}, expected H_SUCCESS"));
    }
    if r4 != 10 || rsp_size(&rsp) != 10 || rsp[..2] != [0x80, 0x01] || rsp_code(&rsp) == 0 {
        return Err(format!("r4 {r4}, response header {:02x?}", &rsp[..10]));
    }
    crate::println!(
        "  tpm-bad-tag: refused with rc {:#x} through H_SUCCESS",
        rsp_code(&rsp)
    );
    Ok(())
}

fn tpm_comm_args() -> TestResult {
    let (pin, pout) = (page(pages::TEST_IN), page(pages::TEST_OUT));
    pin.write(0, &GET_RANDOM_16);
    let (i, o) = (pin.addr(), pout.addr());
    let (gs, ge) = guest_window();
    let image = 0x2000_0000u64;
    let cases: &[(&str, [u64; 5], i64)] = &[
        ("op 0", [0, i, 12, o, 4096], H_PARAMETER),
        ("op 3", [3, i, 12, o, 4096], H_PARAMETER),
        ("op u64::MAX", [u64::MAX, i, 12, o, 4096], H_PARAMETER),
        ("in_size 0", [1, i, 0, o, 4096], H_P3),
        ("in_size 9", [1, i, 9, o, 4096], H_P3),
        ("in_size 4097", [1, i, 4097, o, 4096], H_P3),
        ("in_size != header", [1, i, 20, o, 4096], H_P3),
        ("out_size 4095", [1, i, 12, o, 4095], H_P5),
        ("out_size 0", [1, i, 12, o, 0], H_P5),
        ("in_buffer 0", [1, 0, 12, o, 4096], H_P2),
        (
            "in_buffer in hypervisor image",
            [1, image, 12, o, 4096],
            H_P2,
        ),
        ("in_buffer in skiboot", [1, 0x3000_0000, 12, o, 4096], H_P2),
        (
            "in_buffer MMIO",
            [1, 0x0006_0300_d001_03f8, 12, o, 4096],
            H_P2,
        ),
        ("in_buffer wraps", [1, u64::MAX - 5, 12, o, 4096], H_P2),
        (
            "in_buffer straddles window end",
            [1, ge - 6, 12, o, 4096],
            H_P2,
        ),
        (
            "in_buffer just before window",
            [1, gs - 1, 12, o, 4096],
            H_P2,
        ),
        ("out_buffer 0", [1, i, 12, 0, 4096], H_P4),
        (
            "out_buffer in hypervisor image",
            [1, i, 12, image, 4096],
            H_P4,
        ),
        ("out_buffer wraps", [1, i, 12, u64::MAX - 100, 4096], H_P4),
        (
            "out_buffer straddles window end",
            [1, i, 12, ge - 4095, 4096],
            H_P4,
        ),
    ];
    let mut errs = String::new();
    for (what, a, want) in cases {
        let (st, out) = arch::hcall(H_TPM_COMM, [a[0], a[1], a[2], a[3], a[4], 0, 0, 0, 0]);
        if st != *want || out[0] != 0 {
            errs += &format!("{what}: r3 {st} r4 {} (want {want}); ", out[0]);
        }
    }
    // Legal edges: in_size 10 exactly (a header-only command), out_size u64::MAX, the last
    // 4096 bytes of the window as the out buffer.
    let mut hdr_only = [0u8; 10];
    hdr_only.copy_from_slice(&GET_RANDOM_16[..10]);
    hdr_only[5] = 10;
    pin.write(0, &hdr_only);
    let (st, out) = arch::hcall(H_TPM_COMM, [1, i, 10, ge - 4096, u64::MAX, 0, 0, 0, 0]);
    if st != H_SUCCESS || out[0] < 10 {
        errs += &format!(
            "in_size 10/out_size MAX/window end: r3 {st} r4 {}; ",
            out[0]
        );
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

fn tpm_same_buffer() -> TestResult {
    let p = page(pages::TEST_IN);
    p.write(0, &GET_RANDOM_16);
    let (st, out) = arch::hcall(H_TPM_COMM, [1, p.addr(), 12, p.addr(), 4096, 0, 0, 0, 0]);
    let mut rsp = [0u8; 28];
    p.read(0, &mut rsp);
    if st != H_SUCCESS || out[0] != 28 || rsp_size(&rsp) != 28 || rsp_code(&rsp) != 0 {
        return Err(format!("r3 {st} r4 {} header {:02x?}", out[0], &rsp[..10]));
    }
    Ok(())
}

fn tpm_close() -> TestResult {
    // Close whatever an earlier test left, then close again with no session open.
    let first = close();
    let second = close();
    if first != H_SUCCESS || second != H_SUCCESS {
        return Err(format!("CLOSE returned {first} then {second} (no session)"));
    }
    let (st, _, _) = execute(&GET_RANDOM_16);
    let third = close();
    if st != H_SUCCESS || third != H_SUCCESS {
        return Err(format!("EXECUTE {st}, CLOSE with an open session {third}"));
    }
    Ok(())
}

/// A TPM client over H_TPM_COMM, using the self-test page (not the ultravisor's).
fn client() -> Result<Tpm<HcallTransport<RealHypercall, WindowPage>>, String> {
    let mut tpm = Tpm::new(HcallTransport::new(
        RealHypercall { lpid: 0 },
        page(pages::TEST_IN),
    ));
    tpm.seed_entropy(&mut arch::Darn)
        .map_err(|e| format!("seeding entropy: {e:?}"))?;
    Ok(tpm)
}

/// Transient objects and loaded sessions the TPM holds now.
fn tpm_handles(
    tpm: &mut Tpm<HcallTransport<RealHypercall, WindowPage>>,
) -> Result<(heapless::Vec<u32, 32>, heapless::Vec<u32, 32>), String> {
    let mut list = |first| -> Result<heapless::Vec<u32, 32>, String> {
        let mut h = [0u32; 32];
        let (n, _) = tpm
            .get_capability_handles(first, &mut h)
            .map_err(|e| format!("GetCapability(handles {first:#x}): {e:?}"))?;
        Ok(heapless::Vec::from_slice(&h[..n]).unwrap_or_default())
    };
    Ok((list(rh::TRANSIENT_FIRST)?, list(rh::HMAC_SESSION_FIRST)?))
}

fn tpm_leak() -> TestResult {
    const CYCLES: usize = 6;
    let mut tpm = client()?;
    // GetCapability(handles) shows a caller only its own handles (the ultravisor's session
    // is not listed): the baseline is this caller's, normally none.
    let baseline = tpm_handles(&mut tpm)?;
    for cycle in 0..CYCLES {
        let owner = Object::permanent(rh::OWNER);
        let (key, _) = tpm
            .create_primary(
                &owner,
                &mut [Auth::Password(&[])],
                &Template::ecc_storage(),
                &[],
            )
            .map_err(|e| format!("cycle {cycle}: CreatePrimary: {e:?}"))?;
        let session = tpm
            .start_auth_session(SaltKey::None, None, SessionKind::Hmac, sa::CONTINUE_SESSION)
            .map_err(|e| format!("cycle {cycle}: StartAuthSession: {e:?}"))?;
        let (objects, sessions) = tpm_handles(&mut tpm)?;
        if !objects.contains(&key.handle) || !sessions.contains(&session.handle()) {
            return Err(format!("cycle {cycle}: new handles not listed"));
        }
        tpm.transport_mut()
            .close_session()
            .map_err(|e| format!("cycle {cycle}: CLOSE: {e}"))?;
    }
    let after = tpm_handles(&mut tpm)?;
    let _ = close();
    if after != baseline {
        return Err(format!(
            "after {CYCLES} cycles: objects {:x?} sessions {:x?}, before: {:x?} {:x?}",
            after.0, after.1, baseline.0, baseline.1
        ));
    }
    crate::println!(
        "  tpm-leak: {CYCLES} create/close cycles left nothing behind (own handles before and after: {} objects, {} sessions)",
        baseline.0.len(),
        baseline.1.len()
    );
    Ok(())
}

/// Asks the host launcher to act (console protocol: [`report::HostRequest`], answered by
/// [`report::Ack`]).
fn host_request(verb: &str) -> Result<(), String> {
    use crate::report;
    crate::println!("{}", report::HostRequest(verb));
    let mut buf = [0u8; 64];
    let want = format!("{}", report::Ack(verb));
    for _ in 0..4 {
        match crate::platform::console::read_line(&mut buf, 400_000_000) {
            Some(l) if l == want => return Ok(()),
            Some(_) => continue,
            None => break,
        }
    }
    Err(format!("host did not acknowledge {verb:?}"))
}

/// `hv-stopped-holding-state`: the hypervisor partition stopped (HDSI: a load from the
/// ultravisor's heap, by a relay hook, `target::hv::testing::fault_in_relay`) inside
/// H_TPM_COMM, while it holds its state (slots, link). The ultravisor must never wait on
/// that state: the call answers H_HARDWARE, the next is refused at once without running the
/// hypervisor, and the ultravisor's own uses of the state (a caller's memory, the observer,
/// the link) refuse instead of waiting. Before they did, the boot hung at the first of them.
/// It leaves the hypervisor unusable: run it alone.
fn hv_stopped_holding_state() -> TestResult {
    use crate::target::hv::{testing::fault_in_relay, HV};
    HV.with_observer(|m| m.snoop_fn = Some(fault_in_relay))
        .ok_or("the hypervisor's state was held before the test")?;
    let (st, _, _) = execute(&GET_RANDOM_16);
    if st != crate::papr::H_HARDWARE {
        return Err(format!(
            "the stopped call answered {st}, expected H_HARDWARE"
        ));
    }
    if !HV.is_busy() {
        return Err("the hypervisor stopped without holding its state: nothing tested".into());
    }
    let (st, _, _) = execute(&GET_RANDOM_16);
    if st != crate::papr::H_HARDWARE {
        return Err(format!("the next call answered {st}, expected H_HARDWARE"));
    }
    let caller = crate::hv::CallerId(7);
    if HV.set_caller_memory(caller, None) != Err(crate::hv::CallerMemoryError::Busy) {
        return Err("setting a caller's memory did not refuse".into());
    }
    if HV.with_observer(|m| m.snoop_fn = None).is_some() || HV.with_link(|_| ()).is_some() {
        return Err("the observer or the link was reached through the held state".into());
    }
    crate::println!(
        "  hv-stopped-holding-state: stopped call H_HARDWARE; next call H_HARDWARE without running it; caller memory, observer and link refused, nothing waited"
    );
    Ok(())
}

fn tpm_fault() -> TestResult {
    use crate::platform::tpm_uart::DEFAULT_TIMEOUT_MS;
    let tb_hz = arch::timebase_hz();
    host_request("tpm-stop")?;
    let t0 = arch::timebase();
    let (st, r4, _) = execute(&GET_RANDOM_16);
    let ms = (arch::timebase() - t0) / (tb_hz / 1000);
    if st != H_RESOURCE || r4 != 0 {
        return Err(format!(
            "with the TPM stopped: r3 {st} r4 {r4}, expected H_RESOURCE"
        ));
    }
    if ms > DEFAULT_TIMEOUT_MS + 1000 {
        return Err(format!(
            "H_RESOURCE took {ms} ms, bound is {DEFAULT_TIMEOUT_MS} ms"
        ));
    }
    crate::println!(
        "  tpm-fault: TPM stopped -> H_RESOURCE after {ms} ms (bound {DEFAULT_TIMEOUT_MS} ms)"
    );
    host_request("tpm-start")?;
    let (st, r4, rsp) = execute(&GET_RANDOM_16);
    if st != H_SUCCESS || r4 != 28 || rsp_code(&rsp) != 0 {
        return Err(format!(
            "after the TPM came back: r3 {st} r4 {r4} rc {:#x}",
            rsp_code(&rsp)
        ));
    }
    crate::println!("  tpm-fault: TPM back -> next call H_SUCCESS");
    Ok(())
}

/// Runs the bootargs option `hcall-probe=P1;P2;...` (see [`super::probe`]): one H_TPM_COMM
/// per probe with exactly the given registers, one console line each, `hcall-probe
/// r3=<signed decimal> (<name>) r4=<0x hex>`, the name from [`crate::papr::name`] (`unknown`
/// for a value PAPR does not define here), e.g. `hcall-probe r3=-55 (H_P2) r4=0x0`.
///
/// Where it is issued from (`as=N`):
/// - a partition of its own, LPID N (1..=254; 1 by default, an SVM's): the ultravisor puts the
///   registers in the partition's frame and enters it at an `sc 1`; the partition traps, the
///   ultravisor reflects the call into the hypervisor partition as any SVM hcall, puts the
///   answer in the partition's registers and resumes it, and the partition's next `sc 1`
///   brings back what it received: that is what the line shows. Its memory is a code page at
///   guest-physical 0 and its bounce page at [`PROBE_SHARED_GPA`], the only memory the
///   hypervisor is told it shares; `buf` / `buf+N` name that page;
/// - `as=0`: the host, the ultravisor's own `sc 1` in hypervisor state, with `buf` the probe
///   page of the caller window (the hcall path before partitions).
///
/// The buffer is refilled before every probe with TPM2_GetRandom(16), or with the probe's own
/// `cmd=` bytes. A `cmd=` probe that succeeds adds the response in hex and its decoded code:
/// `... r4=0xa rsp=80010000000a000b0143 rc=0xb0143 (TPM_RC_COMMAND_CODE, resource manager)`.
pub fn run_probes(value: &str) -> Result<(), String> {
    use super::probe::{decode_hex, RcName, MAX_CMD_BYTES};
    use crate::uv::hcall::SharedPage;
    let probes = super::probe::parse(value).map_err(|e| format!("{e}"))?;
    let window = page(pages::PROBE);
    for (i, p) in probes.iter().enumerate() {
        let mut bounce = crate::platform::layout::BouncePage::new(1, PROBE_SHARED_GPA)
            .ok_or("no shared page for the probe partition")?;
        let base = if p.lpid == 0 {
            window.addr()
        } else {
            PROBE_SHARED_GPA
        };
        let (Some(inp), Some(out)) = (p.inp.resolve(base), p.out.resolve(base)) else {
            return Err(format!("probe {}: buf+N overflows u64", i + 1));
        };
        // The whole page: the command, zeros after it.
        let mut cmd = [0u8; 4096];
        match p.cmd {
            Some(hex) => {
                decode_hex(hex, &mut cmd[..MAX_CMD_BYTES])
                    .ok_or_else(|| format!("probe {}: cmd does not decode", i + 1))?;
            }
            None => cmd[..GET_RANDOM_16.len()].copy_from_slice(&GET_RANDOM_16),
        }
        let args = [p.op, inp, p.in_size, out, p.out_size, 0, 0, 0, 0];
        let (st, r4) = if p.lpid == 0 {
            window.write(0, &cmd);
            let (st, regs) = arch::hcall_as(0, H_TPM_COMM, args);
            (st, regs[0])
        } else {
            bounce.store(&cmd);
            from_partition(p.lpid, &bounce, args).map_err(|e| format!("probe {}: {e}", i + 1))?
        };
        let mut line = format!(
            "hcall-probe r3={st} ({}) r4={r4:#x}",
            crate::papr::status_name(st)
        );
        if p.cmd.is_some() && st == H_SUCCESS && (10..=4096).contains(&r4) {
            let mut rsp = [0u8; 4096];
            let n = r4 as usize;
            if p.lpid == 0 {
                window.read(0, &mut rsp[..n]);
            } else {
                bounce.load(&mut rsp[..n]);
            }
            line.push_str(" rsp=");
            for b in &rsp[..n] {
                line.push_str(&format!("{b:02x}"));
            }
            let rc = crate::tpm::wire::code(&rsp).unwrap_or(u32::MAX);
            line.push_str(&format!(" rc={rc:#x} ({})", RcName(rc)));
        }
        crate::println!("{line}");
    }
    if let Some(mut b) = crate::platform::layout::BouncePage::new(1, PROBE_SHARED_GPA) {
        crate::uv::hcall::SharedPage::store(&mut b, &[0u8; 4096]);
    }
    Ok(())
}

/// Where a probe partition's bounce page is, in its own guest-physical addresses.
pub const PROBE_SHARED_GPA: u64 = 0x1000;

/// One H_TPM_COMM issued from partition `lpid` with `args` (see [`run_probes`]): (r3, r4) as
/// the partition received them.
fn from_partition(
    lpid: u32,
    bounce: &crate::platform::layout::BouncePage,
    args: [u64; 9],
) -> Result<(i64, u64), String> {
    use crate::arch::partition::Vector;
    use radix::Access;
    if lpid == 0 || lpid >= crate::target::hvp::HV_LPID {
        return Err(format!(
            "as={lpid}: a probe partition's LPID is 1..={}",
            crate::target::hvp::HV_LPID - 1
        ));
    }
    let caller = crate::hv::CallerId(lpid);
    let table = crate::hv::RegionTable::mapped(&[(
        crate::hv::GuestRange::new(PROBE_SHARED_GPA, 4096),
        bounce.host(),
    )])
    .map_err(|e| format!("{e:?}"))?;
    crate::target::hv::HV
        .set_caller_memory(caller, Some(table))
        .map_err(|e| format!("{e:?}"))?;
    let r = crate::target::hvp::lend(|p| {
        // sc 1; b .-4: the call, then (resumed with the answer) the same call again, which
        // brings the answer back to the ultravisor in the partition's own registers.
        let code = p.guest_pages(1).map_err(|e| format!("{e}"))?;
        let words: alloc::vec::Vec<u8> = [0x4400_0022u32, 0x4BFF_FFFC]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect();
        p.write(code, &words).map_err(|e| format!("{e}"))?;
        p.create(lpid)
            .and_then(|()| p.map(lpid, 0, code, 4096, Access::READ | Access::EXECUTE))
            .and_then(|()| {
                p.map(
                    lpid,
                    PROBE_SHARED_GPA,
                    bounce.host(),
                    4096,
                    Access::READ | Access::WRITE,
                )
            })
            .map_err(|e| format!("partition {lpid}: {e}"))?;
        let budget = u32::try_from(arch::timebase_hz() / 10).unwrap_or(u32::MAX / 2);
        let mut frame = alloc::boxed::Box::new(HcallFrame::zeroed());
        frame.gpr[3] = H_TPM_COMM;
        frame.gpr[4..=12].copy_from_slice(&args);
        let p: &crate::arch::partition::Partitions = p;
        let e = p
            .run(lpid, &mut frame, budget)
            .map_err(|e| format!("{e}"))?;
        if e.kind() != Some(Vector::Syscall) || e.srr0 != 4 {
            return Err(format!("partition {lpid}: {e}"));
        }
        let mut regs = [0u64; 10];
        regs.copy_from_slice(&frame.gpr[3..=12]);
        let answer = crate::target::hvp::reflect(p, caller, regs).map_err(|e| format!("{e}"))?;
        frame.gpr[3..=12].copy_from_slice(&answer);
        frame.srr0 = e.srr0;
        let e = p
            .run(lpid, &mut frame, budget)
            .map_err(|e| format!("{e}"))?;
        if e.kind() != Some(Vector::Syscall) || e.srr0 != 4 {
            return Err(format!("partition {lpid} after the answer: {e}"));
        }
        Ok((frame.gpr[3] as i64, frame.gpr[4]))
    });
    let _ = crate::target::hv::HV.set_caller_memory(caller, None);
    r
}

// ---- The ultravisor against a snooping and a meddling hypervisor ----

use crate::hv::Meddle;
use crate::tpm::consts::cc;

use crate::target::hv::testing::{record, RECORDING};

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// A lockbox made in the image: a fresh random 32-byte key, RSA-OAEP-SHA256 (empty label)
/// encrypted to the wrapping key's public part, exactly as svm-tools makes lockbox-1.
pub(super) fn synthetic_lockbox() -> Result<([u8; 32], [u8; 256]), String> {
    let modulus = {
        let g = crate::target::uv::UV.lock();
        let uv = g.as_ref().ok_or("the ultravisor did not start")?;
        uv.modulus.clone()
    };
    let mut rng = crate::tpm::Mixer::new(&mut arch::Darn, b"selftest lockbox")
        .map_err(|e| format!("entropy: {e}"))?;
    let mut key = [0u8; 32];
    rng.generate(&mut key);
    let mut ek = [0u8; 256];
    crate::tpm::crypto::rsa_oaep_encrypt(&modulus, 0, b"", &key, &mut rng, &mut ek)
        .map_err(|e| format!("OAEP: {e}"))?;
    Ok((key, ek))
}

fn uv_snoop() -> TestResult {
    let (key, ek) = synthetic_lockbox()?;
    // The ultravisor, under its lock (UvSecrets is not Clone: no copy to wipe). The flow
    // below reaches the TPM through the hypervisor, which never takes this lock.
    let mut guard = crate::target::uv::UV.lock();
    let uv = guard.as_mut().ok_or("the ultravisor did not start")?;
    let crate::target::uv::Uv {
        tpm: uv_tpm,
        session: boot_session,
        secrets,
        ..
    } = uv;
    {
        let mut r = RECORDING.lock();
        r.len = 0;
        r.overflowed = false;
        r.commands = 0;
        r.saw_rsa_decrypt = false;
    }
    // The whole flow through the snooping hypervisor: a new client (GetRandom for its
    // entropy), ReadPublic of the pinned keys, the salted session, the policy, RSA_Decrypt.
    // The new session takes the boot session's place, so the boot goes on with one session
    // as it would without this test: the old one is flushed first (not recorded: it is not
    // part of the flow) and the new one, with its client, is kept for the rest of the boot.
    boot_session
        .flush(uv_tpm)
        .map_err(|e| format!("flushing the boot session: {e}"))?;
    crate::target::hv::HV.with_observer(|m| m.snoop_fn = Some(record));
    let flow = (|| -> Result<[u8; 32], String> {
        let mut tpm = crate::target::uv::client()?;
        let mut s = crate::uv::unwrap::UvSession::establish(&mut tpm, secrets)
            .map_err(|e| format!("establish: {e}"))?;
        let k = s
            .unwrap(&mut tpm, &ek)
            .map_err(|e| format!("unwrap: {e}"))?;
        *boot_session = s;
        *uv_tpm = tpm;
        Ok(k)
    })();
    crate::target::hv::HV.with_observer(|m| m.snoop_fn = None);
    let got = flow?;
    if got != key {
        return Err("the unwrapped key differs from the one sealed".into());
    }
    let r = RECORDING.lock();
    let seen = &r.bytes[..r.len];
    if r.overflowed || !r.saw_rsa_decrypt || !contains(seen, &ek) {
        return Err(format!(
            "recording incomplete: {} bytes, {} commands, overflow {}, RSA_Decrypt seen {}",
            r.len, r.commands, r.overflowed, r.saw_rsa_decrypt
        ));
    }
    if contains(seen, &key) {
        return Err("the symmetric key crossed the hcall boundary in clear".into());
    }
    if contains(seen, &secrets.nv_auth[..]) {
        return Err("the door authValue crossed the hcall boundary in clear".into());
    }
    crate::println!(
        "  uv-snoop: {} commands, {} bytes relayed; lockbox ciphertext seen, key and authValue not",
        r.commands,
        r.len
    );
    drop(r);
    // Everything the hypervisor partition can reach after the whole flow: its code, data
    // (the recording above included), stack and the shared pages. The lockbox ciphertext is
    // the control: it crossed the shared page, so the scan must find it.
    let found = crate::target::hvp::scan(&[&key, &secrets.nv_auth[..], &ek])?;
    let [k, a, c] = [0, 1, 2].map(|i| found.hits.get(i).copied().unwrap_or(0));
    crate::println!(
        "  uv-snoop: hypervisor partition memory ({} bytes in {} ranges): symmetric key {k}, authValue {a}, lockbox ciphertext {c} occurrence(s)",
        found.bytes,
        found.ranges
    );
    if c == 0 {
        return Err("the scan of the hypervisor's memory missed the ciphertext it relayed".into());
    }
    if k != 0 || a != 0 {
        return Err(format!(
            "the hypervisor partition can read the symmetric key ({k}x) or the authValue ({a}x)"
        ));
    }
    Ok(())
}

fn uv_tamper() -> TestResult {
    let (key, ek) = synthetic_lockbox()?;
    let arm = |mode, cc| crate::target::hv::HV.with_observer(|m| m.arm(mode, cc));
    // An honest unwrap first: it also gives the response length to aim at.
    let honest = crate::target::uv::unwrap(&ek).map_err(|e| format!("honest unwrap: {e}"))?;
    if honest != key {
        return Err("honest unwrap returned a wrong key".into());
    }
    // RSA_Decrypt response: header 10, parameterSize 4, TPM2B (2 + 32), auth area
    // (nonce 2 + 32, attributes 1, HMAC 2 + 32) = 117 bytes.
    const LEN: usize = 117;
    let mut cases: heapless::Vec<(Meddle, &str), 64> = heapless::Vec::new();
    for byte in (0..LEN).step_by(4) {
        let _ = cases.push((
            Meddle::FlipBit {
                byte,
                bit: (byte % 8) as u8,
            },
            "bit flip",
        ));
    }
    for n in [0usize, 9, 10, 14, 50, LEN - 1] {
        let _ = cases.push((Meddle::Truncate(n), "truncation"));
    }
    for r4 in [0u64, 10, LEN as u64 - 1, LEN as u64 + 1, 4097, u64::MAX] {
        let _ = cases.push((Meddle::LieSize(r4), "r4 lie"));
    }
    let (mut rejected, mut wrong) = (0u32, 0u32);
    let mut errs = String::new();
    for (mode, what) in cases.iter() {
        arm(*mode, Some(cc::RSA_DECRYPT));
        match crate::target::uv::unwrap(&ek) {
            Err(_) => rejected += 1,
            Ok(k) if k == key => errs += &format!("{what} {mode:?}: accepted unchanged key; "),
            Ok(_) => {
                wrong += 1;
                errs += &format!("{what} {mode:?}: ACCEPTED A WRONG KEY; ");
            }
        }
    }
    // Replay: the hypervisor answers a new RSA_Decrypt with the previous one's response.
    arm(Meddle::ReplayPrevious, Some(cc::RSA_DECRYPT));
    let first = crate::target::uv::unwrap(&ek);
    let replayed = crate::target::uv::unwrap(&ek);
    let total = cases.len() as u32 + 1;
    match (first, replayed) {
        (Ok(k), Err(_)) if k == key => rejected += 1,
        (f, r) => errs += &format!("replay: first {:?}, replayed {:?}; ", f.is_ok(), r.is_ok()),
    }
    arm(Meddle::Off, None);
    // The ultravisor recovers once the hypervisor behaves.
    let after = crate::target::uv::unwrap(&ek).map_err(|e| format!("recovery: {e}"))?;
    crate::println!("  uv-tamper: {total} cases, {rejected} rejected, {wrong} wrong keys accepted");
    if after != key {
        errs += "recovery unwrap returned a wrong key; ";
    }
    if errs.is_empty() && rejected == total {
        Ok(())
    } else {
        Err(errs)
    }
}

/// Measures, from the timebase: the bare `sc 1` round trip (the echo hcall), H_TPM_COMM
/// rejecting bad arguments (validation only), and GetRandom(16) through H_TPM_COMM split
/// into time on the TPM link and the handler's own time. One `bench ...` line; the launcher
/// adds the swtpm-side time of the same commands measured at the relay.
fn hcall_bench() -> TestResult {
    use crate::platform::tpm_link::{LINK_CALLS, LINK_TICKS};
    use core::sync::atomic::Ordering;
    const N: u64 = 200;
    let t0 = arch::timebase();
    for i in 0..N {
        let _ = arch::hcall(H_PEFBOX_UV_NULL, [i; 9]);
    }
    let direct = arch::timebase() - t0;
    let t0 = arch::timebase();
    for i in 0..N {
        let _ = arch::hcall(H_PEFBOX_ECHO, [i; 9]);
    }
    let echo = arch::timebase() - t0;
    let p = page(pages::TEST_IN);
    p.write(0, &GET_RANDOM_16);
    let t0 = arch::timebase();
    for _ in 0..N {
        let (st, _) = arch::hcall(H_TPM_COMM, [1, p.addr(), 12, p.addr(), 4095, 0, 0, 0, 0]);
        if st != H_P5 {
            return Err(format!("bad out_size returned {st}"));
        }
    }
    let reject = arch::timebase() - t0;
    let (l0, c0) = (
        LINK_TICKS.load(Ordering::Relaxed),
        LINK_CALLS.load(Ordering::Relaxed),
    );
    let t0 = arch::timebase();
    for _ in 0..N {
        let (st, r4, _) = execute(&GET_RANDOM_16);
        if st != H_SUCCESS || r4 != 28 {
            return Err(format!("GetRandom returned r3 {st} r4 {r4}"));
        }
    }
    let total = arch::timebase() - t0;
    let link = LINK_TICKS.load(Ordering::Relaxed) - l0;
    let calls = LINK_CALLS.load(Ordering::Relaxed) - c0;
    if calls != N {
        return Err(format!("{calls} link round trips for {N} hcalls"));
    }
    let partition = super::partition::round_trips(N)?;
    let svm_reflected = super::partition::reflected_round_trips(N)?;
    let tb_hz = arch::timebase_hz();
    let ns =
        |ticks: u64| (u128::from(ticks) * 1_000_000_000 / u128::from(tb_hz) / u128::from(N)) as u64;
    crate::println!(
        "bench hcall-direct-ns={} hcall-echo-ns={} tpm-comm-reject-ns={} getrandom-hcall-ns={} getrandom-link-ns={} getrandom-handler-ns={} partition-hcall-ns={} svm-reflected-ns={} n={N}",
        ns(direct),
        ns(echo),
        ns(reject),
        ns(total),
        ns(link),
        ns(total - link),
        ns(partition),
        ns(svm_reflected)
    );
    Ok(())
}

// ---- OPAL I2C, end to end where QEMU models it ----

/// What `i2c-opal` works on: the OPAL I2C buses the device tree names (their `ibm,opal-id`s)
/// and the bootarg `i2c-rw=BUS,ADDR,REG` (a writable register of a device on one of them).
/// Set by the boot path before the self-tests run.
pub static I2C: spin::Once<I2cSetup> = spin::Once::new();

/// A register of a device on an OPAL I2C bus: (bus id, 7-bit address, register).
pub type I2cRegister = (u32, u16, u8);

/// The buses' OPAL ids, and the `i2c-rw=` register (or why the bootarg was refused).
pub type I2cSetup = (heapless::Vec<u32, 32>, Result<Option<I2cRegister>, String>);

/// Parses `i2c-rw=BUS,ADDR,REG` (numbers as in `hcall-probe`).
pub fn parse_i2c_rw(v: &str) -> Result<I2cRegister, String> {
    let mut f = v.split(',');
    let mut next = |what: &str| {
        f.next()
            .and_then(crate::bootargs::parse_number)
            .ok_or_else(|| format!("i2c-rw={v}: {what} is missing or not a number"))
    };
    let bus =
        u32::try_from(next("BUS")?).map_err(|_| format!("i2c-rw={v}: BUS exceeds 32 bits"))?;
    let addr = next("ADDR")?;
    let reg = next("REG")?;
    if addr >= 0x80 {
        return Err(format!("i2c-rw={v}: ADDR {addr:#x} is not a 7-bit address"));
    }
    let reg = u8::try_from(reg).map_err(|_| format!("i2c-rw={v}: REG {reg:#x} exceeds a byte"))?;
    Ok((bus, addr as u16, reg))
}

/// `i2c-opal`: OPAL_I2C_REQUEST from the image, polled to completion. A bus id no bus has is
/// refused (OPAL_PARAMETER); a read from an address where no device answers fails with a
/// clean error (the completion's code); and, with `i2c-rw=BUS,ADDR,REG`, two patterns written
/// to that register read back as written, then the register is restored.
fn i2c_opal() -> TestResult {
    use crate::platform::opal::{i2c_transfer, I2cError, I2cOp};
    let (buses, rw) = I2C
        .get()
        .ok_or("the boot path did not say which I2C buses exist")?;
    let first = *buses
        .first()
        .ok_or("the device tree names no OPAL I2C bus (this QEMU models no I2C engine)")?;
    let bad = buses
        .iter()
        .max()
        .copied()
        .unwrap_or(0)
        .saturating_add(1000);
    let mut b = [0u8; 1];
    match i2c_transfer(bad, 0x50, 0, I2cOp::Read, &mut b) {
        Err(e @ I2cError::Refused(-1)) => {
            crate::println!("  i2c-opal: bus {bad} (no such bus): {e}")
        }
        other => {
            return Err(format!(
                "bus {bad} (no such bus): {other:?}, expected OPAL_PARAMETER"
            ))
        }
    }
    let absent = 0x50;
    match i2c_transfer(first, absent, 0, I2cOp::Read, &mut b) {
        Err(e @ (I2cError::Failed(_) | I2cError::Refused(_))) => {
            crate::println!("  i2c-opal: bus {first} address {absent:#x} (no device): {e}")
        }
        other => {
            return Err(format!(
                "bus {first} address {absent:#x} (no device): {other:?}, expected an error"
            ))
        }
    }
    let Some((bus, addr, reg)) = rw.clone()? else {
        crate::println!("  i2c-opal: no i2c-rw=BUS,ADDR,REG given: no register round trip");
        return Ok(());
    };
    let mut old = [0u8; 1];
    i2c_transfer(bus, addr, reg, I2cOp::Read, &mut old)
        .map_err(|e| format!("bus {bus} address {addr:#x} register {reg:#x}: read: {e}"))?;
    let mut line = format!(
        "  i2c-opal: bus {bus} address {addr:#x} register {reg:#x}: was {:#04x}",
        old[0]
    );
    for pattern in [0xA5u8, 0x5A] {
        i2c_transfer(bus, addr, reg, I2cOp::Write, &mut [pattern])
            .map_err(|e| format!("write {pattern:#x}: {e}"))?;
        let mut back = [0u8; 1];
        i2c_transfer(bus, addr, reg, I2cOp::Read, &mut back)
            .map_err(|e| format!("read back {pattern:#x}: {e}"))?;
        if back[0] != pattern {
            return Err(format!("wrote {pattern:#04x}, read back {:#04x}", back[0]));
        }
        line += &format!("; wrote {pattern:#04x}, read back {:#04x}", back[0]);
    }
    i2c_transfer(bus, addr, reg, I2cOp::Write, &mut old).map_err(|e| format!("restore: {e}"))?;
    crate::println!("{line}; restored");
    Ok(())
}

/// `hv-i2c`: the hypervisor partition reaches an I2C device only through the ultravisor, and
/// only one the ultravisor allows. With `i2c-rw=BUS,ADDR,REG` allowed, the round trip of
/// `i2c-opal` made from the hypervisor partition reads back what it wrote; the same device
/// once disallowed, and its neighbour address, are refused (OPAL_PERMISSION) by the
/// ultravisor before OPAL is asked.
fn hv_i2c() -> TestResult {
    let (_, rw) = I2C
        .get()
        .ok_or("the boot path did not say which I2C buses exist")?;
    let (bus, addr, reg) = rw.clone()?.ok_or("hv-i2c needs i2c-rw=BUS,ADDR,REG")?;
    let call = || {
        let (st, out) = arch::hcall(
            H_PEFBOX_I2C_RW,
            [
                u64::from(bus),
                u64::from(addr),
                u64::from(reg),
                0,
                0,
                0,
                0,
                0,
                0,
            ],
        );
        (st, out[0] as i64, [out[1], out[2], out[3]])
    };
    if !crate::target::hvp::allow_i2c(bus, addr) {
        return Err("no room to allow the device".into());
    }
    let (st, rc, [was, a, b]) = call();
    crate::target::hvp::disallow_i2c(bus, addr);
    if st != H_SUCCESS || rc != 0 || (a, b) != (0xA5, 0x5A) {
        return Err(format!(
            "allowed: status {st}, OPAL {rc} ({}), read back {a:#x}, {b:#x}",
            crate::platform::opal::I2cError::name(rc)
        ));
    }
    crate::println!(
        "  hv-i2c: from partition {}: bus {bus} address {addr:#x} register {reg:#x}: was {was:#04x}; wrote 0xa5, read back {a:#04x}; wrote 0x5a, read back {b:#04x}; restored",
        crate::target::hvp::HV_LPID
    );
    let (st, rc, _) = call();
    if st != H_SUCCESS || rc != -8 {
        return Err(format!(
            "once disallowed: status {st}, OPAL {rc}, expected OPAL_PERMISSION"
        ));
    }
    crate::println!(
        "  hv-i2c: the same device, no longer allowed: {} ({rc}), refused by the ultravisor",
        crate::platform::opal::I2cError::name(rc)
    );
    Ok(())
}
