//! Trace oracles: properties every run must satisfy whatever the scenario (valid checksums, TCP sequence and window sanity, no frames to unowned MACs), checked on every frame of the trace.
//!
//! [`check_frames`] walks the trace once, in order, over the records of its frames decoded
//! once for the whole run ([`Trace::decode_frames`]), and returns the broken rules with the
//! frame that broke each; [`check`] decodes them itself. The rules and their stable ids:
//!
//! - `checksum`: every checksum a frame carries is right ([`Decoded::checksum`]),
//!   unless the sender's uplink corrupted the frame on purpose (a `to_segment` corruption
//!   decision with the same frame id). A `from_segment` corruption happens after the segment,
//!   so the copy in the trace is intact and is checked.
//! - `unowned-mac`: a unicast frame (group bit of the destination clear) goes to a MAC address
//!   that some host owns.
//! - `tcp-ack-beyond-sent`: an acknowledgement never passes the highest sequence number the
//!   peer has sent on the connection so far (its SYN and FIN count).
//! - `tcp-beyond-window`: data never ends past the highest right edge (ack + scaled window)
//!   the receiver has advertised so far, except for one byte past a zero window (a
//!   zero-window probe). A FIN is not data and is not held to the window.
//! - `tcp-retransmission-differs`: bytes sent again at a sequence number are the bytes first
//!   sent there, a retransmitted SYN carries the same ISN, a FIN is always at the same
//!   sequence number and no data is sent past it.
//! - `suppressed`: after [`MAX_VIOLATIONS`] violations, one last entry says how many more
//!   were found, so a badly broken stack does not produce megabytes of report.
//!
//! The TCP rules see only what is on the segment, which is what the receiver can have seen:
//! a frame dropped on its sender's uplink never reached anyone, and a frame corrupted on it
//! was discarded by the receiver's checksum check, so both are left out of the TCP state.
//! Connections are keyed by segment and 4-tuple; a SYN with a new ISN on a 4-tuple whose
//! connection is closed (a RST, or a FIN from both sides) starts a new connection.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::net::IpAddr;

use stack::MacAddr;

use sim::config::{Direction, TraceLevel};
use sim::impair::Decision;
use sim::trace::{Trace, TraceFrame, TraceKind, TraceNames};
use wire::decode::ChecksumStatus;
use wire::format_time;
use wire::frame::{Tcp, TcpOption};
use wire::{Decoded, TcpFlags};

/// The ids of the rules, as violations carry them and scenario `finding` checks name them.
pub const RULES: [&str; 5] = [
    "checksum",
    "unowned-mac",
    "tcp-ack-beyond-sent",
    "tcp-beyond-window",
    "tcp-retransmission-differs",
];

/// How many violations a run lists before it only counts them.
pub const MAX_VIOLATIONS: usize = 100;

/// How many bytes of each direction's stream are kept to compare retransmissions with. Past
/// this offset from the ISN the retransmission check stops for that direction, so a long
/// transfer costs at most this much memory per direction.
pub const STREAM_CAP_BYTES: u32 = 64 << 20;

/// RFC 7323 section 2.3: a shift above 14 is used as 14.
const MAX_WINDOW_SHIFT: u8 = 14;

/// One broken rule, with the frame that broke it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    pub time_us: u64,
    pub frame_id: u64,
    /// The segment's name, from [`TraceNames`] (`?` when the names do not have it).
    pub segment: String,
    /// A short, stable id of the rule (see the module documentation).
    pub rule: &'static str,
    /// What is wrong, in a sentence, followed by the decoded frame.
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} #{} {}: {}",
            format_time(self.time_us),
            self.segment,
            self.frame_id,
            self.rule,
            self.detail
        )
    }
}

/// Checks every frame of `trace` against the rules of this module and returns what broke, in
/// trace order. `host_macs[i]` is the MAC address of host `i` (numbered as in
/// `names.hosts`).
///
/// The trace must have been recorded at [`TraceLevel::Frames`]: a trace of decisions only
/// holds no frames, so there is nothing to check and the result is empty.
pub fn check(trace: &Trace, names: &TraceNames, host_macs: &[MacAddr]) -> Vec<Violation> {
    if trace.level() < TraceLevel::Frames {
        return Vec::new();
    }
    check_frames(trace, &trace.decode_frames(), names, host_macs)
}

/// [`check`] over frames already decoded: `frames` are `trace`'s own
/// ([`Trace::decode_frames`]), the records the rest of the run's judging reads too. A frame
/// they do not hold is decoded here.
pub fn check_frames(
    trace: &Trace,
    frames: &[TraceFrame],
    names: &TraceNames,
    host_macs: &[MacAddr],
) -> Vec<Violation> {
    if trace.level() < TraceLevel::Frames {
        return Vec::new();
    }
    let mut frames = frames.iter().peekable();
    let mut checker = Checker {
        names,
        host_macs,
        corrupted: BTreeSet::new(),
        connections: BTreeMap::new(),
        report: Report::default(),
    };
    for event in trace.events() {
        match &event.kind {
            // The uplink's decisions are recorded when the frame is sent, before the frame
            // reaches the segment, so the set is complete by the time the frame is checked.
            TraceKind::Impairment {
                direction: Direction::ToSegment,
                frame_id,
                decision: Decision::Corrupted { .. },
                ..
            } => {
                checker.corrupted.insert(*frame_id);
            }
            TraceKind::Frame {
                segment,
                frame_id,
                bytes,
                ..
            } => {
                let at = |decoded| At {
                    time_us: event.time_us,
                    segment: *segment,
                    frame_id: *frame_id,
                    decoded,
                };
                let frame = trace.frame_bytes(bytes);
                match frames.next_if(|f| f.bytes == *bytes) {
                    Some(f) => checker.frame(at(&f.decoded), frame),
                    None => checker.frame(at(&Decoded::parse(frame)), frame),
                }
            }
            _ => {}
        }
    }
    checker.report.finish()
}

/// The violations found so far, and a count of those past the cap.
#[derive(Default)]
struct Report {
    listed: Vec<Violation>,
    suppressed: u64,
    /// Where the first violation past the cap was, for the summary entry.
    first_suppressed: Option<(u64, u64, String, &'static str)>,
}

impl Report {
    fn finish(mut self) -> Vec<Violation> {
        if let Some((time_us, frame_id, segment, rule)) = self.first_suppressed.take() {
            self.listed.push(Violation {
                time_us,
                frame_id,
                segment,
                rule: "suppressed",
                detail: format!(
                    "{} more violations were found after the first {MAX_VIOLATIONS} and are not listed; the first of them ({rule}) is on this frame",
                    self.suppressed
                ),
            });
        }
        self.listed
    }
}

/// Where a violation is, so that rules can report without knowing about names.
#[derive(Clone, Copy)]
struct At<'a> {
    time_us: u64,
    segment: u32,
    frame_id: u64,
    decoded: &'a Decoded,
}

struct Checker<'a> {
    names: &'a TraceNames,
    host_macs: &'a [MacAddr],
    /// Frames corrupted on purpose by their sender's uplink.
    corrupted: BTreeSet<u64>,
    connections: BTreeMap<ConnectionKey, Connection>,
    report: Report,
}

impl Checker<'_> {
    fn violation(&mut self, at: At<'_>, rule: &'static str, detail: std::fmt::Arguments<'_>) {
        let segment = self
            .names
            .segments
            .get(at.segment as usize)
            .map_or("?", String::as_str);
        if self.report.listed.len() >= MAX_VIOLATIONS {
            // Past the cap only count: nothing is formatted or allocated for these.
            self.report.suppressed += 1;
            if self.report.first_suppressed.is_none() {
                self.report.first_suppressed =
                    Some((at.time_us, at.frame_id, segment.to_string(), rule));
            }
            return;
        }
        let mut text = String::new();
        let _ = write!(text, "{detail}: ");
        at.decoded.write_line(&mut text);
        self.report.listed.push(Violation {
            time_us: at.time_us,
            frame_id: at.frame_id,
            segment: segment.to_string(),
            rule,
            detail: text,
        });
    }

    /// Checks one frame; `at` holds its record and `frame` its bytes.
    fn frame(&mut self, at: At<'_>, frame: &[u8]) {
        let corrupted = self.corrupted.contains(&at.frame_id);
        if !corrupted {
            if let ChecksumStatus::Invalid { layer } = at.decoded.checksum {
                self.violation(
                    at,
                    "checksum",
                    format_args!(
                        "the {} checksum is wrong, and the sender's uplink did not corrupt the frame",
                        layer.name()
                    ),
                );
            }
        }
        // The MAC header is outside the bytes an impairment may corrupt, so even a corrupted
        // frame's destination is the one its sender chose.
        if let Some(dst) = at.decoded.dst_mac() {
            if !dst.is_multicast() && !self.host_macs.contains(&dst) {
                self.violation(
                    at,
                    "unowned-mac",
                    format_args!("unicast to {dst}, which no host owns"),
                );
            }
        }
        if !corrupted {
            self.tcp(at, frame);
        }
    }

    fn tcp(&mut self, at: At<'_>, frame: &[u8]) {
        let (Some(ip), Some(tcp)) = (at.decoded.ip(), at.decoded.tcp()) else {
            return;
        };
        // Only a segment whose frame is whole and consistent is judged: one cut off, or
        // whose lengths disagree, says nothing reliable about the stream. A fragment holds
        // only part of the segment (its TCP header is never read); the stacks here never
        // fragment TCP, and a part cannot be checked on its own.
        if at.decoded.malformed.is_some() || ip.fragmented {
            return;
        }
        let src = (ip.src, tcp.src_port);
        let dst = (ip.dst, tcp.dst_port);
        // Each connection is stored once, under its endpoints in order; `side` says which of
        // the two sent this segment.
        let (key, side) = if src <= dst {
            ((at.segment, src, dst), 0)
        } else {
            ((at.segment, dst, src), 1)
        };
        let connection = self.connections.entry(key).or_default();
        let mut found = Found::default();
        connection.segment(side, tcp, tcp.payload_of(frame), &mut found);
        for problem in found.problems.iter().flatten() {
            self.violation(at, problem.rule(), format_args!("{problem}"));
        }
    }
}

/// (segment, lower endpoint, higher endpoint); an endpoint is (address, port), and the two
/// addresses of a connection are of one IP version.
type ConnectionKey = (u32, (IpAddr, u16), (IpAddr, u16));

/// `a < b` in sequence space (RFC 9293 section 3.4: comparisons are modulo 2^32).
fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

fn seq_max(a: Option<u32>, b: u32) -> u32 {
    match a {
        Some(a) if seq_lt(b, a) => a,
        _ => b,
    }
}

/// What one side of a connection has sent, as seen on the segment.
#[derive(Default)]
struct Side {
    /// The sequence number of this side's first SYN.
    isn: Option<u32>,
    /// The window-scale option of that SYN.
    window_shift: Option<u8>,
    /// The highest sequence number this side has sent, plus one (SND.MAX): SYN and FIN count.
    sent_end: Option<u32>,
    /// The sequence number of this side's FIN.
    fin: Option<u32>,
    /// The highest acknowledgement this side has sent.
    acked: Option<u32>,
    /// The highest right edge of the window this side has advertised (ack + scaled window).
    right_edge: Option<u32>,
    /// One past the acknowledgement of a zero window this side advertised: where a
    /// zero-window probe's one byte ends (RFC 9293 section 3.8.6.1).
    probe_edge: Option<u32>,
    stream: Stream,
}

#[derive(Default)]
struct Connection {
    sides: [Side; 2],
    reset: bool,
}

impl Connection {
    fn closed(&self) -> bool {
        self.reset || self.sides.iter().all(|s| s.fin.is_some())
    }

    /// The shift that applies to the windows `side` advertises outside SYNs: RFC 7323 section
    /// 2.2 scales only when both SYNs carried the option. `None` while a SYN is missing, when
    /// whether windows are scaled cannot be known.
    fn shift(&self, side: usize) -> Option<u8> {
        let [a, b] = &self.sides;
        if a.isn.is_none() || b.isn.is_none() {
            return None;
        }
        match (a.window_shift, b.window_shift) {
            (Some(_), Some(_)) => Some(self.sides[side].window_shift.unwrap_or(0)),
            _ => Some(0),
        }
    }

    /// Checks one segment sent by `side`, then adds it to the connection's state.
    fn segment(&mut self, side: usize, tcp: &Tcp, payload: &[u8], found: &mut Found) {
        let peer = 1 - side;
        let (seq, ack) = (tcp.seq, tcp.ack);
        let len = payload.len() as u32;
        let syn = u32::from(tcp.flags.has(TcpFlags::SYN));
        let data_seq = seq.wrapping_add(syn);
        let data_end = data_seq.wrapping_add(len);

        if tcp.flags.has(TcpFlags::SYN) {
            match self.sides[side].isn {
                Some(isn) if isn != seq && self.closed() => {
                    // A fresh connection on the same 4-tuple: forget the old one.
                    *self = Connection::default();
                    self.learn_syn(side, tcp);
                }
                Some(isn) if isn != seq => {
                    found.push(Problem::IsnChanged { isn, seq });
                    // Against the first connection's state the rest of this segment would
                    // only produce follow-on reports.
                    return;
                }
                Some(_) => {}
                None => self.learn_syn(side, tcp),
            }
        }
        let isn = self.sides[side].isn;

        if tcp.flags.has(TcpFlags::ACK) {
            match self.sides[peer].sent_end {
                Some(end) if seq_lt(end, ack) => found.push(Problem::AckBeyondSent {
                    ack,
                    sent_end: end,
                    peer_isn: self.sides[peer].isn,
                }),
                Some(_) => {}
                None => found.push(Problem::AckOfNothing { ack }),
            }
        }

        // A RST's sequence number and window say nothing about the stream (a RST answering a
        // stray segment takes its number from that segment), so only its ACK is checked.
        if tcp.flags.has(TcpFlags::RST) {
            self.reset = true;
            return;
        }

        let keep_alive = self.is_keep_alive(side, tcp, len);
        if len > 0 && !keep_alive {
            let receiver = &self.sides[peer];
            if let Some(edge) = receiver.right_edge {
                let allowed = seq_max(receiver.probe_edge, edge);
                if seq_lt(allowed, data_end) {
                    found.push(Problem::BeyondWindow {
                        data_end,
                        allowed,
                        zero_window: receiver.probe_edge == Some(allowed),
                        isn,
                    });
                }
            }
        }

        let me = &mut self.sides[side];
        if let Some(isn) = isn.filter(|_| len > 0 && !keep_alive) {
            if let Some(fin) = me.fin {
                if seq_lt(fin, data_end) {
                    found.push(Problem::DataAfterFin { data_end, fin, isn });
                }
            }
            // Offsets count from the first data byte, ISN + 1. Data before it (only a
            // keep-alive's garbage octet can be there) is not part of the stream.
            let offset = data_seq.wrapping_sub(isn.wrapping_add(1));
            if (offset as i32) >= 0 {
                if let Some(at) = me.stream.add(offset, payload) {
                    found.push(Problem::DataDiffers {
                        seq: isn.wrapping_add(1).wrapping_add(at),
                        isn,
                    });
                }
            }
        }
        let fin = tcp.flags.has(TcpFlags::FIN);
        if fin {
            match me.fin {
                Some(fin) if fin != data_end => found.push(Problem::FinMoved {
                    fin,
                    seq: data_end,
                    isn,
                }),
                Some(_) => {}
                None => me.fin = Some(data_end),
            }
        }
        let end = data_end.wrapping_add(u32::from(fin));
        me.sent_end = Some(seq_max(me.sent_end, end));

        if tcp.flags.has(TcpFlags::ACK) {
            me.acked = Some(seq_max(me.acked, ack));
            // RFC 7323 section 2.2: the window of a SYN is never scaled.
            let shift = if syn == 1 { Some(0) } else { self.shift(side) };
            // Without both SYNs the scaling is unknown, and a guess could only produce false
            // reports; the edge is learnt from the next segment instead.
            if let Some(shift) = shift {
                let window = u32::from(tcp.window) << shift;
                let me = &mut self.sides[side];
                me.right_edge = Some(seq_max(me.right_edge, ack.wrapping_add(window)));
                if window == 0 {
                    me.probe_edge = Some(seq_max(me.probe_edge, ack.wrapping_add(1)));
                }
            }
        }
    }

    fn learn_syn(&mut self, side: usize, tcp: &Tcp) {
        let me = &mut self.sides[side];
        me.isn = Some(tcp.seq);
        // End of Option List ends the search, and so does an option this oracle cannot read
        // (an unknown kind, a wrong length): options past it cannot be trusted.
        me.window_shift = tcp
            .options
            .iter()
            .take_while(|option| {
                !matches!(
                    option,
                    TcpOption::Eol
                        | TcpOption::Unknown { .. }
                        | TcpOption::BadLength { .. }
                        | TcpOption::Malformed { .. }
                )
            })
            .find_map(|option| match option {
                TcpOption::WindowScale(shift) => Some(shift.min(MAX_WINDOW_SHIFT)),
                _ => None,
            });
    }

    /// A keep-alive (RFC 9293 section 3.8.4, RFC 1122 section 4.2.3.6) is one garbage octet at
    /// SND.NXT - 1, a byte the peer has already acknowledged: it is not a retransmission, and
    /// smoltcp sends a zero there whatever the byte was.
    fn is_keep_alive(&self, side: usize, tcp: &Tcp, len: u32) -> bool {
        let end = tcp.seq.wrapping_add(1);
        len == 1
            && !tcp.flags.has(TcpFlags::SYN | TcpFlags::FIN)
            && self.sides[side].sent_end == Some(end)
            && self.sides[1 - side]
                .acked
                .is_some_and(|acked| !seq_lt(acked, end))
    }
}

/// The bytes one side has sent, by offset from its first data byte, and which offsets are
/// known (data may be seen out of order when earlier frames were lost before the segment).
#[derive(Default)]
struct Stream {
    bytes: Vec<u8>,
    /// Sorted, disjoint, non-touching ranges of known offsets.
    known: Vec<(u32, u32)>,
}

impl Stream {
    /// Compares `data` at `offset` with the bytes already known there, then keeps the bytes
    /// not known yet. Returns the offset of the first byte that differs. Only the first
    /// [`STREAM_CAP_BYTES`] of the stream are kept and compared.
    fn add(&mut self, offset: u32, data: &[u8]) -> Option<u32> {
        if offset >= STREAM_CAP_BYTES {
            return None;
        }
        let end = offset
            .saturating_add(data.len() as u32)
            .min(STREAM_CAP_BYTES);
        let data = &data[..(end - offset) as usize];
        if self.bytes.len() < end as usize {
            self.bytes.resize(end as usize, 0);
        }
        // The known ranges that overlap or touch [offset, end).
        let first = self.known.partition_point(|&(_, e)| e < offset);
        let last = self.known.partition_point(|&(s, _)| s <= end);
        let mut differs = None;
        let mut cursor = offset;
        for &(s, e) in &self.known[first..last] {
            let (from, to) = (s.max(offset), e.min(end));
            if differs.is_none() && from < to {
                let old = &self.bytes[from as usize..to as usize];
                let new = &data[(from - offset) as usize..(to - offset) as usize];
                if let Some(i) = old.iter().zip(new).position(|(a, b)| a != b) {
                    differs = Some(from + i as u32);
                }
            }
            // The gap before this range is new: the first bytes sent there are what count.
            if s > cursor {
                let to = s.min(end);
                self.bytes[cursor as usize..to as usize]
                    .copy_from_slice(&data[(cursor - offset) as usize..(to - offset) as usize]);
            }
            cursor = cursor.max(e);
        }
        if cursor < end {
            self.bytes[cursor as usize..end as usize]
                .copy_from_slice(&data[(cursor - offset) as usize..]);
        }
        let merged = match self.known[first..last] {
            [] => (offset, end),
            [(s, _), .., (_, e)] | [(s, e)] => (s.min(offset), e.max(end)),
        };
        if offset < end {
            self.known.drain(first..last);
            self.known.insert(first, merged);
        }
        differs
    }
}

/// What went wrong with one TCP segment; each renders as the sentence of its violation.
enum Problem {
    IsnChanged {
        isn: u32,
        seq: u32,
    },
    AckBeyondSent {
        ack: u32,
        sent_end: u32,
        peer_isn: Option<u32>,
    },
    AckOfNothing {
        ack: u32,
    },
    BeyondWindow {
        data_end: u32,
        allowed: u32,
        zero_window: bool,
        isn: Option<u32>,
    },
    DataDiffers {
        seq: u32,
        isn: u32,
    },
    DataAfterFin {
        data_end: u32,
        fin: u32,
        isn: u32,
    },
    FinMoved {
        fin: u32,
        seq: u32,
        isn: Option<u32>,
    },
}

impl Problem {
    fn rule(&self) -> &'static str {
        match self {
            Problem::AckBeyondSent { .. } | Problem::AckOfNothing { .. } => "tcp-ack-beyond-sent",
            Problem::BeyondWindow { .. } => "tcp-beyond-window",
            Problem::IsnChanged { .. }
            | Problem::DataDiffers { .. }
            | Problem::DataAfterFin { .. }
            | Problem::FinMoved { .. } => "tcp-retransmission-differs",
        }
    }
}

/// A sequence number, and where its side's ISN is known, its offset from it (what tcpdump and
/// packetdrill call the relative sequence number), since that is what people compare.
struct Seq(u32, Option<u32>);

impl std::fmt::Display for Seq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.1 {
            Some(isn) => write!(f, "{} (relative {})", self.0, self.0.wrapping_sub(isn)),
            None => write!(f, "{}", self.0),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Problem::IsnChanged { isn, seq } => write!(
                f,
                "SYN with ISN {seq} on a connection whose SYN had ISN {isn}, and the connection is not closed"
            ),
            Problem::AckBeyondSent {
                ack,
                sent_end,
                peer_isn,
            } => write!(
                f,
                "acknowledges {} but the peer has sent only up to {}",
                Seq(ack, peer_isn),
                Seq(sent_end, peer_isn)
            ),
            Problem::AckOfNothing { ack } => write!(
                f,
                "acknowledges {ack} but the peer has sent nothing on this connection"
            ),
            Problem::BeyondWindow {
                data_end,
                allowed,
                zero_window,
                isn,
            } => write!(
                f,
                "data ends at {} but the receiver's window ends at {}{}",
                Seq(data_end, isn),
                Seq(allowed, isn),
                if zero_window {
                    " (one byte past a zero window, a probe)"
                } else {
                    ""
                }
            ),
            Problem::DataDiffers { seq, isn } => write!(
                f,
                "the byte at {} differs from the one first sent there",
                Seq(seq, Some(isn))
            ),
            Problem::DataAfterFin { data_end, fin, isn } => write!(
                f,
                "data ends at {}, past the FIN already sent at {}",
                Seq(data_end, Some(isn)),
                Seq(fin, Some(isn))
            ),
            Problem::FinMoved { fin, seq, isn } => write!(
                f,
                "FIN at {}, but the FIN was first sent at {}",
                Seq(seq, isn),
                Seq(fin, isn)
            ),
        }
    }
}

/// The problems of one segment; a segment breaks at most five rules, so a fixed array keeps
/// the per-frame path free of allocation.
#[derive(Default)]
struct Found {
    problems: [Option<Problem>; 5],
}

impl Found {
    fn push(&mut self, problem: Problem) {
        if let Some(slot) = self.problems.iter_mut().find(|p| p.is_none()) {
            *slot = Some(problem);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, TcpOptionElement};

    const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const MACS: [MacAddr; 2] = [MacAddr(CLIENT_MAC), MacAddr(SERVER_MAC)];
    const CLIENT_ISN: u32 = 1000;
    const SERVER_ISN: u32 = 5000;

    /// One TCP segment between the client (10.0.0.1:49152) and the server (10.0.0.2:80).
    #[derive(Clone, Default)]
    struct Seg {
        from_server: bool,
        seq: u32,
        ack: Option<u32>,
        window: u16,
        syn: bool,
        fin: bool,
        rst: bool,
        wscale: Option<u8>,
        v6: bool,
        /// The client's port when not 49152.
        client_port: Option<u16>,
        payload: Vec<u8>,
    }

    impl Seg {
        fn client(seq: u32) -> Seg {
            Seg {
                seq,
                window: 4096,
                ..Seg::default()
            }
        }
        fn server(seq: u32) -> Seg {
            Seg {
                from_server: true,
                ..Seg::client(seq)
            }
        }
        fn ack(mut self, ack: u32) -> Seg {
            self.ack = Some(ack);
            self
        }
        fn win(mut self, window: u16) -> Seg {
            self.window = window;
            self
        }
        fn syn(mut self) -> Seg {
            self.syn = true;
            self
        }
        fn fin(mut self) -> Seg {
            self.fin = true;
            self
        }
        fn rst(mut self) -> Seg {
            self.rst = true;
            self
        }
        fn client_port(mut self, port: u16) -> Seg {
            self.client_port = Some(port);
            self
        }
        fn v6(mut self) -> Seg {
            self.v6 = true;
            self
        }
        fn data(mut self, payload: &[u8]) -> Seg {
            self.payload = payload.to_vec();
            self
        }

        fn bytes(&self) -> Vec<u8> {
            let (src_mac, dst_mac) = if self.from_server {
                (SERVER_MAC, CLIENT_MAC)
            } else {
                (CLIENT_MAC, SERVER_MAC)
            };
            let (mut a4, mut b4) = ([10, 0, 0, 1], [10, 0, 0, 2]);
            let mut a6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
            let mut b6 = a6;
            b6[15] = 2;
            let (mut sport, mut dport) = (self.client_port.unwrap_or(49152), 80);
            if self.from_server {
                std::mem::swap(&mut a4, &mut b4);
                std::mem::swap(&mut a6, &mut b6);
                std::mem::swap(&mut sport, &mut dport);
            }
            let eth = PacketBuilder::ethernet2(src_mac, dst_mac);
            let ip = if self.v6 {
                eth.ipv6(a6, b6, 64)
            } else {
                eth.ipv4(a4, b4, 64)
            };
            let mut b = ip.tcp(sport, dport, self.seq, self.window);
            if self.syn {
                b = b.syn();
            }
            if self.fin {
                b = b.fin();
            }
            if self.rst {
                b = b.rst();
            }
            if let Some(ack) = self.ack {
                b = b.ack(ack);
            }
            if let Some(shift) = self.wscale {
                b = b
                    .options(&[TcpOptionElement::Noop, TcpOptionElement::WindowScale(shift)])
                    .unwrap();
            }
            let mut out = Vec::new();
            b.write(&mut out, &self.payload).unwrap();
            out
        }
    }

    fn names() -> TraceNames {
        TraceNames {
            hosts: vec!["client".into(), "server".into()],
            segments: vec!["lan".into()],
        }
    }

    /// Records `frames` on segment 0, one per millisecond, frame ids from 0.
    fn trace_of(frames: &[Vec<u8>]) -> Trace {
        let mut trace = Trace::new(TraceLevel::Frames);
        for (i, frame) in frames.iter().enumerate() {
            let from = u32::from(frame.get(11) == Some(&2));
            trace.frame(i as u64 * 1000, 0, from, i as u64, frame);
        }
        trace
    }

    fn check_frames(frames: &[Vec<u8>]) -> Vec<Violation> {
        check(&trace_of(frames), &names(), &MACS)
    }

    fn check_segs(segs: &[Seg]) -> Vec<Violation> {
        let frames: Vec<Vec<u8>> = segs.iter().map(Seg::bytes).collect();
        check_frames(&frames)
    }

    /// The rules broken, with the index of the frame that broke each.
    fn rules(violations: &[Violation]) -> Vec<(u64, &'static str)> {
        violations.iter().map(|v| (v.frame_id, v.rule)).collect()
    }

    /// A handshake: SYN, SYN-ACK, ACK, with these ISNs, windows and window-scale options.
    fn handshake(
        client_isn: u32,
        server_isn: u32,
        client_ws: Option<u8>,
        server_ws: Option<u8>,
        server_window: u16,
    ) -> Vec<Seg> {
        let mut syn = Seg::client(client_isn).syn();
        syn.wscale = client_ws;
        let mut synack = Seg::server(server_isn)
            .syn()
            .ack(client_isn.wrapping_add(1))
            .win(server_window);
        synack.wscale = server_ws;
        let ack = Seg::client(client_isn.wrapping_add(1)).ack(server_isn.wrapping_add(1));
        vec![syn, synack, ack]
    }

    fn plain_handshake() -> Vec<Seg> {
        handshake(CLIENT_ISN, SERVER_ISN, None, None, 4096)
    }

    fn with(mut segs: Vec<Seg>, more: impl IntoIterator<Item = Seg>) -> Vec<Seg> {
        segs.extend(more);
        segs
    }

    #[test]
    fn a_clean_exchange_breaks_no_rule_over_ipv4_and_ipv6() {
        let exchange = with(
            plain_handshake(),
            [
                Seg::client(1001).ack(5001).data(b"hello"),
                Seg::server(5001).ack(1006).data(b"world!"),
                Seg::client(1006).ack(5007).fin(),
                Seg::server(5007).ack(1007).fin(),
                Seg::client(1007).ack(5008),
            ],
        );
        assert_eq!(check_segs(&exchange), vec![]);
        let v6: Vec<Seg> = exchange.into_iter().map(Seg::v6).collect();
        assert_eq!(check_segs(&v6), vec![]);
    }

    /// A 4-tuple used again once its connection has ended (both FINs, or a RST) is a new
    /// connection with a new ISN, judged on its own; before the end, a new ISN is an error.
    #[test]
    fn a_four_tuple_reused_after_its_connection_ended_is_a_new_connection() {
        let closed = with(
            plain_handshake(),
            [
                Seg::client(1001).ack(5001).fin(),
                Seg::server(5001).ack(1002).fin(),
                Seg::client(1002).ack(5002),
            ],
        );
        let again = handshake(CLIENT_ISN + 90_000, SERVER_ISN + 7, None, None, 4096);
        let second = [Seg::client(CLIENT_ISN + 90_001)
            .ack(SERVER_ISN + 8)
            .data(b"again")];
        assert_eq!(
            check_segs(&with(with(closed, again.clone()), second.clone())),
            vec![]
        );
        let reset = with(plain_handshake(), [Seg::client(1001).ack(5001).rst()]);
        assert_eq!(
            check_segs(&with(with(reset, again.clone()), second.clone())),
            vec![]
        );
        // Still open: the same SYN is a retransmission whose sequence number changed.
        let open = with(plain_handshake(), again);
        assert_eq!(rules(&check_segs(&open))[0].1, "tcp-retransmission-differs");
    }

    #[test]
    fn a_bad_checksum_is_reported_unless_the_uplink_corrupted_the_frame() {
        let good = Seg::client(1).data(b"abcd").syn().bytes();
        assert_eq!(check_frames(std::slice::from_ref(&good)), vec![]);
        let mut bad = good.clone();
        *bad.last_mut().unwrap() ^= 0x04;
        let found = check_frames(std::slice::from_ref(&bad));
        assert_eq!(rules(&found), [(0, "checksum")]);
        assert!(found[0].detail.contains("tcp checksum"), "{}", found[0]);
        assert!(found[0].detail.ends_with("[bad cksum tcp]"), "{}", found[0]);

        // The sender's uplink flipped the bit: the decision comes before the frame.
        let corrupted = |direction| {
            let mut trace = Trace::new(TraceLevel::Frames);
            trace.record(
                0,
                TraceKind::Impairment {
                    host: 0,
                    direction,
                    frame_id: 7,
                    decision: Decision::Corrupted {
                        bit_offset: (bad.len() as u32 - 1) * 8 + 2,
                    },
                },
            );
            trace.frame(10, 0, 0, 7, &bad);
            check(&trace, &names(), &MACS)
        };
        assert_eq!(corrupted(Direction::ToSegment), vec![]);
        // Corruption on the way down happens after the segment: the copy here must be intact.
        assert_eq!(rules(&corrupted(Direction::FromSegment)), [(7, "checksum")]);
    }

    #[test]
    fn unicast_to_a_mac_nobody_owns_is_reported() {
        let good = Seg::client(1).syn().bytes();
        let mut stray = good.clone();
        stray[5] = 9;
        let mut broadcast = good.clone();
        broadcast[..6].fill(0xff);
        let mut multicast = good.clone();
        multicast[..6].copy_from_slice(&[0x33, 0x33, 0xff, 0, 0, 2]);
        let found = check_frames(&[good, stray, broadcast, multicast]);
        assert_eq!(rules(&found), [(1, "unowned-mac")]);
        assert!(
            found[0].detail.contains("02:00:00:00:00:09"),
            "{}",
            found[0]
        );
    }

    #[test]
    fn acknowledging_what_the_peer_never_sent_is_reported() {
        // The server acknowledges the client's SYN, five bytes and its FIN: all sent.
        let good = with(
            plain_handshake(),
            [
                Seg::client(1001).ack(5001).data(b"hello").fin(),
                Seg::server(5001).ack(1007),
            ],
        );
        assert_eq!(check_segs(&good), vec![]);
        // One more than was sent.
        let bad = with(
            plain_handshake(),
            [
                Seg::client(1001).ack(5001).data(b"hello").fin(),
                Seg::server(5001).ack(1008),
            ],
        );
        let found = check_segs(&bad);
        assert_eq!(rules(&found), [(4, "tcp-ack-beyond-sent")]);
        assert!(
            found[0].detail.starts_with(
                "acknowledges 1008 (relative 8) but the peer has sent only up to 1007 (relative 7)"
            ),
            "{}",
            found[0]
        );
        // A SYN-ACK that acknowledges more than the SYN.
        let found = check_segs(&[
            Seg::client(CLIENT_ISN).syn(),
            Seg::server(SERVER_ISN).syn().ack(CLIENT_ISN + 2),
        ]);
        assert_eq!(rules(&found), [(1, "tcp-ack-beyond-sent")]);
        // An ACK on a connection the peer never opened.
        let found = check_segs(&[Seg::server(SERVER_ISN).ack(77)]);
        assert_eq!(rules(&found), [(0, "tcp-ack-beyond-sent")]);
    }

    #[test]
    fn data_beyond_the_advertised_window_is_reported() {
        // The server's SYN-ACK advertises 10 bytes from ISN + 1.
        let hs = || handshake(CLIENT_ISN, SERVER_ISN, None, None, 10);
        let good = with(hs(), [Seg::client(1001).ack(5001).data(&[1; 10])]);
        assert_eq!(check_segs(&good), vec![]);
        let bad = with(hs(), [Seg::client(1001).ack(5001).data(&[1; 11])]);
        let found = check_segs(&bad);
        assert_eq!(rules(&found), [(3, "tcp-beyond-window")]);
        assert!(
            found[0]
                .detail
                .starts_with("data ends at 1012 (relative 12) but the receiver's window ends at 1011 (relative 11)"),
            "{}",
            found[0]
        );
        // The highest edge so far counts: a window that shrinks does not take back what
        // was offered.
        let shrunk = with(
            hs(),
            [
                Seg::server(5001).ack(1001).win(2),
                Seg::client(1001).ack(5001).data(&[1; 10]),
            ],
        );
        assert_eq!(check_segs(&shrunk), vec![]);
    }

    #[test]
    fn windows_are_scaled_only_when_both_syns_carry_the_option_and_never_in_a_syn() {
        // Server shift 3: its window of 10 outside SYNs means 80 bytes.
        let scaled = || handshake(CLIENT_ISN, SERVER_ISN, Some(7), Some(3), 10);
        let ok = with(
            scaled(),
            [
                Seg::server(5001).ack(1001).win(10),
                Seg::client(1001).ack(5001).data(&[1; 80]),
            ],
        );
        assert_eq!(check_segs(&ok), vec![]);
        let over = with(
            scaled(),
            [
                Seg::server(5001).ack(1001).win(10),
                Seg::client(1001).ack(5001).data(&[1; 81]),
            ],
        );
        assert_eq!(rules(&check_segs(&over)), [(4, "tcp-beyond-window")]);
        // The SYN-ACK's own window of 10 is not scaled: 11 bytes right after it are too many.
        let after_syn = with(scaled(), [Seg::client(1001).ack(5001).data(&[1; 11])]);
        assert_eq!(rules(&check_segs(&after_syn)), [(3, "tcp-beyond-window")]);
        // Only the server offered scaling: no window is scaled.
        let one_sided = with(
            handshake(CLIENT_ISN, SERVER_ISN, None, Some(3), 10),
            [
                Seg::server(5001).ack(1001).win(10),
                Seg::client(1001).ack(5001).data(&[1; 11]),
            ],
        );
        assert_eq!(rules(&check_segs(&one_sided)), [(4, "tcp-beyond-window")]);
    }

    #[test]
    fn one_byte_past_a_zero_window_is_a_probe_and_two_are_too_many() {
        let zero = || {
            with(
                handshake(CLIENT_ISN, SERVER_ISN, None, None, 100),
                [
                    Seg::client(1001).ack(5001).data(&[1; 100]),
                    Seg::server(5001).ack(1101).win(0),
                ],
            )
        };
        let probe = with(zero(), [Seg::client(1101).ack(5001).data(&[2])]);
        assert_eq!(check_segs(&probe), vec![]);
        let two = with(zero(), [Seg::client(1101).ack(5001).data(&[2, 3])]);
        let found = check_segs(&two);
        assert_eq!(rules(&found), [(5, "tcp-beyond-window")]);
        // The same byte past a window that is not zero is not a probe.
        let full = with(
            handshake(CLIENT_ISN, SERVER_ISN, None, None, 100),
            [
                Seg::client(1001).ack(5001).data(&[1; 100]),
                Seg::server(5001).ack(1101).win(0),
            ],
        );
        let mut full_probe = full.clone();
        full_probe[4] = Seg::server(5001).ack(1051).win(50);
        full_probe.push(Seg::client(1101).ack(5001).data(&[2]));
        assert_eq!(rules(&check_segs(&full_probe)), [(5, "tcp-beyond-window")]);
    }

    #[test]
    fn retransmitted_bytes_must_equal_the_first_ones() {
        let first = || {
            with(
                plain_handshake(),
                [
                    Seg::client(1001).ack(5001).data(b"abcdef"),
                    Seg::client(1007).ack(5001).data(b"ghij"),
                ],
            )
        };
        // The same bytes again, overlapping both earlier segments.
        let same = with(first(), [Seg::client(1004).ack(5001).data(b"defghi")]);
        assert_eq!(check_segs(&same), vec![]);
        let changed = with(first(), [Seg::client(1004).ack(5001).data(b"defgXi")]);
        let found = check_segs(&changed);
        assert_eq!(rules(&found), [(5, "tcp-retransmission-differs")]);
        assert!(
            found[0]
                .detail
                .starts_with("the byte at 1008 (relative 8) differs from the one first sent there"),
            "{}",
            found[0]
        );
        // Out of order: a later segment first, then a retransmission that fills the gap and
        // overlaps it.
        let gap = with(
            plain_handshake(),
            [
                Seg::client(1007).ack(5001).data(b"ghij"),
                Seg::client(1001).ack(5001).data(b"abcdefgh"),
                Seg::client(1001).ack(5001).data(b"abcdefghij"),
            ],
        );
        assert_eq!(check_segs(&gap), vec![]);
        let mut gap_bad = gap.clone();
        gap_bad[4] = Seg::client(1001).ack(5001).data(b"abcdefgX");
        assert_eq!(
            rules(&check_segs(&gap_bad)),
            [(4, "tcp-retransmission-differs")]
        );
    }

    #[test]
    fn a_syn_keeps_its_isn_and_a_fin_its_place_until_the_connection_closes() {
        // A retransmitted SYN with the same ISN is fine; with another ISN it is not.
        let found = check_segs(&[
            Seg::client(CLIENT_ISN).syn(),
            Seg::client(CLIENT_ISN).syn(),
            Seg::client(CLIENT_ISN + 1).syn(),
        ]);
        assert_eq!(rules(&found), [(2, "tcp-retransmission-differs")]);
        assert!(
            found[0].detail.starts_with("SYN with ISN 1001"),
            "{}",
            found[0]
        );
        // After a RST, a SYN with a new ISN opens a new connection, whose stream is new too.
        let after_rst = with(
            with(
                plain_handshake(),
                [
                    Seg::client(1001).ack(5001).data(b"old"),
                    Seg::server(5001).rst(),
                ],
            ),
            with(
                handshake(90_000, 70_000, None, None, 4096),
                [Seg::client(90_001).ack(70_001).data(b"new")],
            ),
        );
        assert_eq!(check_segs(&after_rst), vec![]);
        // After both FINs, likewise.
        let after_fins = with(
            with(
                plain_handshake(),
                [
                    Seg::client(1001).ack(5001).fin(),
                    Seg::server(5001).ack(1002).fin(),
                    Seg::client(1002).ack(5002),
                ],
            ),
            handshake(90_000, 70_000, None, None, 4096),
        );
        assert_eq!(check_segs(&after_fins), vec![]);
        // A FIN retransmitted at the same place is fine; one that moves is not, nor is data
        // past it.
        let fin = || {
            with(
                plain_handshake(),
                [Seg::client(1001).ack(5001).data(b"ab").fin()],
            )
        };
        let again = with(fin(), [Seg::client(1001).ack(5001).data(b"ab").fin()]);
        assert_eq!(check_segs(&again), vec![]);
        let moved = with(fin(), [Seg::client(1001).ack(5001).data(b"a").fin()]);
        let found = check_segs(&moved);
        assert_eq!(rules(&found), [(4, "tcp-retransmission-differs")]);
        assert!(
            found[0].detail.starts_with(
                "FIN at 1002 (relative 2), but the FIN was first sent at 1003 (relative 3)"
            ),
            "{}",
            found[0]
        );
        let past = with(fin(), [Seg::client(1003).ack(5001).data(b"c")]);
        let found = check_segs(&past);
        assert_eq!(rules(&found), [(4, "tcp-retransmission-differs")]);
        assert!(found[0].detail.contains("past the FIN"), "{}", found[0]);
    }

    #[test]
    fn sequence_numbers_wrap_around() {
        // Both ISNs just below 2^32: data, acknowledgements and windows cross zero.
        let client_isn = u32::MAX - 4;
        let server_isn = u32::MAX;
        let hs = || handshake(client_isn, server_isn, None, None, 20);
        let data: Vec<u8> = (0..20).collect();
        let good = with(
            hs(),
            [
                Seg::client(client_isn + 1).ack(0).data(&data),
                Seg::server(0).ack(15).win(20),
                // Bytes 5.. again, from sequence number 1.
                Seg::client(1).ack(0).data(&data[5..]),
                // Up to the window's right edge, 15 + 20.
                Seg::client(16).ack(0).data(&[7; 19]),
            ],
        );
        assert_eq!(check_segs(&good), vec![]);
        let mut changed = good.clone();
        let mut other = data[5..].to_vec();
        other[3] ^= 1;
        changed[5] = Seg::client(1).ack(0).data(&other);
        let found = check_segs(&changed);
        assert_eq!(rules(&found), [(5, "tcp-retransmission-differs")]);
        assert!(
            found[0].detail.starts_with("the byte at 4 (relative 9)"),
            "{}",
            found[0]
        );
        let mut too_far = good.clone();
        too_far[6] = Seg::client(16).ack(0).data(&[7; 20]);
        assert_eq!(rules(&check_segs(&too_far)), [(6, "tcp-beyond-window")]);
        let mut over_ack = good.clone();
        over_ack[4] = Seg::server(0).ack(17).win(20);
        assert_eq!(rules(&check_segs(&over_ack)), [(4, "tcp-ack-beyond-sent")]);
    }

    #[test]
    fn a_keep_alive_octet_is_not_a_retransmission() {
        let base = with(
            plain_handshake(),
            [
                Seg::client(1001).ack(5001).data(b"xyz"),
                Seg::server(5001).ack(1004),
            ],
        );
        // smoltcp's keep-alive: one zero byte at SND.NXT - 1, which the peer has acknowledged.
        let keep_alive = with(base.clone(), [Seg::client(1003).ack(5001).data(&[0])]);
        assert_eq!(check_segs(&keep_alive), vec![]);
        // The same byte before the peer acknowledged it is a retransmission, and differs.
        let mut unacked = keep_alive.clone();
        unacked[4] = Seg::server(5001).ack(1003);
        assert_eq!(
            rules(&check_segs(&unacked)),
            [(5, "tcp-retransmission-differs")]
        );
    }

    #[test]
    fn violations_are_capped_with_a_summary() {
        let mut bad = Seg::client(1).syn().bytes();
        bad[5] = 9;
        let frames = vec![bad; MAX_VIOLATIONS + 50];
        let found = check_frames(&frames);
        assert_eq!(found.len(), MAX_VIOLATIONS + 1);
        let last = &found[MAX_VIOLATIONS];
        assert_eq!(last.rule, "suppressed");
        assert_eq!(last.frame_id, MAX_VIOLATIONS as u64);
        assert!(last.detail.starts_with("50 more violations"), "{last}");
        assert!(found[..MAX_VIOLATIONS]
            .iter()
            .enumerate()
            .all(|(i, v)| v.rule == "unowned-mac" && v.frame_id == i as u64));
    }

    #[test]
    fn a_violation_reads_as_one_line() {
        let mut bad = Seg::client(1).syn().bytes();
        bad[5] = 9;
        let mut trace = Trace::new(TraceLevel::Frames);
        trace.frame(1_500_042, 0, 0, 12, &bad);
        let found = check(&trace, &names(), &MACS);
        assert_eq!(
            found[0].to_string(),
            "1.500042 lan #12 unowned-mac: unicast to 02:00:00:00:00:09, which no host owns: 02:00:00:00:00:01 > 02:00:00:00:00:09 IPv4 10.0.0.1.49152 > 10.0.0.2.80 ttl 64 TCP [S] seq 1 win 4096 len 0"
        );
        // A segment the names do not know is shown as `?`.
        let mut trace = Trace::new(TraceLevel::Frames);
        trace.frame(0, 3, 0, 0, &bad);
        assert_eq!(check(&trace, &names(), &MACS)[0].segment, "?");
    }

    #[test]
    fn a_trace_without_frames_has_nothing_to_check() {
        let mut bad = Seg::client(1).syn().bytes();
        bad[5] = 9;
        let mut trace = Trace::new(TraceLevel::Decisions);
        trace.frame(0, 0, 0, 0, &bad);
        assert_eq!(check(&trace, &names(), &MACS), vec![]);
    }

    #[test]
    fn connections_on_different_segments_ports_or_ip_versions_are_separate() {
        // The same 4-tuple with another ISN, on another segment: another connection.
        let syn = Seg::client(CLIENT_ISN).syn().bytes();
        let other_isn = Seg::client(CLIENT_ISN + 77).syn();
        let mut trace = Trace::new(TraceLevel::Frames);
        trace.frame(0, 0, 0, 0, &syn);
        trace.frame(1, 1, 0, 1, &other_isn.bytes());
        assert_eq!(check(&trace, &names(), &MACS), vec![]);
        // On the same segment, from another port or over IPv6: other connections too.
        let separate = [
            syn.clone(),
            other_isn.clone().client_port(49153).bytes(),
            other_isn.clone().v6().bytes(),
        ];
        assert_eq!(check_frames(&separate), vec![]);
        // The same connection: the ISN changed.
        assert_eq!(
            rules(&check_frames(&[syn, other_isn.bytes()])),
            [(1, "tcp-retransmission-differs")]
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut frames: Vec<Vec<u8>> = Vec::new();
        let exchange = with(
            handshake(u32::MAX - 2, 17, Some(14), Some(200), 0),
            [
                Seg::client(0).ack(18).data(b"payload"),
                Seg::server(18).ack(7).win(0).fin(),
                Seg::client(7).ack(19).rst(),
            ],
        );
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for seg in &exchange {
            let frame = seg.bytes();
            for cut in 0..frame.len() {
                frames.push(frame[..cut].to_vec());
            }
            for _ in 0..200 {
                let mut damaged = frame.clone();
                let i = (next() % frame.len() as u64) as usize;
                damaged[i] = next() as u8;
                frames.push(damaged);
            }
            frames.push(frame);
        }
        for len in 0..300 {
            frames.push((0..len).map(|_| next() as u8).collect());
        }
        let found = check_frames(&frames);
        assert!(found.len() <= MAX_VIOLATIONS + 1);
    }
}
