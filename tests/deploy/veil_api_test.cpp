// The public API (veil/veil.hpp) as a program that includes nothing else sees it: the three
// roles over bytes and over files, key export and import, and every misuse it promises to
// refuse with InputError, std::invalid_argument or std::logic_error.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "veil/veil.hpp"

namespace veil {
namespace {

namespace fs = std::filesystem;

const fs::path kFixtures = VEIL_FIXTURES_DIR;

fs::path temp_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("veil_api_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

Bytes slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

// The first `rows` samples of a fixture CSV, keeping its first `cols` columns (the fixtures
// end with a target column).
Array features(const std::string& file, std::size_t rows, std::size_t cols) {
  const Array all = Array::load((kFixtures / "data" / file).string());
  const std::size_t width = all.row_size();
  std::vector<double> values;
  for (std::size_t r = 0; r < std::min(rows, all.rows()); ++r)
    for (std::size_t c = 0; c < cols; ++c) values.push_back(all.values[r * width + c]);
  return Array::matrix(values.size() / cols, cols, values);
}

template <typename F>
std::string input_error(F&& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no InputError)";
}

// One compiled tree ensemble (it has lookups, so its keys are real) shared by the tests.
class VeilApi : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(temp_dir("forest"));
    model_ = new CompiledModel(CompiledModel::compile((kFixtures / "models" / "tree_breast_cancer.json").string(),
                                                      features("breast_cancer_calib.csv", 200, 30)));
    model_->save(dir_->string());
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete model_;
    delete dir_;
  }
  static fs::path* dir_;
  static CompiledModel* model_;
};
fs::path* VeilApi::dir_ = nullptr;
CompiledModel* VeilApi::model_ = nullptr;

TEST_F(VeilApi, RolesOverBytesAgreeWithTheClearCircuit) {
  const Array rows = features("breast_cancer_test.csv", 4, 30);
  Client client = Client::from_bytes(slurp(*dir_ / "client.zip"), slurp(*dir_ / "serialized_processing.json"));
  EXPECT_FALSE(client.has_keys());
  EXPECT_EQ(client.model_id(), model_->model_id());
  EXPECT_EQ(client.n_features(), 30u);
  EXPECT_EQ(client.task(), Task::kClassification);
  const ClientKeys keys = client.generate_keys();
  EXPECT_TRUE(client.has_keys());

  const Server server = Server::from_bytes(slurp(*dir_ / "server.zip"));
  EXPECT_TRUE(server.needs_evaluation_keys());
  const ServerKeys server_keys = server.load_keys(keys.evaluation_keys());
  // Known before any key exists: what the client will upload, to the byte.
  EXPECT_EQ(model_->statistics().evaluation_key_bytes, keys.evaluation_keys().size());
  EXPECT_EQ(client.statistics().evaluation_key_bytes, keys.evaluation_keys().size());
  const RunResult run = server.run_with_stats(client.encrypt(rows), server_keys);
  EXPECT_EQ(run.rows, 4u);
  EXPECT_GT(run.pbs, 0);

  const Predictions fhe = client.decrypt(run.output);
  const Predictions clear = model_->predict(rows, Fhe::kDisable);
  EXPECT_EQ(fhe.labels, clear.labels);
  ASSERT_EQ(fhe.scores.shape, (std::vector<std::size_t>{4, 2}));
  EXPECT_EQ(fhe.scores.values, clear.scores.values);
  EXPECT_TRUE(fhe.values.values.empty());
}

TEST_F(VeilApi, ExecuteModeMatchesTheClearCircuit) {
  const Array rows = features("breast_cancer_test.csv", 3, 30);
  EXPECT_EQ(model_->predict(rows, Fhe::kExecute).labels, model_->predict(rows, Fhe::kDisable).labels);
  EXPECT_EQ(model_->predict(rows, Fhe::kSimulate).labels.size(), 3u);
  const Statistics s = model_->statistics();
  EXPECT_GT(s.total_pbs, 0);
  EXPECT_FALSE(s.pbs_by_precision.empty());
  EXPECT_FALSE(s.parameters.empty());
  EXPECT_NE(s.text.find("total PBS"), std::string::npos);
}

TEST_F(VeilApi, KeysExportImportAndDirectories) {
  Client client = Client::load(dir_->string());
  const ClientKeys keys = client.generate_keys();
  const Array rows = features("breast_cancer_test.csv", 2, 30);
  const Bytes query = client.encrypt(rows);

  // A second client (say, the same page after a reload) imports the exported key set.
  Client again = Client::load(dir_->string());
  again.use_keys(again.import_keys(keys.export_secret_key(), keys.evaluation_keys()));
  const Server server = Server::load(dir_->string());
  const Bytes answer = server.run(query, server.load_keys(keys.evaluation_keys()));
  EXPECT_EQ(again.decrypt(answer).labels, client.decrypt(answer).labels);

  // Directories as the CLI keeps them; no silent replacement.
  const fs::path key_dir = temp_dir("keys");
  client.save_keys(key_dir.string());
  EXPECT_EQ(fs::status(key_dir / "secret.key").permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_NE(input_error([&] { client.save_keys(key_dir.string()); }).find("refusing to replace"), std::string::npos);
  EXPECT_NO_THROW(client.save_keys(key_dir.string(), Overwrite::kReplace));
  Client third = Client::load(dir_->string());
  const ClientKeys loaded = third.load_keys(key_dir.string());
  EXPECT_EQ(loaded.evaluation_keys(), keys.evaluation_keys());
  EXPECT_EQ(third.decrypt(answer).labels, client.decrypt(answer).labels);
  fs::remove_all(key_dir);
}

TEST_F(VeilApi, UntrustedInputIsAnInputError) {
  Bytes zip = slurp(*dir_ / "client.zip");
  const Bytes processing = slurp(*dir_ / "serialized_processing.json");
  EXPECT_NE(input_error([&] { Client::from_bytes(Bytes(zip.begin(), zip.begin() + 40), processing); }).find("client.zip"),
            std::string::npos);
  Bytes edited = processing;
  edited[edited.size() / 2] ^= 1;
  EXPECT_NE(input_error([&] { Client::from_bytes(zip, edited); }), "(no InputError)");
  EXPECT_NE(input_error([&] { Server::from_bytes(Bytes{'P', 'K', 3, 4}); }).find("server.zip"), std::string::npos);

  Client client = Client::from_bytes(zip, processing);
  const ClientKeys keys = client.generate_keys();
  const Server server = Server::load(dir_->string());
  Bytes eval = keys.evaluation_keys();
  eval.resize(eval.size() / 2);
  EXPECT_NE(input_error([&] { server.load_keys(eval); }), "(no InputError)");
  Bytes query = client.encrypt(features("breast_cancer_test.csv", 1, 30));
  query[query.size() - 3] ^= 0x40;
  const ServerKeys server_keys = server.load_keys(keys.evaluation_keys());
  EXPECT_NE(input_error([&] { server.run(query, server_keys); }), "(no InputError)");
  EXPECT_NE(input_error([&] { client.decrypt(keys.evaluation_keys()); }), "(no InputError)");
  EXPECT_NE(input_error([&] { client.import_keys(keys.evaluation_keys(), keys.evaluation_keys()); }), "(no InputError)");
  EXPECT_NE(input_error([&] { CompiledModel::compile(Bytes{'{', '}'}, features("breast_cancer_calib.csv", 10, 30)); })
                .find("neither"),
            std::string::npos);
  EXPECT_NE(input_error([&] { Array::load((kFixtures / "no-such-file.csv").string()); }).find("no-such-file"),
            std::string::npos);
}

TEST_F(VeilApi, AnotherModelsKeysAndAnswersAreRefused) {
  const fs::path other_dir = temp_dir("logreg");
  const CompiledModel other = CompiledModel::compile((kFixtures / "models" / "logreg_breast_cancer.json").string(),
                                                     features("breast_cancer_calib.csv", 100, 30));
  other.save(other_dir.string());
  EXPECT_FALSE(Server::load(other_dir.string()).needs_evaluation_keys());
  EXPECT_EQ(other.statistics().evaluation_key_bytes, Client::load(other_dir.string()).generate_keys().evaluation_keys().size());
  Client mine = Client::load(dir_->string());
  Client theirs = Client::load(other_dir.string());
  const ClientKeys their_keys = theirs.generate_keys();
  EXPECT_NE(input_error([&] { mine.use_keys(their_keys); }).find("cannot serve"), std::string::npos);
  const Server server = Server::load(dir_->string());
  EXPECT_NE(input_error([&] { server.load_keys(their_keys.evaluation_keys()); }), "(no InputError)");
  const Server their_server = Server::load(other_dir.string());
  const Bytes answer = their_server.run(theirs.encrypt(features("breast_cancer_test.csv", 1, 30)),
                                        their_server.load_keys(their_keys.evaluation_keys()));
  mine.generate_keys();
  EXPECT_NE(input_error([&] { mine.decrypt(answer); }), "(no InputError)");
  fs::remove_all(other_dir);
}

TEST_F(VeilApi, ContractViolationsAreLogicOrArgumentErrors) {
  Client client = Client::load(dir_->string());
  EXPECT_THROW(client.encrypt(features("breast_cancer_test.csv", 1, 30)), std::logic_error);
  client.generate_keys();
  EXPECT_THROW(client.encrypt(features("breast_cancer_test.csv", 1, 29)), std::invalid_argument);
  EXPECT_THROW(Array({2, 3}, {1.0, 2.0}), std::invalid_argument);
  EXPECT_THROW(model_->predict(features("breast_cancer_test.csv", 1, 31)), std::invalid_argument);
  CompileOptions bad;
  bad.n_bits = 12;
  EXPECT_THROW(CompiledModel::compile((kFixtures / "models" / "logreg_breast_cancer.json").string(),
                                      features("breast_cancer_calib.csv", 10, 30), bad),
               std::invalid_argument);
  Client moved = std::move(client);
  EXPECT_TRUE(moved.has_keys());
  EXPECT_THROW((void)client.model_id(), std::logic_error);  // NOLINT(bugprone-use-after-move): the point
  client = moved;                                            // assignable again
  EXPECT_TRUE(client.has_keys());
}

TEST(VeilApiRegression, ValuesPerRowAndImageShapedRows) {
  const fs::path dir = temp_dir("ridge");
  const Array calibration = features("diabetes_calib.csv", 100, 10);
  const CompiledModel model = CompiledModel::compile((kFixtures / "models" / "ridge_diabetes.json").string(), calibration);
  EXPECT_EQ(model.task(), Task::kRegression);
  const Array rows = features("diabetes_test.csv", 3, 10);
  const Predictions p = model.predict(rows, Fhe::kExecute);
  EXPECT_TRUE(p.labels.empty());
  ASSERT_EQ(p.values.shape, (std::vector<std::size_t>{3, 1}));
  EXPECT_EQ(p.values.values, model.predict(rows).values.values);
  // The same rows shaped (N, 2, 5): a sample is read row-major, so the predictions agree.
  EXPECT_EQ(model.predict(Array({3, 2, 5}, rows.values)).values.values, p.values.values);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace veil
