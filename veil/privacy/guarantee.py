"""Whether a release's IMAGE is covered by its DP accounting, not only its released values.

The mechanisms bound what the released values (attributes, identity latent) say about the
original. The decoded image is covered by the same bound only when it is post-processing of
those values: a function of the released protected values, the attributes released unchanged,
the identity latent after its Gaussian mechanism and fresh randomness. Anything else the decoder
sees of the original is a channel no eps accounts for. On the shipped 32 px model a fresh linear
probe reads Male from the original z_sem at 0.80 (majority 0.56), and the inverted x_T carries
the original's attributes and identity, so a release that keeps either leaks beyond its receipt.
"""

from __future__ import annotations

from veil.privacy.levels import PrivacyLevel
from veil.privacy.settings import PrivacySettings

SOURCE_GUIDANCE = "source"  # guidance away from the ORIGINAL predicted attributes
NULL_GUIDANCE = "null"  # guidance away from the null condition (nothing of the original)
GUIDANCE_BASES = (SOURCE_GUIDANCE, NULL_GUIDANCE)


def image_level_guarantee(settings: PrivacySettings, guidance_base: str) -> bool:
    """True when the decoded image depends on the original only through the released values.

    That needs all of: the identity latent released through its Gaussian mechanism (the original
    z_sem is not attribute-invariant), rho == 1 (x_T fully re-drawn: the inverted x_T keeps the
    original), and a sampler whose guidance does not use the original predicted attributes
    (`guidance_base` "null", not "source"). Implied attributes are re-drawn from the released
    values and the attributes not protected are released unchanged, so neither breaks it.

    Under the guarantee the image is post-processing of the round's mechanism outputs: what it
    reveals about ANY attribute of the original (protected or not, implied or not) is bounded by
    the composition of the round's events, the attribute mechanisms at their eps and the identity
    Gaussian at (eps, delta), which is exactly what the ledger charges for the receipt. Without it
    the receipt's eps bound only the released values, not the pixels.
    """
    return settings.identity_epsilon is not None and settings.rho == 1.0 and guidance_base == NULL_GUIDANCE


def level_guarantee(row: PrivacyLevel, guidance_base: str) -> bool:
    """`image_level_guarantee` of a row of the level table (whatever attributes it protects)."""
    return image_level_guarantee(PrivacySettings.from_level(row.level, (), ()), guidance_base)
