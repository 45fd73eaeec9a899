#include <soundnet/distributed/nccl.hpp>

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <thread>

namespace soundnet::distributed {

namespace {

std::string nccl_text(ncclResult_t r) { return std::string(ncclGetErrorString(r)); }

}  // namespace

struct nccl_communicator::state {
  communicator* mpi = nullptr;
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  std::string name;

  // Waits until the communicator is no longer busy initialising or queuing (non-blocking
  // communicator), or the timeout passes.
  void settle(const std::string& what) {
    const auto start = std::chrono::steady_clock::now();
    ncclResult_t r = ncclInProgress;
    while ((ncclCommGetAsyncError(comm, &r), r) == ncclInProgress) {
      if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > mpi->timeout()) stuck(what);
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    if (r != ncclSuccess) fail(what, r);
  }

  // Waits for the stream (the all-reduce queued on it, and what preceded it) with the timeout.
  void finish(const std::string& what) {
    const auto start = std::chrono::steady_clock::now();
    for (;;) {
      const cudaError_t e = cudaStreamQuery(stream);
      if (e == cudaSuccess) return;
      if (e != cudaErrorNotReady)
        throw soundnet::error(mpi->name() + ": " + what + " over NCCL failed on the GPU (" + cudaGetErrorString(e) + ")");
      ncclResult_t r = ncclSuccess;
      ncclCommGetAsyncError(comm, &r);
      if (r != ncclSuccess && r != ncclInProgress) fail(what, r);
      if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > mpi->timeout()) stuck(what);
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  [[noreturn]] void stuck(const std::string& what) {
    ncclCommAbort(comm);
    comm = nullptr;
    throw soundnet::error(mpi->name() + ": " + what + " over NCCL did not finish within " +
                          std::to_string(static_cast<long>(mpi->timeout())) +
                          " s: another rank is dead, hung or far behind (--collective-timeout); the run stops");
  }

  [[noreturn]] void fail(const std::string& what, ncclResult_t r) {
    const char* detail = ncclGetLastError(comm);
    throw soundnet::error(mpi->name() + ": " + what + " over NCCL failed (" + nccl_text(r) +
                          (detail && *detail ? std::string(": ") + detail : std::string()) + ")");
  }
};

nccl_communicator::nccl_communicator(communicator& mpi, void* stream) : s_(std::make_unique<state>()) {
  s_->mpi = &mpi;
  s_->stream = static_cast<cudaStream_t>(stream);
  ncclUniqueId id{};
  if (mpi.rank() == 0) {
    const ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess) throw soundnet::error(mpi.name() + ": ncclGetUniqueId failed (" + nccl_text(r) + ")");
  }
  mpi.broadcast(&id, sizeof id, 0, "the NCCL unique id's broadcast");
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // calls return at once: the waits above can time out
  const ncclResult_t r = ncclCommInitRankConfig(&s_->comm, mpi.size(), id, mpi.rank(), &config);
  if (r != ncclSuccess && r != ncclInProgress)
    throw soundnet::error(mpi.name() + ": ncclCommInitRankConfig failed (" + nccl_text(r) + ")");
  s_->settle("the NCCL communicator's set-up");
  int version = 0, device = -1;
  ncclGetVersion(&version);
  cudaGetDevice(&device);
  s_->name = "NCCL " + std::to_string(version / 10000) + "." + std::to_string(version / 100 % 100) + "." +
             std::to_string(version % 100) + ", rank " + std::to_string(mpi.rank()) + " of " +
             std::to_string(mpi.size()) + " on GPU " + std::to_string(device);
}

nccl_communicator::~nccl_communicator() {
  if (!s_->comm) return;
  ncclCommFinalize(s_->comm);
  ncclResult_t r = ncclInProgress;
  const auto start = std::chrono::steady_clock::now();
  while ((ncclCommGetAsyncError(s_->comm, &r), r) == ncclInProgress &&
         std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < s_->mpi->timeout())
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  if (r == ncclSuccess) ncclCommDestroy(s_->comm);
  else ncclCommAbort(s_->comm);
}

void nccl_communicator::average(float* device_values, std::size_t count, const std::string& what) {
  if (!s_->comm) throw soundnet::error(s_->mpi->name() + ": the NCCL communicator was aborted");
  const ncclResult_t r = ncclAllReduce(device_values, device_values, count, ncclFloat32, ncclAvg, s_->comm, s_->stream);
  if (r != ncclSuccess && r != ncclInProgress) s_->fail(what, r);
  s_->settle(what);
  s_->finish(what);
}

const std::string& nccl_communicator::name() const { return s_->name; }

}  // namespace soundnet::distributed
