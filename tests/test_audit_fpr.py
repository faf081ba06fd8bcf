"""Acceptance (issue 16): audits of never-seen sets hold their p-values on the shipped default pair, per reading.

Never-seen sets are drawn from the official Fashion-MNIST test split (the pair never saw it: neither its
training nor its calibration). Per edit family (exact copies, every suite edit, the random chains, and one
edit outside the suite: 3x bicubic then JPEG 85) the whole split is edited and scored once, in a session
fixture the tests share; every reading with a false-positive record (the aMINT verdict, the fingerprint) is
read from that one forward, and the audits then apply the reading's own decision and amint.pvalue's test as
``audit_images`` does. One audit runs the whole way through ``python -m amint audit --json`` on a zip.

Skipped where the dataset is not installed (`apt-get install dataset-fashion-mnist`, as .ci/run does).
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from amint import cli
from amint.audit import input_digest
from amint.data import SYSTEM_FASHION_MNIST_DIR, load_benchmark
from amint.edits import EDIT_FAMILIES, edit_images, enlarge, family_images, jpeg, to_pil
from amint.evaluate import score_images
from amint.pair import AuditedPair
from amint.pvalue import dataset_membership_test
from amint.readings import AMINT, FINGERPRINT
from amint.splits import MembershipSplit

ROOT = Path(__file__).resolve().parents[1]
PAIR_DIR = ROOT / "models" / "fashion-mnist-resnet18"

pytestmark = pytest.mark.skipif(
    not (SYSTEM_FASHION_MNIST_DIR.is_dir() and (PAIR_DIR / "model.safetensors").is_file()),
    reason="needs Debian's dataset-fashion-mnist and the shipped default pair",
)

OUTSIDE = "enlarge3x_jpeg85"  # the screenshot: not in the suite, no family of the record
FAMILIES = (*EDIT_FAMILIES, OUTSIDE)
READINGS = (AMINT, FINGERPRINT)
SETS = ((500, 20), (5000, 2))  # per family: 20 disjoint sets of 500 and 2 of 5,000, each drawn over the whole split
ALPHA = 0.05
N_AUDITS = len(FAMILIES) * sum(count for _, count in SETS)


def enlarge3x_jpeg85(image: Image.Image) -> Image.Image:
    """What the issue's auditor did: enlarged 3x (bicubic), then saved as JPEG quality 85."""
    return jpeg(enlarge(image, 3 * min(image.size)), 85)


class SplitScores:
    """The default pair's readings of the whole test split per family (scored once, on demand), with input digests."""

    def __init__(self):
        self.pair = AuditedPair.from_pretrained(PAIR_DIR)
        self.bench = load_benchmark("fashion-mnist")
        self.seconds: dict[str, float] = {}
        self._cache: dict[str, tuple[dict[str, torch.Tensor], list[str]]] = {}

    def images(self, family: str) -> torch.Tensor:
        if family == OUTSIDE:
            return edit_images(self.bench.test_images, enlarge3x_jpeg85, self.pair.config)
        return family_images(self.bench.test_images, family, self.pair.config)

    def __getitem__(self, family: str) -> tuple[dict[str, torch.Tensor], list[str]]:
        """Per reading the (10,000,) probabilities, and each image's SHA-256 as the model receives it."""
        if family not in self._cache:
            t0 = time.perf_counter()
            x = self.images(family)
            probabilities = score_images(self.pair, x).probabilities
            digests = [input_digest(a[0].numpy() if a.shape[0] == 1 else a.permute(1, 2, 0).numpy()) for a in x]
            self._cache[family] = ({name: probabilities[name] for name in READINGS}, digests)
            self.seconds[family] = time.perf_counter() - t0
        return self._cache[family]

    def flagged(self, reading: str, family: str) -> torch.Tensor:
        return self[family][0][reading] >= self.pair.readings[reading].threshold

    def stated_bound(self, reading: str, family: str) -> tuple[float, str]:
        """The bound an audit of this family states: the family's own where the record has it, else the worst's."""
        record = self.pair.readings[reading].fpr_record
        if family in record.per_family:
            return record.per_family[family].bound, family
        return record.bound, record.worst_family


@pytest.fixture(scope="session")
def split_scores() -> SplitScores:
    scores = SplitScores()
    yield scores
    if scores.seconds:
        print(f"\n[test_audit_fpr] scored the test split for {len(scores.seconds)} families in "
              f"{sum(scores.seconds.values()):.0f} s")


def test_both_readings_state_a_held_out_bound(split_scores):
    for name in READINGS:
        record = split_scores.pair.readings[name].fpr_record
        assert record is not None and set(record.per_family) == set(EDIT_FAMILIES), name
        assert all(r.n == 2500 for r in record.per_family.values()) and "half B" in record.images


def _audits(split_scores: SplitScores, reading: str, family: str, known: bool = False) -> list:
    """The verdicts of the family's disjoint never-seen sets, tested as an audit does: against the worst family's
    bound, or (``known``) the family's own, as ``audit --family`` does."""
    probabilities, digests = split_scores[family]
    scores = probabilities[reading]
    r = split_scores.pair.readings[reading]
    null = r.null_rate(family if known else None)
    verdicts = []
    for size, count in SETS:
        order = torch.randperm(len(scores), generator=torch.Generator().manual_seed(size))
        for i in range(count):
            idx = order[i * size:(i + 1) * size]
            verdicts.append(dataset_membership_test(scores[idx], r.threshold, null, keys=[digests[j] for j in idx]))
    return verdicts


# Families whose share of the 10,000 test images is above their own 95% bound (from half B's 2,500). Among 2 readings
# x 15 families about one such miss is expected; the worst family's bound, which audits state, must hold regardless.
# Measured on the default pair (views, mint1, taps23, batch64, 100 epochs): the aMINT verdict on shift1, 74 of 10,000
# against its 0.68%. (The pair before it: none; the one before flagged 91 of the test images re-saved as JPEG 50
# against that family's 0.73%; the first default pair missed on the random edit chain: 78 of 10,000 against 0.63%.)
OWN_BOUND_EXCEEDED: set[tuple[str, str]] = {(AMINT, "shift1")}


@pytest.mark.parametrize("reading", READINGS)
@pytest.mark.parametrize("family", FAMILIES)
def test_flagged_share_of_never_seen_images_is_within_the_stated_bound(split_scores, reading, family):
    share = float(split_scores.flagged(reading, family).double().mean())
    record = split_scores.pair.readings[reading].fpr_record
    bound, basis = split_scores.stated_bound(reading, family)
    print(f"[{reading}] {family}: {share:.4f} of 10,000 flagged; bound {bound:.4f} ({basis})")
    # What every audit states unless told the set's family: the worst family's bound. It holds for every family,
    # the one outside the suite (which has no bound of its own) included.
    assert share <= record.bound, (reading, family, share, record.bound)
    # A suite family's own bound (audit --family FAMILY): it holds for all but the measured exception.
    if (reading, family) in OWN_BOUND_EXCEEDED:
        assert share > bound, f"{reading} {family} now holds its own bound: drop it from OWN_BOUND_EXCEEDED"
    else:
        assert share <= bound, (reading, family, share, bound, basis)


@pytest.mark.parametrize("reading", READINGS)
def test_pooled_audits_of_never_seen_sets_reject_at_most_alpha(split_scores, reading):
    verdicts = [v for family in FAMILIES for v in _audits(split_scores, reading, family)]
    assert len(verdicts) == N_AUDITS == 330
    assert {v.n_images + v.n_duplicates for v in verdicts} == {500, 5000}
    share = float(np.mean([v.p_value < ALPHA for v in verdicts]))
    se = (ALPHA * (1 - ALPHA) / len(verdicts)) ** 0.5
    print(f"[{reading}] p < {ALPHA} in {share:.4f} of {len(verdicts)} audits (worst family's bound)")
    assert share <= ALPHA + 2 * se, (reading, share)
    # A suite family named for the set (audit --family) tests against its own, smaller bound: that holds too.
    known = [v for family in EDIT_FAMILIES for v in _audits(split_scores, reading, family, known=True)]
    share = float(np.mean([v.p_value < ALPHA for v in known]))
    print(f"[{reading}] p < {ALPHA} in {share:.4f} of {len(known)} audits (each family's own bound)")
    assert share <= ALPHA + 2 * (ALPHA * (1 - ALPHA) / len(known)) ** 0.5, (reading, share)


def _fifty_in_five_thousand(split_scores: SplitScores, reading: str):
    """50 scored members (exact copies, from the pair's split, never calibrated on) among 4,950 never-seen test
    images, tested with the reading's stated bound (the worst family's), as an audit of the set would be."""
    pair = split_scores.pair
    split = MembershipSplit.from_config(pair.config.split)
    members = score_images(pair, split_scores.bench.train_images[split.eval_members[:50]]).probabilities[reading]
    never_seen = split_scores["exact"][0][reading][:4950]
    r = pair.readings[reading]
    return dataset_membership_test(torch.cat([members, never_seen]), r.threshold, r.null_rate())


def test_a_few_members_in_a_large_never_seen_set_are_found(split_scores):
    verdict = _fifty_in_five_thousand(split_scores, FINGERPRINT)
    print(f"[fingerprint] 50 members in 5,000: {verdict.n_flagged} flagged, {verdict.expected_by_chance:.1f} "
          f"expected, p = {verdict.p_value:.3g}")
    assert verdict.n_images == 5000 and verdict.p_value < 0.01, verdict
    # The aMINT verdict finds sets with many training images, not a few among many: its power is reported, not asserted.
    trace = _fifty_in_five_thousand(split_scores, AMINT)
    print(f"[amint] 50 members in 5,000: {trace.n_flagged} flagged, {trace.expected_by_chance:.1f} expected, "
          f"p = {trace.p_value:.3g}")


def test_cli_audit_of_a_zipped_never_seen_set_matches_and_states_its_rate(split_scores, tmp_path, capsys):
    # The set, smaller: never-seen test images enlarged 3x, saved as JPEG 85, zipped; and one repeated.
    archive = tmp_path / "set.zip"
    n = 300
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(n):
            buf = io.BytesIO()
            enlarge3x_jpeg85(to_pil(split_scores.bench.test_images[i].permute(1, 2, 0).numpy())).save(buf, format="PNG")
            zf.writestr(f"img{i:04d}.png", buf.getvalue())
        zf.writestr("copy-of-img0000.png", zf.read("img0000.png"))
    assert cli.main(["audit", str(PAIR_DIR), str(archive), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    probabilities, digests = split_scores[OUTSIDE]
    assert len(set(digests[:n])) == n
    for name, said in ((AMINT, out), (FINGERPRINT, out["fingerprint"])):
        r = split_scores.pair.readings[name]
        record = r.fpr_record
        assert said["n_images"] == n and said["n_duplicates"] == 1
        assert said["n_flagged"] == int(split_scores.flagged(name, OUTSIDE)[:n].sum()), name
        # The rate: the worst family's bound, measured on calibration half B, on that many images.
        basis = said["fpr_basis"]
        assert said["fpr"] == basis["rate"] == record.bound and basis["family"] == record.worst_family
        assert basis["n"] == 2500 and basis["flagged"] == record.per_family[record.worst_family].flagged
        assert "Clopper-Pearson" in basis["method"] and "half B" in basis["basis"]
    assert out["reading_name"] == AMINT
    # The zip's images are the cached ones, as the model receives them (the JSON rounds to 4 decimals).
    rows = out["images"]
    assert rows[7]["file"] == f"{archive.name}/img0007.png" and len(rows) == n + 1
    assert [row["member_probability"] for row in rows[:n]] == pytest.approx(probabilities[AMINT][:n].tolist(),
                                                                            abs=5.1e-5)
    assert [row["fingerprint_probability"] for row in rows[:n]] == pytest.approx(
        probabilities[FINGERPRINT][:n].tolist(), abs=5.1e-5)
    # The plain output says, per reading, which rate the null uses, measured how and on how many images.
    assert cli.main(["audit", str(PAIR_DIR), str(archive)]) == 0
    text = capsys.readouterr().out
    for name in READINGS:
        words = split_scores.pair.readings[name].null_rate().words()
        assert f"False-positive rate: {words}" in text, name
        assert "Clopper-Pearson" in words and "of 2,500 never-seen images" in words and "half B" in words
        assert "none used to fit a reading or its threshold" in words


def test_never_seen_sets_of_one_class_are_reported(split_scores):
    # The bound is measured on varied images; a set of one class is not varied. Measured per class (exact copies,
    # 1,000 never-seen test images each): the fingerprint holds its p-value for every class; the aMINT verdict's
    # per-class rates are printed for the limits (README), not asserted.
    _, digests = split_scores["exact"]
    labels = split_scores.bench.test_labels
    for name in READINGS:
        r = split_scores.pair.readings[name]
        scores = split_scores["exact"][0][name]
        verdicts = []
        for c, label in enumerate(split_scores.bench.class_names):
            idx = torch.nonzero(labels == c).squeeze(1)
            verdicts.append(dataset_membership_test(scores[idx], r.threshold, r.null_rate(),
                                                    keys=[digests[j] for j in idx]))
        print(f"[{name}] one class of 1,000: " + ", ".join(
            f"{label} {v.n_flagged} (p {v.p_value:.2g})" for label, v in zip(split_scores.bench.class_names, verdicts)))
        if name == FINGERPRINT:
            assert all(v.p_value >= ALPHA for v in verdicts), verdicts
