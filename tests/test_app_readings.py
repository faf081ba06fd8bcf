"""The app leads with the aMINT verdict and puts the fingerprint beside it: through gradio_client against a
launched app (a tiny active pair with memories and its passive control on one split; and the shipped default
pair, with its passive control when one was made locally), plus the words that compare two pairs."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

pytest.importorskip("gradio")
from gradio_client import handle_file  # noqa: E402

from amint.pair import PairConfig  # noqa: E402
from amint.readings import TRACE_SIGNAL_AUC  # noqa: E402
from amint.train import train_pair  # noqa: E402
from amint.verify import FINGERPRINT_QUESTION, Verdict, comparison_words  # noqa: E402

from .conftest import TINY_MEMORIES, TINY_TRACE, served_app, tiny_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PAIR = ROOT / "models" / "fashion-mnist-resnet18"
DEFAULT_PASSIVE = ROOT / "models" / "fashion-mnist-resnet18-passive"  # made locally by the README's command
VERIFY_VERDICT, VERIFY_DETAILS = 1, 4  # /verify: model input, readings, score charts, top classes, details, why
pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]


def _make_examples():
    spec = importlib.util.spec_from_file_location("make_examples", ROOT / "examples" / "make_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_examples


def _serve(models: Path, examples: Path):
    mp = pytest.MonkeyPatch()
    mp.setenv("AMINT_MODELS_DIR", str(models))
    mp.setenv("AMINT_EXAMPLES_DIR", str(examples))
    mp.delenv("SPACE_ID", raising=False)
    try:
        with served_app() as client:
            yield client
    finally:
        mp.undo()
        from amint.ui.common import _CACHE

        for name in _CACHE.keys():  # the pair cache is per process: other app tests reuse names
            _CACHE.forget(name)


def _leads_with_amint(page: str) -> None:
    """The aMINT card comes first, then the fingerprint's line with its plain question and answer."""
    assert 'data-reading="amint"' in page and 'data-reading="fingerprint"' in page
    assert page.index('data-reading="amint"') < page.index('data-reading="fingerprint"')
    assert FINGERPRINT_QUESTION.replace("'", "&#x27;") in page


# --- a tiny active pair with memories and its passive control, on one split ---------------------------


@pytest.fixture(scope="module")
def tiny_app(tiny_memory_pair, synthetic, tmp_path_factory):
    active = tiny_memory_pair[0]
    root = tmp_path_factory.mktemp("readings-app")
    cfg = tiny_config(head={"trace": TINY_TRACE, "memories": TINY_MEMORIES}, mode="passive", epochs=3, head_epochs=1,
                      out=str(root / "models" / "readings-passive"))
    passive = train_pair(cfg, bench=synthetic)
    active.save_pretrained(root / "models" / "readings-active")
    examples = _make_examples()(active, root / "examples", "readings-active", n_per_side=8, bench=synthetic, control=passive,
                                control_name="readings-passive")
    for client in _serve(root / "models", root / "examples"):
        yield client, examples, root / "examples"


def test_verify_returns_both_readings_amint_first(tiny_app):
    client, examples, folder = tiny_app
    member = next(ex for ex in examples["examples"] if ex["truth"] == "member")
    out = client.predict("readings-active", handle_file(str(folder / member["file"])), api_name="/verify")
    page, details = out[VERIFY_VERDICT], out[VERIFY_DETAILS]
    for key in ("member_probability", "is_member", "threshold", "threshold_fpr", "fingerprint_probability",
                "fingerprint_is_member", "fingerprint_threshold", "fingerprint_threshold_fpr", "fingerprint_match"):
        assert key in details, key
    assert details["reading"] == "amint"
    # The known answers in examples.json are what the app says.
    assert details["is_member"] == member["amint"]["is_member"]
    assert details["fingerprint_is_member"] == member["fingerprint"]["is_member"]
    _leads_with_amint(page)
    assert ("No detectable trace" in page) == (details["trace_signal"] is False)
    # Each reading's chart, aMINT first.
    charts = out[2]
    assert charts.index('data-reading="amint"') < charts.index('data-reading="fingerprint"')


def test_compare_with_the_passive_control_states_the_fingerprints_agree(tiny_app):
    client, examples, folder = tiny_app
    assert examples["control"] == "readings-passive"
    marked = [ex for ex in examples["examples"] if ex["amint_differs_from_control"]]
    assert marked, "the tiny active pair and its passive control give the same aMINT verdict on every example"
    ex = marked[0]
    page, details = client.predict("readings-active", "readings-passive", handle_file(str(folder / ex["file"])),
                                   api_name="/compare")
    words = details["words"]
    a, b = details["pairs"]
    assert (a["pair"], b["pair"]) == ("readings-active", "readings-passive")
    # One training index: one fingerprint answer.
    assert a["fingerprint_probability"] == b["fingerprint_probability"]
    assert "Their fingerprints agree" in words and "same training index" in words
    # The aMINT difference named, with both probabilities; the app agrees with examples.json's mark.
    assert (a["is_member"] != b["is_member"]) == ex["amint_differs_from_control"]
    for name, row in (("readings-active", a), ("readings-passive", b)):  # both aMINT verdicts named, with their probabilities
        assert f"{name} says {'member' if row['is_member'] else 'not a member'} (" in words
    assert ("Their aMINT verdicts differ" if ex["amint_differs_from_control"] else "Their aMINT verdicts agree") in words
    if not (a["trace_signal"] and b["trace_signal"]):
        assert "way of training changes" not in words
    _leads_with_amint(page)


def test_audit_gives_both_set_level_answers(tiny_app):
    client, examples, folder = tiny_app
    files = [handle_file(str(folder / ex["file"])) for ex in examples["examples"] if ex["truth"] == "member"]
    summary, _, table, _, verdict, *_ = client.predict("readings-active", files, api_name="/audit")
    assert verdict["reading"] and "p_value" in verdict and "p_value" in verdict["fingerprint"]
    assert verdict["fingerprint"]["n_flagged"] == sum(ex["fingerprint"]["is_member"] for ex in examples["examples"]
                                                      if ex["truth"] == "member")
    assert summary.index('data-reading="amint"') < summary.index('data-reading="fingerprint"')
    assert table["headers"][1:4] == ["aMINT verdict", "member prob.", "fingerprint"]


# --- the shipped default pair (and its passive control, where made locally) ---------------------------


@pytest.fixture(scope="module")
def default_app(tmp_path_factory):
    if not (DEFAULT_PAIR / "model.safetensors").is_file():
        pytest.skip("the default pair is not in models/")
    models = tmp_path_factory.mktemp("default-models")
    (models / DEFAULT_PAIR.name).symlink_to(DEFAULT_PAIR, target_is_directory=True)
    if (DEFAULT_PASSIVE / "model.safetensors").is_file():
        (models / DEFAULT_PASSIVE.name).symlink_to(DEFAULT_PASSIVE.resolve(), target_is_directory=True)
    yield from _serve(models, ROOT / "examples")


def test_member_00_is_shown_aMINT_verdict_first(default_app):
    out = default_app.predict(DEFAULT_PAIR.name, handle_file(str(ROOT / "examples" / "member_00.png")),
                              api_name="/verify")
    page, details = out[VERIFY_VERDICT], out[VERIFY_DETAILS]
    _leads_with_amint(page)
    known = next(ex for ex in json.loads((ROOT / "examples" / "examples.json").read_text())["examples"]
                 if ex["file"] == "member_00.png")
    assert details["is_member"] == known["amint"]["is_member"]
    assert details["fingerprint_is_member"] == known["fingerprint"]["is_member"]
    assert details["fingerprint_match"]["kind"] == known["fingerprint"]["match"]
    if details["trace_signal"] is False:  # the default pair's trace is at chance: said in words, not as evidence
        assert "No detectable trace" in page and "not evidence" in page
        assert '<div class="verdict-word">Member</div>' not in page
        assert '<div class="verdict-word">Not a member</div>' not in page


@pytest.mark.skipif(not (DEFAULT_PASSIVE / "model.safetensors").is_file(),
                    reason="no local passive control of the default pair (README: train_default_pair.py --only passive)")
def test_default_pair_against_its_passive_control(default_app):
    data = json.loads((ROOT / "examples" / "examples.json").read_text())
    if data.get("control") != DEFAULT_PASSIVE.name:
        pytest.skip("examples.json was not made with the passive control (make_examples.py --control)")
    marked = [ex for ex in data["examples"] if ex["amint_differs_from_control"]]
    if not marked:
        pytest.skip("examples.json marks no example where the two aMINT verdicts differ")
    page, details = default_app.predict(DEFAULT_PAIR.name, DEFAULT_PASSIVE.name,
                                        handle_file(str(ROOT / "examples" / marked[0]["file"])), api_name="/compare")
    words = details["words"]
    assert "Their fingerprints agree" in words and "same training index" in words
    assert "Their aMINT verdicts differ" in words
    a, b = details["pairs"]
    if not (a["trace_signal"] and b["trace_signal"]):
        assert "way of training changes" not in words and "readout noise" in words


# --- the words ----------------------------------------------------------------------------------------


def _verdict(p: float, auc: float | None, fingerprint: bool = True, threshold: float = 0.5) -> Verdict:
    return Verdict(p, p >= threshold, threshold, 0.01, "a", 0.9, [("a", 0.9)], np.zeros((2, 2), np.uint8),
                   trace_cal_auc=auc, fingerprint_probability=0.99 if fingerprint else 0.01,
                   fingerprint_is_member=fingerprint, fingerprint_threshold=0.5, fingerprint_threshold_fpr=0.01)


def _config(mode: str, index: str = "idx") -> PairConfig:
    return PairConfig(backbone="resnet18", num_classes=2, in_chans=1, image_size=16, mean=[0.5], std=[0.5],
                      class_names=["a", "b"], split={"members_sha256": "same"},
                      training={"config": {"mode": mode}}, readings={"fingerprint": {"index_sha256": index}})


def test_comparison_words_name_the_amint_difference_and_claim_training_only_with_signal_in_both():
    active, passive = _config("active"), _config("passive")
    quiet = TRACE_SIGNAL_AUC - 0.07
    # Neither trace carries signal (the default pair and its passive control): noise at this scale.
    both_quiet = comparison_words("A", _verdict(0.62, quiet), active, "B", _verdict(0.41, quiet - 0.02), passive)
    assert "Their fingerprints agree: in the training index" in both_quiet and "same training index" in both_quiet
    assert "Their aMINT verdicts differ: A says member (62%), B says not a member (41%)" in both_quiet
    assert "neither model shows a detectable trace" in both_quiet and "readout noise" in both_quiet
    assert "way of training changes" not in both_quiet
    # One carries signal: only its verdict reads a trace.
    one = comparison_words("A", _verdict(0.9, 0.85), active, "B", _verdict(0.2, quiet), passive)
    assert "B shows no detectable trace" in one and "only A's verdict reads a trace" in one
    assert "way of training changes" not in one
    # Both carry signal and were trained differently: then, and only then, the difference is the training's.
    both = comparison_words("A", _verdict(0.9, 0.85), active, "B", _verdict(0.2, 0.7), passive)
    assert "the difference is what the way of training changes" in both
    # Same decision: the probabilities' difference is still named.
    same = comparison_words("A", _verdict(0.30, quiet), active, "B", _verdict(0.42, quiet), passive)
    assert "Their aMINT verdicts agree (not a member)" in same and "differ by 12.0 percentage points" in same
    assert "way of training changes" not in same
    # Another training index: the fingerprints are not said to agree by construction.
    other = comparison_words("A", _verdict(0.9, 0.85), active, "B", _verdict(0.9, 0.85, fingerprint=False),
                             _config("passive", "another"))
    assert "Their fingerprints differ" in other and "same training index" not in other


def test_gallery_captions_show_both_known_answers_and_the_marks():
    from amint.ui.verify import _caption, gallery_words

    ex = {"file": "member_00.png", "truth": "member", "class": "Coat", "amint": {"is_member": False},
          "fingerprint": {"is_member": True, "match": "exact"}, "readings_agree": False,
          "amint_differs_from_control": True}
    assert _caption(ex) == "member · aMINT no · fingerprint yes ≠◆"
    same = {**ex, "amint": {"is_member": True}, "readings_agree": True, "amint_differs_from_control": False}
    assert _caption(same) == "member · aMINT yes · fingerprint yes"
    words = gallery_words({"pair": "p", "control": "p-passive", "examples": [ex, same]})
    assert "the aMINT verdict is right on 1 of 2" in words and "the fingerprint is right on 2 of 2" in words
    assert "**≠** marks the 1 of 2" in words and "on 1 of the 2 drawn at random" in words and "p-passive" in words
    chosen = {**ex, "chosen": "the aMINT verdicts differ"}
    words = gallery_words({"pair": "p", "control": "p-passive", "examples": [same, chosen]})
    assert "on 0 of the 1 drawn at random; the last 1 were picked because they differ" in words


def test_the_gallery_says_the_aMINT_probability_ranks_members_higher_only_when_it_does():
    from amint.ui.verify import gallery_words

    def ex(truth: str, p: float, member: bool) -> dict:
        return {"file": f"{truth}.png", "truth": truth, "amint": {"probability": p, "is_member": member}}

    # Members ranked higher, but one below the threshold: both said.
    words = gallery_words({"pair": "p", "examples": [ex("member", 0.83, False), ex("member", 0.90, True),
                                                     ex("nonmember", 0.30, False), ex("nonmember", 0.40, False)]})
    assert "higher on the members (median 0.86, against 0.35" in words and "calls fewer members" in words
    # Every member called: no excuse made.
    words = gallery_words({"pair": "p", "examples": [ex("member", 0.9, True), ex("nonmember", 0.3, False)]})
    assert "higher on the members" in words and "calls fewer members" not in words
    # A reading that does not rank members higher gets no such sentence.
    words = gallery_words({"pair": "p", "examples": [ex("member", 0.3, False), ex("nonmember", 0.6, False)]})
    assert "higher on the members" not in words


def test_the_card_says_what_each_kind_of_pair_can_answer():
    from amint.fingerprint import Match
    from amint.ui.verify import verdict_html

    exact = Match("exact", 30, 0, 32, None, "exact")
    quiet = _verdict(0.48, TRACE_SIGNAL_AUC - 0.07, threshold=0.59)
    quiet.fingerprint_match = exact
    page = verdict_html(quiet, truth="member")
    _leads_with_amint(page)
    assert "No detectable trace" in page and "not evidence either way" in page and "exact match" in page
    assert "The two disagree" in page and "✘ The aMINT verdict is wrong" in page and "✔ the fingerprint is right" in page
    # A trace that carries signal: the decision in large type, with its threshold and bound.
    loud = _verdict(0.9, 0.85)
    loud.fingerprint_match = exact
    page = verdict_html(loud)
    assert '<div class="verdict-word">Member</div>' in page and "No detectable trace" not in page
    assert "decision threshold 50.0%: at most 1.0% of never-seen images reach it" in page
    assert "The two disagree" not in page
    # No trace head: the fingerprint alone, labelled so.
    alone = Verdict(None, None, None, None, "a", 0.9, [("a", 0.9)], np.zeros((2, 2), np.uint8), reading=None,
                    fingerprint_probability=0.99, fingerprint_is_member=True, fingerprint_threshold=0.5,
                    fingerprint_threshold_fpr=0.01, fingerprint_match=Match("after small edits", 20, 0, 32,
                                                                           "moved 1 px left", "aligned"))
    page = verdict_html(alone)
    assert 'data-reading="amint"' not in page and "Fingerprint only: this pair has no trace head" in page
    assert "match after small edits (moved 1 px left)" in page
    # A legacy pair: its combined reading, said so.
    legacy = Verdict(0.7, True, 0.5, 0.01, "a", 0.9, [("a", 0.9)], np.zeros((2, 2), np.uint8), reading="combined")
    page = verdict_html(legacy)
    assert "Combined reading (legacy pair" in page and "combined reading, legacy" in page


def test_the_status_line_gives_each_reading_by_its_auc_not_its_strict_threshold_accuracy():
    from types import SimpleNamespace

    from amint.ui.common import describe

    config = SimpleNamespace(backbone="resnet18", dataset="fashion-mnist", class_names=list("abcdefghij"),
                             image_size=28, readings={"amint": {}, "fingerprint": {}},
                             metrics={"mint_accuracy": 0.5454, "auc": 0.9209, "task_accuracy": 0.8751,
                                      "fingerprint": {"mint_accuracy": 0.9986, "auc": 0.99998}})
    line = describe(SimpleNamespace(name="p", pair=SimpleNamespace(config=config)))
    # A reading that ranks members well but calls few at 1% false alarms must not read as a coin flip.
    assert "aMINT verdict AUC 0.921" in line and "fingerprint AUC 1.000 (0.5 is guessing)" in line
    assert "54.5%" not in line and "classification accuracy 87.5%" in line
