// The deploy layer, mirroring Concrete ML's FHEModelDev / FHEModelClient / FHEModelServer, with
// the engine's types in view (compiled circuits, processing, key objects) for Veil's own CLI and
// server. Programs that only deploy models use veil/veil.hpp, which hides all of that.
//
//   ModelDev     compiles a model with calibration data and saves the three artifacts
//                (client.zip, server.zip, serialized_processing.json) into a directory;
//   ModelClient  loads client.zip + serialized_processing.json, generates and keeps the
//                secret key (never in a file meant for the server), publishes evaluation keys,
//                quantizes + encrypts inputs and decrypts + dequantizes + post-processes outputs;
//   ModelServer  loads server.zip once and runs the circuit on encrypted batches with a
//                client's evaluation keys (expanded once, reused across calls and threads).
// The artifact formats are in docs/formats/artifacts.md; keys and ciphertexts travel in
// envelopes (envelope.hpp) stamped with the model id the three artifacts share.
//
// Errors: DeployError (a veil::InputError) for anything wrong with files or bytes (missing,
// corrupted, another model's, another version's), with a message naming the file and the
// problem; std::invalid_argument for bad arguments (rows of the wrong width, bad options).
// Thread safety: ModelServer::run and load_evaluation_keys are safe to call concurrently;
// ModelClient and ModelDev are single-threaded objects.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "veil/circuit/analysis.hpp"
#include "veil/error.hpp"
#include "veil/version.hpp"
#include "veil/circuit/fhe_executor.hpp"
#include "veil/deploy/envelope.hpp"
#include "veil/ml/data.hpp"
#include "veil/ml/model.hpp"
#include "veil/ml/processing.hpp"
#include "veil/ml/quantize.hpp"

namespace veil::deploy {

class DeployError : public veil::InputError {
 public:
  using veil::InputError::InputError;
};

inline constexpr int kArtifactFormatMajor = 1;
// 1.1: client.specs.json carries processing_sha256 (required from 1.1 on).
inline constexpr int kArtifactFormatMinor = 1;
inline constexpr const char* kVeilVersion = veil::kVersion;  // version.hpp, from CMake

inline constexpr const char* kClientZip = "client.zip";
inline constexpr const char* kServerZip = "server.zip";
inline constexpr const char* kProcessingJson = "serialized_processing.json";
inline constexpr const char* kSecretKeyFile = "secret.key";
inline constexpr const char* kEvaluationKeysFile = "evaluation.keys";

// client.specs.json: what a client needs to make keys and ciphertexts for one compiled model.
struct ClientSpecs {
  ModelId model_id{};
  circuit::CircuitSignature signature;
  unsigned security_bits = 128;
  circuit::CircuitStatistics statistics;
  // SHA-256 (64 lowercase hex digits) of the exact bytes of serialized_processing.json, which
  // ModelClient::load checks: an edited file would silently change every score. Empty only in
  // artifacts of format 1.0, written before the digest existed.
  std::string processing_sha256;
};

struct DevOptions {
  ml::QuantizationOptions quantization;
  circuit::CompileOptions compile;
  // Packed answers (tfhe/packing.hpp, circuit::plan_answer_packing): `pack_answers` unset packs
  // when the packing key is repaid within `packing_break_even_rows` rows of smaller answers;
  // true packs whenever it makes answers smaller; false never packs. Never past a key budget
  // (compile.search.max_key_bytes): the packing key is part of the evaluation keys.
  std::optional<bool> pack_answers;
  double packing_break_even_rows = 64;
};

struct SaveOptions {
  bool overwrite = false;  // replace artifacts already in the directory
};

class ModelDev {
 public:
  // Quantizes, lowers, analyses and chooses parameters. Throws std::invalid_argument naming
  // what cannot be compiled.
  static ModelDev compile(const ml::Model& model, const ml::Matrix& calibration, const DevOptions& options = {});
  // Loads the model (ml::load_model) and calibration rows (CSV or .npy) first.
  static ModelDev compile_files(const std::string& model_path, const std::string& calibration_path,
                                const DevOptions& options = {});

  // Writes DIR/client.zip, DIR/server.zip and DIR/serialized_processing.json (creating DIR),
  // each atomically. Refuses (DeployError) when one exists and !options.overwrite.
  void save(const std::filesystem::path& dir, const SaveOptions& options = {}) const;

  const circuit::CompiledCircuit& compiled() const { return compiled_; }
  const ml::Processing& processing() const { return processing_; }
  const ModelId& model_id() const { return model_id_; }
  std::string statistics() const { return compiled_.analysis.statistics.to_string(); }
  // Per output, how its answers travel (circuit::plan_output_transport at the compile's error
  // target; server.zip's answers.json).
  const std::vector<circuit::OutputTransport>& output_transport() const { return output_transport_; }
  // Whether and how a row's outputs travel packed into one GLWE (its `packed` decides; the
  // parameter set then carries the packing keyswitch).
  const circuit::AnswerPacking& answer_packing() const { return answer_packing_; }

 private:
  circuit::CompiledCircuit compiled_;
  ml::Processing processing_;
  ModelId model_id_{};
  std::vector<circuit::OutputTransport> output_transport_;
  circuit::AnswerPacking answer_packing_;
  unsigned security_bits_ = 128;  // the compile's; client.specs.json carries it to key generation
};

using Progress = std::function<void(const std::string& step, double fraction)>;

struct KeySizes {
  std::uint64_t secret_key_bytes = 0;
  std::uint64_t evaluation_keys_bytes = 0;  // the seeded file a client uploads
};

// A client's keys in memory: the secret key and the sealed evaluation-keys envelope.
struct KeySet {
  std::shared_ptr<const tfhe::SecretKeys> secret;
  Bytes evaluation_keys;
};

struct KeyGenOptions {
  // Replace the keys in the directory (another model's included) instead of reusing valid
  // ones for this model.
  bool replace_existing = false;
  Progress progress;
};

class ModelClient {
 public:
  // Loads DIR/client.zip and DIR/serialized_processing.json and checks they share a model id.
  static ModelClient load(const std::filesystem::path& dir);
  // The same from the two files' bytes, named in errors as given.
  static ModelClient from_bytes(std::span<const std::uint8_t> client_zip, std::span<const std::uint8_t> processing_json,
                                const std::string& zip_name = kClientZip, const std::string& processing_name = kProcessingJson);

  // Generates a secret key and the seeded evaluation keys into KEYDIR (secret.key with mode
  // 0600, evaluation.keys), unless valid ones for this model are there already and
  // !options.replace_existing. Returns the sizes. Keys for another model in KEYDIR are refused
  // unless replace_existing.
  KeySizes generate_keys(const std::filesystem::path& key_dir, const KeyGenOptions& options = {});
  // A fresh key set from the OS CSPRNG, in memory; use_keys makes it the client's.
  KeySet make_keys(const Progress& progress = {}) const;
  void use_keys(std::shared_ptr<const tfhe::SecretKeys> secret);
  // Opens a secret-keys envelope of this model (EnvelopeError otherwise).
  std::shared_ptr<const tfhe::SecretKeys> open_secret(std::span<const std::uint8_t> envelope) const;
  Bytes seal_secret(const tfhe::SecretKeys& secret) const;
  // Writes a key set into KEYDIR (created, mode 0700): secret.key (0600) and evaluation.keys.
  void save_keys(const std::filesystem::path& key_dir, const KeySet& keys) const;
  // Loads the secret key from KEYDIR (checking the model id).
  void load_keys(const std::filesystem::path& key_dir);
  bool has_keys() const { return secret_ != nullptr; }
  const std::shared_ptr<const tfhe::SecretKeys>& secret_keys() const { return secret_; }
  // The bytes of KEYDIR/evaluation.keys (checked to be this model's).
  static Bytes read_evaluation_keys(const std::filesystem::path& key_dir, const ModelId& model);
  // Checks that `bytes` are an evaluation-keys envelope of `model` (header only), naming
  // `source` in the DeployError otherwise.
  static void check_evaluation_keys(std::span<const std::uint8_t> bytes, const ModelId& model, const std::string& source);

  // Quantizes rows (n_features columns) and encrypts them: one input batch envelope.
  // REQUIRES: keys loaded or generated (throws std::logic_error otherwise).
  Bytes quantize_encrypt_serialize(const ml::Matrix& rows) const;
  // Decrypts an output batch envelope and post-processes it.
  ml::Predictions deserialize_decrypt_dequantize(std::span<const std::uint8_t> output_batch) const;
  // The decrypted integer outputs, before post-processing (rows x outputs).
  std::vector<std::vector<circuit::Tensor>> decrypt_raw(std::span<const std::uint8_t> output_batch) const;

  const ClientSpecs& specs() const { return specs_; }
  const ml::Processing& processing() const { return processing_; }
  const ModelId& model_id() const { return specs_.model_id; }

 private:
  ClientSpecs specs_;
  ml::Processing processing_;
  std::shared_ptr<const tfhe::SecretKeys> secret_;
};

// Stops a long run between steps: `cancelled` is asked before each node of the circuit (rows
// run in waves, every node over a wave's rows; say, whether the client that asked has gone),
// and the run gives up past `deadline`. Either throws RunCancelled; a run stopped so
// produces no output.
struct RunControl {
  std::function<bool()> cancelled;
  std::optional<std::chrono::steady_clock::time_point> deadline;
};

class RunCancelled : public std::runtime_error {
 public:
  RunCancelled(const std::string& what, bool timed_out) : std::runtime_error(what), timed_out_(timed_out) {}
  // True past the deadline, false when `cancelled` said so.
  bool timed_out() const { return timed_out_; }

 private:
  bool timed_out_;
};

struct RunStats {
  std::size_t rows = 0;
  std::int64_t pbs = 0;
  double pbs_seconds = 0;
  double total_seconds = 0;
};

class ModelServer {
 public:
  // Loads DIR/server.zip (or the given .zip path).
  static ModelServer load(const std::filesystem::path& dir_or_zip);
  // The same from server.zip's bytes; `source` names them in errors.
  static ModelServer from_bytes(std::span<const std::uint8_t> server_zip, const std::string& source = "server.zip");

  // Parses and expands a client's evaluation-keys envelope; the result is shared across runs.
  // A levelled-only model returns null (it needs no keys). Throws EnvelopeError / DeployError.
  std::shared_ptr<const tfhe::EvaluationKeys> load_evaluation_keys(std::span<const std::uint8_t> bytes) const;
  // Runs the circuit on every row of an input batch envelope; returns the output batch.
  // `keys` may be null only for a levelled-only model. Throws EnvelopeError for a batch of
  // another model or malformed, std::invalid_argument when it does not match the signature.
  // `control` may stop it between the circuit's nodes (RunCancelled).
  Bytes run(std::span<const std::uint8_t> input_batch, const tfhe::EvaluationKeys* keys, RunStats* stats = nullptr,
            const RunControl& control = {}) const;

  const ModelId& model_id() const { return model_id_; }
  const circuit::CompiledCircuit& compiled() const { return *compiled_; }
  bool needs_evaluation_keys() const { return compiled_->uses_bootstrapping; }
  // From server.zip's answers.json; empty for a server.zip written before it (answers then
  // travel keyswitched to the small key, 64 bits a word, as they did).
  const std::vector<circuit::OutputTransport>& output_transport() const { return output_transport_; }

 private:
  ModelId model_id_{};
  std::vector<circuit::OutputTransport> output_transport_;
  unsigned packed_modulus_bits_ = 0;  // answers.json's, when the parameter set packs answers
  std::shared_ptr<const circuit::CompiledCircuit> compiled_;
  std::shared_ptr<const circuit::FheExecutor> executor_;  // lowered once; keys come per run
};

// ---- artifact files (artifacts.cpp) ----

// versions.json of an artifact: {"veil", "artifact_format", "model_id"}; checks the major.
ModelId check_versions_json(const std::string& text, const std::string& source);
std::string make_versions_json(const ModelId& model);
std::string client_specs_to_json(const ClientSpecs& specs);
ClientSpecs client_specs_from_json(const std::string& text, const std::string& source);

// The largest zip file read_zip_member reads (it reads the whole file).
inline constexpr std::uint64_t kMaxZipFileBytes = std::uint64_t{4} << 30;
// Reads a member of a zip file (size-limited; Veil's own reader, zip_reader.hpp); throws
// DeployError naming the zip and member.
Bytes read_zip_member(const std::filesystem::path& zip, const std::string& member, std::uint64_t max_bytes);
// The same for a zip archive in memory, named `source` in errors.
Bytes read_zip_member(std::span<const std::uint8_t> zip, const std::string& source, const std::string& member,
                      std::uint64_t max_bytes);
// Writes a zip atomically (temporary file + rename).
void write_zip(const std::filesystem::path& zip, const std::vector<std::pair<std::string, Bytes>>& members);
// Reads / writes a whole file (atomically: temporary + rename; `mode` for new files).
Bytes read_file(const std::filesystem::path& path, std::uint64_t max_bytes);
void write_file_atomic(const std::filesystem::path& path, std::span<const std::uint8_t> bytes, unsigned mode = 0644);

// What a Veil file is, for `veil inspect`: one paragraph of text. When `artifact_dir` is
// given, says whether the file belongs with that model.
std::string inspect_file(const std::filesystem::path& path, const std::optional<std::filesystem::path>& artifact_dir);

}  // namespace veil::deploy
