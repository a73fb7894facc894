// Timing of the CUDA flash attention (kernels/cuda/attention.h) at LLaMA-style
// shapes, for tuning on a GPU (docs/cuda_kernels.md, "Attention").
//
//   dyt-bench-attention-cuda [--dtype bf16|f32] [--reps 20] [--warmup 3]
//                            [--shape B,T,Hq,Hkv,hd ...]
//
// Each op is timed with CUDA events around every call after warm-up calls;
// the median is reported, with the rate in TFLOP/s of the causal products
// (forward QKᵀ and PV: 4·B·Hq·hd·T(T+1)/2; backward 2.5× that: QKᵀ again,
// dO·Vᵀ, Pᵀ·dO, dSᵀ·Q, dS·K). Inputs are random (never zero, never
// constant: zeros can run faster than real data); two input sets alternate.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda/attention.h"

namespace {

using dyt::kernels::AttentionShape;
using dyt::kernels::Device;
using dyt::kernels::DType;
using dyt::kernels::Tensor;
namespace cuda = dyt::cuda;

struct Shape {
  int64_t B, T, Hq, Hkv, hd;
};
struct Args {
  DType dtype = DType::BF16;
  int reps = 20, warmup = 3;
  std::vector<Shape> shapes = {
      {1, 2048, 32, 8, 128}, {1, 4096, 32, 8, 128}, {1, 8192, 32, 8, 128},
      {4, 1024, 32, 32, 128}, {8, 1024, 16, 4, 64},
  };
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "dyt-bench-attention-cuda: %s\nusage: dyt-bench-attention-cuda [--dtype bf16|f32] "
               "[--reps N] [--warmup N] [--shape B,T,Hq,Hkv,hd ...]\n",
               why.c_str());
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  bool own_shapes = false;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) usage(k + " needs a value");
      return argv[++i];
    };
    try {
      if (k == "--reps") a.reps = std::stoi(val());
      else if (k == "--warmup") a.warmup = std::stoi(val());
      else if (k == "--dtype") {
        const std::string v = val();
        if (v == "bf16") a.dtype = DType::BF16;
        else if (v == "f32") a.dtype = DType::F32;
        else usage("--dtype is bf16 or f32");
      } else if (k == "--shape") {
        if (!own_shapes) a.shapes.clear(), own_shapes = true;
        std::stringstream ss(val());
        std::vector<int64_t> v;
        for (std::string w; std::getline(ss, w, ',');) v.push_back(std::stoll(w));
        if (v.size() != 5) usage("--shape is B,T,Hq,Hkv,hd");
        a.shapes.push_back({v[0], v[1], v[2], v[3], v[4]});
      } else {
        usage("unknown argument " + k);
      }
    } catch (const std::logic_error&) {
      usage("bad value for " + k);
    }
  }
  if (a.reps < 1 || a.warmup < 0) usage("--reps must be positive and --warmup not negative");
  return a;
}

// A device buffer of n random activations in [-1, 1] (|v| >= 0.05).
struct Buf {
  void* p = nullptr;
  Buf(size_t n, DType dt, std::mt19937& gen) {
    const size_t es = dt == DType::BF16 ? 2 : 4;
    DYT_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(n, 1) * es));
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    std::vector<unsigned char> host(n * es);
    for (size_t i = 0; i < n; ++i) {
      float f;
      do f = dist(gen);
      while (std::fabs(f) < 0.05f);
      uint32_t u;
      std::memcpy(&u, &f, 4);
      if (dt == DType::BF16) {
        const uint16_t h = static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
        std::memcpy(&host[i * 2], &h, 2);
      } else {
        std::memcpy(&host[i * 4], &u, 4);
      }
    }
    DYT_CUDA_CHECK(cudaMemcpy(p, host.data(), host.size(), cudaMemcpyHostToDevice));
  }
  ~Buf() { cudaFree(p); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  Tensor view(DType dt, int64_t rows, int64_t w) const {
    return Tensor(p, dt, Device::CUDA, {rows, w});
  }
};

template <class F>
float median_ms(int warmup, int reps, F&& call) {
  for (int i = 0; i < warmup; ++i) call(i);
  cudaEvent_t a, b;
  DYT_CUDA_CHECK(cudaEventCreate(&a));
  DYT_CUDA_CHECK(cudaEventCreate(&b));
  std::vector<float> ms(reps);
  for (int i = 0; i < reps; ++i) {
    DYT_CUDA_CHECK(cudaEventRecord(a, nullptr));
    call(i);
    DYT_CUDA_CHECK(cudaEventRecord(b, nullptr));
    DYT_CUDA_CHECK(cudaEventSynchronize(b));
    DYT_CUDA_CHECK(cudaEventElapsedTime(&ms[i], a, b));
  }
  DYT_CUDA_CHECK(cudaEventDestroy(a));
  DYT_CUDA_CHECK(cudaEventDestroy(b));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse(argc, argv);
  int n_dev = 0;
  if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
    std::fprintf(stderr, "dyt-bench-attention-cuda: no CUDA device\n");
    return 1;
  }
  cudaDeviceProp prop{};
  DYT_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s (%d SMs); dtype %s; median of %d calls after %d warm-up\n", prop.name,
              prop.multiProcessorCount, args.dtype == DType::BF16 ? "bf16" : "f32", args.reps,
              args.warmup);
  std::printf("%-24s %10s %8s %10s %8s\n", "B,T,Hq,Hkv,hd", "fwd ms", "TFLOP/s", "bwd ms",
              "TFLOP/s");
  std::mt19937 gen(20240520);
  const DType dt = args.dtype;
  for (const Shape& s : args.shapes) {
    const int64_t rows = s.B * s.T, qw = s.Hq * s.hd, kw = s.Hkv * s.hd;
    const AttentionShape sh{s.B, s.T, s.Hq, s.Hkv};
    struct Set {
      Buf q, k, v, dout;
    };
    std::vector<std::unique_ptr<Set>> sets;
    for (int i = 0; i < 2; ++i)
      sets.push_back(std::unique_ptr<Set>(new Set{Buf(rows * qw, dt, gen), Buf(rows * kw, dt, gen),
                                                  Buf(rows * kw, dt, gen), Buf(rows * qw, dt, gen)}));
    Buf out(rows * qw, dt, gen), dq(rows * qw, dt, gen), dk(rows * kw, dt, gen),
        dv(rows * kw, dt, gen);
    Buf lse(s.B * s.Hq * s.T, DType::F32, gen);
    auto fwd = [&](int i) {
      const Set& x = *sets[i % 2];
      cuda::attention_forward(x.q.view(dt, rows, qw), x.k.view(dt, rows, kw),
                              x.v.view(dt, rows, kw), sh, out.view(dt, rows, qw),
                              Tensor(lse.p, DType::F32, Device::CUDA, {s.B, s.Hq, s.T}), nullptr);
    };
    const float f_ms = median_ms(args.warmup, args.reps, fwd);
    fwd(0);  // out and lse of set 0 for the backward
    auto bwd = [&](int) {
      const Set& x = *sets[0];
      cuda::attention_backward(x.q.view(dt, rows, qw), x.k.view(dt, rows, kw),
                               x.v.view(dt, rows, kw), out.view(dt, rows, qw),
                               Tensor(lse.p, DType::F32, Device::CUDA, {s.B, s.Hq, s.T}),
                               x.dout.view(dt, rows, qw), sh, dq.view(dt, rows, qw),
                               dk.view(dt, rows, kw), dv.view(dt, rows, kw), nullptr);
    };
    const float b_ms = median_ms(args.warmup, args.reps, bwd);
    DYT_CUDA_CHECK(cudaDeviceSynchronize());
    const double flop = 4.0 * s.B * s.Hq * s.hd * (double(s.T) * (s.T + 1) / 2);
    char name[64];
    std::snprintf(name, sizeof name, "%lld,%lld,%lld,%lld,%lld", (long long)s.B, (long long)s.T,
                  (long long)s.Hq, (long long)s.Hkv, (long long)s.hd);
    std::printf("%-24s %10.3f %8.1f %10.3f %8.1f\n", name, f_ms, flop / (f_ms * 1e9), b_ms,
                2.5 * flop / (b_ms * 1e9));
  }
  return 0;
}
