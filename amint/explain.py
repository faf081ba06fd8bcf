"""What the readings look at, as arrays: activation maps, where the trace head reads, what the memories found,
which edits move each reading.

The app draws them (amint/ui); the CLI and tests use the arrays directly. No matplotlib here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from .edits import background, edit_images, to_pil
from .evaluate import Scores, score_images, scoring_precision
from .fingerprint import Lookup, Match
from .pair import eval_mode
from .readings import AMINT, COMBINED, FINGERPRINT, TRACE_SIGNAL_AUC, Reading, headline

if TYPE_CHECKING:
    from .pair import AuditedPair


# --- arrays -----------------------------------------------------------------------------------


def _unit(a: torch.Tensor) -> np.ndarray:
    """Scale to [0, 1]; a constant map becomes zeros rather than NaN."""
    a = a.float()
    lo, hi = a.min(), a.max()
    out = (a - lo) / (hi - lo) if hi > lo else torch.zeros_like(a)
    return out.cpu().numpy().astype(np.float32)


def forward_one(pair: AuditedPair, x: torch.Tensor) -> Scores:
    """One uint8 (C, H, W) image through amint.evaluate.score_images, its tapped maps kept."""
    c = pair.config.in_chans
    assert x.ndim == 3 and x.shape[0] == c, f"expected a ({c}, H, W) image, got {tuple(x.shape)}"
    return score_images(pair, x.unsqueeze(0), keep_maps=True)


def heat_maps(taps: list[str], maps: list[torch.Tensor], size: tuple[int, int]) -> list[tuple[str, np.ndarray]]:
    """Per tap: mean |activation| over channels, upsampled to ``size``, scaled to [0, 1]."""
    out = []
    for name, m in zip(taps, maps):
        energy = m.float().abs().mean(dim=1, keepdim=True)
        up = F.interpolate(energy, size=size, mode="bilinear", align_corners=False)
        out.append((name, _unit(up[0, 0])))
    return out


def trace_attribution(pair: AuditedPair, x: torch.Tensor,
                      maps: list[torch.Tensor] | None = None) -> list[tuple[str, np.ndarray]] | None:
    """Per tap, where the trace head reads evidence of membership (Grad-CAM of its logit), HxW in [0, 1].

    Each channel's map is weighted by the mean gradient of the trace logit with respect to it, then
    summed and kept where positive: regions whose activity pushes the trace head towards "member".
    None when the pair has no trace head. Only the taps take gradients: no parameter .grad is written.
    ``maps``: the image's tapped maps when the caller already has them (PairOutput.maps), else one forward.
    """
    if pair.head.trace is None:
        return None
    if maps is None:
        maps = forward_one(pair, x).maps
    device = maps[0].device
    with eval_mode(pair), torch.enable_grad(), scoring_precision(pair, device):
        maps = [m.detach().float().requires_grad_(True) for m in maps]
        grads = torch.autograd.grad(pair.head.trace(maps).sum(), maps)
    out = []
    for name, m, g in zip(pair.config.taps, maps, grads):
        cam = (g.mean(dim=(2, 3), keepdim=True) * m.detach()).sum(1, keepdim=True).clamp(min=0)
        up = F.interpolate(cam, size=tuple(x.shape[1:]), mode="bilinear", align_corners=False)
        out.append((name, _unit(up[0, 0])))
    return out


@dataclass
class EvidencePart:
    """One bar of a reading's explanation: a part of its evidence, or where the reading starts (its bias).

    A reading's parts add up, in logit units, to its logit minus the logit at its threshold: the sum is at or
    above 0 exactly when the reading says "member" (its probability map is strictly increasing). So the bias is
    a bar of its own ("start_<reading>"), and a never-seen image whose lookups hit a few tables shows those hits
    against the reading's negative start, not as a push towards "member" with nothing against it.
    """

    name: str  # "trace", "memory_<name>", or "start_<reading>" (the reading's bias, measured from its threshold)
    value: float  # the raw evidence (trace logit, or memory score in [-0.5, 1]); a start part: the bias
    contribution: float  # in logit units: Platt weight x value; a start part: bias - logit at the threshold
    words: str
    reading: str | None = None  # the reading this part feeds: amint (trace), fingerprint (memories), combined (legacy)
    is_evidence: bool = True  # False: said in words only, never drawn as evidence (a trace head at chance)


_READING_TITLES = {AMINT: "the aMINT verdict", FINGERPRINT: "the fingerprint", COMBINED: "the combined verdict (legacy)"}
START = "start_"


def threshold_logit(reading: Reading) -> float:
    """The logit at which ``reading``'s calibrated probability reaches its threshold (bisection: the map from logit to
    probability is strictly increasing)."""
    lo, hi = -400.0, 400.0
    t = torch.tensor([lo, hi], dtype=torch.float64)
    plo, phi = (float(p) for p in reading.probability(t))
    if reading.threshold <= plo:
        return lo
    if reading.threshold > phi:
        return hi
    for _ in range(200):
        mid = (lo + hi) / 2
        if float(reading.probability(torch.tensor([mid], dtype=torch.float64))[0]) >= reading.threshold:
            hi = mid
        else:
            lo = mid
        if hi - lo < 1e-9:
            break
    return hi


def evidence_parts(pair: AuditedPair, scores: Scores) -> list[EvidencePart]:
    """The evidence of one image (``forward_one``'s scores) as bars, reading by reading (the aMINT verdict or a legacy
    combined one first, then the fingerprint): each reading's start, then each part it reads, with a sentence.

    A trace head at chance (calibration AUC below 0.6) gets its sentence but ``is_evidence`` False: the panel says that
    this model shows no detectable trace instead of drawing its logit as evidence."""
    names = scores.evidence_names
    evidence = scores.evidence[0].tolist()
    order = [n for n in (headline(pair.readings), FINGERPRINT) if n in pair.readings]
    parts, read = [], set()
    for reading in (pair.readings[n] for n in order):
        signal = not reading.trace_at_chance
        t_logit = threshold_logit(reading)
        start = reading.bias - t_logit
        parts.append(EvidencePart(START + reading.name, reading.bias, start, _start_words(reading, start),
                                  reading.name, signal))
        for name, w in zip(reading.evidence, reading.weights):
            v = evidence[names.index(name)]
            parts.append(EvidencePart(name, v, w * v, _evidence_words(pair, scores, reading, name, v, w * v, t_logit),
                                      reading.name, signal))
            read.add(name)
    for name, v in zip(names, evidence):
        if name not in read:
            parts.append(EvidencePart(name, v, 0.0, f"{name} = {v:+.3f}: no reading reads it (this pair is not "
                                      "calibrated), so it decides nothing.", None, False))
    return parts


def _push(reading: str, contribution: float) -> str:
    direction = "towards “member”" if contribution > 0 else "towards “not a member”"
    return f"it pushes {_READING_TITLES[reading]} {direction} by {abs(contribution):.1f} (logit units)"


def _start_words(reading: Reading, start: float) -> str:
    title = _READING_TITLES[reading.name]
    side = "below" if start < 0 else "at or above"
    return (f"Where {title} starts before any evidence (its bias), measured from its threshold: {start:+.1f}, "
            f"{side} the threshold; the bars of this image's evidence are added to it.")


def _evidence_words(pair: AuditedPair, scores: Scores, reading: Reading, name: str, value: float, contribution: float,
                    t_logit: float) -> str:
    if name == "trace":
        head = (f"The trace head, which reads the model's activity at {', '.join(pair.config.taps)}, gives logit "
                f"{value:+.2f}")
        if reading.trace_at_chance:
            where = "above" if value * reading.weights[0] + reading.bias >= t_logit else "below"
            return (f"{head}, {where} its threshold; but this model shows no detectable trace: on calibration the "
                    f"trace head told training images from never-seen ones barely better than chance (AUC "
                    f"{reading.cal_auc:.2f}, below {TRACE_SIGNAL_AUC}), so this number is not evidence either way, and "
                    "no bar or map is drawn for it.")
        auc = f" (calibration AUC {reading.cal_auc:.2f})" if reading.cal_auc is not None else ""
        return f"{head}{auc}; {_push(reading.name, contribution)}."
    memory = name.removeprefix("memory_")
    return lookup_words(memory, scores.lookups[memory], 0) + f"; {_push(reading.name, contribution)}."


def lookup_words(memory: str, lk: Lookup, i: int = 0) -> str:
    """What one memory looked up for image ``i`` and what its best lookup found, from the table counts."""
    best = int(lk.scores()[i].argmax())
    members, externals = int(lk.members[i, best]), int(lk.externals[i, best])
    if len(lk.variants) > 1:
        looked = (f"The {memory} memory looked the image up as uploaded and {len(lk.variants) - 1} times moved or "
                  f"zoomed out (it reads the image itself, not the model); its best lookup ({lk.variants[best]})")
    else:
        looked = f"The {memory} memory looked the image up as uploaded (it reads the image itself, not the model): it"
    return f"{looked} {_hits(members, externals, lk.tables)}"


def _hits(members: int, externals: int, tables: int) -> str:
    if not members and not externals:
        return (f"lands in no bucket set only by training images or only by external non-members (of {tables} hash "
                "tables)")
    said = f"lands in a bucket set only by training images in {members} of {tables} hash tables"
    return said + (f" and in one set only by external non-members (images not used for training) in {externals}"
                   if externals else ", and in none set only by external non-members")


def match_words(match: Match | None) -> str:
    """What the fingerprint matched (amint.fingerprint.Match), from its table counts, in one or two sentences."""
    if match is None:
        return "This pair has no fingerprint: nothing was looked up."
    where = f"the {match.memory} memory" if match.memory else "a memory"
    hits = _hits(match.member_tables, match.external_tables, match.tables)
    if match.kind == "exact":
        return (f"Exact match: looked up as uploaded in {where}, the image {hits}: enough for the fingerprint to call "
                "it a member with no move or zoom. (A re-encoded copy, JPEG or resized, matches like this too.)")
    if match.kind == "after small edits":
        return (f"Match after a small edit: as uploaded, the image is not enough for the fingerprint; looked up "
                f"{match.variant} in {where}, it {hits}.")
    return f"No match: the best lookup (in {where}) {hits}: not enough for the fingerprint to call it a member."


# Edits that keep every pixel where it is, so that one region of the image can be edited alone;
# "erase" covers the region with the image's background (the classic occlusion). Noise was a third
# local edit: on the 24 shipped examples it moved the default pair's score more than both JPEG and
# brightness on 2 images (brightness on 17, JPEG on 5), and this batch is the Verify tab's largest cost.
REGION_EDITS = ("jpeg50", "bright90", "erase")
GRID = 4  # regions per side
FULL_SCALE = 0.5  # a region whose edits move the probability by 50 points or more shows at full brightness
_ROWS = ("top", "upper middle", "lower middle", "bottom")
_COLS = ("left", "centre-left", "centre-right", "right")


@dataclass
class EditSaliency:
    """Which regions' edits move one reading's probability, and by how much."""

    heat: np.ndarray  # HxW in [0, 1]: the largest |change of probability| over the edits, / FULL_SCALE, clipped
    region_change: np.ndarray  # (edits, GRID, GRID): signed change of the probability per edit and region
    base: float  # the unedited image's probability
    whole: dict[str, float]  # each suite edit applied to the whole image: its probability
    words: str
    reading: str = AMINT  # which reading's probability: amint, fingerprint, combined (legacy)


def edit_saliencies(pair: AuditedPair, x: torch.Tensor, edits: tuple[str, ...] = REGION_EDITS,
                    grid: int = GRID) -> dict[str, EditSaliency]:
    """Occlusion driven by the edit suite, for every reading: each region of the model input edited alone, in one
    batched forward (whose readings all come from the same evidence).

    Works for any head (memories have no input gradient): the question is the one a person asks,
    "if I edit this part of the image, does the answer move?".
    """
    h, w = x.shape[1:]
    edited = torch.cat([_edited_whole(pair, x, e) for e in edits])
    ys, xs = _cuts(h, grid), _cuts(w, grid)
    batch = [x, *edited]
    for k in range(len(edits)):
        for i in range(grid):
            for j in range(grid):
                mixed = x.clone()
                mixed[:, ys[i]:ys[i + 1], xs[j]:xs[j + 1]] = edited[k, :, ys[i]:ys[i + 1], xs[j]:xs[j + 1]]
                batch.append(mixed)
    scores = score_images(pair, torch.stack(batch))
    out = {}
    for name, probs in scores.probabilities.items():
        base = float(probs[0])
        whole = {e: float(p) for e, p in zip(edits, probs[1:1 + len(edits)]) if e != "erase"}
        changes = probs[1 + len(edits):].view(len(edits), grid, grid) - base
        moved = changes.abs().amax(0)  # per region: the largest move any of the edits makes
        heat = torch.zeros(h, w, dtype=torch.float64)
        for i in range(grid):
            for j in range(grid):
                heat[ys[i]:ys[i + 1], xs[j]:xs[j + 1]] = moved[i, j]
        heat = (heat / FULL_SCALE).clamp(0, 1).float().numpy()
        words = _saliency_words(changes.numpy(), edits, base, whole, pair.readings[name].threshold, name)
        out[name] = EditSaliency(heat, changes.numpy(), base, whole, words, name)
    return out


def _edited_whole(pair: AuditedPair, x: torch.Tensor, edit: str) -> torch.Tensor:
    if edit == "erase":
        fill = background(to_pil(x.permute(1, 2, 0).numpy()))
        return torch.tensor(fill, dtype=x.dtype).view(-1, 1, 1).expand_as(x).unsqueeze(0).clone()
    return edit_images(x.unsqueeze(0), edit, pair.config)


def _cuts(n: int, parts: int) -> list[int]:
    return [round(k * n / parts) for k in range(parts + 1)]


def _region_name(i: int, j: int, grid: int) -> str:
    if grid != len(_ROWS):
        return f"region ({i + 1}, {j + 1})"
    return f"{_ROWS[i]} {_COLS[j]}"


def percent(p: float) -> str:
    """A probability as people read it, never rounded up to a certainty: 99.97% stays 99.97%, not 100%."""
    if 0.999 < p < 1 or 0 < p < 0.001:
        return f"{p:.2%}"
    return f"{p:.1%}" if 0.99 < p < 1 or 0 < p < 0.01 else f"{p:.0%}"


def _saliency_words(changes: np.ndarray, edits: tuple[str, ...], base: float, whole: dict[str, float],
                    threshold: float, reading: str) -> str:
    grid = changes.shape[1]
    score = {AMINT: "the aMINT score", FINGERPRINT: "the fingerprint score"}.get(reading, "the combined score")
    answer = {AMINT: "the aMINT verdict", FINGERPRINT: "the fingerprint's answer"}.get(reading, "the combined verdict")
    sentences = []
    if "erase" in edits:
        erased = changes[edits.index("erase")]
        i, j = np.unravel_index(np.abs(erased).argmax(), erased.shape)
        flips = int(((base + erased >= threshold) != (base >= threshold)).sum())
        if abs(erased[i, j]) >= 0.02:
            sentences.append(f"Covering the {_region_name(i, j, grid)} part with the background moves {score} "
                             f"most: {percent(base)} → {percent(base + erased[i, j])}.")
            sentences.append(f"Covering any of {flips} of the {grid * grid} parts (one at a time) flips {answer}."
                             if flips else f"Covering any single part does not flip {answer}.")
        else:
            sentences.append(f"Covering any single part with the background hardly moves {score}.")
    local = [k for k, e in enumerate(edits) if e != "erase"]
    if local:
        worst = float(np.abs(changes[local]).max())
        sentences.append(f"JPEG or a brightness change on one part alone moves it by at most {100 * worst:.1f} points"
                         + (f"; on the whole image, to {percent(min(whole.values()))}–{percent(max(whole.values()))}."
                            if whole else "."))
    return " ".join(sentences)
