"""amint.pvalue: the binomial tails, the Clopper-Pearson bound, the FPR record and the set-level test."""

from __future__ import annotations

import math

import pytest
import torch

from amint.pvalue import (
    FprRecord,
    NullRate,
    binomial_cdf,
    binomial_sf,
    clopper_pearson_upper,
    dataset_membership_test,
    fpr_bound,
)
from amint.splits import calibration_halves, make_split

t = torch.tensor


def test_binomial_sf_and_cdf_exact():
    assert binomial_sf(2, 3, 0.5) == pytest.approx(0.5)
    assert binomial_sf(3, 3, 0.5) == pytest.approx(1 / 8)
    assert binomial_sf(1, 4, 0.1) == pytest.approx(1 - 0.9**4)
    assert binomial_sf(0, 5, 0.3) == 1.0
    assert binomial_sf(4, 3, 0.5) == 0.0  # more successes than trials: impossible
    for k in range(11):
        exact = sum(math.comb(10, i) * 0.3**i * 0.7 ** (10 - i) for i in range(k, 11))
        assert binomial_sf(k, 10, 0.3) == pytest.approx(exact, rel=1e-9)
        assert binomial_cdf(k, 10, 0.3) == pytest.approx(1 - exact + math.comb(10, k) * 0.3**k * 0.7 ** (10 - k),
                                                         rel=1e-9)
    assert 0 <= binomial_sf(900, 1000, 0.05) < 1e-300  # far tail: no overflow, no error
    assert 0 < binomial_cdf(0, 10_000, 0.05) < 1e-200


def test_clopper_pearson_upper_is_the_beta_quantile():
    # Closed forms: k = 0 gives 1 - alpha^(1/n); k = n gives 1.
    assert clopper_pearson_upper(0, 2500) == pytest.approx(1 - 0.05 ** (1 / 2500), rel=1e-12)
    assert clopper_pearson_upper(0, 1) == pytest.approx(0.95, rel=1e-12)
    assert clopper_pearson_upper(7, 7) == 1.0
    # By definition: at the bound, seeing k or fewer has probability exactly 1 - confidence.
    for k, n in ((1, 10), (28, 2500), (113, 10_000), (499, 500)):
        u = clopper_pearson_upper(k, n)
        assert binomial_cdf(k, n, u) == pytest.approx(0.05, rel=1e-9) and u > k / n
    assert clopper_pearson_upper(28, 2500, confidence=0.99) > clopper_pearson_upper(28, 2500)
    for bad in ((3, 2), (-1, 5), (1, 0), (1.0, 5)):
        with pytest.raises(ValueError):
            clopper_pearson_upper(*bad)


def test_clopper_pearson_upper_agrees_with_scipy():
    stats = pytest.importorskip("scipy.stats")  # not a dependency: a cross-check where it is installed
    for k, n in ((0, 10), (5, 10), (28, 2500), (33, 2500), (113, 10_000), (2500, 5000)):
        assert clopper_pearson_upper(k, n) == pytest.approx(stats.beta.ppf(0.95, k + 1, n - k), rel=1e-10)


def test_fpr_record_per_family_worst_bound_and_round_trip():
    scores = {"exact": t([0.9] * 3 + [0.1] * 97), "jpeg75": t([0.9] * 6 + [0.1] * 94), "shift1": t([0.1] * 100)}
    record = fpr_bound(scores, threshold=0.5, images="test images")
    assert {name: r.flagged for name, r in record.per_family.items()} == {"exact": 3, "jpeg75": 6, "shift1": 0}
    assert record.worst_family == "jpeg75" and record.bound == clopper_pearson_upper(6, 100)
    config = record.to_config()
    assert config["n"] == 100 and config["method"] == "clopper-pearson" and config["confidence"] == 0.95
    assert FprRecord.from_config(config) == record
    # The default null is the worst family's bound; a known family uses its own.
    assert record.null_rate().rate == record.bound and record.null_rate().family == "jpeg75"
    assert record.null_rate("shift1").rate == clopper_pearson_upper(0, 100)
    with pytest.raises(ValueError, match="crop92"):
        record.null_rate("crop92")
    words = record.null_rate().words()
    assert "6 of 100" in words and "Clopper-Pearson" in words and "jpeg75" in words and "3 edit families" in words
    # A stored bound that is not the bound of its counts is refused.
    config["per_family"]["jpeg75"]["bound"] = 0.01
    with pytest.raises(ValueError, match="edited"):
        FprRecord.from_config(config)


def test_dataset_membership_test():
    high = dataset_membership_test(torch.full((50,), 0.9), threshold=0.5, null=0.05)
    low = dataset_membership_test(torch.full((50,), 0.1), threshold=0.5, null=0.05)
    assert (high.n_flagged, low.n_flagged) == (50, 0)
    assert high.p_value < 1e-30 and low.p_value == 1.0
    assert "Very strong evidence" in high.reading and "No evidence" in low.reading
    some = dataset_membership_test(t([0.9] * 8 + [0.1] * 42), 0.5, 0.05)
    assert 1e-3 < some.p_value < 0.05 and "Evidence that" in some.reading
    assert some.p_value == pytest.approx(binomial_sf(8, 50, 0.05)) and some.expected_by_chance == pytest.approx(2.5)
    # A measured 0 is not a bound: the test refuses it rather than give p = 0 for one flagged image.
    with pytest.raises(ValueError, match="upper bound"):
        dataset_membership_test(t([0.9] + [0.1] * 9), 0.5, 0.0)
    null = NullRate(clopper_pearson_upper(0, 100), "measured", "bound", 100, 0)
    one = dataset_membership_test(t([0.9] + [0.1] * 9), 0.5, null)
    assert one.fpr == pytest.approx(1 - 0.05 ** 0.01) and one.p_value > 0.05 and one.null is null


def test_identical_inputs_count_once():
    # 20 copies of one flagged image are one flagged image, not 20.
    probs = t([0.9] * 20 + [0.1] * 30)
    keys = ["same"] * 20 + [f"other{i}" for i in range(30)]
    v = dataset_membership_test(probs, 0.5, 0.05, keys=keys)
    assert (v.n_images, v.n_flagged, v.n_duplicates) == (31, 1, 19)
    assert v.p_value == pytest.approx(binomial_sf(1, 31, 0.05)) and "19 identical copies" in v.reading
    assert dataset_membership_test(probs, 0.5, 0.05).p_value < 1e-12  # without keys every copy counts
    d = v.to_dict()
    assert d["n_duplicates"] == 19 and d["fpr_basis"]["basis"] == "given by the caller"


def test_calibration_halves_are_disjoint_fixed_and_cover_the_calibration_nonmembers():
    split = make_split(1200, 300, 500, 550, 101, seed=4)
    a, b = calibration_halves(split)
    assert (len(a), len(b)) == (51, 50)
    assert not set(a.tolist()) & set(b.tolist())
    assert sorted(a.tolist() + b.tolist()) == sorted(split.calibration_nonmembers.tolist())
    again = calibration_halves(make_split(1200, 300, 500, 550, 101, seed=4))
    assert torch.equal(a, again[0]) and torch.equal(b, again[1])
    other = calibration_halves(make_split(1200, 300, 500, 550, 101, seed=5))
    assert not torch.equal(a, other[0])
