//! The one-line, tcpdump-like text of a decoded frame ([`Decoded`], so cut-off frames still show what they hold); the checksum functions are re-exported here from [`crate::checksum`].
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

use std::fmt::{self, Write};
use std::net::Ipv4Addr;

use etherparse::err::packet::SliceError;
use etherparse::err::Layer;

use crate::frame::{
    Arp, Decoded, Icmp, Ip, IpHeader, LinkExt, Malformed, Net, Quoted, TcpFlags, TcpOption,
    TcpOptionBytes, Transport,
};

// Checksums were decoded here before they had a module of their own; these paths still work.
pub use crate::checksum::{
    ones_complement_sum, pseudo_header_sum, verify_checksums, ChecksumLayer, ChecksumStatus,
};

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

impl fmt::Display for Malformed {
    /// The reason as decoded lines show it inside `[malformed: ...]`.
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        use etherparse::err::{ip, ipv4, ipv6, tcp};
        match self {
            Malformed::NoEthernetHeader { len } => {
                write!(out, "{len} bytes is shorter than an Ethernet header")
            }
            Malformed::Slice(SliceError::Len(e)) => write!(
                out,
                "{} needs {} bytes, {} present",
                layer_name(e.layer),
                e.required_len,
                e.len
            ),
            Malformed::Slice(SliceError::Ip(ip::HeaderError::UnsupportedIpVersion {
                version_number,
            })) => write!(out, "IP version {version_number}"),
            Malformed::Slice(SliceError::Ip(
                ip::HeaderError::Ipv4HeaderLengthSmallerThanHeader { ihl },
            ))
            | Malformed::Slice(SliceError::Ipv4(
                ipv4::HeaderError::HeaderLengthSmallerThanHeader { ihl },
            )) => write!(out, "IPv4 header length {ihl} words, less than 5"),
            Malformed::Slice(SliceError::Ipv4(ipv4::HeaderError::UnexpectedVersion {
                version_number,
            }))
            | Malformed::Slice(SliceError::Ipv6(ipv6::HeaderError::UnexpectedVersion {
                version_number,
            })) => write!(out, "IP version {version_number}"),
            Malformed::Slice(SliceError::Tcp(tcp::HeaderError::DataOffsetTooSmall {
                data_offset,
            })) => write!(out, "TCP data offset {data_offset} words, less than 5"),
            // The remaining errors (IP authentication and IPv6 extension headers, MACsec,
            // Linux cooked captures) are rare enough for etherparse's own wording.
            Malformed::Slice(other) => write!(out, "{other}"),
            Malformed::Cut {
                what,
                declared,
                present,
            } => write!(out, "{what} says {declared} bytes, {present} present"),
            Malformed::BelowHeader {
                what,
                declared,
                header,
            } => write!(
                out,
                "{what} {declared} is less than the {header}-byte header"
            ),
            Malformed::VersionMismatch {
                ether_type,
                version,
            } => write!(
                out,
                "IP version {version} under EtherType {ether_type:#06x}"
            ),
            Malformed::Short { what, len } => write!(out, "{what} of {len} bytes is too short"),
        }
    }
}

fn ether_type_label(out: &mut String, ether_type: u16, frame_len: usize) {
    let _ = match ether_type {
        0x0800 => write!(out, "IPv4"),
        0x86dd => write!(out, "IPv6"),
        0x0806 => write!(out, "ARP"),
        // Values up to 1500 are IEEE 802.3 lengths, not types.
        len if len <= 1500 => write!(out, "802.3 len {frame_len}"),
        value => write!(out, "ethertype {value:#06x} len {frame_len}"),
    };
}

fn arp(out: &mut String, a: &Arp) {
    let Some(addresses) = &a.addresses else {
        let _ = write!(
            out,
            "ARP hw {} proto {:#06x} op {}",
            a.hardware_type, a.protocol_type, a.operation
        );
        return;
    };
    let (spa, tpa) = (addresses.sender_ip, addresses.target_ip);
    let _ = match a.operation {
        Arp::REQUEST => write!(out, "ARP who-has {tpa} tell {spa}"),
        Arp::REPLY => write!(out, "ARP reply {spa} is-at {}", addresses.sender_mac),
        op => write!(out, "ARP op {op} {spa} > {tpa}"),
    };
}

/// Writes ` for <proto> <src>[.port] > <dst>[.port]` for the datagram an ICMP error quotes.
fn quoted(out: &mut String, quoted: Option<&Quoted>) {
    let Some(q) = quoted else {
        return;
    };
    let _ = match q.protocol {
        6 => write!(out, " for TCP"),
        17 => write!(out, " for UDP"),
        1 => write!(out, " for ICMP"),
        58 => write!(out, " for ICMPv6"),
        other => write!(out, " for proto {other}"),
    };
    let (src, dst) = (q.src, q.dst);
    let _ = match q.ports {
        Some((sport, dport)) => write!(out, " {src}.{sport} > {dst}.{dport}"),
        None => write!(out, " {src} > {dst}"),
    };
}

/// Writes an ICMPv4 message; `declared_len` is the IP payload's length by its header.
fn icmpv4(out: &mut String, m: &Icmp, declared_len: usize) {
    let (ty, code) = (m.icmp_type, m.code);
    let rest = m.rest_of_header;
    let echo = |out: &mut String, what: &str| {
        let (id, seq) = m.echo();
        let _ = write!(
            out,
            "ICMP echo {what} id {id} seq {seq} len {}",
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
                let _ = write!(out, " mtu {}", u16::from_be_bytes([rest[2], rest[3]]));
            }
            quoted(out, m.quoted.as_ref());
        }
        11 => {
            out.push_str(if code == 1 {
                "ICMP time exceeded in reassembly"
            } else {
                "ICMP time exceeded in transit"
            });
            quoted(out, m.quoted.as_ref());
        }
        12 => {
            let _ = write!(out, "ICMP parameter problem pointer {}", rest[0]);
            quoted(out, m.quoted.as_ref());
        }
        5 => {
            let _ = write!(out, "ICMP redirect to {}", Ipv4Addr::from(rest));
            quoted(out, m.quoted.as_ref());
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

/// Writes an ICMPv6 message; `declared_len` is the IP payload's length by its header.
fn icmpv6(out: &mut String, m: &Icmp, declared_len: usize) {
    let (ty, code) = (m.icmp_type, m.code);
    let word = u32::from_be_bytes(m.rest_of_header);
    let target = |out: &mut String| {
        if let Some(addr) = m.target {
            let _ = write!(out, " {addr}");
        }
    };
    match ty {
        128 | 129 => {
            let (id, seq) = m.echo();
            let _ = write!(
                out,
                "ICMPv6 echo {} id {id} seq {seq} len {}",
                if ty == 128 { "request" } else { "reply" },
                declared_len.saturating_sub(8)
            );
        }
        135 => {
            out.push_str("ICMPv6 neighbor solicitation who-has");
            target(out);
        }
        136 => {
            out.push_str("ICMPv6 neighbor advertisement tgt-is");
            target(out);
        }
        137 => {
            out.push_str("ICMPv6 redirect to");
            target(out);
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
            quoted(out, m.quoted.as_ref());
        }
        2 => {
            let _ = write!(out, "ICMPv6 packet too big mtu {word}");
            quoted(out, m.quoted.as_ref());
        }
        3 => {
            out.push_str(if code == 1 {
                "ICMPv6 time exceeded in reassembly"
            } else {
                "ICMPv6 time exceeded in transit"
            });
            quoted(out, m.quoted.as_ref());
        }
        4 => {
            let _ = write!(out, "ICMPv6 parameter problem code {code} pointer {word}");
            quoted(out, m.quoted.as_ref());
        }
        _ => {
            let _ = write!(out, "ICMPv6 type {ty} code {code}");
        }
    }
}

/// Writes the options as tcpdump does (`<mss 1460,nop,wscale 7,sackOK,TS val 1 ecr 0>`).
/// Unknown kinds print as `unknown-N` and are skipped by their length; an option that
/// does not fit prints `[bad opt]` and ends the list, as does End of Option List (`eol`:
/// what follows is padding).
fn tcp_options(out: &mut String, options: &TcpOptionBytes) {
    if options.is_empty() {
        return;
    }
    out.push_str(" <");
    for (i, option) in options.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = match option {
            TcpOption::Eol => {
                out.push_str("eol");
                break;
            }
            TcpOption::Nop => write!(out, "nop"),
            TcpOption::Mss(m) => write!(out, "mss {m}"),
            TcpOption::WindowScale(w) => write!(out, "wscale {w}"),
            TcpOption::SackPermitted => write!(out, "sackOK"),
            TcpOption::Sack(blocks) => {
                for (n, (l, r)) in blocks.iter().enumerate() {
                    let _ = write!(out, "{}{l}:{r}", if n == 0 { "sack " } else { " " });
                }
                Ok(())
            }
            TcpOption::Timestamp { value, echo } => write!(out, "TS val {value} ecr {echo}"),
            TcpOption::Unknown { kind, .. } => write!(out, "unknown-{kind}"),
            TcpOption::Malformed { kind } if !TcpOption::is_known_kind(kind) => {
                let _ = write!(out, "unknown-{kind} [bad opt]");
                break;
            }
            TcpOption::BadLength { .. } | TcpOption::Malformed { .. } => {
                out.push_str("[bad opt]");
                break;
            }
        };
    }
    out.push('>');
}

impl Decoded {
    /// Appends the frame's one-line human-readable decode to `out` (no trailing newline):
    /// addresses, protocol, the fields tcpdump shows, then ` [malformed: ...]` and
    /// ` [bad cksum ...]` when they apply.
    pub fn write_line(&self, out: &mut String) {
        let Some(eth) = &self.ethernet else {
            let _ = match &self.malformed {
                Some(problem) => write!(out, "[malformed: {problem}]"),
                None => write!(out, "len {}", self.len),
            };
            return;
        };
        let _ = write!(out, "{} > {}", eth.src, eth.dst);
        for ext in self.link_exts.iter().flatten() {
            let _ = match ext {
                LinkExt::Vlan { id } => write!(out, " vlan {id}"),
                LinkExt::Macsec => write!(out, " macsec"),
            };
        }
        out.push(' ');
        match &self.net {
            Some(Net::Arp(a)) => arp(out, a),
            Some(Net::Ip(ip)) => self.write_ip(out, ip),
            None => match self.ether_type {
                Some(t) => ether_type_label(out, t, self.len),
                // MACsec with an encrypted payload: nothing more to read.
                None => {
                    let _ = write!(out, "len {}", self.len);
                }
            },
        }
        if let Some(problem) = &self.malformed {
            let _ = write!(out, " [malformed: {problem}]");
        }
        if let ChecksumStatus::Invalid { layer } = self.checksum {
            let _ = write!(out, " [bad cksum {}]", layer.name());
        }
    }

    /// The one-line decode as a string of its own.
    pub fn line(&self) -> String {
        let mut out = String::new();
        self.write_line(&mut out);
        out
    }

    fn write_ip(&self, out: &mut String, ip: &Ip) {
        out.push_str(if ip.version() == 4 { "IPv4 " } else { "IPv6 " });
        let (src, dst) = (ip.src, ip.dst);
        let _ = match self.ports() {
            Some((sport, dport)) => write!(out, "{src}.{sport} > {dst}.{dport}"),
            None => write!(out, "{src} > {dst}"),
        };
        match ip.header {
            IpHeader::V4 {
                id,
                more_fragments,
                fragment_offset,
                ..
            } => {
                let _ = write!(out, " ttl {}", ip.hop_limit);
                if ip.fragmented {
                    let more = if more_fragments { "+" } else { "" };
                    let _ = write!(out, " frag id {id} off {fragment_offset}{more}");
                }
            }
            IpHeader::V6 { .. } => {
                let _ = write!(out, " hlim {}", ip.hop_limit);
                if ip.fragmented {
                    out.push_str(" frag");
                }
            }
        }
        let declared = ip.declared_payload_len;
        match &self.transport {
            Some(Transport::Tcp(tcp)) => {
                let _ = write!(out, " TCP {} seq {}", tcp.flags.tcpdump(tcp.ns), tcp.seq);
                if tcp.flags.has(TcpFlags::ACK) {
                    let _ = write!(out, " ack {}", tcp.ack);
                }
                let _ = write!(out, " win {}", tcp.window);
                if tcp.flags.has(TcpFlags::URG) {
                    let _ = write!(out, " urg {}", tcp.urgent);
                }
                tcp_options(out, &tcp.options);
                let _ = write!(out, " len {}", declared.saturating_sub(tcp.header_len));
            }
            Some(Transport::Udp(udp)) => {
                let _ = write!(out, " UDP len {}", udp.length.max(8) - 8);
            }
            Some(Transport::Icmpv4(icmp)) => {
                out.push(' ');
                icmpv4(out, icmp, declared);
            }
            Some(Transport::Icmpv6(icmp)) => {
                out.push(' ');
                icmpv6(out, icmp, declared);
            }
            Some(Transport::Igmp) => {
                let _ = write!(out, " IGMP len {declared}");
            }
            None => {
                // A fragment, a protocol etherparse does not slice, or a transport header it
                // could not read (the problem says which).
                if !matches!(self.malformed, Some(Malformed::Slice(_))) {
                    let _ = write!(out, " proto {} len {declared}", ip.protocol);
                }
            }
        }
    }
}

/// Appends a one-line human-readable decode of an Ethernet frame to `out` (no trailing
/// newline); see [`Decoded::write_line`]. Never panics, whatever the bytes.
pub fn decode_frame(frame: &[u8], out: &mut String) {
    Decoded::parse(frame).write_line(out);
}

/// A virtual time in seconds with six decimals (`1.000250`), as traces and reports show it.
pub fn format_time(time_us: u64) -> String {
    format!("{}.{:06}", time_us / 1_000_000, time_us % 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{ArpEthIpv4Packet, ArpOperation, PacketBuilder, TcpOptionElement};

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
