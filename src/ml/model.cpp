// Float evaluation of linear models and tree ensembles, links, metrics.
#include "veil/ml/model.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace veil::ml {

const char* link_name(Link link) {
  switch (link) {
    case Link::kIdentity: return "identity";
    case Link::kSigmoid: return "sigmoid";
    case Link::kSoftmax: return "softmax";
    case Link::kOvrSigmoid: return "ovr_sigmoid";
    case Link::kExp: return "exp";
  }
  return "identity";
}

Link parse_link(const std::string& name) {
  for (Link l : {Link::kIdentity, Link::kSigmoid, Link::kSoftmax, Link::kOvrSigmoid, Link::kExp})
    if (name == link_name(l)) return l;
  throw std::invalid_argument("unknown link '" + name + "' (expected identity, sigmoid, softmax, ovr_sigmoid or exp)");
}

const char* task_name(Task task) { return task == Task::kClassification ? "classification" : "regression"; }

Task parse_task(const std::string& name) {
  if (name == "classification") return Task::kClassification;
  if (name == "regression") return Task::kRegression;
  throw std::invalid_argument("unknown task '" + name + "' (expected classification or regression)");
}

std::size_t Model::n_outputs() const {
  if (const auto* l = std::get_if<LinearModel>(&body)) return l->coef.size();
  if (const auto* t = std::get_if<TreeEnsemble>(&body)) return t->n_outputs;
  return classes.empty() ? 1 : classes.size();  // networks and nearest neighbours
}

void apply_preprocessing(const Model& model, std::span<double> row) {
  for (const auto& t : model.preprocessing)
    for (std::size_t f = 0; f < row.size() && f < t.mul.size(); ++f) row[f] = row[f] * t.mul[f] + t.add[f];
}

namespace {

double sigmoid(double m) { return 1.0 / (1.0 + std::exp(-m)); }

// The leaf a row reaches in one tree.
std::size_t tree_leaf(const DecisionTree& tree, const TreeEnsemble& ens, std::span<const double> x) {
  std::size_t i = 0;
  for (std::size_t steps = 0; !tree.is_leaf(i); ++steps) {
    if (steps > tree.node_count()) throw std::logic_error("tree has a cycle");
    double v = x[static_cast<std::size_t>(tree.feature[i])];
    if (std::isnan(v)) {
      i = static_cast<std::size_t>(tree.default_left[i] ? tree.left[i] : tree.right[i]);
      continue;
    }
    if (ens.float32) v = static_cast<double>(static_cast<float>(v));
    const bool go_left = ens.comparison == Comparison::kLessEqual ? v <= tree.threshold[i] : v < tree.threshold[i];
    i = static_cast<std::size_t>(go_left ? tree.left[i] : tree.right[i]);
  }
  return i;
}

// Vote fractions of the k training points nearest to x (squared Euclidean distance; a tie
// goes to the point listed first, as a stable sort puts it).
std::vector<double> nearest_neighbor_votes(const NearestNeighbors& knn, std::size_t n_classes, std::span<const double> x) {
  std::vector<std::pair<double, std::size_t>> d(knn.train_x.size());
  for (std::size_t t = 0; t < d.size(); ++t) {
    double s = 0;
    for (std::size_t f = 0; f < x.size(); ++f) s += (x[f] - knn.train_x[t][f]) * (x[f] - knn.train_x[t][f]);
    d[t] = {s, t};
  }
  const std::size_t k = std::min(knn.k, d.size());
  std::partial_sort(d.begin(), d.begin() + static_cast<std::ptrdiff_t>(k), d.end());
  std::vector<double> votes(n_classes, 0.0);
  for (std::size_t i = 0; i < k; ++i) votes[static_cast<std::size_t>(knn.train_y[d[i].second])] += 1.0 / static_cast<double>(knn.k);
  return votes;
}

}  // namespace

Matrix model_margins(const Model& model, const Matrix& rows) {
  if (rows.cols != model.n_features)
    throw std::invalid_argument("model_margins: rows have " + std::to_string(rows.cols) + " columns, the model " +
                                std::to_string(model.n_features) + " features");
  const std::size_t k = model.n_outputs();
  Matrix out(rows.rows, k);
  std::vector<double> x(rows.cols);
  for (std::size_t r = 0; r < rows.rows; ++r) {
    std::copy(rows.row(r).begin(), rows.row(r).end(), x.begin());
    apply_preprocessing(model, x);
    if (const auto* lin = std::get_if<LinearModel>(&model.body)) {
      for (std::size_t j = 0; j < k; ++j) {
        double acc = lin->intercept[j];
        for (std::size_t f = 0; f < x.size(); ++f) acc += lin->coef[j][f] * x[f];
        out.at(r, j) = acc;
      }
    } else if (const auto* ens = std::get_if<TreeEnsemble>(&model.body)) {
      std::vector<double> m(k, 0.0);
      for (std::size_t t = 0; t < ens->trees.size(); ++t) {
        const auto& leaf = ens->trees[t].value[tree_leaf(ens->trees[t], *ens, x)];
        if (ens->tree_output.empty())
          for (std::size_t j = 0; j < k; ++j) m[j] += leaf[j];
        else
          m[static_cast<std::size_t>(ens->tree_output[t])] += leaf[0];
      }
      for (std::size_t j = 0; j < k; ++j) {
        if (ens->aggregation == Aggregation::kMean) m[j] /= static_cast<double>(ens->trees.size());
        if (!ens->base_score.empty()) m[j] += ens->base_score[j];
        out.at(r, j) = m[j];
      }
    } else if (const auto* knn = std::get_if<NearestNeighbors>(&model.body)) {
      const auto votes = nearest_neighbor_votes(*knn, k, x);
      for (std::size_t j = 0; j < k; ++j) out.at(r, j) = votes[j];
    } else {
      const auto& net = std::get<Network>(model.body);
      FloatTensor in{net.input_shape, x};
      if (static_cast<std::int64_t>(x.size()) != circuit::element_count(net.input_shape))
        throw std::invalid_argument("model_margins: network input " + circuit::shape_string(net.input_shape) +
                                    " does not hold " + std::to_string(x.size()) + " features");
      const auto values = evaluate_network(net, in);
      const auto& y = values.at(net.output_name);
      if (y.data.size() != k)
        throw std::invalid_argument("model_margins: network output has " + std::to_string(y.data.size()) +
                                    " values, expected " + std::to_string(k));
      for (std::size_t j = 0; j < k; ++j) out.at(r, j) = y.data[j];
    }
  }
  return out;
}

void finish_prediction(Task task, Link link, const std::vector<std::int64_t>& classes, std::span<const double> margins,
                       std::vector<double>& scores, std::int64_t& label) {
  const std::size_t k = margins.size();
  scores.assign(margins.begin(), margins.end());
  switch (link) {
    case Link::kIdentity: break;
    case Link::kExp:
      for (auto& s : scores) s = std::exp(s);
      break;
    case Link::kSigmoid:
      if (k == 1 && task == Task::kClassification) {
        const double p = sigmoid(margins[0]);
        scores = {1.0 - p, p};
      } else {
        for (auto& s : scores) s = sigmoid(s);
      }
      break;
    case Link::kSoftmax: {
      const double mx = *std::max_element(scores.begin(), scores.end());
      double sum = 0;
      for (auto& s : scores) sum += (s = std::exp(s - mx));
      for (auto& s : scores) s /= sum;
      break;
    }
    case Link::kOvrSigmoid: {
      double sum = 0;
      for (auto& s : scores) sum += (s = sigmoid(s));
      if (sum > 0)
        for (auto& s : scores) s /= sum;
      break;
    }
  }
  label = 0;
  if (task != Task::kClassification) return;
  std::size_t best = 0;
  if (scores.size() == 1) {
    best = scores[0] > 0 ? 1 : 0;  // a decision function (margin classifier)
  } else {
    for (std::size_t j = 1; j < scores.size(); ++j)
      if (scores[j] > scores[best]) best = j;
  }
  label = best < classes.size() ? classes[best] : static_cast<std::int64_t>(best);
}

Predictions predict_float(const Model& model, const Matrix& rows) {
  const Matrix margins = model_margins(model, rows);
  Link link = Link::kIdentity;
  if (const auto* l = std::get_if<LinearModel>(&model.body)) link = l->link;
  else if (const auto* t = std::get_if<TreeEnsemble>(&model.body)) link = t->link;
  else if (const auto* n = std::get_if<Network>(&model.body)) link = n->link;
  Predictions p;
  std::vector<double> scores;
  for (std::size_t r = 0; r < rows.rows; ++r) {
    std::int64_t label = 0;
    finish_prediction(model.task, link, model.classes, margins.row(r), scores, label);
    if (p.scores.cols == 0) p.scores = Matrix(rows.rows, scores.size());
    std::copy(scores.begin(), scores.end(), p.scores.row(r).begin());
    if (model.task == Task::kClassification) p.labels.push_back(label);
    else p.values.push_back(scores[0]);
  }
  return p;
}

double accuracy(const std::vector<std::int64_t>& labels, const std::vector<double>& targets) {
  if (labels.size() != targets.size() || labels.empty())
    throw std::invalid_argument("accuracy: " + std::to_string(labels.size()) + " labels for " +
                                std::to_string(targets.size()) + " targets");
  std::size_t ok = 0;
  for (std::size_t i = 0; i < labels.size(); ++i) ok += static_cast<double>(labels[i]) == targets[i];
  return static_cast<double>(ok) / static_cast<double>(labels.size());
}

double r2_score(const std::vector<double>& values, const std::vector<double>& targets) {
  if (values.size() != targets.size() || values.empty())
    throw std::invalid_argument("r2_score: " + std::to_string(values.size()) + " values for " +
                                std::to_string(targets.size()) + " targets");
  double mean = 0;
  for (double t : targets) mean += t;
  mean /= static_cast<double>(targets.size());
  double ss_res = 0, ss_tot = 0;
  for (std::size_t i = 0; i < values.size(); ++i) {
    ss_res += (targets[i] - values[i]) * (targets[i] - values[i]);
    ss_tot += (targets[i] - mean) * (targets[i] - mean);
  }
  return ss_tot > 0 ? 1.0 - ss_res / ss_tot : 0.0;
}

}  // namespace veil::ml
