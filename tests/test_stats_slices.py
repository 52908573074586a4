"""Tests of the per-slice comparison table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from screenspot_eval.stats.paired import DEFAULT_SEED, format_p, holm, mcnemar_exact
from screenspot_eval.stats.signflip import sign_flip_test
from screenspot_eval.stats.slices import MISSING_VALUE, TABLE_COLUMNS, compare_slices


def make_frame(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, n // 4, n)
    apps = np.array(["vscode", "excel", "blender", "matlab", "autocad", "word"])
    app = apps[cluster % apps.size]  # an application is a property of the screenshot
    groups = {
        "vscode": "Dev",
        "excel": "Office",
        "word": "Office",
        "blender": "Creative",
        "matlab": "Scientific",
        "autocad": "CAD",
    }
    a = rng.random(n) < 0.37
    b = a.copy()
    flip = rng.random(n) < 0.12
    b[flip] = ~b[flip]
    wf_a = ~a & (rng.random(n) < 0.02)
    wf_b = ~b & (rng.random(n) < 0.04)
    return pd.DataFrame(
        {
            "id": [f"item_{i}" for i in range(n)],
            "cluster": [f"img_{c}.png" for c in cluster],
            "group": [groups[x] for x in app],
            "ui_type": rng.choice(["text", "icon"], n),
            "application": app,
            "platform": np.where(cluster % 2 == 0, "windows", "macos"),
            "correct_a": a,
            "correct_b": b,
            "wrong_format_a": wf_a,
            "wrong_format_b": wf_b,
        }
    )


def test_table_shape_and_overall_row() -> None:
    df = make_frame()
    res = compare_slices(df, n_resamples=2000)
    t = res.table
    assert tuple(t.columns) == TABLE_COLUMNS
    row = res.overall()
    a, b = df["correct_a"].to_numpy(), df["correct_b"].to_numpy()
    assert row["n"] == len(df)
    assert row["acc_a"] == pytest.approx(a.mean())
    assert row["acc_b"] == pytest.approx(b.mean())
    assert row["delta_pp"] == pytest.approx(100 * (b.mean() - a.mean()))
    assert row["a_only"] == int((a & ~b).sum()) and row["b_only"] == int((~a & b).sum())
    assert row["p_holm"] == row["p"]  # overall: one test, unadjusted
    d = df["correct_b"].astype(int) - df["correct_a"]
    assert row["p"] == sign_flip_test(d, clusters=df["cluster"]).p_value  # over screenshots
    assert row["p_mcnemar"] == mcnemar_exact(int(row["a_only"]), int(row["b_only"]))
    assert row["test"] == "exact" and row["mde_pp"] > row["mdd_pp"] > 0
    assert row["ci_low_pp"] <= row["delta_pp"] <= row["ci_high_pp"]
    assert row["n_clusters"] == df["cluster"].nunique()
    assert row["wrong_format_a"] == pytest.approx(df["wrong_format_a"].mean())
    assert row["wrong_format_delta_pp"] == pytest.approx(
        100 * (df["wrong_format_b"].mean() - df["wrong_format_a"].mean())
    )
    assert res.settings["seed"] == DEFAULT_SEED
    assert res.settings["n_resamples"] == 2000
    assert t.attrs["settings"] == res.settings


def test_families_partition_items_and_holm_is_within_family() -> None:
    df = make_frame()
    t = compare_slices(df, n_resamples=500).table
    for family in ("group", "ui_type", "application", "platform"):
        rows = t[t["slice"] == family]
        assert sorted(rows["value"]) == sorted(df[family].unique())
        assert rows["n"].sum() == len(df)
        assert rows[["both_right", "a_only", "b_only", "both_wrong"]].to_numpy().sum() == len(df)
        np.testing.assert_allclose(rows["p_holm"], holm(rows["p"].to_numpy()))
        assert (rows["p_holm"] >= rows["p"] - 1e-15).all()
    vs = t[(t["slice"] == "application") & (t["value"] == "vscode")].iloc[0]
    sub = df[df["application"] == "vscode"]
    assert vs["n"] == len(sub)
    assert vs["n_clusters"] == sub["cluster"].nunique()
    assert vs["acc_b"] == pytest.approx(sub["correct_b"].mean())


def test_reproducible_and_seed_matters() -> None:
    df = make_frame()
    t1 = compare_slices(df, n_resamples=500, seed=11).table
    t2 = compare_slices(df, n_resamples=500, seed=11).table
    t3 = compare_slices(df, n_resamples=500, seed=12).table
    pd.testing.assert_frame_equal(t1, t2)
    assert not np.allclose(t1["ci_low_pp"], t3["ci_low_pp"])


def test_item_resampling_option() -> None:
    df = make_frame()
    res = compare_slices(df, n_resamples=500, resample="item")
    assert res.settings["resample_unit"] == "item"
    assert res.overall()["n_clusters"] == len(df)
    with pytest.raises(ValueError):
        compare_slices(df, resample="screenshot")  # type: ignore[arg-type]


def test_empty_frame_does_not_crash() -> None:
    df = make_frame().iloc[0:0]
    res = compare_slices(df, n_resamples=100)
    assert list(res.table["slice"]) == ["overall"]
    row = res.overall()
    assert row["n"] == 0
    for col in ("acc_a", "delta_pp", "ci_low_pp", "p", "p_mcnemar", "mdd_pp", "mde_pp"):
        assert math.isnan(row[col])
    assert res.headline("A", "B") == (
        "B vs A: n/a pp [n/a, n/a], screenshot sign-flip p = n/a, item McNemar p = n/a, "
        "0 paired samples in 0 screenshots"
    )


def test_all_agree() -> None:
    df = make_frame(200)
    df["correct_b"] = df["correct_a"]
    df["wrong_format_b"] = df["wrong_format_a"]
    t = compare_slices(df, n_resamples=300).table
    assert (t["p_mcnemar"] == 1.0).all() and (t["p_holm"] == 1.0).all() and (t["p"] == 1.0).all()
    assert (t["delta_pp"] == 0).all()
    assert (t["ci_low_pp"] == 0).all() and (t["ci_high_pp"] == 0).all()
    assert t["mdd_pp"].isna().all()  # zero discordant pairs: nothing can be significant
    assert (t["wrong_format_delta_pp"] == 0).all()


def test_empty_category_and_missing_group() -> None:
    df = make_frame(300)
    df["group"] = pd.Categorical(df["group"], categories=[*sorted(df["group"].unique()), "OS"])
    df["application"] = df["application"].where(df["application"] != "word", None)
    t = compare_slices(df, n_resamples=300).table
    os_row = t[(t["slice"] == "group") & (t["value"] == "OS")].iloc[0]
    assert os_row["n"] == 0 and math.isnan(os_row["p"]) and math.isnan(os_row["p_holm"])
    groups = t[(t["slice"] == "group") & (t["n"] > 0)]
    np.testing.assert_allclose(groups["p_holm"], holm(groups["p"].to_numpy()))
    missing = t[(t["slice"] == "application") & (t["value"] == MISSING_VALUE)].iloc[0]
    assert missing["n"] == int(df["application"].isna().sum()) > 0
    assert t[t["slice"] == "application"]["n"].sum() == len(df)


def test_input_validation() -> None:
    df = make_frame(50)
    with pytest.raises(ValueError, match="missing columns"):
        compare_slices(df.drop(columns=["platform"]))
    bad = df.astype({"correct_b": object})
    bad.loc[3, "correct_b"] = None
    with pytest.raises(ValueError, match="missing values"):
        compare_slices(bad)
    dup = pd.concat([df, df.iloc[[0]]], ignore_index=True)
    with pytest.raises(ValueError, match="unique"):
        compare_slices(dup)


def test_custom_families_and_headline() -> None:
    df = make_frame()
    res = compare_slices(df, families=["group"], n_resamples=500)
    assert set(res.table["slice"]) == {"overall", "group"}
    row = res.overall()
    sign = "+" if row["delta_pp"] >= 0 else "-"
    head = res.headline("post-norm", "pre-norm")
    assert head.startswith(f"pre-norm vs post-norm: {sign}")
    assert head.endswith(f"{len(df)} paired samples in {df['cluster'].nunique()} screenshots")
    assert f"screenshot sign-flip p {format_p(row['p'])[2:]}, item McNemar p " in head
    items = compare_slices(df, families=["group"], n_resamples=500, resample="item")
    assert items.headline("A", "B").endswith(f"{len(df)} paired samples")
    # Over items the sign-flip test is the exact McNemar test.
    assert items.overall()["p"] == pytest.approx(items.overall()["p_mcnemar"], rel=1e-12)
