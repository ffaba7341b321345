//! The pre-queue lottery: arrivals before opening are placed in a random order that
//! anyone can check afterwards.
//!
//! Before the first arrival the operator's settings commit to a secret 32-byte seed by
//! publishing `sha256(seed)`. At opening the seed orders the entrants and is revealed.
//! The order is a Fisher–Yates shuffle driven by a hash-based generator specified here
//! (rather than a library RNG whose stream might change between versions), so the
//! draw can be recomputed from the published entrants and seed by `loadtest lottery`
//! or by anyone with a SHA-256 implementation:
//!
//! ```text
//! for i = n-1 down to 1:
//!     j = draw(seed, i, i + 1); swap(entrants[i], entrants[j])
//! draw(seed, i, m): for c = 0, 1, ...:
//!     x = u64_le(sha256("floodgate-lottery-v1" || seed || u64_le(i) || u32_le(c))[0..8])
//!     if x < 2^64 - (2^64 mod m): return x mod m      (rejection keeps it unbiased)
//! ```
//! The entrant at shuffled position k (0-based) gets sequence number `base + k + 1`.
//! Entrants who arrived while the draw was being made (after `opens_at`) follow the
//! drawn ones in arrival order.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seed([u8; 32]);

impl Seed {
    pub fn generate() -> Self {
        let mut b = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut b);
        Self(b)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let v = hex::decode(s).ok()?;
        Some(Self(v.try_into().ok()?))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The public commitment: hex sha256 of the seed bytes.
    pub fn commitment(&self) -> String {
        hex::encode(Sha256::digest(self.0))
    }
}

fn draw(seed: &Seed, i: u64, m: u64) -> u64 {
    let zone = u64::MAX - (u64::MAX % m + 1) % m;
    for c in 0u32.. {
        let mut h = Sha256::new();
        h.update(b"floodgate-lottery-v1");
        h.update(seed.0);
        h.update(i.to_le_bytes());
        h.update(c.to_le_bytes());
        let d = h.finalize();
        let x = u64::from_le_bytes(d[..8].try_into().expect("8 bytes"));
        if x <= zone {
            return x % m;
        }
    }
    unreachable!("a counter of 2^32 rejections")
}

/// The draw: `order[k]` is the pre-queue index of the entrant placed k-th.
pub fn shuffle(seed: &Seed, n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = draw(seed, i as u64, i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

/// What the gateway publishes at `GET /queue/{event}/lottery`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LotteryRecord {
    pub event: String,
    /// Hex sha256 of the seed, published before the first arrival.
    pub commitment: String,
    /// Hex seed, present once the draw has happened.
    pub seed: Option<String>,
    /// Sequence numbers start after this (the queue's tail at opening).
    pub base: u64,
    /// How many entrants (the first `drawn` in arrival order) took part in the draw;
    /// those after them arrived while it was being computed and are queued behind,
    /// in arrival order.
    #[serde(default)]
    pub drawn: u64,
    /// Visitor ids in arrival order.
    pub entrants: Vec<String>,
    /// `seqs[i]` is the sequence number drawn for `entrants[i]` (empty before the draw).
    pub seqs: Vec<u64>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LotteryMismatch {
    #[error("the seed has not been revealed yet")]
    NotRevealed,
    #[error("the revealed seed does not match the published commitment")]
    Commitment,
    #[error("the published draw is not a permutation of the entrants")]
    NotAPermutation,
    #[error("entrant {index} got seq {published}, the seed gives {expected}")]
    Order {
        index: usize,
        published: u64,
        expected: u64,
    },
}

impl LotteryRecord {
    /// Recomputes the draw from the revealed seed and compares it with what was published.
    pub fn verify(&self) -> Result<(), LotteryMismatch> {
        let seed = self
            .seed
            .as_deref()
            .and_then(Seed::from_hex)
            .ok_or(LotteryMismatch::NotRevealed)?;
        if seed.commitment() != self.commitment {
            return Err(LotteryMismatch::Commitment);
        }
        let n = self.entrants.len();
        if self.seqs.len() != n {
            return Err(LotteryMismatch::NotAPermutation);
        }
        let mut seen = vec![false; n];
        for &s in &self.seqs {
            let k = s.checked_sub(self.base + 1).map(|k| k as usize);
            match k {
                Some(k) if k < n && !seen[k] => seen[k] = true,
                _ => return Err(LotteryMismatch::NotAPermutation),
            }
        }
        let drawn = (self.drawn as usize).min(n);
        for index in drawn..n {
            let expected = self.base + index as u64 + 1;
            if self.seqs[index] != expected {
                return Err(LotteryMismatch::Order {
                    index,
                    published: self.seqs[index],
                    expected,
                });
            }
        }
        for (k, &index) in shuffle(&seed, drawn).iter().enumerate() {
            let expected = self.base + k as u64 + 1;
            if self.seqs[index] != expected {
                return Err(LotteryMismatch::Order {
                    index,
                    published: self.seqs[index],
                    expected,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_is_a_deterministic_permutation() {
        let seed = Seed::generate();
        let a = shuffle(&seed, 1000);
        assert_eq!(a, shuffle(&seed, 1000));
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
        assert_ne!(
            a,
            (0..1000).collect::<Vec<_>>(),
            "a shuffle of 1000 left everyone in place"
        );
        assert_ne!(a, shuffle(&Seed::generate(), 1000));
    }

    #[test]
    fn every_position_is_reachable_for_the_first_arrival() {
        // The first arrival must not be favoured: over many seeds it lands everywhere.
        let mut hits = [0u32; 4];
        for _ in 0..2000 {
            let order = shuffle(&Seed::generate(), 4);
            hits[order.iter().position(|&i| i == 0).unwrap()] += 1;
        }
        for h in hits {
            assert!((350..650).contains(&h), "skewed draw: {hits:?}");
        }
    }

    #[test]
    fn commitment_is_sha256_of_seed_bytes() {
        let seed = Seed::from_hex(&"00".repeat(32)).unwrap();
        assert_eq!(
            seed.commitment(),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
    }
}
