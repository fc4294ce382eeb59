//! The impairment pipeline of one link direction: link state, MTU, loss, corruption, duplication, bandwidth and queue, latency and jitter, reordering, in that order.

use std::collections::VecDeque;

use crate::config::{Impairments, LossModel};
use crate::rng::{probability_threshold, SimRng};

const ETHERNET_HEADER_BYTES: usize = 14;
/// When a bandwidth is set and no queue limit is, the queue holds what Linux's default
/// `txqueuelen` of 1000 full frames would.
pub const DEFAULT_QUEUE_LIMIT_BYTES: u64 = 1000 * 1514;

/// Why a frame did not get through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    LinkDown,
    /// The IP packet was larger than the link's MTU.
    Mtu,
    Loss,
    /// The drop-tail queue in front of the link was full.
    QueueFull,
    /// Sender and receiver are in different groups of a partition.
    Partition,
}

impl DropReason {
    pub fn name(self) -> &'static str {
        match self {
            DropReason::LinkDown => "link down",
            DropReason::Mtu => "over mtu",
            DropReason::Loss => "loss",
            DropReason::QueueFull => "queue full",
            DropReason::Partition => "partition",
        }
    }
}

/// One decision the pipeline took about one frame; each becomes a trace event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Decision {
    Dropped(DropReason),
    /// One bit flipped at this bit offset from the start of the frame.
    Corrupted {
        bit_offset: u32,
    },
    Duplicated,
    /// The frame waited this long behind others for the link.
    Queued {
        wait_us: u64,
    },
    /// Jitter added this much to the configured latency.
    Jittered {
        extra_us: u64,
    },
    /// Held back this long so that later frames overtake it.
    Reordered {
        held_us: u64,
    },
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Decision::Dropped(reason) => write!(f, "dropped ({})", reason.name()),
            Decision::Corrupted { bit_offset } => write!(
                f,
                "corrupted (bit {} of byte {})",
                bit_offset % 8,
                bit_offset / 8
            ),
            Decision::Duplicated => write!(f, "duplicated"),
            Decision::Queued { wait_us } => write!(f, "queued {wait_us}us"),
            Decision::Jittered { extra_us } => write!(f, "jitter +{extra_us}us"),
            Decision::Reordered { held_us } => write!(f, "reordered (held {held_us}us)"),
        }
    }
}

/// What becomes of a frame: up to two copies (a duplicate makes two), each with its arrival time.
///
/// Plain integers rather than `Option`s: reading back an `Option<u64>` whose tag and value were
/// stored separately defeats the CPU's store forwarding, which showed in profiles of every
/// frame's path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Verdict {
    times_us: [u64; 2],
    copies: u8,
}

impl Verdict {
    fn one(arrival_us: u64) -> Verdict {
        Verdict {
            times_us: [arrival_us, 0],
            copies: 1,
        }
    }

    pub fn dropped(&self) -> bool {
        self.copies == 0
    }

    /// The arrival time of each copy that gets through, in the order they were scheduled.
    pub fn arrivals_us(&self) -> &[u64] {
        &self.times_us[..usize::from(self.copies)]
    }
}

/// The state of one direction of one link.
#[derive(Clone, Debug)]
pub struct LinkPipeline {
    config: Impairments,
    /// Nothing to decide: every frame arrives after `latency_us`, untouched.
    transparent_latency: bool,
    /// Configured, but unable to change anything beyond the constant latency: every rule
    /// that would draw has probability zero, and there is no bandwidth or jitter. Such a
    /// link draws nothing and decides nothing, so a short path that keeps the MTU check and
    /// the arrival order gives the same results as the full pipeline.
    passing: bool,
    loss_threshold: u64,
    duplicate_threshold: u64,
    reorder_threshold: u64,
    corrupt_threshold: u64,
    ge_thresholds: [u64; 4],
    ge_bad: bool,
    rng: SimRng,
    pub up: bool,
    /// When the link finishes serializing what it has accepted, in nanoseconds.
    busy_until_ns: u64,
    /// Start times (ns) and sizes of frames waiting for the link, for the drop-tail limit.
    waiting: VecDeque<(u64, u64)>,
    waiting_bytes: u64,
    /// The latest arrival handed out, so that jitter never reorders frames by itself.
    last_arrival_us: u64,
}

impl LinkPipeline {
    pub fn new(config: Impairments, rng: SimRng) -> LinkPipeline {
        let mut pipeline = LinkPipeline {
            config: Impairments::default(),
            transparent_latency: true,
            passing: true,
            loss_threshold: 0,
            duplicate_threshold: 0,
            reorder_threshold: 0,
            corrupt_threshold: 0,
            ge_thresholds: [0; 4],
            ge_bad: false,
            rng,
            up: true,
            busy_until_ns: 0,
            waiting: VecDeque::new(),
            waiting_bytes: 0,
            last_arrival_us: 0,
        };
        pipeline.set_config(config);
        pipeline
    }

    /// Whether `process` may change a frame's bytes.
    pub fn may_corrupt(&self) -> bool {
        self.corrupt_threshold != 0
    }

    pub fn config(&self) -> &Impairments {
        &self.config
    }

    /// Replaces the settings; the link's queue, clock and loss state carry over.
    pub fn set_config(&mut self, config: Impairments) {
        let mut without_latency = config.clone();
        without_latency.latency_us = 0;
        self.transparent_latency = without_latency.is_transparent();
        self.loss_threshold = match config.loss {
            LossModel::Independent { probability } => probability_threshold(probability),
            _ => 0,
        };
        self.ge_thresholds = match config.loss {
            LossModel::GilbertElliott {
                good_to_bad_probability,
                bad_to_good_probability,
                loss_in_good_probability,
                loss_in_bad_probability,
            } => [
                probability_threshold(good_to_bad_probability),
                probability_threshold(bad_to_good_probability),
                probability_threshold(loss_in_good_probability),
                probability_threshold(loss_in_bad_probability),
            ],
            _ => [0; 4],
        };
        self.duplicate_threshold = probability_threshold(config.duplicate_probability);
        self.reorder_threshold = probability_threshold(config.reorder_probability);
        self.corrupt_threshold = probability_threshold(config.corrupt_probability);
        // Gilbert-Elliott moves between its states with draws even when it cannot lose.
        let loss_draws = match config.loss {
            LossModel::None => false,
            LossModel::Independent { .. } => self.loss_threshold != 0,
            LossModel::GilbertElliott { .. } => true,
        };
        self.passing = !loss_draws
            && self.corrupt_threshold == 0
            && self.duplicate_threshold == 0
            && self.reorder_threshold == 0
            && config.bandwidth_bits_per_s.is_none()
            && config.jitter_us == 0;
        self.config = config;
    }

    /// Decides the fate of `frame`, sent into this link direction at `now_us`. Corruption
    /// changes `frame` in place. Decisions are appended to `decisions`.
    ///
    /// Inlined for the common case of a link that is up, has no MTU and draws nothing: it
    /// only delays frames, in order. The rest of the pipeline is a call.
    #[inline]
    pub fn process(
        &mut self,
        now_us: u64,
        frame: &mut [u8],
        decisions: &mut Vec<Decision>,
    ) -> Verdict {
        if self.up {
            if self.transparent_latency {
                return Verdict::one(now_us + self.config.latency_us);
            }
            if self.passing && self.config.mtu_bytes.is_none() {
                return self.pass(now_us);
            }
        }
        self.process_in_full(now_us, frame, decisions)
    }

    /// What `schedule` does when nothing draws: latency, and order kept.
    #[inline]
    fn pass(&mut self, now_us: u64) -> Verdict {
        let arrival_us = now_us
            .saturating_add(self.config.latency_us)
            .max(self.last_arrival_us);
        self.last_arrival_us = arrival_us;
        Verdict::one(arrival_us)
    }

    #[inline(never)]
    fn process_in_full(
        &mut self,
        now_us: u64,
        frame: &mut [u8],
        decisions: &mut Vec<Decision>,
    ) -> Verdict {
        if !self.up {
            decisions.push(Decision::Dropped(DropReason::LinkDown));
            return Verdict::default();
        }
        if self.transparent_latency {
            return Verdict::one(now_us + self.config.latency_us);
        }
        if let Some(mtu) = self.config.mtu_bytes {
            if frame.len().saturating_sub(ETHERNET_HEADER_BYTES) > mtu as usize {
                decisions.push(Decision::Dropped(DropReason::Mtu));
                return Verdict::default();
            }
        }
        if self.passing {
            return self.pass(now_us);
        }
        if self.lose() {
            decisions.push(Decision::Dropped(DropReason::Loss));
            return Verdict::default();
        }
        if self.rng.chance(self.corrupt_threshold) {
            if let Some(bit_offset) = corrupt(frame, &mut self.rng) {
                decisions.push(Decision::Corrupted { bit_offset });
            }
        }
        let copies = if self.rng.chance(self.duplicate_threshold) {
            decisions.push(Decision::Duplicated);
            2
        } else {
            1
        };
        let mut verdict = Verdict::default();
        for _ in 0..copies {
            // A copy the queue drops leaves no gap: the other one comes first.
            if let Some(arrival_us) = self.schedule(now_us, frame.len() as u64, decisions) {
                verdict.times_us[usize::from(verdict.copies)] = arrival_us;
                verdict.copies += 1;
            }
        }
        verdict
    }

    fn lose(&mut self) -> bool {
        match self.config.loss {
            LossModel::None => false,
            LossModel::Independent { .. } => self.rng.chance(self.loss_threshold),
            LossModel::GilbertElliott { .. } => {
                let [to_bad, to_good, loss_good, loss_bad] = self.ge_thresholds;
                // The state moves first, then the frame meets the state's loss rate.
                if self.ge_bad {
                    if self.rng.chance(to_good) {
                        self.ge_bad = false;
                    }
                } else if self.rng.chance(to_bad) {
                    self.ge_bad = true;
                }
                self.rng
                    .chance(if self.ge_bad { loss_bad } else { loss_good })
            }
        }
    }

    /// Bandwidth, queue, latency, jitter and reordering for one copy of a frame.
    fn schedule(&mut self, now_us: u64, bytes: u64, decisions: &mut Vec<Decision>) -> Option<u64> {
        let mut departure_us = now_us;
        if let Some(bits_per_s) = self.config.bandwidth_bits_per_s {
            let now_ns = now_us.saturating_mul(1000);
            while self
                .waiting
                .front()
                .is_some_and(|&(start, _)| start <= now_ns)
            {
                let (_, size) = self.waiting.pop_front().expect("checked above");
                self.waiting_bytes -= size;
            }
            let limit = self
                .config
                .queue_limit_bytes
                .unwrap_or(DEFAULT_QUEUE_LIMIT_BYTES);
            let start_ns = self.busy_until_ns.max(now_ns);
            if start_ns > now_ns {
                if self.waiting_bytes + bytes > limit {
                    decisions.push(Decision::Dropped(DropReason::QueueFull));
                    return None;
                }
                self.waiting.push_back((start_ns, bytes));
                self.waiting_bytes += bytes;
                decisions.push(Decision::Queued {
                    wait_us: (start_ns - now_ns).div_ceil(1000),
                });
            }
            let serialization_ns = serialization_ns(bytes, bits_per_s);
            self.busy_until_ns = start_ns.saturating_add(serialization_ns);
            departure_us = self.busy_until_ns.div_ceil(1000);
        }
        let mut arrival_us = departure_us.saturating_add(self.config.latency_us);
        if self.config.jitter_us > 0 {
            let extra_us = self.rng.below(self.config.jitter_us + 1);
            if extra_us > 0 {
                decisions.push(Decision::Jittered { extra_us });
            }
            arrival_us = arrival_us.saturating_add(extra_us);
        }
        if self.rng.chance(self.reorder_threshold) && self.config.reorder_delay_us > 0 {
            let held_us = self.config.reorder_delay_us;
            decisions.push(Decision::Reordered { held_us });
            return Some(arrival_us.saturating_add(held_us));
        }
        arrival_us = arrival_us.max(self.last_arrival_us);
        self.last_arrival_us = arrival_us;
        Some(arrival_us)
    }
}

/// How long `bytes` take on a link of `bits_per_s`, rounded up, in nanoseconds. 64-bit
/// arithmetic serves every frame-sized input; 128-bit (a slow division) only the rest.
fn serialization_ns(bytes: u64, bits_per_s: u64) -> u64 {
    match bytes.checked_mul(8 * 1_000_000_000) {
        Some(bit_ns) if bits_per_s > 0 => bit_ns.div_ceil(bits_per_s).min(u64::MAX / 4),
        _ => (u128::from(bytes) * 8 * 1_000_000_000)
            .div_ceil(u128::from(bits_per_s))
            .min(u128::from(u64::MAX / 4)) as u64,
    }
}

/// The byte range of `frame` that the receiver's checksums cover: the IPv4 packet (header
/// checksum plus transport checksum), or the IPv6 payload (transport checksum). Frames of other
/// kinds, ARP among them, have no checksum to catch a flipped bit and are left alone.
pub fn checksummed_range(frame: &[u8]) -> Option<std::ops::Range<usize>> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let ip = frame.get(ETHERNET_HEADER_BYTES..)?;
    match ethertype {
        0x0800 => {
            let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
            let end = ETHERNET_HEADER_BYTES + total.min(ip.len());
            (end > ETHERNET_HEADER_BYTES + 20).then_some(ETHERNET_HEADER_BYTES..end)
        }
        0x86dd => {
            let payload = usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]));
            let start = ETHERNET_HEADER_BYTES + 40;
            let end = (start + payload).min(frame.len());
            (end > start).then_some(start..end)
        }
        _ => None,
    }
}

fn corrupt(frame: &mut [u8], rng: &mut SimRng) -> Option<u32> {
    let range = checksummed_range(frame)?;
    let bits = (range.len() * 8) as u64;
    let bit = range.start as u64 * 8 + rng.below(bits);
    frame[(bit / 8) as usize] ^= 1 << (bit % 8);
    Some(bit as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_frame(len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[12] = 0x08;
        f[14] = 0x45;
        let total = (len - 14) as u16;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f
    }

    fn pipeline(config: Impairments) -> LinkPipeline {
        LinkPipeline::new(config, SimRng::from_seed(42))
    }

    #[test]
    fn a_transparent_link_only_adds_latency() {
        let mut p = pipeline(Impairments {
            latency_us: 250,
            ..Impairments::default()
        });
        let mut d = Vec::new();
        let v = p.process(1000, &mut ipv4_frame(100), &mut d);
        assert_eq!(v.arrivals_us(), [1250]);
        assert!(d.is_empty());
    }

    #[test]
    fn the_short_path_of_a_passing_link_matches_the_full_pipeline() {
        let passing = Impairments {
            latency_us: 300,
            mtu_bytes: Some(1000),
            loss: LossModel::Independent { probability: 0.0 },
            duplicate_probability: 0.0,
            reorder_delay_us: 50,
            ..Impairments::default()
        };
        let jittery = Impairments {
            jitter_us: 900,
            ..passing.clone()
        };
        let mut short = pipeline(jittery.clone());
        let mut full = pipeline(jittery.clone());
        assert!(!short.passing);
        let mut times = SimRng::from_seed(7);
        let mut now = 0;
        for step in 0..400 {
            if step % 100 == 50 {
                short.set_config(passing.clone());
                full.set_config(passing.clone());
                assert!(short.passing);
                full.passing = false;
            } else if step % 100 == 0 {
                short.set_config(jittery.clone());
                full.set_config(jittery.clone());
            }
            now += times.below(200);
            let len = 60 + times.below(1100) as usize;
            let (mut ds, mut df) = (Vec::new(), Vec::new());
            let vs = short.process(now, &mut ipv4_frame(len), &mut ds);
            let vf = full.process(now, &mut ipv4_frame(len), &mut df);
            assert_eq!((vs, &ds), (vf, &df), "step {step}");
        }
        assert_eq!(short.rng.next_u64(), full.rng.next_u64());
    }

    #[test]
    fn serialization_time_is_the_same_in_64_and_128_bits() {
        let wide = |bytes: u64, bps: u64| {
            (u128::from(bytes) * 8 * 1_000_000_000)
                .div_ceil(u128::from(bps))
                .min(u128::from(u64::MAX / 4)) as u64
        };
        let mut r = SimRng::from_seed(11);
        for _ in 0..10_000 {
            let bytes = r.below(1 << 20);
            let bps = 1 + r.below(100_000_000_000);
            assert_eq!(serialization_ns(bytes, bps), wide(bytes, bps));
        }
        for (bytes, bps) in [
            (u64::MAX, 1),
            (u64::MAX / 8, 3),
            (1514, 1),
            (0, 7),
            (1, u64::MAX),
        ] {
            assert_eq!(serialization_ns(bytes, bps), wide(bytes, bps));
        }
    }

    #[test]
    fn down_links_and_oversized_frames_drop() {
        let mut p = pipeline(Impairments {
            mtu_bytes: Some(576),
            ..Impairments::default()
        });
        let mut d = Vec::new();
        assert!(p.process(0, &mut ipv4_frame(14 + 577), &mut d).dropped());
        assert!(!p.process(0, &mut ipv4_frame(14 + 576), &mut d).dropped());
        p.up = false;
        assert!(p.process(0, &mut ipv4_frame(60), &mut d).dropped());
        assert_eq!(
            d,
            vec![
                Decision::Dropped(DropReason::Mtu),
                Decision::Dropped(DropReason::LinkDown)
            ]
        );
    }

    #[test]
    fn bandwidth_serializes_and_the_queue_drops_its_tail() {
        // 1500 bytes at 12 Mbit/s take exactly 1 ms.
        let mut p = pipeline(Impairments {
            bandwidth_bits_per_s: Some(12_000_000),
            queue_limit_bytes: Some(3000),
            ..Impairments::default()
        });
        let mut d = Vec::new();
        let arrivals: Vec<Option<u64>> = (0..5)
            .map(|_| {
                p.process(0, &mut ipv4_frame(1500), &mut d)
                    .arrivals_us()
                    .first()
                    .copied()
            })
            .collect();
        assert_eq!(
            arrivals,
            vec![Some(1000), Some(2000), Some(3000), None, None]
        );
        assert_eq!(d[0], Decision::Queued { wait_us: 1000 });
        assert_eq!(d[2], Decision::Dropped(DropReason::QueueFull));
        // Once the queue drains, frames are accepted again.
        assert_eq!(
            p.process(2500, &mut ipv4_frame(1500), &mut d)
                .arrivals_us()
                .first()
                .copied(),
            Some(4000)
        );
    }

    #[test]
    fn corruption_flips_one_bit_inside_the_checksummed_range() {
        let mut p = pipeline(Impairments {
            corrupt_probability: 1.0,
            ..Impairments::default()
        });
        for _ in 0..100 {
            let original = ipv4_frame(200);
            let mut frame = original.clone();
            let mut d = Vec::new();
            p.process(0, &mut frame, &mut d);
            let flipped: u32 = original
                .iter()
                .zip(&frame)
                .map(|(a, b)| (a ^ b).count_ones())
                .sum();
            assert_eq!(flipped, 1);
            let Decision::Corrupted { bit_offset } = d[0] else {
                panic!("expected a corruption decision, got {d:?}")
            };
            assert!((14 * 8..200 * 8).contains(&bit_offset));
        }
        // An ARP frame has no checksum and is left alone.
        let mut arp = vec![0u8; 60];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        let mut d = Vec::new();
        p.process(0, &mut arp, &mut d);
        assert!(d.is_empty());
    }

    #[test]
    fn loss_rates_follow_the_configuration() {
        let mut p = pipeline(Impairments {
            loss: LossModel::Independent { probability: 0.1 },
            ..Impairments::default()
        });
        let mut d = Vec::new();
        let lost = (0..20_000)
            .filter(|_| p.process(0, &mut ipv4_frame(60), &mut d).dropped())
            .count();
        assert!((1800..2200).contains(&lost), "{lost} of 20000 lost");

        // Gilbert-Elliott losses come in bursts: longer runs than independent loss at the
        // same average rate.
        let mut p = pipeline(Impairments {
            loss: LossModel::GilbertElliott {
                good_to_bad_probability: 0.01,
                bad_to_good_probability: 0.2,
                loss_in_good_probability: 0.0,
                loss_in_bad_probability: 0.9,
            },
            ..Impairments::default()
        });
        let outcomes: Vec<bool> = (0..50_000)
            .map(|_| p.process(0, &mut ipv4_frame(60), &mut d).dropped())
            .collect();
        let losses = outcomes.iter().filter(|&&l| l).count();
        let bursts = outcomes.windows(2).filter(|w| w[1] && !w[0]).count();
        let mean_burst = losses as f64 / bursts as f64;
        assert!(mean_burst > 2.0, "mean burst {mean_burst}");
    }

    #[test]
    fn jitter_keeps_order_and_reordering_breaks_it() {
        let mut p = pipeline(Impairments {
            latency_us: 100,
            jitter_us: 50,
            ..Impairments::default()
        });
        let mut d = Vec::new();
        let arrivals: Vec<u64> = (0..200)
            .map(|t| p.process(t, &mut ipv4_frame(60), &mut d).arrivals_us()[0])
            .collect();
        assert!(arrivals.windows(2).all(|w| w[0] <= w[1]));
        assert!(d.iter().any(|x| matches!(x, Decision::Jittered { .. })));

        let mut p = pipeline(Impairments {
            latency_us: 100,
            reorder_probability: 0.2,
            reorder_delay_us: 30,
            ..Impairments::default()
        });
        let arrivals: Vec<u64> = (0..200)
            .map(|t| p.process(t * 10, &mut ipv4_frame(60), &mut d).arrivals_us()[0])
            .collect();
        assert!(arrivals.windows(2).any(|w| w[0] > w[1]));
    }

    #[test]
    fn duplication_yields_two_copies() {
        let mut p = pipeline(Impairments {
            duplicate_probability: 1.0,
            latency_us: 5,
            ..Impairments::default()
        });
        let mut d = Vec::new();
        let v = p.process(0, &mut ipv4_frame(60), &mut d);
        assert_eq!(v.arrivals_us(), [5, 5]);
        assert_eq!(d, vec![Decision::Duplicated]);
    }
}
