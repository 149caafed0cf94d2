//! The demo secure VM's payload: a tiny bare-metal big-endian 64-bit POWER program (Power ISA
//! 3.0), hand-assembled here from instruction encoders, that the ultravisor runs in the SVM's
//! partition (`MSR[HV]` = 0, real mode, `MSR[SF]` = 1, big-endian; the interrupts it takes go
//! to the ultravisor). [`demo_payload`] is the demo SVM's "kernel" ([`crate::svm::demo_svm`]).
//!
//! # The payload ABI (the contract the firmware implements)
//!
//! - **Entry**: at the payload's first byte. Registers at entry: r3 = the partition's LPID
//!   (1..=255, a small integer), r4 = guest-physical address of its ESM blob, r5 = the blob's
//!   length in bytes, r6 = guest-physical address of a 4 KiB scratch page it may write. Other
//!   registers are zero. No stack is set up.
//! - **Step 1, the ESM ultracall**: r3 = `UV_ESM` = 0xF110, r4 = blob address, r5 = blob length
//!   (as received), `sc 1`. On return r3 = 0 means accepted. (The ultravisor never resumes a
//!   rejected SVM, but if r3 != 0 the payload goes straight to the exit call with r4 = the
//!   status, printing nothing.)
//! - **Step 2** (only if accepted): prints exactly the line
//!   `svm-payload: running in partition <LPID>\n`, where `<LPID>` is r3-at-entry in decimal
//!   without leading zeros (e.g. `1`, `42`, `255`), through the ordinary PAPR hcall
//!   `H_PUT_TERM_CHAR` = 0x58: r3 = 0x58, r4 = 0 (terminal number), r5 = number of bytes in
//!   this chunk (1..=16), r6 = bytes 0..7 of the chunk and r7 = bytes 8..15, big-endian packed
//!   (byte 0 is the most significant byte of r6; unused trailing bytes zero), `sc 1`; repeated
//!   in chunks of at most 16 bytes until the whole line (newline included) is sent. If an
//!   `H_PUT_TERM_CHAR` returns r3 != 0, it stops printing and goes to the exit with r4 = that
//!   status.
//! - **Step 3, the exit**: r3 = `UV_SVM_TERMINATE` = 0xF13C, r4 = 0 (or the failing status),
//!   `sc 1`; then `b .` forever after it (the ultravisor never resumes it).
//!
//! What the payload relies on beyond that: each `sc 1` returns (when it returns) to the next
//! instruction with r14..r31 as they were (r3 holds the status; r0, r4..r12, CR, LR, CTR and
//! XER may be changed), and its own bytes are readable at the address it runs from. It never
//! reads the ESM blob and writes nothing but the scratch page's first 128 bytes.
//!
//! # How it does it
//!
//! The line is built in the scratch page: its first 64 bytes are zeroed (the longest line a
//! 64-bit LPID gives is 34 + 20 + 1 = 55 bytes, so every 16-byte chunk read lies in the zeroed
//! part and a partial last chunk reads zeros past the line), the constant text is copied from
//! the payload's own data section (found with `bcl 20,31,$+4` / `mflr`, so the program is
//! position-independent), the LPID's digits are produced least significant first downwards
//! from scratch + 128 and appended in order, then the newline. Chunks are loaded with `ld`.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

/// Length of [`demo_payload`]: one 4 KiB page (the program, its data, zero padding).
pub const PAYLOAD_LEN: usize = 4096;
/// The ultracall that asks the ultravisor to check the SVM's ESM blob.
pub const UV_ESM: u64 = pefbox::papr::UV_ESM;
/// The ultracall that ends the SVM.
pub const UV_SVM_TERMINATE: u64 = pefbox::papr::UV_SVM_TERMINATE;
/// The PAPR hcall that writes up to 16 bytes to a virtual terminal.
pub const H_PUT_TERM_CHAR: u64 = pefbox::papr::H_PUT_TERM_CHAR;
/// The constant text of the line the payload prints, before the LPID and the newline.
pub const BANNER: &str = pefbox::report::SVM_PAYLOAD_RUNNING;

/// Bytes of the scratch page the payload zeroes: the line buffer.
const LINE_BUF: i16 = 64;
/// Offset in the scratch page below which the LPID's digits are built (downwards).
const DIGITS_END: i16 = 128;
/// The longest line: the banner, a 20-digit LPID (`u64::MAX`), the newline.
const LONGEST_LINE: usize = BANNER.len() + 20 + 1;
// It and its zero padding fit the buffer, and the buffer lies below the digits.
const _: () = assert!(LONGEST_LINE <= LINE_BUF as usize);
const _: () = assert!(LINE_BUF + 20 <= DIGITS_END);

/// The encoders, one per instruction the payload uses (Power ISA 3.0 Book I). Registers are
/// GPR numbers 0..=31; branch displacements are in bytes, relative to the branch itself.
mod insn {
    fn gpr(r: u32) -> u32 {
        assert!(r < 32, "r{r} is not a GPR");
        r
    }

    /// D-form: `OPCD(0:5) RT/RS/BF-L(6:10) RA(11:15) D/SI/UI(16:31)`.
    fn d_form(opcd: u32, rt: u32, ra: u32, imm: u16) -> u32 {
        opcd << 26 | gpr(rt) << 21 | gpr(ra) << 16 | u32::from(imm)
    }

    /// DS-form: `OPCD RT/RS RA DS(16:29) XO(30:31)`; the displacement must be a multiple of 4.
    fn ds_form(opcd: u32, rt: u32, ds: i16, ra: u32, xo: u32) -> u32 {
        assert!(ds % 4 == 0, "DS displacement {ds} is not a multiple of 4");
        d_form(opcd, rt, ra, ds as u16) | xo
    }

    /// X-/XO-form with the extended opcode in bits 21:30 (OE = 0, Rc = 0).
    fn x_form(opcd: u32, rt: u32, ra: u32, rb: u32, xo: u32) -> u32 {
        opcd << 26 | gpr(rt) << 21 | gpr(ra) << 16 | gpr(rb) << 11 | xo << 1
    }

    /// `addi RT,RA,SI` (D-form, opcode 14): RT = (RA|0) + EXTS(SI).
    pub fn addi(rt: u32, ra: u32, si: i16) -> u32 {
        d_form(14, rt, ra, si as u16)
    }

    /// `li RT,SI` = `addi RT,0,SI` (D-form, opcode 14).
    pub fn li(rt: u32, si: i16) -> u32 {
        addi(rt, 0, si)
    }

    /// `ori RA,RS,UI` (D-form, opcode 24): RA = RS | UI.
    pub fn ori(ra: u32, rs: u32, ui: u16) -> u32 {
        d_form(24, rs, ra, ui)
    }

    /// `or RA,RS,RB` (X-form, opcode 31, XO 444, Rc = 0): RA = RS | RB.
    pub fn or(ra: u32, rs: u32, rb: u32) -> u32 {
        x_form(31, rs, ra, rb, 444)
    }

    /// `mr RA,RS` = `or RA,RS,RS` (X-form, opcode 31, XO 444).
    pub fn mr(ra: u32, rs: u32) -> u32 {
        or(ra, rs, rs)
    }

    /// `ld RT,DS(RA)` (DS-form, opcode 58, XO 0): RT = the doubleword at (RA|0) + EXTS(DS).
    pub fn ld(rt: u32, ds: i16, ra: u32) -> u32 {
        ds_form(58, rt, ds, ra, 0)
    }

    /// `std RS,DS(RA)` (DS-form, opcode 62, XO 0): the doubleword at (RA|0) + EXTS(DS) = RS.
    pub fn std(rs: u32, ds: i16, ra: u32) -> u32 {
        ds_form(62, rs, ds, ra, 0)
    }

    /// `lbz RT,D(RA)` (D-form, opcode 34): RT = the byte at (RA|0) + EXTS(D), zero-extended.
    pub fn lbz(rt: u32, d: i16, ra: u32) -> u32 {
        d_form(34, rt, ra, d as u16)
    }

    /// `stb RS,D(RA)` (D-form, opcode 38): the byte at (RA|0) + EXTS(D) = RS's low byte.
    pub fn stb(rs: u32, d: i16, ra: u32) -> u32 {
        d_form(38, rs, ra, d as u16)
    }

    /// `divdu RT,RA,RB` (XO-form, opcode 31, XO 457, OE = 0, Rc = 0): RT = RA / RB unsigned.
    pub fn divdu(rt: u32, ra: u32, rb: u32) -> u32 {
        x_form(31, rt, ra, rb, 457)
    }

    /// `mulli RT,RA,SI` (D-form, opcode 7): RT = low 64 bits of RA * EXTS(SI).
    pub fn mulli(rt: u32, ra: u32, si: i16) -> u32 {
        d_form(7, rt, ra, si as u16)
    }

    /// `subf RT,RA,RB` (XO-form, opcode 31, XO 40, OE = 0, Rc = 0): RT = RB - RA.
    pub fn subf(rt: u32, ra: u32, rb: u32) -> u32 {
        x_form(31, rt, ra, rb, 40)
    }

    /// `cmpdi RA,SI` = `cmpi 0,1,RA,SI` (D-form, opcode 11, BF = 0, L = 1): CR0 = signed
    /// compare of RA with EXTS(SI).
    pub fn cmpdi(ra: u32, si: i16) -> u32 {
        d_form(11, 1, ra, si as u16)
    }

    /// `cmpldi RA,UI` = `cmpli 0,1,RA,UI` (D-form, opcode 10, BF = 0, L = 1): CR0 = unsigned
    /// compare of RA with UI.
    pub fn cmpldi(ra: u32, ui: u16) -> u32 {
        d_form(10, 1, ra, ui)
    }

    /// `bc BO,BI,target` (B-form, opcode 16, AA = 0, LK = 0): `OPCD BO(6:10) BI(11:15)
    /// BD(16:29) AA LK`, the displacement `disp` a multiple of 4 in -32768..=32764.
    pub fn bc(bo: u32, bi: u32, disp: i32) -> u32 {
        assert!(bo < 32 && bi < 32, "BO {bo} / BI {bi} out of range");
        assert!(
            disp % 4 == 0 && (-0x8000..0x8000).contains(&disp),
            "bc displacement {disp} out of range"
        );
        16 << 26 | bo << 21 | bi << 16 | (disp as u32 & 0xfffc)
    }

    /// `bcl BO,BI,target` (B-form, opcode 16, AA = 0, LK = 1): as [`bc`], and LR = the next
    /// instruction's address.
    pub fn bcl(bo: u32, bi: u32, disp: i32) -> u32 {
        bc(bo, bi, disp) | 1
    }

    /// `bne target` = `bc 4,2,target` (branch if not `CR0[EQ]`).
    pub fn bne(disp: i32) -> u32 {
        bc(4, 2, disp)
    }

    /// `bge target` = `bc 4,0,target` (branch if not `CR0[LT]`).
    pub fn bge(disp: i32) -> u32 {
        bc(4, 0, disp)
    }

    /// `b target` (I-form, opcode 18, AA = 0, LK = 0): `OPCD LI(6:29) AA LK`, the
    /// displacement a multiple of 4 within +-32 MiB.
    pub fn b(disp: i32) -> u32 {
        assert!(
            disp % 4 == 0 && (-0x200_0000..0x200_0000).contains(&disp),
            "b displacement {disp} out of range"
        );
        18 << 26 | (disp as u32 & 0x03ff_fffc)
    }

    /// `mflr RT` = `mfspr RT,8` (XFX-form, opcode 31, XO 339; the SPR number's two 5-bit
    /// halves swapped in bits 11:20).
    pub fn mflr(rt: u32) -> u32 {
        const LR: u32 = 8;
        let spr = (LR & 0x1f) << 5 | LR >> 5;
        31 << 26 | gpr(rt) << 21 | spr << 11 | 339 << 1
    }

    /// `sc 1` (SC-form, opcode 17, LEV = 1 in bits 20:26, bit 30 = 1): the system call to the
    /// hypervisor level (here, the ultravisor).
    pub fn sc1() -> u32 {
        const LEV: u32 = 1;
        17 << 26 | LEV << 5 | 2
    }
}

use insn::*;

/// A two-pass assembler: the first pass records where the labels are, the second uses them.
struct Asm<'a> {
    words: Vec<u32>,
    labels: BTreeMap<&'static str, usize>,
    known: Option<&'a BTreeMap<&'static str, usize>>,
}

impl<'a> Asm<'a> {
    fn new(known: Option<&'a BTreeMap<&'static str, usize>>) -> Self {
        Asm {
            words: Vec::new(),
            labels: BTreeMap::new(),
            known,
        }
    }

    fn here(&self) -> usize {
        self.words.len() * 4
    }

    fn emit(&mut self, w: u32) {
        self.words.push(w);
    }

    fn label(&mut self, name: &'static str) {
        let at = self.here();
        assert!(self.labels.insert(name, at).is_none(), "label {name} twice");
    }

    fn addr(&self, name: &str) -> i64 {
        match self.known {
            Some(k) => *k.get(name).unwrap_or_else(|| panic!("no label {name}")) as i64,
            None => 0,
        }
    }

    /// The byte displacement from the instruction about to be emitted to `name`.
    fn to(&self, name: &str) -> i32 {
        match self.known {
            Some(_) => i32::try_from(self.addr(name) - self.here() as i64).unwrap(),
            None => 0,
        }
    }

    /// `to - from` between two labels, as a D-form immediate.
    fn between(&self, from: &str, to: &str) -> i16 {
        i16::try_from(self.addr(to) - self.addr(from)).unwrap()
    }
}

/// The payload before padding: its instructions, then its constant data.
struct Program {
    code: Vec<u32>,
    data: Vec<u8>,
}

impl Program {
    fn bytes(&self) -> Vec<u8> {
        let mut out: Vec<u8> = self.code.iter().flat_map(|w| w.to_be_bytes()).collect();
        out.extend_from_slice(&self.data);
        out
    }
}

// The registers the program keeps its state in: all in r14..r31, which survive an `sc 1`.
const LPID: u32 = 31;
const SCRATCH: u32 = 30;
const SRC: u32 = 29;
const DST: u32 = 28;
const COUNT: u32 = 27;
const VALUE: u32 = 26;
const TEN: u32 = 25;
const DIGIT_PTR: u32 = 24;
const BYTE: u32 = 23;
const CHUNK_LEN: u32 = 22;
const CHUNK_PTR: u32 = 21;
const LEFT: u32 = 20;
const QUOT: u32 = 19;
const TMP: u32 = 18;

/// A loop at `label` copying COUNT (> 0) bytes from `src` to DST, leaving both just past
/// what they copied and COUNT zero.
fn copy_bytes(a: &mut Asm<'_>, label: &'static str, src: u32) {
    a.label(label);
    a.emit(lbz(BYTE, 0, src));
    a.emit(stb(BYTE, 0, DST));
    a.emit(addi(src, src, 1));
    a.emit(addi(DST, DST, 1));
    a.emit(addi(COUNT, COUNT, -1));
    a.emit(cmpdi(COUNT, 0));
    a.emit(bne(a.to(label)));
}

/// Whether the program heeds the ESM answer ([`demo_payload`]) or ignores it
/// ([`defiant_payload`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Esm {
    Heeded,
    Ignored,
}

/// One pass of the program (see the module documentation for what it does).
fn program(a: &mut Asm<'_>, esm: Esm) {
    // Step 1: UV_ESM with the blob as received in r4/r5.
    a.emit(mr(LPID, 3));
    a.emit(mr(SCRATCH, 6));
    a.emit(li(3, 0));
    a.emit(ori(3, 3, UV_ESM as u16));
    a.emit(sc1());
    a.emit(cmpdi(3, 0));
    a.emit(match esm {
        Esm::Heeded => bne(a.to("fail")),
        Esm::Ignored => ori(0, 0, 0),
    });

    // SRC = the data section, found from this code's own address.
    a.emit(bcl(20, 31, 4));
    a.label("anchor");
    a.emit(mflr(SRC));
    a.emit(addi(SRC, SRC, a.between("anchor", "data")));

    // Zero the line buffer.
    a.emit(li(TMP, 0));
    for off in (0..LINE_BUF).step_by(8) {
        a.emit(std(TMP, off, SCRATCH));
    }

    // Copy the banner.
    a.emit(mr(DST, SCRATCH));
    a.emit(li(COUNT, BANNER.len() as i16));
    copy_bytes(a, "copy", SRC);

    // The LPID's decimal digits, least significant first, downwards from DIGITS_END.
    a.emit(addi(DIGIT_PTR, SCRATCH, DIGITS_END));
    a.emit(mr(VALUE, LPID));
    a.emit(li(TEN, 10));
    a.emit(li(COUNT, 0));
    a.label("digit");
    a.emit(divdu(QUOT, VALUE, TEN));
    a.emit(mulli(TMP, QUOT, 10));
    a.emit(subf(TMP, TMP, VALUE));
    a.emit(addi(TMP, TMP, i16::from(b'0')));
    a.emit(addi(DIGIT_PTR, DIGIT_PTR, -1));
    a.emit(stb(TMP, 0, DIGIT_PTR));
    a.emit(addi(COUNT, COUNT, 1));
    a.emit(mr(VALUE, QUOT));
    a.emit(cmpldi(VALUE, 0));
    a.emit(bne(a.to("digit")));

    // Append them, most significant first, then the newline.
    copy_bytes(a, "append", DIGIT_PTR);
    a.emit(li(BYTE, i16::from(b'\n')));
    a.emit(stb(BYTE, 0, DST));
    a.emit(addi(DST, DST, 1));

    // Step 2: H_PUT_TERM_CHAR in chunks of at most 16 bytes.
    a.emit(subf(LEFT, SCRATCH, DST));
    a.emit(mr(CHUNK_PTR, SCRATCH));
    a.label("chunk");
    a.emit(li(CHUNK_LEN, 16));
    a.emit(cmpldi(LEFT, 16));
    a.emit(bge(a.to("full")));
    a.emit(mr(CHUNK_LEN, LEFT));
    a.label("full");
    a.emit(li(3, H_PUT_TERM_CHAR as i16));
    a.emit(li(4, 0));
    a.emit(mr(5, CHUNK_LEN));
    a.emit(ld(6, 0, CHUNK_PTR));
    a.emit(ld(7, 8, CHUNK_PTR));
    a.emit(sc1());
    a.emit(cmpdi(3, 0));
    a.emit(bne(a.to("fail")));
    a.emit(subf(LEFT, CHUNK_LEN, LEFT));
    a.emit(addi(CHUNK_PTR, CHUNK_PTR, 16));
    a.emit(cmpdi(LEFT, 0));
    a.emit(bne(a.to("chunk")));
    a.emit(li(4, 0));

    // Step 3: UV_SVM_TERMINATE with r4 = 0 or the failing status, then nothing.
    a.label("exit");
    a.emit(li(3, 0));
    a.emit(ori(3, 3, UV_SVM_TERMINATE as u16));
    a.emit(sc1());
    a.emit(b(0));
    a.label("fail");
    a.emit(mr(4, 3));
    a.emit(b(a.to("exit")));
    a.label("data");
}

/// Assembles the program (two passes: the labels the first finds fix the second's branches).
fn assemble() -> Program {
    assemble_with(Esm::Heeded)
}

fn assemble_with(esm: Esm) -> Program {
    let mut first = Asm::new(None);
    program(&mut first, esm);
    let mut second = Asm::new(Some(&first.labels));
    program(&mut second, esm);
    assert_eq!(first.labels, second.labels, "the passes disagree");
    assert_eq!(second.labels["data"], second.here());
    Program {
        code: second.words,
        data: BANNER.as_bytes().to_vec(),
    }
}

/// The demo payload: the program's bytes (code, then its constant data), zero-padded to
/// exactly [`PAYLOAD_LEN`] bytes; the same bytes on every call. See the module documentation
/// for its ABI.
pub fn demo_payload() -> Vec<u8> {
    padded(assemble())
}

/// The attack on "a rejected SVM never runs": the same program with the ESM answer ignored
/// (its `bne` after UV_ESM is a `nop`), so it prints its line whatever the ultravisor said.
/// Booted with a blob sealed to another kernel, it prints nothing only because the
/// ultravisor never enters a rejected SVM again.
pub fn defiant_payload() -> Vec<u8> {
    padded(assemble_with(Esm::Ignored))
}

fn padded(p: Program) -> Vec<u8> {
    let mut out = p.bytes();
    assert!(out.len() <= PAYLOAD_LEN, "the payload outgrew its page");
    out.resize(PAYLOAD_LEN, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::insn::*;
    use super::*;

    // Every expected word below was derived by hand from the instruction's form and field
    // values (Power ISA 3.0 Book I) and agrees with `llvm-mc -triple=powerpc64 -show-encoding`.

    #[test]
    fn d_form_encoders_match_hand_checked_encodings() {
        assert_eq!(li(3, 0x1234), 0x3860_1234);
        assert_eq!(li(3, -1), 0x3860_ffff);
        assert_eq!(addi(29, 29, 0x150), 0x3bbd_0150);
        assert_eq!(addi(24, 30, 128), 0x3b1e_0080);
        assert_eq!(addi(27, 27, -1), 0x3b7b_ffff);
        assert_eq!(ori(3, 3, 0xf110), 0x6063_f110);
        assert_eq!(ori(3, 3, 0xf13c), 0x6063_f13c);
        assert_eq!(ori(0, 0, 0), 0x6000_0000, "nop");
        assert_eq!(mulli(18, 19, 10), 0x1e53_000a);
        assert_eq!(lbz(23, 0, 29), 0x8afd_0000);
        assert_eq!(stb(23, 0, 28), 0x9afc_0000);
        assert_eq!(cmpdi(3, 0), 0x2c23_0000);
        assert_eq!(cmpdi(27, 0), 0x2c3b_0000);
        assert_eq!(cmpldi(20, 16), 0x2834_0010);
        assert_eq!(cmpldi(26, 0), 0x283a_0000);
    }

    #[test]
    fn ds_form_encoders_match_hand_checked_encodings() {
        assert_eq!(ld(6, 0, 5), 0xe8c5_0000);
        assert_eq!(ld(7, 8, 21), 0xe8f5_0008);
        assert_eq!(std(18, 56, 30), 0xfa5e_0038);
        assert_eq!(std(0, 16, 1), 0xf801_0010);
    }

    #[test]
    #[should_panic(expected = "not a multiple of 4")]
    fn ds_form_refuses_a_misaligned_displacement() {
        ld(6, 6, 5);
    }

    #[test]
    fn x_and_xo_form_encoders_match_hand_checked_encodings() {
        assert_eq!(mr(31, 3), 0x7c7f_1b78);
        assert_eq!(or(31, 3, 3), 0x7c7f_1b78);
        assert_eq!(mr(5, 22), 0x7ec5_b378);
        assert_eq!(divdu(19, 26, 25), 0x7e7a_cb92);
        assert_eq!(divdu(3, 3, 4), 0x7c63_2392);
        assert_eq!(subf(20, 30, 28), 0x7e9e_e050);
        assert_eq!(subf(18, 18, 26), 0x7e52_d050);
        assert_eq!(subf(3, 4, 3), 0x7c64_1850);
        assert_eq!(mflr(0), 0x7c08_02a6);
        assert_eq!(mflr(29), 0x7fa8_02a6);
    }

    #[test]
    fn branch_and_sc_encoders_match_hand_checked_encodings() {
        assert_eq!(sc1(), 0x4400_0022);
        assert_eq!(b(0), 0x4800_0000, "b .");
        assert_eq!(b(-8), 0x4bff_fff8);
        assert_eq!(b(4) | 1, 0x4800_0005, "bl .+4");
        assert_eq!(bcl(20, 31, 4), 0x429f_0005);
        assert_eq!(bc(12, 2, 0), 0x4182_0000, "beq .");
        assert_eq!(bne(-24), 0x4082_ffe8);
        assert_eq!(bge(12), 0x4080_000c);
        assert_eq!(bne(0x7ffc), 0x4082_7ffc);
        assert_eq!(bne(-0x8000), 0x4082_8000);
        assert_eq!(bc(4, 2, 8), bne(8));
        assert_eq!(bc(4, 0, 8), bge(8));
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn bc_refuses_a_displacement_it_cannot_encode() {
        bne(0x8000);
    }

    #[test]
    #[should_panic(expected = "not a GPR")]
    fn encoders_refuse_a_register_that_is_not_a_gpr() {
        li(32, 0);
    }

    #[test]
    fn demo_payload_is_one_deterministic_page_code_then_data_then_zeros() {
        let p = assemble();
        let bytes = p.bytes();
        eprintln!(
            "payload: {} instructions ({} bytes) + {} bytes of data = {} bytes before padding",
            p.code.len(),
            p.code.len() * 4,
            p.data.len(),
            bytes.len()
        );
        let page = demo_payload();
        assert_eq!(page.len(), PAYLOAD_LEN);
        assert_eq!(page, demo_payload());
        assert_eq!(page[..bytes.len()], bytes[..]);
        assert!(page[bytes.len()..].iter().all(|&b| b == 0));
        let code_len = p.code.len() * 4;
        assert_eq!(&page[code_len..bytes.len()], BANNER.as_bytes());
        assert_eq!(page[..4], mr(31, 3).to_be_bytes());
        // The program ends in the exit: `sc 1`, `b .`, then the failure path (mr r4,r3; b exit).
        let word = |i: usize| p.code[p.code.len() - i];
        assert_eq!((word(4), word(3), word(2)), (sc1(), b(0), mr(4, 3)));
    }

    // ---- The interpreter: exactly the instructions the payload uses, nothing else. ----

    const PAGE: u64 = 4096;

    /// Guest memory: 4 KiB pages, big-endian, each readable and maybe writable.
    #[derive(Default)]
    struct Mem {
        pages: BTreeMap<u64, (Vec<u8>, bool)>,
    }

    impl Mem {
        fn map(&mut self, at: u64, bytes: &[u8], writable: bool) {
            assert_eq!(at % PAGE, 0);
            for (i, chunk) in bytes.chunks(PAGE as usize).enumerate() {
                let mut page = chunk.to_vec();
                page.resize(PAGE as usize, 0);
                let base = at + i as u64 * PAGE;
                assert!(self.pages.insert(base, (page, writable)).is_none());
            }
        }

        fn page(&self, a: u64) -> &(Vec<u8>, bool) {
            self.pages
                .get(&(a & !(PAGE - 1)))
                .unwrap_or_else(|| panic!("access to unmapped address {a:#x}"))
        }

        fn load(&self, a: u64, n: u64) -> u64 {
            (0..n).fold(0, |v, i| {
                let at = a + i;
                v << 8 | u64::from(self.page(at).0[(at % PAGE) as usize])
            })
        }

        fn store(&mut self, a: u64, n: u64, v: u64) {
            for i in 0..n {
                let at = a + i;
                let page = self
                    .pages
                    .get_mut(&(at & !(PAGE - 1)))
                    .unwrap_or_else(|| panic!("store to unmapped address {at:#x}"));
                assert!(page.1, "store to read-only address {at:#x}");
                page.0[(at % PAGE) as usize] = (v >> (8 * (n - 1 - i))) as u8;
            }
        }
    }

    /// What one instruction did.
    #[derive(Debug, PartialEq, Eq)]
    enum Step {
        Next,
        Sc,
    }

    /// The machine state the payload can see: GPRs, CR0 (LT GT EQ SO as bits 3..0), LR, PC.
    struct Cpu {
        gpr: [u64; 32],
        cr0: u8,
        lr: u64,
        pc: u64,
        mem: Mem,
    }

    impl Cpu {
        fn compare(&mut self, lt: bool, gt: bool) {
            self.cr0 = if lt {
                8
            } else if gt {
                4
            } else {
                2
            };
        }

        fn base(&self, ra: usize) -> u64 {
            if ra == 0 {
                0
            } else {
                self.gpr[ra]
            }
        }

        /// Executes the instruction at PC; panics on anything it does not know.
        fn step(&mut self) -> Step {
            let pc = self.pc;
            assert_eq!(pc % 4, 0, "misaligned PC {pc:#x}");
            let w = self.mem.load(pc, 4) as u32;
            let bad = || -> ! { panic!("unknown instruction {w:#010x} at {pc:#x}") };
            let op = w >> 26;
            let rt = ((w >> 21) & 31) as usize;
            let ra = ((w >> 16) & 31) as usize;
            let rb = ((w >> 11) & 31) as usize;
            let d = w as u16 as i16 as i64 as u64;
            let mut next = pc + 4;
            match op {
                7 => self.gpr[rt] = self.gpr[ra].wrapping_mul(d),
                10 | 11 => {
                    // cmpli / cmpi: only BF = 0 (CR0), L = 1 (64-bit).
                    if rt != 1 {
                        bad();
                    }
                    let x = self.gpr[ra];
                    if op == 10 {
                        let y = u64::from(w as u16);
                        self.compare(x < y, x > y);
                    } else {
                        let (x, y) = (x as i64, d as i64);
                        self.compare(x < y, x > y);
                    }
                }
                14 => self.gpr[rt] = self.base(ra).wrapping_add(d),
                16 => {
                    // bc: BO 4 (if false), 12 (if true), 20 (always); no CTR, no hints.
                    if w & 2 != 0 || ![4, 12, 20].contains(&rt) || (rt != 20 && ra > 3) {
                        bad();
                    }
                    if w & 1 != 0 {
                        self.lr = pc + 4;
                    }
                    let bit = self.cr0 >> (3 - ra.min(3)) & 1 == 1;
                    let taken = rt == 20 || bit == (rt == 12);
                    if taken {
                        next = pc.wrapping_add((w & 0xfffc) as u16 as i16 as i64 as u64);
                    }
                }
                17 => {
                    if w != 0x4400_0022 {
                        bad();
                    }
                    self.pc = next;
                    return Step::Sc;
                }
                18 => {
                    if w & 3 != 0 {
                        bad(); // AA or LK: the payload uses neither with b.
                    }
                    let li = (((w & 0x03ff_fffc) << 6) as i32 >> 6) as i64 as u64;
                    next = pc.wrapping_add(li);
                }
                24 => self.gpr[ra] = self.gpr[rt] | u64::from(w as u16),
                31 => {
                    if w & 1 != 0 {
                        bad(); // Rc = 1
                    }
                    match (w >> 1) & 0x3ff {
                        444 => self.gpr[ra] = self.gpr[rt] | self.gpr[rb],
                        40 => self.gpr[rt] = self.gpr[rb].wrapping_sub(self.gpr[ra]),
                        457 => {
                            let divisor = self.gpr[rb];
                            assert_ne!(divisor, 0, "divdu by zero at {pc:#x}");
                            self.gpr[rt] = self.gpr[ra] / divisor;
                        }
                        339 => {
                            let f = (w >> 11) & 0x3ff;
                            if ((f & 0x1f) << 5 | f >> 5) != 8 {
                                bad(); // mfspr of anything but LR
                            }
                            self.gpr[rt] = self.lr;
                        }
                        _ => bad(),
                    }
                }
                34 => self.gpr[rt] = self.mem.load(self.base(ra).wrapping_add(d), 1),
                38 => {
                    let ea = self.base(ra).wrapping_add(d);
                    self.mem.store(ea, 1, self.gpr[rt]);
                }
                58 | 62 => {
                    if w & 3 != 0 {
                        bad(); // ldu, lwa, stdu, ...
                    }
                    let ea = self.base(ra).wrapping_add(d);
                    assert_eq!(ea % 8, 0, "misaligned doubleword access {ea:#x} at {pc:#x}");
                    if op == 58 {
                        self.gpr[rt] = self.mem.load(ea, 8);
                    } else {
                        self.mem.store(ea, 8, self.gpr[rt]);
                    }
                }
                _ => bad(),
            }
            self.pc = next;
            Step::Next
        }
    }

    const SCRATCH_AT: u64 = 0x0002_0000;
    const BLOB_AT: u64 = 0x3000_0000; // left unmapped: the payload must not touch it
    const BLOB_LEN: u64 = 0x1_2345;
    const STEP_LIMIT: u64 = 10_000;

    /// How the ultravisor and the hypervisor answer, and how the payload is entered.
    struct Env {
        load_at: u64,
        lpid: u64,
        esm: u64,
        /// The 0-based H_PUT_TERM_CHAR call that fails, and its status.
        put_fails: Option<(usize, u64)>,
        /// Garbage instead of zeros in the registers the ABI does not set.
        dirty_entry: bool,
    }

    impl Env {
        fn new(lpid: u64) -> Self {
            Env {
                load_at: 0x1_0000,
                lpid,
                esm: 0,
                put_fails: None,
                dirty_entry: false,
            }
        }
    }

    /// What the payload did.
    #[derive(Debug)]
    struct Outcome {
        printed: Vec<u8>,
        puts: usize,
        exit_status: u64,
    }

    /// Runs the demo payload in `env` until UV_SVM_TERMINATE, checking every call.
    fn run(env: &Env) -> Outcome {
        run_program(env, Esm::Heeded)
    }

    fn run_program(env: &Env, esm: Esm) -> Outcome {
        let program = assemble_with(esm);
        let code_end = env.load_at + program.code.len() as u64 * 4;
        let mut mem = Mem::default();
        let page = match esm {
            Esm::Heeded => demo_payload(),
            Esm::Ignored => defiant_payload(),
        };
        mem.map(env.load_at, &page, false);
        mem.map(SCRATCH_AT, &[0xa5; PAGE as usize], true); // not zero: the payload zeroes
        let mut gpr = [0u64; 32];
        if env.dirty_entry {
            for (i, r) in gpr.iter_mut().enumerate() {
                *r = 0xbad0_0000_0000_0000 | i as u64;
            }
        }
        gpr[3] = env.lpid;
        gpr[4] = BLOB_AT;
        gpr[5] = BLOB_LEN;
        gpr[6] = SCRATCH_AT;
        let mut cpu = Cpu {
            gpr,
            cr0: if env.dirty_entry { 0xf } else { 0 },
            lr: if env.dirty_entry { 0xbad } else { 0 },
            pc: env.load_at,
            mem,
        };
        let mut esm_done = false;
        let mut printed = Vec::new();
        let mut puts = 0;
        for steps in 0.. {
            assert!(
                steps < STEP_LIMIT,
                "no exit within {STEP_LIMIT} instructions"
            );
            let pc = cpu.pc;
            assert!(
                (env.load_at..code_end).contains(&pc),
                "PC {pc:#x} outside the code"
            );
            if cpu.step() == Step::Next {
                continue;
            }
            let r = &mut cpu.gpr;
            match r[3] {
                UV_ESM => {
                    assert!(!esm_done, "UV_ESM twice");
                    assert_eq!((r[4], r[5]), (BLOB_AT, BLOB_LEN), "UV_ESM arguments");
                    esm_done = true;
                    r[3] = env.esm;
                }
                H_PUT_TERM_CHAR => {
                    assert!(
                        esm_done && (env.esm == 0 || esm == Esm::Ignored),
                        "printing before an accepted ESM"
                    );
                    assert_eq!(r[4], 0, "terminal number");
                    let n = r[5] as usize;
                    assert!((1..=16).contains(&n), "H_PUT_TERM_CHAR of {n} bytes");
                    let mut chunk = r[6].to_be_bytes().to_vec();
                    chunk.extend_from_slice(&r[7].to_be_bytes());
                    assert!(
                        chunk[n..].iter().all(|&b| b == 0),
                        "unused trailing bytes not zero: {chunk:02x?} ({n} used)"
                    );
                    printed.extend_from_slice(&chunk[..n]);
                    r[3] = match env.put_fails {
                        Some((i, status)) if i == puts => status,
                        Some((i, _)) => {
                            assert!(puts < i, "H_PUT_TERM_CHAR after a failed one");
                            0
                        }
                        None => 0,
                    };
                    puts += 1;
                }
                UV_SVM_TERMINATE => {
                    assert!(esm_done, "exit before UV_ESM");
                    let untouched =
                        (DIGITS_END as u64..PAGE).all(|i| cpu.mem.load(SCRATCH_AT + i, 1) == 0xa5);
                    assert!(untouched, "wrote the scratch page past {DIGITS_END}");
                    assert_eq!(cpu.mem.load(cpu.pc, 4), u64::from(b(0)), "no `b .` after");
                    return Outcome {
                        printed,
                        puts,
                        exit_status: r[4],
                    };
                }
                other => panic!("unknown call {other:#x} at {pc:#x}"),
            }
            // The callee may change the volatile registers: make sure nothing relies on them.
            for (i, v) in r.iter_mut().enumerate() {
                if i == 0 || (4..=12).contains(&i) {
                    *v = 0xdead_0000_0000_0000 | i as u64;
                }
            }
            cpu.cr0 = 0xf;
            cpu.lr = 0xdead;
        }
        unreachable!()
    }

    fn line(lpid: u64) -> String {
        format!("svm-payload: running in partition {lpid}\n")
    }

    #[test]
    fn payload_prints_its_lpid_and_exits_cleanly() {
        for lpid in [1, 9, 10, 99, 100, 200, 255] {
            let out = run(&Env::new(lpid));
            assert_eq!(String::from_utf8(out.printed).unwrap(), line(lpid));
            assert_eq!(out.puts, line(lpid).len().div_ceil(16));
            assert_eq!(out.exit_status, 0, "LPID {lpid}");
        }
    }

    #[test]
    fn payload_is_position_independent_and_needs_no_zeroed_registers() {
        for load_at in [0x1_0000, 0x1000_0000, 0x7654_3000] {
            for dirty_entry in [false, true] {
                for lpid in [1, 42, 255] {
                    let env = Env {
                        load_at,
                        dirty_entry,
                        ..Env::new(lpid)
                    };
                    let out = run(&env);
                    assert_eq!(out.printed, line(lpid).as_bytes(), "at {load_at:#x}");
                    assert_eq!(out.exit_status, 0);
                }
            }
        }
    }

    /// Outside the ABI's 1..=255 but handled: 0 and the widest 64-bit value (the longest
    /// line, 55 bytes, still inside the zeroed buffer).
    #[test]
    fn payload_prints_any_64_bit_lpid() {
        for lpid in [0, 1_000_000, u64::MAX] {
            let out = run(&Env::new(lpid));
            assert_eq!(String::from_utf8(out.printed).unwrap(), line(lpid));
            assert_eq!(out.exit_status, 0);
        }
    }

    #[test]
    fn a_rejected_esm_prints_nothing_and_exits_with_the_status() {
        for status in [-1i64 as u64, 1, 0x8000_0000_0000_0000] {
            let env = Env {
                esm: status,
                ..Env::new(7)
            };
            let out = run(&env);
            assert_eq!((out.puts, out.printed.len()), (0, 0));
            assert_eq!(out.exit_status, status);
        }
    }

    #[test]
    fn the_defiant_payload_prints_its_line_even_when_the_esm_call_is_refused() {
        let env = Env {
            esm: -1i64 as u64,
            ..Env::new(7)
        };
        let out = run_program(&env, Esm::Ignored);
        assert_eq!(out.printed, line(7).as_bytes());
        assert_ne!(defiant_payload(), demo_payload());
    }

    #[test]
    fn a_failing_put_term_char_stops_printing_and_exits_with_its_status() {
        let full = line(200);
        for (i, status) in [(0, -1i64 as u64), (1, -2i64 as u64), (2, 5)] {
            let env = Env {
                put_fails: Some((i, status)),
                ..Env::new(200)
            };
            let out = run(&env);
            assert_eq!(out.puts, i + 1, "stops after the failing call");
            let sent = (16 * (i + 1)).min(full.len());
            assert_eq!(out.printed, full.as_bytes()[..sent]);
            assert_eq!(out.exit_status, status);
        }
    }

    #[test]
    #[should_panic(expected = "unknown instruction 0x7c0004ac")]
    fn the_interpreter_refuses_an_instruction_it_does_not_know() {
        let mut mem = Mem::default();
        mem.map(0, &0x7c00_04ac_u32.to_be_bytes(), false); // sync
        let mut cpu = Cpu {
            gpr: [0; 32],
            cr0: 0,
            lr: 0,
            pc: 0,
            mem,
        };
        cpu.step();
    }

    #[test]
    #[should_panic(expected = "unknown instruction 0x7c7f1b79")]
    fn the_interpreter_refuses_a_recording_form() {
        let mut mem = Mem::default();
        mem.map(0, &(mr(31, 3) | 1).to_be_bytes(), false); // mr. r31,r3
        let mut cpu = Cpu {
            gpr: [0; 32],
            cr0: 0,
            lr: 0,
            pc: 0,
            mem,
        };
        cpu.step();
    }
}
