//! One-line, tcpdump-like decoding of Ethernet frames (etherparse for the framing), and checksum verification with an RFC 1071 reference sum.

use std::fmt::Write;
use std::net::IpAddr;

use etherparse::{NetSlice, SlicedPacket, TcpOptionElement, TransportSlice};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumLayer {
    Ipv4Header,
    Tcp,
    Udp,
    Icmpv4,
    Icmpv6,
}

impl ChecksumLayer {
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
    Valid,
    /// The frame carries no checksum we know (ARP, unknown EtherType, fragments, malformed).
    NotApplicable,
    Invalid {
        layer: ChecksumLayer,
    },
}

/// The RFC 1071 ones'-complement sum of `data`, folded to 16 bits, added to `initial`.
pub fn ones_complement_sum(initial: u32, data: &[u8]) -> u16 {
    let mut sum = initial as u64;
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

fn pseudo_header_sum(src: IpAddr, dst: IpAddr, protocol: u8, len: usize) -> u32 {
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
    sum + u32::from(protocol) + (len as u32 & 0xffff) + (len as u32 >> 16)
}

/// Source, destination, protocol, transport bytes and (IPv4 only) the IP header of a packet.
type IpParts<'a> = (IpAddr, IpAddr, u8, &'a [u8], Option<&'a [u8]>);

/// Splits a frame into its [`IpParts`], or `None` for anything that is not an IPv4 or IPv6
/// packet (a fragment has no transport bytes and protocol 255).
fn ip_parts(frame: &[u8]) -> Option<IpParts<'_>> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let ip = frame.get(14..)?;
    match ethertype {
        0x0800 => {
            let ihl = usize::from(ip.first()? & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
            if ihl < 20 || total < ihl || total > ip.len() {
                return None;
            }
            let fragment = u16::from_be_bytes([ip[6], ip[7]]);
            let header = &ip[..ihl];
            if fragment & 0x3fff != 0 {
                return Some((
                    IpAddr::from(<[u8; 4]>::try_from(&ip[12..16]).ok()?),
                    IpAddr::from(<[u8; 4]>::try_from(&ip[16..20]).ok()?),
                    255,
                    &[],
                    Some(header),
                ));
            }
            Some((
                IpAddr::from(<[u8; 4]>::try_from(&ip[12..16]).ok()?),
                IpAddr::from(<[u8; 4]>::try_from(&ip[16..20]).ok()?),
                ip[9],
                &ip[ihl..total],
                Some(header),
            ))
        }
        0x86dd => {
            let payload = usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]));
            if ip.len() < 40 + payload {
                return None;
            }
            Some((
                IpAddr::from(<[u8; 16]>::try_from(&ip[8..24]).ok()?),
                IpAddr::from(<[u8; 16]>::try_from(&ip[24..40]).ok()?),
                ip[6],
                &ip[40..40 + payload],
                None,
            ))
        }
        _ => None,
    }
}

/// Verifies every checksum the frame carries. Never panics.
pub fn verify_checksums(frame: &[u8]) -> ChecksumStatus {
    let Some((src, dst, protocol, transport, v4_header)) = ip_parts(frame) else {
        return ChecksumStatus::NotApplicable;
    };
    if let Some(header) = v4_header {
        if ones_complement_sum(0, header) != 0xffff {
            return ChecksumStatus::Invalid {
                layer: ChecksumLayer::Ipv4Header,
            };
        }
    }
    let with_pseudo = |layer| {
        let sum = pseudo_header_sum(src, dst, protocol, transport.len());
        if ones_complement_sum(sum, transport) == 0xffff {
            ChecksumStatus::Valid
        } else {
            ChecksumStatus::Invalid { layer }
        }
    };
    match protocol {
        6 if transport.len() >= 20 => with_pseudo(ChecksumLayer::Tcp),
        17 if transport.len() >= 8 => {
            // Over IPv4 a zero UDP checksum means "none" (RFC 768).
            if src.is_ipv4() && transport[6..8] == [0, 0] {
                ChecksumStatus::Valid
            } else {
                with_pseudo(ChecksumLayer::Udp)
            }
        }
        1 if transport.len() >= 4 => {
            if ones_complement_sum(0, transport) == 0xffff {
                ChecksumStatus::Valid
            } else {
                ChecksumStatus::Invalid {
                    layer: ChecksumLayer::Icmpv4,
                }
            }
        }
        58 if transport.len() >= 4 => with_pseudo(ChecksumLayer::Icmpv6),
        _ if v4_header.is_some() => ChecksumStatus::Valid,
        _ => ChecksumStatus::NotApplicable,
    }
}

fn mac(out: &mut String, bytes: &[u8]) {
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let _ = write!(out, "{b:02x}");
    }
}

fn icmpv4(out: &mut String, t: &[u8]) {
    let (ty, code) = (t[0], t[1]);
    let id_seq = |out: &mut String| {
        if t.len() >= 8 {
            let _ = write!(
                out,
                " id {} seq {} len {}",
                u16::from_be_bytes([t[4], t[5]]),
                u16::from_be_bytes([t[6], t[7]]),
                t.len() - 8
            );
        }
    };
    match ty {
        8 => {
            out.push_str("ICMP echo request");
            id_seq(out);
        }
        0 => {
            out.push_str("ICMP echo reply");
            id_seq(out);
        }
        3 => {
            let reason = match code {
                0 => "net unreachable",
                1 => "host unreachable",
                2 => "protocol unreachable",
                3 => "port unreachable",
                4 => "fragmentation needed",
                _ => "unreachable",
            };
            let _ = write!(out, "ICMP {reason}");
        }
        11 => out.push_str("ICMP time exceeded"),
        _ => {
            let _ = write!(out, "ICMP type {ty} code {code}");
        }
    }
}

fn icmpv6(out: &mut String, t: &[u8]) {
    let (ty, code) = (t[0], t[1]);
    let target = |out: &mut String| {
        if let Some(addr) = t.get(8..24).and_then(|a| <[u8; 16]>::try_from(a).ok()) {
            let _ = write!(out, " {}", std::net::Ipv6Addr::from(addr));
        }
    };
    match ty {
        128 | 129 => {
            let _ = write!(
                out,
                "ICMPv6 echo {}",
                if ty == 128 { "request" } else { "reply" }
            );
            if t.len() >= 8 {
                let _ = write!(
                    out,
                    " id {} seq {} len {}",
                    u16::from_be_bytes([t[4], t[5]]),
                    u16::from_be_bytes([t[6], t[7]]),
                    t.len() - 8
                );
            }
        }
        135 => {
            out.push_str("ICMPv6 neighbor solicitation who-has");
            target(out);
        }
        136 => {
            out.push_str("ICMPv6 neighbor advertisement tgt-is");
            target(out);
        }
        133 => out.push_str("ICMPv6 router solicitation"),
        134 => out.push_str("ICMPv6 router advertisement"),
        1 => {
            let reason = match code {
                4 => "port unreachable",
                3 => "address unreachable",
                _ => "unreachable",
            };
            let _ = write!(out, "ICMPv6 {reason}");
        }
        _ => {
            let _ = write!(out, "ICMPv6 type {ty} code {code}");
        }
    }
}

fn arp(out: &mut String, a: &[u8]) {
    if a.len() < 28 || a[0..2] != [0, 1] || a[2..4] != [8, 0] {
        out.push_str("ARP (not Ethernet/IPv4)");
        return;
    }
    let ip = |b: &[u8]| std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]);
    match u16::from_be_bytes([a[6], a[7]]) {
        1 => {
            let _ = write!(
                out,
                "ARP who-has {} tell {}",
                ip(&a[24..28]),
                ip(&a[14..18])
            );
        }
        2 => {
            let _ = write!(out, "ARP reply {} is-at ", ip(&a[14..18]));
            mac(out, &a[8..14]);
        }
        op => {
            let _ = write!(out, "ARP op {op}");
        }
    }
}

/// Appends a one-line decode of an Ethernet frame to `out` (no newline). Never panics.
pub fn decode_frame(frame: &[u8], out: &mut String) {
    if frame.len() < 14 {
        let _ = write!(
            out,
            "[malformed: {} bytes is shorter than an Ethernet header]",
            frame.len()
        );
        return;
    }
    mac(out, &frame[6..12]);
    out.push_str(" > ");
    mac(out, &frame[0..6]);
    out.push(' ');
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    if ethertype == 0x0806 {
        arp(out, &frame[14..]);
        return;
    }
    let packet = match SlicedPacket::from_ethernet(frame) {
        Ok(p) => p,
        Err(e) => {
            let _ = write!(
                out,
                "ethertype {ethertype:#06x} len {} [malformed: {e}]",
                frame.len()
            );
            return;
        }
    };
    let (src, dst) = match &packet.net {
        Some(NetSlice::Ipv4(v4)) => {
            let h = v4.header();
            let _ = write!(out, "IPv4 ttl {} ", h.ttl());
            (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
            )
        }
        Some(NetSlice::Ipv6(v6)) => {
            let h = v6.header();
            out.push_str("IPv6 ");
            (
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
            )
        }
        Some(NetSlice::Arp(_)) | None => {
            let _ = write!(out, "ethertype {ethertype:#06x} len {}", frame.len());
            return;
        }
    };
    match &packet.transport {
        Some(TransportSlice::Tcp(tcp)) => {
            let _ = write!(
                out,
                "{src}.{} > {dst}.{} TCP [",
                tcp.source_port(),
                tcp.destination_port()
            );
            for (set, flag) in [
                (tcp.syn(), 'S'),
                (tcp.fin(), 'F'),
                (tcp.rst(), 'R'),
                (tcp.psh(), 'P'),
                (tcp.urg(), 'U'),
                (tcp.ece(), 'E'),
                (tcp.cwr(), 'W'),
                (tcp.ack(), '.'),
            ] {
                if set {
                    out.push(flag);
                }
            }
            let _ = write!(out, "] seq {}", tcp.sequence_number());
            if tcp.ack() {
                let _ = write!(out, " ack {}", tcp.acknowledgment_number());
            }
            let _ = write!(out, " win {}", tcp.window_size());
            let mut first = true;
            for option in tcp.options_iterator() {
                out.push_str(if first { " <" } else { "," });
                first = false;
                match option {
                    Ok(TcpOptionElement::Noop) => out.push_str("nop"),
                    Ok(TcpOptionElement::MaximumSegmentSize(m)) => {
                        let _ = write!(out, "mss {m}");
                    }
                    Ok(TcpOptionElement::WindowScale(w)) => {
                        let _ = write!(out, "wscale {w}");
                    }
                    Ok(TcpOptionElement::SelectiveAcknowledgementPermitted) => {
                        out.push_str("sackOK")
                    }
                    Ok(TcpOptionElement::SelectiveAcknowledgement(first, rest)) => {
                        let _ = write!(out, "sack {}:{}", first.0, first.1);
                        for (l, r) in rest.iter().flatten() {
                            let _ = write!(out, " {l}:{r}");
                        }
                    }
                    Ok(TcpOptionElement::Timestamp(val, ecr)) => {
                        let _ = write!(out, "TS val {val} ecr {ecr}");
                    }
                    Err(_) => out.push_str("[bad option]"),
                }
            }
            if !first {
                out.push('>');
            }
            let _ = write!(out, " len {}", tcp.payload().len());
        }
        Some(TransportSlice::Udp(udp)) => {
            let _ = write!(
                out,
                "{src}.{} > {dst}.{} UDP len {}",
                udp.source_port(),
                udp.destination_port(),
                udp.payload().len()
            );
        }
        Some(TransportSlice::Icmpv4(icmp)) => {
            let _ = write!(out, "{src} > {dst} ");
            icmpv4(out, icmp.slice());
        }
        Some(TransportSlice::Icmpv6(icmp)) => {
            let _ = write!(out, "{src} > {dst} ");
            icmpv6(out, icmp.slice());
        }
        _ => {
            let _ = write!(out, "{src} > {dst} len {}", frame.len() - 14);
        }
    }
    if let ChecksumStatus::Invalid { layer } = verify_checksums(frame) {
        let _ = write!(out, " [bad cksum {}]", layer.name());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn tcp_syn() -> Vec<u8> {
        let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(49152, 80, 1000, 64240)
            .syn()
            .options(&[
                TcpOptionElement::MaximumSegmentSize(1460),
                TcpOptionElement::Noop,
                TcpOptionElement::WindowScale(7),
            ])
            .unwrap();
        let mut out = Vec::new();
        builder.write(&mut out, &[]).unwrap();
        out
    }

    fn udp_v6() -> Vec<u8> {
        let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6(
                [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                64,
            )
            .udp(5000, 7);
        let mut out = Vec::new();
        builder.write(&mut out, &[1, 2, 3, 4]).unwrap();
        out
    }

    #[test]
    fn frames_decode_to_tcpdump_like_lines() {
        let mut line = String::new();
        decode_frame(&tcp_syn(), &mut line);
        assert_eq!(
            line,
            "02:00:00:00:00:01 > 02:00:00:00:00:02 IPv4 ttl 64 10.0.0.1.49152 > 10.0.0.2.80 TCP [S] seq 1000 win 64240 <mss 1460,nop,wscale 7> len 0"
        );
        line.clear();
        decode_frame(&udp_v6(), &mut line);
        assert_eq!(
            line,
            "02:00:00:00:00:01 > 02:00:00:00:00:02 IPv6 2001:db8::1.5000 > 2001:db8::2.7 UDP len 4"
        );
        let mut arp_frame = vec![0xff; 6];
        arp_frame.extend([2, 0, 0, 0, 0, 1, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
        arp_frame.extend([2, 0, 0, 0, 0, 1, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2]);
        line.clear();
        decode_frame(&arp_frame, &mut line);
        assert_eq!(
            line,
            "02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff ARP who-has 10.0.0.2 tell 10.0.0.1"
        );
    }

    #[test]
    fn checksums_are_verified_and_a_flipped_bit_is_caught() {
        assert_eq!(verify_checksums(&tcp_syn()), ChecksumStatus::Valid);
        assert_eq!(verify_checksums(&udp_v6()), ChecksumStatus::Valid);
        let mut bad = tcp_syn();
        *bad.last_mut().unwrap() ^= 0x10;
        assert_eq!(
            verify_checksums(&bad),
            ChecksumStatus::Invalid {
                layer: ChecksumLayer::Tcp
            }
        );
        let mut bad_ip = tcp_syn();
        bad_ip[14 + 8] ^= 1; // ttl
        assert_eq!(
            verify_checksums(&bad_ip),
            ChecksumStatus::Invalid {
                layer: ChecksumLayer::Ipv4Header
            }
        );
        let mut line = String::new();
        decode_frame(&bad, &mut line);
        assert!(line.ends_with("[bad cksum tcp]"), "{line}");
    }

    #[test]
    fn truncated_and_random_frames_never_panic() {
        let frame = tcp_syn();
        let mut line = String::new();
        for cut in 0..frame.len() {
            line.clear();
            decode_frame(&frame[..cut], &mut line);
            let _ = verify_checksums(&frame[..cut]);
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..300 {
            let data: Vec<u8> = (0..len)
                .map(|i| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // Keep the IPv4 EtherType often, so the deeper decoders get exercised.
                    if i == 12 {
                        0x08
                    } else if i == 13 {
                        0
                    } else {
                        x as u8
                    }
                })
                .collect();
            line.clear();
            decode_frame(&data, &mut line);
            let _ = verify_checksums(&data);
        }
    }
}
