"""Audit a set of images: each image's readings, then a test of the whole set for each reading.

A single verdict can be a false alarm; a set where many more images are flagged than a reading's
false-positive bound explains is evidence (amint.pvalue: the bound, measured on never-seen images
nothing was fitted on, and the test). Two set-level answers, each with its p-value: the aMINT verdict
(does the model carry a trace of this set?) and the fingerprint (is this set in the training index
shipped with the pair?). Identical model inputs count once.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .pair import AuditedPair
from .pvalue import DatasetVerdict, dataset_membership_test
from .readings import FINGERPRINT, Reading, headline
from .uploads import MAX_AUDIT_FILES, UploadError, ZipEntry, is_archive_junk, zip_image_entries  # noqa: F401
from .verify import ImageError, Verdict, verify_images


@dataclass
class AuditRow:
    file: str
    member_probability: float | None  # the aMINT verdict's (a legacy pair's combined); None when unreadable
    is_member: bool | None
    predicted_class: str | None
    error: str | None
    thumbnail: np.ndarray | None  # the model's input (uint8 HxW or HxWx3)
    fingerprint_probability: float | None = None  # None when unreadable or the pair has no memories
    fingerprint_is_member: bool | None = None

    @property
    def decision(self) -> str:
        """The aMINT verdict in the words every table of an audit uses: member / not a member / unreadable."""
        return _decision(self.error, self.is_member)

    @property
    def fingerprint_decision(self) -> str:
        """The fingerprint's: in the training index / not in the training index / unreadable; "" without memories."""
        if self.error is None and self.fingerprint_is_member is None:
            return ""
        return _decision(self.error, self.fingerprint_is_member, ("in the training index", "not in the training index"))


def reading_claim(reading: Reading) -> str:
    """What a flagged image of this reading claims (amint.pvalue.CLAIMS)."""
    if reading.name == FINGERPRINT:
        return "index"
    return "member_no_trace" if reading.trace_at_chance else "member"


def _decision(error: str | None, member: bool | None, words: tuple[str, str] = ("member", "not a member")) -> str:
    if error is not None:
        return "unreadable"
    return "" if member is None else words[0] if member else words[1]


@dataclass
class AuditResult:
    rows: list[AuditRow]
    dataset: DatasetVerdict | None  # the aMINT verdict's set-level test (a legacy pair's combined); None: no trace
    fingerprint: DatasetVerdict | None  # the fingerprint's set-level test; None for a pair without memories
    scores: list[float]  # aMINT member probabilities of the readable images, in row order
    fingerprint_scores: list[float]  # fingerprint probabilities of the readable images, in row order
    reading: str | None = None  # what ``dataset`` and ``scores`` are: "amint", or "combined" (a legacy pair)

    @property
    def verdict(self) -> DatasetVerdict | None:
        """The aMINT verdict's set-level test (``dataset``), by its earlier name."""
        return self.dataset

    def to_csv(self, path: str | Path) -> Path:
        path = Path(path)
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "member_probability", "is_member", "fingerprint_probability",
                             "fingerprint_is_member", "predicted_class", "error"])
            for r in self.rows:
                writer.writerow([r.file, _num(r.member_probability), _flag(r.is_member),
                                 _num(r.fingerprint_probability), _flag(r.fingerprint_is_member),
                                 r.predicted_class or "", r.error or ""])
        return path

    def table(self) -> list[list]:
        """Rows for display: file, aMINT probability (rounded), its decision, predicted class, error."""
        return [[r.file, _round(r.member_probability), r.decision, r.predicted_class or "", r.error or ""]
                for r in self.rows]

    def records(self) -> list[dict]:
        """One dict per row with both readings (``audit --json``): the aMINT verdict's probability and decision,
        the fingerprint's (for a pair with memories), the predicted class, the error."""
        has_fp = self.fingerprint is not None
        return [{"file": r.file, "member_probability": _round(r.member_probability), "decision": r.decision,
                 **({"fingerprint_probability": _round(r.fingerprint_probability),
                     "fingerprint_decision": r.fingerprint_decision} if has_fp else {}),
                 "predicted_class": r.predicted_class or "", "error": r.error or ""} for r in self.rows]


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:.6f}"


def _flag(v: bool | None) -> str:
    return "" if v is None else str(v)


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


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
    """Readings per (name, source) item and, for each reading, the dataset-level test over the readable ones.

    Each test's null rate is its reading's stated false-positive bound: the worst edit family's, or
    ``family``'s own when the caller knows how every image of the set was made (``FAMILY_DESCRIPTIONS``).
    """
    top = headline(pair.readings)
    fp = pair.readings.get(FINGERPRINT)
    # Before the work: an unknown family fails at once.
    nulls = {name: r.null_rate(family) for name, r in pair.readings.items() if name in (top, FINGERPRINT)}
    names = [name for name, _ in items]
    results = verify_images(pair, [src for _, src in items], batch_size, progress, names=names)
    rows = [_row(name, r) for name, r in zip(names, results)]
    readable = [r for r in rows if r.error is None]
    keys = [input_digest(r.thumbnail) for r in readable]

    def test(probabilities: list[float], reading: Reading) -> DatasetVerdict:
        return dataset_membership_test(torch.tensor(probabilities, dtype=torch.float64), reading.threshold,
                                       nulls[reading.name], keys=keys,
                                       claim=reading_claim(reading))

    scores = [r.member_probability for r in readable] if top else []
    fingerprint_scores = [r.fingerprint_probability for r in readable] if fp is not None else []
    return AuditResult(rows, test(scores, pair.readings[top]) if top else None,
                       test(fingerprint_scores, fp) if fp is not None else None, scores, fingerprint_scores, top)


def input_digest(model_input: np.ndarray) -> str:
    """SHA-256 of the preprocessed model input (uint8 pixels and shape): equal inputs are one image to the test."""
    a = np.ascontiguousarray(model_input)
    return hashlib.sha256(repr((a.shape, a.dtype.str)).encode() + a.tobytes()).hexdigest()


def _row(name: str, result: Verdict | ImageError) -> AuditRow:
    if isinstance(result, ImageError):
        return AuditRow(name, None, None, None, str(result), None)
    return AuditRow(name, result.member_probability, result.is_member, result.predicted_class, None,
                    result.model_input, result.fingerprint_probability, result.fingerprint_is_member)
