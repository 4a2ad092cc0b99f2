// The inference server over HTTP on loopback (SQLite key store, default job slots unless
// the name says otherwise), on the breast_cancer models of the fixtures:
//   server/<model>/predict_http/clients:C/rows:R/jobs:J
//       C clients, each with its own keys and connection, send requests of R encrypted rows
//       back to back; counters: predictions_per_s (rows per second, all clients), requests_per_s,
//       p50_ms / p99_ms / mean_ms (round trip of one request as a client sees it).
//   server/<model>/http_overhead
//       the same one-row input through deploy::ModelServer::run in process and through
//       POST /predict, alternately; counters: run_ms and http_ms (medians), overhead_ms,
//       overhead_pct (HTTP, key store lookup, key cache, transfers), and
//       in_request_overhead_ms / _pct: the round trip minus the server's own run time
//       (X-Veil-Run-Ms) of the same request, which the variance of FHE runs does not blur.
//   server/<model>/key_upload
//       POST /keys of a client's evaluation keys: transfer, full parse and expansion, store
//       (SQLite, synchronous=FULL); counters: key_mib, ms.
// Compilation, key generation and server start happen outside the timing. Fixtures come from
// $VEIL_FIXTURES, else <source>/tests/fixtures. XGBoost rows take seconds each: its entries
// run one iteration.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "veil/deploy/model.hpp"
#include "veil/ml/importers.hpp"
#include "veil/server/http_client.hpp"
#include "veil/server/http_server.hpp"
#include "veil/server/key_store.hpp"

#ifndef VEIL_SOURCE_DIR
#define VEIL_SOURCE_DIR "."
#endif

namespace {

using namespace veil;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string fixtures_dir() {
  if (const char* env = std::getenv("VEIL_FIXTURES")) return env;
  return std::string(VEIL_SOURCE_DIR) + "/tests/fixtures";
}

double ms_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); }

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const auto i = static_cast<std::size_t>(pos);
  const double frac = pos - static_cast<double>(i);
  return i + 1 < v.size() ? v[i] * (1 - frac) + v[i + 1] * frac : v[i];
}

// A temporary directory per process: compiled models, key directories, SQLite stores.
class Workspace {
 public:
  static Workspace& get() {
    static Workspace w;
    return w;
  }
  ~Workspace() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  // The directory of a compiled fixture model (compiled on first use), or "" if the
  // fixtures are missing.
  fs::path model(const std::string& name) {
    std::lock_guard lock(mutex_);
    const fs::path dir = root_ / "models" / name;
    if (fs::exists(dir / deploy::kServerZip)) return dir;
    const std::string fx = fixtures_dir();
    const std::map<std::string, std::string> files = {{"logreg_breast_cancer", "logreg_breast_cancer.json"},
                                                      {"xgb_breast_cancer", "xgb_breast_cancer.json"}};
    if (!fs::exists(fx + "/models/" + files.at(name))) return {};
    const ml::Matrix calibration = ml::load_matrix(fx + "/data/breast_cancer_calib.csv").first_columns(30);
    deploy::ModelDev::compile(ml::load_model(fx + "/models/" + files.at(name)), calibration).save(dir);
    return dir;
  }
  ml::Matrix rows(std::size_t count) const {
    return ml::load_matrix(fixtures_dir() + "/data/breast_cancer_test.csv").first_columns(30).first_rows(count);
  }
  fs::path fresh(const std::string& what) {
    std::lock_guard lock(mutex_);
    return root_ / (what + std::to_string(counter_++));
  }

 private:
  Workspace() : root_(fs::temp_directory_path() / ("veil_server_bench_" + std::to_string(::getpid()))) {
    fs::create_directories(root_ / "models");
  }
  fs::path root_;
  std::mutex mutex_;
  int counter_ = 0;
};

// The compiled fixture `model`, or "" with the benchmark marked skipped.
fs::path model_or_skip(benchmark::State& state, const std::string& model) {
  fs::path dir = Workspace::get().model(model);
  if (dir.empty()) state.SkipWithError("fixtures not found: set VEIL_FIXTURES");
  return dir;
}

// A server over one model on a free loopback port, quiet.
struct BenchServer {
  std::shared_ptr<server::KeyStore> store;
  std::unique_ptr<server::HttpServer> http;
  std::string url;

  BenchServer(const fs::path& model_dir, std::size_t max_jobs) {
    server::HttpServerOptions o;
    o.models_dir = model_dir;
    o.max_jobs = max_jobs;
    o.max_queue = 256;
    o.worker_threads = 64;
    o.key_cache_bytes = std::uint64_t{2} << 30;
    o.log_requests = false;
    o.log = [](std::string_view) {};
    store = server::open_key_store("sqlite:" + Workspace::get().fresh("keys").string() + ".db");
    http = std::make_unique<server::HttpServer>(o, store);
    url = "http://127.0.0.1:" + std::to_string(http->start("127.0.0.1", 0));
  }
};

// A client with keys of its own.
struct BenchClient {
  fs::path keys;
  deploy::ModelClient client;
  server::HttpClient http;
  server::KeyGrant grant;

  BenchClient(const fs::path& model_dir, const std::string& url)
      : keys(Workspace::get().fresh("client")), client(deploy::ModelClient::load(model_dir)), http(url) {
    client.generate_keys(keys);
  }
  deploy::Bytes evaluation_keys() const { return deploy::ModelClient::read_evaluation_keys(keys, client.model_id()); }
  void upload(const std::string& model) { grant = http.upload_keys(model, evaluation_keys()); }
};

void predict_http(benchmark::State& state, const std::string& model, std::size_t clients, std::size_t rows,
                  std::size_t jobs) {
  const fs::path dir = model_or_skip(state, model);
  if (dir.empty()) return;
  BenchServer server(dir, jobs);
  const std::string name = dir.filename().string();
  const ml::Matrix input = Workspace::get().rows(rows);
  std::vector<std::unique_ptr<BenchClient>> cs;
  std::vector<deploy::Bytes> batches;
  for (std::size_t c = 0; c < clients; ++c) {
    cs.push_back(std::make_unique<BenchClient>(dir, server.url));
    cs.back()->upload(name);
    batches.push_back(cs.back()->client.quantize_encrypt_serialize(input));
    const int warm_up = model.rfind("xgb", 0) == 0 ? 0 : 3;
    for (int w = 0; w < warm_up; ++w) cs.back()->http.predict(name, &cs.back()->grant, batches.back());
  }
  // Enough requests for a stable p99 without running for minutes.
  const std::size_t per_client = model.rfind("xgb", 0) == 0 ? 1 : std::max<std::size_t>(20, 800 / (clients * rows));
  std::vector<std::vector<double>> latencies(clients);
  double wall_s = 0;
  for (auto _ : state) {
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    for (std::size_t c = 0; c < clients; ++c) {
      threads.emplace_back([&, c] {
        while (!go.load()) std::this_thread::yield();
        for (std::size_t i = 0; i < per_client; ++i) {
          const auto t0 = Clock::now();
          cs[c]->http.predict(name, &cs[c]->grant, batches[c]);
          latencies[c].push_back(ms_between(t0, Clock::now()));
        }
      });
    }
    const auto t0 = Clock::now();
    go.store(true);
    for (auto& t : threads) t.join();
    wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
    state.SetIterationTime(wall_s);
  }
  std::vector<double> all;
  for (const auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  double sum_ms = 0;
  for (double v : all) sum_ms += v;
  state.counters["requests_per_s"] = wall_s > 0 ? static_cast<double>(all.size()) / wall_s : 0;
  state.counters["predictions_per_s"] = wall_s > 0 ? static_cast<double>(all.size() * rows) / wall_s : 0;
  state.counters["p50_ms"] = percentile(all, 0.50);
  state.counters["p99_ms"] = percentile(all, 0.99);
  state.counters["mean_ms"] = all.empty() ? 0 : sum_ms / static_cast<double>(all.size());
  state.counters["request_bytes"] = static_cast<double>(batches.empty() ? 0 : batches[0].size());
}

void http_overhead(benchmark::State& state, const std::string& model) {
  const fs::path dir = model_or_skip(state, model);
  if (dir.empty()) return;
  BenchServer server(dir, 1);
  const std::string name = dir.filename().string();
  BenchClient client(dir, server.url);
  client.upload(name);
  const deploy::Bytes batch = client.client.quantize_encrypt_serialize(Workspace::get().rows(1));
  // In process: the server side of `veil run`, keys expanded once (as the key cache holds them).
  const deploy::ModelServer direct = deploy::ModelServer::load(dir);
  const auto keys = direct.load_evaluation_keys(client.evaluation_keys());
  for (int w = 0; w < (model.rfind("xgb", 0) == 0 ? 0 : 5); ++w) {
    (void)direct.run(batch, keys.get());
    (void)client.http.predict(name, &client.grant, batch);
  }
  std::vector<double> run_ms, http_ms, outside_ms;
  for (auto _ : state) {
    auto t0 = Clock::now();
    benchmark::DoNotOptimize(direct.run(batch, keys.get()));
    auto t1 = Clock::now();
    server::PredictInfo info;
    benchmark::DoNotOptimize(client.http.predict(name, &client.grant, batch, &info));
    auto t2 = Clock::now();
    run_ms.push_back(ms_between(t0, t1));
    http_ms.push_back(ms_between(t1, t2));
    // Within the same request: everything but the model run (HTTP, store lookup, key cache,
    // envelope checks, transfers), free of the run-to-run variation of the FHE time.
    outside_ms.push_back(ms_between(t1, t2) - info.run_ms);
  }
  const double r = percentile(run_ms, 0.5), h = percentile(http_ms, 0.5), o = percentile(outside_ms, 0.5);
  state.counters["run_ms"] = r;
  state.counters["http_ms"] = h;
  state.counters["overhead_ms"] = h - r;
  state.counters["overhead_pct"] = r > 0 ? 100 * (h - r) / r : 0;
  state.counters["in_request_overhead_ms"] = o;
  state.counters["in_request_overhead_pct"] = r > 0 ? 100 * o / r : 0;
}

void key_upload(benchmark::State& state, const std::string& model) {
  const fs::path dir = model_or_skip(state, model);
  if (dir.empty()) return;
  BenchServer server(dir, 1);
  const std::string name = dir.filename().string();
  BenchClient client(dir, server.url);
  const deploy::Bytes keys = client.evaluation_keys();
  std::vector<double> ms;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    const server::KeyGrant g = client.http.upload_keys(name, keys);
    ms.push_back(ms_between(t0, Clock::now()));
    state.PauseTiming();
    client.http.delete_keys(g);  // keeps the store and the cache small
    state.ResumeTiming();
  }
  state.counters["key_mib"] = static_cast<double>(keys.size()) / (1 << 20);
  state.counters["ms"] = percentile(ms, 0.5);
}

void register_all() {
  for (const auto& [clients, rows, jobs] : std::vector<std::tuple<std::size_t, std::size_t, std::size_t>>{
           {1, 1, 1}, {2, 1, 1}, {4, 1, 1}, {8, 1, 1}, {16, 1, 1}, {4, 1, 2}, {8, 1, 2}, {1, 32, 1}, {4, 32, 1}}) {
    const std::string n = "server/logreg_breast_cancer/predict_http/clients:" + std::to_string(clients) +
                          "/rows:" + std::to_string(rows) + "/jobs:" + std::to_string(jobs);
    benchmark::RegisterBenchmark(n.c_str(), predict_http, std::string("logreg_breast_cancer"), clients, rows, jobs)
        ->Iterations(1)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  }
  benchmark::RegisterBenchmark("server/logreg_breast_cancer/http_overhead", http_overhead, std::string("logreg_breast_cancer"))
      ->Iterations(300)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("server/logreg_breast_cancer/key_upload", key_upload, std::string("logreg_breast_cancer"))
      ->Iterations(50)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("server/xgb_breast_cancer/key_upload", key_upload, std::string("xgb_breast_cancer"))
      ->Iterations(3)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("server/xgb_breast_cancer/http_overhead", http_overhead, std::string("xgb_breast_cancer"))
      ->Iterations(2)
      ->Unit(benchmark::kMillisecond);
  for (const std::size_t clients : {1, 2}) {
    const std::string n = "server/xgb_breast_cancer/predict_http/clients:" + std::to_string(clients) + "/rows:1/jobs:1";
    benchmark::RegisterBenchmark(n.c_str(), predict_http, std::string("xgb_breast_cancer"), clients, std::size_t{1},
                                 std::size_t{1})
        ->Iterations(1)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  }
}

const bool kRegistered = (register_all(), true);

}  // namespace
