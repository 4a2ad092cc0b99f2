// The WebAssembly client in Node against the native one: key generation, encryption and
// decryption of one row for the breast-cancer XGBoost and MLP fixtures (the native figures:
// build/bench/veil_bench --benchmark_filter=deploy/client, the same work through veil/veil.hpp).
//
//   node bench/web_client_bench.mjs build/veil [build/web] [repetitions]
//
// Prints, per model and step, the median and fastest of the repetitions, and the .wasm's size.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const [veil, webDir = "build/web", repetitionsArg = "5"] = process.argv.slice(2);
if (!veil) {
  console.error("usage: node bench/web_client_bench.mjs VEIL_BINARY [WEB_DIR] [REPETITIONS]");
  process.exit(2);
}
const repetitions = Number(repetitionsArg);
const fixtures = resolve(new URL("../tests/fixtures", import.meta.url).pathname);
const { VeilClient } = await import(resolve(webDir, "veil-client.mjs"));
const work = mkdtempSync(join(tmpdir(), "veil-web-bench-"));

const row = readFileSync(join(fixtures, "data/breast_cancer_test.csv"), "utf8").split("\n")[1].split(",").slice(0, 30).map(Number);

async function time(fn) {
  const samples = [];
  for (let i = 0; i < repetitions; ++i) {
    const t = performance.now();
    await fn();
    samples.push(performance.now() - t);
  }
  samples.sort((a, b) => a - b);
  return { median: samples[Math.floor(samples.length / 2)], fastest: samples[0] };
}

const results = [];
for (const model of ["xgb_breast_cancer.json", "mlp_breast_cancer.onnx"]) {
  const dir = join(work, model);
  execFileSync(veil, ["compile", "--model", join(fixtures, "models", model), "--calibration",
                      join(fixtures, "data/breast_cancer_calib.csv"), "--out", dir], { stdio: "ignore" });
  const client = await VeilClient.fromArtifacts(readFileSync(join(dir, "client.zip")),
                                                readFileSync(join(dir, "serialized_processing.json")));
  const keygen = await time(() => client.generateKeys());
  const input = await client.encrypt([row]);
  writeFileSync(join(work, "keys"), client.evaluationKeys);
  writeFileSync(join(work, "x.enc"), input);
  execFileSync(veil, ["run", "--server", dir, "--evaluation-keys", join(work, "keys"), "--input", join(work, "x.enc"),
                      "--out", join(work, "y.enc")], { stdio: "ignore" });
  const answer = readFileSync(join(work, "y.enc"));
  const encrypt = await time(() => client.encrypt([row]));
  const decrypt = await time(() => client.decrypt(answer));
  for (const [step, t] of [["keygen", keygen], ["encrypt", encrypt], ["decrypt", decrypt]])
    results.push({ model: model.replace(/\.(json|onnx)$/, ""), step, median_ms: +t.median.toFixed(3), fastest_ms: +t.fastest.toFixed(3) });
  client.close();
}
for (const r of results) console.log(`web/client/${r.model}/${r.step}\tmedian ${r.median_ms} ms\tfastest ${r.fastest_ms} ms`);
console.log(`veil-client-wasm.wasm: ${statSync(resolve(webDir, "veil-client-wasm.wasm")).size} bytes`);
