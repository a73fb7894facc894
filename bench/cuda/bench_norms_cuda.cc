// Bandwidth benchmark of the CUDA norm kernels at LLaMA shapes (docs/cuda_kernels.md).
//
//   dyt-bench-norms-cuda [--rows 4096] [--widths 4096,5120,8192] [--dtype bf16|f32]
//                        [--reps 200] [--warmup 20] [--json FILE]
//
// Each op is timed with CUDA events around every call (after warm-up calls),
// and the median is reported. Inputs rotate over enough buffer sets that the
// sets together are several times the L2 cache, so L2 does not serve them.
// "bytes" counts what the op must move at least: each activation read once
// and written once (parameters and the backward's partial sums are left out:
// the partials are about rows_of_partials / rows ≈ 3% more at 4096 rows). GB/s is bytes over the
// median time, and "of copy" is that over the bandwidth of a plain
// device-to-device cudaMemcpyAsync of one activation measured in the same
// run (its bytes: read + write).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_ops.h"

namespace {

using dyt::kernels::Device;
using dyt::kernels::DType;
using dyt::kernels::Tensor;
namespace cuda = dyt::cuda;

struct Args {
  int64_t rows = 4096;
  std::vector<int64_t> widths = {4096, 5120, 8192};
  DType dtype = DType::BF16;
  int reps = 200, warmup = 20;
  std::string json;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "dyt-bench-norms-cuda: %s\nusage: dyt-bench-norms-cuda [--rows N] [--widths "
               "D,D,...] [--dtype bf16|f32] [--reps N] [--warmup N] [--json FILE]\n",
               why.c_str());
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) usage(k + " needs a value");
      return argv[++i];
    };
    try {
      if (k == "--rows") a.rows = std::stoll(val());
      else if (k == "--reps") a.reps = std::stoi(val());
      else if (k == "--warmup") a.warmup = std::stoi(val());
      else if (k == "--json") a.json = val();
      else if (k == "--dtype") {
        const std::string v = val();
        if (v == "bf16") a.dtype = DType::BF16;
        else if (v == "f32") a.dtype = DType::F32;
        else usage("--dtype is bf16 or f32");
      } else if (k == "--widths") {
        a.widths.clear();
        std::stringstream ss(val());
        for (std::string w; std::getline(ss, w, ',');) a.widths.push_back(std::stoll(w));
      } else {
        usage("unknown argument " + k);
      }
    } catch (const std::logic_error&) {
      usage("bad value for " + k);
    }
  }
  if (a.rows <= 0 || a.reps <= 0 || a.warmup < 0 || a.widths.empty()) usage("bad sizes");
  return a;
}

struct DevMem {
  void* p = nullptr;
  explicit DevMem(size_t bytes) { DYT_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(bytes, 16))); }
  ~DevMem() { cudaFree(p); }
  DevMem(const DevMem&) = delete;
  DevMem& operator=(const DevMem&) = delete;
};

uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// Random values in ±[0.05, 1]·range (never zero) in the activation dtype.
std::vector<unsigned char> random_bytes(size_t n, DType dt, float range, uint64_t seed) {
  std::vector<unsigned char> out(n * (dt == DType::BF16 ? 2 : 4));
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < n; ++i) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    float v = (static_cast<float>(s >> 40) / static_cast<float>(1u << 24)) * 2.0f - 1.0f;
    if (std::abs(v) < 0.05f) v = v < 0 ? -0.05f : 0.05f;
    v *= range;
    if (dt == DType::BF16) {
      const uint16_t h = to_bf16(v);
      std::memcpy(&out[2 * i], &h, 2);
    } else {
      std::memcpy(&out[4 * i], &v, 4);
    }
  }
  return out;
}

struct Result {
  std::string op;
  int64_t d;
  double median_us, min_us, bytes;
};

double median(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

int main(int argc, char** argv) try {
  const Args args = parse(argc, argv);
  int dev = 0;
  DYT_CUDA_CHECK(cudaGetDevice(&dev));
  cudaDeviceProp prop{};
  DYT_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  std::printf("device: %s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount,
              prop.l2CacheSize >> 20);
  cudaStream_t stream;
  DYT_CUDA_CHECK(cudaStreamCreate(&stream));
  const size_t es = args.dtype == DType::BF16 ? 2 : 4;
  const char* dtn = args.dtype == DType::BF16 ? "bf16" : "f32";
  std::vector<Result> results;
  std::vector<cudaEvent_t> ev(2 * static_cast<size_t>(args.reps));
  for (auto& e : ev) DYT_CUDA_CHECK(cudaEventCreate(&e));

  for (const int64_t d : args.widths) {
    const int64_t rows = args.rows, n = rows * d;
    const size_t S = static_cast<size_t>(n) * es;
    constexpr int kTensors = 6;  // x, branch, y, dy, g (dx / dresidual), h (sum / dsum)
    const int K = std::clamp<int>(
        static_cast<int>((4.0 * prop.l2CacheSize) / (static_cast<double>(kTensors) * S)) + 1, 3, 32);
    struct Set {
      std::unique_ptr<DevMem> t[kTensors], rstd, dalpha, dgamma, dbeta;
    };
    std::vector<Set> sets(K);
    const auto xs = random_bytes(n, args.dtype, 2.0f, 1), bs = random_bytes(n, args.dtype, 1.0f, 2);
    std::vector<float> gamma(d), beta(d);
    for (int64_t i = 0; i < d; ++i) gamma[i] = 0.5f + (i % 97) / 97.0f, beta[i] = 0.01f * (i % 13);
    const float alpha = 0.8f;
    DevMem pa(4), pg(4 * d), pb(4 * d);
    DYT_CUDA_CHECK(cudaMemcpy(pa.p, &alpha, 4, cudaMemcpyHostToDevice));
    DYT_CUDA_CHECK(cudaMemcpy(pg.p, gamma.data(), 4 * d, cudaMemcpyHostToDevice));
    DYT_CUDA_CHECK(cudaMemcpy(pb.p, beta.data(), 4 * d, cudaMemcpyHostToDevice));
    const size_t ws_bytes = cuda::norm_backward_workspace_bytes(rows, d, args.dtype, true);
    DevMem wsm(ws_bytes);
    const cuda::Workspace ws{wsm.p, ws_bytes};
    for (Set& s : sets) {
      for (int t = 0; t < kTensors; ++t) {
        s.t[t] = std::make_unique<DevMem>(S);
        const auto& src = (t == 1) ? bs : xs;
        DYT_CUDA_CHECK(cudaMemcpy(s.t[t]->p, src.data(), S, cudaMemcpyHostToDevice));
      }
      s.rstd = std::make_unique<DevMem>(4 * rows);
      s.dalpha = std::make_unique<DevMem>(4);
      s.dgamma = std::make_unique<DevMem>(4 * d);
      s.dbeta = std::make_unique<DevMem>(4 * d);
      DYT_CUDA_CHECK(cudaMemset(s.dalpha->p, 0, 4));
      DYT_CUDA_CHECK(cudaMemset(s.dgamma->p, 0, 4 * d));
      DYT_CUDA_CHECK(cudaMemset(s.dbeta->p, 0, 4 * d));
    }
    auto act = [&](int k, int t) {
      return Tensor(sets[k].t[t]->p, args.dtype, Device::CUDA, {rows, d});
    };
    const Tensor ta(pa.p, DType::F32, Device::CUDA, {1}), tg(pg.p, DType::F32, Device::CUDA, {d});
    auto rstd = [&](int k) { return Tensor(sets[k].rstd->p, DType::F32, Device::CUDA, {rows}); };
    auto pgrad = [&](int, DevMem& m, int64_t len) {
      return Tensor(m.p, DType::F32, Device::CUDA, {len});
    };
    for (int k = 0; k < K; ++k) {  // rstd for the RMSNorm backward
      Tensor y = act(k, 2), r = rstd(k);
      cuda::rmsnorm_forward(act(k, 0), tg, 1e-5f, y, r, stream);
    }

    using Op = std::function<void(int)>;
    const double s = static_cast<double>(S);
    const std::vector<std::tuple<std::string, double, Op>> ops = {
        {"copy", 2 * s,
         [&](int k) {
           DYT_CUDA_CHECK(cudaMemcpyAsync(sets[k].t[2]->p, sets[k].t[0]->p, S,
                                          cudaMemcpyDeviceToDevice, stream));
         }},
        {"dyt_fwd", 2 * s,
         [&](int k) {
           Tensor y = act(k, 2);
           cuda::dyt_forward(act(k, 0), ta, tg, nullptr, y, stream);
         }},
        {"dyt_bwd", 4 * s,
         [&](int k) {
           Tensor dx = act(k, 4), da = pgrad(k, *sets[k].dalpha, 1),
                  dg = pgrad(k, *sets[k].dgamma, d);
           cuda::dyt_backward(act(k, 0), ta, tg, act(k, 3), dx, da, dg, nullptr, stream, &ws);
         }},
        {"dyt_res_fwd", 4 * s,
         [&](int k) {
           Tensor h = act(k, 5), y = act(k, 2);
           cuda::dyt_residual_forward(act(k, 0), act(k, 1), ta, tg, nullptr, h, y, stream);
         }},
        {"add+dyt_fwd", 5 * s,  // unfused: x += branch, then DyT(x)
         [&](int k) {
           Tensor x = act(k, 5), y = act(k, 2);
           cuda::add_inplace(x, act(k, 1), stream);
           cuda::dyt_forward(x, ta, tg, nullptr, y, stream);
         }},
        {"dyt_res_bwd", 4 * s,
         [&](int k) {
           Tensor dsum = act(k, 5), da = pgrad(k, *sets[k].dalpha, 1),
                  dg = pgrad(k, *sets[k].dgamma, d);
           cuda::dyt_residual_backward(act(k, 0), ta, tg, act(k, 3), act(k, 4), dsum, da, dg,
                                       nullptr, stream, &ws);
         }},
        {"dyisru_fwd", 2 * s,
         [&](int k) {
           Tensor y = act(k, 2);
           cuda::dyisru_forward(act(k, 0), ta, tg, nullptr, y, stream);
         }},
        {"dyisru_bwd", 4 * s,
         [&](int k) {
           Tensor dx = act(k, 4), da = pgrad(k, *sets[k].dalpha, 1),
                  dg = pgrad(k, *sets[k].dgamma, d);
           cuda::dyisru_backward(act(k, 0), ta, tg, act(k, 3), dx, da, dg, nullptr, stream, &ws);
         }},
        {"dyisru_res_fwd", 4 * s,
         [&](int k) {
           Tensor h = act(k, 5), y = act(k, 2);
           cuda::dyisru_residual_forward(act(k, 0), act(k, 1), ta, tg, nullptr, h, y, stream);
         }},
        {"dyisru_res_bwd", 4 * s,
         [&](int k) {
           Tensor dsum = act(k, 5), da = pgrad(k, *sets[k].dalpha, 1),
                  dg = pgrad(k, *sets[k].dgamma, d);
           cuda::dyisru_residual_backward(act(k, 0), ta, tg, act(k, 3), act(k, 4), dsum, da, dg,
                                          nullptr, stream, &ws);
         }},
        {"rmsnorm_fwd", 2 * s + 4.0 * rows,
         [&](int k) {
           Tensor y = act(k, 2), r = rstd(k);
           cuda::rmsnorm_forward(act(k, 0), tg, 1e-5f, y, r, stream);
         }},
        {"rmsnorm_bwd", 4 * s + 4.0 * rows,
         [&](int k) {
           Tensor dx = act(k, 4), dg = pgrad(k, *sets[k].dgamma, d);
           cuda::rmsnorm_backward(act(k, 0), tg, rstd(k), act(k, 3), dx, dg, stream, &ws);
         }},
    };

    for (const auto& [name, bytes, op] : ops) {
      for (int i = 0; i < args.warmup; ++i) op(i % K);
      DYT_CUDA_CHECK(cudaStreamSynchronize(stream));
      for (int r = 0; r < args.reps; ++r) {
        DYT_CUDA_CHECK(cudaEventRecord(ev[2 * r], stream));
        op(r % K);
        DYT_CUDA_CHECK(cudaEventRecord(ev[2 * r + 1], stream));
      }
      DYT_CUDA_CHECK(cudaStreamSynchronize(stream));
      DYT_CUDA_CHECK(cudaGetLastError());
      std::vector<float> ms(args.reps);
      for (int r = 0; r < args.reps; ++r)
        DYT_CUDA_CHECK(cudaEventElapsedTime(&ms[r], ev[2 * r], ev[2 * r + 1]));
      const double med = median(ms) * 1e3, mn = *std::min_element(ms.begin(), ms.end()) * 1e3;
      results.push_back({name, d, med, mn, bytes});
    }
    std::printf("width %lld done (%d buffer sets of %.0f MB)\n", static_cast<long long>(d), K,
                kTensors * S / 1e6);
  }

  // ---- table and JSON ---------------------------------------------------------------
  std::printf("\n%-16s %6s %10s %10s %9s %8s\n", "op", "width", "median_us", "min_us", "GB/s",
              "of_copy");
  std::string json = "{\n  \"device\": \"" + std::string(prop.name) +
                     "\",\n  \"sms\": " + std::to_string(prop.multiProcessorCount) +
                     ",\n  \"rows\": " + std::to_string(args.rows) + ",\n  \"dtype\": \"" + dtn +
                     "\",\n  \"reps\": " + std::to_string(args.reps) + ",\n  \"results\": [\n";
  bool first = true;
  for (const Result& r : results) {
    double copy_gbps = 0.0;
    for (const Result& c : results)
      if (c.op == "copy" && c.d == r.d) copy_gbps = c.bytes / c.median_us / 1e3;
    const double gbps = r.bytes / r.median_us / 1e3;
    std::printf("%-16s %6lld %10.2f %10.2f %9.0f %7.1f%%\n", r.op.c_str(),
                static_cast<long long>(r.d), r.median_us, r.min_us, gbps,
                100.0 * gbps / copy_gbps);
    char line[512];
    std::snprintf(line, sizeof line,
                  "%s    {\"op\": \"%s\", \"d\": %lld, \"median_us\": %.3f, \"min_us\": %.3f, "
                  "\"bytes\": %.0f, \"gbps\": %.1f, \"copy_gbps\": %.1f, \"of_copy\": %.4f}",
                  first ? "" : ",\n", r.op.c_str(), static_cast<long long>(r.d), r.median_us,
                  r.min_us, r.bytes, gbps, copy_gbps, gbps / copy_gbps);
    json += line;
    first = false;
  }
  json += "\n  ]\n}\n";
  if (!args.json.empty()) {
    FILE* f = std::fopen(args.json.c_str(), "w");
    if (!f) throw std::runtime_error("cannot write " + args.json);
    std::fputs(json.c_str(), f);
    std::fclose(f);
  }
  for (auto& e : ev) cudaEventDestroy(e);
  cudaStreamDestroy(stream);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "dyt-bench-norms-cuda: %s\n", e.what());
  return 1;
}
