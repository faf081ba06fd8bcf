"""Audit a set of images: one verdict per image, then a test of the whole set.

A single verdict can be a false alarm; a set where many more images are flagged than the threshold's
false-positive bound explains is evidence that the set (or part of it) was used in training
(amint.pvalue: the bound, measured on never-seen images nothing was fitted on, and the test).
Identical model inputs count once.
"""

from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .pair import AuditedPair, PairConfig
from .pvalue import DatasetVerdict, FprRecord, NullRate, clopper_pearson_upper, dataset_membership_test
from .uploads import MAX_AUDIT_FILES, UploadError, ZipEntry, is_archive_junk, zip_image_entries  # noqa: F401
from .verify import ImageError, Verdict, verify_images


@dataclass
class AuditRow:
    file: str
    member_probability: float | None  # None when the file could not be read
    is_member: bool | None
    predicted_class: str | None
    error: str | None
    thumbnail: np.ndarray | None  # the model's input (uint8 HxW or HxWx3)

    @property
    def decision(self) -> str:
        """member / not a member / unreadable: the words every table of an audit uses."""
        if self.is_member is None:
            return "unreadable"
        return "member" if self.is_member else "not a member"


@dataclass
class AuditResult:
    rows: list[AuditRow]
    verdict: DatasetVerdict
    scores: list[float]  # member probabilities of the readable images, in row order

    def to_csv(self, path: str | Path) -> Path:
        path = Path(path)
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "member_probability", "is_member", "predicted_class", "error"])
            for r in self.rows:
                writer.writerow([r.file, "" if r.member_probability is None else f"{r.member_probability:.6f}",
                                 "" if r.is_member is None else r.is_member, r.predicted_class or "", r.error or ""])
        return path

    def table(self) -> list[list]:
        """Rows for display: file, probability (rounded), decision, predicted class, error."""
        return [[r.file, None if r.member_probability is None else round(r.member_probability, 4),
                 r.decision, r.predicted_class or "", r.error or ""] for r in self.rows]


# --- uploads ----------------------------------------------------------------------------------


def expand_uploads(paths: list[str | Path]) -> list[tuple[str, Path | ZipEntry]]:
    """Files as they are, .zip archives as their image entries (read lazily); (display name, source) pairs.

    Plain files are kept whatever their extension, so a wrong file gets its own error row. Zips are
    checked against amint.uploads' limits (UploadError names the one broken), and so is the total:
    at most MAX_AUDIT_FILES images per audit.
    """
    items: list[tuple[str, Path | ZipEntry]] = []
    for p in map(Path, paths):
        if p.suffix.lower() == ".zip":
            items += zip_image_entries(p, MAX_AUDIT_FILES)
        else:
            items.append((p.name, p))
        if len(items) > MAX_AUDIT_FILES:
            raise UploadError(f"The upload holds more than {MAX_AUDIT_FILES:,} images; the limit is "
                              f"{MAX_AUDIT_FILES:,} per audit: split the set")
    return items


# --- the audit --------------------------------------------------------------------------------


def audit_images(
    pair: AuditedPair,
    items: list[tuple[str, Any]],
    batch_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
    family: str | None = None,
) -> AuditResult:
    """Verdict per (name, source) item and the dataset-level test over the readable ones.

    The test's null rate is the pair's stated false-positive bound: the worst edit family's, or
    ``family``'s own when the caller knows how every image of the set was made (``FAMILY_DESCRIPTIONS``).
    """
    null = null_rate(pair.config, family)  # before the work: an unknown family fails at once
    names = [name for name, _ in items]
    results = verify_images(pair, [src for _, src in items], batch_size, progress, names=names)
    rows = [_row(name, r) for name, r in zip(names, results)]
    readable = [r for r in rows if r.member_probability is not None]
    scores = [r.member_probability for r in readable]
    verdict = dataset_membership_test(torch.tensor(scores, dtype=torch.float64), pair.config.threshold, null,
                                      keys=[input_digest(r.thumbnail) for r in readable])
    return AuditResult(rows, verdict, scores)


def input_digest(model_input: np.ndarray) -> str:
    """SHA-256 of the preprocessed model input (uint8 pixels and shape): equal inputs are one image to the test."""
    a = np.ascontiguousarray(model_input)
    return hashlib.sha256(repr((a.shape, a.dtype.str)).encode() + a.tobytes()).hexdigest()


def null_rate(config: PairConfig, family: str | None = None) -> NullRate:
    """The false-positive rate a pair's audits test against, and where it comes from.

    A pair calibrated by this version states a bound per edit family (``fpr_record``). An older pair
    states one rate measured on the images its threshold was fitted on: that is bounded here the same
    way, on that count, and said to be in sample. A pair that states nothing is tested against 5%.
    """
    if config.fpr_record:
        return FprRecord.from_config(config.fpr_record).null_rate(family)
    if family is not None:
        raise ValueError(f"This pair states no false-positive rate per edit family, so {family!r} cannot be chosen; "
                         "recalibrate it with this version of amint")
    if config.threshold_fpr is None:
        return NullRate(0.05, "assumed: this pair states no false-positive rate", "not measured", 0, 0)
    n = int(config.calibration.get("n_nonmembers") or 0)
    if not n:
        return NullRate(max(config.threshold_fpr, 0.05), "as stated by this pair, with no count: at least 5% assumed",
                        "not measured here", 0, 0)
    flagged = min(n, math.ceil(config.threshold_fpr * n - 1e-9))
    return NullRate(clopper_pearson_upper(flagged, n), "in sample: measured on the images the threshold was fitted "
                    "on, so possibly optimistic; recalibrate this pair", "one-sided 95% Clopper-Pearson upper bound",
                    n, flagged)


def _row(name: str, result: Verdict | ImageError) -> AuditRow:
    if isinstance(result, ImageError):
        return AuditRow(name, None, None, None, str(result), None)
    return AuditRow(name, result.member_probability, result.is_member, result.predicted_class, None,
                    result.model_input)
