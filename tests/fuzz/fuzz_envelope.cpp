// Envelopes (docs/formats/artifacts.md): secret keys, evaluation keys, input and output
// batches, each through the loader of its kind, for the fixture's model and parameter set.
#include "fuzz_common.hpp"
#include "fuzz_fixture.hpp"
#include "veil/deploy/envelope.hpp"

using namespace veil;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::vector<std::uint8_t> bytes = fuzz::prepared(data, size);
  const tfhe::ParameterSet& p = fuzz::fuzz_params();
  const deploy::ModelId& id = fuzz::fuzz_model_id();
  constexpr std::uint64_t kMax = std::uint64_t{64} << 20;
  fuzz::expect_only<deploy::EnvelopeError>("envelope", [&] {
    const deploy::EnvelopeInfo info = deploy::inspect_envelope(bytes, kMax);
    switch (info.kind) {
      case deploy::EnvelopeKind::kSecretKeys: (void)deploy::open_secret_keys(bytes, id, p); break;
      case deploy::EnvelopeKind::kEvaluationKeys: (void)deploy::open_evaluation_keys(bytes, id, p, kMax); break;
      case deploy::EnvelopeKind::kInputBatch: (void)deploy::open_input_batch(bytes, id, p, kMax); break;
      case deploy::EnvelopeKind::kOutputBatch: (void)deploy::open_output_batch(bytes, id, p, kMax); break;
    }
  });
  return 0;
}
