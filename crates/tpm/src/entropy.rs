//! Randomness for nonces, salts and ephemeral keys.
//!
//! Two sources feed one SHA-256 mixer ([`Mixer`]):
//! - the platform, through [`EntropySource`] (the image plugs in the POWER9 `darn`
//!   instruction; host tests use the operating system's generator);
//! - the TPM's `TPM2_GetRandom` ([`Tpm::seed_entropy`](super::client::Tpm::seed_entropy)).
//!
//! Neither is trusted alone: the TPM's bytes travel through the hypervisor, and a
//! platform generator can be weak. The mixer's key is `SHA-256(domain || key ||
//! input...)` over everything ever fed to it, so its output is unpredictable if any
//! one input was. Output block `i` is `SHA-256("out" || key || counter)`, and the key
//! is replaced by `SHA-256("next" || key || counter)` after every request, so a later
//! compromise of the state does not reveal earlier nonces or salts.
#![forbid(unsafe_code)]

use super::crypto;

/// Why a platform entropy source failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntropyError;

impl core::fmt::Display for EntropyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("platform entropy source failed")
    }
}

/// A platform source of random bytes.
pub trait EntropySource {
    /// Fills `out` entirely with fresh random bytes, or fails: a source that cannot
    /// deliver (for `darn`, the all-ones failure value repeatedly) must return
    /// `Err`, never constant or partial output.
    fn fill(&mut self, out: &mut [u8]) -> Result<(), EntropyError>;
}

/// Adapts any `rand_core` cryptographic generator (for example the OS generator on a
/// host) into an [`EntropySource`].
#[derive(Debug)]
pub struct FromRng<R>(pub R);

impl<R: rand_core::CryptoRngCore> EntropySource for FromRng<R> {
    fn fill(&mut self, out: &mut [u8]) -> Result<(), EntropyError> {
        self.0.try_fill_bytes(out).map_err(|_| EntropyError)
    }
}

/// Bytes drawn from the platform source at every seeding.
pub const PLATFORM_SEED_BYTES: usize = 48;

/// The SHA-256 mixer that produces every nonce and salt (see the module docs).
pub struct Mixer {
    key: [u8; 32],
    counter: u64,
}

impl core::fmt::Debug for Mixer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Mixer { .. }")
    }
}

impl Mixer {
    /// A mixer seeded from the platform source and any additional input (for example
    /// TPM GetRandom output). Fails if the platform source fails.
    pub fn new(platform: &mut dyn EntropySource, additional: &[u8]) -> Result<Mixer, EntropyError> {
        let mut m = Mixer {
            key: [0u8; 32],
            counter: 0,
        };
        m.reseed(platform, additional)?;
        Ok(m)
    }

    /// Mixes fresh platform entropy and `additional` into the key.
    pub fn reseed(
        &mut self,
        platform: &mut dyn EntropySource,
        additional: &[u8],
    ) -> Result<(), EntropyError> {
        let mut fresh = [0u8; PLATFORM_SEED_BYTES];
        platform.fill(&mut fresh)?;
        self.key = crypto::sha256(&[b"pefbox-mixer-seed", &self.key, &fresh, additional]);
        fresh.fill(0);
        Ok(())
    }

    /// Mixes `input` into the key without platform entropy.
    pub fn mix(&mut self, input: &[u8]) {
        self.key = crypto::sha256(&[b"pefbox-mixer-mix", &self.key, input]);
    }

    /// Fills `out` with output and then ratchets the key forward.
    pub fn generate(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(32) {
            self.counter = self.counter.wrapping_add(1);
            let block = crypto::sha256(&[b"out", &self.key, &self.counter.to_be_bytes()]);
            for (o, b) in chunk.iter_mut().zip(block.iter()) {
                *o = *b;
            }
        }
        self.counter = self.counter.wrapping_add(1);
        self.key = crypto::sha256(&[b"next", &self.key, &self.counter.to_be_bytes()]);
    }
}

impl rand_core::RngCore for Mixer {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.generate(&mut b);
        u32::from_be_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.generate(&mut b);
        u64::from_be_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.generate(dest)
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.generate(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for Mixer {}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake platform source: a counter, so runs are reproducible. Unit tests only.
    struct FakeCounterSource(u8);
    impl EntropySource for FakeCounterSource {
        fn fill(&mut self, out: &mut [u8]) -> Result<(), EntropyError> {
            for b in out.iter_mut() {
                self.0 = self.0.wrapping_add(1);
                *b = self.0;
            }
            Ok(())
        }
    }

    /// A fake platform source that always fails.
    struct FakeBrokenSource;
    impl EntropySource for FakeBrokenSource {
        fn fill(&mut self, _out: &mut [u8]) -> Result<(), EntropyError> {
            Err(EntropyError)
        }
    }

    #[test]
    fn output_never_repeats_and_depends_on_every_input() {
        let mut a = Mixer::new(&mut FakeCounterSource(0), b"tpm").unwrap();
        let mut b = Mixer::new(&mut FakeCounterSource(0), b"tpm-other").unwrap();
        let mut c = Mixer::new(&mut FakeCounterSource(1), b"tpm").unwrap();
        let (mut x, mut y, mut z, mut x2) = ([0u8; 40], [0u8; 40], [0u8; 40], [0u8; 40]);
        a.generate(&mut x);
        a.generate(&mut x2);
        b.generate(&mut y);
        c.generate(&mut z);
        assert_ne!(x, x2);
        assert_ne!(x, y);
        assert_ne!(x, z);
        assert_ne!(x[..32], x[8..40]);
        let mut a2 = Mixer::new(&mut FakeCounterSource(0), b"tpm").unwrap();
        let mut again = [0u8; 40];
        a2.generate(&mut again);
        assert_eq!(
            x, again,
            "same inputs, same stream (so the inputs are all that matters)"
        );
        assert!(Mixer::new(&mut FakeBrokenSource, b"tpm").is_err());
        assert!(a.reseed(&mut FakeBrokenSource, b"").is_err());
    }
}
