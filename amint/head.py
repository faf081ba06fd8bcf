"""The MINT head: a trace detector on the tapped maps, hashed memories of the training images, a readout.

Two kinds of evidence, each optional, combined by a calibrated logistic readout:

- the trace head (the paper's MINT model): two convolutions per tapped activation map, global
  pooling, a small MLP, one logit. It is differentiable, so in active training its loss reaches the
  audited model's layers: the only part that can carry a trace joint training wrote into the model.
- hashed memories: locality-sensitive hashes of the image as the model receives it, with one
  presence bit per bucket for the training members and one for the external non-members.
  ``exact`` reads the whole image; ``aligned`` reads its interior and is also queried with the
  upload moved and zoomed out a little, so that a shifted or cropped copy finds its member.
  A memory holds sign bits of random projections, never an image or a per-member vector.

The readout reads ``evidence`` (trace logit, memory scores) and is fitted on the calibration split
(Platt scaling, equal priors), so ``sigmoid(readout)`` is a probability that means what it says.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# The head's settings are plain dataclasses in their own module (importable without torch); re-exported here.
from .head_config import HeadConfig, MemoryConfig, TraceConfig, default_memories  # noqa: F401

# Looked up per table: +1 where only members landed, -EXTERNAL_PENALTY where only externals did.
EXTERNAL_PENALTY = 0.5
# The isotonic map from readout logit to probability is stored at this many knots.
CALIBRATION_KNOTS = 64
# A sliver of a gentle sigmoid (of logit / 8) keeps the calibrated probability strictly increasing in
# the logit, so it ranks images as the logit does (no ties from the isotonic steps, none below |logit| 200).
TIEBREAK = 1e-3


# --- the trace head ----------------------------------------------------------------------------


def _branch(in_chans: int, size: int, width: int) -> nn.Sequential:
    # Stride 2 on large maps keeps the head cheap next to the backbone; two convolutions as in the paper.
    stride = 2 if size >= 8 else 1
    return nn.Sequential(
        nn.Conv2d(in_chans, width, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


class TraceHead(nn.Module):
    """One branch per tapped map, branches concatenated, a small MLP, one logit (the paper's MINT model)."""

    def __init__(self, tap_shapes: list[tuple[int, int, int]], cfg: TraceConfig):
        super().__init__()
        self.branches = nn.ModuleList(_branch(c, min(h, w), cfg.width) for c, h, w in tap_shapes)
        self.mlp = nn.Sequential(
            nn.Linear(len(tap_shapes) * cfg.width, cfg.hidden),
            nn.BatchNorm1d(cfg.hidden),
            nn.ReLU(inplace=True),
            nn.Linear(cfg.hidden, 1),
        )

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        return self.mlp(torch.cat([b(m) for b, m in zip(self.branches, maps)], dim=1)).squeeze(1)


# --- hashed memories -------------------------------------------------------------------------


class HashedMemory(nn.Module):
    """Presence bits of locality-sensitive hashes of whitened, pooled images.

    Whitening (PCA on the training images) spreads distinct garments apart while re-encodings
    (JPEG, resampling) move an image little, so one random-hyperplane hash with a few tens of bits
    puts a re-encoded member in the bucket of its original (benchmarks/README.md). All arithmetic
    before the sign is float64: the same bits on every device and batch size.
    """

    def __init__(self, in_chans: int, image_size: int, cfg: MemoryConfig):
        super().__init__()
        self.cfg = cfg
        side = (image_size - 2 * cfg.border) // cfg.pool
        if side < 1:
            raise ValueError(f"memory border {cfg.border} and pool {cfg.pool} leave nothing of a {image_size} px image")
        in_features = in_chans * side * side
        dims = min(cfg.dims, in_features)
        g = torch.Generator().manual_seed(cfg.seed)
        # Fitted to the training images by fit_projection(); identity-like until then.
        self.register_buffer("center", torch.zeros(in_features, dtype=torch.float64))
        self.register_buffer("projection", torch.eye(in_features, dims, dtype=torch.float64))
        self.register_buffer("planes", torch.randn(dims, cfg.tables * cfg.bits, generator=g, dtype=torch.float64))
        self.dims = dims
        self.register_buffer("mix", torch.randint(1, 2**31 - 1, (cfg.tables, cfg.bits), generator=g) * 2 + 1)
        packed = (cfg.tables, 2 ** max(cfg.buckets_log2 - 3, 0))
        self.register_buffer("members", torch.zeros(packed, dtype=torch.uint8))
        # Absent (None, not saved) in a copy published without them: amint.publish, --no-externals.
        self.register_buffer("externals", torch.zeros(packed, dtype=torch.uint8) if cfg.externals else None)

    # keys and codes

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        b = self.cfg.border
        x = x.double()
        if b:
            x = x[:, :, b:-b, b:-b]
        return F.avg_pool2d(x, self.cfg.pool).flatten(1)

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """(N, tables) bucket indices of normalised images (N, C, H, W)."""
        z = F.normalize((self._features(x) - self.center) @ self.projection, dim=1)
        signs = (z @ self.planes > 0).view(len(x), self.cfg.tables, self.cfg.bits).long()
        return (signs * self.mix).sum(-1) % (2**self.cfg.buckets_log2)

    @torch.no_grad()
    def fit_projection(self, images: torch.Tensor) -> None:
        """PCA whitening from the training images (members and externals), normalised (N, C, H, W)."""
        feats = self._features(images)
        center = feats.mean(0)
        dims = self.dims
        _, s, v = torch.linalg.svd(feats - center, full_matrices=False)
        k = min(dims, len(s))  # fewer images than components: the rest stay zero
        scale = (s[:k] / len(feats) ** 0.5).clamp(min=1e-12 * float(s[0]) + 1e-300)
        self.center.copy_(center)
        self.projection.zero_()
        self.projection[:, :k] = v[:k].T / scale

    @torch.no_grad()
    def moments(self, images: torch.Tensor) -> tuple[int, torch.Tensor, torch.Tensor]:
        """(count, sum, sum of outer products) of one chunk's features: fit_from_moments adds chunks up."""
        feats = self._features(images)
        return len(feats), feats.sum(0), feats.T @ feats

    @torch.no_grad()
    def fit_from_moments(self, count: int, total: torch.Tensor, outer: torch.Tensor) -> None:
        """fit_projection's whitening from summed moments, for images streamed a chunk at a time
        (the covariance's eigenvectors are the SVD's right singular vectors, up to sign)."""
        center = total / count
        evals, evecs = torch.linalg.eigh(outer / count - torch.outer(center, center))
        evals, evecs = evals.flip(0).clamp(min=0), evecs.flip(1)  # descending, as the SVD's
        k = min(self.dims, count)
        scale = evals[:k].sqrt().clamp(min=1e-12 * float(evals[0].sqrt()) + 1e-300)
        self.center.copy_(center)
        self.projection.zero_()
        self.projection[:, :k] = evecs[:, :k] / scale

    # bits

    @staticmethod
    def _get(table: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(table.shape[0], device=codes.device).expand_as(codes)
        return (table[rows, codes >> 3] >> (codes & 7).to(torch.uint8)) & 1

    @torch.no_grad()
    def write(self, x: torch.Tensor, member: bool) -> None:
        """Set the bits of these normalised images: as members, or as external non-members."""
        table = self.members if member else self.externals
        if table is None:
            raise ValueError("this memory has no external tables (left out when it was published): it cannot be written")
        codes = self.codes(x)
        rows = torch.arange(table.shape[0], device=codes.device).expand_as(codes)
        flat = (rows * table.shape[1] + (codes >> 3)).flatten()
        bits = (torch.ones_like(codes, dtype=torch.uint8) << (codes & 7).to(torch.uint8)).flatten()
        view = table.view(-1)
        # Several images may set bits of one byte: OR them together per byte before writing.
        for bit in range(8):
            sel = flat[bits == (1 << bit)]
            view[sel] |= 1 << bit

    def occupancy(self) -> dict[str, float]:
        count = lambda t: float(sum(((t >> i) & 1).sum() for i in range(8))) / (t.numel() * 8)  # noqa: E731
        return {"members": count(self.members)} | ({"externals": count(self.externals)} if self.externals is not None else {})

    # lookup

    def _bits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, tables) member and external presence bits at the image's buckets (externals all 0 when absent)."""
        codes = self.codes(x)
        m = self._get(self.members, codes)
        return m, self._get(self.externals, codes) if self.externals is not None else torch.zeros_like(m)

    def _score(self, x: torch.Tensor) -> torch.Tensor:
        m, e = (b.double() for b in self._bits(x))
        return (m * (1 - e) - EXTERNAL_PENALTY * e * (1 - m)).mean(1)

    @torch.no_grad()
    def hits(self, x: torch.Tensor, variants: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(N,) member tables and (N,) external tables hit, each the most over the aligned variants of the query
        (``variants=False``: the image as is): what anyone holding the memory reads, without the readout."""
        m, e = (b.sum(1) for b in self._bits(x))
        for v in self._variants(x) if variants else ():
            mv, ev = (b.sum(1) for b in self._bits(v))
            m, e = torch.maximum(m, mv), torch.maximum(e, ev)
        return m, e

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Score in [-0.5, 1] per image: the best over the aligned variants of the query."""
        best = self._score(x)
        for v in self._variants(x):
            best = torch.maximum(best, self._score(v))
        return best.float()

    def _variants(self, x: torch.Tensor):
        s = self.cfg.shifts
        # The border is left out of the key, so what a roll wraps around is never read.
        for dy in range(-s, s + 1):
            for dx in range(-s, s + 1):
                if dx or dy:
                    yield torch.roll(x, (dy, dx), (2, 3))
        for zoom in self.cfg.zooms:
            theta = torch.tensor([[1 / zoom, 0, 0], [0, 1 / zoom, 0]], dtype=torch.float64, device=x.device)
            xd = x.double()
            grid = F.affine_grid(theta.expand(len(x), 2, 3), list(xd.shape), align_corners=False)
            yield F.grid_sample(xd, grid, mode="bilinear", padding_mode="border", align_corners=False)


# --- the head ----------------------------------------------------------------------------------


class MintHead(nn.Module):
    """Trace head and memories produce ``evidence`` (N, E); a logistic readout turns it into one logit."""

    def __init__(self, tap_shapes: list[tuple[int, int, int]], in_chans: int, image_size: int, cfg: HeadConfig):
        super().__init__()
        self.cfg = cfg
        self.trace = TraceHead(tap_shapes, cfg.trace) if cfg.trace else None
        self.memories = nn.ModuleDict({k: HashedMemory(in_chans, image_size, m) for k, m in cfg.memories.items()})
        # Until calibration fits it: the trace logit as is, plus the memory scores scaled to logits.
        n = len(cfg.evidence_names)
        self.readout = nn.Linear(n, 1)
        with torch.no_grad():
            self.readout.weight.fill_(8.0)
            if self.trace is not None:
                self.readout.weight[0, 0] = 1.0
            self.readout.bias.zero_()
        # (logit, probability) knots of the isotonic calibration; all zero = not fitted: plain sigmoid.
        self.register_buffer("calibration_knots", torch.zeros(2, CALIBRATION_KNOTS, dtype=torch.float64))

    def evidence(self, x: torch.Tensor, maps: list[torch.Tensor]) -> torch.Tensor:
        """(N, E): the trace logit, then each memory's score, in ``cfg.evidence_names`` order."""
        parts = [self.trace(maps)] if self.trace is not None else []
        parts += [m(x) for m in self.memories.values()]
        return torch.stack([p.float() for p in parts], dim=1)

    def forward(self, x: torch.Tensor, maps: list[torch.Tensor]) -> torch.Tensor:
        return self.readout(self.evidence(x, maps)).squeeze(1)

    def probability(self, logit: torch.Tensor) -> torch.Tensor:
        """The calibrated member probability of readout logits (isotonic knots, or the sigmoid before fitting)."""
        knots_x, knots_y = self.calibration_knots
        sig = torch.sigmoid(logit.double())
        if not bool((knots_x[1:] > knots_x[:-1]).all()):
            return sig
        z = logit.double().clamp(float(knots_x[0]), float(knots_x[-1]))
        i = torch.searchsorted(knots_x, z.contiguous()).clamp(1, len(knots_x) - 1)
        x0, x1, y0, y1 = knots_x[i - 1], knots_x[i], knots_y[i - 1], knots_y[i]
        iso = y0 + (y1 - y0) * (z - x0) / (x1 - x0)
        # float64: in float32 every logit above ~17 would read exactly 1.0 and tie.
        return (1 - TIEBREAK) * iso + TIEBREAK * torch.sigmoid(logit.double() / 8)
