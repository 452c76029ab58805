"""Verified edits in the anonymizer service (tiny model on loopback): a candidate whose face never
reads as its released values within VEIL_DECODE_TRIES decodes is refused, says why and leaves
nothing in the store; the offered ones are exactly what the library gives for the same seed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
from test_anonymizer_service import META, candidates_of, faces, local, metric, run  # noqa: F401 (fixtures)

from veil.data import load_celeba
from veil.diffusion.anonymize import Anonymizer
from veil.diffusion.pipeline import DiffusionAutoencoder
from veil.diffusion.verify import VerifiedCandidate
from veil.images import decode_image
from veil.privacy.convert import settings_from_proto
from veil.v1 import anonymizer_pb2, common_pb2

PROTECT = ["Male", "Young"]
LEVEL = common_pb2.PrivacySetting(level=3)
TRIES, CANDIDATES = 2, 4


def library_candidates(model_dir: Path, crops: list[np.ndarray], seed: int, candidates: int = CANDIDATES,
                       tries: int = TRIES) -> list[list[VerifiedCandidate]]:
    """What veil.diffusion gives for a request to a service with 2 sampling steps: same model,
    settings (PROTECT at LEVEL) and seed."""
    model = DiffusionAutoencoder.from_pretrained(model_dir)
    anonymizer = Anonymizer(model, dataclasses.replace(model.card.sampling, steps=2), max_batch=16,
                            decode_tries=tries)
    settings = settings_from_proto(LEVEL, PROTECT, model.attribute_names)
    return anonymizer.verified(anonymizer.prepare(crops), settings, candidates, seed)


def test_refused_candidates_are_named_and_never_stored(local, tiny_model_dir: Path, tiny_faces: Path) -> None:  # noqa: F811
    crops = list(load_celeba(tiny_faces, size=16, limit=2).images)
    # A seed whose round has both outcomes (chosen on the library, before the service is asked).
    seed, expected = next((s, e) for s in range(1, 60)
                          for e in [library_candidates(tiny_model_dir, crops, s)]
                          if len({c.offered for row in e for c in row}) == 2)
    refused_before = metric("veil_anonymizer_face_candidates_total", outcome="refused")

    async def scenario() -> None:
        async with local(decode_tries=TRIES) as service:
            info = await service.stub.GetModelInfo(anonymizer_pb2.GetModelInfoRequest(), metadata=META)
            assert info.decode_tries == TRIES
            request = anonymizer_pb2.AnonymizeRequest(
                images=service.refs(["faces/0.png", "faces/1.png"]), protect=PROTECT, privacy=LEVEL,
                candidates=CANDIDATES, seed=seed, output_prefix="verified/r1")
            events = await service.events(request)
            found = candidates_of(events)
            assert [(c.image_index, c.candidate_index) for c in found] == [
                (i, k) for i in range(2) for k in range(CANDIDATES)]
            stored = set()
            for c in found:
                want = expected[c.image_index][c.candidate_index]
                [face] = c.faces
                assert face.receipt.decode_tries == c.receipt.decode_tries == want.tries
                assert list(face.unverified_attributes) == list(want.disagreeing)
                released = {a.attribute: a.released_value for a in face.receipt.attributes}
                assert released == {a.attribute: a.released_value for a in want.receipt.attributes}
                if want.offered:
                    assert c.refusal == "" and face.HasField("region")
                    pixels = decode_image(service.store.get(c.image.object.key))
                    assert np.array_equal(pixels, want.image.image)
                    receipt = json.loads(service.store.get(c.receipt_object.key))
                    assert receipt["faces"][0]["unverified_attributes"] == []
                    stored |= {c.image.object.key, c.receipt_object.key}
                else:
                    assert want.tries == TRIES and not c.HasField("image") and not c.HasField("receipt_object")
                    assert not face.HasField("region")
                    assert c.refusal == (f"face 0 still read {', '.join(want.disagreeing)} otherwise than "
                                         f"released after {TRIES} decode(s)")
            assert {info.key for info in service.store.list("verified/r1/")} == stored
            retried = any(c.tries > 1 for row in expected for c in row)
            assert ("verify" in [e.progress.stage for e in events if e.HasField("progress")]) == retried

    run(scenario())
    refused = sum(not c.offered for row in expected for c in row)
    assert metric("veil_anonymizer_face_candidates_total", outcome="refused") - refused_before == refused
