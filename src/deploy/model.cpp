// ModelDev, ModelClient, ModelServer (model.hpp).
#include <sys/stat.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "veil/circuit/serialization.hpp"
#include "veil/deploy/model.hpp"
#include "veil/ml/importers.hpp"
#include "veil/tfhe/parallel.hpp"
#include "veil/tfhe/pbs.hpp"
#include "veil/tfhe/serialization.hpp"
#include "veil/tfhe/sha256.hpp"

namespace veil::deploy {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr std::uint64_t kMaxSpecsBytes = 64 << 20;
constexpr std::uint64_t kMaxCircuitBytes = std::uint64_t{1} << 30;

[[noreturn]] void fail(const std::string& what) { throw DeployError(what); }

ModelId derive_model_id(const Bytes& circuit_bytes, const std::string& processing_text) {
  const tfhe::Sha256Digest digest =
      tfhe::sha256({circuit_bytes, std::span(reinterpret_cast<const std::uint8_t*>(processing_text.data()), processing_text.size())});
  ModelId id{};
  std::copy(digest.begin(), digest.begin() + 16, id.begin());
  return id;
}

Bytes to_bytes(const std::string& s) { return Bytes(s.begin(), s.end()); }
std::string to_string(const Bytes& b) { return std::string(b.begin(), b.end()); }

// serialized_processing.json: the ml layer's document plus the model id.
std::string processing_file_text(const ml::Processing& p, const ModelId& id) {
  json j = ml::to_json(p);
  j["model_id"] = model_id_hex(id);
  return j.dump(2);
}

std::string sha256_hex(std::span<const std::uint8_t> bytes) { return tfhe::to_hex(tfhe::sha256(bytes)); }

bool file_exists(const fs::path& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}

// Answers travel under the small key: (n + 1) words per output instead of (k*N + 1), about 4x
// smaller for the usual sets. The keyswitch noise is already inside every output's noise
// constraint (analysis.hpp counts the keyswitch and modulus-switch terms for outputs).
tfhe::LweCiphertextList keyswitch_to_small_key(const tfhe::EvaluationKeys& keys, const tfhe::LweCiphertextList& in) {
  tfhe::LweCiphertextList out(keys.params.lwe_dimension, in.count());
  tfhe::parallel_for(in.count(), 0, 1, [&](std::size_t begin, std::size_t end, unsigned) {
    tfhe::KeyswitchScratch ks_scratch;
    for (std::size_t c = begin; c < end; ++c) tfhe::keyswitch(keys.ksk, in[c], out[c], ks_scratch);
  });
  return out;
}

}  // namespace

// ---------------------------------------------------------------- ModelDev

ModelDev ModelDev::compile(const ml::Model& model, const ml::Matrix& calibration, const DevOptions& options) {
  ml::QuantizedModel q = ml::compile_model(model, calibration, options.quantization);
  ModelDev dev;
  dev.compiled_ = circuit::compile(std::move(q.circuit), options.compile);
  dev.processing_ = std::move(q.processing);
  dev.model_id_ = derive_model_id(circuit::serialize_compiled_circuit(dev.compiled_), ml::to_json(dev.processing_).dump());
  return dev;
}

ModelDev ModelDev::compile_files(const std::string& model_path, const std::string& calibration_path,
                                 const DevOptions& options) {
  const ml::Model model = ml::load_model(model_path);
  const ml::Matrix calibration = ml::load_matrix(calibration_path);
  return compile(model, calibration, options);
}

void ModelDev::save(const fs::path& dir, const SaveOptions& options) const {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail(dir.string() + ": cannot create the directory (" + ec.message() + ")");
  for (const char* name : {kClientZip, kServerZip, kProcessingJson})
    if (!options.overwrite && file_exists(dir / name))
      fail((dir / name).string() + " exists already; refusing to overwrite it (save with overwrite to replace it)");
  const std::string processing = processing_file_text(processing_, model_id_);
  ClientSpecs specs;
  specs.model_id = model_id_;
  specs.signature = circuit::signature_of(compiled_);
  specs.statistics = compiled_.analysis.statistics;
  specs.processing_sha256 = sha256_hex(to_bytes(processing));
  const Bytes versions = to_bytes(make_versions_json(model_id_));
  write_zip(dir / kServerZip, {{"circuit.veil", circuit::serialize_compiled_circuit(compiled_)}, {"versions.json", versions}});
  write_zip(dir / kClientZip, {{"client.specs.json", to_bytes(client_specs_to_json(specs))}, {"versions.json", versions}});
  write_file_atomic(dir / kProcessingJson, std::span(reinterpret_cast<const std::uint8_t*>(processing.data()), processing.size()));
}

// ---------------------------------------------------------------- ModelClient

ModelClient ModelClient::load(const fs::path& dir) {
  const Bytes zip = read_file(dir / kClientZip, kMaxSpecsBytes);
  const Bytes processing = read_file(dir / kProcessingJson, kMaxSpecsBytes);
  return from_bytes(zip, processing, (dir / kClientZip).string(), (dir / kProcessingJson).string());
}

ModelClient ModelClient::from_bytes(std::span<const std::uint8_t> client_zip, std::span<const std::uint8_t> processing_json,
                                    const std::string& zip, const std::string& proc_path) {
  ModelClient c;
  const ModelId versions_id =
      check_versions_json(to_string(read_zip_member(client_zip, zip, "versions.json", 1 << 20)), zip + " versions.json");
  c.specs_ = client_specs_from_json(to_string(read_zip_member(client_zip, zip, "client.specs.json", kMaxSpecsBytes)),
                                    zip + " client.specs.json");
  if (c.specs_.model_id != versions_id)
    fail(zip + ": client.specs.json is for model " + model_id_hex(c.specs_.model_id) + " but versions.json says " +
         model_id_hex(versions_id));
  if (processing_json.size() > kMaxSpecsBytes)
    fail(proc_path + ": " + std::to_string(processing_json.size()) + " bytes, more than the limit of " +
         std::to_string(kMaxSpecsBytes));
  json doc;
  try {
    doc = json::parse(processing_json.begin(), processing_json.end());
  } catch (const json::exception& e) {  // parse_error, and out_of_range for numbers like 1e999
    fail(proc_path + ": not valid JSON (" + e.what() + ")");
  }
  if (!doc.is_object() || !doc.contains("model_id") || !doc["model_id"].is_string())
    fail(proc_path + ": no model_id (not written by veil compile?)");
  ModelId proc_id;
  try {
    proc_id = parse_model_id(doc["model_id"].get<std::string>());
  } catch (const std::invalid_argument& e) {
    fail(proc_path + ": " + e.what());
  }
  if (proc_id != c.specs_.model_id)
    fail(proc_path + " belongs to model " + model_id_hex(proc_id) + " but " + zip + " to model " +
         model_id_hex(c.specs_.model_id) + " (files from two different compiles are mixed)");
  // Same model: the bytes must be those compiled (checked after the id, whose message is
  // clearer for files of two compiles).
  if (!c.specs_.processing_sha256.empty()) {
    const std::string digest = sha256_hex(processing_json);
    if (digest != c.specs_.processing_sha256)
      fail(proc_path + ": its SHA-256 " + digest + " is not the " + c.specs_.processing_sha256 + " that " + zip +
           " records: the file was edited or corrupted");
  }
  doc.erase("model_id");
  try {
    c.processing_ = ml::processing_from_json(doc);
  } catch (const ml::ProcessingFormatError& e) {
    fail(proc_path + ": " + e.what());
  }
  if (c.specs_.signature.inputs.size() != 1 || c.specs_.signature.inputs[0].shape != c.processing_.input_shape)
    fail(proc_path + ": its input shape does not match the circuit's signature in " + zip);
  return c;
}

KeySet ModelClient::make_keys(const Progress& progress) const {
  const auto& sig = specs_.signature;
  if (progress) progress("secret key", 0.0);
  KeySet keys;
  keys.secret = std::make_shared<const tfhe::SecretKeys>(tfhe::generate_secret_keys(sig.params, false, specs_.security_bits));
  if (sig.uses_bootstrapping) {
    if (progress) progress("evaluation keys", 0.1);
    const tfhe::SeededEvaluationKeys seeded = tfhe::generate_seeded_evaluation_keys(*keys.secret);
    if (progress) progress("evaluation keys", 0.9);
    keys.evaluation_keys = seal_evaluation_keys(model_id(), &seeded);
  } else {
    keys.evaluation_keys = seal_evaluation_keys(model_id(), nullptr);
  }
  if (progress) progress("done", 1.0);
  return keys;
}

void ModelClient::use_keys(std::shared_ptr<const tfhe::SecretKeys> secret) {
  if (!secret) throw std::invalid_argument("ModelClient::use_keys: no keys");
  if (!(secret->params == specs_.signature.params))
    throw std::invalid_argument("ModelClient::use_keys: the keys are for another parameter set than model " +
                                model_id_hex(model_id()));
  secret_ = std::move(secret);
}

std::shared_ptr<const tfhe::SecretKeys> ModelClient::open_secret(std::span<const std::uint8_t> envelope) const {
  return std::make_shared<const tfhe::SecretKeys>(open_secret_keys(envelope, model_id(), specs_.signature.params));
}

Bytes ModelClient::seal_secret(const tfhe::SecretKeys& secret) const { return seal_secret_keys(model_id(), secret); }

KeySizes ModelClient::generate_keys(const fs::path& key_dir, const KeyGenOptions& options) {
  const fs::path secret_path = key_dir / kSecretKeyFile, eval_path = key_dir / kEvaluationKeysFile;
  if (!options.replace_existing && file_exists(secret_path) && file_exists(eval_path)) {
    load_keys(key_dir);  // throws for another model's keys: nothing is overwritten
    (void)read_evaluation_keys(key_dir, model_id());
    return {fs::file_size(secret_path), fs::file_size(eval_path)};
  }
  KeySet keys = make_keys([&](const std::string& step, double f) {
    if (options.progress && step != "done") options.progress(step, f);
  });
  save_keys(key_dir, keys);
  if (options.progress) options.progress("done", 1.0);
  secret_ = std::move(keys.secret);
  return {fs::file_size(secret_path), fs::file_size(eval_path)};
}

void ModelClient::save_keys(const fs::path& key_dir, const KeySet& keys) const {
  if (!keys.secret) throw std::invalid_argument("ModelClient::save_keys: no secret key");
  std::error_code ec;
  fs::create_directories(key_dir, ec);
  if (ec) fail(key_dir.string() + ": cannot create the key directory (" + ec.message() + ")");
  fs::permissions(key_dir, fs::perms::owner_all, fs::perm_options::replace, ec);
  Bytes secret_bytes = seal_secret(*keys.secret);
  write_file_atomic(key_dir / kSecretKeyFile, secret_bytes, 0600);
  std::fill(secret_bytes.begin(), secret_bytes.end(), 0);
  write_file_atomic(key_dir / kEvaluationKeysFile, keys.evaluation_keys, 0644);
}

void ModelClient::load_keys(const fs::path& key_dir) {
  const fs::path path = key_dir / kSecretKeyFile;
  Bytes bytes = read_file(path, kMaxKeyEnvelopeBytes);
  try {
    secret_ = std::make_shared<tfhe::SecretKeys>(open_secret_keys(bytes, model_id(), specs_.signature.params));
  } catch (const EnvelopeError& e) {
    std::fill(bytes.begin(), bytes.end(), 0);
    fail(path.string() + ": " + e.what());
  }
  std::fill(bytes.begin(), bytes.end(), 0);
}

void ModelClient::check_evaluation_keys(std::span<const std::uint8_t> bytes, const ModelId& model, const std::string& source) {
  try {
    const EnvelopeInfo info = inspect_envelope(bytes);
    if (info.kind != EnvelopeKind::kEvaluationKeys) fail(source + ": holds " + envelope_kind_name(info.kind));
    if (info.model_id != model)
      fail(source + ": keys of model " + model_id_hex(info.model_id) + ", not of model " + model_id_hex(model));
  } catch (const EnvelopeError& e) {
    fail(source + ": " + e.what());
  }
}

Bytes ModelClient::read_evaluation_keys(const fs::path& key_dir, const ModelId& model) {
  const fs::path path = key_dir / kEvaluationKeysFile;
  Bytes bytes = read_file(path, kMaxKeyEnvelopeBytes);
  check_evaluation_keys(bytes, model, path.string());
  return bytes;
}

Bytes ModelClient::quantize_encrypt_serialize(const ml::Matrix& rows) const {
  if (!secret_) throw std::logic_error("ModelClient: no keys (generate_keys or load_keys first)");
  if (rows.cols != processing_.n_features)
    throw std::invalid_argument("input has " + std::to_string(rows.cols) + " columns, the model expects " +
                                std::to_string(processing_.n_features) + " features");
  std::vector<std::vector<tfhe::SeededLweCiphertextList>> batch;
  batch.reserve(rows.rows);
  for (std::size_t r = 0; r < rows.rows; ++r) {
    circuit::Tensor t;
    try {
      t = ml::quantize_input(processing_, rows.row(r));
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("row " + std::to_string(r + 1) + ": " + e.what());
    }
    batch.push_back(circuit::encrypt_inputs(specs_.signature, *secret_, {t}));
  }
  return seal_input_batch(model_id(), specs_.signature.params, batch);
}

std::vector<std::vector<circuit::Tensor>> ModelClient::decrypt_raw(std::span<const std::uint8_t> output_batch) const {
  if (!secret_) throw std::logic_error("ModelClient: no keys (generate_keys or load_keys first)");
  const auto& sig = specs_.signature;
  const auto rows = open_output_batch(output_batch, model_id(), sig.params);
  std::vector<std::vector<circuit::Tensor>> out;
  out.reserve(rows.size());
  for (std::size_t r = 0; r < rows.size(); ++r) {
    if (rows[r].size() != sig.outputs.size())
      throw EnvelopeError("encrypted output batch: row " + std::to_string(r) + " holds " + std::to_string(rows[r].size()) +
                          " tensors, the model has " + std::to_string(sig.outputs.size()) + " outputs");
    std::vector<circuit::EncryptedTensor> tensors;
    for (std::size_t o = 0; o < rows[r].size(); ++o) tensors.push_back({sig.outputs[o].shape, rows[r][o]});
    out.push_back(circuit::decrypt_outputs(sig, *secret_, tensors));
  }
  return out;
}

ml::Predictions ModelClient::deserialize_decrypt_dequantize(std::span<const std::uint8_t> output_batch) const {
  return ml::postprocess(processing_, decrypt_raw(output_batch));
}

// ---------------------------------------------------------------- ModelServer

namespace {

// ModelServer's parts from server.zip, read by `member`.
template <typename ReadMember>
void load_server(ModelId& id, std::shared_ptr<const circuit::CompiledCircuit>& compiled,
                 std::shared_ptr<const circuit::FheExecutor>& executor, const std::string& zip, ReadMember read_member) {
  id = check_versions_json(to_string(read_member("versions.json", 1 << 20)), zip + " versions.json");
  try {
    compiled = std::make_shared<const circuit::CompiledCircuit>(
        circuit::deserialize_compiled_circuit(read_member("circuit.veil", kMaxCircuitBytes)));
  } catch (const circuit::CircuitFormatError& e) {
    fail(zip + ": circuit.veil: " + e.what());
  }
  executor = std::make_shared<const circuit::FheExecutor>(*compiled);
}

}  // namespace

ModelServer ModelServer::load(const fs::path& dir_or_zip) {
  const fs::path zip = fs::is_directory(dir_or_zip) ? dir_or_zip / kServerZip : dir_or_zip;
  ModelServer s;
  load_server(s.model_id_, s.compiled_, s.executor_, zip.string(),
              [&](const char* member, std::uint64_t max) { return read_zip_member(zip, member, max); });
  return s;
}

ModelServer ModelServer::from_bytes(std::span<const std::uint8_t> server_zip, const std::string& source) {
  ModelServer s;
  load_server(s.model_id_, s.compiled_, s.executor_, source,
              [&](const char* member, std::uint64_t max) { return read_zip_member(server_zip, source, member, max); });
  return s;
}

std::shared_ptr<const tfhe::EvaluationKeys> ModelServer::load_evaluation_keys(std::span<const std::uint8_t> bytes) const {
  auto seeded = open_evaluation_keys(bytes, model_id_, compiled_->params);
  if (!compiled_->uses_bootstrapping) return nullptr;
  if (!seeded) fail("evaluation keys: the file holds none, but this model needs them (it has lookups)");
  return std::make_shared<const tfhe::EvaluationKeys>(tfhe::expand_evaluation_keys(*seeded));
}

Bytes ModelServer::run(std::span<const std::uint8_t> input_batch, const tfhe::EvaluationKeys* keys, RunStats* stats,
                       const RunControl& control) const {
  const auto t0 = std::chrono::steady_clock::now();
  const auto rows = open_input_batch(input_batch, model_id_, compiled_->params);
  const circuit::FheExecutor& executor = *executor_;
  std::vector<std::vector<tfhe::LweCiphertextList>> out;
  out.reserve(rows.size());
  RunStats local;
  for (std::size_t r = 0; r < rows.size(); ++r) {
    if (control.deadline && std::chrono::steady_clock::now() >= *control.deadline)
      throw RunCancelled("the run passed its time limit after " + std::to_string(r) + " of " + std::to_string(rows.size()) +
                             " rows",
                         true);
    if (control.cancelled && control.cancelled())
      throw RunCancelled("the run was cancelled after " + std::to_string(r) + " of " + std::to_string(rows.size()) + " rows",
                         false);
    std::vector<circuit::EncryptedTensor> inputs;
    try {
      inputs = circuit::expand_inputs(*compiled_, rows[r]);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("row " + std::to_string(r) + ": " + e.what());
    }
    circuit::ExecutionStats es;
    auto outputs = executor.run(inputs, keys, &es);
    local.pbs += es.pbs;
    local.pbs_seconds += es.pbs_seconds;
    std::vector<tfhe::LweCiphertextList> lists;
    for (auto& t : outputs) lists.push_back(keys ? keyswitch_to_small_key(*keys, t.ciphertexts) : std::move(t.ciphertexts));
    out.push_back(std::move(lists));
  }
  local.rows = rows.size();
  Bytes result = seal_output_batch(model_id_, compiled_->params, out);
  local.total_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (stats) *stats = local;
  return result;
}

}  // namespace veil::deploy
