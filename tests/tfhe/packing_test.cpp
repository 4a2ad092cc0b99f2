// Packed answers (packing.hpp): the packing keyswitch, the switch to a few bits, the public
// unpacking, the derived answer key, the packing key's place in the evaluation keys and the
// packed answer's frame.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "../common/error_message.hpp"
#include "veil/tfhe/keys.hpp"
#include "veil/tfhe/lwe.hpp"
#include "veil/tfhe/parameters.hpp"
#include "veil/tfhe/packing.hpp"
#include "veil/tfhe/serialization.hpp"

namespace veil::tfhe {
namespace {

using test_support::error_of;
using test_support::has;


ParameterSet packing_set(std::size_t np = 32, std::size_t base_log = 16, std::size_t levels = 2) {
  auto p = optimize_parameters({.message_bits = 4});
  if (!p) throw std::runtime_error("no parameter set");
  p->answer_polynomial_size = PolynomialSize(np);
  p->answer_base_log = DecompositionBaseLog(base_log);
  p->answer_level_count = DecompositionLevelCount(levels);
  p->validate();
  return *p;
}

struct Packing {
  SecretKeys secret;
  PackingKey key;
};
Packing packing_for(const ParameterSet& p) {
  auto secret = generate_secret_keys(p);
  auto key = expand_packing_key(generate_seeded_packing_key(secret));
  return {std::move(secret), std::move(key)};
}

LweCiphertextList encrypt_messages(const SecretKeys& s, const std::vector<std::uint64_t>& messages, unsigned bits) {
  LweCiphertextList list(s.params.big_lwe_dimension(), messages.size());
  auto rng = EncryptionRandomness::from_os();
  for (std::size_t t = 0; t < messages.size(); ++t)
    encrypt_lwe(s.glwe.flattened(), encode_message(messages[t], bits), s.params.glwe_std_dev, rng, list[t]);
  return list;
}

std::vector<std::uint64_t> decrypt_packed(const SecretKeys& s, const PackedAnswer& answer, unsigned bits) {
  const GlweSecretKey key = answer_secret_key(s);
  const LweCiphertextList lwes = unpack_answer(answer);
  std::vector<std::uint64_t> out;
  for (std::size_t t = 0; t < lwes.count(); ++t) out.push_back(decode_message(decrypt_lwe_phase(key.flattened(), lwes[t]), bits));
  return out;
}

TEST(Packing, ParameterFieldsAreValidatedAndEnterTheIdOnlyWhenOn) {
  auto plain = optimize_parameters({.message_bits = 4});
  ASSERT_TRUE(plain);
  const std::uint64_t id = plain->id();
  ParameterSet p = packing_set();
  EXPECT_NE(p.id(), id);
  EXPECT_EQ(p.answer_glwe_dimension().value * 32, p.big_lwe_dimension().value);
  EXPECT_NE(p.describe().find("answers="), std::string::npos);
  ParameterSet bad = p;
  bad.answer_polynomial_size = PolynomialSize(48);
  EXPECT_THROW(bad.validate(), std::invalid_argument);
  bad = *plain;
  bad.answer_base_log = DecompositionBaseLog(4);
  EXPECT_THROW(bad.validate(), std::invalid_argument);
  // k*N = 3 x 256 = 768: N' = 512 is a power of two below it that does not divide it.
  bad = p;
  bad.glwe_dimension = GlweDimension(3);
  bad.polynomial_size = PolynomialSize(256);
  bad.answer_polynomial_size = PolynomialSize(512);
  EXPECT_TRUE(has(error_of([&] { bad.validate(); }), "dividing k*N = 768"));
  // A parameter set survives its frame with the new fields; an unpacked one keeps its id.
  EXPECT_EQ(deserialize_parameter_set(serialize(p)), p);
  EXPECT_EQ(deserialize_parameter_set(serialize(*plain)).id(), id);
}

TEST(Packing, AnswerKeyIsDerivedFromTheSecretKeys) {
  const ParameterSet p = packing_set();
  auto a = generate_secret_keys(p), b = generate_secret_keys(p);
  const GlweSecretKey ka = answer_secret_key(a), kb = answer_secret_key(b);
  ASSERT_EQ(ka.flattened().size(), p.big_lwe_dimension().value);
  EXPECT_TRUE(std::equal(ka.flattened().begin(), ka.flattened().end(), answer_secret_key(a).flattened().begin()));
  EXPECT_FALSE(std::equal(ka.flattened().begin(), ka.flattened().end(), kb.flattened().begin()));
  std::size_t ones = 0, same_as_big = 0;
  for (std::size_t i = 0; i < ka.flattened().size(); ++i) {
    EXPECT_LE(ka.flattened()[i], 1u);
    ones += ka.flattened()[i];
    same_as_big += ka.flattened()[i] == a.glwe.flattened()[i];
  }
  // Binary and balanced, and not the big key itself (about half the bits agree by chance).
  EXPECT_GT(ones, ka.flattened().size() / 2 - 150);
  EXPECT_LT(ones, ka.flattened().size() / 2 + 150);
  EXPECT_LT(same_as_big, ka.flattened().size() / 2 + 150);
}

TEST(Packing, PackedOutputsDecryptToTheirMessages) {
  for (std::size_t np : {2u, 32u}) {
    const ParameterSet p = packing_set(np);
    auto k = packing_for(p);
    for (std::size_t m : {std::size_t{1}, np / 2 + 1, np}) {
      std::vector<std::uint64_t> messages;
      for (std::size_t t = 0; t < m; ++t) messages.push_back((5 * t + 3) % 16);
      const auto in = encrypt_messages(k.secret, messages, 4);
      for (unsigned bits : {12u, 20u, 63u}) {
        const PackedAnswer answer = pack_answer(k.key, in, bits);
        EXPECT_EQ(answer.words.size(), p.big_lwe_dimension().value + m);
        EXPECT_EQ(decrypt_packed(k.secret, answer, 4), messages) << "N' " << np << " m " << m << " bits " << bits;
        // Through its frame, bit for bit.
        const Bytes frame = serialize(answer, p);
        EXPECT_EQ(frame.size(), 64 + 32 + ((p.big_lwe_dimension().value + m) * bits + 7) / 8);
        const PackedAnswer back = deserialize_packed_answer(frame, p);
        EXPECT_EQ(back.words, answer.words);
        EXPECT_EQ(back.count, m);
      }
    }
  }
}

// A shorter answer key (k'N' = 1536 < k*N = 2048, at the security curve's noise for 1536):
// answers decrypt, are k'N' + m words long, the set's id and frame carry the key's length and
// noise, and the checks name what is wrong (too little noise for the length, a key longer
// than k*N, answer fields on a set that packs nothing).
TEST(Packing, AShorterAnswerKeyMakesShorterAnswers) {
  ParameterSet p = packing_set(32, 12, 2);
  const std::uint64_t full_id = p.id();
  p.answer_key_dimension = GlweDimension(48);
  p.answer_std_dev = std::exp2(min_secure_log2_std_dev(1536));
  p.validate();
  EXPECT_NE(p.id(), full_id);
  EXPECT_TRUE(check_security(p).secure) << check_security(p).detail;
  EXPECT_NE(p.describe().find("answers=48x32"), std::string::npos) << p.describe();
  EXPECT_EQ(deserialize_parameter_set(serialize(p)), p);
  auto k = packing_for(p);
  EXPECT_EQ(answer_secret_key(k.secret).flattened().size(), 1536u);
  std::vector<std::uint64_t> messages;
  for (std::size_t t = 0; t < 20; ++t) messages.push_back((7 * t + 1) % 16);
  const PackedAnswer answer = pack_answer(k.key, encrypt_messages(k.secret, messages, 4), 13);
  EXPECT_EQ(answer.words.size(), 1536u + 20);
  EXPECT_EQ(decrypt_packed(k.secret, answer, 4), messages);
  EXPECT_EQ(serialize(answer, p).size(), 64 + 32 + ((1536 + 20) * 13 + 7) / 8);
  EXPECT_EQ(deserialize_packed_answer(serialize(answer, p), p).words, answer.words);
  // The evaluation keys carry the packing key under the shorter key, bodies at its noise.
  const SeededEvaluationKeys seeded = generate_seeded_evaluation_keys(k.secret);
  EXPECT_EQ(serialize(seeded).size(), seeded_evaluation_keys_bytes(p));
  EXPECT_EQ(deserialize_seeded_evaluation_keys(serialize(seeded), &p).packing.bodies.size(), seeded.packing.bodies.size());

  ParameterSet quiet = p;  // the big key's noise is too little for 1536 coefficients
  quiet.answer_std_dev = p.glwe_std_dev;
  const SecurityCheck check = check_security(quiet);
  EXPECT_FALSE(check.secure);
  EXPECT_TRUE(has(check.detail, "answer key (dimension 1536)")) << check.detail;
  ParameterSet longer = p;
  longer.answer_key_dimension = GlweDimension(65);  // 65 x 32 > 2048
  EXPECT_TRUE(has(error_of([&] { longer.validate(); }), "answer_key_dimension"));
  for (const double bad_std : {-1e-9, -0.0, 1.0, 2.0, std::numeric_limits<double>::infinity(),
                               std::numeric_limits<double>::quiet_NaN()}) {
    ParameterSet bad = p;
    bad.answer_std_dev = bad_std;
    EXPECT_TRUE(has(error_of([&] { bad.validate(); }), "answer_std_dev")) << bad_std;
  }
  ParameterSet full = p;  // the full length is written 0: one set, one id
  full.answer_key_dimension = GlweDimension(64);
  EXPECT_TRUE(has(error_of([&] { full.validate(); }), "answer_key_dimension"));
  auto plain = optimize_parameters({.message_bits = 4});
  ASSERT_TRUE(plain);
  plain->answer_std_dev = 1e-9;
  EXPECT_TRUE(has(error_of([&] { plain->validate(); }), "must be 0 without answer packing"));
}

// A wave: pack_answers over rows of different counts equals pack_answer row by row, word
// for word (the same arithmetic, the key read once).
TEST(Packing, AWaveOfRowsPacksAsEachRowAlone) {
  const ParameterSet p = packing_set(8);
  auto k = packing_for(p);
  std::vector<LweCiphertextList> rows;
  for (std::size_t m : {8u, 3u, 1u, 5u}) {
    std::vector<std::uint64_t> messages;
    for (std::size_t t = 0; t < m; ++t) messages.push_back((3 * t + m) % 16);
    rows.push_back(encrypt_messages(k.secret, messages, 4));
  }
  const std::vector<PackedAnswer> wave = pack_answers(k.key, rows, 18);
  ASSERT_EQ(wave.size(), rows.size());
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const PackedAnswer alone = pack_answer(k.key, rows[r], 18);
    EXPECT_EQ(wave[r].words, alone.words) << "row " << r;
    EXPECT_EQ(wave[r].count, rows[r].count());
  }
}

TEST(Packing, BadInputsAreRefusedByName) {
  const ParameterSet p = packing_set(2);
  auto k = packing_for(p);
  const auto three = encrypt_messages(k.secret, {1, 2, 3}, 4);
  EXPECT_TRUE(has(error_of<std::invalid_argument>([&] { (void)pack_answer(k.key, three, 16); }), "a packed answer holds 1 to 2"));
  const auto one = encrypt_messages(k.secret, {1}, 4);
  EXPECT_TRUE(has(error_of<std::invalid_argument>([&] { (void)pack_answer(k.key, one, 0); }), "modulus_bits"));
  EXPECT_TRUE(has(error_of<std::invalid_argument>([&] { (void)pack_answer(PackingKey(), one, 16); }), "no packing key"));
  LweCiphertextList small(p.lwe_dimension, 1);
  EXPECT_TRUE(has(error_of<std::invalid_argument>([&] { (void)pack_answer(k.key, small, 16); }), "dimension"));
  // Frames: truncated, for a set that packs nothing, for another N'.
  const Bytes frame = serialize(pack_answer(k.key, one, 16), p);
  Bytes cut(frame.begin(), frame.end() - 1);
  EXPECT_THROW((void)deserialize_packed_answer(cut, p), FormatError);
  auto plain = optimize_parameters({.message_bits = 4});
  EXPECT_THROW((void)deserialize_packed_answer(frame, *plain), FormatError);
  PackedAnswer forged = pack_answer(k.key, one, 16);
  forged.count = 3;
  EXPECT_THROW((void)unpack_answer(forged), std::invalid_argument);
  EXPECT_THROW((void)serialize(forged, p), std::invalid_argument);
}

TEST(Packing, EvaluationKeysCarryThePackingKey) {
  const ParameterSet p = packing_set(4);
  auto secret = generate_secret_keys(p);
  const SeededEvaluationKeys seeded = generate_seeded_evaluation_keys(secret);
  ASSERT_EQ(seeded.packing.shape, packing_key_shape(p));
  const Bytes bytes = serialize(seeded);
  EXPECT_EQ(bytes.size(), seeded_evaluation_keys_bytes(p));
  const SeededEvaluationKeys back = deserialize_seeded_evaluation_keys(bytes, &p);
  EXPECT_EQ(back.packing.seed, seeded.packing.seed);
  EXPECT_TRUE(std::equal(back.packing.bodies.begin(), back.packing.bodies.end(), seeded.packing.bodies.begin()));
  // Cut inside the packing key: refused (the frame's length no longer matches).
  Bytes cut(bytes.begin(), bytes.end() - 9);
  EXPECT_THROW((void)deserialize_seeded_evaluation_keys(cut, nullptr, cut.size()), FormatError);
  const EvaluationKeys eval = expand_evaluation_keys(back);
  const auto in = encrypt_messages(secret, {7, 9, 11}, 4);
  EXPECT_EQ(decrypt_packed(secret, pack_answer(eval.packing, in, 14), 4), (std::vector<std::uint64_t>{7, 9, 11}));
}

}  // namespace
}  // namespace veil::tfhe
