//! The lwIP backend: each host drives a private copy of Debian's liblwip (2.1.3) through the C glue in `lwip_glue.c`, behind the `Stack` trait.
//!
//! How it fits together:
//! - Every host loads its own copy of the shared library (a memfd holding the library's bytes,
//!   `dlopen`ed `RTLD_NOW | RTLD_LOCAL`), because lwIP keeps its state in globals. The library
//!   is never linked into the binary.
//! - Each copy calls `sys_now`, `rand`, `tcp_next_iss` and `tcpip_try_callback` through its
//!   PLT; the glue rewrites those GOT slots in that copy to hooks that read the current host's
//!   virtual time, its seeded generators and its callback queue. So no symbol has to be exported
//!   from the executable and every binary of the workspace works alike.
//! - Only the raw API is used, from the thread that runs the world; `tcpip_init` is never
//!   called, so lwIP starts no thread. Timers run from `sys_check_timeouts` at each poll, and
//!   `poll_at` comes from `sys_timeouts_sleeptime`.
//! - Struct layouts depend on Debian's `lwipopts.h`, so only the glue (compiled against
//!   `/usr/include/lwip` by `build.rs`) looks inside lwIP's structs; this file sees opaque
//!   pointers and a narrow C API.
//!
//! What is fixed by Debian's build and therefore not configurable per host: MSS 1460, a
//! 64 KiB window and send buffer (the `tcp_*_buffer_bytes` settings are ignored), NewReno
//! congestion control (the `congestion_control` setting is ignored), a 10-entry ARP table,
//! no SACK, no timestamps, a 250 ms TCP timer.
//!
//! An lwIP assertion calls `abort()`, which ends the process; the glue prints which host's
//! copy did it first. To prove that runners survive that, [`TEST_ASSERT_ENV`] makes one host
//! misuse lwIP's raw API on purpose so that a real lwIP assertion fires.

use std::collections::VecDeque;
use std::ffi::{c_char, c_int, c_long, c_void, CString};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ptr::NonNull;
use std::sync::OnceLock;

use stack::{
    EchoReply, FrameQueue, MacAddr, SocketError, SocketId, SocketTable, Stack, StackConfig, TcpEnd,
    TcpState,
};

/// A test hook: when this environment variable names a host, that host's lwIP copy is asked,
/// at its first poll, to take window updates on a listening connection (`tcp_recved` on a
/// listen pcb), which lwIP 2.1.3 rejects with the assertion "don't call tcp_recved for
/// listen-pcbs": the process aborts the way it would on a genuine lwIP bug. Runners set it
/// only in the child process of the run meant to die.
pub const TEST_ASSERT_ENV: &str = "WIRELAB_LWIP_TEST_ASSERT";

/// What to tell someone whose machine lacks lwIP.
pub const INSTALL_HINT: &str = "lwIP is not installed: apt-get install liblwip-dev liblwip0";

/// Where Debian puts the library, by architecture; `WIRELAB_LWIP_SO` names another file.
const LIBRARY_CANDIDATES: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/liblwip.so.0",
    "/usr/lib/aarch64-linux-gnu/liblwip.so.0",
    "/usr/lib/liblwip.so.0",
];

/// Why an lwIP host cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LwipError {
    /// lwIP's headers were missing at build time or its library is missing now.
    #[error("{0}")]
    Unavailable(String),
    /// The library is there but a copy could not be loaded or set up.
    #[error("loading lwIP: {0}")]
    Load(String),
}

/// The bytes of liblwip, read once per process: every host's private copy is made from them.
fn library_bytes() -> Result<&'static [u8], LwipError> {
    static BYTES: OnceLock<Result<Vec<u8>, String>> = OnceLock::new();
    let loaded = BYTES.get_or_init(|| {
        if !cfg!(wirelab_lwip_glue) {
            return Err(format!(
                "{INSTALL_HINT} (the lwIP headers were missing when wirelab was built; rebuild after installing)"
            ));
        }
        let explicit = std::env::var_os("WIRELAB_LWIP_SO").map(std::path::PathBuf::from);
        let candidates = explicit
            .into_iter()
            .chain(LIBRARY_CANDIDATES.iter().map(std::path::PathBuf::from));
        for path in candidates {
            if let Ok(bytes) = std::fs::read(&path) {
                return Ok(bytes);
            }
        }
        Err(INSTALL_HINT.to_string())
    });
    match loaded {
        Ok(bytes) => Ok(bytes),
        Err(message) => Err(LwipError::Unavailable(message.clone())),
    }
}

/// Whether lwIP hosts can be built here; the error says what is missing and how to get it.
pub fn available() -> Result<(), LwipError> {
    library_bytes().map(|_| ())
}

/// Opaque glue objects.
#[repr(C)]
struct WlHost {
    _private: [u8; 0],
}
#[repr(C)]
struct WlTcp {
    _private: [u8; 0],
}
#[repr(C)]
struct WlUdp {
    _private: [u8; 0],
}
#[repr(C)]
struct WlEcho {
    _private: [u8; 0],
}

type EmitFn = unsafe extern "C" fn(ctx: *mut c_void, frame: *const u8, len: usize);

/// Mirrors `struct wl_host_config` in the glue.
#[repr(C)]
struct HostConfig {
    lib: *const u8,
    lib_len: usize,
    name: *const c_char,
    mac: [u8; 6],
    has_ipv4: u8,
    has_ipv6: u8,
    ipv4: [u8; 4],
    ipv4_mask: [u8; 4],
    ipv4_gateway: [u8; 4],
    ipv6: [u8; 16],
    mtu: u16,
    seed: u64,
    dgram_packets: u32,
    dgram_bytes: u32,
    emit: EmitFn,
    tx_ctx: *mut c_void,
}

/// Declares the glue's functions; without the glue (no lwIP headers at build time) they are
/// stubs that are never reached, because no host can be built.
macro_rules! glue {
    ($(fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?;)*) => {
        #[cfg(wirelab_lwip_glue)]
        extern "C" {
            $(fn $name($($arg: $ty),*) $(-> $ret)?;)*
        }
        $(
            #[cfg(not(wirelab_lwip_glue))]
            #[allow(unused_variables, clippy::missing_safety_doc, clippy::too_many_arguments)]
            unsafe fn $name($($arg: $ty),*) $(-> $ret)? {
                unreachable!("the lwIP glue was not built, so no lwIP host exists")
            }
        )*
    };
}

glue! {
    fn wl_glue_has_ipv6() -> c_int;
    fn wl_host_new(cfg: *const HostConfig, err: *mut c_char, errlen: usize) -> *mut WlHost;
    fn wl_host_free(h: *mut WlHost);
    fn wl_set_now(h: *mut WlHost, now_ms: u32);
    fn wl_set_tx(h: *mut WlHost, tx_ctx: *mut c_void);
    fn wl_events(h: *const WlHost) -> u64;
    fn wl_input(h: *mut WlHost, frame: *const u8, len: usize);
    fn wl_poll(h: *mut WlHost);
    fn wl_busy(h: *const WlHost) -> c_int;
    fn wl_sleeptime(h: *mut WlHost) -> u32;
    fn wl_tcp_listen(h: *mut WlHost, port: u16, backlog: c_int, err: *mut c_int) -> *mut WlTcp;
    fn wl_tcp_accept(h: *mut WlHost, l: *mut WlTcp) -> *mut WlTcp;
    fn wl_tcp_connect(h: *mut WlHost, addr: *const u8, v6: c_int, port: u16, err: *mut c_int) -> *mut WlTcp;
    fn wl_tcp_write(h: *mut WlHost, c: *mut WlTcp, data: *const u8, len: usize) -> c_long;
    fn wl_tcp_peek(h: *mut WlHost, c: *mut WlTcp, data: *mut *const u8, len: *mut usize) -> c_int;
    fn wl_tcp_consume(h: *mut WlHost, c: *mut WlTcp, n: usize);
    fn wl_tcp_shutdown(h: *mut WlHost, c: *mut WlTcp) -> c_int;
    fn wl_tcp_abort(h: *mut WlHost, c: *mut WlTcp);
    fn wl_tcp_state(h: *mut WlHost, c: *const WlTcp) -> c_int;
    fn wl_tcp_end(c: *const WlTcp) -> c_int;
    fn wl_tcp_send_queue(c: *const WlTcp) -> usize;
    fn wl_tcp_endpoints(
        c: *const WlTcp,
        local: *mut u8,
        local_v6: *mut u8,
        local_port: *mut u16,
        remote: *mut u8,
        remote_v6: *mut u8,
        remote_port: *mut u16,
    ) -> c_int;
    fn wl_tcp_set_nagle(c: *mut WlTcp, enabled: c_int);
    fn wl_tcp_set_keepalive(c: *mut WlTcp, interval_ms: u32);
    fn wl_tcp_release(h: *mut WlHost, c: *mut WlTcp);
    fn wl_udp_bind(h: *mut WlHost, port: u16, err: *mut c_int) -> *mut WlUdp;
    fn wl_udp_local_port(u: *const WlUdp) -> u16;
    fn wl_udp_sendto(h: *mut WlHost, u: *mut WlUdp, addr: *const u8, v6: c_int, port: u16, data: *const u8, len: usize) -> c_int;
    fn wl_udp_recv(h: *mut WlHost, u: *mut WlUdp, buf: *mut u8, cap: usize, len: *mut usize, addr: *mut u8, v6: *mut u8, port: *mut u16) -> c_int;
    fn wl_udp_close(h: *mut WlHost, u: *mut WlUdp);
    fn wl_echo_open(h: *mut WlHost, ident: u16, v4: c_int, v6: c_int) -> *mut WlEcho;
    fn wl_echo_send(h: *mut WlHost, e: *mut WlEcho, addr: *const u8, v6: c_int, seq: u16, payload: *const u8, len: usize) -> c_int;
    fn wl_echo_recv(h: *mut WlHost, e: *mut WlEcho, from: *mut u8, v6: *mut u8, seq: *mut u16, payload_len: *mut u32) -> c_int;
    fn wl_echo_close(h: *mut WlHost, e: *mut WlEcho);
    fn wl_test_assert(h: *mut WlHost);
}

// lwIP's err_t values the mapping below cares about.
const ERR_MEM: c_int = -1;
const ERR_RTE: c_int = -4;
const ERR_USE: c_int = -8;

/// The glue's `emit`: appends one transmitted frame to the queue `ctx` points at.
///
/// # Safety
/// `ctx` is the `FrameQueue` the host's transmit target was last set to, alive and not
/// otherwise borrowed during the glue call that transmits; `frame` points at `len` bytes.
unsafe extern "C" fn emit_frame(ctx: *mut c_void, frame: *const u8, len: usize) {
    // SAFETY: the caller guarantees `ctx` is a live, unaliased `FrameQueue` (see `LwipStack`,
    // which points it at its own boxed pending queue or, during `poll`, at the caller's egress
    // queue) and that `frame` holds `len` readable bytes (a pbuf's payload or the glue's scratch
    // buffer).
    let (queue, frame) = unsafe {
        (
            &mut *ctx.cast::<FrameQueue>(),
            std::slice::from_raw_parts(frame, len),
        )
    };
    queue.push(frame);
}

fn ip_bytes(addr: IpAddr) -> ([u8; 16], c_int) {
    let mut out = [0u8; 16];
    match addr {
        IpAddr::V4(a) => {
            out[..4].copy_from_slice(&a.octets());
            (out, 0)
        }
        IpAddr::V6(a) => (a.octets(), 1),
    }
}

fn ip_from_bytes(bytes: &[u8; 16], v6: u8) -> IpAddr {
    if v6 != 0 {
        IpAddr::V6(Ipv6Addr::from(*bytes))
    } else {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    }
}

fn tcp_state_from(state: c_int) -> TcpState {
    // lwIP's `enum tcp_state` is numbered in RFC order, as ours is.
    match state {
        1 => TcpState::Listen,
        2 => TcpState::SynSent,
        3 => TcpState::SynReceived,
        4 => TcpState::Established,
        5 => TcpState::FinWait1,
        6 => TcpState::FinWait2,
        7 => TcpState::CloseWait,
        8 => TcpState::Closing,
        9 => TcpState::LastAck,
        10 => TcpState::TimeWait,
        _ => TcpState::Closed,
    }
}

/// What a `SocketId` stands for: a glue object this stack owns until `close`.
enum Entry {
    Listener(NonNull<WlTcp>),
    Tcp(NonNull<WlTcp>),
    Udp(NonNull<WlUdp>),
    Echo(NonNull<WlEcho>, u16),
}

impl Entry {
    fn kind(&self) -> &'static str {
        match self {
            Entry::Listener(_) => "TCP listener",
            Entry::Tcp(_) => "TCP connection",
            Entry::Udp(_) => "UDP",
            Entry::Echo(..) => "ICMP echo",
        }
    }
}

/// An lwIP host.
pub struct LwipStack {
    config: StackConfig,
    host: NonNull<WlHost>,
    /// Frames lwIP sends outside `poll` (socket calls: a SYN, a datagram, an ARP request); the
    /// next poll hands them on first. Boxed so that its address, given to the glue, is stable.
    pending: Box<FrameQueue>,
    /// Received frames waiting for the next poll, back to back in one reused buffer.
    rx_bytes: Vec<u8>,
    rx_frames: VecDeque<(usize, usize)>,
    entries: SocketTable<Entry>,
    /// Set by [`TEST_ASSERT_ENV`]: make lwIP assert at the next poll.
    test_assert: bool,
}

impl std::fmt::Debug for LwipStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LwipStack")
            .field("name", &self.config.name)
            .finish_non_exhaustive()
    }
}

impl LwipStack {
    /// Loads a private copy of lwIP for this host and brings its interface up.
    pub fn new(config: StackConfig) -> Result<LwipStack, LwipError> {
        let lib = library_bytes()?;
        let load_error = LwipError::Load;
        // SAFETY: a plain query of a constant compiled into the glue.
        let has_ipv6 = unsafe { wl_glue_has_ipv6() } != 0;
        if config.ipv6.is_some() && !has_ipv6 {
            return Err(load_error("this lwIP was built without IPv6".into()));
        }
        let name = CString::new(config.name.replace('\0', "?")).expect("NULs were replaced");
        let mut pending = Box::new(FrameQueue::new());
        let (ipv4, ipv4_mask) = match config.ipv4 {
            Some((addr, prefix)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(prefix.min(32)))
                    .unwrap_or(0);
                (addr.octets(), mask.to_be_bytes())
            }
            None => ([0; 4], [0; 4]),
        };
        let host_config = HostConfig {
            lib: lib.as_ptr(),
            lib_len: lib.len(),
            name: name.as_ptr(),
            mac: config.mac.0,
            has_ipv4: u8::from(config.ipv4.is_some()),
            has_ipv6: u8::from(config.ipv6.is_some()),
            ipv4,
            ipv4_mask,
            ipv4_gateway: config.ipv4_gateway.map_or([0; 4], |g| g.octets()),
            ipv6: config.ipv6.map_or([0; 16], |(a, _)| a.octets()),
            mtu: config.ip_mtu_bytes.min(usize::from(u16::MAX)) as u16,
            seed: config.seed,
            dgram_packets: config.datagram_queue_packets.clamp(1, u32::MAX as usize) as u32,
            dgram_bytes: config.datagram_queue_bytes.min(u32::MAX as usize) as u32,
            emit: emit_frame,
            tx_ctx: std::ptr::from_mut::<FrameQueue>(&mut pending).cast(),
        };
        let mut err = [0 as c_char; 256];
        // SAFETY: every pointer in `host_config` is valid for the call (the library bytes are
        // 'static, `name` and `pending` outlive it); `err` has the length passed. The glue
        // copies the library and the name, and keeps `tx_ctx`, which stays valid because the
        // box `pending` moves into the returned stack without its heap address changing.
        let host = unsafe { wl_host_new(&host_config, err.as_mut_ptr(), err.len()) };
        let Some(host) = NonNull::new(host) else {
            // SAFETY: the glue wrote a NUL-terminated message into `err` (snprintf), or left
            // it zeroed, which is an empty string.
            let message = unsafe { std::ffi::CStr::from_ptr(err.as_ptr()) };
            return Err(load_error(message.to_string_lossy().into_owned()));
        };
        let test_assert = std::env::var_os(TEST_ASSERT_ENV).is_some_and(|h| h == *config.name);
        Ok(LwipStack {
            config,
            host,
            pending,
            rx_bytes: Vec::new(),
            rx_frames: VecDeque::new(),
            entries: SocketTable::new(),
            test_assert,
        })
    }

    fn h(&self) -> *mut WlHost {
        self.host.as_ptr()
    }

    fn tcp(&self, id: SocketId) -> Result<*mut WlTcp, SocketError> {
        match self.entries.get(id)? {
            Entry::Tcp(c) => Ok(c.as_ptr()),
            other => Err(SocketError::WrongKind(id, other.kind(), "TCP connection")),
        }
    }

    fn udp(&self, id: SocketId) -> Result<*mut WlUdp, SocketError> {
        match self.entries.get(id)? {
            Entry::Udp(u) => Ok(u.as_ptr()),
            other => Err(SocketError::WrongKind(id, other.kind(), "UDP")),
        }
    }

    fn echo(&self, id: SocketId) -> Result<(*mut WlEcho, u16), SocketError> {
        match self.entries.get(id)? {
            Entry::Echo(e, ident) => Ok((e.as_ptr(), *ident)),
            other => Err(SocketError::WrongKind(id, other.kind(), "ICMP echo")),
        }
    }

    fn has_family(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(_) => self.config.ipv4.is_some(),
            IpAddr::V6(_) => self.config.ipv6.is_some(),
        }
    }

    fn state_of(&self, c: *mut WlTcp) -> TcpState {
        // SAFETY: `c` comes from one of our entries, so it is a live glue object of this host.
        tcp_state_from(unsafe { wl_tcp_state(self.h(), c) })
    }
}

impl Drop for LwipStack {
    fn drop(&mut self) {
        for entry in self.entries.drain() {
            // SAFETY: each entry is a live glue object of this host, released exactly once
            // (TCP objects are released by `wl_host_free` below, with every other TCP object).
            unsafe {
                match entry {
                    Entry::Udp(u) => wl_udp_close(self.host.as_ptr(), u.as_ptr()),
                    Entry::Echo(e, _) => wl_echo_close(self.host.as_ptr(), e.as_ptr()),
                    Entry::Listener(_) | Entry::Tcp(_) => {}
                }
            }
        }
        // SAFETY: the host is live and nothing refers to it after this: the glue frees every
        // TCP object with it and unloads the private copy of lwIP.
        unsafe { wl_host_free(self.host.as_ptr()) };
    }
}

impl Stack for LwipStack {
    fn mac(&self) -> MacAddr {
        self.config.mac
    }

    fn receive(&mut self, frame: &[u8]) {
        if self.rx_frames.is_empty() {
            self.rx_bytes.clear();
        }
        let start = self.rx_bytes.len();
        self.rx_bytes.extend_from_slice(frame);
        self.rx_frames.push_back((start, frame.len()));
    }

    fn poll(&mut self, now_us: u64, egress: &mut FrameQueue) -> bool {
        let h = self.h();
        if self.test_assert {
            // SAFETY: the host is live; the call ends the process (see TEST_ASSERT_ENV).
            unsafe { wl_test_assert(h) };
        }
        for frame in self.pending.iter() {
            egress.push(frame);
        }
        self.pending.clear();
        // SAFETY: the host is live. While this block runs, the glue transmits into `egress`,
        // which is exclusively borrowed for the whole call; the target goes back to our own
        // pending queue before `egress`'s borrow ends. Each received frame is a valid slice.
        let events = unsafe {
            wl_set_now(h, (now_us / 1000) as u32);
            let before = wl_events(h);
            wl_set_tx(h, std::ptr::from_mut::<FrameQueue>(egress).cast());
            while let Some((start, len)) = self.rx_frames.pop_front() {
                wl_input(h, self.rx_bytes[start..].as_ptr(), len);
            }
            wl_poll(h);
            wl_set_tx(
                h,
                std::ptr::from_mut::<FrameQueue>(&mut self.pending).cast(),
            );
            wl_events(h) - before
        };
        self.rx_bytes.clear();
        events > 0
    }

    fn poll_at(&mut self, now_us: u64) -> Option<u64> {
        // SAFETY: the host is live; these calls only read its state and lwIP's timer list.
        let (busy, sleep_ms) = unsafe {
            wl_set_now(self.h(), (now_us / 1000) as u32);
            (wl_busy(self.h()) != 0, wl_sleeptime(self.h()))
        };
        if busy || !self.rx_frames.is_empty() || !self.pending.is_empty() {
            return Some(now_us);
        }
        if sleep_ms == u32::MAX {
            return None;
        }
        Some(((now_us / 1000 + u64::from(sleep_ms)) * 1000).max(now_us))
    }

    fn tcp_listen(&mut self, port: u16, backlog: usize) -> Result<SocketId, SocketError> {
        if port == 0 {
            return Err(SocketError::Unsupported("listening on port 0"));
        }
        let mut err = 0;
        let backlog = backlog.clamp(1, 255) as c_int;
        // SAFETY: the host is live and `err` is a valid out-pointer.
        let l = unsafe { wl_tcp_listen(self.h(), port, backlog, &mut err) };
        match NonNull::new(l) {
            Some(l) => Ok(self.entries.insert(Entry::Listener(l))),
            None if err == ERR_USE => Err(SocketError::AddressInUse(port)),
            None => Err(SocketError::Unsupported(
                "lwIP refused to listen on this port",
            )),
        }
    }

    fn tcp_accept(&mut self, listener: SocketId) -> Result<Option<SocketId>, SocketError> {
        let l = match self.entries.get(listener)? {
            Entry::Listener(l) => l.as_ptr(),
            other => {
                return Err(SocketError::WrongKind(
                    listener,
                    other.kind(),
                    "TCP listener",
                ))
            }
        };
        // SAFETY: the host and the listener are live glue objects of this host.
        let c = unsafe { wl_tcp_accept(self.h(), l) };
        Ok(NonNull::new(c).map(|c| self.entries.insert(Entry::Tcp(c))))
    }

    fn tcp_connect(&mut self, remote: SocketAddr) -> Result<SocketId, SocketError> {
        if !self.has_family(remote.ip()) {
            return Err(SocketError::Unaddressable(remote.ip()));
        }
        let (addr, v6) = ip_bytes(remote.ip());
        let mut err = 0;
        // SAFETY: the host is live, `addr` holds 16 bytes, `err` is a valid out-pointer.
        let c = unsafe { wl_tcp_connect(self.h(), addr.as_ptr(), v6, remote.port(), &mut err) };
        match NonNull::new(c) {
            Some(c) => Ok(self.entries.insert(Entry::Tcp(c))),
            None if err == ERR_MEM => Err(SocketError::NoFreePort),
            None => Err(SocketError::Unaddressable(remote.ip())),
        }
    }

    fn tcp_send(&mut self, socket: SocketId, data: &[u8]) -> Result<usize, SocketError> {
        let c = self.tcp(socket)?;
        let state = self.state_of(c);
        if !matches!(state, TcpState::Established | TcpState::CloseWait) {
            return Err(SocketError::InvalidState(state));
        }
        // SAFETY: the host and the connection are live; `data` is a valid slice. lwIP copies.
        let taken = unsafe { wl_tcp_write(self.h(), c, data.as_ptr(), data.len()) };
        usize::try_from(taken).map_err(|_| SocketError::InvalidState(state))
    }

    fn tcp_recv(&mut self, socket: SocketId, buf: &mut [u8]) -> Result<usize, SocketError> {
        let mut filled = 0;
        let limit = buf.len();
        self.tcp_recv_with(socket, limit, &mut |data| {
            buf[filled..filled + data.len()].copy_from_slice(data);
            filled += data.len();
        })
    }

    fn tcp_recv_with(
        &mut self,
        socket: SocketId,
        limit: usize,
        consume: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, SocketError> {
        let c = self.tcp(socket)?;
        let h = self.h();
        let mut total = 0;
        // Received data sits in lwIP's pbufs; each is lent in place, then freed.
        while total < limit {
            let mut data: *const u8 = std::ptr::null();
            let mut len = 0usize;
            // SAFETY: the host and the connection are live; the out-pointers are valid.
            let status = unsafe { wl_tcp_peek(h, c, &mut data, &mut len) };
            match status {
                1 => {
                    let n = len.min(limit - total);
                    // SAFETY: the glue lent `len` bytes of a pbuf this connection holds; they
                    // stay put until `wl_tcp_consume` below.
                    consume(unsafe { std::slice::from_raw_parts(data, n) });
                    // SAFETY: as above; `n` bytes are no more than are queued.
                    unsafe { wl_tcp_consume(h, c, n) };
                    total += n;
                }
                _ if total > 0 => break,
                0 => break,
                -1 => return Err(SocketError::Finished),
                _ => return Err(SocketError::InvalidState(self.state_of(c))),
            }
        }
        Ok(total)
    }

    fn tcp_shutdown(&mut self, socket: SocketId) -> Result<(), SocketError> {
        let c = self.tcp(socket)?;
        // SAFETY: the host and the connection are live.
        let err = unsafe { wl_tcp_shutdown(self.h(), c) };
        if err == 0 {
            Ok(())
        } else {
            Err(SocketError::InvalidState(self.state_of(c)))
        }
    }

    fn tcp_abort(&mut self, socket: SocketId) -> Result<(), SocketError> {
        let c = self.tcp(socket)?;
        // SAFETY: the host and the connection are live.
        unsafe { wl_tcp_abort(self.h(), c) };
        Ok(())
    }

    fn tcp_state(&self, socket: SocketId) -> Result<TcpState, SocketError> {
        match self.entries.get(socket)? {
            Entry::Tcp(c) => Ok(self.state_of(c.as_ptr())),
            other => Err(SocketError::WrongKind(
                socket,
                other.kind(),
                "TCP connection",
            )),
        }
    }

    fn tcp_end(&self, socket: SocketId) -> Result<Option<TcpEnd>, SocketError> {
        let c = self.tcp(socket)?;
        // SAFETY: the connection is live.
        Ok(match unsafe { wl_tcp_end(c) } {
            1 => Some(TcpEnd::Refused),
            2 => Some(TcpEnd::Reset),
            3 => Some(TcpEnd::TimedOut),
            _ => None,
        })
    }

    fn tcp_send_queue(&self, socket: SocketId) -> Result<usize, SocketError> {
        let c = self.tcp(socket)?;
        // SAFETY: the connection is live.
        Ok(unsafe { wl_tcp_send_queue(c) })
    }

    fn tcp_endpoints(
        &self,
        socket: SocketId,
    ) -> Result<Option<(SocketAddr, SocketAddr)>, SocketError> {
        let c = self.tcp(socket)?;
        let (mut local, mut remote) = ([0u8; 16], [0u8; 16]);
        let (mut local_v6, mut remote_v6) = (0u8, 0u8);
        let (mut local_port, mut remote_port) = (0u16, 0u16);
        // SAFETY: the connection is live; every out-pointer is to a local of the right size.
        let known = unsafe {
            wl_tcp_endpoints(
                c,
                local.as_mut_ptr(),
                &mut local_v6,
                &mut local_port,
                remote.as_mut_ptr(),
                &mut remote_v6,
                &mut remote_port,
            )
        };
        Ok((known != 0).then(|| {
            (
                SocketAddr::new(ip_from_bytes(&local, local_v6), local_port),
                SocketAddr::new(ip_from_bytes(&remote, remote_v6), remote_port),
            )
        }))
    }

    fn tcp_set_keepalive(
        &mut self,
        socket: SocketId,
        interval_us: Option<u64>,
    ) -> Result<(), SocketError> {
        let c = self.tcp(socket)?;
        // lwIP counts keepalive time in milliseconds; 0 turns keepalives off.
        let ms = interval_us.map_or(0, |us| (us / 1000).clamp(1, u64::from(u32::MAX)) as u32);
        // SAFETY: the connection is live.
        unsafe { wl_tcp_set_keepalive(c, ms) };
        Ok(())
    }

    fn tcp_set_nagle(&mut self, socket: SocketId, enabled: bool) -> Result<(), SocketError> {
        let c = self.tcp(socket)?;
        // SAFETY: the connection is live.
        unsafe { wl_tcp_set_nagle(c, c_int::from(enabled)) };
        Ok(())
    }

    fn tcp_set_timeout(
        &mut self,
        socket: SocketId,
        timeout_us: Option<u64>,
    ) -> Result<(), SocketError> {
        self.tcp(socket)?;
        match timeout_us {
            None => Ok(()),
            Some(_) => Err(SocketError::Unsupported(
                "lwIP has no per-connection timeout; it gives up after TCP_MAXRTX (12) retransmissions",
            )),
        }
    }

    fn udp_bind(&mut self, port: u16) -> Result<SocketId, SocketError> {
        let mut err = 0;
        // SAFETY: the host is live and `err` is a valid out-pointer.
        let u = unsafe { wl_udp_bind(self.h(), port, &mut err) };
        match NonNull::new(u) {
            Some(u) => Ok(self.entries.insert(Entry::Udp(u))),
            None if err == ERR_USE => Err(SocketError::AddressInUse(port)),
            None if port == 0 => Err(SocketError::NoFreePort),
            None => Err(SocketError::Unsupported("lwIP refused to bind this port")),
        }
    }

    fn udp_local_port(&self, socket: SocketId) -> Result<u16, SocketError> {
        let u = self.udp(socket)?;
        // SAFETY: the socket is live.
        Ok(unsafe { wl_udp_local_port(u) })
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
        let u = self.udp(socket)?;
        if data.len() > usize::from(u16::MAX) - 8 {
            return Err(SocketError::TooLarge(data.len()));
        }
        let (addr, v6) = ip_bytes(dest.ip());
        // SAFETY: the host and the socket are live; `addr` and `data` are valid slices.
        let err = unsafe {
            wl_udp_sendto(
                self.h(),
                u,
                addr.as_ptr(),
                v6,
                dest.port(),
                data.as_ptr(),
                data.len(),
            )
        };
        match err {
            0 => Ok(()),
            ERR_MEM => Err(SocketError::BufferFull),
            ERR_RTE => Err(SocketError::Unaddressable(dest.ip())),
            _ => Err(SocketError::Unsupported(
                "lwIP refused to send this datagram",
            )),
        }
    }

    fn udp_recv_from(
        &mut self,
        socket: SocketId,
        buf: &mut [u8],
    ) -> Result<Option<(usize, SocketAddr)>, SocketError> {
        let u = self.udp(socket)?;
        let mut len = 0usize;
        let mut addr = [0u8; 16];
        let mut v6 = 0u8;
        let mut port = 0u16;
        // SAFETY: the host and the socket are live; `buf` is writable for its length and the
        // out-pointers are valid.
        let got = unsafe {
            wl_udp_recv(
                self.h(),
                u,
                buf.as_mut_ptr(),
                buf.len(),
                &mut len,
                addr.as_mut_ptr(),
                &mut v6,
                &mut port,
            )
        };
        Ok((got != 0).then(|| (len, SocketAddr::new(ip_from_bytes(&addr, v6), port))))
    }

    fn icmp_echo_open(&mut self, ident: u16) -> Result<SocketId, SocketError> {
        let v4 = c_int::from(self.config.ipv4.is_some());
        let v6 = c_int::from(self.config.ipv6.is_some());
        // SAFETY: the host is live.
        let e = unsafe { wl_echo_open(self.h(), ident, v4, v6) };
        match NonNull::new(e) {
            Some(e) => Ok(self.entries.insert(Entry::Echo(e, ident))),
            None => Err(SocketError::Unsupported(
                "lwIP could not open a raw ICMP PCB",
            )),
        }
    }

    fn icmp_echo_send(
        &mut self,
        socket: SocketId,
        dest: IpAddr,
        seq: u16,
        payload: &[u8],
    ) -> Result<(), SocketError> {
        let (e, _) = self.echo(socket)?;
        if !self.has_family(dest) {
            return Err(SocketError::Unaddressable(dest));
        }
        let (addr, v6) = ip_bytes(dest);
        // SAFETY: the host and the socket are live; `addr` and `payload` are valid slices.
        let err = unsafe {
            wl_echo_send(
                self.h(),
                e,
                addr.as_ptr(),
                v6,
                seq,
                payload.as_ptr(),
                payload.len(),
            )
        };
        match err {
            0 => Ok(()),
            ERR_MEM => Err(SocketError::BufferFull),
            ERR_RTE => Err(SocketError::Unaddressable(dest)),
            _ => Err(SocketError::TooLarge(payload.len())),
        }
    }

    fn icmp_echo_recv(&mut self, socket: SocketId) -> Result<Option<EchoReply>, SocketError> {
        let (e, ident) = self.echo(socket)?;
        let mut from = [0u8; 16];
        let mut v6 = 0u8;
        let mut seq = 0u16;
        let mut payload_len = 0u32;
        // SAFETY: the host and the socket are live; the out-pointers are valid.
        let got = unsafe {
            wl_echo_recv(
                self.h(),
                e,
                from.as_mut_ptr(),
                &mut v6,
                &mut seq,
                &mut payload_len,
            )
        };
        if got == 0 {
            return Ok(None);
        }
        Ok(Some(EchoReply {
            from: ip_from_bytes(&from, v6),
            ident,
            seq,
            payload_len: payload_len as usize,
        }))
    }

    fn close(&mut self, socket: SocketId) -> Result<(), SocketError> {
        let entry = self.entries.remove(socket)?;
        let h = self.h();
        // SAFETY: the entry was live and is released exactly once (it left `entries` above).
        unsafe {
            match entry {
                Entry::Listener(c) | Entry::Tcp(c) => wl_tcp_release(h, c.as_ptr()),
                Entry::Udp(u) => wl_udp_close(h, u.as_ptr()),
                Entry::Echo(e, _) => wl_echo_close(h, e.as_ptr()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, index: u32, ip: [u8; 4]) -> Option<LwipStack> {
        if let Err(e) = available() {
            // The same rule as harness::skip_test, which this crate cannot depend on.
            if std::env::var_os("WIRELAB_NO_SKIP").is_some() {
                panic!("WIRELAB_NO_SKIP is set but this test cannot run: {e}");
            }
            println!("skipped: {e}");
            return None;
        }
        let mut c = StackConfig::new(name, MacAddr::local_from_index(index), u64::from(index));
        c.ipv4 = Some((Ipv4Addr::from(ip), 24));
        c.ipv6 = Some((
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, index as u16),
            64,
        ));
        Some(LwipStack::new(c).expect("an lwIP host loads"))
    }

    /// Two hosts on a wire with no delay; `step` runs after every exchange and says when to stop.
    fn run(
        a: &mut LwipStack,
        b: &mut LwipStack,
        mut step: impl FnMut(u64, &mut LwipStack, &mut LwipStack) -> bool,
    ) -> u64 {
        let mut now = 0u64;
        let mut qa = FrameQueue::new();
        let mut qb = FrameQueue::new();
        for _ in 0..100_000 {
            qa.clear();
            qb.clear();
            a.poll(now, &mut qa);
            b.poll(now, &mut qb);
            for f in qa.iter() {
                b.receive(f);
            }
            for f in qb.iter() {
                a.receive(f);
            }
            if step(now, a, b) {
                return now;
            }
            if qa.is_empty() && qb.is_empty() {
                let next = [a.poll_at(now), b.poll_at(now)]
                    .into_iter()
                    .flatten()
                    .min()
                    .unwrap_or(now + 1000);
                now = next.max(now);
                if next == now && qa.is_empty() && qb.is_empty() {
                    now += 1;
                }
            }
        }
        panic!("no end by {now} us");
    }

    #[test]
    fn ping_udp_and_tcp_between_two_lwip_hosts() {
        let Some(mut a) = host("a", 1, [10, 0, 0, 1]) else {
            return;
        };
        let mut b = host("b", 2, [10, 0, 0, 2]).expect("lwIP is there");
        let echo = a.icmp_echo_open(0x1234).unwrap();
        a.icmp_echo_send(echo, "10.0.0.2".parse().unwrap(), 7, &[1; 56])
            .unwrap();
        run(&mut a, &mut b, |_, a, _| {
            let r = a.icmp_echo_recv(echo).unwrap();
            if let Some(r) = r {
                assert_eq!((r.ident, r.seq, r.payload_len), (0x1234, 7, 56));
                return true;
            }
            false
        });
        a.icmp_echo_send(echo, "2001:db8::2".parse().unwrap(), 8, &[2; 16])
            .unwrap();
        run(&mut a, &mut b, |_, a, _| {
            a.icmp_echo_recv(echo)
                .unwrap()
                .inspect(|r| assert_eq!((r.seq, r.payload_len), (8, 16)))
                .is_some()
        });

        let ua = a.udp_bind(0).unwrap();
        let ub = b.udp_bind(7).unwrap();
        a.udp_send_to(ua, "10.0.0.2:7".parse().unwrap(), b"hello")
            .unwrap();
        let mut buf = [0u8; 64];
        run(&mut a, &mut b, |_, _, b| {
            if let Some((n, from)) = b.udp_recv_from(ub, &mut buf).unwrap() {
                assert_eq!(&buf[..n], b"hello");
                assert_eq!(from.ip(), "10.0.0.1".parse::<IpAddr>().unwrap());
                return true;
            }
            false
        });

        let l = b.tcp_listen(80, 4).unwrap();
        let c = a.tcp_connect("10.0.0.2:80".parse().unwrap()).unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut sent = 0;
        let mut got = Vec::new();
        let mut server = None;
        let end = run(&mut a, &mut b, |_, a, b| {
            if server.is_none() {
                server = b.tcp_accept(l).unwrap();
            }
            if a.tcp_state(c).unwrap() == TcpState::Established && sent < data.len() {
                sent += a.tcp_send(c, &data[sent..]).unwrap();
                if sent == data.len() {
                    a.tcp_shutdown(c).unwrap();
                }
            }
            if let Some(s) = server {
                loop {
                    match b.tcp_recv_with(s, usize::MAX, &mut |d| got.extend_from_slice(d)) {
                        Ok(0) => break,
                        Ok(_) => continue,
                        Err(SocketError::Finished) => {
                            let _ = b.tcp_shutdown(s);
                            break;
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                return a.tcp_state(c).unwrap() == TcpState::TimeWait
                    && b.tcp_state(s).unwrap() == TcpState::Closed;
            }
            false
        });
        assert_eq!(got.len(), data.len());
        assert!(got == data);
        println!("300 kB over lwIP<->lwIP in {end} us of virtual time");
    }
}
