"""The zoo table: weighted/plain Kendall tau per target, bootstrap CIs, margins over static baselines, regret."""

import numpy as np
import pandas as pd
import pytest

from src.report import stats as S
from src.report.zoo import calls, decide, inference, zoo_agreement, zoo_content


def _zoo_frame():
    rows = []
    truth = {"t1": [0.5, 0.6, 0.7, 0.8], "t2": [0.9, 0.4, 0.6, 0.5], "t3": [0.3, 0.2, 0.1, 0.4]}
    for target, scores in truth.items():
        for net, score in enumerate(scores):
            rows.append({"status": "ok", "target": target, "arch": "vgg", "width": ["tiny", "small"][net % 2],
                         "depth": 8 + 3 * (net // 2), "target_score": score, "tr_oracle": 10 * score,
                         "tr_reversed": -score, "tr_etran_lda": score, "tr_etran_energy": 1.0,
                         "source_val_acc": [0.1, 0.2, 0.3, 0.4][net]})
    rows.append({"status": "failed", "target": "t1", "arch": "vgg", "width": "tiny", "depth": 8})
    return pd.DataFrame(rows)


def test_taus_regret_and_margins():
    res = zoo_agreement(_zoo_frame())
    decide(res, S.holm(calls(res)))
    wtau, ktau, regret = res["weighted_tau"], res["kendall_tau"], res["regret"]
    assert res["nets_per_target"] == {"t1": 4, "t2": 4, "t3": 4}
    assert np.allclose(wtau.loc["oracle"], 1.0) and np.allclose(ktau.loc["oracle"], 1.0)
    assert np.allclose(wtau.loc["reversed"], -1.0) and np.allclose(ktau.loc["reversed"], -1.0)
    assert np.allclose(regret.loc["oracle"], 0.0)
    # Picking the reversed ranking's top net = the worst net: regret = best - worst per target.
    assert regret.loc["reversed"].to_dict() == pytest.approx({"t1": 0.3, "t2": 0.5, "t3": 0.3})
    # ETran's combination: energy constant, so it ranks like its LDA part.
    assert np.allclose(wtau.loc["etran"], 1.0)
    # Static baseline: source val accuracy 0.1..0.4 increases with the net index, the truth only on t1.
    assert ktau.loc["source_val_acc", "t1"] == pytest.approx(1.0)
    assert ktau.loc["source_val_acc", "t2"] == pytest.approx(stats_tau([0.1, 0.2, 0.3, 0.4], [0.9, 0.4, 0.6, 0.5]))
    m = res["margins"].set_index("estimator")
    assert m.loc["reversed", "margin_mean"] < 0 and not m.loc["reversed", "beats_baseline"]
    assert m.loc["reversed", "p_holm"] >= m.loc["reversed", "p"]  # adjusted over the 2 x 3 margins and comparisons
    summary = res["summary"].set_index("estimator")
    assert summary.loc["oracle", "ci_low"] == pytest.approx(1.0) and summary.loc["oracle", "ci_high"] == pytest.approx(1.0)
    notes, tables = zoo_content(res)
    first = tables[0][1]
    assert "oracle" in set(first["estimator"]) and "source_val_acc (static)" in set(first["estimator"])
    assert "source val accuracy" in set(tables[1][1]["baseline"])
    # 3 targets: the top estimator's lead over the others cannot be established, so no best is named
    assert res["best"] is None and any(n.startswith("No best estimator: ") and "tied with it" in n for n in notes)


def stats_tau(a, b):
    from scipy import stats

    return stats.kendalltau(a, b).statistic


def test_too_few_nets_gives_no_table():
    df = _zoo_frame()
    assert zoo_agreement(df[df["width"] == "tiny"], min_nets=3) == {}


def test_fine_tuning_is_a_second_ground_truth_for_the_same_estimates():
    from src.report.zoo import ground_truths

    df = _zoo_frame()
    df["finetune"] = "none"
    tuned = df[df["status"] == "ok"].copy()
    tuned["finetune"] = "last"
    tuned["target_score"] = -tuned["target_score"]  # fine-tuning reverses every ranking here
    tuned = tuned.drop(columns=[c for c in tuned if c.startswith("tr_")])  # fine-tuned runs record no estimates
    both = pd.concat([df, tuned], ignore_index=True)
    assert ground_truths(both) == ["finetune=last", "probe"]
    probe, ft = zoo_agreement(both, "probe"), zoo_agreement(both, "finetune=last")
    assert np.allclose(probe["weighted_tau"].loc["oracle"], 1.0)
    assert np.allclose(ft["weighted_tau"].loc["oracle"], -1.0)
    assert "(ground truth: finetune=last)" in zoo_content(ft)[1][0][0]


def test_a_best_estimator_is_named_only_when_it_beats_every_other_one():
    rng = np.random.default_rng(0)
    targets = [f"t{j}" for j in range(8)]
    base = rng.normal(0.3, 0.1, size=8)
    taus = {"strong": np.clip(base + 0.5, -1, 1), "weak": base, "weaker": base - 0.05 + rng.normal(0, 0.02, 8),
            "source_val_acc": base - 0.1}
    res = inference(pd.DataFrame(taus, index=targets).T + rng.normal(0, 0.01, (4, 8)))
    decide(res, S.holm(calls(res)))
    assert res["best"] == "strong"
    taus["rival"] = taus["strong"] + rng.normal(0, 0.05, 8)  # as good as the top one: a tie, not a best
    res = inference(pd.DataFrame(taus, index=targets).T)
    decide(res, S.holm(calls(res)))
    assert res["best"] is None and set(res["tied_with_top"]) == {"strong", "rival"}


def test_cells_outside_an_estimators_regime_are_counted_and_left_out_of_its_inside_tau():
    """SFDA on a net whose features outnumber the target's images (d/(n-C) >= 0.6) is saturated: that cell is
    marked, counted, and the estimator's inside tau is computed on the other nets only."""
    rows = []
    truth = {"t1": [0.5, 0.6, 0.7, 0.8, 0.9], "t2": [0.2, 0.4, 0.6, 0.5, 0.3], "t3": [0.3, 0.2, 0.1, 0.4, 0.5]}
    for target, scores in truth.items():
        for net, score in enumerate(scores):
            dim = 4096 if net == 4 else 64  # the last net: an fc layer wider than the 380 images - 20 classes
            sfda = 1.0 if net == 4 else score  # saturated there, a perfect ranker elsewhere
            rows.append({"status": "ok", "target": target, "arch": "vgg", "width": "tiny", "depth": 8 + net,
                         "target_score": score, "tr_sfda": sfda, "tr_logme": score,
                         "estimate_inputs_n": 400, "estimate_inputs_classes": 20, "estimate_inputs_dim": dim})
    res = zoo_agreement(pd.DataFrame(rows))
    summary = res["summary"].set_index("estimator")
    assert summary.loc["sfda", "cells_outside_regime"] == 3 and summary.loc["logme", "cells_outside_regime"] == 0
    assert summary.loc["sfda", "weighted_tau_mean_inside"] == pytest.approx(1.0)  # perfect on the nets inside
    assert summary.loc["sfda", "weighted_tau_mean"] < 1.0  # the saturated net's 1.0 spoils the whole ranking
    notes, tables = zoo_content(res)
    table = tables[0][1].set_index("estimator")
    assert table.loc["sfda", "cells outside its regime"] == "3" and any("outside its regime" in n for n in notes)


def test_a_static_baseline_constant_within_every_target_is_left_out_and_named():
    """The layers of one net share its parameter count: that baseline ranks nothing, so it gets no row, no
    margins and no calls in the Holm family; the notes say why. Intervals stay inside a tau's range."""
    df = _zoo_frame().assign(source_num_params=1000)
    res = zoo_agreement(df)
    assert res["constant_baselines"] == ["source_num_params"]
    assert "source_num_params" not in set(res["summary"]["estimator"])
    assert set(res["margins"]["baseline"]) == {"source_val_acc"}
    notes, _ = zoo_content(res)
    assert any(n.startswith("Static baseline left out: parameter count is the same for every net") for n in notes)
    assert (res["summary"]["ci_low"].dropna() >= -1).all() and (res["summary"]["ci_high"].dropna() <= 1).all()
    assert (res["margins"]["ci_low"].dropna() >= -2).all() and (res["margins"]["ci_high"].dropna() <= 2).all()


def test_tied_top_picks_count_as_a_random_pick_in_either_order():
    """An estimator that ties nets at its top (LEEP reads only the source head, so every layer of one net ties) has
    no single pick: its regret is that of a random pick among the tied, whatever order the jobs are listed in."""
    from src.report.zoo import selection_regret

    df = _zoo_frame()
    df["tr_tied"] = np.where(df["width"] == "tiny", 1.0, 0.0)  # nets 0 and 2 of each target tie at the top
    expected = {"t1": 0.8 - (0.5 + 0.7) / 2, "t2": 0.9 - (0.9 + 0.6) / 2, "t3": 0.4 - (0.3 + 0.1) / 2}
    for frame in (df, df.iloc[::-1]):
        assert zoo_agreement(frame)["regret"].loc["tied"].to_dict() == pytest.approx(expected)
        picked = selection_regret(frame).set_index(["estimator", "target"])
        assert picked.loc["tied", "regret"].to_dict() == pytest.approx(expected)
        assert (picked.loc["tied", "tied picks"] == 2).all() and (picked.loc["oracle", "tied picks"] == 1).all()


def test_estimates_equal_up_to_rounding_noise_rank_nothing():
    """H-score is exactly C - 1 in its degenerate regime but computes as 48.999999999999986 on one net and 49.0 on
    another: a rank correlation must not read an order into those last bits."""
    v = S.snap_ties(np.array([49.0, 48.999999999999986, 49.00000000000001, 30.0, np.nan]))
    assert v[0] == v[1] == v[2] and v[3] == 30.0 and np.isnan(v[4])
    df = _zoo_frame()
    df["tr_noise"] = 49.0 + np.where(df["target_score"] > 0.45, 1.4e-14, -1.4e-14)  # "ranks" like the truth
    res = zoo_agreement(df)
    assert (res["weighted_tau"].loc["noise"] == 0.0).all()


def test_a_static_baseline_above_the_top_estimator_is_named_next_to_it():
    """A width sweep's zoo (experiment=width_study replicates=3): the nets are the widths, so the parameter count
    ranked them better (mean weighted tau 0.823) than any estimator, yet the note said 'No best estimator:
    transrate has the highest mean'. It is the highest of the estimators; the note now names the baseline above."""
    df = _zoo_frame().drop(columns=["tr_oracle", "tr_etran_lda", "tr_etran_energy"])
    ok = df["status"] == "ok"
    df.loc[ok, "source_num_params"] = df.loc[ok, "target_score"] * 1e6  # ranks every target's nets exactly
    df.loc[ok, "tr_noisy"] = df.loc[ok, "target_score"] + np.tile([0.3, -0.3, 0.0, 0.0], 3)
    res = zoo_agreement(df)
    decide(res, S.holm(calls(res)))
    notes, _ = zoo_content(res)
    (note,) = [n for n in notes if n.startswith("No best estimator") or n.startswith("Best estimator")]
    assert "has the highest mean weighted tau of the estimators" in note
    assert "the static baseline parameter count (1.000) ranks the nets better on average than noisy (0.562)" in note
    # No static baseline above the top estimator: nothing said.
    res = zoo_agreement(_zoo_frame())
    decide(res, S.holm(calls(res)))
    assert not any("ranks the nets better" in n for n in zoo_content(res)[0])
