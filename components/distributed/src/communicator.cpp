#include <soundnet/distributed/communicator.hpp>

#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <utility>
#include <vector>

namespace soundnet::distributed {

namespace {

long env_long(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return -1;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  return end && *end == '\0' ? n : -1;
}

using clock_type = std::chrono::steady_clock;

// Tags on the diagnostic communicator (a duplicate of the world: never mixed with collectives).
constexpr int tag_who_waits = 1;  // "I timed out; where are you?"
constexpr int tag_i_wait = 2;     // "I am waiting in <what>"
constexpr int message_bytes = 256;

}  // namespace

bool launched() {
  for (const char* size : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"})
    if (env_long(size) > 1) return true;
  // srun with PMIx exports the rank but not always the size; Slurm's own count then tells
  return std::getenv("PMIX_RANK") && env_long("SLURM_NTASKS") > 1;
}

namespace {
void check(int rc, const std::string& name, const std::string& what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw soundnet::error(name + ": " + what + " failed in MPI: " + std::string(text, static_cast<std::size_t>(len)));
}
}  // namespace

struct communicator::state {
  int rank = 0, size = 1;
  double timeout = 300;
  long step = 0;
  std::string name, host, program;
  MPI_Comm diag = MPI_COMM_NULL;
  bool own_init = false;

  // This rank's answer to a timed-out rank's question, if one came (checked while waiting).
  void answer_questions(const std::string& what) {
    int flag = 0;
    MPI_Status st;
    for (;;) {
      MPI_Iprobe(MPI_ANY_SOURCE, tag_who_waits, diag, &flag, &st);
      if (!flag) return;
      char in[message_bytes];
      MPI_Recv(in, message_bytes, MPI_CHAR, st.MPI_SOURCE, tag_who_waits, diag, MPI_STATUS_IGNORE);
      char out[message_bytes] = {};
      std::snprintf(out, sizeof out, "%s at step %ld", what.c_str(), step);
      MPI_Send(out, message_bytes, MPI_CHAR, st.MPI_SOURCE, tag_i_wait, diag);
    }
  }

  // In-place all-reduce of `count` values, in buckets of bucket_values, each waited on with
  // the timeout.
  template <class T>
  void all_reduce(T* values, std::size_t count, MPI_Datatype type, MPI_Op op, const std::string& what) {
    for (std::size_t done = 0; done < count;) {
      const std::size_t n = std::min(bucket_values, count - done);
      MPI_Request r;
      check(MPI_Iallreduce(MPI_IN_PLACE, values + done, static_cast<int>(n), type, op, MPI_COMM_WORLD, &r), name, what);
      wait(r, what);
      done += n;
    }
  }

  // Waits for a non-blocking collective; past the timeout, names the ranks that are not
  // waiting in a collective too, and aborts the run.
  void wait(MPI_Request& request, const std::string& what) {
    const auto start = clock_type::now();
    auto last_answer = start;
    int done = 0;
    for (long spins = 0;; ++spins) {
      MPI_Test(&request, &done, MPI_STATUS_IGNORE);
      if (done) return;
      const auto now = clock_type::now();
      const double waited = std::chrono::duration<double>(now - start).count();
      if (waited > 0.05) std::this_thread::sleep_for(std::chrono::microseconds(200));  // a long wait: yield the core
      if (now - last_answer > std::chrono::milliseconds(100)) answer_questions(what), last_answer = now;
      if (waited > timeout) time_out(what, waited);
    }
  }

  [[noreturn]] void time_out(const std::string& what, double waited) {
    // Ask every other rank; the ones waiting in a collective answer within the grace period.
    std::vector<MPI_Request> sent;
    char question[message_bytes] = "?";
    for (int r = 0; r < size; ++r) {
      if (r == rank) continue;
      sent.emplace_back();
      MPI_Isend(question, message_bytes, MPI_CHAR, r, tag_who_waits, diag, &sent.back());
    }
    std::vector<std::string> answers(static_cast<std::size_t>(size));
    answers[static_cast<std::size_t>(rank)] = what + " at step " + std::to_string(step);
    const double grace = std::min(10.0, std::max(2.0, timeout / 4));
    const auto until = clock_type::now() + std::chrono::duration<double>(grace);
    while (clock_type::now() < until) {
      answer_questions(what);  // another rank may have timed out too
      int flag = 0;
      MPI_Status st;
      MPI_Iprobe(MPI_ANY_SOURCE, tag_i_wait, diag, &flag, &st);
      if (!flag) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        continue;
      }
      char in[message_bytes];
      MPI_Recv(in, message_bytes, MPI_CHAR, st.MPI_SOURCE, tag_i_wait, diag, MPI_STATUS_IGNORE);
      in[message_bytes - 1] = '\0';
      answers[static_cast<std::size_t>(st.MPI_SOURCE)] = in;
    }
    std::string missing, waiting;
    for (int r = 0; r < size; ++r) {
      std::string& into = answers[static_cast<std::size_t>(r)].empty() ? missing : waiting;
      into += (into.empty() ? "" : ", ") + std::to_string(r);
    }
    char head[160];
    std::snprintf(head, sizeof head, "%.0f s", waited);
    const std::string message = name + ": " + what + " at step " + std::to_string(step) + " did not complete within " +
                                head + " (--collective-timeout); " +
                                (missing.empty() ? std::string("every rank answered it was waiting (a launcher or network fault)")
                                                 : "rank(s) " + missing + " did not arrive (hung, dead, or busy for longer than the timeout)") +
                                "; waiting: rank(s) " + waiting + ". Stopping the run.";
    std::fprintf(stderr, "%s: %s\n", program.c_str(), message.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 3);
    std::_Exit(3);
  }
};

communicator::communicator(double timeout_seconds, std::string program) : s_(std::make_unique<state>()) {
  s_->program = std::move(program);
  int ready = 0;
  MPI_Initialized(&ready);
  if (!ready) {
    int provided = 0;
    if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
      throw soundnet::error("MPI could not be started");
    s_->own_init = true;
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &s_->rank);
  MPI_Comm_size(MPI_COMM_WORLD, &s_->size);
  MPI_Comm_dup(MPI_COMM_WORLD, &s_->diag);
  // errors come back as codes (and are reported with the rank), not as MPI's own abort
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  s_->timeout = timeout_seconds;
  char host[MPI_MAX_PROCESSOR_NAME] = {};
  int len = 0;
  MPI_Get_processor_name(host, &len);
  s_->host.assign(host, static_cast<std::size_t>(len));
  s_->name = "rank " + std::to_string(s_->rank) + " of " + std::to_string(s_->size) + " on " + s_->host + " (pid " +
             std::to_string(static_cast<long>(getpid())) + ")";
}

communicator::~communicator() {
  if (s_->diag != MPI_COMM_NULL) MPI_Comm_free(&s_->diag);
  int finished = 0;
  MPI_Finalized(&finished);
  if (s_->own_init && !finished) MPI_Finalize();
}

int communicator::rank() const { return s_->rank; }
int communicator::size() const { return s_->size; }
const std::string& communicator::name() const { return s_->name; }
void communicator::at_step(long step) { s_->step = step; }

void communicator::sum(float* values, std::size_t count, const std::string& what) {
  s_->all_reduce(values, count, MPI_FLOAT, MPI_SUM, what);
}

void communicator::sum(double* values, std::size_t count, const std::string& what) {
  s_->all_reduce(values, count, MPI_DOUBLE, MPI_SUM, what);
}

void communicator::min_max(double value, double& smallest, double& largest, const std::string& what) {
  double v[2] = {-value, value};
  s_->all_reduce(v, 2, MPI_DOUBLE, MPI_MAX, what);
  smallest = -v[0], largest = v[1];
}

void communicator::barrier(const std::string& what) {
  MPI_Request r;
  check(MPI_Ibarrier(MPI_COMM_WORLD, &r), s_->name, what);
  s_->wait(r, what);
}

void communicator::broadcast(void* data, std::size_t bytes, int root, const std::string& what) {
  MPI_Request r;
  check(MPI_Ibcast(data, static_cast<int>(bytes), MPI_BYTE, root, MPI_COMM_WORLD, &r), s_->name, what);
  s_->wait(r, what);
}

double communicator::timeout() const { return s_->timeout; }

void communicator::abort(const std::string& message, int code) {
  std::fprintf(stderr, "%s: %s: %s\n", s_->program.c_str(), s_->name.c_str(), message.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

void batch_norm_sum::sum(double* host_values, long count) {
  c_.sum(host_values, static_cast<std::size_t>(count), "the batch-norm statistics' all-reduce");
}

}  // namespace soundnet::distributed
