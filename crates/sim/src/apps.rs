//! Stack-neutral applications (ping, UDP echo and ping-pong, TCP client and server) that drive hosts through the `Stack` trait and report what they observed.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use stack::{SocketError, SocketId, Stack, TcpEnd, TcpState};
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

/// What an application does, on which host. Scenario files deserialize into this.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AppConfig {
    /// ICMP echo requests, one every `interval_us`.
    Ping {
        host: String,
        target: IpAddr,
        #[serde(default = "default_count")]
        #[schemars(range(min = 1))]
        count: u32,
        #[serde(default = "default_interval_us")]
        interval_us: u64,
        #[serde(default = "default_payload_bytes")]
        payload_bytes: u32,
        #[serde(default)]
        start_us: u64,
        /// How long to wait for replies after the last request.
        #[serde(default = "default_interval_us")]
        timeout_us: u64,
    },
    /// Sends every datagram back to where it came from.
    UdpEchoServer {
        host: String,
        #[schemars(range(min = 1))]
        port: u16,
    },
    /// Sends a datagram, waits for the echo (or `timeout_us`), then sends the next.
    UdpPingPong {
        host: String,
        target: SocketAddr,
        #[serde(default = "default_count")]
        #[schemars(range(min = 1))]
        count: u32,
        #[serde(default = "default_payload_bytes")]
        payload_bytes: u32,
        #[serde(default)]
        start_us: u64,
        #[serde(default = "default_interval_us")]
        timeout_us: u64,
    },
    /// Accepts connections on `port`; each is read to the end and, with `echo`, answered with
    /// the same bytes; then closed.
    TcpServer {
        host: String,
        #[schemars(range(min = 1))]
        port: u16,
        #[serde(default)]
        echo: bool,
        #[serde(default = "default_backlog")]
        backlog: u32,
        /// Bytes of the pattern sent on every connection as soon as it is accepted (a scripted
        /// reply; the client checks it with `expect_bytes`).
        #[serde(default)]
        reply_bytes: u64,
        /// Nothing is read before this time, so the receive window fills up and closes.
        #[serde(default)]
        read_from_us: u64,
        /// Close (FIN) every open connection at this time instead of waiting for the peer's FIN.
        #[serde(default)]
        close_at_us: Option<u64>,
    },
    /// Connects, sends `send_bytes` of the verifiable pattern, optionally reads the echo back,
    /// then ends the connection as `finish` says.
    TcpClient {
        host: String,
        target: SocketAddr,
        #[serde(default)]
        start_us: u64,
        #[serde(default)]
        send_bytes: u64,
        #[serde(default)]
        expect_echo: bool,
        /// Bytes of the pattern the server sends (its `reply_bytes`), read and verified before
        /// the client finishes.
        #[serde(default)]
        expect_bytes: u64,
        #[serde(default)]
        keepalive_us: Option<u64>,
        /// Keep the connection open until this time before finishing.
        #[serde(default)]
        hold_until_us: Option<u64>,
        #[serde(default)]
        finish: TcpFinish,
        /// Give up when nothing is acknowledged for this long (smoltcp's socket timeout).
        #[serde(default)]
        timeout_us: Option<u64>,
    },
}

fn default_count() -> u32 {
    4
}
fn default_interval_us() -> u64 {
    1_000_000
}
fn default_payload_bytes() -> u32 {
    56
}
fn default_backlog() -> u32 {
    4
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TcpFinish {
    /// Half-close with FIN, read until the peer closes too.
    #[default]
    Close,
    /// Send a RST once everything sent has been acknowledged.
    Abort,
    /// Leave the connection open.
    Leave,
}

impl AppConfig {
    /// The name of the application kind as scenario files spell it.
    pub fn kind_name(&self) -> &'static str {
        match self {
            AppConfig::Ping { .. } => "ping",
            AppConfig::UdpEchoServer { .. } => "udp_echo_server",
            AppConfig::UdpPingPong { .. } => "udp_ping_pong",
            AppConfig::TcpServer { .. } => "tcp_server",
            AppConfig::TcpClient { .. } => "tcp_client",
        }
    }

    /// The largest datagram (ICMP message or UDP payload) this application sends, which the
    /// hosts' datagram socket queues are sized for.
    pub fn largest_datagram_bytes(&self) -> Option<u32> {
        match self {
            // An ICMP socket queues whole messages: the 8-byte echo header and the data.
            AppConfig::Ping { payload_bytes, .. } => Some(payload_bytes.saturating_add(8)),
            AppConfig::UdpPingPong { payload_bytes, .. } => Some((*payload_bytes).max(4)),
            _ => None,
        }
    }

    /// Checks the values the application could not honour on a host whose interface has IP
    /// MTU `ip_mtu_bytes`; on a mistake, names the key and says what is allowed.
    pub fn check(&self, ip_mtu_bytes: u32) -> Result<(), (&'static str, String)> {
        let port = |key: &'static str, port: u16| {
            if port == 0 {
                Err((
                    key,
                    format!(
                        "{}, which no connection can use; write a port from 1 to 65535",
                        if key == "port" {
                            "`port` is 0"
                        } else {
                            "the port in `target` is 0"
                        }
                    ),
                ))
            } else {
                Ok(())
            }
        };
        let count = |count: u32| {
            if count == 0 {
                Err((
                    "count",
                    "`count` is 0, so nothing would be sent; write at least 1".to_string(),
                ))
            } else {
                Ok(())
            }
        };
        // Datagrams are not fragmented: each must fit in one IP packet of the host's MTU.
        let payload = |protocol: &str, target: IpAddr, payload_bytes: u32| {
            let ip_header = if target.is_ipv6() { 40 } else { 20 };
            let max = ip_mtu_bytes.saturating_sub(ip_header + 8);
            if payload_bytes > max {
                Err((
                    "payload_bytes",
                    format!(
                        "`payload_bytes` is {payload_bytes}, but at most {max} bytes fit: the host's IP MTU of {ip_mtu_bytes} bytes less the {ip_header}-byte IP header and the 8-byte {protocol} header (datagrams are not fragmented)"
                    ),
                ))
            } else {
                Ok(())
            }
        };
        match self {
            AppConfig::Ping {
                target,
                count: n,
                payload_bytes,
                ..
            } => {
                count(*n)?;
                payload("ICMP echo", *target, *payload_bytes)
            }
            AppConfig::UdpEchoServer { port: p, .. } => port("port", *p),
            AppConfig::UdpPingPong {
                target,
                count: n,
                payload_bytes,
                ..
            } => {
                port("target", target.port())?;
                count(*n)?;
                payload("UDP", target.ip(), *payload_bytes)
            }
            AppConfig::TcpServer { port: p, .. } => port("port", *p),
            AppConfig::TcpClient { target, .. } => port("target", target.port()),
        }
    }

    pub fn host_mut(&mut self) -> &mut String {
        match self {
            AppConfig::Ping { host, .. }
            | AppConfig::UdpEchoServer { host, .. }
            | AppConfig::UdpPingPong { host, .. }
            | AppConfig::TcpServer { host, .. }
            | AppConfig::TcpClient { host, .. } => host,
        }
    }

    pub fn host(&self) -> &str {
        match self {
            AppConfig::Ping { host, .. }
            | AppConfig::UdpEchoServer { host, .. }
            | AppConfig::UdpPingPong { host, .. }
            | AppConfig::TcpServer { host, .. }
            | AppConfig::TcpClient { host, .. } => host,
        }
    }
}

/// The byte at `offset` of every stream wirelab sends: period 251 (a prime), so it never lines
/// up with segment sizes and a misplaced segment shows up as a mismatch.
pub fn pattern_byte(offset: u64) -> u8 {
    (offset % PATTERN_PERIOD) as u8
}

const PATTERN_PERIOD: u64 = 251;
/// Filling and checking go through this many bytes at a time.
const PATTERN_CHUNK: usize = 64 * 1024;

/// The pattern from offset 0, long enough that any chunk starting within one period fits, so
/// that filling and checking are plain memory copies and comparisons.
fn pattern_table() -> &'static [u8] {
    static TABLE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        (0..PATTERN_PERIOD as usize + PATTERN_CHUNK)
            .map(|i| pattern_byte(i as u64))
            .collect()
    })
}

/// The pattern from stream offset `offset`, `len` bytes of it (at most [`PATTERN_CHUNK`]),
/// borrowed from the table: senders hand it to the stack without copying it first.
fn pattern_at(offset: u64, len: usize) -> &'static [u8] {
    let start = (offset % PATTERN_PERIOD) as usize;
    &pattern_table()[start..start + len.min(PATTERN_CHUNK)]
}

fn fill_pattern(buf: &mut [u8], offset: u64) {
    let table = pattern_table();
    let mut offset = offset;
    for chunk in buf.chunks_mut(PATTERN_CHUNK) {
        let start = (offset % PATTERN_PERIOD) as usize;
        chunk.copy_from_slice(&table[start..start + chunk.len()]);
        offset += chunk.len() as u64;
    }
}

/// A received stream checked against the pattern as it arrives: `verified` counts the bytes
/// up to the first one that does not match.
#[derive(Clone, Copy, Debug, Default)]
struct StreamCheck {
    received: u64,
    verified: u64,
}

impl StreamCheck {
    fn take(&mut self, data: &[u8]) {
        if self.verified == self.received {
            self.verified += pattern_matches(data, self.received) as u64;
        }
        self.received += data.len() as u64;
    }
}

/// Checking compares this many bytes at a time (a whole number of periods), against the
/// table's first few KiB, which stay in the L1 cache while the received bytes stream past.
const CHECK_CHUNK: usize = 16 * PATTERN_PERIOD as usize;

/// The number of leading bytes of `data` (the stream at `offset`) that match the pattern.
fn pattern_matches(data: &[u8], offset: u64) -> usize {
    let table = pattern_table();
    let mut matched = 0;
    for chunk in data.chunks(CHECK_CHUNK) {
        let start = ((offset + matched as u64) % PATTERN_PERIOD) as usize;
        let expected = &table[start..start + chunk.len()];
        if chunk == expected {
            matched += chunk.len();
        } else {
            return matched
                + chunk
                    .iter()
                    .zip(expected)
                    .take_while(|(a, b)| a == b)
                    .count();
        }
    }
    matched
}

#[cfg(test)]
mod pattern_tests {
    use super::*;

    #[test]
    fn the_pattern_fills_and_checks_across_chunks_and_periods() {
        let mut buf = vec![0u8; 3 * PATTERN_CHUNK + 17];
        fill_pattern(&mut buf, 1000);
        assert!(buf
            .iter()
            .enumerate()
            .all(|(i, b)| *b == pattern_byte(1000 + i as u64)));
        assert_eq!(pattern_matches(&buf, 1000), buf.len());
        assert_eq!(pattern_matches(&buf, 1001), 0);
        buf[PATTERN_CHUNK + 5] ^= 1;
        assert_eq!(pattern_matches(&buf, 1000), PATTERN_CHUNK + 5);
    }

    /// The lazy hash of a received stream is the hash of the bytes that really arrived,
    /// whether they follow the pattern all the way or leave it part way through a chunk.
    #[test]
    fn the_received_hash_is_the_hash_of_what_arrived() {
        let mut good = vec![0u8; 3 * PATTERN_CHUNK + 100];
        fill_pattern(&mut good, 0);
        let mut bad = good.clone();
        bad[PATTERN_CHUNK + 7] ^= 0x40;
        for bytes in [&good, &bad] {
            let mut stream = StreamCheck {
                received: 0,
                verified: 0,
            };
            let mut hasher = None;
            for chunk in bytes.chunks(5000) {
                let before = stream.received;
                stream.take(chunk);
                hash_received(&mut hasher, before, &stream, chunk);
            }
            let log = StreamLog {
                received: stream.received,
                received_hash: hasher.as_ref().map(Xxh3::digest),
                ..StreamLog::default()
            };
            assert_eq!(log.received_hash(), xxh3_64(bytes));
            assert_eq!(
                hasher.is_some(),
                bytes == &bad,
                "hashed only once off the pattern"
            );
        }
        assert_eq!(pattern_hash(0), StreamLog::empty_hash());
    }
}

/// What an application observed, for reports, expectations and snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AppReport {
    pub host: String,
    pub kind: &'static str,
    /// Named counts (`requests_sent`, `replies_received`, `bytes_verified`, ...).
    pub counters: BTreeMap<&'static str, u64>,
    /// TCP states as they were first seen, with the time.
    pub states: Vec<(u64, String)>,
    /// Errors the socket API reported, with the time.
    pub errors: Vec<(u64, String)>,
    pub done_at_us: Option<u64>,
    /// What crossed the application's sockets, for the turmoil reference
    /// (`harness::reference`). Kept out of snapshots and JSON, so goldens do not change.
    #[serde(skip)]
    pub exchange: Exchange,
}

/// What crossed an application's sockets: its TCP streams and UDP datagrams.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exchange {
    /// One entry per TCP connection, in the order it was opened or accepted.
    pub streams: Vec<StreamLog>,
    /// UDP datagrams sent, in order, each as its length and the xxh3 hash of its payload.
    pub datagrams_sent: Vec<(u32, u64)>,
    /// UDP datagrams received, in order, in the same form.
    pub datagrams_received: Vec<(u32, u64)>,
}

/// One TCP connection as its application saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamLog {
    /// Reached ESTABLISHED (always true for an accepted connection).
    pub connected: bool,
    /// Bytes the stack took from the application (always the pattern from offset 0).
    pub sent: u64,
    /// Bytes delivered to the application.
    pub received: u64,
    /// The xxh3 hash of everything received, in order, once a byte differed from the pattern;
    /// `None` while every byte matched it, so that a bulk transfer is not hashed byte by byte
    /// in the hot path ([`StreamLog::received_hash`] computes the pattern's hash on demand).
    pub received_hash: Option<u64>,
    /// How many leading bytes of what was received matched the pattern.
    pub verified: u64,
    /// The peer's FIN was read (the end of the stream).
    pub peer_closed: bool,
    /// How the stack ended the connection, when it was not an orderly close.
    pub end: Option<String>,
}

impl StreamLog {
    /// The hash of a stream of no bytes.
    pub fn empty_hash() -> u64 {
        Xxh3::new().digest()
    }

    /// The xxh3 hash of everything received, in order.
    pub fn received_hash(&self) -> u64 {
        self.received_hash
            .unwrap_or_else(|| pattern_hash(self.received))
    }
}

/// The xxh3 hash of the first `len` bytes of the pattern: what a sender wrote.
pub fn pattern_hash(len: u64) -> u64 {
    let mut hasher = Xxh3::new();
    hash_pattern(&mut hasher, len);
    hasher.digest()
}

fn hash_pattern(hasher: &mut Xxh3, len: u64) {
    let mut offset = 0u64;
    while offset < len {
        let chunk = pattern_at(offset, (len - offset).min(PATTERN_CHUNK as u64) as usize);
        hasher.update(chunk);
        offset += chunk.len() as u64;
    }
}

/// A stream's log and, once a received byte differs from the pattern, the running hash of
/// what it received.
struct StreamHasher {
    index: usize,
    hasher: Option<Xxh3>,
}

impl StreamHasher {
    fn open(exchange: &mut Exchange, connected: bool) -> StreamHasher {
        exchange.streams.push(StreamLog {
            connected,
            ..StreamLog::default()
        });
        StreamHasher {
            index: exchange.streams.len() - 1,
            hasher: None,
        }
    }
}

/// Hashes `data` when the stream has left the pattern: `received_before` bytes came before
/// it, `stream` has just checked it. Until the first byte off the pattern nothing is hashed;
/// at that point the pattern bytes before it are hashed, then the real bytes from there on.
fn hash_received(
    hasher: &mut Option<Xxh3>,
    received_before: u64,
    stream: &StreamCheck,
    data: &[u8],
) {
    match hasher {
        Some(h) => h.update(data),
        None if stream.verified < stream.received => {
            let mut h = Xxh3::new();
            hash_pattern(&mut h, received_before);
            h.update(data);
            *hasher = Some(h);
        }
        None => {}
    }
}

impl AppReport {
    /// The count called `name`; 0 when the application never counted it.
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    fn count(&mut self, name: &'static str, by: u64) {
        *self.counters.entry(name).or_insert(0) += by;
    }

    fn error(&mut self, now_us: u64, message: String) {
        self.errors.push((now_us, message));
    }
}

/// A running application.
pub trait App {
    /// Acts on the host's sockets at `now_us`; returns true when it used the socket API in a
    /// way that needs the stack polled again now.
    fn act(&mut self, now_us: u64, stack: &mut dyn Stack) -> bool;
    /// When the application wants to act next regardless of network events.
    fn wake_at(&self) -> Option<u64>;
    /// Done applications no longer hold the run open. Servers are always done.
    fn done(&self) -> bool;
    /// What the application observed so far. Byte counts that change with every read and
    /// write are kept in plain fields while the run goes and enter the report's counters here.
    fn report(&mut self) -> &AppReport;
}

/// What a TCP client reads before it finishes: its own bytes echoed back when it expects an
/// echo, then `expect_bytes` more.
pub fn bytes_expected_in(send_bytes: u64, expect_echo: bool, expect_bytes: u64) -> u64 {
    if expect_echo {
        send_bytes + expect_bytes
    } else {
        expect_bytes
    }
}

/// Builds the running application for `config` on host `host_name`. `ident` is a value unique
/// per application in the run, used as the ICMP identifier.
pub fn build(config: &AppConfig, ident: u16) -> Box<dyn App> {
    let report = |kind| AppReport {
        host: config.host().to_string(),
        kind,
        ..AppReport::default()
    };
    match config.clone() {
        AppConfig::Ping {
            target,
            count,
            interval_us,
            payload_bytes,
            start_us,
            timeout_us,
            ..
        } => Box::new(Ping {
            target,
            count,
            interval_us,
            payload: vec![0; payload_bytes as usize],
            next_send_us: start_us,
            timeout_us,
            ident,
            socket: None,
            sent: 0,
            replied: vec![false; count as usize],
            report: report("ping"),
        }),
        AppConfig::UdpEchoServer { port, .. } => Box::new(UdpEchoServer {
            port,
            socket: None,
            buf: vec![0; 65_536],
            report: report("udp_echo_server"),
        }),
        AppConfig::UdpPingPong {
            target,
            count,
            payload_bytes,
            start_us,
            timeout_us,
            ..
        } => Box::new(UdpPingPong {
            target,
            count,
            payload_bytes: payload_bytes.max(4) as usize,
            start_us,
            timeout_us,
            socket: None,
            sent: 0,
            deadline_us: None,
            buf: vec![0; 65_536],
            report: report("udp_ping_pong"),
        }),
        AppConfig::TcpServer {
            port,
            echo,
            backlog,
            reply_bytes,
            read_from_us,
            close_at_us,
            ..
        } => Box::new(TcpServer {
            port,
            echo,
            reply_bytes,
            read_from_us,
            close_at_us,
            backlog: backlog.max(1) as usize,
            listener: None,
            conns: Vec::new(),
            bytes_received: 0,
            bytes_verified: 0,
            bytes_sent: 0,
            report: report("tcp_server"),
        }),
        AppConfig::TcpClient {
            target,
            start_us,
            send_bytes,
            expect_echo,
            expect_bytes,
            keepalive_us,
            hold_until_us,
            finish,
            timeout_us,
            ..
        } => Box::new(TcpClient {
            target,
            start_us,
            send_bytes,
            expect_in: bytes_expected_in(send_bytes, expect_echo, expect_bytes),
            keepalive_us,
            hold_until_us: hold_until_us.unwrap_or(0),
            finish,
            timeout_us,
            socket: None,
            sent: 0,
            received: 0,
            verified: 0,
            finishing: false,
            peer_closed: false,
            last_state: None,
            done: false,
            log: None,
            counters_shown: false,
            report: report("tcp_client"),
        }),
    }
}

struct Ping {
    target: IpAddr,
    count: u32,
    interval_us: u64,
    payload: Vec<u8>,
    next_send_us: u64,
    timeout_us: u64,
    ident: u16,
    socket: Option<SocketId>,
    sent: u32,
    replied: Vec<bool>,
    report: AppReport,
}

impl App for Ping {
    fn act(&mut self, now_us: u64, stack: &mut dyn Stack) -> bool {
        if self.report.done_at_us.is_some() || now_us < self.next_send_us && self.socket.is_none() {
            return false;
        }
        let socket = match self.socket {
            Some(s) => s,
            None => match stack.icmp_echo_open(self.ident) {
                Ok(s) => *self.socket.insert(s),
                Err(e) => {
                    self.report.error(now_us, e.to_string());
                    self.report.done_at_us = Some(now_us);
                    return false;
                }
            },
        };
        while let Ok(Some(reply)) = stack.icmp_echo_recv(socket) {
            let seq = usize::from(reply.seq);
            if reply.from == self.target && seq < self.replied.len() && !self.replied[seq] {
                self.replied[seq] = true;
                self.report.count("replies_received", 1);
            } else {
                self.report.count("unexpected_replies", 1);
            }
        }
        let mut acted = false;
        if self.sent < self.count && now_us >= self.next_send_us {
            fill_pattern(&mut self.payload, u64::from(self.sent));
            match stack.icmp_echo_send(socket, self.target, self.sent as u16, &self.payload) {
                Ok(()) => self.report.count("requests_sent", 1),
                Err(e) => self.report.error(now_us, e.to_string()),
            }
            self.sent += 1;
            self.next_send_us = now_us + self.interval_us;
            acted = true;
        }
        let all_replied = self.replied.iter().all(|&r| r);
        let gave_up = self.sent == self.count
            && now_us >= self.next_send_us - self.interval_us + self.timeout_us;
        if all_replied || gave_up {
            self.report.done_at_us = Some(now_us);
        }
        acted
    }

    fn wake_at(&self) -> Option<u64> {
        if self.report.done_at_us.is_some() {
            None
        } else if self.sent < self.count {
            Some(self.next_send_us)
        } else {
            Some(self.next_send_us - self.interval_us + self.timeout_us)
        }
    }

    fn done(&self) -> bool {
        self.report.done_at_us.is_some()
    }

    fn report(&mut self) -> &AppReport {
        &self.report
    }
}

struct UdpEchoServer {
    port: u16,
    socket: Option<SocketId>,
    buf: Vec<u8>,
    report: AppReport,
}

impl App for UdpEchoServer {
    fn act(&mut self, now_us: u64, stack: &mut dyn Stack) -> bool {
        let socket = match self.socket {
            Some(s) => s,
            None => match stack.udp_bind(self.port) {
                Ok(s) => *self.socket.insert(s),
                Err(e) => {
                    self.report.error(now_us, e.to_string());
                    self.port = 0;
                    return false;
                }
            },
        };
        let mut acted = false;
        while let Ok(Some((len, from))) = stack.udp_recv_from(socket, &mut self.buf) {
            self.report.count("datagrams_received", 1);
            let datagram = (len as u32, xxh3_64(&self.buf[..len]));
            self.report.exchange.datagrams_received.push(datagram);
            match stack.udp_send_to(socket, from, &self.buf[..len]) {
                Ok(()) => {
                    self.report.count("datagrams_echoed", 1);
                    self.report.exchange.datagrams_sent.push(datagram);
                }
                Err(e) => self.report.error(now_us, e.to_string()),
            }
            acted = true;
        }
        acted
    }

    fn wake_at(&self) -> Option<u64> {
        None
    }

    fn done(&self) -> bool {
        true
    }

    fn report(&mut self) -> &AppReport {
        &self.report
    }
}

struct UdpPingPong {
    target: SocketAddr,
    count: u32,
    payload_bytes: usize,
    start_us: u64,
    timeout_us: u64,
    socket: Option<SocketId>,
    sent: u32,
    /// Waiting for the echo of datagram `sent - 1` until then.
    deadline_us: Option<u64>,
    buf: Vec<u8>,
    report: AppReport,
}

impl App for UdpPingPong {
    fn act(&mut self, now_us: u64, stack: &mut dyn Stack) -> bool {
        if self.report.done_at_us.is_some() || now_us < self.start_us {
            return false;
        }
        let socket = match self.socket {
            Some(s) => s,
            None => match stack.udp_bind(0) {
                Ok(s) => *self.socket.insert(s),
                Err(e) => {
                    self.report.error(now_us, e.to_string());
                    self.report.done_at_us = Some(now_us);
                    return false;
                }
            },
        };
        while let Ok(Some((len, from))) = stack.udp_recv_from(socket, &mut self.buf) {
            let datagram = (len as u32, xxh3_64(&self.buf[..len]));
            self.report.exchange.datagrams_received.push(datagram);
            let seq = u32::from_be_bytes(self.buf[..4].try_into().unwrap_or([0xff; 4]));
            let intact = len == self.payload_bytes
                && from == self.target
                && pattern_matches(&self.buf[4..len], 0) == len - 4;
            if intact && self.sent > 0 && seq == self.sent - 1 && self.deadline_us.is_some() {
                self.report.count("round_trips", 1);
                self.deadline_us = None;
            } else {
                self.report.count("unexpected_datagrams", 1);
            }
        }
        if let Some(deadline) = self.deadline_us {
            if now_us < deadline {
                return false;
            }
            self.report.count("timeouts", 1);
            self.deadline_us = None;
        }
        if self.sent == self.count {
            self.report.done_at_us = Some(now_us);
            return false;
        }
        self.buf[..4].copy_from_slice(&self.sent.to_be_bytes());
        fill_pattern(&mut self.buf[4..self.payload_bytes], 0);
        match stack.udp_send_to(socket, self.target, &self.buf[..self.payload_bytes]) {
            Ok(()) => {
                self.report.count("datagrams_sent", 1);
                let payload = &self.buf[..self.payload_bytes];
                let datagram = (payload.len() as u32, xxh3_64(payload));
                self.report.exchange.datagrams_sent.push(datagram);
            }
            Err(e) => self.report.error(now_us, e.to_string()),
        }
        self.sent += 1;
        self.deadline_us = Some(now_us + self.timeout_us);
        true
    }

    fn wake_at(&self) -> Option<u64> {
        if self.report.done_at_us.is_some() {
            None
        } else if self.socket.is_none() {
            Some(self.start_us)
        } else {
            self.deadline_us
        }
    }

    fn done(&self) -> bool {
        self.report.done_at_us.is_some()
    }

    fn report(&mut self) -> &AppReport {
        &self.report
    }
}

struct ServerConn {
    socket: SocketId,
    received: u64,
    verified: u64,
    /// Bytes owed to the client (the scripted reply, then the echo of what was read), as a
    /// count: the pattern regenerates them.
    out_pending: u64,
    /// Bytes sent so far: the offset of the next byte in the outgoing pattern stream.
    sent: u64,
    shut: bool,
    log: StreamHasher,
}

struct TcpServer {
    port: u16,
    echo: bool,
    reply_bytes: u64,
    read_from_us: u64,
    close_at_us: Option<u64>,
    backlog: usize,
    listener: Option<SocketId>,
    conns: Vec<ServerConn>,
    /// Bytes read, matching the pattern, and written, over every connection (the counters
    /// `bytes_received`, `bytes_verified` and `bytes_sent`, which appear once non-zero).
    bytes_received: u64,
    bytes_verified: u64,
    bytes_sent: u64,
    report: AppReport,
}

impl TcpServer {
    fn reading(&self, now_us: u64) -> bool {
        now_us >= self.read_from_us
    }

    fn closing(&self, now_us: u64) -> bool {
        self.close_at_us.is_some_and(|at| now_us >= at)
    }
}

impl App for TcpServer {
    fn act(&mut self, now_us: u64, stack: &mut dyn Stack) -> bool {
        let listener = match self.listener {
            Some(l) => l,
            None => match stack.tcp_listen(self.port, self.backlog) {
                Ok(l) => *self.listener.insert(l),
                Err(e) => {
                    self.report.error(now_us, e.to_string());
                    self.port = 0;
                    return false;
                }
            },
        };
        let mut acted = false;
        while let Ok(Some(socket)) = stack.tcp_accept(listener) {
            self.report.count("connections_accepted", 1);
            self.conns.push(ServerConn {
                socket,
                received: 0,
                verified: 0,
                out_pending: self.reply_bytes,
                sent: 0,
                shut: false,
                log: StreamHasher::open(&mut self.report.exchange, true),
            });
        }
        let reading = self.reading(now_us);
        let closing = self.closing(now_us);
        for conn in &mut self.conns {
            // Before `read_from_us` the server leaves everything in the receive buffer.
            if reading {
                loop {
                    let room = if self.echo {
                        // Read no more than can be echoed, so the echo keeps pace with the input.
                        (PATTERN_CHUNK as u64).saturating_sub(conn.out_pending) as usize
                    } else {
                        PATTERN_CHUNK
                    };
                    if room == 0 {
                        break;
                    }
                    let mut stream = StreamCheck {
                        received: conn.received,
                        verified: conn.verified,
                    };
                    let hasher = &mut conn.log.hasher;
                    let mut take = |data: &[u8]| {
                        let before = stream.received;
                        stream.take(data);
                        hash_received(hasher, before, &stream, data);
                    };
                    match stack.tcp_recv_with(conn.socket, room, &mut take) {
                        Ok(0) => break,
                        Ok(n) => {
                            let log = &mut self.report.exchange.streams[conn.log.index];
                            log.received = stream.received;
                            log.verified = stream.verified;
                            log.received_hash = conn.log.hasher.as_ref().map(Xxh3::digest);
                            // Counted as it arrives: a run may end (every client done) while
                            // this side still waits for the last ACK of its FIN.
                            self.bytes_verified += stream.verified - conn.verified;
                            conn.received = stream.received;
                            conn.verified = stream.verified;
                            if self.echo {
                                conn.out_pending += n as u64;
                            }
                            self.bytes_received += n as u64;
                            acted = true;
                        }
                        Err(SocketError::Finished) => {
                            self.report.exchange.streams[conn.log.index].peer_closed = true;
                            if conn.out_pending == 0 && !conn.shut {
                                let _ = stack.tcp_shutdown(conn.socket);
                                conn.shut = true;
                                acted = true;
                            }
                            break;
                        }
                        Err(_) => break,
                    }
                }
            }
            while conn.out_pending > 0 && !conn.shut {
                let n = conn.out_pending.min(PATTERN_CHUNK as u64) as usize;
                // The echo regenerates the pattern; bytes that failed verification are
                // counted as such and the echo stays the pattern.
                match stack.tcp_send(conn.socket, pattern_at(conn.sent, n)) {
                    Ok(sent) if sent > 0 => {
                        conn.out_pending -= sent as u64;
                        conn.sent += sent as u64;
                        self.report.exchange.streams[conn.log.index].sent = conn.sent;
                        self.bytes_sent += sent as u64;
                        acted = true;
                    }
                    _ => break,
                }
            }
            if closing && conn.out_pending == 0 && !conn.shut {
                let _ = stack.tcp_shutdown(conn.socket);
                conn.shut = true;
                acted = true;
            }
        }
        let report = &mut self.report;
        self.conns.retain(|conn| {
            let state = stack.tcp_state(conn.socket).unwrap_or(TcpState::Closed);
            if !matches!(state, TcpState::Closed | TcpState::TimeWait) {
                return true;
            }
            if let Ok(Some(end)) = stack.tcp_end(conn.socket) {
                report.error(now_us, end_message(end).to_string());
                report.exchange.streams[conn.log.index].end = Some(end_message(end).to_string());
            }
            let _ = stack.close(conn.socket);
            report.count("connections_closed", 1);
            false
        });
        // Remember that the scheduled times have been served, so they are not asked for again.
        if reading {
            self.read_from_us = 0;
        }
        if closing {
            self.close_at_us = Some(0);
        }
        acted
    }

    fn wake_at(&self) -> Option<u64> {
        let read = (self.read_from_us > 0).then_some(self.read_from_us);
        let close = self.close_at_us.filter(|&at| at > 0);
        match (read, close) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn done(&self) -> bool {
        true
    }

    fn report(&mut self) -> &AppReport {
        if self.bytes_received > 0 {
            self.report
                .counters
                .insert("bytes_received", self.bytes_received);
            self.report
                .counters
                .insert("bytes_verified", self.bytes_verified);
        }
        if self.bytes_sent > 0 {
            self.report.counters.insert("bytes_sent", self.bytes_sent);
        }
        &self.report
    }
}

fn end_message(end: TcpEnd) -> &'static str {
    match end {
        TcpEnd::Refused => "connection refused",
        TcpEnd::Reset => "connection reset",
        TcpEnd::TimedOut => "connection timed out",
    }
}

struct TcpClient {
    target: SocketAddr,
    start_us: u64,
    send_bytes: u64,
    /// Bytes to read (and verify) before finishing: the echo, the server's reply, or both.
    expect_in: u64,
    keepalive_us: Option<u64>,
    hold_until_us: u64,
    finish: TcpFinish,
    timeout_us: Option<u64>,
    socket: Option<SocketId>,
    sent: u64,
    received: u64,
    verified: u64,
    finishing: bool,
    peer_closed: bool,
    last_state: Option<TcpState>,
    done: bool,
    log: Option<StreamHasher>,
    /// The byte counters belong in the report: the application has read or written since
    /// connecting, or has finished. They are copied in when the report is asked for.
    counters_shown: bool,
    report: AppReport,
}

impl TcpClient {
    fn finish_now(&mut self, now_us: u64) {
        self.done = true;
        self.report.done_at_us = Some(now_us);
        self.note_counters();
    }

    /// The log of the connection, opened with the socket.
    fn log_mut(&mut self) -> &mut StreamLog {
        let index = self.log.as_ref().map_or(0, |log| log.index);
        &mut self.report.exchange.streams[index]
    }

    /// The report shows the counts so far, also for a connection that never finishes.
    fn note_counters(&mut self) {
        self.counters_shown = true;
        self.report.counters.insert("bytes_sent", self.sent);
        self.report.counters.insert("bytes_received", self.received);
        self.report.counters.insert("bytes_verified", self.verified);
    }
}

impl App for TcpClient {
    fn act(&mut self, now_us: u64, stack: &mut dyn Stack) -> bool {
        if self.done || now_us < self.start_us {
            return false;
        }
        let socket = match self.socket {
            Some(s) => s,
            None => match stack.tcp_connect(self.target) {
                Ok(s) => {
                    let _ = stack.tcp_set_keepalive(s, self.keepalive_us);
                    let _ = stack.tcp_set_timeout(s, self.timeout_us);
                    self.socket = Some(s);
                    self.log = Some(StreamHasher::open(&mut self.report.exchange, false));
                    return true;
                }
                Err(e) => {
                    self.report.error(now_us, e.to_string());
                    self.finish_now(now_us);
                    return false;
                }
            },
        };
        let state = stack.tcp_state(socket).unwrap_or(TcpState::Closed);
        if self.last_state != Some(state) {
            self.last_state = Some(state);
            self.report.states.push((now_us, state.name().to_string()));
        }
        if !matches!(
            state,
            TcpState::SynSent | TcpState::SynReceived | TcpState::Closed | TcpState::Listen
        ) {
            self.log_mut().connected = true;
        }
        let mut acted = false;
        if matches!(state, TcpState::Established | TcpState::CloseWait)
            && self.sent < self.send_bytes
        {
            while self.sent < self.send_bytes {
                let n = (self.send_bytes - self.sent).min(PATTERN_CHUNK as u64) as usize;
                match stack.tcp_send(socket, pattern_at(self.sent, n)) {
                    Ok(0) | Err(_) => break,
                    Ok(taken) => {
                        self.sent += taken as u64;
                        acted = true;
                    }
                }
            }
        }
        loop {
            let mut stream = StreamCheck {
                received: self.received,
                verified: self.verified,
            };
            let mut hasher = self.log.as_mut().map(|log| &mut log.hasher);
            let mut take = |data: &[u8]| {
                let before = stream.received;
                stream.take(data);
                if let Some(hasher) = hasher.as_deref_mut() {
                    hash_received(hasher, before, &stream, data);
                }
            };
            match stack.tcp_recv_with(socket, usize::MAX, &mut take) {
                Ok(0) => break,
                Ok(_) => {
                    self.received = stream.received;
                    self.verified = stream.verified;
                    acted = true;
                }
                Err(SocketError::Finished) => {
                    self.peer_closed = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let hash = self
            .log
            .as_ref()
            .and_then(|log| log.hasher.as_ref().map(Xxh3::digest));
        let (sent, received, verified, peer_closed) =
            (self.sent, self.received, self.verified, self.peer_closed);
        let log = self.log_mut();
        log.sent = sent;
        log.received = received;
        log.verified = verified;
        log.peer_closed = peer_closed;
        log.received_hash = hash;
        if state == TcpState::Closed {
            if let Ok(Some(end)) = stack.tcp_end(socket) {
                self.report.error(now_us, end_message(end).to_string());
                self.log_mut().end = Some(end_message(end).to_string());
            }
            self.finish_now(now_us);
            return acted;
        }
        let all_sent = self.sent == self.send_bytes;
        let echo_in = self.received >= self.expect_in;
        let established_once = !matches!(state, TcpState::SynSent | TcpState::SynReceived);
        if established_once
            && all_sent
            && echo_in
            && now_us >= self.hold_until_us
            && !self.finishing
        {
            match self.finish {
                TcpFinish::Close => {
                    let _ = stack.tcp_shutdown(socket);
                    self.finishing = true;
                    acted = true;
                }
                TcpFinish::Abort => {
                    if stack.tcp_send_queue(socket).unwrap_or(0) == 0 {
                        let _ = stack.tcp_abort(socket);
                        self.finishing = true;
                        self.finish_now(now_us);
                        return true;
                    }
                }
                TcpFinish::Leave => {
                    self.finish_now(now_us);
                    return acted;
                }
            }
        }
        // Our FIN went first and the peer's has arrived; a connection the peer closed first
        // ends in CLOSED, handled above.
        if self.finishing && state == TcpState::TimeWait {
            self.finish_now(now_us);
        } else if acted {
            self.counters_shown = true;
        }
        acted
    }

    fn wake_at(&self) -> Option<u64> {
        if self.done {
            None
        } else if self.socket.is_none() {
            Some(self.start_us)
        } else if self.hold_until_us > 0 && !self.finishing {
            Some(self.hold_until_us)
        } else {
            None
        }
    }

    fn done(&self) -> bool {
        self.done
    }

    fn report(&mut self) -> &AppReport {
        if self.counters_shown {
            self.note_counters();
        }
        &self.report
    }
}
