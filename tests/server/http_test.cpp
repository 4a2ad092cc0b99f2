// The HTTP API end to end: a real server on a free loopback port, clients with keys of their
// own, over the SQLite store and (the suite marked Postgres) a PostgreSQL store. Models are
// compiled from the fixtures into a temporary models directory: two logistic regressions
// (levelled only: FHE runs take milliseconds; two compiles, so two model ids) and a one-split
// decision tree, the smallest model with lookups (keys required: 114 MiB of keys, ~1.5 s of
// keygen, ~0.4 s per row), used sparingly.
#include <gtest/gtest.h>
#include <httplib.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "server/key_store_backends.hpp"
#include "veil/deploy/model.hpp"
#include "veil/ml/importers.hpp"
#include "veil/server/http_client.hpp"
#include "veil/server/http_server.hpp"
#include "veil/tfhe/isa.hpp"
#include "veil/version.hpp"

namespace veil::server {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using testing::PostgresBackend;
using testing::SqliteBackend;
using testing::TempDir;

const fs::path kFixtures = VEIL_FIXTURES_DIR;

// A one-split tree on feature 22 ("worst perimeter"): the smallest circuit with lookups.
constexpr const char* kStumpJson = R"({"format":"veil-sklearn","version":"1.0","producer":"http_test","n_features":30,
 "preprocessing":[],"model":{"type":"tree_ensemble","estimator":"DecisionTreeClassifier","task":"classification",
 "aggregation":"mean","comparison":"less_equal","n_outputs":2,"classes":[0,1],
 "trees":[{"feature":[22,-1,-1],"threshold":[105.95,0,0],"left":[1,-1,-1],"right":[2,-1,-1],
           "value":[[],[0.1,0.9],[0.95,0.05]]}]}})";

ml::Matrix features(const std::string& file, std::size_t rows) {
  return ml::load_matrix((kFixtures / "data" / file).string()).first_columns(30).first_rows(rows);
}

ml::Matrix row_range(const ml::Matrix& m, std::size_t begin, std::size_t end) {
  ml::Matrix out(end - begin, m.cols);
  for (std::size_t r = begin; r < end; ++r)
    for (std::size_t c = 0; c < m.cols; ++c) out.at(r - begin, c) = m.at(r, c);
  return out;
}

// The models directory, compiled once per test process.
class Models {
 public:
  static const Models& get() {
    static const Models models;
    return models;
  }
  fs::path dir() const { return tmp_.path() / "models"; }
  fs::path dir(const std::string& name) const { return dir() / name; }
  const deploy::ModelDev& dev(const std::string& name) const { return devs_.at(name); }
  const ml::Matrix& rows() const { return rows_; }  // 40 rows of the test split
  ml::Predictions expected(const std::string& name, const ml::Matrix& rows) const {
    const deploy::ModelDev& d = dev(name);
    return ml::predict_clear(ml::QuantizedModel{d.compiled().circuit, d.processing()}, rows);
  }

 private:
  Models() : rows_(features("breast_cancer_test.csv", 40)) {
    std::signal(SIGPIPE, SIG_IGN);  // see http_client.hpp
    const ml::Matrix calibration = features("breast_cancer_calib.csv", 300);
    const ml::Model logreg = ml::load_model((kFixtures / "models" / "logreg_breast_cancer.json").string());
    add("logreg", logreg, calibration, {});
    deploy::DevOptions narrow;
    narrow.quantization.linear_input_bits = 6;
    narrow.quantization.linear_weight_bits = 6;
    add("logreg6", logreg, calibration, narrow);
    const fs::path stump = tmp_.path() / "stump.json";
    std::ofstream(stump) << kStumpJson;
    add("stump", ml::load_model(stump.string()), calibration, {});
  }
  void add(const std::string& name, const ml::Model& model, const ml::Matrix& calibration, const deploy::DevOptions& o) {
    deploy::ModelDev d = deploy::ModelDev::compile(model, calibration, o);
    d.save(dir(name));
    devs_.emplace(name, std::move(d));
  }

  TempDir tmp_;
  ml::Matrix rows_;
  std::map<std::string, deploy::ModelDev> devs_;
};

void expect_same(const ml::Predictions& got, const ml::Predictions& want) {
  EXPECT_EQ(got.labels, want.labels);
  ASSERT_EQ(got.scores.data.size(), want.scores.data.size());
  for (std::size_t i = 0; i < got.scores.data.size(); ++i) EXPECT_DOUBLE_EQ(got.scores.data[i], want.scores.data[i]);
}

// Runs client(c) for c < clients, each on its own thread, and returns how many predictions
// differed from the expected ones (client(c) returns its count) or threw (a failure each,
// reported with the client's number).
int run_clients(int clients, const std::function<int(int)>& client) {
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      try {
        failures += client(c);
      } catch (const std::exception& e) {
        ADD_FAILURE() << "client " << c << ": " << e.what();
        ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  return failures.load();
}

bool differ(const ml::Predictions& got, const ml::Predictions& want) {
  return got.labels != want.labels || got.scores.data != want.scores.data;
}

// A server on 127.0.0.1 and a free port, its log lines kept for inspection.
class TestServer {
 public:
  TestServer(std::shared_ptr<KeyStore> store, HttpServerOptions options = {}) {
    if (options.models_dir.empty()) options.models_dir = Models::get().dir();
    options.log = [this](std::string_view line) {
      std::lock_guard lock(mutex_);
      lines_.emplace_back(line);
    };
    server_ = std::make_unique<HttpServer>(std::move(options), std::move(store));
    port_ = server_->start("127.0.0.1", 0);
  }
  // The server logs until it has stopped: stop it before the log goes.
  ~TestServer() { server_.reset(); }
  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }
  HttpServer& server() { return *server_; }
  std::unique_ptr<httplib::Client> raw() const {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", port_);
    c->set_read_timeout(std::chrono::seconds(60));
    return c;
  }
  // HTTP-level counters and log lines are recorded once a response is written, after the
  // client may have read it: wait for them.
  double wait_metric(const std::string& name, const std::string& labels, double expected) const {
    double value = -1;
    for (int i = 0; i < 500; ++i) {
      value = metric(name, labels);
      if (value == expected) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return value;
  }
  std::vector<std::string> log_lines(std::size_t requests = 0) const {
    for (int i = 0; i < 500; ++i) {
      {
        std::lock_guard lock(mutex_);
        std::size_t n = 0;
        for (const auto& l : lines_) n += l.find("\"msg\":\"request\"") != std::string::npos;
        if (n >= requests) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::lock_guard lock(mutex_);
    return lines_;
  }
  // The value of an unlabelled sample, or of the first sample whose labels contain `labels`.
  double metric(const std::string& name, const std::string& labels = "") const {
    std::istringstream in(server_->metrics_text());
    for (std::string line; std::getline(in, line);) {
      if (line.rfind(name, 0) != 0 || line.size() <= name.size()) continue;
      const char next = line[name.size()];
      if (next != ' ' && next != '{') continue;
      if (!labels.empty() && line.find(labels) == std::string::npos) continue;
      return std::stod(line.substr(line.rfind(' ') + 1));
    }
    return -1;
  }

 private:
  std::unique_ptr<HttpServer> server_;
  int port_ = 0;
  mutable std::mutex mutex_;
  std::vector<std::string> lines_;
};

// One client of one model: a key directory of its own, a connection of its own.
class TestClient {
 public:
  TestClient(const std::string& url, const std::string& model)
      : model_(model), client_(deploy::ModelClient::load(Models::get().dir(model))), http_(url) {
    client_.generate_keys(keys_.path());
  }
  const KeyGrant& upload() {
    grant_ = http_.upload_keys(model_, deploy::ModelClient::read_evaluation_keys(keys_.path(), client_.model_id()));
    return grant_;
  }
  deploy::Bytes encrypt(const ml::Matrix& rows) const { return client_.quantize_encrypt_serialize(rows); }
  ml::Predictions predict(const ml::Matrix& rows, PredictInfo* info = nullptr) {
    return client_.deserialize_decrypt_dequantize(http_.predict(model_, &grant_, encrypt(rows), info));
  }
  deploy::Bytes evaluation_keys() const {
    return deploy::ModelClient::read_evaluation_keys(keys_.path(), client_.model_id());
  }
  const KeyGrant& grant() const { return grant_; }
  void set_grant(const KeyGrant& g) { grant_ = g; }
  HttpClient& http() { return http_; }
  const deploy::ModelClient& model_client() const { return client_; }

 private:
  std::string model_;
  TempDir keys_;
  deploy::ModelClient client_;
  HttpClient http_;
  KeyGrant grant_;
};

// The HttpError `f` throws (status 0 when it throws none).
template <class F>
HttpError http_error(F&& f) {
  try {
    f();
  } catch (const HttpError& e) {
    return e;
  }
  return HttpError(0, "", "no error", std::nullopt);
}

// A raw answer must be a JSON error with this status and code.
void expect_json_error(const httplib::Result& r, int status, const std::string& code) {
  ASSERT_TRUE(r) << "no answer: " << httplib::to_string(r.error());
  EXPECT_EQ(r->status, status) << r->body;
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
  json j;
  ASSERT_NO_THROW(j = json::parse(r->body)) << r->body;
  EXPECT_EQ(j.value("error", ""), code) << r->body;
  EXPECT_FALSE(j.value("detail", "").empty()) << r->body;
}

std::string as_string(const deploy::Bytes& b) { return std::string(b.begin(), b.end()); }

httplib::Headers credentials(const KeyGrant& g) {
  return {{"X-Veil-Key-Id", g.key_id}, {"Authorization", "Bearer " + g.token}};
}

// Holds the first FHE job in its slot until released (or, made disarmed, the first job that
// starts after arm()).
class JobBlocker {
 public:
  explicit JobBlocker(bool armed = true) : armed_(armed) {}
  void arm() {
    std::lock_guard lock(mutex_);
    armed_ = true;
  }
  void hook() {
    std::unique_lock lock(mutex_);
    if (!armed_) return;
    armed_ = false;
    entered_ = true;
    cv_.notify_all();
    cv_.wait(lock, [&] { return released_; });
  }
  bool wait_entered() {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, std::chrono::seconds(30), [&] { return entered_; });
  }
  void release() {
    std::lock_guard lock(mutex_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool armed_;
  bool entered_ = false, released_ = false;
};

// ---------------------------------------------------------------- both stores

template <class Backend>
class HttpStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!backend_.skip_reason().empty()) GTEST_SKIP() << backend_.skip_reason();
    (void)Models::get();
  }
  std::shared_ptr<KeyStore> open_store() const { return open_key_store(backend_.spec()); }

  Backend backend_;
};

TYPED_TEST_SUITE_P(HttpStoreTest);

TYPED_TEST_P(HttpStoreTest, ManyClientsInParallelEachGetTheirOwnPredictions) {
  TestServer server(this->open_store());
  constexpr int kClients = 8;
  const ml::Matrix& rows = Models::get().rows();
  std::vector<std::string> key_ids(kClients);
  const int failures = run_clients(kClients, [&](int c) {
    TestClient client(server.url(), c % 2 == 0 ? "logreg" : "logreg6");
    key_ids[c] = client.upload().key_id;
    // Each client its own rows, three batches, on one connection.
    int wrong = 0;
    for (int b = 0; b < 3; ++b) {
      const std::size_t begin = static_cast<std::size_t>((c * 3 + b) % 36);
      const ml::Matrix batch = row_range(rows, begin, begin + 4);
      wrong += differ(client.predict(batch), Models::get().expected(c % 2 == 0 ? "logreg" : "logreg6", batch));
    }
    return wrong;
  });
  EXPECT_EQ(failures, 0);
  std::sort(key_ids.begin(), key_ids.end());
  EXPECT_EQ(std::unique(key_ids.begin(), key_ids.end()), key_ids.end()) << "two clients got the same key id";
  EXPECT_EQ(server.metric("veil_key_store_keys"), kClients);
  EXPECT_EQ(server.wait_metric("veil_http_requests_total",
                               "route=\"/v1/models/{name}/predict\",method=\"POST\",status=\"200\"", 3 * kClients),
            3 * kClients);
}

TYPED_TEST_P(HttpStoreTest, KeysSurviveARestart) {
  const ml::Matrix rows = row_range(Models::get().rows(), 0, 5);
  KeyGrant grant;
  std::unique_ptr<TestClient> client;
  {
    TestServer first(this->open_store());
    client = std::make_unique<TestClient>(first.url(), "logreg");
    grant = client->upload();
    expect_same(client->predict(rows), Models::get().expected("logreg", rows));
  }
  // A new server object over a new store object on the same database.
  TestServer second(this->open_store());
  TestClient again(second.url(), "logreg");
  EXPECT_EQ(second.metric("veil_key_store_keys"), 1);
  // The first client's keys and token, through a new connection to the new server.
  HttpClient http(second.url());
  const deploy::Bytes out = http.predict("logreg", &grant, client->encrypt(rows));
  expect_same(client->model_client().deserialize_decrypt_dequantize(out), Models::get().expected("logreg", rows));
  http.delete_keys(grant);
  EXPECT_EQ(http_error([&] { http.predict("logreg", &grant, client->encrypt(rows)); }).error(), "unknown_key");
}

TYPED_TEST_P(HttpStoreTest, ConcurrentUploadsAndPredictionsThroughTwoReplicasOfOneStore) {
  // Two servers over one database, as replicas behind a load balancer: a client uploads to
  // one and predicts through the other.
  TestServer a(this->open_store());
  TestServer b(this->open_store());
  constexpr int kClients = 6;
  const int failures = run_clients(kClients, [&](int c) {
    TestClient uploader(c % 2 == 0 ? a.url() : b.url(), "logreg");
    const KeyGrant grant = uploader.upload();
    HttpClient other(c % 2 == 0 ? b.url() : a.url());
    int wrong = 0;
    for (int i = 0; i < 4; ++i) {
      const ml::Matrix batch = row_range(Models::get().rows(), static_cast<std::size_t>(c * 5 + i), static_cast<std::size_t>(c * 5 + i + 3));
      const auto out = other.predict("logreg", &grant, uploader.encrypt(batch));
      wrong += differ(uploader.model_client().deserialize_decrypt_dequantize(out), Models::get().expected("logreg", batch));
    }
    return wrong;
  });
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(a.metric("veil_key_store_keys"), kClients);
  EXPECT_EQ(b.metric("veil_key_store_keys"), kClients);
}

TYPED_TEST_P(HttpStoreTest, WrongTokensUnknownKeysAndDeletion) {
  TestServer server(this->open_store());
  TestClient alice(server.url(), "logreg");
  TestClient bob(server.url(), "logreg");
  const KeyGrant a = alice.upload();
  const KeyGrant b = bob.upload();
  const ml::Matrix rows = row_range(Models::get().rows(), 0, 2);
  auto raw = server.raw();
  const std::string batch = as_string(alice.encrypt(rows));

  // Alice's key id with Bob's token, a token one character off, no token, an unknown id.
  expect_json_error(raw->Post("/v1/models/logreg/predict", credentials({a.key_id, b.token}), batch, "application/octet-stream"),
                    403, "invalid_token");
  std::string off = a.token;
  off.back() = off.back() == '0' ? '1' : '0';
  expect_json_error(raw->Post("/v1/models/logreg/predict", credentials({a.key_id, off}), batch, "application/octet-stream"),
                    403, "invalid_token");
  expect_json_error(raw->Post("/v1/models/logreg/predict", {{"X-Veil-Key-Id", a.key_id}}, batch, "application/octet-stream"),
                    401, "missing_credentials");
  expect_json_error(raw->Post("/v1/models/logreg/predict", {{"Authorization", "Bearer " + a.token}}, batch,
                              "application/octet-stream"),
                    401, "missing_credentials");
  expect_json_error(raw->Post("/v1/models/logreg/predict", credentials({std::string(32, 'a'), a.token}), batch,
                              "application/octet-stream"),
                    404, "unknown_key");
  expect_json_error(raw->Post("/v1/models/logreg/predict", credentials({"../../etc/passwd", a.token}), batch,
                              "application/octet-stream"),
                    404, "unknown_key");

  // Deleting needs the token of that very key.
  expect_json_error(raw->Delete("/v1/keys/" + a.key_id, httplib::Headers{{"Authorization", "Bearer " + b.token}}), 403,
                    "invalid_token");
  expect_json_error(raw->Delete("/v1/keys/" + a.key_id), 401, "missing_credentials");
  EXPECT_NO_THROW(alice.http().delete_keys(a));
  EXPECT_EQ(http_error([&] { alice.predict(rows); }).error(), "unknown_key");
  EXPECT_EQ(http_error([&] { alice.http().delete_keys(a); }).status(), 404);

  // Bob is unaffected, and the server still serves.
  expect_same(bob.predict(rows), Models::get().expected("logreg", rows));
  EXPECT_EQ(server.metric("veil_key_store_keys"), 1);
}

REGISTER_TYPED_TEST_SUITE_P(HttpStoreTest, ManyClientsInParallelEachGetTheirOwnPredictions, KeysSurviveARestart,
                            ConcurrentUploadsAndPredictionsThroughTwoReplicasOfOneStore,
                            WrongTokensUnknownKeysAndDeletion);
INSTANTIATE_TYPED_TEST_SUITE_P(Sqlite, HttpStoreTest, SqliteBackend);
INSTANTIATE_TYPED_TEST_SUITE_P(Postgres, HttpStoreTest, PostgresBackend);

// ---------------------------------------------------------------- SQLite only

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override { (void)Models::get(); }
  std::shared_ptr<KeyStore> open_store() const { return open_key_store(backend_.spec()); }
  SqliteBackend backend_;
};

TEST_F(HttpServerTest, ListsModelsWithTheirIdsSignaturesAndFiles) {
  TestServer server(open_store());
  HttpClient http(server.url());
  const auto models = http.list_models();
  ASSERT_EQ(models.size(), 3u);
  EXPECT_EQ(models[0].name, "logreg");
  EXPECT_EQ(models[1].name, "logreg6");
  EXPECT_EQ(models[2].name, "stump");
  EXPECT_EQ(models[0].model_id, deploy::model_id_hex(Models::get().dev("logreg").model_id()));
  EXPECT_FALSE(models[0].keys_required);
  EXPECT_TRUE(models[2].keys_required);
  const json logreg = json::parse(http.model("logreg").json);
  EXPECT_EQ(logreg["n_features"], 30);
  EXPECT_EQ(logreg["task"], "classification");
  EXPECT_EQ(logreg["input_signature"][0]["shape"], json::array({1, 30}));
  EXPECT_GT(json::parse(models[2].json)["pbs_per_row"].get<int>(), 0);

  const fs::path dir = Models::get().dir("logreg");
  EXPECT_EQ(http.fetch_file("logreg", "client.zip"), deploy::read_file(dir / "client.zip", 1 << 24));
  EXPECT_EQ(http.fetch_file("logreg", "serialized_processing.json"),
            deploy::read_file(dir / "serialized_processing.json", 1 << 24));
  auto raw = server.raw();
  const auto zip = raw->Get("/v1/models/logreg/client.zip");
  ASSERT_TRUE(zip);
  EXPECT_EQ(zip->get_header_value("Content-Type"), "application/zip");
  EXPECT_EQ(zip->get_header_value("X-Veil-Model-Id"), models[0].model_id);

  expect_json_error(raw->Get("/v1/models/nope"), 404, "unknown_model");
  expect_json_error(raw->Get("/v1/models/nope/client.zip"), 404, "unknown_model");
  expect_json_error(raw->Get("/v1/nothing"), 404, "not_found");
  expect_json_error(raw->Get("/v1/models/logreg/predict"), 405, "method_not_allowed");
  const auto health = raw->Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(json::parse(health->body)["status"], "ok");
}

TEST_F(HttpServerTest, MalformedBodiesAreRefusedWithAClearErrorAndTheServerStillServes) {
  TestServer server(open_store());
  TestClient client(server.url(), "logreg");
  TestClient other(server.url(), "logreg6");
  client.upload();
  const KeyGrant& g = client.grant();
  auto raw = server.raw();
  const ml::Matrix rows = row_range(Models::get().rows(), 0, 3);
  const std::string good = as_string(client.encrypt(rows));
  auto predict = [&](const std::string& body) {
    return raw->Post("/v1/models/logreg/predict", credentials(g), body, "application/octet-stream");
  };

  expect_json_error(predict(""), 400, "malformed_body");
  expect_json_error(predict("definitely not an envelope"), 400, "malformed_body");
  expect_json_error(predict(good.substr(0, good.size() / 2)), 400, "malformed_body");
  std::string flipped = good;
  flipped[flipped.size() - 10] ^= 0x40;  // the payload checksum no longer matches
  expect_json_error(predict(flipped), 400, "malformed_body");
  expect_json_error(predict(as_string(client.evaluation_keys())), 400, "malformed_body");  // keys, not inputs
  expect_json_error(predict(as_string(other.encrypt(rows))), 422, "model_mismatch");
  // The right model's envelope with a row of two tensors: the circuit has one input.
  {
    const deploy::ModelId id = client.model_client().model_id();
    const auto& params = client.model_client().specs().signature.params;
    auto batch = deploy::open_input_batch(client.encrypt(row_range(rows, 0, 1)), id, params);
    batch[0].push_back(batch[0][0]);
    expect_json_error(predict(as_string(deploy::seal_input_batch(id, params, batch))), 422, "signature_mismatch");
  }

  auto upload = [&](const std::string& model, const std::string& body) {
    return raw->Post("/v1/models/" + model + "/keys", body, "application/octet-stream");
  };
  expect_json_error(upload("logreg", ""), 400, "malformed_body");
  expect_json_error(upload("logreg", std::string(1000, 'x')), 400, "malformed_body");
  expect_json_error(upload("logreg", good), 400, "malformed_body");  // inputs, not keys
  expect_json_error(upload("logreg", as_string(other.evaluation_keys())), 422, "model_mismatch");
  expect_json_error(upload("nope", as_string(client.evaluation_keys())), 404, "unknown_model");
  // The stump's model id, but no keys in it: a model with lookups needs them.
  const deploy::Bytes empty_stump = deploy::seal_evaluation_keys(Models::get().dev("stump").model_id(), nullptr);
  expect_json_error(upload("stump", as_string(empty_stump)), 400, "malformed_body");
  std::string corrupt = as_string(client.evaluation_keys());
  corrupt.back() ^= 1;
  expect_json_error(upload("logreg", corrupt), 400, "malformed_body");
  // Nothing refused was stored.
  EXPECT_EQ(server.metric("veil_key_store_keys"), 1);

  // The same connection and the server still serve.
  const auto ok = predict(good);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  expect_same(client.model_client().deserialize_decrypt_dequantize(deploy::Bytes(ok->body.begin(), ok->body.end())),
              Models::get().expected("logreg", rows));
  EXPECT_EQ(server.wait_metric("veil_http_requests_total",
                               "route=\"/v1/models/{name}/predict\",method=\"POST\",status=\"400\"", 5),
            5);
}

TEST_F(HttpServerTest, OversizedBodiesAreRefusedBeforeTheyAreRead) {
  HttpServerOptions o;
  o.max_input_bytes = 4096;
  o.max_key_bytes = 8192;
  TestServer server(open_store(), o);
  TestClient client(server.url(), "logreg");
  client.upload();  // 65 bytes: within the key limit
  auto raw = server.raw();
  const std::string big(64 << 10, 'x');
  const std::string huge(8 << 20, 'x');  // more than the sockets buffer: the server drains it

  expect_json_error(raw->Post("/v1/models/logreg/predict", credentials(client.grant()), big, "application/octet-stream"),
                    413, "body_too_large");
  expect_json_error(raw->Post("/v1/models/logreg/predict", credentials(client.grant()), huge, "application/octet-stream"),
                    413, "body_too_large");
  expect_json_error(raw->Post("/v1/models/logreg/keys", std::string(8193, 'k'), "application/octet-stream"), 413,
                    "body_too_large");
  expect_json_error(raw->Get("/v1/models", httplib::Headers{{"Content-Length", "10"}}), 413, "body_too_large");
  // Compressed bodies (a small body could inflate without bound) and chunked ones (no
  // length to check first) are refused too.
  expect_json_error(raw->Post("/v1/models/logreg/predict", httplib::Headers{{"Content-Encoding", "gzip"}}, "abc",
                              "application/octet-stream"),
                    415, "unsupported_encoding");
  expect_json_error(raw->Post(
                        "/v1/models/logreg/predict",
                        [](size_t offset, httplib::DataSink& sink) {
                          if (offset == 0) sink.write("abc", 3);
                          sink.done();
                          return true;
                        },
                        "application/octet-stream"),
                    411, "length_required");

  // An input batch just under the limit is fine; the server still serves.
  const ml::Matrix rows = row_range(Models::get().rows(), 0, 2);
  expect_same(client.predict(rows), Models::get().expected("logreg", rows));
  EXPECT_EQ(server.wait_metric("veil_http_requests_total",
                               "route=\"/v1/models/{name}/predict\",method=\"POST\",status=\"413\"", 2),
            2);
}

TEST_F(HttpServerTest, KeysOfAnotherModelAreRefused) {
  TestServer server(open_store());
  TestClient client(server.url(), "logreg");
  const KeyGrant grant = client.upload();
  TestClient other(server.url(), "logreg6");
  auto raw = server.raw();
  // logreg's key id and token on logreg6, with a logreg6 batch.
  const auto r = raw->Post("/v1/models/logreg6/predict", credentials(grant),
                           as_string(other.encrypt(row_range(Models::get().rows(), 0, 1))), "application/octet-stream");
  expect_json_error(r, 409, "key_model_mismatch");
  EXPECT_NE(json::parse(r->body)["detail"].get<std::string>().find("'logreg' on this server"), std::string::npos);
  // Uploading logreg's keys to logreg6.
  expect_json_error(raw->Post("/v1/models/logreg6/keys", as_string(client.evaluation_keys()), "application/octet-stream"), 422,
                    "model_mismatch");
  // The stump's keys are checked before anything is parsed: logreg's keys are refused.
  expect_json_error(raw->Post("/v1/models/stump/keys", as_string(client.evaluation_keys()), "application/octet-stream"), 422,
                    "model_mismatch");
}

TEST_F(HttpServerTest, AFullQueueGives503WithRetryAfter) {
  JobBlocker blocker;
  HttpServerOptions o;
  o.max_jobs = 1;
  o.max_queue = 0;
  o.retry_after_seconds = 3;
  o.job_hook = [&](const std::string&) { blocker.hook(); };
  TestServer server(open_store(), o);
  TestClient first(server.url(), "logreg");
  TestClient second(server.url(), "logreg");
  first.upload();
  second.upload();
  const ml::Matrix rows = row_range(Models::get().rows(), 0, 2);

  std::thread busy([&] { expect_same(first.predict(rows), Models::get().expected("logreg", rows)); });
  ASSERT_TRUE(blocker.wait_entered());
  auto raw = server.raw();
  const auto r = raw->Post("/v1/models/logreg/predict", credentials(second.grant()), as_string(second.encrypt(rows)),
                           "application/octet-stream");
  expect_json_error(r, 503, "overloaded");
  EXPECT_EQ(r->get_header_value("Retry-After"), "3");
  EXPECT_EQ(http_error([&] { second.predict(rows); }).retry_after(), 3u);
  // Requests without FHE work are still served while the slot is busy.
  const auto health = raw->Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(server.metric("veil_fhe_jobs_running"), 1);
  blocker.release();
  busy.join();
  expect_same(second.predict(rows), Models::get().expected("logreg", rows));
  EXPECT_EQ(server.metric("veil_fhe_jobs_rejected_total", "reason=\"queue_full\""), 2);
}

TEST_F(HttpServerTest, AQueuedRequestGives503AfterTheQueueTimeout) {
  JobBlocker blocker;
  HttpServerOptions o;
  o.max_jobs = 1;
  o.max_queue = 1;
  o.queue_timeout = std::chrono::milliseconds(200);
  o.job_hook = [&](const std::string&) { blocker.hook(); };
  TestServer server(open_store(), o);
  TestClient first(server.url(), "logreg");
  TestClient second(server.url(), "logreg");
  first.upload();
  second.upload();
  const ml::Matrix rows = row_range(Models::get().rows(), 0, 1);
  std::thread busy([&] { EXPECT_NO_THROW(first.predict(rows)); });
  ASSERT_TRUE(blocker.wait_entered());
  const auto t0 = std::chrono::steady_clock::now();
  const HttpError e = http_error([&] { second.predict(rows); });
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(e.status(), 503);
  EXPECT_EQ(e.error(), "overloaded");
  EXPECT_GE(waited, std::chrono::milliseconds(190));
  blocker.release();
  busy.join();
  EXPECT_EQ(server.metric("veil_fhe_jobs_rejected_total", "reason=\"queue_timeout\""), 1);
}

TEST_F(HttpServerTest, StopFinishesRunningJobsAndRefusesQueuedOnes) {
  JobBlocker blocker;
  HttpServerOptions o;
  o.max_jobs = 1;
  o.max_queue = 4;
  o.job_hook = [&](const std::string&) { blocker.hook(); };
  auto server = std::make_unique<TestServer>(open_store(), o);
  TestClient first(server->url(), "logreg");
  TestClient second(server->url(), "logreg");
  first.upload();
  second.upload();
  const ml::Matrix rows = row_range(Models::get().rows(), 0, 1);
  std::thread running([&] { expect_same(first.predict(rows), Models::get().expected("logreg", rows)); });
  ASSERT_TRUE(blocker.wait_entered());
  HttpError queued(0, "", "", std::nullopt);
  std::thread waiting([&] { queued = http_error([&] { second.predict(rows); }); });
  for (int i = 0; i < 500 && server->metric("veil_fhe_jobs_queued") < 1; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_EQ(server->metric("veil_fhe_jobs_queued"), 1);
  server->server().stop();
  waiting.join();
  EXPECT_EQ(queued.status(), 503);
  EXPECT_EQ(queued.error(), "shutting_down");
  blocker.release();
  running.join();
  const int port = server->port();
  server.reset();
  httplib::Client after("127.0.0.1", port);
  EXPECT_FALSE(after.Get("/healthz")) << "the server still answers after stopping";
}

TEST_F(HttpServerTest, AReloadServesAddedAndReplacedModelsAndARequestInFlightFinishesWithItsModel) {
  TempDir dir;
  const auto copy_model = [&](const std::string& from, const std::string& to) {
    fs::remove_all(dir.path() / to);
    fs::copy(Models::get().dir(from), dir.path() / to, fs::copy_options::recursive);
  };
  copy_model("stump", "m");
  // The job hook blocks the one job that starts once armed, until released.
  JobBlocker blocker(false);
  HttpServerOptions o;
  o.models_dir = dir.path();
  o.job_hook = [&](const std::string&) { blocker.hook(); };
  TestServer server(open_store(), o);
  TestClient stump(server.url(), "stump");
  HttpClient http(server.url());
  const KeyGrant grant = http.upload_keys("m", stump.evaluation_keys());
  const ml::Matrix rows = row_range(Models::get().rows(), 0, 3);
  const deploy::Bytes batch = stump.encrypt(rows);
  expect_same(stump.model_client().deserialize_decrypt_dequantize(http.predict("m", &grant, batch)),
              Models::get().expected("stump", rows));

  // A prediction of "m" is running (held in its job slot) while "m" is replaced by another
  // compile and a model is added.
  blocker.arm();
  std::vector<std::uint8_t> in_flight;
  std::thread running([&] {
    HttpClient other(server.url());
    in_flight = other.predict("m", &grant, batch);
  });
  ASSERT_TRUE(blocker.wait_entered());
  copy_model("logreg", "m");
  copy_model("logreg6", "added");
  const ModelReload r = server.server().reload_models();
  EXPECT_EQ(r.added, std::vector<std::string>{"added"});
  EXPECT_EQ(r.replaced, std::vector<std::string>{"m"});
  EXPECT_TRUE(r.removed.empty());
  blocker.release();
  running.join();
  // The request finished with the model it started with: the stump's answer.
  expect_same(stump.model_client().deserialize_decrypt_dequantize(in_flight), Models::get().expected("stump", rows));

  // From now on "m" is the logistic regression: the stump's keys are refused, clearly.
  const auto models = http.list_models();
  ASSERT_EQ(models.size(), 2u);
  EXPECT_EQ(models[0].name, "added");
  EXPECT_EQ(models[1].name, "m");
  EXPECT_EQ(models[1].model_id, deploy::model_id_hex(Models::get().dev("logreg").model_id()));
  const HttpError refused = http_error([&] { http.predict("m", &grant, batch); });
  EXPECT_EQ(refused.status(), 409);
  EXPECT_EQ(refused.error(), "key_model_mismatch");
  EXPECT_NE(refused.detail().find("recompiled"), std::string::npos) << refused.detail();
  TestClient logreg(server.url(), "logreg");
  const deploy::Bytes out = http.predict("m", nullptr, logreg.encrypt(rows));
  expect_same(logreg.model_client().deserialize_decrypt_dequantize(out), Models::get().expected("logreg", rows));

  // A directory that does not load leaves the models as they were.
  fs::create_directories(dir.path() / "broken");
  for (const char* f : {"client.zip", "server.zip", "serialized_processing.json"}) std::ofstream(dir.path() / "broken" / f) << "not a model";
  EXPECT_THROW(server.server().reload_models(), std::exception);
  EXPECT_EQ(http.list_models().size(), 2u);
  EXPECT_EQ(server.metric("veil_model_reloads_total", "result=\"failed\""), 1);
  EXPECT_EQ(server.metric("veil_model_reloads_total", "result=\"ok\""), 1);

  // Removed directories stop being served.
  fs::remove_all(dir.path() / "broken");
  fs::remove_all(dir.path() / "added");
  EXPECT_EQ(server.server().reload_models().removed, std::vector<std::string>{"added"});
  EXPECT_EQ(http_error([&] { http.model("added"); }).error(), "unknown_model");
  EXPECT_EQ(server.metric("veil_models"), 1);
}

// Polls a job until it is finished (at most 60 s): its answer, or what its failure throws.
std::vector<std::uint8_t> await_job(HttpClient& http, const std::string& job, const KeyGrant* grant) {
  for (int i = 0; i < 600; ++i) {
    if (auto out = http.job_result(job, grant)) return *out;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ADD_FAILURE() << "job " << job << " did not finish within 60 s";
  return {};
}

TEST_F(HttpServerTest, AnAsyncPredictionAnswersAsTheSynchronousOneAndIsGuardedByTheKeysToken) {
  HttpServerOptions o;
  o.replica_id = "r7";
  TestServer server(open_store(), o);
  TestClient stump(server.url(), "stump");
  const KeyGrant grant = stump.upload();
  HttpClient http(server.url());
  const ml::Matrix rows = row_range(Models::get().rows(), 0, 3);
  const deploy::Bytes batch = stump.encrypt(rows);
  const std::vector<std::uint8_t> sync = http.predict("stump", &grant, batch);

  const std::string job = http.submit_predict("stump", &grant, batch);
  EXPECT_EQ(job.rfind("r7-", 0), 0u) << job;
  EXPECT_EQ(job.size(), 3u + 32u) << job;
  const std::vector<std::uint8_t> answer = await_job(http, job, &grant);
  EXPECT_EQ(answer, sync) << "the job's answer differs from the synchronous one";
  expect_same(stump.model_client().deserialize_decrypt_dequantize(answer), Models::get().expected("stump", rows));
  // Kept until deleted (a lost answer can be fetched again), only with the keys' token.
  EXPECT_EQ(*http.job_result(job, &grant), sync);
  auto raw = server.raw();
  expect_json_error(raw->Get("/v1/jobs/" + job), 401, "missing_credentials");
  TestClient other(server.url(), "stump");
  const KeyGrant other_grant = other.upload();
  expect_json_error(raw->Get("/v1/jobs/" + job, credentials(other_grant)), 403, "invalid_token");
  expect_json_error(raw->Delete("/v1/jobs/" + job, credentials(other_grant)), 403, "invalid_token");
  expect_json_error(raw->Get("/v1/jobs/r7-" + std::string(32, '0'), credentials(grant)), 404, "unknown_job");
  expect_json_error(raw->Post("/v1/jobs/" + job, credentials(grant), "", "application/octet-stream"), 405,
                    "method_not_allowed");
  EXPECT_EQ(server.metric("veil_async_jobs", "state=\"done\""), 1);
  http.delete_job(job, &grant);
  EXPECT_EQ(http_error([&] { http.job_result(job, &grant); }).error(), "unknown_job");
  EXPECT_EQ(server.metric("veil_async_jobs", "state=\"done\""), 0);
  EXPECT_EQ(server.metric("veil_async_job_bytes"), 0);

  expect_json_error(raw->Post("/v1/models/stump/predict?mode=later", credentials(grant), as_string(batch),
                              "application/octet-stream"),
                    400, "bad_request");
  // The checks of a predict come first: another model's inputs are refused at submission.
  TestClient logreg(server.url(), "logreg");
  EXPECT_EQ(http_error([&] { http.submit_predict("stump", &grant, logreg.encrypt(rows)); }).error(), "model_mismatch");
}

TEST_F(HttpServerTest, AsyncJobsAreBoundedCancellableAndExpire) {
  JobBlocker blocker(false);
  HttpServerOptions o;
  o.max_async_jobs = 3;
  o.async_result_ttl = std::chrono::seconds(1);
  o.job_hook = [&](const std::string&) { blocker.hook(); };
  TestServer server(open_store(), o);
  TestClient stump(server.url(), "stump");
  const KeyGrant grant = stump.upload();
  HttpClient http(server.url());
  const ml::Matrix rows = row_range(Models::get().rows(), 0, 2);
  const deploy::Bytes batch = stump.encrypt(rows);
  blocker.arm();
  const std::string running = http.submit_predict("stump", &grant, batch);
  ASSERT_TRUE(blocker.wait_entered());
  auto raw = server.raw();
  const auto pending = raw->Get("/v1/jobs/" + running, credentials(grant));
  ASSERT_TRUE(pending);
  EXPECT_EQ(pending->status, 202);
  EXPECT_EQ(json::parse(pending->body)["status"], "running");
  const std::string queued = http.submit_predict("stump", &grant, batch);
  const std::string third = http.submit_predict("stump", &grant, batch);
  EXPECT_EQ(json::parse(raw->Get("/v1/jobs/" + queued, credentials(grant))->body)["status"], "queued");
  // The fourth is one too many for this server.
  const HttpError full = http_error([&] { http.submit_predict("stump", &grant, batch); });
  EXPECT_EQ(full.status(), 503);
  EXPECT_EQ(full.error(), "overloaded");
  // Cancelling: the running job and a queued one.
  http.delete_job(running, &grant);
  http.delete_job(queued, &grant);
  blocker.release();
  EXPECT_EQ(http_error([&] { http.job_result(running, &grant); }).error(), "unknown_job");
  EXPECT_EQ(http_error([&] { http.job_result(queued, &grant); }).error(), "unknown_job");
  expect_same(stump.model_client().deserialize_decrypt_dequantize(await_job(http, third, &grant)),
              Models::get().expected("stump", rows));
  // A finished job's answer expires after async_result_ttl.
  std::this_thread::sleep_for(std::chrono::milliseconds(2100));
  EXPECT_EQ(http_error([&] { http.job_result(third, &grant); }).error(), "unknown_job");
  EXPECT_EQ(server.metric("veil_async_job_bytes"), 0);
}

TEST_F(HttpServerTest, AFailedAsyncJobAnswersWhatTheSynchronousRequestWould) {
  HttpServerOptions o;
  o.job_timeout = std::chrono::milliseconds(1);
  o.job_hook = [](const std::string&) { std::this_thread::sleep_for(std::chrono::milliseconds(20)); };
  TestServer server(open_store(), o);
  TestClient logreg(server.url(), "logreg");
  HttpClient http(server.url());
  const deploy::Bytes batch = logreg.encrypt(row_range(Models::get().rows(), 0, 2));
  EXPECT_EQ(http_error([&] { http.predict("logreg", nullptr, batch); }).error(), "job_too_long");
  const std::string job = http.submit_predict("logreg", nullptr, batch);
  const HttpError failed = http_error([&] { await_job(http, job, nullptr); });
  EXPECT_EQ(failed.status(), 413);
  EXPECT_EQ(failed.error(), "job_too_long");
}

TEST_F(HttpServerTest, ARequestIdIsEchoedAndLoggedAndAMalformedOneIsRefused) {
  TestServer server(open_store());
  TestClient client(server.url(), "stump");
  const KeyGrant grant = client.upload();
  const ml::Matrix rows = row_range(Models::get().rows(), 0, 2);
  const std::string batch = as_string(client.encrypt(rows));
  auto raw = server.raw();
  httplib::Headers headers = credentials(grant);
  headers.emplace("X-Request-Id", "client-7:attempt.1_a-b");
  const auto first = raw->Post("/v1/models/stump/predict", headers, batch, "application/octet-stream");
  ASSERT_TRUE(first);
  ASSERT_EQ(first->status, 200) << first->body;
  EXPECT_EQ(first->get_header_value("X-Request-Id"), "client-7:attempt.1_a-b");
  // The same request again (a retry): the same answer, bit for bit: predict is a pure
  // function of the inputs and the keys.
  const auto again = raw->Post("/v1/models/stump/predict", headers, batch, "application/octet-stream");
  ASSERT_TRUE(again);
  ASSERT_EQ(again->status, 200);
  EXPECT_EQ(again->body, first->body);
  expect_same(client.model_client().deserialize_decrypt_dequantize(deploy::Bytes(first->body.begin(), first->body.end())),
              Models::get().expected("stump", rows));
  std::size_t logged = 0;
  for (const auto& line : server.log_lines(3)) {
    const json j = json::parse(line);
    if (j.value("msg", "") == "request" && j.value("route", "") == "/v1/models/{name}/predict")
      logged += j.value("request_id", "") == "client-7:attempt.1_a-b";
  }
  EXPECT_EQ(logged, 2u);

  for (const std::string bad : {std::string("has space"), std::string(129, 'a'), std::string("semi;colon")}) {
    httplib::Headers h = credentials(grant);
    h.emplace("X-Request-Id", bad);
    const auto r = raw->Post("/v1/models/stump/predict", h, batch, "application/octet-stream");
    expect_json_error(r, 400, "bad_request");
    ASSERT_TRUE(r);
    EXPECT_NE(r->body.find("X-Request-Id"), std::string::npos) << r->body;
  }
}

TEST_F(HttpServerTest, LogsOneJsonLinePerRequestWithoutTheToken) {
  TestServer server(open_store());
  TestClient client(server.url(), "logreg");
  const KeyGrant grant = client.upload();
  client.predict(row_range(Models::get().rows(), 0, 1));
  auto raw = server.raw();
  raw->Get("/v1/models/nope");
  std::vector<json> requests;
  for (const auto& line : server.log_lines(3)) {
    EXPECT_EQ(line.find(grant.token), std::string::npos) << "the token is in a log line: " << line;
    json j;
    ASSERT_NO_THROW(j = json::parse(line)) << line;
    if (j["msg"] == "request") requests.push_back(j);
  }
  ASSERT_EQ(requests.size(), 3u);
  // A line is written once its response is sent, so consecutive requests may log in either
  // order: find each by what it was.
  const auto find = [&](const char* field, const json& value) -> const json& {
    for (const json& r : requests)
      if (r.contains(field) && r[field] == value) return r;
    ADD_FAILURE() << "no request log line with " << field << " = " << value;
    return requests[0];
  };
  const json& keys = find("route", "/v1/models/{name}/keys");
  EXPECT_EQ(keys["method"], "POST");
  EXPECT_EQ(keys["status"], 201);
  EXPECT_EQ(keys["key_id"], grant.key_id);
  const json& predict = find("path", "/v1/models/logreg/predict");
  EXPECT_EQ(predict["status"], 200);
  EXPECT_EQ(predict["key_id"], grant.key_id);
  EXPECT_GT(predict["bytes_in"].get<int>(), 0);
  EXPECT_GT(predict["bytes_out"].get<int>(), 0);
  EXPECT_GE(predict["ms"].get<double>(), 0.0);
  EXPECT_EQ(predict["remote"], "127.0.0.1");
  const json& missing = find("status", 404);
  EXPECT_EQ(missing["error"], "unknown_model");
}

TEST_F(HttpServerTest, MetricsArePrometheusText) {
  TestServer server(open_store());
  TestClient client(server.url(), "logreg");
  client.upload();
  client.predict(row_range(Models::get().rows(), 0, 3));
  auto raw = server.raw();
  const auto r = raw->Get("/metrics");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_NE(r->get_header_value("Content-Type").find("text/plain"), std::string::npos);
  for (const char* family : {"veil_http_requests_total", "veil_http_request_duration_seconds", "veil_pbs_total",
                             "veil_key_cache_hits_total", "veil_key_cache_misses_total", "veil_key_cache_bytes",
                             "veil_key_store_keys", "veil_key_store_bytes", "veil_fhe_jobs_queued"})
    EXPECT_NE(r->body.find("# TYPE " + std::string(family) + " "), std::string::npos) << family;
  EXPECT_EQ(server.metric("veil_predicted_rows_total", "model=\"logreg\""), 3);
  EXPECT_EQ(server.metric("veil_key_store_bytes"), static_cast<double>(client.evaluation_keys().size()));
  EXPECT_EQ(server.wait_metric("veil_http_request_duration_seconds_count", "route=\"/v1/models/{name}/predict\"", 1), 1);
  // The build and the kernel set the engine runs.
  EXPECT_EQ(server.metric("veil_build_info", "version=\"" + std::string(veil::kVersion) + "\",kernels=\"" +
                                                 std::string(tfhe::active_isa()) + "\""),
            1);
}

// The model with lookups: keys are validated in full, expanded once, cached, reloaded from
// the store after a restart, and erased from the cache when deleted.
TEST_F(HttpServerTest, AModelWithLookupsUsesItsKeysFromTheCacheAndAfterARestartFromTheStore) {
  const ml::Matrix rows = row_range(Models::get().rows(), 3, 4);
  const ml::Predictions want = Models::get().expected("stump", rows);
  std::unique_ptr<TestClient> client;
  {
    TestServer server(open_store());
    client = std::make_unique<TestClient>(server.url(), "stump");
    // No keys, no prediction.
    auto raw = server.raw();
    expect_json_error(raw->Post("/v1/models/stump/predict", as_string(client->encrypt(rows)), "application/octet-stream"),
                      401, "missing_credentials");
    client->upload();
    EXPECT_EQ(server.metric("veil_key_cache_entries"), 1);  // expanded at upload, kept
    PredictInfo info;
    expect_same(client->predict(rows, &info), want);
    EXPECT_EQ(info.rows, 1u);
    EXPECT_EQ(info.pbs, Models::get().dev("stump").compiled().analysis.statistics.total_pbs);
    expect_same(client->predict(rows), want);
    EXPECT_EQ(server.metric("veil_key_cache_hits_total"), 2);
    EXPECT_EQ(server.metric("veil_key_load_duration_seconds_count"), 0);  // never parsed again
    EXPECT_EQ(server.metric("veil_pbs_total", "model=\"stump\""), 2 * info.pbs);
  }
  TestServer restarted(open_store());
  HttpClient http(restarted.url());
  const KeyGrant grant = client->grant();
  const auto out = http.predict("stump", &grant, client->encrypt(rows));
  expect_same(client->model_client().deserialize_decrypt_dequantize(out), want);
  EXPECT_EQ(restarted.metric("veil_key_cache_misses_total"), 1);
  EXPECT_EQ(restarted.metric("veil_key_load_duration_seconds_count"), 1);
  http.delete_keys(grant);
  EXPECT_EQ(restarted.metric("veil_key_cache_entries"), 0);
  EXPECT_EQ(http_error([&] { http.predict("stump", &grant, client->encrypt(rows)); }).error(), "unknown_key");
}

TEST_F(HttpServerTest, RefusesABadModelsDirectory) {
  HttpServerOptions o;
  TempDir empty;
  o.models_dir = empty.path();
  EXPECT_THROW(HttpServer(o, open_store()), std::runtime_error);
  o.models_dir = empty.path() / "missing";
  EXPECT_THROW(HttpServer(o, open_store()), std::runtime_error);
  // One model's directory is served as that one model.
  o.models_dir = Models::get().dir("logreg");
  HttpServer one(o, open_store());
  ASSERT_EQ(one.models().size(), 1u);
  EXPECT_EQ(one.models()[0].name, "logreg");
  o.max_jobs = 0;
  EXPECT_THROW(HttpServer(o, open_store()), std::invalid_argument);
}

// ---------------------------------------------------------------- hostile clients
//
// Regressions of what a probe found: slow connections that held every thread, bodies read
// whole before any check, a job that outlived its client, a shutdown held by a slow client.

// A raw TCP connection to the server, for clients that misbehave.
class RawSocket {
 public:
  explicit RawSocket(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = fd_ >= 0 && ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~RawSocket() { close(); }
  RawSocket(const RawSocket&) = delete;
  RawSocket& operator=(const RawSocket&) = delete;
  bool connected() const { return connected_; }
  bool send(std::string_view s) {
    std::size_t done = 0;
    while (done < s.size()) {
      const ssize_t n = ::send(fd_, s.data() + done, s.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return false;
      done += static_cast<std::size_t>(n);
    }
    return true;
  }
  // What arrives until the server closes or `timeout` passes; `closed` says which.
  std::string read_all(std::chrono::milliseconds timeout, bool* closed = nullptr) {
    std::string out;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    if (closed) *closed = false;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return out;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return out;
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        if (closed) *closed = true;
        return out;
      }
      out.append(buf, static_cast<std::size_t>(n));
    }
  }
  // The first response's status line and headers, once they have arrived.
  std::string read_head(std::chrono::milliseconds timeout) {
    std::string out;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (out.find("\r\n\r\n") == std::string::npos) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd p{fd_, POLLIN, 0};
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
      char c;
      if (::recv(fd_, &c, 1, 0) != 1) break;
      out += c;
    }
    return out;
  }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

std::string post_head(const std::string& path, std::uint64_t length, const std::string& extra = "") {
  return "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: " +
         std::to_string(length) + "\r\n" + extra + "\r\n";
}

// Probe finding: 32 connections dripping header bytes blocked every client for 600 s.
TEST_F(HttpServerTest, SlowAndIdleConnectionsDoNotStopANormalClient) {
  HttpServerOptions o;
  o.header_timeout = std::chrono::milliseconds(1500);
  TestServer server(open_store(), o);
  rlimit lim{};
  ::getrlimit(RLIMIT_NOFILE, &lim);
  lim.rlim_cur = lim.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &lim);
  // Two descriptors per connection in this process (client and server side), and spare.
  const std::size_t n = std::min<std::size_t>(1000, (static_cast<std::size_t>(lim.rlim_cur) - 200) / 2);
  std::vector<std::unique_ptr<RawSocket>> slow;
  for (std::size_t i = 0; i < n; ++i) {
    auto s = std::make_unique<RawSocket>(server.port());
    ASSERT_TRUE(s->connected()) << "connection " << i;
    if (i % 2 == 1) s->send("GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Drip: a");  // a head never finished
    slow.push_back(std::move(s));
  }
  HttpClientOptions fast;
  fast.connect_timeout = std::chrono::milliseconds(2000);
  fast.read_timeout = std::chrono::milliseconds(2000);
  HttpClient client(server.url(), fast);
  EXPECT_EQ(client.list_models().size(), 3u);
  EXPECT_TRUE(client.healthy());
  // Past the head deadline the unfinished heads get 408 and every one of them is closed.
  bool closed = false;
  const std::string answer = slow[1]->read_all(std::chrono::seconds(10), &closed);
  EXPECT_NE(answer.find("408"), std::string::npos) << answer;
  EXPECT_TRUE(closed);
  slow[0]->read_all(std::chrono::seconds(10), &closed);
  EXPECT_TRUE(closed) << "an idle connection outlived the head deadline";
}

// Probe finding: 410 MiB of headers were read and held; bodies up to the limit were read
// whole before any check, and several at once could exhaust memory.
TEST_F(HttpServerTest, HeadsAndBodiesAreBoundedBeforeTheyAreRead) {
  HttpServerOptions o;
  o.max_key_bytes = 8 << 20;
  o.max_input_bytes = 1 << 20;
  o.max_buffered_body_bytes = 8 << 20;
  TestServer server(open_store(), o);
  {
    RawSocket s(server.port());
    std::string head = "GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    while (head.size() < (100 << 10)) head += "X-Padding: " + std::string(1000, 'p') + "\r\n";
    s.send(head);
    EXPECT_NE(s.read_head(std::chrono::seconds(5)).find("431"), std::string::npos);
  }
  // One upload holds the whole budget while it is being sent; a second is refused from its
  // head, its body never read.
  RawSocket first(server.port());
  ASSERT_TRUE(first.send(post_head("/v1/models/logreg/keys", 8 << 20) + std::string(4096, 'k')));
  RawSocket second(server.port());
  ASSERT_TRUE(second.send(post_head("/v1/models/logreg/keys", 4 << 20)));
  const std::string refused = second.read_head(std::chrono::seconds(5));
  EXPECT_NE(refused.find("503"), std::string::npos) << refused;
  EXPECT_NE(refused.find("Retry-After"), std::string::npos) << refused;
  // Over the route's limit: 413 at once, also with Expect: 100-continue (no 100 is sent).
  RawSocket third(server.port());
  ASSERT_TRUE(third.send(post_head("/v1/models/logreg/predict", 2 << 20, "Expect: 100-continue\r\n")));
  const std::string too_large = third.read_head(std::chrono::seconds(5));
  EXPECT_EQ(too_large.rfind("HTTP/1.1 413", 0), 0u) << too_large;
  // Once the first connection is gone its share of the budget is free again.
  first.close();
  TestClient client(server.url(), "logreg");
  for (int i = 0; i < 50; ++i) {
    try {
      client.upload();
      break;
    } catch (const HttpError& e) {
      ASSERT_EQ(e.status(), 503) << e.what();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  EXPECT_FALSE(client.grant().key_id.empty());
}

// "Expect: 100-continue" is answered once the head is admitted; the body then follows.
TEST_F(HttpServerTest, ExpectContinueIsAnsweredAfterAdmission) {
  TestServer server(open_store());
  TestClient client(server.url(), "logreg");
  const std::string keys = as_string(client.evaluation_keys());
  RawSocket s(server.port());
  ASSERT_TRUE(s.send(post_head("/v1/models/logreg/keys", keys.size(), "Expect: 100-continue\r\n")));
  const std::string interim = s.read_head(std::chrono::seconds(5));
  ASSERT_EQ(interim, "HTTP/1.1 100 Continue\r\n\r\n");
  ASSERT_TRUE(s.send(keys));
  const std::string answer = s.read_head(std::chrono::seconds(10));
  EXPECT_EQ(answer.rfind("HTTP/1.1 201", 0), 0u) << answer;
  EXPECT_EQ(answer.find("100 Continue"), std::string::npos) << "a second interim answer: " << answer;
}

// Probe finding: with the queue full, a 40 MB upload was read whole before its 503, and
// every retry sent it again.
TEST_F(HttpServerTest, ABusyServerRefusesBeforeTheBodyIsSent) {
  JobBlocker blocker;
  HttpServerOptions o;
  o.max_jobs = 1;
  o.max_queue = 0;
  o.job_hook = [&](const std::string&) { blocker.hook(); };
  TestServer server(open_store(), o);
  TestClient first(server.url(), "logreg");
  first.upload();
  const ml::Matrix rows = row_range(Models::get().rows(), 0, 1);
  std::thread busy([&] { expect_same(first.predict(rows), Models::get().expected("logreg", rows)); });
  ASSERT_TRUE(blocker.wait_entered());
  RawSocket s(server.port());
  ASSERT_TRUE(s.send(post_head("/v1/models/logreg/predict", 500000, "Expect: 100-continue\r\n")));
  const std::string head = s.read_head(std::chrono::seconds(5));
  EXPECT_EQ(head.rfind("HTTP/1.1 503", 0), 0u) << head;
  EXPECT_NE(head.find("Retry-After: 1"), std::string::npos) << head;
  blocker.release();
  busy.join();
}

// Probe finding: a job kept running after its client disconnected, and was logged as 200.
TEST_F(HttpServerTest, ARunWhoseClientLeftStopsAndIsLogged499) {
  JobBlocker blocker;
  HttpServerOptions o;
  o.job_hook = [&](const std::string&) { blocker.hook(); };
  TestServer server(open_store(), o);
  TestClient client(server.url(), "logreg");
  client.upload();
  const std::string body = as_string(client.encrypt(row_range(Models::get().rows(), 0, 3)));
  {
    RawSocket s(server.port());
    std::string head = post_head("/v1/models/logreg/predict", body.size(),
                                 "X-Veil-Key-Id: " + client.grant().key_id + "\r\nAuthorization: Bearer " +
                                     client.grant().token + "\r\n");
    ASSERT_TRUE(s.send(head + body));
    ASSERT_TRUE(blocker.wait_entered());
  }  // the client leaves while its job waits in the slot
  blocker.release();
  EXPECT_EQ(server.wait_metric("veil_http_requests_total", "route=\"/v1/models/{name}/predict\",method=\"POST\",status=\"499\"", 1),
            1);
  bool logged = false;
  for (const auto& line : server.log_lines(2))
    logged = logged || (line.find("\"status\":499") != std::string::npos && line.find("client_closed") != std::string::npos);
  EXPECT_TRUE(logged);
  EXPECT_LE(server.metric("veil_predicted_rows_total", "model=\"logreg\""), 0) << "rows of an abandoned run were counted";
}

// Probe finding: one request could hold the job slot for hours.
TEST_F(HttpServerTest, ARunPastTheJobTimeoutIsRefused) {
  HttpServerOptions o;
  o.job_timeout = std::chrono::milliseconds(1);
  o.job_hook = [](const std::string&) { std::this_thread::sleep_for(std::chrono::milliseconds(20)); };
  TestServer server(open_store(), o);
  TestClient client(server.url(), "logreg");
  client.upload();
  const HttpError e = http_error([&] { client.predict(row_range(Models::get().rows(), 0, 2)); });
  EXPECT_EQ(e.status(), 413);
  EXPECT_EQ(e.error(), "job_too_long");
}

// Probe finding: a SIGTERMed server closed its listener at once (the documented /healthz
// "stopping" could never be seen) and a slow client kept it alive for 600 s.
TEST_F(HttpServerTest, StopDrainsAnsweringHealthz503AndSlowClientsDoNotHoldIt) {
  JobBlocker blocker;
  HttpServerOptions o;
  o.job_hook = [&](const std::string&) { blocker.hook(); };
  auto server = std::make_unique<TestServer>(open_store(), o);
  TestClient client(server->url(), "logreg");
  client.upload();
  const ml::Matrix rows = row_range(Models::get().rows(), 0, 1);
  std::thread running([&] { expect_same(client.predict(rows), Models::get().expected("logreg", rows)); });
  ASSERT_TRUE(blocker.wait_entered());
  RawSocket slow(server->port());
  ASSERT_TRUE(slow.send("GET /healthz HTTP/1.1\r\nHost: x\r\n"));  // never finished
  server->server().stop();
  auto raw = server->raw();
  const auto health = raw->Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 503);
  EXPECT_NE(health->body.find("stopping"), std::string::npos) << health->body;
  expect_json_error(raw->Post("/v1/models/logreg/predict", credentials(client.grant()), as_string(client.encrypt(rows)),
                              "application/octet-stream"),
                    503, "shutting_down");
  blocker.release();
  running.join();
  const auto t0 = std::chrono::steady_clock::now();
  server.reset();  // returns once the drain is over, whatever the slow client does
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
}

// Probe finding: a model name with an encoded "../" was answered 413 instead of 404.
TEST_F(HttpServerTest, EncodedDotDotInAModelNameIsNotFound) {
  TestServer server(open_store());
  auto raw = server.raw();
  expect_json_error(raw->Post("/v1/models/%2E%2E%2Fsecret/keys", std::string(10, 'k'), "application/octet-stream"), 404,
                    "not_found");
  expect_json_error(raw->Get("/v1/models/..%2F..%2Fetc/client.zip"), 404, "not_found");
}

// Fuzzing finding: every invented method became a metrics series of its own.
TEST_F(HttpServerTest, InventedMethodsShareOneMetricsSeries) {
  TestServer server(open_store());
  for (int i = 0; i < 20; ++i) {
    RawSocket s(server.port());
    s.send("M" + std::to_string(i) + "X /v1/models HTTP/1.1\r\nHost: x\r\n\r\n");
    (void)s.read_head(std::chrono::seconds(5));
  }
  EXPECT_EQ(server.wait_metric("veil_http_requests_total", "method=\"other\"", 20), 20);
  EXPECT_EQ(server.server().metrics_text().find("M7X"), std::string::npos);
}

// Key uploads need no credentials unless the operator issues upload tokens.
TEST_F(HttpServerTest, UploadsNeedTheOperatorsTokenWhenConfigured) {
  HttpServerOptions o;
  o.upload_tokens = {"operator-issued-token-0001"};
  TestServer server(open_store(), o);
  TestClient anonymous(server.url(), "logreg");
  const HttpError e = http_error([&] { anonymous.upload(); });
  EXPECT_EQ(e.status(), 401);
  EXPECT_EQ(e.error(), "upload_token_required");
  HttpClientOptions with_token;
  with_token.upload_token = "operator-issued-token-0001";
  HttpClient http(server.url(), with_token);
  const KeyGrant g = http.upload_keys("logreg", anonymous.evaluation_keys());
  EXPECT_EQ(g.key_id.size(), 32u);
  with_token.upload_token = "operator-issued-token-0002";
  HttpClient wrong(server.url(), with_token);
  EXPECT_EQ(http_error([&] { wrong.upload_keys("logreg", anonymous.evaluation_keys()); }).status(), 401);
}

// TLS in the process: a client verifying against the right CA gets answers; one trusting
// another CA, or speaking plain HTTP, gets none.
TEST_F(HttpServerTest, ServesHttpsThatClientsVerify) {
  HttpServerOptions o;
  o.tls_cert_file = kFixtures / "tls" / "server.crt";
  o.tls_key_file = kFixtures / "tls" / "server.key";
  TestServer server(open_store(), o);
  const std::string url = "https://127.0.0.1:" + std::to_string(server.port());
  HttpClientOptions verify;
  verify.ca_cert_file = (kFixtures / "tls" / "server.crt").string();
  TestClient client(url, "logreg");  // only for its keys
  HttpClient https(url, verify);
  EXPECT_EQ(https.list_models().size(), 3u);
  const KeyGrant g = https.upload_keys("logreg", client.evaluation_keys());
  const ml::Matrix rows = row_range(Models::get().rows(), 0, 3);
  const auto out = https.predict("logreg", &g, client.encrypt(rows));
  expect_same(client.model_client().deserialize_decrypt_dequantize(out), Models::get().expected("logreg", rows));
  HttpClientOptions wrong_ca;
  wrong_ca.ca_cert_file = (kFixtures / "tls" / "other.crt").string();
  HttpClient untrusting(url, wrong_ca);
  EXPECT_THROW(untrusting.list_models(), std::runtime_error);
  HttpClientOptions quick;
  quick.read_timeout = std::chrono::milliseconds(3000);
  HttpClient plain("http://127.0.0.1:" + std::to_string(server.port()), quick);
  EXPECT_THROW(plain.list_models(), std::runtime_error);
  // A certificate that is not there is refused at construction, naming the file.
  HttpServerOptions missing = o;
  missing.tls_cert_file = kFixtures / "tls" / "missing.crt";
  missing.models_dir = Models::get().dir();
  try {
    HttpServer bad(missing, open_store());
    ADD_FAILURE() << "a missing certificate was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.crt"), std::string::npos) << e.what();
  }
}

// 64 clients at once, each uploading and predicting; those told 503 retry as `veil
// predict` does, and every one gets its own answers.
TEST_F(HttpServerTest, SixtyFourConcurrentClientsAllGetAnswers) {
  TestServer server(open_store());
  const ml::Matrix& rows = Models::get().rows();
  std::atomic<int> retried{0};
  const int failures = run_clients(64, [&](int c) {
    TestClient client(server.url(), "logreg");
    auto with_retry = [&](auto&& f) {
      for (int attempt = 0;; ++attempt) {
        try {
          return f();
        } catch (const HttpError& e) {
          if (e.status() != 503 || attempt >= 200) throw;
          ++retried;
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
      }
    };
    with_retry([&] { return client.upload(); });
    const std::size_t begin = static_cast<std::size_t>(c % 36);
    const ml::Matrix batch = row_range(rows, begin, begin + 4);
    return differ(with_retry([&] { return client.predict(batch); }), Models::get().expected("logreg", batch)) ? 1 : 0;
  });
  EXPECT_EQ(failures, 0);
  RecordProperty("retried_503", retried.load());
}

// Probe finding: keys piled up, and an upload whose answer was lost left a record nobody
// could use or delete. Unused keys now expire; an upload under a client-chosen token can be
// repeated and answers with the same key id.
TEST_F(HttpServerTest, UnusedKeysExpireAfterTheirTtl) {
  HttpServerOptions o;
  o.key_ttl = std::chrono::seconds(1);
  TestServer server(open_store(), o);
  TestClient client(server.url(), "logreg");
  client.upload();
  EXPECT_EQ(server.metric("veil_key_store_keys"), 1);
  for (int i = 0; i < 100 && server.metric("veil_key_store_keys") != 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(server.metric("veil_key_store_keys"), 0);
  EXPECT_EQ(http_error([&] { client.predict(row_range(Models::get().rows(), 0, 1)); }).error(), "unknown_key");
}

TEST_F(HttpServerTest, AnUploadRepeatedWithItsTokenIsStoredOnce) {
  TestServer server(open_store());
  TestClient client(server.url(), "logreg");
  const std::string token = make_key_token();
  ASSERT_EQ(token.size(), 64u);
  EXPECT_NE(token, make_key_token());
  const KeyGrant first = client.http().upload_keys("logreg", client.evaluation_keys(), token);
  const KeyGrant again = client.http().upload_keys("logreg", client.evaluation_keys(), token);
  EXPECT_EQ(first.key_id, again.key_id);
  EXPECT_EQ(again.token, token);
  EXPECT_EQ(server.metric("veil_key_store_keys"), 1);
  client.set_grant(again);
  const ml::Matrix rows = row_range(Models::get().rows(), 0, 2);
  expect_same(client.predict(rows), Models::get().expected("logreg", rows));
  // The token names those keys for that model only (a levelled-only model's keys are the
  // same empty set for every client: another model shows the refusal).
  TestClient other(server.url(), "logreg6");
  EXPECT_EQ(http_error([&] { other.http().upload_keys("logreg6", other.evaluation_keys(), token); }).error(),
            "key_token_reused");
  EXPECT_EQ(http_error([&] { other.http().upload_keys("logreg6", other.evaluation_keys(), "not-hex"); }).status(), 400);
}

// One client cannot take every job slot: its predictions in progress and per second are
// bounded (429 with Retry-After), and the store's size is bounded for everyone (507).
TEST_F(HttpServerTest, PerKeyLimitsAndTheStoreQuota) {
  JobBlocker blocker;
  HttpServerOptions o;
  o.max_requests_per_key = 1;
  o.job_hook = [&](const std::string&) { blocker.hook(); };
  TestServer server(open_store(), o);
  TestClient greedy(server.url(), "logreg");
  TestClient other(server.url(), "logreg");
  greedy.upload();
  other.upload();
  const ml::Matrix rows = row_range(Models::get().rows(), 0, 1);
  std::thread busy([&] { expect_same(greedy.predict(rows), Models::get().expected("logreg", rows)); });
  ASSERT_TRUE(blocker.wait_entered());
  TestClient greedy_again(server.url(), "logreg");  // a second connection with the same key id
  greedy_again.set_grant(greedy.grant());
  const HttpError e = http_error([&] { greedy_again.predict(rows); });
  EXPECT_EQ(e.status(), 429);
  EXPECT_EQ(e.error(), "too_many_requests");
  EXPECT_EQ(e.retry_after(), 1u);
  std::thread queued([&] { expect_same(other.predict(rows), Models::get().expected("logreg", rows)); });
  blocker.release();
  busy.join();
  queued.join();
  expect_same(greedy.predict(rows), Models::get().expected("logreg", rows));

  HttpServerOptions rate;
  rate.key_rate_per_second = 0.5;
  rate.key_burst = 1;
  rate.max_store_bytes = open_store()->stats().total_bytes + 2 * greedy.evaluation_keys().size();  // room for two more
  TestServer limited(open_store(), rate);
  TestClient a(limited.url(), "logreg"), b(limited.url(), "logreg"), c(limited.url(), "logreg");
  a.upload();
  b.upload();
  EXPECT_EQ(http_error([&] { c.upload(); }).status(), 507);
  expect_same(a.predict(rows), Models::get().expected("logreg", rows));
  const HttpError slow = http_error([&] { a.predict(rows); });
  EXPECT_EQ(slow.status(), 429);
  EXPECT_EQ(slow.error(), "rate_limited");
  EXPECT_GE(slow.retry_after().value_or(0), 1u);
  expect_same(b.predict(rows), Models::get().expected("logreg", rows));  // another client's budget
}

}  // namespace
}  // namespace veil::server
