"""Regenerate the golden regression artifact of policy outputs: `python tests/policy/make_golden.py`.

Writes tests/policy/golden/policy.safetensors (a seeded tiny policy in the checkpoint format: two cameras, history 2,
an action chunk, fitted normalizers) and tests/policy/golden/io.safetensors (recorded raw observations and the
outputs they gave). `test_policy_model.py::test_outputs_match_the_golden_artifact` compares against both. Only
regenerate after a deliberate change of the policy's maths, initialisation or state-dict layout, and say so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from robo_hybrid.constants import HISTORY_MASK_KEY
from robo_hybrid.policy import MultimodalPolicy, PolicyConfig
from robo_hybrid.training.data import make_synthetic_demos

GOLDEN = Path(__file__).parent / "golden"
POLICY_FILE, IO_FILE = GOLDEN / "policy.safetensors", GOLDEN / "io.safetensors"
OUTPUTS = ("mean", "log_std", "chunk", "features", "action")


def build_policy() -> MultimodalPolicy:
    """The seeded golden policy (seed 0), normalizers set to fixed statistics, eval mode."""
    spec = make_synthetic_demos(1, 2, image_size=32, wrist_camera=True).spec
    cfg = PolicyConfig(d_model=32, n_layers=2, n_heads=2, conv_channels=[8, 16], history=2, chunk_size=3)
    torch.manual_seed(0)
    policy = MultimodalPolicy(cfg, spec)
    stats = {k: (np.linspace(-0.5, 0.5, d), np.linspace(0.5, 2.0, d)) for k, d in policy.tokenizer.vec_dims.items()}
    stats["action"] = (np.full(policy.action_dim, 0.1), np.full(policy.action_dim, 0.3))
    policy.fit_normalizers(stats)
    return policy.eval()


def golden_obs(policy: MultimodalPolicy) -> dict[str, torch.Tensor]:
    """Four raw observation windows (seeded) with one padded history step."""
    g = torch.Generator().manual_seed(5)
    obs: dict[str, torch.Tensor] = {}
    for t in policy.spec.observations:
        shape = (4, policy.cfg.history, *t.shape)
        if t.dtype == "uint8":
            obs[t.name] = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
        else:
            obs[t.name] = torch.randn(*shape, generator=g)
    obs[HISTORY_MASK_KEY] = torch.tensor([[True, True], [False, True], [True, True], [False, True]])
    return obs


@torch.no_grad()
def outputs(policy: MultimodalPolicy, obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The head outputs (normalized units), the readout features and the clipped action."""
    out = policy(obs)
    assert out.chunk is not None
    return {"mean": out.mean, "log_std": out.log_std, "chunk": out.chunk, "features": out.features,
            "action": policy.act(obs)}


def main() -> None:
    """Write both golden files."""
    from safetensors.torch import save_file

    from robo_hybrid.training.checkpoint import save_policy

    policy = build_policy()
    obs = golden_obs(policy)
    GOLDEN.mkdir(exist_ok=True)
    save_policy(POLICY_FILE, policy)
    tensors = {**{f"obs.{k}": v for k, v in obs.items()}, **{f"out.{k}": v for k, v in outputs(policy, obs).items()}}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(IO_FILE))
    print(f"wrote {POLICY_FILE} and {IO_FILE}")


if __name__ == "__main__":
    main()
