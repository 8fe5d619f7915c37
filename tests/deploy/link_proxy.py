"""A link proxy for the test harness: franky (libfranka's client) <-> this proxy <-> franky-sim, all on loopback.

libfranka's client opens TCP to port 1337 (robot) and 1338 (gripper) and announces its UDP port in the first
message, the Connect request (header `<III` on 1337, `<HII` on 1338, then `<HH` version, UDP port). The server
answers over TCP and streams its state over UDP at 1 kHz to (the TCP peer's address, the announced port); the
client sends its commands back to wherever the state came from. So the proxy listens on its own loopback address,
connects to the server from that address, rewrites the announced port to its own server-facing UDP socket and
relays state out of a client-facing UDP socket: the client never learns the server's address.

Faults are switchable at run time (`set`): UDP packets dropped with a probability and / or delayed (both
directions), TCP delayed, or the whole link cut (nothing forwarded either way; TCP bytes are held, as the kernel
would keep retransmitting them, and go out if the link heals). Every robot-port UDP packet is tapped with its
stamp, direction and fate, so a test can check what the controller sent and what the arm reported.

The relay runs in a child process of its own (LinkProxy is its handle in the test process): in a thread of the test
process it waited for the interpreter lock behind the controller loop and franky's bindings, and a few ms of relay
stall on a healthy link was enough for libfranka's catch-up after the gap to drive franky-sim's joint 2 past the FR3's
2.62 rad/s (the driver then latched, correctly, on a link that was meant to be healthy).

Test harness only, not `robo_hybrid.deploy`: to rehearse a bad network in front of a real arm, use the kernel's
netem (`tc qdisc add dev <if> root netem delay 5ms loss 10%`); a Python relay in a 1 kHz loop adds its own
scheduling jitter, which a real FR3 would already count against its communication constraints.
"""

from __future__ import annotations

import heapq
import itertools
import multiprocessing as mp
import random
import selectors
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

ROBOT_PORT, GRIPPER_PORT = 1337, 1338
HEADER_SIZE = {ROBOT_PORT: 12, GRIPPER_PORT: 10}  # libfranka's message header: command u32 (robot) / u16 (gripper)
TO_SERVER, TO_CLIENT = "to_server", "to_client"


@dataclass
class Fault:
    """What the link does to traffic now (swapped whole by LinkProxy.set, read by the relay thread)."""

    drop: float = 0.0
    """Probability that a UDP packet (either direction) is lost."""
    delay_s: float = 0.0
    """Added one-way delay of every UDP packet."""
    tcp_delay_s: float = 0.0
    """Added one-way delay of TCP bytes (order kept)."""
    cut: bool = False
    """Forward nothing: UDP packets are lost, TCP bytes are held."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.drop <= 1.0 or self.delay_s < 0 or self.tcp_delay_s < 0:
            raise ValueError("drop must be within [0, 1], delay_s and tcp_delay_s >= 0")


@dataclass
class Tap:
    """One robot-port UDP packet: monotonic stamp, direction, fate ('sent' | 'dropped' | 'cut'), the bytes."""

    t: float
    direction: str
    fate: str
    data: bytes = field(repr=False)


class _Session:
    """One client connection on one port: its TCP pair and the two UDP sockets of its stream."""

    def __init__(self, port: int, client: socket.socket, upstream: socket.socket, host: str) -> None:
        self.port, self.client, self.upstream = port, client, upstream
        self.client_ip = client.getpeername()[0]
        self.client_udp_port: int | None = None
        self.server_udp: tuple[str, int] | None = None  # where the server's state comes from
        self.u_server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # faces the server (announced to it)
        self.u_client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # faces the client (state comes from it)
        for s in (self.u_server, self.u_client):
            s.bind((host, 0))
            s.setblocking(False)
        self.connect_buf = b""  # client bytes until the Connect request is complete (then rewritten)
        self.rewritten = False
        self.held: dict[str, list[bytes]] = {TO_SERVER: [], TO_CLIENT: []}  # TCP bytes held while cut
        self.tcp_due = {TO_SERVER: 0.0, TO_CLIENT: 0.0}  # keeps TCP order under a changing delay

    def sockets(self) -> tuple[socket.socket, ...]:
        """Its four sockets: client TCP, upstream TCP, server-facing UDP, client-facing UDP."""
        return self.client, self.upstream, self.u_server, self.u_client


class _Relay:
    """The relay itself: franky <-> franky-sim between `listen_host` and `server_host`, in a thread of its process."""

    def __init__(self, listen_host: str, server_host: str, ports=(ROBOT_PORT, GRIPPER_PORT), seed: int = 0) -> None:
        self.listen_host, self.server_host, self.ports = listen_host, server_host, tuple(ports)
        self.fault = Fault()
        self.taps: list[Tap] = []
        self.counts: dict[str, int] = {}
        self.errors: list[str] = []
        self._rng = random.Random(seed)  # own generator: the drop pattern repeats for a seed
        self._sel = selectors.DefaultSelector()
        self._sessions: list[_Session] = []
        self._queue: list[tuple[float, int, object, bytes, tuple | None]] = []  # (due, seq, socket, data, udp addr)
        self._seq = itertools.count()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listeners: list[socket.socket] = []

    # ----- control (test thread) -----
    def start(self) -> _Relay:
        """Bind the listening ports and start the relay thread."""
        for port in self.ports:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((self.listen_host, port))
            s.listen(4)
            s.setblocking(False)
            self._sel.register(s, selectors.EVENT_READ, ("listen", port))
            self._listeners.append(s)
        self._thread = threading.Thread(target=self._run, name="link-proxy", daemon=True)
        self._thread.start()
        return self

    def set(self, **fault) -> None:
        """Switch the link's behaviour now (Fault fields: drop, delay_s, tcp_delay_s, cut); others keep theirs."""
        self.fault = Fault(**{**vars(self.fault), **fault})

    def close(self) -> None:
        """Stop relaying and close every socket."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        for s in self._listeners + [x for ses in self._sessions for x in ses.sockets()]:
            s.close()
        self._sel.close()

    def commands(self, fate: str = "sent") -> list[Tap]:
        """The robot-port UDP packets franky sent toward the server (by default those that got through)."""
        return [t for t in list(self.taps) if t.direction == TO_SERVER and (fate is None or t.fate == fate)]

    # ----- relay (its own thread) -----
    def _count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            while self._queue and self._queue[0][0] <= now:
                _, _, sock, data, addr = heapq.heappop(self._queue)
                self._send(sock, data, addr)  # type: ignore[arg-type]
            timeout = min(0.02, self._queue[0][0] - now) if self._queue else 0.02
            for key, _ in self._sel.select(max(timeout, 0.0)):
                if key.fileobj.fileno() < 0:  # type: ignore[union-attr]  # its session ended earlier in this batch
                    continue
                try:
                    self._on_ready(key.fileobj, key.data)  # type: ignore[arg-type]
                except OSError as e:  # one broken session must not stop the others
                    self.errors.append(f"{key.data[0]}: {type(e).__name__}: {e}")
            self._flush_held()

    def _send(self, sock: socket.socket, data: bytes, addr: tuple | None) -> None:
        try:
            if addr is None:
                sock.sendall(data)
            else:
                sock.sendto(data, addr)
        except OSError as e:  # the peer went away: count it, keep relaying
            self._count(f"send_error_{type(e).__name__}")

    def _on_ready(self, sock: socket.socket, data: tuple) -> None:
        kind, ref = data
        if kind == "listen":
            self._accept(sock, ref)
            return
        ses: _Session = ref
        if kind in ("client", "upstream"):
            chunk = sock.recv(65536)
            if not chunk:
                self._end(ses)
                return
            if kind == "client":
                self._tcp(ses, TO_SERVER, self._rewrite(ses, chunk))
            else:
                self._tcp(ses, TO_CLIENT, chunk)
            return
        packet, addr = sock.recvfrom(65536)
        if kind == "u_server":  # state from the server -> client
            ses.server_udp = addr
            if ses.client_udp_port is not None:
                self._udp(ses, TO_CLIENT, packet, ses.u_client, (ses.client_ip, ses.client_udp_port))
        elif ses.server_udp is not None:  # command from the client -> server
            self._udp(ses, TO_SERVER, packet, ses.u_server, ses.server_udp)

    def _accept(self, listener: socket.socket, port: int) -> None:
        client, _ = listener.accept()
        upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        upstream.bind((self.listen_host, 0))  # the server sends its UDP state to this address
        upstream.settimeout(2.0)
        upstream.connect((self.server_host, port))
        ses = _Session(port, client, upstream, self.listen_host)
        for s in (client, upstream):
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for s, kind in zip(ses.sockets(), ("client", "upstream", "u_server", "u_client"), strict=True):
            self._sel.register(s, selectors.EVENT_READ, (kind, ses))
        self._sessions.append(ses)
        self._count(f"sessions_{port}")

    def _rewrite(self, ses: _Session, chunk: bytes) -> bytes:
        """Hold the client's bytes until its Connect request is complete, then announce our UDP port instead."""
        if ses.rewritten:
            return chunk
        ses.connect_buf += chunk
        off = HEADER_SIZE[ses.port]
        if len(ses.connect_buf) < off + 4:
            return b""
        buf = bytearray(ses.connect_buf)
        (ses.client_udp_port,) = struct.unpack_from("<H", buf, off + 2)
        struct.pack_into("<H", buf, off + 2, ses.u_server.getsockname()[1])
        ses.rewritten, ses.connect_buf = True, b""
        return bytes(buf)

    def _tcp(self, ses: _Session, direction: str, data: bytes) -> None:
        if not data:
            return
        dest = ses.upstream if direction == TO_SERVER else ses.client
        f = self.fault
        if f.cut:
            ses.held[direction].append(data)
            return
        if f.tcp_delay_s <= 0 and ses.tcp_due[direction] <= time.monotonic():
            self._send(dest, data, None)
            return
        due = max(time.monotonic() + f.tcp_delay_s, ses.tcp_due[direction])
        ses.tcp_due[direction] = due
        heapq.heappush(self._queue, (due, next(self._seq), dest, data, None))

    def _flush_held(self) -> None:
        if self.fault.cut:
            return
        for ses in self._sessions:
            for direction, chunks in ses.held.items():
                while chunks:
                    self._tcp(ses, direction, chunks.pop(0))

    def _udp(self, ses: _Session, direction: str, packet: bytes, sock: socket.socket, addr: tuple) -> None:
        f = self.fault
        fate = "cut" if f.cut else "dropped" if (f.drop > 0 and self._rng.random() < f.drop) else "sent"
        if ses.port == ROBOT_PORT:
            self.taps.append(Tap(time.monotonic(), direction, fate, packet))
        self._count(f"{direction}_{fate}")
        if fate != "sent":
            return
        if f.delay_s <= 0:
            self._send(sock, packet, addr)
        else:
            heapq.heappush(self._queue, (time.monotonic() + f.delay_s, next(self._seq), sock, packet, addr))

    def _end(self, ses: _Session) -> None:
        """One side closed its TCP connection: close the session (both TCP ends and its UDP sockets)."""
        for s in ses.sockets():
            try:
                self._sel.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()
        self._sessions.remove(ses)
        self._count(f"closed_{ses.port}")


def _serve(conn, listen_host: str, server_host: str, ports: tuple, seed: int) -> None:
    """The child process: run the relay, answer the handle's requests until it says close (or goes away)."""
    relay = _Relay(listen_host, server_host, ports, seed)
    try:
        relay.start()
    except OSError as e:
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", None))
    try:
        while True:
            try:
                op, arg = conn.recv()
            except EOFError:
                return
            if op == "set":
                relay.set(**arg)
                conn.send(("ok", None))
            elif op == "snapshot":
                conn.send(("ok", (list(relay.taps), dict(relay.counts), list(relay.errors))))
            elif op == "close":
                return
    finally:
        relay.close()
        conn.close()


class LinkProxy:
    """Relays franky <-> franky-sim between `listen_host` and `server_host` with switchable faults (`set`); the relay
    runs in a child process (`_Relay`), this is its handle: `set` reaches it at once, `taps` / `counts` / `errors`
    are read from it on access."""

    def __init__(self, listen_host: str, server_host: str, ports=(ROBOT_PORT, GRIPPER_PORT), seed: int = 0) -> None:
        self._args = (listen_host, server_host, tuple(ports), seed)
        self._conn = None
        self._proc = None
        self._closed: tuple[list[Tap], dict[str, int], list[str]] | None = None  # the last snapshot, after close

    def start(self) -> LinkProxy:
        """Start the relay process; returns once it listens (an OSError of its bind is raised here)."""
        ctx = mp.get_context("spawn")  # never fork: the test process runs franky's threads
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, *self._args), name="link-proxy", daemon=True)
        self._proc.start()
        child.close()
        if not self._conn.poll(30.0):
            raise RuntimeError("link proxy process did not start within 30 s")
        kind, msg = self._conn.recv()
        if kind != "ready":
            raise OSError(f"link proxy could not listen on {self._args[0]}: {msg}")
        return self

    def _ask(self, op: str, arg=None):
        assert self._conn is not None, "LinkProxy.start() first"
        try:
            self._conn.send((op, arg))
            kind, value = self._conn.recv()
        except (OSError, EOFError) as e:
            raise RuntimeError(f"link proxy process is gone (exit code {self._proc and self._proc.exitcode})") from e
        assert kind == "ok", value
        return value

    def _snapshot(self) -> tuple[list[Tap], dict[str, int], list[str]]:
        return self._closed if self._closed is not None else self._ask("snapshot")

    def set(self, **fault) -> None:
        """Switch the link's behaviour now (Fault fields: drop, delay_s, tcp_delay_s, cut); others keep theirs."""
        Fault(**fault)  # a bad field or value fails here, in the test, not in the relay
        self._ask("set", fault)

    def close(self) -> None:
        """Stop relaying, close every socket and end the relay process (its last record stays readable)."""
        if self._conn is None or self._proc is None or self._closed is not None:
            return
        try:
            self._closed = self._ask("snapshot")
            self._conn.send(("close", None))
        except (RuntimeError, OSError):
            self._closed = ([], {}, ["the relay process was gone before close()"])
        self._proc.join(5.0)
        if self._proc.is_alive():
            self._proc.kill()
        self._conn.close()

    @property
    def taps(self) -> list[Tap]:
        """Every robot-port UDP packet so far (stamped with time.monotonic(), one clock for all processes)."""
        return self._snapshot()[0]

    @property
    def counts(self) -> dict[str, int]:
        """Event counts: sessions_<port>, <direction>_<fate>, closed_<port>, send_error_<name>."""
        return self._snapshot()[1]

    @property
    def errors(self) -> list[str]:
        """Errors the relay caught (one broken session does not stop the others)."""
        return self._snapshot()[2]

    def commands(self, fate: str | None = "sent") -> list[Tap]:
        """The robot-port UDP packets franky sent toward the server (by default those that got through)."""
        return [t for t in self.taps if t.direction == TO_SERVER and (fate is None or t.fate == fate)]
