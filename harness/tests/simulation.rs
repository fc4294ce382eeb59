//! End-to-end behaviour of the simulator: applications over every segment kind, impairments, partitions, bounds, stack panics and idle skipping.

use std::net::{IpAddr, SocketAddr};

use wirelab::sim::apps::{AppConfig, TcpFinish};
use wirelab::sim::config::{EventAction, Impairments, ScheduledEvent, SegmentKind, TraceLevel};
use wirelab::sim::library::{builtin, host_ip, switch_of, tcp_transfer_apps, two_hosts};
use wirelab::sim::world::{run, Outcome, RunOptions, World};
use wirelab::stack::{FrameQueue, MacAddr, SocketError, SocketId, Stack};

#[test]
fn every_builtin_run_completes_and_its_applications_get_what_they_expect() {
    for scenario in builtin(1) {
        let report = run(
            scenario.config.clone(),
            &scenario.apps,
            &wirelab::builtin_stacks(),
            &RunOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", scenario.name));
        assert_eq!(report.outcome, Outcome::Completed, "{}", scenario.name);
        for app in &report.apps {
            assert!(app.errors.is_empty(), "{}: {:?}", scenario.name, app.errors);
        }
    }
}

#[test]
fn ping_gets_every_reply_over_ipv4_and_ipv6() {
    let runs = builtin(7);
    for name in ["icmp/ping_ipv4", "icmp/ping_ipv6"] {
        let s = runs.iter().find(|r| r.name == name).unwrap();
        let report = run(
            s.config.clone(),
            &s.apps,
            &wirelab::builtin_stacks(),
            &RunOptions::default(),
        )
        .unwrap();
        let AppConfig::Ping { count, .. } = s.apps[0] else {
            unreachable!()
        };
        assert_eq!(
            report.apps[0].counter("requests_sent"),
            u64::from(count),
            "{name}"
        );
        assert_eq!(
            report.apps[0].counter("replies_received"),
            u64::from(count),
            "{name}"
        );
    }
}

#[test]
fn tcp_delivers_every_byte_in_order_through_loss_and_every_other_impairment() {
    for name in [
        "tcp/transfer_256k_loss_2pct",
        "tcp/echo_128k_every_impairment",
        "tcp/transfer_through_partition",
    ] {
        for seed in [1, 2, 3] {
            let s = builtin(seed).into_iter().find(|r| r.name == name).unwrap();
            let report = run(
                s.config.clone(),
                &s.apps,
                &wirelab::builtin_stacks(),
                &RunOptions::default(),
            )
            .unwrap();
            assert_eq!(report.outcome, Outcome::Completed, "{name} seed {seed}");
            let AppConfig::TcpClient {
                send_bytes,
                expect_echo,
                ..
            } = s.apps[1]
            else {
                unreachable!()
            };
            assert_eq!(
                report.apps[0].counter("bytes_verified"),
                send_bytes,
                "{name} seed {seed}"
            );
            if expect_echo {
                assert_eq!(
                    report.apps[1].counter("bytes_verified"),
                    send_bytes,
                    "{name} seed {seed}"
                );
            }
        }
    }
}

#[test]
fn impairment_decisions_are_in_the_trace() {
    let s = builtin(1)
        .into_iter()
        .find(|r| r.name == "tcp/echo_128k_every_impairment")
        .unwrap();
    let report = run(
        s.config.clone(),
        &s.apps,
        &wirelab::builtin_stacks(),
        &RunOptions::default(),
    )
    .unwrap();
    let text = report.trace_text();
    for needle in [
        "dropped (loss)",
        "duplicated",
        "corrupted",
        "queued",
        "jitter",
        "reordered",
    ] {
        assert!(text.contains(needle), "no `{needle}` in the trace");
    }
    let partition = builtin(1)
        .into_iter()
        .find(|r| r.name == "tcp/transfer_through_partition")
        .unwrap();
    let report = run(
        partition.config.clone(),
        &partition.apps,
        &wirelab::builtin_stacks(),
        &RunOptions::default(),
    )
    .unwrap();
    let text = report.trace_text();
    assert!(text.contains("lan partition [client] [server]"));
    assert!(text.contains("dropped (partition)"));
    assert!(text.contains("lan heal"));
}

#[test]
fn a_switch_learns_and_stops_flooding_while_a_hub_repeats_everything() {
    let delivered = |kind| {
        let mut config = two_hosts(1, kind);
        config.hosts.push(
            wirelab::sim::config::HostConfig::new("bystander", "lan").with_ipv4("10.0.0.3/24"),
        );
        let apps = vec![AppConfig::Ping {
            host: "client".into(),
            target: "10.0.0.2".parse().unwrap(),
            count: 5,
            interval_us: 1000,
            payload_bytes: 8,
            start_us: 0,
            timeout_us: 10_000,
        }];
        let report = run(
            config,
            &apps,
            &wirelab::builtin_stacks(),
            &RunOptions::default(),
        )
        .unwrap();
        assert_eq!(report.apps[0].counter("replies_received"), 5);
        (report.stats.frames_emitted, report.stats.frames_delivered)
    };
    let (hub_emitted, hub_delivered) = delivered(SegmentKind::Hub);
    let (switch_emitted, switch_delivered) = delivered(SegmentKind::Switch);
    assert_eq!(hub_emitted, switch_emitted);
    // A hub gives every frame to both other hosts.
    assert_eq!(hub_delivered, 2 * hub_emitted);
    // A switch floods only the ARP request, which it cannot place yet.
    assert_eq!(switch_delivered, switch_emitted + 1);
}

#[test]
fn link_down_loses_frames_and_link_up_brings_them_back() {
    let mut config = two_hosts(1, SegmentKind::Switch);
    config.events = vec![
        ScheduledEvent {
            at_us: 1_500_000,
            action: EventAction::LinkDown {
                host: "server".into(),
            },
        },
        ScheduledEvent {
            at_us: 3_500_000,
            action: EventAction::LinkUp {
                host: "server".into(),
            },
        },
    ];
    let apps = vec![AppConfig::Ping {
        host: "client".into(),
        target: "10.0.0.2".parse().unwrap(),
        count: 6,
        interval_us: 1_000_000,
        payload_bytes: 8,
        start_us: 0,
        timeout_us: 1_000_000,
    }];
    let report = run(
        config,
        &apps,
        &wirelab::builtin_stacks(),
        &RunOptions::default(),
    )
    .unwrap();
    // Requests at 2 s and 3 s fall into the outage.
    assert_eq!(report.apps[0].counter("replies_received"), 4);
    assert!(report.trace_text().contains("server link down"));
}

#[test]
fn bounds_end_runs_with_a_clear_outcome() {
    let mut config = two_hosts(1, SegmentKind::Switch);
    config.time_limit_us = 1_000;
    let s = builtin(1)
        .into_iter()
        .find(|r| r.name == "icmp/ping_ipv4")
        .unwrap();
    let report = run(
        config.clone(),
        &s.apps,
        &wirelab::builtin_stacks(),
        &RunOptions::default(),
    )
    .unwrap();
    assert_eq!(report.outcome, Outcome::TimeLimit { limit_us: 1_000 });
    assert!(report
        .outcome
        .to_string()
        .contains("virtual-time limit of 1000"));

    config.time_limit_us = 10_000_000;
    config.step_limit = 3;
    let report = run(
        config,
        &s.apps,
        &wirelab::builtin_stacks(),
        &RunOptions::default(),
    )
    .unwrap();
    assert_eq!(report.outcome, Outcome::StepLimit { limit: 3 });
}

#[test]
fn an_unreachable_peer_stalls_instead_of_hanging() {
    // Nobody has 10.0.0.99: ARP goes unanswered, the pings time out, and the run completes
    // with no replies rather than running forever.
    let config = two_hosts(1, SegmentKind::Switch);
    let apps = vec![AppConfig::Ping {
        host: "client".into(),
        target: "10.0.0.99".parse().unwrap(),
        count: 2,
        interval_us: 100_000,
        payload_bytes: 8,
        start_us: 0,
        timeout_us: 100_000,
    }];
    let report = run(
        config,
        &apps,
        &wirelab::builtin_stacks(),
        &RunOptions::default(),
    )
    .unwrap();
    assert_eq!(report.outcome, Outcome::Completed);
    assert_eq!(report.apps[0].counter("replies_received"), 0);
}

#[test]
fn idle_time_is_skipped_not_ticked() {
    let mut config = two_hosts(1, SegmentKind::Switch);
    config.trace = TraceLevel::Decisions;
    let hour_us = 3_600_000_000;
    let apps = vec![
        AppConfig::TcpServer {
            host: "server".into(),
            port: 80,
            echo: false,
            backlog: 1,
            reply_bytes: 0,
            read_from_us: 0,
            close_at_us: None,
        },
        AppConfig::TcpClient {
            host: "client".into(),
            target: "10.0.0.2:80".parse().unwrap(),
            start_us: 0,
            send_bytes: 0,
            expect_echo: false,
            expect_bytes: 0,
            keepalive_us: Some(75_000_000),
            hold_until_us: Some(hour_us),
            finish: TcpFinish::Close,
            timeout_us: None,
        },
    ];
    let report = run(
        config,
        &apps,
        &wirelab::builtin_stacks(),
        &RunOptions::default(),
    )
    .unwrap();
    assert_eq!(report.outcome, Outcome::Completed);
    assert!(report.stats.end_time_us >= hour_us);
    // 48 keep-alive exchanges in the hour, plus set-up and tear-down: a few hundred steps at
    // most, where ticking each millisecond would take 3.6 million.
    assert!(report.stats.steps < 1_000, "{} steps", report.stats.steps);
    assert!(
        report.stats.frames_emitted >= 2 * 47,
        "{} frames",
        report.stats.frames_emitted
    );
}

#[test]
fn a_thousand_hosts_share_one_segment() {
    let hosts = 1000;
    let mut config = switch_of(3, hosts);
    config.capture.enabled = false;
    config.trace = TraceLevel::Decisions;
    let apps: Vec<AppConfig> = (1..hosts)
        .map(|i| AppConfig::Ping {
            host: format!("h{i}"),
            target: IpAddr::V4(host_ip(0)),
            count: 1,
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
    let replies: u64 = (0..apps.len())
        .map(|i| report.apps[i].counter("replies_received"))
        .sum();
    // The server's neighbour cache holds every one of the 999 clients.
    assert_eq!(replies, u64::from(hosts - 1));
}

/// A stack that panics on its third received frame, standing in for a buggy stack.
struct PanickingStack(Box<dyn Stack>, u32);

impl Stack for PanickingStack {
    fn mac(&self) -> MacAddr {
        self.0.mac()
    }
    fn receive(&mut self, frame: &[u8]) {
        self.1 += 1;
        assert!(self.1 < 3, "assertion failed in the stack under test");
        self.0.receive(frame)
    }
    fn poll(&mut self, now_us: u64, egress: &mut FrameQueue) -> bool {
        self.0.poll(now_us, egress)
    }
    fn poll_at(&mut self, now_us: u64) -> Option<u64> {
        self.0.poll_at(now_us)
    }
    fn tcp_listen(&mut self, p: u16, b: usize) -> Result<SocketId, SocketError> {
        self.0.tcp_listen(p, b)
    }
    fn tcp_accept(&mut self, l: SocketId) -> Result<Option<SocketId>, SocketError> {
        self.0.tcp_accept(l)
    }
    fn tcp_connect(&mut self, r: SocketAddr) -> Result<SocketId, SocketError> {
        self.0.tcp_connect(r)
    }
    fn tcp_send(&mut self, s: SocketId, d: &[u8]) -> Result<usize, SocketError> {
        self.0.tcp_send(s, d)
    }
    fn tcp_recv(&mut self, s: SocketId, b: &mut [u8]) -> Result<usize, SocketError> {
        self.0.tcp_recv(s, b)
    }
    fn tcp_shutdown(&mut self, s: SocketId) -> Result<(), SocketError> {
        self.0.tcp_shutdown(s)
    }
    fn tcp_abort(&mut self, s: SocketId) -> Result<(), SocketError> {
        self.0.tcp_abort(s)
    }
    fn tcp_state(&self, s: SocketId) -> Result<wirelab::stack::TcpState, SocketError> {
        self.0.tcp_state(s)
    }
    fn tcp_end(&self, s: SocketId) -> Result<Option<wirelab::stack::TcpEnd>, SocketError> {
        self.0.tcp_end(s)
    }
    fn tcp_send_queue(&self, s: SocketId) -> Result<usize, SocketError> {
        self.0.tcp_send_queue(s)
    }
    fn tcp_set_keepalive(&mut self, s: SocketId, i: Option<u64>) -> Result<(), SocketError> {
        self.0.tcp_set_keepalive(s, i)
    }
    fn tcp_set_nagle(&mut self, s: SocketId, on: bool) -> Result<(), SocketError> {
        self.0.tcp_set_nagle(s, on)
    }
    fn tcp_set_timeout(&mut self, s: SocketId, t: Option<u64>) -> Result<(), SocketError> {
        self.0.tcp_set_timeout(s, t)
    }
    fn udp_bind(&mut self, p: u16) -> Result<SocketId, SocketError> {
        self.0.udp_bind(p)
    }
    fn udp_local_port(&self, s: SocketId) -> Result<u16, SocketError> {
        self.0.udp_local_port(s)
    }
    fn udp_send_to(&mut self, s: SocketId, d: SocketAddr, b: &[u8]) -> Result<(), SocketError> {
        self.0.udp_send_to(s, d, b)
    }
    fn udp_recv_from(
        &mut self,
        s: SocketId,
        b: &mut [u8],
    ) -> Result<Option<(usize, SocketAddr)>, SocketError> {
        self.0.udp_recv_from(s, b)
    }
    fn icmp_echo_open(&mut self, i: u16) -> Result<SocketId, SocketError> {
        self.0.icmp_echo_open(i)
    }
    fn icmp_echo_send(
        &mut self,
        s: SocketId,
        d: IpAddr,
        q: u16,
        p: &[u8],
    ) -> Result<(), SocketError> {
        self.0.icmp_echo_send(s, d, q, p)
    }
    fn icmp_echo_recv(
        &mut self,
        s: SocketId,
    ) -> Result<Option<wirelab::stack::EchoReply>, SocketError> {
        self.0.icmp_echo_recv(s)
    }
    fn close(&mut self, s: SocketId) -> Result<(), SocketError> {
        self.0.close(s)
    }
}

#[test]
fn a_panicking_stack_fails_its_run_with_seed_and_message_and_others_go_on() {
    let s = builtin(5)
        .into_iter()
        .find(|r| r.name == "icmp/ping_ipv4")
        .unwrap();
    let options = RunOptions {
        wrap_stack: Some(Box::new(|inner| Box::new(PanickingStack(inner, 0)))),
        ..RunOptions::default()
    };
    let report = World::new(
        s.config.clone(),
        &s.apps,
        &wirelab::builtin_stacks(),
        &options,
    )
    .unwrap()
    .run();
    assert_eq!(report.seed, 5);
    match &report.outcome {
        Outcome::StackPanic { host, message } => {
            assert!(host == "client" || host == "server", "{host}");
            assert!(
                message.contains("assertion failed in the stack under test"),
                "{message}"
            );
        }
        other => panic!("expected a stack panic, got {other:?}"),
    }
    // The process goes on, and the next run is unaffected.
    let again = run(
        s.config.clone(),
        &s.apps,
        &wirelab::builtin_stacks(),
        &RunOptions::default(),
    )
    .unwrap();
    assert_eq!(again.outcome, Outcome::Completed);
}

#[test]
fn mtu_mismatch_drops_big_frames_on_the_narrow_link() {
    let mut config = two_hosts(1, SegmentKind::Switch);
    config.hosts[1].link.from_segment = Impairments {
        mtu_bytes: Some(576),
        ..Impairments::default()
    };
    let apps = vec![AppConfig::Ping {
        host: "client".into(),
        target: "10.0.0.2".parse().unwrap(),
        count: 2,
        interval_us: 100_000,
        payload_bytes: 1000,
        start_us: 0,
        timeout_us: 100_000,
    }];
    let report = run(
        config,
        &apps,
        &wirelab::builtin_stacks(),
        &RunOptions::default(),
    )
    .unwrap();
    assert_eq!(report.apps[0].counter("replies_received"), 0);
    assert!(report.trace_text().contains("dropped (over mtu)"));
}

#[test]
fn transfers_complete_with_every_congestion_control() {
    for cc in [
        wirelab::sim::config::CongestionControlConfig::None,
        wirelab::sim::config::CongestionControlConfig::Reno,
        wirelab::sim::config::CongestionControlConfig::Cubic,
    ] {
        let mut config = two_hosts(1, SegmentKind::PointToPoint);
        for host in &mut config.hosts {
            host.congestion_control = cc;
            host.link.to_segment = Impairments {
                latency_us: 2000,
                bandwidth_bits_per_s: Some(50_000_000),
                queue_limit_bytes: Some(30_000),
                ..Impairments::default()
            };
        }
        let report = run(
            config,
            &tcp_transfer_apps(512 * 1024),
            &wirelab::builtin_stacks(),
            &RunOptions::default(),
        )
        .unwrap();
        assert_eq!(report.outcome, Outcome::Completed, "{cc:?}");
        assert_eq!(
            report.apps[0].counter("bytes_verified"),
            512 * 1024,
            "{cc:?}"
        );
    }
}

#[test]
fn connecting_to_a_closed_port_is_refused() {
    let config = two_hosts(1, SegmentKind::Switch);
    let apps = vec![AppConfig::TcpClient {
        host: "client".into(),
        target: "10.0.0.2:9".parse().unwrap(),
        start_us: 0,
        send_bytes: 10,
        expect_echo: false,
        expect_bytes: 0,
        keepalive_us: None,
        hold_until_us: None,
        finish: TcpFinish::Close,
        timeout_us: None,
    }];
    let report = run(
        config,
        &apps,
        &wirelab::builtin_stacks(),
        &RunOptions::default(),
    )
    .unwrap();
    assert_eq!(report.outcome, Outcome::Completed);
    let errors: Vec<&str> = report.apps[0]
        .errors
        .iter()
        .map(|(_, e)| e.as_str())
        .collect();
    assert_eq!(errors, vec!["connection refused"]);
}
