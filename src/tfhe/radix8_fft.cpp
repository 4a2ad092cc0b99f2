// Radix8Fft: the Stockham transform of radix8_fft.hpp, which states the algorithm. This file
// plans the stages and their twiddles; the kernel sets run them (kernels/radix8.inc).
#include "veil/tfhe/radix8_fft.hpp"

#include <bit>
#include <cmath>
#include <numbers>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/kernel_set.hpp"

namespace veil::tfhe {

bool Radix8Fft::available() { return kernels::active_kernels().radix8_run != nullptr; }

Radix8Fft::Radix8Fft(std::size_t points, int sign) : sign_(sign) {
  if (points < 16 || points > 65536 || !std::has_single_bit(points))
    throw std::invalid_argument("Radix8Fft: " + std::to_string(points) + " points, need a power of two in [16, 65536]");
  if (sign != -1 && sign != 1) throw std::invalid_argument("Radix8Fft: sign " + std::to_string(sign) + ", need -1 or +1");
  // The radices, first to last: radix 8 while 8 divides what is left, and the last stage
  // takes the rest as radix 4 or 2, or as radix 16 in place of a radix-8 stage and a radix-2
  // one up to 1024 points (one pass fewer: 0.71 against 0.80 us at 1024 points on machine D).
  // Above that its 16 streams, M bytes apart, share a cache set: at 8192 points 11.7 against
  // 11.0 us with radix 8 and 2 (AVX-512; AVX2 20.4 against 14.7).
  const std::size_t log2 = static_cast<std::size_t>(std::countr_zero(points));
  std::vector<std::size_t> radices(log2 / 3, 8);
  if (log2 % 3 == 2) radices.push_back(4);
  if (log2 % 3 == 1) {
    if (radices.size() >= 2 && points <= 1024) radices.back() = 16;
    else radices.push_back(2);
  }
  // Twiddles w_n^(r p) in long double, rounded once to f64.
  const auto twiddle = [&](std::size_t length, std::size_t exponent) {
    const long double angle = static_cast<long double>(sign) * 2 * std::numbers::pi_v<long double> *
                              static_cast<long double>(exponent) / static_cast<long double>(length);
    twiddles_.push_back(static_cast<double>(std::cos(angle)));
    twiddles_.push_back(static_cast<double>(std::sin(angle)));
  };
  std::size_t length = points, stride = 1;
  for (const std::size_t radix : radices) {
    Stage stage;
    stage.radix = radix;
    stage.length = length;
    stage.stride = stride;
    stage.twiddle_offset = twiddles_.size();
    const std::size_t butterflies = length / radix;
    if (stages_.empty()) {
      // Per group of four butterflies p .. p + 3, for r = 1 .. 7: w^(r p) .. w^(r (p + 3)),
      // 8 doubles (read as one vector of four, two or one points; a group of two butterflies
      // at 16 points is padded with the next exponents, never read).
      for (std::size_t p = 0; p < butterflies; p += 4)
        for (std::size_t r = 1; r < radix; ++r)
          for (std::size_t i = 0; i < 4; ++i) twiddle(length, r * (p + i));
    } else if (butterflies > 1) {
      // Per butterfly p, for r = 1 .. 7: w^(rp) as (re, im), broadcast across the lanes by the kernel.
      for (std::size_t p = 0; p < butterflies; ++p)
        for (std::size_t r = 1; r < radix; ++r) twiddle(length, r * p);
    }
    length /= radix;
    stride *= radix;
    stages_.push_back(stage);
  }
}

void Radix8Fft::run(const double* in, double* out, double* spare, KeyStreamPrefetch& prefetch) const {
  if (in == out || spare == out || (spare == in && stages_.size() % 2 == 0))
    throw std::invalid_argument("Radix8Fft::run: buffers overlap (in == out, spare == out, or spare == in with an even "
                                "stage count)");
  kernels::active_kernels().radix8_run(stages_.data(), stages_.size(), twiddles_.data(), sign_, in, out, spare, prefetch);
}

}  // namespace veil::tfhe
