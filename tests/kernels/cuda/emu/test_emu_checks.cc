// The host emulator's checks, each shown catching a planted fault
// (planted_faults.cu): a removed __syncthreads (seen in reversed and shuffled
// thread order, not in index order), a read of shared memory no thread wrote
// (NaN from the poisoning), and pointers that are not device memory (a host
// pointer, a freed buffer, one past the end; through a planted kernel and
// through a real op), which abort with the launch site, kernel and argument;
// a cross-warp read ordered only by __syncwarp; the wmma model's results,
// its per-lane stores and its ldm check.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_ops.h"
#include "tests/kernels/cuda/emu/emu_options.h"
#include "tests/kernels/cuda/emu/planted_faults.h"

namespace {

// Restores the options a test changed.
class EmuChecks : public ::testing::Test {
 protected:
  void TearDown() override { emu::options() = saved_; }
  emu::Options saved_ = emu::options();
};

struct Dev {
  explicit Dev(size_t n) : n(n) {
    if (cudaMalloc(reinterpret_cast<void**>(&p), n * sizeof(float)) != cudaSuccess)
      throw std::runtime_error("cudaMalloc failed");
  }
  ~Dev() { cudaFree(p); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  void upload(const std::vector<float>& v) {
    cudaMemcpy(p, v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice);
  }
  std::vector<float> download() const {
    std::vector<float> v(n);
    cudaMemcpy(v.data(), p, n * sizeof(float), cudaMemcpyDeviceToHost);
    return v;
  }
  size_t n;
  float* p = nullptr;
};

std::vector<float> iota_from(float first, size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = first + static_cast<float>(i);
  return v;
}

// Elements of out that differ from in shifted by one (NaN counts as wrong).
int shift_errors(int n, bool barrier) {
  const std::vector<float> in = iota_from(1.0f, n);
  Dev din(n), dout(n);
  din.upload(in);
  emu_planted::shift_through_shared(din.p, dout.p, n, barrier);
  const std::vector<float> out = dout.download();
  int wrong = 0;
  for (int t = 0; t < n; ++t) wrong += !(out[t] == (t > 0 ? in[t - 1] : 0.0f));
  return wrong;
}

TEST_F(EmuChecks, MissingBarrierShowsInReversedAndShuffledOrder) {
  const int n = 256;
  for (emu::Order o : {emu::Order::kForward, emu::Order::kReverse, emu::Order::kShuffle}) {
    emu::options().order = o;
    EXPECT_EQ(shift_errors(n, true), 0) << emu::describe_options() << ": with the barrier";
  }
  // Index order runs each writer (t − 1) to the end before its reader t: the
  // fault is invisible, which is why the other orders exist.
  emu::options().order = emu::Order::kForward;
  EXPECT_EQ(shift_errors(n, false), 0);
  emu::options().order = emu::Order::kReverse;
  EXPECT_EQ(shift_errors(n, false), n - 1) << "every reader but thread 0 ran before its writer";
  emu::options().order = emu::Order::kShuffle;
  const int wrong = shift_errors(n, false);
  // About half the readers run before their writer; a fixed seed fixes the count.
  EXPECT_GT(wrong, n / 4) << emu::describe_options();
  EXPECT_LT(wrong, 3 * n / 4) << emu::describe_options();
}

TEST_F(EmuChecks, UninitialisedSharedReadIsNaN) {
  const int n = 64, blocks = 3;  // two warps: slots 0 and 1 written, 2..31 never
  const std::vector<float> in = iota_from(0.5f, n * blocks);
  Dev din(n * blocks), dout(blocks);
  din.upload(in);
  for (emu::Order o : {emu::Order::kForward, emu::Order::kReverse, emu::Order::kShuffle}) {
    emu::options().order = o;
    emu_planted::block_sums(din.p, dout.p, n, blocks, false);
    std::vector<float> out = dout.download();
    for (int b = 0; b < blocks; ++b) {
      float want = 0.0f;  // the kernel's order: two warp sums of exact integers+halves
      for (int t = 0; t < n; ++t) want += in[b * n + t];
      EXPECT_EQ(out[b], want) << "block " << b << ", " << emu::describe_options();
    }
    emu_planted::block_sums(din.p, dout.p, n, blocks, true);
    out = dout.download();
    for (int b = 0; b < blocks; ++b)
      EXPECT_TRUE(std::isnan(out[b])) << "block " << b << " read 30 unwritten slots and got "
                                      << out[b] << ", " << emu::describe_options();
  }
}

// __syncwarp is a barrier of one warp only: warps run one after another
// through their __syncwarp intervals, so a cross-warp read it does not order
// sees the poison in index order (warp 0 reads warp 1's slots first) and
// reversed (warp 1 reads warp 0's).
TEST_F(EmuChecks, WarpBarrierDoesNotOrderOtherWarps) {
  const int n = 64;
  const std::vector<float> in = iota_from(1.0f, n);
  Dev din(n), dout(n);
  din.upload(in);
  for (emu::Order o : {emu::Order::kForward, emu::Order::kReverse, emu::Order::kShuffle}) {
    emu::options().order = o;
    for (bool block_barrier : {true, false}) {
      emu_planted::shift_across_warps(din.p, dout.p, n, block_barrier);
      const std::vector<float> out = dout.download();
      int wrong = 0;
      for (int t = 0; t < n; ++t) wrong += !(out[t] == in[(t + 32) % n]);
      // The warp that runs first reads the other's 32 unwritten slots.
      EXPECT_EQ(wrong, block_barrier ? 0 : 32)
          << emu::describe_options() << (block_barrier ? ", __syncthreads" : ", __syncwarp");
    }
  }
}

// The wmma model (wmma_emu.h): the product is exact bf16 products summed in
// fp32 in k order; a lane's store covers only its own elements, so reading
// the stored tile without __syncwarp sees the poison; a bad ldm aborts.
TEST_F(EmuChecks, WmmaModel) {
  auto bf16 = [](float f) {  // round to nearest even, as __float2bfloat16_rn
    uint32_t u;
    std::memcpy(&u, &f, 4);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    std::memcpy(&f, &u, 4);
    return f;
  };
  std::vector<float> a(256), b(256);
  for (int i = 0; i < 256; ++i) a[i] = 0.01f * float(i % 37) - 0.17f, b[i] = 0.3f - 0.007f * i;
  std::vector<float> want(256);
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) {
      float s = 0.0f;
      for (int k = 0; k < 16; ++k) s += bf16(a[r * 16 + k]) * bf16(b[k * 16 + c]);
      want[r * 16 + c] = s;
    }
  Dev da(256), db(256), dc(256);
  da.upload(a);
  db.upload(b);
  for (emu::Order o : {emu::Order::kForward, emu::Order::kReverse, emu::Order::kShuffle}) {
    emu::options().order = o;
    emu_planted::wmma_product(da.p, db.p, dc.p, 16, true);
    EXPECT_EQ(dc.download(), want) << emu::describe_options();
    emu_planted::wmma_product(da.p, db.p, dc.p, 16, false);
    int nan = 0;
    for (float v : dc.download()) nan += std::isnan(v);
    EXPECT_GT(nan, 0) << emu::describe_options() << ": no __syncwarp after the store";
  }
  EXPECT_DEATH(emu_planted::wmma_product(da.p, db.p, dc.p, 12, true),
               "wmma::load_matrix_sync: .* ldm 12 .* multiple of 16 bytes");
}

TEST_F(EmuChecks, HostPointerArgumentAborts) {
  const int n = 40;
  std::vector<float> host(n, 1.0f);
  Dev din(n), dout(n);
  din.upload(host);
  emu_planted::scale_by_two(din.p, dout.p, n);  // device memory: fine
  EXPECT_EQ(dout.download()[n - 1], 2.0f);
  EXPECT_DEATH(emu_planted::scale_by_two(host.data(), dout.p, n),
               "planted_faults.cu:[0-9]+: launch of scale_kernel: pointer argument 0 .* is not "
               "in any device allocation");
  EXPECT_DEATH(emu_planted::scale_by_two(din.p, host.data(), n), "pointer argument 1");
  // One element past the end is not in the allocation either.
  EXPECT_DEATH(emu_planted::scale_by_two(din.p + n, dout.p, 1),
               "pointer argument 0 .* 0 bytes past the end of the 160-byte allocation");
}

TEST_F(EmuChecks, FreedBufferArgumentAborts) {
  float* p = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&p), 64 * sizeof(float)), cudaSuccess);
  Dev dout(64);
  ASSERT_EQ(cudaFree(p), cudaSuccess);
  EXPECT_DEATH(emu_planted::scale_by_two(p, dout.p, 64), "not in any device allocation");
}

// The real ops pass through the same check: a tensor that claims to be on
// the device but points at host memory is caught at the launch.
TEST_F(EmuChecks, RealOpWithHostMemoryAborts) {
  using dyt::kernels::Device;
  using dyt::kernels::DType;
  using dyt::kernels::Tensor;
  std::vector<float> hx(2 * 8, 0.5f), hy(2 * 8);
  Dev a(1), g(8);
  a.upload({1.0f});
  g.upload(std::vector<float>(8, 1.0f));
  Tensor x(hx.data(), DType::F32, Device::CUDA, {2, 8});
  Tensor y(hy.data(), DType::F32, Device::CUDA, {2, 8});
  Tensor ta(a.p, DType::F32, Device::CUDA, {1}), tg(g.p, DType::F32, Device::CUDA, {8});
  EXPECT_DEATH(dyt::cuda::dyt_forward(x, ta, tg, nullptr, y, nullptr),
               "dyt_kernels.cu:[0-9]+: launch of dyn_forward_kernel<Act, T, VEC>: pointer "
               "argument 0 .* is not in any device allocation");
}

TEST_F(EmuChecks, OptionsComeFromTheEnvironmentAndAreDescribed) {
  emu::options().order = emu::Order::kShuffle;
  emu::options().seed = 77;
  EXPECT_EQ(emu::describe_options(), "DYT_EMU_ORDER=shuffle DYT_EMU_SEED=77");
  EXPECT_EXIT(
      {
        // A fresh process reads $DYT_EMU_ORDER at first use (here, the
        // fixture's constructor) and refuses a value it does not know.
        setenv("DYT_EMU_ORDER", "sideways", 1);
        execl("/proc/self/exe", "/proc/self/exe", "--gtest_filter=EmuChecks.MissingBarrier*",
              static_cast<char*>(nullptr));
        std::_Exit(99);
      },
      ::testing::ExitedWithCode(2), "DYT_EMU_ORDER=sideways: expected forward, reverse or shuffle");
}

}  // namespace
