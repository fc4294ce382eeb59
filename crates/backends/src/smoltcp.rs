//! The smoltcp backend: one `smoltcp::iface::Interface` on a simulated Ethernet device, behind the `Stack` trait.

use std::collections::{BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::{icmp, tcp, udp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    EthernetAddress, HardwareAddress, Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr,
    IpAddress, IpCidr, IpEndpoint, IpListenEndpoint,
};

use stack::{
    CongestionControl, EchoReply, FrameQueue, MacAddr, SocketError, SocketId, SocketTable, Stack,
    StackConfig, TcpEnd, TcpState,
};

const ETHERNET_HEADER_BYTES: usize = 14;
const EPHEMERAL_PORT_FIRST: u16 = 49152;
const EPHEMERAL_PORT_COUNT: u16 = 16384;

/// Received frames waiting for the next poll, and spare buffers recycled through `free`.
#[derive(Default)]
struct RxQueue {
    rx: VecDeque<Vec<u8>>,
    free: Vec<Vec<u8>>,
}

/// The simulated NIC, put together for one poll: it takes received frames from the host's
/// `RxQueue` and writes transmitted frames straight into the caller's egress queue (borrowed,
/// not moved, so that a poll costs no copying of queues).
struct SimDevice<'q> {
    rx: &'q mut RxQueue,
    tx: &'q mut FrameQueue,
    mtu_bytes: usize,
}

struct SimRxToken<'a> {
    frame: Vec<u8>,
    free: &'a mut Vec<Vec<u8>>,
}

struct SimTxToken<'a> {
    tx: &'a mut FrameQueue,
}

impl phy::RxToken for SimRxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let result = f(&self.frame);
        self.free.push(self.frame);
        result
    }
}

impl phy::TxToken for SimTxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        self.tx.push_with(len, f)
    }
}

impl Device for SimDevice<'_> {
    type RxToken<'a>
        = SimRxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = SimTxToken<'a>
    where
        Self: 'a;

    fn receive(&mut self, _timestamp: Instant) -> Option<(SimRxToken<'_>, SimTxToken<'_>)> {
        let frame = self.rx.rx.pop_front()?;
        Some((
            SimRxToken {
                frame,
                free: &mut self.rx.free,
            },
            SimTxToken { tx: self.tx },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<SimTxToken<'_>> {
        Some(SimTxToken { tx: self.tx })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu_bytes;
        caps
    }
}

/// What a `SocketId` stands for.
enum Entry {
    /// A listener is a pool of smoltcp sockets in LISTEN: smoltcp accepts one connection per
    /// socket, so the pool is the backlog, refilled as connections are accepted.
    TcpListener {
        port: u16,
        pool: Vec<SocketHandle>,
    },
    Tcp(TcpConn),
    Udp {
        handle: SocketHandle,
        port: u16,
    },
    Icmp {
        handle: SocketHandle,
        ident: u16,
    },
}

struct TcpConn {
    handle: SocketHandle,
    /// The local port, when it came from our ephemeral range and must be given back.
    ephemeral_port: Option<u16>,
    local_port: u16,
    remote: Option<SocketAddr>,
    last_state: TcpState,
    end: Option<TcpEnd>,
    /// The application asked for an abort, so a CLOSED state is not a surprise.
    aborted: bool,
}

/// A smoltcp host.
pub struct SmoltcpStack {
    config: StackConfig,
    iface: Interface,
    rx: RxQueue,
    mtu_bytes: usize,
    sockets: SocketSet<'static>,
    entries: SocketTable<Entry>,
    /// Sockets the application has released that are still finishing (FIN handshake).
    closing: Vec<SocketHandle>,
    tcp_ports_in_use: BTreeSet<u16>,
    udp_ports_in_use: BTreeSet<u16>,
    next_ephemeral_offset: u16,
    /// (local port, remote endpoint) pairs that received a RST since the last poll, so that a
    /// connection found CLOSED can be told apart: refused or reset rather than timed out.
    resets_seen: Vec<(u16, SocketAddr)>,
}

fn to_instant(now_us: u64) -> Instant {
    Instant::from_micros(now_us as i64)
}

fn to_ip_address(addr: IpAddr) -> IpAddress {
    match addr {
        IpAddr::V4(a) => IpAddress::Ipv4(a),
        IpAddr::V6(a) => IpAddress::Ipv6(a),
    }
}

fn from_ip_address(addr: IpAddress) -> IpAddr {
    match addr {
        IpAddress::Ipv4(a) => IpAddr::V4(a),
        IpAddress::Ipv6(a) => IpAddr::V6(a),
    }
}

fn from_endpoint(ep: IpEndpoint) -> SocketAddr {
    SocketAddr::new(from_ip_address(ep.addr), ep.port)
}

fn tcp_state(state: tcp::State) -> TcpState {
    match state {
        tcp::State::Closed => TcpState::Closed,
        tcp::State::Listen => TcpState::Listen,
        tcp::State::SynSent => TcpState::SynSent,
        tcp::State::SynReceived => TcpState::SynReceived,
        tcp::State::Established => TcpState::Established,
        tcp::State::FinWait1 => TcpState::FinWait1,
        tcp::State::FinWait2 => TcpState::FinWait2,
        tcp::State::CloseWait => TcpState::CloseWait,
        tcp::State::Closing => TcpState::Closing,
        tcp::State::LastAck => TcpState::LastAck,
        tcp::State::TimeWait => TcpState::TimeWait,
    }
}

/// If `frame` is an IPv4 or IPv6 TCP segment with RST set, its (destination port, source).
fn tcp_reset_in(frame: &[u8]) -> Option<(u16, SocketAddr)> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let ip = frame.get(ETHERNET_HEADER_BYTES..)?;
    let (src, tcp) = match ethertype {
        0x0800 => {
            let header_len = usize::from(ip.first()? & 0x0f) * 4;
            if *ip.get(9)? != 6 {
                return None;
            }
            let src: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            (IpAddr::from(src), ip.get(header_len..)?)
        }
        0x86dd => {
            if *ip.get(6)? != 6 {
                return None;
            }
            let src: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            (IpAddr::from(src), ip.get(40..)?)
        }
        _ => return None,
    };
    let flags = *tcp.get(13)?;
    if flags & 0x04 == 0 {
        return None;
    }
    let src_port = u16::from_be_bytes([*tcp.first()?, *tcp.get(1)?]);
    let dst_port = u16::from_be_bytes([*tcp.get(2)?, *tcp.get(3)?]);
    Some((dst_port, SocketAddr::new(src, src_port)))
}

impl SmoltcpStack {
    pub fn new(config: StackConfig) -> SmoltcpStack {
        let mtu_bytes = config.ip_mtu_bytes + ETHERNET_HEADER_BYTES;
        let mut rx = RxQueue::default();
        let mut tx = FrameQueue::new();
        let mut device = SimDevice {
            rx: &mut rx,
            tx: &mut tx,
            mtu_bytes,
        };
        let mut iface_config =
            Config::new(HardwareAddress::Ethernet(EthernetAddress(config.mac.0)));
        // smoltcp seeds every interface with 0 by default, which would give every host the same
        // ISNs; the harness derives a distinct seed per host from the run's seed.
        iface_config.random_seed = config.seed;
        let mut iface = Interface::new(iface_config, &mut device, Instant::ZERO);
        iface.update_ip_addrs(|addrs| {
            if let Some((addr, prefix)) = config.ipv4 {
                addrs
                    .push(IpCidr::new(IpAddress::Ipv4(addr), prefix))
                    .expect("the interface holds four addresses");
            }
            if let Some((addr, prefix)) = config.ipv6 {
                addrs
                    .push(IpCidr::new(IpAddress::Ipv6(addr), prefix))
                    .expect("the interface holds four addresses");
            }
        });
        if let Some(gateway) = config.ipv4_gateway {
            iface
                .routes_mut()
                .add_default_ipv4_route(gateway)
                .expect("the route table holds sixteen routes");
        }
        if let Some(gateway) = config.ipv6_gateway {
            iface
                .routes_mut()
                .add_default_ipv6_route(gateway)
                .expect("the route table holds sixteen routes");
        }
        let next_ephemeral_offset = (config.seed % u64::from(EPHEMERAL_PORT_COUNT)) as u16;
        SmoltcpStack {
            config,
            iface,
            rx,
            mtu_bytes,
            sockets: SocketSet::new(Vec::new()),
            entries: SocketTable::new(),
            closing: Vec::new(),
            tcp_ports_in_use: BTreeSet::new(),
            udp_ports_in_use: BTreeSet::new(),
            next_ephemeral_offset,
            resets_seen: Vec::new(),
        }
    }

    fn tcp_conn(&self, id: SocketId) -> Result<&TcpConn, SocketError> {
        match self.entries.get(id)? {
            Entry::Tcp(conn) => Ok(conn),
            other => Err(SocketError::WrongKind(id, other.kind(), "TCP connection")),
        }
    }

    fn tcp_conn_mut(&mut self, id: SocketId) -> Result<&mut TcpConn, SocketError> {
        match self.entries.get_mut(id)? {
            Entry::Tcp(conn) => Ok(conn),
            other => Err(SocketError::WrongKind(id, other.kind(), "TCP connection")),
        }
    }

    fn tcp_socket(&mut self, id: SocketId) -> Result<&mut tcp::Socket<'static>, SocketError> {
        let handle = self.tcp_conn(id)?.handle;
        Ok(self.sockets.get_mut::<tcp::Socket>(handle))
    }

    fn new_tcp_socket(&self) -> tcp::Socket<'static> {
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; self.config.tcp_rx_buffer_bytes]),
            tcp::SocketBuffer::new(vec![0; self.config.tcp_tx_buffer_bytes]),
        );
        socket.set_congestion_control(match self.config.congestion_control {
            CongestionControl::None => tcp::CongestionControl::None,
            CongestionControl::Reno => tcp::CongestionControl::Reno,
            CongestionControl::Cubic => tcp::CongestionControl::Cubic,
        });
        socket
    }

    fn listening_socket(&mut self, port: u16) -> Result<SocketHandle, SocketError> {
        let mut socket = self.new_tcp_socket();
        socket
            .listen(port)
            .map_err(|_| SocketError::Unsupported("smoltcp refused to listen on this port"))?;
        Ok(self.sockets.add(socket))
    }

    /// The next free ephemeral port, walking the range from a seed-derived start, so that hosts
    /// differ from one another and every run with the same seed hands out the same ports.
    fn ephemeral_port(&mut self, tcp: bool) -> Result<u16, SocketError> {
        for _ in 0..EPHEMERAL_PORT_COUNT {
            let port = EPHEMERAL_PORT_FIRST + self.next_ephemeral_offset;
            self.next_ephemeral_offset = (self.next_ephemeral_offset + 1) % EPHEMERAL_PORT_COUNT;
            let in_use = if tcp {
                &mut self.tcp_ports_in_use
            } else {
                &mut self.udp_ports_in_use
            };
            if in_use.insert(port) {
                return Ok(port);
            }
        }
        Err(SocketError::NoFreePort)
    }

    fn has_family(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(_) => self.config.ipv4.is_some(),
            IpAddr::V6(_) => self.config.ipv6.is_some(),
        }
    }

    /// True while the application holds a TCP connection that has not closed yet.
    fn tcp_open_connections(&self) -> bool {
        self.entries
            .iter()
            .any(|e| matches!(e, Entry::Tcp(conn) if conn.last_state != TcpState::Closed))
    }

    /// Notes state changes of the application's TCP connections, so that `tcp_end` can say why
    /// a connection closed, and retires released sockets that have finished closing.
    fn track_tcp_states(&mut self) {
        for entry in self.entries.iter_mut() {
            let Entry::Tcp(conn) = entry else { continue };
            let socket = self.sockets.get::<tcp::Socket>(conn.handle);
            let state = tcp_state(socket.state());
            if state == conn.last_state {
                continue;
            }
            if let Some(remote) = socket.remote_endpoint() {
                conn.remote = Some(from_endpoint(remote));
            }
            if state == TcpState::Closed && !conn.aborted && conn.end.is_none() {
                // smoltcp forgets the endpoints when it closes, so match on the local port the
                // connection had and, where known, the remote endpoint.
                let local_port = conn.local_port;
                let remote = conn.remote;
                let reset = self
                    .resets_seen
                    .iter()
                    .any(|(port, from)| *port == local_port && remote.is_none_or(|r| r == *from));
                conn.end = match (conn.last_state, reset) {
                    (TcpState::SynSent, true) => Some(TcpEnd::Refused),
                    (_, true) => Some(TcpEnd::Reset),
                    (TcpState::TimeWait | TcpState::LastAck | TcpState::Closing, false) => None,
                    (_, false) => Some(TcpEnd::TimedOut),
                };
            }
            conn.last_state = state;
        }
        self.resets_seen.clear();
        let sockets = &mut self.sockets;
        self.closing.retain(|&handle| {
            let done = sockets.get::<tcp::Socket>(handle).state() == tcp::State::Closed;
            if done {
                sockets.remove(handle);
            }
            !done
        });
    }
}

impl Entry {
    fn kind(&self) -> &'static str {
        match self {
            Entry::TcpListener { .. } => "TCP listener",
            Entry::Tcp(_) => "TCP connection",
            Entry::Udp { .. } => "UDP",
            Entry::Icmp { .. } => "ICMP echo",
        }
    }
}

impl Stack for SmoltcpStack {
    fn mac(&self) -> MacAddr {
        self.config.mac
    }

    fn receive(&mut self, frame: &[u8]) {
        if let Some(reset) = tcp_reset_in(frame) {
            self.resets_seen.push(reset);
        }
        let mut buf = self.rx.free.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(frame);
        self.rx.rx.push_back(buf);
    }

    fn receive_buffer(&mut self, frame: &mut Vec<u8>) {
        if let Some(reset) = tcp_reset_in(frame) {
            self.resets_seen.push(reset);
        }
        // The frame's buffer joins the receive queue; a spare one goes back in its place.
        let mut buf = self.rx.free.pop().unwrap_or_default();
        std::mem::swap(&mut buf, frame);
        self.rx.rx.push_back(buf);
    }

    fn poll(&mut self, now_us: u64, egress: &mut FrameQueue) -> bool {
        // The device writes transmitted frames straight into the caller's queue.
        let mut device = SimDevice {
            rx: &mut self.rx,
            tx: egress,
            mtu_bytes: self.mtu_bytes,
        };
        let result = self
            .iface
            .poll(to_instant(now_us), &mut device, &mut self.sockets);
        let changed = result == smoltcp::iface::PollResult::SocketStateChanged;
        // Timeouts close sockets on the egress path, which `PollResult` does not report, so
        // open connections are looked at on every poll.
        if changed
            || !self.resets_seen.is_empty()
            || self.tcp_open_connections()
            || !self.closing.is_empty()
        {
            self.track_tcp_states();
        }
        changed
    }

    fn poll_at(&mut self, now_us: u64) -> Option<u64> {
        if !self.rx.rx.is_empty() {
            return Some(now_us);
        }
        self.iface
            .poll_at(to_instant(now_us), &self.sockets)
            .map(|at| at.total_micros().max(0) as u64)
    }

    fn tcp_listen(&mut self, port: u16, backlog: usize) -> Result<SocketId, SocketError> {
        if port == 0 {
            return Err(SocketError::Unsupported("listening on port 0"));
        }
        if !self.tcp_ports_in_use.insert(port) {
            return Err(SocketError::AddressInUse(port));
        }
        let mut pool = Vec::with_capacity(backlog.max(1));
        for _ in 0..backlog.max(1) {
            pool.push(self.listening_socket(port)?);
        }
        Ok(self.entries.insert(Entry::TcpListener { port, pool }))
    }

    fn tcp_accept(&mut self, listener: SocketId) -> Result<Option<SocketId>, SocketError> {
        let (port, ready) = match self.entries.get(listener)? {
            Entry::TcpListener { port, pool } => {
                let ready = pool.iter().position(|&h| {
                    let state = self.sockets.get::<tcp::Socket>(h).state();
                    !matches!(
                        state,
                        tcp::State::Listen | tcp::State::SynReceived | tcp::State::Closed
                    )
                });
                (*port, ready)
            }
            other => {
                return Err(SocketError::WrongKind(
                    listener,
                    other.kind(),
                    "TCP listener",
                ))
            }
        };
        let Some(index) = ready else { return Ok(None) };
        let fresh = self.listening_socket(port)?;
        let Ok(Entry::TcpListener { pool, .. }) = self.entries.get_mut(listener) else {
            unreachable!("the listener was looked up above");
        };
        let handle = std::mem::replace(&mut pool[index], fresh);
        let s = self.sockets.get::<tcp::Socket>(handle);
        let state = tcp_state(s.state());
        let remote = s.remote_endpoint().map(from_endpoint);
        Ok(Some(self.entries.insert(Entry::Tcp(TcpConn {
            handle,
            ephemeral_port: None,
            local_port: port,
            remote,
            last_state: state,
            end: None,
            aborted: false,
        }))))
    }

    fn tcp_connect(&mut self, remote: SocketAddr) -> Result<SocketId, SocketError> {
        if !self.has_family(remote.ip()) {
            return Err(SocketError::Unaddressable(remote.ip()));
        }
        let port = self.ephemeral_port(true)?;
        let mut socket = self.new_tcp_socket();
        let connected = socket.connect(
            self.iface.context(),
            IpEndpoint::new(to_ip_address(remote.ip()), remote.port()),
            IpListenEndpoint::from(port),
        );
        if connected.is_err() {
            self.tcp_ports_in_use.remove(&port);
            return Err(SocketError::Unaddressable(remote.ip()));
        }
        let handle = self.sockets.add(socket);
        Ok(self.entries.insert(Entry::Tcp(TcpConn {
            handle,
            ephemeral_port: Some(port),
            local_port: port,
            remote: Some(remote),
            last_state: TcpState::SynSent,
            end: None,
            aborted: false,
        })))
    }

    fn tcp_send(&mut self, socket: SocketId, data: &[u8]) -> Result<usize, SocketError> {
        let s = self.tcp_socket(socket)?;
        s.send_slice(data)
            .map_err(|_| SocketError::InvalidState(tcp_state(s.state())))
    }

    fn tcp_recv(&mut self, socket: SocketId, buf: &mut [u8]) -> Result<usize, SocketError> {
        let s = self.tcp_socket(socket)?;
        match s.recv_slice(buf) {
            Ok(n) => Ok(n),
            Err(tcp::RecvError::Finished) => Err(SocketError::Finished),
            Err(tcp::RecvError::InvalidState) => {
                Err(SocketError::InvalidState(tcp_state(s.state())))
            }
        }
    }

    fn tcp_recv_with(
        &mut self,
        socket: SocketId,
        limit: usize,
        consume: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, SocketError> {
        let s = self.tcp_socket(socket)?;
        let mut total = 0;
        // The receive buffer is a ring: its contents come in at most two contiguous pieces.
        while total < limit {
            let lent = s.recv(|data| {
                let n = data.len().min(limit - total);
                consume(&data[..n]);
                (n, n)
            });
            match lent {
                Ok(0) => break,
                Ok(n) => total += n,
                Err(_) if total > 0 => break,
                Err(tcp::RecvError::Finished) => return Err(SocketError::Finished),
                Err(tcp::RecvError::InvalidState) => {
                    return Err(SocketError::InvalidState(tcp_state(s.state())))
                }
            }
        }
        Ok(total)
    }

    fn tcp_shutdown(&mut self, socket: SocketId) -> Result<(), SocketError> {
        self.tcp_socket(socket)?.close();
        Ok(())
    }

    fn tcp_abort(&mut self, socket: SocketId) -> Result<(), SocketError> {
        self.tcp_conn_mut(socket)?.aborted = true;
        self.tcp_socket(socket)?.abort();
        Ok(())
    }

    fn tcp_state(&self, socket: SocketId) -> Result<TcpState, SocketError> {
        let handle = self.tcp_conn(socket)?.handle;
        Ok(tcp_state(self.sockets.get::<tcp::Socket>(handle).state()))
    }

    fn tcp_end(&self, socket: SocketId) -> Result<Option<TcpEnd>, SocketError> {
        Ok(self.tcp_conn(socket)?.end)
    }

    fn tcp_send_queue(&self, socket: SocketId) -> Result<usize, SocketError> {
        let handle = self.tcp_conn(socket)?.handle;
        Ok(self.sockets.get::<tcp::Socket>(handle).send_queue())
    }

    fn tcp_endpoints(
        &self,
        socket: SocketId,
    ) -> Result<Option<(SocketAddr, SocketAddr)>, SocketError> {
        let handle = self.tcp_conn(socket)?.handle;
        let socket = self.sockets.get::<tcp::Socket>(handle);
        Ok(socket
            .local_endpoint()
            .zip(socket.remote_endpoint())
            .map(|(local, remote)| (from_endpoint(local), from_endpoint(remote))))
    }

    fn tcp_set_keepalive(
        &mut self,
        socket: SocketId,
        interval_us: Option<u64>,
    ) -> Result<(), SocketError> {
        self.tcp_socket(socket)?
            .set_keep_alive(interval_us.map(Duration::from_micros));
        Ok(())
    }

    fn tcp_set_nagle(&mut self, socket: SocketId, enabled: bool) -> Result<(), SocketError> {
        self.tcp_socket(socket)?.set_nagle_enabled(enabled);
        Ok(())
    }

    fn tcp_set_timeout(
        &mut self,
        socket: SocketId,
        timeout_us: Option<u64>,
    ) -> Result<(), SocketError> {
        self.tcp_socket(socket)?
            .set_timeout(timeout_us.map(Duration::from_micros));
        Ok(())
    }

    fn udp_bind(&mut self, port: u16) -> Result<SocketId, SocketError> {
        let port = if port == 0 {
            self.ephemeral_port(false)?
        } else if self.udp_ports_in_use.insert(port) {
            port
        } else {
            return Err(SocketError::AddressInUse(port));
        };
        let queue = || {
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; self.config.datagram_queue_packets],
                vec![0; self.config.datagram_queue_bytes],
            )
        };
        let mut socket = udp::Socket::new(queue(), queue());
        socket
            .bind(port)
            .map_err(|_| SocketError::Unsupported("smoltcp refused to bind this port"))?;
        let handle = self.sockets.add(socket);
        Ok(self.entries.insert(Entry::Udp { handle, port }))
    }

    fn udp_local_port(&self, socket: SocketId) -> Result<u16, SocketError> {
        match self.entries.get(socket)? {
            Entry::Udp { port, .. } => Ok(*port),
            other => Err(SocketError::WrongKind(socket, other.kind(), "UDP")),
        }
    }

    fn udp_send_to(
        &mut self,
        socket: SocketId,
        dest: SocketAddr,
        data: &[u8],
    ) -> Result<(), SocketError> {
        if !self.has_family(dest.ip()) {
            return Err(SocketError::Unaddressable(dest.ip()));
        }
        let handle = match self.entries.get(socket)? {
            Entry::Udp { handle, .. } => *handle,
            other => return Err(SocketError::WrongKind(socket, other.kind(), "UDP")),
        };
        let s = self.sockets.get_mut::<udp::Socket>(handle);
        let endpoint = IpEndpoint::new(to_ip_address(dest.ip()), dest.port());
        s.send_slice(data, endpoint).map_err(|e| match e {
            udp::SendError::BufferFull if data.len() > s.payload_send_capacity() => {
                SocketError::TooLarge(data.len())
            }
            udp::SendError::BufferFull => SocketError::BufferFull,
            udp::SendError::Unaddressable => SocketError::Unaddressable(dest.ip()),
        })
    }

    fn udp_recv_from(
        &mut self,
        socket: SocketId,
        buf: &mut [u8],
    ) -> Result<Option<(usize, SocketAddr)>, SocketError> {
        let handle = match self.entries.get(socket)? {
            Entry::Udp { handle, .. } => *handle,
            other => return Err(SocketError::WrongKind(socket, other.kind(), "UDP")),
        };
        let s = self.sockets.get_mut::<udp::Socket>(handle);
        // Applications mostly ask when nothing is queued: answer that without a dequeue.
        if !s.can_recv() {
            return Ok(None);
        }
        match s.recv() {
            Ok((data, meta)) => {
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                Ok(Some((n, from_endpoint(meta.endpoint))))
            }
            Err(_) => Ok(None),
        }
    }

    fn icmp_echo_open(&mut self, ident: u16) -> Result<SocketId, SocketError> {
        let queue = || {
            icmp::PacketBuffer::new(
                vec![icmp::PacketMetadata::EMPTY; self.config.datagram_queue_packets],
                vec![0; self.config.datagram_queue_bytes],
            )
        };
        let mut socket = icmp::Socket::new(queue(), queue());
        socket
            .bind(icmp::Endpoint::Ident(ident))
            .map_err(|_| SocketError::Unsupported("smoltcp refused to bind this ICMP ident"))?;
        let handle = self.sockets.add(socket);
        Ok(self.entries.insert(Entry::Icmp { handle, ident }))
    }

    fn icmp_echo_send(
        &mut self,
        socket: SocketId,
        dest: IpAddr,
        seq: u16,
        payload: &[u8],
    ) -> Result<(), SocketError> {
        let (handle, ident) = match self.entries.get(socket)? {
            Entry::Icmp { handle, ident } => (*handle, *ident),
            other => return Err(SocketError::WrongKind(socket, other.kind(), "ICMP echo")),
        };
        let checksums = smoltcp::phy::ChecksumCapabilities::default();
        match dest {
            IpAddr::V4(_) => {
                if self.config.ipv4.is_none() {
                    return Err(SocketError::Unaddressable(dest));
                }
                let repr = Icmpv4Repr::EchoRequest {
                    ident,
                    seq_no: seq,
                    data: payload,
                };
                let s = self.sockets.get_mut::<icmp::Socket>(handle);
                let buf = s
                    .send(repr.buffer_len(), to_ip_address(dest))
                    .map_err(|_| SocketError::BufferFull)?;
                repr.emit(&mut Icmpv4Packet::new_unchecked(buf), &checksums);
            }
            IpAddr::V6(dst) => {
                if self.config.ipv6.is_none() {
                    return Err(SocketError::Unaddressable(dest));
                }
                let src = self.iface.get_source_address_ipv6(&dst);
                let repr = Icmpv6Repr::EchoRequest {
                    ident,
                    seq_no: seq,
                    data: payload,
                };
                let s = self.sockets.get_mut::<icmp::Socket>(handle);
                let buf = s
                    .send(repr.buffer_len(), to_ip_address(dest))
                    .map_err(|_| SocketError::BufferFull)?;
                repr.emit(
                    &src,
                    &dst,
                    &mut Icmpv6Packet::new_unchecked(buf),
                    &checksums,
                );
            }
        }
        Ok(())
    }

    fn icmp_echo_recv(&mut self, socket: SocketId) -> Result<Option<EchoReply>, SocketError> {
        let handle = match self.entries.get(socket)? {
            Entry::Icmp { handle, .. } => *handle,
            other => return Err(SocketError::WrongKind(socket, other.kind(), "ICMP echo")),
        };
        let s = self.sockets.get_mut::<icmp::Socket>(handle);
        if !s.can_recv() {
            return Ok(None);
        }
        // Other ICMP messages for this ident (errors) are drained and passed over.
        while let Ok((data, from)) = s.recv() {
            let reply = match from {
                IpAddress::Ipv4(_) => {
                    let packet = Icmpv4Packet::new_checked(data).ok();
                    packet
                        .filter(|p| p.msg_type() == smoltcp::wire::Icmpv4Message::EchoReply)
                        .map(|p| (p.echo_ident(), p.echo_seq_no(), p.data().len()))
                }
                IpAddress::Ipv6(_) => {
                    let packet = Icmpv6Packet::new_checked(data).ok();
                    packet
                        .filter(|p| p.msg_type() == smoltcp::wire::Icmpv6Message::EchoReply)
                        .map(|p| (p.echo_ident(), p.echo_seq_no(), p.payload().len()))
                }
            };
            if let Some((ident, seq, payload_len)) = reply {
                return Ok(Some(EchoReply {
                    from: from_ip_address(from),
                    ident,
                    seq,
                    payload_len,
                }));
            }
        }
        Ok(None)
    }

    fn close(&mut self, socket: SocketId) -> Result<(), SocketError> {
        let entry = self.entries.remove(socket)?;
        match entry {
            Entry::TcpListener { port, pool } => {
                self.tcp_ports_in_use.remove(&port);
                for handle in pool {
                    let s = self.sockets.get_mut::<tcp::Socket>(handle);
                    if s.state() == tcp::State::Listen {
                        self.sockets.remove(handle);
                    } else {
                        // A half-open connection in the backlog is reset, as kernels do.
                        s.abort();
                        self.closing.push(handle);
                    }
                }
            }
            Entry::Tcp(conn) => {
                if let Some(port) = conn.ephemeral_port {
                    self.tcp_ports_in_use.remove(&port);
                }
                let s = self.sockets.get_mut::<tcp::Socket>(conn.handle);
                if s.state() == tcp::State::Closed {
                    self.sockets.remove(conn.handle);
                } else {
                    s.close();
                    self.closing.push(conn.handle);
                }
            }
            Entry::Udp { handle, port } => {
                self.udp_ports_in_use.remove(&port);
                self.sockets.remove(handle);
            }
            Entry::Icmp { handle, .. } => {
                self.sockets.remove(handle);
            }
        }
        Ok(())
    }
}
