"""Small scikit-learn transformers our config groups refer to."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class SignedSqrt(TransformerMixin, BaseEstimator):
    """x -> sign(x) * sqrt(|x|), the first half of power normalisation (then L2)."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        X = np.asarray(X)
        return np.sign(X) * np.sqrt(np.abs(X))
