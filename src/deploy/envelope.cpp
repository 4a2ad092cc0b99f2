// Envelopes (envelope.hpp; docs/formats/deploy.md).
#include "veil/deploy/envelope.hpp"

#include <algorithm>
#include <cstring>

#include "veil/tfhe/coding.hpp"
#include "veil/tfhe/serialization.hpp"

namespace veil::deploy {
namespace {

constexpr tfhe::FrameLayout kLayout{{'V', 'E', 'I', 'L', 'E', 'N', 'V', 'L'}, 16};
constexpr std::size_t kHeaderBytes = tfhe::kFrameHeaderBytes;
// Rows and tensors per row of one batch: bounds what a count field can make us allocate.
constexpr std::uint32_t kMaxRows = 1u << 20;
constexpr std::uint32_t kMaxTensorsPerRow = 1u << 10;

// An envelope is built in one writer: the header's place, then the payload.
tfhe::ByteWriter envelope_writer() {
  tfhe::ByteWriter w;
  w.zeros(kHeaderBytes);
  return w;
}

// An inner tfhe frame, behind its u64 length.
void put_frame(tfhe::ByteWriter& w, const Bytes& frame) {
  w.u64(frame.size());
  w.raw(frame);
}

Bytes seal(tfhe::ByteWriter w, EnvelopeKind kind, const ModelId& model) {
  tfhe::FrameHeader h;
  h.major = kEnvelopeMajor;
  h.minor = kEnvelopeMinor;
  h.type = static_cast<std::uint16_t>(kind);
  std::copy(model.begin(), model.end(), h.id.begin());
  tfhe::seal_frame(kLayout, h, w.written());
  return std::move(w).finish();
}

[[noreturn]] void fail(const char* what, const std::string& detail) {
  throw EnvelopeError(std::string(what) + ": " + detail);
}

// Header checks; returns the payload.
std::span<const std::uint8_t> open(std::span<const std::uint8_t> bytes, std::uint64_t max_bytes,
                                   std::optional<EnvelopeKind> kind, const ModelId* model, EnvelopeInfo* info_out) {
  const char* what = kind ? envelope_kind_name(*kind) : "envelope";
  if (bytes.size() > max_bytes)
    fail(what, std::to_string(bytes.size()) + " bytes, more than the limit of " + std::to_string(max_bytes));
  if (bytes.size() < kHeaderBytes)
    fail(what, "truncated: " + std::to_string(bytes.size()) + " bytes, the header alone is 64");
  const tfhe::FrameHeader h = tfhe::decode_frame_header(kLayout, bytes);
  if (h.magic != kLayout.magic) fail(what, "not a Veil envelope (bad magic)");
  EnvelopeInfo info;
  info.major = h.major;
  info.minor = h.minor;
  if (info.major != kEnvelopeMajor || info.minor > kEnvelopeMinor)
    fail(what, "format version " + std::to_string(info.major) + "." + std::to_string(info.minor) +
                   " cannot be read by this Veil (reads " + std::to_string(kEnvelopeMajor) + ".0 to " +
                   std::to_string(kEnvelopeMajor) + "." + std::to_string(kEnvelopeMinor) + ")");
  if (h.type < 1 || h.type > 4) fail(what, "unknown kind " + std::to_string(h.type));
  info.kind = static_cast<EnvelopeKind>(h.type);
  if (kind && info.kind != *kind)
    fail(what, std::string("the file holds ") + envelope_kind_name(info.kind) + ", not " + envelope_kind_name(*kind));
  std::copy_n(h.id.begin(), info.model_id.size(), info.model_id.begin());
  info.payload_bytes = h.payload_bytes;
  if (info.payload_bytes != bytes.size() - kHeaderBytes)
    fail(what, "header announces a payload of " + std::to_string(info.payload_bytes) + " bytes, " +
                   std::to_string(bytes.size() - kHeaderBytes) + " are present (truncated or padded)");
  const auto payload = bytes.subspan(kHeaderBytes);
  if (tfhe::frame_checksum(payload) != h.checksum) fail(what, "checksum mismatch: the file is corrupted");
  if (model && info.model_id != *model)
    fail(what, "belongs to model " + model_id_hex(info.model_id) + ", this is model " + model_id_hex(*model) +
                   " (files from two different compiles are mixed)");
  if (info_out) *info_out = info;
  return payload;
}

struct EnvelopeFail {
  const char* what;
  [[noreturn]] void operator()(const std::string& detail) const { fail(what, detail); }
};
class PayloadReader : public tfhe::ByteReader<EnvelopeFail> {
 public:
  PayloadReader(std::span<const std::uint8_t> b, const char* what) : ByteReader(b, EnvelopeFail{what}) {}
  std::span<const std::uint8_t> frame(const char* field) {
    const std::uint64_t n = u64(field);
    if (n > remaining())
      fail(std::string(field) + " claims " + std::to_string(n) + " bytes, " + std::to_string(remaining()) + " remain");
    return {take(static_cast<std::size_t>(n), field), static_cast<std::size_t>(n)};
  }
};

// Runs a tfhe loader, turning its FormatError into an EnvelopeError that names the place.
template <class F>
auto load_inner(const char* what, const std::string& where, F&& f) {
  try {
    return f();
  } catch (const tfhe::FormatError& e) {
    fail(what, where + ": " + e.what());
  } catch (const std::invalid_argument& e) {
    fail(what, where + ": " + e.what());
  }
}

template <class List, class Serialize>
Bytes seal_batch(EnvelopeKind kind, const ModelId& model, const std::vector<std::vector<List>>& rows, Serialize&& ser) {
  if (rows.size() > kMaxRows) throw std::invalid_argument("batch of " + std::to_string(rows.size()) + " rows, at most " + std::to_string(kMaxRows));
  const std::size_t tensors = rows.empty() ? 0 : rows[0].size();
  tfhe::ByteWriter w = envelope_writer();
  w.u32(static_cast<std::uint32_t>(rows.size()));
  w.u32(static_cast<std::uint32_t>(tensors));
  for (const auto& row : rows) {
    if (row.size() != tensors) throw std::invalid_argument("batch rows hold different numbers of tensors");
    for (const auto& t : row) put_frame(w, ser(t));
  }
  return seal(std::move(w), kind, model);
}

template <class List, class Load>
std::vector<std::vector<List>> open_batch(EnvelopeKind kind, std::span<const std::uint8_t> bytes, const ModelId& model,
                                          std::uint64_t max_bytes, Load&& load) {
  const char* what = envelope_kind_name(kind);
  PayloadReader r(open(bytes, max_bytes, kind, &model, nullptr), what);
  const std::uint32_t rows = r.u32("row count");
  const std::uint32_t tensors = r.u32("tensors per row");
  if (rows > kMaxRows || tensors > kMaxTensorsPerRow)
    fail(what, std::to_string(rows) + " rows of " + std::to_string(tensors) + " tensors exceed the limits (" +
                   std::to_string(kMaxRows) + ", " + std::to_string(kMaxTensorsPerRow) + ")");
  // Every frame takes at least 8 + 64 bytes: refuse counts the payload cannot hold.
  if (static_cast<std::uint64_t>(rows) * tensors > r.remaining() / 72)
    fail(what, std::to_string(rows) + " x " + std::to_string(tensors) + " tensors cannot fit in " +
                   std::to_string(r.remaining()) + " bytes");
  std::vector<std::vector<List>> out(rows);
  for (std::uint32_t i = 0; i < rows; ++i) {
    out[i].reserve(tensors);
    for (std::uint32_t t = 0; t < tensors; ++t) {
      const auto frame = r.frame("ciphertext frame");
      out[i].push_back(load_inner(what, "row " + std::to_string(i) + " tensor " + std::to_string(t), [&] { return load(frame); }));
    }
  }
  r.expect_end();
  return out;
}

}  // namespace

const char* envelope_kind_name(EnvelopeKind kind) {
  switch (kind) {
    case EnvelopeKind::kSecretKeys: return "secret keys";
    case EnvelopeKind::kEvaluationKeys: return "evaluation keys";
    case EnvelopeKind::kInputBatch: return "encrypted input batch";
    case EnvelopeKind::kOutputBatch: return "encrypted output batch";
  }
  return "unknown envelope";
}

std::string model_id_hex(const ModelId& id) { return tfhe::to_hex(id); }

ModelId parse_model_id(const std::string& hex) {
  ModelId id{};
  if (!tfhe::from_hex(hex, id)) throw std::invalid_argument("model id '" + hex + "' is not 32 hex digits");
  return id;
}

bool looks_like_envelope(std::span<const std::uint8_t> bytes) {
  return bytes.size() >= kLayout.magic.size() && std::equal(kLayout.magic.begin(), kLayout.magic.end(), bytes.begin());
}

EnvelopeInfo inspect_envelope(std::span<const std::uint8_t> bytes, std::uint64_t max_bytes) {
  EnvelopeInfo info;
  open(bytes, max_bytes, std::nullopt, nullptr, &info);
  return info;
}

Bytes seal_secret_keys(const ModelId& model, const tfhe::SecretKeys& keys) {
  // The writer is allocated once at its final size: no reallocation leaves key bytes behind.
  Bytes params = tfhe::serialize(keys.params);
  Bytes lwe = tfhe::serialize(keys.lwe, keys.params);
  Bytes glwe = tfhe::serialize(keys.glwe, keys.params);
  tfhe::ByteWriter w = tfhe::ByteWriter::exact_size(kHeaderBytes + 3 * 8 + params.size() + lwe.size() + glwe.size());
  w.zeros(kHeaderBytes);
  put_frame(w, params);
  put_frame(w, lwe);
  put_frame(w, glwe);
  std::fill(lwe.begin(), lwe.end(), 0);  // the key bytes do not linger in freed memory
  std::fill(glwe.begin(), glwe.end(), 0);
  return seal(std::move(w), EnvelopeKind::kSecretKeys, model);
}

tfhe::SecretKeys open_secret_keys(std::span<const std::uint8_t> bytes, const ModelId& model,
                                  const tfhe::ParameterSet& params) {
  const char* what = "secret keys";
  PayloadReader r(open(bytes, kMaxKeyEnvelopeBytes, EnvelopeKind::kSecretKeys, &model, nullptr), what);
  const auto p = load_inner(what, "parameter set", [&] { return tfhe::deserialize_parameter_set(r.frame("parameter set")); });
  if (p.id() != params.id())
    fail(what, "made for parameter set " + p.describe() + ", the model uses " + params.describe());
  auto lwe = load_inner(what, "LWE secret key", [&] { return tfhe::deserialize_lwe_secret_key(r.frame("LWE key"), params); });
  auto glwe = load_inner(what, "GLWE secret key", [&] { return tfhe::deserialize_glwe_secret_key(r.frame("GLWE key"), params); });
  r.expect_end();
  return tfhe::SecretKeys{params, std::move(lwe), std::move(glwe)};
}

Bytes seal_evaluation_keys(const ModelId& model, const tfhe::SeededEvaluationKeys* keys) {
  tfhe::ByteWriter w = envelope_writer();
  w.u8(keys ? 1 : 0);
  if (keys) put_frame(w, tfhe::serialize(*keys));
  return seal(std::move(w), EnvelopeKind::kEvaluationKeys, model);
}

std::uint64_t evaluation_keys_envelope_bytes(const tfhe::ParameterSet& params, bool uses_bootstrapping) {
  // seal_evaluation_keys: the presence byte, then the keys' frame behind its u64 length.
  return kHeaderBytes + 1 + (uses_bootstrapping ? 8 + tfhe::seeded_evaluation_keys_bytes(params) : 0);
}

std::optional<tfhe::SeededEvaluationKeys> open_evaluation_keys(std::span<const std::uint8_t> bytes, const ModelId& model,
                                                               const tfhe::ParameterSet& params, std::uint64_t max_bytes) {
  const char* what = "evaluation keys";
  PayloadReader r(open(bytes, max_bytes, EnvelopeKind::kEvaluationKeys, &model, nullptr), what);
  const std::uint8_t present = r.u8("presence flag");
  if (present > 1) fail(what, "presence flag is " + std::to_string(present));
  if (present == 0) {
    r.expect_end();
    return std::nullopt;
  }
  auto keys = load_inner(what, "seeded keys", [&] { return tfhe::deserialize_seeded_evaluation_keys(r.frame("keys"), &params); });
  r.expect_end();
  return keys;
}

Bytes seal_input_batch(const ModelId& model, const tfhe::ParameterSet& params,
                       const std::vector<std::vector<tfhe::SeededLweCiphertextList>>& rows) {
  return seal_batch(EnvelopeKind::kInputBatch, model, rows,
                    [&](const tfhe::SeededLweCiphertextList& l) { return tfhe::serialize(l, params); });
}

std::vector<std::vector<tfhe::SeededLweCiphertextList>> open_input_batch(std::span<const std::uint8_t> bytes,
                                                                         const ModelId& model,
                                                                         const tfhe::ParameterSet& params,
                                                                         std::uint64_t max_bytes) {
  return open_batch<tfhe::SeededLweCiphertextList>(
      EnvelopeKind::kInputBatch, bytes, model, max_bytes,
      [&](std::span<const std::uint8_t> f) { return tfhe::deserialize_seeded_lwe_ciphertext_list(f, params); });
}

Bytes seal_output_batch(const ModelId& model, const tfhe::ParameterSet& params,
                        const std::vector<std::vector<tfhe::LweCiphertextList>>& rows,
                        const std::vector<unsigned>& modulus_bits) {
  const std::size_t tensors = rows.empty() ? 0 : rows[0].size();
  if (!modulus_bits.empty() && modulus_bits.size() != tensors)
    throw std::invalid_argument("seal_output_batch: " + std::to_string(modulus_bits.size()) + " moduli for " +
                                std::to_string(tensors) + " tensors a row");
  std::size_t next = 0;  // seal_batch serializes row after row, tensor after tensor
  return seal_batch(EnvelopeKind::kOutputBatch, model, rows, [&](const tfhe::LweCiphertextList& l) {
    const std::size_t t = next++ % tensors;
    return modulus_bits.empty() ? tfhe::serialize(l, params) : tfhe::serialize_modulus_switched(l, modulus_bits[t], params);
  });
}

Bytes seal_packed_output_batch(const ModelId& model, const tfhe::ParameterSet& params,
                               const std::vector<tfhe::PackedAnswer>& rows) {
  std::vector<std::vector<const tfhe::PackedAnswer*>> one_each;
  one_each.reserve(rows.size());
  for (const auto& r : rows) one_each.push_back({&r});
  return seal_batch(EnvelopeKind::kOutputBatch, model, one_each,
                    [&](const tfhe::PackedAnswer* a) { return tfhe::serialize(*a, params); });
}

std::vector<OutputRow> open_output_batch(std::span<const std::uint8_t> bytes, const ModelId& model,
                                         const tfhe::ParameterSet& params, std::uint64_t max_bytes) {
  auto rows = open_batch<OutputRow>(
      EnvelopeKind::kOutputBatch, bytes, model, max_bytes,
      [&](std::span<const std::uint8_t> f) {
        // Full words, switched (format 1.2) or packed (1.3): the frame's type says which.
        const auto type = f.size() >= 64 ? tfhe::inspect_frame(f, f.size()).type : tfhe::ObjectType::kLweCiphertextList;
        OutputRow one;
        if (type == tfhe::ObjectType::kPackedAnswer) {
          one.packed = tfhe::deserialize_packed_answer(f, params);
        } else if (type == tfhe::ObjectType::kModulusSwitchedLweCiphertextList) {
          one.tensors.push_back(tfhe::deserialize_modulus_switched_lwe_ciphertext_list(f, params));
        } else {
          one.tensors.push_back(tfhe::deserialize_lwe_ciphertext_list(f, params));
        }
        return one;
      });
  // One OutputRow a frame above; a row is its frames' lists, packed when its one frame is.
  std::vector<OutputRow> out;
  out.reserve(rows.size());
  for (std::size_t r = 0; r < rows.size(); ++r) {
    OutputRow row;
    for (auto& frame : rows[r]) {
      if (frame.packed && rows[r].size() != 1)
        fail("encrypted output batch", "row " + std::to_string(r) + " holds a packed answer beside " +
                                           std::to_string(rows[r].size() - 1) + " other frames");
      if (frame.packed)
        row.packed = std::move(frame.packed);
      else
        row.tensors.push_back(std::move(frame.tensors.front()));
    }
    out.push_back(std::move(row));
  }
  return out;
}

}  // namespace veil::deploy
