"""veil.compile from model files and from framework objects: the clear circuit agrees with
`veil simulate`, encrypted execution with the clear circuit, accuracy with the float model."""

import os

import numpy as np
import pytest

import veil
from conftest import FIXTURES, MANIFEST, dataset, read_predictions, train_test, veil_cli, write_csv

# Exact reads: for linear models and trees FHE then equals the clear circuit bit for bit. A
# network's roundings stay approximate (a value next to a rounding tie may go either way, as
# the noise falls), so its simulated and encrypted labels are compared as distributions.
EXACT = dict(exact_tree_comparisons=True, exact_network_reads=True)
# Rows run encrypted per model: each costs its PBS count (CNNs the most).
EXECUTE_ROWS = {"cnn_digits": 2, "tinycnn_digits": 2, "knn_iris": 1}


@pytest.mark.parametrize("entry", MANIFEST, ids=[m["name"] for m in MANIFEST])
def test_fixture_file_clear_simulate_execute_and_cli_agree(entry, workdir):
    calibration, _ = dataset(entry["dataset"], "calib")
    rows, _ = dataset(entry["dataset"], "test")
    rows = rows[:20]
    if entry["name"].startswith(("cnn", "tinycnn")):
        calibration = calibration.reshape(-1, 1, 8, 8)  # images as PyTorch holds them
        rows = rows.reshape(-1, 1, 8, 8)
    model = veil.compile(os.path.join(FIXTURES, entry["file"]), calibration, **EXACT)
    assert model.is_classifier == (entry["task"] == "classification")

    clear = model.predict(rows)
    simulated = model.predict(rows, fhe="simulate")
    n = EXECUTE_ROWS.get(entry["name"], 3)
    executed = model.predict(rows[:n], fhe="execute")
    if entry["format"] == "onnx":
        # A row whose value sits near a rounding tie goes either way, each time with its own
        # probability (up to about 2/3 on these rows): over 30 simulations, most labels agree
        # with the clear ones, and every encrypted label is one the simulations produce.
        draws = [simulated] + [model.predict(rows, fhe="simulate") for _ in range(29)]
        assert np.mean([d == clear for d in draws]) >= 0.8
        for r in range(n):
            assert executed[r] in {clear[r]} | {d[r] for d in draws}, "row %d" % r
    else:
        np.testing.assert_array_equal(simulated, clear)
        np.testing.assert_array_equal(executed, clear[:n])

    model.save(workdir / "artifacts")
    write_csv(workdir / "rows.csv", rows)
    veil_cli("simulate", "--artifacts", workdir / "artifacts", "--input", workdir / "rows.csv", "--out", workdir / "cli.csv")
    cli = read_predictions(workdir / "cli.csv")
    if model.is_classifier:
        np.testing.assert_array_equal(clear, cli[:, 0].astype(np.int64))
        np.testing.assert_allclose(model.predict_proba(rows), cli[:, 1:], rtol=1e-6, atol=1e-9)
    else:
        np.testing.assert_allclose(clear, cli[:, 0], rtol=1e-6, atol=1e-9)


def _accuracy(model, X, y):
    return float(np.mean(model.predict(X) == y))


def test_sklearn_pipeline_objects():
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    Xc, Xt, yc, yt = train_test("breast_cancer")
    for est in (make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
                RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0)):
        est.fit(Xc, yc)
        model = veil.compile(est, Xc, **EXACT)
        # Quantization costs little accuracy: within 4 points of the float model on the test split.
        assert _accuracy(model, Xt, yt) >= float(np.mean(est.predict(Xt) == yt)) - 0.04
        np.testing.assert_array_equal(model.predict(Xt[:3], fhe="execute"), model.predict(Xt[:3]))
        assert model.predict(Xt[:3]).dtype == est.classes_.dtype
        assert model.predict_proba(Xt[:3]).shape == (3, 2)

    Xr, Xrt, yr, _ = train_test("diabetes")
    ridge = make_pipeline(StandardScaler(), Ridge()).fit(Xr, yr)
    model = veil.compile(ridge, Xr)
    pred = model.predict(Xrt)
    assert pred.shape == (len(Xrt),)
    # Regression: the quantized model follows the float one closely.
    assert np.corrcoef(pred, ridge.predict(Xrt))[0, 1] > 0.99
    with pytest.raises(ValueError, match="regressor"):
        model.predict_proba(Xrt)


def test_xgboost_object():
    xgboost = pytest.importorskip("xgboost")
    Xc, Xt, yc, yt = train_test("breast_cancer")
    clf = xgboost.XGBClassifier(n_estimators=4, max_depth=2, random_state=0).fit(Xc, yc)
    model = veil.compile(clf, Xc, **EXACT)
    assert _accuracy(model, Xt, yt) >= float(np.mean(clf.predict(Xt) == yt)) - 0.04
    np.testing.assert_array_equal(model.predict(Xt[:2], fhe="execute"), model.predict(Xt[:2]))
    # The booster itself compiles to the same model.
    assert veil.compile(clf.get_booster(), Xc, **EXACT).model_id == model.model_id


def test_torch_module():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    Xc, Xt, yc, yt = train_test("iris")
    mean, std = Xc.mean(0), Xc.std(0) + 1e-6
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    x = torch.tensor((Xc - mean) / std, dtype=torch.float32)
    y = torch.tensor(yc, dtype=torch.int64)
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    net.train()  # compile must not leave the module in another mode than it found it
    model = veil.compile(net, (Xc - mean) / std, **EXACT)
    assert net.training
    with torch.no_grad():
        float_acc = float(np.mean(net(torch.tensor((Xt - mean) / std, dtype=torch.float32)).argmax(1).numpy() == yt))
    X = (Xt - mean) / std
    assert _accuracy(model, X, yt) >= float_acc - 0.06
    # Roundings are approximate in networks: each encrypted label is one simulation produces.
    executed = model.predict(X[:2], fhe="execute")
    draws = [model.predict(X[:2])] + [model.predict(X[:2], fhe="simulate") for _ in range(30)]
    for r in range(2):
        assert executed[r] in {d[r] for d in draws}


def test_statistics_and_repr():
    Xc, _ = dataset("breast_cancer", "calib")
    model = veil.compile(os.path.join(FIXTURES, "models", "tree_breast_cancer.json"), Xc)
    s = model.statistics
    assert s["total_pbs"] > 0 and s["total_pbs"] == sum(s["pbs_by_precision"].values())
    assert 0 < s["predicted_p_error"] < 1e-3
    assert "p=" in s["parameters"] and "total PBS" in s["text"]
    assert s["evaluation_key_bytes"] > 10**6
    assert "classifier" in repr(model)


def test_image_rows_one_sample_and_shape_errors():
    Xc, _ = dataset("digits", "calib")
    model = veil.compile(os.path.join(FIXTURES, "models", "tinycnn_digits.onnx"), Xc.reshape(-1, 1, 8, 8))
    images = Xc[:3].reshape(-1, 1, 8, 8)
    expected = model.predict(images)
    # Flat rows of 64 values, and one image without its batch dimension, are the same samples.
    np.testing.assert_array_equal(model.predict(Xc[:3]), expected)
    np.testing.assert_array_equal(model.predict(images[1]), expected[1:2])
    with pytest.raises(ValueError, match=r"rows of shape \(3, 1, 7, 7\) hold 49 values per sample; the model takes "
                                         r"samples of shape \(1, 8, 8\)"):
        model.predict(np.zeros((3, 1, 7, 7)))


def test_any_float_dtype_and_order():
    Xc, _ = dataset("breast_cancer", "calib")
    model = veil.compile(os.path.join(FIXTURES, "models", "logreg_breast_cancer.json"), Xc)
    Xt, _ = dataset("breast_cancer", "test")
    expected = model.predict(Xt[:10])
    np.testing.assert_array_equal(model.predict(Xt[:10].astype(np.float32)), model.predict(Xt[:10].astype(np.float32).astype(np.float64)))
    np.testing.assert_array_equal(model.predict(np.asfortranarray(Xt[:10])), expected)
    np.testing.assert_array_equal(model.predict(Xt[:10].tolist()), expected)


def test_bad_input_raises_value_errors(workdir):
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB

    Xc, _, yc, _ = train_test("breast_cancer")
    with pytest.raises(ValueError, match="unsupported estimator GaussianNB"):
        veil.compile(GaussianNB().fit(Xc, yc), Xc)
    with pytest.raises(ValueError, match="not fitted"):
        veil.compile(LogisticRegression(), Xc)
    with pytest.raises(ValueError, match="cannot compile a builtins.dict"):
        veil.compile({"a": 1}, Xc)
    with pytest.raises(ValueError, match="no such model file"):
        veil.compile(workdir / "missing.onnx", Xc)
    bad = workdir / "bad.json"
    bad.write_text("{\"format\": 1e999}")
    with pytest.raises(ValueError, match="bad.json"):
        veil.compile(bad, Xc)
    model = veil.compile(os.path.join(FIXTURES, "models", "logreg_breast_cancer.json"), Xc)
    with pytest.raises(ValueError, match=r"rows of shape \(2, 29\) hold 29 values per sample; the model takes samples of shape \(30,\)"):
        model.predict(Xc[:2, :29])
    with pytest.raises(ValueError, match="scalar"):
        model.predict(3.0)
    with pytest.raises(ValueError, match="fhe must be"):
        model.predict(Xc[:2], fhe="yes")
    with pytest.raises(ValueError, match="array of numbers"):
        model.predict([["a"] * 30])
    with pytest.raises(TypeError, match="unexpected option"):
        veil.compile(os.path.join(FIXTURES, "models", "logreg_breast_cancer.json"), Xc, nbits=4)
    with pytest.raises(ValueError, match="n_bits"):
        veil.compile(os.path.join(FIXTURES, "models", "logreg_breast_cancer.json"), Xc, n_bits=12)
    model.save(workdir / "art")
    with pytest.raises(ValueError, match="exists already"):
        model.save(workdir / "art")
    model.save(workdir / "art", overwrite=True)
