"""The MINT head: reads the tapped activation maps and outputs one membership logit."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass
class HeadConfig:
    width: int = 64  # channels of each branch's convolutions
    hidden: int = 512  # width of the MLP after the branches are concatenated: its memory for members
    pool_grid: int = 1  # each branch pools to grid x grid cells; 1 is global pooling as in the paper

    def to_dict(self) -> dict:
        return asdict(self)


def _branch(in_chans: int, size: int, cfg: HeadConfig) -> nn.Sequential:
    # Stride 2 on large maps keeps the head cheap next to the backbone; two convolutions as in the paper.
    stride = 2 if size >= 8 else 1
    return nn.Sequential(
        nn.Conv2d(in_chans, cfg.width, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cfg.width),
        nn.ReLU(inplace=True),
        nn.Conv2d(cfg.width, cfg.width, 3, padding=1, bias=False),
        nn.BatchNorm2d(cfg.width),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(cfg.pool_grid),
        nn.Flatten(),
    )


class MintHead(nn.Module):
    """One branch per tapped map, branches concatenated, a small MLP, one logit."""

    def __init__(self, tap_shapes: list[tuple[int, int, int]], cfg: HeadConfig):
        super().__init__()
        self.branches = nn.ModuleList(_branch(c, min(h, w), cfg) for c, h, w in tap_shapes)
        features = len(tap_shapes) * cfg.width * cfg.pool_grid**2
        self.mlp = nn.Sequential(
            nn.Linear(features, cfg.hidden),
            nn.BatchNorm1d(cfg.hidden),
            nn.ReLU(inplace=True),
            nn.Linear(cfg.hidden, 1),
        )

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        feats = torch.cat([branch(m) for branch, m in zip(self.branches, maps)], dim=1)
        return self.mlp(feats).squeeze(1)
