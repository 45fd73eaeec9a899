// soundnet::distributed on GPUs: the gradients of model<Net, float, soundnet::cuda> averaged
// over the ranks by NCCL on the devices (no copy to the host), the NCCL communicator made from
// the MPI one (rank 0's unique id broadcast over MPI). Built when MPI, the CUDA device and NCCL
// are all found (SOUNDNET_WITH_NCCL); SOUNDNET_DISTRIBUTED_WITH_NCCL is then defined.
//
// Like the MPI collectives, every all-reduce waits at most the communicator's timeout: a rank
// that is dead or hung makes the others abort the NCCL communicator and stop with an error
// saying so, never a silent hang.
#pragma once

#ifndef SOUNDNET_DISTRIBUTED_WITH_NCCL
#error "soundnet::distributed was built without NCCL (it needs MPI, the CUDA device and NCCL: SOUNDNET_WITH_NCCL)"
#endif

#include <soundnet/distributed/communicator.hpp>

#include <cstddef>
#include <memory>
#include <string>

namespace soundnet::distributed {

class nccl_communicator {
 public:
  /// Joins the ranks of `mpi` on the current GPU (one GPU per rank). `stream`: the cudaStream_t
  /// the all-reduces are queued on, the model's (cuda::context::stream()), so that they follow
  /// its backward pass and precede its Adam step.
  nccl_communicator(communicator& mpi, void* stream);
  ~nccl_communicator();
  nccl_communicator(const nccl_communicator&) = delete;
  nccl_communicator& operator=(const nccl_communicator&) = delete;

  /// values (float32 device memory) = their mean over the ranks, in place; returns when done.
  /// `what` names the all-reduce in a timeout's message.
  void average(float* device_values, std::size_t count, const std::string& what);
  /// Starts averaging `count` values (float32 device memory, in place) on the communicator's
  /// own stream, once the work queued so far on the model's stream has run (an event orders
  /// them): the all-reduce overlaps what is queued on the model's stream afterwards (the rest of
  /// the backward pass). The values must not be read or written until finish_averages().
  void start_average(float* device_values, std::size_t count, const std::string& what);
  /// Waits (at most the timeout) for the averages started since the last call, and makes the
  /// model's stream wait for them too: work queued there next (Adam) sees the averaged values.
  void finish_averages(const std::string& what);
  /// "NCCL 2.28.9, rank R of N on GPU G".
  const std::string& name() const;

 private:
  struct state;
  std::unique_ptr<state> s_;
};

}  // namespace soundnet::distributed
