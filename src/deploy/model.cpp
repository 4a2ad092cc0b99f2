// ModelDev, ModelClient, ModelServer (model.hpp).
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>

#include "deploy_internal.hpp"
#include "veil/circuit/serialization.hpp"
#include "veil/deploy/model.hpp"
#include "veil/ml/importers.hpp"
#include "veil/tfhe/parallel.hpp"
#include "veil/tfhe/lwe.hpp"
#include "veil/tfhe/packing.hpp"
#include "veil/tfhe/pbs.hpp"
#include "veil/tfhe/serialization.hpp"
#include "veil/tfhe/sha256.hpp"
#include "zip_reader.hpp"

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


// server.zip's answers.json: {"keyswitch": [bool per output], "modulus_bits": [b per output]},
// and "packed_modulus_bits": b when the parameter set packs answers (the packed GLWE's bits).
constexpr const char* kAnswersJson = "answers.json";

std::string answers_json_text(const std::vector<circuit::OutputTransport>& plan, unsigned packed_bits) {
  json ks = json::array(), bits = json::array();
  for (const auto& t : plan) ks.push_back(t.keyswitch), bits.push_back(t.modulus_bits);
  json j{{"keyswitch", ks}, {"modulus_bits", bits}};
  if (packed_bits != 0) j["packed_modulus_bits"] = packed_bits;
  return j.dump();
}

unsigned parse_packed_modulus_bits(const Bytes& bytes, bool packs, const std::string& source) {
  const json j = json::parse(bytes.begin(), bytes.end(), nullptr, false);
  const bool has = j.is_object() && j.contains("packed_modulus_bits");
  if (!packs) {
    if (has) fail(source + ": packed_modulus_bits given, but the circuit's parameter set packs no answers");
    return 0;
  }
  if (!has) fail(source + ": no packed_modulus_bits, but the circuit's parameter set packs answers");
  const json& b = j["packed_modulus_bits"];
  if (!b.is_number_unsigned() || b.get<std::uint64_t>() < 1 || b.get<std::uint64_t>() > 63)
    fail(source + ": packed_modulus_bits holds " + b.dump() + ", expected an integer in [1, 63]");
  return b.get<unsigned>();
}

std::vector<circuit::OutputTransport> parse_answers_json(const Bytes& bytes, std::size_t outputs, const std::string& source) {
  json j;
  try {
    j = json::parse(bytes.begin(), bytes.end());
  } catch (const json::exception& e) {
    fail(source + ": not valid JSON (" + e.what() + ")");
  }
  for (const char* key : {"keyswitch", "modulus_bits"}) {
    if (!j.is_object() || !j.contains(key) || !j[key].is_array()) fail(source + ": no " + key + " array");
    if (j[key].size() != outputs)
      fail(source + ": " + std::to_string(j[key].size()) + " " + key + " entries for a circuit of " +
           std::to_string(outputs) + " outputs");
  }
  std::vector<circuit::OutputTransport> plan(outputs);
  for (std::size_t o = 0; o < outputs; ++o) {
    const json& ks = j["keyswitch"][o];
    const json& b = j["modulus_bits"][o];
    if (!ks.is_boolean()) fail(source + ": keyswitch holds " + ks.dump() + ", expected true or false");
    if (!b.is_number_unsigned() || b.get<std::uint64_t>() < 1 || b.get<std::uint64_t>() > 63)
      fail(source + ": modulus_bits holds " + b.dump() + ", expected integers in [1, 63]");
    plan[o] = {ks.get<bool>(), b.get<unsigned>()};
  }
  return plan;
}

// An answer under the small key is (n + 1) words instead of (k*N + 1), about 2.5x smaller for
// the usual sets, but carries the keyswitch's noise; circuit::plan_output_transport chooses
// per output, and the bits of its modulus switch.
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
  const double per_read = circuit::per_read_p_error(dev.compiled_, options.compile);
  dev.output_transport_ = circuit::plan_output_transport(dev.compiled_, per_read);
  circuit::CircuitStatistics& st = dev.compiled_.analysis.statistics;
  double outputs = circuit::log2_output_read_error(dev.compiled_, dev.output_transport_);
  {
    // Planned even when off, so that the compile can say what packing would have saved.
    const double rows = !options.pack_answers ? options.packing_break_even_rows
                        : *options.pack_answers ? std::numeric_limits<double>::infinity()
                                                : -1.0;
    dev.security_bits_ = options.compile.security_bits;
    // The packing key counts against a key budget (--max-key-mb) like the rest of the keys:
    // the planner gets what the other keys leave of it (1 byte where they leave nothing).
    const std::uint64_t budget = options.compile.search.max_key_bytes;
    std::uint64_t left = 0;
    if (budget != 0 && dev.compiled_.uses_bootstrapping) {
      const std::uint64_t others = tfhe::seeded_evaluation_keys_bytes(dev.compiled_.params);
      left = budget > others ? budget - others : 1;
    }
    dev.answer_packing_ =
        circuit::plan_answer_packing(dev.compiled_, dev.output_transport_, per_read, rows, dev.security_bits_, left);
    if (dev.answer_packing_.packed) {
      // The set now names the packing keyswitch: keys, ids and the circuit file carry it.
      tfhe::ParameterSet& p = dev.compiled_.params;
      p.answer_polynomial_size = tfhe::PolynomialSize(dev.answer_packing_.polynomial_size);
      p.answer_base_log = tfhe::DecompositionBaseLog(dev.answer_packing_.base_log);
      p.answer_level_count = tfhe::DecompositionLevelCount(dev.answer_packing_.level_count);
      p.answer_key_dimension = tfhe::GlweDimension(dev.answer_packing_.glwe_dimension);
      p.answer_std_dev = dev.answer_packing_.std_dev;
      p.validate();
      if (const tfhe::SecurityCheck check = tfhe::check_security(p, dev.security_bits_); !check.secure)
        throw std::logic_error("compile: the packed answers' parameter set is not " + std::to_string(dev.security_bits_) +
                               "-bit secure: " + check.detail);
      st.parameters = p.describe();
      outputs = dev.answer_packing_.log2_error;
    }
  }
  dev.model_id_ = derive_model_id(circuit::serialize_compiled_circuit(dev.compiled_), ml::to_json(dev.processing_).dump());
  // The prediction counts the outputs as they travel: keyswitched or packed, and switched.
  const double lookups = dev.compiled_.uses_bootstrapping
                             ? circuit::log2_circuit_error_probability(dev.compiled_.analysis, dev.compiled_.params, true)
                             : -INFINITY;
  const double hi = std::max(lookups, outputs), lo = std::min(lookups, outputs);
  st.log2_predicted_p_error = std::isinf(lo) ? hi : hi + std::log2(1.0 + std::exp2(lo - hi));  // union bound
  st.predicted_p_error = std::exp2(*st.log2_predicted_p_error);
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
  specs.security_bits = security_bits_;
  specs.processing_sha256 = sha256_hex(to_bytes(processing));
  const Bytes versions = to_bytes(make_versions_json(model_id_));
  write_zip(dir / kServerZip, {{"circuit.veil", circuit::serialize_compiled_circuit(compiled_)},
                               {kAnswersJson, to_bytes(answers_json_text(output_transport_, answer_packing_.packed ? answer_packing_.modulus_bits : 0))},
                               {"versions.json", versions}});
  write_zip(dir / kClientZip, {{"client.specs.json", to_bytes(client_specs_to_json(specs))}, {"versions.json", versions}});
  write_file_atomic(dir / kProcessingJson, std::span(reinterpret_cast<const std::uint8_t*>(processing.data()), processing.size()));
}

// ---------------------------------------------------------------- ModelServer

namespace {

// ModelServer's parts from server.zip.
void load_server(ModelId& id, std::shared_ptr<const circuit::CompiledCircuit>& compiled,
                 std::shared_ptr<const circuit::FheExecutor>& executor, std::vector<circuit::OutputTransport>& output_transport,
                 unsigned& packed_bits, const std::string& zip, const ZipReader& reader) {
  id = check_versions_json(to_string(reader.read("versions.json", 1 << 20)), zip + " versions.json");
  try {
    compiled = std::make_shared<const circuit::CompiledCircuit>(
        circuit::deserialize_compiled_circuit(reader.read("circuit.veil", kMaxCircuitBytes)));
  } catch (const circuit::CircuitFormatError& e) {
    fail(zip + ": circuit.veil: " + e.what());
  }
  const std::vector<std::string> names = reader.names();
  const bool packs = compiled->params.packs_answers();
  if (std::find(names.begin(), names.end(), kAnswersJson) != names.end()) {
    const Bytes answers = reader.read(kAnswersJson, 1 << 20);
    output_transport = parse_answers_json(answers, compiled->circuit.outputs.size(), zip + " " + kAnswersJson);
    packed_bits = parse_packed_modulus_bits(answers, packs, zip + " " + kAnswersJson);
  } else if (packs) {
    fail(zip + ": no " + std::string(kAnswersJson) + ", but the circuit's parameter set packs answers");
  }
  executor = std::make_shared<const circuit::FheExecutor>(*compiled);
}

}  // namespace

ModelServer ModelServer::load(const fs::path& dir_or_zip) {
  const fs::path zip = fs::is_directory(dir_or_zip) ? dir_or_zip / kServerZip : dir_or_zip;
  const Bytes archive = read_file(zip, kMaxZipFileBytes);
  ModelServer s;
  load_server(s.model_id_, s.compiled_, s.executor_, s.output_transport_, s.packed_modulus_bits_, zip.string(),
              ZipReader(archive, zip.string()));
  return s;
}

ModelServer ModelServer::from_bytes(std::span<const std::uint8_t> server_zip, const std::string& source) {
  ModelServer s;
  load_server(s.model_id_, s.compiled_, s.executor_, s.output_transport_, s.packed_modulus_bits_, source,
              ZipReader(server_zip, source));
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
  // Packed answers: a row's outputs, all under the big key, in one GLWE (tfhe/packing.hpp).
  const bool packed = keys && compiled_->params.packs_answers();
  std::vector<tfhe::PackedAnswer> packed_out;
  if (packed) packed_out.reserve(rows.size());
  RunStats local;
  // Rows run in waves: every node of the circuit over all of a wave's rows at once, so that a
  // lookup node is one batch over rows x elements. Sixteen rows fill the batch's threads and
  // key-sharing groups on every fixture while a node's batch stays short enough for the
  // deadline and cancellation checks between nodes; fewer where the circuit's widest node
  // over the wave would pass kWaveBytes (a node's working buffers add a few times that).
  constexpr std::size_t kMaxWaveRows = 16;
  constexpr std::size_t kWaveBytes = std::size_t{64} << 20;
  const std::size_t wave = std::min(kMaxWaveRows, executor.wave_rows(kWaveBytes));
  for (std::size_t first = 0; first < rows.size(); first += wave) {
    const std::size_t last = std::min(rows.size(), first + wave);
    const auto check = [&] {
      if (control.deadline && std::chrono::steady_clock::now() >= *control.deadline)
        throw RunCancelled("the run passed its time limit after " + std::to_string(first) + " of " +
                               std::to_string(rows.size()) + " rows",
                           true);
      if (control.cancelled && control.cancelled())
        throw RunCancelled("the run was cancelled after " + std::to_string(first) + " of " + std::to_string(rows.size()) +
                               " rows",
                           false);
    };
    check();
    std::vector<std::vector<circuit::EncryptedTensor>> inputs;
    inputs.reserve(last - first);
    for (std::size_t r = first; r < last; ++r) {
      try {
        inputs.push_back(circuit::expand_inputs(*compiled_, rows[r]));
      } catch (const std::invalid_argument& e) {
        throw std::invalid_argument("row " + std::to_string(r) + ": " + e.what());
      }
    }
    circuit::ExecutionStats es;
    auto wave_outputs = executor.run_rows(inputs, keys, &es, check);
    local.pbs += es.pbs;
    local.pbs_seconds += es.pbs_seconds;
    if (packed) {
      // One list of each row's output elements, output after output; the wave packed at once.
      std::vector<tfhe::LweCiphertextList> all;
      all.reserve(wave_outputs.size());
      for (const auto& outputs : wave_outputs) {
        std::size_t m = 0;
        for (const auto& t : outputs) m += t.ciphertexts.count();
        all.emplace_back(compiled_->params.big_lwe_dimension(), m);
        std::size_t at = 0;
        for (const auto& t : outputs)
          for (std::size_t c = 0; c < t.ciphertexts.count(); ++c, ++at) {
            const auto from = t.ciphertexts[c];
            std::copy(from.begin(), from.end(), all.back()[at].begin());
          }
      }
      for (auto& answer : tfhe::pack_answers(keys->packing, all, packed_modulus_bits_)) packed_out.push_back(std::move(answer));
      continue;
    }
    for (auto& outputs : wave_outputs) {
      std::vector<tfhe::LweCiphertextList> lists;
      for (std::size_t o = 0; o < outputs.size(); ++o) {
        auto& t = outputs[o];
        const bool keyswitch = keys && (output_transport_.empty() || output_transport_[o].keyswitch);
        lists.push_back(keyswitch ? keyswitch_to_small_key(*keys, t.ciphertexts) : std::move(t.ciphertexts));
        if (!output_transport_.empty()) tfhe::modulus_switch_lwe_ciphertext_list(lists.back(), output_transport_[o].modulus_bits);
      }
      out.push_back(std::move(lists));
    }
  }
  local.rows = rows.size();
  std::vector<unsigned> bits;
  for (const auto& t : output_transport_) bits.push_back(t.modulus_bits);
  Bytes result = packed ? seal_packed_output_batch(model_id_, compiled_->params, packed_out)
                        : seal_output_batch(model_id_, compiled_->params, out, bits);
  local.total_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (stats) *stats = local;
  return result;
}

}  // namespace veil::deploy
