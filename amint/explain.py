"""What the MINT head looks at: activation maps and membership saliency as arrays.

The app draws them (amint/ui/plots.py); the CLI and tests use the arrays directly. No matplotlib here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from .edits import background, edit_images, to_pil
from .evaluate import scoring_precision
from .pair import eval_mode

if TYPE_CHECKING:
    from .pair import AuditedPair


# --- arrays -----------------------------------------------------------------------------------


def _model_batch(pair: AuditedPair, x: torch.Tensor) -> torch.Tensor:
    """uint8 (C, H, W) -> normalised (1, C, H, W) on the pair's device."""
    c = pair.config.in_chans
    assert x.ndim == 3 and x.shape[0] == c, f"expected a ({c}, H, W) image, got {tuple(x.shape)}"
    return pair.normalize(x.unsqueeze(0).to(next(pair.parameters()).device))


def _unit(a: torch.Tensor) -> np.ndarray:
    """Scale to [0, 1]; a constant map becomes zeros rather than NaN."""
    a = a.float()
    lo, hi = a.min(), a.max()
    out = (a - lo) / (hi - lo) if hi > lo else torch.zeros_like(a)
    return out.cpu().numpy().astype(np.float32)


@torch.no_grad()
def forward_one(pair: AuditedPair, x: torch.Tensor):
    """The pair's one forward (PairOutput) for a uint8 (C, H, W) image, in eval mode and its scoring precision."""
    inp = _model_batch(pair, x)
    with eval_mode(pair), scoring_precision(pair, inp.device):
        return pair(inp)


def heat_maps(taps: list[str], maps: list[torch.Tensor], size: tuple[int, int]) -> list[tuple[str, np.ndarray]]:
    """Per tap: mean |activation| over channels, upsampled to ``size``, scaled to [0, 1]."""
    out = []
    for name, m in zip(taps, maps):
        energy = m.float().abs().mean(dim=1, keepdim=True)
        up = F.interpolate(energy, size=size, mode="bilinear", align_corners=False)
        out.append((name, _unit(up[0, 0])))
    return out


def activation_maps(pair: AuditedPair, x: torch.Tensor) -> list[tuple[str, np.ndarray]]:
    """Per tap: mean |activation| over channels, upsampled to the input size, scaled to [0, 1]."""
    return heat_maps(pair.config.taps, forward_one(pair, x).maps, tuple(x.shape[1:]))


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
    """One part of the head's evidence and how much it moved this image's decision logit."""

    name: str  # "trace" or "memory_<name>"
    value: float  # the raw evidence: trace logit, or memory score in [-0.5, 1]
    contribution: float  # readout weight x value, in logit units
    words: str


def evidence_parts(pair: AuditedPair, evidence: torch.Tensor) -> list[EvidencePart]:
    """The evidence row of one image (PairOutput.evidence[i]) split by part, each with a sentence."""
    weights = pair.head.readout.weight[0].detach().float().cpu()
    names = pair.head.cfg.evidence_names
    parts = []
    for name, w, v in zip(names, weights, evidence.detach().float().cpu()):
        value, contribution = float(v), float(w * v)
        parts.append(EvidencePart(name, value, contribution, _evidence_words(pair, name, value, contribution)))
    return parts


def _evidence_words(pair: AuditedPair, name: str, value: float, contribution: float) -> str:
    direction = "towards “member”" if contribution > 0 else "towards “not a member”"
    if name == "trace":
        return (f"The trace head, which reads the model's activity at {', '.join(pair.config.taps)}, pushes "
                f"{direction} by {abs(contribution):.1f} (logit units).")
    memory = name.removeprefix("memory_")
    tables = pair.head.memories[memory].cfg.tables
    if value > 0:
        seen = (f"its fingerprint matches a training image's in about {round(value * tables)} of {tables} hash "
                "tables")
    elif value < 0:
        seen = "its fingerprint matches images the model was NOT trained on more than training images"
    else:
        seen = "its fingerprint matches no stored fingerprint"
    kind = "after trying small moves and zooms" if pair.head.memories[memory].cfg.shifts else "as uploaded"
    return f"The {memory} memory ({kind}): {seen}; it pushes {direction} by {abs(contribution):.1f}."


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
    """Which regions' edits move the member probability, and by how much."""

    heat: np.ndarray  # HxW in [0, 1]: the largest |change of probability| over the edits, / FULL_SCALE, clipped
    region_change: np.ndarray  # (edits, GRID, GRID): signed change of the member probability per edit and region
    base: float  # the unedited image's member probability
    whole: dict[str, float]  # each suite edit applied to the whole image: its member probability
    words: str


def edit_saliency(pair: AuditedPair, x: torch.Tensor, edits: tuple[str, ...] = REGION_EDITS,
                  grid: int = GRID) -> EditSaliency:
    """Occlusion driven by the edit suite: each region of the model input edited alone, one batched forward.

    Works for any head (memories have no input gradient): the question is the one a person asks,
    "if I edit this part of the image, does the verdict move?".
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
    probs = _probabilities(pair, torch.stack(batch))
    base = float(probs[0])
    whole = {e: float(p) for e, p in zip(edits, probs[1:1 + len(edits)]) if e != "erase"}
    changes = probs[1 + len(edits):].view(len(edits), grid, grid) - base
    moved = changes.abs().amax(0)  # per region: the largest move any of the edits makes
    heat = torch.zeros(h, w, dtype=torch.float64)
    for i in range(grid):
        for j in range(grid):
            heat[ys[i]:ys[i + 1], xs[j]:xs[j + 1]] = moved[i, j]
    heat = (heat / FULL_SCALE).clamp(0, 1).float().numpy()
    words = _saliency_words(changes.numpy(), edits, base, whole, pair.config.threshold)
    return EditSaliency(heat, changes.numpy(), base, whole, words)


def _edited_whole(pair: AuditedPair, x: torch.Tensor, edit: str) -> torch.Tensor:
    if edit == "erase":
        fill = background(to_pil(x.permute(1, 2, 0).numpy()))
        return torch.tensor(fill, dtype=x.dtype).view(-1, 1, 1).expand_as(x).unsqueeze(0).clone()
    return edit_images(x.unsqueeze(0), edit, pair.config)


def _cuts(n: int, parts: int) -> list[int]:
    return [round(k * n / parts) for k in range(parts + 1)]


@torch.no_grad()
def _probabilities(pair: AuditedPair, images: torch.Tensor) -> torch.Tensor:
    inp = pair.normalize(images.to(next(pair.parameters()).device))
    with eval_mode(pair), scoring_precision(pair, inp.device):
        return pair(inp).member_probability.double().cpu()


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
                    threshold: float) -> str:
    grid = changes.shape[1]
    sentences = []
    if "erase" in edits:
        erased = changes[edits.index("erase")]
        i, j = np.unravel_index(np.abs(erased).argmax(), erased.shape)
        flips = int(((base + erased >= threshold) != (base >= threshold)).sum())
        if abs(erased[i, j]) >= 0.02:
            sentences.append(f"Covering the {_region_name(i, j, grid)} part with the background moves the score "
                             f"most: {percent(base)} → {percent(base + erased[i, j])}.")
            sentences.append(f"Covering any of {flips} of the {grid * grid} parts (one at a time) flips the verdict."
                             if flips else "Covering any single part does not flip the verdict.")
        else:
            sentences.append("Covering any single part with the background hardly moves the score.")
    local = [k for k, e in enumerate(edits) if e != "erase"]
    if local:
        worst = float(np.abs(changes[local]).max())
        sentences.append(f"JPEG or a brightness change on one part alone moves it by at most {100 * worst:.1f} points"
                         + (f"; on the whole image, to {percent(min(whole.values()))}–{percent(max(whole.values()))}."
                            if whole else "."))
    return " ".join(sentences)


def membership_saliency(pair: AuditedPair, x: torch.Tensor) -> np.ndarray:
    """Which pixels move the membership score, HxW in [0, 1].

    |d membership logit / d input| (max over channels, 3x3 mean) where the head is only a trace head;
    where it has hashed memories, whose scores depend on the input through sign bits only, the
    edit-driven occlusion of ``edit_saliency``.
    """
    if pair.head.memories:
        return edit_saliency(pair, x).heat
    with eval_mode(pair), torch.enable_grad():
        inp = _model_batch(pair, x).detach().requires_grad_(True)
        mint = pair(inp).membership_logit
        # autograd.grad only touches the input: no parameter .grad is written.
        (grad,) = torch.autograd.grad(mint.sum(), inp, allow_unused=True)
        if grad is None:
            heat = torch.zeros_like(inp[:, :1])
        else:
            heat = grad.abs().amax(dim=1, keepdim=True)
            # Raw gradients are speckled pixel by pixel; a 3x3 mean shows the regions that matter.
            heat = F.avg_pool2d(heat, 3, stride=1, padding=1, count_include_pad=False)
    return _unit(heat[0, 0])
