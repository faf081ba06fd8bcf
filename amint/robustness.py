"""Verdicts on edited copies: the edit suite through a pair, and the model-free pixel reference.

Members and non-members are edited alike and scored at the pair's own calibrated threshold (never
refitted per edit). The pixel reference (nearest member in raw pixels) is a yardstick only: it needs
the member images in hand, which a published pair must not carry.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .data import Benchmark
from .edits import EDIT_NAMES, edit_images
from .evaluate import (balanced_eval_indices, calibrate, calibration_images, evaluate_pair, fit_threshold,
                       membership_metrics, score_images)
from .splits import MembershipSplit

Progress = Callable[[str, int, int], None]  # (edit name, done, total)


def eval_images(bench: Benchmark, split: MembershipSplit, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The balanced scored set (members from D held out from calibration only, non-members from the test split),
    optionally its first n each."""
    members, nonmembers = balanced_eval_indices(split)
    if n is not None:
        members, nonmembers = members[:n], nonmembers[:n]
    return bench.train_images[members], bench.test_images[nonmembers]


def evaluate_edits(pair, bench: Benchmark, split: MembershipSplit, edits: tuple[str, ...] = EDIT_NAMES,
                   n: int | None = None, device=None, progress: Progress | None = None) -> dict[str, dict[str, dict]]:
    """Per reading, per edit: accuracy, AUC, TPR at 1% / 0.1% FPR, the FPR at the reading's stored threshold and,
    beside it, the bound the reading states for that edit family (measured on calibration half B). Each edited
    copy is scored once; every reading is read from that forward."""
    members, nonmembers = eval_images(bench, split, n)
    out: dict[str, dict[str, dict]] = {name: {} for name in pair.readings}
    for i, edit in enumerate(edits):
        sm = score_images(pair, edit_images(members, edit, pair.config), device=device)
        sn = score_images(pair, edit_images(nonmembers, edit, pair.config), device=device)
        for name, reading in pair.readings.items():
            out[name][edit] = _edit_metrics(sm.probabilities[name], sn.probabilities[name], reading.threshold)
            family = reading.fpr_record.per_family.get(edit) if reading.fpr_record else None
            if family is not None:
                out[name][edit]["fpr_bound"] = family.bound
        if progress:
            progress(edit, i + 1, len(edits))
    return out


def _edit_metrics(sm: torch.Tensor, sn: torch.Tensor, threshold: float) -> dict:
    m = membership_metrics(sm, sn, threshold, threshold_at_0_5=None)
    return {k: m[k] for k in ("mint_accuracy", "auc", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr", "fpr_at_threshold")}


# --- the model-free reference ---------------------------------------------------------------------


def _pixel_keys(images: torch.Tensor) -> torch.Tensor:
    """Raw pixels, 2x2 average pooled, mean removed, unit length."""
    x = F.avg_pool2d(images.float(), 2).flatten(1)
    return F.normalize(x - x.mean(1, keepdim=True), dim=1)


def nearest_member_similarity(queries: torch.Tensor, bank: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """Cosine similarity of each query's pixel key to its nearest member's."""
    q = _pixel_keys(queries)
    return torch.cat([(q[i : i + chunk] @ bank.T).amax(1) for i in range(0, len(q), chunk)]) if len(q) else torch.empty(0)


def pixel_reference(bench: Benchmark, split: MembershipSplit, spec, edits: tuple[str, ...] = EDIT_NAMES,
                    n: int | None = None, progress: Progress | None = None) -> dict[str, dict]:
    """The nearest member in raw pixels, with its threshold fitted the pair's way (calibration split, as is and edited)."""
    bank = _pixel_keys(bench.train_images[split.members])
    cal_m, cal_n = calibration_images(bench, split, spec)
    threshold = fit_threshold(nearest_member_similarity(cal_m, bank), nearest_member_similarity(cal_n, bank))
    members, nonmembers = eval_images(bench, split, n)
    out = {}
    for i, name in enumerate(edits):
        sm = nearest_member_similarity(edit_images(members, name, spec), bank)
        sn = nearest_member_similarity(edit_images(nonmembers, name, spec), bank)
        out[name] = _edit_metrics(sm, sn, threshold)
        if progress:
            progress(name, i + 1, len(edits))
    return out


def evaluate_split(pair, bench: Benchmark, roc: bool = False, device: str | None = None,
                   edits: tuple[str, ...] = (), edits_n: int | None = None, progress: Progress | None = None) -> dict:
    """Metrics of ``pair`` on ``bench``, on the scored split regenerated from the pair's config: the aMINT
    verdict's at the top level, the fingerprint's under ``fingerprint`` (amint.evaluate.evaluate_pair).

    With ``edits``: the same metrics on edited copies for each reading (members and non-members edited
    alike, at the reading's own threshold), and the model-free pixel reference on the same images.
    """
    split = _split_of(pair, bench)
    result = evaluate_pair(pair, bench, split, device=device)
    if edits:
        per = evaluate_edits(pair, bench, split, edits, n=edits_n, device=device, progress=progress)
        for name, table in per.items():
            (result if name == result.get("reading") else result.setdefault(name, {}))["edits"] = table
        result["references"] = {"pixel_nearest_member": pixel_reference(bench, split, pair.config, edits, n=edits_n,
                                                                         progress=progress)}
    if not roc:
        result.pop("roc", None)
        for value in result.values():
            if isinstance(value, dict):
                value.pop("roc", None)
    return result


def recalibrate(pair, bench: Benchmark, target_fpr: float | None | dict = None, device: str | None = None,
                edits: tuple[str, ...] = (), edits_n: int | None = None, progress: Progress | None = None) -> dict:
    """Fit the pair's readings again on its own calibration split (no training: the weights stay as they are),
    then evaluate them (``evaluate_split``); both are stored in ``pair.config``. ``target_fpr``: one rate for every
    reading or one per reading (amint.evaluate.calibrate). Returns the metrics."""
    split = _split_of(pair, bench)
    pair.set_readings(calibrate(pair, bench, split, target_fpr, device=device))
    pair.config.metrics = evaluate_split(pair, bench, device=device, edits=edits, edits_n=edits_n, progress=progress)
    return pair.config.metrics


def _split_of(pair, bench: Benchmark) -> MembershipSplit:
    split = MembershipSplit.from_config(pair.config.split)
    sizes = (len(bench.train_images), len(bench.test_images))
    if sizes != (split.n_train, split.n_test):
        raise ValueError(
            f"benchmark {bench.name!r} has {sizes[0]} training / {sizes[1]} test images, but this pair's split was "
            f"drawn from {split.n_train} / {split.n_test}: wrong dataset or data root"
        )
    return split
