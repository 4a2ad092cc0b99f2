// Distinct types for the dimensions of the scheme.
//
// n (an LWE dimension) and n + 1 (the number of words of an LWE ciphertext), k and k + 1,
// a base log and a level count are all small integers; giving each its own type makes
// swapping two of them a compile error instead of a silent noise blow-up.
// Thread safety: plain values.
#pragma once

#include <cstddef>
#include <cstdint>

namespace veil::tfhe {

// Torus element: Z / 2^64 Z. All arithmetic wraps.
using Torus = std::uint64_t;

#define VEIL_DIMENSION_TYPE(Name)                                          \
  struct Name {                                                            \
    std::size_t value = 0;                                                 \
    constexpr Name() = default;                                            \
    constexpr explicit Name(std::size_t v) : value(v) {}                   \
    friend constexpr bool operator==(Name, Name) = default;                \
    friend constexpr auto operator<=>(Name, Name) = default;               \
  }

// n: number of mask elements of an LWE ciphertext.
VEIL_DIMENSION_TYPE(LweDimension);
// k: number of mask polynomials of a GLWE ciphertext.
VEIL_DIMENSION_TYPE(GlweDimension);
// N: number of coefficients of a polynomial in Z_q[X]/(X^N + 1); a power of two.
VEIL_DIMENSION_TYPE(PolynomialSize);
// beta: a decomposition digit has beta bits (base B = 2^beta).
VEIL_DIMENSION_TYPE(DecompositionBaseLog);
// l: number of digits kept by a gadget decomposition.
VEIL_DIMENSION_TYPE(DecompositionLevelCount);
// d: small-key bits a multi-bit blind rotation consumes per step (1: the classical rotation).
VEIL_DIMENSION_TYPE(GroupingFactor);

#undef VEIL_DIMENSION_TYPE

// n + 1: words in one LWE ciphertext (mask then body).
constexpr std::size_t lwe_size(LweDimension n) { return n.value + 1; }
// k + 1: polynomials in one GLWE ciphertext (mask polynomials then body).
constexpr std::size_t glwe_size(GlweDimension k) { return k.value + 1; }
// k * N: dimension of the LWE key obtained by flattening a GLWE key (sample extraction).
constexpr LweDimension flattened_lwe_dimension(GlweDimension k, PolynomialSize n) {
  return LweDimension(k.value * n.value);
}

}  // namespace veil::tfhe
