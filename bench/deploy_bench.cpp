// deploy/api/...: the public API (veil/veil.hpp) as a program uses it, for comparing the other
// clients' overhead against it (bench/python_overhead.py runs the same work through Python).
//
//   deploy/api/tree_breast_cancer/round_trip/rows:8   encrypt 8 rows, run them on the server
//                                                     side, decrypt (keys made before timing)
//   deploy/client/MODEL/{keygen,encrypt,decrypt}      the client's own work for the breast-cancer
//                                                     XGBoost and MLP fixtures, one row: the
//                                                     native figures bench/web_client_bench.mjs
//                                                     compares the WebAssembly client with
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <utility>
#include <string>

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

const bool registered = [] {
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
