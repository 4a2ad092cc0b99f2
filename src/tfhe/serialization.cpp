// Byte formats of keys and ciphertexts (docs/formats/tfhe.md is the reference).
//
// Every frame is written in one pass into a buffer sized exactly up front (so that a secret
// key's bytes are never left behind in a reallocated block), then the header is completed
// with the payload's checksum. Loading never trusts a length: the declared payload length is
// checked against the caller's limit and the bytes actually present, every shape field is
// compared with the expected parameter set, and every byte count is computed with overflow
// checks, all before the object is allocated. Allocations are therefore bounded by the
// input's own size.
// Thread safety: pure functions.
#include "veil/tfhe/serialization.hpp"

#include "veil/tfhe/coding.hpp"
#include "veil/tfhe/sha256.hpp"


#include <algorithm>
#include <array>
#include <bit>
#include <cstdio>
#include <cstring>
#include <limits>
#include <optional>
#include <string>

namespace veil::tfhe {
namespace {

constexpr std::size_t kHeaderBytes = kFrameHeaderBytes;
constexpr FrameMagic kMagic = {'V', 'E', 'I', 'L', 'T', 'F', 'H', 'E'};
// The frame header (coding.hpp): the owner id is the parameter set's (a u64).
constexpr FrameLayout kLayout{kMagic, 8};
// A name is for humans; the cap keeps a hostile file from making one large.
constexpr std::size_t kMaxNameBytes = 256;

std::string hex64(std::uint64_t v) { return "0x" + to_hex_u64(v); }

std::string set_label(const ParameterSet& params) {
  return params.name.empty() ? "(unnamed, id " + hex64(params.id()) + ")" : params.name;
}

[[noreturn]] void fail(ObjectType type, const std::string& what) {
  throw FormatError(std::string(object_type_name(type)) + ": " + what);
}

bool is_known_type(std::uint16_t tag) { return tag >= 1 && tag <= 15; }

std::string type_label(std::uint16_t tag) {
  return is_known_type(tag) ? std::string(object_type_name(static_cast<ObjectType>(tag))) : "unknown type";
}

// a * b, refusing to wrap: the factors come from untrusted shape fields.
std::uint64_t checked_mul(ObjectType type, std::uint64_t a, std::uint64_t b) {
  std::uint64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r))
    fail(type, "size overflow: " + std::to_string(a) + " x " + std::to_string(b) + " exceeds 2^64");
  return r;
}
std::uint64_t checked_add(ObjectType type, std::uint64_t a, std::uint64_t b) {
  std::uint64_t r = 0;
  if (__builtin_add_overflow(a, b, &r))
    fail(type, "size overflow: " + std::to_string(a) + " + " + std::to_string(b) + " exceeds 2^64");
  return r;
}

// Bytes of `count` values of `bits` bits packed end to end. REQUIRES: no overflow (callers
// bound count by a payload length first, or by an object already in memory).
std::uint64_t packed_bytes(std::uint64_t count, unsigned bits) { return (count / 8) * bits + ((count % 8) * bits + 7) / 8; }

// Appends into a buffer whose final size is known in advance; finish() checks that the
// payload writer produced exactly the announced size.
class Writer {
 public:
  explicit Writer(std::span<std::uint8_t> out) : out_(out) {}
  void u64(std::uint64_t v) {
    encode_fixed64(take(8), v);
  }
  void f64(double v) { u64(std::bit_cast<std::uint64_t>(v)); }
  void seed(const Seed& s) { std::memcpy(take(s.bytes.size()), s.bytes.data(), s.bytes.size()); }
  void raw(std::span<const std::uint8_t> bytes) {
    if (!bytes.empty()) std::memcpy(take(bytes.size()), bytes.data(), bytes.size());
  }
  void words(std::span<const Torus> w) {
    if (w.empty()) return;
    std::uint8_t* p = take(w.size() * 8);
    if constexpr (std::endian::native == std::endian::little) {
      std::memcpy(p, w.data(), w.size() * 8);
    } else {
      for (std::size_t i = 0; i < w.size(); ++i) encode_fixed64(p + 8 * i, w[i]);
    }
  }
  // Each value's low `bits` bits, least significant first (packed_bytes bytes; "Packed
  // words" in docs/formats/tfhe.md). REQUIRES: every value < 2^bits.
  void packed(std::span<const Torus> values, unsigned bits) {
    std::uint8_t* p = take(packed_bytes(values.size(), bits));
    unsigned __int128 acc = 0;
    unsigned held = 0;
    for (const Torus v : values) {
      acc |= static_cast<unsigned __int128>(v) << held;
      held += bits;
      while (held >= 8) {
        *p++ = static_cast<std::uint8_t>(acc);
        acc >>= 8;
        held -= 8;
      }
    }
    if (held > 0) *p = static_cast<std::uint8_t>(acc);
  }
  std::size_t position() const { return pos_; }

 private:
  std::uint8_t* take(std::size_t n) {
    if (n > out_.size() - pos_) throw std::logic_error("serialization: payload larger than announced");
    std::uint8_t* p = out_.data() + pos_;
    pos_ += n;
    return p;
  }
  std::span<std::uint8_t> out_;
  std::size_t pos_ = 0;
};

// Reads a payload; every read checks the bytes left and names the field it was reading.
struct TypedFail {
  ObjectType type;
  [[noreturn]] void operator()(const std::string& what) const { fail(type, what); }
};
class Reader : public ByteReader<TypedFail> {
 public:
  Reader(std::span<const std::uint8_t> bytes, ObjectType type) : ByteReader(bytes, TypedFail{type}), type_(type) {}
  ObjectType type() const { return type_; }

  double f64(const char* field) { return std::bit_cast<double>(u64(field)); }
  Seed seed(const char* field) {
    Seed s;
    std::memcpy(s.bytes.data(), take(s.bytes.size(), field), s.bytes.size());
    return s;
  }
  std::span<const std::uint8_t> raw(std::size_t n, const char* field) { return {take(n, field), n}; }
  // REQUIRES: the caller checked remaining() against out.size() * 8 (no overflow possible).
  void words(std::span<Torus> out, const char* field) {
    if (out.empty()) return;
    const std::uint8_t* p = take(out.size() * 8, field);
    if constexpr (std::endian::native == std::endian::little) {
      std::memcpy(out.data(), p, out.size() * 8);
    } else {
      for (std::size_t i = 0; i < out.size(); ++i) out[i] = decode_fixed64(p + 8 * i);
    }
  }
  // Inverse of Writer::packed; the last byte's unused high bits must be zero (one encoding
  // per object). REQUIRES: the caller checked remaining() against packed_bytes.
  void packed(std::span<Torus> out, unsigned bits, const char* field) {
    const std::uint64_t n = packed_bytes(out.size(), bits);
    const std::uint8_t* p = take(n, field);
    const Torus mask = bits == 64 ? ~Torus{0} : (Torus{1} << bits) - 1;
    unsigned __int128 acc = 0;
    unsigned held = 0;
    for (Torus& v : out) {
      while (held < bits) {
        acc |= static_cast<unsigned __int128>(*p++) << held;
        held += 8;
      }
      v = static_cast<Torus>(acc) & mask;
      acc >>= bits;
      held -= bits;
    }
    if (acc != 0) fail(std::string(field) + ": the unused bits of the last byte are not zero");
  }
  // The next section holds `word_count` words; `last` demands that it ends the payload.
  void expect_words(std::uint64_t word_count, const char* field, const std::string& shape, bool last) {
    const std::uint64_t need = checked_mul(type_, word_count, 8);
    if (last ? remaining() != need : remaining() < need)
      fail(std::string(last ? "payload holds " : "only ") + std::to_string(remaining()) + " bytes" +
           (last ? " for " : " remain for ") + field + ", " + shape + " needs " + std::to_string(word_count) +
           " words (" + std::to_string(need) + " bytes)");
  }

 private:
  ObjectType type_;
};

// A shape field must equal what the parameter set implies.
void expect_field(ObjectType type, const char* field, std::uint64_t found, std::uint64_t expected,
                  const ParameterSet& params) {
  if (found != expected)
    fail(type, "payload says " + std::string(field) + " " + std::to_string(found) + ", parameter set " +
                   set_label(params) + " expects " + std::to_string(expected));
}

// Contract check on the writing side: an object that cannot be loaded back is not written.
void require(bool ok, ObjectType type, const std::string& what) {
  if (!ok) throw std::invalid_argument(std::string("serialize ") + object_type_name(type) + ": " + what);
}
void require_equal(ObjectType type, const char* field, std::uint64_t found, std::uint64_t expected,
                   const ParameterSet& params) {
  require(found == expected, type,
          std::string(field) + " is " + std::to_string(found) + ", parameter set " + set_label(params) + " has " +
              std::to_string(expected));
}

// ---------------------------------------------------------------- frames

// Builds one frame: `write` must put exactly `payload_bytes` bytes.
template <class WritePayload>
Bytes make_frame(ObjectType type, std::uint64_t parameter_id, std::size_t payload_bytes, WritePayload&& write) {
  Bytes out(kHeaderBytes + payload_bytes, 0);
  std::span<std::uint8_t> payload(out.data() + kHeaderBytes, payload_bytes);
  Writer w(payload);
  write(w);
  if (w.position() != payload_bytes) throw std::logic_error("serialization: payload smaller than announced");
  FrameHeader header;
  header.major = kFormatMajor;
  header.minor = kFormatMinor;
  header.type = static_cast<std::uint16_t>(type);
  header.set_id_u64(parameter_id);
  seal_frame(kLayout, header, out);
  return out;
}

struct OpenedFrame {
  FrameInfo info;
  std::span<const std::uint8_t> payload;
};

// The header checks, in the documented order. `expected_type` empty: any known type
// (inspect); `expected_id` empty: the id is checked later against the payload.
OpenedFrame open_frame(std::span<const std::uint8_t> bytes, std::uint64_t max_bytes,
                       std::optional<ObjectType> expected_type, std::optional<std::uint64_t> expected_id,
                       const ParameterSet* expected_params) {
  // Messages name what the caller is loading; inspect names the frame itself.
  auto fail_here = [&](const std::string& what) -> void {
    throw FormatError(std::string(expected_type ? object_type_name(*expected_type) : "frame") + ": " + what);
  };
  if (bytes.size() < kHeaderBytes)
    fail_here(std::to_string(bytes.size()) + " bytes is shorter than the " + std::to_string(kHeaderBytes) +
              "-byte header");
  const FrameHeader h = decode_frame_header(kLayout, bytes);
  FrameInfo info;
  info.payload_bytes = h.payload_bytes;
  if (info.payload_bytes > max_bytes)
    fail_here("header declares a payload of " + std::to_string(info.payload_bytes) + " bytes, above the limit of " +
              std::to_string(max_bytes) + " bytes");
  const std::uint64_t present = bytes.size() - kHeaderBytes;
  if (info.payload_bytes != present)
    fail_here("header declares a payload of " + std::to_string(info.payload_bytes) + " bytes, but " +
              std::to_string(present) + " bytes follow the header");
  if (h.magic != kMagic)
    fail_here("not a Veil TFHE object: magic is " + to_hex(h.magic) + ", expected " + to_hex(kMagic) + " (\"VEILTFHE\")");
  info.major = h.major;
  info.minor = h.minor;
  const std::string found_version = std::to_string(info.major) + "." + std::to_string(info.minor);
  const std::string own_version = std::to_string(kFormatMajor) + "." + std::to_string(kFormatMinor);
  if (info.major != kFormatMajor)
    fail_here("format version " + found_version + " has a different major version than this reader's " +
              own_version);
  if (info.minor > kFormatMinor)
    fail_here("format version " + found_version + " is newer than this reader's " + own_version);
  if (h.reserved != 0) fail_here("reserved header field at offset 14 is " + std::to_string(h.reserved) + ", expected 0");
  if (const std::size_t i = h.nonzero_reserved_offset; i != 0)
    fail_here("reserved header byte at offset " + std::to_string(i) + " is " + std::to_string(bytes[i]) +
              ", expected 0");
  const std::uint16_t tag = h.type;
  if (expected_type) {
    if (tag != static_cast<std::uint16_t>(*expected_type))
      fail_here("frame holds type tag " + std::to_string(tag) + " (" + type_label(tag) + "), expected " +
                std::to_string(static_cast<std::uint16_t>(*expected_type)));
  } else if (!is_known_type(tag)) {
    fail_here("unknown type tag " + std::to_string(tag));
  }
  info.type = static_cast<ObjectType>(tag);
  info.parameter_id = h.id_u64();
  if (expected_id && info.parameter_id != *expected_id)
    fail_here("header parameter id " + hex64(info.parameter_id) + " does not match parameter set " +
              (expected_params ? set_label(*expected_params) + " " : std::string()) + "(id " +
              hex64(*expected_id) + ")");
  std::span<const std::uint8_t> payload = bytes.subspan(kHeaderBytes);
  const FrameChecksum sum = frame_checksum(payload);
  if (sum != h.checksum)
    fail_here("checksum mismatch: header says " + to_hex(h.checksum) + ", payload hashes to " + to_hex(sum) +
              " (corrupted or truncated data)");
  return {info, payload};
}

std::span<const std::uint8_t> open_typed(std::span<const std::uint8_t> bytes, std::uint64_t max_bytes,
                                         ObjectType type, const ParameterSet& params) {
  return open_frame(bytes, max_bytes, type, params.id(), &params).payload;
}

// ---------------------------------------------------------------- parameter set payload

std::size_t parameter_set_payload_bytes(const ParameterSet& p) { return 18 * 8 + p.name.size(); }

void write_parameter_set(Writer& w, const ParameterSet& p) {
  // Numeric fields in the order of ParameterSet::id()'s canonical encoding, then the name.
  w.u64(p.message_bits);
  w.u64(p.lwe_dimension.value);
  w.u64(p.glwe_dimension.value);
  w.u64(p.polynomial_size.value);
  w.f64(p.lwe_std_dev);
  w.f64(p.glwe_std_dev);
  w.u64(p.pbs_base_log.value);
  w.u64(p.pbs_level_count.value);
  w.u64(p.ks_base_log.value);
  w.u64(p.ks_level_count.value);
  w.u64(p.grouping.value);
  w.u64(p.answer_polynomial_size.value);
  w.u64(p.answer_base_log.value);
  w.u64(p.answer_level_count.value);
  w.u64(p.answer_key_dimension.value);
  w.f64(p.answer_std_dev);
  w.u64(p.bsk_body_bits);
  w.u64(p.name.size());
  w.raw({reinterpret_cast<const std::uint8_t*>(p.name.data()), p.name.size()});
}

void require_writable_parameter_set(const ParameterSet& p, ObjectType type) {
  require(p.name.size() <= kMaxNameBytes, type,
          "parameter set name is " + std::to_string(p.name.size()) + " bytes, the format allows at most " +
              std::to_string(kMaxNameBytes));
}

// Reads and validates a parameter set of a frame of format minor `minor` and checks it
// against the header's id.
ParameterSet read_parameter_set(Reader& r, std::uint64_t header_id, std::uint16_t minor) {
  const ObjectType type = r.type();
  ParameterSet p;
  const std::uint64_t message_bits = r.u64("message_bits");
  // Narrowing first would let 2^32 + 4 pass as 4.
  if (message_bits > std::numeric_limits<unsigned>::max())
    fail(type, "payload says message_bits " + std::to_string(message_bits) + ", valid range is [1, 8]");
  p.message_bits = static_cast<unsigned>(message_bits);
  p.lwe_dimension = LweDimension(r.u64("lwe_dimension"));
  p.glwe_dimension = GlweDimension(r.u64("glwe_dimension"));
  p.polynomial_size = PolynomialSize(r.u64("polynomial_size"));
  p.lwe_std_dev = r.f64("lwe_std_dev");
  p.glwe_std_dev = r.f64("glwe_std_dev");
  p.pbs_base_log = DecompositionBaseLog(r.u64("pbs_base_log"));
  p.pbs_level_count = DecompositionLevelCount(r.u64("pbs_level_count"));
  p.ks_base_log = DecompositionBaseLog(r.u64("ks_base_log"));
  p.ks_level_count = DecompositionLevelCount(r.u64("ks_level_count"));
  if (minor >= 1) p.grouping = GroupingFactor(r.u64("grouping"));  // 1.0 had only classical sets
  if (minor >= 3) {  // before 1.3, no set packed its answers
    p.answer_polynomial_size = PolynomialSize(r.u64("answer_polynomial_size"));
    p.answer_base_log = DecompositionBaseLog(r.u64("answer_base_log"));
    p.answer_level_count = DecompositionLevelCount(r.u64("answer_level_count"));
  }
  if (minor >= 4) {  // before 1.4, an answer key was as long and as noisy as the big key
    p.answer_key_dimension = GlweDimension(r.u64("answer_key_dimension"));
    p.answer_std_dev = r.f64("answer_std_dev");
  }
  if (minor >= 5) {  // before 1.5, bootstrap key bodies had bootstrap_key_body_bits(glwe_std_dev)
    const std::uint64_t bits = r.u64("bsk_body_bits");
    if (bits > 64) fail(type, "payload says bsk_body_bits " + std::to_string(bits) + ", at most 64");
    p.bsk_body_bits = static_cast<unsigned>(bits);
  }
  const std::uint64_t name_bytes = r.u64("name_length");
  // Later shape arithmetic (k*N in keyswitch_key_shape) is unchecked: refuse here a set
  // whose big dimension does not fit.
  if (std::uint64_t big = 0; __builtin_mul_overflow(p.glwe_dimension.value, p.polynomial_size.value, &big))
    fail(type, "payload says glwe_dimension " + std::to_string(p.glwe_dimension.value) + " and polynomial_size " +
                   std::to_string(p.polynomial_size.value) + ": k*N exceeds 2^64");
  if (name_bytes > kMaxNameBytes)
    fail(type, "payload says name_length " + std::to_string(name_bytes) + ", the format allows at most " +
                   std::to_string(kMaxNameBytes));
  auto name = r.raw(name_bytes, "name");
  p.name.assign(reinterpret_cast<const char*>(name.data()), name.size());
  if (const std::uint64_t id = p.id(); id != header_id)
    fail(type, "header parameter id " + hex64(header_id) + ", but the parameter set in the payload has id " +
                   hex64(id));
  try {
    p.validate();
  } catch (const std::invalid_argument& e) {
    fail(type, std::string("invalid parameter set: ") + e.what());
  }
  return p;
}

// ---------------------------------------------------------------- shapes

std::string bsk_shape_text(const BootstrapKeyShape& s) {
  return "shape n=" + std::to_string(s.input_lwe_dimension.value) + " k=" +
         std::to_string(s.ggsw.glwe_dimension.value) + " N=" + std::to_string(s.ggsw.polynomial_size.value) +
         " l=" + std::to_string(s.ggsw.level_count.value) +
         (s.grouping.value == 1 ? "" : " d=" + std::to_string(s.grouping.value));
}
std::string ksk_shape_text(const KeyswitchKeyShape& s) {
  return "shape " + std::to_string(s.input_lwe_dimension.value) + "->" +
         std::to_string(s.output_lwe_dimension.value) + " l=" + std::to_string(s.level_count.value);
}

void write_ggsw_shape(Writer& w, const GgswShape& g) {
  w.u64(g.glwe_dimension.value);
  w.u64(g.polynomial_size.value);
  w.u64(g.base_log.value);
  w.u64(g.level_count.value);
}
GgswShape read_ggsw_shape(Reader& r, const GgswShape& expected, const ParameterSet& params) {
  const ObjectType t = r.type();
  expect_field(t, "glwe_dimension", r.u64("glwe_dimension"), expected.glwe_dimension.value, params);
  expect_field(t, "polynomial_size", r.u64("polynomial_size"), expected.polynomial_size.value, params);
  expect_field(t, "base_log", r.u64("base_log"), expected.base_log.value, params);
  expect_field(t, "level_count", r.u64("level_count"), expected.level_count.value, params);
  return expected;
}
GgswShape pbs_ggsw_shape(const ParameterSet& p) {
  return {p.glwe_dimension, p.polynomial_size, p.pbs_base_log, p.pbs_level_count};
}

// Words of a GGSW (all rows) and of its bodies only, with overflow checks.
std::uint64_t ggsw_row_count(ObjectType t, const GgswShape& g) {
  return checked_mul(t, checked_add(t, g.glwe_dimension.value, 1), g.level_count.value);
}
std::uint64_t ggsw_words(ObjectType t, const GgswShape& g) {
  const std::uint64_t row_words =
      checked_mul(t, checked_add(t, g.glwe_dimension.value, 1), g.polynomial_size.value);
  return checked_mul(t, ggsw_row_count(t, g), row_words);
}
std::uint64_t ggsw_body_words(ObjectType t, const GgswShape& g) {
  return checked_mul(t, ggsw_row_count(t, g), g.polynomial_size.value);
}

// GGSWs of a bootstrap key: n, or n / d groups of 2^d - 1 (BootstrapKeyShape).
std::uint64_t bsk_ggsw_count(ObjectType t, const BootstrapKeyShape& s) {
  return checked_mul(t, s.group_count(), s.ggsws_per_group());
}

void write_bsk_shape(Writer& w, const BootstrapKeyShape& s) {
  w.u64(s.input_lwe_dimension.value);
  write_ggsw_shape(w, s.ggsw);
}
BootstrapKeyShape read_bsk_shape(Reader& r, const ParameterSet& params) {
  const BootstrapKeyShape expected = bootstrap_key_shape(params);
  expect_field(r.type(), "input_lwe_dimension", r.u64("input_lwe_dimension"), expected.input_lwe_dimension.value,
               params);
  read_ggsw_shape(r, expected.ggsw, params);
  return expected;
}

void write_ksk_shape(Writer& w, const KeyswitchKeyShape& s) {
  w.u64(s.input_lwe_dimension.value);
  w.u64(s.output_lwe_dimension.value);
  w.u64(s.base_log.value);
  w.u64(s.level_count.value);
}
KeyswitchKeyShape read_ksk_shape(Reader& r, const ParameterSet& params) {
  const ObjectType t = r.type();
  const KeyswitchKeyShape expected = keyswitch_key_shape(params);
  expect_field(t, "input_lwe_dimension", r.u64("input_lwe_dimension"), expected.input_lwe_dimension.value, params);
  expect_field(t, "output_lwe_dimension", r.u64("output_lwe_dimension"), expected.output_lwe_dimension.value,
               params);
  expect_field(t, "base_log", r.u64("base_log"), expected.base_log.value, params);
  expect_field(t, "level_count", r.u64("level_count"), expected.level_count.value, params);
  return expected;
}
std::uint64_t ksk_ciphertext_count(ObjectType t, const KeyswitchKeyShape& s) {
  return checked_mul(t, s.input_lwe_dimension.value, s.level_count.value);
}

// LWE ciphertexts (single, list, seeded list) may be under the big key (k*N: between
// lookups, what clients send and receive) or the small key (n: after a keyswitch).
std::uint64_t read_lwe_dimension(Reader& r, const ParameterSet& params) {
  const std::uint64_t found = r.u64("dimension");
  const std::uint64_t big = params.big_lwe_dimension().value;
  const std::uint64_t small = params.lwe_dimension.value;
  if (found != big && found != small)
    fail(r.type(), "payload says dimension " + std::to_string(found) + ", parameter set " + set_label(params) +
                       " expects " + std::to_string(big) + " (k*N) or " + std::to_string(small) + " (n)");
  return found;
}
void require_lwe_dimension(ObjectType type, std::uint64_t found, const ParameterSet& params) {
  const std::uint64_t big = params.big_lwe_dimension().value;
  const std::uint64_t small = params.lwe_dimension.value;
  require(found == big || found == small, type,
          "dimension is " + std::to_string(found) + ", parameter set " + set_label(params) + " has " +
              std::to_string(big) + " (k*N) or " + std::to_string(small) + " (n)");
}

// Secret-key words must be bits: anything else is corruption or a hostile file, and would
// silently break decryption.
void check_key_bits(ObjectType type, std::span<const Torus> bits) {
  for (std::size_t i = 0; i < bits.size(); ++i)
    if (bits[i] > 1)
      fail(type, "key word " + std::to_string(i) + " is " + std::to_string(bits[i]) + ", expected 0 or 1");
}

// ---------------------------------------------------------------- seeded payloads

// Format 1.2 sends every body as its top b bits, bit-packed, behind a u64 b: the bits the
// parameter set's noise model counts (ParameterSet::bootstrap_key_bits(): bsk_body_bits, or
// bootstrap_key_body_bits where that is 0; keyswitch_key_word_bits). Earlier minors sent
// whole words.
unsigned bsk_body_bits(const ParameterSet& p) { return p.bootstrap_key_bits(); }
// The packing key's bodies: rounded as the bootstrap key's, at the answer key's noise.
unsigned packing_body_bits(const ParameterSet& p) { return bootstrap_key_body_bits(p.answer_noise()); }
unsigned ksk_body_bits(const ParameterSet& p) { return keyswitch_key_word_bits(p.lwe_dimension, p.lwe_std_dev); }

std::uint64_t packed_bodies_bytes(std::uint64_t count, unsigned bits) { return 8 + packed_bytes(count, bits); }

// Writes b and the bodies' top b bits. REQUIRES: every body a multiple of 2^(64 - b), as the
// key generator rounds them.
void write_packed_bodies(Writer& w, ObjectType type, std::span<const Torus> bodies, unsigned bits) {
  w.u64(bits);
  if (bits == 64) return w.words(bodies);
  const unsigned shift = 64 - bits;
  std::vector<Torus> top(bodies.size());
  for (std::size_t i = 0; i < bodies.size(); ++i) {
    require((bodies[i] & ((Torus{1} << shift) - 1)) == 0, type,
            "body " + std::to_string(i) + " has bits below its top " + std::to_string(bits) +
                " (keys from generate_seeded_evaluation_keys are rounded to them)");
    top[i] = bodies[i] >> shift;
  }
  w.packed(top, bits);
}

// Reads `count` bodies of a frame of minor `minor`: whole words before 1.2; then b, at least
// `min_bits` (what the noise model counts) and at most 64, and the packed top bits.
void read_packed_bodies(Reader& r, std::uint16_t minor, std::span<Torus> out, unsigned min_bits, const char* field,
                        const std::string& shape, bool last) {
  if (minor < 2) {
    r.expect_words(out.size(), field, shape, last);
    r.words(out, field);
    return;
  }
  const std::uint64_t bits = r.u64("body bits");
  if (bits < min_bits || bits > 64)
    fail(r.type(), "body bits " + std::to_string(bits) + " is not in [" + std::to_string(min_bits) +
                       ", 64]: the parameter set's noise model counts keys rounded to " + std::to_string(min_bits) +
                       " bits");
  const std::uint64_t need = packed_bytes(out.size(), static_cast<unsigned>(bits));  // out.size() < 2^61 (allocated)
  if (last ? r.remaining() != need : r.remaining() < need)
    fail(r.type(), std::string(last ? "payload holds " : "only ") + std::to_string(r.remaining()) + " bytes" +
                       (last ? " for " : " remain for ") + field + ", " + shape + " needs " + std::to_string(out.size()) +
                       " bodies of " + std::to_string(bits) + " bits (" + std::to_string(need) + " bytes)");
  if (bits == 64) return r.words(out, field);
  r.packed(out, static_cast<unsigned>(bits), field);
  for (Torus& w : out) w <<= 64 - bits;
}

// The bodies of a seeded key: `words` of them, refused before allocating when the payload
// cannot hold them at one bit a body, then read_packed_bodies.
AlignedVector<Torus> read_seeded_bodies(Reader& r, std::uint16_t minor, std::uint64_t words, unsigned min_bits,
                                        const char* field, const std::string& shape, bool last) {
  if (words / 8 > r.remaining())
    fail(r.type(), "only " + std::to_string(r.remaining()) + " bytes remain for " + field + ", " + shape + " needs " +
                       std::to_string(words) + " bodies");
  AlignedVector<Torus> bodies(words);
  read_packed_bodies(r, minor, bodies, min_bits, field, shape, last);
  return bodies;
}

std::size_t seeded_bsk_payload_bytes(const SeededLweBootstrapKey& k, const ParameterSet& p) {
  return 5 * 8 + 16 + packed_bodies_bytes(k.bodies.size(), bsk_body_bits(p));
}
void require_seeded_bsk(ObjectType type, const SeededLweBootstrapKey& key, const ParameterSet& params) {
  require(key.shape == bootstrap_key_shape(params), type,
          bsk_shape_text(key.shape) + " differs from parameter set " + set_label(params) + "'s " +
              bsk_shape_text(bootstrap_key_shape(params)));
  require_equal(type, "body word count", key.bodies.size(),
                key.shape.ggsw_count() * key.shape.ggsw.row_count() * key.shape.ggsw.polynomial_size.value,
                params);
}
void write_seeded_bsk(Writer& w, ObjectType type, const SeededLweBootstrapKey& key, const ParameterSet& p) {
  write_bsk_shape(w, key.shape);
  w.seed(key.seed);
  write_packed_bodies(w, type, key.bodies, bsk_body_bits(p));
}
SeededLweBootstrapKey read_seeded_bsk(Reader& r, const ParameterSet& params, std::uint16_t minor, bool last) {
  const BootstrapKeyShape shape = read_bsk_shape(r, params);
  const Seed seed = r.seed("seed");
  const std::uint64_t words = checked_mul(r.type(), bsk_ggsw_count(r.type(), shape), ggsw_body_words(r.type(), shape.ggsw));
  return {shape, seed,
          read_seeded_bodies(r, minor, words, bsk_body_bits(params), "the bootstrap key bodies", bsk_shape_text(shape), last)};
}

std::size_t seeded_ksk_payload_bytes(const SeededLweKeyswitchKey& k, const ParameterSet& p) {
  return 4 * 8 + 16 + packed_bodies_bytes(k.bodies.size(), ksk_body_bits(p));
}
void require_seeded_ksk(ObjectType type, const SeededLweKeyswitchKey& key, const ParameterSet& params) {
  require(key.shape == keyswitch_key_shape(params), type,
          ksk_shape_text(key.shape) + " differs from parameter set " + set_label(params) + "'s " +
              ksk_shape_text(keyswitch_key_shape(params)));
  require_equal(type, "body word count", key.bodies.size(), key.shape.ciphertext_count(), params);
}
void write_seeded_ksk(Writer& w, ObjectType type, const SeededLweKeyswitchKey& key, const ParameterSet& p) {
  write_ksk_shape(w, key.shape);
  w.seed(key.seed);
  write_packed_bodies(w, type, key.bodies, ksk_body_bits(p));
}
SeededLweKeyswitchKey read_seeded_ksk(Reader& r, const ParameterSet& params, std::uint16_t minor, bool last = true) {
  const KeyswitchKeyShape shape = read_ksk_shape(r, params);
  const Seed seed = r.seed("seed");
  const std::uint64_t words = ksk_ciphertext_count(r.type(), shape);
  return {shape, seed,
          read_seeded_bodies(r, minor, words, ksk_body_bits(params), "the keyswitch key bodies", ksk_shape_text(shape), last)};
}

std::string packing_shape_text(const PackingKeyShape& s) {
  return "shape K=" + std::to_string(s.input_lwe_dimension.value) + " k'=" + std::to_string(s.glwe_dimension.value) +
         " N'=" + std::to_string(s.polynomial_size.value) + " base_log=" + std::to_string(s.base_log.value) +
         " levels=" + std::to_string(s.level_count.value);
}
std::size_t seeded_packing_payload_bytes(std::size_t bodies, const ParameterSet& p) {
  return 5 * 8 + 16 + packed_bodies_bytes(bodies, packing_body_bits(p));
}
void require_seeded_packing(ObjectType type, const SeededPackingKey& key, const ParameterSet& params) {
  require(key.shape == packing_key_shape(params), type,
          "packing key " + packing_shape_text(key.shape) + " differs from parameter set " + set_label(params) + "'s " +
              packing_shape_text(packing_key_shape(params)));
  require_equal(type, "packing key body count", key.bodies.size(),
                key.shape.ciphertext_count() * key.shape.polynomial_size.value, params);
}
void write_seeded_packing(Writer& w, ObjectType type, const SeededPackingKey& key, const ParameterSet& p) {
  w.u64(key.shape.input_lwe_dimension.value);
  w.u64(key.shape.glwe_dimension.value);
  w.u64(key.shape.polynomial_size.value);
  w.u64(key.shape.base_log.value);
  w.u64(key.shape.level_count.value);
  w.seed(key.seed);
  write_packed_bodies(w, type, key.bodies, packing_body_bits(p));
}
SeededPackingKey read_seeded_packing(Reader& r, const ParameterSet& params, std::uint16_t minor) {
  const PackingKeyShape expected = packing_key_shape(params);
  PackingKeyShape shape;
  shape.input_lwe_dimension = LweDimension(r.u64("packing input dimension"));
  shape.glwe_dimension = GlweDimension(r.u64("packing glwe_dimension"));
  shape.polynomial_size = PolynomialSize(r.u64("packing polynomial_size"));
  shape.base_log = DecompositionBaseLog(r.u64("packing base_log"));
  shape.level_count = DecompositionLevelCount(r.u64("packing level_count"));
  if (!(shape == expected))
    fail(r.type(), "packing key " + packing_shape_text(shape) + " differs from parameter set " + set_label(params) + "'s " +
                       packing_shape_text(expected));
  const Seed seed = r.seed("seed");
  const std::uint64_t words =
      checked_mul(r.type(), checked_mul(r.type(), expected.input_lwe_dimension.value, expected.level_count.value),
                  expected.polynomial_size.value);
  return {shape, seed,
          read_seeded_bodies(r, minor, words, packing_body_bits(params), "the packing key bodies", packing_shape_text(shape), true)};
}

}  // namespace

const char* object_type_name(ObjectType type) {
  switch (type) {
    case ObjectType::kLweSecretKey: return "LWE secret key";
    case ObjectType::kGlweSecretKey: return "GLWE secret key";
    case ObjectType::kLweCiphertext: return "LWE ciphertext";
    case ObjectType::kLweCiphertextList: return "LWE ciphertext list";
    case ObjectType::kSeededLweCiphertextList: return "seeded LWE ciphertext list";
    case ObjectType::kGlweCiphertext: return "GLWE ciphertext";
    case ObjectType::kGgswCiphertext: return "GGSW ciphertext";
    case ObjectType::kLweBootstrapKey: return "LWE bootstrap key";
    case ObjectType::kSeededLweBootstrapKey: return "seeded LWE bootstrap key";
    case ObjectType::kLweKeyswitchKey: return "LWE keyswitch key";
    case ObjectType::kSeededLweKeyswitchKey: return "seeded LWE keyswitch key";
    case ObjectType::kSeededEvaluationKeys: return "seeded evaluation keys";
    case ObjectType::kParameterSet: return "parameter set";
    case ObjectType::kModulusSwitchedLweCiphertextList: return "modulus-switched LWE ciphertext list";
    case ObjectType::kPackedAnswer: return "packed answer";
  }
  return "unknown object type";
}

FrameInfo inspect_frame(std::span<const std::uint8_t> bytes, std::uint64_t max_bytes) {
  return open_frame(bytes, max_bytes, std::nullopt, std::nullopt, nullptr).info;
}

// ---------------------------------------------------------------- parameter set

Bytes serialize(const ParameterSet& params) {
  constexpr ObjectType kType = ObjectType::kParameterSet;
  require_writable_parameter_set(params, kType);
  return make_frame(kType, params.id(), parameter_set_payload_bytes(params),
                    [&](Writer& w) { write_parameter_set(w, params); });
}

ParameterSet deserialize_parameter_set(std::span<const std::uint8_t> bytes, std::uint64_t max_bytes) {
  constexpr ObjectType kType = ObjectType::kParameterSet;
  const OpenedFrame frame = open_frame(bytes, max_bytes, kType, std::nullopt, nullptr);
  Reader r(frame.payload, kType);
  ParameterSet p = read_parameter_set(r, frame.info.parameter_id, frame.info.minor);
  r.expect_end();
  return p;
}

// ---------------------------------------------------------------- secret keys

Bytes serialize(const LweSecretKey& key, const ParameterSet& params) {
  constexpr ObjectType kType = ObjectType::kLweSecretKey;
  require_equal(kType, "dimension", key.dimension().value, params.lwe_dimension.value, params);
  return make_frame(kType, params.id(), 8 + key.bits().size() * 8, [&](Writer& w) {
    w.u64(key.dimension().value);
    w.words(key.bits());
  });
}

LweSecretKey deserialize_lwe_secret_key(std::span<const std::uint8_t> bytes, const ParameterSet& params,
                                        std::uint64_t max_bytes) {
  constexpr ObjectType kType = ObjectType::kLweSecretKey;
  Reader r(open_typed(bytes, max_bytes, kType, params), kType);
  const std::uint64_t n = params.lwe_dimension.value;
  expect_field(kType, "dimension", r.u64("dimension"), n, params);
  r.expect_words(n, "the key bits", "dimension " + std::to_string(n), true);
  LweSecretKey key(params.lwe_dimension);
  r.words(key.mutable_bits(), "bits");
  check_key_bits(kType, key.bits());
  return key;
}

Bytes serialize(const GlweSecretKey& key, const ParameterSet& params) {
  constexpr ObjectType kType = ObjectType::kGlweSecretKey;
  require_equal(kType, "glwe_dimension", key.glwe_dimension().value, params.glwe_dimension.value, params);
  require_equal(kType, "polynomial_size", key.polynomial_size().value, params.polynomial_size.value, params);
  return make_frame(kType, params.id(), 16 + key.flattened().size() * 8, [&](Writer& w) {
    w.u64(key.glwe_dimension().value);
    w.u64(key.polynomial_size().value);
    w.words(key.flattened());
  });
}

GlweSecretKey deserialize_glwe_secret_key(std::span<const std::uint8_t> bytes, const ParameterSet& params,
                                          std::uint64_t max_bytes) {
  constexpr ObjectType kType = ObjectType::kGlweSecretKey;
  Reader r(open_typed(bytes, max_bytes, kType, params), kType);
  expect_field(kType, "glwe_dimension", r.u64("glwe_dimension"), params.glwe_dimension.value, params);
  expect_field(kType, "polynomial_size", r.u64("polynomial_size"), params.polynomial_size.value, params);
  r.expect_words(checked_mul(kType, params.glwe_dimension.value, params.polynomial_size.value), "the key bits",
                 "k*N", true);
  GlweSecretKey key(params.glwe_dimension, params.polynomial_size);
  r.words(key.mutable_bits(), "bits");
  check_key_bits(kType, key.flattened());
  return key;
}

// ---------------------------------------------------------------- LWE ciphertexts

Bytes serialize(const LweCiphertext& ct, const ParameterSet& params) {
  constexpr ObjectType kType = ObjectType::kLweCiphertext;
  require(!ct.data().empty(), kType, "the ciphertext is empty (default-constructed)");
  require_lwe_dimension(kType, ct.dimension().value, params);
  return make_frame(kType, params.id(), 8 + ct.data().size() * 8, [&](Writer& w) {
    w.u64(ct.dimension().value);
    w.words(ct.data());
  });
}

LweCiphertext deserialize_lwe_ciphertext(std::span<const std::uint8_t> bytes, const ParameterSet& params,
                                         std::uint64_t max_bytes) {
  constexpr ObjectType kType = ObjectType::kLweCiphertext;
  Reader r(open_typed(bytes, max_bytes, kType, params), kType);
  const std::uint64_t n = read_lwe_dimension(r, params);
  r.expect_words(checked_add(kType, n, 1), "the ciphertext", "dimension " + std::to_string(n) + " + 1", true);
  LweCiphertext ct{LweDimension(n)};
  r.words(ct.data(), "words");
  return ct;
}

Bytes serialize(const LweCiphertextList& list, const ParameterSet& params) {
  constexpr ObjectType kType = ObjectType::kLweCiphertextList;
  require_lwe_dimension(kType, list.dimension().value, params);
  require(list.data().size() == list.count() * lwe_size(list.dimension()), kType,
          "holds " + std::to_string(list.data().size()) + " words, count x (dimension + 1) is " +
              std::to_string(list.count() * lwe_size(list.dimension())));
  return make_frame(kType, params.id(), 16 + list.data().size() * 8, [&](Writer& w) {
    w.u64(list.dimension().value);
    w.u64(list.count());
    w.words(list.data());
  });
}

LweCiphertextList deserialize_lwe_ciphertext_list(std::span<const std::uint8_t> bytes, const ParameterSet& params,
                                                  std::uint64_t max_bytes) {
  constexpr ObjectType kType = ObjectType::kLweCiphertextList;
  Reader r(open_typed(bytes, max_bytes, kType, params), kType);
  const std::uint64_t n = read_lwe_dimension(r, params);
  const std::uint64_t count = r.u64("count");
  r.expect_words(checked_mul(kType, count, checked_add(kType, n, 1)), "the ciphertexts",
                 "count " + std::to_string(count) + " x (dimension " + std::to_string(n) + " + 1)", true);
  LweCiphertextList list(LweDimension(n), count);
  r.words(list.data(), "words");
  return list;
}

Bytes serialize_modulus_switched(const LweCiphertextList& list, unsigned modulus_bits, const ParameterSet& params) {
  constexpr ObjectType kType = ObjectType::kModulusSwitchedLweCiphertextList;
  require_lwe_dimension(kType, list.dimension().value, params);
  require(modulus_bits >= 1 && modulus_bits <= 63, kType, "modulus_bits " + std::to_string(modulus_bits) + " is not in [1, 63]");
  const unsigned shift = 64 - modulus_bits;
  const Torus low = (Torus{1} << shift) - 1;
  std::vector<Torus> top(list.data().size());
  for (std::size_t i = 0; i < top.size(); ++i) {
    require((list.data()[i] & low) == 0, kType,
            "word " + std::to_string(i) + " has bits below 2^" + std::to_string(shift) + " (not modulus-switched to 2^" +
                std::to_string(modulus_bits) + ")");
    top[i] = list.data()[i] >> shift;
  }
  return make_frame(kType, params.id(), 24 + packed_bytes(top.size(), modulus_bits), [&](Writer& w) {
    w.u64(list.dimension().value);
    w.u64(list.count());
    w.u64(modulus_bits);
    w.packed(top, modulus_bits);
  });
}

LweCiphertextList deserialize_modulus_switched_lwe_ciphertext_list(std::span<const std::uint8_t> bytes,
                                                                  const ParameterSet& params, std::uint64_t max_bytes) {
  constexpr ObjectType kType = ObjectType::kModulusSwitchedLweCiphertextList;
  Reader r(open_typed(bytes, max_bytes, kType, params), kType);
  const std::uint64_t n = read_lwe_dimension(r, params);
  const std::uint64_t count = r.u64("count");
  const std::uint64_t bits = r.u64("modulus_bits");
  if (bits < 1 || bits > 63) fail(kType, "modulus_bits " + std::to_string(bits) + " is not in [1, 63]");
  const std::uint64_t words = checked_mul(kType, count, checked_add(kType, n, 1));
  // words * bits / 8 bytes must be present: compare without forming words * bits.
  if (words / 8 > r.remaining() / bits || packed_bytes(words, static_cast<unsigned>(bits)) != r.remaining())
    fail(kType, "payload holds " + std::to_string(r.remaining()) + " bytes for count " + std::to_string(count) +
                    " x (dimension " + std::to_string(n) + " + 1) words of " + std::to_string(bits) + " bits");
  LweCiphertextList list(LweDimension(n), count);
  r.packed(list.data(), static_cast<unsigned>(bits), "words");
  for (Torus& w : list.data()) w <<= 64 - bits;
  return list;
}

Bytes serialize(const PackedAnswer& answer, const ParameterSet& params) {
  constexpr ObjectType kType = ObjectType::kPackedAnswer;
  require(params.packs_answers(), kType, "parameter set " + set_label(params) + " packs no answers");
  require_equal(kType, "glwe_dimension", answer.glwe_dimension.value, params.answer_glwe_dimension().value, params);
  require_equal(kType, "polynomial_size", answer.polynomial_size.value, params.answer_polynomial_size.value, params);
  require(answer.count >= 1 && answer.count <= answer.polynomial_size.value, kType,
          "count " + std::to_string(answer.count) + " is not in [1, " + std::to_string(answer.polynomial_size.value) + "]");
  require(answer.modulus_bits >= 1 && answer.modulus_bits <= 63, kType,
          "modulus_bits " + std::to_string(answer.modulus_bits) + " is not in [1, 63]");
  const std::size_t words = params.answer_lwe_dimension().value + answer.count;
  require_equal(kType, "word count", answer.words.size(), words, params);
  const unsigned shift = 64 - answer.modulus_bits;
  std::vector<Torus> top(words);
  for (std::size_t i = 0; i < words; ++i) {
    require((answer.words[i] & ((Torus{1} << shift) - 1)) == 0, kType,
            "word " + std::to_string(i) + " has bits below 2^" + std::to_string(shift));
    top[i] = answer.words[i] >> shift;
  }
  return make_frame(kType, params.id(), 32 + packed_bytes(words, answer.modulus_bits), [&](Writer& w) {
    w.u64(answer.glwe_dimension.value);
    w.u64(answer.polynomial_size.value);
    w.u64(answer.count);
    w.u64(answer.modulus_bits);
    w.packed(top, answer.modulus_bits);
  });
}

PackedAnswer deserialize_packed_answer(std::span<const std::uint8_t> bytes, const ParameterSet& params,
                                       std::uint64_t max_bytes) {
  constexpr ObjectType kType = ObjectType::kPackedAnswer;
  Reader r(open_typed(bytes, max_bytes, kType, params), kType);
  if (!params.packs_answers()) fail(kType, "parameter set " + set_label(params) + " packs no answers");
  const std::uint64_t k = r.u64("glwe_dimension");
  const std::uint64_t np = r.u64("polynomial_size");
  const std::uint64_t count = r.u64("count");
  const std::uint64_t bits = r.u64("modulus_bits");
  expect_field(kType, "glwe_dimension", k, params.answer_glwe_dimension().value, params);
  expect_field(kType, "polynomial_size", np, params.answer_polynomial_size.value, params);
  if (count < 1 || count > np) fail(kType, "count " + std::to_string(count) + " is not in [1, " + std::to_string(np) + "]");
  if (bits < 1 || bits > 63) fail(kType, "modulus_bits " + std::to_string(bits) + " is not in [1, 63]");
  const std::uint64_t words = std::uint64_t{params.answer_lwe_dimension().value} + count;
  if (packed_bytes(words, static_cast<unsigned>(bits)) != r.remaining())
    fail(kType, "payload holds " + std::to_string(r.remaining()) + " bytes for " + std::to_string(words) + " words of " +
                    std::to_string(bits) + " bits (" + std::to_string(packed_bytes(words, static_cast<unsigned>(bits))) +
                    " bytes)");
  PackedAnswer answer{GlweDimension(k), PolynomialSize(np), static_cast<std::size_t>(count), static_cast<unsigned>(bits), {}};
  answer.words.resize(words);
  r.packed(answer.words, static_cast<unsigned>(bits), "words");
  for (Torus& w : answer.words) w <<= 64 - bits;
  return answer;
}

Bytes serialize(const SeededLweCiphertextList& list, const ParameterSet& params) {
  constexpr ObjectType kType = ObjectType::kSeededLweCiphertextList;
  require_lwe_dimension(kType, list.dimension.value, params);
  return make_frame(kType, params.id(), 16 + 16 + list.bodies.size() * 8, [&](Writer& w) {
    w.u64(list.dimension.value);
    w.u64(list.count());
    w.seed(list.seed);
    w.words(list.bodies);
  });
}

SeededLweCiphertextList deserialize_seeded_lwe_ciphertext_list(std::span<const std::uint8_t> bytes,
                                                               const ParameterSet& params, std::uint64_t max_bytes) {
  constexpr ObjectType kType = ObjectType::kSeededLweCiphertextList;
  Reader r(open_typed(bytes, max_bytes, kType, params), kType);
  const std::uint64_t n = read_lwe_dimension(r, params);
  const std::uint64_t count = r.u64("count");
  SeededLweCiphertextList list{LweDimension(n), r.seed("seed"), {}};
  r.expect_words(count, "the bodies", "count " + std::to_string(count), true);
  list.bodies.resize(count);
  r.words(list.bodies, "bodies");
  return list;
}

// ---------------------------------------------------------------- GLWE / GGSW

Bytes serialize(const GlweCiphertext& ct, const ParameterSet& params) {
  constexpr ObjectType kType = ObjectType::kGlweCiphertext;
  require_equal(kType, "glwe_dimension", ct.glwe_dimension().value, params.glwe_dimension.value, params);
  require_equal(kType, "polynomial_size", ct.polynomial_size().value, params.polynomial_size.value, params);
  return make_frame(kType, params.id(), 16 + ct.data().size() * 8, [&](Writer& w) {
    w.u64(ct.glwe_dimension().value);
    w.u64(ct.polynomial_size().value);
    w.words(ct.data());
  });
}

GlweCiphertext deserialize_glwe_ciphertext(std::span<const std::uint8_t> bytes, const ParameterSet& params,
                                           std::uint64_t max_bytes) {
  constexpr ObjectType kType = ObjectType::kGlweCiphertext;
  Reader r(open_typed(bytes, max_bytes, kType, params), kType);
  expect_field(kType, "glwe_dimension", r.u64("glwe_dimension"), params.glwe_dimension.value, params);
  expect_field(kType, "polynomial_size", r.u64("polynomial_size"), params.polynomial_size.value, params);
  r.expect_words(checked_mul(kType, checked_add(kType, params.glwe_dimension.value, 1), params.polynomial_size.value),
                 "the polynomials", "(k+1)*N", true);
  GlweCiphertext ct(params.glwe_dimension, params.polynomial_size);
  r.words(ct.data(), "words");
  return ct;
}

Bytes serialize(const GgswCiphertext& ct, const ParameterSet& params) {
  constexpr ObjectType kType = ObjectType::kGgswCiphertext;
  const GgswShape expected = pbs_ggsw_shape(params);
  require_equal(kType, "glwe_dimension", ct.shape().glwe_dimension.value, expected.glwe_dimension.value, params);
  require_equal(kType, "polynomial_size", ct.shape().polynomial_size.value, expected.polynomial_size.value, params);
  require_equal(kType, "base_log", ct.shape().base_log.value, expected.base_log.value, params);
  require_equal(kType, "level_count", ct.shape().level_count.value, expected.level_count.value, params);
  return make_frame(kType, params.id(), 32 + ct.data().size() * 8, [&](Writer& w) {
    write_ggsw_shape(w, ct.shape());
    w.words(ct.data());
  });
}

GgswCiphertext deserialize_ggsw_ciphertext(std::span<const std::uint8_t> bytes, const ParameterSet& params,
                                           std::uint64_t max_bytes) {
  constexpr ObjectType kType = ObjectType::kGgswCiphertext;
  Reader r(open_typed(bytes, max_bytes, kType, params), kType);
  const GgswShape shape = read_ggsw_shape(r, pbs_ggsw_shape(params), params);
  r.expect_words(ggsw_words(kType, shape), "the rows", "(k+1)*l rows of (k+1)*N", true);
  GgswCiphertext ct(shape);
  r.words(ct.data(), "words");
  return ct;
}

// ---------------------------------------------------------------- bootstrap keys

Bytes serialize(const LweBootstrapKey& key, const ParameterSet& params) {
  constexpr ObjectType kType = ObjectType::kLweBootstrapKey;
  require(key.shape() == bootstrap_key_shape(params), kType,
          bsk_shape_text(key.shape()) + " differs from parameter set " + set_label(params) + "'s " +
              bsk_shape_text(bootstrap_key_shape(params)));
  return make_frame(kType, params.id(), 40 + key.data().size() * 8, [&](Writer& w) {
    write_bsk_shape(w, key.shape());
    w.words(key.data());
  });
}

LweBootstrapKey deserialize_bootstrap_key(std::span<const std::uint8_t> bytes, const ParameterSet& params,
                                          std::uint64_t max_bytes) {
  constexpr ObjectType kType = ObjectType::kLweBootstrapKey;
  Reader r(open_typed(bytes, max_bytes, kType, params), kType);
  const BootstrapKeyShape shape = read_bsk_shape(r, params);
  r.expect_words(checked_mul(kType, bsk_ggsw_count(kType, shape), ggsw_words(kType, shape.ggsw)),
                 "the GGSW ciphertexts", bsk_shape_text(shape), true);
  LweBootstrapKey key(shape);
  r.words(key.data(), "words");
  return key;
}

Bytes serialize(const SeededLweBootstrapKey& key, const ParameterSet& params) {
  constexpr ObjectType kType = ObjectType::kSeededLweBootstrapKey;
  require_seeded_bsk(kType, key, params);
  return make_frame(kType, params.id(), seeded_bsk_payload_bytes(key, params),
                    [&](Writer& w) { write_seeded_bsk(w, kType, key, params); });
}

SeededLweBootstrapKey deserialize_seeded_bootstrap_key(std::span<const std::uint8_t> bytes, const ParameterSet& params,
                                                       std::uint64_t max_bytes) {
  constexpr ObjectType kType = ObjectType::kSeededLweBootstrapKey;
  const OpenedFrame frame = open_frame(bytes, max_bytes, kType, params.id(), &params);
  Reader r(frame.payload, kType);
  return read_seeded_bsk(r, params, frame.info.minor, true);
}

// ---------------------------------------------------------------- keyswitch keys

Bytes serialize(const LweKeyswitchKey& key, const ParameterSet& params) {
  constexpr ObjectType kType = ObjectType::kLweKeyswitchKey;
  require(key.shape() == keyswitch_key_shape(params), kType,
          ksk_shape_text(key.shape()) + " differs from parameter set " + set_label(params) + "'s " +
              ksk_shape_text(keyswitch_key_shape(params)));
  return make_frame(kType, params.id(), 32 + key.data().size() * 8, [&](Writer& w) {
    write_ksk_shape(w, key.shape());
    w.words(key.data());
  });
}

LweKeyswitchKey deserialize_keyswitch_key(std::span<const std::uint8_t> bytes, const ParameterSet& params,
                                          std::uint64_t max_bytes) {
  constexpr ObjectType kType = ObjectType::kLweKeyswitchKey;
  Reader r(open_typed(bytes, max_bytes, kType, params), kType);
  const KeyswitchKeyShape shape = read_ksk_shape(r, params);
  r.expect_words(checked_mul(kType, ksk_ciphertext_count(kType, shape),
                             checked_add(kType, shape.output_lwe_dimension.value, 1)),
                 "the ciphertexts", ksk_shape_text(shape), true);
  LweKeyswitchKey key(shape);
  r.words(key.data(), "words");
  return key;
}

Bytes serialize(const SeededLweKeyswitchKey& key, const ParameterSet& params) {
  constexpr ObjectType kType = ObjectType::kSeededLweKeyswitchKey;
  require_seeded_ksk(kType, key, params);
  return make_frame(kType, params.id(), seeded_ksk_payload_bytes(key, params),
                    [&](Writer& w) { write_seeded_ksk(w, kType, key, params); });
}

SeededLweKeyswitchKey deserialize_seeded_keyswitch_key(std::span<const std::uint8_t> bytes, const ParameterSet& params,
                                                       std::uint64_t max_bytes) {
  constexpr ObjectType kType = ObjectType::kSeededLweKeyswitchKey;
  const OpenedFrame frame = open_frame(bytes, max_bytes, kType, params.id(), &params);
  Reader r(frame.payload, kType);
  return read_seeded_ksk(r, params, frame.info.minor);
}

// ---------------------------------------------------------------- evaluation keys

// Flat layout: the three payloads back to back (parameter set, seeded BSK, seeded KSK),
// under one header and one checksum, so that a multi-gigabyte key is hashed once.
Bytes serialize(const SeededEvaluationKeys& keys) {
  constexpr ObjectType kType = ObjectType::kSeededEvaluationKeys;
  require_writable_parameter_set(keys.params, kType);
  require_seeded_bsk(kType, keys.bsk, keys.params);
  require_seeded_ksk(kType, keys.ksk, keys.params);
  const bool packs = keys.params.packs_answers();
  if (packs) require_seeded_packing(kType, keys.packing, keys.params);
  const std::size_t payload = parameter_set_payload_bytes(keys.params) + seeded_bsk_payload_bytes(keys.bsk, keys.params) +
                              seeded_ksk_payload_bytes(keys.ksk, keys.params) +
                              (packs ? seeded_packing_payload_bytes(keys.packing.bodies.size(), keys.params) : 0);
  return make_frame(kType, keys.params.id(), payload, [&](Writer& w) {
    write_parameter_set(w, keys.params);
    write_seeded_bsk(w, kType, keys.bsk, keys.params);
    write_seeded_ksk(w, kType, keys.ksk, keys.params);
    if (packs) write_seeded_packing(w, kType, keys.packing, keys.params);
  });
}

std::uint64_t seeded_evaluation_keys_bytes(const ParameterSet& params) {
  const BootstrapKeyShape bsk = bootstrap_key_shape(params);
  const std::uint64_t bsk_bodies = std::uint64_t{bsk.ggsw_count()} * bsk.ggsw.row_count() * bsk.ggsw.polynomial_size.value;
  const std::uint64_t ksk_bodies = keyswitch_key_shape(params).ciphertext_count();
  const PackingKeyShape packing = packing_key_shape(params);
  // The payloads of serialize(SeededEvaluationKeys): set, seeded BSK, seeded KSK, packing key.
  return kHeaderBytes + parameter_set_payload_bytes(params) + (5 * 8 + 16 + packed_bodies_bytes(bsk_bodies, bsk_body_bits(params))) +
         (4 * 8 + 16 + packed_bodies_bytes(ksk_bodies, ksk_body_bits(params))) +
         (params.packs_answers()
              ? seeded_packing_payload_bytes(packing.ciphertext_count() * packing.polynomial_size.value, params)
              : 0);
}

SeededEvaluationKeys deserialize_seeded_evaluation_keys(std::span<const std::uint8_t> bytes,
                                                        const ParameterSet* expected_params,
                                                        std::uint64_t max_bytes) {
  constexpr ObjectType kType = ObjectType::kSeededEvaluationKeys;
  std::optional<std::uint64_t> expected_id;
  if (expected_params != nullptr) expected_id = expected_params->id();
  const OpenedFrame frame = open_frame(bytes, max_bytes, kType, expected_id, expected_params);
  Reader r(frame.payload, kType);
  // read_parameter_set ties the payload's set to the header id, and through it to
  // expected_params; the key shapes are then checked against this (validated) set.
  ParameterSet params = read_parameter_set(r, frame.info.parameter_id, frame.info.minor);
  SeededLweBootstrapKey bsk = read_seeded_bsk(r, params, frame.info.minor, false);
  const bool packs = params.packs_answers();  // only sets of 1.3 and later do
  SeededLweKeyswitchKey ksk = read_seeded_ksk(r, params, frame.info.minor, !packs);
  SeededPackingKey packing;
  if (packs) packing = read_seeded_packing(r, params, frame.info.minor);
  return {std::move(params), std::move(bsk), std::move(ksk), std::move(packing)};
}

}  // namespace veil::tfhe
