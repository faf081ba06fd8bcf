"""Audited backbones from timm, adapted to small inputs, and where the MINT taps sit.

Taps are data: a setup (Entry / Middle / Output) is a pair of indices into timm's ``feature_info``,
resolved to module names once, and the pair's config records the names. Taps are read with timm's
``forward_intermediates``, so any timm model that has it works, with stage names as taps.

The names (setups, the backbones the app offers) import without torch or timm: the app lists them
before either has loaded. timm and torch are imported when a backbone is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

SETUPS = ("entry", "middle", "output")

# Backbones the app offers by default; any timm name works from the CLI.
KNOWN_BACKBONES = (
    "resnet18",
    "resnet50",
    "mobilenetv3_large_100",
    "densenet121",
    "xception41",
    "vit_tiny_patch16_224",
)

# Below this size the stock ImageNet stem (stride 2 conv + stride 2 pool) leaves too few pixels.
SMALL_INPUT = 64


def create_backbone(
    name: str,
    num_classes: int,
    in_chans: int,
    image_size: int,
    backbone_kwargs: dict[str, Any] | None = None,
    stem_stride: int = 1,
) -> nn.Module:
    """A timm model trained from scratch, with its stem relaxed for 28-64 px inputs (first stride ``stem_stride``)."""
    import timm

    kwargs = dict(backbone_kwargs or {})
    if _is_vit(name):
        kwargs.setdefault("img_size", image_size)
        kwargs.setdefault("patch_size", 4 if image_size <= SMALL_INPUT else 16)
    try:
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs)
    except RuntimeError as e:  # timm: "Unknown model (...)"
        raise ValueError(f"Unknown backbone {name!r}: use a timm model name, e.g. one of {KNOWN_BACKBONES}") from e
    if image_size <= SMALL_INPUT and not _is_vit(name):
        _relax_stem(model, stem_stride)
    return model


def _is_vit(name: str) -> bool:
    return name.startswith(("vit_", "deit", "eva"))


def _relax_stem(model: nn.Module, stride: int = 1) -> None:
    """Set the first convolution's stride to ``stride`` and remove the stem max-pool (CIFAR-style stem)."""
    from torch import nn

    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            if module.stride != (1, 1):
                module.stride = (stride, stride)
            break
    for attr in ("maxpool", "stem_pool"):
        if isinstance(getattr(model, attr, None), nn.MaxPool2d):
            setattr(model, attr, nn.Identity())
    features = getattr(model, "features", None)
    if features is not None and isinstance(getattr(features, "pool0", None), nn.MaxPool2d):
        features.pool0 = nn.Identity()


def setup_taps(model: nn.Module, setup: str) -> list[str]:
    """Module names of the two tapped stages for an Entry / Middle / Output setup."""
    if setup not in SETUPS:
        raise ValueError(f"Unknown setup {setup!r}: choose one of {SETUPS}")
    names = [info["module"] for info in model.feature_info]
    n = len(names)
    if n < 2:
        raise ValueError("This backbone exposes fewer than two stages; pass explicit tap names")
    index = {"entry": (0, 1), "middle": (n // 2 - 1, n // 2), "output": (n - 2, n - 1)}[setup]
    return [names[i] for i in index]


def tap_indices(model: nn.Module, taps: list[str]) -> list[int]:
    """Indices into timm's ``feature_info`` (what ``forward_intermediates`` takes) of the tapped stages."""
    stages = [info["module"] for info in getattr(model, "feature_info", [])]
    missing = [t for t in taps if t not in stages]
    if missing:
        raise ValueError(f"Tap(s) {missing} are not stages of this backbone; its stages are {stages}")
    return [stages.index(t) for t in taps]
