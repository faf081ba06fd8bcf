"""The MINT head: the two detectors a pair carries, side by side, each optional.

- the trace (amint.trace): the paper's MINT model on the audited model's tapped activation maps; the
  only part that reads what the model itself retained.
- the fingerprint (amint.fingerprint): hashed memories of the training images, looked up from the
  image alone; they do not read the model.

One forward gives the ``evidence`` (trace logit, then each memory's score, named by
``HeadConfig.evidence_names``) and the memories' lookups. Nothing here decides: each reading
(amint.readings) is calibrated on its own evidence and stored in the pair's config.json.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import nn

# The detectors' own modules; imported from here by older code.
from .fingerprint import EXTERNAL_PENALTY, HashedMemory, Lookup, MemoryConfig, check_memory, default_memories  # noqa: F401
from .trace import TraceConfig, TraceHead  # noqa: F401


@dataclass
class HeadConfig:
    trace: TraceConfig | None = field(default_factory=TraceConfig)  # None: no trace head (passes no gradient)
    memories: dict[str, MemoryConfig] = field(default_factory=default_memories)  # name -> memory; {} for none

    def __post_init__(self) -> None:
        if isinstance(self.trace, dict):
            self.trace = _strict(TraceConfig, self.trace, "head.trace")
        self.memories = {k: _strict(MemoryConfig, v, f"head.memories.{k}") if isinstance(v, dict) else v
                         for k, v in self.memories.items()}
        if self.trace is None and not self.memories:
            raise ValueError("The MINT head needs a trace head, a memory, or both")
        for name, m in self.memories.items():
            if not isinstance(m, MemoryConfig):
                raise ValueError(f"head.memories.{name} is {m!r}; it must be a mapping of memory settings")
            check_memory(m, f"head.memories.{name}")

    @property
    def evidence_names(self) -> list[str]:
        return (["trace"] if self.trace else []) + [f"memory_{k}" for k in self.memories]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "HeadConfig":
        return _strict(cls, data, "head")


def _strict(cls: type, data: dict[str, Any], where: str):
    unknown = sorted(set(data) - {f.name for f in fields(cls)})
    if unknown:
        raise ValueError(f"Unknown key(s) in {where}: {unknown}")
    return cls(**data)


class MintHead(nn.Module):
    """The trace head and the memories of one pair; ``forward`` returns their evidence and the memories' lookups."""

    def __init__(self, tap_shapes: list[tuple[int, int, int]], in_chans: int, image_size: int, cfg: HeadConfig):
        super().__init__()
        self.cfg = cfg
        self.trace = TraceHead(tap_shapes, cfg.trace) if cfg.trace else None
        self.memories = nn.ModuleDict({k: HashedMemory(in_chans, image_size, m) for k, m in cfg.memories.items()})

    def forward(self, x: torch.Tensor, maps: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, Lookup]]:
        """(N, E) evidence in ``cfg.evidence_names`` order (the trace logit, then each memory's best score), and
        each memory's table counts per query variant (what amint.fingerprint.Match reads)."""
        lookups = {k: m.lookup(x) for k, m in self.memories.items()}
        parts = [self.trace(maps)] if self.trace is not None else []
        parts += [lk.score() for lk in lookups.values()]
        return torch.stack([p.float() for p in parts], dim=1), lookups
