//! Determinism: the same configuration and seed give byte-identical captures and traces across runs, thread counts and build profiles (through the goldens); another seed changes what is random.

mod common;

use common::library;
use proptest::prelude::*;
use rayon::prelude::*;
use wirelab::sim::apps::AppConfig;
use wirelab::sim::config::{
    HostConfig, Impairments, LossModel, SegmentConfig, SegmentKind, WorldConfig,
};
use wirelab::sim::world::{run, RunOptions, RunReport};

/// The trace hash and every capture's bytes: what must not change from one run to the next.
fn fingerprint(report: &RunReport) -> (u64, Vec<Vec<u8>>) {
    (
        report.trace_hash(),
        report
            .captures
            .iter()
            .map(|c| c.bytes.clone().expect("in-memory capture"))
            .collect(),
    )
}

fn run_library_with_threads(threads: usize, seed: u64) -> Vec<(u64, Vec<Vec<u8>>)> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let scenarios = library();
    pool.install(|| {
        scenarios
            .par_iter()
            .map(|s| {
                let mut config = s.config.clone();
                config.seed = seed;
                fingerprint(
                    &run(
                        config,
                        &s.apps,
                        &wirelab::builtin_stacks(),
                        &RunOptions::default(),
                    )
                    .unwrap(),
                )
            })
            .collect()
    })
}

#[test]
fn runs_are_identical_across_repeats_and_thread_counts() {
    let one = run_library_with_threads(1, 11);
    let two = run_library_with_threads(2, 11);
    let again = run_library_with_threads(2, 11);
    assert_eq!(one, two);
    assert_eq!(two, again);
}

#[test]
fn another_seed_changes_what_is_random() {
    let scenario = library()
        .into_iter()
        .find(|s| s.name == "tcp/bulk_loss_1pct")
        .expect("the library has tcp/bulk_loss_1pct");
    let hash = |seed| {
        let mut config = scenario.config.clone();
        config.seed = seed;
        run(
            config,
            &scenario.apps,
            &wirelab::builtin_stacks(),
            &RunOptions::default(),
        )
        .unwrap()
        .trace_hash()
    };
    assert_ne!(hash(1), hash(2));
    assert_eq!(hash(2), hash(2));
}

// Byte-for-byte comparison with the goldens lives in tests/scenarios.rs (debug build, with
// debug assertions and overflow checks). A difference between build profiles shows there
// against `.ci/run`'s second pass of `cargo xtask scenarios` from the release build.

fn impairments() -> impl Strategy<Value = Impairments> {
    (
        0u64..3000,
        0u64..500,
        0.0f64..0.2,
        0.0f64..0.1,
        0.0f64..0.1,
        0.0f64..0.05,
        prop::option::of(1_000_000u64..1_000_000_000),
    )
        .prop_map(
            |(latency_us, jitter_us, loss, dup, reorder, corrupt, bandwidth)| Impairments {
                latency_us,
                jitter_us,
                loss: LossModel::Independent { probability: loss },
                duplicate_probability: dup,
                reorder_probability: reorder,
                reorder_delay_us: 700,
                corrupt_probability: corrupt,
                bandwidth_bits_per_s: bandwidth,
                queue_limit_bytes: None,
                mtu_bytes: None,
            },
        )
}

fn world() -> impl Strategy<Value = (WorldConfig, Vec<AppConfig>)> {
    (
        any::<u64>(),
        prop_oneof![
            Just(SegmentKind::Hub),
            Just(SegmentKind::Switch),
            Just(SegmentKind::PointToPoint)
        ],
        2usize..6,
        prop::collection::vec(impairments(), 12),
        0u64..20_000,
    )
        .prop_map(|(seed, kind, hosts, links, bytes)| {
            let hosts = if kind == SegmentKind::PointToPoint {
                2
            } else {
                hosts
            };
            let mut config = WorldConfig::new(seed);
            config.time_limit_us = 120_000_000;
            config.segments.push(SegmentConfig {
                name: "net".into(),
                kind,
            });
            for i in 0..hosts {
                let mut host = HostConfig::new(format!("n{i}"), "net")
                    .with_ipv4(&format!("10.1.0.{}/24", i + 1));
                host.link.to_segment = links[2 * i].clone();
                host.link.from_segment = links[2 * i + 1].clone();
                config.hosts.push(host);
            }
            let mut apps = vec![
                AppConfig::TcpServer {
                    host: "n0".into(),
                    port: 80,
                    echo: true,
                    backlog: 2,
                    reply_bytes: 0,
                    read_from_us: 0,
                    close_at_us: None,
                },
                AppConfig::UdpEchoServer {
                    host: "n0".into(),
                    port: 7,
                },
            ];
            for i in 1..hosts {
                apps.push(AppConfig::TcpClient {
                    host: format!("n{i}"),
                    target: "10.1.0.1:80".parse().unwrap(),
                    start_us: i as u64 * 300,
                    send_bytes: bytes,
                    expect_echo: true,
                    expect_bytes: 0,
                    keepalive_us: None,
                    hold_until_us: None,
                    finish: wirelab::sim::apps::TcpFinish::Close,
                    timeout_us: None,
                });
                apps.push(AppConfig::Ping {
                    host: format!("n{i}"),
                    target: "10.1.0.1".parse().unwrap(),
                    count: 3,
                    interval_us: 20_000,
                    payload_bytes: 40,
                    start_us: 0,
                    timeout_us: 50_000,
                });
            }
            (config, apps)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random topologies and impairments, run twice: the same trace and captures, every time.
    #[test]
    fn random_worlds_replay_identically((config, apps) in world()) {
        let first = run(config.clone(), &apps, &wirelab::builtin_stacks(), &RunOptions::default()).unwrap();
        let second = run(config, &apps, &wirelab::builtin_stacks(), &RunOptions::default()).unwrap();
        prop_assert_eq!(&first.outcome, &second.outcome);
        prop_assert_eq!(&first.stats, &second.stats);
        prop_assert_eq!(fingerprint(&first), fingerprint(&second));
    }
}
