#include "trainer/device_backend.h"

#include <cstdio>
#include <cstdlib>

#include "kernels/cpu/cpu_backend.h"
#include "trainer/activation_arena.h"
#include "trainer/model_dims.h"
#include "trainer/param_layout.h"
#include "trainer/param_store.h"
#ifdef DYT_HAVE_CUDA_BACKEND
#include "kernels/cuda/cuda_backend.h"
#endif

namespace dyt::trainer {
namespace {

std::string gib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(bytes) / (int64_t{1} << 30));
  return buf;
}

// This rank's index among the ranks of its node, as the launcher tells it
// (Open MPI, Slurm, MPICH/Intel MPI, torchrun's convention), or -1 when none
// does (one process: the current GPU). Rank i of a node drives GPU i.
[[maybe_unused]] int local_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID", "LOCAL_RANK"})
    if (const char* v = std::getenv(name)) {
      char* end = nullptr;
      const long r = std::strtol(v, &end, 10);
      if (end != v && *end == '\0' && r >= 0 && r < 1 << 20) return static_cast<int>(r);
    }
  return -1;
}

// What the CUDA kernels support, checked against the model before any work.
[[maybe_unused]] void check_cuda_shapes(const config::RunConfig& cfg) {
  const ModelDims d = model_dims(cfg.model());
  if (d.head_dim != 32 && d.head_dim != 64 && d.head_dim != 128)
    throw config::ConfigError("model.d_model / model.n_heads: head size " +
                              std::to_string(d.head_dim) +
                              " is not one the CUDA attention supports (32, 64, 128); choose "
                              "model.n_heads so that d_model / n_heads is one of them, or set "
                              "train.device=CPU");
}

#ifdef DYT_HAVE_CUDA_BACKEND
std::unique_ptr<kernels::Backend> make_cuda(const config::RunConfig& cfg) {
  check_cuda_shapes(cfg);
  const int device = local_rank();
  cuda::DeviceInfo info;
  try {
    info = cuda::device_info(device);
  } catch (const cuda::NoDeviceError& e) {
    throw config::ConfigError(std::string("train.device: CUDA, but ") + e.what() +
                              (device >= 0 ? " (this rank's node-local index is " +
                                                 std::to_string(device) +
                                                 ": start one rank per GPU of each node)"
                                           : std::string()) +
                              "; set train.device=CPU to train on the CPU");
  }
  const MemoryNeed need = memory_need(cfg);
  if (need.total() > static_cast<int64_t>(info.free_bytes))
    throw config::ConfigError(
        "train.micro_batch / train.seq_len: the run needs " + need.describe() + " on " + info.name +
        ", which has " + gib(static_cast<int64_t>(info.free_bytes)) + " free of " +
        gib(static_cast<int64_t>(info.total_bytes)) +
        "; lower train.micro_batch (more micro-batches per step), set train.recompute=true, or "
        "use more ranks");
  return cuda::make_cuda_backend(device);
}
#endif

}  // namespace

std::string MemoryNeed::describe() const {
  return gib(total()) + " (parameters and gradients " + gib(parameters) + ", optimizer " +
         gib(optimizer) + ", activations " + gib(activations) + ", workspaces " + gib(workspaces) +
         ")";
}

MemoryNeed memory_need(const config::RunConfig& cfg) {
  const config::TrainConfig& t = cfg.train();
  const int tp = static_cast<int>(cfg.parallel().tp());
  return memory_need(shard_dims(model_dims(cfg.model()), tp), t.micro_batch(), t.seq_len(),
                     t.recompute(), compute_dtype(t),
                     ArenaSplit{tp, cfg.parallel().sequence_parallel()},
                     cfg.parallel().zero1() ? static_cast<int>(cfg.parallel().dp()) : 1);
}

MemoryNeed memory_need(const ModelDims& dims, int64_t micro_batch, int64_t seq_len, bool recompute,
                       kernels::DType dt, ArenaSplit split, int zero_dp) {
  const ParamLayout layout(dims);
  const int64_t n = layout.total(), shard = (n + zero_dp - 1) / zero_dp;
  MemoryNeed m;
  if (dt == kernels::DType::BF16)  // bf16 copy, fp32 gradients, the master's shard (+ side buffer)
    m.parameters = n * (2 + 4) + shard * 4 + (zero_dp > 1 ? side_elements(layout) * 4 : 0);
  else  // the master is the working copy
    m.parameters = n * (4 + 4);
  m.optimizer = shard * 8;
  m.activations = ActivationArena::bytes_needed(dims, micro_batch, seq_len, recompute, dt, split);
  // cuBLASLt's 32 MiB, and the norm/attention/loss workspaces: each at most
  // a few floats per row of one micro-batch, bounded here by 64 per row.
  const int64_t rows = micro_batch * seq_len;
  m.workspaces = (int64_t{32} << 20) + rows * dims.heads * 4 + rows * 64 * 4 + (int64_t{8} << 20);
  return m;
}

std::unique_ptr<kernels::Backend> make_backend(const config::RunConfig& cfg) {
  const config::TrainConfig& t = cfg.train();
  switch (t.device()) {
    case config::CPU:
      if (t.precision() != config::FP32)
        throw config::ConfigError("train.precision: the CPU backend computes in FP32; set "
                                  "train.precision=FP32 (BF16 needs train.device=CUDA)");
      return kernels::make_cpu_backend();
    case config::CUDA:
#ifdef DYT_HAVE_CUDA_BACKEND
      return make_cuda(cfg);
#else
      throw config::ConfigError("train.device: CUDA, but this dyt-train was built without CUDA "
                                "(no CUDA toolkit at configure time, or -DDYT_WITH_CUDA=OFF); "
                                "set train.device=CPU");
#endif
    default:
      throw config::ConfigError("train.device: must be CPU or CUDA");
  }
}

kernels::DType compute_dtype(const config::TrainConfig& t) {
  return t.precision() == config::BF16 ? kernels::DType::BF16 : kernels::DType::F32;
}

}  // namespace dyt::trainer
