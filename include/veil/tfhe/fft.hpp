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
// Spectra are stored split: N/2 real parts followed by N/2 imaginary parts ("FourierPolynomial
// layout", N doubles), which makes the pointwise multiply-accumulate of the external product a
// plain FMA loop. The transforms themselves run on FFTW's interleaved AVX codelets.
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
  // Signed integers (e.g. decomposition digits), exact in f64.
  void forward_integer(const std::int64_t* coefficients, double* spectrum, FftScratch& scratch) const;
  // Torus values scaled by 2^-64 into [-1/2, 1/2).
  void forward_torus(const Torus* coefficients, double* spectrum, FftScratch& scratch) const;

  // spectrum -> coefficients (normalised: backward(forward(a)) == a up to rounding).
  // `spectrum` is used as input only.
  void backward(const double* spectrum, double* coefficients, FftScratch& scratch) const;
  // out[j] += the torus value of the product held in `spectrum` (which is in torus units).
  void backward_add_torus(const double* spectrum, Torus* out, FftScratch& scratch) const;
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

// acc += a * b for split spectra of `fourier_size` = N/2 points.
inline void fourier_multiply_add(double* __restrict acc, const double* __restrict a,
                                 const double* __restrict b, std::size_t fourier_size) {
  double* acc_re = acc;
  double* acc_im = acc + fourier_size;
  const double* a_re = a;
  const double* a_im = a + fourier_size;
  const double* b_re = b;
  const double* b_im = b + fourier_size;
  for (std::size_t t = 0; t < fourier_size; ++t) {
    acc_re[t] += a_re[t] * b_re[t] - a_im[t] * b_im[t];
    acc_im[t] += a_re[t] * b_im[t] + a_im[t] * b_re[t];
  }
}

// The same, while prefetching `next` (a spectrum of the same size, usually the same position
// in the next GGSW of a bootstrap key) into the cache: a blind rotation streams its key once
// and would otherwise stall on every row.
inline void fourier_multiply_add_prefetch(double* __restrict acc, const double* __restrict a,
                                          const double* __restrict b, std::size_t fourier_size,
                                          const double* next) {
  double* acc_re = acc;
  double* acc_im = acc + fourier_size;
  const double* a_re = a;
  const double* a_im = a + fourier_size;
  const double* b_re = b;
  const double* b_im = b + fourier_size;
  constexpr std::size_t kLine = 64 / sizeof(double);
  for (std::size_t base = 0; base < fourier_size; base += kLine) {
    __builtin_prefetch(next + base, 0, 3);
    __builtin_prefetch(next + fourier_size + base, 0, 3);
    const std::size_t end = std::min(fourier_size, base + kLine);
    for (std::size_t t = base; t < end; ++t) {
      acc_re[t] += a_re[t] * b_re[t] - a_im[t] * b_im[t];
      acc_im[t] += a_re[t] * b_im[t] + a_im[t] * b_re[t];
    }
  }
}

}  // namespace veil::tfhe
