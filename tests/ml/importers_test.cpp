// Importers: structure of what they produce, and refusal of malformed or unsupported input
// with messages that name the place.
#include <cmath>
#include <fstream>

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include "fixtures.hpp"
#include "veil/ml/importers.hpp"

namespace veil::ml {
namespace {

nlohmann::json read_json(const std::string& rel) {
  std::ifstream in(testing::fixture_path(rel));
  return nlohmann::json::parse(in);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ModelFormatError& e) {
    return e.what();
  }
  return "";
}

TEST(SklearnImport, PipelineScalerIsFoldedAsPreprocessing) {
  const Model m = load_sklearn_json(testing::fixture_path("models/logreg_breast_cancer.json"));
  EXPECT_EQ(m.task, Task::kClassification);
  EXPECT_EQ(m.n_features, 30u);
  ASSERT_EQ(m.preprocessing.size(), 1u);
  EXPECT_EQ(m.preprocessing[0].kind, "standard_scaler");
  EXPECT_EQ(std::get<LinearModel>(m.body).link, Link::kSigmoid);
  EXPECT_EQ(m.classes, (std::vector<std::int64_t>{0, 1}));
}

TEST(SklearnImport, ForestHasOneTreePerEstimatorAndMeanAggregation) {
  const Model m = load_sklearn_json(testing::fixture_path("models/forest_iris.json"));
  const auto& e = std::get<TreeEnsemble>(m.body);
  EXPECT_EQ(e.trees.size(), 8u);
  EXPECT_EQ(e.aggregation, Aggregation::kMean);
  EXPECT_EQ(e.n_outputs, 3u);
}

TEST(SklearnImport, RefusesWrongFormatAndBadTrees) {
  auto doc = read_json("models/tree_wine.json");
  auto bad = doc;
  bad["format"] = "something";
  EXPECT_NE(error_of([&] { parse_sklearn_json(bad, "m.json"); }).find("$.format"), std::string::npos);
  bad = doc;
  bad["model"]["trees"][0]["left"][0] = 99;
  const std::string msg = error_of([&] { parse_sklearn_json(bad, "m.json"); });
  EXPECT_NE(msg.find("trees[0]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("node 0"), std::string::npos) << msg;
  bad = doc;
  bad["model"]["trees"][0]["left"][1] = 0;  // a cycle back to the root
  EXPECT_NE(error_of([&] { parse_sklearn_json(bad, "m.json"); }), "");
  bad = doc;
  bad["model"]["type"] = "svm";
  EXPECT_NE(error_of([&] { parse_sklearn_json(bad, "m.json"); }).find("unsupported model type 'svm'"), std::string::npos);
  bad = doc;
  bad["version"] = "2.0";
  EXPECT_NE(error_of([&] { parse_sklearn_json(bad, "m.json"); }).find("2.0"), std::string::npos);
}

TEST(XgboostImport, ReadsObjectiveBaseScoreAndGroups) {
  const Model m = load_xgboost_json(testing::fixture_path("models/xgb_iris.json"));
  const auto& e = std::get<TreeEnsemble>(m.body);
  EXPECT_EQ(e.link, Link::kSoftmax);
  EXPECT_EQ(e.n_outputs, 3u);
  EXPECT_EQ(e.trees.size(), 30u);
  EXPECT_EQ(e.tree_output[4], 1);
  EXPECT_EQ(e.comparison, Comparison::kLess);
  const Model r = load_xgboost_json(testing::fixture_path("models/xgb_diabetes.json"));
  EXPECT_EQ(r.task, Task::kRegression);
  EXPECT_DOUBLE_EQ(std::get<TreeEnsemble>(r.body).base_score.at(0), 0.5);
}

TEST(XgboostImport, MissingValuesFollowDefaultDirections) {
  auto doc = read_json("models/xgb_diabetes.json");
  auto& tree = doc["learner"]["gradient_booster"]["model"]["trees"][0];
  Model m = parse_xgboost_json(doc, "m.json");
  const auto& e = std::get<TreeEnsemble>(m.body);
  const auto& t0 = e.trees[0];
  const std::size_t f = static_cast<std::size_t>(t0.feature[0]);
  Matrix row(1, m.n_features);
  row.at(0, f) = NAN;
  // Flip the root's default direction: the NaN row's first-tree contribution changes side.
  const double a = model_margins(m, row).at(0, 0);
  tree["default_left"][0] = t0.default_left[0] ? 0 : 1;
  const Model flipped = parse_xgboost_json(doc, "m.json");
  const double b = model_margins(flipped, row).at(0, 0);
  EXPECT_NE(a, b);
}

TEST(XgboostImport, RefusesUnsupportedObjectiveAndBooster) {
  auto doc = read_json("models/xgb_breast_cancer.json");
  auto bad = doc;
  bad["learner"]["objective"]["name"] = "rank:pairwise";
  EXPECT_NE(error_of([&] { parse_xgboost_json(bad, "m.json"); }).find("rank:pairwise"), std::string::npos);
  bad = doc;
  bad["learner"]["gradient_booster"]["name"] = "dart";
  EXPECT_NE(error_of([&] { parse_xgboost_json(bad, "m.json"); }).find("dart"), std::string::npos);
  bad = doc;
  bad["learner"]["gradient_booster"]["model"]["trees"][0]["split_indices"][0] = 1000;
  EXPECT_NE(error_of([&] { parse_xgboost_json(bad, "m.json"); }).find("feature 1000"), std::string::npos);
}

TEST(OnnxImport, TrailingSoftmaxBecomesTheLink) {
  const Model m = load_onnx(testing::fixture_path("models/mlp_iris.onnx"));
  const auto& n = std::get<Network>(m.body);
  EXPECT_EQ(n.link, Link::kSoftmax);
  EXPECT_EQ(n.input_shape, (circuit::Shape{1, 4}));
  EXPECT_EQ(m.classes.size(), 3u);
  for (const auto& node : n.nodes) EXPECT_NE(node.op_type, "Softmax");
}

std::vector<std::uint8_t> bytes_of(const onnx::ModelProto& p) {
  std::string s;
  p.SerializeToString(&s);
  return {s.begin(), s.end()};
}

onnx::ModelProto fixture_proto(const std::string& rel) {
  onnx::ModelProto p;
  std::ifstream in(testing::fixture_path(rel), std::ios::binary);
  EXPECT_TRUE(p.ParseFromIstream(&in));
  return p;
}

TEST(OnnxImport, UnsupportedOpNamesOpNodeAndSupportedList) {
  onnx::ModelProto p = fixture_proto("models/mlp_breast_cancer.onnx");
  auto* node = p.mutable_graph()->mutable_node(3);  // the Relu
  node->set_op_type("Elu");
  const std::string msg = error_of([&] { parse_onnx(bytes_of(p), "m.onnx"); });
  EXPECT_NE(msg.find("'Elu'"), std::string::npos) << msg;
  EXPECT_NE(msg.find(node->name()), std::string::npos) << msg;
  EXPECT_NE(msg.find("Gemm"), std::string::npos) << msg;
  EXPECT_NE(msg.find("GlobalAveragePool"), std::string::npos) << msg;
}

TEST(OnnxImport, GarbageAndDanglingInputsAreRefused) {
  const std::vector<std::uint8_t> garbage = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  EXPECT_NE(error_of([&] { parse_onnx(garbage, "g.onnx"); }), "");
  onnx::ModelProto p = fixture_proto("models/mlp_breast_cancer.onnx");
  p.mutable_graph()->mutable_node(2)->set_input(0, "nowhere");
  EXPECT_NE(error_of([&] { parse_onnx(bytes_of(p), "m.onnx"); }).find("nowhere"), std::string::npos);
}

TEST(LoadModel, DispatchesOnContent) {
  EXPECT_EQ(load_model(testing::fixture_path("models/tree_wine.json")).format, "sklearn");
  EXPECT_EQ(load_model(testing::fixture_path("models/xgb_iris.json")).format, "xgboost");
  EXPECT_EQ(load_model(testing::fixture_path("models/cnn_digits.onnx")).format, "onnx");
  EXPECT_THROW(load_model(testing::fixture_path("data/iris_test.csv")), ModelFormatError);
}

}  // namespace
}  // namespace veil::ml
