// TFHE parameter sets: what they are, whether they are secure, how much noise they leave,
// and how to choose the cheapest one for a given precision and error target.
//
// All standard deviations and variances are relative to q = 2^64 (torus units): a standard
// deviation of 2^-20 means 2^44 in integer units. The formulas are the Concrete optimizer /
// TFHE-rs noise model, stated once in parameters.cpp (docs/design.md, "Noise and parameters").
// Thread safety: pure functions over values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "veil/tfhe/dimensions.hpp"

namespace veil::tfhe {

// One parameter set for KS-PBS: ciphertexts between lookups are LWE under the flattened
// GLWE key (dimension k*N); a lookup keyswitches to the small key (n), modulus-switches to 2N,
// blind-rotates with the bootstrap key and sample-extracts back under the big key.
struct ParameterSet {
  std::string name;                     // for humans; not part of id()
  unsigned message_bits = 0;            // p: precision of a lookup input, padding bit excluded
  LweDimension lwe_dimension;           // n, the small key
  GlweDimension glwe_dimension;         // k
  PolynomialSize polynomial_size;       // N
  double lwe_std_dev = 0;               // noise of keyswitch-key encryptions under the small key
  double glwe_std_dev = 0;              // noise of fresh ciphertexts and bootstrap-key encryptions
  DecompositionBaseLog pbs_base_log;
  DecompositionLevelCount pbs_level_count;
  DecompositionBaseLog ks_base_log;
  DecompositionLevelCount ks_level_count;
  // Multi-bit blind rotation (pbs.hpp): d = 1 is the classical rotation, one GGSW per bit of
  // the small key; d = 2 consumes the bits in pairs, with three GGSWs per pair (1.5 times the
  // key) and half the external products. n must be a multiple of d.
  GroupingFactor grouping{1};
  // Packed answers (packing.hpp): 0 = none. Otherwise a server packs a row's outputs, LWE
  // ciphertexts under the big key, into one GLWE ciphertext of answer_polynomial_size N'
  // coefficients and dimension k' by a packing keyswitch of base 2^answer_base_log and
  // answer_level_count levels, whose key is part of the evaluation keys. The answer key has
  // k'N' coefficients and noise answer_std_dev; answer_key_dimension = 0 stands for k' = k*N /
  // N' and answer_std_dev = 0 for glwe_std_dev (the big key's length and noise: format 1.3's
  // only choice, and the ids those sets have). A shorter key at the noise the security curve
  // asks for its length makes a shorter answer (circuit::plan_answer_packing).
  PolynomialSize answer_polynomial_size{0};
  DecompositionBaseLog answer_base_log{0};
  DecompositionLevelCount answer_level_count{0};
  GlweDimension answer_key_dimension{0};
  double answer_std_dev = 0;
  // Bits of every bootstrap-key body (its top bits, rounded) that a client sends and a server
  // keys with. 0 stands for bootstrap_key_body_bits(glwe_std_dev), the rule of format 1.4 and
  // earlier (rounding adds at most 1/16 of the key's own noise: 51 bits at 2^-49.95); the
  // optimizer sets bootstrap_key_body_bits_for_noise's fewer bits (rounding adds at most 1/16
  // of an external product's noise, which the FFT and the decomposition dominate) unless
  // their noise would make it choose a slower set. Counted by the noise model either way.
  unsigned bsk_body_bits = 0;

  bool packs_answers() const { return answer_polynomial_size.value != 0; }
  // k': the answer GLWE's dimension (0 without packing).
  GlweDimension answer_glwe_dimension() const {
    if (!packs_answers()) return GlweDimension(0);
    return answer_key_dimension.value != 0 ? answer_key_dimension
                                           : GlweDimension(big_lwe_dimension().value / answer_polynomial_size.value);
  }
  // k'N': the answer key's length, the mask of a packed answer (0 without packing).
  LweDimension answer_lwe_dimension() const {
    return flattened_lwe_dimension(answer_glwe_dimension(), answer_polynomial_size);
  }
  // The answer key's noise (0 without packing).
  double answer_noise() const {
    if (!packs_answers()) return 0.0;
    return answer_std_dev != 0.0 ? answer_std_dev : glwe_std_dev;
  }

  // The bootstrap key bodies' bits: bsk_body_bits, or the format-1.4 rule where it is 0.
  unsigned bootstrap_key_bits() const;

  // The flattened GLWE dimension k*N: ciphertexts between lookups have this dimension.
  LweDimension big_lwe_dimension() const {
    return flattened_lwe_dimension(glwe_dimension, polynomial_size);
  }
  // A 64-bit digest of every field except `name` (SHA-256 of a canonical encoding; grouping
  // enters it only when it is not 1, the answer-packing fields only when packing is on, and
  // answer_key_dimension, answer_std_dev and bsk_body_bits only when not 0, so that every
  // set keeps the id it had in the format it came from).
  // Serialized keys and ciphertexts carry it; loading compares it.
  std::uint64_t id() const;
  // Structural validity: N a power of two in [256, 65536], 1 <= message_bits <= 8,
  // base_log * level_count <= 64 for both decompositions, n >= 1, k >= 1, positive noise,
  // grouping 1 or 2 and a divisor of n; answer packing off (all five fields 0) or N' a power
  // of two dividing k*N with a decomposition as above, k'N' below k*N (0 stands for k*N) and at most 2^20, and
  // answer_std_dev 0 or in (0, 1); a k'N' of k*N itself is written 0; bsk_body_bits 0 or in
  // [16, bootstrap_key_body_bits(glwe_std_dev)) (the rule's own count is written 0).
  // Throws std::invalid_argument naming the offending field and value.
  void validate() const;
  // One line: "name: p=4 n=863 k=1 N=2048 pbs=2^23x1 ks=2^3x5 ...".
  std::string describe() const;

  friend bool operator==(const ParameterSet&, const ParameterSet&) = default;
};

// ---- Security (lattice-estimator curve for q = 2^64, binary keys) ----

// Smallest secure log2(std_dev) for a key of `dimension` at `security_bits` (128 or 132).
// Below dimension 450 no noise is secure: returns +infinity.
double min_secure_log2_std_dev(std::size_t dimension, unsigned security_bits = 128);

struct SecurityCheck {
  bool secure = false;
  std::string detail;  // names the key that fails and by how much, or "secure"
};
// The small LWE key (n, lwe_std_dev), the GLWE key (k*N, glwe_std_dev) and, where the set
// packs answers, the answer key (k'N', answer_noise()) must meet the curve.
SecurityCheck check_security(const ParameterSet& params, unsigned security_bits = 128);

// ---- Noise model ----
// sq_norm2 is nu^2 = sum of w_i^2 of the clear weights of the dot product feeding a lookup.
struct NoiseBreakdown {
  double fresh = 0;            // glwe_std_dev^2: a fresh encryption under the big key
  double keyswitch = 0;        // Var_KS, big key -> small key
  double modulus_switch = 0;   // Var_MS, to 2N
  double blind_rotation = 0;   // Var_BR: the output of a PBS (including the FFT term)
  double fft = 0;              // the FFT part of Var_BR (already included in it)
  double bsk_rounding = 0;     // the part of Var_BR from the key bodies' rounding to
                               // ParameterSet::bootstrap_key_bits() (already included in it)
};
NoiseBreakdown noise_breakdown(const ParameterSet& params);

// The individual terms behind noise_breakdown, exposed so that the optimizer can evaluate
// them without building whole parameter sets. Same units (relative to q^2).
// Keyswitch from `input_dimension` with a key of noise ksk_std_dev (output modulus q).
// With `output_dimension` n given, includes the rounding of the evaluation-form keyswitch key
// to the top b = keyswitch_key_word_bits(n, ksk_std_dev) bits of every word
// (TruncatedKeyswitchKey): (n/2 + 1) * n_in * l * E[d^2] * 2^-2b / 12.
// Bits kept per word of the evaluation-form keyswitch key of a small key of dimension n and
// noise ksk_std_dev: 24 where rounding to them adds at most 1/16 of the key's own noise
// (both terms scale as n_in * l * E[d^2], so the test is (n/2 + 1) 2^-48 / 12 <=
// ksk_std_dev^2 / 16, independent of the big key and the decomposition), 32 otherwise.
// 24-bit words take a quarter off the keyswitch's memory traffic. The optimizer's sets get
// them up to 4 bits (5 classical) at p_error 2^-40 and up to 6 bits at 6.3e-5; the 6-bit
// sets at 2^-40 and every 7- and 8-bit set have small keys too quiet for them.
unsigned keyswitch_key_word_bits(LweDimension output_dimension, double ksk_std_dev);
double keyswitch_variance(LweDimension input_dimension, double ksk_std_dev,
                          DecompositionBaseLog base_log, DecompositionLevelCount level_count,
                          LweDimension output_dimension = LweDimension(0));
// Bits of every seeded bootstrap-key body that a client sends and a server keys with where
// the set's bsk_body_bits is 0 (format 1.4's only rule; ParameterSet::bootstrap_key_bits()):
// its top b bits, rounded (generate_seeded_bootstrap_key rounds, serialization packs them). b is the
// fewest bits whose rounding, uniform of variance 2^(-2b)/12, adds at most 1/16 of the key's
// own noise (the criterion of keyswitch_key_word_bits), 64 where none below does; the
// rounding is a public function of each body, so it costs no security, and
// external_product_variance counts it: 51 bits at the usual glwe_std_dev = 2^-49.95
// (k*N = 2048), 1/51 more key noise.
unsigned bootstrap_key_body_bits(double bsk_std_dev);
// The fewest bits (at least 16, at most bootstrap_key_body_bits(bsk_std_dev)) whose rounding
// adds at most 1/16 of the variance of one external product with this GGSW (the key's noise,
// the decomposition's rounding and the FFT's error, external_product_variance at 64 bits): the
// key's own noise is a small part of that at every set the optimizer chooses, so fewer bits
// travel for about 6 % more blind-rotation noise, which the model counts
// (ParameterSet::bsk_body_bits): 48 instead of 51 at k = 2, N = 1024, one level of 2^23.
unsigned bootstrap_key_body_bits_for_noise(GlweDimension glwe_dimension, PolynomialSize polynomial_size,
                                           DecompositionBaseLog base_log, DecompositionLevelCount level_count,
                                           double bsk_std_dev);
// x rounded to the nearest multiple of 2^(64 - bits): its top `bits` bits, as key bodies
// travel (x itself for bits >= 64).
inline Torus round_to_top_bits(Torus x, unsigned bits) {
  if (bits >= 64) return x;
  const unsigned shift = 64 - bits;
  return (x + (Torus{1} << (shift - 1))) & ~((Torus{1} << shift) - 1);
}
// 2^(-2b)/12 for b = body_bits, or bootstrap_key_body_bits(bsk_std_dev) where body_bits is 0;
// 0 for b = 64.
double bootstrap_key_body_rounding_variance(double bsk_std_dev, unsigned body_bits = 0);
// Modulus switch of an LWE ciphertext of dimension n from q to 2N.
double modulus_switch_variance(LweDimension lwe_dimension, PolynomialSize polynomial_size);
// The same centred switch to 2^modulus_bits instead of 2N (the answers' compression,
// modulus_switch_lwe_ciphertext_list): Var_MS with 1/(2N)^2 replaced by 2^(-2 modulus_bits).
// REQUIRES: 1 <= modulus_bits <= 63.
double modulus_switch_variance_to_bits(LweDimension lwe_dimension, unsigned modulus_bits);
// Noise added by one external product (one of the n steps of a blind rotation) with a GGSW
// encrypted at bsk_std_dev whose bodies were rounded to body_bits (0: bootstrap_key_body_bits,
// as bootstrap_key_body_rounding_variance), including the f64 FFT term. Var_BR = n * this.
double external_product_variance(GlweDimension glwe_dimension, PolynomialSize polynomial_size,
                                 DecompositionBaseLog base_log, DecompositionLevelCount level_count, double bsk_std_dev,
                                 unsigned body_bits = 0);
// The f64 FFT part of external_product_variance.
double fft_external_product_variance(GlweDimension glwe_dimension,
                                     PolynomialSize polynomial_size,
                                     DecompositionBaseLog base_log,
                                     DecompositionLevelCount level_count);
// log2 of the error probability of a p-bit lookup whose input has variance `variance`.
double log2_lookup_error_probability_for_variance(unsigned message_bits, double variance);
// Var_BR of a blind rotation of an n-dimensional input, classical (grouping 1) or multi-bit:
// with d = 2, each of the n/2 steps adds (X^e_b - 1) * (GGSW_b [x] ACC) over the three
// nonzero pairs b, so every GGSW-noise and FFT term counts 2 (the expected |X^e - 1|^2) times
// 3 per pair, 3 per bit, while the input's rounding error enters once per step, times 2:
// the same per bit as classically. d = 1 gives n * external_product_variance.
double blind_rotation_variance(LweDimension lwe_dimension, GroupingFactor grouping, GlweDimension glwe_dimension,
                               PolynomialSize polynomial_size, DecompositionBaseLog base_log,
                               DecompositionLevelCount level_count, double bsk_std_dev, unsigned body_bits = 0);
// One external product's cost; a classical pbs_cost is n times this.
double external_product_cost(GlweDimension glwe_dimension, PolynomialSize polynomial_size,
                             DecompositionLevelCount level_count);
// The cost of one blind-rotation step of d bits: external_product_cost for d = 1; for d = 2
// one external product's transforms and 2^d - 1 times its multiply-adds (weighted for their
// memory traffic: parameters.cpp). pbs_cost is n / d times this.
double blind_rotation_step_cost(GroupingFactor grouping, GlweDimension glwe_dimension, PolynomialSize polynomial_size,
                                DecompositionLevelCount level_count);

// Variance at the blind-rotation input of a lookup fed by a dot product of PBS outputs:
// sq_norm2 * Var_BR + Var_KS + Var_MS.
double variance_at_blind_rotation_input(const ParameterSet& params, double sq_norm2);
// Probability that one lookup of a p-bit message decodes wrong:
// erfc(2^(-p-2) / (sqrt(2) * sigma)), p = params.message_bits.
double lookup_error_probability(const ParameterSet& params, double sq_norm2);
// log2 of the same, accurate far below double's subnormal range (useful for 2^-128).
double log2_lookup_error_probability(const ParameterSet& params, double sq_norm2);
// The largest variance at the blind-rotation input that keeps a p-bit lookup's error
// probability at or below p_error.
double max_variance_for_p_error(unsigned message_bits, double p_error);
// 1 - (1 - p)^count, computed without cancellation.
double circuit_error_probability(double per_lookup_p_error, double lookup_count);

// ---- Cost model (Concrete optimizer) ----
// Per external product: (k+1)l*N*log2 N + (k+1)*N*log2 N + (k+1)^2*l*N; times n for a blind
// rotation (blind_rotation_step_cost times n / d in general); keyswitch: k*N * l_ks * (n+1).
double pbs_cost(const ParameterSet& params);
double keyswitch_cost(const ParameterSet& params);
double ks_pbs_cost(const ParameterSet& params);

// ---- Reference sets ----
// TFHE-rs v1.4 Gaussian KS-PBS sets (132-bit curve, p_fail about 2^-128), 1 to 8 bits: the
// MESSAGE_p_CARRY_0 sets. Their 2^-128 assumes TFHE-rs's centered modulus switch; under the
// classic modulus switch of this noise model they reach only about 2^-68 to 2^-104.
// Throws std::invalid_argument outside [1, 8].
ParameterSet reference_parameter_set(unsigned message_bits);

// ---- Optimizer ----
// One kind of lookup a set must serve: its precision, the largest nu^2 feeding it and, for
// a read that may err more often than the circuit's target (an approximate read: the
// circuit layer's neighbour reads), its own error probability.
struct NoiseConstraint {
  unsigned message_bits = 1;
  double sq_norm2 = 1.0;
  double p_error = 0.0;  // 0: OptimizerOptions::p_error; otherwise in (0, 1)
  friend bool operator==(const NoiseConstraint&, const NoiseConstraint&) = default;
};

// OptimizerOptions::grouping that searches the classical and the multi-bit blind rotation.
inline constexpr GroupingFactor kAutoGrouping{0};

struct OptimizerOptions {
  unsigned message_bits = 4;
  double sq_norm2 = 1.0;              // max nu^2 over the lookups this set must serve
  // When non-empty, replaces (message_bits, sq_norm2): a set is feasible only if every
  // constraint meets its error probability (variance_at_blind_rotation_input(set,
  // c.sq_norm2) <= max_variance_for_p_error(c.message_bits, c.p_error or p_error)), and the
  // set's message_bits is the largest c.message_bits (the widest table it serves, exactly
  // or approximately). A circuit with lookups of several precisions and norms passes one
  // constraint per precision (and error probability).
  std::vector<NoiseConstraint> constraints;
  double p_error = 0x1.0p-40;         // per-lookup error probability target
  unsigned security_bits = 128;
  // The blind rotation the set is for: 1 classical, 2 multi-bit (n then a multiple of 2), or
  // 0: both searched, the cheaper kept (kAutoGrouping).
  GroupingFactor grouping{1};
  // The most bytes the client's seeded evaluation keys may take (the bodies as they travel:
  // the set's bootstrap_key_bits() and keyswitch_key_word_bits bits each; the fixed fields, a few
  // hundred bytes, not counted); 0: no limit. Among the sets within it, the cheapest.
  std::uint64_t max_key_bytes = 0;
  // Search space (Concrete's defaults, N capped at 2^16 which the FFT supports).
  unsigned min_glwe_dimension = 1, max_glwe_dimension = 6;
  unsigned min_log2_polynomial_size = 8, max_log2_polynomial_size = 16;
  unsigned min_lwe_dimension = 512, max_lwe_dimension = 2047;
};

// The cheapest set under ks_pbs_cost that is secure and meets p_error (for every constraint
// when `constraints` is given), or nullopt when no set in the search space does (precision
// or norm too large). The set's noise standard
// deviations are the smallest the security curve allows for its dimensions.
std::optional<ParameterSet> optimize_parameters(const OptimizerOptions& options);

}  // namespace veil::tfhe
