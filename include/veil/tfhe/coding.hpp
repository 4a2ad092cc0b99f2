// Veil's low-level byte coding, the one place every binary format builds on (the tfhe
// frames, circuit files, envelopes, the key stores):
//
//  - fixed-width integers, little-endian (`encode_fixed64`, `decode_fixed32`, ...) and, for
//    the PostgreSQL wire format only, big-endian;
//  - ByteWriter, which appends fields to a buffer, and ByteReader, a cursor that checks the
//    bytes left before every read and reports a short payload or trailing bytes through the
//    format's own error;
//  - the 64-byte frame header shared by the three framed formats (docs/formats/): magic,
//    version, type, an owner id, payload length and a truncated SHA-256 of the payload.
//
// The digest and the hex helpers are in sha256.hpp, included here.
//
// Explicit shifts rather than casts of structs: the byte order is the format's, not the
// host's, and nothing depends on alignment.
//
// Thread safety: free functions are pure; a ByteWriter or ByteReader belongs to one thread.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "veil/tfhe/sha256.hpp"

namespace veil::tfhe {

// ---------------------------------------------------------------- fixed-width integers

// REQUIRES: dst holds n bytes, 1 <= n <= 8. The low n bytes of v, least significant first.
inline void encode_fixed(std::uint8_t* dst, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i) dst[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
// REQUIRES: src holds n bytes, 1 <= n <= 8.
inline std::uint64_t decode_fixed(const std::uint8_t* src, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= static_cast<std::uint64_t>(src[i]) << (8 * i);
  return v;
}

inline void encode_fixed16(std::uint8_t* dst, std::uint16_t v) { encode_fixed(dst, v, 2); }
inline void encode_fixed32(std::uint8_t* dst, std::uint32_t v) { encode_fixed(dst, v, 4); }
inline void encode_fixed64(std::uint8_t* dst, std::uint64_t v) { encode_fixed(dst, v, 8); }
inline std::uint16_t decode_fixed16(const std::uint8_t* src) { return static_cast<std::uint16_t>(decode_fixed(src, 2)); }
inline std::uint32_t decode_fixed32(const std::uint8_t* src) { return static_cast<std::uint32_t>(decode_fixed(src, 4)); }
inline std::uint64_t decode_fixed64(const std::uint8_t* src) { return decode_fixed(src, 8); }

// Big-endian (network order), for wire formats that demand it (PostgreSQL's binary
// parameters). REQUIRES: 1 <= n <= 8.
inline void encode_big_endian(std::uint8_t* dst, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i) dst[i] = static_cast<std::uint8_t>(v >> (8 * (n - 1 - i)));
}
inline std::uint64_t decode_big_endian(const std::uint8_t* src, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | src[i];
  return v;
}

// ---------------------------------------------------------------- ByteWriter

// Appends little-endian fields to a buffer it owns.
//
// For secret material, make the writer with exact_size(n): the buffer is allocated once, so
// no reallocation leaves a copy of the bytes behind in freed memory, and writing more than
// n bytes, or finishing with fewer, throws std::logic_error (a writer's miscount is a bug).
class ByteWriter {
 public:
  ByteWriter() = default;
  static ByteWriter exact_size(std::size_t n) {
    ByteWriter w;
    w.bytes_.reserve(n);
    w.exact_ = n;
    return w;
  }

  void u8(std::uint8_t v) { uint(v, 1); }
  void u16(std::uint16_t v) { uint(v, 2); }
  void u32(std::uint32_t v) { uint(v, 4); }
  void u64(std::uint64_t v) { uint(v, 8); }
  void i64(std::int64_t v) { uint(static_cast<std::uint64_t>(v), 8); }
  void f64(double v) { uint(std::bit_cast<std::uint64_t>(v), 8); }
  // The low n bytes of v (1 to 8).
  void uint(std::uint64_t v, int n) { encode_fixed(grow(static_cast<std::size_t>(n)), v, n); }
  void raw(std::span<const std::uint8_t> b) {
    if (!b.empty()) std::memcpy(grow(b.size()), b.data(), b.size());
  }
  void zeros(std::size_t n) {
    if (n != 0) std::memset(grow(n), 0, n);
  }
  // 64-bit words, each little-endian (one copy on a little-endian host).
  void words(std::span<const std::uint64_t> w) {
    if (w.empty()) return;
    std::uint8_t* p = grow(w.size() * 8);
    if constexpr (std::endian::native == std::endian::little) {
      std::memcpy(p, w.data(), w.size() * 8);
    } else {
      for (std::size_t i = 0; i < w.size(); ++i) encode_fixed64(p + 8 * i, w[i]);
    }
  }

  std::size_t size() const { return bytes_.size(); }
  // The bytes written so far, writable in place (to complete a header after its payload).
  std::span<std::uint8_t> written() { return bytes_; }
  // The buffer. Throws std::logic_error if made with exact_size(n) and fewer than n bytes
  // were written.
  std::vector<std::uint8_t> finish() && {
    if (exact_ != kNotExact && bytes_.size() != exact_)
      throw std::logic_error("ByteWriter: " + std::to_string(bytes_.size()) + " bytes written, " +
                             std::to_string(exact_) + " announced");
    return std::move(bytes_);
  }

 private:
  static constexpr std::size_t kNotExact = std::numeric_limits<std::size_t>::max();

  std::uint8_t* grow(std::size_t n) {
    if (exact_ != kNotExact && n > exact_ - bytes_.size())
      throw std::logic_error("ByteWriter: writing " + std::to_string(n) + " bytes at offset " +
                             std::to_string(bytes_.size()) + " passes the announced " + std::to_string(exact_));
    const std::size_t at = bytes_.size();
    bytes_.resize(at + n);
    return bytes_.data() + at;
  }

  std::vector<std::uint8_t> bytes_;
  std::size_t exact_ = kNotExact;
};

// ---------------------------------------------------------------- ByteReader

// A little-endian cursor over a payload. Every read checks the bytes left; a failure calls
// `Fail` with a message naming the field and the offset. `Fail` must throw (the format's
// own error type).
template <class Fail>
class ByteReader {
 public:
  ByteReader(std::span<const std::uint8_t> bytes, Fail fail) : bytes_(bytes), fail_(std::move(fail)) {}

  std::size_t remaining() const { return bytes_.size() - pos_; }
  std::size_t position() const { return pos_; }

  // The next n bytes.
  const std::uint8_t* take(std::size_t n, const char* field) {
    if (n > remaining())
      fail("payload ends inside field '" + std::string(field) + "' at offset " + std::to_string(pos_) + " (" +
           std::to_string(remaining()) + " bytes left, " + std::to_string(n) + " needed)");
    const std::uint8_t* p = bytes_.data() + pos_;
    pos_ += n;
    return p;
  }

  // An unsigned little-endian integer of `n` bytes (1 to 8).
  std::uint64_t uint(int n, const char* field) { return decode_fixed(take(static_cast<std::size_t>(n), field), n); }
  std::uint8_t u8(const char* field) { return static_cast<std::uint8_t>(uint(1, field)); }
  std::uint16_t u16(const char* field) { return static_cast<std::uint16_t>(uint(2, field)); }
  std::uint32_t u32(const char* field) { return static_cast<std::uint32_t>(uint(4, field)); }
  std::uint64_t u64(const char* field) { return uint(8, field); }
  std::int64_t i64(const char* field) { return static_cast<std::int64_t>(uint(8, field)); }
  double f64(const char* field) { return std::bit_cast<double>(uint(8, field)); }

  void expect_end() {
    if (remaining() != 0) fail(std::to_string(remaining()) + " unexpected bytes after the last field");
  }

  [[noreturn]] void fail(const std::string& what) const {
    fail_(what);
    throw std::logic_error("ByteReader: the format's fail() returned");  // unreachable
  }

 private:
  std::span<const std::uint8_t> bytes_;
  Fail fail_;
  std::size_t pos_ = 0;
};

// ---------------------------------------------------------------- frame headers

// Every framed format (tfhe objects, circuits, envelopes) opens with a 64-byte header:
//     0  magic (8 bytes)
//     8  format major (u16), format minor (u16)
//    12  type (u16), reserved (u16) = 0
//    16  owner id: 8 bytes (a parameter-set id, u64) or 16 (a model id)
//   16+d payload length in bytes (u64)                        d = the id's width
//   24+d SHA-256 of the payload, first 16 bytes
//   40+d reserved to byte 64, zero
// The codec below reads and writes the fields; what a loader checks, in which order and
// with which message, stays with each format (their messages are part of their tests).
inline constexpr std::size_t kFrameHeaderBytes = 64;
inline constexpr std::size_t kFrameChecksumBytes = 16;

using FrameMagic = std::array<std::uint8_t, 8>;
using FrameChecksum = std::array<std::uint8_t, kFrameChecksumBytes>;

// One format's header: its magic and the width of its owner id (8 or 16).
struct FrameLayout {
  FrameMagic magic{};
  std::size_t id_bytes = 8;

  static constexpr std::size_t kTypeOffset = 12;
  static constexpr std::size_t kIdOffset = 16;
  constexpr std::size_t length_offset() const { return kIdOffset + id_bytes; }
  constexpr std::size_t checksum_offset() const { return kIdOffset + id_bytes + 8; }
  constexpr std::size_t reserved_offset() const { return kIdOffset + id_bytes + 8 + kFrameChecksumBytes; }
};

struct FrameHeader {
  FrameMagic magic{};  // decoded; encoding writes the layout's
  std::uint16_t major = 0, minor = 0;
  std::uint16_t type = 0;
  std::uint16_t reserved = 0;         // offset 14; encoding writes 0
  std::array<std::uint8_t, 16> id{};  // the first FrameLayout::id_bytes are the id
  std::uint64_t payload_bytes = 0;
  FrameChecksum checksum{};
  // Decoded: the offset of the first non-zero byte of the reserved tail, 0 when all are zero.
  std::size_t nonzero_reserved_offset = 0;

  // The id as a little-endian u64 (an 8-byte id: a parameter-set id).
  std::uint64_t id_u64() const { return decode_fixed64(id.data()); }
  void set_id_u64(std::uint64_t v) {
    id.fill(0);
    encode_fixed64(id.data(), v);
  }
};

// The first 16 bytes of the payload's SHA-256: detects corruption, authenticates nothing.
FrameChecksum frame_checksum(std::span<const std::uint8_t> payload);

// REQUIRES: out.size() >= kFrameHeaderBytes. Writes all 64 bytes (the magic from `layout`,
// reserved fields zero).
void encode_frame_header(const FrameLayout& layout, const FrameHeader& header, std::span<std::uint8_t> out);
// REQUIRES: bytes.size() >= kFrameHeaderBytes (throws std::invalid_argument otherwise).
FrameHeader decode_frame_header(const FrameLayout& layout, std::span<const std::uint8_t> bytes);

// Completes a frame laid out as kFrameHeaderBytes placeholder bytes then the payload: writes
// the header with the payload's length and checksum (the header's own are ignored).
// REQUIRES: frame.size() >= kFrameHeaderBytes.
void seal_frame(const FrameLayout& layout, FrameHeader header, std::span<std::uint8_t> frame);

}  // namespace veil::tfhe
