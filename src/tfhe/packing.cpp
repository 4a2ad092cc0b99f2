#include "veil/tfhe/packing.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/kernel_set.hpp"
#include "portable_crypto.hpp"
#include "veil/tfhe/csprng.hpp"
#include "veil/tfhe/decomposition.hpp"
#include "veil/tfhe/parallel.hpp"
#include "veil/tfhe/sha256.hpp"

namespace veil::tfhe {

PackingKeyShape packing_key_shape(const ParameterSet& p) {
  if (!p.packs_answers()) return {};
  return {p.big_lwe_dimension(), p.answer_glwe_dimension(), p.answer_polynomial_size, p.answer_base_log,
          p.answer_level_count};
}

namespace {

void require_packing(const ParameterSet& p, const char* who) {
  if (!p.packs_answers()) throw std::invalid_argument(std::string(who) + ": parameter set " + p.name + " packs no answers");
}

}  // namespace

GlweSecretKey answer_secret_key(const SecretKeys& keys) {
  require_packing(keys.params, "answer_secret_key");
  const PackingKeyShape shape = packing_key_shape(keys.params);
  // Key material: SHA-256 of a domain tag and both keys' bits, one byte a bit.
  static constexpr char kTag[] = "veil.tfhe.answer-key.v1";
  const std::span<const Torus> big = keys.glwe.flattened(), small = keys.lwe.bits();
  SecretVector<std::uint8_t> bits(big.size() + small.size());
  for (std::size_t i = 0; i < big.size(); ++i) bits[i] = static_cast<std::uint8_t>(big[i] & 1);
  for (std::size_t i = 0; i < small.size(); ++i) bits[big.size() + i] = static_cast<std::uint8_t>(small[i] & 1);
  Sha256Digest digest = sha256({std::span(reinterpret_cast<const std::uint8_t*>(kTag), sizeof kTag - 1),
                                std::span<const std::uint8_t>(bits.data(), bits.size())});
  std::array<std::uint32_t, 8> chacha_key{};
  for (std::size_t w = 0; w < 8; ++w)
    chacha_key[w] = static_cast<std::uint32_t>(digest[4 * w]) | static_cast<std::uint32_t>(digest[4 * w + 1]) << 8 |
                    static_cast<std::uint32_t>(digest[4 * w + 2]) << 16 | static_cast<std::uint32_t>(digest[4 * w + 3]) << 24;
  // One bit of the ChaCha20 stream per key coefficient (constant-time: shifts and masks).
  const std::size_t coefficients = shape.mask_words();
  const std::size_t blocks = (coefficients + 511) / 512;
  SecretVector<std::uint8_t> stream(blocks * 64);
  chacha20_blocks(chacha_key, 0, 0, stream.data(), blocks);
  GlweSecretKey out(shape.glwe_dimension, shape.polynomial_size);
  std::span<Torus> s = out.mutable_bits();
  for (std::size_t i = 0; i < coefficients; ++i) s[i] = (stream[i / 8] >> (i % 8)) & 1;
  secure_wipe(digest.data(), sizeof digest);
  secure_wipe(chacha_key.data(), sizeof chacha_key);
  return out;
}

SeededPackingKey generate_seeded_packing_key(const SecretKeys& keys, const KeygenOptions& options) {
  require_packing(keys.params, "generate_seeded_packing_key");
  const PackingKeyShape shape = packing_key_shape(keys.params);
  const GlweSecretKey answer = answer_secret_key(keys);
  const std::size_t np = shape.polynomial_size.value, k = shape.glwe_dimension.value, l = shape.level_count.value;
  const std::size_t beta = shape.base_log.value;
  const unsigned body_bits = bootstrap_key_body_bits(keys.params.answer_noise());
  SeededPackingKey out{shape, os_random_seed(), {}};
  out.bodies.resize(shape.ciphertext_count() * np);
  const std::span<const Torus> big = keys.glwe.flattened();
  parallel_for(shape.ciphertext_count(), options.threads, 64, [&](std::size_t begin, std::size_t end, unsigned) {
    Csprng noise = Csprng::from_os();
    GaussianSampler sampler(keys.params.answer_noise());
    AlignedVector<Torus> mask(shape.mask_words());
    for (std::size_t c = begin; c < end; ++c) {
      Csprng mask_stream(out.seed, c * shape.mask_words());
      mask_stream.fill(mask);
      std::span<Torus> body(out.bodies.data() + c * np, np);
      std::fill(body.begin(), body.end(), Torus{0});
      // body = sum_p A_p * S'_p (negacyclic), branch-free in the key bits.
      for (std::size_t p = 0; p < k; ++p) {
        const Torus* a = mask.data() + p * np;
        const std::span<const Torus> s = answer.polynomial(p);
        for (std::size_t w = 0; w < np; ++w) {
          const Torus keep = Torus{0} - (s[w] & 1);
          for (std::size_t v = w; v < np; ++v) body[v] += a[v - w] & keep;
          for (std::size_t v = 0; v < w; ++v) body[v] -= a[v + np - w] & keep;
        }
      }
      const std::size_t i = c / l, j = c % l + 1;
      const Torus message = (big[i] & 1) << (64 - j * beta);
      body[0] += message;
      for (std::size_t v = 0; v < np; ++v) body[v] = round_to_top_bits(body[v] + sampler.sample(noise), body_bits);
    }
  });
  return out;
}

PackingKey expand_packing_key(const SeededPackingKey& seeded, const KeygenOptions& options) {
  const PackingKeyShape& shape = seeded.shape;
  if (seeded.bodies.size() != shape.ciphertext_count() * shape.polynomial_size.value)
    throw std::invalid_argument("expand_packing_key: " + std::to_string(seeded.bodies.size()) + " bodies, the shape needs " +
                                std::to_string(shape.ciphertext_count() * shape.polynomial_size.value));
  PackingKey key(shape);
  const std::size_t np = shape.polynomial_size.value, polys = shape.glwe_dimension.value + 1;
  parallel_for(shape.ciphertext_count(), options.threads, 64, [&](std::size_t begin, std::size_t end, unsigned) {
    AlignedVector<Torus> mask(shape.mask_words());
    for (std::size_t c = begin; c < end; ++c) {
      Torus* ct = key.data().data() + c * shape.ciphertext_words();
      Csprng(seeded.seed, c * shape.mask_words()).fill(mask);
      // Coefficient-major (PackingKey): word (u, q) at u * (k' + 1) + q.
      for (std::size_t q = 0; q + 1 < polys; ++q)
        for (std::size_t u = 0; u < np; ++u) ct[u * polys + q] = mask[q * np + u];
      for (std::size_t u = 0; u < np; ++u) ct[u * polys + polys - 1] = seeded.bodies[c * np + u];
    }
  });
  return key;
}

namespace {

// The centred switch of one row's accumulator (coefficient-major, `polys` words a
// coefficient) to `bits`: every mask word rounded; body t takes the halved errors of the mask
// words its decryption sees, with their signs (+ for u <= t, - past the wrap).
PackedAnswer switch_packed(const PackingKeyShape& shape, const Torus* acc, std::size_t m, unsigned bits) {
  const std::size_t np = shape.polynomial_size.value, polys = shape.glwe_dimension.value + 1;
  const unsigned shift = 64 - bits;
  const Torus half = Torus{1} << (shift - 1), low = (Torus{1} << shift) - 1;
  PackedAnswer out{shape.glwe_dimension, shape.polynomial_size, m, bits, {}};
  out.words.resize((polys - 1) * np + m);
  std::vector<Torus> column(np, 0);  // sum over the k' masks of the halved error at coefficient u
  for (std::size_t q = 0; q + 1 < polys; ++q)
    for (std::size_t u = 0; u < np; ++u) {
      const Torus x = acc[u * polys + q];
      const Torus rounded = (x + half) & ~low;
      column[u] += static_cast<Torus>(static_cast<std::int64_t>(rounded - x) >> 1);
      out.words[q * np + u] = rounded;
    }
  Torus total = 0;
  for (std::size_t u = 0; u < np; ++u) total += column[u];
  Torus prefix = 0;  // sum of column[u] for u <= t
  for (std::size_t t = 0; t < m; ++t) {
    prefix += column[t];
    const Torus correction = prefix - (total - prefix);
    out.words[(polys - 1) * np + t] = (acc[t * polys + polys - 1] + correction + half) & ~low;
  }
  return out;
}

}  // namespace

std::vector<PackedAnswer> pack_answers(const PackingKey& key, std::span<const LweCiphertextList> rows, unsigned modulus_bits) {
  const PackingKeyShape& shape = key.shape();
  const std::size_t big = shape.input_lwe_dimension.value, np = shape.polynomial_size.value;
  const std::size_t polys = shape.glwe_dimension.value + 1, l = shape.level_count.value;
  if (key.empty()) throw std::invalid_argument("pack_answer: the evaluation keys hold no packing key");
  if (modulus_bits < 1 || modulus_bits > 63)
    throw std::invalid_argument("pack_answer: modulus_bits must be in [1, 63], got " + std::to_string(modulus_bits));
  std::vector<std::size_t> first(rows.size() + 1, 0);  // row r's ciphertexts are [first[r], first[r + 1])
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const LweCiphertextList& in = rows[r];
    if (in.dimension().value != big)
      throw std::invalid_argument("pack_answer: ciphertexts of dimension " + std::to_string(in.dimension().value) +
                                  ", the packing key expects " + std::to_string(big));
    if (in.count() < 1 || in.count() > np)
      throw std::invalid_argument("pack_answer: " + std::to_string(in.count()) +
                                  " ciphertexts, a packed answer holds 1 to " + std::to_string(np));
    first[r + 1] = first[r] + in.count();
  }
  const std::size_t total = first.back();
  // Digits d_j(a_c,i) of every ciphertext c of every row, [i][c][j]: the key's order.
  const Decomposer decomposer(shape.base_log, shape.level_count);
  std::vector<std::int64_t> digits(big * total * l);
  for (std::size_t r = 0; r < rows.size(); ++r)
    for (std::size_t t = 0; t < rows[r].count(); ++t) {
      const std::span<const Torus> a = rows[r][t];
      const std::size_t c = first[r] + t;
      for (std::size_t i = 0; i < big; ++i) decomposer.decompose(a[i], digits.data() + (i * total + c) * l);
    }
  // Row r: acc_r = sum_t X^t ((0, b_t) - sum_(i,j) d * P_(i,j)), coefficient-major like the
  // key: coefficient v of every polynomial (the k' masks and the body) gathers -d * P[v - t]
  // (t <= v) and +d * P[v - t + N'] (t > v): the kernel set's packing_multiply_add, two
  // contiguous multiply-adds a digit. Threads split the key's inputs i, so the key streams
  // from memory once for all rows, each thread into accumulators of its own, summed at the end.
  const std::size_t words = polys * np;
  const unsigned threads = std::max(1u, std::min<unsigned>(resolve_thread_count(0), static_cast<unsigned>((big + 255) / 256)));
  std::vector<std::vector<Torus>> partial(threads, std::vector<Torus>(rows.size() * words, 0));
  const std::size_t chunk = (big + threads - 1) / threads;
  const kernels::KernelSet& kernel_set = kernels::active_kernels();
  parallel_for(big, threads, chunk, [&](std::size_t i_begin, std::size_t i_end, unsigned w) {
    Torus* const acc_base = partial[w].data();
    for (std::size_t i = i_begin; i < i_end; ++i)
      for (std::size_t j = 0; j < l; ++j) {
        const Torus* const p = key.ciphertext(i, j).data();
        for (std::size_t r = 0; r < rows.size(); ++r)
          kernel_set.packing_multiply_add(p, np, polys, digits.data() + (i * total + first[r]) * l + j, l,
                                          first[r + 1] - first[r], acc_base + r * words);
      }
  });
  std::vector<PackedAnswer> out;
  out.reserve(rows.size());
  std::vector<Torus> acc(words);
  for (std::size_t r = 0; r < rows.size(); ++r) {
    std::fill(acc.begin(), acc.end(), Torus{0});
    for (std::size_t t = 0; t < rows[r].count(); ++t) acc[t * polys + polys - 1] = rows[r][t][big];
    for (const auto& part : partial)
      for (std::size_t x = 0; x < words; ++x) acc[x] += part[r * words + x];
    out.push_back(switch_packed(shape, acc.data(), rows[r].count(), modulus_bits));
  }
  return out;
}

PackedAnswer pack_answer(const PackingKey& key, const LweCiphertextList& in, unsigned modulus_bits) {
  return std::move(pack_answers(key, std::span<const LweCiphertextList>(&in, 1), modulus_bits).front());
}

LweCiphertextList unpack_answer(const PackedAnswer& answer) {
  const std::size_t k = answer.glwe_dimension.value, np = answer.polynomial_size.value, m = answer.count;
  // At most 2^20 mask words (kN is at most 6 x 65536 for any valid set); 64-bit arithmetic,
  // since size_t is 32 bits in WebAssembly.
  if (std::uint64_t{k} * std::uint64_t{np} > (std::uint64_t{1} << 20))
    throw std::invalid_argument("unpack_answer: a GLWE of " + std::to_string(k) + " x " + std::to_string(np) + " is too large");
  if (np == 0 || k == 0 || m < 1 || m > np)
    throw std::invalid_argument("unpack_answer: " + std::to_string(m) + " outputs in a GLWE of " + std::to_string(k) + " x " +
                                std::to_string(np));
  if (answer.words.size() != k * np + m)
    throw std::invalid_argument("unpack_answer: " + std::to_string(answer.words.size()) + " words, k'N' + count is " +
                                std::to_string(k * np + m));
  LweCiphertextList out(LweDimension(k * np), m);
  for (std::size_t t = 0; t < m; ++t) {
    std::span<Torus> ct = out[t];
    for (std::size_t p = 0; p < k; ++p) {
      const Torus* a = answer.words.data() + p * np;
      Torus* mask = ct.data() + p * np;
      for (std::size_t w = 0; w <= t; ++w) mask[w] = a[t - w];
      for (std::size_t w = t + 1; w < np; ++w) mask[w] = Torus{0} - a[t + np - w];
    }
    ct[k * np] = answer.words[k * np + t];
  }
  return out;
}

double packing_keyswitch_variance(const ParameterSet& params, std::size_t count) {
  require_packing(params, "packing_keyswitch_variance");
  if (count < 1) throw std::invalid_argument("packing_keyswitch_variance: count must be at least 1");
  const double s2 = params.answer_noise() * params.answer_noise() + bootstrap_key_body_rounding_variance(params.answer_noise());
  const LweDimension big = params.big_lwe_dimension();
  // The keyswitch sum for the decomposed input itself (its rounding and the key noise) ...
  const double one = keyswitch_variance(big, std::sqrt(s2), params.answer_base_log, params.answer_level_count);
  // ... and, rotated onto every coefficient, the key noise of the other count - 1 inputs.
  const double key_only = one - keyswitch_variance(big, 0.0, params.answer_base_log, params.answer_level_count);
  return one + static_cast<double>(count - 1) * key_only;
}

}  // namespace veil::tfhe
