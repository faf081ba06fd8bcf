"""Audit a set of images: one verdict per image, then a test of the whole set.

A single verdict can be a false alarm; a set where many more images are flagged than the threshold's
false-positive rate explains is evidence that the set (or part of it) was used in training.
"""

from __future__ import annotations

import csv
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable

import numpy as np
import torch

from .data import IMAGE_EXTENSIONS
from .evaluate import DatasetVerdict, dataset_membership_test
from .pair import AuditedPair
from .verify import ImageError, Verdict, verify_images

MAX_ZIP_ENTRY_BYTES = 64 * 2**20  # an entry larger than this is not a photo: refuse it before inflating it


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


def expand_uploads(paths: list[str | Path]) -> list[tuple[str, bytes | Path]]:
    """Files as they are, .zip archives as their image entries; (display name, source) pairs.

    Plain files are kept whatever their extension, so a wrong file gets its own error row.
    """
    items: list[tuple[str, bytes | Path]] = []
    for p in map(Path, paths):
        if p.suffix.lower() == ".zip":
            items += _zip_images(p)
        else:
            items.append((p.name, p))
    return items


def _zip_images(path: Path) -> list[tuple[str, bytes]]:
    try:
        with zipfile.ZipFile(path) as zf:
            return [(f"{path.name}/{info.filename}", _read_entry(zf, info, path))
                    for info in zf.infolist() if _is_image_entry(info)]
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ImageError(f"{path.name} is not a readable zip archive ({type(err).__name__}: {err})") from err


def is_archive_junk(name: str) -> bool:
    """macOS resource forks (__MACOSX/, ._name) and hidden files: in archives, never data."""
    return any(p == "__MACOSX" or p.startswith(".") for p in PurePosixPath(name).parts)


def _is_image_entry(info: zipfile.ZipInfo) -> bool:
    name = PurePosixPath(info.filename)
    return not info.is_dir() and not is_archive_junk(info.filename) and name.suffix.lower() in IMAGE_EXTENSIONS


def _read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> bytes:
    if info.file_size > MAX_ZIP_ENTRY_BYTES:
        raise ImageError(f"{path.name}/{info.filename} is too large ({info.file_size / 2**20:.0f} MB) to be an image")
    return zf.read(info)


# --- the audit --------------------------------------------------------------------------------


def audit_images(
    pair: AuditedPair,
    items: list[tuple[str, Any]],
    batch_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> AuditResult:
    """Verdict per (name, source) item and the dataset-level test over the readable ones."""
    names = [name for name, _ in items]
    results = verify_images(pair, [src for _, src in items], batch_size, progress, names=names)
    rows = [_row(name, r) for name, r in zip(names, results)]
    scores = [r.member_probability for r in rows if r.member_probability is not None]
    cfg = pair.config
    # An FPR of 0 was measured, not missing: only an unmeasured one falls back to 5%.
    fpr = 0.05 if cfg.threshold_fpr is None else cfg.threshold_fpr
    verdict = dataset_membership_test(torch.tensor(scores, dtype=torch.float64), cfg.threshold, fpr,
                                      n_calibration=cfg.calibration.get("n_nonmembers", 0))
    return AuditResult(rows, verdict, scores)


def _row(name: str, result: Verdict | ImageError) -> AuditRow:
    if isinstance(result, ImageError):
        return AuditRow(name, None, None, None, str(result), None)
    return AuditRow(name, result.member_probability, result.is_member, result.predicted_class, None,
                    result.model_input)
