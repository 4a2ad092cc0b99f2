// Exact conversions between int64 and f64 by the 1.5 * 2^52 constant, for |x| <= 2^51, without
// a branch and without a conversion instruction, so that they vectorise at any vector width:
// AVX2 has no packed int64 <-> f64 conversion (AVX-512DQ has; without it the compiler emits
// one scalar cvt per value, which perf measured at a quarter of a 4-bit PBS on an AMD EPYC
// without AVX-512), and baseline x86-64 has no rounding instruction (std::nearbyint there is
// a libm call per value). A double in [2^52, 2^53] holds 1.5 * 2^52 + x with x in its low
// mantissa bits, so adding or subtracting the constant's bit pattern moves between the two,
// and x + 1.5 * 2^52 - 1.5 * 2^52 is x rounded to an integer, half to even. IEEE arithmetic in
// the default rounding mode is assumed (no -ffast-math, which could fold the round trip away).
//
// Constants only: the kernel sets include this too (kernels/kernel_set.hpp's rule).
#pragma once

#include <bit>
#include <cstdint>

namespace veil::tfhe {

inline constexpr double kMagic = 0x1.8p52;
inline constexpr std::int64_t kMagicBits = 0x4338000000000000;
static_assert(std::bit_cast<std::int64_t>(kMagic) == kMagicBits);

}  // namespace veil::tfhe
