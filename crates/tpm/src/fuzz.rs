//! Fuzz-style test of every response parser, on stable inside `cargo test`.
//!
//! A seeded xorshift PRNG mutates a corpus of well-formed responses (one or more per
//! command method) and also produces purely random ones; each input is fed through
//! the client's real code path by a fake transport (`FakeTpm`, unit tests only).
//! The HMAC-signing mode re-signs mutated parameter areas with the right response
//! HMAC, so the code after HMAC verification (parameter decryption and parsing) sees
//! hostile bytes too. Success criterion: no panic in 200 000 inputs, every
//! unmutated seed accepted, and both accepted and rejected mutants observed.
#![forbid(unsafe_code)]

use super::client::{KeyBlob, Tpm};
use super::consts::{attr, sa, st, SHA256_SIZE};
use super::crypto;
use super::entropy::{EntropyError, EntropySource, Mixer};
use super::marshal::Writer;
use super::public::{Object, PcrSelection, Public, Template};
use super::session::{Auth, Session, SessionKind};
use super::transport::{Transport, TransportError, MAX_TPM_MESSAGE};
use std::vec::Vec;

const ITERATIONS: usize = 200_000;
const KEY_AUTH: &[u8] = b"fuzz-key-auth";

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// A fake platform entropy source for the unit test (a counter).
struct FakeEntropy(u8);
impl EntropySource for FakeEntropy {
    fn fill(&mut self, out: &mut [u8]) -> Result<(), EntropyError> {
        for b in out {
            self.0 = self.0.wrapping_add(1);
            *b = self.0;
        }
        Ok(())
    }
}

/// A fake TPM that answers every command with a prepared response. In signing
/// mode the prepared bytes are the *parameter area*, wrapped into a session
/// response with a valid HMAC for an unsalted, unbound HMAC session used with
/// `KEY_AUTH` (single session, one command handle).
struct FakeTpm {
    next: Vec<u8>,
    sign: bool,
    nonce_seed: u64,
}

impl Transport for FakeTpm {
    fn transact(&mut self, command: &[u8], response: &mut [u8]) -> Result<usize, TransportError> {
        let out: Vec<u8> = if self.sign {
            let code = command.get(6..10).ok_or(TransportError::Io)?;
            let nonce_caller = command.get(24..56).ok_or(TransportError::Io)?;
            let attrs = *command.get(56).ok_or(TransportError::Io)?;
            let cc = u32::from_be_bytes(code.try_into().map_err(|_| TransportError::Io)?);
            self.nonce_seed = self.nonce_seed.wrapping_add(1);
            let nonce_tpm = crypto::sha256(&[&self.nonce_seed.to_be_bytes()]);
            let rp = crypto::rp_hash(0, cc, &self.next);
            let mac = crypto::session_hmac(&[], KEY_AUTH, &rp, &nonce_tpm, nonce_caller, attrs);
            let mut v = Vec::new();
            v.extend_from_slice(&st::SESSIONS.to_be_bytes());
            v.extend_from_slice(&[0; 4]);
            v.extend_from_slice(&[0; 4]);
            v.extend_from_slice(&(self.next.len() as u32).to_be_bytes());
            v.extend_from_slice(&self.next);
            v.extend_from_slice(&(SHA256_SIZE as u16).to_be_bytes());
            v.extend_from_slice(&nonce_tpm);
            v.push(attrs);
            v.extend_from_slice(&(SHA256_SIZE as u16).to_be_bytes());
            v.extend_from_slice(&mac);
            let len = v.len() as u32;
            v[2..6].copy_from_slice(&len.to_be_bytes());
            v
        } else {
            self.next.clone()
        };
        let dst = response
            .get_mut(..out.len())
            .ok_or(TransportError::ResponseTooLarge)?;
        dst.copy_from_slice(&out);
        Ok(out.len())
    }
}

#[derive(Clone, Copy, Debug)]
enum Target {
    GetRandom,
    CapHandles,
    CapProps,
    ReadPublic,
    CreatePrimary,
    Create,
    Load,
    RsaDecrypt,
    RsaDecryptSigned,
    PcrRead,
    StartSession,
    PolicyDigest,
    ChangeAuth,
    ParsePublic,
}

fn tpm2b(v: &mut Vec<u8>, data: &[u8]) {
    v.extend_from_slice(&(data.len() as u16).to_be_bytes());
    v.extend_from_slice(data);
}

/// A whole response: header, optional handle, parameters, and a password-session
/// authorization area if `sessions`.
fn response(handle: Option<u32>, params: &[u8], sessions: bool) -> Vec<u8> {
    let mut v = Vec::new();
    let tag = if sessions {
        st::SESSIONS
    } else {
        st::NO_SESSIONS
    };
    v.extend_from_slice(&tag.to_be_bytes());
    v.extend_from_slice(&[0; 8]);
    if let Some(h) = handle {
        v.extend_from_slice(&h.to_be_bytes());
    }
    if sessions {
        v.extend_from_slice(&(params.len() as u32).to_be_bytes());
    }
    v.extend_from_slice(params);
    if sessions {
        v.extend_from_slice(&[0, 0, sa::CONTINUE_SESSION, 0, 0]);
    }
    fix_size(&mut v);
    v
}

fn fix_size(v: &mut [u8]) {
    let len = v.len() as u32;
    if let Some(s) = v.get_mut(2..6) {
        s.copy_from_slice(&len.to_be_bytes());
    }
}

fn template_bytes(t: &Template<'_>) -> Vec<u8> {
    let mut buf = [0u8; 1024];
    let mut w = Writer::new(&mut buf);
    t.marshal(&mut w).unwrap();
    w.written().to_vec()
}

fn creation_tail(v: &mut Vec<u8>) {
    tpm2b(v, &[1, 2, 3, 4, 5, 6]);
    tpm2b(v, &[9u8; 32]);
    v.extend_from_slice(&st::CREATION.to_be_bytes());
    v.extend_from_slice(&0x4000_0001u32.to_be_bytes());
    tpm2b(v, &[7u8; 32]);
}

fn corpus() -> Vec<(Target, Vec<u8>)> {
    let rsa = template_bytes(&Template::rsa_storage());
    let ecc = template_bytes(&Template::ecc_storage());
    let name = Public::parse(&rsa).unwrap().name().unwrap();
    let mut c = Vec::new();

    let mut p = Vec::new();
    tpm2b(&mut p, &[0xab; 16]);
    c.push((Target::GetRandom, response(None, &p, false)));

    let mut p = vec![0u8];
    p.extend_from_slice(&1u32.to_be_bytes());
    p.extend_from_slice(&2u32.to_be_bytes());
    p.extend_from_slice(&0x8000_0000u32.to_be_bytes());
    p.extend_from_slice(&0x8000_0001u32.to_be_bytes());
    c.push((Target::CapHandles, response(None, &p, false)));

    let mut p = vec![1u8];
    p.extend_from_slice(&6u32.to_be_bytes());
    p.extend_from_slice(&1u32.to_be_bytes());
    p.extend_from_slice(&0x100u32.to_be_bytes());
    p.extend_from_slice(b"2.0\0");
    c.push((Target::CapProps, response(None, &p, false)));

    for public in [&rsa, &ecc] {
        let n = Public::parse(public).unwrap().name().unwrap();
        let mut p = Vec::new();
        tpm2b(&mut p, public);
        tpm2b(&mut p, n.as_bytes());
        tpm2b(&mut p, n.as_bytes());
        c.push((Target::ReadPublic, response(None, &p, false)));
        c.push((Target::ParsePublic, public.clone()));
    }

    let mut p = Vec::new();
    tpm2b(&mut p, &rsa);
    creation_tail(&mut p);
    tpm2b(&mut p, name.as_bytes());
    c.push((Target::CreatePrimary, response(Some(0x8000_0000), &p, true)));

    let mut p = Vec::new();
    tpm2b(&mut p, &[0x11; 200]);
    tpm2b(&mut p, &ecc);
    creation_tail(&mut p);
    c.push((Target::Create, response(None, &p, true)));

    let loaded = template_bytes(&Template::rsa_oaep(attr::DECRYPT, &[]));
    let loaded_name = Public::parse(&loaded).unwrap().name().unwrap();
    let mut p = Vec::new();
    tpm2b(&mut p, loaded_name.as_bytes());
    c.push((Target::Load, response(Some(0x8000_0001), &p, true)));

    let mut p = Vec::new();
    tpm2b(&mut p, &[0x5a; 32]);
    c.push((Target::RsaDecrypt, response(None, &p, true)));
    c.push((Target::RsaDecryptSigned, p.clone()));

    let mut p = Vec::new();
    p.extend_from_slice(&7u32.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 1, 0, 0x0b, 3, 0, 0, 1]);
    p.extend_from_slice(&1u32.to_be_bytes());
    tpm2b(&mut p, &[0u8; 32]);
    c.push((Target::PcrRead, response(None, &p, false)));

    let mut p = Vec::new();
    tpm2b(&mut p, &[0x33; 32]);
    c.push((Target::StartSession, response(Some(0x0200_0000), &p, false)));
    c.push((Target::PolicyDigest, response(None, &p, false)));

    let mut p = Vec::new();
    tpm2b(&mut p, &[0x44; 180]);
    c.push((Target::ChangeAuth, response(None, &p, true)));

    // An error response, for every target.
    let err = vec![0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x09, 0x8e];
    c.push((Target::GetRandom, err.clone()));
    c.push((Target::Create, err));
    c
}

fn mutate(rng: &mut XorShift, seed: &[u8]) -> Vec<u8> {
    if rng.below(10) == 0 {
        let len = rng.below(64);
        let mut v: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if rng.below(2) == 0 && v.len() >= 6 {
            v[0] = 0x80;
            v[1] = 1 + rng.below(2) as u8;
            fix_size(&mut v);
        }
        return v;
    }
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        match rng.below(8) {
            0 | 1 => {
                if len > 0 {
                    let i = rng.below(len);
                    v[i] ^= 1 << rng.below(8);
                }
            }
            2 => {
                if len > 0 {
                    let i = rng.below(len);
                    v[i] = rng.next() as u8;
                }
            }
            3 => v.truncate(rng.below(len + 1)),
            4 => {
                let i = rng.below(len + 1);
                v.insert(i, rng.next() as u8);
            }
            5 => {
                if len > 0 {
                    v.remove(rng.below(len));
                }
            }
            6 => {
                if len >= 2 {
                    let i = rng.below(len - 1);
                    let vals = [0u16, 1, 0x7fff, 0xffff, 32, 33, 256, len as u16];
                    let val = vals[rng.below(vals.len())];
                    v[i..i + 2].copy_from_slice(&val.to_be_bytes());
                }
            }
            _ => {
                for _ in 0..rng.below(16) {
                    v.push(rng.next() as u8);
                }
            }
        }
    }
    if rng.below(3) != 0 {
        fix_size(&mut v);
    }
    v.truncate(MAX_TPM_MESSAGE);
    v
}

fn hmac_session(attributes: u8) -> Session {
    Session {
        handle: 0x0200_0000,
        kind: SessionKind::Hmac,
        key: [0; SHA256_SIZE],
        key_len: 0,
        nonce_tpm: [1; SHA256_SIZE],
        nonce_caller: [0; SHA256_SIZE],
        attributes,
        bind_id: None,
        policy_auth_value: false,
        open: true,
    }
}

/// Runs one input through the client; Ok(true) if the client accepted it.
fn run(tpm: &mut Tpm<FakeTpm>, target: Target, input: Vec<u8>) -> bool {
    let t = tpm.transport_mut();
    t.sign = matches!(target, Target::RsaDecryptSigned);
    t.next = input;
    let owner = Object::permanent(0x4000_0001);
    let key = Object {
        handle: 0x8000_0001,
        name: super::public::Name::from_handle(0x8000_0001),
    };
    let rsa = template_bytes(&Template::rsa_oaep(attr::DECRYPT, &[]));
    let blob = KeyBlob {
        private: heapless::Vec::from_slice(&[0x11; 100]).unwrap(),
        public: heapless::Vec::from_slice(&rsa).unwrap(),
    };
    let pw = || Auth::Password(b"");
    let mut out = [0u8; 600];
    match target {
        Target::GetRandom => tpm.get_random(&mut out[..32]).is_ok(),
        Target::CapHandles => tpm
            .get_capability_handles(0x8000_0000, &mut [0u32; 4])
            .is_ok(),
        Target::CapProps => tpm
            .get_capability_properties(0x100, &mut [(0, 0); 4])
            .is_ok(),
        Target::ReadPublic => tpm.read_public(0x8100_0001).is_ok(),
        Target::CreatePrimary => tpm
            .create_primary(&owner, &mut [pw()], &Template::rsa_storage(), b"")
            .is_ok(),
        Target::Create => tpm
            .create(&owner, &mut [pw()], &Template::ecc_storage(), b"x")
            .is_ok(),
        Target::Load => tpm.load(&owner, &mut [pw()], &blob).is_ok(),
        Target::RsaDecrypt => tpm
            .rsa_decrypt(&key, &mut [pw()], &[1; 256], &[], &mut out)
            .is_ok(),
        Target::RsaDecryptSigned => {
            let mut s = hmac_session(sa::CONTINUE_SESSION | sa::ENCRYPT);
            let before = s.nonce_tpm;
            let r = tpm.rsa_decrypt(
                &key,
                &mut [Auth::session(&mut s, KEY_AUTH)],
                &[1; 256],
                &[],
                &mut out,
            );
            // The nonce rolls when the response verified, and never when it did not.
            match r {
                Ok(_) => assert_ne!(s.nonce_tpm, before),
                Err(super::client::Error::ResponseHmac { .. }) => assert_eq!(s.nonce_tpm, before),
                Err(_) => {}
            }
            r.is_ok()
        }
        Target::PcrRead => tpm
            .pcr_read(&PcrSelection::sha256(&[0]), &mut [[0u8; 32]; 8])
            .is_ok(),
        Target::StartSession => tpm
            .start_auth_session(super::client::SaltKey::None, None, SessionKind::Hmac, 0)
            .is_ok(),
        Target::PolicyDigest => {
            let mut s = hmac_session(0);
            s.kind = SessionKind::Policy;
            s.handle = 0x0300_0000;
            tpm.policy_get_digest(&mut s).is_ok()
        }
        Target::ChangeAuth => tpm
            .object_change_auth(&key, &owner, &mut [pw()], b"new")
            .is_ok(),
        Target::ParsePublic => {
            let input = &tpm.transport_mut().next;
            match Public::parse(input) {
                Ok(p) => {
                    let _ = p.name();
                    true
                }
                Err(_) => false,
            }
        }
    }
}

#[test]
fn two_hundred_thousand_hostile_responses_never_panic() {
    let mixer = Mixer::new(&mut FakeEntropy(0), b"fuzz").unwrap();
    let mut tpm = Tpm::with_mixer(
        FakeTpm {
            next: Vec::new(),
            sign: false,
            nonce_seed: 0,
        },
        mixer,
    );
    let corpus = corpus();
    // Every well-formed seed is accepted (error seeds are rejected): the corpus
    // reaches the deep paths.
    for (target, seed) in &corpus {
        let is_error = seed.len() == 10 && seed.get(9) == Some(&0x8e);
        assert_eq!(
            run(&mut tpm, *target, seed.clone()),
            !is_error,
            "{target:?}"
        );
    }
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let (mut accepted, mut rejected) = (0usize, 0usize);
    for _ in 0..ITERATIONS {
        let (target, seed) = &corpus[rng.below(corpus.len())];
        let input = mutate(&mut rng, seed);
        if run(&mut tpm, *target, input) {
            accepted += 1;
        } else {
            rejected += 1;
        }
    }
    std::println!("fuzz: {ITERATIONS} inputs, {accepted} accepted, {rejected} rejected, no panic");
    assert_eq!(accepted + rejected, ITERATIONS);
    assert!(accepted > 0 && rejected > 0);
}
