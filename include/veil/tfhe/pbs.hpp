// Keyswitch, modulus switch, blind rotation, programmable bootstrapping (PBS) and batches.
//
// KS-PBS order: a ciphertext under the big key (dimension k*N) is keyswitched to the small key
// (n), its n+1 words are modulus-switched to Z_2N (centered: see blind_rotate), the accumulator X^(-b~) * v (v the test
// polynomial of the table) is blind-rotated by X^(a~_i * s_i) for every i, and the constant
// coefficient is sample-extracted: an LWE under the big key of table[m], ready for the next
// levelled operations.
//
// Multi-bit blind rotation (ParameterSet::grouping d = 2): the mask is taken in pairs
// (a~_2j, a~_2j+1), and X^(a~_2j s_2j + a~_2j+1 s_2j+1) = 1 + sum over b in {1, 2, 3} of
// [s_2j + 2 s_2j+1 = b] (X^(e_b) - 1), e_1 = a~_2j, e_2 = a~_2j+1, e_3 = e_1 + e_2. The
// bootstrap key holds GGSWs of the three indicators, so one step is
// ACC += sum_b (X^(e_b) - 1) (GGSW_b [x] ACC): one decomposition and k+1 backward transforms
// per pair of bits instead of per bit; the three products are summed in the Fourier domain,
// where X^e - 1 is a factor per point (Fft::monomial_minus_one_table). It costs 1.5 times the
// key and three times the GGSW-noise terms of the rotation (parameters.hpp).
//
// Test polynomial for a table f on p-bit inputs (padding bit 0): 2^p boxes of N / 2^p
// coefficients each fill the N coefficients with v[j] = f(floor(j / box)); v is then rotated
// half a box towards lower indices (what wraps is negated) so that every input lands in the
// middle of its box and noise of either sign reads the same entry.
//
// Thread safety: keys and tables are read-only and shared; every operation takes the caller's
// PbsScratch (one per thread). The batch functions take one scratch per ciphertext of a
// worker's group from a pool that outlives the call (none is allocated per PBS, nor per call
// once the pool holds them).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "veil/tfhe/entities.hpp"
#include "veil/tfhe/glwe.hpp"
#include "veil/tfhe/keys.hpp"

namespace veil::tfhe {

class LookupTable {
 public:
  // outputs[m] is the plaintext (already encoded, e.g. encode_message(f(m), p_out)) returned
  // for input message m; outputs.size() == 2^input_bits.
  // Throws std::invalid_argument unless 2^input_bits <= N / 2... N (at least one coefficient
  // per box) and outputs.size() == 2^input_bits.
  LookupTable(PolynomialSize n, unsigned input_bits, std::span<const Torus> outputs);
  // Table of f on p-bit inputs, outputs encoded with `output_bits` of precision.
  static LookupTable from_function(PolynomialSize n, unsigned input_bits, unsigned output_bits,
                                   const std::function<std::uint64_t(std::uint64_t)>& f);

  std::span<const Torus> polynomial() const { return polynomial_; }
  unsigned input_bits() const { return input_bits_; }

 private:
  unsigned input_bits_;
  AlignedVector<Torus> polynomial_;
};

// round(x * 2N / 2^64) mod 2N.
inline std::size_t modulus_switch(Torus x, std::size_t log2_2n) {
  return static_cast<std::size_t>((x + (Torus{1} << (63 - log2_2n))) >> (64 - log2_2n));
}

// Centered modulus switch of an LWE ciphertext (n + 1 words) to Z_2N: mask[i] = a~_i, returns
// the body b~, corrected so that the mask's rounding errors contribute half the classic
// variance (the derivation is in pbs.cpp; the variance in parameters.cpp).
std::size_t centered_modulus_switch(std::span<const Torus> in, std::size_t log2_2n, std::span<std::size_t> mask);

// A keyswitch's working memory, reused from call to call (no allocation once warm): the
// digits of one input word and, for the evaluation form, those of a chunk of input words
// (TruncatedKeyswitchKey::kChunkInputs) and the sums in 32-bit words.
struct KeyswitchScratch {
  std::vector<std::int64_t> digits;
  std::vector<std::int32_t> chunk_digits;
  std::vector<std::uint32_t> sums;
};

class PbsScratch {
 public:
  explicit PbsScratch(const ParameterSet& params);
  std::size_t bytes() const;

  AlignedVector<Torus> small;        // n + 1: the keyswitched ciphertext
  AlignedVector<Torus> accumulator;  // (k+1) * N
  std::vector<std::size_t> switched_mask;  // n: the mask after the modulus switch
  KeyswitchScratch keyswitch;
  ExternalProductScratch external_product;
};

// out = keyswitch of `in` (dimension k*N) to the small key (dimension n), with the exact key
// (reference) or with the evaluation form (what KS-PBS uses: 3/8 or half the memory traffic).
void keyswitch(const LweKeyswitchKey& ksk, std::span<const Torus> in, std::span<Torus> out,
               KeyswitchScratch& scratch);
void keyswitch(const TruncatedKeyswitchKey& ksk, std::span<const Torus> in, std::span<Torus> out,
               KeyswitchScratch& scratch);
// accumulator = blind rotation of the test polynomial by the small ciphertext `in`.
void blind_rotate(const FourierBootstrapKey& bsk, std::span<const Torus> in, const LookupTable& table,
                  PbsScratch& scratch);
// out (dimension k*N) = PBS of `in` (dimension n) through `table`.
void programmable_bootstrap(const FourierBootstrapKey& bsk, std::span<const Torus> in, const LookupTable& table,
                            std::span<Torus> out, PbsScratch& scratch);
// out (dimension k*N) = KS then PBS of `in` (dimension k*N). `out` may alias `in`.
void keyswitch_programmable_bootstrap(const EvaluationKeys& keys, std::span<const Torus> in,
                                      const LookupTable& table, std::span<Torus> out, PbsScratch& scratch);

struct BatchOptions {
  unsigned threads = 0;  // 0: all hardware threads
};
// out[c] = KS-PBS(in[c]) through tables[c] (or tables[0] for all when tables.size() == 1).
// REQUIRES: in and out have keys.params' big dimension and the same count; out may be in.
void keyswitch_programmable_bootstrap_batch(const EvaluationKeys& keys, const LweCiphertextList& in,
                                            std::span<const LookupTable* const> tables, LweCiphertextList& out,
                                            const BatchOptions& options = {});
// The same up to the blind rotation: accumulators[c * (k+1)N ...] = the GLWE accumulator of
// in[c] (what the PBS would sample-extract), for multi-value bootstrapping
// (sample_extract_rotated_add reads products of it by clear polynomials).
// REQUIRES: accumulators.size() == in.count() * (k+1) * N.
void keyswitch_blind_rotate_batch(const EvaluationKeys& keys, const LweCiphertextList& in,
                                  std::span<const LookupTable* const> tables, std::span<Torus> accumulators,
                                  const BatchOptions& options = {});

}  // namespace veil::tfhe
