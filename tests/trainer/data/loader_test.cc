// The data loader: samples from shards, the keyed global order, data-parallel
// slices of a global batch, the fixed validation set, and its errors.
#include "trainer/data/loader.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "tests/common/scratch_dir_test.h"
#include "trainer/data/token_shard.h"

namespace dyt::data {
namespace {

namespace fs = std::filesystem;

class LoaderTest : public testing_support::ScratchDirTest {
 protected:
  LoaderTest() : ScratchDirTest("loader") {}
  std::string glob(const std::string& pattern) const { return (dir_ / pattern).string(); }

  // A shard whose token i is base + i (mod 65000), so every position is recognisable.
  std::vector<uint32_t> write_ramp(const std::string& name, int64_t n, uint32_t base,
                                   bool force_uint32 = false) {
    std::vector<uint32_t> t(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) t[static_cast<size_t>(i)] = (base + static_cast<uint32_t>(i)) % 65000;
    write_token_shard(file(name), t, force_uint32);
    return t;
  }
};

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const DataError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a DataError";
  return "";
}

// ---- permutation ---------------------------------------------------------------

TEST(KeyedPermutation, IsABijectionForManySizes) {
  for (int64_t n : {1, 2, 3, 4, 5, 7, 8, 9, 1000, 1024, 4097, 65537}) {
    for (uint64_t key : {0ULL, 1ULL, 0xdeadbeefULL}) {
      KeyedPermutation p(n, key);
      std::vector<char> seen(static_cast<size_t>(n), 0);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t v = p(i);
        ASSERT_GE(v, 0) << "n=" << n;
        ASSERT_LT(v, n) << "n=" << n;
        ASSERT_FALSE(seen[static_cast<size_t>(v)]) << "n=" << n << " key=" << key << " repeats " << v;
        seen[static_cast<size_t>(v)] = 1;
      }
    }
  }
}

TEST(KeyedPermutation, LooksShuffled) {
  const int64_t n = 1000;
  KeyedPermutation p(n, 42);
  int fixed = 0, ascending = 0;
  for (int64_t i = 0; i < n; ++i) {
    fixed += p(i) == i;
    if (i > 0) ascending += p(i) > p(i - 1);
  }
  EXPECT_LT(fixed, 10);                  // ~1 expected for a random permutation
  EXPECT_NEAR(ascending, n / 2, n / 10);  // ~n/2 ascents
}

TEST(KeyedPermutation, RejectsBadArguments) {
  EXPECT_THROW(KeyedPermutation(0, 1), std::invalid_argument);
  KeyedPermutation p(7, 1);
  EXPECT_THROW(p(7), std::out_of_range);
  EXPECT_THROW(p(-1), std::out_of_range);
}

std::vector<int64_t> epoch_order(const SampleOrder& o, int64_t epoch) {
  std::vector<int64_t> v;
  for (int64_t i = 0; i < o.num_samples(); ++i) v.push_back(o.sample_at(epoch * o.num_samples() + i));
  return v;
}

TEST(SampleOrder, EveryEpochVisitsEverySampleOnce) {
  for (int64_t s : {1, 2, 7, 1000, 4097}) {
    SampleOrder o(s, 1234);
    for (int64_t e = 0; e < 3; ++e) {
      std::vector<int64_t> v = epoch_order(o, e);
      std::sort(v.begin(), v.end());
      std::vector<int64_t> want(static_cast<size_t>(s));
      std::iota(want.begin(), want.end(), 0);
      EXPECT_EQ(v, want) << "S=" << s << " epoch " << e;
    }
  }
}

TEST(SampleOrder, DiffersBySeedAndEpochAndIsReproducible) {
  const int64_t s = 1000;
  SampleOrder a(s, 1234), again(s, 1234), b(s, 1235);
  EXPECT_EQ(epoch_order(a, 0), epoch_order(again, 0));
  EXPECT_EQ(epoch_order(a, 5), epoch_order(again, 5));
  EXPECT_NE(epoch_order(a, 0), epoch_order(b, 0));
  EXPECT_NE(epoch_order(a, 0), epoch_order(a, 1));
  EXPECT_NE(epoch_order(a, 1), epoch_order(a, 2));
  // O(1) random access far into training: same answer in any order of calls.
  const int64_t far = int64_t{1} << 40;
  EXPECT_EQ(a.sample_at(far), again.sample_at(far));
  EXPECT_EQ(a.epoch_of(far), far / s);
  // Known values pin the order across platforms and refactorings (a change
  // here changes every run's data order: do it knowingly).
  const std::vector<int64_t> first = {a.sample_at(0), a.sample_at(1), a.sample_at(2), a.sample_at(3)};
  EXPECT_EQ(first, (std::vector<int64_t>{411, 159, 307, 554}));
}

TEST(SampleOrder, SizeOneAlwaysZero) {
  SampleOrder o(1, 99);
  for (int64_t g = 0; g < 10; ++g) EXPECT_EQ(o.sample_at(g), 0);
  EXPECT_THROW(SampleOrder(0, 1), std::invalid_argument);
  EXPECT_THROW(o.sample_at(-1), std::out_of_range);
}

// ---- samples -------------------------------------------------------------------

TEST_F(LoaderTest, SamplesAreWindowsOfEachShard) {
  const int64_t T = 8;
  // Sizes chosen around the edges: 1 token and T tokens give no sample,
  // T + 1 exactly one, 100 gives floor(99 / 8) = 12; one shard is uint32.
  std::vector<std::vector<uint32_t>> raw = {
      write_ramp("s_000.bin", 100, 0),     write_ramp("s_001.bin", 1, 500),
      write_ramp("s_002.bin", T, 600),     write_ramp("s_003.bin", T + 1, 700),
      write_ramp("s_004.bin", 57, 64990, /*force_uint32=*/true),
  };
  TokenDataset d = TokenDataset::open(glob("s_*.bin"), T, "data.train_shards");
  ASSERT_EQ(d.shards().size(), 5u);
  EXPECT_EQ(d.num_tokens(), 100 + 1 + T + T + 1 + 57);
  EXPECT_EQ(d.num_samples(), 12 + 0 + 0 + 1 + 7);

  // Expected samples straight from the raw tokens, in shard order.
  std::vector<std::pair<size_t, int64_t>> where;  // (shard, start)
  for (size_t s = 0; s < raw.size(); ++s) {
    const int64_t n = static_cast<int64_t>(raw[s].size());
    for (int64_t j = 0; j < (n - 1) / T; ++j) where.push_back({s, j * T});
  }
  ASSERT_EQ(static_cast<int64_t>(where.size()), d.num_samples());
  std::vector<int32_t> tok(T), tgt(T);
  for (int64_t i = 0; i < d.num_samples(); ++i) {
    d.read_sample(i, tok.data(), tgt.data());
    const auto [s, start] = where[static_cast<size_t>(i)];
    for (int64_t t = 0; t < T; ++t) {
      ASSERT_EQ(tok[t], static_cast<int32_t>(raw[s][start + t])) << "sample " << i << " t " << t;
      ASSERT_EQ(tgt[t], static_cast<int32_t>(raw[s][start + t + 1])) << "sample " << i << " t " << t;
    }
  }
  EXPECT_THROW(d.read_sample(d.num_samples(), tok.data(), tgt.data()), std::out_of_range);
  EXPECT_THROW(d.read_sample(-1, tok.data(), tgt.data()), std::out_of_range);
}

TEST_F(LoaderTest, ShardsAreTakenInSortedOrder) {
  write_ramp("b.bin", 9, 200);
  write_ramp("a.bin", 9, 100);
  write_ramp("c.bin", 9, 300);
  TokenDataset d = TokenDataset::open(glob("*.bin"), 8, "data.train_shards");
  std::vector<int32_t> tok(8), tgt(8);
  for (int64_t i = 0; i < 3; ++i) {
    d.read_sample(i, tok.data(), tgt.data());
    EXPECT_EQ(tok[0], 100 * (i + 1));
  }
}

TEST_F(LoaderTest, GlobMatchingNothingNamesFieldAndGlob) {
  const std::string pattern = glob("nothing_*.bin");
  const std::string msg = error_of([&] { TokenDataset::open(pattern, 8, "data.train_shards"); });
  EXPECT_NE(msg.find("data.train_shards"), std::string::npos) << msg;
  EXPECT_NE(msg.find(pattern), std::string::npos) << msg;
  EXPECT_NE(msg.find("matches no file"), std::string::npos) << msg;
  const std::string empty = error_of([&] { TokenDataset::open("", 8, "data.val_shards"); });
  EXPECT_NE(empty.find("data.val_shards is empty"), std::string::npos) << empty;
}

TEST_F(LoaderTest, NoSampleIsAnError) {
  write_ramp("short.bin", 8, 0);
  const std::string msg = error_of([&] { TokenDataset::open(glob("*.bin"), 8, "data.train_shards"); });
  EXPECT_NE(msg.find("data.train_shards"), std::string::npos) << msg;
  EXPECT_NE(msg.find("no sample"), std::string::npos) << msg;
}

TEST_F(LoaderTest, CheckVocabNamesShardAndVocabSize) {
  write_ramp("ok_000.bin", 50, 0);
  std::vector<uint32_t> t(50, 7);
  t[31] = 5000;
  write_token_shard(file("ok_001.bin"), t);
  TokenDataset d = TokenDataset::open(glob("ok_*.bin"), 8, "data.train_shards");
  const std::string msg = error_of([&] { d.check_vocab(4096); });
  EXPECT_NE(msg.find(file("ok_001.bin")), std::string::npos) << msg;
  EXPECT_NE(msg.find("5000"), std::string::npos) << msg;
  EXPECT_NE(msg.find("model.vocab_size = 4096"), std::string::npos) << msg;
  EXPECT_NO_THROW(d.check_vocab(5001));
  EXPECT_THROW(d.check_vocab(5000), DataError);
}

TEST_F(LoaderTest, RejectsTruncatedShardAndWrongMagic) {
  write_ramp("t_000.bin", 100, 0);
  write_ramp("t_001.bin", 100, 0);
  fs::resize_file(file("t_001.bin"), 1024 + 2 * 60);
  std::string msg = error_of([&] { TokenDataset::open(glob("t_*.bin"), 8, "data.train_shards"); });
  EXPECT_NE(msg.find(file("t_001.bin")), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;

  write_ramp("m_000.bin", 100, 0);
  {
    std::fstream f(file("m_000.bin"), std::ios::in | std::ios::out | std::ios::binary);
    const int32_t bad = 12345;
    f.write(reinterpret_cast<const char*>(&bad), 4);
  }
  msg = error_of([&] { TokenDataset::open(glob("m_*.bin"), 8, "data.val_shards"); });
  EXPECT_NE(msg.find(file("m_000.bin")), std::string::npos) << msg;
  EXPECT_NE(msg.find("unknown magic 12345"), std::string::npos) << msg;
}

// ---- batches -------------------------------------------------------------------

// All tokens of step `step`, rank by rank, micro-batch by micro-batch.
std::vector<int32_t> global_batch(const TokenDataset& d, uint64_t seed, int64_t gbt, int64_t B,
                                  int world, int64_t step, std::vector<int32_t>* targets) {
  std::vector<int32_t> all;
  for (int r = 0; r < world; ++r) {
    BatchSampler s(d, seed, gbt, B, r, world);
    std::vector<int32_t> tok(static_cast<size_t>(B * d.seq_len())), tgt(tok.size());
    for (int64_t j = 0; j < s.micro_batches_per_step(); ++j) {
      s.fill_micro_batch(step, j, tok.data(), tgt.data());
      all.insert(all.end(), tok.begin(), tok.end());
      targets->insert(targets->end(), tgt.begin(), tgt.end());
    }
  }
  return all;
}

TEST_F(LoaderTest, DataParallelSlicesConcatenateToTheSingleRankBatch) {
  const int64_t T = 4;
  write_ramp("d_000.bin", 1000, 0);
  write_ramp("d_001.bin", 333, 20000);
  TokenDataset d = TokenDataset::open(glob("d_*.bin"), T, "data.train_shards");
  const int64_t G = 16, gbt = G * T;
  for (int64_t step : {0, 3, 50}) {  // step 50 is in a later epoch
    std::vector<int32_t> tg1, tg2, tg4, tg4b1;
    const auto one = global_batch(d, 7, gbt, 4, 1, step, &tg1);
    const auto two = global_batch(d, 7, gbt, 4, 2, step, &tg2);
    const auto four = global_batch(d, 7, gbt, 2, 4, step, &tg4);
    const auto four_b1 = global_batch(d, 7, gbt, 1, 4, step, &tg4b1);
    ASSERT_EQ(one.size(), static_cast<size_t>(G * T));
    EXPECT_EQ(one, two) << "step " << step;
    EXPECT_EQ(one, four) << "step " << step;
    EXPECT_EQ(one, four_b1) << "step " << step;
    EXPECT_EQ(tg1, tg2);
    EXPECT_EQ(tg1, tg4);
  }
  BatchSampler s(d, 7, gbt, 2, 1, 2);
  EXPECT_EQ(s.global_batch_samples(), G);
  EXPECT_EQ(s.micro_batches_per_step(), 4);
  EXPECT_EQ(s.global_index(3, 2, 1), 3 * G + 1 * 8 + 2 * 2 + 1);
}

TEST_F(LoaderTest, StepsCoverAnEpochExactlyOnce) {
  const int64_t T = 4;
  write_ramp("e_000.bin", 4 * 48 + 1, 0);  // 48 samples
  TokenDataset d = TokenDataset::open(glob("e_*.bin"), T, "data.train_shards");
  ASSERT_EQ(d.num_samples(), 48);
  BatchSampler s(d, 99, 8 * T, 2, 0, 1);  // G = 8: 6 steps per epoch
  std::multiset<int32_t> first_tokens;
  std::vector<int32_t> tok(2 * T), tgt(2 * T);
  for (int64_t step = 0; step < 6; ++step) {
    EXPECT_EQ(s.epoch_of_step(step), 0);
    for (int64_t j = 0; j < s.micro_batches_per_step(); ++j) {
      s.fill_micro_batch(step, j, tok.data(), tgt.data());
      first_tokens.insert(tok[0]);
      first_tokens.insert(tok[T]);
    }
  }
  EXPECT_EQ(s.epoch_of_step(6), 1);
  std::multiset<int32_t> want;
  for (int32_t i = 0; i < 48; ++i) want.insert(i * T);
  EXPECT_EQ(first_tokens, want);
}

TEST_F(LoaderTest, BatchSamplerRejectsBadLayouts) {
  write_ramp("l_000.bin", 1000, 0);
  TokenDataset d = TokenDataset::open(glob("l_*.bin"), 8, "data.train_shards");
  EXPECT_THROW(BatchSampler(d, 1, 100, 2, 0, 1), std::invalid_argument);   // not a multiple of T
  EXPECT_THROW(BatchSampler(d, 1, 8 * 6, 4, 0, 1), std::invalid_argument); // 6 samples, B = 4
  EXPECT_THROW(BatchSampler(d, 1, 8 * 8, 2, 0, 3), std::invalid_argument); // dp 3
  EXPECT_THROW(BatchSampler(d, 1, 8 * 8, 2, 2, 2), std::invalid_argument); // rank 2 of 2
  EXPECT_THROW(BatchSampler(d, 1, 8 * 8, 0, 0, 1), std::invalid_argument);
  BatchSampler s(d, 1, 8 * 8, 2, 0, 2);
  std::vector<int32_t> tok(16), tgt(16);
  EXPECT_THROW(s.fill_micro_batch(0, 2, tok.data(), tgt.data()), std::out_of_range);
  EXPECT_THROW(s.fill_micro_batch(-1, 0, tok.data(), tgt.data()), std::out_of_range);
}

TEST_F(LoaderTest, EvalBatchesAreTheFirstSamplesInFileOrder) {
  const int64_t T = 4;
  write_ramp("v_000.bin", 4 * 5 + 1, 0);     // 5 samples
  write_ramp("v_001.bin", 4 * 5 + 1, 1000);  // 5 samples
  TokenDataset d = TokenDataset::open(glob("v_*.bin"), T, "data.val_shards");
  EvalBatches e(d, 3, 3);  // samples 0..8
  EXPECT_EQ(e.num_batches(), 3);
  std::vector<int32_t> tok(3 * T), tgt(3 * T), rt(T), rg(T);
  for (int64_t j = 0; j < 3; ++j) {
    e.fill_batch(j, tok.data(), tgt.data());
    for (int64_t b = 0; b < 3; ++b) {
      d.read_sample(j * 3 + b, rt.data(), rg.data());
      EXPECT_TRUE(std::equal(rt.begin(), rt.end(), tok.begin() + b * T));
      EXPECT_TRUE(std::equal(rg.begin(), rg.end(), tgt.begin() + b * T));
    }
  }
  EXPECT_TRUE(EvalBatches::is_local(4, 0, 2));
  EXPECT_FALSE(EvalBatches::is_local(4, 1, 2));
  const std::string msg = error_of([&] { EvalBatches(d, 4, 3); });  // 12 > 10 samples
  EXPECT_NE(msg.find("data.val_shards"), std::string::npos) << msg;
  EXPECT_NE(msg.find("train.eval_batches"), std::string::npos) << msg;
  EXPECT_THROW(e.fill_batch(3, tok.data(), tgt.data()), std::out_of_range);
}

}  // namespace
}  // namespace dyt::data
