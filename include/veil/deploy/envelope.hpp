// Envelopes: the files a client and a server exchange (keys and ciphertext batches), each
// stamped with the id of the model it belongs to (docs/formats/deploy.md is the reference).
//
//   header (64 bytes, little-endian)
//     0  magic "VEILENVL" (8 bytes)
//     8  format major (u16), format minor (u16)
//    12  kind (u16), reserved (u16) = 0
//    16  model id (16 bytes): the id shared by client.zip, server.zip and
//        serialized_processing.json of one compile
//    32  payload length in bytes (u64)
//    40  SHA-256 of the payload, first 16 bytes
//    56  reserved (8 bytes) = 0
//   payload (by kind)
//     secret keys       tfhe frames: parameter set, LWE secret key, GLWE secret key
//     evaluation keys   u8 present; when 1, the tfhe frame of the seeded evaluation keys
//                       (a levelled-only model needs none: present = 0)
//     input batch       u32 rows, u32 tensors per row, then rows x tensors tfhe frames of
//                       seeded LWE ciphertext lists (8 bytes per element plus a seed)
//     output batch      u32 rows, u32 tensors per row, then rows x tensors tfhe frames of
//                       LWE ciphertext lists
//   Every inner frame is prefixed by its length (u64).
// Loading checks the limit, magic, version (same major; newer minor reads older), kind,
// checksum, and the model id against the expected one, before parsing the payload. Errors are
// EnvelopeError with a message naming what is wrong (both ids on a model mismatch).
//
// Thread safety: pure functions.
#pragma once

#include <array>
#include <optional>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "veil/error.hpp"
#include "veil/circuit/fhe_executor.hpp"
#include "veil/tfhe/keys.hpp"
#include "veil/tfhe/packing.hpp"

namespace veil::deploy {

class EnvelopeError : public veil::InputError {
 public:
  using veil::InputError::InputError;
};

inline constexpr std::uint16_t kEnvelopeMajor = 1;
inline constexpr std::uint16_t kEnvelopeMinor = 0;

enum class EnvelopeKind : std::uint16_t {
  kSecretKeys = 1,
  kEvaluationKeys = 2,
  kInputBatch = 3,
  kOutputBatch = 4,
};
const char* envelope_kind_name(EnvelopeKind kind);

using ModelId = std::array<std::uint8_t, 16>;
std::string model_id_hex(const ModelId& id);
// Throws std::invalid_argument unless `hex` is 32 hex digits.
ModelId parse_model_id(const std::string& hex);

using Bytes = std::vector<std::uint8_t>;

// Limits on one loaded envelope: keys can be large, batches are bounded separately.
inline constexpr std::uint64_t kMaxKeyEnvelopeBytes = std::uint64_t{4} << 30;
inline constexpr std::uint64_t kMaxBatchEnvelopeBytes = std::uint64_t{1} << 30;

// What any envelope's header says (for `veil inspect`). Checks magic, version, checksum.
struct EnvelopeInfo {
  EnvelopeKind kind{};
  ModelId model_id{};
  std::uint16_t major = 0, minor = 0;
  std::uint64_t payload_bytes = 0;
};
EnvelopeInfo inspect_envelope(std::span<const std::uint8_t> bytes, std::uint64_t max_bytes = kMaxKeyEnvelopeBytes);
// True when the bytes start with the envelope magic.
bool looks_like_envelope(std::span<const std::uint8_t> bytes);

Bytes seal_secret_keys(const ModelId& model, const tfhe::SecretKeys& keys);
tfhe::SecretKeys open_secret_keys(std::span<const std::uint8_t> bytes, const ModelId& model,
                                  const tfhe::ParameterSet& params);

// `keys` null: a levelled-only model's (empty) evaluation keys.
Bytes seal_evaluation_keys(const ModelId& model, const tfhe::SeededEvaluationKeys* keys);
// The size of seal_evaluation_keys' result for a model of `params`, without making keys.
std::uint64_t evaluation_keys_envelope_bytes(const tfhe::ParameterSet& params, bool uses_bootstrapping);
// Returns nullopt for the empty form. Checks the keys' parameter set against `params`.
std::optional<tfhe::SeededEvaluationKeys> open_evaluation_keys(std::span<const std::uint8_t> bytes, const ModelId& model,
                                                               const tfhe::ParameterSet& params,
                                                               std::uint64_t max_bytes = kMaxKeyEnvelopeBytes);

// rows[r][t]: tensor t of row r.
Bytes seal_input_batch(const ModelId& model, const tfhe::ParameterSet& params,
                       const std::vector<std::vector<tfhe::SeededLweCiphertextList>>& rows);
std::vector<std::vector<tfhe::SeededLweCiphertextList>> open_input_batch(std::span<const std::uint8_t> bytes,
                                                                         const ModelId& model,
                                                                         const tfhe::ParameterSet& params,
                                                                         std::uint64_t max_bytes = kMaxBatchEnvelopeBytes);
// modulus_bits[t] (when not empty): tensor t's ciphertexts were modulus-switched to
// 2^modulus_bits[t] (tfhe::modulus_switch_lwe_ciphertext_list) and travel bit-packed; the
// opener reads either form and returns the ciphertexts on the torus.
Bytes seal_output_batch(const ModelId& model, const tfhe::ParameterSet& params,
                        const std::vector<std::vector<tfhe::LweCiphertextList>>& rows,
                        const std::vector<unsigned>& modulus_bits = {});
// Packed answers (tfhe/packing.hpp): one frame a row, the row's outputs in one GLWE.
Bytes seal_packed_output_batch(const ModelId& model, const tfhe::ParameterSet& params,
                               const std::vector<tfhe::PackedAnswer>& rows);
// A row as it arrived: one list per output tensor, or, packed, the row's packed answer as
// read (its count not yet checked against the model: the reader unpacks it only then, since
// tfhe::unpack_answer expands (kN + m) words of b bits into m (kN + 1) words).
struct OutputRow {
  std::vector<tfhe::LweCiphertextList> tensors;
  std::optional<tfhe::PackedAnswer> packed;
};
std::vector<OutputRow> open_output_batch(std::span<const std::uint8_t> bytes, const ModelId& model,
                                         const tfhe::ParameterSet& params,
                                         std::uint64_t max_bytes = kMaxBatchEnvelopeBytes);

}  // namespace veil::deploy
