// The server's counters and histograms, rendered in the Prometheus text format (version
// 0.0.4) for GET /metrics. Metric names are listed in docs/api.md.
// Thread safety: every method may be called from any number of threads at once.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

namespace veil::server {

// Builds one exposition: HELP and TYPE once per family, then its samples.
class PrometheusWriter {
 public:
  // `labels` is the inside of {...}, already escaped (empty: none).
  void family(const std::string& name, const char* type, const char* help);
  void sample(const std::string& name, const std::string& labels, double value);
  void sample(const std::string& name, const std::string& labels, std::uint64_t value);
  // A family with one unlabelled sample.
  void single(const std::string& name, const char* type, const char* help, std::uint64_t value);
  const std::string& text() const { return out_; }

 private:
  void sample_prefix(const std::string& name, const std::string& labels);  // "name{labels} "
  std::string out_;
};

// key="value" with the value escaped as the format requires.
std::string prometheus_label(const char* key, const std::string& value);

// Upper bounds (seconds) of the latency histograms.
inline constexpr std::array<double, 16> kLatencyBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                           0.25,   0.5,   1,      2.5,   5,    10,   30,   120};

class Histogram {
 public:
  void observe(double value);
  // Writes name_bucket / name_sum / name_count samples with `labels` (may be empty).
  void write(PrometheusWriter& w, const std::string& name, const std::string& labels) const;

 private:
  std::array<std::uint64_t, kLatencyBuckets.size()> buckets_{};  // non-cumulative
  std::uint64_t count_ = 0;
  double sum_ = 0;
};

class ServerMetrics {
 public:
  void observe_request(const std::string& route, const std::string& method, int status, double seconds,
                       std::uint64_t bytes_in, std::uint64_t bytes_out);
  void observe_prediction(const std::string& model, std::uint64_t rows, std::int64_t pbs, double pbs_seconds,
                          double run_seconds);
  void observe_key_upload(const std::string& model, std::uint64_t bytes, double seconds);
  void observe_key_load(double seconds);

  // Appends the request, prediction and key families.
  void write(PrometheusWriter& w) const;

 private:
  struct ModelCounters {
    std::uint64_t predictions = 0;  // successful predict requests
    std::uint64_t rows = 0;
    std::uint64_t pbs = 0;
    double pbs_seconds = 0;
    double run_seconds = 0;
    std::uint64_t key_uploads = 0;
    std::uint64_t key_upload_bytes = 0;
    Histogram run_latency;
  };
  struct RouteCounters {
    Histogram latency;
    std::uint64_t bytes_in = 0;
    std::uint64_t bytes_out = 0;
  };

  mutable std::mutex mutex_;
  std::map<std::tuple<std::string, std::string, int>, std::uint64_t> requests_;  // route, method, status
  std::map<std::string, RouteCounters> routes_;
  std::map<std::string, ModelCounters> models_;
  Histogram key_upload_latency_;
  Histogram key_load_latency_;
};

}  // namespace veil::server
