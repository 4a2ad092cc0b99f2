// PostgreSQL key store (libpq).
//
// Several server replicas share one database. Every operation borrows a connection from a
// bounded pool and runs one statement or one transaction on it; parameters and results travel
// in binary format (bytea as raw bytes, no hex or escaping). get() is one statement read in
// single-row mode, so that a multi-gigabyte record costs one chunk of libpq buffers at a time
// and comes from one snapshot.
//
// Lost connections (server restart, failover, an idle connection cut by a firewall): the
// operation is retried once on a fresh connection, after the other idle connections are
// dropped too. A put whose COMMIT was cut off may have landed; its retry then finds the id
// taken by a record with the same keys, token and model, and reports success. A remove whose
// acknowledgement was lost may report false for a record it did delete.
//
// The password (in the URL, the `password` parameter or PGPASSWORD) is never put in
// describe() or in an error message: messages name the store by a URL rebuilt without it,
// and text coming from libpq is scrubbed of it as well.
// Thread safety: each connection is used by one thread at a time (the pool hands it out).
#include <libpq-fe.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <type_traits>
#include <utility>

#include "key_store_internal.hpp"
#include "veil/tfhe/coding.hpp"
#include "veil/server/key_store.hpp"

namespace veil::server {
namespace {

constexpr Oid kByteaOid = 17;
constexpr Oid kInt8Oid = 20;
constexpr Oid kTextOid = 25;
// pg_advisory_xact_lock key serialising schema creation between replicas starting at once:
// "VEILKS" in ASCII.
constexpr std::int64_t kSchemaLockKey = 0x5645494C4B53;

// The connection is gone; the operation may be retried on a new one.
class ConnectionLost : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The server refused a statement; the connection is still usable.
class SqlError : public std::runtime_error {
 public:
  SqlError(std::string sqlstate, const std::string& message)
      : std::runtime_error(message), sqlstate_(std::move(sqlstate)) {}
  const std::string& sqlstate() const { return sqlstate_; }

 private:
  std::string sqlstate_;
};

class Result {
 public:
  explicit Result(PGresult* r) : r_(r) {}
  ~Result() { PQclear(r_); }
  Result(Result&& other) noexcept : r_(std::exchange(other.r_, nullptr)) {}
  Result& operator=(Result&&) = delete;
  PGresult* get() const { return r_; }
  int rows() const { return PQntuples(r_); }

 private:
  PGresult* r_;
};

// Query parameters, all in binary format.
class Params {
 public:
  Params& text(const std::string& s) { return add(s.data(), s.size(), kTextOid); }
  Params& bytes(std::span<const std::uint8_t> b) {
    return add(b.empty() ? "" : reinterpret_cast<const char*>(b.data()), b.size(), kByteaOid);
  }
  Params& int8(std::int64_t v) {
    auto& word = words_.emplace_back();  // a deque: earlier words stay where they are
    tfhe::encode_big_endian(reinterpret_cast<std::uint8_t*>(word.data()), static_cast<std::uint64_t>(v), 8);
    return add(word.data(), word.size(), kInt8Oid);
  }
  int count() const { return static_cast<int>(values_.size()); }
  const Oid* types() const { return types_.data(); }
  const char* const* values() const { return values_.data(); }
  const int* lengths() const { return lengths_.data(); }
  const int* formats() const { return formats_.data(); }

 private:
  Params& add(const char* data, std::size_t size, Oid type) {
    values_.push_back(data);
    lengths_.push_back(static_cast<int>(size));  // chunks are at most 256 MiB
    formats_.push_back(1);
    types_.push_back(type);
    return *this;
  }
  std::deque<std::array<char, 8>> words_;
  std::vector<const char*> values_;
  std::vector<int> lengths_;
  std::vector<int> formats_;
  std::vector<Oid> types_;
};

std::string trim(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  while (!s.empty() && s.back() == ' ') s.pop_back();
  std::size_t begin = 0;
  while (begin < s.size() && s[begin] == ' ') ++begin;
  return s.substr(begin);
}

std::string percent_decode(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const int high = i + 2 < s.size() ? tfhe::hex_digit_value(s[i + 1]) : -1;
    const int low = i + 2 < s.size() ? tfhe::hex_digit_value(s[i + 2]) : -1;
    if (s[i] == '%' && high >= 0 && low >= 0) {
      out += static_cast<char>(high * 16 + low);
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// Every form in which a password may appear in `url` (raw and percent-decoded, from the user
// info and from a `password=` parameter), found without trusting libpq to parse it: used to
// scrub messages even when the URL is malformed.
std::vector<std::string> password_forms(const std::string& url) {
  std::vector<std::string> forms;
  auto add = [&](const std::string& raw) {
    if (raw.empty()) return;
    forms.push_back(raw);
    if (std::string decoded = percent_decode(raw); decoded != raw) forms.push_back(decoded);
  };
  const std::size_t scheme_end = url.find("://");
  if (scheme_end != std::string::npos) {
    const std::size_t begin = scheme_end + 3;
    std::size_t end = url.find_first_of("/?", begin);
    if (end == std::string::npos) end = url.size();
    const std::string authority = url.substr(begin, end - begin);
    if (const std::size_t at = authority.rfind('@'); at != std::string::npos) {
      const std::string user_info = authority.substr(0, at);
      if (const std::size_t colon = user_info.find(':'); colon != std::string::npos) add(user_info.substr(colon + 1));
    }
  }
  if (const std::size_t query = url.find('?'); query != std::string::npos) {
    std::size_t pos = query + 1;
    while (pos < url.size()) {
      std::size_t amp = url.find('&', pos);
      if (amp == std::string::npos) amp = url.size();
      const std::string param = url.substr(pos, amp - pos);
      const std::size_t eq = param.find('=');
      std::string name = percent_decode(param.substr(0, eq));
      std::transform(name.begin(), name.end(), name.begin(), [](unsigned char ch) { return std::tolower(ch); });
      if (eq != std::string::npos && name == "password") add(param.substr(eq + 1));
      pos = amp + 1;
    }
  }
  return forms;
}

// Replaces every occurrence of each secret in `text` by "***", longest secrets first.
std::string scrub(std::string text, std::vector<std::string> secrets) {
  std::sort(secrets.begin(), secrets.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
  for (const std::string& secret : secrets) {
    if (secret.empty()) continue;
    for (std::size_t pos = text.find(secret); pos != std::string::npos; pos = text.find(secret, pos + 3))
      text.replace(pos, secret.size(), "***");
  }
  return text;
}

std::int64_t read_int(const PGresult* r, int row, int col) {
  const auto* p = reinterpret_cast<const unsigned char*>(PQgetvalue(r, row, col));
  const int len = PQgetlength(r, row, col);
  if (PQgetisnull(r, row, col) || (len != 8 && len != 4)) throw std::runtime_error("an integer column is malformed");
  const std::uint64_t u = tfhe::decode_big_endian(p, len);
  return len == 8 ? static_cast<std::int64_t>(u) : static_cast<std::int32_t>(static_cast<std::uint32_t>(u));
}

std::span<const std::uint8_t> read_bytes(const PGresult* r, int row, int col) {
  return {reinterpret_cast<const std::uint8_t*>(PQgetvalue(r, row, col)),
          static_cast<std::size_t>(PQgetlength(r, row, col))};
}

std::string read_text(const PGresult* r, int row, int col) {
  auto b = read_bytes(r, row, col);
  return std::string(b.begin(), b.end());
}

// Columns 0..6: key_id, model_id, size, keys_sha256, token_sha256, created_at, last_used_at.
constexpr const char* kInfoColumns =
    "k.key_id, k.model_id, k.size, k.keys_sha256, k.token_sha256, k.created_at, k.last_used_at";

class PostgresKeyStore final : public KeyStore {
 public:
  PostgresKeyStore(std::string url, const KeyStoreOptions& options, std::string description,
                   std::vector<std::string> secrets)
      : url_(std::move(url)),
        options_(options),
        description_(std::move(description)),
        secrets_(std::move(secrets)),
        pool_(
            options.max_connections, [this] { return connect(); }, [](PGconn* c) { PQfinish(c); },
            [](PGconn* c) { return PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) == PQTRANS_IDLE; }) {
    init_schema();
  }

  void put(KeyRecordInfo info, std::span<const std::uint8_t> keys) override {
    detail::prepare_put(info, keys);
    const std::string where = where_("put");
    with_connection(where, [&](PGconn* c, int attempt) {
      Transaction tx(c);
      exec(c, "BEGIN");
      try {
        Params p;
        p.text(info.key_id)
            .text(info.model_id)
            .int8(static_cast<std::int64_t>(info.size))
            .bytes(info.keys_sha256)
            .bytes(info.token_sha256)
            .int8(info.created_at)
            .int8(info.last_used_at);
        exec(c,
             "INSERT INTO evaluation_keys (key_id, model_id, size, keys_sha256, token_sha256, created_at,"
             " last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
             p);
      } catch (const SqlError& e) {
        if (e.sqlstate() != "23505") throw;  // unique_violation
        tx.rollback();
        // A retry after a lost COMMIT finds its own record: the put did happen.
        if (attempt > 0 && same_record(c, info)) return;
        throw KeyIdExists("key id " + info.key_id + " exists already");
      }
      std::int64_t index = 0;
      for (std::size_t offset = 0; offset < keys.size(); offset += options_.chunk_bytes, ++index) {
        Params p;
        p.text(info.key_id)
            .int8(index)
            .bytes(keys.subspan(offset, std::min(options_.chunk_bytes, keys.size() - offset)));
        exec(c, "INSERT INTO evaluation_key_chunks (key_id, chunk_index, bytes) VALUES ($1, $2, $3)", p);
      }
      tx.commit();
    });
  }

  std::optional<KeyRecord> get(const std::string& key_id) override {
    const std::string where = where_("get");
    auto assembler = with_connection(where, [&](PGconn* c, int) { return read_record(c, key_id, where); });
    if (!assembler) return std::nullopt;
    // Hashing runs with the connection returned to the pool.
    return std::move(*assembler).finish();
  }

  std::optional<KeyRecordInfo> info(const std::string& key_id) override {
    const std::string where = where_("info");
    return with_connection(where, [&](PGconn* c, int) -> std::optional<KeyRecordInfo> {
      Result r =
          exec(c, (std::string("SELECT ") + kInfoColumns + " FROM evaluation_keys k WHERE k.key_id = $1").c_str(),
               Params().text(key_id));
      if (r.rows() == 0) return std::nullopt;
      return read_info(r.get(), where, key_id);
    });
  }

  bool touch(const std::string& key_id, std::int64_t now) override {
    return with_connection(where_("touch"), [&](PGconn* c, int) {
      Result r = exec(c, "UPDATE evaluation_keys SET last_used_at = GREATEST(last_used_at, $1) WHERE key_id = $2",
                      Params().int8(now).text(key_id));
      return std::strcmp(PQcmdTuples(r.get()), "0") != 0;
    });
  }

  bool remove(const std::string& key_id) override {
    return with_connection(where_("remove"), [&](PGconn* c, int) {
      // The chunks go with the row (ON DELETE CASCADE), in the same implicit transaction.
      Result r = exec(c, "DELETE FROM evaluation_keys WHERE key_id = $1", Params().text(key_id));
      return std::strcmp(PQcmdTuples(r.get()), "0") != 0;
    });
  }

  std::vector<std::string> remove_unused_since(std::int64_t cutoff, std::size_t limit) override {
    return with_connection(where_("expire"), [&](PGconn* c, int) {
      Result r = exec(c,
                      "DELETE FROM evaluation_keys WHERE key_id IN "
                      "(SELECT key_id FROM evaluation_keys WHERE last_used_at < $1 LIMIT $2) RETURNING key_id",
                      Params().int8(cutoff).int8(static_cast<std::int64_t>(std::min<std::size_t>(limit, INT64_MAX))));
      std::vector<std::string> ids;
      for (int i = 0; i < r.rows(); ++i) ids.emplace_back(PQgetvalue(r.get(), i, 0));
      return ids;
    });
  }

  KeyStoreStats stats() override {
    const std::string where = where_("stats");
    return with_connection(where, [&](PGconn* c, int) {
      Result r = exec(c, "SELECT COUNT(*), COALESCE(SUM(size), 0)::bigint FROM evaluation_keys", Params());
      if (r.rows() != 1) throw KeyStoreError(where + ": no result row");
      return KeyStoreStats{static_cast<std::uint64_t>(read_int(r.get(), 0, 0)),
                           static_cast<std::uint64_t>(read_int(r.get(), 0, 1))};
    });
  }

  std::string describe() const override { return description_; }

 private:
  // Rolls back on destruction unless committed; best effort (a broken connection is
  // discarded by the pool's health check anyway).
  class Transaction {
   public:
    explicit Transaction(PGconn* c) : c_(c) {}
    ~Transaction() { rollback(); }
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;
    void commit() {
      Result r = exec(c_, "COMMIT");
      done_ = true;
      // COMMIT of a transaction the server had already aborted answers ROLLBACK, not an error.
      if (std::strcmp(PQcmdStatus(r.get()), "COMMIT") != 0)
        throw SqlError("", std::string("the transaction was rolled back (") + PQcmdStatus(r.get()) + ")");
    }
    void rollback() {
      if (done_) return;
      done_ = true;
      if (PQstatus(c_) == CONNECTION_OK && PQtransactionStatus(c_) != PQTRANS_IDLE) PQclear(PQexec(c_, "ROLLBACK"));
    }

   private:
    PGconn* c_;
    bool done_ = false;
  };

  std::string where_(const char* op) const { return "key store " + description_ + " " + op; }

  // Runs body(connection, attempt); retries once on a lost connection; turns SqlError into
  // KeyStoreError. Text from libpq is scrubbed of the password.
  template <class F>
  std::invoke_result_t<F&, PGconn*, int> with_connection(const std::string& where, F&& body) {
    for (int attempt = 0;; ++attempt) {
      auto lease = pool_.acquire();  // KeyStoreError if no connection can be made
      try {
        return body(lease.get(), attempt);
      } catch (const ConnectionLost& lost) {
        lease.discard();
        pool_.discard_idle();
        if (attempt >= 1)
          throw KeyStoreError(where + ": lost the connection to the server (also after reconnecting): " +
                              scrub(lost.what(), secrets()));
      } catch (const SqlError& e) {
        throw KeyStoreError(where + ": " + scrub(e.what(), secrets()));
      } catch (const std::runtime_error& e) {
        if (dynamic_cast<const KeyStoreError*>(&e) != nullptr) throw;
        throw KeyStoreError(where + ": " + scrub(e.what(), secrets()));
      }
    }
  }

  // One statement; throws ConnectionLost or SqlError.
  static Result exec(PGconn* c, const char* sql, const Params& p = Params()) {
    Result r(PQexecParams(c, sql, p.count(), p.types(), p.values(), p.lengths(), p.formats(), 1));
    check(c, r.get());
    return r;
  }

  static void check(PGconn* c, const PGresult* r) {
    const ExecStatusType status = r != nullptr ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK || status == PGRES_SINGLE_TUPLE) return;
    const char* state = r != nullptr ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
    const std::string sqlstate = state != nullptr ? state : "";
    std::string message = trim(r != nullptr ? PQresultErrorMessage(r) : PQerrorMessage(c));
    // The server ends the session (class 08: connection exception; 57P01-57P03: shutdown,
    // crash, restart) before libpq has noticed that the socket is closed.
    if (PQstatus(c) == CONNECTION_BAD || sqlstate.rfind("08", 0) == 0 || sqlstate.rfind("57P0", 0) == 0)
      throw ConnectionLost(message.empty() ? trim(PQerrorMessage(c)) : message);
    throw SqlError(sqlstate, message);
  }

  PGconn* connect() {
    const std::string timeout = std::to_string(std::max<unsigned>(2, (options_.timeout_ms + 999) / 1000));
    // Entries before the expanded URL are defaults that the URL's own parameters override.
    const char* keywords[] = {"connect_timeout", "application_name", "dbname", nullptr};
    const char* values[] = {timeout.c_str(), "veil-server", url_.c_str(), nullptr};
    PGconn* c = PQconnectdbParams(keywords, values, 1);
    if (c == nullptr) throw KeyStoreError("cannot connect to key store " + description_ + ": out of memory");
    remember_password(c);
    if (PQstatus(c) != CONNECTION_OK) {
      std::string msg = scrub(trim(PQerrorMessage(c)), secrets());
      PQfinish(c);
      throw KeyStoreError("cannot connect to key store " + description_ + ": " + msg);
    }
    // CREATE ... IF NOT EXISTS and the like send notices; libpq would print them on stderr.
    PQsetNoticeProcessor(
        c, [](void*, const char*) {}, nullptr);
    return c;
  }

  // The password libpq actually used may come from PGPASSWORD or ~/.pgpass: scrub it too.
  void remember_password(PGconn* c) {
    const char* pass = PQpass(c);
    if (pass == nullptr || *pass == '\0') return;
    std::lock_guard lock(secrets_mutex_);
    if (std::find(secrets_.begin(), secrets_.end(), pass) == secrets_.end()) secrets_.emplace_back(pass);
  }
  std::vector<std::string> secrets() const {
    std::lock_guard lock(secrets_mutex_);
    return secrets_;
  }

  void init_schema() {
    const std::string where = "cannot open key store " + description_;
    with_connection(where, [&](PGconn* c, int) {
      Transaction tx(c);
      exec(c, "BEGIN");
      exec(c, "SELECT pg_advisory_xact_lock($1)", Params().int8(kSchemaLockKey));
      Result exists = exec(c, "SELECT to_regclass('key_store_meta') IS NOT NULL");
      if (exists.rows() != 1 || PQgetlength(exists.get(), 0, 0) != 1)
        throw KeyStoreError(where + ": unexpected answer to a catalog query");
      if (*PQgetvalue(exists.get(), 0, 0) == 0) {
        Result r(PQexec(c,
                        "CREATE TABLE key_store_meta ("
                        " name text PRIMARY KEY,"
                        " value text NOT NULL);"
                        "CREATE TABLE evaluation_keys ("
                        " key_id text PRIMARY KEY,"
                        " model_id text NOT NULL,"
                        " size bigint NOT NULL CHECK (size > 0),"
                        " keys_sha256 bytea NOT NULL CHECK (octet_length(keys_sha256) = 32),"
                        " token_sha256 bytea NOT NULL CHECK (octet_length(token_sha256) = 32),"
                        " created_at bigint NOT NULL,"
                        " last_used_at bigint NOT NULL);"
                        "CREATE TABLE evaluation_key_chunks ("
                        " key_id text NOT NULL REFERENCES evaluation_keys (key_id) ON DELETE CASCADE,"
                        " chunk_index integer NOT NULL CHECK (chunk_index >= 0),"
                        " bytes bytea NOT NULL,"
                        " PRIMARY KEY (key_id, chunk_index));"
                        // Key bytes are incompressible: store them out of line without trying.
                        "ALTER TABLE evaluation_key_chunks ALTER COLUMN bytes SET STORAGE EXTERNAL;"));
        check(c, r.get());
        exec(c, "INSERT INTO key_store_meta (name, value) VALUES ('schema_version', $1)",
             Params().text(std::to_string(detail::kSchemaVersion)));
      } else {
        Result r = exec(c, "SELECT value FROM key_store_meta WHERE name = 'schema_version'");
        const std::string version = r.rows() == 1 ? read_text(r.get(), 0, 0) : "(none)";
        if (version != std::to_string(detail::kSchemaVersion))
          throw KeyStoreError(where + ": the store has schema version " + version + ", this build of Veil reads " +
                              std::to_string(detail::kSchemaVersion));
      }
      tx.commit();
    });
  }

  static KeyRecordInfo read_info(const PGresult* r, const std::string& where, const std::string& key_id) {
    auto corrupt = [&](const char* what) {
      return KeyStoreError(where + ": the record of key id " + key_id + " is corrupt: " + what);
    };
    auto hash = [&](int col) {
      Sha256 out{};
      auto b = read_bytes(r, 0, col);
      if (b.size() != out.size()) throw corrupt("a SHA-256 column does not hold 32 bytes");
      std::memcpy(out.data(), b.data(), out.size());
      return out;
    };
    KeyRecordInfo info;
    info.key_id = read_text(r, 0, 0);
    info.model_id = read_text(r, 0, 1);
    const std::int64_t size = read_int(r, 0, 2);
    if (size <= 0) throw corrupt("the recorded size is not positive");
    info.size = static_cast<std::uint64_t>(size);
    info.keys_sha256 = hash(3);
    info.token_sha256 = hash(4);
    info.created_at = read_int(r, 0, 5);
    info.last_used_at = read_int(r, 0, 6);
    return info;
  }

  bool same_record(PGconn* c, const KeyRecordInfo& info) {
    Result r = exec(c, (std::string("SELECT ") + kInfoColumns + " FROM evaluation_keys k WHERE k.key_id = $1").c_str(),
                    Params().text(info.key_id));
    if (r.rows() != 1) return false;
    const KeyRecordInfo stored = read_info(r.get(), "", info.key_id);
    return stored.model_id == info.model_id && stored.size == info.size && stored.keys_sha256 == info.keys_sha256 &&
           stored.token_sha256 == info.token_sha256;
  }

  // The metadata and every chunk in one statement (one snapshot), one row at a time.
  std::optional<detail::ChunkAssembler> read_record(PGconn* c, const std::string& key_id, const std::string& where) {
    const std::string sql = std::string("SELECT ") + kInfoColumns +
                            ", c.chunk_index, c.bytes FROM evaluation_keys k"
                            " LEFT JOIN evaluation_key_chunks c ON c.key_id = k.key_id"
                            " WHERE k.key_id = $1 ORDER BY c.chunk_index";
    Params p;
    p.text(key_id);
    if (PQsendQueryParams(c, sql.c_str(), p.count(), p.types(), p.values(), p.lengths(), p.formats(), 1) == 0)
      check(c, nullptr);
    PQsetSingleRowMode(c);
    std::optional<detail::ChunkAssembler> assembler;
    std::exception_ptr failure;
    // Every result must be consumed before the connection can run anything else.
    while (PGresult* raw = PQgetResult(c)) {
      Result r(raw);
      if (failure) continue;
      try {
        check(c, raw);
        if (PQresultStatus(raw) != PGRES_SINGLE_TUPLE) continue;
        if (!assembler) assembler.emplace(read_info(raw, where, key_id), where);
        if (!PQgetisnull(raw, 0, 7)) assembler->add(read_int(raw, 0, 7), read_bytes(raw, 0, 8));
      } catch (...) {
        failure = std::current_exception();
      }
    }
    if (failure) {
      if (PQstatus(c) == CONNECTION_BAD) throw ConnectionLost(trim(PQerrorMessage(c)));
      std::rethrow_exception(failure);
    }
    return assembler;
  }

  const std::string url_;  // holds the password: never shown
  const KeyStoreOptions options_;
  const std::string description_;
  mutable std::mutex secrets_mutex_;
  std::vector<std::string> secrets_;  // every form of the password seen; guarded by secrets_mutex_
  detail::ConnectionPool<PGconn> pool_;
};

std::string option_value(const PQconninfoOption* options, const char* keyword) {
  for (const PQconninfoOption* o = options; o->keyword != nullptr; ++o)
    if (std::strcmp(o->keyword, keyword) == 0 && o->val != nullptr) return o->val;
  return {};
}

}  // namespace

std::unique_ptr<KeyStore> open_postgres_key_store(const std::string& url, const KeyStoreOptions& options) {
  detail::check_options(options);
  std::vector<std::string> secrets = password_forms(url);
  char* error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(url.c_str(), &error);
  if (parsed == nullptr) {
    std::string msg = error != nullptr ? trim(error) : "out of memory";
    PQfreemem(error);
    throw std::invalid_argument("malformed PostgreSQL connection URL " + redact_key_store_spec(url) + ": " +
                                scrub(msg, secrets));
  }
  if (std::string password = option_value(parsed, "password"); !password.empty()) secrets.push_back(password);
  const std::string user = option_value(parsed, "user");
  std::string host = option_value(parsed, "host");
  if (host.empty()) host = option_value(parsed, "hostaddr");
  const std::string port = option_value(parsed, "port");
  const std::string dbname = option_value(parsed, "dbname");
  PQconninfoFree(parsed);

  std::string description = "postgresql://";
  if (!user.empty()) description += user + "@";
  const bool socket_dir = !host.empty() && host.front() == '/';
  if (!socket_dir) description += host;
  if (!port.empty() && !socket_dir) description += ":" + port;
  description += "/" + dbname;
  if (socket_dir) description += "?host=" + host + (port.empty() ? "" : "&port=" + port);
  description = scrub(description, secrets);
  return std::make_unique<PostgresKeyStore>(url, options, std::move(description), std::move(secrets));
}

}  // namespace veil::server
