#!/usr/bin/env python3
"""Trains the small models Veil's ml tests use and writes them under tests/fixtures/.

Run once, with Debian's python3-sklearn, python3-xgboost, python3-torch and python3-onnx
(/usr/bin/python3 tools/make_fixtures.py). Tests never run Python: they read what this
script wrote. Everything is seeded, so a rerun with the same package versions gives the
same files.

Written:
  tests/fixtures/data/<dataset>_calib.csv   calibration rows (a sample of the train split)
  tests/fixtures/data/<dataset>_test.csv    the test split; last column is the target
  tests/fixtures/models/<name>.<json|onnx>  the exported model
  tests/fixtures/models/<name>.expected.csv the framework's float predictions on the test
                                            split: prediction, score_0..score_{k-1}
  tests/fixtures/manifest.json              one entry per model (format, dataset, task,
                                            float metric on the test split)
All CSV files have a header row.
"""

import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from export_sklearn import export  # noqa: E402

OUT = os.path.join(os.path.dirname(HERE), "tests", "fixtures")
SEED = 7


def write_csv(path, header, rows):
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for r in rows:
            f.write(",".join(str(int(v)) if float(v).is_integer() and abs(v) < 2**53
                             else repr(float(v)) for v in r) + "\n")


def fmt(v):
    v = float(v)
    return "%.9g" % v


def write_expected(path, pred, scores):
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if scores.shape[0] != len(pred):
        scores = scores.T
    with open(path, "w") as f:
        f.write(",".join(["prediction"] + ["score_%d" % i for i in range(scores.shape[1])]) + "\n")
        for p, s in zip(pred, scores):
            f.write(",".join([fmt(p)] + [fmt(v) for v in s]) + "\n")


def load(name):
    from sklearn import datasets
    loader = {"breast_cancer": datasets.load_breast_cancer, "digits": datasets.load_digits,
              "iris": datasets.load_iris, "wine": datasets.load_wine,
              "diabetes": datasets.load_diabetes}[name]
    kwargs = {"scaled": False} if name == "diabetes" else {}
    x, y = loader(return_X_y=True, **kwargs)
    return x.astype(np.float64), y


def split(name):
    from sklearn.model_selection import train_test_split
    x, y = load(name)
    strat = None if name == "diabetes" else y
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=SEED, stratify=strat)
    return xtr, xte, ytr, yte


def main():
    os.makedirs(os.path.join(OUT, "data"), exist_ok=True)
    os.makedirs(os.path.join(OUT, "models"), exist_ok=True)
    manifest = {"generator": "tools/make_fixtures.py", "models": []}
    data = {}
    rng = np.random.RandomState(SEED)
    for name in ["breast_cancer", "digits", "iris", "wine", "diabetes"]:
        xtr, xte, ytr, yte = split(name)
        data[name] = (xtr, xte, ytr, yte)
        header = ["f%d" % i for i in range(xtr.shape[1])]
        idx = rng.permutation(len(xtr))[:min(len(xtr), 300)]
        write_csv(os.path.join(OUT, "data", name + "_calib.csv"), header, xtr[idx])
        write_csv(os.path.join(OUT, "data", name + "_test.csv"), header + ["target"],
                  np.column_stack([xte, yte]))

    def record(name, fmt_, dataset, task, pred, scores, extra=None):
        _, _, _, yte = data[dataset]
        write_expected(os.path.join(OUT, "models", name + ".expected.csv"), pred, scores)
        entry = {"name": name, "file": "models/%s.%s" % (name, "onnx" if fmt_ == "onnx" else "json"),
                 "format": fmt_, "dataset": dataset, "task": task}
        if task == "classification":
            entry["float_accuracy"] = float(np.mean(np.asarray(pred) == yte))
        else:
            from sklearn.metrics import r2_score
            entry["float_r2"] = float(r2_score(yte, pred))
        entry.update(extra or {})
        manifest["models"].append(entry)
        print(name, {k: v for k, v in entry.items() if k.startswith("float")})

    # --- scikit-learn -------------------------------------------------------------------
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.linear_model import (ElasticNet, Lasso, LinearRegression, LogisticRegression,
                                      Ridge)
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler, StandardScaler
    from sklearn.svm import LinearSVC, LinearSVR
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    def sk(name, est, dataset):
        xtr, xte, ytr, _ = data[dataset]
        est.fit(xtr, ytr)
        export(est, os.path.join(OUT, "models", name + ".json"))
        pred = est.predict(xte)
        if hasattr(est, "predict_proba"):
            scores = est.predict_proba(xte)
            task = "classification"
        elif hasattr(est, "decision_function"):
            scores = est.decision_function(xte)
            task = "classification"
        else:
            scores = pred
            task = "regression"
        record(name, "sklearn", dataset, task, pred, np.atleast_2d(scores))

    sk("logreg_breast_cancer", make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
       "breast_cancer")
    sk("linearsvc_breast_cancer", make_pipeline(StandardScaler(), LinearSVC(C=0.1, max_iter=20000,
                                                                            random_state=SEED)),
       "breast_cancer")
    sk("tree_breast_cancer", DecisionTreeClassifier(max_depth=5, random_state=SEED), "breast_cancer")
    sk("forest_breast_cancer", RandomForestClassifier(n_estimators=10, max_depth=4,
                                                      random_state=SEED), "breast_cancer")
    sk("logreg_iris", LogisticRegression(max_iter=2000), "iris")
    sk("forest_iris", RandomForestClassifier(n_estimators=8, max_depth=3, random_state=SEED), "iris")
    sk("logreg_wine", make_pipeline(MinMaxScaler(), LogisticRegression(max_iter=2000)), "wine")
    sk("tree_wine", DecisionTreeClassifier(max_depth=4, random_state=SEED), "wine")
    sk("logreg_digits", make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.1)),
       "digits")
    sk("linreg_diabetes", LinearRegression(), "diabetes")
    sk("ridge_diabetes", make_pipeline(StandardScaler(), Ridge(alpha=1.0)), "diabetes")
    sk("lasso_diabetes", Lasso(alpha=0.1, max_iter=10000), "diabetes")
    sk("elasticnet_diabetes", make_pipeline(StandardScaler(), ElasticNet(alpha=0.05)), "diabetes")
    sk("linearsvr_diabetes", make_pipeline(StandardScaler(), LinearSVR(C=10.0, max_iter=50000,
                                                                       random_state=SEED)),
       "diabetes")
    sk("tree_diabetes", DecisionTreeRegressor(max_depth=4, random_state=SEED), "diabetes")
    sk("forest_diabetes", RandomForestRegressor(n_estimators=10, max_depth=4, random_state=SEED),
       "diabetes")

    # k-nearest neighbours: the training set lives in the circuit (each point costs about
    # two PBS per row), so the model keeps a stratified sample of 48 training rows.
    from sklearn.model_selection import train_test_split
    from sklearn.neighbors import KNeighborsClassifier

    def knn(name, dataset, n_points, k, scaler):
        xtr, xte, ytr, _ = data[dataset]
        xs, _, ys, _ = train_test_split(xtr, ytr, train_size=n_points, random_state=SEED, stratify=ytr)
        est = make_pipeline(scaler, KNeighborsClassifier(n_neighbors=k))
        est.fit(xs, ys)
        export(est, os.path.join(OUT, "models", name + ".json"))
        record(name, "sklearn", dataset, "classification", est.predict(xte), est.predict_proba(xte),
               {"n_points": n_points, "k": k})

    knn("knn_iris", "iris", 48, 3, StandardScaler())

    # --- XGBoost ------------------------------------------------------------------------
    import xgboost as xgb

    def xg(name, est, dataset, task):
        xtr, xte, ytr, _ = data[dataset]
        est.fit(xtr, ytr)
        est.save_model(os.path.join(OUT, "models", name + ".json"))
        pred = est.predict(xte)
        scores = est.predict_proba(xte) if task == "classification" else pred
        record(name, "xgboost", dataset, task, pred, np.atleast_2d(scores),
               {"n_trees": int(est.n_estimators), "max_depth": int(est.max_depth)})

    xg("xgb_breast_cancer", xgb.XGBClassifier(n_estimators=20, max_depth=3, random_state=SEED,
                                              tree_method="exact"), "breast_cancer", "classification")
    xg("xgb_iris", xgb.XGBClassifier(n_estimators=10, max_depth=3, random_state=SEED,
                                     tree_method="exact"), "iris", "classification")
    xg("xgb_diabetes", xgb.XGBRegressor(n_estimators=20, max_depth=3, random_state=SEED,
                                        tree_method="exact"), "diabetes", "regression")

    # --- PyTorch -> ONNX ----------------------------------------------------------------
    import torch
    from torch import nn
    torch.manual_seed(SEED)

    def train(model, xtr, ytr, epochs, lr=0.01):
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        xt = torch.tensor(xtr, dtype=torch.float32)
        yt = torch.tensor(ytr, dtype=torch.long)
        loss_fn = nn.CrossEntropyLoss()
        g = torch.Generator().manual_seed(SEED)
        for _ in range(epochs):
            model.train()
            perm = torch.randperm(len(xt), generator=g)
            for i in range(0, len(xt), 32):
                b = perm[i:i + 32]
                opt.zero_grad()
                loss = loss_fn(model(xt[b]), yt[b])
                loss.backward()
                opt.step()
        model.eval()

    class Standardize(nn.Module):
        def __init__(self, x):
            super().__init__()
            self.register_buffer("mean", torch.tensor(x.mean(0), dtype=torch.float32))
            self.register_buffer("inv_std", torch.tensor(1.0 / (x.std(0) + 1e-6),
                                                         dtype=torch.float32))

        def forward(self, x):  # Sub and Mul (ONNX Div is not in Veil's supported list)
            return (x - self.mean) * self.inv_std

    def net(name, model, dataset, opset, shape=None, softmax=False, before_export=None):
        xtr, xte, ytr, _ = data[dataset]
        train(model, xtr if shape is None else xtr.reshape((-1,) + shape), ytr, epochs=60)
        if before_export is not None:
            before_export()
        xin = xte if shape is None else xte.reshape((-1,) + shape)
        with torch.no_grad():
            logits = model(torch.tensor(xin, dtype=torch.float32))
            probs = torch.softmax(logits, dim=1).numpy()
        export_model = nn.Sequential(model, nn.Softmax(dim=1)) if softmax else model
        dummy = torch.zeros((1,) + (shape if shape is not None else (xtr.shape[1],)))
        path = os.path.join(OUT, "models", name + ".onnx")
        torch.onnx.export(export_model, dummy, path, opset_version=opset, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
        import onnx
        ops = sorted({n.op_type for n in onnx.load(path).graph.node})
        record(name, "onnx", dataset, "classification", probs.argmax(1),
               probs if softmax else logits.numpy(), {"opset": opset, "ops": ops,
                                                      "softmax_in_model": softmax})

    net("mlp_breast_cancer", nn.Sequential(Standardize(data["breast_cancer"][0]), nn.Linear(30, 16),
                                           nn.ReLU(), nn.Linear(16, 2)), "breast_cancer", 13)
    net("mlp_iris", nn.Sequential(Standardize(data["iris"][0]), nn.Linear(4, 12), nn.Tanh(),
                                  nn.Linear(12, 3)), "iris", 9, softmax=True)
    net("mlp_wine", nn.Sequential(Standardize(data["wine"][0]), nn.Linear(13, 16),
                                  nn.BatchNorm1d(16), nn.LeakyReLU(0.1), nn.Linear(16, 8),
                                  nn.Sigmoid(), nn.Linear(8, 3)), "wine", 17)
    net("cnn_digits", nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                    nn.Conv2d(6, 12, 3), nn.ReLU(), nn.AvgPool2d(2),
                                    nn.Flatten(), nn.Linear(12, 10)), "digits", 11, shape=(1, 8, 8))

    # Concrete ML's TinyCNN (its CNN-on-digits example, the network behind its published
    # latency): three convolutions with ReLU and no pooling, every neuron's fan-in capped at
    # 10 non-zero weights so that accumulators stay narrow. Trained, pruned by magnitude per
    # neuron, then fine-tuned with the pruning mask fixed.
    from torch.nn.utils import prune

    def cap_fan_in(model, epochs, n_active=10):
        xtr, _, ytr, _ = data["digits"]
        train(model, xtr.reshape((-1, 1, 8, 8)), ytr, epochs=epochs)
        convs = [m for m in model if isinstance(m, nn.Conv2d)]
        for layer in convs:
            w = layer.weight.detach().reshape(layer.weight.shape[0], -1)
            keep = w.abs().topk(min(n_active, w.shape[1]), dim=1).indices
            mask = torch.zeros_like(w).scatter_(1, keep, 1.0)
            prune.custom_from_mask(layer, "weight", mask.reshape(layer.weight.shape))
        return convs

    tiny = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 3, 3, stride=2), nn.ReLU(),
                         nn.Conv2d(3, 16, 2), nn.ReLU(), nn.Flatten(), nn.Linear(16, 10))
    pruned = cap_fan_in(tiny, epochs=60)
    net("tinycnn_digits", tiny, "digits", 11, shape=(1, 8, 8),
        before_export=lambda: [prune.remove(layer, "weight") for layer in pruned])

    # Quantization-aware training (QAT): 4-bit weights (per output channel, symmetric) and
    # 4-bit activations by fake quantization, exported as Brevitas' QCDQ form does it --
    # QuantizeLinear, Clip on the codes (4 bits inside ONNX's 8-bit types), DequantizeLinear --
    # since torch's own export refuses fake quantization to fewer than 7 bits. The float model
    # trains first, then the quantized one is fine-tuned (straight-through gradients).
    class QCDQ(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, scale, zero_point, q_min, q_max, axis):
            shape = [1] * x.dim()
            if axis >= 0:
                shape[axis] = -1
            s = scale.reshape(shape) if axis >= 0 else scale
            z = (zero_point.reshape(shape) if axis >= 0 else zero_point).to(x.dtype)
            return (torch.clamp(torch.round(x / s) + z, q_min, q_max) - z) * s

        @staticmethod
        def backward(ctx, grad):
            return grad, None, None, None, None, None

        @staticmethod
        def symbolic(g, x, scale, zero_point, q_min, q_max, axis):
            kw = {"axis_i": axis} if axis >= 0 else {}
            code = torch.int8 if q_min < 0 else torch.uint8
            q = g.op("QuantizeLinear", x, scale, zero_point, **kw)
            c = g.op("Clip", q, g.op("Constant", value_t=torch.tensor(q_min, dtype=code)),
                     g.op("Constant", value_t=torch.tensor(q_max, dtype=code)))
            return g.op("DequantizeLinear", c, scale, zero_point, **kw)

    class QatLinear(nn.Linear):
        frozen = None  # the scales, fixed before export so that they are constants there

        def forward(self, x):
            scale = self.frozen
            if scale is None:
                scale = (self.weight.detach().abs().amax(dim=1) / 7).clamp(min=1e-8)
            w = QCDQ.apply(self.weight, scale, torch.zeros(len(scale), dtype=torch.int8), -7, 7, 0)
            return nn.functional.linear(x, w, self.bias)

    class QatAct(nn.Module):  # unsigned 4-bit codes of [0, max]: after a ReLU
        def __init__(self, top):
            super().__init__()
            self.register_buffer("scale", torch.tensor(top / 15, dtype=torch.float32))

        def forward(self, x):
            return QCDQ.apply(x, self.scale, torch.tensor(0, dtype=torch.uint8), 0, 15, -1)

    xtr_d = data["digits"][0]
    qat = nn.Sequential(QatAct(float(xtr_d.max())), QatLinear(64, 32), nn.ReLU(), nn.Identity(),
                        QatLinear(32, 10))
    train(nn.Sequential(*[m for m in qat if not isinstance(m, QatAct)]), xtr_d, data["digits"][2],
          epochs=40)
    with torch.no_grad():  # the activation grid: the trained float network's largest ReLU output
        top = nn.Sequential(qat[1], qat[2])(torch.tensor(xtr_d, dtype=torch.float32)).max().item()
    qat[3] = QatAct(top)

    def freeze():
        for m in qat:
            if isinstance(m, QatLinear):
                m.frozen = (m.weight.detach().abs().amax(dim=1) / 7).clamp(min=1e-8)

    net("qat_mlp_digits", qat, "digits", 13, before_export=freeze)

    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
