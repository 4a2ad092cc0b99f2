// The artifact JSON documents a client or server reads: the first byte picks versions.json
// (0), client.specs.json (1) or serialized_processing.json (2); the rest is the text.
#include "fuzz_common.hpp"
#include "veil/deploy/model.hpp"
#include "veil/ml/processing.hpp"

using namespace veil;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  fuzz::expect_only<deploy::DeployError, ml::ProcessingFormatError>("artifacts_json", [&] {
    switch (data[0] % 3) {
      case 0: (void)deploy::check_versions_json(text, "versions.json"); break;
      case 1: (void)deploy::client_specs_from_json(text, "client.specs.json"); break;
      default: (void)ml::deserialize_processing(text); break;
    }
  });
  return 0;
}
