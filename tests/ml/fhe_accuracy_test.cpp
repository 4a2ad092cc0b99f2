// FHE equivalence for every fixture (slow): the compiled circuit run by the FHE executor on a
// few test rows returns what the clear executor returns. Circuits without approximate reads
// (linear models) must agree bit for bit. Networks read accumulators through approximate
// round_bits, which may return the multiple below or above near a tie, and tree comparisons
// read their features with neighbour reads; for them the test replays the FHE run in the
// clear: every approximate lookup must have returned one of the entries next to the clear one
// (checked on its decrypted output), and with those choices the clear executor must give the
// FHE outputs: exactly, or within one step where the output itself is an approximate rounding
// (a network's last accumulator).
// VEIL_ML_FHE_SAMPLES sets the rows per model (default 2; 1 for the CNN).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <optional>

#include <gtest/gtest.h>

#include "fixtures.hpp"
#include "veil/circuit/analysis.hpp"
#include "veil/circuit/clear_executor.hpp"
#include "veil/circuit/fhe_executor.hpp"
#include "veil/ml/quantize.hpp"

namespace veil::ml {
namespace {

using testing::Fixture;

class FheFixtureTest : public ::testing::TestWithParam<Fixture> {};

// Lookups with neighbour reads, or reading an approximate rounding (directly or through data
// movement).
std::vector<std::uint32_t> approximate_lookups(const circuit::Circuit& c) {
  std::vector<std::uint32_t> ids;
  for (std::uint32_t id = 0; id < c.nodes.size(); ++id) {
    const circuit::Node& n = c.nodes[id];
    if (n.kind != circuit::OpKind::kLookup) continue;
    const bool neighbour = std::get<circuit::LookupAttributes>(n.attributes).neighbour_log2 != 0;
    if (neighbour || circuit::is_approximate(c, n.operands[0])) ids.push_back(id);
  }
  return ids;
}

// The circuit with each of `lookups` replaced by an input of the lookup's range, so that a
// clear run can take the values the FHE run chose.
circuit::Circuit replay_circuit(const circuit::Circuit& c, const std::vector<std::uint32_t>& lookups,
                                const std::vector<circuit::ValueRange>& ranges) {
  circuit::Circuit r = c;
  for (std::uint32_t id : lookups) {
    circuit::Node in;
    in.kind = circuit::OpKind::kInput;
    in.shape = c.nodes[id].shape;
    const std::int64_t lo = ranges[id].lo, hi = ranges[id].hi;
    std::int64_t bits = 1;
    if (lo < 0) {
      while (-(std::int64_t{1} << (bits - 1)) > lo || (std::int64_t{1} << (bits - 1)) - 1 < hi) ++bits;
    } else {
      while ((std::int64_t{1} << bits) - 1 < hi) ++bits;
    }
    in.attributes = circuit::InputAttributes{bits, lo < 0, lo, hi};
    in.name = "replay_" + std::to_string(id);
    r.nodes[id] = std::move(in);
  }
  return r;
}

// Runs `q`'s circuit on one row under encryption and checks it against the clear replay of
// the FHE's rounding choices. Returns the FHE outputs.
std::vector<circuit::Tensor> check_approximate_row(const circuit::CompiledCircuit& cc, const tfhe::SecretKeys& secret,
                                                   const tfhe::EvaluationKeys& evaluation, const circuit::Tensor& in,
                                                   const std::string& label) {
  const circuit::Circuit& c = cc.circuit;
  const std::vector<std::uint32_t> probes = approximate_lookups(c);
  circuit::Circuit probed = c;
  for (std::uint32_t id : probes) {
    probed.outputs.push_back(id);
    probed.output_names.push_back("probe_" + std::to_string(id));
  }
  circuit::CompiledCircuit pc = circuit::compile_with_parameters(probed, cc.params);
  // The probes are outputs, decoded at the width of the segment they sit in (the
  // accumulators' width, 12 bits and more). The circuit's own set is sized for its own
  // outputs only; where it cannot decode the probes (its predicted error for the probed
  // circuit is not small), the probed circuit runs on a set of its own: what is checked
  // then is the lowering and the rounding, not the production set's noise (the ml bench's
  // fhe_agree runs the unprobed circuit on it).
  std::optional<tfhe::SecretKeys> own_secret;
  std::optional<tfhe::EvaluationKeys> own_evaluation;
  if (pc.analysis.statistics.log2_predicted_p_error.value_or(0.0) > -30) {
    pc = circuit::compile(probed);
    own_secret = tfhe::generate_secret_keys(pc.params);
    own_evaluation = tfhe::expand_evaluation_keys(tfhe::generate_seeded_evaluation_keys(*own_secret));
    std::printf("[ probes ] %s: probes decoded on %s\n", label.c_str(), pc.params.describe().c_str());
  }
  const tfhe::SecretKeys& probe_secret = own_secret ? *own_secret : secret;
  const circuit::FheExecutor executor(pc, own_evaluation ? &*own_evaluation : &evaluation);
  const auto out = circuit::decrypt_outputs(pc, probe_secret, executor.run(circuit::expand_inputs(pc, circuit::encrypt_inputs(pc, probe_secret, {in}))));
  // Clear replay: inputs in node order (the row's tensor, then the FHE's lookup outputs).
  const circuit::Circuit replay = replay_circuit(c, probes, pc.analysis.ranges);
  std::vector<circuit::Tensor> replay_inputs;
  std::size_t next_probe = 0;
  for (std::uint32_t id : replay.inputs())
    replay_inputs.push_back(c.nodes[id].kind == circuit::OpKind::kInput ? in : out[c.outputs.size() + next_probe++]);
  const std::vector<circuit::Tensor> values = circuit::run_clear_all_nodes(replay, replay_inputs);
  for (std::size_t k = 0; k < probes.size(); ++k) {
    const circuit::Node& n = c.nodes[probes[k]];
    const circuit::Tensor& x = values[n.operands[0]];
    const std::int64_t step = std::int64_t{1} << pc.analysis.ranges[n.operands[0]].trailing_zeros;
    const circuit::Tensor& got = out[c.outputs.size() + k];
    for (std::size_t e = 0; e < got.data.size(); ++e) {
      const circuit::Table& t = n.tables[n.table_index.empty() ? 0 : n.table_index[e]];
      bool admissible = false;
      for (std::int64_t v : {x.data[e], x.data[e] - step, x.data[e] + step}) {
        try {
          admissible |= circuit::table_value(t, v) == got.data[e];
        } catch (const std::invalid_argument&) {
          // outside the table: not an entry the lookup could read
        }
      }
      EXPECT_TRUE(admissible) << label << ": " << c.describe_node(probes[k]) << " element " << e << " returned "
                              << got.data[e] << ", not an entry next to the one for " << x.data[e];
    }
  }
  std::vector<circuit::Tensor> fhe(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(c.outputs.size()));
  for (std::size_t o = 0; o < c.outputs.size(); ++o) {
    const std::uint32_t id = c.outputs[o];
    if (!circuit::is_approximate(c, id)) {
      EXPECT_EQ(fhe[o], values[id]) << label << ": output " << o << " differs from the clear replay";
      continue;
    }
    // A network's last accumulator, approximately rounded: decryption returns the multiple
    // the clear replay returns or a neighbour (within the noise of a tie).
    const std::int64_t step = std::int64_t{1} << pc.analysis.ranges[id].trailing_zeros;
    EXPECT_EQ(fhe[o].data.size(), values[id].data.size());
    if (fhe[o].data.size() != values[id].data.size()) continue;
    for (std::size_t e = 0; e < fhe[o].data.size(); ++e) {
      const std::int64_t d = fhe[o].data[e] - values[id].data[e];
      EXPECT_TRUE(d == 0 || d == step || d == -step)
          << label << ": output " << o << " element " << e << " decrypted " << fhe[o].data[e] << ", the clear replay "
          << values[id].data[e] << " (step " << step << ")";
    }
  }
  return fhe;
}

bool has_approximate_reads(const circuit::Circuit& c) {
  for (const auto& n : c.nodes)
    if (n.kind == circuit::OpKind::kRoundBits &&
        std::get<circuit::RoundBitsAttributes>(n.attributes).mode == circuit::RoundingMode::kApproximate)
      return true;
  return !approximate_lookups(c).empty();
}

TEST_P(FheFixtureTest, FhePredictionsEqualClear) {
  const Fixture& f = GetParam();
  const Model model = testing::load_fixture_model(f);
  const auto split = testing::load_test_split(f.dataset);
  const QuantizedModel q = compile_model(model, testing::load_calibration(f.dataset), {});
  const circuit::CompiledCircuit cc = circuit::compile(q.circuit);
  const auto secret = tfhe::generate_secret_keys(cc.params);
  const auto evaluation = tfhe::expand_evaluation_keys(tfhe::generate_seeded_evaluation_keys(secret));
  const circuit::FheExecutor executor(cc, cc.uses_bootstrapping ? &evaluation : nullptr);
  std::size_t samples = f.name.rfind("cnn", 0) == 0 ? 1 : 2;
  if (const char* env = std::getenv("VEIL_ML_FHE_SAMPLES")) samples = std::strtoul(env, nullptr, 10);
  samples = std::min(samples, split.features.rows);
  const bool exact = !has_approximate_reads(q.circuit);
  std::vector<std::vector<circuit::Tensor>> clear_out, fhe_out;
  double seconds = 0;
  for (std::size_t r = 0; r < samples; ++r) {
    const circuit::Tensor in = quantize_input(q.processing, split.features.row(r));
    clear_out.push_back(circuit::run_clear(q.circuit, {in}));
    const auto t0 = std::chrono::steady_clock::now();
    if (exact) {
      const auto enc = circuit::expand_inputs(cc, circuit::encrypt_inputs(cc, secret, {in}));
      const auto out = executor.run(enc);
      seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      fhe_out.push_back(circuit::decrypt_outputs(cc, secret, out));
      EXPECT_EQ(fhe_out.back()[0], clear_out.back()[0]) << f.name << " row " << r;
    } else {
      fhe_out.push_back(check_approximate_row(cc, secret, evaluation, in, f.name + " row " + std::to_string(r)));
      seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
  }
  if (exact) {
    const Predictions pc = postprocess(q.processing, clear_out), pf = postprocess(q.processing, fhe_out);
    if (f.task == "classification") EXPECT_EQ(pf.labels, pc.labels) << f.name;
    else
      for (std::size_t r = 0; r < samples; ++r) EXPECT_NEAR(pf.values[r], pc.values[r], 1e-9);
  }
  std::printf("[ fhe    ] %-26s %zu rows, %.3f s per row, %lld PBS per row, %s\n", f.name.c_str(), samples,
              seconds / static_cast<double>(samples), static_cast<long long>(cc.analysis.statistics.total_pbs),
              cc.params.describe().c_str());
}

std::string fixture_name(const ::testing::TestParamInfo<Fixture>& info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(Fixtures, FheFixtureTest, ::testing::ValuesIn(testing::load_manifest()), fixture_name);

}  // namespace
}  // namespace veil::ml

