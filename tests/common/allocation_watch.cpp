// The replaced global operator new of allocation_watch.hpp: plain malloc/free, recording the
// largest request while a test watches.
#include "allocation_watch.hpp"

#include <algorithm>
#include <cstdlib>
#include <new>

thread_local bool g_watch_allocations = false;
thread_local std::size_t g_largest_allocation = 0;

// GCC's -Wmismatched-new-delete cannot see that this pair is malloc/free on both sides.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t size) {
  if (g_watch_allocations) g_largest_allocation = std::max(g_largest_allocation, size);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size) { return ::operator new(size); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop
