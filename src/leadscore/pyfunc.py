"""The MLflow pyfunc wrapper: a feature table in; lead_id, probability, points, band, grades, matrix cell,
MQL flag and reasons out (see :meth:`leadscore.scoring.LeadScorer.score`). MLflow loads it with the
``leadscore`` package shipped beside it (``code_paths``), so any environment with the pinned stack can
serve the registered model.

It takes ordinary frames: ``features.parquet`` as written, the same table read back from CSV (counts as
int64, categories as text), a hand-built frame of Python ints, floats and strings, or a JSON request to
``mlflow models serve``. The logged signature names every column (``lead_id`` and the features) as optional
and of any type; :meth:`leadscore.model.LeadScoreModel.prepare` turns values into the model's types (text
categories, unseen ones missing; numbers from any numeric or numeric-text column). A feature column that
is absent is missing for every row (the signature declares every column optional), with a warning; a frame
with none of the model's features is refused. The output's first column is ``lead_id``: the input's ids
as text, or missing when the input has none."""

import warnings

import joblib
import mlflow.pyfunc
import numpy as np
import pandas as pd


def score_frame(scorer, frame: pd.DataFrame) -> pd.DataFrame:
    """What the registered model returns for ``frame``: ``lead_id`` then the scorer's columns, one row per
    input row, in input order."""
    X = frame.reset_index(drop=True)
    names = scorer.model.feature_names
    absent = [c for c in names if c not in X.columns]
    if len(absent) == len(names):
        raise ValueError(f"the input has none of the model's {len(names)} features (e.g. {', '.join(names[:5])}); "
                         f"columns given: {', '.join(map(str, X.columns[:10]))}")
    if absent:
        warnings.warn(f"{len(absent)} feature(s) absent from the input, scored as missing: "
                      f"{', '.join(absent[:10])}{' …' if len(absent) > 10 else ''}", stacklevel=2)
        X = X.assign(**{c: np.nan for c in absent})
    ids = (X["lead_id"].astype("string").astype(object).where(X["lead_id"].notna(), None)
           if "lead_id" in X.columns else pd.Series([None] * len(X), dtype=object))
    out = scorer.score(X).reset_index(drop=True)
    out.insert(0, "lead_id", ids.to_numpy())
    return out


class LeadScorePyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        self.scorer = joblib.load(context.artifacts["scorer"])

    # The pd.DataFrame hint is one MLflow accepts without validating against it (the logged signature
    # does that); without a hint MLflow warns on every import of this class.
    def predict(self, context, model_input: pd.DataFrame, params=None):
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return score_frame(self.scorer, frame)
