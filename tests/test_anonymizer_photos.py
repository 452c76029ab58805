"""Whole photos through the anonymizer service on loopback (tiny model, real dlib detector):
scikit-image's astronaut (her face found where it is, changed inside its blend region and
bit-identical outside), a photo without a face (coffee: unchanged, no faces), caller boxes with
`keep` and a face too small to re-synthesize, and a decompression bomb refused while the service
keeps serving."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from skimage import data as skdata
from test_anonymizer_service import META, candidates_of, faces, local, png_header, run  # noqa: F401 (fixtures)

from veil.faces.photo import decode_photo, encode_photo
from veil.v1 import anonymizer_pb2, common_pb2

ANONYMIZED, KEPT, OBSCURED = (common_pb2.FACE_ACTION_ANONYMIZED, common_pb2.FACE_ACTION_KEPT,
                              common_pb2.FACE_ACTION_OBSCURED)


def as_tuple(box: common_pb2.FaceBox) -> tuple[int, int, int, int]:
    return box.left, box.top, box.right, box.bottom


def inside(pixels: np.ndarray, box: common_pb2.FaceBox) -> np.ndarray:
    return pixels[box.top:box.bottom, box.left:box.right]


def outside_equal(before: np.ndarray, after: np.ndarray, regions: list[common_pb2.FaceBox]) -> bool:
    mask = np.ones(before.shape[:2], bool)
    for region in regions:
        mask[region.top:region.bottom, region.left:region.right] = False
    return bool(np.array_equal(before[mask], after[mask]))


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skdata.astronaut()


def test_photos_faces_keep_tiny_faces_and_bombs(local, astronaut: np.ndarray) -> None:  # noqa: F811
    coffee = skdata.coffee()

    async def scenario() -> None:
        async with local() as service:
            store = service.store
            store.put("photos/astronaut.png", encode_photo(astronaut, "PNG"), content_type="image/png")
            store.put("photos/coffee.jpg", encode_photo(coffee, "JPEG"), content_type="image/jpeg")
            store.put("photos/bomb.png", png_header(100_000, 100_000), content_type="image/png")

            # Detected: every face of the astronaut anonymized in one batch, the rest untouched.
            events = await service.events(service.request(["photos/astronaut.png", "photos/coffee.jpg"], prefix="p/1"))
            [started] = [e.progress for e in events if e.progress.stage == "started"]
            [photo, empty] = candidates_of(events)
            assert (photo.image.width, photo.image.height, photo.image.object.key) == (512, 512, "p/1/0-0.png")
            face = photo.faces[0]
            left, top, right, bottom = as_tuple(face.box)
            # Her face: about 90 px square around (220, 120) in the 512 px photo.
            assert abs((left + right) / 2 - 220) < 20 and abs((top + bottom) / 2 - 120) < 20 and 70 < right - left < 120
            assert all(f.action == ANONYMIZED and f.receipt.receipt_id for f in photo.faces)
            assert face.score > 0.5 and photo.receipt == face.receipt
            assert f"{len(photo.faces)} row(s)" in started.message  # the faces' crops, one batch
            after = decode_photo(store.get(photo.image.object.key)).pixels
            assert outside_equal(astronaut, after, [f.region for f in photo.faces])
            changed = np.abs(inside(after, face.box).astype(int) - inside(astronaut, face.box)).mean()
            assert changed > 10, changed
            # No face: the photo as it came (JPEG in, JPEG out), an empty face list, no receipt.
            assert (list(empty.faces), empty.HasField("receipt"), empty.image.object.key) == ([], False, "p/1/1-0.jpg")
            unchanged = decode_photo(store.get(empty.image.object.key)).pixels
            assert np.abs(unchanged.astype(int) - decode_photo(store.get("photos/coffee.jpg")).pixels).mean() < 1.5

            # The caller's boxes: her face, a 12 px face (obscured) and one kept by its box.
            boxes = [common_pb2.FaceBox(left=175, top=76, right=266, bottom=167),
                     common_pb2.FaceBox(left=400, top=400, right=412, bottom=412),
                     common_pb2.FaceBox(left=300, top=250, right=380, bottom=330)]
            wanted = anonymizer_pb2.ImageFaces(use_boxes=True, boxes=boxes,
                                               keep_boxes=[common_pb2.FaceBox(left=305, top=255, right=380, bottom=330)])
            [given] = candidates_of(await service.events(service.request(["photos/astronaut.png"], prefix="p/2",
                                                                         faces=[wanted])))
            assert [(as_tuple(f.box), f.action, f.score, f.HasField("receipt")) for f in given.faces] == [
                (as_tuple(boxes[0]), ANONYMIZED, 1.0, True), (as_tuple(boxes[1]), OBSCURED, 1.0, False),
                (as_tuple(boxes[2]), KEPT, 1.0, False)]
            after = decode_photo(store.get(given.image.object.key)).pixels
            assert not given.faces[2].HasField("region")
            assert outside_equal(astronaut, after, [given.faces[0].region, given.faces[1].region])
            assert not np.array_equal(inside(after, boxes[1]), inside(astronaut, boxes[1]))

            # A bomb is refused from its header; the service goes on serving.
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await service.events(service.request(["photos/bomb.png"], prefix="p/3"))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "larger than 4096 px on its longest side" in err.value.details()
            assert list(store.list("p/3")) == []
            await service.still_serves()
    run(scenario())
