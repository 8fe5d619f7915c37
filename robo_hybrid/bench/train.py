"""`robo-hybrid bench train`: samples/s of the BC gradient step, the configured default against the original one.

Both trainers are built in one process on the same demos and timed in alternating rounds (so background load hits
both alike); every step is timed on its own (batch drawing, augmentation, forward, backward, optimizer: the whole of
`BCTrainer.train_step`). A stall is a step slower than twice the median step of its configuration.

'original' is the configuration before the faster default: the 3x3 stride-2 conv stem (6 x 6 tokens) at batch 64,
run through the code of that time: the CoordConv channels concatenated to the batch in NCHW, the random shift
drawn by torchvision per sample on float images (`_use_original_code` swaps those two methods in, on that trainer's
own modules only) and AdamW's per-tensor loop instead of the fused kernel (`_use_original_optimizer`).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, replace
from types import MethodType

import numpy as np
import torch
from torchvision.transforms import v2

from robo_hybrid.envs.common import EnvConfig
from robo_hybrid.policy import PolicyConfig
from robo_hybrid.policy.tokenizer import ConvStem, ObservationTokenizer, image_to_float
from robo_hybrid.training.config import BCConfig

ORIGINAL_POLICY = {"image_encoder": "conv", "conv_channels": [16, 32, 64]}
ORIGINAL_BATCH = 64
STALL_FACTOR = 2.0  # a step slower than this many medians is a stall


@dataclass
class TrainBenchResult:
    """Per-step figures of one configuration."""

    name: str
    batch_size: int
    tokens: int
    samples_per_s_median: float
    samples_per_s_p10: float
    samples_per_s_min: float
    step_ms_median: float
    stalls: int
    steps: int


def _original_stem_forward(self: ConvStem, x: torch.Tensor) -> torch.Tensor:
    """The stem's forward before channels-last: (N, 3, H, W) -> cat the coordinate channels (NCHW) -> convs."""
    x = x - 0.5
    if self.coord_channels:
        x = torch.cat([x, self.coords.expand(x.shape[0], -1, -1, -1)], dim=1)  # (N, 5, H, W)
    return self.net(x)


def _original_image_tokens(self: ObservationTokenizer, obs, B: int) -> list[torch.Tensor]:
    """The image tokens before the batched uint8 shift: torchvision RandomCrop per sample on float images."""
    K, D, n = self.cfg.history, self.cfg.d_model, self.image_size
    crop = v2.RandomCrop(n, padding=self.cfg.shift_pad_px, padding_mode="edge") if self.cfg.shift_pad_px else None
    steps = []
    for i, key in enumerate(self.image_keys):
        x = image_to_float(obs[key].reshape(B * K, n, n, 3))  # (B*K, 3, H, W)
        if self.training and crop is not None:
            x = torch.stack([crop(s) for s in x.view(B, K, 3, n, n).unbind(0)]).view(B * K, 3, n, n)  # (B*K, 3, H, W)
        f = self.stems[key](x).flatten(2).transpose(1, 2)  # (B*K, G, D)
        f = f + self.pos_emb + self.cam_emb[i]  # (B*K, G, D)
        steps.append(f.view(B, K, -1, D))  # (B, K, G, D)
    return steps


def _use_original_code(tokenizer: ObservationTokenizer) -> None:
    """Swap the original stem forward and image-token path into this tokenizer's own modules (nothing global)."""
    tokenizer._image_tokens = MethodType(_original_image_tokens, tokenizer)  # type: ignore[method-assign]
    for stem in tokenizer.stems.values():
        if isinstance(stem, ConvStem):
            stem.forward = MethodType(_original_stem_forward, stem)  # type: ignore[method-assign]


def _use_original_optimizer(trainer) -> None:
    """Rebuild the trainer's AdamW (same groups and settings) with the per-tensor loop instead of the fused kernel."""
    groups = [{k: v for k, v in g.items() if k != "fused"} for g in trainer.optimizer.param_groups]
    trainer.optimizer = torch.optim.AdamW(groups, fused=False, foreach=False)


def _demos(data: str, image_size: int):
    """The demo file when it exists, else synthetic demos at `image_size` (throughput does not depend on content)."""
    from pathlib import Path  # noqa: PLC0415

    from robo_hybrid.training.data import load_demo_file, make_synthetic_demos  # noqa: PLC0415

    if data and Path(data).exists():
        return load_demo_file(data, only_success=True)
    return make_synthetic_demos(n_episodes=20, steps=40, image_size=image_size)


def bench_train(bc: BCConfig, policy: PolicyConfig, env: EnvConfig, data: str = "", steps: int = 100,
                warmup: int = 10, rounds: int = 5, verbose: bool = True) -> dict[str, TrainBenchResult]:
    """Time `steps` BC steps of the original and the given configuration (in `rounds` alternating blocks)."""
    from robo_hybrid.training.bc import BCTrainer  # noqa: PLC0415

    demos = _demos(data, env.image_size)
    env = EnvConfig(**{**env.__dict__, "image_size": demos.spec.obs(demos.spec.image_keys[0]).shape[0]})
    quiet = replace(bc, progress=False, val_fraction=0.0, steps=max(bc.steps, warmup + steps + 1))
    configs = {"original": (replace(quiet, batch_size=ORIGINAL_BATCH), replace(policy, **ORIGINAL_POLICY)),
               "default": (quiet, policy)}
    times: dict[str, list[float]] = {k: [] for k in configs}
    with tempfile.TemporaryDirectory(prefix="rh_bench_train_") as tmp:
        trainers = {}
        for name, (b, p) in configs.items():
            trainers[name] = BCTrainer(b, p, demos.task, env, f"{tmp}/{name}", demos=demos)
            if name == "original":
                _use_original_code(trainers[name].policy.tokenizer)
                _use_original_optimizer(trainers[name])
            for _ in range(warmup):
                trainers[name].train_step()
        per_round = max(1, steps // rounds)
        for _ in range(rounds):
            for name, tr in trainers.items():
                for _ in range(per_round):
                    t0 = time.perf_counter()
                    tr.train_step()
                    times[name].append(time.perf_counter() - t0)
        out = {name: _summary(name, configs[name][0].batch_size, trainers[name].policy.num_tokens, times[name])
               for name in configs}
        for tr in trainers.values():
            tr.close()
    if verbose:
        print(format_train_bench(out))
    return out


def _summary(name: str, batch: int, tokens: int, times: list[float]) -> TrainBenchResult:
    t = np.asarray(times)
    med = float(np.median(t))
    return TrainBenchResult(name, batch, tokens, batch / med, batch / float(np.percentile(t, 90)), batch / t.max(),
                            med * 1e3, int((t > STALL_FACTOR * med).sum()), len(t))


def format_train_bench(r: dict[str, TrainBenchResult]) -> str:
    """The table and the ratio of median samples/s (default / original)."""
    lines = [f"{'config':<10}{'batch':>6}{'tokens':>7}{'samples/s med':>15}{'p10':>8}{'min':>8}{'step ms':>9}"
             f"{'stalls':>8}  (torch threads: {torch.get_num_threads()})"]
    for x in r.values():
        lines.append(f"{x.name:<10}{x.batch_size:>6}{x.tokens:>7}{x.samples_per_s_median:>15.0f}"
                     f"{x.samples_per_s_p10:>8.0f}{x.samples_per_s_min:>8.0f}{x.step_ms_median:>9.1f}"
                     f"{x.stalls:>5}/{x.steps}")
    ratio = r["default"].samples_per_s_median / r["original"].samples_per_s_median
    lines.append(f"default vs original: {ratio:.2f}x median samples/s (stall: a step > {STALL_FACTOR:g}x its median)")
    return "\n".join(lines)
