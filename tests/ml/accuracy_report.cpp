// veil_ml_accuracy_report: the Models table's accuracy figures for the network fixtures (or
// the fixtures named on the command line): float, quantized (clear) and simulated FHE
// (predict_simulated) accuracy on the test split for seeds 1..5, PBS per sample, the lookup
// precision and the parameter set. Not a test: a measuring tool for quantization work.
// Options override the defaults through the environment, for experiments:
//   VEIL_Q_INPUT_BITS, VEIL_Q_WEIGHT_BITS, VEIL_Q_ACTIVATION_BITS, VEIL_Q_LOOKUP_PRECISION,
//   VEIL_Q_OUTPUT_BITS, VEIL_Q_RANGE_MARGIN, VEIL_Q_NEIGHBOUR_LOG2, VEIL_Q_FILL (network_fill_lookup_range,
//   0 or 1), VEIL_Q_FILL_MAX_WEIGHT_BITS, VEIL_Q_SEEDS (default 5), VEIL_Q_FHE_ROWS (encrypt,
//   run and decrypt that many test rows for real and print the median latency; default 0).
#include <chrono>
#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <vector>
#include <string>

#include "fixtures.hpp"
#include "veil/circuit/analysis.hpp"
#include "veil/circuit/fhe_executor.hpp"
#include "veil/tfhe/keys.hpp"
#include "veil/ml/quantize.hpp"
#include "veil/tfhe/parameters.hpp"
#include "veil/tfhe/serialization.hpp"

using namespace veil;
using namespace veil::ml;
using namespace veil::ml::testing;

namespace {
bool env_uint(const char* name, unsigned& out) {
  const char* v = std::getenv(name);
  if (!v || !*v) return false;
  out = static_cast<unsigned>(std::strtoul(v, nullptr, 10));
  return true;
}
}  // namespace

int main(int argc, char** argv) {
  QuantizationOptions o;
  env_uint("VEIL_Q_INPUT_BITS", o.network_input_bits);
  env_uint("VEIL_Q_WEIGHT_BITS", o.network_weight_bits);
  env_uint("VEIL_Q_ACTIVATION_BITS", o.network_activation_bits);
  env_uint("VEIL_Q_LOOKUP_PRECISION", o.lookup_precision);
  env_uint("VEIL_Q_OUTPUT_BITS", o.network_output_bits);
  env_uint("VEIL_Q_NEIGHBOUR_LOG2", o.network_neighbour_log2);
  if (const char* m = std::getenv("VEIL_Q_RANGE_MARGIN")) o.range_margin = std::strtod(m, nullptr);
  unsigned fill = o.network_fill_lookup_range;
  if (env_uint("VEIL_Q_FILL", fill)) o.network_fill_lookup_range = fill != 0;
  env_uint("VEIL_Q_FILL_MAX_WEIGHT_BITS", o.fill_max_weight_bits);
  unsigned seeds = 5;
  env_uint("VEIL_Q_SEEDS", seeds);
  for (const Fixture& f : load_manifest()) {
    bool wanted = argc < 2 ? f.format == "onnx" : false;
    for (int i = 1; i < argc; ++i) wanted = wanted || f.name == argv[i];
    if (!wanted || f.task != "classification") continue;
    const Model m = load_fixture_model(f);
    const Split split = load_test_split(f.dataset);
    const QuantizedModel q = compile_model(m, load_calibration(f.dataset), o);
    const double fa = accuracy(predict_float(m, split.features).labels, split.targets);
    const double qa = accuracy(predict_clear(q, split.features).labels, split.targets);
    const circuit::CompiledCircuit cc = circuit::compile(q.circuit);
    if (std::getenv("VEIL_Q_DEBUG")) {
      const std::vector<double> sd = circuit::approximate_read_std_dev(cc);
      for (std::size_t id = 0; id < sd.size(); ++id)
        if (sd[id] > 0) std::printf("  %s: std %.3f\n", cc.circuit.describe_node(static_cast<std::uint32_t>(id)).c_str(), sd[id]);
    }
    std::string line;
    double sum = 0, lo = 1;
    for (unsigned s = 1; s <= seeds; ++s) {
      const double a = accuracy(predict_simulated(q, cc, split.features, s).labels, split.targets);
      sum += a, lo = std::min(lo, a);
      char buf[16];
      std::snprintf(buf, sizeof buf, "%s%.3f", s > 1 ? ", " : "", a);
      line += buf;
    }
    // Cost: PBS times tfhe::ks_pbs_cost (the optimizer's model); keys: the seeded evaluation
    // keys' bytes.
    const auto pbs = static_cast<double>(cc.analysis.statistics.total_pbs);
    unsigned fhe_rows = 0;
    env_uint("VEIL_Q_FHE_ROWS", fhe_rows);
    std::string fhe;
    if (fhe_rows && cc.uses_bootstrapping) {
      const auto secret = tfhe::generate_secret_keys(cc.params);
      const auto evaluation = tfhe::expand_evaluation_keys(tfhe::generate_seeded_evaluation_keys(secret));
      const circuit::FheExecutor executor(cc, &evaluation);
      std::vector<double> ms;
      for (unsigned r = 0; r < fhe_rows; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        const circuit::Tensor in = quantize_input(q.processing, split.features.row(r % split.features.rows));
        (void)circuit::decrypt_outputs(cc, secret, executor.run(circuit::expand_inputs(cc, circuit::encrypt_inputs(cc, secret, {in}))));
        ms.push_back(1e3 * std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      std::sort(ms.begin(), ms.end());
      fhe = " median " + std::to_string(ms[ms.size() / 2]) + " ms";
    }
    std::printf("%-22s float %.3f quant %.3f sim [%s] mean %.4f min %.3f | pbs %.0f bits %u cost %.3g keys %.1f MB%s | %s\n",
                f.name.c_str(), fa, qa, line.c_str(), sum / seeds, lo, pbs, q.lookup_precision,
                cc.uses_bootstrapping ? pbs * tfhe::ks_pbs_cost(cc.params) : 0.0,
                cc.uses_bootstrapping ? static_cast<double>(tfhe::seeded_evaluation_keys_bytes(cc.params)) / 1e6 : 0.0, fhe.c_str(),
                cc.params.describe().c_str());
    std::fflush(stdout);
  }
}
