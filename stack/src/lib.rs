//! The systems under test behind one stack-neutral, sans-IO trait: frames in, frames out, time as a parameter, socket operations.
//!
//! A [`Stack`] never reads a clock, never does I/O and never draws entropy of its own: the
//! caller hands it received frames, the current virtual time in microseconds, and collects the
//! frames it emits. That is what lets the harness run many instances deterministically, and it
//! is also the shape that a C stack driven through callbacks (lwIP's raw API) and the Linux
//! kernel behind a TAP device can be fitted into.
//!
//! This crate is what a stack's author implements against: [`Stack`] for one instance, and a
//! [`StackFactory`] (or a plain function, [`Registry::register_fn`]) that builds one instance
//! per simulated host. A [`Registry`] holds the stacks a run can use, by name.
#![warn(missing_docs)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

mod frames;
mod registry;
mod sockets;

pub use frames::FrameQueue;
pub use registry::{check_name, BuildError, Limits, Registry, StackFactory};
pub use sockets::SocketTable;

/// A 48-bit Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// True for group addresses (multicast and broadcast): the lowest bit of the first byte.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// A locally administered unicast address built from a host index, as wirelab assigns them
    /// when a configuration leaves the MAC unset: `02:00:` followed by the index in big endian.
    pub fn local_from_index(index: u32) -> MacAddr {
        let b = index.to_be_bytes();
        MacAddr([0x02, 0x00, b[0], b[1], b[2], b[3]])
    }
}

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl std::fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for MacAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in out.iter_mut() {
            let part = parts
                .next()
                .ok_or_else(|| format!("`{s}` has fewer than six `:`-separated bytes"))?;
            if part.len() != 2 {
                return Err(format!("`{s}`: each byte is two hex digits, got `{part}`"));
            }
            *byte = u8::from_str_radix(part, 16)
                .map_err(|_| format!("`{s}`: `{part}` is not a hex byte"))?;
        }
        if parts.next().is_some() {
            return Err(format!("`{s}` has more than six bytes"));
        }
        Ok(MacAddr(out))
    }
}

/// The TCP congestion control a stack runs, where the stack lets us choose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CongestionControl {
    /// No congestion control: the window is the receiver's.
    #[default]
    None,
    /// TCP Reno (RFC 5681).
    Reno,
    /// CUBIC (RFC 9438).
    Cubic,
}

/// Everything a stack instance needs to start; all of it comes from the harness's configuration.
#[derive(Clone, Debug)]
pub struct StackConfig {
    /// The host's name, for messages only.
    pub name: String,
    /// The interface's Ethernet address.
    pub mac: MacAddr,
    /// The IPv4 address and its prefix length, if the host has one.
    pub ipv4: Option<(Ipv4Addr, u8)>,
    /// The IPv6 address and its prefix length, if the host has one (besides its link-local).
    pub ipv6: Option<(Ipv6Addr, u8)>,
    /// The default IPv4 route's next hop.
    pub ipv4_gateway: Option<Ipv4Addr>,
    /// The default IPv6 route's next hop.
    pub ipv6_gateway: Option<Ipv6Addr>,
    /// IP MTU in bytes (the Ethernet frame may be 14 bytes longer).
    pub ip_mtu_bytes: usize,
    /// This host's seed, derived by the harness from the run's root seed and the host's label.
    /// It pins the stack's own randomness (ISNs, IP IDs) and the ephemeral port sequence.
    pub seed: u64,
    /// The congestion control TCP connections use, where the stack can choose.
    pub congestion_control: CongestionControl,
    /// Bytes of each TCP connection's receive buffer (its largest window).
    pub tcp_rx_buffer_bytes: usize,
    /// Bytes of each TCP connection's send buffer.
    pub tcp_tx_buffer_bytes: usize,
    /// Datagrams a UDP or ICMP socket can queue in each direction.
    pub datagram_queue_packets: usize,
    /// Bytes of datagram payload a UDP or ICMP socket can queue in each direction.
    pub datagram_queue_bytes: usize,
}

impl StackConfig {
    /// A configuration with wirelab's defaults for everything but the identity of the host.
    pub fn new(name: impl Into<String>, mac: MacAddr, seed: u64) -> StackConfig {
        StackConfig {
            name: name.into(),
            mac,
            ipv4: None,
            ipv6: None,
            ipv4_gateway: None,
            ipv6_gateway: None,
            ip_mtu_bytes: 1500,
            seed,
            congestion_control: CongestionControl::None,
            tcp_rx_buffer_bytes: 64 * 1024,
            tcp_tx_buffer_bytes: 64 * 1024,
            datagram_queue_packets: 64,
            datagram_queue_bytes: 64 * 1024,
        }
    }
}

/// A handle to one socket of one stack instance. Handles are never reused within an instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SocketId(pub u32);

/// TCP connection states as RFC 9293 names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[allow(
    missing_docs,
    reason = "the states are RFC 9293's, named as it names them"
)]
pub enum TcpState {
    Closed,
    Listen,
    SynSent,
    SynReceived,
    Established,
    FinWait1,
    FinWait2,
    CloseWait,
    Closing,
    LastAck,
    TimeWait,
}

impl TcpState {
    /// The state's name as RFC 9293 writes it (`SYN-SENT`, `TIME-WAIT`, ...).
    pub fn name(self) -> &'static str {
        match self {
            TcpState::Closed => "CLOSED",
            TcpState::Listen => "LISTEN",
            TcpState::SynSent => "SYN-SENT",
            TcpState::SynReceived => "SYN-RECEIVED",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait1 => "FIN-WAIT-1",
            TcpState::FinWait2 => "FIN-WAIT-2",
            TcpState::CloseWait => "CLOSE-WAIT",
            TcpState::Closing => "CLOSING",
            TcpState::LastAck => "LAST-ACK",
            TcpState::TimeWait => "TIME-WAIT",
        }
    }
}

/// Why a TCP connection ended without the application asking, as far as the stack can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpEnd {
    /// The peer answered the SYN with a RST.
    Refused,
    /// A RST arrived on a synchronized connection.
    Reset,
    /// The stack gave up retransmitting.
    TimedOut,
}

/// An ICMP echo reply that arrived on an echo socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EchoReply {
    /// The address that answered.
    pub from: IpAddr,
    /// The identifier of the request it answers.
    pub ident: u16,
    /// The sequence number of the request it answers.
    pub seq: u16,
    /// Bytes of data after the echo header.
    pub payload_len: usize,
}

/// Errors of socket operations. They describe the operation's failure; they never abort the run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SocketError {
    /// The handle names no open socket of this instance.
    #[error("no socket with handle {0:?}")]
    UnknownSocket(SocketId),
    /// The handle names a socket of another kind: the socket, its kind, the kind expected.
    #[error("socket {0:?} is a {1} socket, not a {2} socket")]
    WrongKind(SocketId, &'static str, &'static str),
    /// Another socket holds the port.
    #[error("port {0} is already in use")]
    AddressInUse(u16),
    /// Every ephemeral port is taken.
    #[error("no ephemeral port is free")]
    NoFreePort,
    /// The host has no address of the destination's family, or no route to it.
    #[error("the destination {0} is not reachable from this host (no address of that family or no route)")]
    Unaddressable(IpAddr),
    /// The connection's state does not allow the operation.
    #[error("the operation is not valid in TCP state {}", .0.name())]
    InvalidState(TcpState),
    /// Nothing more can be queued for sending now.
    #[error("the send buffer is full")]
    BufferFull,
    /// The datagram, of this many bytes, can never fit the socket's buffer.
    #[error("the datagram of {0} bytes does not fit the socket's buffer")]
    TooLarge(usize),
    /// The peer closed its side and everything it sent was read.
    #[error("the peer closed its side: no more data will arrive")]
    Finished,
    /// The stack has no such operation.
    #[error("the stack cannot do this: {0}")]
    Unsupported(&'static str),
}

/// One stack instance: one host's network stack with one Ethernet interface.
///
/// The harness calls [`Stack::receive`] for frames that arrived, [`Stack::poll`] at the
/// current virtual time, and asks [`Stack::poll_at`] when it must be polled next. Socket
/// operations take effect on the next poll. Everything is single-threaded and synchronous.
pub trait Stack {
    /// The interface's Ethernet address.
    fn mac(&self) -> MacAddr;

    /// For a stack that lives in real time outside the simulator (a kernel behind a TAP
    /// device): a descriptor that becomes readable when the stack has frames to give, so that
    /// a paced run wakes for them. Simulated stacks have none.
    fn wake_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }

    /// Hands one received Ethernet frame to the stack; it is processed on the next poll.
    fn receive(&mut self, frame: &[u8]);

    /// Like [`Stack::receive`], for a caller that no longer needs the frame: the stack may take
    /// the buffer itself and leave one of its spare buffers in its place (with any contents),
    /// which saves a copy per frame. The default copies.
    fn receive_buffer(&mut self, frame: &mut Vec<u8>) {
        self.receive(frame);
    }

    /// Lets the stack do all the work due at `now_us`, appending the frames it emits to
    /// `egress`. Returns true when socket state may have changed (data arrived, a connection
    /// opened or closed), so that applications should look again.
    fn poll(&mut self, now_us: u64, egress: &mut FrameQueue) -> bool;

    /// The virtual time at which the stack next needs a poll even if no frame arrives; `None`
    /// when it is idle until something arrives or a socket is used.
    fn poll_at(&mut self, now_us: u64) -> Option<u64>;

    // TCP

    /// Opens a listener on `port` that can hold `backlog` connections being set up at once.
    fn tcp_listen(&mut self, port: u16, backlog: usize) -> Result<SocketId, SocketError>;
    /// Returns an established connection from the listener's backlog, if one is ready.
    fn tcp_accept(&mut self, listener: SocketId) -> Result<Option<SocketId>, SocketError>;
    /// Starts an active open from an ephemeral port.
    fn tcp_connect(&mut self, remote: SocketAddr) -> Result<SocketId, SocketError>;
    /// Queues as much of `data` as fits; returns how much was taken (0 when the buffer is full).
    fn tcp_send(&mut self, socket: SocketId, data: &[u8]) -> Result<usize, SocketError>;
    /// Takes received bytes into `buf`; `Ok(0)` means nothing yet, `Err(Finished)` means the
    /// peer closed and everything was read.
    fn tcp_recv(&mut self, socket: SocketId, buf: &mut [u8]) -> Result<usize, SocketError>;
    /// Lends received bytes to `consume`, which sees each byte once, in order, over as many
    /// calls as the stack's buffer needs, `limit` bytes at most in all. Stacks that can lend
    /// their own buffer save the copy `tcp_recv` makes. Returns how many bytes were lent;
    /// `Ok(0)` and `Err(Finished)` mean what they mean for `tcp_recv`.
    fn tcp_recv_with(
        &mut self,
        socket: SocketId,
        limit: usize,
        consume: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, SocketError> {
        let mut buf = [0u8; 2048];
        let mut total = 0;
        while total < limit {
            let want = (limit - total).min(buf.len());
            match self.tcp_recv(socket, &mut buf[..want]) {
                Ok(0) => break,
                Ok(n) => {
                    consume(&buf[..n]);
                    total += n;
                }
                Err(e) if total == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(total)
    }
    /// Closes the sending direction (sends FIN once queued data is out); receiving goes on.
    fn tcp_shutdown(&mut self, socket: SocketId) -> Result<(), SocketError>;
    /// Sends a RST and forgets the connection.
    fn tcp_abort(&mut self, socket: SocketId) -> Result<(), SocketError>;
    /// The connection's state as RFC 9293 names it.
    fn tcp_state(&self, socket: SocketId) -> Result<TcpState, SocketError>;
    /// Why the connection ended without the application asking, once it has.
    fn tcp_end(&self, socket: SocketId) -> Result<Option<TcpEnd>, SocketError>;
    /// Bytes queued for sending and not yet acknowledged.
    fn tcp_send_queue(&self, socket: SocketId) -> Result<usize, SocketError>;
    /// The connection's local and remote address and port, `None` while the stack does not
    /// know them (a connection that is closed). Stacks that cannot tell keep the default,
    /// [`SocketError::Unsupported`].
    fn tcp_endpoints(
        &self,
        socket: SocketId,
    ) -> Result<Option<(SocketAddr, SocketAddr)>, SocketError> {
        let _ = socket;
        Err(SocketError::Unsupported(
            "reporting a connection's addresses",
        ))
    }
    /// Sends keep-alive probes after this much idle time (`None`: none).
    fn tcp_set_keepalive(
        &mut self,
        socket: SocketId,
        interval_us: Option<u64>,
    ) -> Result<(), SocketError>;
    /// Turns Nagle's algorithm on or off (`TCP_NODELAY` is off).
    fn tcp_set_nagle(&mut self, socket: SocketId, enabled: bool) -> Result<(), SocketError>;
    /// Gives up a connection that has been idle (nothing acknowledged) this long.
    fn tcp_set_timeout(
        &mut self,
        socket: SocketId,
        timeout_us: Option<u64>,
    ) -> Result<(), SocketError>;

    // UDP

    /// Binds a UDP socket; port 0 takes the next ephemeral port.
    fn udp_bind(&mut self, port: u16) -> Result<SocketId, SocketError>;
    /// The port a UDP socket is bound to.
    fn udp_local_port(&self, socket: SocketId) -> Result<u16, SocketError>;
    /// Queues one datagram to `dest`.
    fn udp_send_to(
        &mut self,
        socket: SocketId,
        dest: SocketAddr,
        data: &[u8],
    ) -> Result<(), SocketError>;
    /// Takes one datagram into `buf` (truncated if longer); `None` when none is queued.
    fn udp_recv_from(
        &mut self,
        socket: SocketId,
        buf: &mut [u8],
    ) -> Result<Option<(usize, SocketAddr)>, SocketError>;

    // ICMP echo

    /// Opens an echo socket that receives replies carrying `ident`.
    fn icmp_echo_open(&mut self, ident: u16) -> Result<SocketId, SocketError>;
    /// Queues an echo request to `dest` with sequence number `seq` and `payload` as its data.
    fn icmp_echo_send(
        &mut self,
        socket: SocketId,
        dest: IpAddr,
        seq: u16,
        payload: &[u8],
    ) -> Result<(), SocketError>;
    /// Takes one echo reply that arrived for this socket's identifier; `None` when none has.
    fn icmp_echo_recv(&mut self, socket: SocketId) -> Result<Option<EchoReply>, SocketError>;

    /// Releases any socket: a TCP connection is closed gracefully if it is still open.
    fn close(&mut self, socket: SocketId) -> Result<(), SocketError>;
}
