//! The run's trace: every frame on a segment, every impairment decision and every run event, hashed as it is recorded and rendered as text on demand.

use std::fmt::Write;

use xxhash_rust::xxh3::Xxh3;

use crate::config::{Direction, TraceLevel};
use crate::impair::Decision;
use wire::decode::decode_frame;
pub use wire::format_time;

#[derive(Clone, Debug, PartialEq)]
pub enum TraceKind {
    /// Frame `frame_id`, sent by `from_host`, is on `segment`; its bytes are in the trace.
    Frame {
        segment: u32,
        from_host: u32,
        frame_id: u64,
        bytes: std::ops::Range<usize>,
    },
    /// A decision of one link direction about frame `frame_id`.
    Impairment {
        host: u32,
        direction: Direction,
        frame_id: u64,
        decision: Decision,
    },
    LinkState {
        host: u32,
        up: bool,
    },
    Partition {
        segment: u32,
        groups: Vec<Vec<u32>>,
    },
    Heal {
        segment: u32,
    },
    ImpairmentsChanged {
        host: u32,
        direction: Direction,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct TraceEvent {
    pub time_us: u64,
    pub kind: TraceKind,
}

/// Names to render host and segment numbers with.
#[derive(Clone, Debug, Default)]
pub struct TraceNames {
    pub hosts: Vec<String>,
    pub segments: Vec<String>,
}

/// Feeds formatted text straight into the hasher, without building it first.
struct HashWriter<'a>(&'a mut Xxh3);

impl std::fmt::Write for HashWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.update(s.as_bytes());
        Ok(())
    }
}

/// A decision as a tag and one number, for hashing.
fn decision_code(decision: &Decision) -> (u8, u64) {
    match *decision {
        Decision::Dropped(reason) => (reason as u8, 0),
        Decision::Corrupted { bit_offset } => (16, u64::from(bit_offset)),
        Decision::Duplicated => (17, 0),
        Decision::Queued { wait_us } => (18, wait_us),
        Decision::Jittered { extra_us } => (19, extra_us),
        Decision::Reordered { held_us } => (20, held_us),
    }
}

pub struct Trace {
    level: TraceLevel,
    events: Vec<TraceEvent>,
    frame_bytes: Vec<u8>,
    hasher: Xxh3,
}

impl Trace {
    pub fn new(level: TraceLevel) -> Trace {
        Trace {
            level,
            events: Vec::new(),
            frame_bytes: Vec::new(),
            hasher: Xxh3::new(),
        }
    }

    pub fn level(&self) -> TraceLevel {
        self.level
    }

    pub fn events(&self) -> &[TraceEvent] {
        &self.events
    }

    /// The xxh3 hash of everything recorded so far, in a stable binary encoding.
    pub fn hash(&self) -> u64 {
        self.hasher.digest()
    }

    /// Records a frame on a segment, when the level keeps frames (the check is inlined, so a
    /// run that does not keep them pays nothing more per frame).
    #[inline]
    pub fn frame(
        &mut self,
        time_us: u64,
        segment: u32,
        from_host: u32,
        frame_id: u64,
        bytes: &[u8],
    ) {
        if self.level >= TraceLevel::Frames {
            self.record_frame(time_us, segment, from_host, frame_id, bytes);
        }
    }

    fn record_frame(
        &mut self,
        time_us: u64,
        segment: u32,
        from_host: u32,
        frame_id: u64,
        bytes: &[u8],
    ) {
        self.hasher.update(&time_us.to_le_bytes());
        self.hasher.update(&[0]);
        self.hasher.update(&segment.to_le_bytes());
        self.hasher.update(&from_host.to_le_bytes());
        self.hasher.update(&frame_id.to_le_bytes());
        self.hasher.update(&(bytes.len() as u32).to_le_bytes());
        self.hasher.update(bytes);
        let start = self.frame_bytes.len();
        self.frame_bytes.extend_from_slice(bytes);
        self.events.push(TraceEvent {
            time_us,
            kind: TraceKind::Frame {
                segment,
                from_host,
                frame_id,
                bytes: start..self.frame_bytes.len(),
            },
        });
    }

    pub fn record(&mut self, time_us: u64, kind: TraceKind) {
        match &kind {
            // Impairment decisions can come with every frame (a bandwidth-limited link queues
            // each one), so they get a fixed binary encoding, fed to the hasher in one call
            // (the same bytes, in the same order, as separate calls would give).
            TraceKind::Impairment {
                host,
                direction,
                frame_id,
                decision,
            } => {
                let (tag, value) = decision_code(decision);
                let mut bytes = [0u8; 31];
                bytes[0..8].copy_from_slice(&time_us.to_le_bytes());
                bytes[8] = 2;
                bytes[9..13].copy_from_slice(&host.to_le_bytes());
                bytes[13] = *direction as u8;
                bytes[14..22].copy_from_slice(&frame_id.to_le_bytes());
                bytes[22] = tag;
                bytes[23..31].copy_from_slice(&value.to_le_bytes());
                self.hasher.update(&bytes);
            }
            // A Debug rendering is a stable encoding for these small, rare events: it depends
            // only on the values, never on addresses or the platform.
            _ => {
                self.hasher.update(&time_us.to_le_bytes());
                self.hasher.update(&[1]);
                let _ = write!(HashWriter(&mut self.hasher), "{kind:?}");
            }
        }
        self.events.push(TraceEvent { time_us, kind });
    }

    pub fn frame_bytes(&self, range: &std::ops::Range<usize>) -> &[u8] {
        &self.frame_bytes[range.clone()]
    }

    /// One line per event: `seconds.micros  where  what`.
    pub fn render(&self, names: &TraceNames) -> String {
        let mut out = String::new();
        for event in &self.events {
            render_event(&mut out, event, names, self);
            out.push('\n');
        }
        out
    }
}

fn host_name(names: &TraceNames, host: u32) -> &str {
    names.hosts.get(host as usize).map_or("?", String::as_str)
}

fn segment_name(names: &TraceNames, segment: u32) -> &str {
    names
        .segments
        .get(segment as usize)
        .map_or("?", String::as_str)
}

fn render_event(out: &mut String, event: &TraceEvent, names: &TraceNames, trace: &Trace) {
    let _ = write!(out, "{} ", format_time(event.time_us));
    match &event.kind {
        TraceKind::Frame {
            segment,
            from_host,
            frame_id,
            bytes,
        } => {
            let _ = write!(
                out,
                "{} #{} from {}: ",
                segment_name(names, *segment),
                frame_id,
                host_name(names, *from_host)
            );
            decode_frame(trace.frame_bytes(bytes), out);
        }
        TraceKind::Impairment {
            host,
            direction,
            frame_id,
            decision,
        } => {
            let _ = write!(
                out,
                "{} {} #{}: {}",
                host_name(names, *host),
                direction.name(),
                frame_id,
                decision
            );
        }
        TraceKind::LinkState { host, up } => {
            let _ = write!(
                out,
                "{} link {}",
                host_name(names, *host),
                if *up { "up" } else { "down" }
            );
        }
        TraceKind::Partition { segment, groups } => {
            let _ = write!(out, "{} partition", segment_name(names, *segment));
            for group in groups {
                let members: Vec<&str> = group.iter().map(|h| host_name(names, *h)).collect();
                let _ = write!(out, " [{}]", members.join(" "));
            }
        }
        TraceKind::Heal { segment } => {
            let _ = write!(out, "{} heal", segment_name(names, *segment));
        }
        TraceKind::ImpairmentsChanged { host, direction } => {
            let _ = write!(
                out,
                "{} {} impairments changed",
                host_name(names, *host),
                direction.name()
            );
        }
    }
}
