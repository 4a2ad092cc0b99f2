#include "veil/tfhe/polynomial.hpp"

#include <bit>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "int_double.hpp"

namespace veil::tfhe {

void multiply_by_monomial(std::span<const Torus> in, std::size_t t, std::span<Torus> out) {
  const std::size_t n = in.size();
  const bool negate = t >= n;
  t %= n;
  // in[j] moves to j + t; what passes X^N comes back negated (and twice negated if t >= N).
  for (std::size_t j = 0; j < n - t; ++j) out[j + t] = negate ? Torus{0} - in[j] : in[j];
  for (std::size_t j = n - t; j < n; ++j) out[j + t - n] = negate ? in[j] : Torus{0} - in[j];
}

void multiply_by_monomial_minus_one(std::span<const Torus> in, std::size_t t, std::span<Torus> out) {
  map_monomial_minus_one(in.data(), in.size(), t, out.data(), [](Torus x) { return x; });
}

void negacyclic_multiply_schoolbook(std::span<const Torus> a, std::span<const Torus> b,
                                    std::span<Torus> out) {
  const std::size_t n = a.size();
  if (b.size() != n || out.size() != n)
    throw std::invalid_argument("schoolbook product: sizes " + std::to_string(a.size()) + ", " +
                                std::to_string(b.size()) + ", " + std::to_string(out.size()) + " differ");
  for (auto& x : out) x = 0;
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < n; ++j) {
      Torus p = a[i] * b[j];
      if (i + j < n) out[i + j] += p;
      else out[i + j - n] -= p;
    }
  }
}

SmallPolynomialMultiplier::SmallPolynomialMultiplier(const Fft& fft, std::span<const Torus> s)
    : fft_(fft),
      scratch_(fft.polynomial_size()),
      key_spectrum_(fft.polynomial_size().value),
      limb_(fft.polynomial_size().value),
      limb_spectrum_(fft.polynomial_size().value),
      product_(fft.polynomial_size().value) {
  const std::size_t n = fft.polynomial_size().value;
  if (s.size() != n)
    throw std::invalid_argument("small polynomial has " + std::to_string(s.size()) +
                                " coefficients, the transform expects " + std::to_string(n));
  SecretVector<double> coeffs(n);
  for (std::size_t j = 0; j < n; ++j) coeffs[j] = static_cast<double>(static_cast<std::int64_t>(s[j]));
  fft_.forward(coeffs.data(), key_spectrum_.data(), scratch_);
}

void SmallPolynomialMultiplier::multiply_add(std::span<const Torus> a, std::span<Torus> out) {
  const std::size_t n = fft_.polynomial_size().value;
  const std::size_t half = n / 2;
  static constexpr int kShift[3] = {0, 22, 43};
  static constexpr Torus kMask[3] = {(Torus{1} << 22) - 1, (Torus{1} << 21) - 1, (Torus{1} << 21) - 1};
  for (int limb = 0; limb < 3; ++limb) {
    // Exact by the 1.5 * 2^52 constant (int_double.hpp), which vectorises at any width: at
    // baseline x86-64 a conversion instruction per value was two thirds of this function.
    for (std::size_t j = 0; j < n; ++j)
      limb_[j] = std::bit_cast<double>(static_cast<std::int64_t>((a[j] >> kShift[limb]) & kMask[limb]) + kMagicBits) - kMagic;
    fft_.forward(limb_.data(), limb_spectrum_.data(), scratch_);
    // limb_spectrum *= key_spectrum (pointwise, split layout)
    double* re = limb_spectrum_.data();
    double* im = re + half;
    const double* kre = key_spectrum_.data();
    const double* kim = kre + half;
    for (std::size_t t = 0; t < half; ++t) {
      double r = re[t] * kre[t] - im[t] * kim[t];
      double i = re[t] * kim[t] + im[t] * kre[t];
      re[t] = r;
      im[t] = i;
    }
    fft_.backward_round_integer(limb_spectrum_.data(), product_.data(), scratch_);
    for (std::size_t j = 0; j < n; ++j) out[j] += product_[j] << kShift[limb];
  }
}

}  // namespace veil::tfhe
