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
from .pair import eval_mode
from .readings import AMINT, COMBINED, FINGERPRINT, headline

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
    """One part of the head's evidence and how much it moved its reading's logit for this image."""

    name: str  # "trace" or "memory_<name>"
    value: float  # the raw evidence: trace logit, or memory score in [-0.5, 1]
    contribution: float  # the reading's Platt weight x value, in logit units (0 when no reading reads it)
    words: str
    reading: str | None = None  # the reading this part feeds: amint (trace), fingerprint (memories), combined (legacy)


_READING_TITLES = {AMINT: "the aMINT verdict", FINGERPRINT: "the fingerprint", COMBINED: "the combined verdict (legacy)"}


def evidence_parts(pair: AuditedPair, scores: Scores) -> list[EvidencePart]:
    """The evidence of one image (``forward_one``'s scores) split by part, each with its reading and a sentence."""
    names = scores.evidence_names
    feeds = {n: r for r in pair.readings.values() for n in r.evidence}
    parts = []
    for i, (name, v) in enumerate(zip(names, scores.evidence[0].tolist())):
        reading = feeds.get(name)
        contribution = reading.weights[reading.evidence.index(name)] * v if reading else 0.0
        where = _READING_TITLES[reading.name] if reading else "no reading (this pair is not calibrated)"
        parts.append(EvidencePart(name, v, contribution, _evidence_words(pair, scores, name, v, contribution, where),
                                  reading.name if reading else None))
    return parts


def _evidence_words(pair: AuditedPair, scores: Scores, name: str, value: float, contribution: float,
                    reading: str) -> str:
    direction = "towards “member”" if contribution > 0 else "towards “not a member”"
    push = f"it pushes {reading} {direction} by {abs(contribution):.1f} (logit units)"
    if name == "trace":
        return (f"The trace head, which reads the model's activity at {', '.join(pair.config.taps)}, gives logit "
                f"{value:+.2f}; {push}.")
    memory = name.removeprefix("memory_")
    lk = scores.lookups[memory]
    best = int(lk.scores()[0].argmax())
    members, externals, tables = int(lk.members[0, best]), int(lk.externals[0, best]), lk.tables
    looked = lk.variants[best]
    if members:
        seen = (f"its fingerprint matches a training image's in {members} of {tables} hash tables (looked up "
                f"{looked})" + (f", an external non-member's in {externals}" if externals else ""))
    elif externals:
        seen = (f"its fingerprint matches only images that were NOT used for training ({externals} of {tables} hash "
                "tables)")
    else:
        seen = "its fingerprint matches no stored fingerprint"
    kind = "after trying small moves and zooms" if len(lk.variants) > 1 else "as uploaded"
    return f"The {memory} memory ({kind}) reads the image itself, not the model: {seen}; {push}."


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


def edit_saliency(pair: AuditedPair, x: torch.Tensor, edits: tuple[str, ...] = REGION_EDITS, grid: int = GRID,
                  reading: str | None = None) -> EditSaliency:
    """``edit_saliencies`` of one reading: ``reading``, or the headline one (the aMINT verdict; else the fingerprint)."""
    found = edit_saliencies(pair, x, edits, grid)
    name = reading or headline(found) or FINGERPRINT
    if name not in found:
        raise ValueError(f"This pair has no {name} reading; it has {', '.join(found) or 'none (not calibrated)'}")
    return found[name]


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
