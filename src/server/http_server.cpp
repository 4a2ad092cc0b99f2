// The HTTP API over models, key store and key cache (http_server.hpp; docs/api.md).
#include "veil/server/http_server.hpp"
#include "veil/server/web_assets.hpp"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <deque>
#include <iostream>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <string_view>
#include <thread>
#include <unordered_map>

#include "http_transport.hpp"
#include "job_gate.hpp"
#include "metrics.hpp"
#include "veil/deploy/model.hpp"
#include "veil/tfhe/isa.hpp"
#include "veil/version.hpp"

namespace veil::server {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr const char* kKeyIdHeader = "X-Veil-Key-Id";
// A token the client chose for an upload (64 lowercase hex digits): the key id is derived
// from it, so that an upload whose answer was lost can be repeated without storing twice.
constexpr const char* kKeyTokenHeader = "X-Veil-Key-Token";
// A client's name for one request, the same on each retry of it (docs/api.md, "Request ids
// and retries"): echoed in the answer and logged, so that an operator sees which attempts
// were one request. A predict is a pure function of the inputs and the keys, so a retry
// needs no server-side memory of the id to be safe: it computes the same answer again.
constexpr const char* kRequestIdHeader = "X-Request-Id";
constexpr std::size_t kMaxRequestIdBytes = 128;
constexpr std::size_t kKeyIdBytes = 16;  // 128 bits
constexpr std::size_t kTokenBytes = 32;  // 256 bits
constexpr std::uint64_t kMaxArtifactBytes = std::uint64_t{256} << 20;

// A refusal: the status, a machine-readable code and a sentence for a person.
struct ApiError {
  int status;
  std::string code;
  std::string detail;
  unsigned retry_after = 0;  // seconds, for 429 (503 always says options.retry_after_seconds)
};

[[noreturn]] void refuse(int status, std::string code, std::string detail) {
  throw ApiError{status, std::move(code), std::move(detail)};
}

std::string hex_random(std::size_t bytes) {
  std::vector<std::uint8_t> buf(bytes);
  if (RAND_bytes(buf.data(), static_cast<int>(buf.size())) != 1) throw std::runtime_error("the CSPRNG failed");
  std::string out = tfhe::to_hex(buf);
  OPENSSL_cleanse(buf.data(), buf.size());
  return out;
}

bool is_lower_hex(const std::string& s, std::size_t length) {
  return s.size() == length && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// 1 to 128 characters of letters, digits and . _ : - (a UUID, nginx's $request_id, ...).
bool valid_request_id(const std::string& id) {
  return !id.empty() && id.size() <= kMaxRequestIdBytes && std::all_of(id.begin(), id.end(), [](char c) {
           return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == ':' || c == '-';
         });
}

bool valid_model_name(const std::string& name) {
  static const std::regex kName("[A-Za-z0-9][A-Za-z0-9._-]{0,127}");
  return std::regex_match(name, kName);
}

std::span<const std::uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

std::string iso8601_now() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

std::string json_dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// The body a route takes; its limit is an option of the server.
enum class RouteBody { kNone, kEvaluationKeys, kInputBatch };

// Every route of the API, in one place: the method, the path as a pattern (its one capture:
// the model name or the key id), the template that names the route in metrics, logs and
// messages, and its body. The transport's admission (admit_head), the handlers
// (install_routes) and the 405 answers all read this table.
struct RouteSpec {
  const char* method;
  const char* pattern;
  const char* name;
  RouteBody body;
};
constexpr RouteSpec kRoutes[] = {
    {"GET", "/v1/models", "/v1/models", RouteBody::kNone},
    {"GET", R"(/v1/models/([^/]+))", "/v1/models/{name}", RouteBody::kNone},
    {"GET", R"(/v1/models/([^/]+)/client\.zip)", "/v1/models/{name}/client.zip", RouteBody::kNone},
    {"GET", R"(/v1/models/([^/]+)/serialized_processing\.json)", "/v1/models/{name}/serialized_processing.json",
     RouteBody::kNone},
    {"POST", R"(/v1/models/([^/]+)/keys)", "/v1/models/{name}/keys", RouteBody::kEvaluationKeys},
    {"POST", R"(/v1/models/([^/]+)/predict)", "/v1/models/{name}/predict", RouteBody::kInputBatch},
    {"DELETE", R"(/v1/keys/([^/]+))", "/v1/keys/{key_id}", RouteBody::kNone},
    {"GET", R"(/v1/jobs/([^/]+))", "/v1/jobs/{job_id}", RouteBody::kNone},
    {"DELETE", R"(/v1/jobs/([^/]+))", "/v1/jobs/{job_id}#delete", RouteBody::kNone},
    {"GET", "/healthz", "/healthz", RouteBody::kNone},
    {"GET", "/metrics", "/metrics", RouteBody::kNone},
    // The browser client: its page and files (web_assets.hpp).
    {"GET", "/", "/", RouteBody::kNone},
    {"GET", R"(/models/([^/]+)/?)", "/models/{name}/", RouteBody::kNone},
    {"GET", R"(/web/([A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)?))", "/web/{file}", RouteBody::kNone},
};

// The template of a route for metrics, logs and messages: its name up to a '#' (which only
// tells apart the handlers of one path under two methods).
std::string route_template(const RouteSpec& r) {
  const std::string_view name = r.name;
  return std::string(name.substr(0, name.find('#')));
}

// The route of a path, for metrics and method checks; "other" (no spec) when none.
struct RouteMatch {
  std::string route = "other";
  const RouteSpec* spec = nullptr;
  std::string allow;  // every method the path takes, for a 405's Allow
  const char* method() const { return spec != nullptr ? spec->method : nullptr; }
};

// The route of this path and method; when the path matches only under other methods, the
// first of them (the caller answers 405).
RouteMatch match_route(const std::string& path, const std::string& method = {}) {
  static const std::vector<std::regex> patterns = [] {
    std::vector<std::regex> out;
    for (const RouteSpec& r : kRoutes) out.emplace_back(r.pattern);
    return out;
  }();
  RouteMatch found;
  bool found_same = false;
  for (std::size_t i = 0; i < std::size(kRoutes); ++i) {
    if (!std::regex_match(path, patterns[i])) continue;
    const std::string m = kRoutes[i].method;
    found.allow += (found.allow.empty() ? "" : ", ") + m;
    const bool same = m == method || (m == "GET" && method == "HEAD");
    if (found.spec == nullptr || (same && !found_same)) {
      found.route = route_template(kRoutes[i]);
      found.spec = &kRoutes[i];
      found_same = same;
    }
  }
  return found;
}

void set_error(httplib::Response& res, int status, const std::string& code, const std::string& detail) {
  res.status = status;
  res.set_content(json_dump(json{{"error", code}, {"detail", detail}}) + "\n", "application/json");
  if (RequestContext* ctx = current_request()) ctx->error = code;
}

// The body of the request the calling worker serves (see RequestContext::body).
std::string_view request_body() {
  const RequestContext* ctx = current_request();
  return ctx != nullptr ? ctx->body : std::string_view();
}

// The bearer token of an Authorization header's value, or "".
std::string bearer_of(const std::string& h) {
  if (h.size() < 7) return {};
  std::string scheme = h.substr(0, 7);
  std::transform(scheme.begin(), scheme.end(), scheme.begin(), [](unsigned char c) { return std::tolower(c); });
  if (scheme != "bearer ") return {};
  std::string token = h.substr(7);
  while (!token.empty() && token.front() == ' ') token.erase(token.begin());
  while (!token.empty() && token.back() == ' ') token.pop_back();
  return token;
}
std::string bearer_token(const httplib::Request& req) { return bearer_of(req.get_header_value("Authorization")); }

// The {name} of /v1/models/{name}/..., or "".
std::string model_segment(const std::string& path) {
  static constexpr std::string_view kPrefix = "/v1/models/";
  if (path.rfind(kPrefix, 0) != 0) return {};
  const std::size_t end = path.find('/', kPrefix.size());
  return path.substr(kPrefix.size(), end == std::string::npos ? std::string::npos : end - kPrefix.size());
}

json tensor_json(const circuit::TensorSignature& t) {
  return json{{"name", t.name}, {"shape", t.shape}, {"min", t.lo}, {"max", t.hi}};
}

struct Model {
  std::string name;
  fs::path dir;
  deploy::ModelServer server;
  deploy::ModelId id{};
  std::string id_hex;
  bool keys_required = false;
  std::string client_zip;
  std::string processing_json;
  std::string client_zip_sha256, processing_sha256;
  json description;
};

// The models served, as one immutable snapshot. A request takes the current snapshot's model
// (a shared pointer) and holds it until it is answered, so a reload (SIGHUP) swaps the set
// under no request and frees a replaced model only once its last request is done.
struct ModelSet {
  std::vector<std::shared_ptr<const Model>> models;  // by name
  std::map<std::string, std::shared_ptr<const Model>> by_name;
  std::map<std::string, const Model*> by_id;
  std::vector<ServedModel> served;
};

bool has_artifacts(const fs::path& dir) {
  std::error_code ec;
  return fs::is_regular_file(dir / deploy::kClientZip, ec) && fs::is_regular_file(dir / deploy::kServerZip, ec) &&
         fs::is_regular_file(dir / deploy::kProcessingJson, ec);
}

std::string read_text(const fs::path& p) {
  const deploy::Bytes b = deploy::read_file(p, kMaxArtifactBytes);
  return std::string(b.begin(), b.end());
}

std::unique_ptr<Model> load_model(const std::string& name, const fs::path& dir, const HttpServerOptions& options) {
  auto m = std::make_unique<Model>();
  m->name = name;
  m->dir = dir;
  m->server = deploy::ModelServer::load(dir);
  const deploy::ModelClient client = deploy::ModelClient::load(dir);
  if (client.model_id() != m->server.model_id())
    throw deploy::DeployError(dir.string() + ": server.zip (model " + deploy::model_id_hex(m->server.model_id()) +
                              ") and client.zip (model " + deploy::model_id_hex(client.model_id()) +
                              ") belong to different compiles");
  m->id = m->server.model_id();
  m->id_hex = deploy::model_id_hex(m->id);
  m->keys_required = m->server.needs_evaluation_keys();
  m->client_zip = read_text(dir / deploy::kClientZip);
  m->processing_json = read_text(dir / deploy::kProcessingJson);
  m->client_zip_sha256 = tfhe::to_hex(tfhe::sha256(bytes_of(m->client_zip)));
  m->processing_sha256 = tfhe::to_hex(tfhe::sha256(bytes_of(m->processing_json)));

  const auto& specs = client.specs();
  const auto& processing = client.processing();
  json inputs = json::array(), outputs = json::array();
  for (const auto& t : specs.signature.inputs) inputs.push_back(tensor_json(t));
  for (const auto& t : specs.signature.outputs) outputs.push_back(tensor_json(t));
  m->description = json{
      {"name", name},
      {"model_id", m->id_hex},
      {"keys_required", m->keys_required},
      {"task", ml::task_name(processing.task)},
      {"model_kind", processing.model_kind},
      {"n_features", processing.n_features},
      {"classes", processing.classes},
      {"input_signature", inputs},
      {"output_signature", outputs},
      {"parameter_set", specs.signature.params.describe()},
      {"encoding_width", specs.signature.encoding_width},
      {"pbs_per_row", specs.statistics.total_pbs},
      {"files",
       {{deploy::kClientZip, {{"bytes", m->client_zip.size()}, {"sha256", m->client_zip_sha256}}},
        {deploy::kProcessingJson, {{"bytes", m->processing_json.size()}, {"sha256", m->processing_sha256}}}}},
      {"limits", {{"max_key_bytes", options.max_key_bytes}, {"max_input_bytes", options.max_input_bytes}}},
  };
  return m;
}

void check_options(const HttpServerOptions& o) {
  auto need = [](bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument("HttpServerOptions: " + what);
  };
  need(o.max_key_bytes > 0, "max_key_bytes must be positive");
  need(o.max_input_bytes > 0, "max_input_bytes must be positive");
  need(o.worker_threads >= 1 && o.worker_threads <= 4096, "worker_threads must be in [1, 4096], got " +
                                                            std::to_string(o.worker_threads));
  need(o.max_jobs >= 1 && o.max_jobs <= 1024, "max_jobs must be in [1, 1024], got " + std::to_string(o.max_jobs));
  need(o.max_queue <= 65536, "max_queue must be at most 65536, got " + std::to_string(o.max_queue));
  need(o.keep_alive_max_requests >= 1, "keep_alive_max_requests must be at least 1");
  need(o.read_timeout.count() > 0 && o.write_timeout.count() > 0 && o.request_read_timeout.count() > 0 &&
           o.keep_alive_timeout.count() > 0,
       "timeouts must be positive");
  need(o.queue_timeout.count() >= 0, "queue_timeout must not be negative");
  need(o.header_timeout.count() > 0 && o.job_timeout.count() > 0 && o.drain_timeout.count() > 0 && o.drain_grace.count() >= 0,
       "header, job and drain timeouts must be positive");
  need(o.max_connections >= 1, "max_connections must be at least 1");
  need(o.max_header_bytes >= 1024, "max_header_bytes must be at least 1024");
  need(o.max_buffered_body_bytes >= std::max(o.max_key_bytes, o.max_input_bytes),
       "max_buffered_body_bytes must hold at least one largest body (max_key_bytes, max_input_bytes)");
  need(o.tls_cert_file.empty() == o.tls_key_file.empty(), "TLS needs both a certificate and a key file");
  need(o.max_async_jobs <= 1'000'000, "max_async_jobs must be at most 1000000, got " + std::to_string(o.max_async_jobs));
  need(o.async_result_ttl.count() > 0, "async_result_ttl must be positive");
  static const std::regex kReplicaId("[A-Za-z0-9_]{0,32}");
  need(std::regex_match(o.replica_id, kReplicaId),
       "replica_id must be at most 32 letters, digits and '_', got '" + o.replica_id.substr(0, 64) + "'");
  for (const auto& t : o.upload_tokens) need(t.size() >= 16, "an upload token must have at least 16 characters");
}

}  // namespace

struct HttpServer::Impl {
  HttpServerOptions options;
  std::shared_ptr<KeyStore> store;
  KeyCache cache;
  JobGate gate;
  ServerMetrics metrics;
  mutable std::mutex models_mutex;
  std::optional<WebAssets> web;  // options.web_dir's files, when given
  std::shared_ptr<const ModelSet> model_set;  // under models_mutex; replaced whole by a reload
  std::mutex reload_mutex;                    // one reload at a time
  std::atomic<std::uint64_t> reloads_ok{0}, reloads_failed{0};
  std::unique_ptr<Transport> transport;
  std::thread thread;
  std::atomic<bool> bound{false};
  std::mutex log_mutex;
  std::mutex touch_mutex;
  std::unordered_map<std::string, Clock::time_point> last_touch;
  const std::int64_t started_at = static_cast<std::int64_t>(std::time(nullptr));
  std::vector<Sha256> upload_token_hashes;  // of options.upload_tokens
  // Per-key limits (max_requests_per_key, key_rate_per_second).
  struct KeyUse {
    std::size_t in_flight = 0;
    double tokens = 0;
    Clock::time_point refilled{};
  };
  std::mutex key_use_mutex;
  std::unordered_map<std::string, KeyUse> key_use;
  std::mutex expiry_mutex;
  std::condition_variable expiry_cv;
  bool expiry_stop = false;

  // Asynchronous predictions: the jobs held (by id), the queue of those not started, and
  // the bytes of inputs and answers they hold; runner threads (max_jobs of them) take jobs
  // from the queue into the same job slots as synchronous requests.
  struct AsyncJob {
    enum class State { kQueued, kRunning, kDone, kFailed };
    std::string id;
    std::shared_ptr<const Model> model;
    std::string key_id;
    std::optional<Sha256> token_sha256;  // of the bearer token the submission presented
    std::string input;                   // the input batch, until the job has run
    State state = State::kQueued;
    deploy::Bytes output;
    deploy::RunStats stats;
    ApiError error{500, "internal", "", 0};
    std::atomic<bool> cancelled{false};
    Clock::time_point submitted{}, finished{};
    std::uint64_t bytes() const { return input.size() + output.size(); }
  };
  mutable std::mutex jobs_mutex;
  std::condition_variable jobs_cv;
  std::map<std::string, std::shared_ptr<AsyncJob>> jobs;
  std::deque<std::shared_ptr<AsyncJob>> job_queue;
  std::uint64_t job_bytes = 0;
  bool jobs_stop = false;

  Impl(HttpServerOptions o, std::shared_ptr<KeyStore> s)
      : options(std::move(o)), store(std::move(s)), cache(options.key_cache_bytes), gate(options.max_jobs, options.max_queue) {
    if (!options.web_dir.empty()) web = WebAssets::load(options.web_dir);
  }

  void log(const json& line) {
    const std::string text = json_dump(line);
    if (options.log) {
      options.log(text);
      return;
    }
    std::lock_guard lock(log_mutex);
    std::cerr << text << '\n' << std::flush;
  }

  std::shared_ptr<const ModelSet> models() const {
    std::lock_guard lock(models_mutex);
    return model_set;
  }

  // Reads every model of options.models_dir into a new set; throws (naming the directory or
  // file) when the directory holds no model or one of them cannot be loaded.
  std::shared_ptr<const ModelSet> scan_models() {
    const fs::path& root = options.models_dir;
    std::error_code ec;
    if (!fs::is_directory(root, ec)) throw std::runtime_error("models directory " + root.string() + " does not exist");
    std::vector<std::pair<std::string, fs::path>> found;
    if (has_artifacts(root)) {
      // The directory is one model, named after it.
      fs::path p = fs::absolute(root).lexically_normal();
      if (p.filename().empty()) p = p.parent_path();
      found.emplace_back(p.filename().string(), root);
    } else {
      for (const auto& entry : fs::directory_iterator(root)) {
        if (!entry.is_directory()) continue;
        const std::string name = entry.path().filename().string();
        if (!has_artifacts(entry.path())) continue;
        if (!valid_model_name(name)) {
          log({{"ts", iso8601_now()}, {"level", "warning"}, {"msg", "model directory skipped: its name is not a valid model name "
                                                                     "(letters, digits, '.', '_', '-'; at most 128)"},
               {"dir", entry.path().string()}});
          continue;
        }
        found.emplace_back(name, entry.path());
      }
      std::sort(found.begin(), found.end());
    }
    if (found.empty())
      throw std::runtime_error("models directory " + root.string() + " holds no model (a subdirectory with " +
                               deploy::kClientZip + ", " + deploy::kServerZip + " and " + deploy::kProcessingJson + ")");
    auto set = std::make_shared<ModelSet>();
    for (const auto& [name, dir] : found) {
      if (!valid_model_name(name)) throw std::runtime_error("model directory " + dir.string() + ": not a valid model name");
      std::shared_ptr<const Model> m = load_model(name, dir, options);
      if (const auto it = set->by_id.find(m->id_hex); it != set->by_id.end())
        log({{"ts", iso8601_now()}, {"level", "warning"}, {"msg", "two model directories hold the same compile"},
             {"model", name}, {"same_as", it->second->name}});
      set->by_name[name] = m;
      set->by_id.emplace(m->id_hex, m.get());
      set->served.push_back({name, m->id_hex, m->keys_required});
      set->models.push_back(std::move(m));
    }
    return set;
  }

  void load_models() {
    auto set = scan_models();
    for (const auto& m : set->models)
      log({{"ts", iso8601_now()}, {"level", "info"}, {"msg", "model loaded"}, {"model", m->name}, {"model_id", m->id_hex},
           {"keys_required", m->keys_required}, {"dir", m->dir.string()}});
    std::lock_guard lock(models_mutex);
    model_set = std::move(set);
  }

  ModelReload reload_models() {
    std::lock_guard reload_lock(reload_mutex);
    std::shared_ptr<const ModelSet> next;
    try {
      next = scan_models();
    } catch (const std::exception& e) {
      ++reloads_failed;
      log({{"ts", iso8601_now()}, {"level", "error"}, {"msg", "model reload failed: still serving the models loaded before"},
           {"dir", options.models_dir.string()}, {"detail", e.what()}});
      throw;
    }
    const std::shared_ptr<const ModelSet> before = models();
    ModelReload r;
    for (const auto& m : next->models) {
      const auto it = before->by_name.find(m->name);
      if (it == before->by_name.end()) {
        r.added.push_back(m->name);
      } else if (it->second->id_hex != m->id_hex || it->second->client_zip_sha256 != m->client_zip_sha256 ||
                 it->second->processing_sha256 != m->processing_sha256) {
        r.replaced.push_back(m->name);
      } else {
        r.unchanged.push_back(m->name);
      }
    }
    for (const auto& m : before->models)
      if (next->by_name.count(m->name) == 0) r.removed.push_back(m->name);
    {
      std::lock_guard lock(models_mutex);
      model_set = next;
    }
    ++reloads_ok;
    for (const auto& name : r.added)
      log({{"ts", iso8601_now()}, {"level", "info"}, {"msg", "model added"}, {"model", name},
           {"model_id", next->by_name.at(name)->id_hex}});
    for (const auto& name : r.replaced)
      log({{"ts", iso8601_now()}, {"level", "info"}, {"msg", "model replaced: keys uploaded for the old compile are refused"},
           {"model", name}, {"model_id", next->by_name.at(name)->id_hex}, {"old_model_id", before->by_name.at(name)->id_hex}});
    for (const auto& name : r.removed) log({{"ts", iso8601_now()}, {"level", "info"}, {"msg", "model removed"}, {"model", name}});
    log({{"ts", iso8601_now()}, {"level", "info"}, {"msg", "models reloaded"}, {"models", next->models.size()},
         {"added", r.added.size()}, {"replaced", r.replaced.size()}, {"removed", r.removed.size()}});
    return r;
  }

  // The model of that name in the current set, held for the request.
  std::shared_ptr<const Model> model_or_404(const std::string& name) const {
    const std::shared_ptr<const ModelSet> set = models();
    const auto it = set->by_name.find(name);
    if (it == set->by_name.end())
      refuse(404, "unknown_model", "no model named '" + name + "' on this server (GET /v1/models lists them)");
    return it->second;
  }

  // The model named by a model id, for messages.
  std::string name_of_id(const std::string& id_hex) const {
    const std::shared_ptr<const ModelSet> set = models();
    const auto it = set->by_id.find(id_hex);
    return it == set->by_id.end() ? "not served here" : "'" + it->second->name + "' on this server";
  }

  std::uint64_t body_limit(const RouteSpec& route) const {
    switch (route.body) {
      case RouteBody::kEvaluationKeys: return options.max_key_bytes;
      case RouteBody::kInputBatch: return options.max_input_bytes;
      case RouteBody::kNone: break;
    }
    return 0;
  }

  // The verdict on a request from its head alone, before its body is read (the transport's
  // admission): what can be refused without the body is refused here.
  std::optional<Refusal> admit_head(const RequestHead& h) {
    const RouteMatch route = match_route(h.path, h.method);
    auto refusal = [&](int status, std::string code, std::string detail, unsigned retry = 0) {
      Refusal r;
      r.status = status;
      r.code = std::move(code);
      r.detail = std::move(detail);
      r.route = route.route;
      r.retry_after = retry;
      return r;
    };
    if (route.spec == nullptr)
      return refusal(404, "not_found", "no route " + h.method + " " + h.path.substr(0, 256) + " (see docs/api.md)");
    const RouteSpec& spec = *route.spec;
    // A CORS preflight of the API, when an origin is allowed (install_routes answers it).
    if (h.method == "OPTIONS" && !options.cors_origin.empty() && h.path.starts_with("/v1/") && h.content_length == 0)
      return std::nullopt;
    const bool get_like = std::string(spec.method) == "GET" && (h.method == "GET" || h.method == "HEAD");
    if (h.method != spec.method && !get_like) {
      Refusal r = refusal(405, "method_not_allowed", h.method.substr(0, 32) + " is not allowed on " + route.route + ": use " + route.allow);
      r.allow = route.allow;
      return r;
    }
    if (!h.content_encoding.empty()) {
      std::string enc = h.content_encoding;
      std::transform(enc.begin(), enc.end(), enc.begin(), [](unsigned char c) { return std::tolower(c); });
      if (enc != "identity")
        return refusal(415, "unsupported_encoding",
                       "Content-Encoding '" + h.content_encoding.substr(0, 64) + "' is not accepted: send the body as is");
    }
    const std::uint64_t limit = body_limit(spec);
    if (h.content_length > limit) {
      if (limit == 0) return refusal(413, "body_too_large", h.method + " " + route.route + " takes no body");
      return refusal(413, "body_too_large",
                     "the body has " + std::to_string(h.content_length) + " bytes; " + route.route + " accepts at most " +
                         std::to_string(limit) + " (the server's " +
                         (spec.body == RouteBody::kEvaluationKeys ? "key upload" : "input") + " size limit)");
    }
    if (spec.body == RouteBody::kNone) return std::nullopt;  // the FHE routes' checks follow
    const bool upload = spec.body == RouteBody::kEvaluationKeys;
    if (transport->stopping()) return refusal(503, "shutting_down", "the server is stopping", options.retry_after_seconds);
    if (upload && !upload_token_hashes.empty()) {
      const std::string token = bearer_of(h.authorization);
      const Sha256 presented = tfhe::sha256(token);
      bool known = false;
      for (const Sha256& t : upload_token_hashes)
        known = (CRYPTO_memcmp(presented.data(), t.data(), t.size()) == 0) || known;
      if (token.empty() || !known) {
        Refusal r = refusal(401, "upload_token_required",
                            "this server takes key uploads only with an operator-issued upload token: send "
                            "'Authorization: Bearer <upload token>'");
        return r;
      }
    }
    const std::shared_ptr<const ModelSet> set = models();
    const auto it = set->by_name.find(model_segment(h.path));
    const bool needs_slot = !upload || (it != set->by_name.end() && it->second->keys_required);
    if (needs_slot && gate.refuse_now())
      return refusal(503, "overloaded",
                     "all " + std::to_string(options.max_jobs) + " FHE job slots are busy and " +
                         std::to_string(options.max_queue) + " requests are waiting: retry later (the body was not read)",
                     options.retry_after_seconds);
    return std::nullopt;
  }

  // A job slot, or a 503.
  JobGate::Slot admit() {
    JobGate::Outcome outcome{};
    JobGate::Slot slot = gate.acquire(options.queue_timeout, &outcome);
    switch (outcome) {
      case JobGate::Outcome::kAdmitted:
        return slot;
      case JobGate::Outcome::kQueueFull:
        refuse(503, "overloaded",
               "all " + std::to_string(options.max_jobs) + " FHE job slots are busy and " +
                   std::to_string(options.max_queue) + " requests are waiting: retry later");
      case JobGate::Outcome::kTimedOut:
        refuse(503, "overloaded",
               "no FHE job slot became free within " + std::to_string(options.queue_timeout.count()) + " ms: retry later");
      case JobGate::Outcome::kStopping:
        refuse(503, "shutting_down", "the server is stopping");
    }
    refuse(500, "internal", "unexpected admission outcome");
  }

  void run_hook(const Model& m) const {
    if (options.job_hook) options.job_hook(m.name);
  }

  // Header checks of an envelope body before any work: kind and model.
  void check_envelope(std::string_view body, deploy::EnvelopeKind kind, const Model& m, std::uint64_t max_bytes,
                      const char* what) const {
    deploy::EnvelopeInfo info;
    try {
      info = deploy::inspect_envelope(bytes_of(body), max_bytes);
    } catch (const std::exception& e) {
      refuse(400, "malformed_body", std::string("the body is not a valid ") + what + " envelope: " + e.what());
    }
    if (info.kind != kind)
      refuse(400, "malformed_body",
             std::string("the body is an envelope of ") + deploy::envelope_kind_name(info.kind) + ", this route takes " +
                 deploy::envelope_kind_name(kind));
    const std::string id = deploy::model_id_hex(info.model_id);
    if (id != m.id_hex)
      refuse(422, "model_mismatch",
             std::string("the ") + what + " belong to model " + id + " (" + name_of_id(id) + "), not to '" + m.name +
                 "' (model " + m.id_hex + ")");
  }

  // The stored record of a request's key id, after checking the token and the model.
  KeyRecordInfo authorize(const httplib::Request& req, const std::string& key_id, const Model* m) {
    const std::string token = bearer_token(req);
    if (key_id.empty())
      refuse(401, "missing_credentials",
             std::string(kKeyIdHeader) + " header missing: upload evaluation keys with POST /v1/models/{name}/keys "
                                         "and send the key id it returns");
    if (token.empty()) refuse(401, "missing_credentials", "Authorization: Bearer <token> header missing or malformed");
    if (!is_lower_hex(key_id, 2 * kKeyIdBytes)) refuse(404, "unknown_key", "no keys with id '" + key_id.substr(0, 64) + "'");
    if (RequestContext* ctx = current_request()) ctx->key_id = key_id;
    const std::optional<KeyRecordInfo> info = store->info(key_id);
    if (!info) refuse(404, "unknown_key", "no keys with id " + key_id + " (never uploaded, or deleted): upload them again");
    const Sha256 presented = tfhe::sha256(token);
    if (CRYPTO_memcmp(presented.data(), info->token_sha256.data(), presented.size()) != 0)
      refuse(403, "invalid_token", "the token is not the one issued for keys " + key_id);
    if (m != nullptr && info->model_id != m->id_hex)
      refuse(409, "key_model_mismatch",
             "keys " + key_id + " belong to model " + info->model_id + " (" + name_of_id(info->model_id) + "), not to '" +
                 m->name + "' (model " + m->id_hex + "): upload keys for this model (a recompiled model needs new keys)");
    return *info;
  }

  void touch(const std::string& key_id, bool force) {
    const auto now = Clock::now();
    {
      std::lock_guard lock(touch_mutex);
      auto [it, inserted] = last_touch.try_emplace(key_id, now);
      if (!inserted && !force && now - it->second < options.touch_interval) return;
      it->second = now;
      if (inserted && !force) return;  // just uploaded or first seen: created_at/last_used_at are recent
    }
    try {
      store->touch(key_id, static_cast<std::int64_t>(std::time(nullptr)));
    } catch (const std::exception& e) {
      log({{"ts", iso8601_now()}, {"level", "warning"}, {"msg", "cannot record key use"}, {"key_id", key_id},
           {"detail", e.what()}});
    }
  }

  // ---- handlers ----

  void list_models(httplib::Response& res) const {
    json list = json::array();
    for (const auto& m : models()->models) list.push_back(m->description);
    res.set_content(json_dump(json{{"models", list}}) + "\n", "application/json");
  }

  void get_model(const std::string& name, httplib::Response& res) const {
    res.set_content(json_dump(model_or_404(name)->description) + "\n", "application/json");
  }

  void get_file(const std::string& name, const std::string& file, httplib::Response& res) const {
    const std::shared_ptr<const Model> held = model_or_404(name);
    const Model& m = *held;
    const bool zip = file == deploy::kClientZip;
    res.set_content(zip ? m.client_zip : m.processing_json, zip ? "application/zip" : "application/json");
    res.set_header("ETag", "\"" + (zip ? m.client_zip_sha256 : m.processing_sha256) + "\"");
    res.set_header("X-Veil-Model-Id", m.id_hex);
  }

  void upload_keys(const std::string& name, const httplib::Request& req, httplib::Response& res) {
    const std::shared_ptr<const Model> held = model_or_404(name);
    const Model& m = *held;
    const auto t0 = Clock::now();
    const std::string_view body = request_body();
    check_envelope(body, deploy::EnvelopeKind::kEvaluationKeys, m, options.max_key_bytes, "evaluation keys");
    // A client-chosen token names the upload: the same token and keys again is a replay,
    // answered with the stored record instead of a second copy.
    const std::string chosen = req.get_header_value(kKeyTokenHeader);
    std::string derived_id;
    const Sha256 body_sha256 = tfhe::sha256(bytes_of(body));
    if (!chosen.empty() || req.has_header(kKeyTokenHeader)) {
      if (!is_lower_hex(chosen, 2 * kTokenBytes))
        refuse(400, "bad_request", std::string(kKeyTokenHeader) + " must be 64 lowercase hex digits (256 random bits)");
      const std::string label = "veil.key_id.v1:" + chosen;
      derived_id = tfhe::to_hex(tfhe::sha256(label)).substr(0, 2 * kKeyIdBytes);
      if (const auto existing = store->info(derived_id)) {
        answer_replay(*existing, chosen, body_sha256, m, res);
        return;
      }
    }
    if (options.max_store_bytes > 0) {
      const KeyStoreStats s = store->stats();
      if (s.total_bytes + body.size() > options.max_store_bytes)
        refuse(507, "store_full",
               "the key store holds " + std::to_string(s.total_bytes) + " bytes of keys; this upload would pass its limit of " +
                   std::to_string(options.max_store_bytes) + ": retry later");
    }
    // Parse and expand in full: what is stored is known to load.
    std::shared_ptr<const tfhe::EvaluationKeys> keys;
    {
      JobGate::Slot slot;
      if (m.keys_required) {
        slot = admit();
        run_hook(m);
      }
      try {
        keys = m.server.load_evaluation_keys(bytes_of(body));
      } catch (const deploy::EnvelopeError& e) {
        refuse(400, "malformed_body", std::string("the evaluation keys cannot be loaded: ") + e.what());
      } catch (const deploy::DeployError& e) {
        refuse(400, "malformed_body", std::string("the evaluation keys cannot be loaded: ") + e.what());
      } catch (const std::invalid_argument& e) {
        refuse(400, "malformed_body", std::string("the evaluation keys cannot be loaded: ") + e.what());
      } catch (const std::length_error& e) {
        refuse(400, "malformed_body", std::string("the evaluation keys cannot be loaded: ") + e.what());
      }
    }
    KeyRecordInfo info;
    const std::string token = derived_id.empty() ? hex_random(kTokenBytes) : chosen;
    info.model_id = m.id_hex;
    info.token_sha256 = tfhe::sha256(token);
    info.created_at = info.last_used_at = static_cast<std::int64_t>(std::time(nullptr));
    for (int attempt = 0;; ++attempt) {
      info.key_id = derived_id.empty() ? hex_random(kKeyIdBytes) : derived_id;
      try {
        store->put(info, bytes_of(body));
        break;
      } catch (const KeyIdExists&) {
        if (!derived_id.empty()) {  // the same upload, concurrently (another replica, a retry)
          if (const auto existing = store->info(derived_id)) {
            answer_replay(*existing, chosen, body_sha256, m, res);
            return;
          }
        }
        if (attempt >= 3) throw;
      }
    }
    if (RequestContext* ctx = current_request()) ctx->key_id = info.key_id;
    {
      std::lock_guard lock(touch_mutex);
      last_touch[info.key_id] = Clock::now();
    }
    if (keys) cache.get_or_load(info.key_id, [&] { return keys; });
    metrics.observe_key_upload(m.name, body.size(), std::chrono::duration<double>(Clock::now() - t0).count());
    answer_grant(res, 201, info.key_id, token, m, body.size(), false);
  }

  // The answer to an upload: the key id and the token that guards it.
  static void answer_grant(httplib::Response& res, int status, const std::string& key_id, const std::string& token,
                           const Model& m, std::uint64_t bytes, bool replayed) {
    json j{{"key_id", key_id}, {"token", token}, {"model", m.name}, {"model_id", m.id_hex}, {"bytes", bytes}};
    if (replayed) j["replayed"] = true;
    res.status = status;
    res.set_header("Location", "/v1/keys/" + key_id);
    res.set_content(json_dump(j) + "\n", "application/json");
  }

  // The answer to an upload repeated with its client-chosen token: the stored record, if it
  // holds these very keys for this model under this token.
  void answer_replay(const KeyRecordInfo& existing, const std::string& token, const Sha256& body_sha256, const Model& m,
                     httplib::Response& res) {
    const Sha256 presented = tfhe::sha256(token);
    if (CRYPTO_memcmp(presented.data(), existing.token_sha256.data(), presented.size()) != 0 ||
        existing.keys_sha256 != body_sha256 || existing.model_id != m.id_hex)
      refuse(409, "key_token_reused",
             std::string(kKeyTokenHeader) + " names an upload of other keys or another model: choose a new token");
    if (RequestContext* ctx = current_request()) ctx->key_id = existing.key_id;
    answer_grant(res, 200, existing.key_id, token, m, existing.size, true);
  }

  void stop_expiry() {
    {
      std::lock_guard lock(expiry_mutex);
      expiry_stop = true;
    }
    expiry_cv.notify_all();
  }

  // Deletes keys unused for options.key_ttl, in rounds, until stopped.
  void expire_keys_until_stopped() {
    if (options.key_ttl.count() <= 0) return;
    const auto period = std::clamp<Clock::duration>(options.key_ttl / 10, std::chrono::seconds(1), std::chrono::seconds(60));
    std::unique_lock lock(expiry_mutex);
    while (!expiry_stop) {
      lock.unlock();
      try {
        const auto cutoff = static_cast<std::int64_t>(std::time(nullptr)) - options.key_ttl.count();
        for (;;) {
          const std::vector<std::string> gone = store->remove_unused_since(cutoff, 1000);
          for (const auto& id : gone) {
            cache.erase(id);
            std::lock_guard touch_lock(touch_mutex);
            last_touch.erase(id);
          }
          if (!gone.empty())
            log({{"ts", iso8601_now()}, {"level", "info"}, {"msg", "expired unused keys"}, {"count", gone.size()},
                 {"ttl_seconds", options.key_ttl.count()}});
          if (gone.size() < 1000) break;
        }
      } catch (const std::exception& e) {
        log({{"ts", iso8601_now()}, {"level", "warning"}, {"msg", "cannot expire keys"}, {"detail", e.what()}});
      }
      lock.lock();
      expiry_cv.wait_for(lock, period, [&] { return expiry_stop; });
    }
  }

  // Holds one of a key's concurrent-request places while alive.
  class KeyPlace {
   public:
    KeyPlace() = default;
    KeyPlace(Impl* impl, std::string key_id) : impl_(impl), key_id_(std::move(key_id)) {}
    KeyPlace(KeyPlace&& o) noexcept : impl_(std::exchange(o.impl_, nullptr)), key_id_(std::move(o.key_id_)) {}
    KeyPlace& operator=(KeyPlace&&) = delete;
    ~KeyPlace() {
      if (impl_ == nullptr) return;
      std::lock_guard lock(impl_->key_use_mutex);
      auto it = impl_->key_use.find(key_id_);
      if (it != impl_->key_use.end() && it->second.in_flight > 0) --it->second.in_flight;
    }

   private:
    Impl* impl_ = nullptr;
    std::string key_id_;
  };

  // A place for one more request with these keys, or 429.
  KeyPlace limit_key(const std::string& key_id) {
    if (options.max_requests_per_key == 0 && options.key_rate_per_second <= 0) return {};
    std::lock_guard lock(key_use_mutex);
    if (key_use.size() > 100000) {  // forget idle entries now and then: bounded memory
      for (auto it = key_use.begin(); it != key_use.end();)
        it = it->second.in_flight == 0 ? key_use.erase(it) : std::next(it);
    }
    auto [it, fresh] = key_use.try_emplace(key_id);
    KeyUse& u = it->second;
    const auto now = Clock::now();
    if (options.key_rate_per_second > 0) {
      if (fresh) {
        u.tokens = options.key_burst;
      } else {
        u.tokens = std::min(options.key_burst,
                            u.tokens + std::chrono::duration<double>(now - u.refilled).count() * options.key_rate_per_second);
      }
      u.refilled = now;
      if (u.tokens < 1) {
        const auto wait = static_cast<unsigned>(std::ceil((1 - u.tokens) / options.key_rate_per_second));
        throw ApiError{429, "rate_limited",
                       "keys " + key_id + " may run " + std::to_string(options.key_rate_per_second) +
                           " predictions per second: retry in " + std::to_string(std::max(1u, wait)) + " s",
                       std::max(1u, wait)};
      }
    }
    if (options.max_requests_per_key > 0 && u.in_flight >= options.max_requests_per_key)
      throw ApiError{429, "too_many_requests",
                     "keys " + key_id + " have " + std::to_string(u.in_flight) +
                         " predictions in progress, the most one client may have: wait for one to finish",
                     options.retry_after_seconds};
    if (options.key_rate_per_second > 0) u.tokens -= 1;
    ++u.in_flight;
    return KeyPlace(this, key_id);
  }

  // Runs a model on an input batch with a key id's keys (none for a model without lookups),
  // in a job slot the caller holds; refuses (ApiError) as a synchronous predict answers.
  deploy::Bytes run_model(const Model& m, const std::string& key_id, std::string_view body, deploy::RunStats* stats,
                          std::function<bool()> cancelled) {
    // The job's time counts from its slot: key loading included.
    deploy::RunControl control;
    control.deadline = Clock::now() + options.job_timeout;
    run_hook(m);
    KeyCache::Value keys;
    if (m.keys_required) {
      keys = cache.get_or_load(key_id, [&]() -> KeyCache::Value {
        const auto t0 = Clock::now();
        std::optional<KeyRecord> record = store->get(key_id);
        if (!record) refuse(404, "unknown_key", "keys " + key_id + " were deleted: upload them again");
        if (record->info.model_id != m.id_hex)
          refuse(409, "key_model_mismatch", "keys " + key_id + " belong to model " + record->info.model_id);
        KeyCache::Value loaded;
        try {
          loaded = m.server.load_evaluation_keys(record->keys);
        } catch (const std::exception& e) {
          refuse(500, "internal", "stored keys " + key_id + " cannot be loaded: " + e.what());
        }
        metrics.observe_key_load(std::chrono::duration<double>(Clock::now() - t0).count());
        return loaded;
      });
    }
    control.cancelled = std::move(cancelled);
    try {
      return m.server.run(bytes_of(body), keys.get(), stats, control);
    } catch (const deploy::RunCancelled& e) {
      if (e.timed_out())
        refuse(413, "job_too_long",
               std::string(e.what()) + " (the server's time limit per job is " +
                   std::to_string(options.job_timeout.count() / 1000) + " s): send fewer rows per request");
      refuse(499, "client_closed", std::string(e.what()) + ": the client closed the connection");
    } catch (const deploy::EnvelopeError& e) {
      refuse(400, "malformed_body", std::string("the encrypted inputs cannot be read: ") + e.what());
    } catch (const deploy::DeployError& e) {
      refuse(400, "malformed_body", std::string("the encrypted inputs cannot be read: ") + e.what());
    } catch (const std::invalid_argument& e) {
      refuse(422, "signature_mismatch", std::string("the encrypted inputs do not match the model's inputs: ") + e.what());
    } catch (const std::length_error& e) {
      refuse(400, "malformed_body", std::string("the encrypted inputs cannot be read: ") + e.what());
    }
    refuse(500, "internal", "the model run returned nothing");
  }

  void predict(const std::string& name, const httplib::Request& req, httplib::Response& res) {
    const std::shared_ptr<const Model> held = model_or_404(name);
    const Model& m = *held;
    const std::string key_id = req.get_header_value(kKeyIdHeader);
    const bool credentials = !key_id.empty() || req.has_header("Authorization");
    if (m.keys_required || credentials) authorize(req, key_id, &m);
    const KeyPlace place = key_id.empty() ? KeyPlace() : limit_key(key_id);
    const std::string_view body = request_body();
    check_envelope(body, deploy::EnvelopeKind::kInputBatch, m, options.max_input_bytes, "inputs");

    if (const std::string mode = req.get_param_value("mode"); mode == "async") {
      submit_job(held, key_id, req, body, res);
      return;
    } else if (!mode.empty() && mode != "sync") {
      refuse(400, "bad_request", "mode '" + mode.substr(0, 32) + "' is not 'sync' or 'async'");
    }
    deploy::RunStats stats;
    deploy::Bytes output;
    {
      JobGate::Slot slot = admit();
      std::function<bool()> gone;
      if (RequestContext* ctx = current_request(); ctx != nullptr && ctx->client_gone) gone = ctx->client_gone;
      output = run_model(m, key_id, body, &stats, std::move(gone));
    }
    if (!key_id.empty()) touch(key_id, false);
    metrics.observe_prediction(m.name, stats.rows, stats.pbs, stats.pbs_seconds, stats.total_seconds);
    answer_output(res, stats, output);
  }

  static void answer_output(httplib::Response& res, const deploy::RunStats& stats, const deploy::Bytes& output) {
    res.set_header("X-Veil-Rows", std::to_string(stats.rows));
    res.set_header("X-Veil-Pbs", std::to_string(stats.pbs));
    char ms[32];
    std::snprintf(ms, sizeof ms, "%.3f", stats.total_seconds * 1000);
    res.set_header("X-Veil-Run-Ms", ms);
    res.set_content(reinterpret_cast<const char*>(output.data()), output.size(), "application/octet-stream");
  }

  // ---- asynchronous predictions ----

  // Drops finished jobs whose answers expired. REQUIRES: jobs_mutex held.
  void sweep_jobs_locked() {
    const auto now = Clock::now();
    for (auto it = jobs.begin(); it != jobs.end();) {
      const AsyncJob& j = *it->second;
      const bool finished = j.state == AsyncJob::State::kDone || j.state == AsyncJob::State::kFailed;
      if (finished && now - j.finished > options.async_result_ttl) {
        job_bytes -= j.bytes();
        it = jobs.erase(it);
      } else {
        ++it;
      }
    }
  }

  // POST .../predict?mode=async: the checks of a predict are done; the job is queued.
  void submit_job(const std::shared_ptr<const Model>& m, const std::string& key_id, const httplib::Request& req,
                  std::string_view body, httplib::Response& res) {
    if (transport->stopping()) refuse(503, "shutting_down", "the server is stopping");
    auto job = std::make_shared<AsyncJob>();
    job->model = m;
    job->key_id = key_id;
    if (const std::string token = bearer_token(req); !token.empty()) job->token_sha256 = tfhe::sha256(token);
    job->submitted = Clock::now();
    {
      std::lock_guard lock(jobs_mutex);
      sweep_jobs_locked();
      if (jobs.size() >= options.max_async_jobs)
        refuse(503, "overloaded",
               "this server holds " + std::to_string(jobs.size()) + " asynchronous jobs, its limit: retry later (or fetch "
               "and delete finished ones)");
      if (job_bytes + body.size() > options.max_async_bytes)
        refuse(503, "overloaded",
               "asynchronous jobs hold " + std::to_string(job_bytes) + " bytes of inputs and answers; this one would pass the "
               "limit of " + std::to_string(options.max_async_bytes) + ": retry later");
      if (!key_id.empty() && options.max_requests_per_key > 0) {
        std::size_t pending = 0;
        for (const auto& [id, j] : jobs)
          pending += j->key_id == key_id && (j->state == AsyncJob::State::kQueued || j->state == AsyncJob::State::kRunning);
        if (pending >= options.max_requests_per_key)
          throw ApiError{429, "too_many_requests",
                         "keys " + key_id + " have " + std::to_string(pending) +
                             " asynchronous jobs queued or running, the most one client may have: wait for one to finish",
                         options.retry_after_seconds};
      }
      job->input.assign(body.data(), body.size());
      job->id = (options.replica_id.empty() ? "" : options.replica_id + "-") + hex_random(16);
      jobs.emplace(job->id, job);
      job_queue.push_back(job);
      job_bytes += job->bytes();
    }
    jobs_cv.notify_one();
    res.status = 202;
    res.set_header("Location", "/v1/jobs/" + job->id);
    res.set_header("Retry-After", "1");
    res.set_content(json_dump(json{{"job_id", job->id}, {"status", "queued"}, {"model", m->name}}) + "\n",
                    "application/json");
  }

  // The job of an id, after checking the token it was submitted with.
  std::shared_ptr<AsyncJob> job_or_404(const std::string& id, const httplib::Request& req) {
    std::shared_ptr<AsyncJob> job;
    {
      std::lock_guard lock(jobs_mutex);
      sweep_jobs_locked();
      if (const auto it = jobs.find(id); it != jobs.end()) job = it->second;
    }
    if (!job)
      refuse(404, "unknown_job",
             "no job '" + id.substr(0, 80) + "' here: never submitted, deleted, its answer expired (" +
                 std::to_string(options.async_result_ttl.count()) +
                 " s after it finished), or held by a server that restarted: submit the inputs again");
    if (job->token_sha256) {
      const std::string token = bearer_token(req);
      if (token.empty()) refuse(401, "missing_credentials", "Authorization: Bearer <token> of the job's keys missing");
      const Sha256 presented = tfhe::sha256(token);
      if (CRYPTO_memcmp(presented.data(), job->token_sha256->data(), presented.size()) != 0)
        refuse(403, "invalid_token", "the token is not the one job " + id + " was submitted with");
    }
    return job;
  }

  void get_job(const std::string& id, const httplib::Request& req, httplib::Response& res) {
    const std::shared_ptr<AsyncJob> job = job_or_404(id, req);
    std::lock_guard lock(jobs_mutex);
    switch (job->state) {
      case AsyncJob::State::kQueued:
      case AsyncJob::State::kRunning: {
        res.status = 202;
        res.set_header("Retry-After", "1");
        const char* state = job->state == AsyncJob::State::kQueued ? "queued" : "running";
        res.set_content(json_dump(json{{"job_id", job->id}, {"status", state}, {"model", job->model->name}}) + "\n",
                        "application/json");
        return;
      }
      case AsyncJob::State::kDone:
        answer_output(res, job->stats, job->output);
        return;
      case AsyncJob::State::kFailed:
        throw job->error;
    }
  }

  void delete_job(const std::string& id, const httplib::Request& req, httplib::Response& res) {
    const std::shared_ptr<AsyncJob> job = job_or_404(id, req);
    job->cancelled = true;  // a running job stops before its next row
    {
      std::lock_guard lock(jobs_mutex);
      if (jobs.erase(id) != 0) job_bytes -= job->bytes();
    }
    res.status = 204;
  }

  // A runner: takes queued jobs, one at a time, into a job slot, until stopped.
  void run_jobs_until_stopped() {
    for (;;) {
      std::shared_ptr<AsyncJob> job;
      {
        std::unique_lock lock(jobs_mutex);
        jobs_cv.wait(lock, [&] { return jobs_stop || !job_queue.empty(); });
        if (jobs_stop) return;
        job = job_queue.front();
        job_queue.pop_front();
        if (job->cancelled) continue;
        job->state = AsyncJob::State::kRunning;
      }
      deploy::RunStats stats;
      deploy::Bytes output;
      std::optional<ApiError> failure;
      try {
        // Waits for a slot as long as it takes (the queue's limit and timeout are for
        // synchronous requests, whose clients wait on a connection).
        JobGate::Slot slot;
        for (;;) {
          JobGate::Outcome outcome{};
          slot = gate.acquire(options.queue_timeout, &outcome);
          if (outcome == JobGate::Outcome::kAdmitted) break;
          if (outcome == JobGate::Outcome::kStopping || job->cancelled) refuse(503, "shutting_down", "the server is stopping");
          if (outcome == JobGate::Outcome::kQueueFull) std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
        output = run_model(*job->model, job->key_id, job->input, &stats, [&job] { return job->cancelled.load(); });
      } catch (const ApiError& e) {
        failure = e;
      } catch (const KeyStoreError& e) {
        failure = ApiError{503, "store_unavailable", std::string("the key store failed: ") + e.what(), 0};
      } catch (const std::bad_alloc&) {
        failure = ApiError{503, "out_of_memory", "the server ran out of memory for this job", 0};
      } catch (const std::exception& e) {
        log({{"ts", iso8601_now()}, {"level", "error"}, {"msg", "async job failed"}, {"job_id", job->id}, {"detail", e.what()}});
        failure = ApiError{500, "internal", e.what(), 0};
      }
      if (!failure) {
        if (!job->key_id.empty()) touch(job->key_id, false);
        metrics.observe_prediction(job->model->name, stats.rows, stats.pbs, stats.pbs_seconds, stats.total_seconds);
      }
      std::lock_guard lock(jobs_mutex);
      const bool held = jobs.count(job->id) != 0;  // not deleted meanwhile
      if (held) job_bytes -= job->bytes();
      job->input.clear();
      job->input.shrink_to_fit();
      job->finished = Clock::now();
      if (failure) {
        job->state = AsyncJob::State::kFailed;
        job->error = *failure;
      } else {
        job->state = AsyncJob::State::kDone;
        job->output = std::move(output);
        job->stats = stats;
      }
      if (held) job_bytes += job->bytes();
    }
  }

  void stop_jobs() {
    {
      std::lock_guard lock(jobs_mutex);
      jobs_stop = true;
      for (auto& [id, j] : jobs) j->cancelled = true;
    }
    jobs_cv.notify_all();
  }

  void delete_keys(const std::string& key_id, const httplib::Request& req, httplib::Response& res) {
    authorize(req, key_id, nullptr);
    if (!store->remove(key_id)) refuse(404, "unknown_key", "no keys with id " + key_id);
    cache.erase(key_id);
    {
      std::lock_guard lock(touch_mutex);
      last_touch.erase(key_id);
    }
    res.status = 204;
  }

  // A file of the browser client (page/index.html for the page's routes), under the page's
  // Content-Security-Policy.
  void web_file(const std::string& name, const httplib::Request& req, httplib::Response& res) const {
    if (!web)
      refuse(404, "not_found", "this server serves no web page: it was started without the browser client's files");
    const WebAsset* asset = web->find(name);
    if (asset == nullptr) refuse(404, "not_found", "no web file '" + name + "'");
    res.set_header("Content-Security-Policy", kWebContentSecurityPolicy);
    res.set_header("X-Content-Type-Options", "nosniff");
    res.set_header("Cache-Control", "no-cache");
    res.set_header("ETag", asset->etag);
    if (req.get_header_value("If-None-Match") == asset->etag) {
      res.status = 304;
      return;
    }
    res.set_content(asset->content, asset->mime_type);
  }

  void healthz(httplib::Response& res) const {
    const bool stopping = transport && transport->stopping();
    res.status = stopping ? 503 : 200;
    res.set_content(json_dump(json{{"status", stopping ? "stopping" : "ok"}, {"models", models()->models.size()}}) + "\n",
                    "application/json");
  }

  std::string metrics_text() const {
    PrometheusWriter w;
    // Which build answers, and which kernel set its engine chose (or VEIL_ISA forced).
    w.family("veil_build_info", "gauge", "Veil's version and the engine's kernel set; the value is 1.");
    std::string kernels;
    try {
      kernels = tfhe::active_isa();
    } catch (const std::exception&) {  // an invalid VEIL_ISA: the engine refuses it at its first use
      kernels = "invalid";
    }
    w.sample("veil_build_info", prometheus_label("version", veil::kVersion) + "," + prometheus_label("kernels", kernels),
             std::uint64_t{1});
    metrics.write(w);
    const JobGateStats g = gate.stats();
    w.single("veil_fhe_jobs_running", "gauge", "FHE jobs (key expansions and model runs) running now.", g.running);
    w.single("veil_fhe_jobs_queued", "gauge", "Requests waiting for an FHE job slot.", g.waiting);
    w.single("veil_fhe_job_slots", "gauge", "FHE job slots (max_jobs).", static_cast<std::uint64_t>(options.max_jobs));
    w.family("veil_fhe_jobs_rejected_total", "counter", "Requests refused with 503, by reason.");
    w.sample("veil_fhe_jobs_rejected_total", prometheus_label("reason", "queue_full"), g.rejected);
    w.sample("veil_fhe_jobs_rejected_total", prometheus_label("reason", "queue_timeout"), g.timed_out);
    w.sample("veil_fhe_jobs_rejected_total", prometheus_label("reason", "stopping"), g.cancelled);

    const KeyCacheStats c = cache.stats();
    w.single("veil_key_cache_hits_total", "counter", "Predictions served with keys already expanded in memory.", c.hits);
    w.single("veil_key_cache_misses_total", "counter", "Key-cache lookups that loaded and expanded keys.", c.misses);
    w.single("veil_key_cache_waits_total", "counter", "Lookups that waited for another request's load of the same keys.", c.waits);
    w.single("veil_key_cache_evictions_total", "counter", "Key sets dropped from memory to stay within the budget.", c.evictions);
    w.single("veil_key_cache_load_failures_total", "counter", "Key loads that failed.", c.load_failures);
    w.single("veil_key_cache_entries", "gauge", "Expanded key sets in memory.", c.entries);
    w.single("veil_key_cache_bytes", "gauge", "Bytes of expanded key sets in memory.", c.bytes);
    w.single("veil_key_cache_budget_bytes", "gauge", "Byte budget of the key cache (cache_bytes).", c.byte_budget);

    std::optional<KeyStoreStats> s;
    try {
      s = store->stats();
    } catch (const std::exception&) {
    }
    w.single("veil_key_store_up", "gauge", "1 when the key store answered this scrape.", std::uint64_t{s ? 1u : 0u});
    if (s) {
      w.single("veil_key_store_keys", "gauge", "Key sets in the store (all replicas).", s->key_count);
      w.single("veil_key_store_bytes", "gauge", "Bytes of evaluation keys in the store, as uploaded.", s->total_bytes);
    }
    const std::shared_ptr<const ModelSet> set = models();
    w.single("veil_models", "gauge", "Models served.", static_cast<std::uint64_t>(set->models.size()));
    w.family("veil_model_reloads_total", "counter", "Reloads of the models directory (SIGHUP), by result.");
    w.sample("veil_model_reloads_total", prometheus_label("result", "ok"), reloads_ok.load());
    w.sample("veil_model_reloads_total", prometheus_label("result", "failed"), reloads_failed.load());
    w.family("veil_model_info", "gauge", "One sample per model served, with its id.");
    for (const auto& m : set->models)
      w.sample("veil_model_info",
               prometheus_label("model", m->name) + "," + prometheus_label("model_id", m->id_hex) + "," +
                   prometheus_label("keys_required", m->keys_required ? "true" : "false"),
               std::uint64_t{1});
    {
      std::uint64_t by_state[4] = {0, 0, 0, 0};
      std::uint64_t bytes = 0;
      {
        std::lock_guard lock(jobs_mutex);
        for (const auto& [id, j] : jobs) ++by_state[static_cast<int>(j->state)];
        bytes = job_bytes;
      }
      w.family("veil_async_jobs", "gauge", "Asynchronous jobs held, by state.");
      const char* names[4] = {"queued", "running", "done", "failed"};
      for (int i = 0; i < 4; ++i) w.sample("veil_async_jobs", prometheus_label("state", names[i]), by_state[i]);
      w.single("veil_async_job_bytes", "gauge", "Bytes of inputs and answers held by asynchronous jobs.", bytes);
    }
    w.single("veil_start_time_seconds", "gauge", "Unix time the server started.", static_cast<std::uint64_t>(started_at));
    return w.text();
  }

  // Runs a handler with the request's route recorded and every failure turned into a JSON
  // error.
  template <class F>
  httplib::Server::Handler handler(std::string route, F f) {
    return [this, route, f](const httplib::Request& req, httplib::Response& res) {
      RequestContext* ctx = current_request();
      if (ctx != nullptr) ctx->route = route;
      try {
        if (req.has_header(kRequestIdHeader)) {
          const std::string id = req.get_header_value(kRequestIdHeader);
          if (!valid_request_id(id))
            refuse(400, "bad_request",
                   std::string(kRequestIdHeader) + " must be 1 to " + std::to_string(kMaxRequestIdBytes) +
                       " characters of letters, digits, '.', '_', ':' and '-' (got " + std::to_string(id.size()) +
                       " characters)");
          res.set_header(kRequestIdHeader, id);
          if (ctx != nullptr) ctx->request_id = id;
        }
        f(req, res);
      } catch (const ApiError& e) {
        set_error(res, e.status, e.code, e.detail);
        if (e.status == 503) res.set_header("Retry-After", std::to_string(options.retry_after_seconds));
        if (e.status == 429) res.set_header("Retry-After", std::to_string(std::max(1u, e.retry_after)));
        if (e.status == 401) res.set_header("WWW-Authenticate", "Bearer realm=\"veil\"");
      } catch (const KeyStoreError& e) {
        log({{"ts", iso8601_now()}, {"level", "error"}, {"msg", "key store failure"}, {"detail", e.what()}});
        set_error(res, 503, "store_unavailable", std::string("the key store failed: ") + e.what());
        res.set_header("Retry-After", std::to_string(options.retry_after_seconds));
      } catch (const std::bad_alloc&) {
        set_error(res, 503, "out_of_memory", "the server ran out of memory for this request");
        res.set_header("Retry-After", std::to_string(options.retry_after_seconds));
      } catch (const std::exception& e) {
        log({{"ts", iso8601_now()}, {"level", "error"}, {"msg", "request failed"}, {"path", req.path}, {"detail", e.what()}});
        set_error(res, 500, "internal", e.what());
      }
    };
  }

  void install_routes() {
    using Serve = std::function<void(const httplib::Request&, httplib::Response&)>;
    // What each route of kRoutes does, by its name (the capture is the model name or key id).
    const std::map<std::string_view, Serve> serve = {
        {"/v1/models", [this](const httplib::Request&, httplib::Response& res) { list_models(res); }},
        {"/v1/models/{name}", [this](const httplib::Request& req, httplib::Response& res) { get_model(req.matches[1], res); }},
        {"/v1/models/{name}/client.zip",
         [this](const httplib::Request& req, httplib::Response& res) { get_file(req.matches[1], deploy::kClientZip, res); }},
        {"/v1/models/{name}/serialized_processing.json",
         [this](const httplib::Request& req, httplib::Response& res) { get_file(req.matches[1], deploy::kProcessingJson, res); }},
        {"/v1/models/{name}/keys",
         [this](const httplib::Request& req, httplib::Response& res) { upload_keys(req.matches[1], req, res); }},
        {"/v1/models/{name}/predict",
         [this](const httplib::Request& req, httplib::Response& res) { predict(req.matches[1], req, res); }},
        {"/v1/keys/{key_id}", [this](const httplib::Request& req, httplib::Response& res) { delete_keys(req.matches[1], req, res); }},
        {"/v1/jobs/{job_id}", [this](const httplib::Request& req, httplib::Response& res) { get_job(req.matches[1], req, res); }},
        {"/v1/jobs/{job_id}#delete",
         [this](const httplib::Request& req, httplib::Response& res) { delete_job(req.matches[1], req, res); }},
        {"/healthz", [this](const httplib::Request&, httplib::Response& res) { healthz(res); }},
        {"/", [this](const httplib::Request& req, httplib::Response& res) { web_file("page/index.html", req, res); }},
        {"/models/{name}/", [this](const httplib::Request& req, httplib::Response& res) { web_file("page/index.html", req, res); }},
        {"/web/{file}", [this](const httplib::Request& req, httplib::Response& res) { web_file(req.matches[1], req, res); }},
        {"/metrics",
         [this](const httplib::Request&, httplib::Response& res) {
           res.set_content(metrics_text(), "text/plain; version=0.0.4; charset=utf-8");
         }},
    };
    Transport& t = *transport;
    for (const RouteSpec& route : kRoutes) {
      const auto it = serve.find(route.name);
      if (it == serve.end()) throw std::logic_error(std::string("HttpServer: no handler for route ") + route.name);
      httplib::Server::Handler h = handler(route_template(route), it->second);
      const std::string method = route.method;
      if (route.body != RouteBody::kNone) {
        // Routes with large bodies read them from the transport's buffer (request_body):
        // registered with a content reader they never call, httplib does not copy the body.
        t.Post(route.pattern, [h = std::move(h)](const httplib::Request& req, httplib::Response& res,
                                                 const httplib::ContentReader&) { h(req, res); });
      } else if (method == "GET") {
        t.Get(route.pattern, std::move(h));
      } else if (method == "DELETE") {
        t.Delete(route.pattern, std::move(h));
      } else {
        throw std::logic_error(std::string("HttpServer: route ") + route.name + " has no registration for " + method);
      }
    }

    if (!options.cors_origin.empty()) {
      // Preflights of the API (admit_head lets OPTIONS through when CORS is on).
      t.Options(R"(/v1/.*)", [this](const httplib::Request& req, httplib::Response& res) {
        res.status = 204;
        if (req.get_header_value("Origin") != options.cors_origin) return;
        res.set_header("Access-Control-Allow-Methods", "GET, POST, DELETE");
        res.set_header("Access-Control-Allow-Headers",
                       "Authorization, Content-Type, X-Veil-Key-Id, X-Veil-Key-Token, X-Request-Id");
        res.set_header("Access-Control-Max-Age", "600");
      });
      t.set_post_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
        if (req.get_header_value("Origin") != options.cors_origin) return;
        res.set_header("Access-Control-Allow-Origin", options.cors_origin);
        res.set_header("Vary", "Origin");
        res.set_header("Access-Control-Expose-Headers", "Location, X-Request-Id, X-Veil-Rows, X-Veil-Pbs, X-Veil-Run-Ms");
      });
    }

    // Bodies are judged before they are read by admit_head (the transport's admission), which
    // also answers "Expect: 100-continue".
    // Answers httplib gives by itself (no route, unparsable request, ...) get a JSON body too.
    t.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
      if (res.status == 404) {
        const RouteMatch route = match_route(req.path, req.method);
        if (route.spec != nullptr && req.method != route.method() &&
            !(req.method == "HEAD" && std::string(route.method()) == "GET")) {
          set_error(res, 405, "method_not_allowed", req.method + " is not allowed on " + route.route + ": use " + route.allow);
          res.set_header("Allow", route.allow);
          return httplib::Server::HandlerResponse::Handled;
        }
        set_error(res, 404, "not_found", "no route " + req.method + " " + req.path + " (see docs/api.md)");
        return httplib::Server::HandlerResponse::Handled;
      }
      const std::string code = res.status == 413 ? "body_too_large" : res.status == 414 ? "uri_too_long" : res.status == 400 ? "bad_request" : "error";
      set_error(res, res.status, code, "the request was refused by the HTTP layer (status " + std::to_string(res.status) + ")");
      return httplib::Server::HandlerResponse::Handled;
    }));
    t.set_exception_handler([this](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "unknown error";
      try {
        if (ep) std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      log({{"ts", iso8601_now()}, {"level", "error"}, {"msg", "unhandled exception"}, {"detail", what}});
      set_error(res, 500, "internal", what);
    });
  }

  void on_response(const RequestContext& ctx) {
    const double seconds = std::chrono::duration<double>(Clock::now() - ctx.start).count();
    // The method is the client's text: one series per method a client invents would grow the
    // metrics without bound (a fuzzing finding). Known methods keep their name.
    static constexpr std::string_view kMethods[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"};
    const bool known = std::find(std::begin(kMethods), std::end(kMethods), ctx.method) != std::end(kMethods);
    metrics.observe_request(ctx.route, known ? ctx.method : "other", ctx.status, seconds, ctx.bytes_in, ctx.bytes_out);
    if (!options.log_requests) return;
    json line{{"ts", iso8601_now()},   {"level", "info"},         {"msg", "request"},
              {"method", ctx.method},  {"path", ctx.path},        {"route", ctx.route},
              {"status", ctx.status},  {"bytes_in", ctx.bytes_in}, {"bytes_out", ctx.bytes_out},
              {"ms", std::round(seconds * 1e6) / 1e3}, {"remote", ctx.remote}};
    if (!ctx.key_id.empty()) line["key_id"] = ctx.key_id;
    if (!ctx.request_id.empty()) line["request_id"] = ctx.request_id;
    if (!ctx.error.empty()) line["error"] = ctx.error;
    log(line);
  }
};

HttpServer::HttpServer(HttpServerOptions options, std::shared_ptr<KeyStore> store) {
  check_options(options);
  if (!store) throw std::invalid_argument("HttpServer: no key store");
  impl_ = std::make_unique<Impl>(std::move(options), std::move(store));
  impl_->load_models();
  for (const auto& token : impl_->options.upload_tokens) impl_->upload_token_hashes.push_back(tfhe::sha256(token));
  const HttpServerOptions& o = impl_->options;
  TransportOptions t;
  t.read_timeout = o.read_timeout;
  t.write_timeout = o.write_timeout;
  t.header_timeout = o.header_timeout;
  t.request_read_timeout = o.request_read_timeout;
  t.keep_alive_timeout = o.keep_alive_timeout;
  t.keep_alive_max_requests = o.keep_alive_max_requests;
  // Requests waiting for a job slot hold a worker: keep some for everything else.
  t.worker_threads = std::max(o.worker_threads, o.max_jobs + o.max_queue + 8);
  t.max_connections = o.max_connections;
  t.max_header_bytes = o.max_header_bytes;
  t.max_buffered_body_bytes = o.max_buffered_body_bytes;
  t.drain_grace = o.drain_grace;
  t.drain_timeout = o.drain_timeout;
  t.tls_cert_file = o.tls_cert_file.string();
  t.tls_key_file = o.tls_key_file.string();
  Impl* impl = impl_.get();
  impl_->transport = std::make_unique<Transport>(
      t, [impl](const RequestContext& ctx) { impl->on_response(ctx); },
      [impl](const RequestHead& head) { return impl->admit_head(head); });
  impl_->transport->set_payload_max_length(
      static_cast<std::size_t>(std::max(impl_->options.max_key_bytes, impl_->options.max_input_bytes)));
  impl_->install_routes();
}

HttpServer::~HttpServer() {
  if (!impl_) return;
  stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

int HttpServer::bind(const std::string& host, int port) {
  if (port < 0 || port > 65535) throw std::invalid_argument("port " + std::to_string(port) + " is not in [0, 65535]");
  if (impl_->bound) throw std::logic_error("HttpServer::bind: already bound");
  const int bound = impl_->transport->bind_and_listen(host, port);
  if (bound < 0)
    throw std::runtime_error("cannot listen on " + host + ":" + std::to_string(port) + ": " +
                             (errno != 0 ? std::strerror(errno) : "bind failed"));
  impl_->bound = true;
  impl_->log({{"ts", iso8601_now()}, {"level", "info"}, {"msg", "listening"}, {"host", host}, {"port", bound},
              {"store", impl_->store->describe()}, {"models", impl_->models()->models.size()}});
  return bound;
}

void HttpServer::run() {
  if (!impl_->bound) throw std::logic_error("HttpServer::run: bind() first");
  std::thread expiry([impl = impl_.get()] { impl->expire_keys_until_stopped(); });
  std::vector<std::thread> runners;
  for (std::size_t i = 0; i < impl_->options.max_jobs; ++i)
    runners.emplace_back([impl = impl_.get()] { impl->run_jobs_until_stopped(); });
  const auto end_threads = [&] {
    impl_->stop_expiry();
    impl_->stop_jobs();
    expiry.join();
    for (auto& t : runners) t.join();
  };
  try {
    impl_->transport->run();
  } catch (...) {
    end_threads();
    throw;
  }
  end_threads();
  impl_->log({{"ts", iso8601_now()}, {"level", "info"}, {"msg", "stopped"}});
}

int HttpServer::start(const std::string& host, int port) {
  if (impl_->thread.joinable()) throw std::logic_error("HttpServer::start: already started");
  const int bound = bind(host, port);
  impl_->thread = std::thread([this] { run(); });
  return bound;
}

void HttpServer::stop() {
  impl_->gate.stop();
  impl_->transport->request_stop();
}

std::vector<ServedModel> HttpServer::models() const { return impl_->models()->served; }

ModelReload HttpServer::reload_models() { return impl_->reload_models(); }

std::string HttpServer::metrics_text() const { return impl_->metrics_text(); }

}  // namespace veil::server
