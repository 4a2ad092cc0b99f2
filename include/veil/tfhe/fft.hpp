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
// The N/2-point transform is Veil's own Radix8Fft at every N and in every kernel set
// (veil/tfhe/isa.hpp); it carries the bootstrap-key prefetch of FftScratch. (FFTW ran
// N >= 2048 until issue 26; docs/perf-log.md, "Veil's transform at every N".)
//
// Two layouts of a spectrum (N doubles). Split: N/2 real parts followed by N/2 imaginary
// parts (`forward`, `backward`). Interleaved: (re, im) pairs, as Radix8Fft reads and writes
// them. The external product's spectra are all interleaved: its digits', its
// accumulator and the bootstrap key's (`forward_torus_interleaved`), so that no copy between
// layouts runs per transform (the copies were ~10 % of a PBS) and the multiply-add
// (`fourier_dot_outputs`) shuffles only the digits, once per row for the outputs of a pass.
//
// Torus operands are scaled by 2^-64 into [-1/2, 1/2); products of a torus spectrum with an
// integer spectrum come back as x in torus units, and (x - round(x)) * 2^64 recovers the
// product modulo 2^64. The 11 bits f64 loses against 64 are the FFT term of the noise model.
//
// Thread safety: Fft objects are immutable after construction and shared read-only; every
// transform takes the caller's FftScratch, so any number of threads may transform at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "veil/tfhe/aligned.hpp"
#include "veil/tfhe/dimensions.hpp"
#include "veil/tfhe/radix8_fft.hpp"

namespace veil::tfhe {

// Per-thread work buffers for one Fft: three arrays of N/2 interleaved complex values (the
// transforms run out of place, and need a third for their passes: Radix8Fft), and the
// key-stream prefetch cursor that the transforms run on this scratch advance.
class FftScratch {
 public:
  explicit FftScratch(PolynomialSize n) : half_words_(n.value), buffer_(3 * n.value) {}
  double* data() { return buffer_.data(); }
  double* output() { return buffer_.data() + half_words_; }
  double* spare() { return buffer_.data() + 2 * half_words_; }
  std::size_t size() const { return buffer_.size(); }

  // The transforms run on this scratch from now on prefetch [begin, begin + bytes) into L2
  // while they compute, until the range is exhausted or replaced: a blind rotation points it
  // at the bootstrap-key block of its next step. Timing only; no result changes. The
  // transforms and the passes around them advance it.
  void prefetch_during_transforms(const void* begin, std::size_t bytes) { prefetch_.reset(begin, bytes); }
  KeyStreamPrefetch& key_stream_prefetch() { return prefetch_; }

 private:
  std::size_t half_words_;
  AlignedVector<double> buffer_;
  KeyStreamPrefetch prefetch_;
};

class Fft {
 public:
  // The process-wide transform for N (a power of two in [256, 65536]); created on first use
  // (its tables once per N) and never destroyed.
  // Throws std::invalid_argument for an unsupported N.
  static const Fft& get(PolynomialSize n);

  PolynomialSize polynomial_size() const { return PolynomialSize(n_); }

  // coefficients (N doubles) -> spectrum (N doubles, split layout).
  void forward(const double* coefficients, double* spectrum, FftScratch& scratch) const;
  // Torus values scaled by 2^-64 into [-1/2, 1/2), their spectrum interleaved (a bootstrap
  // key's layout).
  void forward_torus_interleaved(const Torus* coefficients, double* spectrum, FftScratch& scratch) const;

  // Signed integers of at most 2^51 in magnitude -> their spectrum, left interleaved where the
  // transform wrote it (re, im pairs: N/2 complex values) in scratch.output(), valid until the scratch's
  // next transform. (The external product forms its digits in the same pass instead:
  // forward_next_digits_interleaved, which is checked against this.)
  // With `spectrum` given (N doubles, 64-byte aligned), the transform writes there instead.
  const double* forward_integer_interleaved(const std::int64_t* coefficients, FftScratch& scratch,
                                            double* spectrum = nullptr) const;
  // The spectrum of the next level's signed digits of a rounded polynomial, in one pass that
  // also advances it: `state` and the digits are exactly Decomposer::next_level_digits's
  // (same call order: the least significant level first), the transform that of
  // forward_integer_interleaved on those digits, written to `spectrum` (N doubles).
  // REQUIRES: 1 <= base_log <= 52.
  void forward_next_digits_interleaved(Torus* state, std::size_t base_log, FftScratch& scratch, double* spectrum) const;
  // The first call of that sequence fused with the rounding before it: the spectrum of the
  // least significant level's digits of Decomposer::round_to_top_bits (kept =
  // base_log * level_count bits) of `in` (N words), or where `difference` of the blind
  // rotation's (X^t - 1) * in (t < 2N: map_monomial_minus_one), with the next level's state
  // written to `state` (N words) unless it is null (one level: no next level). Bit for bit
  // the rounding, then forward_next_digits_interleaved; the rounded polynomial is never
  // stored.
  void forward_first_digits_interleaved(const Torus* in, std::size_t t, bool difference, std::size_t kept,
                                        std::size_t base_log, Torus* state, FftScratch& scratch, double* spectrum) const;
  // out[j] += the torus value of the product held in the interleaved `spectrum` (in torus
  // units, below 2^51 in magnitude; rounded to 2^-52 of the torus), which must be 64-byte
  // aligned (as AlignedVector storage is).
  void backward_add_torus_interleaved(const double* spectrum, Torus* out, FftScratch& scratch) const;

  // The spectrum of a polynomial A at index p (complex point p < N/2) is A(x_p), with
  // x_p = exp(i pi (1 - 4p) / N) (the twist, then the forward transform's sign, -1); so X^e multiplies it
  // by x_p^e = w^m, w = exp(i pi / N), m = (1 - 4p) e mod 2N. This table holds w^m - 1 for
  // m < 2N as 2N interleaved (re, im) pairs: the factors X^e - 1 of a multi-bit step
  // (multi_bit_fourier_dot).
  const double* monomial_minus_one_table() const { return monomial_minus_one_.data(); }

  // spectrum -> coefficients (normalised: backward(forward(a)) == a up to rounding).
  // `spectrum` is used as input only.
  void backward(const double* spectrum, double* coefficients, FftScratch& scratch) const;
  // out[j] = round(product) as an integer modulo 2^64, for products of integers that are exact
  // and at most 2^51 in magnitude (SmallPolynomialMultiplier's are below 2^39).
  void backward_round_integer(const double* spectrum, Torus* out, FftScratch& scratch) const;

  Fft(const Fft&) = delete;
  Fft& operator=(const Fft&) = delete;

 private:
  explicit Fft(std::size_t n);
  void forward_twisted(double* spectrum, FftScratch& scratch) const;
  // scratch.data() <- the twisted, interleaved torus values a * 2^-64.
  void twist_torus(const Torus* a, FftScratch& scratch) const;
  void backward_to_scratch(const double* spectrum, FftScratch& scratch) const;
  // out <- the forward or backward DFT of `in` (N/2 interleaved complex values). `in` may be
  // destroyed when it is scratch.data(); out must differ from in.
  void execute(bool forward, const double* in, double* out, FftScratch& scratch) const;

  std::size_t n_;
  AlignedVector<double> twist_re_, twist_im_;      // zeta^j, j < N/2
  AlignedVector<double> untwist_re_, untwist_im_;  // zeta^-j / (N/2)
  AlignedVector<double> monomial_minus_one_;       // w^m - 1, m < 2N, interleaved
  Radix8Fft forward_, backward_;  // N/2 points, signs -1 and +1
};

// The rows of a Fourier GGSW against the digit spectra of an external product: for every
// output component o < outputs,
//   out_o = sum over r < rows of a_r * b_(r,o),
// all interleaved spectra of `fourier_size` complex points, a_r at a + r * a_stride, b_(r,o)
// at b + r * b_row_stride + o * b_out_stride, out_o at out + o * out_stride. When `next` is
// given (laid out as b: the next GGSW of a bootstrap key), the same positions of it are
// prefetched, one cache line per 4 points, row and output. Several outputs are computed per
// pass over the digits, each output written once (src/tfhe/kernels/fourier_dot.inc says how).
// Runs on the active kernel set (veil/tfhe/isa.hpp).
void fourier_dot_outputs(double* out, std::size_t out_stride, std::size_t outputs, const double* a,
                         std::size_t a_stride, std::size_t rows, const double* b, std::size_t b_row_stride,
                         std::size_t b_out_stride, std::size_t fourier_size, const double* next = nullptr);

// The multiply-add of a multi-bit blind-rotation step: for every output component o < parts,
//   out_o = sum over b < per_group of (X^(e_b) - 1) * sum over r < rows of a_r * key_(b,r,o),
// with the digit spectra a_r at a + r * a_stride, out_o at out + o * out_stride (interleaved
// spectra of N doubles), and the key spectra in one group block of a FourierBootstrapKey
// (entities.hpp: position-blocked, key_(b,r,o) for points 2c, 2c+1 at
// ((c * per_group + b) * rows + r) * parts + o, times 4). The factor X^e - 1 is applied per
// point from fft.monomial_minus_one_table(). Each output is written once.
// REQUIRES: exponents[b] < 2N; per_group <= 7; out does not overlap a or the block.
void multi_bit_fourier_dot(const Fft& fft, double* out, std::size_t out_stride, std::size_t parts, const double* a,
                           std::size_t a_stride, std::size_t rows, const double* block, std::size_t per_group,
                           const std::size_t* exponents);

}  // namespace veil::tfhe
