"""Scenes of the built-in "spoken shapes" corpus: one or two coloured shapes, and their rendering.

A scene holds 1 object (p 0.4) or 2 (p 0.6): 8 colours x 5 shapes x 2 sizes. One object sits at a
position (left / right / top / bottom / middle); two objects sit side by side or one above the other,
far enough apart that the relation (left of / right of / above / below) is never ambiguous.
:func:`render` draws a scene on a grey background with PIL alone.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Tuple

from espnet_speechclip.errors import InputError

COLOURS: Dict[str, Tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 40),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "purple": (140, 40, 170),
    "orange": (250, 140, 20),
    "white": (250, 250, 250),
    "black": (10, 10, 10),
}
SHAPES: Tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
SIZES: Tuple[str, ...] = ("small", "big")
POSITIONS: Tuple[str, ...] = ("left", "right", "top", "bottom", "middle")
RELATIONS: Tuple[str, ...] = ("left of", "right of", "above", "below")
BACKGROUND = (128, 128, 128)

# Object centres as fractions of the image side, (x, y) with y pointing down.
_CENTRES = {
    "left": (0.25, 0.5),
    "right": (0.75, 0.5),
    "top": (0.5, 0.25),
    "bottom": (0.5, 0.75),
    "middle": (0.5, 0.5),
}
# Radii (fractions of the side). With the jitter below, a big object at "left" stays inside the image
# and two objects never overlap or cross the centre line, so "left of" / "above" are unambiguous.
_RADIUS = {"small": 0.10, "big": 0.18}
_JITTER = 0.03
# Relation of the first object to the second, given their positions.
_RELATION_OF = {
    ("left", "right"): "left of",
    ("right", "left"): "right of",
    ("top", "bottom"): "above",
    ("bottom", "top"): "below",
}
_INVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
# How a caption names a position.
POSITION_PHRASES = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "middle": "in the middle",
}


@dataclass(frozen=True)
class SceneObject:
    """One shape. ``position`` is one of POSITIONS; ``dx``/``dy`` shift the centre (fractions of the side)."""

    colour: str
    shape: str
    size: str
    position: str
    dx: float = 0.0
    dy: float = 0.0


@dataclass(frozen=True)
class Scene:
    """One or two objects. With two, their positions are left/right or top/bottom (see :attr:`relation`)."""

    objects: Tuple[SceneObject, ...]

    def __post_init__(self) -> None:
        if len(self.objects) not in (1, 2):
            raise InputError(f"a scene holds 1 or 2 objects, got {len(self.objects)}")
        for o in self.objects:
            if (
                o.colour not in COLOURS
                or o.shape not in SHAPES
                or o.size not in SIZES
                or o.position not in POSITIONS
            ):
                raise InputError(f"unknown attribute in {o}")
        if len(self.objects) == 2 and self.relation is None:
            raise InputError(f"two objects must be left/right or top/bottom of each other: {self.objects}")

    @property
    def relation(self) -> Optional[str]:
        """Where the first object is relative to the second ("left of", ...), or None for one object."""
        if len(self.objects) == 1:
            return None
        return _RELATION_OF.get((self.objects[0].position, self.objects[1].position))

    def to_dict(self) -> dict:
        return {"objects": [asdict(o) for o in self.objects], "relation": self.relation}

    @classmethod
    def from_dict(cls, d: dict) -> Scene:
        return cls(tuple(SceneObject(**o) for o in d["objects"]))


def _random_object(rng: random.Random, position: str) -> SceneObject:
    # Jitter on a 1/200 grid so the scene round-trips through JSON exactly.
    dx, dy = (round(rng.uniform(-_JITTER, _JITTER), 3) for _ in range(2))
    return SceneObject(rng.choice(list(COLOURS)), rng.choice(SHAPES), rng.choice(SIZES), position, dx, dy)


def sample_scene(rng: random.Random) -> Scene:
    """Draw a random scene: one object (p 0.4) at a random position, or two (p 0.6) in a random relation."""
    if rng.random() < 0.4:
        return Scene((_random_object(rng, rng.choice(POSITIONS)),))
    first, second = rng.choice(list(_RELATION_OF))
    a = _random_object(rng, first)
    while True:
        b = _random_object(rng, second)
        # Two objects of the same colour and shape make captions like "a red circle left of a red circle",
        # which carry no information about which is which.
        if (a.colour, a.shape) != (b.colour, b.shape):
            return Scene((a, b))


def _polygon(shape: str, cx: float, cy: float, r: float) -> List[Tuple[float, float]]:
    if shape == "square":
        h = r * 0.85  # a square of side 2r looks bigger than the circle of radius r
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":
        return [
            (cx + r * math.cos(a), cy - r * math.sin(a)) for a in (math.pi / 2, math.pi * 7 / 6, -math.pi / 6)
        ]
    if shape == "star":
        return [
            (
                cx + (r if k % 2 == 0 else 0.45 * r) * math.cos(math.pi / 2 + k * math.pi / 5),
                cy - (r if k % 2 == 0 else 0.45 * r) * math.sin(math.pi / 2 + k * math.pi / 5),
            )
            for k in range(10)
        ]
    if shape == "cross":
        w = r * 0.35
        return [
            (cx - w, cy - r),
            (cx + w, cy - r),
            (cx + w, cy - w),
            (cx + r, cy - w),
            (cx + r, cy + w),
            (cx + w, cy + w),
            (cx + w, cy + r),
            (cx - w, cy + r),
            (cx - w, cy + w),
            (cx - r, cy + w),
            (cx - r, cy - w),
            (cx - w, cy - w),
        ]
    raise InputError(f"no polygon for shape {shape!r}")


_SUPERSAMPLE = 4  # draw at 4x and downsample: anti-aliased edges without a drawing library


def render(scene: Scene, size: int = 64):
    """Draw ``scene`` as an RGB ``PIL.Image`` of ``size`` x ``size`` pixels on a grey background. Pure."""
    from PIL import Image, ImageDraw

    s = size * _SUPERSAMPLE
    img = Image.new("RGB", (s, s), BACKGROUND)
    draw = ImageDraw.Draw(img)
    for o in scene.objects:
        x, y = _CENTRES[o.position]
        cx, cy, r = (x + o.dx) * s, (y + o.dy) * s, _RADIUS[o.size] * s
        fill = COLOURS[o.colour]
        if o.shape == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        else:
            draw.polygon(_polygon(o.shape, cx, cy, r), fill=fill)
    return img.resize((size, size), Image.Resampling.BOX)
