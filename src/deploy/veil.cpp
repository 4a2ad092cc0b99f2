// The public API (veil/veil.hpp) over the deploy layer: each handle owns an Impl that holds the
// deploy objects through shared_ptr, so copies share immutable state.
#include "veil/veil.hpp"

#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "veil/deploy/model.hpp"
#include "veil/ml/importers.hpp"
#include "veil/tfhe/csprng.hpp"

namespace veil {
namespace {

namespace fs = std::filesystem;

std::size_t product(std::span<const std::size_t> dims, const char* what) {
  std::size_t n = 1;
  for (const std::size_t d : dims) {
    if (d != 0 && n > static_cast<std::size_t>(-1) / d) throw std::invalid_argument(std::string(what) + ": the shape overflows");
    n *= d;
  }
  return n;
}

// "(1, 8, 8)", "(30,)"; with `batch`, "(N, 1, 8, 8)", "(N, 30)".
std::string shape_text(std::span<const std::size_t> shape, bool batch = false) {
  std::string s = batch ? "(N" : "(";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i || batch ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 && !batch ? ",)" : ")");
}

// Rows for the ml layer: one row per sample, the sample flattened row-major. `sample` is one
// sample's shape as the model takes it (empty: any width, for calibration sets); an array of
// exactly that shape is one sample without its batch dimension.
ml::Matrix to_matrix(const Array& a, std::span<const std::size_t> sample) {
  if (a.shape.empty()) throw std::invalid_argument("rows: an array without a shape");
  if (a.values.size() != product(a.shape, "rows"))
    throw std::invalid_argument("rows: " + std::to_string(a.values.size()) + " values for a shape holding " +
                                std::to_string(product(a.shape, "rows")));
  const std::size_t n_features = sample.empty() ? 0 : product(sample, "model input");
  const bool one_sample = !sample.empty() && a.shape.size() == sample.size() && a.shape.size() > 1 &&
                          std::equal(a.shape.begin(), a.shape.end(), sample.begin());
  ml::Matrix m;
  m.rows = one_sample ? 1 : a.rows();
  m.cols = one_sample ? n_features : a.row_size();
  if (n_features != 0 && m.cols != n_features)
    throw std::invalid_argument("rows of shape " + shape_text(a.shape) + " hold " + std::to_string(m.cols) +
                                " values per sample; the model takes samples of shape " + shape_text(sample) + " (" +
                                std::to_string(n_features) + " values): give " + shape_text(sample, true));
  m.data = a.values;
  if (!one_sample && a.shape.size() > 2) m.sample_shape.assign(a.shape.begin() + 1, a.shape.end());
  return m;
}

// One sample's shape as the model takes it: the circuit input's shape without its leading
// batch dimension of 1 (a flat model: (n_features,)).
std::vector<std::size_t> sample_shape(const ml::Processing& p) {
  std::vector<std::size_t> shape(p.input_shape.begin(), p.input_shape.end());
  if (shape.size() > 1 && shape.front() == 1) shape.erase(shape.begin());
  if (product(shape, "model input") != p.n_features) shape = {p.n_features};
  return shape;
}

Array from_matrix(const ml::Matrix& m) {
  return Array::matrix(m.rows, m.cols, m.data);
}

Predictions to_predictions(Task task, const ml::Predictions& p) {
  Predictions out;
  out.task = task;
  out.labels = p.labels;
  // A regressor's scores are its outputs (one column for a single target).
  (task == Task::kClassification ? out.scores : out.values) = from_matrix(p.scores);
  return out;
}

Task task_of(const ml::Processing& p) {
  return p.task == ml::Task::kClassification ? Task::kClassification : Task::kRegression;
}

Statistics to_statistics(const circuit::CircuitStatistics& s, const tfhe::ParameterSet& params, bool uses_bootstrapping) {
  Statistics out;
  out.evaluation_key_bytes = deploy::evaluation_keys_envelope_bytes(params, uses_bootstrapping);
  out.total_pbs = s.total_pbs;
  for (const auto& [precision, pbs] : s.lookups_by_precision) out.pbs_by_precision.push_back({precision, pbs});
  out.levelled_ops = s.levelled_ops;
  out.pbs_depth = s.pbs_depth;
  out.predicted_p_error = s.predicted_p_error.value_or(0.0);
  out.parameters = s.parameters;
  out.warnings = s.warnings;
  out.text = s.to_string();
  return out;
}

deploy::DevOptions dev_options(const CompileOptions& o) {
  deploy::DevOptions d;
  if (o.n_bits != 0) {
    if (o.n_bits < 2 || o.n_bits > 8) throw std::invalid_argument("CompileOptions::n_bits " + std::to_string(o.n_bits) + " is outside [2, 8]");
    auto& q = d.quantization;
    q.linear_input_bits = q.linear_weight_bits = o.n_bits;
    q.tree_input_bits = o.n_bits;
    q.knn_input_bits = o.n_bits;
    q.network_input_bits = q.network_weight_bits = q.network_activation_bits = o.n_bits;
  }
  if (o.lookup_bits != 0) {
    if (o.lookup_bits < 2 || o.lookup_bits > 8)
      throw std::invalid_argument("CompileOptions::lookup_bits " + std::to_string(o.lookup_bits) + " is outside [2, 8]");
    d.quantization.lookup_precision = o.lookup_bits;
  }
  if (o.exact_tree_comparisons) d.quantization.tree_comparison_neighbour_log2 = 0;
  if (o.exact_network_reads) {
    d.quantization.network_neighbour_log2 = 0;
    d.quantization.knn_exact_distances = true;
  }
  if (!(o.p_error > 0 && o.p_error < 0.5)) throw std::invalid_argument("CompileOptions::p_error must be in (0, 0.5)");
  d.compile.p_error = o.p_error;
  if (o.global_p_error != 0) {
    if (!(o.global_p_error > 0 && o.global_p_error < 0.5))
      throw std::invalid_argument("CompileOptions::global_p_error must be in (0, 0.5), or 0 for none");
    d.compile.global_p_error = o.global_p_error;
  }
  return d;
}

std::string hex_id(const deploy::ModelId& id) { return deploy::model_id_hex(id); }

}  // namespace

// The special members of a handle: copies share the Impl's shared state; a moved-from
// handle holds no Impl, and any use but destruction or assignment is a logic error.
#define VEIL_HANDLE_MEMBERS(Class)                                                                        \
  Class::Class(Impl* impl) : impl_(impl) {}                                                               \
  Class::~Class() { delete impl_; }                                                                       \
  Class::Class(const Class& other) : impl_(new Impl(other.self())) {}                                    \
  Class& Class::operator=(const Class& other) {                                                           \
    if (this != &other) {                                                                                 \
      Impl* copy = new Impl(other.self());                                                                \
      delete impl_;                                                                                       \
      impl_ = copy;                                                                                       \
    }                                                                                                     \
    return *this;                                                                                         \
  }                                                                                                       \
  Class::Class(Class&& other) noexcept : impl_(std::exchange(other.impl_, nullptr)) {}                   \
  Class& Class::operator=(Class&& other) noexcept {                                                       \
    std::swap(impl_, other.impl_);                                                                        \
    return *this;                                                                                         \
  }                                                                                                       \
  Class::Impl& Class::self() const {                                                                      \
    if (impl_ == nullptr) throw std::logic_error("veil::" #Class ": used after it was moved from");       \
    return *impl_;                                                                                        \
  }

// ---------------------------------------------------------------- Array

Array::Array(std::vector<std::size_t> s, std::vector<double> v) : shape(std::move(s)), values(std::move(v)) {
  if (values.size() != product(shape, "Array"))
    throw std::invalid_argument("Array: " + std::to_string(values.size()) + " values for a shape holding " +
                                std::to_string(product(shape, "Array")));
}

Array Array::matrix(std::size_t rows, std::size_t cols, std::vector<double> values) {
  return Array({rows, cols}, std::move(values));
}

Array Array::load(const std::string& path) {
  const ml::Matrix m = ml::load_matrix(path);
  std::vector<std::size_t> shape{m.rows};
  if (m.sample_shape.empty()) shape.push_back(m.cols);
  else shape.insert(shape.end(), m.sample_shape.begin(), m.sample_shape.end());
  return Array(std::move(shape), m.data);
}

std::size_t Array::row_size() const {
  return shape.size() <= 1 ? 1 : product(std::span(shape).subspan(1), "Array");
}

// ---------------------------------------------------------------- CompiledModel

// What an execute-mode predict keeps between calls: one key set, made on first use.
struct Execution {
  std::mutex mutex;
  std::optional<deploy::ModelClient> client;
  std::optional<deploy::ModelServer> server;
  std::shared_ptr<const tfhe::EvaluationKeys> keys;
};

struct CompiledModel::Impl {
  std::shared_ptr<const deploy::ModelDev> dev;
  std::shared_ptr<Execution> execution = std::make_shared<Execution>();
};

VEIL_HANDLE_MEMBERS(CompiledModel)

CompiledModel CompiledModel::compile(const std::string& model_path, const Array& calibration, const CompileOptions& options) {
  const ml::Model model = ml::load_model(model_path);
  const ml::Matrix rows = to_matrix(calibration, {});
  return CompiledModel(new Impl{std::make_shared<const deploy::ModelDev>(deploy::ModelDev::compile(model, rows, dev_options(options)))});
}

CompiledModel CompiledModel::compile(std::span<const std::uint8_t> model_bytes, const Array& calibration,
                                     const CompileOptions& options) {
  const ml::Model model = ml::parse_model(model_bytes, "model");
  const ml::Matrix rows = to_matrix(calibration, {});
  return CompiledModel(new Impl{std::make_shared<const deploy::ModelDev>(deploy::ModelDev::compile(model, rows, dev_options(options)))});
}

void CompiledModel::save(const std::string& dir, Overwrite overwrite) const {
  self().dev->save(dir, {.overwrite = overwrite == Overwrite::kReplace});
}

Predictions CompiledModel::predict(const Array& rows, Fhe fhe) const {
  const deploy::ModelDev& dev = *self().dev;
  const ml::Matrix m = to_matrix(rows, sample_shape(dev.processing()));
  const Task task = task_of(dev.processing());
  switch (fhe) {
    case Fhe::kDisable:
      return to_predictions(task, ml::predict_clear(ml::QuantizedModel{dev.compiled().circuit, dev.processing()}, m));
    case Fhe::kSimulate: {
      const auto seed = tfhe::Csprng::from_os().next_u64();
      return to_predictions(task, ml::predict_simulated(ml::QuantizedModel{dev.compiled().circuit, dev.processing()},
                                                        dev.compiled(), m, seed));
    }
    case Fhe::kExecute: {
      // The artifacts go through a temporary directory, as a deployment would read them.
      Execution& e = *self().execution;
      const std::lock_guard lock(e.mutex);
      if (!e.client) {
        const fs::path dir = fs::temp_directory_path() / ("veil-execute-" + model_id() + "-" +
                                                           std::to_string(tfhe::Csprng::from_os().next_u64()));
        struct Remove {
          fs::path dir;
          ~Remove() {
            std::error_code ec;
            fs::remove_all(dir, ec);
          }
        } remove{dir};
        dev.save(dir, {.overwrite = true});
        deploy::ModelClient client = deploy::ModelClient::load(dir);
        deploy::ModelServer server = deploy::ModelServer::load(dir);
        deploy::KeySet keys = client.make_keys();
        client.use_keys(keys.secret);
        e.keys = server.load_evaluation_keys(keys.evaluation_keys);
        e.client = std::move(client);
        e.server = std::move(server);
      }
      const deploy::Bytes query = e.client->quantize_encrypt_serialize(m);
      const deploy::Bytes answer = e.server->run(query, e.keys.get());
      return to_predictions(task, e.client->deserialize_decrypt_dequantize(answer));
    }
  }
  throw std::invalid_argument("CompiledModel::predict: unknown Fhe mode");
}

Statistics CompiledModel::statistics() const {
  const circuit::CompiledCircuit& c = self().dev->compiled();
  return to_statistics(c.analysis.statistics, c.params, c.uses_bootstrapping);
}
std::string CompiledModel::model_id() const { return hex_id(self().dev->model_id()); }
std::size_t CompiledModel::n_features() const { return self().dev->processing().n_features; }
Task CompiledModel::task() const { return task_of(self().dev->processing()); }

// ---------------------------------------------------------------- ClientKeys

struct ClientKeys::Impl {
  deploy::ModelId model{};
  std::shared_ptr<const tfhe::SecretKeys> secret;
  std::shared_ptr<const Bytes> evaluation;
};

VEIL_HANDLE_MEMBERS(ClientKeys)

const Bytes& ClientKeys::evaluation_keys() const { return *self().evaluation; }
Bytes ClientKeys::export_secret_key() const { return deploy::seal_secret_keys(self().model, *self().secret); }
std::string ClientKeys::model_id() const { return hex_id(self().model); }

// ---------------------------------------------------------------- Client

struct Client::Impl {
  std::shared_ptr<const deploy::ModelClient> model;  // without keys; shared by copies
  std::shared_ptr<const deploy::ModelClient> keyed;  // `model` with `keys`, once there are keys
  std::optional<ClientKeys> keys;

  const deploy::ModelClient& with_keys() const {
    if (!keyed) throw std::logic_error("veil::Client: no keys (generate_keys, use_keys or load_keys first)");
    return *keyed;
  }
  ClientKeys key_set(std::shared_ptr<const tfhe::SecretKeys> secret, Bytes evaluation) const {
    return ClientKeys(new ClientKeys::Impl{model->model_id(), std::move(secret), std::make_shared<const Bytes>(std::move(evaluation))});
  }
};

VEIL_HANDLE_MEMBERS(Client)

Client Client::load(const std::string& dir) {
  return Client(new Impl{std::make_shared<const deploy::ModelClient>(deploy::ModelClient::load(dir)), nullptr, {}});
}

Client Client::from_bytes(std::span<const std::uint8_t> client_zip, std::span<const std::uint8_t> processing_json) {
  return Client(
      new Impl{std::make_shared<const deploy::ModelClient>(deploy::ModelClient::from_bytes(client_zip, processing_json)), nullptr, {}});
}

ClientKeys Client::generate_keys() {
  deploy::KeySet keys = self().model->make_keys();
  ClientKeys out = self().key_set(std::move(keys.secret), std::move(keys.evaluation_keys));
  use_keys(out);
  return out;
}

ClientKeys Client::generate_keys(ProgressListener& progress) {
  deploy::KeySet keys =
      self().model->make_keys([&](const std::string& step, double fraction) { progress.on_progress(step.c_str(), fraction); });
  ClientKeys out = self().key_set(std::move(keys.secret), std::move(keys.evaluation_keys));
  use_keys(out);
  return out;
}

void Client::use_keys(const ClientKeys& keys) {
  Impl& me = self();
  if (keys.self().model != me.model->model_id())
    throw InputError("keys of model " + keys.model_id() + " cannot serve model " + model_id());
  auto keyed = std::make_shared<deploy::ModelClient>(*me.model);
  keyed->use_keys(keys.self().secret);
  me.keyed = std::move(keyed);
  me.keys = keys;
}

ClientKeys Client::import_keys(std::span<const std::uint8_t> secret_key, std::span<const std::uint8_t> evaluation_keys) const {
  const deploy::ModelClient& model = *self().model;
  auto secret = model.open_secret(secret_key);
  deploy::ModelClient::check_evaluation_keys(evaluation_keys, model.model_id(), "evaluation keys");
  return self().key_set(std::move(secret), Bytes(evaluation_keys.begin(), evaluation_keys.end()));
}

void Client::save_keys(const std::string& dir, Overwrite overwrite) const {
  const Impl& me = self();
  (void)me.with_keys();
  const fs::path d = dir;
  std::error_code ec;
  if (overwrite == Overwrite::kRefuse &&
      (fs::exists(d / deploy::kSecretKeyFile, ec) || fs::exists(d / deploy::kEvaluationKeysFile, ec)))
    throw deploy::DeployError(dir + ": holds keys already; refusing to replace them (save with Overwrite::kReplace to replace them)");
  const ClientKeys::Impl& k = me.keys->self();
  me.model->save_keys(d, {k.secret, *k.evaluation});
}

ClientKeys Client::load_keys(const std::string& dir) {
  deploy::ModelClient copy = *self().model;
  copy.load_keys(dir);
  Bytes eval = deploy::ModelClient::read_evaluation_keys(dir, self().model->model_id());
  ClientKeys keys = self().key_set(copy.secret_keys(), std::move(eval));
  use_keys(keys);
  return keys;
}

Bytes Client::encrypt(const Array& rows) const {
  const deploy::ModelClient& client = self().with_keys();
  return client.quantize_encrypt_serialize(to_matrix(rows, sample_shape(client.processing())));
}

Predictions Client::decrypt(std::span<const std::uint8_t> output) const {
  const deploy::ModelClient& client = self().with_keys();
  return to_predictions(task_of(client.processing()), client.deserialize_decrypt_dequantize(output));
}

bool Client::has_keys() const { return self().keyed != nullptr; }
std::string Client::model_id() const { return hex_id(self().model->model_id()); }
std::size_t Client::n_features() const { return self().model->processing().n_features; }
std::vector<std::size_t> Client::input_shape() const { return sample_shape(self().model->processing()); }
Task Client::task() const { return task_of(self().model->processing()); }
std::vector<std::int64_t> Client::classes() const { return self().model->processing().classes; }
Statistics Client::statistics() const {
  const deploy::ClientSpecs& specs = self().model->specs();
  return to_statistics(specs.statistics, specs.signature.params, specs.signature.uses_bootstrapping);
}

// ---------------------------------------------------------------- ServerKeys, Server

struct ServerKeys::Impl {
  deploy::ModelId model{};
  std::shared_ptr<const tfhe::EvaluationKeys> keys;  // null for a levelled-only model
};

VEIL_HANDLE_MEMBERS(ServerKeys)

std::string ServerKeys::model_id() const { return hex_id(self().model); }

struct Server::Impl {
  std::shared_ptr<const deploy::ModelServer> model;
};

VEIL_HANDLE_MEMBERS(Server)

Server Server::load(const std::string& dir_or_zip) {
  return Server(new Impl{std::make_shared<const deploy::ModelServer>(deploy::ModelServer::load(dir_or_zip))});
}

Server Server::from_bytes(std::span<const std::uint8_t> server_zip) {
  return Server(new Impl{std::make_shared<const deploy::ModelServer>(deploy::ModelServer::from_bytes(server_zip))});
}

ServerKeys Server::load_keys(std::span<const std::uint8_t> evaluation_keys) const {
  return ServerKeys(new ServerKeys::Impl{self().model->model_id(), self().model->load_evaluation_keys(evaluation_keys)});
}

Bytes Server::run(std::span<const std::uint8_t> input, const ServerKeys& keys) const {
  return run_with_stats(input, keys).output;
}

RunResult Server::run_with_stats(std::span<const std::uint8_t> input, const ServerKeys& keys) const {
  if (keys.self().model != self().model->model_id())
    throw InputError("evaluation keys of model " + keys.model_id() + " cannot serve model " + model_id());
  deploy::RunStats stats;
  RunResult result;
  result.output = self().model->run(input, keys.self().keys.get(), &stats);
  result.rows = stats.rows;
  result.pbs = stats.pbs;
  result.seconds = stats.total_seconds;
  return result;
}

std::string Server::model_id() const { return hex_id(self().model->model_id()); }
bool Server::needs_evaluation_keys() const { return self().model->needs_evaluation_keys(); }

}  // namespace veil
