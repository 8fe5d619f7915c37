"""Every wire decoder raises WireError, and only WireError, on malformed bytes (bounded random fuzz)."""

from __future__ import annotations

import json
import struct
import time

import numpy as np
import pytest

from robo_hybrid.deploy.mock import MockRobot, mock_io_spec
from robo_hybrid.deploy.wire import WireError, decode_cmd, decode_ctl, decode_obs, encode_cmd, encode_obs

RNG = np.random.default_rng(1)


def _good_obs() -> bytes:
    r = MockRobot(mock_io_spec(image_size=8))
    r.connect()
    return encode_obs(r.read(), 0, 1, time.monotonic(), {"refused": 0})


def test_round_trips():
    obs, header = decode_obs(_good_obs())
    assert obs.arrays["image"].shape == (8, 8, 3) and header["link"] == {"refused": 0}
    cmd = encode_cmd(0, 2, 3, 4, 5.0, np.ones(4, np.float32))
    assert decode_cmd(cmd)[:5] == (0, 2, 3, 4, 5.0)
    assert decode_ctl([b'{"cmd": "reset", "seed": 3}'])["seed"] == 3


@pytest.mark.parametrize("decoder", ["obs", "cmd", "ctl"])
def test_fuzz_only_wire_errors(decoder):
    good = {"obs": _good_obs(), "cmd": encode_cmd(0, 0, 1, 1, 0.0, np.ones(4, np.float32)),
            "ctl": b'{"cmd": "hello"}'}[decoder]  # fmt: skip
    cases = [RNG.bytes(int(n)) for n in RNG.integers(0, 300, 300)]
    cases += [good[:i] for i in range(0, len(good), max(len(good) // 50, 1))]  # truncations
    flipped = [bytearray(good) for _ in range(200)]
    for b in flipped:
        b[int(RNG.integers(len(b)))] ^= 0xFF
    cases += [bytes(b) for b in flipped]
    fn = {"obs": decode_obs, "cmd": decode_cmd, "ctl": lambda f: decode_ctl([f])}[decoder]
    for frame in cases:
        try:
            fn(frame)
        except WireError:
            pass


def test_lying_and_object_headers_are_wire_errors():
    h = json.dumps({"arrays": [["p", "object", [4]]], "stamp_s": 1.0, "episode": 0, "boot": 1}).encode()
    with pytest.raises(WireError, match="plain dtype"):
        decode_obs(struct.pack("<I", len(h)) + h + bytes(32))
    with pytest.raises(WireError, match="claims"):
        decode_obs(struct.pack("<I", 10**9) + h)
    for bad in ([b"{}", b"{}"], [b'{"cmd": "reset", "seed": "abc"}'], [b"\xff"], [b'{"cmd": "rm -rf"}']):
        with pytest.raises(WireError):
            decode_ctl(bad)
