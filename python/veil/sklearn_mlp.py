"""scikit-learn's MLPClassifier and MLPRegressor (alone or after StandardScaler /
MinMaxScaler steps in a Pipeline) as an ONNX graph for Veil's network lowering.

The graph: the scalers folded into one Mul and Add, then per layer a Gemm and the activation
(Relu, Tanh, Sigmoid, or none), and for a classifier a final Softmax, which Veil runs on the
client. A binary classifier's single logistic output z becomes two logits [0, z]: their
softmax is [1 - sigmoid(z), sigmoid(z)], scikit-learn's predict_proba. Needs the `onnx`
package (Debian's python3-onnx).
"""

import numpy as np

from .sklearn_export import ExportError, _scaler

_ACTIVATIONS = {"relu": "Relu", "tanh": "Tanh", "logistic": "Sigmoid", "identity": None}


def is_mlp(estimator):
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    est = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    return isinstance(est, (MLPClassifier, MLPRegressor))


def _scalers(steps, n):
    """The scalers' composition x * mul + add (each read by sklearn_export, as the JSON
    format reads it)."""
    mul, add = np.ones(n), np.zeros(n)
    for step in steps:
        t = _scaler(step)
        if t["type"] == "standard_scaler":
            scale = np.asarray(t["scale"])
            m, a = 1.0 / scale, -np.asarray(t["mean"]) / scale
        else:
            m, a = np.asarray(t["scale"]), np.asarray(t["min"])
        mul, add = mul * m, add * m + a
    return mul, add


def to_onnx_bytes(estimator):
    """The fitted MLP (or Pipeline ending in one) as serialized ONNX."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from sklearn.neural_network import MLPClassifier

    steps = [s for _, s in estimator.steps if s is not None and s != "passthrough"] if hasattr(estimator, "steps") else [estimator]
    mlp = steps[-1]
    if not hasattr(mlp, "coefs_"):
        raise ExportError("%s is not fitted" % type(mlp).__name__)
    classifier = isinstance(mlp, MLPClassifier)
    if not classifier and mlp.n_outputs_ != 1:
        raise ExportError("MLPRegressor with %d outputs: Veil's networks have one regression output" % mlp.n_outputs_)
    if mlp.activation not in _ACTIVATIONS:
        raise ExportError("MLP activation %r is not supported" % mlp.activation)
    n = int(mlp.n_features_in_)

    nodes, inits = [], []

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    x = "x"
    mul, add = _scalers(steps[:-1], n)
    if not (np.all(mul == 1) and np.all(add == 0)):
        nodes.append(helper.make_node("Mul", [x, const("scale_mul", mul.reshape(1, n))], ["scaled_mul"]))
        nodes.append(helper.make_node("Add", ["scaled_mul", const("scale_add", add.reshape(1, n))], ["scaled"]))
        x = "scaled"
    layers = len(mlp.coefs_)
    for i, (w, b) in enumerate(zip(mlp.coefs_, mlp.intercepts_)):
        w, b = np.asarray(w, dtype=np.float64), np.asarray(b, dtype=np.float64)
        last = i == layers - 1
        if last and classifier and mlp.out_activation_ == "logistic":
            w = np.concatenate([np.zeros((w.shape[0], 1)), w], axis=1)
            b = np.concatenate([[0.0], b])
        out = "h%d" % i
        nodes.append(helper.make_node("Gemm", [x, const("w%d" % i, w), const("b%d" % i, b)], [out]))
        x = out
        activation = _ACTIVATIONS[mlp.activation] if not last else None
        if activation:
            nodes.append(helper.make_node(activation, [x], [x + "_act"]))
            x = x + "_act"
    if classifier:
        nodes.append(helper.make_node("Softmax", [x], ["y"], axis=1))
    else:
        nodes.append(helper.make_node("Identity", [x], ["y"]))
    outputs = 2 if classifier and mlp.out_activation_ == "logistic" else int(mlp.coefs_[-1].shape[1])
    graph = helper.make_graph(nodes, "sklearn_mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, outputs])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="veil")
    onnx.checker.check_model(model)
    return model.SerializeToString()
