"""Transferability estimators: score a (source, layer, target) from features alone, without training a probe.

  logme         LogME (You et al., ICML 2021): mean per-class log evidence of a Bayesian linear model
  hscore        H-score (Bao et al., 2019): tr(cov(f)^-1 cov(E[f | y]))
  leep          LEEP (Nguyen et al., ICML 2020): from the source head's class probabilities on the target images
  nce           NCE (Tran et al., ICCV 2019): -H(Y | Z) with Z the source head's hard predictions
  sfda          SFDA (Shao et al., ECCV 2022): regularised Fisher posteriors after self-challenging ConfMix
  transrate     TransRate (Huang et al., ICML 2022): coding rate of the features minus that given the class
  gbc           GBC (Pandy et al., CVPR 2022): -sum of Bhattacharyya coefficients between class Gaussians (PCA 64)
  etran_lda     ETran's LDA part (Gholami et al., ICCV 2023); etran_energy: its label-free energy part
  knn           leave-one-out k-NN accuracy (k = 5): the plain baseline
  nleep         N-LEEP (Li et al., CVPR 2021): LEEP through a GMM on PCA features (expensive: only when asked)
Inputs are the chosen layer's features unless noted (leep, nce: the source head). Where a paper and its public
code differ the code is followed (its numbers are the published ones); each docstring says where. All are
invariant to relabelling the classes and to the order of the rows, and higher = expected to transfer better.
The registry (`ESTIMATORS`, `register_estimator`) is in `estimators.py`.
"""

from src.transferability.estimators import ESTIMATORS, Estimator, hscore, leep, logme, nce, register_estimator

__all__ = ["ESTIMATORS", "Estimator", "register_estimator", "hscore", "leep", "logme", "nce"]
