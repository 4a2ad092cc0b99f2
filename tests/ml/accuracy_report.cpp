// veil_ml_accuracy_report: the Models table's accuracy figures for the network fixtures (or
// the fixtures named on the command line): float, quantized (clear) and simulated FHE
// (predict_simulated) accuracy on the test split for seeds 1..5, PBS per sample, the lookup
// precision and the parameter set. Not a test: a measuring tool for quantization work.
// Options override the defaults through the environment, for experiments:
//   VEIL_Q_INPUT_BITS, VEIL_Q_WEIGHT_BITS, VEIL_Q_ACTIVATION_BITS, VEIL_Q_LOOKUP_PRECISION,
//   VEIL_Q_OUTPUT_BITS, VEIL_Q_RANGE_MARGIN, VEIL_Q_NEIGHBOUR_LOG2, VEIL_Q_FILL (network_fill_lookup_range,
//   0 or 1), VEIL_Q_FILL_MAX_WEIGHT_BITS, VEIL_Q_FILL_MIN_PRECISION
//   (fill_min_lookup_precision), VEIL_Q_SEEDS (default 5), VEIL_Q_FHE_ROWS (encrypt,
//   run and decrypt that many test rows for real and print the median latency; default 0),
//   VEIL_Q_WEIGHT_BITS_PER_NODE and VEIL_Q_ACTIVATION_BITS_PER_NODE ("node=bits,node=bits",
//   ONNX node names: weight_bits_per_node, activation_bits_per_node).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <map>
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
// "name=bits,name=bits" into a per-node map.
void env_map(const char* name, std::map<std::string, unsigned>& out) {
  const char* v = std::getenv(name);
  if (!v) return;
  std::string s(v);
  for (std::size_t start = 0; start < s.size();) {
    std::size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    const std::string item = s.substr(start, end - start);
    const std::size_t eq = item.rfind('=');
    if (eq != std::string::npos) out[item.substr(0, eq)] = static_cast<unsigned>(std::strtoul(item.c_str() + eq + 1, nullptr, 10));
    start = end + 1;
  }
}
// predict_simulated with only the reads of the nodes whose description contains `only` drawn.
Predictions simulate_some(const QuantizedModel& q, const circuit::CompiledCircuit& cc, const Matrix& rows, std::uint64_t seed,
                          const std::string& only) {
  std::vector<double> sd = circuit::approximate_read_std_dev(cc);
  for (std::size_t id = 0; id < sd.size(); ++id)
    if (cc.circuit.describe_node(static_cast<std::uint32_t>(id)).find(only) == std::string::npos) sd[id] = 0;
  return predict_simulated(q, cc, rows, seed, &sd);
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
  env_uint("VEIL_Q_FILL_MIN_PRECISION", o.fill_min_lookup_precision);
  env_map("VEIL_Q_WEIGHT_BITS_PER_NODE", o.weight_bits_per_node);
  env_map("VEIL_Q_ACTIVATION_BITS_PER_NODE", o.activation_bits_per_node);
  // VEIL_Q_NOISE_ONLY=substring: draw the noise of the approximate reads whose node description
  // contains it, the others exact (where the simulated loss comes from).
  const char* noise_only = std::getenv("VEIL_Q_NOISE_ONLY");
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
        if (sd[id] > 0) {
          const circuit::Node& n = cc.circuit.nodes[id];
          const double step = n.kind == circuit::OpKind::kRoundBits
                                  ? std::ldexp(1.0, static_cast<int>(std::get<circuit::RoundBitsAttributes>(n.attributes).bits))
                                  : 1.0;
          // A rounding's input: its calibrated range (range_margin included) in steps.
          double levels = 0;
          if (n.kind == circuit::OpKind::kRoundBits && !n.operands.empty())
            if (const auto& h = cc.circuit.nodes[n.operands[0]].range_hint)
              levels = static_cast<double>(h->hi - h->lo) / step;
          std::printf("  %s: std %.3f (%.3f of its step), input range %.1f steps\n",
                      cc.circuit.describe_node(static_cast<std::uint32_t>(id)).c_str(), sd[id], sd[id] / step, levels);
        }
    }
    std::string line;
    double sum = 0, lo = 1;
    for (unsigned s = 1; s <= seeds; ++s) {
      const double a = accuracy(noise_only ? simulate_some(q, cc, split.features, s, noise_only).labels
                                            : predict_simulated(q, cc, split.features, s).labels,
                                split.targets);
      sum += a, lo = std::min(lo, a);
      char buf[16];
      std::snprintf(buf, sizeof buf, "%s%.3f", s > 1 ? ", " : "", a);
      line += buf;
    }
    // VEIL_Q_CALIB=1: agreement of the clear and the simulated predictions (same seeds) with the
    // float model's on the calibration rows (the train split), a larger sample than the test's.
    std::string calib;
    if (std::getenv("VEIL_Q_CALIB")) {
      const Matrix rows = load_calibration(f.dataset);
      const Predictions ref = predict_float(m, rows);
      const std::vector<double> want(ref.labels.begin(), ref.labels.end());
      // and the mean distance of the simulated scores to the float ones.
      double agree = 0, distance = 0;
      for (unsigned s = 1; s <= seeds; ++s) {
        const Predictions p = predict_simulated(q, cc, rows, s);
        agree += accuracy(p.labels, want);
        double d = 0;
        for (std::size_t i = 0; i < p.scores.data.size(); ++i) d += std::fabs(p.scores.data[i] - ref.scores.data[i]);
        distance += d / static_cast<double>(p.scores.data.size());
      }
      char buf[128];
      std::snprintf(buf, sizeof buf, " calib agree clear %.4f sim %.4f score distance %.4f (%zu rows)",
                    accuracy(predict_clear(q, rows).labels, want), agree / seeds, distance / seeds, rows.rows);
      calib = buf;
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
    std::printf("%-22s float %.3f quant %.3f sim [%s] mean %.4f min %.3f%s | pbs %.0f bits %u cost %.3g keys %.1f MB%s | %s\n",
                f.name.c_str(), fa, qa, line.c_str(), sum / seeds, lo, calib.c_str(), pbs, q.lookup_precision,
                cc.uses_bootstrapping ? pbs * tfhe::ks_pbs_cost(cc.params) : 0.0,
                cc.uses_bootstrapping ? static_cast<double>(tfhe::seeded_evaluation_keys_bytes(cc.params)) / 1e6 : 0.0, fhe.c_str(),
                cc.params.describe().c_str());
    std::fflush(stdout);
  }
}
