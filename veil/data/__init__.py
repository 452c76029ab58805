"""Face data: the CelebA on-disk format and a seeded synthetic face generator that writes it."""

from veil.data.celeba import CelebA, DataFormatError, load_celeba
from veil.data.synth import ATTRIBUTES, generate_dataset

__all__ = ["ATTRIBUTES", "CelebA", "DataFormatError", "generate_dataset", "load_celeba"]
