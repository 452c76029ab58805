"""Whole photos in the anonymizer: each input's faces found (or taken from the caller) and
aligned, every crop of the request anonymized in one batch (batcher.py), and each candidate
composed back into the whole photo (veil.diffusion.photos).

dlib's detector and landmark model are used from one dedicated thread per process (`PhotoFaces`),
never concurrently. A photo of exactly the model's size with no boxes given is one aligned face
(as before whole photos): its candidate is the anonymized crop itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from veil.diffusion.convert import receipt_to_proto
from veil.diffusion.photos import ReleasedFace, ReleasedPhoto, compose_candidates
from veil.diffusion.verify import VerifiedCandidate
from veil.errors import InvalidArgument
from veil.faces import Box, FaceAction, FacePipeline, PreparedPhoto
from veil.faces.photo import Photo
from veil.v1 import anonymizer_pb2, common_pb2

ACTIONS = {FaceAction.ANONYMIZED: common_pb2.FACE_ACTION_ANONYMIZED, FaceAction.KEPT: common_pb2.FACE_ACTION_KEPT,
           FaceAction.OBSCURED: common_pb2.FACE_ACTION_OBSCURED}
MAX_BOXES = 256  # per image: a bound on what one request may make the service align and blend


@dataclass(frozen=True)
class FaceRequest:
    """How the caller wants one image's faces handled: its own boxes (None: detect) and the
    faces to keep (indices or boxes)."""

    boxes: tuple[Box, ...] | None = None
    keep: tuple[int | Box, ...] = ()


@dataclass(frozen=True)
class PlannedPhoto:
    photo: Photo
    prepared: PreparedPhoto | None  # None: a model-size crop, anonymized whole

    @property
    def crops(self) -> list[np.ndarray]:
        return [self.photo.pixels] if self.prepared is None else self.prepared.crops


def _box(message: common_pb2.FaceBox) -> Box:
    return Box(message.left, message.top, message.right, message.bottom)


def face_requests(request: anonymizer_pb2.AnonymizeRequest, images: int) -> list[FaceRequest]:
    """One FaceRequest per image (InvalidArgument when `faces` has neither 0 nor one per image)."""
    if not request.faces:
        return [FaceRequest()] * images
    if len(request.faces) != images:
        raise InvalidArgument(f"faces has {len(request.faces)} entries; give none or one per image ({images})")
    wanted = []
    for index, faces in enumerate(request.faces):
        if len(faces.boxes) > MAX_BOXES or len(faces.keep_indices) + len(faces.keep_boxes) > MAX_BOXES:
            raise InvalidArgument(f"image {index}: at most {MAX_BOXES} boxes and {MAX_BOXES} faces to keep")
        if faces.boxes and not faces.use_boxes:
            raise InvalidArgument(f"image {index}: boxes given without use_boxes")
        boxes = tuple(_box(b) for b in faces.boxes) if faces.use_boxes else None
        wanted.append(FaceRequest(boxes, (*faces.keep_indices, *(_box(b) for b in faces.keep_boxes))))
    return wanted


class PhotoFaces:
    """The pipeline, with its dlib work on one thread of its own."""

    def __init__(self, pipeline: FacePipeline) -> None:
        self.pipeline = pipeline
        self._dlib = ThreadPoolExecutor(max_workers=1, thread_name_prefix="anonymizer-dlib")

    async def plan(self, photos: Sequence[Photo], wanted: Sequence[FaceRequest]) -> list[PlannedPhoto]:
        """Detect (or check the caller's boxes) and align every photo; InvalidArgument naming the image."""
        return await asyncio.get_running_loop().run_in_executor(self._dlib, self._plan_all, photos, wanted)

    def _plan_all(self, photos: Sequence[Photo], wanted: Sequence[FaceRequest]) -> list[PlannedPhoto]:
        size = self.pipeline.crop_size
        planned = []
        for index, (photo, faces) in enumerate(zip(photos, wanted)):
            if faces.boxes is None and not faces.keep and photo.pixels.shape[:2] == (size, size):
                planned.append(PlannedPhoto(photo, None))
                continue
            try:
                planned.append(PlannedPhoto(photo, self.pipeline.prepare(photo.pixels, faces.boxes, faces.keep)))
            except InvalidArgument as exc:
                raise InvalidArgument(f"image {index}: {exc}") from None
        return planned

    def compose(self, planned: Sequence[PlannedPhoto], crops: Sequence[Sequence[VerifiedCandidate]],
                candidates: int, seed: int | None) -> list[list[ReleasedPhoto]]:
        """[image][candidate] photos from `crops` ([crop][candidate], the crops of every photo in order)."""
        results = iter(crops)
        return [compose_candidates(self.pipeline, item.photo, item.prepared, [next(results) for _ in item.crops],
                                   candidates, seed)
                for item in planned]

    def close(self) -> None:
        self._dlib.shutdown(wait=True)


def face_to_proto(face: ReleasedFace) -> common_pb2.FaceRelease:
    result = face.result
    message = common_pb2.FaceRelease(box=_box_to_proto(result.box), score=result.score, action=ACTIONS[result.action])
    if face.release is not None:
        message.receipt.CopyFrom(receipt_to_proto(face.release.receipt))
        message.unverified_attributes.extend(face.release.disagreeing)
    if result.region is not None:
        message.region.CopyFrom(_box_to_proto(result.region))
    return message


def _box_to_proto(box: Box) -> common_pb2.FaceBox:
    return common_pb2.FaceBox(left=box.left, top=box.top, right=box.right, bottom=box.bottom)
