"""Champion / challenger: the promotion gate, check by check, then the alias moves on a real MLflow store."""

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from pydantic import ValidationError

from leadscore.registry import (CHAMPION, HISTORY_TAG, PREVIOUS_TAG, REASON_TAG, REPLACED_TAG, PromotionGate,
                                compare, get_alias_version, holdout_fingerprint, rollback, set_champion)

CHAMP = {"roc_auc": 0.9230, "log_loss": 0.1907, "ece": 0.012, "mql_win_rate": 0.477, "mql_per_week": 19.7,
         "baseline_roc_auc": 0.85, "holdout": "2000:abc"}


def _chall(**changes) -> dict:
    return {**CHAMP, **changes}


# --------------------------------------------------------------------------------------------- compare

def test_no_champion_promotes():
    for champion in (None, {}):
        d = compare(champion, _chall())
        assert d.promote and any("no champion yet" in r for r in d.reasons)
        assert d.table["champion"].isna().all() and d.table["challenger"].notna().all()


def test_equal_models_pass_every_check():
    d = compare(CHAMP, _chall())
    assert d.promote and len(d.reasons) == 7 and all(r.startswith("ok: ") for r in d.reasons)


def test_log_loss_increase_fails_with_the_numbers():
    d = compare(CHAMP, _chall(log_loss=0.2051, roc_auc=0.93))
    assert not d.promote
    assert "fails: log loss 0.2051 vs champion 0.1907: +0.0144 > allowed +0.005" in d.reasons
    assert sum(r.startswith("fails") for r in d.reasons) == 1  # a better AUC does not buy it back


def test_auc_may_drop_only_by_the_allowed_delta():
    assert compare(CHAMP, _chall(roc_auc=0.9180)).promote  # -0.005, on the boundary
    d = compare(CHAMP, _chall(roc_auc=0.9170))
    assert not d.promote and "fails: ROC AUC 0.9170 vs champion 0.9230: -0.0060 < allowed -0.005" in d.reasons
    assert compare(CHAMP, _chall(roc_auc=0.9170), PromotionGate(min_auc_delta=-0.01)).promote


def test_ece_is_an_absolute_cap_even_when_the_champion_is_worse():
    champ = {**CHAMP, "ece": 0.08}
    d = compare(champ, _chall(ece=0.05))
    assert not d.promote and "fails: ECE 0.0500 (champion 0.0800) > maximum 0.03" in d.reasons


def test_mql_win_rate_must_not_get_worse_unless_tolerated_or_not_required():
    d = compare(CHAMP, _chall(mql_win_rate=0.465, mql_per_week=20.1))
    assert not d.promote
    assert any(r.startswith("fails: MQL win rate 46.5% vs champion 47.7% at 20.1 vs 19.7 MQLs a week: -1.2 points")
               for r in d.reasons)
    assert compare(CHAMP, _chall(mql_win_rate=0.465), PromotionGate(mql_win_rate_tolerance=0.02)).promote
    relaxed = compare(CHAMP, _chall(mql_win_rate=0.40), PromotionGate(require_mql_win_rate_not_worse=False))
    assert relaxed.promote and len(relaxed.reasons) == 6


@pytest.mark.parametrize("key", ["roc_auc", "log_loss", "ece", "mql_win_rate"])
def test_a_missing_or_nan_metric_blocks_promotion(key):
    for broken in ({k: v for k, v in CHAMP.items() if k != key}, _chall(**{key: float("nan")})):
        d = compare(CHAMP, broken)
        assert not d.promote and any("not available" in r for r in d.reasons)


def test_different_holdouts_are_refused():
    with pytest.raises(ValueError, match="different holdouts"):
        compare({**CHAMP, "holdout": "2025Q3"}, _chall(holdout="2025Q4"))
    with pytest.raises(ValueError, match="different holdouts"):  # the same rows must be asserted, not assumed
        compare({k: v for k, v in CHAMP.items() if k != "holdout"}, _chall())
    d = compare({**CHAMP, "holdout": "2025Q4"}, _chall(holdout="2025Q4"))
    assert d.promote and any("very same holdout rows (2025Q4)" in r for r in d.reasons)


def test_holdout_fingerprint_depends_on_the_rows():
    X = pd.DataFrame({"lead_id": ["a", "b", "c"], "as_of": pd.to_datetime(["2025-01-01"] * 3)})
    assert holdout_fingerprint(X, [0, 1, 0]) == holdout_fingerprint(X.copy(), np.array([0, 1, 0]))
    assert holdout_fingerprint(X, [0, 1, 0]) != holdout_fingerprint(X.iloc[:2], [0, 1])
    assert holdout_fingerprint(X, [0, 1, 0]) != holdout_fingerprint(X, [0, 0, 1])


def test_first_model_worse_than_the_baseline_is_refused():
    d = compare(None, _chall(roc_auc=0.418, baseline_roc_auc=0.675, ece=0.197))
    assert not d.promote
    assert "fails: ROC AUC 0.4180 vs rule baseline 0.6750 on the same holdout: -0.2570 < required +0.01" in d.reasons
    assert "fails: ROC AUC 0.4180 < 0.55 (chance 0.5 + margin 0.05)" in d.reasons
    assert "fails: ECE 0.1970 > maximum 0.03" in d.reasons
    # a small edge over the baseline is not enough, nor is a missing baseline
    assert not compare(None, _chall(roc_auc=0.855)).promote
    assert compare(None, _chall(roc_auc=0.861)).promote
    assert not compare(None, {k: v for k, v in CHAMP.items() if k != "baseline_roc_auc"}).promote


def test_every_challenger_must_beat_the_baseline_even_when_better_than_the_champion():
    weak = {**CHAMP, "roc_auc": 0.60, "baseline_roc_auc": 0.70}
    d = compare(weak, {**weak, "roc_auc": 0.65})
    assert not d.promote and sum(r.startswith("fails") for r in d.reasons) == 1


def test_gate_never_moves_production_by_default():
    assert PromotionGate().auto_promote is False and PromotionGate(auto_promote=True).auto_promote


def test_table_sets_champion_and_challenger_side_by_side():
    d = compare(CHAMP, _chall(log_loss=0.2051))
    t = d.table.set_index("metric")
    assert list(t.index) == ["roc_auc", "baseline_roc_auc", "log_loss", "ece", "mql_win_rate", "mql_per_week"]
    assert t.loc["log_loss", "champion"] == 0.1907 and t.loc["log_loss", "challenger"] == 0.2051
    assert t.loc["log_loss", "delta"] == pytest.approx(0.0144)
    assert d.summary().startswith("keep champion: ")


def test_gate_is_typed():
    with pytest.raises(ValidationError):
        PromotionGate(max_ece_typo=0.1)
    with pytest.raises(ValidationError):
        PromotionGate(min_auc_delta=0.01)  # would demand an improvement: say so with a different field
    assert PromotionGate().model_dump() == {"min_auc_over_baseline": 0.01, "min_auc_over_random": 0.05,
                                            "auto_promote": False, "max_log_loss_increase": 0.005, "max_ece": 0.03,
                                            "min_auc_delta": -0.005, "require_mql_win_rate_not_worse": True,
                                            "mql_win_rate_tolerance": 0.0}


# --------------------------------------------------------------------------------------------- MLflow

class _Zeros(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return np.zeros(len(model_input))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A local sqlite store with two tiny logged pyfunc models; each test registers its own name."""
    tmp = tmp_path_factory.mktemp("mlflow")
    previous = mlflow.get_tracking_uri()
    uri = f"sqlite:///{tmp}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("registry-test")
    logged = []
    for _ in range(2):
        with mlflow.start_run() as run:
            info = mlflow.pyfunc.log_model(name="model", python_model=_Zeros(), pip_requirements=[])
            logged.append((info.model_uri, run.info.run_id))
    yield mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri), logged
    mlflow.set_tracking_uri(previous)


@pytest.fixture
def model(store, request):
    """A registered model named after the test with versions 1, 2, 3."""
    client, logged = store
    name = request.node.name.replace("[", "_").replace("]", "")
    client.create_registered_model(name)
    for i in range(3):
        uri, run_id = logged[i % len(logged)]
        client.create_model_version(name, uri, run_id)
    return client, name


def test_alias_version_is_none_until_set(model):
    client, name = model
    assert get_alias_version(client, name, CHAMPION) is None
    assert get_alias_version(client, "no-such-model", CHAMPION) is None
    set_champion(client, name, 2, "first champion")
    assert get_alias_version(client, name, CHAMPION) == "2"


def test_set_champion_keeps_the_previous_one_and_the_reason(model):
    client, name = model
    assert set_champion(client, name, "1", "no champion yet") is None
    assert set_champion(client, name, "3", "log loss 0.1800 vs champion 0.1907") == "1"
    assert get_alias_version(client, name, CHAMPION) == "3"
    tags = client.get_registered_model(name).tags
    assert tags[PREVIOUS_TAG] == "1" and json.loads(tags[HISTORY_TAG]) == ["1"]
    v3 = client.get_model_version(name, "3").tags
    assert v3[REASON_TAG] == "log loss 0.1800 vs champion 0.1907" and v3[REPLACED_TAG] == "1"
    assert client.get_model_version(name, "1").tags[REASON_TAG] == "no champion yet"


def test_rollback_walks_back_through_earlier_champions(model):
    client, name = model
    for v in ("1", "2", "3"):
        set_champion(client, name, v, f"promote {v}")
    assert rollback(client, name, reason="bad week") == "2"
    assert get_alias_version(client, name, CHAMPION) == "2"
    assert client.get_model_version(name, "2").tags[REASON_TAG] == "bad week (from version 3)"
    assert client.get_registered_model(name).tags[PREVIOUS_TAG] == "1"
    assert rollback(client, name) == "1"
    assert PREVIOUS_TAG not in client.get_registered_model(name).tags
    with pytest.raises(ValueError, match="no previous champion recorded.*current champion: 1"):
        rollback(client, name)
    assert get_alias_version(client, name, CHAMPION) == "1"  # a failed rollback moves nothing


def test_repromoting_the_champion_does_not_grow_the_history(model):
    client, name = model
    set_champion(client, name, "1", "first")
    assert set_champion(client, name, "1", "reviewed again") is None
    assert json.loads(client.get_registered_model(name).tags.get(HISTORY_TAG, "[]")) == []
    assert client.get_model_version(name, "1").tags[REASON_TAG] == "reviewed again"
    with pytest.raises(ValueError, match="nothing to roll back to"):
        rollback(client, name)


def test_rollback_to_a_deleted_version_is_a_clear_error(model):
    client, name = model
    set_champion(client, name, "1", "first")
    set_champion(client, name, "2", "second")
    client.delete_model_version(name, "1")
    with pytest.raises(ValueError, match="version 1, no longer exists"):
        rollback(client, name)
    assert get_alias_version(client, name, CHAMPION) == "2"


def test_unknown_version_cannot_become_champion(model):
    client, name = model
    with pytest.raises(MlflowException):
        set_champion(client, name, "9", "typo")
    assert get_alias_version(client, name, CHAMPION) is None


def test_decision_drives_the_alias_and_the_champion_loads(model):
    client, name = model
    first = compare(None, CHAMP)
    set_champion(client, name, "1", first.summary())
    better = compare(CHAMP, _chall(log_loss=0.1850))
    assert better.promote
    set_champion(client, name, "2", better.summary())
    worse = compare(_chall(log_loss=0.1850), _chall(log_loss=0.1990))
    assert not worse.promote  # version 3 stays challenger
    assert get_alias_version(client, name, CHAMPION) == "2"
    assert client.get_model_version(name, "2").tags[REASON_TAG].startswith("promote: ok: ROC AUC")
    loaded = mlflow.pyfunc.load_model(f"models:/{name}@{CHAMPION}")
    assert loaded.predict(pd.DataFrame({"x": [1.0, 2.0]})).tolist() == [0.0, 0.0]
