"""TrainConfig: every setting of a training run, with its help text (the CLI's --help reads it)."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Callable

from .head_config import HeadConfig

MODES = ("active", "passive", "untrained")


def option(default: Any = MISSING, help: str = "", factory: Callable[[], Any] | None = None) -> Any:
    """A config field with its help text as metadata: the CLI's --help reads it (one source of truth)."""
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    dataset: str = option("fashion-mnist", "a name from amint.data.available_benchmarks(), or imagefolder:PATH")
    data_root: str | None = option(None, "where the dataset files are; None = the registry's default places")
    image_size: int | None = option(None, "resize the images to this square size; None = the dataset's own "
                                          "(an image folder: 64)")
    stream: str = option("auto", "auto: stream an image folder whose decoded size exceeds an eighth of the free "
                                 "memory (RAM, and the GPU's when on CUDA); on / off: always / never")
    data_workers: int = option(4, "DataLoader processes (per rank) decoding a streamed image folder's batches")
    backbone: str = option("resnet18", "any timm model name")
    backbone_kwargs: dict[str, Any] = option(factory=dict, help='e.g. {"channels": [16, 32, 64, 128]}')
    stem_stride: int = option(1, "small inputs (<= 64 px): the first convolution's stride; 2 halves the maps "
                                 "(4x fewer operations)")
    setup: str = option("entry", "entry / middle / output: where the trace head's two taps sit")
    taps: list[str] = option(factory=list, help="explicit stage names override the setup")
    head: dict[str, Any] = option(factory=lambda: HeadConfig().to_dict(),
                                  help='amint.head.HeadConfig as JSON: {"trace": {...} or null, "memories": {name: {...}}}')
    init_from: str | None = option(None, "start from this pair's backbone and trace head (same split)")
    n_members: int | None = option(None, "pool D size; None = the paper's proportions for this dataset")
    n_external: int | None = option(None, "pool E size")
    n_calibration: int | None = option(None, "calibration non-members (and as many calibration members)")
    mode: str = option("active", "active: joint training; passive: task only; untrained: a random backbone (control)")
    epochs: int = option(8, "backbone epochs (joint or task-only); 0 with init_from keeps that backbone")
    head_epochs: int = option(3, "trace-head epochs on the frozen backbone (the memories are written once)")
    memory_views: int = option(2, "random edited views of each training image written into the memories")
    batch_size: int = option(128, "members per step, over all processes (torchrun: the global batch); "
                                  "each step also takes as many externals")
    external_ratio: float = option(1.0, "externals per member in each step: 1 = as many; 0.5 = half as many, so each "
                                        "member is seen twice as often as each external (the membership loss weighs "
                                        "both classes alike)")
    optimizer: str = option("adamw", "adamw or sgd (Nesterov momentum 0.9)")
    lr: float = option(2e-3, "peak learning rate of the backbone")
    head_lr_mult: float = option(1.0, "the trace head's learning rate relative to lr, in both phases")
    weight_decay: float = option(0.05, "AdamW / SGD weight decay of the backbone and the trace head")
    schedule: str = option("onecycle", "onecycle / cosine / constant")
    cooldown_epochs: int = option(0, "schedule=constant only: the last this many backbone epochs decay the learning "
                                     "rate linearly to 0; a constant run's checkpoint resumes into a cool-down, since "
                                     "the epochs before it are the same")
    mint_weight: float = option(1.0, "weight of the membership loss against the task loss (active)")
    mint_ramp_epochs: int = option(0, "the membership loss's weight rises linearly from 0 to mint_weight over the first "
                                      "this many joint epochs (the task learned first); 0 = full weight from the start")
    ema_epochs: float = option(0.0, "keep an exponential moving average of the trained weights (backbone, trace head, "
                                    "their batch-norm statistics) with this time constant in epochs, and end the phase "
                                    "with it: it averages out the noise of full-rate steps, as a cool-down does; "
                                    "the monitor and early stopping read it; 0 = none")
    loss_norm: str = option("initial", "initial = divide each loss by its first-step value (paper); fixed = raw sum")
    edit_views: int = option(0, "random edited views (JPEG, resampling, moves, noise: amint.edits.random_edit) of "
                                "each member and external, computed once; each step shows a row as is or as one of "
                                "them, members' views as members, externals' as non-members; 0 = none")
    augment: bool = option(False, "random crop (pad 2) and flips (not for digits), alike for members and externals")
    task_augment: bool = option(False, "the same moves and flips for the task loss only: the membership loss reads every "
                                       "image as it is (one more forward pass of the members per step)")
    target_fpr: float | None = option(0.01, "calibrate the threshold to this FPR; None = maximise balanced accuracy")
    seed: int = option(0, "seeds the membership split, the initialisation, batches and edits")
    device: str = option("auto", "auto / cpu / cuda")
    dtype: str = option("auto", "training precision: auto (bf16 on CUDA, fp32 on CPU) / bf16 / fp32; scoring is fp32")
    early_stop: int = option(0, "stop a phase when the trace's calibration AUC has not improved for this many epochs, "
                                "and keep its best epoch's weights; 0 = train every epoch")
    checkpoint: str | None = option(None, "folder for a resumable checkpoint, written after every epoch; a run given "
                                          "a folder that holds one of the same config resumes from it")
    keep_every: int = option(0, "also keep the pair's weights every this many epochs in the checkpoint folder "
                                "(the epochs axis of one run); 0 = none")
    monitor_samples: int = option(2000, "per side, for the per-epoch trace-head accuracy/AUC on the calibration split")
    out: str | None = option(None, "save the finished pair here")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"Unknown training option(s): {unknown}")
        return cls(**data)

    def head_config(self) -> HeadConfig:
        return HeadConfig.from_dict(self.head)

    def validate(self) -> None:
        checks = {
            "mode": (self.mode, MODES),
            "optimizer": (self.optimizer, ("sgd", "adamw")),
            "schedule": (self.schedule, ("onecycle", "cosine", "constant")),
            "loss_norm": (self.loss_norm, ("initial", "fixed")),
            "dtype": (self.dtype, ("auto", "bf16", "fp32")),
            "setup": (self.setup, ("entry", "middle", "output", "custom")),
            "stream": (self.stream, ("auto", "on", "off")),
        }
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, not {value!r}")
        head = self.head_config()
        if self.epochs < 0 or self.head_epochs < 0 or self.memory_views < 0 or self.batch_size < 2:
            raise ValueError("epochs, head_epochs and memory_views must be >= 0, batch_size >= 2")
        if not 0 < self.external_ratio <= 1:
            raise ValueError(f"external_ratio must be in (0, 1] (externals per member in a step), not {self.external_ratio}")
        if self.cooldown_epochs < 0 or self.cooldown_epochs > self.epochs:
            raise ValueError(f"cooldown_epochs must be between 0 and epochs ({self.epochs}), not {self.cooldown_epochs}")
        if self.cooldown_epochs and self.schedule != "constant":
            raise ValueError(f"cooldown_epochs ends a constant schedule; schedule={self.schedule!r} has its own decay")
        if self.ema_epochs < 0:
            raise ValueError(f"ema_epochs is the average's time constant in epochs, >= 0 (0 = none), not {self.ema_epochs}")
        if self.early_stop < 0 or self.keep_every < 0 or self.edit_views < 0:
            raise ValueError("early_stop, keep_every and edit_views must be >= 0")
        if self.augment and self.task_augment:
            raise ValueError("augment moves every row already: choose augment or task_augment, not both")
        if not 0 <= self.mint_ramp_epochs <= max(self.epochs, 0):
            raise ValueError(f"mint_ramp_epochs must be between 0 and epochs ({self.epochs}), not {self.mint_ramp_epochs}")
        if self.keep_every and not self.checkpoint:
            raise ValueError("keep_every keeps weights in the checkpoint folder: give checkpoint too")
        if self.data_workers < 0 or (self.image_size is not None and self.image_size < 1):
            raise ValueError("data_workers must be >= 0 and image_size a positive size (or None)")
        if self.mode == "active" and self.epochs and not head.trace:
            raise ValueError("mode=active trains the backbone through the MINT head, but this head has no trace head: "
                             "its memories pass no gradient, so active would equal passive. Add a trace head "
                             '(--head \'{"trace": {}}\') or use --mode passive')
        if self.mode == "untrained" and (self.epochs or self.init_from):
            raise ValueError("mode=untrained keeps a random backbone: set epochs=0 and no init_from")
        if self.mode != "untrained" and self.epochs == 0 and not self.init_from:
            raise ValueError("epochs=0 trains no backbone: give init_from (a pair whose backbone to keep), "
                             "or mode=untrained for the random-backbone control")
