// Tests for parameter sets, the security curve, the noise and cost models and the optimizer.
//
// The noise model is checked against published numbers rather than against itself: the
// lattice-estimator example of TFHE_FACTS §1, the log2 p_fail that TFHE-rs stores beside each
// of its sets, and the sets Concrete's optimizer chose for p_error = 6.3e-5.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <iostream>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "veil/tfhe/parameters.hpp"
#include "veil/tfhe/serialization.hpp"

namespace veil::tfhe {
namespace {

ParameterSet make_set(unsigned p, std::size_t n, std::size_t k, std::size_t big_n,
                      double lwe_std_dev, double glwe_std_dev, std::size_t pbs_base_log,
                      std::size_t pbs_level, std::size_t ks_base_log, std::size_t ks_level,
                      std::string name = "test") {
  ParameterSet s;
  s.name = std::move(name);
  s.message_bits = p;
  s.lwe_dimension = LweDimension(n);
  s.glwe_dimension = GlweDimension(k);
  s.polynomial_size = PolynomialSize(big_n);
  s.lwe_std_dev = lwe_std_dev;
  s.glwe_std_dev = glwe_std_dev;
  s.pbs_base_log = DecompositionBaseLog(pbs_base_log);
  s.pbs_level_count = DecompositionLevelCount(pbs_level);
  s.ks_base_log = DecompositionBaseLog(ks_base_log);
  s.ks_level_count = DecompositionLevelCount(ks_level);
  return s;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// ---- Security curve ----

TEST(SecurityCurve, MatchesPublishedExample) {
  // TFHE_FACTS §1: n = 747 at 132 bits gives log2 sigma = -15.94.
  EXPECT_NEAR(min_secure_log2_std_dev(747, 132), -15.94, 0.005);
  // 128 bits needs less noise than 132 for the same dimension.
  EXPECT_LT(min_secure_log2_std_dev(747, 128), min_secure_log2_std_dev(747, 132));
  EXPECT_NEAR(min_secure_log2_std_dev(1000, 128),
              -0.025696778711484593 * 1000 + 2.675931372549016, 1e-12);
}

TEST(SecurityCurve, FloorAndDomain) {
  EXPECT_EQ(min_secure_log2_std_dev(8192, 128), -62.0);  // the 2^(2-64) floor
  EXPECT_EQ(min_secure_log2_std_dev(449, 128), std::numeric_limits<double>::infinity());
  EXPECT_TRUE(std::isfinite(min_secure_log2_std_dev(450, 128)));
  EXPECT_THROW(min_secure_log2_std_dev(1000, 100), std::invalid_argument);
}

TEST(CheckSecurity, RejectsTooLittleNoiseAndNamesTheKey) {
  ParameterSet s = reference_parameter_set(4);
  ASSERT_TRUE(check_security(s).secure);
  EXPECT_EQ(check_security(s).detail, "secure");

  ParameterSet weak_lwe = s;
  weak_lwe.lwe_std_dev = std::ldexp(1.0, -30);  // curve wants about -19.5 at n = 863
  SecurityCheck r = check_security(weak_lwe);
  EXPECT_FALSE(r.secure);
  EXPECT_TRUE(contains(r.detail, "LWE key (dimension 863)")) << r.detail;
  EXPECT_TRUE(contains(r.detail, "lwe_std_dev")) << r.detail;
  EXPECT_FALSE(contains(r.detail, "GLWE")) << r.detail;

  ParameterSet weak_glwe = s;
  weak_glwe.glwe_std_dev = std::ldexp(1.0, -55);  // curve wants about -50 at kN = 2048
  r = check_security(weak_glwe);
  EXPECT_FALSE(r.secure);
  EXPECT_TRUE(contains(r.detail, "GLWE key (dimension 2048)")) << r.detail;

  // Just below the curve fails too: the check is not loose.
  ParameterSet edge = s;
  edge.lwe_std_dev = std::exp2(min_secure_log2_std_dev(863, 128) - 0.01);
  EXPECT_FALSE(check_security(edge).secure);

  ParameterSet tiny = s;
  tiny.lwe_dimension = LweDimension(400);
  r = check_security(tiny);
  EXPECT_FALSE(r.secure);
  EXPECT_TRUE(contains(r.detail, "below dimension 450")) << r.detail;
}

// ---- Reference sets ----

TEST(ReferenceSets, AreValidAndSecure) {
  for (unsigned p = 1; p <= 8; ++p) {
    const ParameterSet s = reference_parameter_set(p);
    EXPECT_EQ(s.message_bits, p);
    EXPECT_EQ(s.name, "tfhers_" + std::to_string(p) + "bit");
    EXPECT_NO_THROW(s.validate()) << s.describe();
    EXPECT_TRUE(check_security(s, 128).secure) << check_security(s, 128).detail;
    // They were made for the 132-bit curve and sit on it.
    EXPECT_TRUE(check_security(s, 132).secure) << check_security(s, 132).detail;
  }
  EXPECT_THROW(reference_parameter_set(0), std::invalid_argument);
  EXPECT_THROW(reference_parameter_set(9), std::invalid_argument);
}

// What reproduces TFHE-rs's p_fail = 2^-128.
//
// The rows of TFHE_FACTS §3 are TFHE-rs v1.4's V1_4_PARAM_MESSAGE_{p}_CARRY_0_KS_PBS_
// GAUSSIAN_2M128 sets. Each stores log2_p_fail and a comment "2-norm = X" with
// X = max_noise_level (1 for these carry-0 sets); TFHE-rs evaluates
//   nu^2 Var_BR + Var_KS + Var_MS with nu^2 = X^2,
// i.e. sq_norm2 is the square of the max noise level (checked below on 1_1, 2_1, 2_2, 3_3,
// whose levels are 3, 2, 5, 9: using nu^2 = X instead misses 2_2 by 1.3 and 1_3 by 19 bits).
//
// Two differences from our model (TFHE_FACTS §2) matter:
//  1. These sets use ModulusSwitchType::CenteredMeanNoiseReduction. Its mask term is
//     n / (48 (2N)^2) (half the classic n / (24 (2N)^2)), and TFHE-rs counts no
//     1/(12 (2N)^2) body term. Veil's PBS implements the centered switch too, and its model
//     keeps the body term (a 4/n relative difference). With the classic modulus switch the
//     same sets would give only 2^-68 .. 2^-104 at nu^2 = 1: the modulus switch alone would
//     exceed the 2^-128 budget.
//  2. TFHE-rs fits its own f64-FFT noise, 0.2 to 0.5 times Concrete's formula that we use
//     (the ratio grows like k^1.22 N^0.22). Where the FFT term matters (p = 4, 5, 8, 2_2)
//     our value is more pessimistic, by up to 1.2 bits (p = 5) and 1.8 bits (2_2).
// With the centered modulus switch, TFHE-rs's value must therefore lie between our model
// without any FFT noise and our model with Concrete's FFT noise. Where the FFT term is
// negligible (p = 1, 2, 6) both bounds coincide and match TFHE-rs to 0.001 bits; the 0.02
// slack covers the 3-decimal rounding of the stored values and the 1/(q^2) terms.
struct TfhersPfail {
  ParameterSet set;
  double max_noise_level;
  double log2_p_fail;  // as stored by TFHE-rs
};

double centered_modulus_switch_variance(const ParameterSet& s) {
  const double n = static_cast<double>(s.lwe_dimension.value);
  const double two_n = 2.0 * static_cast<double>(s.polynomial_size.value);
  return n * (0x1.0p-128 / 48.0 + 1.0 / (48.0 * two_n * two_n));
}

double classic_modulus_switch_variance(const ParameterSet& s) {
  const double n = static_cast<double>(s.lwe_dimension.value);
  const double two_n = 2.0 * static_cast<double>(s.polynomial_size.value);
  return n * (0x1.0p-128 / 48.0 + 1.0 / (24.0 * two_n * two_n)) + 1.0 / (12.0 * two_n * two_n);
}

std::vector<TfhersPfail> tfhers_pfail_table() {
  std::vector<TfhersPfail> rows;
  const double stored[8] = {-128.603, -128.285, -128.664, -128.636,
                            -128.453, -128.153, -128.14,  -129.169};
  for (unsigned p = 1; p <= 8; ++p) rows.push_back({reference_parameter_set(p), 1.0, stored[p - 1]});
  // Sets with carries: p counts message + carry bits.
  rows.push_back({make_set(2, 837, 4, 512, 3.3747142481837397e-06, 2.845267479601915e-15, 23, 1,
                           5, 3, "tfhers_1_1"),
                  3.0, -128.186});
  rows.push_back({make_set(3, 884, 2, 1024, 1.4999005934396873e-06, 2.845267479601915e-15, 23,
                           1, 5, 3, "tfhers_2_1"),
                  2.0, -128.607});
  rows.push_back({make_set(4, 866, 1, 2048, 2.046151696979124e-06, 2.845267479601915e-15, 23, 1,
                           3, 5, "tfhers_2_2"),
                  5.0, -128.597});
  rows.push_back({make_set(6, 1006, 1, 8192, 1.8277101294215978e-07, 0x1.0p-62, 15, 2, 3, 7,
                           "tfhers_3_3"),
                  9.0, -128.115});
  return rows;
}

TEST(ReferenceSets, ReproduceTfhersPfailWithCenteredModulusSwitch) {
  constexpr double kSlack = 0.02;
  std::cout << "set          stored   ours(centered MS, no FFT .. Concrete FFT)   ours(classic MS)   Veil\n";
  for (const TfhersPfail& row : tfhers_pfail_table()) {
    const ParameterSet& s = row.set;
    const NoiseBreakdown noise = noise_breakdown(s);
    const double sq_norm2 = row.max_noise_level * row.max_noise_level;
    const double ms = centered_modulus_switch_variance(s);
    // TFHE-rs keyswitches and rotates with exact key words; Veil's keys round them
    // (keyswitch_key_word_bits, bootstrap_key_body_bits), which noise.keyswitch and
    // noise.blind_rotation count. The bracket uses the exact keys, Veil's own model is
    // checked against the bracket's pessimistic end with the rounding added.
    const double ks = keyswitch_variance(s.big_lwe_dimension(), s.lwe_std_dev, s.ks_base_log, s.ks_level_count);
    const double br = noise.blind_rotation - noise.bsk_rounding;
    const double with_fft = log2_lookup_error_probability_for_variance(s.message_bits, sq_norm2 * br + ks + ms);
    const double without_fft =
        log2_lookup_error_probability_for_variance(s.message_bits, sq_norm2 * (br - noise.fft) + ks + ms);
    const double classic = log2_lookup_error_probability_for_variance(
        s.message_bits, sq_norm2 * br + ks + classic_modulus_switch_variance(s));
    const double with_fft_rounded = log2_lookup_error_probability_for_variance(
        s.message_bits, sq_norm2 * noise.blind_rotation + noise.keyswitch + ms);
    const double ours = log2_lookup_error_probability(s, sq_norm2);
    char line[200];
    std::snprintf(line, sizeof line, "%-12s %8.3f   %8.3f .. %8.3f                       %8.3f   %8.3f (%u-bit KSK words)\n",
                  s.name.c_str(), row.log2_p_fail, without_fft, with_fft, classic, ours,
                  keyswitch_key_word_bits(s.lwe_dimension, s.lwe_std_dev));
    std::cout << line;
    EXPECT_LE(row.log2_p_fail, with_fft + kSlack) << s.name;
    EXPECT_GE(row.log2_p_fail, without_fft - kSlack) << s.name;
    // The bracket is narrow: the comparison says something.
    EXPECT_LT(with_fft - without_fft, 2.5) << s.name;
    // Under the classic modulus switch these sets are far from 2^-128 (see above).
    EXPECT_GT(classic, row.log2_p_fail + 20.0) << s.name;
    // Veil's own model (centered switch plus the body's rounding) sits at the pessimistic end
    // of the bracket: within 0.5 bit of it, never optimistic beyond it.
    EXPECT_LE(ours, with_fft_rounded + 0.5) << s.name;
    EXPECT_GE(ours, with_fft_rounded - kSlack) << s.name;
    // The rounding costs little: at most 1/16 of the keyswitch key's noise (1.5 bits of p_fail
    // at 2^-128 at most, for tfhers_3bit).
    EXPECT_LT(with_fft - with_fft_rounded, 1.6) << s.name;
  }
}

// ---- Key budget ----

// With max_key_bytes the optimizer keeps to the budget (the seeded keys as they travel) and
// pays for it in cost; a budget no set meets gives nullopt.
TEST(Optimizer, KeepsTheSeededKeysWithinTheirBudget) {
  OptimizerOptions o;
  o.message_bits = 6;
  o.sq_norm2 = 2048.0;
  o.grouping = kAutoGrouping;
  const auto free = optimize_parameters(o);
  ASSERT_TRUE(free.has_value());
  const std::uint64_t free_bytes = seeded_evaluation_keys_bytes(*free);
  o.max_key_bytes = free_bytes * 3 / 4;
  const auto tight = optimize_parameters(o);
  ASSERT_TRUE(tight.has_value());
  EXPECT_LE(seeded_evaluation_keys_bytes(*tight), o.max_key_bytes + 1024) << tight->describe();  // + fixed fields
  EXPECT_GE(ks_pbs_cost(*tight), ks_pbs_cost(*free));
  o.max_key_bytes = 1000000;  // 1 MB: no 6-bit set is that small
  EXPECT_FALSE(optimize_parameters(o).has_value());
}

// Bootstrap key bodies of fewer bits (ParameterSet::bsk_body_bits): the optimizer's sets carry
// bootstrap_key_body_bits_for_noise's count, whose rounding adds at most 1/16 of an external
// product's variance (and one bit fewer would add more), fewer than the format-1.4 rule's;
// their keys are smaller than the same set's with the rule's bits, and the model counts them.
TEST(Optimizer, SendsTheBootstrapKeyBodiesBitsTheNoiseLeavesMeaningful) {
  // The header's example: k = 2, N = 1024, one level of 2^23 at the curve's noise.
  EXPECT_EQ(bootstrap_key_body_bits_for_noise(GlweDimension(2), PolynomialSize(1024), DecompositionBaseLog(23),
                                              DecompositionLevelCount(1), std::exp2(min_secure_log2_std_dev(2048))),
            48u);
  for (const unsigned bits : {2u, 4u, 6u}) {
    OptimizerOptions o;
    o.message_bits = bits;
    o.grouping = kAutoGrouping;
    const auto p = optimize_parameters(o);
    ASSERT_TRUE(p.has_value()) << bits;
    const unsigned rule = bootstrap_key_body_bits(p->glwe_std_dev);
    ASSERT_NE(p->bsk_body_bits, 0u) << p->describe();
    EXPECT_LT(p->bsk_body_bits, rule) << p->describe();
    EXPECT_EQ(p->bootstrap_key_bits(), p->bsk_body_bits);
    EXPECT_EQ(p->bsk_body_bits, bootstrap_key_body_bits_for_noise(p->glwe_dimension, p->polynomial_size, p->pbs_base_log,
                                                                  p->pbs_level_count, p->glwe_std_dev));
    const double unrounded = external_product_variance(p->glwe_dimension, p->polynomial_size, p->pbs_base_log,
                                                       p->pbs_level_count, p->glwe_std_dev, 64);
    const auto added = [&](unsigned b) {
      return external_product_variance(p->glwe_dimension, p->polynomial_size, p->pbs_base_log, p->pbs_level_count,
                                       p->glwe_std_dev, b) -
             unrounded;
    };
    EXPECT_LE(added(p->bsk_body_bits), unrounded / 16 * (1 + 1e-9)) << p->describe();
    EXPECT_GT(added(p->bsk_body_bits - 1), unrounded / 16) << p->describe();
    ParameterSet old = *p;
    old.bsk_body_bits = 0;
    EXPECT_LT(seeded_evaluation_keys_bytes(*p), seeded_evaluation_keys_bytes(old)) << p->describe();
    EXPECT_GT(noise_breakdown(*p).bsk_rounding, noise_breakdown(old).bsk_rounding);
    EXPECT_NO_THROW(p->validate());
  }
}

// ---- ParameterSet identity, validation, description ----

TEST(ParameterSetId, StableForEqualSetsAndIgnoresName) {
  const ParameterSet a = reference_parameter_set(4);
  ParameterSet b = a;
  EXPECT_EQ(a.id(), b.id());
  b.name = "renamed";
  EXPECT_EQ(a.id(), b.id());
  EXPECT_EQ(a.id(), reference_parameter_set(4).id());
  // Pins the canonical encoding: stored keys and ciphertexts carry this id, so a change here
  // must be deliberate (bump the encoding tag in ParameterSet::id()). Cross-checked with
  // Python: sha256(b"veil.tfhe.ParameterSet.v1" + struct.pack("<4Q2d4Q", 4, 863, 1, 2048,
  // lwe_std_dev, glwe_std_dev, 23, 1, 3, 5)), first 8 bytes little-endian.
  EXPECT_EQ(a.id(), 0x2b9aaa36a9e0efb9ull) << std::hex << a.id();
  // bsk_body_bits (format 1.5) enters behind its marker: the same Python encoding followed by
  // struct.pack("<2Q", 0x737469625f6b7362, 40).
  ParameterSet fewer = a;
  fewer.bsk_body_bits = 40;
  EXPECT_EQ(fewer.id(), 0xf878bbd7d9686ec6ull) << std::hex << fewer.id();
}

TEST(ParameterSetId, ChangesWhenAnyFieldChanges) {
  const ParameterSet base = reference_parameter_set(4);
  const std::vector<std::pair<const char*, std::function<void(ParameterSet&)>>> mutations = {
      {"message_bits", [](ParameterSet& s) { s.message_bits += 1; }},
      {"lwe_dimension", [](ParameterSet& s) { s.lwe_dimension.value += 1; }},
      {"glwe_dimension", [](ParameterSet& s) { s.glwe_dimension.value += 1; }},
      {"polynomial_size", [](ParameterSet& s) { s.polynomial_size.value *= 2; }},
      {"lwe_std_dev", [](ParameterSet& s) { s.lwe_std_dev = std::nextafter(s.lwe_std_dev, 1.0); }},
      {"glwe_std_dev",
       [](ParameterSet& s) { s.glwe_std_dev = std::nextafter(s.glwe_std_dev, 1.0); }},
      {"pbs_base_log", [](ParameterSet& s) { s.pbs_base_log.value += 1; }},
      {"pbs_level_count", [](ParameterSet& s) { s.pbs_level_count.value += 1; }},
      {"ks_base_log", [](ParameterSet& s) { s.ks_base_log.value += 1; }},
      {"ks_level_count", [](ParameterSet& s) { s.ks_level_count.value += 1; }},
      {"grouping", [](ParameterSet& s) { s.grouping = GroupingFactor(2); }},
      {"bsk_body_bits", [](ParameterSet& s) { s.bsk_body_bits = 40; }},
  };
  std::vector<std::uint64_t> ids = {base.id()};
  for (const auto& [field, mutate] : mutations) {
    ParameterSet changed = base;
    mutate(changed);
    EXPECT_NE(changed.id(), base.id()) << field;
    ids.push_back(changed.id());
  }
  // Swapping the two decompositions' values must not collide either (fields are positional).
  ParameterSet swapped = base;
  std::swap(swapped.pbs_base_log.value, swapped.ks_base_log.value);
  EXPECT_NE(swapped.id(), base.id());
  for (std::size_t i = 0; i < ids.size(); ++i)
    for (std::size_t j = i + 1; j < ids.size(); ++j) EXPECT_NE(ids[i], ids[j]) << i << " " << j;
}

TEST(ParameterSetValidate, RejectsBadSetsNamingFieldAndValue) {
  struct Case {
    const char* expect_in_message;
    std::function<void(ParameterSet&)> mutate;
  };
  const std::vector<Case> cases = {
      {"message_bits must be in [1, 8], got 0", [](ParameterSet& s) { s.message_bits = 0; }},
      {"message_bits must be in [1, 8], got 9", [](ParameterSet& s) { s.message_bits = 9; }},
      {"lwe_dimension", [](ParameterSet& s) { s.lwe_dimension = LweDimension(0); }},
      {"glwe_dimension", [](ParameterSet& s) { s.glwe_dimension = GlweDimension(0); }},
      {"polynomial_size must be a power of two in [256, 65536], got 3000",
       [](ParameterSet& s) { s.polynomial_size = PolynomialSize(3000); }},
      {"got 128", [](ParameterSet& s) { s.polynomial_size = PolynomialSize(128); }},
      {"got 131072", [](ParameterSet& s) { s.polynomial_size = PolynomialSize(131072); }},
      {"pbs_base_log * pbs_level_count must be <= 64, got 33 * 2",
       [](ParameterSet& s) {
         s.pbs_base_log = DecompositionBaseLog(33);
         s.pbs_level_count = DecompositionLevelCount(2);
       }},
      {"pbs_base_log must be >= 1", [](ParameterSet& s) { s.pbs_base_log = DecompositionBaseLog(0); }},
      {"ks_level_count must be >= 1",
       [](ParameterSet& s) { s.ks_level_count = DecompositionLevelCount(0); }},
      {"ks_base_log * ks_level_count must be <= 64, got 5 * 13",
       [](ParameterSet& s) {
         s.ks_base_log = DecompositionBaseLog(5);
         s.ks_level_count = DecompositionLevelCount(13);
       }},
      {"lwe_std_dev must be finite", [](ParameterSet& s) { s.lwe_std_dev = 0.0; }},
      {"lwe_std_dev must be finite", [](ParameterSet& s) { s.lwe_std_dev = -1e-6; }},
      {"lwe_std_dev must be finite", [](ParameterSet& s) { s.lwe_std_dev = std::nan(""); }},
      {"glwe_std_dev must be finite",
       [](ParameterSet& s) { s.glwe_std_dev = std::numeric_limits<double>::infinity(); }},
  };
  for (const Case& c : cases) {
    ParameterSet s = reference_parameter_set(4);
    c.mutate(s);
    try {
      s.validate();
      ADD_FAILURE() << "accepted a set that should fail with: " << c.expect_in_message;
    } catch (const std::invalid_argument& e) {
      EXPECT_TRUE(contains(e.what(), c.expect_in_message))
          << "message: " << e.what() << "\nexpected to contain: " << c.expect_in_message;
      EXPECT_TRUE(contains(e.what(), "tfhers_4bit")) << e.what();
    }
  }
}

TEST(ParameterSetDescribe, ListsTheParameters) {
  ParameterSet s = reference_parameter_set(4);
  const std::string d = s.describe();
  EXPECT_TRUE(contains(d, "tfhers_4bit: p=4 n=863 k=1 N=2048 pbs=2^23x1 ks=2^3x5")) << d;
  EXPECT_TRUE(contains(d, "glwe_std_dev=2^-48.32")) << d;
  EXPECT_FALSE(contains(d, "multi-bit")) << d;
  s.lwe_dimension = LweDimension(864);
  s.grouping = GroupingFactor(2);
  EXPECT_TRUE(contains(s.describe(), "glwe_std_dev=2^-48.32 multi-bit d=2")) << s.describe();
}

TEST(ParameterSetValidate, GroupingIsOneOrTwoAndDividesN) {
  ParameterSet s = reference_parameter_set(4);  // n = 863
  s.grouping = GroupingFactor(2);
  EXPECT_THROW(
      {
        try {
          s.validate();
        } catch (const std::invalid_argument& e) {
          EXPECT_TRUE(contains(e.what(), "lwe_dimension 863 is not a multiple of grouping 2")) << e.what();
          throw;
        }
      },
      std::invalid_argument);
  s.lwe_dimension = LweDimension(864);
  EXPECT_NO_THROW(s.validate());
  for (std::size_t bad : {0u, 3u, 4u}) {
    s.grouping = GroupingFactor(bad);
    EXPECT_THROW(s.validate(), std::invalid_argument) << bad;
  }
}

// ---- Noise model ----

TEST(NoiseModel, BreakdownIsConsistent) {
  const ParameterSet s = reference_parameter_set(4);
  const NoiseBreakdown noise = noise_breakdown(s);
  EXPECT_DOUBLE_EQ(noise.fresh, s.glwe_std_dev * s.glwe_std_dev);
  EXPECT_GT(noise.fft, 0.0);
  EXPECT_LT(noise.fft, noise.blind_rotation);
  EXPECT_DOUBLE_EQ(variance_at_blind_rotation_input(s, 3.0),
                   3.0 * noise.blind_rotation + noise.keyswitch + noise.modulus_switch);
  // The centered modulus switch of n = 863 to 2N = 4096 is n / (48 (2N)^2) + 1 / (12 (2N)^2)
  // up to terms in 1/q^2 (relative units); a unit slip (a stray q^2) would be off by 2^128.
  EXPECT_NEAR(noise.modulus_switch / ((863.0 + 4.0) / (48.0 * 4096.0 * 4096.0)), 1.0, 1e-12);
  EXPECT_THROW(variance_at_blind_rotation_input(s, -1.0), std::invalid_argument);
}

// Multi-bit: the GGSW-noise and FFT terms count three times per bit, the input's rounding
// once (parameters.hpp); n / 2 steps of a step cost that is the classical transforms plus
// three weighted multiply-adds.
TEST(NoiseModel, MultiBitBlindRotationTerms) {
  ParameterSet classical = reference_parameter_set(4);
  classical.lwe_dimension = LweDimension(864);
  ParameterSet multi_bit = classical;
  multi_bit.grouping = GroupingFactor(2);
  const NoiseBreakdown c = noise_breakdown(classical), m = noise_breakdown(multi_bit);
  const double n = 864.0, kn = 2048.0;
  const double rounding = n * (std::ldexp(1.0, -46) - 0x1.0p-128) / 24.0 * (1.0 + kn / 2.0);
  EXPECT_NEAR(m.blind_rotation / (3.0 * (c.blind_rotation - rounding) + rounding), 1.0, 1e-12);
  EXPECT_NEAR(m.fft / (3.0 * c.fft), 1.0, 1e-12);
  EXPECT_GT(m.blind_rotation, c.blind_rotation);
  EXPECT_LT(m.blind_rotation, 3.0 * c.blind_rotation);
  EXPECT_EQ(m.keyswitch, c.keyswitch);
  EXPECT_EQ(m.modulus_switch, c.modulus_switch);
  EXPECT_THROW(blind_rotation_variance(LweDimension(864), GroupingFactor(3), classical.glwe_dimension,
                                       classical.polynomial_size, classical.pbs_base_log, classical.pbs_level_count,
                                       classical.glwe_std_dev),
               std::invalid_argument);
  // k = 1, N = 2048, l = 1: transforms 2*2048*11 + 2*2048*11, multiply-adds 4*2048 + 2*2048,
  // three of them at weight 2.
  EXPECT_DOUBLE_EQ(pbs_cost(multi_bit), 432.0 * (90112.0 + 2.0 * 3.0 * 12288.0));
}

TEST(NoiseModel, Log2ErrorProbabilityIsAccurateFarIntoTheTail) {
  // Reference values of log2 erfc(x) from mpmath at 40 digits.
  struct Point {
    double x, log2_erfc;
  };
  const Point points[] = {{10.0, -148.4243057033506},
                          {20.0, -582.2274902829276},
                          {30.0, -1304.158975847505},
                          {100.0, -14434.42008526988}};
  for (unsigned p : {1u, 4u, 8u}) {
    const double bound = std::ldexp(1.0, -static_cast<int>(p) - 2);
    for (const Point& pt : points) {
      // erfc's argument is bound / (sqrt(2) sigma) = x.
      const double variance = bound * bound / (2.0 * pt.x * pt.x);
      EXPECT_NEAR(log2_lookup_error_probability_for_variance(p, variance), pt.log2_erfc,
                  1e-9 * std::abs(pt.log2_erfc))
          << "p=" << p << " x=" << pt.x;
    }
  }
  // No jump where the implementation switches from std::erfc to the asymptotic series.
  const double bound = 0.125;
  auto at = [&](double x) {
    return log2_lookup_error_probability_for_variance(1, bound * bound / (2.0 * x * x));
  };
  for (double x = 19.0; x <= 21.0; x += 0.0625) EXPECT_LT(at(x + 1e-6), at(x)) << x;
  EXPECT_NEAR(at(20.0 - 1e-9), at(20.0 + 1e-9), 1e-6);
}

TEST(NoiseModel, LookupErrorProbabilityAgreesWithItsLog2) {
  for (unsigned p = 1; p <= 8; ++p) {
    const ParameterSet s = reference_parameter_set(p);
    for (double sq_norm2 : {1.0, 64.0, 4096.0}) {
      const double direct = lookup_error_probability(s, sq_norm2);
      ASSERT_GT(direct, 0.0);
      EXPECT_NEAR(std::log2(direct), log2_lookup_error_probability(s, sq_norm2), 1e-9)
          << "p=" << p << " sq_norm2=" << sq_norm2;
    }
  }
}

TEST(NoiseModel, MaxVarianceInvertsLookupErrorProbability) {
  for (unsigned p = 1; p <= 8; ++p) {
    for (double log2_p_error : {-3.0, -13.954, -40.0, -64.0, -128.0, -200.0, -1000.0}) {
      const double p_error = std::exp2(log2_p_error);
      const double v = max_variance_for_p_error(p, p_error);
      const double at_v = log2_lookup_error_probability_for_variance(p, v);
      EXPECT_NEAR(at_v, log2_p_error, 1e-9 * std::abs(log2_p_error) + 1e-12)
          << "p=" << p << " log2_p_error=" << log2_p_error;
      // The bound errs on the safe side (up to the rounding of the round trip).
      EXPECT_LE(at_v, log2_p_error + 1e-12 * std::abs(log2_p_error));
      // A little more noise breaks the target.
      EXPECT_GT(log2_lookup_error_probability_for_variance(p, v * 1.001), log2_p_error);
      if (p_error > 1e-300) {
        // The plain-probability route agrees where doubles can hold p_error.
        const double bound = std::ldexp(1.0, -static_cast<int>(p) - 2);
        EXPECT_NEAR(std::erfc(bound / std::sqrt(2.0 * v)) / p_error, 1.0, 1e-9);
      }
    }
    // Each extra bit of precision halves the admissible standard deviation.
    if (p > 1) {
      EXPECT_NEAR(max_variance_for_p_error(p - 1, 1e-5) / max_variance_for_p_error(p, 1e-5), 4.0,
                  1e-9);
    }
  }
  EXPECT_THROW(max_variance_for_p_error(4, 0.0), std::invalid_argument);
  EXPECT_THROW(max_variance_for_p_error(4, 1.0), std::invalid_argument);
  EXPECT_THROW(max_variance_for_p_error(9, 1e-5), std::invalid_argument);
}

TEST(NoiseModel, CircuitErrorProbability) {
  EXPECT_DOUBLE_EQ(circuit_error_probability(0.5, 2.0), 0.75);
  EXPECT_EQ(circuit_error_probability(0.25, 0.0), 0.0);
  EXPECT_EQ(circuit_error_probability(0.0, 1e9), 0.0);
  EXPECT_EQ(circuit_error_probability(1.0, 3.0), 1.0);
  // Tiny probabilities: 1 - (1 - p)^c ~ c p, where the naive formula would return 0.
  const double p = std::ldexp(1.0, -128);
  EXPECT_NEAR(circuit_error_probability(p, 1e6) / (1e6 * p), 1.0, 1e-12);
  EXPECT_NEAR(circuit_error_probability(1e-5, 1e5), -std::expm1(1e5 * std::log1p(-1e-5)), 1e-15);
  EXPECT_THROW(circuit_error_probability(1.5, 1.0), std::invalid_argument);
  EXPECT_THROW(circuit_error_probability(0.1, -1.0), std::invalid_argument);
}

// ---- Cost model ----

TEST(CostModel, MatchesHandComputation) {
  const ParameterSet s = reference_parameter_set(4);  // n 863, k 1, N 2048, l 1, l_ks 5
  // Per external product: 2*1*2048*11 + 2*2048*11 + 4*1*2048 = 98304.
  EXPECT_DOUBLE_EQ(pbs_cost(s), 863.0 * 98304.0);
  EXPECT_DOUBLE_EQ(keyswitch_cost(s), 2048.0 * 5.0 * 864.0);
  EXPECT_DOUBLE_EQ(ks_pbs_cost(s), pbs_cost(s) + keyswitch_cost(s));
}

// ---- Optimizer ----

// Concrete's optimizer (v0 tables, 128 bits, p_error 6.3e-5, norm2 1, TFHE_FACTS §3), with
// the noise the 128-bit curve gives for its dimensions.
ParameterSet concrete_table_set(unsigned p) {
  struct Row {
    std::size_t k, big_n, n, pbs_level, pbs_base_log, ks_level, ks_base_log;
  };
  static const Row kRows[8] = {
      {5, 256, 592, 1, 15, 3, 3},    {5, 256, 700, 1, 15, 3, 4},   {3, 512, 722, 1, 18, 3, 4},
      {2, 1024, 801, 1, 23, 3, 4},   {1, 2048, 783, 1, 23, 5, 3},  {1, 4096, 880, 1, 22, 4, 4},
      {1, 8192, 915, 1, 22, 6, 3},   {1, 16384, 1006, 2, 15, 5, 4},
  };
  const Row& r = kRows[p - 1];
  return make_set(p, r.n, r.k, r.big_n, std::exp2(min_secure_log2_std_dev(r.n, 128)),
                  std::exp2(min_secure_log2_std_dev(r.k * r.big_n, 128)), r.pbs_base_log,
                  r.pbs_level, r.ks_base_log, r.ks_level, "concrete_p" + std::to_string(p));
}

TEST(Optimizer, MatchesConcreteTableWithinTwentyFivePercent) {
  constexpr double kPError = 6.3e-5;
  std::cout << " p  k      N     n  pbs(B/l)  ks(B/l)        cost  concrete cost  ratio"
               "  log2 p_err  concrete log2 p_err   ms\n";
  for (unsigned p = 1; p <= 8; ++p) {
    OptimizerOptions options;
    options.message_bits = p;
    options.sq_norm2 = 1.0;
    options.p_error = kPError;
    const auto t0 = std::chrono::steady_clock::now();
    const std::optional<ParameterSet> chosen = optimize_parameters(options);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_TRUE(chosen.has_value()) << "p=" << p;
    const ParameterSet& s = *chosen;
    EXPECT_NO_THROW(s.validate()) << s.describe();
    EXPECT_TRUE(check_security(s, 128).secure) << check_security(s, 128).detail;
    EXPECT_LE(lookup_error_probability(s, 1.0), kPError * (1.0 + 1e-9)) << s.describe();

    // Concrete's own set meets the target under our model (its optimizer used the same
    // formulas; a unit slip would show here first).
    const ParameterSet concrete = concrete_table_set(p);
    ASSERT_TRUE(check_security(concrete, 128).secure);
    const double concrete_log2_p_err = log2_lookup_error_probability(concrete, 1.0);
    EXPECT_LE(concrete_log2_p_err, std::log2(kPError) + 0.05) << concrete.describe();

    const double ratio = ks_pbs_cost(s) / ks_pbs_cost(concrete);
    EXPECT_LE(ratio, 1.25) << s.describe() << " vs " << concrete.describe();
    char line[200];
    std::snprintf(line, sizeof line,
                  "%2u  %u  %5zu  %4zu  2^%-2zu/%zu    2^%zu/%-2zu  %10.4g  %13.4g  %5.3f  %10.2f  %19.2f  %3.0f\n",
                  p, static_cast<unsigned>(s.glwe_dimension.value), s.polynomial_size.value,
                  s.lwe_dimension.value, s.pbs_base_log.value, s.pbs_level_count.value,
                  s.ks_base_log.value, s.ks_level_count.value, ks_pbs_cost(s),
                  ks_pbs_cost(concrete), ratio, log2_lookup_error_probability(s, 1.0),
                  concrete_log2_p_err, ms);
    std::cout << line;
    RecordProperty("p" + std::to_string(p), s.describe());
  }
}

TEST(Optimizer, NamesTheResult) {
  OptimizerOptions options;
  options.message_bits = 4;
  const auto s = optimize_parameters(options);  // defaults: sq_norm2 1, p_error 2^-40
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->name, "opt_p4_n2^0_perr2^-40");
}

TEST(Optimizer, ReturnsNulloptForImpossibleRequests) {
  OptimizerOptions options;
  options.message_bits = 8;
  options.sq_norm2 = std::ldexp(1.0, 40);
  EXPECT_FALSE(optimize_parameters(options).has_value());
  // Nothing below the curve's validity is secure.
  OptimizerOptions tiny;
  tiny.message_bits = 1;
  tiny.min_lwe_dimension = 100;
  tiny.max_lwe_dimension = 400;
  EXPECT_FALSE(optimize_parameters(tiny).has_value());
}

TEST(Optimizer, LooserErrorTargetNeverCostsMore) {
  for (unsigned p : {1u, 3u, 5u, 7u}) {
    double previous_cost = std::numeric_limits<double>::infinity();
    for (double log2_p_error : {-200.0, -128.0, -64.0, -40.0, -13.954, -5.0}) {
      OptimizerOptions options;
      options.message_bits = p;
      options.p_error = std::exp2(log2_p_error);
      const auto s = optimize_parameters(options);
      ASSERT_TRUE(s.has_value()) << "p=" << p << " log2_p_error=" << log2_p_error;
      EXPECT_LE(log2_lookup_error_probability(*s, 1.0), log2_p_error + 1e-9) << s->describe();
      EXPECT_LE(ks_pbs_cost(*s), previous_cost) << s->describe();
      previous_cost = ks_pbs_cost(*s);
    }
  }
}

TEST(Optimizer, LargerNormNeverCostsLess) {
  double previous_cost = 0.0;
  for (double sq_norm2 : {1.0, 16.0, 256.0, 4096.0}) {
    OptimizerOptions options;
    options.message_bits = 4;
    options.sq_norm2 = sq_norm2;
    const auto s = optimize_parameters(options);
    ASSERT_TRUE(s.has_value()) << sq_norm2;
    EXPECT_LE(lookup_error_probability(*s, sq_norm2), options.p_error * (1.0 + 1e-9));
    EXPECT_GE(ks_pbs_cost(*s), previous_cost) << s->describe();
    previous_cost = ks_pbs_cost(*s);
  }
}

// A constraint with its own error probability: a 6-bit read allowed to err 2^-8 of the time
// beside 4-bit reads at the target: far cheaper than exact 6-bit reads, no cheaper than
// the 4-bit reads alone, and each constraint holds at its own probability.
TEST(Optimizer, ConstraintsWithTheirOwnErrorProbability) {
  OptimizerOptions exact;
  exact.constraints = {{4, 2048.0}, {6, 1.0}};
  OptimizerOptions loose;
  loose.constraints = {{4, 2048.0}, {6, 1.0, 0x1.0p-8}};
  OptimizerOptions four;
  four.constraints = {{4, 2048.0}};
  const auto e = optimize_parameters(exact), l = optimize_parameters(loose), f = optimize_parameters(four);
  ASSERT_TRUE(e && l && f);
  EXPECT_EQ(e->message_bits, 6u);
  EXPECT_EQ(l->message_bits, 6u);  // the widest table it serves
  EXPECT_LT(ks_pbs_cost(*l), 0.5 * ks_pbs_cost(*e)) << l->describe() << " vs " << e->describe();
  EXPECT_GE(ks_pbs_cost(*l), ks_pbs_cost(*f));
  const double v6 = variance_at_blind_rotation_input(*l, 1.0);
  EXPECT_LE(v6, max_variance_for_p_error(6, 0x1.0p-8));
  EXPECT_GT(v6, max_variance_for_p_error(6, 0x1.0p-40));  // the looser bound is what it meets
  EXPECT_LE(variance_at_blind_rotation_input(*l, 2048.0), max_variance_for_p_error(4, loose.p_error));
  // Only the error probability differs: two entries for one precision both hold.
  OptimizerOptions both;
  both.constraints = {{6, 1.0, 0x1.0p-8}, {6, 1.0}};
  const auto b = optimize_parameters(both);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->message_bits, 6u);
  EXPECT_LE(variance_at_blind_rotation_input(*b, 1.0), max_variance_for_p_error(6, both.p_error));
  OptimizerOptions own;
  own.constraints = {{5, 1.0, 0x1.0p-10}};
  const auto o = optimize_parameters(own);
  ASSERT_TRUE(o);
  EXPECT_EQ(o->message_bits, 5u);
}

// Multi-bit sets: n even, the noise target met by the public model, and the automatic choice
// the cheaper of the two searches under the cost model (at 2 bits the classical set, at 4 and
// 6 the multi-bit one, as measured on machine B: docs/perf-log.md).
TEST(Optimizer, MultiBitAndAutomaticGrouping) {
  for (unsigned bits : {2u, 4u, 6u}) {
    OptimizerOptions one, two, either;
    one.message_bits = two.message_bits = either.message_bits = bits;
    two.grouping = GroupingFactor(2);
    either.grouping = kAutoGrouping;
    const auto c = optimize_parameters(one), m = optimize_parameters(two), a = optimize_parameters(either);
    ASSERT_TRUE(c && m && a) << bits;
    EXPECT_EQ(m->grouping, GroupingFactor(2));
    EXPECT_EQ(m->lwe_dimension.value % 2, 0u);
    EXPECT_TRUE(check_security(*m).secure);
    EXPECT_LE(log2_lookup_error_probability(*m, 1.0), -40.0);
    EXPECT_TRUE(m->name.ends_with("_mb2")) << m->name;
    EXPECT_EQ(*a, ks_pbs_cost(*m) < ks_pbs_cost(*c) ? *m : *c) << bits;
    EXPECT_EQ(a->grouping, GroupingFactor(bits == 2 ? 1 : 2)) << bits;
  }
}

TEST(Optimizer, RejectsBadOptions) {
  OptimizerOptions bad_bits;
  bad_bits.message_bits = 9;
  EXPECT_THROW(optimize_parameters(bad_bits), std::invalid_argument);
  OptimizerOptions bad_p;
  bad_p.p_error = 0.0;
  EXPECT_THROW(optimize_parameters(bad_p), std::invalid_argument);
  OptimizerOptions bad_range;
  bad_range.min_glwe_dimension = 3;
  bad_range.max_glwe_dimension = 2;
  EXPECT_THROW(optimize_parameters(bad_range), std::invalid_argument);
  OptimizerOptions bad_n;
  bad_n.max_log2_polynomial_size = 17;
  EXPECT_THROW(optimize_parameters(bad_n), std::invalid_argument);
  OptimizerOptions bad_security;
  bad_security.security_bits = 100;
  EXPECT_THROW(optimize_parameters(bad_security), std::invalid_argument);
  OptimizerOptions bad_grouping;
  bad_grouping.grouping = GroupingFactor(3);
  EXPECT_THROW(optimize_parameters(bad_grouping), std::invalid_argument);
  for (double p : {-0.5, 1.0, 2.0}) {
    OptimizerOptions bad_own;
    bad_own.constraints = {{4, 1.0, p}};
    EXPECT_THROW(optimize_parameters(bad_own), std::invalid_argument) << p;
  }
}

}  // namespace
}  // namespace veil::tfhe
