// Signed gadget decomposition with rounding (base B = 2^beta, l levels).
//
// x is first rounded to its top beta*l bits: x~ = (x + 2^(63 - beta*l)) >> (64 - beta*l). x~ is
// cut into l digits of beta bits from the least significant; each digit is recentred into
// [-B/2, B/2) by carrying one into the next digit when it is >= B/2. Then
//   x ~= sum_{j=1..l} d_j * 2^(64 - j*beta)        (level j = 1 is the most significant).
// Signed digits halve the digits' magnitude and so the noise of every product by them.
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "veil/tfhe/dimensions.hpp"

namespace veil::tfhe {

struct Decomposer {
  std::size_t base_log;
  std::size_t level_count;

  Decomposer(DecompositionBaseLog b, DecompositionLevelCount l) : base_log(b.value), level_count(l.value) {}

  // x rounded to its top beta*l bits, kept in the low bits (x~ above).
  Torus round_to_top_bits(Torus x) const {
    const std::size_t kept = base_log * level_count;
    if (kept >= 64) return x;
    return (x + (Torus{1} << (63 - kept))) >> (64 - kept);
  }

  // Digits of one value, most significant level first: digits[0] is d_1.
  void decompose(Torus x, std::int64_t* digits) const {
    Torus state = round_to_top_bits(x);
    const Torus mask = (Torus{1} << base_log) - 1;
    const Torus half = Torus{1} << (base_log - 1);
    for (std::size_t j = level_count; j-- > 0;) {
      Torus d = state & mask;
      state >>= base_log;
      Torus carry = d >= half ? 1 : 0;
      state += carry;
      digits[j] = static_cast<std::int64_t>(d) - static_cast<std::int64_t>(carry << base_log);
    }
  }

  // A polynomial at a time, level by level: `state` holds x~ on entry and is consumed.
  // Writes the digits of level `level` (1-based), which must be called from level_count down
  // to 1 in order (the carries run upward). Vectorises over coefficients.
  void next_level_digits(std::span<Torus> state, std::int64_t* digits) const {
    const Torus mask = (Torus{1} << base_log) - 1;
    const Torus half = Torus{1} << (base_log - 1);
    for (std::size_t t = 0; t < state.size(); ++t) {
      Torus d = state[t] & mask;
      Torus carry = d >= half ? 1 : 0;
      state[t] = (state[t] >> base_log) + carry;
      digits[t] = static_cast<std::int64_t>(d) - static_cast<std::int64_t>(carry << base_log);
    }
  }
};

}  // namespace veil::tfhe
