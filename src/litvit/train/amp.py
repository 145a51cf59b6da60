"""Mixed precision: which autocast dtype runs where.

The models handle low precision themselves (DTM's deformable conv has a bf16-capable path; see litvit.layers.dtm).
"""

from typing import Optional

import torch


def amp_dtype(amp: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype for `--amp` on `device` (None = full fp32)."""
    if amp == "off" or (amp == "auto" and device.type == "cpu"):
        return None
    if amp == "fp16":
        if device.type == "cpu":
            from .config import ConfigError

            raise ConfigError("--amp fp16 needs a GPU; on CPU use --amp bf16 (or off)")
        return torch.float16
    if amp == "bf16":
        return torch.bfloat16
    # auto on a GPU: bf16 where the GPU has it (no loss scaling needed), else fp16 as the official runs
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
