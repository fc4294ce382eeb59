//! Sockets for programs on simulated hosts, shaped as tokio's: `TcpListener`, `TcpStream` (tokio's `AsyncRead`/`AsyncWrite`), `UdpSocket`, name lookup, errors as `std::io::Error`.
//!
//! Every call goes to the stack of the host the program runs on, through the [`Stack`]
//! trait, so the same program runs over smoltcp, lwIP or any registered stack. A socket
//! call takes effect when the world next polls the stack, which it does at once after an act
//! that changed something; readiness is looked at again after every poll of the stack.
//!
//! [`Stack`]: stack::Stack

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use stack::{SocketError, SocketId, TcpEnd, TcpState};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::host::{in_context, with_context, HostContext};

/// How many connections a listener holds while they are being set up.
const LISTEN_BACKLOG: usize = 16;

/// The `std::io::Error` for a stack's socket error.
pub(crate) fn io_error(error: SocketError) -> io::Error {
    let kind = match &error {
        SocketError::UnknownSocket(_) | SocketError::WrongKind(..) => io::ErrorKind::InvalidInput,
        SocketError::AddressInUse(_) | SocketError::NoFreePort => io::ErrorKind::AddrInUse,
        SocketError::Unaddressable(_) => io::ErrorKind::HostUnreachable,
        SocketError::InvalidState(_) => io::ErrorKind::NotConnected,
        SocketError::BufferFull => io::ErrorKind::WouldBlock,
        SocketError::TooLarge(_) => io::ErrorKind::InvalidInput,
        SocketError::Finished => io::ErrorKind::UnexpectedEof,
        SocketError::Unsupported(_) => io::ErrorKind::Unsupported,
    };
    io::Error::new(kind, error)
}

fn end_error(end: TcpEnd) -> io::Error {
    match end {
        TcpEnd::Refused => io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "the peer refused the connection (it answered the SYN with a RST)",
        ),
        TcpEnd::Reset => io::Error::new(
            io::ErrorKind::ConnectionReset,
            "the peer reset the connection",
        ),
        TcpEnd::TimedOut => io::Error::new(
            io::ErrorKind::TimedOut,
            "the stack gave up retransmitting: the peer is unreachable",
        ),
    }
}

/// Resolves a host name of the simulation (or an address literal) to the host's address:
/// its IPv4 address when it has one, else its IPv6 address.
///
/// # Panics
///
/// Outside a program on a simulated host.
pub fn lookup(name: &str) -> io::Result<IpAddr> {
    if let Ok(addr) = name.parse::<IpAddr>() {
        return Ok(addr);
    }
    with_context(|c| {
        c.names
            .get(name)
            .and_then(|addrs| addrs.first().copied())
            .ok_or_else(|| {
                let known: Vec<&str> = c.names.keys().map(String::as_str).collect();
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "no host named `{name}` in this simulation (its hosts: {})",
                        known.join(", ")
                    ),
                )
            })
    })
}

/// What names a socket address: a `SocketAddr`, `(ip, port)`, `("host", port)` or
/// `"host:port"`, where `host` is a host of the simulation or an address literal.
pub trait ToSocketAddr {
    /// The address, looked up in the simulation's names.
    fn to_socket_addr(&self) -> io::Result<SocketAddr>;
}

impl ToSocketAddr for SocketAddr {
    fn to_socket_addr(&self) -> io::Result<SocketAddr> {
        Ok(*self)
    }
}

impl ToSocketAddr for (IpAddr, u16) {
    fn to_socket_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::new(self.0, self.1))
    }
}

impl ToSocketAddr for (Ipv4Addr, u16) {
    fn to_socket_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::new(IpAddr::V4(self.0), self.1))
    }
}

impl ToSocketAddr for (Ipv6Addr, u16) {
    fn to_socket_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::new(IpAddr::V6(self.0), self.1))
    }
}

impl ToSocketAddr for (&str, u16) {
    fn to_socket_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::new(lookup(self.0)?, self.1))
    }
}

impl ToSocketAddr for (String, u16) {
    fn to_socket_addr(&self) -> io::Result<SocketAddr> {
        (self.0.as_str(), self.1).to_socket_addr()
    }
}

impl ToSocketAddr for str {
    fn to_socket_addr(&self) -> io::Result<SocketAddr> {
        if let Ok(addr) = self.parse::<SocketAddr>() {
            return Ok(addr);
        }
        let (host, port) = self.rsplit_once(':').ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{self}` is not `host:port`"),
            )
        })?;
        let port = port.parse::<u16>().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{port}` in `{self}` is not a port number (0-65535)"),
            )
        })?;
        (host, port).to_socket_addr()
    }
}

impl ToSocketAddr for &str {
    fn to_socket_addr(&self) -> io::Result<SocketAddr> {
        (**self).to_socket_addr()
    }
}

impl ToSocketAddr for String {
    fn to_socket_addr(&self) -> io::Result<SocketAddr> {
        self.as_str().to_socket_addr()
    }
}

/// The port to bind for `addr`, which must be unspecified or one of the host's addresses.
fn bind_port(context: &HostContext, addr: SocketAddr) -> io::Result<u16> {
    let ip = addr.ip();
    if !ip.is_unspecified() && !context.addresses.contains(&ip) {
        return Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!(
                "{ip} is not an address of host `{}` (its addresses: {:?})",
                context.host, context.addresses
            ),
        ));
    }
    Ok(addr.port())
}

/// A socket of one host's stack; it refuses to be used from another host's program.
#[derive(Debug)]
struct Handle {
    id: SocketId,
    host_index: usize,
}

impl Handle {
    fn call<R>(
        &self,
        changes: bool,
        call: impl FnOnce(&mut dyn stack::Stack, SocketId) -> Result<R, SocketError>,
    ) -> io::Result<R> {
        with_context(|c| {
            if c.host_index != self.host_index {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a socket of one simulated host was used by the program of another",
                ));
            }
            c.stack(changes, |stack| call(stack, self.id))
                .map_err(io_error)
        })
    }

    /// Closes the socket, unless the run (and with it the stack) is already gone.
    fn close(&self) {
        if in_context() {
            let _ = self.call(true, |stack, id| stack.close(id));
        }
    }
}

/// A TCP listener, as `tokio::net::TcpListener`.
#[derive(Debug)]
pub struct TcpListener {
    handle: Handle,
    local: SocketAddr,
}

impl TcpListener {
    /// Listens on `addr`'s port (its address must be unspecified or the host's own).
    pub async fn bind(addr: impl ToSocketAddr) -> io::Result<TcpListener> {
        let addr = addr.to_socket_addr()?;
        with_context(|c| {
            let port = bind_port(c, addr)?;
            if port == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a listener needs a port: 0 picks none on a simulated host",
                ));
            }
            let id = c
                .stack(true, |stack| stack.tcp_listen(port, LISTEN_BACKLOG))
                .map_err(io_error)?;
            Ok(TcpListener {
                handle: Handle {
                    id,
                    host_index: c.host_index,
                },
                local: SocketAddr::new(addr.ip(), port),
            })
        })
    }

    /// Waits for the next connection that completed its handshake.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Polls for an established connection.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        match self.handle.call(false, |stack, id| stack.tcp_accept(id)) {
            Ok(Some(id)) => {
                let stream = TcpStream::from_id(id, self.handle.host_index, None);
                let peer = stream
                    .peer_addr()
                    .unwrap_or_else(|_| SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0));
                Poll::Ready(Ok((stream, peer)))
            }
            Ok(None) => {
                with_context(|c| c.wait_for_io(cx.waker()));
                Poll::Pending
            }
            Err(error) => Poll::Ready(Err(error)),
        }
    }

    /// The address the listener was bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        self.handle.close();
    }
}

/// A TCP connection, as `tokio::net::TcpStream`: it reads and writes through tokio's
/// `AsyncRead` and `AsyncWrite`, and dropping it closes the connection gracefully.
#[derive(Debug)]
pub struct TcpStream {
    handle: Handle,
    /// Where it connected to, when it did (the stack may not say).
    remote: Option<SocketAddr>,
    shut_down: bool,
}

impl TcpStream {
    fn from_id(id: SocketId, host_index: usize, remote: Option<SocketAddr>) -> TcpStream {
        TcpStream {
            handle: Handle { id, host_index },
            remote,
            shut_down: false,
        }
    }

    /// Opens a connection to `addr` and waits until it is established.
    pub async fn connect(addr: impl ToSocketAddr) -> io::Result<TcpStream> {
        let remote = addr.to_socket_addr()?;
        let (id, host_index) = with_context(|c| {
            c.stack(true, |stack| stack.tcp_connect(remote))
                .map(|id| (id, c.host_index))
                .map_err(io_error)
        })?;
        // Dropped before the handshake ends (a timeout, say), the stream closes the socket.
        let stream = TcpStream::from_id(id, host_index, Some(remote));
        std::future::poll_fn(|cx| stream.poll_established(cx)).await?;
        Ok(stream)
    }

    fn poll_established(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let state = self.handle.call(false, |stack, id| {
            Ok((stack.tcp_state(id)?, stack.tcp_end(id)?))
        })?;
        match state {
            (_, Some(end)) => Poll::Ready(Err(end_error(end))),
            (TcpState::SynSent | TcpState::SynReceived, None) => {
                with_context(|c| c.wait_for_io(cx.waker()));
                Poll::Pending
            }
            (TcpState::Closed | TcpState::Listen, None) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "the connection closed before it was established",
            ))),
            _ => Poll::Ready(Ok(())),
        }
    }

    /// The connection's local and remote address, from the stack.
    fn endpoints(&self) -> io::Result<(SocketAddr, SocketAddr)> {
        self.handle
            .call(false, |stack, id| stack.tcp_endpoints(id))?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "the connection is closed"))
    }

    /// The address of the peer.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self.endpoints() {
            Ok((_, remote)) => Ok(remote),
            Err(error) => self.remote.ok_or(error),
        }
    }

    /// This end's address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.endpoints().map(|(local, _)| local)
    }

    /// Turns Nagle's algorithm off (`true`) or on, as `TCP_NODELAY` does.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.handle
            .call(false, |stack, id| stack.tcp_set_nagle(id, !nodelay))
    }

    /// The connection's state as RFC 9293 names it (a window into the stack that tokio's
    /// streams do not have).
    pub fn state(&self) -> io::Result<TcpState> {
        self.handle.call(false, |stack, id| stack.tcp_state(id))
    }

    /// Sends a RST and forgets the connection, instead of closing it gracefully.
    pub fn abort(self) -> io::Result<()> {
        let result = self.handle.call(true, |stack, id| stack.tcp_abort(id));
        std::mem::forget(self);
        result
    }

    /// The error for a connection that can take no more, if it ended.
    fn ended(&self) -> io::Result<Option<io::Error>> {
        let (state, end) = self.handle.call(false, |stack, id| {
            Ok((stack.tcp_state(id)?, stack.tcp_end(id)?))
        })?;
        Ok(match (state, end) {
            (_, Some(end)) => Some(end_error(end)),
            (TcpState::Closed | TcpState::TimeWait, None) => Some(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the connection is closed",
            )),
            _ => None,
        })
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        self.handle.close();
    }
}

impl AsyncRead for TcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let unfilled = buf.initialize_unfilled();
        match self
            .handle
            .call(false, |stack, id| match stack.tcp_recv(id, unfilled) {
                Err(SocketError::Finished) => Ok(None),
                other => other.map(Some),
            }) {
            // The peer closed and everything was read: end of stream.
            Ok(None) => Poll::Ready(Ok(())),
            Ok(Some(0)) => match self.ended() {
                Ok(Some(error)) if error.kind() == io::ErrorKind::BrokenPipe => Poll::Ready(Ok(())),
                Ok(Some(error)) => Poll::Ready(Err(error)),
                Ok(None) => {
                    with_context(|c| c.wait_for_io(cx.waker()));
                    Poll::Pending
                }
                Err(error) => Poll::Ready(Err(error)),
            },
            Ok(Some(n)) => {
                // Taking bytes opens the receive window: the stack has something to say.
                with_context(|c| c.note_stack_changed());
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Err(error) => Poll::Ready(Err(error)),
        }
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if self.shut_down {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the stream was shut down for writing",
            )));
        }
        let sent = self
            .handle
            .call(false, |stack, id| match stack.tcp_send(id, data) {
                Err(SocketError::BufferFull) => Ok(0),
                other => other,
            });
        match sent {
            Ok(0) => match self.ended() {
                Ok(Some(error)) => Poll::Ready(Err(error)),
                Ok(None) => {
                    with_context(|c| c.wait_for_io(cx.waker()));
                    Poll::Pending
                }
                Err(error) => Poll::Ready(Err(error)),
            },
            Ok(n) => {
                with_context(|c| c.note_stack_changed());
                Poll::Ready(Ok(n))
            }
            Err(error) => match self.ended() {
                Ok(Some(ended)) => Poll::Ready(Err(ended)),
                _ => Poll::Ready(Err(error)),
            },
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // As with tokio's TcpStream: what was written is with the stack already.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.shut_down {
            self.shut_down = true;
            if let Err(error) = self.handle.call(true, |stack, id| stack.tcp_shutdown(id)) {
                if error.kind() != io::ErrorKind::NotConnected {
                    return Poll::Ready(Err(error));
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// A UDP socket, as `tokio::net::UdpSocket`.
#[derive(Debug)]
pub struct UdpSocket {
    handle: Handle,
    local: SocketAddr,
    connected: Option<SocketAddr>,
}

impl UdpSocket {
    /// Binds `addr`'s port (its address must be unspecified or the host's own); port 0 takes a
    /// free port from the dynamic range.
    pub async fn bind(addr: impl ToSocketAddr) -> io::Result<UdpSocket> {
        let addr = addr.to_socket_addr()?;
        with_context(|c| {
            let mut port = bind_port(c, addr)?;
            let id = if port != 0 {
                c.stack(true, |stack| stack.udp_bind(port))
                    .map_err(io_error)?
            } else {
                let mut attempts = 0u32;
                loop {
                    port = c.next_ephemeral_port();
                    match c.stack(true, |stack| stack.udp_bind(port)) {
                        Ok(id) => break id,
                        Err(SocketError::AddressInUse(_)) if attempts < 16384 => attempts += 1,
                        Err(error) => return Err(io_error(error)),
                    }
                }
            };
            Ok(UdpSocket {
                handle: Handle {
                    id,
                    host_index: c.host_index,
                },
                local: SocketAddr::new(addr.ip(), port),
                connected: None,
            })
        })
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    /// Sets the default destination of [`UdpSocket::send`] and the only source
    /// [`UdpSocket::recv`] accepts.
    pub async fn connect(&mut self, addr: impl ToSocketAddr) -> io::Result<()> {
        self.connected = Some(addr.to_socket_addr()?);
        Ok(())
    }

    /// The address given to [`UdpSocket::connect`].
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.connected.ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotConnected, "the socket is not connected")
        })
    }

    /// Sends one datagram to `target`; waits while the socket's queue is full.
    pub async fn send_to(&self, data: &[u8], target: impl ToSocketAddr) -> io::Result<usize> {
        let target = target.to_socket_addr()?;
        std::future::poll_fn(|cx| self.poll_send_to(cx, data, target)).await
    }

    /// Polls to send one datagram to `target`.
    pub fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        data: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        match self.handle.call(true, |stack, id| {
            match stack.udp_send_to(id, target, data) {
                Err(SocketError::BufferFull) => Ok(false),
                other => other.map(|()| true),
            }
        }) {
            Ok(true) => Poll::Ready(Ok(data.len())),
            Ok(false) => {
                with_context(|c| c.wait_for_io(cx.waker()));
                Poll::Pending
            }
            Err(error) => Poll::Ready(Err(error)),
        }
    }

    /// Waits for one datagram; returns its length (truncated to `buf`) and its source.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        std::future::poll_fn(|cx| self.poll_recv_from(cx, buf)).await
    }

    /// Polls for one datagram.
    pub fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        loop {
            match self
                .handle
                .call(false, |stack, id| stack.udp_recv_from(id, buf))
            {
                Ok(Some((n, from))) => {
                    if self.connected.is_some_and(|peer| peer != from) {
                        continue;
                    }
                    return Poll::Ready(Ok((n.min(buf.len()), from)));
                }
                Ok(None) => {
                    with_context(|c| c.wait_for_io(cx.waker()));
                    return Poll::Pending;
                }
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }

    /// Sends one datagram to the connected peer.
    pub async fn send(&self, data: &[u8]) -> io::Result<usize> {
        let peer = self.peer_addr()?;
        self.send_to(data, peer).await
    }

    /// Waits for one datagram from the connected peer.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.peer_addr()?;
        self.recv_from(buf).await.map(|(n, _)| n)
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        self.handle.close();
    }
}
