"""The Audit tab's summary gives both set-level answers, in the report's words, the aMINT verdict first."""

from __future__ import annotations

from amint.audit import audit_images
from amint.report import AuditReport, PairIdentity
from amint.splits import MembershipSplit
from amint.ui.audit import _summary_html


def test_the_audit_summary_gives_both_answers(tiny_memory_pair, synthetic):
    pair = tiny_memory_pair[0]
    split = MembershipSplit.from_config(pair.config.split)
    items = [(f"m{i}.png", synthetic.train_images[i, 0].numpy()) for i in split.eval_members[:20].tolist()]
    result = audit_images(pair, items)
    page = _summary_html(result, 0, pair.readings["amint"].cal_auc)
    amint, fingerprint = page.index('data-reading="amint"'), page.index('data-reading="fingerprint"')
    assert amint < fingerprint
    assert "in the training index" in page and "flagged as members" in page and page.count("p-value") == 2
    assert "Used in training" not in page


def test_the_audit_summary_says_when_the_trace_is_at_chance(tiny_memory_pair, synthetic):
    pair = tiny_memory_pair[0]
    result = audit_images(pair, [(f"t{i}.png", synthetic.test_images[i, 0].numpy()) for i in range(10)])
    assert "This model shows no detectable trace (calibration AUC 0.52" in _summary_html(result, 0, 0.52)
    assert "no detectable trace" not in _summary_html(result, 0, 0.9)


def test_the_report_says_when_the_aMINT_verdict_can_hardly_find_members(tiny_memory_pair, synthetic):
    import copy

    from amint.report import method_limits

    pair = copy.deepcopy(tiny_memory_pair[0])
    readings = {name: dict(data) for name, data in pair.config.readings.items()}
    readings["amint"]["cal_auc"] = 0.52
    pair.set_readings(readings)
    result = audit_images(pair, [(f"t{i}.png", synthetic.test_images[i, 0].numpy()) for i in range(10)])
    answers = AuditReport.build(pair, result, PairIdentity("tiny", None, None, "tiny", "0" * 64)).answers
    amint = answers[0]
    assert "This model shows no detectable trace (calibration AUC 0.52" in amint.question
    tpr = pair.readings["amint"].calibration["tpr"]
    assert any(f"this model shows no detectable trace: at its threshold it found {tpr:.1%}" in t
               for t in method_limits(answers))
