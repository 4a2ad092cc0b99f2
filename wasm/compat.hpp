// Forced into every file of the WebAssembly build (-include): what Debian's emscripten 3.1.6
// (libc++ of LLVM 14) lacks from C++20 and Veil uses. Nothing here is compiled natively.
#pragma once

#include <bit>
#include <version>

#if !defined(__cpp_lib_bit_cast)
namespace std {
// C++20's std::bit_cast, on the compiler's builtin (which clang 14 has).
template <class To, class From>
constexpr To bit_cast(const From& from) noexcept {
  static_assert(sizeof(To) == sizeof(From), "bit_cast between types of different sizes");
  return __builtin_bit_cast(To, from);
}
}  // namespace std
#endif
