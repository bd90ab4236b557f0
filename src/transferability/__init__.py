"""Transferability estimators: score a (source, layer, target) from features alone, without training a probe.

  logme   LogME (You et al., 2021): mean per-class log marginal evidence of a Bayesian linear model on the features
  hscore  H-score (Bao et al., 2019): tr(cov(f)^-1 cov(E[f | y]))
  leep    LEEP (Nguyen et al., 2020): from the source head's class probabilities on the target images
  nce     NCE (Tran et al., 2019): -H(Y | Z) with Z the source head's hard predictions
All are numpy, order-invariant in the rows, and higher = expected to transfer better.
"""

from src.transferability.estimators import ESTIMATORS, Estimator, hscore, leep, logme, nce, register_estimator

__all__ = ["ESTIMATORS", "Estimator", "register_estimator", "hscore", "leep", "logme", "nce"]
