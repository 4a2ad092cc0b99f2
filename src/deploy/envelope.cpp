// Envelopes (envelope.hpp; docs/formats/deploy.md).
#include "veil/deploy/envelope.hpp"

#include <algorithm>
#include <cstring>

#include "veil/tfhe/byte_reader.hpp"
#include "veil/tfhe/serialization.hpp"
#include "veil/tfhe/sha256.hpp"

namespace veil::deploy {
namespace {

constexpr std::array<std::uint8_t, 8> kMagic = {'V', 'E', 'I', 'L', 'E', 'N', 'V', 'L'};
constexpr std::size_t kHeaderBytes = 64;
// Rows and tensors per row of one batch: bounds what a count field can make us allocate.
constexpr std::uint32_t kMaxRows = 1u << 20;
constexpr std::uint32_t kMaxTensorsPerRow = 1u << 10;

void put(Bytes& out, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
std::uint64_t get(std::span<const std::uint8_t> b, std::size_t at, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= static_cast<std::uint64_t>(b[at + static_cast<std::size_t>(i)]) << (8 * i);
  return v;
}

void put_frame(Bytes& out, const Bytes& frame) {
  put(out, frame.size(), 8);
  out.insert(out.end(), frame.begin(), frame.end());
}

Bytes seal(EnvelopeKind kind, const ModelId& model, const Bytes& payload) {
  Bytes out;
  out.reserve(kHeaderBytes + payload.size());
  out.insert(out.end(), kMagic.begin(), kMagic.end());
  put(out, kEnvelopeMajor, 2);
  put(out, kEnvelopeMinor, 2);
  put(out, static_cast<std::uint16_t>(kind), 2);
  put(out, 0, 2);
  out.insert(out.end(), model.begin(), model.end());
  put(out, payload.size(), 8);
  const auto sum = tfhe::sha256(payload);
  out.insert(out.end(), sum.begin(), sum.begin() + 16);
  put(out, 0, 8);
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
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
  if (!std::equal(kMagic.begin(), kMagic.end(), bytes.begin())) fail(what, "not a Veil envelope (bad magic)");
  EnvelopeInfo info;
  info.major = static_cast<std::uint16_t>(get(bytes, 8, 2));
  info.minor = static_cast<std::uint16_t>(get(bytes, 10, 2));
  if (info.major != kEnvelopeMajor || info.minor > kEnvelopeMinor)
    fail(what, "format version " + std::to_string(info.major) + "." + std::to_string(info.minor) +
                   " cannot be read by this Veil (reads " + std::to_string(kEnvelopeMajor) + ".0 to " +
                   std::to_string(kEnvelopeMajor) + "." + std::to_string(kEnvelopeMinor) + ")");
  const auto k = get(bytes, 12, 2);
  if (k < 1 || k > 4) fail(what, "unknown kind " + std::to_string(k));
  info.kind = static_cast<EnvelopeKind>(k);
  if (kind && info.kind != *kind)
    fail(what, std::string("the file holds ") + envelope_kind_name(info.kind) + ", not " + envelope_kind_name(*kind));
  std::copy(bytes.begin() + 16, bytes.begin() + 32, info.model_id.begin());
  info.payload_bytes = get(bytes, 32, 8);
  if (info.payload_bytes != bytes.size() - kHeaderBytes)
    fail(what, "header announces a payload of " + std::to_string(info.payload_bytes) + " bytes, " +
                   std::to_string(bytes.size() - kHeaderBytes) + " are present (truncated or padded)");
  const auto payload = bytes.subspan(kHeaderBytes);
  const auto sum = tfhe::sha256(payload);
  if (!std::equal(sum.begin(), sum.begin() + 16, bytes.begin() + 40)) fail(what, "checksum mismatch: the file is corrupted");
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
  Bytes payload;
  put(payload, rows.size(), 4);
  put(payload, tensors, 4);
  for (const auto& row : rows) {
    if (row.size() != tensors) throw std::invalid_argument("batch rows hold different numbers of tensors");
    for (const auto& t : row) put_frame(payload, ser(t));
  }
  return seal(kind, model, payload);
}

template <class List, class Load>
std::vector<std::vector<List>> open_batch(EnvelopeKind kind, std::span<const std::uint8_t> bytes, const ModelId& model,
                                          std::uint64_t max_bytes, Load&& load) {
  const char* what = envelope_kind_name(kind);
  PayloadReader r(open(bytes, max_bytes, kind, &model, nullptr), what);
  const auto rows = static_cast<std::uint32_t>(r.uint(4, "row count"));
  const auto tensors = static_cast<std::uint32_t>(r.uint(4, "tensors per row"));
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
  if (hex.size() != 32) throw std::invalid_argument("model id '" + hex + "' is not 32 hex digits");
  ModelId id{};
  for (std::size_t i = 0; i < 32; ++i) {
    const char c = hex[i];
    int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (v < 0) throw std::invalid_argument("model id '" + hex + "' is not 32 hex digits");
    id[i / 2] = static_cast<std::uint8_t>(id[i / 2] | (v << (i % 2 ? 0 : 4)));
  }
  return id;
}

bool looks_like_envelope(std::span<const std::uint8_t> bytes) {
  return bytes.size() >= kMagic.size() && std::equal(kMagic.begin(), kMagic.end(), bytes.begin());
}

EnvelopeInfo inspect_envelope(std::span<const std::uint8_t> bytes, std::uint64_t max_bytes) {
  EnvelopeInfo info;
  open(bytes, max_bytes, std::nullopt, nullptr, &info);
  return info;
}

Bytes seal_secret_keys(const ModelId& model, const tfhe::SecretKeys& keys) {
  Bytes payload;
  put_frame(payload, tfhe::serialize(keys.params));
  put_frame(payload, tfhe::serialize(keys.lwe, keys.params));
  put_frame(payload, tfhe::serialize(keys.glwe, keys.params));
  Bytes out = seal(EnvelopeKind::kSecretKeys, model, payload);
  std::fill(payload.begin(), payload.end(), 0);  // the key bytes do not linger in freed memory
  return out;
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
  Bytes payload;
  put(payload, keys ? 1 : 0, 1);
  if (keys) put_frame(payload, tfhe::serialize(*keys));
  return seal(EnvelopeKind::kEvaluationKeys, model, payload);
}

std::uint64_t evaluation_keys_envelope_bytes(const tfhe::ParameterSet& params, bool uses_bootstrapping) {
  // seal_evaluation_keys: the presence byte, then the keys' frame behind its u64 length.
  return kHeaderBytes + 1 + (uses_bootstrapping ? 8 + tfhe::seeded_evaluation_keys_bytes(params) : 0);
}

std::optional<tfhe::SeededEvaluationKeys> open_evaluation_keys(std::span<const std::uint8_t> bytes, const ModelId& model,
                                                               const tfhe::ParameterSet& params, std::uint64_t max_bytes) {
  const char* what = "evaluation keys";
  PayloadReader r(open(bytes, max_bytes, EnvelopeKind::kEvaluationKeys, &model, nullptr), what);
  const auto present = r.uint(1, "presence flag");
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
                        const std::vector<std::vector<tfhe::LweCiphertextList>>& rows) {
  return seal_batch(EnvelopeKind::kOutputBatch, model, rows,
                    [&](const tfhe::LweCiphertextList& l) { return tfhe::serialize(l, params); });
}

std::vector<std::vector<tfhe::LweCiphertextList>> open_output_batch(std::span<const std::uint8_t> bytes,
                                                                    const ModelId& model,
                                                                    const tfhe::ParameterSet& params,
                                                                    std::uint64_t max_bytes) {
  return open_batch<tfhe::LweCiphertextList>(
      EnvelopeKind::kOutputBatch, bytes, model, max_bytes,
      [&](std::span<const std::uint8_t> f) { return tfhe::deserialize_lwe_ciphertext_list(f, params); });
}

}  // namespace veil::deploy
