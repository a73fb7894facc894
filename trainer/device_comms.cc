#include "trainer/device_comms.h"

#ifdef DYT_HAVE_NCCL
#include "kernels/cuda/cuda_backend.h"
#include "parallel/nccl_communicator.h"
#endif

namespace dyt::trainer {

DeviceComms make_device_comms(const parallel::Groups& groups, kernels::Backend& backend) {
  DeviceComms out;
#ifdef DYT_HAVE_NCCL
  if (backend.device() != kernels::Device::CUDA) return out;
  cudaStream_t stream = cuda::stream_of(backend);
  if (groups.dp->size() > 1) out.dp = parallel::make_nccl_communicator(*groups.dp, stream);
  if (groups.tp->size() > 1) out.tp = parallel::make_nccl_communicator(*groups.tp, stream);
#else
  (void)groups;
  (void)backend;
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
