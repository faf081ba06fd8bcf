"""The Why panel: bars that add up to each reading's answer, a trace head at chance said in words (never drawn as
evidence), and a fingerprint explanation made of the lookups' own counts."""

from __future__ import annotations

import html
import re

import pytest

from amint.explain import evidence_parts, forward_one, match_words, threshold_logit
from amint.fingerprint import Match
from amint.splits import MembershipSplit
from tests.conftest import with_trace_auc
from tests.test_readings import legacy_folder  # noqa: F401 (a fixture)


@pytest.fixture(scope="module")
def member_and_stranger(tiny_memory_pair, synthetic):
    pair = tiny_memory_pair[0]
    split = MembershipSplit.from_config(pair.config.split)
    return synthetic.train_images[int(split.members[0])], synthetic.test_images[0]


def test_each_readings_bars_add_up_to_its_answer(tiny_memory_pair, member_and_stranger):
    pair = tiny_memory_pair[0]
    for x in member_and_stranger:
        scores = forward_one(pair, x)
        parts = evidence_parts(pair, scores)
        assert [p.name for p in parts] == ["start_amint", "trace", "start_fingerprint", "memory_exact",
                                           "memory_aligned"]
        for name, reading in pair.readings.items():
            mine = [p for p in parts if p.reading == name]
            margin = float(reading.logit(scores.evidence, scores.evidence_names)[0]) - threshold_logit(reading)
            assert sum(p.contribution for p in mine) == pytest.approx(margin, abs=1e-6)
            # The start is the bias counted from the threshold, so the sum's sign is the reading's decision.
            assert (margin >= 0) == bool(scores.decisions[name][0])


def test_a_never_seen_image_does_not_show_every_bar_pushing_towards_member(tiny_memory_pair, member_and_stranger):
    pair = tiny_memory_pair[0]
    _, stranger = member_and_stranger
    scores = forward_one(pair, stranger)
    assert not bool(scores.decisions["fingerprint"][0])
    bars = [p for p in evidence_parts(pair, scores) if p.reading == "fingerprint"]
    # Its lookups may hit a few tables; the reading's start (its bias) is drawn against them.
    assert min(p.contribution for p in bars) < 0 and sum(p.contribution for p in bars) < 0


def test_a_pair_at_chance_gets_the_words_not_the_evidence(tiny_memory_pair, member_and_stranger):
    from amint.ui.verify import why_html
    from amint.verify import explain_image

    member, _ = member_and_stranger
    quiet = with_trace_auc(tiny_memory_pair[0], 0.52)
    explained = explain_image(quiet, member[0].numpy())
    assert explained.verdict.trace_signal is False
    trace = [p for p in explained.evidence if p.reading == "amint"]
    assert trace and not any(p.is_evidence for p in trace)
    panel = why_html(explained)
    assert "this model shows no detectable trace" in panel and "AUC 0.52" in panel
    # No trace bar, no trace-evidence map, no map of what moves the aMINT score: the maps shown are activity.
    amint_section = panel.split("The aMINT verdict")[1].split("The fingerprint")[0]
    assert "why-bar" not in amint_section
    assert "trace evidence" not in panel.replace("no <i>trace evidence</i> map", "")
    assert "edits that move the aMINT score" not in panel
    assert panel.count("activity (not evidence: no detectable trace)") == len(quiet.config.taps)
    assert "edits that move the fingerprint score" in panel  # the fingerprint still carries evidence

    # The same pair with a trace that carries signal: the trace is drawn as evidence, with its maps.
    loud = with_trace_auc(tiny_memory_pair[0], 0.9)
    panel = why_html(explain_image(loud, member[0].numpy()))
    assert "no detectable trace" not in panel
    assert "why-bar" in panel.split("The aMINT verdict")[1].split("The fingerprint")[0]
    assert panel.count("· trace evidence") == len(loud.config.taps)
    assert "edits that move the aMINT score" in panel


@pytest.mark.parametrize("match, said", [
    (Match("exact", 30, 0, 32, None, "exact"), ["Exact match", "as uploaded", "in 30 of 32 hash tables",
                                                "in none set only by external"]),
    (Match("exact", 17, 2, 32, None, "exact"), ["Exact match", "in 17 of 32 hash tables", "external non-members",
                                                "in 2"]),
    (Match("after small edits", 25, 1, 32, "moved 1 px left and 1 px up", "aligned"),
     ["Match after a small edit", "moved 1 px left and 1 px up", "aligned memory", "in 25 of 32", "in 1"]),
    (Match("after small edits", 9, 0, 8, "zoomed out to 93%", "aligned"),
     ["zoomed out to 93%", "in 9 of 8"]),
    (Match("none", 6, 0, 32, None, "aligned"), ["No match", "in 6 of 32 hash tables", "not enough"]),
    (Match("none", 0, 0, 32, None, "exact"), ["No match", "no bucket set only by training images"]),
    (Match("none", 0, 5, 32, None, "exact"), ["No match", "in 0 of 32", "in 5"]),
])
def test_a_matchs_words_come_from_its_counts(match, said):
    words = match_words(match)
    for s in said:
        assert s in words, (s, words)
    # Every number in the sentence is one of the match's counts (or the variant's): nothing derived or rounded.
    allowed = {str(n) for n in (match.member_tables, match.external_tables, match.tables)}
    allowed |= set(re.findall(r"\d+", match.variant or ""))
    assert set(re.findall(r"\d+", words)) <= allowed, words


def test_the_why_panel_reports_the_fingerprint_counts_of_this_image(tiny_memory_pair, member_and_stranger):
    from amint.ui.verify import why_html
    from amint.verify import explain_image

    pair = tiny_memory_pair[0]
    seen = set()
    for x in member_and_stranger:
        explained = explain_image(pair, x[0].numpy())
        m = explained.verdict.fingerprint_match
        panel = why_html(explained)
        assert html.escape(match_words(m)) in panel
        scores = forward_one(pair, x)
        lk = scores.lookups["exact"]
        exact = next(p for p in explained.evidence if p.name == "memory_exact")
        assert f"in {int(lk.members[0, 0])} of {lk.tables} hash tables" in exact.words or \
            (int(lk.members[0, 0]) == 0 and "no bucket set only by training images" in exact.words)
        seen.add((m.kind, m.member_tables))
    assert len(seen) == 2  # the member and the stranger matched differently, and the words followed their counts


def test_a_legacy_pair_shows_its_combined_bars_as_legacy(legacy_folder, synthetic):
    from amint.pair import AuditedPair
    from amint.ui.verify import why_html
    from amint.verify import explain_image

    pair = AuditedPair.from_pretrained(legacy_folder)
    explained = explain_image(pair, synthetic.test_images[0, 0].numpy())
    assert {p.reading for p in explained.evidence} == {"combined"} and all(p.is_evidence for p in explained.evidence)
    total = sum(p.contribution for p in explained.evidence)
    assert (total >= 0) == explained.verdict.is_member
    panel = why_html(explained)
    assert "The combined verdict (legacy)" in panel and "The fingerprint:" not in panel
    assert "no detectable trace" not in panel  # not measured for a legacy pair: nothing is claimed either way
