// The WebAssembly engine behind VeilClient: Veil's C++ client half (wasm/client_api.cpp)
// wrapped in synchronous JavaScript. Used in place in Node and inside the Web Worker
// (veil-worker.mjs) in browsers. Every failure throws an Error naming what is wrong.
import createVeilWasm from "./veil-client-wasm.mjs";

async function wasmBinary() {
  const url = new URL("./veil-client-wasm.wasm", import.meta.url);
  if (url.protocol === "file:") {
    // Node: read the file (its global fetch cannot load file: URLs).
    const { readFile } = await import("node:fs/promises");
    return new Uint8Array(await readFile(url));
  }
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`cannot load ${url}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

// The entropy the engine draws (its one hook, in src/tfhe/csprng.cpp) is
// crypto.getRandomValues; Node releases before 19 keep it in node:crypto only.
if (typeof globalThis.crypto?.getRandomValues !== "function" && typeof process === "object" && process.versions?.node) {
  globalThis.crypto = (await import("node:crypto")).webcrypto;
}

let enginePromise = null;

export class Engine {
  #m;
  #progress = null;

  constructor(module) {
    this.#m = module;
    module.onVeilProgress = (fraction) => {
      if (this.#progress) this.#progress(fraction);
    };
  }

  // One WebAssembly instance, and one Engine over it, per realm (page, worker or Node
  // process): the clients of a realm share it through their handles.
  static load() {
    if (!enginePromise)
      enginePromise = wasmBinary().then((binary) => createVeilWasm({ wasmBinary: binary })).then((m) => new Engine(m));
    return enginePromise;
  }

  // Copies `bytes` into WebAssembly memory for the duration of fn(pointer, length); the copy
  // is zeroed afterwards (it may be a secret key).
  #withBytes(bytes, fn) {
    const m = this.#m;
    const length = bytes.length;
    const pointer = m._malloc(Math.max(length, 1));
    if (!pointer) throw new Error(`out of WebAssembly memory for ${length} bytes`);
    try {
      m.HEAPU8.set(bytes, pointer);
      return fn(pointer, length);
    } finally {
      m.HEAPU8.fill(0, pointer, pointer + length);
      m._free(pointer);
    }
  }

  #check(ok) {
    if (!ok) throw new Error(this.#m.UTF8ToString(this.#m._veil_error()));
  }

  #resultBytes() {
    const m = this.#m;
    const data = m._veil_result_data();
    return m.HEAPU8.slice(data, data + m._veil_result_size());
  }

  #resultJson() {
    return JSON.parse(new TextDecoder().decode(this.#resultBytes()));
  }

  // A client for one model; returns its handle.
  open(clientZip, processingJson) {
    const handle = this.#withBytes(clientZip, (zp, zn) =>
      this.#withBytes(processingJson, (pp, pn) => this.#m._veil_open(zp, zn, pp, pn)),
    );
    this.#check(handle !== 0);
    return handle;
  }

  close(handle) {
    this.#m._veil_close(handle);
  }

  info(handle) {
    this.#check(this.#m._veil_info(handle));
    return this.#resultJson();
  }

  // Returns the evaluation-keys envelope; the secret key stays in the handle.
  generateKeys(handle, onProgress) {
    this.#progress = onProgress ?? null;
    try {
      this.#check(this.#m._veil_generate_keys(handle));
    } finally {
      this.#progress = null;
    }
    return this.#resultBytes();
  }

  exportSecret(handle) {
    this.#check(this.#m._veil_export_secret(handle));
    const secret = this.#resultBytes();
    this.#m.HEAPU8.fill(0, this.#m._veil_result_data(), this.#m._veil_result_data() + secret.length);
    return secret;
  }

  importSecret(handle, envelope) {
    this.#check(this.#withBytes(envelope, (p, n) => this.#m._veil_import_secret(handle, p, n)));
  }

  // values: a Float64Array of rows * cols numbers, row-major.
  encrypt(handle, values, rows, cols) {
    const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    this.#check(this.#withBytes(bytes, (p) => this.#m._veil_encrypt(handle, p, rows, cols)));
    return this.#resultBytes();
  }

  decrypt(handle, envelope) {
    this.#check(this.#withBytes(envelope, (p, n) => this.#m._veil_decrypt(handle, p, n)));
    return this.#resultJson();
  }
}
