"""The demo's contact sheet: the original, each round's candidates (one row per round, labelled
with its budget and the owner's answer, each candidate captioned) and the accepted release, the
chosen candidate framed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

TILE = 128  # pixels per image on the sheet (upscaled without smoothing: the pixels stay visible)
GAP = 12
TEXT = 18  # height of a label line
FONT_SIZE = 13
BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
HIGHLIGHT = (214, 39, 40)


@dataclass(frozen=True)
class SheetRound:
    label: str  # e.g. "round 2: Male eps 1, identity eps 1, rho 0.6 -> less privacy"
    candidates: Sequence[np.ndarray]  # uint8 RGB (H, W, 3)
    captions: Sequence[str] = ()  # one line under each candidate, e.g. its released values


def _tile(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(pixels, "RGB").resize((TILE, TILE), Image.Resampling.NEAREST)


def contact_sheet(title: str, original: np.ndarray, rounds: Sequence[SheetRound],
                  accepted: np.ndarray, accepted_round: int, accepted_candidate: int) -> Image.Image:
    """original | candidates per round | accepted. `accepted_round` is 0-based in `rounds`."""
    if not rounds:
        raise ValueError("a contact sheet needs at least one round")
    font = ImageFont.load_default(FONT_SIZE)
    width_in_tiles = 2 + max(len(r.candidates) for r in rounds)  # original, candidates, accepted
    row_height = TEXT + TILE + TEXT + GAP
    width = GAP + width_in_tiles * (TILE + GAP) + GAP
    height = GAP + TEXT + GAP + len(rounds) * row_height
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    draw.text((GAP, GAP), title, fill=INK, font=font)
    top = GAP + TEXT + GAP

    def column(i: int) -> int:
        return GAP + i * (TILE + GAP)

    draw.text((column(0), top), "original", fill=INK, font=font)
    sheet.paste(_tile(original), (column(0), top + TEXT))
    last = width_in_tiles - 1
    for r, round_ in enumerate(rounds):
        y = top + r * row_height
        draw.text((column(1), y), round_.label, fill=INK, font=font)
        for k, pixels in enumerate(round_.candidates):
            x = column(1 + k)
            sheet.paste(_tile(pixels), (x, y + TEXT))
            draw.text((x + 3, y + TEXT + 2), str(k), fill=HIGHLIGHT, font=font)
            if k < len(round_.captions):
                draw.text((x, y + TEXT + TILE + 3), round_.captions[k], fill=INK, font=font)
            if r == accepted_round and k == accepted_candidate:
                draw.rectangle((x - 4, y + TEXT - 4, x + TILE + 3, y + TEXT + TILE + 3),
                               outline=HIGHLIGHT, width=3)
        if r == accepted_round:
            draw.text((column(last), y), "accepted", fill=HIGHLIGHT, font=font)
            sheet.paste(_tile(accepted), (column(last), y + TEXT))
    return sheet
