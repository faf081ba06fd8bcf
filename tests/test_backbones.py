"""Every offered backbone builds from scratch for small inputs, and each setup's taps feed the head."""

from __future__ import annotations

import pytest
import torch

from amint.backbones import KNOWN_BACKBONES, SETUPS, create_backbone, setup_taps
from amint.pair import AuditedPair, PairConfig


def _config(backbone: str, setup: str = "middle", taps: list[str] | None = None, size: int = 32) -> PairConfig:
    return PairConfig(backbone=backbone, num_classes=3, in_chans=1, image_size=size, mean=[0.5], std=[0.25],
                      class_names=["a", "b", "c"], setup=setup, taps=taps or [],
                      head={"trace": {"width": 8, "hidden": 16},
                            "memories": {"exact": {"dims": 16, "tables": 4, "bits": 12, "buckets_log2": 10}}})


@pytest.mark.parametrize("backbone", KNOWN_BACKBONES)
def test_known_backbones_give_both_outputs_and_distinct_taps_per_setup(backbone):
    torch.manual_seed(0)
    taps_by_setup = {}
    for setup in SETUPS:
        pair = AuditedPair(_config(backbone, setup)).eval()
        out = pair(torch.randn(2, 1, 32, 32))
        assert out.class_logits.shape == (2, 3)
        assert out.evidence.shape == (2, 2) and len(out.maps) == 2 and list(out.lookups) == ["exact"]
        assert torch.isfinite(out.evidence).all()
        taps_by_setup[setup] = tuple(pair.config.taps)
    assert taps_by_setup["entry"] != taps_by_setup["output"]


def test_small_inputs_keep_spatial_resolution():
    # A stock ImageNet stem would shrink 28 px to 7 px before the first stage; the relaxed stem keeps 28.
    model = create_backbone("resnet18", 10, 1, 28)
    maps = {}
    hook = model.layer1.register_forward_hook(lambda m, i, o: maps.setdefault("layer1", o))
    model.eval()(torch.zeros(1, 1, 28, 28))
    hook.remove()
    assert maps["layer1"].shape[-1] == 28


def test_explicit_stage_names_work_and_bad_names_are_named():
    pair = AuditedPair(_config("resnet18", "custom", taps=["layer2", "layer3"]))
    assert pair.config.taps == ["layer2", "layer3"]
    # Taps are read with timm's forward_intermediates: stages, not arbitrary submodules.
    with pytest.raises(ValueError, match="layer2.0.*stages are"):
        AuditedPair(_config("resnet18", "custom", taps=["layer2.0"]))
    with pytest.raises(ValueError, match="layer9"):
        AuditedPair(_config("resnet18", "custom", taps=["layer9"]))
    with pytest.raises(ValueError, match="Unknown backbone"):
        create_backbone("not_a_model_xyz", 10, 1, 28)
    with pytest.raises(ValueError, match="setup"):
        setup_taps(create_backbone("resnet18", 10, 1, 28), "sideways")
