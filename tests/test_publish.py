"""Publishing a pair whole, without its external tables, or without any memory (amint.publish, amint.reveal)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from amint import cli, publish, reveal
from amint.card import render_model_card
from amint.head import EXTERNAL_PENALTY, HashedMemory, MemoryConfig
from amint.pair import CARD_NAME, WEIGHTS_NAME, AuditedPair
from amint.splits import MembershipSplit
from amint.verify import verify_images
from tests.hubserver import fake_hub  # noqa: F401

FLAGS = {"externals": "--no-externals", "memories": "--trace-only"}


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).iterdir()) if p.is_file()}


def _weight_names(folder: Path) -> list[str]:
    with safe_open(str(Path(folder) / WEIGHTS_NAME), "pt") as f:
        return list(f.keys())


def test_memory_without_external_tables_scores_from_member_tables_alone(synthetic):
    x = torch.randn(6, 1, 16, 16)
    full = HashedMemory(1, 16, MemoryConfig(dims=16, tables=4, bits=8, buckets_log2=8))
    bare = HashedMemory(1, 16, MemoryConfig(dims=16, tables=4, bits=8, buckets_log2=8, externals=False))
    for m in (full, bare):
        m.write(x[:3], member=True)
    full.write(x[3:], member=False)
    assert "externals" not in bare.state_dict() and "externals" in full.state_dict()
    assert bare.occupancy().keys() == {"members"}
    with pytest.raises(ValueError, match="no external tables"):
        bare.write(x[3:], member=False)
    # Members hit every table in both; the externals lose their penalty when the external tables are gone.
    assert torch.equal(bare(x[:3]), torch.ones(3))
    assert float(full(x[3:]).max()) <= 0 and float(bare(x[3:]).min()) >= 0
    m, e = full.hits(x, variants=False)
    assert m[:3].tolist() == [4] * 3 and e[3:].tolist() == [4] * 3
    assert float(full(x[3:4])) == pytest.approx(-EXTERNAL_PENALTY * (1 - float(m[3]) / 4), abs=1e-6)


@pytest.mark.parametrize("leave_out", ["externals", "memories"])
def test_push_leaving_out_then_reload_and_verify(leave_out, fake_hub, tiny_memory_pair, synthetic, tmp_path,  # noqa: F811
                                                 monkeypatch, capsys):
    pair, folder = tiny_memory_pair
    before = _digest(folder)
    monkeypatch.setattr(publish, "load_benchmark", lambda name, root=None, image_size=None: synthetic)
    repo = f"acme/without-{leave_out}"
    assert cli.main(["push", str(folder), repo, FLAGS[leave_out], "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert repo in out and "refitting" in err and "the copy: aMINT verdict AUC" in err
    assert ("the copy: fingerprint AUC" in err) == (leave_out == "externals")
    assert _digest(folder) == before  # the local pair is untouched
    assert any(k.endswith(".externals") for k in pair.state_dict())  # the pair in memory still has them too

    names = _weight_names(fake_hub.repo_path(repo))
    if leave_out == "externals":
        assert not [k for k in names if k.endswith(".externals")]
        assert {f"head.memories.{k}.members" for k in pair.head.memories} <= set(names)
    else:
        assert not [k for k in names if k.startswith("head.memories.")]
    pushed = AuditedPair.from_pretrained(repo)
    assert pushed.config.left_out == leave_out
    if leave_out == "externals":
        assert all(m["externals"] is False for m in pushed.config.head["memories"].values())
        assert all(m.externals is None for m in pushed.head.memories.values())
        assert pushed.head_config.evidence_names == pair.head_config.evidence_names
    else:
        assert pushed.config.head["memories"] == {} and pushed.head_config.evidence_names == ["trace"]
    # Refitted on the copy's own evidence: a reading per detector it keeps, each with a threshold; fresh metrics.
    assert set(pushed.readings) == ({"amint", "fingerprint"} if leave_out == "externals" else {"amint"})
    assert all(r.fpr_record is not None for r in pushed.readings.values())
    if leave_out == "externals":  # the memories changed: another training index, recalibrated
        assert pushed.readings["fingerprint"].index_sha256 != pair.readings["fingerprint"].index_sha256
    assert {"auc", "tpr_at_1pct_fpr", "task_accuracy"} <= pushed.config.metrics.keys()
    assert "edits" not in pushed.config.metrics

    # verify still runs, on a member and on a never-seen image
    split = MembershipSplit.from_config(pair.config.split)
    files = []
    for name, image in (("member.png", synthetic.train_images[split.eval_members[0], 0]),
                        ("unseen.png", synthetic.test_images[0, 0])):
        Image.fromarray(image.numpy().astype(np.uint8)).save(tmp_path / name)
        files.append(tmp_path / name)
    verdicts = verify_images(pushed, files)
    assert all(0 <= v.member_probability <= 1 for v in verdicts)
    if leave_out == "externals":  # the member tables still recognise a training image
        assert verdicts[0].fingerprint_is_member
    else:
        assert not verdicts[0].has_fingerprint
    assert cli.main(["verify", repo, *map(str, files), "--json", "--device", "cpu"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2

    card = (fake_hub.repo_path(repo) / CARD_NAME).read_text()
    assert "## What publishing this pair reveals" in card and "published copy without" in card


def test_publishable_refuses_what_cannot_be_left_out(tiny_pair, tiny_memory_pair, synthetic):
    with pytest.raises(ValueError, match="no hashed memories"):
        publish.publishable(tiny_pair[0], "externals", bench=synthetic)
    with pytest.raises(ValueError, match="one of"):
        publish.publishable(tiny_memory_pair[0], "everything", bench=synthetic)
    assert publish.publishable(tiny_memory_pair[0], "", bench=synthetic) is tiny_memory_pair[0]


def test_full_push_says_what_it_reveals(fake_hub, tiny_memory_pair, capsys):  # noqa: F811
    _, folder = tiny_memory_pair
    assert cli.main(["push", str(folder), "acme/whole"]) == 0
    err = capsys.readouterr().err
    assert "membership oracle" in err and "--no-externals" in err and "--trace-only" in err
    assert any(k.endswith(".externals") for k in _weight_names(fake_hub.repo_path("acme/whole")))


def test_warning_quotes_the_measured_figures(tiny_memory_pair, tmp_path, monkeypatch):
    pair, _ = tiny_memory_pair
    record = {"pair": "some-pair", "date": "2026-12-01 10:00 UTC", "command": "python benchmarks/reconstruction_attack.py",
              "oracle": {"memories": {"exact": {
                  "members_tables": {"members": {"n": 25000, "share_hitting_half": 0.9876},
                                     "test": {"n": 10000, "share_hitting_half": 0.0123}},
                  "externals_tables": {"externals": {"n": 30000, "share_hitting_half": 0.5432},
                                       "test": {"n": 10000, "share_hitting_half": 0.0042}}}}},
              "attack": {"settings": {"seeds": 7, "budget_lookups_per_seed": 1234}, "successes": 3,
                         "best_ssim_recovered": {"median": 0.4567}, "best_ssim_start": {"median": 0.5678},
                         "pooled_members_ssim": {"median": 0.7}}}
    path = tmp_path / "attack.json"
    path.write_text(json.dumps(record))
    monkeypatch.setattr(reveal, "RESULTS", path)
    card = render_model_card(pair.config)
    words = card.split("## What publishing this pair reveals", 1)[1]
    for figure in ("99%", "25,000", "1.23%", "54%", "30,000", "0.42%", "1,234", "7 test", "brought 3 within SSIM 0.9",
                   "0.46", "0.57", "some-pair, 2026-12-01", "--no-externals", "--trace-only"):
        assert figure in words, figure
    without = reveal.reveal_words(pair.config, "externals")
    assert "54%" not in without and "--no-externals" not in without and "--trace-only" in without
    assert "no membership by lookup" in reveal.reveal_words(pair.config, "memories")
    monkeypatch.setattr(reveal, "RESULTS", tmp_path / "missing.json")
    monkeypatch.setattr(reveal, "COSTS", tmp_path / "missing.json")
    words = reveal.reveal_words(pair.config)
    assert "membership oracle" in words and "%" not in words and "the member tables still give the fingerprint" in words


def test_shipped_results_file_is_what_the_warning_reads():
    m = reveal.measured_reveal()
    assert m is not None, "benchmarks/results/reconstruction_attack.json is missing"
    record = json.loads(reveal.RESULTS.read_text())
    assert m["members_flagged"] == record["oracle"]["memories"]["exact"]["members_tables"]["members"]["share_hitting_half"]
    assert m["successes"] == record["attack"]["successes"] and m["seeds"] == record["attack"]["settings"]["seeds"]
    costs = reveal.measured_costs()
    assert costs is not None, "benchmarks/results/publish_copies.json is missing"
    copies = json.loads(reveal.COSTS.read_text())["left_out"]
    assert set(costs["copies"]) == {"nothing", "externals", "memories"}
    bare = copies["externals"]
    words = reveal.reveal_words()  # the Publish panel's words, before a pair is read
    assert f"exact copies {bare['tpr_at_1pct_fpr']:.2f} / {copies['nothing']['tpr_at_1pct_fpr']:.2f}" in words
    for edit, r in bare["edits"].items():
        assert f"{edit} {r['tpr_at_1pct_fpr']:.2f} / {copies['nothing']['edits'][edit]['tpr_at_1pct_fpr']:.2f}" in words


def test_published_copy_keeps_each_readings_target(tiny_memory_pair, synthetic):
    """A pair whose readings were calibrated at different targets: the copy is refitted at the same ones."""
    from amint.robustness import recalibrate

    pair = AuditedPair.from_pretrained(tiny_memory_pair[1])
    targets = {"amint": 0.05, "fingerprint": 0.02}
    recalibrate(pair, synthetic, targets)
    copy = publish.publishable(pair, "externals", bench=synthetic)
    assert {name: r.calibration["target_fpr"] for name, r in copy.readings.items()} == targets
