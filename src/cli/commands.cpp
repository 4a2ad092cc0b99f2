// The subcommands (commands.hpp).
#include "commands.hpp"

#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <sstream>

#include "veil/deploy/envelope.hpp"
#include "veil/deploy/model.hpp"

namespace veil::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

void write_bytes(const std::string& path, std::span<const std::uint8_t> bytes) {
  deploy::write_file_atomic(path, bytes, 0644);
}

// One line on how answers travel: packed or not, a row's bytes each way, the key's cost.
std::string answer_packing_line(const circuit::AnswerPacking& p) {
  char line[512];
  if (p.packed)
    std::snprintf(line, sizeof line,
                  "  answers: packed, %llu bytes a row instead of %llu (packing key %.2f MB of the evaluation keys, repaid "
                  "after %.1f rows)\n",
                  static_cast<unsigned long long>(p.packed_bytes), static_cast<unsigned long long>(p.unpacked_bytes),
                  static_cast<double>(p.key_bytes) / 1e6, p.break_even_rows());
  else if (p.packed_bytes != 0)
    std::snprintf(line, sizeof line,
                  "  answers: not packed (%s), %llu bytes a row (packed: %llu, with a %.2f MB key repaid after %.1f rows)\n",
                  p.reason.c_str(), static_cast<unsigned long long>(p.unpacked_bytes),
                  static_cast<unsigned long long>(p.packed_bytes), static_cast<double>(p.key_bytes) / 1e6, p.break_even_rows());
  else
    std::snprintf(line, sizeof line, "  answers: not packed (%s), %llu bytes a row\n", p.reason.c_str(),
                  static_cast<unsigned long long>(p.unpacked_bytes));
  return line;
}

// The evaluation keys' size, in the unit of --max-key-mb, before any key exists.
std::string evaluation_keys_line(const deploy::ModelDev& dev) {
  const circuit::CompiledCircuit& cc = dev.compiled();
  if (!cc.uses_bootstrapping) return "  evaluation keys: none (levelled circuit)\n";
  char line[160];
  std::snprintf(line, sizeof line, "  evaluation keys: %.2f MB, sent once per client (--max-key-mb bounds it)\n",
                static_cast<double>(deploy::evaluation_keys_envelope_bytes(cc.params, true)) / 1e6);
  return line;
}

}  // namespace

std::string human_bytes(std::uint64_t b) {
  char buf[32];
  if (b >= (1u << 30)) std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(b) / (1u << 30));
  else if (b >= (1u << 20)) std::snprintf(buf, sizeof buf, "%.2f MiB", static_cast<double>(b) / (1u << 20));
  else if (b >= 1024) std::snprintf(buf, sizeof buf, "%.1f KiB", static_cast<double>(b) / 1024);
  else std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(b));
  return buf;
}

int compile(const CompileArgs& a) {
  deploy::DevOptions o;
  if (a.n_bits) {
    const unsigned b = *a.n_bits;
    o.quantization.linear_input_bits = o.quantization.linear_weight_bits = b;
    o.quantization.tree_input_bits = b;
    o.quantization.knn_input_bits = b;
    o.quantization.network_input_bits = o.quantization.network_weight_bits = o.quantization.network_activation_bits = b;
  }
  if (a.lookup_bits) o.quantization.lookup_precision = *a.lookup_bits;
  if (a.auto_tree_bits) o.quantization.tree_input_bits = 0;
  if (a.exact_tree_comparisons) o.quantization.tree_comparison_neighbour_log2 = 0;
  if (a.exact_network_reads) {
    o.quantization.network_neighbour_log2 = 0;
    o.quantization.knn_exact_distances = true;
  }
  if (a.p_error) o.compile.p_error = *a.p_error;
  if (a.global_p_error) o.compile.global_p_error = *a.global_p_error;
  if (a.max_key_mb) o.compile.search.max_key_bytes = static_cast<std::uint64_t>(*a.max_key_mb * 1e6);
  if (a.answer_packing != "auto") o.pack_answers = a.answer_packing == "on";
  const auto t0 = Clock::now();
  const deploy::ModelDev dev = deploy::ModelDev::compile_files(a.model, a.calibration, o);
  dev.save(a.out, {.overwrite = a.force});
  std::cout << "compiled " << a.model << " in " << seconds_since(t0) << " s: model " << deploy::model_id_hex(dev.model_id())
            << "\n"
            << dev.statistics() << evaluation_keys_line(dev) << answer_packing_line(dev.answer_packing()) << "wrote " << (fs::path(a.out) / deploy::kClientZip).string() << ", "
            << (fs::path(a.out) / deploy::kServerZip).string() << ", "
            << (fs::path(a.out) / deploy::kProcessingJson).string() << "\n";
  return 0;
}

deploy::Progress progress_printer(const std::string& prefix) {
  auto last = std::make_shared<std::pair<std::string, int>>("", -1);
  return [prefix, last](const std::string& step, double f) {
    const int tenth = static_cast<int>(f * 10);
    if (step == last->first && tenth == last->second) return;
    *last = {step, tenth};
    std::cerr << prefix << ": " << step << " (" << static_cast<int>(f * 100) << "%)\n";
  };
}

int keygen(const KeygenArgs& a) {
  deploy::ModelClient client = deploy::ModelClient::load(a.client);
  const auto t0 = Clock::now();
  deploy::KeyGenOptions options;
  options.replace_existing = a.force;
  options.progress = progress_printer("keygen");
  const deploy::KeySizes sizes = client.generate_keys(a.keys, options);
  std::cout << "keys for model " << deploy::model_id_hex(client.model_id()) << " in " << a.keys << " ("
            << seconds_since(t0) << " s)\n"
            << "  secret key (stays here, mode 0600): " << human_bytes(sizes.secret_key_bytes) << "\n"
            << "  evaluation keys (send to the server): " << human_bytes(sizes.evaluation_keys_bytes)
            << (client.specs().signature.uses_bootstrapping ? "" : " (levelled-only model: no keys needed)") << "\n";
  return 0;
}

int encrypt(const EncryptArgs& a) {
  deploy::ModelClient client = deploy::ModelClient::load(a.client);
  client.load_keys(a.keys);
  const ml::Matrix rows = ml::load_matrix(a.input);
  const auto t0 = Clock::now();
  const deploy::Bytes batch = client.quantize_encrypt_serialize(rows);
  write_bytes(a.out, batch);
  std::cout << "encrypted " << rows.rows << " rows in " << seconds_since(t0) << " s: " << a.out << " ("
            << human_bytes(batch.size()) << ")\n";
  return 0;
}

int run(const RunArgs& a) {
  const deploy::ModelServer server = deploy::ModelServer::load(a.server);
  const auto t0 = Clock::now();
  const auto keys = server.load_evaluation_keys(deploy::read_file(a.evaluation_keys, deploy::kMaxKeyEnvelopeBytes));
  const double key_seconds = seconds_since(t0);
  deploy::RunStats stats;
  const deploy::Bytes out = server.run(deploy::read_file(a.input, deploy::kMaxBatchEnvelopeBytes), keys.get(), &stats);
  write_bytes(a.out, out);
  std::cout << "ran " << stats.rows << " rows in " << stats.total_seconds << " s (" << stats.pbs << " PBS, "
            << stats.pbs_seconds << " s in PBS; keys loaded in " << key_seconds << " s): " << a.out << " ("
            << human_bytes(out.size()) << ")\n";
  return 0;
}

std::string predictions_csv(const std::vector<long long>& labels, const std::vector<double>& values,
                            const std::vector<std::vector<double>>& scores, const std::vector<long long>& classes,
                            bool classification) {
  std::ostringstream out;
  out.precision(9);
  if (classification) {
    out << "label";
    for (std::size_t c = 0; c < (scores.empty() ? 0 : scores[0].size()); ++c)
      out << ",score_" << (c < classes.size() ? std::to_string(classes[c]) : std::to_string(c));
    out << "\n";
    for (std::size_t r = 0; r < labels.size(); ++r) {
      out << labels[r];
      if (r < scores.size())
        for (double s : scores[r]) out << "," << s;
      out << "\n";
    }
  } else if (scores.empty() || scores[0].size() <= 1) {
    out << "value\n";
    for (double v : values) out << v << "\n";
  } else {  // several targets: one column each
    for (std::size_t k = 0; k < scores[0].size(); ++k) out << (k ? "," : "") << "value_" << k;
    out << "\n";
    for (const auto& row : scores) {
      for (std::size_t k = 0; k < row.size(); ++k) out << (k ? "," : "") << row[k];
      out << "\n";
    }
  }
  return out.str();
}

namespace {

void write_predictions(const deploy::ModelClient& client, const ml::Predictions& p, const std::string& path) {
  std::vector<long long> labels(p.labels.begin(), p.labels.end());
  std::vector<std::vector<double>> scores;
  for (std::size_t r = 0; r < p.scores.rows; ++r) {
    const auto row = p.scores.row(r);
    scores.emplace_back(row.begin(), row.end());
  }
  const auto& classes = client.processing().classes;
  const bool classification = client.processing().task == ml::Task::kClassification;
  const std::string csv = predictions_csv(labels, p.values, scores, std::vector<long long>(classes.begin(), classes.end()),
                                          classification);
  deploy::write_file_atomic(path, std::span(reinterpret_cast<const std::uint8_t*>(csv.data()), csv.size()), 0644);
}

}  // namespace

int simulate(const SimulateArgs& a) {
  const deploy::ModelClient client = deploy::ModelClient::load(a.artifacts);
  const deploy::ModelServer server = deploy::ModelServer::load(a.artifacts);
  if (server.model_id() != client.model_id())
    throw deploy::DeployError(a.artifacts + ": server.zip and client.zip belong to different compiles");
  const ml::Matrix rows = ml::load_matrix(a.input);
  if (rows.cols != client.processing().n_features)
    throw std::invalid_argument(a.input + " has " + std::to_string(rows.cols) + " columns, the model expects " +
                                std::to_string(client.processing().n_features) + " features");
  const ml::QuantizedModel model{server.compiled().circuit, client.processing()};
  const ml::Predictions p =
      a.fhe_noise ? ml::predict_simulated(model, server.compiled(), rows, a.seed) : ml::predict_clear(model, rows);
  write_predictions(client, p, a.out);
  std::cout << "simulated " << rows.rows << " rows in the clear (quantized"
            << (a.fhe_noise ? ", approximate reads drawn with FHE's noise, seed " + std::to_string(a.seed) : std::string{})
            << "): " << a.out << "\n";
  return 0;
}

int decrypt(const DecryptArgs& a) {
  deploy::ModelClient client = deploy::ModelClient::load(a.client);
  client.load_keys(a.keys);
  const ml::Predictions p = client.deserialize_decrypt_dequantize(deploy::read_file(a.input, deploy::kMaxBatchEnvelopeBytes));
  write_predictions(client, p, a.out);
  const bool classification = client.processing().task == ml::Task::kClassification;
  std::cout << "decrypted " << (classification ? p.labels.size() : p.values.size()) << " predictions: " << a.out << "\n";
  return 0;
}

int inspect(const InspectArgs& a) {
  std::optional<fs::path> dir;
  if (a.artifacts) dir = fs::path(*a.artifacts);
  std::cout << deploy::inspect_file(a.file, dir);
  return 0;
}

}  // namespace veil::cli
