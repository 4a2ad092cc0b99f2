#include <cstdlib>

#include "kernels/kernel_set.hpp"
#include "veil/tfhe/isa.hpp"

namespace veil::tfhe {
namespace kernels {

const KernelSet* compiled_kernels(Isa isa) {
  switch (isa) {
#if defined(__x86_64__) || defined(_M_X64)
    case Isa::kAvx512: return &avx512::kernel_set;
    case Isa::kAvx2: return &avx2::kernel_set;
#else
    case Isa::kAvx512:
    case Isa::kAvx2: return nullptr;
#endif
    case Isa::kPortable: break;
  }
  return &portable::kernel_set;
}

const KernelSet& select_kernels() {
  // host_isa() never exceeds what this build compiled, so the set exists.
  return *compiled_kernels(select_isa(std::getenv("VEIL_ISA"), host_isa()));
}

}  // namespace kernels

std::string_view active_isa() { return kernels::isa_name(kernels::active_kernels().isa); }

}  // namespace veil::tfhe
