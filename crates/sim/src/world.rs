//! The world and its run loop: hosts, segments, the event queue keyed by `(time, seq)`, and idle skipping in virtual time.
//!
//! One step: deliver every frame due now, poll every host that has something to do (in host
//! order), let its applications act and poll again while they do, send what the stacks emitted
//! through the impairment pipelines, then jump to the earliest pending event. Time never ticks.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt::Write;
use std::net::IpAddr;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;

use stack::{BuildError, CongestionControl, FrameQueue, MacAddr, Registry, Stack, StackConfig};
use wire::capture::{CaptureError, CaptureFormat, CaptureWriter};

use crate::apps::{self, App, AppConfig, AppReport};
use crate::clock::Pacer;
use crate::config::{
    ConfigError, CongestionControlConfig, Direction, EventAction, SegmentKind, WorldConfig,
};
use crate::impair::{Decision, DropReason, LinkPipeline};
use crate::rng::{derive_seed, SimRng};
use crate::trace::{Trace, TraceKind, TraceNames};

/// How often a host is re-polled within one step while its applications keep acting.
const MAX_POLLS_PER_HOST_STEP: u32 = 64;

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Every application finished and no frame was left in flight.
    Completed,
    /// The next event lay beyond the configured virtual-time limit.
    TimeLimit { limit_us: u64 },
    /// The run took the configured number of steps without finishing.
    StepLimit { limit: u64 },
    /// Nothing was left to happen, but some application had not finished.
    Stalled,
    /// A stack panicked; the run stopped there.
    StackPanic { host: String, message: String },
    /// wirelab itself panicked (one of its applications, or its run loop): a bug of wirelab,
    /// not a finding against the stack. `app` is the application's kind, `host` where it ran
    /// (both empty when the run loop itself panicked).
    InternalError {
        host: String,
        app: String,
        message: String,
    },
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        *self == Outcome::Completed
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Completed => write!(f, "completed"),
            Outcome::TimeLimit { limit_us } => {
                write!(f, "hit the virtual-time limit of {limit_us} µs")
            }
            Outcome::StepLimit { limit } => write!(f, "hit the step limit of {limit} steps"),
            Outcome::Stalled => write!(
                f,
                "stalled: no event was pending but some application had not finished"
            ),
            Outcome::StackPanic { host, message } => {
                write!(f, "the stack of host `{host}` panicked: {message}")
            }
            Outcome::InternalError { host, app, message } => {
                if app.is_empty() {
                    write!(
                        f,
                        "internal error of wirelab: its run loop panicked: {message}"
                    )?;
                } else {
                    write!(
                        f,
                        "internal error of wirelab: its own `{app}` application on host `{host}` panicked: {message}"
                    )?;
                }
                write!(
                    f,
                    " (a bug of wirelab, not of the stack under test; please report it with the scenario file and its seed)"
                )
            }
        }
    }
}

/// Counters of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RunStats {
    pub steps: u64,
    pub polls: u64,
    pub frames_emitted: u64,
    pub frames_delivered: u64,
    pub frames_dropped: u64,
    pub end_time_us: u64,
}

/// One segment's capture: in memory (`bytes`), or written to `path`.
#[derive(Clone, Debug)]
pub struct SegmentCapture {
    pub segment: String,
    pub frames: u64,
    pub bytes: Option<Vec<u8>>,
    pub path: Option<PathBuf>,
}

/// Everything a run produced.
pub struct RunReport {
    pub seed: u64,
    pub outcome: Outcome,
    pub stats: RunStats,
    pub apps: Vec<AppReport>,
    pub trace: Trace,
    pub names: TraceNames,
    pub captures: Vec<SegmentCapture>,
    /// A linux host was attached: virtual time was paced to the wall clock, and the kernel's
    /// own timing and randomness make the run unreproducible.
    pub real_time: bool,
}

impl RunReport {
    pub fn trace_hash(&self) -> u64 {
        self.trace.hash()
    }

    pub fn trace_text(&self) -> String {
        self.trace.render(&self.names)
    }
}

/// Wraps each host's stack as it is built (benchmarks use it to time the stacks).
pub type StackWrapper = Box<dyn Fn(Box<dyn Stack>) -> Box<dyn Stack>>;

/// Where a run's captures go, and hooks for measuring.
#[derive(Default)]
pub struct RunOptions {
    /// Write `<segment>.pcap` or `.pcapng` here; `None` keeps captures in memory.
    pub capture_dir: Option<PathBuf>,
    pub wrap_stack: Option<StackWrapper>,
}

/// Errors that stop a run before or outside the simulation itself.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("application {index} ({kind}) names host `{host}`, which does not exist{}", .suggestion.as_ref().map(|s| format!("; did you mean `{s}`?")).unwrap_or_default())]
    UnknownAppHost {
        index: usize,
        kind: &'static str,
        host: String,
        suggestion: Option<String>,
    },
    #[error("host `{host}` on stack `{stack}`: {source}")]
    Stack {
        host: String,
        stack: String,
        #[source]
        source: BuildError,
    },
    #[error("capture of segment `{segment}`: {source}")]
    Capture {
        segment: String,
        #[source]
        source: CaptureError,
    },
}

/// A frame event names its pool slot; the slot knows the frame's id.
#[derive(Clone, Copy, Debug)]
enum EventKind {
    /// A frame reaches its segment from `port`.
    AtSegment { segment: u32, port: u32, slot: u32 },
    /// A frame reaches a host.
    AtHost { host: u32, slot: u32 },
    /// A host's stack deadline or application wake-up.
    HostTimer { host: u32 },
    /// The configuration's scheduled event with this index.
    Scheduled { index: u32 },
}

/// The lane of an event that waits in the heap on its own.
const NO_LANE: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
#[repr(C)]
struct QueuedEvent {
    time_us: u64,
    seq: u64,
    /// The lane this event came from, if it is the head of one.
    lane: u32,
    kind: EventKind,
}

/// The arrivals of one link direction. A link keeps frames in order unless it reorders them,
/// so its events mostly come in `(time, seq)` order: they wait in a FIFO and only the head
/// sits in the heap, which then holds a few entries instead of every frame in flight.
#[derive(Default)]
struct Lane {
    /// The events behind the head, in `(time, seq)` order.
    waiting: std::collections::VecDeque<QueuedEvent>,
    /// The lane's head is in the heap.
    head_queued: bool,
    /// The time of the last event that joined the lane.
    last_time_us: u64,
}

/// The lane of arrivals at the segment from `host`.
fn uplink_lane(host: u32) -> u32 {
    host * 2
}

/// The lane of arrivals at `host` from its segment.
fn downlink_lane(host: u32) -> u32 {
    host * 2 + 1
}

impl PartialEq for QueuedEvent {
    fn eq(&self, other: &Self) -> bool {
        (self.time_us, self.seq) == (other.time_us, other.seq)
    }
}
impl Eq for QueuedEvent {}
impl PartialOrd for QueuedEvent {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for QueuedEvent {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.time_us, self.seq).cmp(&(other.time_us, other.seq))
    }
}

/// Frames in flight, shared by every receiver of a flooded frame and recycled when the last
/// one has it, so the hot path does not allocate.
#[derive(Default)]
struct FramePool {
    /// Bytes, holders, frame id.
    slots: Vec<(Vec<u8>, u32, u64)>,
    free: Vec<u32>,
}

impl FramePool {
    /// Takes frame `index` of `queue` into a slot without copying it: the slot's old buffer
    /// goes back to the queue for reuse.
    fn alloc_from(&mut self, queue: &mut FrameQueue, index: usize, frame_id: u64) -> u32 {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push((Vec::new(), 0, 0));
                (self.slots.len() - 1) as u32
            }
        };
        let (bytes, refs, id) = &mut self.slots[slot as usize];
        queue.swap_frame(index, bytes);
        *refs = 0;
        *id = frame_id;
        slot
    }

    fn alloc(&mut self, frame: &[u8], frame_id: u64) -> u32 {
        match self.free.pop() {
            Some(slot) => {
                let (bytes, refs, id) = &mut self.slots[slot as usize];
                bytes.clear();
                bytes.extend_from_slice(frame);
                *refs = 0;
                *id = frame_id;
                slot
            }
            None => {
                self.slots.push((frame.to_vec(), 0, frame_id));
                (self.slots.len() - 1) as u32
            }
        }
    }

    fn frame_id(&self, slot: u32) -> u64 {
        self.slots[slot as usize].2
    }

    fn retain(&mut self, slot: u32) {
        self.slots[slot as usize].1 += 1;
    }

    fn release(&mut self, slot: u32) {
        let refs = &mut self.slots[slot as usize].1;
        *refs -= 1;
        if *refs == 0 {
            self.free.push(slot);
        }
    }

    /// Frees a slot nobody took.
    fn release_if_unused(&mut self, slot: u32) {
        if self.slots[slot as usize].1 == 0 {
            self.free.push(slot);
        }
    }

    fn get(&self, slot: u32) -> &[u8] {
        &self.slots[slot as usize].0
    }

    fn get_mut(&mut self, slot: u32) -> &mut Vec<u8> {
        &mut self.slots[slot as usize].0
    }

    /// True when exactly one holder is left, who may then take the bytes.
    fn last_holder(&self, slot: u32) -> bool {
        self.slots[slot as usize].1 == 1
    }
}

struct Host {
    name: String,
    stack: Box<dyn Stack>,
    segment: u32,
    port: u32,
    to_segment: LinkPipeline,
    from_segment: LinkPipeline,
    /// The earliest pending `HostTimer` event, if one is queued.
    timer_at_us: Option<u64>,
    apps: Vec<u32>,
}

/// Addresses in the cache are kept as [`mac_key`]s: comparing two integers in registers is what
/// the per-frame path can afford (six-byte arrays were spilled to the stack and reloaded).
#[derive(Clone, Copy, Default)]
struct PortCache {
    learned: Option<(u64, u64)>,
    looked_up: Option<(u64, u64, Option<u32>)>,
}

/// The MAC address at `offset` in `frame` as one integer (first byte lowest, so bit 0 is the
/// group bit).
fn mac_key(frame: &[u8], offset: usize) -> u64 {
    let low = u32::from_le_bytes(frame[offset..offset + 4].try_into().expect("four bytes"));
    let high = u16::from_le_bytes(frame[offset + 4..offset + 6].try_into().expect("two bytes"));
    u64::from(low) | u64::from(high) << 32
}

/// The address a [`mac_key`] was made from.
fn mac_from_key(key: u64) -> MacAddr {
    let bytes = key.to_le_bytes();
    MacAddr(bytes[..6].try_into().expect("six bytes"))
}

/// The group (multicast and broadcast) bit of a [`mac_key`].
fn is_multicast_key(key: u64) -> bool {
    key & 1 != 0
}

struct Segment {
    name: String,
    kind: SegmentKind,
    /// Port number to host index.
    ports: Vec<u32>,
    /// Learned source addresses (switches only).
    mac_table: BTreeMap<MacAddr, u32>,
    /// Bumped whenever `mac_table` changes (a new address, or one that moved port).
    mac_table_changes: u64,
    /// Per port: the last source address learned there and the last destination looked up
    /// from there, each with the value of `mac_table_changes` when it was seen, so that a port
    /// talking to the same peer frame after frame skips both table searches.
    port_cache: Vec<PortCache>,
    /// Partition group of each port; ports in different groups cannot reach one another.
    groups: Vec<u32>,
    capture: Option<CaptureWriter>,
    /// The capture records decisions as pcapng comments; without one, no comment is built.
    comments: bool,
}

/// A simulated network, ready to run.
pub struct World {
    config: WorldConfig,
    now_us: u64,
    hosts: Vec<Host>,
    segments: Vec<Segment>,
    apps: Vec<Box<dyn App>>,
    /// `done()` of each application as of its last `act` (only `act` can change it), and how
    /// many are not done, so that the end check does not visit every application every step.
    app_done: Vec<bool>,
    apps_not_done: usize,
    queue: BinaryHeap<Reverse<QueuedEvent>>,
    /// Two per host: `uplink_lane` and `downlink_lane`.
    lanes: Vec<Lane>,
    /// Events for the current instant, in push order. Their sequence numbers are larger than
    /// those of every queued event, so serving the heap's events at `now_us` first and then
    /// these is exactly `(time, seq)` order, without a heap operation per zero-delay frame.
    now_queue: std::collections::VecDeque<EventKind>,
    next_seq: u64,
    next_frame_id: u64,
    frames_in_flight: u64,
    pool: FramePool,
    trace: Trace,
    stats: RunStats,
    egress: FrameQueue,
    decisions: Vec<Decision>,
    /// Decisions taken on the way to the segment, kept for the capture comment.
    uplink_notes: BTreeMap<u64, Vec<Decision>>,
    scratch: Vec<u8>,
    comment: String,
    dirty: Vec<bool>,
    dirty_list: Vec<u32>,
    /// The host whose stack is being called, so that a panic can be attributed.
    current_host: Option<u32>,
    /// The application acting (by index), so that its panic is wirelab's own, not the stack's.
    current_app: Option<u32>,
    /// Each application's kind, for reports.
    app_kinds: Vec<&'static str>,
    /// True once the run loop has started: before it, `now_us` is not yet an instant being served.
    stepping: bool,
    capture_paths: Vec<Option<PathBuf>>,
    /// With linux hosts: the pacer that holds virtual time to the wall clock and wakes on
    /// their TAP devices, and the host index of each device it watches.
    pacer: Option<(Pacer, Vec<u32>)>,
    /// Devices the pacer found readable, reused.
    ready: Vec<usize>,
}

fn congestion(config: CongestionControlConfig) -> CongestionControl {
    match config {
        CongestionControlConfig::None => CongestionControl::None,
        CongestionControlConfig::Reno => CongestionControl::Reno,
        CongestionControlConfig::Cubic => CongestionControl::Cubic,
    }
}

/// An application the caller built itself (a user's program, for example), and the host it
/// runs on. It acts after the host's configured applications, in the order given.
pub struct HostedApp {
    /// The name of the host, as the configuration gives it.
    pub host: String,
    /// What a run calls on that host.
    pub app: Box<dyn App>,
}

impl World {
    /// Validates `config` and builds the world: stacks (from `stacks`, by the name each host
    /// gives), links, segments, applications.
    pub fn new(
        config: WorldConfig,
        apps_config: &[AppConfig],
        stacks: &Registry,
        options: &RunOptions,
    ) -> Result<World, RunError> {
        World::with_apps(config, apps_config, Vec::new(), stacks, options)
    }

    /// [`World::new`], with applications built by the caller as well as the configured ones.
    pub fn with_apps(
        config: WorldConfig,
        apps_config: &[AppConfig],
        hosted: Vec<HostedApp>,
        stacks: &Registry,
        options: &RunOptions,
    ) -> Result<World, RunError> {
        config.validate()?;
        config
            .check_stacks(stacks)
            .map_err(|(_, error)| RunError::Config(error))?;
        let seed = config.seed;
        let mut segments: Vec<Segment> = config
            .segments
            .iter()
            .map(|s| Segment {
                name: s.name.clone(),
                kind: s.kind,
                ports: Vec::new(),
                mac_table: BTreeMap::new(),
                mac_table_changes: 0,
                port_cache: Vec::new(),
                groups: Vec::new(),
                capture: None,
                comments: false,
            })
            .collect();
        let mut capture_paths = vec![None; segments.len()];
        if config.capture.enabled {
            for (segment, path) in segments.iter_mut().zip(capture_paths.iter_mut()) {
                let format = config.capture.format;
                let snaplen = config.capture.snaplen_bytes;
                let writer = match &options.capture_dir {
                    None => CaptureWriter::to_memory(format, snaplen, &segment.name),
                    Some(dir) => {
                        let extension = format.extension();
                        let file = dir.join(format!("{}.{extension}", segment.name));
                        let writer = CaptureWriter::to_file(format, snaplen, &segment.name, &file)
                            .map_err(|source| RunError::Capture {
                                segment: segment.name.clone(),
                                source,
                            })?;
                        *path = Some(file);
                        writer
                    }
                };
                segment.comments = format == CaptureFormat::Pcapng;
                segment.capture = Some(writer);
            }
        }
        // Datagram socket queues hold eight of the largest datagram any application sends
        // (echoes included), at least 8 KiB and at most 64 KiB, and never less than one such
        // datagram. A fixed 64 KiB per queue made opening sockets the largest cost of runs
        // with many small pingers, and most of their memory.
        let largest_datagram = apps_config
            .iter()
            .filter_map(AppConfig::largest_datagram_bytes)
            .max()
            .unwrap_or(0) as usize;
        let datagram_queue_bytes = (largest_datagram * 8)
            .clamp(8 * 1024, 64 * 1024)
            .max(largest_datagram);
        let mut hosts = Vec::with_capacity(config.hosts.len());
        let mut real_devices = Vec::new();
        for (index, host) in config.hosts.iter().enumerate() {
            let segment = config
                .segment_index(&host.segment)
                .expect("validated above") as u32;
            let port = segments[segment as usize].ports.len() as u32;
            segments[segment as usize].ports.push(index as u32);
            segments[segment as usize].groups.push(0);
            segments[segment as usize]
                .port_cache
                .push(PortCache::default());
            let mut stack_config = StackConfig::new(
                host.name.clone(),
                config.host_mac(index),
                derive_seed(seed, &format!("host/{}/stack", host.name)),
            );
            stack_config.ipv4 = host.ipv4.map(|c| match c.addr {
                IpAddr::V4(a) => (a, c.prefix_len),
                IpAddr::V6(_) => unreachable!("validated to be IPv4"),
            });
            stack_config.ipv6 = host.ipv6.map(|c| match c.addr {
                IpAddr::V6(a) => (a, c.prefix_len),
                IpAddr::V4(_) => unreachable!("validated to be IPv6"),
            });
            stack_config.ipv4_gateway = host.ipv4_gateway;
            stack_config.ipv6_gateway = host.ipv6_gateway;
            stack_config.ip_mtu_bytes = host.ip_mtu_bytes as usize;
            stack_config.congestion_control = congestion(host.congestion_control);
            stack_config.tcp_rx_buffer_bytes = host.tcp_buffer_bytes as usize;
            stack_config.tcp_tx_buffer_bytes = host.tcp_buffer_bytes as usize;
            stack_config.datagram_queue_bytes = datagram_queue_bytes;
            let mut stack =
                stacks
                    .build(&host.stack, stack_config)
                    .map_err(|source| RunError::Stack {
                        host: host.name.clone(),
                        stack: host.stack.clone(),
                        source,
                    })?;
            if let Some(fd) = stack.wake_fd() {
                real_devices.push((fd, index as u32));
            }
            if let Some(wrap) = &options.wrap_stack {
                stack = wrap(stack);
            }
            let link_rng = |direction: &str| {
                SimRng::for_label(seed, &format!("link/{}/{direction}", host.name))
            };
            hosts.push(Host {
                name: host.name.clone(),
                stack,
                segment,
                port,
                to_segment: LinkPipeline::new(host.link.to_segment.clone(), link_rng("to_segment")),
                from_segment: LinkPipeline::new(
                    host.link.from_segment.clone(),
                    link_rng("from_segment"),
                ),
                timer_at_us: None,
                apps: Vec::new(),
            });
        }
        let mut apps = Vec::with_capacity(apps_config.len());
        for (index, app) in apps_config.iter().enumerate() {
            let host = config
                .host_index(app.host())
                .ok_or_else(|| RunError::UnknownAppHost {
                    index,
                    kind: app_kind(app),
                    host: app.host().to_string(),
                    suggestion: crate::config::closest(
                        app.host(),
                        config.hosts.iter().map(|h| h.name.as_str()),
                    ),
                })?;
            hosts[host].apps.push(index as u32);
            apps.push(apps::build(app, 0x5700 + index as u16));
        }
        let app_kinds: Vec<&'static str> = apps_config
            .iter()
            .map(app_kind)
            .chain(hosted.iter().map(|_| "program"))
            .collect();
        for (offset, hosted_app) in hosted.into_iter().enumerate() {
            let index = apps_config.len() + offset;
            let host =
                config
                    .host_index(&hosted_app.host)
                    .ok_or_else(|| RunError::UnknownAppHost {
                        index,
                        kind: "program",
                        suggestion: crate::config::closest(
                            &hosted_app.host,
                            config.hosts.iter().map(|h| h.name.as_str()),
                        ),
                        host: hosted_app.host,
                    })?;
            hosts[host].apps.push(index as u32);
            apps.push(hosted_app.app);
        }
        let host_count = hosts.len();
        let app_done: Vec<bool> = apps.iter().map(|a| a.done()).collect();
        let apps_not_done = app_done.iter().filter(|&&d| !d).count();
        let mut world = World {
            app_done,
            apps_not_done,
            now_us: 0,
            hosts,
            segments,
            apps,
            queue: BinaryHeap::new(),
            lanes: (0..host_count * 2).map(|_| Lane::default()).collect(),
            now_queue: std::collections::VecDeque::new(),
            next_seq: 0,
            next_frame_id: 0,
            frames_in_flight: 0,
            pool: FramePool::default(),
            trace: Trace::new(config.trace),
            stats: RunStats::default(),
            egress: FrameQueue::new(),
            decisions: Vec::new(),
            uplink_notes: BTreeMap::new(),
            scratch: Vec::new(),
            comment: String::new(),
            dirty: vec![false; host_count],
            dirty_list: Vec::new(),
            current_host: None,
            current_app: None,
            app_kinds,
            stepping: false,
            capture_paths,
            pacer: (!real_devices.is_empty()).then(|| {
                let fds: Vec<_> = real_devices.iter().map(|(fd, _)| *fd).collect();
                (
                    Pacer::new(&fds),
                    real_devices.iter().map(|(_, host)| *host).collect(),
                )
            }),
            ready: Vec::new(),
            config,
        };
        for index in 0..world.config.events.len() {
            let at = world.config.events[index].at_us;
            world.push(
                at,
                EventKind::Scheduled {
                    index: index as u32,
                },
            );
        }
        // Every host is polled once at time zero so that applications start.
        for host in 0..host_count as u32 {
            world.mark_dirty(host);
        }
        Ok(world)
    }

    fn push(&mut self, time_us: u64, kind: EventKind) {
        self.push_in_lane(time_us, kind, NO_LANE);
    }

    /// Queues an event; one that keeps its lane's order waits in the lane.
    fn push_in_lane(&mut self, time_us: u64, kind: EventKind, lane: u32) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if time_us == self.now_us && self.stepping {
            self.now_queue.push_back(kind);
            return;
        }
        let mut event = QueuedEvent {
            time_us,
            seq,
            lane: NO_LANE,
            kind,
        };
        if let Some(l) = self.lanes.get_mut(lane as usize) {
            if !l.head_queued {
                l.head_queued = true;
                l.last_time_us = time_us;
                event.lane = lane;
            } else if time_us >= l.last_time_us {
                // Later in time and in sequence than everything in the lane.
                l.last_time_us = time_us;
                event.lane = lane;
                l.waiting.push_back(event);
                return;
            }
            // Overtaking the lane (a reordered frame): the heap orders it on its own.
        }
        self.queue.push(Reverse(event));
    }

    /// Takes the earliest event due at `now_us` from the heap, moving its lane's next event
    /// into the heap.
    fn pop_due(&mut self) -> Option<EventKind> {
        let Reverse(event) = self.queue.peek().copied()?;
        if event.time_us != self.now_us {
            return None;
        }
        self.queue.pop();
        if let Some(l) = self.lanes.get_mut(event.lane as usize) {
            match l.waiting.pop_front() {
                Some(next) => self.queue.push(Reverse(next)),
                None => l.head_queued = false,
            }
        }
        Some(event.kind)
    }

    fn mark_dirty(&mut self, host: u32) {
        if !self.dirty[host as usize] {
            self.dirty[host as usize] = true;
            self.dirty_list.push(host);
        }
    }

    fn all_apps_done(&self) -> bool {
        debug_assert_eq!(self.apps_not_done == 0, self.apps.iter().all(|a| a.done()));
        self.apps_not_done == 0
    }

    /// Runs to the end and reports. A stack that panics ends this run only.
    pub fn run(mut self) -> RunReport {
        record_panic_locations();
        PANIC_FILE.with(|f| f.borrow_mut().take());
        let result = panic::catch_unwind(AssertUnwindSafe(|| self.run_loop()));
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(payload) => {
                let message = panic_message(payload.as_ref());
                // An application's panic is wirelab's own when it was raised in wirelab's
                // code; a panic in a socket call the application made is the stack's.
                let in_wirelab = PANIC_FILE
                    .with(|f| f.borrow_mut().take())
                    .is_some_and(|file| file.replace('\\', "/").ends_with("sim/src/apps.rs"));
                let app = self.current_app.filter(|_| in_wirelab);
                match (self.current_host, app) {
                    (Some(h), None) => Outcome::StackPanic {
                        host: self.hosts[h as usize].name.clone(),
                        message,
                    },
                    (host, app) => Outcome::InternalError {
                        host: host
                            .map(|h| self.hosts[h as usize].name.clone())
                            .unwrap_or_default(),
                        app: app
                            .map(|a| self.app_kinds[a as usize].to_string())
                            .unwrap_or_default(),
                        message,
                    },
                }
            }
        };
        self.finish(outcome)
    }

    fn finish(mut self, outcome: Outcome) -> RunReport {
        self.stats.end_time_us = self.now_us;
        let mut captures = Vec::with_capacity(self.segments.len());
        for (segment, path) in self.segments.iter_mut().zip(&self.capture_paths) {
            let Some(writer) = segment.capture.take() else {
                continue;
            };
            let frames = writer.frames_written();
            // A capture that cannot be finished (disk full) loses its bytes, not the run.
            let bytes = writer.finish().ok().flatten();
            captures.push(SegmentCapture {
                segment: segment.name.clone(),
                frames,
                bytes,
                path: path.clone(),
            });
        }
        let names = TraceNames {
            hosts: self.hosts.iter().map(|h| h.name.clone()).collect(),
            segments: self.segments.iter().map(|s| s.name.clone()).collect(),
        };
        RunReport {
            seed: self.config.seed,
            outcome,
            stats: self.stats,
            apps: self.apps.iter_mut().map(|a| a.report().clone()).collect(),
            trace: self.trace,
            names,
            captures,
            real_time: self.pacer.is_some(),
        }
    }

    fn run_loop(&mut self) -> Outcome {
        self.stepping = true;
        if let Some((pacer, _)) = self.pacer.as_mut() {
            pacer.start();
        }
        loop {
            if !self.dirty_list.is_empty() {
                self.poll_dirty_hosts();
            }
            if self.all_apps_done() && self.frames_in_flight == 0 && !self.apps.is_empty() {
                return Outcome::Completed;
            }
            let next_time = if self.now_queue.is_empty() {
                match self.queue.peek() {
                    Some(Reverse(next)) => next.time_us,
                    None => {
                        return if self.all_apps_done() {
                            Outcome::Completed
                        } else {
                            Outcome::Stalled
                        };
                    }
                }
            } else {
                self.now_us
            };
            let next_time = self.pace(next_time);
            if next_time > self.config.time_limit_us {
                self.now_us = self.config.time_limit_us;
                return Outcome::TimeLimit {
                    limit_us: self.config.time_limit_us,
                };
            }
            if self.stats.steps >= self.config.step_limit {
                return Outcome::StepLimit {
                    limit: self.config.step_limit,
                };
            }
            self.stats.steps += 1;
            self.now_us = next_time;
            while let Some(kind) = self.pop_due() {
                self.handle(kind);
            }
            while let Some(kind) = self.now_queue.pop_front() {
                self.handle(kind);
            }
        }
    }

    /// With linux hosts attached, waits until the wall clock reaches `next_time` (virtual time
    /// never runs ahead of real time), or less when a kernel sends a frame: then the step
    /// happens at that earlier time, with the hosts whose devices have frames due a poll.
    /// Without linux hosts, returns `next_time` at once.
    fn pace(&mut self, next_time: u64) -> u64 {
        if self.pacer.is_none() || !self.now_queue.is_empty() {
            return next_time;
        }
        let until = next_time.min(self.config.time_limit_us.saturating_add(1));
        let mut ready = std::mem::take(&mut self.ready);
        let Some((pacer, hosts)) = self.pacer.as_mut() else {
            return next_time;
        };
        // Running behind the wall clock (a slow step, a busy machine), frames a kernel sent
        // meanwhile are taken at once, before the events they may have come ahead of: an
        // application's timeout must not fire before a reply that had already arrived.
        let behind = pacer.elapsed_us() >= until;
        let mut at = pacer.wait(until, &mut ready).max(self.now_us);
        if behind && !ready.is_empty() {
            at = self.now_us;
        }
        for &index in &ready {
            let host = hosts[index];
            if !self.dirty[host as usize] {
                self.dirty[host as usize] = true;
                self.dirty_list.push(host);
            }
        }
        self.ready = ready;
        at.min(next_time)
    }

    fn handle(&mut self, kind: EventKind) {
        match kind {
            EventKind::AtSegment {
                segment,
                port,
                slot,
            } => {
                self.frames_in_flight -= 1;
                self.forward(segment, port, slot, self.pool.frame_id(slot));
                self.pool.release(slot);
            }
            EventKind::AtHost { host, slot } => {
                self.frames_in_flight -= 1;
                let h = &mut self.hosts[host as usize];
                if h.from_segment.up {
                    self.current_host = Some(host);
                    if self.pool.last_holder(slot) {
                        // Nobody else will read this copy: the stack takes the buffer, and the
                        // slot gets a spare one of the stack's in exchange.
                        h.stack.receive_buffer(self.pool.get_mut(slot));
                    } else {
                        h.stack.receive(self.pool.get(slot));
                    }
                    self.current_host = None;
                    self.stats.frames_delivered += 1;
                    self.mark_dirty(host);
                } else {
                    self.stats.frames_dropped += 1;
                    self.trace.record(
                        self.now_us,
                        TraceKind::Impairment {
                            host,
                            direction: Direction::FromSegment,
                            frame_id: self.pool.frame_id(slot),
                            decision: Decision::Dropped(DropReason::LinkDown),
                        },
                    );
                }
                self.pool.release(slot);
            }
            EventKind::HostTimer { host } => {
                let h = &mut self.hosts[host as usize];
                if h.timer_at_us == Some(self.now_us) {
                    h.timer_at_us = None;
                    self.mark_dirty(host);
                }
            }
            EventKind::Scheduled { index } => self.apply_scheduled(index as usize),
        }
    }

    fn apply_scheduled(&mut self, index: usize) {
        let action = self.config.events[index].action.clone();
        let host_index = |name: &str| self.config.host_index(name).expect("validated") as u32;
        match action {
            EventAction::LinkDown { host } | EventAction::LinkUp { host } => {
                let up = matches!(self.config.events[index].action, EventAction::LinkUp { .. });
                let h = host_index(&host);
                let host = &mut self.hosts[h as usize];
                host.to_segment.up = up;
                host.from_segment.up = up;
                self.trace
                    .record(self.now_us, TraceKind::LinkState { host: h, up });
            }
            EventAction::Partition { segment, groups } => {
                let s = self.config.segment_index(&segment).expect("validated") as u32;
                let mut numbered = Vec::new();
                let seg = &mut self.segments[s as usize];
                seg.groups.iter_mut().for_each(|g| *g = 0);
                for (group_index, group) in groups.iter().enumerate() {
                    let mut members = Vec::new();
                    for name in group {
                        let h = host_index(name);
                        let port = self.hosts[h as usize].port;
                        seg.groups[port as usize] = group_index as u32 + 1;
                        members.push(h);
                    }
                    numbered.push(members);
                }
                self.trace.record(
                    self.now_us,
                    TraceKind::Partition {
                        segment: s,
                        groups: numbered,
                    },
                );
            }
            EventAction::Heal { segment } => {
                let s = self.config.segment_index(&segment).expect("validated") as u32;
                self.segments[s as usize]
                    .groups
                    .iter_mut()
                    .for_each(|g| *g = 0);
                self.trace
                    .record(self.now_us, TraceKind::Heal { segment: s });
            }
            EventAction::SetImpairments {
                host,
                direction,
                impairments,
            } => {
                let h = host_index(&host);
                let host = &mut self.hosts[h as usize];
                match direction {
                    Direction::ToSegment => host.to_segment.set_config(impairments),
                    Direction::FromSegment => host.from_segment.set_config(impairments),
                }
                self.trace.record(
                    self.now_us,
                    TraceKind::ImpairmentsChanged { host: h, direction },
                );
            }
        }
    }

    fn poll_dirty_hosts(&mut self) {
        let mut list = std::mem::take(&mut self.dirty_list);
        list.sort_unstable();
        for &host in &list {
            self.dirty[host as usize] = false;
            self.poll_host(host);
        }
        list.clear();
        // Hosts marked while polling (none today: frames always go through the queue) wait for
        // the next step. The list's buffer is kept, so that marking does not allocate.
        list.append(&mut self.dirty_list);
        self.dirty_list = list;
    }

    fn poll_host(&mut self, host: u32) {
        let now = self.now_us;
        self.current_host = Some(host);
        for _ in 0..MAX_POLLS_PER_HOST_STEP {
            self.egress.clear();
            let h = &mut self.hosts[host as usize];
            h.stack.poll(now, &mut self.egress);
            self.stats.polls += 1;
            let mut acted = false;
            for &app in &h.apps {
                let a = &mut self.apps[app as usize];
                self.current_app = Some(app);
                acted |= a.act(now, h.stack.as_mut());
                self.current_app = None;
                let done = a.done();
                let was_done = std::mem::replace(&mut self.app_done[app as usize], done);
                if done != was_done {
                    if done {
                        self.apps_not_done -= 1;
                    } else {
                        self.apps_not_done += 1;
                    }
                }
            }
            self.send_egress(host);
            if !acted {
                break;
            }
        }
        let h = &mut self.hosts[host as usize];
        let mut next = h.stack.poll_at(now);
        for &app in &h.apps {
            if let Some(wake) = self.apps[app as usize].wake_at() {
                next = Some(next.map_or(wake, |n| n.min(wake)));
            }
        }
        self.current_host = None;
        if let Some(at) = next {
            // A deadline in the past means "now": it is served in the next step at this time.
            let at = at.max(now);
            if h.timer_at_us
                .is_none_or(|pending| at < pending || pending < now)
            {
                h.timer_at_us = Some(at);
                self.push(at, EventKind::HostTimer { host });
            }
        }
    }

    /// Sends what `host`'s stack emitted through its link towards the segment.
    fn send_egress(&mut self, host: u32) {
        for index in 0..self.egress.len() {
            let frame_id = self.next_frame_id;
            self.next_frame_id += 1;
            self.stats.frames_emitted += 1;
            let slot = self.pool.alloc_from(&mut self.egress, index, frame_id);
            self.decisions.clear();
            let h = &mut self.hosts[host as usize];
            let verdict =
                h.to_segment
                    .process(self.now_us, self.pool.get_mut(slot), &mut self.decisions);
            let (segment, port) = (h.segment, h.port);
            self.note_decisions(host, Direction::ToSegment, frame_id);
            if verdict.dropped() {
                self.stats.frames_dropped += 1;
                self.capture_unsent(segment, slot, host, frame_id);
                self.pool.release_if_unused(slot);
                continue;
            }
            if !self.decisions.is_empty() && self.segments[segment as usize].comments {
                self.uplink_notes.insert(frame_id, self.decisions.clone());
            }
            for &arrival in verdict.arrivals_us() {
                self.pool.retain(slot);
                self.frames_in_flight += 1;
                self.push_in_lane(
                    arrival,
                    EventKind::AtSegment {
                        segment,
                        port,
                        slot,
                    },
                    uplink_lane(host),
                );
            }
        }
    }

    fn note_decisions(&mut self, host: u32, direction: Direction, frame_id: u64) {
        for &decision in &self.decisions {
            self.trace.record(
                self.now_us,
                TraceKind::Impairment {
                    host,
                    direction,
                    frame_id,
                    decision,
                },
            );
        }
    }

    /// Records, in a pcapng capture, a frame that never reached its segment, with the reason.
    fn capture_unsent(&mut self, segment: u32, slot: u32, host: u32, frame_id: u64) {
        let seg = &mut self.segments[segment as usize];
        let Some(writer) = seg.capture.as_mut() else {
            return;
        };
        // Without a comment to explain it, a frame nobody could have seen would mislead.
        if writer.format() != CaptureFormat::Pcapng {
            return;
        }
        self.comment.clear();
        let _ = write!(
            self.comment,
            "#{frame_id} from {}: never on the segment:",
            self.hosts[host as usize].name
        );
        for d in &self.decisions {
            let _ = write!(self.comment, " {} {d};", Direction::ToSegment.name());
        }
        // A capture write error is a lost capture line, not a reason to stop the simulation.
        let _ = writer.write_frame(self.now_us, self.pool.get(slot), Some(&self.comment));
    }

    /// The segment delivers a frame that arrived on `in_port` to the ports it goes to.
    fn forward(&mut self, segment: u32, in_port: u32, slot: u32, frame_id: u64) {
        let seg = &mut self.segments[segment as usize];
        let from_host = seg.ports[in_port as usize];
        let frame = self.pool.get(slot);
        if frame.len() < 14 {
            return;
        }
        let (dst_key, src_key) = (mac_key(frame, 0), mac_key(frame, 6));
        self.trace
            .frame(self.now_us, segment, from_host, frame_id, frame);
        let out_port = match seg.kind {
            SegmentKind::Hub => None,
            SegmentKind::PointToPoint => Some(1 - in_port),
            SegmentKind::Switch => {
                let cache = &mut seg.port_cache[in_port as usize];
                if !is_multicast_key(src_key)
                    && cache.learned != Some((src_key, seg.mac_table_changes))
                {
                    if seg.mac_table.insert(mac_from_key(src_key), in_port) != Some(in_port) {
                        seg.mac_table_changes += 1;
                    }
                    cache.learned = Some((src_key, seg.mac_table_changes));
                }
                if is_multicast_key(dst_key) {
                    None
                } else {
                    match cache.looked_up {
                        Some((key, changes, port))
                            if key == dst_key && changes == seg.mac_table_changes =>
                        {
                            port
                        }
                        _ => {
                            let port = seg.mac_table.get(&mac_from_key(dst_key)).copied();
                            cache.looked_up = Some((dst_key, seg.mac_table_changes, port));
                            port
                        }
                    }
                }
            }
        };
        self.comment.clear();
        // Notes are kept only for segments whose capture takes comments.
        if seg.comments {
            if let Some(notes) = self.uplink_notes.remove(&frame_id) {
                for d in notes {
                    let _ = write!(
                        self.comment,
                        "{} {}: {d}; ",
                        self.hosts[from_host as usize].name,
                        Direction::ToSegment.name()
                    );
                }
            }
        }
        match out_port {
            Some(port) if port != in_port => self.deliver(segment, in_port, port, slot, frame_id),
            Some(_) => {}
            None => {
                let ports = self.segments[segment as usize].ports.len() as u32;
                for port in 0..ports {
                    if port != in_port {
                        self.deliver(segment, in_port, port, slot, frame_id);
                    }
                }
            }
        }
        let seg = &mut self.segments[segment as usize];
        if let Some(writer) = seg.capture.as_mut() {
            let comment = (!self.comment.is_empty()).then_some(self.comment.trim_end());
            let _ = writer.write_frame(self.now_us, self.pool.get(slot), comment);
        }
    }

    /// Sends a frame from the segment down to the host on `port`, through that link.
    fn deliver(&mut self, segment: u32, in_port: u32, port: u32, slot: u32, frame_id: u64) {
        let seg = &self.segments[segment as usize];
        let seg_comments = seg.comments;
        let host = seg.ports[port as usize];
        let partitioned = seg.groups[port as usize] != seg.groups[in_port as usize];
        self.decisions.clear();
        let verdict = if partitioned {
            self.decisions
                .push(Decision::Dropped(DropReason::Partition));
            crate::impair::Verdict::default()
        } else if self.hosts[host as usize].from_segment.may_corrupt() {
            // The pipeline may corrupt the frame, which must not change the copy that others
            // receive: it works on a scratch copy, and only a changed frame gets its own slot.
            self.scratch.clear();
            self.scratch.extend_from_slice(self.pool.get(slot));
            self.hosts[host as usize].from_segment.process(
                self.now_us,
                &mut self.scratch,
                &mut self.decisions,
            )
        } else {
            self.hosts[host as usize].from_segment.process(
                self.now_us,
                self.pool.get_mut(slot),
                &mut self.decisions,
            )
        };
        if !self.decisions.is_empty() {
            self.note_decisions(host, Direction::FromSegment, frame_id);
        }
        if !self.decisions.is_empty() && seg_comments {
            for d in &self.decisions {
                let _ = write!(
                    self.comment,
                    "{} {}: {d}; ",
                    self.hosts[host as usize].name,
                    Direction::FromSegment.name()
                );
            }
        }
        if verdict.dropped() {
            self.stats.frames_dropped += 1;
            return;
        }
        let corrupted = self
            .decisions
            .iter()
            .any(|d| matches!(d, Decision::Corrupted { .. }));
        let delivered_slot = if corrupted {
            self.pool.alloc(&self.scratch, frame_id)
        } else {
            slot
        };
        for &arrival in verdict.arrivals_us() {
            self.pool.retain(delivered_slot);
            self.frames_in_flight += 1;
            self.push_in_lane(
                arrival,
                EventKind::AtHost {
                    host,
                    slot: delivered_slot,
                },
                downlink_lane(host),
            );
        }
    }
}

fn app_kind(app: &AppConfig) -> &'static str {
    match app {
        AppConfig::Ping { .. } => "ping",
        AppConfig::UdpEchoServer { .. } => "udp_echo_server",
        AppConfig::UdpPingPong { .. } => "udp_ping_pong",
        AppConfig::TcpServer { .. } => "tcp_server",
        AppConfig::TcpClient { .. } => "tcp_client",
    }
}

/// Builds and runs a world in one call.
pub fn run(
    config: WorldConfig,
    apps: &[AppConfig],
    stacks: &Registry,
    options: &RunOptions,
) -> Result<RunReport, RunError> {
    Ok(World::new(config, apps, stacks, options)?.run())
}

std::thread_local! {
    /// The source file of the last panic on this thread, recorded by [`record_panic_locations`].
    static PANIC_FILE: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Installs, once per process, a panic hook that records where each panic was raised (then
/// calls the hook that was there before), so that a run can tell wirelab's own panics from
/// the stack's.
fn record_panic_locations() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let file = info.location().map(|l| l.file().to_string());
            PANIC_FILE.with(|f| *f.borrow_mut() = file);
            previous(info);
        }));
    });
}

/// The message a panic carried, for reports.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}
