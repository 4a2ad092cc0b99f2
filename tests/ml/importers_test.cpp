// Importers: structure of what they produce, and refusal of malformed or unsupported input
// with messages that name the place.
#include <cmath>
#include <fstream>
#include <set>

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include "fixtures.hpp"
#include "veil/ml/importers.hpp"
#include "veil/ml/quantize.hpp"

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

// Regression (fuzzing finding): a right_children shorter than left_children was written
// past its end once per leaf (a heap overflow). Every node array is checked before any write.
TEST(XgboostImport, ShortChildArraysAreRefusedBeforeAnyWrite) {
  auto doc = read_json("models/xgb_breast_cancer.json");
  auto& tree = doc["learner"]["gradient_booster"]["model"]["trees"][0];
  const std::size_t n = tree["left_children"].size();
  ASSERT_GT(n, 2u);
  tree["right_children"] = nlohmann::json::array({2});
  const std::string msg = error_of([&] { parse_xgboost_json(doc, "m.json"); });
  EXPECT_NE(msg.find("right_children 1"), std::string::npos) << msg;
  // The shape: one tree of 20,000 leaves under a one-entry right_children.
  auto big = read_json("models/xgb_breast_cancer.json");
  auto& bt = big["learner"]["gradient_booster"]["model"]["trees"];
  bt = nlohmann::json::array({bt[0]});
  big["learner"]["gradient_booster"]["model"]["tree_info"] = nlohmann::json::array({0});
  auto& t = bt[0];
  const std::size_t leaves = 20000;
  t["left_children"] = nlohmann::json::array();
  t["left_children"].push_back(1);
  for (std::size_t i = 1; i < leaves; ++i) t["left_children"].push_back(-1);
  t["right_children"] = nlohmann::json::array({2});
  t["split_indices"] = std::vector<int>(leaves, 0);
  t["split_conditions"] = std::vector<double>(leaves, 0.5);
  t["default_left"] = std::vector<int>(leaves, 0);
  EXPECT_NE(error_of([&] { parse_xgboost_json(big, "m.json"); }).find("different lengths"), std::string::npos);
  for (const char* field : {"split_indices", "split_conditions", "default_left"}) {
    auto d = read_json("models/xgb_breast_cancer.json");
    d["learner"]["gradient_booster"]["model"]["trees"][0][field].erase(0);
    EXPECT_NE(error_of([&] { parse_xgboost_json(d, "m.json"); }).find("different lengths"), std::string::npos) << field;
  }
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
  node->set_op_type("Gather");
  const std::string msg = error_of([&] { parse_onnx(bytes_of(p), "m.onnx"); });
  EXPECT_NE(msg.find("'Gather'"), std::string::npos) << msg;
  EXPECT_NE(msg.find(node->name()), std::string::npos) << msg;
  EXPECT_NE(msg.find("Gemm"), std::string::npos) << msg;
  EXPECT_NE(msg.find("GlobalAveragePool"), std::string::npos) << msg;
}

// Every univariate op of the family (unary_ops.hpp) in place of the fixture MLP's ReLU: it
// imports, evaluates as ONNX defines it, and lowers into lookups whose clear predictions
// follow the float network's.
TEST(OnnxImport, UnivariateOpsImportEvaluateAndLower) {
  const auto split = testing::load_test_split("breast_cancer");
  const Matrix calib = testing::load_calibration("breast_cancer");
  for (const char* op : {"Elu", "Selu", "Softplus", "Softsign", "HardSigmoid", "HardSwish", "Erf", "Abs", "Neg", "Clip",
                         "Sigmoid", "Tanh"}) {
    onnx::ModelProto p = fixture_proto("models/mlp_breast_cancer.onnx");
    auto* node = p.mutable_graph()->mutable_node(3);  // the Relu
    node->set_op_type(op);
    if (std::string(op) == "Clip") {  // bounds as constant inputs (opset 11 on)
      for (const auto& [name, value] : {std::pair{"clip_lo", 0.0f}, std::pair{"clip_hi", 2.0f}}) {
        auto* t = p.mutable_graph()->add_initializer();
        t->set_name(name);
        t->set_data_type(onnx::TensorProto::FLOAT);
        t->add_float_data(value);
        node->add_input(name);
      }
    }
    const Model m = parse_onnx(bytes_of(p), std::string(op) + ".onnx");
    const QuantizedModel q = compile_model(m, calib, {});
    const Predictions fp = predict_float(m, split.features), qp = predict_clear(q, split.features);
    std::size_t agree = 0;
    for (std::size_t r = 0; r < fp.labels.size(); ++r) agree += fp.labels[r] == qp.labels[r];
    // The weights were trained for ReLU: only agreement with the float network is asked.
    EXPECT_GE(static_cast<double>(agree) / static_cast<double>(fp.labels.size()), 0.9) << op;
  }
}

// A graph with one float input x and one output y, both of shape [1, 1], and no node yet.
onnx::ModelProto scalar_graph(int opset) {
  onnx::ModelProto p;
  p.set_ir_version(7);
  p.add_opset_import()->set_version(opset);
  auto* g = p.mutable_graph();
  for (auto [list, name] : {std::pair{g->add_input(), "x"}, std::pair{g->add_output(), "y"}}) {
    list->set_name(name);
    auto* t = list->mutable_type()->mutable_tensor_type();
    t->set_elem_type(onnx::TensorProto::FLOAT);
    t->mutable_shape()->add_dim()->set_dim_value(1);
    t->mutable_shape()->add_dim()->set_dim_value(1);
  }
  return p;
}

// The values ONNX defines, at a few points, through a one-node graph y = op(x).
TEST(OnnxImport, UnivariateOpsComputeOnnxsDefinitions) {
  struct Case {
    const char* op;
    double x, y;
    std::vector<std::pair<const char*, float>> attributes;
  };
  const std::vector<Case> cases = {
      {"Elu", -1.0, std::expm1(-1.0), {}},
      {"Elu", -1.0, 0.5 * std::expm1(-1.0), {{"alpha", 0.5f}}},
      {"Selu", 1.0, 1.05070102214813232421875, {}},
      {"Selu", -1.0, 1.05070102214813232421875 * 1.67326319217681884765625 * std::expm1(-1.0), {}},
      {"Softplus", 0.0, std::log(2.0), {}},
      {"Softplus", 800.0, 800.0, {}},  // no overflow
      {"Softsign", 1.0, 0.5, {}},
      {"HardSigmoid", 0.0, 0.5, {}},
      {"HardSigmoid", 10.0, 1.0, {}},
      {"HardSigmoid", 1.0, 0.75, {{"alpha", 0.25f}, {"beta", 0.5f}}},
      {"HardSwish", 3.0, 3.0, {}},
      {"HardSwish", -1.0, -1.0 / 3.0, {}},
      {"Erf", 1.0, std::erf(1.0), {}},
      {"Exp", 1.0, std::exp(1.0), {}},
      {"Abs", -2.5, 2.5, {}},
      {"Neg", 2.5, -2.5, {}},
      {"Clip", 5.0, 1.0, {{"min", -1.0f}, {"max", 1.0f}}},  // opset 10 form: attributes
      {"LeakyRelu", -2.0, -0.02, {}},
      {"Log", 2.0, std::log(2.0), {}},
      {"Sqrt", 2.25, 1.5, {}},
      {"Reciprocal", 4.0, 0.25, {}},
  };
  for (const Case& c : cases) {
    onnx::ModelProto p = scalar_graph(c.op == std::string("Clip") ? 10 : 13);
    auto* node = p.mutable_graph()->add_node();
    node->set_op_type(c.op);
    node->set_name("f");
    node->add_input("x");
    node->add_output("y");
    for (const auto& [name, value] : c.attributes) {
      auto* a = node->add_attribute();
      a->set_name(name);
      a->set_type(onnx::AttributeProto::FLOAT);
      a->set_f(value);
    }
    const Model m = parse_onnx(bytes_of(p), std::string(c.op) + ".onnx");
    Matrix x(1, 1);
    x.at(0, 0) = c.x;
    EXPECT_NEAR(predict_float(m, x).values.at(0), c.y, 1e-6 * std::max(1.0, std::fabs(c.y))) << c.op << "(" << c.x << ")";
  }
}

// QuantizeLinear / DequantizeLinear on one value: y = (clip(q(x)) - zp) * s through
// QuantizeLinear -> Clip on the codes -> DequantizeLinear, as quantization-aware training
// exports it. Rounding is half to even, saturation to the zero point's type.
onnx::ModelProto fake_quant_graph(float scale, std::int32_t zero_point, onnx::TensorProto::DataType type, int clip_lo,
                                  int clip_hi) {
  onnx::ModelProto p = scalar_graph(13);
  auto* g = p.mutable_graph();
  const auto add_init = [&](const char* name, onnx::TensorProto::DataType dt, double v) {
    auto* t = g->add_initializer();
    t->set_name(name);
    t->set_data_type(dt);
    if (dt == onnx::TensorProto::FLOAT) t->add_float_data(static_cast<float>(v));
    else t->add_int32_data(static_cast<std::int32_t>(v));
  };
  add_init("s", onnx::TensorProto::FLOAT, scale);
  add_init("z", type, zero_point);
  add_init("lo", type, clip_lo);
  add_init("hi", type, clip_hi);
  const auto add_node = [&](const char* op, std::vector<const char*> in, const char* out) {
    auto* n = g->add_node();
    n->set_op_type(op);
    n->set_name(std::string(op) + "_" + out);
    for (const char* i : in) n->add_input(i);
    n->add_output(out);
  };
  add_node("QuantizeLinear", {"x", "s", "z"}, "q");
  add_node("Clip", {"q", "lo", "hi"}, "c");
  add_node("DequantizeLinear", {"c", "s", "z"}, "y");
  return p;
}

TEST(OnnxImport, FakeQuantizationComputesOnnxsDefinitions) {
  struct Case {
    float scale;
    std::int32_t zp;
    onnx::TensorProto::DataType type;
    int lo, hi;
    double x, y;
  };
  const std::vector<Case> cases = {
      {0.5f, 0, onnx::TensorProto::UINT8, 0, 15, 1.25, 1.0},    // 2.5 rounds to even: 2
      {0.5f, 0, onnx::TensorProto::UINT8, 0, 15, 1.75, 2.0},    // 3.5 rounds to even: 4
      {0.5f, 0, onnx::TensorProto::UINT8, 0, 15, 100.0, 7.5},   // clipped to code 15
      {0.5f, 0, onnx::TensorProto::UINT8, 0, 255, -3.0, 0.0},   // uint8 saturates at 0
      {0.5f, 3, onnx::TensorProto::UINT8, 0, 255, -1.0, -1.0},  // zero point 3: code 1
      {0.25f, 0, onnx::TensorProto::INT8, -7, 7, -5.0, -1.75},  // int8, clipped to -7
      {0.25f, 0, onnx::TensorProto::INT8, -128, 127, -100.0, -32.0},
  };
  for (const Case& c : cases) {
    const Model m = parse_onnx(bytes_of(fake_quant_graph(c.scale, c.zp, c.type, c.lo, c.hi)), "fq.onnx");
    Matrix x(1, 1);
    x.at(0, 0) = c.x;
    EXPECT_DOUBLE_EQ(predict_float(m, x).values.at(0), c.y) << c.x << " scale " << c.scale << " zp " << c.zp;
  }
  // Refusals name the node and what is wrong.
  EXPECT_NE(error_of([] { parse_onnx(bytes_of(fake_quant_graph(0.0f, 0, onnx::TensorProto::UINT8, 0, 15)), "fq.onnx"); })
                .find("not positive"),
            std::string::npos);
  onnx::ModelProto bad = fake_quant_graph(0.5f, 0, onnx::TensorProto::UINT8, 0, 15);
  auto* zp = bad.mutable_graph()->mutable_initializer(1);  // a float zero point
  zp->set_data_type(onnx::TensorProto::FLOAT);
  zp->clear_int32_data();
  zp->add_float_data(0.0f);
  const std::string msg = error_of([&] { parse_onnx(bytes_of(bad), "fq.onnx"); });
  EXPECT_NE(msg.find("QuantizeLinear"), std::string::npos) << msg;
  EXPECT_NE(msg.find("int8 or uint8"), std::string::npos) << msg;
}

// The weights of a quantization-aware network (initializer -> QuantizeLinear per output
// channel -> Clip -> DequantizeLinear) are folded at import into fake-quantized initializers
// whose grid the network keeps: every weight an integer multiple of its channel's step.
TEST(OnnxImport, QuantizationAwareWeightsAreFoldedOntoTheirGrid) {
  const Model m = load_model(testing::fixture_path("models/qat_mlp_digits.onnx"));
  const auto& net = std::get<Network>(m.body);
  ASSERT_EQ(net.weight_steps.size(), 2u);
  for (const auto& [name, steps] : net.weight_steps) {
    const FloatTensor& w = net.initializers.at(name);
    ASSERT_EQ(w.shape, steps.shape) << name;
    std::set<double> codes;
    for (std::size_t e = 0; e < w.data.size(); ++e) {
      const double k = w.data[e] / steps.data[e];
      EXPECT_NEAR(k, std::nearbyint(k), 1e-9) << name << "[" << e << "]";
      codes.insert(std::nearbyint(k));
    }
    EXPECT_GE(*codes.begin(), -7.0) << name;
    EXPECT_LE(*codes.rbegin(), 7.0) << name;
  }
  // What is left of the graph: the input's and the hidden layer's fake quantization, two Gemm,
  // one Relu; no weight path.
  std::size_t q = 0;
  for (const auto& n : net.nodes) q += n.op_type == "QuantizeLinear";
  EXPECT_EQ(q, 2u);
}

TEST(OnnxImport, GarbageAndDanglingInputsAreRefused) {
  const std::vector<std::uint8_t> garbage = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  EXPECT_NE(error_of([&] { parse_onnx(garbage, "g.onnx"); }), "");
  onnx::ModelProto p = fixture_proto("models/mlp_breast_cancer.onnx");
  p.mutable_graph()->mutable_node(2)->set_input(0, "nowhere");
  EXPECT_NE(error_of([&] { parse_onnx(bytes_of(p), "m.onnx"); }).find("nowhere"), std::string::npos);
}

// A one-node graph x[1, 4] -> Pad -> y, with the pads as an int64 or double initializer.
onnx::ModelProto pad_proto(const std::vector<double>& pads, bool as_double) {
  onnx::ModelProto p;
  p.set_ir_version(8);
  auto* op = p.add_opset_import();
  op->set_domain("");
  op->set_version(13);
  auto* g = p.mutable_graph();
  auto* in = g->add_input();
  in->set_name("x");
  auto* shape = in->mutable_type()->mutable_tensor_type();
  shape->set_elem_type(onnx::TensorProto_DataType_FLOAT);
  shape->mutable_shape()->add_dim()->set_dim_value(1);
  shape->mutable_shape()->add_dim()->set_dim_value(4);
  g->add_output()->set_name("y");
  auto* init = g->add_initializer();
  init->set_name("pads");
  init->add_dims(static_cast<std::int64_t>(pads.size()));
  if (as_double) {
    init->set_data_type(onnx::TensorProto_DataType_DOUBLE);
    for (double v : pads) init->add_double_data(v);
  } else {
    init->set_data_type(onnx::TensorProto_DataType_INT64);
    for (double v : pads) init->add_int64_data(static_cast<std::int64_t>(v));
  }
  auto* node = g->add_node();
  node->set_op_type("Pad");
  node->set_name("pad");
  node->add_input("x");
  node->add_input("pads");
  node->add_output("y");
  return p;
}

// Regressions (fuzzing findings): pads outside int64 were cast with undefined behaviour, and
// two pads of 5e18 overflowed when added to the dimension.
TEST(OnnxImport, HugePadsAreRefusedWithoutOverflow) {
  EXPECT_EQ(error_of([&] { parse_onnx(bytes_of(pad_proto({0, 1, 0, 1}, false)), "p.onnx"); }), "");
  const std::string too_big = error_of([&] { parse_onnx(bytes_of(pad_proto({0, 1e19, 0, 0}, true)), "p.onnx"); });
  EXPECT_NE(too_big.find("pad"), std::string::npos) << too_big;
  const std::string sum = error_of([&] { parse_onnx(bytes_of(pad_proto({0, 5e18, 0, 5e18}, false)), "p.onnx"); });
  EXPECT_NE(sum.find("2^24"), std::string::npos) << sum;
  EXPECT_NE(error_of([&] { parse_onnx(bytes_of(pad_proto({0, 0.5, 0, 0}, true)), "p.onnx"); }).find("not an integer"),
            std::string::npos);
}

// Regression (fuzzing finding): a pooling window of millions over a padded map took minutes
// to import. An op needing more than 2^30 multiply-adds per sample is refused at once.
TEST(OnnxImport, AnOpTooCostlyForOneSampleIsRefused) {
  onnx::ModelProto p = pad_proto({0, 0, 0, 0}, false);
  auto* g = p.mutable_graph();
  auto* dims = g->mutable_input(0)->mutable_type()->mutable_tensor_type()->mutable_shape();
  dims->clear_dim();
  for (std::int64_t d : {1, 1, 8, 8}) dims->add_dim()->set_dim_value(d);
  auto* pads = g->mutable_initializer(0);
  pads->clear_dims();
  pads->add_dims(8);
  pads->clear_int64_data();
  for (std::int64_t v : {0, 0, 2000, 2000, 0, 0, 2000, 2000}) pads->add_int64_data(v);
  g->mutable_node(0)->set_output(0, "padded");
  auto* pool = g->add_node();
  pool->set_op_type("MaxPool");
  pool->set_name("pool");
  pool->add_input("padded");
  pool->add_output("pooled");
  auto* kernel = pool->add_attribute();
  kernel->set_name("kernel_shape");
  kernel->set_type(onnx::AttributeProto_AttributeType_INTS);
  kernel->add_ints(2000);
  kernel->add_ints(2000);
  auto* flat = g->add_node();
  flat->set_op_type("Flatten");
  flat->set_name("flat");
  flat->add_input("pooled");
  flat->add_output("y");
  const std::string msg = error_of([&] { parse_onnx(bytes_of(p), "pool.onnx"); });
  EXPECT_NE(msg.find("2^30 an op may take"), std::string::npos) << msg;
}

// Regression (fuzzing finding, heap overflow): a Conv whose bias has fewer values than output
// channels was read past its end by the float evaluation the importer runs.
TEST(OnnxImport, AConvBiasOfTheWrongSizeIsRefused) {
  onnx::ModelProto p = fixture_proto("models/tinycnn_digits.onnx");
  auto* g = p.mutable_graph();
  std::string bias;
  for (const auto& node : g->node())
    if (node.op_type() == "Conv" && node.input_size() >= 3) bias = node.input(2);
  ASSERT_FALSE(bias.empty()) << "the fixture has a Conv with a bias";
  bool cut = false;
  for (auto& init : *g->mutable_initializer()) {
    if (init.name() != bias) continue;
    init.clear_dims();
    init.add_dims(1);
    init.clear_raw_data();
    init.clear_float_data();
    init.set_data_type(onnx::TensorProto_DataType_FLOAT);
    init.add_float_data(0.5f);
    cut = true;
  }
  ASSERT_TRUE(cut);
  const std::string msg = error_of([&] { parse_onnx(bytes_of(p), "cnn.onnx"); });
  EXPECT_NE(msg.find("not one per output channel"), std::string::npos) << msg;
}

// Regressions (fuzzing findings): these escaped as std::invalid_argument / std::out_of_range
// instead of the importer's ModelFormatError.
TEST(OnnxImport, HostileInputShapesAndSoftmaxWithoutInputAreFormatErrors) {
  auto with_dims = [](const std::vector<std::int64_t>& dims) {
    onnx::ModelProto p = fixture_proto("models/mlp_breast_cancer.onnx");
    auto* shape = p.mutable_graph()->mutable_input(0)->mutable_type()->mutable_tensor_type()->mutable_shape();
    shape->clear_dim();
    for (auto d : dims) shape->add_dim()->set_dim_value(d);
    return p;
  };
  const std::string rank = error_of([&] { parse_onnx(bytes_of(with_dims(std::vector<std::int64_t>(10, 1))), "m.onnx"); });
  EXPECT_NE(rank.find("rank 10"), std::string::npos) << rank;
  const std::string huge = error_of([&] { parse_onnx(bytes_of(with_dims({1, std::int64_t{1} << 40})), "m.onnx"); });
  EXPECT_NE(huge.find("elements"), std::string::npos) << huge;
  onnx::ModelProto p = fixture_proto("models/mlp_iris.onnx");
  auto* g = p.mutable_graph();
  auto* softmax = g->mutable_node(g->node_size() - 1);
  ASSERT_EQ(softmax->op_type(), "Softmax");
  softmax->clear_input();
  const std::string sm = error_of([&] { parse_onnx(bytes_of(p), "m.onnx"); });
  EXPECT_NE(sm.find("no input"), std::string::npos) << sm;
}

TEST(LoadModel, DispatchesOnContent) {
  EXPECT_EQ(load_model(testing::fixture_path("models/tree_wine.json")).format, "sklearn");
  EXPECT_EQ(load_model(testing::fixture_path("models/xgb_iris.json")).format, "xgboost");
  EXPECT_EQ(load_model(testing::fixture_path("models/cnn_digits.onnx")).format, "onnx");
  EXPECT_THROW(load_model(testing::fixture_path("data/iris_test.csv")), ModelFormatError);
}

}  // namespace
}  // namespace veil::ml
