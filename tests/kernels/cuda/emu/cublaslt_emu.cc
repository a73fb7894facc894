// A host stand-in for the subset of cuBLASLt that kernels/cuda/gemm.cc calls,
// linked instead of libcublasLt in the emulator build, so that CI (no GPU)
// runs the same calling code: descriptors, layouts, preferences, the
// heuristic query, and cublasLtMatmul with the documented semantics
//
//   D = alpha·op(A)·op(B) + beta·C          (C not read when beta = 0)
//
// on column-major matrices of the emulator's device memory (host memory,
// emu_runtime.cc). What it models, and what it cannot: docs/cuda_kernels.md,
// "GEMM", "The cuBLASLt stand-in". In short:
//  * layouts: type, rows, cols, ld (column-major; ld < rows rejected), op(A)
//    and op(B) by TRANSA/TRANSB, dims of op(A) m×k, op(B) k×n, C and D m×n
//    checked (CUBLAS_STATUS_INVALID_VALUE otherwise);
//  * types: CUBLAS_COMPUTE_32F with scale type CUDA_R_32F, A and B both
//    CUDA_R_32F (then C = D = CUDA_R_32F) or both CUDA_R_16BF (C = D of
//    CUDA_R_16BF or CUDA_R_32F), the combinations cuBLASLt lists for that
//    compute type; anything else is CUBLAS_STATUS_NOT_SUPPORTED;
//  * arithmetic: each element's dot product accumulated in fp32 (fmaf, k in
//    order), then alpha·acc + beta·C in fp32, then rounded once to D's type
//    (bf16: round to nearest even). bf16 operands are exact in fp32, so
//    products are exact before the fp32 sum, as on the tensor cores;
//  * C == D in place (their layouts must then be the same); out of place,
//    C and D must agree in type and dims, ld may differ;
//  * epilogue DEFAULT only, host pointer mode only;
//  * the heuristic returns one algorithm, or none when the preference's
//    IMPL_MASK excludes its numerics (fp32 FMA for F32 operands, bf16 matrix
//    units for BF16); its workspace need is min(MAX_WORKSPACE_BYTES, 1 MiB),
//    and cublasLtMatmul refuses a smaller workspace as cuBLASLt does, then
//    scribbles over the part it "used";
//  * stricter than documented: a pointer less aligned than the preference's
//    MIN_ALIGNMENT promised for that algorithm is refused (cuBLASLt may run
//    it or fault; the kernels the heuristic picked assumed the promise), and
//    every matrix must lie in one live emulator allocation (else abort, as
//    the emulator does for kernel arguments).
// Execution is synchronous; the stream is ignored.
//
// Planted faults, to show the GEMM tests' bounds reject them (CTest's
// kernels.cuda_emu.gemm_fault_*): $DYT_CUBLASLT_EMU_FAULT=
//   tf32          F32 operands rounded to TF32 (10-bit mantissa) before use
//   bf16_partial  for bf16 outputs, the running sum rounded to bf16 once,
//                 halfway through k (a bf16 intermediate)
//   read_c        C read (and multiplied by beta) even when beta = 0
#include <cublasLt.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "tests/kernels/cuda/emu/emu.h"

namespace {

enum class Fault { kNone, kTf32, kBf16Partial, kReadC };
Fault fault() {
  static const Fault f = [] {
    const char* e = std::getenv("DYT_CUBLASLT_EMU_FAULT");
    if (!e || !*e) return Fault::kNone;
    const std::string v = e;
    if (v == "tf32") return Fault::kTf32;
    if (v == "bf16_partial") return Fault::kBf16Partial;
    if (v == "read_c") return Fault::kReadC;
    std::fprintf(stderr, "cublaslt_emu: DYT_CUBLASLT_EMU_FAULT=%s: expected tf32, bf16_partial or read_c\n", e);
    std::exit(2);
  }();
  return f;
}

constexpr uint64_t kAlgoMagic = 0x656d752d6c742d31ull;  // "emu-lt-1"
constexpr size_t kWorkspaceNeed = size_t{1} << 20;

struct Context {
  bool live = true;
};
struct Desc {
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  cudaDataType_t scale = CUDA_R_32F;
  int32_t transa = CUBLAS_OP_N, transb = CUBLAS_OP_N;
  uint32_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  int32_t pointer_mode = CUBLASLT_POINTER_MODE_HOST;
};
struct Layout {
  cudaDataType_t type = CUDA_R_32F;
  uint64_t rows = 0, cols = 0;
  int64_t ld = 0;
  bool operator==(const Layout& o) const {
    return type == o.type && rows == o.rows && cols == o.cols && ld == o.ld;
  }
};
struct Pref {
  uint64_t max_workspace = 0;
  uint32_t reduction_mask = CUBLASLT_REDUCTION_SCHEME_MASK;
  uint32_t min_align[4] = {256, 256, 256, 256};  // A, B, C, D
  uint64_t impl_mask = ~uint64_t{0};
};

// The opaque handles point at these; the caller never dereferences them.
template <class T, class H>
T* as(H h) {
  return reinterpret_cast<T*>(h);
}

template <class T>
cublasStatus_t set_value(T& field, const void* buf, size_t size) {
  if (!buf || size != sizeof(T)) return CUBLAS_STATUS_INVALID_VALUE;
  std::memcpy(&field, buf, sizeof(T));
  return CUBLAS_STATUS_SUCCESS;
}

bool is_bf16(cudaDataType_t t) { return t == CUDA_R_16BF; }
size_t type_size(cudaDataType_t t) { return is_bf16(t) ? 2 : 4; }

// The A/B/C/D type combinations cuBLASLt documents for CUBLAS_COMPUTE_32F
// with a CUDA_R_32F scale type that this stand-in implements.
bool types_supported(const Desc& d, const Layout& a, const Layout& b, const Layout& c,
                     const Layout& dd) {
  if (d.compute != CUBLAS_COMPUTE_32F || d.scale != CUDA_R_32F) return false;
  if (a.type != b.type || c.type != dd.type) return false;
  if (a.type == CUDA_R_32F) return dd.type == CUDA_R_32F;
  if (a.type == CUDA_R_16BF) return dd.type == CUDA_R_16BF || dd.type == CUDA_R_32F;
  return false;
}

// op(X)'s rows and cols.
void op_dims(const Layout& l, int32_t op, uint64_t* r, uint64_t* c) {
  *r = op == CUBLAS_OP_N ? l.rows : l.cols;
  *c = op == CUBLAS_OP_N ? l.cols : l.rows;
}

// What cublasLtMatmul and the heuristic both refuse: INVALID_VALUE for
// conflicting dims or leading dimensions, NOT_SUPPORTED for what is not
// modeled. m, n, k are op(A)'s rows, op(B)'s cols and the shared dimension.
cublasStatus_t validate(const Desc& d, const Layout& a, const Layout& b, const Layout& c,
                        const Layout& dd, uint64_t* m, uint64_t* n, uint64_t* k) {
  for (int32_t t : {d.transa, d.transb})
    if (t != CUBLAS_OP_N && t != CUBLAS_OP_T) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (d.epilogue != CUBLASLT_EPILOGUE_DEFAULT || d.pointer_mode != CUBLASLT_POINTER_MODE_HOST)
    return CUBLAS_STATUS_NOT_SUPPORTED;
  for (const Layout* l : {&a, &b, &c, &dd})
    if (l->ld < 1 || static_cast<uint64_t>(l->ld) < l->rows) return CUBLAS_STATUS_INVALID_VALUE;
  uint64_t am, ak, bk, bn;
  op_dims(a, d.transa, &am, &ak);
  op_dims(b, d.transb, &bk, &bn);
  if (ak != bk || c.rows != am || c.cols != bn || dd.rows != am || dd.cols != bn)
    return CUBLAS_STATUS_INVALID_VALUE;
  if (!types_supported(d, a, b, c, dd)) return CUBLAS_STATUS_NOT_SUPPORTED;
  *m = am, *n = bn, *k = ak;
  return CUBLAS_STATUS_SUCCESS;
}

// The numerics the one algorithm reports (cublasLtNumericalImplFlags_t).
uint64_t impl_flags(const Layout& a) {
  return is_bf16(a.type) ? CUBLASLT_NUMERICAL_IMPL_FLAGS_HMMA |
                               CUBLASLT_NUMERICAL_IMPL_FLAGS_ACCUMULATOR_32F |
                               CUBLASLT_NUMERICAL_IMPL_FLAGS_INPUT_16BF
                         : CUBLASLT_NUMERICAL_IMPL_FLAGS_FMA |
                               CUBLASLT_NUMERICAL_IMPL_FLAGS_ACCUMULATOR_32F |
                               CUBLASLT_NUMERICAL_IMPL_FLAGS_INPUT_32F;
}

float load(const void* p, cudaDataType_t t, uint64_t i) {
  if (is_bf16(t)) {
    uint16_t h;
    std::memcpy(&h, static_cast<const char*>(p) + 2 * i, 2);
    const uint32_t u = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  float f;
  std::memcpy(&f, static_cast<const char*>(p) + 4 * i, 4);
  return f;
}

// The planted TF32 fault: keep 10 explicit mantissa bits, round to nearest.
float tf32(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  u = (u + 0x1000u) & ~0x1fffu;
  std::memcpy(&v, &u, 4);
  return v;
}

void store(void* p, cudaDataType_t t, uint64_t i, float v) {
  if (is_bf16(t)) {
    uint32_t u;
    std::memcpy(&u, &v, 4);
    uint16_t h;
    if ((u & 0x7fffffffu) > 0x7f800000u) h = 0x7fc0;  // NaN stays NaN
    else h = static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);  // nearest even
    std::memcpy(static_cast<char*>(p) + 2 * i, &h, 2);
    return;
  }
  std::memcpy(static_cast<char*>(p) + 4 * i, &v, 4);
}

// The value rounded as `t` stores it (bf16: nearest even) and read back.
float rounded(cudaDataType_t t, float v) {
  char buf[4];
  store(buf, t, 0, v);
  return load(buf, t, 0);
}

// Bytes from a matrix's first element to one past its last.
size_t extent(const Layout& l) {
  if (l.rows == 0 || l.cols == 0) return 0;
  return ((l.cols - 1) * static_cast<uint64_t>(l.ld) + l.rows) * type_size(l.type);
}

// Aborts (as the emulator does for kernel arguments) unless the first and the
// last byte of [p, p + bytes) lie in live emulator allocations (the guard
// pages between allocations fault on anything in between). `index` is the
// argument's place in the message: A 0, B 1, C 2, D 3, workspace 4.
void check_range(int index, const void* p, size_t bytes) {
  if (bytes == 0) return;
  emu::check_device_pointer("cublaslt_emu", "cublasLtMatmul", index, p);
  emu::check_device_pointer("cublaslt_emu", "cublasLtMatmul", index,
                            static_cast<const char*>(p) + bytes - 1);
}

uint32_t alignment_of(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  uint32_t al = 256;
  while (al > 1 && a % al != 0) al >>= 1;
  return al;
}

}  // namespace

extern "C" {

cublasStatus_t cublasLtCreate(cublasLtHandle_t* handle) {
  if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
  *handle = reinterpret_cast<cublasLtHandle_t>(new Context);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  delete as<Context>(handle);
  return CUBLAS_STATUS_SUCCESS;
}

const char* cublasLtGetStatusName(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_UNKNOWN";
  }
}
const char* cublasLtGetStatusString(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "success (host stand-in)";
    case CUBLAS_STATUS_INVALID_VALUE: return "invalid value (host stand-in)";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "not supported (host stand-in)";
    default: return "error (host stand-in)";
  }
}

// ---- descriptors -------------------------------------------------------------------------

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* desc, cublasComputeType_t compute,
                                        cudaDataType_t scale) {
  if (!desc) return CUBLAS_STATUS_INVALID_VALUE;
  Desc* d = new Desc;
  d->compute = compute;
  d->scale = scale;
  *desc = reinterpret_cast<cublasLtMatmulDesc_t>(d);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc) {
  delete as<Desc>(desc);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc,
                                              cublasLtMatmulDescAttributes_t attr,
                                              const void* buf, size_t size) {
  if (!desc) return CUBLAS_STATUS_NOT_INITIALIZED;
  Desc& d = *as<Desc>(desc);
  switch (attr) {
    case CUBLASLT_MATMUL_DESC_COMPUTE_TYPE: return set_value(d.compute, buf, size);
    case CUBLASLT_MATMUL_DESC_SCALE_TYPE: return set_value(d.scale, buf, size);
    case CUBLASLT_MATMUL_DESC_POINTER_MODE: return set_value(d.pointer_mode, buf, size);
    case CUBLASLT_MATMUL_DESC_TRANSA: return set_value(d.transa, buf, size);
    case CUBLASLT_MATMUL_DESC_TRANSB: return set_value(d.transb, buf, size);
    case CUBLASLT_MATMUL_DESC_EPILOGUE: return set_value(d.epilogue, buf, size);
    default:
      std::fprintf(stderr, "cublaslt_emu: matmul descriptor attribute %d is not modeled\n",
                   static_cast<int>(attr));
      return CUBLAS_STATUS_NOT_SUPPORTED;
  }
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* layout, cudaDataType type,
                                          uint64_t rows, uint64_t cols, int64_t ld) {
  if (!layout) return CUBLAS_STATUS_INVALID_VALUE;
  *layout = reinterpret_cast<cublasLtMatrixLayout_t>(new Layout{type, rows, cols, ld});
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout) {
  delete as<Layout>(layout);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* pref) {
  if (!pref) return CUBLAS_STATUS_INVALID_VALUE;
  *pref = reinterpret_cast<cublasLtMatmulPreference_t>(new Pref);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
  delete as<Pref>(pref);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr,
                                                    const void* buf, size_t size) {
  if (!pref) return CUBLAS_STATUS_NOT_INITIALIZED;
  Pref& p = *as<Pref>(pref);
  switch (attr) {
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES: return set_value(p.max_workspace, buf, size);
    case CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK: return set_value(p.reduction_mask, buf, size);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES: return set_value(p.min_align[0], buf, size);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES: return set_value(p.min_align[1], buf, size);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES: return set_value(p.min_align[2], buf, size);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES: return set_value(p.min_align[3], buf, size);
    case CUBLASLT_MATMUL_PREF_IMPL_MASK: return set_value(p.impl_mask, buf, size);
    default:
      std::fprintf(stderr, "cublaslt_emu: preference attribute %d is not modeled\n",
                   static_cast<int>(attr));
      return CUBLAS_STATUS_NOT_SUPPORTED;
  }
}

// ---- the heuristic: one algorithm, its data the promises it was chosen under ----

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t handle,
                                              cublasLtMatmulDesc_t desc,
                                              cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                              cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
                                              cublasLtMatmulPreference_t pref, int requested,
                                              cublasLtMatmulHeuristicResult_t results[],
                                              int* returned) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!desc || !a || !b || !c || !d || !pref || !results || !returned || requested <= 0)
    return CUBLAS_STATUS_INVALID_VALUE;
  *returned = 0;
  uint64_t m, n, k;
  const cublasStatus_t v = validate(*as<Desc>(desc), *as<Layout>(a), *as<Layout>(b),
                                    *as<Layout>(c), *as<Layout>(d), &m, &n, &k);
  if (v != CUBLAS_STATUS_SUCCESS) return v;
  const Pref& p = *as<Pref>(pref);
  // Its one algorithm reduces without split-K (scheme NONE), which every
  // reduction mask admits; the numerics mask may exclude it.
  if ((impl_flags(*as<Layout>(a)) & ~p.impl_mask) != 0) return CUBLAS_STATUS_NOT_SUPPORTED;
  cublasLtMatmulHeuristicResult_t& r = results[0];
  std::memset(&r, 0, sizeof r);
  r.algo.data[0] = kAlgoMagic;
  for (int i = 0; i < 4; ++i) r.algo.data[1 + i] = p.min_align[i];
  r.workspaceSize = std::min<uint64_t>(p.max_workspace, kWorkspaceNeed);
  r.algo.data[5] = r.workspaceSize;
  r.state = CUBLAS_STATUS_SUCCESS;
  r.wavesCount = 1.0f;
  *returned = 1;
  return CUBLAS_STATUS_SUCCESS;
}

// ---- the product ---------------------------------------------------------------------------

cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                              const void* alpha_p, const void* A, cublasLtMatrixLayout_t a_desc,
                              const void* B, cublasLtMatrixLayout_t b_desc, const void* beta_p,
                              const void* C, cublasLtMatrixLayout_t c_desc, void* D,
                              cublasLtMatrixLayout_t d_desc, const cublasLtMatmulAlgo_t* algo,
                              void* workspace, size_t workspace_bytes, cudaStream_t) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!desc || !a_desc || !b_desc || !c_desc || !d_desc || !alpha_p || !beta_p)
    return CUBLAS_STATUS_INVALID_VALUE;
  const Desc& dsc = *as<Desc>(desc);
  const Layout &la = *as<Layout>(a_desc), &lb = *as<Layout>(b_desc), &lc = *as<Layout>(c_desc),
               &ld = *as<Layout>(d_desc);
  uint64_t m, n, k;
  const cublasStatus_t v = validate(dsc, la, lb, lc, ld, &m, &n, &k);
  if (v != CUBLAS_STATUS_SUCCESS) return v;
  // gemm.cc always passes an algorithm from the heuristic; so must callers here.
  if (!algo || algo->data[0] != kAlgoMagic) return CUBLAS_STATUS_INVALID_VALUE;
  if (C == D && !(lc == ld)) return CUBLAS_STATUS_INVALID_VALUE;  // in place: one layout
  const float alpha = *static_cast<const float*>(alpha_p);
  const float beta = *static_cast<const float*>(beta_p);
  const void* ptrs[4] = {A, B, C, D};
  for (int i = 0; i < 4; ++i)
    if (i != 2 || beta != 0.0f)  // C's promise matters only when C is read
      if (alignment_of(ptrs[i]) < algo->data[1 + i]) return CUBLAS_STATUS_INVALID_VALUE;
  const size_t need = algo->data[5];
  if (workspace_bytes < need || (need > 0 && !workspace)) return CUBLAS_STATUS_INVALID_VALUE;
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  check_range(0, A, extent(la));
  check_range(1, B, extent(lb));
  if (beta != 0.0f) check_range(2, C, extent(lc));
  check_range(3, D, extent(ld));
  check_range(4, workspace, need);

  // op(A)(i, l) and op(B)(l, j) in column-major storage.
  const uint64_t lda = la.ld, ldb = lb.ld;
  const Fault planted = fault();
  const bool to_tf32 = planted == Fault::kTf32 && la.type == CUDA_R_32F;
  auto a_at = [&](uint64_t i, uint64_t l) {
    const float v = dsc.transa == CUBLAS_OP_N ? load(A, la.type, i + l * lda)
                                              : load(A, la.type, l + i * lda);
    return to_tf32 ? tf32(v) : v;
  };
  auto b_at = [&](uint64_t l, uint64_t j) {
    const float v = dsc.transb == CUBLAS_OP_N ? load(B, lb.type, l + j * ldb)
                                              : load(B, lb.type, j + l * ldb);
    return to_tf32 ? tf32(v) : v;
  };
  const bool bf16_partial = planted == Fault::kBf16Partial && is_bf16(ld.type);
  const bool read_c = beta != 0.0f || planted == Fault::kReadC;
  // The whole result first, so an in-place C == D is read before it is written.
  std::vector<float> out(m * n);
  for (uint64_t j = 0; j < n; ++j)
    for (uint64_t i = 0; i < m; ++i) {
      float acc = 0.0f;
      for (uint64_t l = 0; l < k; ++l) {
        acc = std::fmaf(a_at(i, l), b_at(l, j), acc);
        if (bf16_partial && l == k / 2) acc = rounded(CUDA_R_16BF, acc);
      }
      float r = alpha * acc;
      if (read_c) r = std::fmaf(beta, load(C, lc.type, i + j * lc.ld), r);
      out[i + j * m] = r;
    }
  if (need > 0) std::memset(workspace, 0xa5, need);  // cuBLASLt's scratch: contents undefined
  for (uint64_t j = 0; j < n; ++j)
    for (uint64_t i = 0; i < m; ++i) store(D, ld.type, i + j * ld.ld, out[i + j * m]);
  return CUBLAS_STATUS_SUCCESS;
}

}  // extern "C"
