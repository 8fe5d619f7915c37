"""ObservationTokenizer: token layout and sizes, history windows and masks, the keys it reads, and its stems."""

from __future__ import annotations

import pytest
import torch
from policy_testlib import random_obs, tiny_cfg

from robo_hybrid.constants import HISTORY_MASK_KEY
from robo_hybrid.policy import MultimodalPolicy, Normalizer, ObservationTokenizer, TokenizerConfig
from robo_hybrid.policy.tokenizer import ConvStem, ResNetStem, VectorTokenizer, stem_grid
from robo_hybrid.rl.config import CriticConfig, RewardModelConfig
from robo_hybrid.rl.critic import TransformerCritic
from robo_hybrid.rl.reward_model import RewardModel


def _tokenizer(spec, image_keys=("image",), vector_keys=("proprio", "goal"), parts=None, **kw):
    torch.manual_seed(0)
    cfg = TokenizerConfig(d_model=16, conv_channels=[8, 16], **kw)
    tok = ObservationTokenizer(cfg, spec, image_keys, vector_keys, lambda d: Normalizer((d,)), parts)
    tok.init_embeddings(0.02)
    return tok.eval()


class RecordingDict(dict):
    """A dict that records which keys were read."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.read: set[str] = set()

    def __getitem__(self, k):
        self.read.add(k)
        return super().__getitem__(k)

    def get(self, k, default=None):
        self.read.add(k)
        return super().get(k, default)


def test_token_layout_cameras_then_vector_parts_then_readout_first(spec32_wrist):
    tok = _tokenizer(spec32_wrist, ("image", "image_wrist"), ("proprio", "goal", "privileged"),
                     parts={"privileged": [3, 4, 3, 3]})
    assert tok.grid == (4, 4) and tok.tokens_per_step == 2 * 16 + 2 + 4 and tok.num_tokens == 1 + 38
    obs = random_obs(spec32_wrist, 3)
    x, mask = tok(obs)
    assert x.shape == (3, tok.num_tokens, 16) and mask is None
    torch.testing.assert_close(x[:, 0], tok.readout.expand(3, 1, 16)[:, 0])  # the readout token leads
    changed = dict(obs, privileged=obs["privileged"].clone())
    changed["privileged"][:, 3:7] += 1.0  # the quaternion part only: its own token moves, no other
    moved = (tok(changed)[0] - x).abs().amax(dim=(0, 2)) > 0
    assert moved.nonzero().flatten().tolist() == [1 + 32 + 2 + 1]


def test_vector_parts_must_cover_the_key(spec32):
    with pytest.raises(ValueError, match="do not sum"):
        _tokenizer(spec32, vector_keys=("privileged",), parts={"privileged": [3, 4]})


def test_reads_only_its_keys_and_the_history_mask(spec32):
    tok = _tokenizer(spec32, history=2)
    obs = RecordingDict(random_obs(spec32, 2, history=2))
    tok(obs)
    assert obs.read == {"image", "proprio", "goal", HISTORY_MASK_KEY}  # never 'privileged'


def test_history_mask_hides_padded_steps_and_time_embedding_marks_steps(spec32):
    tok = _tokenizer(spec32, history=3)
    obs = random_obs(spec32, 2, history=3)
    obs[HISTORY_MASK_KEY] = torch.tensor([[False, True, True], [True, True, True]])
    x, mask = tok(obs)
    S = tok.tokens_per_step
    assert mask is not None and mask.shape == (2, 1 + 3 * S) and bool(mask[:, 0].all())
    assert mask[0, 1:1 + S].sum() == 0 and bool(mask[0, 1 + S:].all()) and bool(mask[1].all())
    same = {k: v[:, -1:].repeat(1, 3, *([1] * (v.dim() - 2))) for k, v in obs.items() if k != HISTORY_MASK_KEY}
    y, _ = tok(same)  # identical frames: only the time embedding tells the steps apart
    assert not torch.allclose(y[:, 1:1 + S], y[:, 1 + 2 * S:])


def test_stacking_decides_time_embedding_and_mask(spec32):
    flat = _tokenizer(spec32)  # the policy at K = 1: no K axis, the (1, D) time table is not added
    obs = random_obs(spec32, 2)
    ref, mask = flat(dict(obs, **{HISTORY_MASK_KEY: torch.zeros(2, 1, dtype=torch.bool)}))
    assert mask is None  # unstacked inputs have no padding to hide
    with torch.no_grad():
        flat.time_emb.add_(1.0)  # type: ignore[union-attr]
    torch.testing.assert_close(flat(obs)[0], ref)
    stacked = _tokenizer(spec32, stacked=True)  # the reward model: (B, 1, ...) windows, time embedding added
    win = {k: v[:, None] for k, v in obs.items()}
    y, _ = stacked(win)
    with torch.no_grad():
        stacked.time_emb.add_(1.0)  # type: ignore[union-attr]
    assert not torch.allclose(stacked(win)[0][:, 1:], y[:, 1:])
    assert _tokenizer(spec32, time_emb=False).time_emb is None
    with pytest.raises(ValueError, match="stacked"):
        TokenizerConfig(d_model=16, history=2, stacked=False)


def test_wrong_image_layout_is_a_clear_error(spec32):
    tok = _tokenizer(spec32, history=2)
    obs = random_obs(spec32, 1)  # no K axis
    with pytest.raises(ValueError, match=r"'image': expected \(B, K, 32, 32, 3\) uint8"):
        tok(obs)


def test_actor_critic_and_reward_model_share_the_one_tokenizer(spec32):
    models = [MultimodalPolicy(tiny_cfg(), spec32),
              TransformerCritic(CriticConfig(d_model=16, n_heads=2, n_layers=1, conv_channels=[8]), spec32),
              TransformerCritic(CriticConfig(d_model=16, n_heads=2, n_layers=1, use_images=False), spec32),
              RewardModel(RewardModelConfig(d_model=16, n_heads=2, n_layers=1, conv_channels=[8]), spec32)]
    for m in models:
        assert isinstance(m.tokenizer, ObservationTokenizer)  # type: ignore[attr-defined]
        own = [n for n, sub in m.named_modules() if isinstance(sub, (ConvStem, ResNetStem, VectorTokenizer))]
        assert own and all(n.startswith("tokenizer.") for n in own)
    assert "privileged" not in models[0].tokenizer.vec_dims and "privileged" in models[1].tokenizer.vec_dims
    assert models[2].tokenizer.image_keys == () and not models[2].tokenizer.stems


@pytest.mark.parametrize("encoder, convs", [("conv", 2), ("conv", 3), ("patch", 3), ("patch", 4), ("resnet18", 0)])
@pytest.mark.parametrize("size", [32, 84])
def test_stem_grid_matches_the_stems(encoder, convs, size):
    stem = ResNetStem(8) if encoder == "resnet18" else ConvStem([4] * (convs - 1), 8, size, patch=encoder == "patch")
    out = stem(torch.zeros(1, 3, size, size))
    assert stem_grid(encoder, convs, size) == stem.grid(size) == tuple(out.shape[2:])


def test_coord_channels_make_the_stem_position_aware():
    torch.manual_seed(0)
    flat = torch.full((1, 3, 32, 32), 0.5)
    with_coords = ConvStem([8, 16], 32, image_size=32, coord_channels=True)(flat)  # (1, 32, 4, 4)
    without = ConvStem([8, 16], 32, image_size=32, coord_channels=False)(flat)
    inner = (slice(None), slice(None), slice(1, 3), slice(1, 3))  # away from the zero-padded border
    assert without[inner].std(dim=(2, 3)).max() < 1e-6  # a uniform image gives uniform interior features
    assert with_coords[inner].std(dim=(2, 3)).max() > 1e-4
    assert "coords" not in ConvStem([8], 32, 32, True).state_dict()  # rebuilt, not stored


def test_patch_stem_gives_a_4x4_grid_at_84_px_with_the_checkpoint_layout():
    stem = ConvStem([16, 32, 64], 64, image_size=84, coord_channels=True, patch=True)
    assert stem.grid(84) == (4, 4)
    shapes = {k: tuple(v.shape) for k, v in stem.state_dict().items() if k.endswith("weight")}
    # 3x3 kernels at net.0, net.2, ...: the layout checkpoint files are checked against
    assert shapes == {"net.0.weight": (16, 5, 3, 3), "net.2.weight": (32, 16, 3, 3), "net.4.weight": (64, 32, 3, 3),
                      "net.6.weight": (64, 64, 3, 3)}


@pytest.mark.parametrize("patch", [False, True])
def test_coord_part_added_once_equals_convolving_the_concatenated_channels(patch):
    torch.manual_seed(0)
    stem = ConvStem([8, 16], 16, image_size=32, coord_channels=True, patch=patch)
    x = torch.rand(3, 3, 32, 32)
    cat = torch.cat([x - 0.5, stem.coords.expand(3, -1, -1, -1)], dim=1)  # (3, 5, H, W): the textbook CoordConv
    torch.testing.assert_close(stem(x), stem.net(cat), rtol=1e-5, atol=1e-5)


def test_batched_uint8_shift_is_an_edge_padded_crop_shared_by_the_history_frames():
    from torchvision.transforms.v2 import functional as TF

    from robo_hybrid.policy.tokenizer import ImageAugment

    g = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (6, 2, 12, 12, 3), generator=g, dtype=torch.uint8)
    torch.manual_seed(1)
    out = ImageAugment(12, 2, 0.0).shift(img)
    assert out.dtype == torch.uint8 and out.shape == img.shape
    padded = TF.pad(img.permute(0, 1, 4, 2, 3).reshape(12, 3, 12, 12), [2], padding_mode="edge")  # (B*K, 3, 16, 16)
    padded = padded.reshape(6, 2, 3, 16, 16).permute(0, 1, 3, 4, 2)  # (B, K, 16, 16, 3)
    offsets = []
    for b in range(6):
        hits = [(r, c) for r in range(5) for c in range(5)
                if torch.equal(padded[b, :, r:r + 12, c:c + 12], out[b])]  # both frames, one offset
        assert hits, f"sample {b} is no edge-padded crop"
        offsets.append(hits[0])
    assert len(set(offsets)) > 1  # drawn per sample
    assert torch.equal(ImageAugment(12, 0, 0.0).shift(img), img)
