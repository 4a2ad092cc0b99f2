// ModelClient (model.hpp): the client half, which the WebAssembly build (wasm/) also compiles,
// so it stands apart from ModelDev (the compiler) and ModelServer (the executor).
#include <nlohmann/json.hpp>

#include "deploy_internal.hpp"
#include "veil/tfhe/packing.hpp"
#include "veil/circuit/fhe_executor.hpp"
#include "veil/deploy/model.hpp"
#include "veil/tfhe/sha256.hpp"

namespace veil::deploy {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace internal;

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
    // Key generation proper is nearly all of the time: 0.02 to 0.98 of the progress.
    tfhe::KeygenOptions options;
    if (progress) options.progress = [&](double f) { progress("evaluation keys", 0.02 + 0.96 * f); };
    const tfhe::SeededEvaluationKeys seeded = tfhe::generate_seeded_evaluation_keys(*keys.secret, options);
    if (progress) progress("evaluation keys", 0.98);
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
  std::optional<tfhe::GlweSecretKey> answer_key;
  std::vector<std::vector<circuit::Tensor>> out;
  out.reserve(rows.size());
  for (std::size_t r = 0; r < rows.size(); ++r) {
    std::vector<circuit::EncryptedTensor> tensors;
    if (rows[r].packed) {
      // The row's output elements, output after output, checked before unpacking them.
      std::size_t expected = 0;
      for (const auto& o : sig.outputs) expected += static_cast<std::size_t>(circuit::element_count(o.shape));
      if (rows[r].packed->count != expected)
        throw EnvelopeError("encrypted output batch: row " + std::to_string(r) + " packs " +
                            std::to_string(rows[r].packed->count) + " output elements, the model has " +
                            std::to_string(expected));
      const tfhe::LweCiphertextList all = tfhe::unpack_answer(*rows[r].packed);
      std::size_t at = 0;
      for (const auto& o : sig.outputs) {
        const std::size_t count = static_cast<std::size_t>(circuit::element_count(o.shape));
        tfhe::LweCiphertextList part(all.dimension(), count);
        for (std::size_t c = 0; c < count; ++c, ++at) {
          const auto from = all[at];
          std::copy(from.begin(), from.end(), part[c].begin());
        }
        tensors.push_back({o.shape, std::move(part)});
      }
      if (!answer_key) answer_key = tfhe::answer_secret_key(*secret_);
      out.push_back(circuit::decrypt_outputs(sig, *secret_, tensors, &*answer_key));
      continue;
    }
    if (rows[r].tensors.size() != sig.outputs.size())
      throw EnvelopeError("encrypted output batch: row " + std::to_string(r) + " holds " + std::to_string(rows[r].tensors.size()) +
                          " tensors, the model has " + std::to_string(sig.outputs.size()) + " outputs");
    for (std::size_t o = 0; o < rows[r].tensors.size(); ++o) tensors.push_back({sig.outputs[o].shape, rows[r].tensors[o]});
    out.push_back(circuit::decrypt_outputs(sig, *secret_, tensors));
  }
  return out;
}

ml::Predictions ModelClient::deserialize_decrypt_dequantize(std::span<const std::uint8_t> output_batch) const {
  return ml::postprocess(processing_, decrypt_raw(output_batch));
}

}  // namespace veil::deploy
