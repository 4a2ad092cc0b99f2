// Polynomials in Z_q[X]/(X^N + 1), q = 2^64: monomial rotation, the reference schoolbook
// product, and an exact product of a torus polynomial by a small-coefficient polynomial
// (a secret key) through the FFT.
// Thread safety: free functions over caller-owned memory.
#pragma once

#include <cstddef>
#include <span>

#include "veil/tfhe/aligned.hpp"
#include "veil/tfhe/dimensions.hpp"
#include "veil/tfhe/fft.hpp"

namespace veil::tfhe {

// out = X^t * in mod X^N + 1, for t in [0, 2N). Coefficients that wrap past X^N change sign.
// REQUIRES: in.size() == out.size() == N, t < 2N, in and out do not overlap.
void multiply_by_monomial(std::span<const Torus> in, std::size_t t, std::span<Torus> out);

// out = X^t * in - in (the CMux difference of the blind rotation), same requirements; the
// stored form of map_monomial_minus_one below.
void multiply_by_monomial_minus_one(std::span<const Torus> in, std::size_t t, std::span<Torus> out);

// out[j] = f(((X^t - 1) * in)[j]) for j < N, t in [0, 2N): the difference handed straight to
// a consumer (the blind rotation's decomposition rounds it) instead of stored and read back.
// Two linear passes, which vectorise when f does.
template <class F>
inline void map_monomial_minus_one(const Torus* __restrict in, std::size_t n, std::size_t t, Torus* __restrict out, F f) {
  const bool negate = t >= n;
  t %= n;
  // (X^t * in)[j] is in[j - t] for j >= t and -in[j - t + N] below; X^N flips both signs.
  if (!negate) {
    for (std::size_t j = 0; j < t; ++j) out[j] = f(Torus{0} - in[j + n - t] - in[j]);
    for (std::size_t j = t; j < n; ++j) out[j] = f(in[j - t] - in[j]);
  } else {
    for (std::size_t j = 0; j < t; ++j) out[j] = f(in[j + n - t] - in[j]);
    for (std::size_t j = t; j < n; ++j) out[j] = f(Torus{0} - in[j - t] - in[j]);
  }
}

// out = a * b mod (X^N + 1, 2^64), O(N^2). The reference the FFT product is tested against.
void negacyclic_multiply_schoolbook(std::span<const Torus> a, std::span<const Torus> b,
                                    std::span<Torus> out);

// Exact products of arbitrary torus polynomials by one fixed polynomial with small
// coefficients (|s_j| <= 1, a binary secret key polynomial): the torus operand is cut into
// three limbs of at most 22 bits, so every limb product stays below 2^38 in magnitude and the
// f64 FFT rounds it exactly; the limbs are recombined modulo 2^64. Used by encryption, where
// an approximate product would be a wrong ciphertext.
class SmallPolynomialMultiplier {
 public:
  SmallPolynomialMultiplier(const Fft& fft, std::span<const Torus> small_polynomial);
  // out (+)= a * s. REQUIRES: a.size() == out.size() == N.
  void multiply_add(std::span<const Torus> a, std::span<Torus> out);

 private:
  const Fft& fft_;
  FftScratch scratch_;
  SecretVector<double> key_spectrum_;
  AlignedVector<double> limb_, limb_spectrum_;
  AlignedVector<Torus> product_;
};

}  // namespace veil::tfhe
