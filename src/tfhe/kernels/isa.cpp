#include "kernels/isa.hpp"

#include <stdexcept>
#include <string>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>

#include <cstdint>
#endif

namespace veil::tfhe::kernels {
namespace {

#if defined(__x86_64__) || defined(_M_X64)
// XCR0, the register state the OS saves on a context switch. Inline assembly rather than
// _xgetbv, which needs the XSAVE target flag that this file, compiled for baseline x86-64,
// does not have. Only called when cpuid reports OSXSAVE (else xgetbv faults).
std::uint64_t xcr0() {
  std::uint32_t eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<std::uint64_t>(edx) << 32) | eax;
}

constexpr unsigned bit(unsigned i) { return 1u << i; }
#endif

std::string supported_list(Isa host) {
  std::string out;
  for (Isa isa : kIsas) {
    if (isa > host) break;
    if (!out.empty()) out += ", ";
    out += isa_name(isa);
  }
  return out;
}

}  // namespace

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
    case Isa::kPortable: break;
  }
  return "portable";
}

Isa host_isa() {
#if defined(__x86_64__) || defined(_M_X64)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0) return Isa::kPortable;
  const bool fma = (ecx & bit(12)) != 0, osxsave = (ecx & bit(27)) != 0, avx = (ecx & bit(28)) != 0;
  if (!osxsave || !avx || !fma) return Isa::kPortable;
  const std::uint64_t saved = xcr0();
  // XMM and YMM state (bits 1, 2); AVX-512 adds the opmask and both ZMM halves (bits 5-7).
  constexpr std::uint64_t kYmmState = 0x6, kZmmState = 0xE6;
  if ((saved & kYmmState) != kYmmState) return Isa::kPortable;
  if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) == 0 || (ebx & bit(5)) == 0) return Isa::kPortable;  // AVX2
  const unsigned avx512_ebx = bit(16) | bit(17) | bit(30) | bit(31);  // F, DQ, BW, VL
  const bool avx512 = (ebx & avx512_ebx) == avx512_ebx && (ecx & bit(1)) != 0;  // and VBMI
  return avx512 && (saved & kZmmState) == kZmmState ? Isa::kAvx512 : Isa::kAvx2;
#else
  return Isa::kPortable;
#endif
}

Isa select_isa(const char* requested, Isa host) {
  if (requested == nullptr || *requested == '\0') return host;
  const std::string_view name(requested);
  for (Isa isa : kIsas) {
    if (name != isa_name(isa)) continue;
    if (isa > host)
      throw std::runtime_error("VEIL_ISA=" + std::string(name) + ": this CPU does not run the " + std::string(name) +
                               " kernels; it runs " + supported_list(host) + " (best: " + std::string(isa_name(host)) +
                               ")");
    return isa;
  }
  throw std::runtime_error("VEIL_ISA=" + std::string(name) + ": unknown instruction set; use portable, avx2 or avx512, "
                           "or leave it unset for the best this CPU runs (" + std::string(isa_name(host)) + ")");
}

}  // namespace veil::tfhe::kernels
