// Durable storage of clients' evaluation keys for the inference server.
//
// A KeyStore keeps each upload as received (the compressed, seeded evaluation-keys file),
// with its size, SHA-256, the model id it belongs to, creation and last-use times, and the
// SHA-256 of the secret token that guards it (the token itself is never stored, nor is any
// secret key). docs/formats/key_store.md gives the schema.
//
// The key bytes are stored in chunks (KeyStoreOptions::chunk_bytes): neither SQLite (1e9
// bytes per value by default) nor PostgreSQL (1 GiB per bytea) holds the multi-gigabyte keys
// of high-precision parameter sets in one field. An upload -- its metadata row and all its
// chunks -- is one transaction: a reader sees it whole or not at all, and get() checks the
// size and SHA-256 of what it reassembles before returning it.
//
// Two implementations behind one interface, tested by one suite:
//  - SQLite (embedded default): "sqlite:PATH", WAL journal, synchronous=FULL (a key id
//    returned to a client survives a crash or power loss), survives restarts;
//  - PostgreSQL (several server replicas sharing clients): "postgresql://..." (libpq URL).
// Thread safety: every method may be called from any number of threads at once; each store
// keeps a small pool of connections (KeyStoreOptions::max_connections). Several processes
// (server replicas) may open the same store.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "veil/tfhe/sha256.hpp"

namespace veil::server {

// A failure of the store itself (cannot open, I/O error, corrupt data, lost connection): a
// 5xx, not the client's fault. Messages name the store (never a password) and the operation.
class KeyStoreError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// put() with a key id that is stored already. Nothing was written.
class KeyIdExists : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// Digests and their hex: tfhe::sha256 and tfhe::to_hex (veil/tfhe/sha256.hpp).
using Sha256 = tfhe::Sha256Digest;

struct KeyRecordInfo {
  std::string key_id;
  std::string model_id;
  std::uint64_t size = 0;       // bytes of the stored keys
  Sha256 keys_sha256{};         // of the stored keys
  Sha256 token_sha256{};        // of the secret token issued at upload
  std::int64_t created_at = 0;  // unix seconds
  std::int64_t last_used_at = 0;

  friend bool operator==(const KeyRecordInfo&, const KeyRecordInfo&) = default;
};

struct KeyRecord {
  KeyRecordInfo info;
  std::vector<std::uint8_t> keys;
};

struct KeyStoreStats {
  std::uint64_t key_count = 0;
  std::uint64_t total_bytes = 0;  // sum of the stored keys' sizes
};

struct KeyStoreOptions {
  // Largest chunk the key bytes are split into; also bounds the memory one row costs. Must be
  // in [1, 256 MiB]. Readers accept any chunking, so changing it never invalidates a store.
  std::size_t chunk_bytes = std::size_t{16} << 20;
  // Connections one store object opens at most (SQLite: WAL lets them read in parallel).
  std::size_t max_connections = 4;
  // SQLite: how long a writer waits for another process's or connection's write to finish.
  // PostgreSQL: the connect timeout (rounded up to whole seconds; libpq's own
  // connect_timeout in the URL wins).
  unsigned timeout_ms = 10000;
};

class KeyStore {
 public:
  virtual ~KeyStore() = default;
  // Stores a new record in one transaction. `info.size` and `info.keys_sha256` are computed
  // here from `keys`. REQUIRES: non-empty info.key_id and keys (std::invalid_argument).
  // Throws KeyIdExists if the key id is stored already, KeyStoreError on failure; after any
  // throw nothing of this record is stored.
  virtual void put(KeyRecordInfo info, std::span<const std::uint8_t> keys) = 0;
  // The whole record, or nullopt for an unknown id. Throws KeyStoreError if the stored bytes
  // do not match the stored size or SHA-256 (corruption): corrupt keys are never returned.
  virtual std::optional<KeyRecord> get(const std::string& key_id) = 0;
  // Metadata only (cheap: no key bytes are read).
  virtual std::optional<KeyRecordInfo> info(const std::string& key_id) = 0;
  // Sets last_used_at to max(last_used_at, now), so that replicas with skewed clocks never
  // move it backwards; returns false for an unknown id. A write: callers serving many
  // requests per key may want to throttle it.
  virtual bool touch(const std::string& key_id, std::int64_t now) = 0;
  // Deletes the record and its key bytes; returns false for an unknown id.
  virtual bool remove(const std::string& key_id) = 0;
  // Deletes at most `limit` records last used before `cutoff` (unix seconds), each with its
  // key bytes; returns their ids. For expiring keys nobody uses.
  virtual std::vector<std::string> remove_unused_since(std::int64_t cutoff, std::size_t limit) = 0;
  virtual KeyStoreStats stats() = 0;
  // "sqlite:/path" or "postgresql://user@host:port/db": never a password.
  virtual std::string describe() const = 0;
};

// Opens (creating the schema if needed) the store named by `spec`: "sqlite:PATH" or a libpq
// URL "postgresql://..." / "postgres://...". Throws std::invalid_argument for a malformed
// spec or options, KeyStoreError when the store cannot be opened or was written by a newer
// schema version.
std::unique_ptr<KeyStore> open_key_store(const std::string& spec, const KeyStoreOptions& options = {});

std::unique_ptr<KeyStore> open_sqlite_key_store(const std::string& path, const KeyStoreOptions& options = {});
std::unique_ptr<KeyStore> open_postgres_key_store(const std::string& url, const KeyStoreOptions& options = {});

// `spec` fit for logs and error messages: the password of a URL's user info and any
// `password=` query parameter are removed; a spec that is not a URL but could hold a
// password (keyword=value form) is not shown at all.
std::string redact_key_store_spec(const std::string& spec);

}  // namespace veil::server
