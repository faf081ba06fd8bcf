"""amint.evaluate: metrics against hand-computed cases, thresholds that never see evaluation data."""

from __future__ import annotations

import pytest
import torch

from amint import evaluate
from amint.data import Benchmark, MembershipSplit
from amint.evaluate import (
    balanced_accuracy,
    calibrate,
    evaluate_pair,
    fit_threshold,
    roc_auc,
    tpr_at_fpr,
)
from amint.splits import calibration_halves

t = torch.tensor
# Members 0.9 0.8 0.6 0.2 vs non-members 0.7 0.5 0.3 0.1. Operating points (FPR, TPR), threshold:
# 0.9 (0, .25), 0.8 (0, .5), 0.7 (.25, .5), 0.6 (.25, .75), 0.5 (.5, .75), 0.3 (.75, .75), 0.2 (.75, 1), 0.1 (1, 1)
M, N = t([0.9, 0.8, 0.6, 0.2]), t([0.7, 0.5, 0.3, 0.1])


def test_roc_auc_hand_computed():
    assert roc_auc(M, N) == pytest.approx(12 / 16)  # 12 of the 16 member/non-member pairs are ordered right
    assert roc_auc(t([0.9, 0.8, 0.4]), t([0.7, 0.3])) == pytest.approx(5 / 6)
    assert roc_auc(t([1.0, 2.0]), t([0.0])) == 1.0 and roc_auc(t([0.0]), t([1.0, 2.0])) == 0.0
    # Ties count one half: pairs (.5,.5) (.5,.5) tie, (.5,.1) (.5,.1) right -> (0.5 + 0.5 + 1 + 1) / 4
    assert roc_auc(t([0.5, 0.5]), t([0.5, 0.1])) == pytest.approx(0.75)
    assert roc_auc(t([0.5, 0.5]), t([0.5, 0.5])) == pytest.approx(0.5)


def test_tpr_at_fpr_hand_computed():
    assert tpr_at_fpr(M, N, 0.0) == 0.5
    assert tpr_at_fpr(M, N, 0.25) == 0.75
    assert tpr_at_fpr(M, N, 0.49) == 0.75
    assert tpr_at_fpr(M, N, 0.75) == 1.0
    # A member tied with a non-member cannot be flagged without also flagging the non-member.
    assert tpr_at_fpr(t([0.5, 0.9]), t([0.5, 0.1]), 0.0) == 0.5
    assert tpr_at_fpr(t([0.5, 0.5]), t([0.5]), 0.0) == 0.0


def test_fit_threshold_hand_computed():
    best = fit_threshold(M, N)
    # Thresholds 0.8 and 0.6 both reach TPR - FPR = 0.5, the maximum.
    assert min(abs(best - 0.8), abs(best - 0.6)) < 1e-6 and balanced_accuracy(M, N, best) == 0.75
    assert fit_threshold(M, N, target_fpr=0.25) == pytest.approx(0.6)
    assert fit_threshold(M, N, target_fpr=0.0) == pytest.approx(0.8)
    # Ties at FPR 0: the tied 0.5 must be excluded, so only 0.9 stays above the threshold.
    assert fit_threshold(t([0.5, 0.5, 0.9]), t([0.5, 0.1]), target_fpr=0.0) == pytest.approx(0.9)
    # Everything tied: no threshold reaches FPR 0 except one above every score.
    above = fit_threshold(t([0.5]), t([0.5]), target_fpr=0.0)
    assert above > 0.5 and balanced_accuracy(t([0.5]), t([0.5]), above) == 0.5


# --- thresholds never see evaluation data --------------------------------------------------------


def _rows(images: torch.Tensor) -> set[bytes]:
    return {x.numpy().tobytes() for x in images}


def test_calibrate_scores_only_calibration_images(tiny_pair, synthetic, monkeypatch):
    pair = tiny_pair[0]
    split = MembershipSplit.from_config(pair.config.split)
    seen: list[torch.Tensor] = []
    real = evaluate.score_images

    def spy(p, images, **kw):
        seen.append(images)
        return real(p, images, **kw)

    monkeypatch.setattr(evaluate, "score_images", spy)
    fitted = calibrate(pair, synthetic, split)
    scored = set().union(*(_rows(x) for x in seen))
    calibration = _rows(synthetic.train_images[split.calibration_members]) | _rows(
        synthetic.train_images[split.calibration_nonmembers])
    # The calibration images as they are, and once more randomly edited (as many again).
    assert calibration <= scored and len(scored - calibration) > 0.9 * len(calibration)
    assert not scored & _rows(synthetic.train_images[split.eval_members])
    assert not scored & _rows(synthetic.test_images)
    # What training stored is what calibration gives (up to channels_last rounding in training).
    assert list(fitted) == ["amint"]  # a trace head and no memories: the aMINT verdict alone
    amint = fitted["amint"]
    assert amint["threshold"] == pytest.approx(pair.config.threshold, abs=1e-6)
    assert amint["evidence"] == ["trace"] and 0 <= amint["cal_auc"] <= 1
    # The false-positive rate is measured on half B alone: every family scores its 50 images.
    _, held_out = calibration_halves(split)
    record = amint["fpr_record"]
    assert record["n"] == len(held_out) == 50 and amint["calibration"]["n_nonmembers"] == 50
    assert amint["threshold_fpr"] == record["bound"] == max(r["bound"] for r in record["per_family"].values())


def test_half_b_only_measures_the_false_positive_rate(tiny_pair, synthetic):
    # Replace half B with noise: the Platt weights, the map and the threshold stay; only the measured rate moves.
    pair = tiny_pair[0]
    split = MembershipSplit.from_config(pair.config.split)
    _, held_out = calibration_halves(split)
    train = synthetic.train_images.clone()
    train[held_out] = torch.randint(0, 256, train[held_out].shape, generator=torch.Generator().manual_seed(3),
                                    dtype=torch.uint8)
    other = Benchmark("synthetic", train, synthetic.train_labels, synthetic.test_images, synthetic.test_labels,
                      synthetic.class_names, synthetic.mean, synthetic.std)
    state = {k: v.clone() for k, v in pair.state_dict().items()}
    a, b = calibrate(pair, synthetic, split)["amint"], calibrate(pair, other, split)["amint"]
    for key in ("weights", "bias", "knots", "threshold", "cal_auc", "calibration"):
        assert a[key] == b[key], key
    assert a["fpr_record"]["per_family"] != b["fpr_record"]["per_family"]
    # Calibrating returns the readings; the pair itself is not touched.
    assert all(torch.equal(v, pair.state_dict()[k]) for k, v in state.items())


def test_thresholds_do_not_change_when_evaluation_data_does(tiny_pair, synthetic):
    pair, _ = tiny_pair
    split = MembershipSplit.from_config(pair.config.split)
    g = torch.Generator().manual_seed(1)
    train = synthetic.train_images.clone()
    train[split.eval_members] = torch.randint(0, 256, train[split.eval_members].shape, generator=g, dtype=torch.uint8)
    test = torch.randint(0, 256, synthetic.test_images.shape, generator=g, dtype=torch.uint8)
    other = Benchmark("synthetic", train, synthetic.train_labels, test, synthetic.test_labels,
                      synthetic.class_names, synthetic.mean, synthetic.std)
    a, b = evaluate_pair(pair, synthetic, split), evaluate_pair(pair, other, split)
    assert a["threshold"] == b["threshold"] == pair.config.threshold
    for name in a["baselines"]:
        assert a["baselines"][name]["threshold"] == b["baselines"][name]["threshold"]
    assert a["auc"] != b["auc"]  # the evaluation itself did change
    assert calibrate(pair, synthetic, split) == calibrate(pair, other, split)
