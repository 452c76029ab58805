"""Whole-photo candidates: each candidate is the photo with its anonymized faces blended back
(veil.faces), carrying every face's release.

A candidate is offered only when every face anonymized in it was (veil.diffusion.verify): one face
that never read as its released values refuses the whole candidate, whose other faces' pixels
would otherwise be shown beside it. A refused candidate has no pixels; its faces keep their
receipts and name the attributes that disagree, so the caller can say why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from veil.diffusion.verify import VerifiedCandidate
from veil.faces import Box, FaceAction, FacePipeline, FaceResult, PreparedPhoto
from veil.faces.photo import Photo


@dataclass(frozen=True)
class ReleasedFace:
    result: FaceResult  # region None for every face of a refused candidate (it has no pixels)
    release: VerifiedCandidate | None  # the crop's release, for an anonymized face

    def to_json(self) -> dict[str, Any]:
        result = self.result
        return {"box": list(result.box.as_tuple()), "score": result.score, "action": result.action.value,
                "region": None if result.region is None else list(result.region.as_tuple()),
                "receipt": None if self.release is None else self.release.receipt.to_dict(),
                "unverified_attributes": [] if self.release is None else list(self.release.disagreeing)}


@dataclass(frozen=True)
class ReleasedPhoto:
    photo: Photo | None  # the candidate's pixels in the input's format (alpha kept); None: refused
    faces: tuple[ReleasedFace, ...]

    @property
    def offered(self) -> bool:
        return self.photo is not None

    @property
    def refusal(self) -> str:
        """Why the candidate is not offered ("" when it is)."""
        if self.offered:
            return ""
        wrong = [(i, f.release) for i, f in enumerate(self.faces) if f.release is not None and not f.release.offered]
        return "; ".join(f"face {i} still read {', '.join(r.disagreeing)} otherwise than released after "
                         f"{r.tries} decode(s)" for i, r in wrong)

    def receipt_json(self) -> dict[str, Any]:
        """What is stored next to the candidate: every face with its receipt."""
        return {"faces": [face.to_json() for face in self.faces]}


def compose_candidates(pipeline: FacePipeline, photo: Photo, prepared: PreparedPhoto | None,
                       crops: Sequence[Sequence[VerifiedCandidate]], candidates: int,
                       seed: int | None) -> list[ReleasedPhoto]:
    """The photo's `candidates` from `crops` ([crop][candidate], one row per crop of `prepared`;
    none for a photo without a face to re-synthesize).

    `prepared` None: the photo is one aligned face of the model's size, its candidate the crop
    itself. Small faces are obscured with noise drawn from `seed` + the candidate's index.
    """
    released = []
    for c in range(candidates):
        chosen = [crop[c] for crop in crops]
        if prepared is None:
            whole = Box(0, 0, photo.pixels.shape[1], photo.pixels.shape[0])
            offered = chosen[0].image is not None
            face = ReleasedFace(FaceResult(whole, 1.0, FaceAction.ANONYMIZED, whole if offered else None), chosen[0])
            pixels = Photo(chosen[0].image.image, photo.format, photo.alpha) if offered else None
            released.append(ReleasedPhoto(pixels, (face,)))
            continue
        if any(release.image is None for release in chosen):
            results = [FaceResult(f.detection.box, f.detection.score, f.action, None) for f in prepared.faces]
            pixels = None
        else:
            composed = pipeline.compose(prepared, [release.image.image for release in chosen],
                                        None if seed is None else seed + c)
            results, pixels = list(composed.faces), Photo(composed.image, photo.format, photo.alpha)
        anonymized = iter(chosen)
        faces = tuple(ReleasedFace(r, next(anonymized) if r.action is FaceAction.ANONYMIZED else None)
                      for r in results)
        released.append(ReleasedPhoto(pixels, faces))
    return released
