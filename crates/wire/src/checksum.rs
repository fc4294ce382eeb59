//! Checksums: the RFC 1071 ones'-complement sum and pseudo-header sums, and the verification of every checksum a frame carries.

use std::net::IpAddr;

use etherparse::{ip_number, LaxNetSlice, LaxSlicedPacket, LenSource};

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
/// uses the destination in the IPv6 header. Never panics. A reader that has the frame's
/// record reads [`Decoded::checksum`](crate::frame::Decoded::checksum) instead.
pub fn verify_checksums(frame: &[u8]) -> ChecksumStatus {
    match LaxSlicedPacket::from_ethernet(frame) {
        Ok(packet) => verify_sliced(&packet),
        Err(_) => ChecksumStatus::NotApplicable,
    }
}

/// [`verify_checksums`] of a frame already sliced, as
/// [`Decoded::parse`](crate::frame::Decoded::parse) verifies it.
pub(crate) fn verify_sliced(packet: &LaxSlicedPacket<'_>) -> ChecksumStatus {
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
