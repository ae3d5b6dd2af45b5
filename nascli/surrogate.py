"""The Gaussian-process surrogate that model-based search uses: Matérn 5/2 on a space's encoding, with noise."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel


def fit_gp(x: np.ndarray, y: np.ndarray, normalize_y: bool = True) -> GaussianProcessRegressor:
    """A GP fitted to (x, y), its hyperparameters chosen by marginal likelihood (deterministically)."""
    kernel = ConstantKernel(1.0) * Matern(length_scale=1.0, nu=2.5) + WhiteKernel(1e-2)
    model = GaussianProcessRegressor(kernel, normalize_y=normalize_y, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)
    return model
