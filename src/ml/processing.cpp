// serialized_processing.json and the client's quantization and post-processing.
#include "veil/ml/processing.hpp"

#include <algorithm>
#include <cmath>

namespace veil::ml {

bool operator==(const InputQuantizer& a, const InputQuantizer& b) {
  return a.scale == b.scale && a.zero_point == b.zero_point && a.n_bits == b.n_bits && a.is_signed == b.is_signed &&
         a.q_min == b.q_min && a.q_max == b.q_max && a.missing_code == b.missing_code;
}
bool operator==(const OutputDequantizer& a, const OutputDequantizer& b) {
  return a.shape == b.shape && a.scale == b.scale && a.offset == b.offset;
}

std::int64_t InputQuantizer::quantize(double x, const std::string& what) const {
  if (std::isnan(x)) {
    if (missing_code) return *missing_code;
    throw std::invalid_argument(what + " is missing (NaN) and this model has no route for missing values");
  }
  const double q = std::nearbyint(x / scale) + static_cast<double>(zero_point);
  if (!(q > static_cast<double>(q_min))) return q_min;  // also -inf
  if (!(q < static_cast<double>(q_max))) return q_max;
  return static_cast<std::int64_t>(q);
}

namespace {

const char* aggregation_name(OutputAggregation a) {
  switch (a) {
    case OutputAggregation::kNone: return "none";
    case OutputAggregation::kSum: return "sum";
    case OutputAggregation::kMean: return "mean";
  }
  return "none";
}

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  throw ProcessingFormatError("serialized_processing: " + path + ": " + what);
}

const nlohmann::json& get(const nlohmann::json& o, const std::string& key, const std::string& path) {
  if (!o.is_object()) bad(path, "expected an object");
  auto it = o.find(key);
  if (it == o.end()) bad(path, "missing field '" + key + "'");
  return *it;
}
double num(const nlohmann::json& v, const std::string& path) {
  if (!v.is_number()) bad(path, "expected a number");
  const double d = v.get<double>();
  if (!std::isfinite(d)) bad(path, "not finite");
  return d;
}
std::int64_t integer(const nlohmann::json& v, const std::string& path) {
  if (!v.is_number_integer()) bad(path, "expected an integer");
  if (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX))
    bad(path, "integer out of range");
  return v.get<std::int64_t>();
}
std::string str(const nlohmann::json& v, const std::string& path) {
  if (!v.is_string()) bad(path, "expected a string");
  return v.get<std::string>();
}
std::vector<double> nums(const nlohmann::json& v, const std::string& path) {
  if (!v.is_array()) bad(path, "expected an array");
  std::vector<double> out;
  for (std::size_t i = 0; i < v.size(); ++i) out.push_back(num(v[i], path + "[" + std::to_string(i) + "]"));
  return out;
}
std::vector<std::int64_t> ints(const nlohmann::json& v, const std::string& path) {
  if (!v.is_array()) bad(path, "expected an array");
  std::vector<std::int64_t> out;
  for (std::size_t i = 0; i < v.size(); ++i) out.push_back(integer(v[i], path + "[" + std::to_string(i) + "]"));
  return out;
}

}  // namespace

nlohmann::json to_json(const Processing& p) {
  nlohmann::json j;
  j["format"] = "veil-processing";
  j["version"] = std::to_string(kProcessingFormatMajor) + "." + std::to_string(kProcessingFormatMinor);
  j["model_kind"] = p.model_kind;
  j["task"] = task_name(p.task);
  j["n_features"] = p.n_features;
  j["classes"] = p.classes;
  j["input_shape"] = p.input_shape;
  auto& qs = j["input_quantizers"] = nlohmann::json::array();
  for (const auto& q : p.input_quantizers) {
    nlohmann::json e{{"scale", q.scale}, {"zero_point", q.zero_point}, {"n_bits", q.n_bits},
                     {"is_signed", q.is_signed}, {"q_min", q.q_min}, {"q_max", q.q_max}};
    e["missing_code"] = q.missing_code ? nlohmann::json(*q.missing_code) : nlohmann::json(nullptr);
    qs.push_back(std::move(e));
  }
  auto& os = j["outputs"] = nlohmann::json::array();
  for (const auto& o : p.outputs) os.push_back({{"shape", o.shape}, {"scale", o.scale}, {"offset", o.offset}});
  j["post_processing"] = {{"aggregation", aggregation_name(p.aggregation)},
                          {"tree_output", p.tree_output},
                          {"n_outputs", p.n_outputs},
                          {"base_score", p.base_score},
                          {"link", link_name(p.link)},
                          {"complement", p.complement ? nlohmann::json(*p.complement) : nlohmann::json(nullptr)}};
  return j;
}

Processing processing_from_json(const nlohmann::json& j) {
  Processing p;
  if (str(get(j, "format", "$"), "$.format") != "veil-processing") bad("$.format", "expected \"veil-processing\"");
  const std::string version = str(get(j, "version", "$"), "$.version");
  const auto dot = version.find('.');
  int major = -1;
  try {
    major = std::stoi(version.substr(0, dot));
  } catch (...) {
    bad("$.version", "'" + version + "' is not MAJOR.MINOR");
  }
  if (major < kProcessingFormatOldestMajor || major > kProcessingFormatMajor)
    bad("$.version", "format version " + version + " cannot be read by this reader (version " +
                         std::to_string(kProcessingFormatMajor) + "." + std::to_string(kProcessingFormatMinor) + ")");
  p.model_kind = str(get(j, "model_kind", "$"), "$.model_kind");
  try {
    p.task = parse_task(str(get(j, "task", "$"), "$.task"));
  } catch (const std::invalid_argument& e) {
    bad("$.task", e.what());
  }
  const std::int64_t nf = integer(get(j, "n_features", "$"), "$.n_features");
  if (nf < 1 || nf > (std::int64_t{1} << 24)) bad("$.n_features", "must be in [1, 2^24]");
  p.n_features = static_cast<std::size_t>(nf);
  p.classes = ints(get(j, "classes", "$"), "$.classes");
  const auto shape = ints(get(j, "input_shape", "$"), "$.input_shape");
  p.input_shape.assign(shape.begin(), shape.end());
  try {
    if (circuit::element_count(p.input_shape) != nf) bad("$.input_shape", "does not hold n_features elements");
  } catch (const std::invalid_argument& e) {
    bad("$.input_shape", e.what());
  }
  const auto& qs = get(j, "input_quantizers", "$");
  if (!qs.is_array() || qs.size() != p.n_features) bad("$.input_quantizers", "expected one quantizer per feature");
  for (std::size_t i = 0; i < qs.size(); ++i) {
    const std::string path = "$.input_quantizers[" + std::to_string(i) + "]";
    InputQuantizer q;
    q.scale = num(get(qs[i], "scale", path), path + ".scale");
    if (!(q.scale > 0)) bad(path + ".scale", "must be positive");
    q.zero_point = integer(get(qs[i], "zero_point", path), path + ".zero_point");
    const auto bits = integer(get(qs[i], "n_bits", path), path + ".n_bits");
    if (bits < 1 || bits > 32) bad(path + ".n_bits", "must be in [1, 32]");
    q.n_bits = static_cast<unsigned>(bits);
    if (!get(qs[i], "is_signed", path).is_boolean()) bad(path + ".is_signed", "expected a boolean");
    q.is_signed = get(qs[i], "is_signed", path).get<bool>();
    q.q_min = integer(get(qs[i], "q_min", path), path + ".q_min");
    q.q_max = integer(get(qs[i], "q_max", path), path + ".q_max");
    // Bounded first, so that the difference below cannot overflow.
    constexpr std::int64_t kCodeLimit = std::int64_t{1} << 33;
    if (q.q_min < -kCodeLimit || q.q_max > kCodeLimit) bad(path, "q_min or q_max outside [-2^33, 2^33]");
    if (q.q_min > q.q_max || q.q_max - q.q_min >= (std::int64_t{1} << q.n_bits))
      bad(path, "[q_min, q_max] is empty or wider than n_bits");
    if (qs[i].contains("missing_code") && !qs[i]["missing_code"].is_null())
      q.missing_code = integer(qs[i]["missing_code"], path + ".missing_code");
    p.input_quantizers.push_back(q);
  }
  const auto& os = get(j, "outputs", "$");
  if (!os.is_array() || os.empty() || os.size() > 64) bad("$.outputs", "expected 1 to 64 output dequantizers");
  for (std::size_t i = 0; i < os.size(); ++i) {
    const std::string path = "$.outputs[" + std::to_string(i) + "]";
    OutputDequantizer o;
    const auto s = ints(get(os[i], "shape", path), path + ".shape");
    o.shape.assign(s.begin(), s.end());
    std::int64_t count = 0;
    try {
      count = circuit::element_count(o.shape);
    } catch (const std::invalid_argument& e) {
      bad(path + ".shape", e.what());
    }
    o.scale = nums(get(os[i], "scale", path), path + ".scale");
    o.offset = nums(get(os[i], "offset", path), path + ".offset");
    if (static_cast<std::int64_t>(o.scale.size()) != count || static_cast<std::int64_t>(o.offset.size()) != count)
      bad(path, "scale and offset need one entry per element");
    p.outputs.push_back(std::move(o));
  }
  const auto& pp = get(j, "post_processing", "$");
  const std::string agg = str(get(pp, "aggregation", "$.post_processing"), "$.post_processing.aggregation");
  if (agg == "none") p.aggregation = OutputAggregation::kNone;
  else if (agg == "sum") p.aggregation = OutputAggregation::kSum;
  else if (agg == "mean") p.aggregation = OutputAggregation::kMean;
  else bad("$.post_processing.aggregation", "'" + agg + "' (expected none, sum or mean)");
  p.tree_output = ints(get(pp, "tree_output", "$.post_processing"), "$.post_processing.tree_output");
  const auto k = integer(get(pp, "n_outputs", "$.post_processing"), "$.post_processing.n_outputs");
  if (k < 1 || k > 65536) bad("$.post_processing.n_outputs", "must be in [1, 65536]");
  p.n_outputs = static_cast<std::size_t>(k);
  for (auto t : p.tree_output)
    if (t < 0 || t >= k) bad("$.post_processing.tree_output", "entry " + std::to_string(t) + " outside [0, n_outputs)");
  p.base_score = nums(get(pp, "base_score", "$.post_processing"), "$.post_processing.base_score");
  if (!p.base_score.empty() && p.base_score.size() != p.n_outputs)
    bad("$.post_processing.base_score", "expected n_outputs entries or none");
  try {
    p.link = parse_link(str(get(pp, "link", "$.post_processing"), "$.post_processing.link"));
  } catch (const std::invalid_argument& e) {
    bad("$.post_processing.link", e.what());
  }
  if (const auto it = pp.find("complement"); it != pp.end() && !it->is_null()) {
    if (!it->is_number() || !std::isfinite(it->get<double>())) bad("$.post_processing.complement", "expected a finite number or null");
    if (p.n_outputs < 2 || !p.tree_output.empty())
      bad("$.post_processing.complement", "needs n_outputs >= 2 and no tree_output");
    p.complement = it->get<double>();
  }
  // The first output must produce the margins (all but the last one with a complement).
  const std::size_t computed = p.n_outputs - (p.complement ? 1 : 0);
  const std::size_t out0 = p.outputs[0].scale.size();
  if (p.aggregation == OutputAggregation::kNone && out0 != computed)
    bad("$.outputs[0]", std::to_string(out0) + " elements, expected " + std::to_string(computed) + " margins");
  if (p.aggregation != OutputAggregation::kNone) {
    const std::size_t per = p.tree_output.empty() ? computed : 1;
    if (out0 % per != 0) bad("$.outputs[0]", "element count is not a multiple of the values per tree");
    if (!p.tree_output.empty() && p.tree_output.size() != out0) bad("$.post_processing.tree_output", "expected one entry per tree");
  }
  if (p.task == Task::kClassification && p.classes.empty()) bad("$.classes", "a classifier needs its class labels");
  return p;
}

std::string serialize_processing(const Processing& p) { return to_json(p).dump(1) + "\n"; }

Processing deserialize_processing(std::string_view text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    throw ProcessingFormatError(std::string("serialized_processing: not valid JSON: ") + e.what());
  }
  return processing_from_json(j);
}

circuit::Tensor quantize_input(const Processing& p, std::span<const double> row) {
  if (row.size() != p.n_features || p.input_quantizers.size() != p.n_features)
    throw std::invalid_argument("quantize_input: " + std::to_string(row.size()) + " values for " +
                                std::to_string(p.n_features) + " features");
  std::vector<std::int64_t> q(row.size());
  for (std::size_t f = 0; f < row.size(); ++f) q[f] = p.input_quantizers[f].quantize(row[f], "feature " + std::to_string(f));
  return circuit::Tensor(p.input_shape, std::move(q));
}

std::vector<circuit::Tensor> quantize_inputs(const Processing& p, const Matrix& rows) {
  std::vector<circuit::Tensor> out;
  out.reserve(rows.rows);
  for (std::size_t r = 0; r < rows.rows; ++r) {
    try {
      out.push_back(quantize_input(p, rows.row(r)));
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("row " + std::to_string(r) + ": " + e.what());
    }
  }
  return out;
}

RowPrediction postprocess_row(const Processing& p, const std::vector<circuit::Tensor>& outputs) {
  if (outputs.size() != p.outputs.size())
    throw std::invalid_argument("postprocess: " + std::to_string(outputs.size()) + " outputs, expected " +
                                std::to_string(p.outputs.size()));
  const auto& dq = p.outputs[0];
  const auto& v = outputs[0];
  if (v.shape != dq.shape)
    throw std::invalid_argument("postprocess: output shape " + circuit::shape_string(v.shape) + ", expected " +
                                circuit::shape_string(dq.shape));
  std::vector<double> d(v.data.size());
  for (std::size_t e = 0; e < d.size(); ++e) d[e] = dq.scale[e] * static_cast<double>(v.data[e]) + dq.offset[e];
  RowPrediction r;
  const std::size_t computed = p.n_outputs - (p.complement ? 1 : 0);
  r.margins.assign(computed, 0.0);
  if (p.aggregation == OutputAggregation::kNone) {
    if (d.size() != computed)
      throw std::invalid_argument("postprocess: " + std::to_string(d.size()) + " output values, expected " + std::to_string(computed));
    r.margins = d;
  } else {
    const std::size_t per = p.tree_output.empty() ? computed : 1;
    const std::size_t trees = d.size() / per;
    for (std::size_t t = 0; t < trees; ++t) {
      if (p.tree_output.empty())
        for (std::size_t k = 0; k < per; ++k) r.margins[k] += d[t * per + k];
      else
        r.margins[static_cast<std::size_t>(p.tree_output[t])] += d[t];
    }
    if (p.aggregation == OutputAggregation::kMean)
      for (auto& m : r.margins) m /= static_cast<double>(p.tree_output.empty() ? trees : trees / p.n_outputs);
  }
  if (p.complement) {
    double rest = *p.complement;
    for (double m : r.margins) rest -= m;
    r.margins.push_back(rest);
  }
  for (std::size_t k = 0; k < p.base_score.size() && k < r.margins.size(); ++k) r.margins[k] += p.base_score[k];
  finish_prediction(p.task, p.link, p.classes, r.margins, r.scores, r.label);
  if (p.task == Task::kRegression) r.value = r.scores.at(0);
  return r;
}

Predictions postprocess(const Processing& p, const std::vector<std::vector<circuit::Tensor>>& outputs) {
  Predictions out;
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    const RowPrediction r = postprocess_row(p, outputs[i]);
    if (i == 0) out.scores = Matrix(outputs.size(), r.scores.size());
    std::copy(r.scores.begin(), r.scores.end(), out.scores.row(i).begin());
    if (p.task == Task::kClassification) out.labels.push_back(r.label);
    else out.values.push_back(r.value);
  }
  return out;
}

}  // namespace veil::ml
