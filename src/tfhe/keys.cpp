#include "veil/tfhe/keys.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>

#include "veil/tfhe/glwe.hpp"
#include "veil/tfhe/lwe.hpp"
#include "veil/tfhe/packing.hpp"
#include "veil/tfhe/parallel.hpp"

namespace veil::tfhe {

SecretKeys generate_secret_keys(const ParameterSet& params, bool allow_insecure, unsigned security_bits) {
  params.validate();
  if (!allow_insecure) {
    SecurityCheck check = check_security(params, security_bits);
    if (!check.secure) throw std::invalid_argument("refusing insecure parameter set " + params.name + ": " + check.detail);
  }
  SecretKeys keys{params, LweSecretKey(params.lwe_dimension), GlweSecretKey(params.glwe_dimension, params.polynomial_size)};
  Csprng rng = Csprng::from_os();
  rng.fill_binary(keys.lwe.mutable_bits());
  rng.fill_binary(keys.glwe.mutable_bits());
  return keys;
}

BootstrapKeyShape bootstrap_key_shape(const ParameterSet& p) {
  return {p.lwe_dimension, GgswShape{p.glwe_dimension, p.polynomial_size, p.pbs_base_log, p.pbs_level_count},
          p.grouping};
}

KeyswitchKeyShape keyswitch_key_shape(const ParameterSet& p) {
  return {p.big_lwe_dimension(), p.lwe_dimension, p.ks_base_log, p.ks_level_count};
}

namespace {
// What GGSW t of a bootstrap key encrypts (BootstrapKeyShape): s_t, or for grouping d the
// indicator that the d bits of group t / (2^d - 1) spell b = t % (2^d - 1) + 1.
Torus bootstrap_key_message(const BootstrapKeyShape& shape, std::span<const Torus> small_key, std::size_t t) {
  const std::size_t d = shape.grouping.value;
  if (d == 1) return small_key[t];
  const std::size_t per_group = shape.ggsws_per_group();
  const std::size_t first = (t / per_group) * d;
  const std::size_t b = t % per_group + 1;
  // Branch-free in the secret bits: 1 ^ (s ^ bit) is 1 exactly when they agree.
  Torus indicator = 1;
  for (std::size_t j = 0; j < d; ++j) indicator &= Torus{1} ^ (small_key[first + j] ^ ((b >> j) & 1));
  return indicator;
}
}  // namespace

namespace {

// The bootstrap key's share of KeygenOptions::progress (it is nearly all of the work).
constexpr double kBootstrapKeyShare = 0.9;

// Reports KeygenOptions::progress as chunks of `total` items finish, mapped onto [from, to].
class ProgressCounter {
 public:
  ProgressCounter(const std::function<void(double)>& report, std::size_t total, double from, double to)
      : report_(report), total_(total), from_(from), to_(to) {}
  void add(std::size_t items) {
    if (!report_) return;
    std::lock_guard lock(mutex_);
    done_ += items;
    report_(from_ + (to_ - from_) * static_cast<double>(done_) / static_cast<double>(total_ == 0 ? 1 : total_));
  }

 private:
  const std::function<void(double)>& report_;
  std::size_t total_, done_ = 0;
  double from_, to_;
  std::mutex mutex_;
};

void round_to_top_bits(std::span<Torus> words, unsigned bits) {
  for (Torus& w : words) w = tfhe::round_to_top_bits(w, bits);
}

}  // namespace

SeededLweBootstrapKey generate_seeded_bootstrap_key(const SecretKeys& keys, const KeygenOptions& options) {
  const BootstrapKeyShape shape = bootstrap_key_shape(keys.params);
  const GgswShape& g = shape.ggsw;
  const std::size_t n = g.polynomial_size.value;
  const std::size_t k = g.glwe_dimension.value;
  const std::size_t l = g.level_count.value;
  SeededLweBootstrapKey out{shape, os_random_seed(), {}};
  out.bodies.resize(shape.ggsw_count() * g.row_count() * n);
  // Only the bits the noise model counts travel (ParameterSet::bsk_body_bits).
  const unsigned body_bits = keys.params.bootstrap_key_bits();
  ProgressCounter counter(options.progress, shape.ggsw_count(), 0.0, kBootstrapKeyShare);
  parallel_for(shape.ggsw_count(), options.threads, 4, [&](std::size_t begin, std::size_t end, unsigned) {
    GlweEncryptor encryptor(keys.glwe);
    Csprng noise = Csprng::from_os();
    AlignedVector<Torus> mask(k * n);
    for (std::size_t t = begin; t < end; ++t) {
      Csprng mask_stream(out.seed, t * g.mask_words());
      const Torus mu = bootstrap_key_message(shape, keys.lwe.bits(), t);
      for (std::size_t i = 0; i <= k; ++i) {
        for (std::size_t j = 1; j <= l; ++j) {
          const std::size_t row = i * l + (j - 1);
          mask_stream.fill(mask);
          std::span<Torus> body(out.bodies.data() + (t * g.row_count() + row) * n, n);
          encryptor.compute_ggsw_row_body(mask, i, j, mu, g.base_log, keys.params.glwe_std_dev, noise, body);
          round_to_top_bits(body, body_bits);
        }
      }
    }
    counter.add(end - begin);
  });
  return out;
}

SeededLweKeyswitchKey generate_seeded_keyswitch_key(const SecretKeys& keys, const KeygenOptions& options) {
  const KeyswitchKeyShape shape = keyswitch_key_shape(keys.params);
  const std::size_t n = shape.output_lwe_dimension.value;
  const std::size_t l = shape.level_count.value;
  const std::size_t beta = shape.base_log.value;
  SeededLweKeyswitchKey out{shape, os_random_seed(), {}};
  out.bodies.resize(shape.ciphertext_count());
  const unsigned body_bits = keyswitch_key_word_bits(keys.params.lwe_dimension, keys.params.lwe_std_dev);
  auto big_key = keys.glwe.flattened();
  auto small_key = keys.lwe.bits();
  ProgressCounter counter(options.progress, shape.input_lwe_dimension.value, kBootstrapKeyShare, 1.0);
  parallel_for(shape.input_lwe_dimension.value, options.threads, 64, [&](std::size_t begin, std::size_t end, unsigned) {
    Csprng noise = Csprng::from_os();
    GaussianSampler sampler(keys.params.lwe_std_dev);
    Csprng mask_stream(out.seed, begin * l * n);
    AlignedVector<Torus> a(n);
    for (std::size_t i = begin; i < end; ++i) {
      for (std::size_t j = 1; j <= l; ++j) {
        mask_stream.fill(a);
        Torus b = 0;
        for (std::size_t t = 0; t < n; ++t) b += a[t] & (Torus{0} - small_key[t]);
        const Torus plaintext = big_key[i] << (64 - j * beta);
        // Rounded to the bits the evaluation form keeps (TruncatedKeyswitchKey rounds every
        // word the same way, so this adds nothing there): only those travel.
        out.bodies[i * l + (j - 1)] = tfhe::round_to_top_bits(b + plaintext + sampler.sample(noise), body_bits);
      }
    }
    counter.add(end - begin);
  });
  return out;
}

namespace {
unsigned checked_word_bits(unsigned word_bits) {
  if (word_bits != 24 && word_bits != 32)
    throw std::invalid_argument("evaluation-form keyswitch key of " + std::to_string(word_bits) +
                                "-bit words: 24 or 32 are supported");
  return word_bits;
}

// Words [first, last) of a row, rounded to their top 8 * Bytes bits, stored little-endian.
template <std::size_t Bytes>
void store_rounded(const Torus* row, std::size_t first, std::size_t last, std::uint8_t* out) {
  constexpr unsigned kDrop = 64 - 8 * Bytes;
  for (std::size_t t = first; t < last; ++t, out += Bytes) {
    // Round to nearest: the error is zero-mean, which the noise model assumes.
    const Torus kept = (row[t] + (Torus{1} << (kDrop - 1))) >> kDrop;
    if constexpr (std::endian::native == std::endian::little) {
      std::memcpy(out, &kept, Bytes);  // the low bytes of kept
    } else {
      for (std::size_t byte = 0; byte < Bytes; ++byte) out[byte] = static_cast<std::uint8_t>(kept >> (8 * byte));
    }
  }
}
}  // namespace

TruncatedKeyswitchKey::TruncatedKeyswitchKey(const LweKeyswitchKey& exact, unsigned word_bits, unsigned threads)
    : shape_(exact.shape()),
      word_bits_(checked_word_bits(word_bits)),
      padded_width_(padded_width_for(shape_.output_lwe_dimension)),
      data_(shape_.ciphertext_count() * padded_width_ * (word_bits / 8) + kTailBytes, 0) {
  const std::size_t w = lwe_size(shape_.output_lwe_dimension);
  const std::size_t l = shape_.level_count.value;
  const std::size_t bytes = word_bytes();
  // Chunks write disjoint tiles.
  parallel_for(chunk_count(), threads, 1, [&](std::size_t begin, std::size_t end, unsigned) {
    for (std::size_t c = begin; c < end; ++c) {
      const std::size_t first_row = c * kChunkInputs * l;
      for (std::size_t b = 0; b < block_count(); ++b) {
        std::uint8_t* out = data_.data() + offset(c, b);
        const std::size_t first = b * kBlockWords, width = block_width(b);
        const std::size_t last = std::min(first + width, w);  // words past w are padding: zero
        for (std::size_t r = first_row; r < first_row + chunk_rows(c); ++r, out += width * bytes) {
          const Torus* row = exact.data().data() + r * w;
          if (bytes == 3)
            store_rounded<3>(row, first, last, out);
          else
            store_rounded<4>(row, first, last, out);
        }
      }
    }
  });
}

std::size_t TruncatedKeyswitchKey::chunk_count() const {
  return (shape_.input_lwe_dimension.value + kChunkInputs - 1) / kChunkInputs;
}

std::size_t TruncatedKeyswitchKey::chunk_rows(std::size_t chunk) const {
  const std::size_t n_in = shape_.input_lwe_dimension.value;
  return (std::min(n_in, (chunk + 1) * kChunkInputs) - chunk * kChunkInputs) * shape_.level_count.value;
}

std::size_t TruncatedKeyswitchKey::block_width(std::size_t block) const {
  return std::min(padded_width_, (block + 1) * kBlockWords) - block * kBlockWords;
}

std::size_t TruncatedKeyswitchKey::offset(std::size_t chunk, std::size_t block) const {
  // Every chunk before `chunk` is full; within it, blocks before `block` are kBlockWords wide.
  return (chunk * kChunkInputs * shape_.level_count.value * padded_width_ + chunk_rows(chunk) * block * kBlockWords) *
         word_bytes();
}

const std::uint8_t* TruncatedKeyswitchKey::tile(std::size_t chunk, std::size_t block) const {
  return data_.data() + offset(chunk, block);
}

std::uint32_t TruncatedKeyswitchKey::word(std::size_t input_index, std::size_t level, std::size_t t) const {
  const std::size_t l = shape_.level_count.value;
  if (input_index >= shape_.input_lwe_dimension.value || level >= l || t >= padded_width_)
    throw std::out_of_range("keyswitch key word (" + std::to_string(input_index) + ", " + std::to_string(level) +
                            ", " + std::to_string(t) + ") outside the key");
  const std::size_t chunk = input_index / kChunkInputs, block = t / kBlockWords;
  const std::size_t row = (input_index - chunk * kChunkInputs) * l + level;
  const std::uint8_t* p = tile(chunk, block) + (row * block_width(block) + t % kBlockWords) * word_bytes();
  std::uint32_t v = 0;
  for (std::size_t byte = 0; byte < word_bytes(); ++byte) v |= static_cast<std::uint32_t>(p[byte]) << (8 * byte);
  return v << (32 - word_bits_);
}

namespace {

void check_seeded_bootstrap_key(const SeededLweBootstrapKey& seeded) {
  const GgswShape& g = seeded.shape.ggsw;
  if (seeded.shape.grouping.value == 0 || seeded.shape.input_lwe_dimension.value % seeded.shape.grouping.value != 0)
    throw std::invalid_argument("seeded bootstrap key of dimension " + std::to_string(seeded.shape.input_lwe_dimension.value) +
                                " with grouping " + std::to_string(seeded.shape.grouping.value));
  const std::size_t words = seeded.shape.ggsw_count() * g.row_count() * g.polynomial_size.value;
  if (seeded.bodies.size() != words)
    throw std::invalid_argument("seeded bootstrap key holds " + std::to_string(seeded.bodies.size()) +
                                " body words, its shape needs " + std::to_string(words));
}

// GGSW t of a seeded bootstrap key in the standard domain: masks from the seed's stream at
// t's offset, bodies as stored.
void expand_seeded_ggsw(const SeededLweBootstrapKey& seeded, std::size_t t, std::span<Torus> ggsw) {
  const GgswShape& g = seeded.shape.ggsw;
  const std::size_t n = g.polynomial_size.value;
  const std::size_t k = g.glwe_dimension.value;
  Csprng mask_stream(seeded.seed, t * g.mask_words());
  for (std::size_t r = 0; r < g.row_count(); ++r) {
    auto row = ggsw.subspan(r * g.row_words(), g.row_words());
    mask_stream.fill(row.first(k * n));
    std::copy_n(seeded.bodies.data() + (t * g.row_count() + r) * n, n, row.data() + k * n);
  }
}

}  // namespace

LweBootstrapKey decompress_bootstrap_key(const SeededLweBootstrapKey& seeded, const KeygenOptions& options) {
  check_seeded_bootstrap_key(seeded);
  LweBootstrapKey out(seeded.shape);
  parallel_for(seeded.shape.ggsw_count(), options.threads, 8, [&](std::size_t begin, std::size_t end, unsigned) {
    for (std::size_t t = begin; t < end; ++t) expand_seeded_ggsw(seeded, t, out.ggsw(t));
  });
  return out;
}

LweKeyswitchKey decompress_keyswitch_key(const SeededLweKeyswitchKey& seeded, const KeygenOptions& options) {
  const KeyswitchKeyShape& shape = seeded.shape;
  if (seeded.bodies.size() != shape.ciphertext_count())
    throw std::invalid_argument("seeded keyswitch key holds " + std::to_string(seeded.bodies.size()) +
                                " bodies, its shape needs " + std::to_string(shape.ciphertext_count()));
  const std::size_t n = shape.output_lwe_dimension.value;
  LweKeyswitchKey out(shape);
  auto data = out.data();
  parallel_for(shape.ciphertext_count(), options.threads, 256, [&](std::size_t begin, std::size_t end, unsigned) {
    Csprng mask_stream(seeded.seed, begin * n);
    for (std::size_t c = begin; c < end; ++c) {
      auto ct = data.subspan(c * (n + 1), n + 1);
      mask_stream.fill(ct.first(n));
      ct[n] = seeded.bodies[c];
    }
  });
  return out;
}

namespace {

// Group g of a Fourier bootstrap key from its GGSWs in the standard domain, ggsw(t) giving
// GGSW t (of the group's ggsws_per_group()): each transformed in place into the key
// (grouping 1), or transformed into `spectra` and position-blocked (FourierBootstrapKey).
template <class GgswOf>
void write_fourier_group(const BootstrapKeyShape& shape, std::size_t g, GgswOf ggsw, FourierBootstrapKey& out,
                         AlignedVector<double>& spectra, FftScratch& scratch) {
  const GgswShape& s = shape.ggsw;
  if (shape.grouping.value == 1) {
    convert_ggsw_to_fourier(s, ggsw(0), out.mutable_group(g), scratch);
    return;
  }
  const std::size_t per_group = shape.ggsws_per_group();
  const std::size_t polys = s.row_count() * glwe_size(s.glwe_dimension);  // rows x components
  const std::size_t nn = s.polynomial_size.value;
  spectra.resize(per_group * s.words());
  for (std::size_t b = 0; b < per_group; ++b) convert_ggsw_to_fourier(s, ggsw(b), spectra.data() + b * s.words(), scratch);
  double* block = out.mutable_group(g);
  for (std::size_t c = 0; c < nn / 4; ++c)
    for (std::size_t b = 0; b < per_group; ++b)
      for (std::size_t p = 0; p < polys; ++p)  // p = r * (k+1) + o, the spectra's own order
        std::copy_n(spectra.data() + b * s.words() + p * nn + 4 * c, 4, block + ((c * per_group + b) * polys + p) * 4);
}

}  // namespace

FourierBootstrapKey convert_bootstrap_key_to_fourier(const LweBootstrapKey& bsk, const KeygenOptions& options) {
  const BootstrapKeyShape& shape = bsk.shape();
  FourierBootstrapKey out(shape);
  parallel_for(shape.group_count(), options.threads, 4, [&](std::size_t begin, std::size_t end, unsigned) {
    FftScratch scratch(shape.ggsw.polynomial_size);
    AlignedVector<double> spectra;
    for (std::size_t g = begin; g < end; ++g)
      write_fourier_group(
          shape, g, [&](std::size_t b) { return bsk.ggsw(g * shape.ggsws_per_group() + b); }, out, spectra, scratch);
  });
  return out;
}

FourierBootstrapKey decompress_bootstrap_key_to_fourier(const SeededLweBootstrapKey& seeded,
                                                        const KeygenOptions& options) {
  check_seeded_bootstrap_key(seeded);
  const BootstrapKeyShape& shape = seeded.shape;
  const GgswShape& g = shape.ggsw;
  FourierBootstrapKey out(shape);
  parallel_for(shape.group_count(), options.threads, 4, [&](std::size_t begin, std::size_t end, unsigned) {
    FftScratch scratch(g.polynomial_size);
    AlignedVector<double> spectra;
    const std::size_t per_group = shape.ggsws_per_group();
    AlignedVector<Torus> ggsws(per_group * g.words());
    for (std::size_t group = begin; group < end; ++group) {
      for (std::size_t b = 0; b < per_group; ++b)
        expand_seeded_ggsw(seeded, group * per_group + b, std::span<Torus>(ggsws).subspan(b * g.words(), g.words()));
      write_fourier_group(
          shape, group, [&](std::size_t b) { return std::span<const Torus>(ggsws).subspan(b * g.words(), g.words()); },
          out, spectra, scratch);
    }
  });
  return out;
}

SeededEvaluationKeys generate_seeded_evaluation_keys(const SecretKeys& keys, const KeygenOptions& options) {
  SeededEvaluationKeys out{keys.params, generate_seeded_bootstrap_key(keys, options),
                           generate_seeded_keyswitch_key(keys, options), {}};
  if (keys.params.packs_answers()) out.packing = generate_seeded_packing_key(keys, options);
  return out;
}

EvaluationKeys expand_evaluation_keys(const SeededEvaluationKeys& seeded, const KeygenOptions& options) {
  if (!(seeded.bsk.shape == bootstrap_key_shape(seeded.params)))
    throw std::invalid_argument("bootstrap key shape does not match parameter set " + seeded.params.name);
  if (!(seeded.ksk.shape == keyswitch_key_shape(seeded.params)))
    throw std::invalid_argument("keyswitch key shape does not match parameter set " + seeded.params.name);
  if (!(seeded.packing.shape == packing_key_shape(seeded.params)))
    throw std::invalid_argument("packing key shape does not match parameter set " + seeded.params.name);
  EvaluationKeys out{seeded.params, decompress_bootstrap_key_to_fourier(seeded.bsk, options),
                     TruncatedKeyswitchKey(decompress_keyswitch_key(seeded.ksk, options),
                                           keyswitch_key_word_bits(seeded.params.lwe_dimension, seeded.params.lwe_std_dev),
                                           options.threads),
                     {}};
  if (seeded.params.packs_answers()) out.packing = expand_packing_key(seeded.packing, options);
  return out;
}

LweCiphertext encrypt_message(const SecretKeys& keys, std::uint64_t message, unsigned message_bits) {
  LweCiphertext ct(keys.params.big_lwe_dimension());
  EncryptionRandomness rng = EncryptionRandomness::from_os();
  encrypt_lwe(keys.glwe.flattened(), encode_message(message, message_bits), keys.params.glwe_std_dev, rng, ct.data());
  return ct;
}

std::uint64_t decrypt_message(const SecretKeys& keys, std::span<const Torus> ct, unsigned message_bits) {
  return decode_message(decrypt_lwe_phase(keys.glwe.flattened(), ct), message_bits);
}

}  // namespace veil::tfhe
