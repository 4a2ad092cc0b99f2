// Byte formats of every key and ciphertext type (docs/formats/tfhe.md is the reference).
//
// Every object is one frame:
//   header (64 bytes, little-endian)
//     0  magic "VEILTFHE" (8 bytes)
//     8  format major (u16), format minor (u16)
//    12  type tag (u16), reserved (u16) = 0
//    16  parameter id (u64): ParameterSet::id() of the set the object belongs to
//    24  payload length in bytes (u64)
//    32  SHA-256 of the payload, first 16 bytes
//    48  reserved (16 bytes) = 0
//   payload (type-specific, little-endian; shapes first, then words)
// Loading checks, in order: length against the caller's limit and the bytes present, magic,
// version (same major; a newer minor reads an older one), type, parameter id, checksum,
// then the payload's own shape fields against the parameter set and against the payload
// length, before allocating anything. Any failure throws FormatError with a message that
// names the object, the field and both values; the output is never partially assigned.
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "veil/error.hpp"
#include "veil/tfhe/entities.hpp"
#include "veil/tfhe/keys.hpp"
#include "veil/tfhe/packing.hpp"
#include "veil/tfhe/parameters.hpp"

namespace veil::tfhe {

class FormatError : public veil::InputError {
 public:
  using veil::InputError::InputError;
};

inline constexpr std::uint16_t kFormatMajor = 1;
// 1.1: the parameter-set payload gains `grouping` (multi-bit blind rotation); a 1.0 set reads
// as grouping 1.
// 1.2: modulus-switched LWE ciphertext lists (tag 14, bit-packed), and seeded evaluation keys
// whose bodies travel as their top bits only, bit-packed; 1.0 and 1.1 frames still read.
// 1.3: the parameter-set payload gains the answer-packing fields (answer_polynomial_size,
// answer_base_log, answer_level_count; earlier sets read as no packing), seeded evaluation
// keys carry a packing key when their set packs answers, and packed answers (tag 15).
// 1.4: the parameter-set payload gains answer_key_dimension and answer_std_dev (a shorter
// answer key; earlier sets read as 0, the big key's length and noise).
// 1.5: the parameter-set payload gains bsk_body_bits (bootstrap key bodies with fewer bits;
// earlier sets read as 0, bootstrap_key_body_bits(glwe_std_dev)).
inline constexpr std::uint16_t kFormatMinor = 5;

enum class ObjectType : std::uint16_t {
  kLweSecretKey = 1,
  kGlweSecretKey = 2,
  kLweCiphertext = 3,
  kLweCiphertextList = 4,
  kSeededLweCiphertextList = 5,
  kGlweCiphertext = 6,
  kGgswCiphertext = 7,
  kLweBootstrapKey = 8,
  kSeededLweBootstrapKey = 9,
  kLweKeyswitchKey = 10,
  kSeededLweKeyswitchKey = 11,
  kSeededEvaluationKeys = 12,
  kParameterSet = 13,
  kModulusSwitchedLweCiphertextList = 14,
  kPackedAnswer = 15,
};
const char* object_type_name(ObjectType type);

// Default ceiling for one loaded object: 4 GiB. Seeded evaluation keys fit for every
// precision (8 bits: ~2.3 GB); an unseeded 8-bit bootstrap key (~4.6 GB) needs a larger limit.
inline constexpr std::uint64_t kDefaultMaxBytes = std::uint64_t{4} << 30;

using Bytes = std::vector<std::uint8_t>;

// What a header says, readable without knowing the type in advance (for `veil inspect`).
struct FrameInfo {
  std::uint16_t major = 0, minor = 0;
  ObjectType type{};
  std::uint64_t parameter_id = 0;
  std::uint64_t payload_bytes = 0;
};
// Parses and checks the header and checksum only. Throws FormatError.
FrameInfo inspect_frame(std::span<const std::uint8_t> bytes, std::uint64_t max_bytes = kDefaultMaxBytes);

// A ParameterSet on its own (its id is the header's parameter id).
Bytes serialize(const ParameterSet& params);
ParameterSet deserialize_parameter_set(std::span<const std::uint8_t> bytes, std::uint64_t max_bytes = kDefaultMaxBytes);

// Each object is written with the id of the parameter set it belongs to and loaded against
// an expected parameter set: a mismatching id or shape is refused.
Bytes serialize(const LweSecretKey& key, const ParameterSet& params);
Bytes serialize(const GlweSecretKey& key, const ParameterSet& params);
Bytes serialize(const LweCiphertext& ct, const ParameterSet& params);
Bytes serialize(const LweCiphertextList& list, const ParameterSet& params);
Bytes serialize(const SeededLweCiphertextList& list, const ParameterSet& params);
// A list after modulus_switch_lwe_ciphertext_list(list, modulus_bits) (lwe.hpp): each word's
// top modulus_bits bits, bit-packed (tag 14). REQUIRES: 1 <= modulus_bits <= 63 and every
// word a multiple of 2^(64 - modulus_bits) (std::invalid_argument otherwise).
Bytes serialize_modulus_switched(const LweCiphertextList& list, unsigned modulus_bits, const ParameterSet& params);
Bytes serialize(const GlweCiphertext& ct, const ParameterSet& params);
Bytes serialize(const GgswCiphertext& ct, const ParameterSet& params);
Bytes serialize(const LweBootstrapKey& key, const ParameterSet& params);
Bytes serialize(const SeededLweBootstrapKey& key, const ParameterSet& params);
Bytes serialize(const LweKeyswitchKey& key, const ParameterSet& params);
Bytes serialize(const SeededLweKeyswitchKey& key, const ParameterSet& params);
// Parameter set + seeded BSK + seeded KSK in one frame: the evaluation-keys file a client sends.
Bytes serialize(const SeededEvaluationKeys& keys);
// The size of serialize(keys) for keys of `params`, without making any.
std::uint64_t seeded_evaluation_keys_bytes(const ParameterSet& params);

LweSecretKey deserialize_lwe_secret_key(std::span<const std::uint8_t> bytes, const ParameterSet& params,
                                        std::uint64_t max_bytes = kDefaultMaxBytes);
GlweSecretKey deserialize_glwe_secret_key(std::span<const std::uint8_t> bytes, const ParameterSet& params,
                                          std::uint64_t max_bytes = kDefaultMaxBytes);
LweCiphertext deserialize_lwe_ciphertext(std::span<const std::uint8_t> bytes, const ParameterSet& params,
                                         std::uint64_t max_bytes = kDefaultMaxBytes);
LweCiphertextList deserialize_lwe_ciphertext_list(std::span<const std::uint8_t> bytes, const ParameterSet& params,
                                                  std::uint64_t max_bytes = kDefaultMaxBytes);
// A tag-14 frame, lifted back to the torus (words multiples of 2^(64 - modulus_bits)).
LweCiphertextList deserialize_modulus_switched_lwe_ciphertext_list(std::span<const std::uint8_t> bytes,
                                                                  const ParameterSet& params,
                                                                  std::uint64_t max_bytes = kDefaultMaxBytes);
// A packed answer (packing.hpp, tag 15): glwe_dimension k', polynomial_size N', count m,
// modulus_bits b, then the k'N' + m words' top b bits, bit-packed. Loading checks k'N' against
// the set's big dimension, N' against its answer_polynomial_size (a set that packs no answers
// refuses the frame), 1 <= m <= N', b in [1, 63] and the length.
Bytes serialize(const PackedAnswer& answer, const ParameterSet& params);
PackedAnswer deserialize_packed_answer(std::span<const std::uint8_t> bytes, const ParameterSet& params,
                                       std::uint64_t max_bytes = kDefaultMaxBytes);
SeededLweCiphertextList deserialize_seeded_lwe_ciphertext_list(std::span<const std::uint8_t> bytes,
                                                               const ParameterSet& params,
                                                               std::uint64_t max_bytes = kDefaultMaxBytes);
GlweCiphertext deserialize_glwe_ciphertext(std::span<const std::uint8_t> bytes, const ParameterSet& params,
                                           std::uint64_t max_bytes = kDefaultMaxBytes);
GgswCiphertext deserialize_ggsw_ciphertext(std::span<const std::uint8_t> bytes, const ParameterSet& params,
                                           std::uint64_t max_bytes = kDefaultMaxBytes);
LweBootstrapKey deserialize_bootstrap_key(std::span<const std::uint8_t> bytes, const ParameterSet& params,
                                          std::uint64_t max_bytes = kDefaultMaxBytes);
SeededLweBootstrapKey deserialize_seeded_bootstrap_key(std::span<const std::uint8_t> bytes, const ParameterSet& params,
                                                       std::uint64_t max_bytes = kDefaultMaxBytes);
LweKeyswitchKey deserialize_keyswitch_key(std::span<const std::uint8_t> bytes, const ParameterSet& params,
                                          std::uint64_t max_bytes = kDefaultMaxBytes);
SeededLweKeyswitchKey deserialize_seeded_keyswitch_key(std::span<const std::uint8_t> bytes, const ParameterSet& params,
                                                       std::uint64_t max_bytes = kDefaultMaxBytes);
// The parameter set travels inside; `expected_params`, when given, must match it.
SeededEvaluationKeys deserialize_seeded_evaluation_keys(std::span<const std::uint8_t> bytes,
                                                        const ParameterSet* expected_params = nullptr,
                                                        std::uint64_t max_bytes = kDefaultMaxBytes);

}  // namespace veil::tfhe
