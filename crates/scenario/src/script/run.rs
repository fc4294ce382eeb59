//! The scripted peer: plays a parsed script against one stack instance in virtual time, matching every packet the stack sends against the script.
//!
//! The peer is the gateway of the stack under test (it answers ARP by itself; ARP is not
//! part of scripts) and the remote host behind it. Time only moves when the script says so
//! or when the stack asks to be polled, so an expected packet appears at its scripted time
//! exactly or the script fails, with the expected and the actual packet side by side.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::panic::{self, AssertUnwindSafe};

use sim::clock::Pacer;
use stack::{
    FrameQueue, MacAddr, Registry, SocketError, SocketId, Stack, StackConfig, TcpEnd, TcpState,
};

use super::{
    errno_value, Action, Arg, CallResult, Event, IcmpPacket, IpOverrides, OptionList, Packet,
    Script, Syscall, TcpFlags, TcpOption, TcpPacket, TimeSpec,
};
use wire::capture::{CaptureFormat, CaptureWriter};
use wire::decode::{ones_complement_sum, pseudo_header_sum};
use wire::format_time;
use wire::frame::{Arp, TcpOption as WireOption, TcpOptionBytes};
use wire::Decoded;

/// The stack under test's address (packetdrill's `live_local_ip`).
pub const LOCAL_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
/// The gateway the stack routes through; the scripted peer answers ARP for it.
const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 2);
/// The scripted peer's address (packetdrill's `live_remote_ip`).
pub const REMOTE_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const LOCAL_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
const PEER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);
/// packetdrill's port: the stack listens on it, or connects to it.
const SCRIPT_PORT: u16 = 8080;
/// The peer's port when the stack is the passive side.
const PEER_EPHEMERAL_PORT: u16 = 48_372;
/// How long `*` waits for an expected packet.
const ANY_TIME_LIMIT_US: u64 = 600_000_000;
/// The identifier of the peer's echo requests.
const ECHO_IDENT: u16 = 0x5744;
/// The idle time before a keep-alive once `SO_KEEPALIVE` is on: two hours, the least default
/// RFC 9293 allows (MUST-28) and Linux's.
const KEEPALIVE_IDLE_US: u64 = 7_200_000_000;
/// packetdrill's default tolerance for real-time runs.
const DEFAULT_TOLERANCE_US: u64 = 4_000;
/// The longest script a real-time stack (the kernel) plays: it takes as long in real time.
const REAL_TIME_SPAN_LIMIT_US: u64 = 60_000_000;
/// Polls at one instant before the stack is judged to spin.
const MAX_POLLS_PER_INSTANT: u32 = 10_000;

/// Where and why a run failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunFailure {
    /// The script line that failed; 0 when the stack could not even start.
    pub line: usize,
    pub message: String,
}

/// One script played against one backend.
#[derive(Clone, Debug)]
pub struct ScriptRun {
    pub name: String,
    pub backend: String,
    pub failure: Option<RunFailure>,
    /// Why the script was not played on this backend at all (a linux run longer than real
    /// time allows); `failure` is then `None`.
    pub not_run: Option<String>,
    /// Every frame both ways, as pcapng, each commented with the script line it belongs to.
    pub capture: Vec<u8>,
    /// The decoded trace: frames both ways and socket calls, one line each.
    pub trace: String,
    pub end_time_us: u64,
}

impl ScriptRun {
    pub fn passed(&self) -> bool {
        self.failure.is_none() && self.not_run.is_none()
    }
}

/// Plays `script` against a fresh instance of the stack registered in `stacks` as `backend`,
/// seeded with `seed`.
pub fn run(script: &Script, backend: &str, stacks: &Registry, seed: u64) -> ScriptRun {
    let not_run = |reason: String| ScriptRun {
        name: script.name.clone(),
        backend: backend.to_string(),
        failure: None,
        not_run: Some(reason),
        capture: Vec::new(),
        trace: String::new(),
        end_time_us: 0,
    };
    if let Some((_, reason)) = script.not_on.iter().find(|(b, _)| b == backend) {
        return not_run(format!(
            "the script says it cannot judge {backend}: {reason}"
        ));
    }
    let real_time = stacks.get(backend).is_some_and(|f| f.real_time());
    let tick_us = stacks.get(backend).map_or(0, |f| f.tick_us());
    if real_time {
        let span_us = script_span_us(&script.events);
        if span_us > REAL_TIME_SPAN_LIMIT_US {
            return not_run(format!(
                "the script spans {} s, and a {backend} run takes that long in real time (the limit is {} s)",
                span_us / 1_000_000,
                REAL_TIME_SPAN_LIMIT_US / 1_000_000
            ));
        }
    }
    let mut config = StackConfig::new("under-test", LOCAL_MAC, seed);
    config.ipv4 = Some((LOCAL_IP, 16));
    config.ipv4_gateway = Some(GATEWAY_IP);
    if let Some(bytes) = first_receive_buffer(script) {
        config.tcp_rx_buffer_bytes = bytes;
    }
    let rx_buffer_bytes = config.tcp_rx_buffer_bytes;
    let stack = stacks.build(backend, config).map_err(|e| e.to_string());
    let mut runtime = match stack {
        Ok(stack) => {
            // In real time a packet comes when the kernel sends it: packetdrill's tolerance
            // (the script's --tolerance_usecs, 4 ms by default) applies. Virtual time is exact,
            // up to one tick of a stack that sends only from a periodic timer.
            let pacer = real_time.then(|| Pacer::new(stack.wake_fd().as_slice()));
            let mut runtime = Runtime::new(stack, backend, seed, rx_buffer_bytes);
            runtime.tolerance_us = tick_us;
            if let Some(pacer) = pacer {
                runtime.tolerance_us = script.tolerance_us.unwrap_or(DEFAULT_TOLERANCE_US);
                runtime.pacer = Some(pacer);
            }
            runtime
        }
        Err(message) => {
            return ScriptRun {
                name: script.name.clone(),
                backend: backend.to_string(),
                not_run: None,
                failure: Some(RunFailure {
                    line: 0,
                    message: format!("the {backend} stack could not start: {message}"),
                }),
                capture: Vec::new(),
                trace: String::new(),
                end_time_us: 0,
            };
        }
    };
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| runtime.play(&script.events)));
    let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(failure)) => Some(failure),
        Err(payload) => Some(RunFailure {
            line: runtime.current_line,
            message: format!(
                "the {backend} stack panicked (seed {seed}): {}",
                sim::world::panic_message(payload.as_ref())
            ),
        }),
    };
    if let Some(failure) = &failure {
        let _ = writeln!(
            runtime.trace,
            "{} FAILED at line {}: {}",
            format_time(runtime.now_us),
            failure.line,
            failure.message.lines().next().unwrap_or_default()
        );
    }
    ScriptRun {
        name: script.name.clone(),
        backend: backend.to_string(),
        failure,
        not_run: None,
        capture: runtime.capture(),
        trace: std::mem::take(&mut runtime.trace),
        end_time_us: runtime.now_us,
    }
}

/// How long a script runs at least: the time of its last event, counting each range at its
/// end and `*` as no time.
fn script_span_us(events: &[Event]) -> u64 {
    let mut last_us = 0;
    let mut latest_us = 0;
    for event in events {
        let (start_us, end_us) = resolve(event.time, last_us);
        last_us = if matches!(event.time, TimeSpec::Range { .. }) {
            end_us
        } else {
            start_us
        };
        latest_us = latest_us.max(end_us);
    }
    latest_us
}

/// The receive buffer a script asks for with `SO_RCVBUF` before its connection exists; the
/// stack is built with it, as a kernel sizes a socket's buffer before the handshake.
fn first_receive_buffer(script: &Script) -> Option<usize> {
    script.events.iter().find_map(|e| match &e.action {
        Action::Call(call)
            if call.name == "setsockopt" && option_name(call) == Some("SO_RCVBUF") =>
        {
            match call.args.get(3) {
                Some(Arg::Array(items)) => match items.first() {
                    Some(Arg::Int(v)) if *v > 0 => Some(*v as usize),
                    _ => None,
                },
                _ => None,
            }
        }
        _ => None,
    })
}

fn option_name(call: &Syscall) -> Option<&str> {
    match call.args.get(2) {
        Some(Arg::Names(names)) => names.first().map(String::as_str),
        _ => None,
    }
}

/// A frame the stack sent that no `>` line has matched yet, decoded once when it was sent.
struct Sent {
    time_us: u64,
    frame: Vec<u8>,
    decoded: Decoded,
}

/// A frame seen on the wire, for the capture.
struct Record {
    time_us: u64,
    frame: Vec<u8>,
    note: String,
}

enum Fd {
    Tcp(TcpFd),
    Udp(UdpFd),
}

#[derive(Default)]
struct TcpFd {
    nonblocking: bool,
    listener: Option<SocketId>,
    connection: Option<SocketId>,
    nodelay: bool,
    keepalive: bool,
}

#[derive(Default)]
struct UdpFd {
    nonblocking: bool,
    socket: Option<SocketId>,
    peer: Option<SocketAddr>,
}

/// A blocking call waiting for the stack.
struct Pending {
    line: usize,
    call: Syscall,
    /// When it must return.
    return_at_us: u64,
    /// For a blocking write: the bytes still to queue, and the total.
    write_left: usize,
}

/// What a socket call did.
enum CallOutcome {
    Returned(Result<i64, &'static str>),
    WouldBlock,
}

struct Runtime {
    stack: Box<dyn Stack>,
    backend: String,
    now_us: u64,
    egress: FrameQueue,
    /// Frames from the stack not yet matched by a `>` line, in the order sent.
    outbound: VecDeque<Sent>,
    records: Vec<Record>,
    trace: String,
    local_isn: Option<u32>,
    remote_isn: u32,
    local_port: u16,
    remote_port: u16,
    fds: BTreeMap<i64, Fd>,
    next_fd: i64,
    pending: Option<Pending>,
    ip_id: u16,
    /// The last IP packet the stack sent, quoted by injected ICMP errors.
    last_outbound_ip: Vec<u8>,
    echo_seq: u16,
    last_echo_payload: Vec<u8>,
    current_line: usize,
    zeros: Vec<u8>,
    /// What a blocking write still has to queue after its last attempt.
    write_left_after: usize,
    /// The TCP receive buffer the stack was built with (what `SO_RCVBUF` reports).
    rx_buffer_bytes: usize,
    /// Holds time to the wall clock when the stack is a real kernel.
    pacer: Option<Pacer>,
    ready: Vec<usize>,
    /// How far a packet or a call may be from its scripted time (0: virtual time is exact).
    tolerance_us: u64,
}

impl Runtime {
    fn new(stack: Box<dyn Stack>, backend: &str, seed: u64, rx_buffer_bytes: usize) -> Runtime {
        // The peer's ISN is fixed by the seed; scripts never see it.
        let remote_isn =
            (sim::rng::SimRng::for_label(seed, "script-peer").next_u64() & 0xffff_ffff) as u32;
        Runtime {
            stack,
            backend: backend.to_string(),
            now_us: 0,
            egress: FrameQueue::new(),
            outbound: VecDeque::new(),
            records: Vec::new(),
            trace: String::new(),
            local_isn: None,
            remote_isn,
            local_port: SCRIPT_PORT,
            remote_port: PEER_EPHEMERAL_PORT,
            fds: BTreeMap::new(),
            next_fd: 3,
            pending: None,
            ip_id: 1,
            last_outbound_ip: Vec::new(),
            echo_seq: 0,
            last_echo_payload: Vec::new(),
            current_line: 0,
            zeros: vec![0; 65_536],
            write_left_after: 0,
            rx_buffer_bytes,
            pacer: None,
            ready: Vec::new(),
            tolerance_us: 0,
        }
    }

    fn play(&mut self, events: &[Event]) -> Result<(), RunFailure> {
        if let Some(pacer) = self.pacer.as_mut() {
            pacer.start();
        }
        // The gateway announces itself first, so that the stack knows its MAC address
        // before the script starts (ARP is not part of scripts).
        let announce = arp_frame(1, PEER_MAC, GATEWAY_IP, MacAddr([0; 6]), LOCAL_IP);
        self.deliver(announce, "ARP from the scripted gateway".into());
        self.poll_once()?;
        let mut last_us = 0u64;
        for event in events {
            self.current_line = event.line;
            let (start_us, end_us) = resolve(event.time, last_us);
            match &event.action {
                Action::Inject(packet) => {
                    self.advance_to(start_us, event)?;
                    let frame = self.build(packet, event)?;
                    self.deliver(frame, format!("line {}: {}", event.line, event.text));
                    self.poll_once()?;
                    last_us = start_us;
                }
                Action::Call(call) => {
                    self.advance_to(start_us, event)?;
                    let return_at = match event.time {
                        TimeSpec::Blocking { .. } => end_us,
                        _ => start_us,
                    };
                    self.call(call, event, return_at)?;
                    self.poll_once()?;
                    last_us = start_us;
                }
                Action::Expect(packet) => {
                    last_us = self.expect(packet, event, start_us, end_us)?;
                }
            }
        }
        if let Some(sent) = self.outbound.front() {
            if sent.time_us <= last_us {
                return Err(RunFailure {
                    line: events.last().map_or(0, |e| e.line),
                    message: format!(
                        "unexpected packet at {} after the last line:\n  actual:   {}",
                        format_time(sent.time_us),
                        self.render(sent)
                    ),
                });
            }
        }
        if let Some(pending) = &self.pending {
            return Err(RunFailure {
                line: pending.line,
                message: format!("the blocking call `{}` never returned", pending.call.name),
            });
        }
        Ok(())
    }

    /// Moves the clock to `deadline_us` (in real time: waits for the wall clock, or less when
    /// the kernel has a frame for us) and polls the stack there.
    fn step_to(&mut self, deadline_us: u64) -> Result<(), RunFailure> {
        let at_us = match self.pacer.as_mut() {
            Some(pacer) => pacer.wait(deadline_us, &mut self.ready),
            None => deadline_us,
        };
        self.now_us = self.now_us.max(at_us);
        self.poll_once()
    }

    /// Runs the stack up to `until_us`, firing its timers; a packet it sends before then,
    /// or a blocking call that does not return by its time, fails the script.
    fn advance_to(&mut self, until_us: u64, event: &Event) -> Result<(), RunFailure> {
        loop {
            self.check_unexpected(until_us, event)?;
            match self.stack.poll_at(self.now_us) {
                Some(deadline) if deadline <= until_us => self.step_to(deadline)?,
                _ => break,
            }
        }
        self.check_unexpected(until_us, event)?;
        // In real time, the last stretch to `until_us` is waited out too, reading whatever
        // the kernel sends meanwhile.
        while self.pacer.is_some() && self.now_us < until_us {
            self.step_to(until_us)?;
            self.check_unexpected(until_us, event)?;
        }
        self.now_us = self.now_us.max(until_us);
        self.check_pending_deadline()?;
        Ok(())
    }

    fn check_unexpected(&self, before_us: u64, event: &Event) -> Result<(), RunFailure> {
        if let Some(sent) = self.outbound.front() {
            if sent.time_us + self.tolerance_us < before_us {
                return Err(RunFailure {
                    line: event.line,
                    message: format!(
                        "unexpected packet at {}, before this line's time {}:\n  actual:   {}\n  next line: {}",
                        format_time(sent.time_us),
                        format_time(before_us),
                        self.render(sent),
                        event.text
                    ),
                });
            }
        }
        Ok(())
    }

    fn check_pending_deadline(&mut self) -> Result<(), RunFailure> {
        if let Some(pending) = &self.pending {
            if self.now_us > pending.return_at_us + self.tolerance_us {
                return Err(RunFailure {
                    line: pending.line,
                    message: format!(
                        "the blocking call `{}` did not return by {} (still waiting at {})",
                        pending.call.name,
                        format_time(pending.return_at_us),
                        format_time(self.now_us)
                    ),
                });
            }
        }
        Ok(())
    }

    /// Waits for the next packet from the stack and matches it against `expected`; returns
    /// the time it appeared.
    fn expect(
        &mut self,
        expected: &Packet,
        event: &Event,
        start_us: u64,
        end_us: u64,
    ) -> Result<u64, RunFailure> {
        let (start_us, end_us) = (
            start_us.saturating_sub(self.tolerance_us),
            end_us + self.tolerance_us,
        );
        loop {
            if let Some(sent) = self.outbound.pop_front() {
                let time_us = sent.time_us;
                let expected_text = render_expected(expected);
                if time_us < start_us || time_us > end_us {
                    let when = if time_us < start_us { "early" } else { "late" };
                    return Err(RunFailure {
                        line: event.line,
                        message: format!(
                            "packet {when}: expected at {}, sent at {}\n  expected: {} {}\n  actual:   {} {}",
                            window_text(start_us, end_us),
                            format_time(time_us),
                            format_time(start_us),
                            expected_text,
                            format_time(time_us),
                            self.render(&sent)
                        ),
                    });
                }
                let differences = self.compare(expected, &sent);
                if !differences.is_empty() {
                    return Err(RunFailure {
                        line: event.line,
                        message: format!(
                            "wrong packet ({})\n  expected: {} {}\n  actual:   {} {}",
                            differences.join(", "),
                            format_time(start_us),
                            expected_text,
                            format_time(time_us),
                            self.render(&sent)
                        ),
                    });
                }
                self.note_matched(time_us, event);
                return Ok(time_us);
            }
            match self.stack.poll_at(self.now_us) {
                Some(deadline) if deadline <= end_us => {
                    self.step_to(deadline)?;
                    self.check_pending_deadline()?;
                }
                _ => {
                    self.now_us = self.now_us.max(end_us);
                    return Err(RunFailure {
                        line: event.line,
                        message: format!(
                            "expected packet not sent: nothing from the stack by {}\n  expected: {} {}",
                            format_time(end_us),
                            window_text(start_us, end_us),
                            render_expected(expected)
                        ),
                    });
                }
            }
        }
    }

    /// Names the script line in the capture comment of the frame just matched.
    fn note_matched(&mut self, time_us: u64, event: &Event) {
        if let Some(record) = self
            .records
            .iter_mut()
            .rev()
            .find(|r| r.time_us == time_us && r.note == "from the stack")
        {
            record.note = format!("line {}: {}", event.line, event.text);
        }
    }

    /// One poll of the stack at the current time; frames it sends are recorded, ARP is
    /// answered, everything else waits in `outbound` for the script. A blocking call is
    /// retried afterwards.
    fn poll_once(&mut self) -> Result<(), RunFailure> {
        let mut polls = 0;
        loop {
            polls += 1;
            if polls > MAX_POLLS_PER_INSTANT {
                return Err(RunFailure {
                    line: self.current_line,
                    message: format!(
                        "the stack asked to be polled {MAX_POLLS_PER_INSTANT} times at {} without making progress",
                        format_time(self.now_us)
                    ),
                });
            }
            self.egress.clear();
            self.stack.poll(self.now_us, &mut self.egress);
            if self.egress.is_empty() {
                break;
            }
            let mut answered_arp = false;
            for index in 0..self.egress.len() {
                let frame = self.egress.get(index).to_vec();
                let decoded = Decoded::parse(&frame);
                let _ = writeln!(
                    self.trace,
                    "{} > {}",
                    format_time(self.now_us),
                    decoded.line()
                );
                if let Some(reply) = arp_reply_for(&decoded) {
                    self.records.push(Record {
                        time_us: self.now_us,
                        frame,
                        note: "ARP, answered by the scripted gateway".into(),
                    });
                    self.deliver(reply, "ARP reply from the scripted gateway".into());
                    answered_arp = true;
                    continue;
                }
                if decoded.ethernet.is_some_and(|e| e.ether_type == 0x0806) {
                    self.records.push(Record {
                        time_us: self.now_us,
                        frame,
                        note: "ARP, not part of the script".into(),
                    });
                    continue;
                }
                if let Some(ip) = frame.get(14..) {
                    self.last_outbound_ip.clear();
                    self.last_outbound_ip.extend_from_slice(ip);
                }
                self.records.push(Record {
                    time_us: self.now_us,
                    frame: frame.clone(),
                    note: "from the stack".into(),
                });
                self.outbound.push_back(Sent {
                    time_us: self.now_us,
                    frame,
                    decoded,
                });
            }
            if !answered_arp {
                break;
            }
        }
        self.retry_pending()
    }

    fn deliver(&mut self, frame: Vec<u8>, note: String) {
        let line = Decoded::parse(&frame).line();
        let _ = writeln!(self.trace, "{} < {line}", format_time(self.now_us));
        self.stack.receive(&frame);
        self.records.push(Record {
            time_us: self.now_us,
            frame,
            note,
        });
    }

    fn capture(&self) -> Vec<u8> {
        let mut writer = CaptureWriter::to_memory(CaptureFormat::Pcapng, 0, "script");
        for record in &self.records {
            let _ = writer.write_frame(record.time_us, &record.frame, Some(&record.note));
        }
        writer.finish().ok().flatten().unwrap_or_default()
    }

    // Packets the peer sends.

    fn build(&mut self, packet: &Packet, event: &Event) -> Result<Vec<u8>, RunFailure> {
        match packet {
            Packet::Tcp(tcp) => Ok(self.build_tcp(tcp)),
            Packet::Udp { payload_len } => {
                let mut udp = Vec::with_capacity(8 + *payload_len as usize);
                udp.extend_from_slice(&self.remote_port.to_be_bytes());
                udp.extend_from_slice(&self.local_port.to_be_bytes());
                udp.extend_from_slice(&((8 + payload_len) as u16).to_be_bytes());
                udp.extend_from_slice(&[0, 0]);
                udp.extend(std::iter::repeat_n(0u8, *payload_len as usize));
                let sum = transport_checksum(REMOTE_IP, LOCAL_IP, 17, &udp);
                udp[6..8].copy_from_slice(&(if sum == 0 { 0xffff } else { sum }).to_be_bytes());
                Ok(self.ipv4_frame(17, &udp))
            }
            Packet::Icmp(icmp) => self.build_icmp(icmp, event),
        }
    }

    fn build_tcp(&mut self, tcp: &TcpPacket) -> Vec<u8> {
        let local_isn = self.local_isn.unwrap_or(0);
        let mut options = Vec::new();
        if let Some(OptionList::Exactly(list)) = &tcp.options {
            for option in list {
                encode_option(option, local_isn, &mut options);
            }
        }
        while !options.len().is_multiple_of(4) {
            options.push(0);
        }
        let header_len = 20 + options.len();
        let mut segment = Vec::with_capacity(header_len + tcp.payload_len as usize);
        segment.extend_from_slice(&self.remote_port.to_be_bytes());
        segment.extend_from_slice(&self.local_port.to_be_bytes());
        segment.extend_from_slice(&self.remote_isn.wrapping_add(tcp.seq).to_be_bytes());
        let ack = tcp.ack.map_or(0, |a| local_isn.wrapping_add(a));
        segment.extend_from_slice(&ack.to_be_bytes());
        segment.push(((header_len / 4) as u8) << 4);
        segment.push(tcp.flags.0);
        segment.extend_from_slice(&tcp.window.unwrap_or(65_535).to_be_bytes());
        segment.extend_from_slice(&[0, 0]);
        segment.extend_from_slice(&tcp.urgent.unwrap_or(0).to_be_bytes());
        segment.extend_from_slice(&options);
        segment.extend(std::iter::repeat_n(0u8, tcp.payload_len as usize));
        let sum = transport_checksum(
            tcp.ip.source.unwrap_or(REMOTE_IP),
            tcp.ip.destination.unwrap_or(LOCAL_IP),
            6,
            &segment,
        );
        segment[16..18].copy_from_slice(&sum.to_be_bytes());
        self.ipv4_frame_with(6, &segment, &tcp.ip)
    }

    fn build_icmp(&mut self, icmp: &IcmpPacket, event: &Event) -> Result<Vec<u8>, RunFailure> {
        let mut message = vec![icmp.icmp_type, icmp.code, 0, 0];
        match icmp.icmp_type {
            8 => {
                self.echo_seq = self.echo_seq.wrapping_add(1);
                message.extend_from_slice(&ECHO_IDENT.to_be_bytes());
                message.extend_from_slice(&self.echo_seq.to_be_bytes());
                let len = icmp.payload_len.unwrap_or(56) as usize;
                self.last_echo_payload = (0..len).map(|i| (i % 251) as u8).collect();
                message.extend_from_slice(&self.last_echo_payload);
            }
            3 | 4 | 11 => {
                message.extend_from_slice(&[0, 0]);
                message.extend_from_slice(&icmp.mtu.unwrap_or(0).to_be_bytes());
                if self.last_outbound_ip.is_empty() {
                    return Err(RunFailure {
                        line: event.line,
                        message: "an ICMP error quotes the last packet the stack sent, and it has sent none yet".into(),
                    });
                }
                let ihl = usize::from(self.last_outbound_ip[0] & 0x0f) * 4;
                let quoted = (ihl + 8).min(self.last_outbound_ip.len());
                message.extend_from_slice(&self.last_outbound_ip[..quoted]);
            }
            _ => {
                return Err(RunFailure {
                    line: event.line,
                    message: "the peer injects ICMP echo requests, unreachable, source quench and time exceeded messages only"
                        .into(),
                })
            }
        }
        let sum = !ones_complement_sum(0, &message);
        message[2..4].copy_from_slice(&sum.to_be_bytes());
        Ok(self.ipv4_frame(1, &message))
    }

    fn ipv4_frame(&mut self, protocol: u8, payload: &[u8]) -> Vec<u8> {
        self.ipv4_frame_with(protocol, payload, &IpOverrides::default())
    }

    /// An IPv4 frame from the peer to the stack; `overrides` may change the addresses (a
    /// broadcast or multicast destination also gets the matching Ethernet destination) and
    /// add IP options, padded with End of Options List to whole words.
    fn ipv4_frame_with(
        &mut self,
        protocol: u8,
        payload: &[u8],
        overrides: &IpOverrides,
    ) -> Vec<u8> {
        let source = overrides.source.unwrap_or(REMOTE_IP);
        let destination = overrides.destination.unwrap_or(LOCAL_IP);
        let mut ethernet_destination = LOCAL_MAC.0;
        if destination.is_broadcast() || destination.octets()[3] == 255 {
            ethernet_destination = [0xff; 6];
        } else if destination.is_multicast() {
            let o = destination.octets();
            ethernet_destination = [0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]];
        }
        let mut options = overrides.options.clone();
        while !options.len().is_multiple_of(4) {
            options.push(0);
        }
        let header_len = 20 + options.len();
        let mut frame = Vec::with_capacity(14 + header_len + payload.len());
        frame.extend_from_slice(&ethernet_destination);
        frame.extend_from_slice(&PEER_MAC.0);
        frame.extend_from_slice(&0x0800u16.to_be_bytes());
        let total = (header_len + payload.len()) as u16;
        let mut ip = vec![0u8; header_len];
        ip[0] = 0x40 | (header_len / 4) as u8;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[4..6].copy_from_slice(&self.ip_id.to_be_bytes());
        self.ip_id = self.ip_id.wrapping_add(1);
        ip[8] = 64;
        ip[9] = protocol;
        ip[12..16].copy_from_slice(&source.octets());
        ip[16..20].copy_from_slice(&destination.octets());
        ip[20..].copy_from_slice(&options);
        let sum = !ones_complement_sum(0, &ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(payload);
        frame
    }

    // Matching packets the stack sends.

    /// The fields of a frame the stack sent that differ from `expected`, in words; empty
    /// when it matches.
    fn compare(&mut self, expected: &Packet, sent: &Sent) -> Vec<String> {
        let Some(ip) = whole_ipv4(&sent.decoded) else {
            return vec![format!(
                "not an IPv4 packet, expected {}",
                render_expected(expected)
            )];
        };
        let ip_payload_len = ip.payload.len();
        let mut differences = Vec::new();
        if ip.src != LOCAL_IP {
            differences.push(format!("ip.src {} (expected {LOCAL_IP})", ip.src));
        }
        if ip.dst != REMOTE_IP {
            differences.push(format!("ip.dst {} (expected {REMOTE_IP})", ip.dst));
        }
        match expected {
            Packet::Tcp(want) => {
                let Some(tcp) = sent.decoded.tcp() else {
                    differences.push(format!("protocol {} (expected TCP)", ip.protocol));
                    return differences;
                };
                if tcp.flags.has(TcpFlags::SYN) {
                    self.local_isn = Some(tcp.seq);
                    self.local_port = tcp.src_port;
                }
                if tcp.src_port != self.local_port {
                    differences.push(format!(
                        "tcp.sport {} (expected {})",
                        tcp.src_port, self.local_port
                    ));
                }
                if tcp.dst_port != self.remote_port {
                    differences.push(format!(
                        "tcp.dport {} (expected {})",
                        tcp.dst_port, self.remote_port
                    ));
                }
                let seq = tcp.seq.wrapping_sub(self.local_isn.unwrap_or(0));
                if tcp.flags != want.flags {
                    differences.push(format!("flags {} (expected {})", tcp.flags, want.flags));
                }
                if seq != want.seq {
                    differences.push(format!("seq {seq} (expected {})", want.seq));
                }
                let tcp_payload_len = tcp.payload.len() as u32;
                if tcp_payload_len != want.payload_len {
                    differences.push(format!(
                        "payload length {} (expected {})",
                        tcp_payload_len, want.payload_len
                    ));
                }
                if let Some(want_ack) = want.ack {
                    let ack = tcp.ack.wrapping_sub(self.remote_isn);
                    if tcp.flags.has(TcpFlags::ACK) && ack != want_ack {
                        differences.push(format!("ack {ack} (expected {want_ack})"));
                    }
                }
                if let Some(window) = want.window {
                    if tcp.window != window {
                        differences.push(format!("win {} (expected {window})", tcp.window));
                    }
                }
                if let Some(urgent) = want.urgent {
                    if tcp.urgent != urgent {
                        differences.push(format!("urg {} (expected {urgent})", tcp.urgent));
                    }
                }
                let options = tcp.options.as_slice();
                if let Some(eol) = options.iter().position(|b| *b == 0) {
                    // RFC 9293 MUST-69: the header space after End of Option List is zero.
                    if tcp.options.end_of_list() == Some(eol)
                        && options[eol..].iter().any(|b| *b != 0)
                    {
                        differences.push("non-zero padding after End of Option List".into());
                    }
                }
                let actual_options = decode_options(&tcp.options, self.remote_isn);
                if !options_match(want.options.as_ref(), &actual_options) {
                    differences.push(format!(
                        "options {} (expected {})",
                        render_options(&actual_options),
                        want.options
                            .as_ref()
                            .map_or("none".into(), render_option_list)
                    ));
                }
            }
            Packet::Udp { payload_len } => match sent.decoded.udp() {
                Some(udp) if ip.protocol == 17 => {
                    let len = ip_payload_len as u32 - 8;
                    if len != *payload_len {
                        differences.push(format!("udp length {len} (expected {payload_len})"));
                    }
                    if udp.dst_port != self.remote_port {
                        differences.push(format!(
                            "udp.dport {} (expected {})",
                            udp.dst_port, self.remote_port
                        ));
                    }
                }
                _ => differences.push(format!("protocol {} (expected UDP)", ip.protocol)),
            },
            Packet::Icmp(want) => {
                let Some(icmp) = sent.decoded.icmpv4() else {
                    differences.push(format!("protocol {} (expected ICMP)", ip.protocol));
                    return differences;
                };
                let (icmp_type, code) = (icmp.icmp_type, icmp.code);
                if (icmp_type, code) != (want.icmp_type, want.code) {
                    differences.push(format!(
                        "icmp type {icmp_type} code {code} (expected type {} code {})",
                        want.icmp_type, want.code
                    ));
                }
                let data = icmp.data(&sent.frame);
                if want.icmp_type == 0 {
                    let (ident, seq) = icmp.echo();
                    if (ident, seq) != (ECHO_IDENT, self.echo_seq) {
                        differences.push(format!(
                            "echo id {ident} seq {seq} (expected the request's id {ECHO_IDENT} seq {})",
                            self.echo_seq
                        ));
                    }
                    if data != &self.last_echo_payload[..] {
                        differences.push(format!(
                            "echo data of {} bytes differs from the request's {} bytes",
                            data.len(),
                            self.last_echo_payload.len()
                        ));
                    }
                }
                if let Some(len) = want.payload_len {
                    let actual = ip_payload_len as u32 - 8;
                    if want.icmp_type == 0 && actual != len {
                        differences.push(format!("icmp data length {actual} (expected {len})"));
                    }
                }
            }
        }
        differences
    }

    /// A packet the stack sent, in packetdrill's syntax with relative numbers.
    fn render(&self, sent: &Sent) -> String {
        let decoded = &sent.decoded;
        let Some(ip) = whole_ipv4(decoded) else {
            return decoded.line();
        };
        let payload_len = ip.payload.len();
        match ip.protocol {
            6 => match decoded.tcp() {
                Some(tcp) => {
                    let isn = if tcp.flags.has(TcpFlags::SYN) {
                        tcp.seq
                    } else {
                        self.local_isn.unwrap_or(0)
                    };
                    let seq = tcp.seq.wrapping_sub(isn);
                    let len = tcp.payload.len() as u32;
                    let mut out =
                        format!("{} {}:{}({})", tcp.flags, seq, seq.wrapping_add(len), len);
                    if tcp.flags.has(TcpFlags::ACK) {
                        let _ = write!(out, " ack {}", tcp.ack.wrapping_sub(self.remote_isn));
                    }
                    let _ = write!(out, " win {}", tcp.window);
                    if tcp.flags.has(TcpFlags::URG) {
                        let _ = write!(out, " urg {}", tcp.urgent);
                    }
                    let options = decode_options(&tcp.options, self.remote_isn);
                    if !options.is_empty() {
                        let _ = write!(out, " {}", render_options(&options));
                    }
                    let _ = write!(
                        out,
                        "  [{}:{} > {}:{}]",
                        ip.src, tcp.src_port, ip.dst, tcp.dst_port
                    );
                    out
                }
                None => decoded.line(),
            },
            17 if payload_len >= 8 => format!("udp ({})", payload_len - 8),
            1 if payload_len >= 8 => match decoded.icmpv4() {
                Some(icmp) => {
                    let name = match (icmp.icmp_type, icmp.code) {
                        (0, _) => "echo_reply".to_string(),
                        (8, _) => "echo_request".to_string(),
                        (3, code) => format!("unreachable {}", unreachable_name(code)),
                        (t, c) => format!("type {t} code {c}"),
                    };
                    format!("icmp {name} ({})", payload_len - 8)
                }
                None => decoded.line(),
            },
            _ => decoded.line(),
        }
    }

    // Socket calls.

    fn call(&mut self, call: &Syscall, event: &Event, return_at_us: u64) -> Result<(), RunFailure> {
        if self.pending.is_some() {
            return Err(RunFailure {
                line: event.line,
                message: "a call while another blocking call is still waiting; wirelab runs one blocking call at a time".into(),
            });
        }
        let outcome = self.perform(call, 0, event.line)?;
        match outcome {
            CallOutcome::Returned(result) => self.check_result(call, event.line, result),
            CallOutcome::WouldBlock => {
                let write_left = if call.name == "write" {
                    self.length_arg(call)
                } else {
                    0
                };
                let _ = writeln!(
                    self.trace,
                    "{} call {} blocks (line {})",
                    format_time(self.now_us),
                    call.name,
                    event.line
                );
                self.pending = Some(Pending {
                    line: event.line,
                    call: call.clone(),
                    return_at_us,
                    write_left,
                });
                Ok(())
            }
        }
    }

    fn retry_pending(&mut self) -> Result<(), RunFailure> {
        let Some(mut pending) = self.pending.take() else {
            return Ok(());
        };
        let sent_before = self.length_arg(&pending.call) - pending.write_left;
        let outcome = self.perform(&pending.call, sent_before, pending.line)?;
        match outcome {
            CallOutcome::WouldBlock => {
                if pending.call.name == "write" {
                    pending.write_left = self.write_left_after;
                }
                self.pending = Some(pending);
                Ok(())
            }
            CallOutcome::Returned(result) => {
                if self.now_us.abs_diff(pending.return_at_us) > self.tolerance_us {
                    return Err(RunFailure {
                        line: pending.line,
                        message: format!(
                            "the blocking call `{}` returned at {}, expected at {}",
                            pending.call.name,
                            format_time(self.now_us),
                            format_time(pending.return_at_us)
                        ),
                    });
                }
                self.check_result(&pending.call, pending.line, result)
            }
        }
    }

    fn check_result(
        &mut self,
        call: &Syscall,
        line: usize,
        result: Result<i64, &'static str>,
    ) -> Result<(), RunFailure> {
        let actual = match result {
            Ok(v) => CallResult::Value(v),
            Err(errno) => CallResult::Error(errno.to_string()),
        };
        let _ = writeln!(
            self.trace,
            "{} call {}(...) = {actual} (line {line})",
            format_time(self.now_us),
            call.name
        );
        let same = match (&call.result, &actual) {
            (CallResult::Value(a), CallResult::Value(b)) => a == b,
            (CallResult::Error(a), CallResult::Error(b)) => errno_value(a) == errno_value(b),
            _ => false,
        };
        if same {
            Ok(())
        } else {
            Err(RunFailure {
                line,
                message: format!(
                    "`{}` returned {actual}, expected {}",
                    call.name, call.result
                ),
            })
        }
    }

    fn length_arg(&self, call: &Syscall) -> usize {
        match (call.args.get(2), &call.result) {
            (Some(Arg::Int(n)), _) if *n >= 0 => *n as usize,
            (_, CallResult::Value(n)) if *n >= 0 => *n as usize,
            _ => 65_536,
        }
    }

    fn fd_arg(&self, call: &Syscall, line: usize) -> Result<i64, RunFailure> {
        match call.args.first() {
            Some(Arg::Int(fd)) => Ok(*fd),
            _ => Err(RunFailure {
                line,
                message: format!("`{}` takes a file descriptor number first", call.name),
            }),
        }
    }

    fn perform(
        &mut self,
        call: &Syscall,
        already_written: usize,
        line: usize,
    ) -> Result<CallOutcome, RunFailure> {
        use CallOutcome::{Returned, WouldBlock};
        let unsupported = |what: String| RunFailure {
            line,
            message: format!("unsupported: {what} at line {line}"),
        };
        if call.name == "socket" {
            let names = match call.args.get(1) {
                Some(Arg::Names(names)) => names.clone(),
                _ => Vec::new(),
            };
            let nonblocking = names.iter().any(|n| n == "SOCK_NONBLOCK");
            let fd = self.next_fd;
            if names.iter().any(|n| n == "SOCK_STREAM") {
                self.fds.insert(
                    fd,
                    Fd::Tcp(TcpFd {
                        nonblocking,
                        ..TcpFd::default()
                    }),
                );
            } else if names.iter().any(|n| n == "SOCK_DGRAM") {
                self.fds.insert(
                    fd,
                    Fd::Udp(UdpFd {
                        nonblocking,
                        ..UdpFd::default()
                    }),
                );
            } else {
                return Err(unsupported(format!(
                    "the socket type {names:?} (SOCK_STREAM and SOCK_DGRAM are supported)"
                )));
            }
            self.next_fd += 1;
            return Ok(Returned(Ok(fd)));
        }
        let fd = self.fd_arg(call, line)?;
        let length = self.length_arg(call).min(self.zeros.len());
        let mut accepted: Option<(SocketId, bool)> = None;
        let Some(entry) = self.fds.get_mut(&fd) else {
            return Ok(Returned(Err("EBADF")));
        };
        let stack = &mut self.stack;
        let result = match (call.name.as_str(), entry) {
            ("fcntl", entry) => {
                let nonblocking = match entry {
                    Fd::Tcp(t) => &mut t.nonblocking,
                    Fd::Udp(u) => &mut u.nonblocking,
                };
                match call.args.get(1) {
                    Some(Arg::Names(n)) if n[0] == "F_SETFL" => {
                        *nonblocking = matches!(call.args.get(2), Some(Arg::Names(f)) if f.iter().any(|f| f == "O_NONBLOCK"));
                        Ok(0)
                    }
                    Some(Arg::Names(n)) if n[0] == "F_GETFL" => {
                        Ok(2 | if *nonblocking { 0x800 } else { 0 })
                    }
                    _ => {
                        return Err(unsupported(
                            "fcntl commands other than F_SETFL and F_GETFL".into(),
                        ))
                    }
                }
            }
            ("setsockopt", entry) => match option_name(call) {
                Some("SO_REUSEADDR") => Ok(0),
                Some("SO_RCVBUF") => {
                    if self.backend != "smoltcp" {
                        return Err(unsupported(format!("SO_RCVBUF on the {} backend, whose receive window is fixed when it is built", self.backend)));
                    }
                    Ok(0)
                }
                Some("SO_KEEPALIVE") => {
                    let on = matches!(call.args.get(3), Some(Arg::Array(v)) if v.first() == Some(&Arg::Int(1)));
                    let Fd::Tcp(t) = entry else {
                        return Err(unsupported("SO_KEEPALIVE on a UDP socket".into()));
                    };
                    t.keepalive = on;
                    if let Some(c) = t.connection {
                        let _ = stack.tcp_set_keepalive(c, on.then_some(KEEPALIVE_IDLE_US));
                    }
                    Ok(0)
                }
                Some("TCP_NODELAY") => {
                    let on = matches!(call.args.get(3), Some(Arg::Array(v)) if v.first() == Some(&Arg::Int(1)));
                    if let Fd::Tcp(t) = entry {
                        t.nodelay = on;
                        if let Some(c) = t.connection {
                            let _ = stack.tcp_set_nagle(c, !on);
                        }
                    }
                    Ok(0)
                }
                other => {
                    return Err(unsupported(format!(
                        "the socket option {}",
                        other.unwrap_or("?")
                    )))
                }
            },
            ("getsockopt", entry) => {
                let value = match (option_name(call), &*entry) {
                    (Some("SO_ERROR"), Fd::Tcp(t)) => match t.connection {
                        Some(c) => match stack.tcp_end(c) {
                            Ok(Some(end)) => errno_value(end_errno(end)).unwrap_or(0),
                            _ => 0,
                        },
                        None => 0,
                    },
                    (Some("SO_ERROR"), Fd::Udp(_)) => 0,
                    (Some("SO_RCVBUF"), _) => self.rx_buffer_bytes as i64,
                    (Some("SO_REUSEADDR"), _) => 1,
                    (Some("TCP_NODELAY"), Fd::Tcp(t)) => i64::from(t.nodelay),
                    (Some("SO_KEEPALIVE"), Fd::Tcp(t)) => i64::from(t.keepalive),
                    (other, _) => {
                        return Err(unsupported(format!(
                            "the socket option {}",
                            other.unwrap_or("?")
                        )))
                    }
                };
                let expected = match call.args.get(3) {
                    Some(Arg::Array(v)) => v.first().cloned(),
                    _ => None,
                };
                if let Some(Arg::Int(want)) = expected {
                    if want != value {
                        return Err(RunFailure {
                            line,
                            message: format!(
                                "getsockopt {} gave [{value}], expected [{want}]",
                                option_name(call).unwrap_or("?")
                            ),
                        });
                    }
                }
                Ok(0)
            }
            ("bind", Fd::Tcp(_)) => {
                self.local_port = SCRIPT_PORT;
                Ok(0)
            }
            ("bind", Fd::Udp(u)) => match stack.udp_bind(SCRIPT_PORT) {
                Ok(s) => {
                    u.socket = Some(s);
                    self.local_port = SCRIPT_PORT;
                    Ok(0)
                }
                Err(e) => Err(socket_errno(&e)),
            },
            ("listen", Fd::Tcp(t)) => {
                let backlog = match call.args.get(1) {
                    Some(Arg::Int(n)) => (*n).max(1) as usize,
                    _ => 1,
                };
                match stack.tcp_listen(SCRIPT_PORT, backlog) {
                    Ok(l) => {
                        t.listener = Some(l);
                        self.local_port = SCRIPT_PORT;
                        self.remote_port = PEER_EPHEMERAL_PORT;
                        Ok(0)
                    }
                    Err(e) => Err(socket_errno(&e)),
                }
            }
            ("accept", Fd::Tcp(t)) => match t.listener {
                None => Err("EINVAL"),
                Some(l) => match stack.tcp_accept(l) {
                    Ok(Some(connection)) => {
                        if t.nodelay {
                            let _ = stack.tcp_set_nagle(connection, false);
                        }
                        accepted = Some((connection, t.nodelay));
                        Ok(0)
                    }
                    Ok(None) if t.nonblocking => Err("EAGAIN"),
                    Ok(None) => return Ok(WouldBlock),
                    Err(e) => Err(socket_errno(&e)),
                },
            },
            ("connect", Fd::Tcp(t)) => match t.connection {
                Some(c) => {
                    // A second connect reports the outcome of the first.
                    match (stack.tcp_end(c), stack.tcp_state(c)) {
                        (Ok(Some(end)), _) => Err(end_errno(end)),
                        (_, Ok(TcpState::SynSent | TcpState::SynReceived)) if t.nonblocking => {
                            Err("EALREADY")
                        }
                        (_, Ok(TcpState::SynSent | TcpState::SynReceived)) => {
                            return Ok(WouldBlock)
                        }
                        _ if already_written == 0 && self.pending.is_none() => Err("EISCONN"),
                        _ => Ok(0),
                    }
                }
                None => {
                    self.remote_port = SCRIPT_PORT;
                    match stack.tcp_connect(SocketAddr::new(IpAddr::V4(REMOTE_IP), SCRIPT_PORT)) {
                        Ok(c) => {
                            t.connection = Some(c);
                            if t.nodelay {
                                let _ = stack.tcp_set_nagle(c, false);
                            }
                            if t.keepalive {
                                let _ = stack.tcp_set_keepalive(c, Some(KEEPALIVE_IDLE_US));
                            }
                            if t.nonblocking {
                                Err("EINPROGRESS")
                            } else {
                                return Ok(WouldBlock);
                            }
                        }
                        Err(e) => Err(socket_errno(&e)),
                    }
                }
            },
            ("connect", Fd::Udp(u)) => {
                self.remote_port = SCRIPT_PORT;
                if u.socket.is_none() {
                    match stack.udp_bind(0) {
                        Ok(s) => {
                            u.socket = Some(s);
                            if let Ok(port) = stack.udp_local_port(s) {
                                self.local_port = port;
                            }
                        }
                        Err(e) => return Ok(Returned(Err(socket_errno(&e)))),
                    }
                }
                u.peer = Some(SocketAddr::new(IpAddr::V4(REMOTE_IP), SCRIPT_PORT));
                Ok(0)
            }
            ("read", Fd::Tcp(t)) => {
                let Some(c) = t.connection else {
                    return Ok(Returned(Err("ENOTCONN")));
                };
                let want = length;
                let mut buffer = vec![0u8; want];
                match stack.tcp_recv(c, &mut buffer) {
                    Ok(0) => match stack.tcp_end(c) {
                        Ok(Some(end)) => Err(end_errno(end)),
                        _ => match stack.tcp_state(c) {
                            Ok(TcpState::SynSent | TcpState::SynReceived) | Ok(_)
                                if t.nonblocking =>
                            {
                                Err("EAGAIN")
                            }
                            Ok(TcpState::Closed) => Ok(0),
                            _ => return Ok(WouldBlock),
                        },
                    },
                    Ok(n) => Ok(n as i64),
                    Err(SocketError::Finished) => Ok(0),
                    Err(e) => match stack.tcp_end(c) {
                        Ok(Some(end)) => Err(end_errno(end)),
                        _ => Err(socket_errno(&e)),
                    },
                }
            }
            ("read", Fd::Udp(u)) => {
                let Some(s) = u.socket else {
                    return Ok(Returned(Err("EAGAIN")));
                };
                let want = length;
                let mut buffer = vec![0u8; want.max(1)];
                match stack.udp_recv_from(s, &mut buffer) {
                    Ok(Some((n, from))) => {
                        self.remote_port = from.port();
                        Ok(n.min(want) as i64)
                    }
                    Ok(None) if u.nonblocking => Err("EAGAIN"),
                    Ok(None) => return Ok(WouldBlock),
                    Err(e) => Err(socket_errno(&e)),
                }
            }
            ("write", Fd::Tcp(t)) => {
                let Some(c) = t.connection else {
                    return Ok(Returned(Err("ENOTCONN")));
                };
                let total = length;
                let left = total - already_written.min(total);
                match stack.tcp_send(c, &self.zeros[..left]) {
                    Ok(n) if n == left => Ok(total as i64),
                    Ok(n) if t.nonblocking => {
                        if n + already_written == 0 {
                            Err("EAGAIN")
                        } else {
                            Ok((n + already_written) as i64)
                        }
                    }
                    Ok(n) => {
                        self.write_left_after = left - n;
                        return Ok(WouldBlock);
                    }
                    Err(e) => match stack.tcp_end(c) {
                        Ok(Some(TcpEnd::Reset)) => Err("ECONNRESET"),
                        Ok(Some(end)) => Err(end_errno(end)),
                        _ => match e {
                            SocketError::InvalidState(
                                TcpState::SynSent | TcpState::SynReceived,
                            ) if t.nonblocking => Err("EAGAIN"),
                            SocketError::InvalidState(_) => Err("EPIPE"),
                            other => Err(socket_errno(&other)),
                        },
                    },
                }
            }
            ("write", Fd::Udp(u)) => match (u.socket, u.peer) {
                (Some(s), Some(peer)) => {
                    let n = length;
                    match stack.udp_send_to(s, peer, &self.zeros[..n]) {
                        Ok(()) => Ok(n as i64),
                        Err(e) => Err(socket_errno(&e)),
                    }
                }
                _ => Err("ENOTCONN"),
            },
            ("shutdown", Fd::Tcp(t)) => {
                let how = match call.args.get(1) {
                    Some(Arg::Names(n)) => n[0].clone(),
                    _ => String::new(),
                };
                match (t.connection, how.as_str()) {
                    (None, _) => Err("ENOTCONN"),
                    (Some(_), "SHUT_RD") => Ok(0),
                    (Some(c), "SHUT_WR" | "SHUT_RDWR") => match stack.tcp_shutdown(c) {
                        Ok(()) => Ok(0),
                        Err(_) => Err("ENOTCONN"),
                    },
                    _ => return Err(unsupported(format!("shutdown how = {how:?}"))),
                }
            }
            ("close", _) => {
                let entry = self.fds.remove(&fd);
                let stack = &mut self.stack;
                let sockets: Vec<SocketId> = match entry {
                    Some(Fd::Tcp(t)) => t.listener.into_iter().chain(t.connection).collect(),
                    Some(Fd::Udp(u)) => u.socket.into_iter().collect(),
                    None => Vec::new(),
                };
                for s in sockets {
                    let _ = stack.close(s);
                }
                Ok(0)
            }
            (name, Fd::Udp(_)) => return Err(unsupported(format!("`{name}` on a UDP socket"))),
            (name, Fd::Tcp(_)) => return Err(unsupported(format!("`{name}` on this TCP socket"))),
        };
        if let Some((connection, nodelay)) = accepted {
            let new_fd = self.next_fd;
            self.next_fd += 1;
            self.fds.insert(
                new_fd,
                Fd::Tcp(TcpFd {
                    connection: Some(connection),
                    nodelay,
                    ..TcpFd::default()
                }),
            );
            return Ok(Returned(Ok(new_fd)));
        }
        Ok(Returned(result))
    }
}

fn end_errno(end: TcpEnd) -> &'static str {
    match end {
        TcpEnd::Refused => "ECONNREFUSED",
        TcpEnd::Reset => "ECONNRESET",
        TcpEnd::TimedOut => "ETIMEDOUT",
    }
}

fn socket_errno(error: &SocketError) -> &'static str {
    match error {
        SocketError::AddressInUse(_) => "EADDRINUSE",
        SocketError::NoFreePort => "EADDRINUSE",
        SocketError::Unaddressable(_) => "ENETUNREACH",
        SocketError::InvalidState(_) => "ENOTCONN",
        SocketError::BufferFull => "EAGAIN",
        SocketError::Finished => "EPIPE",
        SocketError::TooLarge(_) => "EINVAL",
        SocketError::UnknownSocket(_) | SocketError::WrongKind(..) => "EBADF",
        SocketError::Unsupported(_) => "EOPNOTSUPP",
    }
}

/// The window of times an event allows: `(start, end)`, in microseconds of the run.
fn resolve(time: TimeSpec, last_us: u64) -> (u64, u64) {
    let at = |relative: bool, us: u64| if relative { last_us + us } else { us };
    match time {
        TimeSpec::At { relative, start_us } => {
            let t = at(relative, start_us);
            (t, t)
        }
        TimeSpec::Range {
            relative,
            start_us,
            end_relative,
            end_us,
        }
        | TimeSpec::Blocking {
            relative,
            start_us,
            end_relative,
            end_us,
        } => {
            let start = at(relative, start_us);
            (start, at(end_relative, end_us).max(start))
        }
        TimeSpec::Any => (last_us, last_us + ANY_TIME_LIMIT_US),
    }
}

fn window_text(start_us: u64, end_us: u64) -> String {
    if start_us == end_us {
        format_time(start_us)
    } else {
        format!("{}~{}", format_time(start_us), format_time(end_us))
    }
}

fn render_expected(packet: &Packet) -> String {
    match packet {
        Packet::Tcp(tcp) => {
            let mut out = format!(
                "{} {}:{}({})",
                tcp.flags,
                tcp.seq,
                tcp.seq.wrapping_add(tcp.payload_len),
                tcp.payload_len
            );
            if let Some(ack) = tcp.ack {
                let _ = write!(out, " ack {ack}");
            }
            if let Some(win) = tcp.window {
                let _ = write!(out, " win {win}");
            }
            if let Some(urg) = tcp.urgent {
                let _ = write!(out, " urg {urg}");
            }
            if let Some(options) = &tcp.options {
                let _ = write!(out, " {}", render_option_list(options));
            }
            out
        }
        Packet::Udp { payload_len } => format!("udp ({payload_len})"),
        Packet::Icmp(icmp) => {
            let name = match icmp.icmp_type {
                0 => "echo_reply".to_string(),
                8 => "echo_request".to_string(),
                3 => format!("unreachable {}", unreachable_name(icmp.code)),
                4 => "source_quench".to_string(),
                11 => "time_exceeded".to_string(),
                t => format!("type {t}"),
            };
            match icmp.payload_len {
                Some(len) => format!("icmp {name} ({len})"),
                None => format!("icmp {name}"),
            }
        }
    }
}

fn unreachable_name(code: u8) -> &'static str {
    match code {
        0 => "net_unreachable",
        1 => "host_unreachable",
        2 => "protocol_unreachable",
        3 => "port_unreachable",
        4 => "frag_needed",
        5 => "source_route_failed",
        _ => "code_other",
    }
}

fn render_option_list(list: &OptionList) -> String {
    match list {
        OptionList::Any => "<...>".into(),
        OptionList::Exactly(options) => render_options(options),
        OptionList::AtLeast(options) => {
            let inner = render_options(options);
            let inner = inner.trim_start_matches('<').trim_end_matches('>');
            if inner.is_empty() {
                "<...>".into()
            } else {
                format!("<{inner},...>")
            }
        }
    }
}

fn render_options(options: &[TcpOption]) -> String {
    let parts: Vec<String> = options
        .iter()
        .map(|o| match o {
            TcpOption::Nop => "nop".into(),
            TcpOption::Eol => "eol".into(),
            TcpOption::Mss(m) => format!("mss {m}"),
            TcpOption::WindowScale(s) => format!("wscale {s}"),
            TcpOption::SackPermitted => "sackOK".into(),
            TcpOption::Sack(blocks) => {
                let blocks: Vec<String> = blocks.iter().map(|(l, r)| format!("{l}:{r}")).collect();
                format!("sack {}", blocks.join(" "))
            }
            TcpOption::Timestamp { value, echo } => format!("TS val {value} ecr {echo}"),
            TcpOption::BadLength { kind, length, data } => {
                let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
                format!("opt {kind} 0x{hex} len {length}")
            }
            TcpOption::Other { kind, data } => {
                let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
                if hex.is_empty() {
                    format!("opt {kind}")
                } else {
                    format!("opt {kind} 0x{hex}")
                }
            }
        })
        .collect();
    format!("<{}>", parts.join(","))
}

/// Whether the options the stack sent satisfy the script. Timestamp values are never
/// compared (the stack's clock is its own); SACK blocks are compared relative to the peer's
/// ISN. Without an option list the packet must carry no options.
fn options_match(expected: Option<&OptionList>, actual: &[TcpOption]) -> bool {
    let same = |a: &TcpOption, b: &TcpOption| match (a, b) {
        (TcpOption::Timestamp { .. }, TcpOption::Timestamp { .. }) => true,
        _ => a == b,
    };
    let is_padding = |o: &&TcpOption| matches!(o, TcpOption::Nop | TcpOption::Eol);
    match expected {
        None => actual.iter().all(|o| matches!(o, TcpOption::Eol)),
        Some(OptionList::Any) => true,
        Some(OptionList::Exactly(want)) => {
            // Trailing EOL padding the stack adds is not part of what it means.
            let trimmed: Vec<&TcpOption> = {
                let mut v: Vec<&TcpOption> = actual.iter().collect();
                while v.last().is_some_and(|o| matches!(o, TcpOption::Eol))
                    && !matches!(want.last(), Some(TcpOption::Eol))
                {
                    v.pop();
                }
                v
            };
            trimmed.len() == want.len() && trimmed.iter().zip(want).all(|(a, b)| same(a, b))
        }
        Some(OptionList::AtLeast(want)) => want
            .iter()
            .filter(|o| !is_padding(o))
            .all(|w| actual.iter().any(|a| same(a, w))),
    }
}

fn encode_option(option: &TcpOption, local_isn: u32, out: &mut Vec<u8>) {
    match option {
        TcpOption::Nop => out.push(1),
        TcpOption::Eol => out.push(0),
        TcpOption::Mss(m) => {
            out.extend_from_slice(&[2, 4]);
            out.extend_from_slice(&m.to_be_bytes());
        }
        TcpOption::WindowScale(s) => out.extend_from_slice(&[3, 3, *s]),
        TcpOption::SackPermitted => out.extend_from_slice(&[4, 2]),
        TcpOption::Sack(blocks) => {
            out.extend_from_slice(&[5, (2 + 8 * blocks.len()) as u8]);
            for (left, right) in blocks {
                out.extend_from_slice(&local_isn.wrapping_add(*left).to_be_bytes());
                out.extend_from_slice(&local_isn.wrapping_add(*right).to_be_bytes());
            }
        }
        TcpOption::Timestamp { value, echo } => {
            out.extend_from_slice(&[8, 10]);
            out.extend_from_slice(&value.to_be_bytes());
            out.extend_from_slice(&echo.to_be_bytes());
        }
        TcpOption::Other { kind, data } => {
            out.extend_from_slice(&[*kind, (2 + data.len()) as u8]);
            out.extend_from_slice(data);
        }
        TcpOption::BadLength { kind, length, data } => {
            out.extend_from_slice(&[*kind, *length]);
            out.extend_from_slice(data);
        }
    }
}

/// The options of a TCP header, SACK blocks made relative to `peer_isn`. A malformed
/// option ends the list with what was read.
fn decode_options(bytes: &TcpOptionBytes, peer_isn: u32) -> Vec<TcpOption> {
    let mut options = Vec::new();
    for option in bytes.iter() {
        options.push(match option {
            WireOption::Eol => TcpOption::Eol,
            WireOption::Nop => TcpOption::Nop,
            WireOption::Mss(m) => TcpOption::Mss(m),
            WireOption::WindowScale(s) => TcpOption::WindowScale(s),
            WireOption::SackPermitted => TcpOption::SackPermitted,
            WireOption::Sack(blocks) => TcpOption::Sack(
                blocks
                    .iter()
                    .map(|(l, r)| (l.wrapping_sub(peer_isn), r.wrapping_sub(peer_isn)))
                    .collect(),
            ),
            WireOption::Timestamp { value, echo } => TcpOption::Timestamp { value, echo },
            // A SACK of no blocks reads as one, as packetdrill writes it.
            WireOption::BadLength { kind: 5, data: [] } => TcpOption::Sack(Vec::new()),
            WireOption::Unknown { kind, data } | WireOption::BadLength { kind, data } => {
                TcpOption::Other {
                    kind,
                    data: data.to_vec(),
                }
            }
            WireOption::Malformed { .. } => break,
        });
    }
    options
}

/// The checksum of a TCP or UDP segment from the peer to the stack.
fn transport_checksum(
    source: Ipv4Addr,
    destination: Ipv4Addr,
    protocol: u8,
    segment: &[u8],
) -> u16 {
    let pseudo = pseudo_header_sum(source.into(), destination.into(), protocol, segment.len());
    !ones_complement_sum(pseudo, segment)
}

/// The gateway's reply when `decoded` is an ARP request for the gateway or the remote host.
fn arp_reply_for(decoded: &Decoded) -> Option<Vec<u8>> {
    let arp = decoded.arp().filter(|a| a.operation == Arp::REQUEST)?;
    let a = arp.addresses?;
    if a.target_ip != GATEWAY_IP && a.target_ip != REMOTE_IP {
        return None;
    }
    Some(arp_frame(
        2,
        PEER_MAC,
        a.target_ip,
        a.sender_mac,
        a.sender_ip,
    ))
}

fn arp_frame(
    operation: u16,
    sender_mac: MacAddr,
    sender_ip: Ipv4Addr,
    target_mac: MacAddr,
    target_ip: Ipv4Addr,
) -> Vec<u8> {
    let mut frame = Vec::with_capacity(42);
    let destination = if operation == 1 {
        [0xff; 6]
    } else {
        target_mac.0
    };
    frame.extend_from_slice(&destination);
    frame.extend_from_slice(&sender_mac.0);
    frame.extend_from_slice(&0x0806u16.to_be_bytes());
    frame.extend_from_slice(&[0, 1, 8, 0, 6, 4]);
    frame.extend_from_slice(&operation.to_be_bytes());
    frame.extend_from_slice(&sender_mac.0);
    frame.extend_from_slice(&sender_ip.octets());
    frame.extend_from_slice(&target_mac.0);
    frame.extend_from_slice(&target_ip.octets());
    frame
}

/// The IPv4 packet of a frame the stack sent, as matching reads it.
struct Ipv4Packet {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    payload: std::ops::Range<usize>,
}

/// The frame's IPv4 packet when it is sound: an IPv4 EtherType, and every byte the header
/// declares present.
fn whole_ipv4(decoded: &Decoded) -> Option<Ipv4Packet> {
    if decoded.ethernet?.ether_type != 0x0800 {
        return None;
    }
    let ip = decoded.ip().filter(|ip| ip.complete)?;
    match (ip.src, ip.dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => Some(Ipv4Packet {
            src,
            dst,
            protocol: ip.protocol,
            payload: ip.payload.clone(),
        }),
        _ => None,
    }
}
