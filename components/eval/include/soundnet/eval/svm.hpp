// soundnet::eval — the paper's evaluation of sound features: a linear SVM (liblinear, L2-loss
// dual, `-s 1 -B 1`, one-vs-rest) trained on the training folds, tested on the held-out fold; a
// clip's score is the mean of its windows' decision values.
//
// A compiled component (CMake target soundnet::eval, built where liblinear is found; option
// SOUNDNET_WITH_LIBLINEAR; Debian: liblinear-dev). This header names no liblinear type.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace soundnet::eval {

/// Features of a dataset: rows (windows) of `dim` values; each row belongs to a clip, each clip
/// to a fold and a class. A clip with one row is a clip-level feature (time-pooled).
struct feature_set {
  long dim = 0;
  std::vector<float> rows;        // windows x dim
  std::vector<long> row_clip;     // per row: its clip
  std::vector<int> clip_fold;     // per clip
  std::vector<int> clip_class;    // per clip
  std::vector<std::string> clip_name;  // per clip (for messages)
  long windows() const { return static_cast<long>(row_clip.size()); }
  long clips() const { return static_cast<long>(clip_fold.size()); }
};

struct svm_options {
  double c = 0.01;     // the authors' C
  double eps = 0.1;    // liblinear's stopping tolerance for -s 1
  bool bias = true;    // -B 1
};

/// A trained one-vs-rest linear SVM.
class linear_svm {
 public:
  /// Trains on rows `rows` (indices into data.rows) labelled by their clips' classes.
  linear_svm(const feature_set& data, const std::vector<long>& rows, const svm_options& o);
  ~linear_svm();
  linear_svm(linear_svm&&) noexcept;
  /// The classes, in the order decision() reports them.
  const std::vector<int>& classes() const;
  /// Decision values of one row of `dim` features, one per class.
  void decision(const float* x, double* out) const;

 private:
  struct state;
  std::unique_ptr<state> s_;
};

struct fold_result {
  int fold = 0;
  double c = 0;          // the C used (fixed, or chosen by cross-validation on the training folds)
  long clips = 0, correct = 0;
  /// With C cross-validated: the leave-one-fold-out accuracy on the training folds of each grid
  /// value (evaluation::c_grid's order), from which `c` was chosen; empty for a fixed C.
  std::vector<double> c_scores;
  double accuracy() const { return clips ? double(correct) / double(clips) : 0.0; }
};

struct evaluation {
  std::vector<fold_result> folds;
  std::vector<int> classes;                      // sorted
  std::vector<std::vector<long>> confusion;      // [true class index][predicted class index]
  double mean_accuracy = 0;                      // mean over folds
  std::vector<double> class_accuracy;            // per class, over all test clips
  std::vector<double> c_grid;                    // the grid searched (empty: C fixed)
};

struct evaluation_options {
  svm_options svm;
  bool cross_validate_c = false;                           // choose C per outer fold
  std::vector<double> c_grid = {1e-3, 1e-2, 1e-1, 1, 10};  // searched by leave-one-fold-out on the training folds
  int folds = 0;  // > 0: the folds must be 1..folds, each with clips; 0: the folds present
  /// SVM trainings run at once, each in a child process of its own (liblinear shuffles with the
  /// process's rand(): processes keep every training's sequence, so the results do not depend on
  /// this), fewer where the available memory would not hold them. 1: one at a time, in this
  /// process (also where there is no fork()).
  int workers = 1;
};

/// k-fold evaluation over the dataset's folds: for each fold, train on the others (C fixed, or
/// the grid value with the best leave-one-fold-out accuracy on the training folds only) and
/// classify its clips by the mean of their windows' decision values. Throws soundnet::error
/// naming the problem: NaN or infinite features (the row and clip), fewer than two folds, a
/// fold without clips, a test class that no training clip has; a training process that fails
/// (killed, out of memory) is named.
evaluation evaluate(const feature_set& data, const evaluation_options& o);

/// liblinear's version ("liblinear 245").
std::string liblinear_version();

}  // namespace soundnet::eval
