#include "trainer/device_comms.h"

#ifdef DYT_HAVE_NCCL
#include <cuda_runtime_api.h>

#include <stdexcept>

#include "kernels/cuda/cuda_backend.h"
#include "parallel/nccl_communicator.h"
#endif

namespace dyt::trainer {

#ifdef DYT_HAVE_NCCL
namespace {

void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + " failed: " + cudaGetErrorString(e));
}

// The dp communicator's own stream, ordered against the backend's by two
// events (no host waits). Destroyed after the communicator (DeviceComms).
class CudaDpStream final : public DpStream {
 public:
  explicit CudaDpStream(cudaStream_t compute) : compute_(compute) {
    cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    cuda_check(cudaEventCreateWithFlags(&computed_, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    cuda_check(cudaEventCreateWithFlags(&reduced_, cudaEventDisableTiming), "cudaEventCreateWithFlags");
  }
  ~CudaDpStream() override {
    cudaStreamSynchronize(stream_);
    cudaEventDestroy(reduced_);
    cudaEventDestroy(computed_);
    cudaStreamDestroy(stream_);
  }
  cudaStream_t stream() const { return stream_; }
  void wait_for_compute() override {
    cuda_check(cudaEventRecord(computed_, compute_), "cudaEventRecord");
    cuda_check(cudaStreamWaitEvent(stream_, computed_, 0), "cudaStreamWaitEvent");
  }
  void compute_waits() override {
    cuda_check(cudaEventRecord(reduced_, stream_), "cudaEventRecord");
    cuda_check(cudaStreamWaitEvent(compute_, reduced_, 0), "cudaStreamWaitEvent");
  }

 private:
  cudaStream_t compute_, stream_ = nullptr;
  cudaEvent_t computed_ = nullptr, reduced_ = nullptr;
};

}  // namespace
#endif

DeviceComms make_device_comms(const parallel::Groups& groups, kernels::Backend& backend, bool overlap) {
  DeviceComms out;
#ifdef DYT_HAVE_NCCL
  if (backend.device() != kernels::Device::CUDA) return out;
  cudaStream_t stream = cuda::stream_of(backend);
  if (groups.dp->size() > 1) {
    cudaStream_t dp_stream = stream;
    if (overlap) {
      auto s = std::make_unique<CudaDpStream>(stream);
      dp_stream = s->stream();
      out.dp_stream = std::move(s);
    }
    out.dp = parallel::make_nccl_communicator(*groups.dp, dp_stream);
  }
  if (groups.tp->size() > 1) out.tp = parallel::make_nccl_communicator(*groups.tp, stream);
#else
  (void)groups;
  (void)backend;
  (void)overlap;
#endif
  return out;
}

std::string describe_comms(const parallel::Groups& groups, const DeviceComms& device,
                           const kernels::Backend& backend) {
  std::string out;
  const auto one = [&](const char* name, const parallel::Communicator& host, const parallel::Communicator* dev) {
    if (host.size() == 1) return;
    if (!out.empty()) out += ", ";
    out += std::string(name) + " " + std::to_string(host.size()) + ": ";
    if (dev) {
#ifdef DYT_HAVE_NCCL
      const int v = parallel::nccl_runtime_version();
      out += "NCCL " + std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." +
             std::to_string(v % 100);
#else
      out += "device communicator";
#endif
      out += " (host values over MPI)";
    } else {
      out += backend.device() == kernels::Device::CPU ? "MPI" : "MPI, staged through host memory";
    }
  };
  one("dp", *groups.dp, device.dp.get());
  one("tp", *groups.tp, device.tp.get());
  return out;
}

}  // namespace dyt::trainer
