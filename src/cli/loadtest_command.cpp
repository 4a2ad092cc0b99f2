// `veil loadtest` (serve_commands.hpp): C concurrent clients against a Veil server or a
// cluster behind a load balancer, each with keys of its own, each sending R predictions and
// checking every answer against the clear (quantized) model; retries what a fault refuses.
//
// What "safe retry" means here: a prediction is a pure function of the encrypted inputs and
// the client's evaluation keys, so sending the same bytes again (with the same X-Request-Id,
// to join the attempts in the logs) makes the server compute the same answer again; nothing
// on the server changes but counters and a key's last-use time. Key uploads are sent with a
// client-chosen token (X-Veil-Key-Token), which makes a repeated upload a replay that stores
// nothing twice. So every attempt that got no answer, or a 5xx / 429, is repeated as is.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "commands.hpp"
#include "serve_commands.hpp"
#include "veil/deploy/model.hpp"
#include "veil/ml/quantize.hpp"
#include "veil/server/http_client.hpp"

namespace veil::cli {
namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

constexpr std::size_t kMaxClients = 256;
constexpr std::size_t kMaxRequests = 100'000;
constexpr std::size_t kMaxBatch = 64;

// The host of an http(s) URL, without brackets or port; throws std::invalid_argument.
std::string url_host(const std::string& url) {
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string::npos) throw std::invalid_argument("--url '" + url + "' has no scheme: write http://HOST:PORT");
  std::string authority = url.substr(scheme_end + 3);
  authority = authority.substr(0, authority.find('/'));
  if (const auto at = authority.rfind('@'); at != std::string::npos) authority = authority.substr(at + 1);
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string::npos) throw std::invalid_argument("--url '" + url + "': unclosed '[' in the host");
    return authority.substr(1, close - 1);
  }
  return authority.substr(0, authority.find(':'));
}

bool is_loopback(const std::string& host) {
  if (host == "localhost" || host == "::1") return true;
  // 127.0.0.0/8, written as four decimal numbers.
  unsigned a = 0, b = 0, c = 0, d = 0;
  char tail = 0;
  return std::sscanf(host.c_str(), "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) == 4 && a == 127 && b < 256 && c < 256 && d < 256;
}

ml::Matrix rows_at(const ml::Matrix& m, std::size_t first, std::size_t count) {
  ml::Matrix out(count, m.cols);
  for (std::size_t r = 0; r < count; ++r)
    for (std::size_t c = 0; c < m.cols; ++c) out.at(r, c) = m.at((first + r) % m.rows, c);
  return out;
}

// Whether the decrypted predictions of rows first.. (wrapping) are exactly the clear ones.
bool same_as_clear(const ml::Predictions& got, const ml::Predictions& clear, std::size_t n_rows, std::size_t first,
                   std::size_t count) {
  const std::size_t value_width = n_rows == 0 ? 0 : clear.values.size() / n_rows;
  const std::size_t score_width = clear.scores.cols;
  if (got.labels.size() != (clear.labels.empty() ? 0 : count) || got.values.size() != value_width * count ||
      got.scores.rows != (score_width == 0 ? got.scores.rows : count) || got.scores.cols != score_width)
    return false;
  for (std::size_t r = 0; r < count; ++r) {
    const std::size_t src = (first + r) % n_rows;
    if (!clear.labels.empty() && got.labels[r] != clear.labels[src]) return false;
    for (std::size_t v = 0; v < value_width; ++v)
      if (got.values[r * value_width + v] != clear.values[src * value_width + v]) return false;
    for (std::size_t s = 0; s < score_width; ++s)
      if (got.scores.at(r, s) != clear.scores.at(src, s)) return false;
  }
  return true;
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double rank = std::ceil(q * static_cast<double>(v.size()));
  const auto i = static_cast<std::size_t>(std::clamp(rank, 1.0, static_cast<double>(v.size()))) - 1;
  return v[i];
}

std::string fixed(double v, int digits) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

// What all clients saw, under one lock.
struct Tally {
  std::mutex mutex;
  std::uint64_t sent = 0, answered = 0, retried = 0, failed = 0, wrong = 0, uploads = 0, reuploads = 0;
  std::uint64_t rows = 0, pbs = 0;
  std::vector<double> latency_ms;       // per answered request, first attempt to answer
  std::map<std::string, std::uint64_t> retry_causes;  // "503 shutting_down", "no answer", ...
  std::vector<std::string> failures;    // the first few, for the report
  // The prediction phase: the first request's start to the last answer (key generation and
  // uploads come before it and are not in the throughput).
  std::optional<Clock::time_point> first_request, last_answer;

  // Keeps the first few, each on one line (a balancer's error page is HTML over many).
  void note_failure(const std::string& what) {
    if (failures.size() >= 10) return;
    std::string line;
    for (const char c : what) {
      const char d = (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
      if (d == ' ' && (line.empty() || line.back() == ' ')) continue;
      line += d;
    }
    if (line.size() > 300) line = line.substr(0, 297) + "...";
    failures.push_back(line);
  }
};

class LoadClient {
 public:
  LoadClient(const LoadtestArgs& a, std::size_t index, const std::string& run_id, const ml::Matrix& rows,
             const ml::Predictions& clear, bool keys_required, Tally& tally)
      : a_(a),
        index_(index),
        run_id_(run_id),
        rows_(rows),
        clear_(clear),
        keys_required_(keys_required),
        tally_(tally),
        client_(deploy::ModelClient::load(a.artifacts)),
        http_(a.url, options(a)) {}

  void run() {
    // Keys of its own, made here: the secret key never leaves this process.
    const deploy::KeySet keys = client_.make_keys();
    client_.use_keys(keys.secret);
    evaluation_keys_ = keys.evaluation_keys;
    if (keys_required_) upload();
    for (std::size_t i = 0; i < a_.requests; ++i) one_request(i);
  }

 private:
  static server::HttpClientOptions options(const LoadtestArgs& a) {
    server::HttpClientOptions o;
    o.read_timeout = std::chrono::milliseconds(static_cast<std::int64_t>(a.timeout * 1000));
    o.connect_timeout = std::chrono::milliseconds(5000);
    return o;
  }

  // Waits before attempt `attempt` + 1: the server's Retry-After when it gave one (at most
  // 5 s), else 0.1 s doubling to 2 s.
  static void back_off(unsigned attempt, std::optional<unsigned> retry_after) {
    const double seconds = retry_after ? std::min(5.0, static_cast<double>(*retry_after))
                                       : std::min(2.0, 0.1 * std::pow(2.0, std::min(attempt, 5u)));
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  }

  void count_retry(const std::string& cause) {
    std::lock_guard lock(tally_.mutex);
    ++tally_.retried;
    ++tally_.retry_causes[cause];
  }

  static bool retryable(const server::HttpError& e) { return e.status() >= 500 || e.status() == 429; }

  static std::string cause_of(const server::HttpError& e) {
    return std::to_string(e.status()) + (e.error().empty() ? "" : " " + e.error());
  }

  // Uploads the keys under a token chosen here: a repeat after a lost answer is a replay.
  void upload() {
    const std::string token = server::make_key_token();
    for (unsigned attempt = 0;; ++attempt) {
      try {
        grant_ = http_.upload_keys(a_.model, evaluation_keys_, token);
        std::lock_guard lock(tally_.mutex);
        ++tally_.uploads;
        return;
      } catch (const server::HttpError& e) {
        if (!retryable(e) || attempt >= a_.retries) throw;
        count_retry("upload: " + cause_of(e));
        back_off(attempt, e.retry_after());
      } catch (const std::runtime_error& e) {  // no answer: a replica or the balancer went away
        if (attempt >= a_.retries) throw;
        count_retry("upload: no answer");
        back_off(attempt, std::nullopt);
      }
    }
  }

  void one_request(std::size_t i) {
    const std::size_t first = ((index_ * a_.requests + i) * a_.batch_size) % rows_.rows;
    const deploy::Bytes batch = client_.quantize_encrypt_serialize(rows_at(rows_, first, a_.batch_size));
    const std::string request_id = run_id_ + "-c" + std::to_string(index_) + "-r" + std::to_string(i);
    const auto t0 = Clock::now();
    {
      std::lock_guard lock(tally_.mutex);
      ++tally_.sent;
      if (!tally_.first_request || t0 < *tally_.first_request) tally_.first_request = t0;
    }
    bool reuploaded = false;
    for (unsigned attempt = 0;; ++attempt) {
      server::PredictInfo info;
      std::vector<std::uint8_t> out;
      try {
        out = http_.predict(a_.model, keys_required_ ? &grant_ : nullptr, batch, &info, request_id);
      } catch (const server::HttpError& e) {
        if (e.status() == 404 && e.error() == "unknown_key" && !reuploaded) {
          reuploaded = true;  // the store lost the keys (or they expired): once, as veil predict does
          {
            std::lock_guard lock(tally_.mutex);
            ++tally_.reuploads;
          }
          count_retry(cause_of(e));
          upload();
          continue;
        }
        if (retryable(e) && attempt < a_.retries) {
          count_retry(cause_of(e));
          back_off(attempt, e.retry_after());
          continue;
        }
        std::lock_guard lock(tally_.mutex);
        ++tally_.failed;
        tally_.note_failure(request_id + ": " + e.what());
        return;
      } catch (const std::runtime_error& e) {
        if (attempt < a_.retries) {
          count_retry("no answer");
          back_off(attempt, std::nullopt);
          continue;
        }
        std::lock_guard lock(tally_.mutex);
        ++tally_.failed;
        tally_.note_failure(request_id + ": " + e.what());
        return;
      }
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      bool right = false;
      std::string why;
      try {
        right = same_as_clear(client_.deserialize_decrypt_dequantize(out), clear_, rows_.rows, first, a_.batch_size);
        if (!right) why = "the decrypted predictions differ from the clear model's";
      } catch (const std::exception& e) {
        why = std::string("the answer does not decrypt: ") + e.what();
      }
      std::lock_guard lock(tally_.mutex);
      ++tally_.answered;
      const auto now = Clock::now();
      if (!tally_.last_answer || now > *tally_.last_answer) tally_.last_answer = now;
      tally_.rows += a_.batch_size;
      tally_.pbs += static_cast<std::uint64_t>(std::max<std::int64_t>(0, info.pbs));
      tally_.latency_ms.push_back(ms);
      if (!right) {
        ++tally_.wrong;
        tally_.note_failure(request_id + ": " + why);
      }
      return;
    }
  }

  const LoadtestArgs& a_;
  std::size_t index_;
  const std::string& run_id_;
  const ml::Matrix& rows_;
  const ml::Predictions& clear_;
  bool keys_required_;
  Tally& tally_;
  deploy::ModelClient client_;
  server::HttpClient http_;
  deploy::Bytes evaluation_keys_;
  server::KeyGrant grant_;
};

}  // namespace

int loadtest(const LoadtestArgs& a) {
  if (a.clients < 1 || a.clients > kMaxClients)
    throw std::invalid_argument("--clients must be in [1, " + std::to_string(kMaxClients) + "], got " + std::to_string(a.clients));
  if (a.requests < 1 || a.requests > kMaxRequests)
    throw std::invalid_argument("--requests must be in [1, " + std::to_string(kMaxRequests) + "] per client, got " +
                                std::to_string(a.requests));
  if (a.batch_size < 1 || a.batch_size > kMaxBatch)
    throw std::invalid_argument("--batch-size must be in [1, " + std::to_string(kMaxBatch) + "], got " + std::to_string(a.batch_size));
  if (!(a.timeout > 0) || a.timeout > 3600) throw std::invalid_argument("--timeout must be in (0, 3600] seconds");
  const std::string host = url_host(a.url);
  if (!is_loopback(host))
    throw std::invalid_argument("--url '" + a.url + "': host '" + host +
                                "' is not a loopback address (127.0.0.0/8, ::1, localhost): veil loadtest loads only "
                                "servers on this machine");
  std::signal(SIGPIPE, SIG_IGN);

  // The clear model: what every answer must decrypt to.
  const deploy::ModelClient reference = deploy::ModelClient::load(a.artifacts);
  const deploy::ModelServer circuit = deploy::ModelServer::load(a.artifacts);
  if (circuit.model_id() != reference.model_id())
    throw deploy::DeployError(a.artifacts + ": server.zip and client.zip belong to different compiles");
  const std::string model_id = deploy::model_id_hex(reference.model_id());
  const ml::Matrix rows = ml::load_matrix(a.input);
  if (rows.rows == 0) throw std::invalid_argument(a.input + " holds no rows");
  if (rows.cols != reference.processing().n_features)
    throw std::invalid_argument(a.input + " has " + std::to_string(rows.cols) + " columns, the model expects " +
                                std::to_string(reference.processing().n_features) + " features");
  const ml::Predictions clear = ml::predict_clear(ml::QuantizedModel{circuit.compiled().circuit, reference.processing()}, rows);

  server::HttpClient probe(a.url);
  const server::RemoteModel remote = probe.model(a.model);
  if (remote.model_id != model_id)
    throw std::invalid_argument("the server's '" + a.model + "' is model " + remote.model_id + ", but --artifacts " + a.artifacts +
                                " holds model " + model_id + ": give the artifacts the server serves");

  const std::string run_id = server::make_key_token().substr(0, 8);
  Tally tally;
  std::vector<std::thread> threads;
  std::atomic<std::size_t> crashed{0};
  const auto t0 = Clock::now();
  for (std::size_t c = 0; c < a.clients; ++c) {
    threads.emplace_back([&, c] {
      try {
        LoadClient(a, c, run_id, rows, clear, remote.keys_required, tally).run();
      } catch (const std::exception& e) {
        // A client that could not set up (its key upload refused past every retry): its
        // remaining requests count as failed.
        ++crashed;
        std::lock_guard lock(tally.mutex);
        tally.note_failure("client " + std::to_string(c) + ": " + e.what());
      }
    });
  }
  for (auto& t : threads) t.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  const double predict_seconds =
      tally.first_request && tally.last_answer ? std::chrono::duration<double>(*tally.last_answer - *tally.first_request).count() : 0;
  const double rate = predict_seconds > 0 ? static_cast<double>(tally.answered) / predict_seconds : 0;
  const std::uint64_t expected = a.clients * a.requests;
  // Requests a crashed client never sent are lost too.
  const std::uint64_t unsent = expected - tally.sent;
  const std::uint64_t failed = tally.failed + unsent;
  const std::uint64_t lost = expected - tally.answered;

  json causes = json::object();
  for (const auto& [cause, n] : tally.retry_causes) causes[cause] = n;
  const json report{
      {"url", a.url},
      {"model", a.model},
      {"model_id", model_id},
      {"clients", a.clients},
      {"requests_per_client", a.requests},
      {"rows_per_request", a.batch_size},
      {"sent", expected},
      {"answered", tally.answered},
      {"retried", tally.retried},
      {"failed", failed},
      {"lost", lost},
      {"wrong", tally.wrong},
      {"key_uploads", tally.uploads},
      {"key_reuploads", tally.reuploads},
      {"retry_causes", causes},
      {"seconds", std::round(seconds * 1000) / 1000},
      {"predict_seconds", std::round(predict_seconds * 1000) / 1000},
      {"answers_per_second", std::round(rate * 1000) / 1000},
      {"pbs", tally.pbs},
      {"latency_ms",
       {{"p50", std::round(percentile(tally.latency_ms, 0.50) * 10) / 10},
        {"p90", std::round(percentile(tally.latency_ms, 0.90) * 10) / 10},
        {"p99", std::round(percentile(tally.latency_ms, 0.99) * 10) / 10},
        {"max", std::round(percentile(tally.latency_ms, 1.0) * 10) / 10}}},
      {"failures", tally.failures},
  };
  if (a.json) {
    std::cout << report.dump(2) << "\n";
  } else {
    std::cout << "loadtest: " << a.clients << " clients x " << a.requests << " requests of " << a.batch_size
              << (a.batch_size == 1 ? " row" : " rows") << " to '" << a.model << "' at " << a.url << " in " << fixed(seconds, 1)
              << " s\n"
              << "  sent " << expected << ", answered " << tally.answered << ", retried " << tally.retried << ", failed "
              << failed << ", lost " << lost << ", wrong " << tally.wrong << "\n"
              << "  latency (first attempt to answer): p50 " << fixed(percentile(tally.latency_ms, 0.5), 1) << " ms, p90 "
              << fixed(percentile(tally.latency_ms, 0.9), 1) << " ms, p99 " << fixed(percentile(tally.latency_ms, 0.99), 1)
              << " ms, max " << fixed(percentile(tally.latency_ms, 1.0), 1) << " ms; "
              << fixed(rate, 2) << " answers/s over " << fixed(predict_seconds, 1) << " s of predictions, " << tally.pbs
              << " PBS\n"
              << "  key uploads " << tally.uploads << " (again after unknown_key: " << tally.reuploads << ")\n";
    if (!tally.retry_causes.empty()) {
      std::cout << "  retries by cause:";
      for (const auto& [cause, n] : tally.retry_causes) std::cout << " " << cause << " x" << n << ";";
      std::cout << "\n";
    }
    for (const auto& f : tally.failures) std::cout << "  failure: " << f << "\n";
  }
  return failed == 0 && tally.wrong == 0 && lost == 0 ? 0 : 1;
}

void add_loadtest_command(CLI::App& app) {
  auto args = std::make_shared<LoadtestArgs>();
  auto* l = app.add_subcommand(
      "loadtest",
      "Load a Veil server on this machine with concurrent clients (each with its own keys), check every answer against "
      "the clear model, retry what faults refuse; exit 1 on any lost or wrong answer (exact comparison: compile with "
      "--exact-tree-comparisons / --exact-network-reads, or neighbour reads may differ on a few rows)");
  l->add_option("--url", args->url, "Server or load balancer URL on loopback, e.g. http://127.0.0.1:8080")->required();
  l->add_option("--model", args->model, "Model name on the server")->required();
  l->add_option("--artifacts", args->artifacts,
                "Directory with the model's three artifacts (the same compile the server serves): the clear model "
                "every answer is checked against")
      ->required()
      ->check(CLI::ExistingDirectory);
  l->add_option("--input", args->input, "Rows to send (.csv or .npy, one column per feature), used in turn")
      ->required()
      ->check(CLI::ExistingFile);
  l->add_option("--clients", args->clients, "Concurrent clients, each with its own keys")->capture_default_str();
  l->add_option("--requests", args->requests, "Predictions each client sends, one after the other")->capture_default_str();
  l->add_option("--batch-size", args->batch_size, "Rows per prediction")->capture_default_str();
  l->add_option("--retries", args->retries, "Retries of one request that got no answer, a 5xx or a 429")->capture_default_str();
  l->add_option("--timeout", args->timeout, "Seconds to wait for one answer")->capture_default_str();
  l->add_flag("--json", args->json, "The report as one JSON object on stdout");
  l->callback([args] { std::exit(loadtest(*args)); });
}

}  // namespace veil::cli
