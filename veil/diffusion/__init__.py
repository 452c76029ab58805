"""Diffusion-DP: the conditional diffusion autoencoder, DP mechanisms, anonymisation, evaluation."""

from pathlib import Path

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "diffae-synth32"
"""The shipped demo model (trained on synthetic faces; see its model_card.json)."""
