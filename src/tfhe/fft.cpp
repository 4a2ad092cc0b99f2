#include "veil/tfhe/fft.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <mutex>
#include <numbers>
#include <stdexcept>
#include <string>

#include "int_double.hpp"
#include "kernels/kernel_set.hpp"

namespace veil::tfhe {
namespace {

constexpr std::size_t kMinLog2 = 8, kMaxLog2 = 16;

// x rounded to an integer (half to even, as std::nearbyint) modulo 2^64, for |x| <= 2^51
// (int_double.hpp): vectorised at baseline x86-64, where std::nearbyint was a libm call per
// value and 12 % of a 4-bit key generation.
inline Torus round_to_integer(double x) {
  return static_cast<Torus>(std::bit_cast<std::int64_t>(x + kMagic) - kMagicBits);
}

}  // namespace

Fft::Fft(std::size_t n) : n_(n), forward_(n / 2, -1), backward_(n / 2, 1) {
  const std::size_t half = n / 2;
  twist_re_.resize(half);
  twist_im_.resize(half);
  untwist_re_.resize(half);
  untwist_im_.resize(half);
  for (std::size_t j = 0; j < half; ++j) {
    // Angles in long double so that large N keeps full f64 accuracy in the factors.
    long double angle = std::numbers::pi_v<long double> * static_cast<long double>(j) / static_cast<long double>(n);
    double c = static_cast<double>(std::cos(angle));
    double s = static_cast<double>(std::sin(angle));
    twist_re_[j] = c;
    twist_im_[j] = s;
    untwist_re_[j] = c / static_cast<double>(half);
    untwist_im_[j] = -s / static_cast<double>(half);
  }
  monomial_minus_one_.resize(4 * n);
  for (std::size_t m = 0; m < 2 * n; ++m) {
    const long double angle = std::numbers::pi_v<long double> * static_cast<long double>(m) / static_cast<long double>(n);
    // cos - 1 as -2 sin^2(angle / 2): no cancellation near m = 0.
    const long double half_sine = std::sin(angle / 2);
    monomial_minus_one_[2 * m] = static_cast<double>(-2 * half_sine * half_sine);
    monomial_minus_one_[2 * m + 1] = static_cast<double>(std::sin(angle));
  }
}

void Fft::execute(bool forward, const double* in, double* out, FftScratch& scratch) const {
  const Radix8Fft& fft = forward ? forward_ : backward_;
  // The spare buffer: the input itself where it is scratch and the stage count allows it
  // (two buffers in L1 instead of three), else a scratch buffer that is neither in nor out.
  double* spare = scratch.data();
  if (in != scratch.data() || fft.stage_count() % 2 == 0) {
    for (double* candidate : {scratch.data(), scratch.output(), scratch.spare()})
      if (candidate != in && candidate != out) {
        spare = candidate;
        break;
      }
  }
  fft.run(in, out, spare, scratch.key_stream_prefetch());
}

const Fft& Fft::get(PolynomialSize n) {
  if (n.value == 0 || !std::has_single_bit(n.value) || n.value < (1u << kMinLog2) ||
      n.value > (1u << kMaxLog2))
    throw std::invalid_argument("polynomial size " + std::to_string(n.value) +
                                " is not a power of two in [256, 65536]");
  // Deliberately leaked: transforms live until the process exits, so no thread can ever see
  // one destroyed (static destruction order would otherwise matter).
  static std::array<Fft*, kMaxLog2 + 1> cache{};
  static std::array<std::once_flag, kMaxLog2 + 1> once;
  std::size_t log2 = static_cast<std::size_t>(std::countr_zero(n.value));
  std::call_once(once[log2], [&] { cache[log2] = new Fft(n.value); });
  return *cache[log2];
}

void Fft::forward_twisted(double* spectrum, FftScratch& scratch) const {
  const std::size_t half = n_ / 2;
  execute(true, scratch.data(), scratch.output(), scratch);
  const double* buf = scratch.output();
  double* re = spectrum;
  double* im = spectrum + half;
  for (std::size_t j = 0; j < half; ++j) {
    re[j] = buf[2 * j];
    im[j] = buf[2 * j + 1];
  }
}

void Fft::forward(const double* a, double* spectrum, FftScratch& scratch) const {
  const std::size_t half = n_ / 2;
  double* buf = scratch.data();
  for (std::size_t j = 0; j < half; ++j) {
    double x = a[j], y = a[j + half];
    buf[2 * j] = x * twist_re_[j] - y * twist_im_[j];
    buf[2 * j + 1] = x * twist_im_[j] + y * twist_re_[j];
  }
  forward_twisted(spectrum, scratch);
}

const double* Fft::forward_integer_interleaved(const std::int64_t* a, FftScratch& scratch, double* spectrum) const {
  kernels::active_kernels().twist_integers(a, n_ / 2, twist_re_.data(), twist_im_.data(), scratch.data(),
                                           scratch.key_stream_prefetch());
  double* out = spectrum != nullptr ? spectrum : scratch.output();
  execute(true, scratch.data(), out, scratch);
  return out;
}

void Fft::forward_next_digits_interleaved(Torus* state, std::size_t base_log, FftScratch& scratch, double* spectrum) const {
  kernels::active_kernels().twist_next_digits(state, base_log, n_ / 2, twist_re_.data(), twist_im_.data(), scratch.data(),
                                              scratch.key_stream_prefetch());
  execute(true, scratch.data(), spectrum, scratch);
}

void Fft::forward_first_digits_interleaved(const Torus* in, std::size_t t, bool difference, std::size_t kept,
                                           std::size_t base_log, Torus* state, FftScratch& scratch,
                                           double* spectrum) const {
  kernels::active_kernels().twist_first_digits(in, n_ / 2, t, difference, kept, base_log, state, twist_re_.data(),
                                               twist_im_.data(), scratch.data(), scratch.key_stream_prefetch());
  execute(true, scratch.data(), spectrum, scratch);
}

void Fft::twist_torus(const Torus* a, FftScratch& scratch) const {
  const std::size_t half = n_ / 2;
  double* buf = scratch.data();
  for (std::size_t j = 0; j < half; ++j) {
    double x = static_cast<double>(static_cast<std::int64_t>(a[j])) * 0x1.0p-64;
    double y = static_cast<double>(static_cast<std::int64_t>(a[j + half])) * 0x1.0p-64;
    buf[2 * j] = x * twist_re_[j] - y * twist_im_[j];
    buf[2 * j + 1] = x * twist_im_[j] + y * twist_re_[j];
  }
}

void Fft::forward_torus_interleaved(const Torus* a, double* spectrum, FftScratch& scratch) const {
  twist_torus(a, scratch);
  execute(true, scratch.data(), scratch.output(), scratch);
  std::copy(scratch.output(), scratch.output() + n_, spectrum);
}

void Fft::backward_to_scratch(const double* spectrum, FftScratch& scratch) const {
  const std::size_t half = n_ / 2;
  double* buf = scratch.data();
  const double* re = spectrum;
  const double* im = spectrum + half;
  for (std::size_t j = 0; j < half; ++j) {
    buf[2 * j] = re[j];
    buf[2 * j + 1] = im[j];
  }
  execute(false, buf, scratch.output(), scratch);
}

void Fft::backward(const double* spectrum, double* out, FftScratch& scratch) const {
  backward_to_scratch(spectrum, scratch);
  const std::size_t half = n_ / 2;
  const double* buf = scratch.output();
  for (std::size_t j = 0; j < half; ++j) {
    double x = buf[2 * j], y = buf[2 * j + 1];
    out[j] = x * untwist_re_[j] - y * untwist_im_[j];
    out[j + half] = x * untwist_im_[j] + y * untwist_re_[j];
  }
}

void Fft::backward_add_torus_interleaved(const double* spectrum, Torus* out, FftScratch& scratch) const {
  execute(false, spectrum, scratch.output(), scratch);
  kernels::active_kernels().untwist_add_torus(scratch.output(), n_ / 2, untwist_re_.data(), untwist_im_.data(), out,
                                              scratch.key_stream_prefetch());
}

void Fft::backward_round_integer(const double* spectrum, Torus* out, FftScratch& scratch) const {
  backward_to_scratch(spectrum, scratch);
  const std::size_t half = n_ / 2;
  const double* buf = scratch.output();
  for (std::size_t j = 0; j < half; ++j) {
    double x = buf[2 * j], y = buf[2 * j + 1];
    out[j] = round_to_integer(x * untwist_re_[j] - y * untwist_im_[j]);
    out[j + half] = round_to_integer(x * untwist_im_[j] + y * untwist_re_[j]);
  }
}

void multi_bit_fourier_dot(const Fft& fft, double* out, std::size_t out_stride, std::size_t parts, const double* a,
                           std::size_t a_stride, std::size_t rows, const double* block, std::size_t per_group,
                           const std::size_t* exponents) {
  if (per_group > kernels::kMaxMultiBitGroup)
    throw std::invalid_argument("multi_bit_fourier_dot: " + std::to_string(per_group) + " GGSWs a group, at most " +
                                std::to_string(kernels::kMaxMultiBitGroup));
  kernels::active_kernels().multi_bit_fourier_dot(fft.polynomial_size().value, fft.monomial_minus_one_table(), out,
                                                  out_stride, parts, a, a_stride, rows, block, per_group, exponents);
}

void fourier_dot_outputs(double* out, std::size_t out_stride, std::size_t outputs, const double* a, std::size_t a_stride,
                         std::size_t rows, const double* b, std::size_t b_row_stride, std::size_t b_out_stride,
                         std::size_t fourier_size, const double* next) {
  kernels::active_kernels().fourier_dot_outputs(out, out_stride, outputs, a, a_stride, rows, b, b_row_stride,
                                                b_out_stride, fourier_size, next);
}

}  // namespace veil::tfhe
