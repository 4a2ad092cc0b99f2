// What only the PostgreSQL store has: passwords, a network connection that can be lost.
// Needs a server (see key_store_backends.hpp); skips saying why without one.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "server/key_store_backends.hpp"
#include "veil/server/key_store.hpp"

namespace veil::server {
namespace {

using testing::PgConnection;
using testing::PostgresBackend;
using testing::test_bytes;
using testing::test_info;

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// The password of a URL "scheme://user:password@host...", or "" if it has none.
std::string url_password(const std::string& url) {
  const auto begin = url.find("://") + 3;
  const auto at = url.find('@', begin);
  if (at == std::string::npos) return {};
  const auto colon = url.find(':', begin);
  return colon < at ? url.substr(colon + 1, at - colon - 1) : std::string{};
}

class PostgresKeyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!backend_.skip_reason().empty()) GTEST_SKIP() << backend_.skip_reason();
  }

  // Ends this test's store connections from the server side, as a server restart would.
  void terminate_store_connections() {
    PgConnection admin(backend_.base_url());
    const std::string mine = "application_name = '" + backend_.application_name() + "'";
    admin.exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE " + mine);
    for (int i = 0; i < 200 && admin.query_int("SELECT COUNT(*) FROM pg_stat_activity WHERE " + mine) > 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_EQ(admin.query_int("SELECT COUNT(*) FROM pg_stat_activity WHERE " + mine), 0);
  }

  PostgresBackend backend_;
};

TEST_F(PostgresKeyStoreTest, DescribeNeverShowsThePassword) {
  auto store = open_key_store(backend_.spec());
  const std::string d = store->describe();
  EXPECT_TRUE(d.rfind("postgresql://", 0) == 0) << d;
  const std::string password = url_password(backend_.spec());
  if (!password.empty()) {
    EXPECT_FALSE(contains(d, password)) << d;
  }
}

TEST_F(PostgresKeyStoreTest, WrongPasswordGivesKeyStoreErrorWithoutAnyPassword) {
  const std::string password = url_password(backend_.spec());
  if (password.empty()) GTEST_SKIP() << "the test server's URL has no password";
  std::string url = backend_.spec();
  const std::string wrong = "Wr0ngPassw0rdXYZ";
  url.replace(url.find(":" + password + "@") + 1, password.size(), wrong);
  try {
    open_key_store(url);
    FAIL() << "connected with a wrong password";
  } catch (const KeyStoreError& e) {
    const std::string msg = e.what();
    EXPECT_FALSE(contains(msg, wrong)) << msg;
    EXPECT_FALSE(contains(msg, password)) << msg;
    EXPECT_TRUE(contains(msg, "password authentication failed")) << msg;
    EXPECT_TRUE(contains(msg, "cannot connect to key store postgresql://")) << msg;
  }
}

// These two need no server.
TEST(PostgresUrlTest, UnreachableServerGivesKeyStoreErrorWithoutThePassword) {
  try {
    open_key_store("postgresql://veil:Unreachable5ecret@127.0.0.1:1/keys?connect_timeout=2");
    FAIL() << "connected to port 1";
  } catch (const KeyStoreError& e) {
    EXPECT_FALSE(contains(e.what(), "Unreachable5ecret")) << e.what();
    EXPECT_TRUE(contains(e.what(), "postgresql://veil@127.0.0.1:1/keys")) << e.what();
  }
}

TEST(PostgresUrlTest, MalformedUrlIsAnInvalidArgumentWithoutThePassword) {
  try {
    open_key_store("postgresql://veil:Malformed5ecret@db/keys?%zz=1");
    FAIL() << "a malformed URL was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_FALSE(contains(e.what(), "Malformed5ecret")) << e.what();
  }
}

TEST_F(PostgresKeyStoreTest, ReconnectsAfterTheServerDropsItsConnections) {
  KeyStoreOptions options;
  options.chunk_bytes = 4096;
  auto store = open_key_store(backend_.spec(), options);
  store->put(test_info("before"), test_bytes(50000, 1));
  // Several pooled connections, all about to die.
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) threads.emplace_back([&] { EXPECT_TRUE(store->get("before").has_value()); });
    for (auto& th : threads) th.join();
  }
  terminate_store_connections();
  auto record = store->get("before");
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->keys, test_bytes(50000, 1));

  terminate_store_connections();
  store->put(test_info("after"), test_bytes(50000, 2));
  terminate_store_connections();
  EXPECT_TRUE(store->touch("after", 1800000000));
  terminate_store_connections();
  EXPECT_EQ(store->stats().key_count, 2u);
  terminate_store_connections();
  EXPECT_TRUE(store->remove("before"));

  // And from many threads at once.
  terminate_store_connections();
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&] {
      try {
        EXPECT_EQ(store->get("after")->keys, test_bytes(50000, 2));
      } catch (const std::exception& e) {
        ADD_FAILURE() << e.what();
      }
    });
  for (auto& th : threads) th.join();
}

TEST_F(PostgresKeyStoreTest, NewerSchemaVersionIsRefusedNamingBothVersions) {
  open_key_store(backend_.spec());
  backend_.exec("UPDATE key_store_meta SET value = '2' WHERE name = 'schema_version'");
  try {
    open_key_store(backend_.spec());
    FAIL() << "a newer schema was accepted";
  } catch (const KeyStoreError& e) {
    EXPECT_TRUE(contains(e.what(), "schema version 2")) << e.what();
    EXPECT_TRUE(contains(e.what(), "reads 1")) << e.what();
  }
}

TEST_F(PostgresKeyStoreTest, ReplicasStartingAtOnceCreateTheSchemaOnce) {
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 6; ++t)
    threads.emplace_back([&] {
      try {
        open_key_store(backend_.spec());
      } catch (const std::exception& e) {
        ADD_FAILURE() << e.what();
        ++failures;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(backend_.query_int("SELECT COUNT(*) FROM key_store_meta"), 1);
}

}  // namespace
}  // namespace veil::server
