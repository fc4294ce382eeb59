//! lwIP hosts in simulated worlds: pings, UDP and TCP between lwIP and smoltcp in both directions, byte-identical captures for one seed, and hundreds of lwIP hosts in one run.
//!
//! Every test needs Debian's lwIP (`apt-get install liblwip-dev liblwip0`); without it each
//! prints one `skipped:` line saying so and passes, unless `WIRELAB_NO_SKIP` is set (as CI
//! sets it), which makes a missing lwIP a failure.

mod common;

use std::net::IpAddr;

use wirelab::sim::apps::AppConfig;
use wirelab::sim::config::TraceLevel;
use wirelab::sim::library::{host_ip, switch_of, tcp_transfer_apps};
use wirelab::sim::world::{run, Outcome, RunOptions};

use common::{assert_clean, pair, ping, udp_ping_pong};

/// What this machine lacks for lwIP hosts, if anything.
fn lwip_missing() -> Option<String> {
    wirelab::backends::lwip::available()
        .err()
        .map(|e| e.to_string())
}

fn an_lwip_host_answers_smoltcp_pings_over_ipv4_and_ipv6() {
    for target in ["10.0.0.2", "2001:db8::2"] {
        let config = pair(1, "smoltcp", "lwip");
        let report = run(
            config,
            &[ping("client", target, 4, 1_000_000, 1_000_000)],
            &wirelab::builtin_stacks(),
            &RunOptions::default(),
        )
        .unwrap();
        assert_clean(&report, target);
        assert_eq!(report.apps[0].counter("replies_received"), 4, "{target}");
    }
}

fn an_lwip_host_pings_a_smoltcp_host() {
    for target in ["10.0.0.2", "2001:db8::2"] {
        let config = pair(2, "lwip", "smoltcp");
        let report = run(
            config,
            &[ping("client", target, 3, 1_000_000, 1_000_000)],
            &wirelab::builtin_stacks(),
            &RunOptions::default(),
        )
        .unwrap();
        assert_clean(&report, target);
        assert_eq!(report.apps[0].counter("replies_received"), 3, "{target}");
    }
}

fn udp_ping_pong_between_lwip_and_smoltcp_both_ways() {
    for (client, server) in [("lwip", "smoltcp"), ("smoltcp", "lwip"), ("lwip", "lwip")] {
        for target in ["10.0.0.2:7", "[2001:db8::2]:7"] {
            let what = format!("{client:?} -> {server:?} {target}");
            let report = run(
                pair(3, client, server),
                &udp_ping_pong(target, 100_000),
                &wirelab::builtin_stacks(),
                &RunOptions::default(),
            )
            .unwrap();
            assert_clean(&report, &what);
            assert_eq!(report.apps[1].counter("round_trips"), 10, "{what}");
            assert_eq!(report.apps[1].counter("timeouts"), 0, "{what}");
        }
    }
}

fn tcp_transfers_between_lwip_and_smoltcp_deliver_every_byte() {
    let bytes = 1 << 20;
    for (client, server) in [("smoltcp", "lwip"), ("lwip", "smoltcp"), ("lwip", "lwip")] {
        let what = format!("{client:?} -> {server:?}");
        let report = run(
            pair(4, client, server),
            &tcp_transfer_apps(bytes),
            &wirelab::builtin_stacks(),
            &RunOptions::default(),
        )
        .unwrap();
        assert_clean(&report, &what);
        assert_eq!(report.apps[0].counter("bytes_verified"), bytes, "{what}");
        assert_eq!(report.apps[1].counter("bytes_sent"), bytes, "{what}");
        assert_eq!(report.apps[0].counter("connections_closed"), 1, "{what}");
    }
}

fn a_tcp_echo_with_an_lwip_server_comes_back_whole_over_ipv6() {
    let mut apps = tcp_transfer_apps(200_000);
    if let AppConfig::TcpServer { echo, .. } = &mut apps[0] {
        *echo = true;
    }
    if let AppConfig::TcpClient {
        target,
        expect_echo,
        ..
    } = &mut apps[1]
    {
        *target = "[2001:db8::2]:5001".parse().unwrap();
        *expect_echo = true;
    }
    let report = run(
        pair(5, "smoltcp", "lwip"),
        &apps,
        &wirelab::builtin_stacks(),
        &RunOptions::default(),
    )
    .unwrap();
    assert_clean(&report, "echo");
    assert_eq!(report.apps[1].counter("bytes_verified"), 200_000);
}

fn a_connection_to_a_closed_lwip_port_is_refused() {
    let mut apps = tcp_transfer_apps(1000);
    apps.remove(0);
    let report = run(
        pair(6, "smoltcp", "lwip"),
        &apps,
        &wirelab::builtin_stacks(),
        &RunOptions::default(),
    )
    .unwrap();
    assert_eq!(report.outcome, Outcome::Completed);
    assert_eq!(report.apps[0].errors.len(), 1);
    assert_eq!(report.apps[0].errors[0].1, "connection refused");
    // And the other way round: lwIP's client sees smoltcp's RST.
    let report = run(
        pair(6, "lwip", "smoltcp"),
        &apps,
        &wirelab::builtin_stacks(),
        &RunOptions::default(),
    )
    .unwrap();
    assert_eq!(report.apps[0].errors[0].1, "connection refused");
}

fn the_same_seed_gives_byte_identical_captures_with_lwip_hosts() {
    let captures = |seed: u64| {
        let mut apps = tcp_transfer_apps(100_000);
        apps.push(ping("client", "10.0.0.2", 2, 1_000_000, 1_000_000));
        let mut config = pair(seed, "lwip", "lwip");
        // A smoltcp bystander too: mixed worlds must be as reproducible.
        config
            .hosts
            .push(wirelab::sim::config::HostConfig::new("third", "lan").with_ipv4("10.0.0.3/24"));
        apps.push(AppConfig::UdpEchoServer {
            host: "third".into(),
            port: 7,
        });
        apps.push(AppConfig::UdpPingPong {
            host: "server".into(),
            target: "10.0.0.3:7".parse().unwrap(),
            count: 5,
            payload_bytes: 100,
            start_us: 0,
            timeout_us: 100_000,
        });
        let report = run(
            config,
            &apps,
            &wirelab::builtin_stacks(),
            &RunOptions::default(),
        )
        .unwrap();
        assert_clean(&report, "determinism");
        let bytes: Vec<Vec<u8>> = report
            .captures
            .iter()
            .map(|c| c.bytes.clone().expect("captured in memory"))
            .collect();
        (bytes, report.trace_hash())
    };
    let (first, hash) = captures(11);
    let (second, hash_again) = captures(11);
    assert!(first == second, "two runs with seed 11 differ");
    assert_eq!(hash, hash_again);
    let (other, _) = captures(12);
    // Another seed gives lwIP other ISNs, so the capture differs.
    assert!(first != other, "seeds 11 and 12 gave the same capture");
}

/// Peak resident memory of this process so far, in KiB (Linux `VmHWM`), if known.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn three_hundred_lwip_hosts_ping_one_lwip_server() {
    // WIRELAB_LWIP_HOSTS tries another number (for measuring: time and memory).
    let hosts = std::env::var("WIRELAB_LWIP_HOSTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300u32);
    let mut config = switch_of(21, hosts);
    config.capture.enabled = false;
    config.trace = TraceLevel::Decisions;
    for host in &mut config.hosts {
        host.stack = "lwip".to_string();
    }
    let apps: Vec<AppConfig> = (1..hosts)
        .map(|i| AppConfig::Ping {
            host: format!("h{i}"),
            target: IpAddr::V4(host_ip(0)),
            count: 2,
            interval_us: 1_000_000,
            payload_bytes: 8,
            start_us: u64::from(i) * 10,
            timeout_us: 1_000_000,
        })
        .collect();
    let report = run(
        config,
        &apps,
        &wirelab::builtin_stacks(),
        &RunOptions::default(),
    )
    .unwrap();
    assert_eq!(report.outcome, Outcome::Completed);
    let replies: u64 = (0..apps.len())
        .map(|i| report.apps[i].counter("replies_received"))
        .sum();
    // lwIP's ARP table holds ten entries, so the server asks again for most clients: every
    // ping is still answered.
    assert_eq!(replies, 2 * u64::from(hosts - 1));
    println!(
        "{hosts} lwIP hosts: {} frames, peak RSS of the test process {} KiB",
        report.stats.frames_emitted,
        peak_rss_kib().map_or("?".into(), |k| k.to_string())
    );
}

fn every_two_host_builtin_run_passes_with_lwip_on_either_side_or_both() {
    for kinds in [["smoltcp", "lwip"], ["lwip", "smoltcp"], ["lwip", "lwip"]] {
        for s in wirelab::sim::library::builtin(1) {
            let mut config = s.config.clone();
            if config.hosts.len() != 2 {
                continue;
            }
            config.hosts[0].stack = kinds[0].to_string();
            config.hosts[1].stack = kinds[1].to_string();
            let report = run(
                config,
                &s.apps,
                &wirelab::builtin_stacks(),
                &RunOptions::default(),
            )
            .unwrap();
            assert_clean(&report, &format!("{} with {kinds:?}", s.name));
        }
    }
}

fn an_lwip_host_pings_itself_through_its_loopback() {
    // lwIP loops packets to its own address through tcpip_try_callback, which the glue
    // supplies; without it lwIP would assert.
    let config = pair(8, "lwip", "smoltcp");
    let report = run(
        config,
        &[ping("client", "10.0.0.1", 2, 1_000_000, 1_000_000)],
        &wirelab::builtin_stacks(),
        &RunOptions::default(),
    )
    .unwrap();
    assert_clean(&report, "self ping");
    assert_eq!(report.apps[0].counter("replies_received"), 2);
}

fn main() {
    let need0 = lwip_missing();
    wirelab::needs::run(vec![
        wirelab::needs::test(
            "an_lwip_host_answers_smoltcp_pings_over_ipv4_and_ipv6",
            an_lwip_host_answers_smoltcp_pings_over_ipv4_and_ipv6,
        )
        .needs(need0.clone()),
        wirelab::needs::test(
            "an_lwip_host_pings_a_smoltcp_host",
            an_lwip_host_pings_a_smoltcp_host,
        )
        .needs(need0.clone()),
        wirelab::needs::test(
            "udp_ping_pong_between_lwip_and_smoltcp_both_ways",
            udp_ping_pong_between_lwip_and_smoltcp_both_ways,
        )
        .needs(need0.clone()),
        wirelab::needs::test(
            "tcp_transfers_between_lwip_and_smoltcp_deliver_every_byte",
            tcp_transfers_between_lwip_and_smoltcp_deliver_every_byte,
        )
        .needs(need0.clone()),
        wirelab::needs::test(
            "a_tcp_echo_with_an_lwip_server_comes_back_whole_over_ipv6",
            a_tcp_echo_with_an_lwip_server_comes_back_whole_over_ipv6,
        )
        .needs(need0.clone()),
        wirelab::needs::test(
            "a_connection_to_a_closed_lwip_port_is_refused",
            a_connection_to_a_closed_lwip_port_is_refused,
        )
        .needs(need0.clone()),
        wirelab::needs::test(
            "the_same_seed_gives_byte_identical_captures_with_lwip_hosts",
            the_same_seed_gives_byte_identical_captures_with_lwip_hosts,
        )
        .needs(need0.clone()),
        wirelab::needs::test(
            "three_hundred_lwip_hosts_ping_one_lwip_server",
            three_hundred_lwip_hosts_ping_one_lwip_server,
        )
        .needs(need0.clone()),
        wirelab::needs::test(
            "every_two_host_builtin_run_passes_with_lwip_on_either_side_or_both",
            every_two_host_builtin_run_passes_with_lwip_on_either_side_or_both,
        )
        .needs(need0.clone()),
        wirelab::needs::test(
            "an_lwip_host_pings_itself_through_its_loopback",
            an_lwip_host_pings_itself_through_its_loopback,
        )
        .needs(need0.clone()),
    ])
}
