"""The Audit tab's summary gives both set-level answers, in the report's words, the aMINT verdict first."""

from __future__ import annotations

from amint.audit import audit_images
from amint.report import AuditReport, PairIdentity, set_answers
from amint.splits import MembershipSplit
from amint.ui.audit import _summary_html
from tests.conftest import with_trace_auc


def test_the_audit_summary_gives_both_answers(tiny_memory_pair, synthetic):
    pair = tiny_memory_pair[0]
    split = MembershipSplit.from_config(pair.config.split)
    items = [(f"m{i}.png", synthetic.train_images[i, 0].numpy()) for i in split.eval_members[:20].tolist()]
    result = audit_images(pair, items)
    page = _summary_html(set_answers(pair, result), 0)
    amint, fingerprint = page.index('data-reading="amint"'), page.index('data-reading="fingerprint"')
    assert amint < fingerprint
    assert "in the training index" in page and "flagged as members" in page and page.count("p-value") == 2
    assert "Used in training" not in page


def test_the_audit_summary_says_when_the_trace_is_at_chance(tiny_memory_pair, synthetic):
    items = [(f"t{i}.png", synthetic.test_images[i, 0].numpy()) for i in range(10)]
    pages = {}
    for auc in (0.52, 0.9):
        pair = with_trace_auc(tiny_memory_pair[0], auc)
        result = audit_images(pair, items)
        assert result.dataset.p_value >= 0.05  # never-seen images: nothing found, in both cases
        pages[auc] = _summary_html(set_answers(pair, result), 0)
    # At chance, not finding the set is said to say little; with a real trace the same count is plain "no evidence".
    assert "trace reads AUC 0.52 (0.5 is chance)" in pages[0.52]
    assert "can hardly find a set that was used" in pages[0.52]
    assert "can hardly find" not in pages[0.9] and "No evidence that this set was used in training." in pages[0.9]


def test_the_report_says_when_the_aMINT_verdict_can_hardly_find_members(tiny_memory_pair, synthetic):
    from amint.report import method_limits

    pair = with_trace_auc(tiny_memory_pair[0], 0.52)
    result = audit_images(pair, [(f"t{i}.png", synthetic.test_images[i, 0].numpy()) for i in range(10)])
    answers = AuditReport.build(pair, result, PairIdentity("tiny", None, None, "tiny", "0" * 64)).answers
    amint = answers[0]
    assert "trace reads AUC 0.52" in amint.question and "can hardly find a set that was used" in amint.conclusion
    assert "can hardly find" in result.dataset.reading  # the CLI's and the JSON's words say it too
    tpr = pair.readings["amint"].calibration["tpr"]
    assert any(f"this model shows no detectable trace: at its threshold it found {tpr:.1%}" in t
               for t in method_limits(answers))
