// soundnet::distributed — data-parallel training across processes on MPI (Debian's OpenMPI):
// launched by mpirun or srun, the processes ("ranks") rendezvous through MPI, sum their
// gradients with its all-reduce and stop together when one of them fails.
//
// Every collective waits at most a timeout. A rank that has not arrived by then (hung, or dead
// without the launcher noticing) is named: the rank that timed out asks the others, those
// waiting in a collective answer, and the silent ones are reported before the whole run is
// aborted. A rank that exits or is killed is reported by the launcher (mpirun: "process rank
// N ... exited on signal ..."), which then stops the others.
#pragma once

#include <soundnet/soundnet.hpp>

#include <cstddef>
#include <memory>
#include <string>

namespace soundnet::distributed {

/// True when this process was started by a launcher as one of several (mpirun, mpiexec,
/// srun): read from the launcher's environment, without starting MPI.
bool launched();

class communicator {
 public:
  /// Starts MPI (MPI_THREAD_FUNNELED: only the thread that made it calls MPI) and joins the
  /// launcher's world. `timeout_seconds`: how long a collective may wait for the other ranks;
  /// `program` prefixes the messages printed before an abort.
  explicit communicator(double timeout_seconds, std::string program = "soundnet");
  ~communicator();
  communicator(const communicator&) = delete;
  communicator& operator=(const communicator&) = delete;

  int rank() const;
  int size() const;
  /// "rank R of N on HOST (pid P)".
  const std::string& name() const;

  /// The step the run is at (for the messages of a timed-out collective).
  void at_step(long step);

  /// Sums `count` values over the ranks, in place; every rank gets the totals. Floats go in
  /// buckets of `bucket_values` (bounded MPI memory, progress checked between buckets).
  /// `what` names the collective in a timeout's message.
  void sum(float* values, std::size_t count, const std::string& what);
  void sum(double* values, std::size_t count, const std::string& what);
  /// The smallest and the largest of `value` over the ranks.
  void min_max(double value, double& smallest, double& largest, const std::string& what);
  /// Waits for every rank.
  void barrier(const std::string& what);
  /// Copies `bytes` bytes at `data` from rank `root` to every rank.
  void broadcast(void* data, std::size_t bytes, int root, const std::string& what);
  /// How long a collective may wait for the other ranks, in seconds.
  double timeout() const;

  /// Prints `message` (prefixed with this rank's name) and stops every rank of the run.
  [[noreturn]] void abort(const std::string& message, int code = 1);

  static constexpr std::size_t bucket_values = std::size_t(1) << 22;  // 16 MB of float32

 private:
  struct state;
  std::unique_ptr<state> s_;
};

/// Synchronised batch norm through a communicator: give it to model::synchronise_batch_norm.
class batch_norm_sum final : public soundnet::batch_norm_sync {
 public:
  explicit batch_norm_sum(communicator& c) : c_(c) {}
  void sum(double* host_values, long count) override;

 private:
  communicator& c_;
};

}  // namespace soundnet::distributed
