//! Differential comparison of two runs of one scenario on two backends: captures normalized (ISNs, ephemeral ports, MACs and IP IDs rebased), behaviour summarized as named facts, timing compared in bands, and application outcomes side by side.
//!
//! Two stacks never produce the same bytes, so a byte comparison says nothing about how they
//! differ. This module turns each run into facts a reader can compare:
//!
//! - **Normalization.** MAC addresses become host names (from [`Names`]) or `mac1`, `mac2`,
//!   ... by first appearance; ports in the dynamic range (49152 to 65535, where both smoltcp
//!   and lwIP pick ephemeral ports) become `eph1`, `eph2`, ... by first appearance; TCP
//!   sequence numbers are rebased to 0 at the first segment of each connection direction (the
//!   SYN when there is one), acknowledgement numbers to the other direction's base; IPv4
//!   identification fields are rebased to 0 at each sender's first packet and summarized as a
//!   pattern. The normalized trace of each run is kept, and the first frame where the two
//!   differ is reported.
//! - **Facts.** Per host: TTL or hop limit, frames sent, ARP requests, replies and gratuitous
//!   announcements, ICMP and ICMPv6 messages, the IP ID pattern. Per TCP connection (named
//!   `client:eph1 > server:5001` after the initiator): options and window offered on the SYN
//!   and the SYN-ACK, how the SYN was answered (SYN-ACK, RST, or silence), data segments,
//!   bytes and the largest segment in each direction, retransmissions and their delays,
//!   windows advertised, and how the connection ended (FIN, RST or left open). Per UDP flow:
//!   datagrams and bytes each way. Per application: its result (connected, refused, reset,
//!   timed out, done, not done) and counters. Per run: outcome and end time.
//! - **Timing bands.** Times and delays agree when they are within [`BAND_TOLERANCE_US`]
//!   (1 ms) of each other, or when the larger is at most [`BAND_FACTOR`] (1.5) times the
//!   smaller; lists of times agree when they have the same length and agree pairwise. Counts
//!   and text must be equal.
//!
//! [`compare`] lists every fact whose values differ, including facts only one run has.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use sim::apps::AppReport;
use wire::capture::read_capture;
use wire::frame::{Arp, IpHeader, Net, Tcp, TcpOption, Transport};
use wire::{Decoded, TcpFlags};

/// Two times agree when they are at most this far apart...
pub const BAND_TOLERANCE_US: u64 = 1_000;
/// ...or when the larger is at most this many times the smaller.
pub const BAND_FACTOR: f64 = 1.5;

/// Whether two durations fall in the same timing band.
pub fn same_band(a: u64, b: u64) -> bool {
    let (low, high) = (a.min(b), a.max(b));
    high - low <= BAND_TOLERANCE_US || high as f64 <= low as f64 * BAND_FACTOR
}

/// What an application observed, in a form that survives a trip through JSON (a child
/// process reports it to its parent).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppOutcome {
    pub host: String,
    pub kind: String,
    pub counters: BTreeMap<String, u64>,
    /// TCP states in the order first seen, with the time.
    pub states: Vec<(u64, String)>,
    /// Error messages, with their times.
    pub errors: Vec<(u64, String)>,
    pub done_at_us: Option<u64>,
}

impl From<&AppReport> for AppOutcome {
    fn from(report: &AppReport) -> AppOutcome {
        AppOutcome {
            host: report.host.clone(),
            kind: report.kind.to_string(),
            counters: report
                .counters
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            states: report.states.clone(),
            errors: report.errors.clone(),
            done_at_us: report.done_at_us,
        }
    }
}

impl AppOutcome {
    /// How it went, in one word or two: refused, reset, timed out, connected, done, not done
    /// (servers, which never finish, say serving).
    pub fn result(&self) -> &'static str {
        let has = |text: &str| self.errors.iter().any(|(_, e)| e.contains(text));
        if has("refused") {
            "refused"
        } else if has("reset") {
            "reset"
        } else if has("timed out") {
            "timed out"
        } else if !self.errors.is_empty() {
            "error"
        } else if self.kind.ends_with("server") {
            "serving"
        } else if self.done_at_us.is_none() {
            "not done"
        } else if self.states.iter().any(|(_, s)| s == "ESTABLISHED") {
            "connected"
        } else {
            "done"
        }
    }

    /// The result and the counters, as one line.
    pub fn summary(&self) -> String {
        let mut out = self.result().to_string();
        for (name, value) in &self.counters {
            let _ = write!(out, ", {name}={value}");
        }
        out
    }
}

/// One backend's run of a scenario, as the comparison needs it.
#[derive(Clone, Debug, Default)]
pub struct RunSide {
    /// The backend, like `smoltcp`.
    pub stack: String,
    /// Whether the run passed its own checks (expectations, oracles, known failures, goldens).
    pub passed: bool,
    /// How the run ended, in words.
    pub outcome: String,
    pub end_time_us: u64,
    pub apps: Vec<AppOutcome>,
    /// `(segment, capture file bytes)`.
    pub captures: Vec<(String, Vec<u8>)>,
}

/// Names for what the scenario knows: its hosts' MAC and IP addresses.
#[derive(Clone, Debug, Default)]
pub struct Names {
    pub macs: BTreeMap<[u8; 6], String>,
    pub ips: BTreeMap<IpAddr, String>,
}

impl Names {
    /// The hosts of a scenario's world.
    pub fn of_world(config: &sim::config::WorldConfig) -> Names {
        let mut names = Names::default();
        for (i, host) in config.hosts.iter().enumerate() {
            names.macs.insert(config.host_mac(i).0, host.name.clone());
            for cidr in [host.ipv4, host.ipv6].into_iter().flatten() {
                names.ips.insert(cidr.addr, host.name.clone());
            }
        }
        names
    }
}

/// A fact's value. Counts and text compare exactly, times in bands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Count(u64),
    Text(String),
    /// Durations in microseconds.
    Times(Vec<u64>),
}

impl Value {
    fn agrees(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Times(a), Value::Times(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_band(*x, *y))
            }
            (a, b) => a == b,
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Count(n) => write!(f, "{n}"),
            Value::Text(t) => write!(f, "{t}"),
            Value::Times(times) if times.is_empty() => write!(f, "none"),
            Value::Times(times) => {
                let shown: Vec<String> = times.iter().map(|t| format_us(*t)).collect();
                write!(f, "{}", shown.join(", "))
            }
        }
    }
}

fn format_us(us: u64) -> String {
    if us >= 1_000_000 {
        format!("{:.3} s", us as f64 / 1e6)
    } else if us >= 1_000 {
        format!("{:.3} ms", us as f64 / 1e3)
    } else {
        format!("{us} µs")
    }
}

/// One run, normalized: its trace lines and its facts.
#[derive(Clone, Debug, Default)]
pub struct Normalized {
    /// One line per frame on a segment, `<segment> <normalized decode>`, without times.
    pub lines: Vec<String>,
    /// The time of each line, in microseconds.
    pub times_us: Vec<u64>,
    /// Named facts, ordered by name.
    pub facts: BTreeMap<String, Value>,
}

/// Where two runs differ on one fact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub fact: String,
    /// The first backend's value, or `(none)` when it has no such fact.
    pub a: String,
    pub b: String,
}

/// The first frame where the normalized traces part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Divergence {
    /// 1-based.
    pub frame: usize,
    pub a: String,
    pub b: String,
}

/// Two runs side by side.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub a: String,
    pub b: String,
    pub a_passed: bool,
    pub b_passed: bool,
    pub a_outcome: String,
    pub b_outcome: String,
    /// `(host kind, a's summary, b's summary)` for every application.
    pub apps: Vec<(String, String, String)>,
    pub differences: Vec<Difference>,
    pub first_divergence: Option<Divergence>,
}

impl Comparison {
    /// The comparison as text, indented under a heading the caller writes.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let verdict = |passed: bool| if passed { "pass" } else { "FAIL" };
        let _ = writeln!(
            out,
            "  verdict: {} {} ({}), {} {} ({})",
            self.a,
            verdict(self.a_passed),
            self.a_outcome,
            self.b,
            verdict(self.b_passed),
            self.b_outcome
        );
        for (app, a, b) in &self.apps {
            if a == b {
                let _ = writeln!(out, "  app {app}: {a} (both)");
            } else {
                let _ = writeln!(out, "  app {app}: {}: {a} | {}: {b}", self.a, self.b);
            }
        }
        if self.differences.is_empty() {
            let _ = writeln!(out, "  no behavioural difference");
        }
        for d in &self.differences {
            let _ = writeln!(out, "  {}: {} {} | {} {}", d.fact, self.a, d.a, self.b, d.b);
        }
        if let Some(d) = &self.first_divergence {
            let _ = writeln!(out, "  first normalized frame that differs: #{}", d.frame);
            let _ = writeln!(out, "    {}: {}", self.a, d.a);
            let _ = writeln!(out, "    {}: {}", self.b, d.b);
        }
        out
    }
}

/// Compares two runs of one scenario: application outcomes, the facts of their normalized
/// captures (see the module documentation), and the first normalized frame that differs.
/// A capture that cannot be read is a difference of its own, not an error.
pub fn compare(a: &RunSide, b: &RunSide, names: &Names) -> Comparison {
    let (na, nb) = (normalize_side(a, names), normalize_side(b, names));
    let mut differences = Vec::new();
    let keys: std::collections::BTreeSet<&String> =
        na.facts.keys().chain(nb.facts.keys()).collect();
    for key in keys {
        match (na.facts.get(key), nb.facts.get(key)) {
            (Some(x), Some(y)) if x.agrees(y) => {}
            (x, y) => differences.push(Difference {
                fact: key.clone(),
                a: x.map_or("(none)".to_string(), |v| v.to_string()),
                b: y.map_or("(none)".to_string(), |v| v.to_string()),
            }),
        }
    }
    let first_divergence = first_divergence(&na.lines, &nb.lines);
    let mut apps = Vec::new();
    for (i, app) in a.apps.iter().enumerate() {
        let other = b
            .apps
            .get(i)
            .filter(|o| o.host == app.host && o.kind == app.kind)
            .map_or("(missing)".to_string(), AppOutcome::summary);
        apps.push((format!("{} {}", app.host, app.kind), app.summary(), other));
    }
    for app in b.apps.iter().skip(a.apps.len()) {
        apps.push((
            format!("{} {}", app.host, app.kind),
            "(missing)".to_string(),
            app.summary(),
        ));
    }
    Comparison {
        a: a.stack.clone(),
        b: b.stack.clone(),
        a_passed: a.passed,
        b_passed: b.passed,
        a_outcome: a.outcome.clone(),
        b_outcome: b.outcome.clone(),
        apps,
        differences,
        first_divergence,
    }
}

fn first_divergence(a: &[String], b: &[String]) -> Option<Divergence> {
    let end = "(end of trace)".to_string();
    let at = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or_else(|| (a.len() != b.len()).then_some(a.len().min(b.len())))?;
    Some(Divergence {
        frame: at + 1,
        a: a.get(at).unwrap_or(&end).clone(),
        b: b.get(at).unwrap_or(&end).clone(),
    })
}

fn normalize_side(side: &RunSide, names: &Names) -> Normalized {
    let mut normalized = normalize(&side.captures, names);
    normalized.facts.insert(
        "run: outcome".into(),
        Value::Text(outcome_word(&side.outcome)),
    );
    normalized
        .facts
        .insert("run: end time".into(), Value::Times(vec![side.end_time_us]));
    for app in &side.apps {
        normalized.facts.insert(
            format!("app {} {}: result", app.host, app.kind),
            Value::Text(app.summary()),
        );
        if let Some(done) = app.done_at_us {
            normalized.facts.insert(
                format!("app {} {}: done at", app.host, app.kind),
                Value::Times(vec![done]),
            );
        }
    }
    normalized
}

/// The first word of an outcome (`completed`, `stalled`, `aborted:` ...), which is what two
/// backends can share; the rest names times and hosts.
fn outcome_word(outcome: &str) -> String {
    outcome
        .split([' ', ':', '('])
        .next()
        .unwrap_or_default()
        .to_string()
}

/// An address and a port.
type Endpoint = (IpAddr, u16);

/// One TCP connection direction's running state.
#[derive(Default)]
struct Direction {
    base_seq: Option<u32>,
    /// Highest sequence end sent so far, relative.
    sent_end: u64,
    /// When each relative sequence number was last sent, for retransmission delays.
    sent_at: BTreeMap<u64, u64>,
    data_segments: u64,
    bytes: u64,
    largest: u64,
    retransmissions: u64,
    retransmission_delays: Vec<u64>,
    windows: Vec<u16>,
    zero_windows: u64,
    fin: bool,
    rst: bool,
}

struct Connection {
    /// `client:eph1 > server:5001`, after the initiator.
    label: String,
    /// The initiator's endpoint, to tell the directions apart.
    initiator: Endpoint,
    forward: Direction,
    backward: Direction,
    syn_options: Option<String>,
    syn_window: Option<u16>,
    synack_options: Option<String>,
    synack_window: Option<u16>,
    syn_times: Vec<u64>,
    answer: Option<&'static str>,
}

/// Running state while normalizing one run.
#[derive(Default)]
struct Normalizer {
    macs: BTreeMap<[u8; 6], String>,
    ports: BTreeMap<u16, String>,
    ip_id_base: BTreeMap<IpAddr, u16>,
    /// Per sender, the rebased IDs it used in order.
    ip_ids: BTreeMap<String, Vec<u16>>,
    connections: Vec<Connection>,
    /// `(lower endpoint, higher endpoint)` to an index in `connections`.
    by_endpoints: BTreeMap<(Endpoint, Endpoint), usize>,
    counts: BTreeMap<String, u64>,
    values: BTreeMap<String, std::collections::BTreeSet<String>>,
}

impl Normalizer {
    fn mac(&mut self, mac: [u8; 6], names: &Names) -> String {
        if mac == [0xff; 6] {
            return "broadcast".into();
        }
        if mac[0] & 1 == 1 {
            return "multicast".into();
        }
        if let Some(name) = names.macs.get(&mac) {
            return name.clone();
        }
        let next = format!("mac{}", self.macs.len() + 1);
        self.macs.entry(mac).or_insert(next).clone()
    }

    fn port(&mut self, port: u16) -> String {
        if port < 49152 {
            return port.to_string();
        }
        let next = format!("eph{}", self.ports.len() + 1);
        self.ports.entry(port).or_insert(next).clone()
    }

    fn ip(ip: IpAddr, names: &Names) -> String {
        names
            .ips
            .get(&ip)
            .cloned()
            .unwrap_or_else(|| ip.to_string())
    }

    fn count(&mut self, fact: String) {
        *self.counts.entry(fact).or_insert(0) += 1;
    }

    fn value(&mut self, fact: String, value: String) {
        self.values.entry(fact).or_default().insert(value);
    }
}

/// The options of a SYN as a differential report names them: kinds and values that two
/// stacks may differ in, without padding or timestamp values.
fn options_text(tcp: &Tcp) -> String {
    let mut parts = Vec::new();
    for option in tcp.options.iter() {
        match option {
            TcpOption::Eol => break,
            TcpOption::Nop => {}
            TcpOption::Mss(mss) => parts.push(format!("mss {mss}")),
            TcpOption::WindowScale(shift) => parts.push(format!("wscale {shift}")),
            TcpOption::SackPermitted => parts.push("sackOK".into()),
            TcpOption::Sack(_) => parts.push("sack".into()),
            TcpOption::Timestamp { .. } => parts.push("timestamps".into()),
            // Nothing past an option that cannot be read is trusted.
            TcpOption::Unknown { .. }
            | TcpOption::BadLength { .. }
            | TcpOption::Malformed { .. } => {
                parts.push("malformed".into());
                break;
            }
        }
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// Normalizes the frames of every capture of a run (segments in the order given) and
/// derives its facts; see the module documentation.
pub fn normalize(captures: &[(String, Vec<u8>)], names: &Names) -> Normalized {
    let mut n = Normalizer::default();
    let mut out = Normalized::default();
    for (segment, bytes) in captures {
        let frames = match read_capture(bytes) {
            Ok(frames) => frames,
            Err(e) => {
                out.facts.insert(
                    format!("capture {segment}"),
                    Value::Text(format!("unreadable: {e}")),
                );
                continue;
            }
        };
        for frame in frames {
            if frame
                .comment
                .as_deref()
                .is_some_and(|c| c.contains("never on the segment"))
            {
                continue;
            }
            let line = normalize_frame(&mut n, frame.time_us, &frame.data, names);
            out.lines.push(format!("{segment} {line}"));
            out.times_us.push(frame.time_us);
        }
    }
    for (fact, count) in std::mem::take(&mut n.counts) {
        out.facts.insert(fact, Value::Count(count));
    }
    for (fact, values) in std::mem::take(&mut n.values) {
        let values: Vec<String> = values.into_iter().collect();
        out.facts.insert(fact, Value::Text(values.join(" ")));
    }
    for (host, ids) in &n.ip_ids {
        out.facts
            .insert(format!("host {host}: ip id"), Value::Text(id_pattern(ids)));
    }
    for c in &n.connections {
        let l = &c.label;
        let mut text = |name: &str, v: Option<String>| {
            out.facts.insert(
                format!("tcp {l}: {name}"),
                Value::Text(v.unwrap_or_else(|| "none".into())),
            );
        };
        text("SYN options", c.syn_options.clone());
        text("SYN window", c.syn_window.map(|w| w.to_string()));
        text("SYN-ACK options", c.synack_options.clone());
        text("SYN-ACK window", c.synack_window.map(|w| w.to_string()));
        text("answer to SYN", c.answer.map(str::to_string));
        let ended = match (&c.forward, &c.backward) {
            (f, _) if f.rst => "RST from initiator".to_string(),
            (_, b) if b.rst => "RST from responder".to_string(),
            (f, b) if f.fin && b.fin => "FIN both ways".to_string(),
            (f, _) if f.fin => "FIN from initiator only".to_string(),
            (_, b) if b.fin => "FIN from responder only".to_string(),
            _ => "left open".to_string(),
        };
        text("end", Some(ended));
        let gaps: Vec<u64> = c.syn_times.windows(2).map(|w| w[1] - w[0]).collect();
        out.facts.insert(
            format!("tcp {l}: SYN retransmission intervals"),
            Value::Times(gaps),
        );
        for (way, d) in [("initiator>", &c.forward), ("responder>", &c.backward)] {
            let f = |name: &str| format!("tcp {l}: {way} {name}");
            out.facts
                .insert(f("data segments"), Value::Count(d.data_segments));
            out.facts.insert(f("bytes sent"), Value::Count(d.bytes));
            out.facts
                .insert(f("largest segment"), Value::Count(d.largest));
            out.facts
                .insert(f("retransmissions"), Value::Count(d.retransmissions));
            out.facts.insert(
                f("retransmission delays"),
                Value::Times(d.retransmission_delays.clone()),
            );
            let after_syn: Vec<u16> = d.windows.iter().skip(1).copied().collect();
            let windows = match (after_syn.iter().min(), after_syn.iter().max()) {
                (Some(lo), Some(hi)) => format!("{lo} to {hi}, zero {} times", d.zero_windows),
                _ => "none".into(),
            };
            out.facts
                .insert(f("windows after SYN"), Value::Text(windows));
        }
    }
    out
}

/// How a sender's IPv4 identification fields go: `+1` steps, constant, or otherwise.
fn id_pattern(ids: &[u16]) -> String {
    if ids.windows(2).all(|w| w[1] == w[0].wrapping_add(1)) {
        "increments by 1".into()
    } else if ids.windows(2).all(|w| w[1] == w[0]) {
        "constant".into()
    } else if ids.windows(2).all(|w| w[1] > w[0]) {
        "increasing".into()
    } else {
        "unordered".into()
    }
}

fn normalize_frame(n: &mut Normalizer, time_us: u64, frame: &[u8], names: &Names) -> String {
    let decoded = Decoded::parse(frame);
    let Some(eth) = &decoded.ethernet else {
        return format!("undecodable frame of {} bytes", frame.len());
    };
    let (src, dst) = (n.mac(eth.src.0, names), n.mac(eth.dst.0, names));
    n.count(format!("host {src}: frames sent"));
    let mut line = format!("{src} > {dst} ");
    let ip = match &decoded.net {
        Some(Net::Arp(arp)) => {
            let gratuitous = arp.addresses.is_some_and(|a| a.sender_ip == a.target_ip);
            let what = match arp.operation {
                Arp::REQUEST if gratuitous => "ARP gratuitous announcements",
                Arp::REQUEST => "ARP requests",
                Arp::REPLY => "ARP replies",
                _ => "ARP other",
            };
            n.count(format!("host {src}: {what}"));
            let _ = write!(line, "{}", what.trim_end_matches('s'));
            return line;
        }
        Some(Net::Ip(ip)) => ip,
        None => {
            let _ = write!(line, "non-IP frame");
            return line;
        }
    };
    let (ip_src, ip_dst) = (ip.src, ip.dst);
    // Lengths come from the headers, not the capture, which a snap length may cut.
    let transport_len = match ip.header {
        IpHeader::V4 {
            header_len,
            total_len,
            id,
            ..
        } => {
            n.value(format!("host {src}: ttl"), ip.hop_limit.to_string());
            let base = *n.ip_id_base.entry(ip_src).or_insert(id);
            n.ip_ids
                .entry(src.clone())
                .or_default()
                .push(id.wrapping_sub(base));
            u64::from(total_len).saturating_sub(header_len as u64)
        }
        IpHeader::V6 { payload_len } => {
            n.value(format!("host {src}: hop limit"), ip.hop_limit.to_string());
            // Extension headers, which wirelab's stacks do not send, would count as payload.
            u64::from(payload_len)
        }
    };
    let _ = write!(
        line,
        "{} > {} ",
        Normalizer::ip(ip_src, names),
        Normalizer::ip(ip_dst, names)
    );
    match &decoded.transport {
        Some(Transport::Tcp(tcp)) => {
            let payload = transport_len.saturating_sub(tcp.header_len as u64);
            normalize_tcp(
                n,
                time_us,
                (ip_src, ip_dst),
                (tcp, payload),
                &mut line,
                names,
            );
        }
        Some(Transport::Udp(udp)) => {
            let (sp, dp) = (n.port(udp.src_port), n.port(udp.dst_port));
            let len = u64::from(udp.length).saturating_sub(8);
            let flow = format!(
                "udp {}:{sp} > {}:{dp}",
                Normalizer::ip(ip_src, names),
                Normalizer::ip(ip_dst, names)
            );
            n.count(format!("{flow}: datagrams"));
            *n.counts.entry(format!("{flow}: bytes")).or_insert(0) += len;
            let _ = write!(line, "UDP {sp} > {dp} len {len}");
        }
        Some(Transport::Icmpv4(icmp)) => {
            let (ty, code) = (icmp.icmp_type, icmp.code);
            n.count(format!("host {src}: icmp type {ty} code {code}"));
            let _ = write!(line, "ICMP type {ty} code {code}");
        }
        Some(Transport::Icmpv6(icmp)) => {
            let (ty, code) = (icmp.icmp_type, icmp.code);
            n.count(format!("host {src}: icmpv6 type {ty} code {code}"));
            let _ = write!(line, "ICMPv6 type {ty} code {code}");
        }
        _ => {
            let _ = write!(line, "other IP payload");
        }
    }
    line
}

fn normalize_tcp(
    n: &mut Normalizer,
    time_us: u64,
    (ip_src, ip_dst): (IpAddr, IpAddr),
    (tcp, payload): (&Tcp, u64),
    line: &mut String,
    names: &Names,
) {
    let here = (ip_src, tcp.src_port);
    let there = (ip_dst, tcp.dst_port);
    let key = if here <= there {
        (here, there)
    } else {
        (there, here)
    };
    let index = match n.by_endpoints.get(&key) {
        Some(i) => *i,
        None => {
            // The initiator is whoever sends the first frame we see, the SYN when there is one.
            let label = format!(
                "{}:{} > {}:{}",
                Normalizer::ip(ip_src, names),
                n.port(here.1),
                Normalizer::ip(ip_dst, names),
                n.port(there.1)
            );
            n.connections.push(Connection {
                label,
                initiator: here,
                forward: Direction::default(),
                backward: Direction::default(),
                syn_options: None,
                syn_window: None,
                synack_options: None,
                synack_window: None,
                syn_times: Vec::new(),
                answer: None,
            });
            n.by_endpoints.insert(key, n.connections.len() - 1);
            n.connections.len() - 1
        }
    };
    let (sp, dp) = (n.port(here.1), n.port(there.1));
    let c = &mut n.connections[index];
    let forward = c.initiator == here;
    // The flags two stacks may differ in; ECN and URG are not compared.
    let flags =
        tcp.flags & (TcpFlags::SYN | TcpFlags::FIN | TcpFlags::RST | TcpFlags::PSH | TcpFlags::ACK);
    let [syn, ack, fin, rst] =
        [TcpFlags::SYN, TcpFlags::ACK, TcpFlags::FIN, TcpFlags::RST].map(|f| tcp.flags.has(f));
    if syn && !ack {
        c.syn_times.push(time_us);
        c.syn_options.get_or_insert_with(|| options_text(tcp));
        c.syn_window.get_or_insert(tcp.window);
    }
    if syn && ack {
        c.synack_options.get_or_insert_with(|| options_text(tcp));
        c.synack_window.get_or_insert(tcp.window);
    }
    if !forward && c.answer.is_none() && !c.syn_times.is_empty() {
        c.answer = Some(if syn && ack {
            "SYN-ACK"
        } else if rst {
            "RST"
        } else {
            "other"
        });
    }
    let other_base = if forward {
        c.backward.base_seq
    } else {
        c.forward.base_seq
    };
    let d = if forward {
        &mut c.forward
    } else {
        &mut c.backward
    };
    let base = *d.base_seq.get_or_insert(tcp.seq);
    let rel = u64::from(tcp.seq.wrapping_sub(base));
    let length = payload + u64::from(syn) + u64::from(fin);
    if length > 0 {
        if rel < d.sent_end {
            d.retransmissions += 1;
            if let Some(previous) = d.sent_at.get(&rel) {
                d.retransmission_delays.push(time_us - previous);
            }
        }
        d.sent_at.insert(rel, time_us);
        d.sent_end = d.sent_end.max(rel + length);
    }
    if payload > 0 {
        d.data_segments += 1;
        d.bytes += payload;
        d.largest = d.largest.max(payload);
    }
    d.windows.push(tcp.window);
    if tcp.window == 0 && !rst {
        d.zero_windows += 1;
    }
    d.fin |= fin;
    d.rst |= rst;
    let _ = write!(line, "TCP {sp} > {dp} [{flags}] seq {rel}");
    if ack {
        match other_base {
            Some(b) => {
                let _ = write!(line, " ack {}", tcp.ack.wrapping_sub(b));
            }
            None => {
                let _ = write!(line, " ack (nothing seen)");
            }
        }
    }
    let _ = write!(line, " win {}", tcp.window);
    if syn {
        let _ = write!(line, " <{}>", options_text(tcp));
    }
    let _ = write!(line, " len {payload}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, TcpOptionElement};
    use wire::capture::{CaptureFormat, CaptureWriter};

    /// A TCP frame between two fixed hosts.
    #[allow(clippy::too_many_arguments)]
    fn tcp(
        mac_from: u8,
        ports: (u16, u16),
        seq: u32,
        ack: Option<u32>,
        syn: bool,
        window: u16,
        ip_id: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let (from, to) = if mac_from == 1 { (1, 2) } else { (2, 1) };
        let mut ip = etherparse::Ipv4Header::new(
            0,
            64,
            etherparse::IpNumber::TCP,
            [10, 0, 0, from],
            [10, 0, 0, to],
        )
        .expect("a valid header");
        ip.identification = ip_id;
        let mut builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, from], [2, 0, 0, 0, 0, to])
            .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
            .tcp(ports.0, ports.1, seq, window);
        if syn {
            builder = builder.syn();
            builder = builder
                .options(&[TcpOptionElement::MaximumSegmentSize(1460)])
                .expect("options fit");
        }
        if let Some(ack) = ack {
            builder = builder.ack(ack);
        }
        let mut out = Vec::new();
        builder.write(&mut out, payload).expect("a valid frame");
        out
    }

    /// A handshake and one data segment, with the given ISNs, client port, IP ID base and
    /// server window.
    fn exchange(isn_c: u32, isn_s: u32, port: u16, id: u16, window: u16) -> Vec<u8> {
        exchange_cut(isn_c, isn_s, port, id, window, 65535)
    }

    /// The exchange, captured with this snap length.
    fn exchange_cut(
        isn_c: u32,
        isn_s: u32,
        port: u16,
        id: u16,
        window: u16,
        snaplen_bytes: u32,
    ) -> Vec<u8> {
        let frames = [
            (0, tcp(1, (port, 80), isn_c, None, true, 65535, id, &[])),
            (
                10,
                tcp(
                    2,
                    (80, port),
                    isn_s,
                    Some(isn_c.wrapping_add(1)),
                    true,
                    window,
                    id.wrapping_add(500),
                    &[],
                ),
            ),
            (
                20,
                tcp(
                    1,
                    (port, 80),
                    isn_c.wrapping_add(1),
                    Some(isn_s.wrapping_add(1)),
                    false,
                    65535,
                    id.wrapping_add(1),
                    &[],
                ),
            ),
            (
                30,
                tcp(
                    1,
                    (port, 80),
                    isn_c.wrapping_add(1),
                    Some(isn_s.wrapping_add(1)),
                    false,
                    65535,
                    id.wrapping_add(2),
                    &[7; 100],
                ),
            ),
            (
                40,
                tcp(
                    2,
                    (80, port),
                    isn_s.wrapping_add(1),
                    Some(isn_c.wrapping_add(101)),
                    false,
                    window,
                    id.wrapping_add(501),
                    &[],
                ),
            ),
        ];
        let mut writer = CaptureWriter::to_memory(CaptureFormat::Pcapng, snaplen_bytes, "lan");
        for (t, f) in &frames {
            writer.write_frame(*t, f, None).expect("written");
        }
        writer.finish().expect("finished").expect("kept in memory")
    }

    fn side(capture: Vec<u8>) -> RunSide {
        RunSide {
            stack: "x".into(),
            passed: true,
            outcome: "completed".into(),
            end_time_us: 40,
            apps: Vec::new(),
            captures: vec![("lan".into(), capture)],
        }
    }

    #[test]
    fn isns_ports_and_ip_ids_are_rebased() {
        let a = normalize(
            &[("lan".into(), exchange(1000, 5000, 50000, 7, 4096))],
            &Names::default(),
        );
        let b = normalize(
            &[("lan".into(), exchange(u32::MAX - 10, 77, 61000, 900, 4096))],
            &Names::default(),
        );
        assert_eq!(a.lines, b.lines);
        assert_eq!(a.lines[0], "lan mac1 > mac2 10.0.0.1 > 10.0.0.2 TCP eph1 > 80 [S] seq 0 win 65535 <mss 1460> len 0");
        assert_eq!(a.lines[1], "lan mac2 > mac1 10.0.0.2 > 10.0.0.1 TCP 80 > eph1 [S.] seq 0 ack 1 win 4096 <mss 1460> len 0");
        assert_eq!(
            a.lines[4],
            "lan mac2 > mac1 10.0.0.2 > 10.0.0.1 TCP 80 > eph1 [.] seq 1 ack 101 win 4096 len 0"
        );
        assert_eq!(
            a.facts.get("host mac1: ip id"),
            Some(&Value::Text("increments by 1".into()))
        );
        assert_eq!(
            a.facts
                .get("tcp 10.0.0.1:eph1 > 10.0.0.2:80: initiator> bytes sent"),
            Some(&Value::Count(100))
        );
        assert!(compare(
            &side(exchange(1000, 5000, 50000, 7, 4096)),
            &side(exchange(3, 4, 65000, 1, 4096)),
            &Names::default()
        )
        .differences
        .is_empty());
    }

    /// Sizes come from the IP and TCP headers, so a capture cut short by its snap length
    /// reports the same bytes as a whole one.
    #[test]
    fn a_snap_length_does_not_change_the_sizes() {
        let whole = normalize(
            &[("lan".into(), exchange(1000, 5000, 50000, 7, 4096))],
            &Names::default(),
        );
        let cut = normalize(
            &[("lan".into(), exchange_cut(1000, 5000, 50000, 7, 4096, 64))],
            &Names::default(),
        );
        for fact in ["bytes sent", "largest segment"] {
            let key = format!("tcp 10.0.0.1:eph1 > 10.0.0.2:80: initiator> {fact}");
            assert_eq!(whole.facts.get(&key), Some(&Value::Count(100)), "{key}");
            assert_eq!(cut.facts.get(&key), whole.facts.get(&key), "{key}");
        }
    }

    #[test]
    fn identical_runs_show_no_difference() {
        let run = side(exchange(1, 2, 50001, 3, 8192));
        let c = compare(&run, &run.clone(), &Names::default());
        assert!(c.differences.is_empty(), "{:?}", c.differences);
        assert_eq!(c.first_divergence, None);
        assert!(c.render().contains("no behavioural difference"));
    }

    #[test]
    fn a_changed_window_is_a_difference() {
        let names = Names {
            macs: [
                ([2, 0, 0, 0, 0, 1], "client".to_string()),
                ([2, 0, 0, 0, 0, 2], "server".to_string()),
            ]
            .into_iter()
            .collect(),
            ips: BTreeMap::new(),
        };
        let c = compare(
            &side(exchange(1, 2, 50001, 3, 8192)),
            &side(exchange(1, 2, 50001, 3, 4096)),
            &names,
        );
        let facts: Vec<&str> = c.differences.iter().map(|d| d.fact.as_str()).collect();
        assert_eq!(
            facts,
            [
                "tcp 10.0.0.1:eph1 > 10.0.0.2:80: SYN-ACK window",
                "tcp 10.0.0.1:eph1 > 10.0.0.2:80: responder> windows after SYN"
            ]
        );
        assert_eq!(
            (c.differences[0].a.as_str(), c.differences[0].b.as_str()),
            ("8192", "4096")
        );
        let d = c.first_divergence.expect("the traces differ");
        assert_eq!(d.frame, 2);
        assert!(
            d.a.starts_with("lan server > client") && d.a.contains("win 8192"),
            "{d:?}"
        );
    }

    #[test]
    fn times_agree_within_a_band() {
        assert!(same_band(1_000_000, 1_400_000));
        assert!(same_band(100, 1_050));
        assert!(!same_band(1_000_000, 2_000_000));
        assert!(!same_band(2_750_000, 6_000_000));
        assert!(Value::Times(vec![1_000_000, 2_000_000])
            .agrees(&Value::Times(vec![1_200_000, 2_100_000])));
        assert!(!Value::Times(vec![1_000_000]).agrees(&Value::Times(vec![1_000_000, 1])));
    }

    #[test]
    fn app_results_name_the_outcome() {
        let mut app = AppOutcome {
            host: "client".into(),
            kind: "tcp_client".into(),
            counters: BTreeMap::new(),
            states: vec![(0, "SYN-SENT".into())],
            errors: vec![(5, "connection refused".into())],
            done_at_us: Some(5),
        };
        assert_eq!(app.result(), "refused");
        app.errors.clear();
        assert_eq!(app.result(), "done");
        app.states.push((3, "ESTABLISHED".into()));
        app.counters.insert("bytes_sent".into(), 9);
        assert_eq!(app.summary(), "connected, bytes_sent=9");
    }
}
