// SHA-256 (OpenSSL EVP; Veil's own in WebAssembly), the one digest Veil uses: frame checksums (their first 16 bytes),
// model ids, key-store integrity and token hashes; and the hex coding of digests and ids.
// The byte coding of the formats is in coding.hpp.
// Thread safety: pure functions. Throws std::runtime_error if OpenSSL fails.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>

namespace veil::tfhe {

using Sha256Digest = std::array<std::uint8_t, 32>;

Sha256Digest sha256(std::span<const std::uint8_t> data);
// The digest of the pieces' concatenation, without copying them together.
Sha256Digest sha256(std::initializer_list<std::span<const std::uint8_t>> pieces);
// The digest of a text's bytes (tokens, labels).
Sha256Digest sha256(std::string_view text);
// Lowercase hex of bytes (digests, ids): the one hex encoder the layers above use.
std::string to_hex(std::span<const std::uint8_t> bytes);
// v as 16 lowercase hex digits, most significant first (no prefix).
std::string to_hex_u64(std::uint64_t v);
// The value of one hex digit (either case), -1 for any other character.
int hex_digit_value(char c);
// Decodes exactly 2 * out.size() hex digits (either case) into out. Returns false, leaving
// out unspecified, when `hex` has another length or a non-hex character.
bool from_hex(std::string_view hex, std::span<std::uint8_t> out);

}  // namespace veil::tfhe
