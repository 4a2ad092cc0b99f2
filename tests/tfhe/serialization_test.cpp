#include "veil/tfhe/serialization.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "../common/allocation_watch.hpp"
#include "toy_parameters.hpp"
#include "veil/tfhe/glwe.hpp"
#include "veil/tfhe/keys.hpp"
#include "veil/tfhe/lwe.hpp"

namespace veil::tfhe {
namespace {

using ::testing::HasSubstr;

constexpr std::size_t kHeader = 64;
constexpr std::size_t kOffMinor = 10;
constexpr std::size_t kOffMajor = 8;
constexpr std::size_t kOffType = 12;
constexpr std::size_t kOffId = 16;
constexpr std::size_t kOffLength = 24;
constexpr std::size_t kOffChecksum = 32;

std::uint64_t get_u64(const Bytes& b, std::size_t off) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= std::uint64_t{b.at(off + i)} << (8 * i);
  return v;
}
void set_u64(Bytes& b, std::size_t off, std::uint64_t v) {
  // at(): a test that miscounts an offset fails loudly instead of writing past the frame.
  for (int i = 0; i < 8; ++i) b.at(off + i) = static_cast<std::uint8_t>(v >> (8 * i));
}
void set_u16(Bytes& b, std::size_t off, std::uint16_t v) {
  b.at(off) = static_cast<std::uint8_t>(v);
  b.at(off + 1) = static_cast<std::uint8_t>(v >> 8);
}

// Recomputes the header's checksum and length so that a tampered payload reaches the
// payload checks (a forger can always do this: the checksum is not a signature).
void reseal(Bytes& frame) {
  set_u64(frame, kOffLength, frame.size() - kHeader);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  ASSERT_EQ(EVP_Digest(frame.data() + kHeader, frame.size() - kHeader, digest, &len, EVP_sha256(), nullptr), 1);
  std::copy_n(digest, 16, frame.begin() + kOffChecksum);
}

template <class F>
std::string format_error_message(F&& load) {
  try {
    load();
  } catch (const FormatError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no FormatError thrown";
  return {};
}

template <class A, class B>
bool same_words(const A& a, const B& b) {
  return std::ranges::equal(a, b);
}

// One set of toy keys and objects per test binary: key generation is the slow part.
struct Fixture {
  ParameterSet params = toy::exact_set(2, 32);
  SecretKeys keys = generate_secret_keys(params, /*allow_insecure=*/true);
  SeededEvaluationKeys seeded = generate_seeded_evaluation_keys(keys, KeygenOptions{1});

  static const Fixture& get() {
    static const Fixture f;
    return f;
  }
};

class SerializationTest : public ::testing::Test {
 protected:
  const Fixture& fx = Fixture::get();
  const ParameterSet& params = fx.params;
  const SecretKeys& keys = fx.keys;
};

// ---------------------------------------------------------------- round trips

TEST_F(SerializationTest, ParameterSetRoundTripsEveryField) {
  ParameterSet multi_bit = params;
  multi_bit.grouping = GroupingFactor(2);
  ParameterSet fewer_bits = params;
  fewer_bits.bsk_body_bits = 20;
  std::vector<ParameterSet> sets = {params, multi_bit, fewer_bits, toy::noisy_set(3, 0x1.234p-30)};
  for (unsigned p = 1; p <= 8; ++p) sets.push_back(reference_parameter_set(p));
  for (const ParameterSet& set : sets) {
    Bytes bytes = serialize(set);
    ParameterSet back = deserialize_parameter_set(bytes);
    EXPECT_EQ(back, set) << set.name;
    EXPECT_EQ(back.id(), set.id());
    FrameInfo info = inspect_frame(bytes);
    EXPECT_EQ(info.type, ObjectType::kParameterSet);
    EXPECT_EQ(info.parameter_id, set.id());
    EXPECT_EQ(info.payload_bytes, bytes.size() - kHeader);
    EXPECT_EQ(info.major, kFormatMajor);
    EXPECT_EQ(info.minor, kFormatMinor);
  }
}

// Format 1.0 had no grouping field: such a frame still loads, as the classical set with the
// id it always had (grouping 1 does not enter the id); and so on for the fields each later
// minor added, each of which reads as its absence.
TEST_F(SerializationTest, ParameterSetOfFormat1_0ReadsAsClassical) {
  Bytes current = serialize(params);
  ASSERT_EQ(get_u64(current, kHeader + 10 * 8), 1u);  // grouping, after ks_level_count
  // No answer packing (1.3, 1.4), the format-1.4 rule's body bits (1.5).
  for (int i = 11; i < 17; ++i) ASSERT_EQ(get_u64(current, kHeader + i * 8), 0u);
  // Format 1.4: no bsk_body_bits; 1.3: no answer key length and noise either; 1.2: no
  // answer-packing fields; 1.0: no grouping either.
  for (const std::uint16_t minor : {4, 3, 2, 0}) {
    const std::size_t from = minor == 0 ? 10 : minor == 2 ? 11 : minor == 3 ? 14 : 16;
    Bytes old(current.begin(), current.begin() + static_cast<std::ptrdiff_t>(kHeader + from * 8));
    old.insert(old.end(), current.begin() + kHeader + 17 * 8, current.end());
    set_u16(old, kOffMinor, minor);
    reseal(old);
    const ParameterSet back = deserialize_parameter_set(old);
    EXPECT_EQ(back, params);
    EXPECT_EQ(back.grouping, GroupingFactor(1));
    EXPECT_FALSE(back.packs_answers());
    EXPECT_EQ(inspect_frame(old).minor, minor);
  }
  // A set that packs answers, written in format 1.3 (no answer key length and noise): it reads
  // as the full-length answer key at glwe_std_dev, with the id it had.
  ParameterSet packing = params;
  packing.answer_polynomial_size = PolynomialSize(8);
  packing.answer_base_log = DecompositionBaseLog(8);
  packing.answer_level_count = DecompositionLevelCount(2);
  const Bytes packing_frame = serialize(packing);
  Bytes old(packing_frame.begin(), packing_frame.begin() + static_cast<std::ptrdiff_t>(kHeader + 14 * 8));
  old.insert(old.end(), packing_frame.begin() + kHeader + 17 * 8, packing_frame.end());
  set_u16(old, kOffMinor, 3);
  reseal(old);
  const ParameterSet back = deserialize_parameter_set(old);
  EXPECT_EQ(back, packing);
  EXPECT_EQ(back.id(), packing.id());
  EXPECT_EQ(back.answer_glwe_dimension().value * 8, packing.big_lwe_dimension().value);
  EXPECT_EQ(back.answer_noise(), packing.glwe_std_dev);
}

TEST_F(SerializationTest, MultiBitEvaluationKeysRoundTrip) {
  ParameterSet set = toy::exact_set(2, 16);
  set.grouping = GroupingFactor(2);
  const SecretKeys secret = generate_secret_keys(set, /*allow_insecure=*/true);
  const SeededEvaluationKeys seeded = generate_seeded_evaluation_keys(secret, KeygenOptions{1});
  EXPECT_EQ(seeded.bsk.shape.ggsw_count(), 24u);  // 8 pairs, 3 GGSWs each
  const SeededEvaluationKeys back = deserialize_seeded_evaluation_keys(serialize(seeded), &set);
  EXPECT_EQ(back.params, set);
  EXPECT_EQ(back.bsk.shape, seeded.bsk.shape);
  EXPECT_TRUE(same_words(back.bsk.bodies, seeded.bsk.bodies));
  const LweBootstrapKey bsk = decompress_bootstrap_key(seeded.bsk, KeygenOptions{1});
  EXPECT_TRUE(same_words(deserialize_bootstrap_key(serialize(bsk, set), set).data(), bsk.data()));
  // The classical set of the same dimensions is another set: its keys are refused.
  EXPECT_THAT(format_error_message([&] { deserialize_seeded_evaluation_keys(serialize(seeded), &params); }),
              HasSubstr("does not match parameter set"));
  ParameterSet classical = set;
  classical.grouping = GroupingFactor(1);
  EXPECT_THAT(format_error_message([&] { deserialize_bootstrap_key(serialize(bsk, set), classical); }),
              HasSubstr("header parameter id"));
}

TEST_F(SerializationTest, HeaderIsLittleEndianAsDocumented) {
  LweCiphertext ct = encrypt_message(keys, 1, params.message_bits);
  Bytes bytes = serialize(ct, params);
  ASSERT_EQ(bytes.size(), kHeader + 8 + 8 * (params.big_lwe_dimension().value + 1));
  EXPECT_EQ(std::string(bytes.begin(), bytes.begin() + 8), "VEILTFHE");
  EXPECT_EQ(bytes[kOffMajor], kFormatMajor);
  EXPECT_EQ(bytes[kOffMajor + 1], 0);
  EXPECT_EQ(bytes[kOffType], static_cast<std::uint8_t>(ObjectType::kLweCiphertext));
  EXPECT_EQ(get_u64(bytes, kOffId), params.id());
  EXPECT_EQ(get_u64(bytes, kOffLength), bytes.size() - kHeader);
  EXPECT_TRUE(std::all_of(bytes.begin() + 48, bytes.begin() + 64, [](std::uint8_t b) { return b == 0; }));
  EXPECT_EQ(get_u64(bytes, kHeader), params.big_lwe_dimension().value);
  EXPECT_EQ(get_u64(bytes, kHeader + 8), ct.data()[0]);
  // Deterministic: the same object gives the same bytes.
  EXPECT_EQ(serialize(ct, params), bytes);
}

TEST_F(SerializationTest, SecretKeysRoundTrip) {
  LweSecretKey lwe = deserialize_lwe_secret_key(serialize(keys.lwe, params), params);
  EXPECT_EQ(lwe.dimension(), keys.lwe.dimension());
  EXPECT_TRUE(same_words(lwe.bits(), keys.lwe.bits()));
  GlweSecretKey glwe = deserialize_glwe_secret_key(serialize(keys.glwe, params), params);
  EXPECT_EQ(glwe.glwe_dimension(), keys.glwe.glwe_dimension());
  EXPECT_EQ(glwe.polynomial_size(), keys.glwe.polynomial_size());
  EXPECT_TRUE(same_words(glwe.flattened(), keys.glwe.flattened()));
}

TEST_F(SerializationTest, LweCiphertextsRoundTripUnderBothKeys) {
  LweCiphertext big = encrypt_message(keys, 3, params.message_bits);
  LweCiphertext big_back = deserialize_lwe_ciphertext(serialize(big, params), params);
  EXPECT_EQ(big_back.dimension(), params.big_lwe_dimension());
  EXPECT_TRUE(same_words(big_back.data(), big.data()));
  EXPECT_EQ(decrypt_message(keys, big_back.data(), params.message_bits), 3u);

  LweCiphertext small(params.lwe_dimension);
  EncryptionRandomness rng = EncryptionRandomness::from_os();
  encrypt_lwe(keys.lwe.bits(), encode_message(2, params.message_bits), params.lwe_std_dev, rng, small.data());
  LweCiphertext small_back = deserialize_lwe_ciphertext(serialize(small, params), params);
  EXPECT_EQ(small_back.dimension(), params.lwe_dimension);
  EXPECT_TRUE(same_words(small_back.data(), small.data()));
}

TEST_F(SerializationTest, LweCiphertextListsRoundTrip) {
  std::vector<Torus> plaintexts;
  for (std::uint64_t m = 0; m < 7; ++m) plaintexts.push_back(encode_message(m % 4, params.message_bits));
  Csprng noise = Csprng::from_os();
  SeededLweCiphertextList seeded =
      encrypt_seeded_lwe_list(keys.glwe.flattened(), plaintexts, params.glwe_std_dev, noise);
  SeededLweCiphertextList seeded_back =
      deserialize_seeded_lwe_ciphertext_list(serialize(seeded, params), params);
  EXPECT_EQ(seeded_back.dimension, seeded.dimension);
  EXPECT_EQ(seeded_back.seed, seeded.seed);
  EXPECT_TRUE(same_words(seeded_back.bodies, seeded.bodies));

  LweCiphertextList list = decompress_lwe_list(seeded);
  Bytes bytes = serialize(list, params);
  LweCiphertextList back = deserialize_lwe_ciphertext_list(bytes, params);
  EXPECT_EQ(back.dimension(), list.dimension());
  EXPECT_EQ(back.count(), list.count());
  EXPECT_TRUE(same_words(back.data(), list.data()));
  // Seeded vs unseeded: the loaded seed expands to the same ciphertexts.
  EXPECT_TRUE(same_words(decompress_lwe_list(seeded_back).data(), back.data()));
  for (std::size_t c = 0; c < back.count(); ++c)
    EXPECT_EQ(decrypt_message(keys, back[c], params.message_bits), c % 4);

  LweCiphertextList empty(params.lwe_dimension, 0);
  EXPECT_EQ(deserialize_lwe_ciphertext_list(serialize(empty, params), params).count(), 0u);
}

TEST_F(SerializationTest, ModulusSwitchedListsRoundTripPackedAndStillDecrypt) {
  std::vector<Torus> plaintexts;
  for (std::uint64_t m = 0; m < 9; ++m) plaintexts.push_back(encode_message(m % 4, params.message_bits));
  Csprng noise = Csprng::from_os();
  LweCiphertextList list =
      decompress_lwe_list(encrypt_seeded_lwe_list(keys.glwe.flattened(), plaintexts, params.glwe_std_dev, noise));
  for (unsigned bits : {11u, 13u, 63u}) {  // 13 * (33 * 9) bits leaves a partial last byte
    LweCiphertextList switched = list;
    modulus_switch_lwe_ciphertext_list(switched, bits);
    for (Torus w : switched.data()) EXPECT_EQ(w & ((Torus{1} << (64 - bits)) - 1), 0u);
    const Bytes bytes = serialize_modulus_switched(switched, bits, params);
    EXPECT_EQ(bytes.size(), kHeader + 24 + (switched.data().size() * bits + 7) / 8) << bits;
    EXPECT_EQ(inspect_frame(bytes).type, ObjectType::kModulusSwitchedLweCiphertextList);
    const LweCiphertextList back = deserialize_modulus_switched_lwe_ciphertext_list(bytes, params);
    EXPECT_EQ(back.dimension(), switched.dimension());
    EXPECT_TRUE(same_words(back.data(), switched.data())) << bits;
    for (std::size_t c = 0; c < back.count(); ++c) EXPECT_EQ(decrypt_message(keys, back[c], params.message_bits), c % 4);
  }
  // A list that was not switched cannot be written switched.
  EXPECT_THROW(serialize_modulus_switched(list, 13, params), std::invalid_argument);
  EXPECT_THROW(serialize_modulus_switched(list, 64, params), std::invalid_argument);
}

TEST_F(SerializationTest, ModulusSwitchedListsRefuseBadBitsTruncationAndStrayPadding) {
  LweCiphertextList list(params.lwe_dimension, 3);
  for (std::size_t i = 0; i < list.data().size(); ++i) list.data()[i] = Torus{0x9e3779b97f4a7c15} * (i + 1);
  modulus_switch_lwe_ciphertext_list(list, 13);
  const Bytes good = serialize_modulus_switched(list, 13, params);
  constexpr std::size_t kBitsField = kHeader + 16;
  for (std::uint64_t bad : {0ull, 64ull, 1000ull}) {
    Bytes b = good;
    set_u64(b, kBitsField, bad);
    reseal(b);
    EXPECT_THAT(format_error_message([&] { deserialize_modulus_switched_lwe_ciphertext_list(b, params); }),
                HasSubstr("modulus_bits " + std::to_string(bad) + " is not in [1, 63]"));
  }
  Bytes shorter = good;
  shorter.pop_back();
  reseal(shorter);
  EXPECT_THAT(format_error_message([&] { deserialize_modulus_switched_lwe_ciphertext_list(shorter, params); }),
              HasSubstr("words of 13 bits"));
  Bytes other_bits = good;  // 12-bit words need fewer bytes than are present
  set_u64(other_bits, kBitsField, 12);
  reseal(other_bits);
  EXPECT_THAT(format_error_message([&] { deserialize_modulus_switched_lwe_ciphertext_list(other_bits, params); }),
              HasSubstr("words of 12 bits"));
  // (n + 1) * 3 * 13 bits end inside the last byte: its unused bits must be zero.
  ASSERT_NE(((params.lwe_dimension.value + 1) * 3 * 13) % 8, 0u);
  Bytes padded = good;
  padded.back() |= 0x80;
  reseal(padded);
  EXPECT_THAT(format_error_message([&] { deserialize_modulus_switched_lwe_ciphertext_list(padded, params); }),
              HasSubstr("unused bits of the last byte"));
  Bytes flipped = good;  // without resealing: the checksum catches it
  flipped[kHeader + 30] ^= 1;
  EXPECT_THROW(deserialize_modulus_switched_lwe_ciphertext_list(flipped, params), FormatError);
}

TEST_F(SerializationTest, GlweAndGgswCiphertextsRoundTrip) {
  GlweEncryptor encryptor(keys.glwe);
  EncryptionRandomness rng = EncryptionRandomness::from_os();
  GlweCiphertext glwe(params.glwe_dimension, params.polynomial_size);
  encryptor.encrypt({}, params.glwe_std_dev, rng, glwe);
  GlweCiphertext glwe_back = deserialize_glwe_ciphertext(serialize(glwe, params), params);
  EXPECT_EQ(glwe_back.glwe_dimension(), glwe.glwe_dimension());
  EXPECT_EQ(glwe_back.polynomial_size(), glwe.polynomial_size());
  EXPECT_TRUE(same_words(glwe_back.data(), glwe.data()));

  GgswCiphertext ggsw(GgswShape{params.glwe_dimension, params.polynomial_size, params.pbs_base_log,
                                params.pbs_level_count});
  encryptor.encrypt_ggsw(1, params.glwe_std_dev, rng, ggsw);
  GgswCiphertext ggsw_back = deserialize_ggsw_ciphertext(serialize(ggsw, params), params);
  EXPECT_EQ(ggsw_back.shape(), ggsw.shape());
  EXPECT_TRUE(same_words(ggsw_back.data(), ggsw.data()));
}

TEST_F(SerializationTest, BootstrapAndKeyswitchKeysRoundTrip) {
  const SeededEvaluationKeys& seeded = fx.seeded;
  SeededLweBootstrapKey sbsk = deserialize_seeded_bootstrap_key(serialize(seeded.bsk, params), params);
  EXPECT_EQ(sbsk.shape, seeded.bsk.shape);
  EXPECT_EQ(sbsk.seed, seeded.bsk.seed);
  EXPECT_TRUE(same_words(sbsk.bodies, seeded.bsk.bodies));
  SeededLweKeyswitchKey sksk = deserialize_seeded_keyswitch_key(serialize(seeded.ksk, params), params);
  EXPECT_EQ(sksk.shape, seeded.ksk.shape);
  EXPECT_EQ(sksk.seed, seeded.ksk.seed);
  EXPECT_TRUE(same_words(sksk.bodies, seeded.ksk.bodies));

  LweBootstrapKey bsk = decompress_bootstrap_key(seeded.bsk, KeygenOptions{1});
  LweBootstrapKey bsk_back = deserialize_bootstrap_key(serialize(bsk, params), params);
  EXPECT_EQ(bsk_back.shape(), bsk.shape());
  EXPECT_TRUE(same_words(bsk_back.data(), bsk.data()));
  LweKeyswitchKey ksk = decompress_keyswitch_key(seeded.ksk, KeygenOptions{1});
  LweKeyswitchKey ksk_back = deserialize_keyswitch_key(serialize(ksk, params), params);
  EXPECT_EQ(ksk_back.shape(), ksk.shape());
  EXPECT_TRUE(same_words(ksk_back.data(), ksk.data()));
}

// Format 1.2 sends each key body's top bits only (bootstrap_key_body_bits,
// keyswitch_key_word_bits), bit-packed; a 1.1 file of whole words still reads; a frame that
// claims fewer bits than the noise model counts is refused by name.
TEST_F(SerializationTest, SeededEvaluationKeysTravelAsTheirTopBitsAndFormat1_1StillReads) {
  const SeededEvaluationKeys& seeded = fx.seeded;
  const unsigned bsk_bits = bootstrap_key_body_bits(params.glwe_std_dev);
  const unsigned ksk_bits = keyswitch_key_word_bits(params.lwe_dimension, params.lwe_std_dev);
  ASSERT_LT(bsk_bits, 64u);
  ASSERT_LT(ksk_bits, 64u);
  for (Torus b : seeded.bsk.bodies) ASSERT_EQ(b & ((Torus{1} << (64 - bsk_bits)) - 1), 0u);
  for (Torus b : seeded.ksk.bodies) ASSERT_EQ(b & ((Torus{1} << (64 - ksk_bits)) - 1), 0u);
  const Bytes packed = serialize(seeded);
  EXPECT_EQ(packed.size(), seeded_evaluation_keys_bytes(params));
  const Bytes set_frame = serialize(params);
  const std::size_t set_bytes = set_frame.size() - kHeader;
  const std::size_t bsk_at = kHeader + set_bytes;  // 5 shape words, seed, body bits
  EXPECT_EQ(get_u64(packed, bsk_at + 56), bsk_bits);
  EXPECT_EQ(packed.size(), kHeader + set_bytes + 56 + 8 + (seeded.bsk.bodies.size() * bsk_bits + 7) / 8 + 48 + 8 +
                               (seeded.ksk.bodies.size() * ksk_bits + 7) / 8);

  // The same keys as format 1.1 wrote them: whole words, no body-bits fields.
  Bytes old(packed.begin(), packed.begin() + static_cast<std::ptrdiff_t>(bsk_at + 56));
  auto put_words = [&](std::span<const Torus> words) {
    for (Torus w : words)
      for (int i = 0; i < 8; ++i) old.push_back(static_cast<std::uint8_t>(w >> (8 * i)));
  };
  put_words(seeded.bsk.bodies);
  const std::size_t ksk_at = bsk_at + 56 + 8 + (seeded.bsk.bodies.size() * bsk_bits + 7) / 8;
  old.insert(old.end(), packed.begin() + static_cast<std::ptrdiff_t>(ksk_at), packed.begin() + static_cast<std::ptrdiff_t>(ksk_at + 48));
  put_words(seeded.ksk.bodies);
  // Format 1.1's parameter set has no answer-packing fields and no bsk_body_bits (six words
  // before the name).
  old.erase(old.begin() + kHeader + 11 * 8, old.begin() + kHeader + 17 * 8);
  set_u16(old, kOffMinor, 1);
  reseal(old);
  EXPECT_GT(old.size(), packed.size());
  const SeededEvaluationKeys from_old = deserialize_seeded_evaluation_keys(old, &params);
  EXPECT_TRUE(same_words(from_old.bsk.bodies, seeded.bsk.bodies));
  EXPECT_TRUE(same_words(from_old.ksk.bodies, seeded.ksk.bodies));
  EXPECT_EQ(from_old.ksk.seed, seeded.ksk.seed);

  // Fewer bits than counted, or more than a word: refused, naming the field.
  for (std::uint64_t bits : {std::uint64_t{bsk_bits - 1}, std::uint64_t{65}}) {
    Bytes bad = packed;
    set_u64(bad, bsk_at + 56, bits);
    reseal(bad);
    EXPECT_THAT(format_error_message([&] { deserialize_seeded_evaluation_keys(bad, &params); }),
                HasSubstr("body bits " + std::to_string(bits) + " is not in [" + std::to_string(bsk_bits) + ", 64]"));
  }
  // Cut inside the keyswitch key's bodies: refused with both sizes.
  Bytes cut(packed.begin(), packed.end() - 3);
  reseal(cut);
  EXPECT_THAT(format_error_message([&] { deserialize_seeded_evaluation_keys(cut, &params); }),
              HasSubstr("bodies of " + std::to_string(ksk_bits) + " bits"));
  // Keys whose bodies were not rounded are not written (they would not read back equal).
  SeededEvaluationKeys unrounded = seeded;
  unrounded.bsk.bodies[5] |= 1;
  EXPECT_THROW(serialize(unrounded), std::invalid_argument);
}

// Format 1.5: a set's bsk_body_bits (the optimizer's fewer bits) is what key generation
// rounds the bootstrap key's bodies to, what travels and what a reader holds a frame to.
TEST_F(SerializationTest, BootstrapKeyBodiesTravelAtTheSetsBodyBits) {
  ParameterSet fewer = params;
  fewer.bsk_body_bits = 20;
  ASSERT_LT(fewer.bsk_body_bits, bootstrap_key_body_bits(fewer.glwe_std_dev));
  const SecretKeys secret = generate_secret_keys(fewer, /*allow_insecure=*/true);
  const SeededEvaluationKeys seeded = generate_seeded_evaluation_keys(secret, KeygenOptions{1});
  for (Torus b : seeded.bsk.bodies) ASSERT_EQ(b & ((Torus{1} << 44) - 1), 0u);
  const Bytes bytes = serialize(seeded);
  EXPECT_EQ(bytes.size(), seeded_evaluation_keys_bytes(fewer));
  EXPECT_LT(bytes.size(), seeded_evaluation_keys_bytes(params));
  const std::size_t bsk_at = kHeader + (serialize(fewer).size() - kHeader);
  EXPECT_EQ(get_u64(bytes, bsk_at + 56), 20u);
  const SeededEvaluationKeys back = deserialize_seeded_evaluation_keys(bytes, &fewer);
  EXPECT_TRUE(same_words(back.bsk.bodies, seeded.bsk.bodies));
  Bytes bad = bytes;
  set_u64(bad, bsk_at + 56, 19);
  reseal(bad);
  EXPECT_THAT(format_error_message([&] { deserialize_seeded_evaluation_keys(bad, &fewer); }),
              HasSubstr("body bits 19 is not in [20, 64]"));
  // The keys of the set with the default bits are another set's keys.
  EXPECT_NE(fewer.id(), params.id());
  EXPECT_ANY_THROW(deserialize_seeded_evaluation_keys(bytes, &params));
}

TEST_F(SerializationTest, SeededEvaluationKeysRoundTripAndDecompressToTheSameKeys) {
  const SeededEvaluationKeys& seeded = fx.seeded;
  Bytes bytes = serialize(seeded);
  EXPECT_EQ(inspect_frame(bytes).type, ObjectType::kSeededEvaluationKeys);
  for (const ParameterSet* expected : {static_cast<const ParameterSet*>(nullptr), &params}) {
    SeededEvaluationKeys back = deserialize_seeded_evaluation_keys(bytes, expected);
    EXPECT_EQ(back.params, seeded.params);
    EXPECT_EQ(back.bsk.shape, seeded.bsk.shape);
    EXPECT_EQ(back.bsk.seed, seeded.bsk.seed);
    EXPECT_TRUE(same_words(back.bsk.bodies, seeded.bsk.bodies));
    EXPECT_EQ(back.ksk.shape, seeded.ksk.shape);
    EXPECT_EQ(back.ksk.seed, seeded.ksk.seed);
    EXPECT_TRUE(same_words(back.ksk.bodies, seeded.ksk.bodies));
    EXPECT_TRUE(same_words(decompress_bootstrap_key(back.bsk, KeygenOptions{1}).data(),
                           decompress_bootstrap_key(seeded.bsk, KeygenOptions{1}).data()));
    EXPECT_TRUE(same_words(decompress_keyswitch_key(back.ksk, KeygenOptions{1}).data(),
                           decompress_keyswitch_key(seeded.ksk, KeygenOptions{1}).data()));
  }
  // The seeded frame is about (k+1) times smaller than the two expanded keys.
  const std::size_t expanded = serialize(decompress_bootstrap_key(seeded.bsk, KeygenOptions{1}), params).size() +
                               serialize(decompress_keyswitch_key(seeded.ksk, KeygenOptions{1}), params).size();
  EXPECT_LT(bytes.size() * 3, expanded * 2);
}

// ---------------------------------------------------------------- writer contract

TEST_F(SerializationTest, WritingAnObjectThatDoesNotMatchItsParametersThrowsInvalidArgument) {
  ParameterSet other = params;
  other.lwe_dimension = LweDimension(40);
  EXPECT_THROW(serialize(keys.lwe, other), std::invalid_argument);
  EXPECT_THROW(serialize(LweCiphertext(LweDimension(17)), params), std::invalid_argument);
  EXPECT_THROW(serialize(LweCiphertext(), params), std::invalid_argument);
  EXPECT_THROW(serialize(fx.seeded.bsk, other), std::invalid_argument);
  ParameterSet long_name = params;
  long_name.name.assign(300, 'x');
  EXPECT_THROW(serialize(long_name), std::invalid_argument);
}

// ---------------------------------------------------------------- refusals, with messages

TEST_F(SerializationTest, ShapeMismatchNamesObjectFieldAndBothValues) {
  LweCiphertextList list(params.big_lwe_dimension(), 3);
  Bytes bytes = serialize(list, params);
  set_u64(bytes, kHeader, 631);
  reseal(bytes);
  EXPECT_THAT(format_error_message([&] { deserialize_lwe_ciphertext_list(bytes, params); }),
              HasSubstr("LWE ciphertext list: payload says dimension 631, parameter set " + params.name +
                        " expects 256 (k*N) or 32 (n)"));

  Bytes bsk = serialize(fx.seeded.bsk, params);
  set_u64(bsk, kHeader + 4 * 8, 3);  // level_count
  reseal(bsk);
  EXPECT_THAT(format_error_message([&] { deserialize_seeded_bootstrap_key(bsk, params); }),
              HasSubstr("seeded LWE bootstrap key: payload says level_count 3, parameter set " + params.name +
                        " expects 2"));
}

TEST_F(SerializationTest, CountThatDisagreesWithThePayloadIsRefused) {
  LweCiphertextList list(params.lwe_dimension, 3);
  Bytes bytes = serialize(list, params);
  set_u64(bytes, kHeader + 8, 4);
  reseal(bytes);
  EXPECT_THAT(format_error_message([&] { deserialize_lwe_ciphertext_list(bytes, params); }),
              HasSubstr("count 4 x (dimension 32 + 1) needs 132 words"));
  // A count whose byte size overflows 64 bits.
  set_u64(bytes, kHeader + 8, std::uint64_t{1} << 62);
  reseal(bytes);
  EXPECT_THAT(format_error_message([&] { deserialize_lwe_ciphertext_list(bytes, params); }), HasSubstr("overflow"));
}

TEST_F(SerializationTest, WrongParameterSetIsRefusedByName) {
  ParameterSet reference = reference_parameter_set(4);
  Bytes bytes = serialize(encrypt_message(keys, 1, params.message_bits), params);
  EXPECT_THAT(format_error_message([&] { deserialize_lwe_ciphertext(bytes, reference); }),
              HasSubstr("LWE ciphertext: header parameter id"));
  EXPECT_THAT(format_error_message([&] { deserialize_lwe_ciphertext(bytes, reference); }),
              HasSubstr(reference.name));
  EXPECT_THAT(format_error_message([&] { deserialize_seeded_evaluation_keys(serialize(fx.seeded), &reference); }),
              HasSubstr("seeded evaluation keys: header parameter id"));
}

TEST_F(SerializationTest, WrongTypeTagIsRefused) {
  Bytes bytes = serialize(encrypt_message(keys, 1, params.message_bits), params);
  EXPECT_THAT(format_error_message([&] { deserialize_lwe_ciphertext_list(bytes, params); }),
              HasSubstr("LWE ciphertext list: frame holds type tag 3 (LWE ciphertext), expected 4"));
  set_u16(bytes, kOffType, 999);
  EXPECT_THAT(format_error_message([&] { inspect_frame(bytes); }), HasSubstr("unknown type tag 999"));
}

TEST_F(SerializationTest, VersionsNewerOrOfAnotherMajorAreRefused) {
  Bytes bytes = serialize(params);
  Bytes newer = bytes;
  set_u16(newer, kOffMinor, kFormatMinor + 1);
  EXPECT_THAT(format_error_message([&] { deserialize_parameter_set(newer); }),
              HasSubstr("format version 1." + std::to_string(kFormatMinor + 1) + " is newer than this reader's 1." +
                        std::to_string(kFormatMinor)));
  Bytes other_major = bytes;
  set_u16(other_major, kOffMajor, kFormatMajor + 1);
  EXPECT_THAT(format_error_message([&] { deserialize_parameter_set(other_major); }),
              HasSubstr("format version " + std::to_string(kFormatMajor + 1) + "." + std::to_string(kFormatMinor)));
}

TEST_F(SerializationTest, TruncationGarbageAndChecksumAreRefused) {
  Bytes bytes = serialize(keys.glwe, params);
  Bytes truncated(bytes.begin(), bytes.end() - 8);
  EXPECT_THAT(format_error_message([&] { deserialize_glwe_secret_key(truncated, params); }),
              HasSubstr("bytes follow the header"));
  Bytes short_header(bytes.begin(), bytes.begin() + 20);
  EXPECT_THAT(format_error_message([&] { deserialize_glwe_secret_key(short_header, params); }),
              HasSubstr("shorter than the 64-byte header"));
  Bytes garbage = bytes;
  garbage.push_back(0);
  EXPECT_THROW(deserialize_glwe_secret_key(garbage, params), FormatError);
  Bytes flipped = bytes;
  flipped[kHeader + 100] ^= 1;
  EXPECT_THAT(format_error_message([&] { deserialize_glwe_secret_key(flipped, params); }),
              HasSubstr("checksum mismatch"));
}

TEST_F(SerializationTest, SecretKeyWordsMustBeBits) {
  Bytes bytes = serialize(keys.lwe, params);
  set_u64(bytes, kHeader + 8 + 5 * 8, 2);
  reseal(bytes);
  EXPECT_THAT(format_error_message([&] { deserialize_lwe_secret_key(bytes, params); }),
              HasSubstr("LWE secret key: key word 5 is 2, expected 0 or 1"));
}

TEST_F(SerializationTest, ParameterSetPayloadMustMatchItsIdAndBeValid) {
  Bytes bytes = serialize(params);
  Bytes tampered = bytes;
  set_u64(tampered, kHeader + 8, 33);  // lwe_dimension
  reseal(tampered);
  EXPECT_THAT(format_error_message([&] { deserialize_parameter_set(tampered); }),
              HasSubstr("parameter set in the payload has id"));
  // A forger who also fixes the header id still has to pass validate().
  ParameterSet invalid = params;
  invalid.polynomial_size = PolynomialSize(100);
  Bytes forged = serialize(invalid);
  EXPECT_THAT(format_error_message([&] { deserialize_parameter_set(forged); }), HasSubstr("polynomial_size"));
  // A set that validates but whose big dimension k*N does not fit in 64 bits.
  ParameterSet overflowing = params;
  overflowing.glwe_dimension = GlweDimension(std::uint64_t{1} << 60);
  EXPECT_THAT(format_error_message([&] { deserialize_parameter_set(serialize(overflowing)); }),
              HasSubstr("k*N exceeds 2^64"));
  // The grouping is part of the id, and only 1 and 2 validate.
  Bytes regrouped = bytes;
  set_u64(regrouped, kHeader + 10 * 8, 2);
  reseal(regrouped);
  EXPECT_THAT(format_error_message([&] { deserialize_parameter_set(regrouped); }),
              HasSubstr("parameter set in the payload has id"));
  ParameterSet three = params;
  three.grouping = GroupingFactor(3);
  EXPECT_THAT(format_error_message([&] { deserialize_parameter_set(serialize(three)); }),
              HasSubstr("grouping must be 1 (classical blind rotation) or 2 (multi-bit), got 3"));
  ParameterSet odd = params;
  odd.grouping = GroupingFactor(2);
  odd.lwe_dimension = LweDimension(33);
  EXPECT_THAT(format_error_message([&] { deserialize_parameter_set(serialize(odd)); }),
              HasSubstr("lwe_dimension 33 is not a multiple of grouping 2"));
  // bsk_body_bits is part of the id; 0 or fewer than the format-1.4 rule's bits, at least
  // 16, validate (the rule's own count is written 0, so that one set has one id).
  const unsigned rule = bootstrap_key_body_bits(params.glwe_std_dev);
  Bytes rebodied = bytes;
  set_u64(rebodied, kHeader + 16 * 8, rule - 1);
  reseal(rebodied);
  EXPECT_THAT(format_error_message([&] { deserialize_parameter_set(rebodied); }),
              HasSubstr("parameter set in the payload has id"));
  for (const unsigned bits : {rule, rule + 1, 15u, 64u}) {
    ParameterSet rounded = params;
    rounded.bsk_body_bits = bits;
    EXPECT_THAT(format_error_message([&] { deserialize_parameter_set(serialize(rounded)); }),
                HasSubstr("bsk_body_bits must be 0 (" + std::to_string(rule) + " at this glwe_std_dev) or in [16, " +
                          std::to_string(rule) + "), got " + std::to_string(bits)))
        << bits;
  }
  Bytes huge_bits = bytes;
  set_u64(huge_bits, kHeader + 16 * 8, std::uint64_t{1} << 40);
  reseal(huge_bits);
  EXPECT_THAT(format_error_message([&] { deserialize_parameter_set(huge_bits); }),
              HasSubstr("payload says bsk_body_bits 1099511627776, at most 64"));
  // An absurd name length.
  Bytes long_name = bytes;
  set_u64(long_name, kHeader + 17 * 8, std::uint64_t{1} << 40);
  reseal(long_name);
  EXPECT_THAT(format_error_message([&] { deserialize_parameter_set(long_name); }), HasSubstr("name_length"));
}

// Runs `load` with allocation watching on; returns the largest operator-new request.
template <class F>
std::size_t largest_allocation_during(F&& load) {
  g_largest_allocation = 0;
  g_watch_allocations = true;
  try {
    load();
  } catch (...) {
    g_watch_allocations = false;
    throw;
  }
  g_watch_allocations = false;
  return g_largest_allocation;
}

TEST_F(SerializationTest, HeaderClaimingAHugePayloadIsRefusedWithoutAllocating) {
  Bytes bytes = serialize(encrypt_message(keys, 1, params.message_bits), params);
  set_u64(bytes, kOffLength, std::uint64_t{1} << 60);
  std::string message;
  const std::size_t largest = largest_allocation_during([&] {
    message = format_error_message([&] { deserialize_lwe_ciphertext(bytes, params); });
  });
  EXPECT_THAT(message, HasSubstr("LWE ciphertext: header declares a payload of 1152921504606846976 bytes, above the "
                                 "limit of 4294967296 bytes"));
  EXPECT_LT(largest, std::size_t{64} << 10);
  // With no limit at all, the bytes actually present still decide.
  const std::size_t unlimited = largest_allocation_during([&] {
    message = format_error_message(
        [&] { deserialize_lwe_ciphertext(bytes, params, std::numeric_limits<std::uint64_t>::max()); });
  });
  EXPECT_THAT(message, HasSubstr("but " + std::to_string(bytes.size() - kHeader) + " bytes follow the header"));
  EXPECT_LT(unlimited, std::size_t{64} << 10);
  // The caller's limit applies to honest frames too.
  Bytes honest = serialize(keys.glwe, params);
  EXPECT_THAT(format_error_message([&] { deserialize_glwe_secret_key(honest, params, 1000); }),
              HasSubstr("above the limit of 1000 bytes"));
}

TEST_F(SerializationTest, ForgedHugeShapeWithAValidChecksumIsRefusedWithoutAllocating) {
  // A resealed list claiming 2^58 ciphertexts: only the shape-vs-bytes check stands
  // between this and an allocation of 2^63 bytes.
  Bytes list = serialize(LweCiphertextList(params.lwe_dimension, 2), params);
  set_u64(list, kHeader + 8, std::uint64_t{1} << 58);
  reseal(list);
  EXPECT_LT(largest_allocation_during(
                [&] { EXPECT_THROW(deserialize_lwe_ciphertext_list(list, params), FormatError); }),
            std::size_t{64} << 10);

  // Evaluation keys whose parameter set, shapes and header id all agree on k = 2^40: the
  // parameter set is valid and the shapes match it, so only the bytes present refuse it.
  ParameterSet huge = params;
  huge.glwe_dimension = GlweDimension(std::uint64_t{1} << 40);
  Bytes keys_bytes = serialize(fx.seeded);
  const std::size_t params_bytes = 18 * 8 + params.name.size();
  // The bootstrap key's payload: five shape words, the 16-byte mask seed, then the bodies'
  // bit width and their top bits packed end to end (format 1.2).
  const std::size_t body_count = fx.seeded.bsk.bodies.size();
  const unsigned body_bits = bootstrap_key_body_bits(params.glwe_std_dev);
  const std::size_t bsk_bytes = 5 * 8 + 16 + 8 + (body_count / 8) * body_bits + ((body_count % 8) * body_bits + 7) / 8;
  set_u64(keys_bytes, kHeader + 2 * 8, huge.glwe_dimension.value);                // params: k
  set_u64(keys_bytes, kHeader + params_bytes + 8, huge.glwe_dimension.value);     // BSK: k
  set_u64(keys_bytes, kHeader + params_bytes + bsk_bytes, huge.big_lwe_dimension().value);  // KSK: k*N
  set_u64(keys_bytes, kOffId, huge.id());
  reseal(keys_bytes);
  std::string message;
  EXPECT_LT(largest_allocation_during([&] {
              message = format_error_message([&] { deserialize_seeded_evaluation_keys(keys_bytes); });
            }),
            std::size_t{64} << 10);
  EXPECT_THAT(message, HasSubstr("seeded evaluation keys: only "));
  EXPECT_THAT(message, HasSubstr("bytes remain for the bootstrap key bodies"));
}

// ---------------------------------------------------------------- random corruption

struct Case {
  std::string name;
  Bytes frame;
  std::size_t shape_fields;  // leading u64 payload fields that must match the parameter set
  std::function<void(std::span<const std::uint8_t>)> load;
};

TEST(SerializationFuzz, RandomCorruptionsAreRefusedWithFormatErrorNeverACrash) {
  // A smaller set than the fixture's (n = 4) so that 2000 loads stay fast.
  const ParameterSet p = toy::exact_set(1, 4);
  const SecretKeys keys = generate_secret_keys(p, /*allow_insecure=*/true);
  const SeededEvaluationKeys seeded = generate_seeded_evaluation_keys(keys, KeygenOptions{1});
  GlweEncryptor encryptor(keys.glwe);
  EncryptionRandomness rng = EncryptionRandomness::from_os();
  GlweCiphertext glwe(p.glwe_dimension, p.polynomial_size);
  encryptor.encrypt({}, p.glwe_std_dev, rng, glwe);
  GgswCiphertext ggsw(GgswShape{p.glwe_dimension, p.polynomial_size, p.pbs_base_log, p.pbs_level_count});
  encryptor.encrypt_ggsw(1, p.glwe_std_dev, rng, ggsw);
  std::vector<Torus> plaintexts(5, encode_message(1, p.message_bits));
  Csprng noise = Csprng::from_os();
  const SeededLweCiphertextList seeded_list =
      encrypt_seeded_lwe_list(keys.glwe.flattened(), plaintexts, p.glwe_std_dev, noise);

  using Span = std::span<const std::uint8_t>;
  const std::vector<Case> cases = {
      {"parameter set", serialize(p), 11, [](Span b) { deserialize_parameter_set(b); }},
      {"lwe secret key", serialize(keys.lwe, p), 1, [&](Span b) { deserialize_lwe_secret_key(b, p); }},
      {"glwe secret key", serialize(keys.glwe, p), 2, [&](Span b) { deserialize_glwe_secret_key(b, p); }},
      {"lwe ciphertext", serialize(encrypt_message(keys, 1, p.message_bits), p), 1,
       [&](Span b) { deserialize_lwe_ciphertext(b, p); }},
      {"lwe ciphertext list", serialize(decompress_lwe_list(seeded_list), p), 2,
       [&](Span b) { deserialize_lwe_ciphertext_list(b, p); }},
      {"seeded lwe ciphertext list", serialize(seeded_list, p), 2,
       [&](Span b) { deserialize_seeded_lwe_ciphertext_list(b, p); }},
      {"glwe ciphertext", serialize(glwe, p), 2, [&](Span b) { deserialize_glwe_ciphertext(b, p); }},
      {"ggsw ciphertext", serialize(ggsw, p), 4, [&](Span b) { deserialize_ggsw_ciphertext(b, p); }},
      {"bootstrap key", serialize(decompress_bootstrap_key(seeded.bsk, KeygenOptions{1}), p), 5,
       [&](Span b) { deserialize_bootstrap_key(b, p); }},
      {"seeded bootstrap key", serialize(seeded.bsk, p), 5, [&](Span b) { deserialize_seeded_bootstrap_key(b, p); }},
      {"keyswitch key", serialize(decompress_keyswitch_key(seeded.ksk, KeygenOptions{1}), p), 4,
       [&](Span b) { deserialize_keyswitch_key(b, p); }},
      {"seeded keyswitch key", serialize(seeded.ksk, p), 4, [&](Span b) { deserialize_seeded_keyswitch_key(b, p); }},
      {"seeded evaluation keys", serialize(seeded), 11,
       [](Span b) { deserialize_seeded_evaluation_keys(b); }},
      {"seeded evaluation keys (expected)", serialize(seeded), 11,
       [&](Span b) { deserialize_seeded_evaluation_keys(b, &p); }},
  };
  // Every pristine frame loads.
  for (const Case& c : cases) ASSERT_NO_THROW(c.load(c.frame)) << c.name;

  std::mt19937_64 random(20261124);
  auto pick = [&](std::uint64_t bound) { return std::uniform_int_distribution<std::uint64_t>(0, bound - 1)(random); };
  const char* const kMutations[] = {"flip a byte",         "truncate",           "append garbage",
                                    "change the length",   "change the type",    "change the parameter id",
                                    "change the version",  "set a reserved byte", "change a shape field (resealed)",
                                    "flip a payload byte (resealed)"};
  int refused = 0, accepted = 0;
  for (int iteration = 0; iteration < 2000; ++iteration) {
    const Case& c = cases[pick(cases.size())];
    const int mutation = static_cast<int>(pick(std::size(kMutations)));
    Bytes bytes = c.frame;
    const std::size_t payload = bytes.size() - kHeader;
    bool must_refuse = true;
    switch (mutation) {
      case 0:
        bytes[pick(bytes.size())] ^= static_cast<std::uint8_t>(1 + pick(255));
        break;
      case 1:
        bytes.resize(pick(bytes.size()));
        break;
      case 2:
        for (std::uint64_t i = 0, n = 1 + pick(64); i < n; ++i) bytes.push_back(static_cast<std::uint8_t>(random()));
        break;
      case 3: {
        const std::uint64_t choices[] = {payload + 1, payload - 1, 0, std::uint64_t{1} << 60,
                                         std::numeric_limits<std::uint64_t>::max(), random()};
        set_u64(bytes, kOffLength, choices[pick(std::size(choices))]);
        break;
      }
      case 4: {
        const std::uint16_t tag = get_u64(bytes, kOffType) & 0xffff;
        std::uint16_t other = tag;
        while (other == tag) other = static_cast<std::uint16_t>(pick(20));
        set_u16(bytes, kOffType, other);
        break;
      }
      case 5:
        set_u64(bytes, kOffId, get_u64(bytes, kOffId) ^ (1 | random()));
        break;
      case 6: {
        // Another major, or a newer minor (the writer's minor is the newest this reader knows).
        const std::size_t off = pick(2) ? kOffMajor : kOffMinor;
        const std::uint16_t old = static_cast<std::uint16_t>(bytes[off] | (bytes[off + 1] << 8));
        set_u16(bytes, off, static_cast<std::uint16_t>(old + 1 + pick(0xfffe)));
        break;
      }
      case 7: {
        const std::size_t reserved[] = {14, 15, 48, 55, 63};
        bytes[reserved[pick(std::size(reserved))]] = static_cast<std::uint8_t>(1 + pick(255));
        break;
      }
      case 8: {
        const std::size_t off = kHeader + 8 * pick(c.shape_fields);
        const std::uint64_t old = get_u64(bytes, off);
        const std::uint64_t choices[] = {old + 1, old - 1, 0, std::uint64_t{1} << 63,
                                         std::numeric_limits<std::uint64_t>::max(), random()};
        std::uint64_t value = old;
        while (value == old) value = choices[pick(std::size(choices))];
        set_u64(bytes, off, value);
        reseal(bytes);
        break;
      }
      case 9:
        // Words may legitimately take any value: this must load or be refused, nothing else.
        bytes[kHeader + pick(payload)] ^= static_cast<std::uint8_t>(1 + pick(255));
        reseal(bytes);
        must_refuse = false;
        break;
    }
    SCOPED_TRACE(c.name + ", iteration " + std::to_string(iteration) + ": " + kMutations[mutation]);
    try {
      const std::size_t largest = largest_allocation_during([&] { c.load(bytes); });
      EXPECT_LT(largest, std::size_t{64} << 10);
      if (must_refuse) ADD_FAILURE() << "corrupted frame was accepted";
      ++accepted;
    } catch (const FormatError& e) {
      EXPECT_THAT(std::string(e.what()), ::testing::Not(::testing::IsEmpty()));
      ++refused;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "threw something other than FormatError: " << e.what();
    }
  }
  EXPECT_GT(refused, 1500);
  std::printf("[ fuzz     ] %d refused, %d resealed-word changes accepted\n", refused, accepted);
}

}  // namespace
}  // namespace veil::tfhe
