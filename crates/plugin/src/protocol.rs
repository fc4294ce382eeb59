//! The plug-in protocol's messages and their encoding: length-prefixed, little-endian binary, one request and at most one response at a time (see plugins/PROTOCOL.md, which this file implements).
//!
//! Every message is `u32 length` followed by `length` bytes: a one-byte kind (requests) or
//! status (responses), then the body. Bodies are built from these pieces:
//!
//! - integers, little-endian: `u8`, `u16`, `u32`, `u64`;
//! - `bytes`: `u32` length, then the bytes; a `string` is `bytes` holding UTF-8;
//! - `option<u64>`: `u8` 0 (none) or 1 followed by the `u64`;
//! - `ip`: `u8` family (4 or 6), then 16 bytes (an IPv4 address in the first four);
//! - `endpoint`: `ip`, then a `u16` port.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use stack::{CongestionControl, MacAddr, SocketError, SocketId, StackConfig, TcpEnd, TcpState};

/// The version of the protocol this crate speaks; `Hello` carries it both ways.
pub const VERSION: u16 = 1;

/// The largest message either side accepts: a frame of 64 KiB plus room for the rest.
pub const MAX_MESSAGE_BYTES: u32 = 16 << 20;

/// What wirelab asks of a plug-in, by the one-byte kind that starts a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// `u16 version` → `u16 version, string name, u32 max_instances`.
    Hello = 1,
    /// `u32 instance, config` → (nothing); see [`write_config`].
    Create = 2,
    /// `u32 instance` → (nothing).
    Destroy = 3,
    /// `u32 instance, bytes frame`; no response at all.
    Receive = 16,
    /// `u32 instance, u64 now_us` → `u8 changed, u32 count, count × bytes frame`.
    Poll = 17,
    /// `u32 instance, u16 port, u32 backlog` → `u32 socket`.
    TcpListen = 32,
    /// `u32 instance, u32 listener` → `u8 ready, u32 socket`.
    TcpAccept = 33,
    /// `u32 instance, endpoint remote` → `u32 socket`.
    TcpConnect = 34,
    /// `u32 instance, u32 socket, bytes data` → `u32 taken`.
    TcpSend = 35,
    /// `u32 instance, u32 socket, u32 max` → `bytes data` (empty: nothing yet).
    TcpRecv = 36,
    /// `u32 instance, u32 socket` → (nothing).
    TcpShutdown = 37,
    /// `u32 instance, u32 socket` → (nothing).
    TcpAbort = 38,
    /// `u32 instance, u32 socket` → `u8 state` (see [`state_code`]).
    TcpState = 39,
    /// `u32 instance, u32 socket` → `u8 end` (0 none, 1 refused, 2 reset, 3 timed out).
    TcpEnd = 40,
    /// `u32 instance, u32 socket` → `u32 bytes`.
    TcpSendQueue = 41,
    /// `u32 instance, u32 socket, option<u64> interval_us` → (nothing).
    TcpSetKeepalive = 42,
    /// `u32 instance, u32 socket, u8 enabled` → (nothing).
    TcpSetNagle = 43,
    /// `u32 instance, u32 socket, option<u64> timeout_us` → (nothing).
    TcpSetTimeout = 44,
    /// `u32 instance, u16 port` → `u32 socket`.
    UdpBind = 48,
    /// `u32 instance, u32 socket` → `u16 port`.
    UdpLocalPort = 49,
    /// `u32 instance, u32 socket, endpoint dest, bytes data` → (nothing).
    UdpSendTo = 50,
    /// `u32 instance, u32 socket, u32 max` → `u8 some, u32 length, endpoint from, bytes data`
    /// (`length` is the datagram's, `data` at most `max` of it).
    UdpRecvFrom = 51,
    /// `u32 instance, u16 ident` → `u32 socket`.
    IcmpEchoOpen = 64,
    /// `u32 instance, u32 socket, ip dest, u16 seq, bytes payload` → (nothing).
    IcmpEchoSend = 65,
    /// `u32 instance, u32 socket` → `u8 some, ip from, u16 ident, u16 seq, u32 payload_len`.
    IcmpEchoRecv = 66,
    /// `u32 instance, u32 socket` → (nothing).
    Close = 80,
}

impl Kind {
    /// Every kind, for decoding.
    pub const ALL: [Kind; 26] = [
        Kind::Hello,
        Kind::Create,
        Kind::Destroy,
        Kind::Receive,
        Kind::Poll,
        Kind::TcpListen,
        Kind::TcpAccept,
        Kind::TcpConnect,
        Kind::TcpSend,
        Kind::TcpRecv,
        Kind::TcpShutdown,
        Kind::TcpAbort,
        Kind::TcpState,
        Kind::TcpEnd,
        Kind::TcpSendQueue,
        Kind::TcpSetKeepalive,
        Kind::TcpSetNagle,
        Kind::TcpSetTimeout,
        Kind::UdpBind,
        Kind::UdpLocalPort,
        Kind::UdpSendTo,
        Kind::UdpRecvFrom,
        Kind::IcmpEchoOpen,
        Kind::IcmpEchoSend,
        Kind::IcmpEchoRecv,
        Kind::Close,
    ];

    /// The kind a request starts with.
    pub fn from_byte(byte: u8) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| *k as u8 == byte)
    }

    /// The kind's name as the protocol document spells it, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Hello => "HELLO",
            Kind::Create => "CREATE",
            Kind::Destroy => "DESTROY",
            Kind::Receive => "RECEIVE",
            Kind::Poll => "POLL",
            Kind::TcpListen => "TCP_LISTEN",
            Kind::TcpAccept => "TCP_ACCEPT",
            Kind::TcpConnect => "TCP_CONNECT",
            Kind::TcpSend => "TCP_SEND",
            Kind::TcpRecv => "TCP_RECV",
            Kind::TcpShutdown => "TCP_SHUTDOWN",
            Kind::TcpAbort => "TCP_ABORT",
            Kind::TcpState => "TCP_STATE",
            Kind::TcpEnd => "TCP_END",
            Kind::TcpSendQueue => "TCP_SEND_QUEUE",
            Kind::TcpSetKeepalive => "TCP_SET_KEEPALIVE",
            Kind::TcpSetNagle => "TCP_SET_NAGLE",
            Kind::TcpSetTimeout => "TCP_SET_TIMEOUT",
            Kind::UdpBind => "UDP_BIND",
            Kind::UdpLocalPort => "UDP_LOCAL_PORT",
            Kind::UdpSendTo => "UDP_SEND_TO",
            Kind::UdpRecvFrom => "UDP_RECV_FROM",
            Kind::IcmpEchoOpen => "ICMP_ECHO_OPEN",
            Kind::IcmpEchoSend => "ICMP_ECHO_SEND",
            Kind::IcmpEchoRecv => "ICMP_ECHO_RECV",
            Kind::Close => "CLOSE",
        }
    }
}

/// The byte a response starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// The request's results follow, then `option<u64> poll_at` for instance requests.
    Ok = 0,
    /// A socket error follows (`u8 code, u32 value, string text`, see [`write_socket_error`]),
    /// then `option<u64> poll_at`.
    SocketError = 1,
    /// The plug-in could not do the request at all: `string message`. The run fails.
    Failed = 2,
}

/// Why a message could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The message ended before the field.
    #[error("the message ends inside its {0}")]
    Short(&'static str),
    /// A field holds a value the protocol does not have.
    #[error("{0}")]
    Invalid(String),
}

/// Appends the pieces of a message body.
#[derive(Default, Debug)]
pub struct Writer {
    /// The body so far.
    pub bytes: Vec<u8>,
}

impl Writer {
    /// An empty body.
    pub fn new() -> Writer {
        Writer::default()
    }

    /// Starts over, keeping the buffer.
    pub fn clear(&mut self) {
        self.bytes.clear();
    }

    /// A `u8`.
    pub fn u8(&mut self, value: u8) -> &mut Writer {
        self.bytes.push(value);
        self
    }

    /// A `u16`.
    pub fn u16(&mut self, value: u16) -> &mut Writer {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// A `u32`.
    pub fn u32(&mut self, value: u32) -> &mut Writer {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// A `u64`.
    pub fn u64(&mut self, value: u64) -> &mut Writer {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// `bytes`: a length and the bytes.
    pub fn bytes(&mut self, value: &[u8]) -> &mut Writer {
        self.u32(value.len() as u32);
        self.bytes.extend_from_slice(value);
        self
    }

    /// A `string`.
    pub fn string(&mut self, value: &str) -> &mut Writer {
        self.bytes(value.as_bytes())
    }

    /// An `option<u64>`.
    pub fn option_u64(&mut self, value: Option<u64>) -> &mut Writer {
        match value {
            Some(v) => self.u8(1).u64(v),
            None => self.u8(0),
        }
    }

    /// An `ip`.
    pub fn ip(&mut self, value: IpAddr) -> &mut Writer {
        let mut octets = [0u8; 16];
        let family = match value {
            IpAddr::V4(a) => {
                octets[..4].copy_from_slice(&a.octets());
                4
            }
            IpAddr::V6(a) => {
                octets = a.octets();
                6
            }
        };
        self.u8(family);
        self.bytes.extend_from_slice(&octets);
        self
    }

    /// An `endpoint`.
    pub fn endpoint(&mut self, value: SocketAddr) -> &mut Writer {
        self.ip(value.ip()).u16(value.port())
    }
}

/// Reads the pieces of a message body in order.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < len {
            return Err(DecodeError::Short(what));
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }

    /// A `u8`, called `what` in errors.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    /// A `u16`.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    /// A `u32`.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A `u64`.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        let mut v = [0u8; 8];
        v.copy_from_slice(b);
        Ok(u64::from_le_bytes(v))
    }

    /// `bytes`.
    pub fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u32(what)? as usize;
        self.take(len, what)
    }

    /// A `string`.
    pub fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let bytes = self.bytes(what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| DecodeError::Invalid(format!("the {what} is not UTF-8")))
    }

    /// An `option<u64>`.
    pub fn option_u64(&mut self, what: &'static str) -> Result<Option<u64>, DecodeError> {
        match self.u8(what)? {
            0 => Ok(None),
            1 => Ok(Some(self.u64(what)?)),
            other => Err(DecodeError::Invalid(format!(
                "the {what} is an option whose tag is {other}, not 0 or 1"
            ))),
        }
    }

    /// A `bool` as a `u8` 0 or 1.
    pub fn flag(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(DecodeError::Invalid(format!(
                "the {what} is {other}, not 0 or 1"
            ))),
        }
    }

    /// An `ip`.
    pub fn ip(&mut self, what: &'static str) -> Result<IpAddr, DecodeError> {
        let family = self.u8(what)?;
        let b = self.take(16, what)?;
        match family {
            4 => Ok(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
            6 => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(b);
                Ok(IpAddr::V6(Ipv6Addr::from(octets)))
            }
            other => Err(DecodeError::Invalid(format!(
                "the {what}'s family is {other}, not 4 or 6"
            ))),
        }
    }

    /// An `endpoint`.
    pub fn endpoint(&mut self, what: &'static str) -> Result<SocketAddr, DecodeError> {
        let ip = self.ip(what)?;
        Ok(SocketAddr::new(ip, self.u16(what)?))
    }
}

/// A host's configuration in a `Create` request: `string name, u8[6] mac, u8 has_ipv4,
/// u8[4] ipv4, u8 ipv4_prefix, u8 has_ipv4_gateway, u8[4] ipv4_gateway, u8 has_ipv6,
/// u8[16] ipv6, u8 ipv6_prefix, u8 has_ipv6_gateway, u8[16] ipv6_gateway, u32 ip_mtu_bytes,
/// u64 seed, u8 congestion_control (0 none, 1 Reno, 2 CUBIC), u32 tcp_rx_buffer_bytes,
/// u32 tcp_tx_buffer_bytes, u32 datagram_queue_packets, u32 datagram_queue_bytes`.
pub fn write_config(w: &mut Writer, c: &StackConfig) {
    w.string(&c.name);
    w.bytes.extend_from_slice(&c.mac.0);
    let (v4, p4) = c.ipv4.map_or(([0; 4], 0), |(a, p)| (a.octets(), p));
    w.u8(u8::from(c.ipv4.is_some()));
    w.bytes.extend_from_slice(&v4);
    w.u8(p4);
    w.u8(u8::from(c.ipv4_gateway.is_some()));
    w.bytes
        .extend_from_slice(&c.ipv4_gateway.map_or([0; 4], |a| a.octets()));
    let (v6, p6) = c.ipv6.map_or(([0; 16], 0), |(a, p)| (a.octets(), p));
    w.u8(u8::from(c.ipv6.is_some()));
    w.bytes.extend_from_slice(&v6);
    w.u8(p6);
    w.u8(u8::from(c.ipv6_gateway.is_some()));
    w.bytes
        .extend_from_slice(&c.ipv6_gateway.map_or([0; 16], |a| a.octets()));
    w.u32(c.ip_mtu_bytes as u32);
    w.u64(c.seed);
    w.u8(match c.congestion_control {
        CongestionControl::None => 0,
        CongestionControl::Reno => 1,
        CongestionControl::Cubic => 2,
    });
    w.u32(c.tcp_rx_buffer_bytes as u32);
    w.u32(c.tcp_tx_buffer_bytes as u32);
    w.u32(c.datagram_queue_packets as u32);
    w.u32(c.datagram_queue_bytes as u32);
}

/// Reads what [`write_config`] wrote.
pub fn read_config(r: &mut Reader<'_>) -> Result<StackConfig, DecodeError> {
    let name = r.string("host name")?;
    let mut mac = [0u8; 6];
    mac.copy_from_slice(r.take(6, "MAC address")?);
    let mut config = StackConfig::new(name, MacAddr(mac), 0);
    let has_v4 = r.flag("IPv4 flag")?;
    let v4 = r.take(4, "IPv4 address")?;
    let p4 = r.u8("IPv4 prefix")?;
    if has_v4 {
        config.ipv4 = Some((Ipv4Addr::new(v4[0], v4[1], v4[2], v4[3]), p4));
    }
    let has_gw4 = r.flag("IPv4 gateway flag")?;
    let gw4 = r.take(4, "IPv4 gateway")?;
    if has_gw4 {
        config.ipv4_gateway = Some(Ipv4Addr::new(gw4[0], gw4[1], gw4[2], gw4[3]));
    }
    let has_v6 = r.flag("IPv6 flag")?;
    let mut v6 = [0u8; 16];
    v6.copy_from_slice(r.take(16, "IPv6 address")?);
    let p6 = r.u8("IPv6 prefix")?;
    if has_v6 {
        config.ipv6 = Some((Ipv6Addr::from(v6), p6));
    }
    let has_gw6 = r.flag("IPv6 gateway flag")?;
    let mut gw6 = [0u8; 16];
    gw6.copy_from_slice(r.take(16, "IPv6 gateway")?);
    if has_gw6 {
        config.ipv6_gateway = Some(Ipv6Addr::from(gw6));
    }
    config.ip_mtu_bytes = r.u32("IP MTU")? as usize;
    config.seed = r.u64("seed")?;
    config.congestion_control = match r.u8("congestion control")? {
        0 => CongestionControl::None,
        1 => CongestionControl::Reno,
        2 => CongestionControl::Cubic,
        other => {
            return Err(DecodeError::Invalid(format!(
                "congestion control {other} is not 0, 1 or 2"
            )))
        }
    };
    config.tcp_rx_buffer_bytes = r.u32("TCP receive buffer")? as usize;
    config.tcp_tx_buffer_bytes = r.u32("TCP send buffer")? as usize;
    config.datagram_queue_packets = r.u32("datagram queue packets")? as usize;
    config.datagram_queue_bytes = r.u32("datagram queue bytes")? as usize;
    Ok(config)
}

/// The protocol's code for a TCP state: its position in RFC 9293's list, CLOSED = 0 to
/// TIME-WAIT = 10.
pub fn state_code(state: TcpState) -> u8 {
    STATES
        .iter()
        .position(|s| *s == state)
        .map_or(0, |i| i as u8)
}

/// The TCP state of a protocol code.
pub fn state_of(code: u8) -> Result<TcpState, DecodeError> {
    STATES
        .get(code as usize)
        .copied()
        .ok_or_else(|| DecodeError::Invalid(format!("TCP state {code} is not 0 to 10")))
}

const STATES: [TcpState; 11] = [
    TcpState::Closed,
    TcpState::Listen,
    TcpState::SynSent,
    TcpState::SynReceived,
    TcpState::Established,
    TcpState::FinWait1,
    TcpState::FinWait2,
    TcpState::CloseWait,
    TcpState::Closing,
    TcpState::LastAck,
    TcpState::TimeWait,
];

/// The protocol's code for how a connection ended.
pub fn end_code(end: Option<TcpEnd>) -> u8 {
    match end {
        None => 0,
        Some(TcpEnd::Refused) => 1,
        Some(TcpEnd::Reset) => 2,
        Some(TcpEnd::TimedOut) => 3,
    }
}

/// How a connection ended, from its protocol code.
pub fn end_of(code: u8) -> Result<Option<TcpEnd>, DecodeError> {
    match code {
        0 => Ok(None),
        1 => Ok(Some(TcpEnd::Refused)),
        2 => Ok(Some(TcpEnd::Reset)),
        3 => Ok(Some(TcpEnd::TimedOut)),
        other => Err(DecodeError::Invalid(format!(
            "connection end {other} is not 0 to 3"
        ))),
    }
}

/// A socket error: `u8 code, u32 value, string text`. Codes: 1 unknown socket (value: the
/// socket), 2 wrong kind (value: the socket), 3 address in use (value: the port), 4 no free
/// port, 5 unaddressable (text: the address), 6 invalid state (value: the state's code),
/// 7 buffer full, 8 too large (value: the length), 9 finished, 10 unsupported (text: what).
pub fn write_socket_error(w: &mut Writer, error: &SocketError) {
    let (code, value, text) = match error {
        SocketError::UnknownSocket(s) => (1, s.0, String::new()),
        SocketError::WrongKind(s, is, wanted) => (2, s.0, format!("{is} socket, not {wanted}")),
        SocketError::AddressInUse(port) => (3, u32::from(*port), String::new()),
        SocketError::NoFreePort => (4, 0, String::new()),
        SocketError::Unaddressable(ip) => (5, 0, ip.to_string()),
        SocketError::InvalidState(state) => (6, u32::from(state_code(*state)), String::new()),
        SocketError::BufferFull => (7, 0, String::new()),
        SocketError::TooLarge(len) => (8, *len as u32, String::new()),
        SocketError::Finished => (9, 0, String::new()),
        SocketError::Unsupported(what) => (10, 0, what.to_string()),
    };
    w.u8(code).u32(value).string(&text);
}

/// Reads what [`write_socket_error`] wrote. Texts a plug-in sends for `Unsupported` become one
/// fixed sentence (the error type holds static text); the plug-in's own words go to the log.
pub fn read_socket_error(r: &mut Reader<'_>) -> Result<(SocketError, String), DecodeError> {
    let code = r.u8("error code")?;
    let value = r.u32("error value")?;
    let text = r.string("error text")?;
    let error = match code {
        1 => SocketError::UnknownSocket(SocketId(value)),
        2 => SocketError::WrongKind(SocketId(value), "plug-in", "the asked-for"),
        3 => SocketError::AddressInUse(value as u16),
        4 => SocketError::NoFreePort,
        5 => SocketError::Unaddressable(text.parse().map_err(|_| {
            DecodeError::Invalid(format!("unaddressable `{text}` is not an IP address"))
        })?),
        6 => SocketError::InvalidState(state_of(value as u8)?),
        7 => SocketError::BufferFull,
        8 => SocketError::TooLarge(value as usize),
        9 => SocketError::Finished,
        10 => SocketError::Unsupported("an operation the plug-in does not support"),
        other => {
            return Err(DecodeError::Invalid(format!(
                "socket error code {other} is not 1 to 10"
            )))
        }
    };
    Ok((error, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_and_every_piece_come_back_as_written() {
        let mut config = StackConfig::new("host-1", MacAddr::local_from_index(7), 42);
        config.ipv4 = Some(("10.0.0.7".parse().unwrap(), 24));
        config.ipv6_gateway = Some("2001:db8::1".parse().unwrap());
        config.congestion_control = CongestionControl::Cubic;
        config.tcp_rx_buffer_bytes = 4096;
        let mut w = Writer::new();
        write_config(&mut w, &config);
        w.option_u64(Some(9))
            .option_u64(None)
            .endpoint("[2001:db8::2]:80".parse().unwrap())
            .endpoint("10.0.0.2:7".parse().unwrap());
        let mut r = Reader::new(&w.bytes);
        let back = read_config(&mut r).unwrap();
        assert_eq!(format!("{back:?}"), format!("{config:?}"));
        assert_eq!(r.option_u64("a").unwrap(), Some(9));
        assert_eq!(r.option_u64("b").unwrap(), None);
        assert_eq!(
            r.endpoint("c").unwrap(),
            "[2001:db8::2]:80".parse().unwrap()
        );
        assert_eq!(r.endpoint("d").unwrap(), "10.0.0.2:7".parse().unwrap());
        assert!(r.is_empty());
        assert_eq!(
            r.u8("past the end"),
            Err(DecodeError::Short("past the end"))
        );
    }

    /// A message as the protocol document shows it: length, kind or status, body, in hex.
    fn shown(first: u8, body: &Writer) -> String {
        let mut bytes = ((body.bytes.len() + 1) as u32).to_le_bytes().to_vec();
        bytes.push(first);
        bytes.extend_from_slice(&body.bytes);
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn the_exchange_in_the_protocol_document_is_what_this_code_sends() {
        let doc = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/PROTOCOL.md"),
        )
        .expect("plugins/PROTOCOL.md");
        let doc: String = doc.split_whitespace().collect();
        let mut w = Writer::new();
        w.u16(VERSION);
        assert!(doc.contains(&shown(Kind::Hello as u8, &w)));
        let mut w = Writer::new();
        w.u16(VERSION).string("mystack 1").u32(u32::MAX);
        assert!(doc.contains(&shown(Status::Ok as u8, &w)));
        let mut w = Writer::new();
        w.u32(0);
        write_config(
            &mut w,
            &StackConfig::new("h1", MacAddr::local_from_index(1), 0),
        );
        let create = shown(Kind::Create as u8, &w);
        assert!(doc.contains(&create[..30]), "{create}");
        let mut w = Writer::new();
        w.u32(0).u64(0);
        assert!(doc.contains(&shown(Kind::Poll as u8, &w)));
        let mut w = Writer::new();
        w.u8(0)
            .u32(1)
            .bytes(&[0xff; 42])
            .option_u64(Some(1_000_000));
        let poll = shown(Status::Ok as u8, &w);
        assert!(doc.contains(&poll[..36]), "{poll}");
        assert!(doc.contains(&poll[poll.len() - 18..]), "{poll}");
    }

    #[test]
    fn codes_round_trip_and_strangers_are_refused() {
        for state in STATES {
            assert_eq!(state_of(state_code(state)), Ok(state));
        }
        assert!(state_of(11).is_err());
        for end in [
            None,
            Some(TcpEnd::Refused),
            Some(TcpEnd::Reset),
            Some(TcpEnd::TimedOut),
        ] {
            assert_eq!(end_of(end_code(end)), Ok(end));
        }
        for error in [
            SocketError::AddressInUse(80),
            SocketError::Unaddressable("10.1.2.3".parse().unwrap()),
            SocketError::InvalidState(TcpState::Listen),
            SocketError::Finished,
        ] {
            let mut w = Writer::new();
            write_socket_error(&mut w, &error);
            let (back, _) = read_socket_error(&mut Reader::new(&w.bytes)).unwrap();
            assert_eq!(back, error);
        }
        for kind in Kind::ALL {
            assert_eq!(Kind::from_byte(kind as u8), Some(kind));
        }
        assert_eq!(Kind::from_byte(200), None);
    }
}
