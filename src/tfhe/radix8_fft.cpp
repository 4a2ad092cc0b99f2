// Radix8Fft: the Stockham transform of radix8_fft.hpp, which states the algorithm. This file
// plans the stages and their twiddles; the kernel sets run them (kernels/radix8.inc).
#include "veil/tfhe/radix8_fft.hpp"

#include <bit>
#include <cmath>
#include <numbers>
#include <stdexcept>
#include <string>

#include "kernels/kernel_set.hpp"

namespace veil::tfhe {

bool Radix8Fft::available() { return kernels::active_kernels().radix8_run != nullptr; }

Radix8Fft::Radix8Fft(std::size_t points, int sign) : sign_(sign) {
  if (points < 16 || points > 65536 || !std::has_single_bit(points))
    throw std::invalid_argument("Radix8Fft: " + std::to_string(points) + " points, need a power of two in [16, 65536]");
  if (sign != -1 && sign != 1) throw std::invalid_argument("Radix8Fft: sign " + std::to_string(sign) + ", need -1 or +1");
  const std::size_t log2 = static_cast<std::size_t>(std::countr_zero(points));
  const std::size_t first_radix = log2 % 3 == 0 ? 8 : std::size_t{1} << (log2 % 3);
  // Twiddles w_n^(r p) in long double, rounded once to f64.
  const auto twiddle = [&](std::size_t length, std::size_t exponent) {
    const long double angle = static_cast<long double>(sign) * 2 * std::numbers::pi_v<long double> *
                              static_cast<long double>(exponent) / static_cast<long double>(length);
    twiddles_.push_back(static_cast<double>(std::cos(angle)));
    twiddles_.push_back(static_cast<double>(std::sin(angle)));
  };
  std::size_t length = points, stride = 1;
  while (length > 1) {
    const bool first = stages_.empty();
    Stage stage;
    stage.radix = first ? first_radix : 8;
    stage.length = length;
    stage.stride = stride;
    stage.twiddle_offset = twiddles_.size();
    const std::size_t butterflies = length / stage.radix;
    if (first) {
      // Per pair of butterflies (p, p + 1), for r = 1 .. radix - 1: (w^(rp), w^(r(p+1))), 4 doubles.
      for (std::size_t p = 0; p < butterflies; p += 2)
        for (std::size_t r = 1; r < stage.radix; ++r) {
          twiddle(length, r * p);
          twiddle(length, r * (p + 1));
        }
    } else {
      // Per butterfly p, for r = 1 .. 7: w^(rp) as (re, im), broadcast across the lanes by the kernel.
      for (std::size_t p = 0; p < butterflies; ++p)
        for (std::size_t r = 1; r < 8; ++r) twiddle(length, r * p);
    }
    length /= stage.radix;
    stride *= stage.radix;
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
