// FHE execution of a compiled circuit (fhe_executor.hpp states the encoding; analysis.hpp
// the lowering of lookups and round_bits this file carries out).
#include "veil/circuit/fhe_executor.hpp"

#include <algorithm>
#include <chrono>
#include <functional>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>

#include "maps.hpp"
#include "veil/circuit/clear_executor.hpp"
#include "veil/tfhe/lwe.hpp"
#include "veil/tfhe/parallel.hpp"

namespace veil::circuit {

using tfhe::Torus;

namespace {

// Delta_W = 2^(63 - W): the scale of every value of a circuit of encoding width W.
Torus value_delta(unsigned width) { return Torus{1} << (63 - width); }

Torus encode_value(std::int64_t v, unsigned width) { return static_cast<Torus>(v) * value_delta(width); }

// The representative in [lo, lo + 2^(W+1)) of round(phase / (2^t Delta_W)) 2^t mod 2^(W+1):
// the nearest multiple of 2^t (t < W; t = 0 for most values).
std::int64_t decode_value(Torus phase, unsigned width, std::int64_t lo, unsigned step_bits) {
  const unsigned shift = 63 - width + step_bits;
  const Torus rounded = ((phase + (Torus{1} << shift >> 1)) >> shift) << step_bits;
  const Torus mask = width >= 63 ? ~Torus{0} : (Torus{1} << (width + 1)) - 1;
  const Torus offset = (rounded - static_cast<Torus>(lo)) & mask;
  return static_cast<std::int64_t>(static_cast<Torus>(lo) + offset);
}

std::size_t big_dimension(const tfhe::ParameterSet& p) { return p.glwe_dimension.value * p.polynomial_size.value; }

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string input_label(const Circuit& c, std::size_t index, std::uint32_t id) {
  const std::string& name = c.nodes[id].name;
  return "input " + std::to_string(index) + (name.empty() ? std::string{} : " '" + name + "'");
}

}  // namespace

// Everything about a node that does not depend on the ciphertexts: computed once.
struct FheExecutor::Lowered {
  struct LookupStep {
    std::vector<tfhe::LookupTable> tables;        // one per distinct table of the node
    std::vector<std::uint32_t> table_of_element;  // empty: tables[0] for all
    Torus offset = 0;                             // subtracted: encode(lo)
    std::uint64_t multiplier = 1;                 // 2^(W - t - p)
    // Shared rotations (multi-value): `tables` holds the one constant test polynomial P0;
    // rotation r rotates element rotated[r], and element e reads rotation rotation_of[e]
    // through its table's form: a clear constant plus the jumps (shift m * box for entry m).
    bool shared = false;
    std::vector<std::uint32_t> rotated;           // per rotation: the element it rotates
    std::vector<std::uint32_t> rotation_of;       // per element
    std::vector<MultiValueForm> forms;            // per node table
    Torus half_delta = 0;                         // Delta/2 of the output's width
    std::size_t box = 0;
  };
  struct RoundStep {
    unsigned first_bit = 0, bits = 0, width = 0;
    bool nearest = false;
    std::vector<tfhe::LookupTable> extraction;  // one per extracted bit
  };
  struct NodeProgram {
    detail::LinearMap linear;
    detail::GatherMap gather;
    bool alias = false;  // reshape or approximate round_bits: same ciphertexts as operand 0
    LookupStep lookup;
    RoundStep round;
  };
  std::vector<NodeProgram> nodes;
  std::vector<std::uint32_t> last_use;  // node id after which a value is no longer needed
};

namespace {

void check_keys(const CompiledCircuit& circuit, const tfhe::EvaluationKeys* keys) {
  if (!circuit.uses_bootstrapping) return;
  if (keys == nullptr)
    throw std::invalid_argument("FheExecutor: the circuit has lookups and needs evaluation keys; none were given");
  if (keys->params.id() != circuit.params.id())
    throw std::invalid_argument("FheExecutor: the evaluation keys are for parameter set " + keys->params.describe() +
                                ", the circuit was compiled for " + circuit.params.describe());
}

}  // namespace

FheExecutor::FheExecutor(const CompiledCircuit& circuit, const tfhe::EvaluationKeys* keys, ExecutorOptions options)
    : FheExecutor(circuit, options) {
  check_keys(circuit_, keys);
  keys_ = keys;
}

FheExecutor::FheExecutor(const CompiledCircuit& circuit, ExecutorOptions options)
    : circuit_(circuit), keys_(nullptr), options_(options) {
  const Circuit& c = circuit_.circuit;
  const CircuitAnalysis& a = circuit_.analysis;
  const tfhe::ParameterSet& params = circuit_.params;
  const tfhe::PolynomialSize big_n = params.polynomial_size;
  auto lowered = std::make_shared<Lowered>();
  lowered->nodes.resize(c.nodes.size());
  lowered->last_use.assign(c.nodes.size(), 0);
  for (std::uint32_t id = 0; id < c.nodes.size(); ++id)
    for (std::uint32_t op : c.nodes[id].operands) lowered->last_use[op] = std::max(lowered->last_use[op], id);
  for (std::uint32_t o : c.outputs) lowered->last_use[o] = std::numeric_limits<std::uint32_t>::max();

  std::size_t next_lookup = 0, next_round = 0;
  for (std::uint32_t id = 0; id < c.nodes.size(); ++id) {
    const Node& n = c.nodes[id];
    Lowered::NodeProgram& prog = lowered->nodes[id];
    if (detail::is_linear(n.kind)) {
      prog.linear = detail::linear_map(c, id);
    } else if (n.kind == OpKind::kReshape) {
      prog.alias = true;
    } else if (detail::is_gather(n.kind)) {
      prog.gather = detail::gather_map(c, id);
    } else if (n.kind == OpKind::kLookup) {
      const LookupInfo& info = a.lookups.at(next_lookup++);
      if (info.node != id) throw std::logic_error("FheExecutor: lookup analysis out of order");
      const std::size_t entries = std::size_t{1} << info.precision;
      if (info.shared) {
        // P0 = Delta/2 everywhere; table T is P0 * v_T (analysis.hpp, multi_value_norm2).
        const std::vector<Torus> constant(entries, value_delta(info.output_width) / 2);
        prog.lookup.tables.emplace_back(big_n, info.precision, constant);
        prog.lookup.shared = true;
        const std::vector<std::uint32_t> leader = shared_rotation_leaders(c, id);
        prog.lookup.rotation_of.resize(leader.size());
        for (std::size_t e = 0; e < leader.size(); ++e) {
          if (leader[e] == e) prog.lookup.rotated.push_back(static_cast<std::uint32_t>(e));
          prog.lookup.rotation_of[e] = leader[e] == e ? static_cast<std::uint32_t>(prog.lookup.rotated.size() - 1)
                                                      : prog.lookup.rotation_of[leader[e]];
        }
        prog.lookup.box = big_n.value >> info.precision;
        prog.lookup.half_delta = value_delta(info.output_width) / 2;
        for (const Table& table : n.tables) prog.lookup.forms.push_back(multi_value_form(lookup_entries(table, info)));
      } else {
        for (const Table& table : n.tables) {
          std::vector<Torus> outputs(entries, 0);
          const std::vector<std::int64_t> f = lookup_entries(table, info);
          for (std::size_t r = 0; r < entries; ++r) outputs[r] = encode_value(f[r], info.output_width);
          prog.lookup.tables.emplace_back(big_n, info.precision, outputs);
        }
      }
      prog.lookup.table_of_element = n.table_index;
      prog.lookup.offset = encode_value(info.reduced_min * (std::int64_t{1} << info.known_zero_bits), info.input_width);
      prog.lookup.multiplier = std::uint64_t{1} << info.amplification_bits;
    } else if (n.kind == OpKind::kRoundBits) {
      if (next_round < a.round_bits.size() && a.round_bits[next_round].node == id) {
        const RoundBitsInfo& info = a.round_bits[next_round++];
        prog.round.first_bit = info.first_bit;
        prog.round.bits = info.bits;
        prog.round.nearest = info.nearest;
        const unsigned w = info.width;
        prog.round.width = w;
        for (unsigned bit = info.first_bit; bit < info.bits; ++bit) {
          // Both entries +Delta_(W-bit)/2: the negacyclic half returns the negation, which
          // is how the bit on the padding position shows (analysis.hpp).
          const Torus half = Torus{1} << (62 - w + bit);
          const Torus outputs[2] = {half, half};
          prog.round.extraction.emplace_back(big_n, 1, outputs);
        }
      } else {
        prog.alias = true;  // approximate, or no unknown bit to clear
      }
    }
  }
  lowered_ = std::move(lowered);
}

std::vector<EncryptedTensor> FheExecutor::run(const std::vector<EncryptedTensor>& inputs, ExecutionStats* stats) const {
  return run(inputs, keys_, stats);
}

std::vector<EncryptedTensor> FheExecutor::run(const std::vector<EncryptedTensor>& inputs,
                                              const tfhe::EvaluationKeys* keys, ExecutionStats* stats) const {
  // One row: run_rows shares the caller's ciphertexts instead of copying them.
  return std::move(run_rows({&inputs, 1}, keys, stats).front());
}

std::vector<std::vector<EncryptedTensor>> FheExecutor::run_rows(std::span<const std::vector<EncryptedTensor>> rows,
                                                                const tfhe::EvaluationKeys* keys, ExecutionStats* stats,
                                                                const std::function<void()>& between_nodes) const {
  check_keys(circuit_, keys);
  using Clock = std::chrono::steady_clock;
  const auto t_start = Clock::now();
  const Circuit& c = circuit_.circuit;
  const std::vector<unsigned>& widths = circuit_.analysis.widths;
  const tfhe::LweDimension dim(big_dimension(circuit_.params));
  const std::size_t words = tfhe::lwe_size(dim);
  const unsigned threads = tfhe::resolve_thread_count(options_.threads);
  const auto input_ids = c.inputs();
  const std::size_t row_count = rows.size();
  if (row_count == 0) throw std::invalid_argument("run: no rows to run");
  for (std::size_t r = 0; r < row_count; ++r) {
    const std::vector<EncryptedTensor>& inputs = rows[r];
    const std::string row = row_count == 1 ? std::string{} : "row " + std::to_string(r) + ": ";
    if (inputs.size() != input_ids.size())
      throw std::invalid_argument(row + "run: " + std::to_string(inputs.size()) + " encrypted inputs for " +
                                  std::to_string(input_ids.size()) + " circuit inputs");
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      const Node& n = c.nodes[input_ids[i]];
      const std::string label = row + "run: " + input_label(c, i, input_ids[i]);
      if (inputs[i].shape != n.shape)
        throw std::invalid_argument(label + " has shape " + shape_string(inputs[i].shape) + ", the circuit expects " +
                                    shape_string(n.shape));
      if (inputs[i].ciphertexts.count() != static_cast<std::size_t>(element_count(n.shape)))
        throw std::invalid_argument(label + " holds " + std::to_string(inputs[i].ciphertexts.count()) +
                                    " ciphertexts for " + std::to_string(element_count(n.shape)) + " elements");
      if (inputs[i].ciphertexts.dimension() != dim)
        throw std::invalid_argument(label + " has LWE dimension " +
                                    std::to_string(inputs[i].ciphertexts.dimension().value) +
                                    ", the circuit's parameters have " + std::to_string(dim.value));
    }
  }

  // Every node's value holds all rows' ciphertexts, row by row: element e of row r is
  // ciphertext r * count + e. Each operation below is the one-row operation over all rows,
  // so a lookup node is one batch of rows x elements (one wave of the circuit).
  auto count_of = [&](std::uint32_t id) { return static_cast<std::size_t>(element_count(c.nodes[id].shape)); };
  ExecutionStats local;
  std::vector<std::shared_ptr<const tfhe::LweCiphertextList>> values(c.nodes.size());
  std::size_t next_input = 0;
  for (std::uint32_t id = 0; id < c.nodes.size(); ++id) {
    const Node& n = c.nodes[id];
    const Lowered::NodeProgram& prog = lowered_->nodes[id];
    const std::size_t count = count_of(id);
    const std::size_t total = row_count * count;
    if (n.kind == OpKind::kInput) {
      const std::size_t input = next_input++;
      if (row_count == 1) {
        // Shares the caller's ciphertexts: inputs are only read.
        values[id] = std::shared_ptr<const tfhe::LweCiphertextList>(std::shared_ptr<void>{},
                                                                    &rows[0][input].ciphertexts);
      } else {
        auto all = std::make_shared<tfhe::LweCiphertextList>(dim, total);
        for (std::size_t r = 0; r < row_count; ++r) {
          const auto src = rows[r][input].ciphertexts.data();
          std::copy(src.begin(), src.end(), all->data().begin() + static_cast<std::ptrdiff_t>(r * count * words));
        }
        values[id] = std::move(all);
      }
      continue;
    }
    if (between_nodes) between_nodes();
    std::vector<std::size_t> operand_counts;  // elements per row of each operand
    for (std::uint32_t op : n.operands) operand_counts.push_back(count_of(op));
    const auto t0 = Clock::now();
    if (prog.alias) {
      values[id] = values[n.operands[0]];
      local.levelled_seconds += seconds_since(t0);
    } else if (detail::is_linear(n.kind)) {
      auto out = std::make_shared<tfhe::LweCiphertextList>(dim, total);
      const detail::LinearMap& m = prog.linear;
      tfhe::parallel_for(total, threads, std::max<std::size_t>(1, 64), [&](std::size_t begin, std::size_t end, unsigned) {
        for (std::size_t q = begin; q < end; ++q) {
          const std::size_t row = q / count, e = q % count;
          std::span<Torus> y = (*out)[q];
          for (std::size_t t = m.row_begin[e]; t < m.row_begin[e + 1]; ++t) {
            const std::size_t operand = static_cast<std::size_t>(m.operand[t]);
            tfhe::lwe_mul_scalar_add(
                y, (*values[n.operands[operand]])[row * operand_counts[operand] + static_cast<std::size_t>(m.element[t])],
                m.weight[t]);
          }
          if (m.constant[e] != 0) tfhe::lwe_add_plaintext(y, encode_value(m.constant[e], widths[id]));
        }
      });
      values[id] = std::move(out);
      local.levelled_seconds += seconds_since(t0);
    } else if (detail::is_gather(n.kind)) {
      auto out = std::make_shared<tfhe::LweCiphertextList>(dim, total);
      const detail::GatherMap& m = prog.gather;
      for (std::size_t row = 0; row < row_count; ++row)
        for (std::size_t e = 0; e < count; ++e) {
          const std::size_t operand = static_cast<std::size_t>(m.operand[e]);
          const auto src =
              (*values[n.operands[operand]])[row * operand_counts[operand] + static_cast<std::size_t>(m.element[e])];
          std::copy(src.begin(), src.end(), (*out)[row * count + e].begin());
        }
      values[id] = std::move(out);
      local.levelled_seconds += seconds_since(t0);
    } else if (n.kind == OpKind::kLookup) {
      const Lowered::LookupStep& step = prog.lookup;
      auto out = std::make_shared<tfhe::LweCiphertextList>(dim, total);
      const tfhe::LweCiphertextList& x = *values[n.operands[0]];
      // Phase r * Delta_p: subtract the range's low end, then lift the p bits read to the top.
      // With shared rotations only the rotated elements are read.
      const std::size_t lifted = step.shared ? step.rotated.size() : count;  // per row
      tfhe::LweCiphertextList rotated_inputs(dim, step.shared ? row_count * lifted : 0);
      tfhe::LweCiphertextList& lift = step.shared ? rotated_inputs : *out;
      for (std::size_t row = 0; row < row_count; ++row)
        for (std::size_t r = 0; r < lifted; ++r) {
          std::span<Torus> y = lift[row * lifted + r];
          const auto src = x[row * count + (step.shared ? step.rotated[r] : r)];
          for (std::size_t i = 0; i < words; ++i) y[i] = src[i] * step.multiplier;
          y[words - 1] -= step.offset * step.multiplier;
        }
      local.levelled_seconds += seconds_since(t0);
      const auto t1 = Clock::now();
      if (step.shared) {
        // One rotation per distinct input, then every element's table read from its rotation.
        const tfhe::GlweDimension k = circuit_.params.glwe_dimension;
        const tfhe::PolynomialSize big_n = circuit_.params.polynomial_size;
        const std::size_t glwe = tfhe::glwe_size(k) * big_n.value;
        tfhe::AlignedVector<Torus> accumulators(row_count * lifted * glwe);
        const tfhe::LookupTable* p0 = &step.tables[0];
        tfhe::keyswitch_blind_rotate_batch(*keys, rotated_inputs, std::span<const tfhe::LookupTable* const>(&p0, 1),
                                           accumulators, {options_.threads});
        for (std::size_t row = 0; row < row_count; ++row)
          for (std::size_t e = 0; e < count; ++e) {
            std::span<Torus> y = (*out)[row * count + e];
            std::fill(y.begin(), y.end(), Torus{0});
            const std::span<const Torus> acc(accumulators.data() + (row * lifted + step.rotation_of[e]) * glwe, glwe);
            const MultiValueForm& form = step.forms[step.table_of_element.empty() ? 0 : step.table_of_element[e]];
            y.back() = static_cast<Torus>(form.base) * step.half_delta;
            for (const MultiValueTerm& t : form.jumps)
              tfhe::sample_extract_rotated_add(acc, k, big_n, t.entry * step.box, t.factor, y);
          }
        local.pbs += static_cast<std::int64_t>(row_count * lifted);
      } else {
        std::vector<const tfhe::LookupTable*> tables;
        if (step.table_of_element.empty()) {
          tables.push_back(&step.tables[0]);
        } else {
          tables.reserve(total);
          for (std::size_t row = 0; row < row_count; ++row)
            for (std::uint32_t t : step.table_of_element) tables.push_back(&step.tables[t]);
        }
        tfhe::keyswitch_programmable_bootstrap_batch(*keys, *out, tables, *out, {options_.threads});
        local.pbs += static_cast<std::int64_t>(total);
      }
      local.pbs_seconds += seconds_since(t1);
      values[id] = std::move(out);
    } else if (n.kind == OpKind::kRoundBits) {
      const Lowered::RoundStep& step = prog.round;
      const unsigned w = step.width;
      auto u = std::make_shared<tfhe::LweCiphertextList>(dim, total);
      {
        const auto src = values[n.operands[0]]->data();
        std::copy(src.begin(), src.end(), u->data().begin());
      }
      if (step.nearest)
        for (std::size_t e = 0; e < total; ++e)
          tfhe::lwe_add_plaintext((*u)[e], encode_value(std::int64_t{1} << (step.bits - 1), w));
      tfhe::LweCiphertextList probe(dim, total);
      for (unsigned k = 0; k < step.extraction.size(); ++k) {
        const unsigned bit = step.first_bit + k;
        const auto t1 = Clock::now();
        // Bit `bit` of u (a multiple of 2^bit) onto the padding position, then a quarter
        // turn so that noise of either sign stays in its half.
        const std::uint64_t lift = std::uint64_t{1} << (w - bit);
        for (std::size_t e = 0; e < total; ++e) {
          const auto src = (*u)[e];
          std::span<Torus> y = probe[e];
          for (std::size_t i = 0; i < words; ++i) y[i] = src[i] * lift;
          y[words - 1] += Torus{1} << 61;
        }
        local.levelled_seconds += seconds_since(t1);
        const auto t2 = Clock::now();
        const tfhe::LookupTable* table = &step.extraction[k];
        tfhe::keyswitch_programmable_bootstrap_batch(*keys, probe, std::span<const tfhe::LookupTable* const>(&table, 1),
                                                     probe, {options_.threads});
        local.pbs += static_cast<std::int64_t>(total);
        local.pbs_seconds += seconds_since(t2);
        const auto t3 = Clock::now();
        // probe = +-Delta_(W-bit)/2; the bit's value is Delta_(W-bit)/2 - probe: subtract it.
        const Torus half = Torus{1} << (62 - w + bit);
        for (std::size_t e = 0; e < total; ++e) {
          tfhe::lwe_add((*u)[e], (*u)[e], probe[e]);
          (*u)[e].back() -= half;
        }
        local.levelled_seconds += seconds_since(t3);
      }
      values[id] = std::move(u);
    } else {
      throw std::logic_error(std::string("FheExecutor: no lowering for ") + op_name(n.kind));
    }
    for (std::uint32_t op : n.operands)
      if (lowered_->last_use[op] == id) values[op].reset();
  }

  std::vector<std::vector<EncryptedTensor>> outputs(row_count);
  for (std::size_t row = 0; row < row_count; ++row) {
    outputs[row].reserve(c.outputs.size());
    for (std::uint32_t o : c.outputs) {
      const std::size_t count = count_of(o);
      if (row_count == 1) {
        outputs[row].push_back(EncryptedTensor{c.nodes[o].shape, *values[o]});
        continue;
      }
      tfhe::LweCiphertextList list(dim, count);
      const auto src = values[o]->data().subspan(row * count * words, count * words);
      std::copy(src.begin(), src.end(), list.data().begin());
      outputs[row].push_back(EncryptedTensor{c.nodes[o].shape, std::move(list)});
    }
  }
  local.total_seconds = seconds_since(t_start);
  if (stats) *stats = local;
  return outputs;
}

std::size_t FheExecutor::wave_rows(std::size_t memory_bytes) const {
  const std::size_t row_bytes = tfhe::lwe_size(tfhe::LweDimension(big_dimension(circuit_.params))) * sizeof(Torus);
  std::size_t widest = 1;
  for (const Node& n : circuit_.circuit.nodes) widest = std::max(widest, static_cast<std::size_t>(element_count(n.shape)));
  return std::max<std::size_t>(1, memory_bytes / (widest * row_bytes));
}

CircuitSignature signature_of(const CompiledCircuit& circuit) {
  const Circuit& c = circuit.circuit;
  CircuitSignature s;
  s.params = circuit.params;
  s.encoding_width = circuit.analysis.encoding_width;
  s.uses_bootstrapping = circuit.uses_bootstrapping;
  for (std::uint32_t id : c.inputs()) {
    const Node& n = c.nodes[id];
    const InputAttributes& a = std::get<InputAttributes>(n.attributes);
    s.inputs.push_back({n.name, n.shape, a.lo, a.hi, circuit.analysis.widths[id]});
  }
  for (std::size_t i = 0; i < c.outputs.size(); ++i) {
    const std::uint32_t id = c.outputs[i];
    const ValueRange& r = circuit.analysis.ranges[id];
    s.outputs.push_back({i < c.output_names.size() ? c.output_names[i] : std::string{}, c.nodes[id].shape, r.lo, r.hi,
                         circuit.analysis.widths[id], output_step_bits(circuit.analysis, id)});
  }
  return s;
}

std::vector<tfhe::SeededLweCiphertextList> encrypt_inputs(const CompiledCircuit& circuit, const tfhe::SecretKeys& keys,
                                                          const std::vector<Tensor>& inputs) {
  return encrypt_inputs(signature_of(circuit), keys, inputs);
}

std::vector<tfhe::SeededLweCiphertextList> encrypt_inputs(const CircuitSignature& sig, const tfhe::SecretKeys& keys,
                                                          const std::vector<Tensor>& inputs) {
  if (keys.params.id() != sig.params.id())
    throw std::invalid_argument("encrypt_inputs: the secret keys are for parameter set " + keys.params.describe() +
                                ", the circuit was compiled for " + sig.params.describe());
  if (inputs.size() != sig.inputs.size())
    throw std::invalid_argument("encrypt_inputs: " + std::to_string(inputs.size()) + " tensors for " +
                                std::to_string(sig.inputs.size()) + " circuit inputs");
  tfhe::Csprng noise = tfhe::Csprng::from_os();
  std::vector<tfhe::SeededLweCiphertextList> out;
  out.reserve(inputs.size());
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const TensorSignature& in = sig.inputs[i];
    const std::string label =
        "encrypt_inputs: input " + std::to_string(i) + (in.name.empty() ? std::string{} : " '" + in.name + "'");
    if (inputs[i].shape != in.shape)
      throw std::invalid_argument(label + " has shape " + shape_string(inputs[i].shape) + ", the circuit expects " +
                                  shape_string(in.shape));
    std::vector<Torus> plaintexts;
    plaintexts.reserve(inputs[i].data.size());
    for (std::int64_t v : inputs[i].data) {
      if (v < in.lo || v > in.hi)
        throw std::invalid_argument(label + " holds " + std::to_string(v) + ", outside its range [" +
                                    std::to_string(in.lo) + ", " + std::to_string(in.hi) + "]");
      plaintexts.push_back(encode_value(v, in.width));
    }
    out.push_back(tfhe::encrypt_seeded_lwe_list(keys.glwe.flattened(), plaintexts, sig.params.glwe_std_dev, noise));
  }
  return out;
}

std::vector<EncryptedTensor> expand_inputs(const CompiledCircuit& circuit,
                                           const std::vector<tfhe::SeededLweCiphertextList>& inputs) {
  const Circuit& c = circuit.circuit;
  const auto input_ids = c.inputs();
  if (inputs.size() != input_ids.size())
    throw std::invalid_argument("expand_inputs: " + std::to_string(inputs.size()) + " ciphertext lists for " +
                                std::to_string(input_ids.size()) + " circuit inputs");
  const std::size_t dim = big_dimension(circuit.params);
  std::vector<EncryptedTensor> out;
  out.reserve(inputs.size());
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const Node& n = c.nodes[input_ids[i]];
    const std::string label = "expand_inputs: " + input_label(c, i, input_ids[i]);
    if (inputs[i].dimension.value != dim)
      throw std::invalid_argument(label + " has LWE dimension " + std::to_string(inputs[i].dimension.value) +
                                  ", the circuit's parameters have " + std::to_string(dim));
    if (inputs[i].count() != static_cast<std::size_t>(element_count(n.shape)))
      throw std::invalid_argument(label + " holds " + std::to_string(inputs[i].count()) + " ciphertexts, its shape " +
                                  shape_string(n.shape) + " has " + std::to_string(element_count(n.shape)) + " elements");
    out.push_back(EncryptedTensor{n.shape, tfhe::decompress_lwe_list(inputs[i])});
  }
  return out;
}

std::vector<Tensor> decrypt_outputs(const CompiledCircuit& circuit, const tfhe::SecretKeys& keys,
                                    const std::vector<EncryptedTensor>& outputs) {
  return decrypt_outputs(signature_of(circuit), keys, outputs);
}

std::vector<Tensor> decrypt_outputs(const CircuitSignature& sig, const tfhe::SecretKeys& keys,
                                    const std::vector<EncryptedTensor>& outputs, const tfhe::GlweSecretKey* answer_key) {
  if (keys.params.id() != sig.params.id())
    throw std::invalid_argument("decrypt_outputs: the secret keys are for parameter set " + keys.params.describe() +
                                ", the circuit was compiled for " + sig.params.describe());
  if (outputs.size() != sig.outputs.size())
    throw std::invalid_argument("decrypt_outputs: " + std::to_string(outputs.size()) + " tensors for " +
                                std::to_string(sig.outputs.size()) + " circuit outputs");
  // Packed answers decrypt under the answer key, which may be shorter than the big key.
  const std::size_t dim = answer_key ? answer_key->flattened().size() : big_dimension(sig.params);
  std::vector<Tensor> out;
  out.reserve(outputs.size());
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    const TensorSignature& o = sig.outputs[i];
    const std::string label = "decrypt_outputs: output " + std::to_string(i);
    if (outputs[i].shape != o.shape)
      throw std::invalid_argument(label + " has shape " + shape_string(outputs[i].shape) + ", the circuit's is " +
                                  shape_string(o.shape));
    // Under the big key, or keyswitched to the small one (a server may shrink its answers).
    const std::size_t small = answer_key ? dim : sig.params.lwe_dimension.value;
    const std::size_t got = outputs[i].ciphertexts.dimension().value;
    if (outputs[i].ciphertexts.count() != static_cast<std::size_t>(element_count(o.shape)) || (got != dim && got != small))
      throw std::invalid_argument(label + " holds " + std::to_string(outputs[i].ciphertexts.count()) +
                                  " ciphertexts of dimension " + std::to_string(got) + ", expected " +
                                  std::to_string(element_count(o.shape)) + " of dimension " + std::to_string(dim) +
                                  " (or " + std::to_string(small) + " after a keyswitch)");
    const std::span<const Torus> key = answer_key ? answer_key->flattened() : got == dim ? keys.glwe.flattened() : keys.lwe.bits();
    std::vector<std::int64_t> data(outputs[i].ciphertexts.count());
    for (std::size_t e = 0; e < data.size(); ++e)
      data[e] = decode_value(tfhe::decrypt_lwe_phase(key, outputs[i].ciphertexts[e]), o.width, o.lo, o.step_bits);
    out.emplace_back(o.shape, std::move(data));
  }
  return out;
}

}  // namespace veil::circuit
