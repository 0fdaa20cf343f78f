"""Confidence intervals for a share, shared by the apps that report one (caption audits,
study results). Pure Python, free of Django."""

from __future__ import annotations

import math

# Two-sided 95%: the normal quantile at 0.975.
Z_95 = 1.959963984540054


def wilson_interval(successes: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for `successes` out of `total`.

    With no trials nothing is known about the share, so the interval is the whole (0, 1).
    """
    if total < 0 or not 0 <= successes <= total:
        raise ValueError(f"need 0 <= successes <= total, got {successes}/{total}")
    if total == 0:
        return 0.0, 1.0
    share = successes / total
    z2 = z * z
    denominator = 1 + z2 / total
    centre = (share + z2 / (2 * total)) / denominator
    half = z / denominator * math.sqrt(share * (1 - share) / total + z2 / (4 * total * total))
    # Clamp rounding noise at 0/total so the bounds never leave [0, 1] or exclude the share.
    return max(0.0, min(share, centre - half)), min(1.0, max(share, centre + half))
