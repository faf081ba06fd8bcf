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


# One-sided 95% Clopper-Pearson upper bounds (the Beta(k + 1, n - k) 0.95 quantile), computed independently of
# amint: with scipy.stats.beta.ppf and, for the first three, by mpmath root-finding on the regularised incomplete
# beta function at 40 digits; both agree to 1e-14.
REFERENCE_BOUNDS = {(1, 10): 0.394163302436505, (5, 2500): 0.0042005786343956, (8, 2500): 0.00576643037538834,
                    (39, 2500): 0.020327135576822593, (12, 500): 0.038595578839896755,
                    (113, 10_000): 0.01319855965084901}


@pytest.mark.parametrize("k, n", list(REFERENCE_BOUNDS))
def test_clopper_pearson_upper_matches_reference_values(k, n):
    assert clopper_pearson_upper(k, n) == pytest.approx(REFERENCE_BOUNDS[k, n], rel=1e-10)


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


def _null_record(generator: torch.Generator, rates: dict[str, float], n: int = 2500) -> "FprRecord":
    """A reading's record measured on n never-seen images per family, each family flagging at its true rate."""
    return fpr_bound({name: (torch.rand(n, generator=generator) < rate).double() for name, rate in rates.items()},
                     threshold=0.5, images="simulated never-seen images")


def test_sets_of_never_seen_images_read_p_below_alpha_at_most_alpha_of_the_time():
    # Exactly-null sets: none of the images is a member; each is flagged at its family's true rate. Every round
    # measures a fresh record (2,500 images per family), then audits sets of 500 drawn from the worst family (the
    # hardest case for the worst family's bound) and one from each family with its own bound.
    rates = {"exact": 0.006, "jpeg75": 0.005, "resize224": 0.01, "crop92": 0.008}
    true_worst = max(rates, key=rates.get)
    g = torch.Generator().manual_seed(16)
    rounds, alpha = 120, 0.05
    worst, own = [], []
    for _ in range(rounds):
        record = _null_record(g, rates)
        for _ in range(4):
            audit = (torch.rand(500, generator=g) < rates[true_worst]).double()
            worst.append(dataset_membership_test(audit, 0.5, record.null_rate()).p_value < alpha)
        for family, rate in rates.items():
            audit = (torch.rand(500, generator=g) < rate).double()
            own.append(dataset_membership_test(audit, 0.5, record.null_rate(family)).p_value < alpha)
    for rejected in (worst, own):
        share = sum(rejected) / len(rejected)
        assert share <= alpha + 2 * (alpha * (1 - alpha) / len(rejected)) ** 0.5, share
    # The bound holds the p-value well under alpha; at the true rate itself the test is still valid (discrete).
    assert sum(worst) / len(worst) < alpha / 2
    at_truth = [dataset_membership_test((torch.rand(500, generator=g) < 0.01).double(), 0.5, 0.01).p_value < alpha
                for _ in range(400)]
    assert sum(at_truth) / 400 <= alpha + 2 * (alpha * (1 - alpha) / 400) ** 0.5


def test_the_bound_of_a_record_is_its_worst_family_and_covers_the_true_rate():
    # Over many simulated calibrations the 95% bound is below the true rate about 5% of the time, never much more.
    g = torch.Generator().manual_seed(17)
    rates = {"exact": 0.004, "screenshot": 0.012}
    records = [_null_record(g, rates) for _ in range(200)]
    for record in records:
        assert record.bound == max(r.bound for r in record.per_family.values())
        assert record.null_rate().family == record.worst_family
    below = sum(r.per_family["screenshot"].bound < rates["screenshot"] for r in records) / len(records)
    assert below <= 0.05 + 2 * (0.05 * 0.95 / len(records)) ** 0.5, below


def test_duplicates_by_digest_of_the_preprocessed_input_count_once_in_an_audit():
    # amint.audit keys each image by the SHA-256 of its model input: the same pixels are one image, whatever the file.
    import numpy as np

    from amint.audit import input_digest

    a = np.zeros((28, 28), np.uint8)
    b = a.copy()
    b[0, 0] = 1
    keys = [input_digest(x) for x in (a, a.copy(), b, a)]
    assert keys[0] == keys[1] == keys[3] != keys[2]
    assert input_digest(a) != input_digest(a.reshape(1, 28, 28)) and input_digest(a) != input_digest(a[:27])
    v = dataset_membership_test(t([0.9, 0.9, 0.1, 0.9]), 0.5, 0.01, keys=keys)
    assert (v.n_images, v.n_duplicates, v.n_flagged) == (2, 2, 1) and v.to_dict()["n_duplicates"] == 2
    assert "2 identical copies" in v.reading


# --- calibration targets: one rate for every reading, or one per reading ---------------------------


def test_calibration_targets_per_reading():
    import argparse

    from amint.cli import _target_fpr
    from amint.readings import Reading, stored_targets, target_for

    assert target_for(0.01, "amint") == 0.01 and target_for(None, "fingerprint") is None
    both = {"amint": 0.01, "fingerprint": 0.003}
    assert target_for(both, "fingerprint") == 0.003
    with pytest.raises(ValueError, match="fingerprint"):
        target_for({"amint": 0.01}, "fingerprint")
    assert _target_fpr("amint=0.01,fingerprint=0.003") == both
    assert _target_fpr("fingerprint=none, amint=0.02") == {"fingerprint": None, "amint": 0.02}
    assert (_target_fpr("0.005"), _target_fpr("none"), _target_fpr("stored")) == (0.005, None, "stored")
    for bad in ("amint=0.01", "amint=0.01,trace=0.1", "amint=2,fingerprint=0.1", "amint=stored,fingerprint=0.1", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            _target_fpr(bad)
    # 'stored': each reading's last target; a reading that records none (a legacy pair) gets the trained one.
    fp = Reading("fingerprint", ["memory_exact"], [1.0], 0.0, 0.9, calibration={"target_fpr": 0.003})
    amint = Reading("amint", ["trace"], [1.0], 0.0, 0.6, calibration={"target_fpr": 0.01})
    assert stored_targets({"amint": amint, "fingerprint": fp}, 0.05) == both
    legacy = Reading("combined", ["trace"], [1.0], 0.0, 0.6, legacy=True)
    assert stored_targets({"combined": legacy}, 0.01) == {"amint": 0.01, "fingerprint": 0.01}


def test_cli_calibrate_fits_each_reading_at_its_own_target_and_keeps_them(tiny_memory_pair, synthetic, tmp_path,
                                                                           monkeypatch, capsys):
    import hashlib
    import json
    import shutil

    from amint import cli, data
    from amint.pair import AuditedPair

    _, source = tiny_memory_pair
    folder = tmp_path / "pair"
    shutil.copytree(source, folder)
    weights = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    monkeypatch.setattr(data, "load_benchmark", lambda name, root=None, image_size=None: synthetic)

    def targets():
        readings = AuditedPair.from_pretrained(folder).readings
        return {name: r.calibration["target_fpr"] for name, r in readings.items()}

    assert cli.main(["calibrate", str(folder), "--device", "cpu", "--target-fpr", "amint=0.2,fingerprint=0.05"]) == 0
    assert targets() == {"amint": 0.2, "fingerprint": 0.05}
    first = json.loads((folder / "config.json").read_text())["readings"]
    assert cli.main(["calibrate", str(folder), "--device", "cpu"]) == 0  # 'stored': the same targets again
    assert targets() == {"amint": 0.2, "fingerprint": 0.05}
    again = json.loads((folder / "config.json").read_text())["readings"]
    assert {n: r["threshold"] for n, r in again.items()} == {n: r["threshold"] for n, r in first.items()}
    assert hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest() == weights
    capsys.readouterr()
