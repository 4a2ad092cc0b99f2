"""A model served by `veil serve`, used from Python as a scikit-learn estimator:

    from veil.client import RemoteModel
    model = RemoteModel("http://127.0.0.1:8080", "xgb", key_dir="keys/xgb")
    model.predict(X)          # labels (classifier) or values (regressor)
    model.predict_proba(X)    # class scores

The protocol is `veil predict`'s (docs/api.md): the client files are fetched and checked
against the digests the server publishes, keys are made in key_dir (the private key never
leaves it) and uploaded once under a token chosen here (so that a lost answer can be repeated
safely), then each query is encrypted, sent and decrypted. key_dir has the layout of `veil
predict --keys`, so either can continue what the other started.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, Optional, Union

import numpy as np

from . import _progress, _veil
from ._models import as_samples

_GRANT_FILE = "server_key.json"


class RemoteError(RuntimeError):
    """The server refused a request: `status` (HTTP), `error` (Veil's code, e.g.
    "unknown_key"), `detail` (its explanation)."""

    def __init__(self, status: int, error: str, detail: str, retry_after: Optional[float] = None):
        super().__init__("HTTP %d %s: %s" % (status, error, detail) if error else "HTTP %d: %s" % (status, detail))
        self.status = status
        self.error = error
        self.detail = detail
        self.retry_after = retry_after


class RemoteModel:
    """Encrypted predictions from a model on a Veil server."""

    def __init__(self, url: str, name: str, key_dir: Union[str, os.PathLike], timeout: float = 3600.0,
                 retries: int = 3, show_progress: Optional[bool] = None):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError("url must be http://HOST:PORT or https://HOST:PORT, got %r" % (url,))
        if not name or "/" in name:
            raise ValueError("a model name is one path segment, got %r" % (name,))
        self.url = url.rstrip("/")
        self.name = name
        self.key_dir = os.fspath(key_dir)
        self.timeout = timeout
        self.retries = retries
        self.show_progress = show_progress
        self._client: Optional[Any] = None
        self._grant: Optional[Dict[str, str]] = None

    # ---- HTTP

    def _request(self, method: str, path: str, body: Optional[bytes] = None,
                 headers: Optional[Dict[str, str]] = None) -> bytes:
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=dict(headers or {}))
        if body is not None:
            req.add_header("Content-Type", "application/octet-stream")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.read()
        except urllib.error.HTTPError as e:
            text = e.read()
            try:
                doc = json.loads(text)
                error, detail = str(doc.get("error", "")), str(doc.get("detail", ""))
            except (ValueError, AttributeError):
                error, detail = "", text[:200].decode("utf-8", "replace")
            retry = e.headers.get("Retry-After")
            raise RemoteError(e.code, error, detail, float(retry) if retry and retry.isdigit() else None) from None
        except urllib.error.URLError as e:
            raise ConnectionError("%s: %s" % (self.url, e.reason)) from None

    def _model_path(self, suffix: str = "") -> str:
        return "/v1/models/" + urllib.parse.quote(self.name, safe="") + suffix

    # ---- set-up: client files, keys, upload

    def _write(self, name: str, data: bytes, mode: int = 0o644) -> None:
        path = os.path.join(self.key_dir, name)
        tmp = path + ".tmp-%d" % os.getpid()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)

    def _read(self, name: str) -> Optional[bytes]:
        try:
            with open(os.path.join(self.key_dir, name), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def _setup(self) -> Any:
        if self._client is not None:
            return self._client
        info = json.loads(self._request("GET", self._model_path()))
        os.makedirs(self.key_dir, mode=0o700, exist_ok=True)
        files = {}
        for name in ("client.zip", "serialized_processing.json"):
            data = self._read(name)
            published = info.get("files", {}).get(name, {}).get("sha256")
            if data is None:
                data = self._request("GET", self._model_path("/" + name))
                if published and hashlib.sha256(data).hexdigest() != published:
                    raise ValueError("%s from the server does not match the SHA-256 it publishes" % name)
                self._write(name, data)
            elif published and hashlib.sha256(data).hexdigest() != published:
                raise ValueError("%s holds a %s that is not the server's (recompiled model?): use a new key_dir"
                                 % (self.key_dir, name))
            files[name] = data
        client = _veil.Client.from_bytes(files["client.zip"], files["serialized_processing.json"])
        if client.model_id != info.get("model_id"):
            raise ValueError("%s holds files of model %s, but the server's %r is model %s: use a new key_dir"
                             % (self.key_dir, client.model_id, self.name, info.get("model_id")))
        if os.path.exists(os.path.join(self.key_dir, "secret.key")):
            client.load_keys(self.key_dir)
        else:
            client.generate_keys(_progress.reporter("veil keygen", self.show_progress))
            client.save_keys(self.key_dir, False)
        self._client = client
        grant = self._read(_GRANT_FILE)
        if grant is not None:
            g = json.loads(grant)
            if g.get("url") == self.url and g.get("model") == self.name and g.get("model_id") == client.model_id:
                self._grant = g
        if self._grant is None or not self._grant.get("key_id"):
            self._upload(self._grant.get("token") if self._grant else None)
        return client

    def _save_grant(self) -> None:
        self._write(_GRANT_FILE, json.dumps(self._grant).encode(), 0o600)

    def _upload(self, token: Optional[str]) -> None:
        """Uploads the evaluation keys under a client-chosen token, written down first: an
        upload whose answer is lost is repeated with the same token and not stored twice."""
        with open(os.path.join(self.key_dir, "evaluation.keys"), "rb") as f:
            keys = f.read()
        self._grant = {"url": self.url, "model": self.name, "model_id": self._client.model_id, "key_id": "",
                       "token": token or secrets.token_hex(32)}
        self._save_grant()
        answer = self._retrying(lambda: self._request("POST", self._model_path("/keys"), keys,
                                                      {"X-Veil-Key-Token": self._grant["token"]}))
        self._grant["key_id"] = json.loads(answer)["key_id"]
        self._save_grant()

    def _retrying(self, call):
        for attempt in range(self.retries + 1):
            try:
                return call()
            except RemoteError as e:
                if e.status not in (429, 503) or attempt == self.retries:
                    raise
                time.sleep(max(1.0, e.retry_after or 1.0))
        raise AssertionError("unreachable")

    # ---- queries

    def _predict(self, X: Any) -> Dict[str, Any]:
        client = self._setup()
        query = client.encrypt(as_samples(X))
        reuploaded = False
        while True:
            headers = {"X-Veil-Key-Id": self._grant["key_id"], "Authorization": "Bearer " + self._grant["token"]}
            try:
                answer = self._retrying(lambda: self._request("POST", self._model_path("/predict"), query, headers))
                return client.decrypt(answer)
            except RemoteError as e:
                if e.status == 404 and e.error == "unknown_key" and not reuploaded:
                    self._upload(None)  # expired or deleted on the server: upload again, once
                    reuploaded = True
                    continue
                raise

    def predict(self, X: Any) -> np.ndarray:
        """Labels for a classifier, values for a regressor (1-D for one target)."""
        out = self._predict(X)
        if out["task"] == "classification":
            return out["labels"]
        values = out["values"]
        return values[:, 0] if values.ndim == 2 and values.shape[1] == 1 else values

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class scores of a classifier, shape (n_samples, n_classes)."""
        out = self._predict(X)
        if out["task"] != "classification":
            raise ValueError("predict_proba needs a classifier; %r is a regressor" % self.name)
        return out["scores"]

    def delete_keys(self) -> None:
        """Removes this client's keys from the server (they stay in key_dir)."""
        self._setup()
        self._request("DELETE", "/v1/keys/" + self._grant["key_id"],
                      headers={"Authorization": "Bearer " + self._grant["token"]})
        os.remove(os.path.join(self.key_dir, _GRANT_FILE))
        self._grant = None
        self._client = None
