"""Reading one image file. A long run must survive a bad file, so every failure to decode becomes
an UnreadableImage naming the path, and callers skip the image and report it."""

from __future__ import annotations

import warnings

from PIL import Image


class UnreadableImage(Exception):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def load_rgb(path: str) -> Image.Image:
    """Decode fully (truncated files fail here, not later inside a transform) and convert to RGB."""
    try:
        with warnings.catch_warnings():
            # Palette images with transparency warn on convert; harmless for classification.
            warnings.simplefilter("ignore", UserWarning)
            with Image.open(path) as image:
                image.load()
                return image.convert("RGB")
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        raise UnreadableImage(path, f"{type(error).__name__}: {error}") from error


def is_readable(path: str) -> bool:
    """Whether the file decodes. JPEGs decode at 1/8 scale (libjpeg's DCT scaling still reads the
    whole entropy-coded stream, so truncation is caught) to keep the check several times cheaper."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            with Image.open(path) as image:
                image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
                image.load()
    except Exception:  # any decoder failure means: not usable
        return False
    return True
