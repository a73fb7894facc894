// The NCCL communicator on one GPU (CTest parallel.cuda.nccl.*): a group of
// one made from a LocalCommunicator. Every collective on device buffers
// (the output NaN-poisoned first, so an unwritten element fails), compared
// bit for bit with the input it must equal in a group of one; the counters
// by the convention (calls counted, no bytes in a group of one); split; the
// determinism settings pinned at creation and a contradicting one refused;
// the trainer's device path in a group of one on the CUDA backend's stream
// (TensorCollectives with NCCL as `device`, TrainStep's chunk copies by the
// backend around NCCL calls), whose order against the kernels the stream
// alone keeps.
// Each test skips without a CUDA device (CI), but the one that checks the
// refusal without a device, which skips with one. Several ranks need several
// GPUs, which the machines here do not have: the multi-rank paths
// (ncclGetUniqueId's broadcast over MPI, sums over ranks) are not run.
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include <strings.h>

#include "kernels/backend.h"
#include "kernels/cuda/cuda_backend.h"
#include "parallel/nccl_communicator.h"
#include "parallel/nccl_env.h"
#include "parallel/tensor_collectives.h"

namespace dyt::parallel {
namespace {

bool have_device() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

#define SKIP_WITHOUT_GPU() \
  if (!have_device()) GTEST_SKIP() << "no CUDA device present: the NCCL communicator is not run"

#define CUDA_OK(call)                                                         \
  do {                                                                        \
    const cudaError_t e_ = (call);                                            \
    ASSERT_EQ(e_, cudaSuccess) << #call << ": " << cudaGetErrorString(e_);    \
  } while (0)

// A device buffer of T that frees itself.
template <class T>
struct DeviceBuffer {
  T* p = nullptr;
  size_t n = 0;
  explicit DeviceBuffer(size_t count) : n(count) {
    if (cudaMalloc(reinterpret_cast<void**>(&p), std::max<size_t>(1, n) * sizeof(T)) != cudaSuccess)
      throw std::runtime_error("cudaMalloc failed");
  }
  ~DeviceBuffer() { cudaFree(p); }
  void put(const std::vector<T>& v) {
    if (cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice) != cudaSuccess)
      throw std::runtime_error("cudaMemcpy to the device failed");
  }
  std::vector<T> get() const {
    std::vector<T> v(n);
    if (cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost) != cudaSuccess)
      throw std::runtime_error("cudaMemcpy from the device failed");
    return v;
  }
};

// Seeded values whose bits all matter (signs, exponents spread).
template <class T>
std::vector<T> values(size_t n, uint64_t seed) {
  std::vector<T> v(n);
  uint64_t h = seed * 0x9e3779b97f4a7c15ull + 1;
  for (size_t i = 0; i < n; ++i) {
    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 29;
    const double u = static_cast<double>(h >> 11) * 0x1p-53 - 0.5;
    v[i] = static_cast<T>(std::ldexp(u, static_cast<int>(h % 40) - 20));
  }
  return v;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

struct NcclOne : ::testing::Test {
  cudaStream_t stream = nullptr;
  LocalCommunicator host;
  void SetUp() override {
    if (have_device()) CUDA_OK(cudaStreamCreate(&stream));
  }
  void TearDown() override {
    if (stream) cudaStreamDestroy(stream);
  }
};

// allreduce, reduce-scatter and all-gather of one type, sizes 1, 1001 and
// 2²⁰ + 3; the counters grow by one call and no bytes each.
template <class T>
void check_sums(NcclCommunicator& c, uint64_t seed) {
  for (size_t n : {size_t{1}, size_t{1001}, (size_t{1} << 20) + 3}) {
    const std::vector<T> in = values<T>(n, seed + n);
    const std::vector<T> nan(n, std::numeric_limits<T>::quiet_NaN());
    DeviceBuffer<T> a(n), out(n);
    a.put(in);
    c.allreduce_sum(a.p, n);
    c.synchronize();
    EXPECT_TRUE(same_bits(a.get(), in)) << "allreduce_sum of " << n;
    out.put(nan);
    c.reduce_scatter_sum(a.p, out.p, n);
    c.synchronize();
    EXPECT_TRUE(same_bits(out.get(), in)) << "reduce_scatter_sum of " << n;
    out.put(nan);
    c.allgather(a.p, out.p, n);
    c.synchronize();
    EXPECT_TRUE(same_bits(out.get(), in)) << "allgather of " << n;
  }
}

// The one test that runs where there is no GPU (CI): creation fails with
// the CUDA call named, after the group agreed on it (one allreduce_max on
// the host group, no broadcast: nobody waits for an id).
TEST_F(NcclOne, WithoutADeviceCreationIsRefusedByName) {
  if (have_device()) GTEST_SKIP() << "a CUDA device is present: the refusal without one cannot be checked";
  try {
    make_nccl_communicator(host, stream);
    ADD_FAILURE() << "expected runtime_error without a device";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("make_nccl_communicator: cudaGetDevice failed: "), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(host.stats()[Collective::allreduce_max].calls, 1u);
  EXPECT_EQ(host.stats()[Collective::broadcast].calls, 0u);
}

TEST_F(NcclOne, EveryCollectiveOnDeviceBuffers) {
  SKIP_WITHOUT_GPU();
  const auto c = make_nccl_communicator(host, stream);
  EXPECT_EQ(c->size(), 1);
  EXPECT_EQ(c->rank(), 0);
  EXPECT_TRUE(c->device_buffers());
  EXPECT_EQ(c->stream(), stream);
  check_sums<float>(*c, 1);
  check_sums<double>(*c, 2);
  EXPECT_EQ(c->allreduce_max(-12345678901234), -12345678901234);
  EXPECT_EQ(c->allreduce_max(7), 7);
  c->barrier();
  const std::vector<unsigned char> bytes{1, 2, 3, 250, 0, 77, 9};
  DeviceBuffer<unsigned char> b(bytes.size());
  b.put(bytes);
  c->broadcast(b.p, bytes.size(), 0);
  c->synchronize();
  EXPECT_EQ(b.get(), bytes);
  EXPECT_THROW(c->broadcast(b.p, bytes.size(), 1), std::invalid_argument);
  // The 16-bit all-gather (bf16 bits, moved as bytes): every pattern unchanged.
  std::vector<uint16_t> words(1001);
  for (size_t i = 0; i < words.size(); ++i) words[i] = static_cast<uint16_t>(i * 40503u);
  DeviceBuffer<uint16_t> w(words.size()), wout(words.size());
  w.put(words);
  c->allgather(w.p, wout.p, words.size());
  c->synchronize();
  EXPECT_EQ(wout.get(), words);
  // The reduce onto the root, in place (the overlapped ZeRO-1 buckets):
  // a group of one's is its input; root 1 refused.
  {
    const std::vector<float> in = values<float>(1001, 3);
    DeviceBuffer<float> r(in.size());
    r.put(in);
    c->reduce_sum(r.p, in.size(), 0);
    c->synchronize();
    EXPECT_TRUE(same_bits(r.get(), in)) << "reduce_sum";
    EXPECT_THROW(c->reduce_sum(r.p, in.size(), 1), std::invalid_argument);
  }
  // Empty calls reach no NCCL call (null pointers allowed with 0 elements).
  c->allreduce_sum(static_cast<float*>(nullptr), 0);
  c->reduce_scatter_sum(static_cast<const double*>(nullptr), nullptr, 0);

  // The convention in a group of one: every call counted, no bytes.
  const CommStats& s = c->stats();
  EXPECT_EQ(s[Collective::allreduce_sum], (Traffic{7, 0, 0}));  // 3 sizes × 2 types + the empty one
  EXPECT_EQ(s[Collective::reduce_scatter_sum], (Traffic{7, 0, 0}));
  EXPECT_EQ(s[Collective::allgather], (Traffic{7, 0, 0}));  // 3 sizes × 2 types + the 16-bit one
  EXPECT_EQ(s[Collective::allreduce_max], (Traffic{2, 0, 0}));
  EXPECT_EQ(s[Collective::barrier], (Traffic{1, 0, 0}));
  EXPECT_EQ(s[Collective::broadcast], (Traffic{1, 0, 0}));  // the refused one is not counted
  EXPECT_EQ(s[Collective::reduce_sum], (Traffic{1, 0, 0}));
}

TEST_F(NcclOne, SplitGivesAGroupOfOneWithFreshCounters) {
  SKIP_WITHOUT_GPU();
  const auto c = make_nccl_communicator(host, stream);
  c->barrier();
  const auto child = c->split(3, 0);
  EXPECT_EQ(child->size(), 1);
  EXPECT_EQ(child->rank(), 0);
  EXPECT_TRUE(child->device_buffers());
  EXPECT_EQ(child->stats().total().calls, 0u);
  const std::vector<float> in = values<float>(257, 9);
  DeviceBuffer<float> a(in.size());
  a.put(in);
  child->allreduce_sum(a.p, in.size());
  EXPECT_EQ(child->allreduce_max(41), 41);  // waits for the stream
  EXPECT_TRUE(same_bits(a.get(), in));
  EXPECT_EQ(child->stats().total().calls, 2u);
  EXPECT_EQ(c->stats().total().calls, 1u);  // the parent's counters are its own
  const auto grandchild = child->split(0, 5);
  EXPECT_EQ(grandchild->allreduce_max(-3), -3);
  EXPECT_THROW(c->split(-1, 0), std::invalid_argument);
}

TEST_F(NcclOne, DeterminismSettingsArePinnedAndContradictionsRefused) {
  SKIP_WITHOUT_GPU();
  unsetenv("DYT_NCCL_NONDETERMINISTIC");
  {
    const auto c = make_nccl_communicator(host, stream);
    for (const NcclSetting& s : nccl_deterministic_settings()) {
      const char* v = std::getenv(s.name);
      ASSERT_NE(v, nullptr) << s.name << " was not filled in";
      EXPECT_EQ(strcasecmp(v, s.value), 0) << s.name << "=" << v;
    }
  }
  const std::string algo = std::getenv("NCCL_ALGO");
  setenv("NCCL_ALGO", "Tree", 1);
  try {
    make_nccl_communicator(host, stream);
    ADD_FAILURE() << "expected runtime_error for NCCL_ALGO=Tree";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("NCCL_ALGO=Tree"), std::string::npos) << e.what();
  }
  setenv("NCCL_ALGO", algo.c_str(), 1);
}

// What train() does on one GPU with a group of more than one, here in a
// group of one: NCCL on the backend's stream, the model's TensorCollectives
// with it as `device` (F32 direct, BF16 through the fp32 twins), and
// TrainStep's ZeRO-1 pattern (reduce-scatter into a device chunk, the
// backend's copy into place; the bf16 range copied into a chunk and
// all-gathered into the padded copy). Nothing synchronizes between the
// kernels and NCCL but the shared stream; every result must be the input.
TEST_F(NcclOne, TrainerDevicePathOnTheBackendsStream) {
  SKIP_WITHOUT_GPU();
  using kernels::DType;
  const std::unique_ptr<kernels::Backend> be = cuda::make_cuda_backend();
  const auto c = make_nccl_communicator(host, cuda::stream_of(*be));
  TensorCollectives tc(host, *be, c.get());
  EXPECT_EQ(&tc.tensor_comm(), c.get());
  const int64_t rows = 6, d = 40, n = rows * d;
  const std::vector<float> in = values<float>(static_cast<size_t>(n), 11);
  kernels::Buffer local = be->allocate(DType::F32, n), full = be->allocate(DType::F32, n);
  be->upload(in.data(), local.flat());
  tc.allgather_rows(local.view({rows, d}), full.view({rows, d}));
  std::vector<float> got(in.size());
  be->download(full.flat(), got.data());
  EXPECT_TRUE(same_bits(got, in)) << "F32 allgather_rows";
  be->zero(local.flat());
  tc.reduce_scatter_rows(full.view({rows, d}), local.view({rows, d}));
  be->download(local.flat(), got.data());
  EXPECT_TRUE(same_bits(got, in)) << "F32 reduce_scatter_rows";
  // BF16: the values rounded once, then moved through the twins unchanged.
  kernels::Buffer l16 = be->allocate(DType::BF16, n), f16 = be->allocate(DType::BF16, n);
  be->convert(local.flat(), l16.flat());
  std::vector<uint16_t> want(in.size()), got16(in.size());
  be->download(l16.flat(), want.data());
  tc.allgather_rows(l16.view({rows, d}), f16.view({rows, d}));
  be->download(f16.flat(), got16.data());
  EXPECT_EQ(got16, want) << "BF16 allgather_rows";

  // TrainStep's ZeRO-1 chunks (dp 1: chunk = the buffer, range = the first r).
  const int64_t r = n - 7;
  kernels::Buffer grads = be->allocate(DType::F32, n), chunk = be->allocate(DType::F32, n);
  be->upload(in.data(), grads.flat());
  c->reduce_scatter_sum(grads.flat().f32(), chunk.flat().f32(), static_cast<size_t>(n));
  be->zero(grads.flat());
  be->convert(kernels::slice(chunk.flat(), 0, r), kernels::slice(grads.flat(), 0, r));
  be->download(grads.flat(), got.data());
  EXPECT_TRUE(std::equal(in.begin(), in.begin() + r, got.begin())) << "the reduced range copied into place";
  EXPECT_TRUE(std::all_of(got.begin() + r, got.end(), [](float x) { return x == 0.0f; }));
  kernels::Buffer chunk16 = be->allocate(DType::BF16, n), work = be->allocate(DType::BF16, n);
  be->convert(kernels::slice(l16.flat(), 0, r), kernels::slice(chunk16.flat(), 0, r));
  be->zero(kernels::slice(chunk16.flat(), r, n - r));
  c->allgather(static_cast<const uint16_t*>(chunk16.flat().data), static_cast<uint16_t*>(work.flat().data),
               static_cast<size_t>(n));
  be->download(work.flat(), got16.data());
  EXPECT_TRUE(std::equal(want.begin(), want.begin() + r, got16.begin())) << "the bf16 range gathered";
  EXPECT_TRUE(std::all_of(got16.begin() + r, got16.end(), [](uint16_t x) { return x == 0; }));
  EXPECT_EQ(host.stats().total().calls, 2u);  // creation's allreduce_max and broadcast only
}

}  // namespace
}  // namespace dyt::parallel
