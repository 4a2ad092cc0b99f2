// SQLite key store.
//
// A pool of connections to one file in WAL mode: readers run in parallel with each other and
// with the one writer; writers (BEGIN IMMEDIATE) queue on the busy timeout, across threads
// and across processes alike. synchronous=FULL: a committed upload survives power loss, which
// matters because the client is told its key id only after the commit. The file is marked
// with an application id and a schema version, so that a foreign or newer file is refused
// with a message instead of being misread.
// Thread safety: each connection is used by one thread at a time (the pool hands it out).
#include <sqlite3.h>

#include <cstring>
#include <utility>

#include "key_store_internal.hpp"
#include "veil/server/key_store.hpp"

namespace veil::server {
namespace {

// PRAGMA application_id of a Veil key store: "VEIL" in ASCII.
constexpr std::int32_t kApplicationId = 0x5645494C;

// One prepared statement; errors name the store and the operation.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql, const std::string& where) : db_(db), where_(where) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) fail();
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& bind(int index, const std::string& text) {
    check(sqlite3_bind_text64(stmt_, index, text.data(), text.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
    return *this;
  }
  Statement& bind(int index, std::int64_t value) {
    check(sqlite3_bind_int64(stmt_, index, value));
    return *this;
  }
  // The bytes must outlive the statement's execution.
  Statement& bind(int index, std::span<const std::uint8_t> blob) {
    check(sqlite3_bind_blob64(stmt_, index, blob.empty() ? "" : static_cast<const void*>(blob.data()), blob.size(),
                              SQLITE_STATIC));
    return *this;
  }

  // True for a row, false when done; throws KeyStoreError otherwise.
  bool step() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    fail();
  }
  // Extended result code of a failed step, for callers that handle a specific one.
  int step_code() { return sqlite3_step(stmt_); }
  [[noreturn]] void fail() const { throw KeyStoreError(where_ + ": " + sqlite3_errmsg(db_)); }

  sqlite3_stmt* get() const { return stmt_; }

 private:
  void check(int rc) const {
    if (rc != SQLITE_OK) fail();
  }

  sqlite3* db_;
  std::string where_;
  sqlite3_stmt* stmt_ = nullptr;
};

void exec(sqlite3* db, const char* sql, const std::string& where) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err != nullptr ? err : sqlite3_errmsg(db);
    sqlite3_free(err);
    throw KeyStoreError(where + ": " + msg);
  }
}

// A transaction that rolls back unless committed.
class Transaction {
 public:
  Transaction(sqlite3* db, const char* begin, const std::string& where) : db_(db), where_(where) {
    exec(db_, begin, where_);
  }
  ~Transaction() {
    // An I/O error may have rolled back already; then there is nothing to undo.
    if (!committed_ && sqlite3_get_autocommit(db_) == 0) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit() {
    exec(db_, "COMMIT", where_);
    committed_ = true;
  }

 private:
  sqlite3* db_;
  std::string where_;
  bool committed_ = false;
};

class SqliteKeyStore final : public KeyStore {
 public:
  SqliteKeyStore(const std::string& path, const KeyStoreOptions& options)
      : path_(path),
        options_(options),
        pool_(
            options.max_connections, [this] { return open_connection(); }, [](sqlite3* db) { sqlite3_close_v2(db); },
            [](sqlite3* db) { return sqlite3_get_autocommit(db) != 0; }) {
    auto lease = pool_.acquire();
    init_schema(lease.get());
  }

  void put(KeyRecordInfo info, std::span<const std::uint8_t> keys) override {
    detail::prepare_put(info, keys);
    const std::string where = where_("put");
    auto lease = pool_.acquire();
    sqlite3* db = lease.get();
    Transaction tx(db, "BEGIN IMMEDIATE", where);
    {
      Statement s(db,
                  "INSERT INTO evaluation_keys (key_id, model_id, size, keys_sha256, token_sha256, created_at,"
                  " last_used_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                  where);
      s.bind(1, info.key_id)
          .bind(2, info.model_id)
          .bind(3, static_cast<std::int64_t>(info.size))
          .bind(4, std::span<const std::uint8_t>(info.keys_sha256))
          .bind(5, std::span<const std::uint8_t>(info.token_sha256))
          .bind(6, info.created_at)
          .bind(7, info.last_used_at);
      const int rc = s.step_code();
      if (rc == SQLITE_CONSTRAINT_PRIMARYKEY) throw KeyIdExists("key id " + info.key_id + " exists already");
      if (rc != SQLITE_DONE) s.fail();
    }
    Statement s(db, "INSERT INTO evaluation_key_chunks (key_id, chunk_index, bytes) VALUES (?, ?, ?)", where);
    std::int64_t index = 0;
    for (std::size_t offset = 0; offset < keys.size(); offset += options_.chunk_bytes, ++index) {
      sqlite3_reset(s.get());
      s.bind(1, info.key_id)
          .bind(2, index)
          .bind(3, keys.subspan(offset, std::min(options_.chunk_bytes, keys.size() - offset)));
      s.step();
    }
    tx.commit();
  }

  std::optional<KeyRecord> get(const std::string& key_id) override {
    const std::string where = where_("get");
    std::optional<detail::ChunkAssembler> assembler;
    {
      auto lease = pool_.acquire();
      sqlite3* db = lease.get();
      // One read transaction: the metadata and the chunks come from one snapshot.
      Transaction tx(db, "BEGIN", where);
      auto info = read_info(db, key_id, where);
      if (!info) return std::nullopt;
      assembler.emplace(std::move(*info), where);
      Statement s(db, "SELECT chunk_index, bytes FROM evaluation_key_chunks WHERE key_id = ? ORDER BY chunk_index",
                  where);
      s.bind(1, key_id);
      while (s.step()) {
        if (sqlite3_column_type(s.get(), 1) != SQLITE_BLOB)
          throw KeyStoreError(where + ": stored keys of key id " + key_id + " are corrupt: a chunk is not a blob");
        const auto* blob = static_cast<const std::uint8_t*>(sqlite3_column_blob(s.get(), 1));
        const auto size = static_cast<std::size_t>(sqlite3_column_bytes(s.get(), 1));
        assembler->add(sqlite3_column_int64(s.get(), 0), {blob, size});
      }
      tx.commit();
    }
    // Hashing (tens of milliseconds for large keys) runs with the connection returned.
    return std::move(*assembler).finish();
  }

  std::optional<KeyRecordInfo> info(const std::string& key_id) override {
    auto lease = pool_.acquire();
    return read_info(lease.get(), key_id, where_("info"));
  }

  bool touch(const std::string& key_id, std::int64_t now) override {
    const std::string where = where_("touch");
    auto lease = pool_.acquire();
    Statement s(lease.get(), "UPDATE evaluation_keys SET last_used_at = MAX(last_used_at, ?) WHERE key_id = ?", where);
    s.bind(1, now).bind(2, key_id).step();
    return sqlite3_changes(lease.get()) > 0;
  }

  bool remove(const std::string& key_id) override {
    const std::string where = where_("remove");
    auto lease = pool_.acquire();
    // The chunks go with the row (ON DELETE CASCADE), in the same implicit transaction.
    Statement s(lease.get(), "DELETE FROM evaluation_keys WHERE key_id = ?", where);
    s.bind(1, key_id).step();
    return sqlite3_changes(lease.get()) > 0;
  }

  std::vector<std::string> remove_unused_since(std::int64_t cutoff, std::size_t limit) override {
    const std::string where = where_("expire");
    auto lease = pool_.acquire();
    Statement s(lease.get(),
                "DELETE FROM evaluation_keys WHERE key_id IN "
                "(SELECT key_id FROM evaluation_keys WHERE last_used_at < ? LIMIT ?) RETURNING key_id",
                where);
    s.bind(1, cutoff).bind(2, static_cast<std::int64_t>(std::min<std::size_t>(limit, INT64_MAX)));
    std::vector<std::string> ids;
    while (s.step()) {
      const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(s.get(), 0));
      if (text != nullptr) ids.emplace_back(text);
    }
    return ids;
  }

  KeyStoreStats stats() override {
    const std::string where = where_("stats");
    auto lease = pool_.acquire();
    Statement s(lease.get(), "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM evaluation_keys", where);
    if (!s.step()) s.fail();
    return {static_cast<std::uint64_t>(sqlite3_column_int64(s.get(), 0)),
            static_cast<std::uint64_t>(sqlite3_column_int64(s.get(), 1))};
  }

  std::string describe() const override { return "sqlite:" + path_; }

 private:
  std::string where_(const char* op) const { return "key store sqlite:" + path_ + " " + op; }

  sqlite3* open_connection() {
    sqlite3* db = nullptr;
    const int rc = sqlite3_open_v2(path_.c_str(), &db,
                                   SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
    if (rc != SQLITE_OK) {
      std::string msg = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
      sqlite3_close_v2(db);
      throw KeyStoreError("cannot open key store sqlite:" + path_ + ": " + msg);
    }
    try {
      sqlite3_extended_result_codes(db, 1);
      sqlite3_busy_timeout(db, static_cast<int>(std::min<unsigned>(options_.timeout_ms, 1u << 30)));
      const std::string where = "cannot open key store sqlite:" + path_;
      // A large upload grows the WAL to its size; without a limit the file would stay that
      // large after the checkpoint.
      exec(db, "PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL; PRAGMA journal_size_limit = 67108864", where);
    } catch (...) {
      sqlite3_close_v2(db);
      throw;
    }
    return db;
  }

  void init_schema(sqlite3* db) {
    const std::string where = "cannot open key store sqlite:" + path_;
    const std::int64_t application_id = pragma_int(db, "PRAGMA application_id", where);
    if (application_id != 0 && application_id != kApplicationId)
      throw KeyStoreError(where + ": the file belongs to another application (SQLite application_id " +
                          std::to_string(application_id) + ", a Veil key store has " + std::to_string(kApplicationId) +
                          ")");
    // Persistent in the file; cannot change inside a transaction.
    exec(db, "PRAGMA journal_mode = WAL", where);
    Transaction tx(db, "BEGIN IMMEDIATE", where);
    bool exists = false;
    {
      Statement s(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'key_store_meta'", where);
      exists = s.step();
    }
    if (!exists) {
      exec(db,
           "CREATE TABLE key_store_meta ("
           " name TEXT PRIMARY KEY,"
           " value TEXT NOT NULL);"
           "CREATE TABLE evaluation_keys ("
           " key_id TEXT PRIMARY KEY,"
           " model_id TEXT NOT NULL,"
           " size INTEGER NOT NULL CHECK (size > 0),"
           " keys_sha256 BLOB NOT NULL CHECK (length(keys_sha256) = 32),"
           " token_sha256 BLOB NOT NULL CHECK (length(token_sha256) = 32),"
           " created_at INTEGER NOT NULL,"
           " last_used_at INTEGER NOT NULL);"
           "CREATE TABLE evaluation_key_chunks ("
           " key_id TEXT NOT NULL REFERENCES evaluation_keys (key_id) ON DELETE CASCADE,"
           " chunk_index INTEGER NOT NULL CHECK (chunk_index >= 0),"
           " bytes BLOB NOT NULL,"
           " PRIMARY KEY (key_id, chunk_index));",
           where);
      Statement s(db, "INSERT INTO key_store_meta (name, value) VALUES ('schema_version', ?)", where);
      s.bind(1, std::to_string(detail::kSchemaVersion)).step();
      exec(db, ("PRAGMA application_id = " + std::to_string(kApplicationId)).c_str(), where);
    } else {
      Statement s(db, "SELECT value FROM key_store_meta WHERE name = 'schema_version'", where);
      const char* text = s.step() ? reinterpret_cast<const char*>(sqlite3_column_text(s.get(), 0)) : nullptr;
      const std::string version = text != nullptr ? text : "(none)";
      if (version != std::to_string(detail::kSchemaVersion))
        throw KeyStoreError(where + ": the store has schema version " + version + ", this build of Veil reads " +
                            std::to_string(detail::kSchemaVersion));
    }
    tx.commit();
  }

  static std::int64_t pragma_int(sqlite3* db, const char* sql, const std::string& where) {
    Statement s(db, sql, where);
    if (!s.step()) s.fail();
    return sqlite3_column_int64(s.get(), 0);
  }

  static std::optional<KeyRecordInfo> read_info(sqlite3* db, const std::string& key_id, const std::string& where) {
    Statement s(db,
                "SELECT key_id, model_id, size, keys_sha256, token_sha256, created_at, last_used_at"
                " FROM evaluation_keys WHERE key_id = ?",
                where);
    s.bind(1, key_id);
    if (!s.step()) return std::nullopt;
    sqlite3_stmt* st = s.get();
    auto corrupt = [&](const char* what) {
      return KeyStoreError(where + ": the record of key id " + key_id + " is corrupt: " + what);
    };
    auto text = [&](int col) {
      if (sqlite3_column_type(st, col) != SQLITE_TEXT) throw corrupt("a text column is not text");
      return std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, col)),
                         static_cast<std::size_t>(sqlite3_column_bytes(st, col)));
    };
    auto hash = [&](int col) {
      Sha256 out{};
      if (sqlite3_column_type(st, col) != SQLITE_BLOB) throw corrupt("a SHA-256 column is not a blob");
      const void* blob = sqlite3_column_blob(st, col);
      if (sqlite3_column_bytes(st, col) != static_cast<int>(out.size()) || blob == nullptr)
        throw corrupt("a SHA-256 column does not hold 32 bytes");
      std::memcpy(out.data(), blob, out.size());
      return out;
    };
    KeyRecordInfo info;
    info.key_id = text(0);
    info.model_id = text(1);
    const std::int64_t size = sqlite3_column_int64(st, 2);
    if (size <= 0) throw corrupt("the recorded size is not positive");
    info.size = static_cast<std::uint64_t>(size);
    info.keys_sha256 = hash(3);
    info.token_sha256 = hash(4);
    info.created_at = sqlite3_column_int64(st, 5);
    info.last_used_at = sqlite3_column_int64(st, 6);
    return info;
  }

  std::string path_;
  KeyStoreOptions options_;
  detail::ConnectionPool<sqlite3> pool_;
};

}  // namespace

std::unique_ptr<KeyStore> open_sqlite_key_store(const std::string& path, const KeyStoreOptions& options) {
  if (path.empty()) throw std::invalid_argument("the SQLite key store needs a file path");
  detail::check_options(options);
  return std::make_unique<SqliteKeyStore>(path, options);
}

}  // namespace veil::server
