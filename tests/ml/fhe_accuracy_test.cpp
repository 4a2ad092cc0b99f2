// FHE equivalence for every fixture (slow): the compiled circuit run by the FHE executor on a
// few test rows returns what the clear executor returns. Circuits without approximate
// rounding (linear models, trees) must agree bit for bit; networks read accumulators through
// approximate round_bits (the multiple below or above near a tie), so their predictions must
// agree and their outputs stay within a few quantization steps.
// VEIL_ML_FHE_SAMPLES sets the rows per model (default 2; 1 for the CNN).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>

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

bool has_approximate_rounding(const circuit::Circuit& c) {
  for (const auto& n : c.nodes)
    if (n.kind == circuit::OpKind::kRoundBits && n.attributes.at(1) == static_cast<std::int64_t>(circuit::RoundingMode::kApproximate))
      return true;
  return false;
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
  const bool exact = !has_approximate_rounding(q.circuit);
  std::vector<std::vector<circuit::Tensor>> clear_out, fhe_out;
  double seconds = 0;
  for (std::size_t r = 0; r < samples; ++r) {
    const circuit::Tensor in = quantize_input(q.processing, split.features.row(r));
    clear_out.push_back(circuit::run_clear(q.circuit, {in}));
    const auto t0 = std::chrono::steady_clock::now();
    const auto enc = circuit::expand_inputs(cc, circuit::encrypt_inputs(cc, secret, {in}));
    const auto out = executor.run(enc);
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    fhe_out.push_back(circuit::decrypt_outputs(cc, secret, out));
    if (exact) {
      EXPECT_EQ(fhe_out.back()[0], clear_out.back()[0]) << f.name << " row " << r;
    } else {
      for (std::size_t e = 0; e < clear_out.back()[0].data.size(); ++e)
        EXPECT_NEAR(fhe_out.back()[0].data[e], clear_out.back()[0].data[e], 4) << f.name << " row " << r << " element " << e;
    }
  }
  const Predictions pc = postprocess(q.processing, clear_out), pf = postprocess(q.processing, fhe_out);
  if (f.task == "classification") EXPECT_EQ(pf.labels, pc.labels) << f.name;
  else
    for (std::size_t r = 0; r < samples; ++r) EXPECT_NEAR(pf.values[r], pc.values[r], exact ? 1e-9 : 1e-2 * std::fabs(pc.values[r]) + 1e-6);
  std::printf("[ fhe    ] %-26s %zu rows, %.3f s per row, %lld PBS per row, %s\n", f.name.c_str(), samples,
              seconds / static_cast<double>(samples), static_cast<long long>(cc.analysis.statistics.total_pbs),
              cc.params.describe().c_str());
}

std::string fixture_name(const ::testing::TestParamInfo<Fixture>& info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(Fixtures, FheFixtureTest, ::testing::ValuesIn(testing::load_manifest()), fixture_name);

}  // namespace
}  // namespace veil::ml

