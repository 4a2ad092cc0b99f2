// `veil serve` and `veil predict` (serve_commands.hpp).
#include "serve_commands.hpp"

#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "commands.hpp"
#include "veil/deploy/model.hpp"
#include "veil/server/http_client.hpp"
#include "veil/server/http_server.hpp"
#include "veil/server/key_store.hpp"
#include "veil/server/web_assets.hpp"

namespace veil::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

constexpr const char* kGrantFile = "server_key.json";

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

std::string fixed(double v, int digits = 1) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::chrono::milliseconds seconds_option(double seconds, const std::string& option) {
  if (!(seconds > 0) || seconds > 86400.0 * 365)
    throw std::invalid_argument(option + " must be a positive number of seconds, got " + std::to_string(seconds));
  return std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000 + 0.5));
}

// ---- predict ----

std::span<const std::uint8_t> as_bytes(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

struct Grant {
  server::KeyGrant grant;
  bool uploaded_now = false;
};

std::optional<server::KeyGrant> read_grant(const fs::path& file, const std::string& url, const std::string& model,
                                           const std::string& model_id) {
  std::error_code ec;
  if (!fs::exists(file, ec)) return std::nullopt;
  try {
    const deploy::Bytes bytes = deploy::read_file(file, 1 << 20);
    const json j = json::parse(bytes.begin(), bytes.end());
    if (j.value("url", "") != url || j.value("model", "") != model || j.value("model_id", "") != model_id)
      return std::nullopt;
    return server::KeyGrant{j.at("key_id").get<std::string>(), j.at("token").get<std::string>()};
  } catch (const std::exception& e) {
    std::cerr << "predict: ignoring " << file.string() << " (" << e.what() << "): uploading the keys again\n";
    return std::nullopt;
  }
}

void write_grant(const fs::path& file, const std::string& url, const std::string& model, const std::string& model_id,
                 const server::KeyGrant& grant) {
  const std::string text = json{{"url", url},
                                {"model", model},
                                {"model_id", model_id},
                                {"key_id", grant.key_id},
                                {"token", grant.token}}
                               .dump(2) +
                           "\n";
  // The token is a secret: owner-only, like secret.key.
  deploy::write_file_atomic(file, as_bytes(text), 0600);
  ::chmod(file.c_str(), 0600);
}

class PredictSession {
 public:
  PredictSession(const PredictArgs& a, server::HttpClient& http) : a_(a), http_(http), dir_(a.keys) {}

  void prepare() {
    remote_ = http_.model(a_.model);
    std::error_code ec;
    fs::create_directories(dir_, ec);
    if (ec) throw std::runtime_error("cannot create key directory " + dir_.string() + ": " + ec.message());
    ::chmod(dir_.c_str(), 0700);

    const bool have_files = fs::exists(dir_ / deploy::kClientZip) && fs::exists(dir_ / deploy::kProcessingJson);
    if (!have_files) {
      const auto t0 = Clock::now();
      const auto zip = http_.fetch_file(a_.model, deploy::kClientZip);
      const auto processing = http_.fetch_file(a_.model, deploy::kProcessingJson);
      deploy::write_file_atomic(dir_ / deploy::kClientZip, zip, 0644);
      deploy::write_file_atomic(dir_ / deploy::kProcessingJson, processing, 0644);
      std::cerr << "predict: fetched " << deploy::kClientZip << " (" << human_bytes(zip.size()) << ") and "
                << deploy::kProcessingJson << " (" << human_bytes(processing.size()) << ") into " << dir_.string() << " in "
                << fixed(ms_since(t0)) << " ms\n";
    }
    client_ = std::make_unique<deploy::ModelClient>(deploy::ModelClient::load(dir_));
    model_id_ = deploy::model_id_hex(client_->model_id());
    if (model_id_ != remote_.model_id)
      throw std::runtime_error(dir_.string() + " holds the client files and keys of model " + model_id_ + ", but the server's '" +
                               a_.model + "' is model " + remote_.model_id +
                               " (recompiled?): use a new --keys directory for it");
    // The copies used here must be, byte for byte, what the server publishes.
    for (const char* name : {deploy::kClientZip, deploy::kProcessingJson}) {
      const auto it = remote_.file_sha256.find(name);
      if (it == remote_.file_sha256.end()) continue;  // an older server that does not publish digests
      const std::string local = tfhe::to_hex(tfhe::sha256(deploy::read_file(dir_ / name, std::uint64_t{64} << 20)));
      if (local != it->second)
        throw std::runtime_error((dir_ / name).string() + " has SHA-256 " + local + ", but the server publishes " + it->second +
                                 " for '" + a_.model + "': the copy was altered (or the download corrupted); delete it to fetch again");
    }

    if (!fs::exists(dir_ / deploy::kSecretKeyFile)) {
      const auto t0 = Clock::now();
      deploy::KeyGenOptions options;
      options.progress = progress_printer("predict: keygen");
      const deploy::KeySizes sizes = client_->generate_keys(dir_, options);
      std::cerr << "predict: generated keys in " << fixed(ms_since(t0) / 1000, 2) << " s (secret key "
                << human_bytes(sizes.secret_key_bytes) << " stays in " << dir_.string() << ", evaluation keys "
                << human_bytes(sizes.evaluation_keys_bytes) << ")\n";
    }
    if (!client_->has_keys()) client_->load_keys(dir_);

    const auto g = read_grant(dir_ / kGrantFile, http_.base_url(), a_.model, model_id_);
    if (g && !g->key_id.empty()) {
      grant_ = *g;
    } else {
      // A grant without a key id is an upload whose answer never came: repeat it with the
      // same token, and the server answers with the key id it stored (or stores it now).
      upload(g ? g->token : std::string());
    }
  }

  // Sends one batch, re-uploading the keys once if the server no longer knows them and
  // waiting out 503s. With --async: submits it as a job and polls for the answer.
  std::vector<std::uint8_t> send(const deploy::Bytes& batch, server::PredictInfo* info) {
    bool reuploaded = false;
    for (unsigned attempt = 0;; ++attempt) {
      try {
        if (a_.async_jobs) {
          if (auto out = run_job(batch, info)) return std::move(*out);
          continue;  // the job was lost (a restarted server): submitted again
        }
        return http_.predict(a_.model, &grant_, batch, info);
      } catch (const server::HttpError& e) {
        if (e.status() == 404 && e.error() == "unknown_key" && !reuploaded) {
          std::cerr << "predict: the server does not know key " << grant_.key_id << ": uploading the keys again\n";
          upload(std::string());
          reuploaded = true;
          continue;
        }
        // Busy (503, 429), or a load balancer that found no replica able to answer (502,
        // 504): a prediction is a pure function of its inputs and keys, so sending it again
        // is safe (an asynchronous job is submitted again).
        const bool retryable = e.status() == 503 || e.status() == 429 || e.status() == 502 || e.status() == 504;
        if (retryable && attempt < a_.retries) {
          const unsigned wait = std::max(1u, e.retry_after().value_or(1));
          std::cerr << "predict: server busy or unreachable (HTTP " << e.status() << ": " << e.detail() << "): retrying in "
                    << wait << " s\n";
          std::this_thread::sleep_for(std::chrono::seconds(wait));
          continue;
        }
        throw;
      }
    }
  }

  // One asynchronous job: submit, then poll every 0.2 s growing to 2 s. nullopt when the
  // server lost the job (404 unknown_job: it restarted, or the answer expired), at most
  // --retries times; the caller submits again.
  std::optional<std::vector<std::uint8_t>> run_job(const deploy::Bytes& batch, server::PredictInfo* info) {
    const std::string job = http_.submit_predict(a_.model, &grant_, batch);
    double wait = 0.2;
    for (;;) {
      std::this_thread::sleep_for(std::chrono::duration<double>(wait));
      wait = std::min(2.0, wait * 1.5);
      try {
        if (auto out = http_.job_result(job, &grant_, info)) {
          try {
            http_.delete_job(job, &grant_);  // the answer is here: free the server's copy
          } catch (const std::exception&) {
          }
          return out;
        }
      } catch (const server::HttpError& e) {
        if (e.status() == 404 && e.error() == "unknown_job" && lost_jobs_ < a_.retries) {
          ++lost_jobs_;
          std::cerr << "predict: the server no longer holds job " << job << ": submitting the batch again\n";
          return std::nullopt;
        }
        throw;
      }
    }
  }

  void forget_keys() {
    http_.delete_keys(grant_);
    std::error_code ec;
    fs::remove(dir_ / kGrantFile, ec);
    std::cerr << "predict: deleted key " << grant_.key_id << " from the server\n";
  }

  const deploy::ModelClient& client() const { return *client_; }
  const server::RemoteModel& remote() const { return remote_; }
  double upload_ms() const { return upload_ms_; }
  std::uint64_t uploaded_bytes() const { return uploaded_bytes_; }

 private:
  void upload(std::string token) {
    const deploy::Bytes keys = deploy::ModelClient::read_evaluation_keys(dir_, client_->model_id());
    if (token.empty()) token = server::make_key_token();
    // Kept before sending: if the answer is lost, the next run repeats this very upload.
    write_grant(dir_ / kGrantFile, http_.base_url(), a_.model, model_id_, server::KeyGrant{"", token});
    const auto t0 = Clock::now();
    // A busy server refuses from the request head (503 before the body is read): wait as it
    // says and send again.
    for (unsigned attempt = 0;; ++attempt) {
      try {
        grant_ = http_.upload_keys(a_.model, keys, token);
        break;
      } catch (const server::HttpError& e) {
        if (e.status() != 503 || attempt >= a_.retries) throw;
        const unsigned wait = std::max(1u, e.retry_after().value_or(1));
        std::cerr << "predict: server busy with key upload (" << e.detail() << "): retrying in " << wait << " s\n";
        std::this_thread::sleep_for(std::chrono::seconds(wait));
      }
    }
    upload_ms_ = ms_since(t0);
    uploaded_bytes_ = keys.size();
    write_grant(dir_ / kGrantFile, http_.base_url(), a_.model, model_id_, grant_);
    std::cerr << "predict: uploaded evaluation keys (" << human_bytes(keys.size()) << ") in " << fixed(upload_ms_)
              << " ms: key id " << grant_.key_id << " (token kept in " << (dir_ / kGrantFile).string() << ", mode 0600)\n";
  }

  const PredictArgs& a_;
  server::HttpClient& http_;
  fs::path dir_;
  server::RemoteModel remote_;
  std::unique_ptr<deploy::ModelClient> client_;
  std::string model_id_;
  server::KeyGrant grant_;
  double upload_ms_ = 0;
  std::uint64_t uploaded_bytes_ = 0;
  unsigned lost_jobs_ = 0;
};

ml::Matrix row_range(const ml::Matrix& m, std::size_t begin, std::size_t end) {
  ml::Matrix out(end - begin, m.cols);
  std::copy(m.data.begin() + static_cast<std::ptrdiff_t>(begin * m.cols),
            m.data.begin() + static_cast<std::ptrdiff_t>(end * m.cols), out.data.begin());
  return out;
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto i = static_cast<std::size_t>(std::min<double>(static_cast<double>(v.size() - 1), q * static_cast<double>(v.size() - 1) + 0.5));
  return v[i];
}

}  // namespace

std::vector<std::string> read_tokens(const std::string& file, const std::string& option) {
  const deploy::Bytes bytes = deploy::read_file(file, 1 << 20);
  std::vector<std::string> tokens;
  std::string line;
  for (const std::uint8_t b : bytes) {
    if (b != '\n') {
      line += static_cast<char>(b);
      continue;
    }
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (!line.empty() && line.front() != '#') tokens.push_back(line);
    line.clear();
  }
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
  if (!line.empty() && line.front() != '#') tokens.push_back(line);
  if (tokens.empty()) throw std::invalid_argument(option + " " + file + " holds no token");
  for (const auto& t : tokens)
    if (t.size() < 16) throw std::invalid_argument(option + " " + file + ": a token has fewer than 16 characters");
  return tokens;
}

std::uint64_t parse_byte_size(const std::string& text, const std::string& option) {
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0 || digits > 15)
    throw std::invalid_argument(option + " '" + text + "' is not a size (examples: 1048576, 64KiB, 64MiB, 1GiB)");
  const std::uint64_t n = std::stoull(text.substr(0, digits));
  const std::string unit = text.substr(digits);
  std::uint64_t mult = 0;
  if (unit.empty() || unit == "B") mult = 1;
  else if (unit == "K" || unit == "KiB" || unit == "k") mult = std::uint64_t{1} << 10;
  else if (unit == "M" || unit == "MiB") mult = std::uint64_t{1} << 20;
  else if (unit == "G" || unit == "GiB") mult = std::uint64_t{1} << 30;
  else if (unit == "KB" || unit == "kB") mult = 1000;
  else if (unit == "MB") mult = 1000 * 1000;
  else if (unit == "GB") mult = 1000 * 1000 * 1000;
  else throw std::invalid_argument(option + " '" + text + "': unknown unit '" + unit + "' (use B, KiB, MiB, GiB, KB, MB, GB)");
  if (n == 0) throw std::invalid_argument(option + " must be positive");
  return n * mult;
}

std::pair<std::string, int> parse_listen_address(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size())
    throw std::invalid_argument("--listen '" + text + "' is not HOST:PORT (example: 127.0.0.1:8080)");
  std::string host = text.substr(0, colon);
  if (host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string port_text = text.substr(colon + 1);
  if (port_text.size() > 5 || !std::all_of(port_text.begin(), port_text.end(), [](char c) { return c >= '0' && c <= '9'; }))
    throw std::invalid_argument("--listen '" + text + "': port '" + port_text + "' is not a number");
  const int port = std::stoi(port_text);
  if (port > 65535) throw std::invalid_argument("--listen '" + text + "': port " + port_text + " is above 65535");
  return {host, port};
}

int serve(const ServeArgs& a) {
  server::HttpServerOptions o;
  o.models_dir = a.models;
  o.max_key_bytes = parse_byte_size(a.max_key_bytes, "--max-key-bytes");
  o.max_input_bytes = parse_byte_size(a.max_input_bytes, "--max-input-bytes");
  o.key_cache_bytes = parse_byte_size(a.cache_bytes, "--cache-bytes");
  o.worker_threads = a.workers;
  o.max_jobs = a.max_jobs;
  o.max_queue = a.queue;
  o.queue_timeout = seconds_option(a.queue_timeout, "--queue-timeout");
  o.read_timeout = seconds_option(a.read_timeout, "--read-timeout");
  o.request_read_timeout = seconds_option(a.request_timeout, "--request-timeout");
  o.header_timeout = seconds_option(a.header_timeout, "--header-timeout");
  o.job_timeout = seconds_option(a.job_timeout, "--job-timeout");
  o.drain_timeout = seconds_option(a.drain_timeout, "--drain-timeout");
  if (a.drain_grace < 0 || a.drain_grace > 3600) throw std::invalid_argument("--drain-grace must be in [0, 3600] seconds");
  o.drain_grace = std::chrono::milliseconds(static_cast<std::int64_t>(a.drain_grace * 1000));
  o.max_connections = a.max_connections;
  o.max_requests_per_key = a.max_requests_per_key;
  if (a.key_rate < 0) throw std::invalid_argument("--key-rate must not be negative");
  o.key_rate_per_second = a.key_rate;
  o.key_burst = std::max(1.0, a.key_rate * 10);
  if (!a.max_store_bytes.empty() && a.max_store_bytes != "0")
    o.max_store_bytes = parse_byte_size(a.max_store_bytes, "--max-store-bytes");
  if (a.key_ttl < 0 || a.key_ttl > 10.0 * 365 * 86400) throw std::invalid_argument("--key-ttl must be in [0, 10 years] seconds");
  o.key_ttl = std::chrono::seconds(static_cast<std::int64_t>(a.key_ttl));
  o.max_buffered_body_bytes = parse_byte_size(a.max_buffered_bytes, "--max-buffered-bytes");
  if (!a.upload_token_file.empty()) o.upload_tokens = read_tokens(a.upload_token_file, "--upload-token-file");
  o.max_async_jobs = a.max_async_jobs;
  o.max_async_bytes = parse_byte_size(a.max_async_bytes, "--max-async-bytes");
  if (!(a.async_result_ttl >= 1) || a.async_result_ttl > 7 * 86400)
    throw std::invalid_argument("--async-result-ttl must be in [1, 604800] seconds");
  o.async_result_ttl = std::chrono::seconds(static_cast<std::int64_t>(a.async_result_ttl));
  if (a.replica_id.size() > 32 || !std::all_of(a.replica_id.begin(), a.replica_id.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
      }))
    throw std::invalid_argument("--replica-id '" + a.replica_id.substr(0, 64) +
                                "' must be at most 32 letters, digits and '_' (it starts job ids: ID-...)");
  o.replica_id = a.replica_id;
  if (a.tls_cert.empty() != a.tls_key.empty()) throw std::invalid_argument("--tls-cert and --tls-key go together");
  o.tls_cert_file = a.tls_cert;
  o.tls_key_file = a.tls_key;
  o.log_requests = !a.quiet;
  // The page: --web DIR, else the files beside the binary when they are there.
  if (a.web != "none") {
    if (!a.web.empty()) {
      o.web_dir = a.web;
    } else {
      std::error_code ec;
      const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
      if (!ec)
        if (const auto found = server::default_web_dir(self)) o.web_dir = *found;
    }
  }
  if (!a.cors_origin.empty()) {
    const std::string& origin = a.cors_origin;
    const bool scheme = origin.starts_with("https://") || origin.starts_with("http://");
    const std::size_t host_at = origin.find("://") + 3;
    if (!scheme || origin.size() == host_at || origin.find('/', host_at) != std::string::npos ||
        origin.find_first_of(" ,*") != std::string::npos)
      throw std::invalid_argument("--cors-origin '" + origin +
                                  "': give one origin, scheme and host (and port), e.g. https://app.example.com");
    o.cors_origin = origin;
  }
  const auto [host, port] = parse_listen_address(a.listen);

  // SIGINT and SIGTERM (stop) and SIGHUP (reload the models) are taken by a thread of their
  // own (sigwait), so they are blocked before any other thread exists: every thread inherits
  // the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  std::shared_ptr<server::KeyStore> store = server::open_key_store(a.store);
  server::HttpServer http(o, store);
  const int bound = http.bind(host, port);
  std::string names;
  for (const auto& m : http.models()) names += (names.empty() ? "" : ", ") + m.name;
  std::cout << "veil serve: " << http.models().size() << (http.models().size() == 1 ? " model" : " models") << " (" << names
            << ") on " << (a.tls_cert.empty() ? "http" : "https") << "://" << (host.find(':') != std::string::npos ? "[" + host + "]" : host) << ":" << bound
            << ", keys in " << store->describe() << "; stop with Ctrl-C or SIGTERM, reload the models with SIGHUP" << std::endl;

  std::atomic<bool> done{false};
  std::thread watcher([&] {
    int received = 0;
    while (!done.load()) {
      const timespec wait{0, 200'000'000};
      siginfo_t info{};
      const int sig = sigtimedwait(&stop_signals, &info, &wait);
      if (sig < 0) continue;
      if (sig == SIGHUP) {
        // Added and replaced models are served from now on, without a restart; a directory
        // that does not load leaves the models as they were (the server logs why).
        try {
          const server::ModelReload r = http.reload_models();
          auto names = [](const std::vector<std::string>& v) {
            std::string out;
            for (const auto& n : v) out += (out.empty() ? "" : ", ") + n;
            return out.empty() ? std::string("none") : out;
          };
          std::cerr << "veil serve: SIGHUP: models reloaded: added " << names(r.added) << "; replaced " << names(r.replaced)
                    << "; removed " << names(r.removed) << "; unchanged " << r.unchanged.size() << std::endl;
        } catch (const std::exception& e) {
          std::cerr << "veil serve: SIGHUP: reload failed, still serving the models loaded before: " << e.what() << std::endl;
        }
        continue;
      }
      if (++received == 1) {
        std::cerr << "veil serve: " << strsignal(sig) << ": finishing the requests in progress (again to exit at once)"
                  << std::endl;
        http.stop();
      } else {
        std::cerr << "veil serve: exiting at once" << std::endl;
        std::_Exit(130);
      }
    }
  });
  http.run();
  done.store(true);
  watcher.join();
  std::cout << "veil serve: stopped" << std::endl;
  return 0;
}

int predict(const PredictArgs& a) {
  if (a.batch_size == 0) throw std::invalid_argument("--batch-size must be at least 1");
  std::signal(SIGPIPE, SIG_IGN);  // a closed connection is an error to report, not the end
  const ml::Matrix rows = ml::load_matrix(a.input);
  server::HttpClientOptions client_options;
  client_options.ca_cert_file = a.ca_cert;
  if (!a.upload_token_file.empty()) client_options.upload_token = read_tokens(a.upload_token_file, "--upload-token-file").front();
  server::HttpClient http(a.url, client_options);
  PredictSession session(a, http);
  session.prepare();
  const deploy::ModelClient& client = session.client();
  const auto& processing = client.processing();
  if (rows.cols != processing.n_features)
    throw std::invalid_argument(a.input + " has " + std::to_string(rows.cols) + " columns, model '" + a.model + "' expects " +
                                std::to_string(processing.n_features) + " features");
  std::uint64_t max_input = 0;
  try {
    max_input = json::parse(session.remote().json).at("limits").at("max_input_bytes").get<std::uint64_t>();
  } catch (const std::exception&) {
  }

  const std::size_t batches = (rows.rows + a.batch_size - 1) / a.batch_size;
  std::vector<double> latencies;
  std::uint64_t sent = 0, received = 0;
  std::int64_t pbs = 0;
  double run_ms = 0, encrypt_ms = 0, decrypt_ms = 0;
  std::vector<long long> labels;
  std::vector<double> values;
  std::vector<std::vector<double>> scores;
  const auto t_all = Clock::now();
  for (std::size_t b = 0; b < batches; ++b) {
    const std::size_t begin = b * a.batch_size, end = std::min(rows.rows, begin + a.batch_size);
    auto t0 = Clock::now();
    const deploy::Bytes batch = client.quantize_encrypt_serialize(row_range(rows, begin, end));
    const double enc = ms_since(t0);
    if (max_input != 0 && batch.size() > max_input)
      throw std::runtime_error("an encrypted batch of " + std::to_string(end - begin) + " rows is " + human_bytes(batch.size()) +
                               ", above the server's limit of " + human_bytes(max_input) + ": use a smaller --batch-size");
    server::PredictInfo info;
    t0 = Clock::now();
    const std::vector<std::uint8_t> out = session.send(batch, &info);
    const double round_trip = ms_since(t0);
    t0 = Clock::now();
    const ml::Predictions p = client.deserialize_decrypt_dequantize(out);
    const double dec = ms_since(t0);
    labels.insert(labels.end(), p.labels.begin(), p.labels.end());
    values.insert(values.end(), p.values.begin(), p.values.end());
    for (std::size_t r = 0; r < p.scores.rows; ++r) {
      const auto row = p.scores.row(r);
      scores.emplace_back(row.begin(), row.end());
    }
    latencies.push_back(round_trip);
    sent += batch.size();
    received += out.size();
    pbs += info.pbs;
    run_ms += info.run_ms;
    encrypt_ms += enc;
    decrypt_ms += dec;
    std::cerr << "predict: batch " << (b + 1) << "/" << batches << ": rows " << (begin + 1) << "-" << end << ", sent "
              << human_bytes(batch.size()) << ", received " << human_bytes(out.size()) << ", " << fixed(round_trip)
              << " ms round trip (server run " << fixed(info.run_ms) << " ms, " << info.pbs << " PBS), encrypt "
              << fixed(enc) << " ms, decrypt " << fixed(dec) << " ms\n";
  }
  const double total_ms = ms_since(t_all);

  const bool classification = processing.task == ml::Task::kClassification;
  const std::string csv = predictions_csv(labels, values, scores,
                                          std::vector<long long>(processing.classes.begin(), processing.classes.end()),
                                          classification);
  deploy::write_file_atomic(a.out, as_bytes(csv), 0644);
  if (a.delete_keys) session.forget_keys();

  double sum = 0;
  for (double l : latencies) sum += l;
  std::cout << "predicted " << rows.rows << " rows with model '" << a.model << "' at " << http.base_url() << " in " << batches
            << (batches == 1 ? " batch" : " batches") << " (" << fixed(total_ms) << " ms): " << a.out << "\n"
            << "  latency per batch: mean " << fixed(latencies.empty() ? 0 : sum / static_cast<double>(latencies.size()))
            << " ms, p50 " << fixed(percentile(latencies, 0.5)) << " ms, max "
            << fixed(latencies.empty() ? 0 : *std::max_element(latencies.begin(), latencies.end())) << " ms; server run "
            << fixed(run_ms) << " ms in all, " << pbs << " PBS\n"
            << "  client: encrypt " << fixed(encrypt_ms) << " ms, decrypt " << fixed(decrypt_ms) << " ms\n"
            << "  sent " << human_bytes(sent) << " (" << human_bytes(rows.rows ? sent / rows.rows : 0) << " per row), received "
            << human_bytes(received) << " (" << human_bytes(rows.rows ? received / rows.rows : 0) << " per row)\n";
  if (session.uploaded_bytes() > 0)
    std::cout << "  evaluation keys uploaded: " << human_bytes(session.uploaded_bytes()) << " in " << fixed(session.upload_ms())
              << " ms\n";
  else
    std::cout << "  evaluation keys: already on the server (key id from " << (fs::path(a.keys) / kGrantFile).string() << ")\n";
  return 0;
}

void add_serve_commands(CLI::App& app) {
  auto serve_args = std::make_shared<ServeArgs>();
  auto* s = app.add_subcommand("serve", "Serve models over HTTP: clients upload evaluation keys once, then send encrypted inputs");
  s->add_option("--models", serve_args->models, "Directory of model directories (each with client.zip, server.zip, serialized_processing.json), or one model's directory")
      ->required()
      ->check(CLI::ExistingDirectory);
  s->add_option("--listen", serve_args->listen, "HOST:PORT to listen on (port 0: any free port)")->capture_default_str();
  s->add_option("--store", serve_args->store, "Key store: sqlite:PATH, or postgresql://USER@HOST:PORT/DB for replicas sharing clients")
      ->capture_default_str();
  s->add_option("--max-key-bytes", serve_args->max_key_bytes, "Largest evaluation-key upload")->capture_default_str();
  s->add_option("--max-input-bytes", serve_args->max_input_bytes, "Largest encrypted input batch")->capture_default_str();
  s->add_option("--cache-bytes", serve_args->cache_bytes, "Memory for expanded evaluation keys (LRU)")->capture_default_str();
  s->add_option("--workers", serve_args->workers, "Threads serving connections")->check(CLI::Range(1, 4096))->capture_default_str();
  s->add_option("--max-jobs", serve_args->max_jobs, "FHE jobs at once (each already uses every core)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  s->add_option("--queue", serve_args->queue, "Requests waiting for a job slot before 503")->check(CLI::Range(0, 65536))->capture_default_str();
  s->add_option("--queue-timeout", serve_args->queue_timeout, "Seconds a request waits for a job slot before 503")->capture_default_str();
  s->add_option("--read-timeout", serve_args->read_timeout, "Seconds a read from a client may stall")->capture_default_str();
  s->add_option("--request-timeout", serve_args->request_timeout, "Seconds to receive one whole request")->capture_default_str();
  s->add_option("--header-timeout", serve_args->header_timeout, "Seconds to receive a request head (and a new connection's first byte)")
      ->capture_default_str();
  s->add_option("--job-timeout", serve_args->job_timeout, "Seconds one model run may take (413 beyond: fewer rows)")->capture_default_str();
  s->add_option("--drain-grace", serve_args->drain_grace, "Seconds /healthz answers 503 'stopping' after SIGTERM before exiting")
      ->capture_default_str();
  s->add_option("--drain-timeout", serve_args->drain_timeout, "Seconds to wait for requests in flight after SIGTERM")->capture_default_str();
  s->add_option("--max-requests-per-key", serve_args->max_requests_per_key,
                "Predictions one client's keys may have in progress at once (429 beyond; 0: no limit)")
      ->capture_default_str();
  s->add_option("--key-rate", serve_args->key_rate, "Predictions per second one client's keys may start (bursts of 10 s; 0: no limit)")
      ->capture_default_str();
  s->add_option("--max-store-bytes", serve_args->max_store_bytes, "Evaluation-key bytes the store may hold, all clients (507 beyond; 0: no limit)")
      ->capture_default_str();
  s->add_option("--key-ttl", serve_args->key_ttl, "Delete evaluation keys unused for this many seconds (0: keep them)")
      ->capture_default_str();
  s->add_option("--max-connections", serve_args->max_connections, "Connections held at once (503 beyond)")
      ->check(CLI::Range(1, 1'000'000))
      ->capture_default_str();
  s->add_option("--max-buffered-bytes", serve_args->max_buffered_bytes, "Request bodies held in memory at once (503 beyond)")
      ->capture_default_str();
  s->add_option("--upload-token-file", serve_args->upload_token_file,
                "File of operator-issued upload tokens (one per line): key uploads need one as a Bearer token")
      ->check(CLI::ExistingFile);
  s->add_option("--max-async-jobs", serve_args->max_async_jobs,
                "Asynchronous jobs (predict?mode=async) held at once: queued, running or finished (503 beyond)")
      ->check(CLI::Range(0, 1'000'000))
      ->capture_default_str();
  s->add_option("--max-async-bytes", serve_args->max_async_bytes, "Bytes of inputs and answers asynchronous jobs hold together")
      ->capture_default_str();
  s->add_option("--async-result-ttl", serve_args->async_result_ttl, "Seconds a finished asynchronous job's answer is kept")
      ->capture_default_str();
  s->add_option("--replica-id", serve_args->replica_id,
                "Prefix of this replica's job ids (letters, digits, '_'), so a load balancer can route GET /v1/jobs/{id} to it");
  s->add_option("--tls-cert", serve_args->tls_cert, "PEM certificate chain: serve HTTPS (with --tls-key)")->check(CLI::ExistingFile);
  s->add_option("--tls-key", serve_args->tls_key, "PEM private key of --tls-cert")->check(CLI::ExistingFile);
  s->add_option("--web", serve_args->web,
                "The browser client's files (made by scripts/build_web.sh: build/web), served with the page at /; "
                "default: web/ beside the binary, or ../share/veil/web, when there; 'none': no page");
  s->add_option("--cors-origin", serve_args->cors_origin,
                "An origin (https://host[:port]) whose pages may call the API (CORS); default: none, same-origin only");
  s->add_flag("--quiet", serve_args->quiet, "No log line per request");
  s->callback([serve_args] { std::exit(serve(*serve_args)); });

  auto predict_args = std::make_shared<PredictArgs>();
  auto* p = app.add_subcommand("predict", "Predict through a Veil server: encrypt rows here, send them, decrypt the answers here");
  p->add_option("--url", predict_args->url, "Server URL, e.g. http://127.0.0.1:8080")->required();
  p->add_option("--model", predict_args->model, "Model name on the server (GET /v1/models)")->required();
  p->add_option("--keys", predict_args->keys, "Key directory: client files, secret key and key id are kept here (created)")->required();
  p->add_option("--input", predict_args->input, "Rows: .csv or .npy, one column per feature")->required()->check(CLI::ExistingFile);
  p->add_option("--out", predict_args->out, "Predictions CSV to write")->required();
  p->add_option("--batch-size", predict_args->batch_size, "Rows per request")->check(CLI::Range(1, 1 << 20))->capture_default_str();
  p->add_option("--retries", predict_args->retries, "Retries of a batch the server refuses as busy (503)")->capture_default_str();
  p->add_flag("--delete-keys", predict_args->delete_keys, "Delete the evaluation keys from the server afterwards");
  p->add_flag("--async", predict_args->async_jobs,
              "Submit each batch as an asynchronous job (POST ...?mode=async) and poll GET /v1/jobs/{id} for its answer: "
              "no connection held open during long runs");
  p->add_option("--ca-cert", predict_args->ca_cert, "PEM file of the CA to verify an https:// server with (default: the system's)")
      ->check(CLI::ExistingFile);
  p->add_option("--upload-token-file", predict_args->upload_token_file, "File whose first line is the server's upload token")
      ->check(CLI::ExistingFile);
  p->callback([predict_args] { std::exit(predict(*predict_args)); });

  add_loadtest_command(app);
}

}  // namespace veil::cli
