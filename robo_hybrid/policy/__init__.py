"""The multimodal transformer policy (tokenizers, trunk, heads, normalizers) and its export wrapper."""

from .config import PolicyConfig
from .model import (
    AUX_TARGET_KEY,
    HISTORY_MASK_KEY,
    MultimodalPolicy,
    OnnxPolicy,
    PolicyOutput,
    obs_to_torch,
    policy_summary,
)
from .normalizer import Normalizer

__all__ = [
    "AUX_TARGET_KEY",
    "HISTORY_MASK_KEY",
    "MultimodalPolicy",
    "Normalizer",
    "OnnxPolicy",
    "PolicyConfig",
    "PolicyOutput",
    "obs_to_torch",
    "policy_summary",
]
