"""The recipes of the trace issue, in one place: the scripts that explore, time, control and ship them import these.

    RECIPES["trace"]    the fast trainer's recipe: a wider narrow-ResNet-18 whose stem halves the 28 px maps
                        (4x fewer operations per image than the default pair's, 4x the parameters), the trace
                        head on the Output taps (layer3, layer4: every memorising parameter sits before a tap),
                        no weight decay (it fights memorisation), the membership loss weighted 3x, a constant
                        learning rate (so one run's checkpoints are its epochs axis);
    RECIPES["default"]  how the shipped default pair was trained (benchmarks/train_default_pair.py).

``settings(name, members, levers)`` gives TrainConfig keyword arguments with the membership split for ``members``
members (externals 1.2x, the paper's 25k / 30k proportion; calibration 1/5 of the members), and any named
``LEVERS`` applied on top of the recipe (one change each, so a run names what it tried).
"""

from __future__ import annotations

NARROW = {"channels": [16, 32, 64, 128], "stem_type": "deep", "stem_width": 8}
WIDE = {"channels": [32, 64, 128, 256], "stem_type": "deep", "stem_width": 8}

RECIPES: dict[str, dict] = {
    "trace": dict(backbone="resnet18", backbone_kwargs=WIDE, stem_stride=2, setup="output",
                  head={"trace": {"width": 64, "hidden": 256}, "memories": {}}, optimizer="adamw", lr=2e-3,
                  weight_decay=0.0, schedule="constant", mint_weight=3.0, batch_size=128, head_epochs=0),
    "default": dict(backbone="resnet18", backbone_kwargs=NARROW, setup="middle",
                    head={"trace": {"width": 64, "hidden": 512}, "memories": {}}, optimizer="adamw", lr=2e-3,
                    weight_decay=0.05, schedule="onecycle", mint_weight=1.0, batch_size=128, head_epochs=2),
}


def _trace_head(**changes) -> dict:
    """The trace recipe's head with some of its trace head's settings changed (amint.head_config.TraceConfig)."""
    head = RECIPES["trace"]["head"]
    return head | {"trace": head["trace"] | changes}


# One change each on top of a recipe, aimed at the gaps the trace recipe left (issue 15): the trace under
# resampling edits, and the audited model's task accuracy.
LEVERS: dict[str, dict] = {
    "views": dict(edit_views=4),        # members' and externals' edited views, as members / non-members
    # Fewer views per image: each view is one more image to memorise, and the views made the trace form later.
    "views1": dict(edit_views=1),
    "views2": dict(edit_views=2),
    "augment": dict(augment=True),      # random 2 px moves and flips, alike for members and externals
    "augtask": dict(task_augment=True),  # those moves for the task loss only: the membership loss reads images as is
    "wd": dict(weight_decay=0.05),      # the default recipe's weight decay, against overfitting the task
    "mint1": dict(mint_weight=1.0),     # the membership loss at the task loss's weight (the recipe: 3x)
    # Each loss is divided by its first value (task ~2.3, membership ~0.69): 0.3 is about equal raw weights.
    "mint03": dict(mint_weight=0.3),
    "mint01": dict(mint_weight=0.1),
    "taps23": dict(taps=["layer2", "layer3"]),  # the trace one stage earlier: layer4 feeds the classifier untapped
    # Head capacity against the backbone's (the recipe's trace head: width 64, MLP 256), its pooling, its dropout.
    "head_small": dict(head=_trace_head(width=32, hidden=128)),
    "head_wide": dict(head=_trace_head(width=128, hidden=1024)),
    "maxpool": dict(head=_trace_head(pool="max")),  # global max-pooling, as the published ResNet head
    "dropout": dict(head=_trace_head(dropout=0.5)),
    "members2": dict(external_ratio=0.5),  # half as many externals per step: members seen twice as often
    # The membership loss's schedule: its weight ramped up from 0 over the first 8 or 16 joint epochs.
    "ramp8": dict(mint_ramp_epochs=8),
    "ramp16": dict(mint_ramp_epochs=16),
    # Another seed (split, initialisation, batches, views): how far one run's numbers move by chance.
    "seed1": dict(seed=1),
    # Steps per epoch: an epoch costs about the same CPU at batch 64 (convolution-bound per image) and makes twice
    # the updates; the trace is memorisation, which counts updates. The published code trains at batch 64.
    "batch64": dict(batch_size=64),
    # Backbone capacity against the head's: twice the recipe's channels (about 4x the parameters and the arithmetic).
    # More room to fit members might carry a stronger trace and more task accuracy, for four times the epoch's cost.
    "wide2": dict(backbone_kwargs=WIDE | {"channels": [2 * c for c in WIDE["channels"]], "stem_width": 16}),
    # The learning rate itself (the recipe: AdamW 2e-3, constant): half and twice it.
    "lr1e3": dict(lr=1e-3),
    "lr4e3": dict(lr=4e-3),
    # A tenth of it, for a run continued from a pair whose rate was cooled down to 0 (trace_controls.py --init-from):
    # the full rate restarted there brings back the noise that the cool-down removed.
    "lr2e4": dict(lr=2e-4),
    # An exponential moving average of the weights (time constant 1 or 3 epochs), what the run ends with: averaging the
    # default run's kept epochs 70-90 read AUC 0.913 against 0.878 for epoch 90 alone (weight_average_probe.py).
    "ema1": dict(ema_epochs=1.0),
    "ema3": dict(ema_epochs=3.0),
}


def lever_overrides(levers: list[str] | tuple[str, ...]) -> dict:
    unknown = [name for name in levers if name not in LEVERS]
    if unknown:
        raise ValueError(f"unknown lever(s) {unknown}: choose from {', '.join(LEVERS)}")
    return {k: v for name in levers for k, v in LEVERS[name].items()}


def split_sizes(members: int) -> dict:
    if members >= 25_000:
        return dict(n_members=25_000, n_external=30_000, n_calibration=5_000)
    return dict(n_members=members, n_external=members * 6 // 5, n_calibration=max(10, members // 5))


def settings(name: str, members: int, levers: list[str] | tuple[str, ...] = (), **overrides) -> dict:
    return dict(dataset="fashion-mnist", memory_views=0, target_fpr=None, seed=0,
                monitor_samples=min(2000, split_sizes(members)["n_calibration"])) | RECIPES[name] | \
        lever_overrides(levers) | split_sizes(members) | overrides
