"""Wire format between the ZeroMQ sim server and its client (single-frame messages, so SUB can CONFLATE).

Observation: u32 header length | JSON header | raw array bytes in header order.
Command:     struct "<BIqd" (kind, episode, seq, stamp_s) | float32 action bytes.
All stamps are time.monotonic() seconds of the sender's machine (CLOCK_MONOTONIC, shared on one host).
"""

from __future__ import annotations

import json
import struct

import numpy as np

from .robot import Observation

CMD_ACTION, CMD_HOLD = 0, 1
_CMD_HEAD = struct.Struct("<BIqd")
_LEN = struct.Struct("<I")


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


def encode_obs(obs: Observation, episode: int, boot: int, sent_s: float) -> bytes:
    """One observation as a single frame."""
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
    }
    h = json.dumps(header).encode()
    return b"".join([_LEN.pack(len(h)), h, *(v.tobytes() for _, v in arrays)])


def decode_obs(frame: bytes) -> tuple[Observation, dict]:
    """Inverse of encode_obs: (Observation, header)."""
    (n,) = _LEN.unpack_from(frame, 0)
    header = json.loads(frame[_LEN.size : _LEN.size + n])
    off = _LEN.size + n
    arrays = {}
    for key, dtype, shape in header["arrays"]:
        dt = np.dtype(dtype)
        count = int(np.prod(shape)) if shape else 1
        arrays[key] = np.frombuffer(frame, dtype=dt, count=count, offset=off).reshape(shape).copy()
        off += count * dt.itemsize
    obs = Observation(arrays, float(header["stamp_s"]), {k: float(v) for k, v in header["image_stamp_s"].items()},
                      int(header["seq"]), dict(header["info"]))  # fmt: skip
    return obs, header


def encode_cmd(kind: int, episode: int, seq: int, stamp_s: float, action: np.ndarray) -> bytes:
    """One command as a single frame."""
    return _CMD_HEAD.pack(kind, episode, seq, stamp_s) + np.asarray(action, dtype=np.float32).tobytes()


def decode_cmd(frame: bytes) -> tuple[int, int, int, float, np.ndarray]:
    """Inverse of encode_cmd: (kind, episode, seq, stamp_s, action)."""
    kind, episode, seq, stamp_s = _CMD_HEAD.unpack_from(frame, 0)
    action = np.frombuffer(frame, dtype=np.float32, offset=_CMD_HEAD.size).copy()
    return kind, episode, seq, stamp_s, action
