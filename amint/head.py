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

import torch
from torch import nn

# The head's settings are plain dataclasses in their own module (importable without torch); the detectors each
# in a module of their own. All re-exported here for older imports.
from .fingerprint import EXTERNAL_PENALTY, HashedMemory, Lookup  # noqa: F401
from .head_config import HeadConfig, MemoryConfig, TraceConfig, default_memories  # noqa: F401
from .trace import TraceHead  # noqa: F401


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
