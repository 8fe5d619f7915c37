"""envs/randomize.py: domain randomization changes the scene, is off by default, and samples latency in range."""

from __future__ import annotations

import numpy as np

from robo_hybrid.envs import RandomizationConfig, make_env
from robo_hybrid.envs.randomize import Randomizer


def test_randomization_changes_the_scene_and_is_off_by_default():
    plain = make_env("push", image_size=32)
    rnd = make_env("push", image_size=32, randomization=RandomizationConfig(enabled=True))
    try:
        a, _ = plain.reset(seed=0)
        b, _ = plain.reset(seed=0)
        np.testing.assert_array_equal(a["image"], b["image"])
        c, _ = rnd.reset(seed=0)
        d, _ = rnd.reset(seed=1)
        m = rnd.unwrapped.model
        assert not np.array_equal(c["image"], a["image"])
        assert m.body_mass[-1] != plain.unwrapped.model.body_mass[-1] or not np.array_equal(c["image"], d["image"])
    finally:
        plain.close()
        rnd.close()


def test_nominal_values_come_back_and_latency_is_in_range():
    env = make_env("push", render=False)
    model = env.unwrapped.model
    nominal_mass, nominal_cam = model.body_mass.copy(), model.cam_pos.copy()
    rng = np.random.default_rng(0)
    on = Randomizer(model, RandomizationConfig(enabled=True, action_latency_steps=(1, 3)))
    on.apply(rng)
    assert not np.array_equal(model.body_mass, nominal_mass) and not np.array_equal(model.cam_pos, nominal_cam)
    assert {on.sample_latency(rng) for _ in range(50)} == {1, 2, 3}
    on.cfg = RandomizationConfig(enabled=False)  # switched off: the next reset restores the nominal scene
    on.apply(rng)
    np.testing.assert_array_equal(model.body_mass, nominal_mass)
    np.testing.assert_array_equal(model.cam_pos, nominal_cam)
    assert on.sample_latency(rng) == 0
    env.close()
