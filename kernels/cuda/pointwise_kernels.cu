// RoPE, SwiGLU, the scalar scale and the F32 ↔ BF16 conversion
// (kernels/cuda/pointwise_ops.h); cross_entropy_kernels.cu holds the fused
// cross-entropy and the second stage of both reductions.
//
// Elementwise ops walk the flat tensor with a grid-stride loop over 16-byte
// vectors (8 BF16 or 4 F32 elements) when every pointer is 16-byte aligned,
// the last n mod VEC elements by single threads; else one element at a time.
// The math is kernels/elementwise.h's, as in the CPU ops.
//
// RoPE: each thread owns VEC consecutive rotation pairs (i, i + hd/2) of
// every head; it forms θ^(−2i/hd) once, then per row the angle, cos and sin
// in double (as the CPU op), and rotates that pair vector in all H heads.
//
// scale_backward: the grid is fixed by the element count alone (at most
// kReduceBlocks blocks of 256 threads); each thread sums dy·x (exact
// products) in double over its grid-stride elements, each block adds its
// threads in a fixed order (common.cuh block_sum) and writes one partial;
// launch_sum_partials adds the partials in index order.
#include <algorithm>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/detail.h"
#include "kernels/cuda/pointwise_detail.h"
#include "kernels/cuda/pointwise_ops.h"

namespace dyt::cuda {
namespace detail {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kReduceBlocks = 1024;  // scale_backward's most blocks (its partials)

// Calls body(Int<W>{}, i) for each W-element group starting at element i of a
// flat range of n: W = VEC over the whole vectors, grid-strided, then W = 1
// for the n mod VEC tail, one element per thread of the first threads.
template <int VEC, class Body>
__device__ __forceinline__ void grid_stride(int64_t n, Body&& body) {
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  const int64_t gid = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  const int64_t nvec = n / VEC;
  for (int64_t v = gid; v < nvec; v += stride) body(Int<VEC>{}, v * VEC);
  if constexpr (VEC > 1) {
    const int64_t i = nvec * VEC + gid;
    if (i < n) body(Int<1>{}, i);
  }
}

// ---- SwiGLU ---------------------------------------------------------------------------

template <class T, int VEC>
__global__ void __launch_bounds__(kThreads)
    swiglu_forward_kernel(const T* gate, const T* up, T* out, int64_t n) {
  grid_stride<VEC>(n, [&](auto w, int64_t i) {
    constexpr int W = decltype(w)::value;
    Pack<T, W> g, u;
    g.load(gate + i);
    u.load(up + i);
    float o[W];
#pragma unroll
    for (int k = 0; k < W; ++k) o[k] = kernels::silu(g.get(k)) * u.get(k);
    Pack<T, W> op;
    op.set_all(o);
    op.store(out + i);
  });
}

template <class T, int VEC>
__global__ void __launch_bounds__(kThreads)
    swiglu_backward_kernel(const T* gate, const T* up, const T* dout, T* dgate, T* dup, int64_t n) {
  grid_stride<VEC>(n, [&](auto w, int64_t i) {
    constexpr int W = decltype(w)::value;
    Pack<T, W> g, u, d;
    g.load(gate + i);
    u.load(up + i);
    d.load(dout + i);
    float dg[W], du[W];
#pragma unroll
    for (int k = 0; k < W; ++k) {
      // The CPU op's expression (kernels/cpu/elementwise_ops.cc): one exp
      // serves silu and its slope.
      const float gi = g.get(k), ui = u.get(k), doi = d.get(k);
      const float sg = kernels::sigmoidf_(gi);
      dg[k] = doi * ui * (sg * (1.0f + gi * (1.0f - sg)));
      du[k] = doi * gi * sg;
    }
    Pack<T, W> pg, pu;
    pg.set_all(dg);
    pu.set_all(du);
    pg.store(dgate + i);
    pu.store(dup + i);
  });
}

// ---- scale ------------------------------------------------------------------------------

template <class T, int VEC>
__global__ void __launch_bounds__(kThreads)
    scale_forward_kernel(const T* x, const float* __restrict__ s, T* y, int64_t n) {
  const float sv = __ldg(s);
  grid_stride<VEC>(n, [&](auto w, int64_t i) {
    constexpr int W = decltype(w)::value;
    Pack<T, W> p;
    p.load(x + i);
    float o[W];
#pragma unroll
    for (int k = 0; k < W; ++k) o[k] = sv * p.get(k);
    p.set_all(o);
    p.store(y + i);
  });
}

// dx = s·dy; part[block] = Σ over the block's elements of dy·x, in double.
template <class T, int VEC>
__global__ void __launch_bounds__(kThreads)
    scale_backward_kernel(const T* x, const T* dy, const float* __restrict__ s, T* dx, int64_t n,
                          double* __restrict__ part) {
  __shared__ double red[32];
  const float sv = __ldg(s);
  double acc = 0.0;
  grid_stride<VEC>(n, [&](auto w, int64_t i) {
    constexpr int W = decltype(w)::value;
    Pack<T, W> xp, gp;
    xp.load(x + i);
    gp.load(dy + i);
    float o[W];
#pragma unroll
    for (int k = 0; k < W; ++k) {
      const float g = gp.get(k);
      acc += static_cast<double>(g) * static_cast<double>(xp.get(k));  // exact product
      o[k] = sv * g;
    }
    gp.set_all(o);
    gp.store(dx + i);
  });
  const double total = block_sum(acc, red);
  if (threadIdx.x == 0) part[blockIdx.x] = total;
}

// ---- convert ------------------------------------------------------------------------------

// W elements of T as fp32 (W = 8: 16-byte loads, two of them for F32), and back.
template <int W>
__device__ __forceinline__ void load_group(const float* p, float (&v)[W]) {
  if constexpr (W == 1) {
    v[0] = *p;
  } else {
#pragma unroll
    for (int h = 0; h < W / 4; ++h) {
      Pack<float, 4> q;
      q.load(p + 4 * h);
#pragma unroll
      for (int k = 0; k < 4; ++k) v[4 * h + k] = q.get(k);
    }
  }
}
template <int W>
__device__ __forceinline__ void load_group(const bf16* p, float (&v)[W]) {
  Pack<bf16, W> q;
  q.load(p);
#pragma unroll
  for (int k = 0; k < W; ++k) v[k] = q.get(k);
}
template <int W>
__device__ __forceinline__ void store_group(float* p, const float (&v)[W]) {
  if constexpr (W == 1) {
    *p = v[0];
  } else {
#pragma unroll
    for (int h = 0; h < W / 4; ++h) {
      Pack<float, 4> q;
      float part[4] = {v[4 * h], v[4 * h + 1], v[4 * h + 2], v[4 * h + 3]};
      q.set_all(part);
      q.store(p + 4 * h);
    }
  }
}
template <int W>
__device__ __forceinline__ void store_group(bf16* p, const float (&v)[W]) {
  Pack<bf16, W> q;
  q.set_all(v);  // round to nearest even
  q.store(p);
}

template <class S, class D, int VEC>
__global__ void __launch_bounds__(kThreads) convert_kernel(const S* src, D* dst, int64_t n) {
  grid_stride<VEC>(n, [&](auto w, int64_t i) {
    constexpr int W = decltype(w)::value;
    float v[W];
    load_group<W>(src + i, v);
    store_group<W>(dst + i, v);
  });
}

// ---- RoPE ----------------------------------------------------------------------------------

constexpr int kRopeHeads = 4;  // heads whose loads are in flight together

// x viewed as [rows, heads, hd]; this thread owns pairs j .. j+VEC−1 (j < hd/2).
template <class T, int VEC>
__global__ void __launch_bounds__(kThreads)
    rope_kernel(T* x, int64_t rows, int64_t seq_len, int64_t heads, int64_t hd, double theta,
                float sign) {
  const int64_t half = hd / 2;
  const int64_t j = (int64_t{blockIdx.x} * blockDim.x + threadIdx.x) * VEC;
  if (j >= half) return;  // no block-wide synchronization in this kernel
  // θ^(−2i/hd) as kernels::rope_angle forms it: at pos = 1 its product is
  // exact, so pos·inv below is rope_angle(pos, i, ...) to the bit.
  double inv[VEC];
#pragma unroll
  for (int k = 0; k < VEC; ++k) inv[k] = kernels::rope_angle(1, j + k, hd, theta);
  const int64_t width = heads * hd;
  for (int64_t r = int64_t{blockIdx.y} * blockDim.y + threadIdx.y; r < rows;
       r += int64_t{gridDim.y} * blockDim.y) {
    const double pos = static_cast<double>(r % seq_len);
    float c[VEC], s[VEC];
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      double sd, cd;
      sincos(pos * inv[k], &sd, &cd);
      c[k] = static_cast<float>(cd);
      s[k] = sign * static_cast<float>(sd);
    }
    T* row = x + r * width + j;
    for (int64_t h0 = 0; h0 < heads; h0 += kRopeHeads) {
      Pack<T, VEC> a[kRopeHeads], b[kRopeHeads];
#pragma unroll
      for (int u = 0; u < kRopeHeads; ++u)
        if (h0 + u < heads) {
          a[u].load(row + (h0 + u) * hd);
          b[u].load(row + (h0 + u) * hd + half);
        }
#pragma unroll
      for (int u = 0; u < kRopeHeads; ++u)
        if (h0 + u < heads) {
          float av[VEC], bv[VEC];
#pragma unroll
          for (int k = 0; k < VEC; ++k) {
            av[k] = a[u].get(k), bv[k] = b[u].get(k);
            kernels::rope_rotate(av[k], bv[k], c[k], s[k]);
          }
          a[u].set_all(av);
          b[u].set_all(bv);
          a[u].store(row + (h0 + u) * hd);
          b[u].store(row + (h0 + u) * hd + half);
        }
    }
  }
}

// ---- host side ----------------------------------------------------------------------------

int64_t elementwise_blocks(int64_t n, int vec) {
  const int64_t groups = (n + vec - 1) / vec;
  return std::max<int64_t>(
      1, std::min<int64_t>((groups + kThreads - 1) / kThreads,
                           int64_t{sm_count(current_device())} * (2048 / kThreads)));
}

int64_t scale_reduce_blocks(int64_t n, bool vector_path, DType dt) {
  const int64_t groups = vector_path ? n / vec_width(dt) : n;
  return std::max<int64_t>(1, std::min(kReduceBlocks, (groups + kThreads - 1) / kThreads));
}

bool all_aligned(std::initializer_list<const void*> ps) {
  for (const void* p : ps)
    if (!aligned16(p)) return false;
  return true;
}

void rope_apply(const char* op, Tensor& x, int64_t seq_len, int64_t heads, double theta,
                float sign, cudaStream_t stream) {
  const DType dt = act_dtype(op, "x", x);
  require(seq_len > 0 && heads > 0, op,
          "seq_len and n_heads must be positive, got " + std::to_string(seq_len) + " and " +
              std::to_string(heads));
  const int64_t width = last_dim(x), rows = row_count(x);
  require(width % heads == 0, op,
          "row width " + std::to_string(width) + " is not divisible by n_heads " +
              std::to_string(heads));
  const int64_t hd = width / heads, half = hd / 2;
  require(hd % 2 == 0, op, "head_dim " + std::to_string(hd) + " must be even");
  require(rows % seq_len == 0, op,
          std::to_string(rows) + " rows are not a whole number of sequences of length " +
              std::to_string(seq_len));
  require(theta > 0, op, "theta must be positive, got " + std::to_string(theta));
  if (rows == 0 || half == 0) return;
  const int vec = vec_width(dt);
  const bool vp = half % vec == 0 && aligned16(x.data);
  const int64_t npv = vp ? half / vec : half;  // pair vectors per head
  const int tx = static_cast<int>(std::min<int64_t>(npv, kThreads));
  const int ty = std::max(1, kThreads / tx);
  const dim3 grid(static_cast<unsigned>((npv + tx - 1) / tx),
                  static_cast<unsigned>(std::min<int64_t>((rows + ty - 1) / ty, 65535)));
  dispatch_dtype(dt, vp, [&](auto tt, auto vv) {
    using T = typename decltype(tt)::type;
    constexpr int VEC = decltype(vv)::value;
    rope_kernel<T, VEC><<<grid, dim3(tx, ty), 0, stream>>>(static_cast<T*>(x.data), rows, seq_len,
                                                          heads, hd, theta, sign);
  });
  DYT_CUDA_CHECK_LAUNCH();
}

}  // namespace
}  // namespace detail

using namespace detail;

void rope_forward(Tensor& x, int64_t seq_len, int64_t n_heads, double theta, cudaStream_t stream) {
  rope_apply("rope_forward", x, seq_len, n_heads, theta, 1.0f, stream);
}

void rope_backward(Tensor& dx, int64_t seq_len, int64_t n_heads, double theta,
                   cudaStream_t stream) {
  rope_apply("rope_backward", dx, seq_len, n_heads, theta, -1.0f, stream);
}

void swiglu_forward(const Tensor& gate, const Tensor& up, Tensor& out, cudaStream_t stream) {
  const char* op = "swiglu_forward";
  const DType dt = act_dtype(op, "gate", gate);
  const int64_t d = last_dim(gate), rows = row_count(gate), n = gate.numel();
  require_act(op, "up", up, dt, rows, d);
  require_act(op, "out", out, dt, rows, d);
  if (n == 0) return;
  const bool vp = all_aligned({gate.data, up.data, out.data});
  const int64_t blocks = elementwise_blocks(n, vp ? vec_width(dt) : 1);
  dispatch_dtype(dt, vp, [&](auto tt, auto vv) {
    using T = typename decltype(tt)::type;
    constexpr int VEC = decltype(vv)::value;
    swiglu_forward_kernel<T, VEC><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
        static_cast<const T*>(gate.data), static_cast<const T*>(up.data),
        static_cast<T*>(out.data), n);
  });
  DYT_CUDA_CHECK_LAUNCH();
}

void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& dout, Tensor& dgate,
                     Tensor& dup, cudaStream_t stream) {
  const char* op = "swiglu_backward";
  const DType dt = act_dtype(op, "gate", gate);
  const int64_t d = last_dim(gate), rows = row_count(gate), n = gate.numel();
  require_act(op, "up", up, dt, rows, d);
  require_act(op, "dout", dout, dt, rows, d);
  require_act(op, "dgate", dgate, dt, rows, d);
  require_act(op, "dup", dup, dt, rows, d);
  require(dgate.data != dup.data || n == 0, op, "dgate and dup must be different tensors");
  if (n == 0) return;
  const bool vp = all_aligned({gate.data, up.data, dout.data, dgate.data, dup.data});
  const int64_t blocks = elementwise_blocks(n, vp ? vec_width(dt) : 1);
  dispatch_dtype(dt, vp, [&](auto tt, auto vv) {
    using T = typename decltype(tt)::type;
    constexpr int VEC = decltype(vv)::value;
    swiglu_backward_kernel<T, VEC><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
        static_cast<const T*>(gate.data), static_cast<const T*>(up.data),
        static_cast<const T*>(dout.data), static_cast<T*>(dgate.data), static_cast<T*>(dup.data),
        n);
  });
  DYT_CUDA_CHECK_LAUNCH();
}

void scale_forward(const Tensor& x, const Tensor& s, Tensor& y, cudaStream_t stream) {
  const char* op = "scale_forward";
  const DType dt = act_dtype(op, "x", x);
  const int64_t d = last_dim(x), rows = row_count(x), n = x.numel();
  require_act(op, "y", y, dt, rows, d);
  require_f32(op, "s", s, 1, false);
  if (n == 0) return;
  const bool vp = all_aligned({x.data, y.data});
  const int64_t blocks = elementwise_blocks(n, vp ? vec_width(dt) : 1);
  dispatch_dtype(dt, vp, [&](auto tt, auto vv) {
    using T = typename decltype(tt)::type;
    constexpr int VEC = decltype(vv)::value;
    scale_forward_kernel<T, VEC><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
        static_cast<const T*>(x.data), s.f32(), static_cast<T*>(y.data), n);
  });
  DYT_CUDA_CHECK_LAUNCH();
}

size_t scale_backward_workspace_bytes(int64_t numel) {
  if (numel <= 0) return 0;
  // The scalar path has the most blocks: an upper bound over paths and dtypes.
  return static_cast<size_t>(scale_reduce_blocks(numel, false, DType::F32)) * sizeof(double);
}

void scale_backward(const Tensor& x, const Tensor& dy, const Tensor& s, Tensor& dx, Tensor& ds,
                    cudaStream_t stream, const Workspace* ws) {
  const char* op = "scale_backward";
  const DType dt = act_dtype(op, "x", x);
  const int64_t d = last_dim(x), rows = row_count(x), n = x.numel();
  require_act(op, "dy", dy, dt, rows, d);
  require_act(op, "dx", dx, dt, rows, d);
  require_f32(op, "s", s, 1, false);
  require_f32(op, "ds", ds, 1, false);
  if (n == 0) return;
  const bool vp = all_aligned({x.data, dy.data, dx.data});
  const int64_t blocks = scale_reduce_blocks(n, vp, dt);
  double* part = static_cast<double*>(
      workspace(op, static_cast<size_t>(blocks) * sizeof(double), stream, ws));
  dispatch_dtype(dt, vp, [&](auto tt, auto vv) {
    using T = typename decltype(tt)::type;
    constexpr int VEC = decltype(vv)::value;
    scale_backward_kernel<T, VEC><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
        static_cast<const T*>(x.data), static_cast<const T*>(dy.data), s.f32(),
        static_cast<T*>(dx.data), n, part);
  });
  DYT_CUDA_CHECK_LAUNCH();
  launch_sum_partials(part, blocks, ds.f32(), nullptr, stream);
}

void convert(const Tensor& src, Tensor& dst, cudaStream_t stream) {
  const char* op = "convert";
  const DType st = act_dtype(op, "src", src);
  const DType dt = act_dtype(op, "dst", dst);
  const int64_t n = src.numel();
  require(dst.numel() == n, op,
          "dst has shape " + kernels::shape_text(dst) + " (" + std::to_string(dst.numel()) +
              " elements), src " + kernels::shape_text(src) + " (" + std::to_string(n) + ")");
  if (n == 0) return;
  const bool vp = all_aligned({src.data, dst.data});
  const int64_t blocks = elementwise_blocks(n, vp ? 8 : 1);
  const auto launch = [&](auto s_tag, auto d_tag) {
    using S = typename decltype(s_tag)::type;
    using D = typename decltype(d_tag)::type;
    const S* sp = static_cast<const S*>(src.data);
    D* dp = static_cast<D*>(dst.data);
    if (vp)
      convert_kernel<S, D, 8><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(sp, dp, n);
    else
      convert_kernel<S, D, 1><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(sp, dp, n);
  };
  if (st == DType::F32 && dt == DType::BF16) launch(Tag<float>{}, Tag<bf16>{});
  else if (st == DType::BF16 && dt == DType::F32) launch(Tag<bf16>{}, Tag<float>{});
  else if (st == DType::F32) launch(Tag<float>{}, Tag<float>{});
  else launch(Tag<bf16>{}, Tag<bf16>{});
  DYT_CUDA_CHECK_LAUNCH();
}

}  // namespace dyt::cuda
