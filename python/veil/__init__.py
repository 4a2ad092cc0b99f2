"""Veil: machine-learning inference on encrypted data (TFHE).

    import veil
    model = veil.compile(fitted_estimator, X_calibration)     # scikit-learn, XGBoost, torch, or a file
    model.predict(X, fhe="execute")                           # "disable" | "simulate" | "execute"
    model.save("artifacts")                                   # client.zip, server.zip, serialized_processing.json

Deployment (Concrete ML's classes, same names): veil.deployment. A model on a Veil server:
veil.client.RemoteModel. Errors: ValueError for bad input (an unsupported estimator, samples of
the wrong shape, corrupted or foreign bytes), RuntimeError for misuse and server refusals.
"""

from ._veil import __version__
from ._models import CompiledModel, compile

__all__ = ["CompiledModel", "compile", "__version__"]
