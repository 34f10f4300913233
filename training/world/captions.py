"""Captions in varied natural phrasing, drawn per scene: the same scene can be "a small red star
on a striped background", "a photo of a red star." or "there is a tiny red star in the top left".

The colour and shape words are always there (sometimes as "a star that is red"), size, background
and position only sometimes, and sketches are usually called sketches or drawings, so the text
side has to learn which words matter for what the image shows.
"""

from __future__ import annotations

import numpy as np

from training.world.scene import Scene

SIZE_WORDS = {
    "small": ("small", "tiny", "little"),
    "medium": ("medium-sized", "mid-sized", "medium"),
    "large": ("large", "big", "huge"),
}
BACKGROUND_WORDS = {
    "plain": ("plain", "blank", "flat"),
    "striped": ("striped", "stripy", "lined"),
    "checkered": ("checkered", "checkerboard", "chequered"),
    "dotted": ("dotted", "polka-dot", "spotted"),
    "gradient": ("gradient", "shaded", "fading"),
    "noisy": ("noisy", "grainy", "mottled"),
}
MEDIUM_WORDS = {
    "photo": ("photo", "picture", "image", "photograph"),
    "sketch": ("sketch", "drawing", "outline drawing", "doodle"),
    # Held-out styles (never captioned in pretraining; here so every sample has a caption).
    "cartoon": ("cartoon", "clip art", "illustration"),
    "neon": ("neon sign", "glowing outline", "neon drawing"),
    "mosaic": ("mosaic", "pixelated picture", "blocky image"),
}
POSITION_WORDS = {
    "centre": "in the centre",
    "top": "at the top",
    "bottom": "at the bottom",
    "left": "on the left",
    "right": "on the right",
}
# {a} is the article for the word after it; {n} "colour shape"; {sn} "size colour shape".
TEMPLATES = (
    "{a} {sn} on {a} {bg} background",
    "{a} {medium} of {a} {n}.",
    "{a} {medium} of {a} {sn}.",
    "{a} {n}",
    "{n}",
    "{sn}, {where}",
    "{a} {bg} background with {a} {sn} {where}",
    "there is {a} {sn} {where}",
    "{a} {medium} of {a} {sn} on {a} {bg} background",
    "{a} {medium} showing {a} {n}",
    "{a} {shape} that is {colour}",
    "{a} {size} {shape}, coloured {colour}, on {a} {bg} background",
    "{a} {colour} {shape} in the {medium}",
    "{a} {medium} of {a} {colour} {shape} against {a} {bg} background",
)


def caption(scene: Scene, rng: np.random.Generator) -> str:
    """One caption of `scene`, phrased by `rng`."""
    words = {
        "colour": scene.colour,
        "shape": scene.shape,
        "size": _pick(rng, SIZE_WORDS[scene.size]),
        "bg": _pick(rng, BACKGROUND_WORDS[scene.background]),
        "medium": _pick(rng, MEDIUM_WORDS[scene.style]),
        "where": POSITION_WORDS.get(scene.position, f"in the {scene.position} corner"),
    }
    words["n"] = f"{scene.colour} {scene.shape}"
    words["sn"] = f"{words['size']} {words['n']}"
    template = _pick(rng, TEMPLATES)
    if scene.style == "sketch" and "{medium}" not in template and rng.random() < 0.7:
        body = template.replace("there is ", "")
        template = "{a} {medium} of " + ("{a} " + body if body.startswith(("{n}", "{sn}")) else body)
    return _articles(_fill(template, words))


def _fill(template: str, words: dict[str, str]) -> str:
    text = template
    for key in sorted(words, key=len, reverse=True):  # "{sn}" before "{n}"
        text = text.replace("{" + key + "}", words[key])
    return text


def _articles(text: str) -> str:
    """Replace each "{a}" by "a" or "an", as the following word asks."""
    tokens = text.split(" ")
    for i, token in enumerate(tokens):
        if token == "{a}":
            following = tokens[i + 1] if i + 1 < len(tokens) else ""
            tokens[i] = "an" if following[:1].lower() in "aeiou" and following else "a"
    return " ".join(tokens)


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]
