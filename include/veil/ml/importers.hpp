// Importers: the formats users already have, read into a float Model (model.hpp).
//   - scikit-learn: Veil's documented JSON (docs/formats/sklearn_model.md), written by
//     tools/export_sklearn.py;
//   - XGBoost: the booster's own JSON (save_model("m.json")), gbtree boosters;
//   - ONNX: ModelProto files as PyTorch exports them (opsets 9 to 17), parsed with
//     Debian's libonnx protobuf classes.
// Model files are untrusted: every importer validates structure, sizes and indices and
// throws ModelFormatError naming the file and the offending field, node or op.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "veil/error.hpp"

#include <nlohmann/json.hpp>

#include "veil/ml/model.hpp"

namespace veil::ml {

class ModelFormatError : public veil::InputError {
 public:
  using veil::InputError::InputError;
};

// Largest model file an importer reads.
inline constexpr std::uintmax_t kMaxModelFileBytes = std::uintmax_t{1} << 30;

Model parse_sklearn_json(const nlohmann::json& doc, const std::string& source = "<sklearn json>");
Model load_sklearn_json(const std::string& path);

Model parse_xgboost_json(const nlohmann::json& doc, const std::string& source = "<xgboost json>");
Model load_xgboost_json(const std::string& path);

Model parse_onnx(std::span<const std::uint8_t> bytes, const std::string& source = "<onnx>");
Model load_onnx(const std::string& path);

// The ONNX op types the importer and the lowering accept.
const std::vector<std::string>& supported_onnx_ops();

// By content: ".onnx" files as ONNX, JSON with "format": "veil-sklearn" as scikit-learn,
// JSON with a "learner" object as XGBoost.
Model load_model(const std::string& path);
// The same for a model's bytes in memory (JSON when they start with '{', ONNX otherwise);
// `source` names them in errors.
Model parse_model(std::span<const std::uint8_t> bytes, const std::string& source = "<model>");

}  // namespace veil::ml
