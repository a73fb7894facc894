// The cuBLASLt stand-in (cublaslt_emu.cc) on hand-checkable products, through
// the raw cuBLASLt API: column-major layouts with ld > rows, both transposes,
// beta·C in and out of place, beta = 0 not reading C, bf16 operands with fp32
// and bf16 outputs (round to nearest even), and the rejections that matter.
// Built twice: against the stand-in (test_cublaslt_emu) and against the real
// libcublasLt (test_cublaslt_real, skipped without a GPU), so a GPU run
// checks that the stand-in models the library. Status codes of rejections
// are checked exactly for the stand-in, as "not success" for the library.
#include <cublasLt.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "tests/kernels/cuda/cuda_test_util.h"

namespace dyt::cuda_test {
namespace {

#ifdef DYT_CUDA_EMU
constexpr bool kStandIn = true;
#else
constexpr bool kStandIn = false;
#endif

// Owns the handle and the descriptors of one problem.
struct Lt {
  cublasLtHandle_t handle = nullptr;
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr, d = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  cublasLtMatmulHeuristicResult_t result{};
  DevBuf ws{size_t{1} << 20, DType::F32};  // 4 MiB

  Lt() { EXPECT_EQ(cublasLtCreate(&handle), CUBLAS_STATUS_SUCCESS); }
  ~Lt() {
    for (auto* l : {a, b, c, d})
      if (l) cublasLtMatrixLayoutDestroy(l);
    if (desc) cublasLtMatmulDescDestroy(desc);
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    cublasLtDestroy(handle);
  }
  // D = op(A)·op(B) + beta·C: A, B of type ab, C and D of type cd.
  void describe(cublasOperation_t ta, cublasOperation_t tb, cudaDataType_t ab, cudaDataType_t cd,
                uint64_t ar, uint64_t ac, int64_t lda, uint64_t br, uint64_t bc, int64_t ldb,
                uint64_t m, uint64_t n, int64_t ldc, int64_t ldd) {
    ASSERT_EQ(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), CUBLAS_STATUS_SUCCESS);
    const int32_t a_op = ta, b_op = tb;
    ASSERT_EQ(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &a_op, sizeof a_op),
              CUBLAS_STATUS_SUCCESS);
    ASSERT_EQ(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &b_op, sizeof b_op),
              CUBLAS_STATUS_SUCCESS);
    ASSERT_EQ(cublasLtMatrixLayoutCreate(&a, ab, ar, ac, lda), CUBLAS_STATUS_SUCCESS);
    ASSERT_EQ(cublasLtMatrixLayoutCreate(&b, ab, br, bc, ldb), CUBLAS_STATUS_SUCCESS);
    ASSERT_EQ(cublasLtMatrixLayoutCreate(&c, cd, m, n, ldc), CUBLAS_STATUS_SUCCESS);
    ASSERT_EQ(cublasLtMatrixLayoutCreate(&d, cd, m, n, ldd), CUBLAS_STATUS_SUCCESS);
    ASSERT_EQ(cublasLtMatmulPreferenceCreate(&pref), CUBLAS_STATUS_SUCCESS);
    const uint64_t max_ws = ws.bytes();
    ASSERT_EQ(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                   &max_ws, sizeof max_ws),
              CUBLAS_STATUS_SUCCESS);
    // Small test buffers: promise only what cudaMalloc gives with offsets of 0.
    const uint32_t align = 16;
    for (auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
      ASSERT_EQ(cublasLtMatmulPreferenceSetAttribute(pref, attr, &align, sizeof align),
                CUBLAS_STATUS_SUCCESS);
  }
  cublasStatus_t heuristic() {
    int count = 0;
    const cublasStatus_t s =
        cublasLtMatmulAlgoGetHeuristic(handle, desc, a, b, c, d, pref, 1, &result, &count);
    if (s == CUBLAS_STATUS_SUCCESS && count < 1) return CUBLAS_STATUS_NOT_SUPPORTED;
    return s;
  }
  cublasStatus_t matmul(const DevBuf& A, const DevBuf& B, float beta, const void* C, void* D,
                        size_t ws_bytes) {
    const float alpha = 1.0f;
    const cublasStatus_t s =
        cublasLtMatmul(handle, desc, &alpha, A.data(), a, B.data(), b, &beta, C, c, D, d,
                       &result.algo, ws.data(), ws_bytes, nullptr);
    DYT_CUDA_CHECK(cudaDeviceSynchronize());
    return s;
  }
  cublasStatus_t matmul(const DevBuf& A, const DevBuf& B, float beta, const DevBuf& C, DevBuf& D) {
    return matmul(A, B, beta, C.data(), D.data(), ws.bytes());
  }
};

// Column-major storage of a rows × cols matrix with leading dimension ld;
// entries outside the matrix (the ld padding) are NaN, so reading them shows.
Vec col_major(const std::vector<std::vector<float>>& rows, int64_t ld) {
  const size_t r = rows.size(), c = rows[0].size();
  Vec v(ld * c, NAN);
  for (size_t i = 0; i < r; ++i)
    for (size_t j = 0; j < c; ++j) v[i + j * ld] = rows[i][j];
  return v;
}

// op(A) = [[1 2 3] [4 5 6]] (2×3), op(B) = [[1 0] [2 1] [-1 3]] (3×2):
// op(A)·op(B) = [[2 11] [8 23]].
const std::vector<std::vector<float>> kA = {{1, 2, 3}, {4, 5, 6}};
const std::vector<std::vector<float>> kAt = {{1, 4}, {2, 5}, {3, 6}};
const std::vector<std::vector<float>> kB = {{1, 0}, {2, 1}, {-1, 3}};
const std::vector<std::vector<float>> kBt = {{1, 2, -1}, {0, 1, 3}};
const Vec kProduct = {2, 8, 11, 23};  // column-major, ld 2

}  // namespace

TEST(CublasLtSemantics, PlainProductWithPaddedLeadingDimensions) {
  DYT_REQUIRE_CUDA();
  Lt lt;
  lt.describe(CUBLAS_OP_N, CUBLAS_OP_N, CUDA_R_32F, CUDA_R_32F, 2, 3, 4, 3, 2, 5, 2, 2, 3, 3);
  ASSERT_EQ(lt.heuristic(), CUBLAS_STATUS_SUCCESS);
  DevBuf A(col_major(kA, 4), DType::F32), B(col_major(kB, 5), DType::F32), D(6, DType::F32);
  D.poison();
  ASSERT_EQ(lt.matmul(A, B, 0.0f, D, D), CUBLAS_STATUS_SUCCESS) << "beta = 0: C (= D, NaN) unread";
  const Vec d = D.download();
  EXPECT_EQ(d[0], 2);
  EXPECT_EQ(d[1], 8);
  EXPECT_TRUE(std::isnan(d[2])) << "the ld padding of D was written";
  EXPECT_EQ(d[3], 11);
  EXPECT_EQ(d[4], 23);
  EXPECT_TRUE(std::isnan(d[5])) << "the ld padding of D was written";
}

TEST(CublasLtSemantics, BothTransposedAndAccumulatedInPlace) {
  DYT_REQUIRE_CUDA();
  Lt lt;
  // A stored 3×2 (= op(A)ᵀ) with ld 3, B stored 2×3 with ld 2.
  lt.describe(CUBLAS_OP_T, CUBLAS_OP_T, CUDA_R_32F, CUDA_R_32F, 3, 2, 3, 2, 3, 2, 2, 2, 2, 2);
  ASSERT_EQ(lt.heuristic(), CUBLAS_STATUS_SUCCESS);
  DevBuf A(col_major(kAt, 3), DType::F32), B(col_major(kBt, 2), DType::F32);
  DevBuf D(Vec{10, 20, 30, 40}, DType::F32);
  ASSERT_EQ(lt.matmul(A, B, 1.0f, D, D), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(D.download(), (Vec{12, 28, 41, 63}));
  ASSERT_EQ(lt.matmul(A, B, 0.5f, D, D), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(D.download(), (Vec{8, 22, 31.5f, 54.5f}));
}

TEST(CublasLtSemantics, OutOfPlaceWithOtherLeadingDimension) {
  DYT_REQUIRE_CUDA();
  Lt lt;
  // C with ld 3, D with ld 2; only A transposed.
  lt.describe(CUBLAS_OP_T, CUBLAS_OP_N, CUDA_R_32F, CUDA_R_32F, 3, 2, 3, 3, 2, 3, 2, 2, 3, 2);
  ASSERT_EQ(lt.heuristic(), CUBLAS_STATUS_SUCCESS);
  DevBuf A(col_major(kAt, 3), DType::F32), B(col_major(kB, 3), DType::F32);
  DevBuf C(col_major({{1, 2}, {3, 4}}, 3), DType::F32), D(4, DType::F32);
  D.poison();
  ASSERT_EQ(lt.matmul(A, B, -1.0f, C, D), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(D.download(), (Vec{1, 5, 9, 19}));
}

// bf16 operands, fp32 output: exact here. bf16 output: 1 + 2⁻⁸ is a tie
// between 1 and 1 + 2⁻⁷ and goes to the even 1; 1 + 3·2⁻⁸ is a tie between
// 1 + 2⁻⁷ and 1 + 2⁻⁶ and goes to the even 1 + 2⁻⁶.
TEST(CublasLtSemantics, Bf16OperandsRoundOutputToNearestEven) {
  DYT_REQUIRE_CUDA();
  for (cudaDataType_t out : {CUDA_R_32F, CUDA_R_16BF}) {
    Lt lt;
    // op(A) = [[1 1] [1 1]] (2×2), op(B) = [[1 1] [2⁻⁸ 3·2⁻⁸]]: sums 1 + 2⁻⁸, 1 + 3·2⁻⁸.
    lt.describe(CUBLAS_OP_N, CUBLAS_OP_N, CUDA_R_16BF, out, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2);
    ASSERT_EQ(lt.heuristic(), CUBLAS_STATUS_SUCCESS);
    const DType dt = out == CUDA_R_16BF ? DType::BF16 : DType::F32;
    DevBuf A(Vec{1, 1, 1, 1}, DType::BF16), B(Vec{1, 0x1p-8f, 1, 3 * 0x1p-8f}, DType::BF16),
        D(4, dt);
    D.poison();
    ASSERT_EQ(lt.matmul(A, B, 0.0f, D, D), CUBLAS_STATUS_SUCCESS);
    const Vec want = out == CUDA_R_16BF ? Vec{1, 1, 1 + 0x1p-6f, 1 + 0x1p-6f}
                                        : Vec{1 + 0x1p-8f, 1 + 0x1p-8f, 1 + 3 * 0x1p-8f, 1 + 3 * 0x1p-8f};
    EXPECT_EQ(D.download(), want) << (out == CUDA_R_16BF ? "bf16 output" : "fp32 output");
  }
}

// op(A) 2×3 against op(B) 2×2: k disagrees.
TEST(CublasLtSemantics, MismatchedDimensionsAreRejected) {
  DYT_REQUIRE_CUDA();
  Lt lt;
  lt.describe(CUBLAS_OP_N, CUBLAS_OP_N, CUDA_R_32F, CUDA_R_32F, 2, 3, 2, 2, 2, 2, 2, 2, 2, 2);
  const cublasStatus_t s = lt.heuristic();
  EXPECT_NE(s, CUBLAS_STATUS_SUCCESS);
  if (kStandIn) {
    EXPECT_EQ(s, CUBLAS_STATUS_INVALID_VALUE);
  }
}

TEST(CublasLtSemantics, LeadingDimensionBelowRowsIsRejected) {
  DYT_REQUIRE_CUDA();
  Lt lt;
  cublasLtMatrixLayout_t bad = nullptr;
  // cuBLASLt may refuse it at creation or at the heuristic; either counts.
  const cublasStatus_t made = cublasLtMatrixLayoutCreate(&bad, CUDA_R_32F, 4, 2, 3);
  if (made != CUBLAS_STATUS_SUCCESS) return;
  lt.describe(CUBLAS_OP_N, CUBLAS_OP_N, CUDA_R_32F, CUDA_R_32F, 2, 4, 2, 4, 2, 4, 2, 2, 2, 2);
  cublasLtMatrixLayoutDestroy(lt.b);
  lt.b = bad;
  const cublasStatus_t s = lt.heuristic();
  EXPECT_NE(s, CUBLAS_STATUS_SUCCESS) << "ld 3 for 4 rows";
  if (kStandIn) {
    EXPECT_EQ(s, CUBLAS_STATUS_INVALID_VALUE);
  }
}

TEST(CublasLtSemantics, MixedOperandTypesAreRejected) {
  DYT_REQUIRE_CUDA();
  Lt lt;
  lt.describe(CUBLAS_OP_N, CUBLAS_OP_N, CUDA_R_32F, CUDA_R_16BF, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2);
  const cublasStatus_t s = lt.heuristic();  // fp32 operands, bf16 output: not a listed combination
  EXPECT_NE(s, CUBLAS_STATUS_SUCCESS);
  if (kStandIn) {
    EXPECT_EQ(s, CUBLAS_STATUS_NOT_SUPPORTED);
  }
}

#ifdef DYT_CUDA_EMU
// The stand-in's own checks beyond the documented semantics (docs/cuda_kernels.md).
TEST(CublasLtStandIn, PointerBelowPromisedAlignmentOrSmallWorkspaceIsRejected) {
  Lt lt;
  lt.describe(CUBLAS_OP_N, CUBLAS_OP_N, CUDA_R_32F, CUDA_R_32F, 2, 3, 2, 3, 2, 3, 2, 2, 2, 2);
  ASSERT_EQ(lt.heuristic(), CUBLAS_STATUS_SUCCESS);
  ASSERT_GT(lt.result.workspaceSize, 0u);
  DevBuf A(col_major(kA, 2), DType::F32), B(col_major(kB, 3), DType::F32), D(4, DType::F32, 1);
  // D 4 bytes in: below the 16 promised.
  EXPECT_EQ(lt.matmul(A, B, 0.0f, D, D), CUBLAS_STATUS_INVALID_VALUE);
  DevBuf D2(4, DType::F32);
  EXPECT_EQ(lt.matmul(A, B, 0.0f, D2.data(), D2.data(), lt.result.workspaceSize - 1),
            CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(lt.matmul(A, B, 0.0f, D2.data(), D2.data(), lt.result.workspaceSize),
            CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(D2.download(), kProduct);
}
#endif

}  // namespace dyt::cuda_test
