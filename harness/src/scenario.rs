//! Scenario files: TOML parsing with file:line:column errors, expansion into a world and its applications, and the expectations a run is checked against.
//!
//! A scenario file is the unit users write. [`parse`] turns its text into a [`Scenario`]
//! (a validated [`WorldConfig`], the applications and the expectations) or into one
//! [`ScenarioError`] that points at the offending line and column and suggests a fix.
//! Running and checking a scenario lives in [`crate::check`].

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::apps::AppConfig;
use crate::check::{check, Checked};
use crate::config::{
    closest, default_ip_mtu_bytes, default_tcp_buffer_bytes, did_you_mean, CaptureConfig, Cidr,
    CongestionControlConfig, HostConfig, KeyPath, LinkConfig, PathPart, ScheduledEvent,
    SegmentConfig, StackKind, TraceLevel, WorldConfig,
};
use crate::sim::{RunError, RunOptions};

/// The seed a scenario runs with when its file names none.
pub const DEFAULT_SEED: u64 = 1;

fn default_seed() -> u64 {
    DEFAULT_SEED
}

fn default_time_limit_us() -> u64 {
    60_000_000
}

/// The contents of one scenario file, as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// The scenario's path under `scenarios/` without `.toml`, for example `tcp/handshake`.
    pub name: String,
    /// What the scenario shows, in sentences; findings against a stack are named here.
    pub description: String,
    /// Requirement IDs the scenario exercises, for example `rfc9293:MUST-8` or `rfc792:echo`.
    #[serde(default)]
    pub requirements: Vec<String>,
    /// The root seed; `--seed` and `--seeds` override it.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// The run fails with `TimeLimit` when virtual time would pass this.
    #[serde(default = "default_time_limit_us")]
    pub time_limit_us: u64,
    /// The run fails with `StepLimit` after this many loop steps.
    #[serde(default)]
    pub step_limit: Option<u64>,
    pub segments: Vec<SegmentConfig>,
    #[serde(default)]
    pub hosts: Vec<HostConfig>,
    /// Many alike hosts at once: `count` hosts named `<prefix><n>` with consecutive addresses.
    #[serde(default)]
    pub host_groups: Vec<HostGroup>,
    #[serde(default)]
    pub events: Vec<ScheduledEvent>,
    #[serde(default)]
    pub capture: Option<CaptureConfig>,
    /// Applications; a `host` ending in `*` gives one application per host whose name starts
    /// with what comes before the `*`.
    pub apps: Vec<AppConfig>,
    #[serde(default)]
    pub expect: Vec<Expectation>,
    /// Expectations a stack is known to fail, because it breaks a requirement: with every host
    /// on that stack, each must fail exactly so, and the run passes on that account.
    #[serde(default)]
    pub known_failures: Vec<KnownFailure>,
}

/// An `[[expect]]` a stack is known to fail. With every host of the run on `stack`, the
/// expectation must fail (and, with `observed`, show exactly that); the failure is then
/// reported but does not fail the run. Should the expectation hold, or fail otherwise, the run
/// fails: a fixed or changed stack is noticed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KnownFailure {
    /// The stack that fails, `"smoltcp"` or `"lwip"`.
    pub stack: StackKind,
    /// Which `[[expect]]` fails: 1 for the first in the file.
    pub expect: usize,
    /// The requirement the stack breaks, like `rfc6298:5.5`.
    pub requirement: String,
    /// What the failing expectation observes, word for word as the report shows it; when
    /// given, any other observation fails the run.
    #[serde(default)]
    pub observed: Option<String>,
}

/// `count` hosts named `<prefix>1` ... `<prefix><count>`, addressed upwards from the first
/// addresses given, each with the group's settings. The settings are those of `[[hosts]]`,
/// under the same keys and with the same defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostGroup {
    pub prefix: String,
    pub count: u32,
    pub segment: String,
    /// The first host's IPv4 address with its prefix length; the others count up from it.
    #[serde(default)]
    pub first_ipv4: Option<Cidr>,
    #[serde(default)]
    pub first_ipv6: Option<Cidr>,
    #[serde(default)]
    pub stack: StackKind,
    #[serde(default)]
    pub ipv4_gateway: Option<Ipv4Addr>,
    #[serde(default)]
    pub ipv6_gateway: Option<Ipv6Addr>,
    #[serde(default = "default_ip_mtu_bytes")]
    pub ip_mtu_bytes: u32,
    #[serde(default)]
    pub congestion_control: CongestionControlConfig,
    #[serde(default = "default_tcp_buffer_bytes")]
    pub tcp_buffer_bytes: u32,
    /// Impairments between each host of the group and the segment, alike for all of them;
    /// each host's link draws from its own random stream.
    #[serde(default)]
    pub link: LinkConfig,
}

/// Keys a host from a group takes from its group under the same name: an error about one of
/// them points at the group's key.
const GROUP_HOST_KEYS: &[&str] = &[
    "stack",
    "segment",
    "ipv4_gateway",
    "ipv6_gateway",
    "ip_mtu_bytes",
    "congestion_control",
    "tcp_buffer_bytes",
    "link",
];

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
        stack: Option<StackKind>,
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
pub const OUTCOMES: [&str; 5] = [
    "completed",
    "stalled",
    "time_limit",
    "step_limit",
    "stack_panic",
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

/// A scenario ready to run: its world, applications and expectations, all validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    pub name: String,
    /// The file it came from, as given to [`load`].
    pub path: PathBuf,
    pub description: String,
    pub requirements: Vec<String>,
    pub config: WorldConfig,
    pub apps: Vec<AppConfig>,
    pub expectations: Vec<Expectation>,
    /// For each expectation that names an application, its index in `apps`.
    pub expectation_apps: Vec<Option<usize>>,
    /// For each expectation, its number in the file (1 for the first `[[expect]]`), which
    /// [`KnownFailure::expect`] refers to; [`Scenario::on_stack`] drops some expectations.
    pub expectation_numbers: Vec<usize>,
    pub known_failures: Vec<KnownFailure>,
}

/// Every stack a host can run, in the order reports list them.
pub const STACKS: [StackKind; 3] = [StackKind::Smoltcp, StackKind::Lwip, StackKind::Linux];

/// A stack's name as files and command lines spell it.
pub fn stack_name(stack: StackKind) -> &'static str {
    match stack {
        StackKind::Smoltcp => "smoltcp",
        StackKind::Lwip => "lwip",
        StackKind::Linux => "linux",
    }
}

/// Parses a stack's name, as `--stack` and `--diff` take it.
pub fn parse_stack(text: &str) -> Result<StackKind, String> {
    STACKS
        .into_iter()
        .find(|s| stack_name(*s) == text)
        .ok_or_else(|| {
            let names: Vec<&str> = STACKS.iter().map(|s| stack_name(*s)).collect();
            format!(
                "`{text}` is not a stack{}: one of {}",
                did_you_mean(text, names.iter().copied()),
                names.join(", ")
            )
        })
}

impl Scenario {
    /// The stack every host runs, if they all run the same one.
    pub fn run_stack(&self) -> Option<StackKind> {
        let first = self.config.hosts.first()?.stack;
        self.config
            .hosts
            .iter()
            .all(|h| h.stack == first)
            .then_some(first)
    }

    /// The scenario as a run judges it: with every host on `stack` (as written for `None`),
    /// keeping only the `finding` checks and known failures that apply to the stack the
    /// hosts then run.
    pub fn on_stack(&self, stack: Option<StackKind>) -> Scenario {
        let mut scenario = self.clone();
        if let Some(stack) = stack {
            for host in &mut scenario.config.hosts {
                host.stack = stack;
            }
        }
        let run_stack = scenario.run_stack();
        let applies = |e: &Expectation| match e {
            Expectation::Finding {
                stack: Some(only), ..
            } => run_stack == Some(*only),
            _ => true,
        };
        let kept: Vec<bool> = scenario.expectations.iter().map(applies).collect();
        let mut keep = kept.iter();
        scenario
            .expectations
            .retain(|_| keep.next().copied().unwrap_or(true));
        let mut keep = kept.iter();
        scenario
            .expectation_apps
            .retain(|_| keep.next().copied().unwrap_or(true));
        let mut keep = kept.iter();
        scenario
            .expectation_numbers
            .retain(|_| keep.next().copied().unwrap_or(true));
        scenario
            .known_failures
            .retain(|k| run_stack == Some(k.stack));
        scenario
    }

    /// Judges the known failures of this (already [`on_stack`](Self::on_stack)) scenario in a
    /// run: each expectation named must have failed as recorded; its failure then leaves the
    /// problems, and its line in the report says it is known. Otherwise the run fails saying
    /// what changed.
    pub fn settle_known_failures(&self, checked: &mut Checked) {
        for known in &self.known_failures {
            let stack = stack_name(known.stack);
            let Some(index) = self
                .expectation_numbers
                .iter()
                .position(|n| *n == known.expect)
            else {
                checked.problems.push(format!(
                    "the known failure of {stack} ({}) names [[expect]] number {}, which this run does not judge",
                    known.requirement, known.expect
                ));
                continue;
            };
            let Some(result) = checked.expectations.get_mut(index) else {
                continue;
            };
            if result.passed {
                checked.problems.push(format!(
                    "known failure of {stack} ({}) no longer fails: {} (observed {}); remove it from known_failures, and re-bless",
                    known.requirement, result.expectation, result.observed
                ));
                continue;
            }
            if let Some(recorded) = &known.observed {
                if *recorded != result.observed {
                    checked.problems.push(format!(
                        "known failure of {stack} ({}) fails differently: {} observed {}, the known failure records {recorded}",
                        known.requirement, result.expectation, result.observed
                    ));
                    continue;
                }
            }
            // The line `check` wrote for this failure, which is now accounted for.
            let line = format!(
                "expected {}, observed {}",
                result.expectation, result.observed
            );
            if let Some(at) = checked.problems.iter().position(|p| *p == line) {
                checked.problems.remove(at);
            }
            result.expectation = format!(
                "{} [known failure of {stack}: {}]",
                result.expectation, known.requirement
            );
        }
    }
}

/// Runs `scenario` with every host on `stack` (as written for `None`) at `seed`, and judges
/// it with the checks and known failures that apply to that stack: what `cargo xtask
/// scenarios`, `cargo test` and differential runs all call.
pub fn check_on(
    scenario: &Scenario,
    stack: Option<StackKind>,
    seed: u64,
    options: &RunOptions,
) -> Result<Checked, RunError> {
    let scenario = scenario.on_stack(stack);
    let mut checked = check(&scenario, seed, options)?;
    scenario.settle_known_failures(&mut checked);
    Ok(checked)
}

/// A scenario file that cannot be used, with where and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioError {
    pub file: PathBuf,
    /// 1-based; 0 when the error concerns the file as a whole.
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// The offending line, for display.
    pub source_line: String,
}

impl std::fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            return write!(f, "{}: {}", self.file.display(), self.message);
        }
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )?;
        if !self.source_line.is_empty() {
            let gutter = self.line.to_string().len();
            write!(
                f,
                "\n{:gutter$} |\n{} | {}\n{:gutter$} | {:>col$}",
                "",
                self.line,
                self.source_line,
                "",
                "^",
                col = self.column
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ScenarioError {}

/// Byte offset to 1-based line and column (in characters).
fn line_column(text: &str, offset: usize) -> (usize, usize, String) {
    let offset = offset.min(text.len());
    let offset = (0..=offset)
        .rev()
        .find(|&o| text.is_char_boundary(o))
        .unwrap_or(0);
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..offset].chars().count() + 1;
    let source_line = text[line_start..]
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    (line, column, source_line)
}

fn error_at(file: &Path, text: &str, offset: Option<usize>, message: String) -> ScenarioError {
    match offset {
        Some(offset) => {
            let (line, column, source_line) = line_column(text, offset);
            ScenarioError {
                file: file.to_path_buf(),
                line,
                column,
                message,
                source_line,
            }
        }
        None => ScenarioError {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            message,
            source_line: String::new(),
        },
    }
}

/// The byte offset where the value at `path` starts, or where its nearest existing parent
/// starts when the key itself is absent (a default was used).
fn locate(text: &str, path: &KeyPath) -> Option<usize> {
    let root = toml::de::DeTable::parse(text).ok()?;
    let mut span = root.span();
    let mut value: Option<&toml::de::DeValue<'_>> = None;
    let mut table = Some(root.get_ref());
    for part in &path.0 {
        let next = match part {
            PathPart::Key(key) => table.and_then(|t| t.get(key.as_str())),
            PathPart::Index(index) => value.and_then(|v| v.as_array()).and_then(|a| a.get(*index)),
        };
        let Some(next) = next else { break };
        span = next.span();
        value = Some(next.get_ref());
        table = next.get_ref().as_table();
    }
    Some(span.start)
}

/// Adds "did you mean" to serde's "unknown field `x`, expected one of `a`, `b`" messages.
fn with_suggestion(message: &str) -> String {
    let first_line = message
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    if !(first_line.starts_with("unknown field") || first_line.starts_with("unknown variant")) {
        return first_line;
    }
    let quoted: Vec<&str> = first_line.split('`').skip(1).step_by(2).collect();
    let Some((unknown, expected)) = quoted.split_first() else {
        return first_line;
    };
    match closest(unknown, expected.iter().copied()) {
        Some(guess) => format!("{first_line}; did you mean `{guess}`?"),
        None => first_line,
    }
}

/// Reads and parses the scenario file at `path`; `scenarios_root` is the folder whose
/// relative paths name scenarios.
pub fn load(path: &Path, scenarios_root: &Path) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        error_at(
            path,
            "",
            None,
            format!("cannot read the scenario file: {e}"),
        )
    })?;
    let expected_name = scenario_name(path, scenarios_root);
    parse(&text, path, expected_name.as_deref())
}

/// The name a file at `path` must declare: its path under the root, without `.toml`.
pub fn scenario_name(path: &Path, scenarios_root: &Path) -> Option<String> {
    let relative = path.strip_prefix(scenarios_root).ok()?;
    let text = relative.with_extension("").to_str()?.replace('\\', "/");
    Some(text)
}

/// Parses scenario `text` read from `file`. With `expected_name`, the declared name must
/// match it.
pub fn parse(
    text: &str,
    file: &Path,
    expected_name: Option<&str>,
) -> Result<Scenario, ScenarioError> {
    let parsed: ScenarioFile = toml::from_str(text).map_err(|e| {
        let offset = e.span().map(|s| s.start);
        error_at(file, text, offset, with_suggestion(e.message()))
    })?;
    let at = |path: KeyPath, message: String| error_at(file, text, locate(text, &path), message);
    let root = KeyPath::default();
    if let Some(expected) = expected_name {
        if parsed.name != expected {
            return Err(at(
                root.key("name"),
                format!(
                    "the scenario is called `{}` but its file says it is `{expected}`; \
                     write name = \"{expected}\" (names follow the path under scenarios/)",
                    parsed.name
                ),
            ));
        }
    }
    let mut config = WorldConfig::new(parsed.seed);
    config.time_limit_us = parsed.time_limit_us;
    if let Some(steps) = parsed.step_limit {
        config.step_limit = steps;
    }
    config.segments = parsed.segments.clone();
    config.hosts = parsed.hosts.clone();
    config.events = parsed.events.clone();
    config.trace = TraceLevel::Frames;
    if let Some(capture) = &parsed.capture {
        config.capture = capture.clone();
    }
    // Where each host of the expanded world was written: its own table or its group.
    let mut host_origin: Vec<KeyPath> = (0..parsed.hosts.len())
        .map(|i| root.key("hosts").index(i))
        .collect();
    for (g, group) in parsed.host_groups.iter().enumerate() {
        let group_path = root.key("host_groups").index(g);
        if group.count == 0 || group.count > 100_000 {
            return Err(at(
                group_path.key("count"),
                format!(
                    "a host group needs between 1 and 100000 hosts, not {}",
                    group.count
                ),
            ));
        }
        if group.first_ipv4.is_none() && group.first_ipv6.is_none() {
            return Err(at(
                group_path,
                "a host group needs `first_ipv4` or `first_ipv6`".to_string(),
            ));
        }
        for n in 0..group.count {
            let mut host = HostConfig::new(format!("{}{}", group.prefix, n + 1), &group.segment);
            host.stack = group.stack;
            host.ipv4_gateway = group.ipv4_gateway;
            host.ipv6_gateway = group.ipv6_gateway;
            host.ip_mtu_bytes = group.ip_mtu_bytes;
            host.congestion_control = group.congestion_control;
            host.tcp_buffer_bytes = group.tcp_buffer_bytes;
            host.link = group.link.clone();
            host.ipv4 = match group.first_ipv4 {
                Some(first) => Some(offset_cidr(first, n).ok_or_else(|| {
                    at(
                        group_path.key("first_ipv4"),
                        format!(
                            "{} hosts from {first:?} run past the end of the address space",
                            group.count
                        ),
                    )
                })?),
                None => None,
            };
            host.ipv6 = match group.first_ipv6 {
                Some(first) => Some(offset_cidr(first, n).ok_or_else(|| {
                    at(
                        group_path.key("first_ipv6"),
                        format!(
                            "{} hosts run past the end of the address space",
                            group.count
                        ),
                    )
                })?),
                None => None,
            };
            config.hosts.push(host);
            host_origin.push(group_path.clone());
        }
    }
    config.validate_located().map_err(|(path, error)| {
        // Errors about expanded hosts point at the table the host came from, and at the key
        // there when the group has it.
        let path = match path.0.as_slice() {
            [PathPart::Key(k), PathPart::Index(i), rest @ ..] if k == "hosts" => {
                let origin = host_origin[*i].clone();
                let group_key = match rest.first() {
                    Some(PathPart::Key(key)) if GROUP_HOST_KEYS.contains(&key.as_str()) => {
                        Some(rest.to_vec())
                    }
                    Some(PathPart::Key(key)) if key == "ipv4" || key == "ipv6" => {
                        Some(vec![PathPart::Key(format!("first_{key}"))])
                    }
                    _ => None,
                };
                if *i < parsed.hosts.len() {
                    KeyPath(origin.0.into_iter().chain(rest.iter().cloned()).collect())
                } else if let Some(key) = group_key {
                    KeyPath(origin.0.into_iter().chain(key).collect())
                } else {
                    origin
                }
            }
            _ => path,
        };
        at(path, error.to_string())
    })?;

    let host_names: Vec<&str> = config.hosts.iter().map(|h| h.name.as_str()).collect();
    let unknown_host = |path: KeyPath, name: &str| {
        let hint = did_you_mean(name, host_names.iter().copied());
        at(path, format!("there is no host called `{name}`{hint}"))
    };
    let mut apps = Vec::new();
    for (i, app) in parsed.apps.iter().enumerate() {
        let path = root.key("apps").index(i).key("host");
        match app.host().strip_suffix('*') {
            Some(prefix) => {
                let matching: Vec<&str> = host_names
                    .iter()
                    .copied()
                    .filter(|h| h.starts_with(prefix))
                    .collect();
                if matching.is_empty() {
                    return Err(at(path, format!("no host name starts with `{prefix}`")));
                }
                for host in matching {
                    let mut app = app.clone();
                    *app.host_mut() = host.to_string();
                    apps.push(app);
                }
            }
            None => {
                if !host_names.contains(&app.host()) {
                    return Err(unknown_host(path, app.host()));
                }
                apps.push(app.clone());
            }
        }
    }

    let mut expectation_apps = Vec::new();
    for (i, expectation) in parsed.expect.iter().enumerate() {
        let path = root.key("expect").index(i);
        let (host, kind) = match expectation {
            Expectation::Counter { host, app, .. }
            | Expectation::State { host, app, .. }
            | Expectation::Error { host, app, .. }
            | Expectation::Done { host, app, .. } => (Some(host), app.as_deref()),
            _ => (None, None),
        };
        let app_index = match host {
            Some(host) => {
                if !host_names.contains(&host.as_str()) {
                    return Err(unknown_host(path.key("host"), host));
                }
                let candidates: Vec<usize> = apps
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| a.host() == host && kind.is_none_or(|k| a.kind_name() == k))
                    .map(|(i, _)| i)
                    .collect();
                match candidates.as_slice() {
                    [one] => Some(*one),
                    [] => {
                        return Err(at(
                            path.key("host"),
                            format!(
                                "host `{host}` runs no {} application",
                                kind.unwrap_or("such")
                            ),
                        ))
                    }
                    _ => {
                        return Err(at(
                            path.key("host"),
                            format!(
                                "host `{host}` runs several applications; add `app = \"<kind>\"` to say which"
                            ),
                        ))
                    }
                }
            }
            None => None,
        };
        check_expectation(expectation, app_index.map(|a| &apps[a]), &host_names)
            .map_err(|(key, message)| at(path.key(key), message))?;
        expectation_apps.push(app_index);
    }

    for (i, known) in parsed.known_failures.iter().enumerate() {
        let path = root.key("known_failures").index(i);
        let Some(expectation) = known
            .expect
            .checked_sub(1)
            .and_then(|e| parsed.expect.get(e))
        else {
            return Err(at(
                path.key("expect"),
                format!(
                    "`expect` is the number of an [[expect]] table, 1 to {}, not {}",
                    parsed.expect.len(),
                    known.expect
                ),
            ));
        };
        if let Expectation::Finding {
            stack: Some(only), ..
        } = expectation
        {
            if *only != known.stack {
                return Err(at(
                    path.key("stack"),
                    format!(
                        "[[expect]] number {} is a finding of {} only, so {} never runs it",
                        known.expect,
                        stack_name(*only),
                        stack_name(known.stack)
                    ),
                ));
            }
        }
        if known.requirement.is_empty() {
            return Err(at(
                path.key("requirement"),
                "name the requirement the stack breaks, like `rfc6298:5.5`".to_string(),
            ));
        }
        if parsed.known_failures[..i]
            .iter()
            .any(|k| k.stack == known.stack && k.expect == known.expect)
        {
            return Err(at(
                path,
                format!(
                    "[[expect]] number {} is already a known failure of {}",
                    known.expect,
                    stack_name(known.stack)
                ),
            ));
        }
    }

    Ok(Scenario {
        name: parsed.name,
        path: file.to_path_buf(),
        description: parsed.description,
        requirements: parsed.requirements,
        config,
        apps,
        expectation_numbers: (1..=parsed.expect.len()).collect(),
        expectations: parsed.expect,
        expectation_apps,
        known_failures: parsed.known_failures,
    })
}

fn offset_cidr(first: Cidr, n: u32) -> Option<Cidr> {
    let addr = match first.addr {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a).checked_add(n)?)),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a).checked_add(u128::from(n))?)),
    };
    Some(Cidr {
        addr,
        prefix_len: first.prefix_len,
    })
}

/// Checks what can be checked before the run; on a mistake, names the key.
fn check_expectation(
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

/// Every scenario file under `root`, sorted by path so that runs list them in a fixed order.
pub fn discover(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "toml") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The JSON Schema of scenario files, as checked in at `scenarios/schema.json`.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(ScenarioFile);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
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
                .map(|s| format!(" of {}", stack_name(s)))
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

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "t/ok"
description = "two hosts"

[[segments]]
name = "lan"
kind = "switch"

[[hosts]]
name = "client"
segment = "lan"
ipv4 = "10.0.0.1/24"

[[hosts]]
name = "server"
segment = "lan"
ipv4 = "10.0.0.2/24"

[[apps]]
kind = "ping"
host = "client"
target = "10.0.0.2"

[[expect]]
check = "counter"
host = "client"
counter = "replies_received"
equals = 4
"#;

    fn err(text: &str) -> ScenarioError {
        parse(text, Path::new("s.toml"), None).expect_err("the scenario is invalid")
    }

    #[test]
    fn a_good_file_parses() {
        let s = parse(GOOD, Path::new("s.toml"), Some("t/ok")).expect("valid");
        assert_eq!(s.config.hosts.len(), 2);
        assert_eq!(s.apps.len(), 1);
        assert_eq!(s.expectation_apps, vec![Some(0)]);
    }

    #[test]
    fn unknown_keys_point_at_their_line_and_suggest() {
        let e = err(&GOOD.replace("ipv4 = \"10.0.0.2/24\"", "ipv44 = \"10.0.0.2/24\""));
        assert_eq!((e.line, e.column), (17, 1), "{e}");
        assert!(e.message.contains("did you mean `ipv4`?"), "{e}");
    }

    #[test]
    fn a_misspelled_segment_is_located_and_suggested() {
        let text = GOOD.replacen("segment = \"lan\"", "segment = \"lna\"", 1);
        let e = err(&text);
        assert_eq!((e.line, e.column), (11, 11), "{e}");
        assert!(e.message.contains("did you mean `lan`?"), "{e}");
        let shown = e.to_string();
        assert!(shown.starts_with("s.toml:11:11: "), "{shown}");
        assert!(shown.contains("segment = \"lna\""), "{shown}");
    }

    #[test]
    fn a_misspelled_app_host_is_located() {
        let e = err(&GOOD.replace("host = \"client\"\ntarget", "host = \"clent\"\ntarget"));
        assert_eq!(e.line, 21, "{e}");
        assert!(e.message.contains("did you mean `client`?"), "{e}");
    }

    #[test]
    fn a_misspelled_counter_is_caught() {
        let e = err(&GOOD.replace("replies_received", "replys_received"));
        assert_eq!(e.line, 27, "{e}");
        assert!(
            e.message.contains("did you mean `replies_received`?"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_their_place() {
        let e = err(&GOOD.replace("ipv4 = \"10.0.0.1/24\"", "ipv4 = \"10.0.0.1\""));
        assert_eq!(e.line, 12, "{e}");
        assert!(e.message.contains("prefix length"), "{e}");
        let e = err(&GOOD.replace("10.0.0.2/24", "10.0.0.1/24"));
        assert_eq!(e.line, 17, "{e}");
        assert!(e.message.contains("both have address"), "{e}");
        let e = err(&format!(
            "{GOOD}\n[[events]]\nat_us = 5\naction = \"link_down\"\nhost = \"sever\"\n"
        ));
        assert_eq!(e.line, 33, "{e}");
        assert!(e.message.contains("did you mean `server`?"), "{e}");
    }

    #[test]
    fn a_wrong_name_is_reported() {
        let e = parse(GOOD, Path::new("s.toml"), Some("t/other")).expect_err("name differs");
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn broken_toml_is_an_error_not_a_panic() {
        for text in [
            "name = ",
            "[[hosts]\n",
            "\u{0}",
            "name = \"a\"\nname = \"b\"",
            "",
        ] {
            let e = err(text);
            assert!(!e.message.is_empty());
        }
    }

    /// GOOD with the ping's reply count expected to be `equals`, and these tables added.
    fn with_known(equals: u32, extra: &str) -> Result<Scenario, ScenarioError> {
        let text = GOOD.replace("equals = 4", &format!("equals = {equals}"));
        parse(&format!("{text}\n{extra}"), Path::new("s.toml"), None)
    }

    const KNOWN: &str =
        "[[known_failures]]\nstack = \"smoltcp\"\nexpect = 1\nrequirement = \"rfc792:echo\"\n";

    #[test]
    fn a_known_failure_must_fail_exactly_as_recorded() {
        let run =
            |s: &Scenario, stack| check_on(s, stack, 1, &RunOptions::default()).expect("runs");
        // Four replies arrive; expecting five fails, and the known failure accepts that.
        let known = with_known(5, KNOWN).expect("valid");
        let checked = run(&known, None);
        assert!(checked.passed(), "{:?}", checked.problems);
        assert!(!checked.expectations[0].passed);
        assert!(checked.expectations[0]
            .expectation
            .ends_with("[known failure of smoltcp: rfc792:echo]"));
        // With the observation recorded, another one fails the run.
        let exact = with_known(5, &format!("{KNOWN}observed = \"4\"\n")).expect("valid");
        assert!(run(&exact, None).passed());
        let other = with_known(5, &format!("{KNOWN}observed = \"3\"\n")).expect("valid");
        let problems = run(&other, None).problems;
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("expected "), "{problems:?}");
        assert!(problems[1].contains("fails differently"), "{problems:?}");
        // A stack that is fixed is noticed.
        let fixed = with_known(4, KNOWN).expect("valid");
        let problems = run(&fixed, None).problems;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("no longer fails"), "{problems:?}");
        // Another stack's known failure does not apply: the expectation fails plainly.
        let lwip_only = with_known(5, &KNOWN.replace("smoltcp", "lwip")).expect("valid");
        let checked = run(&lwip_only, None);
        assert_eq!(checked.problems.len(), 1, "{:?}", checked.problems);
        assert!(
            checked.problems[0].starts_with("expected "),
            "{:?}",
            checked.problems
        );
    }

    #[test]
    fn known_failures_and_stack_findings_are_checked_when_read() {
        let e = with_known(4, &KNOWN.replace("expect = 1", "expect = 2")).expect_err("no 2nd");
        assert!(e.message.contains("1 to 1, not 2"), "{e}");
        assert_eq!(e.line, 32, "{e}");
        let e = with_known(4, &KNOWN.replace("rfc792:echo", "")).expect_err("empty");
        assert!(e.message.contains("requirement"), "{e}");
        let e = with_known(4, &format!("{KNOWN}{KNOWN}")).expect_err("twice");
        assert!(e.message.contains("already a known failure"), "{e}");
        let e = with_known(4, &KNOWN.replace("stack = \"smoltcp\"", "stack = \"lwp\""))
            .expect_err("no such stack");
        assert!(e.message.contains("did you mean `lwip`?"), "{e}");
        let finding = "[[expect]]\ncheck = \"finding\"\nrule = \"checksum\"\nrequirement = \"r\"\nstack = \"lwip\"\nequals = 0\n";
        let e = with_known(
            4,
            &format!("{finding}{}", KNOWN.replace("expect = 1", "expect = 2")),
        )
        .expect_err("smoltcp never runs an lwIP finding");
        assert!(e.message.contains("finding of lwip only"), "{e}");
        // A stack's finding is judged only with every host on that stack.
        let s = with_known(4, finding).expect("valid");
        assert_eq!(s.on_stack(None).expectations.len(), 1);
        assert_eq!(s.on_stack(Some(StackKind::Lwip)).expectations.len(), 2);
        assert_eq!(
            s.on_stack(Some(StackKind::Lwip)).expectation_numbers,
            [1, 2]
        );
        assert_eq!(parse_stack("lwip"), Ok(StackKind::Lwip));
        assert!(parse_stack("lwipp").is_err_and(|e| e.contains("did you mean `lwip`?")));
    }

    #[test]
    fn host_groups_expand_with_consecutive_addresses() {
        let text = GOOD.replace(
            "[[apps]]",
            "[[host_groups]]\nprefix = \"h\"\ncount = 3\nsegment = \"lan\"\nfirst_ipv4 = \"10.0.1.254/16\"\n\n[[apps]]\nkind = \"ping\"\nhost = \"h*\"\ntarget = \"10.0.0.2\"\n\n[[apps]]",
        );
        let s = parse(&text, Path::new("s.toml"), None).expect("valid");
        let names: Vec<&str> = s.config.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["client", "server", "h1", "h2", "h3"]);
        assert_eq!(
            s.config.hosts[4].ipv4.map(|c| c.addr.to_string()),
            Some("10.0.2.0".to_string())
        );
        assert_eq!(s.apps.len(), 4);
    }

    #[test]
    fn a_host_group_gives_its_settings_to_every_host_and_errors_point_at_its_keys() {
        let group = "[[host_groups]]\nprefix = \"h\"\ncount = 2\nsegment = \"lan\"\n\
                     first_ipv4 = \"10.0.1.1/16\"\nip_mtu_bytes = 576\n\
                     congestion_control = \"reno\"\ntcp_buffer_bytes = 4096\n\
                     ipv4_gateway = \"10.0.0.254\"\n\
                     link.to_segment.loss = { model = \"independent\", probability = 0.01 }\n\n\
                     [[apps]]";
        let text = GOOD.replacen("[[apps]]", group, 1);
        let s = parse(&text, Path::new("s.toml"), None).expect("valid");
        for host in &s.config.hosts[2..] {
            assert_eq!(host.ip_mtu_bytes, 576);
            assert_eq!(host.congestion_control, CongestionControlConfig::Reno);
            assert_eq!(host.tcp_buffer_bytes, 4096);
            assert_eq!(host.ipv4_gateway, Some("10.0.0.254".parse().unwrap()));
            assert_eq!(
                host.link.to_segment.loss,
                crate::config::LossModel::Independent { probability: 0.01 }
            );
            assert!(host.link.from_segment.is_transparent());
        }
        // The hosts of [[hosts]] keep their own defaults.
        assert_eq!(s.config.hosts[0].ip_mtu_bytes, 1500);

        // An MTU the group gives its hosts is reported at the group's value.
        let e = err(&text.replace("ip_mtu_bytes = 576", "ip_mtu_bytes = 60"));
        let line = text
            .lines()
            .position(|l| l.starts_with("ip_mtu_bytes"))
            .expect("the key is there")
            + 1;
        assert_eq!(
            (e.line, e.column),
            (line, "ip_mtu_bytes = ".len() + 1),
            "{e}"
        );
        assert!(e.to_string().contains("ip_mtu_bytes"), "{e}");
    }
}
