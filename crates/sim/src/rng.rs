//! Seeded randomness: one root seed per run, and a labelled, independent stream per component.
//!
//! Streams are derived from the root seed and a label (`host/h1`, `link/h1/up`), so adding a
//! host or a rule never shifts the randomness any other component sees.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// xoshiro256++: small, fast, and fully specified, so every platform draws the same numbers.
#[derive(Clone, Debug)]
pub struct SimRng {
    state: [u64; 4],
}

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A 64-bit seed for the component called `label` in the run seeded with `root_seed`.
pub fn derive_seed(root_seed: u64, label: &str) -> u64 {
    xxh3_64_with_seed(label.as_bytes(), root_seed)
}

impl SimRng {
    pub fn from_seed(seed: u64) -> SimRng {
        let mut x = seed;
        let state = [
            splitmix64(&mut x),
            splitmix64(&mut x),
            splitmix64(&mut x),
            splitmix64(&mut x),
        ];
        SimRng { state }
    }

    /// The stream for the component called `label` in the run seeded with `root_seed`.
    pub fn for_label(root_seed: u64, label: &str) -> SimRng {
        SimRng::from_seed(derive_seed(root_seed, label))
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// True with the probability that `threshold` encodes (see [`probability_threshold`]).
    pub fn chance(&mut self, threshold: u64) -> bool {
        threshold == u64::MAX || (threshold != 0 && self.next_u64() < threshold)
    }

    /// A uniform integer in `0..bound` (`bound` > 0), without modulo bias.
    pub fn below(&mut self, bound: u64) -> u64 {
        debug_assert!(bound > 0);
        // Lemire's multiply-and-reject method.
        loop {
            let x = self.next_u64();
            let m = u128::from(x) * u128::from(bound);
            let low = m as u64;
            if low >= bound.wrapping_neg() % bound {
                return (m >> 64) as u64;
            }
        }
    }
}

/// Encodes a probability in [0, 1] as a threshold on a uniform `u64`, so that a decision on the
/// hot path is one comparison. 1.0 maps to "always" (`u64::MAX` and a special case).
pub fn probability_threshold(probability: f64) -> u64 {
    if probability <= 0.0 {
        0
    } else if probability >= 1.0 {
        u64::MAX
    } else {
        (probability * 18_446_744_073_709_551_616.0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labelled_streams_are_independent_and_reproducible() {
        let a1: Vec<u64> = (0..4)
            .map({
                let mut r = SimRng::for_label(7, "host/a");
                move |_| r.next_u64()
            })
            .collect();
        let a2: Vec<u64> = (0..4)
            .map({
                let mut r = SimRng::for_label(7, "host/a");
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..4)
            .map({
                let mut r = SimRng::for_label(7, "host/b");
                move |_| r.next_u64()
            })
            .collect();
        let other_seed: Vec<u64> = (0..4)
            .map({
                let mut r = SimRng::for_label(8, "host/a");
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a1, a2);
        assert_ne!(a1, b);
        assert_ne!(a1, other_seed);
    }

    #[test]
    fn xoshiro_matches_its_reference_sequence() {
        // Reference values of xoshiro256++ from the state {1, 2, 3, 4} (the authors' C code).
        let mut r = SimRng {
            state: [1, 2, 3, 4],
        };
        let got: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        assert_eq!(got, vec![41943041, 58720359, 3588806011781223]);
    }

    #[test]
    fn chance_follows_the_probability() {
        let mut r = SimRng::from_seed(1);
        let threshold = probability_threshold(0.25);
        let hits = (0..100_000).filter(|_| r.chance(threshold)).count();
        assert!((24_000..26_000).contains(&hits), "{hits} hits of 100000");
        let never = probability_threshold(0.0);
        let always = probability_threshold(1.0);
        assert_eq!((0..1000).filter(|_| r.chance(never)).count(), 0);
        assert_eq!((0..1000).filter(|_| r.chance(always)).count(), 1000);
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = SimRng::from_seed(3);
        let mut seen = [false; 7];
        for _ in 0..1000 {
            let x = r.below(7) as usize;
            seen[x] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}
