"""k-nearest neighbours (KNeighborsClassifier, uniform weights, Euclidean metric) in a
Pipeline with a scaler: with exact distances the encrypted run equals the clear quantized
model; with the default rounded distances the accuracy stays near scikit-learn's; what Veil
does not compute is refused by name."""

import numpy as np
import pytest

import veil
from conftest import train_test


def _knn(scaler, n_points, k):
    from sklearn.model_selection import train_test_split
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline

    X, Xt, y, yt = train_test("iris")
    Xs, _, ys, _ = train_test_split(X, y, train_size=n_points, random_state=7, stratify=y)
    return make_pipeline(scaler, KNeighborsClassifier(n_neighbors=k)).fit(Xs, ys), X, Xt, yt


@pytest.mark.parametrize("scaler", ["standard", "minmax"])
def test_exact_distances_clear_simulate_execute_agree(scaler):
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    est, X, Xt, _ = _knn(StandardScaler() if scaler == "standard" else MinMaxScaler(), 24, 3)
    model = veil.compile(est, X, exact_network_reads=True)
    clear = model.predict(Xt)
    np.testing.assert_array_equal(model.predict(Xt, fhe="simulate"), clear)
    if scaler == "standard":  # one encrypted row: about 110 PBS
        np.testing.assert_array_equal(model.predict(Xt[:1], fhe="execute"), clear[:1])
    # Probabilities are vote fractions: multiples of 1/k summing to one.
    proba = model.predict_proba(Xt)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(proba * 3, np.round(proba * 3), atol=1e-9)
    assert model.statistics["total_pbs"] > 24


def test_rounded_distances_keep_the_accuracy():
    from sklearn.preprocessing import StandardScaler

    est, X, Xt, yt = _knn(StandardScaler(), 48, 3)
    model = veil.compile(est, X)
    clear = model.predict(Xt)
    # 4-bit features, distances rounded to 7 bits. On this split (not the fixture's): 0.842
    # against scikit-learn's 0.895, two rows of 38 (the fixture's split: 0.974 against 0.947).
    assert np.mean(clear == yt) >= np.mean(est.predict(Xt) == yt) - 0.06
    # A distance next to a rounding tie may take the neighbouring level under encryption: the
    # simulated labels agree with the clear ones on nearly every row.
    assert np.mean(model.predict(Xt, fhe="simulate") == clear) >= 0.9


@pytest.mark.parametrize("kwargs, message", [
    (dict(weights="distance"), r"weights='distance'\) is not supported: only weights='uniform'"),
    (dict(metric="manhattan"), r"metric='manhattan'\) is not supported: only the Euclidean distance"),
    (dict(p=1), r"metric='minkowski', p=1\) is not supported"),
    (dict(metric="cosine"), r"metric='cosine'\) is not supported"),
])
def test_refused_by_name(kwargs, message):
    from sklearn.neighbors import KNeighborsClassifier

    X, _, y, _ = train_test("iris")
    with pytest.raises(ValueError, match=message):
        veil.compile(KNeighborsClassifier(**kwargs).fit(X[:30], y[:30]), X)
