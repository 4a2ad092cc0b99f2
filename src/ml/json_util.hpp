// Checked access to untrusted JSON documents: every failure throws ModelFormatError naming
// the source and the field's path.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "veil/ml/importers.hpp"

namespace veil::ml::detail {

struct JsonReader {
  std::string source;

  [[noreturn]] void fail(const std::string& path, const std::string& what) const {
    throw ModelFormatError(source + ": " + path + ": " + what);
  }
  const nlohmann::json& field(const nlohmann::json& obj, const std::string& key, const std::string& path) const {
    if (!obj.is_object()) fail(path, "expected an object");
    auto it = obj.find(key);
    if (it == obj.end()) fail(path, "missing field '" + key + "'");
    return *it;
  }
  bool has(const nlohmann::json& obj, const std::string& key) const { return obj.is_object() && obj.contains(key); }
  std::string str(const nlohmann::json& v, const std::string& path) const {
    if (!v.is_string()) fail(path, "expected a string");
    return v.get<std::string>();
  }
  // A number, or a string holding one (XGBoost writes numbers as strings).
  double num(const nlohmann::json& v, const std::string& path) const {
    if (v.is_number()) return v.get<double>();
    if (v.is_string()) {
      const std::string s = v.get<std::string>();
      try {
        std::size_t used = 0;
        const double d = std::stod(s, &used);
        if (used == s.size()) return d;
      } catch (...) {
      }
      fail(path, "'" + s.substr(0, 40) + "' is not a number");
    }
    fail(path, "expected a number");
  }
  std::int64_t integer(const nlohmann::json& v, const std::string& path) const {
    const double d = num(v, path);
    if (!(std::fabs(d) < 9.0e15) || d != std::floor(d)) fail(path, "expected an integer");
    return static_cast<std::int64_t>(d);
  }
  const nlohmann::json& array(const nlohmann::json& v, const std::string& path) const {
    if (!v.is_array()) fail(path, "expected an array");
    return v;
  }
  std::vector<double> doubles(const nlohmann::json& v, const std::string& path) const {
    array(v, path);
    std::vector<double> out;
    out.reserve(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) {
      const double d = num(v[i], path + "[" + std::to_string(i) + "]");
      if (!std::isfinite(d)) fail(path + "[" + std::to_string(i) + "]", "not a finite number");
      out.push_back(d);
    }
    return out;
  }
  std::vector<std::int64_t> integers(const nlohmann::json& v, const std::string& path) const {
    array(v, path);
    std::vector<std::int64_t> out;
    out.reserve(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) out.push_back(integer(v[i], path + "[" + std::to_string(i) + "]"));
    return out;
  }
};

nlohmann::json parse_json_file(const std::string& path);
// The same for bytes in memory; `source` names them in errors.
nlohmann::json parse_json_bytes(std::span<const std::uint8_t> bytes, const std::string& source);

// Checks a tree's arrays (sizes, child indices, reachability without cycles, leaf value
// counts). Throws ModelFormatError naming `where`.
void validate_tree(const DecisionTree& tree, std::size_t n_features, std::size_t values_per_leaf, const std::string& where);

}  // namespace veil::ml::detail
