"""Where dlib's model files are: the `face_recognition_models` package ships them (CC0).

The package's own `__init__` imports `pkg_resources`, which recent setuptools no longer has, so
the folder is found from the import spec without running that module. Its 68-point landmark model
is never loaded here: its licence bars commercial use.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

from veil.errors import ConfigError

LANDMARKS_5 = "shape_predictor_5_face_landmarks.dat"
MMOD_DETECTOR = "mmod_human_face_detector.dat"
FACE_RECOGNITION = "dlib_face_recognition_resnet_model_v1.dat"


def model_file(name: str) -> Path:
    """The path of one of the shipped dlib model files (ConfigError when the package is missing)."""
    path = _models_dir() / name
    if not path.is_file():
        raise ConfigError(f"{name} is missing from the face_recognition_models package at {path.parent}")
    return path


@cache
def _models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the face_recognition_models package is not installed (pip install face-recognition-models)")
    return Path(next(iter(spec.submodule_search_locations))) / "models"
