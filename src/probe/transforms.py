"""Small scikit-learn transformers our config groups refer to."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.preprocessing import Normalizer


class SignedSqrt(TransformerMixin, BaseEstimator):
    """x -> sign(x) * sqrt(|x|), the first half of power normalisation (then L2)."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        X = np.asarray(X)
        return np.sign(X) * np.sqrt(np.abs(X))


class ScaleFreeNormalizer(Normalizer):
    """scikit-learn's `Normalizer`, exact at any scale: each row is first divided by its largest |value|.

    `Normalizer` leaves a row whose norm is below 10 x the dtype's machine epsilon as it is (it takes it for zero):
    float32 features of a randomly initialised deep net (about 1e-10 after many layers) would reach the
    classifier unnormalised and all but constant. Dividing by the max first changes no direction and brings every
    non-zero row to a norm of at least 1."""

    def transform(self, X, copy=None):
        X = np.asarray(X)
        if self.norm in ("l1", "l2") and X.ndim == 2 and len(X):
            scale = np.abs(X).max(axis=1, keepdims=True)
            X = X / np.where(scale > 0, scale, 1).astype(X.dtype)
        return super().transform(X, copy=False)
