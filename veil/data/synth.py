"""Seeded synthetic faces written in the CelebA on-disk format.

No face data set can be downloaded where this project is built, so tests, the demo model and the
measurements use faces drawn here. What matters for the measurements is built in on purpose:

* identities: fixed per-identity geometry (face shape, eye spacing/size/colour, nose, brows,
  mouth, ears, a mole) and style (hair style and shade, skin tone), so re-identification is real;
* CelebA-named binary attributes with realistic correlations (beards only on men, heavy make-up
  mostly on women, blond hair more often on women and pale skin, grey hair only when not young),
  so leakage through correlated features is a risk to measure, not an impossibility;
* per-image pose, lighting, background and expression, so an image is not its identity.

The sampling (`sample_identity`, `sample_appearance`) is separate from the drawing (`render`), so a
face can be re-drawn with one attribute changed (`render(identity.with_attributes(...), ...)`) -
the ground truth of what an attribute edit should look like.

Every random draw comes from a generator seeded by (seed, identity[, image]); the same seed gives
the same bytes, and identities can be generated in any order or in parallel.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from veil.data.celeba import write_annotations
from veil.errors import InvalidArgument

ATTRIBUTES: tuple[str, ...] = (
    "Male",
    "Young",
    "Smiling",
    "Eyeglasses",
    "Pale_Skin",
    "No_Beard",
    "Blond_Hair",
    "Black_Hair",
    "Wearing_Hat",
    "Heavy_Makeup",
)
"""The attributes the generator labels, in column order (a subset of CelebA's 40 names)."""

GENERATOR_VERSION = "synth-faces-1"
"""Changes whenever the drawing changes, so a model card can name the data it was trained on."""

SUPERSAMPLE = 4
"""Faces are drawn at SUPERSAMPLE x the output size and downsampled, for anti-aliased edges."""

_HAIR_COLOURS = {
    "black": (28, 24, 22),
    "blond": (222, 190, 110),
    "brown": (104, 66, 38),
    "grey": (170, 168, 165),
}
_IRIS_COLOURS = ((70, 110, 170), (60, 120, 80), (100, 65, 35), (40, 30, 25), (120, 110, 80))
_CLOTHES = ((40, 60, 120), (150, 40, 40), (50, 110, 70), (200, 200, 200), (60, 60, 60), (190, 150, 60))
_HAT_COLOURS = ((180, 40, 40), (40, 40, 45), (30, 80, 160), (200, 170, 90), (90, 130, 60))


@dataclass(frozen=True)
class Identity:
    """Everything fixed for one person: geometry, style and the identity-level attributes."""

    identity_id: int
    male: bool
    young: bool
    pale: bool
    hair: str  # key of _HAIR_COLOURS
    beard: bool
    makeup: bool
    glasses_wearer: bool
    face_w: float
    face_h: float
    jaw: float
    skin: tuple[int, int, int]
    hair_shade: float
    hair_style: int
    eye_spacing: float
    eye_y: float
    eye_size: float
    iris: tuple[int, int, int]
    brow_thickness: float
    brow_tilt: float
    nose_len: float
    nose_w: float
    mouth_w: float
    mouth_y: float
    ear: float
    mole: tuple[float, float] | None
    beard_style: int

    def with_attributes(self, **changes: bool) -> Identity:
        """A copy with identity-level attributes changed, keeping the geometry.

        Accepts the CelebA names this identity carries (Male, Young, Pale_Skin, No_Beard,
        Blond_Hair, Black_Hair, Heavy_Makeup); consistency rules are applied (a woman has no beard).
        """
        fields: dict[str, object] = {}
        hair = self.hair
        for name, value in changes.items():
            if name == "Male":
                fields["male"] = value
            elif name == "Young":
                fields["young"] = value
            elif name == "Pale_Skin":
                fields["pale"] = value
            elif name == "No_Beard":
                fields["beard"] = not value
            elif name == "Heavy_Makeup":
                fields["makeup"] = value
            elif name == "Blond_Hair":
                hair = "blond" if value else ("brown" if hair == "blond" else hair)
            elif name == "Black_Hair":
                hair = "black" if value else ("brown" if hair == "black" else hair)
            else:
                raise KeyError(f"not an identity-level attribute: {name}")
        fields["hair"] = hair
        out = dataclasses.replace(self, **fields)  # type: ignore[arg-type]
        if not out.male and out.beard:
            out = dataclasses.replace(out, beard=False)
        if out.pale != self.pale:
            out = dataclasses.replace(out, skin=_skin_tone(out.pale, _tone_of(self)))
        return out


@dataclass(frozen=True)
class Appearance:
    """Everything that varies from one photo of a person to the next."""

    smiling: bool
    smile: float
    eyeglasses: bool
    hat: bool
    hat_colour: tuple[int, int, int]
    rotation: float
    shift: tuple[float, float]
    scale: float
    yaw: float
    light_angle: float
    light_strength: float
    brightness: float
    background: tuple[tuple[int, int, int], tuple[int, int, int]]
    background_angle: float
    eye_open: float
    clothes: tuple[int, int, int]


def _tone_of(identity: Identity) -> float:
    # The skin tone parameter is recoverable from the colour: keep it when toggling Pale_Skin.
    return float(np.clip((225 - identity.skin[0]) / 115, 0, 1))


def _skin_tone(pale: bool, tone: float) -> tuple[int, int, int]:
    if pale:
        base = np.array([242, 222, 210]) - tone * np.array([12, 14, 14])
    else:
        light, dark = np.array([222, 178, 140]), np.array([112, 74, 52])
        base = light + tone * (dark - light)
    return tuple(int(v) for v in base)  # type: ignore[return-value]


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


def sample_identity(seed: int, identity_id: int) -> Identity:
    """The person `identity_id` of the data set seeded by `seed`."""
    r = _rng(seed, identity_id, 0)
    male = r.random() < 0.45
    young = r.random() < 0.72
    pale = r.random() < (0.30 if not male else 0.18)
    if not young and r.random() < 0.55:
        hair = "grey"
    else:
        p_blond = 0.30 if not male else 0.08
        p_blond += 0.15 if pale else 0.0
        u = r.random()
        hair = "blond" if u < p_blond else ("black" if u < p_blond + 0.35 else "brown")
    beard = male and r.random() < 0.38
    makeup = (r.random() < 0.62) if not male else (r.random() < 0.02)
    tone = float(r.random())
    return Identity(
        identity_id=identity_id,
        male=male,
        young=young,
        pale=pale,
        hair=hair,
        beard=beard,
        makeup=makeup,
        glasses_wearer=r.random() < 0.22,
        face_w=float(r.uniform(0.48, 0.60)),
        face_h=float(r.uniform(0.60, 0.72)),
        jaw=float(r.uniform(0.2, 1.0)),
        skin=_skin_tone(pale, tone),
        hair_shade=float(r.uniform(0.8, 1.2)),
        hair_style=int(r.integers(0, 3)),
        eye_spacing=float(r.uniform(0.17, 0.25)),
        eye_y=float(r.uniform(0.41, 0.47)),
        eye_size=float(r.uniform(0.038, 0.058)),
        iris=_IRIS_COLOURS[int(r.integers(0, len(_IRIS_COLOURS)))],
        brow_thickness=float(r.uniform(0.012, 0.02)),
        brow_tilt=float(r.uniform(-0.35, 0.35)),
        nose_len=float(r.uniform(0.08, 0.14)),
        nose_w=float(r.uniform(0.04, 0.08)),
        mouth_w=float(r.uniform(0.13, 0.2)),
        mouth_y=float(r.uniform(0.69, 0.74)),
        ear=float(r.uniform(0.04, 0.065)),
        mole=(float(r.uniform(-0.17, 0.17)), float(r.uniform(0.5, 0.72))) if r.random() < 0.5 else None,
        beard_style=int(r.integers(0, 2)),
    )


def sample_appearance(seed: int, identity: Identity, image_index: int) -> Appearance:
    """Photo `image_index` of `identity`: pose, light, background, expression, accessories."""
    r = _rng(seed, identity.identity_id, 1 + image_index)
    bg1 = tuple(int(v) for v in r.integers(30, 230, size=3))
    bg2 = tuple(int(v) for v in np.clip(np.array(bg1) + r.integers(-60, 60, size=3), 0, 255))
    smiling = r.random() < 0.48
    return Appearance(
        smiling=smiling,
        smile=float(r.uniform(0.6, 1.0) if smiling else r.uniform(-0.15, 0.15)),
        eyeglasses=r.random() < (0.75 if identity.glasses_wearer else 0.03),
        hat=r.random() < 0.12,
        hat_colour=_HAT_COLOURS[int(r.integers(0, len(_HAT_COLOURS)))],
        rotation=float(r.uniform(-10, 10)),
        shift=(float(r.uniform(-0.04, 0.04)), float(r.uniform(-0.03, 0.03))),
        scale=float(r.uniform(0.93, 1.07)),
        yaw=float(r.uniform(-0.035, 0.035)),
        light_angle=float(r.uniform(0, 2 * math.pi)),
        light_strength=float(r.uniform(0.0, 0.3)),
        brightness=float(r.uniform(0.88, 1.12)),
        background=(bg1, bg2),  # type: ignore[arg-type]
        background_angle=float(r.uniform(0, 2 * math.pi)),
        eye_open=float(r.uniform(0.65, 1.0)),
        clothes=_CLOTHES[int(r.integers(0, len(_CLOTHES)))],
    )


def attributes_of(identity: Identity, look: Appearance) -> dict[str, bool]:
    """The CelebA labels of one rendered image."""
    return {
        "Male": identity.male,
        "Young": identity.young,
        "Smiling": look.smiling,
        "Eyeglasses": look.eyeglasses,
        "Pale_Skin": identity.pale,
        "No_Beard": not identity.beard,
        "Blond_Hair": identity.hair == "blond",
        "Black_Hair": identity.hair == "black",
        "Wearing_Hat": look.hat,
        "Heavy_Makeup": identity.makeup,
    }


def _shade(colour: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(int(np.clip(c * factor, 0, 255)) for c in colour)  # type: ignore[return-value]


def _gradient(size: int, angle: float) -> np.ndarray:
    """A [-1, 1] ramp across the image in direction `angle`."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1) * 2 - 1
    return (xs * math.cos(angle) + ys * math.sin(angle)) / math.sqrt(2)


class _Canvas:
    """Drawing in face coordinates: x in [-0.5, 0.5] from the face centre, y in [0, 1] from the top."""

    def __init__(self, size: int, yaw: float) -> None:
        self.size = size
        self.yaw = yaw
        self.image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        self.draw = ImageDraw.Draw(self.image)

    def xy(self, x: float, y: float, depth: float = 1.0) -> tuple[float, float]:
        # Features nearer the viewer move more with yaw: a cheap head turn.
        return ((0.5 + x + self.yaw * depth) * self.size, y * self.size)

    def box(self, cx: float, cy: float, w: float, h: float, depth: float = 1.0) -> list[float]:
        x0, y0 = self.xy(cx - w / 2, cy - h / 2, depth)
        x1, y1 = self.xy(cx + w / 2, cy + h / 2, depth)
        return [x0, y0, x1, y1]

    def px(self, v: float) -> int:
        return max(1, round(v * self.size))


def _draw_hair_back(c: _Canvas, f: Identity, colour: tuple[int, int, int]) -> None:
    if f.male:
        return
    top = 0.5 - f.face_h / 2 - 0.05
    length = (0.98, 0.86, 0.74)[f.hair_style]
    width = f.face_w + 0.16
    c.draw.rounded_rectangle(c.box(0, (top + length) / 2, width, length - top, 0.2),
                             radius=c.px(0.12), fill=colour)


def _draw_body(c: _Canvas, f: Identity, look: Appearance) -> None:
    neck_w = f.face_w * (0.55 if f.male else 0.42)
    c.draw.rectangle(c.box(0, 0.86, neck_w, 0.22, 0.3), fill=_shade(f.skin, 0.85))
    shoulders = 0.95 if f.male else 0.8
    c.draw.ellipse(c.box(0, 1.12, shoulders, 0.42, 0.1), fill=look.clothes)


def _face_outline(c: _Canvas, f: Identity, grow: float = 0.0) -> list[tuple[float, float]]:
    """The face contour: an ellipse on top, a superellipse below (squarer and wider for men)."""
    a, b = f.face_w / 2 + grow, f.face_h / 2 + grow
    square = 2.0 + (1.4 * f.jaw if f.male else 0.4 * f.jaw)
    chin = 1.0 if f.male else 0.9
    points = []
    for k in range(48):
        t = 2 * math.pi * k / 48
        ct, st = math.cos(t), math.sin(t)
        if st > 0:  # lower half
            x = a * chin * math.copysign(abs(ct) ** (2 / square), ct)
            y = b * abs(st) ** (2 / square)
        else:
            x, y = a * ct, b * st
        points.append(c.xy(x, 0.5 + y, 0.6))
    return points


def _draw_face(c: _Canvas, f: Identity) -> None:
    for side in (-1, 1):  # ears
        c.draw.ellipse(c.box(side * f.face_w / 2, f.eye_y + 0.05, f.ear * 1.4, f.ear * 2.4, 0.2),
                       fill=_shade(f.skin, 0.9))
    c.draw.polygon(_face_outline(c, f), fill=f.skin)


def _draw_eyes(c: _Canvas, f: Identity, look: Appearance) -> None:
    h = f.eye_size * (0.62 * look.eye_open)
    for side in (-1, 1):
        ex = side * f.eye_spacing / 2
        if f.makeup:
            c.draw.ellipse(c.box(ex, f.eye_y - 0.012, f.eye_size * 2.4, f.eye_size * 1.5), fill=(120, 70, 150))
        c.draw.ellipse(c.box(ex, f.eye_y, f.eye_size * 1.9, max(h * 1.6, 0.012)), fill=(245, 245, 240))
        iris = f.eye_size * 0.95
        c.draw.ellipse(c.box(ex + c.yaw * 0.5, f.eye_y, iris, min(iris, max(h * 1.6, 0.012))), fill=f.iris)
        c.draw.ellipse(c.box(ex + c.yaw * 0.5, f.eye_y, iris * 0.4, min(iris * 0.4, h)), fill=(10, 10, 10))
        # Brows: men's thicker; tilt is identity.
        bt = f.brow_thickness * (1.5 if f.male else 1.0)
        by = f.eye_y - f.eye_size * 1.3 - 0.02
        inner = c.xy(side * (f.eye_spacing / 2 - f.eye_size * 1.1), by + side * 0 + f.brow_tilt * 0.02)
        outer = c.xy(side * (f.eye_spacing / 2 + f.eye_size * 1.2), by - f.brow_tilt * 0.02)
        c.draw.line([inner, outer], fill=_shade(_HAIR_COLOURS[f.hair], 0.55 * f.hair_shade), width=c.px(bt))


def _draw_nose_mouth(c: _Canvas, f: Identity, look: Appearance) -> None:
    tip = f.eye_y + 0.02 + f.nose_len
    shadow = _shade(f.skin, 0.75)
    c.draw.line([c.xy(0.012, tip - f.nose_len * 0.55, 1.2), c.xy(0.018, tip, 1.3)], fill=shadow, width=c.px(0.01))
    c.draw.ellipse(c.box(0, tip, f.nose_w, 0.026, 1.3), fill=_shade(f.skin, 0.82))
    for side in (-1, 1):
        c.draw.ellipse(c.box(side * f.nose_w * 0.28, tip + 0.004, 0.014, 0.01, 1.3), fill=_shade(f.skin, 0.55))
    lips = (190, 30, 50) if f.makeup else _shade(f.skin, 0.7)
    w = f.mouth_w * (1.12 if look.smiling else 1.0)
    y = f.mouth_y
    curve = look.smile * 0.045
    if look.smiling:
        # Open smile: a lower arc filled with teeth, lips around it.
        box = c.box(0, y - 0.005, w, 0.02 + curve * 1.6)
        c.draw.chord(box, 0, 180, fill=lips)
        inner = c.box(0, y - 0.004, w * 0.8, 0.012 + curve * 1.1)
        c.draw.chord(inner, 0, 180, fill=(250, 250, 245))
    else:
        left, right = c.xy(-w / 2, y - curve * 0.3), c.xy(w / 2, y - curve * 0.3)
        mid = c.xy(0, y + curve * 0.5)
        c.draw.line([left, mid, right], fill=lips, width=c.px(0.014 if f.makeup else 0.01), joint="curve")
    if f.makeup:
        for side in (-1, 1):
            c.draw.ellipse(c.box(side * f.face_w * 0.3, f.eye_y + 0.1, 0.07, 0.04), fill=(225, 120, 130, 140))


def _draw_age(c: _Canvas, f: Identity) -> None:
    if f.young:
        return
    line = _shade(f.skin, 0.62)
    fy = 0.5 - f.face_h / 2
    for k in range(3):
        y = fy + 0.07 + k * 0.022
        c.draw.line([c.xy(-f.face_w * 0.25, y), c.xy(f.face_w * 0.25, y)], fill=line, width=c.px(0.006))
    for side in (-1, 1):  # nasolabial folds
        c.draw.line([c.xy(side * f.nose_w * 0.9, f.eye_y + f.nose_len + 0.01),
                     c.xy(side * (f.mouth_w / 2 + 0.02), f.mouth_y + 0.03)], fill=line, width=c.px(0.007))


def _draw_beard(c: _Canvas, f: Identity) -> None:
    if not f.beard:
        return
    colour = _shade(_HAIR_COLOURS[f.hair], 0.7 * f.hair_shade)
    bottom = 0.5 + f.face_h / 2 + 0.01
    if f.beard_style == 0:  # full beard: the lower face contour, mouth left free
        lower = [p for p in _face_outline(c, f, grow=0.01) if p[1] > c.xy(0, 0.5 + 0.04)[1]]
        c.draw.polygon(lower, fill=colour)
        c.draw.ellipse(c.box(0, f.mouth_y, f.mouth_w * 1.25, 0.045), fill=f.skin)
    else:  # goatee and moustache
        c.draw.ellipse(c.box(0, (f.mouth_y + bottom) / 2 + 0.01, f.mouth_w, bottom - f.mouth_y), fill=colour)
    c.draw.rectangle(c.box(0, f.mouth_y - 0.028, f.mouth_w * 1.1, 0.022), fill=colour)


def _draw_hair_front(c: _Canvas, f: Identity, colour: tuple[int, int, int]) -> None:
    top = 0.5 - f.face_h / 2
    if f.male:
        depth = (0.07, 0.10, 0.05)[f.hair_style]
        c.draw.chord(c.box(0, top + 0.06, f.face_w + 0.04, 0.2 + depth, 0.5), 180, 360, fill=colour)
        c.draw.rectangle(c.box(0, top + 0.06, f.face_w + 0.04, 0.035, 0.5), fill=colour)
    else:
        c.draw.chord(c.box(0, top + 0.07, f.face_w + 0.1, 0.26, 0.5), 180, 360, fill=colour)
        if f.hair_style == 1:  # fringe
            c.draw.rectangle(c.box(0, top + 0.08, f.face_w * 0.8, 0.06, 0.5), fill=colour)


def _draw_glasses(c: _Canvas, f: Identity) -> None:
    frame = (25, 25, 30)
    r = f.eye_size * 1.35
    width = c.px(0.011)
    for side in (-1, 1):
        ex = side * f.eye_spacing / 2
        c.draw.ellipse(c.box(ex, f.eye_y, r * 2, r * 1.6), outline=frame, width=width)
        c.draw.line([c.xy(side * (f.eye_spacing / 2 + r), f.eye_y - 0.005),
                     c.xy(side * (f.face_w / 2 + 0.005), f.eye_y - 0.01, 0.3)], fill=frame, width=width)
    c.draw.line([c.xy(-f.eye_spacing / 2 + r, f.eye_y - 0.005), c.xy(f.eye_spacing / 2 - r, f.eye_y - 0.005)],
                fill=frame, width=width)


def _draw_hat(c: _Canvas, f: Identity, look: Appearance) -> None:
    top = 0.5 - f.face_h / 2
    c.draw.chord(c.box(0, top + 0.05, f.face_w + 0.06, 0.34, 0.4), 180, 360, fill=look.hat_colour)
    c.draw.rounded_rectangle(c.box(0, top + 0.05, f.face_w + 0.22, 0.05, 0.4), radius=c.px(0.02),
                             fill=_shade(look.hat_colour, 0.75))


def render(identity: Identity, look: Appearance, size: int = 64) -> Image.Image:
    """Draw one face photo as an RGB image of `size` x `size`."""
    big = size * SUPERSAMPLE
    grad = _gradient(big, look.background_angle)[..., None]
    bg0, bg1 = (np.array(c, dtype=np.float32) for c in look.background)
    background = bg0 + (grad + 1) / 2 * (bg1 - bg0)

    c = _Canvas(big, look.yaw)
    hair = _shade(_HAIR_COLOURS[identity.hair], identity.hair_shade)
    _draw_hair_back(c, identity, hair)
    _draw_body(c, identity, look)
    _draw_face(c, identity)
    _draw_age(c, identity)
    _draw_eyes(c, identity, look)
    _draw_nose_mouth(c, identity, look)
    _draw_beard(c, identity)
    if identity.mole is not None:
        mx, my = identity.mole
        c.draw.ellipse(c.box(mx, my, 0.022, 0.022), fill=_shade(identity.skin, 0.45))
    if look.hat:
        _draw_hat(c, identity, look)
    else:
        _draw_hair_front(c, identity, hair)
    if look.eyeglasses:
        _draw_glasses(c, identity)

    # Pose: rotate/scale/shift the person layer only; the background stays put.
    layer = c.image.filter(ImageFilter.GaussianBlur(radius=SUPERSAMPLE * 0.3))
    layer = layer.rotate(look.rotation, resample=Image.BICUBIC, center=(big / 2, big * 0.55))
    scaled = round(big * look.scale)
    layer = layer.resize((scaled, scaled), Image.BICUBIC)
    canvas = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    offset = (round((big - scaled) / 2 + look.shift[0] * big), round((big - scaled) / 2 + look.shift[1] * big))
    canvas.paste(layer, offset, layer)

    person = np.asarray(canvas, dtype=np.float32)
    alpha = person[..., 3:4] / 255.0
    pixels = person[..., :3] * alpha + background * (1 - alpha)
    light = 1.0 + look.light_strength * _gradient(big, look.light_angle)[..., None]
    pixels = np.clip(pixels * light * look.brightness, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB").resize((size, size), Image.LANCZOS)


@dataclass(frozen=True)
class SyntheticSample:
    filename: str
    identity_id: int
    image_index: int
    image: Image.Image
    attributes: dict[str, bool]


def iter_samples(seed: int, identities: int, per_identity: int, size: int = 64,
                 first_identity: int = 0) -> Iterator[SyntheticSample]:
    """Images in CelebA order: identity by identity, `per_identity` photos each."""
    for k, identity_id in enumerate(range(first_identity, first_identity + identities)):
        person = sample_identity(seed, identity_id)
        for j in range(per_identity):
            look = sample_appearance(seed, person, j)
            number = k * per_identity + j + 1
            yield SyntheticSample(
                filename=f"{number:06d}.png",
                identity_id=identity_id,
                image_index=j,
                image=render(person, look, size),
                attributes=attributes_of(person, look),
            )


def _render_identity(task: tuple[int, int, int, int, int, str]) -> list[tuple[str, int, list[int]]]:
    seed, identity_id, first_number, per_identity, size, folder = task
    person = sample_identity(seed, identity_id)
    rows = []
    for j in range(per_identity):
        look = sample_appearance(seed, person, j)
        name = f"{first_number + j:06d}.png"
        render(person, look, size).save(Path(folder) / name, format="PNG", compress_level=6)
        labels = attributes_of(person, look)
        rows.append((name, identity_id, [1 if labels[a] else -1 for a in ATTRIBUTES]))
    return rows


def generate_dataset(out_dir: str | Path, identities: int, per_identity: int, seed: int, size: int = 64,
                     test_per_identity: int | None = None, workers: int | None = None) -> Path:
    """Write a synthetic data set in the CelebA format and return its root.

    The last `test_per_identity` photos of every identity (default a fifth, at least one) are the
    test split (2); the rest are train (0). Images are written first and the annotation files
    last, so an interrupted run leaves no data set that loads.
    """
    if identities < 1 or per_identity < 1:
        raise InvalidArgument("identities and per_identity must be >= 1")
    if size < 16 or size > 512:
        raise InvalidArgument(f"size must be in 16..512, got {size}")
    held_out = max(1, per_identity // 5) if test_per_identity is None else test_per_identity
    if not 0 <= held_out < per_identity:
        raise InvalidArgument(f"test_per_identity must be in 0..{per_identity - 1}, got {held_out}")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    tasks = [(seed, i, i * per_identity + 1, per_identity, size, str(root)) for i in range(identities)]
    workers = workers or min(len(tasks), os.cpu_count() or 1)
    if workers > 1:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            chunks = pool.map(_render_identity, tasks, chunksize=max(1, len(tasks) // (workers * 8)))
    else:
        chunks = [_render_identity(t) for t in tasks]
    rows = [row for chunk in chunks for row in chunk]
    partition = [2 if (k % per_identity) >= per_identity - held_out else 0 for k in range(len(rows))]
    write_annotations(root, [r[0] for r in rows], ATTRIBUTES, np.array([r[2] for r in rows]),
                      [r[1] for r in rows], partition)
    return root
