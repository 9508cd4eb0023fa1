"""The registered MLflow pyfunc takes ordinary frames (the feature table read back from CSV, a hand-built
one-row frame, a JSON-shaped request) and returns lead_id with every score."""

from __future__ import annotations

import io
import json

import joblib
import numpy as np
import pandas as pd
import pytest


@pytest.fixture(scope="module")
def served(trained):
    import mlflow

    return mlflow.pyfunc.load_model(trained["result"]["mlflow"]["model_uri"])


@pytest.fixture(scope="module")
def table(trained):
    return pd.read_parquet(trained["tmp"] / "features" / "features.parquet").head(200).reset_index(drop=True)


def _expected(trained, table):
    return joblib.load(trained["tmp"] / "models" / "scorer.joblib").score(table).reset_index(drop=True)


def test_the_feature_table_read_back_from_csv_scores_like_the_parquet_one(served, trained, table):
    buf = io.StringIO()
    table.to_csv(buf, index=False)
    buf.seek(0)
    from_csv = pd.read_csv(buf)
    assert any(str(t) == "int64" for t in from_csv.dtypes)  # counts come back as int64
    out = served.predict(from_csv)
    expected = _expected(trained, table)
    assert out["lead_id"].tolist() == table["lead_id"].tolist()
    np.testing.assert_allclose(out["probability"], expected["probability"], rtol=0, atol=1e-12)
    for col in ("points", "band", "matrix_cell", "is_mql", "reasons", "pushed_over_mql"):
        assert out[col].tolist() == expected[col].tolist(), col


def test_a_hand_built_one_row_frame_of_python_values_is_scored(served, trained, table):
    row = table.iloc[7]
    record = {}
    for k, v in row.items():
        if k in ("as_of", "label"):
            continue
        v = v.item() if hasattr(v, "item") else v
        record[k] = int(v) if isinstance(v, float) and v.is_integer() else v  # ints wherever they can be
    out = served.predict(pd.DataFrame([record]))
    assert len(out) == 1 and out["lead_id"].iloc[0] == row["lead_id"]
    expected = _expected(trained, table.iloc[[7]])
    assert out["probability"].iloc[0] == pytest.approx(expected["probability"].iloc[0], abs=1e-12)
    assert out["points"].iloc[0] == expected["points"].iloc[0]
    json.loads(out["reasons"].iloc[0])


def test_a_request_with_a_few_columns_and_no_id_scores_the_rest_as_missing(served):
    with pytest.warns(UserWarning, match="absent from the input"):
        out = served.predict(pd.DataFrame([{"seniority": "vp", "job_function": "marketing", "pricing_page_7d": 2}]))
    assert len(out) == 1 and out["lead_id"].isna().all()
    assert 0 <= out["points"].iloc[0] <= 100 and 0 < out["probability"].iloc[0] < 1


def test_a_frame_without_any_feature_is_refused_with_the_names(served):
    with pytest.raises(Exception, match="none of the model's"):
        served.predict(pd.DataFrame([{"lead": 1, "score": 2}]))


def test_a_json_records_request_as_mlflow_serving_parses_it(served, trained, table):
    records = json.loads(table.drop(columns=["as_of", "label"]).head(3).to_json(orient="records"))
    out = served.predict(pd.DataFrame.from_records(records))
    expected = _expected(trained, table.head(3))
    assert out["lead_id"].tolist() == table["lead_id"].head(3).tolist()
    np.testing.assert_allclose(out["probability"], expected["probability"], rtol=0, atol=1e-12)
