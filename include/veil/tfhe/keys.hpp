// Key generation: the client's secret keys, and the evaluation keys (bootstrap key and
// keyswitch key) it publishes, in seeded form for transport and expanded for evaluation.
//
// The secret keys stay with the client: SecretKeys is the only type that holds them, and
// EvaluationKeys / SeededEvaluationKeys (what a server receives) hold none.
// Thread safety: generation runs on `threads` threads internally; the results are immutable
// values safe for concurrent const use (one EvaluationKeys serves many PBS threads).
#pragma once

#include <cstdint>
#include <functional>

#include "veil/tfhe/entities.hpp"
#include "veil/tfhe/parameters.hpp"

namespace veil::tfhe {

struct SecretKeys {
  ParameterSet params;
  LweSecretKey lwe;    // small key, dimension n
  GlweSecretKey glwe;  // big key, k polynomials of N; flattened: dimension k*N
};

// Uniform binary keys from the OS-seeded CSPRNG. Validates the parameter set and refuses one
// that is not secure at `security_bits` unless `allow_insecure` (tests with toy sets only).
SecretKeys generate_secret_keys(const ParameterSet& params, bool allow_insecure = false,
                                unsigned security_bits = 128);

BootstrapKeyShape bootstrap_key_shape(const ParameterSet& params);
KeyswitchKeyShape keyswitch_key_shape(const ParameterSet& params);
// The answer-packing key's shape (packing.hpp); all zero when `params` packs no answers.
PackingKeyShape packing_key_shape(const ParameterSet& params);

struct KeygenOptions {
  unsigned threads = 0;  // 0: all hardware threads
  // When set, generate_seeded_evaluation_keys reports the fraction done (0 to 1, rising) as
  // it goes: after each chunk of the bootstrap key (the bulk, up to 0.9), then the keyswitch
  // key. Called from worker threads, one call at a time.
  std::function<void(double)> progress;
};

// BSK_i = GGSW(s_i) under the GLWE key, masks from a fresh public seed.
SeededLweBootstrapKey generate_seeded_bootstrap_key(const SecretKeys& keys, const KeygenOptions& options = {});
// KSK_(i,j) = LWE_s(s'_i * 2^(64 - j*beta_ks)), masks from a fresh public seed.
SeededLweKeyswitchKey generate_seeded_keyswitch_key(const SecretKeys& keys, const KeygenOptions& options = {});

// Expansion: exactly the ciphertexts the generator encrypted.
LweBootstrapKey decompress_bootstrap_key(const SeededLweBootstrapKey& seeded, const KeygenOptions& options = {});
LweKeyswitchKey decompress_keyswitch_key(const SeededLweKeyswitchKey& seeded, const KeygenOptions& options = {});
FourierBootstrapKey convert_bootstrap_key_to_fourier(const LweBootstrapKey& bsk, const KeygenOptions& options = {});
// Seeded -> Fourier without materialising the standard-domain key (one GGSW at a time).
FourierBootstrapKey decompress_bootstrap_key_to_fourier(const SeededLweBootstrapKey& seeded,
                                                        const KeygenOptions& options = {});

// What a client publishes once per model: compressed, about (k+1) times smaller than expanded.
struct SeededEvaluationKeys {
  ParameterSet params;
  SeededLweBootstrapKey bsk;
  SeededLweKeyswitchKey ksk;
  SeededPackingKey packing;  // empty (zero shape) unless params.packs_answers()
};
SeededEvaluationKeys generate_seeded_evaluation_keys(const SecretKeys& keys, const KeygenOptions& options = {});

// What a server evaluates with. Immutable once built; share it across threads.
struct EvaluationKeys {
  ParameterSet params;
  FourierBootstrapKey bsk;
  TruncatedKeyswitchKey ksk;
  PackingKey packing;  // empty unless params.packs_answers()
};
// Checks that the seeded keys' shapes match their parameter set, then expands them.
EvaluationKeys expand_evaluation_keys(const SeededEvaluationKeys& seeded, const KeygenOptions& options = {});

// Convenience for the client: encrypt / decrypt p-bit messages under the big key (the key
// ciphertexts live under between lookups), fresh noise glwe_std_dev.
LweCiphertext encrypt_message(const SecretKeys& keys, std::uint64_t message, unsigned message_bits);
std::uint64_t decrypt_message(const SecretKeys& keys, std::span<const Torus> ct, unsigned message_bits);

}  // namespace veil::tfhe
