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
  cudaStream_t stream = nullptr;       // the model's
  cudaStream_t side = nullptr;         // start_average's, beside the model's
  cudaEvent_t ready = nullptr, done = nullptr;
  bool started = false;                // averages queued on `side` since finish_averages
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

  // Waits for a stream (the all-reduce queued on it, and what preceded it) with the timeout.
  void finish(const std::string& what) { finish(what, stream); }
  void finish(const std::string& what, cudaStream_t on) {
    const auto start = std::chrono::steady_clock::now();
    for (;;) {
      const cudaError_t e = cudaStreamQuery(on);
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

  void check(cudaError_t e, const char* call) {
    if (e != cudaSuccess)
      throw soundnet::error(mpi->name() + ": " + call + " failed (" + cudaGetErrorString(e) + ")");
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
  s_->check(cudaStreamCreateWithFlags(&s_->side, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  s_->check(cudaEventCreateWithFlags(&s_->ready, cudaEventDisableTiming), "cudaEventCreateWithFlags");
  s_->check(cudaEventCreateWithFlags(&s_->done, cudaEventDisableTiming), "cudaEventCreateWithFlags");
  int version = 0, device = -1;
  ncclGetVersion(&version);
  cudaGetDevice(&device);
  s_->name = "NCCL " + std::to_string(version / 10000) + "." + std::to_string(version / 100 % 100) + "." +
             std::to_string(version % 100) + ", rank " + std::to_string(mpi.rank()) + " of " +
             std::to_string(mpi.size()) + " on GPU " + std::to_string(device);
}

nccl_communicator::~nccl_communicator() {
  if (s_->ready) cudaEventDestroy(s_->ready);
  if (s_->done) cudaEventDestroy(s_->done);
  if (s_->side) cudaStreamDestroy(s_->side);
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

void nccl_communicator::start_average(float* device_values, std::size_t count, const std::string& what) {
  if (!s_->comm) throw soundnet::error(s_->mpi->name() + ": the NCCL communicator was aborted");
  s_->check(cudaEventRecord(s_->ready, s_->stream), "cudaEventRecord");
  s_->check(cudaStreamWaitEvent(s_->side, s_->ready, 0), "cudaStreamWaitEvent");
  const ncclResult_t r = ncclAllReduce(device_values, device_values, count, ncclFloat32, ncclAvg, s_->comm, s_->side);
  if (r != ncclSuccess && r != ncclInProgress) s_->fail(what, r);
  s_->settle(what);
  s_->started = true;
}

void nccl_communicator::finish_averages(const std::string& what) {
  if (!s_->started) return;
  s_->started = false;
  s_->finish(what, s_->side);
  s_->check(cudaEventRecord(s_->done, s_->side), "cudaEventRecord");
  s_->check(cudaStreamWaitEvent(s_->stream, s_->done, 0), "cudaStreamWaitEvent");
}

const std::string& nccl_communicator::name() const { return s_->name; }

}  // namespace soundnet::distributed
