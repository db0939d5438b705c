"""Scene rendering."""

from __future__ import annotations

import random

import numpy as np

from espnet_speechclip.data.synth import scenes


def test_render_places_the_objects():
    rng = random.Random(2)
    for _ in range(50):
        scene = scenes.sample_scene(rng)
        img = scenes.render(scene)
        assert img.size == (64, 64) and img.mode == "RGB"
        assert img.tobytes() == scenes.render(scene).tobytes()  # pure
        assert img.getpixel((0, 0)) == img.getpixel((63, 63)) == scenes.BACKGROUND
        for o in scene.objects:
            cx, cy = {
                "left": (0.25, 0.5),
                "right": (0.75, 0.5),
                "top": (0.5, 0.25),
                "bottom": (0.5, 0.75),
                "middle": (0.5, 0.5),
            }[o.position]
            pixel = img.getpixel((int((cx + o.dx) * 64), int((cy + o.dy) * 64)))
            assert np.abs(np.subtract(pixel, scenes.COLOURS[o.colour])).max() <= 12, (o, pixel)


# --------------------------------------------------------------------------------------------------
# The generated corpus
# --------------------------------------------------------------------------------------------------
