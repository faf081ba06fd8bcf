"""The About tab: its figures come from the pair's config.json and the results files, and its words follow them."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from amint.ui.about import _controls_for, about_text

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = "fashion-mnist-resnet18"


def _config() -> dict:
    return json.loads((ROOT / "models" / DEFAULT / "config.json").read_text())


def test_the_default_pair_is_described_by_its_own_numbers():
    cfg = _config()
    text = about_text(DEFAULT, cfg, _controls_for(DEFAULT))
    m = cfg["metrics"]
    assert f"AUC {m['auc']:.3f}" in text and f"AUC {m['fingerprint']['auc']:.5f}" in text
    assert f"AUC {cfg['readings']['amint']['cal_auc']:.3f}" in text
    # Its trace is at chance: said so, and the fingerprint named as what detects members.
    assert "This model shows no detectable trace" in text and "the fingerprint carries the detection" in text
    assert "built in on purpose when the model was trained" not in text and "53-55%" not in text
    lo = min(b["mint_accuracy"] for b in m["baselines"].values())
    assert f"{lo:.1%}" in text
    controls = json.loads((ROOT / "benchmarks" / "results" / "controls.json").read_text())
    assert f"its trace head alone {controls['results']['untrained']['evidence']['trace']['auc']:.3f}" in text


def test_the_words_follow_the_numbers_not_the_other_way_round():
    cfg = copy.deepcopy(_config())
    cfg["metrics"]["auc"], cfg["readings"]["amint"]["cal_auc"] = 0.8771, 0.8812
    text = about_text("some-pair", cfg, _controls_for("some-pair"))
    assert "AUC 0.877" in text and "AUC 0.881" in text
    assert "no detectable trace" not in text and "carries the detection" not in text
    assert "this model carries a trace the trace head reads" in text
    assert "untrained classifier" not in text  # the controls file measured another pair


def test_without_a_pair_the_page_has_no_figures():
    text = about_text(None, None)
    assert "## On the pair shipped" not in text and "AUC" not in text
    assert "aMINT verdict" in text and "fingerprint" in text and "## Limits, honestly" in text
