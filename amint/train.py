"""Training a pair: the audited classifier, its MINT head, then calibration.

Read top to bottom: device and data, model, then three phases (the settings: amint/train_config.py).

1. backbone: active = the task loss plus the membership loss through the trace head, members and
   externals 1:1 in one batch and one forward pass (so BatchNorm statistics cannot leak
   membership); passive = the task loss alone; untrained = skipped (a control).
2. head, on the frozen backbone: the trace head learns members vs externals; the hashed memories
   are written with each member and external as is and as random edited views.
3. calibration: the readout (Platt scaling) and the threshold, on the calibration split.

Callbacks only report; ``should_stop`` lets a UI cancel.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from .data import Benchmark, default_split_sizes, load_benchmark
from .edits import random_edits
from .evaluate import balanced_accuracy, calibrate, evaluate_pair, fit_threshold, roc_auc
from .pair import AuditedPair, PairConfig
from .splits import MembershipSplit, make_split
from .train_config import TrainConfig


@dataclass
class Progress:
    """One report from the loop: kind is 'phase', 'step', 'epoch' or 'done'."""

    kind: str
    phase: str  # joint / task / head / memory / calibrate
    epoch: int
    epochs: int
    step: int = 0
    steps: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    message: str = ""

    @property
    def fraction(self) -> float:
        done = (self.epoch - 1 + (self.step / self.steps if self.steps else 1)) if self.epoch else 0
        return min(1.0, max(0.0, done / max(self.epochs, 1)))


class TrainingCancelled(Exception):
    """Raised when should_stop() returned True; the partial pair is not saved."""


Callback = Callable[[Progress], None]


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def training_autocast(device: torch.device, dtype: str):
    """Training precision; scoring follows the pair's own policy (evaluate.scoring_precision)."""
    if dtype == "bf16" or (dtype == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# --- building blocks ---------------------------------------------------------------------------


def build_split(cfg: TrainConfig, bench: Benchmark) -> MembershipSplit:
    asked = {"members": cfg.n_members, "external": cfg.n_external, "calibration": cfg.n_calibration}
    if any(v is None for v in asked.values()):
        defaults = default_split_sizes(cfg.dataset, len(bench.train_images))
        asked = {k: defaults[k] if v is None else v for k, v in asked.items()}
    return make_split(len(bench.train_images), len(bench.test_images), asked["members"], asked["external"],
                      asked["calibration"], seed=cfg.seed)


def build_pair(cfg: TrainConfig, bench: Benchmark, split: MembershipSplit) -> AuditedPair:
    config = PairConfig(
        backbone=cfg.backbone,
        num_classes=len(bench.class_names),
        in_chans=bench.channels,
        image_size=bench.image_size,
        mean=list(bench.mean),
        std=list(bench.std),
        class_names=list(bench.class_names),
        setup="custom" if cfg.taps else cfg.setup,
        taps=list(cfg.taps),
        backbone_kwargs=dict(cfg.backbone_kwargs),
        head=cfg.head_config().to_dict(),
        dataset=_portable_dataset(cfg.dataset),
        split=split.to_config(),
    )
    return AuditedPair(config)


def _optimizer(cfg: TrainConfig, params: list[dict]) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer, total_steps: int):
    peaks = [g["lr"] for g in opt.param_groups]
    if cfg.schedule == "onecycle":
        # At least two warm-up steps: OneCycleLR divides by zero when pct_start * total_steps == 1 (4 steps).
        pct_start = max(0.25, 2 / total_steps) if total_steps >= 3 else 0.25
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=peaks, total_steps=total_steps, pct_start=pct_start)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def _augment(x: torch.Tensor, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random 2-pixel translation (and horizontal flip) per sample, on the device, no Python per sample."""
    n, _, h, w = x.shape
    padded = F.pad(x, (2, 2, 2, 2), mode="reflect")
    dx = torch.randint(0, 5, (n,), generator=generator).to(x.device)
    dy = torch.randint(0, 5, (n,), generator=generator).to(x.device)
    rows = (torch.arange(h, device=x.device).view(1, h) + dy.view(n, 1)).view(n, 1, h, 1).expand(n, x.shape[1], h, w + 4)
    cols = (torch.arange(w, device=x.device).view(1, w) + dx.view(n, 1)).view(n, 1, 1, w).expand(n, x.shape[1], h, w)
    out = padded.gather(2, rows).gather(3, cols)
    if flip:
        mask = (torch.rand(n, generator=generator) < 0.5).to(x.device).view(n, 1, 1, 1)
        out = torch.where(mask, out.flip(3), out)
    return out


class _Monitor:
    """Per epoch: the trace head's accuracy/AUC on (part of) the calibration split, task accuracy on the test split."""

    def __init__(self, bench: Benchmark, split: MembershipSplit, samples: int, device: torch.device):
        self.cal_m = bench.train_images[split.calibration_members[:samples]].to(device)
        self.cal_n = bench.train_images[split.calibration_nonmembers[:samples]].to(device)
        self.test_x = bench.test_images[:samples].to(device)
        self.test_y = bench.test_labels[:samples].to(device)

    @torch.no_grad()
    def __call__(self, pair: AuditedPair) -> dict[str, float]:
        pair.eval()
        out = {"test_accuracy": float((pair.classify(pair.normalize(self.test_x))[0].argmax(1) == self.test_y).double().mean())}
        if pair.head.trace is not None:
            m, n = (pair.head.trace(pair.classify(pair.normalize(x))[1]).float().cpu() for x in (self.cal_m, self.cal_n))
            out |= {"cal_trace_accuracy": balanced_accuracy(m, n, fit_threshold(m, n)), "cal_trace_auc": roc_auc(m, n)}
        return out


# --- the two training phases ---------------------------------------------------------------------


def _run_epochs(phase: str, cfg: TrainConfig, pair: AuditedPair, data: dict[str, torch.Tensor], monitor: _Monitor,
                device: torch.device, callback: Callback, should_stop: Callable[[], bool], history: list[dict]) -> None:
    """phase: joint (task + membership loss, backbone and trace head), task (task loss, backbone),
    head (membership loss, trace head on the frozen backbone)."""
    epochs = cfg.head_epochs if phase == "head" else cfg.epochs
    trains_backbone, uses_task, uses_mint = phase != "head", phase != "head", phase != "task"
    members, externals = data["members"], data["externals"]
    steps = math.ceil(len(members) / cfg.batch_size)
    groups = [{"params": list(pair.backbone.parameters()), "lr": cfg.lr}] if trains_backbone else []
    if uses_mint:
        groups.append({"params": list(pair.head.trace.parameters()), "lr": cfg.lr * cfg.head_lr_mult})
    opt = _optimizer(cfg, groups)
    sched = _scheduler(cfg, opt, epochs * steps)
    gen = torch.Generator().manual_seed(cfg.seed + {"joint": 0, "task": 1, "head": 2}[phase])
    flip = cfg.augment and cfg.dataset not in ("mnist", "svhn")
    norms: dict[str, float] = {}
    callback(Progress("phase", phase, 0, epochs, message=f"{phase} training: {epochs} epochs of {steps} steps"))

    for epoch in range(1, epochs + 1):
        pair.train()
        if not trains_backbone:
            pair.backbone.eval()  # frozen: BatchNorm statistics stay as the audited model has them
        t0 = time.perf_counter()
        perm_m = members[torch.randperm(len(members), generator=gen).to(members.device)]
        # Externals are drawn without replacement and wrap around when pool E is smaller than D.
        perm_e = externals[torch.randperm(len(externals), generator=gen).to(externals.device)]
        perm_e = perm_e.repeat(math.ceil(len(members) / len(externals)))
        sums = dict.fromkeys(("task_loss", "mint_loss", "task_correct", "mint_correct"), 0.0)
        seen = 0
        for step in range(steps):
            if should_stop():
                raise TrainingCancelled(f"stopped at {phase} epoch {epoch}, step {step}")
            m_idx = perm_m[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            nm = len(m_idx)
            idx = torch.cat([m_idx, perm_e[step * cfg.batch_size : step * cfg.batch_size + nm]]) if uses_mint else m_idx
            x = pair.normalize(data["images"][idx])
            if cfg.augment:
                x = _augment(x, flip, gen)
            x = x.contiguous(memory_format=torch.channels_last)
            y = data["labels"][m_idx]
            target = torch.cat([torch.ones(nm, device=device), torch.zeros(len(idx) - nm, device=device)])

            with training_autocast(device, cfg.dtype), torch.set_grad_enabled(True):
                with torch.no_grad() if not trains_backbone else contextlib.nullcontext():
                    logits, maps = pair.classify(x)
                trace = pair.head.trace(maps) if uses_mint else None
            task_loss = F.cross_entropy(logits[:nm].float(), y)
            mint_loss = F.binary_cross_entropy_with_logits(trace.float(), target) if uses_mint else torch.zeros(())
            if not norms:
                initial = cfg.loss_norm == "initial"
                norms = {"task": task_loss.item() if initial else 1.0, "mint": mint_loss.item() if initial else 1.0}
            # The joint loss, visible: each term divided by its first-step value (paper) or raw.
            loss = (task_loss / norms["task"] if uses_task else 0.0) + \
                   (cfg.mint_weight * mint_loss / norms["mint"] if uses_mint else 0.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()

            sums["task_loss"] += task_loss.item() * nm
            sums["mint_loss"] += mint_loss.item() * nm
            sums["task_correct"] += (logits[:nm].argmax(1) == y).sum().item()
            if uses_mint:
                sums["mint_correct"] += ((trace > 0).float() == target).float().mean().item() * nm
            seen += nm
            callback(Progress("step", phase, epoch, epochs, step + 1, steps,
                              {"task_loss": task_loss.item(), "mint_loss": mint_loss.item()}))
        record = {"phase": phase, "epoch": epoch,
                  "task_loss": sums["task_loss"] / seen, "mint_loss": sums["mint_loss"] / seen,
                  "train_task_accuracy": sums["task_correct"] / seen, "train_mint_accuracy": sums["mint_correct"] / seen,
                  **monitor(pair), "seconds": time.perf_counter() - t0}
        history.append(record)
        callback(Progress("epoch", phase, epoch, epochs, steps, steps, record))


@torch.no_grad()
def write_memories(pair: AuditedPair, bench: Benchmark, split: MembershipSplit, views: int, seed: int,
                   callback: Callback, chunk: int = 4096) -> dict:
    """Fit each memory's whitening on the training images, then write members and externals, as is and edited."""
    if not pair.head.memories:
        return {}
    device = pair.mean.device
    train = torch.cat([split.members, split.external])
    for memory in pair.head.memories.values():
        memory.fit_projection(pair.normalize(bench.train_images[train].to(device)))
    batches = ((bench.train_images[split.members], True), (bench.train_images[split.external], False))
    total = (1 + views) * len(train)
    done = 0
    for images, member in batches:
        for start in range(0, len(images), chunk):
            part = images[start : start + chunk]
            # A member's edited views are members, an external's non-members (amint.edits.random_edit).
            versions = [part] + [random_edits(part, pair.config, seed=seed + 7919 * v + start + (0 if member else 1 << 20))
                                 for v in range(views)]
            for v in versions:
                x = pair.normalize(v.to(device))
                for memory in pair.head.memories.values():
                    memory.write(x, member)
                done += len(v)
            callback(Progress("step", "memory", 1, 1, done, total, message="writing the memories"))
    return {name: m.occupancy() for name, m in pair.head.memories.items()}


def _load_backbone(pair: AuditedPair, source: str) -> dict:
    """Copy another pair's backbone (and trace head, when both have one) into ``pair``; same split required."""
    other = AuditedPair.from_pretrained(source)
    if other.config.split != pair.config.split:
        raise ValueError(f"init_from pair {source} was trained on a different membership split (seed or sizes differ)")
    if (other.config.backbone, other.config.backbone_kwargs) != (pair.config.backbone, pair.config.backbone_kwargs):
        raise ValueError(f"init_from pair {source} has backbone {other.config.backbone} {other.config.backbone_kwargs}, "
                         f"not {pair.config.backbone} {pair.config.backbone_kwargs}")
    pair.backbone.load_state_dict(other.backbone.state_dict())
    if pair.head.trace is not None and other.head.trace is not None and other.config.taps == pair.config.taps:
        with contextlib.suppress(RuntimeError):  # a trace head of another width starts fresh
            pair.head.trace.load_state_dict(other.head.trace.state_dict())
    # Its own training record travels along: the final pair says how its backbone was trained.
    return {"source": _portable(source), "training": other.config.training}


def _portable_dataset(dataset: str) -> str:
    """A registry name as is; an image folder by its own name only (no local path in a published pair)."""
    kind, _, path = dataset.partition(":")
    return f"{kind}:{Path(path).name}" if kind == "imagefolder" and path else dataset


def _portable(source: str) -> str:
    """A Hub id as is; a local folder by its name only: a saved pair records no local paths."""
    return Path(source).name if Path(source).expanduser().exists() else source


# --- the whole run -------------------------------------------------------------------------------


def train_pair(
    cfg: TrainConfig,
    callback: Callback | None = None,
    should_stop: Callable[[], bool] | None = None,
    bench: Benchmark | None = None,
) -> AuditedPair:
    """Train a pair as ``cfg`` says, calibrate it, evaluate it, and save it to ``cfg.out``."""
    cfg.validate()
    callback = callback or (lambda p: None)
    should_stop = should_stop or (lambda: False)
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)

    bench = bench or load_benchmark(cfg.dataset, cfg.data_root)
    split = build_split(cfg, bench)
    # Small benchmarks live on the device: one copy, uint8, normalised per batch.
    data = {
        "images": bench.train_images.to(device),
        "labels": bench.train_labels.to(device),
        "members": split.members.to(device),
        "externals": split.external.to(device),
    }
    monitor = _Monitor(bench, split, cfg.monitor_samples, device)

    pair = build_pair(cfg, bench, split)
    origin = _load_backbone(pair, cfg.init_from) if cfg.init_from else None
    # channels_last: faster convolutions on CUDA and, for these small nets, on CPU too (benchmarks/).
    pair = pair.to(device, memory_format=torch.channels_last)
    history: list[dict] = []
    t0 = time.perf_counter()
    if cfg.epochs:
        phase = "joint" if cfg.mode == "active" else "task"
        _run_epochs(phase, cfg, pair, data, monitor, device, callback, should_stop, history)
    if cfg.head_epochs and pair.head.trace is not None:
        _run_epochs("head", cfg, pair, data, monitor, device, callback, should_stop, history)
    pair.eval()
    occupancy = write_memories(pair, bench, split, cfg.memory_views, cfg.seed, callback)
    train_seconds = time.perf_counter() - t0

    callback(Progress("phase", "calibrate", 0, 0, message="calibrating the readout and threshold, evaluating"))
    fitted = calibrate(pair, bench, split, cfg.target_fpr)
    pair.config.threshold = fitted["threshold"]
    pair.config.threshold_fpr = fitted["threshold_fpr"]
    pair.config.calibration = fitted["calibration"]
    pair.config.metrics = evaluate_pair(pair, bench, split)
    pair.config.training = {
        "config": asdict(cfg) | {"out": None, "data_root": None,
                                 "init_from": _portable(cfg.init_from) if cfg.init_from else None},
        "history": history,
        "memory_occupancy": occupancy,
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "train_seconds": round(train_seconds, 1),
        "init_from": origin,
        "parameters": {
            "backbone": sum(p.numel() for p in pair.backbone.parameters()),
            "head": sum(p.numel() for p in pair.head.parameters()),
        },
    }
    pair = pair.cpu().to(memory_format=torch.contiguous_format)
    if cfg.out:
        pair.save_pretrained(cfg.out)
    callback(Progress("done", "done", cfg.epochs, cfg.epochs, metrics=pair.config.metrics))
    return pair
