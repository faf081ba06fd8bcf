"""The About tab: its figures come from the pair's config.json and the results files, and its words follow them."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from amint.catalog import weights_sha256
from amint.ui.about import _controls_for, about_text

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = "fashion-mnist-resnet18"


def _config() -> dict:
    return json.loads((ROOT / "models" / DEFAULT / "config.json").read_text())


def test_the_default_pair_is_described_by_its_own_numbers():
    cfg = _config()
    text = about_text(DEFAULT, cfg, _controls_for(DEFAULT, ROOT / "models" / DEFAULT))
    m = cfg["metrics"]
    assert f"AUC {m['auc']:.3f}" in text and f"AUC {m['fingerprint']['auc']:.5f}" in text
    assert f"AUC {cfg['readings']['amint']['cal_auc']:.3f}" in text
    # Its model carries a trace: said so, with the controls the pair carries (the fresh-head probe) and its cost.
    assert "this model carries a trace the trace head reads" in text
    assert "no detectable trace" not in text and "the fingerprint carries the detection" not in text
    fresh = cfg["training"]["trace_controls"]["fresh_head"]
    assert f"with AUC {fresh['active']['auc']:.3f}" in text and f"with AUC {fresh['passive']['auc']:.3f}" in text
    assert f"{cfg['training']['trace_controls']['passive']['task_accuracy']:.1%}" in text
    # The edits that weaken the trace, from the pair's own edit table.
    assert f"moved by one pixel {m['edits']['shift1']['auc']:.3f}" in text
    lo = min(b["mint_accuracy"] for b in m["baselines"].values())
    assert f"{lo:.1%}" in text
    # controls.json measured the first default pair, whose weights these are not: not quoted for this one.
    assert "untrained classifier" not in text


def test_the_controls_file_is_quoted_only_for_the_weights_it_measured(tmp_path, monkeypatch):
    from amint.ui import about

    folder = tmp_path / DEFAULT
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"the weights the controls measured")
    record = json.loads(about.CONTROLS.read_text())
    record["model_sha256"] = weights_sha256(folder)
    monkeypatch.setattr(about, "CONTROLS", tmp_path / "controls.json")
    about.CONTROLS.write_text(json.dumps(record))
    assert _controls_for(DEFAULT, folder) is not None
    assert _controls_for("another-pair", folder) is None
    (folder / "model.safetensors").write_bytes(b"a pair of the same name, retrained")
    assert _controls_for(DEFAULT, folder) is None


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


def test_controls_of_an_earlier_recipe_are_named_as_such():
    from amint.ui.about import trace_controls_words

    tc = {"record": "r.json", "active": {"task_accuracy": 0.90}, "passive": {"task_accuracy": 0.908},
          "fresh_head": {"active": {"auc": 0.87}, "passive": {"auc": 0.505}}}
    own = " ".join(trace_controls_words({"training": {"trace_controls": tc}}))
    assert "on the same kind of model trained for its task alone, with AUC 0.505" in own and "earlier" not in own
    tc["controls_from"] = {"record": "e.json", "joint_epochs": 58, "levers": ["views"]}
    quoted = " ".join(trace_controls_words({"training": {"trace_controls": tc}}))
    assert "with AUC 0.870" in quoted and "a model of the earlier recipe (58 epochs; this model's own control is not " \
        "run yet) trained for its task alone, with AUC 0.505" in quoted
    assert "against 90.8% for the earlier recipe's model" in quoted
