// A trained model in float form, as the importers produce it (importers.hpp): a linear
// model, a tree ensemble or a network graph, with the preprocessing, task and class labels
// around it. compile_model (quantize.hpp) turns a Model into a circuit; predict_float runs
// it in double precision (the reference the quantized predictions are compared with, and
// what network calibration observes).
//
// Thread safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "veil/circuit/tensor.hpp"
#include "veil/ml/data.hpp"

namespace veil::ml {

enum class Task { kClassification, kRegression };

// The function from the model's raw output (margin) to its prediction scores.
//   identity     scores = margins (regression values, LinearSVC decision functions,
//                averaged tree probabilities)
//   sigmoid      one margin m: scores = [1 - s(m), s(m)]
//   softmax      scores = softmax(margins)
//   ovr_sigmoid  scikit-learn one-vs-rest: s(m_k) normalised to sum 1
//   exp          scores = exp(margins) (XGBoost's log-link objectives)
enum class Link { kIdentity, kSigmoid, kSoftmax, kOvrSigmoid, kExp };
const char* link_name(Link link);
// Throws std::invalid_argument naming the unknown link.
Link parse_link(const std::string& name);

const char* task_name(Task task);
Task parse_task(const std::string& name);

// x' = x * mul + add, per feature: a StandardScaler (mul = 1/scale, add = -mean/scale) or a
// MinMaxScaler (mul = scale, add = min) from a scikit-learn pipeline.
struct FeatureTransform {
  std::string kind;  // "standard_scaler" or "minmax_scaler"
  std::vector<double> mul;
  std::vector<double> add;
};

// margins[k] = sum_f coef[k][f] * x'[f] + intercept[k].
struct LinearModel {
  std::vector<std::vector<double>> coef;  // [outputs][features]
  std::vector<double> intercept;          // [outputs]
  Link link = Link::kIdentity;
};

// k-nearest-neighbour classification (scikit-learn's KNeighborsClassifier, uniform weights,
// Euclidean metric): the k training points nearest to x' (the preprocessed row) vote, and
// margins[c] = (votes for class c) / k. Ties in distance go to the training point listed
// first. train_x holds the training points as the estimator saw them (after the
// preprocessing); train_y their class indices (into Model::classes).
struct NearestNeighbors {
  std::vector<std::vector<double>> train_x;  // [points][features]
  std::vector<std::int64_t> train_y;         // [points], each in [0, classes)
  std::size_t k = 5;
};

// One binary tree in array form (scikit-learn's layout). Node i is internal when
// left[i] >= 0: it sends x to left[i] when x[feature[i]] <= threshold[i] (kLessEqual) or
// < threshold[i] (kLess), to right[i] otherwise, and a missing (NaN) value to left[i] when
// default_left[i]. A leaf holds value[i] (one entry per output of the tree).
struct DecisionTree {
  std::vector<std::int64_t> feature;
  std::vector<double> threshold;
  std::vector<std::int64_t> left;
  std::vector<std::int64_t> right;
  std::vector<std::uint8_t> default_left;
  std::vector<std::vector<double>> value;
  std::size_t node_count() const { return feature.size(); }
  bool is_leaf(std::size_t i) const { return left[i] < 0; }
};

enum class Comparison { kLessEqual, kLess };
enum class Aggregation { kMean, kSum };

// margins = base_score + aggregate over trees. A tree either holds n_outputs values per leaf
// (tree_output empty: scikit-learn), or one value added to margin tree_output[t] (XGBoost:
// one tree per class and round).
struct TreeEnsemble {
  std::vector<DecisionTree> trees;
  Comparison comparison = Comparison::kLessEqual;
  bool float32 = false;  // compare as float32 (XGBoost): float(x) < float(threshold)
  Aggregation aggregation = Aggregation::kMean;
  std::size_t n_outputs = 1;
  std::vector<std::int64_t> tree_output;  // empty, or one output index per tree
  std::vector<double> base_score;         // margin units, n_outputs entries (or empty: 0)
  Link link = Link::kIdentity;
  // Values each tree leaf holds (n_outputs, or 1 when tree_output is set).
  std::size_t values_per_leaf() const { return tree_output.empty() ? n_outputs : 1; }
};

// The element type a tensor had in its file (values are held as doubles either way). ONNX's
// QuantizeLinear saturates to its zero point's type: [0, 255] for uint8, [-128, 127] for int8.
enum class ElementType : std::uint8_t { kFloat, kInt8, kUint8, kInt32, kInt64 };

// A dense float tensor (network weights and intermediate values).
struct FloatTensor {
  circuit::Shape shape;
  std::vector<double> data;
  ElementType type = ElementType::kFloat;
};

struct Attribute {
  enum class Type { kInt, kFloat, kInts, kFloats, kString, kTensor };
  Type type = Type::kInt;
  std::int64_t i = 0;
  double f = 0;
  std::vector<std::int64_t> ints;
  std::vector<double> floats;
  std::string s;
  FloatTensor t;
};

struct GraphNode {
  std::string op_type;
  std::string name;
  std::vector<std::string> inputs;   // "" for an omitted optional input
  std::vector<std::string> outputs;
  std::map<std::string, Attribute> attributes;
};

// A feed-forward network graph with one input and one output, nodes in topological order,
// weights as initializers (Constant nodes are folded into them at import). The batch
// dimension of input_shape is 1: the circuit runs one sample at a time.
struct Network {
  std::string input_name;
  circuit::Shape input_shape;
  std::string output_name;
  std::vector<GraphNode> nodes;
  std::map<std::string, FloatTensor> initializers;
  // Initializers that a DequantizeLinear of constants produced (quantization-aware training:
  // fake-quantized weights), by name: each element's quantization step, of which the
  // initializer's element is an integer multiple. The lowering keeps such weights on their
  // grid instead of quantizing them again.
  std::map<std::string, FloatTensor> weight_steps;
  std::int64_t opset = 0;
  Link link = Link::kIdentity;  // a trailing Softmax becomes the client's softmax
};

struct Model {
  std::string format;     // "sklearn", "xgboost", "onnx"
  std::string estimator;  // e.g. "LogisticRegression", "XGBClassifier", "onnx"
  Task task = Task::kClassification;
  std::size_t n_features = 0;
  std::vector<std::int64_t> classes;  // classification only
  std::vector<FeatureTransform> preprocessing;
  std::variant<LinearModel, TreeEnsemble, Network, NearestNeighbors> body;

  std::size_t n_outputs() const;  // margins the body produces
};

// Predictions of a model on rows: one entry per row.
//   classification: labels (class labels), scores [rows x k] (probabilities, or the
//                   decision function of a margin classifier without probabilities)
//   regression:     values, scores = the values as one column
struct Predictions {
  std::vector<std::int64_t> labels;
  std::vector<double> values;
  Matrix scores;
};

// Applies the preprocessing to one row (in place).
void apply_preprocessing(const Model& model, std::span<double> row);

// Raw margins in double precision: [rows x n_outputs()]. Throws std::invalid_argument when
// the column count is not n_features.
Matrix model_margins(const Model& model, const Matrix& rows);
// The float model's predictions (margins through the link, argmax for labels).
Predictions predict_float(const Model& model, const Matrix& rows);

// Applies a link to one row of margins and derives the label; shared by predict_float and
// the client's post-processing.
void finish_prediction(Task task, Link link, const std::vector<std::int64_t>& classes, std::span<const double> margins,
                       std::vector<double>& scores, std::int64_t& label);

// Evaluates the network on one input in double precision and returns every named tensor
// (initializers included), for calibration. Throws std::invalid_argument on a shape error.
std::map<std::string, FloatTensor> evaluate_network(const Network& network, const FloatTensor& input);

// Accuracy of labels against targets (fraction equal) and the coefficient of determination.
double accuracy(const std::vector<std::int64_t>& labels, const std::vector<double>& targets);
double r2_score(const std::vector<double>& values, const std::vector<double>& targets);

}  // namespace veil::ml
