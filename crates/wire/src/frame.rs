//! One checked parse of an Ethernet frame into [`Decoded`], the record that every reader of a frame shares (trace and snapshot text, oracles, expectations, goldens, differential runs, the script peer), and the TCP flags and options types they read it through.
//!
//! The parse is etherparse's lax slicing ([`LaxSlicedPacket::from_ethernet`]): it checks each
//! length before it reads and stops at the first inconsistency instead of failing, so a frame
//! that is cut off or damaged still shows what it holds, and [`Decoded::malformed`] says where
//! and why it stopped. [`Decoded::parse`] is the only way in; it takes any bytes and never
//! panics. The record holds values, not borrowed slices: what varies in length (a payload, an
//! ICMP message) is a range into the frame's bytes, and the TCP options are copied (at most 40
//! bytes), so a record outlives its frame's borrow and a run keeps one per frame in a `Vec`.
//! Building one allocates nothing.
//!
//! Frames are parsed after a run, once each; the simulator's hot path never parses.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use etherparse::err::packet::SliceError;
use etherparse::{
    ether_type, ip_number, ArpHardwareId, ArpPacketSlice, LaxIpPayloadSlice, LaxLinkExtSlice,
    LaxNetSlice, LaxSlicedPacket, LenSource, LinkSlice, TransportSlice,
};
use stack::MacAddr;

use crate::checksum::{verify_sliced, ChecksumStatus};

/// Everything the readers of a frame look at, from one parse of its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// The frame's length in bytes (as captured).
    pub len: usize,
    /// `None` only when the frame is shorter than an Ethernet header; nothing else is then
    /// decoded.
    pub ethernet: Option<Ethernet>,
    /// VLAN tags and MACsec headers after the Ethernet header, outermost first (etherparse
    /// reads at most three).
    pub link_exts: [Option<LinkExt>; 3],
    /// The EtherType of what follows the link headers (the Ethernet header's own unless a
    /// VLAN tag follows it); `None` when a MACsec payload is encrypted.
    pub ether_type: Option<u16>,
    pub net: Option<Net>,
    /// The transport header, when the IP payload is not a fragment and its header could be
    /// read.
    pub transport: Option<Transport>,
    /// Every checksum the frame carries, verified (see [`crate::checksum::verify_checksums`]).
    pub checksum: ChecksumStatus,
    /// The first inconsistency found, from the outside in: where the lax parse stopped, or a
    /// length field that does not fit. `None` for a sound frame.
    pub malformed: Option<Malformed>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ethernet {
    pub src: MacAddr,
    pub dst: MacAddr,
    /// The Ethernet header's own EtherType field.
    pub ether_type: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkExt {
    Vlan { id: u16 },
    Macsec,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Net {
    Arp(Arp),
    Ip(Ip),
}

/// An ARP packet (RFC 826).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arp {
    pub hardware_type: u16,
    pub protocol_type: u16,
    pub hardware_len: u8,
    pub protocol_len: u8,
    pub operation: u16,
    /// The addresses, when the packet maps IPv4 onto Ethernet (the only kind wirelab's stacks
    /// send); other kinds keep only their header fields.
    pub addresses: Option<ArpAddresses>,
}

impl Arp {
    pub const REQUEST: u16 = 1;
    pub const REPLY: u16 = 2;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpAddresses {
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

/// An IPv4 or IPv6 header and where its payload is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ip {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The TTL of IPv4, the hop limit of IPv6.
    pub hop_limit: u8,
    /// The payload's protocol number (for IPv6, after any extension headers).
    pub protocol: u8,
    pub header: IpHeader,
    /// The payload is a fragment (an IPv4 offset or more-fragments flag, an IPv6 fragment
    /// header), so its transport header is not read.
    pub fragmented: bool,
    /// The payload bytes in the frame: up to where the header says the packet ends, or to
    /// the end of the frame when it is cut off.
    pub payload: Range<usize>,
    /// The payload's length by the header, which is more than `payload` holds when the frame
    /// is cut off.
    pub declared_payload_len: usize,
    /// The payload is all there and its length came from the header (an IPv4 total length
    /// below the header's own length leaves the frame's end to decide).
    pub complete: bool,
}

/// The fields one IP version has and the other does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpHeader {
    V4 {
        /// The IHL field in bytes.
        header_len: usize,
        total_len: u16,
        id: u16,
        checksum: u16,
        more_fragments: bool,
        /// The fragment offset in bytes.
        fragment_offset: u32,
    },
    V6 {
        /// The payload length field.
        payload_len: u16,
    },
}

impl Ip {
    pub fn version(&self) -> u8 {
        match self.header {
            IpHeader::V4 { .. } => 4,
            IpHeader::V6 { .. } => 6,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp(Tcp),
    Udp(Udp),
    Icmpv4(Icmp),
    Icmpv6(Icmp),
    /// IGMP, which nothing reads further.
    Igmp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tcp {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    /// The ECN-nonce bit of RFC 3540 (historic), in what RFC 9293 keeps reserved.
    pub ns: bool,
    pub window: u16,
    pub checksum: u16,
    pub urgent: u16,
    /// The data offset in bytes.
    pub header_len: usize,
    pub options: TcpOptionBytes,
    /// The payload bytes in the frame (fewer than the IP header declares when the frame is
    /// cut off).
    pub payload: Range<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Udp {
    pub src_port: u16,
    pub dst_port: u16,
    /// The length field, as sent.
    pub length: u16,
    pub checksum: u16,
    /// The payload bytes in the frame: as many as the length field says when they are there
    /// and it is at least 8, otherwise all the IP payload holds.
    pub payload: Range<usize>,
}

/// An ICMPv4 or ICMPv6 message (the [`Transport`] variant says which).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Icmp {
    pub icmp_type: u8,
    pub code: u8,
    pub checksum: u16,
    /// Bytes 4 to 7: an echo's identifier and sequence number, an unreachable's next-hop
    /// MTU, a parameter problem's pointer, a redirect's gateway.
    pub rest_of_header: [u8; 4],
    /// The whole message in the frame, header included (at least 8 bytes).
    pub message: Range<usize>,
    /// The target address of an ICMPv6 neighbor solicitation, advertisement or redirect.
    pub target: Option<Ipv6Addr>,
    /// What an error message quotes, when it quotes a datagram that parses.
    pub quoted: Option<Quoted>,
}

impl Icmp {
    /// The identifier and sequence number, which mean something in echo messages.
    pub fn echo(&self) -> (u16, u16) {
        let r = self.rest_of_header;
        (
            u16::from_be_bytes([r[0], r[1]]),
            u16::from_be_bytes([r[2], r[3]]),
        )
    }

    /// The message's data after its 8-byte header.
    pub fn data<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        bytes_at(frame, &self.message).get(8..).unwrap_or(&[])
    }
}

/// The datagram an ICMP error quotes, as far as its first bytes tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quoted {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    /// The ports of a quoted TCP or UDP header (its first 4 bytes, which RFC 792 promises).
    pub ports: Option<(u16, u16)>,
}

/// Why a frame does not decode cleanly; rendered at the end of its line (`[malformed: ...]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Fewer bytes than an Ethernet header.
    NoEthernetHeader { len: usize },
    /// etherparse stopped slicing here.
    Slice(SliceError),
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

impl Decoded {
    /// Decodes `frame`, whatever its bytes: the one checked way from bytes to a record.
    pub fn parse(frame: &[u8]) -> Decoded {
        let mut decoded = Decoded {
            len: frame.len(),
            ethernet: None,
            link_exts: [None; 3],
            ether_type: None,
            net: None,
            transport: None,
            checksum: ChecksumStatus::NotApplicable,
            malformed: None,
        };
        let Ok(packet) = LaxSlicedPacket::from_ethernet(frame) else {
            decoded.malformed = Some(Malformed::NoEthernetHeader { len: frame.len() });
            return decoded;
        };
        if let Some(LinkSlice::Ethernet2(eth)) = &packet.link {
            decoded.ethernet = Some(Ethernet {
                src: MacAddr(eth.source()),
                dst: MacAddr(eth.destination()),
                ether_type: eth.ether_type().0,
            });
        }
        for (slot, ext) in decoded.link_exts.iter_mut().zip(&packet.link_exts) {
            *slot = Some(match ext {
                LaxLinkExtSlice::Vlan(v) => LinkExt::Vlan {
                    id: v.vlan_identifier().value(),
                },
                LaxLinkExtSlice::Macsec(_) => LinkExt::Macsec,
            });
        }
        let ether_payload = packet.ether_payload();
        decoded.ether_type = ether_payload.as_ref().map(|p| p.ether_type.0);
        // The bytes from the IP header to the end of the frame, to measure offsets in.
        let ip_packet = ether_payload.as_ref().map_or(&[][..], |p| p.payload);
        let mut problem = packet
            .stop_err
            .as_ref()
            .map(|(e, _)| Malformed::Slice(e.clone()));
        match &packet.net {
            Some(LaxNetSlice::Arp(a)) => decoded.net = Some(Net::Arp(arp(a))),
            Some(LaxNetSlice::Ipv4(_) | LaxNetSlice::Ipv6(_)) => {
                let found = ip(&mut decoded, frame, &packet, ip_packet);
                problem = problem.or(found);
            }
            None => {}
        }
        decoded.malformed = problem;
        decoded.checksum = verify_sliced(&packet);
        decoded
    }

    pub fn src_mac(&self) -> Option<MacAddr> {
        self.ethernet.map(|e| e.src)
    }

    pub fn dst_mac(&self) -> Option<MacAddr> {
        self.ethernet.map(|e| e.dst)
    }

    pub fn arp(&self) -> Option<&Arp> {
        match &self.net {
            Some(Net::Arp(arp)) => Some(arp),
            _ => None,
        }
    }

    pub fn ip(&self) -> Option<&Ip> {
        match &self.net {
            Some(Net::Ip(ip)) => Some(ip),
            _ => None,
        }
    }

    pub fn tcp(&self) -> Option<&Tcp> {
        match &self.transport {
            Some(Transport::Tcp(tcp)) => Some(tcp),
            _ => None,
        }
    }

    pub fn udp(&self) -> Option<&Udp> {
        match &self.transport {
            Some(Transport::Udp(udp)) => Some(udp),
            _ => None,
        }
    }

    pub fn icmpv4(&self) -> Option<&Icmp> {
        match &self.transport {
            Some(Transport::Icmpv4(icmp)) => Some(icmp),
            _ => None,
        }
    }

    pub fn icmpv6(&self) -> Option<&Icmp> {
        match &self.transport {
            Some(Transport::Icmpv6(icmp)) => Some(icmp),
            _ => None,
        }
    }

    /// The source and destination ports of a TCP or UDP header.
    pub fn ports(&self) -> Option<(u16, u16)> {
        match &self.transport {
            Some(Transport::Tcp(t)) => Some((t.src_port, t.dst_port)),
            Some(Transport::Udp(u)) => Some((u.src_port, u.dst_port)),
            _ => None,
        }
    }
}

/// The bytes of `range` in `frame`, or none when the range is not in it (a record read
/// against another frame than its own).
pub fn bytes_at<'a>(frame: &'a [u8], range: &Range<usize>) -> &'a [u8] {
    frame.get(range.clone()).unwrap_or(&[])
}

impl Tcp {
    pub fn payload_of<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        bytes_at(frame, &self.payload)
    }
}

/// Where `inner` starts inside `outer`, when it does.
fn offset_in(outer: &[u8], inner: &[u8]) -> Option<usize> {
    let start = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    (start + inner.len() <= outer.len()).then_some(start)
}

/// The range `inner` covers in `outer` (every slice etherparse hands out of a frame is in it).
fn range_in(outer: &[u8], inner: &[u8]) -> Range<usize> {
    offset_in(outer, inner).map_or(0..0, |start| start..start + inner.len())
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

fn mac_at(bytes: &[u8]) -> Option<MacAddr> {
    <[u8; 6]>::try_from(bytes).ok().map(MacAddr)
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

fn arp(a: &ArpPacketSlice<'_>) -> Arp {
    let eth_ipv4 = a.hw_addr_type() == ArpHardwareId::ETHERNET
        && a.proto_addr_type() == ether_type::IPV4
        && a.hw_addr_size() == 6
        && a.proto_addr_size() == 4;
    let addresses = || {
        Some(ArpAddresses {
            sender_mac: mac_at(a.sender_hw_addr())?,
            sender_ip: ipv4_at(a.sender_protocol_addr())?,
            target_mac: mac_at(a.target_hw_addr())?,
            target_ip: ipv4_at(a.target_protocol_addr())?,
        })
    };
    Arp {
        hardware_type: a.hw_addr_type().0,
        protocol_type: a.proto_addr_type().0,
        hardware_len: a.hw_addr_size(),
        protocol_len: a.proto_addr_size(),
        operation: a.operation().0,
        addresses: if eth_ipv4 { addresses() } else { None },
    }
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

/// Decodes the IP part of a packet whose `net` is IPv4 or IPv6 into `decoded`; returns the
/// first inconsistency in the lengths it finds.
fn ip(
    decoded: &mut Decoded,
    frame: &[u8],
    packet: &LaxSlicedPacket<'_>,
    ip_packet: &[u8],
) -> Option<Malformed> {
    let ether_type = decoded.ether_type;
    let mismatch = |version: u8, expected: u16| {
        ether_type
            .filter(|t| *t != expected)
            .map(|t| Malformed::VersionMismatch {
                ether_type: t,
                version,
            })
    };
    let mut problem;
    let ip = match &packet.net {
        Some(LaxNetSlice::Ipv4(v4)) => {
            let h = v4.header();
            problem = mismatch(4, ether_type::IPV4.0);
            let total = usize::from(h.total_len());
            let payload = v4.payload();
            if payload.incomplete {
                problem = problem.or(Some(Malformed::Cut {
                    what: "IPv4 total length",
                    declared: total,
                    present: ip_packet.len(),
                }));
            } else if payload.len_source == LenSource::Slice {
                problem = problem.or(Some(Malformed::BelowHeader {
                    what: "IPv4 total length",
                    declared: total,
                    header: h.slice().len(),
                }));
            }
            let header = IpHeader::V4 {
                header_len: h.slice().len(),
                total_len: h.total_len(),
                id: h.identification(),
                checksum: h.header_checksum(),
                more_fragments: h.more_fragments(),
                fragment_offset: u32::from(h.fragments_offset().value()) * 8,
            };
            Ip {
                src: IpAddr::V4(h.source_addr()),
                dst: IpAddr::V4(h.destination_addr()),
                hop_limit: h.ttl(),
                protocol: payload.ip_number.0,
                header,
                fragmented: payload.fragmented,
                payload: range_in(frame, payload.payload),
                declared_payload_len: declared_payload_len(payload, ip_packet, total),
                complete: !payload.incomplete && payload.len_source != LenSource::Slice,
            }
        }
        Some(LaxNetSlice::Ipv6(v6)) => {
            let h = v6.header();
            problem = mismatch(6, ether_type::IPV6.0);
            let payload = v6.payload();
            let total = 40 + usize::from(h.payload_length());
            if payload.incomplete {
                problem = problem.or(Some(Malformed::Cut {
                    what: "IPv6 payload length",
                    declared: total - 40,
                    present: ip_packet.len().saturating_sub(40),
                }));
            }
            Ip {
                src: IpAddr::V6(h.source_addr()),
                dst: IpAddr::V6(h.destination_addr()),
                hop_limit: h.hop_limit(),
                protocol: payload.ip_number.0,
                header: IpHeader::V6 {
                    payload_len: h.payload_length(),
                },
                fragmented: payload.fragmented,
                payload: range_in(frame, payload.payload),
                declared_payload_len: declared_payload_len(payload, ip_packet, total),
                complete: !payload.incomplete && payload.len_source != LenSource::Slice,
            }
        }
        _ => return None,
    };
    let declared = ip.declared_payload_len;
    decoded.transport = match &packet.transport {
        Some(TransportSlice::Tcp(t)) => Some(Transport::Tcp(Tcp {
            src_port: t.source_port(),
            dst_port: t.destination_port(),
            seq: t.sequence_number(),
            ack: t.acknowledgment_number(),
            flags: TcpFlags::from_bits([
                t.fin(),
                t.syn(),
                t.rst(),
                t.psh(),
                t.ack(),
                t.urg(),
                t.ece(),
                t.cwr(),
            ]),
            ns: t.ns(),
            window: t.window_size(),
            checksum: t.checksum(),
            urgent: t.urgent_pointer(),
            header_len: t.header_len(),
            options: TcpOptionBytes::new(t.options()),
            payload: range_in(frame, t.payload()),
        })),
        Some(TransportSlice::Udp(u)) => {
            let udp_len = usize::from(u.length());
            if udp_len < 8 {
                problem = problem.or(Some(Malformed::BelowHeader {
                    what: "UDP length",
                    declared: udp_len,
                    header: 8,
                }));
            } else if udp_len > declared {
                problem = problem.or(Some(Malformed::Cut {
                    what: "UDP length",
                    declared: udp_len,
                    present: declared,
                }));
            }
            Some(Transport::Udp(Udp {
                src_port: u.source_port(),
                dst_port: u.destination_port(),
                length: u.length(),
                checksum: u.checksum(),
                payload: range_in(frame, u.payload()),
            }))
        }
        Some(TransportSlice::Icmpv4(m)) => {
            let quotes = matches!(m.type_u8(), 3 | 5 | 11 | 12);
            let (icmp, _) = icmp(frame, m.slice(), m.checksum(), quotes, None);
            Some(Transport::Icmpv4(icmp))
        }
        Some(TransportSlice::Icmpv6(m)) => {
            let quotes = matches!(m.type_u8(), 1..=4);
            let target = match m.type_u8() {
                135 => Some("neighbor solicitation"),
                136 => Some("neighbor advertisement"),
                137 => Some("redirect"),
                _ => None,
            };
            let (icmp, short) = icmp(frame, m.slice(), m.checksum(), quotes, target);
            problem = problem.or(short);
            Some(Transport::Icmpv6(icmp))
        }
        Some(TransportSlice::Igmp(_)) => Some(Transport::Igmp),
        // A fragment, a protocol etherparse does not slice, or a transport header it could
        // not read (the stop error says which).
        None => None,
    };
    decoded.net = Some(Net::Ip(ip));
    problem
}

/// An ICMP message `m` (at least its 8-byte header, as etherparse checks). `target_of` names
/// an ICMPv6 message that carries a target address after its header.
fn icmp(
    frame: &[u8],
    m: &[u8],
    checksum: u16,
    quotes: bool,
    target_of: Option<&'static str>,
) -> (Icmp, Option<Malformed>) {
    let header = |at: usize| m.get(at).copied().unwrap_or(0);
    let body = m.get(8..).unwrap_or(&[]);
    let target = target_of.and_then(|_| ipv6_at(body));
    let short = match (target_of, target) {
        (Some(what), None) => Some(Malformed::Short { what, len: m.len() }),
        _ => None,
    };
    let icmp = Icmp {
        icmp_type: header(0),
        code: header(1),
        checksum,
        rest_of_header: [header(4), header(5), header(6), header(7)],
        message: range_in(frame, m),
        target,
        quoted: if quotes { quoted(body) } else { None },
    };
    (icmp, short)
}

/// The datagram an ICMP error quotes, when its IP header parses.
fn quoted(original: &[u8]) -> Option<Quoted> {
    let inner = LaxSlicedPacket::from_ip(original).ok()?;
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
        _ => return None,
    };
    // Only the first 8 bytes of the quoted transport header are promised (RFC 792), so the
    // ports are read directly rather than through a full TCP header.
    let with_ports = matches!(payload.ip_number, ip_number::TCP | ip_number::UDP);
    let p = payload.payload;
    let ports = if with_ports && !payload.fragmented {
        u16_at(p, 0).zip(u16_at(p, 2))
    } else {
        None
    };
    Some(Quoted {
        src,
        dst,
        protocol: payload.ip_number.0,
        ports,
    })
}

/// The eight TCP flags of RFC 9293 as their bits in the header's flags byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: TcpFlags = TcpFlags(0x01);
    pub const SYN: TcpFlags = TcpFlags(0x02);
    pub const RST: TcpFlags = TcpFlags(0x04);
    pub const PSH: TcpFlags = TcpFlags(0x08);
    pub const ACK: TcpFlags = TcpFlags(0x10);
    pub const URG: TcpFlags = TcpFlags(0x20);
    pub const ECE: TcpFlags = TcpFlags(0x40);
    pub const CWR: TcpFlags = TcpFlags(0x80);
    /// The six flags of RFC 793, which scenario files name.
    pub const CLASSIC: TcpFlags = TcpFlags(0x3f);

    /// Whether any flag of `flags` is set.
    pub fn has(self, flags: TcpFlags) -> bool {
        self.0 & flags.0 != 0
    }

    /// The flags from FIN up to CWR, in header bit order.
    fn from_bits(bits: [bool; 8]) -> TcpFlags {
        TcpFlags(
            bits.iter()
                .enumerate()
                .filter(|(_, set)| **set)
                .fold(0, |acc, (i, _)| acc | 1 << i),
        )
    }

    /// The flags a scenario's `tcp_flags` letters name: `S` SYN, `A` ACK, `F` FIN, `R` RST,
    /// `P` PSH, `U` URG; any other letter names none.
    pub fn from_letters(letters: &str) -> TcpFlags {
        letters
            .chars()
            .filter_map(|c| match c {
                'S' => Some(TcpFlags::SYN),
                'A' => Some(TcpFlags::ACK),
                'F' => Some(TcpFlags::FIN),
                'R' => Some(TcpFlags::RST),
                'P' => Some(TcpFlags::PSH),
                'U' => Some(TcpFlags::URG),
                _ => None,
            })
            .fold(TcpFlags(0), |acc, flag| acc | flag)
    }

    /// The flag a packetdrill letter names: `S F P R U E W`, and `.` for ACK.
    pub fn from_packetdrill(letter: char) -> Option<TcpFlags> {
        PACKETDRILL
            .iter()
            .find(|(_, l)| *l == letter)
            .map(|(flag, _)| *flag)
    }

    /// tcpdump's rendering: the letters in its order `F S R P . U E W`, then `e` for the
    /// ECN-nonce bit, in brackets; `[none]` without any.
    pub fn tcpdump(self, ns: bool) -> impl fmt::Display {
        Tcpdump { flags: self, ns }
    }
}

/// packetdrill's letters in its order; ACK's `.` comes last.
const PACKETDRILL: [(TcpFlags, char); 8] = [
    (TcpFlags::SYN, 'S'),
    (TcpFlags::FIN, 'F'),
    (TcpFlags::PSH, 'P'),
    (TcpFlags::RST, 'R'),
    (TcpFlags::URG, 'U'),
    (TcpFlags::ECE, 'E'),
    (TcpFlags::CWR, 'W'),
    (TcpFlags::ACK, '.'),
];

impl fmt::Display for TcpFlags {
    /// packetdrill's spelling, which scripts, golden differences and differential reports
    /// show: `S`, `S.`, `P.`, `F.`, `R`, `.`; nothing without flags.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (flag, letter) in PACKETDRILL {
            if self.has(flag) {
                write!(f, "{letter}")?;
            }
        }
        Ok(())
    }
}

struct Tcpdump {
    flags: TcpFlags,
    ns: bool,
}

impl fmt::Display for Tcpdump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const ORDER: [(TcpFlags, char); 8] = [
            (TcpFlags::FIN, 'F'),
            (TcpFlags::SYN, 'S'),
            (TcpFlags::RST, 'R'),
            (TcpFlags::PSH, 'P'),
            (TcpFlags::ACK, '.'),
            (TcpFlags::URG, 'U'),
            (TcpFlags::ECE, 'E'),
            (TcpFlags::CWR, 'W'),
        ];
        f.write_str("[")?;
        for (flag, letter) in ORDER {
            if self.flags.has(flag) {
                write!(f, "{letter}")?;
            }
        }
        if self.ns {
            f.write_str("e")?;
        }
        if self.flags.0 == 0 && !self.ns {
            f.write_str("none")?;
        }
        f.write_str("]")
    }
}

impl std::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, other: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | other.0)
    }
}

impl std::ops::BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, other: TcpFlags) {
        self.0 |= other.0;
    }
}

impl std::ops::BitAnd for TcpFlags {
    type Output = TcpFlags;
    fn bitand(self, other: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 & other.0)
    }
}

/// A TCP header's options, copied out of the frame (they fit 40 bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TcpOptionBytes {
    bytes: [u8; 40],
    len: u8,
}

impl TcpOptionBytes {
    /// The first 40 bytes of `options` (a TCP header has no room for more).
    pub fn new(options: &[u8]) -> TcpOptionBytes {
        let mut bytes = [0; 40];
        let len = options.len().min(40);
        bytes[..len].copy_from_slice(&options[..len]);
        TcpOptionBytes {
            bytes,
            len: len as u8,
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> TcpOptions<'_> {
        TcpOptions::new(self.as_slice())
    }

    /// Where the End of Option List is, walking the options (a zero byte inside an option's
    /// data is not one); `None` without one, or when an option's length cannot be followed.
    pub fn end_of_list(&self) -> Option<usize> {
        let mut options = self.iter();
        loop {
            let at = options.offset();
            match options.next()? {
                TcpOption::Eol => return Some(at),
                TcpOption::Malformed { .. } => return None,
                _ => {}
            }
        }
    }
}

impl fmt::Debug for TcpOptionBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x?}", self.as_slice())
    }
}

/// One TCP option, as [`TcpOptions`] reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpOption<'a> {
    /// End of Option List (kind 0). The walk goes on past it, over what should be zero
    /// padding; readers that stop at it do so themselves.
    Eol,
    Nop,
    Mss(u16),
    WindowScale(u8),
    SackPermitted,
    /// One to four blocks (RFC 2018).
    Sack(SackBlocks<'a>),
    Timestamp {
        value: u32,
        echo: u32,
    },
    /// A kind this reader does not know, with the data its length covers.
    Unknown {
        kind: u8,
        data: &'a [u8],
    },
    /// A known kind whose length is not the one the kind has; the walk skips it by its
    /// length.
    BadLength {
        kind: u8,
        data: &'a [u8],
    },
    /// An option whose length byte is missing, below 2 or past the end of the options:
    /// nothing after it can be read, and the walk ends here.
    Malformed {
        kind: u8,
    },
}

impl TcpOption<'_> {
    /// Whether wirelab reads this kind (MSS, window scale, SACK permitted, SACK, timestamps),
    /// besides End of Option List and No-Operation.
    pub fn is_known_kind(kind: u8) -> bool {
        matches!(kind, 2 | 3 | 4 | 5 | 8)
    }
}

/// The blocks of a SACK option, relative to nothing (as sent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SackBlocks<'a>(&'a [u8]);

impl<'a> SackBlocks<'a> {
    /// `(left, right)` edges, in order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32)> + 'a {
        self.0.chunks_exact(8).map(|c| {
            (
                u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
            )
        })
    }
}

/// Walks TCP options (RFC 9293 section 3.2), each option by its own length.
#[derive(Clone, Debug)]
pub struct TcpOptions<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> TcpOptions<'a> {
    pub fn new(bytes: &'a [u8]) -> TcpOptions<'a> {
        TcpOptions { bytes, at: 0 }
    }

    /// Where the next option starts.
    pub fn offset(&self) -> usize {
        self.at
    }
}

impl<'a> Iterator for TcpOptions<'a> {
    type Item = TcpOption<'a>;

    fn next(&mut self) -> Option<TcpOption<'a>> {
        let rest = self.bytes.get(self.at..)?;
        let kind = *rest.first()?;
        match kind {
            0 => {
                self.at += 1;
                return Some(TcpOption::Eol);
            }
            1 => {
                self.at += 1;
                return Some(TcpOption::Nop);
            }
            _ => {}
        }
        let len = rest.get(1).map(|l| usize::from(*l));
        let Some(len) = len.filter(|len| (2..=rest.len()).contains(len)) else {
            self.at = self.bytes.len();
            return Some(TcpOption::Malformed { kind });
        };
        self.at += len;
        let data = &rest[2..len];
        let word =
            |at: usize| u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
        Some(match (kind, data.len()) {
            (2, 2) => TcpOption::Mss(u16::from_be_bytes([data[0], data[1]])),
            (3, 1) => TcpOption::WindowScale(data[0]),
            (4, 0) => TcpOption::SackPermitted,
            (5, n) if n % 8 == 0 && (8..=32).contains(&n) => TcpOption::Sack(SackBlocks(data)),
            (8, 8) => TcpOption::Timestamp {
                value: word(0),
                echo: word(4),
            },
            (kind, _) if TcpOption::is_known_kind(kind) => TcpOption::BadLength { kind, data },
            (kind, _) => TcpOption::Unknown { kind, data },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, TcpOptionElement, TcpOptionsIterator};

    #[test]
    fn a_tcp_segment_decodes_into_its_fields() {
        let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(49152, 80, 1234, 65535)
            .syn()
            .ack(77)
            .options(&[
                TcpOptionElement::MaximumSegmentSize(1460),
                TcpOptionElement::WindowScale(7),
            ])
            .expect("options fit");
        let mut frame = Vec::new();
        builder.write(&mut frame, b"abc").expect("a frame");
        let d = Decoded::parse(&frame);
        assert_eq!(d.malformed, None);
        assert_eq!(d.checksum, ChecksumStatus::Valid);
        assert_eq!(d.src_mac(), Some(MacAddr([2, 0, 0, 0, 0, 1])));
        let ip = d.ip().expect("IPv4");
        assert_eq!((ip.version(), ip.hop_limit, ip.protocol), (4, 64, 6));
        assert!(ip.complete);
        let tcp = d.tcp().expect("TCP");
        assert_eq!(
            (tcp.src_port, tcp.dst_port, tcp.seq, tcp.ack),
            (49152, 80, 1234, 77)
        );
        assert_eq!(tcp.flags, TcpFlags::SYN | TcpFlags::ACK);
        assert_eq!(tcp.payload_of(&frame), b"abc");
        let options: Vec<TcpOption<'_>> = tcp.options.iter().collect();
        assert_eq!(
            options[..2],
            [TcpOption::Mss(1460), TcpOption::WindowScale(7)]
        );
    }

    #[test]
    fn flags_render_as_tcpdump_and_packetdrill_do() {
        let fpa = TcpFlags::FIN | TcpFlags::PSH | TcpFlags::ACK;
        assert_eq!(fpa.tcpdump(false).to_string(), "[FP.]");
        assert_eq!(fpa.to_string(), "FP.");
        assert_eq!(TcpFlags(0).tcpdump(false).to_string(), "[none]");
        assert_eq!(TcpFlags(0).tcpdump(true).to_string(), "[e]");
        assert_eq!(
            (TcpFlags::SYN | TcpFlags::ECE | TcpFlags::CWR).to_string(),
            "SEW"
        );
        assert_eq!(TcpFlags::from_letters("SA"), TcpFlags::SYN | TcpFlags::ACK);
        assert_eq!(TcpFlags::from_packetdrill('.'), Some(TcpFlags::ACK));
        assert_eq!(TcpFlags::from_packetdrill('A'), None);
    }

    /// The walk agrees with etherparse's reader wherever etherparse reads an option, and
    /// ends where etherparse reports an error that leaves no length to follow.
    #[test]
    fn options_are_walked_as_etherparse_reads_them() {
        let cases: [&[u8]; 8] = [
            &[
                2, 4, 5, 180, 1, 3, 3, 7, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0,
            ],
            &[5, 10, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0],
            &[254, 4, 0, 0, 1, 0, 0, 0],
            &[2, 6, 0, 0, 0, 0],
            &[2, 4, 5],
            &[5, 2, 1, 1],
            &[77],
            &[0, 1, 2],
        ];
        for bytes in cases {
            let ours: Vec<TcpOption<'_>> = TcpOptions::new(bytes)
                .take_while(|o| !matches!(o, TcpOption::Eol))
                .collect();
            let theirs: Vec<_> = TcpOptionsIterator::from_slice(bytes).collect();
            for (i, option) in theirs.iter().enumerate() {
                match (option, ours.get(i)) {
                    (Ok(TcpOptionElement::Noop), Some(TcpOption::Nop))
                    | (
                        Ok(TcpOptionElement::SelectiveAcknowledgementPermitted),
                        Some(TcpOption::SackPermitted),
                    )
                    | (Err(_), Some(TcpOption::Unknown { .. }))
                    | (Err(_), Some(TcpOption::BadLength { .. }))
                    | (Err(_), Some(TcpOption::Malformed { .. })) => {}
                    (Ok(TcpOptionElement::MaximumSegmentSize(a)), Some(TcpOption::Mss(b))) => {
                        assert_eq!(a, b)
                    }
                    (Ok(TcpOptionElement::WindowScale(a)), Some(TcpOption::WindowScale(b))) => {
                        assert_eq!(a, b)
                    }
                    (
                        Ok(TcpOptionElement::Timestamp(v, e)),
                        Some(TcpOption::Timestamp { value, echo }),
                    ) => {
                        assert_eq!((v, e), (value, echo))
                    }
                    (
                        Ok(TcpOptionElement::SelectiveAcknowledgement(first, _)),
                        Some(TcpOption::Sack(blocks)),
                    ) => {
                        assert_eq!(blocks.iter().next(), Some(*first))
                    }
                    (a, b) => panic!("{bytes:?}: etherparse {a:?}, wirelab {b:?}"),
                }
            }
        }
        let padded = TcpOptionBytes::new(&[2, 4, 0, 0, 1, 0, 0, 0]);
        assert_eq!(padded.end_of_list(), Some(5));
        assert_eq!(TcpOptionBytes::new(&[2, 40, 0, 0]).end_of_list(), None);
    }

    #[test]
    fn any_bytes_decode_without_panicking() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for len in 0..3000 {
            let mut frame: Vec<u8> = (0..len % 200)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            if frame.len() > 15 {
                frame[12..14].copy_from_slice(&[[8, 0], [0x86, 0xdd], [8, 6]][len % 3]);
                frame[14] = [0x45, 0x60, 0x00][len % 3];
            }
            let d = Decoded::parse(&frame);
            if let Some(tcp) = d.tcp() {
                for _ in tcp.options.iter() {}
                let _ = tcp.payload_of(&frame);
            }
        }
    }
}
