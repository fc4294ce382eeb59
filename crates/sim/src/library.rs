//! The built-in runs: small worlds built in code that exercise every part of the simulator, used by `cargo xtask scenarios`, the tests and the benchmarks until scenario files replace them.

use std::net::{IpAddr, SocketAddr};

use crate::apps::{AppConfig, TcpFinish};
use crate::config::{
    CongestionControlConfig, EventAction, HostConfig, Impairments, LossModel, ScheduledEvent,
    SegmentConfig, SegmentKind, WorldConfig,
};

/// A named world with its applications.
#[derive(Clone, Debug)]
pub struct NamedRun {
    pub name: &'static str,
    pub config: WorldConfig,
    pub apps: Vec<AppConfig>,
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("a literal address in code")
}

fn sock(s: &str) -> SocketAddr {
    s.parse().expect("a literal socket address in code")
}

/// Two hosts, `client` (10.0.0.1, 2001:db8::1) and `server` (10.0.0.2, 2001:db8::2), on a
/// segment called `lan` of the given kind.
pub fn two_hosts(seed: u64, kind: SegmentKind) -> WorldConfig {
    let mut config = WorldConfig::new(seed);
    config.segments.push(SegmentConfig {
        name: "lan".into(),
        kind,
    });
    config.hosts.push(
        HostConfig::new("client", "lan")
            .with_ipv4("10.0.0.1/24")
            .with_ipv6("2001:db8::1/64"),
    );
    config.hosts.push(
        HostConfig::new("server", "lan")
            .with_ipv4("10.0.0.2/24")
            .with_ipv6("2001:db8::2/64"),
    );
    config
}

/// A TCP client sending `bytes` to a sink server on port 5001.
pub fn tcp_transfer_apps(bytes: u64) -> Vec<AppConfig> {
    vec![
        AppConfig::TcpServer {
            host: "server".into(),
            port: 5001,
            echo: false,
            backlog: 1,
            reply_bytes: 0,
            read_from_us: 0,
            close_at_us: None,
        },
        AppConfig::TcpClient {
            host: "client".into(),
            target: sock("10.0.0.2:5001"),
            start_us: 0,
            send_bytes: bytes,
            expect_echo: false,
            expect_bytes: 0,
            keepalive_us: None,
            hold_until_us: None,
            finish: TcpFinish::Close,
            timeout_us: None,
        },
    ]
}

/// `hosts` hosts on one switch called `lan`, addressed 10.x.y.z/8 from 10.0.0.1 upwards.
pub fn switch_of(seed: u64, hosts: u32) -> WorldConfig {
    let mut config = WorldConfig::new(seed);
    config.segments.push(SegmentConfig {
        name: "lan".into(),
        kind: SegmentKind::Switch,
    });
    for i in 0..hosts {
        config
            .hosts
            .push(HostConfig::new(format!("h{i}"), "lan").with_ipv4(&format!("{}/8", host_ip(i))));
    }
    config
}

/// The IPv4 address of host `i` in [`switch_of`].
pub fn host_ip(i: u32) -> std::net::Ipv4Addr {
    let n = i + 1;
    std::net::Ipv4Addr::new(10, (n >> 16) as u8, (n >> 8) as u8, n as u8)
}

/// Every built-in run, in a fixed order.
pub fn builtin(seed: u64) -> Vec<NamedRun> {
    let mut runs = Vec::new();

    runs.push(NamedRun {
        name: "icmp/ping_ipv4",
        config: two_hosts(seed, SegmentKind::Switch),
        apps: vec![AppConfig::Ping {
            host: "client".into(),
            target: ip("10.0.0.2"),
            count: 4,
            interval_us: 1_000_000,
            payload_bytes: 56,
            start_us: 0,
            timeout_us: 1_000_000,
        }],
    });

    runs.push(NamedRun {
        name: "icmp/ping_ipv6",
        config: two_hosts(seed, SegmentKind::Hub),
        apps: vec![AppConfig::Ping {
            host: "client".into(),
            target: ip("2001:db8::2"),
            count: 3,
            interval_us: 500_000,
            payload_bytes: 32,
            start_us: 0,
            timeout_us: 1_000_000,
        }],
    });

    runs.push(NamedRun {
        name: "udp/ping_pong",
        config: two_hosts(seed, SegmentKind::PointToPoint),
        apps: vec![
            AppConfig::UdpEchoServer {
                host: "server".into(),
                port: 7,
            },
            AppConfig::UdpPingPong {
                host: "client".into(),
                target: sock("10.0.0.2:7"),
                count: 10,
                payload_bytes: 64,
                start_us: 0,
                timeout_us: 100_000,
            },
        ],
    });

    let mut lossy = two_hosts(seed, SegmentKind::Switch);
    for host in &mut lossy.hosts {
        host.link.to_segment = Impairments {
            latency_us: 500,
            loss: LossModel::Independent { probability: 0.02 },
            ..Impairments::default()
        };
    }
    lossy.hosts[0].congestion_control = CongestionControlConfig::Reno;
    runs.push(NamedRun {
        name: "tcp/transfer_256k_loss_2pct",
        config: lossy,
        apps: tcp_transfer_apps(256 * 1024),
    });

    let mut impaired = two_hosts(seed, SegmentKind::Switch);
    impaired.hosts[0].link.to_segment = Impairments {
        latency_us: 1000,
        jitter_us: 200,
        duplicate_probability: 0.05,
        reorder_probability: 0.05,
        reorder_delay_us: 3000,
        corrupt_probability: 0.03,
        bandwidth_bits_per_s: Some(100_000_000),
        ..Impairments::default()
    };
    impaired.hosts[1].link.from_segment = Impairments {
        loss: LossModel::GilbertElliott {
            good_to_bad_probability: 0.05,
            bad_to_good_probability: 0.3,
            loss_in_good_probability: 0.0,
            loss_in_bad_probability: 0.5,
        },
        ..Impairments::default()
    };
    let mut echo_apps = tcp_transfer_apps(128 * 1024);
    if let AppConfig::TcpServer { echo, .. } = &mut echo_apps[0] {
        *echo = true;
    }
    if let AppConfig::TcpClient { expect_echo, .. } = &mut echo_apps[1] {
        *expect_echo = true;
    }
    runs.push(NamedRun {
        name: "tcp/echo_128k_every_impairment",
        config: impaired,
        apps: echo_apps,
    });

    let mut partitioned = two_hosts(seed, SegmentKind::Switch);
    partitioned.events = vec![
        ScheduledEvent {
            at_us: 2_000,
            action: EventAction::Partition {
                segment: "lan".into(),
                groups: vec![vec!["client".into()], vec!["server".into()]],
            },
        },
        ScheduledEvent {
            at_us: 1_500_000,
            action: EventAction::Heal {
                segment: "lan".into(),
            },
        },
    ];
    for host in &mut partitioned.hosts {
        host.link.to_segment.latency_us = 200;
    }
    runs.push(NamedRun {
        name: "tcp/transfer_through_partition",
        config: partitioned,
        apps: tcp_transfer_apps(256 * 1024),
    });

    let mut many = switch_of(seed, 51);
    many.hosts[0].name = "server".into();
    let apps = (1..51u32)
        .map(|i| AppConfig::Ping {
            host: format!("h{i}"),
            target: IpAddr::V4(host_ip(0)),
            count: 2,
            interval_us: 100_000,
            payload_bytes: 16,
            start_us: u64::from(i) * 1000,
            timeout_us: 500_000,
        })
        .collect();
    runs.push(NamedRun {
        name: "scale/fifty_hosts_ping_server",
        config: many,
        apps,
    });

    runs
}
