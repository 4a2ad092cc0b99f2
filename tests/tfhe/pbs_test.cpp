#include "veil/tfhe/pbs.hpp"

#include <algorithm>
#include <cmath>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "test_util.hpp"
#include "toy_parameters.hpp"
#include "veil/tfhe/decomposition.hpp"
#include "veil/tfhe/lwe.hpp"

namespace veil::tfhe {
namespace {

struct Fixture {
  SecretKeys secret;
  EvaluationKeys eval;
};

Fixture make_keys(const ParameterSet& p, bool allow_insecure) {
  auto secret = generate_secret_keys(p, allow_insecure);
  auto eval = expand_evaluation_keys(generate_seeded_evaluation_keys(secret));
  return {std::move(secret), std::move(eval)};
}

// (precision, grouping): every test runs the classical and the multi-bit blind rotation.
class PbsPrecision : public ::testing::TestWithParam<std::tuple<unsigned, std::size_t>> {
 protected:
  unsigned bits() const { return std::get<0>(GetParam()); }
  ParameterSet toy_set() const {
    ParameterSet set = toy::exact_set(bits());
    set.grouping = GroupingFactor(std::get<1>(GetParam()));
    return set;
  }
};

// Every message of every precision through the identity and a random table.
TEST_P(PbsPrecision, EveryMessageThroughIdentityAndRandomTable) {
  const unsigned p = bits();
  auto fx = make_keys(toy_set(), true);
  const std::size_t count = std::size_t{1} << p;
  std::vector<std::uint64_t> random_table(count);
  for (auto& v : random_table) v = testing::test_rng()() % count;
  auto identity = LookupTable::from_function(fx.eval.params.polynomial_size, p, p, [](std::uint64_t m) { return m; });
  auto random = LookupTable::from_function(fx.eval.params.polynomial_size, p, p,
                                           [&](std::uint64_t m) { return random_table[m]; });
  PbsScratch scratch(fx.eval.params);
  AlignedVector<Torus> out(lwe_size(fx.eval.params.big_lwe_dimension()));
  for (std::uint64_t m = 0; m < count; ++m) {
    auto ct = encrypt_message(fx.secret, m, p);
    keyswitch_programmable_bootstrap(fx.eval, ct.data(), identity, out, scratch);
    ASSERT_EQ(decrypt_message(fx.secret, out, p), m) << p << "-bit identity, message " << m;
    keyswitch_programmable_bootstrap(fx.eval, ct.data(), random, out, scratch);
    ASSERT_EQ(decrypt_message(fx.secret, out, p), random_table[m]) << p << "-bit random table, message " << m;
  }
}

// A dot product with clear weights feeding a lookup, the shape of every neural layer.
TEST_P(PbsPrecision, DotProductThenLookup) {
  const unsigned p = bits();
  auto fx = make_keys(toy_set(), true);
  const std::uint64_t modulus = std::uint64_t{1} << p;
  auto square = LookupTable::from_function(fx.eval.params.polynomial_size, p, p,
                                           [&](std::uint64_t m) { return (m * m + 1) % modulus; });
  PbsScratch scratch(fx.eval.params);
  const std::size_t dim = lwe_size(fx.eval.params.big_lwe_dimension());
  for (int trial = 0; trial < 8; ++trial) {
    // Draw until the dot product lies in [0, 2^p): the padding bit must stay 0 (the
    // circuit layer's range analysis guarantees this in real circuits).
    std::vector<std::uint64_t> xs(4);
    std::vector<std::int64_t> w(4);
    std::int64_t expected = -1;
    while (expected < 0 || expected >= static_cast<std::int64_t>(modulus)) {
      expected = 0;
      for (std::size_t i = 0; i < 4; ++i) {
        xs[i] = testing::test_rng()() % modulus;
        w[i] = static_cast<std::int64_t>(testing::test_rng()() % 5) - 2;
        expected += w[i] * static_cast<std::int64_t>(xs[i]);
      }
    }
    std::vector<LweCiphertext> cts;
    for (std::size_t i = 0; i < 4; ++i) cts.push_back(encrypt_message(fx.secret, xs[i], p));
    std::vector<std::span<const Torus>> views;
    for (const auto& ct : cts) views.push_back(ct.data());
    AlignedVector<Torus> acc(dim);
    lwe_dot(acc, views, w);
    const std::uint64_t m = static_cast<std::uint64_t>(expected);
    AlignedVector<Torus> out(dim);
    keyswitch_programmable_bootstrap(fx.eval, acc, square, out, scratch);
    ASSERT_EQ(decrypt_message(fx.secret, out, p), (m * m + 1) % modulus) << "trial " << trial;
  }
}

INSTANTIATE_TEST_SUITE_P(OneToEightBits, PbsPrecision,
                         ::testing::Combine(::testing::Range(1u, 9u), ::testing::Values(std::size_t{1}, std::size_t{2})),
                         [](const auto& info) {
                           return std::to_string(std::get<0>(info.param)) + "bits_grouping" +
                                  std::to_string(std::get<1>(info.param));
                         });

// Grouping, then the GLWE dimension and levels of the bootstrap key: (2, 2, 1) is the 4-bit
// multi-bit sets' shape (three rows, three GGSWs a step), which has its own multiply-add
// kernel for groups.
class PbsBatch : public ::testing::TestWithParam<std::tuple<std::size_t, std::size_t, std::size_t>> {};

TEST_P(PbsBatch, EqualsSerialEvaluationWithPerCiphertextTables) {
  const unsigned p = 3;
  ParameterSet set = toy::exact_set(p);
  set.grouping = GroupingFactor(std::get<0>(GetParam()));
  if (std::get<1>(GetParam()) != 1) {
    set.glwe_dimension = GlweDimension(std::get<1>(GetParam()));
    set.pbs_level_count = DecompositionLevelCount(std::get<2>(GetParam()));
    set.pbs_base_log = DecompositionBaseLog(23);
  }
  auto fx = make_keys(set, true);
  const std::size_t count = 24;
  LweCiphertextList in(fx.eval.params.big_lwe_dimension(), count);
  for (std::size_t c = 0; c < count; ++c) {
    auto ct = encrypt_message(fx.secret, c % 8, p);
    std::copy(ct.data().begin(), ct.data().end(), in[c].begin());
  }
  std::vector<LookupTable> tables;
  for (std::uint64_t s = 0; s < 3; ++s)
    tables.push_back(LookupTable::from_function(fx.eval.params.polynomial_size, p, p,
                                                [s](std::uint64_t m) { return (m + s) % 8; }));
  std::vector<const LookupTable*> per_ct;
  for (std::size_t c = 0; c < count; ++c) per_ct.push_back(&tables[c % 3]);
  LweCiphertextList batch(fx.eval.params.big_lwe_dimension(), count);
  keyswitch_programmable_bootstrap_batch(fx.eval, in, per_ct, batch, {.threads = 2});
  PbsScratch scratch(fx.eval.params);
  std::vector<AlignedVector<Torus>> serial;
  for (std::size_t c = 0; c < count; ++c) {
    serial.emplace_back(lwe_size(fx.eval.params.big_lwe_dimension()));
    keyswitch_programmable_bootstrap(fx.eval, in[c], *per_ct[c], serial.back(), scratch);
    EXPECT_EQ(decrypt_message(fx.secret, batch[c], p), (c % 8 + c % 3) % 8);
    EXPECT_EQ(decrypt_message(fx.secret, serial[c], p), decrypt_message(fx.secret, batch[c], p));
  }
  // Every split into groups and threads (uneven ones included) gives the serial ciphertexts,
  // word for word: grouping shares the key passes, not the arithmetic.
  for (const std::size_t n : {1u, 3u, 5u, 10u, 12u, 17u})
    for (const unsigned threads : {1u, 2u, 3u}) {
      SCOPED_TRACE(std::to_string(n) + " ciphertexts, " + std::to_string(threads) + " threads");
      LweCiphertextList part(fx.eval.params.big_lwe_dimension(), n), out(fx.eval.params.big_lwe_dimension(), n);
      for (std::size_t c = 0; c < n; ++c) std::copy(in[c].begin(), in[c].end(), part[c].begin());
      keyswitch_programmable_bootstrap_batch(fx.eval, part, std::span(per_ct).first(n), out, {.threads = threads});
      for (std::size_t c = 0; c < n; ++c) EXPECT_TRUE(std::equal(out[c].begin(), out[c].end(), serial[c].begin())) << c;
    }
  std::vector<const LookupTable*> two{&tables[0], &tables[1]};
  EXPECT_THROW(keyswitch_programmable_bootstrap_batch(fx.eval, in, two, batch), std::invalid_argument);
}

INSTANTIATE_TEST_SUITE_P(ClassicalAndMultiBit, PbsBatch,
                         ::testing::Values(std::tuple{std::size_t{1}, std::size_t{1}, std::size_t{2}},
                                           std::tuple{std::size_t{2}, std::size_t{1}, std::size_t{2}},
                                           std::tuple{std::size_t{2}, std::size_t{2}, std::size_t{1}}),
                         [](const auto& info) {
                           return "grouping" + std::to_string(std::get<0>(info.param)) + "_k" +
                                  std::to_string(std::get<1>(info.param)) + "_levels" +
                                  std::to_string(std::get<2>(info.param));
                         });

// Multi-value bootstrapping: one blind rotation of the constant test polynomial
// P0 = (Delta/2)(1 + X + ... + X^(N-1)) serves every table F of the same input. Read at shift
// m * box it is +Delta/2 when the input's entry is >= m, -Delta/2 below, so
// F_r = (F_0 + F_last) Delta/2 (a clear constant) + sum_m (F_m - F_(m-1)) * that read, for
// every entry r and for one box beyond either end (-1 and 2^p read as the end entries).
TEST(MultiValue, OneRotationServesEveryTableOfAnInput) {
  const unsigned p = 3;
  auto fx = make_keys(toy::exact_set(p), true);
  const ParameterSet& params = fx.eval.params;
  const std::size_t nn = params.polynomial_size.value, box = nn >> p, entries = std::size_t{1} << p;
  const Torus delta = encode_message(1, p);
  const std::vector<Torus> constant(entries, delta / 2);
  const LookupTable p0(params.polynomial_size, p, constant);
  // Steps both ways at every threshold, and one table with several jumps.
  std::vector<std::vector<std::int64_t>> tables;
  for (std::size_t t = 1; t < entries; ++t) {
    std::vector<std::int64_t> below(entries), above(entries);
    for (std::size_t m = 0; m < entries; ++m) below[m] = m < t ? 1 : 0, above[m] = m < t ? 0 : 1;
    tables.push_back(below);
    tables.push_back(above);
  }
  tables.push_back({0, 3, 3, 1, 1, 1, 2, 0});
  // Every entry, then one box below the first and one above the last.
  std::vector<std::int64_t> messages;
  for (std::size_t m = 0; m < entries; ++m) messages.push_back(static_cast<std::int64_t>(m));
  messages.push_back(-1);
  messages.push_back(static_cast<std::int64_t>(entries));
  const std::size_t count = messages.size();
  LweCiphertextList in(params.big_lwe_dimension(), count);
  for (std::size_t i = 0; i < count; ++i) {
    auto ct = encrypt_message(fx.secret, static_cast<std::uint64_t>(messages[i]) & ((std::uint64_t{2} << p) - 1), p);
    std::copy(ct.data().begin(), ct.data().end(), in[i].begin());
  }
  const std::size_t glwe = glwe_size(params.glwe_dimension) * nn;
  AlignedVector<Torus> accumulators(count * glwe);
  const LookupTable* shared[] = {&p0};
  keyswitch_blind_rotate_batch(fx.eval, in, shared, accumulators, {.threads = 2});
  for (std::size_t i = 0; i < count; ++i) {
    const std::span<const Torus> acc(accumulators.data() + i * glwe, glwe);
    const std::size_t entry = static_cast<std::size_t>(std::clamp<std::int64_t>(messages[i], 0, static_cast<std::int64_t>(entries) - 1));
    for (const auto& f : tables) {
      AlignedVector<Torus> out(lwe_size(params.big_lwe_dimension()), 0);
      out.back() = static_cast<Torus>(f.front() + f.back()) * (delta / 2);
      for (std::size_t j = 1; j < entries; ++j)
        if (f[j] != f[j - 1])
          sample_extract_rotated_add(acc, params.glwe_dimension, params.polynomial_size, j * box, f[j] - f[j - 1], out);
      ASSERT_EQ(decrypt_message(fx.secret, out, p), static_cast<std::uint64_t>(f[entry])) << "message " << messages[i];
    }
  }
  EXPECT_THROW(keyswitch_blind_rotate_batch(fx.eval, in, shared, std::span<Torus>(accumulators).first(glwe)),
               std::invalid_argument);
}

TEST(LookupTable, RejectsTablesThatDoNotFit) {
  std::vector<Torus> outputs(4);
  EXPECT_THROW(LookupTable(PolynomialSize(256), 3, outputs), std::invalid_argument);
  std::vector<Torus> big(512);
  EXPECT_THROW(LookupTable(PolynomialSize(256), 9, big), std::invalid_argument);
}

// Secure parameters, end to end: the reference set and the optimizer's set for 2 and 4 bits.
// (precision, grouping): the classical and the multi-bit optimized sets.
class SecurePbs : public ::testing::TestWithParam<std::tuple<unsigned, std::size_t>> {};

TEST_P(SecurePbs, OptimizedSetRoundTripsEveryMessage) {
  const unsigned p = std::get<0>(GetParam());
  OptimizerOptions options;
  options.message_bits = p;
  options.grouping = GroupingFactor(std::get<1>(GetParam()));
  auto params = optimize_parameters(options);
  ASSERT_TRUE(params.has_value());
  auto fx = make_keys(*params, false);
  const std::uint64_t modulus = std::uint64_t{1} << p;
  auto table = LookupTable::from_function(params->polynomial_size, p, p,
                                          [&](std::uint64_t m) { return (modulus - 1 - m); });
  PbsScratch scratch(*params);
  AlignedVector<Torus> out(lwe_size(params->big_lwe_dimension()));
  for (std::uint64_t m = 0; m < modulus; ++m) {
    auto ct = encrypt_message(fx.secret, m, p);
    keyswitch_programmable_bootstrap(fx.eval, ct.data(), table, out, scratch);
    ASSERT_EQ(decrypt_message(fx.secret, out, p), modulus - 1 - m) << params->describe();
  }
}

INSTANTIATE_TEST_SUITE_P(TwoAndFourBits, SecurePbs,
                         ::testing::Combine(::testing::Values(2u, 4u), ::testing::Values(std::size_t{1}, std::size_t{2})),
                         [](const auto& info) {
                           return std::to_string(std::get<0>(info.param)) + "bits_grouping" +
                                  std::to_string(std::get<1>(info.param));
                         });

}  // namespace
}  // namespace veil::tfhe

namespace veil::tfhe {
namespace {

// An exact keyswitch key of random words, of any shape (no key generation).
LweKeyswitchKey random_keyswitch_key(std::size_t input_dimension, std::size_t output_dimension) {
  LweKeyswitchKey key(KeyswitchKeyShape{LweDimension(input_dimension), LweDimension(output_dimension),
                                        DecompositionBaseLog(3), DecompositionLevelCount(3)});
  for (Torus& word : key.data()) word = testing::test_rng()();
  return key;
}

// The evaluation form's words are the exact key's, rounded to nearest at 24 or 32 bits, and
// its padding is zero; checked through word(), which follows the documented tile layout, over
// shapes with several row chunks, a short last chunk and every width of the last block.
TEST(TruncatedKeyswitch, WordsAreTheExactWordsRounded) {
  for (unsigned bits : {24u, 32u}) {
    for (std::size_t n : {7u, 70u, 121u}) {  // padded widths 8, 72 (64 + 8), 128 (2 x 64)
      const LweKeyswitchKey exact = random_keyswitch_key(150, n);
      const TruncatedKeyswitchKey key(exact, bits);
      ASSERT_EQ(key.word_bits(), bits);
      ASSERT_EQ(key.padded_width(), (n + 8) / 8 * 8);
      ASSERT_EQ(key.bytes(), 150 * 3 * key.padded_width() * (bits / 8) + TruncatedKeyswitchKey::kTailBytes);
      for (std::size_t i = 0; i < 150; ++i)
        for (std::size_t j = 0; j < 3; ++j)
          for (std::size_t t = 0; t < key.padded_width(); ++t) {
            const Torus w = t <= n ? exact.ciphertext(i, j)[t] : 0;
            const Torus rounded = (w + (Torus{1} << (63 - bits))) >> (64 - bits) << (64 - bits);
            ASSERT_EQ(key.word(i, j, t), static_cast<std::uint32_t>(rounded >> 32)) << bits << " " << i << " " << j << " " << t;
          }
      EXPECT_THROW(key.word(150, 0, 0), std::out_of_range);
      EXPECT_THROW(key.word(0, 3, 0), std::out_of_range);
      EXPECT_THROW(key.word(0, 0, key.padded_width()), std::out_of_range);
    }
  }
  EXPECT_THROW(TruncatedKeyswitchKey(random_keyswitch_key(8, 8), 16), std::invalid_argument);
}

// keyswitch() with the evaluation form computes exactly b - sum_i,j d_ij * word_ij (top 32
// bits, modulo 2^32) from the stored words: every block width 8..64 (each register count of
// the kernel), row chunks full and short, both word widths.
TEST(TruncatedKeyswitch, KernelSumsTheStoredWords) {
  for (unsigned bits : {24u, 32u}) {
    for (std::size_t n = 3; n <= 140; n += 8) {
      const std::size_t n_in = 64 + 23;
      const LweKeyswitchKey exact = random_keyswitch_key(n_in, n);
      const TruncatedKeyswitchKey key(exact, bits);
      const Decomposer decomposer(key.shape().base_log, key.shape().level_count);
      KeyswitchScratch scratch;
      const AlignedVector<Torus> in = testing::random_torus(n_in + 1);
      AlignedVector<Torus> out(n + 1);
      keyswitch(key, in, out, scratch);
      std::vector<std::uint32_t> expected(n + 1, 0);
      std::int64_t digits[3];
      for (std::size_t i = 0; i < n_in; ++i) {
        decomposer.decompose(in[i], digits);
        for (std::size_t j = 0; j < 3; ++j)
          for (std::size_t t = 0; t <= n; ++t) expected[t] -= static_cast<std::uint32_t>(digits[j]) * key.word(i, j, t);
      }
      for (std::size_t t = 0; t <= n; ++t) {
        Torus want = static_cast<Torus>(expected[t]) << 32;
        if (t == n) want += in[n_in];
        ASSERT_EQ(out[t], want) << bits << " n=" << n << " t=" << t;
      }
    }
  }
}

// The evaluation-form keyswitch agrees with the exact one up to the word rounding the noise
// model counts, on the optimizer's 4-bit set: in the 24-bit words it gets and in 32-bit ones.
TEST(TruncatedKeyswitch, AgreesWithTheExactKeyswitch) {
  OptimizerOptions options;
  options.message_bits = 4;
  auto p = optimize_parameters(options);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(keyswitch_key_word_bits(p->lwe_dimension, p->lwe_std_dev), 24u);
  auto secret = generate_secret_keys(*p);
  auto exact = decompress_keyswitch_key(generate_seeded_keyswitch_key(secret));
  for (unsigned word_bits : {24u, 32u}) {
    TruncatedKeyswitchKey truncated(exact, word_bits);
    // The rounding's standard deviation by the model, in units of 2^-64:
    // sqrt((n/2 + 1) n_in l E[d^2] / 12) * 2^(64 - word_bits).
    const double b2 = std::ldexp(1.0, 2 * static_cast<int>(p->ks_base_log.value));
    const double sigma = std::sqrt((p->lwe_dimension.value / 2.0 + 1.0) * p->big_lwe_dimension().value *
                                   p->ks_level_count.value * (b2 / 12.0 + 1.0 / 6.0) / 12.0) *
                         std::ldexp(1.0, 64 - static_cast<int>(word_bits));
    KeyswitchScratch ks_scratch;
    AlignedVector<Torus> a(lwe_size(p->lwe_dimension)), b(lwe_size(p->lwe_dimension));
    for (std::uint64_t m = 0; m < 16; ++m) {
      auto ct = encrypt_message(secret, m, 4);
      keyswitch(exact, ct.data(), a, ks_scratch);
      keyswitch(truncated, ct.data(), b, ks_scratch);
      const auto diff = testing::torus_distance(decrypt_lwe_phase(secret.lwe.bits(), a),
                                                decrypt_lwe_phase(secret.lwe.bits(), b));
      // 6 sigma: 2^-11 of the torus at 24 bits, 2^-19 at 32. As a variance, the 24-bit
      // rounding is 0.14 % of the 4-bit set's noise budget.
      EXPECT_LT(std::abs(static_cast<double>(diff)), 6 * sigma) << word_bits << " " << m;
      EXPECT_EQ(decode_message(decrypt_lwe_phase(secret.lwe.bits(), b), 4), m);
    }
  }
}

}  // namespace
}  // namespace veil::tfhe
