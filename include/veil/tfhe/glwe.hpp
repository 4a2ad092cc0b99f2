// GLWE and GGSW encryption, the external product, CMux and sample extraction.
//
// GGSW(mu) rows (component i, level j, g_j = 2^(64 - j*beta)): every row is a GLWE
// encryption of zero with a uniform mask; for i < k its phase additionally holds
// -mu * g_j * S_i, for i = k it holds +mu * g_j. (Equivalent to adding mu*g_j to mask
// polynomial A_i, but the mask stays the pure mask stream, so seeded keys can be expanded
// without knowing mu.) The external product GGSW(mu) [x] GLWE(M) decomposes the k+1
// polynomials of the GLWE into l digit polynomials each and sums digit_(i,j) * row_(i,j):
// the phase is mu * phase(M) plus noise.
// Thread safety: a GlweEncryptor and a scratch object belong to one thread at a time.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "veil/tfhe/decomposition.hpp"
#include "veil/tfhe/entities.hpp"
#include "veil/tfhe/fft.hpp"
#include "veil/tfhe/lwe.hpp"
#include "veil/tfhe/polynomial.hpp"

namespace veil::tfhe {

// Computes GLWE bodies under one secret key (exact products through the FFT).
class GlweEncryptor {
 public:
  explicit GlweEncryptor(const GlweSecretKey& key);
  // body = sum_i mask_i * S_i + plaintext + e; `mask` holds k polynomials.
  // `plaintext` may be empty (zero).
  void compute_body(std::span<const Torus> mask, std::span<const Torus> plaintext, double std_dev, Csprng& noise,
                    std::span<Torus> body);
  // Fresh GLWE: mask from rng.mask, then the body.
  void encrypt(std::span<const Torus> plaintext, double std_dev, EncryptionRandomness& rng, GlweCiphertext& out);
  // Body of GGSW(mu) row (component, level) given its mask.
  void compute_ggsw_row_body(std::span<const Torus> mask, std::size_t component, std::size_t level, Torus mu,
                             DecompositionBaseLog base_log, double std_dev, Csprng& noise, std::span<Torus> body);
  // Whole GGSW(mu), masks drawn in row order from rng.mask.
  void encrypt_ggsw(Torus mu, double std_dev, EncryptionRandomness& rng, GgswCiphertext& out);
  const GlweSecretKey& key() const { return key_; }

 private:
  const GlweSecretKey& key_;
  std::vector<SmallPolynomialMultiplier> multipliers_;
};

// phase = B - sum A_i * S_i (exact).
AlignedVector<Torus> decrypt_glwe_phase(const GlweSecretKey& key, const GlweCiphertext& ct);

// Forward-transforms every row polynomial of a standard-domain GGSW (`ggsw.words()` words)
// into `out` (same count of doubles).
void convert_ggsw_to_fourier(const GgswShape& shape, std::span<const Torus> ggsw, double* out, FftScratch& scratch);
FourierGgswCiphertext convert_ggsw_to_fourier(const GgswCiphertext& ggsw);

// Scratch for external products of one shape; size it once per thread.
class ExternalProductScratch {
 public:
  explicit ExternalProductScratch(const GgswShape& shape);
  FftScratch fft;
  AlignedVector<Torus> state;
  AlignedVector<double> digit_spectra;  // (k+1) * l spectra, interleaved: every row's digits
  AlignedVector<double> accumulator;    // k+1 output spectra, interleaved (Fft::backward_add_torus_interleaved)
};

// out += GGSW [x] in, with the GGSW given as its Fourier rows (layout of FourierGgswCiphertext).
// `in` and `out` are GLWE ciphertexts of (k+1)*N words and must not overlap.
// `prefetch`, when not null, is a GGSW of the same shape to pull into the cache meanwhile.
void external_product_add(const GgswShape& shape, const double* fourier_ggsw, std::span<const Torus> in,
                          std::span<Torus> out, ExternalProductScratch& scratch,
                          const double* prefetch = nullptr);
// acc += GGSW [x] ((X^a - 1) * acc), a in [0, 2N): the CMux of one blind-rotation step
// (acc becomes X^a * acc where the GGSW encrypts 1). The same arithmetic as
// external_product_add on the rotated difference, without storing the difference.
void blind_rotation_step(const GgswShape& shape, const double* fourier_ggsw, std::size_t a, std::span<Torus> acc,
                         ExternalProductScratch& scratch, const double* prefetch = nullptr);
// acc += sum over b < per_group of (X^(exponents[b]) - 1) * (GGSW_b [x] acc), the GGSWs
// given as one group block of a multi-bit FourierBootstrapKey (entities.hpp): one step of a
// multi-bit blind rotation, where exactly one GGSW of the group encrypts 1 (or none, when
// the group's bits are all 0), so acc becomes X^e * acc for that GGSW's e. One
// decomposition and k+1 backward transforms for the whole group.
void multi_bit_blind_rotation_step(const GgswShape& shape, const double* group_block, std::size_t per_group,
                                   const std::size_t* exponents, std::span<Torus> acc, ExternalProductScratch& scratch);
// out = GGSW [x] in.
void external_product(const FourierGgswCiphertext& ggsw, const GlweCiphertext& in, GlweCiphertext& out,
                      ExternalProductScratch& scratch);
// c0 becomes CMux(bit, c0, c1) = c0 + GGSW(bit) [x] (c1 - c0).
void cmux(const FourierGgswCiphertext& ggsw, GlweCiphertext& c0, const GlweCiphertext& c1,
          ExternalProductScratch& scratch);

// LWE (dimension k*N, under the flattened key) of the constant coefficient of a GLWE.
void sample_extract(std::span<const Torus> glwe, GlweDimension k, PolynomialSize n, std::span<Torus> out);
// out (dimension k*N) += factor * the LWE encryption of the constant coefficient of
// X^shift * glwe (shift < N): coefficient 0 for shift 0, minus coefficient N - shift
// otherwise. Multi-value bootstrapping reads a product of an accumulator by a clear
// polynomial this way, one term per nonzero coefficient.
void sample_extract_rotated_add(std::span<const Torus> glwe, GlweDimension k, PolynomialSize n, std::size_t shift,
                                std::int64_t factor, std::span<Torus> out);

}  // namespace veil::tfhe
