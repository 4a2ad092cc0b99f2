#include "veil/tfhe/lwe.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "test_util.hpp"

namespace veil::tfhe {
namespace {

LweSecretKey random_key(std::size_t n) {
  LweSecretKey key{LweDimension(n)};
  Csprng::from_os().fill_binary(key.mutable_bits());
  return key;
}

constexpr double kSigma = 0x1.0p-40;  // small enough that nothing below can fail by noise

TEST(Encoding, RoundTripsEveryMessageForEveryPrecision) {
  for (unsigned p = 1; p <= 8; ++p)
    for (std::uint64_t m = 0; m < (1u << p); ++m) ASSERT_EQ(decode_message(encode_message(m, p), p), m) << p;
}

TEST(Encoding, DecodingRoundsToTheNearestMessage) {
  const unsigned p = 4;
  const Torus delta = delta_for(p);
  EXPECT_EQ(decode_message(encode_message(5, p) + delta / 2 - 1, p), 5u);
  EXPECT_EQ(decode_message(encode_message(5, p) - delta / 2 + 1, p), 5u);
  EXPECT_EQ(decode_message(encode_message(5, p) + delta / 2 + 1, p), 6u);
  EXPECT_EQ(decode_message(Torus{0} - 1, p), 0u);  // tiny negative noise around 0
}

TEST(Lwe, EncryptDecrypt) {
  auto key = random_key(742);
  auto rng = EncryptionRandomness::from_os();
  for (std::uint64_t m = 0; m < 16; ++m) {
    std::vector<Torus> ct(743);
    encrypt_lwe(key.bits(), encode_message(m, 4), kSigma, rng, ct);
    EXPECT_EQ(decode_message(decrypt_lwe_phase(key.bits(), ct), 4), m);
  }
}

TEST(Lwe, WrongKeyDoesNotDecrypt) {
  auto key = random_key(742), other = random_key(742);
  auto rng = EncryptionRandomness::from_os();
  int right = 0;
  for (int trial = 0; trial < 64; ++trial) {
    std::vector<Torus> ct(743);
    encrypt_lwe(key.bits(), encode_message(3, 4), kSigma, rng, ct);
    right += decode_message(decrypt_lwe_phase(other.bits(), ct), 4) == 3;
  }
  EXPECT_LT(right, 20);  // expected 64/32 = 2 by chance
}

TEST(Lwe, LevelledOperations) {
  const unsigned p = 6;
  auto key = random_key(600);
  auto rng = EncryptionRandomness::from_os();
  auto enc = [&](std::uint64_t m) {
    std::vector<Torus> ct(601);
    encrypt_lwe(key.bits(), encode_message(m, p), kSigma, rng, ct);
    return ct;
  };
  auto dec = [&](std::span<const Torus> ct) { return decode_message(decrypt_lwe_phase(key.bits(), ct), p) % 64; };
  auto a = enc(20), b = enc(7);
  std::vector<Torus> out(601);
  lwe_add(out, a, b);
  EXPECT_EQ(dec(out), 27u);
  lwe_sub(out, a, b);
  EXPECT_EQ(dec(out), 13u);
  lwe_negate(out, b);
  EXPECT_EQ(dec(out), (64u - 7u) % 64u);  // two's complement in p bits (+ padding bit wraps)
  lwe_add_plaintext(out, encode_message(10, p));
  EXPECT_EQ(dec(out), 3u);
  lwe_mul_scalar(out, b, 5);
  EXPECT_EQ(dec(out), 35u);
  lwe_mul_scalar(out, b, -2);
  EXPECT_EQ(dec(out), 64u - 14u);
  auto c = enc(3);
  std::vector<std::span<const Torus>> cts{a, b, c};
  std::vector<std::int64_t> w{1, -2, 4};
  lwe_dot(out, cts, w);
  EXPECT_EQ(dec(out), 20u - 14u + 12u);
  EXPECT_THROW(lwe_dot(out, cts, std::vector<std::int64_t>{1, 2}), std::invalid_argument);
  std::vector<Torus> short_ct(10);
  EXPECT_THROW(lwe_add(out, a, short_ct), std::invalid_argument);
}

TEST(Lwe, TrivialEncryptionDecryptsUnderAnyKey) {
  auto key = random_key(100);
  std::vector<Torus> ct(101);
  trivially_encrypt_lwe(encode_message(9, 5), ct);
  EXPECT_EQ(decode_message(decrypt_lwe_phase(key.bits(), ct), 5), 9u);
}

TEST(SeededLweList, DecompressesToCiphertextsThatDecrypt) {
  auto key = random_key(700);
  std::vector<Torus> plaintexts;
  for (std::uint64_t m = 0; m < 40; ++m) plaintexts.push_back(encode_message(m % 16, 4));
  Csprng noise = Csprng::from_os();
  auto seeded = encrypt_seeded_lwe_list(key.bits(), plaintexts, kSigma, noise);
  ASSERT_EQ(seeded.count(), 40u);
  auto list = decompress_lwe_list(seeded);
  auto again = decompress_lwe_list(seeded);
  EXPECT_TRUE(std::equal(list.data().begin(), list.data().end(), again.data().begin()));
  for (std::size_t c = 0; c < list.count(); ++c)
    EXPECT_EQ(decode_message(decrypt_lwe_phase(key.bits(), list[c]), 4), c % 16);
  // Fresh seeds: two encryptions of the same data share no mask.
  auto other = encrypt_seeded_lwe_list(key.bits(), plaintexts, kSigma, noise);
  EXPECT_NE(other.seed, seeded.seed);
}

}  // namespace
}  // namespace veil::tfhe
