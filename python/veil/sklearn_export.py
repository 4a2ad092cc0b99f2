"""Fitted scikit-learn estimators as Veil's scikit-learn JSON model format.

The format is documented in docs/formats/sklearn_model.md. Supported estimators:
LinearRegression, Ridge, Lasso, ElasticNet, LogisticRegression (binary, multinomial or
one-vs-rest), LinearSVC, LinearSVR, SGDClassifier, SGDRegressor, PoissonRegressor,
GammaRegressor, TweedieRegressor, DecisionTreeClassifier, DecisionTreeRegressor,
RandomForestClassifier, RandomForestRegressor, KNeighborsClassifier (uniform weights,
Euclidean metric), and a Pipeline of StandardScaler or MinMaxScaler steps followed by one of
them.

veil.compile calls to_dict for scikit-learn objects; tools/export_sklearn.py writes the
document to a file for the veil CLI. This module needs only the standard library, numpy and
scikit-learn (not Veil's compiled extension), so that tool can load it alone.
"""

import json

import numpy as np

FORMAT_NAME = "veil-sklearn"
FORMAT_VERSION = "1.0"


class ExportError(ValueError):
    pass


def _floats(a):
    return [float(v) for v in np.asarray(a, dtype=np.float64).ravel()]


def _classes(est):
    classes = list(est.classes_)
    out = []
    for c in classes:
        if isinstance(c, (np.integer, int)) and not isinstance(c, bool):
            out.append(int(c))
        elif isinstance(c, (np.floating, float)) and float(c).is_integer():
            out.append(int(c))
        else:
            raise ExportError("class labels must be integers, got %r" % (c,))
    return out


def _scaler(step):
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    n = int(step.n_features_in_)
    if isinstance(step, StandardScaler):
        mean = step.mean_ if step.with_mean and step.mean_ is not None else np.zeros(n)
        scale = step.scale_ if step.with_std and step.scale_ is not None else np.ones(n)
        return {"type": "standard_scaler", "mean": _floats(mean), "scale": _floats(scale)}
    if isinstance(step, MinMaxScaler):
        if getattr(step, "clip", False):
            raise ExportError("MinMaxScaler(clip=True) is not supported")
        return {"type": "minmax_scaler", "scale": _floats(step.scale_), "min": _floats(step.min_)}
    raise ExportError("unsupported pipeline step %s (supported: StandardScaler, MinMaxScaler)"
                      % type(step).__name__)


def _glm_link(est):
    """The link of a generalized linear regressor: scikit-learn's PoissonRegressor and
    GammaRegressor predict exp(margin); TweedieRegressor follows its `link` (auto: identity for
    power <= 0, log otherwise)."""
    from sklearn.linear_model import TweedieRegressor

    if isinstance(est, TweedieRegressor):
        link = est.link
        if link == "auto":
            link = "identity" if est.power <= 0 else "log"
        if link not in ("identity", "log"):
            raise ExportError("TweedieRegressor(link=%r) is not supported (identity, log, auto)" % (link,))
        return "exp" if link == "log" else "identity"
    return "exp"


def _linear(est):
    from sklearn.linear_model import (ElasticNet, GammaRegressor, Lasso, LinearRegression,
                                      LogisticRegression, PoissonRegressor, Ridge, SGDClassifier,
                                      SGDRegressor, TweedieRegressor)
    from sklearn.svm import LinearSVC, LinearSVR

    name = type(est).__name__
    coef = np.atleast_2d(np.asarray(est.coef_, dtype=np.float64))
    intercept = np.atleast_1d(np.asarray(est.intercept_, dtype=np.float64))
    if intercept.size == 1 and coef.shape[0] > 1:
        intercept = np.repeat(intercept, coef.shape[0])
    model = {"type": "linear", "estimator": name, "coef": [_floats(r) for r in coef],
             "intercept": _floats(intercept)}
    if isinstance(est, (LinearRegression, Ridge, Lasso, ElasticNet, LinearSVR, SGDRegressor)):
        model["task"] = "regression"
        model["link"] = "identity"
    elif isinstance(est, (PoissonRegressor, GammaRegressor, TweedieRegressor)):
        model["task"] = "regression"
        model["link"] = _glm_link(est)
    elif isinstance(est, LogisticRegression):
        model["task"] = "classification"
        model["classes"] = _classes(est)
        if coef.shape[0] == 1:
            model["link"] = "sigmoid"
        else:
            multinomial = est.multi_class == "multinomial" or (
                est.multi_class == "auto" and est.solver != "liblinear")
            model["link"] = "softmax" if multinomial else "ovr_sigmoid"
    elif isinstance(est, LinearSVC):
        model["task"] = "classification"
        model["classes"] = _classes(est)
        model["link"] = "identity"
    elif isinstance(est, SGDClassifier):
        # One-vs-rest for several classes. With the logistic loss scikit-learn's probabilities
        # are the sigmoids of the margins, normalised (binary: one sigmoid); with the other
        # losses the scores are the decision function, as LinearSVC's.
        model["task"] = "classification"
        model["classes"] = _classes(est)
        if est.loss in ("log_loss", "log"):
            model["link"] = "sigmoid" if coef.shape[0] == 1 else "ovr_sigmoid"
        else:
            model["link"] = "identity"
    else:
        raise ExportError("unsupported linear estimator %s" % name)
    return model


def _tree(tree, classifier):
    t = tree.tree_
    value = np.asarray(t.value, dtype=np.float64)  # [nodes, outputs, classes]
    if value.shape[1] != 1:
        raise ExportError("multi-output trees are not supported")
    value = value[:, 0, :]
    if classifier:
        sums = value.sum(axis=1, keepdims=True)
        sums[sums == 0] = 1.0
        value = value / sums
    left = [int(v) for v in t.children_left]
    right = [int(v) for v in t.children_right]
    feature = [int(f) if left[i] != -1 else -1 for i, f in enumerate(t.feature)]
    threshold = [float(v) if left[i] != -1 else 0.0 for i, v in enumerate(t.threshold)]
    values = [_floats(value[i]) if left[i] == -1 else [] for i in range(len(left))]
    return {"feature": feature, "threshold": threshold, "left": left, "right": right,
            "value": values}


def _trees(est):
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    name = type(est).__name__
    if isinstance(est, (DecisionTreeClassifier, DecisionTreeRegressor)):
        members = [est]
    elif isinstance(est, (RandomForestClassifier, RandomForestRegressor)):
        members = list(est.estimators_)
    else:
        raise ExportError("unsupported tree estimator %s" % name)
    classifier = isinstance(est, (DecisionTreeClassifier, RandomForestClassifier))
    if classifier and np.ndim(est.classes_[0]) != 0:
        raise ExportError("multi-output classifiers are not supported")
    model = {"type": "tree_ensemble", "estimator": name,
             "task": "classification" if classifier else "regression",
             "aggregation": "mean", "comparison": "less_equal",
             "trees": [_tree(m, classifier) for m in members]}
    if classifier:
        model["classes"] = _classes(est)
        model["n_outputs"] = len(model["classes"])
    else:
        model["n_outputs"] = 1
    return model


def _knn(est):
    """KNeighborsClassifier: its training points (as it saw them, after the pipeline's
    scalers), their class indices and k. Veil computes Euclidean distances and counts every
    neighbour's vote the same; other choices are refused by name."""
    name = type(est).__name__
    if est.weights != "uniform":
        raise ExportError("%s(weights=%r) is not supported: only weights='uniform' (every neighbour's "
                          "vote counts the same; 'distance' would divide by encrypted distances)"
                          % (name, est.weights if isinstance(est.weights, str) else "<callable>"))
    metric = est.effective_metric_ if hasattr(est, "effective_metric_") else est.metric
    params = getattr(est, "effective_metric_params_", None) or {}
    if metric == "minkowski" and params.get("p", 2) == 2 and "w" not in params:
        metric = "euclidean"
    if metric not in ("euclidean", "l2") or (set(params) - {"p"}):
        shown = "metric=%r" % (est.metric if isinstance(est.metric, str) else "<callable>",)
        if est.metric == "minkowski":
            shown += ", p=%s" % (params.get("p", est.p),)
        raise ExportError("%s(%s) is not supported: only the Euclidean distance "
                          "(metric='minkowski' with p=2, or 'euclidean')" % (name, shown))
    if getattr(est, "outputs_2d_", False):
        raise ExportError("multi-output classifiers are not supported")
    return {"type": "knn", "estimator": name, "task": "classification",
            "classes": _classes(est), "n_neighbors": int(est.n_neighbors),
            "weights": "uniform", "metric": "euclidean",
            "train_x": [_floats(r) for r in np.asarray(est._fit_X, dtype=np.float64)],
            "train_y": [int(v) for v in np.asarray(est._y).ravel()]}


LINEAR_ESTIMATORS = ("LinearRegression", "Ridge", "Lasso", "ElasticNet", "LogisticRegression", "LinearSVC",
                     "LinearSVR", "SGDClassifier", "SGDRegressor", "PoissonRegressor", "GammaRegressor",
                     "TweedieRegressor")


def to_dict(estimator):
    """Returns the JSON document (a dict) describing a fitted estimator."""
    from sklearn.pipeline import Pipeline

    preprocessing = []
    est = estimator
    if isinstance(estimator, Pipeline):
        steps = [s for _, s in estimator.steps if s is not None and s != "passthrough"]
        if not steps:
            raise ExportError("empty pipeline")
        preprocessing = [_scaler(s) for s in steps[:-1]]
        est = steps[-1]
    if not hasattr(est, "n_features_in_"):
        raise ExportError("%s is not fitted" % type(est).__name__)
    name = type(est).__name__
    if name in ("DecisionTreeClassifier", "DecisionTreeRegressor", "RandomForestClassifier",
                "RandomForestRegressor"):
        model = _trees(est)
    elif name in LINEAR_ESTIMATORS:
        model = _linear(est)
    elif name == "KNeighborsClassifier":
        model = _knn(est)
    else:
        raise ExportError(
            "unsupported estimator %s (supported: %s, DecisionTreeClassifier, "
            "DecisionTreeRegressor, RandomForestClassifier, RandomForestRegressor, "
            "KNeighborsClassifier, "
            "Pipeline of StandardScaler/MinMaxScaler and one of them)" % (name, ", ".join(LINEAR_ESTIMATORS)))
    import sklearn
    return {"format": FORMAT_NAME, "version": FORMAT_VERSION,
            "producer": "sklearn " + sklearn.__version__,
            "n_features": int(est.n_features_in_), "preprocessing": preprocessing,
            "model": model}


def to_json_bytes(estimator):
    """The JSON document of a fitted estimator, as the bytes veil.compile hands to Veil."""
    return json.dumps(to_dict(estimator), separators=(",", ":")).encode()


def export(estimator, path):
    """Writes `estimator` (fitted) to `path` in Veil's scikit-learn JSON format."""
    with open(path, "wb") as f:
        f.write(to_json_bytes(estimator) + b"\n")
