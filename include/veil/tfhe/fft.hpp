// Negacyclic polynomial products in Z[X]/(X^N + 1) through an N/2-point complex FFT in f64.
//
// Mathematics (stated once here). X^N + 1 = (X^(N/2) - i)(X^(N/2) + i); a real polynomial is
// determined by its image in C[X]/(X^(N/2) - i), where X^(N/2) acts as i, so a coefficient
// vector folds into N/2 complex numbers z_j = a_j + i*a_(j+N/2). Substituting X = zeta*Y with
// zeta = exp(i*pi/N) (zeta^(N/2) = i) turns X^(N/2) - i into i*(Y^(N/2) - 1): a cyclic
// convolution of length N/2, diagonalised by one N/2-point DFT of z_j * zeta^j ("twisting").
// Backward: inverse DFT, multiply by zeta^-j / (N/2), unfold real parts to coefficients j and
// imaginary parts to j + N/2.
//
// Stored spectra (the bootstrap key's) are split: N/2 real parts followed by N/2 imaginary
// parts ("FourierPolynomial layout", N doubles), one contiguous stream per part. The
// external product's own spectra (its digits' and its accumulator) stay interleaved, as
// FFTW's AVX codelets read and write them, so that no copy between layouts runs per
// transform (the copies were ~10 % of a PBS).
//
// Torus operands are scaled by 2^-64 into [-1/2, 1/2); products of a torus spectrum with an
// integer spectrum come back as x in torus units, and (x - round(x)) * 2^64 recovers the
// product modulo 2^64. The 11 bits f64 loses against 64 are the FFT term of the noise model.
//
// Thread safety: Fft objects are immutable after construction and shared read-only; every
// transform takes the caller's FftScratch, so any number of threads may transform at once.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>

#include "veil/tfhe/aligned.hpp"
#include "veil/tfhe/dimensions.hpp"

namespace veil::tfhe {

// Per-thread work buffers for one Fft: two arrays of N/2 interleaved complex values (the
// transforms run out of place, which FFTW executes faster than in place).
class FftScratch {
 public:
  explicit FftScratch(PolynomialSize n) : buffer_(2 * n.value) {}
  double* data() { return buffer_.data(); }
  double* output() { return buffer_.data() + buffer_.size() / 2; }
  std::size_t size() const { return buffer_.size(); }

 private:
  AlignedVector<double> buffer_;
};

class Fft {
 public:
  // The process-wide transform for N (a power of two in [256, 65536]); created on first use
  // (FFTW planning happens once per N, under a lock) and never destroyed.
  // Throws std::invalid_argument for an unsupported N.
  static const Fft& get(PolynomialSize n);

  PolynomialSize polynomial_size() const { return PolynomialSize(n_); }

  // coefficients (N doubles) -> spectrum (N doubles, split layout).
  void forward(const double* coefficients, double* spectrum, FftScratch& scratch) const;
  // Torus values scaled by 2^-64 into [-1/2, 1/2).
  void forward_torus(const Torus* coefficients, double* spectrum, FftScratch& scratch) const;

  // The external product's path, without copies between layouts. Signed integers of at most
  // 2^51 in magnitude (the decomposition digits) -> their spectrum, left interleaved where FFTW wrote
  // it (re, im pairs: N/2 complex values) in scratch.output(), valid until the scratch's next
  // transform.
  const double* forward_integer_interleaved(const std::int64_t* coefficients, FftScratch& scratch) const;
  // out[j] += the torus value of the product held in the interleaved `spectrum` (in torus
  // units, below 2^51 in magnitude; rounded to 2^-52 of the torus), which must be 64-byte
  // aligned (as AlignedVector storage is).
  void backward_add_torus_interleaved(const double* spectrum, Torus* out, FftScratch& scratch) const;

  // spectrum -> coefficients (normalised: backward(forward(a)) == a up to rounding).
  // `spectrum` is used as input only.
  void backward(const double* spectrum, double* coefficients, FftScratch& scratch) const;
  // out[j] = round(product) as an integer modulo 2^64 (for products of integers that are exact).
  void backward_round_integer(const double* spectrum, Torus* out, FftScratch& scratch) const;

  ~Fft();
  Fft(const Fft&) = delete;
  Fft& operator=(const Fft&) = delete;

 private:
  explicit Fft(std::size_t n);
  void forward_twisted(double* spectrum, FftScratch& scratch) const;
  void backward_to_scratch(const double* spectrum, FftScratch& scratch) const;

  std::size_t n_;
  AlignedVector<double> twist_re_, twist_im_;      // zeta^j, j < N/2
  AlignedVector<double> untwist_re_, untwist_im_;  // zeta^-j / (N/2)
  void* forward_plan_ = nullptr;
  void* backward_plan_ = nullptr;
};

// acc += a * b with acc and a interleaved (Fft::forward_integer_interleaved) and b split;
// when `next` is given, prefetches it (a split spectrum of the same size: the same position
// in the next GGSW of a bootstrap key) one cache line per 8 points.
inline void fourier_multiply_add_interleaved(double* __restrict acc, const double* __restrict a,
                                             const double* __restrict b, std::size_t fourier_size,
                                             const double* next = nullptr) {
  const double* b_re = b;
  const double* b_im = b + fourier_size;
  constexpr std::size_t kLine = 64 / sizeof(double);
  for (std::size_t base = 0; base < fourier_size; base += kLine) {
    if (next != nullptr) {
      __builtin_prefetch(next + base, 0, 3);
      __builtin_prefetch(next + fourier_size + base, 0, 3);
    }
    const std::size_t end = std::min(fourier_size, base + kLine);
    for (std::size_t t = base; t < end; ++t) {
      const double ar = a[2 * t], ai = a[2 * t + 1];
      acc[2 * t] += ar * b_re[t] - ai * b_im[t];
      acc[2 * t + 1] += ar * b_im[t] + ai * b_re[t];
    }
  }
}

}  // namespace veil::tfhe
