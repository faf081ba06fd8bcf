"""The shipped default pair on the real Fashion-MNIST test split: the acceptance bar, card = evaluate.

Two readings: the aMINT verdict (the trace head alone, reading a model trained to carry a trace) and the
fingerprint (hashed memories, reading the image). Skipped where the dataset is not installed
(`apt-get install dataset-fashion-mnist`, as .ci/run does).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from amint import cli
from amint.robustness import evaluate_split
from amint.data import SYSTEM_FASHION_MNIST_DIR, load_benchmark
from amint.edits import apply_edit, to_pil
from amint.pair import AuditedPair
from amint.robustness import eval_images, evaluate_edits
from amint.splits import MembershipSplit
from amint.verify import verify_images

ROOT = Path(__file__).resolve().parents[1]
PAIR_DIR = ROOT / "models" / "fashion-mnist-resnet18"
EXAMPLES = ROOT / "examples"

pytestmark = pytest.mark.skipif(
    not (SYSTEM_FASHION_MNIST_DIR.is_dir() and (PAIR_DIR / "model.safetensors").is_file()),
    reason="needs Debian's dataset-fashion-mnist and the shipped default pair",
)
METRIC_KEYS = ["mint_accuracy", "mint_accuracy_at_0_5", "auc", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr"]


@pytest.fixture(scope="module")
def pair():
    return AuditedPair.from_pretrained(PAIR_DIR)


@pytest.fixture(scope="module")
def evaluated(pair):
    return evaluate_split(pair, load_benchmark("fashion-mnist"))


ROBUST = ("jpeg75", "resize224", "resize56", "screenshot")
MOVED = ("shift1", "crop92")
SUBSET = 1000  # held-out members and as many non-members per edit in the tests (the card has 2,500)


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("fashion-mnist")


def test_meets_the_acceptance_bar(pair, evaluated):
    fingerprint = evaluated["fingerprint"]
    assert fingerprint["mint_accuracy"] >= 0.99
    assert fingerprint["auc"] >= 0.999
    assert fingerprint["tpr_at_0_1pct_fpr"] >= 0.85
    # The trace's cost on the task: within 1.5 points of the same recipe trained for its task alone (issue 15's bar;
    # its other bar, 0.90, is not met by this pair: benchmarks/RESULTS.md section 5).
    passive = pair.config.training["trace_controls"]["passive"]["task_accuracy"]
    assert evaluated["task_accuracy"] >= passive - 0.015
    assert evaluated["n_members"] == evaluated["n_nonmembers"] == fingerprint["n_members"] == 10000
    for name, baseline in evaluated["baselines"].items():
        assert baseline["mint_accuracy"] < fingerprint["mint_accuracy"], name
        assert baseline["auc"] < fingerprint["auc"], name
    # The aMINT verdict is this pair's trace head alone, and the model carries a trace it reads, on re-encoded and
    # resampled copies too (the recipe's edited views; a one-pixel move still erases it: README).
    assert evaluated["reading"] == "amint" and evaluated["cal_auc"] >= 0.6 and evaluated["auc"] >= 0.88
    stored = pair.config.metrics["edits"]  # `evaluate --edits --edits-n 2500`, as the card shows them
    assert all(stored[edit]["auc"] >= 0.85 for edit in ("jpeg50", "resize224", "resize56", "screenshot")), stored
    assert evaluated["tpr_at_1pct_fpr"] >= 0.10
    # Each reading's rate on the never-seen test images stays within its stated bound (sampling error allowed).
    for r in (evaluated, fingerprint):
        assert r["fpr_at_threshold"] <= r["threshold_fpr"] + 3 * (r["threshold_fpr"] / 10000) ** 0.5
    # The power bar (issue 16): the fingerprint's bound is tight enough that 50 members among 4,950 never-seen
    # images are found (tests/test_audit_fpr.py); at the 1% it was trained with, its bound was 2.03%.
    assert fingerprint["threshold_fpr"] <= 0.01


def test_evaluate_json_prints_each_readings_stated_bound_beside_the_measured_rate(pair, evaluated):
    # What `evaluate --json` prints (evaluate_split), and the stored output of the full run (`--edits --roc`).
    stored = json.loads((ROOT / "benchmarks" / "results" / "default_pair_evaluate.json").read_text())
    for result in (evaluated, stored):
        for name, r in (("amint", result), ("fingerprint", result["fingerprint"])):
            keys = list(r)
            assert keys.index("threshold_fpr") == keys.index("fpr_at_threshold") + 1, name
            assert r["threshold_fpr"] == pair.readings[name].threshold_fpr == pair.readings[name].fpr_record.bound
            assert r["threshold"] == pair.readings[name].threshold
    for name, table in (("amint", stored["edits"]), ("fingerprint", stored["fingerprint"]["edits"])):
        record = pair.readings[name].fpr_record
        assert {edit: r["fpr_bound"] for edit, r in table.items()} == {
            edit: record.per_family[edit].bound for edit in table}


def test_card_edit_numbers_meet_the_bar_and_reproduce(pair, bench):
    metrics = pair.config.metrics  # `python -m amint evaluate --edits --edits-n 2500` (benchmarks/results)
    stored = {"amint": metrics["edits"], "fingerprint": metrics["fingerprint"]["edits"]}
    for name in ROBUST:
        assert stored["fingerprint"][name]["auc"] >= 0.98 and stored["fingerprint"][name]["tpr_at_1pct_fpr"] >= 0.90
    for name in MOVED:
        assert stored["fingerprint"][name]["auc"] >= 0.90, name
    assert all(r["fpr_at_threshold"] <= 0.02 for r in stored["fingerprint"].values())
    # A fresh run on a subset agrees with the stored full run within sampling error.
    split = MembershipSplit.from_config(pair.config.split)
    fresh = evaluate_edits(pair, bench, split, ROBUST + MOVED, n=SUBSET)
    for reading, auc_tol, acc_tol in (("fingerprint", 0.01, 0.03), ("amint", 0.04, 0.04)):
        for name, r in fresh[reading].items():
            assert r["auc"] == pytest.approx(stored[reading][name]["auc"], abs=auc_tol), (reading, name)
            assert r["mint_accuracy"] == pytest.approx(stored[reading][name]["mint_accuracy"], abs=acc_tol), (reading, name)


@pytest.mark.parametrize("edit", ["jpeg75", "resize224", "shift1", "screenshot"])
def test_verify_cli_on_edited_files_matches_evaluate(pair, bench, tmp_path, capsys, edit):
    members, nonmembers = eval_images(bench, MembershipSplit.from_config(pair.config.split), 150)
    files, truth = [], []
    for label, images in (("member", members), ("never-seen", nonmembers)):
        for i, x in enumerate(images):
            # What a person uploads: the edited image as a file, saved losslessly so it holds exactly the edited pixels.
            path = tmp_path / f"{label}-{i}.png"
            apply_edit(to_pil(x.permute(1, 2, 0).numpy()), edit).save(path)
            files.append(str(path))
            truth.append(label == "member")
    assert cli.main(["verify", str(PAIR_DIR), *files, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    n = len(files)
    for field, expected in (("is_member", pair.config.metrics["edits"][edit]["mint_accuracy"]),
                            ("fingerprint_is_member", pair.config.metrics["fingerprint"]["edits"][edit]["mint_accuracy"])):
        accuracy = float(np.mean([r[field] == t for r, t in zip(rows, truth)]))
        assert accuracy >= expected - 3 * (expected * (1 - expected) / n) ** 0.5 - 0.01, (edit, field, accuracy, expected)


def test_model_card_carries_the_numbers_evaluate_prints(pair, evaluated):
    stored = pair.config.metrics
    assert stored["task_accuracy"] == pytest.approx(evaluated["task_accuracy"], abs=2e-4)
    card = (PAIR_DIR / "README.md").read_text()
    for s, e in ((stored, evaluated), (stored["fingerprint"], evaluated["fingerprint"])):
        for key in METRIC_KEYS + ["threshold", "threshold_fpr", "cal_auc"]:
            assert s[key] == pytest.approx(e[key], abs=2e-4), key
        for key in ["mint_accuracy", "auc", "tpr_at_1pct_fpr"]:
            assert f"{e[key]:.4f}" in card or f"{s[key]:.4f}" in card, key
    assert f"{evaluated['task_accuracy']:.4f}" in card or f"{stored['task_accuracy']:.4f}" in card


def test_examples_get_the_answers_evaluate_predicts(pair, evaluated):
    index = json.loads((EXAMPLES / "examples.json").read_text())
    items = index["examples"]
    verdicts = verify_images(pair, [EXAMPLES / e["file"] for e in items])
    for field, p in (("is_member", evaluated["mint_accuracy"]),
                     ("fingerprint_is_member", evaluated["fingerprint"]["mint_accuracy"])):
        right = [getattr(v, field) == (e["truth"] == "member") for v, e in zip(verdicts, items)]
        # With the measured accuracy p, getting fewer than n*p - 3 sigma right would mean verify and evaluate disagree.
        n = len(right)
        assert sum(right) >= n * p - 3 * (n * p * (1 - p)) ** 0.5 - 1, field


def test_the_verify_tab_handler_runs_on_the_default_pair(monkeypatch):
    # Everything the Verify tab shows (verdict, plots, maps, saliency) for a shipped example.
    from amint.ui.common import get_pair
    from amint.ui.verify import run_verify

    monkeypatch.delenv("AMINT_MODELS_DIR", raising=False)
    first, last = run_verify(get_pair(PAIR_DIR.name), EXAMPLES / "member_00.png", "member_00.png")
    assert first[1:5] == last[1:5] and "Member" in last[1]  # the verdict first, unchanged by the second update
    assert all(o is not None for o in last)
    # The why says what the fingerprint matched (this member is in the memories, as uploaded) and, the model
    # carrying a trace, draws the trace head's evidence map.
    assert "Exact match: looked up as uploaded" in last[-1]
    assert "no detectable trace" not in last[-1] and "trace evidence</figcaption>" in last[-1]
