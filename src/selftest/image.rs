//! The self-tests that run inside the image (target-only): they issue real `sc 1`
//! hypercalls and read real registers.

use super::{Test, TestResult};
use crate::arch;
use crate::papr::{H_FUNCTION, H_SUCCESS};
use alloc::format;

/// Image-private diagnostic hcall (outside PAPR's and the ultravisor's ranges): returns
/// H_SUCCESS with r4..r12 = !(r4..r12), after scribbling over every ABI-volatile register
/// inside the handler. Used only by the tests below.
pub const H_PEFBOX_ECHO: u64 = 0xF3FC;

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
    for nr in [0u64, 0x4, 0xEF00, 0xEF14, 0xF3F8, u64::MAX] {
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
