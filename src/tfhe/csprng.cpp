#include "veil/tfhe/csprng.hpp"

#if defined(__EMSCRIPTEN__)
#include <emscripten.h>
#else
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/mman.h>
#include <sys/random.h>
#endif

#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <numbers>
#include <optional>
#include <stdexcept>
#include <string>

#include "portable_crypto.hpp"
#include "veil/tfhe/aligned.hpp"

static_assert(std::endian::native == std::endian::little,
              "Veil's stream and file formats are little-endian; port the word decoding first");

namespace veil::tfhe {

#if defined(__EMSCRIPTEN__)
// WebAssembly (the browser and Node client, wasm/): no OpenSSL and no system calls. Entropy
// comes from the host's CSPRNG through one hook, crypto.getRandomValues (browsers, workers
// and Node 20 all have it; it takes at most 65536 bytes a call). The mask stream is Veil's own
// AES-128-CTR, byte for byte OpenSSL's; the secret stream is ChaCha20 (portable_crypto.hpp).
namespace {

// clang-format off
EM_JS(int, veil_host_random, (std::uint8_t* out, std::size_t bytes), {
  try {
    if (typeof globalThis.crypto === "undefined" || typeof globalThis.crypto.getRandomValues !== "function") return 1;
    globalThis.crypto.getRandomValues(HEAPU8.subarray(out, out + bytes));
    return 0;
  } catch (e) {
    return 2;
  }
});
// clang-format on

void os_random_bytes(std::uint8_t* out, std::size_t bytes) {
  for (std::size_t done = 0; done < bytes;) {
    const std::size_t take = std::min<std::size_t>(bytes - done, 65536);
    if (veil_host_random(out + done, take) != 0)
      throw std::runtime_error("no entropy: the host has no crypto.getRandomValues, or it failed");
    done += take;
  }
}

}  // namespace

void secure_wipe(void* p, std::size_t bytes) noexcept {
  // Volatile stores: the compiler may not drop them as dead.
  auto* q = static_cast<volatile std::uint8_t*>(p);
  for (std::size_t i = 0; i < bytes; ++i) q[i] = 0;
}

void advise_huge_pages(void*, std::size_t) noexcept {}

Seed os_random_seed() {
  Seed seed;
  os_random_bytes(seed.bytes.data(), seed.bytes.size());
  return seed;
}

struct Csprng::Cipher {
  std::optional<Aes128Ctr> mask;                // keyed by a public seed
  std::array<std::uint32_t, 8> secret_key{};  // ChaCha20, when mask is empty
  std::uint64_t next_block = 0;
  ~Cipher() { secure_wipe(secret_key.data(), sizeof(secret_key)); }
};

Csprng::Csprng(const Seed& seed, std::uint64_t word_offset) : cipher_(std::make_unique<Cipher>()) {
  cipher_->mask.emplace(seed.bytes);
  cipher_->next_block = word_offset / 2;  // a 16-byte block holds two words
  refill();
  pos_ = static_cast<std::size_t>(word_offset % 2);
}

Csprng Csprng::from_os() {
  auto cipher = std::make_unique<Cipher>();
  std::array<std::uint8_t, 32> key{};
  os_random_bytes(key.data(), key.size());
  for (std::size_t i = 0; i < 8; ++i)
    cipher->secret_key[i] = std::uint32_t{key[4 * i]} | (std::uint32_t{key[4 * i + 1]} << 8) |
                            (std::uint32_t{key[4 * i + 2]} << 16) | (std::uint32_t{key[4 * i + 3]} << 24);
  secure_wipe(key.data(), key.size());
  return Csprng(std::move(cipher));
}

void Csprng::refill() {
  auto* out = reinterpret_cast<std::uint8_t*>(buffer_.data());
  constexpr std::size_t kBytes = kBufferWords * sizeof(std::uint64_t);
  if (cipher_->mask) {
    cipher_->mask->keystream(cipher_->next_block, out, kBytes / 16);
    cipher_->next_block += kBytes / 16;
  } else {
    chacha20_blocks(cipher_->secret_key, 0, cipher_->next_block, out, kBytes / 64);
    cipher_->next_block += kBytes / 64;
  }
  pos_ = 0;
}

#else

void secure_wipe(void* p, std::size_t bytes) noexcept {
  if (p != nullptr && bytes != 0) OPENSSL_cleanse(p, bytes);
}

void advise_huge_pages(void* p, std::size_t bytes) noexcept {
  // Advice only: where transparent huge pages are off, or the kernel refuses, the buffer
  // simply stays on 4 KiB pages.
  (void)madvise(p, bytes, MADV_HUGEPAGE);
}

Seed os_random_seed() {
  Seed seed;
  std::size_t got = 0;
  while (got < seed.bytes.size()) {
    ssize_t r = getrandom(seed.bytes.data() + got, seed.bytes.size() - got, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(std::string("getrandom failed: ") + std::strerror(errno));
    }
    got += static_cast<std::size_t>(r);
  }
  return seed;
}

struct Csprng::Cipher {
  EVP_CIPHER_CTX* ctx = nullptr;
  ~Cipher() { EVP_CIPHER_CTX_free(ctx); }
};

Csprng::Csprng(const Seed& seed, std::uint64_t word_offset) : cipher_(std::make_unique<Cipher>()) {
  cipher_->ctx = EVP_CIPHER_CTX_new();
  if (cipher_->ctx == nullptr) throw std::runtime_error("EVP_CIPHER_CTX_new failed");
  // 128-bit big-endian block counter; a block holds two words.
  std::uint64_t block = word_offset / 2;
  std::array<std::uint8_t, 16> iv{};
  for (int i = 0; i < 8; ++i) iv[15 - i] = static_cast<std::uint8_t>(block >> (8 * i));
  if (EVP_EncryptInit_ex(cipher_->ctx, EVP_aes_128_ctr(), nullptr, seed.bytes.data(), iv.data()) != 1)
    throw std::runtime_error("AES-128-CTR initialisation failed");
  refill();
  pos_ = static_cast<std::size_t>(word_offset % 2);
}

Csprng Csprng::from_os() { return Csprng(os_random_seed()); }

void Csprng::refill() {
  static constexpr std::array<std::uint8_t, kBufferWords * 8> kZeros{};
  int out_len = 0;
  auto* out = reinterpret_cast<unsigned char*>(buffer_.data());
  if (EVP_EncryptUpdate(cipher_->ctx, out, &out_len, kZeros.data(), static_cast<int>(kZeros.size())) != 1 ||
      out_len != static_cast<int>(kZeros.size()))
    throw std::runtime_error("AES-128-CTR keystream generation failed");
  pos_ = 0;
}

#endif

Csprng::Csprng(std::unique_ptr<Cipher> cipher) : cipher_(std::move(cipher)) { refill(); }
Csprng::Csprng(Csprng&&) noexcept = default;
Csprng& Csprng::operator=(Csprng&&) noexcept = default;
Csprng::~Csprng() { secure_wipe(buffer_.data(), sizeof(buffer_)); }

void Csprng::fill(std::span<Torus> out) {
  std::size_t i = 0;
  while (i < out.size()) {
    if (pos_ == kBufferWords) refill();
    std::size_t take = std::min(out.size() - i, kBufferWords - pos_);
    std::memcpy(out.data() + i, buffer_.data() + pos_, take * sizeof(Torus));
    pos_ += take;
    i += take;
  }
}

void Csprng::fill_binary(std::span<Torus> out) {
  for (auto& x : out) x = next_u64() & 1;
}

Torus GaussianSampler::sample(Csprng& rng) {
  if (std_dev_ == 0.0) return 0;
  double z;
  if (has_spare_) {
    z = spare_;
    has_spare_ = false;
  } else {
    // Box-Muller: two independent N(0, 1) from two uniforms in (0, 1].
    double u1 = rng.next_unit_double();
    double u2 = rng.next_unit_double();
    double r = std::sqrt(-2.0 * std::log(u1));
    double t = 2.0 * std::numbers::pi * u2;
    z = r * std::cos(t);
    spare_ = r * std::sin(t);
    has_spare_ = true;
  }
  // std_dev is relative to q = 2^64; the noise in torus units fits easily in an int64 for
  // every secure parameter set (std_dev < 2^-10).
  double e = std::nearbyint(z * std_dev_ * 0x1.0p64);
  // Deliberately noisy toy sets (tests only) can exceed the int64 range: reduce mod 2^64.
  e = std::fmod(e, 0x1.0p64);
  if (e >= 0x1.0p63) e -= 0x1.0p64;
  if (e < -0x1.0p63) e += 0x1.0p64;
  return static_cast<Torus>(static_cast<std::int64_t>(e));
}

}  // namespace veil::tfhe
