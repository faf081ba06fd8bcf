"""The fingerprint: hashed memories of the training images, looked up from the image alone.

A memory holds locality-sensitive hashes of the training images as the model receives them, with one
presence bit per bucket for the training members and one for the external non-members: sign bits of
random projections, never an image or a per-member vector. ``exact`` reads the whole image;
``aligned`` reads its interior and is also queried with the upload moved and zoomed out a little, so
that a shifted or cropped copy finds its member.

A lookup reads the image, not the audited model: it answers "is this image, or a re-encoding of it,
in the training index shipped with the pair?", whatever the model retained. The fingerprint reading
(amint.readings, reading "fingerprint") is a calibrated logistic over the memories' scores; ``Match``
says what the lookups found, from their table counts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

# Its settings live with the head's (importable without torch); re-exported here.
from .head_config import MemoryConfig, default_memories  # noqa: F401

# Looked up per table: +1 where only members landed, -EXTERNAL_PENALTY where only externals did.
EXTERNAL_PENALTY = 0.5
AS_UPLOADED = "as uploaded"  # the name of a lookup of the image itself, unmoved


# --- hashed memories -------------------------------------------------------------------------------


@dataclass
class Lookup:
    """What one memory found for a batch of images, per query variant (the image as uploaded first)."""

    members: torch.Tensor  # (N, V) int32: tables whose bucket only training members set
    externals: torch.Tensor  # (N, V) int32: tables whose bucket only external non-members set
    tables: int
    variants: tuple[str, ...]  # what each query did to the image: AS_UPLOADED, "moved 1 px left", ...

    def scores(self) -> torch.Tensor:
        """(N, V) float64 in [-EXTERNAL_PENALTY, 1]: per variant, member tables minus penalised external tables."""
        return (self.members.double() - EXTERNAL_PENALTY * self.externals.double()) / self.tables

    def score(self) -> torch.Tensor:
        """(N,) float32: the best variant's score, the memory's evidence."""
        return self.scores().amax(1).float()

    def rows(self, index) -> "Lookup":
        return Lookup(self.members[index], self.externals[index], self.tables, self.variants)

    @staticmethod
    def cat(parts: list["Lookup"]) -> "Lookup":
        first = parts[0]
        return Lookup(torch.cat([p.members for p in parts]), torch.cat([p.externals for p in parts]),
                      first.tables, first.variants)


# Rows hashed in one batch by a lookup (see HashedMemory._variant_bits).
BATCH_ROWS = 256


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
        return {"members": count(self.members)} | ({"externals": count(self.externals)} if self.externals is not None
                                                   else {})

    # lookup

    @torch.no_grad()
    def lookup(self, x: torch.Tensor) -> Lookup:
        """Table counts of normalised images (N, C, H, W), looked up as uploaded and as each aligned variant."""
        names, m, e = self._variant_bits(x)
        m, e = m.bool(), e.bool()
        members = (m & ~e).sum(-1, dtype=torch.int32).T  # (N, variants)
        externals = (e & ~m).sum(-1, dtype=torch.int32).T
        return Lookup(members.contiguous(), externals.contiguous(), self.cfg.tables, names)

    def _bits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, tables) member and external presence bits at the image's buckets (externals all 0 when absent)."""
        codes = self.codes(x)
        m = self._get(self.members, codes)
        return m, self._get(self.externals, codes) if self.externals is not None else torch.zeros_like(m)

    def _variant_bits(self, x: torch.Tensor) -> tuple[tuple[str, ...], torch.Tensor, torch.Tensor]:
        """Variant names and (variants, N, tables) member and external bits. Variants are hashed together in
        batches of about BATCH_ROWS rows: for one image, one projection instead of 28 (most of its lookup time);
        for large batches, one variant at a time (bigger matrices than that leave the cache and run slower)."""
        names, views = zip(*((name, v.double()) for name, v in self._variants(x)))
        step = max(1, BATCH_ROWS // max(len(x), 1))
        parts = [self._bits(torch.cat(views[i:i + step])) for i in range(0, len(views), step)]
        shape = (len(views), len(x), self.cfg.tables)
        return names, torch.cat([m for m, _ in parts]).view(shape), torch.cat([e for _, e in parts]).view(shape)

    @torch.no_grad()
    def hits(self, x: torch.Tensor, variants: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(N,) member tables and (N,) external tables hit, each the most over the aligned variants of the query
        (``variants=False``: the image as is): what anyone holding the memory reads, without a reading."""
        if not variants:
            m, e = self._bits(x)
            return m.sum(1), e.sum(1)
        _, m, e = self._variant_bits(x)
        return m.sum(-1).amax(0), e.sum(-1).amax(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Score in [-0.5, 1] per image: the best over the aligned variants of the query."""
        return self.lookup(x).score()

    def _variants(self, x: torch.Tensor) -> Iterator[tuple[str, torch.Tensor]]:
        yield AS_UPLOADED, x
        s = self.cfg.shifts
        # The border is left out of the key, so what a roll wraps around is never read.
        for dy in range(-s, s + 1):
            for dx in range(-s, s + 1):
                if dx or dy:
                    yield _move_words(dx, dy), torch.roll(x, (dy, dx), (2, 3))
        for zoom in self.cfg.zooms:
            theta = torch.tensor([[1 / zoom, 0, 0], [0, 1 / zoom, 0]], dtype=torch.float64, device=x.device)
            xd = x.double()
            grid = F.affine_grid(theta.expand(len(x), 2, 3), list(xd.shape), align_corners=False)
            yield f"zoomed out to {zoom:.0%}", F.grid_sample(xd, grid, mode="bilinear", padding_mode="border",
                                                             align_corners=False)


def _move_words(dx: int, dy: int) -> str:
    parts = ([f"{abs(dx)} px {'right' if dx > 0 else 'left'}"] if dx else []) + \
            ([f"{abs(dy)} px {'down' if dy > 0 else 'up'}"] if dy else [])
    return "moved " + " and ".join(parts)


def index_digest(memories: dict[str, HashedMemory]) -> str:
    """SHA-256 of the memories' buffers (whitening, hyperplanes, bit tables), in order: equal digests, equal lookups."""
    digest = hashlib.sha256()
    for name, memory in memories.items():
        digest.update(name.encode())
        for key, buf in memory.state_dict().items():
            a = buf.detach().cpu().contiguous()
            digest.update(f"{key}:{a.dtype}:{tuple(a.shape)}".encode())
            digest.update(a.view(torch.uint8).numpy().tobytes() if a.numel() else b"")
    return digest.hexdigest()


# --- what a lookup found ---------------------------------------------------------------------------

MATCH_KINDS = ("exact", "after small edits", "none")


@dataclass(frozen=True)
class Match:
    """What the fingerprint found for one image, from the lookups' table counts.

    ``exact``: the image as uploaded (no move or zoom tried) is enough for the fingerprint reading to call it a
    member; it may still be a re-encoding (JPEG, resizing) of the training image, which hashes alike.
    ``after small edits``: only a moved or zoomed lookup (``variant``) makes it a member. ``none``: the reading does
    not call it a member; the counts are then those of the best lookup.
    """

    kind: str
    member_tables: int  # tables of the deciding lookup whose bucket only training images set
    external_tables: int  # ... whose bucket only external non-members set
    tables: int  # tables of that memory
    variant: str | None  # the move or zoom the deciding lookup applied to the image ("after small edits")
    memory: str | None = None  # which memory's lookup

    def to_dict(self) -> dict:
        return {"kind": self.kind, "member_tables": self.member_tables, "external_tables": self.external_tables,
                "tables": self.tables, "variant": self.variant, "memory": self.memory}


def find_matches(lookups: dict[str, Lookup], evidence: torch.Tensor, names: list[str],
                 decide: Callable[[torch.Tensor], torch.Tensor]) -> list[Match]:
    """Per image, what the fingerprint matched. ``decide`` is the fingerprint reading: evidence (N, E) in
    ``names`` order -> is a member (N,) bool. It is asked once with every variant and once with the images as
    uploaded only: the difference says whether a move or zoom was needed."""
    columns = {k: names.index(f"memory_{k}") for k in lookups}
    uploaded = evidence.clone()
    for k, lk in lookups.items():
        uploaded[:, columns[k]] = lk.scores()[:, 0].to(uploaded.dtype)
    full, plain = decide(evidence).tolist(), decide(uploaded).tolist()
    scores = {k: lk.scores() for k, lk in lookups.items()}
    out = []
    for i in range(len(evidence)):
        if full[i] and plain[i]:  # the best lookup as uploaded
            k = max(lookups, key=lambda k: float(scores[k][i, 0]))
            out.append(_match("exact", lookups[k], i, 0, k, None))
        elif full[i]:  # the memory a move or zoom helped most, at its best variant
            k = max(lookups, key=lambda k: float(scores[k][i].max() - scores[k][i, 0]))
            v = int(scores[k][i].argmax())
            out.append(_match("after small edits", lookups[k], i, v, k, lookups[k].variants[v]))
        else:
            k = max(lookups, key=lambda k: float(scores[k][i].max()))
            out.append(_match("none", lookups[k], i, int(scores[k][i].argmax()), k, None))
    return out


def _match(kind: str, lk: Lookup, i: int, v: int, memory: str, variant: str | None) -> Match:
    return Match(kind, int(lk.members[i, v]), int(lk.externals[i, v]), lk.tables, variant, memory)
