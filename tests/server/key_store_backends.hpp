// The two key-store backends as the tests see them: a fresh, empty store per test, and raw SQL
// access to the store's database for inspection and fault injection.
//
// SQLite: a file in a temporary directory. PostgreSQL: a schema of its own per test (through
// the URL's `options=-csearch_path=...`) in the server named by VEIL_TEST_POSTGRES_URL, or
// else by the CTest fixture (scripts/postgres_test_server.sh writes the URL, or why it could
// not start a server, into VEIL_TEST_POSTGRES_STATE_DIR). Without a server, skip_reason()
// says why and the tests skip with it.
#pragma once

#include <libpq-fe.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "veil/server/key_store.hpp"

namespace veil::server::testing {

// Deterministic bytes: the same (size, seed) always gives the same content.
inline std::vector<std::uint8_t> test_bytes(std::size_t size, std::uint64_t seed) {
  std::vector<std::uint8_t> out(size);
  std::mt19937_64 rng(seed);
  std::size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    const std::uint64_t w = rng();
    for (int b = 0; b < 8; ++b) out[i + b] = static_cast<std::uint8_t>(w >> (8 * b));
  }
  for (; i < size; ++i) out[i] = static_cast<std::uint8_t>(rng());
  return out;
}

// prefix + n (built by appending: GCC 12 warns falsely on "literal" + std::to_string(n)).
inline std::string numbered(std::string prefix, long long n) {
  prefix += std::to_string(n);
  return prefix;
}

inline KeyRecordInfo test_info(const std::string& key_id, const std::string& model_id = "model",
                               const std::string& token = "token", std::int64_t created_at = 1700000000) {
  KeyRecordInfo info;
  info.key_id = key_id;
  info.model_id = model_id;
  info.token_sha256 = tfhe::sha256(token);
  info.created_at = created_at;
  info.last_used_at = created_at;
  return info;
}

inline std::string unique_suffix() {
  static std::atomic<int> counter{0};
  return std::to_string(::getpid()) + "_" + std::to_string(counter++);
}

class TempDir {
 public:
  TempDir() {
    path_ = std::filesystem::temp_directory_path() / ("veil_server_test_" + unique_suffix());
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

class SqliteBackend {
 public:
  SqliteBackend() : file_((dir_.path() / "keys.db").string()) {}
  std::string skip_reason() const { return {}; }
  std::string spec() const { return "sqlite:" + file_; }
  const std::string& file() const { return file_; }

  // Runs SQL on a connection of its own.
  void exec(const std::string& sql) const {
    with_db([&](sqlite3* db) {
      char* err = nullptr;
      if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
        std::string msg = err != nullptr ? err : "?";
        sqlite3_free(err);
        throw std::runtime_error("test SQL failed: " + msg + ": " + sql);
      }
    });
  }
  std::int64_t query_int(const std::string& sql) const {
    std::int64_t value = -1;
    with_db([&](sqlite3* db) {
      sqlite3_stmt* s = nullptr;
      if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) != SQLITE_OK)
        throw std::runtime_error(std::string("test SQL failed: ") + sqlite3_errmsg(db));
      if (sqlite3_step(s) == SQLITE_ROW) value = sqlite3_column_int64(s, 0);
      sqlite3_finalize(s);
    });
    return value;
  }
  // Makes every insert of chunk `index` fail, as a full disk or a crash mid-upload would.
  void inject_chunk_failure(int index) const {
    exec("CREATE TRIGGER veil_test_fail BEFORE INSERT ON evaluation_key_chunks WHEN NEW.chunk_index = " +
         std::to_string(index) + " BEGIN SELECT RAISE(ABORT, 'injected failure'); END");
  }
  void clear_chunk_failure() const { exec("DROP TRIGGER veil_test_fail"); }

 private:
  template <class F>
  void with_db(F&& f) const {
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(file_.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
      sqlite3_close(db);
      throw std::runtime_error("test cannot open " + file_);
    }
    sqlite3_busy_timeout(db, 10000);
    try {
      f(db);
    } catch (...) {
      sqlite3_close(db);
      throw;
    }
    sqlite3_close(db);
  }

  TempDir dir_;
  std::string file_;
};

struct PostgresServer {
  std::string url;          // empty: no server
  std::string skip_reason;  // why there is none
};

inline std::string read_file_trimmed(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

inline const PostgresServer& postgres_test_server() {
  static const PostgresServer server = [] {
    PostgresServer s;
    if (const char* url = std::getenv("VEIL_TEST_POSTGRES_URL"); url != nullptr && *url != '\0') {
      s.url = url;
      return s;
    }
    const char* state = std::getenv("VEIL_TEST_POSTGRES_STATE_DIR");
    if (state == nullptr || *state == '\0') {
      s.skip_reason =
          "no PostgreSQL server: set VEIL_TEST_POSTGRES_URL=postgresql://..., or run these tests through ctest, "
          "whose fixture starts one with scripts/postgres_test_server.sh";
      return s;
    }
    const std::filesystem::path dir(state);
    if (std::filesystem::exists(dir / "url")) {
      s.url = read_file_trimmed(dir / "url");
    } else if (std::filesystem::exists(dir / "skip_reason")) {
      s.skip_reason = "scripts/postgres_test_server.sh could not start a PostgreSQL server: " +
                      read_file_trimmed(dir / "skip_reason");
    } else {
      s.skip_reason = "the CTest fixture left no server URL in " + dir.string() +
                      " (run the fixture test server.postgres.start, or set VEIL_TEST_POSTGRES_URL)";
    }
    return s;
  }();
  return server;
}

inline std::string url_with_param(const std::string& url, const std::string& param) {
  return url + (url.find('?') == std::string::npos ? "?" : "&") + param;
}

// A libpq connection for test SQL; throws with the server's message.
class PgConnection {
 public:
  explicit PgConnection(const std::string& url) : c_(PQconnectdb(url.c_str())) {
    if (PQstatus(c_) != CONNECTION_OK) {
      std::string msg = PQerrorMessage(c_);
      PQfinish(c_);
      throw std::runtime_error("test cannot connect to PostgreSQL: " + msg);
    }
    PQsetNoticeProcessor(
        c_, [](void*, const char*) {}, nullptr);
  }
  ~PgConnection() { PQfinish(c_); }
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  void exec(const std::string& sql) const {
    PGresult* r = PQexec(c_, sql.c_str());
    const auto status = PQresultStatus(r);
    std::string msg = PQresultErrorMessage(r);
    PQclear(r);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
      throw std::runtime_error("test SQL failed: " + msg + ": " + sql);
  }
  std::int64_t query_int(const std::string& sql) const {
    PGresult* r = PQexec(c_, sql.c_str());
    std::int64_t value = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0) value = std::stoll(PQgetvalue(r, 0, 0));
    std::string msg = PQresultErrorMessage(r);
    const auto status = PQresultStatus(r);
    PQclear(r);
    if (status != PGRES_TUPLES_OK) throw std::runtime_error("test SQL failed: " + msg + ": " + sql);
    return value;
  }

 private:
  PGconn* c_;
};

class PostgresBackend {
 public:
  PostgresBackend() {
    const PostgresServer& server = postgres_test_server();
    if (server.url.empty()) {
      skip_reason_ = server.skip_reason;
      return;
    }
    base_url_ = server.url;
    schema_ = "veil_test_" + unique_suffix();
    PgConnection(base_url_).exec("CREATE SCHEMA " + schema_);
    spec_ =
        url_with_param(url_with_param(base_url_, "options=-csearch_path%3D" + schema_), "application_name=" + schema_);
  }
  ~PostgresBackend() {
    if (schema_.empty()) return;
    try {
      PgConnection(base_url_).exec("DROP SCHEMA " + schema_ + " CASCADE");
    } catch (...) {
    }
  }
  PostgresBackend(const PostgresBackend&) = delete;
  PostgresBackend& operator=(const PostgresBackend&) = delete;

  const std::string& skip_reason() const { return skip_reason_; }
  // The store's URL: the server's, with this test's schema and an application name that
  // identifies this test's connections.
  const std::string& spec() const { return spec_; }
  const std::string& base_url() const { return base_url_; }
  const std::string& application_name() const { return schema_; }

  void exec(const std::string& sql) const { PgConnection(spec_).exec(sql); }
  std::int64_t query_int(const std::string& sql) const { return PgConnection(spec_).query_int(sql); }
  void inject_chunk_failure(int index) const {
    exec(
        "CREATE FUNCTION veil_test_fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.chunk_index = " +
        std::to_string(index) +
        " THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$;"
        "CREATE TRIGGER veil_test_fail BEFORE INSERT ON evaluation_key_chunks "
        "FOR EACH ROW EXECUTE FUNCTION veil_test_fail()");
  }
  void clear_chunk_failure() const {
    exec("DROP TRIGGER veil_test_fail ON evaluation_key_chunks; DROP FUNCTION veil_test_fail()");
  }

 private:
  std::string skip_reason_;
  std::string base_url_;
  std::string schema_;
  std::string spec_;
};

}  // namespace veil::server::testing
