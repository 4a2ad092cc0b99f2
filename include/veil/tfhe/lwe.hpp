// Encoding of p-bit messages, LWE encryption and decryption, and the levelled operations.
//
// Encoding: a p-bit message m in [0, 2^p) with one padding bit is the plaintext Delta * m,
// Delta = 2^(63 - p). Decoding rounds the phase to the nearest multiple of Delta and returns
// it modulo 2^(p+1); with the padding bit kept at 0 by the circuit it lies in [0, 2^p).
// Signed messages are two's complement in p bits.
// Thread safety: free functions; a Csprng is per thread.
#pragma once

#include <cstdint>
#include <span>

#include "veil/tfhe/csprng.hpp"
#include "veil/tfhe/entities.hpp"

namespace veil::tfhe {

// Delta = 2^(63 - p). REQUIRES: 1 <= message_bits <= 62.
Torus delta_for(unsigned message_bits);
Torus encode_message(std::uint64_t message, unsigned message_bits);
std::uint64_t decode_message(Torus phase, unsigned message_bits);

// The randomness an encryption draws: masks from `mask` (a seeded stream when the result is
// to be sent seeded), noise from `noise` (always secret, OS-seeded).
struct EncryptionRandomness {
  Csprng mask;
  Csprng noise;
  static EncryptionRandomness from_os() { return {Csprng::from_os(), Csprng::from_os()}; }
};

// out = (a, <a, s> + plaintext + e), a drawn from randomness.mask, e ~ N(0, std_dev^2).
// REQUIRES: out.size() == key.size() + 1.
void encrypt_lwe(std::span<const Torus> key, Torus plaintext, double std_dev,
                 EncryptionRandomness& randomness, std::span<Torus> out);
// Noise-free ciphertext (0, ..., 0, plaintext): a clear constant in ciphertext form.
void trivially_encrypt_lwe(Torus plaintext, std::span<Torus> out);
// phase = b - <a, s>. REQUIRES: ct.size() == key.size() + 1.
Torus decrypt_lwe_phase(std::span<const Torus> key, std::span<const Torus> ct);

// Encrypts each plaintext as a fresh ciphertext whose mask comes from a new OS seed; the
// result travels as 8 bytes per ciphertext (plus the seed).
SeededLweCiphertextList encrypt_seeded_lwe_list(std::span<const Torus> key, std::span<const Torus> plaintexts,
                                                double std_dev, Csprng& noise);
// Expands the masks from the seed: the same ciphertexts the encryptor produced.
LweCiphertextList decompress_lwe_list(const SeededLweCiphertextList& seeded);

// Centred modulus switch of every ciphertext of `list` from q = 2^64 to 2^modulus_bits, the
// result kept on the torus: every word becomes a multiple of 2^(64 - modulus_bits), so that
// only its top modulus_bits bits need to travel (serialize_modulus_switched) and decryption
// is unchanged. Adds parameters.hpp's modulus_switch_variance_to_bits to each phase (the
// mask's public rounding errors e_i enter as sum e_i (s_i - 1/2): half their mean is folded
// into the body before it is rounded, as the PBS's switch does).
// REQUIRES: 1 <= modulus_bits <= 63.
void modulus_switch_lwe_ciphertext_list(LweCiphertextList& list, unsigned modulus_bits);

// ---- levelled operations (noise adds; the circuit layer keeps messages within p bits) ----
// All spans are whole ciphertexts of one dimension; out may alias an input.
void lwe_add(std::span<Torus> out, std::span<const Torus> a, std::span<const Torus> b);
void lwe_sub(std::span<Torus> out, std::span<const Torus> a, std::span<const Torus> b);
void lwe_negate(std::span<Torus> out, std::span<const Torus> a);
// Adds a plaintext (an encoded clear constant) to the body.
void lwe_add_plaintext(std::span<Torus> ct, Torus plaintext);
// Multiplies by a clear signed integer (wrapping, two's complement).
void lwe_mul_scalar(std::span<Torus> out, std::span<const Torus> a, std::int64_t scalar);
// out = sum_i weights[i] * cts[i]; every cts[i] has out.size() words.
void lwe_dot(std::span<Torus> out, std::span<const std::span<const Torus>> cts, std::span<const std::int64_t> weights);
// out += scalar * a: the building block of the above.
void lwe_mul_scalar_add(std::span<Torus> out, std::span<const Torus> a, std::int64_t scalar);

}  // namespace veil::tfhe
