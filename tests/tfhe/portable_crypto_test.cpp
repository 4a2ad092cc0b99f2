// Veil's own stream ciphers (src/tfhe/portable_crypto.hpp), used by the WebAssembly build:
// AES-128 against FIPS-197's example and, in counter mode, against the native mask stream
// (OpenSSL's AES-128-CTR); ChaCha20 against RFC 8439's block example; SHA-256 against
// FIPS 180-4's examples and OpenSSL.
#include "portable_crypto.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "veil/tfhe/csprng.hpp"

namespace veil::tfhe {
namespace {

std::array<std::uint8_t, 16> counting_bytes(std::uint8_t step) {
  std::array<std::uint8_t, 16> b{};
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::uint8_t>(i * step);
  return b;
}

TEST(Aes128Ctr, Fips197AppendixC1) {
  const Aes128Ctr aes(counting_bytes(1));  // 000102...0f
  const std::uint8_t plaintext[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                                      0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
  const std::uint8_t expected[16] = {0x69, 0xc4, 0xe0, 0xd8, 0x6a, 0x7b, 0x04, 0x30,
                                     0xd8, 0xcd, 0xb7, 0x80, 0x70, 0xb4, 0xc5, 0x5a};
  std::uint8_t out[16];
  aes.encrypt_block(plaintext, out);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(out[i], expected[i]) << "byte " << i;
}

TEST(Aes128Ctr, KeystreamIsTheMaskStreamWordForWord) {
  for (int trial = 0; trial < 4; ++trial) {
    const Seed seed = os_random_seed();
    const Aes128Ctr aes(seed.bytes);
    for (std::uint64_t first_block : {0ull, 1ull, 255ull, 256ull, 100000ull}) {
      std::vector<std::uint8_t> bytes(16 * 300);
      aes.keystream(first_block, bytes.data(), 300);
      Csprng reference(seed, 2 * first_block);
      for (std::size_t w = 0; w < 600; ++w) {
        std::uint64_t word = 0;
        for (int i = 0; i < 8; ++i) word |= std::uint64_t{bytes[8 * w + static_cast<std::size_t>(i)]} << (8 * i);
        ASSERT_EQ(word, reference.next_u64()) << "block " << first_block << " word " << w;
      }
    }
  }
}

TEST(ChaCha20, Rfc8439BlockFunctionExample) {
  // RFC 8439 2.3.2: key 00..1f, nonce 00:00:00:09:00:00:00:4a:00:00:00:00, block counter 1.
  // In the 64-bit counter layout: counter = 1 + (0x09000000 << 32), nonce = 0x4a000000.
  std::array<std::uint32_t, 8> key{};
  for (std::uint32_t i = 0; i < 8; ++i)
    key[i] = (4 * i) | ((4 * i + 1) << 8) | ((4 * i + 2) << 16) | ((4 * i + 3) << 24);
  std::uint8_t out[64];
  chacha20_blocks(key, 0x4a000000, 1 + (std::uint64_t{0x09000000} << 32), out, 1);
  const std::uint8_t expected[64] = {
      0x10, 0xf1, 0xe7, 0xe4, 0xd1, 0x3b, 0x59, 0x15, 0x50, 0x0f, 0xdd, 0x1f, 0xa3, 0x20, 0x71, 0xc4,
      0xc7, 0xd1, 0xf4, 0xc7, 0x33, 0xc0, 0x68, 0x03, 0x04, 0x22, 0xaa, 0x9a, 0xc3, 0xd4, 0x6c, 0x4e,
      0xd2, 0x82, 0x64, 0x46, 0x07, 0x9f, 0xaa, 0x09, 0x14, 0xc2, 0xd7, 0x05, 0xd9, 0x8b, 0x02, 0xa2,
      0xb5, 0x12, 0x9c, 0xd1, 0xde, 0x16, 0x4e, 0xb9, 0xcb, 0xd0, 0x83, 0xe8, 0xa2, 0x50, 0x3c, 0x4e};
  for (int i = 0; i < 64; ++i) EXPECT_EQ(out[i], expected[i]) << "byte " << i;
}

TEST(ChaCha20, ConsecutiveCallsContinueTheStream) {
  std::array<std::uint32_t, 8> key{1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<std::uint8_t> whole(64 * 5), parts(64 * 5);
  chacha20_blocks(key, 7, 10, whole.data(), 5);
  chacha20_blocks(key, 7, 10, parts.data(), 2);
  chacha20_blocks(key, 7, 12, parts.data() + 128, 3);
  EXPECT_EQ(whole, parts);
}

std::span<const std::uint8_t> text(const char* s) {
  return {reinterpret_cast<const std::uint8_t*>(s), std::char_traits<char>::length(s)};
}

TEST(Sha256Portable, Fips180Examples) {
  EXPECT_EQ(to_hex(sha256_portable({text("abc")})), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(to_hex(sha256_portable({text("")})), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(to_hex(sha256_portable({text("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")})),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Sha256Portable, MatchesOpenSslAcrossBlockBoundaries) {
  std::vector<std::uint8_t> data(1000);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::uint8_t>(i * 131 + 7);
  for (std::size_t size : {0u, 1u, 55u, 56u, 63u, 64u, 65u, 119u, 120u, 128u, 999u}) {
    const std::span<const std::uint8_t> all(data.data(), size);
    ASSERT_EQ(sha256_portable({all}), sha256(all)) << size << " bytes";
    const std::size_t cut = size / 3;
    ASSERT_EQ(sha256_portable({all.first(cut), all.subspan(cut)}), sha256(all)) << size << " bytes in two pieces";
  }
}

}  // namespace
}  // namespace veil::tfhe
