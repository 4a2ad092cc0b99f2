// A little-endian cursor over a payload, shared by the binary formats (tfhe keys and
// ciphertexts, circuits): every read checks the bytes left, and a short payload or trailing
// bytes are reported through the format's own error, naming the field and the offset.
//
// Thread safety: one reader per thread (it holds a position).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>

namespace veil::tfhe {

// `Fail` is called with a message and must throw (the format's error type).
template <class Fail>
class ByteReader {
 public:
  ByteReader(std::span<const std::uint8_t> bytes, Fail fail) : bytes_(bytes), fail_(std::move(fail)) {}

  std::size_t remaining() const { return bytes_.size() - pos_; }

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
  std::uint64_t uint(int n, const char* field) {
    const std::uint8_t* p = take(static_cast<std::size_t>(n), field);
    std::uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= static_cast<std::uint64_t>(p[i]) << (8 * i);
    return v;
  }
  std::uint64_t u64(const char* field) { return uint(8, field); }

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

}  // namespace veil::tfhe
