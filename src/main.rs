//! The image's entry (powerpc64 only): boot/entry.S calls [`rust_entry`] with the device tree
//! and OPAL's addresses; the vectors call [`pefbox_unexpected_exception`] and
//! [`pefbox_hcall_dispatch`]. On any other target this is a stub that points at the launcher.
#![cfg_attr(target_arch = "powerpc64", no_std, no_main)]

#[cfg(not(target_arch = "powerpc64"))]
fn main() {
    eprintln!("pefbox is a powerpc64 firmware image: `cargo pef run` builds and boots it");
    std::process::exit(2);
}

#[cfg(target_arch = "powerpc64")]
extern crate alloc;

#[cfg(target_arch = "powerpc64")]
mod target {
    use core::sync::atomic::{AtomicBool, Ordering};
    use pefbox::bootargs;
    use pefbox::dtb::Dtb;
    use pefbox::platform::bootinfo::{BootInfo, TpmLink};
    use pefbox::platform::tpm_link::{self, Link};
    use pefbox::platform::{console, opal};
    use pefbox::report::{self, Tally};
    #[cfg(feature = "selftest")]
    use pefbox::selftest;
    use pefbox::tpm::Tpm;
    use pefbox::{arch, fw, print, println, uv};

    #[global_allocator]
    static HEAP: linked_list_allocator::LockedHeap = linked_list_allocator::LockedHeap::empty();

    extern "C" {
        static __heap_start: u8;
        static __heap_end: u8;
    }

    /// Set once the first fatal report has started (a fault inside it must not recurse).
    static DYING: AtomicBool = AtomicBool::new(false);

    const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("PEFBOX_GIT"), ")");

    #[no_mangle]
    extern "C" fn rust_entry(fdt: u64, opal_base: u64, opal_entry: u64) -> ! {
        opal::init(opal_base, opal_entry);
        // SAFETY: first thing on the only running thread, interrupts off; the image owns
        // low memory from here on.
        unsafe { arch::vectors::install() };
        // SAFETY: the linker script reserves [__heap_start, __heap_end) for the heap and
        // nothing else uses it; init runs once.
        unsafe {
            let s = core::ptr::addr_of!(__heap_start) as *mut u8;
            let e = core::ptr::addr_of!(__heap_end) as usize;
            HEAP.lock().init(s, e - s as usize);
        }

        let dtb = device_tree(fdt);
        let info = dtb.as_ref().map(BootInfo::from_dtb).unwrap_or_default();
        if let Some(u) = info.console_uart() {
            // SAFETY: the address was translated from skiboot's device tree; skiboot is idle
            // while the image runs, so nothing else drives this UART.
            unsafe { console::use_uart(u.mmio) };
        }
        let (choice, forced) = tpm_link_choice(&info);
        banner(&info, dtb.is_ok(), choice, forced.as_ref());
        if bootargs::bootarg_flag(info.bootargs, "dump-dt") {
            match &dtb {
                Ok(d) => {
                    for line in pefbox::platform::dt_dump::lines(d.as_bytes()) {
                        println!("{line}");
                    }
                }
                Err(e) => println!("dt-dump: unavailable: device tree unreadable ({e:?})"),
            }
        }
        arch::set_timebase_hz(info.timebase_hz.unwrap_or(0));
        let tb_hz = arch::timebase_hz();
        let ram_top = info
            .memory
            .iter()
            .map(|(b, s)| b.saturating_add(*s))
            .max()
            .unwrap_or(0);
        let link = Link::open(choice, tb_hz);
        let mut flow = BootFlow::default();
        if let Some(Err(e)) = &forced {
            println!("{}", report::Fail("tpm-i2c", e));
            flow.failures += 1;
        }
        let t0 = arch::timebase();
        let (link, handoff) = provision(link, &mut flow);
        flow.provision_ms = ms(arch::timebase() - t0, tb_hz);
        let tpm_uart = match choice {
            TpmLink::Uart(u) => Some(u),
            _ => None,
        };
        let devices = [info.console_uart(), tpm_uart].map(|u| u.map(|u| u.mmio));
        configure_hypervisor(
            link,
            ram_top,
            &devices,
            weakened_for_the_control(&info),
            choice,
        );
        ultravisor(&info, handoff, ram_top, tb_hz, &mut flow);
        println!(
            "bench boot-to-verdict-ms={} provision-ms={} provision-commands={} provision-nv-writes={} session-ms={} unwrap-ms={}",
            ms(arch::timebase(), tb_hz),
            flow.provision_ms,
            flow.provision_commands,
            flow.provision_nv_writes,
            flow.session_ms,
            flow.unwrap_ms
        );

        let checks = Tally {
            passed: flow.passed,
            failed: flow.failures,
        };
        #[cfg(feature = "selftest")]
        let tally = {
            let rw = bootargs::bootarg(info.bootargs, "i2c-rw")
                .map(selftest::target::parse_i2c_rw)
                .transpose();
            let ids = info.i2c_buses.iter().map(|b| b.opal_id).collect();
            selftest::target::I2C.call_once(|| (ids, rw));
            let selection = bootargs::bootarg(info.bootargs, "selftest");
            let t = run_selftests_after_probes(info.bootargs, selection);
            Tally {
                passed: checks.passed + t.passed,
                failed: checks.failed + t.failed,
            }
        };
        #[cfg(not(feature = "selftest"))]
        let tally = checks;
        println!("{tally}");
        power_off(if tally.failed == 0 { "pass" } else { "fail" });
    }

    fn device_tree(fdt: u64) -> Result<Dtb<'static>, pefbox::dtb::DtbError> {
        // SAFETY: skiboot passes a flattened device tree at `fdt` in r3; its header is at
        // least 40 bytes and stays untouched (skiboot is idle, we never write there).
        let header = unsafe { core::slice::from_raw_parts(fdt as *const u8, 40) };
        let size = Dtb::total_size(header)?;
        // SAFETY: as above, for the `totalsize` bytes the header declares.
        let bytes = unsafe { core::slice::from_raw_parts(fdt as *const u8, size) };
        Dtb::new(bytes)
    }

    /// The TPM link the device tree names ([`BootInfo::tpm_link`]), and in the self-test
    /// image the bootarg `tpm-i2c=BUS,ADDR[,npct650|tcg]` that names an I2C TPM the tree does
    /// not (QEMU has no TPM on I2C: this points the I2C link at a bus address to show its
    /// errors end to end). The second value is that bootarg, or why it was refused.
    fn tpm_link_choice<'a>(
        info: &BootInfo<'a>,
    ) -> (TpmLink<'a>, Option<Result<&'a str, alloc::string::String>>) {
        #[cfg(feature = "selftest")]
        if let Some(v) = bootargs::bootarg(info.bootargs, "tpm-i2c") {
            return match pefbox::platform::bootinfo::parse_tpm_i2c(v) {
                Ok(t) => (TpmLink::I2c(t), Some(Ok(v))),
                Err(e) => (TpmLink::None, Some(Err(e))),
            };
        }
        (info.tpm_link(), None)
    }

    fn banner(
        info: &BootInfo<'_>,
        dt_ok: bool,
        choice: TpmLink<'_>,
        forced: Option<&Result<&str, alloc::string::String>>,
    ) {
        let ram: u64 = info.memory.iter().map(|r| r.1).sum();
        print!("{}{VERSION} powernv: {}", report::BANNER, info.model);
        for (i, c) in info.compatible.iter().enumerate() {
            print!("{}{c}", if i == 0 { " [" } else { ", " });
        }
        println!("{}", if info.compatible.is_empty() { "" } else { "]" });
        println!(
            "  device tree {}; {} MiB RAM in {} range(s); timebase {} Hz",
            if dt_ok { "ok" } else { "UNREADABLE" },
            ram >> 20,
            info.memory.len(),
            info.timebase_hz.unwrap_or(0)
        );
        match info.console_uart() {
            Some(u) => println!(
                "  console: 16550 at I/O {:#x} (MMIO {:#x})",
                u.io_port, u.mmio
            ),
            None => println!("  console: OPAL (no reserved 16550 found)"),
        }
        if !info.i2c_buses.is_empty() {
            println!("  I2C: {} OPAL bus(es)", info.i2c_buses.len());
        }
        match choice {
            TpmLink::I2c(t) => {
                let bus = info.i2c_buses.iter().find(|b| b.opal_id == t.bus);
                println!(
                    "  TPM link: I2C, {} at {:#x} on OPAL bus {} ({}), {}{}",
                    t.compatible,
                    t.addr,
                    t.bus,
                    bus.map_or(alloc::string::String::from("no such bus in the device tree"), |b| alloc::format!("{}/{}", b.engine, b.name)),
                    tpm_link::map_name(t.map),
                    match forced {
                        Some(Ok(v)) => alloc::format!("; named by the bootarg tpm-i2c={v} (self-test image), not by the device tree"),
                        _ => alloc::string::String::new(),
                    }
                );
                if let Some(u) = info.tpm_uart() {
                    println!(
                        "  (the 16550 at I/O {:#x} is not used: an I2C TPM comes first)",
                        u.io_port
                    );
                }
            }
            TpmLink::Uart(u) => println!(
                "  TPM link: 16550 at I/O {:#x} (MMIO {:#x})",
                u.io_port, u.mmio
            ),
            TpmLink::None if forced.is_some() => println!(
                "  TPM link: none (the bootarg tpm-i2c= is malformed): H_TPM_COMM answers H_FUNCTION"
            ),
            TpmLink::None => println!(
                "  TPM link: none (no Nuvoton TPM node on an OPAL I2C bus, no 16550 beside the console): H_TPM_COMM answers H_FUNCTION"
            ),
        }
        println!("  bootargs: \"{}\"", info.bootargs);
        if let Some((s, e)) = info.initrd {
            println!("  initrd: {s:#x}..{e:#x} ({} bytes)", e - s);
        }
    }

    /// What the firmware and ultravisor steps measured, and how many of their checks
    /// (provisioning, the ultravisor session) passed and failed.
    #[derive(Default)]
    struct BootFlow {
        /// Checks that passed; counted only in the image to flash (see [`check_passed`]).
        passed: u32,
        failures: u32,
        provision_ms: u64,
        provision_commands: u32,
        provision_nv_writes: u32,
        session_ms: u64,
        unwrap_ms: u64,
    }

    /// One of the flow's own checks passed. The image to flash runs no self-tests, so its
    /// count line counts these: `PASS provisioning`, `PASS uv-session`, then `2 passed, 0
    /// failed`. The self-test image's count line counts its self-tests as passed, as it always
    /// has. A failed check prints `FAIL <name>: <reason>` and is counted in both images.
    fn check_passed(flow: &mut BootFlow, name: &str) {
        if !cfg!(feature = "selftest") {
            flow.passed += 1;
            println!("{}", report::Pass(name));
        }
    }

    fn ms(ticks: u64, tb_hz: u64) -> u64 {
        ticks / (tb_hz / 1000).max(1)
    }

    /// The firmware role: provision the TPM keys over the link (the firmware's own channel,
    /// before the hypervisor exists), then hand the link on.
    fn provision(
        link: Option<Link>,
        flow: &mut BootFlow,
    ) -> (Option<Link>, Option<fw::provision::Provisioned>) {
        let Some(link) = link else {
            println!("fw: no TPM link: nothing provisioned");
            return (None, None);
        };
        let mut tpm = Tpm::new(pefbox::tpm::transport::Counted::new(link));
        tpm.set_delay(arch::delay_ms);
        let result = fw::provision::provision_boot(&mut tpm, &mut arch::Darn);
        let waited = tpm.retry_waited_ms();
        flow.provision_commands = tpm.commands_executed();
        let counted = tpm.into_transport();
        flow.provision_nv_writes = counted.nv_writes;
        let link = counted.inner;
        if waited > 0 {
            println!("fw: waited {waited} ms in re-sends (TPM busy or self-testing)");
        }
        match result {
            Ok(p) => {
                let state = |created| if created { "created" } else { "present" };
                if p.key_created {
                    print!(
                        "fw: WARNING: created a NEW wrapping key {:#x} (Name ",
                        fw::WRAPPING_HANDLE
                    );
                    for b in p.secrets.wrapping_name.as_bytes() {
                        print!("{b:02x}");
                    }
                    println!("): ESM blobs sealed to any earlier key will not open");
                }
                println!(
                    "fw: storage parent {:#x} {}, door index {:#x} {}, wrapping key {:#x} {}; door auth {}; PCR {} extended (door closed); platform auth locked",
                    fw::PARENT_HANDLE,
                    state(p.parent_created),
                    fw::NV_HANDLE,
                    if p.nv_defined { "defined" } else { "present" },
                    fw::WRAPPING_HANDLE,
                    state(p.key_created),
                    if p.nv_defined { "set" } else { "rotated" },
                    fw::DOOR_PCR
                );
                check_passed(flow, "provisioning");
                (Some(link), Some(p))
            }
            Err(e) => {
                println!("{}", report::Fail("provisioning", e));
                if let Some(f) = link.last_fault() {
                    println!("fw: TPM link: {f}");
                }
                flow.failures += 1;
                (Some(link), None)
            }
        }
    }

    /// The hypervisor: configured, then started in its own partition, which maps the
    /// console's and the TPM link's registers (`devices`).
    /// The `hv-weakened` control (self-test image only): the ultravisor's first heap page,
    /// where the door authValue is, mapped into the hypervisor partition read-only.
    fn weakened_for_the_control(info: &BootInfo<'_>) -> Option<u64> {
        if !cfg!(feature = "selftest") || !bootargs::bootarg_flag(info.bootargs, "hv-weakened") {
            return None;
        }
        let page = core::ptr::addr_of!(__heap_start) as u64;
        println!("hv: WEAKENED for the control: the ultravisor's heap page {page:#x} is mapped into the hypervisor partition");
        Some(page)
    }

    fn configure_hypervisor(
        link: Option<Link>,
        ram_top: u64,
        devices: &[Option<u64>],
        control: Option<u64>,
        choice: TpmLink<'_>,
    ) {
        let has_link = link.is_some();
        match pefbox::target::hv::configure(link, ram_top) {
            Ok(()) if has_link => println!("hv: H_TPM_COMM over the TPM link"),
            Ok(()) => println!("hv: no TPM link; H_TPM_COMM answers H_FUNCTION"),
            Err(e) => println!("hv: caller memory refused ({e:?}); H_TPM_COMM disabled"),
        }
        let devices: heapless::Vec<u64, 2> = devices.iter().flatten().copied().collect();
        if let TpmLink::I2c(t) = choice {
            // The I2C link: the hypervisor may reach this device through the ultravisor, and
            // no other.
            pefbox::target::hvp::allow_i2c(t.bus, t.addr);
        }
        match pefbox::target::hvp::start(ram_top, &devices, control) {
            Ok(()) => println!(
                "hv: running in partition {} (MSR[HV] clear); it maps its code, data, stack, the caller window and {} device page(s), nothing of the ultravisor's",
                pefbox::target::hvp::HV_LPID,
                devices.len()
            ),
            Err(e) => println!(
                "hv: its partition was refused ({e}); every hcall answers H_HARDWARE"
            ),
        }
    }

    /// The ultravisor: the salted session through H_TPM_COMM, then the SVM, if any. Prints
    /// the one verdict line.
    fn ultravisor(
        info: &BootInfo<'_>,
        handoff: Option<fw::provision::Provisioned>,
        ram_top: u64,
        tb_hz: u64,
        flow: &mut BootFlow,
    ) {
        let input = pefbox::target::uv::svm_input(info, ram_top);
        let fingerprint = handoff
            .as_ref()
            .and_then(fw::provision::Provisioned::wrapping_fingerprint);
        let started = match handoff {
            None => Err(alloc::string::String::from(
                "no wrapping key was provisioned",
            )),
            Some(p) => {
                let t0 = arch::timebase();
                let modulus: heapless::Vec<u8, 512> =
                    heapless::Vec::from_slice(p.wrapping_modulus()).unwrap_or_default();
                let r = pefbox::target::uv::start(p.secrets, &modulus);
                flow.session_ms = ms(arch::timebase() - t0, tb_hz);
                r
            }
        };
        match &started {
            Ok(h) => {
                println!(
                    "uv: salted policy session {h:#x} to {:#x} (Name pinned) in {} ms; wrapping key fingerprint {}",
                    fw::PARENT_HANDLE,
                    flow.session_ms,
                    fingerprint.as_ref().map_or(alloc::string::String::from("unknown"), |f| alloc::format!("{}", fw::pem::HexPrefix(f)))
                );
                check_passed(flow, "uv-session");
            }
            Err(e) => {
                println!("{}", report::Fail("uv-session", e));
                flow.failures += 1;
            }
        }
        let verdict = match input {
            Ok(pefbox::target::uv::SvmInput::None) => {
                println!("{}{}", report::SVM, report::SVM_NONE);
                return;
            }
            Err(r) => Err(r),
            Ok(pefbox::target::uv::SvmInput::Some { .. }) if started.is_err() => {
                Err(uv::svm::Rejection::Unwrap("no ultravisor session".into()))
            }
            Ok(pefbox::target::uv::SvmInput::Some { .. }) if fingerprint.is_none() => Err(
                uv::svm::Rejection::Unwrap("the wrapping key's public area is unusable".into()),
            ),
            Ok(pefbox::target::uv::SvmInput::Some {
                blob,
                initrd,
                payload,
            }) => {
                let fp = fingerprint.unwrap_or_default();
                let guard = pefbox::target::uv::UV.lock();
                let Some(uv) = guard.as_ref() else {
                    println!(
                        "{}{}: no ultravisor session",
                        report::SVM,
                        report::SVM_REJECTED
                    );
                    return;
                };
                // The SVM runs in its partition; it prints the verdict line when it makes
                // the ESM call.
                match pefbox::target::svm::run(blob, initrd, &payload, &fp, &uv.secrets) {
                    Ok(out) => {
                        flow.unwrap_ms = ms(out.unwrap_ticks, tb_hz);
                        println!("{}", out.end);
                        if out.verdict.is_none() {
                            println!(
                                "{}{}: the SVM stopped before its ESM call",
                                report::SVM,
                                report::SVM_REJECTED
                            );
                        }
                    }
                    Err(e) => println!(
                        "{}{}: its partition could not be built: {e}",
                        report::SVM,
                        report::SVM_REJECTED
                    ),
                }
                return;
            }
        };
        match verdict {
            Ok(()) => println!("{}{}", report::SVM, report::SVM_ACCEPTED),
            Err(r) => println!("{}{}: {r}", report::SVM, report::SVM_REJECTED),
        }
    }

    #[cfg(feature = "selftest")]
    fn run_selftests_after_probes(bootargs: &str, selection: Option<&str>) -> Tally {
        let mut probe_failures = 0;
        if let Some(v) = pefbox::bootargs::bootarg(bootargs, "hcall-probe") {
            if let Err(e) = selftest::target::run_probes(v) {
                println!("{}", report::Fail("hcall-probe", e));
                probe_failures = 1;
            }
        }
        let mut tally = run_selftests(selection);
        tally.failed += probe_failures;
        tally
    }

    #[cfg(feature = "selftest")]
    fn run_selftests(selection: Option<&str>) -> Tally {
        let tests = selftest::target::TESTS;
        for name in selftest::unknown_names(selection, tests) {
            println!("selftest: no test named {name:?}");
        }
        let mut tally = Tally::default();
        let bad = selftest::unknown_names(selection, tests).count() as u32;
        tally.failed += bad;
        for t in tests
            .iter()
            .filter(|t| selftest::selected(selection, t.name, t.default))
        {
            match (t.run)() {
                Ok(()) => {
                    tally.passed += 1;
                    println!("{}", report::Pass(t.name));
                }
                Err(why) => {
                    tally.failed += 1;
                    println!("{}", report::Fail(t.name, why));
                }
            }
        }
        tally
    }

    fn power_off(verdict: &str) -> ! {
        shutdown_tpm();
        println!("{}", report::PowerOff(verdict));
        opal::power_off()
    }

    /// `TPM2_Shutdown(TPM_SU_CLEAR)` over the link, as a platform does before it powers off:
    /// without it the next TPM startup is not orderly (and a TPM counts that against its
    /// dictionary-attack protection).
    fn shutdown_tpm() {
        use pefbox::tpm::{consts::su, wire, Transport};
        let mut rsp = [0u8; 64];
        let r =
            pefbox::target::hv::HV.with_link(|l| l.transact(&wire::shutdown(su::CLEAR), &mut rsp));
        let rc = wire::code(&rsp).unwrap_or(u32::MAX);
        match r {
            None if pefbox::target::hv::HV.is_busy() => println!(
                "hv: TPM2_Shutdown(CLEAR) not sent: the hypervisor was stopped inside a call, holding the link"
            ),
            None => {}
            Some(Ok(10)) if rc == wire::RC_SUCCESS => println!("hv: TPM2_Shutdown(CLEAR) done"),
            Some(Ok(_)) => println!("hv: TPM2_Shutdown(CLEAR) refused: rc {rc:#x}"),
            Some(Err(e)) => println!("hv: TPM2_Shutdown(CLEAR) failed: {e}"),
        }
    }

    /// The `sc 1` entry's call into Rust: boot/vectors.S saves the caller's registers in an
    /// [`arch::HcallFrame`] on the hypervisor stack and calls this with r3 = its address.
    /// [`dispatch`] sets r3 (status) and r4..r12 (outputs) in it; the assembly restores
    /// everything from the frame and returns to the caller.
    ///
    /// # Safety
    ///
    /// `frame` must point to a whole, 16-byte aligned `HcallFrame` that nothing else reads or
    /// writes until this returns. Only `pefbox_hcall_entry` calls it, with the frame it just
    /// filled at `%r1 + HF_GPR` on the hypervisor's own stack (one hardware thread makes
    /// hcalls, and interrupts are off, so the stack is not re-entered while the frame lives).
    #[no_mangle]
    unsafe extern "C" fn pefbox_hcall_dispatch(frame: *mut arch::HcallFrame) {
        // SAFETY: the caller's contract (`# Safety`): valid, aligned, exclusively ours for the
        // call; every bit pattern is a valid HcallFrame (integers and byte arrays only).
        let frame = unsafe { &mut *frame };
        dispatch(frame);
    }

    /// Every hcall the ultravisor makes is reflected into the hypervisor partition, which
    /// answers it (`target::hvp`); its return goes into r3..r12.
    fn dispatch(frame: &mut arch::HcallFrame) {
        #[cfg(feature = "selftest")]
        if frame.nr() == selftest::target::H_PEFBOX_UV_NULL {
            let args = frame.args();
            frame.set_return(&Ok(args));
            return;
        }
        let caller = pefbox::target::hv::caller();
        let r = pefbox::target::hvp::call(caller, frame.nr(), frame.args());
        frame.set_return(&r);
    }

    /// The hypervisor partition's call into Rust: its vector (boot/partition.S) builds the
    /// reflected call on the partition's own stack and calls this with its address.
    ///
    /// # Safety
    ///
    /// `call` must point to a whole `HvCall` that nothing else touches until this returns:
    /// only `pefbox_hv_vector` calls it, with the one it just built on its stack.
    #[no_mangle]
    unsafe extern "C" fn pefbox_hv_service(call: *mut pefbox::target::hvp::HvCall) {
        // SAFETY: the caller's contract (`# Safety`); every bit pattern is a valid HvCall.
        let call = unsafe { &mut *call };
        pefbox::target::hv::service(call);
    }

    /// Called by boot/vectors.S for any interrupt the image does not expect.
    #[no_mangle]
    extern "C" fn pefbox_unexpected_exception(
        vector: u64,
        srr0: u64,
        srr1: u64,
        hsrr0: u64,
        hsrr1: u64,
        dar: u64,
        dsisr: u64,
        hdar: u64,
    ) -> ! {
        if DYING.swap(true, Ordering::SeqCst) {
            opal::power_off();
        }
        console::print_unlocked(format_args!(
            "\nunexpected interrupt vector {vector:#x}: SRR0 {srr0:#018x} SRR1 {srr1:#018x} \
             HSRR0 {hsrr0:#018x} HSRR1 {hsrr1:#018x}\n"
        ));
        if matches!(vector, 0x300 | 0x380 | 0x600) {
            console::print_unlocked(format_args!("  DAR {dar:#018x} DSISR {dsisr:#010x}\n"));
        }
        if vector == 0xE00 {
            console::print_unlocked(format_args!("  HDAR {hdar:#018x}\n"));
        }
        console::print_unlocked(format_args!("{}\n", report::PowerOff("fatal")));
        opal::power_off()
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        if DYING.swap(true, Ordering::SeqCst) {
            opal::power_off();
        }
        match info.location() {
            Some(l) => console::print_unlocked(format_args!(
                "\npanicked at {}:{}: {}\n",
                l.file(),
                l.line(),
                info.message()
            )),
            None => console::print_unlocked(format_args!("\npanicked: {}\n", info.message())),
        }
        console::print_unlocked(format_args!("{}\n", report::PowerOff("panic")));
        opal::power_off()
    }

    /// The prebuilt `core` references this even with panic=abort; it is never called.
    #[no_mangle]
    extern "C" fn rust_eh_personality() {}

    /// The prebuilt `alloc` references this even with panic=abort; unwinding never happens.
    #[no_mangle]
    extern "C" fn _Unwind_Resume() -> ! {
        opal::power_off()
    }
}
