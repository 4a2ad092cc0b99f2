// The key-store contract, run against both implementations (SQLite and PostgreSQL), plus the
// spec parsing and redaction shared by both.
#include "veil/server/key_store.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "server/key_store_backends.hpp"

namespace veil::server {
namespace {

using testing::PostgresBackend;
using testing::SqliteBackend;
using testing::test_bytes;
using testing::test_info;

template <class Backend>
class KeyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!backend_.skip_reason().empty()) GTEST_SKIP() << backend_.skip_reason();
    options_.chunk_bytes = 4096;  // many chunks per record: exercises chunking everywhere
    store_ = open();
  }

  std::unique_ptr<KeyStore> open() const { return open_key_store(backend_.spec(), options_); }

  std::int64_t chunk_rows() const { return backend_.query_int("SELECT COUNT(*) FROM evaluation_key_chunks"); }

  Backend backend_;
  KeyStoreOptions options_;
  std::unique_ptr<KeyStore> store_;
};

TYPED_TEST_SUITE_P(KeyStoreTest);

TYPED_TEST_P(KeyStoreTest, PutThenGetReturnsTheSameBytesAndMetadata) {
  const auto keys = test_bytes(10000, 1);  // 3 chunks, the last one partial
  auto info = test_info("k1", "breast_cancer_xgb", "secret-token", 1700000123);
  info.last_used_at = 1700000456;
  this->store_->put(info, keys);

  auto record = this->store_->get("k1");
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->keys, keys);
  EXPECT_EQ(record->info.key_id, "k1");
  EXPECT_EQ(record->info.model_id, "breast_cancer_xgb");
  EXPECT_EQ(record->info.size, keys.size());
  EXPECT_EQ(record->info.keys_sha256, tfhe::sha256(keys));
  EXPECT_EQ(record->info.token_sha256, tfhe::sha256("secret-token"));
  EXPECT_EQ(record->info.created_at, 1700000123);
  EXPECT_EQ(record->info.last_used_at, 1700000456);

  auto info_only = this->store_->info("k1");
  ASSERT_TRUE(info_only.has_value());
  EXPECT_EQ(*info_only, record->info);
  EXPECT_EQ(this->chunk_rows(), 3);
}

TYPED_TEST_P(KeyStoreTest, PutComputesSizeAndHashItself) {
  const auto keys = test_bytes(100, 2);
  auto info = test_info("k");
  info.size = 7;                // wrong on purpose
  info.keys_sha256.fill(0xAB);  // wrong on purpose
  this->store_->put(info, keys);
  auto stored = this->store_->info("k");
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->size, 100u);
  EXPECT_EQ(stored->keys_sha256, tfhe::sha256(keys));
}

TYPED_TEST_P(KeyStoreTest, UnknownIdIsAbsentEverywhere) {
  this->store_->put(test_info("present"), test_bytes(10, 3));
  EXPECT_FALSE(this->store_->get("absent").has_value());
  EXPECT_FALSE(this->store_->info("absent").has_value());
  EXPECT_FALSE(this->store_->touch("absent", 1800000000));
  EXPECT_FALSE(this->store_->remove("absent"));
  EXPECT_FALSE(this->store_->get("").has_value());
  EXPECT_EQ(this->store_->stats().key_count, 1u);
}

TYPED_TEST_P(KeyStoreTest, DuplicateIdIsRefusedAndTheFirstRecordKept) {
  const auto first = test_bytes(9000, 4);
  this->store_->put(test_info("dup", "model-a", "token-a"), first);
  EXPECT_THROW(this->store_->put(test_info("dup", "model-b", "token-b"), test_bytes(20000, 5)), KeyIdExists);
  // KeyIdExists is the caller's mistake, an std::invalid_argument.
  EXPECT_THROW(this->store_->put(test_info("dup"), first), std::invalid_argument);

  auto record = this->store_->get("dup");
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->keys, first);
  EXPECT_EQ(record->info.model_id, "model-a");
  EXPECT_EQ(record->info.token_sha256, tfhe::sha256("token-a"));
  EXPECT_EQ(this->chunk_rows(), 3);
  EXPECT_EQ(this->store_->stats().key_count, 1u);
}

TYPED_TEST_P(KeyStoreTest, EmptyIdOrEmptyKeysAreRefused) {
  EXPECT_THROW(this->store_->put(test_info(""), test_bytes(10, 6)), std::invalid_argument);
  EXPECT_THROW(this->store_->put(test_info("k"), std::vector<std::uint8_t>{}), std::invalid_argument);
  EXPECT_EQ(this->store_->stats().key_count, 0u);
}

TYPED_TEST_P(KeyStoreTest, TouchNeverMovesLastUseBackwards) {
  this->store_->put(test_info("k", "m", "t", 1000), test_bytes(10, 7));
  EXPECT_TRUE(this->store_->touch("k", 5000));
  EXPECT_EQ(this->store_->info("k")->last_used_at, 5000);
  EXPECT_TRUE(this->store_->touch("k", 4000));  // a replica with a slow clock
  EXPECT_EQ(this->store_->info("k")->last_used_at, 5000);
  EXPECT_EQ(this->store_->info("k")->created_at, 1000);
}

TYPED_TEST_P(KeyStoreTest, RemoveDeletesTheRecordAndItsChunks) {
  this->store_->put(test_info("gone"), test_bytes(20000, 8));
  this->store_->put(test_info("kept"), test_bytes(5000, 9));
  EXPECT_TRUE(this->store_->remove("gone"));
  EXPECT_FALSE(this->store_->get("gone").has_value());
  EXPECT_FALSE(this->store_->remove("gone"));
  EXPECT_EQ(this->chunk_rows(), 2);  // only "kept"'s
  ASSERT_TRUE(this->store_->get("kept").has_value());
  // The id is free again.
  this->store_->put(test_info("gone"), test_bytes(10, 10));
  EXPECT_EQ(this->store_->get("gone")->keys, test_bytes(10, 10));
}

// Expiry: records last used before the cutoff go, with their chunks, a bounded number at a
// time; a touch keeps a record.
TYPED_TEST_P(KeyStoreTest, RemoveUnusedSinceDeletesOnlyStaleRecords) {
  for (int i = 0; i < 5; ++i) this->store_->put(test_info("old" + std::to_string(i), "m", "t", 1000), test_bytes(3000, 20));
  this->store_->put(test_info("fresh", "m", "t", 1000), test_bytes(3000, 21));
  EXPECT_TRUE(this->store_->touch("fresh", 9000));
  std::vector<std::string> gone = this->store_->remove_unused_since(5000, 3);
  EXPECT_EQ(gone.size(), 3u);
  const std::vector<std::string> rest = this->store_->remove_unused_since(5000, 100);
  gone.insert(gone.end(), rest.begin(), rest.end());
  std::sort(gone.begin(), gone.end());
  EXPECT_EQ(gone, (std::vector<std::string>{"old0", "old1", "old2", "old3", "old4"}));
  EXPECT_TRUE(this->store_->remove_unused_since(5000, 100).empty());
  EXPECT_EQ(this->store_->stats().key_count, 1u);
  EXPECT_TRUE(this->store_->get("fresh").has_value());
  EXPECT_EQ(this->chunk_rows(), 1);
}

TYPED_TEST_P(KeyStoreTest, StatsCountRecordsAndBytes) {
  EXPECT_EQ(this->store_->stats().key_count, 0u);
  EXPECT_EQ(this->store_->stats().total_bytes, 0u);
  this->store_->put(test_info("a"), test_bytes(1000, 11));
  this->store_->put(test_info("b"), test_bytes(2500, 12));
  EXPECT_EQ(this->store_->stats().key_count, 2u);
  EXPECT_EQ(this->store_->stats().total_bytes, 3500u);
  this->store_->remove("a");
  EXPECT_EQ(this->store_->stats().key_count, 1u);
  EXPECT_EQ(this->store_->stats().total_bytes, 2500u);
}

TYPED_TEST_P(KeyStoreTest, FiftyMegabyteKeysRoundTrip) {
  this->options_.chunk_bytes = KeyStoreOptions{}.chunk_bytes;  // the default, 16 MiB
  this->store_ = this->open();
  const auto keys = test_bytes(50'000'000, 13);
  this->store_->put(test_info("large"), keys);
  auto record = this->store_->get("large");
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->info.size, keys.size());
  EXPECT_TRUE(record->keys == keys);  // not EXPECT_EQ: no 50 MB failure message
  EXPECT_EQ(this->chunk_rows(), 3);   // 16 MiB chunks: 16.8 + 16.8 + 16.4 MB
}

TYPED_TEST_P(KeyStoreTest, ConcurrentPutsAndGetsFromEightThreads) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 6;
  auto id = [](int t, int i) { return testing::numbered("t", t) + testing::numbered("_", i); };
  auto seed = [](int t, int i) { return static_cast<std::uint64_t>(100 + t * kPerThread + i); };
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      try {
        for (int i = 0; i < kPerThread; ++i) {
          const auto keys = test_bytes(30000 + 1000 * i, seed(t, i));
          this->store_->put(test_info(id(t, i)), keys);
          auto own = this->store_->get(id(t, i));
          if (!own || own->keys != keys) ++failures;
          // Another thread's record: absent, or whole and right.
          const int other = (t + 1) % kThreads;
          if (auto theirs = this->store_->get(id(other, i))) {
            if (theirs->keys != test_bytes(30000 + 1000 * i, seed(other, i))) ++failures;
          }
          this->store_->touch(id(t, i), 1800000000 + i);
          this->store_->stats();
        }
      } catch (const std::exception& e) {
        ADD_FAILURE() << "thread " << t << ": " << e.what();
        ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(this->store_->stats().key_count, static_cast<std::uint64_t>(kThreads * kPerThread));
  for (int t = 0; t < kThreads; ++t)
    for (int i = 0; i < kPerThread; ++i) {
      auto record = this->store_->get(id(t, i));
      ASSERT_TRUE(record.has_value()) << id(t, i);
      EXPECT_EQ(record->keys, test_bytes(30000 + 1000 * i, seed(t, i))) << id(t, i);
    }
}

TYPED_TEST_P(KeyStoreTest, ConcurrentPutsOfOneIdStoreExactlyOneWholeRecord) {
  constexpr int kThreads = 8;
  std::atomic<int> stored{0}, refused{0}, other_errors{0};
  std::atomic<int> winner{-1};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      try {
        this->store_->put(test_info("contested", "m", testing::numbered("token", t)), test_bytes(64 * 1024, 200 + t));
        ++stored;
        winner = t;
      } catch (const KeyIdExists&) {
        ++refused;
      } catch (const std::exception& e) {
        ADD_FAILURE() << e.what();
        ++other_errors;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(stored.load(), 1);
  EXPECT_EQ(refused.load(), kThreads - 1);
  EXPECT_EQ(other_errors.load(), 0);
  ASSERT_GE(winner.load(), 0);
  auto record = this->store_->get("contested");
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->keys, test_bytes(64 * 1024, 200 + winner.load()));
  const std::string token = testing::numbered("token", winner.load());
  EXPECT_EQ(record->info.token_sha256, tfhe::sha256(token));
  EXPECT_EQ(this->chunk_rows(), 16);  // the winner's chunks, none of the losers'
}

TYPED_TEST_P(KeyStoreTest, PutFailingMidwayLeavesNothingBehind) {
  this->store_->put(test_info("before"), test_bytes(5000, 14));
  this->backend_.inject_chunk_failure(2);
  try {
    this->store_->put(test_info("broken"), test_bytes(64 * 1024, 15));  // fails at its third chunk
    FAIL() << "the injected failure did not happen";
  } catch (const KeyStoreError& e) {
    EXPECT_NE(std::string(e.what()).find("injected failure"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("put"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(this->store_->info("broken").has_value());
  EXPECT_FALSE(this->store_->get("broken").has_value());
  EXPECT_EQ(this->backend_.query_int("SELECT COUNT(*) FROM evaluation_key_chunks WHERE key_id = 'broken'"), 0);
  EXPECT_EQ(this->store_->stats().key_count, 1u);
  EXPECT_EQ(this->store_->stats().total_bytes, 5000u);

  // The store keeps working, and the id was never taken.
  this->backend_.clear_chunk_failure();
  this->store_->put(test_info("broken"), test_bytes(64 * 1024, 15));
  EXPECT_EQ(this->store_->get("broken")->keys, test_bytes(64 * 1024, 15));
}

TYPED_TEST_P(KeyStoreTest, RecordsSurviveCloseAndReopen) {
  this->store_->put(test_info("a", "m1", "ta", 100), test_bytes(12345, 16));
  this->store_->put(test_info("b", "m2", "tb", 200), test_bytes(54321, 17));
  this->store_->put(test_info("c", "m3", "tc", 300), test_bytes(100, 18));
  this->store_->touch("a", 999);
  this->store_->remove("c");
  const auto info_a = *this->store_->info("a");
  this->store_.reset();

  auto reopened = this->open();
  EXPECT_EQ(reopened->stats().key_count, 2u);
  auto a = reopened->get("a");
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->keys, test_bytes(12345, 16));
  EXPECT_EQ(a->info, info_a);
  EXPECT_EQ(a->info.last_used_at, 999);
  EXPECT_EQ(reopened->get("b")->keys, test_bytes(54321, 17));
  EXPECT_FALSE(reopened->get("c").has_value());
}

TYPED_TEST_P(KeyStoreTest, TwoStoresOnOneDatabaseSeeEachOthersWrites) {
  auto replica = this->open();
  this->store_->put(test_info("shared"), test_bytes(7000, 19));
  EXPECT_EQ(replica->get("shared")->keys, test_bytes(7000, 19));
  EXPECT_THROW(replica->put(test_info("shared"), test_bytes(10, 20)), KeyIdExists);
  EXPECT_TRUE(replica->remove("shared"));
  EXPECT_FALSE(this->store_->info("shared").has_value());
}

TYPED_TEST_P(KeyStoreTest, CorruptStoredKeysAreNeverServed) {
  this->store_->put(test_info("swapped"), test_bytes(20000, 21));
  this->store_->put(test_info("missing"), test_bytes(20000, 22));
  this->store_->put(test_info("short"), test_bytes(20000, 23));
  // Same length, other content: only the hash can tell.
  this->backend_.exec(
      "UPDATE evaluation_key_chunks SET bytes = (SELECT c.bytes FROM evaluation_key_chunks c"
      " WHERE c.key_id = 'swapped' AND c.chunk_index = 0) WHERE key_id = 'swapped' AND chunk_index = 1");
  this->backend_.exec("DELETE FROM evaluation_key_chunks WHERE key_id = 'missing' AND chunk_index = 1");
  this->backend_.exec("DELETE FROM evaluation_key_chunks WHERE key_id = 'short' AND chunk_index = 4");
  for (const char* id : {"swapped", "missing", "short"}) {
    try {
      this->store_->get(id);
      ADD_FAILURE() << id << ": corrupt keys were served";
    } catch (const KeyStoreError& e) {
      EXPECT_NE(std::string(e.what()).find("corrupt"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(id), std::string::npos) << e.what();
    }
    EXPECT_TRUE(this->store_->info(id).has_value());  // the metadata is still readable
  }
}

TYPED_TEST_P(KeyStoreTest, DescribeNamesTheStoreKind) {
  const std::string d = this->store_->describe();
  EXPECT_TRUE(d.rfind("sqlite:", 0) == 0 || d.rfind("postgresql://", 0) == 0) << d;
}

REGISTER_TYPED_TEST_SUITE_P(KeyStoreTest, PutThenGetReturnsTheSameBytesAndMetadata, PutComputesSizeAndHashItself,
                            UnknownIdIsAbsentEverywhere, DuplicateIdIsRefusedAndTheFirstRecordKept,
                            EmptyIdOrEmptyKeysAreRefused, TouchNeverMovesLastUseBackwards,
                            RemoveDeletesTheRecordAndItsChunks, RemoveUnusedSinceDeletesOnlyStaleRecords,
                            StatsCountRecordsAndBytes, FiftyMegabyteKeysRoundTrip,
                            ConcurrentPutsAndGetsFromEightThreads, ConcurrentPutsOfOneIdStoreExactlyOneWholeRecord,
                            PutFailingMidwayLeavesNothingBehind, RecordsSurviveCloseAndReopen,
                            TwoStoresOnOneDatabaseSeeEachOthersWrites, CorruptStoredKeysAreNeverServed,
                            DescribeNamesTheStoreKind);

// Test names start with the backend ("SqliteKeyStore/...", "PostgresKeyStore/..."): CMake selects
// the PostgreSQL ones by name to give them the server fixture.
INSTANTIATE_TYPED_TEST_SUITE_P(SqliteKeyStore, KeyStoreTest, ::testing::Types<SqliteBackend>);
INSTANTIATE_TYPED_TEST_SUITE_P(PostgresKeyStore, KeyStoreTest, ::testing::Types<PostgresBackend>);

// ---------------------------------------------------------------- shared parts

TEST(KeyStoreSpecTest, MalformedSpecsAreInvalidArguments) {
  EXPECT_THROW(open_key_store("sqlite:"), std::invalid_argument);
  EXPECT_THROW(open_key_store("keys.db"), std::invalid_argument);
  EXPECT_THROW(open_key_store("mysql://u:p@h/db"), std::invalid_argument);
  KeyStoreOptions bad;
  bad.chunk_bytes = 0;
  EXPECT_THROW(open_key_store("sqlite:/tmp/never-created.db", bad), std::invalid_argument);
  bad = {};
  bad.max_connections = 0;
  EXPECT_THROW(open_key_store("sqlite:/tmp/never-created.db", bad), std::invalid_argument);
  EXPECT_FALSE(std::filesystem::exists("/tmp/never-created.db"));
}

TEST(KeyStoreSpecTest, ErrorForUnknownSchemeDoesNotEchoAPassword) {
  try {
    open_key_store("mysql://user:hunter2hunter2@db.example/keys");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()).find("hunter2hunter2"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("db.example"), std::string::npos) << e.what();
  }
  try {
    open_key_store("host=db password=hunter2hunter2");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()).find("hunter2hunter2"), std::string::npos) << e.what();
  }
}

TEST(KeyStoreSpecTest, RedactionRemovesPasswords) {
  EXPECT_EQ(redact_key_store_spec("sqlite:/var/lib/veil/keys.db"), "sqlite:/var/lib/veil/keys.db");
  EXPECT_EQ(redact_key_store_spec("postgresql://veil:s3cret@db:5432/keys"), "postgresql://veil@db:5432/keys");
  EXPECT_EQ(redact_key_store_spec("postgres://veil:p@ss@word@db/keys?sslmode=require"),
            "postgres://veil@db/keys?sslmode=require");
  EXPECT_EQ(redact_key_store_spec("postgresql://db/keys?user=veil&password=s3cret&sslmode=require"),
            "postgresql://db/keys?user=veil&sslmode=require");
  EXPECT_EQ(redact_key_store_spec("postgresql://db/keys?pass%77ord=s3cret"), "postgresql://db/keys");
  EXPECT_EQ(redact_key_store_spec("postgresql://veil@db"), "postgresql://veil@db");
  EXPECT_EQ(redact_key_store_spec("host=db password=s3cret").find("s3cret"), std::string::npos);
}

}  // namespace
}  // namespace veil::server
