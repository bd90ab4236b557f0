"""Linear probes solved along a whole C path at once: every class in one problem, warm starts from strong to weak
regularisation, in torch (CPU or the job's GPU).

Objectives (n rows, L2-regularised, the same as scikit-learn's):
    squared_hinge  1/2 ||W||^2 + C sum_i sum_k max(0, 1 - s_ik (w_k . x_i + b_k))^2   (LinearSVC, one-vs-rest;
                   s_ik = +1 if row i has label k else -1; one problem for a binary target; multi-label: per label)
    log            1/2 ||W||^2 + C sum_i -log softmax(W x_i + b)_{y_i}                 (LogisticRegression,
                   multinomial; a binary target or a multi-label one: per-label sigmoid)
Intercepts: by default NOT regularised (as LogisticRegression). liblinear (LinearSVC) regularises its intercept as
the weight of a constant feature `intercept_scaling`; pass the same `intercept_scaling` to solve that objective
exactly (tests/test_probe_path.py compares both against scikit-learn).

Why it is fast: liblinear solves the k problems one after another by coordinate descent and scikit-learn refits
from scratch at every C. Here an iteration is two float32 GEMMs shared by all k problems (X @ D for the search
direction, X^T @ G for the gradient); the one-vs-rest problems each keep their own L-BFGS memory and step (one
L-BFGS per class in lockstep: the k problems are independent and differently scaled, and one L-BFGS over all of them
would take one compromise step and curvature model for all, needing several times more iterations); the Newton line
search along X @ D needs no more GEMMs; the next C starts from the last decision values and gradient; with an
unregularised intercept the features are centred (an exact reparametrisation) which removes their dominant
eigenvalue; and the solver moves from one C to the next keeping its L-BFGS memory, corrected exactly for the
change of the regulariser. Parameters and losses are float64; a float64 GEMM phase finishes a solve that float32
rounding stalls short of `tol`. Convergence: max |gradient| of the objective divided by C * n (scikit-learn's
`tol` convention for lbfgs), reported per C in `path_`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np
import torch
from scipy.sparse import issparse
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

LOSSES = ("squared_hinge", "log")

# Solver constants. Each one chooses how a step or product is computed, so it changes the speed, never the solution
# (within `tol`: tests/test_probe_path.py solves with both sides of each switch). The values suit a 2-core AVX2 CPU
# with MKL; XT_BLOCK and SKINNY_COLUMNS act on the CPU only. On other hardware,
#     python -m benchmarks.solver_constants            (--quick: smaller shapes; --device cuda: the GPU's side)
# times both sides of each switch on the machine it runs on and prints where they cross.
NEWTON_FLOPS = 3e8  # Newton steps when their modelled cost in flops (PathSolver.__init__) is at most this; L-BFGS above
XT_BLOCK = 1024  # feature rows per block of the gradient's GEMM X^T G on the CPU (PathSolver._xt_mm)
SKINNY_COLUMNS = 12  # on the CPU, a float32 feature product with fewer columns than this runs transposed (_mm)
STALLED_NEWTON = 4  # Newton steps in a row that do not halve the gradient end the float32 phase (PathSolver.solve)
# Not a speed setting but a memory bound: "active" kernel Newton keeps an n x n float64 Gram matrix, so only targets
# with at most this many training rows use it (4,096^2 x 8 bytes = 128 MB); larger ones stay with L-BFGS.
KERNEL_ROWS = 4096


def newton_costs(n: int, d: int, k: int, rows: int | None = None) -> tuple[float, float]:
    """The cost model (flops) of one Newton step on n rows, d features and k columns, compared with NEWTON_FLOPS:
    (primal: each column's (d+1) x (d+1) Hessian and its Cholesky; kernel: a rows x rows Cholesky per column, rows
    inside the margin (all n by default), plus the n x (d + 1) products)."""
    q, rows = d + 1, n if rows is None else rows
    return k * q * q * (q + n / 2), k * rows ** 3 + 4 * n * q * k


def _mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b for features a (either orientation) and a parameter-like b (one column per class). On the CPU MKL's
    float32 GEMM with a skinny right-hand side (fewer than SKINNY_COLUMNS columns: few classes, or few not yet
    converged) is several times slower than the same product transposed, b^T a^T, which puts the skinny operand
    on the left where MKL's kernels handle it well; in float64 the transposed product is the faster one at every
    width. Those take the transposed product (the result is its .T view; the same values up to rounding).
    `python -m benchmarks.solver_constants` times both orientations per width on the machine at hand."""
    return (b.T @ a.T).T if _transposed_is_faster(a, b) else a @ b


def _transposed_is_faster(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.device.type == "cpu" and (a.dtype == torch.float64 or b.shape[1] < SKINNY_COLUMNS)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class _Loss:
    """Loss of the decision values Z (n x k) against targets T, summed over rows and divided by n: per group (one
    group per column for the separable losses, one group for the multinomial), its gradient in Z, and the first two
    derivatives of t -> L(Z + t A) for a step t per group (the line search)."""

    def __init__(self, kind: str, targets: torch.Tensor, multinomial: bool):
        self.kind, self.t, self.multinomial = kind, targets, multinomial
        self.n = targets.shape[0]

    def subset(self, cols: torch.Tensor) -> "_Loss":
        """The same (separable) loss on some columns only: the classes not yet converged."""
        return _Loss(self.kind, self.t[:, cols], self.multinomial)

    def red(self, v: torch.Tensor) -> torch.Tensor:
        """Sum within each group: columns stay separate unless the loss couples them."""
        return v.sum().reshape(1) if self.multinomial else v.sum(0)

    def value_grad(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "squared_hinge":  # targets: signs +-1
            m = torch.clamp_min(1 - self.t * z, 0)
            return (m * m).sum(0) / self.n, (-2 / self.n) * self.t * m
        if self.multinomial:  # targets: one-hot
            val = (torch.logsumexp(z, 1) - (z * self.t).sum(1)).sum().reshape(1) / self.n
            return val, (torch.softmax(z, 1) - self.t) / self.n
        u = -self.t * z  # per-column sigmoid, targets: signs
        return torch.nn.functional.softplus(u).sum(0) / self.n, (-self.t * torch.sigmoid(u)) / self.n

    def curvature(self, z: torch.Tensor) -> torch.Tensor:
        """The second derivative of each entry's loss in its decision value (separable losses): the Hessian in theta
        of one column is X~^T diag(these) X~. For the squared hinge it is the exact (generalised) one: 2/n on the
        rows inside the margin, 0 elsewhere."""
        if self.kind == "squared_hinge":
            return (2 / self.n) * (self.t * z < 1).double()
        s = torch.sigmoid(-self.t * z)
        return s * (1 - s) / self.n

    def prepare(self, z: torch.Tensor, a: torch.Tensor) -> tuple:
        """What `along` needs of the line z + t a, computed once per line search (each trial step then costs a few
        elementwise passes over the n x k decision values)."""
        if self.kind == "squared_hinge":
            ta = self.t * a
            return 1 - self.t * z, ta, ta * ta
        return z, a

    def along(self, line: tuple, t: torch.Tensor):
        if self.kind == "squared_hinge":
            r, ta, ta2 = line
            m = torch.addcmul(r, ta, -t).clamp_min_(0)
            return (m * m).sum(0) / self.n, (-2 / self.n) * (m * ta).sum(0), \
                (2 / self.n) * torch.where(m > 0, ta2, 0).sum(0)
        z, a = line
        zt = z + t * a
        if self.multinomial:
            p = torch.softmax(zt, 1)
            pa = (p * a).sum(1)
            val = (torch.logsumexp(zt, 1) - (zt * self.t).sum(1)).sum()
            return (val / self.n).reshape(1), ((pa - (a * self.t).sum(1)).sum() / self.n).reshape(1), \
                (((p * a * a).sum(1) - pa * pa).sum() / self.n).reshape(1)
        u = -self.t * zt
        s = torch.sigmoid(u)
        return torch.nn.functional.softplus(u).sum(0) / self.n, (-self.t * s * a).sum(0) / self.n, \
            (s * (1 - s) * a * a).sum(0) / self.n


@dataclass
class _Memory:
    """L-BFGS curvature pairs (s, y, 1/(s.y)) per group, of the objective at regularisation `lam`; carried from one
    C to the next. A pair whose curvature is not positive in some group has 1/(s.y) = 0 there (no effect)."""

    size: int
    red: object
    lam: float = 0.0
    pairs: list = field(default_factory=list)
    gamma: torch.Tensor | None = None  # initial inverse Hessian scale per group
    # The pairs restricted to the active columns `cols`, kept in step with `pairs` while `cols` stays the same (it
    # changes a few times per C): picking every pair's columns afresh would copy the whole memory every iteration.
    cols: torch.Tensor | None = None
    picked: list = field(default_factory=list)

    def _rho(self, s, y):
        sy, yy = self.red(s * y), self.red(y * y)
        ok = sy > 1e-12 * yy
        return torch.where(ok, 1 / torch.where(ok, sy, torch.ones_like(sy)), torch.zeros_like(sy)), ok, sy, yy

    def retarget(self, lam: float, reg_mask: torch.Tensor) -> None:
        """The loss part of y is unchanged by C, the regulariser's part is lam * s: swap it for the new lam."""
        pairs = []
        for s, y, _ in self.pairs:
            y = y + (lam - self.lam) * reg_mask * s
            pairs.append((s, y, self._rho(s, y)[0]))
        self.pairs, self.lam, self.cols, self.picked = pairs, lam, None, []

    def push(self, s: torch.Tensor, y: torch.Tensor) -> None:
        rho, ok, sy, yy = self._rho(s, y)
        if not bool(ok.any()):
            return
        self.pairs = (self.pairs + [(s, y, rho)])[-self.size:]
        if self.cols is not None:
            self.picked = (self.picked + [tuple(m.index_select(-1, self.cols) for m in (s, y, rho))])[-self.size:]
        scale = sy / torch.where(ok, yy, torch.ones_like(yy))
        self.gamma = torch.where(ok, scale, self.gamma if self.gamma is not None else scale)

    def direction(self, g: torch.Tensor, cols: torch.Tensor | None = None) -> torch.Tensor:
        """-H g by the two-loop recursion; with `cols` (separable losses), for those columns only: the others have
        converged, and each vector operation then costs len(cols) / k of the full one."""
        pick = (lambda m: m) if cols is None else (lambda m: m.index_select(-1, cols))
        q, alphas = -pick(g), []
        if cols is None:
            pairs, self.cols, self.picked = self.pairs, None, []
        else:
            if self.cols is None or not torch.equal(cols, self.cols):
                if self.cols is not None and len(self.picked) == len(self.pairs) and _subset(cols, self.cols):
                    # (columns only converged: pick from the pairs already picked, fewer columns to read)
                    at = torch.searchsorted(self.cols, cols)
                    self.picked = [tuple(m.index_select(-1, at) for m in pair) for pair in self.picked]
                else:
                    self.picked = [(pick(s), pick(y), pick(rho)) for s, y, rho in self.pairs]
                self.cols = cols
            pairs = self.picked
        for s, y, rho in reversed(pairs):
            a = rho * self.red(s * q)
            q = q.addcmul_(y, a, value=-1)
            alphas.append(a)
        q = q * (pick(self.gamma) if self.gamma is not None else 1.0 / torch.clamp_min(self.red(q.abs()), 1.0))
        for (s, y, rho), a in zip(pairs, reversed(alphas)):
            q = q.addcmul_(s, a - rho * self.red(y * q))
        return q


def _subset(cols: torch.Tensor, of: torch.Tensor) -> bool:
    """Whether the sorted column indices `cols` are all in the sorted `of`."""
    if len(cols) > len(of) or not len(of):
        return not len(cols)
    at = torch.searchsorted(of, cols).clamp_max(len(of) - 1)
    return bool((of[at] == cols).all())


class PathSolver:
    """One training set, solved at any C (warm-started from a previous solution). Parameters are a float64
    (d + 1) x k matrix theta = [W; b]; with `intercept_scaling` set, b is the weight of the constant column and so
    is regularised (liblinear), otherwise it is free and the features are centred. The separable losses (one-vs-rest
    squared hinge, per-label sigmoid) run one L-BFGS per class in lockstep (own curvature pairs and step per
    column, shared GEMMs); the multinomial loss couples the classes and runs one L-BFGS."""

    def __init__(self, x: np.ndarray, targets: np.ndarray, loss: str, multinomial: bool, device: torch.device,
                 intercept_scaling: float | None = None, tol: float = 1e-4, max_iter: int = 1000, history: int = 10):
        self.dev, self.tol, self.max_iter, self.scaling = device, tol, max_iter, intercept_scaling
        x = torch.as_tensor(np.asarray(x, dtype=np.float32), device=device)
        self.n, self.d = x.shape
        self.mean = x.mean(0) if intercept_scaling is None else torch.zeros(self.d, device=device)
        # Stored transposed (d x n, contiguous): MKL runs both GEMMs of an iteration, X @ D through the transposed
        # view and X^T @ G directly, faster on this layout than on the n x d one (both are skinny products whose
        # long dimension, n, is then the contiguous one). Always a copy (the rows may be the caller's array), then
        # centred in place: no second d x n temporary.
        self.xt32 = x.T.clone(memory_format=torch.contiguous_format)
        del x
        if intercept_scaling is None:
            self.xt32 -= self.mean[:, None]
        self._xt64 = None
        t = torch.as_tensor(targets, dtype=torch.float64, device=device)
        self.k = t.shape[1]
        self.loss = _Loss(loss, t, multinomial)
        self.reg_mask = torch.ones(self.d + 1, 1, dtype=torch.float64, device=device)
        if intercept_scaling is None:
            self.reg_mask[self.d] = 0
        self.memory = _Memory(history, self.loss.red)
        # Small problems take Newton steps: a handful per C where L-BFGS needs hundreds on ill-conditioned (pooled,
        # correlated) conv features. The step solves each column's (d+1) x (d+1) Hessian ("primal") or, with fewer
        # rows than features, an n x n system ("kernel", Woodbury), whichever costs less. Newton is used only where
        # the modelled cost of a step (the flops of its batched Cholesky and products) is within NEWTON_FLOPS: there
        # a Newton step takes about as long as the few L-BFGS steps (each a fixed operator overhead plus two GEMMs)
        # that it replaces, so its far fewer iterations win; above it, L-BFGS's cheap steps do (e.g. conv layers
        # with few features take Newton; fc layers, d = 1,024 with a few hundred rows, L-BFGS or "active").
        # Larger squared-hinge problems ("active") choose at each iteration: the kernel Newton step needs only the
        # rows inside the margin (the others have zero curvature), so once C is large enough that few rows are
        # (where L-BFGS is slowest: tens of iterations per C), a Newton step costs little.
        n, k = self.n, self.k
        primal, kernel = newton_costs(n, self.d, k)
        self.newton = None if multinomial else "primal" if primal <= min(kernel, NEWTON_FLOPS) else \
            "kernel" if kernel <= NEWTON_FLOPS else \
            "active" if loss == "squared_hinge" and n <= KERNEL_ROWS and self._kernel_cost(0, k) < NEWTON_FLOPS \
            else None
        self._xq = None  # for Newton: the float64 (d + 1) x n features with the intercept's row
        self._hess = None  # (curvature, X~^T diag(curvature) X~ per column) of the last primal Newton step
        self._gram = None  # for the kernel form: X~ X~^T of the regularised columns (n x n, float64)
        self._drift = 0  # steps since z was last computed exactly
        self._last = None  # (theta, z, loss value, loss gradient) of the last float32 solve, for the next warm start

    def x(self, dtype: torch.dtype) -> torch.Tensor:
        """The (centred) n x d features, as a view of the stored transpose."""
        if dtype == torch.float32:
            return self.xt32.T
        if self._xt64 is None:
            self._xt64 = self.xt32.double()
        return self._xt64.T

    def split(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return theta[: self.d], theta[self.d]

    def _bias(self, b: torch.Tensor) -> torch.Tensor:
        return b * (1.0 if self.scaling is None else self.scaling)

    def decisions(self, theta: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        w, b = self.split(theta)
        return _mm(self.x(dtype), w.to(dtype)).double() + self._bias(b)

    def loss_grad(self, z, dtype, loss: _Loss | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss part of the objective and its gradient in theta (the GEMM X^T dL/dZ)."""
        val, gz = (loss or self.loss).value_grad(z)
        gw = self._xt_mm(gz.to(dtype)).double()
        return val, torch.cat([gw, self._bias(gz.sum(0))[None]])

    def _xt_mm(self, m: torch.Tensor) -> torch.Tensor:
        """X^T m (d x columns), in m's dtype. On the CPU in blocks of XT_BLOCK feature rows: MKL splits one skinny
        product with a long inner dimension (n) between the cores less evenly than it runs a few such blocks (each
        output row is the same dot product either way)."""
        xt = self.x(m.dtype).T
        if xt.device.type != "cpu" or self.d <= XT_BLOCK or _transposed_is_faster(xt, m):
            return _mm(xt, m)
        out = torch.empty(self.d, m.shape[1], dtype=m.dtype, device=xt.device)
        for j in range(0, self.d, XT_BLOCK):
            torch.mm(xt[j : j + XT_BLOCK], m, out=out[j : j + XT_BLOCK])
        return out

    def with_reg(self, theta, val, g, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
        return val + 0.5 * lam * self.loss.red(self.reg_mask * theta * theta), g + lam * self.reg_mask * theta

    def solve(self, C: float, theta: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """Minimise the objective / (C n) from `theta` (zeros if None); returns (theta, diagnostics)."""
        t0 = time.perf_counter()
        theta0 = theta
        lam = 1.0 / (C * self.n)
        theta = torch.zeros(self.d + 1, self.k, dtype=torch.float64, device=self.dev) if theta is None \
            else theta.clone()
        self.memory.retarget(lam, self.reg_mask)
        info = {"C": float(C), "n_iter": 0, "float64_iter": 0, "newton_iter": 0}
        gmax, f = math.inf, None
        # z is updated as z + t X d: recompute it exactly every 100 steps so rounding cannot pile up along the path.
        warm = self._last if self._last is not None and theta0 is self._last[0] and self._drift < 100 else None
        self._drift = self._drift if warm is not None else 0
        for dtype in (torch.float32, torch.float64):
            # Warm-started from the previous solve: its decision values and loss gradient still hold (2 GEMMs saved).
            z, lv, lg = warm[1:] if warm is not None and dtype == torch.float32 else (None, None, None)
            if z is None:  # (from zeros: z = 0 without a GEMM)
                z = self.decisions(theta, dtype) if theta0 is not None or info["n_iter"] else \
                    torch.zeros(self.n, self.k, dtype=torch.float64, device=self.dev)
                self._drift = 0
                lv, lg = self.loss_grad(z, dtype)
            f, g = self.with_reg(theta, lv, lg, lam)
            gmax, stalled = float(g.abs().max()), 0
            while gmax > self.tol and info["n_iter"] < self.max_iter:
                cols = None
                if not self.loss.multinomial:  # columns already converged stay put and leave the GEMMs and the
                    active = g.abs().amax(0) > self.tol  # vector work: about half the columns on a long path
                    if not bool(active.all()):
                        cols = active.nonzero().squeeze(1)
                loss = self.loss if cols is None else self.loss.subset(cols)
                on = (lambda m: m) if cols is None else (lambda m: m[..., cols])
                # for the active columns only
                method = self._method(loss, on(z))
                d = self.memory.direction(g, cols) if method is None else \
                    (self._newton if method == "primal" else self._newton_kernel)(loss, on(z), on(g), lam)
                dw, db = self.split(d)
                a = _mm(self.x(dtype), dw.to(dtype)).double() + self._bias(db)
                step = self._line_search(loss, on(theta), d, on(z), a, lam, on(f), loss.red(on(g) * d))
                if step is None:  # no decrease possible at this precision
                    break
                info["newton_iter"] += method is not None
                if cols is None:
                    theta_new, z = theta + step * d, z + step * a
                    lv, lg = self.loss_grad(z, dtype)
                else:  # the converged columns' z, loss and gradient are unchanged
                    theta_new = theta.index_add(1, cols, step * d)
                    zc = on(z) + step * a
                    z = z.index_copy(1, cols, zc)
                    lvc, lgc = self.loss_grad(zc, dtype, loss)
                    lv, lg = lv.index_copy(0, cols, lvc), lg.index_copy(1, cols, lgc)
                f, g_new = self.with_reg(theta_new, lv, lg, lam)
                if self.newton in (None, "active"):  # only L-BFGS steps use the curvature pairs
                    self.memory.push(theta_new - theta, g_new - g)
                theta, g = theta_new, g_new
                gmax, last = float(g.abs().max()), gmax
                info["n_iter"] += 1
                self._drift += 1
                info["float64_iter"] += dtype == torch.float64
                # Newton steps at least halve the gradient until float32 rounding of the GEMMs stalls them short of
                # a tight tol: then finish in float64 (left alone, float32 would take many steps that barely move
                # until its line search finds no decrease).
                stalled = stalled + 1 if method is not None and gmax > 0.5 * last else 0
                if dtype == torch.float32 and stalled >= STALLED_NEWTON:
                    break
            if gmax <= self.tol or info["n_iter"] >= self.max_iter:
                break
        newton = "newton-primal" if self.newton == "primal" else "newton-kernel"
        if info["newton_iter"] == 0:  # no step taken, or L-BFGS steps only
            method = newton if self.newton in ("primal", "kernel") else "lbfgs"
        else:
            method = newton if info["newton_iter"] == info["n_iter"] else f"lbfgs+{newton}"
        info.update(method=method, grad_max=gmax, converged=gmax <= self.tol, objective=float(f.sum()),
                    fit_s=time.perf_counter() - t0, device=self.dev.type)
        self._last = (theta, z, lv, lg)
        return theta, info

    def _method(self, loss: _Loss, z: torch.Tensor) -> str | None:
        """This iteration's step: "primal" or "kernel" Newton, or None (L-BFGS). In "active" mode: kernel Newton
        when its cost over the rows inside the margin (the most of any column) is within NEWTON_FLOPS."""
        if self.newton != "active":
            return self.newton
        rows = int((loss.t * z < 1).sum(0).max())
        return "kernel" if self._kernel_cost(rows, z.shape[1]) <= NEWTON_FLOPS else None

    def _kernel_cost(self, rows: int, columns: int) -> float:
        return newton_costs(self.n, self.d, columns, rows)[1]

    def _newton(self, loss: _Loss, z: torch.Tensor, g: torch.Tensor, lam: float) -> torch.Tensor:
        """-H^-1 g per column, H = lam diag(reg_mask) + X~^T diag(curvature) X~ (X~: the features and the intercept's
        column). For the squared hinge this is the minimiser of the quadratic that the objective is on the current
        margin set, so a step or two per change of that set converge (a finite Newton method). A column whose H
        is singular (the free intercept with no row inside the margin) gets a small ridge."""
        if self._xq is None:
            ones = torch.full((1, self.n), 1.0 if self.scaling is None else self.scaling, dtype=torch.float64,
                              device=self.dev)
            self._xq = torch.cat([self.xt32.double(), ones])
        k, w = z.shape[1], loss.curvature(z)
        if self._hess is None or not torch.equal(w, self._hess[0]):  # (small Cs: the same rows step after step)
            self._hess = (w, self._curvature_gram(w))
        h = self._hess[1] + torch.diag_embed((lam * self.reg_mask[:, 0]).expand(k, -1))
        chol, bad = _factor(h, floor=1.0)
        d = -torch.cholesky_solve(g.T[..., None], chol)[..., 0].T
        return torch.where(bad[None] == 0, d, -g)  # still singular: a gradient step

    def _curvature_gram(self, w: torch.Tensor) -> torch.Tensor:
        """X~^T diag(w_k) X~ for each column k of the curvature w (n x columns): columns x (d+1) x (d+1). Rows with
        zero curvature add nothing (squared hinge: the rows outside the margin, most of them at large C), so when
        every column has at most 2/3 of its rows inside, each column's product runs over those rows only (padded
        with zero-weight rows to the largest count): at large C most rows are outside, so several times fewer flops."""
        xq, kc = self._xq, w.shape[1]
        inside = w > 0
        rows = max(int(inside.sum(0).max()), 1)
        if rows > 2 * self.n // 3:
            return (xq[None] * w.T[:, None, :]) @ xq.T
        order = torch.sort((~inside).to(torch.uint8), dim=0, stable=True)[1][:rows]  # inside rows first
        a = xq.T.index_select(0, order.T.reshape(-1)).view(kc, rows, -1) * w.gather(0, order).sqrt().T[..., None]
        return a.transpose(1, 2) @ a

    def _newton_kernel(self, loss: _Loss, z: torch.Tensor, g: torch.Tensor, lam: float) -> torch.Tensor:
        """The Newton step of `_newton` when n < d + 1. With W = diag(curvature) of a column and X_r its regularised
        columns (the features; with `intercept_scaling`, also the constant one), Woodbury gives
        (lam I + X_r^T W X_r)^-1 v = (v - X_r^T W^1/2 B^-1 W^1/2 X_r v) / lam,  B = lam I + W^1/2 X_r X_r^T W^1/2
        (n x n, positive definite). A free intercept is eliminated by its Schur complement."""
        x = self.x(torch.float64)  # n x d (centred unless the intercept is a scaled constant feature)
        if self._gram is None:
            self._gram = x @ x.T + (0.0 if self.scaling is None else self.scaling ** 2)
        w = loss.curvature(z)
        sw = w.sqrt()
        # Rows with zero curvature (squared hinge: outside the margin) have B's identity rows and a zero right-hand
        # side: each column's system is its rows inside the margin, padded with outside rows to the largest count.
        inside = w > 0
        rows = max(int(inside.sum(0).max()), 1)
        kc = z.shape[1]
        order = None if rows == self.n else torch.sort((~inside).to(torch.uint8), dim=0, stable=True)[1][:rows]
        swo = sw if order is None else sw.gather(0, order)  # rows x columns; padding rows have 0
        if order is None:
            gram = self._gram[None]
        else:  # each column's principal submatrix (two 1-D gathers: a 2-D advanced index would first build a
            # broadcast index tensor of the same size as the result)
            gram = self._gram.index_select(0, order.T.reshape(-1)).view(kc, rows, self.n)
            gram = gram.gather(2, order.T[:, None, :].expand(kc, rows, rows))
        b = gram * swo.T[:, :, None] * swo.T[:, None, :]
        b.diagonal(dim1=1, dim2=2).add_(lam)
        chol, bad = _factor(b, floor=0.0)  # lam I + PSD: fails only when extremely ill-conditioned

        def solve(v: torch.Tensor) -> torch.Tensor:  # v: regularised rows of theta x columns x right-hand sides
            r = v.shape[2]
            xv = _mm(x, v[: self.d].reshape(self.d, -1)).reshape(self.n, kc, r)
            if self.scaling is not None:
                xv = xv + self.scaling * v[self.d :]
            xo = xv if order is None else xv.gather(0, order[..., None].expand(rows, kc, r))
            u = swo[..., None] * torch.cholesky_solve((swo[..., None] * xo).permute(1, 0, 2), chol).permute(1, 0, 2)
            if order is not None:
                u = torch.zeros_like(xv).scatter_(0, order[..., None].expand(rows, kc, r), u)
            back = _mm(x.T, u.reshape(self.n, -1)).reshape(self.d, kc, r)
            if self.scaling is not None:
                back = torch.cat([back, self.scaling * u.sum(0, keepdim=True)])
            return (v - back) / lam

        if self.scaling is not None:
            d = -solve(g[..., None])[..., 0]
        else:  # both solves (the gradient's and the intercept's Hessian column) in one
            gw, gb = g[: self.d], g[self.d]
            hwb, hbb = _mm(x.T, w), w.sum(0)  # the intercept's Hessian column
            both = solve(torch.stack([gw, hwb], 2))
            a, c = both[..., 0], both[..., 1]
            schur = hbb - (hwb * c).sum(0)
            ok = schur > 1e-12 * hbb.clamp_min(1e-300)
            db = torch.where(ok, (-gb + (hwb * a).sum(0)) / torch.where(ok, schur, 1.0), 0.0)
            d = -torch.cat([a + c * db, -db[None]])
        return torch.where(bad[None] == 0, d, -g)  # still not factorised: a gradient step

    def _line_search(self, loss: _Loss, theta, d, z, a, lam, f0, g0) -> torch.Tensor | None:
        """A step per group satisfying Armijo, refined by Newton steps on the 1-D restriction (no GEMM needed: the
        decision values move along a = X d). Groups without a descent direction get step 0; None if all do."""
        red, mask = loss.red, self.reg_mask
        tt, td, dd = red(mask * theta * theta), red(mask * theta * d), red(mask * d * d)
        active = g0 < 0
        t = torch.ones_like(g0)
        best_t, best_v = torch.zeros_like(g0), torch.full_like(g0, math.inf)
        done = ~active
        line = loss.prepare(z, a)
        for _ in range(30):
            v, d1, d2 = loss.along(line, t)
            v, d1, d2 = v + 0.5 * lam * (tt + 2 * t * td + t * t * dd), d1 + lam * (td + t * dd), d2 + lam * dd
            armijo = active & torch.isfinite(v) & (v <= f0 + 1e-4 * t * g0)
            better = armijo & (v < best_v)
            best_t, best_v = torch.where(better, t, best_t), torch.where(better, v, best_v)
            newton = torch.clamp_min(t - d1 / torch.where(d2 > 0, d2, torch.ones_like(d2)), 0.1 * t)
            settled = (d1.abs() <= 0.1 * g0.abs()) | (d2 <= 0) | ((newton - t).abs() <= 1e-3 * t)
            done = done | (armijo & settled) | (~armijo & (best_t > 0))  # or the Newton step overshot
            if bool(done.all()):
                break
            t = torch.where(done, t, torch.where(armijo, newton, 0.5 * t))
        return None if not bool((best_t > 0).any()) else best_t


def _factor(m: torch.Tensor, floor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched Cholesky of symmetric matrices; those that fail are retried with a ridge of 1e-10 x their mean
    diagonal (the trace at least `floor`). Returns (factors, info): info != 0 where even that failed."""
    chol, bad = torch.linalg.cholesky_ex(m)
    if bool(bad.any()):
        ridge = 1e-10 * m.diagonal(dim1=1, dim2=2).sum(1).clamp_min(floor) / m.shape[1]
        chol, bad = torch.linalg.cholesky_ex(m + torch.diag_embed(ridge[:, None].expand(-1, m.shape[1])))
    return chol, bad


def _encode_targets(y, loss: str) -> tuple[np.ndarray, np.ndarray, bool, bool]:
    """(classes_, targets n x k, multinomial?, multi-label?) as the solver wants them, from a validated y. A 0/1
    indicator matrix: multi-label, one column per label. Binary y: one column (as LinearSVC and LogisticRegression
    do). A column vector is raveled (with scikit-learn's DataConversionWarning)."""
    if issparse(y):
        y = y.toarray()
    kind = type_of_target(y, input_name="y")
    if kind == "multilabel-indicator":
        return np.arange(y.shape[1]), 2.0 * (y > 0) - 1, False, True
    check_classification_targets(y)
    if kind not in ("binary", "multiclass"):
        raise ValueError(f"y is {kind}; valid: class labels (1-D) or a 0/1 multi-label indicator matrix")
    y = column_or_1d(y, warn=True)
    classes, idx = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"y has one class ({classes[0]!r}); a classifier needs at least two")
    onehot = np.eye(len(classes))[idx]
    if len(classes) == 2:
        return classes, 2.0 * onehot[:, 1:] - 1, False, False
    if loss == "log":
        return classes, onehot, True, False
    return classes, 2.0 * onehot - 1, False, False


class LinearPathClassifier(ClassifierMixin, BaseEstimator):
    """A scikit-learn classifier (drop-in for LinearSVC / LogisticRegression at one C) that can also walk a C path.

    `fit(X, y)` fits at `C`; `coef_init` / `intercept_init` (or `warm_start=True`, from the current `coef_`) start
    it from given parameters (the probe's refit at the chosen C starts from the train split's solution there).
    `start_path(X, y, X_val)` returns a `CPath`: its `solve(C)` fits this estimator at any C, warm-started from a C
    already solved (the probe's C search, src/probe/linear.py); `fit_path(X, y, Cs)` solves a list of Cs in order.

    loss: "squared_hinge" (LinearSVC's default) or "log" (multinomial LogisticRegression).
    intercept_scaling: None = unregularised intercept; a number = liblinear's regularised constant feature.
    device: "auto" (the GPU if there is one), "cpu", "cuda", ...
    y: class labels (1-D), or a 0/1 indicator matrix (n_samples, n_labels) for multi-label targets (one binary
    problem per label, as OneVsRestClassifier would fit them).
    """

    _parameter_constraints: dict = {
        "loss": [StrOptions(set(LOSSES))],
        "C": [Interval(Real, 0, None, closed="neither")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "intercept_scaling": [None, Interval(Real, 0, None, closed="neither")],
        "device": [str, torch.device],
        "warm_start": ["boolean"],
    }

    def __init__(self, loss: str = "squared_hinge", C: float = 1.0, tol: float = 1e-4, max_iter: int = 1000,
                 intercept_scaling: float | None = None, device: str = "auto", warm_start: bool = False):
        self.loss = loss
        self.C = C
        self.tol = tol
        self.max_iter = max_iter
        self.intercept_scaling = intercept_scaling
        self.device = device
        self.warm_start = warm_start

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True  # a 0/1 indicator y: one binary problem per label
        tags.target_tags.multi_output = True
        return tags

    def _solver(self, X, y) -> PathSolver:
        """The solver on validated training data; sets classes_, multilabel_, n_features_in_."""
        X, y = validate_data(self, X, y, dtype=(np.float32, np.float64), multi_output=True)
        self.classes_, targets, multinomial, self.multilabel_ = _encode_targets(y, self.loss)
        return PathSolver(X, targets, self.loss, multinomial, _device(self.device), self.intercept_scaling,
                          self.tol, self.max_iter)

    def _theta_from_coef(self, s: PathSolver, coef, intercept) -> torch.Tensor | None:
        """coef / intercept (this estimator's layout) as the solver's parameters, if their shapes agree."""
        if coef is None or np.shape(coef) != (s.k, s.d):
            return None
        w = torch.as_tensor(np.asarray(coef).T, dtype=torch.float64, device=s.dev)
        b = torch.as_tensor(np.zeros(s.k) if intercept is None else intercept, dtype=torch.float64, device=s.dev)
        if s.scaling is None:
            b = b + s.mean.double() @ w  # centred features: b_c = b + mean . w
        else:
            b = b / s.scaling
        return torch.cat([w, b[None]])

    def _set_coef(self, s: PathSolver, theta: torch.Tensor, info: dict) -> None:
        """Leave this estimator fitted at the solver's parameters `theta` (info: that solve's diagnostics)."""
        w, b = s.split(theta)
        if s.scaling is None:
            b = b - s.mean.double() @ w
        else:
            b = b * s.scaling
        self.coef_ = w.T.cpu().numpy().copy()
        self.intercept_ = b.cpu().numpy().copy()
        self.n_iter_, self.converged_, self.grad_max_ = info["n_iter"], info["converged"], info["grad_max"]

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, coef_init=None, intercept_init=None):
        """Fit at `C`. coef_init (n_classes or 1, n_features) / intercept_init: the starting point (as
        SGDClassifier's); without them, `warm_start=True` starts from the current coef_ / intercept_ when their
        shapes fit, otherwise the start is zero."""
        if coef_init is not None:
            init = (coef_init, intercept_init)
        elif intercept_init is not None:
            raise ValueError("intercept_init needs coef_init")
        else:
            init = (self.coef_, self.intercept_) if self.warm_start and hasattr(self, "coef_") else None
        s = self._solver(X, y)
        theta0 = None if init is None else self._theta_from_coef(s, *init)
        if theta0 is None and coef_init is not None:
            raise ValueError(f"coef_init has shape {np.shape(coef_init)}; expected {(s.k, s.d)} for this X and y")
        if intercept_init is not None and np.shape(intercept_init) != (s.k,):
            raise ValueError(f"intercept_init has shape {np.shape(intercept_init)}; expected {(s.k,)}")
        theta, info = s.solve(float(self.C), theta0)
        self._set_coef(s, theta, info)
        self.path_ = [info]
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def start_path(self, X, y, X_val=None) -> "CPath":
        """A C path on the training set (X, y): see `CPath`. With `X_val`, every solve also returns the decision
        values on those rows (validated and moved to the solver's device once, for the whole path)."""
        s = self._solver(X, y)
        self.path_ = []
        if X_val is not None:
            X_val = validate_data(self, X_val, reset=False, dtype=(np.float32, np.float64))
        return CPath(self, s, X_val)

    def fit_path(self, X, y, Cs, X_val=None) -> list[dict]:
        """Fit at every C of `Cs` in the given order, each warm-started from the previous solution (give them in
        increasing order). Returns each C's diagnostics (see `CPath.solve`; `val_decision` if X_val is given).
        Ends fitted at the last C."""
        path, previous = self.start_path(X, y, X_val), None
        for C in Cs:
            path.solve(C, warm_from=previous)
            previous = float(C)
        return self.path_

    def _decisions_at(self, s: PathSolver, theta: torch.Tensor, xv: torch.Tensor) -> np.ndarray:
        """decision_function of the solver's parameters `theta` on float32 rows on the solver's device: one float32
        GEMM there (no float64 copy of the rows per C)."""
        w, b = s.split(theta)
        scores = (_mm(xv, w.float()).double() + (s._bias(b) - s.mean.double() @ w)).cpu().numpy()
        return scores[:, 0] if scores.shape[1] == 1 and not self.multilabel_ else scores

    def decision_function(self, X):
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        scores = X @ self.coef_.T + self.intercept_
        return scores[:, 0] if scores.shape[1] == 1 and not self.multilabel_ else scores

    def predict(self, X):
        return self.labels(self.decision_function(X))

    def labels(self, scores: np.ndarray) -> np.ndarray:
        """predict() from decision values (e.g. a path's `val_decision`)."""
        if self.multilabel_:
            return (scores > 0).astype(int)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[scores.argmax(1)]

    @available_if(lambda self: self.loss == "log")
    def predict_proba(self, X):
        """Class probabilities (loss="log" only): softmax, or per-label sigmoids for a multi-label target."""
        z = torch.as_tensor(self.decision_function(X))
        if z.ndim == 1:
            p1 = torch.sigmoid(z)
            return torch.stack([1 - p1, p1], 1).numpy()
        return (torch.sigmoid(z) if self.multilabel_ else torch.softmax(z, 1)).numpy()


class CPath:
    """A C path of a `LinearPathClassifier` on one training set (`LinearPathClassifier.start_path`).

    `solve(C)` fits the estimator at any C, warm-started from the solution at a C already solved, and leaves it
    fitted at C (`coef_`, `intercept_`, `C`, `n_iter_`, ...; `path_` lists every solve's diagnostics). The training
    rows stay on the solver's device and every solution is kept, so Cs may come in any order (the probe's C search
    walks the grid upwards and may then extend it downwards)."""

    def __init__(self, estimator: LinearPathClassifier, solver: PathSolver, X_val=None):
        self.estimator = estimator
        self._solver = solver
        self._val = None if X_val is None else torch.as_tensor(np.asarray(X_val, dtype=np.float32), device=solver.dev)
        self._thetas: dict[float, torch.Tensor] = {}

    @property
    def Cs(self) -> list[float]:
        """The Cs solved so far, in the order first solved."""
        return list(self._thetas)

    @property
    def device(self) -> str:
        """Where the solver runs ("cpu", "cuda")."""
        return self._solver.dev.type

    def solve(self, C: float, warm_from: float | str | None = "nearest") -> dict:
        """Fit at C, starting from the solution at `warm_from`: a C already solved, "nearest" (the solved C
        nearest in log C; zeros for the first) or None (zeros). Returns the diagnostics: C, n_iter, float64_iter,
        newton_iter, method, grad_max, converged, objective, fit_s, device, and `val_decision` (decision values on
        the path's X_val) if it has one."""
        C = float(C)
        if warm_from == "nearest":
            warm_from = min(self._thetas, key=lambda s: abs(np.log(s / C)), default=None)
        elif warm_from is not None and float(warm_from) not in self._thetas:
            raise ValueError(f"warm_from={warm_from!r} has not been solved; solved: {self.Cs}")
        est, s = self.estimator, self._solver
        theta, info = s.solve(C, None if warm_from is None else self._thetas[float(warm_from)])
        self._thetas[C] = theta
        est.C = C
        est._set_coef(s, theta, info)
        est.path_.append(info)
        if self._val is not None:
            info["val_decision"] = est._decisions_at(s, theta, self._val)
        return info
