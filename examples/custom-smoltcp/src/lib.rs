//! A smoltcp host configured differently from wirelab's built-in one (CUBIC congestion control, TCP buffers of at most 16 KiB), as a stack a user's crate brings to wirelab.
//!
//! The stack is wirelab's smoltcp backend underneath; what makes it this crate's own is the
//! configuration it imposes on every host, and the [`Stack`] implementation that a stack of
//! your own would have in its place. Each method says what wirelab expects of it.

use std::net::{IpAddr, SocketAddr};

use wirelab::backends::smoltcp::SmoltcpStack;
use wirelab::stack::{
    CongestionControl, EchoReply, FrameQueue, MacAddr, SocketError, SocketId, Stack, StackConfig,
    TcpEnd, TcpState,
};

/// The largest TCP buffer this stack gives a connection, whatever the scenario asks.
pub const TCP_BUFFER_CAP_BYTES: usize = 16 * 1024;

/// smoltcp with CUBIC and small TCP buffers.
pub struct CappedSmoltcp {
    inner: SmoltcpStack,
}

impl CappedSmoltcp {
    /// A host configured as wirelab asks, with this stack's own choices on top.
    pub fn new(mut config: StackConfig) -> CappedSmoltcp {
        config.congestion_control = CongestionControl::Cubic;
        config.tcp_rx_buffer_bytes = config.tcp_rx_buffer_bytes.min(TCP_BUFFER_CAP_BYTES);
        config.tcp_tx_buffer_bytes = config.tcp_tx_buffer_bytes.min(TCP_BUFFER_CAP_BYTES);
        CappedSmoltcp {
            inner: SmoltcpStack::new(config),
        }
    }
}

impl Stack for CappedSmoltcp {
    /// The interface's Ethernet address, as wirelab assigned it.
    fn mac(&self) -> MacAddr {
        self.inner.mac()
    }

    /// A frame arrived; process it on the next poll.
    fn receive(&mut self, frame: &[u8]) {
        self.inner.receive(frame)
    }

    /// Do everything due at `now_us` (wirelab's virtual time: never read a clock) and append
    /// the frames to send to `egress`.
    fn poll(&mut self, now_us: u64, egress: &mut FrameQueue) -> bool {
        self.inner.poll(now_us, egress)
    }

    /// When the stack next needs a poll with nothing arriving (timers).
    fn poll_at(&mut self, now_us: u64) -> Option<u64> {
        self.inner.poll_at(now_us)
    }

    fn tcp_listen(&mut self, port: u16, backlog: usize) -> Result<SocketId, SocketError> {
        self.inner.tcp_listen(port, backlog)
    }

    fn tcp_accept(&mut self, listener: SocketId) -> Result<Option<SocketId>, SocketError> {
        self.inner.tcp_accept(listener)
    }

    fn tcp_connect(&mut self, remote: SocketAddr) -> Result<SocketId, SocketError> {
        self.inner.tcp_connect(remote)
    }

    fn tcp_send(&mut self, socket: SocketId, data: &[u8]) -> Result<usize, SocketError> {
        self.inner.tcp_send(socket, data)
    }

    fn tcp_recv(&mut self, socket: SocketId, buf: &mut [u8]) -> Result<usize, SocketError> {
        self.inner.tcp_recv(socket, buf)
    }

    fn tcp_shutdown(&mut self, socket: SocketId) -> Result<(), SocketError> {
        self.inner.tcp_shutdown(socket)
    }

    fn tcp_abort(&mut self, socket: SocketId) -> Result<(), SocketError> {
        self.inner.tcp_abort(socket)
    }

    fn tcp_state(&self, socket: SocketId) -> Result<TcpState, SocketError> {
        self.inner.tcp_state(socket)
    }

    fn tcp_end(&self, socket: SocketId) -> Result<Option<TcpEnd>, SocketError> {
        self.inner.tcp_end(socket)
    }

    fn tcp_send_queue(&self, socket: SocketId) -> Result<usize, SocketError> {
        self.inner.tcp_send_queue(socket)
    }

    fn tcp_set_keepalive(
        &mut self,
        socket: SocketId,
        interval_us: Option<u64>,
    ) -> Result<(), SocketError> {
        self.inner.tcp_set_keepalive(socket, interval_us)
    }

    fn tcp_set_nagle(&mut self, socket: SocketId, enabled: bool) -> Result<(), SocketError> {
        self.inner.tcp_set_nagle(socket, enabled)
    }

    fn tcp_set_timeout(
        &mut self,
        socket: SocketId,
        timeout_us: Option<u64>,
    ) -> Result<(), SocketError> {
        self.inner.tcp_set_timeout(socket, timeout_us)
    }

    fn udp_bind(&mut self, port: u16) -> Result<SocketId, SocketError> {
        self.inner.udp_bind(port)
    }

    fn udp_local_port(&self, socket: SocketId) -> Result<u16, SocketError> {
        self.inner.udp_local_port(socket)
    }

    fn udp_send_to(
        &mut self,
        socket: SocketId,
        dest: SocketAddr,
        data: &[u8],
    ) -> Result<(), SocketError> {
        self.inner.udp_send_to(socket, dest, data)
    }

    fn udp_recv_from(
        &mut self,
        socket: SocketId,
        buf: &mut [u8],
    ) -> Result<Option<(usize, SocketAddr)>, SocketError> {
        self.inner.udp_recv_from(socket, buf)
    }

    fn icmp_echo_open(&mut self, ident: u16) -> Result<SocketId, SocketError> {
        self.inner.icmp_echo_open(ident)
    }

    fn icmp_echo_send(
        &mut self,
        socket: SocketId,
        dest: IpAddr,
        seq: u16,
        payload: &[u8],
    ) -> Result<(), SocketError> {
        self.inner.icmp_echo_send(socket, dest, seq, payload)
    }

    fn icmp_echo_recv(&mut self, socket: SocketId) -> Result<Option<EchoReply>, SocketError> {
        self.inner.icmp_echo_recv(socket)
    }

    fn close(&mut self, socket: SocketId) -> Result<(), SocketError> {
        self.inner.close(socket)
    }
}
