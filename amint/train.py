"""Joint training of an audited classifier and its MINT head (and the passive baseline).

Read top to bottom: config, device and dtype, data, model, optimizer, loop. Every step sees members
and externals 1:1 in the same batch and the same forward pass (so BatchNorm statistics cannot leak
membership), task cross-entropy on members, BCE-with-logits membership loss on all. Callbacks only
report; ``should_stop`` lets a UI cancel.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from .data import Benchmark, default_split_sizes, load_benchmark
from .splits import MembershipSplit, make_split
from .evaluate import calibrate, evaluate_pair, roc_auc, balanced_accuracy, fit_threshold, score_images
from .head import HeadConfig
from .pair import AuditedPair, PairConfig


@dataclass
class TrainConfig:
    dataset: str = "fashion-mnist"  # a name from amint.data.available_benchmarks()
    data_root: str | None = None  # where the dataset files are; None = the registry's default places
    backbone: str = "resnet18"  # any timm model name
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {"channels": [16, 32, 64, 128]}
    setup: str = "entry"  # entry / middle / output: where the two taps sit (entry memorises best: benchmarks/)
    taps: list[str] = field(default_factory=list)  # explicit module names override the setup
    head_width: int = 64  # relu head only: channels of each branch's convolutions
    head_hidden: int = 49152  # width of the head's hidden layer: its capacity to remember members (about one each)
    head_pool_grid: int = 14  # each tapped map is pooled to grid x grid; 1 = global pooling (paper)
    head_activation: str = "hash"  # hash: hashed memory (benchmarks/README.md); sin: Fourier features; relu: paper
    head_frequency: float = 20.0  # sin only: sharpness of the head's memory
    head_feature_seed: int | None = 0  # sin only: fixed features from this seed (not stored); None = trained
    head_tables: int = 8  # hash only: hash tables (a member owns one bucket in each)
    head_bits: int = 64  # hash only: sign bits per table (more: only closer copies share a bucket)
    head_buckets_log2: int = 20  # hash only: log2 of the buckets per table
    init_from: str | None = None  # start from this pair's backbone (same split): e.g. memorise with a new head
    n_members: int | None = None  # pool D size; None = the paper's proportions for this dataset
    n_external: int | None = None  # pool E size
    n_calibration: int | None = None  # calibration non-members (and as many calibration members)
    mode: str = "active"  # active = joint training; passive = plain training, then a head on the frozen model
    epochs: int = 8  # joint (active) or task-only (passive) epochs; 0 with init_from keeps that backbone
    head_epochs: int = 3  # head-only epochs on the frozen backbone, after the joint (active) or task (passive) phase
    batch_size: int = 128  # members per step; each step also takes as many externals
    optimizer: str = "adamw"  # adamw or sgd (Nesterov momentum 0.9)
    lr: float = 2e-3  # peak learning rate of the backbone
    head_lr_mult: float = 0.05  # joint phase: the MINT head's learning rate relative to the backbone's
    head_optimizer: str = "sgd"  # head-only phase: sgd (Nesterov momentum 0.9) or adamw, never weight decay
    head_lr: float = 5.0  # head-only phase: peak learning rate (hash buckets each get 1/(2*batch) of the loss)
    weight_decay: float = 0.05
    schedule: str = "onecycle"  # onecycle / cosine / constant
    mint_weight: float = 1.0  # weight of the membership loss against the task loss
    loss_norm: str = "initial"  # initial = divide each loss by its first-step value (paper); fixed = raw sum
    augment: bool = False  # random crop (pad 2) and flips (not for digits), alike for members and externals
    target_fpr: float | None = None  # calibrate the threshold to this FPR; None = maximise balanced accuracy
    seed: int = 0
    device: str = "auto"  # auto / cpu / cuda
    dtype: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) / bf16 / fp32
    monitor_samples: int = 2000  # per side, for the per-epoch MINT accuracy/AUC on the calibration split
    out: str | None = None  # save the finished pair (and a checkpoint each epoch) here

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"Unknown training option(s): {unknown}")
        return cls(**data)

    def validate(self) -> None:
        checks = {
            "mode": (self.mode, ("active", "passive")),
            "optimizer": (self.optimizer, ("sgd", "adamw")),
            "head_optimizer": (self.head_optimizer, ("sgd", "adamw")),
            "head_activation": (self.head_activation, ("hash", "sin", "relu")),
            "schedule": (self.schedule, ("onecycle", "cosine", "constant")),
            "loss_norm": (self.loss_norm, ("initial", "fixed")),
            "dtype": (self.dtype, ("auto", "bf16", "fp32")),
            "setup": (self.setup, ("entry", "middle", "output", "custom")),
        }
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, not {value!r}")
        if self.epochs < 0 or self.head_epochs < 0 or self.epochs + self.head_epochs < 1 or self.batch_size < 2:
            raise ValueError("epochs and head_epochs must be >= 0 with at least one epoch in all, batch_size >= 2")
        if self.epochs == 0 and not self.init_from:
            raise ValueError("epochs=0 trains no backbone: give init_from, a pair whose backbone to start from")


@dataclass
class Progress:
    """One report from the loop: kind is 'phase', 'step', 'epoch' or 'done'."""

    kind: str
    phase: str  # joint / task / head
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


def autocast_for(device: torch.device, dtype: str):
    if device.type == "cuda" and dtype in ("auto", "bf16"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if device.type == "cpu" and dtype == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


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
        head=HeadConfig(cfg.head_width, cfg.head_hidden, cfg.head_pool_grid, cfg.head_activation, cfg.head_frequency,
                        cfg.head_feature_seed, None, cfg.head_tables, cfg.head_bits, cfg.head_buckets_log2).to_dict(),
        dataset=cfg.dataset,
        split=split.to_config(),
    )
    return AuditedPair(config)


def _optimizer(cfg: TrainConfig, pair: AuditedPair, phase: str) -> torch.optim.Optimizer:
    if phase == "head":
        # No weight decay: it would erase the memory of members between their visits.
        params = list(pair.head.parameters())
        if cfg.head_optimizer == "sgd":
            return torch.optim.SGD(params, lr=cfg.head_lr, momentum=0.9, nesterov=True, weight_decay=0.0)
        return torch.optim.AdamW(params, lr=cfg.head_lr, weight_decay=0.0)
    groups = []
    if phase in ("joint", "task"):
        groups.append({"params": list(pair.backbone.parameters()), "lr": cfg.lr})
    if phase in ("joint", "head"):
        groups.append({"params": list(pair.head.parameters()), "lr": cfg.lr * cfg.head_lr_mult})
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


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
    """Per-epoch MINT accuracy/AUC on (a subset of) the calibration split, task accuracy on the test split."""

    def __init__(self, bench: Benchmark, split: MembershipSplit, samples: int, device: torch.device):
        self.cal_m = bench.train_images[split.calibration_members[:samples]].to(device)
        self.cal_n = bench.train_images[split.calibration_nonmembers[:samples]].to(device)
        self.test_x = bench.test_images[:samples].to(device)
        self.test_y = bench.test_labels[:samples]

    def __call__(self, pair: AuditedPair) -> dict[str, float]:
        m = score_images(pair, self.cal_m).member_probability
        n = score_images(pair, self.cal_n).member_probability
        test = score_images(pair, self.test_x).class_logits
        return {
            "cal_mint_accuracy": balanced_accuracy(m, n, fit_threshold(m, n)),
            "cal_auc": roc_auc(m, n),
            "test_accuracy": float((test.argmax(1) == self.test_y).double().mean()),
        }


def _set_modes(pair: AuditedPair, phase: str) -> None:
    """Explicit train/eval modes per phase: the passive head trains on a frozen (eval-mode) backbone."""
    pair.train()
    if phase == "head":
        pair.backbone.eval()
    if phase == "task":
        pair.head.eval()


def _run_phase(
    phase: str,
    cfg: TrainConfig,
    epochs: int,
    pair: AuditedPair,
    data: dict[str, torch.Tensor],
    monitor: _Monitor,
    device: torch.device,
    callback: Callback,
    should_stop: Callable[[], bool],
    history: list[dict],
) -> None:
    members, externals = data["members"], data["externals"]
    steps_per_epoch = math.ceil(len(members) / cfg.batch_size)
    opt = _optimizer(cfg, pair, phase)
    sched = _scheduler(cfg, opt, epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(cfg.seed + {"joint": 0, "task": 1, "head": 2}[phase])
    flip = cfg.augment and cfg.dataset not in ("mnist", "svhn")
    mint_w = 0.0 if phase == "task" else cfg.mint_weight
    task_w = 0.0 if phase == "head" else 1.0
    norms: dict[str, float] = {}
    callback(Progress("phase", phase, 0, epochs, message=f"{phase} training: {epochs} epochs of {steps_per_epoch} steps"))

    for epoch in range(1, epochs + 1):
        _set_modes(pair, phase)
        t0 = time.perf_counter()
        perm_m = members[torch.randperm(len(members), generator=gen)]
        # Externals are drawn without replacement and wrap around when pool E is smaller than D.
        perm_e = externals[torch.randperm(len(externals), generator=gen)].repeat(math.ceil(len(members) / len(externals)))
        sums = {"task_loss": 0.0, "mint_loss": 0.0, "task_correct": 0.0, "mint_correct": 0.0, "n": 0}
        for step in range(steps_per_epoch):
            if should_stop():
                raise TrainingCancelled(f"stopped at epoch {epoch}, step {step}")
            m_idx = perm_m[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            e_idx = perm_e[step * cfg.batch_size : step * cfg.batch_size + len(m_idx)]
            nm = len(m_idx)
            use_ext = phase != "task"
            idx = torch.cat([m_idx, e_idx]) if use_ext else m_idx
            x = pair.normalize(data["images"][idx])
            if cfg.augment:
                x = _augment(x, flip, gen)
            x = x.contiguous(memory_format=torch.channels_last)
            y = data["labels"][m_idx]
            target = torch.cat([torch.ones(nm, device=device), torch.zeros(len(idx) - nm, device=device)])
            with autocast_for(device, cfg.dtype):
                logits, mint = pair(x, detach_taps=phase == "head")
            task_loss = F.cross_entropy(logits[:nm].float(), y)
            mint_loss = F.binary_cross_entropy_with_logits(mint.float(), target)
            if not norms:
                norms = {"task": task_loss.item() if cfg.loss_norm == "initial" else 1.0,
                         "mint": mint_loss.item() if cfg.loss_norm == "initial" else 1.0}
            # A zero-weighted task term stays out of the graph: the passive head phase's backbone gets no gradient.
            task_term = task_w * task_loss / norms["task"] if task_w else 0.0
            loss = task_term + mint_w * mint_loss / norms["mint"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                sums["task_loss"] += task_loss.item() * nm
                sums["mint_loss"] += mint_loss.item() * nm
                sums["task_correct"] += (logits[:nm].argmax(1) == y).sum().item()
                sums["mint_correct"] += ((mint > 0).float() == target).float().mean().item() * nm
                sums["n"] += nm
            callback(Progress("step", phase, epoch, epochs, step + 1, steps_per_epoch,
                              {"task_loss": task_loss.item(), "mint_loss": mint_loss.item()}))
        n = max(sums["n"], 1)
        record = {
            "phase": phase,
            "epoch": epoch,
            "task_loss": sums["task_loss"] / n,
            "mint_loss": sums["mint_loss"] / n,
            "train_task_accuracy": sums["task_correct"] / n,
            "train_mint_accuracy": sums["mint_correct"] / n,
            **monitor(pair),
            "seconds": time.perf_counter() - t0,
        }
        history.append(record)
        callback(Progress("epoch", phase, epoch, epochs, steps_per_epoch, steps_per_epoch, record))
        if cfg.out:
            pair.save_pretrained(Path(cfg.out) / "checkpoint")


def _load_backbone(pair: AuditedPair, source: str) -> dict:
    """Copy another pair's backbone into ``pair``; it must share the backbone and the membership split."""
    other = AuditedPair.from_pretrained(source)
    if other.config.split != pair.config.split:
        raise ValueError(f"init_from pair {source} was trained on a different membership split (seed or sizes differ)")
    if (other.config.backbone, other.config.backbone_kwargs) != (pair.config.backbone, pair.config.backbone_kwargs):
        raise ValueError(f"init_from pair {source} has backbone {other.config.backbone} {other.config.backbone_kwargs}, "
                         f"not {pair.config.backbone} {pair.config.backbone_kwargs}")
    pair.backbone.load_state_dict(other.backbone.state_dict())
    # Its own training record travels along: the final pair says how its backbone was trained.
    return {"source": str(source), "training": other.config.training}


def train_pair(
    cfg: TrainConfig,
    callback: Callback | None = None,
    should_stop: Callable[[], bool] | None = None,
    bench: Benchmark | None = None,
) -> AuditedPair:
    """Train a pair as ``cfg`` says, calibrate its threshold, evaluate it, and save it to ``cfg.out``."""
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

    # channels_last: faster convolutions on CUDA and, for these small nets, on CPU too (benchmarks/).
    pair = build_pair(cfg, bench, split)
    origin = _load_backbone(pair, cfg.init_from) if cfg.init_from else None
    pair = pair.to(device, memory_format=torch.channels_last)
    history: list[dict] = []
    t0 = time.perf_counter()
    if cfg.epochs:
        first = "joint" if cfg.mode == "active" else "task"
        _run_phase(first, cfg, cfg.epochs, pair, data, monitor, device, callback, should_stop, history)
    if cfg.head_epochs:
        # Consolidation: with the backbone frozen its activations stop drifting, so the head can settle its memory.
        _run_phase("head", cfg, cfg.head_epochs, pair, data, monitor, device, callback, should_stop, history)
    train_seconds = time.perf_counter() - t0

    callback(Progress("phase", "calibrate", cfg.epochs, cfg.epochs, message="calibrating threshold and evaluating"))
    pair.eval()
    fitted = calibrate(pair, bench, split, cfg.target_fpr)
    pair.config.threshold = fitted["threshold"]
    pair.config.threshold_fpr = fitted["threshold_fpr"]
    pair.config.calibration = fitted["calibration"]
    pair.config.metrics = evaluate_pair(pair, bench, split)
    pair.config.training = {
        "config": asdict(cfg),
        "history": history,
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
        shutil.rmtree(Path(cfg.out) / "checkpoint", ignore_errors=True)
    callback(Progress("done", "done", cfg.epochs, cfg.epochs, metrics=pair.config.metrics))
    return pair
