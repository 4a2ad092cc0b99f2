// The FHE executor and the client-side encoding: runs a CompiledCircuit on encrypted inputs
// with evaluation keys only, with the semantics of the clear executor (clear_executor.hpp).
//
// Encoding (analysis.hpp): value v of any node is an LWE ciphertext under the big key
// (dimension k*N) of v * Delta_w mod 2^64, Delta_w = 2^(63 - w), w the encoding width of the
// node's segment. The client encrypts inputs that way and decodes an output as the
// representative of round(phase / Delta_w) mod 2^(w+1) that lies in the output's range
// [lo, lo + 2^(w+1)).
//
// Execution: nodes run in topological order. Levelled nodes (add, sub, constants, matmul,
// conv2d, sum) are ciphertext multiply-adds row by row, parallel over rows; data movement
// copies ciphertexts; every lookup node is one batch KS-PBS over its elements on all cores
// (over all rows' elements with run_rows); round_bits is one batch per extracted bit. A
// node's ciphertexts are released after its last use, so peak memory follows the circuit's
// widest cut, not its size.
//
// Thread safety: an FheExecutor is immutable after construction; run() may be called
// concurrently from several threads (each call owns its buffers).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "veil/circuit/analysis.hpp"
#include "veil/circuit/tensor.hpp"
#include "veil/tfhe/entities.hpp"
#include "veil/tfhe/keys.hpp"
#include "veil/tfhe/pbs.hpp"

namespace veil::circuit {

// One ciphertext per element, row-major, under the big key of the circuit's parameter set.
struct EncryptedTensor {
  Shape shape;
  tfhe::LweCiphertextList ciphertexts;
};

// ---- client side (needs the secret keys) ----

// Everything a client needs to encrypt inputs and decode outputs, without the circuit: the
// parameter set, the encoding width and, per input and output, its shape and value range
// (client.specs.json carries exactly this).
struct TensorSignature {
  std::string name;
  Shape shape;
  std::int64_t lo = 0, hi = 0;
  unsigned width = 0;  // encoding width of its segment (analysis.hpp)
  // Outputs: known zero low bits t (output_step_bits): decryption rounds to a multiple of 2^t.
  unsigned step_bits = 0;
  friend bool operator==(const TensorSignature&, const TensorSignature&) = default;
};
struct CircuitSignature {
  tfhe::ParameterSet params;
  unsigned encoding_width = 0;
  bool uses_bootstrapping = true;
  std::vector<TensorSignature> inputs;
  std::vector<TensorSignature> outputs;
  friend bool operator==(const CircuitSignature&, const CircuitSignature&) = default;
};
CircuitSignature signature_of(const CompiledCircuit& circuit);

std::vector<tfhe::SeededLweCiphertextList> encrypt_inputs(const CircuitSignature& signature,
                                                          const tfhe::SecretKeys& keys,
                                                          const std::vector<Tensor>& inputs);
// `answer_key` (tfhe::answer_secret_key): every output was unpacked from a packed answer and
// is under it.
std::vector<Tensor> decrypt_outputs(const CircuitSignature& signature, const tfhe::SecretKeys& keys,
                                    const std::vector<EncryptedTensor>& outputs,
                                    const tfhe::GlweSecretKey* answer_key = nullptr);

// Encrypts one tensor per circuit input (circuit.inputs() order) in seeded form: 8 bytes per
// element plus a seed. Throws std::invalid_argument naming the input on a count, shape or
// range mismatch, or when the keys' parameter set is not the circuit's.
std::vector<tfhe::SeededLweCiphertextList> encrypt_inputs(const CompiledCircuit& circuit,
                                                          const tfhe::SecretKeys& keys,
                                                          const std::vector<Tensor>& inputs);
// Expands seeded inputs (server side; checks dimension and element counts against the
// circuit's inputs, throwing std::invalid_argument naming the input).
std::vector<EncryptedTensor> expand_inputs(const CompiledCircuit& circuit,
                                           const std::vector<tfhe::SeededLweCiphertextList>& inputs);
// Decrypts and decodes one tensor per output, under the big key or (dimension n) keyswitched
// to the small key. Throws std::invalid_argument on a count, shape or dimension mismatch.
std::vector<Tensor> decrypt_outputs(const CompiledCircuit& circuit, const tfhe::SecretKeys& keys,
                                    const std::vector<EncryptedTensor>& outputs);

// ---- server side ----

struct ExecutorOptions {
  unsigned threads = 0;  // 0: all hardware threads
};

// What one run did: for benchmarks and metrics.
struct ExecutionStats {
  std::int64_t pbs = 0;          // KS-PBS performed
  double pbs_seconds = 0;        // wall time inside batch KS-PBS
  double levelled_seconds = 0;   // wall time of levelled operations and data movement
  double total_seconds = 0;
};

class FheExecutor {
 public:
  // Copies the circuit; `keys` must outlive the executor and may be null when !circuit.uses_bootstrapping.
  // Throws std::invalid_argument when keys are missing or belong to another parameter set.
  FheExecutor(const CompiledCircuit& circuit, const tfhe::EvaluationKeys* keys, ExecutorOptions options = {});
  // An executor whose keys come with each run (a server with one circuit and many clients).
  explicit FheExecutor(const CompiledCircuit& circuit, ExecutorOptions options = {});

  // One encrypted tensor per input, in circuit.inputs() order; returns one per output.
  // Throws std::invalid_argument naming the input on a count, shape or dimension mismatch.
  std::vector<EncryptedTensor> run(const std::vector<EncryptedTensor>& inputs, ExecutionStats* stats = nullptr) const;
  // With the given keys (null only for a levelled-only circuit); checks their parameter set.
  std::vector<EncryptedTensor> run(const std::vector<EncryptedTensor>& inputs, const tfhe::EvaluationKeys* keys,
                                   ExecutionStats* stats = nullptr) const;
  // Several rows (samples) at once, rows[r] as run()'s inputs; returns each row's outputs.
  // Every node runs over all rows together, so a lookup node is one batch KS-PBS over rows x
  // elements: a wave that fills the cores and the batch's key-sharing groups where one row's
  // node has few elements. Results equal run() row by row. Memory and the time between two
  // nodes grow with the rows: a caller bounds them (wave_rows). `between_nodes`, when set, is
  // called before each node and may throw to abandon the run (deadlines, cancellation).
  // Throws std::invalid_argument naming the input (and the row, when there are several) on a
  // mismatch, or when `rows` is empty.
  std::vector<std::vector<EncryptedTensor>> run_rows(std::span<const std::vector<EncryptedTensor>> rows,
                                                     const tfhe::EvaluationKeys* keys, ExecutionStats* stats = nullptr,
                                                     const std::function<void()>& between_nodes = {}) const;
  // How many rows one run_rows call should take so that the circuit's largest node, over all
  // rows, holds at most `memory_bytes` of ciphertexts (at least 1). A node's working buffers
  // (a lookup's rotated inputs and accumulators, round_bits' probes) come on top.
  std::size_t wave_rows(std::size_t memory_bytes) const;

  const CompiledCircuit& circuit() const { return circuit_; }

 private:
  struct Lowered;  // per-node precomputed maps and lookup tables
  CompiledCircuit circuit_;
  const tfhe::EvaluationKeys* keys_;
  ExecutorOptions options_;
  std::shared_ptr<const Lowered> lowered_;
};

}  // namespace veil::circuit
