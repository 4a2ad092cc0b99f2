// What only the SQLite store has: a file that can be damaged, replaced or foreign.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "server/key_store_backends.hpp"
#include "veil/server/key_store.hpp"

namespace veil::server {
namespace {

using testing::SqliteBackend;
using testing::TempDir;
using testing::test_bytes;
using testing::test_info;

std::vector<char> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void write_all(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const KeyStoreError& e) {
    return e.what();
  }
  return "(no KeyStoreError)";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST(SqliteKeyStoreTest, UsesWalAndMarksTheFile) {
  SqliteBackend b;
  open_key_store(b.spec());
  EXPECT_EQ(b.query_int("SELECT COUNT(*) FROM pragma_journal_mode WHERE journal_mode = 'wal'"), 1);
  EXPECT_EQ(b.query_int("PRAGMA application_id"), 0x5645494C);
  EXPECT_EQ(open_key_store(b.spec())->describe(), "sqlite:" + b.file());
}

TEST(SqliteKeyStoreTest, GarbageFileIsRefusedWithAClearMessage) {
  SqliteBackend b;
  const auto garbage = test_bytes(64 * 1024, 1);
  write_all(b.file(), std::vector<char>(garbage.begin(), garbage.end()));
  const std::string msg = message_of([&] { open_key_store(b.spec()); });
  EXPECT_TRUE(contains(msg, b.file())) << msg;
  EXPECT_TRUE(contains(msg, "not a database")) << msg;
}

TEST(SqliteKeyStoreTest, FlippedByteInStoredKeysIsDetected) {
  SqliteBackend b;
  // A recognisable run of bytes to find in the file.
  std::vector<std::uint8_t> keys(30000);
  for (std::size_t i = 0; i < keys.size(); ++i) keys[i] = static_cast<std::uint8_t>(i * 7 + 3);
  open_key_store(b.spec())->put(test_info("k"), keys);  // closed: the WAL is checkpointed into the file

  auto file = read_all(b.file());
  const std::vector<char> needle(keys.begin() + 10000, keys.begin() + 10064);
  auto at = std::search(file.begin(), file.end(), needle.begin(), needle.end());
  ASSERT_NE(at, file.end());
  at[5] = static_cast<char>(at[5] ^ 0x01);
  write_all(b.file(), file);

  auto store = open_key_store(b.spec());
  const std::string msg = message_of([&] { store->get("k"); });
  EXPECT_TRUE(contains(msg, "corrupt")) << msg;
  EXPECT_TRUE(contains(msg, "SHA-256")) << msg;
  EXPECT_TRUE(store->info("k").has_value());
}

TEST(SqliteKeyStoreTest, TruncatedFileGivesKeyStoreErrorsNotACrash) {
  SqliteBackend b;
  {
    auto store = open_key_store(b.spec());
    for (int i = 0; i < 4; ++i) store->put(test_info(testing::numbered("k", i)), test_bytes(200000, 10 + i));
  }
  auto file = read_all(b.file());
  file.resize(file.size() / 2);
  write_all(b.file(), file);
  // Either opening or reading notices; whatever is returned is whole and right.
  int errors = 0;
  try {
    auto store = open_key_store(b.spec());
    for (int i = 0; i < 4; ++i) {
      try {
        if (auto r = store->get(testing::numbered("k", i))) {
          EXPECT_EQ(r->keys, test_bytes(200000, 10 + i));
        }
      } catch (const KeyStoreError&) {
        ++errors;
      }
    }
  } catch (const KeyStoreError&) {
    ++errors;
  }
  EXPECT_GT(errors, 0);
}

TEST(SqliteKeyStoreTest, ForeignDatabaseIsRefused) {
  SqliteBackend b;
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(b.file().c_str(), &db), SQLITE_OK);
    sqlite3_exec(db, "PRAGMA application_id = 1234; CREATE TABLE t (x)", nullptr, nullptr, nullptr);
    sqlite3_close(db);
  }
  const std::string msg = message_of([&] { open_key_store(b.spec()); });
  EXPECT_TRUE(contains(msg, "another application")) << msg;
}

TEST(SqliteKeyStoreTest, NewerSchemaVersionIsRefusedNamingBothVersions) {
  SqliteBackend b;
  open_key_store(b.spec());
  b.exec("UPDATE key_store_meta SET value = '2' WHERE name = 'schema_version'");
  const std::string msg = message_of([&] { open_key_store(b.spec()); });
  EXPECT_TRUE(contains(msg, "schema version 2")) << msg;
  EXPECT_TRUE(contains(msg, "reads 1")) << msg;
}

TEST(SqliteKeyStoreTest, UnopenablePathGivesKeyStoreError) {
  TempDir dir;
  const std::string path = (dir.path() / "no" / "such" / "dir" / "keys.db").string();
  const std::string msg = message_of([&] { open_key_store("sqlite:" + path); });
  EXPECT_TRUE(contains(msg, path)) << msg;
}

TEST(SqliteKeyStoreTest, ConcurrentWritersInTwoStoreObjectsWaitForEachOther) {
  // Two store objects stand for two server processes on one file.
  SqliteBackend b;
  KeyStoreOptions options;
  options.chunk_bytes = 1024;
  auto first = open_key_store(b.spec(), options);
  auto second = open_key_store(b.spec(), options);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      KeyStore& store = t % 2 == 0 ? *first : *second;
      for (int i = 0; i < 10; ++i)
        store.put(test_info(testing::numbered("p", t) + testing::numbered("_", i)), test_bytes(20000, 100 * t + i));
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(first->stats().key_count, 40u);
  EXPECT_EQ(second->get("p3_9")->keys, test_bytes(20000, 309));
}

}  // namespace
}  // namespace veil::server
