// The run-time choice of kernel set (src/tfhe/kernels) and the sets' agreement: every set this
// CPU runs gives the portable set's results, bit for bit, on random inputs.
//
// Inputs are chosen so that the exact result is representable (small dyadic doubles, integer
// arithmetic), so that a set's different but legitimate rounding (FMA against a multiply and
// an add) cannot hide a wrong index, lane or tail. The transforms are the exception: their
// twiddles are not dyadic, and the vector sets fuse multiply-adds where the portable set
// rounds twice, so Radix8Fft's stages agree across sets to within rounding, not bit for bit
// (Radix8RunMatchesPortableToRounding); the FFT tests also check each set against exact
// products (schoolbook, bit for bit where the product is exact) when the suite runs under
// each VEIL_ISA (scripts/test.sh).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "../common/error_message.hpp"
#include "kernels/kernel_set.hpp"
#include "test_util.hpp"
#include "veil/tfhe/aligned.hpp"
#include "veil/tfhe/decomposition.hpp"
#include "veil/tfhe/entities.hpp"
#include "veil/tfhe/isa.hpp"
#include "veil/tfhe/polynomial.hpp"
#include "veil/tfhe/radix8_fft.hpp"

namespace veil::tfhe {
namespace {

using kernels::Isa;
using kernels::KernelSet;
using test_support::error_of;
using test_support::has;
using testing::test_rng;

TEST(SelectIsa, UnsetOrEmptyGivesTheHostsBest) {
  for (Isa host : kernels::kIsas) {
    EXPECT_EQ(kernels::select_isa(nullptr, host), host);
    EXPECT_EQ(kernels::select_isa("", host), host);
  }
}

TEST(SelectIsa, GivesTheRequestedSetUpToTheHosts) {
  for (Isa host : kernels::kIsas)
    for (Isa isa : kernels::kIsas)
      if (isa <= host) {
        EXPECT_EQ(kernels::select_isa(std::string(kernels::isa_name(isa)).c_str(), host), isa);
      }
}

TEST(SelectIsa, RefusesASetAboveTheHostsNamingTheVariableTheSetAndWhatTheCpuRuns) {
  const std::string e = error_of<std::runtime_error>([] { kernels::select_isa("avx512", Isa::kAvx2); });
  EXPECT_TRUE(has(e, "VEIL_ISA=avx512")) << e;
  EXPECT_TRUE(has(e, "portable, avx2")) << e;
  EXPECT_TRUE(has(e, "best: avx2")) << e;
  const std::string p = error_of<std::runtime_error>([] { kernels::select_isa("avx2", Isa::kPortable); });
  EXPECT_TRUE(has(p, "VEIL_ISA=avx2")) << p;
  EXPECT_TRUE(has(p, "runs portable")) << p;
}

TEST(SelectIsa, RefusesUnknownNames) {
  for (const char* name : {"AVX2", "sse4", "avx512 ", "native", "avx-512"}) {
    const std::string e = error_of<std::runtime_error>([&] { kernels::select_isa(name, Isa::kAvx512); });
    EXPECT_TRUE(has(e, std::string("VEIL_ISA=") + name)) << e;
    EXPECT_TRUE(has(e, "portable, avx2 or avx512")) << e;
  }
}

// What this process runs: VEIL_ISA when set (the suite runs once per set), else the best.
TEST(ActiveIsa, IsVeilIsaOrTheHostsBest) {
  const Isa expected = kernels::select_isa(std::getenv("VEIL_ISA"), kernels::host_isa());
  EXPECT_EQ(active_isa(), kernels::isa_name(expected));
  EXPECT_EQ(kernels::active_kernels().isa, expected);
  ASSERT_NE(kernels::compiled_kernels(kernels::host_isa()), nullptr) << "the host's best set is not compiled";
  for (Isa isa : kernels::kIsas)
    if (const KernelSet* set = kernels::compiled_kernels(isa)) {
      EXPECT_EQ(set->isa, isa);
    }
  std::cout << "[ isa      ] active " << active_isa() << ", host's best " << kernels::isa_name(kernels::host_isa())
            << "\n";
}

// The sets this CPU runs, but the portable one.
std::vector<const KernelSet*> vector_sets() {
  std::vector<const KernelSet*> sets;
  for (Isa isa : kernels::kIsas)
    if (isa != Isa::kPortable && isa <= kernels::host_isa() && kernels::compiled_kernels(isa) != nullptr)
      sets.push_back(kernels::compiled_kernels(isa));
  return sets;
}

const KernelSet& portable_set() { return *kernels::compiled_kernels(Isa::kPortable); }

// A multiple of 2^-6 in [-15.6, 15.6]: sums of a few hundred products of these are exact in
// f64, in any order and with or without FMA.
double dyadic() { return static_cast<double>(static_cast<std::int64_t>(test_rng()() % 2001) - 1000) / 64.0; }

AlignedVector<double> dyadic_vector(std::size_t n) {
  AlignedVector<double> v(n);
  for (double& x : v) x = dyadic();
  return v;
}

class KernelSets : public ::testing::Test {
 protected:
  void SetUp() override {
    if (vector_sets().empty()) GTEST_SKIP() << "this CPU runs the portable set only";
  }
};

TEST_F(KernelSets, FourierDotMatchesPortable) {
  // 5 points: a vector body and a scalar tail; 64 points: the body alone. Unaligned operands.
  for (std::size_t points : {5, 64})
    for (std::size_t rows : {1, 3, 7})
      for (std::size_t outputs = 1; outputs <= 7; ++outputs) {
        const std::size_t stride = 2 * points + 4, b_row_stride = outputs * stride;
        const auto a = dyadic_vector(rows * stride + 2), b = dyadic_vector(rows * b_row_stride + 6);
        std::vector<double> want(outputs * stride + 2, -1.0);
        portable_set().fourier_dot_outputs(want.data() + 2, stride, outputs, a.data() + 2, stride, rows, b.data() + 6,
                                           b_row_stride, stride, points, nullptr);
        for (const KernelSet* set : vector_sets()) {
          std::vector<double> got(want.size(), -1.0);
          set->fourier_dot_outputs(got.data() + 2, stride, outputs, a.data() + 2, stride, rows, b.data() + 6,
                                   b_row_stride, stride, points, b.data() + 6);
          ASSERT_EQ(got, want) << kernels::isa_name(set->isa) << ": " << points << " points, " << rows << " rows, "
                               << outputs << " outputs";
        }
      }
}

TEST_F(KernelSets, MultiBitFourierDotMatchesPortable) {
  constexpr std::size_t n = 256, rows = 3;
  // A made-up table of factors, dyadic like the operands, so that the products are exact.
  const auto table = dyadic_vector(4 * n);
  for (std::size_t parts : {1, 2, 3, 4})
    for (std::size_t per_group : {1, 3, 7}) {
      const auto a = dyadic_vector(rows * n);
      const auto block = dyadic_vector(per_group * rows * parts * n);
      std::vector<std::size_t> exponents(per_group);
      for (auto& e : exponents) e = test_rng()() % (2 * n);
      AlignedVector<double> want(parts * n);
      portable_set().multi_bit_fourier_dot(n, table.data(), want.data(), n, parts, a.data(), n, rows, block.data(),
                                           per_group, exponents.data());
      for (const KernelSet* set : vector_sets()) {
        AlignedVector<double> got(parts * n);
        set->multi_bit_fourier_dot(n, table.data(), got.data(), n, parts, a.data(), n, rows, block.data(), per_group,
                                   exponents.data());
        ASSERT_EQ(got, want) << kernels::isa_name(set->isa) << ": " << parts << " parts, " << per_group << " a group";
      }
    }
}

// The twist passes with made-up twist factors, signed powers of two: every product is exact
// (digits have up to 52 bits), so the one rounding, of the sum, is the same with or without
// a fused multiply-add. 130 points: a vector body and a tail of 2.
TEST_F(KernelSets, TwistPassesMatchPortable) {
  constexpr std::size_t half = 130;
  const auto power_of_two = [] {
    const double magnitude = static_cast<double>(std::int64_t{1} << (test_rng()() % 11)) / 64.0;  // 2^-6 .. 2^4
    return test_rng()() % 2 == 0 ? magnitude : -magnitude;
  };
  AlignedVector<double> re(half), im(half);
  for (std::size_t j = 0; j < half; ++j) {
    re[j] = power_of_two();
    im[j] = power_of_two();
  }
  AlignedVector<std::int64_t> integers(2 * half);
  for (auto& x : integers) x = static_cast<std::int64_t>(test_rng()() % (1u << 21)) - (1 << 20);
  const auto state = testing::random_torus(2 * half);
  KeyStreamPrefetch none;
  AlignedVector<double> want_integers(2 * half), want_digits(2 * half);
  portable_set().twist_integers(integers.data(), half, re.data(), im.data(), want_integers.data(), none);
  for (std::size_t base_log : {1, 7, 23, 52}) {
    AlignedVector<Torus> want_state = state;
    portable_set().twist_next_digits(want_state.data(), base_log, half, re.data(), im.data(), want_digits.data(), none);
    for (const KernelSet* set : vector_sets()) {
      AlignedVector<double> got(2 * half);
      AlignedVector<Torus> got_state = state;
      set->twist_next_digits(got_state.data(), base_log, half, re.data(), im.data(), got.data(), none);
      ASSERT_EQ(got_state, want_state) << kernels::isa_name(set->isa) << ", base 2^" << base_log;
      ASSERT_EQ(got, want_digits) << kernels::isa_name(set->isa) << ", base 2^" << base_log;
    }
  }
  for (const KernelSet* set : vector_sets()) {
    AlignedVector<double> got(2 * half);
    set->twist_integers(integers.data(), half, re.data(), im.data(), got.data(), none);
    ASSERT_EQ(got, want_integers) << kernels::isa_name(set->isa);
  }
}

// The fused pass (rounding, or the rotated difference's rounding, then the first digits)
// against the rounding kernel and the digit pass it replaces, in every set including the
// portable, bit for bit: rotations that wrap in either half of the points, at vector and
// odd offsets, and one level (no state written) or more.
TEST(KernelSetRounding, FirstDigitsAreTheRoundingThenTheNextDigits) {
  constexpr std::size_t half = 130, n = 2 * half;
  const auto in = testing::random_torus(n);
  AlignedVector<double> re(half), im(half);
  for (std::size_t j = 0; j < half; ++j) {
    re[j] = std::cos(static_cast<double>(j) * 0.01);
    im[j] = std::sin(static_cast<double>(j) * 0.01);
  }
  KeyStreamPrefetch none;
  for (Isa isa : kernels::kIsas) {
    const KernelSet* set = kernels::compiled_kernels(isa);
    if (set == nullptr || isa > kernels::host_isa()) continue;
    for (std::size_t base_log : {1, 5, 23})
      for (std::size_t levels : {1, 2}) {
        const std::size_t kept = base_log * levels;
        for (std::size_t t : {std::size_t{0}, std::size_t{1}, std::size_t{8}, std::size_t{61}, half - 1, half, half + 3,
                              half + 16, n - 1, n, n + 5, n + half, n + half + 9, 2 * n - 1}) {
          for (bool difference : {false, true}) {
            if (!difference && t != 0) continue;  // t unused
            AlignedVector<Torus> want_state(n), got_state(n, 0);
            AlignedVector<double> want(n), got(n);
            if (difference) set->round_monomial_minus_one(in.data(), n, t, kept, want_state.data());
            else set->round_to_top_bits(in.data(), n, kept, want_state.data());
            set->twist_next_digits(want_state.data(), base_log, half, re.data(), im.data(), want.data(), none);
            set->twist_first_digits(in.data(), half, t, difference, kept, base_log, levels > 1 ? got_state.data() : nullptr,
                                    re.data(), im.data(), got.data(), none);
            const std::string where = std::string(kernels::isa_name(isa)) + ", " + std::to_string(base_log) + " x " +
                                      std::to_string(levels) + ", t = " + std::to_string(t) +
                                      (difference ? ", difference" : "");
            ASSERT_EQ(got, want) << where;
            if (levels > 1) ASSERT_EQ(got_state, want_state) << where;
          }
        }
      }
  }
}

TEST_F(KernelSets, UntwistAddTorusMatchesPortable) {
  constexpr std::size_t half = 130;
  const auto re = dyadic_vector(half), im = dyadic_vector(half);
  // Products in torus units below 2^20 with fractions down to 2^-26: exact, and their
  // torus values (fractions times 2^64) are too.
  AlignedVector<double> buf(2 * half);
  for (double& x : buf) x = static_cast<double>(static_cast<std::int64_t>(test_rng()() % (1u << 31)) - (1 << 30)) / (1 << 20);
  const auto out = testing::random_torus(2 * half);
  KeyStreamPrefetch none;
  AlignedVector<Torus> want = out;
  portable_set().untwist_add_torus(buf.data(), half, re.data(), im.data(), want.data(), none);
  for (const KernelSet* set : vector_sets()) {
    AlignedVector<Torus> got = out;
    set->untwist_add_torus(buf.data(), half, re.data(), im.data(), got.data(), none);
    ASSERT_EQ(got, want) << kernels::isa_name(set->isa);
  }
}

// The same stages (radix 2, 4 and 8 first, then radix 8) in every set: outputs within a few
// units in the last place of the transform's scale, where a wrong index, lane or twiddle
// would be off by O(1).
TEST_F(KernelSets, Radix8RunMatchesPortableToRounding) {
  for (std::size_t points : {16, 32, 64, 128, 512, 4096})
    for (int sign : {-1, 1}) {
      const Radix8Fft fft(points, sign);
      AlignedVector<double> x(2 * points);
      for (double& v : x) v = static_cast<double>(static_cast<std::int64_t>(test_rng()() % 2000001) - 1000000) / 1e6;
      // Rounding grows like sqrt(points) * log2(points) units of 2^-53 for inputs in [-1, 1].
      const double bound = 0x1.0p-53 * 16 * std::sqrt(static_cast<double>(points)) * std::log2(static_cast<double>(points));
      KeyStreamPrefetch none;
      const auto run = [&](const KernelSet& set) {
        AlignedVector<double> out(2 * points), spare(2 * points);
        set.radix8_run(fft.stages().data(), fft.stages().size(), fft.twiddles(), sign, x.data(), out.data(),
                       spare.data(), none);
        return out;
      };
      const auto want = run(portable_set());
      for (const KernelSet* set : vector_sets()) {
        const auto got = run(*set);
        for (std::size_t j = 0; j < 2 * points; ++j)
          ASSERT_NEAR(got[j], want[j], bound) << kernels::isa_name(set->isa) << ": " << points << " points, sign "
                                              << sign << ", word " << j;
      }
    }
}

// Every tile width, lone ciphertexts and groups, both word sizes.
TEST_F(KernelSets, KeyswitchTileMatchesPortable) {
  constexpr std::size_t rows = 37, groups = 4;
  for (std::size_t word_bytes : {3, 4})
    for (std::size_t width = 8; width <= TruncatedKeyswitchKey::kBlockWords; width += 8)
      for (std::size_t count = 1; count <= groups; ++count) {
        std::vector<std::uint8_t> tile(rows * width * word_bytes + TruncatedKeyswitchKey::kTailBytes + 48);
        for (auto& byte : tile) byte = static_cast<std::uint8_t>(test_rng()());
        std::vector<std::vector<std::int32_t>> digits(count, std::vector<std::int32_t>(rows));
        std::vector<std::vector<std::uint32_t>> start(count, std::vector<std::uint32_t>(width));
        for (std::size_t g = 0; g < count; ++g) {
          for (auto& d : digits[g]) d = static_cast<std::int32_t>(test_rng()());
          for (auto& s : start[g]) s = static_cast<std::uint32_t>(test_rng()());
        }
        const auto run = [&](const KernelSet& set) {
          std::vector<std::vector<std::uint32_t>> sums = start;
          std::vector<const std::int32_t*> d(count);
          std::vector<std::uint32_t*> s(count);
          for (std::size_t g = 0; g < count; ++g) {
            d[g] = digits[g].data();
            s[g] = sums[g].data();
          }
          set.keyswitch_tile(word_bytes, tile.data(), width, d.data(), rows, s.data(), count);
          return sums;
        };
        const auto want = run(portable_set());
        for (const KernelSet* set : vector_sets())
          ASSERT_EQ(run(*set), want) << kernels::isa_name(set->isa) << ": " << word_bytes << "-byte words, width "
                                     << width << ", " << count << " ciphertexts";
      }
}

// Against Decomposer itself, which the kernels restate, for every set including the portable.
TEST(KernelSetRounding, IsTheDecomposersInEverySet) {
  constexpr std::size_t n = 256;
  const auto in = testing::random_torus(n);
  for (Isa isa : kernels::kIsas) {
    const KernelSet* set = kernels::compiled_kernels(isa);
    if (set == nullptr || isa > kernels::host_isa()) continue;
    for (std::size_t base_log : {5, 21, 32})
      for (std::size_t levels : {1, 2, 3}) {
        const Decomposer decomposer{DecompositionBaseLog(base_log), DecompositionLevelCount(levels)};
        AlignedVector<Torus> want(n), got(n);
        for (std::size_t j = 0; j < n; ++j) want[j] = decomposer.round_to_top_bits(in[j]);
        set->round_to_top_bits(in.data(), n, base_log * levels, got.data());
        ASSERT_EQ(got, want) << kernels::isa_name(isa) << ", " << base_log << " x " << levels;
        for (std::size_t t : {std::size_t{0}, std::size_t{1}, n - 1, n, n + 3, 2 * n - 1}) {
          map_monomial_minus_one(in.data(), n, t, want.data(), [&](Torus x) { return decomposer.round_to_top_bits(x); });
          set->round_monomial_minus_one(in.data(), n, t, base_log * levels, got.data());
          ASSERT_EQ(got, want) << kernels::isa_name(isa) << ", " << base_log << " x " << levels << ", t = " << t;
        }
      }
  }
}

// The packing keyswitch's multiply-add against the negacyclic product written out, for every
// set including the portable: small digits of both signs, zeros, the largest the 32-bit
// multiplies take (|d| = 2^32 - 1) and larger ones (the plain 64-bit path), and shapes whose
// spans end off every vector width.
TEST(KernelSetPacking, IsTheNegacyclicProductInEverySet) {
  for (Isa isa : kernels::kIsas) {
    const KernelSet* set = kernels::compiled_kernels(isa);
    if (set == nullptr || isa > kernels::host_isa()) continue;
    for (std::size_t np : {1, 8, 32, 300})
      for (std::size_t row : {1, 2, 3, 44})
        for (std::size_t stride : {1, 2}) {
          const auto key = testing::random_torus(np * row);
          const auto start = testing::random_torus(np * row);
          std::vector<std::int64_t> digits(np * stride);
          const std::int64_t special[] = {0, 1, -1, (std::int64_t{1} << 32) - 1, -((std::int64_t{1} << 32) - 1),
                                          std::int64_t{1} << 32, -(std::int64_t{1} << 40), INT64_MIN};
          for (std::size_t t = 0; t < digits.size(); ++t)
            digits[t] = t % 3 == 0 ? special[(t / 3 + 1) % 8] : static_cast<std::int64_t>(test_rng()() % 4097) - 2048;
          for (std::size_t count : {std::size_t{1}, (np + 1) / 2, np}) {
            std::vector<Torus> want(start.begin(), start.end()), got = want;
            for (std::size_t t = 0; t < count; ++t) {
              const Torus d = static_cast<Torus>(digits[t * stride]);
              for (std::size_t u = 0; u < np; ++u)
                for (std::size_t q = 0; q < row; ++q) {
                  // -d X^t P: coefficient u moves to u + t, negated past np.
                  const Torus term = d * key[u * row + q];
                  Torus& dst = want[((u + t) % np) * row + q];
                  dst = u + t < np ? dst - term : dst + term;
                }
            }
            set->packing_multiply_add(key.data(), np, row, digits.data(), stride, count, got.data());
            ASSERT_EQ(got, want) << kernels::isa_name(isa) << ": N' = " << np << ", " << row
                                 << " words a coefficient, stride " << stride << ", " << count << " digits";
          }
        }
  }
}

}  // namespace
}  // namespace veil::tfhe
