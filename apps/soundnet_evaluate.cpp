// soundnet-evaluate: the paper's evaluation of sound features on a k-fold dataset (ESC-50, ESC-10,
// ...): a linear SVM (liblinear -s 1 -B 1, one-vs-rest) per fold, trained on the other folds.
//
//   soundnet-evaluate --features F.npy --meta M.csv [--c C] [--folds K] [--out DIR]
//
// F.npy: (N, D) float32 or float64, row i the features of the clip in row i of M.csv. M.csv: a
// header with (at least) the columns filename, fold and target (ESC-50's meta/esc50.csv format).
// Without --c, C is chosen per test fold by leave-one-fold-out on the training folds only, from
// the grid 0.001, 0.01, 0.1, 1, 10. Prints the per-fold and mean accuracy (the last line is
// "mean accuracy: 0.xxxx"); --out DIR also gets results.json (everything), confusion.csv and
// per_class.csv, and confusion.png when gnuplot is there.
#include <soundnet/app/cli.hpp>
#include <soundnet/eval/svm.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

namespace {

using soundnet::app::usage_error;

struct settings {
  std::string features, meta, out;
  double c = 0;
  int folds = 0;
};

std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> out;
  std::string cur;
  bool quoted = false;
  for (char ch : line) {
    if (ch == '"') quoted = !quoted;
    else if (ch == ',' && !quoted) out.push_back(cur), cur.clear();
    else if (ch != '\r') cur += ch;
  }
  out.push_back(cur);
  return out;
}

struct meta_row {
  std::string filename;
  int fold, target;
};

std::vector<meta_row> read_meta(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw soundnet::io_error(path, "cannot open the metadata CSV");
  std::string line;
  if (!std::getline(in, line)) throw soundnet::io_error(path, "is empty: it needs a header with filename, fold, target");
  const auto header = split_csv(line);
  auto column = [&](const char* name) {
    for (std::size_t i = 0; i < header.size(); ++i)
      if (header[i] == name) return static_cast<long>(i);
    throw soundnet::io_error(path, std::string("has no '") + name + "' column in its header");
  };
  const long fn = column("filename"), fold = column("fold"), target = column("target");
  std::vector<meta_row> rows;
  for (long number = 2; std::getline(in, line); ++number) {
    if (line.empty() || line == "\r") continue;
    const auto f = split_csv(line);
    const long need = std::max({fn, fold, target});
    if (static_cast<long>(f.size()) <= need)
      throw soundnet::io_error(path, "row " + std::to_string(number) + " has " + std::to_string(f.size()) + " columns");
    meta_row r;
    r.filename = f[std::size_t(fn)];
    try {
      std::size_t used = 0;
      r.fold = std::stoi(f[std::size_t(fold)], &used);
      if (used != f[std::size_t(fold)].size()) throw std::invalid_argument("");
      r.target = std::stoi(f[std::size_t(target)], &used);
      if (used != f[std::size_t(target)].size()) throw std::invalid_argument("");
    } catch (const std::exception&) {
      throw soundnet::io_error(path, "row " + std::to_string(number) + " (" + r.filename +
                                         "): fold and target must be integers");
    }
    rows.push_back(r);
  }
  if (rows.empty()) throw soundnet::io_error(path, "lists no clips");
  return rows;
}

std::string fixed(double x, int digits = 4) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", digits, x);
  return buf;
}

bool plot_confusion(const std::string& csv, const std::string& png, std::size_t classes) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) return false;
  const std::string script =
      "set terminal pngcairo size 900,820; set output '" + png + "'; set datafile separator ','; "
      "set title 'confusion (rows: true class, columns: predicted; share of the row)'; "
      "set xrange [-0.5:" + std::to_string(classes) + "-0.5]; set yrange [" + std::to_string(classes) + "-0.5:-0.5]; "
      "set palette defined (0 'white', 1 'dark-blue'); set cbrange [0:1]; set size ratio -1; "
      "plot '" + csv + "' matrix rowheaders columnheaders with image notitle";
  FILE* g = popen("gnuplot 2>/dev/null", "w");
  if (!g) return false;
  std::fputs((script + "\n").c_str(), g);
  return pclose(g) == 0;
}

int evaluate(const settings& s) {
  const auto meta = read_meta(s.meta);
  xt::xarray<double> x;
  x = soundnet::io::read_npy<double>(s.features);
  if (x.dimension() != 2)
    throw soundnet::io_error(s.features, "must be a (clips, features) matrix; got " + std::to_string(x.dimension()) +
                                             " dimensions");
  if (x.shape()[0] != meta.size())
    throw soundnet::io_error(s.features, "has " + std::to_string(x.shape()[0]) + " rows but " + s.meta + " lists " +
                                             std::to_string(meta.size()) + " clips");
  soundnet::eval::feature_set data;
  data.dim = static_cast<long>(x.shape()[1]);
  data.rows.assign(x.begin(), x.end());
  for (std::size_t i = 0; i < meta.size(); ++i) {
    data.row_clip.push_back(static_cast<long>(i));
    data.clip_fold.push_back(meta[i].fold);
    data.clip_class.push_back(meta[i].target);
    data.clip_name.push_back(meta[i].filename + " (row " + std::to_string(i + 2) + " of " + s.meta + ")");
  }
  soundnet::eval::evaluation_options o;
  o.cross_validate_c = s.c <= 0;
  if (s.c > 0) o.svm.c = s.c;
  o.folds = s.folds;
  const auto ev = soundnet::eval::evaluate(data, o);

  for (const auto& f : ev.folds)
    std::printf("fold %d: %ld of %ld correct, accuracy %s (C %g%s)\n", f.fold, f.correct, f.clips,
                fixed(f.accuracy()).c_str(), f.c, o.cross_validate_c ? ", cross-validated on the training folds" : "");
  std::fflush(stdout);
  if (!s.out.empty()) {
    std::filesystem::create_directories(s.out);
    nlohmann::json j;
    j["features"] = s.features, j["meta"] = s.meta, j["svm"] = "liblinear -s 1 -B 1, one-vs-rest";
    j["liblinear"] = soundnet::eval::liblinear_version();
    j["c"] = o.cross_validate_c ? nlohmann::json("cross-validated") : nlohmann::json(s.c);
    if (o.cross_validate_c) j["c_grid"] = ev.c_grid;
    j["mean_accuracy"] = ev.mean_accuracy;
    for (const auto& f : ev.folds)
      j["folds"].push_back({{"fold", f.fold}, {"clips", f.clips}, {"correct", f.correct}, {"accuracy", f.accuracy()}, {"c", f.c}});
    j["classes"] = ev.classes, j["class_accuracy"] = ev.class_accuracy, j["confusion"] = ev.confusion;
    std::ofstream(s.out + "/results.json") << j.dump(2) << "\n";
    std::ofstream confusion(s.out + "/confusion.csv"), share(s.out + "/confusion_share.csv"), per_class(s.out + "/per_class.csv");
    confusion << "true\\predicted", share << "true\\predicted";
    for (int c : ev.classes) confusion << ',' << c, share << ',' << c;
    confusion << '\n', share << '\n';
    per_class << "class,accuracy\n";
    for (std::size_t i = 0; i < ev.classes.size(); ++i) {
      confusion << ev.classes[i], share << ev.classes[i];
      long total = 0;
      for (long v : ev.confusion[i]) total += v;
      for (long v : ev.confusion[i]) confusion << ',' << v, share << ',' << (total ? double(v) / double(total) : 0.0);
      confusion << '\n', share << '\n';
      per_class << ev.classes[i] << ',' << ev.class_accuracy[i] << '\n';
    }
    share.close();
    const bool png = plot_confusion(s.out + "/confusion_share.csv", s.out + "/confusion.png", ev.classes.size());
    std::fprintf(stderr, "soundnet-evaluate: results.json, confusion.csv, per_class.csv%s in %s\n",
                 png ? ", confusion.png" : " (no confusion.png: gnuplot is missing)", s.out.c_str());
  }
  std::fflush(stderr);
  std::printf("mean accuracy: %s\n", fixed(ev.mean_accuracy).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  settings s;
  CLI::App app{"Evaluates sound features the paper's way: a linear SVM per fold (liblinear -s 1 -B 1, one-vs-rest).",
               "soundnet-evaluate"};
  app.add_option("--features", s.features, "(clips, features) .npy, row i for row i of --meta")->required();
  app.add_option("--meta", s.meta, "metadata CSV with filename, fold, target columns (ESC-50's format)")->required();
  app.add_option("--c", s.c, "the SVM's C (the authors: 0.01); default: cross-validated on the training folds")
      ->check(soundnet::app::number_in(1e-9, 1e9));
  app.add_option("--folds", s.folds, "the folds must be 1..K, each with clips (default: the folds present)")
      ->check(soundnet::app::integer_at_least(2));
  app.add_option("--out", s.out, "a folder for results.json, confusion.csv, per_class.csv, confusion.png");
  return soundnet::app::run(app, argc, argv, [&] { return evaluate(s); });
}
