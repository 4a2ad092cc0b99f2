// Owning, 64-byte aligned buffers.
//
// AlignedVector keeps hot data (Fourier bootstrap key rows, accumulators) on cache-line and
// AVX-512 boundaries. SecretVector additionally wipes its memory when it is released, so that
// secret keys do not linger in freed heap pages.
// Thread safety: as std::vector.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <new>
#include <vector>

namespace veil::tfhe {

// Overwrites [p, p + bytes) in a way the optimiser may not elide.
void secure_wipe(void* p, std::size_t bytes) noexcept;

template <class T, bool kWipe>
struct AlignedAllocator {
  using value_type = T;
  static constexpr std::size_t kAlignment = 64;

  AlignedAllocator() noexcept = default;
  template <class U>
  AlignedAllocator(const AlignedAllocator<U, kWipe>&) noexcept {}

  T* allocate(std::size_t count) {
    if (count > static_cast<std::size_t>(-1) / sizeof(T)) throw std::bad_array_new_length();
    std::size_t bytes = (count * sizeof(T) + kAlignment - 1) / kAlignment * kAlignment;
    if (bytes == 0) bytes = kAlignment;
    void* p = std::aligned_alloc(kAlignment, bytes);
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t count) noexcept {
    if constexpr (kWipe) secure_wipe(p, count * sizeof(T));
    std::free(p);
  }
  template <class U>
  struct rebind {
    using other = AlignedAllocator<U, kWipe>;
  };
  friend bool operator==(const AlignedAllocator&, const AlignedAllocator&) { return true; }
};

template <class T>
using AlignedVector = std::vector<T, AlignedAllocator<T, false>>;

// For secret material: every block it releases (including on reallocation) is wiped first.
template <class T>
using SecretVector = std::vector<T, AlignedAllocator<T, true>>;

}  // namespace veil::tfhe
