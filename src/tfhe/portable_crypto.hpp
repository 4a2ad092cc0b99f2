// Veil's own symmetric primitives, for builds without OpenSSL (the WebAssembly client: wasm/):
// two stream ciphers and SHA-256.
//
//  - Aes128Ctr: AES-128 (FIPS-197) in counter mode with a 128-bit big-endian block counter,
//    the mask stream of csprng.hpp byte for byte, so that a seeded ciphertext made in a
//    browser expands on the server to the same words. Table-driven: its memory accesses
//    depend on the key and data, which is harmless here because mask streams are keyed by
//    public seeds and produce public masks. Never key it with a secret.
//  - ChaCha20 (Bernstein's original 64-bit counter, 64-bit nonce): the secret stream of such
//    builds (secret keys and noise), constant-time by construction (additions, rotations,
//    exclusive-ors only). Its output need not match any other build: secrets never travel.
//  - sha256_portable: FIPS 180-4's SHA-256, the digest of sha256.hpp (frame checksums, ids).
// Native builds use OpenSSL for all three (AES-NI, SHA-NI); the tests check these against it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>

#include "veil/tfhe/sha256.hpp"

namespace veil::tfhe {

class Aes128Ctr {
 public:
  explicit Aes128Ctr(const std::array<std::uint8_t, 16>& key);
  ~Aes128Ctr();
  Aes128Ctr(const Aes128Ctr&) = default;
  Aes128Ctr& operator=(const Aes128Ctr&) = default;

  // One block: out <- AES-128_key(in). `in` and `out` may be the same.
  void encrypt_block(const std::uint8_t in[16], std::uint8_t out[16]) const;
  // out <- the key stream of blocks [first_block, first_block + blocks): block b is the
  // encryption of b as a 128-bit big-endian integer (the high 64 bits stay 0).
  void keystream(std::uint64_t first_block, std::uint8_t* out, std::size_t blocks) const;

 private:
  std::array<std::uint32_t, 44> round_keys_{};
};

// out <- `blocks` 64-byte ChaCha20 blocks of `key` (eight little-endian words) and `nonce`,
// counters first_counter, first_counter + 1, ...
void chacha20_blocks(const std::array<std::uint32_t, 8>& key, std::uint64_t nonce, std::uint64_t first_counter,
                     std::uint8_t* out, std::size_t blocks);

// The SHA-256 of the pieces' concatenation.
Sha256Digest sha256_portable(std::initializer_list<std::span<const std::uint8_t>> pieces);

}  // namespace veil::tfhe
