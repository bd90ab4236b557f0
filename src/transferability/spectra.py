"""The eigendecomposition of the centred features' smaller Gram matrix, shared by the estimators that need it.

H-score, GBC's PCA and TransRate's overall coding rate each factor the same matrix (Xc^T Xc, or Xc Xc^T when there
are fewer rows than features; Xc the float64 features minus their mean): inside `shared()` (one job's estimates,
`src.experiment.estimate_transferability`) it is computed once per feature array, not three times (at n=10,000,
d=2,048 the Gram matrix alone is 42 GFLOP). Outside, every call computes its own.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np

_kept: dict[int, tuple] | None = None  # inside shared(): id(features) -> (features, result)


@contextmanager
def shared() -> Iterator[None]:
    """Within: each feature array's decomposition is computed once (the arrays must not change meanwhile)."""
    global _kept
    outer, _kept = _kept, {} if _kept is None else _kept
    try:
        yield
    finally:
        _kept = outer


def centred_gram_eigh(features, vectors: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(Xc, eigenvalues ascending, eigenvectors) of Xc^T Xc if n >= d, else of Xc Xc^T; Xc = the float64 features
    minus their column means. `vectors=False`: the caller needs the eigenvalues only, and outside `shared()` gets
    no eigenvectors (None; eigvalsh does not form them, which costs less); inside, they are computed for the
    estimators that need them."""
    if _kept is not None and id(features) in _kept:
        return _kept[id(features)][1]
    x = np.asarray(features, dtype=np.float64)
    xc = x - x.mean(0)
    gram = xc.T @ xc if xc.shape[0] >= xc.shape[1] else xc @ xc.T
    if not vectors and _kept is None:
        return xc, np.linalg.eigvalsh(gram), None
    vals, vecs = np.linalg.eigh(gram)
    if _kept is not None:  # (the array is kept with it, so its id cannot be reused by another one meanwhile)
        for a in (xc, vals, vecs):  # handed to several estimators: none may change them
            a.flags.writeable = False
        _kept[id(features)] = (features, (xc, vals, vecs))
    return xc, vals, vecs
