//! turmoil as the application-level reference: a scenario's TCP and UDP applications run on turmoil's idealized network, and what each application sent, received and observed (its [`Transcript`]) is the oracle every real stack's run must agree with.
//!
//! turmoil (0.7) simulates hosts and sockets, not packets: a TCP write is one message, delivered
//! reliably and in order after the link's latency. So the reference says what a correct stack
//! delivers to its applications, and nothing about the wire. How the scenario maps onto it:
//!
//! - **Hosts and addresses.** Every scenario host becomes a turmoil host with its address in the
//!   family the applications' targets use (a scenario that mixes IPv4 and IPv6 targets is not
//!   modelled). turmoil has one flat network: a scenario with more than one segment is not
//!   modelled.
//! - **Latency.** Each pair of hosts gets a constant latency (turmoil's minimum and maximum set
//!   equal, so its random latency curve plays no part): the mean of the two one-way paths
//!   (`to_segment` of the sender plus `from_segment` of the receiver), since a turmoil link has
//!   one latency for both directions. Time advances in ticks of the smallest pair latency,
//!   between 50 µs and 1 ms. `set_impairments` events change the pairs' latency at their time.
//! - **Partitions and link-down windows** hold every message between the hosts concerned until
//!   the heal or the link comes up (turmoil's `hold` and `release`): a reliable transport
//!   retransmits across the gap, and a connection attempt made during it waits (turmoil's
//!   `partition` would drop the SYN, which turmoil reports as a refused connection).
//! - **Loss, corruption, duplication, reordering, jitter** are off: TCP hides them from
//!   applications, and for UDP the comparison is a subset check (what arrived must have been
//!   sent, intact), which they cannot break. **Bandwidth, queues and MTU** are off too: they
//!   change timing and segment sizes, which the transcript does not record.
//! - **Applications.** TCP clients and servers and UDP echo servers and ping-pong clients run
//!   as tokio tasks on turmoil's sockets, doing what `apps.rs` does: the same pattern bytes,
//!   the same reply, echo, `read_from_us`, `close_at_us`, `hold_until_us` and finish.
//!   Not modelled, each with its reason: ICMP ping (turmoil has no ICMP), an abortive close
//!   (`finish = "abort"`: turmoil has no abort call; it resets a stream only when a reader
//!   drops it with unread data) and the server such a client talks to.
//!
//! [`compare`] then holds every real run to it: for TCP the same bytes (length, xxh3 hash and
//! pattern check) in both directions of every connection and the same outcome (connected,
//! refused, reset, timed out, closed by the peer, finished); for UDP every datagram delivered
//! must be one that some application sent, intact, and a ping-pong client must send what the
//! reference sends.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

use sim::apps::{pattern_byte, AppConfig, Exchange, StreamLog, TcpFinish};
use sim::config::{EventAction, Impairments, WorldConfig};
use sim::world::RunReport;

/// Bytes written or read at a time, as the applications of `apps.rs` do.
const CHUNK: usize = 64 * 1024;
/// The tick bounds: no finer than this (turmoil's cost is per tick)...
const MIN_TICK_US: u64 = 50;
/// ...and no coarser than this.
const MAX_TICK_US: u64 = 1_000;
/// After every client has finished, messages still in flight are delivered for this many ticks
/// beyond the longest pair latency, so that servers see the last FIN as a real run's servers
/// do (messages held by a partition that never heals would otherwise keep the run going).
const DRAIN_TICKS: u64 = 100;

/// How a connection ended, when it did not end with an orderly close.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum End {
    Refused,
    Reset,
    TimedOut,
}

impl End {
    fn parse(text: &str) -> Option<End> {
        match text {
            "connection refused" => Some(End::Refused),
            "connection reset" => Some(End::Reset),
            "connection timed out" => Some(End::TimedOut),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            End::Refused => "refused",
            End::Reset => "reset",
            End::TimedOut => "timed out",
        }
    }
}

/// Bytes of one direction of a stream: how many, their xxh3 hash, and how many leading bytes
/// match wirelab's pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bytes {
    pub len: u64,
    pub xxh3: u64,
    pub pattern_ok: u64,
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} B xxh3 {:016x}", self.len, self.xxh3)?;
        if self.pattern_ok != self.len {
            write!(f, " (pattern breaks at byte {})", self.pattern_ok)?;
        }
        Ok(())
    }
}

/// One TCP connection as its application saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamTranscript {
    pub connected: bool,
    pub sent: Bytes,
    pub received: Bytes,
    pub closed_by_peer: bool,
    pub end: Option<End>,
}

impl fmt::Display for StreamTranscript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut seen = vec![if self.connected {
            "connected"
        } else {
            "not connected"
        }];
        if self.closed_by_peer {
            seen.push("closed by peer");
        }
        if let Some(end) = self.end {
            seen.push(end.name());
        }
        write!(
            f,
            "{}; sent {}; received {}",
            seen.join(", "),
            self.sent,
            self.received
        )
    }
}

/// A UDP datagram: its length and the xxh3 hash of its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Datagram {
    pub len: u32,
    pub xxh3: u64,
}

impl fmt::Display for Datagram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} B {:016x}", self.len, self.xxh3)
    }
}

/// What one application sent, received and observed: deterministic, and the same shape for a
/// turmoil run and a real one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transcript {
    /// The application's index in the scenario's `apps`.
    pub app: usize,
    pub host: String,
    pub kind: String,
    /// TCP connections, in the order they were opened or accepted.
    pub streams: Vec<StreamTranscript>,
    pub datagrams_sent: Vec<Datagram>,
    pub datagrams_received: Vec<Datagram>,
    /// For clients: whether the application finished (servers never do).
    pub done: Option<bool>,
}

impl Transcript {
    fn label(&self) -> String {
        format!("app {} ({} on {})", self.app, self.kind, self.host)
    }

    fn is_tcp(&self) -> bool {
        self.kind.starts_with("tcp_")
    }
}

impl fmt::Display for Transcript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.label())?;
        match self.done {
            Some(true) => write!(f, ", done")?,
            Some(false) => write!(f, ", not done")?,
            None => {}
        }
        if self.is_tcp() {
            if self.streams.is_empty() {
                write!(f, "; no connection")?;
            }
            for (i, stream) in self.streams.iter().enumerate() {
                write!(f, "; stream {}: {stream}", i + 1)?;
            }
        } else {
            let list = |d: &[Datagram]| {
                d.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            write!(
                f,
                "; sent {} datagrams [{}]; received {} [{}]",
                self.datagrams_sent.len(),
                list(&self.datagrams_sent),
                self.datagrams_received.len(),
                list(&self.datagrams_received)
            )?;
        }
        Ok(())
    }
}

pub use sim::apps::pattern_hash;

/// The transcript of application `app` (configured as `config`) from what crossed its sockets.
fn transcript_of(app: usize, config: &AppConfig, exchange: &Exchange, done: bool) -> Transcript {
    let streams = exchange
        .streams
        .iter()
        .map(|s| StreamTranscript {
            connected: s.connected,
            sent: Bytes {
                len: s.sent,
                xxh3: pattern_hash(s.sent),
                pattern_ok: s.sent,
            },
            received: Bytes {
                len: s.received,
                xxh3: s.received_hash(),
                pattern_ok: s.verified,
            },
            closed_by_peer: s.peer_closed,
            end: s.end.as_deref().and_then(End::parse),
        })
        .collect();
    let datagrams = |d: &[(u32, u64)]| {
        d.iter()
            .map(|&(len, xxh3)| Datagram { len, xxh3 })
            .collect()
    };
    Transcript {
        app,
        host: config.host().to_string(),
        kind: config.kind_name().to_string(),
        streams,
        datagrams_sent: datagrams(&exchange.datagrams_sent),
        datagrams_received: datagrams(&exchange.datagrams_received),
        done: matches!(
            config,
            AppConfig::TcpClient { .. } | AppConfig::UdpPingPong { .. }
        )
        .then_some(done),
    }
}

/// An application the reference does not model, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotModelled {
    pub app: usize,
    pub host: String,
    pub kind: String,
    pub reason: String,
}

impl fmt::Display for NotModelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "app {} ({} on {}) not modelled: {}",
            self.app, self.kind, self.host, self.reason
        )
    }
}

/// What the reference reads of a scenario: its world and its applications.
#[derive(Clone, Copy, Debug)]
pub struct Workload<'a> {
    /// The world the applications run in: hosts, addresses, links and scheduled events.
    pub config: &'a WorldConfig,
    /// The applications, in the scenario's order.
    pub apps: &'a [AppConfig],
}

/// Which of a scenario's applications turmoil models, and in which address family; or why it
/// models none of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub modelled: Vec<usize>,
    pub not_modelled: Vec<NotModelled>,
    ipv6: bool,
}

fn app_target(app: &AppConfig) -> Option<SocketAddr> {
    match app {
        AppConfig::TcpClient { target, .. } | AppConfig::UdpPingPong { target, .. } => {
            Some(*target)
        }
        _ => None,
    }
}

/// Decides what turmoil can model in `scenario`: `Err` with the reason when nothing.
pub fn plan(scenario: Workload<'_>) -> Result<Plan, String> {
    let config = &scenario.config;
    if config.segments.len() != 1 {
        return Err(format!(
            "turmoil has one flat network; this scenario has {} segments",
            config.segments.len()
        ));
    }
    let families: BTreeSet<bool> = scenario
        .apps
        .iter()
        .filter_map(app_target)
        .map(|t| t.is_ipv6())
        .collect();
    if families.len() > 1 {
        return Err(
            "its applications use both IPv4 and IPv6; a turmoil host has one address".into(),
        );
    }
    let ipv6 = families.into_iter().next().unwrap_or(false);
    let address = |host: &str| {
        let h = config.hosts.iter().find(|h| h.name == host)?;
        if ipv6 { h.ipv6 } else { h.ipv4 }.map(|c| c.addr)
    };
    // Servers whose clients end with an abortive close, by address and port.
    let aborted: BTreeSet<SocketAddr> = scenario
        .apps
        .iter()
        .filter_map(|a| match a {
            AppConfig::TcpClient {
                target,
                finish: TcpFinish::Abort,
                ..
            } => Some(*target),
            _ => None,
        })
        .collect();
    let mut modelled = Vec::new();
    let mut not_modelled = Vec::new();
    for (index, app) in scenario.apps.iter().enumerate() {
        let reason = match app {
            AppConfig::Ping { .. } => Some("ICMP echo: turmoil models TCP and UDP sockets only".to_string()),
            AppConfig::TcpClient {
                finish: TcpFinish::Abort,
                ..
            } => Some(
                "an abortive close (finish = \"abort\"): turmoil 0.7 has no abort call; it resets a stream only when a reader drops it with unread data"
                    .to_string(),
            ),
            AppConfig::TcpServer { host, port, .. }
                if address(host).is_some_and(|ip| aborted.contains(&SocketAddr::new(ip, *port))) =>
            {
                Some("its client ends with an abortive close, which turmoil cannot make".to_string())
            }
            _ if address(app.host()).is_none() => Some(format!(
                "its host has no {} address, the family the other applications use",
                if ipv6 { "IPv6" } else { "IPv4" }
            )),
            _ => None,
        };
        match reason {
            Some(reason) => not_modelled.push(NotModelled {
                app: index,
                host: app.host().to_string(),
                kind: app.kind_name().to_string(),
                reason,
            }),
            None => modelled.push(index),
        }
    }
    if modelled.is_empty() {
        let reasons: BTreeSet<&str> = not_modelled.iter().map(|n| n.reason.as_str()).collect();
        return Err(format!(
            "no application turmoil can model ({})",
            reasons.into_iter().collect::<Vec<_>>().join("; ")
        ));
    }
    Ok(Plan {
        modelled,
        not_modelled,
        ipv6,
    })
}

/// The result of running a scenario's applications on turmoil.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferenceRun {
    /// One per modelled application, in the scenario's order.
    pub transcripts: Vec<Transcript>,
    pub not_modelled: Vec<NotModelled>,
    /// Whether every client finished within the scenario's time limit.
    pub finished: bool,
    /// Virtual time at the end, and the tick it advanced by.
    pub end_us: u64,
    pub tick_us: u64,
}

/// The transcripts of the modelled applications in a real run of `scenario`.
pub fn transcripts_of(scenario: Workload<'_>, plan: &Plan, run: &RunReport) -> Vec<Transcript> {
    plan.modelled
        .iter()
        .filter_map(|&i| {
            let report = run.apps.get(i)?;
            Some(transcript_of(
                i,
                &scenario.apps[i],
                &report.exchange,
                report.done_at_us.is_some(),
            ))
        })
        .collect()
}

/// What each application on turmoil has logged, shared between its tasks and the driver.
#[derive(Default)]
struct AppLog {
    exchange: Exchange,
    done: bool,
}

type Log = Rc<RefCell<AppLog>>;

fn now_us() -> u64 {
    turmoil::elapsed().as_micros() as u64
}

async fn sleep_until_us(at_us: u64) {
    let now = now_us();
    if at_us > now {
        tokio::time::sleep(Duration::from_micros(at_us - now)).await;
    }
}

fn unspecified(ipv6: bool) -> IpAddr {
    if ipv6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
}

fn end_of(error: &std::io::Error) -> End {
    match error.kind() {
        std::io::ErrorKind::ConnectionRefused => End::Refused,
        std::io::ErrorKind::TimedOut => End::TimedOut,
        _ => End::Reset,
    }
}

/// Opens a stream log and its running hash, as `apps.rs` does for a real connection.
fn open_stream(log: &Log, connected: bool) -> (usize, Xxh3) {
    let mut log = log.borrow_mut();
    log.exchange.streams.push(StreamLog {
        connected,
        ..StreamLog::default()
    });
    (log.exchange.streams.len() - 1, Xxh3::new())
}

fn pattern_from(offset: u64, len: usize) -> Vec<u8> {
    (offset..offset + len as u64).map(pattern_byte).collect()
}

/// The number of leading bytes of `data` (the stream at `offset`) that match the pattern.
fn pattern_prefix(data: &[u8], offset: u64) -> u64 {
    data.iter()
        .enumerate()
        .take_while(|(i, b)| **b == pattern_byte(offset + *i as u64))
        .count() as u64
}

#[derive(Clone, Copy)]
struct ServerSetup {
    echo: bool,
    reply_bytes: u64,
    read_from_us: u64,
    close_at_us: Option<u64>,
}

/// One accepted connection of a TCP server: the scripted reply and the echo go out while the
/// client's bytes are read; the server closes once the client has and nothing is owed, or at
/// `close_at_us`.
async fn serve(stream: turmoil::net::TcpStream, setup: ServerSetup, log: Log) {
    let (index, mut hasher) = open_stream(&log, true);
    let (mut rd, mut wr) = stream.into_split();
    let mut out_pending = setup.reply_bytes;
    let (mut sent, mut received, mut verified) = (0u64, 0u64, 0u64);
    let (mut eof, mut shut) = (false, false);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let now = now_us();
        let closing = setup.close_at_us.is_some_and(|at| now >= at);
        if !shut && out_pending == 0 && (eof || closing) {
            let _ = wr.shutdown().await;
            shut = true;
        }
        if eof && shut {
            return;
        }
        let reading = now >= setup.read_from_us && !eof;
        let room = if setup.echo {
            (CHUNK as u64).saturating_sub(out_pending) as usize
        } else {
            CHUNK
        };
        let chunk = pattern_from(sent, out_pending.min(CHUNK as u64) as usize);
        let wait_read = (!reading && !eof).then_some(setup.read_from_us);
        let wait_close = setup.close_at_us.filter(|&at| at > now && !shut);
        tokio::select! {
            r = rd.read(&mut buf[..room.max(1)]), if reading && room > 0 => match r {
                Ok(0) => {
                    eof = true;
                    log.borrow_mut().exchange.streams[index].peer_closed = true;
                }
                Ok(n) => {
                    let data = &buf[..n];
                    if verified == received {
                        verified += pattern_prefix(data, received);
                    }
                    received += n as u64;
                    hasher.update(data);
                    if setup.echo {
                        out_pending += n as u64;
                    }
                    let mut log = log.borrow_mut();
                    let s = &mut log.exchange.streams[index];
                    s.received = received;
                    s.verified = verified;
                    s.received_hash = Some(hasher.digest());
                }
                Err(e) => {
                    log.borrow_mut().exchange.streams[index].end = Some(end_text(end_of(&e)));
                    return;
                }
            },
            w = wr.write(&chunk), if !chunk.is_empty() && !shut => match w {
                Ok(n) => {
                    out_pending -= n as u64;
                    sent += n as u64;
                    log.borrow_mut().exchange.streams[index].sent = sent;
                }
                Err(e) => {
                    log.borrow_mut().exchange.streams[index].end = Some(end_text(end_of(&e)));
                    return;
                }
            },
            _ = sleep_until_us(wait_read.unwrap_or(0)), if wait_read.is_some() => {}
            _ = sleep_until_us(wait_close.unwrap_or(0)), if wait_close.is_some() => {}
        }
    }
}

fn end_text(end: End) -> String {
    match end {
        End::Refused => "connection refused",
        End::Reset => "connection reset",
        End::TimedOut => "connection timed out",
    }
    .to_string()
}

async fn tcp_server(port: u16, ipv6: bool, setup: ServerSetup, log: Log) -> turmoil::Result {
    let listener = turmoil::net::TcpListener::bind((unspecified(ipv6), port)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::task::spawn_local(serve(stream, setup, log.clone()));
    }
}

#[derive(Clone, Copy)]
struct ClientSetup {
    target: SocketAddr,
    start_us: u64,
    send_bytes: u64,
    expect_in: u64,
    hold_until_us: u64,
    finish: TcpFinish,
    timeout_us: Option<u64>,
}

/// A TCP client: connects, sends its bytes while reading what it expects, then finishes as
/// configured. Streams it leaves open go to `kept`, so that dropping them sends no FIN.
async fn tcp_client(
    setup: ClientSetup,
    log: Log,
    kept: Rc<RefCell<Vec<turmoil::net::TcpStream>>>,
) -> turmoil::Result {
    sleep_until_us(setup.start_us).await;
    let (index, mut hasher) = open_stream(&log, false);
    let connect = turmoil::net::TcpStream::connect(setup.target);
    let connected = match setup.timeout_us {
        Some(t) => match tokio::time::timeout(Duration::from_micros(t), connect).await {
            Ok(r) => r,
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        },
        None => connect.await,
    };
    let stream = match connected {
        Ok(stream) => stream,
        Err(e) => {
            let mut log = log.borrow_mut();
            log.exchange.streams[index].end = Some(end_text(end_of(&e)));
            log.done = true;
            return Ok(());
        }
    };
    log.borrow_mut().exchange.streams[index].connected = true;
    let (mut rd, mut wr) = stream.into_split();
    let (mut sent, mut received, mut verified) = (0u64, 0u64, 0u64);
    let (mut eof, mut finishing) = (false, false);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let now = now_us();
        if sent == setup.send_bytes
            && received >= setup.expect_in
            && now >= setup.hold_until_us
            && !finishing
        {
            match setup.finish {
                TcpFinish::Close => {
                    let _ = wr.shutdown().await;
                    finishing = true;
                }
                // `plan` leaves abortive clients out; should one come here, it leaves the
                // connection as it is rather than pretend to reset it.
                TcpFinish::Leave | TcpFinish::Abort => {
                    kept.borrow_mut().push(rd.reunite(wr)?);
                    log.borrow_mut().done = true;
                    return Ok(());
                }
            }
        }
        if finishing && eof {
            log.borrow_mut().done = true;
            return Ok(());
        }
        let chunk = pattern_from(sent, (setup.send_bytes - sent).min(CHUNK as u64) as usize);
        let wait_hold = (now < setup.hold_until_us).then_some(setup.hold_until_us);
        let step = async {
            tokio::select! {
                r = rd.read(&mut buf), if !eof => Some(r.map(Progress::Read)),
                w = wr.write(&chunk), if !chunk.is_empty() => Some(w.map(Progress::Wrote)),
                _ = sleep_until_us(wait_hold.unwrap_or(0)), if wait_hold.is_some() => None,
            }
        };
        let progress = match setup.timeout_us {
            Some(t) => match tokio::time::timeout(Duration::from_micros(t), step).await {
                Ok(p) => p,
                Err(_) => Some(Err(std::io::ErrorKind::TimedOut.into())),
            },
            None => step.await,
        };
        match progress {
            None => {}
            Some(Ok(Progress::Read(0))) => {
                eof = true;
                log.borrow_mut().exchange.streams[index].peer_closed = true;
            }
            Some(Ok(Progress::Read(n))) => {
                let data = &buf[..n];
                if verified == received {
                    verified += pattern_prefix(data, received);
                }
                received += n as u64;
                hasher.update(data);
                let mut log = log.borrow_mut();
                let s = &mut log.exchange.streams[index];
                s.received = received;
                s.verified = verified;
                s.received_hash = Some(hasher.digest());
            }
            Some(Ok(Progress::Wrote(n))) => {
                sent += n as u64;
                log.borrow_mut().exchange.streams[index].sent = sent;
            }
            Some(Err(e)) => {
                let mut log = log.borrow_mut();
                log.exchange.streams[index].end = Some(end_text(end_of(&e)));
                log.done = true;
                return Ok(());
            }
        }
    }
}

enum Progress {
    Read(usize),
    Wrote(usize),
}

async fn udp_echo_server(port: u16, ipv6: bool, log: Log) -> turmoil::Result {
    let socket = turmoil::net::UdpSocket::bind((unspecified(ipv6), port)).await?;
    let mut buf = vec![0u8; 65_536];
    loop {
        let (len, from) = socket.recv_from(&mut buf).await?;
        let datagram = (len as u32, xxh3_64(&buf[..len]));
        log.borrow_mut().exchange.datagrams_received.push(datagram);
        socket.send_to(&buf[..len], from).await?;
        log.borrow_mut().exchange.datagrams_sent.push(datagram);
    }
}

#[derive(Clone, Copy)]
struct PingPongSetup {
    target: SocketAddr,
    count: u32,
    payload_bytes: usize,
    start_us: u64,
    timeout_us: u64,
}

/// Sends a numbered datagram, waits for its echo (or the timeout), then the next.
async fn udp_ping_pong(setup: PingPongSetup, ipv6: bool, log: Log) -> turmoil::Result {
    sleep_until_us(setup.start_us).await;
    let socket = turmoil::net::UdpSocket::bind((unspecified(ipv6), 0)).await?;
    let mut buf = vec![0u8; 65_536];
    for seq in 0..setup.count {
        let mut payload = seq.to_be_bytes().to_vec();
        payload.extend(pattern_from(0, setup.payload_bytes - 4));
        socket.send_to(&payload, setup.target).await?;
        log.borrow_mut()
            .exchange
            .datagrams_sent
            .push((payload.len() as u32, xxh3_64(&payload)));
        let deadline = now_us() + setup.timeout_us;
        loop {
            let now = now_us();
            if now >= deadline {
                break;
            }
            let wait = Duration::from_micros(deadline - now);
            match tokio::time::timeout(wait, socket.recv_from(&mut buf)).await {
                Ok(Ok((len, _))) => {
                    log.borrow_mut()
                        .exchange
                        .datagrams_received
                        .push((len as u32, xxh3_64(&buf[..len])));
                    if len == payload.len() && buf[..len] == payload[..] {
                        break;
                    }
                }
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => break,
            }
        }
    }
    log.borrow_mut().done = true;
    Ok(())
}

/// The one-way latency from host `a` to host `b` under `links`.
fn one_way_us(links: &[(Impairments, Impairments)], a: usize, b: usize) -> u64 {
    links[a].0.latency_us + links[b].1.latency_us
}

/// Runs the modelled applications of `scenario` on turmoil.
pub fn run_reference(scenario: Workload<'_>) -> Result<ReferenceRun, String> {
    let plan = plan(scenario)?;
    let config = &scenario.config;
    let ipv6 = plan.ipv6;
    // Hosts with an address in the family, by index in the scenario.
    let hosts: Vec<(usize, IpAddr)> = config
        .hosts
        .iter()
        .enumerate()
        .filter_map(|(i, h)| Some((i, if ipv6 { h.ipv6 } else { h.ipv4 }?.addr)))
        .collect();
    let mut links: Vec<(Impairments, Impairments)> = config
        .hosts
        .iter()
        .map(|h| (h.link.to_segment.clone(), h.link.from_segment.clone()))
        .collect();
    let pair_latency = |links: &[(Impairments, Impairments)], a: usize, b: usize| {
        (one_way_us(links, a, b) + one_way_us(links, b, a)) / 2
    };
    let smallest = hosts
        .iter()
        .flat_map(|&(a, _)| hosts.iter().map(move |&(b, _)| (a, b)))
        .filter(|(a, b)| a < b)
        .map(|(a, b)| pair_latency(&links, a, b))
        .filter(|l| *l > 0)
        .min()
        .unwrap_or(MAX_TICK_US);
    let tick_us = smallest.clamp(MIN_TICK_US, MAX_TICK_US);
    let longest = hosts
        .iter()
        .flat_map(|&(a, _)| hosts.iter().map(move |&(b, _)| (a, b)))
        .map(|(a, b)| pair_latency(&links, a, b))
        .max()
        .unwrap_or(0);
    let drain_ticks = DRAIN_TICKS + longest.div_ceil(tick_us);

    let mut builder = turmoil::Builder::new();
    builder
        .rng_seed(config.seed)
        .epoch(std::time::UNIX_EPOCH)
        .tick_duration(Duration::from_micros(tick_us))
        // The driver below enforces the scenario's limit; turmoil's own must not fire first.
        .simulation_duration(Duration::from_micros(
            config
                .time_limit_us
                .saturating_add(drain_ticks * tick_us + 1_000_000),
        ))
        .min_message_latency(Duration::ZERO)
        .max_message_latency(Duration::ZERO);
    let mut sim = builder.build();

    let logs: Vec<Log> = scenario.apps.iter().map(|_| Log::default()).collect();
    let kept: Rc<RefCell<Vec<turmoil::net::TcpStream>>> = Rc::default();
    // Hosts that only serve go first: turmoil runs hosts in the order they were added, and a
    // listener must be bound before a SYN sent at time 0 over a link without latency arrives,
    // as it is in a real run, where every application starts at time 0.
    let client_hosts: BTreeSet<&str> = plan
        .modelled
        .iter()
        .filter(|&&i| {
            matches!(
                scenario.apps[i],
                AppConfig::TcpClient { .. } | AppConfig::UdpPingPong { .. }
            )
        })
        .map(|&i| scenario.apps[i].host())
        .collect();
    let mut order = hosts.clone();
    order.sort_by_key(|&(h, _)| client_hosts.contains(config.hosts[h].name.as_str()));
    for &(host, addr) in &order {
        let name = &config.hosts[host].name;
        let apps: Vec<usize> = plan
            .modelled
            .iter()
            .copied()
            .filter(|&i| scenario.apps[i].host() == name)
            .collect();
        let is_client = apps.iter().any(|&i| {
            matches!(
                scenario.apps[i],
                AppConfig::TcpClient { .. } | AppConfig::UdpPingPong { .. }
            )
        });
        let tasks: Vec<(AppConfig, Log)> = apps
            .iter()
            .map(|&i| (scenario.apps[i].clone(), logs[i].clone()))
            .collect();
        let kept = kept.clone();
        let software = move || {
            let tasks = tasks.clone();
            let kept = kept.clone();
            async move {
                let mut clients = Vec::new();
                for (app, log) in tasks {
                    match app {
                        AppConfig::TcpServer {
                            port,
                            echo,
                            reply_bytes,
                            read_from_us,
                            close_at_us,
                            ..
                        } => {
                            let setup = ServerSetup {
                                echo,
                                reply_bytes,
                                read_from_us,
                                close_at_us,
                            };
                            tokio::task::spawn_local(tcp_server(port, ipv6, setup, log));
                        }
                        AppConfig::UdpEchoServer { port, .. } => {
                            tokio::task::spawn_local(udp_echo_server(port, ipv6, log));
                        }
                        AppConfig::TcpClient {
                            target,
                            start_us,
                            send_bytes,
                            expect_echo,
                            expect_bytes,
                            hold_until_us,
                            finish,
                            timeout_us,
                            ..
                        } => {
                            let setup = ClientSetup {
                                target,
                                start_us,
                                send_bytes,
                                expect_in: sim::apps::bytes_expected_in(
                                    send_bytes,
                                    expect_echo,
                                    expect_bytes,
                                ),
                                hold_until_us: hold_until_us.unwrap_or(0),
                                finish,
                                timeout_us,
                            };
                            clients.push(tokio::task::spawn_local(tcp_client(
                                setup,
                                log,
                                kept.clone(),
                            )));
                        }
                        AppConfig::UdpPingPong {
                            target,
                            count,
                            payload_bytes,
                            start_us,
                            timeout_us,
                            ..
                        } => {
                            let setup = PingPongSetup {
                                target,
                                count,
                                payload_bytes: payload_bytes.max(4) as usize,
                                start_us,
                                timeout_us,
                            };
                            clients.push(tokio::task::spawn_local(udp_ping_pong(setup, ipv6, log)));
                        }
                        AppConfig::Ping { .. } => {}
                    }
                }
                if clients.is_empty() {
                    std::future::pending::<()>().await;
                }
                for client in clients {
                    if let Ok(Err(e)) = client.await {
                        return Err(e);
                    }
                }
                Ok(())
            }
        };
        if is_client {
            sim.client(addr, software());
        } else {
            sim.host(addr, software);
        }
    }
    let set_latencies = |sim: &turmoil::Sim, links: &[(Impairments, Impairments)]| {
        for &(a, ip_a) in &hosts {
            for &(b, ip_b) in &hosts {
                if a < b {
                    let l = pair_latency(links, a, b);
                    sim.set_link_latency(ip_a, ip_b, Duration::from_micros(l));
                }
            }
        }
    };
    set_latencies(&sim, &links);

    // Why each pair of hosts is held: partitions (by segment) and links that are down.
    let address_of = |name: &str| {
        config
            .host_index(name)
            .and_then(|i| hosts.iter().find(|(h, _)| *h == i))
            .map(|&(i, ip)| (i, ip))
    };
    let mut held: BTreeMap<(usize, usize), BTreeSet<String>> = BTreeMap::new();
    let mut events = config.events.clone();
    events.sort_by_key(|e| e.at_us);
    let mut next_event = 0;
    let mut elapsed_us = 0u64;
    let mut finished = false;
    let mut drained = 0u64;
    loop {
        while next_event < events.len() && events[next_event].at_us <= elapsed_us {
            let event = &events[next_event];
            next_event += 1;
            let mut hold = Vec::new();
            let mut release_reason = None;
            match &event.action {
                EventAction::Partition { segment, groups } => {
                    let group_of = |host: usize| {
                        groups
                            .iter()
                            .position(|g| g.iter().any(|n| config.host_index(n) == Some(host)))
                            .unwrap_or(groups.len())
                    };
                    for &(a, _) in &hosts {
                        for &(b, _) in &hosts {
                            if a < b && group_of(a) != group_of(b) {
                                hold.push(((a, b), format!("partition {segment}")));
                            }
                        }
                    }
                }
                EventAction::Heal { segment } => {
                    release_reason = Some(format!("partition {segment}"))
                }
                EventAction::LinkDown { host } => {
                    if let Some((h, _)) = address_of(host) {
                        for &(b, _) in &hosts {
                            if b != h {
                                hold.push(((h.min(b), h.max(b)), format!("down {host}")));
                            }
                        }
                    }
                }
                EventAction::LinkUp { host } => release_reason = Some(format!("down {host}")),
                EventAction::SetImpairments {
                    host,
                    direction,
                    impairments,
                } => {
                    if let Some(h) = config.host_index(host) {
                        match direction {
                            sim::config::Direction::ToSegment => links[h].0 = impairments.clone(),
                            sim::config::Direction::FromSegment => links[h].1 = impairments.clone(),
                        }
                        set_latencies(&sim, &links);
                    }
                }
            }
            let ip = |h: usize| hosts.iter().find(|(i, _)| *i == h).map(|&(_, ip)| ip);
            for (pair, reason) in hold {
                let reasons = held.entry(pair).or_default();
                if reasons.is_empty() {
                    if let (Some(a), Some(b)) = (ip(pair.0), ip(pair.1)) {
                        sim.hold(a, b);
                    }
                }
                reasons.insert(reason);
            }
            if let Some(reason) = release_reason {
                for (pair, reasons) in held.iter_mut() {
                    if reasons.remove(&reason) && reasons.is_empty() {
                        if let (Some(a), Some(b)) = (ip(pair.0), ip(pair.1)) {
                            sim.release(a, b);
                        }
                    }
                }
                held.retain(|_, r| !r.is_empty());
            }
        }
        let done = sim.step().map_err(|e| format!("turmoil: {e}"))?;
        elapsed_us += tick_us;
        if done {
            finished = true;
            let mut in_flight = 0usize;
            sim.links(|links| {
                for link in links {
                    in_flight += link.count();
                }
            });
            drained += 1;
            if in_flight == 0 && drained > 2 || drained >= drain_ticks {
                break;
            }
        } else if elapsed_us >= config.time_limit_us {
            break;
        }
    }
    drop(sim);
    drop(kept);
    let transcripts = plan
        .modelled
        .iter()
        .map(|&i| {
            let log = logs[i].borrow();
            transcript_of(i, &scenario.apps[i], &log.exchange, log.done)
        })
        .collect();
    Ok(ReferenceRun {
        transcripts,
        not_modelled: plan.not_modelled,
        finished,
        end_us: elapsed_us,
        tick_us,
    })
}

/// A difference between the reference's transcript of an application and a real run's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disagreement {
    pub app: usize,
    /// What differs, in one sentence.
    pub what: String,
    pub reference: Option<Transcript>,
    pub actual: Option<Transcript>,
}

impl fmt::Display for Disagreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = self
            .reference
            .as_ref()
            .or(self.actual.as_ref())
            .map(|t| format!("{} ({} on {})", self.app, t.kind, t.host))
            .unwrap_or_else(|| self.app.to_string());
        writeln!(f, "app {label}: {}", self.what)?;
        let show = |t: &Option<Transcript>| match t {
            Some(t) => t.to_string(),
            None => "(none)".to_string(),
        };
        writeln!(f, "  turmoil: {}", show(&self.reference))?;
        write!(f, "  actual:  {}", show(&self.actual))
    }
}

/// Holds real transcripts to the reference's: for TCP, every connection's bytes in both
/// directions and its outcome, and whether each client finished; for UDP, every datagram
/// delivered must be one some application sent in the reference, intact, and each ping-pong
/// client must send what the reference's sends. Applications are matched by index.
pub fn compare(reference: &[Transcript], actual: &[Transcript]) -> Vec<Disagreement> {
    let mut out = Vec::new();
    let sent_anywhere: BTreeSet<Datagram> = reference
        .iter()
        .flat_map(|t| t.datagrams_sent.iter().copied())
        .collect();
    let by_app: BTreeMap<usize, &Transcript> = actual.iter().map(|t| (t.app, t)).collect();
    for r in reference {
        let mut differ = |what: String, a: Option<&Transcript>| {
            out.push(Disagreement {
                app: r.app,
                what,
                reference: Some(r.clone()),
                actual: a.cloned(),
            })
        };
        let Some(&a) = by_app.get(&r.app) else {
            differ(
                "the real run has no transcript of this application".into(),
                None,
            );
            continue;
        };
        if a.kind != r.kind || a.host != r.host {
            differ(
                format!(
                    "a different application: {} on {} instead of {} on {}",
                    a.kind, a.host, r.kind, r.host
                ),
                Some(a),
            );
            continue;
        }
        if r.is_tcp() {
            if a.streams.len() != r.streams.len() {
                differ(
                    format!(
                        "{} connections instead of {}",
                        a.streams.len(),
                        r.streams.len()
                    ),
                    Some(a),
                );
            }
            for (i, (rs, s)) in r.streams.iter().zip(&a.streams).enumerate() {
                let n = i + 1;
                if s.connected != rs.connected {
                    differ(
                        format!(
                            "stream {n}: {} where turmoil's {}",
                            if s.connected {
                                "connected"
                            } else {
                                "never connected"
                            },
                            if rs.connected { "did" } else { "did not" }
                        ),
                        Some(a),
                    );
                }
                if s.end != rs.end {
                    let name = |e: Option<End>| e.map_or("no error", End::name);
                    differ(
                        format!(
                            "stream {n}: ended {} instead of {}",
                            name(s.end),
                            name(rs.end)
                        ),
                        Some(a),
                    );
                }
                if s.sent != rs.sent {
                    differ(
                        format!("stream {n}: sent {} instead of {}", s.sent, rs.sent),
                        Some(a),
                    );
                }
                if s.received != rs.received {
                    differ(
                        format!(
                            "stream {n}: received {} instead of {}",
                            s.received, rs.received
                        ),
                        Some(a),
                    );
                }
                if s.closed_by_peer != rs.closed_by_peer {
                    differ(
                        format!(
                            "stream {n}: {} the end of the peer's stream where turmoil's {}",
                            if s.closed_by_peer { "saw" } else { "never saw" },
                            if rs.closed_by_peer { "did" } else { "did not" }
                        ),
                        Some(a),
                    );
                }
            }
            if a.done != r.done {
                differ(
                    format!(
                        "{} where turmoil's {}",
                        if a.done == Some(true) {
                            "finished"
                        } else {
                            "never finished"
                        },
                        if r.done == Some(true) {
                            "did"
                        } else {
                            "did not"
                        }
                    ),
                    Some(a),
                );
            }
        } else {
            if r.kind == "udp_ping_pong" && a.datagrams_sent != r.datagrams_sent {
                differ(
                    format!(
                        "sent {} datagrams that differ from turmoil's {}",
                        a.datagrams_sent.len(),
                        r.datagrams_sent.len()
                    ),
                    Some(a),
                );
            }
            let strangers: Vec<String> = a
                .datagrams_received
                .iter()
                .filter(|d| !sent_anywhere.contains(d))
                .map(|d| d.to_string())
                .collect();
            if !strangers.is_empty() {
                differ(
                    format!(
                        "received {} datagram(s) no application sent (corrupted or invented): {}",
                        strangers.len(),
                        strangers.join(", ")
                    ),
                    Some(a),
                );
            }
        }
    }
    out
}

/// The reference's verdict on one real run of a scenario.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum ReferenceVerdict {
    /// Every modelled application's transcript matches turmoil's.
    Agree {
        transcripts: Vec<Transcript>,
        not_modelled: Vec<NotModelled>,
    },
    Disagree {
        disagreements: Vec<Disagreement>,
        not_modelled: Vec<NotModelled>,
    },
    /// turmoil models none of the scenario's applications.
    NotModelled { reason: String },
}

impl ReferenceVerdict {
    /// One word for tables: `agree`, `disagree` or `not modelled`.
    pub fn word(&self) -> &'static str {
        match self {
            ReferenceVerdict::Agree { .. } => "agree",
            ReferenceVerdict::Disagree { .. } => "disagree",
            ReferenceVerdict::NotModelled { .. } => "not modelled",
        }
    }
}

impl fmt::Display for ReferenceVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReferenceVerdict::Agree {
                transcripts,
                not_modelled,
            } => {
                write!(
                    f,
                    "agrees with turmoil on {} application(s)",
                    transcripts.len()
                )?;
                for n in not_modelled {
                    write!(f, "\n  {n}")?;
                }
                Ok(())
            }
            ReferenceVerdict::Disagree {
                disagreements,
                not_modelled,
            } => {
                write!(f, "disagrees with turmoil:")?;
                for d in disagreements {
                    for line in d.to_string().lines() {
                        write!(f, "\n  {line}")?;
                    }
                }
                for n in not_modelled {
                    write!(f, "\n  {n}")?;
                }
                Ok(())
            }
            ReferenceVerdict::NotModelled { reason } => {
                write!(f, "not modelled by turmoil: {reason}")
            }
        }
    }
}

/// Runs `scenario`'s applications on turmoil and holds the real run `run` of the same
/// scenario to them.
pub fn reference_verdict(scenario: Workload<'_>, run: &RunReport) -> ReferenceVerdict {
    let plan = match plan(scenario) {
        Ok(plan) => plan,
        Err(reason) => return ReferenceVerdict::NotModelled { reason },
    };
    let reference = match run_reference(scenario) {
        Ok(r) => r,
        Err(reason) => {
            return ReferenceVerdict::NotModelled {
                reason: format!("the turmoil run failed: {reason}"),
            }
        }
    };
    let actual = transcripts_of(scenario, &plan, run);
    verdict(reference, &actual)
}

/// The verdict on `actual` against an already computed reference run.
pub fn verdict(reference: ReferenceRun, actual: &[Transcript]) -> ReferenceVerdict {
    let disagreements = compare(&reference.transcripts, actual);
    if disagreements.is_empty() {
        ReferenceVerdict::Agree {
            transcripts: reference.transcripts,
            not_modelled: reference.not_modelled,
        }
    } else {
        ReferenceVerdict::Disagree {
            disagreements,
            not_modelled: reference.not_modelled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_hash_is_the_hash_of_the_pattern() {
        for len in [0u64, 1, 250, 251, 252, 70_000, 200_000] {
            let bytes = pattern_from(0, len as usize);
            assert_eq!(pattern_hash(len), xxh3_64(&bytes), "{len}");
        }
        assert_eq!(pattern_hash(0), StreamLog::empty_hash());
    }

    #[test]
    fn received_bytes_off_the_pattern_are_found() {
        let mut data = pattern_from(1000, 600);
        assert_eq!(pattern_prefix(&data, 1000), 600);
        data[17] ^= 0x40;
        assert_eq!(pattern_prefix(&data, 1000), 17);
    }
}
