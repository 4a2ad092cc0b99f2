#include "veil/tfhe/sha256.hpp"

#if !defined(__EMSCRIPTEN__)
#include <openssl/evp.h>
#endif

#include <array>
#include <memory>
#include <stdexcept>

#include "portable_crypto.hpp"

namespace veil::tfhe {

#if defined(__EMSCRIPTEN__)
Sha256Digest sha256(std::initializer_list<std::span<const std::uint8_t>> pieces) { return sha256_portable(pieces); }
#else
Sha256Digest sha256(std::initializer_list<std::span<const std::uint8_t>> pieces) {
  const std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  Sha256Digest out{};
  unsigned len = 0;
  bool ok = ctx && EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) == 1;
  for (const auto& piece : pieces)
    ok = ok && (piece.empty() || EVP_DigestUpdate(ctx.get(), piece.data(), piece.size()) == 1);
  ok = ok && EVP_DigestFinal_ex(ctx.get(), out.data(), &len) == 1 && len == out.size();
  if (!ok) throw std::runtime_error("SHA-256 (OpenSSL EVP) failed");
  return out;
}
#endif

Sha256Digest sha256(std::span<const std::uint8_t> data) { return sha256({data}); }

Sha256Digest sha256(std::string_view text) {
  return sha256(std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
}

std::string to_hex(std::span<const std::uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(2 * bytes.size(), '0');
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 15];
  }
  return out;
}

std::string to_hex_u64(std::uint64_t v) {
  std::array<std::uint8_t, 8> big_endian{};
  for (int i = 0; i < 8; ++i) big_endian[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v >> (56 - 8 * i));
  return to_hex(big_endian);
}

int hex_digit_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool from_hex(std::string_view hex, std::span<std::uint8_t> out) {
  if (hex.size() != 2 * out.size()) return false;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const int high = hex_digit_value(hex[2 * i]), low = hex_digit_value(hex[2 * i + 1]);
    if (high < 0 || low < 0) return false;
    out[i] = static_cast<std::uint8_t>(high << 4 | low);
  }
  return true;
}

}  // namespace veil::tfhe
