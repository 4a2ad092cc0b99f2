#include "veil/tfhe/keys.hpp"

#include <gtest/gtest.h>

#include "test_util.hpp"
#include "toy_parameters.hpp"
#include "veil/tfhe/glwe.hpp"
#include "veil/tfhe/lwe.hpp"

namespace veil::tfhe {
namespace {

TEST(SecretKeys, RefusesInsecureParametersUnlessAsked) {
  auto toy = toy::exact_set(2);
  EXPECT_THROW(generate_secret_keys(toy), std::invalid_argument);
  EXPECT_NO_THROW(generate_secret_keys(toy, /*allow_insecure=*/true));
}

TEST(SecretKeys, AreBinaryAndFresh) {
  auto p = toy::exact_set(2, 700);
  auto a = generate_secret_keys(p, true), b = generate_secret_keys(p, true);
  std::size_t ones = 0;
  for (auto bit : a.lwe.bits()) {
    ASSERT_LE(bit, 1u);
    ones += bit;
  }
  EXPECT_GT(ones, 250u);
  EXPECT_LT(ones, 450u);
  EXPECT_FALSE(std::equal(a.glwe.flattened().begin(), a.glwe.flattened().end(), b.glwe.flattened().begin()));
}

TEST(KeyswitchKey, EveryCiphertextEncryptsTheBigKeyBitAtItsLevel) {
  auto p = toy::exact_set(2);
  auto keys = generate_secret_keys(p, true);
  auto seeded = generate_seeded_keyswitch_key(keys, {.threads = 2});
  auto ksk = decompress_keyswitch_key(seeded);
  const auto& shape = ksk.shape();
  // The bodies are rounded to the bits the evaluation form keeps: half a step more error.
  const unsigned body_bits = keyswitch_key_word_bits(p.lwe_dimension, p.lwe_std_dev);
  const std::int64_t bound = (std::int64_t{1} << 20) + (std::int64_t{1} << (63 - body_bits));
  for (std::size_t i = 0; i < shape.input_lwe_dimension.value; i += 37) {
    for (std::size_t j = 1; j <= shape.level_count.value; ++j) {
      Torus phase = decrypt_lwe_phase(keys.lwe.bits(), ksk.ciphertext(i, j - 1));
      Torus expected = keys.glwe.flattened()[i] << (64 - j * shape.base_log.value);
      EXPECT_EQ(seeded.bodies[i * shape.level_count.value + (j - 1)] & ((Torus{1} << (64 - body_bits)) - 1), 0u);
      ASSERT_LT(std::abs(testing::torus_distance(phase, expected)), bound) << i << "," << j;
    }
  }
}

TEST(KeyswitchKey, DecompressionIsDeterministicAndThreadCountIndependent) {
  auto p = toy::exact_set(3);
  auto keys = generate_secret_keys(p, true);
  auto seeded = generate_seeded_keyswitch_key(keys, {.threads = 2});
  auto a = decompress_keyswitch_key(seeded, {.threads = 1});
  auto b = decompress_keyswitch_key(seeded, {.threads = 2});
  EXPECT_TRUE(std::equal(a.data().begin(), a.data().end(), b.data().begin()));
}

TEST(BootstrapKey, SeededExpandsToGgswsOfTheSmallKeyBits) {
  auto p = toy::exact_set(2, 8);
  auto keys = generate_secret_keys(p, true);
  auto seeded = generate_seeded_bootstrap_key(keys, {.threads = 2});
  auto bsk = decompress_bootstrap_key(seeded, {.threads = 1});
  auto again = decompress_bootstrap_key(seeded, {.threads = 2});
  ASSERT_TRUE(std::equal(bsk.data().begin(), bsk.data().end(), again.data().begin()));
  const GgswShape& g = bsk.shape().ggsw;
  const std::size_t n = g.polynomial_size.value, k = g.glwe_dimension.value, l = g.level_count.value;
  for (std::size_t t = 0; t < p.lwe_dimension.value; ++t) {
    const Torus mu = keys.lwe.bits()[t];
    // Body row (component k, level 1) holds mu * 2^(64 - beta) in its constant coefficient.
    GlweCiphertext row{g.glwe_dimension, g.polynomial_size};
    auto src = bsk.ggsw(t).subspan((k * l) * g.row_words(), g.row_words());
    std::copy(src.begin(), src.end(), row.data().begin());
    auto phase = decrypt_glwe_phase(keys.glwe, row);
    Torus expected = mu << (64 - g.base_log.value);
    ASSERT_LT(std::abs(testing::torus_distance(phase[0], expected)), std::int64_t{1} << 30) << "GGSW " << t;
    for (std::size_t j = 1; j < n; ++j) ASSERT_LT(std::abs(testing::torus_distance(phase[j], 0)), std::int64_t{1} << 30);
  }
}

// Multi-bit: GGSW 3j + (b - 1) of the key encrypts [s_2j + 2 s_2j+1 = b].
TEST(BootstrapKey, MultiBitGgswsEncryptThePairIndicators) {
  auto p = toy::exact_set(2, 16);
  p.grouping = GroupingFactor(2);
  auto keys = generate_secret_keys(p, true);
  auto bsk = decompress_bootstrap_key(generate_seeded_bootstrap_key(keys, {.threads = 2}), {.threads = 1});
  const GgswShape& g = bsk.shape().ggsw;
  ASSERT_EQ(bsk.shape().ggsw_count(), 24u);
  const std::size_t k = g.glwe_dimension.value, l = g.level_count.value;
  std::size_t ones = 0;
  for (std::size_t t = 0; t < bsk.shape().ggsw_count(); ++t) {
    const std::size_t j = t / 3, b = t % 3 + 1;
    const Torus mu = keys.lwe.bits()[2 * j] + 2 * keys.lwe.bits()[2 * j + 1] == b ? 1 : 0;
    ones += mu;
    GlweCiphertext row{g.glwe_dimension, g.polynomial_size};
    auto src = bsk.ggsw(t).subspan((k * l) * g.row_words(), g.row_words());
    std::copy(src.begin(), src.end(), row.data().begin());
    auto phase = decrypt_glwe_phase(keys.glwe, row);
    ASSERT_LT(std::abs(testing::torus_distance(phase[0], mu << (64 - g.base_log.value))), std::int64_t{1} << 30)
        << "GGSW " << t;
  }
  // At most one indicator of each pair is 1 (none for the pair 00).
  std::size_t nonzero_pairs = 0;
  for (std::size_t j = 0; j < 8; ++j) nonzero_pairs += (keys.lwe.bits()[2 * j] | keys.lwe.bits()[2 * j + 1]) != 0;
  EXPECT_EQ(ones, nonzero_pairs);
}

TEST(BootstrapKey, DirectFourierExpansionEqualsTwoStepExpansion) {
  auto p = toy::exact_set(2, 6);
  auto keys = generate_secret_keys(p, true);
  auto seeded = generate_seeded_bootstrap_key(keys);
  auto direct = decompress_bootstrap_key_to_fourier(seeded);
  auto two_step = convert_bootstrap_key_to_fourier(decompress_bootstrap_key(seeded));
  // Multi-bit keys (position-blocked groups) too, for any thread count.
  ParameterSet multi_bit = p;
  multi_bit.grouping = GroupingFactor(2);
  auto mb_keys = generate_secret_keys(multi_bit, true);
  auto mb_seeded = generate_seeded_bootstrap_key(mb_keys);
  auto mb_direct = decompress_bootstrap_key_to_fourier(mb_seeded, {.threads = 2});
  auto mb_two_step = convert_bootstrap_key_to_fourier(decompress_bootstrap_key(mb_seeded), {.threads = 1});
  ASSERT_EQ(mb_direct.bytes(), mb_two_step.bytes());
  EXPECT_TRUE(std::equal(mb_direct.group(0), mb_direct.group(0) + mb_direct.bytes() / sizeof(double), mb_two_step.group(0)));
  const auto& g = seeded.shape.ggsw;
  for (std::size_t t = 0; t < p.lwe_dimension.value; ++t)
    for (std::size_t r = 0; r < g.row_count(); ++r)
      for (std::size_t c = 0; c <= g.glwe_dimension.value; ++c)
        ASSERT_TRUE(std::equal(direct.spectrum(t, r, c), direct.spectrum(t, r, c) + g.polynomial_size.value,
                               two_step.spectrum(t, r, c)));
}

TEST(EvaluationKeys, ExpansionRefusesShapesThatDoNotMatchTheParameters) {
  auto p = toy::exact_set(2, 8);
  auto keys = generate_secret_keys(p, true);
  auto seeded = generate_seeded_evaluation_keys(keys);
  auto other = toy::exact_set(2, 9);  // one small-key bit more: every GGSW count differs
  seeded.params = other;
  EXPECT_THROW(expand_evaluation_keys(seeded), std::invalid_argument);
}

TEST(EvaluationKeys, ProgressRisesToOneFromEveryThreadCount) {
  auto p = toy::exact_set(2, 8);
  auto keys = generate_secret_keys(p, true);
  for (unsigned threads : {1u, 2u}) {
    std::vector<double> seen;
    KeygenOptions options;
    options.threads = threads;
    options.progress = [&](double f) { seen.push_back(f); };
    (void)generate_seeded_evaluation_keys(keys, options);
    ASSERT_GE(seen.size(), 2u);
    for (std::size_t i = 1; i < seen.size(); ++i) EXPECT_GE(seen[i], seen[i - 1]);
    EXPECT_GT(seen.front(), 0.0);
    EXPECT_DOUBLE_EQ(seen.back(), 1.0);
  }
}

}  // namespace
}  // namespace veil::tfhe
