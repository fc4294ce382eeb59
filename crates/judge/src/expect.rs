//! Expectations: what a scenario says its run must show, checked when the file is read and judged against the run's frames and applications.
//!
//! The types are the `[[expect]]` tables of scenario files (serde reads them straight in);
//! [`check_expectation`] catches what can be caught before a run (a misspelled counter, an
//! unknown host or rule), and [`judge`] decides one expectation against a finished run.

use std::fmt::Write as _;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sim::apps::{AppConfig, AppReport};

use sim::config::{closest, did_you_mean, WorldConfig};
use sim::trace::TraceFrame;
use sim::world::{Outcome, RunReport};
use stack::MacAddr;
use wire::frame::{Arp, Transport};
use wire::{Decoded, TcpFlags};

use crate::oracle::Violation;

/// The verdict on one expectation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ExpectationResult {
    pub expectation: String,
    pub passed: bool,
    /// What the run showed, in words.
    pub observed: String,
}

/// At least one of the three bounds is given; all given must hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Bounds {
    pub equals: Option<u64>,
    pub at_least: Option<u64>,
    pub at_most: Option<u64>,
}

impl Bounds {
    pub fn holds(&self, value: u64) -> bool {
        self.equals.is_none_or(|e| value == e)
            && self.at_least.is_none_or(|l| value >= l)
            && self.at_most.is_none_or(|m| value <= m)
    }

    fn is_empty(&self) -> bool {
        self.equals.is_none() && self.at_least.is_none() && self.at_most.is_none()
    }
}

impl std::fmt::Display for Bounds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(e) = self.equals {
            parts.push(format!("exactly {e}"));
        }
        if let Some(l) = self.at_least {
            parts.push(format!("at least {l}"));
        }
        if let Some(m) = self.at_most {
            parts.push(format!("at most {m}"));
        }
        write!(f, "{}", parts.join(" and "))
    }
}

/// Something the run must show. Application checks name the host (and, when the host runs
/// several applications, the application's kind); packet checks look at every frame on every
/// segment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "check", rename_all = "snake_case", deny_unknown_fields)]
pub enum Expectation {
    /// A counter of an application's report (`replies_received`, `bytes_verified`, ...).
    Counter {
        host: String,
        #[serde(default)]
        app: Option<String>,
        counter: String,
        #[serde(default)]
        equals: Option<u64>,
        #[serde(default)]
        at_least: Option<u64>,
        #[serde(default)]
        at_most: Option<u64>,
    },
    /// A TCP client's connection reached this state (RFC 9293 names: `ESTABLISHED`,
    /// `TIME-WAIT`, ...), by `by_us` if given.
    State {
        host: String,
        #[serde(default)]
        app: Option<String>,
        state: String,
        #[serde(default)]
        by_us: Option<u64>,
    },
    /// The application reported an error containing this text (`connection refused`,
    /// `connection reset`, `connection timed out`), by `by_us` if given. Errors no `error`
    /// check names fail the run.
    Error {
        host: String,
        #[serde(default)]
        app: Option<String>,
        error: String,
        #[serde(default)]
        by_us: Option<u64>,
    },
    /// The application finished by this time.
    Done {
        host: String,
        #[serde(default)]
        app: Option<String>,
        by_us: u64,
    },
    /// The number of frames on the wire that match.
    Packets {
        matching: PacketMatch,
        #[serde(default)]
        equals: Option<u64>,
        #[serde(default)]
        at_least: Option<u64>,
        #[serde(default)]
        at_most: Option<u64>,
    },
    /// Every frame that matches `matching` is followed, within `within_us`, by a frame that
    /// matches `answer`; and there is at least one such frame.
    Answered {
        matching: PacketMatch,
        answer: PacketMatch,
        within_us: u64,
    },
    /// How the run must end: `completed` (the default when no `outcome` check is given),
    /// `stalled`, `time_limit`, `step_limit` or `stack_panic`. A scenario that records a stack
    /// hanging expects `stalled` and says why in its description.
    Outcome { outcome: String },
    /// A known finding: the trace oracle `rule` fires this many times, because the stack breaks
    /// `requirement`. Those violations are reported but do not fail the run; any other
    /// violation still does.
    Finding {
        rule: String,
        requirement: String,
        /// The stack whose defect this is: the check applies only to runs with every host on
        /// it. Without it, the check applies to every run.
        #[serde(default)]
        stack: Option<String>,
        #[serde(default)]
        equals: Option<u64>,
        #[serde(default)]
        at_least: Option<u64>,
        #[serde(default)]
        at_most: Option<u64>,
    },
    /// Retransmissions back off: at least `at_least` frames match, and each interval between
    /// consecutive ones is at least `min_growth` times the one before.
    Backoff {
        matching: PacketMatch,
        #[serde(default = "default_backoff_count")]
        at_least: u64,
        #[serde(default = "default_min_growth")]
        min_growth: f64,
    },
}

impl Expectation {
    /// The bounds of a check that counts something (`counter`, `packets`, `finding`).
    pub fn bounds(&self) -> Option<Bounds> {
        match *self {
            Expectation::Counter {
                equals,
                at_least,
                at_most,
                ..
            }
            | Expectation::Packets {
                equals,
                at_least,
                at_most,
                ..
            }
            | Expectation::Finding {
                equals,
                at_least,
                at_most,
                ..
            } => Some(Bounds {
                equals,
                at_least,
                at_most,
            }),
            _ => None,
        }
    }
}

fn default_backoff_count() -> u64 {
    3
}

fn default_min_growth() -> f64 {
    2.0
}

/// Selects frames; every field given must match, absent fields match anything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PacketMatch {
    /// The sending host (by source MAC address).
    #[serde(default)]
    pub from: Option<String>,
    /// The receiving host (by destination MAC address).
    #[serde(default)]
    pub to: Option<String>,
    /// 4 or 6.
    #[serde(default)]
    pub ip_version: Option<u8>,
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// The exact set of TCP flags, as letters: `S` SYN, `A` ACK, `F` FIN, `R` RST, `P` PSH,
    /// `U` URG; for example `SA` for a SYN-ACK.
    #[serde(default)]
    pub tcp_flags: Option<String>,
    #[serde(default)]
    pub icmp: Option<IcmpKind>,
    #[serde(default)]
    pub arp: Option<ArpKind>,
    #[serde(default)]
    pub src_port: Option<u16>,
    #[serde(default)]
    pub dst_port: Option<u16>,
    /// True: only frames whose TCP or UDP segment carries data; false: only those that do not.
    #[serde(default)]
    pub payload: Option<bool>,
    /// The exact number of TCP or UDP payload bytes (a zero-window probe carries 1).
    #[serde(default)]
    pub payload_bytes: Option<u32>,
    /// Only TCP or UDP segments carrying more than this many payload bytes (for "no segment
    /// is larger than the MSS": `payload_bytes_above = 536`, `equals = 0`).
    #[serde(default)]
    pub payload_bytes_above: Option<u32>,
    /// The TCP window field as sent (before any window scaling).
    #[serde(default)]
    pub tcp_window: Option<u16>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Arp,
    Icmp,
    Icmpv6,
    Tcp,
    Udp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IcmpKind {
    EchoRequest,
    EchoReply,
    /// Any destination unreachable message.
    Unreachable,
    PortUnreachable,
    /// ICMPv4 "fragmentation needed" or ICMPv6 "packet too big".
    PacketTooBig,
    NeighborSolicitation,
    NeighborAdvertisement,
    RouterSolicitation,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ArpKind {
    Request,
    Reply,
}

/// The counters each application kind reports, so that a misspelled counter is caught when
/// the file is read rather than silently reading as zero.
pub fn known_counters(kind: &str) -> &'static [&'static str] {
    match kind {
        "ping" => &["requests_sent", "replies_received", "unexpected_replies"],
        "udp_echo_server" => &["datagrams_received", "datagrams_echoed"],
        "udp_ping_pong" => &[
            "datagrams_sent",
            "round_trips",
            "unexpected_datagrams",
            "timeouts",
        ],
        "tcp_server" => &[
            "connections_accepted",
            "bytes_received",
            "bytes_sent",
            "bytes_verified",
            "connections_closed",
        ],
        "tcp_client" => &["bytes_sent", "bytes_received", "bytes_verified"],
        _ => &[],
    }
}

/// How a run can end, as `outcome` checks name it.
pub const OUTCOMES: [&str; 6] = [
    "completed",
    "stalled",
    "time_limit",
    "step_limit",
    "stack_panic",
    "internal_error",
];

const TCP_STATES: [&str; 11] = [
    "CLOSED",
    "LISTEN",
    "SYN-SENT",
    "SYN-RECEIVED",
    "ESTABLISHED",
    "FIN-WAIT-1",
    "FIN-WAIT-2",
    "CLOSE-WAIT",
    "CLOSING",
    "LAST-ACK",
    "TIME-WAIT",
];

/// Checks what can be checked before the run; on a mistake, names the key.
pub fn check_expectation(
    expectation: &Expectation,
    app: Option<&AppConfig>,
    host_names: &[&str],
) -> Result<(), (&'static str, String)> {
    check_expectation_fields(expectation, app, host_names)?;
    if expectation.bounds().is_some_and(|b| b.is_empty()) {
        return Err((
            "check",
            "give at least one of `equals`, `at_least`, `at_most`".to_string(),
        ));
    }
    Ok(())
}

/// Everything [`check_expectation`] checks but the bounds.
fn check_expectation_fields(
    expectation: &Expectation,
    app: Option<&AppConfig>,
    host_names: &[&str],
) -> Result<(), (&'static str, String)> {
    match expectation {
        Expectation::Counter {
            counter,
            ..
        } => {
            let kind = app.map_or("", |a| a.kind_name());
            let known = known_counters(kind);
            if !known.contains(&counter.as_str()) {
                let hint = closest(counter, known.iter().copied())
                    .map(|s| format!("did you mean `{s}`? "))
                    .unwrap_or_default();
                return Err((
                    "counter",
                    format!(
                        "a {kind} application has no counter `{counter}`; {hint}it counts: {}",
                        known.join(", ")
                    ),
                ));
            }
            Ok(())
        }
        Expectation::State { state, .. } => {
            if app.is_some_and(|a| a.kind_name() != "tcp_client") {
                return Err((
                    "host",
                    "`state` checks apply to tcp_client applications".to_string(),
                ));
            }
            if !TCP_STATES.contains(&state.as_str()) {
                let hint = did_you_mean(&state.to_uppercase(), TCP_STATES);
                return Err(("state", format!("`{state}` is not a TCP state name{hint}")));
            }
            Ok(())
        }
        Expectation::Done { .. } if app.is_some_and(|a| a.kind_name().ends_with("_server")) => {
            Err((
                "host",
                "servers serve until the run ends and never finish; check a client, or a server's counters"
                    .to_string(),
            ))
        }
        Expectation::Error { .. } | Expectation::Done { .. } => Ok(()),
        Expectation::Outcome { outcome } => {
            if OUTCOMES.contains(&outcome.as_str()) {
                Ok(())
            } else {
                let hint = did_you_mean(outcome, OUTCOMES);
                Err((
                    "outcome",
                    format!(
                        "`{outcome}` is not a run outcome{hint} (one of {})",
                        OUTCOMES.join(", ")
                    ),
                ))
            }
        }
        Expectation::Packets {
            matching,
            ..
        } => {
            check_match(matching, host_names).map_err(|m| ("matching", m))?;
            Ok(())
        }
        Expectation::Answered {
            matching, answer, ..
        } => {
            check_match(matching, host_names).map_err(|m| ("matching", m))?;
            check_match(answer, host_names).map_err(|m| ("answer", m))
        }
        Expectation::Finding {
            rule,
            requirement,
            ..
        } => {
            if !crate::oracle::RULES.contains(&rule.as_str()) {
                let hint = closest(rule, crate::oracle::RULES.iter().copied())
                    .map(|s| format!("did you mean `{s}`? "))
                    .unwrap_or_default();
                return Err((
                    "rule",
                    format!(
                        "there is no oracle rule `{rule}`; {hint}the rules are: {}",
                        crate::oracle::RULES.join(", ")
                    ),
                ));
            }
            if requirement.is_empty() {
                return Err((
                    "requirement",
                    "name the requirement the finding breaks, like `rfc9293:3.10.8`".to_string(),
                ));
            }
            Ok(())
        }
        Expectation::Backoff {
            matching,
            at_least,
            min_growth,
        } => {
            check_match(matching, host_names).map_err(|m| ("matching", m))?;
            if *at_least < 3 {
                return Err((
                    "at_least",
                    "backoff needs at least 3 frames (two intervals to compare)".to_string(),
                ));
            }
            if !(min_growth.is_finite() && *min_growth >= 1.0) {
                return Err((
                    "min_growth",
                    format!("min_growth must be a number of at least 1, not {min_growth}"),
                ));
            }
            Ok(())
        }
    }
}

fn check_match(m: &PacketMatch, host_names: &[&str]) -> Result<(), String> {
    for name in [&m.from, &m.to].into_iter().flatten() {
        if !host_names.contains(&name.as_str()) {
            let hint = did_you_mean(name, host_names.iter().copied());
            return Err(format!("there is no host called `{name}`{hint}"));
        }
    }
    if let Some(flags) = &m.tcp_flags {
        if let Some(bad) = flags.chars().find(|c| !"SAFRPU".contains(*c)) {
            return Err(format!(
                "`{bad}` is not a TCP flag letter; use S (SYN), A (ACK), F (FIN), R (RST), P (PSH), U (URG)"
            ));
        }
    }
    if let Some(v) = m.ip_version {
        if v != 4 && v != 6 {
            return Err(format!("ip_version is 4 or 6, not {v}"));
        }
    }
    Ok(())
}

/// One line per expectation, the way reports and snapshots show it.
pub fn describe(expectation: &Expectation) -> String {
    let mut out = String::new();
    let bounds = expectation.bounds().unwrap_or_default();
    match expectation {
        Expectation::Counter {
            host, app, counter, ..
        } => {
            let _ = write!(
                out,
                "{}{} counter {counter} is {}",
                host,
                app.as_deref().map(|a| format!(" {a}")).unwrap_or_default(),
                bounds
            );
        }
        Expectation::State {
            host, state, by_us, ..
        } => {
            let _ = write!(out, "{host} reaches {state}");
            if let Some(by) = by_us {
                let _ = write!(out, " by {by} µs");
            }
        }
        Expectation::Error {
            host, error, by_us, ..
        } => {
            let _ = write!(out, "{host} reports `{error}`");
            if let Some(by) = by_us {
                let _ = write!(out, " by {by} µs");
            }
        }
        Expectation::Done { host, by_us, .. } => {
            let _ = write!(out, "{host} finishes by {by_us} µs");
        }
        Expectation::Packets { matching, .. } => {
            let _ = write!(
                out,
                "packets [{}] number {}",
                describe_match(matching),
                bounds
            );
        }
        Expectation::Answered {
            matching,
            answer,
            within_us,
        } => {
            let _ = write!(
                out,
                "every [{}] is answered by [{}] within {within_us} µs",
                describe_match(matching),
                describe_match(answer)
            );
        }
        Expectation::Outcome { outcome } => {
            let _ = write!(out, "the run ends {outcome}");
        }
        Expectation::Finding {
            rule,
            requirement,
            stack,
            ..
        } => {
            let of = stack
                .as_ref()
                .map(|s| format!(" of {s}"))
                .unwrap_or_default();
            let _ = write!(
                out,
                "known finding{of} ({requirement}): oracle {rule} fires {}",
                bounds
            );
        }
        Expectation::Backoff {
            matching,
            at_least,
            min_growth,
        } => {
            let _ = write!(
                out,
                "[{}] backs off: at least {at_least} frames, each interval at least {min_growth}x the previous",
                describe_match(matching)
            );
        }
    }
    out
}

pub fn describe_match(m: &PacketMatch) -> String {
    let mut parts = Vec::new();
    if let Some(v) = &m.from {
        parts.push(format!("from={v}"));
    }
    if let Some(v) = &m.to {
        parts.push(format!("to={v}"));
    }
    if let Some(v) = m.ip_version {
        parts.push(format!("ipv{v}"));
    }
    if let Some(v) = m.protocol {
        parts.push(format!("{v:?}").to_lowercase());
    }
    if let Some(v) = &m.tcp_flags {
        parts.push(format!("flags={v}"));
    }
    if let Some(v) = m.icmp {
        parts.push(format!("icmp={v:?}"));
    }
    if let Some(v) = m.arp {
        parts.push(format!("arp={v:?}"));
    }
    if let Some(v) = m.src_port {
        parts.push(format!("sport={v}"));
    }
    if let Some(v) = m.dst_port {
        parts.push(format!("dport={v}"));
    }
    if let Some(v) = m.payload {
        parts.push(if v { "with-data" } else { "no-data" }.to_string());
    }
    if let Some(v) = m.payload_bytes {
        parts.push(format!("len={v}"));
    }
    if let Some(v) = m.payload_bytes_above {
        parts.push(format!("len>{v}"));
    }
    if let Some(v) = m.tcp_window {
        parts.push(format!("win={v}"));
    }
    if parts.is_empty() {
        "any".to_string()
    } else {
        parts.join(" ")
    }
}

/// The name `outcome` checks use for how a run ended.
pub fn outcome_name(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Completed => "completed",
        Outcome::Stalled => "stalled",
        Outcome::TimeLimit { .. } => "time_limit",
        Outcome::StepLimit { .. } => "step_limit",
        Outcome::StackPanic { .. } => "stack_panic",
        Outcome::InternalError { .. } => "internal_error",
    }
}

/// The protocol a frame's [`PacketMatch::protocol`] is matched against: ARP, or the transport
/// header that was read.
fn protocol_of(decoded: &Decoded) -> Option<Protocol> {
    if decoded.arp().is_some() {
        return Some(Protocol::Arp);
    }
    match &decoded.transport {
        Some(Transport::Tcp(_)) => Some(Protocol::Tcp),
        Some(Transport::Udp(_)) => Some(Protocol::Udp),
        Some(Transport::Icmpv4(_)) => Some(Protocol::Icmp),
        Some(Transport::Icmpv6(_)) => Some(Protocol::Icmpv6),
        _ => None,
    }
}

/// The TCP or UDP payload bytes the frame holds (0 for other frames).
fn payload_bytes(decoded: &Decoded) -> usize {
    match &decoded.transport {
        Some(Transport::Tcp(tcp)) => tcp.payload.len(),
        Some(Transport::Udp(udp)) => udp.payload.len(),
        _ => 0,
    }
}

fn icmp_matches(kind: IcmpKind, protocol: Option<Protocol>, (ty, code): (u8, u8)) -> bool {
    let v6 = protocol == Some(Protocol::Icmpv6);
    match (kind, v6) {
        (IcmpKind::EchoRequest, false) => ty == 8,
        (IcmpKind::EchoRequest, true) => ty == 128,
        (IcmpKind::EchoReply, false) => ty == 0,
        (IcmpKind::EchoReply, true) => ty == 129,
        (IcmpKind::Unreachable, false) => ty == 3,
        (IcmpKind::Unreachable, true) => ty == 1,
        (IcmpKind::PortUnreachable, false) => ty == 3 && code == 3,
        (IcmpKind::PortUnreachable, true) => ty == 1 && code == 4,
        (IcmpKind::PacketTooBig, false) => ty == 3 && code == 4,
        (IcmpKind::PacketTooBig, true) => ty == 2,
        (IcmpKind::NeighborSolicitation, v6) => v6 && ty == 135,
        (IcmpKind::NeighborAdvertisement, v6) => v6 && ty == 136,
        (IcmpKind::RouterSolicitation, v6) => v6 && ty == 133,
    }
}

fn matches(m: &PacketMatch, f: &TraceFrame, macs: &[MacAddr], config: &WorldConfig) -> bool {
    let d = &f.decoded;
    let host_mac = |name: &str| config.host_index(name).and_then(|i| macs.get(i)).copied();
    if let Some(from) = &m.from {
        if host_mac(from) != Some(d.src_mac().unwrap_or_default()) {
            return false;
        }
    }
    if let Some(to) = &m.to {
        if host_mac(to) != Some(d.dst_mac().unwrap_or_default()) {
            return false;
        }
    }
    if m.ip_version.is_some() && m.ip_version != d.ip().map(|ip| ip.version()) {
        return false;
    }
    let protocol = protocol_of(d);
    if m.protocol.is_some() && m.protocol != protocol {
        return false;
    }
    if let Some(letters) = &m.tcp_flags {
        let flags = d.tcp().map(|tcp| tcp.flags & TcpFlags::CLASSIC);
        if flags != Some(TcpFlags::from_letters(letters)) {
            return false;
        }
    }
    if let Some(kind) = m.icmp {
        let icmp = d.icmpv4().or(d.icmpv6());
        match icmp {
            Some(icmp) if icmp_matches(kind, protocol, (icmp.icmp_type, icmp.code)) => {}
            _ => return false,
        }
    }
    if let Some(kind) = m.arp {
        let wanted = match kind {
            ArpKind::Request => Arp::REQUEST,
            ArpKind::Reply => Arp::REPLY,
        };
        if d.arp().map(|arp| arp.operation) != Some(wanted) {
            return false;
        }
    }
    let ports = d.ports();
    if m.src_port.is_some() && m.src_port != ports.map(|p| p.0) {
        return false;
    }
    if m.dst_port.is_some() && m.dst_port != ports.map(|p| p.1) {
        return false;
    }
    let tcp_or_udp = matches!(protocol, Some(Protocol::Tcp | Protocol::Udp));
    let payload = payload_bytes(d);
    if let Some(with_data) = m.payload {
        if (payload > 0) != with_data || !tcp_or_udp {
            return false;
        }
    }
    if let Some(bytes) = m.payload_bytes {
        if payload != bytes as usize || !tcp_or_udp {
            return false;
        }
    }
    if let Some(bytes) = m.payload_bytes_above {
        if payload <= bytes as usize || !tcp_or_udp {
            return false;
        }
    }
    if m.tcp_window.is_some() && m.tcp_window != d.tcp().map(|tcp| tcp.window) {
        return false;
    }
    true
}

/// What judging a run's expectations reads: the world it ran, its report, what the oracles
/// found, and every frame on the wire, decoded once for the whole run.
pub struct Evidence<'a> {
    config: &'a WorldConfig,
    report: &'a RunReport,
    violations: &'a [Violation],
    frames: &'a [TraceFrame],
    macs: Vec<MacAddr>,
}

impl<'a> Evidence<'a> {
    /// The evidence of `report`, a run of `config` whose trace's frames decode to `frames`
    /// ([`sim::trace::Trace::decode_frames`]) and in which the oracles found `violations`.
    pub fn new(
        config: &'a WorldConfig,
        report: &'a RunReport,
        frames: &'a [TraceFrame],
        violations: &'a [Violation],
    ) -> Evidence<'a> {
        Evidence {
            config,
            report,
            violations,
            frames,
            macs: (0..config.hosts.len())
                .map(|i| config.host_mac(i))
                .collect(),
        }
    }

    /// Judges `expectation`; `app` is the index of the application it names, if it names one.
    pub fn judge(&self, expectation: &Expectation, app: Option<usize>) -> ExpectationResult {
        let app = app.and_then(|a| self.report.apps.get(a));
        let (passed, observed) = judge(
            expectation,
            app,
            self.frames,
            &self.macs,
            self.config,
            self.violations,
            &self.report.outcome,
        );
        ExpectationResult {
            expectation: describe(expectation),
            passed,
            observed,
        }
    }
}

fn judge(
    expectation: &Expectation,
    app: Option<&AppReport>,
    frames: &[TraceFrame],
    macs: &[MacAddr],
    config: &WorldConfig,
    violations: &[Violation],
    report_outcome: &Outcome,
) -> (bool, String) {
    let bounds = expectation.bounds().unwrap_or_default();
    let no_app = || (false, "the application did not run".to_string());
    match expectation {
        Expectation::Counter { counter, .. } => {
            let Some(app) = app else { return no_app() };
            let value = app.counter(counter);
            (bounds.holds(value), value.to_string())
        }
        Expectation::State { state, by_us, .. } => {
            let Some(app) = app else { return no_app() };
            match app.states.iter().find(|(_, s)| s == state) {
                Some((t, _)) => (by_us.is_none_or(|by| *t <= by), format!("at {} µs", t)),
                None => {
                    let seen: Vec<&str> = app.states.iter().map(|(_, s)| s.as_str()).collect();
                    (false, format!("never; states seen: {}", seen.join(", ")))
                }
            }
        }
        Expectation::Error { error, by_us, .. } => {
            let Some(app) = app else { return no_app() };
            match app.errors.iter().find(|(_, e)| e.contains(error.as_str())) {
                Some((t, e)) => (by_us.is_none_or(|by| *t <= by), format!("`{e}` at {t} µs")),
                None if app.errors.is_empty() => (false, "no error".to_string()),
                None => {
                    let seen: Vec<&str> = app.errors.iter().map(|(_, e)| e.as_str()).collect();
                    (false, format!("other errors: {}", seen.join("; ")))
                }
            }
        }
        Expectation::Done { by_us, .. } => {
            let Some(app) = app else { return no_app() };
            match app.done_at_us {
                Some(t) => (t <= *by_us, format!("done at {t} µs")),
                None => (false, "not done".to_string()),
            }
        }
        Expectation::Packets { matching, .. } => {
            let count = frames
                .iter()
                .filter(|f| matches(matching, f, macs, config))
                .count() as u64;
            (bounds.holds(count), count.to_string())
        }
        Expectation::Answered {
            matching,
            answer,
            within_us,
        } => {
            let mut asked = 0;
            for (i, f) in frames.iter().enumerate() {
                if !matches(matching, f, macs, config) {
                    continue;
                }
                asked += 1;
                let deadline = f.time_us.saturating_add(*within_us);
                let answered = frames[i + 1..]
                    .iter()
                    .take_while(|g| g.time_us <= deadline)
                    .any(|g| matches(answer, g, macs, config));
                if !answered {
                    return (
                        false,
                        format!("frame {asked} (at {} µs) got no answer", f.time_us),
                    );
                }
            }
            if asked == 0 {
                (false, "no frame matched".to_string())
            } else {
                (true, format!("{asked} answered"))
            }
        }
        Expectation::Outcome { outcome } => {
            let name = outcome_name(report_outcome);
            (name == outcome, report_outcome.to_string())
        }
        Expectation::Finding { rule, .. } => {
            let count = violations.iter().filter(|v| v.rule == rule).count() as u64;
            (bounds.holds(count), count.to_string())
        }
        Expectation::Backoff {
            matching,
            at_least,
            min_growth,
        } => {
            let times: Vec<u64> = frames
                .iter()
                .filter(|f| matches(matching, f, macs, config))
                .map(|f| f.time_us)
                .collect();
            let gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
            let listed: Vec<String> = gaps.iter().map(|g| format!("{g}")).collect();
            let observed = format!(
                "{} frames, intervals {} µs",
                times.len(),
                if listed.is_empty() {
                    "none".to_string()
                } else {
                    listed.join(", ")
                }
            );
            let grows = gaps
                .windows(2)
                .all(|w| w[1] as f64 >= w[0] as f64 * min_growth);
            ((times.len() as u64) >= *at_least && grows, observed)
        }
    }
}
