// Helpers shared by the tfhe tests.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "veil/tfhe/aligned.hpp"
#include "veil/tfhe/dimensions.hpp"

namespace veil::tfhe::testing {

// Deterministic test data (not for keys: keys come from the library's CSPRNG).
inline std::mt19937_64& test_rng() {
  static std::mt19937_64 rng(20261124);
  return rng;
}

inline AlignedVector<Torus> random_torus(std::size_t n) {
  AlignedVector<Torus> v(n);
  for (auto& x : v) x = test_rng()();
  return v;
}

// Signed distance between two torus values, in torus units (wrapping).
inline std::int64_t torus_distance(Torus a, Torus b) { return static_cast<std::int64_t>(a - b); }

}  // namespace veil::tfhe::testing
