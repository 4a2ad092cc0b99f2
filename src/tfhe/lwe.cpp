#include "veil/tfhe/lwe.hpp"

#include <stdexcept>
#include <string>

namespace veil::tfhe {
namespace {

void require_same_size(std::size_t a, std::size_t b, const char* what) {
  if (a != b)
    throw std::invalid_argument(std::string(what) + ": ciphertext sizes " + std::to_string(a) + " and " +
                                std::to_string(b) + " differ");
}

}  // namespace

Torus delta_for(unsigned message_bits) {
  if (message_bits < 1 || message_bits > 62)
    throw std::invalid_argument("message bits must be in [1, 62], got " + std::to_string(message_bits));
  return Torus{1} << (63 - message_bits);
}

Torus encode_message(std::uint64_t message, unsigned message_bits) {
  return static_cast<Torus>(message) * delta_for(message_bits);
}

std::uint64_t decode_message(Torus phase, unsigned message_bits) {
  const unsigned shift = 63 - message_bits;
  const Torus rounded = (phase + (Torus{1} << (shift - 1))) >> shift;
  return rounded & ((Torus{1} << (message_bits + 1)) - 1);
}

void encrypt_lwe(std::span<const Torus> key, Torus plaintext, double std_dev, EncryptionRandomness& rng,
                 std::span<Torus> out) {
  require_same_size(out.size(), key.size() + 1, "encrypt_lwe");
  const std::size_t n = key.size();
  rng.mask.fill(out.first(n));
  Torus b = 0;
  for (std::size_t i = 0; i < n; ++i) b += out[i] & (Torus{0} - key[i]);
  GaussianSampler noise(std_dev);
  out[n] = b + plaintext + noise.sample(rng.noise);
}

void trivially_encrypt_lwe(Torus plaintext, std::span<Torus> out) {
  for (auto& x : out) x = 0;
  out.back() = plaintext;
}

Torus decrypt_lwe_phase(std::span<const Torus> key, std::span<const Torus> ct) {
  require_same_size(ct.size(), key.size() + 1, "decrypt_lwe_phase");
  Torus dot = 0;
  for (std::size_t i = 0; i < key.size(); ++i) dot += ct[i] & (Torus{0} - key[i]);
  return ct.back() - dot;
}

SeededLweCiphertextList encrypt_seeded_lwe_list(std::span<const Torus> key, std::span<const Torus> plaintexts,
                                                double std_dev, Csprng& noise) {
  SeededLweCiphertextList out{LweDimension(key.size()), os_random_seed(), {}};
  out.bodies.resize(plaintexts.size());
  Csprng mask(out.seed);
  GaussianSampler sampler(std_dev);
  AlignedVector<Torus> a(key.size());
  for (std::size_t c = 0; c < plaintexts.size(); ++c) {
    mask.fill(a);
    Torus b = 0;
    for (std::size_t i = 0; i < key.size(); ++i) b += a[i] & (Torus{0} - key[i]);
    out.bodies[c] = b + plaintexts[c] + sampler.sample(noise);
  }
  return out;
}

void modulus_switch_lwe_ciphertext_list(LweCiphertextList& list, unsigned modulus_bits) {
  if (modulus_bits < 1 || modulus_bits > 63)
    throw std::invalid_argument("modulus_switch_lwe_ciphertext_list: modulus_bits must be in [1, 63], got " +
                                std::to_string(modulus_bits));
  const unsigned shift = 64 - modulus_bits;
  const Torus half = Torus{1} << (shift - 1);
  const Torus low_mask = (Torus{1} << shift) - 1;
  const auto round_to_step = [&](Torus x) { return (x + half) & ~low_mask; };
  const std::size_t n = list.dimension().value;
  for (std::size_t c = 0; c < list.count(); ++c) {
    std::span<Torus> ct = list[c];
    // Wrapping sum of the halved errors: each halving drops at most 2^-64 (pbs.cpp's switch).
    Torus half_error_sum = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const Torus rounded = round_to_step(ct[i]);
      half_error_sum += static_cast<Torus>(static_cast<std::int64_t>(rounded - ct[i]) >> 1);
      ct[i] = rounded;
    }
    ct[n] = round_to_step(ct[n] + half_error_sum);
  }
}

LweCiphertextList decompress_lwe_list(const SeededLweCiphertextList& seeded) {
  LweCiphertextList out(seeded.dimension, seeded.count());
  Csprng mask(seeded.seed);
  const std::size_t n = seeded.dimension.value;
  for (std::size_t c = 0; c < seeded.count(); ++c) {
    auto ct = out[c];
    mask.fill(ct.first(n));
    ct[n] = seeded.bodies[c];
  }
  return out;
}

void lwe_add(std::span<Torus> out, std::span<const Torus> a, std::span<const Torus> b) {
  require_same_size(a.size(), b.size(), "lwe_add");
  require_same_size(out.size(), a.size(), "lwe_add");
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = a[i] + b[i];
}

void lwe_sub(std::span<Torus> out, std::span<const Torus> a, std::span<const Torus> b) {
  require_same_size(a.size(), b.size(), "lwe_sub");
  require_same_size(out.size(), a.size(), "lwe_sub");
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = a[i] - b[i];
}

void lwe_negate(std::span<Torus> out, std::span<const Torus> a) {
  require_same_size(out.size(), a.size(), "lwe_negate");
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = Torus{0} - a[i];
}

void lwe_add_plaintext(std::span<Torus> ct, Torus plaintext) { ct.back() += plaintext; }

void lwe_mul_scalar(std::span<Torus> out, std::span<const Torus> a, std::int64_t scalar) {
  require_same_size(out.size(), a.size(), "lwe_mul_scalar");
  const Torus s = static_cast<Torus>(scalar);
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = a[i] * s;
}

void lwe_mul_scalar_add(std::span<Torus> out, std::span<const Torus> a, std::int64_t scalar) {
  require_same_size(out.size(), a.size(), "lwe_mul_scalar_add");
  const Torus s = static_cast<Torus>(scalar);
  for (std::size_t i = 0; i < out.size(); ++i) out[i] += a[i] * s;
}

void lwe_dot(std::span<Torus> out, std::span<const std::span<const Torus>> cts, std::span<const std::int64_t> weights) {
  if (cts.size() != weights.size())
    throw std::invalid_argument("lwe_dot: " + std::to_string(cts.size()) + " ciphertexts but " +
                                std::to_string(weights.size()) + " weights");
  for (auto& x : out) x = 0;
  for (std::size_t i = 0; i < cts.size(); ++i) lwe_mul_scalar_add(out, cts[i], weights[i]);
}

}  // namespace veil::tfhe
