// The inference server's HTTP API (docs/api.md is the reference): a directory of compiled
// models, a KeyStore of clients' evaluation keys and a KeyCache of their expanded form,
// behind cpp-httplib (kept out of this header).
//
//   GET    /v1/models                                  models, ids, input signatures
//   GET    /v1/models/{name}                           one of them
//   GET    /v1/models/{name}/client.zip                what a client needs to make keys
//   GET    /v1/models/{name}/serialized_processing.json
//   POST   /v1/models/{name}/keys                      evaluation keys -> {key_id, token}
//   POST   /v1/models/{name}/predict                   encrypted batch -> encrypted result
//   DELETE /v1/keys/{key_id}                           with its token
//   GET    /healthz, GET /metrics                      liveness, Prometheus text
//
// Models: every subdirectory of the models directory that holds client.zip, server.zip and
// serialized_processing.json is a model named after the subdirectory (or the directory
// itself is the one model when it holds the three files). They are loaded once, at
// construction; restart to add or replace one.
//
// Security: a key id (128 random bits) addresses an upload; the token (256 random bits)
// issued with it is the only way to use or delete it. The store keeps only the token's
// SHA-256, compared in constant time. An upload is parsed and expanded in full before it is
// stored, and refused if it is malformed or belongs to another model; the store's record
// carries the model id and predict checks it: a request is never run with the keys of
// another model, nor with keys whose token it does not hold.
//
// Resources: one reactor thread receives every request whole (head, then body) with a
// deadline per phase; an idle or slow client holds a descriptor, never a thread. A request
// is refused from its head alone, before its body is read: a body over its route's limit
// (413), an FHE request while every job slot is busy and the queue full or while draining
// (503 with Retry-After), an upload without the operator's upload token when one is
// configured (401), a path with no route (404). Bodies held in memory at once are bounded
// (max_buffered_body_bytes). Complete requests run on `worker_threads` threads; FHE work
// (key expansion and model runs) runs in at most `max_jobs` job slots with at most
// `max_queue` requests waiting -- more get 503 with Retry-After. The FHE executor already
// spreads one job over every core, so the default of one job slot does not oversubscribe
// the machine. A model run gives up between circuit steps when its client disconnects
// (logged 499) or past job_timeout (413: send fewer rows).
//
// Shutdown: stop() drains. The listener stays open, /healthz answers 503 "stopping", FHE
// routes answer 503, requests in flight finish; run() returns once none is left and
// drain_grace has passed, or after drain_timeout (running jobs then give up).
//
// Thread safety: stop() may be called from any thread (a signal-watching thread, a test);
// the other methods are for the owning thread. Everything a request touches is thread-safe.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "veil/server/key_cache.hpp"
#include "veil/server/key_store.hpp"

namespace veil::server {

struct HttpServerOptions {
  // Directory of model subdirectories (or one model's directory).
  std::filesystem::path models_dir;

  // The browser client's files (build/web: web_assets.hpp), served at /web/{file} with the
  // page at / and /models/{name}/. Empty: those routes answer 404 saying so.
  std::filesystem::path web_dir;
  // An origin (e.g. "https://app.example.com") whose pages may call the API from the
  // browser: its requests get CORS headers and preflights are answered. Empty (the default):
  // no CORS, only same-origin pages (the server's own) can use the API from a browser.
  std::string cors_origin;

  // Largest accepted body of POST .../keys and POST .../predict (413 beyond; the body is
  // not read). Keys are large (tens to hundreds of MiB for models with lookups), inputs small.
  std::uint64_t max_key_bytes = std::uint64_t{1} << 30;
  std::uint64_t max_input_bytes = std::uint64_t{64} << 20;

  // Threads processing complete requests. Requests waiting for an FHE job slot hold one, so
  // the server runs at least max_jobs + max_queue + 8.
  std::size_t worker_threads = 32;
  // Connections held at once (more are answered 503 at accept), the size of a request head
  // (431 beyond), and the request bodies held in memory at once, all connections together
  // (503 beyond; counted at their declared length).
  std::size_t max_connections = 10'000;
  std::size_t max_header_bytes = 64 << 10;
  std::uint64_t max_buffered_body_bytes = std::uint64_t{2} << 30;
  // FHE jobs running at once, and requests waiting for a job slot; a request that finds the
  // queue full, or waits longer than queue_timeout, gets 503 with Retry-After.
  std::size_t max_jobs = 1;
  std::size_t max_queue = 16;
  std::chrono::milliseconds queue_timeout{60'000};
  unsigned retry_after_seconds = 1;

  // Timeouts: a read or write making no progress; a request head from its first byte (and a
  // new connection's first byte); one whole request, head and body; an idle keep-alive
  // connection; one model run (413 beyond, checked between circuit steps).
  std::chrono::milliseconds read_timeout{30'000};
  std::chrono::milliseconds write_timeout{60'000};
  std::chrono::milliseconds header_timeout{10'000};
  std::chrono::milliseconds request_read_timeout{600'000};
  std::chrono::milliseconds keep_alive_timeout{5'000};
  std::size_t keep_alive_max_requests = 100;
  std::chrono::milliseconds job_timeout{600'000};
  // stop(): answer /healthz 503 for at least drain_grace (for load balancers to notice), and
  // wait at most drain_timeout for requests in flight.
  std::chrono::milliseconds drain_grace{0};
  std::chrono::milliseconds drain_timeout{30'000};

  // Per key id: predictions running or waiting at once, and predictions per second (a
  // token bucket holding up to `key_burst`); beyond either, 429 with Retry-After, so that one
  // client cannot take every job slot. 0: no limit.
  std::size_t max_requests_per_key = 4;
  double key_rate_per_second = 0;
  double key_burst = 10;
  // Bytes of evaluation keys the store may hold, all clients together (as uploaded); an
  // upload beyond it gets 507. 0: no limit.
  std::uint64_t max_store_bytes = 0;

  // Keys unused this long (by last_used_at, written at most every touch_interval) are
  // deleted from the store, checked every key_ttl / 10 (1 s to 60 s). 0: kept until deleted.
  std::chrono::seconds key_ttl{0};

  // When not empty, POST .../keys needs "Authorization: Bearer T" with T one of these
  // operator-issued upload tokens (401 otherwise, before the body is read).
  std::vector<std::string> upload_tokens;

  // PEM certificate chain and private key: serve HTTPS (TLS 1.2 or newer) when both are set.
  std::filesystem::path tls_cert_file, tls_key_file;

  // Asynchronous predictions (POST .../predict?mode=async, then GET and DELETE
  // /v1/jobs/{id}): jobs held at once (queued, running, or finished and not yet expired;
  // 503 beyond), the bytes of their inputs and answers held together (503 beyond), and how
  // long a finished job's answer is kept (404 after). Jobs live in this process's memory.
  std::size_t max_async_jobs = 64;
  std::uint64_t max_async_bytes = std::uint64_t{1} << 30;
  std::chrono::seconds async_result_ttl{600};
  // Prefix of this server's job ids ("r2-<32 hex digits>"), so that a load balancer can send
  // GET /v1/jobs/{id} to the replica that holds the job (deploy/nginx/). Letters, digits and
  // '_', at most 32; empty: ids without a prefix.
  std::string replica_id;

  // Byte budget of the cache of expanded evaluation keys.
  std::uint64_t key_cache_bytes = std::uint64_t{4} << 30;
  // last_used_at of a key is written at most this often (it is a store write).
  std::chrono::seconds touch_interval{60};

  // One line per request (JSON: time, method, path, route, status, bytes in and out, ms,
  // key id, remote address, error) and start-up notices. Empty: written to stderr.
  std::function<void(std::string_view line)> log;
  bool log_requests = true;

  // Called in the job slot before every FHE job (key expansion or model run), with the
  // model's name. For tests and tracing; may block (it then holds the slot).
  std::function<void(const std::string& model)> job_hook;
};

// What GET /v1/models says about a model.
struct ServedModel {
  std::string name;
  std::string model_id;  // 32 hex digits
  bool keys_required = false;
};

// What a reload of the models directory changed, by model name.
struct ModelReload {
  std::vector<std::string> added, replaced, removed, unchanged;
};

class HttpServer {
 public:
  // Loads every model of options.models_dir. Throws std::invalid_argument for options out
  // of range, deploy::DeployError (naming the file) for a model directory that cannot be
  // loaded, and std::runtime_error when the directory holds no model.
  // REQUIRES: store non-null.
  HttpServer(HttpServerOptions options, std::shared_ptr<KeyStore> store);
  // Stops, waiting for the requests in progress when the server runs on its own thread
  // (start()). REQUIRES: a run() called on a thread of yours has returned.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and listens on host:port; port 0 picks a free port. Returns the port. Throws
  // std::runtime_error naming the address when it cannot bind (the port is taken: no
  // SO_REUSEPORT sharing). Connections are queued by the kernel from here on, before run()
  // accepts them. REQUIRES: not bound yet.
  int bind(const std::string& host, int port);
  // Serves until stop() and its drain; queued FHE jobs get 503, running ones finish.
  // REQUIRES: bind() succeeded.
  void run();
  // bind + run on a thread of the server's own; returns the port once listening.
  int start(const std::string& host, int port);
  // Idempotent; returns at once (the thread of run() returns when requests are done).
  void stop();

  // The models served now (a copy: a reload may change them).
  std::vector<ServedModel> models() const;
  // Reads options.models_dir again and serves what it holds now: added model directories
  // are served, replaced ones (another compile, or other client files) serve the new
  // artifacts, removed ones answer 404. Requests in progress finish with the model they
  // started with; keys uploaded for a replaced compile are refused (409 key_model_mismatch).
  // All or nothing: when a model cannot be loaded (a half-copied directory, a corrupt zip)
  // it throws like the constructor and the models served stay as they were. Thread-safe;
  // `veil serve` calls it on SIGHUP.
  ModelReload reload_models();
  // The /metrics text.
  std::string metrics_text() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace veil::server
