"""The multimodal transformer policy (observation tokenizer, trunk, heads, normalizers) and its export wrapper."""

from robo_hybrid.constants import HISTORY_MASK_KEY

from .config import PolicyConfig
from .model import AUX_TARGET_KEY, ExportWrapper, HeadOutputs, MultimodalPolicy, obs_to_torch, policy_summary
from .normalizer import Normalizer
from .tokenizer import ObservationTokenizer, TokenizerConfig

__all__ = [
    "AUX_TARGET_KEY",
    "HISTORY_MASK_KEY",
    "ExportWrapper",
    "HeadOutputs",
    "MultimodalPolicy",
    "Normalizer",
    "ObservationTokenizer",
    "PolicyConfig",
    "TokenizerConfig",
    "obs_to_torch",
    "policy_summary",
]
