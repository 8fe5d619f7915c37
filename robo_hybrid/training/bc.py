"""Behaviour cloning: fit the multimodal policy to scripted demos.

Loss (per sample, in normalized action units a_n = (a - mu_a) / sigma_a):
  mse_nll (default): ||mean - a_n||^2 / A  +  NLL(a_n | stopgrad(mean), std(stopgrad(features))) / A
      the mean (and the trunk) are fit by plain regression; the log-std head learns the residual spread on
      frozen features, so nothing is re-weighted by 1/std^2 (plain NLL is spiky and slow on precise demo dims)
  nll: NLL(a_n | mean, std) / A, with NLL = sum_i 0.5 ((a_i - m_i) / s_i)^2 + log s_i + 0.5 log(2 pi)
  + chunk_loss_weight * masked L1 over the H chunk actions when the policy has a chunk head (ACT)
  + aux_state_weight * MSE of the aux head's prediction of the normalized privileged state (a target only).
Optimiser: AdamW (decay on matrices and embeddings only), linear warm-up then cosine decay, global-norm
gradient clipping. Logs: tqdm, TensorBoard, metrics.jsonl, loss.png / success.png; checkpoints via
robo_hybrid.training.checkpoint (resume=true continues from the last one, RNG states included).
Under torchrun (robo_hybrid.training.distributed) every rank draws the same global batch of algo.batch_size samples and
trains on its slice; DDP averages the gradients, logged metrics are global means, and only rank 0 writes
(logs, checkpoints, evaluation).
"""

from __future__ import annotations

import base64
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robo_hybrid.envs.common import EnvConfig
from robo_hybrid.fileio import atomic_write_text
from robo_hybrid.policy import AUX_TARGET_KEY, MultimodalPolicy, PolicyConfig, policy_summary
from robo_hybrid.training import checkpoint as ckpt
from robo_hybrid.training import distributed as ddp
from robo_hybrid.training.config import BCConfig
from robo_hybrid.training.data import DemoDataset, load_demo_file, split_episodes
from robo_hybrid.training.runlog import RunLog

log = logging.getLogger(__name__)
EvalFn = Callable[[MultimodalPolicy, int], dict[str, float]]
"""Evaluation hook: (policy in eval mode, step) -> metrics such as {'success_rate': 0.9}."""
ENV_KEYS_THAT_CHANGE_THE_SPEC = ("image_size", "camera", "wrist_camera", "control_rate_hz")


# ------------------------------------------------------------------------------------------------ maths
def lr_at(step: int, cfg: BCConfig) -> float:
    """Linear warm-up to cfg.learning_rate, then cosine decay to cfg.learning_rate * min_lr_ratio at cfg.steps."""
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    min_lr = cfg.learning_rate * cfg.min_lr_ratio
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.learning_rate - min_lr)


def gaussian_nll(mean: torch.Tensor, log_std: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of `target` under N(mean, exp(log_std)^2), summed over the last axis -> (B,)."""
    z = (target - mean) * torch.exp(-log_std)
    return (0.5 * z.pow(2) + log_std + 0.5 * math.log(2 * math.pi)).sum(-1)


def bc_loss(
    policy: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    loss_type: str = "mse_nll",
    chunk_weight: float = 1.0,
    aux_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """BC loss of one batch (see the module docstring) and its parts as floats.

    `policy` is a MultimodalPolicy or a DistributedDataParallel around one: all outputs come from one forward
    call through it, so that DDP's gradient all-reduce sees every parameter that was used."""
    inner: MultimodalPolicy = getattr(policy, "module", policy)  # type: ignore[assignment]
    use_aux = aux_weight > 0 and inner.aux_state_head is not None and AUX_TARGET_KEY in batch
    # mse_nll: the std head reads stop-gradient features, as its 1/std^2-scaled gradients would otherwise shake
    # the trunk whenever the mean is already close and the std small (that made BC spiky in tests)
    out = policy(batch, detach_std=loss_type != "nll", aux=use_aux)
    # under autocast the heads may come out in bf16 / fp16: the losses are computed in fp32
    out = out._replace(**{f: v.float() for f, v in zip(out._fields, out, strict=True) if torch.is_tensor(v)})
    target = inner.normalize_action(batch["action"])  # (B, A)
    A = target.shape[-1]
    mse = (out.mean - target).pow(2).mean()
    if loss_type == "nll":
        nll = gaussian_nll(out.mean, out.log_std, target).mean() / A
        loss = nll
    else:
        nll = gaussian_nll(out.mean.detach(), out.log_std, target).mean() / A
        loss = mse + nll
    metrics = {"mse": mse.item(), "nll": nll.item(), "std": out.log_std.exp().mean().item()}
    if out.chunk is not None:
        chunk_target = inner.normalize_action(batch["action_chunk"])  # (B, H, A)
        mask = batch["chunk_mask"].to(out.chunk.dtype)[..., None]  # (B, H, 1)
        l1 = ((out.chunk - chunk_target).abs() * mask).sum() / (mask.sum() * A).clamp_min(1.0)
        loss = loss + chunk_weight * l1
        metrics["chunk_l1"] = l1.item()
    if out.aux is not None:
        aux = inner.aux_state_loss(out.aux, batch[AUX_TARGET_KEY])
        loss = loss + aux_weight * aux
        metrics["aux_state_mse"] = aux.item()
    metrics["loss"] = loss.item()
    return loss, metrics


def make_optimizer(policy: torch.nn.Module, cfg: BCConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on >= 2-D parameters (matrices, conv kernels, embeddings) only (nanoGPT)."""
    params = [p for p in policy.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # fused: one kernel over all ~50 small tensors instead of ~10 ops each per step (CPU and CUDA; the per-tensor
    # loop was a tenth of a BC step on CPU)
    fused = all(p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.betas[0], cfg.betas[1]), fused=fused)


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for algo.amp on `device`: None (fp32) on CPU or with 'off'; bf16 / fp16 on CUDA."""
    if device.type != "cuda" or mode == "off":
        return None
    if mode == "bf16" or (mode == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.numpy().tobytes()).decode()


def _unb64(s: str) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(base64.b64decode(s), dtype=np.uint8).copy())


# ------------------------------------------------------------------------------------------------ training
@dataclass
class BCResult:
    """What train_bc returns."""

    policy: MultimodalPolicy
    run_dir: Path
    checkpoint_dir: Path
    step: int
    train: dict[str, float] = field(default_factory=dict)
    val: dict[str, float] = field(default_factory=dict)
    eval: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


class BCTrainer:
    """Holds the datasets, policy, optimizer and logs of one BC run; `run()` trains to cfg.algo.steps."""

    def __init__(self, cfg: BCConfig, policy_cfg: PolicyConfig, task: str, env_cfg: EnvConfig, run_dir: str | Path,
                 *, data: str = "", demos: Any = None, seed: int = 0, resume: bool = False, device: str = "cpu",
                 config_yaml: str | Callable[[PolicyConfig], str] = "", eval_fn: EvalFn | None = None) -> None:
        """`demos` (in memory) or `data` (a demo file); `config_yaml` is stored in run_dir, or a function of the
        policy config that is really trained (a resumed run keeps its checkpoint's architecture)."""
        self.bc, self.eval_fn, self.task, self.env_cfg = cfg, eval_fn, task, env_cfg
        self.data, self.seed, self.resume = data, seed, resume
        self.dist = ddp.init_distributed(device)
        self.device = ddp.device_for(device, self.dist)
        self.run_dir = Path(run_dir)
        self.ckpt_root = self.run_dir / "checkpoints"
        resume_dir = self._resume_dir()
        torch.manual_seed(seed)
        demos = demos if demos is not None else load_demo_file(data, only_success=self.bc.only_successful)
        self._check_demos(demos)
        if resume_dir is not None:
            self.policy = ckpt.policy_from_file(resume_dir / ckpt.MODEL_FILE, self.device)
            if self.policy.cfg != policy_cfg:
                log.warning("resume: using the checkpoint's policy config, not the one given now")
        else:
            self.policy = MultimodalPolicy(policy_cfg, demos.spec).to(self.device)
        self._build_datasets(demos)
        if resume_dir is None:
            self.policy.fit_normalizers(self.train_set.stats())
        self.optimizer = make_optimizer(self.policy, self.bc)
        self.amp_dtype = amp_dtype(self.bc.amp, self.device)
        # fp16 needs loss scaling (its exponent range underflows small gradients); bf16 and fp32 do not, and a
        # disabled scaler passes the loss and the optimizer step straight through
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.pin = self.device.type == "cuda"  # page-locked host batches: asynchronous host -> GPU copies
        self.sampler = torch.Generator().manual_seed(seed)  # same stream on every rank: one global batch
        self.step, self.best_success = 0, -1.0
        if resume_dir is not None:
            self._restore(resume_dir)
        self.model = ddp.wrap(self.policy, self.dist)  # the policy itself when not distributed
        # config.yaml describes the weights really trained (a resumed run keeps its checkpoint's architecture)
        self.config_yaml = config_yaml(self.policy.cfg) if callable(config_yaml) else config_yaml
        self.log: RunLog | None = None  # rank 0 only
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if self.config_yaml:
                atomic_write_text(self.run_dir / ckpt.CONFIG_FILE, self.config_yaml)
            atomic_write_text(self.run_dir / ckpt.SPEC_FILE, self.policy.spec.to_json())
            self.log = RunLog(self.run_dir, self.step)
        self.last: dict[str, dict[str, float]] = {"train": {}, "val": {}, "eval": {}}
        self.saved: tuple[int, Path] | None = None  # (step, dir) of the last checkpoint this process wrote

    def _resume_dir(self) -> Path | None:
        found = ckpt.find_checkpoint(self.ckpt_root) if self.ckpt_root.is_dir() else None
        if found is not None and not self.resume:
            raise FileExistsError(
                f"{self.run_dir} already holds checkpoints; pass resume=true to continue it, or set run_dir=<new dir>"
            )
        if found is None and self.resume:
            print(f"[train] resume=true but {self.ckpt_root} has no checkpoint: starting from step 0", flush=True)
        return found

    def _check_demos(self, demos: Any) -> None:
        source = self.data or "the demos"
        if demos.task != self.task:
            raise ValueError(f"{source} holds '{demos.task}' demos but task={self.task}; "
                             "pass the matching data=<file> or task=<name>")
        want = asdict(self.env_cfg)
        diff = [f"{k}: file {demos.env_config.get(k)!r}, config {want[k]!r}"
                for k in ENV_KEYS_THAT_CHANGE_THE_SPEC if demos.env_config.get(k, want[k]) != want[k]]
        if diff:
            raise ValueError(f"{source} was collected with other env settings ({'; '.join(diff)}); "
                             "set task.env.<key> to match or collect new demos")

    def _build_datasets(self, demos: Any) -> None:
        pc = self.policy.cfg
        train_idx, val_idx = split_episodes(len(demos.episodes), self.bc.val_fraction, self.seed)
        keys, priv = self.policy.spec.policy_keys, self.policy.spec.privileged_keys
        has_aux = all(k in demos.episodes[0].obs for k in priv)
        aux = priv if (self.policy.aux_state_head is not None and self.bc.aux_state_weight > 0 and has_aux) else ()

        def dataset(idx: np.ndarray) -> DemoDataset:
            return DemoDataset([demos.episodes[i] for i in idx], keys, pc.history, pc.chunk_size, aux_keys=aux)

        self.train_set = dataset(train_idx)
        self.val_set = dataset(val_idx) if len(val_idx) else None
        log.info("BC data: %d train samples (%d episodes), %d val episodes",
                 len(self.train_set), self.train_set.num_episodes, len(val_idx))

    # ----- checkpoint state -----
    def _trainer_state(self) -> dict:
        return {"torch_rng": _b64(torch.get_rng_state()), "sampler_rng": _b64(self.sampler.get_state()),
                "best_success": self.best_success, "seed": self.seed}

    def _restore(self, ckpt_dir: Path) -> None:
        state = ckpt.read_trainer_state(ckpt_dir)
        ckpt.load_optimizer(self.optimizer, ckpt_dir / ckpt.OPTIM_FILE)
        torch.set_rng_state(_unb64(state["torch_rng"]))
        self.sampler.set_state(_unb64(state["sampler_rng"]))
        self.step, self.best_success = int(state["step"]), float(state.get("best_success", -1.0))
        if self.dist.is_main:  # resume=true says where it continues from
            print(f"[train] resumed {ckpt_dir} at step {self.step} of {self.bc.steps}", flush=True)

    def save(self) -> Path | None:
        """Checkpoint the current step (weights, optimizer, RNG, config, spec) and refresh the curves (rank 0)."""
        if not self.dist.is_main:
            return None
        if self.saved is not None and self.saved[0] == self.step:
            return self.saved[1]
        path = ckpt.save_checkpoint(self.ckpt_root, self.step, self.policy, self.optimizer, self.config_yaml,
                                    self._trainer_state(), keep_last=self.bc.keep_last)
        self.saved = (self.step, path)
        if self.log is not None:
            self.log.plot()
        return path

    def _log(self, kind: str, metrics: dict[str, float]) -> None:
        if self.log is not None:
            self.log.add(kind, self.step, metrics)

    # ----- loop -----
    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not self.pin:
            return {k: v.to(self.device) for k, v in batch.items()}
        return {k: v.pin_memory().to(self.device, non_blocking=True) for k, v in batch.items()}

    def train_step(self) -> dict[str, float]:
        """One gradient step on a fresh batch."""
        for g in self.optimizer.param_groups:
            g["lr"] = lr_at(self.step, self.bc)
        idx = torch.randint(len(self.train_set), (self.bc.batch_size,), generator=self.sampler).numpy()
        idx = idx[ddp.rank_slice(len(idx), self.dist)]  # this rank's part of the global batch
        batch = self._to_device(self.train_set.get_batch(idx))
        self.model.train()
        amp = self.amp_dtype is not None
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=amp):
            loss, metrics = bc_loss(self.model, batch, self.bc.loss, self.bc.chunk_loss_weight,
                                    self.bc.aux_state_weight)
        self.optimizer.zero_grad(set_to_none=True)
        clip = self.bc.max_grad_norm if self.bc.max_grad_norm > 0 else float("inf")
        self.scaler.scale(loss).backward()  # DDP: gradients averaged over ranks here
        self.scaler.unscale_(self.optimizer)  # clip the true gradients
        metrics["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.policy.parameters(), clip, foreach=True))
        self.scaler.step(self.optimizer)  # skipped when fp16 gradients overflowed
        self.scaler.update()
        self.step += 1
        metrics = {k: ddp.all_mean(v, self.dist) for k, v in metrics.items()}  # global-batch means
        metrics["lr"] = self.optimizer.param_groups[0]["lr"]
        return metrics

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean loss parts over (at most val_max_samples evenly spaced) held-out samples, eval mode."""
        assert self.val_set is not None
        n = len(self.val_set)
        idx = np.linspace(0, n - 1, min(n, self.bc.val_max_samples)).round().astype(np.int64)
        self.policy.eval()
        sums: dict[str, float] = {}
        for chunk in np.array_split(idx, max(1, len(idx) // (4 * self.bc.batch_size))):
            batch = self._to_device(self.val_set.get_batch(chunk))
            _, m = bc_loss(self.policy, batch, self.bc.loss, self.bc.chunk_loss_weight, self.bc.aux_state_weight)
            for k, v in m.items():
                sums[k] = sums.get(k, 0.0) + v * len(chunk)
        return {k: v / len(idx) for k, v in sums.items()}

    def evaluate(self) -> dict[str, float]:
        """Run the hook (own RNG stream, so evaluating never changes the training trajectory); keep the best."""
        assert self.eval_fn is not None
        self.policy.eval()
        with torch.random.fork_rng(devices=[]):
            metrics = dict(self.eval_fn(self.policy, self.step))
        self._log("eval", metrics)
        success = metrics.get("success_rate")
        if success is not None and success > self.best_success:
            self.best_success = float(success)
            path = self.save()
            if path is not None:
                ckpt.write_pointer(self.ckpt_root, "best", self.step, path.name, success_rate=self.best_success)
        return metrics

    def _due(self, every: int) -> bool:
        return every > 0 and self.step % every == 0

    def run(self) -> BCResult:
        """Train from the current step to cfg.algo.steps; checkpoint, validate, evaluate on schedule."""
        from tqdm import tqdm

        main = self.dist.is_main  # the other ranks only train
        bar = tqdm(total=self.bc.steps, initial=self.step, desc="bc", disable=not (self.bc.progress and main))
        train_s, samples = 0.0, 0  # gradient-step time only (validation, evaluation, checkpoints excluded)
        sums: dict[str, float] = {}  # train metrics summed since the last log line (logged as interval means)
        try:
            while self.step < self.bc.steps:
                t0 = time.perf_counter()
                step_metrics = self.train_step()
                train_s, samples = train_s + time.perf_counter() - t0, samples + self.bc.batch_size
                for k, v in step_metrics.items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.update(1)
                if self._due(self.bc.log_every) or self.step == self.bc.steps:
                    n = samples // self.bc.batch_size
                    metrics = {k: v / n for k, v in sums.items()}
                    metrics["lr"] = step_metrics["lr"]
                    metrics["samples_per_s"] = samples / max(train_s, 1e-9)
                    train_s, samples, sums = 0.0, 0, {}
                    self._log("train", metrics)
                    self.last["train"] = metrics
                    bar.set_postfix(loss=f"{metrics['loss']:.4f}", mse=f"{metrics['mse']:.4f}",
                                    sps=f"{metrics['samples_per_s']:.0f}")
                if main and self.val_set is not None and (self._due(self.bc.val_every) or self.step == self.bc.steps):
                    self.last["val"] = self.validate()
                    self._log("val", self.last["val"])
                if main and self.eval_fn is not None and (self._due(self.bc.eval_every) or self.step == self.bc.steps):
                    self.last["eval"] = self.evaluate()
                if self._due(self.bc.checkpoint_every) or self.step == self.bc.steps:
                    self.save()
        finally:
            bar.close()
            if self.log is not None:
                self.log.close()
        final = self.save()  # a no-op when the last step was just saved (None on ranks > 0)
        ddp.barrier(self.dist)  # the checkpoint is complete before any rank returns
        self.policy.eval()
        return BCResult(self.policy, self.run_dir, final or self.ckpt_root, self.step, self.last["train"],
                        self.last["val"], self.last["eval"], policy_summary(self.policy))

    def close(self) -> None:
        """Close the logs and leave the process group (torchrun); safe to call twice."""
        if self.log is not None:
            self.log.close()
        ddp.shutdown(self.dist)
