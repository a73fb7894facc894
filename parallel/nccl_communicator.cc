#include "parallel/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "parallel/nccl_env.h"

namespace dyt::parallel {
namespace {

void nccl_check(ncclResult_t r, const char* call, ncclComm_t comm = nullptr) {
  if (r == ncclSuccess) return;
  std::string what = std::string(call) + " failed: " + ncclGetErrorString(r);
  const char* last = ncclGetLastError(comm);
  if (last != nullptr && *last != '\0') what += " (" + std::string(last) + ")";
  throw std::runtime_error(what);
}

void cuda_check(cudaError_t e, const char* call) {
  if (e == cudaSuccess) return;
  throw std::runtime_error(std::string(call) + " failed: " + cudaGetErrorString(e));
}

template <class T>
ncclDataType_t nccl_type();
template <>
ncclDataType_t nccl_type<float>() { return ncclFloat32; }
template <>
ncclDataType_t nccl_type<double>() { return ncclFloat64; }

// What rank 0 broadcasts: the id, or why there is none, so that a failure
// there reaches every rank instead of leaving them waiting in the broadcast.
struct IdMessage {
  int32_t result;  // ncclResult_t of ncclGetUniqueId on rank 0
  ncclUniqueId id;
};
static_assert(sizeof(IdMessage) == 4 + NCCL_UNIQUE_ID_BYTES, "the broadcast carries no padding");

// Warns (once per process) about the settings DYT_NCCL_NONDETERMINISTIC=1 let through.
void pin_settings() {
  static bool warned = false;
  const auto departures = pin_nccl_determinism();
  if (warned || departures.empty()) return;
  warned = true;
  for (const std::string& d : departures)
    std::fprintf(stderr, "dyt: warning: %s; DYT_NCCL_NONDETERMINISTIC=1, so runs may differ in the last bits\n",
                 d.c_str());
}

}  // namespace

int nccl_runtime_version() {
  int v = 0;
  nccl_check(ncclGetVersion(&v), "ncclGetVersion");
  return v;
}

std::unique_ptr<NcclCommunicator> make_nccl_communicator(Communicator& host_group, cudaStream_t stream) {
  return NcclCommunicator::create(host_group, nullptr, stream);
}

std::unique_ptr<NcclCommunicator> NcclCommunicator::create(Communicator& host, std::unique_ptr<Communicator> owned,
                                                           cudaStream_t stream) {
  if (host.device_buffers())
    throw std::invalid_argument("make_nccl_communicator: host_group must be a host communicator (MPI or local)");
  // The local preparation can fail on one rank only (no device, a setting
  // refused): the group agrees first, so that every rank throws instead of
  // the others waiting in the broadcast below.
  int device = 0;
  std::string failed;
  try {
    cuda_check(cudaGetDevice(&device), "make_nccl_communicator: cudaGetDevice");
    pin_settings();
  } catch (const std::exception& e) {
    failed = e.what();
  }
  if (host.allreduce_max(failed.empty() ? 0 : 1) != 0)
    throw std::runtime_error(failed.empty() ? "make_nccl_communicator: another rank of the group failed to prepare NCCL"
                                            : failed);
  IdMessage msg{};
  if (host.rank() == 0) msg.result = static_cast<int32_t>(ncclGetUniqueId(&msg.id));
  host.broadcast(&msg, sizeof msg, 0);
  nccl_check(static_cast<ncclResult_t>(msg.result), "ncclGetUniqueId (on rank 0 of the group)");
  ncclComm_t comm = nullptr;
  nccl_check(ncclCommInitRank(&comm, host.size(), msg.id, host.rank()), "ncclCommInitRank");
  Communicator& h = owned ? *owned : host;
  return std::unique_ptr<NcclCommunicator>(new NcclCommunicator(comm, h, std::move(owned), stream, device));
}

NcclCommunicator::NcclCommunicator(ncclComm* comm, Communicator& host, std::unique_ptr<Communicator> owned_host,
                                   cudaStream_t stream, int device)
    : comm_(comm), host_(host), owned_host_(std::move(owned_host)), stream_(stream), device_(device) {
  try {
    nccl_check(ncclCommUserRank(comm_, &rank_), "ncclCommUserRank", comm_);
    nccl_check(ncclCommCount(comm_, &size_), "ncclCommCount", comm_);
    if (rank_ != host_.rank() || size_ != host_.size())
      throw std::runtime_error("NcclCommunicator: NCCL rank " + std::to_string(rank_) + " of " +
                               std::to_string(size_) + " is not the host group's rank " +
                               std::to_string(host_.rank()) + " of " + std::to_string(host_.size()));
    cuda_check(cudaMalloc(reinterpret_cast<void**>(&scratch_), sizeof(int64_t)), "NcclCommunicator: cudaMalloc");
  } catch (...) {
    ncclCommAbort(comm_);  // the destructor does not run for a constructor that throws
    throw;
  }
}

// Finalize (flushes what was enqueued; waits until the group is quiescent),
// then destroy, then free the scratch the flushed calls used. No throw from
// a destructor: failures are reported on stderr.
NcclCommunicator::~NcclCommunicator() {
  if (comm_ == nullptr) return;
  const ncclResult_t f = ncclCommFinalize(comm_);
  if (f != ncclSuccess) {
    std::fprintf(stderr, "dyt: ncclCommFinalize failed: %s; aborting the communicator\n", ncclGetErrorString(f));
    ncclCommAbort(comm_);
  } else if (const ncclResult_t d = ncclCommDestroy(comm_); d != ncclSuccess) {
    std::fprintf(stderr, "dyt: ncclCommDestroy failed: %s\n", ncclGetErrorString(d));
  }
  if (scratch_ != nullptr) cudaFree(scratch_);
}

void NcclCommunicator::abort(int code) {
  ncclCommAbort(comm_);  // frees its resources and stops its kernels
  comm_ = nullptr;
  host_.abort(code);
  std::exit(code);  // the host's abort does not return; this keeps [[noreturn]] honest
}

void NcclCommunicator::check_async(const char* after) {
  ncclResult_t async = ncclSuccess;
  nccl_check(ncclCommGetAsyncError(comm_, &async), "ncclCommGetAsyncError", comm_);
  if (async != ncclSuccess)
    throw std::runtime_error(std::string("NCCL asynchronous error after ") + after + ": " +
                             ncclGetErrorString(async));
}

void NcclCommunicator::synchronize() {
  cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  check_async("cudaStreamSynchronize");
}

std::unique_ptr<Communicator> NcclCommunicator::split(int colour, int key) {
  if (colour < 0)
    throw std::invalid_argument("split: colour " + std::to_string(colour) + " is negative");
  std::unique_ptr<Communicator> host_child = host_.split(colour, key);
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 18, 0)
  if (nccl_runtime_version() >= NCCL_VERSION(2, 18, 0)) {
    ncclComm_t child = nullptr;
    nccl_check(ncclCommSplit(comm_, colour, key, &child, nullptr), "ncclCommSplit", comm_);
    Communicator& h = *host_child;
    return std::unique_ptr<Communicator>(new NcclCommunicator(child, h, std::move(host_child), stream_, device_));
  }
#endif
  // Older NCCL: a fresh communicator over the host split (same order).
  cuda_check(cudaSetDevice(device_), "split: cudaSetDevice");
  Communicator& h = *host_child;
  return create(h, std::move(host_child), stream_);
}

// Every do_* returns at once for an empty buffer (the base class lets null
// pointers through with zero elements), so NCCL never sees those.
template <class T>
static void allreduce(ncclComm_t comm, cudaStream_t s, T* data, size_t n) {
  nccl_check(ncclAllReduce(data, data, n, nccl_type<T>(), ncclSum, comm, s), "ncclAllReduce", comm);
}

void NcclCommunicator::do_allreduce_sum(float* data, size_t n) {
  if (n == 0) return;
  allreduce(comm_, stream_, data, n);
  check_async("ncclAllReduce");
}
void NcclCommunicator::do_allreduce_sum(double* data, size_t n) {
  if (n == 0) return;
  allreduce(comm_, stream_, data, n);
  check_async("ncclAllReduce");
}

void NcclCommunicator::do_reduce_scatter_sum(const float* in, float* out, size_t c) {
  if (c == 0) return;
  nccl_check(ncclReduceScatter(in, out, c, ncclFloat32, ncclSum, comm_, stream_), "ncclReduceScatter", comm_);
  check_async("ncclReduceScatter");
}
void NcclCommunicator::do_reduce_scatter_sum(const double* in, double* out, size_t c) {
  if (c == 0) return;
  nccl_check(ncclReduceScatter(in, out, c, ncclFloat64, ncclSum, comm_, stream_), "ncclReduceScatter", comm_);
  check_async("ncclReduceScatter");
}

void NcclCommunicator::do_allgather(const float* in, float* out, size_t c) {
  if (c == 0) return;
  nccl_check(ncclAllGather(in, out, c, ncclFloat32, comm_, stream_), "ncclAllGather", comm_);
  check_async("ncclAllGather");
}
void NcclCommunicator::do_allgather(const double* in, double* out, size_t c) {
  if (c == 0) return;
  nccl_check(ncclAllGather(in, out, c, ncclFloat64, comm_, stream_), "ncclAllGather", comm_);
  check_async("ncclAllGather");
}
// 16-bit words as pairs of bytes: a gather moves bits, whatever they encode.
void NcclCommunicator::do_allgather(const uint16_t* in, uint16_t* out, size_t c) {
  if (c == 0) return;
  nccl_check(ncclAllGather(in, out, 2 * c, ncclUint8, comm_, stream_), "ncclAllGather", comm_);
  check_async("ncclAllGather");
}

// The value goes through the device scratch in stream order; the stream is
// then waited for, since the caller wants the host value.
int64_t NcclCommunicator::max_on_device(int64_t value, const char* call) {
  int64_t v = value;
  cuda_check(cudaMemcpyAsync(scratch_, &v, sizeof v, cudaMemcpyHostToDevice, stream_), call);
  nccl_check(ncclAllReduce(scratch_, scratch_, 1, ncclInt64, ncclMax, comm_, stream_), "ncclAllReduce (max)", comm_);
  cuda_check(cudaMemcpyAsync(&v, scratch_, sizeof v, cudaMemcpyDeviceToHost, stream_), call);
  synchronize();
  return v;
}

int64_t NcclCommunicator::do_allreduce_max(int64_t value) { return max_on_device(value, "allreduce_max: cudaMemcpyAsync"); }

// Every rank has reached the barrier once a collective that needs all of
// them has completed on this rank's stream.
void NcclCommunicator::do_barrier() { max_on_device(0, "barrier: cudaMemcpyAsync"); }

void NcclCommunicator::do_broadcast(void* data, size_t bytes, int root) {
  if (bytes == 0) return;
  nccl_check(ncclBroadcast(data, data, bytes, ncclUint8, root, comm_, stream_), "ncclBroadcast", comm_);
  check_async("ncclBroadcast");
}

// In place: on the root the sum lands where its own contribution was; the
// other ranks' buffers are only read.
void NcclCommunicator::do_reduce_sum(float* data, size_t n, int root) {
  if (n == 0) return;
  nccl_check(ncclReduce(data, data, n, ncclFloat, ncclSum, root, comm_, stream_), "ncclReduce", comm_);
  check_async("ncclReduce");
}

}  // namespace dyt::parallel
