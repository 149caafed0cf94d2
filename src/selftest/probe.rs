//! The `hcall-probe=` bootargs option: a list of H_TPM_COMM argument sets for the
//! in-image self-test to issue (found with [`crate::bootargs::bootarg`]).
//!
//! Grammar (no spaces: bootargs are split on whitespace first):
//!
//! ```text
//! probes := probe (';' probe)*          at most MAX_PROBES; no empty probe
//! probe  := regs [',' as] | raw [',' as]
//! regs   := OP ',' IN ',' INSZ ',' OUT ',' OUTSZ
//! raw    := 'cmd=' HEX                  EXECUTE of these bytes: IN = OUT = buf, INSZ = their
//!                                       length, OUTSZ = 4096
//! as     := 'as=' number                where the hcall is issued from: a partition of its own
//!                                       with this LPID (1..=254; default 1, an SVM's), which
//!                                       executes the `sc 1` itself, or 0: the host, in
//!                                       hypervisor state (see `selftest::target::run_probes`)
//! OP, INSZ, OUTSZ := number
//! IN, OUT         := number | 'buf' | 'buf+' number
//! number := decimal digits | ('0x' | '0X') hex digits   (full u64 range; no sign, no '_')
//! HEX    := pairs of hex digits (either case), 10 to 4096 bytes (a TPM header at least)
//! ```
//!
//! `buf+N` is an offset into a 4 KiB buffer in the caller's memory; the glue turns
//! it into an address with [`Arg::resolve`]. Parsing never panics; each failure
//! says which probe and which field, and why. A `cmd=` probe's bytes are kept as the
//! validated hex text ([`Probe::cmd`]) and decoded into the probe buffer by
//! [`decode_hex`] when it runs, so the parsed list stays small.
#![forbid(unsafe_code)]

use crate::bootargs::{number, NumError};

/// Most probes one option may list.
pub const MAX_PROBES: usize = 32;

/// The partition a probe without `as=` is issued from: an SVM's (LPID 1).
pub const DEFAULT_LPID: u32 = 1;

/// An address argument: absolute, or relative to the caller's probe buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg {
    /// This guest-physical address.
    Abs(u64),
    /// This offset from the start of the caller's 4 KiB probe buffer.
    Buf(u64),
}

impl Arg {
    /// The address this argument names, given the probe buffer's address;
    /// `None` if `buf + offset` overflows u64.
    pub const fn resolve(self, buf: u64) -> Option<u64> {
        match self {
            Arg::Abs(a) => Some(a),
            Arg::Buf(off) => buf.checked_add(off),
        }
    }
}

/// Most bytes a `cmd=` probe may carry (H_TPM_COMM's in_size limit).
pub const MAX_CMD_BYTES: usize = 4096;

/// One H_TPM_COMM call: r4..r8, the partition it is issued as, and for a `cmd=` probe the
/// command's hex text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe<'a> {
    /// r4: operation.
    pub op: u64,
    /// r5: in_buffer.
    pub inp: Arg,
    /// r6: in_size.
    pub in_size: u64,
    /// r7: out_buffer.
    pub out: Arg,
    /// r8: out_size.
    pub out_size: u64,
    /// Where the hcall is issued from (`as=`; default [`DEFAULT_LPID`]): a partition's LPID,
    /// or 0 for the host.
    pub lpid: u32,
    /// `cmd=`: the command as validated hex (an even number of hex digits, 10..=4096 bytes),
    /// to put in the probe buffer; `None`: the buffer holds TPM2_GetRandom(16).
    pub cmd: Option<&'a str>,
}

/// The parsed probes, in order.
pub type Probes<'a> = heapless::Vec<Probe<'a>, MAX_PROBES>;

/// A field of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// OP.
    Op,
    /// IN.
    In,
    /// INSZ.
    InSize,
    /// OUT.
    Out,
    /// OUTSZ.
    OutSize,
    /// `cmd=`.
    Cmd,
    /// `as=`.
    As,
}

/// What is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeErrorKind {
    /// The probe is empty (`;;`, a leading or trailing `;`, or an empty option).
    EmptyProbe,
    /// The probe has this many comma-separated fields, not 5.
    FieldCount(usize),
    /// This field is empty.
    EmptyField(Field),
    /// This field's number does not fit in u64.
    Overflow(Field),
    /// This field is not a number (nor `buf`/`buf+N` where allowed).
    Junk(Field),
    /// `buf` was given for a field that is not an address (OP, INSZ, OUTSZ).
    BufNotAllowed(Field),
    /// More than [`MAX_PROBES`] probes.
    TooMany,
    /// `cmd=` has an odd number of hex digits.
    OddHex,
    /// `cmd=` holds fewer than 10 bytes (no room for a TPM header).
    CmdTooShort,
    /// `cmd=` holds more than [`MAX_CMD_BYTES`].
    CmdTooLong,
    /// The sixth field (or a `cmd=` probe's second) is not `as=N`.
    NotAs,
}

/// A parse failure: which probe (0-based) and what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeError {
    /// Index of the offending probe.
    pub probe: usize,
    /// What is wrong with it.
    pub kind: ProbeErrorKind,
}

impl core::fmt::Display for Field {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Field::Op => "OP",
            Field::In => "IN",
            Field::InSize => "INSZ",
            Field::Out => "OUT",
            Field::OutSize => "OUTSZ",
            Field::Cmd => "cmd",
            Field::As => "as",
        })
    }
}

impl core::fmt::Display for ProbeError {
    /// `probe N: <what>` with N 1-based, as a user counts them.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "probe {}: ", self.probe + 1)?;
        match self.kind {
            ProbeErrorKind::EmptyProbe => f.write_str("empty probe"),
            ProbeErrorKind::FieldCount(n) => write!(
                f,
                "{n} fields, expected 5 (OP,IN,INSZ,OUT,OUTSZ) or cmd=HEX, each optionally ,as=N"
            ),
            ProbeErrorKind::EmptyField(x) => write!(f, "{x} is empty"),
            ProbeErrorKind::Overflow(x) => write!(f, "{x} does not fit in 64 bits"),
            ProbeErrorKind::Junk(x) => write!(f, "{x} is not a number (decimal or 0x hex)"),
            ProbeErrorKind::BufNotAllowed(x) => write!(f, "{x} cannot be buf (only IN and OUT)"),
            ProbeErrorKind::TooMany => write!(f, "more than {MAX_PROBES} probes"),
            ProbeErrorKind::OddHex => f.write_str("cmd has an odd number of hex digits"),
            ProbeErrorKind::CmdTooShort => {
                f.write_str("cmd is shorter than a TPM header (10 bytes)")
            }
            ProbeErrorKind::CmdTooLong => write!(f, "cmd is longer than {MAX_CMD_BYTES} bytes"),
            ProbeErrorKind::NotAs => f.write_str("expected as=N after the probe"),
        }
    }
}

fn field_error(f: Field, e: NumError) -> ProbeErrorKind {
    match e {
        NumError::Empty => ProbeErrorKind::EmptyField(f),
        NumError::Overflow => ProbeErrorKind::Overflow(f),
        NumError::Junk => ProbeErrorKind::Junk(f),
    }
}

fn num_field(s: &str, f: Field) -> Result<u64, ProbeErrorKind> {
    if s.starts_with("buf") {
        return Err(ProbeErrorKind::BufNotAllowed(f));
    }
    number(s).map_err(|e| field_error(f, e))
}

fn arg_field(s: &str, f: Field) -> Result<Arg, ProbeErrorKind> {
    if s == "buf" {
        return Ok(Arg::Buf(0));
    }
    if let Some(off) = s.strip_prefix("buf+") {
        // An empty offset ("buf+") is junk, not an empty field.
        return match number(off) {
            Ok(n) => Ok(Arg::Buf(n)),
            Err(NumError::Empty) => Err(ProbeErrorKind::Junk(f)),
            Err(e) => Err(field_error(f, e)),
        };
    }
    number(s).map(Arg::Abs).map_err(|e| field_error(f, e))
}

fn as_field(s: &str) -> Result<u32, ProbeErrorKind> {
    let v = s.strip_prefix("as=").ok_or(ProbeErrorKind::NotAs)?;
    let n = number(v).map_err(|e| field_error(Field::As, e))?;
    u32::try_from(n).map_err(|_| ProbeErrorKind::Overflow(Field::As))
}

fn cmd_field(hex: &str) -> Result<&str, ProbeErrorKind> {
    if hex.is_empty() {
        return Err(ProbeErrorKind::EmptyField(Field::Cmd));
    }
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ProbeErrorKind::Junk(Field::Cmd));
    }
    if !hex.len().is_multiple_of(2) {
        return Err(ProbeErrorKind::OddHex);
    }
    match hex.len() / 2 {
        n if n < 10 => Err(ProbeErrorKind::CmdTooShort),
        n if n > MAX_CMD_BYTES => Err(ProbeErrorKind::CmdTooLong),
        _ => Ok(hex),
    }
}

fn probe(s: &str) -> Result<Probe<'_>, ProbeErrorKind> {
    if s.is_empty() {
        return Err(ProbeErrorKind::EmptyProbe);
    }
    let mut parts: [&str; 6] = [""; 6];
    let mut count = 0usize;
    for p in s.split(',') {
        if let Some(slot) = parts.get_mut(count) {
            *slot = p;
        }
        count = count.saturating_add(1);
    }
    if let Some(hex) = parts[0].strip_prefix("cmd=") {
        let lpid = match count {
            1 => DEFAULT_LPID,
            2 => as_field(parts[1])?,
            n => return Err(ProbeErrorKind::FieldCount(n)),
        };
        let hex = cmd_field(hex)?;
        return Ok(Probe {
            op: 1,
            inp: Arg::Buf(0),
            in_size: (hex.len() / 2) as u64,
            out: Arg::Buf(0),
            out_size: 4096,
            lpid,
            cmd: Some(hex),
        });
    }
    let lpid = match count {
        5 => DEFAULT_LPID,
        6 => as_field(parts[5])?,
        n => return Err(ProbeErrorKind::FieldCount(n)),
    };
    let [op, inp, in_size, out, out_size, _] = parts;
    Ok(Probe {
        op: num_field(op, Field::Op)?,
        inp: arg_field(inp, Field::In)?,
        in_size: num_field(in_size, Field::InSize)?,
        out: arg_field(out, Field::Out)?,
        out_size: num_field(out_size, Field::OutSize)?,
        lpid,
        cmd: None,
    })
}

/// Parses the value of `hcall-probe=` (without the key).
pub fn parse(value: &str) -> Result<Probes<'_>, ProbeError> {
    let mut out = Probes::new();
    for (i, p) in value.split(';').enumerate() {
        let pr = probe(p).map_err(|kind| ProbeError { probe: i, kind })?;
        out.push(pr).map_err(|_| ProbeError {
            probe: i,
            kind: ProbeErrorKind::TooMany,
        })?;
    }
    Ok(out)
}

/// Decodes hex text into `out`; the number of bytes, or `None` if the text has an odd
/// length, a non-hex character, or does not fit.
pub fn decode_hex(hex: &str, out: &mut [u8]) -> Option<usize> {
    let b = hex.as_bytes();
    if !b.len().is_multiple_of(2) || b.len() / 2 > out.len() {
        return None;
    }
    for (dst, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        let hi = char::from(*pair.first()?).to_digit(16)?;
        let lo = char::from(*pair.get(1)?).to_digit(16)?;
        *dst = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(b.len() / 2)
}

/// A TPM response code as a probe line names it: `TPM_RC_SUCCESS`, the specification's
/// name (`TPM_RC_COMMAND_CODE`), with `, resource manager` when the code carries the
/// resource-manager layer (0x000B0000: the hypervisor answered, not the TPM), or `unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RcName(pub u32);

impl core::fmt::Display for RcName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (layer, base) = (self.0 >> 16, self.0 & 0xFFFF);
        let name = match base {
            0 => Some("TPM_RC_SUCCESS"),
            b => crate::tpm::rc::ResponseCode(b).name(),
        };
        match (name, layer) {
            (Some(n), 0) => f.write_str(n),
            (Some(n), 0xB) => write!(f, "{n}, resource manager"),
            _ => f.write_str("unknown"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(probe: usize, kind: ProbeErrorKind) -> Result<Probes<'static>, ProbeError> {
        Err(ProbeError { probe, kind })
    }

    /// The probe `op,inp,in_size,out,out_size` as issued from partition `lpid`.
    fn probe(
        (op, inp, in_size, out, out_size): (u64, Arg, u64, Arg, u64),
        lpid: u32,
        cmd: Option<&'static str>,
    ) -> Probe<'static> {
        Probe {
            op,
            inp,
            in_size,
            out,
            out_size,
            lpid,
            cmd,
        }
    }

    #[test]
    fn parses_numbers_buf_and_the_full_u64_range() {
        let p = parse("1,buf,12,buf+0x100,4096;2,0x2000000,0,18446744073709551615,0xFFFFFFFFFFFFFFFF;0X10,buf+8,010,0,0")
            .unwrap();
        assert_eq!(p.len(), 3);
        let first = (1, Arg::Buf(0), 12, Arg::Buf(0x100), 4096);
        assert_eq!(p[0], probe(first, DEFAULT_LPID, None));
        let second = (2, Arg::Abs(0x200_0000), 0, Arg::Abs(u64::MAX), u64::MAX);
        assert_eq!(p[1], probe(second, DEFAULT_LPID, None));
        assert_eq!((p[2].op, p[2].inp, p[2].in_size), (16, Arg::Buf(8), 10));
    }

    #[test]
    fn rejects_overflow_empty_and_junk_with_the_field() {
        use Field::*;
        use ProbeErrorKind::*;
        for (probe, want) in [
            (
                "1,buf,18446744073709551616,buf,4096",
                err(0, Overflow(InSize)),
            ),
            ("1,buf,1,0x10000000000000000,4096", err(0, Overflow(Out))),
            ("1,buf+0x1FFFFFFFFFFFFFFFF,1,buf,1", err(0, Overflow(In))),
            ("1,buf,12,buf,4096;,buf,1,buf,1", err(1, EmptyField(Op))),
            ("1,,12,buf,4096", err(0, EmptyField(In))),
            ("1,buf,12,buf,", err(0, EmptyField(OutSize))),
            ("0x,buf,12,buf,1", err(0, Junk(Op))),
            ("-1,buf,12,buf,1", err(0, Junk(Op))),
            ("1,buf+,12,buf,1", err(0, Junk(In))),
            ("1,bu,12,buf,1", err(0, Junk(In))),
            ("1,buf-4,12,buf,1", err(0, Junk(In))),
            ("1,buf,1_0,buf,1", err(0, Junk(InSize))),
            ("1,buf,12,0xG,1", err(0, Junk(Out))),
            ("1,buf,12,buf,4096é", err(0, Junk(OutSize))),
            ("buf,buf,12,buf,1", err(0, BufNotAllowed(Op))),
            ("1,buf,buf,buf,1", err(0, BufNotAllowed(InSize))),
            ("1,buf,1,buf,buf+1", err(0, BufNotAllowed(OutSize))),
        ] {
            assert_eq!(parse(probe), want, "{probe}");
        }
    }

    #[test]
    fn rejects_bad_shapes() {
        use ProbeErrorKind::*;
        for (probe, want) in [
            ("", err(0, EmptyProbe)),
            ("1,buf,12,buf,4096;", err(1, EmptyProbe)),
            (";1,buf,12,buf,4096", err(0, EmptyProbe)),
        ] {
            assert_eq!(parse(probe), want, "{probe}");
        }
        assert_eq!(parse("1,buf,12,buf"), err(0, FieldCount(4)));
        assert_eq!(parse("1,buf,12,buf,4096,5"), err(0, NotAs));
        assert_eq!(parse("1,buf,12,buf,4096,as=1,x"), err(0, FieldCount(7)));
        assert_eq!(parse("1"), err(0, FieldCount(1)));
        assert_eq!(parse(",,,,,,,,,,,,"), err(0, FieldCount(13)));
        let mut many = String::new();
        for i in 0..MAX_PROBES {
            if i > 0 {
                many.push(';');
            }
            many.push_str("1,buf,12,buf,4096");
        }
        assert_eq!(parse(&many).map(|p| p.len()), Ok(MAX_PROBES));
        many.push_str(";1,buf,12,buf,4096");
        assert_eq!(parse(&many), err(MAX_PROBES, TooMany));
    }

    #[test]
    fn cmd_and_as_probes() {
        use Field::*;
        use ProbeErrorKind::*;
        let p = parse(
            "cmd=80010000000c0000017b0010,as=1;cmd=80010000000A0000017A;1,buf,12,buf,4096,as=0x2",
        )
        .unwrap();
        let buf = (1, Arg::Buf(0), 12, Arg::Buf(0), 4096);
        assert_eq!(p[0], probe(buf, 1, Some("80010000000c0000017b0010")));
        assert_eq!((p[1].lpid, p[1].in_size), (DEFAULT_LPID, 10));
        assert_eq!((p[2].lpid, p[2].cmd), (2, None));
        let mut b = [0u8; 16];
        assert_eq!(decode_hex(p[0].cmd.unwrap(), &mut b), Some(12));
        assert_eq!(b[..12], [0x80, 1, 0, 0, 0, 12, 0, 0, 1, 0x7b, 0, 0x10]);
        assert_eq!(decode_hex("abc", &mut b), None);
        assert_eq!(decode_hex("zz", &mut b), None);
        assert_eq!(decode_hex(&"00".repeat(17), &mut b), None);
        for (probe, want) in [
            ("cmd=", err(0, EmptyField(Cmd))),
            ("cmd=80010000000c0000017b001", err(0, OddHex)),
            ("cmd=80010000000c0000017b00g0", err(0, Junk(Cmd))),
            ("cmd=8001", err(0, CmdTooShort)),
        ] {
            assert_eq!(parse(probe), want, "{probe}");
        }
        assert_eq!(
            parse(&format!("cmd={}", "00".repeat(4097))),
            err(0, CmdTooLong)
        );
        assert!(parse(&format!("cmd={}", "00".repeat(4096))).is_ok());
        assert_eq!(parse("cmd=80010000000a0000017b,1"), err(0, NotAs));
        assert_eq!(
            parse("cmd=80010000000a0000017b,as=1,as=2"),
            err(0, FieldCount(3))
        );
        for (probe, want) in [
            ("cmd=80010000000a0000017b,as=", err(0, EmptyField(As))),
            (
                "cmd=80010000000a0000017b,as=4294967296",
                err(0, Overflow(As)),
            ),
            ("cmd=80010000000a0000017b,as=-1", err(0, Junk(As))),
            ("1,buf,12,buf,4096,as=x", err(0, Junk(As))),
        ] {
            assert_eq!(parse(probe), want, "{probe}");
        }
        assert_eq!(
            format!(
                "{}",
                ProbeError {
                    probe: 0,
                    kind: OddHex
                }
            ),
            "probe 1: cmd has an odd number of hex digits"
        );
    }

    #[test]
    fn rc_names() {
        assert_eq!(format!("{}", RcName(0)), "TPM_RC_SUCCESS");
        assert_eq!(format!("{}", RcName(0x143)), "TPM_RC_COMMAND_CODE");
        assert_eq!(
            format!("{}", RcName(0x000B_0143)),
            "TPM_RC_COMMAND_CODE, resource manager"
        );
        assert_eq!(
            format!("{}", RcName(0x000B_0902)),
            "TPM_RC_OBJECT_MEMORY, resource manager"
        );
        assert_eq!(format!("{}", RcName(0x0007_0143)), "unknown");
        assert_eq!(format!("{}", RcName(u32::MAX)), "unknown");
    }

    #[test]
    fn arbitrary_probe_text_never_panics() {
        let alphabet = b"0123456789abcdefxX,;=+bufcmdas-\xc3";
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            let mut s = String::new();
            let len = (x % 40) as usize;
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s.push(char::from(alphabet[(x % alphabet.len() as u64) as usize]));
            }
            x = x.wrapping_add(1);
            if let Ok(ps) = parse(&s) {
                for p in ps {
                    if let Some(h) = p.cmd {
                        let mut b = [0u8; MAX_CMD_BYTES];
                        assert_eq!(decode_hex(h, &mut b), Some(h.len() / 2));
                    }
                }
            };
        }
    }

    #[test]
    fn resolve_is_overflow_safe() {
        assert_eq!(Arg::Buf(0x10).resolve(0x1000), Some(0x1010));
        assert_eq!(Arg::Abs(7).resolve(0x1000), Some(7));
        assert_eq!(Arg::Buf(1).resolve(u64::MAX), None);
    }
}
