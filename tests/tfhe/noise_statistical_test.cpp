// Statistical checks of the noise model against the engine (CTest label `statistical`).
//
// Each test measures the variance of an error the model predicts (fresh encryption,
// keyswitch, modulus switch, PBS output) over enough samples that the estimate's relative
// standard error is below 10%, and requires the ratio measured / predicted to lie within
// [1/2, 2] -- the model is an upper-bound style estimate, so the measured value may sit below
// it but not far. The failure-rate test runs a deliberately noisy toy set whose predicted
// error probability is large enough to count.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>

#include "toy_parameters.hpp"
#include "veil/tfhe/keys.hpp"
#include "veil/tfhe/lwe.hpp"
#include "veil/tfhe/packing.hpp"
#include "veil/tfhe/parameters.hpp"
#include "veil/tfhe/pbs.hpp"
#include "veil/tfhe/polynomial.hpp"

namespace veil::tfhe {
namespace {

// Signed error in torus units (relative to q): phase - expected.
double torus_error(Torus phase, Torus expected) {
  return static_cast<double>(static_cast<std::int64_t>(phase - expected)) * 0x1.0p-64;
}

struct Variance {
  double sum_sq = 0;
  std::size_t count = 0;
  void add(double e) {
    sum_sq += e * e;
    ++count;
  }
  double value() const { return sum_sq / static_cast<double>(count); }
};

void expect_within_factor_two(double measured, double predicted, const std::string& what) {
  ::testing::Test::RecordProperty(what + "_measured_over_predicted", std::to_string(measured / predicted));
  std::printf("%-40s measured %.3e  predicted %.3e  ratio %.3f\n", what.c_str(), measured, predicted,
              measured / predicted);
  EXPECT_GT(measured / predicted, 0.5) << what;
  EXPECT_LT(measured / predicted, 2.0) << what;
}

struct Keys {
  SecretKeys secret;
  EvaluationKeys eval;
};

Keys keys_for(const ParameterSet& p, bool insecure = false) {
  auto secret = generate_secret_keys(p, insecure);
  auto eval = expand_evaluation_keys(generate_seeded_evaluation_keys(secret));
  return {std::move(secret), std::move(eval)};
}

ParameterSet optimized(unsigned bits) {
  auto p = optimize_parameters({.message_bits = bits});
  if (!p) throw std::runtime_error("no parameter set");
  return *p;
}

// The error of KS-PBS outputs through the identity table against Var_BR: 200 lookups under
// fresh keys. 200 samples give the variance to a relative standard error of 10%.
void measure_pbs_output_variance(const ParameterSet& p, unsigned bits) {
  auto k = keys_for(p);
  auto table = LookupTable::from_function(p.polynomial_size, bits, bits, [](std::uint64_t m) { return m; });
  PbsScratch scratch(p);
  AlignedVector<Torus> out(lwe_size(p.big_lwe_dimension()));
  Variance v;
  for (int i = 0; i < 200; ++i) {
    auto ct = encrypt_message(k.secret, i % (1u << bits), bits);
    keyswitch_programmable_bootstrap(k.eval, ct.data(), table, out, scratch);
    v.add(torus_error(decrypt_lwe_phase(k.secret.glwe.flattened(), out), encode_message(i % (1u << bits), bits)));
  }
  expect_within_factor_two(v.value(), noise_breakdown(p).blind_rotation, p.name + " PBS output");
}

TEST(NoiseStatistics, FreshEncryption) {
  auto p = optimized(2);
  auto secret = generate_secret_keys(p);
  Variance v;
  for (int i = 0; i < 2000; ++i) {
    auto ct = encrypt_message(secret, 1, 2);
    v.add(torus_error(decrypt_lwe_phase(secret.glwe.flattened(), ct.data()), encode_message(1, 2)));
  }
  expect_within_factor_two(v.value(), noise_breakdown(p).fresh, "fresh");
}

TEST(NoiseStatistics, Keyswitch) {
  for (unsigned bits : {2u, 4u}) {
    auto p = optimized(bits);
    auto k = keys_for(p);
    Variance v;
    KeyswitchScratch ks_scratch;
    AlignedVector<Torus> small(lwe_size(p.lwe_dimension));
    for (int i = 0; i < 300; ++i) {
      auto ct = encrypt_message(k.secret, 1, bits);
      keyswitch(k.eval.ksk, ct.data(), small, ks_scratch);
      v.add(torus_error(decrypt_lwe_phase(k.secret.lwe.bits(), small), encode_message(1, bits)));
    }
    const auto noise = noise_breakdown(p);
    expect_within_factor_two(v.value(), noise.keyswitch + noise.fresh, p.name + " keyswitch");
  }
}

// The evaluation form's word rounding alone: the same ciphertexts through the exact key and
// through its 24- and 32-bit forms, against the truncation term of keyswitch_variance (the
// difference of the two keyswitch variances with and without the output dimension).
TEST(NoiseStatistics, KeyswitchKeyWordRounding) {
  auto p = optimized(4);
  auto secret = generate_secret_keys(p);
  const LweKeyswitchKey exact = decompress_keyswitch_key(generate_seeded_keyswitch_key(secret));
  const double b2 = std::ldexp(1.0, 2 * static_cast<int>(p.ks_base_log.value));
  const double per_word_square = (p.lwe_dimension.value / 2.0 + 1.0) * p.big_lwe_dimension().value *
                                 p.ks_level_count.value * (b2 / 12.0 + 1.0 / 6.0) / 12.0;
  for (unsigned word_bits : {24u, 32u}) {
    const TruncatedKeyswitchKey truncated(exact, word_bits);
    KeyswitchScratch scratch;
    AlignedVector<Torus> a(lwe_size(p.lwe_dimension)), b(lwe_size(p.lwe_dimension));
    Variance v;
    for (int i = 0; i < 300; ++i) {
      auto ct = encrypt_message(secret, 1, 4);
      keyswitch(exact, ct.data(), a, scratch);
      keyswitch(truncated, ct.data(), b, scratch);
      v.add(torus_error(decrypt_lwe_phase(secret.lwe.bits(), b), decrypt_lwe_phase(secret.lwe.bits(), a)));
    }
    const double predicted = per_word_square * std::ldexp(1.0, -2 * static_cast<int>(word_bits));
    expect_within_factor_two(v.value(), predicted, p.name + " keyswitch-key rounding, " + std::to_string(word_bits) + "-bit words");
  }
  // keyswitch_variance counts the set's own width.
  ASSERT_EQ(keyswitch_key_word_bits(p.lwe_dimension, p.lwe_std_dev), 24u);
  const double counted = keyswitch_variance(p.big_lwe_dimension(), p.lwe_std_dev, p.ks_base_log, p.ks_level_count,
                                            p.lwe_dimension) -
                         keyswitch_variance(p.big_lwe_dimension(), p.lwe_std_dev, p.ks_base_log, p.ks_level_count);
  EXPECT_NEAR(counted / (per_word_square * 0x1.0p-48), 1.0, 1e-9);
}

TEST(NoiseStatistics, CenteredModulusSwitch) {
  for (unsigned bits : {2u, 4u, 6u}) {
    auto p = optimized(bits);
    auto secret = generate_secret_keys(p);
    const std::size_t n = p.lwe_dimension.value;
    const std::size_t log2_2n = static_cast<std::size_t>(std::countr_zero(p.polynomial_size.value)) + 1;
    const double two_n = std::ldexp(1.0, static_cast<int>(log2_2n));
    auto rng = EncryptionRandomness::from_os();
    AlignedVector<Torus> ct(n + 1);
    std::vector<std::size_t> mask(n);
    Variance v;
    for (int i = 0; i < 20000; ++i) {
      // Any ciphertext will do: the switch's error depends on the mask only.
      encrypt_lwe(secret.lwe.bits(), encode_message(1, bits), 0.0, rng, ct);
      const Torus phase = decrypt_lwe_phase(secret.lwe.bits(), ct);
      const std::size_t body = centered_modulus_switch(ct, log2_2n, mask);
      std::size_t switched_phase = body;
      for (std::size_t t = 0; t < n; ++t) switched_phase -= mask[t] * secret.lwe.bits()[t];
      switched_phase &= (std::size_t{1} << log2_2n) - 1;
      // Error in torus units: switched phase / 2N - phase / q, centred into [-1/2, 1/2).
      double e = static_cast<double>(switched_phase) / two_n - static_cast<double>(phase) * 0x1.0p-64;
      e -= std::nearbyint(e);
      v.add(e);
    }
    expect_within_factor_two(v.value(), noise_breakdown(p).modulus_switch, p.name + " modulus switch");
  }
}

// The answers' switch (modulus_switch_lwe_ciphertext_list) to a few bits, under the small
// and the big key, against modulus_switch_variance_to_bits.
TEST(NoiseStatistics, AnswerModulusSwitch) {
  auto p = optimized(4);
  auto secret = generate_secret_keys(p);
  auto rng = EncryptionRandomness::from_os();
  for (const bool big : {false, true}) {
    const std::span<const Torus> key = big ? secret.glwe.flattened() : secret.lwe.bits();
    const LweDimension dim = big ? p.big_lwe_dimension() : p.lwe_dimension;
    for (unsigned bits : {10u, 14u}) {
      LweCiphertextList list(dim, 4000);
      for (std::size_t c = 0; c < list.count(); ++c) encrypt_lwe(key, encode_message(c % 16, 4), 0.0, rng, list[c]);
      std::vector<Torus> phases;
      for (std::size_t c = 0; c < list.count(); ++c) phases.push_back(decrypt_lwe_phase(key, list[c]));
      modulus_switch_lwe_ciphertext_list(list, bits);
      Variance v;
      for (std::size_t c = 0; c < list.count(); ++c) v.add(torus_error(decrypt_lwe_phase(key, list[c]), phases[c]));
      expect_within_factor_two(v.value(), modulus_switch_variance_to_bits(dim, bits),
                               p.name + (big ? " big-key" : " small-key") + " answer switch to " + std::to_string(bits) + " bits");
    }
  }
}

// The packing keyswitch of answers (packing.hpp) against packing_keyswitch_variance, and with
// the switch to 14 bits against that plus modulus_switch_variance_to_bits(k'N', 14): a set
// whose noise is the decomposition's rounding (2^20 x 1), one whose noise is the key's, which
// the rotation X^t spreads over all 20 packed outputs (2^30 x 1), and a shorter answer key
// (k'N' = 1536 at the curve's noise for it, 2^-36.8) whose key noise dominates at 2^12 x 2.
TEST(NoiseStatistics, PackingKeyswitch) {
  struct Case {
    std::size_t base_log, levels, answer_dimension;
  };
  for (const Case c : {Case{20, 1, 0}, Case{30, 1, 0}, Case{12, 2, 1536}}) {
    const std::size_t base_log = c.base_log;
    auto p = optimized(4);
    p.answer_polynomial_size = PolynomialSize(32);
    p.answer_base_log = DecompositionBaseLog(base_log);
    p.answer_level_count = DecompositionLevelCount(c.levels);
    if (c.answer_dimension != 0) {
      p.answer_key_dimension = GlweDimension(c.answer_dimension / 32);
      p.answer_std_dev = std::exp2(min_secure_log2_std_dev(c.answer_dimension));
      ASSERT_TRUE(check_security(p).secure) << check_security(p).detail;
    }
    const LweDimension answer_dimension = p.answer_lwe_dimension();
    auto secret = generate_secret_keys(p);
    const PackingKey key = expand_packing_key(generate_seeded_packing_key(secret));
    const GlweSecretKey answer_key = answer_secret_key(secret);
    auto rng = EncryptionRandomness::from_os();
    constexpr std::size_t kOutputs = 20;
    for (const unsigned bits : {63u, 14u}) {
      Variance v;
      // The shorter key's 14-bit leg must also tell its switch (over k'N' = 1536 mask words)
      // from one over K = 2048 (4/3 of it): more samples.
      const int rounds = c.answer_dimension != 0 ? 100 : 12;
      for (int round = 0; round < rounds; ++round) {
        LweCiphertextList in(p.big_lwe_dimension(), kOutputs);
        for (std::size_t t = 0; t < kOutputs; ++t) encrypt_lwe(secret.glwe.flattened(), encode_message(t % 16, 4), 0.0, rng, in[t]);
        const LweCiphertextList out = unpack_answer(pack_answer(key, in, bits));
        for (std::size_t t = 0; t < kOutputs; ++t)
          v.add(torus_error(decrypt_lwe_phase(answer_key.flattened(), out[t]), encode_message(t % 16, 4)));
      }
      const double predicted = packing_keyswitch_variance(p, kOutputs) +
                               (bits < 63 ? modulus_switch_variance_to_bits(answer_dimension, bits) : 0.0);
      expect_within_factor_two(v.value(), predicted,
                               "packing 2^" + std::to_string(base_log) + "x" + std::to_string(c.levels) + " into dimension " +
                                   std::to_string(answer_dimension.value) + " to " + std::to_string(bits) + " bits");
      if (c.answer_dimension != 0 && bits < 63)
        EXPECT_LT(v.value(), 0.9 * (packing_keyswitch_variance(p, kOutputs) +
                                    modulus_switch_variance_to_bits(p.big_lwe_dimension(), bits)));
    }
  }
}

// The packing key is encrypted at the answer key's noise: its ciphertexts decrypted under
// answer_secret_key, their message removed, err with the variance of answer_std_dev (and the
// bodies' rounding), far above the big key's glwe_std_dev that a shorter key must not use.
TEST(NoiseStatistics, PackingKeyIsEncryptedAtTheAnswerKeysNoise) {
  auto p = optimized(4);
  constexpr std::size_t kNp = 32, kDimension = 1536;
  p.answer_polynomial_size = PolynomialSize(kNp);
  p.answer_base_log = DecompositionBaseLog(12);
  p.answer_level_count = DecompositionLevelCount(2);
  p.answer_key_dimension = GlweDimension(kDimension / kNp);
  p.answer_std_dev = std::exp2(min_secure_log2_std_dev(kDimension));
  ASSERT_TRUE(check_security(p).secure) << check_security(p).detail;
  const SecretKeys secret = generate_secret_keys(p);
  const PackingKey key = expand_packing_key(generate_seeded_packing_key(secret));
  const GlweSecretKey answer = answer_secret_key(secret);
  const std::size_t k = p.answer_glwe_dimension().value, l = p.answer_level_count.value, beta = p.answer_base_log.value;
  Variance v;
  for (std::size_t c = 0; c < 300; ++c) {
    const std::size_t i = c / l, j = c % l + 1;
    const std::span<const Torus> ct = key.ciphertext(i, j - 1);  // coefficient-major: (u, q) at u (k' + 1) + q
    // phase = B - sum_q A_q S_q (decrypt_glwe_phase takes N >= 256 only; N' is 32 here).
    std::vector<Torus> phase(kNp), mask(kNp), product(kNp);
    for (std::size_t u = 0; u < kNp; ++u) phase[u] = ct[u * (k + 1) + k];
    for (std::size_t q = 0; q < k; ++q) {
      for (std::size_t u = 0; u < kNp; ++u) mask[u] = ct[u * (k + 1) + q];
      negacyclic_multiply_schoolbook(mask, answer.polynomial(q), product);
      for (std::size_t u = 0; u < kNp; ++u) phase[u] -= product[u];
    }
    for (std::size_t u = 0; u < kNp; ++u) {
      const Torus message = u == 0 ? (secret.glwe.flattened()[i] & 1) << (64 - j * beta) : 0;
      v.add(torus_error(phase[u], message));
    }
  }
  const double predicted = p.answer_std_dev * p.answer_std_dev + bootstrap_key_body_rounding_variance(p.answer_std_dev);
  expect_within_factor_two(v.value(), predicted, "packing key noise at 1536 coefficients");
  EXPECT_GT(v.value(), 1e6 * p.glwe_std_dev * p.glwe_std_dev);
}

TEST(NoiseStatistics, PbsOutput) {
  for (unsigned bits : {2u, 4u}) {
    auto p = optimized(bits);
    measure_pbs_output_variance(p, bits);
  }
}

// Bootstrap key bodies rounded to fewer bits (ParameterSet::bsk_body_bits): with so few that
// their rounding is most of Var_BR, the measured PBS output still matches the model, so key
// generation rounds to the set's bits and the model counts them. (The optimizer's own choice
// adds at most 1/16 of an external product's noise: too little to see at 200 samples.)
TEST(NoiseStatistics, PbsOutputWithBootstrapKeyBodiesOfFewerBits) {
  ParameterSet p = optimized(2);
  const unsigned rule = bootstrap_key_body_bits(p.glwe_std_dev);
  double share = 0;
  for (unsigned b = rule - 1; b >= 16 && share < 0.9; --b) {
    p.bsk_body_bits = b;
    const NoiseBreakdown noise = noise_breakdown(p);
    share = noise.bsk_rounding / noise.blind_rotation;
  }
  ASSERT_GE(share, 0.9) << p.describe();
  std::printf("%u-bit bodies: their rounding is %.2f of Var_BR\n", p.bsk_body_bits, share);
  measure_pbs_output_variance(p, 2);
}

// The multi-bit rotation's model (three times the GGSW-noise and FFT terms per bit, the
// input rounding once) against its measured output, on the multi-bit optimized sets.
TEST(NoiseStatistics, MultiBitPbsOutput) {
  for (unsigned bits : {2u, 4u}) {
    OptimizerOptions options;
    options.message_bits = bits;
    options.grouping = GroupingFactor(2);
    auto p = optimize_parameters(options);
    ASSERT_TRUE(p.has_value());
    measure_pbs_output_variance(*p, bits);
  }
}

// A toy set with a keyswitch key so noisy that about 1 lookup in 8 fails: the observed
// failure rate must match the model's prediction within 4.5 binomial standard deviations.
TEST(NoiseStatistics, FailureRateMatchesPrediction) {
  const unsigned bits = 3;
  ParameterSet p = toy::noisy_set(bits, std::ldexp(1.0, -15.4));
  const double predicted = lookup_error_probability(p, 1.0);
  ASSERT_GT(predicted, 0.03);
  ASSERT_LT(predicted, 0.4);
  auto k = keys_for(p, /*insecure=*/true);
  auto table = LookupTable::from_function(p.polynomial_size, bits, bits, [](std::uint64_t m) { return m; });
  PbsScratch scratch(p);
  AlignedVector<Torus> out(lwe_size(p.big_lwe_dimension()));
  const int trials = 3000;
  int failures = 0;
  for (int i = 0; i < trials; ++i) {
    const std::uint64_t m = static_cast<std::uint64_t>(i) % (1u << bits);
    auto ct = encrypt_message(k.secret, m, bits);
    keyswitch_programmable_bootstrap(k.eval, ct.data(), table, out, scratch);
    failures += decrypt_message(k.secret, out, bits) != m;
  }
  const double observed = static_cast<double>(failures) / trials;
  const double sd = std::sqrt(predicted * (1 - predicted) / trials);
  std::printf("failure rate: observed %.4f predicted %.4f (sd %.4f)\n", observed, predicted, sd);
  EXPECT_NEAR(observed, predicted, 4.5 * sd);
}

}  // namespace
}  // namespace veil::tfhe
