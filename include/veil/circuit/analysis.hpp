// Analyses of a circuit (ranges, encoding width, noise), its statistics, and the choice of
// TFHE parameters for it: what turns a Circuit into a CompiledCircuit the executors run.
//
// Encoding. Every encrypted value is an LWE ciphertext under the big key (dimension k*N)
// holding v * Delta_w (mod 2^64), Delta_w = 2^(63 - w), where w is the encoding width of the
// value's *segment*: the nodes joined by levelled operations and data movement (a linear
// combination keeps the scale of its operands). A lookup ends a segment and starts another:
// its table writes its outputs at the width of its own segment, whatever the width of the
// segment it reads. Levelled operations are exact modulo 2^(w+1); w only has to cover the
// values that are *read* in the segment: lookup inputs (after rounding) and outputs. The width
// of a segment is therefore the maximum of
//   - width(hi - lo) over its outputs (the client decodes the representative in [lo, ...)),
//   - t + p over the lookups reading it, where the lookup's input is known to be a multiple
//     of 2^t (round_bits) and p = width(hi/2^t - lo/2^t) is its *reading precision*,
//   - b over its exact round_bits(x, b),
// which is never more than the widest intermediate of the segment (an intermediate may wrap
// modulo 2^(w+1) without harm: every read value fits). Segments keep narrow outputs cheap to
// decode: a network's 8-bit output written by its last lookup does not inherit the 14 bits of
// the accumulators before it. In what follows W is the width of the segment in question.
//
// Lookups. A lookup whose input v has range [lo, hi] and t known zero low bits reads
// r = v / 2^t - lo / 2^t in [0, 2^p), p <= 8: the executor subtracts lo (a clear constant),
// multiplies by 2^(W - t - p) (so that r * Delta_p is the phase) and runs one KS-PBS with a
// 2^p-entry table computed from the clear tables (entry r is the table's value at
// v = (lo/2^t + r) * 2^t). The multiplication amplifies the input noise by 4^(W - t - p):
// the noise constraint of the lookup is (p, nu^2 * 4^(W - t - p)). A lookup whose input
// needs more than 8 bits is refused, naming it: a round_bits must come first.
// (With W == p this is the plain one-PBS lookup; the offset and the power of two make it
// work for signed inputs, for any range and for inputs narrower than W at no PBS cost.)
//
// round_bits(x, b). Exact, one PBS per dropped bit (bits already known to be zero cost
// nothing). For bit i (from the lowest unknown one to b-1), with u = x minus its bits below i
// (a multiple of 2^i, phase (u/2^i) * Delta_(W-i)): multiply by 2^(W-i) so bit i lands on
// the padding bit (phase bit * 2^63), add 2^61 (the middle of the half torus, so noise of
// either sign stays in it), KS-PBS through a 1-bit table whose both entries are
// +Delta_(W-i)/2 (the negacyclic half returns -Delta_(W-i)/2), then
// lsb = trivial(Delta_(W-i)/2) - out = bit * 2^i * Delta_W, and u -= lsb. Rounding to
// nearest adds 2^(b-1) first. Constraint of step i: (1, nu_i^2 * 4^(W-i)), nu_i^2 growing by
// one PBS output per step.
//
// Noise is counted in units of the variance of a PBS output (Var_BR); fresh inputs count 1
// (their variance glwe_std_dev^2 is far below Var_BR for any set the optimizer returns;
// compile() checks it). Outputs. An output known to be a multiple of 2^t (its range's
// trailing zeros: a multiplication by a power of two, or an approximate round_bits, whose
// low bits are not cleared under encryption) is decrypted by rounding the phase to the
// nearest multiple of 2^t * Delta_W, so it must decode at W - t bits: constraint
// (1, nu^2 * 4^(W-t-1)), which also counts the keyswitch and modulus-switch terms an output
// never sees (safe side). An approximate output decrypts to the nearest multiple except
// within the noise of a tie, like the lookups reading one.
//
// Circuits without lookups or round_bits are *levelled only*: their parameter set has k = 1
// and the smallest N >= 1024 whose (secure) fresh noise keeps every output correct at the
// error target; the rest of the set (n, decompositions) is a valid secure filler that no
// executor uses: CompiledCircuit::uses_bootstrapping is false and the FHE executor needs no
// evaluation keys (a client may skip generating them). W up to 60 bits is supported there.
//
// Thread safety: pure functions over values.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "veil/circuit/circuit.hpp"
#include "veil/tfhe/parameters.hpp"

namespace veil::circuit {

inline constexpr unsigned kMaxLookupPrecision = 8;
// Largest encoding width of a circuit with lookups or round_bits (the extraction tables
// need Delta_(W-i)/2 >= 1; noise limits real circuits far below this).
inline constexpr unsigned kMaxEncodingWidth = 48;

// Width of an unsigned integer: bits needed to write `span` (>= 1).
unsigned width_of_span(std::uint64_t span);

struct LookupInfo {
  std::uint32_t node = 0;
  std::int64_t elements = 0;
  unsigned precision = 0;        // p: the table has 2^p entries
  unsigned known_zero_bits = 0;  // t
  std::int64_t reduced_min = 0;  // lo / 2^t: entry r reads v = (reduced_min + r) * 2^t
  std::int64_t reduced_count = 0;  // the input's values: entries margin .. margin + reduced_count - 1
  // Boxes kept below the first value (and above the last): 1 for a plain (not shared) PBS
  // with neighbour reads, whose read one box past an end would otherwise wrap to the negated
  // other end; reduced_min then starts one step below the input's range.
  unsigned margin = 0;
  unsigned amplification_bits = 0;  // W - t - p
  unsigned input_width = 0;        // W of the segment read
  unsigned output_width = 0;       // width of the segment the table writes into
  double sq_norm2 = 0;           // input noise, units of Var_BR, before amplification
  double constraint_sq_norm2 = 0;  // sq_norm2 * 4^amplification_bits
  // Shared rotations (lookup_per_element_shared): one blind rotation per distinct input
  // ciphertext (`rotations` of them, the PBS count), and every output carries
  // output_sq_norm2 = the largest multi_value_norm2 of its tables instead of 1.
  bool shared = false;
  std::int64_t rotations = 0;  // = elements unless shared
  double output_sq_norm2 = 1;
  // Approximate reads (circuit.hpp, lookup): > 0 when a read may return a neighbouring entry
  // with probability up to 2^-neighbour_log2; its constraint then carries that probability
  // (compile() keeps reads two entries away within the circuit's target).
  unsigned neighbour_log2 = 0;
};

// The 2^p entries a lookup's table T takes at its reduced inputs (entry r reads
// v = (reduced_min + r) * 2^t; the entries past either end of the input's range, margins
// included, repeat that end's value, which no exact read reaches and which keeps a shared
// rotation's jumps few): what the PBS's test polynomial holds, box by box.
std::vector<std::int64_t> lookup_entries(const Table& table, const LookupInfo& info);

// Multi-value bootstrapping (docs/formats/circuit.md, "Shared rotations"). One blind rotation
// of P0, the constant polynomial Delta/2, by the input's phase; its coefficient read at shift
// m * box is +Delta/2 when the input's entry r >= m and -Delta/2 when r < m, for every r in
// [-1, 2^p] (one box beyond either end included: the negacyclic wrap flips no term with
// 1 <= m <= 2^p - 1). Entries F are then
//   F_r = base / 2 + sum_m jump_m * (+-1/2),  base = F_0 + F_last,  jump_m = F_m - F_(m-1),
// a clear constant plus one sample extraction per jump, and a read one box beyond an end
// returns that end's entry.
struct MultiValueTerm {
  std::size_t entry = 0;  // m >= 1
  std::int64_t factor = 0;
};
struct MultiValueForm {
  std::int64_t base = 0;  // in units of Delta/2: added in the clear
  std::vector<MultiValueTerm> jumps;
};
MultiValueForm multi_value_form(const std::vector<std::int64_t>& entries);
// sum_m jump_m^2: the output carries this times a PBS output's noise (1 for a step).
double multi_value_norm2(const std::vector<std::int64_t>& entries);

// For a lookup with shared rotations: per element, the element whose blind rotation it
// reads (the first element reading the same ciphertext: elements of a matmul by one-hot
// 0/1 columns that copy the same input element; every other element leads itself).
std::vector<std::uint32_t> shared_rotation_leaders(const Circuit& circuit, std::uint32_t lookup_id);

struct RoundBitsInfo {
  std::uint32_t node = 0;
  std::int64_t elements = 0;
  unsigned first_bit = 0;  // bits below are known zero: no PBS for them
  unsigned bits = 0;       // node's b: steps for bits first_bit .. bits-1
  bool nearest = false;
  unsigned width = 0;  // W of its segment
  double input_sq_norm2 = 0;
  std::vector<double> step_constraint_sq_norm2;  // one per step
  std::size_t steps() const { return bits > first_bit ? bits - first_bit : 0; }
};

struct CircuitStatistics {
  std::map<unsigned, std::int64_t> lookups_by_precision;  // PBS counts of lookups, by p
  std::int64_t lookup_pbs = 0;
  std::int64_t extraction_pbs = 0;  // PBS spent by round_bits
  std::int64_t total_pbs = 0;
  std::int64_t levelled_ops = 0;  // ciphertext multiply-adds / adds of the levelled program
  std::int64_t encrypted_inputs = 0, encrypted_outputs = 0;  // ciphertexts
  unsigned encoding_width = 0;    // the widest segment's W
  unsigned max_value_bits = 0;    // widest intermediate (signed widths include the sign)
  unsigned max_lookup_precision = 0;
  double max_lookup_sq_norm2 = 0;  // largest constraint, units of Var_BR
  std::size_t pbs_depth = 0;      // sequential PBS waves
  // Approximate lookups (neighbour reads): their PBS, and, set by compile(), the largest
  // probability that one of them reads a neighbouring entry under the chosen parameters.
  std::int64_t approximate_pbs = 0;
  std::optional<double> log2_neighbour_read_p;
  // Set by compile(): the error probability of the whole circuit under its parameters.
  std::optional<double> predicted_p_error;
  std::optional<double> log2_predicted_p_error;
  std::string parameters;         // ParameterSet::describe(), when compiled
  std::vector<std::string> warnings;

  // A few lines a person reads: counts, widths, error, warnings.
  std::string to_string() const;
};

struct CircuitAnalysis {
  std::vector<ValueRange> ranges;   // per node
  std::vector<double> sq_norm2;     // per node: max noise over its elements, units of Var_BR
  std::vector<unsigned> pbs_depth;  // per node: PBS waves before the node's value is ready
  std::vector<unsigned> widths;     // per node: the encoding width of its segment
  unsigned encoding_width = 0;      // max over widths
  std::vector<LookupInfo> lookups;
  std::vector<RoundBitsInfo> round_bits;
  std::vector<tfhe::NoiseConstraint> constraints;  // deduplicated: max sq_norm2 per precision
  CircuitStatistics statistics;
  bool uses_bootstrapping() const { return !lookups.empty() || !round_bits.empty(); }
};

// Known zero low bits t of output node `node` (at most W - 1): its decryption rounds to a
// multiple of 2^t and reads W - t bits.
unsigned output_step_bits(const CircuitAnalysis& a, std::uint32_t node);

// Runs every analysis. Throws std::invalid_argument naming the node when the circuit is
// malformed, a value leaves +-2^62, a lookup needs more than 8 bits of precision, or the
// encoding width exceeds what the executors support.
CircuitAnalysis analyze(const Circuit& circuit);

// Runs `samples` (each a full set of inputs) through the clear executor and returns the
// circuit with every node's range_hint set to the observed range. Values outside the
// calibration set are then read modulo 2^(p+1) by the FHE executor: use only with
// representative data (this is Concrete's "inputset" behaviour).
Circuit calibrate(Circuit circuit, const std::vector<std::vector<Tensor>>& samples);

struct CompileOptions {
  double p_error = 0x1.0p-40;           // per PBS (and per output ciphertext)
  std::optional<double> global_p_error;  // whole circuit instead: split evenly over PBS + outputs
  unsigned security_bits = 128;
  // Search space (message_bits, sq_norm2, p_error ignored). The blind rotation is classical or
  // multi-bit, whichever the cost model prefers for the circuit (tfhe::kAutoGrouping).
  tfhe::OptimizerOptions search = [] {
    tfhe::OptimizerOptions o;
    o.grouping = tfhe::kAutoGrouping;
    return o;
  }();
};

struct CompiledCircuit {
  Circuit circuit;
  CircuitAnalysis analysis;
  tfhe::ParameterSet params;
  bool uses_bootstrapping = true;  // false: levelled only, evaluation keys are never used
  unsigned encoding_width() const { return analysis.encoding_width; }
};

// Chooses the parameters with the engine's optimizer. Throws std::invalid_argument when
// the analysis refuses the circuit or no secure set meets the error target (the message
// names the most demanding lookup).
CompiledCircuit compile(Circuit circuit, const CompileOptions& options = {});
// With a given parameter set (tests with toy sets; a set chosen for several circuits).
// Checks that every lookup's table fits its polynomial size; does not check noise (the
// statistics say what error probability the set gives).
CompiledCircuit compile_with_parameters(Circuit circuit, const tfhe::ParameterSet& params);

// How outputs travel back to the client (the deploy layer's answers). Output o, of width W
// with t known zero low bits, decrypts wrong when its phase noise reaches half of one step
// 2^(64 - W - 1 + t). A bootstrapped circuit's output either is keyswitched to the small key
// (dimension n) or stays under the big key (k*N); a levelled one's stays under the big key.
// Then each ciphertext is modulus-switched to 2^b (tfhe::modulus_switch_lwe_ciphertext_list)
// and b bits a word travel. The read's variance:
//   nu_o^2 Var_BR + Var_KS + Var_MS(n, b)       (keyswitched; nu_o^2 = analysis.sq_norm2[o])
//   nu_o^2 Var_BR + Var_MS(kN, b)               (bootstrapped, big key)
//   nu_o^2 sigma_glwe^2 + Var_MS(kN, b)          (levelled)
// with Var_MS(d, b) = tfhe::modulus_switch_variance_to_bits (b = 64: no switch, no term).
struct OutputTransport {
  bool keyswitch = false;     // to the small key first
  unsigned modulus_bits = 64;  // 1..63 after planning
};
// Per output, the form of fewest bytes, (dimension + 1) * b bits, whose read errs with
// probability at most p_error and whose variance stays within what the clear simulation of
// approximate reads assumes for a bootstrapped circuit's outputs (variance_at_blind_rotation_
// input of nu_o^2: an approximately rounded output is decoded anywhere in its step, so any
// added noise moves its rounding); where no form meets both, the big key with the fewest bits
// whose switch adds at most 1/64 to the read's variance.
std::vector<OutputTransport> plan_output_transport(const CompiledCircuit& compiled, double p_error);
// Packing a row's outputs into one GLWE answer (tfhe/packing.hpp): whether it pays and with
// which packing keyswitch. For a bootstrapped circuit of m >= 2 output elements: N' the
// smallest power of two >= m, and among the decompositions of at most 4 levels, the one whose
// answer needs the fewest bits b (every output's read within p_error and within the variance
// its clear simulation assumes, as plan_output_transport), then the fewest levels (the key).
// The answer key is first taken as long and as noisy as the big key (k'N' = k*N), then
// shorter, every multiple of max(N', 32) coefficients that the curve covers (450 and up), at
// the noise the security curve of `security_bits` (the compile's) asks for each length: the shortest packed answer wins among those whose
// packing key and server work (l (k'N' + N') multiply-adds per output and key input) are no
// larger than the full-length key's, then the least work; with `max_key_bytes` (0: none) only
// packing keys of at most that many seeded bytes are considered. `packed` when the packed answer is smaller than the unpacked one and the packing key's
// seeded bytes are repaid within max_break_even_rows rows.
struct AnswerPacking {
  bool packed = false;
  std::size_t outputs = 0;           // m, output elements a row
  unsigned polynomial_size = 0;      // N'
  unsigned glwe_dimension = 0;       // k' of a shorter answer key; 0: k*N / N' (ParameterSet's answer_key_dimension)
  double std_dev = 0;                // that key's noise; 0: glwe_std_dev (ParameterSet's answer_std_dev)
  unsigned base_log = 0, level_count = 0, modulus_bits = 0;
  std::uint64_t packed_bytes = 0;    // a row's packed answer, its frame included
  std::uint64_t unpacked_bytes = 0;  // a row's answer as `transport` sends it, frames included
  std::uint64_t key_bytes = 0;       // the packing key's share of the evaluation keys
  double log2_error = 0;             // of some output element of a row decrypting wrong, packed
  std::string reason;                // why not packed (empty when packed)
  // Rows after which the packing key has paid for itself (infinity when packing saves nothing).
  double break_even_rows() const;
};
AnswerPacking plan_answer_packing(const CompiledCircuit& compiled, const std::vector<OutputTransport>& transport,
                                  double p_error, double max_break_even_rows, unsigned security_bits = 128,
                                  std::uint64_t max_key_bytes = 0);

// log2 of the probability that some output element decrypts wrong when sent as `transport`.
double log2_output_read_error(const CompiledCircuit& compiled, const std::vector<OutputTransport>& transport);
// The error probability per read (PBS or output ciphertext) that compile() targets for these
// options: options.p_error, or global_p_error split evenly over the PBS and the outputs.
double per_read_p_error(const CompiledCircuit& compiled, const CompileOptions& options);

// For simulating FHE in the clear (run_clear_noisy): per node, the standard deviation, in
// units of the node's value, of the phase noise an approximate round_bits node's readers see:
// the lookups reading it (the variance at their blind-rotation input, lifted as the lookup
// lifts it) and the outputs it is (their decryption, counted with the keyswitch and
// modulus-switch terms as the output constraint is: a slight overestimate). The largest over
// its readers. For an approximate lookup (neighbour reads): the standard deviation of its
// own reads, in units of its input's step (2^t). 0 for every other node, and everywhere for
// a levelled-only circuit.
std::vector<double> approximate_read_std_dev(const CompiledCircuit& compiled);

// The circuit's error probability under `params` (every PBS and output read), log2.
double log2_circuit_error_probability(const CircuitAnalysis& analysis, const tfhe::ParameterSet& params,
                                      bool uses_bootstrapping);

}  // namespace veil::circuit
