// Resharding at the trainer level, in one process, without the model's
// math: a tiny model's layout under dp × tp ∈ {1×1, 2×2, 1×4, 4×1, 2×1}
// (ZeRO-1 on and off), each rank's flat buffers filled by slicing known
// global tensors; saved by the emulated ranks of one layout and restored by
// every rank of every other, whose parameters (its whole tp block, replicas
// included) and moments (its moment_range) must equal the slices bit for
// bit. n_kv_heads 2 < tp 4 puts replicated KV blocks in the set, written
// once (by their owner) and read by every replica.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "trainer/dp_partition.h"
#include "trainer/param_layout.h"
#include "trainer/resume.h"
#include "trainer/state_pieces.h"

namespace dyt::trainer {
namespace {

namespace fs = std::filesystem;

ModelDims tiny_dims() {
  ModelDims d;
  d.vocab = 64;
  d.d = 32;
  d.layers = 2;
  d.heads = 4;
  d.kv_heads = 2;
  d.head_dim = 8;
  d.ffn = 48;
  d.norm = Norm::DyT;
  d.norm_bias = true;
  d.embed_scale = true;
  return d;
}

struct LayoutSpec {
  int dp, tp;
  bool zero1;
  std::string text() const { return std::to_string(dp) + "x" + std::to_string(tp) + (zero1 ? " zero1" : ""); }
};

const std::vector<LayoutSpec> kLayouts = {{1, 1, false}, {2, 2, true}, {2, 2, false}, {1, 4, false},
                                          {4, 1, false}, {4, 1, true},  {2, 1, false}, {2, 1, true}};

// Global value `which` (0 parameters, 1 exp_avg, 2 exp_avg_sq) of element i
// of tensor `name`: distinct for every (tensor, element, which).
float global_value(const std::string& name, int64_t i, int which) {
  uint32_t h = 2166136261u;
  for (char c : name) h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
  h = (h ^ static_cast<uint32_t>(i)) * 16777619u;
  h = (h ^ static_cast<uint32_t>(which)) * 16777619u;
  return static_cast<float>(h % 1000003) * 1e-3f - 500.0f + static_cast<float>(which);
}

// Rank (dp_rank, tp_rank)'s full flat buffer of `which`: each entry's block
// sliced from the global tensor (by hand here, from split_dim and start, not
// through state_pieces), the gaps zero.
std::vector<float> local_flat(const ParamLayout& layout, int which) {
  std::vector<float> buf(static_cast<size_t>(layout.total()), 0.0f);
  for (const ParamEntry& e : layout.entries()) {
    const int64_t rows = e.shape.size() == 2 ? e.shape[0] : 1, cols = e.shape.back();
    const int64_t gcols = e.global_shape.back();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        int64_t gr = r, gc = c;
        if (e.shard.split_dim == 0 && e.shape.size() == 2) gr += e.shard.start;
        if (e.shard.split_dim == 0 && e.shape.size() == 1) gc += e.shard.start;
        if (e.shard.split_dim == 1) gc += e.shard.start;
        buf[static_cast<size_t>(e.offset + r * cols + c)] = global_value(e.name, gr * gcols + gc, which);
      }
  }
  return buf;
}

struct Rank {
  ParamLayout layout;
  FlatRange moments;
  std::vector<float> params, m, v;  // params whole; m, v of `moments`
};

// Every rank of `spec`, rank = dp_rank · tp + tp_rank, its buffers holding
// the slices (filled) or zeros (to be restored into).
std::vector<Rank> ranks_of(const LayoutSpec& spec, bool filled) {
  std::vector<Rank> out;
  for (int dr = 0; dr < spec.dp; ++dr)
    for (int tr = 0; tr < spec.tp; ++tr) {
      ParamLayout layout(tiny_dims(), TpRank{tr, spec.tp});
      const FlatRange mr = moment_range(layout, spec.dp, dr, spec.zero1);
      Rank r{layout, mr, {}, {}, {}};
      r.params = filled ? local_flat(layout, 0) : std::vector<float>(static_cast<size_t>(layout.total()), 0.0f);
      for (int which : {1, 2}) {
        std::vector<float> full = filled ? local_flat(layout, which) : std::vector<float>(static_cast<size_t>(layout.total()), 0.0f);
        (which == 1 ? r.m : r.v).assign(full.begin() + mr.begin, full.begin() + mr.end);
      }
      out.push_back(std::move(r));
    }
  return out;
}

class ReshardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    root_ = (fs::temp_directory_path() / ("dyt_reshard_" + std::to_string(::getpid()) + "_" + info->name())).string();
    fs::remove_all(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  // Saves `spec`'s ranks at `step` (the three steps of a collective save,
  // in rank order) and returns the checkpoint.
  checkpoint::Checkpoint save(const LayoutSpec& spec, int64_t step) {
    const std::vector<Rank> ranks = ranks_of(spec, true);
    checkpoint::begin_save(root_, step, 100);
    for (int dr = 0; dr < spec.dp; ++dr)
      for (int tr = 0; tr < spec.tp; ++tr) {
        const Rank& r = ranks[static_cast<size_t>(dr * spec.tp + tr)];
        // Under ZeRO-1 the parameters come as a sharded master holds them
        // (BF16): the rank's range only, indexed like the moments.
        const std::vector<float> range(r.params.begin() + r.moments.begin, r.params.begin() + r.moments.end);
        const auto pieces = run_state_pieces(r.layout, dp_partition(r.layout.total(), spec.dp, dr),
                                             {spec.zero1 ? range.data() : r.params.data(), r.m.data(), r.v.data(),
                                              r.moments, spec.zero1});
        checkpoint::write_rank_file(root_, step, dr * spec.tp + tr, pieces);
      }
    // Rank 0 checks that the pieces tile every tensor exactly once.
    const std::string dir = checkpoint::commit_save(root_, {step, step, 0, 0}, "",
                                                    run_state_shapes(ranks[0].layout), spec.dp * spec.tp, 100);
    return checkpoint::load_checkpoint(dir);
  }

  std::string root_;
};

TEST_F(ReshardTest, EveryLayoutRestoresEveryOtherBitForBit) {
  int64_t step = 1, compared = 0;
  for (const LayoutSpec& saved : kLayouts) {
    const checkpoint::Checkpoint ck = save(saved, step++);
    for (const LayoutSpec& loaded : kLayouts) {
      const std::vector<Rank> want = ranks_of(loaded, true);
      std::vector<Rank> got = ranks_of(loaded, false);
      for (size_t i = 0; i < got.size(); ++i) {
        Rank& r = got[i];
        restore_run_state(ck, r.layout, {r.params.data(), r.m.data(), r.v.data(), r.moments});
        const std::string what = "saved " + saved.text() + ", restored by rank " + std::to_string(i) + " of " + loaded.text();
        ASSERT_EQ(r.params.size(), want[i].params.size());
        EXPECT_EQ(std::memcmp(r.params.data(), want[i].params.data(), r.params.size() * sizeof(float)), 0)
            << what << ": parameters";
        ASSERT_EQ(r.m.size(), want[i].m.size());
        EXPECT_EQ(std::memcmp(r.m.data(), want[i].m.data(), r.m.size() * sizeof(float)), 0) << what << ": exp_avg";
        EXPECT_EQ(std::memcmp(r.v.data(), want[i].v.data(), r.v.size() * sizeof(float)), 0) << what << ": exp_avg_sq";
        compared += static_cast<int64_t>(r.params.size() + r.m.size() + r.v.size());
      }
    }
  }
  std::printf("%zu x %zu layouts, %lld floats compared\n", kLayouts.size(), kLayouts.size(),
              static_cast<long long>(compared));
}

// Restoring reads whole blocks: a state whose parameters are a range is refused.
TEST_F(ReshardTest, RestoreRefusesRangeParameters) {
  const checkpoint::Checkpoint ck = save({2, 1, true}, 3);
  std::vector<Rank> got = ranks_of({2, 1, true}, false);
  Rank& r = got[0];
  EXPECT_THROW(restore_run_state(ck, r.layout, {r.params.data(), r.m.data(), r.v.data(), r.moments, true}),
               std::logic_error);
}

// The 2×2 ZeRO-1 save writes each element of the state once: 4 files whose
// tensors hold 3 × the model's parameters in all.
TEST_F(ReshardTest, EachElementIsWrittenOnce) {
  save({2, 2, true}, 7);
  int64_t stored = 0;
  for (int r = 0; r < 4; ++r) {
    char name[40];
    std::snprintf(name, sizeof name, "/step-00000007/rank-%05d.safetensors", r);
    for (const auto& [key, e] : checkpoint::read_safetensors_header(root_ + name).tensors) stored += e.numel;
  }
  EXPECT_EQ(stored, 3 * ParamLayout(tiny_dims()).parameters());
}

TEST_F(ReshardTest, AnotherModelIsRefusedNamingTheTensor) {
  const checkpoint::Checkpoint ck = save({2, 2, true}, 3);
  ModelDims wider = tiny_dims();
  wider.ffn = 64;
  const ParamLayout layout(wider);
  std::vector<float> p(static_cast<size_t>(layout.total())), m(p.size()), v(p.size());
  try {
    restore_run_state(ck, layout, {p.data(), m.data(), v.data(), {0, layout.total()}});
    ADD_FAILURE() << "expected a CheckpointError";
  } catch (const checkpoint::CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("tensor model.layers.0.mlp.gate_proj.weight has global shape [48, 32], "
                                         "the model being resumed has [64, 32]"),
              std::string::npos) << e.what();
  }
  ModelDims plain = tiny_dims();
  plain.norm_bias = false;
  const ParamLayout fewer(plain);
  std::vector<float> q(static_cast<size_t>(fewer.total())), mq(q.size()), vq(q.size());
  try {
    restore_run_state(ck, fewer, {q.data(), mq.data(), vq.data(), {0, fewer.total()}});
    ADD_FAILURE() << "expected a CheckpointError";
  } catch (const checkpoint::CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("is not part of this model"), std::string::npos) << e.what();
  }
}

// A flat range cuts a 2-D block into a partial first row, whole rows and a
// partial last row, at the block's global columns (row-parallel) or rows.
TEST(EntryBoxes, PartialRowsWholeRowsAtGlobalPositions) {
  const ParamLayout layout(tiny_dims(), TpRank{1, 2});
  const ParamEntry& o = layout.at("model.layers.0.self_attn.o_proj.weight");  // row-parallel: [32, 16] of [32, 32]
  ASSERT_EQ(o.shard.split_dim, 1);
  ASSERT_EQ(o.shard.start, 16);
  const auto boxes = entry_boxes(o, {o.offset + 5, o.offset + 16 * 3 + 7});
  ASSERT_EQ(boxes.size(), 3u);
  EXPECT_EQ(boxes[0].box.offset, (std::vector<int64_t>{0, 21}));
  EXPECT_EQ(boxes[0].box.extent, (std::vector<int64_t>{1, 11}));
  EXPECT_EQ(boxes[0].flat_begin, o.offset + 5);
  EXPECT_EQ(boxes[1].box.offset, (std::vector<int64_t>{1, 16}));
  EXPECT_EQ(boxes[1].box.extent, (std::vector<int64_t>{2, 16}));
  EXPECT_EQ(boxes[2].box.offset, (std::vector<int64_t>{3, 16}));
  EXPECT_EQ(boxes[2].box.extent, (std::vector<int64_t>{1, 7}));
  EXPECT_EQ(boxes[2].flat_begin, o.offset + 48);
  const ParamEntry& q = layout.at("model.layers.0.self_attn.q_proj.weight");  // column-parallel: rows 16..31
  const auto qb = entry_boxes(q, {0, layout.total()});
  ASSERT_EQ(qb.size(), 1u);
  EXPECT_EQ(qb[0].box.offset, (std::vector<int64_t>{16, 0}));
  EXPECT_EQ(qb[0].box.extent, (std::vector<int64_t>{16, 32}));
  EXPECT_TRUE(entry_boxes(q, {q.offset + q.numel, layout.total()}).empty());
}

}  // namespace
}  // namespace dyt::trainer
