"""A linear SVM solved for all one-vs-rest problems at once with full-batch L-BFGS in torch.

Same objective as scikit-learn's `LinearSVC` (L2-regularised squared hinge, one-vs-rest):
    min_W  1/2 ||W||^2 + C * sum_i sum_k max(0, 1 - y_ik (w_k . x_i + b_k))^2,   y_ik = +1 if y_i = k else -1
except that the intercepts are not regularised. liblinear solves the k problems one after another by
coordinate descent, which on wide features (thousands of dims, ~100 classes) takes minutes; here every
problem shares each (n x d) @ (d x k) product, which is what the CPU's GEMM is good at. See benchmarks/p4_probe.py.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted


class TorchLinearSVC(ClassifierMixin, BaseEstimator):
    def __init__(self, C: float = 1.0, max_iter: int = 1000, tol: float = 1e-6, matmul_dtype: str = "float32",
                 device: str = "cpu"):
        self.C = C
        self.device = device  # the job's device (src/device.py); the fitted coef_ is numpy either way
        self.max_iter = max_iter
        self.tol = tol
        self.matmul_dtype = matmul_dtype

    def fit(self, X, y):
        # Parameters, loss and L-BFGS state in float64 (float32 stalls the line search on large-C problems);
        # the (n x d) @ (d x k) products, which are all of the cost, in `matmul_dtype` (float32: twice as fast).
        dtype = torch.float64
        x = torch.as_tensor(np.asarray(X), dtype=getattr(torch, self.matmul_dtype), device=self.device)
        self.classes_, y_idx = np.unique(np.asarray(y), return_inverse=True)
        n, d = x.shape
        k = len(self.classes_)
        if k < 2:
            raise ValueError("TorchLinearSVC needs at least two classes")
        signs = -torch.ones(n, k, dtype=dtype, device=self.device)
        signs[torch.arange(n), torch.as_tensor(y_idx, device=self.device)] = 1.0
        if k == 2:  # one problem, as LinearSVC does for binary targets
            signs = signs[:, 1:]
        w = torch.zeros(d, signs.shape[1], dtype=dtype, device=self.device, requires_grad=True)
        b = torch.zeros(signs.shape[1], dtype=dtype, device=self.device, requires_grad=True)
        reg = 0.5 / float(self.C)
        self.n_iter_ = 0
        # Phase 1 with float32 products gets close cheaply; phase 2 with float64 products finishes the job
        # (float32 rounding alone stalls L-BFGS a little short of the optimum on large-C problems).
        phases = [x] if x.dtype == dtype else [x, x.to(dtype)]
        for xm in phases:
            self.n_iter_ += self._lbfgs(xm, signs, w, b, reg, self.max_iter - self.n_iter_)
        self.coef_ = w.detach().T.double().cpu().numpy()
        self.intercept_ = b.detach().double().cpu().numpy()
        self.n_features_in_ = d
        return self

    def _lbfgs(self, x, signs, w, b, reg: float, max_iter: int) -> int:
        if max_iter <= 0:
            return 0
        n = len(x)
        # Stop on the gradient alone: L-BFGS's change-based test fires early on the flat valleys of large-C problems.
        opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, tolerance_grad=self.tol, tolerance_change=0.0,
                                history_size=20, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            margin = torch.clamp(1 - signs * ((x @ w.to(x.dtype)).to(w.dtype) + b), min=0)
            # The objective divided by C * n: same minimiser, and a scale that does not grow with C or n.
            loss = (reg * (w * w).sum() + (margin * margin).sum()) / n
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        return int(opt.state[opt._params[0]].get("n_iter", 0))

    def decision_function(self, X):
        check_is_fitted(self, "coef_")
        scores = np.asarray(X, dtype=np.float64) @ self.coef_.T + self.intercept_
        return scores[:, 0] if scores.shape[1] == 1 else scores

    def predict(self, X):
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[scores.argmax(1)]
