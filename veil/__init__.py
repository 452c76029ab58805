"""veil: interactive face-image privacy (Diffusion-DP data sharing + feature unlearning)."""

__version__ = "0.1.0"
