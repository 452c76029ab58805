"""Whole photos: detect every face, align it, anonymize the crops, blend them back (DESIGN section 9)."""

from veil.faces.align import AlignedFace, FaceAligner
from veil.faces.detect import Box, Detection, FaceDetector, GivenBoxes, HogDetector, MmodDetector
from veil.faces.pipeline import FaceAction, FacePipeline, FaceResult, PhotoResult, PreparedPhoto

__all__ = ["AlignedFace", "Box", "Detection", "FaceAction", "FaceAligner", "FaceDetector", "FacePipeline",
           "FaceResult", "GivenBoxes", "HogDetector", "MmodDetector", "PhotoResult", "PreparedPhoto"]
