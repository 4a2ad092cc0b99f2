// Prints the kernel sets this CPU runs (veil/tfhe/isa.hpp), one a line, lowest first: the
// last is the one a process runs by default. scripts/test.sh runs the engine's tests once
// more under each of the others.
#include <iostream>

#include "kernels/kernel_set.hpp"

int main() {
  using namespace veil::tfhe::kernels;
  for (Isa isa : kIsas)
    if (isa <= host_isa() && compiled_kernels(isa) != nullptr) std::cout << isa_name(isa) << '\n';
}
