// Veil's JavaScript client: private predictions from a `veil serve` server, with the secret
// key made and kept here (in the page, or the Node process) and never sent. Works unchanged
// in browsers (the FHE work runs in a Web Worker: veil-worker.mjs) and in Node 20.
//
//   const client = await VeilClient.connect("http://127.0.0.1:8080", "xgb");
//   await client.generateKeys({ onProgress: (fraction) => {} });
//   await client.uploadKeys();
//   const out = await client.predict([[...features]]);  // [{label, scores}] or [{value}]
//
// Every method returns a promise, rejected with an Error naming what is wrong (a row of the
// wrong width, a server error with its code, a foreign or corrupted answer).
import { Engine } from "./veil-core.mjs";

const MODEL_NAME = /^[A-Za-z0-9._-]{1,128}$/;

// Runs the engine in this realm (Node, or a worker of the caller's own).
class LocalBackend {
  #engine;
  constructor(engine) {
    this.#engine = engine;
  }
  async call(op, args, onProgress) {
    return op === "generateKeys" ? this.#engine.generateKeys(args[0], onProgress) : this.#engine[op](...args);
  }
  terminate() {}
}

// Runs the engine in a dedicated module Web Worker.
class WorkerBackend {
  #worker;
  #pending = new Map();
  #next = 1;
  constructor() {
    this.#worker = new Worker(new URL("./veil-worker.mjs", import.meta.url), { type: "module" });
    this.#worker.onmessage = (event) => {
      const { id, progress, result, error } = event.data;
      const call = this.#pending.get(id);
      if (!call) return;
      if (progress !== undefined) {
        call.onProgress?.(progress);
        return;
      }
      this.#pending.delete(id);
      if (error !== undefined) call.reject(new Error(error));
      else call.resolve(result);
    };
    this.#worker.onerror = (event) => {
      const error = new Error(`the Veil worker failed: ${event.message ?? "could not start"}`);
      for (const call of this.#pending.values()) call.reject(error);
      this.#pending.clear();
    };
  }
  call(op, args, onProgress) {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, onProgress });
      this.#worker.postMessage({ id, op, args });
    });
  }
  terminate() {
    this.#worker.terminate();
  }
}

async function makeBackend(useWorker) {
  const browserPage = typeof window !== "undefined" && typeof Worker === "function";
  if (useWorker ?? browserPage) return new WorkerBackend();
  return new LocalBackend(await Engine.load());
}

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function randomHex(byteCount) {
  const bytes = new Uint8Array(byteCount);
  globalThis.crypto.getRandomValues(bytes);
  return hex(bytes);
}

async function serverError(response, what) {
  let detail = "";
  try {
    const body = await response.json();
    detail = body.error ? `${body.error}: ${body.detail ?? ""}` : JSON.stringify(body);
  } catch {
    detail = response.statusText;
  }
  const error = new Error(`${what}: the server answered ${response.status} (${detail})`);
  error.status = response.status;
  return error;
}

// fetch, tried twice when no answer comes (a kept-alive connection the server had closed):
// every request this client sends is safe to repeat (downloads; key uploads under the
// client's own token, which the server replays; predictions, a pure function of their input).
async function fetchOnceMore(url, init, what) {
  try {
    return await fetch(url, init);
  } catch {
    await new Promise((resolve) => setTimeout(resolve, 100));
    try {
      return await fetch(url, init);
    } catch (cause) {
      throw new Error(`${what}: cannot reach ${url} (${cause.cause?.message ?? cause.message})`);
    }
  }
}

async function fetchBytes(url, what) {
  const response = await fetchOnceMore(url, undefined, what);
  if (!response.ok) throw await serverError(response, what);
  return new Uint8Array(await response.arrayBuffer());
}

function toBytes(value, what) {
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  throw new TypeError(`${what} must be bytes (a Uint8Array or an ArrayBuffer)`);
}

// ---- secret-key bundles (exportSecretKey / importSecretKey) ----
// Plain: "VEILKEY1", a 4-byte little-endian length, that much JSON ({model_id, key_id,
// token}), then the secret-keys envelope. With a passphrase: "VEILKEYE", 16 bytes of salt,
// 12 of IV, the PBKDF2 iteration count (4 bytes LE), then AES-256-GCM of the plain bundle
// under PBKDF2-HMAC-SHA-256(passphrase, salt).
const PLAIN_MAGIC = "VEILKEY1";
const SEALED_MAGIC = "VEILKEYE";
const PBKDF2_ITERATIONS = 600000;
const ENVELOPE_MAGIC = "VEILENVL";

function magicOf(bytes) {
  return new TextDecoder().decode(bytes.subarray(0, 8));
}

async function passphraseKey(passphrase, salt, iterations) {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) throw new Error("passphrase protection needs WebCrypto (a secure context: https or localhost)");
  const material = await subtle.importKey("raw", new TextEncoder().encode(passphrase), "PBKDF2", false, ["deriveKey"]);
  return subtle.deriveKey({ name: "PBKDF2", hash: "SHA-256", salt, iterations }, material,
                          { name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]);
}

export class VeilClient {
  #backend;
  #handle;
  #info;
  #base = null;
  #name = null;
  #evaluationKeys = null;
  #keyId = null;
  #token = null;
  #lastExchange = null;

  constructor(backend, handle, info) {
    this.#backend = backend;
    this.#handle = handle;
    this.#info = info;
  }

  // Fetches the model's client.zip and serialized_processing.json from a Veil server.
  // options.worker: run the engine in a Web Worker (default: in browser pages).
  static async connect(baseUrl, modelName, options = {}) {
    if (!MODEL_NAME.test(String(modelName)))
      throw new Error(`"${modelName}" is not a model name (letters, digits, '.', '_', '-'; at most 128)`);
    const base = String(baseUrl).replace(/\/+$/, "");
    const modelUrl = `${base}/v1/models/${modelName}`;
    const [zip, processing] = await Promise.all([
      fetchBytes(`${modelUrl}/client.zip`, `model "${modelName}"`),
      fetchBytes(`${modelUrl}/serialized_processing.json`, `model "${modelName}"`),
    ]);
    const client = await VeilClient.fromArtifacts(zip, processing, options);
    client.#base = base;
    client.#name = modelName;
    return client;
  }

  // A client from the two files' bytes, for transports of your own (encrypt / decrypt).
  static async fromArtifacts(clientZip, processingJson, options = {}) {
    const backend = await makeBackend(options.worker);
    try {
      const handle = await backend.call("open", [toBytes(clientZip, "client.zip"), toBytes(processingJson, "serialized_processing.json")]);
      return new VeilClient(backend, handle, await backend.call("info", [handle]));
    } catch (error) {
      backend.terminate();
      throw error;
    }
  }

  // {model_id, task, model_kind, n_features, input_shape, classes, n_outputs, keys_required,
  //  security_bits, parameter_set, evaluation_key_bytes, has_keys}
  get info() {
    return { ...this.#info };
  }
  get keyId() {
    return this.#keyId;
  }

  // Makes a fresh secret key (kept here) and the evaluation keys for the server.
  async generateKeys({ onProgress } = {}) {
    this.#evaluationKeys = await this.#backend.call("generateKeys", [this.#handle], onProgress);
    this.#info.has_keys = true;
    this.#keyId = this.#token = null;
    return { evaluationKeyBytes: this.#evaluationKeys.length };
  }

  // The evaluation keys (public: they let the server compute, not decrypt).
  get evaluationKeys() {
    if (!this.#evaluationKeys) throw new Error("no evaluation keys: call generateKeys() first");
    return this.#evaluationKeys;
  }

  // Sends the evaluation keys to the server once, under a token of this client's choosing
  // (so that a lost answer can be retried without storing the keys twice).
  async uploadKeys() {
    this.#needServer("uploadKeys");
    if (!this.#info.keys_required) return { keyId: null, bytes: 0, skipped: true };
    const keys = this.evaluationKeys;
    const token = this.#token ?? randomHex(32);
    this.#token = token;
    const response = await fetchOnceMore(`${this.#base}/v1/models/${this.#name}/keys`, {
      method: "POST",
      headers: { "Content-Type": "application/octet-stream", "X-Veil-Key-Token": token },
      body: keys,
    }, "uploading the evaluation keys");
    if (!response.ok) throw await serverError(response, "uploading the evaluation keys");
    const answer = await response.json();
    this.#keyId = answer.key_id;
    return { keyId: answer.key_id, bytes: keys.length, replayed: Boolean(answer.replayed) };
  }

  // rows: an array of rows, each an array of n_features numbers (null or NaN: missing).
  async encrypt(rows) {
    const n = this.#info.n_features;
    if (!Array.isArray(rows) && !(rows && typeof rows.length === "number"))
      throw new TypeError("rows must be an array of rows");
    if (rows.length === 0) throw new Error("no rows to encrypt");
    const values = new Float64Array(rows.length * n);
    for (let r = 0; r < rows.length; ++r) {
      const row = rows[r];
      if (!row || typeof row.length !== "number")
        throw new TypeError(`row ${r + 1} is not an array of numbers`);
      if (row.length !== n)
        throw new Error(`row ${r + 1} has ${row.length} values, the model expects ${n} features`);
      for (let c = 0; c < n; ++c) {
        const v = row[c];
        if (v === null || v === undefined || (typeof v === "number" && Number.isNaN(v))) values[r * n + c] = NaN;
        else if (typeof v === "number" || typeof v === "string") {
          const x = Number(v);
          if (Number.isNaN(x)) throw new Error(`row ${r + 1}, feature ${c + 1}: "${v}" is not a number`);
          values[r * n + c] = x;
        } else throw new TypeError(`row ${r + 1}, feature ${c + 1}: not a number`);
      }
    }
    return this.#backend.call("encrypt", [this.#handle, values, rows.length, n]);
  }

  // An output-batch envelope from the server -> one prediction per row.
  async decrypt(bytes) {
    return this.#backend.call("decrypt", [this.#handle, toBytes(bytes, "the answer")]);
  }

  // Encrypts, asks the server, decrypts. Uploads the keys again (once) if the server has
  // forgotten them (expired: 404 unknown_key).
  async predict(rows) {
    this.#needServer("predict");
    let t = performance.now();
    const input = await this.encrypt(rows);
    const encryptMs = performance.now() - t;
    t = performance.now();
    let response = await this.#postPredict(input);
    if (response.status === 404 && this.#evaluationKeys && this.#info.keys_required) {
      const body = await response.clone().json().catch(() => ({}));
      if (body.error === "unknown_key") {
        await this.uploadKeys();
        response = await this.#postPredict(input);
      }
    }
    if (!response.ok) throw await serverError(response, "predict");
    const answer = new Uint8Array(await response.arrayBuffer());
    const serverMs = performance.now() - t;
    t = performance.now();
    const predictions = await this.decrypt(answer);
    this.#lastExchange = { encryptMs, serverMs, decryptMs: performance.now() - t, sentBytes: input.length,
                           receivedBytes: answer.length };
    return predictions;
  }

  // The last predict's sizes and times: {encryptMs, serverMs (the request, run and transfer),
  // decryptMs, sentBytes, receivedBytes}; null before the first.
  get lastExchange() {
    return this.#lastExchange ? { ...this.#lastExchange } : null;
  }

  // The secret key (and the server's key id and token, once uploaded) as bytes a page can
  // keep, e.g. in IndexedDB; sealed under a passphrase with WebCrypto when one is given.
  async exportSecretKey({ passphrase } = {}) {
    const envelope = await this.#backend.call("exportSecret", [this.#handle]);
    const header = new TextEncoder().encode(JSON.stringify({ model_id: this.#info.model_id, key_id: this.#keyId, token: this.#token }));
    const plain = new Uint8Array(12 + header.length + envelope.length);
    plain.set(new TextEncoder().encode(PLAIN_MAGIC), 0);
    new DataView(plain.buffer).setUint32(8, header.length, true);
    plain.set(header, 12);
    plain.set(envelope, 12 + header.length);
    envelope.fill(0);
    if (passphrase === undefined) return plain;
    const salt = globalThis.crypto.getRandomValues(new Uint8Array(16));
    const iv = globalThis.crypto.getRandomValues(new Uint8Array(12));
    const key = await passphraseKey(passphrase, salt, PBKDF2_ITERATIONS);
    const sealed = new Uint8Array(await globalThis.crypto.subtle.encrypt({ name: "AES-GCM", iv }, key, plain));
    plain.fill(0);
    const out = new Uint8Array(40 + sealed.length);
    out.set(new TextEncoder().encode(SEALED_MAGIC), 0);
    out.set(salt, 8);
    out.set(iv, 24);
    new DataView(out.buffer).setUint32(36, PBKDF2_ITERATIONS, true);
    out.set(sealed, 40);
    return out;
  }

  // Takes back exportSecretKey's bytes (the passphrase if they are sealed), or a secret.key
  // file of `veil keygen` for this model.
  async importSecretKey(bytes, { passphrase } = {}) {
    let plain = toBytes(bytes, "the secret key");
    if (plain.length >= 8 && magicOf(plain) === SEALED_MAGIC) {
      if (passphrase === undefined) throw new Error("this secret key is sealed under a passphrase: give it");
      if (plain.length < 40 + 16) throw new Error("the sealed secret key is truncated");
      const view = new DataView(plain.buffer, plain.byteOffset, plain.byteLength);
      const key = await passphraseKey(passphrase, plain.slice(8, 24), view.getUint32(36, true));
      try {
        plain = new Uint8Array(await globalThis.crypto.subtle.decrypt({ name: "AES-GCM", iv: plain.slice(24, 36) }, key, plain.slice(40)));
      } catch {
        throw new Error("cannot open the sealed secret key: wrong passphrase, or the bytes are corrupted");
      }
    }
    if (plain.length >= 8 && magicOf(plain) === ENVELOPE_MAGIC) {
      // A secret-keys envelope as `veil keygen` writes it (secret.key): the engine checks it.
      await this.#backend.call("importSecret", [this.#handle, plain]);
      this.#info.has_keys = true;
      this.#keyId = this.#token = null;
      this.#evaluationKeys = null;
      return;
    }
    if (plain.length < 12 || magicOf(plain) !== PLAIN_MAGIC)
      throw new Error("not a Veil secret key (exportSecretKey's bytes, or a secret.key of veil keygen)");
    const length = new DataView(plain.buffer, plain.byteOffset, plain.byteLength).getUint32(8, true);
    if (12 + length > plain.length) throw new Error("the secret key is truncated");
    let header;
    try {
      header = JSON.parse(new TextDecoder().decode(plain.subarray(12, 12 + length)));
    } catch {
      throw new Error("the secret key's header is corrupted");
    }
    if (header.model_id !== this.#info.model_id)
      throw new Error(`the secret key is for model ${header.model_id}, not for this model (${this.#info.model_id})`);
    await this.#backend.call("importSecret", [this.#handle, plain.slice(12 + length)]);
    this.#info.has_keys = true;
    this.#keyId = header.key_id ?? null;
    this.#token = header.token ?? null;
    this.#evaluationKeys = null;
  }

  // Forgets the secret key and stops the worker.
  close() {
    this.#backend.call("close", [this.#handle]).catch(() => {});
    this.#backend.terminate();
  }

  #needServer(what) {
    if (!this.#base) throw new Error(`${what} needs a server: make the client with VeilClient.connect`);
  }

  async #postPredict(input) {
    const headers = { "Content-Type": "application/octet-stream", "X-Request-Id": `js-${randomHex(12)}` };
    if (this.#info.keys_required) {
      if (!this.#keyId) throw new Error("predict: no keys on the server yet (call uploadKeys() first)");
      headers["X-Veil-Key-Id"] = this.#keyId;
      headers.Authorization = `Bearer ${this.#token}`;
    }
    return fetchOnceMore(`${this.#base}/v1/models/${this.#name}/predict`, { method: "POST", headers, body: input }, "predict");
  }
}
