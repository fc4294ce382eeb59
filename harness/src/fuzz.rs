//! Fuzz entry points: each takes the fuzzer's bytes, drives one part of wirelab or of the stack under test, and panics only when a property is broken.
//!
//! The targets in `fuzz/fuzz_targets/` are one-liners calling these functions, and
//! `harness/tests/fuzz_regressions.rs` replays the committed corpus and every minimized crash
//! through them under `cargo test`. Everything here is deterministic: the same bytes take the
//! same path, so a crash reproduces from its file alone.
//!
//! These are the only functions of the harness that panic on purpose: a panic is how a broken
//! property reaches the fuzzer. Every input that breaks nothing returns normally.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use backends::smoltcp::SmoltcpStack;
use judge::oracle::Violation;
use sim::apps::{AppConfig, TcpFinish};
use sim::config::{
    CaptureConfig, CongestionControlConfig, Direction, EventAction, HostConfig, Impairments,
    LossModel, ScheduledEvent, SegmentConfig, SegmentKind, TraceLevel, WorldConfig,
};
use sim::trace::{Trace, TraceKind, TraceNames};
use sim::world::{Outcome, RunOptions};
use stack::{FrameQueue, MacAddr, SocketId, Stack, StackConfig};

/// `decode_frame` target: the one-line decoder and the checksum verifier take any bytes.
pub fn decode_frame(data: &[u8]) {
    let mut line = String::new();
    wire::decode::decode_frame(data, &mut line);
    let _ = wire::decode::verify_checksums(data);
}

/// The RFC 1071 ones'-complement sum of `data` (without the final complement), written the
/// plainest way: big-endian 16-bit words, an odd last byte padded with a zero, carries folded
/// back in. It is the reference the three implementations are held to.
pub fn rfc1071_sum(data: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut i = 0;
    while i < data.len() {
        let high = u64::from(data[i]) << 8;
        let low = data.get(i + 1).map_or(0, |b| u64::from(*b));
        sum += high | low;
        i += 2;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// `checksum_agreement` target: smoltcp's, etherparse's and wirelab's own ones'-complement
/// sums agree with [`rfc1071_sum`] on the data, and summing the data in two parts split at an
/// even offset (chosen by the first byte) gives the same result as summing it whole.
///
/// The input is cut to 65,535 bytes, the largest IP packet: smoltcp sums into a `u32`
/// without folding, which is only meant for packet-sized data.
pub fn checksum_agreement(data: &[u8]) {
    let data = &data[..data.len().min(65_535)];
    let reference = rfc1071_sum(data);
    let smoltcp = smoltcp::wire::checksum::data(data);
    // Zero and 0xffff are both "zero" in ones' complement; an all-zero input sums to 0 in
    // every implementation, so the values are compared exactly.
    assert_eq!(
        smoltcp,
        reference,
        "smoltcp's checksum::data disagrees with RFC 1071 on {} bytes",
        data.len()
    );
    // etherparse sums native-endian words and leaves the result in native byte order; its
    // callers (`Ipv4Header::calc_header_checksum`) finish with `to_be()`, and so does this.
    let etherparse = etherparse::checksum::Sum16BitWords::new()
        .add_slice(data)
        .ones_complement()
        .to_be();
    assert_eq!(
        etherparse,
        !reference,
        "etherparse's Sum16BitWords disagrees with RFC 1071 on {} bytes",
        data.len()
    );
    let wirelab = wire::decode::ones_complement_sum(0, data);
    assert_eq!(
        wirelab,
        reference,
        "wirelab's ones_complement_sum disagrees with RFC 1071 on {} bytes",
        data.len()
    );
    if let Some(first) = data.first() {
        let split = (usize::from(*first) * 2).min(data.len() & !1);
        let (a, b) = data.split_at(split);
        let combined = smoltcp::wire::checksum::combine(&[
            smoltcp::wire::checksum::data(a),
            smoltcp::wire::checksum::data(b),
        ]);
        // Both are folded sums of the same words: zero only when every word is zero, and
        // otherwise the one value in 1..=0xffff congruent to the sum modulo 0xffff.
        assert_eq!(
            combined,
            reference,
            "smoltcp: data({}) and data({}) combined differ from data() of the whole",
            a.len(),
            b.len()
        );
    }
}

/// `scenario_parse` target: a scenario file, however malformed, is an `Ok` or an `Err`.
pub fn scenario_parse(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = scenario::format::parse(&text, Path::new("fuzz/scenario.toml"), None, fuzz_stacks());
}

/// `pcap_read` target: the capture reader takes any bytes.
pub fn pcap_read(data: &[u8]) {
    let _ = wire::capture::read_capture(data);
}

/// Reads the fuzzer's bytes as a stream of small numbers; past the end every read is zero, so
/// every input, even the empty one, describes something.
struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((first, rest)) => {
                self.data = rest;
                *first
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        for b in &mut bytes {
            *b = self.u8();
        }
        u64::from_le_bytes(bytes)
    }

    fn take(&mut self, len: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(len.min(self.data.len()));
        self.data = rest;
        head
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// One of `choices`, picked by the next byte.
    fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[usize::from(self.u8()) % choices.len()]
    }

    /// A probability in `0..=max`, in 256 steps.
    fn probability(&mut self, max: f64) -> f64 {
        f64::from(self.u8()) / 255.0 * max
    }
}

/// The host `smoltcp_ingress` feeds: the address the golden captures give their second host.
pub const INGRESS_HOST_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x02]);
/// That host's IPv4 address.
pub const INGRESS_HOST_IPV4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// That host's IPv6 address.
pub const INGRESS_HOST_IPV6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
/// The peer the injected frames come from: the golden captures' first host.
pub const INGRESS_PEER_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]);
/// The peer's IPv4 address.
pub const INGRESS_PEER_IPV4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// The peer's IPv6 address.
pub const INGRESS_PEER_IPV6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

/// Bytes of the `smoltcp_ingress` input header: seed (8, little endian), TCP listening port
/// (2, big endian), UDP port (2, big endian), buffer size choice (1).
pub const INGRESS_HEADER_BYTES: usize = 13;

/// Flags of a record's control byte in a `smoltcp_ingress` input. With all clear (the
/// default) the frame is addressed to the host from the peer and its checksums are fixed, so
/// that mutated frames get past the first checks and into TCP.
pub mod ingress_flags {
    /// Leave the MAC and IP addresses (and ARP fields) as they are.
    pub const RAW_ADDRESSES: u8 = 0x01;
    /// Leave the checksums as they are.
    pub const RAW_CHECKSUMS: u8 = 0x02;
    /// Send to the broadcast MAC address instead of the host's.
    pub const BROADCAST: u8 = 0x04;
    /// After this frame, the host's application half-closes every connection (FIN).
    pub const SHUTDOWN: u8 = 0x08;
    /// After this frame, the host's application aborts every connection (RST).
    pub const ABORT: u8 = 0x10;
    /// After this frame, the host's application stops echoing received bytes.
    pub const STOP_ECHO: u8 = 0x20;
}

/// The virtual time a record's advance byte adds: quadratic, so small values give fine steps
/// and 255 is 13 s, past smoltcp's retransmission and keep-alive timers.
pub fn ingress_advance_us(advance: u8) -> u64 {
    let a = u64::from(advance);
    a * a * 200
}

/// The advance byte whose delay is the smallest at least `delay_us` (255 at most).
pub fn ingress_advance_byte(delay_us: u64) -> u8 {
    (0..=255u8)
        .find(|a| ingress_advance_us(*a) >= delay_us)
        .unwrap_or(255)
}

/// The server side of `smoltcp_ingress`: accepts connections, echoes what arrives (TCP and
/// UDP), and closes as the records ask.
struct IngressApp {
    listener: Option<SocketId>,
    udp: Option<SocketId>,
    connections: Vec<SocketId>,
    echo: bool,
    buf: Vec<u8>,
}

impl IngressApp {
    fn act(&mut self, stack: &mut dyn Stack) -> bool {
        let mut acted = false;
        if let Some(listener) = self.listener {
            // The backlog is bounded, so this loop is too; the cap makes sure of it.
            for _ in 0..16 {
                match stack.tcp_accept(listener) {
                    Ok(Some(socket)) => {
                        self.connections.push(socket);
                        acted = true;
                    }
                    _ => break,
                }
            }
        }
        for &socket in &self.connections {
            let n = stack.tcp_recv(socket, &mut self.buf).unwrap_or(0);
            if n > 0 {
                acted = true;
                if self.echo {
                    let _ = stack.tcp_send(socket, &self.buf[..n]);
                }
            }
        }
        if let Some(udp) = self.udp {
            for _ in 0..16 {
                match stack.udp_recv_from(udp, &mut self.buf) {
                    Ok(Some((n, from))) => {
                        acted = true;
                        let payload = self.buf[..n].to_vec();
                        let _ = stack.udp_send_to(udp, from, &payload);
                    }
                    _ => break,
                }
            }
        }
        acted
    }

    fn control(&mut self, flags: u8, stack: &mut dyn Stack) {
        if flags & ingress_flags::STOP_ECHO != 0 {
            self.echo = false;
        }
        for &socket in &self.connections {
            if flags & ingress_flags::ABORT != 0 {
                let _ = stack.tcp_abort(socket);
            } else if flags & ingress_flags::SHUTDOWN != 0 {
                let _ = stack.tcp_shutdown(socket);
            }
        }
    }
}

/// Writes the ones' complement of `sum` (with 0 sent as 0xffff where `no_zero`) at `at`.
fn put_checksum(bytes: &mut [u8], at: usize, sum: u16, no_zero: bool) {
    let mut value = !sum;
    if no_zero && value == 0 {
        value = 0xffff;
    }
    if let Some(field) = bytes.get_mut(at..at + 2) {
        field.copy_from_slice(&value.to_be_bytes());
    }
}

/// Recomputes the transport checksum of `payload` (TCP, UDP, ICMP, ICMPv6) given the
/// pseudo-header sum; `pseudo` is `None` for ICMPv4, which has none.
fn fix_transport_checksum(protocol: u8, payload: &mut [u8], pseudo: Option<u32>) {
    let (at, no_zero) = match protocol {
        6 => (16, false),
        17 => (6, true),
        1 | 58 => (2, false),
        _ => return,
    };
    if payload.len() < at + 2 || (protocol == 1) == pseudo.is_some() {
        return;
    }
    payload[at..at + 2].copy_from_slice(&[0, 0]);
    let initial = pseudo.unwrap_or(0);
    let sum = wire::decode::ones_complement_sum(initial, payload);
    put_checksum(payload, at, sum, no_zero);
}

fn words_sum(bytes: &[u8]) -> u32 {
    bytes
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum()
}

/// Makes a fuzzer's frame count: addressed from the peer to the host (unless `flags` say
/// otherwise) and with correct checksums, so that the stack does not drop it on the first
/// check. Never panics, whatever the bytes.
fn patch_frame(frame: &mut [u8], flags: u8) {
    if frame.len() < 14 {
        return;
    }
    if flags & ingress_flags::RAW_ADDRESSES == 0 {
        let dst = if flags & ingress_flags::BROADCAST != 0 {
            MacAddr::BROADCAST
        } else {
            INGRESS_HOST_MAC
        };
        frame[0..6].copy_from_slice(&dst.0);
        frame[6..12].copy_from_slice(&INGRESS_PEER_MAC.0);
    }
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let (_, packet) = frame.split_at_mut(14);
    match ethertype {
        0x0806 if flags & ingress_flags::RAW_ADDRESSES == 0 && packet.len() >= 28 => {
            // Ethernet/IPv4 ARP: the peer is the sender, the host the target.
            packet[8..14].copy_from_slice(&INGRESS_PEER_MAC.0);
            packet[14..18].copy_from_slice(&INGRESS_PEER_IPV4.octets());
            if u16::from_be_bytes([packet[6], packet[7]]) == 2 {
                packet[18..24].copy_from_slice(&INGRESS_HOST_MAC.0);
            }
            packet[24..28].copy_from_slice(&INGRESS_HOST_IPV4.octets());
        }
        0x0800 if packet.len() >= 20 => {
            let header_len = usize::from(packet[0] & 0x0f) * 4;
            if flags & ingress_flags::RAW_ADDRESSES == 0 {
                packet[12..16].copy_from_slice(&INGRESS_PEER_IPV4.octets());
                // Broadcast and multicast destinations are kept: they reach the host anyway.
                if packet[16] < 224 {
                    packet[16..20].copy_from_slice(&INGRESS_HOST_IPV4.octets());
                }
            }
            if flags & ingress_flags::RAW_CHECKSUMS != 0 || header_len < 20 {
                return;
            }
            if let Some(header) = packet.get_mut(..header_len) {
                header[10..12].copy_from_slice(&[0, 0]);
                let sum = wire::decode::ones_complement_sum(0, header);
                put_checksum(header, 10, sum, false);
            } else {
                return;
            }
            let fragmented = packet[6] & 0x3f != 0 || packet[7] != 0;
            let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
            let end = total.min(packet.len());
            if fragmented || end < header_len {
                return;
            }
            let protocol = packet[9];
            let pseudo = (protocol != 1).then(|| {
                words_sum(&packet[12..20]) + u32::from(protocol) + (end - header_len) as u32
            });
            fix_transport_checksum(protocol, &mut packet[header_len..end], pseudo);
        }
        0x86dd if packet.len() >= 40 => {
            if flags & ingress_flags::RAW_ADDRESSES == 0 {
                packet[8..24].copy_from_slice(&INGRESS_PEER_IPV6.octets());
                if packet[24] != 0xff {
                    packet[24..40].copy_from_slice(&INGRESS_HOST_IPV6.octets());
                }
            }
            let len = usize::from(u16::from_be_bytes([packet[4], packet[5]]));
            let end = (40 + len).min(packet.len());
            if flags & ingress_flags::RAW_ADDRESSES == 0 && packet[6] == 58 {
                patch_ndp_options(&mut packet[40..end]);
            }
            if flags & ingress_flags::RAW_CHECKSUMS != 0 {
                return;
            }
            let protocol = packet[6];
            let pseudo = words_sum(&packet[8..40]) + u32::from(protocol) + (end - 40) as u32;
            fix_transport_checksum(protocol, &mut packet[40..end], Some(pseudo));
        }
        _ => {}
    }
}

/// Points the link-layer address options of an NDP message (router and neighbor solicitations
/// and advertisements, redirects) at the peer, as ARP's sender is: the host answers the
/// address the message gives, and a fuzzer's random one would only lose the answer.
fn patch_ndp_options(icmp: &mut [u8]) {
    let fixed = match icmp.first() {
        Some(133) => 8,
        Some(134) => 16,
        Some(135 | 136) => 24,
        Some(137) => 40,
        _ => return,
    };
    let mut at = fixed;
    // Each option is at least 8 bytes long, so this walks at most len/8 options.
    while let (Some(&kind), Some(&units)) = (icmp.get(at), icmp.get(at + 1)) {
        let len = usize::from(units) * 8;
        if len == 0 {
            return;
        }
        if kind == 1 || kind == 2 {
            if let Some(mac) = icmp.get_mut(at + 2..at + 8) {
                mac.copy_from_slice(&INGRESS_PEER_MAC.0);
            }
        }
        at += len;
    }
}

/// Whether smoltcp's own parsers, as its interface uses them, take this TCP frame: Ethernet,
/// then IPv4 or IPv6 with TCP as the next header (smoltcp walks no extension header but
/// hop-by-hop, and is built without fragment reassembly), then `TcpRepr::parse`, which
/// refuses malformed options, port 0 and flag combinations. etherparse, and so the oracles,
/// take more (the kinds in the "Differential findings" of fuzz/FINDINGS.md); a segment the
/// host never took must not count as sent.
fn smoltcp_takes_tcp(frame: &[u8]) -> bool {
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet,
        Ipv6Repr, TcpPacket, TcpRepr,
    };
    let caps = ChecksumCapabilities::default();
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return false;
    };
    let tcp_takes = |payload: &[u8], src: IpAddress, dst: IpAddress| {
        TcpPacket::new_checked(payload)
            .is_ok_and(|tcp| TcpRepr::parse(&tcp, &src, &dst, &caps).is_ok())
    };
    match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
                return false;
            };
            match Ipv4Repr::parse(&ip, &caps) {
                Ok(repr) if repr.next_header == IpProtocol::Tcp => tcp_takes(
                    ip.payload(),
                    IpAddress::Ipv4(repr.src_addr),
                    IpAddress::Ipv4(repr.dst_addr),
                ),
                _ => false,
            }
        }
        EthernetProtocol::Ipv6 => {
            let Ok(ip) = Ipv6Packet::new_checked(eth.payload()) else {
                return false;
            };
            match Ipv6Repr::parse(&ip) {
                Ok(repr) if repr.next_header == IpProtocol::Tcp => tcp_takes(
                    ip.payload(),
                    IpAddress::Ipv6(repr.src_addr),
                    IpAddress::Ipv6(repr.dst_addr),
                ),
                _ => false,
            }
        }
        _ => false,
    }
}

/// Bit set in the frame ids of frames the host emitted, to tell them from injected ones.
const EGRESS_ID: u64 = 1 << 63;

/// The host of `smoltcp_ingress` with its application, clock and trace.
struct Ingress {
    host: SmoltcpStack,
    app: IngressApp,
    now_us: u64,
    egress: FrameQueue,
    trace: Trace,
    next_id: u64,
}

impl Ingress {
    /// Polls the host now, lets the application act and polls again while anything changed
    /// (a bounded number of times), and records what the host emitted.
    fn poll(&mut self) {
        for _ in 0..8 {
            let changed = self.host.poll(self.now_us, &mut self.egress);
            for frame in self.egress.iter() {
                self.trace
                    .frame(self.now_us, 0, 0, EGRESS_ID | self.next_id, frame);
                self.next_id += 1;
            }
            self.egress.clear();
            let acted = self.app.act(&mut self.host);
            if !changed && !acted {
                break;
            }
        }
    }

    /// Runs the host's own timers up to `until_us`: at most `max_polls` polls at the times
    /// it asks for; then the clock is at `until_us`.
    fn run_until(&mut self, until_us: u64, max_polls: u32) {
        for _ in 0..max_polls {
            match self.host.poll_at(self.now_us) {
                Some(at) if at <= until_us => {
                    self.now_us = at.max(self.now_us);
                    self.poll();
                }
                _ => break,
            }
        }
        self.now_us = until_us.max(self.now_us);
    }

    /// Hands one injected frame to the host now and lets it react.
    fn inject(&mut self, frame: &[u8], flags: u8) {
        // The oracles learn what the peer sent only from frames the host can have taken.
        let for_host = frame.len() >= 14
            && (frame[0..6] == INGRESS_HOST_MAC.0 || frame[0] & 1 == 1)
            && !matches!(
                wire::decode::verify_checksums(frame),
                wire::decode::ChecksumStatus::Invalid { .. }
            )
            && (tcp_of(frame).is_none() || smoltcp_takes_tcp(frame));
        if for_host {
            self.trace.frame(self.now_us, 0, 1, self.next_id, frame);
            self.next_id += 1;
        }
        self.host.receive(frame);
        self.app.control(flags, &mut self.host);
        self.poll();
    }
}

/// Rules `smoltcp_ingress` does not hold the host to. `unowned-mac`: the peer is the fuzzer,
/// which may claim any MAC address (a raw Ethernet source, an ARP sender, an NDP link-layer
/// option), and a host that answers the address it was given does right. `suppressed` only
/// counts violations past the cap.
const INGRESS_IGNORED_RULES: [&str; 2] = ["unowned-mac", "suppressed"];

/// `smoltcp_ingress` target: a smoltcp host (10.0.0.2, 2001:db8::2, listening on a TCP port,
/// with a UDP socket bound, answering pings) receives the input as frames at advancing
/// virtual times. It must not panic, and every frame it emits must pass the trace oracles.
///
/// Input: a [`INGRESS_HEADER_BYTES`]-byte header, then records of a control byte
/// ([`ingress_flags`]), an advance byte ([`ingress_advance_us`]), a big-endian length (cut
/// to 1514) and that many bytes of Ethernet frame. The injected frames are in the trace too
/// (from host 1), so the TCP oracles know what the peer sent; those the host drops for a bad
/// checksum or a foreign address are left out, and only violations on frames the host
/// emitted count.
pub fn smoltcp_ingress(data: &[u8]) {
    let mut input = Bytes { data };
    let seed = input.u64();
    let tcp_port = input.u16().max(1);
    let udp_port = input.u16().max(1);
    let buffer_bytes = match input.u8() {
        0 => 64 * 1024,
        n => usize::from(n) * 64,
    };
    let mut config = StackConfig::new("host", INGRESS_HOST_MAC, seed);
    config.ipv4 = Some((INGRESS_HOST_IPV4, 24));
    config.ipv6 = Some((INGRESS_HOST_IPV6, 64));
    config.tcp_rx_buffer_bytes = buffer_bytes;
    config.tcp_tx_buffer_bytes = buffer_bytes;
    config.datagram_queue_packets = 8;
    config.datagram_queue_bytes = 16 * 1024;
    let mut host = SmoltcpStack::new(config);
    let app = IngressApp {
        listener: host.tcp_listen(tcp_port, 4).ok(),
        udp: if udp_port == tcp_port {
            None
        } else {
            host.udp_bind(udp_port).ok()
        },
        connections: Vec::new(),
        echo: true,
        buf: vec![0; 2048],
    };
    let mut ingress = Ingress {
        host,
        app,
        now_us: 0,
        egress: FrameQueue::new(),
        trace: Trace::new(TraceLevel::Frames),
        next_id: 0,
    };
    let mut frame = Vec::with_capacity(1514);
    // A bound on the records, so that an input of many empty records stays fast.
    for _ in 0..256 {
        if input.is_empty() {
            break;
        }
        let flags = input.u8();
        let advance = ingress_advance_us(input.u8());
        let len = usize::from(input.u16()).min(1514);
        frame.clear();
        frame.extend_from_slice(input.take(len));
        patch_frame(&mut frame, flags);
        ingress.run_until(ingress.now_us + advance, 64);
        ingress.inject(&frame, flags);
    }
    // Let retransmissions, keep-alives and closing timers run out for a while.
    ingress.run_until(ingress.now_us + 120_000_000, 64);
    let names = TraceNames {
        hosts: vec!["host".into(), "peer".into()],
        segments: vec!["lan".into()],
    };
    let violations: Vec<Violation> = judge::oracle::check(
        &ingress.trace,
        &names,
        &[INGRESS_HOST_MAC, INGRESS_PEER_MAC],
    )
    .into_iter()
    .filter(|v| v.frame_id & EGRESS_ID != 0)
    .filter(|v| !INGRESS_IGNORED_RULES.contains(&v.rule))
    .filter(|v| !is_known_finding(v, &ingress.trace))
    .collect();
    if let Some(first) = violations.first() {
        panic!(
            "smoltcp_ingress: the host emitted a frame that breaks a trace oracle ({} violations): {first}",
            violations.len()
        );
    }
}

/// The addresses of host `i` of a `simulation` world.
fn sim_ipv4(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, i as u8 + 1)
}

fn sim_ipv6(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16 + 1)
}

fn sim_impairments(input: &mut Bytes<'_>) -> Impairments {
    let which = input.u8();
    let mut imp = Impairments::default();
    if which & 0x01 != 0 {
        imp.latency_us = u64::from(input.u16());
    }
    if which & 0x02 != 0 {
        imp.jitter_us = u64::from(input.u16());
    }
    if which & 0x04 != 0 {
        imp.loss = if input.u8() & 1 == 0 {
            LossModel::Independent {
                probability: input.probability(0.5),
            }
        } else {
            LossModel::GilbertElliott {
                good_to_bad_probability: input.probability(0.5),
                bad_to_good_probability: input.probability(1.0),
                loss_in_good_probability: input.probability(0.2),
                loss_in_bad_probability: input.probability(1.0),
            }
        };
    }
    if which & 0x08 != 0 {
        imp.duplicate_probability = input.probability(0.5);
    }
    if which & 0x10 != 0 {
        imp.reorder_probability = input.probability(0.5);
        imp.reorder_delay_us = u64::from(input.u16());
    }
    if which & 0x20 != 0 {
        imp.corrupt_probability = input.probability(0.5);
    }
    if which & 0x40 != 0 {
        imp.bandwidth_bits_per_s =
            Some(input.pick(&[64_000u64, 1_000_000, 10_000_000, 1_000_000_000]));
        imp.queue_limit_bytes = input.pick(&[None, Some(1_514u64), Some(8_000), Some(64_000)]);
    }
    if which & 0x80 != 0 {
        imp.mtu_bytes = Some(input.pick(&[576u32, 1_280, 1_400, 1_500]));
    }
    imp
}

/// The simulated time a `simulation` world may run, and its step bound: short enough that one
/// execution takes milliseconds, long enough for SYN retransmissions and a small transfer.
pub const SIMULATION_TIME_LIMIT_US: u64 = 20_000_000;
/// See [`SIMULATION_TIME_LIMIT_US`].
pub const SIMULATION_STEP_LIMIT: u64 = 20_000;

/// Builds the small world a `simulation` input describes: 2-4 hosts on one segment, their
/// link impairments, scheduled events and applications. Every input gives a world; most are
/// valid, and those that are not are turned down by validation, which is fine too.
pub fn simulation_world(data: &[u8]) -> (WorldConfig, Vec<AppConfig>) {
    let mut input = Bytes { data };
    let mut config = WorldConfig::new(u64::from(input.u16()));
    config.time_limit_us = SIMULATION_TIME_LIMIT_US;
    config.step_limit = SIMULATION_STEP_LIMIT;
    config.capture = CaptureConfig {
        enabled: false,
        ..CaptureConfig::default()
    };
    config.trace = TraceLevel::Frames;
    let kind = input.pick(&[
        SegmentKind::Switch,
        SegmentKind::Hub,
        SegmentKind::PointToPoint,
    ]);
    let hosts = if kind == SegmentKind::PointToPoint {
        2
    } else {
        2 + usize::from(input.u8() % 3)
    };
    config.segments = vec![SegmentConfig {
        name: "lan".into(),
        kind,
    }];
    let names: Vec<String> = (0..hosts).map(|i| format!("h{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let options = input.u8();
        let mut host = HostConfig::new(name.clone(), "lan");
        host.ipv4 = Some(sim::config::Cidr {
            addr: IpAddr::V4(sim_ipv4(i)),
            prefix_len: 24,
        });
        if options & 0x01 != 0 {
            host.ipv6 = Some(sim::config::Cidr {
                addr: IpAddr::V6(sim_ipv6(i)),
                prefix_len: 64,
            });
        }
        host.congestion_control = [
            CongestionControlConfig::None,
            CongestionControlConfig::Reno,
            CongestionControlConfig::Cubic,
        ][usize::from(options >> 1 & 3) % 3];
        host.tcp_buffer_bytes = [65_536u32, 1_024, 4_096, 16_384][usize::from(options >> 3 & 3)];
        host.ip_mtu_bytes = [1_500u32, 576, 1_280, 9_000][usize::from(options >> 5 & 3)];
        if options & 0x80 != 0 {
            host.link.to_segment = sim_impairments(&mut input);
            host.link.from_segment = sim_impairments(&mut input);
        }
        config.hosts.push(host);
    }
    let host_of = |b: u8| names[usize::from(b) % hosts].clone();
    for _ in 0..input.u8() % 5 {
        let at_us = u64::from(input.u16()) * 200;
        let action = match input.u8() % 5 {
            0 => EventAction::LinkDown {
                host: host_of(input.u8()),
            },
            1 => EventAction::LinkUp {
                host: host_of(input.u8()),
            },
            2 => {
                let mask = input.u8();
                let group: Vec<String> = (0..hosts)
                    .filter(|i| mask >> i & 1 != 0)
                    .map(|i| names[i].clone())
                    .collect();
                EventAction::Partition {
                    segment: "lan".into(),
                    groups: vec![group],
                }
            }
            3 => EventAction::Heal {
                segment: "lan".into(),
            },
            _ => EventAction::SetImpairments {
                host: host_of(input.u8()),
                direction: input.pick(&[Direction::ToSegment, Direction::FromSegment]),
                impairments: sim_impairments(&mut input),
            },
        };
        config.events.push(ScheduledEvent { at_us, action });
    }
    let mut apps = Vec::new();
    let mut port = 5000u16;
    for _ in 0..1 + input.u8() % 4 {
        let kind = input.u8();
        let from = usize::from(input.u8()) % hosts;
        let to = (from + 1 + usize::from(input.u8()) % (hosts - 1)) % hosts;
        let v6 = kind & 0x80 != 0 && config.hosts[from].ipv6.is_some();
        let v6 = v6 && config.hosts[to].ipv6.is_some();
        let target_ip = if v6 {
            IpAddr::V6(sim_ipv6(to))
        } else {
            IpAddr::V4(sim_ipv4(to))
        };
        port += 1;
        let start_us = u64::from(input.u16()) * 50;
        match kind % 3 {
            0 => apps.push(AppConfig::Ping {
                host: names[from].clone(),
                target: target_ip,
                count: 1 + u32::from(input.u8() % 4),
                interval_us: 100_000,
                payload_bytes: u32::from(input.u16() % 2_000),
                start_us,
                timeout_us: 500_000,
            }),
            1 => {
                apps.push(AppConfig::UdpEchoServer {
                    host: names[to].clone(),
                    port,
                });
                apps.push(AppConfig::UdpPingPong {
                    host: names[from].clone(),
                    target: SocketAddr::new(target_ip, port),
                    count: 1 + u32::from(input.u8() % 8),
                    payload_bytes: u32::from(input.u16() % 2_000),
                    start_us,
                    timeout_us: 500_000,
                });
            }
            _ => {
                let options = input.u8();
                let send_bytes = u64::from(input.u16()) % 20_000;
                apps.push(AppConfig::TcpServer {
                    host: names[to].clone(),
                    port,
                    echo: options & 0x01 != 0,
                    backlog: 1 + u32::from(options >> 1 & 3),
                    reply_bytes: if options & 0x08 != 0 { 3_000 } else { 0 },
                    read_from_us: if options & 0x10 != 0 { 2_000_000 } else { 0 },
                    close_at_us: (options & 0x20 != 0).then_some(3_000_000),
                });
                let finish = input.pick(&[TcpFinish::Close, TcpFinish::Abort, TcpFinish::Leave]);
                let extra = input.u8();
                apps.push(AppConfig::TcpClient {
                    host: names[from].clone(),
                    target: SocketAddr::new(target_ip, port),
                    start_us,
                    send_bytes,
                    expect_echo: options & 0x01 != 0 && extra & 0x01 != 0,
                    expect_bytes: if options & 0x08 != 0 && extra & 0x02 != 0 {
                        3_000
                    } else {
                        0
                    },
                    keepalive_us: (extra & 0x04 != 0).then_some(500_000),
                    hold_until_us: (extra & 0x08 != 0).then_some(1_000_000),
                    finish,
                    timeout_us: (extra & 0x10 != 0).then_some(5_000_000),
                });
            }
        }
    }
    (config, apps)
}

/// The TCP segment of a frame, if it carries one.
fn tcp_of(frame: &[u8]) -> Option<etherparse::TcpSlice<'_>> {
    match etherparse::SlicedPacket::from_ethernet(frame)
        .ok()?
        .transport?
    {
        etherparse::TransportSlice::Tcp(tcp) => Some(tcp),
        _ => None,
    }
}

/// Whether a violation is one of the three known ones, which the `simulation` target lets
/// pass (all in `fuzz/FINDINGS.md`; `harness/tests/fuzz_regressions.rs` checks that their
/// regression inputs still show them):
///
/// - smoltcp 0.14's fast retransmission ignores the peer's window: it resends
///   `min(MSS, bytes queued)` from SND.UNA (`pending_fast_retransmit` in `dispatch`), so a
///   peer that offered less than an MSS gets data past its window (`tcp-beyond-window`).
///   Matched as a segment that starts at the peer's latest acknowledgement and repeats a
///   sequence number its sender already sent, i.e. a retransmission from SND.UNA;
/// - smoltcp answers a SYN-SENT timeout with a RST-ACK whose acknowledgement number is 0
///   (`tcp-ack-beyond-sent`), as `scenarios/tcp/connect_timeout_syn_backoff.toml` records;
/// - the oracle's gap for segments of an earlier incarnation of a 4-tuple: an old duplicate
///   SYN that reaches a listener after the connection closed is rightly answered with a
///   SYN-ACK, and an ACK held back by reordering can reach the segment after a new
///   connection started. The oracle then checks their acknowledgements against the new
///   connection. Such a `tcp-ack-beyond-sent` acknowledges sequence space the other side did
///   send earlier on the same ports (a SYN, data or a FIN), which is what this checks;
///   an acknowledgement of something never sent on those ports is still reported.
pub fn is_known_finding(violation: &Violation, trace: &Trace) -> bool {
    if violation.rule != "tcp-ack-beyond-sent" && violation.rule != "tcp-beyond-window" {
        return false;
    }
    let frames: Vec<(u64, &[u8])> = trace
        .events()
        .iter()
        .filter_map(|event| match &event.kind {
            TraceKind::Frame {
                frame_id, bytes, ..
            } => Some((*frame_id, trace.frame_bytes(bytes))),
            _ => None,
        })
        .collect();
    let Some(at) = frames.iter().position(|(id, _)| *id == violation.frame_id) else {
        return false;
    };
    let Some(tcp) = tcp_of(frames[at].1) else {
        return false;
    };
    if violation.rule == "tcp-beyond-window" {
        return is_retransmission_from_snd_una(&tcp, &frames[..at]);
    }
    if tcp.rst() && tcp.ack() && !tcp.syn() && tcp.acknowledgment_number() == 0 {
        return true;
    }
    let ack = tcp.acknowledgment_number();
    frames[..at].iter().any(|(_, frame)| {
        tcp_of(frame).is_some_and(|sent| {
            let len = sent.payload().len() as u32 + u32::from(sent.syn()) + u32::from(sent.fin());
            let acked = ack.wrapping_sub(sent.sequence_number());
            sent.source_port() == tcp.destination_port()
                && sent.destination_port() == tcp.source_port()
                && acked >= 1
                && acked <= len
        })
    })
}

/// Whether `tcp` (a data segment) starts where the peer's latest acknowledgement on its
/// ports (in `earlier`, the frames before it) points, at a sequence number its sender already
/// sent data from: a retransmission from SND.UNA, as a fast retransmission is.
fn is_retransmission_from_snd_una(
    tcp: &etherparse::TcpSlice<'_>,
    earlier: &[(u64, &[u8])],
) -> bool {
    let same_direction = |other: &etherparse::TcpSlice<'_>| {
        other.source_port() == tcp.source_port()
            && other.destination_port() == tcp.destination_port()
    };
    let latest_peer_ack = earlier.iter().rev().find_map(|(_, frame)| {
        tcp_of(frame)
            .filter(|peer| {
                peer.ack()
                    && peer.source_port() == tcp.destination_port()
                    && peer.destination_port() == tcp.source_port()
            })
            .map(|peer| peer.acknowledgment_number())
    });
    let sent_before = earlier.iter().any(|(_, frame)| {
        tcp_of(frame).is_some_and(|sent| {
            same_direction(&sent)
                && !sent.payload().is_empty()
                && sent.sequence_number() == tcp.sequence_number()
        })
    });
    !tcp.payload().is_empty() && latest_peer_ack == Some(tcp.sequence_number()) && sent_before
}

/// `simulation` target: a whole small world, chosen by the input ([`simulation_world`]),
/// runs to an end without a harness panic; a stack panic is a finding; the trace oracles find
/// nothing but the known findings ([`is_known_finding`]).
pub fn simulation(data: &[u8]) {
    let unknown: Vec<Violation> = simulation_violations(data)
        .into_iter()
        .filter(|(v, known)| v.rule != "suppressed" && !known)
        .map(|(v, _)| v)
        .collect();
    if let Some(first) = unknown.first() {
        panic!(
            "simulation: a trace oracle found {} violation(s); the first: {first}",
            unknown.len()
        );
    }
}

/// Runs the world a `simulation` input describes and returns what the trace oracles found,
/// each with whether it is a known finding ([`is_known_finding`]). Panics when a stack
/// panicked (a finding of its own); a world the simulator refuses finds nothing.
pub fn simulation_violations(data: &[u8]) -> Vec<(Violation, bool)> {
    let (config, apps) = simulation_world(data);
    let macs: Vec<MacAddr> = (0..config.hosts.len())
        .map(|i| config.host_mac(i))
        .collect();
    let Ok(report) = sim::world::run(config, &apps, fuzz_stacks(), &RunOptions::default()) else {
        return Vec::new();
    };
    if let Outcome::StackPanic { host, message } = &report.outcome {
        panic!("simulation: the stack of host `{host}` panicked: {message}");
    }
    judge::oracle::check(&report.trace, &report.names, &macs)
        .into_iter()
        .map(|v| {
            let known = is_known_finding(&v, &report.trace);
            (v, known)
        })
        .collect()
}

/// Ids of the targets, as `fuzz/fuzz_targets/<id>.rs`, `fuzz/corpus/<id>/` and
/// `fuzz/regressions/<id>/` name them.
pub const TARGETS: [&str; 6] = [
    "decode_frame",
    "checksum_agreement",
    "smoltcp_ingress",
    "scenario_parse",
    "pcap_read",
    "simulation",
];

/// Runs the target called `name` on `data`; false when there is no such target.
pub fn run_target(name: &str, data: &[u8]) -> bool {
    match name {
        "decode_frame" => decode_frame(data),
        "checksum_agreement" => checksum_agreement(data),
        "smoltcp_ingress" => smoltcp_ingress(data),
        "scenario_parse" => scenario_parse(data),
        "pcap_read" => pcap_read(data),
        "simulation" => simulation(data),
        _ => return false,
    }
    true
}

/// The stacks fuzz targets build hosts from: the built-in ones, registered once per process.
fn fuzz_stacks() -> &'static stack::Registry {
    static STACKS: std::sync::OnceLock<stack::Registry> = std::sync::OnceLock::new();
    STACKS.get_or_init(backends::builtin)
}
