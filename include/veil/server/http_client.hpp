// A client of the inference server's HTTP API (docs/api.md): list models, fetch the client
// files, upload evaluation keys, run predictions, delete keys. Bytes in, bytes out: making
// keys and ciphertexts is deploy::ModelClient's job; `veil predict` joins the two.
//
// Errors: HttpError for an answer other than success (status, the server's "error" code and
// "detail"), std::runtime_error when no answer came (cannot connect, timeout, connection
// lost), std::invalid_argument for a malformed URL.
// Thread safety: one HttpClient per thread (each keeps one connection, reused while the
// server keeps it alive). cpp-httplib writes without MSG_NOSIGNAL: a program using this
// should ignore SIGPIPE (`veil predict` does), or a server closing the connection mid-upload
// ends it.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "veil/error.hpp"

namespace veil::server {

class HttpError : public veil::InputError {
 public:
  HttpError(int status, std::string error, std::string detail, std::optional<unsigned> retry_after);
  int status() const { return status_; }
  // The server's machine-readable code ("unknown_key", "overloaded", ...; empty when the
  // body was not a Veil JSON error) and its explanation.
  const std::string& error() const { return error_; }
  const std::string& detail() const { return detail_; }
  // Seconds, from a Retry-After header (503).
  std::optional<unsigned> retry_after() const { return retry_after_; }

 private:
  int status_;
  std::string error_, detail_;
  std::optional<unsigned> retry_after_;
};

struct HttpClientOptions {
  std::chrono::milliseconds connect_timeout{10'000};
  // A prediction of a large batch on a model with lookups takes minutes.
  std::chrono::milliseconds read_timeout{3'600'000};
  std::chrono::milliseconds write_timeout{600'000};
  // https:// URLs: the server's certificate is verified against this PEM CA file, or the
  // system's CAs when empty; the host name must match.
  std::string ca_cert_file;
  // Sent as "Authorization: Bearer" with key uploads to a server that needs an upload token.
  std::string upload_token;
};

// What the server issued for an upload: the key id and the token that guards it.
struct KeyGrant {
  std::string key_id;
  std::string token;
};

// What the server said about one prediction (its X-Veil-* headers).
struct PredictInfo {
  std::uint64_t rows = 0;
  std::int64_t pbs = 0;
  double run_ms = 0;  // the model run on the server, without queueing, keys and transfer
};

// One entry of GET /v1/models.
struct RemoteModel {
  std::string name;
  std::string model_id;
  bool keys_required = false;
  // The SHA-256 (hex) the server publishes for each client file, by file name ("client.zip",
  // "serialized_processing.json"); empty when the server did not say.
  std::map<std::string, std::string> file_sha256;
  std::string json;  // the whole entry, as the server wrote it
};

// 256 random bits from the OS as 64 lowercase hex digits: a token for upload_keys.
std::string make_key_token();

class HttpClient {
 public:
  // base_url: "http://host:port" (or https://; a path prefix is kept: "http://h/veil").
  explicit HttpClient(const std::string& base_url, const HttpClientOptions& options = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  std::vector<RemoteModel> list_models();
  RemoteModel model(const std::string& name);
  // "client.zip" or "serialized_processing.json" of a model.
  std::vector<std::uint8_t> fetch_file(const std::string& model, const std::string& file);
  KeyGrant upload_keys(const std::string& model, std::span<const std::uint8_t> evaluation_keys);
  // With a token of the client's choosing (64 lowercase hex digits, from a CSPRNG; see
  // make_key_token): the server derives the key id from it, so repeating an upload whose
  // answer was lost returns the same key id instead of storing the keys twice.
  KeyGrant upload_keys(const std::string& model, std::span<const std::uint8_t> evaluation_keys, const std::string& token);
  // The output batch. `grant` may be null for a model that needs no keys. A non-empty
  // `request_id` (1 to 128 of [A-Za-z0-9._:-]) is sent as X-Request-Id: the same id on each
  // retry of one request lets the server's and the load balancer's logs join the attempts.
  std::vector<std::uint8_t> predict(const std::string& model, const KeyGrant* grant,
                                    std::span<const std::uint8_t> input_batch, PredictInfo* info = nullptr,
                                    const std::string& request_id = {});
  // An asynchronous prediction (POST .../predict?mode=async): the id of the job the server
  // queued. Refusals are those of predict.
  std::string submit_predict(const std::string& model, const KeyGrant* grant, std::span<const std::uint8_t> input_batch,
                             const std::string& request_id = {});
  // GET /v1/jobs/{id}: the output batch once the job is done, nullopt while it is queued or
  // running (202). A job that failed throws the HttpError its synchronous request would
  // have; one the server no longer holds, 404 "unknown_job" (submit the inputs again).
  std::optional<std::vector<std::uint8_t>> job_result(const std::string& job_id, const KeyGrant* grant,
                                                      PredictInfo* info = nullptr);
  // DELETE /v1/jobs/{id}: cancels a queued or running job, or drops a finished one's answer.
  void delete_job(const std::string& job_id, const KeyGrant* grant);
  void delete_keys(const KeyGrant& grant);
  bool healthy();

  const std::string& base_url() const { return base_url_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string base_url_;
};

}  // namespace veil::server
