#include "veil/tfhe/fft.hpp"

#include <fftw3.h>

#include <array>
#include <bit>
#include <cmath>
#include <mutex>
#include <numbers>
#include <stdexcept>
#include <string>

namespace veil::tfhe {
namespace {

constexpr std::size_t kMinLog2 = 8, kMaxLog2 = 16;

std::mutex& planner_mutex() {
  static std::mutex m;
  return m;
}

// Torus value of a product in torus units: (x - round(x)) * 2^64, wrapped into uint64.
inline Torus torus_from_double(double x) {
  double frac = x - std::nearbyint(x);  // in [-1/2, 1/2]
  double scaled = frac * 0x1.0p64;
  // frac == +1/2 exactly would overflow int64; both ends are the same torus point.
  if (scaled >= 0x1.0p63) scaled -= 0x1.0p64;
  return static_cast<Torus>(static_cast<std::int64_t>(scaled));
}

}  // namespace

Fft::Fft(std::size_t n) : n_(n) {
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
  // Plan out of place on 64-byte aligned buffers; FftScratch buffers have the same alignment
  // and distance, which the new-array execute functions require.
  FftScratch probe{PolynomialSize(n)};
  auto* in = reinterpret_cast<fftw_complex*>(probe.data());
  auto* out = reinterpret_cast<fftw_complex*>(probe.output());
  const int m = static_cast<int>(half);
  // FFTW_MEASURE pays a one-off planning cost per N for the fastest codelets.
  forward_plan_ = fftw_plan_dft_1d(m, in, out, FFTW_FORWARD, FFTW_MEASURE);
  backward_plan_ = fftw_plan_dft_1d(m, in, out, FFTW_BACKWARD, FFTW_MEASURE);
  if (forward_plan_ == nullptr || backward_plan_ == nullptr)
    throw std::runtime_error("FFTW could not plan a transform of size " + std::to_string(half));
}

Fft::~Fft() {
  fftw_destroy_plan(static_cast<fftw_plan>(forward_plan_));
  fftw_destroy_plan(static_cast<fftw_plan>(backward_plan_));
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
  std::call_once(once[log2], [&] {
    std::lock_guard lock(planner_mutex());
    cache[log2] = new Fft(n.value);
  });
  return *cache[log2];
}

void Fft::forward_twisted(double* spectrum, FftScratch& scratch) const {
  const std::size_t half = n_ / 2;
  fftw_execute_dft(static_cast<fftw_plan>(forward_plan_), reinterpret_cast<fftw_complex*>(scratch.data()),
                   reinterpret_cast<fftw_complex*>(scratch.output()));
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

const double* Fft::forward_integer_interleaved(const std::int64_t* a, FftScratch& scratch) const {
  const std::size_t half = n_ / 2;
  double* buf = scratch.data();
  for (std::size_t j = 0; j < half; ++j) {
    double x = static_cast<double>(a[j]), y = static_cast<double>(a[j + half]);
    buf[2 * j] = x * twist_re_[j] - y * twist_im_[j];
    buf[2 * j + 1] = x * twist_im_[j] + y * twist_re_[j];
  }
  fftw_execute_dft(static_cast<fftw_plan>(forward_plan_), reinterpret_cast<fftw_complex*>(scratch.data()),
                   reinterpret_cast<fftw_complex*>(scratch.output()));
  return scratch.output();
}

void Fft::forward_torus(const Torus* a, double* spectrum, FftScratch& scratch) const {
  const std::size_t half = n_ / 2;
  double* buf = scratch.data();
  for (std::size_t j = 0; j < half; ++j) {
    double x = static_cast<double>(static_cast<std::int64_t>(a[j])) * 0x1.0p-64;
    double y = static_cast<double>(static_cast<std::int64_t>(a[j + half])) * 0x1.0p-64;
    buf[2 * j] = x * twist_re_[j] - y * twist_im_[j];
    buf[2 * j + 1] = x * twist_im_[j] + y * twist_re_[j];
  }
  forward_twisted(spectrum, scratch);
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
  fftw_execute_dft(static_cast<fftw_plan>(backward_plan_), reinterpret_cast<fftw_complex*>(buf),
                   reinterpret_cast<fftw_complex*>(scratch.output()));
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
  // Out of place: FFTW leaves the input of a complex transform intact.
  fftw_execute_dft(static_cast<fftw_plan>(backward_plan_), reinterpret_cast<fftw_complex*>(const_cast<double*>(spectrum)),
                   reinterpret_cast<fftw_complex*>(scratch.output()));
  const std::size_t half = n_ / 2;
  const double* buf = scratch.output();
  for (std::size_t j = 0; j < half; ++j) {
    double x = buf[2 * j], y = buf[2 * j + 1];
    out[j] += torus_from_double(x * untwist_re_[j] - y * untwist_im_[j]);
    out[j + half] += torus_from_double(x * untwist_im_[j] + y * untwist_re_[j]);
  }
}

void Fft::backward_round_integer(const double* spectrum, Torus* out, FftScratch& scratch) const {
  backward_to_scratch(spectrum, scratch);
  const std::size_t half = n_ / 2;
  const double* buf = scratch.output();
  for (std::size_t j = 0; j < half; ++j) {
    double x = buf[2 * j], y = buf[2 * j + 1];
    out[j] = static_cast<Torus>(static_cast<std::int64_t>(std::nearbyint(x * untwist_re_[j] - y * untwist_im_[j])));
    out[j + half] = static_cast<Torus>(static_cast<std::int64_t>(std::nearbyint(x * untwist_im_[j] + y * untwist_re_[j])));
  }
}

}  // namespace veil::tfhe
