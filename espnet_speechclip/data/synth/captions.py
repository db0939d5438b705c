"""Captions of the spoken-shapes scenes: paraphrase templates over a small vocabulary.

Every caption word is a single CLIP BPE token, so a caption's words and CLIP's subwords coincide (the
cascaded model's keywords can be checked against them).
"""

from __future__ import annotations

import random
from typing import List, Tuple

from espnet_speechclip.data.synth.scenes import (
    _INVERSE,
    COLOURS,
    POSITION_PHRASES,
    RELATIONS,
    SHAPES,
    SIZES,
    Scene,
)

# Templates: {z} size, {c} colour, {s} shape, {p} position phrase, {r} relation; A / B the two objects.
_ONE_TEMPLATES = (
    "a {z} {c} {s}",
    "there is a {z} {c} {s}",
    "a {c} {s} {p}",
    "a {z} {c} {s} {p}",
    "there is a {c} {s} {p}",
    "a picture of a {c} {s}",
)
_TWO_TEMPLATES = (
    "a {cA} {sA} {r} a {cB} {sB}",
    "a {zA} {cA} {sA} {r} a {zB} {cB} {sB}",
    "there is a {cA} {sA} {r} a {cB} {sB}",
    "a {cA} {sA} and a {cB} {sB}",
    "a {cA} {sA} {pA} and a {cB} {sB} {pB}",
    "a picture of a {zA} {cA} {sA} {r} a {zB} {cB} {sB}",
)
CAPTION_TEMPLATES = _ONE_TEMPLATES + _TWO_TEMPLATES
# Every word any caption can contain; each is a single CLIP BPE token (checked in the tests).
VOCABULARY: Tuple[str, ...] = tuple(
    sorted(
        {w for t in CAPTION_TEMPLATES for w in t.split() if not w.startswith("{")}
        | {"an"}
        | set(COLOURS)
        | set(SHAPES)
        | set(SIZES)
        | {w for phrase in (*POSITION_PHRASES.values(), *RELATIONS) for w in phrase.split()}
    )
)


def captions(scene: Scene, rng: random.Random, n: int) -> List[str]:
    """``n`` captions of ``scene``, each from a different template while there are enough of them.

    For two objects the order they are mentioned in is drawn per caption (the relation is inverted to
    match), so "a red circle left of a blue star" and "a blue star right of a red circle" both occur.
    """
    templates = _ONE_TEMPLATES if len(scene.objects) == 1 else _TWO_TEMPLATES
    chosen = rng.sample(templates, n) if n <= len(templates) else [rng.choice(templates) for _ in range(n)]
    out = []
    for t in chosen:
        if len(scene.objects) == 1:
            o = scene.objects[0]
            text = t.format(z=o.size, c=o.colour, s=o.shape, p=POSITION_PHRASES[o.position])
        else:
            a, b = scene.objects
            rel = scene.relation
            if rng.random() < 0.5:
                a, b, rel = b, a, _INVERSE[rel]
            text = t.format(
                zA=a.size,
                cA=a.colour,
                sA=a.shape,
                pA=POSITION_PHRASES[a.position],
                zB=b.size,
                cB=b.colour,
                sB=b.shape,
                pB=POSITION_PHRASES[b.position],
                r=rel,
            )
        out.append(_fix_articles(text))
    return out


def _fix_articles(text: str) -> str:
    """ "a orange star" -> "an orange star": espeak says what it reads, so the caption should be English."""
    words = text.split()
    for i in range(len(words) - 1):
        if words[i] == "a" and words[i + 1][0] in "aeiou":
            words[i] = "an"
    return " ".join(words)
