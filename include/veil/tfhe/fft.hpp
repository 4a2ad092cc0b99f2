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
// Two layouts of a spectrum (N doubles). Split: N/2 real parts followed by N/2 imaginary
// parts (`forward`, `backward`). Interleaved: (re, im) pairs, as FFTW's AVX codelets read and
// write them. The external product's spectra are all interleaved: its digits', its
// accumulator and the bootstrap key's (`forward_torus_interleaved`), so that no copy between
// layouts runs per transform (the copies were ~10 % of a PBS) and the multiply-add needs no
// lane-crossing shuffle (a split key operand against interleaved digits took four per four
// points, about a sixth of a 4-bit PBS on AVX2).
//
// Torus operands are scaled by 2^-64 into [-1/2, 1/2); products of a torus spectrum with an
// integer spectrum come back as x in torus units, and (x - round(x)) * 2^64 recovers the
// product modulo 2^64. The 11 bits f64 loses against 64 are the FFT term of the noise model.
//
// Thread safety: Fft objects are immutable after construction and shared read-only; every
// transform takes the caller's FftScratch, so any number of threads may transform at once.
#pragma once

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

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
  // The same spectrum, interleaved (a bootstrap key's layout).
  void forward_torus_interleaved(const Torus* coefficients, double* spectrum, FftScratch& scratch) const;

  // The external product's path, without copies between layouts. Signed integers of at most
  // 2^51 in magnitude (the decomposition digits) -> their spectrum, left interleaved where FFTW wrote
  // it (re, im pairs: N/2 complex values) in scratch.output(), valid until the scratch's next
  // transform.
  // With `spectrum` given (N doubles, 64-byte aligned), the transform writes there instead.
  const double* forward_integer_interleaved(const std::int64_t* coefficients, FftScratch& scratch,
                                            double* spectrum = nullptr) const;
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
  // scratch.data() <- the twisted, interleaved torus values a * 2^-64.
  void twist_torus(const Torus* a, FftScratch& scratch) const;
  void backward_to_scratch(const double* spectrum, FftScratch& scratch) const;

  std::size_t n_;
  AlignedVector<double> twist_re_, twist_im_;      // zeta^j, j < N/2
  AlignedVector<double> untwist_re_, untwist_im_;  // zeta^-j / (N/2)
  void* forward_plan_ = nullptr;
  void* backward_plan_ = nullptr;
};

// out = sum over r < rows of a_r * b_r, all interleaved spectra of `fourier_size` complex
// points, a_r at a + r * a_stride, b_r at b + r * b_stride (the rows of one output component
// of a Fourier GGSW). One pass that writes `out` once: the accumulator is not read back per
// row, which at N = 2048 (32 KiB of accumulators, Zen 3's whole L1) went to L2 and back for
// every row. When `next` is given, prefetches the same positions of it (the next GGSW of a
// bootstrap key), one cache line per 4 points and row.
inline void fourier_dot_interleaved(double* __restrict out, const double* __restrict a, std::size_t a_stride,
                                    std::size_t rows, const double* __restrict b, std::size_t b_stride,
                                    std::size_t fourier_size, const double* next = nullptr) {
  constexpr std::size_t kLine = 64 / sizeof(double);  // doubles per cache line: 4 points
  const std::size_t words = 2 * fourier_size;
  for (std::size_t base = 0; base < words; base += kLine) {
    if (next != nullptr)
      for (std::size_t r = 0; r < rows; ++r) __builtin_prefetch(next + r * b_stride + base, 0, 3);
    const std::size_t end = std::min(words, base + kLine);
    std::size_t t = base;
#if defined(__AVX2__) && defined(__FMA__)
    // Two points a vector, in-lane shuffles only: a * Re(b) + swap(a) * (-Im(b), Im(b)).
    const __m256d sign = _mm256_set_pd(0.0, -0.0, 0.0, -0.0);
    for (; t + 4 <= end; t += 4) {
      __m256d sum = _mm256_setzero_pd();
      for (std::size_t r = 0; r < rows; ++r) {
        const __m256d av = _mm256_loadu_pd(a + r * a_stride + t), bv = _mm256_loadu_pd(b + r * b_stride + t);
        const __m256d b_re = _mm256_movedup_pd(bv);                             // re0 re0 re1 re1
        const __m256d b_im = _mm256_xor_pd(_mm256_permute_pd(bv, 0xF), sign);  // -im0 im0 -im1 im1
        sum = _mm256_fmadd_pd(_mm256_permute_pd(av, 0x5), b_im, _mm256_fmadd_pd(av, b_re, sum));
      }
      _mm256_storeu_pd(out + t, sum);
    }
#endif
    for (; t + 2 <= end; t += 2) {
      double re = 0.0, im = 0.0;
      for (std::size_t r = 0; r < rows; ++r) {
        const double ar = a[r * a_stride + t], ai = a[r * a_stride + t + 1], br = b[r * b_stride + t], bi = b[r * b_stride + t + 1];
        re += ar * br - ai * bi;
        im += ar * bi + ai * br;
      }
      out[t] = re;
      out[t + 1] = im;
    }
  }
}

}  // namespace veil::tfhe
