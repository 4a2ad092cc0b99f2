// Radix8Fft: the Stockham transform of radix8_fft.hpp, which states the algorithm.
#include "veil/tfhe/radix8_fft.hpp"

#include <bit>
#include <cmath>
#include <numbers>
#include <stdexcept>
#include <string>

#if defined(__AVX2__) && defined(__FMA__)
#define VEIL_RADIX8_AVX2 1
#endif

namespace veil::tfhe {

bool Radix8Fft::available() {
#ifdef VEIL_RADIX8_AVX2
  return true;
#else
  return false;
#endif
}

Radix8Fft::Radix8Fft(std::size_t points, int sign) : sign_(sign) {
  if (points < 16 || points > 65536 || !std::has_single_bit(points))
    throw std::invalid_argument("Radix8Fft: " + std::to_string(points) + " points, need a power of two in [16, 65536]");
  if (sign != -1 && sign != 1) throw std::invalid_argument("Radix8Fft: sign " + std::to_string(sign) + ", need -1 or +1");
  const std::size_t log2 = static_cast<std::size_t>(std::countr_zero(points));
  const std::size_t first_radix = log2 % 3 == 0 ? 8 : std::size_t{1} << (log2 % 3);
  // Twiddles w_n^(r p) in long double, rounded once to f64.
  const auto twiddle = [&](std::size_t length, std::size_t exponent, AlignedVector<double>& out) {
    const long double angle = static_cast<long double>(sign) * 2 * std::numbers::pi_v<long double> *
                              static_cast<long double>(exponent) / static_cast<long double>(length);
    out.push_back(static_cast<double>(std::cos(angle)));
    out.push_back(static_cast<double>(std::sin(angle)));
  };
  std::size_t length = points, stride = 1;
  while (length > 1) {
    const bool first = stages_.empty();
    Stage stage;
    stage.radix = first ? first_radix : 8;
    stage.length = length;
    stage.stride = stride;
    const std::size_t butterflies = length / stage.radix;
    if (first) {
      // Per pair of butterflies (p, p + 1), for r = 1 .. radix - 1: (w^(rp), w^(r(p+1))), 4 doubles.
      for (std::size_t p = 0; p < butterflies; p += 2)
        for (std::size_t r = 1; r < stage.radix; ++r) {
          twiddle(length, r * p, stage.twiddles);
          twiddle(length, r * (p + 1), stage.twiddles);
        }
    } else {
      // Per butterfly p, for r = 1 .. 7: w^(rp) as (re, im), broadcast across the lanes by run().
      for (std::size_t p = 0; p < butterflies; ++p)
        for (std::size_t r = 1; r < 8; ++r) twiddle(length, r * p, stage.twiddles);
    }
    length /= stage.radix;
    stride *= stage.radix;
    stages_.push_back(std::move(stage));
  }
}

#ifdef VEIL_RADIX8_AVX2
namespace {

inline __m256d swap_pairs(__m256d v) { return _mm256_permute_pd(v, 0x5); }

// v * w for two complex values each (w varying per lane pair).
inline __m256d complex_multiply(__m256d v, __m256d w) {
  return _mm256_fmaddsub_pd(v, _mm256_movedup_pd(w), _mm256_mul_pd(swap_pairs(v), _mm256_permute_pd(w, 0xF)));
}

// v * (wr + i wi) with wr, wi broadcast.
inline __m256d complex_multiply(__m256d v, __m256d wr, __m256d wi) {
  return _mm256_fmaddsub_pd(v, wr, _mm256_mul_pd(swap_pairs(v), wi));
}

// The butterflies' constants for one direction: multiplication by sign*i, and w8, w8^3.
struct Butterfly {
  explicit Butterfly(int sign)
      : times_i_sign(sign < 0 ? _mm256_set_pd(-0.0, 0.0, -0.0, 0.0) : _mm256_set_pd(0.0, -0.0, 0.0, -0.0)),
        w8_re(_mm256_set1_pd(std::numbers::sqrt2 / 2)),
        w8_im(_mm256_set1_pd(sign * std::numbers::sqrt2 / 2)),
        w83_re(_mm256_set1_pd(-std::numbers::sqrt2 / 2)),
        w83_im(_mm256_set1_pd(sign * std::numbers::sqrt2 / 2)) {}

  // sign * i * v: (x + iy) * -i = y - ix forward, * i = -y + ix backward.
  __m256d rotate(__m256d v) const { return _mm256_xor_pd(swap_pairs(v), times_i_sign); }

  // In-place DFT of x[0..R), natural order out.
  template <std::size_t R>
  void dft(__m256d* x) const {
    if constexpr (R == 2) {
      const __m256d a = x[0], b = x[1];
      x[0] = _mm256_add_pd(a, b);
      x[1] = _mm256_sub_pd(a, b);
    } else if constexpr (R == 4) {
      const __m256d apc = _mm256_add_pd(x[0], x[2]), amc = _mm256_sub_pd(x[0], x[2]);
      const __m256d bpd = _mm256_add_pd(x[1], x[3]), bmd = rotate(_mm256_sub_pd(x[1], x[3]));
      x[0] = _mm256_add_pd(apc, bpd);
      x[1] = _mm256_add_pd(amc, bmd);
      x[2] = _mm256_sub_pd(apc, bpd);
      x[3] = _mm256_sub_pd(amc, bmd);
    } else {
      static_assert(R == 8);
      // Even outputs are the DFT4 of x_k + x_(k+4), odd ones that of (x_k - x_(k+4)) w8^k.
      __m256d even[4], odd[4];
      for (int k = 0; k < 4; ++k) {
        even[k] = _mm256_add_pd(x[k], x[k + 4]);
        odd[k] = _mm256_sub_pd(x[k], x[k + 4]);
      }
      odd[1] = complex_multiply(odd[1], w8_re, w8_im);
      odd[2] = rotate(odd[2]);
      odd[3] = complex_multiply(odd[3], w83_re, w83_im);
      dft<4>(even);
      dft<4>(odd);
      for (int j = 0; j < 4; ++j) {
        x[2 * j] = even[j];
        x[2 * j + 1] = odd[j];
      }
    }
  }

  __m256d times_i_sign, w8_re, w8_im, w83_re, w83_im;
};

// The first stage (stride 1), vectorised over pairs of butterflies p, p + 1.
template <std::size_t R>
void first_stage(const Butterfly& bf, std::size_t length, const double* twiddles, const double* x, double* y,
                 KeyStreamPrefetch& prefetch) {
  const std::size_t butterflies = length / R;
  for (std::size_t p = 0; p < butterflies; p += 2, twiddles += 4 * (R - 1)) {
    prefetch.step();
    __m256d v[R];
    for (std::size_t k = 0; k < R; ++k) v[k] = _mm256_load_pd(x + 2 * (p + k * butterflies));
    bf.dft<R>(v);
    for (std::size_t r = 1; r < R; ++r) v[r] = complex_multiply(v[r], _mm256_load_pd(twiddles + 4 * (r - 1)));
    // v[r] holds outputs R p + r and R (p + 1) + r; store them as consecutive pairs.
    double* o = y + 2 * R * p;
    for (std::size_t r = 0; r < R; r += 2) {
      _mm256_store_pd(o + 2 * r, _mm256_permute2f128_pd(v[r], v[r + 1], 0x20));
      _mm256_store_pd(o + 2 * R + 2 * r, _mm256_permute2f128_pd(v[r], v[r + 1], 0x31));
    }
  }
}

// A radix-8 stage of stride s >= 2, vectorised over pairs of q.
void radix8_stage(const Butterfly& bf, std::size_t length, std::size_t s, const double* twiddles, const double* x,
                  double* y, KeyStreamPrefetch& prefetch) {
  const std::size_t butterflies = length / 8;
  for (std::size_t p = 0; p < butterflies; ++p) {
    const double* t = twiddles + 14 * p;
    const double* xp = x + 2 * s * p;
    double* yp = y + 16 * s * p;
    for (std::size_t q = 0; q < 2 * s; q += 4) {
      prefetch.step();
      __m256d v[8];
      for (std::size_t k = 0; k < 8; ++k) v[k] = _mm256_load_pd(xp + 2 * s * k * butterflies + q);
      bf.dft<8>(v);
      _mm256_store_pd(yp + q, v[0]);
      if (p == 0) {  // w^0 = 1
        for (std::size_t r = 1; r < 8; ++r) _mm256_store_pd(yp + 2 * s * r + q, v[r]);
      } else {
        for (std::size_t r = 1; r < 8; ++r)
          _mm256_store_pd(yp + 2 * s * r + q, complex_multiply(v[r], _mm256_broadcast_sd(t + 2 * (r - 1)),
                                                               _mm256_broadcast_sd(t + 2 * (r - 1) + 1)));
      }
    }
  }
}

}  // namespace
#endif

void Radix8Fft::run(const double* in, double* out, double* spare, KeyStreamPrefetch& prefetch) const {
  if (in == out || spare == out || (spare == in && stages_.size() % 2 == 0))
    throw std::invalid_argument("Radix8Fft::run: buffers overlap (in == out, spare == out, or spare == in with an even "
                                "stage count)");
#ifdef VEIL_RADIX8_AVX2
  const Butterfly bf(sign_);
  // Stage i writes `out` when the stages left after it are even in number, else `spare`, so
  // the last writes `out` and no stage reads the buffer it writes.
  const double* src = in;
  const std::size_t count = stages_.size();
  for (std::size_t i = 0; i < count; ++i) {
    double* dst = (count - 1 - i) % 2 == 0 ? out : spare;
    const Stage& st = stages_[i];
    if (i == 0) {  // the stage of stride 1
      switch (st.radix) {
        case 2: first_stage<2>(bf, st.length, st.twiddles.data(), src, dst, prefetch); break;
        case 4: first_stage<4>(bf, st.length, st.twiddles.data(), src, dst, prefetch); break;
        default: first_stage<8>(bf, st.length, st.twiddles.data(), src, dst, prefetch); break;
      }
    } else {
      radix8_stage(bf, st.length, st.stride, st.twiddles.data(), src, dst, prefetch);
    }
    src = dst;
  }
#else
  (void)in;
  (void)out;
  (void)spare;
  (void)prefetch;
  (void)sign_;
  throw std::logic_error("Radix8Fft::run: built without AVX2 and FMA");
#endif
}

}  // namespace veil::tfhe
