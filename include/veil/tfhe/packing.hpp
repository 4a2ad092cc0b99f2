// Packed answers: a row's outputs, m LWE ciphertexts under the big key (dimension K = k*N),
// travel as one GLWE ciphertext of polynomial size N' >= m and dimension k' (K / N' or less),
// whose body coefficient t holds output t, then modulus-switched to b bits and cut to its mask
// and its first m body coefficients: (k'N' + m) * b bits instead of m * (K + 1) * b.
//
// The packing keyswitch (the server's step): for each input ciphertext (a_t, b_t),
//   X^t * ((0, b_t) - sum_i sum_j d_j(a_t,i) * P_(i,j)),   P_(i,j) = GLWE_S'(s_i * 2^(64 - j*beta))
// summed over t. P is the packing key (K * l GLWE ciphertexts under the answer key S'); its
// noise is keyswitch_variance(K, answer_noise() (+ the bodies' rounding), beta, l): the same
// sum as an LWE keyswitch, per body coefficient.
//
// The answer key S' is not stored: it is derived from the client's secret keys
// (answer_secret_key), binary, k'N' coefficients. Its packing key is encrypted at the set's
// answer_noise(): glwe_std_dev for k'N' = K, as secure as the big key; for a shorter key, the
// noise the security curve asks for k'N' (check_security checks it). A shorter key, noisier,
// needs a finer decomposition, and buys a shorter mask and a mask switched to fewer bits
// (ParameterSet, circuit::plan_answer_packing). Its derivation (ChaCha20 keyed by the SHA-256 of a
// domain tag and both secret keys) makes it a pseudorandom function of them: a client with
// its secret.key decrypts packed answers and nothing new is saved. The packing key encrypts
// the big key's bits under S', a function of them: its security rests on SHA-256 behaving as
// a random oracle and on circular security, the assumption the bootstrap and keyswitch keys
// (each encrypting the other's key) already make.
//
// Thread safety: pure functions over values; keys are immutable once built.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "veil/tfhe/entities.hpp"
#include "veil/tfhe/keys.hpp"
#include "veil/tfhe/parameters.hpp"

namespace veil::tfhe {

// The answer key of `keys` (see above). REQUIRES: keys.params packs answers.
GlweSecretKey answer_secret_key(const SecretKeys& keys);

// P_(i,j) for every big-key bit i and level j, masks from a fresh public seed.
// REQUIRES: keys.params packs answers (std::invalid_argument otherwise).
SeededPackingKey generate_seeded_packing_key(const SecretKeys& keys, const KeygenOptions& options = {});
// Exactly the ciphertexts the generator encrypted.
PackingKey expand_packing_key(const SeededPackingKey& seeded, const KeygenOptions& options = {});

// A packed, modulus-switched answer: the GLWE's k'N' mask words then its first `count` body
// coefficients, each a multiple of 2^(64 - modulus_bits).
struct PackedAnswer {
  GlweDimension glwe_dimension;
  PolynomialSize polynomial_size;
  std::size_t count = 0;
  unsigned modulus_bits = 0;
  std::vector<Torus> words;  // k'N' + count
};

// Packs `in` (count <= N' ciphertexts of dimension K under the big key) with `key`, then
// switches every word to its nearest multiple of 2^(64 - modulus_bits) (centred: the mask's
// halved rounding errors go into each body, as modulus_switch_lwe_ciphertext_list does).
// Throws std::invalid_argument on a dimension, count or modulus_bits outside the key's shape
// or [1, 63].
PackedAnswer pack_answer(const PackingKey& key, const LweCiphertextList& in, unsigned modulus_bits);
// The same for many rows at once (one answer per list), the key read from memory once for
// all of them: what a server does with a wave of rows.
std::vector<PackedAnswer> pack_answers(const PackingKey& key, std::span<const LweCiphertextList> rows, unsigned modulus_bits);

// The public unpacking a client does before decrypting: body coefficient t as an LWE
// ciphertext of dimension k'N' under answer_secret_key(...).flattened(). Throws
// std::invalid_argument on an inconsistent answer (word count, count above N').
LweCiphertextList unpack_answer(const PackedAnswer& answer);

// The variance the packing keyswitch adds to each of `count` packed outputs (relative to q^2),
// before the modulus switch: keyswitch_variance of K inputs at answer_noise() plus the key
// bodies' rounding for the output's own input, and the key-noise term of each of the other
// count - 1 inputs, which the rotation X^t spreads over every coefficient.
double packing_keyswitch_variance(const ParameterSet& params, std::size_t count);

}  // namespace veil::tfhe
