// Veil's scikit-learn JSON (docs/formats/sklearn_model.md), written by tools/export_sklearn.py.
#include <cmath>
#include <fstream>
#include <set>

#include "json_util.hpp"
#include "veil/ml/data.hpp"
#include "veil/ml/importers.hpp"

namespace veil::ml {
namespace detail {

nlohmann::json parse_json_bytes(std::span<const std::uint8_t> bytes, const std::string& source) {
  try {
    return nlohmann::json::parse(bytes.begin(), bytes.end());
  } catch (const nlohmann::json::exception& e) {  // parse_error, and out_of_range for 1e999
    throw ModelFormatError(source + ": not valid JSON: " + e.what());
  }
}

nlohmann::json parse_json_file(const std::string& path) {
  std::vector<std::uint8_t> bytes;
  try {
    bytes = read_file_bytes(path, kMaxModelFileBytes);
  } catch (const DataError& e) {
    throw ModelFormatError(e.what());
  }
  return parse_json_bytes(bytes, path);
}

void validate_tree(const DecisionTree& t, std::size_t n_features, std::size_t values_per_leaf, const std::string& where) {
  const std::size_t n = t.feature.size();
  if (n == 0) throw ModelFormatError(where + ": no nodes");
  if (t.threshold.size() != n || t.left.size() != n || t.right.size() != n || t.value.size() != n ||
      t.default_left.size() != n)
    throw ModelFormatError(where + ": node arrays have different lengths (" + std::to_string(n) + " features, " +
                           std::to_string(t.threshold.size()) + " thresholds, " + std::to_string(t.left.size()) +
                           " left, " + std::to_string(t.right.size()) + " right, " + std::to_string(t.value.size()) +
                           " values)");
  std::vector<std::uint8_t> seen(n, 0);
  std::vector<std::size_t> stack{0};
  while (!stack.empty()) {
    const std::size_t i = stack.back();
    stack.pop_back();
    if (seen[i]) throw ModelFormatError(where + ": node " + std::to_string(i) + " is reached twice (not a tree)");
    seen[i] = 1;
    const std::string node = where + ", node " + std::to_string(i);
    if (t.left[i] < 0) {
      if (t.value[i].size() != values_per_leaf)
        throw ModelFormatError(node + ": leaf holds " + std::to_string(t.value[i].size()) + " values, expected " +
                               std::to_string(values_per_leaf));
      for (double v : t.value[i])
        if (!std::isfinite(v)) throw ModelFormatError(node + ": leaf value is not finite");
      continue;
    }
    if (t.right[i] < 0 || t.left[i] >= static_cast<std::int64_t>(n) || t.right[i] >= static_cast<std::int64_t>(n))
      throw ModelFormatError(node + ": children " + std::to_string(t.left[i]) + ", " + std::to_string(t.right[i]) +
                             " outside [0, " + std::to_string(n) + ")");
    if (t.feature[i] < 0 || t.feature[i] >= static_cast<std::int64_t>(n_features))
      throw ModelFormatError(node + ": feature " + std::to_string(t.feature[i]) + " outside [0, " +
                             std::to_string(n_features) + ")");
    if (!std::isfinite(t.threshold[i])) throw ModelFormatError(node + ": threshold is not finite");
    stack.push_back(static_cast<std::size_t>(t.left[i]));
    stack.push_back(static_cast<std::size_t>(t.right[i]));
  }
}

}  // namespace detail

namespace {

constexpr std::size_t kMaxFeatures = std::size_t{1} << 20;
// Far more training points than a circuit can afford (compile_model states its own limit).
constexpr std::size_t kMaxNeighborPoints = std::size_t{1} << 20;

std::vector<std::int64_t> read_classes(const detail::JsonReader& r, const nlohmann::json& m, const std::string& path) {
  auto classes = r.integers(r.field(m, "classes", path), path + ".classes");
  if (classes.size() < 2) r.fail(path + ".classes", "a classifier needs at least 2 classes");
  std::set<std::int64_t> unique(classes.begin(), classes.end());
  if (unique.size() != classes.size()) r.fail(path + ".classes", "class labels repeat");
  return classes;
}

// KNeighborsClassifier: the training points (after the preprocessing), their class indices,
// k. Only what Veil lowers is accepted: uniform weights, the Euclidean metric.
NearestNeighbors read_nearest_neighbors(const detail::JsonReader& r, const nlohmann::json& m, const Model& model) {
  if (model.task != Task::kClassification) r.fail("$.model.task", "k-nearest neighbours: only classification is supported");
  const std::string weights = r.has(m, "weights") ? r.str(m["weights"], "$.model.weights") : "uniform";
  if (weights != "uniform")
    r.fail("$.model.weights", "'" + weights + "' is not supported (uniform only: every neighbour's vote counts the same)");
  const std::string metric = r.has(m, "metric") ? r.str(m["metric"], "$.model.metric") : "euclidean";
  if (metric != "euclidean") r.fail("$.model.metric", "'" + metric + "' is not supported (euclidean only)");
  NearestNeighbors knn;
  const auto& xs = r.array(r.field(m, "train_x", "$.model"), "$.model.train_x");
  if (xs.empty()) r.fail("$.model.train_x", "no training points");
  if (xs.size() > kMaxNeighborPoints)
    r.fail("$.model.train_x", std::to_string(xs.size()) + " training points, at most " + std::to_string(kMaxNeighborPoints));
  for (std::size_t t = 0; t < xs.size(); ++t) {
    const std::string path = "$.model.train_x[" + std::to_string(t) + "]";
    knn.train_x.push_back(r.doubles(xs[t], path));
    if (knn.train_x.back().size() != model.n_features)
      r.fail(path, std::to_string(knn.train_x.back().size()) + " values for " + std::to_string(model.n_features) + " features");
    for (double v : knn.train_x.back())
      if (!std::isfinite(v)) r.fail(path, "a value is not finite");
  }
  knn.train_y = r.integers(r.field(m, "train_y", "$.model"), "$.model.train_y");
  if (knn.train_y.size() != knn.train_x.size())
    r.fail("$.model.train_y", std::to_string(knn.train_y.size()) + " labels for " + std::to_string(knn.train_x.size()) +
                                  " training points");
  for (std::size_t t = 0; t < knn.train_y.size(); ++t)
    if (knn.train_y[t] < 0 || knn.train_y[t] >= static_cast<std::int64_t>(model.classes.size()))
      r.fail("$.model.train_y[" + std::to_string(t) + "]", "class index " + std::to_string(knn.train_y[t]) +
                                                               " outside [0, " + std::to_string(model.classes.size()) + ")");
  const std::int64_t k = r.integer(r.field(m, "n_neighbors", "$.model"), "$.model.n_neighbors");
  if (k < 1 || static_cast<std::size_t>(k) > knn.train_x.size())
    r.fail("$.model.n_neighbors", std::to_string(k) + " outside [1, " + std::to_string(knn.train_x.size()) + "] (the training points)");
  knn.k = static_cast<std::size_t>(k);
  return knn;
}

}  // namespace

Model parse_sklearn_json(const nlohmann::json& doc, const std::string& source) {
  detail::JsonReader r{source};
  if (r.str(r.field(doc, "format", "$"), "$.format") != "veil-sklearn")
    r.fail("$.format", "expected \"veil-sklearn\"");
  const std::string version = r.str(r.field(doc, "version", "$"), "$.version");
  if (version.rfind("1.", 0) != 0)
    r.fail("$.version", "format version " + version + " is not supported (this reader reads 1.x)");
  Model model;
  model.format = "sklearn";
  const std::int64_t nf = r.integer(r.field(doc, "n_features", "$"), "$.n_features");
  if (nf < 1 || static_cast<std::size_t>(nf) > kMaxFeatures) r.fail("$.n_features", "must be in [1, 2^20]");
  model.n_features = static_cast<std::size_t>(nf);

  if (r.has(doc, "preprocessing")) {
    const auto& pre = r.array(doc["preprocessing"], "$.preprocessing");
    for (std::size_t i = 0; i < pre.size(); ++i) {
      const std::string path = "$.preprocessing[" + std::to_string(i) + "]";
      const std::string type = r.str(r.field(pre[i], "type", path), path + ".type");
      FeatureTransform t;
      t.kind = type;
      if (type == "standard_scaler") {
        const auto mean = r.doubles(r.field(pre[i], "mean", path), path + ".mean");
        const auto scale = r.doubles(r.field(pre[i], "scale", path), path + ".scale");
        if (mean.size() != model.n_features || scale.size() != model.n_features)
          r.fail(path, "mean and scale need " + std::to_string(model.n_features) + " entries");
        for (std::size_t f = 0; f < scale.size(); ++f) {
          if (scale[f] == 0) r.fail(path + ".scale[" + std::to_string(f) + "]", "zero scale");
          t.mul.push_back(1.0 / scale[f]);
          t.add.push_back(-mean[f] / scale[f]);
        }
      } else if (type == "minmax_scaler") {
        t.mul = r.doubles(r.field(pre[i], "scale", path), path + ".scale");
        t.add = r.doubles(r.field(pre[i], "min", path), path + ".min");
        if (t.mul.size() != model.n_features || t.add.size() != model.n_features)
          r.fail(path, "scale and min need " + std::to_string(model.n_features) + " entries");
      } else {
        r.fail(path + ".type", "unsupported preprocessing '" + type + "' (supported: standard_scaler, minmax_scaler)");
      }
      model.preprocessing.push_back(std::move(t));
    }
  }

  const auto& m = r.field(doc, "model", "$");
  const std::string type = r.str(r.field(m, "type", "$.model"), "$.model.type");
  model.estimator = r.has(m, "estimator") ? r.str(m["estimator"], "$.model.estimator") : type;
  try {
    model.task = parse_task(r.str(r.field(m, "task", "$.model"), "$.model.task"));
  } catch (const std::invalid_argument& e) {
    r.fail("$.model.task", e.what());
  }
  if (model.task == Task::kClassification) model.classes = read_classes(r, m, "$.model");

  if (type == "linear") {
    LinearModel lin;
    const auto& coef = r.array(r.field(m, "coef", "$.model"), "$.model.coef");
    if (coef.empty()) r.fail("$.model.coef", "no rows");
    for (std::size_t j = 0; j < coef.size(); ++j) {
      lin.coef.push_back(r.doubles(coef[j], "$.model.coef[" + std::to_string(j) + "]"));
      if (lin.coef.back().size() != model.n_features)
        r.fail("$.model.coef[" + std::to_string(j) + "]",
               std::to_string(lin.coef.back().size()) + " coefficients for " + std::to_string(model.n_features) + " features");
    }
    lin.intercept = r.doubles(r.field(m, "intercept", "$.model"), "$.model.intercept");
    if (lin.intercept.size() != lin.coef.size())
      r.fail("$.model.intercept", std::to_string(lin.intercept.size()) + " intercepts for " +
                                      std::to_string(lin.coef.size()) + " coefficient rows");
    try {
      lin.link = parse_link(r.has(m, "link") ? r.str(m["link"], "$.model.link") : "identity");
    } catch (const std::invalid_argument& e) {
      r.fail("$.model.link", e.what());
    }
    if (model.task == Task::kClassification) {
      const std::size_t k = model.classes.size();
      const bool binary_ok = k == 2 && lin.coef.size() == 1;
      if (!binary_ok && lin.coef.size() != k)
        r.fail("$.model.coef", std::to_string(lin.coef.size()) + " rows for " + std::to_string(k) + " classes");
    }  // a regressor has one row of coefficients per target (scikit-learn's multi-output fit)
    model.body = std::move(lin);
  } else if (type == "tree_ensemble") {
    TreeEnsemble ens;
    ens.float32 = true;  // scikit-learn casts inputs to float32 before comparing
    const std::string cmp = r.has(m, "comparison") ? r.str(m["comparison"], "$.model.comparison") : "less_equal";
    if (cmp == "less_equal") ens.comparison = Comparison::kLessEqual;
    else if (cmp == "less") ens.comparison = Comparison::kLess;
    else r.fail("$.model.comparison", "'" + cmp + "' (expected less_equal or less)");
    const std::string agg = r.has(m, "aggregation") ? r.str(m["aggregation"], "$.model.aggregation") : "mean";
    if (agg == "mean") ens.aggregation = Aggregation::kMean;
    else if (agg == "sum") ens.aggregation = Aggregation::kSum;
    else r.fail("$.model.aggregation", "'" + agg + "' (expected mean or sum)");
    const std::int64_t n_out = r.integer(r.field(m, "n_outputs", "$.model"), "$.model.n_outputs");
    const std::int64_t expected_out = model.task == Task::kClassification ? static_cast<std::int64_t>(model.classes.size()) : 1;
    if (n_out != expected_out)
      r.fail("$.model.n_outputs", std::to_string(n_out) + ", expected " + std::to_string(expected_out));
    ens.n_outputs = static_cast<std::size_t>(n_out);
    ens.link = Link::kIdentity;
    const auto& trees = r.array(r.field(m, "trees", "$.model"), "$.model.trees");
    if (trees.empty()) r.fail("$.model.trees", "no trees");
    for (std::size_t t = 0; t < trees.size(); ++t) {
      const std::string path = "$.model.trees[" + std::to_string(t) + "]";
      DecisionTree tree;
      tree.feature = r.integers(r.field(trees[t], "feature", path), path + ".feature");
      tree.left = r.integers(r.field(trees[t], "left", path), path + ".left");
      tree.right = r.integers(r.field(trees[t], "right", path), path + ".right");
      tree.threshold = r.doubles(r.field(trees[t], "threshold", path), path + ".threshold");
      const auto& values = r.array(r.field(trees[t], "value", path), path + ".value");
      for (std::size_t i = 0; i < values.size(); ++i)
        tree.value.push_back(r.doubles(values[i], path + ".value[" + std::to_string(i) + "]"));
      tree.default_left.assign(tree.feature.size(), 0);
      detail::validate_tree(tree, model.n_features, ens.n_outputs, source + ": " + path);
      ens.trees.push_back(std::move(tree));
    }
    model.body = std::move(ens);
  } else if (type == "knn") {
    model.body = read_nearest_neighbors(r, m, model);
  } else {
    r.fail("$.model.type", "unsupported model type '" + type + "' (supported: linear, tree_ensemble, knn)");
  }
  return model;
}

Model load_sklearn_json(const std::string& path) { return parse_sklearn_json(detail::parse_json_file(path), path); }

namespace {

Model parse_json_model(const nlohmann::json& doc, const std::string& source) {
  if (doc.is_object() && doc.contains("format")) return parse_sklearn_json(doc, source);
  if (doc.is_object() && doc.contains("learner")) return parse_xgboost_json(doc, source);
  throw ModelFormatError(source + ": neither a Veil scikit-learn JSON (no \"format\") nor an XGBoost JSON model (no \"learner\")");
}

}  // namespace

Model load_model(const std::string& path) {
  if (path.size() >= 5 && path.compare(path.size() - 5, 5, ".onnx") == 0) return load_onnx(path);
  return parse_json_model(detail::parse_json_file(path), path);
}

Model parse_model(std::span<const std::uint8_t> bytes, const std::string& source) {
  if (bytes.size() > kMaxModelFileBytes)
    throw ModelFormatError(source + ": " + std::to_string(bytes.size()) + " bytes, more than a model may have (" +
                           std::to_string(kMaxModelFileBytes) + ")");
  // JSON starts with '{' after optional white space; a serialized ONNX ModelProto starts
  // with a protobuf field tag, never one of these bytes.
  std::size_t i = 0;
  while (i < bytes.size() && (bytes[i] == ' ' || bytes[i] == '\t' || bytes[i] == '\n' || bytes[i] == '\r')) ++i;
  if (i < bytes.size() && bytes[i] == '{') return parse_json_model(detail::parse_json_bytes(bytes, source), source);
  return parse_onnx(bytes, source);
}

}  // namespace veil::ml
