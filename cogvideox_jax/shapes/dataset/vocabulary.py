"""Vocabulary of the synthetic "shapes" text–video dataset: colors, backgrounds, shapes, sizes, directions.

Object colors and backgrounds are chosen so every (object, background) pair is far apart in CIELAB
AND in luma (>= 40 levels, checked in the tests): yuv420p mp4 keeps chroma at half resolution, so a
shape whose edge were carried by chroma alone (e.g. red on mid gray) would be blurred into a blob at
64x64. Backgrounds are therefore dark and every object color is bright. Background names never reuse an object color word,
which keeps caption parsing unambiguous.
"""
from __future__ import annotations

# Object palette, sRGB uint8. "purple" is a saturated magenta-purple (accepted synonym: "magenta").
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (235, 40, 40),
    "green": (40, 185, 50),
    "blue": (50, 100, 245),
    "yellow": (240, 220, 40),
    "purple": (200, 60, 230),
    "cyan": (40, 215, 225),
    "orange": (250, 140, 25),
    "white": (245, 245, 245),
}

# Backgrounds (flat). None of these names is an object-color word.
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (10, 10, 10),
    "gray": (55, 55, 55),
    "navy": (15, 20, 72),
    "brown": (72, 40, 20),
}

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "diamond")

SIZES: tuple[str, ...] = ("small", "large")

DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down", "still")

# Unit displacement per direction in image coordinates (x right, y DOWN): "up" is -y.
DIRECTION_VECTORS: dict[str, tuple[float, float]] = {
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
    "still": (0.0, 0.0),
}

# Object radius range (pixels at a 64-pixel frame; scaled with min(H, W) / 64) per size word.
SIZE_RADIUS_64: dict[str, tuple[float, float]] = {
    "small": (7.5, 9.5),
    "large": (13.0, 16.0),
}

# Net displacement over the clip as a fraction of the frame side (moving clips).
MOTION_FRACTION: tuple[float, float] = (0.30, 0.42)

# Caption wording. Synonyms accepted by the parser (caption word -> canonical value).
COLOR_SYNONYMS: dict[str, str] = {"magenta": "purple", "violet": "purple", "grey": "gray"}
SHAPE_SYNONYMS: dict[str, str] = {"disc": "circle", "disk": "circle", "plus": "cross", "rhombus": "diamond"}
SIZE_WORDS: dict[str, str] = {"small": "small", "tiny": "small", "little": "small",
                              "large": "large", "big": "large", "huge": "large"}
