"""The MINT head's settings: plain dataclasses, importable without torch (amint.head builds the modules).

Stored as a dict in a pair's config.json and in TrainConfig.head; loaded strictly (an unknown key is an error).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class TraceConfig:
    width: int = 64  # channels of each branch's two convolutions
    hidden: int = 512  # width of the MLP after the branches are concatenated
    pool: str = "avg"  # each branch's global pooling: "avg", or "max" (the published ResNet head's)
    dropout: float = 0.0  # on the MLP's hidden layer while training (against a head that memorises its members)


@dataclass
class MemoryConfig:
    border: int = 0  # pixels left out at each side: moves bring unknown pixels in there (>= shifts)
    pool: int = 2  # average-pool the image by this factor before hashing (tolerates resampling)
    dims: int = 128  # whitened principal components the hash reads (fitted on the training images)
    tables: int = 32  # independent hash tables; a member sets one bit in each
    bits: int = 24  # random-hyperplane sign bits per table: more = only closer copies collide
    buckets_log2: int = 21  # 2**buckets_log2 presence bits per table, for members and for externals
    shifts: int = 0  # query-time alignment: also look the image up moved by up to this many pixels
    zooms: list[float] = field(default_factory=list)  # ... and zoomed out to these fractions (undoes a crop)
    seed: int = 0  # of the random hyperplanes and the bucket mixing
    externals: bool = True  # False: no external tables (left out when published); lookups read the member table alone


def default_memories() -> dict[str, MemoryConfig]:
    """The measured defaults (benchmarks/README.md): an exact memory and a move-tolerant one."""
    return {
        "exact": MemoryConfig(dims=128, seed=0),
        "aligned": MemoryConfig(border=2, dims=96, shifts=2, zooms=[26 / 28, 27 / 28], seed=1),
    }


@dataclass
class HeadConfig:
    trace: TraceConfig | None = field(default_factory=TraceConfig)  # None: no trace head (passes no gradient)
    memories: dict[str, MemoryConfig] = field(default_factory=default_memories)  # name -> memory; {} for none

    def __post_init__(self) -> None:
        if isinstance(self.trace, dict):
            self.trace = _strict(TraceConfig, self.trace, "head.trace")
        self.memories = {k: _strict(MemoryConfig, v, f"head.memories.{k}") if isinstance(v, dict) else v
                         for k, v in self.memories.items()}
        if self.trace is not None:
            _check_trace(self.trace)
        if self.trace is None and not self.memories:
            raise ValueError("The MINT head needs a trace head, a memory, or both")
        for name, m in self.memories.items():
            if not isinstance(m, MemoryConfig):
                raise ValueError(f"head.memories.{name} is {m!r}; it must be a mapping of memory settings")
            _check_query(m, f"head.memories.{name}")
            if m.shifts > m.border:
                raise ValueError(f"memory {name!r}: shifts ({m.shifts}) must not exceed border ({m.border})")
            if not (1 <= m.bits <= 62 and 8 <= m.buckets_log2 <= 30 and m.tables >= 1 and m.dims >= 1):
                raise ValueError(f"memory {name!r}: bits 1-62, buckets_log2 8-30, tables and dims >= 1")

    @property
    def evidence_names(self) -> list[str]:
        return (["trace"] if self.trace else []) + [f"memory_{k}" for k in self.memories]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "HeadConfig":
        return _strict(cls, data, "head")


def _check_trace(t: TraceConfig) -> None:
    if t.pool not in ("avg", "max"):
        raise ValueError(f"head.trace.pool is {t.pool!r}; it must be 'avg' or 'max'")
    if not (isinstance(t.dropout, (int, float)) and not isinstance(t.dropout, bool) and 0 <= t.dropout < 1):
        raise ValueError(f"head.trace.dropout is {t.dropout!r}; it must be a fraction in [0, 1)")


def _check_query(m: MemoryConfig, where: str) -> None:
    """The fields a query divides or slices by: a config from a stranger fails here in words, not in a
    division by zero when the pair is built (pool) or first queried (a zoom is inverted in _variants)."""
    for name, low in (("pool", 1), ("border", 0), ("shifts", 0)):
        value = getattr(m, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{where}.{name} is {value!r}; it must be a whole number >= {low}")
    if not isinstance(m.zooms, list):
        raise ValueError(f"{where}.zooms is {m.zooms!r}; it must be a list of fractions in (0, 1]")
    for zoom in m.zooms:
        ok = isinstance(zoom, (int, float)) and not isinstance(zoom, bool) and 0 < zoom <= 1
        if not (ok and math.isfinite(1 / zoom)):  # NaN fails the range; a subnormal zoom's inverse overflows
            raise ValueError(f"{where}.zooms holds {zoom!r}; each zoom must be a fraction in (0, 1] "
                             "(the query zoomed out to that fraction of its side)")


def _strict(cls: type, data: dict[str, Any], where: str):
    unknown = sorted(set(data) - {f.name for f in fields(cls)})
    if unknown:
        raise ValueError(f"Unknown key(s) in {where}: {unknown}")
    return cls(**data)
