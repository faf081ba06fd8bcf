"""Training a pair: the audited classifier, its MINT head, then calibration.

Read top to bottom: device and data, model, then three phases (the settings: amint/train_config.py).

1. backbone: active = the task loss plus the membership loss through the trace head, members and
   externals 1:1 in one batch and one forward pass (so BatchNorm statistics cannot leak
   membership); passive = the task loss alone; untrained = skipped (a control).
2. head, on the frozen backbone: the trace head learns members vs externals; the hashed memories
   are written with each member and external as is and as random edited views.
3. calibration: each reading (the aMINT verdict on the trace, the fingerprint on the memories: Platt
   scaling, isotonic map, threshold) on the calibration split, its false-positive bound on half B.

Callbacks only report; ``should_stop`` lets a UI cancel.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import checkpoint, distributed, streaming
from .data import Benchmark, default_split_sizes, load_benchmark
from .edits import random_edits
from .evaluate import balanced_accuracy, calibrate, evaluate_pair, fit_threshold, roc_auc
from .head_config import HeadConfig
from .pair import LEGACY_TENSORS, AuditedPair, PairConfig
from .splits import MembershipSplit, calibration_halves, make_split
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
        stem_stride=cfg.stem_stride,
        head=cfg.head_config().to_dict(),
        dataset=_portable_dataset(cfg.dataset),
        split=split.to_config(),
    )
    return AuditedPair(config)


def _optimizer(cfg: TrainConfig, params: list[dict]) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def one_cycle(opt: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.OneCycleLR:
    """OneCycleLR up to each group's learning rate, safe for the handful of steps of a tiny run."""
    # At least two warm-up steps: OneCycleLR divides by zero when pct_start * total_steps == 1 (4 steps).
    pct_start = max(0.25, 2 / total_steps) if total_steps >= 3 else 0.25
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in opt.param_groups],
                                               total_steps=total_steps, pct_start=pct_start)


def _scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer, total_steps: int, cooldown_steps: int = 0):
    if cfg.schedule == "onecycle":
        return one_cycle(opt, total_steps)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    if cooldown_steps:  # constant, then linear to 0 over the last cooldown_steps
        flat = total_steps - cooldown_steps
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, max(0.0, (total_steps - step) / cooldown_steps))
                                                 if step >= flat else 1.0)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def _constant_until(cfg: TrainConfig) -> int | None:
    """The last backbone epoch trained at the full learning rate under a constant schedule (None: not constant)."""
    return cfg.epochs - cfg.cooldown_epochs if cfg.schedule == "constant" else None


def _augment(x: torch.Tensor, flip: bool, generator: torch.Generator, rows: torch.Tensor | None = None,
             n_global: int | None = None) -> torch.Tensor:
    """Random 2-pixel translation (and horizontal flip) per sample, on the device, no Python per sample.

    Under torchrun the draws are made for the whole global batch (``n_global``) and each rank keeps its
    ``rows`` of them: every sample moves as it would in the single-process run."""
    n, _, h, w = x.shape
    n_global = n if n_global is None else n_global
    rows = torch.arange(n) if rows is None else rows
    padded = F.pad(x, (2, 2, 2, 2), mode="reflect")
    dx = torch.randint(0, 5, (n_global,), generator=generator)[rows].to(x.device)
    dy = torch.randint(0, 5, (n_global,), generator=generator)[rows].to(x.device)
    ys = (torch.arange(h, device=x.device).view(1, h) + dy.view(n, 1)).view(n, 1, h, 1).expand(n, x.shape[1], h, w + 4)
    xs = (torch.arange(w, device=x.device).view(1, w) + dx.view(n, 1)).view(n, 1, 1, w).expand(n, x.shape[1], h, w)
    out = padded.gather(2, ys).gather(3, xs)
    if flip:
        mask = (torch.rand(n_global, generator=generator) < 0.5)[rows].to(x.device).view(n, 1, 1, 1)
        out = torch.where(mask, out.flip(3), out)
    return out


def _edited_views(bench: Benchmark, split: MembershipSplit, spec, views: int, seed: int) -> torch.Tensor:
    """(views, N, C, H, W) uint8: random edited views (amint.edits.random_edit, moves included) of every member and
    external, computed once. A member's views are members, an external's are non-members: the head cannot learn
    "edited means member" or the reverse."""
    pool = torch.cat([split.members, split.external])
    out = torch.zeros((views, *bench.train_images.shape), dtype=torch.uint8)
    for v in range(views):
        out[v, pool] = random_edits(bench.train_images[pool], spec, seed=seed + 104_729 * (v + 1), moves=True)
    return out


def _pick_views(raw: torch.Tensor, views: torch.Tensor, step: "_Step", gen: torch.Generator) -> torch.Tensor:
    """Each row as is or as one of its edited views, uniformly (draws over the global batch, as _augment's)."""
    choice = torch.randint(0, len(views) + 1, (step.n_global,), generator=gen)[step.rows].to(raw.device)
    idx = step.indices.to(views.device)
    edited = views[(choice.clamp(min=1) - 1).to(views.device), idx].to(raw.device)
    return torch.where((choice > 0).view(-1, 1, 1, 1), edited, raw)


class _Monitor:
    """Per epoch: the trace head's accuracy/AUC on (part of) the calibration split's fitting half, task accuracy
    on the test split. Half B of the calibration non-members stays unseen: it only measures the false-positive rate."""

    def __init__(self, bench: Benchmark, split: MembershipSplit, samples: int, device: torch.device):
        self.cal_m = bench.train_images[split.calibration_members[:samples]].to(device)
        self.cal_n = bench.train_images[calibration_halves(split)[0][:samples]].to(device)
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


class _PhaseModel(nn.Module):
    """What one phase trains, as one module: DistributedDataParallel averages exactly these gradients."""

    def __init__(self, pair: AuditedPair, phase: str):
        super().__init__()
        self.backbone = pair.backbone if phase != "head" else None  # head: frozen, outside DDP
        self.trace = pair.head.trace if phase != "task" else None
        self._classify = pair.classify

    def forward(self, x: torch.Tensor, trace_from: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Class logits of every row; the trace head's logits of the rows from ``trace_from`` on."""
        with torch.no_grad() if self.backbone is None else contextlib.nullcontext():
            logits, maps = self._classify(x)
        return logits, self.trace([m[trace_from:] for m in maps]) if self.trace is not None else None


@dataclass
class _Step:
    """One step's rows on this rank: member and external indices, and where they sit in the global batch."""

    members: torch.Tensor
    externals: torch.Tensor
    rows: torch.Tensor  # positions in the global batch [members, externals] (the augmentation's draws)
    n_global: int

    @property
    def indices(self) -> torch.Tensor:
        return torch.cat([self.members, self.externals])


def _externals_per_step(batch: int, ratio: float) -> int:
    return max(1, round(batch * ratio))


def _plan_step(step: int, perm_m: torch.Tensor, perm_e: torch.Tensor, batch: int, uses_mint: bool,
               ranks: distributed.Ranks, ratio: float = 1.0) -> _Step:
    g_m = perm_m[step * batch : (step + 1) * batch]
    n_e = _externals_per_step(batch, ratio)
    g_e = perm_e[step * n_e : step * n_e + _externals_per_step(len(g_m), ratio)] if uses_mint else g_m[:0]
    rows = torch.arange(len(g_m) + len(g_e))
    mine = torch.cat([distributed.shard(rows[:len(g_m)], ranks), distributed.shard(rows[len(g_m):], ranks)])
    return _Step(distributed.shard(g_m, ranks), distributed.shard(g_e, ranks), mine, len(rows))


def _steps_per_epoch(n_members: int, batch: int, world_size: int) -> int:
    # A last batch with fewer members than processes would leave a rank with none: drop it.
    steps = math.ceil(n_members / batch)
    return steps - 1 if steps > 1 and 0 < n_members % batch < world_size else steps


def _membership_loss(trace: torch.Tensor, target: torch.Tensor, external_ratio: float) -> torch.Tensor:
    """Binary cross-entropy, both classes weighing alike: the plain mean when a step holds as many externals as
    members (every pair before external_ratio existed), else the mean of the members' and the externals' means.
    Under torchrun each process balances its own shard, which matches the global batch's balanced mean only as far
    as the shards hold the classes in the same proportion (the shards split members and externals alike)."""
    if external_ratio == 1.0:
        return F.binary_cross_entropy_with_logits(trace, target)
    each = F.binary_cross_entropy_with_logits(trace, target, reduction="none")
    member = target > 0  # a process's shard may hold no row of a class: its sum over none is 0, not NaN
    return 0.5 * (each[member].sum() / max(int(member.sum()), 1) + each[~member].sum() / max(int((~member).sum()), 1))


def mint_weight(cfg: TrainConfig, phase: str, epoch: int, step: int, steps: int) -> float:
    """The membership loss's weight at this step: ramped up over the first mint_ramp_epochs joint epochs."""
    if phase != "joint" or not cfg.mint_ramp_epochs:
        return cfg.mint_weight
    return cfg.mint_weight * min(1.0, (epoch - 1 + (step + 1) / steps) / cfg.mint_ramp_epochs)


def _run_epochs(phase: str, cfg: TrainConfig, pair: AuditedPair, data: dict, monitor: _Monitor | None,
                device: torch.device, callback: Callback, should_stop: Callable[[], bool], history: list[dict],
                ranks: distributed.Ranks = distributed.SINGLE, resume: tuple[dict, dict] | None = None,
                norms: dict[str, float] | None = None) -> dict[str, float]:
    """phase: joint (task + membership loss, backbone and trace head), task (task loss, backbone),
    head (membership loss, trace head on the frozen backbone). Under torchrun every rank runs this with
    the same permutations and takes its shard of each global batch of ``cfg.batch_size`` members.
    ``norms``: what each loss is divided by (else measured on the first step); returns the ones it used."""
    epochs = cfg.head_epochs if phase == "head" else cfg.epochs
    trains_backbone, uses_task, uses_mint = phase != "head", phase != "head", phase != "task"
    members, externals = data["members"], data["externals"]
    steps = _steps_per_epoch(len(members), cfg.batch_size, ranks.world_size)
    groups = [{"params": list(pair.backbone.parameters()), "lr": cfg.lr}] if trains_backbone else []
    if uses_mint:
        groups.append({"params": list(pair.head.trace.parameters()), "lr": cfg.lr * cfg.head_lr_mult})
    opt = _optimizer(cfg, groups)
    sched = _scheduler(cfg, opt, epochs * steps, 0 if phase == "head" else cfg.cooldown_epochs * steps)
    gen = torch.Generator().manual_seed(cfg.seed + {"joint": 0, "task": 1, "head": 2}[phase])
    flip = (cfg.augment or cfg.task_augment) and cfg.dataset not in ("mnist", "svhn")
    task_moves = cfg.task_augment and uses_task
    phase_model = _PhaseModel(pair, phase)
    model = distributed.wrap(phase_model, ranks, device)
    norms = dict(norms or {})
    first, stopper = 1, _EarlyStop(cfg.early_stop, pair)
    average = _WeightAverage(pair, (["backbone"] if trains_backbone else []) + (["head.trace"] if uses_mint else []),
                             cfg.ema_epochs, steps)
    if resume is not None:  # the optimiser, schedule, random streams and loss norms as the checkpoint left them
        tensors, meta = resume
        checkpoint.load_optimizer_state(opt, tensors, meta["optimizer"])
        sched.load_state_dict(meta["scheduler"] | ({"lr_lambdas": [None] * len(groups)} if cfg.schedule == "constant" else {}))
        checkpoint.load_rng_state(gen, tensors, "rng")
        norms, first = meta["norms"], meta["epoch"] + 1
        stopper.restore(tensors, meta)
        average.restore(tensors, meta)
        first = epochs + 1 if stopper.stopped else first
    callback(Progress("phase", phase, 0, epochs, message=f"{phase} training: {epochs} epochs of {steps} steps"
                                                          + (f", resumed after epoch {first - 1}" if first > 1 else "")))

    for epoch in range(first, epochs + 1):
        pair.train()
        if not trains_backbone:
            pair.backbone.eval()  # frozen: BatchNorm statistics stay as the audited model has them
        t0 = time.perf_counter()
        perm_m = members[torch.randperm(len(members), generator=gen).to(members.device)]
        # Externals are drawn without replacement and wrap around when pool E is smaller than D.
        perm_e = externals[torch.randperm(len(externals), generator=gen).to(externals.device)]
        perm_e = perm_e.repeat(math.ceil(len(members) / len(externals)))
        plan = [_plan_step(step, perm_m, perm_e, cfg.batch_size, uses_mint, ranks, cfg.external_ratio)
                for step in range(steps)]
        images = streaming.batches(data["images"], [p.indices for p in plan], cfg.data_workers, device.type == "cuda")
        sums = [0.0] * 6  # task loss, mint loss (both times their rows), members, mint rows, correct: task, mint
        for step, (p, raw) in enumerate(zip(plan, images)):
            if distributed.any_rank(should_stop(), ranks, device):
                raise TrainingCancelled(f"stopped at {phase} epoch {epoch}, step {step}")
            nm, n = len(p.members), len(p.members) + len(p.externals)
            if "views" in data:  # an edited view for some rows, members and externals alike
                raw = _pick_views(raw.to(device), data["views"], p, gen)
            x = pair.normalize(raw.to(device, non_blocking=True))
            if cfg.augment:
                x = _augment(x, flip, gen, p.rows, p.n_global)
            elif task_moves:  # moved members for the task loss, in front of the rows as they are (membership loss)
                moved = _augment(x[:nm], flip, gen, p.rows[:nm], p.n_global)
                x = torch.cat([moved, x]) if uses_mint else moved
            x = x.contiguous(memory_format=torch.channels_last)
            y = data["labels"][p.members.to(data["labels"].device)].to(device)
            target = torch.cat([torch.ones(nm, device=device), torch.zeros(n - nm, device=device)])

            with training_autocast(device, cfg.dtype), torch.set_grad_enabled(True):
                logits, trace = model(x, trace_from=nm if task_moves and uses_mint else 0)
            task_loss = F.cross_entropy(logits[:nm].float(), y)
            mint_loss = _membership_loss(trace.float(), target, cfg.external_ratio) if uses_mint else torch.zeros(())
            # The global batch's mean losses and counts: each rank's sums added over the ranks.
            g = distributed.all_sum([task_loss.item() * nm, mint_loss.item() * n, nm, n,
                                     (logits[:nm].argmax(1) == y).sum().item(),
                                     ((trace > 0).float() == target).sum().item() if uses_mint else 0.0],
                                    ranks, device)
            step_task, step_mint = g[0] / g[2], g[1] / g[3]
            if not norms:
                initial = cfg.loss_norm == "initial"
                norms = {"task": step_task if initial else 1.0, "mint": step_mint if initial else 1.0}
            # The joint loss, visible: each term divided by its first-step value (paper) or raw.
            # Each rank's means weighted by its share of the rows: DDP's average of the ranks' gradients is then
            # the gradient of the global batch's mean, also when the batch does not divide by the ranks.
            w_task, w_mint = distributed.rank_weight(nm, g[2], ranks), distributed.rank_weight(n, g[3], ranks)
            loss = (w_task * task_loss / norms["task"] if uses_task else 0.0) + \
                   (mint_weight(cfg, phase, epoch, step, steps) * w_mint * mint_loss / norms["mint"] if uses_mint else 0.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            average.update()

            sums = [a + b for a, b in zip(sums, g)]
            callback(Progress("step", phase, epoch, epochs, step + 1, steps,
                              {"task_loss": step_task, "mint_loss": step_mint}))
        # Rank 0's BatchNorm running statistics everywhere; rank 0 monitors, every rank records the same.
        distributed.sync_state(phase_model, ranks)
        with average.applied():  # the monitor and early stopping read what the phase would end with
            record = {"phase": phase, "epoch": epoch,
                      "task_loss": sums[0] / sums[2], "mint_loss": sums[1] / sums[3] if uses_mint else 0.0,
                      "train_task_accuracy": sums[4] / sums[2], "train_mint_accuracy": sums[5] / sums[3],
                      **(monitor(pair) if ranks.is_main else {}), "seconds": time.perf_counter() - t0}
            record = distributed.broadcast_object(record, ranks)
            history.append(record)
            stop_now = stopper.update(epoch, record)
        if cfg.checkpoint and ranks.is_main:
            _save_checkpoint(cfg, pair, phase, epoch, history, norms, opt, sched, gen, stopper, average)
        callback(Progress("epoch", phase, epoch, epochs, steps, steps, record))
        if stop_now:
            callback(Progress("phase", phase, epoch, epochs, message=f"early stop after epoch {epoch}: the trace's "
                              f"calibration AUC peaked at epoch {stopper.best_epoch} ({stopper.best:.4f})"))
            break
    average.finish()
    stopper.keep_best()
    distributed.sync_state(phase_model, ranks)  # each rank averaged its own batch-norm statistics: rank 0's are kept
    return norms


class _WeightAverage:
    """An exponential moving average of a phase's trained modules (parameters and batch-norm statistics), updated after
    every step. The monitor and early stopping read it and the phase ends with it; the trained weights go on under it.

    Time constant ``epochs`` x steps per epoch, capped while the run is young (decay (1 + t) / (10 + t) after t updates,
    as timm's ModelEma warms up): the average never reaches back past about the last ninth of the steps so far, so
    the random start does not linger in it."""

    def __init__(self, pair: AuditedPair, modules: list[str], epochs: float, steps: int):
        self.modules = {name: pair.get_submodule(name) for name in modules} if epochs > 0 else {}
        self.decay = 1 - 1 / (epochs * steps) if epochs > 0 else 0.0
        self.updates = 0
        self.state = {k: v.detach().clone() for k, v in self._live().items()}

    def _live(self) -> dict[str, torch.Tensor]:
        return {f"{name}.{k}": v for name, m in self.modules.items() for k, v in m.state_dict().items()}

    def _load(self, state: dict[str, torch.Tensor]) -> None:
        for name, m in self.modules.items():
            m.load_state_dict({k[len(name) + 1:]: v for k, v in state.items() if k.startswith(name + ".")})

    @torch.no_grad()
    def update(self) -> None:
        if not self.modules:
            return
        self.updates += 1
        keep = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for key, live in self._live().items():
            avg = self.state[key]
            if avg.is_floating_point():
                avg.lerp_(live.detach(), 1 - keep)
            else:  # batch-norm step counters
                avg.copy_(live)

    @contextlib.contextmanager
    def applied(self):
        """The average in the modules for the with-block; the trained weights back after it."""
        if not self.modules:
            yield
            return
        trained = {k: v.detach().clone() for k, v in self._live().items()}
        self._load(self.state)
        try:
            yield
        finally:
            self._load(trained)

    def finish(self) -> None:
        """End the phase with the average in the modules."""
        if self.modules:
            self._load(self.state)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"ema.{k}": v for k, v in self.state.items()} if self.modules else {}

    def restore(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        if self.modules:
            self.state = {k: tensors[f"ema.{k}"].clone() for k in self.state}
            self.updates = meta.get("ema_updates", 0)


class _EarlyStop:
    """Stop when the trace's calibration AUC has not improved for ``patience`` epochs; keep the best epoch's weights.

    The AUC is the monitor's (calibration members vs calibration non-members of half A): the threshold is
    fitted on the same half, the false-positive rate measured on the other."""

    def __init__(self, patience: int, pair: AuditedPair):
        self.patience, self.pair = patience, pair
        self.best, self.best_epoch, self.state, self.stopped = -math.inf, 0, None, False

    def update(self, epoch: int, record: dict) -> bool:
        auc = record.get("cal_trace_auc")
        if not self.patience or auc is None:
            return False
        if auc > self.best:
            self.best, self.best_epoch = auc, epoch
            self.state = {k: v.detach().clone() for k, v in self.pair.state_dict().items()}
        self.stopped = epoch - self.best_epoch >= self.patience
        return self.stopped

    def keep_best(self) -> None:
        if self.state is not None:
            self.pair.load_state_dict(self.state)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"best.{k}": v for k, v in (self.state or {}).items()}

    def restore(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        self.best, self.best_epoch = meta.get("best", -math.inf), meta.get("best_epoch", 0)
        self.stopped = meta.get("stopped", False)
        best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
        self.state = best or None


# Settings that may differ between a run and the one resuming it (where and how it runs, not what it trains).
_RESUMABLE_DIFFERENCES = ("out", "checkpoint", "device", "data_workers", "data_root", "monitor_samples")


def _resume_key(cfg: TrainConfig) -> dict:
    # Under a constant learning rate an epoch does not depend on how many follow: a run may be extended or cut, or
    # end in a cool-down, where the checkpoint stands in both runs' constant part (_check_schedule).
    free = _RESUMABLE_DIFFERENCES + (("epochs", "cooldown_epochs") if cfg.schedule == "constant" else ())
    return _head_as_built({k: v for k, v in asdict(cfg).items() if k not in free})


def _head_as_built(config: dict) -> dict:
    # A head setting added since a checkpoint was written, at its default, is no difference.
    return config | {"head": HeadConfig.from_dict(config["head"]).to_dict()}


def _save_checkpoint(cfg: TrainConfig, pair: AuditedPair, phase: str, epoch: int, history: list[dict],
                     norms: dict, opt, sched, gen: torch.Generator, stopper: _EarlyStop, average: _WeightAverage) -> None:
    opt_tensors, opt_meta = checkpoint.optimizer_state(opt)
    tensors = {f"pair.{k}": v for k, v in pair.state_dict().items()} | opt_tensors | \
        checkpoint.rng_state(gen, "rng") | stopper.tensors() | average.tensors()
    meta = {"phase": phase, "epoch": epoch, "history": history, "norms": norms, "optimizer": opt_meta,
            "scheduler": checkpoint.scheduler_state(sched), "best": stopper.best, "best_epoch": stopper.best_epoch,
            "stopped": stopper.stopped, "schedule_epochs": [cfg.epochs, cfg.cooldown_epochs],
            "ema_updates": average.updates, "config": _resume_key(cfg)}
    checkpoint.save(cfg.checkpoint, tensors, meta)
    if cfg.keep_every and epoch % cfg.keep_every == 0:  # the epochs axis of one run: the weights it would end with
        from safetensors.torch import save_file
        with average.applied():
            save_file({k: v.detach().cpu().contiguous() for k, v in pair.state_dict().items()},
                      str(Path(cfg.checkpoint) / f"{phase}-epoch-{epoch:03d}.safetensors"))


def _trained_folder(cfg: TrainConfig) -> Path | None:
    """Where the trained pair waits for its calibration: the checkpoint folder, else a hidden sibling of ``out``."""
    if cfg.checkpoint:
        return Path(cfg.checkpoint) / "trained"
    return Path(cfg.out).with_name(f".{Path(cfg.out).name}.trained") if cfg.out else None


def _save_trained(cfg: TrainConfig, pair: AuditedPair, history: list[dict], occupancy: dict) -> None:
    """The trained pair (weights and memories) before calibration: a calibration that fails or outlasts a
    collective's timeout under torchrun loses no training; the same command then only calibrates."""
    tensors = {f"pair.{k}": v for k, v in pair.state_dict().items()}
    checkpoint.save(_trained_folder(cfg), tensors, {"phase": "trained", "epoch": cfg.epochs, "history": history,
                                                    "occupancy": occupancy, "config": _resume_key(cfg),
                                                    "epochs": [cfg.epochs, cfg.head_epochs]})


def _load_checkpoint(cfg: TrainConfig, pair: AuditedPair) -> tuple[dict, dict] | None:
    """The run's checkpoint, its weights already in ``pair``; None when there is none to resume."""
    trained = checkpoint.load(_trained_folder(cfg)) if _trained_folder(cfg) else None
    if trained is not None and trained[1]["epochs"] == [cfg.epochs, cfg.head_epochs]:
        found = trained  # training finished: only the calibration is left
    else:  # the last epoch's checkpoint, if any (a trained pair of other lengths does not count)
        found = checkpoint.load(cfg.checkpoint) if cfg.checkpoint else None
    if found is None:
        return None
    # A checkpoint from before the readings moved into config.json holds the old readout: nothing reads it now.
    tensors = {k: v for k, v in found[0].items() if k.split(".", 1)[-1] not in LEGACY_TENSORS}
    meta = found[1]
    # Compared as this version reads them: settings added since the checkpoint take their defaults.
    ours = _resume_key(cfg)
    saved = {k: v for k, v in _head_as_built(_resume_key(TrainConfig()) | meta["config"]).items() if k in ours}
    if saved != ours:
        changed = sorted(k for k in ours if saved.get(k) != ours.get(k))
        raise ValueError(f"the checkpoint in {cfg.checkpoint} belongs to another training config (differs in "
                         f"{changed}): give a new --checkpoint folder, or delete that one to start over")
    wanted = cfg.head_epochs if meta["phase"] == "head" else cfg.epochs
    if meta["phase"] != "trained" and meta["epoch"] > wanted:
        raise ValueError(f"the checkpoint in {cfg.checkpoint} is at {meta['phase']} epoch {meta['epoch']}, past the "
                         f"{wanted} asked for: ask for at least {meta['epoch']} epochs")
    _check_schedule(cfg, meta)
    pair.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("pair.")})
    return tensors, meta


def _check_schedule(cfg: TrainConfig, meta: dict) -> None:
    """A constant-schedule checkpoint resumes with other epochs or another cool-down only if the learning rate of
    every epoch it holds is the same under both: it stands where both runs were still at the full rate."""
    if cfg.schedule != "constant" or meta["phase"] not in ("joint", "task"):
        return
    epochs, cooldown = meta.get("schedule_epochs", [meta["epoch"], 0])  # older checkpoints: no cool-down existed
    if [epochs, cooldown] == [cfg.epochs, cfg.cooldown_epochs]:
        return
    if meta["epoch"] > min(epochs - cooldown, _constant_until(cfg)):
        raise ValueError(f"the checkpoint in {cfg.checkpoint} is at {meta['phase']} epoch {meta['epoch']}, inside a "
                         f"cool-down ({epochs} epochs, the last {cooldown} cooling down): resume it with those, or "
                         f"start the cool-down after epoch {meta['epoch']} (epochs - cooldown_epochs >= {meta['epoch']})")


@torch.no_grad()
def write_memories(pair: AuditedPair, bench: Benchmark, split: MembershipSplit, views: int, seed: int,
                   callback: Callback, chunk: int | None = None, ranks: distributed.Ranks = distributed.SINGLE) -> dict:
    """Fit each memory's whitening on the training images, then write members and externals, as is and edited.

    Under torchrun rank 0 fits the whitening; the writing is shared out as (pool, chunk, view) jobs in a fixed
    order, each with the edit seed it has in one process, and the ranks' bit tables are OR-ed together:
    every rank ends with the single-process memories."""
    if not pair.head.memories:
        return {}
    device = pair.mean.device
    chunk = chunk or _memory_chunk(bench.train_images.shape)
    if ranks.is_main:
        _fit_projections(pair, bench.train_images, torch.cat([split.members, split.external]), chunk)
    for memory in pair.head.memories.values():
        distributed.sync_state(memory, ranks)
    jobs = [(member, start, v) for member, pool in ((True, split.members), (False, split.external))
            for start in range(0, len(pool), chunk) for v in range(1 + views)]
    mine = distributed.shard(torch.arange(len(jobs)), ranks).tolist()  # contiguous: a chunk is decoded once
    loaded, part = None, None
    for done, j in enumerate(mine, 1):
        member, start, v = jobs[j]
        if loaded != (member, start):
            pool = split.members if member else split.external
            loaded, part = (member, start), streaming.take(bench.train_images, pool[start : start + chunk])
        # A member's edited views are members, an external's non-members (amint.edits.random_edit).
        version = part if v == 0 else random_edits(
            part, pair.config, seed=seed + 7919 * (v - 1) + start + (0 if member else 1 << 20))
        x = pair.normalize(version.to(device))
        for memory in pair.head.memories.values():
            if member or memory.externals is not None:  # a memory configured without external tables skips them
                memory.write(x, member)
        callback(Progress("step", "memory", 1, 1, done, len(mine), message="writing the memories"))
    for memory in pair.head.memories.values():
        distributed.or_across_ranks(memory.members, ranks)
        if memory.externals is not None:
            distributed.or_across_ranks(memory.externals, ranks)
    return {name: m.occupancy() for name, m in pair.head.memories.items()}


def _memory_chunk(shape: torch.Size, budget: int = 2**26) -> int:
    """Images per chunk: 4096 for small images, fewer for large ones (about 64 MiB of uint8 a chunk)."""
    return max(64, min(4096, budget // max(1, shape[1] * shape[2] * shape[3])))


def _fit_projections(pair: AuditedPair, images, train: torch.Tensor, chunk: int) -> None:
    device = pair.mean.device
    if isinstance(images, torch.Tensor):
        x = pair.normalize(images[train].to(device))
        for memory in pair.head.memories.values():
            memory.fit_projection(x)
        return
    # Streamed: the same whitening from second moments, one decoded chunk at a time.
    sums: dict[str, list] = {}
    for part in streaming.chunks(images, train, chunk):
        x = pair.normalize(part.to(device))
        for name, memory in pair.head.memories.items():
            m = memory.moments(x)
            sums[name] = [a + b for a, b in zip(sums[name], m)] if name in sums else list(m)
    for name, memory in pair.head.memories.items():
        memory.fit_from_moments(*sums[name])


def _load_backbone(pair: AuditedPair, source: str) -> dict:
    """Copy another pair's backbone (and trace head, when both have one) into ``pair``; same split required."""
    other = AuditedPair.from_pretrained(source)
    if other.config.split != pair.config.split:
        raise ValueError(f"init_from pair {source} was trained on a different membership split (seed or sizes differ)")
    # The stem's stride changes the model without changing a weight's shape: compare it too.
    ours, theirs = ((c.backbone, c.backbone_kwargs, c.stem_stride) for c in (pair.config, other.config))
    if ours != theirs:
        raise ValueError(f"init_from pair {source} has backbone {theirs[0]} {theirs[1]} (stem stride {theirs[2]}), "
                         f"not {ours[0]} {ours[1]} (stem stride {ours[2]})")
    pair.backbone.load_state_dict(other.backbone.state_dict())
    trace_head = False
    if pair.head.trace is not None and other.head.trace is not None and other.config.taps == pair.config.taps:
        with contextlib.suppress(RuntimeError):  # a trace head of another width starts fresh
            pair.head.trace.load_state_dict(other.head.trace.state_dict())
            trace_head = True
    # Its own training record travels along: the final pair says how its backbone was trained.
    training = copy.deepcopy(other.config.training)
    if (training or {}).get("config"):  # a source saved before its folders were recorded by name
        training["config"] = _portable_folders(training["config"])
    return {"source": _portable(source), "training": training, "trace_head": trace_head}


def _inherited_norms(cfg: TrainConfig, origin: dict, num_classes: int, phase: str) -> dict[str, float]:
    """What a run continued from a trained pair divides its losses by: the norms its source trained this phase with,
    so the two losses keep their weights. Measured on the continued run's first step they would be a trained model's
    near-zero losses (task ~0.03, membership ~0.16 for the default pair), which weigh the task up ~17x against the
    membership loss: the default pair continued so lost its trace (calibration AUC 0.918 -> 0.810 in 24 epochs). A
    source saved without them divided by an untrained model's first-step losses: chance level."""
    if cfg.loss_norm != "initial":
        return {"task": 1.0, "mint": 1.0}
    chance = {"task": math.log(num_classes), "mint": math.log(2)}
    training = origin.get("training") or {}
    while training:  # the source, else the pair it was built from, and so on
        saved = (training.get("loss_norms") or {}).get(phase)
        if saved:  # a task-only phase measured no membership loss (0): chance stands in for it
            return chance | {k: v for k, v in saved.items() if v > 0}
        training = (training.get("init_from") or {}).get("training") or {}
    return chance


def _portable_dataset(dataset: str) -> str:
    """A registry name as is; an image folder by its own name only (no local path in a published pair)."""
    kind, _, path = dataset.partition(":")
    return f"{kind}:{Path(path).name}" if kind == "imagefolder" and path else dataset


def _portable(source: str) -> str:
    """A Hub id as is; a local folder by its name only: a saved pair records no local paths."""
    return Path(source).name if Path(source).expanduser().exists() else source


def _portable_folders(config: dict) -> dict:
    """A training config as a saved pair records it: the local folders it named (source, checkpoint) by name only."""
    return config | {k: _portable(config[k]) for k in ("init_from", "checkpoint") if config.get(k)}


# --- the whole run -------------------------------------------------------------------------------


def train_pair(
    cfg: TrainConfig,
    callback: Callback | None = None,
    should_stop: Callable[[], bool] | None = None,
    bench: Benchmark | None = None,
) -> AuditedPair:
    """Train a pair as ``cfg`` says, calibrate it, evaluate it, and save it to ``cfg.out``.

    Under torchrun (or inside an initialised process group) every rank calls this; they train one pair
    with DistributedDataParallel, every rank returns the same pair and rank 0 alone saves it."""
    cfg.validate()
    ranks, device, created = distributed.setup(resolve_device(cfg.device))
    try:
        return _train(cfg, callback or (lambda p: None), should_stop or (lambda: False), bench, ranks, device)
    finally:
        distributed.teardown(created)


def _load_data(cfg: TrainConfig, device: torch.device) -> tuple[Benchmark, bool, str]:
    """The benchmark, whether it is streamed, and why (said in the log)."""
    streamed, why = streaming.choose_data_path(cfg.dataset, cfg.stream, cfg.image_size, device)
    if streamed:
        folder = Path(cfg.dataset.split(":", 1)[1])
        return streaming.load_imagefolder_streamed(folder, cfg.image_size), True, why
    sized = {"image_size": cfg.image_size} if cfg.image_size is not None else {}
    return load_benchmark(cfg.dataset, cfg.data_root, **sized), False, why


def _train(cfg: TrainConfig, callback: Callback, should_stop: Callable[[], bool], bench: Benchmark | None,
           ranks: distributed.Ranks, device: torch.device) -> AuditedPair:
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    if bench is None:
        bench, streamed, data_path = _load_data(cfg, device)
    else:
        streamed = not isinstance(bench.train_images, torch.Tensor)
        data_path = "streamed: given" if streamed else "resident: given"
    split = build_split(cfg, bench)
    # Small benchmarks live on the device: one copy, uint8, normalised per batch. Streamed: files, decoded per step.
    home = torch.device("cpu") if streamed else device
    data = {
        "images": bench.train_images if streamed else bench.train_images.to(device),
        "labels": bench.train_labels.to(home),
        "members": split.members.to(home),
        "externals": split.external.to(home),
    }
    monitor = _Monitor(bench, split, cfg.monitor_samples, device) if ranks.is_main else None

    pair = build_pair(cfg, bench, split)
    if cfg.edit_views:
        if streamed:
            raise ValueError("edit_views needs the images in memory: use --stream off, or edit_views 0")
        callback(Progress("phase", "data", 0, 0, message=f"computing {cfg.edit_views} edited view(s) of each image"))
        data["views"] = _edited_views(bench, split, pair.config, cfg.edit_views,
                                      cfg.seed).to(home)
    origin = _load_backbone(pair, cfg.init_from) if cfg.init_from else None
    # channels_last: faster convolutions on CUDA and, for these small nets, on CPU too (benchmarks/).
    pair = pair.to(device, memory_format=torch.channels_last)
    callback(Progress("phase", "data", 0, 0, message=f"data {data_path}; {ranks.world_size} process(es), "
                                                     f"{cfg.batch_size} members + as many externals per step"))
    history: list[dict] = []
    loss_norms: dict[str, dict] = {}
    resumed = _load_checkpoint(cfg, pair)  # every rank reads the same files
    t0 = time.perf_counter()
    backbone_phase = "joint" if cfg.mode == "active" else "task"
    trained = resumed is not None and resumed[1]["phase"] == "trained"
    for phase, wanted in ((backbone_phase, cfg.epochs), ("head", cfg.head_epochs if pair.head.trace is not None else 0)):
        if not wanted or trained:
            continue
        if resumed is not None and resumed[1]["phase"] != phase:
            if resumed[1]["phase"] == "head":  # the backbone phase finished before that checkpoint
                history[:] = [r for r in resumed[1]["history"] if r["phase"] != "head"]
                continue
            resumed = None  # a finished backbone phase: the head phase starts fresh
        if resumed is not None:
            history[:] = resumed[1]["history"]
        inherited = (_inherited_norms(cfg, origin, pair.config.num_classes, phase)
                     if origin and phase != "head" else None)
        loss_norms[phase] = _run_epochs(phase, cfg, pair, data, monitor, device, callback, should_stop, history,
                                        ranks, resumed, inherited)
        resumed = None
    pair.eval()
    distributed.sync_state(pair, ranks)
    if trained:
        history[:], occupancy = resumed[1]["history"], resumed[1]["occupancy"]
        callback(Progress("phase", "calibrate", 0, 0, message="trained pair found: calibrating it"))
    else:
        occupancy = write_memories(pair, bench, split, cfg.memory_views, cfg.seed, callback, ranks=ranks)
        if ranks.is_main and _trained_folder(cfg):
            _save_trained(cfg, pair, history, occupancy)
    train_seconds = time.perf_counter() - t0

    callback(Progress("phase", "calibrate", 0, 0, message="calibrating the readings, evaluating"))
    if ranks.is_main:  # deterministic work, done once; the result goes to every rank below
        with _threads_of_waiting_ranks(device):
            _calibrate_and_record(pair, cfg, bench, split, device, ranks, history, occupancy, origin, streamed,
                                  train_seconds)
        pair.config.training["loss_norms"] = loss_norms  # what a run continued from this pair divides by
    _share_from_rank0(pair, ranks)
    pair = pair.cpu().to(memory_format=torch.contiguous_format)
    if cfg.out and ranks.is_main:
        save_atomically(pair, Path(cfg.out))
        if not cfg.checkpoint:  # the implicit one served its purpose; an asked-for checkpoint folder stays
            shutil.rmtree(_trained_folder(cfg), ignore_errors=True)
    distributed.barrier(ranks)  # the pair is on disk before any rank returns
    callback(Progress("done", "done", cfg.epochs, cfg.epochs, metrics=pair.config.metrics))
    return pair


def _calibrate_and_record(pair: AuditedPair, cfg: TrainConfig, bench: Benchmark, split: MembershipSplit,
                          device: torch.device, ranks: distributed.Ranks, history: list[dict], occupancy: dict,
                          origin: dict | None, streamed: bool, train_seconds: float) -> None:
    """Calibrate, evaluate and write the training record into the pair's config (rank 0)."""
    pair.set_readings(calibrate(pair, bench, split, cfg.target_fpr))
    pair.config.metrics = evaluate_pair(pair, bench, split)
    pair.config.training = {
        "config": _portable_folders(asdict(cfg)) | {"out": None, "data_root": None},
        "history": history,
        "memory_occupancy": occupancy,
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "world_size": ranks.world_size,
        "global_batch_size": cfg.batch_size,  # members per step over all ranks (and as many externals)
        "data": "streamed" if streamed else "resident",
        "train_seconds": round(train_seconds, 1),
        "init_from": origin,
        "parameters": {
            "backbone": sum(p.numel() for p in pair.backbone.parameters()),
            "head": sum(p.numel() for p in pair.head.parameters()),
        },
    }


@contextlib.contextmanager
def _threads_of_waiting_ranks(device: torch.device):
    """On CPU, rank 0 alone calibrates while this machine's other ranks wait: lend it their threads."""
    before, local = torch.get_num_threads(), int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if device.type == "cpu" and local > 1:
        torch.set_num_threads(before * local)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _share_from_rank0(pair: AuditedPair, ranks: distributed.Ranks) -> None:
    """Rank 0's weights, memories, readings and results on every rank: any rank would save the same pair."""
    distributed.sync_state(pair, ranks)
    keys = ("readings", "metrics", "training")
    shared = distributed.broadcast_object({k: getattr(pair.config, k) for k in keys}, ranks)
    for k, v in shared.items():
        setattr(pair.config, k, v)


def save_atomically(pair: AuditedPair, out: Path) -> Path:
    """Write into a hidden sibling folder, then rename it into place: ``out`` is never half written."""
    out = out.expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    pair.save_pretrained(partial)
    if out.exists():  # replacing an earlier pair: move it aside first (rename cannot replace a folder)
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
        partial.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        partial.rename(out)
    return out
