// Prometheus text exposition of the server's counters (metrics.hpp).
#include "metrics.hpp"

#include <cmath>
#include <cstdio>

namespace veil::server {
namespace {

std::string format_double(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

std::string join_labels(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  if (b.empty()) return a;
  return a + "," + b;
}

}  // namespace

std::string prometheus_label(const char* key, const std::string& value) {
  std::string out = key;
  out += "=\"";
  for (const char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  out += '"';
  return out;
}

void PrometheusWriter::family(const std::string& name, const char* type, const char* help) {
  out_ += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

void PrometheusWriter::sample_prefix(const std::string& name, const std::string& labels) {
  out_ += name;
  if (!labels.empty()) {
    out_ += '{';
    out_ += labels;
    out_ += '}';
  }
  out_ += ' ';
}

void PrometheusWriter::sample(const std::string& name, const std::string& labels, double value) {
  sample_prefix(name, labels);
  out_ += format_double(value);
  out_ += '\n';
}

void PrometheusWriter::sample(const std::string& name, const std::string& labels, std::uint64_t value) {
  sample_prefix(name, labels);
  out_ += std::to_string(value);
  out_ += '\n';
}

void PrometheusWriter::single(const std::string& name, const char* type, const char* help, std::uint64_t value) {
  family(name, type, help);
  sample(name, "", value);
}

void Histogram::observe(double value) {
  for (std::size_t i = 0; i < kLatencyBuckets.size(); ++i) {
    if (value <= kLatencyBuckets[i]) {
      ++buckets_[i];
      break;
    }
  }
  ++count_;
  sum_ += value;
}

void Histogram::write(PrometheusWriter& w, const std::string& name, const std::string& labels) const {
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < kLatencyBuckets.size(); ++i) {
    cumulative += buckets_[i];
    w.sample(name + "_bucket", join_labels(labels, prometheus_label("le", format_double(kLatencyBuckets[i]))),
             cumulative);
  }
  w.sample(name + "_bucket", join_labels(labels, "le=\"+Inf\""), count_);
  w.sample(name + "_sum", labels, sum_);
  w.sample(name + "_count", labels, count_);
}

void ServerMetrics::observe_request(const std::string& route, const std::string& method, int status, double seconds,
                                    std::uint64_t bytes_in, std::uint64_t bytes_out) {
  std::lock_guard lock(mutex_);
  ++requests_[{route, method, status}];
  RouteCounters& r = routes_[route];
  r.latency.observe(seconds);
  r.bytes_in += bytes_in;
  r.bytes_out += bytes_out;
}

void ServerMetrics::observe_prediction(const std::string& model, std::uint64_t rows, std::int64_t pbs,
                                       double pbs_seconds, double run_seconds) {
  std::lock_guard lock(mutex_);
  ModelCounters& m = models_[model];
  ++m.predictions;
  m.rows += rows;
  m.pbs += static_cast<std::uint64_t>(pbs > 0 ? pbs : 0);
  m.pbs_seconds += pbs_seconds;
  m.run_seconds += run_seconds;
  m.run_latency.observe(run_seconds);
}

void ServerMetrics::observe_key_upload(const std::string& model, std::uint64_t bytes, double seconds) {
  std::lock_guard lock(mutex_);
  ModelCounters& m = models_[model];
  ++m.key_uploads;
  m.key_upload_bytes += bytes;
  key_upload_latency_.observe(seconds);
}

void ServerMetrics::observe_key_load(double seconds) {
  std::lock_guard lock(mutex_);
  key_load_latency_.observe(seconds);
}

void ServerMetrics::write(PrometheusWriter& w) const {
  std::lock_guard lock(mutex_);
  w.family("veil_http_requests_total", "counter", "HTTP requests answered, by route template, method and status.");
  for (const auto& [key, count] : requests_) {
    const auto& [route, method, status] = key;
    w.sample("veil_http_requests_total",
             prometheus_label("route", route) + "," + prometheus_label("method", method) + "," +
                 prometheus_label("status", std::to_string(status)),
             count);
  }
  w.family("veil_http_request_duration_seconds", "histogram",
           "Time from the first byte of a request to the last byte of its response, by route.");
  for (const auto& [route, r] : routes_) r.latency.write(w, "veil_http_request_duration_seconds", prometheus_label("route", route));
  w.family("veil_http_request_bytes_total", "counter", "Request body bytes received, by route.");
  for (const auto& [route, r] : routes_) w.sample("veil_http_request_bytes_total", prometheus_label("route", route), r.bytes_in);
  w.family("veil_http_response_bytes_total", "counter", "Response body bytes sent, by route.");
  for (const auto& [route, r] : routes_) w.sample("veil_http_response_bytes_total", prometheus_label("route", route), r.bytes_out);

  w.family("veil_predictions_total", "counter", "Successful predict requests, by model.");
  for (const auto& [model, m] : models_) w.sample("veil_predictions_total", prometheus_label("model", model), m.predictions);
  w.family("veil_predicted_rows_total", "counter", "Encrypted rows run, by model.");
  for (const auto& [model, m] : models_) w.sample("veil_predicted_rows_total", prometheus_label("model", model), m.rows);
  w.family("veil_pbs_total", "counter", "Programmable bootstrappings (KS-PBS) performed, by model.");
  for (const auto& [model, m] : models_) w.sample("veil_pbs_total", prometheus_label("model", model), m.pbs);
  w.family("veil_pbs_seconds_total", "counter", "Wall time spent in batch KS-PBS, by model.");
  for (const auto& [model, m] : models_) w.sample("veil_pbs_seconds_total", prometheus_label("model", model), m.pbs_seconds);
  w.family("veil_fhe_run_duration_seconds", "histogram", "Time of one model run on an encrypted batch, by model.");
  for (const auto& [model, m] : models_) m.run_latency.write(w, "veil_fhe_run_duration_seconds", prometheus_label("model", model));

  w.family("veil_key_uploads_total", "counter", "Evaluation-key uploads stored, by model.");
  for (const auto& [model, m] : models_) w.sample("veil_key_uploads_total", prometheus_label("model", model), m.key_uploads);
  w.family("veil_key_upload_bytes_total", "counter", "Bytes of evaluation keys stored, by model.");
  for (const auto& [model, m] : models_) w.sample("veil_key_upload_bytes_total", prometheus_label("model", model), m.key_upload_bytes);
  w.family("veil_key_upload_duration_seconds", "histogram",
           "Time to validate, expand and store one upload (body already received).");
  key_upload_latency_.write(w, "veil_key_upload_duration_seconds", "");
  w.family("veil_key_load_duration_seconds", "histogram",
           "Time to fetch a key set from the store and expand it, on a key-cache miss.");
  key_load_latency_.write(w, "veil_key_load_duration_seconds", "");
}

}  // namespace veil::server
