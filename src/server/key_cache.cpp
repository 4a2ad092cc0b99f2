#include "veil/server/key_cache.hpp"

#include <stdexcept>
#include <utility>

namespace veil::server {

std::uint64_t evaluation_keys_bytes(const tfhe::EvaluationKeys& keys) {
  return keys.bsk.bytes() + keys.ksk.bytes() + keys.packing.bytes() + sizeof(tfhe::EvaluationKeys) + keys.params.name.size();
}

KeyCache::KeyCache(std::uint64_t byte_budget) : byte_budget_(byte_budget) {}

KeyCache::Value KeyCache::get_or_load(const std::string& key_id, const Loader& loader) {
  if (!loader) throw std::invalid_argument("key cache: no loader for key id " + key_id);
  std::unique_lock lock(mutex_);
  if (auto it = entries_.find(key_id); it != entries_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    ++counters_.hits;
    return it->second.value;
  }
  if (auto it = loading_.find(key_id); it != loading_.end()) {
    std::shared_future<Value> result = it->second->result;
    ++counters_.waits;
    lock.unlock();
    return result.get();  // rethrows the loader's exception
  }
  ++counters_.misses;
  std::promise<Value> promise;
  auto load = std::make_shared<Load>();
  load->result = promise.get_future().share();
  loading_.emplace(key_id, load);
  lock.unlock();

  // Only this load's own record may be removed: after erase() a newer load may own the id.
  auto finish_locked = [&] {
    if (auto it = loading_.find(key_id); it != loading_.end() && it->second == load) loading_.erase(it);
  };
  Value value;
  std::uint64_t bytes = 0;
  try {
    value = loader();
    if (!value) throw std::logic_error("key cache: the loader of key id " + key_id + " returned no keys");
    bytes = evaluation_keys_bytes(*value);
  } catch (...) {
    lock.lock();
    ++counters_.load_failures;
    finish_locked();
    lock.unlock();
    promise.set_exception(std::current_exception());
    throw;
  }
  lock.lock();
  finish_locked();
  if (!load->cancelled && entries_.find(key_id) == entries_.end()) insert_locked(key_id, value, bytes);
  lock.unlock();
  promise.set_value(value);
  return value;
}

void KeyCache::insert_locked(const std::string& key_id, Value value, std::uint64_t bytes) {
  if (bytes > byte_budget_) {
    ++counters_.oversize;
    return;
  }
  lru_.push_front(key_id);
  entries_.emplace(key_id, Entry{std::move(value), bytes, lru_.begin()});
  bytes_ += bytes;
  // The new entry fits on its own, so this stops before reaching it.
  while (bytes_ > byte_budget_) {
    drop_locked(entries_.find(lru_.back()));
    ++counters_.evictions;
  }
}

void KeyCache::drop_locked(std::unordered_map<std::string, Entry>::iterator it) {
  bytes_ -= it->second.bytes;
  lru_.erase(it->second.lru);
  entries_.erase(it);  // in-flight users keep their own shared_ptr
}

bool KeyCache::erase(const std::string& key_id) {
  std::lock_guard lock(mutex_);
  bool found = false;
  if (auto it = entries_.find(key_id); it != entries_.end()) {
    drop_locked(it);
    found = true;
  }
  if (auto it = loading_.find(key_id); it != loading_.end()) {
    it->second->cancelled = true;
    loading_.erase(it);
    found = true;
  }
  return found;
}

void KeyCache::clear() {
  std::lock_guard lock(mutex_);
  for (auto& [id, load] : loading_) load->cancelled = true;
  loading_.clear();
  entries_.clear();
  lru_.clear();
  bytes_ = 0;
}

KeyCacheStats KeyCache::stats() const {
  std::lock_guard lock(mutex_);
  KeyCacheStats s = counters_;
  s.entries = entries_.size();
  s.bytes = bytes_;
  s.byte_budget = byte_budget_;
  return s;
}

}  // namespace veil::server
