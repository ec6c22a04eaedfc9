"""Small statistics helpers for seeded distribution tests (no scipy on the machine)."""

import math

import numpy as np

Z_999 = 3.090232  # standard normal 0.999 quantile


def chi2_critical(df: int, z: float = Z_999) -> float:
    """Upper chi-square quantile by the Wilson-Hilferty approximation (good to <1% for df > 10)."""
    h = 2.0 / (9.0 * df)
    return df * (1.0 - h + z * math.sqrt(h)) ** 3


def chi2_statistic(observed: np.ndarray, expected: np.ndarray) -> float:
    return float(((observed - expected) ** 2 / expected).sum())
