"""The trace: the paper's MINT model on the audited model's tapped activation maps.

Two convolutions per tapped map, global pooling, a small MLP, one logit. It is differentiable, so in
active training its loss reaches the audited model's layers: of everything a pair carries, the only
part that reads what the model itself retained. The aMINT verdict (amint.readings, reading "amint")
is this logit, calibrated.
"""

from __future__ import annotations

import torch
from torch import nn

# Its settings live with the head's (importable without torch); re-exported here.
from .head_config import TraceConfig


def _branch(in_chans: int, size: int, width: int, pool: str = "avg") -> nn.Sequential:
    # Stride 2 on large maps keeps the head cheap next to the backbone; two convolutions as in the paper.
    # Pooling holds no weights, so either kind keeps the module's state-dict keys.
    stride = 2 if size >= 8 else 1
    return nn.Sequential(
        nn.Conv2d(in_chans, width, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.AdaptiveMaxPool2d(1) if pool == "max" else nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


class TraceHead(nn.Module):
    """One branch per tapped map, branches concatenated, a small MLP, one logit (the paper's MINT model)."""

    def __init__(self, tap_shapes: list[tuple[int, int, int]], cfg: TraceConfig):
        super().__init__()
        self.branches = nn.ModuleList(_branch(c, min(h, w), cfg.width, cfg.pool) for c, h, w in tap_shapes)
        self.dropout = cfg.dropout
        self.mlp = nn.Sequential(
            nn.Linear(len(tap_shapes) * cfg.width, cfg.hidden),
            nn.BatchNorm1d(cfg.hidden),
            nn.ReLU(inplace=True),
            nn.Linear(cfg.hidden, 1),
        )

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        hidden = self.mlp[:-1](torch.cat([b(m) for b, m in zip(self.branches, maps)], dim=1))
        # Functional dropout: a module here would shift the MLP's state-dict keys of every saved pair.
        hidden = nn.functional.dropout(hidden, self.dropout, self.training)
        return self.mlp[-1](hidden).squeeze(1)
