// The page `veil serve` serves at / (the models) and /models/{name}/ (one model): keys made
// here, uploaded once, rows encrypted here and the answer decrypted here. Same-origin only:
// the page talks to the server that served it.
import { VeilClient } from "/web/veil-client.mjs";

const app = document.getElementById("app");

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1 << 20)).toFixed(1)} MiB`;
}

function showError(where, error) {
  where.replaceChildren(element("p", { class: "error", id: "error", text: String(error?.message ?? error) }));
}

// Kept keys: exportSecretKey's bytes (sealed under a passphrase when the user gave one) in
// this origin's IndexedDB, one entry per model id.
function keyStore(mode, action) {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open("veil", 1);
    open.onupgradeneeded = () => open.result.createObjectStore("keys");
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const request = action(open.result.transaction("keys", mode).objectStore("keys"));
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    };
  });
}
const keptKeys = (modelId) => keyStore("readonly", (store) => store.get(modelId));
const keepKeys = (modelId, bytes) => keyStore("readwrite", (store) => store.put(bytes, modelId));
const forgetKeys = (modelId) => keyStore("readwrite", (store) => store.delete(modelId));
const sealed = (bytes) => new TextDecoder().decode(bytes.subarray(0, 8)) === "VEILKEYE";

async function listModels() {
  const response = await fetch("/v1/models");
  if (!response.ok) throw new Error(`GET /v1/models: HTTP ${response.status}`);
  const { models } = await response.json();
  const rows = models.map((m) =>
    element("tr", {},
      element("td", {}, element("a", { href: `/models/${encodeURIComponent(m.name)}/`, text: m.name })),
      element("td", { text: `${m.task}, ${m.model_kind}` }),
      element("td", { text: String(m.n_features) }),
      element("td", { text: m.keys_required ? `${m.pbs_per_row} bootstraps a row` : "no keys needed" })));
  app.replaceChildren(
    element("h2", { text: "Models" }),
    models.length === 0 ? element("p", { text: "This server serves no model." })
      : element("table", { id: "models" },
          element("tr", {}, ...["Model", "Kind", "Features", "Cost"].map((h) => element("th", { text: h }))), ...rows));
}

// Rows from the CSV box (one row a line; a header line of names is skipped), else the form.
function readRows(csv, inputs) {
  const text = csv.value.trim();
  if (text) {
    const lines = text.split(/\r?\n/).filter((l) => l.trim());
    const numeric = (line) => line.split(",").every((f) => f.trim() === "" || !Number.isNaN(Number(f)));
    return lines.filter(numeric).map((line) => line.split(",").map((f) => (f.trim() === "" ? null : Number(f))));
  }
  return [inputs.map((input, i) => {
    if (input.value.trim() === "") return null;
    const x = Number(input.value);
    if (Number.isNaN(x)) throw new Error(`feature ${i + 1}: "${input.value}" is not a number`);
    return x;
  })];
}

function resultTable(predictions, info) {
  const classifier = info.task === "classification";
  const header = classifier ? ["Row", "Label", ...info.classes.map((c) => `score ${c}`)] : ["Row", "Value"];
  return element("table", {},
    element("tr", {}, ...header.map((h) => element("th", { text: h }))),
    ...predictions.map((p, r) => element("tr", {},
      element("td", { text: String(r + 1) }),
      ...(classifier
        ? [element("td", { class: "label", text: String(p.label) }), ...p.scores.map((s) => element("td", { text: s.toFixed(4) }))]
        : [element("td", { class: "label", text: [p.value].flat().map((v) => v.toPrecision(6)).join(", ") })]))));
}

async function modelPage(name) {
  app.replaceChildren(element("h2", { text: `Model ${name}` }), element("p", { class: "muted", text: "Fetching the model…" }));
  let t = performance.now();
  const client = await VeilClient.connect(location.origin, name);
  const info = client.info;
  const loadMs = performance.now() - t;
  const inputs = [];
  const features = element("div", { class: "features" });
  for (let i = 0; i < info.n_features; ++i) {
    const input = element("input", { type: "text", inputmode: "decimal", id: `f${i}`, "aria-label": `feature ${i + 1}` });
    inputs.push(input);
    features.append(element("label", { text: `feature ${i + 1}` }, input));
  }
  const csv = element("textarea", { id: "csv", placeholder: `or paste CSV rows of ${info.n_features} values each` });
  const progress = element("progress", { id: "progress", max: "1", value: "0" });
  const keyStatus = element("span", { id: "key-status", class: "muted", text: "no keys yet" });
  const makeKeys = element("button", { id: "make-keys", type: "button", text: "Make keys" });
  const upload = element("button", { id: "upload-keys", type: "button", text: "Upload keys", disabled: "" });
  const predict = element("button", { id: "predict", type: "button", text: "Predict privately" });
  const remember = element("input", { type: "checkbox", id: "remember" });
  const passphrase = element("input", { type: "password", id: "passphrase", placeholder: "passphrase (optional)", autocomplete: "new-password" });
  const unlock = element("button", { id: "unlock-keys", type: "button", text: "Unlock kept keys", hidden: "" });
  const forget = element("button", { id: "forget-keys", type: "button", text: "Forget kept keys", hidden: "" });
  const steps = element("table", { id: "steps" }, element("tr", {}, element("th", { text: "Step" }), element("th", { text: "Time" }), element("th", { text: "Bytes" })));
  const result = element("div", { id: "result" });
  const step = (what, ms, size = "") =>
    steps.append(element("tr", {}, element("td", { text: what }), element("td", { text: `${ms.toFixed(0)} ms` }), element("td", { text: size })));
  step("fetch client.zip and processing, load WebAssembly", loadMs);

  let uploaded = !info.keys_required;
  const doMakeKeys = async () => {
    makeKeys.disabled = true;
    keyStatus.textContent = "making keys…";
    t = performance.now();
    const { evaluationKeyBytes } = await client.generateKeys({ onProgress: (f) => { progress.value = f; } });
    step("make keys (secret key stays here)", performance.now() - t, `${bytes(evaluationKeyBytes)} of evaluation keys`);
    keyStatus.textContent = "keys ready";
    upload.disabled = !info.keys_required;
    uploaded = !info.keys_required;
  };
  const doUpload = async () => {
    upload.disabled = true;
    keyStatus.textContent = `uploading ${bytes(client.evaluationKeys.length)}…`;
    t = performance.now();
    const answer = await client.uploadKeys();
    step("upload evaluation keys", performance.now() - t, `${bytes(answer.bytes)} sent`);
    keyStatus.textContent = `keys on the server (key id ${answer.keyId})`;
    uploaded = true;
    await keep();
  };
  // Keeps the secret key (with the server's key id and token) in this browser when asked.
  const keep = async () => {
    if (!remember.checked) return;
    await keepKeys(info.model_id, await client.exportSecretKey(passphrase.value ? { passphrase: passphrase.value } : {}));
    keyStatus.textContent += passphrase.value ? "; kept in this browser under your passphrase" : "; kept in this browser";
    forget.hidden = false;
  };
  const useKept = async (bundle) => {
    await client.importSecretKey(bundle, sealed(bundle) ? { passphrase: passphrase.value } : {});
    uploaded = !info.keys_required || client.keyId !== null;
    unlock.hidden = true;
    remember.checked = true;
    forget.hidden = false;
    makeKeys.disabled = false;
    upload.disabled = true;
    progress.value = 1;
    keyStatus.textContent = `keys kept in this browser` + (client.keyId ? ` (key id ${client.keyId})` : "");
  };
  const guard = (fn) => async () => {
    try {
      await fn();
    } catch (error) {
      showError(result, error);
      makeKeys.disabled = false;
    }
  };
  makeKeys.addEventListener("click", guard(async () => {
    await doMakeKeys();
    if (!info.keys_required) await keep();
  }));
  unlock.addEventListener("click", guard(async () => useKept(await keptKeys(info.model_id))));
  forget.addEventListener("click", guard(async () => {
    await forgetKeys(info.model_id);
    forget.hidden = true;
    unlock.hidden = true;
    keyStatus.textContent = "kept keys forgotten";
  }));
  upload.addEventListener("click", guard(doUpload));
  predict.addEventListener("click", guard(async () => {
    const rows = readRows(csv, inputs);
    predict.disabled = true;
    try {
      if (!client.info.has_keys) {
        await doMakeKeys();
        if (!info.keys_required) await keep();
      }
      if (!uploaded) await doUpload();
      t = performance.now();
      const predictions = await client.predict(rows);
      const exchange = client.lastExchange;
      step("encrypt", exchange.encryptMs, `${bytes(exchange.sentBytes)} sent`);
      step("server run (and transfer)", exchange.serverMs, `${bytes(exchange.receivedBytes)} received`);
      step("decrypt", exchange.decryptMs);
      step("answer shown, since the page was opened", performance.now());
      result.replaceChildren(element("h3", { text: "Answer" }), resultTable(predictions, info));
    } finally {
      predict.disabled = false;
    }
  }));

  app.replaceChildren(
    element("h2", { text: `Model ${name}` }),
    element("p", { class: "muted", text: `${info.task}, ${info.model_kind}, ${info.n_features} features` +
      (info.task === "classification" ? `, classes ${info.classes.join(", ")}` : "") +
      `; ${info.security_bits}-bit security` + (info.keys_required ? `; evaluation keys ${bytes(info.evaluation_key_bytes)}` : "") }),
    element("section", {}, element("h3", { text: "1. Keys" }), makeKeys, upload, progress, " ", keyStatus,
      element("p", {}, element("label", {}, remember, " keep my keys in this browser"), " ", passphrase, " ", unlock, forget)),
    element("section", {}, element("h3", { text: "2. Features" }), features, csv, predict),
    element("section", {}, element("h3", { text: "Steps" }), steps),
    result);

  // Keys kept by an earlier visit: used at once, or after the passphrase that sealed them.
  const kept = await keptKeys(info.model_id).catch(() => undefined);
  if (kept) {
    if (sealed(kept)) {
      unlock.hidden = false;
      forget.hidden = false;
      keyStatus.textContent = "keys kept in this browser, sealed: give the passphrase and unlock them";
    } else {
      await useKept(kept).catch((error) => showError(result, error));
    }
  }
}

try {
  const match = location.pathname.match(/^\/models\/([^/]+)\/?$/);
  if (match) await modelPage(decodeURIComponent(match[1]));
  else await listModels();
} catch (error) {
  showError(app, error);
}
