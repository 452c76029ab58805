"""The demo's real photo: scikit-image's astronaut (a 512 px portrait, in its wheel) through a
gateway session of its own (create, accept the first candidate offered), written as one strip
`original | candidates | release` with each face's box drawn and what the release charged."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from veil.client import GatewayClient, describe_faces
from veil.errors import VeilError
from veil.faces.photo import decode_photo, encode_photo
from veil.v1 import common_pb2, gateway_pb2
from veil_tools.demo.sheet import BACKGROUND, FONT_SIZE, GAP, HIGHLIGHT, INK, TEXT

SUBJECT = "demo-photo-subject"
# Each anonymized face is one release charged to the subject: level 7 (eps 1 per protected
# attribute and 1 on identity) keeps a few faces well under the demo's cap.
LEVEL = 7
TILE = 256  # a photo's longest side on the strip


@dataclass(frozen=True)
class PlayedPhoto:
    session: gateway_pb2.Session
    original: np.ndarray
    candidates: list[tuple[np.ndarray, list[common_pb2.FaceRelease]]]
    release: gateway_pb2.Release
    released: np.ndarray


def astronaut() -> np.ndarray:
    from skimage import data  # the test photos ship in scikit-image's wheel

    return data.astronaut()


def play_photo(client: GatewayClient, pixels: np.ndarray, *, protect: list[str], candidates: int, seed: int,
               say: Callable[[str], None]) -> PlayedPhoto:
    image = client.upload_image(encode_photo(pixels, "PNG"), subject_id=SUBJECT)
    session = client.create_session(SUBJECT, image, protect=protect, level=LEVEL, candidates=candidates, seed=seed)
    round_ = session.latest_round
    shown = [(decode_photo(client.download(c.image.object)).pixels, list(c.faces)) for c in round_.candidates]
    if not round_.candidates:
        raise VeilError("every candidate of the photo was refused: "
                        + "; ".join(f"{r.index}: {r.reason}" for r in round_.refused))
    chosen = round_.candidates[0]
    say(f"photo session {session.session_id}: {image.width}x{image.height}, {describe_faces(chosen.faces)}")
    response = client.feedback(session.session_id, "accept", candidate=chosen.index)
    release = response.release
    say(f"accepted the photo's candidate {chosen.index}: {len(release.faces)} face(s) charged eps "
        f"{release.charged_epsilon:.3f}, composed {release.ledger.composed_epsilon:.3f} of cap {release.ledger.cap:g}")
    released = decode_photo(client.download(release.image.object)).pixels
    return PlayedPhoto(response.session, pixels, shown, release, released)


def photo_strip(played: PlayedPhoto) -> Image.Image:
    """original | each candidate (face boxes drawn) | the release, with captions."""
    font = ImageFont.load_default(FONT_SIZE)
    tiles = [("original", played.original, [])]
    tiles += [(f"candidate {k}", pixels, faces) for k, (pixels, faces) in enumerate(played.candidates)]
    tiles.append((f"release: {len(played.release.faces)} face(s), eps {played.release.charged_epsilon:.2f}",
                  played.released, list(played.release.faces)))
    sheet = Image.new("RGB", (GAP + len(tiles) * (TILE + GAP), GAP + TEXT + TILE + GAP), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for i, (label, pixels, faces) in enumerate(tiles):
        x = GAP + i * (TILE + GAP)
        draw.text((x, GAP), label, fill=INK, font=font)
        height, width = pixels.shape[:2]
        scale = TILE / max(height, width)
        sheet.paste(Image.fromarray(pixels).resize((round(width * scale), round(height * scale)),
                                                   Image.Resampling.LANCZOS), (x, GAP + TEXT))
        for face in faces:
            box = [x + face.box.left * scale, GAP + TEXT + face.box.top * scale,
                   x + face.box.right * scale, GAP + TEXT + face.box.bottom * scale]
            draw.rectangle(box, outline=HIGHLIGHT, width=2)
    return sheet


def photo_report(played: PlayedPhoto) -> dict[str, Any]:
    release = played.release
    return {"session_id": played.session.session_id, "subject_id": SUBJECT, "level": LEVEL,
            "size": list(played.original.shape[1::-1]),
            "faces": [{"box": [f.box.left, f.box.top, f.box.right, f.box.bottom], "score": round(f.score, 3),
                       "action": common_pb2.FaceAction.Name(f.action).removeprefix("FACE_ACTION_").lower(),
                       "receipt_id": f.receipt.receipt_id} for f in release.faces],
            "charged_epsilon": release.charged_epsilon, "composed_epsilon": release.ledger.composed_epsilon}
