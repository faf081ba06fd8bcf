"""Plots and overlays the app and the audit reports show: matplotlib Figures on their own Agg canvas,
never pyplot's state. Imported only where a picture is drawn, so plain verdicts skip matplotlib's import."""

from __future__ import annotations

import base64
import io
import math
from typing import Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DISPLAY_MIN_SIDE = 224  # small benchmark images (28 px) are unreadable at their native size
# Okabe-Ito colours: vermillion and blue stay distinct for every common colour-vision deficiency.
MEMBER_COLOR, NONMEMBER_COLOR, THIS_COLOR = "#D55E00", "#0072B2", "#000000"


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5, cmap: str = "inferno",
            min_side: int = DISPLAY_MIN_SIDE) -> np.ndarray:
    """Heat map blended over the image: RGB uint8, upscaled (nearest) to at least ``min_side`` px for display
    (1 keeps the image's own size, for a page that scales it with CSS)."""
    rgb = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]
    if heat.shape != rgb.shape[:2]:
        heat = _resize_nearest(heat, rgb.shape[:2])
    colored = matplotlib.colormaps[cmap](np.clip(heat, 0, 1))[..., :3] * 255.0
    blend = (1 - alpha) * rgb.astype(np.float64) + alpha * colored
    k = max(1, math.ceil(min_side / min(rgb.shape[:2])))
    return np.clip(blend, 0, 255).round().astype(np.uint8).repeat(k, axis=0).repeat(k, axis=1)


def png_data_uri(image: np.ndarray, max_side: int | None = None) -> str:
    """A uint8 image as an inline PNG (``data:`` URI), shrunk to ``max_side`` if given: no file to write,
    nothing to fetch; the page enlarges small images itself."""
    from PIL import Image

    im = Image.fromarray(np.asarray(image))
    if max_side:
        im.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _resize_nearest(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    rows = np.arange(shape[0]) * a.shape[0] // shape[0]
    cols = np.arange(shape[1]) * a.shape[1] // shape[1]
    return a[rows][:, cols]


# Margins (fractions of the figure) for plots drawn on every request: matplotlib's constrained layout
# solver took ~70% of a score plot's rendering time (250 of 345 ms on the loaded 2-core CPU).
FIXED_MARGINS = {"left": 0.11, "right": 0.98, "bottom": 0.15, "top": 0.9}


def _figure(width: float = 6.0, height: float = 3.6, ncols: int = 1, fixed_margins: bool = False) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, height), layout=None if fixed_margins else "constrained")
    if fixed_margins:
        fig.subplots_adjust(**FIXED_MARGINS)
    FigureCanvasAgg(fig)  # an Agg canvas of its own: savefig works without pyplot or a display
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def _placeholder(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.set_axis_off()


def _density(counts: Sequence[float], edges: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    return counts / (total * np.diff(edges)) if total else counts


def plot_score_distribution(
    calibration: dict, scores: Sequence[float] | float, threshold: float, title: str = ""
) -> Figure:
    """Member vs never-seen histograms from calibration, the threshold, and where ``scores`` fall."""
    fig, (ax,) = _figure(fixed_margins=True)  # drawn on every verify: the cheap layout
    edges = np.asarray(calibration.get("edges") or np.linspace(0, 1, 51), dtype=np.float64)
    for key, label, color in (("members", "training members", MEMBER_COLOR),
                              ("nonmembers", "never-seen images", NONMEMBER_COLOR)):
        if calibration.get(key):
            ax.stairs(_density(calibration[key], edges), edges, fill=True, alpha=0.35, color=color, label=label)
    values = [float(scores)] if isinstance(scores, (int, float)) else [float(s) for s in scores]
    if len(values) == 1:
        ax.axvline(values[0], color=THIS_COLOR, lw=2.5, label=f"this image ({values[0]:.2f})")
    elif values:
        counts, _ = np.histogram(np.clip(values, 0, 1), bins=edges)
        ax.stairs(_density(counts, edges), edges, color=THIS_COLOR, lw=2, label=f"this set ({len(values)} images)")
    ax.axvline(threshold, color="black", ls="--", lw=1, label=f"threshold {threshold:.2f}")
    ax.set(xlim=(0, 1), xlabel="membership probability", ylabel="density", title=title)
    ax.legend(loc="best", fontsize="small")
    return fig


def plot_roc(metrics: dict) -> Figure:
    """Held-out ROC on a log FPR axis, chance line, and the calibrated operating point."""
    fig, (ax,) = _figure(4.8, 4.2)
    roc = metrics.get("roc") or {}
    fpr, tpr = np.asarray(roc.get("fpr", []), float), np.asarray(roc.get("tpr", []), float)
    if not len(fpr):
        _placeholder(ax, "No ROC curve recorded for this pair")
        return fig
    floor = 1e-4  # a log axis cannot show FPR 0
    keep = fpr >= floor
    ax.plot(fpr[keep], tpr[keep], color=MEMBER_COLOR, lw=2, label=f"aMINT (AUC {metrics.get('auc', float('nan')):.3f})")
    chance = np.logspace(-4, 0, 100)
    ax.plot(chance, chance, color="gray", ls=":", label="chance")
    point = _operating_point(metrics)
    if point is not None:
        ax.plot(max(point[0], floor), point[1], "o", color="black", label=f"calibrated threshold (TPR {point[1]:.2f})")
    ax.set(xscale="log", xlim=(floor, 1), ylim=(0, 1.01), xlabel="false-positive rate (never-seen images)",
           ylabel="true-positive rate (members)",
           title="Membership ROC (scored members held out from calibration only)")
    ax.legend(loc="lower right", fontsize="small")
    return fig


def _operating_point(metrics: dict) -> tuple[float, float] | None:
    """(FPR, TPR) at the stored threshold; accuracy is balanced, so TPR = 2 * acc - (1 - FPR)."""
    fpr, acc = metrics.get("fpr_at_threshold"), metrics.get("mint_accuracy")
    if fpr is None or acc is None:
        return None
    return float(fpr), float(np.clip(2 * acc - (1 - fpr), 0, 1))


def plot_history(history: list[dict]) -> Figure:
    """Training curves: losses on the left, accuracies and AUC on the right, phases marked."""
    fig, (left, right) = _figure(9.0, 3.4, ncols=2)
    if not history:
        _placeholder(left, "No training history")
        _placeholder(right, "")
        return fig
    x = np.arange(1, len(history) + 1)  # passive mode restarts epochs per phase: count records instead
    for ax, keys in ((left, ("task_loss", "mint_loss")),
                     (right, ("train_task_accuracy", "test_accuracy", "cal_trace_accuracy", "cal_trace_auc"))):
        for key in keys:
            ys = [r.get(key) for r in history]
            if any(y is not None for y in ys):
                ax.plot(x, [np.nan if y is None else y for y in ys], marker=".", label=key.replace("_", " "))
        _mark_phases(ax, history)
        ax.set_xlabel("epoch")
        ax.legend(fontsize="small")
    left.set(ylabel="loss", title="Losses")
    right.set(ylabel="accuracy / AUC", ylim=(0, 1.02), title="Accuracy and membership AUC")
    return fig


def _mark_phases(ax, history: list[dict]) -> None:
    for i in range(1, len(history)):
        if history[i].get("phase") != history[i - 1].get("phase"):
            ax.axvline(i + 0.5, color="gray", ls="--", lw=1)
            ax.text(i + 0.6, 0.98, history[i].get("phase", ""), transform=ax.get_xaxis_transform(),
                    va="top", fontsize="small", color="gray")
