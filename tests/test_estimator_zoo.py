"""experiment=estimator_zoo end to end at a tiny size: several source nets x targets, every estimator recorded,
and the report's zoo table (weighted Kendall tau per target, CI, margins over the static baselines)."""

import json
import math

import numpy as np
import pytest
from scipy.stats import weightedtau

from src.report import stats as S

from src.transferability.estimators import ESTIMATORS
from tests.conftest import TINY_TARGET, run_cli

pytestmark = pytest.mark.slow

TINY_ZOO_SOURCE = ["source.images_per_class=40", "source.val_per_class=10", "source.epochs=2",
                   "trainer.optim.batch_size=32", "trainer.num_threads=1"]
NETS = "alexnet_tiny,vgg_tiny_8,resnet_tiny_10"


def test_tiny_zoo_records_every_estimator_and_reports_the_tau_table(cache_dir, tmp_path):
    sweep = tmp_path / "zoo"
    r = run_cli("experiment=estimator_zoo", f"zoo_net={NETS}", "target=synth_objects_new,synth_count",
                "source.num_classes=4", *TINY_ZOO_SOURCE, *TINY_TARGET, f"hydra.sweep.dir={sweep}")
    assert r.returncode == 0, r.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in sweep.glob("*/result.json")]
    assert len(results) == 6 and all(res["status"] == "ok" for res in results)
    cheap = {name for name, e in ESTIMATORS.items() if e.cost == "cheap"}
    for res in results:
        assert cheap <= set(res["metrics"]["transferability"])
        assert res["metrics"]["source_num_params"] > 0
    # The three nets are three different sizes.
    assert len({res["metrics"]["source_num_params"] for res in results}) == 3
    report = (sweep / "report" / "report.md").read_text()
    assert "## Estimators on the source-net zoo" in report and "(ground truth: probe)" in report
    assert "| sfda |" in report and "source_val_acc (static)" in report and "parameter count" in report
    zoo = json.loads((sweep / "report" / "analysis.json").read_text())["estimator_zoo"]["probe"]
    assert zoo["nets_per_target"] == {"synth_objects_new": 3, "synth_count": 3}
    names = {row["estimator"] for row in zoo["summary"]}
    assert cheap | {"etran", "source_val_acc", "source_num_params"} <= names
    # Every weighted tau agrees with scipy's on the jobs' own results: per target, the estimate of each net against
    # its probe score (a constant estimate ranks nothing: 0), and the mean over the targets.
    summary = {row["estimator"]: row["weighted_tau_mean"] for row in zoo["summary"]}
    for name in names:
        taus = []
        for target in ("synth_objects_new", "synth_count"):
            jobs = [res for res in results if res["factors"]["target"] == target]
            est = estimates(jobs, name)
            truth = np.array([res["metrics"]["target_score"] for res in jobs], float)
            known = np.isfinite(est)
            if known.sum() < 3 or len(set(truth[known])) < 2:
                assert zoo["weighted_tau"][target][name] is None, (name, target)
                continue
            # values equal up to rounding noise are one value (H-score's C - 1: 3.0 and 2.9999999999999996)
            e = S.snap_ties(est[known])
            tau = weightedtau(e, truth[known]).statistic if len(set(e)) > 1 else 0.0
            assert zoo["weighted_tau"][target][name] == pytest.approx(tau), (name, target)
            taus.append(tau)
        assert summary[name] == pytest.approx(np.mean(taus) if taus else math.nan, nan_ok=True), name


def estimates(jobs: list[dict], name: str) -> np.ndarray:
    """One target's value of an estimator (or static baseline) per net; ETran's published combination, 0.85 LDA +
    0.15 energy, each min-max scaled over the nets."""
    if name == "etran":
        def scaled(part):
            v = estimates(jobs, part)
            return (v - v.min()) / (v.max() - v.min()) if v.max() > v.min() else 0 * v
        return 0.85 * scaled("etran_lda") + 0.15 * scaled("etran_energy")
    static = name in ("source_val_acc", "source_num_params")
    return np.array([job["metrics"][name] if static else job["metrics"]["transferability"][name] for job in jobs],
                    float)
