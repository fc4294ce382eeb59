"""PyTCP (PyPI `pytcp`) as a wirelab plug-in: speaks plugins/PROTOCOL.md on stdin/stdout, hosts one PyTCP stack, and drives its packet path and its 1 ms timer with wirelab's virtual time only.

PyTCP normally runs four threads (RX ring, TX ring, packet handler, a 1 ms timer), a TAP
device and the wall clock. Here none of that runs: before PyTCP is imported, its clock
(`time.time`) reads the last `now_us` of a POLL and starting a thread or sleeping is an error;
its timer and TX ring are replaced by objects of this file (the timer ticks once per virtual
millisecond, exactly as PyTCP's thread would tick once per wall millisecond); received frames
go straight into PyTCP's RX handler (`_phrx_ether`); `random` is seeded from CREATE's seed.
Socket calls use PyTCP's own sockets and TCP sessions, without their blocking waits. What
PyTCP cannot do is answered with the protocol's "unsupported" error. See README.md beside
this file.
"""

import os
import struct
import sys
import threading
import time

# --- Virtual time, installed before PyTCP is imported ------------------------------------

NOW_US = 0


def _virtual_time():
    return NOW_US / 1_000_000


def _no_sleep(_seconds=0):
    raise RuntimeError("PyTCP tried to sleep: in virtual time nothing may wait")


def _no_thread(_self, *_args, **_kwargs):
    raise RuntimeError("PyTCP tried to start a thread: in virtual time nothing runs on its own")


time.time = _virtual_time
time.monotonic = _virtual_time
time.perf_counter = _virtual_time
time.sleep = _no_sleep
threading.Thread.start = _no_thread

# The protocol owns file descriptor 1; anything PyTCP prints goes to standard error.
PROTOCOL_OUT = os.fdopen(os.dup(1), "wb", buffering=0)
os.dup2(2, 1)
sys.stdout = sys.stderr

try:
    from pytcp import config
except ImportError as error:  # The plug-in cannot go on; say why on standard error.
    sys.stderr.write(f"pytcp is not installed for {sys.executable}: {error}\n")
    sys.exit(3)

config.LOG_CHANEL = set()  # PyTCP's logger prints; keep it quiet.

import random  # noqa: E402

from pytcp.lib import stack  # noqa: E402
from pytcp.lib.ip4_address import Ip4Address, Ip4Host  # noqa: E402
from pytcp.lib.ip6_address import Ip6Address, Ip6Host, Ip6Network  # noqa: E402
from pytcp.lib.mac_address import MacAddress  # noqa: E402
from pytcp.lib.packet import PacketRx  # noqa: E402
from pytcp.lib.socket import AF_INET4, AF_INET6  # noqa: E402
from pytcp.protocols.tcp.session import ConnError, FsmState, TcpSession  # noqa: E402
from pytcp.protocols.tcp.socket import TcpSocket  # noqa: E402
from pytcp.protocols.udp.socket import UdpSocket  # noqa: E402
from pytcp.subsystems.packet_handler import PacketHandler  # noqa: E402

PYTCP_VERSION = "2.7.6"
try:
    from importlib.metadata import version

    PYTCP_VERSION = version("pytcp")
except Exception:  # noqa: BLE001 - the name is for messages only
    pass


class VirtualTimer:
    """PyTCP's Timer with the same tasks and named timers, ticked by virtual milliseconds."""

    def __init__(self):
        self._tasks = []
        self._timers = {}
        self.tick_count = 0

    def start(self):
        pass

    def stop(self):
        pass

    def register_method(
        self,
        method,
        args=None,
        kwargs=None,
        delay=1,
        delay_exp=False,
        repeat_count=-1,
        stop_condition=None,
    ):
        from pytcp.subsystems.timer import TimerTask

        self._tasks.append(
            TimerTask(
                method,
                [] if args is None else args,
                {} if kwargs is None else kwargs,
                delay,
                delay_exp,
                repeat_count,
                stop_condition,
            )
        )

    def register_timer(self, name, timeout):
        self._timers[name] = timeout

    def is_expired(self, name):
        return not self._timers.get(name, None)

    def has_tasks(self):
        return bool(self._tasks)

    def tick(self):
        """One millisecond, as PyTCP's timer thread does it."""
        self.tick_count += 1
        for name in self._timers:
            self._timers[name] -= 1
        self._timers = {k: v for k, v in self._timers.items() if v}
        for task in self._tasks:
            task.tick()
        self._tasks = [t for t in self._tasks if t.remaining_delay]

    def skip(self, ticks):
        """`ticks` milliseconds in which no task runs: only named timers count down."""
        self.tick_count += ticks
        self._timers = {k: v - ticks for k, v in self._timers.items() if v > ticks}


class FrameOut:
    """PyTCP's TX ring: assembles each frame at once and keeps it for the next POLL."""

    def __init__(self):
        self.frames = []

    def start(self, _tap=None):
        pass

    def stop(self):
        pass

    def enqueue(self, packet_tx):
        length = len(packet_tx)
        if length > config.TAP_MTU + 14:
            return  # PyTCP's TX ring drops it too.
        frame = bytearray(length)
        packet_tx.assemble(memoryview(frame))
        self.frames.append(bytes(frame))


# --- PyTCP behaviour the adapter observes (nothing of it changes what PyTCP does) ----------

ECHO_REPLIES = []  # (family, from_bytes16, ident, seq, payload_len)
_original_icmp4 = PacketHandler._phrx_icmp4
_original_icmp6 = PacketHandler._phrx_icmp6
_original_fsm = TcpSession.tcp_fsm


def _icmp4_seen(self, packet_rx):
    _original_icmp4(self, packet_rx)
    if not packet_rx.parse_failed and packet_rx.icmp4.type == 0:
        ECHO_REPLIES.append(
            (4, bytes(packet_rx.ip4.src) + bytes(12), packet_rx.icmp4.ec_id,
             packet_rx.icmp4.ec_seq, len(packet_rx.icmp4.ec_data))
        )


def _icmp6_seen(self, packet_rx):
    _original_icmp6(self, packet_rx)
    if not packet_rx.parse_failed and packet_rx.icmp6.type == 129:
        ECHO_REPLIES.append(
            (6, bytes(packet_rx.ip6.src), packet_rx.icmp6.ec_id,
             packet_rx.icmp6.ec_seq, len(packet_rx.icmp6.ec_data))
        )


def _fsm_seen(self, packet_rx_md=None, syscall=None, timer=None):
    before = self._state
    result = _original_fsm(self, packet_rx_md, syscall, timer)
    if (
        packet_rx_md is not None
        and packet_rx_md.flag_rst
        and self._state is FsmState.CLOSED
        and before is not FsmState.CLOSED
    ):
        self._wirelab_end = 1 if before is FsmState.SYN_SENT else 2
    return result


PacketHandler._phrx_icmp4 = _icmp4_seen
PacketHandler._phrx_icmp6 = _icmp6_seen
TcpSession.tcp_fsm = _fsm_seen

# --- The protocol ---------------------------------------------------------------------------

STATE_CODES = {
    FsmState.CLOSED: 0,
    FsmState.LISTEN: 1,
    FsmState.SYN_SENT: 2,
    FsmState.SYN_RCVD: 3,
    FsmState.ESTABLISHED: 4,
    FsmState.FIN_WAIT_1: 5,
    FsmState.FIN_WAIT_2: 6,
    FsmState.CLOSE_WAIT: 7,
    FsmState.CLOSING: 8,
    FsmState.LAST_ACK: 9,
    FsmState.TIME_WAIT: 10,
}
# States in which the peer's FIN has arrived (or the connection is gone).
PEER_CLOSED = {
    FsmState.CLOSE_WAIT,
    FsmState.LAST_ACK,
    FsmState.CLOSING,
    FsmState.TIME_WAIT,
    FsmState.CLOSED,
}


class SocketError(Exception):
    def __init__(self, code, value=0, text=""):
        super().__init__(text)
        self.code, self.value, self.text = code, value, text


class Failed(Exception):
    pass


def unsupported(what):
    return SocketError(10, 0, f"PyTCP {PYTCP_VERSION}: {what}")


class Reader:
    def __init__(self, data):
        self.data, self.at = data, 0

    def take(self, n, what):
        if self.at + n > len(self.data):
            raise Failed(f"the request ends inside its {what}")
        piece = self.data[self.at:self.at + n]
        self.at += n
        return piece

    def u8(self, what):
        return self.take(1, what)[0]

    def u16(self, what):
        return struct.unpack("<H", self.take(2, what))[0]

    def u32(self, what):
        return struct.unpack("<I", self.take(4, what))[0]

    def u64(self, what):
        return struct.unpack("<Q", self.take(8, what))[0]

    def bytes(self, what):
        return self.take(self.u32(what), what)

    def option_u64(self, what):
        tag = self.u8(what)
        if tag == 0:
            return None
        if tag == 1:
            return self.u64(what)
        raise Failed(f"the {what} is an option whose tag is {tag}")

    def ip(self, what):
        family = self.u8(what)
        raw = self.take(16, what)
        if family == 4:
            return 4, Ip4Address(bytes(raw[:4]))
        if family == 6:
            return 6, Ip6Address(bytes(raw))
        raise Failed(f"the {what}'s family is {family}, not 4 or 6")

    def endpoint(self, what):
        family, address = self.ip(what)
        return family, address, self.u16(what)


def ip_bytes(family, address):
    raw = bytes(address)
    return bytes([family]) + raw + bytes(16 - len(raw))


class Host:
    """The one PyTCP stack of this process, and wirelab's handles for its sockets."""

    def __init__(self, r):
        name = bytes(r.bytes("host name")).decode("utf-8", "replace")
        mac = bytes(r.take(6, "MAC address"))
        has_v4 = r.u8("IPv4 flag")
        v4 = bytes(r.take(4, "IPv4 address"))
        p4 = r.u8("IPv4 prefix")
        has_gw4 = r.u8("IPv4 gateway flag")
        gw4 = bytes(r.take(4, "IPv4 gateway"))
        has_v6 = r.u8("IPv6 flag")
        v6 = bytes(r.take(16, "IPv6 address"))
        p6 = r.u8("IPv6 prefix")
        has_gw6 = r.u8("IPv6 gateway flag")
        gw6 = bytes(r.take(16, "IPv6 gateway"))
        ip_mtu = r.u32("IP MTU")
        seed = r.u64("seed")
        r.u8("congestion control")
        r.u32("TCP receive buffer")
        self.tx_buffer_bytes = r.u32("TCP send buffer") or (1 << 30)
        self.datagram_packets = r.u32("datagram queue packets") or (1 << 30)
        r.u32("datagram queue bytes")
        self.name = name
        random.seed(seed)  # PyTCP's ISNs come from `random`.
        config.TAP_MTU = ip_mtu
        config.LOCAL_TCP_MSS = ip_mtu - 40
        stack.timer = VirtualTimer()
        stack.tx_ring = FrameOut()
        handler = stack.packet_handler
        handler.assign_mac_address(MacAddress(mac))
        # PyTCP claims addresses with blocking waits (ARP probes 1-2 s apart, 1 s for IPv6
        # DAD). Here they are assigned at once, as after a DAD that found no conflict, and
        # announced as PyTCP announces them.
        config.IP4_HOST_DHCP = False
        config.IP4_SUPPORT = bool(has_v4)
        if has_v4:
            host4 = Ip4Host(f"{Ip4Address(v4)}/{p4}")
            if has_gw4:
                host4.gateway = Ip4Address(gw4)
            handler.ip4_host.append(host4)
            handler._send_arp_announcement(host4.address)
        config.IP6_SUPPORT = bool(has_v6)
        config.IP6_LLA_AUTOCONFIG = False
        config.IP6_GUA_AUTOCONFIG = False
        if has_v6:
            handler._assign_ip6_multicast(Ip6Address("ff02::1"))
            lla = Ip6Network("fe80::/64").eui64(MacAddress(mac))
            lla.gateway = None
            handler._assign_ip6_host(lla)
            host6 = Ip6Host(f"{Ip6Address(v6)}/{p6}")
            if has_gw6:
                host6.gateway = Ip6Address(gw6)
            handler._assign_ip6_host(host6)
        self.sockets = {}  # handle -> entry (dict)
        self.next_handle = 1
        self.inbox = []
        self.last_tick = (NOW_US - 1) // 1000  # no tick has run at this instant yet

    # Handles ------------------------------------------------------------------------------

    def add(self, entry):
        handle = self.next_handle
        self.next_handle += 1
        self.sockets[handle] = entry
        return handle

    def entry(self, handle, kind):
        entry = self.sockets.get(handle)
        if entry is None:
            raise SocketError(1, handle)
        if entry["kind"] != kind:
            raise SocketError(2, handle, f"{entry['kind']} socket, not {kind}")
        return entry

    def families(self):
        out = []
        if config.IP4_SUPPORT:
            out.append(AF_INET4)
        if config.IP6_SUPPORT:
            out.append(AF_INET6)
        return out

    # Time ---------------------------------------------------------------------------------

    def poll(self, now_us):
        global NOW_US
        NOW_US = max(NOW_US, now_us)
        before = self.signature()
        # The ticks before this instant, then what happened at it (frames received, socket
        # calls made since the last POLL), then this instant's own tick if it falls on a
        # millisecond: at one instant a frame is handled before the tick, so PyTCP answers it
        # at once, the short end of the 0-1 ms a real timer thread takes.
        self.tick_until((NOW_US - 1) // 1000)
        received = len(self.inbox)
        inbox, self.inbox = self.inbox, []
        for frame in inbox:
            stack.packet_handler._phrx_ether(PacketRx(frame))
        self.tick_until(NOW_US // 1000)
        changed = received > 0 or self.signature() != before
        frames, stack.tx_ring.frames = stack.tx_ring.frames, []
        return changed, frames

    def tick_until(self, target):
        """Runs PyTCP's timer up to and including millisecond `target`; idle time in one jump."""
        timer = stack.timer
        while self.last_tick < target:
            if timer.has_tasks():
                timer.tick()
                self.last_tick += 1
            else:
                timer.skip(target - self.last_tick)
                self.last_tick = target

    def poll_at(self):
        if stack.timer.has_tasks():
            return (self.last_tick + 1) * 1000
        return None

    def signature(self):
        sig = [len(ECHO_REPLIES)]
        for entry in self.sockets.values():
            if entry["kind"] == "tcp":
                s = entry["socket"].tcp_session
                sig.append((s._state, len(s._rx_buffer), s._snd_una, len(s._tx_buffer)))
            elif entry["kind"] == "listener":
                sig.append(sum(len(s._tcp_accept) for s in entry["sockets"]))
            elif entry["kind"] == "udp":
                sig.append(sum(len(s._packet_rx_md) for s in entry["sockets"]))
        return sig

    # TCP ----------------------------------------------------------------------------------

    def tcp_listen(self, r):
        port = r.u16("port")
        r.u32("backlog")  # PyTCP has no backlog limit.
        sockets = []
        for family in self.families():
            sock = TcpSocket(family)
            try:
                sock.bind(("::" if family is AF_INET6 else "0.0.0.0", port))
            except OSError:
                raise SocketError(3, port)
            sock.listen()
            sockets.append(sock)
        return struct.pack("<I", self.add({"kind": "listener", "sockets": sockets}))

    def tcp_accept(self, r):
        entry = self.entry(r.u32("listener"), "listener")
        for sock in entry["sockets"]:
            if sock._tcp_accept and sock._event_tcp_session_established.acquire(blocking=False):
                child = sock._tcp_accept.pop(0)
                return b"\x01" + struct.pack("<I", self.add({"kind": "tcp", "socket": child}))
        return b"\x00" + struct.pack("<I", 0)

    def tcp_connect(self, r):
        family, address, port = r.endpoint("remote")
        if (family == 4 and not config.IP4_SUPPORT) or (family == 6 and not config.IP6_SUPPORT):
            raise SocketError(5, 0, str(address))
        sock = TcpSocket(AF_INET4 if family == 4 else AF_INET6)
        # TcpSocket.connect without its wait: the same binding and session, then the
        # CONNECT syscall; the SYN leaves at the next timer tick, as in PyTCP.
        try:
            local_port = sock._pick_local_port()
        except OSError:
            raise SocketError(4)
        try:
            local_ip, remote_ip = sock._set_ip_addresses(
                (str(address), port), sock._local_ip_address, local_port, port
            )
        except Exception:  # noqa: BLE001 - PyTCP raises gaierror/OSError here
            raise SocketError(5, 0, str(address))
        stack.sockets.pop(str(sock), None)
        sock._local_ip_address, sock._local_port = local_ip, local_port
        sock._remote_ip_address, sock._remote_port = remote_ip, port
        stack.sockets[str(sock)] = sock
        sock._tcp_session = TcpSession(
            local_ip_address=local_ip,
            local_port=local_port,
            remote_ip_address=remote_ip,
            remote_port=port,
            socket=sock,
        )
        from pytcp.protocols.tcp.session import SysCall

        sock._tcp_session.tcp_fsm(syscall=SysCall.CONNECT)
        return struct.pack("<I", self.add({"kind": "tcp", "socket": sock}))

    def session(self, r):
        entry = self.entry(r.u32("socket"), "tcp")
        return entry["socket"].tcp_session

    def tcp_send(self, r):
        s = self.session(r)
        data = bytes(r.bytes("data"))
        if s._state not in (FsmState.ESTABLISHED, FsmState.CLOSE_WAIT) or s._closing:
            raise SocketError(6, STATE_CODES[s._state])
        room = max(0, self.tx_buffer_bytes - (len(s._tx_buffer) - s._tx_buffer_una))
        taken = s.send(data[:room]) if room else 0
        return struct.pack("<I", taken)

    def tcp_recv(self, r):
        s = self.session(r)
        limit = r.u32("max")
        if s._rx_buffer:
            with s._lock_rx_buffer:
                data = bytes(s._rx_buffer[:limit])
                del s._rx_buffer[:limit]
            return struct.pack("<I", len(data)) + data
        if s._state in PEER_CLOSED:
            raise SocketError(9)
        return struct.pack("<I", 0)

    def tcp_shutdown(self, r):
        s = self.session(r)
        if s._state in (FsmState.ESTABLISHED, FsmState.CLOSE_WAIT, FsmState.SYN_RCVD,
                        FsmState.SYN_SENT):
            s.close()  # PyTCP's CLOSE: FIN once the queued data is out.
        return b""

    def tcp_abort(self, r):
        self.session(r)
        raise unsupported("no abort (RST) call: a TCP session can only be closed with FIN")

    def tcp_state(self, r):
        return bytes([STATE_CODES[self.session(r)._state]])

    def tcp_end(self, r):
        s = self.session(r)
        end = getattr(s, "_wirelab_end", 0)
        if s._connection_error is ConnError.REFUSED:
            end = 1
        elif s._connection_error is ConnError.TIMEOUT:
            end = 3
        return bytes([end])

    def tcp_send_queue(self, r):
        s = self.session(r)
        return struct.pack("<I", max(0, len(s._tx_buffer) - s._tx_buffer_una))

    def tcp_set_keepalive(self, r):
        self.session(r)
        if r.option_u64("idle") is None:
            return b""  # off, as PyTCP always is
        raise unsupported("no TCP keep-alive")

    def tcp_set_nagle(self, r):
        self.session(r)
        if r.u8("enabled"):
            raise unsupported("no Nagle algorithm (every tick sends what the window allows)")
        return b""  # off, as PyTCP always is

    def tcp_set_timeout(self, r):
        self.session(r)
        if r.option_u64("timeout") is None:
            return b""
        raise unsupported("no user timeout (it gives up after 3 retransmissions)")

    # UDP ----------------------------------------------------------------------------------

    def udp_bind(self, r):
        port = r.u16("port")
        sockets = []
        for family in self.families():
            sock = UdpSocket(family)
            try:
                if port == 0 and sockets:
                    port = sockets[0]._local_port
                sock.bind(("::" if family is AF_INET6 else "0.0.0.0", port))
            except OSError as error:
                raise SocketError(4 if port == 0 else 3, port, str(error))
            if port == 0:
                port = sock._local_port
            sockets.append(sock)
        return struct.pack("<I", self.add({"kind": "udp", "sockets": sockets, "port": port}))

    def udp_local_port(self, r):
        return struct.pack("<H", self.entry(r.u32("socket"), "udp")["port"])

    def udp_send_to(self, r):
        entry = self.entry(r.u32("socket"), "udp")
        family, address, port = r.endpoint("destination")
        data = bytes(r.bytes("data"))
        if len(data) > config.TAP_MTU - (28 if family == 4 else 48):
            raise SocketError(8, len(data))  # PyTCP does not fragment what it sends.
        want = AF_INET4 if family == 4 else AF_INET6
        for sock in entry["sockets"]:
            if sock._family is want:
                sock.sendto(data, (str(address), port))
                return b""
        raise SocketError(5, 0, str(address))

    def udp_recv_from(self, r):
        entry = self.entry(r.u32("socket"), "udp")
        limit = r.u32("max")
        for sock in entry["sockets"]:
            if sock._packet_rx_md and sock._packet_rx_md_ready.acquire(blocking=False):
                md = sock._packet_rx_md.pop(0)
                data = bytes(md.data)
                family = 4 if sock._family is AF_INET4 else 6
                return (b"\x01" + struct.pack("<I", len(data))
                        + ip_bytes(family, md.remote_ip_address)
                        + struct.pack("<H", md.remote_port)
                        + struct.pack("<I", min(limit, len(data))) + data[:limit])
        return b"\x00" + bytes(4) + b"\x04" + bytes(16) + bytes(2) + bytes(4)

    # ICMP echo ----------------------------------------------------------------------------

    def icmp_echo_open(self, r):
        ident = r.u16("ident")
        return struct.pack("<I", self.add({"kind": "icmp", "ident": ident}))

    def icmp_echo_send(self, r):
        entry = self.entry(r.u32("socket"), "icmp")
        family, address = r.ip("destination")
        seq = r.u16("seq")
        payload = bytes(r.bytes("payload"))
        handler = stack.packet_handler
        if family == 4:
            if not handler.ip4_unicast:
                raise SocketError(5, 0, str(address))
            handler.send_icmp4_packet(
                local_ip_address=handler.ip4_unicast[0], remote_ip_address=address,
                type=8, ec_id=entry["ident"], ec_seq=seq, ec_data=payload)
        else:
            if not handler.ip6_unicast:
                raise SocketError(5, 0, str(address))
            handler.send_icmp6_packet(
                local_ip_address=handler.ip6_unicast[-1], remote_ip_address=address,
                type=128, ec_id=entry["ident"], ec_seq=seq, ec_data=payload)
        return b""

    def icmp_echo_recv(self, r):
        entry = self.entry(r.u32("socket"), "icmp")
        for i, (family, source, ident, seq, length) in enumerate(ECHO_REPLIES):
            if ident == entry["ident"]:
                del ECHO_REPLIES[i]
                return (b"\x01" + bytes([family]) + source
                        + struct.pack("<HHI", ident, seq, length))
        return b"\x00" + b"\x04" + bytes(16) + bytes(8)

    def close(self, r):
        handle = r.u32("socket")
        entry = self.sockets.get(handle)
        if entry is None:
            raise SocketError(1, handle)
        if entry["kind"] == "tcp":
            s = entry["socket"].tcp_session
            if s._state in (FsmState.ESTABLISHED, FsmState.CLOSE_WAIT, FsmState.SYN_RCVD,
                            FsmState.SYN_SENT):
                s.close()
        elif entry["kind"] in ("udp", "listener"):
            for sock in entry["sockets"]:
                if entry["kind"] == "udp":
                    sock.close()
                else:
                    # PyTCP's close of a listener only tells its session; the session and
                    # its socket stay registered, so the port keeps answering SYNs.
                    stack.sockets.pop(str(sock), None)
        del self.sockets[handle]
        return b""


CALLS = {
    32: Host.tcp_listen, 33: Host.tcp_accept, 34: Host.tcp_connect, 35: Host.tcp_send,
    36: Host.tcp_recv, 37: Host.tcp_shutdown, 38: Host.tcp_abort, 39: Host.tcp_state,
    40: Host.tcp_end, 41: Host.tcp_send_queue, 42: Host.tcp_set_keepalive,
    43: Host.tcp_set_nagle, 44: Host.tcp_set_timeout, 48: Host.udp_bind,
    49: Host.udp_local_port, 50: Host.udp_send_to, 51: Host.udp_recv_from,
    64: Host.icmp_echo_open, 65: Host.icmp_echo_send, 66: Host.icmp_echo_recv, 80: Host.close,
}


def option_u64(value):
    return b"\x00" if value is None else b"\x01" + struct.pack("<Q", value)


def read_exact(stream, n):
    data = bytearray()
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def main():
    stdin = os.fdopen(0, "rb", buffering=1 << 16)
    out = PROTOCOL_OUT
    host = None

    def answer(status, body):
        out.write(struct.pack("<I", len(body) + 1) + bytes([status]) + body)

    while True:
        head = read_exact(stdin, 4)
        if head is None:
            return
        message = read_exact(stdin, struct.unpack("<I", head)[0])
        if not message:
            return
        kind = message[0]
        r = Reader(memoryview(message)[1:])
        try:
            if kind == 1:
                answer(0, struct.pack("<H", 1)
                       + struct.pack("<I", len(f"PyTCP {PYTCP_VERSION}"))
                       + f"PyTCP {PYTCP_VERSION}".encode() + struct.pack("<I", 1))
                continue
            instance = r.u32("instance")
            if kind == 2:
                if host is not None or instance != 0:
                    raise Failed("PyTCP keeps its stack in module globals: one instance per process")
                host = Host(r)
                answer(0, option_u64(host.poll_at()))
                continue
            if host is None:
                raise Failed(f"request {kind} before CREATE")
            if kind == 3:
                answer(0, option_u64(None))
                return
            if kind == 16:
                host.inbox.append(bytes(r.bytes("frame")))
                continue
            if kind == 17:
                changed, frames = host.poll(r.u64("now_us"))
                body = bytearray([1 if changed else 0])
                body += struct.pack("<I", len(frames))
                for frame in frames:
                    body += struct.pack("<I", len(frame)) + frame
                answer(0, bytes(body) + option_u64(host.poll_at()))
                continue
            call = CALLS.get(kind)
            if call is None:
                raise Failed(f"unknown request kind {kind}")
            try:
                results = call(host, r)
            except SocketError as error:
                text = error.text.encode()
                answer(1, bytes([error.code]) + struct.pack("<I", error.value)
                       + struct.pack("<I", len(text)) + text + option_u64(host.poll_at()))
                if error.code == 10:
                    sys.stderr.write(f"unsupported: {error.text}\n")
                continue
            answer(0, results + option_u64(host.poll_at()))
        except Failed as error:
            text = str(error).encode()
            answer(2, struct.pack("<I", len(text)) + text)
            return
        except Exception as error:  # noqa: BLE001 - PyTCP failed inside: the run must say so
            import traceback

            traceback.print_exc(file=sys.stderr)
            text = f"PyTCP raised {type(error).__name__}: {error}".encode()
            answer(2, struct.pack("<I", len(text)) + text)
            return


if __name__ == "__main__":
    main()
