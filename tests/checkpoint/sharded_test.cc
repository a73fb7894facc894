// Sharded checkpoints at the checkpoint layer, without a model: ranks
// (emulated in one process) save pieces of global tensors under one way of
// cutting them, and every rank of every other way reads its boxes back
// bit for bit; damage to the pieces or their files is named; a failure on
// one rank of a collective save fails every rank and keeps what was there.
#include <gtest/gtest.h>
#include <unistd.h>

#include <barrier>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "tests/common/scratch_dir_test.h"

namespace dyt::checkpoint {
namespace {

namespace fs = std::filesystem;
using testing_support::read_bytes;
using testing_support::write_bytes;

// The global tensors: a matrix, a vector and a one-element tensor, with
// distinct values (a -0.0 and a subnormal among them, which only a bitwise
// comparison tells apart).
const std::vector<TensorShape> kTensors = {{"m", {6, 10}}, {"v", {7}}, {"s", {1}}};

std::vector<float> global_values(const TensorShape& t) {
  int64_t n = 1;
  for (int64_t d : t.shape) n *= d;
  std::vector<float> x(static_cast<size_t>(n));
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i) * 0.37f - 3.0f + static_cast<float>(t.name[0]);
  if (x.size() > 3) {
    x[1] = -0.0f;
    x[2] = 1e-40f;
  }
  return x;
}

// The elements of `box` of a row-major tensor of `shape` (rank <= 2).
std::vector<float> slice(const std::vector<float>& g, const std::vector<int64_t>& shape, const Box& box) {
  std::vector<float> out;
  if (shape.size() == 1) {
    for (int64_t i = 0; i < box.extent[0]; ++i) out.push_back(g[box.offset[0] + i]);
    return out;
  }
  for (int64_t r = 0; r < box.extent[0]; ++r)
    for (int64_t c = 0; c < box.extent[1]; ++c) out.push_back(g[(box.offset[0] + r) * shape[1] + box.offset[1] + c]);
  return out;
}

// A way of cutting the tensors among ranks: rank -> tensor -> boxes.
using Layout = std::vector<std::vector<std::vector<Box>>>;

// The boxes of the flat range [b, e) of a row-major [rows, cols] tensor: a
// partial first row, whole rows, a partial last row (as a trainer's
// data-parallel range cuts a block).
std::vector<Box> flat_boxes(int64_t cols, int64_t b, int64_t e) {
  std::vector<Box> out;
  while (b < e) {
    const int64_t r = b / cols, c = b % cols;
    if (c != 0 || e - b < cols) {
      const int64_t n = std::min(cols - c, e - b);
      out.push_back({{r, c}, {1, n}});
      b += n;
    } else {
      const int64_t rows = (e - b) / cols;
      out.push_back({{r, 0}, {rows, cols}});
      b += rows * cols;
    }
  }
  return out;
}

std::vector<Layout> layouts() {
  std::vector<Layout> all;
  all.push_back({{{{{0, 0}, {6, 10}}}, {{{0}, {7}}}, {{{0}, {1}}}}});  // one rank, whole
  // 3 ranks by rows; the vector on two of them, the scalar on rank 2.
  all.push_back({{{{{0, 0}, {2, 10}}}, {{{0}, {3}}}, {}},
                 {{{{2, 0}, {2, 10}}}, {{{3}, {4}}}, {}},
                 {{{{4, 0}, {2, 10}}}, {}, {{{0}, {1}}}}});
  // 2 ranks by columns (row-parallel), rank 0's block cut by a flat range
  // and the rest of it on rank 1.
  all.push_back({{{{{0, 2}, {1, 2}}, {{1, 0}, {4, 4}}, {{5, 0}, {1, 3}}}, {{{0}, {7}}}, {{{0}, {1}}}},
                 {{{{0, 4}, {6, 6}}, {{0, 0}, {1, 2}}, {{5, 3}, {1, 1}}}, {}, {}}});
  // 4 ranks, each the flat range ceil(n/4) of every tensor (the last ones
  // of the scalar empty).
  Layout flat(4, std::vector<std::vector<Box>>(3));
  for (int r = 0; r < 4; ++r) {
    flat[r][0] = flat_boxes(10, std::min<int64_t>(60, 15 * r), std::min<int64_t>(60, 15 * (r + 1)));
    for (const Box& b : flat_boxes(7, std::min<int64_t>(7, 2 * r), std::min<int64_t>(7, 2 * (r + 1))))
      flat[r][1].push_back({{b.offset[1]}, {b.extent[1]}});
    if (r == 0) flat[r][2].push_back({{0}, {1}});
  }
  all.push_back(flat);
  return all;
}

// The pieces of one rank, pointing into `store` (kept alive by the caller).
std::vector<PieceRef> pieces_of(const Layout& layout, int rank, std::vector<std::vector<float>>& store) {
  std::vector<PieceRef> out;
  for (size_t t = 0; t < kTensors.size(); ++t) {
    const std::vector<float> g = global_values(kTensors[t]);
    for (const Box& b : layout[rank][t]) {
      store.push_back(slice(g, kTensors[t].shape, b));
      out.push_back({kTensors[t].name, b, store.back().data()});
    }
  }
  return out;
}

// The ranks of a collective save as threads; agreement through a barrier.
class ThreadRanks {
 public:
  explicit ThreadRanks(int n) : barrier_(n) {}
  Agree agree(int rank) {
    return [this, rank](const std::string& error) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (!error.empty() && first_.empty()) first_ = "rank " + std::to_string(rank) + ": " + error;
      }
      barrier_.arrive_and_wait();
      std::string first;
      {
        std::lock_guard<std::mutex> lock(mu_);
        first = first_;
      }
      barrier_.arrive_and_wait();  // every rank has read it before the next round writes
      return first;
    };
  }

 private:
  std::barrier<> barrier_;
  std::mutex mu_;
  std::string first_;
};

class ShardedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    root_ = fs::temp_directory_path() / ("dyt_sharded_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  // Saves `layout` at `step` with every rank a thread; returns each rank's
  // error ("" when it succeeded). `spoil(rank, pieces)` may damage a rank's
  // pieces first.
  std::vector<std::string> save(const Layout& layout, int64_t step,
                                const std::function<void(int, std::vector<PieceRef>&)>& spoil = {}) {
    const int n = static_cast<int>(layout.size());
    ThreadRanks ranks(n);
    std::vector<std::string> errors(n);
    std::vector<std::thread> threads;
    for (int r = 0; r < n; ++r)
      threads.emplace_back([&, r] {
        std::vector<std::vector<float>> store;
        store.reserve(64);
        std::vector<PieceRef> pieces = pieces_of(layout, r, store);
        if (spoil) spoil(r, pieces);
        try {
          save_checkpoint(root_.string(), {step, step, 0, 0}, "cfg", kTensors, pieces, r, n, 2, ranks.agree(r));
        } catch (const CheckpointError& e) {
          errors[r] = e.what();
        }
      });
    for (auto& t : threads) t.join();
    return errors;
  }
  fs::path step_dir(int64_t step) const {
    char name[32];
    std::snprintf(name, sizeof name, "step-%08lld", static_cast<long long>(step));
    return root_ / name;
  }
  std::string load_error(int64_t step) {
    try {
      load_checkpoint(step_dir(step).string());
    } catch (const CheckpointError& e) {
      return e.what();
    }
    return "(no error)";
  }
  void edit_manifest(int64_t step, const std::string& from, const std::string& to) {
    const fs::path m = step_dir(step) / "manifest.pbtxt";
    std::string text = read_bytes(m);
    const auto at = text.find(from);
    ASSERT_NE(at, std::string::npos) << from << " not in\n" << text;
    write_bytes(m, text.replace(at, from.size(), to));
  }

  fs::path root_;
};

TEST_F(ShardedTest, EveryLayoutReadsEveryOtherBitForBit) {
  const std::vector<Layout> all = layouts();
  int64_t step = 1, boxes_read = 0;
  for (size_t s = 0; s < all.size(); ++s, ++step) {
    for (const std::string& e : save(all[s], step)) ASSERT_EQ(e, "") << "saving layout " << s;
    const Checkpoint ck = load_checkpoint(step_dir(step).string());
    EXPECT_EQ(ck.format_version, 2);
    EXPECT_EQ(ck.shapes().size(), kTensors.size());
    for (size_t r = 0; r < all.size(); ++r)
      for (const auto& rank : all[r])
        for (size_t t = 0; t < kTensors.size(); ++t)
          for (const Box& b : rank[t]) {
            const std::vector<float> want = slice(global_values(kTensors[t]), kTensors[t].shape, b);
            std::vector<float> got(want.size(), 12345.0f);
            ck.read(kTensors[t].name, b, got.data());
            ASSERT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0)
                << "tensor " << kTensors[t].name << " saved under layout " << s << ", read under " << r;
            ++boxes_read;
          }
    for (const TensorShape& t : kTensors) {
      const std::vector<float> want = global_values(t), got = ck.read_all(t.name);
      EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0) << t.name;
    }
  }
  std::printf("%lld boxes read across %zu x %zu layouts\n", static_cast<long long>(boxes_read), all.size(),
              all.size());
}

TEST_F(ShardedTest, ReadsOutsideATensorOrOfAnUnknownOneAreNamed) {
  ASSERT_EQ(save(layouts()[1], 3)[0], "");
  const Checkpoint ck = load_checkpoint(step_dir(3).string());
  std::vector<float> out(100);
  try {
    ck.read("m", {{5, 0}, {2, 10}}, out.data());
    ADD_FAILURE() << "expected an error";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'm': the box at offset [5, 0] of extent [2, 10] does not lie inside its shape [6, 10]"),
              std::string::npos) << e.what();
  }
  try {
    ck.read("nope", {{0}, {1}}, out.data());
    ADD_FAILURE() << "expected an error";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("manifest.pbtxt': has no tensor 'nope'"), std::string::npos) << e.what();
  }
}

TEST_F(ShardedTest, DamageIsNamedWithTheFile) {
  const Layout three = layouts()[1];
  // A missing shard file.
  ASSERT_EQ(save(three, 1)[0], "");
  fs::remove(step_dir(1) / "rank-00002.safetensors");
  std::string e = load_error(1);
  EXPECT_NE(e.find((step_dir(1) / "rank-00002.safetensors").string() + "': cannot open"), std::string::npos) << e;

  // A file whose tensor's shape disagrees with the manifest's extent (the
  // manifest still tiles the tensor).
  ASSERT_EQ(save(three, 2)[0], "");
  {
    const std::vector<float> x(3 * 10, 1.0f), v(4, 1.0f);
    write_safetensors((step_dir(2) / "rank-00001.safetensors").string(),
                      {{"m@2,0", {3, 10}, x.data()}, {"v@3", {4}, v.data()}});
  }
  e = load_error(2);
  EXPECT_NE(e.find("rank-00001.safetensors': tensor 'm@2,0' has shape [3, 10], the manifest says extent [2, 10] (tensor 'm')"),
            std::string::npos) << e;

  // Overlapping pieces.
  ASSERT_EQ(save(three, 3)[0], "");
  edit_manifest(3, "offset: 4\n", "offset: 3\n");
  e = load_error(3);
  EXPECT_NE(e.find("manifest.pbtxt': tensor 'm' of shape [6, 10]: piece 1 [offset [2, 0], extent [2, 10]] overlaps piece 2 [offset [3, 0], extent [2, 10]]"),
            std::string::npos) << e;

  // A piece missing from the manifest (and so its file's tensor unlisted).
  ASSERT_EQ(save(three, 4)[0], "");
  edit_manifest(4, "  pieces {\n    file: \"rank-00002.safetensors\"\n    key: \"m@4,0\"\n    offset: 4\n    offset: 0\n    extent: 2\n    extent: 10\n  }\n", "");
  e = load_error(4);
  EXPECT_NE(e.find("tensor 'm' of shape [6, 10]: the pieces leave 20 of 60 elements uncovered"), std::string::npos) << e;

  // A truncated file.
  ASSERT_EQ(save(three, 5)[0], "");
  {
    const fs::path f = step_dir(5) / "rank-00000.safetensors";
    fs::resize_file(f, fs::file_size(f) - 8);
  }
  e = load_error(5);
  EXPECT_NE(e.find("rank-00000.safetensors': tensor"), std::string::npos) << e;
  EXPECT_NE(e.find("truncated file?"), std::string::npos) << e;
}

// Pieces that would not load are refused before the commit, on every rank,
// and a failure on one rank fails them all: the previous checkpoint stays
// the latest and no .tmp is left.
TEST_F(ShardedTest, AFailedSaveFailsEveryRankAndKeepsThePreviousOne) {
  const Layout three = layouts()[1];
  ASSERT_EQ(save(three, 1)[0], "");

  // Rank 1 leaves out a piece: a gap, found by rank 0 from the files.
  std::vector<std::string> errors = save(three, 2, [](int r, std::vector<PieceRef>& p) {
    if (r == 1) p.pop_back();
  });
  for (const std::string& e : errors)
    EXPECT_NE(e.find("the ranks' pieces of tensor 'v' do not tile its shape [7]: the pieces leave 4 of 7 elements uncovered"),
              std::string::npos) << e;

  // Rank 2 cannot write (a name the format refuses): every rank throws its error.
  errors = save(three, 2, [](int r, std::vector<PieceRef>& p) {
    if (r == 2) p[0].tensor = "bad@name";
  });
  for (const std::string& e : errors)
    EXPECT_NE(e.find("rank 2: checkpoint '" + (root_ / "step-00000002.tmp" / "rank-00002.safetensors").string()),
              std::string::npos) << e;

  // Two ranks cover the same box: an overlap.
  errors = save(three, 2, [](int r, std::vector<PieceRef>& p) {
    if (r == 1) p[0].box.offset[0] = 1;
  });
  EXPECT_NE(errors[0].find("piece 0 [offset [0, 0], extent [2, 10]] overlaps piece 1 [offset [1, 0], extent [2, 10]]"),
            std::string::npos) << errors[0];

  std::vector<std::string> left;
  for (const auto& d : fs::directory_iterator(root_)) left.push_back(d.path().filename());
  EXPECT_EQ(left, std::vector<std::string>{"step-00000001"});
  EXPECT_EQ(load_latest_checkpoint(root_.string())->progress.step, 1);
}

}  // namespace
}  // namespace dyt::checkpoint
