//! The configuration of a simulated world (hosts, segments, links, impairments, scheduled events) and its validation.
//!
//! These are plain structs with the units in the field names. Scenario files deserialize into
//! them; code builds them directly. [`WorldConfig::validate`] turns every mistake into a typed
//! [`ConfigError`] that says what is wrong and, where it can, what was probably meant.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use stack::{MacAddr, Registry};
use wire::capture::CaptureFormat;

/// The smallest IPv4 MTU every link must carry (RFC 791).
pub const MIN_IP_MTU_BYTES: u32 = 68;
/// The largest frame wirelab moves; a jumbo frame still fits.
pub const MAX_IP_MTU_BYTES: u32 = 65_535 - 14;
/// The longest latency, jitter or reordering delay one link direction may add: an hour.
pub const MAX_DELAY_US: u64 = 3_600_000_000;
/// The smallest drop-tail queue: one full Ethernet frame of a 1500-byte IP MTU.
pub const MIN_QUEUE_LIMIT_BYTES: u64 = 1514;
/// The smallest capture snap length that still holds Ethernet, IP and TCP headers.
pub const MIN_SNAPLEN_BYTES: u32 = 64;
/// The largest capture snap length (tcpdump's and Wireshark's maximum).
pub const MAX_SNAPLEN_BYTES: u32 = 262_144;

/// A whole simulated network and how long it may run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorldConfig {
    /// The run's root seed; every random stream is derived from it.
    pub seed: u64,
    /// The run ends with `TimeLimit` when virtual time would pass this.
    #[serde(default = "default_time_limit_us")]
    pub time_limit_us: u64,
    /// The run ends with `StepLimit` after this many loop steps.
    #[serde(default = "default_step_limit")]
    pub step_limit: u64,
    pub segments: Vec<SegmentConfig>,
    pub hosts: Vec<HostConfig>,
    #[serde(default)]
    pub events: Vec<ScheduledEvent>,
    #[serde(default)]
    pub capture: CaptureConfig,
    #[serde(default)]
    pub trace: TraceLevel,
}

fn default_time_limit_us() -> u64 {
    3_600_000_000
}

fn default_step_limit() -> u64 {
    100_000_000
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SegmentKind {
    /// Every frame goes to every other port.
    Hub,
    /// A learning switch: known unicast destinations go to their port, the rest is flooded.
    Switch,
    /// Exactly two hosts.
    PointToPoint,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentConfig {
    pub name: String,
    pub kind: SegmentKind,
}

/// The stack a host runs when its configuration names none.
pub const DEFAULT_STACK: &str = "smoltcp";

/// [`DEFAULT_STACK`], owned, for serde's defaults.
pub fn default_stack() -> String {
    DEFAULT_STACK.to_string()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CongestionControlConfig {
    #[default]
    None,
    Reno,
    Cubic,
}

/// An address with its prefix length, written `10.0.0.1/24` or `2001:db8::1/64`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schemars(with = "String")]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` needs a prefix length, for example `{s}/24`"))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{addr}` is not an IPv4 or IPv6 address"))?;
        let prefix_len: u8 = prefix
            .parse()
            .map_err(|_| format!("`{prefix}` is not a prefix length"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(format!("prefix length {prefix_len} is over {max}"));
        }
        Ok(Cidr { addr, prefix_len })
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;
    fn try_from(s: String) -> Result<Cidr, String> {
        s.parse()
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        format!("{}/{}", c.addr, c.prefix_len)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    pub name: String,
    /// The registered name of the stack the host runs: `smoltcp` (the default), `lwip`
    /// (Debian's lwIP 2.1.3, one private copy per host), `linux` (the kernel in a namespace
    /// of wirelab's own, in real time), or any stack registered by the program running the
    /// scenario.
    #[serde(default = "default_stack")]
    pub stack: String,
    /// The segment this host's one interface is attached to.
    pub segment: String,
    /// Defaults to a locally administered address derived from the host's index.
    #[serde(default, with = "mac_serde")]
    #[schemars(with = "Option<String>")]
    pub mac: Option<MacAddr>,
    #[serde(default)]
    pub ipv4: Option<Cidr>,
    #[serde(default)]
    pub ipv6: Option<Cidr>,
    #[serde(default)]
    pub ipv4_gateway: Option<Ipv4Addr>,
    #[serde(default)]
    pub ipv6_gateway: Option<Ipv6Addr>,
    /// The interface's IP MTU; frames may be 14 bytes longer.
    #[serde(default = "default_ip_mtu_bytes")]
    pub ip_mtu_bytes: u32,
    #[serde(default)]
    pub congestion_control: CongestionControlConfig,
    #[serde(default = "default_tcp_buffer_bytes")]
    pub tcp_buffer_bytes: u32,
    /// Impairments between this host and its segment, one set per direction.
    #[serde(default)]
    pub link: LinkConfig,
}

/// The IP MTU a host's interface has when its configuration names none.
pub fn default_ip_mtu_bytes() -> u32 {
    1500
}

/// The TCP buffer size a host has when its configuration names none.
pub fn default_tcp_buffer_bytes() -> u32 {
    64 * 1024
}

impl HostConfig {
    /// A host on `segment` with wirelab's defaults for everything else.
    pub fn new(name: impl Into<String>, segment: impl Into<String>) -> HostConfig {
        HostConfig {
            name: name.into(),
            stack: default_stack(),
            segment: segment.into(),
            mac: None,
            ipv4: None,
            ipv6: None,
            ipv4_gateway: None,
            ipv6_gateway: None,
            ip_mtu_bytes: default_ip_mtu_bytes(),
            congestion_control: CongestionControlConfig::None,
            tcp_buffer_bytes: default_tcp_buffer_bytes(),
            link: LinkConfig::default(),
        }
    }

    pub fn with_ipv4(mut self, cidr: &str) -> HostConfig {
        self.ipv4 = Some(cidr.parse().expect("a literal CIDR in code"));
        self
    }

    pub fn with_ipv6(mut self, cidr: &str) -> HostConfig {
        self.ipv6 = Some(cidr.parse().expect("a literal CIDR in code"));
        self
    }
}

mod mac_serde {
    use serde::{Deserialize, Deserializer, Serializer};
    use stack::MacAddr;

    pub fn serialize<S: Serializer>(mac: &Option<MacAddr>, s: S) -> Result<S::Ok, S::Error> {
        match mac {
            Some(m) => s.serialize_some(&m.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<MacAddr>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| t.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// The two directions of a host's attachment to its segment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    /// Frames the host sends.
    #[serde(default)]
    pub to_segment: Impairments,
    /// Frames delivered to the host.
    #[serde(default)]
    pub from_segment: Impairments,
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    ToSegment,
    FromSegment,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::ToSegment => "to_segment",
            Direction::FromSegment => "from_segment",
        }
    }
}

/// How frames are lost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(tag = "model", rename_all = "snake_case", deny_unknown_fields)]
pub enum LossModel {
    #[default]
    None,
    /// Each frame is lost with the same probability.
    Independent { probability: f64 },
    /// Bursty loss: a two-state Markov chain (good and bad) with a loss probability per state.
    GilbertElliott {
        good_to_bad_probability: f64,
        bad_to_good_probability: f64,
        loss_in_good_probability: f64,
        loss_in_bad_probability: f64,
    },
}

/// What happens to frames in one direction of a link, applied in this fixed order: link
/// state, MTU, loss, corruption, duplication, bandwidth and queue, latency and jitter,
/// reordering.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Impairments {
    #[serde(default)]
    #[schemars(range(max = 3_600_000_000u64))]
    pub latency_us: u64,
    /// Each frame gets an extra delay drawn uniformly from `0..=jitter_us`; frames stay in order.
    #[serde(default)]
    #[schemars(range(max = 3_600_000_000u64))]
    pub jitter_us: u64,
    #[serde(default)]
    pub loss: LossModel,
    #[serde(default)]
    pub duplicate_probability: f64,
    /// A frame chosen for reordering is held back by `reorder_delay_us`, so later ones overtake it.
    #[serde(default)]
    pub reorder_probability: f64,
    #[serde(default)]
    #[schemars(range(max = 3_600_000_000u64))]
    pub reorder_delay_us: u64,
    /// A corrupted frame has one bit flipped where the receiver's checksums cover it.
    #[serde(default)]
    pub corrupt_probability: f64,
    /// Serialization delay and queueing; `None` is infinitely fast.
    #[serde(default)]
    pub bandwidth_bits_per_s: Option<u64>,
    /// Drop-tail limit of the queue in front of a bandwidth-limited link, at least one full
    /// frame (1514 bytes).
    #[serde(default)]
    #[schemars(range(min = 1514))]
    pub queue_limit_bytes: Option<u64>,
    /// Frames carrying an IP packet larger than this are dropped.
    #[serde(default)]
    pub mtu_bytes: Option<u32>,
}

impl Impairments {
    /// True when the settings let every frame through at once, unchanged.
    pub fn is_transparent(&self) -> bool {
        *self == Impairments::default()
    }
}

/// Something that happens to the network at a given virtual time. In files it is one table:
/// `at_us`, `action` and the action's own keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(from = "EventEntry", into = "EventEntry")]
pub struct ScheduledEvent {
    pub at_us: u64,
    pub action: EventAction,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum EventAction {
    /// The host's link stops carrying frames in both directions.
    LinkDown {
        host: String,
    },
    LinkUp {
        host: String,
    },
    /// Hosts of a segment are split into groups that cannot reach one another; hosts not named
    /// form one more group.
    Partition {
        segment: String,
        groups: Vec<Vec<String>>,
    },
    Heal {
        segment: String,
    },
    /// Replaces the impairments of one direction of a host's link.
    SetImpairments {
        host: String,
        direction: Direction,
        impairments: Impairments,
    },
}

/// The file form of [`ScheduledEvent`]: serde cannot reject unknown keys of a flattened
/// enum, so every action carries its own `at_us` here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
enum EventEntry {
    /// The host's link stops carrying frames in both directions.
    LinkDown { at_us: u64, host: String },
    /// The host's link carries frames again.
    LinkUp { at_us: u64, host: String },
    /// Hosts of a segment are split into groups that cannot reach one another; hosts not named
    /// form one more group.
    Partition {
        at_us: u64,
        segment: String,
        groups: Vec<Vec<String>>,
    },
    /// Ends a partition of the segment.
    Heal { at_us: u64, segment: String },
    /// Replaces the impairments of one direction of a host's link.
    SetImpairments {
        at_us: u64,
        host: String,
        direction: Direction,
        impairments: Impairments,
    },
}

impl From<EventEntry> for ScheduledEvent {
    fn from(entry: EventEntry) -> ScheduledEvent {
        let (at_us, action) = match entry {
            EventEntry::LinkDown { at_us, host } => (at_us, EventAction::LinkDown { host }),
            EventEntry::LinkUp { at_us, host } => (at_us, EventAction::LinkUp { host }),
            EventEntry::Partition {
                at_us,
                segment,
                groups,
            } => (at_us, EventAction::Partition { segment, groups }),
            EventEntry::Heal { at_us, segment } => (at_us, EventAction::Heal { segment }),
            EventEntry::SetImpairments {
                at_us,
                host,
                direction,
                impairments,
            } => (
                at_us,
                EventAction::SetImpairments {
                    host,
                    direction,
                    impairments,
                },
            ),
        };
        ScheduledEvent { at_us, action }
    }
}

impl From<ScheduledEvent> for EventEntry {
    fn from(event: ScheduledEvent) -> EventEntry {
        let at_us = event.at_us;
        match event.action {
            EventAction::LinkDown { host } => EventEntry::LinkDown { at_us, host },
            EventAction::LinkUp { host } => EventEntry::LinkUp { at_us, host },
            EventAction::Partition { segment, groups } => EventEntry::Partition {
                at_us,
                segment,
                groups,
            },
            EventAction::Heal { segment } => EventEntry::Heal { at_us, segment },
            EventAction::SetImpairments {
                host,
                direction,
                impairments,
            } => EventEntry::SetImpairments {
                at_us,
                host,
                direction,
                impairments,
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptureConfig {
    pub enabled: bool,
    pub format: CaptureFormat,
    /// Bytes of each frame kept, 64 to 262144.
    #[schemars(range(min = 64, max = 262_144))]
    pub snaplen_bytes: u32,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            enabled: true,
            format: CaptureFormat::Pcapng,
            snaplen_bytes: 65_535,
        }
    }
}

/// How much of the run is kept as trace events.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TraceLevel {
    /// Only impairment decisions and run events.
    Decisions,
    /// Every frame on every segment as well.
    #[default]
    Frames,
}

/// A mistake in a configuration.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("there is no host")]
    NoHosts,
    #[error("two hosts are called `{0}`; host names must be unique")]
    DuplicateHost(String),
    #[error("two segments are called `{0}`; segment names must be unique")]
    DuplicateSegment(String),
    #[error(
        "{context} names segment `{name}`, which does not exist{}",
        hint(suggestion)
    )]
    UnknownSegment {
        context: String,
        name: String,
        suggestion: Option<String>,
    },
    #[error(
        "{context} names host `{name}`, which does not exist{}",
        hint(suggestion)
    )]
    UnknownHost {
        context: String,
        name: String,
        suggestion: Option<String>,
    },
    #[error("hosts `{first}` and `{second}` both have MAC address {mac}")]
    DuplicateMac {
        mac: MacAddr,
        first: String,
        second: String,
    },
    #[error("host `{host}` has MAC address {mac}, which is a multicast address; the first byte must be even")]
    MulticastMac { host: String, mac: MacAddr },
    #[error("hosts `{first}` and `{second}` both have address {addr}")]
    DuplicateAddress {
        addr: IpAddr,
        first: String,
        second: String,
    },
    #[error("host `{host}`: `{field}` must be an {expected} address, got {got}")]
    WrongFamily {
        host: String,
        field: &'static str,
        expected: &'static str,
        got: IpAddr,
    },
    #[error("host `{0}` has no IPv4 and no IPv6 address")]
    NoAddress(String),
    #[error("{field} is {value}, but a probability must be between 0 and 1")]
    Probability { field: String, value: f64 },
    #[error("{field} is {value} bytes, but an IP MTU must be at least {MIN_IP_MTU_BYTES} and at most {MAX_IP_MTU_BYTES}")]
    Mtu { field: String, value: u32 },
    #[error("{field}: {value} µs plus the time limit overflows the 64-bit virtual clock")]
    TimeOverflow { field: String, value: u64 },
    #[error("{field} is 0; a link needs a positive bandwidth (leave it out for an infinitely fast link)")]
    ZeroBandwidth { field: String },
    #[error("point-to-point segment `{segment}` has {hosts} hosts attached; it needs exactly 2")]
    PointToPoint { segment: String, hosts: usize },
    #[error("{field} is {value}, but it must be {allowed}")]
    OutOfRange {
        field: String,
        value: String,
        allowed: String,
    },
    #[error("a {what} name is empty; give it a name in quotes, like \"{example}\"")]
    EmptyName {
        what: &'static str,
        example: &'static str,
    },
    #[error("host `{host}` appears in more than one group of the partition at {at_us} µs")]
    PartitionOverlap { host: String, at_us: u64 },
    #[error("host `{host}` in the partition at {at_us} µs is not on segment `{segment}`")]
    PartitionForeignHost {
        host: String,
        segment: String,
        at_us: u64,
    },
    #[error("the event at {at_us} µs comes after the time limit of {time_limit_us} µs and would never happen")]
    EventAfterLimit { at_us: u64, time_limit_us: u64 },
    #[error("{field}: reorder_probability is {probability} but reorder_delay_us is 0, so no frame would be overtaken; give reorder_delay_us a value")]
    ReorderWithoutDelay { field: String, probability: f64 },
    #[error("host `{host}`: the TCP buffer of {value} bytes is outside 1 KiB ..= 1 GiB")]
    TcpBuffer { host: String, value: u32 },
    #[error("host `{host}` names stack `{stack}`, which is not registered{}; registered: {}", hint(suggestion), .registered.join(", "))]
    UnknownStack {
        host: String,
        stack: String,
        suggestion: Option<String>,
        registered: Vec<String>,
    },
    #[error("host `{host}`: {problem}")]
    StackName { host: String, problem: String },
    #[error("{count} hosts run on stack `{stack}`, which allows at most {max} in one run")]
    TooManyHosts {
        stack: String,
        count: usize,
        max: usize,
    },
    #[error("stack `{stack}` runs in real time and allows a time limit of at most {} s, not {} s", max_us / 1_000_000, limit_us / 1_000_000)]
    TimeLimitTooLong {
        stack: String,
        limit_us: u64,
        max_us: u64,
    },
}

fn hint(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!("; did you mean `{s}`?"),
        None => String::new(),
    }
}

/// `; did you mean `x`?` when one of `candidates` is close to `name`, or nothing.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    hint(&closest(name, candidates))
}

/// The candidate closest to `name` by edit distance, if it is close enough to be a likely typo.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let limit = (name.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c.to_string())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Where a value sits in a configuration, as keys and array indices (`hosts[2].segment`), so
/// that errors can be traced back to a line and column of the file it came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<PathPart>);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathPart {
    Key(String),
    Index(usize),
}

impl KeyPath {
    pub fn key(&self, key: &str) -> KeyPath {
        let mut parts = self.0.clone();
        parts.push(PathPart::Key(key.to_string()));
        KeyPath(parts)
    }

    pub fn index(&self, index: usize) -> KeyPath {
        let mut parts = self.0.clone();
        parts.push(PathPart::Index(index));
        KeyPath(parts)
    }
}

impl std::fmt::Display for KeyPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, part) in self.0.iter().enumerate() {
            match part {
                PathPart::Key(key) if i == 0 => write!(f, "{key}")?,
                PathPart::Key(key) => write!(f, ".{key}")?,
                PathPart::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

impl WorldConfig {
    /// A world with no hosts yet, capture on, and the default limits.
    pub fn new(seed: u64) -> WorldConfig {
        WorldConfig {
            seed,
            time_limit_us: default_time_limit_us(),
            step_limit: default_step_limit(),
            segments: Vec::new(),
            hosts: Vec::new(),
            events: Vec::new(),
            capture: CaptureConfig::default(),
            trace: TraceLevel::default(),
        }
    }

    pub fn host_index(&self, name: &str) -> Option<usize> {
        self.hosts.iter().position(|h| h.name == name)
    }

    pub fn segment_index(&self, name: &str) -> Option<usize> {
        self.segments.iter().position(|s| s.name == name)
    }

    /// The MAC a host gets: its configured one, or one derived from its index.
    pub fn host_mac(&self, index: usize) -> MacAddr {
        self.hosts[index]
            .mac
            .unwrap_or_else(|| MacAddr::local_from_index(index as u32 + 1))
    }

    fn unknown_host(&self, context: String, name: &str) -> ConfigError {
        ConfigError::UnknownHost {
            context,
            name: name.to_string(),
            suggestion: closest(name, self.hosts.iter().map(|h| h.name.as_str())),
        }
    }

    fn unknown_segment(&self, context: String, name: &str) -> ConfigError {
        ConfigError::UnknownSegment {
            context,
            name: name.to_string(),
            suggestion: closest(name, self.segments.iter().map(|s| s.name.as_str())),
        }
    }

    /// Checks everything that can be wrong before a run starts; the first mistake is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_located().map_err(|(_, error)| error)
    }

    /// Like [`WorldConfig::validate`], and also says which value is wrong, so that a scenario
    /// file can point at its line and column.
    pub fn validate_located(&self) -> Result<(), (KeyPath, ConfigError)> {
        let root = KeyPath::default();
        if self.time_limit_us == 0 {
            return Err((
                root.key("time_limit_us"),
                ConfigError::OutOfRange {
                    field: "`time_limit_us`".into(),
                    value: "0".into(),
                    allowed: "at least 1 µs (1_000_000 is one second); leave it out for 60 s"
                        .into(),
                },
            ));
        }
        if self.step_limit == 0 {
            return Err((
                root.key("step_limit"),
                ConfigError::OutOfRange {
                    field: "`step_limit`".into(),
                    value: "0".into(),
                    allowed: "at least 1; leave it out for 100_000_000 steps".into(),
                },
            ));
        }
        let snaplen = self.capture.snaplen_bytes;
        if !(MIN_SNAPLEN_BYTES..=MAX_SNAPLEN_BYTES).contains(&snaplen) {
            return Err((
                root.key("capture").key("snaplen_bytes"),
                ConfigError::OutOfRange {
                    field: "`snaplen_bytes`".into(),
                    value: format!("{snaplen} bytes"),
                    allowed: format!(
                        "from {MIN_SNAPLEN_BYTES} (Ethernet, IP and TCP headers) to {MAX_SNAPLEN_BYTES} bytes"
                    ),
                },
            ));
        }
        if self.hosts.is_empty() {
            return Err((root.key("hosts"), ConfigError::NoHosts));
        }
        let mut segment_names = BTreeSet::new();
        for (index, segment) in self.segments.iter().enumerate() {
            if segment.name.trim().is_empty() {
                return Err((
                    root.key("segments").index(index).key("name"),
                    ConfigError::EmptyName {
                        what: "segment",
                        example: "lan",
                    },
                ));
            }
            if !segment_names.insert(segment.name.as_str()) {
                return Err((
                    root.key("segments").index(index).key("name"),
                    ConfigError::DuplicateSegment(segment.name.clone()),
                ));
            }
        }
        let mut host_names = BTreeSet::new();
        let mut macs: BTreeMap<MacAddr, &str> = BTreeMap::new();
        let mut addrs: BTreeMap<IpAddr, &str> = BTreeMap::new();
        let mut hosts_per_segment = vec![0usize; self.segments.len()];
        for (index, host) in self.hosts.iter().enumerate() {
            let at = root.key("hosts").index(index);
            if host.name.trim().is_empty() {
                return Err((
                    at.key("name"),
                    ConfigError::EmptyName {
                        what: "host",
                        example: "client",
                    },
                ));
            }
            if !host_names.insert(host.name.as_str()) {
                return Err((
                    at.key("name"),
                    ConfigError::DuplicateHost(host.name.clone()),
                ));
            }
            let segment = self.segment_index(&host.segment).ok_or_else(|| {
                (
                    at.key("segment"),
                    self.unknown_segment(format!("host `{}`", host.name), &host.segment),
                )
            })?;
            hosts_per_segment[segment] += 1;
            let mac = self.host_mac(index);
            if mac.is_multicast() {
                return Err((
                    at.key("mac"),
                    ConfigError::MulticastMac {
                        host: host.name.clone(),
                        mac,
                    },
                ));
            }
            if let Some(first) = macs.insert(mac, &host.name) {
                return Err((
                    at.key("mac"),
                    ConfigError::DuplicateMac {
                        mac,
                        first: first.to_string(),
                        second: host.name.clone(),
                    },
                ));
            }
            if let Err(problem) = stack::check_name(&host.stack) {
                return Err((
                    at.key("stack"),
                    ConfigError::StackName {
                        host: host.name.clone(),
                        problem,
                    },
                ));
            }
            if host.ipv4.is_none() && host.ipv6.is_none() {
                return Err((at.clone(), ConfigError::NoAddress(host.name.clone())));
            }
            for (field, cidr, v4) in [("ipv4", host.ipv4, true), ("ipv6", host.ipv6, false)] {
                let Some(cidr) = cidr else { continue };
                if cidr.addr.is_ipv4() != v4 {
                    return Err((
                        at.key(field),
                        ConfigError::WrongFamily {
                            host: host.name.clone(),
                            field,
                            expected: if v4 { "IPv4" } else { "IPv6" },
                            got: cidr.addr,
                        },
                    ));
                }
                if let Some(first) = addrs.insert(cidr.addr, &host.name) {
                    return Err((
                        at.key(field),
                        ConfigError::DuplicateAddress {
                            addr: cidr.addr,
                            first: first.to_string(),
                            second: host.name.clone(),
                        },
                    ));
                }
            }
            check_mtu(
                format!("host `{}` ip_mtu_bytes", host.name),
                host.ip_mtu_bytes,
            )
            .map_err(|e| (at.key("ip_mtu_bytes"), e))?;
            if !(1024..=1 << 30).contains(&host.tcp_buffer_bytes) {
                return Err((
                    at.key("tcp_buffer_bytes"),
                    ConfigError::TcpBuffer {
                        host: host.name.clone(),
                        value: host.tcp_buffer_bytes,
                    },
                ));
            }
            for (direction, impairments) in [
                (Direction::ToSegment, &host.link.to_segment),
                (Direction::FromSegment, &host.link.from_segment),
            ] {
                let field = format!("host `{}` link.{}", host.name, direction.name());
                self.check_impairments(&field, impairments)
                    .map_err(|(key, e)| {
                        let mut path = at.key("link").key(direction.name());
                        for part in key.split('.') {
                            path = path.key(part);
                        }
                        (path, e)
                    })?;
            }
        }
        for (index, (segment, count)) in self.segments.iter().zip(&hosts_per_segment).enumerate() {
            if segment.kind == SegmentKind::PointToPoint && *count != 2 {
                return Err((
                    root.key("segments").index(index).key("kind"),
                    ConfigError::PointToPoint {
                        segment: segment.name.clone(),
                        hosts: *count,
                    },
                ));
            }
        }
        for (index, event) in self.events.iter().enumerate() {
            let at = root.key("events").index(index);
            self.check_event(event)
                .map_err(|(field, e)| (at.key(field), e))?;
        }
        Ok(())
    }

    /// Checks that every host's stack is registered in `stacks` and that no stack gets more
    /// hosts than it allows ([`stack::Limits::max_hosts_per_run`]); on a mistake, says which
    /// host's `stack` key.
    pub fn check_stacks(&self, stacks: &Registry) -> Result<(), (KeyPath, ConfigError)> {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for (index, host) in self.hosts.iter().enumerate() {
            let at = KeyPath::default().key("hosts").index(index).key("stack");
            let Some(factory) = stacks.get(&host.stack) else {
                return Err((
                    at,
                    ConfigError::UnknownStack {
                        host: host.name.clone(),
                        stack: host.stack.clone(),
                        suggestion: closest(&host.stack, stacks.names()),
                        registered: stacks.names().map(str::to_string).collect(),
                    },
                ));
            };
            let count = counts.entry(host.stack.as_str()).or_insert(0);
            *count += 1;
            let limits = factory.limits();
            if let Some(max) = limits.max_hosts_per_run.filter(|max| *count > *max) {
                let count = self.hosts.iter().filter(|h| h.stack == host.stack).count();
                return Err((
                    at,
                    ConfigError::TooManyHosts {
                        stack: host.stack.clone(),
                        count,
                        max,
                    },
                ));
            }
        }
        Ok(())
    }

    /// Whether a run of this world could take longer in real time than one of its stacks
    /// allows ([`stack::Limits::max_time_limit_us`]): runners skip such a run when they move a
    /// library's hosts onto a real-time stack. A world built in code may still run; it just
    /// must end in time.
    pub fn exceeds_real_time_limits(&self, stacks: &Registry) -> Option<ConfigError> {
        self.hosts.iter().find_map(|host| {
            let max_us = stacks.get(&host.stack)?.limits().max_time_limit_us?;
            (self.time_limit_us > max_us).then(|| ConfigError::TimeLimitTooLong {
                stack: host.stack.clone(),
                limit_us: self.time_limit_us,
                max_us,
            })
        })
    }

    /// Checks one scheduled event; on a mistake, names the key that holds it.
    fn check_event(&self, event: &ScheduledEvent) -> Result<(), (&'static str, ConfigError)> {
        if event.at_us > self.time_limit_us {
            return Err((
                "at_us",
                ConfigError::EventAfterLimit {
                    at_us: event.at_us,
                    time_limit_us: self.time_limit_us,
                },
            ));
        }
        let context = format!("the event at {} µs", event.at_us);
        match &event.action {
            EventAction::LinkDown { host } | EventAction::LinkUp { host } => {
                self.host_index(host)
                    .ok_or_else(|| ("host", self.unknown_host(context.clone(), host)))?;
            }
            EventAction::SetImpairments {
                host, impairments, ..
            } => {
                self.host_index(host)
                    .ok_or_else(|| ("host", self.unknown_host(context.clone(), host)))?;
                self.check_impairments(&format!("{context} impairments"), impairments)
                    .map_err(|(_, e)| ("impairments", e))?;
            }
            EventAction::Heal { segment } => {
                self.segment_index(segment)
                    .ok_or_else(|| ("segment", self.unknown_segment(context.clone(), segment)))?;
            }
            EventAction::Partition { segment, groups } => {
                self.segment_index(segment)
                    .ok_or_else(|| ("segment", self.unknown_segment(context.clone(), segment)))?;
                let mut seen = BTreeSet::new();
                for name in groups.iter().flatten() {
                    let index = self
                        .host_index(name)
                        .ok_or_else(|| ("groups", self.unknown_host(context.clone(), name)))?;
                    if self.hosts[index].segment != *segment {
                        return Err((
                            "groups",
                            ConfigError::PartitionForeignHost {
                                host: name.clone(),
                                segment: segment.clone(),
                                at_us: event.at_us,
                            },
                        ));
                    }
                    if !seen.insert(name.as_str()) {
                        return Err((
                            "groups",
                            ConfigError::PartitionOverlap {
                                host: name.clone(),
                                at_us: event.at_us,
                            },
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks one direction's impairments; on a mistake, names the key (dotted below the
    /// direction's table, like `loss.probability`).
    fn check_impairments(&self, field: &str, i: &Impairments) -> Result<(), (String, ConfigError)> {
        let mut probabilities = vec![
            ("duplicate_probability", i.duplicate_probability),
            ("reorder_probability", i.reorder_probability),
            ("corrupt_probability", i.corrupt_probability),
        ];
        match &i.loss {
            LossModel::None => {}
            LossModel::Independent { probability } => {
                probabilities.push(("loss.probability", *probability))
            }
            LossModel::GilbertElliott {
                good_to_bad_probability,
                bad_to_good_probability,
                loss_in_good_probability,
                loss_in_bad_probability,
            } => probabilities.extend([
                ("loss.good_to_bad_probability", *good_to_bad_probability),
                ("loss.bad_to_good_probability", *bad_to_good_probability),
                ("loss.loss_in_good_probability", *loss_in_good_probability),
                ("loss.loss_in_bad_probability", *loss_in_bad_probability),
            ]),
        }
        for (name, value) in probabilities {
            // `contains` is false for NaN as well.
            if !(0.0..=1.0).contains(&value) {
                return Err((
                    name.to_string(),
                    ConfigError::Probability {
                        field: format!("{field}.{name}"),
                        value,
                    },
                ));
            }
        }
        for (name, value) in [
            ("latency_us", i.latency_us),
            ("jitter_us", i.jitter_us),
            ("reorder_delay_us", i.reorder_delay_us),
        ] {
            if value > MAX_DELAY_US {
                return Err((
                    name.to_string(),
                    ConfigError::OutOfRange {
                        field: format!("{field}.{name}"),
                        value: format!("{value} µs"),
                        allowed: format!("at most {MAX_DELAY_US} µs (one hour)"),
                    },
                ));
            }
        }
        let delay = i
            .latency_us
            .checked_add(i.jitter_us)
            .and_then(|d| d.checked_add(i.reorder_delay_us))
            .and_then(|d| d.checked_add(self.time_limit_us));
        if delay.is_none() {
            return Err((
                "latency_us".to_string(),
                ConfigError::TimeOverflow {
                    field: format!("{field}.latency_us + jitter_us + reorder_delay_us"),
                    value: i.latency_us,
                },
            ));
        }
        if i.reorder_probability > 0.0 && i.reorder_delay_us == 0 {
            return Err((
                "reorder_probability".to_string(),
                ConfigError::ReorderWithoutDelay {
                    field: field.to_string(),
                    probability: i.reorder_probability,
                },
            ));
        }
        if i.bandwidth_bits_per_s == Some(0) {
            return Err((
                "bandwidth_bits_per_s".to_string(),
                ConfigError::ZeroBandwidth {
                    field: format!("{field}.bandwidth_bits_per_s"),
                },
            ));
        }
        if let Some(limit) = i.queue_limit_bytes {
            if limit < MIN_QUEUE_LIMIT_BYTES {
                return Err((
                    "queue_limit_bytes".to_string(),
                    ConfigError::OutOfRange {
                        field: format!("{field}.queue_limit_bytes"),
                        value: format!("{limit} bytes"),
                        allowed: format!(
                            "at least {MIN_QUEUE_LIMIT_BYTES} bytes (one full frame), or left out for 1000 full frames"
                        ),
                    },
                ));
            }
        }
        if let Some(mtu) = i.mtu_bytes {
            check_mtu(format!("{field}.mtu_bytes"), mtu)
                .map_err(|e| ("mtu_bytes".to_string(), e))?;
        }
        Ok(())
    }
}

fn check_mtu(field: String, value: u32) -> Result<(), ConfigError> {
    if (MIN_IP_MTU_BYTES..=MAX_IP_MTU_BYTES).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::Mtu { field, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_hosts() -> WorldConfig {
        let mut c = WorldConfig::new(1);
        c.segments.push(SegmentConfig {
            name: "lan".into(),
            kind: SegmentKind::Switch,
        });
        c.hosts
            .push(HostConfig::new("client", "lan").with_ipv4("10.0.0.1/24"));
        c.hosts
            .push(HostConfig::new("server", "lan").with_ipv4("10.0.0.2/24"));
        c
    }

    #[test]
    fn a_sound_config_validates() {
        assert_eq!(two_hosts().validate(), Ok(()));
    }

    #[test]
    fn reordering_needs_a_delay() {
        let mut c = two_hosts();
        c.hosts[0].link.to_segment.reorder_probability = 0.1;
        let located = c.validate_located().unwrap_err();
        assert!(
            matches!(located.1, ConfigError::ReorderWithoutDelay { .. }),
            "{}",
            located.1
        );
        assert_eq!(
            located.0.to_string(),
            "hosts[0].link.to_segment.reorder_probability"
        );
        c.hosts[0].link.to_segment.reorder_delay_us = 500;
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn duplicate_addresses_and_macs_are_named() {
        let mut c = two_hosts();
        c.hosts[1].ipv4 = c.hosts[0].ipv4;
        let err = c.validate().unwrap_err();
        assert!(matches!(err, ConfigError::DuplicateAddress { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "hosts `client` and `server` both have address 10.0.0.1"
        );

        let mut c = two_hosts();
        c.hosts[0].mac = Some("02:00:00:00:00:07".parse().unwrap());
        c.hosts[1].mac = c.hosts[0].mac;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::DuplicateMac { .. })
        ));
    }

    #[test]
    fn unknown_names_come_with_a_suggestion() {
        let mut c = two_hosts();
        c.events.push(ScheduledEvent {
            at_us: 10,
            action: EventAction::LinkDown {
                host: "sever".into(),
            },
        });
        let err = c.validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "the event at 10 µs names host `sever`, which does not exist; did you mean `server`?"
        );
        let mut c = two_hosts();
        c.hosts[0].segment = "lna".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("did you mean `lan`?"));
    }

    #[test]
    fn probabilities_outside_zero_to_one_are_rejected() {
        for bad in [-0.1, 1.5, f64::NAN] {
            let mut c = two_hosts();
            c.hosts[0].link.to_segment.loss = LossModel::Independent { probability: bad };
            let err = c.validate().unwrap_err();
            assert!(matches!(err, ConfigError::Probability { .. }), "{err}");
            assert!(err.to_string().contains("link.to_segment.loss.probability"));
        }
    }

    #[test]
    fn small_mtus_overflowing_latency_and_zero_bandwidth_are_rejected() {
        let mut c = two_hosts();
        c.hosts[0].ip_mtu_bytes = 67;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Mtu { value: 67, .. })
        ));

        let mut c = two_hosts();
        c.hosts[1].link.from_segment.latency_us = u64::MAX - 5;
        assert!(matches!(c.validate(), Err(ConfigError::OutOfRange { .. })));

        let mut c = two_hosts();
        c.time_limit_us = u64::MAX - 5;
        c.hosts[1].link.from_segment.latency_us = MAX_DELAY_US;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::TimeOverflow { .. })
        ));

        let mut c = two_hosts();
        c.hosts[1].link.from_segment.bandwidth_bits_per_s = Some(0);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::ZeroBandwidth { .. })
        ));
    }

    #[test]
    fn point_to_point_needs_two_hosts_and_partitions_must_be_disjoint() {
        let mut c = two_hosts();
        c.segments[0].kind = SegmentKind::PointToPoint;
        assert_eq!(c.validate(), Ok(()));
        c.hosts
            .push(HostConfig::new("third", "lan").with_ipv4("10.0.0.3/24"));
        assert!(matches!(
            c.validate(),
            Err(ConfigError::PointToPoint { hosts: 3, .. })
        ));

        let mut c = two_hosts();
        c.events.push(ScheduledEvent {
            at_us: 5,
            action: EventAction::Partition {
                segment: "lan".into(),
                groups: vec![vec!["client".into()], vec!["client".into()]],
            },
        });
        assert!(matches!(
            c.validate(),
            Err(ConfigError::PartitionOverlap { .. })
        ));
    }

    #[test]
    fn closest_finds_typos_but_not_strangers() {
        let names = ["client", "server", "router"];
        assert_eq!(closest("clinet", names), Some("client".into()));
        assert_eq!(closest("zzzzzz", names), None);
    }
}
