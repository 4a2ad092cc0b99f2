#include "veil/tfhe/fft.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <vector>

#include "test_util.hpp"
#include "veil/tfhe/csprng.hpp"
#include "veil/tfhe/decomposition.hpp"
#include "veil/tfhe/polynomial.hpp"

namespace veil::tfhe {
namespace {

using testing::random_torus;
using testing::test_rng;

// The schoolbook product against a sparse second operand, O(N * nonzeros): what the FFT
// product is checked against for the largest N, where O(N^2) would take too long.
AlignedVector<Torus> sparse_schoolbook(std::span<const Torus> a, std::span<const Torus> b) {
  const std::size_t n = a.size();
  AlignedVector<Torus> out(n, 0), rotated(n);
  for (std::size_t j = 0; j < n; ++j) {
    if (b[j] == 0) continue;
    multiply_by_monomial(a, j, rotated);
    for (std::size_t t = 0; t < n; ++t) out[t] += b[j] * rotated[t];
  }
  return out;
}

class FftProduct : public ::testing::TestWithParam<std::size_t> {};

// Torus polynomial times signed digits (the external product's operation): the FFT result
// differs from the exact product only by the f64 rounding the noise model accounts for.
TEST_P(FftProduct, TorusTimesDigitsMatchesSchoolbook) {
  const std::size_t n = GetParam();
  const Fft& fft = Fft::get(PolynomialSize(n));
  auto a = random_torus(n);
  AlignedVector<std::int64_t> digits(n, 0);
  AlignedVector<Torus> b(n, 0);
  // Dense digits for N up to 4096 (schoolbook affordable), 64 non-zero digits above.
  const bool dense = n <= 4096;
  for (std::size_t j = 0; j < n; ++j) {
    if (!dense && test_rng()() % (n / 64) != 0) continue;
    digits[j] = static_cast<std::int64_t>(test_rng()() % 1024) - 512;
    b[j] = static_cast<Torus>(digits[j]);
  }
  AlignedVector<Torus> expected(n);
  if (dense) negacyclic_multiply_schoolbook(a, b, expected);
  else expected = sparse_schoolbook(a, b);

  // As the external product does it: the torus operand's spectrum (a bootstrap key's), the
  // digits' spectrum and the accumulator, all interleaved.
  FftScratch scratch{PolynomialSize(n)};
  AlignedVector<double> sa(n), prod(n, 0.0);
  fft.forward_torus_interleaved(a.data(), sa.data(), scratch);
  const double* sb = fft.forward_integer_interleaved(digits.data(), scratch);
  fourier_dot_outputs(prod.data(), 0, 1, sb, 0, 1, sa.data(), 0, 0, n / 2);
  AlignedVector<Torus> got(n, 0);
  fft.backward_add_torus_interleaved(prod.data(), got.data(), scratch);
  std::int64_t worst = 0;
  for (std::size_t j = 0; j < n; ++j) worst = std::max(worst, std::abs(testing::torus_distance(got[j], expected[j])));
  // |product| <= N * 2^9 * 2^63: f64 keeps ~2^-53 of it, i.e. far below 2^-20 of the torus.
  EXPECT_LT(worst, std::int64_t{1} << 44) << "N = " << n;
}

// Every output of every chunk size (1 to 4, and 4 + 3 for seven outputs), vector body and
// scalar tail (five points), unaligned operands: the complex dot product over rows.
TEST(FourierDot, IsTheComplexDotProductOverRowsForEveryOutput) {
  constexpr std::size_t kPoints = 5, kRows = 3, kStride = 2 * kPoints + 4;
  for (std::size_t outputs = 1; outputs <= 7; ++outputs) {
    const std::size_t b_row_stride = outputs * kStride;
    std::vector<double> a(kRows * kStride + 2), b(kRows * b_row_stride + 6), out(outputs * kStride + 2, -1.0);
    const auto value = [] { return static_cast<double>(static_cast<std::int64_t>(test_rng()() % 2001) - 1000) / 64.0; };
    for (double& x : a) x = value();
    for (double& x : b) x = value();
    fourier_dot_outputs(out.data() + 2, kStride, outputs, a.data() + 2, kStride, kRows, b.data() + 6, b_row_stride,
                        kStride, kPoints);
    for (std::size_t o = 0; o < outputs; ++o)
      for (std::size_t t = 0; t < kPoints; ++t) {
        double re = 0, im = 0;  // exact in any order: products of multiples of 2^-6 below 2^10
        for (std::size_t r = 0; r < kRows; ++r) {
          const double ar = a[2 + r * kStride + 2 * t], ai = a[2 + r * kStride + 2 * t + 1];
          const double br = b[6 + r * b_row_stride + o * kStride + 2 * t];
          const double bi = b[6 + r * b_row_stride + o * kStride + 2 * t + 1];
          re += ar * br - ai * bi;
          im += ar * bi + ai * br;
        }
        EXPECT_EQ(out[2 + o * kStride + 2 * t], re) << outputs << " outputs, output " << o << ", point " << t;
        EXPECT_EQ(out[2 + o * kStride + 2 * t + 1], im) << outputs << " outputs, output " << o << ", point " << t;
      }
  }
}

// Exact products by a binary polynomial (what encryption uses): bit for bit.
TEST_P(FftProduct, ExactSmallProductMatchesSchoolbook) {
  const std::size_t n = GetParam();
  const Fft& fft = Fft::get(PolynomialSize(n));
  auto a = random_torus(n);
  AlignedVector<Torus> s(n, 0);
  const bool dense = n <= 4096;
  for (std::size_t j = 0; j < n; ++j) s[j] = (dense || test_rng()() % (n / 64) == 0) ? test_rng()() & 1 : 0;
  AlignedVector<Torus> expected(n);
  if (dense) negacyclic_multiply_schoolbook(a, s, expected);
  else expected = sparse_schoolbook(a, s);
  AlignedVector<Torus> got(n, 0);
  SmallPolynomialMultiplier(fft, s).multiply_add(a, got);
  for (std::size_t j = 0; j < n; ++j) ASSERT_EQ(got[j], expected[j]) << "N = " << n << ", coefficient " << j;
}

// The fused pass advances the state and transforms the digits exactly as
// Decomposer::next_level_digits followed by forward_integer_interleaved: same words, same
// spectrum, level after level, for bases from 1 bit to 52.
TEST_P(FftProduct, NextDigitsTransformIsTheDecompositionsDigitsTransform) {
  const std::size_t n = GetParam();
  const Fft& fft = Fft::get(PolynomialSize(n));
  FftScratch scratch{PolynomialSize(n)};
  for (std::size_t base_log : {1, 3, 12, 23, 52}) {
    const std::size_t levels = std::min<std::size_t>(3, 64 / base_log);
    const Decomposer decomposer{DecompositionBaseLog(base_log), DecompositionLevelCount(levels)};
    auto poly = random_torus(n);
    AlignedVector<Torus> fused(n), reference(n);
    for (std::size_t t = 0; t < n; ++t) fused[t] = reference[t] = decomposer.round_to_top_bits(poly[t]);
    AlignedVector<std::int64_t> digits(n);
    AlignedVector<double> got(n), expected(n);
    for (std::size_t j = levels; j >= 1; --j) {
      decomposer.next_level_digits(reference, digits.data());
      fft.forward_integer_interleaved(digits.data(), scratch, expected.data());
      fft.forward_next_digits_interleaved(fused.data(), base_log, scratch, got.data());
      ASSERT_TRUE(std::equal(fused.begin(), fused.end(), reference.begin())) << "N = " << n << ", base 2^" << base_log << ", level " << j;
      ASSERT_TRUE(std::equal(got.begin(), got.end(), expected.begin())) << "N = " << n << ", base 2^" << base_log << ", level " << j;
    }
  }
}

TEST_P(FftProduct, BackwardInvertsForward) {
  const std::size_t n = GetParam();
  const Fft& fft = Fft::get(PolynomialSize(n));
  FftScratch scratch{PolynomialSize(n)};
  AlignedVector<double> x(n), spectrum(n), back(n);
  for (auto& v : x) v = static_cast<double>(static_cast<std::int64_t>(test_rng()() % 2000001) - 1000000);
  fft.forward(x.data(), spectrum.data(), scratch);
  fft.backward(spectrum.data(), back.data(), scratch);
  for (std::size_t j = 0; j < n; ++j) ASSERT_NEAR(back[j], x[j], 1e-6) << j;
}

INSTANTIATE_TEST_SUITE_P(EverySupportedSize, FftProduct,
                         ::testing::Values(256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536));

TEST(Fft, RejectsUnsupportedSizes) {
  EXPECT_THROW(Fft::get(PolynomialSize(128)), std::invalid_argument);
  EXPECT_THROW(Fft::get(PolynomialSize(1000)), std::invalid_argument);
  EXPECT_THROW(Fft::get(PolynomialSize(131072)), std::invalid_argument);
}

TEST(Polynomial, MonomialRotationIsNegacyclic) {
  const std::size_t n = 256;
  auto a = random_torus(n);
  AlignedVector<Torus> x_t(n, 0), expected(n), got(n), diff(n);
  for (std::size_t t : {0u, 1u, 100u, 255u, 256u, 300u, 511u}) {
    std::fill(x_t.begin(), x_t.end(), 0);
    // X^t as a polynomial (t >= N: -X^(t-N))
    x_t[t % n] = t >= n ? Torus{0} - 1 : 1;
    negacyclic_multiply_schoolbook(a, x_t, expected);
    multiply_by_monomial(a, t, got);
    EXPECT_EQ(got, expected) << "t = " << t;
    multiply_by_monomial_minus_one(a, t, diff);
    for (std::size_t j = 0; j < n; ++j) ASSERT_EQ(diff[j], expected[j] - a[j]) << "t = " << t;
  }
}

}  // namespace
}  // namespace veil::tfhe
