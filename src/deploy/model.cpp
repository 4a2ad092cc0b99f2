// ModelDev, ModelClient, ModelServer (model.hpp).
#include <sys/stat.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "deploy_internal.hpp"
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
using namespace internal;

constexpr std::uint64_t kMaxCircuitBytes = std::uint64_t{1} << 30;

ModelId derive_model_id(const Bytes& circuit_bytes, const std::string& processing_text) {
  const tfhe::Sha256Digest digest =
      tfhe::sha256({circuit_bytes, std::span(reinterpret_cast<const std::uint8_t*>(processing_text.data()), processing_text.size())});
  ModelId id{};
  std::copy(digest.begin(), digest.begin() + 16, id.begin());
  return id;
}

// serialized_processing.json: the ml layer's document plus the model id.
std::string processing_file_text(const ml::Processing& p, const ModelId& id) {
  json j = ml::to_json(p);
  j["model_id"] = model_id_hex(id);
  return j.dump(2);
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
