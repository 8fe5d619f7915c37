"""`robo-hybrid bench train`: both configurations timed in one process, the original through the original code."""

from __future__ import annotations

import torch

import robo_hybrid.policy  # noqa: F401  (torch before any MuJoCo GL context)
from robo_hybrid.bench.train import ORIGINAL_BATCH, _use_original_code, bench_train, format_train_bench
from robo_hybrid.envs.common import EnvConfig
from robo_hybrid.policy import MultimodalPolicy, PolicyConfig
from robo_hybrid.training.config import BCConfig
from robo_hybrid.training.data import make_synthetic_demos


def _tiny(**kw) -> PolicyConfig:
    return PolicyConfig(**{"d_model": 16, "n_layers": 1, "n_heads": 2, "conv_channels": [8, 16], **kw})


def test_bench_times_the_original_and_the_default(capsys):
    out = bench_train(BCConfig(batch_size=8), _tiny(), EnvConfig(image_size=32), steps=4, warmup=1, rounds=2)
    assert set(out) == {"original", "default"}
    assert out["original"].batch_size == ORIGINAL_BATCH and out["default"].batch_size == 8
    # 32 px: the original stride-2 stem with three hidden layers gives 2 x 2 tokens, the patch stem with two 3 x 3;
    # both add the readout and the two vector tokens
    assert (out["original"].tokens, out["default"].tokens) == (1 + 4 + 2, 1 + 9 + 2)
    assert all(r.steps == 4 and r.samples_per_s_median > 0 for r in out.values())
    printed = capsys.readouterr().out
    assert "default vs original" in printed and printed.strip().endswith(format_train_bench(out).splitlines()[-1])


def test_original_code_computes_the_same_policy_and_touches_only_its_own_modules():
    spec = make_synthetic_demos(1, 2, image_size=32).spec
    torch.manual_seed(0)
    policy = MultimodalPolicy(_tiny(image_encoder="conv"), spec).eval()
    other = MultimodalPolicy(_tiny(image_encoder="conv"), spec).eval()
    g = torch.Generator().manual_seed(0)
    obs = {"image": torch.randint(0, 256, (3, 32, 32, 3), generator=g, dtype=torch.uint8),
           "proprio": torch.randn(3, 18, generator=g), "goal": torch.randn(3, 3, generator=g)}
    with torch.no_grad():
        ref = policy(obs).mean
        _use_original_code(policy.tokenizer)
        torch.testing.assert_close(policy(obs).mean, ref, rtol=1e-5, atol=1e-5)
    assert "_image_tokens" in vars(policy.tokenizer) and "_image_tokens" not in vars(other.tokenizer)
    policy.train()
    torch.manual_seed(1)
    shifted = policy(obs).mean  # the original per-sample torchvision shift runs in training mode
    assert not torch.allclose(shifted, ref)


def test_original_optimizer_keeps_the_groups_and_drops_the_fused_kernel():
    from robo_hybrid.bench.train import _use_original_optimizer
    from robo_hybrid.training.bc import make_optimizer

    policy = MultimodalPolicy(_tiny(), make_synthetic_demos(1, 2, image_size=32).spec)
    trainer = type("T", (), {})()
    trainer.optimizer = make_optimizer(policy, BCConfig(weight_decay=0.1))
    assert all(g["fused"] for g in trainer.optimizer.param_groups)
    _use_original_optimizer(trainer)
    groups = trainer.optimizer.param_groups
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0] and not any(g["fused"] for g in groups)
    assert sum(len(g["params"]) for g in groups) == len(list(policy.parameters()))
