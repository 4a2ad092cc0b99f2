// What the client needs around a model's circuit: how to turn feature rows into the
// circuit's integer input (input quantizers), and the circuit's integer outputs into
// predictions (output dequantizers, aggregation over trees, base score, link, class
// labels). Plain data, serialized as serialized_processing.json (to_json / from_json; the
// format is documented in docs/formats/serialized_processing.md), readable from any language.
//
// Client algorithm:
//   1. quantize: for feature f, q = clamp(round(x_f / scale_f) + zero_point_f, q_min_f, q_max_f)
//      (a NaN becomes missing_code_f when the quantizer has one, and is refused otherwise);
//      the row becomes the circuit's one input tensor, of shape input_shape.
//   2. the server runs the circuit; the client decrypts its one output tensor v.
//   3. dequantize: d[e] = scale[e] * v[e] + offset[e] (per element of the output).
//   4. aggregate: "none": margins = d; "sum"/"mean": d is [trees, values_per_tree] and the
//      trees' rows are summed (averaged) into margins, row t into margin tree_output[t] when
//      tree_output is set, into all margins otherwise.
//   5. margins += base_score; scores and label by the link (model.hpp's Link).
//
// Thread safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "veil/error.hpp"

#include <nlohmann/json.hpp>

#include "veil/circuit/tensor.hpp"
#include "veil/ml/data.hpp"
#include "veil/ml/model.hpp"

namespace veil::ml {

class ProcessingFormatError : public veil::InputError {
 public:
  using veil::InputError::InputError;
};

// Major 2 added post_processing.complement: a reader of major 1 would misread such a file,
// so it must refuse it. This reader reads majors 1 and 2.
inline constexpr int kProcessingFormatMajor = 2;
inline constexpr int kProcessingFormatOldestMajor = 1;
inline constexpr int kProcessingFormatMinor = 0;

// q = clamp(round(x / scale) + zero_point, q_min, q_max); x ~ scale * (q - zero_point).
// n_bits and is_signed describe [q_min, q_max] (q_max - q_min < 2^n_bits).
struct InputQuantizer {
  double scale = 1.0;
  std::int64_t zero_point = 0;
  unsigned n_bits = 8;
  bool is_signed = false;
  std::int64_t q_min = 0;
  std::int64_t q_max = 255;
  std::optional<std::int64_t> missing_code;  // the code a NaN becomes (trees with default directions)

  // Throws std::invalid_argument for a NaN without missing_code (naming `what`).
  std::int64_t quantize(double x, const std::string& what = "value") const;
  double dequantize(std::int64_t q) const { return scale * static_cast<double>(q - zero_point); }
};

// d[e] = scale[e] * v[e] + offset[e], for one output tensor of `shape`.
struct OutputDequantizer {
  circuit::Shape shape;
  std::vector<double> scale;
  std::vector<double> offset;
};

enum class OutputAggregation { kNone, kSum, kMean };

struct Processing {
  std::string model_kind;  // "linear", "tree_ensemble", "network", "knn"
  Task task = Task::kClassification;
  std::size_t n_features = 0;
  std::vector<std::int64_t> classes;
  circuit::Shape input_shape;                  // the circuit input, n_features elements
  std::vector<InputQuantizer> input_quantizers;  // one per feature, row-major over input_shape
  std::vector<OutputDequantizer> outputs;        // one per circuit output (currently one)
  OutputAggregation aggregation = OutputAggregation::kNone;
  std::vector<std::int64_t> tree_output;  // per tree: the margin its value goes to (or empty)
  std::size_t n_outputs = 1;              // margins
  std::vector<double> base_score;         // added to the margins (empty: zero)
  Link link = Link::kIdentity;
  // When set, the outputs omit the last margin, which is this total minus the others (after
  // aggregation, before base_score): the classes of a tree classifier's leaves sum to one.
  std::optional<double> complement;

  friend bool operator==(const Processing&, const Processing&) = default;
};
bool operator==(const InputQuantizer& a, const InputQuantizer& b);
bool operator==(const OutputDequantizer& a, const OutputDequantizer& b);

nlohmann::json to_json(const Processing& processing);
// Validates every field (types, counts, version: same major, any minor). Throws
// ProcessingFormatError naming the field.
Processing processing_from_json(const nlohmann::json& doc);
std::string serialize_processing(const Processing& processing);  // pretty JSON text
Processing deserialize_processing(std::string_view text);          // throws ProcessingFormatError

// The circuit input for one feature row. Throws std::invalid_argument when the row does not
// have n_features values or holds a NaN the quantizers cannot encode (naming the feature).
circuit::Tensor quantize_input(const Processing& processing, std::span<const double> row);
// One tensor per row.
std::vector<circuit::Tensor> quantize_inputs(const Processing& processing, const Matrix& rows);

// Post-processing of one row's decrypted outputs: margins, scores and label.
struct RowPrediction {
  std::vector<double> margins;
  std::vector<double> scores;
  std::int64_t label = 0;  // classification only
  double value = 0;        // regression only
};
// Throws std::invalid_argument on an output count or shape mismatch.
RowPrediction postprocess_row(const Processing& processing, const std::vector<circuit::Tensor>& outputs);
// One entry of `outputs` per row (each the circuit's outputs for that row).
Predictions postprocess(const Processing& processing, const std::vector<std::vector<circuit::Tensor>>& outputs);

}  // namespace veil::ml
