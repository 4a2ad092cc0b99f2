// A minimal fork-join loop over an index range, for batch PBS and key generation.
// Work is handed out in chunks through an atomic counter so that uneven items balance.
// Thread safety: `body` is called concurrently from up to `threads` threads, each with its own
// worker index in [0, threads); exceptions from any worker are rethrown on the caller.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace veil::tfhe {

// 0 means every hardware thread.
inline unsigned resolve_thread_count(unsigned requested) {
  if (requested != 0) return requested;
  unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : hw;
}

// body(begin, end, worker) for consecutive chunks covering [0, count).
template <class Body>
void parallel_for(std::size_t count, unsigned threads, std::size_t chunk, Body&& body) {
  threads = static_cast<unsigned>(std::min<std::size_t>(resolve_thread_count(threads), (count + chunk - 1) / std::max<std::size_t>(chunk, 1)));
  if (threads <= 1) {
    // Chunk by chunk here too: a body may size per-chunk scratch by `chunk` (batch PBS does).
    for (std::size_t begin = 0; begin < count; begin += std::max<std::size_t>(chunk, 1))
      body(begin, std::min(count, begin + std::max<std::size_t>(chunk, 1)), 0u);
    return;
  }
  std::atomic<std::size_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto worker = [&](unsigned w) {
    try {
      for (;;) {
        std::size_t begin = next.fetch_add(chunk);
        if (begin >= count) break;
        body(begin, std::min(count, begin + chunk), w);
      }
    } catch (...) {
      std::lock_guard lock(error_mutex);
      if (!error) error = std::current_exception();
      next.store(count);
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(threads - 1);
  for (unsigned w = 1; w < threads; ++w) pool.emplace_back(worker, w);
  worker(0);
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace veil::tfhe
