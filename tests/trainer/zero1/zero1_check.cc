// Run under mpirun with 2, 3 or 4 ranks (CTest trainer.zero1_dp2, _dp3,
// _dp4; at dp 3 the buffer of n = 3k + 2 elements is padded, so the last
// rank's short partition and the zero padding are exercised): ZeRO-1
// against plain data parallelism at dp = world, tp = 1, on a tiny model and
// a synthetic token shard, through TrainStep (the trainer's own step):
//  - every step's loss and gradient norm and the final master weights are
//    bit-identical with parallel.zero1 on and off, and between two runs
//    with it on; the weights are the same bits on every rank;
//  - clipping and weight decay are active (the clip factor is < 1 in some
//    step), so the same norm bits must give the same clip factor;
//  - each step's traffic on the dp communicator (its stats() difference)
//    equals launch::plan_comm's dp lines exactly at dp > 1, per kind of collective,
//    calls and bytes both ways, for zero1 on and off (on dp rank 0, whose
//    figures the planner gives; the other ranks' reduce-scatter and
//    all-gather too, which are the same on every rank);
//  - the norm is the rule of trainer/norm_partition.h: recomputed here from
//    the reduced gradients (clipping off), partition by partition, it has
//    the step's bits, while the whole buffer's single sum of squares (the
//    pre-ZeRO-1 norm's) has other bits in some step at dp 3 and 4: the
//    order of the sums shows in this data (at dp 2 it does not);
//  - a ZeRO-1 step refuses an optimizer of the whole buffer and a store not
//    padded for the dp chunks (std::invalid_argument naming TrainStep);
//    vocabulary 34 makes n = 3k + 1, so dp 3 needs the padding;
//  - at 4 ranks, dp 2 × tp 2 too: zero1 on against off bit for bit (each tp
//    rank its own buffer, KV head and norm parameters counted by their
//    owner), and the first step's norm dp 4 × tp 1's to 1e-5;
//  - at dp = 1 (a group of one, on rank 0) the norm is the whole buffer's
//    sum of squares, bit for bit: the norm before this rule.
// The emulated CUDA build (zero1_check_cuda_emu, at 2 and 3 ranks) runs
// FP32 and BF16; under BF16 ZeRO-1 shards the fp32 master (each rank holds
// its dp_partition, the norm parameters whole in the side buffer) and
// gathers the bf16 copy:
//  - losses, norms, the gathered fp32 master and the bf16 copy's bits equal
//    plain dp's; the store holds the range only and refuses master_to_host;
//  - each step's dp traffic is plan_comm's, for FP32 and BF16;
//  - a checkpoint saved after step 2 from the sharded master (each rank its
//    range, as save_run) resumes in the same layout to the uninterrupted
//    run's bits (losses, master, copy), and restores in other dp sizes
//    (2 and 1 at 3 ranks, 1 at 2) the saved master, copy and moments bit
//    for bit.
//  - the direct device path: the same runs (FP32 and BF16, zero1 on and
//    off) with the dp group's tensors on a communicator of device buffers
//    (device_buffers_comm.h: MPI underneath, so the emulator's "device"
//    memory goes to it without host staging, as a GPU's goes to NCCL) give
//    the staged runs' losses, norms, master and bf16 copy bit for bit, every
//    step's counted bytes per group equal, the plan's dp traffic holds, and
//    the host dp communicator carried no gradient or parameter; at 2 ranks
//    dp 1 × tp 2 with sequence parallelism (the model's tp collectives, the
//    replicated and KV-head gradient sums of TpGradSync) the same, FP32
//    and BF16.
// Prints PASS on rank 0; every rank exits 1 on any failure.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "tests/trainer/zero1/device_buffers_comm.h"
#include "configs/config.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu_ops.h"
#ifdef DYT_CUDA_EMU
#include "kernels/cuda/cuda_backend.h"
#endif
#include "launch/plan.h"
#include "parallel/groups.h"
#include "parallel/mesh.h"
#include "parallel/tensor_collectives.h"
#include "parallel/mpi_communicator.h"
#include "trainer/data/loader.h"
#include "trainer/data/token_shard.h"
#include "trainer/dp_partition.h"
#include "trainer/model_instance.h"
#include "trainer/norm_partition.h"
#include "trainer/optimizer.h"
#include "trainer/rank_errors.h"
#include "trainer/resume.h"
#include "trainer/schedule.h"
#include "trainer/state_pieces.h"
#include "trainer/train_step.h"

namespace {

using dyt::parallel::Collective;
using dyt::parallel::CommStats;
using dyt::parallel::Communicator;
using dyt::parallel::Traffic;
namespace trainer = dyt::trainer;

int bad = 0;
int world_rank = 0;

void fail(const std::string& what) {
  if (bad++ < 20) std::fprintf(stderr, "rank %d: %s\n", world_rank, what.c_str());
}

constexpr int kSteps = 3;
constexpr int kRuleSteps = 8;  // the norm-rule runs: more steps, more chances for the order to show

std::string config_text(const std::string& shard, int dp, int tp, bool zero1, double clip, bool bf16, bool sp,
                        int64_t bucket) {
  return "model { vocab_size: 34 d_model: 64 n_layers: 2 n_heads: 2 n_kv_heads: 1 ffn_hidden: 160 "
         "norm: DYT max_seq_len: 32 init_std: 0.3 }\n"
         "parallel { dp: " + std::to_string(dp) + " tp: " + std::to_string(tp) +
         " zero1: " + (zero1 ? "true" : "false") + (sp ? " sequence_parallel: true" : "") +
         (bucket > 0 ? " overlap_grad_reduce: true grad_bucket_elements: " + std::to_string(bucket) : "") + " }\n"
         "train { seed: 7 seq_len: 32 micro_batch: 2 global_batch_tokens: 768 steps: " +
         std::to_string(kRuleSteps) + " lr: 3e-3 warmup_steps: 1 weight_decay: 0.1 grad_clip: " +
         std::to_string(clip) + (bf16 ? " precision: BF16 device: CUDA" : " precision: FP32 device: CPU") +
         " run_dir: \"unused\" }\n"
         "data { train_shards: \"" + shard + "\" }\n";
}

// The whole state of a model and optimizer: the fp32 master (gathered over
// dp when sharded), the bf16 copy's bits (BF16 runs) and both moments
// (gathered when sharded).
struct State {
  std::vector<float> master, m, v;
  std::vector<uint16_t> work;
};

struct Run {
  std::vector<double> loss, norm;
  std::vector<float> master;
  std::vector<uint16_t> work;
  State saved;  // the state the run saved (Ck::save_after), or restored (Ck::resume)
  int clipped = 0;
  int whole_differs = 0;  // steps whose whole-buffer sum of squares has other bits than the rule's sum
  std::vector<std::vector<std::pair<std::string, uint64_t>>> bytes;  // each step's StepResult::comm_bytes
};

// Where the groups' tensors go: the host communicators (staged through the
// host on a device backend) or, with `device`, a communicator of device
// buffers per group of more than one rank; sp: sequence parallelism.
struct Path {
  bool device = false;
  bool sp = false;
  int64_t bucket = 0;  // > 0: the dp reduction overlapped with the backward, in buckets of this many elements
};

int64_t hash(const void* p, size_t bytes) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < bytes; ++i) h = (h ^ static_cast<const unsigned char*>(p)[i]) * 1099511628211ull;
  return static_cast<int64_t>(h >> 1);
}

// The backend and working precision of the runs: the CPU in FP32, or (the
// emulated build) the CUDA backend through the host emulator, whose buffers
// are staged through the host around the MPI collectives.
dyt::kernels::Backend* backend = &dyt::kernels::cpu_backend();
dyt::kernels::DType compute = dyt::kernels::DType::F32;

// What plan_comm says one step moves on the dp group, per kind.
void planned_dp(const dyt::config::RunConfig& cfg, CommStats& want) {
  for (const auto& line : dyt::launch::plan_comm(cfg).lines)
    if (line.group == "dp") want.kind[static_cast<int>(line.kind)] += line.traffic;
}

// A range of the flat buffer, whole: gathered over dp when it is a dp_partition.
std::vector<float> whole(std::vector<float> part, trainer::FlatRange r, int64_t n, Communicator& dp) {
  if (r.size() == n) return part;
  const int64_t c = trainer::dp_chunk(n, dp.size());
  part.resize(static_cast<size_t>(c), 0.0f);
  std::vector<float> out(static_cast<size_t>(dp.size() * c));
  dp.allgather(part.data(), out.data(), static_cast<size_t>(c));
  out.resize(static_cast<size_t>(n));
  return out;
}

State state(const trainer::ModelInstance& model, const trainer::AdamW& opt, Communicator& dp) {
  const int64_t n = model.layout().total();
  State st;
  st.master = trainer::gather_master(model.params(), dp);
  if (model.params().has_work_copy()) st.work = model.params().work_to_host();
  st.m = whole(opt.exp_avg_to_host(), opt.range(), n, dp);
  st.v = whole(opt.exp_avg_sq_to_host(), opt.range(), n, dp);
  return st;
}

// Checkpointing as dyt-train's save_run and resume_from do it (the same
// calls, outside train(), which needs a real GPU for BF16): each rank saves
// its dp_partition range (a sharded master's own, rank_state_to_host), and
// restores the whole master and its moments' range.
struct Ck {
  std::string dir;
  int save_after = -1;  // steps after which to save
  bool resume = false;  // start from the latest checkpoint in dir
};

void save(const Ck& ck, int64_t steps_done, const std::string& config, const dyt::parallel::Mesh& mesh, bool zero1,
          Communicator& world, const trainer::ModelInstance& model, const trainer::AdamW& opt) {
  const trainer::ParamLayout& layout = model.layout();
  const trainer::HostRankState st =
      trainer::rank_state_to_host(model.params(), opt, trainer::moment_range(layout, mesh.dp, mesh.dp_rank, zero1));
  if (st.params_in_range != (zero1 && compute == dyt::kernels::DType::BF16 && mesh.dp > 1))
    fail("the checkpoint's parameters are a range iff the master is sharded");
  const auto pieces =
      trainer::run_state_pieces(layout, trainer::dp_partition(layout.total(), mesh.dp, mesh.dp_rank), st.view());
  dyt::checkpoint::save_checkpoint(ck.dir, {steps_done, opt.steps_taken(), 0, 0}, config,
                                   trainer::run_state_shapes(layout), pieces, mesh.rank, mesh.world, 5,
                                   [&](const std::string& e) { return trainer::first_error(world, e); });
}

int64_t restore(const Ck& ck, const dyt::parallel::Mesh& mesh, bool zero1, trainer::ModelInstance& model,
                trainer::AdamW& opt) {
  const auto c = dyt::checkpoint::load_latest_checkpoint(ck.dir);
  if (!c) throw std::runtime_error("no checkpoint in " + ck.dir);
  const trainer::ParamLayout& layout = model.layout();
  const trainer::FlatRange moments = trainer::moment_range(layout, mesh.dp, mesh.dp_rank, zero1);
  std::vector<float> params(static_cast<size_t>(layout.total())), m(static_cast<size_t>(moments.size())), v(m.size());
  trainer::restore_run_state(*c, layout, {params.data(), m.data(), v.data(), moments});
  model.params().set_master(params.data());
  opt.set_range_moments(m.data(), v.data());
  opt.set_steps_taken(c->progress.optimizer_steps);
  return c->progress.step;
}

// `steps` steps of TrainStep in one layout. With `check_rule` (clipping
// off) each step's norm is recomputed from the reduced gradients.
Run train(Communicator& world, const std::string& shard, bool zero1, double clip, bool check_rule,
          int steps = kSteps, int tp = 1, const Ck& ck = {}, Path path = {}) {
  const int dp = world.size() / tp;
  const bool bf16 = compute == dyt::kernels::DType::BF16;
  const std::string config = config_text(shard, dp, tp, zero1, clip, bf16, path.sp, path.bucket);
  const dyt::config::RunConfig cfg = dyt::config::parse_run_config(config, "zero1_check", {});
  const dyt::config::TrainConfig& t = cfg.train();
  const dyt::parallel::Mesh mesh = dyt::parallel::Mesh::make(world.size(), world.rank(), dp, tp);
  const dyt::parallel::Groups groups = dyt::parallel::make_groups(world, mesh);
  std::unique_ptr<Communicator> dev_dp, dev_tp;
  if (path.device && dp > 1) dev_dp = std::make_unique<dyt::testing::DeviceBuffersComm>(*groups.dp);
  if (path.device && tp > 1) dev_tp = std::make_unique<dyt::testing::DeviceBuffersComm>(*groups.tp);
  dyt::parallel::TensorCollectives tp_group(*groups.tp, *backend, dev_tp.get());
  const trainer::TensorParallel tensor_parallel{tp > 1 ? &tp_group : nullptr, path.sp};
  const auto data = dyt::data::TokenDataset::open(shard, t.seq_len(), "data.train_shards");
  const dyt::data::BatchSampler sampler(data, t.seed(), t.global_batch_tokens(), t.micro_batch(),
                                        mesh.dp_rank, dp);
  trainer::ModelInstance model(cfg.model(), t.micro_batch(), t.seq_len(), false, *backend, compute,
                               tensor_parallel,
                               zero1 ? trainer::DpShard{dp, mesh.dp_rank} : trainer::DpShard{});
  model.init(t.seed());
  const int64_t n = model.layout().total();
  trainer::AdamW opt(model.layout(), t, *backend,
                     zero1 ? trainer::dp_partition(n, dp, mesh.dp_rank) : trainer::FlatRange{0, n});
  trainer::TrainStep step(model, opt, sampler, groups, t, zero1, {dev_dp.get(), dev_tp.get()},
                          {cfg.parallel().overlap_grad_reduce(), cfg.parallel().grad_bucket_elements()});
  if (path.bucket > 0 && dp > 1 && step.grad_buckets().size() < 3)
    fail("only " + std::to_string(step.grad_buckets().size()) + " buckets: the overlap goes untested");
  const bool sharded = zero1 && bf16 && dp > 1;
  if (model.params().master_sharded() != sharded) fail("the master is sharded iff ZeRO-1 under BF16 at dp > 1");
  if (sharded) {
    // The store holds the fp32 master of this rank's range only, and will
    // not pass it off as the whole.
    const trainer::FlatRange r = trainer::dp_partition(n, dp, mesh.dp_rank);
    if (model.params().master().numel() != r.size() || model.params().master_range().begin != r.begin)
      fail("the sharded master does not hold exactly the rank's dp_partition");
    try {
      model.params().master_to_host();
      fail("master_to_host of a sharded master was not refused");
    } catch (const std::logic_error&) {
    }
  }
  if (zero1 && dp > 1) {
    // Mismatched pieces are refused before any work: an optimizer of the
    // whole buffer, and a store not padded for the dp chunks.
    trainer::AdamW whole(model.layout(), t, *backend);
    trainer::ModelInstance unpadded(cfg.model(), t.micro_batch(), t.seq_len(), false, *backend, compute,
                                    tensor_parallel);
    const auto refused = [&](auto make, const char* what) {
      try {
        make();
        fail(std::string("not refused: ") + what);
      } catch (const std::invalid_argument& e) {
        if (!std::strstr(e.what(), "TrainStep")) fail(std::string(what) + ": unclear error " + e.what());
      }
    };
    refused([&] { trainer::TrainStep(model, whole, sampler, groups, t, true); }, "a whole-buffer optimizer");
    // (Only when dp does not divide the buffer: at dp 3 here, n being 3k + 2.)
    if (dp * trainer::dp_chunk(n, dp) != n)
      refused([&] { trainer::TrainStep(unpadded, opt, sampler, groups, t, true); }, "an unpadded store");
    else if (world.size() == 3)
      fail("dp 3 divides the buffer: the padding goes untested");
  }
  CommStats want;
  planned_dp(cfg, want);
  // Overlapped under ZeRO-1 the gradient sum goes bucket by bucket onto the
  // owners: every rank sends each gradient it does not own once and receives
  // p − 1 copies of its range (the reduce-scatter's volume without its
  // padding), in one call per bucket. Checked on every rank (the plan's
  // figures are rank 0's).
  Traffic owners;
  if (path.bucket > 0 && zero1 && dp > 1) {
    const trainer::FlatRange mine = trainer::dp_partition(n, dp, mesh.dp_rank);
    owners = Traffic{step.grad_buckets().size(), 4 * static_cast<uint64_t>(n - mine.size()),
                     4 * static_cast<uint64_t>(dp - 1) * static_cast<uint64_t>(mine.size())};
  }
  const bool check_traffic = dp > 1;
  const char* name = zero1 ? "zero1" : "plain";

  Run r;
  int first = 0;
  if (ck.resume) {
    first = static_cast<int>(restore(ck, mesh, zero1, model, opt));
    r.saved = state(model, opt, *groups.dp);
  }
  for (int s = first; s < steps; ++s) {
    const CommStats before = step.dp_stats();
    const trainer::StepResult res = step.run(s, trainer::learning_rate(s, t));
    const CommStats moved = step.dp_stats() - before;
    r.bytes.push_back(res.comm_bytes);
    // The planner's figures are dp rank 0's; the reduce-scatter and the
    // all-gather move the same on every rank, an uneven all-reduce does not
    // (rank r owns chunk r, docs/parallel.md), nor does a reduce onto owners: those on rank 0.
    const auto per_rank = [](int k) {
      return k == static_cast<int>(Collective::allreduce_sum) || k == static_cast<int>(Collective::reduce_sum);
    };
    if (check_traffic && path.bucket > 0 && zero1 && !(moved[Collective::reduce_sum] == owners))
      fail(std::string(name) + " step " + std::to_string(s) + ": the overlapped reduce moved " +
           std::to_string(moved[Collective::reduce_sum].bytes_sent) + " / " +
           std::to_string(moved[Collective::reduce_sum].bytes_received) + " bytes, not each gradient once");
    for (int k = 0; k < dyt::parallel::kCollectiveKinds; ++k)
      if (check_traffic && (mesh.dp_rank == 0 || !per_rank(k)) && !(moved.kind[k] == want.kind[k]))
        fail(std::string(name) + " step " + std::to_string(s) + ": dp " +
             dyt::parallel::collective_name(static_cast<Collective>(k)) + " moved " +
             std::to_string(moved.kind[k].calls) + " calls, " + std::to_string(moved.kind[k].bytes_sent) +
             " / " + std::to_string(moved.kind[k].bytes_received) + " bytes; planned " +
             std::to_string(want.kind[k].calls) + ", " + std::to_string(want.kind[k].bytes_sent) + " / " +
             std::to_string(want.kind[k].bytes_received));
    if (res.skipped) fail(std::string(name) + ": step " + std::to_string(s) + " skipped");
    r.loss.push_back(res.loss);
    r.norm.push_back(res.grad_norm);
    if (clip > 0 && res.grad_norm > clip) ++r.clipped;
    if (check_rule) {
      // The reduced, unclipped gradients (plain dp: every rank holds all).
      const std::vector<float> host = model.params().grads_to_host();
      const float* g = host.data();
      const std::vector<trainer::FlatRange> runs = trainer::owned_runs(model.layout());
      double rule = 0;
      for (int k = 0; k < dp; ++k) {
        double partial = 0;
        for (const auto& p : trainer::pieces_in(runs, trainer::dp_partition(n, dp, k)))
          partial += dyt::cpu::sum_squares(g + p.begin, p.size());
        rule += partial;
      }
      const double all = dyt::cpu::sum_squares(g, n);
      if (std::sqrt(rule) != res.grad_norm) fail("the step's norm is not the partition rule's");
      if (all != rule) ++r.whole_differs;
      // One rank: the norm is the whole buffer's, as before ZeRO-1 (same bits).
      if (dp == 1 && std::sqrt(all) != res.grad_norm) fail("dp 1: the norm is not the whole buffer's");
    }
    if (s + 1 == ck.save_after) {
      save(ck, s + 1, config, mesh, zero1, world, model, opt);
      r.saved = state(model, opt, *groups.dp);
    }
  }
  if (path.device) {
    // The tensors went to the device communicators, none through the host
    // ones (which carried only the host values: doubles, maxima).
    const auto tensors = [](const CommStats& st) {
      return st[Collective::reduce_scatter_sum].calls + st[Collective::allgather].calls +
             st[Collective::reduce_sum].calls;
    };
    if (dp > 1 && (dev_dp->stats().total().calls == 0 || tensors(groups.dp->stats()) != 0))
      fail(std::string(name) + ": the dp tensors did not take the device path");
    // The host tp group still gathers the vocab-parallel loss's statistics
    // (host values); sequence parallelism's reduce-scatters are tensors.
    if (tp > 1 && (dev_tp->stats().total().calls == 0 ||
                   groups.tp->stats()[Collective::reduce_scatter_sum].calls != 0 ||
                   dev_tp->stats()[Collective::reduce_scatter_sum].calls == 0))
      fail(std::string(name) + ": the tp tensors did not take the device path");
  }
  r.master = trainer::gather_master(model.params(), *groups.dp);
  if (model.params().has_work_copy()) r.work = model.params().work_to_host();
  // The same weights on every rank.
  const int64_t h = hash(r.master.data(), r.master.size() * sizeof(float));
  if (groups.dp->allreduce_max(h) != h || -groups.dp->allreduce_max(-h) != h)
    fail(std::string(name) + ": the ranks' weights differ");
  return r;
}

// Bit for bit; an empty vector's data() may be null, which memcmp must not get
// (an FP32 run has no bf16 copy).
template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

bool same(const std::vector<double>& a, const std::vector<double>& b) { return same_bits(a, b); }

void compare(const Run& a, const Run& b, const std::string& what) {
  if (!same(a.loss, b.loss)) fail(what + ": losses differ");
  if (!same(a.norm, b.norm)) fail(what + ": gradient norms differ");
  if (!same_bits(a.master, b.master)) fail(what + ": final weights differ");
  if (!same_bits(a.work, b.work)) fail(what + ": final bf16 copies differ");
}

// The direct device path against the staged one: compare()'s bits and
// every step's counted bytes per group.
[[maybe_unused]] void compare_paths(const Run& staged, const Run& direct, const std::string& what) {
  compare(staged, direct, what + ": device path against staged");
  if (staged.bytes != direct.bytes) fail(what + ": the device path counted other bytes than the staged one");
  if (staged.bytes.empty() || staged.bytes[0].empty()) fail(what + ": no bytes counted");
}

[[maybe_unused]] void compare(const State& a, const State& b, const std::string& what) {
  if (a.master.empty() || !same_bits(a.master, b.master)) fail(what + ": master weights differ");
  if (!same_bits(a.work, b.work)) fail(what + ": bf16 copies differ");
  if (a.m.empty() || !same_bits(a.m, b.m) || !same_bits(a.v, b.v)) fail(what + ": moments differ");
}

}  // namespace

int main(int argc, char** argv) {
  dyt::parallel::MpiSession session(&argc, &argv);
  {
    dyt::parallel::MpiCommunicator world;
    world_rank = world.rank();
    if (argc != 2) {
      if (world_rank == 0) std::fprintf(stderr, "usage: zero1_check WORK_DIR (under mpirun)\n");
      return 2;
    }
    // A synthetic shard: 128 samples of 33 tokens from a fixed generator.
    const std::string dir = std::string(argv[1]) + "/np" + std::to_string(world.size());
    const std::string shard = dir + "/train_000.bin";
    try {
      if (world_rank == 0) {
        std::filesystem::create_directories(dir);
        std::vector<uint32_t> tokens(128 * 33 + 1);
        uint64_t x = 12345;
        for (auto& tok : tokens) {
          x = x * 6364136223846793005ull + 1442695040888963407ull;
          tok = static_cast<uint32_t>((x >> 33) % 34);
        }
        dyt::data::write_token_shard(shard, tokens);
      }
      world.barrier();
      if (world.size() < 2) fail("run this under mpirun with 2 or more ranks");
#ifdef DYT_CUDA_EMU
      // Staged through the host: FP32 (norm rule included) and BF16, whose
      // working copy is refreshed from the gathered master.
      auto cuda = dyt::cuda::make_cuda_backend();
      backend = cuda.get();
      const Run plain32 = train(world, shard, false, 0.0, true);
      const Run z32 = train(world, shard, true, 0.0, false);
      compare(plain32, z32, "emulated CUDA FP32: zero1 on against off");
      const Path device{true, false};
      compare_paths(plain32, train(world, shard, false, 0.0, true, kSteps, 1, {}, device), "FP32 plain dp");
      compare_paths(z32, train(world, shard, true, 0.0, false, kSteps, 1, {}, device), "FP32 ZeRO-1");
      // Overlapped in buckets, staged and direct: the whole reduction's bits.
      for (const bool dev : {false, true}) {
        const std::string how = dev ? " (device path)" : " (staged)";
        compare(z32, train(world, shard, true, 0.0, false, kSteps, 1, {}, Path{dev, false, 700}),
                "FP32 ZeRO-1 overlapped" + how);
        compare(plain32, train(world, shard, false, 0.0, false, kSteps, 1, {}, Path{dev, false, 700}),
                "FP32 plain dp overlapped" + how);
      }
      // dp 1 x tp 2 with sequence parallelism: the model's tp collectives and
      // TpGradSync's sums (n_kv_heads 1 over 2 ranks: a KV-head group).
      const Path sp{false, true}, sp_device{true, true};
      if (world.size() == 2)
        compare_paths(train(world, shard, false, 0.0, false, kSteps, 2, {}, sp),
                      train(world, shard, false, 0.0, false, kSteps, 2, {}, sp_device), "FP32 tp 2");
      compute = dyt::kernels::DType::BF16;
      const Ck ck{dir + "/ck", 2, false};
      if (world_rank == 0) std::filesystem::remove_all(ck.dir);
      world.barrier();
      const Run plain16 = train(world, shard, false, 1.0, false);
      const Run z16 = train(world, shard, true, 1.0, false, kSteps, 1, ck);
      compare(plain16, z16, "emulated CUDA BF16: zero1 on against off");
      compare_paths(plain16, train(world, shard, false, 1.0, false, kSteps, 1, {}, device), "BF16 plain dp");
      compare_paths(z16, train(world, shard, true, 1.0, false, kSteps, 1, {}, device), "BF16 ZeRO-1");
      compare(z16, train(world, shard, true, 1.0, false, kSteps, 1, {}, Path{true, false, 700}),
              "BF16 ZeRO-1 overlapped (device path)");
      if (world.size() == 2)
        compare_paths(train(world, shard, false, 1.0, false, kSteps, 2, {}, sp),
                      train(world, shard, false, 1.0, false, kSteps, 2, {}, sp_device), "BF16 tp 2");
      if (plain16.work.empty()) fail("BF16: no working copy compared");
      if (plain16.clipped == 0) fail("no step was clipped: the clip factor went untested");
      // The checkpoint of the sharded master, resumed in the same layout:
      // the uninterrupted run's last step, bit for bit.
      const Run resumed = train(world, shard, true, 1.0, false, kSteps, 1, {ck.dir, -1, true});
      Run tail = z16;
      tail.loss.erase(tail.loss.begin(), tail.loss.begin() + ck.save_after);
      tail.norm.erase(tail.norm.begin(), tail.norm.begin() + ck.save_after);
      compare(tail, resumed, "BF16 ZeRO-1 resumed from its checkpoint");
      compare(z16.saved, resumed.saved, "BF16 ZeRO-1 checkpoint restored in its layout");
      // ... and restored in another dp (2 and 1 at 3 ranks; 1 at 2 ranks),
      // with and without ZeRO-1: the saved state, bit for bit.
      for (const bool z : {true, false}) {
        auto group = world.split(world.size() == 3 ? (world_rank < 2 ? 0 : 1) : world_rank, world_rank);
        const Run back = train(*group, shard, z, 1.0, false, ck.save_after, 1, {ck.dir, -1, true});
        compare(z16.saved, back.saved, "BF16 ZeRO-1 checkpoint restored at dp " + std::to_string(group->size()) +
                                           (z ? " with ZeRO-1" : " without ZeRO-1"));
      }
      if (world_rank == 0)
        std::printf("zero1 (emulated CUDA): %d ranks, BF16 norms %.9g %.9g %.9g\n", world.size(),
                    plain16.norm[0], plain16.norm[1], plain16.norm[2]);
#else
      const Run plain = train(world, shard, false, 1.0, false);
      const Run z = train(world, shard, true, 1.0, false);
      const Run again = train(world, shard, true, 1.0, false);
      compare(plain, z, "zero1 on against off");
      compare(z, again, "two zero1 runs");
      // The dp reduction overlapped with the backward in buckets (700
      // elements: tens of buckets, some cut by the partitions; 1: a bucket
      // per tensor): the same bits as the whole-buffer reduction.
      compare(z, train(world, shard, true, 1.0, false, kSteps, 1, {}, Path{false, false, 700}),
              "zero1: overlapped reduction against whole");
      compare(plain, train(world, shard, false, 1.0, false, kSteps, 1, {}, Path{false, false, 700}),
              "plain dp: overlapped reduction against whole");
      compare(plain, train(world, shard, false, 1.0, false, kSteps, 1, {}, Path{false, false, 1}),
              "plain dp: overlapped reduction, a bucket per tensor");
      if (plain.clipped == 0) fail("no step was clipped: the clip factor went untested");
      const Run rule = train(world, shard, false, 0.0, true, kRuleSteps);
      const Run rule_z = train(world, shard, true, 0.0, false, kRuleSteps);
      compare(rule, rule_z, "zero1 on against off, clipping off");
      if (world.size() == 4) {
        // dp 2 × tp 2: each tp rank's buffer partitioned over dp, the norm
        // over its owned runs (the KV head, one for two ranks, and the
        // replicated norm parameters counted by their owner) summed over tp.
        const Run plain_tp = train(world, shard, false, 1.0, false, kSteps, 2);
        const Run z_tp = train(world, shard, true, 1.0, false, kSteps, 2);
        compare(plain_tp, z_tp, "dp 2 x tp 2: zero1 on against off");
        // With sequence parallelism the replicated norm parameters' and the
        // shared KV head's tp sums go stage by stage before each bucket.
        const Run sp_tp = train(world, shard, true, 1.0, false, kSteps, 2, {}, Path{false, true, 0});
        compare(sp_tp, train(world, shard, true, 1.0, false, kSteps, 2, {}, Path{false, true, 700}),
                "dp 2 x tp 2, sequence parallel, zero1: overlapped reduction against whole");
        if (world_rank == 0)
          std::printf("zero1: dp 2 x tp 2, norms %.9g %.9g %.9g (dp 4 x tp 1: %.9g %.9g %.9g)\n",
                      plain_tp.norm[0], plain_tp.norm[1], plain_tp.norm[2], plain.norm[0], plain.norm[1],
                      plain.norm[2]);
        // Before any update the layouts differ only in rounding; after it,
        // AdamW's first steps (≈ lr·sign g) amplify that rounding ~10⁴-fold in
        // this model (dp 2 against dp 4 already: 1e-9 → 2e-5 → 4e-4), so only
        // the first norm is compared.
        if (std::fabs(plain_tp.norm[0] - plain.norm[0]) > 1e-5 * plain.norm[0])
          fail("dp 2 x tp 2: the first norm is not dp 4's to 1e-5");
      }
      if (world_rank == 0) {  // dp = tp = 1 on a group of one: the pre-ZeRO-1 norm's bits
        dyt::parallel::LocalCommunicator one;
        const Run single = train(one, shard, false, 0.0, true);
        const Run single_z = train(one, shard, true, 0.0, false);
        compare(single, single_z, "dp 1: zero1 on against off");
      }
      // At dp 2 the rule is one addition, P_0 + P_1, whose result this data
      // (dominated by the embedding's gradient, in P_0) rounds as the whole
      // buffer's sum does; from dp 3 on the order shows.
      if (world.size() >= 3 && rule.whole_differs == 0)
        fail("the whole buffer's sum of squares has the partition rule's bits in every step: "
             "this data cannot tell a wrong summation order");
      if (world_rank == 0)
        std::printf("zero1: %d ranks, norms %.9g %.9g %.9g, %d of %d steps clipped, the whole buffer's "
                    "sum of squares differs from the rule's in %d of %d\n", world.size(), plain.norm[0],
                    plain.norm[1], plain.norm[2], plain.clipped, kSteps, rule.whole_differs, kRuleSteps);
#endif
    } catch (const std::exception& e) {
      fail(e.what());
    }
    const int64_t total = world.allreduce_max(bad);
    if (world_rank == 0) std::printf(total == 0 ? "PASS\n" : "FAIL\n");
    if (total != 0) return 1;
  }
  return 0;
}
