// deploy/api/...: the public API (veil/veil.hpp) as a program uses it, for comparing the other
// clients' overhead against it (bench/python_overhead.py runs the same work through Python).
//
//   deploy/api/tree_breast_cancer/round_trip/rows:8   encrypt 8 rows, run them on the server
//                                                     side, decrypt (keys made before timing)
//   deploy/client/MODEL/{keygen,encrypt,decrypt}      the client's own work for the breast-cancer
//                                                     XGBoost and MLP fixtures, one row: the
//                                                     native figures bench/web_client_bench.mjs
//                                                     compares the WebAssembly client with
//   deploy/answers/pack/outputs:M/rows:R              the server's packing of R rows of M
//                                                     outputs (tfhe::pack_answers; counter
//                                                     ms_per_row) on the
//                                                     XGBoost fixture's set (p = 6, N = 2048)
//                                                     with the packing its compile chooses
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <filesystem>
#include <memory>
#include <utility>
#include <string>

#include "veil/tfhe/keys.hpp"
#include "veil/tfhe/lwe.hpp"
#include "veil/tfhe/packing.hpp"
#include "veil/veil.hpp"

#ifndef VEIL_SOURCE_DIR
#define VEIL_SOURCE_DIR "."  // run from the repository root, or set VEIL_FIXTURES
#endif

namespace {

namespace fs = std::filesystem;

std::string fixtures() {
  if (const char* env = std::getenv("VEIL_FIXTURES")) return env;
  return std::string(VEIL_SOURCE_DIR) + "/tests/fixtures";
}

// The first `rows` samples' 30 features (the fixture files end with a target column).
veil::Array features(const std::string& file, std::size_t rows) {
  const veil::Array all = veil::Array::load(fixtures() + "/data/" + file);
  const std::size_t width = all.row_size();
  std::vector<double> v;
  for (std::size_t r = 0; r < std::min(rows, all.rows()); ++r)
    for (std::size_t c = 0; c < 30; ++c) v.push_back(all.values[r * width + c]);
  return veil::Array::matrix(v.size() / 30, 30, v);
}

void round_trip(benchmark::State& state, const std::string& model, std::size_t rows) {
  const fs::path dir = fs::temp_directory_path() / ("veil_deploy_bench_" + std::to_string(::getpid()));
  try {
    const auto compiled =
        veil::CompiledModel::compile(fixtures() + "/models/" + model + ".json", features("breast_cancer_calib.csv", 1000));
    compiled.save(dir.string(), veil::Overwrite::kReplace);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  veil::Client client = veil::Client::load(dir.string());
  const veil::ClientKeys keys = client.generate_keys();
  const veil::Server server = veil::Server::load(dir.string());
  const veil::ServerKeys server_keys = server.load_keys(keys.evaluation_keys());
  const veil::Array x = features("breast_cancer_test.csv", rows);
  for (auto _ : state) {
    const veil::Predictions p = client.decrypt(server.run(client.encrypt(x), server_keys));
    benchmark::DoNotOptimize(p.labels.data());
  }
  state.counters["rows"] = static_cast<double>(rows);
  fs::remove_all(dir);
}

// A compiled fixture in a temporary directory, removed with the object.
struct CompiledFixture {
  fs::path dir;
  explicit CompiledFixture(const std::string& model_file) {
    dir = fs::temp_directory_path() / ("veil_client_bench_" + std::to_string(::getpid()) + "_" + model_file);
    veil::CompiledModel::compile(fixtures() + "/models/" + model_file, features("breast_cancer_calib.csv", 1000))
        .save(dir.string(), veil::Overwrite::kReplace);
  }
  ~CompiledFixture() { fs::remove_all(dir); }
};

enum class ClientStep { kKeygen, kEncrypt, kDecrypt };

void client_step(benchmark::State& state, const std::string& model_file, ClientStep step) {
  std::unique_ptr<CompiledFixture> fixture;
  try {
    fixture = std::make_unique<CompiledFixture>(model_file);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  veil::Client client = veil::Client::load(fixture->dir.string());
  const veil::Array x = features("breast_cancer_test.csv", 1);
  if (step == ClientStep::kKeygen) {
    for (auto _ : state) benchmark::DoNotOptimize(client.generate_keys());
    return;
  }
  const veil::ClientKeys keys = client.generate_keys();
  const veil::Server server = veil::Server::load(fixture->dir.string());
  const veil::Bytes answer = server.run(client.encrypt(x), server.load_keys(keys.evaluation_keys()));
  for (auto _ : state) {
    if (step == ClientStep::kEncrypt)
      benchmark::DoNotOptimize(client.encrypt(x));
    else
      benchmark::DoNotOptimize(client.decrypt(answer));
  }
}

// answer_dimension 0: the answer key as long as the big key (2^24 x 1, what tfhe format 1.3
// packed with); 1376: the shorter key the planner picks for the XGBoost fixture (2^15 x 1 at
// the curve's noise for 1376 coefficients).
void pack(benchmark::State& state, std::size_t outputs, std::size_t rows, std::size_t answer_dimension) {
  using namespace veil::tfhe;
  // The set the XGBoost fixture compiles to: p = 6, n = 836, k = 1, N = 2048, multi-bit.
  std::optional<ParameterSet> p = ParameterSet{};
  p->name = "xgb_breast_cancer_set";
  p->message_bits = 6;
  p->lwe_dimension = LweDimension(836);
  p->glwe_dimension = GlweDimension(1);
  p->polynomial_size = PolynomialSize(2048);
  p->lwe_std_dev = std::exp2(min_secure_log2_std_dev(836));
  p->glwe_std_dev = std::exp2(min_secure_log2_std_dev(2048));
  p->pbs_base_log = DecompositionBaseLog(22);
  p->pbs_level_count = DecompositionLevelCount(1);
  p->ks_base_log = DecompositionBaseLog(3);
  p->ks_level_count = DecompositionLevelCount(5);
  p->grouping = GroupingFactor(2);
  p->answer_polynomial_size = PolynomialSize(std::bit_ceil(outputs));
  p->answer_base_log = DecompositionBaseLog(answer_dimension == 0 ? 24 : 15);
  p->answer_level_count = DecompositionLevelCount(1);
  if (answer_dimension != 0) {
    p->answer_key_dimension = GlweDimension(answer_dimension / p->answer_polynomial_size.value);
    p->answer_std_dev = std::exp2(min_secure_log2_std_dev(answer_dimension));
  }
  const SecretKeys secret = generate_secret_keys(*p);
  const PackingKey key = expand_packing_key(generate_seeded_packing_key(secret));
  auto rng = EncryptionRandomness::from_os();
  std::vector<LweCiphertextList> in;
  for (std::size_t r = 0; r < rows; ++r) {
    in.emplace_back(p->big_lwe_dimension(), outputs);
    for (std::size_t t = 0; t < outputs; ++t)
      encrypt_lwe(secret.glwe.flattened(), encode_message(t % 64, 6), p->glwe_std_dev, rng, in.back()[t]);
  }
  for (auto _ : state) benchmark::DoNotOptimize(pack_answers(key, in, 14));
  state.counters["key_mb"] = static_cast<double>(key.bytes()) / 1e6;
  state.counters["ms_per_row"] = benchmark::Counter(static_cast<double>(rows) * 1e-3,
                                                    benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

const bool registered = [] {
  for (const std::size_t m : {2, 10, 20})
    for (const std::size_t rows : {1, 8})
      for (const std::size_t answer_dimension : {0, 1376})
        benchmark::RegisterBenchmark(("deploy/answers/pack/outputs:" + std::to_string(m) + "/rows:" + std::to_string(rows) +
                                      "/answer_key:" + (answer_dimension == 0 ? std::string("full") : std::to_string(answer_dimension)))
                                         .c_str(),
                                     pack, m, rows, answer_dimension)
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
  for (const auto& [name, file] : {std::pair{"xgb_breast_cancer", "xgb_breast_cancer.json"},
                                   std::pair{"mlp_breast_cancer", "mlp_breast_cancer.onnx"}})
    for (const auto& [step_name, step] : {std::pair{"keygen", ClientStep::kKeygen}, std::pair{"encrypt", ClientStep::kEncrypt},
                                          std::pair{"decrypt", ClientStep::kDecrypt}})
      benchmark::RegisterBenchmark((std::string("deploy/client/") + name + "/" + step_name).c_str(), client_step,
                                   std::string(file), step)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
  benchmark::RegisterBenchmark("deploy/api/tree_breast_cancer/round_trip/rows:8", round_trip,
                               std::string("tree_breast_cancer"), std::size_t{8})
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  return true;
}();

}  // namespace
