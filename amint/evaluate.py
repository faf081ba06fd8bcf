"""Membership metrics, the calibrated threshold, baseline attacks and the dataset-level test.

Every threshold is fitted on the calibration split (members the model trained on vs non-members it
never saw) and reported on held-out evaluation data: never tuned on what it is scored on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .data import Benchmark
from .splits import MembershipSplit

HIST_BINS = 50


# --- ROC and thresholds on plain score vectors (higher score = more likely member) -------------


def roc_curve(member_scores: torch.Tensor, nonmember_scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(fpr, tpr, thresholds): predicting member when score >= threshold; ties handled exactly."""
    scores = torch.cat([member_scores, nonmember_scores]).double()
    labels = torch.cat([torch.ones(len(member_scores)), torch.zeros(len(nonmember_scores))]).double()
    order = torch.argsort(scores, descending=True, stable=True)
    scores, labels = scores[order], labels[order]
    tps, fps = torch.cumsum(labels, 0), torch.cumsum(1 - labels, 0)
    # Only the last index of each run of equal scores is an achievable operating point.
    last = torch.ones_like(scores, dtype=torch.bool)
    last[:-1] = scores[1:] != scores[:-1]
    tpr = torch.cat([torch.zeros(1, dtype=torch.double), tps[last] / max(len(member_scores), 1)])
    fpr = torch.cat([torch.zeros(1, dtype=torch.double), fps[last] / max(len(nonmember_scores), 1)])
    thresholds = torch.cat([torch.tensor([math.inf], dtype=torch.double), scores[last]])
    return fpr, tpr, thresholds


def roc_auc(member_scores: torch.Tensor, nonmember_scores: torch.Tensor) -> float:
    fpr, tpr, _ = roc_curve(member_scores, nonmember_scores)
    return float(torch.trapezoid(tpr, fpr))


def tpr_at_fpr(member_scores: torch.Tensor, nonmember_scores: torch.Tensor, max_fpr: float) -> float:
    """Highest TPR among operating points whose FPR does not exceed ``max_fpr``."""
    fpr, tpr, _ = roc_curve(member_scores, nonmember_scores)
    return float(tpr[fpr <= max_fpr + 1e-12].max())


def fit_threshold(member_scores: torch.Tensor, nonmember_scores: torch.Tensor, target_fpr: float | None = None) -> float:
    """Threshold maximising balanced accuracy, or the one with the best TPR at FPR <= target_fpr."""
    fpr, tpr, thresholds = roc_curve(member_scores, nonmember_scores)
    if target_fpr is None:
        i = int(torch.argmax(tpr - fpr))
    else:
        ok = fpr <= target_fpr + 1e-12
        i = int(torch.nonzero(ok).max())
    t = float(thresholds[i])
    return t if math.isfinite(t) else float(torch.cat([member_scores, nonmember_scores]).max()) + 1e-6


def balanced_accuracy(member_scores: torch.Tensor, nonmember_scores: torch.Tensor, threshold: float) -> float:
    tpr = (member_scores >= threshold).double().mean()
    tnr = (nonmember_scores < threshold).double().mean()
    return float((tpr + tnr) / 2)


def membership_metrics(
    member_scores: torch.Tensor, nonmember_scores: torch.Tensor, threshold: float, threshold_at_0_5: float | None = 0.5
) -> dict[str, float]:
    """Metrics on held-out members vs held-out non-members at a threshold fitted elsewhere."""
    out = {
        "mint_accuracy": balanced_accuracy(member_scores, nonmember_scores, threshold),
        "auc": roc_auc(member_scores, nonmember_scores),
        "tpr_at_1pct_fpr": tpr_at_fpr(member_scores, nonmember_scores, 0.01),
        "tpr_at_0_1pct_fpr": tpr_at_fpr(member_scores, nonmember_scores, 0.001),
        "fpr_at_threshold": float((nonmember_scores >= threshold).double().mean()),
        "threshold": threshold,
        "n_members": len(member_scores),
        "n_nonmembers": len(nonmember_scores),
    }
    if threshold_at_0_5 is not None:
        out["mint_accuracy_at_0_5"] = balanced_accuracy(member_scores, nonmember_scores, threshold_at_0_5)
    return out


def score_histograms(member_scores: torch.Tensor, nonmember_scores: torch.Tensor, bins: int = HIST_BINS) -> dict:
    """Histograms of member probabilities on [0, 1], stored in the pair for plots in the app."""
    edges = torch.linspace(0, 1, bins + 1)
    hist = lambda s: torch.histc(s.float().clamp(0, 1), bins=bins, min=0, max=1).long().tolist()  # noqa: E731
    return {"edges": [round(float(e), 4) for e in edges], "members": hist(member_scores), "nonmembers": hist(nonmember_scores)}


# --- scoring a pair ---------------------------------------------------------------------------


@dataclass
class Scores:
    member_probability: torch.Tensor  # (N,) sigmoid of the MINT logit
    class_logits: torch.Tensor  # (N, num_classes), float32

    def attack_scores(self, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Classic threshold attacks on the audited model's output: higher = more likely member."""
        logp = F.log_softmax(self.class_logits.float(), dim=1)
        p = logp.exp()
        return {
            "loss": logp.gather(1, labels.view(-1, 1)).squeeze(1),  # minus the cross-entropy
            "confidence": p.max(1).values,
            "entropy": (p * logp).sum(1),  # minus the entropy
        }


@torch.no_grad()
def score_images(pair, images: torch.Tensor, batch_size: int = 512, device: str | torch.device | None = None) -> Scores:
    """Run the pair in eval mode over uint8 NCHW images, batch by batch."""
    device = torch.device(device) if device else next(pair.parameters()).device
    pair.eval()
    probs, logits = [], []
    for start in range(0, len(images), batch_size):
        x = pair.normalize(images[start : start + batch_size].to(device, non_blocking=True))
        with _autocast(device):
            out, mint = pair(x)
        probs.append(torch.sigmoid(mint.float()).cpu())
        logits.append(out.float().cpu())
    if not probs:
        return Scores(torch.empty(0), torch.empty(0, pair.config.num_classes))
    return Scores(torch.cat(probs), torch.cat(logits))


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


# --- whole-pair evaluation ---------------------------------------------------------------------


def calibrate(pair, bench: Benchmark, split: MembershipSplit, target_fpr: float | None = None, device=None) -> dict:
    """Fit the pair's threshold on calibration members vs calibration non-members; return the fitted fields."""
    cal_m = score_images(pair, bench.train_images[split.calibration_members], device=device).member_probability
    cal_n = score_images(pair, bench.train_images[split.calibration_nonmembers], device=device).member_probability
    threshold = fit_threshold(cal_m, cal_n, target_fpr)
    return {
        "threshold": threshold,
        "threshold_fpr": float((cal_n >= threshold).double().mean()),
        "calibration": {
            **score_histograms(cal_m, cal_n),
            "n_members": len(cal_m),
            "n_nonmembers": len(cal_n),
            "tpr": float((cal_m >= threshold).double().mean()),
            "target_fpr": target_fpr,
        },
    }


def _attack_thresholds(pair, bench: Benchmark, split: MembershipSplit, device) -> dict[str, float]:
    cal_m = score_images(pair, bench.train_images[split.calibration_members], device=device)
    cal_n = score_images(pair, bench.train_images[split.calibration_nonmembers], device=device)
    m = cal_m.attack_scores(bench.train_labels[split.calibration_members])
    n = cal_n.attack_scores(bench.train_labels[split.calibration_nonmembers])
    return {name: fit_threshold(m[name], n[name]) for name in m}


def balanced_eval_indices(split: MembershipSplit) -> tuple[torch.Tensor, torch.Tensor]:
    """Equal numbers of held-out members and test-split non-members, as in the paper's metric."""
    n = min(len(split.eval_members), len(split.eval_nonmembers))
    return split.eval_members[:n], split.eval_nonmembers[:n]


def evaluate_pair(pair, bench: Benchmark, split: MembershipSplit, device=None) -> dict:
    """aMINT metrics at the pair's stored threshold, task accuracy and baseline attacks on the same split."""
    members, nonmembers = balanced_eval_indices(split)
    sm = score_images(pair, bench.train_images[members], device=device)
    # Held-out non-members come from the test split: score it once, for them and for task accuracy.
    full_test = score_images(pair, bench.test_images, device=device)
    sn = Scores(full_test.member_probability[nonmembers], full_test.class_logits[nonmembers])
    result = membership_metrics(sm.member_probability, sn.member_probability, pair.config.threshold)
    result["task_accuracy"] = float((full_test.class_logits.argmax(1) == bench.test_labels).double().mean())
    attacks_m = sm.attack_scores(bench.train_labels[members])
    attacks_n = sn.attack_scores(bench.test_labels[nonmembers])
    thresholds = _attack_thresholds(pair, bench, split, device)
    result["baselines"] = {
        f"{name}_attack": membership_metrics(attacks_m[name], attacks_n[name], thresholds[name], threshold_at_0_5=None)
        for name in attacks_m
    }
    result["roc"] = _downsampled_roc(sm.member_probability, sn.member_probability)
    return result


def _downsampled_roc(member_scores: torch.Tensor, nonmember_scores: torch.Tensor, points: int = 200) -> dict:
    fpr, tpr, _ = roc_curve(member_scores, nonmember_scores)
    # Log-spaced FPR grid keeps the low-FPR end visible on a log plot.
    grid = torch.cat([torch.zeros(1), torch.logspace(-4, 0, points - 1)]).double()
    idx = torch.searchsorted(fpr, grid, right=True) - 1
    return {"fpr": [round(float(v), 6) for v in grid], "tpr": [round(float(v), 6) for v in tpr[idx.clamp(min=0)]]}


# --- dataset-level test ------------------------------------------------------------------------


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed in log space (no scipy needed)."""
    if k <= 0:
        return 1.0
    if p <= 0 or k > n:
        return 0.0
    if p >= 1:
        return 1.0
    logs = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p) + (n - i) * math.log1p(-p)
        for i in range(k, n + 1)
    ]
    top = max(logs)
    return min(1.0, math.exp(top) * sum(math.exp(v - top) for v in logs))


@dataclass
class DatasetVerdict:
    n_images: int
    n_flagged: int
    expected_by_chance: float  # n_images * threshold FPR
    fpr: float
    p_value: float  # P(at least n_flagged flagged | none of the images were members)
    reading: str


def dataset_membership_test(probabilities: torch.Tensor, threshold: float, fpr: float, n_calibration: int = 0) -> DatasetVerdict:
    """Binomial test: are more images flagged than the threshold's false-positive rate explains?

    The FPR is itself estimated from ``n_calibration`` non-members, so we use a one-sided upper bound
    (add-one smoothing) rather than the raw rate: a p-value should not be optimistic.
    """
    n = len(probabilities)
    k = int((probabilities >= threshold).sum())
    rate = (fpr * n_calibration + 1) / (n_calibration + 2) if n_calibration else max(fpr, 1e-3)
    p_value = binomial_sf(k, n, rate)
    return DatasetVerdict(n, k, n * rate, rate, p_value, _reading(n, k, n * rate, p_value))


def _reading(n: int, k: int, expected: float, p: float) -> str:
    if n == 0:
        return "No images to test."
    counts = f"{k} of {n} images were flagged as members, where about {expected:.1f} would be flagged by chance."
    if p < 0.001:
        return counts + " Very strong evidence that this set was used in training."
    if p < 0.05:
        return counts + " Evidence that at least part of this set was used in training."
    return counts + " No evidence that this set was used in training."
