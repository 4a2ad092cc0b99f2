"""veil.compile and CompiledModel: trained models from scikit-learn, XGBoost and PyTorch
objects (or model files) compiled into TFHE circuits by Veil's C++ core."""

from __future__ import annotations

import io
import os
from typing import Any, Dict, Optional, Union

import numpy as np

from . import _veil
from . import sklearn_export, sklearn_mlp

FheMode = str  # "disable" | "simulate" | "execute"

_OPTION_NAMES = ("n_bits", "lookup_bits", "p_error", "global_p_error", "exact_tree_comparisons",
                 "exact_network_reads")


def as_samples(X: Any, what: str = "X") -> np.ndarray:
    """X as a float64 C-ordered array of samples (rank >= 1; a 1-D array is one column)."""
    try:
        a = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError("%s must be an array of numbers: %s" % (what, e)) from None
    if a.ndim == 0:
        raise ValueError("%s must be an array of samples, got a scalar" % what)
    if a.ndim == 1:
        a = a.reshape(-1, 1)
    if a.shape[0] == 0:
        raise ValueError("%s holds no samples" % what)
    return np.ascontiguousarray(a)


def _options(kwargs: Dict[str, Any]) -> "_veil.CompileOptions":
    o = _veil.CompileOptions()
    for name, value in kwargs.items():
        if name not in _OPTION_NAMES:
            raise TypeError("compile() got an unexpected option %r (options: %s)" % (name, ", ".join(_OPTION_NAMES)))
        if value is None:
            continue
        if name in ("n_bits", "lookup_bits"):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError("%s must be a non-negative integer, got %r" % (name, value))
            value = int(value)
        elif name in ("p_error", "global_p_error"):
            value = float(value)
        else:
            value = bool(value)
        setattr(o, name, value)
    return o


def _is_sklearn(model: Any) -> bool:
    return type(model).__module__.startswith("sklearn.")


def _is_xgboost(model: Any) -> bool:
    return type(model).__module__.startswith("xgboost")


def _is_torch(model: Any) -> bool:
    try:
        import torch
    except ImportError:
        return False
    return isinstance(model, torch.nn.Module)


def _xgboost_bytes(model: Any) -> bytes:
    booster = model.get_booster() if hasattr(model, "get_booster") else model
    if not hasattr(booster, "save_raw"):
        raise ValueError("unsupported XGBoost object %s" % type(model).__name__)
    try:
        return bytes(booster.save_raw(raw_format="json"))
    except Exception as e:  # an unfitted XGBClassifier raises its own NotFittedError
        raise ValueError("cannot read the XGBoost model %s: %s" % (type(model).__name__, e)) from None


def _torch_bytes(model: Any, X: np.ndarray) -> bytes:
    """The module exported to ONNX in memory, traced on the first calibration sample."""
    import torch

    example = torch.from_numpy(X[:1].astype(np.float32))
    buffer = io.BytesIO()
    was_training = model.training
    model.eval()
    try:
        # Opset 13: the ops of Veil's ONNX importer as PyTorch 1.13 writes them.
        torch.onnx.export(model, example, buffer, opset_version=13, input_names=["x"], output_names=["y"])
    except Exception as e:
        raise ValueError("cannot export the torch module to ONNX: %s" % e) from None
    finally:
        model.train(was_training)
    return buffer.getvalue()


def _classes_of(model: Any) -> Optional[np.ndarray]:
    """The estimator's own class labels (scikit-learn, XGBoost), to give predictions in them."""
    est = model
    if _is_sklearn(model) and hasattr(model, "steps"):
        est = model.steps[-1][1]
    classes = getattr(est, "classes_", None)
    return None if classes is None else np.asarray(classes)


class CompiledModel:
    """A model compiled into a TFHE circuit: predict in the clear, simulated or encrypted, and
    save the three deployment artifacts."""

    def __init__(self, core: "_veil.CompiledModel", classes: Optional[np.ndarray] = None,
                 labels_are_indices: bool = False):
        self._core = core
        self._classes = classes
        self._labels_are_indices = labels_are_indices

    @property
    def is_classifier(self) -> bool:
        return self._core.is_classifier

    @property
    def n_features(self) -> int:
        return self._core.n_features

    @property
    def model_id(self) -> str:
        """32 hex digits, shared by the model's three artifacts."""
        return self._core.model_id

    @property
    def statistics(self) -> Dict[str, Any]:
        """PBS count (total and by lookup precision), levelled operations, PBS depth, the
        parameter set, the predicted error probability per row, the evaluation keys' size in
        bytes (what a client uploads once), warnings, and all of it as text."""
        return self._core.statistics

    def _run(self, X: Any, fhe: FheMode) -> Dict[str, Any]:
        if fhe not in ("disable", "simulate", "execute"):
            raise ValueError("fhe must be 'disable', 'simulate' or 'execute', not %r" % (fhe,))
        return self._core.predict(as_samples(X), fhe)

    def _labels(self, labels: np.ndarray) -> np.ndarray:
        if self._classes is None or len(self._classes) == 0:
            return labels
        if self._labels_are_indices:  # a network's label is the position of its class
            return self._classes[np.asarray(labels, dtype=np.int64)]
        # Veil's labels are the estimator's integer classes; give them in its own dtype.
        return np.asarray(labels).astype(self._classes.dtype, copy=False)

    def predict(self, X: Any, fhe: FheMode = "disable") -> np.ndarray:
        """Labels for a classifier, values for a regressor (a 1-D array for one target), as
        scikit-learn's predict. fhe="disable" runs the quantized circuit in the clear,
        "simulate" draws its approximate reads at random as FHE makes them, "execute" encrypts
        (keys are made on the first call and kept)."""
        out = self._run(X, fhe)
        if out["task"] == "classification":
            return self._labels(out["labels"])
        values = out["values"]
        return values[:, 0] if values.ndim == 2 and values.shape[1] == 1 else values

    def predict_proba(self, X: Any, fhe: FheMode = "disable") -> np.ndarray:
        """Class scores of a classifier, shape (n_samples, n_classes)."""
        out = self._run(X, fhe)
        if out["task"] != "classification":
            raise ValueError("predict_proba needs a classifier; this model is a regressor")
        return out["scores"]

    def save(self, path_dir: Union[str, os.PathLike], overwrite: bool = False) -> None:
        """Writes client.zip, server.zip and serialized_processing.json into path_dir."""
        self._core.save(os.fspath(path_dir), bool(overwrite))

    def __repr__(self) -> str:
        kind = "classifier" if self.is_classifier else "regressor"
        return "<veil.CompiledModel %s %s, %d features, %d PBS per row>" % (
            self.model_id[:12], kind, self.n_features, self.statistics["total_pbs"])


def compile(model: Any, X: Any, **options: Any) -> CompiledModel:  # noqa: A001 (Concrete ML's name)
    """Quantizes `model` on the calibration set X and compiles it into a TFHE circuit.

    model: a fitted scikit-learn estimator or Pipeline (scalers + estimator), an XGBoost
    XGBClassifier / XGBRegressor / Booster, a torch.nn.Module (exported to ONNX on X's first
    sample), or the path of a .onnx, XGBoost .json or Veil scikit-learn .json file.
    X: calibration samples of the shape the model takes, e.g. (N, features) or (N, C, H, W).
    options: n_bits, lookup_bits, p_error, global_p_error, exact_tree_comparisons,
    exact_network_reads (as `veil compile`'s flags).
    """
    calibration = as_samples(X, "the calibration set X")
    opts = _options(options)
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.exists(path):
            raise ValueError("%s: no such model file" % path)
        return CompiledModel(_veil.CompiledModel.compile_file(path, calibration, opts))
    labels_are_indices = False
    if _is_sklearn(model):
        try:
            if sklearn_mlp.is_mlp(model):
                data = sklearn_mlp.to_onnx_bytes(model)
                labels_are_indices = True  # a network's classes are its output positions
            else:
                data = sklearn_export.to_json_bytes(model)
        except sklearn_export.ExportError as e:
            raise ValueError(str(e)) from None
    elif _is_xgboost(model):
        data = _xgboost_bytes(model)
    elif _is_torch(model):
        data = _torch_bytes(model, calibration)
    else:
        raise ValueError("cannot compile a %s.%s: expected a scikit-learn estimator or Pipeline, an XGBoost "
                         "model, a torch.nn.Module or a model file path" % (type(model).__module__, type(model).__name__))
    return CompiledModel(_veil.CompiledModel.compile_bytes(data, calibration, opts), _classes_of(model), labels_are_indices)
