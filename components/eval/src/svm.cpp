// soundnet::eval: liblinear (Debian liblinear-dev) behind soundnet/eval/svm.hpp.
#include <soundnet/eval/svm.hpp>

#include <soundnet/core/error.hpp>

#include <linear.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <numeric>
#include <set>
#include <string>

#if defined(__unix__)
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

namespace soundnet::eval {

namespace {
void quiet(const char*) {}

// liblinear's solver shuffles with rand(): the same seed before every training makes every
// result reproducible (and independent of what ran before).
std::mutex& rand_mutex() {
  static std::mutex m;
  return m;
}
}  // namespace

struct linear_svm::state {
  model* m = nullptr;
  std::vector<int> classes;
  std::vector<int> order;  // classes()[i] is liblinear's label order()[i]
  long dim = 0;
  ~state() {
    if (m) free_and_destroy_model(&m);
  }
};

linear_svm::linear_svm(const feature_set& data, const std::vector<long>& rows, const svm_options& o)
    : s_(std::make_unique<state>()) {
  const long d = data.dim;
  s_->dim = d;
  // sparse rows (liblinear's format); the bias is an extra feature of value 1 (what liblinear's
  // train program does for -B 1)
  std::vector<feature_node> nodes;
  nodes.reserve(rows.size() * static_cast<std::size_t>(d + 2));
  std::vector<std::size_t> starts;
  std::vector<double> labels;
  for (long r : rows) {
    starts.push_back(nodes.size());
    const float* x = data.rows.data() + r * d;
    for (long j = 0; j < d; ++j)
      if (x[j] != 0.0f) nodes.push_back({static_cast<int>(j + 1), static_cast<double>(x[j])});
    if (o.bias) nodes.push_back({static_cast<int>(d + 1), 1.0});
    nodes.push_back({-1, 0});
    labels.push_back(data.clip_class[static_cast<std::size_t>(data.row_clip[static_cast<std::size_t>(r)])]);
  }
  std::vector<feature_node*> x(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) x[i] = nodes.data() + starts[i];
  problem prob{};
  prob.l = static_cast<int>(rows.size());
  prob.n = static_cast<int>(d) + (o.bias ? 1 : 0);
  prob.y = labels.data();
  prob.x = x.data();
  prob.bias = o.bias ? 1.0 : -1.0;
  parameter param{};
  param.solver_type = L2R_L2LOSS_SVC_DUAL;
  param.C = o.c;
  param.eps = o.eps;
  param.p = 0.1;
  if (const char* e = check_parameter(&prob, &param)) throw error(std::string("liblinear: ") + e);
  set_print_string_function(quiet);
  {
    std::lock_guard<std::mutex> lock(rand_mutex());
    std::srand(1);
    s_->m = train(&prob, &param);
  }
  if (!s_->m) throw error("liblinear failed to train");
  const int k = get_nr_class(s_->m);
  std::vector<int> lab(static_cast<std::size_t>(k));
  get_labels(s_->m, lab.data());
  s_->order.resize(lab.size());
  std::iota(s_->order.begin(), s_->order.end(), 0);
  std::sort(s_->order.begin(), s_->order.end(), [&](int a, int b) { return lab[std::size_t(a)] < lab[std::size_t(b)]; });
  for (int i : s_->order) s_->classes.push_back(lab[std::size_t(i)]);
}

linear_svm::~linear_svm() = default;
linear_svm::linear_svm(linear_svm&&) noexcept = default;
const std::vector<int>& linear_svm::classes() const { return s_->classes; }

void linear_svm::decision(const float* x, double* out) const {
  const long d = s_->dim;
  std::vector<feature_node> nodes;
  nodes.reserve(static_cast<std::size_t>(d + 2));
  for (long j = 0; j < d; ++j)
    if (x[j] != 0.0f) nodes.push_back({static_cast<int>(j + 1), static_cast<double>(x[j])});
  if (s_->m->bias >= 0) nodes.push_back({static_cast<int>(d + 1), s_->m->bias});
  nodes.push_back({-1, 0});
  const int k = get_nr_class(s_->m);
  std::vector<double> dec(static_cast<std::size_t>(k));
  predict_values(s_->m, nodes.data(), dec.data());
  if (k == 2) {  // liblinear gives one value for two classes: positive for its first label
    dec[1] = -dec[0];
  }
  for (std::size_t i = 0; i < s_->order.size(); ++i) out[i] = dec[std::size_t(s_->order[i])];
}

namespace {

// Accuracy of a model trained on `train_clips` and tested on `test_clips` (clip indices).
struct outcome {
  long clips = 0, correct = 0;
  std::vector<std::pair<int, int>> pairs;  // (true class, predicted class) per test clip
};

// Trains on `train_clips` and tests the one model on each of `test_sets` (clip indices).
std::vector<outcome> train_and_test(const feature_set& data, const std::vector<std::vector<long>>& clip_rows,
                                    const std::vector<long>& train_clips,
                                    const std::vector<std::vector<long>>& test_sets, const svm_options& o) {
  std::vector<long> rows;
  for (long c : train_clips) rows.insert(rows.end(), clip_rows[std::size_t(c)].begin(), clip_rows[std::size_t(c)].end());
  const linear_svm svm(data, rows, o);
  const auto& classes = svm.classes();
  std::vector<double> dec(classes.size()), mean(classes.size());
  std::vector<outcome> outs(test_sets.size());
  for (std::size_t s = 0; s < test_sets.size(); ++s) {
    outcome& out = outs[s];
    for (long c : test_sets[s]) {
      std::fill(mean.begin(), mean.end(), 0.0);
      for (long r : clip_rows[std::size_t(c)]) {
        svm.decision(data.rows.data() + r * data.dim, dec.data());
        for (std::size_t k = 0; k < dec.size(); ++k) mean[k] += dec[k];
      }
      const int predicted = classes[std::size_t(std::max_element(mean.begin(), mean.end()) - mean.begin())];
      const int truth = data.clip_class[std::size_t(c)];
      out.correct += predicted == truth;
      ++out.clips;
      out.pairs.push_back({truth, predicted});
    }
  }
  return outs;
}

std::string c_text(double c) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", c);
  return buf;
}

// One SVM training and its tests.
struct job {
  std::vector<long> train;
  std::vector<std::vector<long>> tests;
  svm_options svm;
  std::string what;  // for messages: "test fold 3 (C 0.01)"
};

// Estimated peak memory of one training: liblinear's copy of the rows (a 16-byte node per value,
// the bias and the end marker), the model ((dim + 1) doubles per class) and 64 MB besides.
std::size_t job_bytes(const feature_set& data, const std::vector<std::vector<long>>& clip_rows, const job& j,
                      std::size_t classes) {
  std::size_t rows = 0;
  for (long c : j.train) rows += clip_rows[std::size_t(c)].size();
  return rows * std::size_t(data.dim + 2) * 16 + std::size_t(data.dim + 1) * 8 * classes + (std::size_t(64) << 20);
}

// Memory the system can still give (MemAvailable), or 0 where it cannot be read.
std::size_t available_memory() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  std::size_t kb = 0;
  std::string unit;
  while (in >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  return 0;
}

#if defined(__unix__)
// A training in a child process: liblinear shuffles with the process's rand(), so trainings in
// threads would draw from one sequence in an order that changes from run to run; a process of
// its own seeds its own. The child sends its outcomes through a pipe as 64-bit integers: per test
// set, clips, correct, then (true, predicted) per clip; or -1, the message's length and the
// message when it failed.
struct child {
  pid_t pid = -1;
  int fd = -1;
};

void write_all(int fd, const void* data, std::size_t bytes) {
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::write(fd, p, bytes);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) ::_exit(3);
    p += n, bytes -= std::size_t(n);
  }
}

// Reads until end of file; false if the pipe failed.
bool read_all(int fd, std::string& out) {
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) return true;
    out.append(buf, std::size_t(n));
  }
}

[[noreturn]] void run_child(int fd, const feature_set& data, const std::vector<std::vector<long>>& clip_rows, const job& j) {
  std::vector<std::int64_t> msg;
  try {
    for (const auto& o : train_and_test(data, clip_rows, j.train, j.tests, j.svm)) {
      msg.push_back(o.clips), msg.push_back(o.correct);
      for (const auto& [t, p] : o.pairs) msg.push_back(t), msg.push_back(p);
    }
    write_all(fd, msg.data(), msg.size() * sizeof(std::int64_t));
  } catch (const std::exception& e) {
    const std::int64_t head[2] = {-1, static_cast<std::int64_t>(std::strlen(e.what()))};
    write_all(fd, head, sizeof head);
    write_all(fd, e.what(), std::size_t(head[1]));
  }
  ::close(fd);
  ::_exit(0);
}

std::vector<outcome> parse(const std::string& raw, const job& j, pid_t pid, int status) {
  const std::string who = "the SVM training process for " + j.what + " (pid " + std::to_string(pid) + ")";
  std::int64_t first = 0, len = 0;
  if (raw.size() >= 16) std::memcpy(&first, raw.data(), 8), std::memcpy(&len, raw.data() + 8, 8);
  if (first == -1) {
    throw error(raw.substr(16, std::size_t(std::max<std::int64_t>(0, len))));
  }
  if (WIFSIGNALED(status))
    throw error(who + " was killed by signal " + std::to_string(WTERMSIG(status)) +
                (WTERMSIG(status) == SIGKILL ? " (out of memory?)" : ""));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw error(who + " failed with exit status " + std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1));
  std::vector<std::int64_t> v(raw.size() / 8);
  std::memcpy(v.data(), raw.data(), v.size() * 8);
  std::vector<outcome> outs(j.tests.size());
  std::size_t at = 0;
  for (std::size_t s = 0; s < j.tests.size(); ++s) {
    if (at + 2 > v.size()) throw error(who + " sent a truncated result");
    outs[s].clips = v[at], outs[s].correct = v[at + 1];
    at += 2;
    if (outs[s].clips != static_cast<long>(j.tests[s].size()) || at + 2 * std::size_t(outs[s].clips) > v.size())
      throw error(who + " sent a result that does not fit its test set");
    for (long c = 0; c < outs[s].clips; ++c, at += 2) outs[s].pairs.push_back({int(v[at]), int(v[at + 1])});
  }
  return outs;
}
#endif

// Runs the jobs, up to `workers` at once in child processes (one at a time in this process where
// workers is 1 or there is no fork), as many as the available memory holds. The results do not
// depend on the number of workers: each training seeds liblinear's rand() the same way.
std::vector<std::vector<outcome>> run_jobs(const feature_set& data, const std::vector<std::vector<long>>& clip_rows,
                                           const std::vector<job>& jobs, int workers) {
  std::vector<std::vector<outcome>> results(jobs.size());
  const std::size_t classes = std::set<int>(data.clip_class.begin(), data.clip_class.end()).size();
  std::size_t largest = 0;
  for (const auto& j : jobs) largest = std::max(largest, job_bytes(data, clip_rows, j, classes));
  if (const std::size_t avail = available_memory(); avail > 0 && workers > 1)
    workers = static_cast<int>(std::clamp<std::size_t>(avail * 3 / 4 / std::max<std::size_t>(largest, 1), 1, std::size_t(workers)));
#if defined(__unix__)
  if (workers > 1 && jobs.size() > 1) {
    std::vector<child> running(jobs.size());
    auto reap_all = [&] {  // on an error: stop and reap the children still running
      for (std::size_t k = 0; k < running.size(); ++k)
        if (running[k].pid > 0) {
          ::kill(running[k].pid, SIGKILL);
          ::close(running[k].fd);
          int st = 0;
          while (::waitpid(running[k].pid, &st, 0) < 0 && errno == EINTR) {
          }
          running[k].pid = -1;
        }
    };
    std::size_t next = 0;
    auto start = [&](std::size_t k) {
      int fds[2];
      if (::pipe(fds) != 0) throw error(std::string("pipe for an SVM training process: ") + std::strerror(errno));
      std::unique_lock<std::mutex> lock(rand_mutex());  // no training of another thread is halfway at the fork
      const pid_t pid = ::fork();
      lock.unlock();
      if (pid < 0) {
        ::close(fds[0]), ::close(fds[1]);
        throw error(std::string("fork for an SVM training process: ") + std::strerror(errno));
      }
      if (pid == 0) {
        ::close(fds[0]);
        run_child(fds[1], data, clip_rows, jobs[k]);
      }
      ::close(fds[1]);
      running[k] = {pid, fds[0]};
    };
    try {
      for (std::size_t k = 0; k < jobs.size(); ++k) {  // collect in order; keep `workers` running
        while (next < jobs.size() && next < k + std::size_t(workers)) start(next++);
        std::string raw;
        const bool ok = read_all(running[k].fd, raw);
        ::close(running[k].fd);
        int status = 0;
        while (::waitpid(running[k].pid, &status, 0) < 0 && errno == EINTR) {
        }
        const pid_t pid = running[k].pid;
        running[k].pid = -1;
        if (!ok)
          throw error("reading the result of the SVM training process for " + jobs[k].what + " (pid " + std::to_string(pid) +
                      ") failed");
        results[k] = parse(raw, jobs[k], pid, status);
      }
    } catch (...) {
      reap_all();
      throw;
    }
    return results;
  }
#endif
  for (std::size_t k = 0; k < jobs.size(); ++k) results[k] = train_and_test(data, clip_rows, jobs[k].train, jobs[k].tests, jobs[k].svm);
  return results;
}

}  // namespace

evaluation evaluate(const feature_set& data, const evaluation_options& o) {
  const long n_clips = data.clips();
  if (data.dim <= 0 || data.windows() == 0) throw error("no features to evaluate");
  if (static_cast<long>(data.rows.size()) != data.windows() * data.dim) throw error("features: rows and dimension disagree");
  auto clip_name = [&](long c) {
    return std::size_t(c) < data.clip_name.size() ? data.clip_name[std::size_t(c)] : "clip " + std::to_string(c);
  };
  for (long r = 0; r < data.windows(); ++r)
    for (long j = 0; j < data.dim; ++j)
      if (!std::isfinite(data.rows[std::size_t(r * data.dim + j)]))
        throw error("features of " + clip_name(data.row_clip[std::size_t(r)]) + " (row " + std::to_string(r) +
                    ", value " + std::to_string(j) + ") are not finite");
  std::vector<std::vector<long>> clip_rows(static_cast<std::size_t>(n_clips));
  for (long r = 0; r < data.windows(); ++r) clip_rows[std::size_t(data.row_clip[std::size_t(r)])].push_back(r);
  for (long c = 0; c < n_clips; ++c)
    if (clip_rows[std::size_t(c)].empty()) throw error(clip_name(c) + " has no feature rows");
  std::set<int> fold_set(data.clip_fold.begin(), data.clip_fold.end());
  if (o.folds > 0) {
    for (int f = 1; f <= o.folds; ++f)
      if (!fold_set.count(f)) throw error("fold " + std::to_string(f) + " has no test clips");
    for (int f : fold_set)
      if (f < 1 || f > o.folds) throw error("fold " + std::to_string(f) + " is outside 1.." + std::to_string(o.folds));
  }
  if (fold_set.size() < 2) throw error("k-fold evaluation needs at least two folds; the clips have " + std::to_string(fold_set.size()));
  std::set<int> class_set(data.clip_class.begin(), data.clip_class.end());

  evaluation ev;
  ev.classes.assign(class_set.begin(), class_set.end());
  const std::size_t k = ev.classes.size();
  ev.confusion.assign(k, std::vector<long>(k, 0));
  auto index_of = [&](int cls) { return std::size_t(std::lower_bound(ev.classes.begin(), ev.classes.end(), cls) - ev.classes.begin()); };
  if (o.cross_validate_c) ev.c_grid = o.c_grid;
  const std::vector<int> folds(fold_set.begin(), fold_set.end());
  auto clips_of = [&](auto&& keep) {
    std::vector<long> out;
    for (long c = 0; c < n_clips; ++c)
      if (keep(data.clip_fold[std::size_t(c)])) out.push_back(c);
    return out;
  };
  for (int fold : folds) {  // every test class must have training clips (checked before any training)
    std::set<int> train_classes;
    for (long c : clips_of([&](int f) { return f != fold; })) train_classes.insert(data.clip_class[std::size_t(c)]);
    for (long c : clips_of([&](int f) { return f == fold; }))
      if (!train_classes.count(data.clip_class[std::size_t(c)]))
        throw error("class " + std::to_string(data.clip_class[std::size_t(c)]) + " of " + clip_name(c) + " (fold " +
                    std::to_string(fold) + ") has no training clip in the other folds");
  }

  // C by leave-one-fold-out over the training folds only. For test fold f, inner fold g is scored
  // by a model trained on every fold but f and g: the same training set (the same clips in the
  // same order, the same seed, so the same model) as test fold g's inner fold f. Each pair of
  // folds is trained once per C and its model scored on both folds: half the trainings, the same
  // results. A clip of a class that the pair's training folds lack cannot be scored and is left
  // out.
  // inner[c][i][j]: grid value c, trained without folds i and j, tested on fold j
  const std::size_t nf = folds.size();
  std::vector<std::vector<std::vector<outcome>>> inner;
  if (o.cross_validate_c) {
    inner.assign(o.c_grid.size(), std::vector<std::vector<outcome>>(nf, std::vector<outcome>(nf)));
    std::vector<job> jobs;
    std::vector<std::array<std::size_t, 3>> where;  // per job: grid value, i, j
    for (std::size_t i = 0; i < nf; ++i)
      for (std::size_t j = i + 1; j < nf; ++j) {
        const auto tr = clips_of([&](int f) { return f != folds[i] && f != folds[j]; });
        std::set<int> tr_classes;
        for (long c : tr) tr_classes.insert(data.clip_class[std::size_t(c)]);
        auto known_in = [&](int fold) {
          std::vector<long> out;
          for (long c : clips_of([&](int f) { return f == fold; }))
            if (tr_classes.count(data.clip_class[std::size_t(c)])) out.push_back(c);
          return out;
        };
        const std::vector<std::vector<long>> tests = {known_in(folds[i]), known_in(folds[j])};
        for (std::size_t ci = 0; ci < o.c_grid.size(); ++ci) {
          svm_options svm = o.svm;
          svm.c = o.c_grid[ci];
          jobs.push_back({tr, tests, svm,
                          "C " + c_text(svm.c) + " without folds " + std::to_string(folds[i]) + " and " + std::to_string(folds[j])});
          where.push_back({ci, i, j});
        }
      }
    auto results = run_jobs(data, clip_rows, jobs, o.workers);
    for (std::size_t k = 0; k < jobs.size(); ++k) {
      const auto [ci, i, j] = where[k];
      inner[ci][j][i] = std::move(results[k][0]);  // trained without j and i, tested on i
      inner[ci][i][j] = std::move(results[k][1]);  // trained without i and j, tested on j
    }
  }

  std::vector<job> finals;
  for (std::size_t fi = 0; fi < nf; ++fi) {
    const int fold = folds[fi];
    svm_options svm = o.svm;
    std::vector<double> scores;
    if (o.cross_validate_c) {
      double best = -1, best_c = o.c_grid.front();
      for (std::size_t ci = 0; ci < o.c_grid.size(); ++ci) {
        long correct = 0, total = 0;
        for (std::size_t g = 0; g < nf; ++g)
          if (g != fi) correct += inner[ci][fi][g].correct, total += inner[ci][fi][g].clips;
        const double acc = total ? double(correct) / double(total) : 0.0;
        scores.push_back(acc);
        if (acc > best) best = acc, best_c = o.c_grid[ci];  // the first of equals, in grid order
      }
      svm.c = best_c;
    }
    fold_result fr;
    fr.fold = fold;
    fr.c = svm.c;
    fr.c_scores = std::move(scores);
    ev.folds.push_back(fr);
    finals.push_back({clips_of([&](int f) { return f != fold; }), {clips_of([&](int f) { return f == fold; })}, svm,
                      "test fold " + std::to_string(fold) + " (C " + c_text(svm.c) + ")"});
  }
  const auto results = run_jobs(data, clip_rows, finals, o.workers);
  for (std::size_t fi = 0; fi < nf; ++fi) {
    const outcome& r = results[fi][0];
    ev.folds[fi].clips = r.clips, ev.folds[fi].correct = r.correct;
    for (const auto& [t, p] : r.pairs) ++ev.confusion[index_of(t)][index_of(p)];
  }
  double sum = 0;
  for (const auto& f : ev.folds) sum += f.accuracy();
  ev.mean_accuracy = sum / double(ev.folds.size());
  ev.class_accuracy.resize(k);
  for (std::size_t i = 0; i < k; ++i) {
    const long total = std::accumulate(ev.confusion[i].begin(), ev.confusion[i].end(), 0L);
    ev.class_accuracy[i] = total ? double(ev.confusion[i][i]) / double(total) : 0.0;
  }
  return ev;
}

std::string liblinear_version() { return "liblinear " + std::to_string(::liblinear_version); }

}  // namespace soundnet::eval
