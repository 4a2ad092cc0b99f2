"""Concrete ML's deployment classes on Veil, their interplay with the veil CLI's files, and
RemoteModel against a `veil serve` started here."""

import os
import re
import subprocess
import time

import numpy as np
import pytest

import veil
from conftest import FIXTURES, VEIL, dataset, veil_cli, write_csv
from veil.client import RemoteError, RemoteModel
from veil.deployment import FHEModelClient, FHEModelDev, FHEModelServer

EXACT = dict(exact_tree_comparisons=True)


@pytest.fixture(scope="module")
def forest(tmp_path_factory):
    """A compiled tree ensemble (it has lookups: real evaluation keys) and its artifacts."""
    Xc, _ = dataset("breast_cancer", "calib")
    model = veil.compile(os.path.join(FIXTURES, "models", "tree_breast_cancer.json"), Xc, **EXACT)
    path = tmp_path_factory.mktemp("forest") / "artifacts"
    FHEModelDev(path, model).save()
    return model, path


def test_round_trip_with_the_three_classes(forest, tmp_path):
    model, path = forest
    X, _ = dataset("breast_cancer", "test")
    X = X[:4]
    client = FHEModelClient(path, key_dir=tmp_path / "keys")
    client.generate_private_and_evaluation_keys()
    keys = client.get_serialized_evaluation_keys()
    assert isinstance(keys, bytes) and keys[:8] == b"VEILENVL"
    query = client.quantize_encrypt_serialize(X)
    server = FHEModelServer(path)
    answer = server.run(query, keys)
    proba = client.deserialize_decrypt_dequantize(answer)
    assert proba.shape == (4, 2)
    np.testing.assert_allclose(proba, model.predict_proba(X))
    # The same keys again: expanded once, served from the server's cache.
    assert server.run(client.quantize_encrypt_serialize(X), keys)
    assert len(server._cache) == 1
    # A second client on the same key_dir reuses the keys rather than making new ones.
    again = FHEModelClient(path, key_dir=tmp_path / "keys")
    assert again.get_serialized_evaluation_keys() == keys
    np.testing.assert_allclose(again.deserialize_decrypt_dequantize(answer), proba)
    assert oct(os.stat(tmp_path / "keys" / "secret.key").st_mode & 0o777) == "0o600"
    # force makes new ones.
    again.generate_private_and_evaluation_keys(force=True)
    assert again.get_serialized_evaluation_keys() != keys


def test_mixed_with_cli_files(forest, tmp_path):
    model, path = forest
    X, _ = dataset("breast_cancer", "test")
    X = X[:3]
    # Keys made by the CLI, used from Python; the CLI runs what Python encrypted.
    veil_cli("keygen", "--client", path, "--keys", tmp_path / "keys")
    client = FHEModelClient(path, key_dir=tmp_path / "keys")
    with open(tmp_path / "keys" / "evaluation.keys", "rb") as f:
        assert client.get_serialized_evaluation_keys() == f.read()
    (tmp_path / "q.enc").write_bytes(client.quantize_encrypt_serialize(X))
    veil_cli("run", "--server", path, "--evaluation-keys", tmp_path / "keys" / "evaluation.keys", "--input",
             tmp_path / "q.enc", "--out", tmp_path / "a.enc")
    np.testing.assert_allclose(client.deserialize_decrypt_dequantize((tmp_path / "a.enc").read_bytes()),
                               model.predict_proba(X))
    # And the other way: the CLI encrypts, Python's server runs, the CLI decrypts.
    write_csv(tmp_path / "rows.csv", X)
    veil_cli("encrypt", "--client", path, "--keys", tmp_path / "keys", "--input", tmp_path / "rows.csv", "--out",
             tmp_path / "q2.enc")
    answer = FHEModelServer(path).run((tmp_path / "q2.enc").read_bytes(), (tmp_path / "keys" / "evaluation.keys").read_bytes())
    (tmp_path / "a2.enc").write_bytes(answer)
    veil_cli("decrypt", "--client", path, "--keys", tmp_path / "keys", "--input", tmp_path / "a2.enc", "--out",
             tmp_path / "p.csv")
    labels = np.loadtxt(tmp_path / "p.csv", delimiter=",", skiprows=1, ndmin=2)[:, 0]
    np.testing.assert_array_equal(labels, model.predict(X))


def test_foreign_and_damaged_bytes_are_value_errors(forest, tmp_path):
    model, path = forest
    X, _ = dataset("breast_cancer", "test")
    client = FHEModelClient(path)
    keys = client.get_serialized_evaluation_keys()
    server = FHEModelServer(path)
    query = client.quantize_encrypt_serialize(X[:1])
    with pytest.raises(ValueError):
        server.run(query[: len(query) // 2], keys)
    with pytest.raises(ValueError):
        server.run(query, keys[:1000])
    with pytest.raises(ValueError, match="kind|input"):
        server.run(keys, keys)
    with pytest.raises(ValueError):
        client.deserialize_decrypt_dequantize(b"not an envelope")
    with pytest.raises(ValueError, match="29 values per sample"):
        client.quantize_encrypt_serialize(X[:1, :29])
    # Another model's artifacts, keys and answers.
    Xc, _ = dataset("breast_cancer", "calib")
    other_path = tmp_path / "other"
    FHEModelDev(other_path, veil.compile(os.path.join(FIXTURES, "models", "logreg_breast_cancer.json"), Xc)).save()
    other = FHEModelClient(other_path)
    with pytest.raises(ValueError, match="model"):
        server.run(other.quantize_encrypt_serialize(X[:1]), keys)
    with pytest.raises(ValueError, match="model"):
        server.run(query, other.get_serialized_evaluation_keys())
    with pytest.raises(ValueError):
        FHEModelServer(tmp_path / "nowhere")
    (tmp_path / "mixed").mkdir()
    for name in ("client.zip",):
        (tmp_path / "mixed" / name).write_bytes((path / name).read_bytes())
    (tmp_path / "mixed" / "serialized_processing.json").write_bytes((other_path / "serialized_processing.json").read_bytes())
    with pytest.raises(ValueError, match="two different compiles"):
        FHEModelClient(tmp_path / "mixed")
    with pytest.raises(ValueError, match="CompiledModel"):
        FHEModelDev(tmp_path / "x", "model.onnx").save()


@pytest.fixture
def served(forest, tmp_path):
    """`veil serve` on a free loopback port, serving the forest as "forest"."""
    _, path = forest
    models = tmp_path / "models"
    models.mkdir()
    os.symlink(path, models / "forest")
    out = open(tmp_path / "serve.out", "w+")
    proc = subprocess.Popen([VEIL, "serve", "--models", str(models), "--listen", "127.0.0.1:0", "--store",
                             "sqlite:%s" % (tmp_path / "keys.db")], stdout=out, stderr=subprocess.DEVNULL)
    try:
        url = None
        for _ in range(300):
            out.seek(0)
            m = re.search(r"http://127\.0\.0\.1:\d+", out.read())
            if m:
                url = m.group(0)
                break
            time.sleep(0.1)
        assert url, "veil serve did not start"
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        out.close()


def test_remote_model(forest, served, tmp_path):
    model, _ = forest
    X, _ = dataset("breast_cancer", "test")
    X = X[:3]
    remote = RemoteModel(served, "forest", key_dir=tmp_path / "client")
    np.testing.assert_array_equal(remote.predict(X), model.predict(X))
    np.testing.assert_allclose(remote.predict_proba(X), model.predict_proba(X))
    grant = (tmp_path / "client" / "server_key.json").read_text()
    assert oct(os.stat(tmp_path / "client" / "server_key.json").st_mode & 0o777) == "0o600"
    # A new RemoteModel on the same key_dir reuses keys and grant: no second upload.
    again = RemoteModel(served, "forest", key_dir=tmp_path / "client")
    np.testing.assert_array_equal(again.predict(X), model.predict(X))
    assert (tmp_path / "client" / "server_key.json").read_text() == grant
    # Keys deleted on the server: the next prediction uploads them again by itself.
    again.delete_keys()
    np.testing.assert_array_equal(again.predict(X), model.predict(X))
    # The key directory is the CLI's: veil predict continues with it.
    write_csv(tmp_path / "rows.csv", X)
    veil_cli("predict", "--url", served, "--model", "forest", "--keys", tmp_path / "client", "--input",
             tmp_path / "rows.csv", "--out", tmp_path / "y.csv")
    np.testing.assert_array_equal(np.loadtxt(tmp_path / "y.csv", delimiter=",", skiprows=1, ndmin=2)[:, 0],
                                  model.predict(X))
    with pytest.raises(RemoteError) as e:
        RemoteModel(served, "nope", key_dir=tmp_path / "nope").predict(X)
    assert e.value.status == 404 and e.value.error == "unknown_model"
    with pytest.raises(ValueError, match="url"):
        RemoteModel("ftp://x", "forest", key_dir=tmp_path / "x")
