"""Resumable training checkpoints: tensors in safetensors, everything else in JSON, never a pickle.

A checkpoint is one folder: ``state.safetensors`` (model weights, optimiser moments, RNG states) and
``state.json`` (phase, epoch, history, the optimiser's and scheduler's plain settings, the training
config it belongs to). Both are written to temporary names and renamed into place, state.json last,
so a run killed mid-write leaves the previous checkpoint whole.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

TENSORS, META = "state.safetensors", "state.json"


def save(folder: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write one checkpoint atomically (tensors first, then the JSON that names them)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{TENSORS}.{os.getpid()}"
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, folder / TENSORS)
    tmp = folder / f".{META}.{os.getpid()}"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, folder / META)
    return folder


def load(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """(tensors, meta) of the checkpoint in ``folder``, or None when there is none."""
    folder = Path(folder)
    if not (folder / META).is_file() or not (folder / TENSORS).is_file():
        return None
    return load_file(str(folder / TENSORS)), json.loads((folder / META).read_text())


# --- optimiser and scheduler state as (tensors, JSON) -----------------------------------------


def optimizer_state(opt: torch.optim.Optimizer, prefix: str = "opt") -> tuple[dict[str, torch.Tensor], dict]:
    """An optimiser's state_dict split into named tensors and a JSON-able remainder."""
    sd = opt.state_dict()
    tensors, plain = {}, {}
    for pid, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.{pid}.{key}"] = value
            else:
                plain[f"{pid}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "plain": plain}


def load_optimizer_state(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict,
                         prefix: str = "opt") -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        head, _, key = name.partition(".")[2].partition(".")
        if name.startswith(prefix + "."):
            state.setdefault(int(head), {})[key] = value
    for name, value in meta["plain"].items():
        pid, _, key = name.partition(".")
        state.setdefault(int(pid), {})[key] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def scheduler_state(sched) -> dict:
    """The scheduler's settings, minus callables (a LambdaLR's lambda is rebuilt from the config)."""
    return {k: v for k, v in sched.state_dict().items() if not callable(v) and k != "lr_lambdas"}


def rng_state(generator: torch.Generator, prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}.generator": generator.get_state(), f"{prefix}.torch": torch.get_rng_state()}


def load_rng_state(generator: torch.Generator, tensors: dict[str, torch.Tensor], prefix: str) -> None:
    generator.set_state(tensors[f"{prefix}.generator"])
    torch.set_rng_state(tensors[f"{prefix}.torch"])
