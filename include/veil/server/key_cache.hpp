// In-memory cache of expanded evaluation keys, so that a client's second request does not pay
// for fetching, parsing and expanding its keys again.
//
// Entries are keyed by key id and bounded by a byte budget, evicting the least recently used.
// An entry's size is the real size of what it holds: the Fourier bootstrap key plus the
// keyswitch key (evaluation_keys_bytes). Entries are shared_ptr: eviction or erase() only
// drops the cache's reference, so keys in use by a running request stay alive until it ends.
// Concurrent requests for an id being loaded wait for that one load instead of parsing the
// same keys twice. An entry larger than the whole budget is loaded and returned, not kept.
// Thread safety: every method may be called from any number of threads at once. Loaders run
// without the cache's lock held.
#pragma once

#include <cstdint>
#include <functional>
#include <future>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "veil/tfhe/keys.hpp"

namespace veil::server {

// Counters since construction (entries, bytes and byte_budget are current values), for
// /metrics.
struct KeyCacheStats {
  std::uint64_t hits = 0;           // served from memory
  std::uint64_t misses = 0;         // a load was started
  std::uint64_t waits = 0;          // joined a load another request had started
  std::uint64_t load_failures = 0;  // loads that threw
  std::uint64_t evictions = 0;      // entries dropped to stay within the budget
  std::uint64_t oversize = 0;       // loaded entries larger than the budget, not kept
  std::uint64_t entries = 0;
  std::uint64_t bytes = 0;  // sum of evaluation_keys_bytes of the entries kept
  std::uint64_t byte_budget = 0;
};

// Bytes an expanded key set occupies: the Fourier bootstrap key, the keyswitch key and the
// object itself.
std::uint64_t evaluation_keys_bytes(const tfhe::EvaluationKeys& keys);

class KeyCache {
 public:
  using Value = std::shared_ptr<const tfhe::EvaluationKeys>;
  // Fetches, parses and expands one key set; throws on failure.
  using Loader = std::function<Value()>;

  // byte_budget 0 keeps nothing (every request loads).
  explicit KeyCache(std::uint64_t byte_budget);
  KeyCache(const KeyCache&) = delete;
  KeyCache& operator=(const KeyCache&) = delete;

  // The cached keys of `key_id`, or the result of loader() -- run once however many threads
  // ask for the same id meanwhile. If the loader throws (or returns null: std::logic_error),
  // this call and every call waiting for that load rethrow its exception, and nothing is
  // cached: the next call loads again.
  // REQUIRES: loader is callable and does not call get_or_load for the same id.
  Value get_or_load(const std::string& key_id, const Loader& loader);

  // Drops the entry of `key_id` (its keys were deleted). A load of it in progress completes
  // for its waiters but is not cached. Returns whether there was an entry or a load.
  bool erase(const std::string& key_id);
  void clear();

  KeyCacheStats stats() const;
  std::uint64_t byte_budget() const { return byte_budget_; }

 private:
  struct Entry {
    Value value;
    std::uint64_t bytes = 0;
    std::list<std::string>::iterator lru;
  };
  struct Load {
    std::shared_future<Value> result;
    bool cancelled = false;  // erased while loading: do not cache
  };

  // REQUIRES: mutex_ held, key_id not in entries_.
  void insert_locked(const std::string& key_id, Value value, std::uint64_t bytes);
  void drop_locked(std::unordered_map<std::string, Entry>::iterator it);

  const std::uint64_t byte_budget_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Entry> entries_;
  std::list<std::string> lru_;  // most recently used first
  std::unordered_map<std::string, std::shared_ptr<Load>> loading_;
  std::uint64_t bytes_ = 0;
  KeyCacheStats counters_;
};

}  // namespace veil::server
