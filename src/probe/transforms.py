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
    """scikit-learn's `Normalizer`, exact at any scale.

    `Normalizer` leaves a row whose norm is below 10 x the dtype's machine epsilon as it is (it takes it for zero):
    float32 features of a randomly initialised deep net (about 1e-10 after many layers) would reach the
    classifier unnormalised and all but constant. Such rows (and only those: other rows are normalised exactly as
    before) are first divided by their largest |value|, which changes no direction."""

    def transform(self, X, copy=None):
        X = np.asarray(X)
        if self.norm in ("l1", "l2") and X.ndim == 2 and len(X) and np.issubdtype(X.dtype, np.floating):
            norms = np.linalg.norm(X, ord=1 if self.norm == "l1" else 2, axis=1)
            tiny = norms < 10 * np.finfo(X.dtype).eps
            if tiny.any():
                scale = np.abs(X[tiny]).max(axis=1, keepdims=True)
                X = X.copy()
                X[tiny] = X[tiny] / np.where(scale > 0, scale, 1).astype(X.dtype)
        return super().transform(X, copy=copy)
