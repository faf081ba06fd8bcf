"""amint.explain: activation maps, trace attribution, evidence and saliency; amint.plots: overlays and plots."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from amint.explain import (GRID, REGION_EDITS, edit_saliencies, evidence_parts, forward_one, heat_maps,
                           threshold_logit, trace_attribution)
from amint.plots import overlay, plot_history, plot_roc, plot_score_distribution
from amint.readings import headline
from amint.splits import MembershipSplit


def edit_saliency(pair, x, reading=None):
    """One reading's edit saliency (default: the headline, the aMINT verdict)."""
    found = edit_saliencies(pair, x)
    return found[reading or headline(found)]



def _png_bytes(fig: Figure) -> bytes:
    assert isinstance(fig, Figure)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _state(pair) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in pair.state_dict().items()}


@pytest.fixture
def pair(tiny_pair):
    pair = tiny_pair[0]
    yield pair
    pair.eval()


@pytest.fixture
def memory_pair(tiny_memory_pair):
    return tiny_memory_pair[0]


def test_heat_maps_shapes_ranges_and_no_side_effects(pair, synthetic):
    before = _state(pair)
    pair.train()  # a caller in train mode must not update BatchNorm statistics through us
    x = synthetic.test_images[0]
    maps = heat_maps(pair.config.taps, forward_one(pair, x).maps, tuple(x.shape[1:]))
    assert pair.training
    assert all(torch.equal(before[k], v) for k, v in pair.state_dict().items())
    assert [name for name, _ in maps] == pair.config.taps
    for _, m in maps:
        assert m.shape == (16, 16) and m.dtype == np.float32
        assert m.min() == 0 and m.max() == pytest.approx(1)


def test_trace_attribution_differs_by_tap_and_writes_no_grad(pair, synthetic):
    for p in pair.parameters():
        p.grad = None
    maps = trace_attribution(pair, synthetic.test_images[0])
    assert [name for name, _ in maps] == pair.config.taps
    assert all(m.shape == (16, 16) and np.isfinite(m).all() for _, m in maps)
    assert not np.allclose(maps[0][1], maps[1][1])
    assert all(p.grad is None for p in pair.parameters())


def test_evidence_parts_add_up_to_each_readings_logit(memory_pair, synthetic):
    x = synthetic.train_images[0]
    scores = forward_one(memory_pair, x)
    parts = evidence_parts(memory_pair, scores)
    # Reading by reading: its start (the bias, counted from its threshold), then each part of its evidence.
    assert [p.name for p in parts if not p.name.startswith("start_")] == memory_pair.head.cfg.evidence_names
    # The trace feeds the aMINT verdict alone, the memories the fingerprint alone.
    assert [p.reading for p in parts] == ["amint", "amint", "fingerprint", "fingerprint", "fingerprint"]
    for name, reading in memory_pair.readings.items():
        total = sum(p.contribution for p in parts if p.reading == name) + threshold_logit(reading)
        assert total == pytest.approx(float(reading.logit(scores.evidence, scores.evidence_names)[0]), abs=1e-6)
    assert all(p.words for p in parts)
    # A memory's sentence says what it read (the image), and its counts are the lookup's.
    lookup = scores.lookups["exact"]
    exact = next(p for p in parts if p.name == "memory_exact")
    assert "reads the image itself, not the model" in exact.words
    assert f"in {int(lookup.members[0, 0])} of {lookup.tables} hash tables" in exact.words


def test_edit_saliency_finds_the_region_that_carries_a_member(memory_pair, synthetic):
    pair = memory_pair
    split = MembershipSplit.from_config(pair.config.split)
    member = synthetic.train_images[int(split.members[0])]
    s = edit_saliency(pair, member, reading="fingerprint")  # the memories read the pixels that get covered
    assert s.region_change.shape == (len(REGION_EDITS), GRID, GRID) and s.heat.shape == (16, 16)
    assert 0 <= s.heat.min() and s.heat.max() <= 1
    # Covering a part of a memorised member with the background breaks its fingerprint somewhere...
    erase = s.region_change[REGION_EDITS.index("erase")]
    assert erase.min() < -0.2, erase
    assert "Covering the" in s.words
    # ...and the whole-image edits are scored as they would be uploaded.
    assert set(s.whole) == set(REGION_EDITS) - {"erase"}
    assert s.reading == "fingerprint" and "the fingerprint score" in s.words
    # Every reading from one batch: the fingerprint's is the one just computed, the default is the aMINT verdict's.
    both = edit_saliencies(pair, member)
    assert set(both) == {"amint", "fingerprint"} and np.array_equal(both["fingerprint"].heat, s.heat)
    assert edit_saliency(pair, member).reading == "amint"


def test_overlay_blends_and_upscales():
    image = np.full((16, 16), 100, np.uint8)
    heat = np.linspace(0, 1, 256).reshape(16, 16)
    out = overlay(image, heat)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    assert np.array_equal(overlay(image, heat, alpha=0.0), np.full((224, 224, 3), 100, np.uint8))
    hot = overlay(image, heat, alpha=1.0)
    assert hot[0, 0].sum() < hot[-1, -1].sum()  # inferno: dark for 0, bright for 1
    assert overlay(np.zeros((300, 400, 3), np.uint8), np.zeros((10, 10))).shape == (300, 400, 3)


def test_score_distribution_plots(pair):
    cal = pair.config.calibration
    one = plot_score_distribution(cal, 0.8, pair.config.threshold, title="one image")
    xs = [tuple(line.get_xdata()) for line in one.axes[0].lines]
    assert (0.8, 0.8) in xs and (pair.config.threshold, pair.config.threshold) in xs
    assert _png_bytes(one).startswith(b"\x89PNG")
    many = plot_score_distribution(cal, [0.1, 0.5, 0.9, 0.95], pair.config.threshold)
    labels = many.axes[0].get_legend_handles_labels()[1]
    assert any("this set (4 images)" in label for label in labels)
    assert _png_bytes(many).startswith(b"\x89PNG")
    assert _png_bytes(plot_score_distribution({}, [], 0.5)).startswith(b"\x89PNG")  # untrained pair


def test_roc_and_history_render(pair):
    roc = plot_roc(pair.config.metrics)
    assert roc.axes[0].get_xscale() == "log"
    assert any("AUC" in label for label in roc.axes[0].get_legend_handles_labels()[1])
    history = pair.config.training["history"]
    hist = plot_history(history)
    assert len(hist.axes) == 2 and len(hist.axes[1].lines) == 4
    passive = [{**r, "phase": "task"} for r in history[:2]] + [{**r, "phase": "head"} for r in history[:2]]
    for fig in (roc, hist, plot_history(passive), plot_roc({}), plot_history([])):
        assert _png_bytes(fig).startswith(b"\x89PNG")


def test_one_upload_costs_one_forward_plus_the_edit_batch(tiny_memory_pair, synthetic):
    from amint.verify import explain_image, verify_image

    pair, _ = tiny_memory_pair
    calls = []
    hook = pair.backbone.conv1.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    try:
        explained = explain_image(pair, synthetic.test_images[0, 0].numpy())
    finally:
        hook.remove()
    # The image itself (maps and attribution reuse it), then every region edit and whole edit in one batch.
    assert calls == [1, 1 + len(REGION_EDITS) * (GRID * GRID + 1)]
    verified = verify_image(pair, synthetic.test_images[0, 0].numpy())  # another path to the score: compare as seen
    p = verified.member_probability
    assert explained.verdict.member_probability == pytest.approx(p, abs=1e-5)
    assert explained.verdict.is_member == verified.is_member or abs(p - verified.threshold) < 1e-5
    assert len(explained.maps) == len(explained.attribution) == 2 and explained.saliency.heat.shape == (16, 16)
