// Models end to end: accuracy float / quantized (clear) / FHE, lookups per sample and FHE
// latency per sample, per fixture model and dataset. Named ml/<model>/<dataset>; counters:
//   float_acc, quant_acc (accuracy or R^2 on the whole test split), fhe_sim_acc (the same for
//   predictions with the approximate reads drawn as FHE makes them, ml::predict_simulated,
//   seed 1: FHE's accuracy estimated on the whole split), fhe_agree (fraction of the FHE-run
//   rows whose prediction equals the clear one), pbs (per sample), ms_per_sample.
// Compilation, key generation and the clear runs happen once per model, outside the timing;
// each iteration encrypts, runs and decrypts one test row (cycling through the split).
// Tree ensembles also run as ml/<model>/<dataset>/input_bits:4 (4-bit instead of the default
// 6-bit feature quantizers, so that every lookup fits the 4-bit parameter set),
// input_bits:auto (QuantizationOptions::tree_input_bits = 0: the fewest bits within the
// trees' tolerance) and exact_comparisons (the default bits, comparisons read exactly rather
// than with neighbour reads: tree_comparison_neighbour_log2 = 0); networks as
// ml/<model>/<dataset>/exact_reads (network_neighbour_log2 = 0: every lookup reads exactly, up
// to approximate rounding's ties). Counter `bits`: the input bits of a tree ensemble, the
// lookup precision of a network (both may be automatic choices).
// ml/<model>/<dataset>/rows:8/{wave,one_by_one} (a few fixtures): the server's side only, 8
// encrypted test rows run as one wave (FheExecutor::run_rows: every lookup node one batch over
// all rows) or one row after the other (run); counter ms_per_row.
// ml/xgb/breast_cancer[/input_bits:4]/max_key_mb:B and ml/mlp/breast_cancer/max_key_mb:B: the
// same under a key budget of B MB (CompileOptions::search.max_key_bytes, veil compile
// --max-key-mb). Counter key_mb: the seeded evaluation keys without a packing key (the
// circuit's own keys, what the budget compares).
#include <cstdlib>
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <tuple>
#include <nlohmann/json.hpp>

#include "veil/circuit/analysis.hpp"
#include "veil/circuit/clear_executor.hpp"
#include "veil/circuit/fhe_executor.hpp"
#include "veil/ml/importers.hpp"
#include "veil/ml/quantize.hpp"
#include "veil/tfhe/serialization.hpp"

#ifndef VEIL_SOURCE_DIR
#define VEIL_SOURCE_DIR "."
#endif

namespace {

using namespace veil;

std::string fixtures() {
  if (const char* env = std::getenv("VEIL_FIXTURES")) return env;
  return std::string(VEIL_SOURCE_DIR) + "/tests/fixtures";
}

void bench_model(benchmark::State& state, std::string name, std::string file, std::string dataset, bool regression,
                 int tree_input_bits, bool exact_reads, double max_key_mb) {
  const std::string dir = fixtures();
  const ml::Model model = ml::load_model(dir + "/" + file);
  const ml::Matrix calib = ml::load_csv(dir + "/data/" + dataset + "_calib.csv");
  const ml::Matrix all = ml::load_csv(dir + "/data/" + dataset + "_test.csv");
  const ml::Matrix x = all.first_columns(all.cols - 1);
  const std::vector<double> y = all.column(all.cols - 1);
  ml::QuantizationOptions options;
  if (tree_input_bits >= 0) options.tree_input_bits = static_cast<unsigned>(tree_input_bits);  // 0: automatic
  if (exact_reads) options.tree_comparison_neighbour_log2 = options.network_neighbour_log2 = 0;
  const ml::QuantizedModel q = ml::compile_model(model, calib, options);
  const ml::Predictions fp = ml::predict_float(model, x), qp = ml::predict_clear(q, x);
  // VEIL_BENCH_GROUPING=1 or 2 forces the classical or the multi-bit blind rotation (A/B of
  // the compiler's automatic choice); unset, the compiler chooses.
  circuit::CompileOptions compile_options;
  if (const char* g = std::getenv("VEIL_BENCH_GROUPING")) compile_options.search.grouping = tfhe::GroupingFactor(std::strtoul(g, nullptr, 10));
  compile_options.search.max_key_bytes = static_cast<std::uint64_t>(max_key_mb * 1e6);
  circuit::CompiledCircuit cc;
  try {
    cc = circuit::compile(q.circuit, compile_options);
  } catch (const std::exception& e) {  // e.g. no set within a key budget: skip, do not abort the run
    state.SkipWithError(e.what());
    return;
  }
  const ml::Predictions sp = ml::predict_simulated(q, cc, x, 1);
  const auto secret = tfhe::generate_secret_keys(cc.params);
  const auto evaluation = tfhe::expand_evaluation_keys(tfhe::generate_seeded_evaluation_keys(secret));
  const circuit::FheExecutor executor(cc, cc.uses_bootstrapping ? &evaluation : nullptr);
  std::size_t row = 0, agree = 0, runs = 0;
  double seconds = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    const circuit::Tensor in = ml::quantize_input(q.processing, x.row(row));
    const auto out = circuit::decrypt_outputs(cc, secret, executor.run(circuit::expand_inputs(cc, circuit::encrypt_inputs(cc, secret, {in}))));
    const ml::RowPrediction p = ml::postprocess_row(q.processing, out);
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (regression) agree += std::fabs(p.value - qp.values[row]) <= 1e-2 * std::fabs(qp.values[row]) + 1e-6;
    else agree += p.label == qp.labels[row];
    ++runs;
    row = (row + 1) % x.rows;
  }
  state.counters["float_acc"] = regression ? ml::r2_score(fp.values, y) : ml::accuracy(fp.labels, y);
  state.counters["quant_acc"] = regression ? ml::r2_score(qp.values, y) : ml::accuracy(qp.labels, y);
  state.counters["fhe_sim_acc"] = regression ? ml::r2_score(sp.values, y) : ml::accuracy(sp.labels, y);
  state.counters["fhe_agree"] = runs ? static_cast<double>(agree) / static_cast<double>(runs) : 0.0;
  state.counters["pbs"] = static_cast<double>(cc.analysis.statistics.total_pbs);
  state.counters["bits"] = static_cast<double>(q.tree_input_bits ? q.tree_input_bits : q.lookup_precision);
  state.counters["ms_per_sample"] = runs ? 1e3 * seconds / static_cast<double>(runs) : 0.0;
  state.counters["key_mb"] = static_cast<double>(tfhe::seeded_evaluation_keys_bytes(cc.params)) / 1e6;
  state.SetLabel(cc.params.describe());
  (void)name;
}

void bench_rows(benchmark::State& state, std::string file, std::string dataset, std::size_t rows, bool wave) {
  const std::string dir = fixtures();
  const ml::Model model = ml::load_model(dir + "/" + file);
  const ml::Matrix calib = ml::load_csv(dir + "/data/" + dataset + "_calib.csv");
  const ml::Matrix all = ml::load_csv(dir + "/data/" + dataset + "_test.csv");
  const ml::Matrix x = all.first_columns(all.cols - 1);
  const ml::QuantizedModel q = ml::compile_model(model, calib, {});
  const circuit::CompiledCircuit cc = circuit::compile(q.circuit);
  const auto secret = tfhe::generate_secret_keys(cc.params);
  const auto evaluation = tfhe::expand_evaluation_keys(tfhe::generate_seeded_evaluation_keys(secret));
  const circuit::FheExecutor executor(cc, &evaluation);
  std::vector<std::vector<circuit::EncryptedTensor>> inputs;
  for (std::size_t r = 0; r < rows; ++r)
    inputs.push_back(circuit::expand_inputs(
        cc, circuit::encrypt_inputs(cc, secret, {ml::quantize_input(q.processing, x.row(r % x.rows))})));
  double seconds = 0;
  std::size_t runs = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    if (wave) {
      benchmark::DoNotOptimize(executor.run_rows(inputs, &evaluation));
    } else {
      for (const auto& in : inputs) benchmark::DoNotOptimize(executor.run(in, &evaluation));
    }
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    runs += rows;
  }
  state.counters["ms_per_row"] = runs ? 1e3 * seconds / static_cast<double>(runs) : 0.0;
  state.counters["pbs"] = static_cast<double>(cc.analysis.statistics.total_pbs);
  state.SetLabel(cc.params.describe());
}

// One benchmark per fixture of the manifest.
const bool registered = [] {
  std::ifstream in(fixtures() + "/manifest.json");
  if (!in) return false;
  const auto manifest = nlohmann::json::parse(in, nullptr, false);
  if (manifest.is_discarded()) return false;
  for (const auto& m : manifest["models"]) {
    const std::string name = m["name"], file = m["file"], dataset = m["dataset"], task = m["task"];
    std::string model = name.substr(0, name.rfind('_' + dataset));
    const bool trees = model == "tree" || model == "forest" || model == "xgb";
    // -1: the default widths; 0: automatic input bits; -2: the default widths, exact reads.
    const bool network = file.size() > 5 && file.compare(file.size() - 5, 5, ".onnx") == 0;
    const std::vector<int> variants = trees ? std::vector<int>{-1, 4, 0, -2} : network ? std::vector<int>{-1, -2} : std::vector<int>{-1};
    for (const int bits : variants) {
      const std::string suffix = bits == -1 ? ""
                                 : bits == -2 ? (trees ? "/exact_comparisons" : "/exact_reads")
                                              : "/input_bits:" + (bits ? std::to_string(bits) : std::string("auto"));
      benchmark::RegisterBenchmark(("ml/" + model + "/" + dataset + suffix).c_str(), bench_model, name, file, dataset,
                                   task == "regression", std::max(bits, -1), bits == -2, 0.0)
          ->Unit(benchmark::kMillisecond)
          ->Iterations(name.rfind("cnn", 0) == 0 ? 1 : 3)
          ->UseRealTime();
    }
  }
  // The latency / key-size trade-off (issue 26, item 4): the XGBoost fixture at its default
  // 6-bit and at 4-bit inputs, and the MLP, each under the key budgets that change the
  // optimizer's choice (veil compile --max-key-mb; the unbudgeted runs are above).
  for (const auto& [model, file, bits, budget] :
       {std::tuple{"xgb", "models/xgb_breast_cancer.json", -1, 29.0}, std::tuple{"xgb", "models/xgb_breast_cancer.json", -1, 20.0},
        std::tuple{"xgb", "models/xgb_breast_cancer.json", 4, 20.0}, std::tuple{"xgb", "models/xgb_breast_cancer.json", 4, 15.0},
        std::tuple{"mlp", "models/mlp_breast_cancer.onnx", -1, 28.0}}) {
    char name[96];
    std::snprintf(name, sizeof name, "ml/%s/breast_cancer%s/max_key_mb:%g", model, bits == 4 ? "/input_bits:4" : "", budget);
    benchmark::RegisterBenchmark(name, bench_model, std::string(model) + "_breast_cancer", std::string(file), "breast_cancer",
                                 false, bits, false, budget)
        ->Unit(benchmark::kMillisecond)
        ->Iterations(3)
        ->UseRealTime();
  }
  for (const auto& [model, file, dataset] :
       {std::tuple{"tree", "models/tree_breast_cancer.json", "breast_cancer"}, std::tuple{"xgb", "models/xgb_breast_cancer.json", "breast_cancer"},
        std::tuple{"mlp", "models/mlp_breast_cancer.onnx", "breast_cancer"}, std::tuple{"tinycnn", "models/tinycnn_digits.onnx", "digits"}})
    for (const bool wave : {true, false})
      benchmark::RegisterBenchmark((std::string("ml/") + model + "/" + dataset + "/rows:8/" + (wave ? "wave" : "one_by_one")).c_str(),
                                   bench_rows, std::string(file), std::string(dataset), std::size_t{8}, wave)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
  return true;
}();

}  // namespace
