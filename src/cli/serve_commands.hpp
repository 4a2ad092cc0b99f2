// `veil serve` (the HTTP inference server) and `veil predict` (its client: fetch the client
// files, make and upload keys once, encrypt, send in batches, decrypt). Built when the server
// layer is (main.cpp, VEIL_HAVE_SERVER). Errors are thrown and reported by main as one line.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <optional>
#include <string>

namespace veil::cli {

struct ServeArgs {
  std::string models;
  std::string listen = "127.0.0.1:8080";
  std::string store = "sqlite:veil-keys.db";
  std::string max_key_bytes = "1GiB";
  std::string max_input_bytes = "64MiB";
  std::string cache_bytes = "4GiB";
  std::size_t workers = 32;
  std::size_t max_jobs = 1;
  std::size_t queue = 16;
  double queue_timeout = 60;     // seconds
  double read_timeout = 30;      // seconds
  double request_timeout = 600;  // seconds to receive one whole request
  double header_timeout = 10;    // seconds to receive a request head
  double job_timeout = 600;      // seconds one model run may take
  double drain_grace = 0;        // seconds /healthz says "stopping" before exit
  double drain_timeout = 30;     // seconds to wait for requests in flight on stop
  std::size_t max_connections = 10'000;
  std::size_t max_requests_per_key = 4;     // predictions in progress per key id (0: no limit)
  double key_rate = 0;                      // predictions per second per key id (0: no limit)
  std::string max_store_bytes = "0";        // evaluation-key bytes in the store (0: no limit)
  double key_ttl = 0;                       // seconds unused before keys are deleted; 0: never
  std::string max_buffered_bytes = "2GiB";  // request bodies in memory at once
  std::string upload_token_file;            // one operator-issued upload token per line
  std::size_t max_async_jobs = 64;          // asynchronous jobs held at once
  std::string max_async_bytes = "1GiB";     // their inputs and answers, together
  double async_result_ttl = 600;            // seconds a finished job's answer is kept
  std::string replica_id;                   // prefix of job ids, for routing GET /v1/jobs/{id}
  std::string tls_cert, tls_key;            // PEM files: serve HTTPS
  std::string web;                          // the browser client's files (build/web); "none": no page
  std::string cors_origin;                  // an origin allowed to call the API from its pages
  bool quiet = false;                       // no per-request log lines
};
int serve(const ServeArgs& a);

struct PredictArgs {
  std::string url, model, keys, input, out;
  std::size_t batch_size = 32;
  unsigned retries = 30;  // on 503 (server busy), waiting Retry-After each time
  bool delete_keys = false;
  bool async_jobs = false;  // submit each batch as an asynchronous job and poll for it
  std::string ca_cert;            // PEM file of the CA that signed the server's certificate
  std::string upload_token_file;  // the operator's upload token, when the server needs one
};
int predict(const PredictArgs& a);

// `veil loadtest` (loadtest_command.cpp): concurrent clients, each with its own keys, against a
// server on loopback; every answer checked against the clear model, faults retried.
struct LoadtestArgs {
  std::string url, model, artifacts, input;
  std::size_t clients = 4;
  std::size_t requests = 10;   // per client
  std::size_t batch_size = 1;  // rows per request
  unsigned retries = 30;       // per request: no answer, 5xx, 429
  double timeout = 600;        // seconds for one answer
  bool json = false;
};
int loadtest(const LoadtestArgs& a);
void add_loadtest_command(CLI::App& app);

// "1048576", "64KiB", "64MiB", "1GiB" (K/M/G = KiB/MiB/GiB; KB/MB/GB = powers of 1000).
// Throws std::invalid_argument naming the option.
std::uint64_t parse_byte_size(const std::string& text, const std::string& option);
// "HOST:PORT" or "[IPv6]:PORT". Throws std::invalid_argument.
std::pair<std::string, int> parse_listen_address(const std::string& text);

void add_serve_commands(CLI::App& app);

}  // namespace veil::cli
