// serialized_processing.json: round trips, validation, the client's quantization and
// post-processing.
#include <cmath>

#include <gtest/gtest.h>

#include "fixtures.hpp"
#include "veil/ml/processing.hpp"
#include "veil/ml/quantize.hpp"

namespace veil::ml {
namespace {

Processing compiled_processing(const std::string& model, const std::string& dataset) {
  const Model m = load_model(testing::fixture_path("models/" + model));
  return compile_model(m, testing::load_calibration(dataset), {}).processing;
}

TEST(Processing, JsonRoundTripsForEveryModelKind) {
  for (const auto& [model, dataset] : std::vector<std::pair<std::string, std::string>>{
           {"logreg_iris.json", "iris"}, {"xgb_iris.json", "iris"}, {"forest_diabetes.json", "diabetes"},
           {"mlp_wine.onnx", "wine"}}) {
    const Processing p = compiled_processing(model, dataset);
    const Processing back = deserialize_processing(serialize_processing(p));
    EXPECT_EQ(back, p) << model;
  }
}

TEST(Processing, RefusesOtherMajorVersionNamingBoth) {
  auto j = to_json(compiled_processing("logreg_iris.json", "iris"));
  for (const char* unknown : {"3.0", "0.9"}) {
    j["version"] = unknown;
    try {
      processing_from_json(j);
      FAIL() << unknown;
    } catch (const ProcessingFormatError& e) {
      EXPECT_NE(std::string(e.what()).find(unknown), std::string::npos);
      EXPECT_NE(std::string(e.what()).find("2.0"), std::string::npos);
    }
  }
  j["version"] = "2.7";  // a newer minor reads
  EXPECT_NO_THROW(processing_from_json(j));
  j["version"] = "1.0";  // files from before the complement field read as before
  j["post_processing"].erase("complement");
  EXPECT_NO_THROW(processing_from_json(j));
}

// A binary forest computes one class; the client derives the other. A malformed complement
// is refused.
TEST(Processing, ComplementClassIsTheTotalMinusTheOthers) {
  const Processing p = compiled_processing("forest_breast_cancer.json", "breast_cancer");
  ASSERT_TRUE(p.complement.has_value());
  EXPECT_DOUBLE_EQ(*p.complement, 1.0);  // class fractions, mean over trees
  EXPECT_EQ(p.n_outputs, 2u);
  const std::int64_t trees = p.outputs[0].shape.at(1);
  circuit::Tensor out({1, trees}, std::vector<std::int64_t>(static_cast<std::size_t>(trees), 0));
  for (std::int64_t t = 0; t < trees; ++t) out.data[static_cast<std::size_t>(t)] = t % 3;
  const RowPrediction r = postprocess_row(p, {out});
  ASSERT_EQ(r.margins.size(), 2u);
  EXPECT_NEAR(r.margins[0] + r.margins[1], 1.0, 1e-12);
  EXPECT_EQ(processing_from_json(to_json(p)), p);
  auto j = to_json(p);
  j["post_processing"]["complement"] = "one";
  EXPECT_THROW(processing_from_json(j), ProcessingFormatError);
  j["post_processing"]["complement"] = 1.0;
  j["post_processing"]["n_outputs"] = 1;
  EXPECT_THROW(processing_from_json(j), ProcessingFormatError);
}

TEST(Processing, RefusesInconsistentFieldsNamingThem) {
  const auto good = to_json(compiled_processing("xgb_iris.json", "iris"));
  auto j = good;
  j["input_quantizers"].erase(0);
  EXPECT_THROW(processing_from_json(j), ProcessingFormatError);
  j = good;
  j["input_quantizers"][0]["scale"] = -1.0;
  try {
    processing_from_json(j);
    FAIL();
  } catch (const ProcessingFormatError& e) {
    EXPECT_NE(std::string(e.what()).find("input_quantizers[0].scale"), std::string::npos);
  }
  j = good;
  j["post_processing"]["tree_output"][0] = 7;
  EXPECT_THROW(processing_from_json(j), ProcessingFormatError);
  j = good;
  j["post_processing"]["link"] = "probit";
  EXPECT_THROW(processing_from_json(j), ProcessingFormatError);
  EXPECT_THROW(deserialize_processing("{not json"), ProcessingFormatError);
}

TEST(InputQuantizer, RoundsClampsAndRoutesMissing) {
  InputQuantizer q;
  q.scale = 0.5;
  q.zero_point = 3;
  q.q_min = 0;
  q.q_max = 14;
  q.n_bits = 4;
  EXPECT_EQ(q.quantize(1.0), 5);
  EXPECT_EQ(q.quantize(-100.0), 0);
  EXPECT_EQ(q.quantize(100.0), 14);
  EXPECT_EQ(q.quantize(-INFINITY), 0);
  EXPECT_THROW(q.quantize(NAN, "feature 2"), std::invalid_argument);
  q.missing_code = 15;
  EXPECT_EQ(q.quantize(NAN), 15);
  EXPECT_DOUBLE_EQ(q.dequantize(5), 1.0);
}

TEST(Postprocess, MeanOverTreesThenLink) {
  Processing p;
  p.task = Task::kClassification;
  p.classes = {10, 20};
  p.n_features = 1;
  p.input_shape = {1, 1};
  p.outputs.push_back({{2, 2}, {0.5, 0.5, 0.5, 0.5}, {0, 0, 0, 0}});
  p.aggregation = OutputAggregation::kMean;
  p.n_outputs = 2;
  const RowPrediction r = postprocess_row(p, {circuit::Tensor({2, 2}, {2, 0, 0, 2})});
  EXPECT_DOUBLE_EQ(r.margins[0], 0.5);
  EXPECT_DOUBLE_EQ(r.margins[1], 0.5);
  const RowPrediction s = postprocess_row(p, {circuit::Tensor({2, 2}, {0, 2, 0, 2})});
  EXPECT_EQ(s.label, 20);
  EXPECT_THROW(postprocess_row(p, {circuit::Tensor({4}, {0, 0, 0, 0})}), std::invalid_argument);
}

TEST(Postprocess, GroupedTreesBaseScoreAndSoftmax) {
  Processing p;
  p.task = Task::kClassification;
  p.classes = {0, 1, 2};
  p.outputs.push_back({{1, 3}, {1, 1, 1}, {0, 0, 0}});
  p.aggregation = OutputAggregation::kSum;
  p.tree_output = {0, 1, 2};
  p.n_outputs = 3;
  p.base_score = {0.5, 0.5, 0.5};
  p.link = Link::kSoftmax;
  const RowPrediction r = postprocess_row(p, {circuit::Tensor({1, 3}, {0, 2, 1})});
  EXPECT_DOUBLE_EQ(r.margins[1], 2.5);
  EXPECT_EQ(r.label, 1);
  double sum = 0;
  for (double s : r.scores) sum += s;
  EXPECT_NEAR(sum, 1.0, 1e-12);
}

}  // namespace
}  // namespace veil::ml
