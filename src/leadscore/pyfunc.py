"""The MLflow pyfunc wrapper: a feature table in; probability, points, band, grades, matrix cell, MQL
flag and reasons out (see :meth:`leadscore.scoring.LeadScorer.score`). MLflow loads it with the
``leadscore`` package shipped beside it (``code_paths``), so any environment with the pinned stack can
serve the registered model."""


import joblib
import mlflow.pyfunc
import pandas as pd


class LeadScorePyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        self.scorer = joblib.load(context.artifacts["scorer"])

    # The pd.DataFrame hint is one MLflow accepts without validating against it (the logged signature
    # does that); without a hint MLflow warns on every import of this class.
    def predict(self, context, model_input: pd.DataFrame, params=None):
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return self.scorer.score(frame).reset_index(drop=True)
