// SHA-256 (OpenSSL EVP; Veil's own in WebAssembly), the one digest Veil uses: frame checksums (their first 16 bytes),
// model ids, key-store integrity and token hashes.
// Thread safety: pure functions. Throws std::runtime_error if OpenSSL fails.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>

namespace veil::tfhe {

using Sha256Digest = std::array<std::uint8_t, 32>;

Sha256Digest sha256(std::span<const std::uint8_t> data);
// The digest of the pieces' concatenation, without copying them together.
Sha256Digest sha256(std::initializer_list<std::span<const std::uint8_t>> pieces);
// Lowercase hex of bytes (digests, ids): the one hex encoder the layers above use.
std::string to_hex(std::span<const std::uint8_t> bytes);

}  // namespace veil::tfhe
