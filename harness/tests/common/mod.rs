//! What the tests of mixed-stack worlds share (`tests/lwip.rs`, `tests/linux.rs`): the library's two hosts on chosen stacks, the applications they run, and the checks every such run must pass.
#![allow(
    dead_code,
    reason = "each test binary that includes this module uses a part of it"
)]

use wirelab::sim::apps::AppConfig;
use wirelab::sim::config::{SegmentKind, WorldConfig};
use wirelab::sim::library::two_hosts;
use wirelab::sim::world::{Outcome, RunReport};

/// The library's two hosts on a switch, with the client and the server on the stacks given.
pub fn pair(seed: u64, client: &'static str, server: &'static str) -> WorldConfig {
    let mut config = two_hosts(seed, SegmentKind::Switch);
    config.hosts[0].stack = client.to_string();
    config.hosts[1].stack = server.to_string();
    config
}

/// The run completed, no application saw an error, and the trace oracles (checksums, MACs,
/// TCP sanity) hold for every stack's frames.
pub fn assert_clean(report: &RunReport, what: &str) {
    assert_eq!(report.outcome, Outcome::Completed, "{what}");
    for app in &report.apps {
        assert!(
            app.errors.is_empty(),
            "{what}: {} on {}: {:?}",
            app.kind,
            app.host,
            app.errors
        );
    }
    let macs: Vec<wirelab::stack::MacAddr> = (0..report.names.hosts.len())
        .map(|i| wirelab::stack::MacAddr::local_from_index(i as u32 + 1))
        .collect();
    let violations = wirelab::judge::oracle::check(&report.trace, &report.names, &macs);
    assert!(violations.is_empty(), "{what}: {violations:?}");
}

/// `count` pings of 56 bytes from `host` to `target`, one every `interval_us`.
pub fn ping(host: &str, target: &str, count: u32, interval_us: u64, timeout_us: u64) -> AppConfig {
    AppConfig::Ping {
        host: host.into(),
        target: target.parse().unwrap(),
        count,
        interval_us,
        payload_bytes: 56,
        start_us: 0,
        timeout_us,
    }
}

/// An echo server on the server's port 7, and ten 64-byte round trips from the client to
/// `target`.
pub fn udp_ping_pong(target: &str, timeout_us: u64) -> Vec<AppConfig> {
    vec![
        AppConfig::UdpEchoServer {
            host: "server".into(),
            port: 7,
        },
        AppConfig::UdpPingPong {
            host: "client".into(),
            target: target.parse().unwrap(),
            count: 10,
            payload_bytes: 64,
            start_us: 0,
            timeout_us,
        },
    ]
}

/// Every scenario of the library (`scenarios/`), read with the built-in stacks.
pub fn library() -> Vec<wirelab::Scenario> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let found = wirelab::scenario::folder::find(&[root], &wirelab::builtin_stacks());
    assert!(found.errors.is_empty(), "{}", found.errors.join("\n"));
    found.scenarios
}
