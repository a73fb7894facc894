// Host-side support of the CUDA ops: errors, argument checks, device facts,
// launch geometry and the cached backward workspace.
#include <algorithm>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "kernels/cuda/detail.h"

namespace dyt::cuda {

namespace {
std::string error_message(cudaError_t code, const char* expr, const char* file, int line) {
  return std::string(file) + ":" + std::to_string(line) + ": " + expr + " failed: " +
         cudaGetErrorName(code) + ": " + cudaGetErrorString(code);
}
}  // namespace

CudaError::CudaError(cudaError_t code, const char* expr, const char* file, int line)
    : std::runtime_error(error_message(code, expr, file, line)), code_(code) {}

namespace detail {

void fail(const char* op, const std::string& what) {
  throw std::invalid_argument(std::string(op) + ": " + what);
}

namespace {
std::string shape_str(const Tensor& t) { return kernels::shape_text(t); }
using kernels::dtype_name;
void require_device(const char* op, const char* name, const Tensor& t) {
  require(t.device == kernels::Device::CUDA, op, std::string(name) + " must be a CUDA tensor");
  require(t.data != nullptr || t.numel() == 0, op, std::string(name) + " has no data");
}
}  // namespace

DType act_dtype(const char* op, const char* name, const Tensor& t) {
  require(t.dtype == DType::F32 || t.dtype == DType::BF16, op,
          std::string(name) + " must be F32 or BF16, not " + dtype_name(t.dtype));
  require_device(op, name, t);
  return t.dtype;
}

void require_act(const char* op, const char* name, const Tensor& t, DType dt, int64_t rows,
                 int64_t d) {
  require(t.dtype == dt, op,
          std::string(name) + " is " + dtype_name(t.dtype) + ", the other activations " +
              dtype_name(dt));
  require_device(op, name, t);
  require(t.rank >= 1 && last_dim(t) == d && t.numel() == rows * d, op,
          std::string(name) + " has shape " + shape_str(t) + ", expected " +
              std::to_string(rows) + " rows of width " + std::to_string(d));
}

void require_f32(const char* op, const char* name, const Tensor& t, int64_t n, bool vector) {
  require(t.dtype == DType::F32, op,
          std::string(name) + " must be F32, not " + dtype_name(t.dtype));
  require_device(op, name, t);
  if (vector)
    require(t.rank == 1 && t.shape[0] == n, op,
            std::string(name) + " has shape " + shape_str(t) + ", expected [" +
                std::to_string(n) + "]");
  else
    require(t.numel() == n, op,
            std::string(name) + " has shape " + shape_str(t) + ", expected " +
                std::to_string(n) + " elements");
}

// ---- device facts ---------------------------------------------------------------

int current_device() {
  int dev = 0;
  DYT_CUDA_CHECK(cudaGetDevice(&dev));
  return dev;
}

int sm_count(int device) {
  static std::mutex mu;
  static std::map<int, int> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(device);
  if (it != cache.end()) return it->second;
  int n = 0;
  DYT_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device));
  cache[device] = std::max(1, n);
  return cache[device];
}

// ---- geometry ---------------------------------------------------------------------

namespace {
int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int round32(int64_t n) { return static_cast<int>(ceil_div(std::max<int64_t>(n, 1), 32) * 32); }
// kBwdThreadsPerSm (detail.h): threads per SM the persistent backward kernels
// aim for: enough 16-byte loads in flight (kBwdRowsPerThread rows × 3 tensors
// each) to cover DRAM latency, and few blocks, since every block adds one row
// of partials to the workspace.
}  // namespace

ColPlan col_plan(int64_t d, int vec) {
  const int64_t nvec = d / vec;  // vec divides d on the vector path; vec = 1 otherwise
  ColPlan p;
  p.col_tiles = static_cast<int>(ceil_div(std::max<int64_t>(nvec, 1), kRowThreads));
  p.tx = round32(ceil_div(nvec, p.col_tiles));
  p.ty = std::max(1, 256 / p.tx);
  return p;
}

int64_t col_backward_row_blocks(const ColPlan& p, int64_t rows, int sms) {
  const int64_t per_sm = std::max(1, kBwdThreadsPerSm / (p.tx * p.ty));
  const int64_t target = std::max<int64_t>(1, sms * per_sm / p.col_tiles);
  return std::max<int64_t>(1, std::min(target, ceil_div(rows, p.ty)));
}

int64_t col_forward_row_blocks(const ColPlan& p, int64_t rows) {
  return std::max<int64_t>(1, std::min<int64_t>(ceil_div(rows, int64_t{p.ty} * kFwdRowsPerThread),
                                                65535));
}

RowPlan row_plan(int64_t d, int vec) {
  const int64_t nvec = d / vec;
  RowPlan p;
  if (nvec <= 1024) {
    p.nv = 2;
    p.tx = round32(ceil_div(nvec, 2));
  } else if (nvec <= 2048) {
    p.nv = 4;
    p.tx = round32(ceil_div(nvec, 4));
  } else {
    p.nv = 0;
    p.tx = 512;
  }
  p.ty = std::max(1, 256 / p.tx);
  return p;
}

int64_t row_backward_blocks(const RowPlan& p, int64_t rows, int sms) {
  const int64_t per_sm = std::max(1, kBwdThreadsPerSm / (p.tx * p.ty));
  return std::max<int64_t>(1, std::min<int64_t>(sms * per_sm, ceil_div(rows, p.ty)));
}

// ---- workspace ------------------------------------------------------------------------

void* workspace(const char* op, size_t need, cudaStream_t stream, const Workspace* ws) {
  if (ws) {
    require(ws->data != nullptr && ws->bytes >= need, op,
            "workspace of " + std::to_string(ws->bytes) + " bytes, need " + std::to_string(need));
    require(aligned16(ws->data), op, "workspace must be 16-byte aligned");
    return ws->data;
  }
  if (need == 0) return nullptr;
  struct Entry {
    void* ptr = nullptr;
    size_t bytes = 0;
  };
  static std::mutex mu;
  static std::map<std::pair<int, cudaStream_t>, Entry> cache;
  const int dev = current_device();
  std::lock_guard<std::mutex> lock(mu);
  Entry& e = cache[{dev, stream}];
  if (e.bytes >= need) return e.ptr;
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  DYT_CUDA_CHECK(cudaStreamIsCapturing(stream, &status));
  require(status == cudaStreamCaptureStatusNone, op,
          "the cached workspace cannot grow during stream capture: pass a Workspace");
  // Stream-ordered: earlier kernels on this stream finish with the old buffer
  // before it is freed, later ones see the new one.
  if (e.ptr) DYT_CUDA_CHECK(cudaFreeAsync(e.ptr, stream));
  e.ptr = nullptr;
  e.bytes = 0;
  const size_t bytes = (need + (1u << 20) - 1) / (1u << 20) * (1u << 20);
  DYT_CUDA_CHECK(cudaMallocAsync(&e.ptr, bytes, stream));
  e.bytes = bytes;
  return e.ptr;
}

}  // namespace detail

size_t norm_backward_workspace_bytes(int64_t rows, int64_t d, DType dtype, bool with_beta) {
  using namespace detail;
  if (rows <= 0 || d <= 0) return 0;
  const int sms = sm_count(current_device());
  size_t most = 0;
  std::vector<int> vecs = {1};
  if (d % vec_width(dtype) == 0) vecs.push_back(vec_width(dtype));
  for (int vec : vecs) {
    const ColPlan cp = col_plan(d, vec);
    const int64_t rb = col_backward_row_blocks(cp, rows, sms);
    WsLayout dyn{rb * cp.col_tiles, rb * cp.ty, with_beta ? 2 * d : d};
    const RowPlan rp = row_plan(d, vec);
    WsLayout rms{0, row_backward_blocks(rp, rows, sms) * rp.ty, d};
    most = std::max({most, dyn.bytes(), rms.bytes()});
  }
  return most;
}

}  // namespace dyt::cuda
