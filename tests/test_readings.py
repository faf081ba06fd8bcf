"""Two readings per image: the aMINT verdict (the trace head on the model) and the fingerprint (the memories on
the image), each calibrated with its own threshold and false-positive record; legacy pairs load as one combined
reading; verify, audit, the report and the words carry both."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from amint.audit import audit_images
from amint.card import render_model_card
from amint.fingerprint import MATCH_KINDS
from amint.pair import CONFIG_NAME, WEIGHTS_NAME, AuditedPair, PairConfig
from amint.pvalue import clopper_pearson_upper
from amint.readings import TRACE_SIGNAL_AUC
from amint.robustness import recalibrate
from amint.splits import MembershipSplit
from amint.train import train_pair
from amint.verify import Verdict, comparison_words, readings_words, verify_images
from tests.conftest import TINY_MEMORIES, TINY_TRACE, tiny_config

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PAIR = ROOT / "models" / "fashion-mnist-resnet18"
EXAMPLES = ROOT / "examples"
AMINT_FIELDS = ("member_probability", "is_member", "threshold", "threshold_fpr")
FINGERPRINT_FIELDS = ("fingerprint_probability", "fingerprint_is_member", "fingerprint_threshold",
                      "fingerprint_threshold_fpr", "fingerprint_match")


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


def _arrays(images: torch.Tensor) -> list[np.ndarray]:
    return [x[0].numpy() for x in images]


# --- the shipped default pair, through the command line -------------------------------------------


@pytest.mark.skipif(not (DEFAULT_PAIR / WEIGHTS_NAME).is_file(), reason="needs the shipped default pair")
def test_verify_cli_on_the_default_pair_gives_both_readings_and_the_known_answers():
    index = json.loads((EXAMPLES / "examples.json").read_text())["examples"]
    files = sorted(EXAMPLES.glob("*.png"))
    run = subprocess.run([sys.executable, "-m", "amint", "verify", str(DEFAULT_PAIR), *map(str, files), "--json"],
                         capture_output=True, text=True, timeout=300, env=_env(), cwd=ROOT)
    assert run.returncode == 0, run.stderr
    rows = {Path(r["file"]).name: r for r in json.loads(run.stdout)}
    assert len(rows) == len(files) == len(index)
    pair = json.loads((DEFAULT_PAIR / CONFIG_NAME).read_text())
    for name, row in rows.items():
        assert all(k in row for k in AMINT_FIELDS + FINGERPRINT_FIELDS), name
        assert row["reading"] == "amint" and "legacy" not in row
        assert row["threshold"] == pair["readings"]["amint"]["threshold"]
        assert row["threshold_fpr"] == pair["readings"]["amint"]["threshold_fpr"]
        assert row["fingerprint_threshold"] == pair["readings"]["fingerprint"]["threshold"]
        assert row["fingerprint_threshold_fpr"] == pair["readings"]["fingerprint"]["threshold_fpr"]
        assert row["is_member"] == (row["member_probability"] >= row["threshold"])
        assert row["fingerprint_is_member"] == (row["fingerprint_probability"] >= row["fingerprint_threshold"])
        match = row["fingerprint_match"]
        assert match["kind"] in MATCH_KINDS and 0 <= match["member_tables"] <= match["tables"]
        assert (match["kind"] != "none") == row["fingerprint_is_member"]
        # The default pair's model carries a trace: its verdicts read as evidence, not as a reading at chance.
        assert row["trace_signal"] is True and "no detectable trace" not in row["words"][0]
    # The known answers examples.json keeps, one per reading.
    for e in index:
        row = rows[e["file"]]
        assert row["is_member"] == e["amint"]["is_member"], e["file"]
        assert row["member_probability"] == pytest.approx(e["amint"]["probability"], abs=1e-4), e["file"]
        assert row["fingerprint_is_member"] == e["fingerprint"]["is_member"], e["file"]
        assert row["fingerprint_match"]["kind"] == e["fingerprint"]["match"], e["file"]
        assert row["fingerprint_probability"] == pytest.approx(e["fingerprint"]["probability"], abs=1e-4), e["file"]


# --- an active pair and its untrained-backbone control on one split --------------------------------


@pytest.fixture(scope="module")
def untrained_control(synthetic, tmp_path_factory):
    """tiny_memory_pair's recipe on a random, untrained backbone (and a random trace head): same seed, same split,
    same memories."""
    out = tmp_path_factory.mktemp("untrained-control")
    cfg = tiny_config(head={"trace": TINY_TRACE, "memories": TINY_MEMORIES}, mode="untrained", epochs=0, out=str(out))
    return train_pair(cfg, bench=synthetic), out


def test_untrained_control_has_the_same_fingerprint_and_another_amint_verdict(tiny_memory_pair, untrained_control,
                                                                              synthetic):
    active, control = tiny_memory_pair[0], untrained_control[0]
    assert active.config.split == control.config.split
    assert active.config.training["config"]["mode"] == "active" and control.config.training["config"]["mode"] == "untrained"
    # The fingerprint reads the image against the same training index: identical readings, to the last bit.
    assert active.config.readings["fingerprint"] == control.config.readings["fingerprint"]
    assert active.config.readings["fingerprint"]["index_sha256"] == control.config.readings["fingerprint"]["index_sha256"]
    # The aMINT verdict reads the model: another model, another reading.
    a, c = active.config.readings["amint"], control.config.readings["amint"]
    assert (a["weights"], a["threshold"], a["cal_auc"]) != (c["weights"], c["threshold"], c["cal_auc"])
    split = MembershipSplit.from_config(active.config.split)
    images = _arrays(synthetic.train_images[split.eval_members[:20]]) + _arrays(synthetic.test_images[:20])
    va, vc = verify_images(active, images), verify_images(control, images)
    assert [v.fingerprint_probability for v in va] == [v.fingerprint_probability for v in vc]
    assert [v.fingerprint_match for v in va] == [v.fingerprint_match for v in vc]
    assert [v.member_probability for v in va] != [v.member_probability for v in vc]
    # Compared, the two say so: one fingerprint answer, and no claim about training where a trace is at chance.
    for x, y in zip(va, vc):
        words = comparison_words("active", x, active.config, "control", y, control.config)
        assert "same training index" in words
        if x.is_member != y.is_member and not (x.trace_signal and y.trace_signal):
            assert "readout noise" in words and "way of training changes" not in words


def _verdict(member: bool, trace_auc: float | None, fingerprint: bool = True) -> Verdict:
    p = 0.9 if member else 0.1
    return Verdict(p, member, 0.5, 0.01, "a", 0.9, [("a", 0.9)], np.zeros((2, 2), np.uint8), trace_cal_auc=trace_auc,
                   fingerprint_probability=0.99 if fingerprint else 0.01, fingerprint_is_member=fingerprint,
                   fingerprint_threshold=0.5, fingerprint_threshold_fpr=0.01)


def _config(mode: str, index: str) -> PairConfig:
    return PairConfig(backbone="resnet18", num_classes=2, in_chans=1, image_size=16, mean=[0.5], std=[0.5],
                      class_names=["a", "b"], split={"members_sha256": "same"},
                      training={"config": {"mode": mode}}, readings={"fingerprint": {"index_sha256": index}})


def test_comparison_words_claim_a_training_difference_only_where_both_traces_carry_signal():
    active, passive = _config("active", "idx"), _config("passive", "idx")
    strong = comparison_words("A", _verdict(True, 0.9), active, "B", _verdict(False, 0.8), passive)
    assert "the difference is what the way of training changes" in strong
    assert "same training index" in strong  # identical memories: one fingerprint answer
    quiet = comparison_words("A", _verdict(True, 0.9), active, "B", _verdict(False, TRACE_SIGNAL_AUC - 0.07), passive)
    assert "way of training changes" not in quiet and "B shows no detectable trace" in quiet and "readout noise" in quiet
    other_index = comparison_words("A", _verdict(True, 0.9), active, "B", _verdict(True, 0.9, fingerprint=False),
                                   _config("passive", "another"))
    assert "Their fingerprints differ" in other_index and "same training index" not in other_index


def test_a_disagreement_between_the_readings_is_explained():
    words = readings_words(_verdict(False, 0.55, fingerprint=True))
    assert words[0].startswith("Not a member (aMINT verdict)") and "no detectable trace" in words[0]
    assert words[1].startswith("Fingerprint:") and "reads the image, not the model" in words[1]
    assert words[2].startswith("The two disagree") and "expected, since this model shows no detectable trace" in words[2]
    assert len(readings_words(_verdict(True, 0.9, fingerprint=True))) == 2  # agreement needs no third sentence


def test_a_head_at_chance_never_says_it_found_a_trace():
    from amint.verify import decision_words

    for is_member in (True, False):
        quiet, strong = decision_words(_verdict(is_member, 0.52)), decision_words(_verdict(is_member, 0.9))
        assert "finds a trace" not in quiet and "finds no trace" not in quiet, quiet
        assert "no detectable trace" in quiet and "AUC 0.52" in quiet
        assert ("finds a trace" if is_member else "does not find a trace of this image strong enough") in strong
        assert "no detectable" not in strong


def test_a_moved_member_matches_after_a_small_edit_named_by_its_move(tiny_memory_pair, synthetic):
    pair, _ = tiny_memory_pair
    split = MembershipSplit.from_config(pair.config.split)
    members = synthetic.train_images[split.eval_members[:20]]
    found = [v.fingerprint_match for v in verify_images(pair, _arrays(members))]
    assert sum(m.kind == "exact" for m in found) >= 15  # as uploaded
    moved = [v for v in verify_images(pair, _arrays(torch.roll(members, (1, 1), (2, 3)))) if v.fingerprint_is_member]
    assert len(moved) >= 10  # the aligned memory undoes a move of 1 px right and down
    for v in moved:
        m = v.fingerprint_match
        assert (m.kind, m.variant, m.memory) == ("after small edits", "moved 1 px left and 1 px up", "aligned")
        assert "looked up moved 1 px left and 1 px up" in readings_words(v)[1]


# --- a pair saved before the readings: one combined reading -----------------------------------------


@pytest.fixture
def legacy_folder(tiny_memory_pair, tmp_path) -> Path:
    """tiny_memory_pair as a pair saved before readings: threshold and record at the config's top level, a readout
    and (never fitted, so all zero) isotonic knots in model.safetensors."""
    _, saved = tiny_memory_pair
    folder = Path(shutil.copytree(saved, tmp_path / "legacy"))
    config = json.loads((folder / CONFIG_NAME).read_text())
    del config["readings"]
    config |= {"threshold": 0.6, "threshold_fpr": 0.02, "fpr_record": {},
               "calibration": {"n_nonmembers": 100, "readout": {"trace": 0.5, "memory_exact": 3.0,
                                                                "memory_aligned": 4.0, "bias": -2.0}}}
    (folder / CONFIG_NAME).write_text(json.dumps(config))
    state = load_file(str(folder / WEIGHTS_NAME))
    state |= {"head.readout.weight": torch.tensor([[0.5, 3.0, 4.0]]), "head.readout.bias": torch.tensor([-2.0]),
              "head.calibration_knots": torch.zeros(2, 64, dtype=torch.float64)}
    save_file(state, str(folder / WEIGHTS_NAME))
    return folder


def test_a_legacy_pair_loads_as_one_combined_reading_and_says_so(legacy_folder, synthetic):
    pair = AuditedPair.from_pretrained(legacy_folder)
    assert list(pair.readings) == ["combined"]
    combined = pair.readings["combined"]
    assert combined.legacy and combined.evidence == ["trace", "memory_exact", "memory_aligned"]
    assert combined.weights == [0.5, 3.0, 4.0] and combined.bias == -2.0 and combined.knots is None
    # Scored as it always was: the readout's logit, through a plain sigmoid (its knots were never fitted).
    split = MembershipSplit.from_config(pair.config.split)
    images = _arrays(synthetic.train_images[split.eval_members[:5]]) + _arrays(synthetic.test_images[:5])
    verdicts = verify_images(pair, images)
    evidence = pair(pair.normalize(torch.stack([torch.from_numpy(a)[None] for a in images]))).evidence.double()
    expected = torch.sigmoid(evidence @ torch.tensor([0.5, 3.0, 4.0], dtype=torch.float64) - 2.0)
    assert torch.allclose(torch.tensor([v.member_probability for v in verdicts], dtype=torch.float64), expected)
    row = verdicts[0].to_dict()
    assert row["reading"] == "combined" and row["legacy"] is True and row["threshold"] == 0.6
    assert row["threshold_fpr"] == 0.02 and row["trace_signal"] is None
    assert not any(k.startswith("fingerprint") for k in row)  # no fingerprint was calibrated for it
    assert "combined reading, legacy" in row["words"][0] and "not told apart" in row["words"][0]
    # Its audits rest on the rate it stated, bounded on its count and said to be in sample.
    result = audit_images(pair, [(f"{i}.png", a) for i, a in enumerate(images)])
    assert result.reading == "combined" and result.fingerprint is None
    assert result.dataset.fpr == clopper_pearson_upper(2, 100) and "in sample" in result.dataset.null.basis
    with pytest.raises(ValueError, match="recalibrate"):
        audit_images(pair, [("0.png", images[0])], family="exact")
    # The card names it for what it is, and saving keeps its readout in the weights file.
    assert "Combined reading (legacy)" in render_model_card(pair.config)
    again = AuditedPair.from_pretrained(pair.save_pretrained(legacy_folder.parent / "saved-again"))
    assert again.config.readings == pair.config.readings and set(again.legacy_tensors) == set(pair.legacy_tensors)


def test_recalibrating_a_legacy_pair_gives_two_readings_and_leaves_its_weights(legacy_folder, synthetic):
    weights = (legacy_folder / WEIGHTS_NAME).read_bytes()
    pair = AuditedPair.from_pretrained(legacy_folder)
    metrics = recalibrate(pair, synthetic)
    pair.save_config(legacy_folder)
    assert (legacy_folder / WEIGHTS_NAME).read_bytes() == weights  # calibration lives in config.json
    stored = json.loads((legacy_folder / CONFIG_NAME).read_text())
    assert set(stored["readings"]) == {"amint", "fingerprint"} and "threshold" not in stored
    assert metrics["reading"] == "amint" and set(metrics["fingerprint"]) >= {"auc", "tpr_at_1pct_fpr", "threshold"}
    reloaded = AuditedPair.from_pretrained(legacy_folder)
    assert list(reloaded.readings) == ["amint", "fingerprint"] and set(reloaded.legacy_tensors) == {
        "head.readout.weight", "head.readout.bias", "head.calibration_knots"}  # kept in the file, no longer read
    for name, reading in reloaded.readings.items():
        assert reading.fpr_record is not None and not reading.legacy and 0 <= reading.cal_auc <= 1, name


def test_a_config_with_readings_and_a_top_level_threshold_is_refused(tiny_pair, tmp_path):
    folder = Path(shutil.copytree(tiny_pair[1], tmp_path / "both"))
    config = json.loads((folder / CONFIG_NAME).read_text())
    (folder / CONFIG_NAME).write_text(json.dumps({**config, "threshold": 0.3}))
    with pytest.raises(ValueError, match="per reading only"):
        AuditedPair.from_pretrained(folder)


def test_a_reading_that_reads_the_wrong_evidence_is_refused(tiny_memory_pair, tmp_path):
    folder = Path(shutil.copytree(tiny_memory_pair[1], tmp_path / "wrong"))
    config = json.loads((folder / CONFIG_NAME).read_text())
    config["readings"]["amint"] |= {"evidence": ["memory_exact"]}  # an "aMINT verdict" that reads no model
    (folder / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(ValueError, match="reads the trace head alone"):
        AuditedPair.from_pretrained(folder)


# --- audits: both set-level answers, each with its p-value -----------------------------------------


def test_audit_json_and_report_carry_both_set_level_answers(tiny_memory_pair, synthetic, tmp_path):
    pair, folder = tiny_memory_pair
    split = MembershipSplit.from_config(pair.config.split)
    files = []
    for i in split.eval_members[:12].tolist():
        files.append(tmp_path / f"member_{i}.png")
        Image.fromarray(synthetic.train_images[i][0].numpy()).save(files[-1])
    report = tmp_path / "audit.html"
    run = subprocess.run([sys.executable, "-m", "amint", "audit", str(folder), *map(str, files), "--json",
                          "--report", str(report)], capture_output=True, text=True, timeout=300, env=_env(), cwd=ROOT)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    fp = out["fingerprint"]
    assert {"n_flagged", "expected_by_chance", "fpr", "p_value", "reading"} <= fp.keys()
    assert {"n_flagged", "expected_by_chance", "fpr", "p_value", "reading"} <= out.keys()
    assert out["reading_name"] == "amint"
    assert fp["fpr"] == pair.readings["fingerprint"].threshold_fpr and out["fpr"] == pair.readings["amint"].threshold_fpr
    assert fp["n_flagged"] >= 9 and fp["p_value"] < 1e-3 and "training index" in fp["reading"]  # members are in the index
    rows = out["images"]
    assert all(r["decision"] in ("member", "not a member") for r in rows)
    assert all(r["fingerprint_decision"] in ("in the training index", "not in the training index") for r in rows)
    page = report.read_text()
    for v in (out, fp):
        assert f"p-value <b>{v['p_value']:.2g}</b>" in page
    assert "aMINT verdict:" in page and "Fingerprint: this set is in the pair&#x27;s training index" in page
    assert "It reads the images, not the model" in page


def test_the_card_speaks_of_memories_only_for_a_pair_that_has_them(tiny_pair, tiny_memory_pair):
    plain, with_memories = render_model_card(tiny_pair[0].config), render_model_card(tiny_memory_pair[0].config)
    assert "hashed memories, which remember" not in plain and "Fingerprint" not in plain
    assert "hashed memories, which remember" in with_memories and "**Fingerprint**" in with_memories
    assert "scored members (held out from calibration only)" in plain


def test_each_reading_states_its_own_bound_and_calibration_auc(tiny_memory_pair):
    pair, _ = tiny_memory_pair
    for name, reading in pair.readings.items():
        record = reading.fpr_record
        assert record.threshold == reading.threshold and reading.threshold_fpr == record.bound
        assert record.per_family["exact"].n == 50 and math.isfinite(reading.cal_auc)
    assert pair.readings["amint"].evidence == ["trace"]
    assert pair.readings["fingerprint"].evidence == ["memory_exact", "memory_aligned"]
    m = pair.config.metrics
    assert m["reading"] == "amint" and m["threshold"] == pair.readings["amint"].threshold
    assert m["fingerprint"]["threshold"] == pair.readings["fingerprint"].threshold
