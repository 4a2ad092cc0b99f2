// k-nearest neighbours (src/ml/lower_knn.cpp): the circuit against an independent clear
// computation of the quantized model, the range hints against every value a run takes, the
// importer's refusals. FHE = clear on the fixture runs with the other fixtures
// (fhe_accuracy_test.cpp, slow).
#include <algorithm>
#include <random>

#include <gtest/gtest.h>

#include "fixtures.hpp"
#include "veil/circuit/analysis.hpp"
#include "veil/circuit/clear_executor.hpp"
#include "veil/ml/importers.hpp"
#include "veil/ml/processing.hpp"
#include "veil/ml/quantize.hpp"

namespace veil::ml {
namespace {

Model random_knn(std::mt19937_64& rng, std::size_t n, std::size_t features, std::size_t classes, std::size_t k,
                 bool scaled) {
  Model m;
  m.format = "sklearn";
  m.estimator = "KNeighborsClassifier";
  m.task = Task::kClassification;
  m.n_features = features;
  for (std::size_t c = 0; c < classes; ++c) m.classes.push_back(static_cast<std::int64_t>(10 + c));
  if (scaled) {
    FeatureTransform t{"standard_scaler", {}, {}};
    for (std::size_t f = 0; f < features; ++f) t.mul.push_back(0.5 + static_cast<double>(f)), t.add.push_back(-1.0);
    m.preprocessing.push_back(t);
  }
  NearestNeighbors knn;
  std::normal_distribution<double> g(0.0, 1.0);
  for (std::size_t t = 0; t < n; ++t) {
    std::vector<double> x(features);
    for (auto& v : x) v = g(rng);
    knn.train_x.push_back(x);
    knn.train_y.push_back(static_cast<std::int64_t>(t % classes));
  }
  knn.k = k;
  m.body = knn;
  return m;
}

Matrix random_rows(std::mt19937_64& rng, const Model& m, std::size_t rows) {
  // Raw rows whose preprocessed values spread like the training points (and beyond).
  std::normal_distribution<double> g(0.0, 1.3);
  Matrix out(rows, m.n_features);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t f = 0; f < m.n_features; ++f) {
      double x = g(rng);
      for (auto t = m.preprocessing.rbegin(); t != m.preprocessing.rend(); ++t) x = (x - t->add[f]) / t->mul[f];
      out.at(r, f) = x;
    }
  return out;
}

std::uint32_t node_named(const circuit::Circuit& c, const std::string& name) {
  for (std::uint32_t id = 0; id < c.nodes.size(); ++id)
    if (c.nodes[id].name == name) return id;
  ADD_FAILURE() << "no node " << name;
  return 0;
}

// Per row: the circuit's distances are the squared code distances to the training points
// (quantized by the client's quantizers), and its votes are those of the k smallest levels.
void expect_circuit_matches_reference(const Model& m, const QuantizedModel& q, const Matrix& rows) {
  const auto& knn = std::get<NearestNeighbors>(m.body);
  const std::size_t n = knn.train_x.size(), nf = m.n_features, classes = m.classes.size();
  std::vector<double> a(nf, 1.0), c(nf, 0.0);
  for (const auto& t : m.preprocessing)
    for (std::size_t f = 0; f < nf; ++f) a[f] *= t.mul[f], c[f] = c[f] * t.mul[f] + t.add[f];
  std::vector<std::vector<std::int64_t>> u(n, std::vector<std::int64_t>(nf));
  for (std::size_t t = 0; t < n; ++t)
    for (std::size_t f = 0; f < nf; ++f) u[t][f] = q.processing.input_quantizers[f].quantize((knn.train_x[t][f] - c[f]) / a[f]);
  const circuit::CircuitAnalysis analysis = circuit::analyze(q.circuit);
  const std::uint32_t dist = node_named(q.circuit, "knn_distances"), levels = node_named(q.circuit, "knn_levels");
  for (std::size_t r = 0; r < rows.rows; ++r) {
    const circuit::Tensor in = quantize_input(q.processing, rows.row(r));
    const auto values = circuit::run_clear_all_nodes(q.circuit, {in});
    // Every value within the range the analysis assumes (the hints are sound).
    for (std::uint32_t id = 0; id < q.circuit.nodes.size(); ++id)
      for (std::int64_t v : values[id].data) {
        ASSERT_GE(v, analysis.ranges[id].lo) << q.circuit.describe_node(id) << " row " << r;
        ASSERT_LE(v, analysis.ranges[id].hi) << q.circuit.describe_node(id) << " row " << r;
      }
    for (std::size_t t = 0; t < n; ++t) {
      std::int64_t d = 0;
      for (std::size_t f = 0; f < nf; ++f) d += (in.data[f] - u[t][f]) * (in.data[f] - u[t][f]);
      ASSERT_EQ(values[dist].data[t], d) << "row " << r << " point " << t;
      ASSERT_EQ(values[levels].data[t] % static_cast<std::int64_t>(classes), knn.train_y[t]);
    }
    // Levels grow with the distance.
    for (std::size_t t = 0; t < n; ++t)
      for (std::size_t s = 0; s < n; ++s)
        if (values[dist].data[t] < values[dist].data[s])
          ASSERT_LE(values[levels].data[t] / static_cast<std::int64_t>(classes),
                    values[levels].data[s] / static_cast<std::int64_t>(classes));
    std::vector<std::int64_t> v = values[levels].data;
    std::sort(v.begin(), v.end());
    std::vector<std::int64_t> votes(classes - 1, 0);
    for (std::size_t i = 0; i < knn.k; ++i)
      if (v[i] % static_cast<std::int64_t>(classes) < static_cast<std::int64_t>(classes) - 1) ++votes[static_cast<std::size_t>(v[i] % static_cast<std::int64_t>(classes))];
    ASSERT_EQ(values[q.circuit.outputs[0]].data, votes) << "row " << r;
  }
}

TEST(LowerKnn, CircuitEqualsTheQuantizedReferenceForManySizes) {
  std::mt19937_64 rng(11);
  for (std::size_t n : {1, 2, 3, 5, 8, 13, 31}) {
    for (std::size_t k : {1, 2, 3, 4, 5, 7}) {
      if (k > n) continue;
      for (std::size_t classes : {2, 3, 5}) {
        const Model m = random_knn(rng, n, 3, classes, k, (n + k) % 2 == 0);
        const Matrix calib = random_rows(rng, m, 40);
        const QuantizedModel q = compile_model(m, calib, {});
        SCOPED_TRACE("n " + std::to_string(n) + " k " + std::to_string(k) + " classes " + std::to_string(classes));
        expect_circuit_matches_reference(m, q, random_rows(rng, m, 12));
        if (::testing::Test::HasFatalFailure()) return;
      }
    }
  }
}

TEST(LowerKnn, PbsCountIsPointsFeaturesExchangesAndVotes) {
  std::mt19937_64 rng(5);
  const Model m = random_knn(rng, 48, 4, 3, 3, true);
  const QuantizedModel q = compile_model(m, random_rows(rng, m, 50), {});
  const circuit::CircuitAnalysis a = circuit::analyze(q.circuit);
  // 4 squares, 48 levels, 12 blocks of 4 sorted by 6 exchanges, 11 merges of 4 + 4
  // exchanges, 3 winners x 2 classes voted.
  EXPECT_EQ(a.statistics.total_pbs, 4 + 48 + 12 * 6 + 11 * 8 + 3 * 2);
  EXPECT_LE(a.statistics.max_lookup_precision, 8u);
}

TEST(LowerKnn, InputBitsFollowTheDistanceWidth) {
  std::mt19937_64 rng(3);
  const Model wide = random_knn(rng, 10, 30, 2, 3, false);  // 30 features: 2-bit inputs at most
  QuantizationOptions o;
  o.knn_exact_distances = true;
  const QuantizedModel q = compile_model(wide, random_rows(rng, wide, 30), o);
  EXPECT_LE(q.knn_input_bits, 2u);
  o.knn_input_bits = 4;
  try {
    compile_model(wide, random_rows(rng, wide, 30), o);
    FAIL() << "4-bit inputs over 30 features accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("more than a lookup reads"), std::string::npos) << e.what();
  }
}

TEST(LowerKnn, RoundedDistancesAreReadAtTheirBitsAndStillRankThePoints) {
  std::mt19937_64 rng(9);
  const Model m = random_knn(rng, 20, 6, 3, 3, true);
  QuantizationOptions o;
  o.knn_input_bits = 4;  // distances up to 6 * 15^2: rounded to 7 bits
  const QuantizedModel q = compile_model(m, random_rows(rng, m, 40), o);
  const circuit::CircuitAnalysis a = circuit::analyze(q.circuit);
  EXPECT_EQ(a.statistics.max_lookup_precision, 7u);
  EXPECT_EQ(a.statistics.extraction_pbs, 0);  // approximate rounding: no PBS
  expect_circuit_matches_reference(m, q, random_rows(rng, m, 20));
}

TEST(LowerKnn, FloatVotesBreakDistanceTiesByTrainingOrder) {
  Model m;
  m.task = Task::kClassification;
  m.n_features = 1;
  m.classes = {0, 1};
  NearestNeighbors knn;
  knn.train_x = {{1.0}, {-1.0}, {5.0}};
  knn.train_y = {1, 0, 0};
  knn.k = 1;
  m.body = knn;
  Matrix row(1, 1);
  row.at(0, 0) = 0.0;  // equidistant from the first two points
  const Predictions p = predict_float(m, row);
  EXPECT_EQ(p.labels[0], 1);
  EXPECT_DOUBLE_EQ(p.scores.at(0, 1), 1.0);
}

std::string knn_json(const std::string& extra) {
  return R"({"format": "veil-sklearn", "version": "1.0", "n_features": 2, "model": {"type": "knn",
    "task": "classification", "classes": [0, 1], "n_neighbors": 1, "train_x": [[0, 1], [1, 0]],
    "train_y": [0, 1])" +
         extra + "}}";
}

void expect_refused(const std::string& text, const std::string& what) {
  try {
    parse_sklearn_json(nlohmann::json::parse(text), "m.json");
    FAIL() << "accepted: " << text;
  } catch (const ModelFormatError& e) {
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
}

TEST(LowerKnn, ImporterRefusesWhatTheLoweringDoesNotCompute) {
  EXPECT_NO_THROW(parse_sklearn_json(nlohmann::json::parse(knn_json("")), "m.json"));
  expect_refused(knn_json(R"(, "weights": "distance")"), "'distance' is not supported (uniform only");
  expect_refused(knn_json(R"(, "metric": "manhattan")"), "'manhattan' is not supported (euclidean only)");
  std::string bad_label = knn_json("");
  bad_label.replace(bad_label.find("[0, 1]}"), 6, "[0, 2]");
  expect_refused(bad_label, "class index 2 outside [0, 2)");
  std::string bad_k = knn_json("");
  bad_k.replace(bad_k.find("\"n_neighbors\": 1"), 16, "\"n_neighbors\": 3");
  expect_refused(bad_k, "3 outside [1, 2]");
}

}  // namespace
}  // namespace veil::ml
