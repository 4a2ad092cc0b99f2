// Private helpers shared by the SQLite and PostgreSQL key stores: option checks, a bounded
// connection pool, and the reassembly + verification of chunked key bytes.
// Thread safety: ConnectionPool is safe from many threads; ChunkAssembler is a local value.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "veil/server/key_store.hpp"

namespace veil::server::detail {

inline constexpr std::size_t kMaxChunkBytes = std::size_t{256} << 20;
// Sanity bound on one record (far above the ~2.3 GB of 8-bit seeded keys): put() refuses
// more, and get() never reserves more on the word of a stored size field.
inline constexpr std::uint64_t kMaxKeyBytes = std::uint64_t{16} << 30;
// Bumped when the schema changes incompatibly; a store written by a newer version is refused.
inline constexpr int kSchemaVersion = 1;

void check_options(const KeyStoreOptions& options);
// Validates a put's arguments and fills info.size and info.keys_sha256.
void prepare_put(KeyRecordInfo& info, std::span<const std::uint8_t> keys);

// Collects the chunks of one record in order and checks them against its metadata.
class ChunkAssembler {
 public:
  // `where` prefixes error messages ("key store sqlite:/x get").
  ChunkAssembler(KeyRecordInfo info, std::string where);
  // Throws KeyStoreError on a gap, a reordering or more bytes than recorded.
  void add(std::int64_t index, std::span<const std::uint8_t> bytes);
  // Throws KeyStoreError unless the bytes have the recorded size and SHA-256.
  KeyRecord finish() &&;

 private:
  KeyRecordInfo info_;
  std::string where_;
  std::vector<std::uint8_t> keys_;
  std::uint64_t next_index_ = 0;
};

// At most `max` connections, created on demand by `open`, reused LIFO; a caller that finds
// them all in use waits. A Lease returns its connection when destroyed, or closes it if
// discarded or if `healthy` says it is not fit for reuse.
template <class Connection>
class ConnectionPool {
 public:
  using Open = std::function<Connection*()>;  // throws on failure
  using Close = std::function<void(Connection*)>;
  using Healthy = std::function<bool(Connection*)>;

  ConnectionPool(std::size_t max, Open open, Close close, Healthy healthy)
      : max_(max), open_(std::move(open)), close_(std::move(close)), healthy_(std::move(healthy)) {}
  // REQUIRES: no lease outstanding.
  ~ConnectionPool() {
    for (Connection* c : idle_) close_(c);
  }
  ConnectionPool(const ConnectionPool&) = delete;
  ConnectionPool& operator=(const ConnectionPool&) = delete;

  class Lease {
   public:
    Lease(ConnectionPool* pool, Connection* c) : pool_(pool), c_(c) {}
    Lease(Lease&& other) noexcept : pool_(other.pool_), c_(std::exchange(other.c_, nullptr)) {}
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (c_ != nullptr) pool_->release(c_, discard_);
    }
    Connection* get() const { return c_; }
    // The connection is closed instead of reused (lost, or in an unknown state).
    void discard() { discard_ = true; }

   private:
    ConnectionPool* pool_;
    Connection* c_;
    bool discard_ = false;
  };

  Lease acquire() {
    std::unique_lock lock(mutex_);
    available_.wait(lock, [&] { return !idle_.empty() || open_count_ < max_; });
    if (!idle_.empty()) {
      Connection* c = idle_.back();
      idle_.pop_back();
      return Lease(this, c);
    }
    ++open_count_;
    lock.unlock();
    try {
      return Lease(this, open_());
    } catch (...) {
      lock.lock();
      --open_count_;
      available_.notify_one();
      throw;
    }
  }

  // Closes every idle connection: after one was found lost, the others (same server, same
  // network) probably are too, and a retry should not pick one of them.
  void discard_idle() {
    std::vector<Connection*> idle;
    {
      std::lock_guard lock(mutex_);
      idle.swap(idle_);
      open_count_ -= idle.size();
      available_.notify_all();
    }
    for (Connection* c : idle) close_(c);
  }

 private:
  void release(Connection* c, bool discard) {
    if (!discard && !healthy_(c)) discard = true;
    if (discard) close_(c);
    std::lock_guard lock(mutex_);
    if (discard) {
      --open_count_;
    } else {
      idle_.push_back(c);
    }
    available_.notify_one();
  }

  const std::size_t max_;
  Open open_;
  Close close_;
  Healthy healthy_;
  std::mutex mutex_;
  std::condition_variable available_;
  std::vector<Connection*> idle_;
  std::size_t open_count_ = 0;
};

}  // namespace veil::server::detail
