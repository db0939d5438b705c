"""The keyword figure of the web page: the utterance's waveform and, below it on the same time axis,
each keyword's attention over the utterance with the span it was heard in (the paper's keyword figure).

Drawn as an SVG string (no plotting stack; crisp at any size, the text stays selectable). Pure: numbers
in, markup out.
"""

from __future__ import annotations

import html
from typing import List, Sequence

import numpy as np

from espnet_speechclip.data.media import SAMPLE_RATE
from espnet_speechclip.errors import InputError
from espnet_speechclip.inference.result_types import KeywordTiming

# One colour per keyword slot (categorical, readable on white).
PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#17becf",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
)
WIDTH = 880
LABEL_W = 170  # keyword and score, left of the plot
SPAN_W = 120  # "0.42-0.80 s", right of the plot
WAVE_H = 72
# the span column of a keyword without a confident span (see KeywordTiming)
NO_SPAN = "not localised"
ROW_H = 30
AXIS_H = 26
PLOT_W = WIDTH - LABEL_W - SPAN_W


def tick_step(duration: float, max_ticks: int = 10) -> float:
    """The smallest of 0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 5, 10, ... seconds that puts at most
    ``max_ticks`` ticks on [0, duration]."""
    if duration <= 0:
        raise InputError(f"duration must be positive, got {duration}")
    scale = 1.0
    while True:
        for base in (0.1, 0.2, 0.25, 0.5):
            step = base * scale
            if duration / step <= max_ticks:
                return step
        scale *= 10


def _envelope(wav: np.ndarray, columns: int) -> np.ndarray:
    """(T,) -> (columns, 2) min and max of each of ``columns`` equal stretches, scaled to [-1, 1]."""
    peak = float(np.abs(wav).max()) or 1.0
    edges = np.linspace(0, len(wav), columns + 1).astype(int)
    out = np.zeros((columns, 2))
    for c in range(columns):
        seg = wav[edges[c] : max(edges[c + 1], edges[c] + 1)]
        out[c] = seg.min() / peak, seg.max() / peak
    return out


def _wave_path(wav: np.ndarray, x0: float, y_mid: float, half: float) -> str:
    env = _envelope(wav, int(PLOT_W))
    xs = x0 + np.arange(len(env)) + 0.5
    top = " ".join(f"{x:.1f},{y_mid - half * hi:.1f}" for x, hi in zip(xs, env[:, 1]))
    bottom = " ".join(f"{x:.1f},{y_mid - half * lo:.1f}" for x, lo in zip(xs[::-1], env[::-1, 0]))
    return f"M{top} L{bottom} Z"


def _attention_path(
    att: np.ndarray, frame_rate: float, x_of, y_base: float, height: float, offset: float = 0.0
) -> str:
    """A step outline of one keyword's attention (T,), scaled so its peak fills ``height``; frame t
    covers [t, t + 1) / frame_rate + offset seconds."""
    peak = float(att.max()) or 1.0
    points: List[str] = [f"{x_of(offset):.1f},{y_base:.1f}"]
    for t, a in enumerate(att):
        y = y_base - height * float(a) / peak
        points += [
            f"{x_of(offset + t / frame_rate):.1f},{y:.1f}",
            f"{x_of(offset + (t + 1) / frame_rate):.1f},{y:.1f}",
        ]
    points.append(f"{x_of(offset + len(att) / frame_rate):.1f},{y_base:.1f}")
    return "M" + " L".join(points) + " Z"


def keyword_figure(wav: Sequence[float], timing: KeywordTiming) -> str:
    """SVG of one utterance: waveform on top, then one row per keyword (its attention over time, its
    span shaded), sharing a time axis in seconds.

    Args:
        wav: (T,) the utterance at 16 kHz, as the model heard it.
        timing: the utterance's :class:`KeywordTiming` (keywords with spans, attention (K, T')).

    Each keyword row is a ``<g class="keyword">`` with ``data-token``, ``data-score``, ``data-start``
    and ``data-end`` attributes and a tooltip.
    """
    wav = np.asarray(wav, dtype=np.float64)
    if wav.ndim != 1 or not len(wav):
        raise InputError(f"wav must be a non-empty (T,) waveform, got shape {wav.shape}")
    if len(timing.keywords) != len(timing.attention):
        raise InputError(f"{len(timing.keywords)} keywords but {len(timing.attention)} attention rows")
    duration = max(len(wav) / SAMPLE_RATE, timing.duration)
    height = WAVE_H + ROW_H * len(timing.keywords) + AXIS_H + 8

    def x_of(seconds: float) -> float:
        return LABEL_W + PLOT_W * min(max(seconds, 0.0), duration) / duration

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="keyword-figure" viewBox="0 0 {WIDTH} {height}" '
        f'width="100%" style="max-width:{WIDTH}px;font-family:inherit" role="img" '
        f'aria-label="keyword attention over the utterance">',
        f'<text x="{LABEL_W - 10}" y="{WAVE_H / 2 + 4:.1f}" text-anchor="end" font-size="13" '
        f'fill="#555">waveform</text>',
        f'<path d="{_wave_path(wav, LABEL_W, WAVE_H / 2, WAVE_H / 2 - 6)}" fill="#8a94a6"/>',
    ]
    for i, (kw, att) in enumerate(zip(timing.keywords, timing.attention)):
        colour = PALETTE[i % len(PALETTE)]
        top = WAVE_H + i * ROW_H
        # a keyword without a confident span: say so rather than shade anything
        timed = kw.start is not None and kw.end is not None
        start, end = (kw.start, kw.end) if timed else (0.0, 0.0)
        token = html.escape(kw.token)
        span = f"{start:.2f}\u2013{end:.2f} s" if timed else NO_SPAN
        att = np.asarray(att, dtype=np.float64)
        base, scale = top + ROW_H - 3, ROW_H - 8
        curve = _attention_path(att, timing.frame_rate, x_of, base, scale, timing.frame_offset)
        # attention spread evenly over the frames, on the same scale: a flat keyword sits on this line
        even = base - scale * (1.0 / len(att)) / (float(att.max()) or 1.0)
        parts += [
            f'<g class="keyword" data-token="{token}" data-score="{kw.score:.3f}" '
            + (f'data-start="{start:.2f}" data-end="{end:.2f}">' if timed else 'data-span="none">'),
            f"<title>{token}: "
            + (f"heard {span}" if timed else f"{span}, no stretch stands out")
            + f" (score {kw.score:.3f})</title>",
            f'<rect x="{LABEL_W}" y="{top}" width="{PLOT_W}" height="{ROW_H}" '
            f'fill="{"#f6f7f9" if i % 2 else "#ffffff"}"/>',
        ]
        if timed:
            parts.append(
                f'<rect x="{x_of(start):.1f}" y="{top + 1}" width="{max(x_of(end) - x_of(start), 1.0):.1f}" '
                f'height="{ROW_H - 2}" fill="{colour}" fill-opacity="0.16" stroke="{colour}" '
                f'stroke-opacity="0.5"/>'
            )
        parts += [
            f'<path d="{curve}" fill="{colour}" fill-opacity="0.85"/>',
            f'<line class="uniform" x1="{LABEL_W}" x2="{LABEL_W + PLOT_W}" y1="{even:.1f}" y2="{even:.1f}" '
            f'stroke="#333" stroke-opacity="0.45" stroke-dasharray="3 3"/>',
            f'<text x="{LABEL_W - 10}" y="{top + ROW_H / 2 + 5:.1f}" text-anchor="end" font-size="14">'
            f'<tspan font-weight="600" fill="{colour}">{token}</tspan>'
            f'<tspan fill="#777" font-size="12"> {kw.score:.2f}</tspan></text>',
            f'<text x="{LABEL_W + PLOT_W + 10}" y="{top + ROW_H / 2 + 5:.1f}" font-size="13" '
            f'fill="#333">{span}</text>',
            "</g>",
        ]
    axis_y = WAVE_H + ROW_H * len(timing.keywords)
    parts.append(f'<line x1="{LABEL_W}" y1="{axis_y}" x2="{LABEL_W + PLOT_W}" y2="{axis_y}" stroke="#999"/>')
    step = tick_step(duration)
    for n in range(int(duration / step + 1e-9) + 1):
        t = n * step
        x = x_of(t)
        parts += [
            f'<line x1="{x:.1f}" y1="{axis_y}" x2="{x:.1f}" y2="{axis_y + 5}" stroke="#999"/>',
            f'<text x="{x:.1f}" y="{axis_y + 18}" text-anchor="middle" font-size="12" fill="#555">'
            f"{t:g}</text>",
        ]
    parts.append(
        f'<text x="{LABEL_W + PLOT_W + 10}" y="{axis_y + 18}" font-size="12" fill="#555">seconds</text>'
    )
    parts.append("</svg>")
    return "".join(parts)
