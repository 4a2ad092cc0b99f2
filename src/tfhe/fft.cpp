#include "veil/tfhe/fft.hpp"

#include <fftw3.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define VEIL_FFT_AVX2 1
#endif

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <mutex>
#include <numbers>
#include <stdexcept>
#include <string>
#include <utility>

namespace veil::tfhe {
namespace {

constexpr std::size_t kMinLog2 = 8, kMaxLog2 = 16;

std::mutex& planner_mutex() {
  static std::mutex m;
  return m;
}

// Conversions between int64 and f64 by the 1.5 * 2^52 constant, exact for |x| <= 2^51 and
// written without a branch so that they vectorise on AVX2, which has no packed int64 <-> f64
// conversion (AVX-512DQ has; without it the compiler emits one scalar cvt per value, which
// perf measured at a quarter of a 4-bit PBS on an AMD EPYC without AVX-512). A double in
// [2^52, 2^53] holds 1.5 * 2^52 + x with x in its low mantissa bits, so adding or subtracting
// the constant's bit pattern moves between the two. IEEE arithmetic in the default rounding
// mode is assumed (no -ffast-math, which could fold the round trip away).
constexpr double kMagic = 0x1.8p52;
constexpr std::int64_t kMagicBits = std::bit_cast<std::int64_t>(kMagic);

// x exactly, for |x| <= 2^51 (decomposition digits are below 2^31).
inline double double_from_small_int(std::int64_t x) { return std::bit_cast<double>(x + kMagicBits) - kMagic; }

// Torus value of a product in torus units, |x| < 2^51: (x - round(x)) * 2^64 wrapped into
// uint64, rounded to a multiple of 2^12 (2^-52 of the torus): an error of at most 2^-53 of
// the torus, a variance of 2^-108, against an FFT term (the noise model's) of 2^-62 or more in
// every set the optimizer can choose.
inline Torus torus_from_double(double x) {
  const double frac = x - ((x + kMagic) - kMagic);  // x - round(x), in [-1/2, 1/2]
  // round(frac * 2^52) in [-2^51, 2^51]; +-1/2 give +-2^63 after the shift, one torus point.
  const std::int64_t scaled = std::bit_cast<std::int64_t>(frac * 0x1.0p52 + kMagic) - kMagicBits;
  return static_cast<Torus>(scaled) << 12;
}

// The passes around the transforms advance the key-stream prefetch (KeyStreamPrefetch) once
// per this many points, about the rate of the transforms' butterflies. On the 4-bit
// multi-bit PBS (machine B, three alternations of three repetitions) the backward pass's
// prefetches took the median from 7.50 to 7.21 ms, the forward pass's as well to 7.02.
constexpr std::size_t kPassPointsPerPrefetch = 8;

// buf <- (x_j + i*y_j) * zeta^j for j < half, interleaved, where (x_j, y_j) are the real
// inputs of coefficients j and j + N/2: `four(j)` yields them four at a time (two __m256d) on
// AVX2, `one(j)` one at a time for the rest (everything without AVX2).
template <class Four, class One>
inline void twist_interleave(const double* twist_re, const double* twist_im, std::size_t half, double* buf, const Four& four,
                             const One& one, KeyStreamPrefetch& prefetch) {
  std::size_t j = 0;
#ifdef VEIL_FFT_AVX2
  for (; j + 4 <= half; j += 4) {
    if (j % kPassPointsPerPrefetch == 0) prefetch.step();
    const auto [x, y] = four(j);
    const __m256d tr = _mm256_load_pd(twist_re + j), ti = _mm256_load_pd(twist_im + j);
    const __m256d re = _mm256_fmsub_pd(x, tr, _mm256_mul_pd(y, ti));
    const __m256d im = _mm256_fmadd_pd(x, ti, _mm256_mul_pd(y, tr));
    const __m256d lo = _mm256_unpacklo_pd(re, im), hi = _mm256_unpackhi_pd(re, im);  // pairs 0, 2 and 1, 3
    _mm256_store_pd(buf + 2 * j, _mm256_permute2f128_pd(lo, hi, 0x20));
    _mm256_store_pd(buf + 2 * j + 4, _mm256_permute2f128_pd(lo, hi, 0x31));
  }
#else
  (void)four;
  (void)prefetch;
#endif
  for (; j < half; ++j) {
    const auto [x, y] = one(j);
    buf[2 * j] = x * twist_re[j] - y * twist_im[j];
    buf[2 * j + 1] = x * twist_im[j] + y * twist_re[j];
  }
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
  monomial_minus_one_.resize(4 * n);
  for (std::size_t m = 0; m < 2 * n; ++m) {
    const long double angle = std::numbers::pi_v<long double> * static_cast<long double>(m) / static_cast<long double>(n);
    // cos - 1 as -2 sin^2(angle / 2): no cancellation near m = 0.
    const long double half_sine = std::sin(angle / 2);
    monomial_minus_one_[2 * m] = static_cast<double>(-2 * half_sine * half_sine);
    monomial_minus_one_[2 * m + 1] = static_cast<double>(std::sin(angle));
  }
  if (Radix8Fft::available() && n <= kRadix8MaxPolynomialSize) {
    radix8_forward_.emplace(half, -1);
    radix8_backward_.emplace(half, 1);
    return;
  }
  // Plan out of place on 64-byte aligned buffers; FftScratch buffers have the same alignment,
  // which the new-array execute functions require.
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
  if (forward_plan_ != nullptr) fftw_destroy_plan(static_cast<fftw_plan>(forward_plan_));
  if (backward_plan_ != nullptr) fftw_destroy_plan(static_cast<fftw_plan>(backward_plan_));
}

void Fft::execute(bool forward, const double* in, double* out, FftScratch& scratch) const {
  const std::optional<Radix8Fft>& radix8 = forward ? radix8_forward_ : radix8_backward_;
  if (radix8) {
    // The spare buffer: the input itself where it is scratch and the stage count allows it
    // (two buffers in L1 instead of three), else a scratch buffer that is neither in nor out.
    double* spare = scratch.data();
    if (in != scratch.data() || radix8->stage_count() % 2 == 0) {
      for (double* candidate : {scratch.data(), scratch.output(), scratch.spare()})
        if (candidate != in && candidate != out) {
          spare = candidate;
          break;
        }
    }
    radix8->run(in, out, spare, scratch.key_stream_prefetch());
    return;
  }
  // Out of place: FFTW leaves the input of a complex transform intact.
  fftw_execute_dft(static_cast<fftw_plan>(forward ? forward_plan_ : backward_plan_),
                   reinterpret_cast<fftw_complex*>(const_cast<double*>(in)), reinterpret_cast<fftw_complex*>(out));
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
  const std::size_t half = n_ / 2;
#ifdef VEIL_FFT_AVX2
  const __m256i magic_bits = _mm256_set1_epi64x(kMagicBits);
  const __m256d magic = _mm256_set1_pd(kMagic);
  const auto exact = [&](const std::int64_t* p) {
    return _mm256_sub_pd(_mm256_castsi256_pd(_mm256_add_epi64(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)), magic_bits)),
                         magic);
  };
  const auto four = [&](std::size_t j) { return std::pair{exact(a + j), exact(a + j + half)}; };
#else
  const auto four = nullptr;
#endif
  twist_interleave(twist_re_.data(), twist_im_.data(), half, scratch.data(), four, [&](std::size_t j) {
    return std::pair{double_from_small_int(a[j]), double_from_small_int(a[j + half])};
  }, scratch.key_stream_prefetch());
  double* out = spectrum != nullptr ? spectrum : scratch.output();
  execute(true, scratch.data(), out, scratch);
  return out;
}

void Fft::forward_next_digits_interleaved(Torus* state, std::size_t base_log, FftScratch& scratch, double* spectrum) const {
  const std::size_t half = n_ / 2;
  const Torus mask = (Torus{1} << base_log) - 1;
#ifdef VEIL_FFT_AVX2
  const __m256i magic_bits = _mm256_set1_epi64x(kMagicBits);
  const __m256d magic = _mm256_set1_pd(kMagic);
  const __m256i mask_v = _mm256_set1_epi64x(static_cast<std::int64_t>(mask));
  const __m128i base = _mm_cvtsi64_si128(static_cast<long long>(base_log));
  const __m128i base_less_one = _mm_cvtsi64_si128(static_cast<long long>(base_log - 1));
  // Digit d = s & mask, recentred by a carry of its top bit (d >= B/2); then exact to f64.
  const auto next_digits = [&](Torus* p) {
    const __m256i s = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    const __m256i d = _mm256_and_si256(s, mask_v);
    const __m256i carry = _mm256_srl_epi64(d, base_less_one);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm256_add_epi64(_mm256_srl_epi64(s, base), carry));
    const __m256i digit = _mm256_sub_epi64(d, _mm256_sll_epi64(carry, base));
    return _mm256_sub_pd(_mm256_castsi256_pd(_mm256_add_epi64(digit, magic_bits)), magic);
  };
  const auto four = [&](std::size_t j) { return std::pair{next_digits(state + j), next_digits(state + j + half)}; };
#else
  const auto four = nullptr;
#endif
  const auto next_digit = [&](Torus& s) {
    const Torus d = s & mask;
    const Torus carry = d >> (base_log - 1);
    s = (s >> base_log) + carry;
    return double_from_small_int(static_cast<std::int64_t>(d) - static_cast<std::int64_t>(carry << base_log));
  };
  twist_interleave(twist_re_.data(), twist_im_.data(), half, scratch.data(), four, [&](std::size_t j) {
    return std::pair{next_digit(state[j]), next_digit(state[j + half])};
  }, scratch.key_stream_prefetch());
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

void Fft::forward_torus(const Torus* a, double* spectrum, FftScratch& scratch) const {
  twist_torus(a, scratch);
  forward_twisted(spectrum, scratch);
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
  const std::size_t half = n_ / 2;
  const double* buf = scratch.output();
  std::size_t j = 0;
#ifdef VEIL_FFT_AVX2
  // Four values a time: de-interleave, untwist, torus_from_double, add.
  const __m256i magic_bits = _mm256_set1_epi64x(kMagicBits);
  const __m256d magic = _mm256_set1_pd(kMagic), scale = _mm256_set1_pd(0x1.0p52);
  const auto to_torus = [&](__m256d v) {
    const __m256d frac = _mm256_sub_pd(v, _mm256_sub_pd(_mm256_add_pd(v, magic), magic));
    return _mm256_slli_epi64(_mm256_sub_epi64(_mm256_castpd_si256(_mm256_fmadd_pd(frac, scale, magic)), magic_bits), 12);
  };
  KeyStreamPrefetch& prefetch = scratch.key_stream_prefetch();
  for (; j + 4 <= half; j += 4) {
    if (j % kPassPointsPerPrefetch == 0) prefetch.step();
    const __m256d p0 = _mm256_load_pd(buf + 2 * j), p1 = _mm256_load_pd(buf + 2 * j + 4);
    // unpack gives the pairs in the order 0, 2, 1, 3; 0xD8 restores 0, 1, 2, 3.
    const __m256d x = _mm256_permute4x64_pd(_mm256_unpacklo_pd(p0, p1), 0xD8);
    const __m256d y = _mm256_permute4x64_pd(_mm256_unpackhi_pd(p0, p1), 0xD8);
    const __m256d ur = _mm256_load_pd(untwist_re_.data() + j), ui = _mm256_load_pd(untwist_im_.data() + j);
    const __m256d re = _mm256_fmsub_pd(x, ur, _mm256_mul_pd(y, ui));
    const __m256d im = _mm256_fmadd_pd(x, ui, _mm256_mul_pd(y, ur));
    auto* o_re = reinterpret_cast<__m256i*>(out + j);
    auto* o_im = reinterpret_cast<__m256i*>(out + j + half);
    _mm256_storeu_si256(o_re, _mm256_add_epi64(_mm256_loadu_si256(o_re), to_torus(re)));
    _mm256_storeu_si256(o_im, _mm256_add_epi64(_mm256_loadu_si256(o_im), to_torus(im)));
  }
#endif
  for (; j < half; ++j) {
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

namespace {

constexpr std::size_t kMaxMultiBitGroup = 7;
// How far ahead (in chunks of 2 points) the multi-bit multiply-add prefetches its key block:
// 2, 4, 8 and 16 were measured, 4 streamed fastest.
constexpr std::size_t kMultiBitPrefetchChunks = 4;

// multi_bit_fourier_dot for outputs [first, first + kOutputs) of `parts`.
template <std::size_t kOutputs>
void multi_bit_dot_pass(std::size_t n, const double* table, double* out, std::size_t out_stride, std::size_t first,
                        std::size_t parts, const double* a, std::size_t a_stride, std::size_t rows, const double* block,
                        std::size_t per_group, const std::size_t* exponents) {
  const std::size_t mask = 2 * n - 1;
  const std::size_t chunk_words = per_group * rows * parts * 4;
  // Table index of point 2c for each b, advanced by -8 e_b per chunk (two points of -4 e_b).
  std::array<std::size_t, kMaxMultiBitGroup> m{};
  for (std::size_t b = 0; b < per_group; ++b) m[b] = exponents[b] & mask;
#ifdef VEIL_FFT_AVX2
  const __m256d odd_sign = _mm256_set_pd(-0.0, 0.0, -0.0, 0.0);
  for (std::size_t c = 0; c < n / 4; ++c) {
    const double* key = block + c * chunk_words;
    // The block is one sequential stream, which the hardware prefetcher alone followed at
    // 11-15 GB/s on machine B; asking for the chunk kMultiBitPrefetchChunks ahead raised it to
    // 17-18 GB/s (BENCHMARKS.md). Within the block only: the next group's block is fetched
    // by the same means once its own rotation step starts. In a blind rotation most of the
    // block is in L2 by then: the step before prefetched it during its transforms.
    if (c + kMultiBitPrefetchChunks < n / 4)
      for (std::size_t w = 0; w < chunk_words; w += 8)
        _mm_prefetch(reinterpret_cast<const char*>(key + kMultiBitPrefetchChunks * chunk_words + w), _MM_HINT_T0);
    // u, v: sums whose adjacent lanes add to the (re, im) of the output, so the horizontal
    // add runs once per output and chunk instead of once per GGSW.
    __m256d u[kOutputs], v[kOutputs];
    for (std::size_t o = 0; o < kOutputs; ++o) u[o] = v[o] = _mm256_setzero_pd();
    for (std::size_t b = 0; b < per_group; ++b) {
      // p = sum a' * key with a' = a, odd lanes negated; q = sum swap(a) * key: the product's
      // (re, im) = (p0 + p1, q0 + q1).
      __m256d p[kOutputs], q[kOutputs];
      for (std::size_t o = 0; o < kOutputs; ++o) p[o] = q[o] = _mm256_setzero_pd();
      for (std::size_t r = 0; r < rows; ++r) {
        const __m256d av = _mm256_loadu_pd(a + r * a_stride + 4 * c);
        const __m256d pv = _mm256_xor_pd(av, odd_sign);
        const __m256d sv = _mm256_permute_pd(av, 0x5);
        const double* kr = key + ((b * rows + r) * parts + first) * 4;
        for (std::size_t o = 0; o < kOutputs; ++o) {
          const __m256d kv = _mm256_load_pd(kr + 4 * o);
          p[o] = _mm256_fmadd_pd(pv, kv, p[o]);
          q[o] = _mm256_fmadd_pd(sv, kv, q[o]);
        }
      }
      const std::size_t e = exponents[b];
      const std::size_t m0 = m[b], m1 = (m0 - 4 * e) & mask;
      m[b] = (m0 - 8 * e) & mask;
      const __m256d w = _mm256_set_m128d(_mm_load_pd(table + 2 * m1), _mm_load_pd(table + 2 * m0));
      const __m256d wr = _mm256_movedup_pd(w), wi = _mm256_permute_pd(w, 0xF);
      // w * product: re = wr (p0 + p1) - wi (q0 + q1), im = wr (q0 + q1) + wi (p0 + p1).
      for (std::size_t o = 0; o < kOutputs; ++o) {
        u[o] = _mm256_fnmadd_pd(wi, q[o], _mm256_fmadd_pd(wr, p[o], u[o]));
        v[o] = _mm256_fmadd_pd(wi, p[o], _mm256_fmadd_pd(wr, q[o], v[o]));
      }
    }
    for (std::size_t o = 0; o < kOutputs; ++o) _mm256_storeu_pd(out + o * out_stride + 4 * c, _mm256_hadd_pd(u[o], v[o]));
  }
#else
  for (std::size_t point = 0; point < n / 2; ++point) {
    const std::size_t c = point / 2, lane = 2 * (point % 2);
    const double* key = block + c * chunk_words + lane;
    double acc_re[kOutputs] = {}, acc_im[kOutputs] = {};
    for (std::size_t b = 0; b < per_group; ++b) {
      const std::size_t index = (exponents[b] - 4 * point * exponents[b]) & mask;
      const double wr = table[2 * index], wi = table[2 * index + 1];
      for (std::size_t o = 0; o < kOutputs; ++o) {
        double re = 0.0, im = 0.0;
        for (std::size_t r = 0; r < rows; ++r) {
          const double* kv = key + ((b * rows + r) * parts + first + o) * 4;
          const double ar = a[r * a_stride + 2 * point], ai = a[r * a_stride + 2 * point + 1];
          re += ar * kv[0] - ai * kv[1];
          im += ar * kv[1] + ai * kv[0];
        }
        acc_re[o] += wr * re - wi * im;
        acc_im[o] += wr * im + wi * re;
      }
    }
    for (std::size_t o = 0; o < kOutputs; ++o) {
      out[o * out_stride + 2 * point] = acc_re[o];
      out[o * out_stride + 2 * point + 1] = acc_im[o];
    }
  }
  (void)m;
#endif
}

}  // namespace

void multi_bit_fourier_dot(const Fft& fft, double* out, std::size_t out_stride, std::size_t parts, const double* a,
                           std::size_t a_stride, std::size_t rows, const double* block, std::size_t per_group,
                           const std::size_t* exponents) {
  if (per_group > kMaxMultiBitGroup)
    throw std::invalid_argument("multi_bit_fourier_dot: " + std::to_string(per_group) + " GGSWs a group, at most " +
                                std::to_string(kMaxMultiBitGroup));
  const std::size_t n = fft.polynomial_size().value;
  const double* table = fft.monomial_minus_one_table();
  // Three outputs a pass keep the accumulators, sums and operands in the 16 ymm registers.
  for (std::size_t first = 0; first < parts;) {
    const std::size_t count = std::min<std::size_t>(parts - first, 3);
    double* o = out + first * out_stride;
    switch (count) {
      case 3: multi_bit_dot_pass<3>(n, table, o, out_stride, first, parts, a, a_stride, rows, block, per_group, exponents); break;
      case 2: multi_bit_dot_pass<2>(n, table, o, out_stride, first, parts, a, a_stride, rows, block, per_group, exponents); break;
      default: multi_bit_dot_pass<1>(n, table, o, out_stride, first, parts, a, a_stride, rows, block, per_group, exponents); break;
    }
    first += count;
  }
}

}  // namespace veil::tfhe
