"""Wire format between the ZeroMQ sim server and its client (single-frame messages, so SUB can CONFLATE).

Observation: u32 header length | JSON header | raw array bytes in header order.
Command:     struct "<BIQqd" (kind, episode, session, seq, stamp_s) | float32 action bytes.
Control:     one UTF-8 JSON object per request and per reply.
All stamps are time.monotonic() seconds of the sender's machine (CLOCK_MONOTONIC, shared on one host).

Every decoder raises WireError (and nothing else) on any malformed input: a peer's bytes never crash a process.
"""

from __future__ import annotations

import json
import math
import struct

import numpy as np

from .robot import Observation

CMD_ACTION, CMD_HOLD = 0, 1
_CMD_HEAD = struct.Struct("<BIQqd")
_LEN = struct.Struct("<I")
MAX_CMD_BYTES = 4096  # a command is 29 bytes + 4 per action value
MAX_CTL_BYTES = 1 << 20  # control requests / replies (the I/O spec JSON is a few kB)
MAX_OBS_BYTES = 64 << 20  # observations: a few camera frames
MAX_ACTION_DIM = 256
_MAX_HEADER_BYTES = 1 << 16
_MAX_ARRAYS = 32
_DTYPES = frozenset({"uint8", "int32", "int64", "float32", "float64", "bool"})  # never object / void
CTL_REQUESTS = ("hello", "rearm", "reset", "stop", "stats", "shutdown")


class WireError(ValueError):
    """A message that is not what the wire format allows (dropped and counted by the receiver)."""


def endpoints(base: str) -> tuple[str, str, str]:
    """(observation PUB, command PULL, control REP) endpoints derived from one base endpoint."""
    if base.startswith("ipc://"):
        return base + ".obs", base + ".cmd", base + ".ctl"
    if base.startswith("tcp://"):
        host, _, port = base[len("tcp://") :].rpartition(":")
        if not port.isdigit():
            raise ValueError(f"endpoint {base!r}: expected tcp://HOST:PORT (ports PORT..PORT+2 are used)")
        p = int(port)
        return f"tcp://{host}:{p}", f"tcp://{host}:{p + 1}", f"tcp://{host}:{p + 2}"
    raise ValueError(f"endpoint {base!r}: use tcp://HOST:PORT or ipc:///path/prefix")


def encode_obs(obs: Observation, episode: int, boot: int, sent_s: float, link: dict | None = None) -> bytes:
    """One observation as a single frame (`link`: the server's refused / stale counters, for the controller)."""
    arrays = [(k, np.ascontiguousarray(v)) for k, v in obs.arrays.items()]
    header = {
        "arrays": [[k, str(v.dtype), list(v.shape)] for k, v in arrays],
        "stamp_s": obs.stamp_s,
        "image_stamp_s": obs.image_stamp_s,
        "seq": obs.seq,
        "info": obs.info,
        "episode": episode,
        "boot": boot,
        "sent_s": sent_s,
        "link": link or {},
    }
    h = json.dumps(header).encode()
    return b"".join([_LEN.pack(len(h)), h, *(v.tobytes() for _, v in arrays)])


def _finite(x, what: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise WireError(f"{what} must be a finite number, got {x!r}")
    return float(x)


def _int(x, what: str) -> int:
    if isinstance(x, bool) or not isinstance(x, int):
        raise WireError(f"{what} must be an integer, got {x!r}")
    return x


def _header(frame: bytes) -> tuple[dict, int]:
    if len(frame) < _LEN.size:
        raise WireError(f"observation of {len(frame)} bytes is shorter than its length prefix")
    (n,) = _LEN.unpack_from(frame, 0)
    if n > _MAX_HEADER_BYTES or _LEN.size + n > len(frame):
        raise WireError(f"observation header claims {n} bytes; the frame has {len(frame) - _LEN.size}")
    try:
        header = json.loads(frame[_LEN.size : _LEN.size + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise WireError(f"observation header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise WireError("observation header is not a JSON object")
    return header, _LEN.size + n


def _arrays(frame: bytes, specs, off: int) -> dict[str, np.ndarray]:
    if not isinstance(specs, list) or len(specs) > _MAX_ARRAYS:
        raise WireError("observation header 'arrays' must be a list of [key, dtype, shape]")
    arrays: dict[str, np.ndarray] = {}
    for item in specs:
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str) and item[1] in _DTYPES
                and isinstance(item[2], list) and len(item[2]) <= 8):  # fmt: skip
            raise WireError(f"observation array entry {str(item)[:80]!r}: expected [key, plain dtype, shape]")
        key, dtype, shape = item
        shape = [_int(s, f"'{key}' shape") for s in shape]
        if any(s < 0 for s in shape):
            raise WireError(f"'{key}': negative dimension in {shape}")
        dt = np.dtype(dtype)
        count = math.prod(shape)
        if off + count * dt.itemsize > len(frame):
            raise WireError(f"'{key}': header promises {count * dt.itemsize} bytes, the frame has {len(frame) - off}")
        arrays[key] = np.frombuffer(frame, dtype=dt, count=count, offset=off).reshape(shape).copy()
        off += count * dt.itemsize
    if off != len(frame):
        raise WireError(f"observation frame has {len(frame) - off} bytes beyond what its header describes")
    return arrays


def decode_obs(frame: bytes) -> tuple[Observation, dict]:
    """Inverse of encode_obs: (Observation, header); WireError on anything malformed."""
    header, off = _header(frame)
    try:
        arrays = _arrays(frame, header.get("arrays"), off)
        stamps = header.get("image_stamp_s", {})
        info = header.get("info", {})
        if not isinstance(stamps, dict) or not isinstance(info, dict) or not isinstance(header.get("link", {}), dict):
            raise WireError("observation header: image_stamp_s, info and link must be objects")
        obs = Observation(arrays, _finite(header.get("stamp_s"), "stamp_s"),
                          {str(k): _finite(v, "image stamp") for k, v in stamps.items()},
                          _int(header.get("seq", 0), "seq"), dict(info))  # fmt: skip
        for k in ("episode", "boot"):
            _int(header.get(k), k)
    except WireError:
        raise
    except (TypeError, ValueError, OverflowError) as e:  # numpy's own complaints about sizes / shapes
        raise WireError(f"observation arrays do not decode: {e}") from None
    return obs, header


def encode_cmd(kind: int, episode: int, session: int, seq: int, stamp_s: float, action: np.ndarray) -> bytes:
    """One command as a single frame."""
    return _CMD_HEAD.pack(kind, episode, session, seq, stamp_s) + np.asarray(action, dtype=np.float32).tobytes()


def decode_cmd(frame: bytes) -> tuple[int, int, int, int, float, np.ndarray]:
    """Inverse of encode_cmd: (kind, episode, session, seq, stamp_s, action); WireError on anything malformed."""
    n = len(frame) - _CMD_HEAD.size
    if n <= 0 or n % 4 or n // 4 > MAX_ACTION_DIM:
        raise WireError(f"command of {len(frame)} bytes: expected {_CMD_HEAD.size} + 4 per action value")
    kind, episode, session, seq, stamp_s = _CMD_HEAD.unpack_from(frame, 0)
    if kind not in (CMD_ACTION, CMD_HOLD):
        raise WireError(f"command kind {kind} is neither action nor hold")
    action = np.frombuffer(frame, dtype=np.float32, offset=_CMD_HEAD.size).copy()
    return kind, episode, session, seq, stamp_s, action


def decode_ctl(frames: list[bytes]) -> dict:
    """A control request: one frame, UTF-8 JSON object with a known 'cmd' and well-typed fields; else WireError."""
    if len(frames) != 1:
        raise WireError(f"control request has {len(frames)} frames; expected 1")
    try:
        msg = json.loads(frames[0].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise WireError(f"control request is not UTF-8 JSON: {str(e)[:80]}") from None
    if not isinstance(msg, dict) or msg.get("cmd") not in CTL_REQUESTS:
        raise WireError(f"control request must be an object with cmd in {CTL_REQUESTS}")
    seed = msg.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63):
        raise WireError(f"reset seed must be a non-negative integer or null, got {str(seed)[:40]!r}")
    if "session" in msg:
        _int(msg["session"], "session")
    return msg
