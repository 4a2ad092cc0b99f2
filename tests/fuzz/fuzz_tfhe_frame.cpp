// TFHE object frames (docs/formats/tfhe.md), each type through its own loader.
#include "fuzz_common.hpp"
#include "fuzz_fixture.hpp"
#include "veil/tfhe/serialization.hpp"

using namespace veil;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::vector<std::uint8_t> bytes = fuzz::prepared(data, size);
  const tfhe::ParameterSet& p = fuzz::fuzz_params();
  constexpr std::uint64_t kMax = std::uint64_t{64} << 20;
  fuzz::expect_only<tfhe::FormatError>("tfhe_frame", [&] {
    (void)tfhe::inspect_frame(bytes, kMax);
    const unsigned type = bytes.size() >= 14 ? bytes[12] | (bytes[13] << 8) : 0;
    switch (static_cast<tfhe::ObjectType>(type)) {
      case tfhe::ObjectType::kLweSecretKey: (void)tfhe::deserialize_lwe_secret_key(bytes, p, kMax); break;
      case tfhe::ObjectType::kGlweSecretKey: (void)tfhe::deserialize_glwe_secret_key(bytes, p, kMax); break;
      case tfhe::ObjectType::kLweCiphertext: (void)tfhe::deserialize_lwe_ciphertext(bytes, p, kMax); break;
      case tfhe::ObjectType::kLweCiphertextList: (void)tfhe::deserialize_lwe_ciphertext_list(bytes, p, kMax); break;
      case tfhe::ObjectType::kSeededLweCiphertextList: (void)tfhe::deserialize_seeded_lwe_ciphertext_list(bytes, p, kMax); break;
      case tfhe::ObjectType::kGlweCiphertext: (void)tfhe::deserialize_glwe_ciphertext(bytes, p, kMax); break;
      case tfhe::ObjectType::kGgswCiphertext: (void)tfhe::deserialize_ggsw_ciphertext(bytes, p, kMax); break;
      case tfhe::ObjectType::kLweBootstrapKey: (void)tfhe::deserialize_bootstrap_key(bytes, p, kMax); break;
      case tfhe::ObjectType::kSeededLweBootstrapKey: (void)tfhe::deserialize_seeded_bootstrap_key(bytes, p, kMax); break;
      case tfhe::ObjectType::kLweKeyswitchKey: (void)tfhe::deserialize_keyswitch_key(bytes, p, kMax); break;
      case tfhe::ObjectType::kSeededLweKeyswitchKey: (void)tfhe::deserialize_seeded_keyswitch_key(bytes, p, kMax); break;
      case tfhe::ObjectType::kSeededEvaluationKeys: (void)tfhe::deserialize_seeded_evaluation_keys(bytes, nullptr, kMax); break;
      case tfhe::ObjectType::kParameterSet: (void)tfhe::deserialize_parameter_set(bytes, kMax); break;
      case tfhe::ObjectType::kModulusSwitchedLweCiphertextList:
        (void)tfhe::deserialize_modulus_switched_lwe_ciphertext_list(bytes, p, kMax);
        break;
      case tfhe::ObjectType::kPackedAnswer:
        (void)tfhe::unpack_answer(tfhe::deserialize_packed_answer(bytes, fuzz::fuzz_packing_params(), kMax));
        break;
      default: break;
    }
  });
  return 0;
}
