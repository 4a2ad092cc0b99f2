// Circuit frames (docs/formats/circuit.md): a circuit (type 1) or a compiled circuit (type 2).
#include "fuzz_common.hpp"
#include "veil/circuit/serialization.hpp"

using namespace veil;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::vector<std::uint8_t> bytes = fuzz::prepared(data, size);
  constexpr std::uint64_t kMax = std::uint64_t{64} << 20;
  fuzz::expect_only<circuit::CircuitFormatError>("circuit_frame", [&] {
    if (bytes.size() >= 13 && bytes[12] == 2) (void)circuit::deserialize_compiled_circuit(bytes, kMax);
    else (void)circuit::deserialize_circuit(bytes, kMax);
  });
  return 0;
}
