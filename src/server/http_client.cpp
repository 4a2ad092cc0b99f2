// A client of the HTTP API (http_client.hpp).
#include "veil/server/http_client.hpp"

#include <httplib.h>
#include <openssl/rand.h>

#include <array>

#include <cctype>
#include <nlohmann/json.hpp>

#include "veil/server/key_store.hpp"

namespace veil::server {
namespace {

using json = nlohmann::json;

std::string describe_failure(httplib::Error e) {
  switch (e) {
    case httplib::Error::Connection:
      return "cannot connect";
    case httplib::Error::ConnectionTimeout:
      return "connection timed out";
    case httplib::Error::Read:
      return "no complete answer (read failed or timed out)";
    case httplib::Error::Write:
      return "the request could not be sent (write failed: the server may have refused the body)";
    case httplib::Error::SSLConnection:
      return "TLS handshake failed (is it an https server?)";
    case httplib::Error::SSLLoadingCerts:
      return "TLS: the CA certificates cannot be loaded";
    case httplib::Error::SSLServerVerification:
      return "TLS: the server's certificate cannot be verified against the trusted CAs";
    default:
      return httplib::to_string(e);
  }
}

RemoteModel remote_model(const json& j) {
  RemoteModel m;
  m.name = j.value("name", "");
  m.model_id = j.value("model_id", "");
  m.keys_required = j.value("keys_required", false);
  if (const auto files = j.find("files"); files != j.end() && files->is_object())
    for (const auto& [name, f] : files->items())
      if (f.is_object() && f.contains("sha256") && f["sha256"].is_string()) m.file_sha256[name] = f["sha256"].get<std::string>();
  m.json = j.dump();
  return m;
}

// "/v1/models/NAME..." with NAME percent-encoded.
std::string encode_segment(const std::string& s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace

HttpError::HttpError(int status, std::string error, std::string detail, std::optional<unsigned> retry_after)
    : veil::InputError("HTTP " + std::to_string(status) + (error.empty() ? "" : " " + error) +
                         (detail.empty() ? "" : ": " + detail)),
      status_(status),
      error_(std::move(error)),
      detail_(std::move(detail)),
      retry_after_(retry_after) {}

struct HttpClient::Impl {
  std::unique_ptr<httplib::Client> client;
  std::string prefix;  // path prefix of the base URL, without a trailing '/'
  std::string origin;
  std::string upload_token;

  httplib::Result check(httplib::Result r, const std::string& what, int expected) const {
    if (!r) throw std::runtime_error(what + " at " + origin + prefix + ": " + describe_failure(r.error()));
    if (r->status != expected) {
      std::string code, detail;
      try {
        const json j = json::parse(r->body);
        code = j.value("error", "");
        detail = j.value("detail", "");
      } catch (const std::exception&) {
        detail = r->body.substr(0, 200);
      }
      std::optional<unsigned> retry;
      if (r->has_header("Retry-After")) {
        try {
          retry = static_cast<unsigned>(std::stoul(r->get_header_value("Retry-After")));
        } catch (const std::exception&) {
        }
      }
      throw HttpError(r->status, code, what + ": " + (detail.empty() ? "(no detail)" : detail), retry);
    }
    return r;
  }
};

HttpClient::HttpClient(const std::string& base_url, const HttpClientOptions& options) : impl_(std::make_unique<Impl>()) {
  const auto scheme_end = base_url.find("://");
  if (scheme_end == std::string::npos)
    throw std::invalid_argument("URL '" + base_url + "' has no scheme: write http://HOST:PORT");
  const std::string scheme = base_url.substr(0, scheme_end);
  if (scheme != "http" && scheme != "https")
    throw std::invalid_argument("URL '" + base_url + "': scheme '" + scheme + "' is not http or https");
  const auto path_begin = base_url.find('/', scheme_end + 3);
  impl_->origin = base_url.substr(0, path_begin);
  if (impl_->origin.size() <= scheme_end + 3) throw std::invalid_argument("URL '" + base_url + "' has no host");
  if (path_begin != std::string::npos) impl_->prefix = base_url.substr(path_begin);
  while (!impl_->prefix.empty() && impl_->prefix.back() == '/') impl_->prefix.pop_back();
  impl_->client = std::make_unique<httplib::Client>(impl_->origin);
  if (!impl_->client->is_valid()) throw std::invalid_argument("URL '" + base_url + "' is not usable");
  impl_->client->set_connection_timeout(options.connect_timeout);
  impl_->client->set_read_timeout(options.read_timeout);
  impl_->client->set_write_timeout(options.write_timeout);
  impl_->client->set_keep_alive(true);
  if (scheme == "https") {
    impl_->client->enable_server_certificate_verification(true);
    if (!options.ca_cert_file.empty()) impl_->client->set_ca_cert_path(options.ca_cert_file);
  }
  impl_->upload_token = options.upload_token;
  impl_->client->set_tcp_nodelay(true);
  base_url_ = impl_->origin + impl_->prefix;
}

HttpClient::~HttpClient() = default;

std::vector<RemoteModel> HttpClient::list_models() {
  auto r = impl_->check(impl_->client->Get(impl_->prefix + "/v1/models"), "GET /v1/models", 200);
  std::vector<RemoteModel> out;
  try {
    const json list = json::parse(r->body);
    for (const auto& m : list.at("models")) out.push_back(remote_model(m));
  } catch (const json::exception& e) {
    throw std::runtime_error("GET /v1/models: the answer is not the expected JSON: " + std::string(e.what()));
  }
  return out;
}

RemoteModel HttpClient::model(const std::string& name) {
  const std::string path = "/v1/models/" + encode_segment(name);
  auto r = impl_->check(impl_->client->Get(impl_->prefix + path), "GET " + path, 200);
  try {
    return remote_model(json::parse(r->body));
  } catch (const json::exception& e) {
    throw std::runtime_error("GET " + path + ": the answer is not the expected JSON: " + std::string(e.what()));
  }
}

std::vector<std::uint8_t> HttpClient::fetch_file(const std::string& model, const std::string& file) {
  const std::string path = "/v1/models/" + encode_segment(model) + "/" + encode_segment(file);
  auto r = impl_->check(impl_->client->Get(impl_->prefix + path), "GET " + path, 200);
  return std::vector<std::uint8_t>(r->body.begin(), r->body.end());
}

std::string make_key_token() {
  std::array<std::uint8_t, 32> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1)
    throw std::runtime_error("make_key_token: the OS random generator failed");
  return tfhe::to_hex(bytes);
}

KeyGrant HttpClient::upload_keys(const std::string& model, std::span<const std::uint8_t> evaluation_keys) {
  return upload_keys(model, evaluation_keys, std::string());
}

KeyGrant HttpClient::upload_keys(const std::string& model, std::span<const std::uint8_t> evaluation_keys,
                                 const std::string& token) {
  const std::string path = "/v1/models/" + encode_segment(model) + "/keys";
  httplib::Headers headers;
  if (!token.empty()) headers.emplace("X-Veil-Key-Token", token);
  if (!impl_->upload_token.empty()) headers.emplace("Authorization", "Bearer " + impl_->upload_token);
  auto sent = impl_->client->Post(impl_->prefix + path, headers, reinterpret_cast<const char*>(evaluation_keys.data()),
                                  evaluation_keys.size(), "application/octet-stream");
  // 201: stored; 200: a repeated upload under the same token, already stored.
  const int expected = sent && sent->status == 200 && !token.empty() ? 200 : 201;
  auto r = impl_->check(std::move(sent), "POST " + path, expected);
  try {
    const json j = json::parse(r->body);
    return KeyGrant{j.at("key_id").get<std::string>(), j.at("token").get<std::string>()};
  } catch (const json::exception& e) {
    throw std::runtime_error("POST " + path + ": the answer is not the expected JSON: " + std::string(e.what()));
  }
}

std::vector<std::uint8_t> HttpClient::predict(const std::string& model, const KeyGrant* grant,
                                              std::span<const std::uint8_t> input_batch, PredictInfo* info,
                                              const std::string& request_id) {
  const std::string path = "/v1/models/" + encode_segment(model) + "/predict";
  httplib::Headers headers;
  if (!request_id.empty()) headers.emplace("X-Request-Id", request_id);
  if (grant != nullptr) {
    headers.emplace("X-Veil-Key-Id", grant->key_id);
    headers.emplace("Authorization", "Bearer " + grant->token);
  }
  auto r = impl_->check(
      impl_->client->Post(impl_->prefix + path, headers, reinterpret_cast<const char*>(input_batch.data()),
                          input_batch.size(), "application/octet-stream"),
      "POST " + path, 200);
  if (info != nullptr) {
    *info = PredictInfo{};
    try {
      if (r->has_header("X-Veil-Rows")) info->rows = std::stoull(r->get_header_value("X-Veil-Rows"));
      if (r->has_header("X-Veil-Pbs")) info->pbs = std::stoll(r->get_header_value("X-Veil-Pbs"));
      if (r->has_header("X-Veil-Run-Ms")) info->run_ms = std::stod(r->get_header_value("X-Veil-Run-Ms"));
    } catch (const std::exception&) {
    }
  }
  return std::vector<std::uint8_t>(r->body.begin(), r->body.end());
}

namespace {

httplib::Headers grant_headers(const KeyGrant* grant) {
  httplib::Headers headers;
  if (grant != nullptr) {
    headers.emplace("X-Veil-Key-Id", grant->key_id);
    headers.emplace("Authorization", "Bearer " + grant->token);
  }
  return headers;
}

void read_predict_info(const httplib::Response& r, PredictInfo* info) {
  if (info == nullptr) return;
  *info = PredictInfo{};
  try {
    if (r.has_header("X-Veil-Rows")) info->rows = std::stoull(r.get_header_value("X-Veil-Rows"));
    if (r.has_header("X-Veil-Pbs")) info->pbs = std::stoll(r.get_header_value("X-Veil-Pbs"));
    if (r.has_header("X-Veil-Run-Ms")) info->run_ms = std::stod(r.get_header_value("X-Veil-Run-Ms"));
  } catch (const std::exception&) {
  }
}

}  // namespace

std::string HttpClient::submit_predict(const std::string& model, const KeyGrant* grant,
                                       std::span<const std::uint8_t> input_batch, const std::string& request_id) {
  const std::string path = "/v1/models/" + encode_segment(model) + "/predict";
  httplib::Headers headers = grant_headers(grant);
  if (!request_id.empty()) headers.emplace("X-Request-Id", request_id);
  auto r = impl_->check(impl_->client->Post(impl_->prefix + path + "?mode=async", headers,
                                            reinterpret_cast<const char*>(input_batch.data()), input_batch.size(),
                                            "application/octet-stream"),
                        "POST " + path + "?mode=async", 202);
  try {
    return json::parse(r->body).at("job_id").get<std::string>();
  } catch (const json::exception& e) {
    throw std::runtime_error("POST " + path + "?mode=async: the answer is not the expected JSON: " + std::string(e.what()));
  }
}

std::optional<std::vector<std::uint8_t>> HttpClient::job_result(const std::string& job_id, const KeyGrant* grant,
                                                                PredictInfo* info) {
  const std::string path = "/v1/jobs/" + encode_segment(job_id);
  auto sent = impl_->client->Get(impl_->prefix + path, grant_headers(grant));
  if (sent && sent->status == 202) return std::nullopt;
  auto r = impl_->check(std::move(sent), "GET " + path, 200);
  read_predict_info(*r, info);
  return std::vector<std::uint8_t>(r->body.begin(), r->body.end());
}

void HttpClient::delete_job(const std::string& job_id, const KeyGrant* grant) {
  const std::string path = "/v1/jobs/" + encode_segment(job_id);
  impl_->check(impl_->client->Delete(impl_->prefix + path, grant_headers(grant)), "DELETE " + path, 204);
}

void HttpClient::delete_keys(const KeyGrant& grant) {
  const std::string path = "/v1/keys/" + encode_segment(grant.key_id);
  httplib::Headers headers{{"Authorization", "Bearer " + grant.token}};
  impl_->check(impl_->client->Delete(impl_->prefix + path, headers), "DELETE " + path, 204);
}

bool HttpClient::healthy() {
  auto r = impl_->client->Get(impl_->prefix + "/healthz");
  return r && r->status == 200;
}

}  // namespace veil::server
