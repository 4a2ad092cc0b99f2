// The model importers and data readers, one binary per format (VEIL_FUZZ_FORMAT): bytes of
// an untrusted file go in, a Model or Matrix or the loader's documented error comes out.
#include <nlohmann/json.hpp>

#include "fuzz_common.hpp"
#include "veil/ml/data.hpp"
#include "veil/ml/importers.hpp"

using namespace veil;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
#if defined(VEIL_FUZZ_FORMAT_ONNX)
  fuzz::expect_only<ml::ModelFormatError>("onnx", [&] { (void)ml::parse_onnx(bytes, "fuzz.onnx"); });
#elif defined(VEIL_FUZZ_FORMAT_SKLEARN) || defined(VEIL_FUZZ_FORMAT_XGBOOST)
  // The importers take a parsed document; what the JSON parser refuses never reaches them
  // (load_sklearn_json / load_xgboost_json turn that refusal into ModelFormatError).
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(bytes.begin(), bytes.end());
  } catch (const nlohmann::json::exception&) {
    return 0;
  }
#if defined(VEIL_FUZZ_FORMAT_SKLEARN)
  fuzz::expect_only<ml::ModelFormatError>("sklearn_json", [&] { (void)ml::parse_sklearn_json(doc, "fuzz.json"); });
#else
  fuzz::expect_only<ml::ModelFormatError>("xgboost_json", [&] { (void)ml::parse_xgboost_json(doc, "fuzz.json"); });
#endif
#elif defined(VEIL_FUZZ_FORMAT_CSV)
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  fuzz::expect_only<ml::DataError>("csv", [&] { (void)ml::parse_csv(text, "fuzz.csv"); });
#elif defined(VEIL_FUZZ_FORMAT_NPY)
  fuzz::expect_only<ml::DataError>("npy", [&] { (void)ml::parse_npy(bytes, "fuzz.npy"); });
#else
#error "define one VEIL_FUZZ_FORMAT_*"
#endif
  return 0;
}
