// The data objects of the scheme. Operations on them live in lwe.hpp, glwe.hpp, keys.hpp and
// pbs.hpp; (de)serialization in serialization.hpp.
//
// Layouts (all words are torus elements, uint64 modulo 2^64):
//  - LWE ciphertext of dimension n: n mask words a_0..a_(n-1), then the body b;
//    phase = b - <a, s>.
//  - GLWE ciphertext (k, N): k mask polynomials A_0..A_(k-1), then the body polynomial B;
//    phase = B - sum A_i * S_i.
//  - GGSW ciphertext (k, N, beta, l): (k+1)*l GLWE rows; row (i, j) (component i in 0..k,
//    level j in 1..l) is stored at index i*l + (j-1). See glwe.hpp for what each row encrypts.
//  - Bootstrap key: n GGSW ciphertexts of the small key's bits under the GLWE key, or for
//    multi-bit blind rotation 3 per pair of bits (BootstrapKeyShape).
//  - Keyswitch key (k*N -> n, beta_ks, l_ks): for each big-key index i and level j, an LWE
//    ciphertext under the small key of s'_i * 2^(64 - j*beta_ks), stored at (i*l + (j-1)).
//  - Seeded forms keep the seed of the mask stream (csprng.hpp) and the bodies only.
// Secret keys wipe their memory on destruction. Nothing here holds a secret key except
// LweSecretKey and GlweSecretKey.
// Thread safety: plain data; concurrent const access is safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>

#include "veil/tfhe/aligned.hpp"
#include "veil/tfhe/csprng.hpp"
#include "veil/tfhe/dimensions.hpp"

namespace veil::tfhe {

// ---------------------------------------------------------------- secret keys

class LweSecretKey {
 public:
  explicit LweSecretKey(LweDimension n) : dimension_(n), bits_(n.value) {}
  LweDimension dimension() const { return dimension_; }
  std::span<const Torus> bits() const { return bits_; }
  std::span<Torus> mutable_bits() { return bits_; }

 private:
  LweDimension dimension_;
  SecretVector<Torus> bits_;  // each 0 or 1
};

class GlweSecretKey {
 public:
  GlweSecretKey(GlweDimension k, PolynomialSize n) : k_(k), n_(n), bits_(k.value * n.value) {}
  GlweDimension glwe_dimension() const { return k_; }
  PolynomialSize polynomial_size() const { return n_; }
  std::span<const Torus> polynomial(std::size_t i) const { return {bits_.data() + i * n_.value, n_.value}; }
  // The flattened LWE key of dimension k*N that sample extraction produces ciphertexts under.
  std::span<const Torus> flattened() const { return bits_; }
  std::span<Torus> mutable_bits() { return bits_; }

 private:
  GlweDimension k_;
  PolynomialSize n_;
  SecretVector<Torus> bits_;
};

// ---------------------------------------------------------------- LWE

class LweCiphertext {
 public:
  LweCiphertext() = default;
  explicit LweCiphertext(LweDimension n) : data_(lwe_size(n), 0) {}
  LweDimension dimension() const { return LweDimension(data_.size() - 1); }
  std::span<Torus> data() { return data_; }
  std::span<const Torus> data() const { return data_; }
  std::span<const Torus> mask() const { return {data_.data(), data_.size() - 1}; }
  Torus& body() { return data_.back(); }
  Torus body() const { return data_.back(); }

 private:
  AlignedVector<Torus> data_;
};

// `count` ciphertexts of one dimension, contiguous: ciphertext c at [c*(n+1), (c+1)*(n+1)).
class LweCiphertextList {
 public:
  LweCiphertextList() = default;
  LweCiphertextList(LweDimension n, std::size_t count) : dimension_(n), count_(count), data_(count * lwe_size(n), 0) {}
  LweDimension dimension() const { return dimension_; }
  std::size_t count() const { return count_; }
  std::span<Torus> operator[](std::size_t c) { return {data_.data() + c * lwe_size(dimension_), lwe_size(dimension_)}; }
  std::span<const Torus> operator[](std::size_t c) const {
    return {data_.data() + c * lwe_size(dimension_), lwe_size(dimension_)};
  }
  std::span<Torus> data() { return data_; }
  std::span<const Torus> data() const { return data_; }

 private:
  LweDimension dimension_;
  std::size_t count_ = 0;
  AlignedVector<Torus> data_;
};

// Fresh ciphertexts as (seed, bodies): the masks are the mask stream of `seed`, ciphertext c
// drawing words [c*n, (c+1)*n). 8 bytes per ciphertext plus one seed.
struct SeededLweCiphertextList {
  LweDimension dimension;
  Seed seed;
  AlignedVector<Torus> bodies;
  std::size_t count() const { return bodies.size(); }
};

// ---------------------------------------------------------------- GLWE / GGSW

class GlweCiphertext {
 public:
  GlweCiphertext(GlweDimension k, PolynomialSize n) : k_(k), n_(n), data_(glwe_size(k) * n.value, 0) {}
  GlweDimension glwe_dimension() const { return k_; }
  PolynomialSize polynomial_size() const { return n_; }
  std::span<Torus> polynomial(std::size_t i) { return {data_.data() + i * n_.value, n_.value}; }
  std::span<const Torus> polynomial(std::size_t i) const { return {data_.data() + i * n_.value, n_.value}; }
  std::span<Torus> body() { return polynomial(k_.value); }
  std::span<Torus> data() { return data_; }
  std::span<const Torus> data() const { return data_; }

 private:
  GlweDimension k_;
  PolynomialSize n_;
  AlignedVector<Torus> data_;
};

struct GgswShape {
  GlweDimension glwe_dimension;
  PolynomialSize polynomial_size;
  DecompositionBaseLog base_log;
  DecompositionLevelCount level_count;

  std::size_t row_count() const { return glwe_size(glwe_dimension) * level_count.value; }
  std::size_t row_words() const { return glwe_size(glwe_dimension) * polynomial_size.value; }
  std::size_t words() const { return row_count() * row_words(); }
  // Mask words drawn from the mask stream per GGSW: every row's k mask polynomials.
  std::size_t mask_words() const { return row_count() * glwe_dimension.value * polynomial_size.value; }
  friend bool operator==(const GgswShape&, const GgswShape&) = default;
};

class GgswCiphertext {
 public:
  explicit GgswCiphertext(const GgswShape& shape) : shape_(shape), data_(shape.words(), 0) {}
  const GgswShape& shape() const { return shape_; }
  std::span<Torus> row(std::size_t r) { return {data_.data() + r * shape_.row_words(), shape_.row_words()}; }
  std::span<const Torus> row(std::size_t r) const {
    return {data_.data() + r * shape_.row_words(), shape_.row_words()};
  }
  std::span<Torus> data() { return data_; }
  std::span<const Torus> data() const { return data_; }

 private:
  GgswShape shape_;
  AlignedVector<Torus> data_;
};

// A GGSW with every row polynomial forward-transformed (interleaved spectra of N doubles:
// Fft::forward_torus_interleaved).
class FourierGgswCiphertext {
 public:
  explicit FourierGgswCiphertext(const GgswShape& shape) : shape_(shape), data_(shape.words(), 0.0) {}
  const GgswShape& shape() const { return shape_; }
  // Spectrum of polynomial `component` of row `r`.
  const double* spectrum(std::size_t r, std::size_t component) const {
    return data_.data() + (r * glwe_size(shape_.glwe_dimension) + component) * shape_.polynomial_size.value;
  }
  double* spectrum(std::size_t r, std::size_t component) {
    return data_.data() + (r * glwe_size(shape_.glwe_dimension) + component) * shape_.polynomial_size.value;
  }

 private:
  GgswShape shape_;
  AlignedVector<double> data_;
};

// ---------------------------------------------------------------- bootstrap key

// Classical (grouping d = 1): GGSW i encrypts the small-key bit s_i. Multi-bit (d = 2): the
// bits are taken in pairs (s_2g, s_2g+1), and group g holds 2^d - 1 = 3 GGSWs, GGSW
// g * 3 + (b - 1) encrypting the indicator [s_2g + 2 s_2g+1 = b] for b = 1, 2, 3, so that
// X^(a~_2g s_2g + a~_2g+1 s_2g+1) = 1 + sum_b [s = b] (X^(e_b) - 1) with e_1 = a~_2g,
// e_2 = a~_2g+1, e_3 = their sum (pbs.hpp).
struct BootstrapKeyShape {
  LweDimension input_lwe_dimension;  // n
  GgswShape ggsw;
  GroupingFactor grouping{1};
  std::size_t group_count() const { return input_lwe_dimension.value / grouping.value; }
  std::size_t ggsws_per_group() const { return (std::size_t{1} << grouping.value) - 1; }
  std::size_t ggsw_count() const { return group_count() * ggsws_per_group(); }
  std::size_t words() const { return ggsw_count() * ggsw.words(); }
  friend bool operator==(const BootstrapKeyShape&, const BootstrapKeyShape&) = default;
};

// Standard-domain bootstrap key: exact and portable; what the unseeded file holds.
class LweBootstrapKey {
 public:
  explicit LweBootstrapKey(const BootstrapKeyShape& shape) : shape_(shape), data_(shape.words(), 0) {}
  const BootstrapKeyShape& shape() const { return shape_; }
  std::span<Torus> ggsw(std::size_t i) { return {data_.data() + i * shape_.ggsw.words(), shape_.ggsw.words()}; }
  std::span<const Torus> ggsw(std::size_t i) const {
    return {data_.data() + i * shape_.ggsw.words(), shape_.ggsw.words()};
  }
  std::span<Torus> data() { return data_; }
  std::span<const Torus> data() const { return data_; }

 private:
  BootstrapKeyShape shape_;
  AlignedVector<Torus> data_;
};

// Seeded bootstrap key: the mask stream of `seed` gives GGSW i's masks at word offset
// i * ggsw.mask_words(), row by row, mask polynomial by mask polynomial; only bodies are kept
// (ggsw_count() * (k+1) * l * N words).
struct SeededLweBootstrapKey {
  BootstrapKeyShape shape;
  Seed seed;
  AlignedVector<Torus> bodies;
};

// The bootstrap key as blind rotation uses it: every GGSW in the Fourier domain, group after
// group, so that one blind rotation streams it once.
//  - Classical (d = 1): GGSW after GGSW, each as a FourierGgswCiphertext (spectrum()).
//  - Multi-bit (d = 2): group g's three GGSWs in one block (group()) of 3 * ggsw.words()
//    doubles, position-blocked: for every 4 doubles of spectrum (2 complex points) c, for
//    every GGSW b, row r and component o, the 4 doubles of that spectrum at c, at
//    ((c * 3 + b) * rows + r) * (k+1) + o, times 4. The multi-bit multiply-add reads the 27
//    spectra of the 4-bit set's group at once; as 27 streams 8 KB apart they ran at a third
//    of the bandwidth one sequential stream gets (docs/perf-log.md).
class FourierBootstrapKey {
 public:
  explicit FourierBootstrapKey(const BootstrapKeyShape& shape) : shape_(shape), data_(shape.words(), 0.0) {}
  const BootstrapKeyShape& shape() const { return shape_; }
  // Spectrum of polynomial `component` of row `r` of GGSW `i`. REQUIRES: grouping 1.
  const double* spectrum(std::size_t i, std::size_t r, std::size_t component) const {
    return data_.data() + i * shape_.ggsw.words() +
           (r * glwe_size(shape_.ggsw.glwe_dimension) + component) * shape_.ggsw.polynomial_size.value;
  }
  // Group g's block (any grouping; for grouping 1 the GGSW g).
  const double* group(std::size_t g) const { return data_.data() + g * group_words(); }
  double* mutable_group(std::size_t g) { return data_.data() + g * group_words(); }
  std::size_t group_words() const { return shape_.ggsws_per_group() * shape_.ggsw.words(); }
  std::size_t bytes() const { return data_.size() * sizeof(double); }

 private:
  BootstrapKeyShape shape_;
  AlignedVector<double> data_;
};

// ---------------------------------------------------------------- keyswitch key

struct KeyswitchKeyShape {
  LweDimension input_lwe_dimension;   // k*N
  LweDimension output_lwe_dimension;  // n
  DecompositionBaseLog base_log;
  DecompositionLevelCount level_count;
  std::size_t ciphertext_count() const { return input_lwe_dimension.value * level_count.value; }
  std::size_t words() const { return ciphertext_count() * lwe_size(output_lwe_dimension); }
  friend bool operator==(const KeyswitchKeyShape&, const KeyswitchKeyShape&) = default;
};

class LweKeyswitchKey {
 public:
  explicit LweKeyswitchKey(const KeyswitchKeyShape& shape) : shape_(shape), data_(shape.words(), 0) {}
  const KeyswitchKeyShape& shape() const { return shape_; }
  // The encryption of s'_i * 2^(64 - (level+1)*beta): `level` is 0-based here.
  std::span<const Torus> ciphertext(std::size_t input_index, std::size_t level) const {
    const std::size_t w = lwe_size(shape_.output_lwe_dimension);
    return {data_.data() + (input_index * shape_.level_count.value + level) * w, w};
  }
  std::span<Torus> data() { return data_; }
  std::span<const Torus> data() const { return data_; }

 private:
  KeyswitchKeyShape shape_;
  AlignedVector<Torus> data_;
};

// The keyswitch key as keyswitch() uses it: every word rounded to its top 24 or 32 bits
// (keyswitch_key_word_bits in parameters.hpp chooses, and keyswitch_variance counts the
// rounding), laid out in tiles for a kernel that keeps its sums in registers. The keyswitch
// result only feeds the modulus switch to 2N <= 2^17, so the dropped low bits carry nothing
// the blind rotation can see beyond the counted rounding, and the keyswitch, memory-bound,
// streams 3 or 4 bytes a word instead of 8. Built by the server from the exact key; never
// serialized.
//
// Layout. Rows are r = i*l + (j-1) as in the exact key; each row's lwe_size(n) words are
// padded with zeros to padded_width(), a multiple of 8. Rows are cut into chunks of
// kChunkInputs input words (kChunkInputs * l rows; the last chunk may be shorter) and columns
// into blocks of kBlockWords (the last block may be narrower). Tile (chunk c, block b) holds,
// row by row, that row's words of block b; tiles follow each other block-minor:
// (0,0), (0,1), ..., (1,0), ... A word is stored little-endian in word_bits / 8 bytes, and
// the key is followed by kTailBytes of zeros so that a kernel may read 16 bytes at the start
// of any 12-byte group and 64 bytes at the start of any 48-byte group.
class TruncatedKeyswitchKey {
 public:
  static constexpr std::size_t kBlockWords = 64;
  static constexpr std::size_t kChunkInputs = 64;
  static constexpr std::size_t kTailBytes = 16;

  // REQUIRES: word_bits is 24 or 32 (throws std::invalid_argument otherwise). Built on
  // `threads` threads (0: all hardware threads).
  TruncatedKeyswitchKey(const LweKeyswitchKey& exact, unsigned word_bits, unsigned threads = 0);
  const KeyswitchKeyShape& shape() const { return shape_; }
  unsigned word_bits() const { return word_bits_; }
  std::size_t word_bytes() const { return word_bits_ / 8; }
  std::size_t padded_width() const { return padded_width_; }
  // lwe_size(n) rounded up to a multiple of 8: the words a row holds, and the sums a
  // keyswitch needs (KeyswitchScratch).
  static std::size_t padded_width_for(LweDimension output_dimension) {
    return (lwe_size(output_dimension) + 7) / 8 * 8;
  }
  std::size_t chunk_count() const;
  std::size_t block_count() const { return (padded_width_ + kBlockWords - 1) / kBlockWords; }
  // Rows of chunk c (kChunkInputs * l but for the last) and words per row of block b.
  std::size_t chunk_rows(std::size_t chunk) const;
  std::size_t block_width(std::size_t block) const;
  const std::uint8_t* tile(std::size_t chunk, std::size_t block) const;
  // Word t of row (input_index, level) (level 0-based) as the top 32 bits of the torus word
  // it stands for: the stored bits, shifted up by 32 - word_bits. For tests and tools.
  std::uint32_t word(std::size_t input_index, std::size_t level, std::size_t t) const;
  const std::uint8_t* data() const { return data_.data(); }
  // The key's bytes as stored, padding and tail included.
  std::size_t bytes() const { return data_.size(); }

 private:
  std::size_t offset(std::size_t chunk, std::size_t block) const;
  KeyswitchKeyShape shape_;
  unsigned word_bits_;
  std::size_t padded_width_;
  AlignedVector<std::uint8_t> data_;
};

// Seeded keyswitch key: ciphertext c = i*l + (j-1) draws mask words [c*n, (c+1)*n).
struct SeededLweKeyswitchKey {
  KeyswitchKeyShape shape;
  Seed seed;
  AlignedVector<Torus> bodies;  // ciphertext_count() words
};

// ---------------------------------------------------------------- packing key (packing.hpp)

struct PackingKeyShape {
  LweDimension input_lwe_dimension;  // K = k*N
  GlweDimension glwe_dimension;      // k' (K / N', or less for a shorter answer key)
  PolynomialSize polynomial_size;    // N'
  DecompositionBaseLog base_log;
  DecompositionLevelCount level_count;
  std::size_t ciphertext_count() const { return input_lwe_dimension.value * level_count.value; }
  std::size_t mask_words() const { return glwe_dimension.value * polynomial_size.value; }
  std::size_t ciphertext_words() const { return mask_words() + polynomial_size.value; }
  friend bool operator==(const PackingKeyShape&, const PackingKeyShape&) = default;
};
// Seeded: ciphertext c = i*l + (j-1) draws its mask words [c*k'N', (c+1)*k'N') from the seed's
// stream; the bodies travel rounded to bootstrap_key_body_bits of the answer key's noise
// (ParameterSet::answer_noise()).
struct SeededPackingKey {
  PackingKeyShape shape;
  Seed seed;
  AlignedVector<Torus> bodies;  // ciphertext_count() * N' words
};

// Expanded: ciphertext c is words [c*(k'+1)N', (c+1)*(k'+1)N'), coefficient-major: word
// u*(k'+1) + q is coefficient u of polynomial q (the k' masks, then the body), so that the
// packing keyswitch's inner loop runs over the polynomials of one coefficient.
class PackingKey {
 public:
  PackingKey() = default;
  explicit PackingKey(const PackingKeyShape& shape) : shape_(shape), data_(shape.ciphertext_count() * shape.ciphertext_words(), 0) {}
  const PackingKeyShape& shape() const { return shape_; }
  bool empty() const { return data_.empty(); }
  std::span<const Torus> ciphertext(std::size_t input_index, std::size_t level) const {
    const std::size_t w = shape_.ciphertext_words();
    return {data_.data() + (input_index * shape_.level_count.value + level) * w, w};
  }
  std::span<Torus> data() { return data_; }
  std::span<const Torus> data() const { return data_; }
  std::size_t bytes() const { return data_.size() * sizeof(Torus); }

 private:
  PackingKeyShape shape_{};
  AlignedVector<Torus> data_;
};

}  // namespace veil::tfhe
