//! The Linux kernel as a simulated host (`stack = "linux"`): smoltcp and the kernel exchange pings, UDP and TCP both ways over IPv4 and IPv6 in real time, the report says the run was paced, no namespace is left afterwards (panics included), and a run without linux hosts is what it was.
//!
//! Every test needs root and /dev/net/tun; without them each prints one `skipped:` line and
//! passes, unless `WIRELAB_NO_SKIP` is set (as CI sets it).

mod common;

use std::sync::Mutex;

use wirelab::backends::linux::netns::leftover_namespaces;
use wirelab::sim::apps::AppConfig;
use wirelab::sim::config::WorldConfig;
use wirelab::sim::library::{switch_of, tcp_transfer_apps};
use wirelab::sim::world::{run, RunError, RunOptions, RunReport, World};

/// The tests of this file run one at a time, so that each can check that it left no
/// namespace of this process behind.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// What this machine lacks for linux hosts, if anything.
fn linux_missing() -> Option<String> {
    wirelab::backends::linux::available().err()
}

fn mine() -> Vec<String> {
    let prefix = format!("wirelab-{}-", std::process::id());
    leftover_namespaces()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

/// The two hosts, with a time limit that real time can meet.
fn pair(seed: u64, client: &'static str, server: &'static str) -> WorldConfig {
    let mut config = common::pair(seed, client, server);
    config.time_limit_us = 20_000_000;
    config
}

fn assert_clean(report: &RunReport, what: &str) {
    assert!(
        report.real_time,
        "{what}: a run with a linux host is real-time"
    );
    // The kernel's frames pass the same trace oracles as the simulated stacks'.
    common::assert_clean(report, what);
}

fn smoltcp_and_the_kernel_talk_tcp_udp_and_icmp_both_ways() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let ways = [("smoltcp", "linux"), ("linux", "smoltcp")];
    for (client, server) in ways {
        for target in ["10.0.0.2", "2001:db8::2"] {
            let what = format!("ping {client:?} -> {server:?} {target}");
            let report = run(
                pair(1, client, server),
                &[common::ping("client", target, 3, 50_000, 500_000)],
                &wirelab::builtin_stacks(),
                &RunOptions::default(),
            )
            .unwrap();
            assert_clean(&report, &what);
            assert_eq!(
                report.apps[0].counter("replies_received"),
                3,
                "{what}\n{}",
                report.trace_text()
            );
        }
        for target in ["10.0.0.2:7", "[2001:db8::2]:7"] {
            let what = format!("udp {client:?} -> {server:?} {target}");
            let report = run(
                pair(2, client, server),
                &common::udp_ping_pong(target, 500_000),
                &wirelab::builtin_stacks(),
                &RunOptions::default(),
            )
            .unwrap();
            assert_clean(&report, &what);
            assert_eq!(report.apps[1].counter("round_trips"), 10, "{what}");
            assert_eq!(report.apps[1].counter("timeouts"), 0, "{what}");
        }
        for target in ["10.0.0.2:5001", "[2001:db8::2]:5001"] {
            let what = format!("tcp {client:?} -> {server:?} {target}");
            let bytes = 300_000;
            let mut apps = tcp_transfer_apps(bytes);
            if let AppConfig::TcpServer { echo, .. } = &mut apps[0] {
                *echo = true;
            }
            if let AppConfig::TcpClient {
                target: to,
                expect_echo,
                ..
            } = &mut apps[1]
            {
                *to = target.parse().unwrap();
                *expect_echo = true;
            }
            let report = run(
                pair(3, client, server),
                &apps,
                &wirelab::builtin_stacks(),
                &RunOptions::default(),
            )
            .unwrap();
            assert_clean(&report, &what);
            assert_eq!(report.apps[0].counter("bytes_verified"), bytes, "{what}");
            assert_eq!(report.apps[1].counter("bytes_verified"), bytes, "{what}");
            assert_eq!(report.apps[0].counter("connections_closed"), 1, "{what}");
        }
    }
    assert_eq!(mine(), Vec::<String>::new(), "namespaces left behind");
}

fn two_kernels_talk_through_the_simulated_switch_and_refuse_a_closed_port() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let report = run(
        pair(4, "linux", "linux"),
        &tcp_transfer_apps(100_000),
        &wirelab::builtin_stacks(),
        &RunOptions::default(),
    )
    .unwrap();
    assert_clean(&report, "linux -> linux");
    assert_eq!(report.apps[0].counter("bytes_verified"), 100_000);

    // Nobody listens: the kernel answers the SYN with a RST and the client hears "refused".
    let mut apps = tcp_transfer_apps(1000);
    apps.remove(0);
    let report = run(
        pair(5, "smoltcp", "linux"),
        &apps,
        &wirelab::builtin_stacks(),
        &RunOptions::default(),
    )
    .unwrap();
    assert_eq!(report.apps[0].errors.len(), 1, "{:?}", report.apps[0]);
    assert!(report.apps[0].errors[0].1.contains("refused"));
    let apps = {
        let mut apps = tcp_transfer_apps(1000);
        apps.remove(0);
        apps
    };
    let report = run(
        pair(6, "linux", "smoltcp"),
        &apps,
        &wirelab::builtin_stacks(),
        &RunOptions::default(),
    )
    .unwrap();
    assert_eq!(report.apps[0].errors.len(), 1, "{:?}", report.apps[0]);
    assert!(report.apps[0].errors[0].1.contains("refused"));
    assert_eq!(mine(), Vec::<String>::new(), "namespaces left behind");
}

fn a_panic_while_a_linux_host_exists_leaves_no_namespace() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let caught = std::panic::catch_unwind(|| {
        let world = World::new(
            pair(7, "smoltcp", "linux"),
            &tcp_transfer_apps(10),
            &wirelab::builtin_stacks(),
            &RunOptions::default(),
        )
        .unwrap();
        assert_eq!(mine().len(), 1, "the linux host's namespace exists");
        let _keep = world;
        panic!("a failure while the world exists");
    });
    assert!(caught.is_err());
    assert_eq!(mine(), Vec::<String>::new(), "namespaces left behind");

    // A world that fails after its linux hosts were made (an application names a host that
    // does not exist) removes them too.
    let mut apps = tcp_transfer_apps(10);
    if let AppConfig::TcpClient { host, .. } = &mut apps[1] {
        *host = "nobody".into();
    }
    match World::new(
        pair(8, "linux", "linux"),
        &apps,
        &wirelab::builtin_stacks(),
        &RunOptions::default(),
    ) {
        Err(RunError::UnknownAppHost { .. }) => {}
        Err(other) => panic!("expected an unknown host, got {other}"),
        Ok(_) => panic!("an application on an unknown host was accepted"),
    }
    assert_eq!(mine(), Vec::<String>::new(), "namespaces left behind");
}

fn too_many_linux_hosts_are_refused_with_the_limit() {
    let mut config = switch_of(9, 20);
    for host in &mut config.hosts {
        host.stack = "linux".to_string();
    }
    let (at, error) = config.check_stacks(&wirelab::builtin_stacks()).unwrap_err();
    let error = error.to_string();
    assert!(error.contains("at most 16"), "{error}");
    assert_eq!(at.to_string(), "hosts[16].stack");
}

fn a_run_without_linux_hosts_is_not_real_time_and_matches_its_golden() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let scenarios = root.join("scenarios");
    let scenario = wirelab::scenario::load(
        &scenarios.join("tcp/handshake.toml"),
        &scenarios,
        &wirelab::builtin_stacks(),
    )
    .unwrap();
    let checked = wirelab::scenario::check::check(
        &scenario,
        scenario.config.seed,
        &wirelab::builtin_stacks(),
        &RunOptions::default(),
    )
    .unwrap();
    assert!(!checked.report.real_time);
    assert!(!checked.snapshot().contains("real time"));
    let golden = std::fs::read(root.join("golden/tcp/handshake.pcapng")).unwrap();
    let capture = checked.report.captures[0].bytes.as_ref().unwrap();
    assert!(*capture == golden, "the capture differs from its golden");
}

fn main() {
    let linux = linux_missing();
    wirelab::needs::run(vec![
        wirelab::needs::test(
            "smoltcp_and_the_kernel_talk_tcp_udp_and_icmp_both_ways",
            smoltcp_and_the_kernel_talk_tcp_udp_and_icmp_both_ways,
        )
        .needs(linux.clone()),
        wirelab::needs::test(
            "two_kernels_talk_through_the_simulated_switch_and_refuse_a_closed_port",
            two_kernels_talk_through_the_simulated_switch_and_refuse_a_closed_port,
        )
        .needs(linux.clone()),
        wirelab::needs::test(
            "a_panic_while_a_linux_host_exists_leaves_no_namespace",
            a_panic_while_a_linux_host_exists_leaves_no_namespace,
        )
        .needs(linux.clone()),
        wirelab::needs::test(
            "too_many_linux_hosts_are_refused_with_the_limit",
            too_many_linux_hosts_are_refused_with_the_limit,
        ),
        wirelab::needs::test(
            "a_run_without_linux_hosts_is_not_real_time_and_matches_its_golden",
            a_run_without_linux_hosts_is_not_real_time_and_matches_its_golden,
        ),
    ])
}
