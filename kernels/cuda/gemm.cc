// The linear layers' GEMMs through cuBLASLt (gemm.h). Host code: compiled by
// the host compiler and linked against libcublasLt, or, in the emulator
// build, against the host stand-in tests/kernels/cuda/emu/cublaslt_emu.cc.
//
// Row-major to column-major. cuBLASLt is column-major: a row-major [R, C]
// matrix is, read column-major, its transpose [C, R] with leading dimension C.
// So each op is written for the transposes (docs/cuda_kernels.md, "GEMM"):
//
//   forward          yᵀ[out,N]  = (Wᵀ[in,out])ᵀ · xᵀ[in,N]    A = W (op T), B = x (op N)
//   backward input   dxᵀ[in,N]  = Wᵀ[in,out] · dyᵀ[out,N]      A = W (op N), B = dy (op N)
//   backward weight  dWᵀ[in,out] += xᵀ[in,N] · (dyᵀ[out,N])ᵀ  A = x (op N), B = dy (op T)
//
// where every matrix is the tensor's own memory, unmoved, with leading
// dimension its row width.
#include "kernels/cuda/gemm.h"

#include <cublasLt.h>

#include <algorithm>
#include <array>
#include <map>
#include <mutex>
#include <utility>

#include "kernels/cuda/detail.h"

namespace dyt::cuda {

namespace {

using detail::require;
using kernels::dtype_name;

// One operand as cuBLASLt sees it: column-major rows × cols, leading dimension ld.
struct Operand {
  const void* ptr = nullptr;
  DType dtype = DType::F32;
  int64_t rows = 0, cols = 0, ld = 0;
};

// D = op(A)·op(B) (+ D when accumulating): op(A) is m×k, op(B) k×n, D m×n.
// C is D itself (same pointer and layout), read only when accumulating.
struct Problem {
  const char* op = "";
  // The op's own arguments, named, for messages (formatted only on failure).
  std::array<std::pair<const char*, const Tensor*>, 3> args{};
  cublasOperation_t transa = CUBLAS_OP_N, transb = CUBLAS_OP_N;
  int64_t m = 0, n = 0, k = 0;
  Operand a, b, d;
  bool accumulate = false;
};

cudaDataType_t cuda_type(DType t) { return t == DType::BF16 ? CUDA_R_16BF : CUDA_R_32F; }

// The largest power of two (at most 256, cuBLASLt's default assumption)
// dividing the address: what we may promise the heuristic.
uint32_t alignment(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  uint32_t al = 256;
  while (al > 1 && a % al != 0) al >>= 1;
  return al;
}

// Operands in F32 must reach the math units as fp32: no TF32, no bf16/fp16
// (cuBLAS's BF16x9 emulation included), no 8-bit. CUBLAS_COMPUTE_32F already
// excludes TF32 (only the *_FAST_* compute types allow it); this filter makes
// the heuristic refuse any algorithm that reports such a down-conversion.
constexpr uint64_t kDownConvertedInputs =
    CUBLASLT_NUMERICAL_IMPL_FLAGS_INPUT_TF32 | CUBLASLT_NUMERICAL_IMPL_FLAGS_INPUT_16F |
    CUBLASLT_NUMERICAL_IMPL_FLAGS_INPUT_16BF | CUBLASLT_NUMERICAL_IMPL_FLAGS_INPUT_8I |
    CUBLASLT_NUMERICAL_IMPL_FLAGS_INPUT_8F_E4M3 | CUBLASLT_NUMERICAL_IMPL_FLAGS_INPUT_8F_E5M2;

// Split-K reductions allowed: COMPUTE_TYPE only, i.e. partial sums kept in fp32
// in our workspace and added by a separate kernel in a fixed order. Algorithms
// without split-K (scheme NONE) always pass the filter. INPLACE and
// OUTPUT_TYPE are excluded: both keep partial sums in the output type, which
// for BF16 outputs rounds every partial sum to 8 bits.
constexpr uint32_t kReductionSchemes = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;

constexpr uint32_t kEpilogue = CUBLASLT_EPILOGUE_DEFAULT;

// Everything the chosen algorithm may depend on.
using Key = std::array<int64_t, 17>;
Key key_of(const Problem& p) {
  return {p.transa, p.transb, p.m, p.n, p.k,
          static_cast<int64_t>(p.a.dtype), static_cast<int64_t>(p.b.dtype),
          static_cast<int64_t>(p.d.dtype), p.a.ld, p.b.ld, p.d.ld,
          alignment(p.a.ptr), alignment(p.b.ptr), alignment(p.d.ptr),
          p.accumulate, CUBLAS_COMPUTE_32F, kEpilogue};
}

std::string operand_text(const char* name, const Operand& o, cublasOperation_t op) {
  return std::string(name) + " " + dtype_name(o.dtype) + " " + std::to_string(o.rows) + "x" +
         std::to_string(o.cols) + " ld " + std::to_string(o.ld) + " aligned " +
         std::to_string(alignment(o.ptr)) + (op == CUBLAS_OP_T ? " (transposed)" : "");
}

std::string describe(const Problem& p) {
  std::string s = std::string(p.op) + "(";
  for (size_t i = 0; i < p.args.size(); ++i)
    s += (i ? ", " : "") + std::string(p.args[i].first) + " " +
         kernels::shape_text(*p.args[i].second) + " " + dtype_name(p.args[i].second->dtype);
  return s + "); cuBLASLt (column-major) D = op(A)·op(B)" + (p.accumulate ? " + D" : "") +
         " with m=" + std::to_string(p.m) + " n=" + std::to_string(p.n) +
         " k=" + std::to_string(p.k) + ", " + operand_text("A", p.a, p.transa) + ", " +
         operand_text("B", p.b, p.transb) + ", " + operand_text("C=D", p.d, CUBLAS_OP_N) +
         ", CUBLAS_COMPUTE_32F";
}

std::string status_text(cublasStatus_t s) {
  return std::string(cublasLtGetStatusName(s)) + " (" + cublasLtGetStatusString(s) + ")";
}

void check(cublasStatus_t s, const char* call, const std::string& context) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw CublasError(s, context + ": " + call + " failed: " + status_text(s));
}

// The descriptors and the algorithm of one problem, made once.
struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  size_t workspace = 0;

  void destroy() {
    if (d) cublasLtMatrixLayoutDestroy(d);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (desc) cublasLtMatmulDescDestroy(desc);
    *this = Plan{};
  }
};

// ---- argument checks ---------------------------------------------------------------

void require_cuda(const char* op, const char* name, const Tensor& t) {
  require(t.device == kernels::Device::CUDA, op, std::string(name) + " must be a CUDA tensor");
  require(t.data != nullptr || t.numel() == 0, op, std::string(name) + " has no data");
}

// A rank-2 [out, in] matrix of dtype dt; returns {out, in}.
std::pair<int64_t, int64_t> require_matrix(const char* op, const char* name, const Tensor& t,
                                           DType dt) {
  require(t.dtype == dt, op,
          std::string(name) + " is " + dtype_name(t.dtype) + ", expected " + dtype_name(dt));
  require_cuda(op, name, t);
  require(t.rank == 2, op,
          std::string(name) + " must be rank 2 [out, in], got " + kernels::shape_text(t));
  return {t.shape[0], t.shape[1]};
}

// cuBLASLt's D must not overlap its inputs (nor, here, C = D overlap them).
void require_disjoint(const char* op, const char* out_name, const Tensor& out,
                      const char* in_name, const Tensor& in) {
  const auto o = reinterpret_cast<uintptr_t>(out.data), i = reinterpret_cast<uintptr_t>(in.data);
  const auto ob = static_cast<uintptr_t>(out.numel() * kernels::dtype_size(out.dtype));
  const auto ib = static_cast<uintptr_t>(in.numel() * kernels::dtype_size(in.dtype));
  require(ob == 0 || ib == 0 || o + ob <= i || i + ib <= o, op,
          std::string(out_name) + " overlaps " + in_name + " (cuBLASLt reads " + in_name +
              " while writing " + out_name + ")");
}

}  // namespace

// ---- the context -----------------------------------------------------------------------

struct Gemm::Impl {
  cudaStream_t stream = nullptr;
  int device = 0;
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  std::mutex mu;
  std::map<Key, Plan> plans;
  GemmStats stats;

  ~Impl() {
    for (auto& [key, plan] : plans) plan.destroy();
    if (workspace) cudaFree(workspace);
    if (handle) cublasLtDestroy(handle);
  }

  // The plan of p: made (one heuristic query) the first time, reused after.
  const Plan& plan_for(const Problem& p);
  void run(const Problem& p);
  void check_device(const char* op) const {
    const int now = detail::current_device();
    require(now == device, op,
            "device " + std::to_string(now) + " is current, but this Gemm was made on device " +
                std::to_string(device));
  }
};

const Plan& Gemm::Impl::plan_for(const Problem& p) {
  const Key key = key_of(p);
  if (auto it = plans.find(key); it != plans.end()) {
    ++stats.cache_hits;
    return it->second;
  }
  ++stats.heuristic_queries;
  const std::string context = describe(p);
  Plan plan;
  cublasLtMatmulPreference_t pref = nullptr;
  try {
    check(cublasLtMatmulDescCreate(&plan.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F),
          "cublasLtMatmulDescCreate", context);
    const int32_t ta = p.transa, tb = p.transb;
    const uint32_t epilogue = kEpilogue;
    check(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta),
          "cublasLtMatmulDescSetAttribute(TRANSA)", context);
    check(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb),
          "cublasLtMatmulDescSetAttribute(TRANSB)", context);
    check(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                         sizeof epilogue),
          "cublasLtMatmulDescSetAttribute(EPILOGUE)", context);
    auto layout = [&](cublasLtMatrixLayout_t* l, const Operand& o, const char* call) {
      check(cublasLtMatrixLayoutCreate(l, cuda_type(o.dtype), static_cast<uint64_t>(o.rows),
                                       static_cast<uint64_t>(o.cols), o.ld),
            call, context);
    };
    layout(&plan.a, p.a, "cublasLtMatrixLayoutCreate(A)");
    layout(&plan.b, p.b, "cublasLtMatrixLayoutCreate(B)");
    layout(&plan.d, p.d, "cublasLtMatrixLayoutCreate(C=D)");

    check(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate", context);
    auto set_pref = [&](cublasLtMatmulPreferenceAttributes_t attr, const auto& value,
                        const char* call) {
      check(cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof value), call, context);
    };
    const uint64_t ws = workspace_bytes;
    set_pref(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, ws,
             "cublasLtMatmulPreferenceSetAttribute(MAX_WORKSPACE_BYTES)");
    set_pref(CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, kReductionSchemes,
             "cublasLtMatmulPreferenceSetAttribute(REDUCTION_SCHEME_MASK)");
    // The alignments we can promise (the default promise is 256 bytes).
    const uint32_t al_a = alignment(p.a.ptr), al_b = alignment(p.b.ptr), al_d = alignment(p.d.ptr);
    set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, al_a,
             "cublasLtMatmulPreferenceSetAttribute(MIN_ALIGNMENT_A_BYTES)");
    set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, al_b,
             "cublasLtMatmulPreferenceSetAttribute(MIN_ALIGNMENT_B_BYTES)");
    set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, al_d,
             "cublasLtMatmulPreferenceSetAttribute(MIN_ALIGNMENT_C_BYTES)");
    set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, al_d,
             "cublasLtMatmulPreferenceSetAttribute(MIN_ALIGNMENT_D_BYTES)");
    if (p.a.dtype == DType::F32) {
      const uint64_t impl = ~kDownConvertedInputs;
      set_pref(CUBLASLT_MATMUL_PREF_IMPL_MASK, impl,
               "cublasLtMatmulPreferenceSetAttribute(IMPL_MASK)");
    }

    cublasLtMatmulHeuristicResult_t result{};
    int count = 0;
    const cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(
        handle, plan.desc, plan.a, plan.b, plan.d, plan.d, pref, 1, &result, &count);
    if (hs != CUBLAS_STATUS_SUCCESS || count < 1 || result.state != CUBLAS_STATUS_SUCCESS) {
      const cublasStatus_t s = hs != CUBLAS_STATUS_SUCCESS ? hs
                               : count < 1                 ? CUBLAS_STATUS_NOT_SUPPORTED
                                                           : result.state;
      throw CublasError(s, context + ": cublasLtMatmulAlgoGetHeuristic found no algorithm (" +
                               status_text(s) + ", " + std::to_string(count) +
                               " returned) for this shape, these dtypes, leading dimensions and "
                               "alignments, with at most " + std::to_string(workspace_bytes) +
                               " bytes of workspace and no split-K reduction other than in fp32");
    }
    if (result.workspaceSize > workspace_bytes)
      throw CublasError(CUBLAS_STATUS_INTERNAL_ERROR,
                        context + ": the chosen algorithm wants " +
                            std::to_string(result.workspaceSize) + " bytes of workspace, above the " +
                            std::to_string(workspace_bytes) + " allowed");
    plan.algo = result.algo;
    plan.workspace = result.workspaceSize;
    cublasLtMatmulPreferenceDestroy(pref);
  } catch (...) {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    plan.destroy();
    throw;
  }
  return plans.emplace(key, plan).first->second;
}

void Gemm::Impl::run(const Problem& p) {
  // Nothing to compute. k = 0 with a non-empty output cannot reach here: the
  // checks make N = 0 when in = 0 (forward) or out = 0 (backward input), and
  // the weight gradient adds nothing when N = 0.
  if (p.m == 0 || p.n == 0 || p.k == 0) return;
  check_device(p.op);
  std::lock_guard<std::mutex> lock(mu);
  const Plan& plan = plan_for(p);
  const float alpha = 1.0f, beta = p.accumulate ? 1.0f : 0.0f;
  ++stats.matmuls;
  const cublasStatus_t s =
      cublasLtMatmul(handle, plan.desc, &alpha, p.a.ptr, plan.a, p.b.ptr, plan.b, &beta, p.d.ptr,
                     plan.d, const_cast<void*>(p.d.ptr), plan.d, &plan.algo, workspace,
                     workspace_bytes, stream);
  if (s != CUBLAS_STATUS_SUCCESS) check(s, "cublasLtMatmul", describe(p));
}

Gemm::Gemm(cudaStream_t stream, size_t workspace_bytes) : impl_(std::make_unique<Impl>()) {
  impl_->stream = stream;
  impl_->device = detail::current_device();
  check(cublasLtCreate(&impl_->handle), "cublasLtCreate", "Gemm");
  if (workspace_bytes > 0) {
    const cudaError_t err = cudaMalloc(&impl_->workspace, workspace_bytes);
    if (err != cudaSuccess) {
      impl_->workspace = nullptr;
      const std::string what =
          "cudaMalloc of the " + std::to_string(workspace_bytes) + "-byte cuBLASLt workspace";
      throw CudaError(err, what.c_str(), __FILE__, __LINE__);
    }
  }
  impl_->workspace_bytes = workspace_bytes;
}

Gemm::~Gemm() = default;

GemmStats Gemm::stats() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->stats;
}
cudaStream_t Gemm::stream() const { return impl_->stream; }
size_t Gemm::workspace_bytes() const { return impl_->workspace_bytes; }

// ---- the ops ---------------------------------------------------------------------------

void Gemm::linear_forward(const Tensor& x, const Tensor& w, const Tensor& y) {
  const char* op = "linear_forward";
  const DType dt = detail::act_dtype(op, "x", x);
  const auto [out, in] = require_matrix(op, "w", w, dt);
  const int64_t rows = detail::row_count(x);
  detail::require_act(op, "x", x, dt, rows, in);
  detail::require_act(op, "y", y, dt, rows, out);
  require_disjoint(op, "y", y, "x", x);
  require_disjoint(op, "y", y, "w", w);
  Problem p;
  p.op = op;
  p.args = {{{"x", &x}, {"w", &w}, {"y", &y}}};
  p.transa = CUBLAS_OP_T;
  p.transb = CUBLAS_OP_N;
  p.m = out, p.n = rows, p.k = in;
  p.a = {w.data, dt, in, out, in};
  p.b = {x.data, dt, in, rows, in};
  p.d = {y.data, dt, out, rows, out};
  impl_->run(p);
}

void Gemm::linear_backward_input(const Tensor& dy, const Tensor& w, const Tensor& dx,
                                 bool accumulate) {
  const char* op = "linear_backward_input";
  const DType dt = detail::act_dtype(op, "dy", dy);
  const auto [out, in] = require_matrix(op, "w", w, dt);
  const int64_t rows = detail::row_count(dy);
  detail::require_act(op, "dy", dy, dt, rows, out);
  detail::require_act(op, "dx", dx, dt, rows, in);
  require_disjoint(op, "dx", dx, "dy", dy);
  require_disjoint(op, "dx", dx, "w", w);
  Problem p;
  p.op = op;
  p.args = {{{"dy", &dy}, {"w", &w}, {"dx", &dx}}};
  p.transa = CUBLAS_OP_N;
  p.transb = CUBLAS_OP_N;
  p.m = in, p.n = rows, p.k = out;
  p.a = {w.data, dt, in, out, in};
  p.b = {dy.data, dt, out, rows, out};
  p.d = {dx.data, dt, in, rows, in};
  p.accumulate = accumulate;
  impl_->run(p);
}

void Gemm::linear_backward_weight(const Tensor& dy, const Tensor& x, const Tensor& dw) {
  const char* op = "linear_backward_weight";
  const DType dt = detail::act_dtype(op, "dy", dy);
  const auto [out, in] = require_matrix(op, "dw", dw, DType::F32);
  const int64_t rows = detail::row_count(dy);
  detail::require_act(op, "dy", dy, dt, rows, out);
  detail::require_act(op, "x", x, dt, rows, in);
  require_disjoint(op, "dw", dw, "dy", dy);
  require_disjoint(op, "dw", dw, "x", x);
  Problem p;
  p.op = op;
  p.args = {{{"dy", &dy}, {"x", &x}, {"dw", &dw}}};
  p.transa = CUBLAS_OP_N;
  p.transb = CUBLAS_OP_T;
  p.m = in, p.n = out, p.k = rows;
  p.a = {x.data, dt, in, rows, in};
  p.b = {dy.data, dt, out, rows, out};
  p.d = {dw.data, DType::F32, in, out, in};
  p.accumulate = true;
  impl_->run(p);
}

}  // namespace dyt::cuda
