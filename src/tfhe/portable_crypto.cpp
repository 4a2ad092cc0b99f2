#include "portable_crypto.hpp"

#include <algorithm>
#include <cstring>

#include "veil/tfhe/aligned.hpp"

namespace veil::tfhe {
namespace {

// Multiplication by x in GF(2^8) modulo x^8 + x^4 + x^3 + x + 1.
constexpr std::uint8_t times_x(std::uint8_t a) {
  return static_cast<std::uint8_t>((a << 1) ^ ((a & 0x80) != 0 ? 0x1b : 0));
}

constexpr std::uint8_t gf_multiply(std::uint8_t a, std::uint8_t b) {
  std::uint8_t product = 0;
  for (int bit = 0; bit < 8; ++bit) {
    if ((b >> bit) & 1) product ^= a;
    a = times_x(a);
  }
  return product;
}

constexpr std::uint8_t rotate_left(std::uint8_t x, int s) {
  return static_cast<std::uint8_t>((x << s) | (x >> (8 - s)));
}

// The S-box from its definition: the multiplicative inverse (x^254; 0 maps to 0) followed by
// the affine map b ^ rotl(b,1) ^ rotl(b,2) ^ rotl(b,3) ^ rotl(b,4) ^ 0x63 (FIPS-197, 5.1.1).
struct Tables {
  std::array<std::uint8_t, 256> sbox{};
  std::array<std::uint32_t, 256> te{};  // (2 S, S, S, 3 S) as a big-endian word: MixColumns of one byte
  constexpr Tables() {
    for (int x = 0; x < 256; ++x) {
      std::uint8_t inverse = 1;
      std::uint8_t power = static_cast<std::uint8_t>(x);
      for (int e = 254; e != 0; e >>= 1) {  // square and multiply
        if (e & 1) inverse = gf_multiply(inverse, power);
        power = gf_multiply(power, power);
      }
      if (x == 0) inverse = 0;
      const std::uint8_t s = static_cast<std::uint8_t>(inverse ^ rotate_left(inverse, 1) ^ rotate_left(inverse, 2) ^
                                                       rotate_left(inverse, 3) ^ rotate_left(inverse, 4) ^ 0x63);
      sbox[static_cast<std::size_t>(x)] = s;
      te[static_cast<std::size_t>(x)] = (std::uint32_t{times_x(s)} << 24) | (std::uint32_t{s} << 16) |
                                        (std::uint32_t{s} << 8) | std::uint32_t(times_x(s) ^ s);
    }
  }
};

constexpr Tables kTables{};

constexpr std::uint32_t rotr(std::uint32_t x, int s) { return (x >> s) | (x << (32 - s)); }
constexpr std::uint32_t rotl(std::uint32_t x, int s) { return (x << s) | (x >> (32 - s)); }

std::uint32_t load_be(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
}
void store_be(std::uint32_t v, std::uint8_t* p) {
  p[0] = static_cast<std::uint8_t>(v >> 24);
  p[1] = static_cast<std::uint8_t>(v >> 16);
  p[2] = static_cast<std::uint8_t>(v >> 8);
  p[3] = static_cast<std::uint8_t>(v);
}

std::uint32_t sub_word(std::uint32_t w) {
  const auto& s = kTables.sbox;
  return (std::uint32_t{s[w >> 24]} << 24) | (std::uint32_t{s[(w >> 16) & 0xff]} << 16) |
         (std::uint32_t{s[(w >> 8) & 0xff]} << 8) | s[w & 0xff];
}

}  // namespace

Aes128Ctr::Aes128Ctr(const std::array<std::uint8_t, 16>& key) {
  for (int i = 0; i < 4; ++i) round_keys_[static_cast<std::size_t>(i)] = load_be(key.data() + 4 * i);
  std::uint32_t round_constant = 1;
  for (std::size_t i = 4; i < 44; ++i) {
    std::uint32_t t = round_keys_[i - 1];
    if (i % 4 == 0) {
      t = sub_word(rotl(t, 8)) ^ (round_constant << 24);
      round_constant = times_x(static_cast<std::uint8_t>(round_constant));
    }
    round_keys_[i] = round_keys_[i - 4] ^ t;
  }
}

Aes128Ctr::~Aes128Ctr() { secure_wipe(round_keys_.data(), sizeof(round_keys_)); }

void Aes128Ctr::encrypt_block(const std::uint8_t in[16], std::uint8_t out[16]) const {
  const auto& te = kTables.te;
  const auto& sbox = kTables.sbox;
  const std::uint32_t* rk = round_keys_.data();
  std::uint32_t s0 = load_be(in) ^ rk[0], s1 = load_be(in + 4) ^ rk[1];
  std::uint32_t s2 = load_be(in + 8) ^ rk[2], s3 = load_be(in + 12) ^ rk[3];
  // Rounds 1..9: SubBytes, ShiftRows (column c takes row r from column c + r) and
  // MixColumns through the table, then the round key.
  const auto column = [&](std::uint32_t a, std::uint32_t b, std::uint32_t c, std::uint32_t d) {
    return te[a >> 24] ^ rotr(te[(b >> 16) & 0xff], 8) ^ rotr(te[(c >> 8) & 0xff], 16) ^ rotr(te[d & 0xff], 24);
  };
  for (int round = 1; round < 10; ++round) {
    rk += 4;
    const std::uint32_t t0 = column(s0, s1, s2, s3) ^ rk[0];
    const std::uint32_t t1 = column(s1, s2, s3, s0) ^ rk[1];
    const std::uint32_t t2 = column(s2, s3, s0, s1) ^ rk[2];
    const std::uint32_t t3 = column(s3, s0, s1, s2) ^ rk[3];
    s0 = t0, s1 = t1, s2 = t2, s3 = t3;
  }
  // Round 10: no MixColumns.
  rk += 4;
  const auto last = [&](std::uint32_t a, std::uint32_t b, std::uint32_t c, std::uint32_t d) {
    return (std::uint32_t{sbox[a >> 24]} << 24) | (std::uint32_t{sbox[(b >> 16) & 0xff]} << 16) |
           (std::uint32_t{sbox[(c >> 8) & 0xff]} << 8) | sbox[d & 0xff];
  };
  store_be(last(s0, s1, s2, s3) ^ rk[0], out);
  store_be(last(s1, s2, s3, s0) ^ rk[1], out + 4);
  store_be(last(s2, s3, s0, s1) ^ rk[2], out + 8);
  store_be(last(s3, s0, s1, s2) ^ rk[3], out + 12);
}

void Aes128Ctr::keystream(std::uint64_t first_block, std::uint8_t* out, std::size_t blocks) const {
  std::uint8_t counter[16] = {};
  for (std::size_t b = 0; b < blocks; ++b) {
    const std::uint64_t index = first_block + b;
    for (int i = 0; i < 8; ++i) counter[15 - i] = static_cast<std::uint8_t>(index >> (8 * i));
    encrypt_block(counter, out + 16 * b);
  }
}

void chacha20_blocks(const std::array<std::uint32_t, 8>& key, std::uint64_t nonce, std::uint64_t first_counter,
                     std::uint8_t* out, std::size_t blocks) {
  for (std::size_t b = 0; b < blocks; ++b) {
    const std::uint64_t counter = first_counter + b;
    std::array<std::uint32_t, 16> input = {0x61707865, 0x3320646e, 0x79622d32, 0x6b206574};  // "expand 32-byte k"
    for (std::size_t i = 0; i < 8; ++i) input[4 + i] = key[i];
    input[12] = static_cast<std::uint32_t>(counter);
    input[13] = static_cast<std::uint32_t>(counter >> 32);
    input[14] = static_cast<std::uint32_t>(nonce);
    input[15] = static_cast<std::uint32_t>(nonce >> 32);
    std::array<std::uint32_t, 16> x = input;
    const auto quarter = [&x](std::size_t a, std::size_t b2, std::size_t c, std::size_t d) {
      x[a] += x[b2], x[d] = rotl(x[d] ^ x[a], 16);
      x[c] += x[d], x[b2] = rotl(x[b2] ^ x[c], 12);
      x[a] += x[b2], x[d] = rotl(x[d] ^ x[a], 8);
      x[c] += x[d], x[b2] = rotl(x[b2] ^ x[c], 7);
    };
    for (int round = 0; round < 10; ++round) {  // 20 rounds: a column and a diagonal round each
      quarter(0, 4, 8, 12), quarter(1, 5, 9, 13), quarter(2, 6, 10, 14), quarter(3, 7, 11, 15);
      quarter(0, 5, 10, 15), quarter(1, 6, 11, 12), quarter(2, 7, 8, 13), quarter(3, 4, 9, 14);
    }
    for (std::size_t i = 0; i < 16; ++i) {
      const std::uint32_t v = x[i] + input[i];
      std::uint8_t* p = out + 64 * b + 4 * i;
      p[0] = static_cast<std::uint8_t>(v), p[1] = static_cast<std::uint8_t>(v >> 8);
      p[2] = static_cast<std::uint8_t>(v >> 16), p[3] = static_cast<std::uint8_t>(v >> 24);
    }
    secure_wipe(x.data(), sizeof(x));
    secure_wipe(input.data(), sizeof(input));
  }
}

namespace {

// floor(r * 2^32) mod 2^32 for r = p^(1/root), root 2 or 3: the fractional bits of SHA-256's
// constants, found exactly as the largest x with x^root <= p * 2^(32 root) (integer search,
// no floating point that could round the last bit wrong).
constexpr std::uint32_t fraction_bits(unsigned p, unsigned root) {
  using u128 = unsigned __int128;
  const u128 target = static_cast<u128>(p) << (32 * root);
  std::uint64_t low = 0, high = std::uint64_t{1} << 40;  // p^(1/2) * 2^32 < 2^37 for p < 2^10
  while (high - low > 1) {
    const std::uint64_t mid = low + (high - low) / 2;
    u128 power = mid;
    for (unsigned i = 1; i < root; ++i) power *= mid;
    (power <= target ? low : high) = mid;
  }
  return static_cast<std::uint32_t>(low);
}

struct Sha256Constants {
  std::array<std::uint32_t, 64> k{};    // cube roots of the first 64 primes
  std::array<std::uint32_t, 8> init{};  // square roots of the first 8
  constexpr Sha256Constants() {
    unsigned found = 0;
    for (unsigned candidate = 2; found < 64; ++candidate) {
      bool prime = true;
      for (unsigned d = 2; d * d <= candidate; ++d)
        if (candidate % d == 0) prime = false;
      if (!prime) continue;
      k[found] = fraction_bits(candidate, 3);
      if (found < 8) init[found] = fraction_bits(candidate, 2);
      ++found;
    }
  }
};
constexpr Sha256Constants kSha256{};
static_assert(kSha256.k[0] == 0x428a2f98 && kSha256.k[63] == 0xc67178f2 && kSha256.init[0] == 0x6a09e667,
              "SHA-256 constants");

class Sha256State {
 public:
  void update(std::span<const std::uint8_t> data) {
    length_ += data.size();
    std::size_t at = 0;
    if (used_ != 0) {  // fill the pending block first
      const std::size_t take = std::min(data.size(), 64 - used_);
      std::memcpy(block_.data() + used_, data.data(), take);
      used_ += take;
      at = take;
      if (used_ < 64) return;
      compress(block_.data());
      used_ = 0;
    }
    for (; data.size() - at >= 64; at += 64) compress(data.data() + at);  // whole blocks in place
    std::memcpy(block_.data(), data.data() + at, data.size() - at);
    used_ = data.size() - at;
  }
  Sha256Digest finish() {
    const std::uint64_t bits = length_ * 8;
    block_[used_++] = 0x80;
    if (used_ > 56) {
      while (used_ < 64) block_[used_++] = 0;
      compress(block_.data());
      used_ = 0;
    }
    while (used_ < 56) block_[used_++] = 0;
    for (int i = 7; i >= 0; --i) block_[used_++] = static_cast<std::uint8_t>(bits >> (8 * i));
    compress(block_.data());
    Sha256Digest out{};
    for (std::size_t i = 0; i < 8; ++i) store_be(h_[i], out.data() + 4 * i);
    return out;
  }

 private:
  void compress(const std::uint8_t* block) {
    std::array<std::uint32_t, 64> w{};
    for (std::size_t i = 0; i < 16; ++i) w[i] = load_be(block + 4 * i);
    for (std::size_t i = 16; i < 64; ++i) {
      const std::uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const std::uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    std::uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6], h = h_[7];
    for (std::size_t i = 0; i < 64; ++i) {
      const std::uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + kSha256.k[i] + w[i];
      const std::uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    h_[0] += a, h_[1] += b, h_[2] += c, h_[3] += d, h_[4] += e, h_[5] += f, h_[6] += g, h_[7] += h;
  }

  std::array<std::uint32_t, 8> h_ = kSha256.init;
  std::array<std::uint8_t, 64> block_{};
  std::size_t used_ = 0;
  std::uint64_t length_ = 0;
};

}  // namespace

Sha256Digest sha256_portable(std::initializer_list<std::span<const std::uint8_t>> pieces) {
  Sha256State state;
  for (const auto& piece : pieces) state.update(piece);
  return state.finish();
}

}  // namespace veil::tfhe
