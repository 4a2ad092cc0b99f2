// Owning, 64-byte aligned buffers.
//
// AlignedVector keeps hot data (Fourier bootstrap key rows, accumulators) on cache-line and
// AVX-512 boundaries. Buffers of 8 MiB and more (bootstrap and keyswitch keys, large
// ciphertext lists) are aligned to 2 MiB and advised as transparent huge pages: one PBS
// streams the whole Fourier bootstrap key (60 MB at 4 bits), and on 4 KiB pages that is a
// TLB miss every 4 KiB. SecretVector additionally wipes its memory when it is released, so that
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
// Asks the kernel to back [p, p + bytes) with transparent huge pages (advice: a no-op where
// they are disabled).
void advise_huge_pages(void* p, std::size_t bytes) noexcept;

template <class T, bool kWipe>
struct AlignedAllocator {
  using value_type = T;
  static constexpr std::size_t kAlignment = 64;
  static constexpr std::size_t kHugePage = std::size_t{2} << 20;
  static constexpr std::size_t kHugeThreshold = std::size_t{8} << 20;

  AlignedAllocator() noexcept = default;
  template <class U>
  AlignedAllocator(const AlignedAllocator<U, kWipe>&) noexcept {}

  T* allocate(std::size_t count) {
    if (count > (static_cast<std::size_t>(-1) - kHugePage) / sizeof(T)) throw std::bad_array_new_length();
    const std::size_t wanted = count * sizeof(T);
    const std::size_t alignment = wanted >= kHugeThreshold ? kHugePage : kAlignment;
    std::size_t bytes = (wanted + alignment - 1) / alignment * alignment;  // aligned_alloc needs a multiple
    if (bytes == 0) bytes = kAlignment;
    void* p = std::aligned_alloc(alignment, bytes);
    if (p == nullptr) throw std::bad_alloc();
    if (alignment == kHugePage) advise_huge_pages(p, bytes);
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
