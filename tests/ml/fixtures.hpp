// Test helpers: the fixtures of tests/fixtures (manifest.json, models, splits, expected float
// predictions), as tools/make_fixtures.py wrote them.
#pragma once

#include <fstream>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "veil/ml/data.hpp"
#include "veil/ml/importers.hpp"

namespace veil::ml::testing {

inline std::string fixture_path(const std::string& rel) { return std::string(VEIL_ML_FIXTURES) + "/" + rel; }

struct Fixture {
  std::string name, file, format, dataset, task;
  double float_metric = 0;  // accuracy or R^2 on the test split
};

inline void PrintTo(const Fixture& f, std::ostream* os) { *os << f.name; }

inline std::vector<Fixture> load_manifest() {
  std::ifstream in(fixture_path("manifest.json"));
  const auto j = nlohmann::json::parse(in);
  std::vector<Fixture> out;
  for (const auto& m : j["models"]) {
    Fixture f{m["name"], m["file"], m["format"], m["dataset"], m["task"], 0};
    f.float_metric = f.task == "classification" ? m["float_accuracy"].get<double>() : m["float_r2"].get<double>();
    out.push_back(f);
  }
  return out;
}

struct Split {
  Matrix features;
  std::vector<double> targets;
};

inline Split load_test_split(const std::string& dataset) {
  const Matrix all = load_csv(fixture_path("data/" + dataset + "_test.csv"));
  return {all.first_columns(all.cols - 1), all.column(all.cols - 1)};
}

inline Matrix load_calibration(const std::string& dataset) { return load_csv(fixture_path("data/" + dataset + "_calib.csv")); }

// prediction, score_0..score_{k-1}
inline Matrix load_expected(const std::string& name) { return load_csv(fixture_path("models/" + name + ".expected.csv")); }

inline Model load_fixture_model(const Fixture& f) { return load_model(fixture_path(f.file)); }

// Tolerance of the targets: points of accuracy, or R^2.
inline double target_tolerance(const Fixture& f) {
  if (f.task == "regression") return 0.02;
  // Quantization-aware networks: the circuit keeps their grids (half a point).
  if (f.name.rfind("qat", 0) == 0) return 0.005;
  const bool strict = f.format == "onnx" ? f.name.rfind("mlp", 0) == 0 : f.name.find("tree") == std::string::npos &&
                                                                             f.name.find("forest") == std::string::npos &&
                                                                             f.format != "xgboost";
  return strict ? 0.01 : 0.02;
}

}  // namespace veil::ml::testing
