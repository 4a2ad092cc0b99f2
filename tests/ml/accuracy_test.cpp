// Every fixture end to end in the clear: the importer reproduces the framework's float
// predictions, and the quantized circuit (run by the clear executor, "what FHE returns")
// keeps the accuracy targets on the whole test split.
#include <chrono>
#include <cmath>
#include <cstdio>

#include <gtest/gtest.h>

#include "fixtures.hpp"
#include "veil/circuit/analysis.hpp"
#include "veil/ml/quantize.hpp"

namespace veil::ml {
namespace {

using testing::Fixture;

class FixtureTest : public ::testing::TestWithParam<Fixture> {};

TEST_P(FixtureTest, FloatImportMatchesFrameworkPredictions) {
  const Fixture& f = GetParam();
  const Model model = testing::load_fixture_model(f);
  const auto split = testing::load_test_split(f.dataset);
  const Matrix expected = testing::load_expected(f.name);
  ASSERT_EQ(expected.rows, split.features.rows);
  const Predictions p = predict_float(model, split.features);
  std::size_t mismatches = 0;
  double max_score_err = 0;
  for (std::size_t r = 0; r < expected.rows; ++r) {
    if (f.task == "classification") {
      mismatches += static_cast<double>(p.labels[r]) != expected.at(r, 0);
    } else {
      const double tol = 1e-5 * std::max(1.0, std::fabs(expected.at(r, 0)));
      mismatches += std::fabs(p.values[r] - expected.at(r, 0)) > tol;
    }
    ASSERT_EQ(p.scores.cols, expected.cols - 1) << f.name;
    for (std::size_t k = 0; k + 1 < expected.cols; ++k) {
      const double scale = std::max(1.0, std::fabs(expected.at(r, k + 1)));
      max_score_err = std::max(max_score_err, std::fabs(p.scores.at(r, k) - expected.at(r, k + 1)) / scale);
    }
  }
  EXPECT_EQ(mismatches, 0u) << f.name;
  // Expected scores are printed with 9 significant digits; networks run in float32 in torch.
  EXPECT_LT(max_score_err, f.format == "onnx" ? 1e-4 : 1e-6) << f.name;
}

TEST_P(FixtureTest, QuantizedClearAccuracyMeetsTarget) {
  const Fixture& f = GetParam();
  const Model model = testing::load_fixture_model(f);
  const auto split = testing::load_test_split(f.dataset);
  const Matrix calib = testing::load_calibration(f.dataset);
  const auto t0 = std::chrono::steady_clock::now();
  const QuantizedModel q = compile_model(model, calib, {});
  const auto t1 = std::chrono::steady_clock::now();
  const Predictions fp = predict_float(model, split.features);
  const Predictions qp = predict_clear(q, split.features);
  const circuit::CircuitAnalysis a = circuit::analyze(q.circuit);
  double float_metric, quant_metric;
  if (f.task == "classification") {
    float_metric = accuracy(fp.labels, split.targets);
    quant_metric = accuracy(qp.labels, split.targets);
  } else {
    float_metric = r2_score(fp.values, split.targets);
    quant_metric = r2_score(qp.values, split.targets);
  }
  EXPECT_NEAR(float_metric, f.float_metric, 1e-6) << f.name;  // XGBoost predicts in float32
  std::printf("[ metric ] %-26s float %.4f quantized %.4f  pbs %lld  W %u  max_p %u  compile %.2fs\n", f.name.c_str(),
              float_metric, quant_metric, static_cast<long long>(a.statistics.total_pbs), a.encoding_width,
              a.statistics.max_lookup_precision, std::chrono::duration<double>(t1 - t0).count());
  RecordProperty("float_metric", std::to_string(float_metric));
  RecordProperty("quantized_metric", std::to_string(quant_metric));
  EXPECT_GE(quant_metric, float_metric - testing::target_tolerance(f) - 1e-12) << f.name;
}

std::string fixture_name(const ::testing::TestParamInfo<Fixture>& info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(Fixtures, FixtureTest, ::testing::ValuesIn(testing::load_manifest()), fixture_name);

}  // namespace
}  // namespace veil::ml
