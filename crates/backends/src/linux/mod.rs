//! The Linux kernel as a simulated host (`stack = "linux"`): a [`Stack`] whose frames go to and from a TAP device in a network namespace wirelab creates, and whose sockets are the kernel's own, opened inside that namespace. Such a run is paced to the wall clock.
//!
//! Each linux host gets its own namespace (`wirelab-<pid>-<n>`, see [`netns`]) with one
//! TAP device, `wl0`, carrying the host's MAC address, MTU and the scenario's IPv4 and IPv6
//! addresses (IPv6 without duplicate address detection and without router solicitations; a
//! host without an IPv6 address has IPv6 switched off, so that the kernel sends nothing the
//! scenario did not ask for). Frames the simulator delivers to the host are written to the TAP
//! device; frames the kernel sends are read from it when the host is polled. Socket calls are
//! real, non-blocking kernel sockets created by a thread that entered the namespace: TCP
//! (`SOCK_STREAM`), UDP and ICMP echo through unprivileged ping sockets (the namespace's
//! `ping_group_range` is opened to every group). Ephemeral ports come from 49152-65535, the
//! range smoltcp and lwIP use. A connection the application closed first and that the kernel
//! has handed to its time-wait socket reads TIME-WAIT (the application's socket reads CLOSE).
//! Dropping the stack closes every descriptor and then deletes the namespace, with the TAP
//! device in it.
//!
//! What the kernel does is the kernel's: its ISNs, ephemeral ports, IP IDs, options and
//! timers are its own, so a run with a linux host is not reproducible; the simulator says so
//! in its report (`RunReport::real_time` in the simulator).

use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use stack::{
    CongestionControl, EchoReply, FrameQueue, MacAddr, SocketError, SocketId, SocketTable, Stack,
    StackConfig, TcpEnd, TcpState,
};

pub mod netns;

use netns::{missing_requirements, Namespace, TapDevice, TapError};

/// The most linux hosts one run may have: each is a namespace and a TAP device.
pub const MAX_LINUX_HOSTS: usize = 16;

/// The longest virtual time limit a run with linux hosts may have: it spends its virtual time
/// in real time.
pub const MAX_REAL_TIME_US: u64 = 120_000_000;

/// How often a linux host is polled when no frame wakes it: the kernel's sockets change state
/// on their own (a connection completes, data arrives), and applications look at them then.
pub const POLL_INTERVAL_US: u64 = 1_000;

/// The TAP device's name inside each namespace.
const DEVICE: &str = "wl0";

/// `Ok` when this machine can run linux hosts; otherwise what is missing, with the fix.
pub fn available() -> Result<(), String> {
    match missing_requirements() {
        None => Ok(()),
        Some(missing) => Err(format!(
            "the linux backend needs root, /dev/net/tun and iproute2: {missing}"
        )),
    }
}

/// The kernel's socket error as the end of a connection.
fn end_of(errno: i32) -> Option<TcpEnd> {
    match errno {
        libc::ECONNREFUSED => Some(TcpEnd::Refused),
        libc::ECONNRESET | libc::EPIPE => Some(TcpEnd::Reset),
        libc::ETIMEDOUT | libc::EHOSTUNREACH | libc::ENETUNREACH => Some(TcpEnd::TimedOut),
        _ => None,
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Sends one datagram on a non-blocking socket; the errno when the kernel refuses it.
fn send_datagram(fd: RawFd, data: &[u8], dest: SocketAddr, v6: bool) -> Result<(), i32> {
    let (storage, len) = sockaddr(dest, v6);
    // SAFETY: a valid descriptor, a buffer of `data.len()` bytes, an address of `len`.
    let n = unsafe {
        libc::sendto(
            fd,
            data.as_ptr() as *const libc::c_void,
            data.len(),
            libc::MSG_DONTWAIT,
            &storage as *const _ as *const libc::sockaddr,
            len,
        )
    };
    if n >= 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

/// Takes one datagram into `buf` without waiting: its length and sender, or the errno.
fn recv_datagram(fd: RawFd, buf: &mut [u8]) -> Result<(usize, libc::sockaddr_storage), i32> {
    // SAFETY: sockaddr_storage is plain data.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: a valid descriptor, a buffer of `buf.len()` bytes, an address buffer.
    let n = unsafe {
        libc::recvfrom(
            fd,
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
            libc::MSG_DONTWAIT,
            &mut storage as *mut _ as *mut libc::sockaddr,
            &mut len,
        )
    };
    if n >= 0 {
        Ok((n as usize, storage))
    } else {
        Err(errno())
    }
}

/// The kernel's `tcpi_state` as RFC 9293 names it.
fn tcp_state_of(linux: u8) -> TcpState {
    match linux {
        1 => TcpState::Established,
        2 => TcpState::SynSent,
        3 | 12 => TcpState::SynReceived,
        4 => TcpState::FinWait1,
        5 => TcpState::FinWait2,
        6 => TcpState::TimeWait,
        8 => TcpState::CloseWait,
        9 => TcpState::LastAck,
        10 => TcpState::Listen,
        11 => TcpState::Closing,
        _ => TcpState::Closed,
    }
}

/// A socket address for a socket of family `v6` (an IPv4 address on an IPv6 socket is mapped).
fn sockaddr(addr: SocketAddr, v6: bool) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all zeroes is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let addr = match (addr, v6) {
        (SocketAddr::V4(a), true) => {
            SocketAddr::V6(SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0))
        }
        (a, _) => a,
    };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and suitably aligned.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in6 and suitably aligned.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// The address in `storage`, with IPv4-mapped IPv6 addresses turned back into IPv4.
fn socket_addr_of(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                None => SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0)),
            })
        }
        _ => None,
    }
}

fn set_int(fd: RawFd, level: i32, name: i32, value: i32) -> bool {
    // SAFETY: a valid descriptor and a pointer to an int of the stated size.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        ) == 0
    }
}

fn get_int(fd: RawFd, level: i32, name: i32) -> Option<i32> {
    let mut value = 0i32;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: a valid descriptor and a pointer to an int with its size.
    let ok = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            &mut value as *mut i32 as *mut libc::c_void,
            &mut len,
        ) == 0
    };
    ok.then_some(value)
}

struct TcpConn {
    /// `None` once the application aborted the connection (its descriptor is then closed).
    fd: Option<OwnedFd>,
    /// How the connection ended, once the kernel said so (its socket error is read once).
    end: Cell<Option<TcpEnd>>,
    /// The application closed its side first (it shut down an established connection).
    active_close: bool,
}

impl TcpConn {
    fn new(fd: OwnedFd) -> TcpConn {
        TcpConn {
            fd: Some(fd),
            end: Cell::new(None),
            active_close: false,
        }
    }

    fn state(&self) -> TcpState {
        let Some(fd) = &self.fd else {
            return TcpState::Closed;
        };
        // The first byte of `struct tcp_info` is the state.
        let mut info = [0u8; 8];
        let mut len = info.len() as libc::socklen_t;
        // SAFETY: a valid descriptor and a buffer of `len` bytes.
        let ok = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                info.as_mut_ptr() as *mut libc::c_void,
                &mut len,
            ) == 0
        };
        let state = if ok {
            tcp_state_of(info[0])
        } else {
            TcpState::Closed
        };
        if state == TcpState::Closed && self.end.get().is_none() {
            if let Some(error) = get_int(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_ERROR) {
                self.note_error(error);
            }
        }
        // On entering TIME-WAIT the kernel hands the connection to a small time-wait socket
        // and the application's socket reads CLOSE. A connection that the application closed
        // first and that ended without an error is in TIME-WAIT (for the kernel's 60 s).
        if state == TcpState::Closed && self.active_close && self.end.get().is_none() {
            return TcpState::TimeWait;
        }
        state
    }

    fn note_error(&self, errno: i32) {
        if self.end.get().is_none() {
            self.end.set(end_of(errno));
        }
    }
}

enum Entry {
    Listener(OwnedFd),
    Tcp(TcpConn),
    Udp(OwnedFd),
    Icmp {
        v4: Option<OwnedFd>,
        v6: Option<OwnedFd>,
    },
}

impl Entry {
    fn kind(&self) -> &'static str {
        match self {
            Entry::Listener(_) => "TCP listener",
            Entry::Tcp(_) => "TCP",
            Entry::Udp(_) => "UDP",
            Entry::Icmp { .. } => "ICMP echo",
        }
    }
}

/// One Linux kernel host: a namespace of its own, a TAP device, and kernel sockets.
pub struct LinuxStack {
    config: StackConfig,
    /// Sockets are created IPv6 (taking IPv4 too) when the host has an IPv6 address.
    v6_sockets: bool,
    entries: SocketTable<Entry>,
    buf: Vec<u8>,
    received: bool,
    tap: TapDevice,
    /// Last: the namespace is deleted after every descriptor in it is closed.
    namespace: Namespace,
}

impl LinuxStack {
    /// Creates the namespace, the TAP device with the host's MAC, MTU and addresses, and
    /// routes through the host's gateways.
    pub fn new(config: StackConfig) -> Result<LinuxStack, TapError> {
        available().map_err(TapError::Missing)?;
        let namespace = Namespace::create()?;
        let ipv6 = config.ipv6.is_some();
        namespace.run_inside(move || write_sysctls(ipv6))??;
        let tap = namespace.create_tap(DEVICE)?;
        let mut commands = format!(
            "link set {DEVICE} address {} mtu {}\nlink set {DEVICE} up\n",
            config.mac, config.ip_mtu_bytes
        );
        if let Some((addr, prefix)) = config.ipv4 {
            commands.push_str(&format!("addr add {addr}/{prefix} dev {DEVICE}\n"));
        }
        if let Some((addr, prefix)) = config.ipv6 {
            commands.push_str(&format!("addr add {addr}/{prefix} dev {DEVICE} nodad\n"));
        }
        if let Some(gateway) = config.ipv4_gateway {
            commands.push_str(&format!("route add default via {gateway} dev {DEVICE}\n"));
        }
        if let Some(gateway) = config.ipv6_gateway {
            commands.push_str(&format!("route add default via {gateway} dev {DEVICE}\n"));
        }
        namespace.ip_batch(&commands)?;
        Ok(LinuxStack {
            v6_sockets: ipv6,
            config,
            entries: SocketTable::new(),
            buf: vec![0; 65_536],
            received: false,
            tap,
            namespace,
        })
    }

    /// The namespace this host lives in.
    pub fn namespace(&self) -> &str {
        self.namespace.name()
    }

    /// A non-blocking socket created inside the namespace.
    fn socket(&self, domain: i32, kind: i32, protocol: i32) -> Result<OwnedFd, SocketError> {
        let created = self.namespace.run_inside(move || {
            // SAFETY: plain arguments; the result is checked.
            let fd = unsafe {
                libc::socket(
                    domain,
                    kind | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    protocol,
                )
            };
            if fd < 0 {
                Err(errno())
            } else {
                // SAFETY: a descriptor we just created and own.
                Ok(unsafe { OwnedFd::from_raw_fd(fd) })
            }
        });
        match created {
            Ok(Ok(fd)) => Ok(fd),
            _ => Err(SocketError::Unsupported(
                "the kernel refused to create a socket in the namespace",
            )),
        }
    }

    /// A socket for talking to `family_v6` addresses, or to both families on a dual-stack
    /// host.
    fn ip_socket(&self, kind: i32, protocol: i32) -> Result<(OwnedFd, bool), SocketError> {
        let v6 = self.v6_sockets;
        let fd = self.socket(
            if v6 { libc::AF_INET6 } else { libc::AF_INET },
            kind,
            protocol,
        )?;
        if v6 {
            set_int(
                fd.as_raw_fd(),
                libc::IPPROTO_IPV6,
                libc::IPV6_V6ONLY,
                i32::from(self.config.ipv4.is_none()),
            );
        }
        Ok((fd, v6))
    }

    fn tcp_options(&self, fd: RawFd) {
        let bytes = self.config.tcp_rx_buffer_bytes.min(i32::MAX as usize) as i32;
        set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, bytes);
        let bytes = self.config.tcp_tx_buffer_bytes.min(i32::MAX as usize) as i32;
        set_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, bytes);
        let algorithm: &[u8] = match self.config.congestion_control {
            // The kernel has no "none": it keeps its default (cubic).
            CongestionControl::None => return,
            CongestionControl::Reno => b"reno",
            CongestionControl::Cubic => b"cubic",
        };
        // SAFETY: a valid descriptor and a buffer of the stated length.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_CONGESTION,
                algorithm.as_ptr() as *const libc::c_void,
                algorithm.len() as libc::socklen_t,
            );
        }
    }

    fn tcp(&self, socket: SocketId) -> Result<&TcpConn, SocketError> {
        match self.entries.get(socket)? {
            Entry::Tcp(conn) => Ok(conn),
            other => Err(SocketError::WrongKind(socket, other.kind(), "TCP")),
        }
    }

    /// The connection's open descriptor; a connection the application aborted has none.
    fn tcp_fd(&self, socket: SocketId) -> Result<RawFd, SocketError> {
        let conn = self.tcp(socket)?;
        conn.fd
            .as_ref()
            .map(AsRawFd::as_raw_fd)
            .ok_or(SocketError::InvalidState(TcpState::Closed))
    }

    fn udp_fd(&self, socket: SocketId) -> Result<RawFd, SocketError> {
        match self.entries.get(socket)? {
            Entry::Udp(fd) => Ok(fd.as_raw_fd()),
            other => Err(SocketError::WrongKind(socket, other.kind(), "UDP")),
        }
    }

    fn bind(fd: RawFd, addr: SocketAddr, v6: bool) -> Result<(), i32> {
        let (storage, len) = sockaddr(addr, v6);
        // SAFETY: a valid descriptor and an address of `len` bytes.
        let rc = unsafe { libc::bind(fd, &storage as *const _ as *const libc::sockaddr, len) };
        if rc == 0 {
            Ok(())
        } else {
            Err(errno())
        }
    }

    fn unspecified(v6: bool, port: u16) -> SocketAddr {
        if v6 {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)
        } else {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
        }
    }

    fn reachable(&self, dest: IpAddr) -> Result<(), SocketError> {
        let has_family = match dest {
            IpAddr::V4(_) => self.config.ipv4.is_some(),
            IpAddr::V6(_) => self.config.ipv6.is_some(),
        };
        if has_family {
            Ok(())
        } else {
            Err(SocketError::Unaddressable(dest))
        }
    }
}

/// The namespace's sysctls: unprivileged ping sockets for every group, and IPv6 either off
/// or without duplicate address detection and router solicitations. Runs inside the
/// namespace (`/proc/sys/net` is the calling thread's namespace's).
fn write_sysctls(ipv6: bool) -> Result<(), TapError> {
    let mut settings = vec![
        ("net/ipv4/ping_group_range", "0 2147483647"),
        // Ephemeral ports from the IANA dynamic range, as smoltcp and lwIP take them (and as
        // differential runs expect them): the kernel's default starts at 32768.
        ("net/ipv4/ip_local_port_range", "49152 65535"),
    ];
    if ipv6 {
        settings.push(("net/ipv6/conf/default/accept_dad", "0"));
        settings.push(("net/ipv6/conf/default/dad_transmits", "0"));
        settings.push(("net/ipv6/conf/default/router_solicitations", "0"));
    } else {
        settings.push(("net/ipv6/conf/default/disable_ipv6", "1"));
        settings.push(("net/ipv6/conf/all/disable_ipv6", "1"));
    }
    for (name, value) in settings {
        let path = format!("/proc/sys/{name}");
        if let Err(source) = std::fs::write(&path, value) {
            // A kernel without IPv6 has nothing to switch off.
            if !ipv6 && name.starts_with("net/ipv6") {
                continue;
            }
            return Err(TapError::Io {
                what: format!("writing {value:?} to {path} in the namespace"),
                source,
            });
        }
    }
    Ok(())
}

impl Stack for LinuxStack {
    fn mac(&self) -> MacAddr {
        self.config.mac
    }

    /// The TAP device: readable when the kernel has sent a frame.
    fn wake_fd(&self) -> Option<RawFd> {
        Some(self.tap.raw_fd())
    }

    fn receive(&mut self, frame: &[u8]) {
        // The kernel takes the frame now; one it cannot take (device down) is lost, as on a
        // wire.
        let _ = self.tap.write_frame(frame);
        self.received = true;
    }

    fn poll(&mut self, _now_us: u64, egress: &mut FrameQueue) -> bool {
        let mut changed = std::mem::take(&mut self.received);
        while let Some(n) = self.tap.read_frame(&mut self.buf) {
            egress.push(&self.buf[..n]);
            changed = true;
        }
        changed
    }

    fn poll_at(&mut self, now_us: u64) -> Option<u64> {
        Some(now_us + POLL_INTERVAL_US)
    }

    fn tcp_listen(&mut self, port: u16, backlog: usize) -> Result<SocketId, SocketError> {
        if port == 0 {
            return Err(SocketError::Unsupported("listening on port 0"));
        }
        let (fd, v6) = self.ip_socket(libc::SOCK_STREAM, 0)?;
        set_int(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1);
        self.tcp_options(fd.as_raw_fd());
        match Self::bind(fd.as_raw_fd(), Self::unspecified(v6, port), v6) {
            Ok(()) => {}
            Err(libc::EADDRINUSE) => return Err(SocketError::AddressInUse(port)),
            Err(_) => return Err(SocketError::Unsupported("the kernel refused the bind")),
        }
        let backlog = backlog.clamp(1, i32::MAX as usize) as i32;
        // SAFETY: a valid, bound descriptor.
        if unsafe { libc::listen(fd.as_raw_fd(), backlog) } != 0 {
            return Err(SocketError::Unsupported("the kernel refused to listen"));
        }
        Ok(self.entries.insert(Entry::Listener(fd)))
    }

    fn tcp_accept(&mut self, listener: SocketId) -> Result<Option<SocketId>, SocketError> {
        let fd = match self.entries.get(listener)? {
            Entry::Listener(fd) => fd.as_raw_fd(),
            other => {
                return Err(SocketError::WrongKind(
                    listener,
                    other.kind(),
                    "TCP listener",
                ))
            }
        };
        // SAFETY: a valid listening descriptor; the peer's address is not wanted.
        let conn = unsafe {
            libc::accept4(
                fd,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        };
        if conn < 0 {
            return Ok(None);
        }
        // SAFETY: a descriptor accept4 just gave us.
        let conn = unsafe { OwnedFd::from_raw_fd(conn) };
        Ok(Some(self.entries.insert(Entry::Tcp(TcpConn::new(conn)))))
    }

    fn tcp_connect(&mut self, remote: SocketAddr) -> Result<SocketId, SocketError> {
        self.reachable(remote.ip())?;
        let (fd, v6) = self.ip_socket(libc::SOCK_STREAM, 0)?;
        self.tcp_options(fd.as_raw_fd());
        let (storage, len) = sockaddr(remote, v6);
        // SAFETY: a valid descriptor and an address of `len` bytes.
        let rc = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                &storage as *const _ as *const libc::sockaddr,
                len,
            )
        };
        if rc != 0 {
            match errno() {
                libc::EINPROGRESS => {}
                libc::ENETUNREACH | libc::EHOSTUNREACH | libc::EADDRNOTAVAIL => {
                    return Err(SocketError::Unaddressable(remote.ip()))
                }
                libc::EAGAIN => return Err(SocketError::NoFreePort),
                _ => return Err(SocketError::Unsupported("the kernel refused the connect")),
            }
        }
        Ok(self.entries.insert(Entry::Tcp(TcpConn::new(fd))))
    }

    fn tcp_send(&mut self, socket: SocketId, data: &[u8]) -> Result<usize, SocketError> {
        let fd = self.tcp_fd(socket)?;
        // SAFETY: a valid descriptor and a buffer of `data.len()` bytes.
        let n = unsafe {
            libc::send(
                fd,
                data.as_ptr() as *const libc::c_void,
                data.len(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        match errno() {
            libc::EAGAIN | libc::ENOTCONN => Ok(0),
            error => {
                let conn = self.tcp(socket)?;
                conn.note_error(error);
                Err(SocketError::InvalidState(conn.state()))
            }
        }
    }

    fn tcp_recv(&mut self, socket: SocketId, buf: &mut [u8]) -> Result<usize, SocketError> {
        let fd = self.tcp_fd(socket)?;
        if buf.is_empty() {
            return Ok(0);
        }
        // SAFETY: a valid descriptor and a buffer of `buf.len()` bytes.
        let n = unsafe {
            libc::recv(
                fd,
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        match n {
            0 => {
                // The kernel reads a connection it reset, refused or gave up as ended too:
                // only one the peer closed with a FIN is finished.
                let conn = self.tcp(socket)?;
                let state = conn.state();
                if conn.end.get().is_some() {
                    Err(SocketError::InvalidState(state))
                } else {
                    Err(SocketError::Finished)
                }
            }
            n if n > 0 => Ok(n as usize),
            _ => match errno() {
                libc::EAGAIN => Ok(0),
                error => {
                    let conn = self.tcp(socket)?;
                    conn.note_error(error);
                    let state = conn.state();
                    if state == TcpState::SynSent || state == TcpState::SynReceived {
                        Ok(0)
                    } else {
                        Err(SocketError::InvalidState(state))
                    }
                }
            },
        }
    }

    fn tcp_shutdown(&mut self, socket: SocketId) -> Result<(), SocketError> {
        let fd = self.tcp_fd(socket)?;
        let before = self.tcp(socket)?.state();
        if let Ok(Entry::Tcp(conn)) = self.entries.get_mut(socket) {
            conn.active_close |= matches!(
                before,
                TcpState::Established | TcpState::SynSent | TcpState::SynReceived
            );
        }
        // SAFETY: a valid descriptor.
        if unsafe { libc::shutdown(fd, libc::SHUT_WR) } != 0 {
            return Err(SocketError::InvalidState(self.tcp(socket)?.state()));
        }
        Ok(())
    }

    fn tcp_abort(&mut self, socket: SocketId) -> Result<(), SocketError> {
        let Ok(Entry::Tcp(conn)) = self.entries.get_mut(socket) else {
            return Err(SocketError::UnknownSocket(socket));
        };
        if let Some(fd) = conn.fd.take() {
            // Closing with a zero linger time sends a RST and forgets the connection.
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: a valid descriptor and a `struct linger` of the stated size.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    &linger as *const libc::linger as *const libc::c_void,
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
            }
            drop(fd);
        }
        Ok(())
    }

    fn tcp_state(&self, socket: SocketId) -> Result<TcpState, SocketError> {
        match self.entries.get(socket)? {
            Entry::Tcp(conn) => Ok(conn.state()),
            Entry::Listener(_) => Ok(TcpState::Listen),
            other => Err(SocketError::WrongKind(socket, other.kind(), "TCP")),
        }
    }

    fn tcp_end(&self, socket: SocketId) -> Result<Option<TcpEnd>, SocketError> {
        let conn = self.tcp(socket)?;
        if conn.end.get().is_none() {
            // Reads the socket error of a connection that has closed.
            conn.state();
        }
        Ok(conn.end.get())
    }

    fn tcp_send_queue(&self, socket: SocketId) -> Result<usize, SocketError> {
        let fd = self.tcp_fd(socket)?;
        let mut queued: libc::c_int = 0;
        // SAFETY: SIOCOUTQ writes one int: bytes sent and not yet acknowledged, plus unsent.
        if unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) } != 0 {
            return Ok(0);
        }
        Ok(queued.max(0) as usize)
    }

    fn tcp_set_keepalive(
        &mut self,
        socket: SocketId,
        interval_us: Option<u64>,
    ) -> Result<(), SocketError> {
        let fd = self.tcp_fd(socket)?;
        match interval_us {
            None => {
                set_int(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 0);
            }
            Some(us) => {
                // The kernel counts keep-alive times in whole seconds, at least one.
                let seconds = (us / 1_000_000).clamp(1, 32_767) as i32;
                set_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, seconds);
                set_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, seconds);
                set_int(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
            }
        }
        Ok(())
    }

    fn tcp_set_nagle(&mut self, socket: SocketId, enabled: bool) -> Result<(), SocketError> {
        let fd = self.tcp_fd(socket)?;
        set_int(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            i32::from(!enabled),
        );
        Ok(())
    }

    fn tcp_set_timeout(
        &mut self,
        socket: SocketId,
        timeout_us: Option<u64>,
    ) -> Result<(), SocketError> {
        let fd = self.tcp_fd(socket)?;
        // TCP_USER_TIMEOUT: how long sent data may stay unacknowledged; 0 is the default.
        let millis = timeout_us.map_or(0, |us| (us / 1_000).clamp(1, i32::MAX as u64) as i32);
        set_int(fd, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, millis);
        Ok(())
    }

    fn udp_bind(&mut self, port: u16) -> Result<SocketId, SocketError> {
        let (fd, v6) = self.ip_socket(libc::SOCK_DGRAM, 0)?;
        match Self::bind(fd.as_raw_fd(), Self::unspecified(v6, port), v6) {
            Ok(()) => Ok(self.entries.insert(Entry::Udp(fd))),
            Err(libc::EADDRINUSE) if port == 0 => Err(SocketError::NoFreePort),
            Err(libc::EADDRINUSE) => Err(SocketError::AddressInUse(port)),
            Err(_) => Err(SocketError::Unsupported("the kernel refused the bind")),
        }
    }

    fn udp_local_port(&self, socket: SocketId) -> Result<u16, SocketError> {
        let fd = self.udp_fd(socket)?;
        // SAFETY: sockaddr_storage is plain data.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: a valid descriptor and a buffer of `len` bytes.
        let rc = unsafe {
            libc::getsockname(fd, &mut storage as *mut _ as *mut libc::sockaddr, &mut len)
        };
        if rc != 0 {
            return Err(SocketError::Unsupported("getsockname failed"));
        }
        socket_addr_of(&storage)
            .map(|a| a.port())
            .ok_or(SocketError::Unsupported("getsockname gave no IP address"))
    }

    fn udp_send_to(
        &mut self,
        socket: SocketId,
        dest: SocketAddr,
        data: &[u8],
    ) -> Result<(), SocketError> {
        self.reachable(dest.ip())?;
        let fd = self.udp_fd(socket)?;
        let Err(errno) = send_datagram(fd, data, dest, self.v6_sockets) else {
            return Ok(());
        };
        match errno {
            libc::EMSGSIZE => Err(SocketError::TooLarge(data.len())),
            libc::ENETUNREACH | libc::EHOSTUNREACH => Err(SocketError::Unaddressable(dest.ip())),
            // A refusal reported for an earlier datagram, or a full queue: this one is lost.
            _ => Err(SocketError::BufferFull),
        }
    }

    fn udp_recv_from(
        &mut self,
        socket: SocketId,
        buf: &mut [u8],
    ) -> Result<Option<(usize, SocketAddr)>, SocketError> {
        let fd = self.udp_fd(socket)?;
        loop {
            match recv_datagram(fd, buf) {
                Ok((n, storage)) => return Ok(socket_addr_of(&storage).map(|from| (n, from))),
                // An ICMP error for an earlier datagram: nothing to read, look again.
                Err(libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH) => continue,
                Err(_) => return Ok(None),
            }
        }
    }

    fn icmp_echo_open(&mut self, ident: u16) -> Result<SocketId, SocketError> {
        let open = |v6: bool| -> Result<OwnedFd, SocketError> {
            let fd = if v6 {
                self.socket(libc::AF_INET6, libc::SOCK_DGRAM, libc::IPPROTO_ICMPV6)?
            } else {
                self.socket(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_ICMP)?
            };
            // A ping socket's port is its echo identifier.
            Self::bind(fd.as_raw_fd(), Self::unspecified(v6, ident), v6).map_err(|e| {
                if e == libc::EADDRINUSE {
                    SocketError::AddressInUse(ident)
                } else {
                    SocketError::Unsupported("the kernel refused to bind the ping socket")
                }
            })?;
            Ok(fd)
        };
        let v4 = match self.config.ipv4 {
            Some(_) => Some(open(false)?),
            None => None,
        };
        let v6 = match self.config.ipv6 {
            Some(_) => Some(open(true)?),
            None => None,
        };
        Ok(self.entries.insert(Entry::Icmp { v4, v6 }))
    }

    fn icmp_echo_send(
        &mut self,
        socket: SocketId,
        dest: IpAddr,
        seq: u16,
        payload: &[u8],
    ) -> Result<(), SocketError> {
        let (fd, echo_request) = match (self.entries.get(socket)?, dest) {
            (Entry::Icmp { v4: Some(fd), .. }, IpAddr::V4(_)) => (fd.as_raw_fd(), 8u8),
            (Entry::Icmp { v6: Some(fd), .. }, IpAddr::V6(_)) => (fd.as_raw_fd(), 128u8),
            (Entry::Icmp { .. }, _) => return Err(SocketError::Unaddressable(dest)),
            (other, _) => return Err(SocketError::WrongKind(socket, other.kind(), "ICMP echo")),
        };
        // The kernel fills in the identifier (the socket's) and the checksum.
        let mut packet = Vec::with_capacity(8 + payload.len());
        packet.extend_from_slice(&[echo_request, 0, 0, 0, 0, 0]);
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(payload);
        let Err(errno) = send_datagram(fd, &packet, SocketAddr::new(dest, 0), dest.is_ipv6())
        else {
            return Ok(());
        };
        match errno {
            libc::EMSGSIZE => Err(SocketError::TooLarge(payload.len())),
            libc::ENETUNREACH | libc::EHOSTUNREACH => Err(SocketError::Unaddressable(dest)),
            _ => Err(SocketError::BufferFull),
        }
    }

    fn icmp_echo_recv(&mut self, socket: SocketId) -> Result<Option<EchoReply>, SocketError> {
        let fds: Vec<(RawFd, u8)> = match self.entries.get(socket)? {
            Entry::Icmp { v4, v6 } => v4
                .iter()
                .map(|fd| (fd.as_raw_fd(), 0u8))
                .chain(v6.iter().map(|fd| (fd.as_raw_fd(), 129u8)))
                .collect(),
            other => return Err(SocketError::WrongKind(socket, other.kind(), "ICMP echo")),
        };
        let mut buf = [0u8; 65_536];
        for (fd, echo_reply) in fds {
            loop {
                let (n, storage) = match recv_datagram(fd, &mut buf) {
                    Ok(received) => received,
                    // An ICMP error reported for an earlier request: look again.
                    Err(libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH) => continue,
                    Err(_) => break,
                };
                if n < 8 || buf[0] != echo_reply {
                    continue;
                }
                let Some(from) = socket_addr_of(&storage) else {
                    continue;
                };
                return Ok(Some(EchoReply {
                    from: from.ip(),
                    ident: u16::from_be_bytes([buf[4], buf[5]]),
                    seq: u16::from_be_bytes([buf[6], buf[7]]),
                    payload_len: n - 8,
                }));
            }
        }
        Ok(None)
    }

    fn close(&mut self, socket: SocketId) -> Result<(), SocketError> {
        // Closing the descriptor closes a TCP connection gracefully, as the kernel does.
        self.entries.remove(socket).map(drop)
    }
}
