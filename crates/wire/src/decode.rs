//! One-line, tcpdump-like decoding of Ethernet frames (etherparse's lax slicing, so cut-off frames still show what they hold), and checksum verification with an RFC 1071 reference sum.
//!
//! The line format is stable: decoded lines end up in snapshots and golden-difference
//! reports that people review, so a change here is a change to what they read. Every
//! number is printed in decimal except EtherTypes, and nothing depends on the host.
//!
//! ```text
//! 02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff ARP who-has 10.0.0.2 tell 10.0.0.1
//! 02:00:00:00:00:01 > 02:00:00:00:00:02 IPv4 10.0.0.1 > 10.0.0.2 ttl 64 ICMP echo request id 1 seq 3 len 56
//! 02:00:00:00:00:01 > 02:00:00:00:00:02 IPv4 10.0.0.1.49152 > 10.0.0.2.80 ttl 64 TCP [S] seq 1234 win 65535 <mss 1460,nop,wscale 7> len 0
//! 02:00:00:00:00:01 > 33:33:ff:00:00:02 IPv6 2001:db8::1 > ff02::1:ff00:2 hlim 255 ICMPv6 neighbor solicitation who-has 2001:db8::2
//! ```
//!
//! A frame that is cut off or inconsistent gets ` [malformed: <reason>]` after whatever
//! could be decoded, and a frame whose checksums do not add up gets ` [bad cksum <layer>]`.

use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::err::packet::SliceError;
use etherparse::err::Layer;
use etherparse::{
    ether_type, ip_number, ArpHardwareId, ArpOperation, ArpPacketSlice, EtherType,
    LaxIpPayloadSlice, LaxLinkExtSlice, LaxNetSlice, LaxSlicedPacket, LenSource, LinkSlice,
    TcpOptionElement, TcpOptionReadError, TcpOptionsIterator, TcpSlice, TransportSlice,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumLayer {
    Ipv4Header,
    Tcp,
    Udp,
    Icmpv4,
    Icmpv6,
}

impl ChecksumLayer {
    /// The short name used in decoded lines (`[bad cksum tcp]`).
    pub fn name(self) -> &'static str {
        match self {
            ChecksumLayer::Ipv4Header => "ip",
            ChecksumLayer::Tcp => "tcp",
            ChecksumLayer::Udp => "udp",
            ChecksumLayer::Icmpv4 => "icmp",
            ChecksumLayer::Icmpv6 => "icmp6",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumStatus {
    /// Every checksum the frame carries was verified and is right.
    Valid,
    /// The frame carries no checksum we know (ARP, unknown EtherType, an IPv6 packet whose
    /// payload is cut off, fragmented or of an unknown protocol, an unparseable frame).
    NotApplicable,
    /// The first checksum, from the outside in, that is wrong.
    Invalid { layer: ChecksumLayer },
}

/// The RFC 1071 ones'-complement sum of `data`, folded to 16 bits, added to `initial`.
pub fn ones_complement_sum(initial: u32, data: &[u8]) -> u16 {
    let mut sum = u64::from(initial);
    let mut chunks = data.chunks_exact(2);
    for pair in &mut chunks {
        sum += u64::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u64::from(u16::from_be_bytes([*last, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The sum of the TCP/UDP/ICMPv6 pseudo-header (RFC 9293, RFC 768, RFC 8200 section 8.1).
pub fn pseudo_header_sum(src: IpAddr, dst: IpAddr, protocol: u8, len: usize) -> u32 {
    let mut sum = 0u32;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks_exact(2) {
            sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
        }
    };
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            add(&s.octets());
            add(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            add(&s.octets());
            add(&d.octets());
        }
        _ => {}
    }
    // Upper-layer lengths fit 32 bits (IPv6 jumbograms aside, which etherparse does not
    // slice); they are added as two 16-bit words.
    let len = len as u32;
    sum + u32::from(protocol) + (len & 0xffff) + (len >> 16)
}

/// Verifies every checksum the frame carries: the IPv4 header, then TCP, UDP (a zero UDP
/// checksum over IPv4 means "none", RFC 768), ICMPv4, and ICMPv6, each transport with its
/// pseudo-header. A payload that is cut off or fragmented cannot be verified and counts as
/// carrying no transport checksum. IPv6 routing headers are not followed: the pseudo-header
/// uses the destination in the IPv6 header. Never panics.
pub fn verify_checksums(frame: &[u8]) -> ChecksumStatus {
    match LaxSlicedPacket::from_ethernet(frame) {
        Ok(packet) => verify_sliced(&packet),
        Err(_) => ChecksumStatus::NotApplicable,
    }
}

fn verify_sliced(packet: &LaxSlicedPacket<'_>) -> ChecksumStatus {
    let (src, dst, payload, v4) = match &packet.net {
        Some(LaxNetSlice::Ipv4(v4)) => {
            let h = v4.header();
            if ones_complement_sum(0, h.slice()) != 0xffff {
                return ChecksumStatus::Invalid {
                    layer: ChecksumLayer::Ipv4Header,
                };
            }
            (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                v4.payload(),
                true,
            )
        }
        Some(LaxNetSlice::Ipv6(v6)) => {
            let h = v6.header();
            (
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
                v6.payload(),
                false,
            )
        }
        Some(LaxNetSlice::Arp(_)) | None => return ChecksumStatus::NotApplicable,
    };
    let ip_only = if v4 {
        ChecksumStatus::Valid
    } else {
        ChecksumStatus::NotApplicable
    };
    // A cut-off or fragmented payload does not hold all the bytes its checksum covers, and
    // a payload whose length came from the slice (the IP length field was unusable) may
    // hold bytes that it does not cover.
    if payload.incomplete || payload.fragmented || payload.len_source == LenSource::Slice {
        return ip_only;
    }
    let t = payload.payload;
    let with_pseudo = |layer, covered: &[u8]| {
        let sum = pseudo_header_sum(src, dst, payload.ip_number.0, covered.len());
        if ones_complement_sum(sum, covered) == 0xffff {
            ChecksumStatus::Valid
        } else {
            ChecksumStatus::Invalid { layer }
        }
    };
    match payload.ip_number {
        ip_number::TCP if t.len() >= 20 => with_pseudo(ChecksumLayer::Tcp, t),
        ip_number::UDP if t.len() >= 8 => {
            if v4 && t[6..8] == [0, 0] {
                return ChecksumStatus::Valid;
            }
            // The checksum covers what the UDP length field says; a length that does not
            // fit the IP payload leaves nothing trustworthy to check.
            let udp_len = usize::from(u16::from_be_bytes([t[4], t[5]]));
            if udp_len < 8 || udp_len > t.len() {
                return ip_only;
            }
            with_pseudo(ChecksumLayer::Udp, &t[..udp_len])
        }
        ip_number::ICMP if v4 && t.len() >= 4 => {
            if ones_complement_sum(0, t) == 0xffff {
                ChecksumStatus::Valid
            } else {
                ChecksumStatus::Invalid {
                    layer: ChecksumLayer::Icmpv4,
                }
            }
        }
        ip_number::IPV6_ICMP if !v4 && t.len() >= 4 => with_pseudo(ChecksumLayer::Icmpv6, t),
        _ => ip_only,
    }
}

/// The first inconsistency found while decoding, rendered at the end of the line.
enum Problem<'a> {
    /// etherparse stopped slicing here.
    Slice(&'a SliceError),
    /// A length field promises more bytes than the frame holds.
    Cut {
        what: &'static str,
        declared: usize,
        present: usize,
    },
    /// A length field is smaller than the header it belongs to.
    BelowHeader {
        what: &'static str,
        declared: usize,
        header: usize,
    },
    /// The IP version nibble disagrees with the EtherType.
    VersionMismatch { ether_type: u16, version: u8 },
    /// A message is shorter than its type requires.
    Short { what: &'static str, len: usize },
}

fn layer_name(layer: Layer) -> &'static str {
    match layer {
        Layer::Ethernet2Header => "Ethernet header",
        Layer::VlanHeader => "VLAN header",
        Layer::MacsecHeader | Layer::MacsecPacket => "MACsec header",
        Layer::IpHeader | Layer::Ipv4Header | Layer::Ipv6Header => "IP header",
        Layer::Ipv4Packet | Layer::Ipv6Packet => "IP packet",
        Layer::IpAuthHeader => "IP authentication header",
        Layer::Ipv6ExtHeader
        | Layer::Ipv6HopByHopHeader
        | Layer::Ipv6DestOptionsHeader
        | Layer::Ipv6RouteHeader
        | Layer::Ipv6FragHeader => "IPv6 extension header",
        Layer::UdpHeader => "UDP header",
        Layer::UdpPayload => "UDP payload",
        Layer::TcpHeader => "TCP header",
        Layer::Icmpv4 | Layer::Icmpv4Timestamp | Layer::Icmpv4TimestampReply => "ICMP message",
        Layer::Icmpv6 => "ICMPv6 message",
        Layer::Igmp => "IGMP message",
        Layer::Arp => "ARP packet",
        Layer::LinuxSllHeader | Layer::EtherPayload => "payload",
    }
}

fn write_problem(out: &mut String, problem: &Problem<'_>) {
    use etherparse::err::{ip, ipv4, ipv6, tcp};
    out.push_str(" [malformed: ");
    let _ = match problem {
        Problem::Slice(SliceError::Len(e)) => write!(
            out,
            "{} needs {} bytes, {} present",
            layer_name(e.layer),
            e.required_len,
            e.len
        ),
        Problem::Slice(SliceError::Ip(ip::HeaderError::UnsupportedIpVersion {
            version_number,
        })) => write!(out, "IP version {version_number}"),
        Problem::Slice(SliceError::Ip(ip::HeaderError::Ipv4HeaderLengthSmallerThanHeader {
            ihl,
        }))
        | Problem::Slice(SliceError::Ipv4(ipv4::HeaderError::HeaderLengthSmallerThanHeader {
            ihl,
        })) => write!(out, "IPv4 header length {ihl} words, less than 5"),
        Problem::Slice(SliceError::Ipv4(ipv4::HeaderError::UnexpectedVersion {
            version_number,
        }))
        | Problem::Slice(SliceError::Ipv6(ipv6::HeaderError::UnexpectedVersion {
            version_number,
        })) => {
            write!(out, "IP version {version_number}")
        }
        Problem::Slice(SliceError::Tcp(tcp::HeaderError::DataOffsetTooSmall { data_offset })) => {
            write!(out, "TCP data offset {data_offset} words, less than 5")
        }
        // The remaining errors (IP authentication and IPv6 extension headers, MACsec,
        // Linux cooked captures) are rare enough for etherparse's own wording.
        Problem::Slice(other) => write!(out, "{other}"),
        Problem::Cut {
            what,
            declared,
            present,
        } => write!(out, "{what} says {declared} bytes, {present} present"),
        Problem::BelowHeader {
            what,
            declared,
            header,
        } => write!(
            out,
            "{what} {declared} is less than the {header}-byte header"
        ),
        Problem::VersionMismatch {
            ether_type,
            version,
        } => write!(
            out,
            "IP version {version} under EtherType {ether_type:#06x}"
        ),
        Problem::Short { what, len } => write!(out, "{what} of {len} bytes is too short"),
    };
    out.push(']');
}

fn mac(out: &mut String, bytes: &[u8]) {
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let _ = write!(out, "{b:02x}");
    }
}

fn ipv4_at(bytes: &[u8]) -> Option<Ipv4Addr> {
    <[u8; 4]>::try_from(bytes.get(..4)?)
        .ok()
        .map(Ipv4Addr::from)
}

fn ipv6_at(bytes: &[u8]) -> Option<Ipv6Addr> {
    <[u8; 16]>::try_from(bytes.get(..16)?)
        .ok()
        .map(Ipv6Addr::from)
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    match bytes.get(at..at + 2) {
        Some(b) => u16::from_be_bytes([b[0], b[1]]),
        None => 0,
    }
}

fn ether_type_label(out: &mut String, ether_type: EtherType, frame_len: usize) {
    let _ = match ether_type {
        ether_type::IPV4 => write!(out, "IPv4"),
        ether_type::IPV6 => write!(out, "IPv6"),
        ether_type::ARP => write!(out, "ARP"),
        // Values up to 1500 are IEEE 802.3 lengths, not types.
        EtherType(len) if len <= 1500 => write!(out, "802.3 len {frame_len}"),
        EtherType(value) => write!(out, "ethertype {value:#06x} len {frame_len}"),
    };
}

fn arp(out: &mut String, a: &ArpPacketSlice<'_>) {
    let eth_ipv4 = a.hw_addr_type() == ArpHardwareId::ETHERNET
        && a.proto_addr_type() == ether_type::IPV4
        && a.hw_addr_size() == 6
        && a.proto_addr_size() == 4;
    if !eth_ipv4 {
        let _ = write!(
            out,
            "ARP hw {} proto {:#06x} op {}",
            a.hw_addr_type().0,
            a.proto_addr_type().0,
            a.operation().0
        );
        return;
    }
    let (Some(spa), Some(tpa)) = (
        ipv4_at(a.sender_protocol_addr()),
        ipv4_at(a.target_protocol_addr()),
    ) else {
        return;
    };
    let _ = match a.operation() {
        ArpOperation::REQUEST => write!(out, "ARP who-has {tpa} tell {spa}"),
        ArpOperation::REPLY => {
            let _ = write!(out, "ARP reply {spa} is-at ");
            mac(out, a.sender_hw_addr());
            Ok(())
        }
        ArpOperation(op) => write!(out, "ARP op {op} {spa} > {tpa}"),
    };
}

/// Where `inner` starts inside `outer`, when it does.
fn offset_in(outer: &[u8], inner: &[u8]) -> Option<usize> {
    let start = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    (start + inner.len() <= outer.len()).then_some(start)
}

/// The length of the IP payload according to the IP header, which is more than the bytes
/// present when the frame is cut off. `ip_packet` runs from the IP header to the end of the
/// frame, and `ip_end` is where the IP header says the packet ends.
fn declared_payload_len(payload: &LaxIpPayloadSlice<'_>, ip_packet: &[u8], ip_end: usize) -> usize {
    if !payload.incomplete {
        return payload.payload.len();
    }
    match offset_in(ip_packet, payload.payload) {
        Some(start) => ip_end.saturating_sub(start),
        None => payload.payload.len(),
    }
}

/// Writes ` for <proto> <src>[.port] > <dst>[.port]` for the datagram an ICMP error quotes.
fn quoted(out: &mut String, original: &[u8]) {
    let Ok(inner) = LaxSlicedPacket::from_ip(original) else {
        return;
    };
    let (src, dst, payload) = match &inner.net {
        Some(LaxNetSlice::Ipv4(v4)) => (
            IpAddr::V4(v4.header().source_addr()),
            IpAddr::V4(v4.header().destination_addr()),
            v4.payload(),
        ),
        Some(LaxNetSlice::Ipv6(v6)) => (
            IpAddr::V6(v6.header().source_addr()),
            IpAddr::V6(v6.header().destination_addr()),
            v6.payload(),
        ),
        _ => return,
    };
    // Only the first 8 bytes of the quoted transport header are promised (RFC 792), so the
    // ports are read directly rather than through a full TCP header.
    let p = payload.payload;
    let ports = (!payload.fragmented && p.len() >= 4).then(|| (u16_at(p, 0), u16_at(p, 2)));
    let _ = match payload.ip_number {
        ip_number::TCP => write!(out, " for TCP"),
        ip_number::UDP => write!(out, " for UDP"),
        ip_number::ICMP => write!(out, " for ICMP"),
        ip_number::IPV6_ICMP => write!(out, " for ICMPv6"),
        other => write!(out, " for proto {}", other.0),
    };
    let with_ports = matches!(payload.ip_number, ip_number::TCP | ip_number::UDP);
    let _ = match ports.filter(|_| with_ports) {
        Some((sport, dport)) => write!(out, " {src}.{sport} > {dst}.{dport}"),
        None => write!(out, " {src} > {dst}"),
    };
}

/// Decodes an ICMPv4 message (`m` holds at least the 8-byte header, as etherparse checks).
fn icmpv4(out: &mut String, m: &[u8], declared_len: usize) {
    let (ty, code) = (m[0], m[1]);
    let echo = |out: &mut String, what: &str| {
        let _ = write!(
            out,
            "ICMP echo {what} id {} seq {} len {}",
            u16_at(m, 4),
            u16_at(m, 6),
            declared_len.saturating_sub(8)
        );
    };
    match ty {
        0 => echo(out, "reply"),
        8 => echo(out, "request"),
        3 => {
            let reason = match code {
                0 => "net unreachable",
                1 => "host unreachable",
                2 => "protocol unreachable",
                3 => "port unreachable",
                4 => "fragmentation needed",
                5 => "source route failed",
                6 => "net unknown",
                7 => "host unknown",
                9 => "net prohibited",
                10 => "host prohibited",
                13 => "admin prohibited",
                _ => "",
            };
            if reason.is_empty() {
                let _ = write!(out, "ICMP unreachable code {code}");
            } else {
                let _ = write!(out, "ICMP {reason}");
            }
            if code == 4 {
                let _ = write!(out, " mtu {}", u16_at(m, 6));
            }
            quoted(out, &m[8..]);
        }
        11 => {
            out.push_str(if code == 1 {
                "ICMP time exceeded in reassembly"
            } else {
                "ICMP time exceeded in transit"
            });
            quoted(out, &m[8..]);
        }
        12 => {
            let _ = write!(out, "ICMP parameter problem pointer {}", m[4]);
            quoted(out, &m[8..]);
        }
        5 => {
            let _ = write!(
                out,
                "ICMP redirect to {}",
                ipv4_at(&m[4..]).unwrap_or(Ipv4Addr::UNSPECIFIED)
            );
            quoted(out, &m[8..]);
        }
        4 => out.push_str("ICMP source quench"),
        9 => out.push_str("ICMP router advertisement"),
        10 => out.push_str("ICMP router solicitation"),
        13 => out.push_str("ICMP timestamp request"),
        14 => out.push_str("ICMP timestamp reply"),
        _ => {
            let _ = write!(out, "ICMP type {ty} code {code}");
        }
    }
}

/// Decodes an ICMPv6 message (`m` holds at least the 8-byte header, as etherparse checks).
fn icmpv6<'a>(out: &mut String, m: &[u8], declared_len: usize) -> Option<Problem<'a>> {
    let (ty, code) = (m[0], m[1]);
    let target = |out: &mut String, what: &'static str| match ipv6_at(&m[8..]) {
        Some(addr) => {
            let _ = write!(out, " {addr}");
            None
        }
        None => Some(Problem::Short { what, len: m.len() }),
    };
    match ty {
        128 | 129 => {
            let _ = write!(
                out,
                "ICMPv6 echo {} id {} seq {} len {}",
                if ty == 128 { "request" } else { "reply" },
                u16_at(m, 4),
                u16_at(m, 6),
                declared_len.saturating_sub(8)
            );
        }
        135 => {
            out.push_str("ICMPv6 neighbor solicitation who-has");
            return target(out, "neighbor solicitation");
        }
        136 => {
            out.push_str("ICMPv6 neighbor advertisement tgt-is");
            return target(out, "neighbor advertisement");
        }
        137 => {
            out.push_str("ICMPv6 redirect to");
            return target(out, "redirect");
        }
        133 => out.push_str("ICMPv6 router solicitation"),
        134 => out.push_str("ICMPv6 router advertisement"),
        130 => out.push_str("ICMPv6 multicast listener query"),
        131 => out.push_str("ICMPv6 multicast listener report"),
        132 => out.push_str("ICMPv6 multicast listener done"),
        143 => out.push_str("ICMPv6 multicast listener report v2"),
        1 => {
            let reason = match code {
                0 => "no route",
                1 => "admin prohibited",
                2 => "beyond scope",
                3 => "address unreachable",
                4 => "port unreachable",
                5 => "source address failed policy",
                6 => "reject route",
                _ => "",
            };
            if reason.is_empty() {
                let _ = write!(out, "ICMPv6 unreachable code {code}");
            } else {
                let _ = write!(out, "ICMPv6 {reason}");
            }
            quoted(out, &m[8..]);
        }
        2 => {
            let mtu = u32::from_be_bytes([m[4], m[5], m[6], m[7]]);
            let _ = write!(out, "ICMPv6 packet too big mtu {mtu}");
            quoted(out, &m[8..]);
        }
        3 => {
            out.push_str(if code == 1 {
                "ICMPv6 time exceeded in reassembly"
            } else {
                "ICMPv6 time exceeded in transit"
            });
            quoted(out, &m[8..]);
        }
        4 => {
            let pointer = u32::from_be_bytes([m[4], m[5], m[6], m[7]]);
            let _ = write!(
                out,
                "ICMPv6 parameter problem code {code} pointer {pointer}"
            );
            quoted(out, &m[8..]);
        }
        _ => {
            let _ = write!(out, "ICMPv6 type {ty} code {code}");
        }
    }
    None
}

/// Writes TCP flags in tcpdump's order and letters: `[S]`, `[S.]`, `[P.]`, `[F.]`, `[R]`.
fn tcp_flags(out: &mut String, tcp: &TcpSlice<'_>) {
    out.push('[');
    let before = out.len();
    for (set, flag) in [
        (tcp.fin(), 'F'),
        (tcp.syn(), 'S'),
        (tcp.rst(), 'R'),
        (tcp.psh(), 'P'),
        (tcp.ack(), '.'),
        (tcp.urg(), 'U'),
        (tcp.ece(), 'E'),
        (tcp.cwr(), 'W'),
        (tcp.ns(), 'e'),
    ] {
        if set {
            out.push(flag);
        }
    }
    if out.len() == before {
        out.push_str("none");
    }
    out.push(']');
}

/// Writes the options as tcpdump does (`<mss 1460,nop,wscale 7,sackOK,TS val 1 ecr 0>`).
/// Unknown kinds print as `unknown-N` and are skipped by their length; an option that
/// does not fit prints `[bad opt]` and ends the list.
fn tcp_options(out: &mut String, options: &[u8]) {
    if options.is_empty() {
        return;
    }
    out.push_str(" <");
    let mut first = true;
    let mut rest = options;
    while !rest.is_empty() {
        if !first {
            out.push(',');
        }
        first = false;
        let mut it = TcpOptionsIterator::from_slice(rest);
        let _ = match it.next() {
            None => {
                // End of option list; what follows is padding.
                out.push_str("eol");
                break;
            }
            Some(Ok(option)) => {
                rest = it.rest();
                match option {
                    TcpOptionElement::Noop => write!(out, "nop"),
                    TcpOptionElement::MaximumSegmentSize(m) => write!(out, "mss {m}"),
                    TcpOptionElement::WindowScale(w) => write!(out, "wscale {w}"),
                    TcpOptionElement::SelectiveAcknowledgementPermitted => write!(out, "sackOK"),
                    TcpOptionElement::SelectiveAcknowledgement(first, more) => {
                        let _ = write!(out, "sack {}:{}", first.0, first.1);
                        for (l, r) in more.iter().flatten() {
                            let _ = write!(out, " {l}:{r}");
                        }
                        Ok(())
                    }
                    TcpOptionElement::Timestamp(val, ecr) => write!(out, "TS val {val} ecr {ecr}"),
                }
            }
            Some(Err(TcpOptionReadError::UnknownId(kind))) => {
                let len = usize::from(rest.get(1).copied().unwrap_or(0));
                let _ = write!(out, "unknown-{kind}");
                if len < 2 || len > rest.len() {
                    out.push_str(" [bad opt]");
                    break;
                }
                rest = &rest[len..];
                Ok(())
            }
            Some(Err(_)) => {
                out.push_str("[bad opt]");
                break;
            }
        };
    }
    out.push('>');
}

/// Appends a one-line human-readable decode of an Ethernet frame to `out` (no trailing
/// newline): addresses, protocol, the fields tcpdump shows, then ` [malformed: ...]` and
/// ` [bad cksum ...]` when they apply. Never panics, whatever the bytes.
pub fn decode_frame(frame: &[u8], out: &mut String) {
    let packet = match LaxSlicedPacket::from_ethernet(frame) {
        Ok(packet) => packet,
        Err(_) => {
            let _ = write!(
                out,
                "[malformed: {} bytes is shorter than an Ethernet header]",
                frame.len()
            );
            return;
        }
    };
    if let Some(LinkSlice::Ethernet2(eth)) = &packet.link {
        mac(out, &eth.source());
        out.push_str(" > ");
        mac(out, &eth.destination());
    }
    for ext in &packet.link_exts {
        let _ = match ext {
            LaxLinkExtSlice::Vlan(v) => write!(out, " vlan {}", v.vlan_identifier().value()),
            LaxLinkExtSlice::Macsec(_) => write!(out, " macsec"),
        };
    }
    out.push(' ');
    let ether_type = packet.ether_payload().map(|p| p.ether_type);
    let mut problem = packet.stop_err.as_ref().map(|(e, _)| Problem::Slice(e));
    match &packet.net {
        Some(LaxNetSlice::Arp(a)) => arp(out, a),
        Some(LaxNetSlice::Ipv4(_) | LaxNetSlice::Ipv6(_)) => {
            let found = ip(out, &packet, ether_type);
            problem = problem.or(found);
        }
        None => match ether_type {
            Some(t) => ether_type_label(out, t, frame.len()),
            // MACsec with an encrypted payload: nothing more to read.
            None => {
                let _ = write!(out, "len {}", frame.len());
            }
        },
    }
    if let Some(p) = &problem {
        write_problem(out, p);
    }
    if let ChecksumStatus::Invalid { layer } = verify_sliced(&packet) {
        let _ = write!(out, " [bad cksum {}]", layer.name());
    }
}

/// Decodes the IP part of a packet whose `net` is IPv4 or IPv6; returns the first
/// inconsistency in the lengths it finds.
fn ip<'a>(
    out: &mut String,
    packet: &LaxSlicedPacket<'a>,
    ether_type: Option<EtherType>,
) -> Option<Problem<'a>> {
    let mut problem = None;
    // The bytes from the IP header to the end of the frame, to measure offsets in.
    let ip_packet = packet.ether_payload().map_or(&[][..], |p| p.payload);
    let (src, dst, payload, declared) = match &packet.net {
        Some(LaxNetSlice::Ipv4(v4)) => {
            let h = v4.header();
            if ether_type.is_some_and(|t| t != ether_type::IPV4) {
                problem = Some(Problem::VersionMismatch {
                    ether_type: ether_type.map_or(0, |t| t.0),
                    version: 4,
                });
            }
            out.push_str("IPv4 ");
            let total = usize::from(h.total_len());
            let payload = v4.payload();
            if payload.incomplete {
                problem = problem.or(Some(Problem::Cut {
                    what: "IPv4 total length",
                    declared: total,
                    present: ip_packet.len(),
                }));
            } else if payload.len_source == LenSource::Slice {
                problem = problem.or(Some(Problem::BelowHeader {
                    what: "IPv4 total length",
                    declared: total,
                    header: h.slice().len(),
                }));
            }
            let declared = declared_payload_len(payload, ip_packet, total);
            (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                payload,
                declared,
            )
        }
        Some(LaxNetSlice::Ipv6(v6)) => {
            let h = v6.header();
            if ether_type.is_some_and(|t| t != ether_type::IPV6) {
                problem = Some(Problem::VersionMismatch {
                    ether_type: ether_type.map_or(0, |t| t.0),
                    version: 6,
                });
            }
            out.push_str("IPv6 ");
            let payload = v6.payload();
            let total = 40 + usize::from(h.payload_length());
            if payload.incomplete {
                problem = problem.or(Some(Problem::Cut {
                    what: "IPv6 payload length",
                    declared: total - 40,
                    present: ip_packet.len().saturating_sub(40),
                }));
            }
            let declared = declared_payload_len(payload, ip_packet, total);
            (
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
                payload,
                declared,
            )
        }
        _ => return None,
    };
    let _ = match &packet.transport {
        Some(TransportSlice::Tcp(t)) => write!(
            out,
            "{src}.{} > {dst}.{}",
            t.source_port(),
            t.destination_port()
        ),
        Some(TransportSlice::Udp(u)) => write!(
            out,
            "{src}.{} > {dst}.{}",
            u.source_port(),
            u.destination_port()
        ),
        _ => write!(out, "{src} > {dst}"),
    };
    match &packet.net {
        Some(LaxNetSlice::Ipv4(v4)) => {
            let h = v4.header();
            let _ = write!(out, " ttl {}", h.ttl());
            if h.is_fragmenting_payload() {
                let _ = write!(
                    out,
                    " frag id {} off {}{}",
                    h.identification(),
                    u32::from(h.fragments_offset().value()) * 8,
                    if h.more_fragments() { "+" } else { "" }
                );
            }
        }
        Some(LaxNetSlice::Ipv6(v6)) => {
            let _ = write!(out, " hlim {}", v6.header().hop_limit());
            if v6.is_payload_fragmented() {
                out.push_str(" frag");
            }
        }
        _ => {}
    }
    match &packet.transport {
        Some(TransportSlice::Tcp(tcp)) => {
            out.push_str(" TCP ");
            tcp_flags(out, tcp);
            let _ = write!(out, " seq {}", tcp.sequence_number());
            if tcp.ack() {
                let _ = write!(out, " ack {}", tcp.acknowledgment_number());
            }
            let _ = write!(out, " win {}", tcp.window_size());
            if tcp.urg() {
                let _ = write!(out, " urg {}", tcp.urgent_pointer());
            }
            tcp_options(out, tcp.options());
            let _ = write!(out, " len {}", declared.saturating_sub(tcp.header_len()));
        }
        Some(TransportSlice::Udp(udp)) => {
            let udp_len = usize::from(udp.length());
            let _ = write!(out, " UDP len {}", udp_len.max(8) - 8);
            if udp_len < 8 {
                problem = problem.or(Some(Problem::BelowHeader {
                    what: "UDP length",
                    declared: udp_len,
                    header: 8,
                }));
            } else if udp_len > declared {
                problem = problem.or(Some(Problem::Cut {
                    what: "UDP length",
                    declared: udp_len,
                    present: declared,
                }));
            }
        }
        Some(TransportSlice::Icmpv4(icmp)) => {
            out.push(' ');
            icmpv4(out, icmp.slice(), declared);
        }
        Some(TransportSlice::Icmpv6(icmp)) => {
            out.push(' ');
            let found = icmpv6(out, icmp.slice(), declared);
            problem = problem.or(found);
        }
        Some(TransportSlice::Igmp(_)) => {
            let _ = write!(out, " IGMP len {declared}");
        }
        None => {
            // A fragment, a protocol etherparse does not slice, or a transport header it
            // could not read (the problem says which).
            if packet.stop_err.is_none() {
                let _ = write!(out, " proto {} len {declared}", payload.ip_number.0);
            }
        }
    }
    problem
}

/// A virtual time in seconds with six decimals (`1.000250`), as traces and reports show it.
pub fn format_time(time_us: u64) -> String {
    format!("{}.{:06}", time_us / 1_000_000, time_us % 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{ArpEthIpv4Packet, PacketBuilder};

    const MAC1: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const MAC2: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const IP1: [u8; 4] = [10, 0, 0, 1];
    const IP2: [u8; 4] = [10, 0, 0, 2];
    const V6_1: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const V6_2: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    fn decode(frame: &[u8]) -> String {
        let mut line = String::new();
        decode_frame(frame, &mut line);
        line
    }

    fn tcp_syn() -> Vec<u8> {
        let builder = PacketBuilder::ethernet2(MAC1, MAC2)
            .ipv4(IP1, IP2, 64)
            .tcp(49152, 80, 1234, 65535)
            .syn()
            .options(&[
                TcpOptionElement::MaximumSegmentSize(1460),
                TcpOptionElement::Noop,
                TcpOptionElement::WindowScale(7),
                TcpOptionElement::SelectiveAcknowledgementPermitted,
                TcpOptionElement::Timestamp(1, 0),
            ])
            .unwrap();
        let mut out = Vec::new();
        builder.write(&mut out, &[]).unwrap();
        out
    }

    fn tcp_data() -> Vec<u8> {
        let builder = PacketBuilder::ethernet2(MAC2, MAC1)
            .ipv4(IP2, IP1, 63)
            .tcp(80, 49152, 5000, 1024)
            .ack(1235)
            .psh();
        let mut out = Vec::new();
        builder.write(&mut out, &[7; 100]).unwrap();
        out
    }

    fn udp_v4() -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(MAC1, MAC2)
            .ipv4(IP1, IP2, 64)
            .udp(5000, 7)
            .write(&mut out, &[0x55; 32])
            .unwrap();
        out
    }

    fn udp_v6() -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(MAC1, MAC2)
            .ipv6(V6_1, V6_2, 64)
            .udp(5000, 7)
            .write(&mut out, &[1, 2, 3, 4])
            .unwrap();
        out
    }

    fn ping_v4() -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(MAC1, MAC2)
            .ipv4(IP1, IP2, 64)
            .icmpv4_echo_request(1, 3)
            .write(&mut out, &[0xab; 56])
            .unwrap();
        out
    }

    fn ping_v6() -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(MAC1, MAC2)
            .ipv6(V6_1, V6_2, 64)
            .icmpv6_echo_request(9, 2)
            .write(&mut out, &[0xcd; 16])
            .unwrap();
        out
    }

    fn neighbor_solicitation() -> Vec<u8> {
        let solicited: [u8; 16] = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 2];
        let mut body = V6_2.to_vec();
        body.extend([1, 1]); // source link-layer address option, 8 bytes
        body.extend(MAC1);
        let mut out = Vec::new();
        PacketBuilder::ethernet2(MAC1, [0x33, 0x33, 0xff, 0, 0, 2])
            .ipv6(V6_1, solicited, 255)
            .icmpv6_raw(135, 0, [0; 4])
            .write(&mut out, &body)
            .unwrap();
        out
    }

    fn arp(operation: ArpOperation) -> Vec<u8> {
        let (sender_mac, sender_ipv4, target_ipv4, dst) = if operation == ArpOperation::REQUEST {
            (MAC1, IP1, IP2, [0xff; 6])
        } else {
            (MAC2, IP2, IP1, MAC1)
        };
        let packet = ArpEthIpv4Packet {
            operation,
            sender_mac,
            sender_ipv4,
            target_mac: if operation == ArpOperation::REQUEST {
                [0; 6]
            } else {
                MAC1
            },
            target_ipv4,
        };
        let mut out = Vec::new();
        PacketBuilder::ethernet2(sender_mac, dst)
            .arp(packet.to_arp_packet())
            .write(&mut out)
            .unwrap();
        out
    }

    /// An ICMP port unreachable quoting the UDP datagram of [`udp_v4`].
    fn port_unreachable() -> Vec<u8> {
        let quoted = &udp_v4()[14..14 + 28];
        let mut out = Vec::new();
        PacketBuilder::ethernet2(MAC2, MAC1)
            .ipv4(IP2, IP1, 64)
            .icmpv4_raw(3, 3, [0; 4])
            .write(&mut out, quoted)
            .unwrap();
        out
    }

    /// Every frame of the tests, all with correct checksums.
    fn valid_frames() -> Vec<Vec<u8>> {
        vec![
            tcp_syn(),
            tcp_data(),
            udp_v4(),
            udp_v6(),
            ping_v4(),
            ping_v6(),
            neighbor_solicitation(),
            arp(ArpOperation::REQUEST),
            arp(ArpOperation::REPLY),
            port_unreachable(),
        ]
    }

    #[test]
    fn frames_decode_to_tcpdump_like_lines() {
        let expected = [
            "02:00:00:00:00:01 > 02:00:00:00:00:02 IPv4 10.0.0.1.49152 > 10.0.0.2.80 ttl 64 TCP [S] seq 1234 win 65535 <mss 1460,nop,wscale 7,sackOK,TS val 1 ecr 0> len 0",
            "02:00:00:00:00:02 > 02:00:00:00:00:01 IPv4 10.0.0.2.80 > 10.0.0.1.49152 ttl 63 TCP [P.] seq 5000 ack 1235 win 1024 len 100",
            "02:00:00:00:00:01 > 02:00:00:00:00:02 IPv4 10.0.0.1.5000 > 10.0.0.2.7 ttl 64 UDP len 32",
            "02:00:00:00:00:01 > 02:00:00:00:00:02 IPv6 2001:db8::1.5000 > 2001:db8::2.7 hlim 64 UDP len 4",
            "02:00:00:00:00:01 > 02:00:00:00:00:02 IPv4 10.0.0.1 > 10.0.0.2 ttl 64 ICMP echo request id 1 seq 3 len 56",
            "02:00:00:00:00:01 > 02:00:00:00:00:02 IPv6 2001:db8::1 > 2001:db8::2 hlim 64 ICMPv6 echo request id 9 seq 2 len 16",
            "02:00:00:00:00:01 > 33:33:ff:00:00:02 IPv6 2001:db8::1 > ff02::1:ff00:2 hlim 255 ICMPv6 neighbor solicitation who-has 2001:db8::2",
            "02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff ARP who-has 10.0.0.2 tell 10.0.0.1",
            "02:00:00:00:00:02 > 02:00:00:00:00:01 ARP reply 10.0.0.2 is-at 02:00:00:00:00:02",
            "02:00:00:00:00:02 > 02:00:00:00:00:01 IPv4 10.0.0.2 > 10.0.0.1 ttl 64 ICMP port unreachable for UDP 10.0.0.1.5000 > 10.0.0.2.7",
        ];
        let frames = valid_frames();
        assert_eq!(frames.len(), expected.len());
        for (frame, expected) in frames.iter().zip(expected) {
            assert_eq!(decode(frame), expected);
        }
    }

    #[test]
    fn flags_follow_tcpdump_order_and_odd_frames_are_named() {
        // FIN+PSH+ACK with ECE: tcpdump prints the letters in the order F S R P . U E W.
        let mut out = Vec::new();
        PacketBuilder::ethernet2(MAC1, MAC2)
            .ipv4(IP1, IP2, 64)
            .tcp(1, 2, 3, 4)
            .fin()
            .psh()
            .ack(9)
            .ece()
            .write(&mut out, &[])
            .unwrap();
        assert!(decode(&out).contains("TCP [FP.E] seq 3 ack 9 win 4 len 0"));
        // A SYN-ACK with an unknown option (kind 254, length 4), then end of options.
        let mut synack = tcp_syn();
        let tcp = 14 + 20;
        synack[tcp + 13] |= 0x10; // ACK
        synack[tcp + 20..tcp + 28].copy_from_slice(&[254, 4, 0, 0, 0, 0, 0, 0]);
        let line = decode(&synack);
        assert!(
            line.contains("TCP [S.] seq 1234 ack 0 win 65535 <unknown-254,eol>"),
            "{line}"
        );
        // LLDP: an EtherType we do not decode.
        let mut lldp = vec![0x01, 0x80, 0xc2, 0, 0, 0x0e];
        lldp.extend(MAC1);
        lldp.extend([0x88, 0xcc]);
        lldp.extend([0; 46]);
        assert_eq!(
            decode(&lldp),
            "02:00:00:00:00:01 > 01:80:c2:00:00:0e ethertype 0x88cc len 60"
        );
        // An IPv4 fragment after the first.
        let mut frag = udp_v4();
        frag[14 + 6] = 0x20; // more fragments
        frag[14 + 7] = 0x03; // offset 3 * 8 bytes
        let line = decode(&frag);
        assert!(
            line.contains("IPv4 10.0.0.1 > 10.0.0.2 ttl 64 frag id 0 off 24+ proto 17 len 40"),
            "{line}"
        );
        assert!(line.ends_with("[bad cksum ip]"), "{line}");
    }

    #[test]
    fn truncated_frames_say_what_is_missing() {
        let data = tcp_data();
        let line = decode(&data[..14 + 20 + 20 + 10]);
        assert_eq!(
            line,
            "02:00:00:00:00:02 > 02:00:00:00:00:01 IPv4 10.0.0.2.80 > 10.0.0.1.49152 ttl 63 TCP [P.] seq 5000 ack 1235 win 1024 len 100 [malformed: IPv4 total length says 140 bytes, 50 present]"
        );
        let line = decode(&data[..14 + 20 + 12]);
        assert_eq!(
            line,
            "02:00:00:00:00:02 > 02:00:00:00:00:01 IPv4 10.0.0.2 > 10.0.0.1 ttl 63 [malformed: TCP header needs 20 bytes, 12 present]"
        );
        assert_eq!(
            decode(&data[..20]),
            "02:00:00:00:00:02 > 02:00:00:00:00:01 IPv4 [malformed: IP header needs 20 bytes, 6 present]"
        );
        assert_eq!(
            decode(&data[..9]),
            "[malformed: 9 bytes is shorter than an Ethernet header]"
        );
        let request = arp(ArpOperation::REQUEST);
        assert_eq!(
            decode(&request[..30]),
            "02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff ARP [malformed: ARP packet needs 28 bytes, 16 present]"
        );
        let mut short_udp = udp_v4();
        short_udp[14 + 20 + 5] = 200; // UDP length 200 in a 40-byte datagram
        let line = decode(&short_udp);
        assert!(
            line.ends_with("UDP len 192 [malformed: UDP length says 200 bytes, 40 present]"),
            "{line}"
        );
    }

    #[test]
    fn checksums_are_verified_and_a_flipped_bit_is_caught() {
        for frame in valid_frames() {
            let expected = if frame[12..14] == [0x08, 0x06] {
                ChecksumStatus::NotApplicable
            } else {
                ChecksumStatus::Valid
            };
            assert_eq!(verify_checksums(&frame), expected, "{}", decode(&frame));
        }
        // One flipped payload bit, and the layer that covers it.
        let cases = [
            (tcp_data(), ChecksumLayer::Tcp),
            (udp_v4(), ChecksumLayer::Udp),
            (udp_v6(), ChecksumLayer::Udp),
            (ping_v4(), ChecksumLayer::Icmpv4),
            (ping_v6(), ChecksumLayer::Icmpv6),
            (neighbor_solicitation(), ChecksumLayer::Icmpv6),
        ];
        for (mut frame, layer) in cases {
            *frame.last_mut().unwrap() ^= 0x10;
            assert_eq!(
                verify_checksums(&frame),
                ChecksumStatus::Invalid { layer },
                "{}",
                decode(&frame)
            );
            assert!(
                decode(&frame).ends_with(&format!(" [bad cksum {}]", layer.name())),
                "{}",
                decode(&frame)
            );
        }
        let mut bad_ip = tcp_syn();
        bad_ip[14 + 8] ^= 1; // ttl
        assert_eq!(
            verify_checksums(&bad_ip),
            ChecksumStatus::Invalid {
                layer: ChecksumLayer::Ipv4Header
            }
        );
        // A zero UDP checksum over IPv4 means "none"; over IPv6 it is wrong.
        let mut no_sum = udp_v4();
        no_sum[14 + 20 + 6..14 + 20 + 8].fill(0);
        assert_eq!(verify_checksums(&no_sum), ChecksumStatus::Valid);
        let mut zero_v6 = udp_v6();
        zero_v6[14 + 40 + 6..14 + 40 + 8].fill(0);
        assert_eq!(
            verify_checksums(&zero_v6),
            ChecksumStatus::Invalid {
                layer: ChecksumLayer::Udp
            }
        );
        // A cut-off segment cannot be verified, but its IPv4 header still can.
        assert_eq!(verify_checksums(&tcp_data()[..60]), ChecksumStatus::Valid);
        assert_eq!(
            verify_checksums(&udp_v6()[..60]),
            ChecksumStatus::NotApplicable
        );
    }

    #[test]
    fn the_reference_sum_matches_rfc_1071() {
        // RFC 1071 section 3 example: 0001 f203 f4f5 f6f7 sums to ddf2.
        assert_eq!(
            ones_complement_sum(0, &[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
        assert_eq!(ones_complement_sum(0, &[0xff]), 0xff00);
    }

    #[test]
    fn truncated_and_random_frames_never_panic() {
        let mut line = String::new();
        for frame in valid_frames() {
            for cut in 0..frame.len() {
                line.clear();
                decode_frame(&frame[..cut], &mut line);
                assert!(!line.is_empty());
                assert!(!line.contains('\n'));
                let _ = verify_checksums(&frame[..cut]);
            }
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        };
        let ether_types: [[u8; 2]; 5] = [[8, 0], [0x86, 0xdd], [8, 6], [0x81, 0], [0x88, 0xe5]];
        for len in 0..2000 {
            let mut data: Vec<u8> = (0..len % 300).map(|_| next()).collect();
            // Keep known EtherTypes and IP versions often, so the deeper decoders run.
            if data.len() >= 15 {
                data[12..14].copy_from_slice(&ether_types[len % 5]);
                data[14] = if len % 2 == 0 { 0x45 } else { 0x60 };
            }
            line.clear();
            decode_frame(&data, &mut line);
            assert!(!line.contains('\n'));
            let _ = verify_checksums(&data);
        }
        // Every single-byte change of every valid frame.
        for frame in valid_frames() {
            for i in 0..frame.len() {
                for value in [0x00, 0xff, frame[i] ^ 0x80] {
                    let mut damaged = frame.clone();
                    damaged[i] = value;
                    line.clear();
                    decode_frame(&damaged, &mut line);
                    let _ = verify_checksums(&damaged);
                }
            }
        }
    }
}
