//! The run's trace: every frame on a segment, every impairment decision and every run event, hashed as it is recorded, decoded once after the run and rendered as text on demand.

use std::fmt::Write;

use xxhash_rust::xxh3::Xxh3;

use crate::config::{Direction, TraceLevel};
use crate::impair::Decision;
pub use wire::format_time;
use wire::Decoded;

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

/// One frame of a trace and its record: what the oracles, the expectations and the trace's
/// text all read, so that a run parses each frame once ([`Trace::decode_frames`]).
#[derive(Clone, Debug, PartialEq)]
pub struct TraceFrame {
    pub time_us: u64,
    pub segment: u32,
    pub from_host: u32,
    pub frame_id: u64,
    /// Where the bytes are in the trace ([`Trace::frame_bytes`]).
    pub bytes: std::ops::Range<usize>,
    pub decoded: Decoded,
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

    /// Decodes every frame of the trace, in trace order. A run does this once, after it
    /// ends, and hands the records to everything that reads its frames.
    pub fn decode_frames(&self) -> Vec<TraceFrame> {
        self.events
            .iter()
            .filter_map(|event| match &event.kind {
                TraceKind::Frame {
                    segment,
                    from_host,
                    frame_id,
                    bytes,
                } => Some(TraceFrame {
                    time_us: event.time_us,
                    segment: *segment,
                    from_host: *from_host,
                    frame_id: *frame_id,
                    bytes: bytes.clone(),
                    decoded: Decoded::parse(self.frame_bytes(bytes)),
                }),
                _ => None,
            })
            .collect()
    }

    /// One line per event: `seconds.micros  where  what`.
    pub fn render(&self, names: &TraceNames) -> String {
        self.render_decoded(names, &self.decode_frames())
    }

    /// [`render`](Self::render) with the frames already decoded: `frames` are this trace's
    /// [`decode_frames`](Self::decode_frames). A frame they do not hold is decoded here.
    pub fn render_decoded(&self, names: &TraceNames, frames: &[TraceFrame]) -> String {
        let mut out = String::new();
        let mut frames = frames.iter().peekable();
        for event in &self.events {
            let decoded = match &event.kind {
                TraceKind::Frame { bytes, .. } => {
                    frames.next_if(|f| f.bytes == *bytes).map(|f| &f.decoded)
                }
                _ => None,
            };
            render_event(&mut out, event, names, self, decoded);
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

fn render_event(
    out: &mut String,
    event: &TraceEvent,
    names: &TraceNames,
    trace: &Trace,
    decoded: Option<&Decoded>,
) {
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
            match decoded {
                Some(decoded) => decoded.write_line(out),
                None => Decoded::parse(trace.frame_bytes(bytes)).write_line(out),
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The text is the same whichever records it is handed: the trace's own, none, or
    /// records whose byte ranges do not line up with its frames; a frame without its record
    /// is decoded on the spot.
    #[test]
    fn rendering_reads_the_records_of_this_trace_only() {
        let mut arp = vec![0xff; 6];
        arp.extend([
            2, 0, 0, 0, 0, 1, 8, 6, 0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1,
        ]);
        arp.extend([10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2]);
        let mut trace = Trace::new(TraceLevel::Frames);
        trace.frame(1, 0, 0, 0, &arp);
        trace.record(2, TraceKind::LinkState { host: 0, up: false });
        trace.frame(3, 0, 0, 1, &arp[..20]);
        let names = TraceNames {
            hosts: vec!["a".into()],
            segments: vec!["lan".into()],
        };
        let frames = trace.decode_frames();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1].frame_id, 1);
        let text = trace.render(&names);
        assert!(
            text.starts_with("0.000001 lan #0 from a: 02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff ARP who-has 10.0.0.2 tell 10.0.0.1\n"),
            "{text}"
        );
        assert_eq!(trace.render_decoded(&names, &frames), text);
        assert_eq!(trace.render_decoded(&names, &[]), text);
        let mut other = Trace::new(TraceLevel::Frames);
        other.frame(0, 0, 0, 0, &arp[..30]);
        other.frame(0, 0, 0, 1, &arp);
        assert_eq!(trace.render_decoded(&names, &other.decode_frames()), text);
    }
}
