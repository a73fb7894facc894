// Token embedding forward (row gather) and backward (deterministic
// scatter-add through a sort), kernels/cuda/embedding_ops.h.
//
// Backward, in three steps, no float atomics:
//  1. keys: key[i] = token << 32 | i for each position i (an id outside
//     [0, V), kAbsentToken among them, gets token 0xffffffff, so it sorts
//     last and is skipped), padded
//     with ~0 to n2, the next power of two.
//  2. a bitonic sort of the keys, ascending. Keys are distinct, so the order
//     is by token, then position: a stable sort by token. Stages that fit a
//     tile of kSortTile keys run in shared memory; longer strides as one
//     kernel per stage.
//  3. one block per (sorted index, column tile): if its key starts a run of
//     equal tokens, the block adds the run's rows of dout to the table row in
//     position order, from the row's old value: dst += row₀, += row₁, ... —
//     the serial order of cpu::embedding_backward, hence its bits. Other
//     blocks exit at once.
// The price of the CPU's order: a token's rows are added by one thread per
// column, so a token repeated L times costs L dependent adds (a few µs per
// thousand repeats).
#include <algorithm>
#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/detail.h"
#include "kernels/cuda/embedding_ops.h"
#include "kernels/op_params.h"

namespace dyt::cuda {
namespace detail {
namespace {

// ---- VEC consecutive elements as fp32 (VEC = 4 with aligned rows, else 1) --------------
template <class T, int VEC>
__device__ __forceinline__ void load_row(const T* p, float (&x)[VEC]) {
  if constexpr (VEC == 1) {
    x[0] = to_f32(*p);
  } else if constexpr (sizeof(T) == 4) {
    const float4 q = *reinterpret_cast<const float4*>(p);
    x[0] = q.x, x[1] = q.y, x[2] = q.z, x[3] = q.w;
  } else {  // 4 bf16 in 8 bytes; element 2k is the low half of word k
    const uint2 w = *reinterpret_cast<const uint2*>(p);
    x[0] = __uint_as_float(w.x << 16), x[1] = __uint_as_float(w.x & 0xffff0000u);
    x[2] = __uint_as_float(w.y << 16), x[3] = __uint_as_float(w.y & 0xffff0000u);
  }
}
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  uint32_t w;
  memcpy(&w, &h, sizeof w);
  return w;
}
template <class T, int VEC>
__device__ __forceinline__ void store_row(T* p, const float (&x)[VEC]) {
  if constexpr (VEC == 1) {
    *p = from_f32<T>(x[0]);
  } else if constexpr (sizeof(T) == 4) {
    *reinterpret_cast<float4*>(p) = make_float4(x[0], x[1], x[2], x[3]);
  } else {
    *reinterpret_cast<uint2*>(p) = make_uint2(pack_bf16x2(x[0], x[1]), pack_bf16x2(x[2], x[3]));
  }
}

// ---- forward ------------------------------------------------------------------------------
// Block (row r, column tile): each thread copies VEC columns of one row.
template <class TIn, class TOut, int VEC>
__global__ void __launch_bounds__(256)
    embedding_forward_kernel(const int32_t* __restrict__ tokens, const TIn* __restrict__ table,
                             TOut* __restrict__ out, int64_t vocab, int64_t d) {
  const int64_t r = blockIdx.x;
  const int64_t c = (int64_t{blockIdx.y} * blockDim.x + threadIdx.x) * VEC;
  if (c >= d) return;
  const int32_t id = tokens[r];
  float x[VEC];
  if (id >= 0 && id < vocab) {
    load_row<TIn, VEC>(table + int64_t{id} * d + c, x);
  } else {
    // A row on another tensor-parallel rank is zero (the tp all-reduce adds
    // the owner's row); any other id is never read outside the table, and
    // its NaN row makes the escape visible.
    const float fill = id == kernels::kAbsentToken ? 0.0f : __uint_as_float(0x7fc00000u);
#pragma unroll
    for (int i = 0; i < VEC; ++i) x[i] = fill;
  }
  store_row<TOut, VEC>(out + r * d + c, x);
}

// ---- backward: keys ---------------------------------------------------------------------
constexpr uint32_t kSkipToken = 0xffffffffu;
constexpr int kSortTile = 2048;  // keys sorted in shared memory by one block (16 KiB)

__global__ void __launch_bounds__(256)
    make_keys_kernel(const int32_t* __restrict__ tokens, int64_t n, int64_t n2, int64_t vocab,
                     uint64_t* __restrict__ keys) {
  const int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (i >= n2) return;
  uint64_t key = ~uint64_t{0};
  if (i < n) {
    const int32_t id = tokens[i];
    const uint32_t tok = id >= 0 && id < vocab ? static_cast<uint32_t>(id) : kSkipToken;
    key = uint64_t{tok} << 32 | static_cast<uint64_t>(i);
  }
  keys[i] = key;
}

// ---- backward: bitonic sort ------------------------------------------------------------
// Stage (k, j) of the network: element i and i + j (i with bit j clear) are
// put in ascending order where bit k of i is clear, descending where set.
__device__ __forceinline__ void compare_swap(uint64_t& a, uint64_t& b, bool ascending) {
  if ((a > b) == ascending) {
    const uint64_t t = a;
    a = b;
    b = t;
  }
}

// Stages k = 2 .. tile (all j) of each tile of `tile` keys, in shared memory;
// or with merge_k > 0, the stages (merge_k, j) for j = tile/2 .. 1. A block
// has tile/2 threads, each owning one pair per stage.
__global__ void __launch_bounds__(kSortTile / 2)
    sort_tile_kernel(uint64_t* __restrict__ keys, int tile, int64_t merge_k) {
  __shared__ uint64_t s[kSortTile];
  const int t = threadIdx.x, half = tile / 2;
  const int64_t base = int64_t{blockIdx.x} * tile;
  s[t] = keys[base + t];
  s[t + half] = keys[base + t + half];
  const int64_t k_first = merge_k > 0 ? merge_k : 2, k_last = merge_k > 0 ? merge_k : tile;
  for (int64_t k = k_first; k <= k_last; k <<= 1) {
    for (int j = static_cast<int>((k < tile ? k : int64_t{tile}) / 2); j > 0; j >>= 1) {
      __syncthreads();
      const int i = 2 * t - (t & (j - 1));
      compare_swap(s[i], s[i + j], ((base + i) & k) == 0);
    }
  }
  __syncthreads();
  keys[base + t] = s[t];
  keys[base + t + half] = s[t + half];
}

// One stage (k, j) with j ≥ the tile: one thread per pair, in global memory.
__global__ void __launch_bounds__(256)
    sort_stage_kernel(uint64_t* __restrict__ keys, int64_t pairs, int64_t k, int64_t j) {
  const int64_t t = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (t >= pairs) return;
  const int64_t i = 2 * t - (t & (j - 1));
  uint64_t a = keys[i], b = keys[i + j];
  compare_swap(a, b, (i & k) == 0);
  keys[i] = a;
  keys[i + j] = b;
}

// ---- backward: one block per run of equal tokens and column tile ----------------------
// A run is added kRunRows rows at a time: the group's row loads are all
// issued before any add, and the next group's keys are loaded meanwhile, so
// one memory round trip covers kRunRows rows (a key loaded only after the one
// before it was compared would cost a round trip per row).
constexpr int kRunRows = 8;

template <class T, int VEC>
__global__ void __launch_bounds__(128)
    embedding_backward_kernel(const uint64_t* __restrict__ keys, int64_t n,
                              const T* __restrict__ dout, float* __restrict__ dtable, int64_t d) {
  const int64_t i = blockIdx.x;
  const uint32_t tok = static_cast<uint32_t>(keys[i] >> 32);
  if (tok == kSkipToken) return;                                     // bad ids sort last
  if (i > 0 && static_cast<uint32_t>(keys[i - 1] >> 32) == tok) return;  // not a run's head
  const int64_t c = (int64_t{blockIdx.y} * blockDim.x + threadIdx.x) * VEC;
  if (c >= d) return;
  float* dst = dtable + int64_t{tok} * d + c;
  float acc[VEC];
  load_row<float, VEC>(dst, acc);
  // Keys past the end read as ~0 (token 0xffffffff, never a run's token).
  uint64_t key[kRunRows];
#pragma unroll
  for (int u = 0; u < kRunRows; ++u) key[u] = i + u < n ? keys[i + u] : ~uint64_t{0};
  for (int64_t j = i;; j += kRunRows) {
    // The run is contiguous in sorted order, so `in` is a prefix of the group.
    bool in[kRunRows];
    float x[kRunRows][VEC];
#pragma unroll
    for (int u = 0; u < kRunRows; ++u) {
      in[u] = static_cast<uint32_t>(key[u] >> 32) == tok;
      if (in[u]) load_row<T, VEC>(dout + static_cast<int64_t>(key[u] & 0xffffffffu) * d + c, x[u]);
    }
    if (!in[kRunRows - 1]) {  // the run ends in this group
#pragma unroll
      for (int u = 0; u < kRunRows; ++u)
        if (in[u]) {
#pragma unroll
          for (int e = 0; e < VEC; ++e) acc[e] += x[u][e];
        }
      break;
    }
#pragma unroll
    for (int u = 0; u < kRunRows; ++u) {
      const int64_t jj = j + kRunRows + u;
      key[u] = jj < n ? keys[jj] : ~uint64_t{0};
    }
#pragma unroll
    for (int u = 0; u < kRunRows; ++u)
#pragma unroll
      for (int e = 0; e < VEC; ++e) acc[e] += x[u][e];  // in position order
  }
  store_row<float, VEC>(dst, acc);
}

// ---- host side ----------------------------------------------------------------------------
int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t pow2_at_least(int64_t n) {
  int64_t p = 2;
  while (p < n) p <<= 1;
  return p;
}
int round32(int64_t n) { return static_cast<int>(ceil_div(std::max<int64_t>(n, 1), 32) * 32); }
constexpr int64_t kMaxTokens = 0x7fffffff;  // a grid dimension, and the key's low 32 bits

void require_tokens(const char* op, const Tensor& tokens) {
  require(tokens.dtype == DType::I32, op,
          std::string("tokens must be I32, not ") + kernels::dtype_name(tokens.dtype));
  require(tokens.device == kernels::Device::CUDA, op, "tokens must be a CUDA tensor");
  require(tokens.data != nullptr || tokens.numel() == 0, op, "tokens has no data");
  require(tokens.numel() <= kMaxTokens, op,
          std::to_string(tokens.numel()) + " tokens, at most 2^31 - 1 per call");
}
// Column tiles are a grid dimension (at most 65535) of at least 128 threads.
constexpr int64_t kMaxWidth = int64_t{65535} * 128;
void require_table(const char* op, const char* name, const Tensor& t) {
  require(t.rank == 2, op, std::string(name) + " must be rank 2 [V, d], got " +
                               kernels::shape_text(t));
  require(t.shape[1] <= kMaxWidth, op,
          std::string(name) + " rows of " + std::to_string(t.shape[1]) + " are wider than " +
              std::to_string(kMaxWidth));
}

// The 4-wide path: width a multiple of 4 and every row 16-byte (F32) or
// 8-byte (BF16) aligned, which base alignment then guarantees.
bool vec4_ok(int64_t d, const void* a, DType da, const void* b, DType db) {
  auto ok = [](const void* p, DType dt) {
    return (reinterpret_cast<uintptr_t>(p) & (dt == DType::BF16 ? 7u : 15u)) == 0;
  };
  return d % 4 == 0 && ok(a, da) && ok(b, db);
}

template <class F>
void dispatch_vec(bool vec4, F&& f) {
  if (vec4) f(Int<4>{});
  else f(Int<1>{});
}

}  // namespace
}  // namespace detail

void embedding_forward(const Tensor& tokens, const Tensor& table, const Tensor& out,
                       cudaStream_t stream) {
  using namespace detail;
  const char* op = "embedding_forward";
  require_tokens(op, tokens);
  const DType dt_table = act_dtype(op, "table", table);
  require_table(op, "table", table);
  const int64_t vocab = table.shape[0], d = table.shape[1], n = tokens.numel();
  const DType dt_out = act_dtype(op, "out", out);
  require_act(op, "out", out, dt_out, n, d);
  if (n == 0 || d == 0) return;
  const bool vec4 = vec4_ok(d, table.data, dt_table, out.data, dt_out);
  dispatch_vec(vec4, [&](auto vec) {
    constexpr int VEC = decltype(vec)::value;
    const int64_t nvec = ceil_div(d, VEC);
    const int tx = std::min(256, round32(nvec));
    const dim3 grid(static_cast<unsigned>(n), static_cast<unsigned>(ceil_div(nvec, tx)));
    auto launch = [&](auto tin, auto tout) {
      using TIn = typename decltype(tin)::type;
      using TOut = typename decltype(tout)::type;
      embedding_forward_kernel<TIn, TOut, VEC><<<grid, tx, 0, stream>>>(
          tokens.i32(), static_cast<const TIn*>(table.data), static_cast<TOut*>(out.data), vocab,
          d);
    };
    if (dt_table == DType::F32 && dt_out == DType::F32) launch(Tag<float>{}, Tag<float>{});
    else if (dt_table == DType::F32) launch(Tag<float>{}, Tag<bf16>{});
    else if (dt_out == DType::F32) launch(Tag<bf16>{}, Tag<float>{});
    else launch(Tag<bf16>{}, Tag<bf16>{});
  });
  DYT_CUDA_CHECK_LAUNCH();
}

size_t embedding_backward_workspace_bytes(int64_t n_tokens) {
  return n_tokens <= 0 ? 0 : static_cast<size_t>(detail::pow2_at_least(n_tokens)) * sizeof(uint64_t);
}

void embedding_backward(const Tensor& tokens, const Tensor& dout, const Tensor& dtable,
                        cudaStream_t stream, const Workspace* ws) {
  using namespace detail;
  const char* op = "embedding_backward";
  require_tokens(op, tokens);
  require(dtable.dtype == DType::F32, op,
          std::string("dtable must be F32, not ") + kernels::dtype_name(dtable.dtype));
  require(dtable.device == kernels::Device::CUDA, op, "dtable must be a CUDA tensor");
  require_table(op, "dtable", dtable);
  require(dtable.data != nullptr || dtable.numel() == 0, op, "dtable has no data");
  const int64_t vocab = dtable.shape[0], d = dtable.shape[1], n = tokens.numel();
  const DType dt = act_dtype(op, "dout", dout);
  require_act(op, "dout", dout, dt, n, d);
  if (n == 0 || d == 0) return;
  const int64_t n2 = pow2_at_least(n);
  uint64_t* keys =
      static_cast<uint64_t*>(workspace(op, embedding_backward_workspace_bytes(n), stream, ws));

  make_keys_kernel<<<static_cast<unsigned>(ceil_div(n2, 256)), 256, 0, stream>>>(
      tokens.i32(), n, n2, vocab, keys);
  DYT_CUDA_CHECK_LAUNCH();
  const int tile = static_cast<int>(std::min<int64_t>(n2, kSortTile));
  const unsigned tiles = static_cast<unsigned>(n2 / tile);
  sort_tile_kernel<<<tiles, tile / 2, 0, stream>>>(keys, tile, 0);
  DYT_CUDA_CHECK_LAUNCH();
  for (int64_t k = 2 * int64_t{tile}; k <= n2; k <<= 1) {
    for (int64_t j = k / 2; j >= tile; j >>= 1) {
      const int64_t pairs = n2 / 2;
      sort_stage_kernel<<<static_cast<unsigned>(ceil_div(pairs, 256)), 256, 0, stream>>>(
          keys, pairs, k, j);
      DYT_CUDA_CHECK_LAUNCH();
    }
    sort_tile_kernel<<<tiles, tile / 2, 0, stream>>>(keys, tile, k);
    DYT_CUDA_CHECK_LAUNCH();
  }

  const bool vec4 = vec4_ok(d, dout.data, dt, dtable.data, DType::F32);
  dispatch_vec(vec4, [&](auto vec) {
    constexpr int VEC = decltype(vec)::value;
    const int64_t nvec = ceil_div(d, VEC);
    const int tx = std::min(128, round32(nvec));
    const dim3 grid(static_cast<unsigned>(n), static_cast<unsigned>(ceil_div(nvec, tx)));
    if (dt == DType::F32)
      embedding_backward_kernel<float, VEC><<<grid, tx, 0, stream>>>(keys, n, dout.f32(),
                                                                     dtable.f32(), d);
    else
      embedding_backward_kernel<bf16, VEC><<<grid, tx, 0, stream>>>(
          keys, n, static_cast<const bf16*>(dout.data), dtable.f32(), d);
  });
  DYT_CUDA_CHECK_LAUNCH();
}

}  // namespace dyt::cuda
