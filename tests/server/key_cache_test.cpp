#include "veil/server/key_cache.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <latch>
#include <thread>

#include "server/key_store_backends.hpp"
#include "tfhe/toy_parameters.hpp"
#include "veil/server/key_store.hpp"
#include "veil/tfhe/serialization.hpp"

namespace veil::server {
namespace {

using Keys = std::shared_ptr<const tfhe::EvaluationKeys>;

// Expanded keys of the right shape for a toy parameter set, all zeros: no key generation, so
// that cache tests run in microseconds. The size grows with `lwe_dimension`.
Keys fake_keys(std::size_t lwe_dimension = 32) {
  const tfhe::ParameterSet p = tfhe::toy::exact_set(2, lwe_dimension);
  return std::make_shared<const tfhe::EvaluationKeys>(
      tfhe::EvaluationKeys{p, tfhe::FourierBootstrapKey(tfhe::bootstrap_key_shape(p)),
                           tfhe::TruncatedKeyswitchKey(tfhe::LweKeyswitchKey(tfhe::keyswitch_key_shape(p)),
                                                       tfhe::keyswitch_key_word_bits(p.lwe_dimension, p.lwe_std_dev))});
}

const std::uint64_t kEntryBytes = evaluation_keys_bytes(*fake_keys());

// A loader that counts its calls.
struct CountingLoader {
  std::shared_ptr<std::atomic<int>> calls = std::make_shared<std::atomic<int>>(0);
  std::size_t lwe_dimension = 32;
  KeyCache::Loader operator()() const {
    return [c = calls, n = lwe_dimension] {
      ++*c;
      return fake_keys(n);
    };
  }
  int count() const { return calls->load(); }
};

TEST(KeyCacheTest, EntrySizeIsTheRealSizeOfTheExpandedKeys) {
  auto keys = fake_keys();
  const auto& p = keys->params;
  // Fourier BSK: n GGSWs of (k+1)*l rows of (k+1) spectra of N doubles.
  const std::uint64_t bsk = p.lwe_dimension.value * 2 * p.pbs_level_count.value * 2 * p.polynomial_size.value * 8;
  // Evaluation-form KSK: k*N inputs, l_ks levels, n+1 words padded to a multiple of 8, of 3 or
  // 4 bytes, and the kernel's tail.
  const std::uint64_t ksk = p.polynomial_size.value * p.ks_level_count.value * ((p.lwe_dimension.value + 8) / 8 * 8) *
                                (tfhe::keyswitch_key_word_bits(p.lwe_dimension, p.lwe_std_dev) / 8) +
                            tfhe::TruncatedKeyswitchKey::kTailBytes;
  EXPECT_EQ(keys->bsk.bytes(), bsk);
  EXPECT_EQ(keys->ksk.bytes(), ksk);
  EXPECT_GE(evaluation_keys_bytes(*keys), bsk + ksk);
  EXPECT_LT(evaluation_keys_bytes(*keys), bsk + ksk + 1024);
}

TEST(KeyCacheTest, SecondRequestIsAHitWithTheSameKeys) {
  KeyCache cache(10 * kEntryBytes);
  CountingLoader loader;
  Keys first = cache.get_or_load("a", loader());
  Keys second = cache.get_or_load("a", loader());
  EXPECT_EQ(first, second);
  EXPECT_EQ(loader.count(), 1);
  const KeyCacheStats s = cache.stats();
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.entries, 1u);
  EXPECT_EQ(s.bytes, kEntryBytes);
  EXPECT_EQ(s.byte_budget, 10 * kEntryBytes);
}

TEST(KeyCacheTest, EvictsTheLeastRecentlyUsedToStayWithinTheBudget) {
  KeyCache cache(2 * kEntryBytes + kEntryBytes / 2);  // room for two
  CountingLoader a, b, c;
  cache.get_or_load("a", a());
  cache.get_or_load("b", b());
  cache.get_or_load("a", a());  // a is now the most recent
  cache.get_or_load("c", c());  // evicts b
  EXPECT_EQ(cache.stats().evictions, 1u);
  EXPECT_EQ(cache.stats().entries, 2u);
  EXPECT_LE(cache.stats().bytes, cache.byte_budget());

  cache.get_or_load("a", a());
  cache.get_or_load("c", c());
  EXPECT_EQ(a.count(), 1);
  EXPECT_EQ(c.count(), 1);
  cache.get_or_load("b", b());  // reloaded; evicts a (c was used after it)
  EXPECT_EQ(b.count(), 2);
  cache.get_or_load("c", c());
  EXPECT_EQ(c.count(), 1);
  cache.get_or_load("a", a());
  EXPECT_EQ(a.count(), 2);
  EXPECT_EQ(cache.stats().evictions, 3u);
}

TEST(KeyCacheTest, ByteAccountingFollowsEntrySizes) {
  KeyCache cache(100 * kEntryBytes);
  const Keys small = cache.get_or_load("small", [] { return fake_keys(16); });
  const Keys large = cache.get_or_load("large", [] { return fake_keys(64); });
  EXPECT_EQ(cache.stats().bytes, evaluation_keys_bytes(*small) + evaluation_keys_bytes(*large));
  EXPECT_GT(evaluation_keys_bytes(*large), evaluation_keys_bytes(*small));
  cache.erase("large");
  EXPECT_EQ(cache.stats().bytes, evaluation_keys_bytes(*small));
  cache.clear();
  EXPECT_EQ(cache.stats().bytes, 0u);
  EXPECT_EQ(cache.stats().entries, 0u);
}

TEST(KeyCacheTest, OversizeEntryIsReturnedButNotKept) {
  KeyCache cache(kEntryBytes + kEntryBytes / 2);
  CountingLoader small, big;
  big.lwe_dimension = 128;  // about 4x an ordinary entry
  cache.get_or_load("small", small());
  Keys keys = cache.get_or_load("big", big());
  ASSERT_NE(keys, nullptr);
  EXPECT_GT(evaluation_keys_bytes(*keys), cache.byte_budget());
  EXPECT_EQ(cache.stats().oversize, 1u);
  EXPECT_EQ(cache.stats().evictions, 0u);  // it displaced nothing
  cache.get_or_load("small", small());
  EXPECT_EQ(small.count(), 1);
  cache.get_or_load("big", big());
  EXPECT_EQ(big.count(), 2);
  EXPECT_EQ(cache.stats().entries, 1u);
}

TEST(KeyCacheTest, ZeroBudgetKeepsNothing) {
  KeyCache cache(0);
  CountingLoader loader;
  cache.get_or_load("a", loader());
  cache.get_or_load("a", loader());
  EXPECT_EQ(loader.count(), 2);
  EXPECT_EQ(cache.stats().entries, 0u);
}

TEST(KeyCacheTest, ConcurrentRequestsForOneIdShareASingleLoad) {
  KeyCache cache(10 * kEntryBytes);
  std::atomic<int> calls{0};
  std::latch all_started(8);
  auto slow_loader = [&] {
    ++calls;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // everyone arrives meanwhile
    return fake_keys();
  };
  std::vector<Keys> results(8);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      all_started.arrive_and_wait();
      results[t] = cache.get_or_load("same", slow_loader);
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(calls.load(), 1);
  for (const Keys& r : results) EXPECT_EQ(r, results[0]);
  const KeyCacheStats s = cache.stats();
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.hits + s.waits, 7u);
  EXPECT_GE(s.waits, 1u);
}

TEST(KeyCacheTest, LoadsOfDifferentIdsRunInParallel) {
  KeyCache cache(10 * kEntryBytes);
  std::latch both_loading(2);
  // Each loader waits for the other to start: this deadlocks if loads are serialised.
  auto loader = [&] {
    both_loading.arrive_and_wait();
    return fake_keys();
  };
  std::thread a([&] { cache.get_or_load("a", loader); });
  std::thread b([&] { cache.get_or_load("b", loader); });
  a.join();
  b.join();
  EXPECT_EQ(cache.stats().entries, 2u);
}

TEST(KeyCacheTest, FailedLoadReachesEveryWaiterAndIsNotCached) {
  KeyCache cache(10 * kEntryBytes);
  std::atomic<int> calls{0};
  std::latch all_started(4);
  auto failing = [&]() -> Keys {
    ++calls;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    throw tfhe::FormatError("evaluation keys: bad magic");
  };
  std::atomic<int> format_errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      all_started.arrive_and_wait();
      try {
        cache.get_or_load("bad", failing);
      } catch (const tfhe::FormatError&) {
        ++format_errors;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(format_errors.load(), 4);
  EXPECT_GE(cache.stats().load_failures, 1u);
  EXPECT_EQ(cache.stats().entries, 0u);
  // The next request tries again.
  CountingLoader good;
  cache.get_or_load("bad", good());
  EXPECT_EQ(good.count(), 1);
  EXPECT_THROW(cache.get_or_load("null", [] { return Keys(); }), std::logic_error);
  EXPECT_THROW(cache.get_or_load("none", KeyCache::Loader()), std::invalid_argument);
}

TEST(KeyCacheTest, EraseDropsTheEntrySoTheNextRequestLoads) {
  KeyCache cache(10 * kEntryBytes);
  CountingLoader loader;
  cache.get_or_load("a", loader());
  EXPECT_TRUE(cache.erase("a"));
  EXPECT_FALSE(cache.erase("a"));
  EXPECT_EQ(cache.stats().entries, 0u);
  EXPECT_EQ(cache.stats().bytes, 0u);
  cache.get_or_load("a", loader());
  EXPECT_EQ(loader.count(), 2);
}

TEST(KeyCacheTest, EraseDuringALoadKeepsItsResultOutOfTheCache) {
  KeyCache cache(10 * kEntryBytes);
  std::latch loading(2), erased(2);
  std::thread t([&] {
    Keys k = cache.get_or_load("a", [&] {
      loading.arrive_and_wait();
      erased.arrive_and_wait();
      return fake_keys();
    });
    EXPECT_NE(k, nullptr);  // the request that was loading still gets its keys
  });
  loading.arrive_and_wait();
  EXPECT_TRUE(cache.erase("a"));
  erased.arrive_and_wait();
  t.join();
  EXPECT_EQ(cache.stats().entries, 0u);
  CountingLoader loader;
  cache.get_or_load("a", loader());
  EXPECT_EQ(loader.count(), 1);
}

TEST(KeyCacheTest, EvictionNeverFreesKeysInUse) {
  KeyCache cache(kEntryBytes + kEntryBytes / 2);  // room for one
  Keys in_use = cache.get_or_load("a", [] { return fake_keys(); });
  const std::weak_ptr<const tfhe::EvaluationKeys> watch = in_use;
  cache.get_or_load("b", [] { return fake_keys(); });  // evicts a
  EXPECT_EQ(cache.stats().evictions, 1u);
  ASSERT_FALSE(watch.expired());
  EXPECT_EQ(in_use->bsk.bytes(), fake_keys()->bsk.bytes());
  in_use.reset();
  EXPECT_TRUE(watch.expired());  // and the cache does not hold on to it either
}

TEST(KeyCacheTest, ManyThreadsOnASmallBudgetKeepTheInvariants) {
  KeyCache cache(3 * kEntryBytes);
  std::atomic<int> loads{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        const std::string id = testing::numbered("k", (t * 7 + i * 13) % 6);
        Keys k = cache.get_or_load(id, [&] {
          ++loads;
          return fake_keys();
        });
        ASSERT_NE(k, nullptr);
        if (i % 50 == 0) cache.erase(id);
        EXPECT_LE(cache.stats().bytes, cache.byte_budget());
      }
    });
  for (auto& th : threads) th.join();
  const KeyCacheStats s = cache.stats();
  EXPECT_EQ(s.hits + s.misses + s.waits, 1600u);
  EXPECT_EQ(s.misses, static_cast<std::uint64_t>(loads.load()));
  EXPECT_LE(s.entries, 3u);
  EXPECT_EQ(s.bytes, s.entries * kEntryBytes);
}

// The path a request takes: stored bytes -> parse -> expand -> cache.
TEST(KeyCacheTest, LoadsRealKeysFromAStoreOnce) {
  const tfhe::ParameterSet params = tfhe::toy::exact_set(2);
  const tfhe::SecretKeys secret = tfhe::generate_secret_keys(params, /*allow_insecure=*/true);
  const tfhe::SeededEvaluationKeys seeded = tfhe::generate_seeded_evaluation_keys(secret);
  const tfhe::Bytes bytes = tfhe::serialize(seeded);

  testing::SqliteBackend backend;
  auto store = open_key_store(backend.spec());
  store->put(testing::test_info("client-1"), bytes);

  std::atomic<int> parses{0};
  auto loader = [&]() -> Keys {
    ++parses;
    auto record = store->get("client-1");
    if (!record) throw std::runtime_error("unknown key id");
    return std::make_shared<const tfhe::EvaluationKeys>(
        tfhe::expand_evaluation_keys(tfhe::deserialize_seeded_evaluation_keys(record->keys, &params)));
  };
  KeyCache cache(std::uint64_t{64} << 20);
  Keys first = cache.get_or_load("client-1", loader);
  Keys second = cache.get_or_load("client-1", loader);
  EXPECT_EQ(parses.load(), 1);
  EXPECT_EQ(first, second);

  const tfhe::EvaluationKeys direct = tfhe::expand_evaluation_keys(seeded);
  ASSERT_EQ(first->bsk.bytes(), direct.bsk.bytes());
  ASSERT_EQ(first->ksk.bytes(), direct.ksk.bytes());
  EXPECT_EQ(std::memcmp(first->bsk.spectrum(0, 0, 0), direct.bsk.spectrum(0, 0, 0), direct.bsk.bytes()), 0);
  EXPECT_EQ(std::memcmp(first->ksk.data(), direct.ksk.data(), direct.ksk.bytes()), 0);
  EXPECT_EQ(cache.stats().bytes, evaluation_keys_bytes(*first));
}

}  // namespace
}  // namespace veil::server
