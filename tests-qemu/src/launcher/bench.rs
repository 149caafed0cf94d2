//! Tables over many boots: the summary, per-command relay timings and TPM phases.

use std::collections::BTreeMap;
use std::time::Duration;

use super::RunReport;

/// The median of a list (the lower middle for an even count); `None` if empty.
pub fn median<T: Ord + Copy>(values: &[T]) -> Option<T> {
    let mut v = values.to_vec();
    v.sort_unstable();
    v.get(v.len().checked_sub(1)? / 2).copied()
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// The end-of-run summary table, one row per boot.
pub fn summary_table(reports: &[RunReport]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<20} {:<18} {:>7} {:>6} {:>6} {:<12} {:>9} {:>9} {:>8} {:>10}\n",
        "scenario",
        "qemu/machine",
        "verdict",
        "passed",
        "failed",
        "svm",
        "banner_ms",
        "boot_ms",
        "tpm_cmds",
        "swtpm_ms"
    ));
    for r in reports {
        let (p, f) = r
            .verdict
            .summary
            .counts
            .map(|(p, f)| (p.to_string(), f.to_string()))
            .unwrap_or_else(|| ("-".into(), "-".into()));
        let svm = r
            .verdict
            .summary
            .svm
            .first()
            .map(|s| match s {
                crate::verdict::SvmResult::Accepted => "accepted".to_string(),
                crate::verdict::SvmResult::Rejected(_) => "rejected".to_string(),
                crate::verdict::SvmResult::None => "none".to_string(),
            })
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{:<20} {:<18} {:>7} {:>6} {:>6} {:<12} {:>9} {:>9} {:>8} {:>10}\n",
            r.scenario,
            format!("{}/{}", r.qemu.version, r.machine),
            if r.passed() { "PASS" } else { "FAIL" },
            p,
            f,
            svm,
            r.to_banner.map(ms).unwrap_or_else(|| "-".into()),
            ms(r.wall),
            r.relay.records.len(),
            format!("{:.2}", r.swtpm_time().as_secs_f64() * 1000.0),
        ));
    }
    for r in reports.iter().filter(|r| !r.passed()) {
        out.push_str(&format!("{}: FAIL\n", r.scenario));
        for p in &r.verdict.problems {
            out.push_str(&format!("  - {p}\n"));
        }
        if let Some(log) = &r.console_log {
            out.push_str(&format!(
                "  whole console (skiboot included): {}\n",
                log.display()
            ));
        }
    }
    out
}

/// Relay timings of one TPM command code over many boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommandTimes {
    /// Answered commands.
    pub count: usize,
    /// Median swtpm-side time.
    pub median_swtpm: Duration,
    /// Largest swtpm-side time.
    pub max_swtpm: Duration,
    /// Median time for the command's bytes to cross the TPM link into the relay.
    pub median_receive: Duration,
}

/// Relay timings aggregated per TPM command code.
pub fn per_command(reports: &[RunReport]) -> BTreeMap<u32, CommandTimes> {
    let mut by: BTreeMap<u32, (Vec<Duration>, Vec<Duration>)> = BTreeMap::new();
    for r in reports {
        for rec in &r.relay.records {
            if let Some(resp) = rec.response {
                let e = by.entry(rec.command_code).or_default();
                e.0.push(resp.swtpm_time);
                e.1.push(rec.receive_time);
            }
        }
    }
    by.into_iter()
        .map(|(code, (t, rx))| {
            let times = CommandTimes {
                count: t.len(),
                median_swtpm: median(&t).unwrap_or_default(),
                max_swtpm: t.iter().copied().max().unwrap_or_default(),
                median_receive: median(&rx).unwrap_or_default(),
            };
            (code, times)
        })
        .collect()
}

/// swtpm-side time of the image's TPM work, split by phase (see [`tpm_phases`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PhaseTimes {
    /// Provisioning: every command before the ultravisor's session (count, swtpm time).
    pub provision: (usize, Duration),
    /// The ultravisor's session: ReadPublic/NV_ReadPublic of the pinned keys +
    /// StartAuthSession.
    pub session: (usize, Duration),
    /// The unwrap: from its PolicyCommandCode to RSA_Decrypt.
    pub unwrap: (usize, Duration),
}

/// Splits a boot's relay records by phase, by the command sequence the image contract fixes:
/// the unwrap is the first `RSA_Decrypt` and what the ultravisor sends right before it for
/// it (walking back to its `PolicyCommandCode`, at most six commands: the policy commands,
/// the one-shot HMAC session's salt-key `ReadPublic` and `StartAuthSession`,
/// `PolicySecret`); the session is the
/// `StartAuthSession` and the `ReadPublic`/`NV_ReadPublic` of the pinned keys right before
/// those; every earlier command is provisioning. `None` if the boot issued no `RSA_Decrypt`.
pub fn tpm_phases(records: &[crate::relay::RelayRecord]) -> Option<PhaseTimes> {
    use pefbox::tpm::consts::cc;
    let decrypt = records
        .iter()
        .position(|r| r.command_code == cc::RSA_DECRYPT)?;
    let unwrap_cmds = [
        cc::POLICY_COMMAND_CODE,
        cc::POLICY_AUTH_VALUE,
        cc::POLICY_OR,
        cc::POLICY_SECRET,
        cc::START_AUTH_SESSION,
        cc::READ_PUBLIC,
    ];
    // The hypervisor's own swap commands around each session-using command belong to the
    // phase they sit in.
    let swap = |c: u32| matches!(c, cc::CONTEXT_LOAD | cc::CONTEXT_SAVE | cc::FLUSH_CONTEXT);
    let code = |i: usize| records.get(i).map(|r| r.command_code);
    // Back to the PolicyCommandCode that opens the unwrap, if it is within reach.
    let mut unwrap_start = decrypt;
    for back in 1..=24 {
        let Some(i) = decrypt.checked_sub(back) else {
            break;
        };
        match code(i) {
            Some(c) if c == cc::POLICY_COMMAND_CODE => {
                unwrap_start = i;
                break;
            }
            Some(c) if unwrap_cmds.contains(&c) || swap(c) => {}
            _ => break,
        }
    }
    // The session that opens the unwrap's first command (the ultravisor's boot session) is
    // loaded just before it.
    while unwrap_start > 0 && code(unwrap_start - 1) == Some(cc::CONTEXT_LOAD) {
        unwrap_start -= 1;
    }
    let mut session_start = unwrap_start;
    while session_start > 0 && code(session_start - 1).is_some_and(swap) {
        session_start -= 1;
    }
    if session_start > 0 && code(session_start - 1) == Some(cc::START_AUTH_SESSION) {
        session_start -= 1;
        while session_start > 0
            && matches!(code(session_start - 1), Some(c) if c == cc::READ_PUBLIC || c == cc::NV_READ_PUBLIC)
        {
            session_start -= 1;
        }
    } else {
        session_start = unwrap_start;
    }
    let sum = |rs: &[crate::relay::RelayRecord]| {
        (
            rs.len(),
            rs.iter()
                .filter_map(|r| r.response.map(|x| x.swtpm_time))
                .sum(),
        )
    };
    Some(PhaseTimes {
        provision: sum(records.get(..session_start).unwrap_or_default()),
        session: sum(records.get(session_start..unwrap_start).unwrap_or_default()),
        unwrap: sum(records.get(unwrap_start..=decrypt).unwrap_or_default()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(code: u32, us: u64) -> crate::relay::RelayRecord {
        crate::relay::RelayRecord {
            command_code: code,
            command_size: 10,
            receive_time: Duration::ZERO,
            response: Some(crate::relay::ResponseInfo {
                size: 10,
                code: 0,
                swtpm_time: Duration::from_micros(us),
            }),
        }
    }

    /// One record per command code, the i-th taking 2^i us in swtpm, so any sum of them
    /// names exactly which records it added up.
    fn doubling(codes: &[u32]) -> Vec<crate::relay::RelayRecord> {
        codes
            .iter()
            .enumerate()
            .map(|(i, &c)| rec(c, 1 << i))
            .collect()
    }

    /// (commands, swtpm microseconds) of provisioning, session and unwrap.
    fn phases(records: &[crate::relay::RelayRecord]) -> [(usize, u128); 3] {
        let p = tpm_phases(records).unwrap();
        [p.provision, p.session, p.unwrap].map(|(n, t)| (n, t.as_micros()))
    }

    #[test]
    fn tpm_phases_split_provisioning_session_and_unwrap() {
        use pefbox::tpm::consts::cc;
        let records = doubling(&[
            cc::PCR_READ,
            cc::READ_PUBLIC,
            cc::POLICY_COMMAND_CODE,
            cc::POLICY_OR,
            cc::PCR_EXTEND,
            cc::READ_PUBLIC,
            cc::START_AUTH_SESSION,
            cc::POLICY_COMMAND_CODE,
            cc::POLICY_AUTH_VALUE,
            cc::POLICY_OR,
            cc::RSA_DECRYPT,
            cc::GET_RANDOM,
        ]);
        assert_eq!(phases(&records), [(5, 31), (2, 96), (4, 1920)]);
        assert_eq!(tpm_phases(&records[..5]), None);
        // RSA_Decrypt first: no session, no provisioning.
        let p = tpm_phases(&records[10..]).unwrap();
        assert_eq!((p.provision.0, p.session.0, p.unwrap.0), (0, 0, 1));
        // Today's sequence: the door closed, the pinned keys read, the boot session, then an
        // unwrap with a one-shot HMAC session for PolicySecret (its StartAuthSession is the
        // unwrap's).
        let boot = [
            cc::PCR_EXTEND,
            cc::READ_PUBLIC,
            cc::READ_PUBLIC,
            cc::NV_READ_PUBLIC,
            cc::START_AUTH_SESSION,
        ];
        let records = doubling(
            &[
                &boot[..],
                &[
                    cc::POLICY_COMMAND_CODE,
                    cc::READ_PUBLIC,
                    cc::START_AUTH_SESSION,
                    cc::POLICY_SECRET,
                    cc::RSA_DECRYPT,
                ],
            ]
            .concat(),
        );
        assert_eq!(phases(&records), [(1, 1), (4, 30), (5, 992)]);
        // With the resource manager swapping sessions: each session-using command is wrapped
        // in the hypervisor's ContextLoad and ContextSave, each new session followed by one.
        let (ld, sv) = (cc::CONTEXT_LOAD, cc::CONTEXT_SAVE);
        let records = doubling(
            &[
                &boot[..],
                &[
                    sv,
                    ld,
                    cc::POLICY_COMMAND_CODE,
                    sv,
                    cc::READ_PUBLIC,
                    cc::START_AUTH_SESSION,
                    sv,
                    ld,
                    ld,
                    cc::POLICY_SECRET,
                    sv,
                    ld,
                    cc::RSA_DECRYPT,
                ],
            ]
            .concat(),
        );
        assert_eq!(phases(&records), [(1, 1), (5, 62), (12, 262080)]);
    }

    #[test]
    fn median_is_the_lower_middle() {
        assert_eq!(median::<u32>(&[]), None);
        assert_eq!(median(&[5]), Some(5));
        assert_eq!(median(&[9, 1, 5]), Some(5));
        assert_eq!(median(&[4, 1, 3, 2]), Some(2));
    }
}
