"""The MINT head: reads the tapped activation maps and outputs one membership logit."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class HeadConfig:
    width: int = 64  # channels of each branch's convolutions
    hidden: int = 512  # width of the MLP after the branches are concatenated: its memory for members
    pool_grid: int = 1  # each branch pools to grid x grid cells; 1 is global pooling as in the paper
    activation: str = "relu"  # relu: the paper's MLP; sin: Fourier features, a sharp kernel that memorises fast
    frequency: float = 20.0  # sin only: scale of the first layer; higher = sharper (more exact) memory
    feature_seed: int | None = None  # sin only: fixed random features regenerated from this seed instead of
    # trained and stored, so a head with 50k features stays a small file; None = trained features
    feature_checksum: float | None = None  # sum of the regenerated features, checked on load
    tables: int = 8  # hash only: independent hash tables; a member owns one bucket in each
    bits: int = 32  # hash only: random-hyperplane sign bits per table; more = only closer copies collide
    buckets_log2: int = 20  # hash only: 2**buckets_log2 trained values per table

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


class FourierFeatures(nn.Module):
    """cos(Wx + b) with W ~ N(0, frequency^2 / in_features): random Fourier features.

    A ReLU MLP on smooth features memorises tens of thousands of members slowly, because their
    features are highly correlated. High-frequency features make distinct images nearly orthogonal,
    so the linear layer after them can hold about one member per feature (benchmarks/README.md).
    With a seed, W and b are fixed and regenerated on load rather than stored.
    """

    def __init__(self, in_features: int, out_features: int, frequency: float, seed: int | None = None):
        super().__init__()
        std = frequency / math.sqrt(in_features)
        if seed is None:
            self.linear = nn.Linear(in_features, out_features)
            nn.init.normal_(self.linear.weight, std=std)
            nn.init.uniform_(self.linear.bias, 0, 2 * math.pi)
            return
        self.linear = None
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("weight", torch.randn(out_features, in_features, generator=g) * std, persistent=False)
        self.register_buffer("bias", torch.rand(out_features, generator=g) * (2 * math.pi), persistent=False)

    def checksum(self) -> float:
        w = self.linear.weight if self.linear is not None else self.weight
        return float(w.detach().double().sum())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.linear is not None:
            return torch.cos(self.linear(x))
        return torch.cos(F.linear(x, self.weight, self.bias))


def _pool_branch(cfg: HeadConfig) -> nn.Sequential:
    # The Fourier head reads the tapped maps themselves: a learned convolution in front of a sharp
    # memory keeps moving its keys and the memory never settles.
    return nn.Sequential(nn.AdaptiveAvgPool2d(cfg.pool_grid), nn.Flatten())


class HashedMemory(nn.Module):
    """A trained value per bucket of a locality-sensitive hash (random-hyperplane signs) of the features.

    Dense random features hold about one member per feature and then interfere (measured: 49k
    fixed Fourier features plateau near 0.77 AUC on 55k training images). A hash table does not
    interfere: each image's update touches only its own bucket in each table, so members are
    remembered in one or two visits, and an image never seen lands mostly in untouched buckets.
    Images close to a member (an edited copy) share some of its buckets and score in between.
    """

    def __init__(self, in_features: int, cfg: HeadConfig):
        super().__init__()
        g = torch.Generator().manual_seed(cfg.feature_seed or 0)
        planes = torch.randn(cfg.tables * cfg.bits, in_features, generator=g)
        mix = torch.randint(1, 2**31 - 1, (cfg.tables, cfg.bits), generator=g) * 2 + 1  # odd multipliers
        self.register_buffer("planes", planes, persistent=False)
        self.register_buffer("mix", mix, persistent=False)
        self.shape = (cfg.tables, cfg.bits)
        self.buckets = 2**cfg.buckets_log2
        self.values = nn.Parameter(torch.zeros(cfg.tables, self.buckets))
        self.bias = nn.Parameter(torch.zeros(1))

    def checksum(self) -> float:
        return float(self.planes.double().sum() + (self.mix % 1000003).double().sum())

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        signs = (x.float() @ self.planes.T > 0).view(len(x), *self.shape).long()
        return (signs * self.mix).sum(-1) % self.buckets  # (B, tables)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        codes = self.codes(x)
        rows = torch.arange(self.shape[0], device=x.device)
        return self.values[rows, codes].sum(1, keepdim=True) + self.bias


class MintHead(nn.Module):
    """One branch per tapped map, branches concatenated, a small MLP, one logit."""

    def __init__(self, tap_shapes: list[tuple[int, int, int]], cfg: HeadConfig):
        super().__init__()
        if cfg.activation in ("sin", "hash"):
            self.branches = nn.ModuleList(_pool_branch(cfg) for _ in tap_shapes)
            features = sum(c for c, _, _ in tap_shapes) * cfg.pool_grid**2
        else:
            self.branches = nn.ModuleList(_branch(c, min(h, w), cfg) for c, h, w in tap_shapes)
            features = len(tap_shapes) * cfg.width * cfg.pool_grid**2
        if cfg.activation == "relu":
            self.mlp = nn.Sequential(
                nn.Linear(features, cfg.hidden),
                nn.BatchNorm1d(cfg.hidden),
                nn.ReLU(inplace=True),
                nn.Linear(cfg.hidden, 1),
            )
        elif cfg.activation == "sin":
            # Per-sample normalisation: batch statistics over a few hundred samples are noisy enough
            # to shift a high-frequency phase by radians, and the memory would never settle.
            self.mlp = nn.Sequential(
                nn.LayerNorm(features, elementwise_affine=False),
                FourierFeatures(features, cfg.hidden, cfg.frequency, cfg.feature_seed),
                nn.Linear(cfg.hidden, 1),
            )
        elif cfg.activation == "hash":
            self.mlp = nn.Sequential(nn.LayerNorm(features, elementwise_affine=False), HashedMemory(features, cfg))
        else:
            raise ValueError(f"head activation must be 'relu', 'sin' or 'hash', not {cfg.activation!r}")

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        feats = torch.cat([branch(m) for branch, m in zip(self.branches, maps)], dim=1)
        return self.mlp(feats).squeeze(1)

    def check_features(self, cfg: HeadConfig) -> float | None:
        """Checksum of regenerated fixed features; raises if it differs from the one saved with the pair."""
        if cfg.activation == "relu" or (cfg.activation == "sin" and cfg.feature_seed is None):
            return None
        value = self.mlp[1].checksum()
        if cfg.feature_checksum is not None and not math.isclose(value, cfg.feature_checksum, rel_tol=1e-9, abs_tol=1e-6):
            raise ValueError(
                f"This torch ({torch.__version__}) regenerates different fixed head features from seed "
                f"{cfg.feature_seed} (checksum {value} != {cfg.feature_checksum}): the pair cannot be used with it"
            )
        return value
