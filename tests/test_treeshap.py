"""leadscore.treeshap equals LightGBM's own pred_contrib (exact path-dependent TreeSHAP) to 1e-9.

Everything is compared with ``booster.predict(X, pred_contrib=True)``, never with shap's own engine
(which differs from LightGBM on categorical splits). The numba kernels compile once per session.
"""

from __future__ import annotations

import pickle

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadscore.treeshap import FastTreeExplainer, contributions

TOL = dict(rtol=1e-9, atol=1e-9)
BASE = dict(verbose=-1, num_threads=1, seed=0)  # one thread: no OpenMP spinning against other jobs


def assert_exact(booster, X, num_iteration=None, **kw):
    """Ours == pred_contrib, and contributions + bias == raw margin, for the same iterations; our raw
    margin is LightGBM's to the bit, and a pickled explainer (tables rebuilt on load) gives the same bits."""
    explainer = FastTreeExplainer(booster, num_iteration, **kw)
    ours = explainer.contributions(X)
    it = explainer.num_iteration
    theirs = booster.predict(X, num_iteration=it, pred_contrib=True)
    np.testing.assert_allclose(ours, theirs, **TOL)
    K = explainer.n_outputs
    raw = booster.predict(X, num_iteration=it, raw_score=True)
    margin = raw.reshape(len(ours), K)
    np.testing.assert_allclose(ours.reshape(len(ours), K, -1).sum(axis=2), margin, **TOL)
    np.testing.assert_array_equal(explainer.predict_raw(X), raw)
    assert pickle.dumps(explainer) == pickle.dumps(FastTreeExplainer(booster, num_iteration, **kw))  # same bytes
    again = pickle.loads(pickle.dumps(explainer))
    assert "_table" not in pickle.loads(pickle.dumps(explainer.__getstate__()))
    np.testing.assert_array_equal(again.contributions(X), ours)
    np.testing.assert_array_equal(again.predict_raw(X), raw)
    return explainer, ours


def thresholds_by_feature(booster) -> dict[int, list[float]]:
    """Numerical split thresholds, to put rows exactly on the `<=` boundary."""
    out: dict[int, list[float]] = {}
    stack = [t["tree_structure"] for t in booster.dump_model()["tree_info"]]
    while stack:
        node = stack.pop()
        if "leaf_value" in node:
            continue
        if node["decision_type"] == "<=":
            out.setdefault(node["split_feature"], []).append(node["threshold"])
        stack += [node["left_child"], node["right_child"]]
    return out


def hard_rows(rng, booster, n, n_num, n_cat, n_levels, nan_frac):
    """Prediction rows: NaN, zeros, +-1e-40, exact thresholds, out-of-range values; for categorical columns
    (numpy codes): NaN, negatives, -0.5, fractions, unseen and huge codes."""
    X = rng.normal(size=(n, n_num + n_cat)) * 2
    special = np.array([0.0, -0.0, 1e-40, -1e-40, 1e-30, np.nan, 1e300, -1e300, np.inf, -np.inf])
    mask = rng.random(X.shape) < 0.15
    X[mask] = rng.choice(special, mask.sum())
    for f, thr in thresholds_by_feature(booster).items():
        if f < n_num:
            pick = rng.random(n) < 0.3
            X[pick, f] = rng.choice(thr, pick.sum())
    for c in range(n_cat):
        col = rng.integers(0, n_levels + 2, n).astype(float)
        weird = rng.random(n) < 0.25
        col[weird] = rng.choice([np.nan, -1.0, -0.5, -3.0, 2.7, 0.99, 1e-40, 1e10, 70.0, 2**31], weird.sum())
        X[:, n_num + c] = col
    X[rng.random(X.shape) < nan_frac] = np.nan
    return X


def train(params, X, y, rounds, categorical=(), valid=None):
    ds = lgb.Dataset(X, y, categorical_feature=list(categorical) or "auto", free_raw_data=False)
    kwargs = {}
    if valid is not None:
        kwargs = dict(valid_sets=[lgb.Dataset(valid[0], valid[1], reference=ds)],
                      callbacks=[lgb.early_stopping(5, verbose=False)])
    return lgb.train({**BASE, **params}, ds, num_boost_round=rounds, keep_training_booster=True, **kwargs)


# ------------------------------------------------------------------------------------------------
# realistic models
# ------------------------------------------------------------------------------------------------
def lead_frame(rng, n, n_num=20):
    X = rng.normal(size=(n, n_num))
    X[rng.random(X.shape) < 0.08] = np.nan
    X[:, 5] = np.where(rng.random(n) < 0.4, 0.0, rng.exponential(size=n))  # zero-heavy count-like column
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(n_num)])
    df["source"] = pd.Categorical(rng.choice(["ads", "organic", "referral", "event", "partner", None], n))
    df["industry"] = pd.Categorical(rng.choice([f"ind{i}" for i in range(15)], n))
    Xf = np.nan_to_num(X)
    logit = (Xf[:, 0] + Xf[:, 1] * Xf[:, 2] - np.abs(Xf[:, 3]) + 0.5 * (Xf[:, 5] > 0)
             + df["source"].cat.codes.to_numpy() % 2 - 0.1 * (df["industry"].cat.codes.to_numpy() % 4))
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return df, y


@pytest.fixture(scope="module")
def realistic():
    rng = np.random.default_rng(7)
    df, y = lead_frame(rng, 4000)
    booster = train(dict(objective="binary", num_leaves=31, learning_rate=0.1, min_child_samples=10,
                         min_data_per_group=10, cat_smooth=5), df, y, 120)
    test, _ = lead_frame(np.random.default_rng(8), 600)
    # unseen and missing categories at prediction time
    test["source"] = test["source"].cat.add_categories(["webinar"])
    test.loc[test.index[:40], "source"] = "webinar"
    test.loc[test.index[40:80], "industry"] = None
    return booster, test


def test_realistic_model_pandas_matches_pred_contrib(realistic):
    booster, test = realistic
    explainer, ours = assert_exact(booster, test)
    assert ours.shape == (len(test), test.shape[1] + 1)
    assert explainer.n_table_leaves > 0
    assert explainer.expected_value == pytest.approx(ours[0, -1], abs=0)
    np.testing.assert_allclose(ours, contributions(booster, test, engine="lightgbm"), **TOL)
    np.testing.assert_allclose(ours, contributions(booster, test), **TOL)


def test_realistic_model_all_rows_in_the_per_row_fallback(realistic):
    """max_table_depth=0 forces every leaf through the O(d^2) per-row path; a tiny budget does the same."""
    booster, test = realistic
    e0, ours0 = assert_exact(booster, test, max_table_depth=0)
    assert e0.n_table_leaves == 0
    e1, _ = assert_exact(booster, test, max_table_bytes=64 * 1024)
    assert e1.n_fallback_leaves > 0 and e1.n_table_leaves > 0


def test_deep_leafwise_trees_with_repeated_features():
    """Few features, many leaves, no depth limit: paths are long and repeat features (path merging)."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(3000, 3))
    y = (np.sin(3 * X[:, 0]) + X[:, 1] * X[:, 2] + 0.3 * rng.normal(size=3000) > 0).astype(int)
    booster = train(dict(objective="binary", num_leaves=63, min_child_samples=2, learning_rate=0.2), X, y, 30)
    depths = []
    stack = [(t["tree_structure"], 0) for t in booster.dump_model()["tree_info"]]
    while stack:
        node, dpt = stack.pop()
        if "leaf_value" in node:
            depths.append(dpt)
        else:
            stack += [(node["left_child"], dpt + 1), (node["right_child"], dpt + 1)]
    assert max(depths) >= 12
    Xt = hard_rows(rng, booster, 300, 3, 0, 0, 0.05)
    assert_exact(booster, Xt)
    assert_exact(booster, Xt, max_table_depth=1)


def test_wide_model_with_leaves_beyond_the_table_limit():
    """Paths with more distinct features than max_table_depth mix tables and the fallback in one tree."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(4000, 40))
    y = (X[:, :40] @ rng.normal(size=40) + rng.normal(size=4000) > 0).astype(int)
    booster = train(dict(objective="binary", num_leaves=127, min_child_samples=3, learning_rate=0.2), X, y, 8)
    explainer, _ = assert_exact(booster, hard_rows(rng, booster, 200, 40, 0, 0, 0.05), max_table_depth=6)
    assert explainer.n_fallback_leaves > 0 and explainer.n_table_leaves > 0
    assert explainer._max_d > 6


# ------------------------------------------------------------------------------------------------
# many random models
# ------------------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n_rows=st.integers(10, 800),
    n_num=st.integers(1, 6),
    n_cat=st.integers(0, 2),
    n_levels=st.integers(1, 12),
    nan_frac=st.sampled_from([0.0, 0.1, 0.5]),
    zero_frac=st.sampled_from([0.0, 0.3]),
    num_leaves=st.integers(2, 48),
    max_depth=st.sampled_from([-1, 1, 3, 6]),
    min_child_samples=st.sampled_from([1, 3, 20, 1000]),
    rounds=st.integers(1, 15),
    missing=st.sampled_from(["nan", "zero_as_missing", "no_missing"]),
    max_cat_to_onehot=st.sampled_from([1, 4, 32]),
    constant_target=st.booleans(),
    pandas_input=st.booleans(),
    max_table_depth=st.sampled_from([0, 2, 16]),
    num_iteration=st.sampled_from([None, 1, 2, 0, -1, 50]),
)
def test_random_models_match_pred_contrib(seed, n_rows, n_num, n_cat, n_levels, nan_frac, zero_frac, num_leaves,
                                          max_depth, min_child_samples, rounds, missing, max_cat_to_onehot,
                                          constant_target, pandas_input, max_table_depth, num_iteration):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, n_num + n_cat))
    X[rng.random(X.shape) < zero_frac] = 0.0
    X[:, n_num:] = rng.integers(0, n_levels, (n_rows, n_cat))
    X[rng.random(X.shape) < nan_frac] = np.nan
    Xf = np.nan_to_num(X)
    score = Xf[:, 0] + (Xf[:, 1:].sum(axis=1) if X.shape[1] > 1 else 0) + (X[:, 0] != X[:, 0]) * 0.7
    y = np.ones(n_rows) if constant_target else (score + rng.normal(size=n_rows) > 0).astype(float)
    params = dict(objective="binary", num_leaves=num_leaves, max_depth=max_depth,
                  min_child_samples=min_child_samples, min_data_per_group=1, cat_smooth=1, cat_l2=1,
                  max_cat_to_onehot=max_cat_to_onehot, learning_rate=0.3, min_sum_hessian_in_leaf=0,
                  zero_as_missing=missing == "zero_as_missing", use_missing=missing != "no_missing")
    cats = list(range(n_num, n_num + n_cat))
    booster = train(params, X, y, rounds, categorical=cats)
    Xt = hard_rows(rng, booster, int(rng.integers(1, 60)), n_num, n_cat, n_levels, nan_frac)
    if pandas_input and n_cat:
        def frame(A):
            df = pd.DataFrame(A[:, :n_num], columns=[f"x{i}" for i in range(n_num)])
            for c in range(n_cat):
                codes = A[:, n_num + c]
                ok = (codes >= 0) & (codes < n_levels) & (codes == np.floor(codes))
                labels = np.where(ok, np.nan_to_num(codes, nan=-1).astype(int).astype(str), "unseen")
                labels = np.where(codes != codes, None, labels)
                df[f"c{c}"] = pd.Categorical(labels, categories=[str(i) for i in range(n_levels)] + ["unseen"]
                                             if c else None)
            return df
        booster = train(params, frame(X), y, rounds)
        Xt = frame(Xt)
    assert_exact(booster, Xt, num_iteration, max_table_depth=max_table_depth)
    if constant_target or min_child_samples * 2 > n_rows:  # no split possible: single-leaf trees, bias only
        ours = FastTreeExplainer(booster, num_iteration).contributions(Xt)
        assert np.all(ours[:, :-1] == 0)


# ------------------------------------------------------------------------------------------------
# specifics
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_model():
    rng = np.random.default_rng(11)
    X = rng.normal(size=(1500, 5))
    X[:, 4] = rng.integers(0, 8, 1500)
    X[rng.random(X.shape) < 0.1] = np.nan
    y = (np.nan_to_num(X[:, 0]) + (np.nan_to_num(X[:, 4]) % 3 == 1) + rng.normal(size=1500) > 0.5).astype(int)
    valid = (X[:300], y[:300])
    booster = train(dict(objective="binary", num_leaves=15, learning_rate=0.3, min_data_per_group=5), X[300:],
                    y[300:], 200, categorical=[4], valid=valid)
    return booster, hard_rows(rng, booster, 300, 4, 1, 8, 0.1)


def test_default_iterations_follow_booster_predict(small_model):
    booster, Xt = small_model
    assert 0 < booster.best_iteration < booster.current_iteration()  # early stopping happened
    explainer = FastTreeExplainer(booster)
    assert explainer.num_iteration == booster.best_iteration
    np.testing.assert_allclose(explainer.contributions(Xt), booster.predict(Xt, pred_contrib=True), **TOL)
    full = FastTreeExplainer(booster, num_iteration=-1)
    assert full.num_iteration == booster.current_iteration()
    np.testing.assert_allclose(full.contributions(Xt), booster.predict(Xt, num_iteration=-1, pred_contrib=True),
                               **TOL)
    for it in (1, 3, 10_000):
        assert_exact(booster, Xt, it)


def test_input_dtypes_follow_lightgbm(small_model):
    """float32 stays float32; integer arrays are cast to float32 by LightGBM, so are they here."""
    booster, Xt = small_model
    with np.errstate(over="ignore"):
        assert_exact(booster, Xt.astype(np.float32))
    rng = np.random.default_rng(0)
    small_ints = rng.integers(-3, 9, size=(50, 5))
    assert_exact(booster, small_ints)
    # around 2**24 float32 only holds even integers: odd ones round onto the other side of thresholds
    base = 2.0**24
    X = base + 2 * rng.integers(0, 40, size=(2000, 2)).astype(float)
    y = ((X[:, 0] - base) % 8 < 4).astype(int)
    big_model = train(dict(objective="binary", num_leaves=31, min_child_samples=2), X, y, 5)
    odd = (base + rng.integers(0, 80, size=(300, 2))).astype(np.int64)
    assert_exact(big_model, odd)
    assert np.abs(FastTreeExplainer(big_model).contributions(odd.astype(np.float64))
                  - big_model.predict(odd, pred_contrib=True)).max() > 1e-3  # the cast matters here
    assert_exact(booster, np.asfortranarray(Xt))
    assert_exact(booster, Xt[::2])  # non-contiguous view
    with pytest.raises(ValueError):
        FastTreeExplainer(booster).contributions(Xt[:, :4])


def test_module_function_reuses_explainer_until_the_booster_changes():
    from leadscore.treeshap import _CACHE

    rng = np.random.default_rng(12)
    X = rng.normal(size=(500, 3))
    booster = train(dict(objective="binary", num_leaves=7), X, (X[:, 0] > 0).astype(int), 3)
    first = contributions(booster, X[:50])
    cached = _CACHE[booster][1]
    contributions(booster, X[50:100])
    assert _CACHE[booster][1] is cached
    booster.update()  # one more iteration in place: the cached explainer must not be reused
    np.testing.assert_allclose(contributions(booster, X[:50]), booster.predict(X[:50], pred_contrib=True), **TOL)
    assert _CACHE[booster][1] is not cached
    np.testing.assert_allclose(contributions(booster, X[:50], num_iteration=3), first, **TOL)


def test_multiclass_and_saved_model_round_trip():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(900, 4))
    X[rng.random(X.shape) < 0.1] = np.nan
    y = np.digitize(np.nan_to_num(X[:, 0]) + 0.5 * rng.normal(size=900), [-0.5, 0.5])
    booster = train(dict(objective="multiclass", num_class=3, num_leaves=7), X, y, 6)
    Xt = hard_rows(rng, booster, 100, 4, 0, 0, 0.1)
    explainer, ours = assert_exact(booster, Xt)
    assert ours.shape == (100, 3 * 5) and explainer.expected_value.shape == (3,)
    reloaded = lgb.Booster(model_str=booster.model_to_string())
    np.testing.assert_allclose(FastTreeExplainer(reloaded).contributions(Xt), ours, **TOL)


def test_random_forest_mode():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(800, 4))
    y = (X[:, 0] + X[:, 1] ** 2 + rng.normal(size=800) > 1).astype(int)
    booster = train(dict(objective="binary", boosting="rf", bagging_freq=1, bagging_fraction=0.6, num_leaves=15),
                    X, y, 10)
    assert_exact(booster, hard_rows(rng, booster, 100, 4, 0, 0, 0.0))


def test_linear_trees_are_rejected_and_unknown_engine():
    rng = np.random.default_rng(9)
    X = rng.normal(size=(300, 3))
    booster = train(dict(objective="regression", linear_tree=True, num_leaves=4), X, X[:, 0] * 2, 2)
    with pytest.raises(NotImplementedError):
        FastTreeExplainer(booster)
    with pytest.raises(ValueError):
        contributions(booster, X, engine="shap")


def test_table_weights_cover_every_subset():
    """A(Q) from the 2^d table equals the direct subset sum for a random leaf path."""
    from math import factorial
    from itertools import combinations

    from leadscore.treeshap import _build_tables, _shapley_weights

    rng = np.random.default_rng(1)
    d = 6
    z = rng.random(d)
    table = np.empty(2**d)
    _build_tables(np.array([0], np.int64), np.array([d], np.int64), np.array([0], np.int64),
                  np.array([0], np.int64), z, _shapley_weights(d), table)
    for Q in range(2**d):
        members = [j for j in range(d) if Q >> j & 1]
        direct = 0.0
        for k in range(len(members) + 1):
            for S in combinations(members, k):
                w = factorial(k) * factorial(d - 1 - k) / factorial(d) if k < d else 0.0
                direct += w * np.prod([z[j] for j in members if j not in S])
        assert table[Q] == pytest.approx(direct, rel=1e-13)
