// Benchmarks of the circuit layer: wall time of one encrypted evaluation on all cores, and the
// share of it spent in PBS (counters pbs, pbs_share). Parameters come from compile() (128-bit,
// p_error 2^-40 per PBS); keys are generated once per circuit, outside the timing.
//   circuit/mlp_30_16_2       x[30] (6 bits) -> fc 16 -> approximate rounding -> 6-bit ReLU
//                             lookup -> fc 2: Concrete ML's MLP shape, 16 PBS
//   circuit/conv_1x8_8x8_relu 1 -> 8 channels 3x3 (padding 1) on 8x8 (4-bit pixels) ->
//                             approximate rounding -> 4-bit ReLU per channel: 512 PBS
#include <benchmark/benchmark.h>

#include <bit>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "veil/circuit/clear_executor.hpp"
#include "veil/circuit/fhe_executor.hpp"

using namespace veil;
using namespace veil::circuit;

namespace {

// Rounds `acc` approximately down to `bits` bits of span, then looks up f(high bits).
Value requantize(CircuitBuilder& b, Value acc, unsigned bits, const std::function<std::int64_t(std::int64_t)>& f) {
  // The fewest dropped bits that leave a `bits`-bit lookup (approximate rounding may read
  // one multiple above the top: count it).
  const ValueRange r = b.range(acc);
  unsigned drop = 0;
  while ((((r.hi >> drop) - (r.lo >> drop)) + (drop ? 1 : 0)) >= (std::int64_t{1} << bits)) ++drop;
  const Value x = drop ? b.round_bits(acc, drop, RoundingMode::kApproximate) : acc;
  return b.lookup(x, [f, drop](std::int64_t v) { return f(v >> drop); });
}

Circuit mlp_30_16_2() {
  std::mt19937_64 rng(30162);
  std::uniform_int_distribution<std::int64_t> w(-3, 3);
  CircuitBuilder b;
  const Value x = b.input({1, 30}, 6, false, "x");
  Tensor w1 = Tensor::filled({30, 16}, 0), w2 = Tensor::filled({16, 2}, 0);
  for (auto& v : w1.data) v = w(rng);
  for (auto& v : w2.data) v = w(rng);
  const Value h = requantize(b, b.matmul(x, w1, "fc1"), 6, [](std::int64_t v) { return std::max<std::int64_t>(v, 0) >> 1; });
  b.output(b.matmul(h, w2, "fc2"), "logits");
  return std::move(b).build();
}

Circuit conv_1x8_8x8_relu() {
  std::mt19937_64 rng(188);
  std::uniform_int_distribution<std::int64_t> w(-3, 3);
  CircuitBuilder b;
  const Value x = b.input({1, 1, 8, 8}, 4, false, "image");
  Tensor k = Tensor::filled({8, 1, 3, 3}, 0);
  for (auto& v : k.data) v = w(rng);
  Conv2dOptions o;
  o.pad_top = o.pad_left = o.pad_bottom = o.pad_right = 1;
  const Value y = b.conv2d(x, k, o, "conv");
  b.output(requantize(b, y, 4, [](std::int64_t v) { return std::max<std::int64_t>(v, 0); }), "relu");
  return std::move(b).build();
}

struct Prepared {
  CompiledCircuit compiled;
  tfhe::SecretKeys secret;
  tfhe::EvaluationKeys evaluation;
  std::vector<EncryptedTensor> inputs;
};

const Prepared& prepare(const std::string& name, const std::function<Circuit()>& make) {
  static std::map<std::string, std::unique_ptr<Prepared>> cache;
  static std::mutex m;
  std::lock_guard lock(m);
  auto& slot = cache[name];
  if (!slot) {
    CompiledCircuit cc = compile(make());
    tfhe::SecretKeys secret = tfhe::generate_secret_keys(cc.params);
    tfhe::EvaluationKeys evaluation = tfhe::expand_evaluation_keys(tfhe::generate_seeded_evaluation_keys(secret));
    std::mt19937_64 rng(1);
    std::vector<Tensor> clear;
    for (std::uint32_t id : cc.circuit.inputs()) {
      const Node& n = cc.circuit.nodes[id];
      Tensor t = Tensor::filled(n.shape, 0);
      const InputAttributes& a = std::get<InputAttributes>(n.attributes);
      for (auto& v : t.data) v = std::uniform_int_distribution<std::int64_t>(a.lo, a.hi)(rng);
      clear.push_back(std::move(t));
    }
    auto inputs = expand_inputs(cc, encrypt_inputs(cc, secret, clear));
    slot.reset(new Prepared{std::move(cc), std::move(secret), std::move(evaluation), std::move(inputs)});
  }
  return *slot;
}

void bm_circuit(benchmark::State& state, const std::string& name, Circuit (*make)()) {
  const Prepared& p = prepare(name, make);
  const FheExecutor executor(p.compiled, &p.evaluation);
  ExecutionStats total;
  for (auto _ : state) {
    ExecutionStats s;
    benchmark::DoNotOptimize(executor.run(p.inputs, &s));
    total.pbs += s.pbs;
    total.pbs_seconds += s.pbs_seconds;
    total.total_seconds += s.total_seconds;
  }
  const double runs = static_cast<double>(state.iterations());
  state.counters["pbs"] = static_cast<double>(total.pbs) / runs;
  state.counters["pbs_share"] = total.total_seconds > 0 ? total.pbs_seconds / total.total_seconds : 0;
  state.counters["threads"] = static_cast<double>(std::thread::hardware_concurrency());
  state.SetLabel(p.compiled.params.describe());
}

}  // namespace

BENCHMARK_CAPTURE(bm_circuit, mlp_30_16_2, std::string("mlp_30_16_2"), &mlp_30_16_2)
    ->Name("circuit/mlp_30_16_2")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(bm_circuit, conv_1x8_8x8_relu, std::string("conv_1x8_8x8_relu"), &conv_1x8_8x8_relu)
    ->Name("circuit/conv_1x8_8x8_relu")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(2);
