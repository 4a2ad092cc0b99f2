// The JavaScript client (build/web) against Veil's C++ side, run by tests/web/web_test.sh with
// VEIL (the binary), VEIL_WEB (build/web), VEIL_MODELS (compiled fixture models, one directory
// each), VEIL_DATA (the fixtures' data) and VEIL_URL (a `veil serve` of VEIL_MODELS).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

const { VEIL, VEIL_WEB, VEIL_MODELS, VEIL_DATA, VEIL_URL } = process.env;
const { VeilClient } = await import(join(VEIL_WEB, "veil-client.mjs"));

// name -> the data set its rows come from and the number of test rows used.
const MODELS = {
  logreg: { data: "breast_cancer", rows: 4 },
  xgb: { data: "breast_cancer", rows: 3 },
  tree_reg: { data: "diabetes", rows: 3 },
  mlp: { data: "iris", rows: 3 },
};

function testRows(data, count) {
  const lines = readFileSync(join(VEIL_DATA, `${data}_test.csv`), "utf8").trim().split("\n");
  const width = lines[0].split(",").length - 1;  // the last column is the target
  return lines.slice(1, 1 + count).map((line) => line.split(",").slice(0, width).map(Number));
}

function veil(...args) {
  return execFileSync(VEIL, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

async function artifacts(name) {
  const dir = join(VEIL_MODELS, name);
  return [readFileSync(join(dir, "client.zip")), readFileSync(join(dir, "serialized_processing.json"))];
}

// `veil decrypt`'s CSV as the JavaScript client's predictions.
function parseCsv(text) {
  const [header, ...lines] = text.trim().split("\n");
  const columns = header.split(",");
  return lines.map((line) => {
    const v = line.split(",").map(Number);
    if (columns[0] === "label") return { label: v[0], scores: v.slice(1) };
    return { value: v.length === 1 ? v[0] : v };
  });
}

// Equal labels; scores and values equal to the CSV's nine significant digits.
function assertSamePredictions(actual, expected, what) {
  assert.equal(actual.length, expected.length, `${what}: row count`);
  const close = (a, b) => Math.abs(a - b) <= 1e-8 * Math.max(1, Math.abs(b));
  for (let r = 0; r < expected.length; ++r) {
    const a = actual[r], e = expected[r];
    if ("label" in e) {
      assert.equal(a.label, e.label, `${what}: row ${r} label`);
      assert.equal(a.scores.length, e.scores.length, `${what}: row ${r} score count`);
      a.scores.forEach((s, i) => assert.ok(close(s, e.scores[i]), `${what}: row ${r} score ${i}: ${s} vs ${e.scores[i]}`));
    } else {
      const av = [a.value].flat(), ev = [e.value].flat();
      assert.equal(av.length, ev.length, `${what}: row ${r} value count`);
      av.forEach((v, i) => assert.ok(close(v, ev[i]), `${what}: row ${r} value ${i}: ${v} vs ${ev[i]}`));
    }
  }
}

// The secret-keys envelope inside exportSecretKey's plain bundle (what `veil keygen` writes).
function envelopeOf(bundle) {
  const length = new DataView(bundle.buffer, bundle.byteOffset).getUint32(8, true);
  return bundle.slice(12 + length);
}

const wasmRuns = {};  // name -> predictions of the WASM-keyed run through `veil run`

for (const [name, { data, rows: count }] of Object.entries(MODELS)) {
  test(`${name}: WASM keys and inputs run in veil run; WASM and C++ decrypt the answer alike`, async () => {
    const dir = join(VEIL_MODELS, name);
    const work = mkdtempSync(join(tmpdir(), `veil-web-${name}-`));
    const client = await VeilClient.fromArtifacts(...(await artifacts(name)));
    const fractions = [];
    await client.generateKeys({ onProgress: (f) => fractions.push(f) });
    assert.ok(fractions.length >= 2 && fractions.at(-1) === 1, `progress reported: ${fractions}`);
    writeFileSync(join(work, "evaluation.keys"), client.evaluationKeys);
    writeFileSync(join(work, "secret.key"), envelopeOf(await client.exportSecretKey()), { mode: 0o600 });
    const rows = testRows(data, count);
    writeFileSync(join(work, "x.enc"), await client.encrypt(rows));
    veil("run", "--server", dir, "--evaluation-keys", join(work, "evaluation.keys"), "--input", join(work, "x.enc"),
         "--out", join(work, "y.enc"));
    const answer = readFileSync(join(work, "y.enc"));
    const fromWasm = await client.decrypt(answer);
    veil("decrypt", "--client", dir, "--keys", work, "--input", join(work, "y.enc"), "--out", join(work, "p.csv"));
    assertSamePredictions(fromWasm, parseCsv(readFileSync(join(work, "p.csv"), "utf8")), name);
    assert.equal(fromWasm.length, rows.length);
    if (client.info.task === "classification") assert.ok(client.info.classes.includes(fromWasm[0].label));
    wasmRuns[name] = fromWasm;
    client.close();
  });

  test(`${name}: ciphertexts of the C++ client decrypt in WASM`, async () => {
    const dir = join(VEIL_MODELS, name);
    const work = mkdtempSync(join(tmpdir(), `veil-web-cli-${name}-`));
    writeFileSync(join(work, "rows.csv"), testRows(data, count).map((r) => r.join(",")).join("\n") + "\n");
    veil("keygen", "--client", dir, "--keys", work);
    veil("encrypt", "--client", dir, "--keys", work, "--input", join(work, "rows.csv"), "--out", join(work, "x.enc"));
    veil("run", "--server", dir, "--evaluation-keys", join(work, "evaluation.keys"), "--input", join(work, "x.enc"),
         "--out", join(work, "y.enc"));
    veil("decrypt", "--client", dir, "--keys", work, "--input", join(work, "y.enc"), "--out", join(work, "p.csv"));
    const client = await VeilClient.fromArtifacts(...(await artifacts(name)));
    await client.importSecretKey(readFileSync(join(work, "secret.key")));
    assertSamePredictions(await client.decrypt(readFileSync(join(work, "y.enc"))),
                          parseCsv(readFileSync(join(work, "p.csv"), "utf8")), name);
    client.close();
  });

  test(`${name}: through veil serve (connect, keys, upload, predict)`, async () => {
    const client = await VeilClient.connect(VEIL_URL, name);
    await client.generateKeys();
    const upload = await client.uploadKeys();
    assert.equal(upload.skipped ?? false, !client.info.keys_required);
    const out = await client.predict(testRows(data, count));
    // Against the run under other keys: the same labels, and the same values (regressors
    // here are trees, computed exactly). Scores are not compared: a network rounds its
    // accumulators approximately, so other keys' noise may move a quantized margin by one
    // step, and the softmax with it (both runs were checked against the C++ client above).
    const before = wasmRuns[name];
    assert.ok(before, "the veil run test of this model ran first");
    assert.equal(out.length, before.length);
    out.forEach((p, r) => {
      const a = "label" in p ? p.scores : [p.value].flat(), b = "label" in p ? before[r].scores : [before[r].value].flat();
      if ("label" in p) assert.equal(p.label, before[r].label, `${name} served: row ${r} label`);
      else a.forEach((v, i) => assert.ok(Math.abs(v - b[i]) <= 1e-9 * Math.max(1, Math.abs(b[i])), `${name} served: row ${r}: ${v} vs ${b[i]}`));
    });
    client.close();
  });
}

test("bad input rejects with an error naming it", async () => {
  const client = await VeilClient.fromArtifacts(...(await artifacts("xgb")));
  await assert.rejects(client.encrypt([[1, 2, 3]]), /expected|expects 30 features/);
  await assert.rejects(client.encrypt([]), /no rows/);
  await assert.rejects(client.encrypt([[..."x".repeat(30)]]), /not a number/);
  await assert.rejects(client.predict([[1]]), /needs a server/);
  assert.throws(() => client.evaluationKeys, /generateKeys/);
  await assert.rejects(client.encrypt([new Array(30).fill(1)]), /no keys/);
  await assert.rejects(client.decrypt(new Uint8Array(10)), /no keys/);
  // Another model's answer.
  const other = await VeilClient.fromArtifacts(...(await artifacts("logreg")));
  await other.generateKeys();
  const foreign = await other.encrypt([new Array(30).fill(1)]);
  await client.generateKeys();
  await assert.rejects(client.decrypt(new Uint8Array(10)), /truncated|envelope/);
  await assert.rejects(client.decrypt(foreign), /model|kind|output/);
  // Another model's secret key.
  await assert.rejects(client.importSecretKey(await other.exportSecretKey()), /for model/);
  await assert.rejects(client.importSecretKey(new Uint8Array([1, 2, 3])), /not a Veil secret key/);
  other.close();
  // A truncated answer of this model.
  const work = mkdtempSync(join(tmpdir(), "veil-web-bad-"));
  writeFileSync(join(work, "evaluation.keys"), client.evaluationKeys);
  writeFileSync(join(work, "x.enc"), await client.encrypt([new Array(30).fill(1)]));
  veil("run", "--server", join(VEIL_MODELS, "xgb"), "--evaluation-keys", join(work, "evaluation.keys"),
       "--input", join(work, "x.enc"), "--out", join(work, "y.enc"));
  const answer = readFileSync(join(work, "y.enc"));
  await assert.rejects(client.decrypt(answer.subarray(0, answer.length - 100)), /truncated|length|bytes/);
  const flipped = Uint8Array.from(answer);
  flipped[flipped.length - 5] ^= 1;
  await assert.rejects(client.decrypt(flipped), /checksum|corrupt/);
  client.close();
});

test("two clients in one process each get their own progress", async () => {
  const a = await VeilClient.fromArtifacts(...(await artifacts("xgb")));
  const b = await VeilClient.fromArtifacts(...(await artifacts("mlp")));
  const seenA = [], seenB = [];
  await a.generateKeys({ onProgress: (f) => seenA.push(f) });
  await b.generateKeys({ onProgress: (f) => seenB.push(f) });
  assert.equal(seenA.at(-1), 1);
  assert.equal(seenB.at(-1), 1);
  a.close();
  b.close();
});

test("corrupted client.zip or processing is refused", async () => {
  const [zip, processing] = await artifacts("xgb");
  const damaged = Uint8Array.from(zip);
  const view = new DataView(damaged.buffer);
  damaged[30 + view.getUint16(26, true) + view.getUint16(28, true) + 5] ^= 0xff;  // inside the first member's data
  await assert.rejects(VeilClient.fromArtifacts(damaged, processing), /client\.zip/);
  await assert.rejects(VeilClient.fromArtifacts(zip, new TextEncoder().encode("{}")), /model_id|processing/);
  await assert.rejects(VeilClient.fromArtifacts(zip, (await artifacts("logreg"))[1]), /model|two different compiles/);
  await assert.rejects(VeilClient.connect(VEIL_URL, "no_such_model"), /404/);
  await assert.rejects(VeilClient.connect(VEIL_URL, "../etc"), /not a model name/);
});

test("the secret key survives export and import, sealed under a passphrase", async () => {
  const a = await VeilClient.fromArtifacts(...(await artifacts("logreg")));
  await a.generateKeys();
  const rows = testRows("breast_cancer", 2);
  const input = await a.encrypt(rows);
  const sealed = await a.exportSecretKey({ passphrase: "correct horse" });
  assert.equal(new TextDecoder().decode(sealed.subarray(0, 8)), "VEILKEYE");
  const b = await VeilClient.fromArtifacts(...(await artifacts("logreg")));
  await assert.rejects(b.importSecretKey(sealed), /passphrase/);
  await assert.rejects(b.importSecretKey(sealed, { passphrase: "wrong" }), /wrong passphrase/);
  await b.importSecretKey(sealed, { passphrase: "correct horse" });
  // b decrypts what a's key encrypted: run the levelled model through veil run (no keys needed).
  const work = mkdtempSync(join(tmpdir(), "veil-web-export-"));
  writeFileSync(join(work, "evaluation.keys"), a.evaluationKeys);
  writeFileSync(join(work, "x.enc"), input);
  veil("run", "--server", join(VEIL_MODELS, "logreg"), "--evaluation-keys", join(work, "evaluation.keys"),
       "--input", join(work, "x.enc"), "--out", join(work, "y.enc"));
  const answer = readFileSync(join(work, "y.enc"));
  assertSamePredictions(await b.decrypt(answer), await a.decrypt(answer), "imported key");
  a.close();
  b.close();
});
