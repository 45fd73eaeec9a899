// soundnet::eval: liblinear (Debian liblinear-dev) behind soundnet/eval/svm.hpp.
#include <soundnet/eval/svm.hpp>

#include <soundnet/core/error.hpp>

#include <linear.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <mutex>
#include <numeric>
#include <set>

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
          auto r = train_and_test(data, clip_rows, tr, tests, svm);
          inner[ci][j][i] = std::move(r[0]);  // trained without j and i, tested on i
          inner[ci][i][j] = std::move(r[1]);  // trained without i and j, tested on j
        }
      }
  }

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
    const auto r = train_and_test(data, clip_rows, clips_of([&](int f) { return f != fold; }),
                                  {clips_of([&](int f) { return f == fold; })}, svm)[0];
    fr.clips = r.clips, fr.correct = r.correct;
    for (const auto& [t, p] : r.pairs) ++ev.confusion[index_of(t)][index_of(p)];
    ev.folds.push_back(fr);
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
