// The deployment workflow end to end through the C++ API: compile -> save -> client keygen ->
// encrypt -> server run -> decrypt equals the clear quantized prediction; artifacts of two
// compiles are refused when mixed; the secret key is in no file meant for the server;
// corrupted and truncated files give clear errors.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>

#include <nlohmann/json.hpp>

#include "veil/circuit/analysis.hpp"
#include "veil/circuit/clear_executor.hpp"
#include "veil/deploy/envelope.hpp"
#include "veil/deploy/model.hpp"
#include "veil/ml/importers.hpp"
#include "veil/ml/processing.hpp"
#include "veil/tfhe/serialization.hpp"

namespace veil::deploy {
namespace {

namespace fs = std::filesystem;

const fs::path kFixtures = VEIL_FIXTURES_DIR;

fs::path temp_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("veil_deploy_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

ml::Matrix features(const std::string& file, std::size_t rows) {
  ml::Matrix m = ml::load_matrix((kFixtures / "data" / file).string());
  return m.first_columns(30).first_rows(rows);
}

Bytes slurp(const fs::path& p) { return read_file(p, std::uint64_t{1} << 32); }
std::string to_string_for_test(const Bytes& b) { return std::string(b.begin(), b.end()); }
void spit(const fs::path& p, const Bytes& b) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

std::uint64_t element_count_for_test(const std::vector<std::int64_t>& shape) {
  std::uint64_t n = 1;
  for (const std::int64_t d : shape) n *= static_cast<std::uint64_t>(d);
  return n;
}

struct Compiled {
  fs::path dir;
  ModelDev dev;
};

Compiled compile_fixture(const std::string& model, const std::string& name, const DevOptions& options = {}) {
  const ml::Model m = ml::load_model((kFixtures / "models" / model).string());
  const ml::Matrix calibration = features("breast_cancer_calib.csv", 300);
  Compiled c{temp_dir(name), ModelDev::compile(m, calibration, options)};
  c.dev.save(c.dir);
  return c;
}

// Tree comparisons read their feature with neighbour reads: with probability at most 2^-10 a
// read takes the next code up or down (the compile states the bound), which may move a tree to
// another leaf, so FHE = clear is not exact on every row; the fixture FHE test
// (tests/ml/fhe_accuracy_test.cpp) replays such reads. The first `count` rows of `rows` on
// which no single neighbour read changes the model's outputs (each tried in the clear, up and
// down) are steady: there FHE equals the clear model up to the set's 2^-40 reads, so the tests
// below compare them bit for bit. One element at a time is enough: the comparisons of one
// feature share a blind rotation (src/ml/lower_trees.cpp), so a neighbour read moves the
// feature's code for all of them at once, but they are distinct (feature, table) pairs, so a
// move of one step crosses at most one threshold and changes at most one of them. (Compared on the first rows of the split, the XGBoost tests
// failed in two runs of about fifty: FHE had read another leaf.)
ml::Matrix steady_rows(const Compiled& c, const ml::Matrix& rows, std::size_t count) {
  const circuit::Circuit& circuit = c.dev.compiled().circuit;
  const std::vector<circuit::ValueRange>& ranges = c.dev.compiled().analysis.ranges;
  std::vector<std::size_t> keep;
  for (std::size_t r = 0; r < rows.rows && keep.size() < count; ++r) {
    const std::vector<circuit::Tensor> inputs = {ml::quantize_input(c.dev.processing(), rows.row(r))};
    const std::vector<circuit::Tensor> values = circuit::run_clear_all_nodes(circuit, inputs);
    const std::vector<circuit::Tensor> outputs = circuit::run_clear(circuit, inputs);
    bool steady = true;
    for (std::uint32_t id = 0; id < circuit.nodes.size() && steady; ++id) {
      const circuit::Node& n = circuit.nodes[id];
      if (n.kind != circuit::OpKind::kLookup || std::get<circuit::LookupAttributes>(n.attributes).neighbour_log2 == 0)
        continue;
      const circuit::ValueRange& range = ranges[n.operands[0]];
      const std::int64_t step = std::int64_t{1} << range.trailing_zeros;
      const std::vector<std::int64_t>& x = values[n.operands[0]].data;
      for (std::size_t e = 0; e < x.size() && steady; ++e) {
        const circuit::Table& table = n.tables[n.table_index.empty() ? 0 : n.table_index[e]];
        for (const std::int64_t v : {x[e] - step, x[e] + step}) {
          if (v < range.lo || v > range.hi || circuit::table_value(table, v) == circuit::table_value(table, x[e])) continue;
          // Element e alone reads v: a table of its own, whose entry at x[e] is the one at v.
          circuit::Circuit moved = circuit;
          circuit::Node& m = moved.nodes[id];
          if (m.table_index.empty()) m.table_index.assign(x.size(), 0);
          circuit::Table read = table;
          read.values[static_cast<std::size_t>((x[e] - table.domain_min) >> table.domain_shift)] = circuit::table_value(table, v);
          m.table_index[e] = static_cast<std::uint32_t>(m.tables.size());
          m.tables.push_back(std::move(read));
          if (circuit::run_clear(moved, inputs) != outputs) steady = false;
        }
      }
    }
    if (steady) keep.push_back(r);
  }
  EXPECT_EQ(keep.size(), count) << "only " << keep.size() << " steady rows in " << rows.rows;
  ml::Matrix out(keep.size(), rows.cols);
  for (std::size_t i = 0; i < keep.size(); ++i)
    for (std::size_t col = 0; col < rows.cols; ++col) out.at(i, col) = rows.at(keep[i], col);
  return out;
}

// The encrypted round trip of `rows` through the three artifacts and two key files.
void expect_round_trip(const Compiled& c, const ml::Matrix& rows) {
  ModelClient client = ModelClient::load(c.dir);
  EXPECT_EQ(client.model_id(), c.dev.model_id());
  const fs::path keys = c.dir / "keys";
  client.generate_keys(keys);
  const ModelServer server = ModelServer::load(c.dir);
  const auto eval = server.load_evaluation_keys(ModelClient::read_evaluation_keys(keys, client.model_id()));
  EXPECT_EQ(eval != nullptr, server.needs_evaluation_keys());
  const Bytes input = client.quantize_encrypt_serialize(rows);
  RunStats stats;
  const Bytes output = server.run(input, eval.get(), &stats);
  EXPECT_EQ(stats.rows, rows.rows);
  EXPECT_EQ(stats.pbs, static_cast<std::int64_t>(rows.rows) * c.dev.compiled().analysis.statistics.total_pbs);
  // A fresh client (keys from disk) decrypts what the first one encrypted.
  ModelClient other = ModelClient::load(c.dir);
  other.load_keys(keys);
  const ml::Predictions fhe = other.deserialize_decrypt_dequantize(output);
  const ml::Predictions clear = ml::predict_clear(ml::QuantizedModel{c.dev.compiled().circuit, c.dev.processing()}, rows);
  EXPECT_EQ(fhe.labels, clear.labels);
  ASSERT_EQ(fhe.values.size(), clear.values.size());
  for (std::size_t i = 0; i < fhe.values.size(); ++i) EXPECT_DOUBLE_EQ(fhe.values[i], clear.values[i]);
  ASSERT_EQ(fhe.scores.data.size(), clear.scores.data.size());
  for (std::size_t i = 0; i < fhe.scores.data.size(); ++i) EXPECT_DOUBLE_EQ(fhe.scores.data[i], clear.scores.data[i]);
}

// `dir`'s server.zip rewritten to `zip` with `answers` as its answers.json must be refused
// by ModelServer::load with a DeployError naming `named`.
void expect_server_zip_refused(const fs::path& dir, const fs::path& zip, const std::string& answers, const std::string& named) {
  write_zip(zip, {{"circuit.veil", read_zip_member(dir / kServerZip, "circuit.veil", 1 << 30)},
                  {"answers.json", Bytes(answers.begin(), answers.end())},
                  {"versions.json", read_zip_member(dir / kServerZip, "versions.json", 1 << 20)}});
  try {
    (void)ModelServer::load(zip);
    ADD_FAILURE() << "accepted " << answers;
  } catch (const DeployError& e) {
    EXPECT_NE(std::string(e.what()).find(named), std::string::npos) << e.what();
  }
}

TEST(Deploy, LogisticRegressionRoundTrip) {
  const Compiled c = compile_fixture("logreg_breast_cancer.json", "logreg");
  EXPECT_FALSE(c.dev.compiled().uses_bootstrapping);
  expect_round_trip(c, features("breast_cancer_test.csv", 20));
}

TEST(Deploy, XgboostRoundTrip) {
  const Compiled c = compile_fixture("xgb_breast_cancer.json", "xgb");
  EXPECT_TRUE(c.dev.compiled().uses_bootstrapping);
  expect_round_trip(c, steady_rows(c, features("breast_cancer_test.csv", 40), 2));
}

// Answers travel as server.zip's answers.json plans (circuit::plan_output_transport): each
// output modulus-switched to a few bits, bit-packed; a server.zip written before that file
// existed answers as before (keyswitched, 64-bit words) and the client reads both.
TEST(Deploy, AnswersTravelSwitchedAndAnOldServerZipStillAnswers) {
  DevOptions unpacked;
  unpacked.pack_answers = false;
  const Compiled c = compile_fixture("xgb_breast_cancer.json", "answers", unpacked);
  EXPECT_FALSE(c.dev.compiled().params.packs_answers());
  const auto& plan = c.dev.output_transport();
  ASSERT_EQ(plan.size(), c.dev.compiled().circuit.outputs.size());
  const ModelServer server = ModelServer::load(c.dir);
  ASSERT_EQ(server.output_transport().size(), plan.size());
  std::uint64_t packed_bytes = 0;  // per row
  for (std::size_t o = 0; o < plan.size(); ++o) {
    EXPECT_EQ(server.output_transport()[o].keyswitch, plan[o].keyswitch);
    EXPECT_EQ(server.output_transport()[o].modulus_bits, plan[o].modulus_bits);
    EXPECT_GE(plan[o].modulus_bits, 1u);
    EXPECT_LE(plan[o].modulus_bits, 63u);
    const auto& p = c.dev.compiled().params;
    const std::uint64_t words = (plan[o].keyswitch ? p.lwe_dimension.value : p.big_lwe_dimension().value) + 1;
    packed_bytes += (words * element_count_for_test(c.dev.compiled().circuit.nodes[c.dev.compiled().circuit.outputs[o]].shape) *
                         plan[o].modulus_bits + 7) / 8;
  }
  const ml::Matrix rows = steady_rows(c, features("breast_cancer_test.csv", 40), 2);
  ModelClient client = ModelClient::load(c.dir);
  client.generate_keys(c.dir / "keys");
  const auto eval = server.load_evaluation_keys(ModelClient::read_evaluation_keys(c.dir / "keys", client.model_id()));
  const Bytes input = client.quantize_encrypt_serialize(rows);
  const Bytes answer = server.run(input, eval.get());
  // Per row and output: a length and a 64-byte frame header, 24 bytes of shape, the packed words.
  const std::uint64_t frames = rows.rows * plan.size();
  EXPECT_EQ(answer.size(), 64 + 8 + frames * (8 + 64 + 24) + rows.rows * packed_bytes) << answer.size();
  const ml::Predictions clear = ml::predict_clear(ml::QuantizedModel{c.dev.compiled().circuit, c.dev.processing()}, rows);
  EXPECT_EQ(client.deserialize_decrypt_dequantize(answer).scores.data, clear.scores.data);

  // The same model without answers.json: full words, larger, still decrypted.
  const fs::path old_zip = c.dir / "old_server.zip";
  write_zip(old_zip, {{"circuit.veil", read_zip_member(c.dir / kServerZip, "circuit.veil", 1 << 30)},
                      {"versions.json", read_zip_member(c.dir / kServerZip, "versions.json", 1 << 20)}});
  const ModelServer old_server = ModelServer::load(old_zip);
  EXPECT_TRUE(old_server.output_transport().empty());
  const Bytes old_answer = old_server.run(input, eval.get());
  EXPECT_GT(old_answer.size(), answer.size());
  EXPECT_EQ(client.deserialize_decrypt_dequantize(old_answer).labels, clear.labels);

  // A malformed plan is refused by name.
  ASSERT_EQ(plan.size(), 1u);
  for (const std::string bad : {R"({"keyswitch":[true,false],"modulus_bits":[12,12]})", R"({"keyswitch":[1],"modulus_bits":[12]})",
                                R"({"keyswitch":[true],"modulus_bits":[0]})", R"({"keyswitch":[true],"modulus_bits":[64]})",
                                R"({"modulus_bits":[12]})", "not json"}) {
    expect_server_zip_refused(c.dir, old_zip, bad, "answers.json");
  }
}

// Packed answers (tfhe/packing.hpp): the XGBoost fixture's 20 tree outputs travel as one GLWE
// a row, decrypt to the clear prediction, and take the bytes the plan states, far fewer than
// the same compile's unpacked answers; server.zip's packed_modulus_bits is checked; a packed
// answer whose count does not fit the model is refused by name.
TEST(Deploy, PackedAnswersAreSmallerAndDecryptToTheClearPrediction) {
  const Compiled c = compile_fixture("xgb_breast_cancer.json", "packed");
  const circuit::AnswerPacking& plan = c.dev.answer_packing();
  ASSERT_TRUE(plan.packed);
  const tfhe::ParameterSet& p = c.dev.compiled().params;
  ASSERT_TRUE(p.packs_answers());
  EXPECT_EQ(p.answer_polynomial_size.value, std::bit_ceil(plan.outputs));
  EXPECT_LE(plan.break_even_rows(), 64.0);
  EXPECT_LT(plan.packed_bytes * 10, plan.unpacked_bytes);
  // The answer key is shorter than the big key (a shorter mask), at the curve's noise for its
  // length: the set stays secure.
  EXPECT_LT(p.answer_lwe_dimension().value, p.big_lwe_dimension().value);
  EXPECT_GT(p.answer_std_dev, p.glwe_std_dev);
  EXPECT_EQ(p.answer_std_dev,
            std::exp2(tfhe::min_secure_log2_std_dev(p.answer_lwe_dimension().value)));
  EXPECT_TRUE(tfhe::check_security(p).secure) << tfhe::check_security(p).detail;
  const ml::Matrix rows = steady_rows(c, features("breast_cancer_test.csv", 40), 3);
  expect_round_trip(c, rows);

  ModelClient client = ModelClient::load(c.dir);
  client.load_keys(c.dir / "keys");
  const ModelServer server = ModelServer::load(c.dir);
  const Bytes keys = ModelClient::read_evaluation_keys(c.dir / "keys", client.model_id());
  EXPECT_EQ(keys.size(), evaluation_keys_envelope_bytes(p, true));
  const auto eval = server.load_evaluation_keys(keys);
  ASSERT_FALSE(eval->packing.empty());
  const Bytes input = client.quantize_encrypt_serialize(rows);
  const Bytes answer = server.run(input, eval.get());
  // The envelope's header and counts, then per row one frame: its length, header, four shape
  // words and (K + m) words of b bits.
  EXPECT_EQ(answer.size(), 64 + 8 + rows.rows * plan.packed_bytes) << answer.size();
  const ml::Predictions clear = ml::predict_clear(ml::QuantizedModel{c.dev.compiled().circuit, c.dev.processing()}, rows);
  EXPECT_EQ(client.deserialize_decrypt_dequantize(answer).scores.data, clear.scores.data);

  // Damaged answers: truncated envelopes.
  for (std::size_t cut : {answer.size() - 1, answer.size() - 100, std::size_t{200}}) {
    const Bytes shorter(answer.begin(), answer.begin() + static_cast<std::ptrdiff_t>(cut));
    EXPECT_THROW((void)client.deserialize_decrypt_dequantize(shorter), EnvelopeError) << cut;
  }
  // A well-formed packed answer of one output element too few: refused, naming both counts,
  // before anything is unpacked.
  std::vector<OutputRow> opened = open_output_batch(answer, client.model_id(), p);
  ASSERT_EQ(opened.size(), rows.rows);
  ASSERT_TRUE(opened[0].packed);
  std::vector<tfhe::PackedAnswer> short_rows;
  for (auto& row : opened) {
    tfhe::PackedAnswer a = *row.packed;
    a.count -= 1;
    a.words.pop_back();
    short_rows.push_back(std::move(a));
  }
  try {
    (void)client.deserialize_decrypt_dequantize(seal_packed_output_batch(client.model_id(), p, short_rows));
    ADD_FAILURE() << "a packed answer of too few outputs was accepted";
  } catch (const EnvelopeError& e) {
    EXPECT_NE(std::string(e.what()).find("packs " + std::to_string(plan.outputs - 1) + " output elements, the model has " +
                                         std::to_string(plan.outputs)),
              std::string::npos)
        << e.what();
  }
  // A server.zip whose answers.json lost packed_modulus_bits, or gives one out of range.
  const fs::path zip = c.dir / "edited_server.zip";
  const Bytes answers = read_zip_member(c.dir / kServerZip, "answers.json", 1 << 20);
  nlohmann::json j = nlohmann::json::parse(answers.begin(), answers.end());
  ASSERT_TRUE(j.contains("packed_modulus_bits"));
  for (const nlohmann::json& bits : {nlohmann::json(), nlohmann::json(0), nlohmann::json(64), nlohmann::json("14")}) {
    nlohmann::json edited = j;
    if (bits.is_null()) edited.erase("packed_modulus_bits");
    else edited["packed_modulus_bits"] = bits;
    const std::string text = edited.dump();
    expect_server_zip_refused(c.dir, zip, text, "packed_modulus_bits");
  }

  // The same model compiled without packing: larger answers, and keys without the packing key
  // (another parameter set, so neither side takes the other's keys).
  DevOptions off;
  off.pack_answers = false;
  const Compiled u = compile_fixture("xgb_breast_cancer.json", "unpacked", off);
  EXPECT_FALSE(u.dev.answer_packing().packed);
  EXPECT_EQ(u.dev.answer_packing().reason, "packing is off");
  EXPECT_EQ(u.dev.answer_packing().packed_bytes, plan.packed_bytes);  // what it would have been
  EXPECT_NE(u.dev.compiled().params.id(), p.id());
  EXPECT_LT(evaluation_keys_envelope_bytes(u.dev.compiled().params, true), keys.size());
  EXPECT_THROW((void)ModelServer::load(u.dir).load_evaluation_keys(keys), std::exception);
  // Asked for, but past a key budget that the unpacked keys fit: not packed, and it says why.
  DevOptions tight;
  tight.pack_answers = true;
  tight.compile.search.max_key_bytes = tfhe::seeded_evaluation_keys_bytes(u.dev.compiled().params) + 1000;
  const Compiled t = compile_fixture("xgb_breast_cancer.json", "budget", tight);
  EXPECT_FALSE(t.dev.answer_packing().packed);
  EXPECT_NE(t.dev.answer_packing().reason.find("--max-key-mb"), std::string::npos) << t.dev.answer_packing().reason;
  // At 132 bits the answer key gets the 132-bit curve's noise for its length, and
  // client.specs.json asks key generation to check 132 bits.
  DevOptions strict;
  strict.compile.security_bits = 132;
  const Compiled s = compile_fixture("xgb_breast_cancer.json", "secure132", strict);
  const tfhe::ParameterSet& q = s.dev.compiled().params;
  ASSERT_TRUE(q.packs_answers());
  EXPECT_TRUE(tfhe::check_security(q, 132).secure) << tfhe::check_security(q, 132).detail;
  if (q.answer_key_dimension.value != 0)
    EXPECT_EQ(q.answer_std_dev,
              std::exp2(tfhe::min_secure_log2_std_dev(q.answer_lwe_dimension().value, 132)));
  EXPECT_EQ(ModelClient::load(s.dir).specs().security_bits, 132u);
}

// Where answers are not packed, the plan says why (veil compile prints it): a levelled circuit
// has no evaluation keys to carry a packing key, one output has nothing to share, and a key
// that smaller answers repay only after more rows than allowed stays out.
TEST(Deploy, AnswerPackingSaysWhyAnswersAreNotPacked) {
  const Compiled linear = compile_fixture("logreg_breast_cancer.json", "why_linear");
  EXPECT_FALSE(linear.dev.answer_packing().packed);
  EXPECT_EQ(linear.dev.answer_packing().reason, "levelled circuit: no evaluation keys to carry a packing key");
  const Compiled tree = compile_fixture("tree_breast_cancer.json", "why_tree");
  ASSERT_TRUE(tree.dev.compiled().uses_bootstrapping);
  EXPECT_FALSE(tree.dev.answer_packing().packed);
  EXPECT_EQ(tree.dev.answer_packing().reason, "one output a row: nothing to share");
  EXPECT_FALSE(tree.dev.compiled().params.packs_answers());
  // The XGBoost fixture's key is repaid after about 4 rows: allowed 64 it packs, allowed 2 not.
  DevOptions impatient;
  impatient.packing_break_even_rows = 2;
  const Compiled xgb = compile_fixture("xgb_breast_cancer.json", "why_xgb", impatient);
  const circuit::AnswerPacking& plan = xgb.dev.answer_packing();
  EXPECT_FALSE(plan.packed);
  ASSERT_GT(plan.break_even_rows(), 2.0);
  char repaid[32];
  std::snprintf(repaid, sizeof repaid, "%.1f", plan.break_even_rows());
  EXPECT_EQ(plan.reason, "its key would be repaid after " + std::string(repaid) + " rows, more than 2");
  EXPECT_FALSE(xgb.dev.compiled().params.packs_answers());
}

// The key budget against the bootstrap key's body bits (ParameterSet::bsk_body_bits): the
// XGBoost fixture at 4-bit inputs keeps its multi-bit set with the old bits by default (fewer
// would add noise that costs that set), and under a 15 MB budget gets a classical set whose
// bodies carry fewer bits: evaluation keys, packing key included, within the budget.
TEST(Deploy, AKeyBudgetGetsBootstrapKeyBodiesOfFewerBits) {
  DevOptions four;
  four.quantization.tree_input_bits = 4;
  const Compiled free = compile_fixture("xgb_breast_cancer.json", "four_bits", four);
  const tfhe::ParameterSet& f = free.dev.compiled().params;
  EXPECT_EQ(f.grouping, tfhe::GroupingFactor(2)) << f.describe();
  EXPECT_EQ(f.bsk_body_bits, 0u) << f.describe();
  DevOptions budget = four;
  budget.compile.search.max_key_bytes = 15'000'000;
  const Compiled tight = compile_fixture("xgb_breast_cancer.json", "four_bits_15mb", budget);
  const tfhe::ParameterSet& t = tight.dev.compiled().params;
  EXPECT_NE(t.bsk_body_bits, 0u) << t.describe();
  EXPECT_LT(t.bsk_body_bits, tfhe::bootstrap_key_body_bits(t.glwe_std_dev));
  EXPECT_LE(evaluation_keys_envelope_bytes(t, true), budget.compile.search.max_key_bytes) << t.describe();
  EXPECT_TRUE(tight.dev.answer_packing().packed);  // the packing key fits what is left
  // client.specs.json carries the bits, and the keys a client makes are the size stated.
  ModelClient client = ModelClient::load(tight.dir);
  EXPECT_EQ(client.specs().signature.params, t);
  client.generate_keys(tight.dir / "keys");
  EXPECT_EQ(ModelClient::read_evaluation_keys(tight.dir / "keys", client.model_id()).size(),
            evaluation_keys_envelope_bytes(t, true));
}

// The answer key's length and noise travel in client.specs.json (both or neither); an edited
// file whose id was recomputed to match a too-quiet answer key parses, and key generation, the
// only place a client makes keys from it, refuses it naming the answer key.
TEST(Deploy, AnswerKeyFieldsInClientSpecsAreCheckedBeforeKeysExist) {
  const Compiled c = compile_fixture("xgb_breast_cancer.json", "answer_key");
  const ClientSpecs specs = ModelClient::load(c.dir).specs();
  const tfhe::ParameterSet& p = specs.signature.params;
  ASSERT_NE(p.answer_key_dimension.value, 0u);
  const nlohmann::json j = nlohmann::json::parse(client_specs_to_json(specs));
  EXPECT_EQ(j["parameters"]["answer_key_dimension"], p.answer_key_dimension.value);
  for (const char* field : {"answer_std_dev", "answer_key_dimension"}) {
    nlohmann::json one = j;
    one["parameters"].erase(field);
    std::string message;
    try {
      (void)client_specs_from_json(one.dump(), "specs");
    } catch (const std::exception& e) {
      message = e.what();
    }
    EXPECT_NE(message.find(field), std::string::npos) << field << ": " << message;
  }
  ClientSpecs edited = specs;
  edited.signature.params.answer_std_dev = p.glwe_std_dev;  // the big key's noise: too little for k'N' < kN
  const ClientSpecs back = client_specs_from_json(client_specs_to_json(edited), "specs");
  EXPECT_EQ(back.signature.params, edited.signature.params);
  std::string message;
  try {
    (void)tfhe::generate_secret_keys(back.signature.params, false, back.security_bits);
  } catch (const std::exception& e) {
    message = e.what();
  }
  EXPECT_NE(message.find("answer key"), std::string::npos) << message;
}

// The parameter set's grouping (classical or multi-bit blind rotation) travels in
// client.specs.json; a file written before it existed has no such field and reads as the
// classical set it was compiled for, with the same id.
TEST(Deploy, ParameterGroupingTravelsInClientSpecs) {
  const Compiled c = compile_fixture("xgb_breast_cancer.json", "xgb");
  ClientSpecs specs = ModelClient::load(c.dir).specs();
  for (std::size_t grouping : {1u, 2u}) {
    specs.signature.params.grouping = tfhe::GroupingFactor(grouping);
    specs.signature.params.lwe_dimension.value += specs.signature.params.lwe_dimension.value % 2;
    const std::string text = client_specs_to_json(specs);
    EXPECT_NE(text.find("\"grouping\""), std::string::npos);
    EXPECT_EQ(client_specs_from_json(text, "specs").signature.params, specs.signature.params) << grouping;
  }
  specs.signature.params.grouping = tfhe::GroupingFactor(1);
  const std::string text = std::regex_replace(client_specs_to_json(specs), std::regex("\"grouping\":\\s*1,"), "");
  ASSERT_EQ(text.find("grouping"), std::string::npos) << text;
  EXPECT_EQ(client_specs_from_json(text, "specs").signature.params, specs.signature.params);
}

// A network's output is its last accumulator, approximately rounded: client.specs.json
// carries the step, and the client's decryption rounds to it, so every decrypted score is
// scale * (a multiple of the step) + offset. (It need not equal the clear score: a hidden
// lookup reading an approximate value may take the neighbouring entry, which the last layer
// multiplies by its weights; the fixture FHE test replays those choices.)
TEST(Deploy, NetworkRoundTripRoundsTheOutputToItsStep) {
  const Compiled c = compile_fixture("mlp_breast_cancer.onnx", "mlp");
  ModelClient client = ModelClient::load(c.dir);
  const unsigned step_bits = client.specs().signature.outputs.at(0).step_bits;
  EXPECT_GT(step_bits, 0u);
  // The step travels in client.specs.json; a file without it (written before outputs had
  // steps) reads 0; a step that is not below the width is refused, naming the field.
  ClientSpecs specs = client.specs();
  EXPECT_EQ(client_specs_from_json(client_specs_to_json(specs), "specs").signature, specs.signature);
  specs.signature.outputs[0].step_bits = 0;
  EXPECT_EQ(client_specs_to_json(specs).find("step_bits"), std::string::npos);
  EXPECT_EQ(client_specs_from_json(client_specs_to_json(specs), "specs").signature.outputs[0].step_bits, 0u);
  specs.signature.outputs[0].step_bits = specs.signature.outputs[0].width;
  try {
    (void)client_specs_from_json(client_specs_to_json(specs), "specs");
    ADD_FAILURE() << "a step as wide as the output was accepted";
  } catch (const DeployError& e) {
    EXPECT_NE(std::string(e.what()).find("step_bits"), std::string::npos) << e.what();
  }
  client.generate_keys(c.dir / "keys");
  const ModelServer server = ModelServer::load(c.dir);
  const auto eval = server.load_evaluation_keys(ModelClient::read_evaluation_keys(c.dir / "keys", client.model_id()));
  const ml::Matrix rows = features("breast_cancer_test.csv", 3);
  const ml::Predictions fhe = client.deserialize_decrypt_dequantize(server.run(client.quantize_encrypt_serialize(rows), eval.get()));
  const ml::OutputDequantizer& dq = c.dev.processing().outputs.at(0);
  ASSERT_EQ(fhe.scores.cols, dq.scale.size());
  ASSERT_EQ(fhe.scores.data.size(), rows.rows * dq.scale.size());
  for (std::size_t i = 0; i < fhe.scores.data.size(); ++i) {
    const std::size_t e = i % dq.scale.size();
    const double steps = (fhe.scores.data[i] - dq.offset[e]) / dq.scale[e] / std::ldexp(1.0, static_cast<int>(step_bits));
    EXPECT_NEAR(steps, std::nearbyint(steps), 1e-6) << "score " << i << " is not a multiple of the step";
  }
}

TEST(Deploy, SaveRefusesToOverwriteUnlessAsked) {
  const Compiled c = compile_fixture("logreg_breast_cancer.json", "overwrite");
  EXPECT_THROW(c.dev.save(c.dir), DeployError);
  EXPECT_NO_THROW(c.dev.save(c.dir, {.overwrite = true}));
}

TEST(Deploy, FilesOfTwoCompilesAreRefusedWhenMixed) {
  const Compiled a = compile_fixture("logreg_breast_cancer.json", "mix_a");
  DevOptions narrow;
  narrow.quantization.linear_input_bits = 6;
  narrow.quantization.linear_weight_bits = 6;
  const Compiled b = compile_fixture("logreg_breast_cancer.json", "mix_b", narrow);
  ASSERT_NE(a.dev.model_id(), b.dev.model_id());

  // client.zip of one compile with serialized_processing.json of the other.
  const fs::path mixed = temp_dir("mixed");
  fs::copy_file(a.dir / kClientZip, mixed / kClientZip);
  fs::copy_file(b.dir / kProcessingJson, mixed / kProcessingJson);
  try {
    (void)ModelClient::load(mixed);
    FAIL() << "mixed client files were accepted";
  } catch (const DeployError& e) {
    EXPECT_NE(std::string(e.what()).find("different compiles"), std::string::npos) << e.what();
  }

  ModelClient client_a = ModelClient::load(a.dir);
  client_a.generate_keys(a.dir / "keys");
  const ModelServer server_b = ModelServer::load(b.dir);
  // Keys and inputs of model a at the server of model b.
  EXPECT_THROW(server_b.load_evaluation_keys(ModelClient::read_evaluation_keys(a.dir / "keys", a.dev.model_id())),
               EnvelopeError);
  const Bytes input_a = client_a.quantize_encrypt_serialize(features("breast_cancer_test.csv", 1));
  try {
    server_b.run(input_a, nullptr);
    FAIL() << "an input of another model was run";
  } catch (const EnvelopeError& e) {
    EXPECT_NE(std::string(e.what()).find(model_id_hex(a.dev.model_id())), std::string::npos) << e.what();
  }
  // The secret key of model a is refused by a client of model b.
  ModelClient client_b = ModelClient::load(b.dir);
  EXPECT_THROW(client_b.load_keys(a.dir / "keys"), DeployError);
  EXPECT_THROW(client_b.generate_keys(a.dir / "keys"), DeployError);  // never overwrites another model's keys
  // An output of model a decrypted as model b.
  const ModelServer server_a = ModelServer::load(a.dir);
  const Bytes output_a = server_a.run(input_a, nullptr);
  client_b.generate_keys(b.dir / "keys");
  EXPECT_THROW(client_b.deserialize_decrypt_dequantize(output_a), EnvelopeError);
}

// Every 256-byte window of the secret key material must be absent from a file.
bool contains_secret(const Bytes& file, const Bytes& secret_material) {
  const std::size_t w = 256;
  for (std::size_t off = 0; off + w <= secret_material.size(); off += w) {
    const auto begin = secret_material.begin() + static_cast<std::ptrdiff_t>(off);
    if (std::search(file.begin(), file.end(), begin, begin + static_cast<std::ptrdiff_t>(w)) != file.end()) return true;
  }
  return false;
}

TEST(Deploy, SecretKeyIsInNoFileMeantForTheServer) {
  const Compiled c = compile_fixture("xgb_breast_cancer.json", "secret");
  ModelClient client = ModelClient::load(c.dir);
  const fs::path keys = c.dir / "keys";
  client.generate_keys(keys);
  struct stat st{};
  ASSERT_EQ(::stat((keys / kSecretKeyFile).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const tfhe::SecretKeys secret = open_secret_keys(slurp(keys / kSecretKeyFile), client.model_id(), client.specs().signature.params);
  // The key material as it would appear serialized (64-bit little-endian words of 0/1).
  Bytes material;
  for (const auto& bits : {secret.glwe.flattened(), secret.lwe.bits()})
    for (tfhe::Torus b : bits)
      for (int i = 0; i < 8; ++i) material.push_back(static_cast<std::uint8_t>(b >> (8 * i)));
  ASSERT_TRUE(contains_secret(slurp(keys / kSecretKeyFile), material));  // the check can see it
  const Bytes input = client.quantize_encrypt_serialize(features("breast_cancer_test.csv", 2));
  EXPECT_FALSE(contains_secret(slurp(keys / kEvaluationKeysFile), material));
  EXPECT_FALSE(contains_secret(input, material));
  for (const char* f : {kClientZip, kServerZip, kProcessingJson}) EXPECT_FALSE(contains_secret(slurp(c.dir / f), material)) << f;
}

TEST(Deploy, CorruptedOrTruncatedFilesGiveClearErrors) {
  const Compiled c = compile_fixture("xgb_breast_cancer.json", "corrupt");
  ModelClient client = ModelClient::load(c.dir);
  client.generate_keys(c.dir / "keys");
  const ModelServer server = ModelServer::load(c.dir);
  const Bytes eval = ModelClient::read_evaluation_keys(c.dir / "keys", client.model_id());
  const Bytes input = client.quantize_encrypt_serialize(features("breast_cancer_test.csv", 1));
  std::mt19937_64 rng(99);
  for (int trial = 0; trial < 20; ++trial) {
    Bytes bad_eval = eval, bad_input = input;
    bad_eval[rng() % bad_eval.size()] ^= static_cast<std::uint8_t>(1 + rng() % 255);
    bad_input[rng() % bad_input.size()] ^= static_cast<std::uint8_t>(1 + rng() % 255);
    EXPECT_THROW(server.load_evaluation_keys(bad_eval), std::exception);
    EXPECT_THROW(server.run(bad_input, nullptr), std::exception);
    bad_input.resize(rng() % input.size());
    EXPECT_THROW(server.run(bad_input, nullptr), EnvelopeError);
  }
  // Artifacts: a flipped byte in the middle of a zip member, a truncated zip.
  for (const char* name : {kClientZip, kServerZip}) {
    const fs::path dir = temp_dir(std::string("corrupt_") + name);
    for (const char* f : {kClientZip, kServerZip, kProcessingJson}) fs::copy_file(c.dir / f, dir / f);
    Bytes zip = slurp(dir / name);
    Bytes truncated(zip.begin(), zip.begin() + static_cast<std::ptrdiff_t>(zip.size() / 2));
    spit(dir / name, truncated);
    if (std::string(name) == kClientZip) EXPECT_THROW(ModelClient::load(dir), DeployError);
    else EXPECT_THROW(ModelServer::load(dir), DeployError);
    zip[zip.size() / 3] ^= 0x5a;
    spit(dir / name, zip);
    if (std::string(name) == kClientZip) EXPECT_THROW(ModelClient::load(dir), std::exception);
    else EXPECT_THROW(ModelServer::load(dir), std::exception);
  }
  // A processing file that is not JSON, and one with a field of the wrong type.
  const fs::path dir = temp_dir("corrupt_processing");
  for (const char* f : {kClientZip, kServerZip}) fs::copy_file(c.dir / f, dir / f);
  spit(dir / kProcessingJson, Bytes{'{', 'x'});
  EXPECT_THROW(ModelClient::load(dir), DeployError);
}

// Regression (fuzzing finding): libzip checks a member's CRC only when a read reaches its end,
// and reading exactly the member's size never did, so changed bytes under a stale CRC were
// accepted. Every single-byte change to an artifact zip now either leaves what is read
// unchanged (a field no reader uses) or is refused.
TEST(Deploy, EveryByteFlipInAZipIsRefusedOrHarmless) {
  const Compiled c = compile_fixture("logreg_breast_cancer.json", "zipflip");
  const fs::path zip = c.dir / kClientZip;
  const Bytes original = slurp(zip);
  const Bytes versions = read_zip_member(zip, "versions.json", 1 << 20);
  const Bytes specs = read_zip_member(zip, "client.specs.json", 1 << 20);
  const fs::path flipped = c.dir / "flipped.zip";
  int refused = 0;
  for (std::size_t i = 0; i < original.size(); ++i) {
    Bytes bad = original;
    bad[i] ^= 0x01;
    spit(flipped, bad);
    for (const auto& [member, want] : {std::pair{"versions.json", &versions}, std::pair{"client.specs.json", &specs}}) {
      try {
        EXPECT_EQ(read_zip_member(flipped, member, 1 << 20), *want) << "byte " << i << " of " << member;
      } catch (const DeployError&) {
        ++refused;
      }
    }
  }
  EXPECT_GT(refused, static_cast<int>(original.size()) / 2);
}

// Regressions (fuzzing findings): numbers in client.specs.json were cast without checks
// (1e300 to an unsigned: undefined behaviour; 4294967304 wrapped to the stored value, so the
// parameter id still matched; 630.9 truncated), and 1e999 escaped as a raw JSON exception.
TEST(Deploy, ArtifactNumbersMustBeIntegersInRange) {
  const Compiled c = compile_fixture("logreg_breast_cancer.json", "numbers");
  const std::string specs = to_string_for_test(read_zip_member(c.dir / kClientZip, "client.specs.json", 1 << 20));
  const nlohmann::json doc = nlohmann::json::parse(specs);
  ASSERT_NO_THROW(client_specs_from_json(specs, "client.specs.json"));
  auto refused = [&](const nlohmann::json& bad, const std::string& needle) {
    try {
      (void)client_specs_from_json(bad.dump(), "client.specs.json");
      ADD_FAILURE() << "accepted " << needle;
    } catch (const DeployError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  auto with = [&](const char* field, const nlohmann::json& value) {
    nlohmann::json d = doc;
    d["parameters"][field] = value;
    return d;
  };
  const std::uint64_t bits = doc["parameters"]["message_bits"].get<std::uint64_t>();
  refused(with("message_bits", bits + (std::uint64_t{1} << 32)), "message_bits");
  refused(with("lwe_dimension", 1e300), "lwe_dimension");
  refused(with("lwe_dimension", doc["parameters"]["lwe_dimension"].get<double>() + 0.9), "lwe_dimension");
  refused(with("lwe_dimension", -1), "lwe_dimension");
  refused(with("lwe_std_dev", "0.1"), "lwe_std_dev");
  nlohmann::json d = doc;
  d["security_bits"] = 7;
  refused(d, "security_bits");
  d = doc;
  d["inputs"][0]["shape"][0] = 1.5;
  refused(d, "shape");
  // 1e999 overflows the JSON parser's double: the loader's own error, naming the file.
  std::string text = specs;
  text.replace(text.find("\"security_bits\": 128"), 20, "\"security_bits\": 1e999");
  EXPECT_THROW(
      {
        try {
          (void)client_specs_from_json(text, "client.specs.json");
        } catch (const DeployError& e) {
          EXPECT_NE(std::string(e.what()).find("client.specs.json"), std::string::npos) << e.what();
          throw;
        }
      },
      DeployError);
  EXPECT_THROW((void)check_versions_json(R"({"veil": "0.1.0", "artifact_format": "1.0", "model_id": 1e999})", "versions.json"),
               DeployError);
  const fs::path dir = temp_dir("numbers_processing");
  for (const char* f : {kClientZip, kServerZip}) fs::copy_file(c.dir / f, dir / f);
  std::string proc = to_string_for_test(slurp(c.dir / kProcessingJson));
  const auto at = proc.find("\"scale\": ");
  ASSERT_NE(at, std::string::npos);
  proc.insert(at + 9, "1e999, \"was\": ");
  spit(dir / kProcessingJson, Bytes(proc.begin(), proc.end()));
  EXPECT_THROW(ModelClient::load(dir), DeployError);
}

// Regression (probe finding): 29 of 200 one-digit edits of serialized_processing.json were
// accepted and changed the scores silently. client.specs.json now carries the file's SHA-256.
TEST(Deploy, EditedProcessingFileIsRefused) {
  const Compiled c = compile_fixture("logreg_breast_cancer.json", "digest");
  const std::string proc = to_string_for_test(slurp(c.dir / kProcessingJson));
  const fs::path dir = temp_dir("digest_edit");
  for (const char* f : {kClientZip, kServerZip}) fs::copy_file(c.dir / f, dir / f);
  std::mt19937_64 rng(7);
  int edits = 0;
  for (int trial = 0; trial < 200 && edits < 40; ++trial) {
    std::string bad = proc;
    const std::size_t i = rng() % bad.size();
    if (bad[i] < '0' || bad[i] > '9') continue;
    bad[i] = static_cast<char>('0' + (bad[i] - '0' + 1) % 10);
    ++edits;
    spit(dir / kProcessingJson, Bytes(bad.begin(), bad.end()));
    try {
      (void)ModelClient::load(dir);
      ADD_FAILURE() << "an edit at byte " << i << " was accepted";
    } catch (const DeployError& e) {
      EXPECT_NE(std::string(e.what()).find(kProcessingJson), std::string::npos) << e.what();
    }
  }
  EXPECT_GE(edits, 20);
  // The digest is recorded, and the untouched file still loads.
  spit(dir / kProcessingJson, Bytes(proc.begin(), proc.end()));
  EXPECT_EQ(ModelClient::load(dir).specs().processing_sha256.size(), 64u);
}

TEST(Deploy, NewerMajorVersionIsRefusedNamingBothVersions) {
  const std::string text = R"({"veil": "9.0.0", "artifact_format": "2.0", "model_id": "00112233445566778899aabbccddeeff"})";
  try {
    (void)check_versions_json(text, "versions.json");
    FAIL();
  } catch (const DeployError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("2.0"), std::string::npos) << m;
    EXPECT_NE(m.find(kVeilVersion), std::string::npos) << m;
  }
  EXPECT_NO_THROW(check_versions_json(R"({"veil": "0.1.0", "artifact_format": "1.0", "model_id": "00112233445566778899aabbccddeeff"})", "v"));
}

TEST(Deploy, InspectNamesEveryFile) {
  const Compiled c = compile_fixture("logreg_breast_cancer.json", "inspect");
  ModelClient client = ModelClient::load(c.dir);
  client.generate_keys(c.dir / "keys");
  const std::string id = model_id_hex(c.dev.model_id());
  for (const fs::path& f : {c.dir / kClientZip, c.dir / kServerZip, c.dir / kProcessingJson, c.dir / "keys" / kSecretKeyFile,
                            c.dir / "keys" / kEvaluationKeysFile}) {
    const std::string text = inspect_file(f, c.dir);
    EXPECT_NE(text.find(id), std::string::npos) << text;
    EXPECT_NE(text.find("belongs with"), std::string::npos) << text;
  }
  EXPECT_NE(inspect_file(c.dir / "keys" / kSecretKeyFile, std::nullopt).find("SECRET"), std::string::npos);
}

}  // namespace
}  // namespace veil::deploy
