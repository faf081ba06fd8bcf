"""A p-value that holds: the false-positive bound of a calibrated reading, and the set-level test.

Every reading (the member probability with its threshold, or any other score with its own) is
judged the same two steps:

1. ``fpr_bound``: per edit family, how many never-seen images that were never fitted on (calibration
   half B, ``amint.splits.calibration_halves``) score at or above the threshold, and a one-sided
   Clopper-Pearson upper bound on each family's rate. ``FprRecord`` keeps what was measured, how and on
   how many images; its ``bound`` is the worst family's.
2. ``dataset_membership_test``: are more images of a set flagged than that bound explains? A binomial
   tail at the bound (the worst family's, or one family's own when the set's edit is known); identical
   inputs count once.

Nothing here knows a model: scores and counts in, rates and probabilities out.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Hashable, Sequence

import torch

CONFIDENCE = 0.95  # one-sided: the true rate is at most the bound in 95% of calibrations
METHOD = "clopper-pearson"
METHOD_WORDS = "one-sided {confidence:.0%} Clopper-Pearson upper bound"


# --- the binomial distribution, in log space (no scipy needed) ------------------------------------


def _log_pmf(i: int, n: int, p: float) -> float:
    return math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p) + (n - i) * math.log1p(-p)


def _log_sum(logs: list[float]) -> float:
    top = max(logs)
    return top + math.log(sum(math.exp(v - top) for v in logs))


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed in log space."""
    if k <= 0:
        return 1.0
    if p <= 0 or k > n:
        return 0.0
    if p >= 1:
        return 1.0
    return min(1.0, math.exp(_log_sum([_log_pmf(i, n, p) for i in range(k, n + 1)])))


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space (not 1 - sf: no cancellation in the tail)."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0:
        return 1.0
    if p >= 1:
        return 0.0
    return min(1.0, math.exp(_log_sum([_log_pmf(i, n, p) for i in range(0, k + 1)])))


def clopper_pearson_upper(k: int, n: int, confidence: float = CONFIDENCE) -> float:
    """The one-sided Clopper-Pearson upper bound on a rate seen k times in n trials.

    The p at which seeing k or fewer has probability 1 - confidence (the Beta(k + 1, n - k) quantile),
    found by bisection on the binomial CDF, which falls as p grows. 1 when k = n; 1 - (1 - c)^(1/n) at k = 0.
    """
    if not (isinstance(k, int) and isinstance(n, int) and 0 <= k <= n and n > 0):
        raise ValueError(f"need whole counts 0 <= k <= n and n > 0, got k={k!r}, n={n!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    return _clopper_pearson_upper(k, n, float(confidence))


@functools.lru_cache(maxsize=4096)  # pure in its counts: every pair load recomputes its stored bounds
def _clopper_pearson_upper(k: int, n: int, confidence: float) -> float:
    if k == n:
        return 1.0
    alpha = 1 - confidence
    lo, hi = k / n, 1.0  # the CDF at k/n is above alpha (about one half); at 1 it is 0
    for _ in range(100):  # far below float resolution
        mid = (lo + hi) / 2
        if binomial_cdf(k, n, mid) > alpha:
            lo = mid
        else:
            hi = mid
    return hi


# --- the record of a reading's false-positive rate ------------------------------------------------


@dataclass(frozen=True)
class FamilyRate:
    """Never-seen images of one edit family: how many were scored, how many were flagged, the bound."""

    n: int
    flagged: int
    bound: float

    @property
    def rate(self) -> float:
        return self.flagged / self.n


@dataclass(frozen=True)
class NullRate:
    """The false-positive rate a set-level test assumes, and where it comes from."""

    rate: float
    basis: str  # which rate, in words: a family's bound, the worst family's, or an assumption
    method: str  # how it was measured, in words
    n: int  # never-seen images it was measured on (per family); 0 when not measured here
    flagged: int  # of which flagged
    family: str | None = None  # the edit family whose bound it is

    def words(self) -> str:
        """One sentence for people: the rate, which it is, measured how, on how many images."""
        if not self.n:
            return f"{self.rate:.2%}: {self.basis} ({self.method})."
        return (f"{self.rate:.2%}: the {self.method} from {self.flagged:,} of {self.n:,} never-seen images "
                f"flagged; {self.basis}.")

    def to_dict(self) -> dict:
        return {"rate": self.rate, "basis": self.basis, "method": self.method, "n": self.n,
                "flagged": self.flagged, "family": self.family}


@dataclass(frozen=True)
class FprRecord:
    """A threshold's false-positive rate per edit family, each with its upper bound; stored in the pair's config."""

    threshold: float
    confidence: float
    per_family: dict[str, FamilyRate]
    images: str  # which never-seen images were scored, in words
    method: str = METHOD

    def __post_init__(self) -> None:
        if not self.per_family:
            raise ValueError("an FPR record needs at least one edit family")

    @property
    def worst_family(self) -> str:
        return max(self.per_family, key=lambda name: self.per_family[name].bound)

    @property
    def bound(self) -> float:
        """The rate behind every decision and audit that does not know its edit: the worst family's bound."""
        return self.per_family[self.worst_family].bound

    @property
    def method_words(self) -> str:
        return METHOD_WORDS.format(confidence=self.confidence)

    def null_rate(self, family: str | None = None) -> NullRate:
        """The worst family's bound, or ``family``'s own when the set's edit is known."""
        if family is not None and family not in self.per_family:
            raise ValueError(f"No false-positive rate was measured for the edit family {family!r}: "
                             f"choose one of {', '.join(self.per_family)}")
        name = self.worst_family if family is None else family
        r = self.per_family[name]
        basis = (f"{name}, the worst of {len(self.per_family)} edit families" if family is None
                 else f"edit family {name}, as stated for this set")
        return NullRate(r.bound, f"{basis}; images: {self.images}", self.method_words, r.n, r.flagged, name)

    def to_config(self) -> dict:
        sizes = {r.n for r in self.per_family.values()}
        return {
            "method": self.method,
            "confidence": self.confidence,
            "threshold": self.threshold,
            "images": self.images,
            "n": sizes.pop() if len(sizes) == 1 else None,
            "per_family": {name: {"n": r.n, "flagged": r.flagged, "rate": r.rate, "bound": r.bound}
                           for name, r in self.per_family.items()},
            "bound": self.bound,
            "worst_family": self.worst_family,
        }

    @classmethod
    def from_config(cls, data: dict) -> "FprRecord":
        """Read a stored record; the bounds are recomputed from the counts, and must agree with those stored."""
        if data.get("method") != METHOD:
            raise ValueError(f"Unknown false-positive method {data.get('method')!r} in the pair's fpr_record")
        confidence = float(data["confidence"])
        per_family = {}
        for name, r in data["per_family"].items():
            n, flagged = int(r["n"]), int(r["flagged"])
            bound = clopper_pearson_upper(flagged, n, confidence)
            if not math.isclose(bound, float(r["bound"]), rel_tol=1e-9, abs_tol=1e-12):
                raise ValueError(f"fpr_record: the stored bound of {name} ({r['bound']}) is not the "
                                 f"{confidence:.0%} bound of {flagged} in {n} ({bound}): the config was edited")
            per_family[name] = FamilyRate(n, flagged, bound)
        record = cls(float(data["threshold"]), confidence, per_family, str(data.get("images", "")))
        if not math.isclose(record.bound, float(data["bound"]), rel_tol=1e-9, abs_tol=1e-12):
            raise ValueError(f"fpr_record: the stored bound {data['bound']} is not the worst family's {record.bound}")
        return record


def fpr_bound(nonmember_scores_by_family: dict[str, torch.Tensor], threshold: float, images: str = "",
              confidence: float = CONFIDENCE) -> FprRecord:
    """Count never-seen images at or above ``threshold`` per edit family; bound each family's rate.

    The scores must come from images nothing was fitted on (not the threshold, not the readout, not
    early stopping): a rate measured in sample is optimistic.
    """
    per_family = {}
    for name, scores in nonmember_scores_by_family.items():
        n, flagged = len(scores), int((scores >= threshold).sum())
        per_family[name] = FamilyRate(n, flagged, clopper_pearson_upper(flagged, n, confidence))
    return FprRecord(float(threshold), confidence, per_family, images)


# --- the set-level test ---------------------------------------------------------------------------


@dataclass
class DatasetVerdict:
    n_images: int  # distinct images tested (identical inputs counted once)
    n_flagged: int
    expected_by_chance: float  # n_images * the null rate: at most this many flagged if none were members
    fpr: float  # the null rate (null.rate)
    p_value: float  # P(at least n_flagged flagged | none of the images were members), at the null rate
    reading: str
    n_duplicates: int = 0  # images left out as identical to an earlier one in the set
    null: NullRate | None = field(default=None)

    def to_dict(self) -> dict:
        """What the CLI's --json and the app's JSON show: the verdict, and which rate it rests on."""
        return {"n_images": self.n_images, "n_duplicates": self.n_duplicates, "n_flagged": self.n_flagged,
                "expected_by_chance": self.expected_by_chance, "fpr": self.fpr,
                "fpr_basis": self.null.to_dict() if self.null else None, "p_value": self.p_value,
                "reading": self.reading}


def as_null_rate(null: NullRate | float) -> NullRate:
    if isinstance(null, NullRate):
        rate = null.rate
    else:
        rate = float(null)
        null = NullRate(rate, "given by the caller", "not measured here", 0, 0)
    if not 0 < rate <= 1:
        raise ValueError(f"the null false-positive rate must be in (0, 1], got {rate}: a measured 0 is not a bound, "
                         "pass its upper bound (clopper_pearson_upper)")
    return null


# What a flagged image is, what a set with too many of them shows, and what finding too few cannot show,
# per reading (the words of _reading). "member_no_trace": the aMINT verdict of a pair whose trace is at chance.
CLAIMS = {
    "member": ("flagged as members", "this set was used in training", ""),
    "index": ("found in the training index", "this set is in the pair's training index", ""),
    "member_no_trace": ("flagged as members", "this set was used in training",
                        " This model shows no detectable trace (calibration AUC below 0.6): its verdict flags training "
                        "images about as often as never-seen ones, so this test can hardly find a set that was used."),
}


def conclusion_words(p: float, claim: str = "member") -> str:
    """What a set-level p-value shows, in words, graded by its strength (CLAIMS names the claim)."""
    _, conclusion, unfound = CLAIMS[claim]
    if p < 0.001:
        return f"Very strong evidence that {conclusion}."
    if p < 0.05:
        return f"Evidence that at least part of {conclusion}."
    return f"No evidence that {conclusion}.{unfound}"


def dataset_membership_test(probabilities: torch.Tensor, threshold: float, null: NullRate | float,
                            keys: Sequence[Hashable] | None = None, claim: str = "member") -> DatasetVerdict:
    """Binomial test: are more images flagged than the null false-positive rate explains?

    ``null`` is an upper bound on the rate for never-seen images (``FprRecord.null_rate``), so the p-value
    does not overstate the evidence. ``claim`` words the reading: "member" (the model's verdict), "index"
    (the fingerprint's lookup in the training index shipped with a pair), "member_no_trace" (the verdict of a model
    whose trace is at chance: a set not found says little). ``keys`` (one per score, e.g. the SHA-256 of the model input) mark
    identical inputs: each counts once, since a copy adds no independent evidence.
    """
    null = as_null_rate(null)
    total = len(probabilities)
    if keys is not None:
        if len(keys) != total:
            raise ValueError(f"{len(keys)} keys for {total} scores")
        first: dict[Hashable, int] = {}
        for i, key in enumerate(keys):
            first.setdefault(key, i)
        probabilities = probabilities[sorted(first.values())]
    n = len(probabilities)
    k = int((probabilities >= threshold).sum())
    p_value = binomial_sf(k, n, null.rate)
    expected = n * null.rate
    return DatasetVerdict(n, k, expected, null.rate, p_value, _reading(n, k, expected, p_value, total - n, claim),
                          total - n, null)


def _reading(n: int, k: int, expected: float, p: float, duplicates: int, claim: str = "member") -> str:
    if n == 0:
        return "No images to test."
    counts = f"{k} of {n} images were {CLAIMS[claim][0]}, where up to {expected:.1f} would be by chance."
    if duplicates:
        counts += f" {duplicates} identical {'copy' if duplicates == 1 else 'copies'} of images in the set counted once."
    return f"{counts} {conclusion_words(p, claim)}"
