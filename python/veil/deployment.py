"""Concrete ML's deployment classes, same names and signatures, on Veil.

    from veil.deployment import FHEModelClient, FHEModelDev, FHEModelServer

    FHEModelDev("artifacts", compiled_model).save()                 # development machine
    client = FHEModelClient("artifacts", key_dir="keys")            # client
    client.generate_private_and_evaluation_keys()
    evaluation_keys = client.get_serialized_evaluation_keys()       # sent once
    query = client.quantize_encrypt_serialize(X)
    answer = FHEModelServer("artifacts").run(query, evaluation_keys)  # server
    proba = client.deserialize_decrypt_dequantize(answer)

Every bytes value is a Veil envelope, interchangeable with the veil CLI's files and the HTTP
server's bodies.
"""

from __future__ import annotations

import collections
import hashlib
import os
import threading
from typing import Any, Optional, Tuple, Union

import numpy as np

from . import _progress, _veil
from ._models import CompiledModel, as_samples

PathLike = Union[str, os.PathLike]


class FHEModelDev:
    """Saves a compiled model's three artifacts: client.zip and serialized_processing.json for
    clients, server.zip for the server."""

    def __init__(self, path_dir: PathLike, model: Optional[CompiledModel] = None):
        self.path_dir = os.fspath(path_dir)
        self.model = model

    def save(self, via_mlir: bool = False) -> None:
        """Writes the artifacts into path_dir; refuses to replace artifacts already there.
        (via_mlir is accepted for Concrete ML compatibility; Veil has one format.)"""
        del via_mlir
        if not isinstance(self.model, CompiledModel):
            raise ValueError("FHEModelDev needs a veil.CompiledModel (from veil.compile), got %s" % type(self.model).__name__)
        self.model.save(self.path_dir)


class FHEModelClient:
    """The client role: keys (the private key stays here), encryption of inputs, decryption of
    results. With key_dir, keys are kept there (secret.key, mode 0600, and evaluation.keys, as
    `veil keygen` keeps them) and reused by later clients."""

    def __init__(self, path_dir: PathLike, key_dir: Optional[PathLike] = None, show_progress: Optional[bool] = None):
        self.path_dir = os.fspath(path_dir)
        self.key_dir = None if key_dir is None else os.fspath(key_dir)
        self.show_progress = show_progress
        self.load()

    def load(self) -> None:
        """Reads client.zip and serialized_processing.json from path_dir."""
        self._client = _veil.Client.load(self.path_dir)
        self._keys = None

    @property
    def model_id(self) -> str:
        return self._client.model_id

    def _keys_in_key_dir(self) -> bool:
        return self.key_dir is not None and os.path.exists(os.path.join(self.key_dir, "secret.key"))

    def generate_private_and_evaluation_keys(self, force: bool = False) -> None:
        """Makes a key set, unless one is loaded or kept in key_dir already and not force."""
        if not force and self._keys is not None:
            return
        if not force and self._keys_in_key_dir():
            self._keys = self._client.load_keys(self.key_dir)
            return
        self._keys = self._client.generate_keys(_progress.reporter("veil keygen", self.show_progress))
        if self.key_dir is not None:
            self._client.save_keys(self.key_dir, True)

    def get_serialized_evaluation_keys(self) -> bytes:
        """The evaluation keys for the server (seeded; never the private key)."""
        self.generate_private_and_evaluation_keys(force=False)
        return self._keys.evaluation_keys

    def quantize_encrypt_serialize(self, x: Any) -> bytes:
        """Quantizes and encrypts samples x (shape (n, features...)); one envelope for all."""
        self.generate_private_and_evaluation_keys(force=False)
        return self._client.encrypt(as_samples(x, "x"))

    def deserialize_decrypt_dequantize(self, serialized_encrypted_quantized_result: bytes) -> np.ndarray:
        """Decrypts the server's answer: class probabilities (n, n_classes) for a classifier,
        values (n, n_targets) for a regressor, as Concrete ML returns them."""
        self.generate_private_and_evaluation_keys(force=False)
        out = self._client.decrypt(serialized_encrypted_quantized_result)
        return out["scores"] if out["task"] == "classification" else out["values"]


class FHEModelServer:
    """The server role: runs the circuit on encrypted inputs with a client's evaluation keys.
    Parsed keys are cached by their SHA-256, so a client sending the same keys again does not
    pay for their expansion twice. Safe to share between threads."""

    cache_size = 8  # key sets kept expanded

    def __init__(self, path_dir: PathLike):
        self.path_dir = os.fspath(path_dir)
        self._cache: "collections.OrderedDict[bytes, Any]" = collections.OrderedDict()
        self._last: Optional[Tuple[bytes, Any]] = None
        self._lock = threading.Lock()
        self.load()

    def load(self) -> None:
        """Reads server.zip from path_dir."""
        self._server = _veil.Server.load(self.path_dir)
        with self._lock:
            self._cache.clear()
            self._last = None

    def _keys(self, serialized_evaluation_keys: bytes) -> Any:
        # The very bytes object of the previous call (held here, so no other object can have
        # its address; bytes are immutable) skips hashing tens of megabytes per request.
        is_bytes = type(serialized_evaluation_keys) is bytes
        with self._lock:
            if is_bytes and self._last is not None and self._last[0] is serialized_evaluation_keys:
                return self._last[1]
        digest = hashlib.sha256(serialized_evaluation_keys).digest()
        with self._lock:
            keys = self._cache.get(digest)
            if keys is not None:
                self._cache.move_to_end(digest)
        if keys is None:
            keys = self._server.load_keys(serialized_evaluation_keys)  # outside the lock: seconds
            with self._lock:
                self._cache[digest] = keys
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        if is_bytes:
            with self._lock:
                self._last = (serialized_evaluation_keys, keys)
        return keys

    def run(self, serialized_encrypted_quantized_data: bytes, serialized_evaluation_keys: bytes) -> bytes:
        """The encrypted answer to an encrypted query."""
        return self._server.run(serialized_encrypted_quantized_data, self._keys(serialized_evaluation_keys))
