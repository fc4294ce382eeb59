//! The one entry point that runs a scenario and judges it: the run, its expectations, the trace oracles, and the decoded snapshot people review.
//!
//! `cargo xtask scenarios` and `cargo test` both call [`check`], so a scenario passes or fails
//! the same way everywhere.

use std::fmt::Write as _;

use etherparse::{LaxNetSlice, LaxSlicedPacket, LinkSlice, TransportSlice};
use serde::Serialize;
use stack::MacAddr;

use crate::apps::AppReport;
use crate::capture::read_capture;
use crate::decode::decode_frame;
use crate::oracle::{self, Violation};
use crate::scenario::{describe, ArpKind, Expectation, IcmpKind, PacketMatch, Protocol, Scenario};
use crate::sim::{run, Outcome, RunError, RunOptions, RunReport};
use crate::trace::{format_time, TraceKind};

/// The verdict on one expectation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ExpectationResult {
    pub expectation: String,
    pub passed: bool,
    /// What the run showed, in words.
    pub observed: String,
}

/// A scenario's run and everything judged about it.
pub struct Checked {
    pub name: String,
    pub seed: u64,
    pub report: RunReport,
    pub expectations: Vec<ExpectationResult>,
    pub violations: Vec<Violation>,
    /// Everything that fails the run, one sentence each; empty when it passed.
    pub problems: Vec<String>,
}

impl Checked {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    /// The reviewed text: what the run showed (outcome, expectations, oracles, applications)
    /// followed by the decoded trace of every frame and every impairment decision.
    pub fn snapshot(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "scenario: {}", self.name);
        let _ = writeln!(out, "seed: {}", self.seed);
        let _ = writeln!(out, "outcome: {}", self.report.outcome);
        if self.report.real_time {
            let _ = writeln!(
                out,
                "real time: a linux host was attached, so virtual time followed the wall clock and the run cannot be reproduced"
            );
        }
        let _ = writeln!(
            out,
            "end: {} s, {} frames emitted, {} delivered, {} dropped",
            format_time(self.report.stats.end_time_us),
            self.report.stats.frames_emitted,
            self.report.stats.frames_delivered,
            self.report.stats.frames_dropped
        );
        let _ = writeln!(out, "expectations:");
        for result in &self.expectations {
            let _ = writeln!(
                out,
                "  {} {} (observed: {})",
                if result.passed { "ok  " } else { "FAIL" },
                result.expectation,
                result.observed
            );
        }
        if self.violations.is_empty() {
            let _ = writeln!(out, "oracles: no violation");
        } else {
            let _ = writeln!(out, "oracles:");
            for violation in &self.violations {
                let _ = writeln!(out, "  {violation}");
            }
        }
        let _ = writeln!(out, "apps:");
        for app in &self.report.apps {
            let _ = writeln!(out, "  {}", describe_app(app));
        }
        let _ = writeln!(out, "trace:");
        out.push_str(&self.report.trace_text());
        out
    }
}

fn describe_app(app: &AppReport) -> String {
    let mut out = format!("{} {}:", app.host, app.kind);
    for (name, value) in &app.counters {
        let _ = write!(out, " {name}={value}");
    }
    if !app.states.is_empty() {
        let states: Vec<String> = app
            .states
            .iter()
            .map(|(t, s)| format!("{s}@{}", format_time(*t)))
            .collect();
        let _ = write!(out, "; states {}", states.join(" "));
    }
    for (t, e) in &app.errors {
        let _ = write!(out, "; error at {}: {e}", format_time(*t));
    }
    match app.done_at_us {
        Some(t) => {
            let _ = write!(out, "; done at {}", format_time(t));
        }
        None if app.kind.ends_with("server") => {}
        None => out.push_str("; not done"),
    }
    out
}

/// Runs `scenario` with `seed` and judges it. An error means the world could not be built
/// (which a validated scenario never causes); a stack that panics is a failed run instead.
pub fn check(scenario: &Scenario, seed: u64, options: &RunOptions) -> Result<Checked, RunError> {
    let mut config = scenario.config.clone();
    config.seed = seed;
    let macs: Vec<MacAddr> = (0..config.hosts.len())
        .map(|i| config.host_mac(i))
        .collect();
    let report = run(config, &scenario.apps, options)?;
    let frames = frames_of(&report);
    let violations = oracle::check(&report.trace, &report.names, &macs);
    let mut expectations = Vec::new();
    for (expectation, app) in scenario.expectations.iter().zip(&scenario.expectation_apps) {
        let app = app.and_then(|a| report.apps.get(a));
        let (passed, observed) = judge(
            expectation,
            app,
            &frames,
            &macs,
            scenario,
            &violations,
            &report.outcome,
        );
        expectations.push(ExpectationResult {
            expectation: describe(expectation),
            passed,
            observed,
        });
    }

    let mut problems = Vec::new();
    let outcome_checked = scenario
        .expectations
        .iter()
        .any(|e| matches!(e, Expectation::Outcome { .. }));
    if !outcome_checked && !report.outcome.is_success() {
        problems.push(format!("the run {}", report.outcome));
    }
    for result in expectations.iter().filter(|r| !r.passed) {
        problems.push(format!(
            "expected {}, observed {}",
            result.expectation, result.observed
        ));
    }
    for violation in &violations {
        let known = scenario
            .expectations
            .iter()
            .any(|e| matches!(e, Expectation::Finding { rule, .. } if rule == violation.rule));
        if !known {
            problems.push(format!("oracle: {violation}"));
        }
    }
    // An application error is a failure unless an `error` check expects it.
    for (index, app) in report.apps.iter().enumerate() {
        for (time, error) in &app.errors {
            let expected = scenario
                .expectations
                .iter()
                .zip(&scenario.expectation_apps)
                .any(|(e, a)| {
                    *a == Some(index)
                        && matches!(e, Expectation::Error { error: text, .. } if error.contains(text.as_str()))
                });
            if !expected {
                problems.push(format!(
                    "{} on {} reported an error no check expects, at {}: {error}",
                    app.kind,
                    app.host,
                    format_time(*time)
                ));
            }
        }
    }
    Ok(Checked {
        name: scenario.name.clone(),
        seed,
        report,
        expectations,
        violations,
        problems,
    })
}

/// The name `outcome` checks use for how a run ended.
fn outcome_name(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Completed => "completed",
        Outcome::Stalled => "stalled",
        Outcome::TimeLimit { .. } => "time_limit",
        Outcome::StepLimit { .. } => "step_limit",
        Outcome::StackPanic { .. } => "stack_panic",
    }
}

/// What matchers need to know about one frame on the wire.
#[derive(Clone, Debug, Default)]
struct FrameFacts {
    time_us: u64,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    ip_version: Option<u8>,
    protocol: Option<Protocol>,
    /// Letters of the TCP flags set, in the order S A F R P U.
    tcp_flags: Option<u8>,
    icmp: Option<(u8, u8)>,
    arp_operation: Option<u16>,
    src_port: Option<u16>,
    dst_port: Option<u16>,
    payload_bytes: usize,
    tcp_window: Option<u16>,
}

const FLAG_LETTERS: [(char, u8); 6] =
    [('S', 1), ('A', 2), ('F', 4), ('R', 8), ('P', 16), ('U', 32)];

fn flags_from_letters(letters: &str) -> u8 {
    letters
        .chars()
        .filter_map(|c| FLAG_LETTERS.iter().find(|(l, _)| *l == c).map(|(_, b)| *b))
        .fold(0, |acc, b| acc | b)
}

fn facts(time_us: u64, frame: &[u8]) -> FrameFacts {
    let mut f = FrameFacts {
        time_us,
        ..FrameFacts::default()
    };
    let Ok(packet) = LaxSlicedPacket::from_ethernet(frame) else {
        return f;
    };
    if let Some(LinkSlice::Ethernet2(eth)) = &packet.link {
        f.src_mac = eth.source();
        f.dst_mac = eth.destination();
    }
    match &packet.net {
        Some(LaxNetSlice::Arp(arp)) => {
            f.protocol = Some(Protocol::Arp);
            f.arp_operation = Some(arp.operation().0);
        }
        Some(LaxNetSlice::Ipv4(_)) => f.ip_version = Some(4),
        Some(LaxNetSlice::Ipv6(_)) => f.ip_version = Some(6),
        None => {}
    }
    match &packet.transport {
        Some(TransportSlice::Tcp(tcp)) => {
            f.protocol = Some(Protocol::Tcp);
            let mut flags = 0;
            for (set, bit) in [
                (tcp.syn(), 1),
                (tcp.ack(), 2),
                (tcp.fin(), 4),
                (tcp.rst(), 8),
                (tcp.psh(), 16),
                (tcp.urg(), 32),
            ] {
                if set {
                    flags |= bit;
                }
            }
            f.tcp_flags = Some(flags);
            f.src_port = Some(tcp.source_port());
            f.dst_port = Some(tcp.destination_port());
            f.payload_bytes = tcp.payload().len();
            f.tcp_window = Some(tcp.window_size());
        }
        Some(TransportSlice::Udp(udp)) => {
            f.protocol = Some(Protocol::Udp);
            f.src_port = Some(udp.source_port());
            f.dst_port = Some(udp.destination_port());
            f.payload_bytes = udp.payload().len();
        }
        Some(TransportSlice::Icmpv4(icmp)) => {
            f.protocol = Some(Protocol::Icmp);
            f.icmp = Some((icmp.type_u8(), icmp.code_u8()));
        }
        Some(TransportSlice::Icmpv6(icmp)) => {
            f.protocol = Some(Protocol::Icmpv6);
            f.icmp = Some((icmp.type_u8(), icmp.code_u8()));
        }
        _ => {}
    }
    f
}

fn frames_of(report: &RunReport) -> Vec<FrameFacts> {
    report
        .trace
        .events()
        .iter()
        .filter_map(|event| match &event.kind {
            TraceKind::Frame { bytes, .. } => {
                Some(facts(event.time_us, report.trace.frame_bytes(bytes)))
            }
            _ => None,
        })
        .collect()
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

fn matches(m: &PacketMatch, f: &FrameFacts, macs: &[MacAddr], scenario: &Scenario) -> bool {
    let host_mac = |name: &str| {
        scenario
            .config
            .host_index(name)
            .and_then(|i| macs.get(i))
            .map(|m| m.0)
    };
    if let Some(from) = &m.from {
        if host_mac(from) != Some(f.src_mac) {
            return false;
        }
    }
    if let Some(to) = &m.to {
        if host_mac(to) != Some(f.dst_mac) {
            return false;
        }
    }
    if m.ip_version.is_some() && m.ip_version != f.ip_version {
        return false;
    }
    if m.protocol.is_some() && m.protocol != f.protocol {
        return false;
    }
    if let Some(letters) = &m.tcp_flags {
        if f.tcp_flags != Some(flags_from_letters(letters)) {
            return false;
        }
    }
    if let Some(kind) = m.icmp {
        match f.icmp {
            Some(icmp) if icmp_matches(kind, f.protocol, icmp) => {}
            _ => return false,
        }
    }
    if let Some(kind) = m.arp {
        let wanted = match kind {
            ArpKind::Request => 1,
            ArpKind::Reply => 2,
        };
        if f.arp_operation != Some(wanted) {
            return false;
        }
    }
    if m.src_port.is_some() && m.src_port != f.src_port {
        return false;
    }
    if m.dst_port.is_some() && m.dst_port != f.dst_port {
        return false;
    }
    if let Some(payload) = m.payload {
        let has = f.payload_bytes > 0;
        if has != payload || !matches!(f.protocol, Some(Protocol::Tcp | Protocol::Udp)) {
            return false;
        }
    }
    if let Some(bytes) = m.payload_bytes {
        if f.payload_bytes != bytes as usize
            || !matches!(f.protocol, Some(Protocol::Tcp | Protocol::Udp))
        {
            return false;
        }
    }
    if let Some(bytes) = m.payload_bytes_above {
        if f.payload_bytes <= bytes as usize
            || !matches!(f.protocol, Some(Protocol::Tcp | Protocol::Udp))
        {
            return false;
        }
    }
    if m.tcp_window.is_some() && m.tcp_window != f.tcp_window {
        return false;
    }
    true
}

fn judge(
    expectation: &Expectation,
    app: Option<&AppReport>,
    frames: &[FrameFacts],
    macs: &[MacAddr],
    scenario: &Scenario,
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
                .filter(|f| matches(matching, f, macs, scenario))
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
                if !matches(matching, f, macs, scenario) {
                    continue;
                }
                asked += 1;
                let deadline = f.time_us.saturating_add(*within_us);
                let answered = frames[i + 1..]
                    .iter()
                    .take_while(|g| g.time_us <= deadline)
                    .any(|g| matches(answer, g, macs, scenario));
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
                .filter(|f| matches(matching, f, macs, scenario))
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

/// Checks that a snapshot's frame lines are exactly the frames of a segment's capture:
/// the reviewed text and the byte-exact golden must tell the same story.
pub fn snapshot_agrees_with_capture(
    snapshot: &str,
    segment: &str,
    capture: &[u8],
) -> Result<(), String> {
    let frames = read_capture(capture).map_err(|e| format!("the capture cannot be read: {e}"))?;
    let mut from_capture = Vec::new();
    for frame in &frames {
        if frame
            .comment
            .as_deref()
            .is_some_and(|c| c.contains("never on the segment"))
        {
            continue;
        }
        let mut line = String::new();
        decode_frame(&frame.data, &mut line);
        let truncated = frame.data.len() < frame.original_len as usize;
        from_capture.push((format!("{} {line}", format_time(frame.time_us)), truncated));
    }
    let marker = format!(" {segment} #");
    let trace = snapshot
        .split_once("\ntrace:\n")
        .map(|(_, t)| t)
        .ok_or("the snapshot has no trace section")?;
    let from_snapshot: Vec<String> = trace
        .lines()
        .filter_map(|line| {
            let (time, rest) = line.split_once(&marker)?;
            // `<time> <segment> #<id> from <host>: <decoded>`
            let (_, decoded) = rest.split_once(": ")?;
            Some(format!("{time} {decoded}"))
        })
        .collect();
    if from_capture.len() != from_snapshot.len() {
        return Err(format!(
            "the snapshot lists {} frames on `{segment}`, the capture holds {}",
            from_snapshot.len(),
            from_capture.len()
        ));
    }
    for (i, (a, (b, truncated))) in from_snapshot.iter().zip(&from_capture).enumerate() {
        // A frame cut by the snap length decodes as far as its bytes go, then says it is
        // cut short; the snapshot, decoded from the whole frame, must begin the same way.
        let agrees = a == b
            || *truncated && {
                let cut = b.find(" [malformed").map_or(b.as_str(), |at| &b[..at]);
                a.starts_with(cut)
            };
        if !agrees {
            return Err(format!(
                "frame {} differs:\n  snapshot: {a}\n  capture:  {b}",
                i + 1
            ));
        }
    }
    Ok(())
}
