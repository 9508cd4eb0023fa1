"""The registered pyfunc as an MLflow "model from code": MLflow logs this file and runs it when the model is
loaded, instead of pickling a Python object with CloudPickle (see `Models From Code` in the MLflow docs).
The scorer itself is the ``scorer`` artifact, loaded by :class:`leadscore.pyfunc.LeadScorePyfunc`."""

import mlflow.models

from leadscore.pyfunc import LeadScorePyfunc

mlflow.models.set_model(LeadScorePyfunc())
