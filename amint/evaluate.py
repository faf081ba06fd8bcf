"""Scoring, calibration of the readings, membership metrics, baseline attacks.

``score_images`` is the one path from images to readings (amint.readings): every verdict, audit,
calibration and explanation scores through it. Each reading's threshold is fitted on the calibration
members and half A of the calibration non-members, its false-positive rate is bounded on half B (never
fitted on; amint.pvalue), and it is reported on the scored members (held out from calibration only)
against never-seen test images: never tuned on what it is scored on. The dataset-level test is amint.pvalue's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from .data import Benchmark
from .edits import EDIT_FAMILIES, family_images, random_edits
from .fingerprint import Lookup, Match, find_matches, index_digest
from .pair import eval_mode
from .pvalue import FprRecord, fpr_bound
from .readings import CALIBRATION_KNOTS, FINGERPRINT, Reading, headline, reading_inputs, target_for
from .splits import MembershipSplit, calibration_halves
from .streaming import take

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
    """Metrics on scored members vs never-seen non-members at a threshold fitted elsewhere."""
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


# --- scoring a pair: the one path from images to readings ---------------------------------------


@dataclass
class Scores:
    """A batch of images through a pair once: class logits, the head's evidence, and every reading of it."""

    class_logits: torch.Tensor  # (N, num_classes), float32
    evidence: torch.Tensor  # (N, E): trace logit and memory scores (HeadConfig.evidence_names)
    probabilities: dict[str, torch.Tensor]  # reading name -> (N,) float64 calibrated member probability
    decisions: dict[str, torch.Tensor]  # reading name -> (N,) bool: at or above the reading's threshold
    lookups: dict[str, Lookup]  # memory name -> its table counts per query variant
    evidence_names: list[str]
    readings: dict[str, Reading]  # what the probabilities were read with
    maps: list[torch.Tensor] | None = None  # the tapped maps, when asked for (keep_maps)

    @property
    def headline(self) -> str | None:
        """The reading ``member_probability`` is: the aMINT verdict (a legacy pair's combined reading)."""
        return headline(self.readings)

    @property
    def member_probability(self) -> torch.Tensor | None:
        return self.probabilities[self.headline] if self.headline else None

    def rows(self, index: torch.Tensor) -> "Scores":
        return Scores(self.class_logits[index], self.evidence[index], {k: v[index] for k, v in self.probabilities.items()},
                      {k: v[index] for k, v in self.decisions.items()}, {k: v.rows(index) for k, v in self.lookups.items()},
                      self.evidence_names, self.readings, None if self.maps is None else [m[index] for m in self.maps])

    def matches(self) -> list[Match] | None:
        """Per image, what the fingerprint matched (amint.fingerprint.Match); None without a fingerprint reading."""
        reading = self.readings.get(FINGERPRINT)
        if reading is None or not self.lookups:
            return None
        return find_matches(self.lookups, self.evidence, self.evidence_names,
                            lambda e: reading.decide(e, self.evidence_names))

    def attack_scores(self, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Classic threshold attacks on the audited model's output: higher = more likely member."""
        logp = F.log_softmax(self.class_logits.float(), dim=1)
        p = logp.exp()
        return {
            "loss": logp.gather(1, labels.view(-1, 1)).squeeze(1),  # minus the cross-entropy
            "confidence": p.max(1).values,
            "entropy": (p * logp).sum(1),  # minus the entropy
        }


def scoring_precision(pair, device: torch.device):
    """The pair's one numeric policy: score in the precision it was calibrated in, on every device."""
    if pair.config.precision == "bfloat16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


@torch.no_grad()
def score_images(pair, images: torch.Tensor, batch_size: int = 512, device: str | torch.device | None = None,
                 keep_maps: bool = False) -> Scores:
    """Run the pair in eval mode over uint8 NCHW images, batch by batch, and read every reading of the evidence.

    Every score in amint comes from here: verdicts, audits, calibration, evaluation, explanations.
    """
    device = torch.device(device) if device else next(pair.parameters()).device
    logits, evidence, lookups, maps = [], [], [], []
    with eval_mode(pair):
        for start in range(0, len(images), batch_size):
            x = pair.normalize(images[start : start + batch_size].to(device, non_blocking=True))
            with scoring_precision(pair, device):
                out = pair(x)
            logits.append(out.class_logits.float().cpu())
            evidence.append(out.evidence.float().cpu())
            lookups.append({k: Lookup(v.members.cpu(), v.externals.cpu(), v.tables, v.variants)
                            for k, v in out.lookups.items()})
            if keep_maps:
                maps.append([m.detach() for m in out.maps])
    names = pair.head_config.evidence_names
    readings = pair.readings
    if not logits:
        ev = torch.empty(0, len(names))
        return Scores(torch.empty(0, pair.config.num_classes), ev,
                      {k: torch.empty(0, dtype=torch.float64) for k in readings},
                      {k: torch.empty(0, dtype=torch.bool) for k in readings}, {}, names, readings,
                      [] if keep_maps else None)
    ev = torch.cat(evidence)
    probabilities = {k: r.read(ev, names) for k, r in readings.items()}
    return Scores(torch.cat(logits), ev, probabilities,
                  {k: probabilities[k] >= r.threshold for k, r in readings.items()},
                  {k: Lookup.cat([part[k] for part in lookups]) for k in lookups[0]}, names, readings,
                  [torch.cat(m) for m in zip(*maps)] if keep_maps else None)


# --- calibration -------------------------------------------------------------------------------


def fit_logistic(member_features: torch.Tensor, nonmember_features: torch.Tensor, l2: float = 1e-4) -> tuple[list[float], float]:
    """Weights and bias of a logistic regression, members vs non-members with equal priors (Platt scaling)."""
    x = torch.cat([member_features, nonmember_features]).double()
    y = torch.cat([torch.ones(len(member_features)), torch.zeros(len(nonmember_features))]).double()
    # Equal total weight per class: a balanced set, whatever the counts.
    w = torch.where(y > 0, 0.5 / max(len(member_features), 1), 0.5 / max(len(nonmember_features), 1))
    mu, sd = x.mean(0), x.std(0).clamp(min=1e-6)
    z = (x - mu) / sd
    params = torch.zeros(z.shape[1] + 1, dtype=torch.double, requires_grad=True)
    opt = torch.optim.LBFGS([params], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def loss_fn():
        opt.zero_grad()
        logit = z @ params[:-1] + params[-1]
        loss = (w * F.binary_cross_entropy_with_logits(logit, y, reduction="none")).sum() + l2 * params[:-1].pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(loss_fn)
    coef = params[:-1].detach() / sd
    bias = float(params[-1].detach() - (coef * mu).sum())
    return [float(c) for c in coef], bias


def isotonic_knots(member_logits: torch.Tensor, nonmember_logits: torch.Tensor, knots: int) -> torch.Tensor:
    """(2, knots): logits and the isotonic (pool-adjacent-violators) member rate there, classes weighted equally."""
    x = torch.cat([member_logits, nonmember_logits]).double()
    y = torch.cat([torch.ones(len(member_logits)), torch.zeros(len(nonmember_logits))]).double()
    w = torch.where(y > 0, 0.5 / max(len(member_logits), 1), 0.5 / max(len(nonmember_logits), 1))
    order = torch.argsort(x, stable=True)
    x, y, w = x[order].tolist(), y[order].tolist(), w[order].tolist()
    blocks: list[list[float]] = []  # [weighted mean, weight, first x, last x]
    for xi, yi, wi in zip(x, y, w):
        blocks.append([yi, wi, xi, xi])
        while len(blocks) > 1 and blocks[-2][0] >= blocks[-1][0]:
            (m2, w2, a, _), (m1, w1, _, b) = blocks[-2], blocks[-1]
            blocks[-2:] = [[(m2 * w2 + m1 * w1) / (w2 + w1), w2 + w1, a, b]]
    # Each block's mean sits at the middle of its logits; knots at quantiles of those block centres.
    centres = torch.tensor([(a + b) / 2 for _, _, a, b in blocks], dtype=torch.double)
    means = torch.tensor([m for m, _, _, _ in blocks], dtype=torch.double)
    grid = torch.quantile(torch.tensor(x, dtype=torch.double), torch.linspace(0, 1, knots, dtype=torch.double))
    grid = grid + torch.arange(knots, dtype=torch.double) * 1e-9  # strictly increasing, even where quantiles tie
    i = torch.searchsorted(centres, grid).clamp(1, max(len(centres) - 1, 1))
    if len(centres) == 1:
        return torch.stack([grid, means.expand(knots)])
    x0, x1, y0, y1 = centres[i - 1], centres[i], means[i - 1], means[i]
    t = ((grid - x0) / (x1 - x0).clamp(min=1e-12)).clamp(0, 1)
    return torch.stack([grid, y0 + (y1 - y0) * t])


def calibration_error(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = 10) -> float:
    """Expected calibration error: |accuracy - confidence| per probability bin, weighted by the bin's share."""
    p = probabilities.double().clamp(0, 1)
    predicted = (p >= 0.5).double()
    confidence = torch.where(predicted > 0, p, 1 - p)
    correct = (predicted == labels.double()).double()
    which = (p * bins).long().clamp(max=bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            ece += float(sel.double().mean() * (correct[sel].mean() - confidence[sel].mean()).abs())
    return ece


def calibration_images(bench: Benchmark, split: MembershipSplit, spec, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """What the readings and their thresholds are fitted on: the calibration members and half A of the
    calibration non-members (``calibration_halves``), each image as is and once more after a random edit.

    Fitting on both views makes the probability and the threshold hold for uploads as people make
    them, not only for the exact training bytes. Half B is left for ``measure_fpr``.
    """
    fit, _ = calibration_halves(split)
    members = take(bench.train_images, split.calibration_members)
    nonmembers = take(bench.train_images, fit)
    return (torch.cat([members, random_edits(members, spec, seed, moves=True)]),
            torch.cat([nonmembers, random_edits(nonmembers, spec, seed + 1, moves=True)]))


FPR_SEED = 2  # the random family's edits of half B: drawn apart from the fitting views (seeds 0 and 1)
FPR_IMAGES = ("calibration half B: training-split images the model never saw, none used to fit a reading or its "
              "threshold")


def measure_fpr(pair, bench: Benchmark, split: MembershipSplit, readings: dict[str, Reading],
                families: tuple[str, ...] = EDIT_FAMILIES, device=None) -> dict[str, FprRecord]:
    """Each reading's false-positive bound per edit family (amint.pvalue.fpr_bound) at its own threshold, on
    calibration half B: each family's images scored once, every reading read from that one forward."""
    _, held_out = calibration_halves(split)
    images = take(bench.train_images, held_out)
    names = pair.head_config.evidence_names
    probs: dict[str, dict[str, torch.Tensor]] = {name: {} for name in readings}
    for family in families:
        evidence = score_images(pair, family_images(images, family, pair.config, FPR_SEED), device=device).evidence
        for name, reading in readings.items():
            probs[name][family] = reading.read(evidence, names)
    return {name: fpr_bound(probs[name], r.threshold, images=FPR_IMAGES) for name, r in readings.items()}


def fit_reading(name: str, evidence_names: list[str], em: torch.Tensor, en: torch.Tensor, n_exact: int,
                n_exact_non: int, target_fpr: float | None = None) -> Reading:
    """One reading fitted on calibration evidence: members ``em`` and half-A non-members ``en`` (N, E), each as
    is (the first ``n_exact`` / ``n_exact_non`` rows) and once edited. Platt scaling of the evidence it reads,
    the isotonic map, the threshold (balanced accuracy, or the best TPR at ``target_fpr`` for exact and edited
    copies alike) and the calibration AUC, all on these images. No false-positive record yet: ``measure_fpr``."""
    inputs = reading_inputs(evidence_names)[name]
    cols = [evidence_names.index(k) for k in inputs]
    coef, bias = fit_logistic(em[:, cols], en[:, cols])
    reading = Reading(name, inputs, coef, bias, threshold=0.5)
    lm, ln = reading.logit(em, evidence_names), reading.logit(en, evidence_names)
    reading = replace(reading, knots=isotonic_knots(lm, ln, CALIBRATION_KNOTS).tolist())
    pm, pn = reading.probability(lm), reading.probability(ln)
    views = ((pm[:n_exact], pn[:n_exact_non]), (pm[n_exact:], pn[n_exact_non:]))  # exact copies, edited copies
    if target_fpr is None:
        threshold = fit_threshold(pm, pn)
    else:  # the target holds for exact and for edited uploads alike
        threshold = max(fit_threshold(m, n, target_fpr) for m, n in views)
    return replace(reading, threshold=threshold, cal_auc=roc_auc(pm, pn), calibration={
        **score_histograms(pm[:n_exact], pn[:n_exact_non]),
        "n_members": n_exact,
        "n_nonmembers": n_exact_non,
        "views": "each calibration image as is and once after a random edit (amint.edits.random_edit, moves)",
        "tpr": float((pm >= threshold).double().mean()),
        "target_fpr": target_fpr,
        # On the images the threshold was fitted on: optimistic, kept to compare with the held-out bound.
        "fpr_in_sample": max(float((n >= threshold).double().mean()) for _, n in views),
    })


def calibrate(pair, bench: Benchmark, split: MembershipSplit, target_fpr: float | None | dict = None, device=None,
              families: tuple[str, ...] = EDIT_FAMILIES) -> dict[str, dict]:
    """Fit each reading the pair's head supports (the aMINT verdict on the trace, the fingerprint on the
    memories: ``fit_reading``) on the calibration members and half A, then bound each threshold's
    false-positive rate on half B for each edit family (``measure_fpr``). ``target_fpr``: one rate for every
    reading, or one per reading (``{"amint": 0.01, "fingerprint": 0.002}``); None = balanced accuracy.

    Returns the readings as config.json stores them (``pair.set_readings`` takes them); the pair is not
    changed, so the same calibration gives the same result however often it runs.
    """
    cal_m, cal_n = calibration_images(bench, split, pair.config)
    em = score_images(pair, cal_m, device=device).evidence
    en = score_images(pair, cal_n, device=device).evidence
    names = pair.head_config.evidence_names
    n, n_non = len(split.calibration_members), len(cal_n) // 2
    readings = {name: fit_reading(name, names, em, en, n, n_non, target_for(target_fpr, name))
                for name in reading_inputs(names)}
    if FINGERPRINT in readings:
        readings[FINGERPRINT] = replace(readings[FINGERPRINT], index_sha256=index_digest(pair.head.memories))
    records = measure_fpr(pair, bench, split, readings, families, device)
    return {name: r.with_record(records[name]).to_config() for name, r in readings.items()}


def _attack_thresholds(pair, bench: Benchmark, split: MembershipSplit, device) -> dict[str, float]:
    cal_m = score_images(pair, bench.train_images[split.calibration_members], device=device)
    cal_n = score_images(pair, bench.train_images[split.calibration_nonmembers], device=device)
    m = cal_m.attack_scores(bench.train_labels[split.calibration_members])
    n = cal_n.attack_scores(bench.train_labels[split.calibration_nonmembers])
    return {name: fit_threshold(m[name], n[name]) for name in m}


def balanced_eval_indices(split: MembershipSplit) -> tuple[torch.Tensor, torch.Tensor]:
    """Equal numbers of scored members (held out from calibration only) and test-split non-members, as in the
    paper's metric."""
    n = min(len(split.eval_members), len(split.eval_nonmembers))
    return split.eval_members[:n], split.eval_nonmembers[:n]


def reading_metrics(reading: Reading, pm: torch.Tensor, pn: torch.Tensor, edited_m: torch.Tensor,
                    edited_n: torch.Tensor) -> dict:
    """One reading's metrics on scored members ``pm`` (held out from calibration only) vs never-seen images ``pn`` (probabilities) at its stored
    threshold, its stated bound beside the rate measured here, its calibration errors and its ROC."""
    result = {}
    for key, value in membership_metrics(pm, pn, reading.threshold).items():
        result[key] = value
        if key == "fpr_at_threshold":  # the stated bound (calibration half B) beside the rate measured here
            result["threshold_fpr"] = reading.threshold_fpr
    result["cal_auc"] = reading.cal_auc

    def ece(m: torch.Tensor, n: torch.Tensor) -> float:
        return calibration_error(torch.cat([m, n]), torch.cat([torch.ones(len(m)), torch.zeros(len(n))]))

    # On the scored images made like the calibration set (each as is and once randomly edited), and on each half.
    result |= {"calibration_error": ece(torch.cat([pm, edited_m]), torch.cat([pn, edited_n])),
               "calibration_error_exact": ece(pm, pn), "calibration_error_edited": ece(edited_m, edited_n)}
    result["roc"] = _downsampled_roc(pm, pn)
    return result


def evaluate_pair(pair, bench: Benchmark, split: MembershipSplit, device=None) -> dict:
    """Each reading's metrics at its stored threshold, task accuracy and baseline attacks on the same split.

    The top level holds the aMINT verdict's metrics (a legacy pair's combined reading's; ``reading`` names it),
    ``fingerprint`` the same metric names for the fingerprint reading."""
    members, nonmembers = balanced_eval_indices(split)
    sm = score_images(pair, bench.train_images[members], device=device)
    # Held-out non-members come from the test split: score it once, for them and for task accuracy.
    full_test = score_images(pair, bench.test_images, device=device)
    sn = full_test.rows(nonmembers)
    edited_m = score_images(pair, random_edits(take(bench.train_images, members), pair.config, 101, moves=True),
                            device=device)
    edited_n = score_images(pair, random_edits(take(bench.test_images, nonmembers), pair.config, 102, moves=True),
                            device=device)
    per = {name: reading_metrics(r, sm.probabilities[name], sn.probabilities[name], edited_m.probabilities[name],
                                 edited_n.probabilities[name]) for name, r in pair.readings.items()}
    top = headline(pair.readings)
    result = {**per.get(top, {}), "reading": top}
    if FINGERPRINT in per:
        result[FINGERPRINT] = per[FINGERPRINT]
    result["task_accuracy"] = float((full_test.class_logits.argmax(1) == bench.test_labels).double().mean())
    result["evidence"] = {name: {"auc": roc_auc(sm.evidence[:, i], sn.evidence[:, i])}
                          for i, name in enumerate(pair.head_config.evidence_names)}
    attacks_m = sm.attack_scores(bench.train_labels[members])
    attacks_n = sn.attack_scores(bench.test_labels[nonmembers])
    thresholds = _attack_thresholds(pair, bench, split, device)
    result["baselines"] = {
        f"{name}_attack": membership_metrics(attacks_m[name], attacks_n[name], thresholds[name], threshold_at_0_5=None)
        for name in attacks_m
    }
    if "roc" in result:  # last, as before: the curve after the numbers
        result["roc"] = result.pop("roc")
    return result


def _downsampled_roc(member_scores: torch.Tensor, nonmember_scores: torch.Tensor, points: int = 200) -> dict:
    fpr, tpr, _ = roc_curve(member_scores, nonmember_scores)
    # Log-spaced FPR grid keeps the low-FPR end visible on a log plot.
    grid = torch.cat([torch.zeros(1), torch.logspace(-4, 0, points - 1)]).double()
    idx = torch.searchsorted(fpr, grid, right=True) - 1
    return {"fpr": [round(float(v), 6) for v in grid], "tpr": [round(float(v), 6) for v in tpr[idx.clamp(min=0)]]}
