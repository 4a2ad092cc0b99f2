#include "veil/tfhe/csprng.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace veil::tfhe {
namespace {

TEST(Csprng, SameSeedGivesSameStream) {
  Seed seed = os_random_seed();
  Csprng a(seed), b(seed);
  for (int i = 0; i < 5000; ++i) ASSERT_EQ(a.next_u64(), b.next_u64());
}

TEST(Csprng, OsSeedsDiffer) { EXPECT_NE(os_random_seed(), os_random_seed()); }

TEST(Csprng, OffsetJumpsToTheSameWords) {
  Seed seed = os_random_seed();
  Csprng whole(seed);
  std::vector<Torus> stream(3001);
  whole.fill(stream);
  for (std::uint64_t offset : {0ull, 1ull, 2ull, 511ull, 512ull, 513ull, 1777ull}) {
    Csprng jumped(seed, offset);
    for (std::uint64_t i = offset; i < offset + 1000; ++i) ASSERT_EQ(jumped.next_u64(), stream[i]) << "offset " << offset;
  }
}

TEST(Csprng, FillMatchesNextWord) {
  Seed seed = os_random_seed();
  Csprng a(seed), b(seed);
  std::vector<Torus> words(1234);
  a.fill(words);
  for (auto w : words) ASSERT_EQ(w, b.next_u64());
}

TEST(Csprng, StreamIsAesCtrOfTheSeed) {
  // Known answer: AES-128 (FIPS-197 appendix C.1 key) encrypting counter block 0.
  Seed seed;
  for (int i = 0; i < 16; ++i) seed.bytes[i] = static_cast<std::uint8_t>(i);
  Csprng rng(seed);
  // AES-128_{000102..0f}(0^128) = c6a13b37878f5b826f4f8162a1c8d879
  EXPECT_EQ(rng.next_u64(), 0x825b8f87373ba1c6ull);
  EXPECT_EQ(rng.next_u64(), 0x79d8c8a162814f6full);
}

TEST(Csprng, UniformBitsAreBalanced) {
  Csprng rng = Csprng::from_os();
  std::vector<Torus> bits(100000);
  rng.fill_binary(bits);
  double ones = 0;
  for (auto b : bits) {
    ASSERT_LE(b, 1u);
    ones += static_cast<double>(b);
  }
  EXPECT_NEAR(ones / bits.size(), 0.5, 0.01);  // 6 sigma
}

TEST(GaussianSampler, MeanAndStdDevMatch) {
  Csprng rng = Csprng::from_os();
  const double sigma = std::ldexp(1.0, -20);
  GaussianSampler sampler(sigma);
  const int count = 200000;
  double sum = 0, sum_sq = 0;
  for (int i = 0; i < count; ++i) {
    double e = static_cast<double>(static_cast<std::int64_t>(sampler.sample(rng))) * 0x1.0p-64;
    sum += e;
    sum_sq += e * e;
  }
  double mean = sum / count;
  double sd = std::sqrt(sum_sq / count - mean * mean);
  EXPECT_NEAR(mean / sigma, 0.0, 0.02);
  EXPECT_NEAR(sd / sigma, 1.0, 0.01);
}

}  // namespace
}  // namespace veil::tfhe
