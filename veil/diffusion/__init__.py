"""Diffusion-DP: the conditional diffusion autoencoder, DP mechanisms, anonymisation, evaluation."""
