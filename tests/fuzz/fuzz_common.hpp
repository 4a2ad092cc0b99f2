// Shared pieces of the libFuzzer harnesses (tests/fuzz/README.md).
//
// Strict mode (the default): a harness lets through only the exception types its loader
// documents; anything else (std::out_of_range from an .at(), a JSON library exception, a
// std::invalid_argument a loader forgot to translate) aborts, so that libFuzzer records the
// input as a crash. VEIL_FUZZ_LENIENT=1 in the environment accepts every std::exception,
// for hunting memory errors only.
//
// Checksum fixing: Veil's binary frames (TFHE objects, circuits, envelopes) carry the first
// 16 bytes of the SHA-256 of their payload, so nearly every mutation stops at the checksum
// check. The "_fixed" variants rewrite every frame's checksum found in the input before
// loading it, innermost frames first, so that the fuzzer reaches the payload parsers.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <span>
#include <string_view>
#include <typeinfo>
#include <vector>

#include "veil/tfhe/sha256.hpp"

namespace veil::fuzz {

inline bool lenient() {
  static const bool value = [] {
    const char* v = std::getenv("VEIL_FUZZ_LENIENT");
    return v != nullptr && std::string_view(v) == "1";
  }();
  return value;
}

// Runs `load`; returns quietly when it throws one of `Allowed...` (or, in lenient mode, any
// std::exception); aborts with the exception's type and message otherwise.
template <class... Allowed, class F>
void expect_only(const char* target, F&& load) {
  try {
    load();
  } catch (const std::exception& e) {
    if ((... || (dynamic_cast<const Allowed*>(&e) != nullptr))) return;
    if (lenient()) return;
    std::fprintf(stderr, "veil fuzz %s: undocumented exception %s: %s\n", target, typeid(e).name(), e.what());
    std::abort();
  }
}

// Frame kinds and where their header keeps the payload length and the checksum.
struct FrameLayout {
  const char* magic;  // 8 bytes
  std::size_t length_offset;
  std::size_t checksum_offset;
};
inline constexpr FrameLayout kFrameLayouts[] = {
    {"VEILTFHE", 24, 32},  // docs/formats/tfhe.md
    {"VEILCIRC", 24, 32},  // docs/formats/circuit.md
    {"VEILENVL", 32, 40},  // docs/formats/artifacts.md, envelopes
};
inline constexpr std::size_t kHeaderBytes = 64;

inline std::uint64_t read_u64_le(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Rewrites the checksum of every frame whose magic appears in `bytes` and whose declared
// payload lies inside the buffer. Scans from the end so that a frame nested in another
// (TFHE frames inside envelopes) is fixed before its container's checksum is computed.
inline void fix_checksums(std::vector<std::uint8_t>& bytes) {
  if (bytes.size() < kHeaderBytes) return;
  for (std::size_t pos = bytes.size() - kHeaderBytes + 1; pos-- > 0;) {
    for (const FrameLayout& f : kFrameLayouts) {
      if (std::memcmp(bytes.data() + pos, f.magic, 8) != 0) continue;
      const std::uint64_t length = read_u64_le(bytes.data() + pos + f.length_offset);
      if (length > bytes.size() - pos - kHeaderBytes) continue;
      const auto digest = tfhe::sha256(std::span<const std::uint8_t>(bytes.data() + pos + kHeaderBytes, length));
      std::memcpy(bytes.data() + pos + f.checksum_offset, digest.data(), 16);
    }
  }
}

// The input as the loader sees it: with checksums fixed in the "_fixed" variants.
inline std::vector<std::uint8_t> prepared(const std::uint8_t* data, std::size_t size) {
  std::vector<std::uint8_t> bytes(data, data + size);
#ifdef VEIL_FUZZ_FIX_CHECKSUMS
  fix_checksums(bytes);
#endif
  return bytes;
}

}  // namespace veil::fuzz
