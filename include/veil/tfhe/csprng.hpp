// Randomness: an AES-128-CTR stream generator, seeds from the operating system, and the
// Gaussian sampler used for encryption noise.
//
// Two kinds of generator are used, never mixed:
//  - mask generators: keyed by a public Seed; the masks of keys and fresh ciphertexts are
//    drawn from them so that a ciphertext can travel as (seed, bodies) and be expanded by
//    the receiver to exactly the same words (see SeededLweCiphertextList and friends);
//  - secret generators: keyed from getrandom(); they draw secret keys and noise. (The
//    WebAssembly build draws them from ChaCha20 instead: src/tfhe/portable_crypto.hpp.)
// The stream is defined byte for byte: AES-128 in counter mode with a 128-bit big-endian
// block counter starting at 0, key = seed; word i of the stream is bytes [8i, 8i + 8) read
// little-endian. Any position can be reached directly (at()), which lets key generation
// and decompression run in parallel and still draw "in order".
// Thread safety: a Csprng is a mutable object; use one per thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "veil/tfhe/dimensions.hpp"

namespace veil::tfhe {

struct Seed {
  std::array<std::uint8_t, 16> bytes{};
  friend bool operator==(const Seed&, const Seed&) = default;
};

// 16 bytes from the operating system's CSPRNG (getrandom; in WebAssembly the host's
// crypto.getRandomValues). Throws std::runtime_error if it refuses.
Seed os_random_seed();

class Csprng {
 public:
  // The stream keyed by `seed`, positioned at word `word_offset`.
  explicit Csprng(const Seed& seed, std::uint64_t word_offset = 0);
  // A secret generator keyed from the operating system.
  static Csprng from_os();

  Csprng(Csprng&&) noexcept;
  Csprng& operator=(Csprng&&) noexcept;
  Csprng(const Csprng&) = delete;
  Csprng& operator=(const Csprng&) = delete;
  ~Csprng();

  std::uint64_t next_u64() {
    if (pos_ == kBufferWords) refill();
    return buffer_[pos_++];
  }
  // Uniform words; identical to calling next_u64() out.size() times.
  void fill(std::span<Torus> out);
  // Uniform bits in {0, 1}, one per word drawn (simple and order-defined).
  void fill_binary(std::span<Torus> out);
  // A double uniform in (0, 1], 53 bits of precision.
  double next_unit_double() {
    return static_cast<double>((next_u64() >> 11) + 1) * 0x1.0p-53;
  }

 private:
  static constexpr std::size_t kBufferWords = 512;
  struct Cipher;
  explicit Csprng(std::unique_ptr<Cipher> cipher);
  void refill();

  std::unique_ptr<Cipher> cipher_;
  std::array<std::uint64_t, kBufferWords> buffer_{};
  std::size_t pos_ = kBufferWords;
};

// Gaussian noise of standard deviation `std_dev` (relative to q = 2^64), rounded to the
// nearest torus element. A std_dev of 0 gives exact zeros (used only by tests).
class GaussianSampler {
 public:
  explicit GaussianSampler(double std_dev) : std_dev_(std_dev) {}
  Torus sample(Csprng& rng);
  double std_dev() const { return std_dev_; }

 private:
  double std_dev_;
  bool has_spare_ = false;
  double spare_ = 0.0;
};

}  // namespace veil::tfhe
