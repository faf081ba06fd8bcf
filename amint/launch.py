"""Training on several GPUs from a running program (the app): one torchrun subprocess, progress merged.

``train_multiprocess`` starts ``torchrun --standalone --nproc_per_node N -m amint train --progress-json``;
every rank prints its progress as JSON lines, and ``MergedProgress`` turns them into one stream: the
slowest rank's step (with every rank's step in the message) and rank 0's phase, epoch and done
reports, which hold global numbers. Stopping ends the process group; nothing is saved then, since
the trainer writes the pair only when finished and atomically.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import typing
from collections import deque
from dataclasses import asdict, fields
from pathlib import Path
from typing import Callable

import torch

from .pair import AuditedPair
from .train import Callback, Progress, TrainingCancelled
from .train_config import TrainConfig

PROGRESS_PREFIX = "amint-progress "


def visible_gpus() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def progress_line(rank: int, p: Progress) -> str:
    """One rank's report as the line ``train --progress-json`` prints (the ROC points left out: a line
    under the pipe's atomic write size does not interleave with another rank's)."""
    report = asdict(p) | {"metrics": {k: v for k, v in p.metrics.items() if k != "roc"}}
    return PROGRESS_PREFIX + json.dumps({"rank": rank, **report})


def parse_progress_line(line: str) -> tuple[int, Progress] | None:
    """(rank, report) from a progress line; None for any other output (or a garbled line)."""
    if not line.startswith(PROGRESS_PREFIX):
        return None
    try:
        data = json.loads(line[len(PROGRESS_PREFIX):])
        return data.pop("rank"), Progress(**data)
    except (ValueError, TypeError, KeyError):
        return None


def train_argv(cfg: TrainConfig) -> list[str]:
    """``amint train`` flags that rebuild ``cfg`` (the CLI makes one flag per TrainConfig field)."""
    argv: list[str] = []
    hints = typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        value, flag = getattr(cfg, f.name), "--" + f.name.replace("_", "-")
        if hints[f.name] is bool:
            argv.append(flag if value else "--no-" + flag[2:])
        elif value is None:
            if f.default is not None:  # a None default needs no flag
                argv += [flag, "none"]
        elif isinstance(value, dict):
            argv += [flag, json.dumps(value)]
        elif isinstance(value, list):
            argv += [flag, ",".join(value)]
        else:
            argv += [flag, str(value)]
    return argv


class MergedProgress:
    """Per-rank reports in, one stream out: the slowest rank's step, rank 0's phases, epochs and end."""

    def __init__(self, world_size: int, callback: Callback):
        self.world_size, self.callback = world_size, callback
        self.steps: dict[int, Progress] = {}

    def __call__(self, rank: int, p: Progress) -> None:
        if p.kind != "step":
            if rank == 0:  # the other ranks report the same global numbers
                self.callback(p)
            return
        self.steps[rank] = p
        slowest = min(self.steps.values(), key=lambda q: (q.phase != p.phase, q.fraction))
        where = ", ".join(f"rank {r} {q.step}/{q.steps}" for r, q in sorted(self.steps.items()))
        metrics = self.steps.get(0, p).metrics
        self.callback(Progress("step", slowest.phase, slowest.epoch, slowest.epochs, slowest.step, slowest.steps,
                               metrics, message=where))


def train_multiprocess(cfg: TrainConfig, nproc: int, callback: Callback | None = None,
                       should_stop: Callable[[], bool] | None = None, poll_s: float = 0.2) -> AuditedPair:
    """Train ``cfg`` with one process per GPU (``nproc``) under torchrun; returns the saved pair."""
    if not cfg.out:
        raise ValueError("training in several processes needs cfg.out: the pair comes back through that folder")
    merged = MergedProgress(nproc, callback or (lambda p: None))
    should_stop = should_stop or (lambda: False)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "amint", "train", "--progress-json", *train_argv(cfg)]
    package_root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)  # its own process group: Stop ends torchrun and its ranks
    lines: queue.Queue = queue.Queue()
    tail: deque[str] = deque(maxlen=20)
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True)
    reader.start()
    try:
        while proc.poll() is None or reader.is_alive() or not lines.empty():
            if should_stop():
                raise TrainingCancelled("stopped: the training processes were ended")
            try:
                line = lines.get(timeout=poll_s)
            except queue.Empty:
                continue
            event = parse_progress_line(line)
            if event is None:
                tail.append(line.rstrip())
            else:
                merged(*event)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    if proc.returncode != 0:
        raise RuntimeError(f"torchrun exited with status {proc.returncode}:\n" + "\n".join(tail))
    return AuditedPair.from_pretrained(cfg.out)

