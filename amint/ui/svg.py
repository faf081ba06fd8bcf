"""Small inline SVG charts for the Verify tab: drawn in microseconds, crisp on a phone, readable by a
screen reader (role="img" with a title and a description), no image file written per request.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Sequence

from amint.explain import percent
from amint.plots import MEMBER_COLOR, NONMEMBER_COLOR

WIDTH, HEIGHT = 560, 190
LEFT, RIGHT, TOP, BOTTOM = 14, 14, 34, 40  # plot margins: legend on top, axis labels below


@dataclass
class Mark:
    """A vertical line on the score axis: one image's member probability."""

    label: str
    value: float
    dashed: bool = False


def _x(p: float) -> float:
    return LEFT + max(0.0, min(1.0, p)) * (WIDTH - LEFT - RIGHT)


def _bars(counts: Sequence[float], edges: Sequence[float], color: str, base_y: float, height: float) -> list[str]:
    total = float(sum(counts)) or 1.0
    # Square root of the share: the few calibration images far from their side stay visible.
    tallest = max((c / total) ** 0.5 for c in counts) or 1.0
    out = []
    for c, lo, hi in zip(counts, edges[:-1], edges[1:]):
        if c:
            h = height * (c / total) ** 0.5 / tallest
            out.append(f'<rect x="{_x(lo):.1f}" y="{base_y - h:.1f}" width="{max(_x(hi) - _x(lo) - 0.6, 0.6):.1f}" '
                       f'height="{h:.1f}" fill="{color}" fill-opacity="0.45"/>')
    return out


def score_svg(calibration: dict, marks: list[Mark], threshold: float, title: str, key: str = "s") -> str:
    """Members' and never-seen images' calibration scores, the threshold, and the marked images.

    ``key``: makes the title's and description's element ids unique when a page shows several charts."""
    base_y, height = HEIGHT - BOTTOM, HEIGHT - BOTTOM - TOP
    edges = calibration.get("edges") or [i / 50 for i in range(51)]
    parts = [f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" height="{height}" fill="none" '
             f'stroke="currentColor" stroke-opacity="0.2"/>']
    for key, color in (("nonmembers", NONMEMBER_COLOR), ("members", MEMBER_COLOR)):
        if calibration.get(key):
            parts += _bars(calibration[key], edges, color, base_y, height)
    tx = _x(threshold)
    parts.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{TOP}" y2="{base_y}" stroke="currentColor" '
                 f'stroke-dasharray="2 3" stroke-width="1.2"/>')
    parts.append(f'<text x="{tx + 3:.1f}" y="{TOP + 11}" font-size="11" fill="currentColor">threshold '
                 f'{threshold:.0%}</text>')
    for k, m in enumerate(marks):
        x = _x(m.value)
        dash = ' stroke-dasharray="6 3"' if m.dashed else ""
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP - 4}" y2="{base_y + 4}" stroke="currentColor" '
                     f'stroke-width="3"{dash}/>')
        anchor = "end" if m.value > 0.5 else "start"
        dx = -5 if anchor == "end" else 5
        parts.append(f'<text x="{x + dx:.1f}" y="{TOP + 26 + 14 * k}" font-size="12" font-weight="600" '
                     f'text-anchor="{anchor}" fill="currentColor">{html.escape(m.label)} {percent(m.value)}</text>')
    for p in (0, 0.25, 0.5, 0.75, 1):
        parts.append(f'<text x="{_x(p):.1f}" y="{base_y + 15}" font-size="11" text-anchor="middle" '
                     f'fill="currentColor">{p:.0%}</text>')
    parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT - 6}" font-size="11" text-anchor="middle" fill="currentColor" '
                 f'fill-opacity="0.8">member probability</text>')
    parts += _legend()
    desc = (f"Calibration scores of training members and of never-seen images, threshold {threshold:.1%}; "
            + "; ".join(f"{m.label}: {percent(m.value)}" for m in marks))
    return (f'<svg class="score-svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="{key}t {key}d" '
            f'xmlns="http://www.w3.org/2000/svg" style="width:100%;height:auto;max-width:{WIDTH}px">'
            f'<title id="{key}t">{html.escape(title)}</title><desc id="{key}d">{html.escape(desc)}</desc>'
            + "".join(parts) + "</svg>")


def _legend() -> list[str]:
    items = [("never-seen images", NONMEMBER_COLOR), ("training members", MEMBER_COLOR)]
    out, x = [], LEFT
    for label, color in items:
        out.append(f'<rect x="{x}" y="8" width="12" height="12" fill="{color}" fill-opacity="0.6"/>')
        out.append(f'<text x="{x + 16}" y="18" font-size="12" fill="currentColor">{label}</text>')
        x += 150
    return out
