// Veil's public API: private inference in three roles, as Concrete ML's deployment classes
// (FHEModelDev, FHEModelClient, FHEModelServer) divide it.
//
//   CompiledModel  (development machine) a trained model and calibration rows, quantized and
//                  compiled into a circuit under TFHE parameters; saved as the three
//                  artifacts client.zip, server.zip and serialized_processing.json.
//   Client         (the data owner) reads client.zip + serialized_processing.json, makes a
//                  ClientKeys (the secret key stays with it; the evaluation keys go to the
//                  server once), encrypts rows and decrypts answers into predictions.
//   Server         (the untrusted host) reads server.zip, turns a client's evaluation-key
//                  bytes into ServerKeys once, and answers encrypted inputs with encrypted
//                  outputs it cannot read.
//
// Everything that crosses between the roles is bytes (std::vector<std::uint8_t>): evaluation
// keys, inputs and outputs, each in an envelope stamped with the model it belongs to
// (docs/formats/artifacts.md). Files are an option, never a requirement: a browser or a phone
// gives the client's artifacts as bytes.
//
// Errors. Anything wrong with input the program does not control (a file, bytes from the
// network: missing, truncated, corrupted, another model's) throws veil::InputError (or a class
// derived from it) with a message naming what is wrong. A broken contract (rows of the wrong
// width, keys used before they exist, an option out of range) throws std::invalid_argument or
// std::logic_error.
//
// Objects are handles to immutable shared state: copying one is cheap, and const member
// functions may be called from several threads at once. Client's key methods and the
// assignment operators are the only mutations. A moved-from object may only be destroyed or
// assigned to; any other use throws std::logic_error.
//
// This header includes only standard headers and Veil's error and version headers: the
// engine, its kernels and the JSON library stay behind it (veil_deploy's sources).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "veil/error.hpp"
#include "veil/version.hpp"

namespace veil {

using Bytes = std::vector<std::uint8_t>;

// A dense row-major array of doubles: shape[0] counts the samples (rows), and the other
// dimensions hold one sample, e.g. (N, 30) for tabular rows or (N, 1, 8, 8) for images. A
// sample's values are read in row-major order, as NumPy's C order and PyTorch store them.
struct Array {
  std::vector<std::size_t> shape;
  std::vector<double> values;

  Array() = default;
  // Throws std::invalid_argument unless the values are as many as the shape says.
  Array(std::vector<std::size_t> shape, std::vector<double> values);
  // rows x cols from row-major values.
  static Array matrix(std::size_t rows, std::size_t cols, std::vector<double> values);
  // Rows from a CSV file (a header line is allowed) or a NumPy .npy file of any rank.
  // Throws InputError naming the file and what is wrong.
  static Array load(const std::string& path);

  std::size_t rows() const { return shape.empty() ? 0 : shape[0]; }
  // Values per sample: the product of shape[1:] (1 for a one-dimensional array).
  std::size_t row_size() const;
};

enum class Task { kClassification, kRegression };

// One prediction per row, as scikit-learn's predict / predict_proba give them.
struct Predictions {
  Task task = Task::kClassification;
  std::vector<std::int64_t> labels;  // classifiers: the predicted class of each row
  Array scores;                      // classifiers: rows x classes (probabilities, or decision values)
  Array values;                      // regressors: rows x outputs
};

// How a CompiledModel::predict runs.
enum class Fhe {
  kDisable,   // the quantized circuit in the clear: what FHE computes when no lookup errs
  kSimulate,  // the same, with the approximate reads (neighbouring codes) drawn at random as
              // the chosen parameters make them happen
  kExecute,   // really encrypted: keys, encryption, the circuit under TFHE, decryption
};

// How a model is quantized and compiled. Zero widths choose the model family's default.
struct CompileOptions {
  // Bits of inputs, weights and activations (2 to 8); 0: 8 for linear models, 6 for trees
  // and networks, for k-nearest neighbours the most (up to 4) whose squared distances a
  // lookup reads.
  unsigned n_bits = 0;
  // Networks: bits a lookup reads after rounding (2 to 8); 0: the fewest, at most 6, whose
  // predictions on the calibration rows stay within one point of 6 bits.
  unsigned lookup_bits = 0;
  // Error probability of one lookup (PBS), or, when global_p_error > 0, of the whole circuit
  // split evenly over its lookups.
  double p_error = 0x1.0p-40;
  double global_p_error = 0;
  // Trees read each comparison exactly (no neighbouring code; slower, larger parameters).
  bool exact_tree_comparisons = false;
  // Networks read each lookup exactly; k-nearest neighbours compute exact distances (with
  // fewer input bits: FHE then equals the clear model bit for bit).
  bool exact_network_reads = false;
};

// What a compiled circuit costs and how reliable it is.
struct Statistics {
  std::int64_t total_pbs = 0;  // programmable bootstraps per row
  struct Lookups {
    unsigned precision = 0;  // bits a lookup reads
    std::int64_t pbs = 0;
  };
  std::vector<Lookups> pbs_by_precision;
  std::int64_t levelled_ops = 0;   // ciphertext multiply-adds per row
  std::size_t pbs_depth = 0;       // sequential waves of bootstraps
  double predicted_p_error = 0;    // probability that a row's circuit errs (0: no lookups)
  std::string parameters;          // the TFHE parameter set, in words
  std::uint64_t evaluation_key_bytes = 0;  // what a client uploads once (seeded keys)
  std::vector<std::string> warnings;
  std::string text;                // all of the above in a few lines for people
};

enum class Overwrite { kRefuse, kReplace };

// The development role: a trained model compiled for calibration data.
class CompiledModel {
 public:
  // `model`: a .onnx file, an XGBoost JSON model or a Veil scikit-learn JSON model (the
  // exporter's). Throws InputError for a file Veil cannot read, std::invalid_argument for a
  // model or calibration set it cannot compile (the message names why).
  static CompiledModel compile(const std::string& model_path, const Array& calibration, const CompileOptions& options = {});
  // The same for a model's bytes (ONNX, or either JSON format).
  static CompiledModel compile(std::span<const std::uint8_t> model_bytes, const Array& calibration,
                               const CompileOptions& options = {});

  // Writes DIR/client.zip, DIR/server.zip and DIR/serialized_processing.json (creating DIR),
  // each atomically. With Overwrite::kRefuse an existing artifact is an InputError.
  void save(const std::string& dir, Overwrite overwrite = Overwrite::kRefuse) const;

  // Predictions for rows (as Client::encrypt takes them: (N, ...) or one sample). kExecute makes
  // keys on first use (seconds for models with lookups) and keeps them for later calls.
  Predictions predict(const Array& rows, Fhe fhe = Fhe::kDisable) const;

  Statistics statistics() const;
  std::string model_id() const;  // 32 hex digits, shared by the three artifacts
  std::size_t n_features() const;
  Task task() const;

  ~CompiledModel();
  CompiledModel(const CompiledModel&);
  CompiledModel& operator=(const CompiledModel&);
  CompiledModel(CompiledModel&&) noexcept;
  CompiledModel& operator=(CompiledModel&&) noexcept;

 private:
  struct Impl;
  explicit CompiledModel(Impl* impl);
  Impl& self() const;  // std::logic_error on a moved-from object
  Impl* impl_;
};

// Reports key-generation progress: `step` names it, `fraction` runs from 0 to 1.
class ProgressListener {
 public:
  virtual ~ProgressListener() = default;
  virtual void on_progress(const char* step, double fraction) = 0;
};

// A client's keys for one model: the secret key, which never leaves the client, and the
// evaluation keys the server needs.
class ClientKeys {
 public:
  // The evaluation keys as the server takes them (Server::load_keys, POST .../keys): seeded,
  // so about half the size of the expanded keys the server computes from them.
  const Bytes& evaluation_keys() const;
  // The secret key in its envelope, for the client's own storage (encrypt it at rest: it
  // decrypts everything). Never send it to a server.
  Bytes export_secret_key() const;
  std::string model_id() const;

  ~ClientKeys();
  ClientKeys(const ClientKeys&);
  ClientKeys& operator=(const ClientKeys&);
  ClientKeys(ClientKeys&&) noexcept;
  ClientKeys& operator=(ClientKeys&&) noexcept;

 private:
  friend class Client;
  struct Impl;
  explicit ClientKeys(Impl* impl);
  Impl& self() const;  // std::logic_error on a moved-from object
  Impl* impl_;
};

// The client role.
class Client {
 public:
  // Reads DIR/client.zip and DIR/serialized_processing.json and checks that they belong
  // together. Throws InputError naming the file and the problem.
  static Client load(const std::string& dir);
  // The same from the two artifacts' bytes (a browser fetches them).
  static Client from_bytes(std::span<const std::uint8_t> client_zip, std::span<const std::uint8_t> processing_json);

  // Makes a fresh key set from the operating system's CSPRNG and uses it from now on
  // (seconds for a model with lookups), telling `progress` how far it is.
  ClientKeys generate_keys();
  ClientKeys generate_keys(ProgressListener& progress);
  // Uses keys made earlier (for this model: InputError otherwise).
  void use_keys(const ClientKeys& keys);
  // A key set from ClientKeys::export_secret_key and ClientKeys::evaluation_keys bytes kept by
  // the client (InputError for another model's or damaged bytes); use_keys makes it current.
  ClientKeys import_keys(std::span<const std::uint8_t> secret_key, std::span<const std::uint8_t> evaluation_keys) const;
  // Keys kept in a directory: DIR/secret.key (mode 0600, DIR 0700) and DIR/evaluation.keys,
  // as the veil CLI keeps them. save_keys writes the current keys and refuses to replace
  // keys in DIR unless kReplace; load_keys reads them (InputError for another model's) and
  // uses them.
  void save_keys(const std::string& dir, Overwrite overwrite = Overwrite::kRefuse) const;
  ClientKeys load_keys(const std::string& dir);

  // Quantizes and encrypts rows: shape (N, ...) with N samples of input_shape() (or any shape
  // with as many values per sample), or one sample of exactly input_shape(); one input
  // envelope for all rows.
  // REQUIRES keys (std::logic_error otherwise); std::invalid_argument for a wrong width.
  Bytes encrypt(const Array& rows) const;
  // Decrypts an output envelope and post-processes it into predictions. InputError for
  // bytes that are not this model's answer.
  Predictions decrypt(std::span<const std::uint8_t> output) const;

  bool has_keys() const;
  std::string model_id() const;
  std::size_t n_features() const;
  std::vector<std::size_t> input_shape() const;  // one sample's shape, e.g. (30,) or (1, 8, 8)
  Task task() const;
  std::vector<std::int64_t> classes() const;     // classifiers' labels, in score order
  Statistics statistics() const;

  ~Client();
  Client(const Client&);
  Client& operator=(const Client&);
  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;

 private:
  struct Impl;
  explicit Client(Impl* impl);
  Impl& self() const;  // std::logic_error on a moved-from object
  Impl* impl_;
};

// A client's evaluation keys, parsed and expanded by the server (seconds for a large key
// set): load once per client, reuse for every request.
class ServerKeys {
 public:
  std::string model_id() const;

  ~ServerKeys();
  ServerKeys(const ServerKeys&);
  ServerKeys& operator=(const ServerKeys&);
  ServerKeys(ServerKeys&&) noexcept;
  ServerKeys& operator=(ServerKeys&&) noexcept;

 private:
  friend class Server;
  struct Impl;
  explicit ServerKeys(Impl* impl);
  Impl& self() const;  // std::logic_error on a moved-from object
  Impl* impl_;
};

struct RunResult {
  Bytes output;         // the output envelope
  std::size_t rows = 0;
  std::int64_t pbs = 0;  // bootstraps the run computed
  double seconds = 0;
};

// The server role.
class Server {
 public:
  // Reads DIR/server.zip (or the zip itself), or server.zip's bytes.
  static Server load(const std::string& dir_or_zip);
  static Server from_bytes(std::span<const std::uint8_t> server_zip);

  // InputError for keys of another model or malformed ones.
  ServerKeys load_keys(std::span<const std::uint8_t> evaluation_keys) const;
  // Runs the circuit on every row of an input envelope and returns the output envelope.
  // InputError for input of another model or malformed.
  Bytes run(std::span<const std::uint8_t> input, const ServerKeys& keys) const;
  // The same, with what the run did.
  RunResult run_with_stats(std::span<const std::uint8_t> input, const ServerKeys& keys) const;

  std::string model_id() const;
  bool needs_evaluation_keys() const;  // false for a model without lookups

  ~Server();
  Server(const Server&);
  Server& operator=(const Server&);
  Server(Server&&) noexcept;
  Server& operator=(Server&&) noexcept;

 private:
  struct Impl;
  explicit Server(Impl* impl);
  Impl& self() const;  // std::logic_error on a moved-from object
  Impl* impl_;
};

}  // namespace veil
