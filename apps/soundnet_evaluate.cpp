// soundnet-evaluate: the paper's evaluation of sound features on a k-fold dataset (ESC-50, ESC-10,
// ...): a linear SVM (liblinear -s 1 -B 1, one-vs-rest) per fold, trained on the other folds.
//
//   soundnet-evaluate --features F.npy --meta M.csv [--c C] [--folds K] [--out DIR]
//   soundnet-evaluate --features DIR --meta M.csv [--window-seconds 1] [--clip-seconds 10] ...
//   soundnet-evaluate --arch soundnet8 --weights W.safetensors --audio DIR --meta M.csv
//                     [--layers pool5,conv6] [--window-seconds 1] [--cache DIR] [--c C] [--out DIR]
//   soundnet-evaluate --supervised --arch soundnet5 --audio DIR --meta M.csv [--epochs 30] [--out DIR]
//
// The second form is the authors' protocol (../shared/README.md section 1): each clip of M.csv
// (its audio in DIR: the filename, or its stem with any extension) is repeated circularly to
// 10 s, SoundNet's features at each layer are cut into windows of --window-seconds of feature
// time steps at every position (a window's row: its steps' features side by side), the SVM is
// trained on the training folds' windows, and a test clip's score is the mean of its windows'
// decision values. Features are cached per (weights, layer, clip) in --cache, so other C values
// or layers cost only the SVM. --weights random: the paper's random initialisation (--seed).
//
// F.npy: (N, D) float32 or float64, row i the features of the clip in row i of M.csv. DIR: one
// (C, T) .npy per clip, DIR/<filename>.npy or DIR/<stem>.npy, all of one shape, covering
// --clip-seconds each, windowed as in the second form (a --cache layer folder is one). M.csv: a
// header with (at least) the columns filename, fold and target (ESC-50's meta/esc50.csv format).
// Without --c, C is chosen per test fold by leave-one-fold-out on the training folds only, from
// the grid 0.001, 0.01, 0.1, 1, 10. Prints the per-fold and mean accuracy (the last line is
// "mean accuracy: 0.xxxx"); --out DIR also gets results.json (everything), confusion.csv and
// per_class.csv, and confusion.png when gnuplot is there.
#include <soundnet/app/cli.hpp>
#include <soundnet/app/loader.hpp>
#include <soundnet/app/manifest.hpp>
#include <soundnet/app/progress.hpp>
#include <soundnet/app/waveform.hpp>
#include <soundnet/eval/svm.hpp>

#include <nlohmann/json.hpp>
#include <xtensor/xview.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

namespace {

using soundnet::app::usage_error;

struct settings {
  std::string features, meta, out, arch, weights, audio, layers = "pool5", cache, device = "cpu", math = "strict";
  double c = 0, window_seconds = 1.0, clip_seconds = 10.0, lr = 1e-3;
  int folds = 0, scenes = 401, threads = 0, epochs = 30, batch = 16;
  bool supervised = false;
  long seed = 1;
};

using soundnet::app::meta_row;
using soundnet::app::read_meta;

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

// results.json (`about` and the evaluation), confusion.csv (counts), confusion_share.csv (shares of
// each row), per_class.csv and confusion.png (gnuplot) in `out`.
void write_results(const std::string& out, nlohmann::json j, const soundnet::eval::evaluation& ev) {
  std::filesystem::create_directories(out);
  j["mean_accuracy"] = ev.mean_accuracy;
  for (const auto& f : ev.folds) {
    nlohmann::json fj = {{"fold", f.fold}, {"clips", f.clips}, {"correct", f.correct}, {"accuracy", f.accuracy()}};
    if (f.c > 0) fj["c"] = f.c;
    if (!f.c_scores.empty()) fj["c_scores"] = f.c_scores;  // the training folds' accuracy per c_grid value
    j["folds"].push_back(fj);
  }
  j["classes"] = ev.classes, j["class_accuracy"] = ev.class_accuracy, j["confusion"] = ev.confusion;
  soundnet::io::detail::write_file(out + "/results.json", j.dump(2) + "\n");
  std::ostringstream confusion, share, per_class;
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
  soundnet::io::detail::write_file(out + "/confusion.csv", confusion.str());
  soundnet::io::detail::write_file(out + "/confusion_share.csv", share.str());
  soundnet::io::detail::write_file(out + "/per_class.csv", per_class.str());
  const bool png = plot_confusion(out + "/confusion_share.csv", out + "/confusion.png", ev.classes.size());
  std::fprintf(stderr, "soundnet-evaluate: results.json, confusion.csv, per_class.csv%s in %s\n",
               png ? ", confusion.png" : " (no confusion.png: gnuplot is missing)", out.c_str());
  std::fflush(stderr);
}

// Prints the per-fold results, writes --out; returns the mean accuracy.
double report(const settings& s, const soundnet::eval::evaluation& ev, bool cross_validated, const std::string& out,
              const nlohmann::json& about) {
  for (const auto& f : ev.folds)
    std::printf("fold %d: %ld of %ld correct, accuracy %s (C %g%s)\n", f.fold, f.correct, f.clips,
                fixed(f.accuracy()).c_str(), f.c, cross_validated ? ", cross-validated on the training folds" : "");
  std::fflush(stdout);
  if (!out.empty()) {
    nlohmann::json j = about;
    j["meta"] = s.meta, j["svm"] = "liblinear -s 1 -B 1, one-vs-rest";
    j["liblinear"] = soundnet::eval::liblinear_version();
    j["c"] = cross_validated ? nlohmann::json("cross-validated") : nlohmann::json(s.c);
    if (cross_validated) j["c_grid"] = ev.c_grid;
    write_results(out, j, ev);
  }
  return ev.mean_accuracy;
}

soundnet::eval::evaluation_options options_of(const settings& s) {
  soundnet::eval::evaluation_options o;
  o.cross_validate_c = s.c <= 0;
  if (s.c > 0) o.svm.c = s.c;
  o.folds = s.folds;
  o.workers = s.threads > 0 ? s.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));  // SVM trainings at once (processes)
  return o;
}

int evaluate_feature_matrix(const settings& s) {
  const auto meta = read_meta(s.meta);
  xt::xarray<double> x = soundnet::io::read_npy<double>(s.features);
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
  const auto o = options_of(s);
  const auto ev = soundnet::eval::evaluate(data, o);
  report(s, ev, o.cross_validate_c, s.out, {{"features", s.features}});
  std::printf("mean accuracy: %s\n", fixed(ev.mean_accuracy).c_str());
  return 0;
}

// The rows of one layer's features: each clip's (C, T) features, which cover clip_seconds, cut
// into windows of window_seconds at every position (a row: the window's steps side by side).
soundnet::eval::feature_set windowed(const std::vector<xt::xtensor<float, 2>>& feats, const std::vector<meta_row>& meta,
                                     const settings& s, double clip_seconds, long& window) {
  soundnet::eval::feature_set data;
  const long channels = static_cast<long>(feats[0].shape()[0]), steps = static_cast<long>(feats[0].shape()[1]);
  window = std::max(1L, std::lround(s.window_seconds * double(steps) / clip_seconds));
  if (window > steps)
    throw usage_error("--window-seconds " + fixed(s.window_seconds, 3) + " is longer than the " + fixed(clip_seconds, 3) +
                      " s clips");
  data.dim = channels * window;
  for (std::size_t i = 0; i < meta.size(); ++i) {
    const auto& f = feats[i];
    for (long t = 0; t + window <= steps; ++t) {
      for (long k = 0; k < window; ++k)
        for (long c = 0; c < channels; ++c) data.rows.push_back(f(std::size_t(c), std::size_t(t + k)));
      data.row_clip.push_back(static_cast<long>(i));
    }
    data.clip_fold.push_back(meta[i].fold);
    data.clip_class.push_back(meta[i].target);
    data.clip_name.push_back(meta[i].filename + " (row " + std::to_string(i + 2) + " of " + s.meta + ")");
  }
  return data;
}

// --features DIR: one (C, T) .npy per clip, named by the clip (DIR/<filename>.npy or
// DIR/<stem>.npy: soundnet-evaluate's --cache folders are such folders), windowed as from audio.
int evaluate_feature_folder(const settings& s) {
  const auto meta = read_meta(s.meta);
  std::vector<xt::xtensor<float, 2>> feats(meta.size());
  for (std::size_t i = 0; i < meta.size(); ++i) {
    const std::string exact = s.features + "/" + meta[i].filename + ".npy";
    const std::string stem = s.features + "/" + std::filesystem::path(meta[i].filename).stem().string() + ".npy";
    const std::string path = std::filesystem::exists(exact) ? exact : stem;
    if (!std::filesystem::exists(path))
      throw soundnet::io_error(s.meta, "row " + std::to_string(i + 2) + " (" + meta[i].filename + "): no features " +
                                           stem + " (nor " + exact + ")");
    xt::xarray<float> f = soundnet::io::read_npy<float>(path);
    if (f.dimension() != 2)
      throw soundnet::io_error(path, "must hold (channels, time steps) features; got " + std::to_string(f.dimension()) +
                                     " dimensions");
    if (f.size() == 0) throw soundnet::io_error(path, "holds no features");
    if (i > 0 && (f.shape()[0] != feats[0].shape()[0] || f.shape()[1] != feats[0].shape()[1]))
      throw soundnet::io_error(path, "has shape (" + std::to_string(f.shape()[0]) + ", " + std::to_string(f.shape()[1]) +
                                     ") but the first clip's features are (" + std::to_string(feats[0].shape()[0]) +
                                     ", " + std::to_string(feats[0].shape()[1]) + "): every clip must cover --clip-seconds");
    feats[i] = f;
  }
  long window = 0;
  const auto data = windowed(feats, meta, s, s.clip_seconds, window);
  std::printf("%zu clips: %zu channels x %zu steps per %s s, windows of %ld steps (%ld rows)\n", meta.size(),
              feats[0].shape()[0], feats[0].shape()[1], fixed(s.clip_seconds, 2).c_str(), window, data.windows());
  const auto o = options_of(s);
  const auto ev = soundnet::eval::evaluate(data, o);
  report(s, ev, o.cross_validate_c, s.out,
         {{"features", s.features}, {"window_steps", window}, {"window_seconds", s.window_seconds}});
  std::printf("mean accuracy: %s\n", fixed(ev.mean_accuracy).c_str());
  return 0;
}

// The audio of a metadata row: DIR/filename, else DIR/<stem>.<any extension> (ESC-10's folders
// keep ESC-50's stems with their own extension).
std::string audio_of(const std::string& dir, const std::string& filename, const std::map<std::string, std::string>& by_stem) {
  const std::string exact = dir + "/" + filename;
  if (std::filesystem::exists(exact)) return exact;
  const auto it = by_stem.find(std::filesystem::path(filename).stem().string());
  return it != by_stem.end() ? it->second : exact;
}

// The audio folder's files by stem (for audio_of).
std::map<std::string, std::string> audio_by_stem(const std::string& dir) {
  std::map<std::string, std::string> by_stem;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.is_regular_file()) by_stem.emplace(e.path().stem().string(), e.path().string());
  if (ec) throw soundnet::io_error(dir, "cannot read the audio folder: " + ec.message());
  return by_stem;
}

std::vector<float> decode(const std::string& path) {
  if (std::filesystem::path(path).extension() == ".npy") return soundnet::app::read_waveform(path);
#ifdef SOUNDNET_APP_WITH_MEDIA
  soundnet::media::audio_reader in(path);
  std::vector<float> wave, piece(1 << 16);
  while (std::size_t n = in.read(piece.data(), piece.size())) wave.insert(wave.end(), piece.begin(), piece.begin() + long(n));
  return wave;
#else
  throw soundnet::io_error(path, "this program was built without FFmpeg (soundnet::media): give waveform .npy files");
#endif
}

struct from_audio {
  const settings& s;

  template <class Net, class Device = soundnet::cpu>
  int operator()() const {
    constexpr long clip_samples = 10L * soundnet::audio_format::sample_rate;  // the authors' 10 s
    soundnet::model<Net, float, Device> net(static_cast<std::uint64_t>(s.seed));
    soundnet::app::apply_math(net, s.math);
    const bool random = s.weights == "random";
    if (!random) soundnet::io::load_weights(net, s.weights);
    std::vector<std::string> layers;
    std::stringstream ls(s.layers);
    for (std::string l; std::getline(ls, l, ',');)
      if (!l.empty()) layers.push_back(l);
    if (layers.empty()) throw usage_error("--layers names no layer");
    for (const auto& l : layers)
      if (!net.has_output(l)) {
        std::string known;
        for (const auto& n : net.output_names()) known += " " + n;
        throw usage_error("unknown layer '" + l + "' for " + Net::name + "; known:" + known);
      }
    const auto meta = read_meta(s.meta);
    const auto by_stem = audio_by_stem(s.audio);
    const std::string who = random ? "random-seed-" + std::to_string(s.seed) : soundnet::app::file_fingerprint(s.weights);
    const std::string cache = s.cache.empty() ? std::string() : s.cache + "/" + std::string(Net::name) + "-" + who;

    // features per layer and clip: (C, T), from the cache or one forward per clip
    std::vector<std::vector<xt::xtensor<float, 2>>> feats(layers.size(), std::vector<xt::xtensor<float, 2>>(meta.size()));
    soundnet::app::progress bar(meta.size(), "clips");
    xt::xtensor<float, 3> x = xt::zeros<float>({std::size_t(1), std::size_t(1), std::size_t(clip_samples)});
    long extracted = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < meta.size(); ++i) {
      const std::string stem = std::filesystem::path(meta[i].filename).stem().string();
      bool cached = !cache.empty();
      for (std::size_t l = 0; l < layers.size() && cached; ++l) {
        const std::string f = cache + "/" + layers[l] + "/" + stem + ".npy";
        if (!std::filesystem::exists(f)) cached = false;
        else feats[l][i] = soundnet::io::read_npy<float>(f);
      }
      if (!cached) {
        const std::string path = audio_of(s.audio, meta[i].filename, by_stem);
        std::vector<float> wave;
        try {
          wave = decode(path);
        } catch (const soundnet::io_error& e) {
          throw soundnet::io_error(s.meta, "row " + std::to_string(i + 2) + " (" + meta[i].filename + "): " + e.what());
        }
        soundnet::app::tile_circularly(wave, clip_samples);
        std::copy(wave.begin(), wave.begin() + clip_samples, x.data());
        net.forward(x);
        for (std::size_t l = 0; l < layers.size(); ++l) {
          auto out = net.output(layers[l]);
          feats[l][i] = xt::view(out, 0, xt::all(), xt::all());
          if (!cache.empty()) {
            std::filesystem::create_directories(cache + "/" + layers[l]);
            soundnet::io::write_npy(cache + "/" + layers[l] + "/" + stem + ".npy", feats[l][i]);
          }
        }
        ++extracted;
      }
      bar.update(i + 1);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "soundnet-evaluate: features of %zu clips (%ld extracted, %zu cached) in %.1f s%s\n", meta.size(),
                 extracted, meta.size() - std::size_t(extracted), seconds,
                 extracted ? (", " + fixed(double(extracted) / seconds, 1) + " clips/s").c_str() : "");

    const auto o = options_of(s);
    double best = -1;
    std::string best_layer;
    std::vector<std::pair<std::string, double>> table;
    for (std::size_t l = 0; l < layers.size(); ++l) {
      long window = 0;
      const auto data = windowed(feats[l], meta, s, 10.0, window);
      const long channels = static_cast<long>(feats[l][0].shape()[0]), steps = static_cast<long>(feats[l][0].shape()[1]);
      const auto ts = std::chrono::steady_clock::now();
      std::printf("layer %s: %ld channels x %ld steps per 10 s, windows of %ld steps (%ld rows)\n", layers[l].c_str(),
                  channels, steps, window, data.windows());
      const auto ev = soundnet::eval::evaluate(data, o);
      const double svm_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - ts).count();
      report(s, ev, o.cross_validate_c, s.out.empty() ? s.out : s.out + "/" + layers[l],
             {{"arch", Net::name}, {"weights", s.weights}, {"layer", layers[l]}, {"window_steps", window},
              {"window_seconds", s.window_seconds}, {"svm_seconds", svm_seconds}});
      std::printf("layer %s: mean accuracy %s (SVM %.1f s)\n", layers[l].c_str(), fixed(ev.mean_accuracy).c_str(), svm_seconds);
      std::fflush(stdout);
      table.push_back({layers[l], ev.mean_accuracy});
      if (ev.mean_accuracy > best) best = ev.mean_accuracy, best_layer = layers[l];
    }
    if (layers.size() > 1) std::printf("mean accuracy: %s (%s, the best of %zu layers)\n", fixed(best).c_str(), best_layer.c_str(), layers.size());
    else std::printf("mean accuracy: %s\n", fixed(best).c_str());
    return 0;
  }
};

// --supervised: the paper's Table 5 "scratch init" baseline. Per test fold, the network is
// initialised from --seed (N(0, 0.01)) and trained with cross-entropy (model::cross_entropy_loss
// over the head's first K logits, K the dataset's classes) on the other folds' clips only: each
// clip decoded once, every epoch in a new order, each example 10 s of the clip repeated
// circularly from a random position (the evaluation's tiling, shifted), batch norm in training
// mode, Adam (--lr, beta1 0.9). A test clip is tiled to 10 s from its start and classified by
// the mean over output steps of its logits (inference mode: running statistics).
struct supervised {
  const settings& s;

  template <class Net, class Device = soundnet::cpu>
  int operator()() const {
    using clock = std::chrono::steady_clock;
    constexpr long clip_samples = 10L * soundnet::audio_format::sample_rate;
    const auto meta = read_meta(s.meta);
    std::vector<int> classes;
    for (const auto& r : meta) classes.push_back(r.target);
    std::sort(classes.begin(), classes.end());
    classes.erase(std::unique(classes.begin(), classes.end()), classes.end());
    const int k = static_cast<int>(classes.size());
    if (k < 2) throw soundnet::io_error(s.meta, "lists one class: a classifier needs two or more");
    if (k > Net::objects)
      throw soundnet::io_error(s.meta, "lists " + std::to_string(k) + " classes; the head has " +
                                           std::to_string(Net::objects) + " logits");
    auto index_of = [&](int target) {
      return static_cast<int>(std::lower_bound(classes.begin(), classes.end(), target) - classes.begin());
    };
    std::vector<int> folds;
    for (const auto& r : meta) folds.push_back(r.fold);
    std::sort(folds.begin(), folds.end());
    folds.erase(std::unique(folds.begin(), folds.end()), folds.end());
    if (s.folds > 0) {
      for (int f : folds)
        if (f < 1 || f > s.folds) throw soundnet::error("fold " + std::to_string(f) + " is outside 1.." + std::to_string(s.folds));
      for (int f = 1; f <= s.folds; ++f)
        if (!std::binary_search(folds.begin(), folds.end(), f))
          throw soundnet::error("fold " + std::to_string(f) + " has no test clips");
    }
    if (folds.size() < 2)
      throw soundnet::error("k-fold evaluation needs at least two folds; the clips have " + std::to_string(folds.size()));

    for (int fold : folds) {  // before any work: every test class has training clips
      std::vector<bool> seen(std::size_t(k), false);
      for (const auto& r : meta)
        if (r.fold != fold) seen[std::size_t(index_of(r.target))] = true;
      for (std::size_t i = 0; i < meta.size(); ++i)
        if (meta[i].fold == fold && !seen[std::size_t(index_of(meta[i].target))])
          throw soundnet::error("class " + std::to_string(meta[i].target) + " of " + meta[i].filename + " (row " +
                                std::to_string(i + 2) + " of " + s.meta + ", fold " + std::to_string(fold) +
                                ") has no training clip in the other folds");
    }

    // every clip's audio, decoded once
    const auto by_stem = audio_by_stem(s.audio);
    std::vector<std::vector<float>> waves(meta.size());
    {
      soundnet::app::progress bar(meta.size(), "clips decoded");
      for (std::size_t i = 0; i < meta.size(); ++i) {
        try {
          waves[i] = decode(audio_of(s.audio, meta[i].filename, by_stem));
        } catch (const soundnet::io_error& e) {
          throw soundnet::io_error(s.meta, "row " + std::to_string(i + 2) + " (" + meta[i].filename + "): " + e.what());
        }
        if (waves[i].empty()) throw soundnet::io_error(s.meta, "row " + std::to_string(i + 2) + " (" + meta[i].filename + "): no samples");
        bar.update(i + 1);
      }
    }
    auto fill = [&](float* row, const std::vector<float>& w, long offset) {
      const long n = static_cast<long>(w.size());
      for (long j = 0; j < clip_samples; ++j) row[j] = w[std::size_t((offset + j) % n)];
    };

    soundnet::eval::evaluation ev;
    ev.classes = classes;
    ev.confusion.assign(std::size_t(k), std::vector<long>(std::size_t(k), 0));
    nlohmann::json fold_log = nlohmann::json::array();
    double train_seconds = 0;
    for (int fold : folds) {
      std::vector<long> train, test;
      for (std::size_t i = 0; i < meta.size(); ++i) (meta[i].fold == fold ? test : train).push_back(long(i));
      const long batch = std::min<long>(s.batch, static_cast<long>(train.size()));
      const long steps = static_cast<long>(train.size()) / batch;
      soundnet::model<Net, float, Device> net(static_cast<std::uint64_t>(s.seed));
      soundnet::app::apply_math(net, s.math);
      soundnet::adam_options ao;
      ao.lr = s.lr;
      soundnet::adam opt(net, ao);
      xt::xtensor<float, 3> x = xt::zeros<float>({std::size_t(batch), std::size_t(1), std::size_t(clip_samples)});
      std::vector<int> labels(static_cast<std::size_t>(batch));
      const auto t0 = clock::now();
      double loss_sum = 0;
      for (int epoch = 0; epoch < s.epochs; ++epoch) {
        const auto order = soundnet::app::epoch_order(train.size(), static_cast<std::uint64_t>(s.seed) * 1000003u + std::uint64_t(fold), epoch, true);
        loss_sum = 0;
        for (long step = 0; step < steps; ++step) {
          for (long b = 0; b < batch; ++b) {
            const long clip = train[std::size_t(order[std::size_t(step * batch + b)])];
            const auto& w = waves[std::size_t(clip)];
            soundnet::normal_generator pick(static_cast<std::uint64_t>(s.seed) * 0x9E3779B97F4A7C15ULL +
                                            std::uint64_t(fold) * 0x100000001B3ULL + std::uint64_t(epoch) * 1000003u +
                                            std::uint64_t(step * batch + b) + 1);
            fill(x.data() + b * clip_samples, w, static_cast<long>(pick.next() % w.size()));
            labels[std::size_t(b)] = index_of(meta[std::size_t(clip)].target);
          }
          net.forward(x, soundnet::mode::training);
          const double loss = net.cross_entropy_loss(labels, k);
          if (!std::isfinite(loss))
            throw soundnet::error("fold " + std::to_string(fold) + ", epoch " + std::to_string(epoch + 1) +
                                  ": the training loss is not finite (a smaller --lr may help)");
          net.zero_grad();
          net.backward();
          opt.step();
          loss_sum += loss;
        }
        std::fprintf(stderr, "fold %d epoch %d/%d: training loss %.4f (%.0f s)\n", fold, epoch + 1, s.epochs,
                     loss_sum / double(steps), std::chrono::duration<double>(clock::now() - t0).count());
        std::fflush(stderr);
      }
      const double seconds = std::chrono::duration<double>(clock::now() - t0).count();
      train_seconds += seconds;
      // the test fold: 10 s from each clip's start, the mean of the logits over the output steps
      soundnet::eval::fold_result r;
      r.fold = fold;
      for (std::size_t at = 0; at < test.size(); at += std::size_t(batch)) {
        const long n = std::min<long>(batch, static_cast<long>(test.size() - at));
        xt::xtensor<float, 3> tx = xt::zeros<float>({std::size_t(n), std::size_t(1), std::size_t(clip_samples)});
        for (long b = 0; b < n; ++b) fill(tx.data() + b * clip_samples, waves[std::size_t(test[at + std::size_t(b)])], 0);
        net.forward(tx, soundnet::mode::inference);
        const auto z = net.object_logits();
        for (long b = 0; b < n; ++b) {
          int best = 0;
          double best_score = -std::numeric_limits<double>::infinity();
          for (int c = 0; c < k; ++c) {
            double score = 0;
            for (std::size_t j = 0; j < z.shape(2); ++j) score += z(std::size_t(b), std::size_t(c), j);
            if (score > best_score) best_score = score, best = c;
          }
          const int truth = index_of(meta[std::size_t(test[at + std::size_t(b)])].target);
          ++ev.confusion[std::size_t(truth)][std::size_t(best)];
          r.correct += best == truth;
          ++r.clips;
        }
      }
      ev.folds.push_back(r);
      fold_log.push_back({{"fold", fold}, {"train_clips", train.size()}, {"steps", steps * s.epochs},
                          {"final_training_loss", loss_sum / double(steps)}, {"train_seconds", seconds}});
      std::printf("fold %d: %ld of %ld correct, accuracy %s (trained on %zu clips, %ld steps, %.0f s)\n", fold, r.correct,
                  r.clips, fixed(r.accuracy()).c_str(), train.size(), steps * s.epochs, seconds);
      std::fflush(stdout);
    }
    for (const auto& f : ev.folds) ev.mean_accuracy += f.accuracy() / double(ev.folds.size());
    for (int c = 0; c < k; ++c) {
      long total = 0;
      for (long v : ev.confusion[std::size_t(c)]) total += v;
      ev.class_accuracy.push_back(total ? double(ev.confusion[std::size_t(c)][std::size_t(c)]) / double(total) : 0.0);
    }
    if (!s.out.empty())
      write_results(s.out,
                    {{"arch", Net::name}, {"meta", s.meta}, {"audio", s.audio},
                     {"supervised", "cross-entropy from random initialisation (seed " + std::to_string(s.seed) + ")"},
                     {"epochs", s.epochs}, {"batch", s.batch}, {"lr", s.lr}, {"train_seconds", train_seconds},
                     {"hardware_threads", std::thread::hardware_concurrency()}, {"per_fold", fold_log}},
                    ev);
    std::printf("mean accuracy: %s\n", fixed(ev.mean_accuracy).c_str());
    return 0;
  }
};

// The supervised baseline of network Net on the device --device names.
template <class Net>
struct supervised_on {
  const settings& s;
  template <class Device>
  int operator()() const {
    return supervised{s}.template operator()<Net, Device>();
  }
};

}  // namespace

int main(int argc, char** argv) {
  settings s;
  CLI::App app{"Evaluates sound features the paper's way: a linear SVM per fold (liblinear -s 1 -B 1, one-vs-rest),\n"
               "on precomputed features (--features) or on SoundNet's features of audio clips (--weights, --audio).",
               "soundnet-evaluate"};
  auto* features = app.add_option("--features", s.features,
                                  "(clips, features) .npy, row i for row i of --meta; or a folder of (channels, steps)\n"
                                  ".npy files, one per clip named by it (as --cache writes them), windowed");
  app.add_option("--meta", s.meta, "metadata CSV with filename, fold, target columns (ESC-50's format)")->required();
  auto* weights = app.add_option("--weights", s.weights, "SoundNet weights (safetensors), or 'random' (--seed)")->excludes(features);
  app.add_option("--arch", s.arch, "soundnet8 or soundnet5 (with --weights)");
  app.add_option("--scenes", s.scenes, "scene classes of the weights' second head: 401 or 365")->capture_default_str();
  app.add_option("--audio", s.audio, "the folder of the clips' audio (with --weights)");
  app.add_option("--layers", s.layers, "comma-separated layers (the paper's Table 6: conv4,conv5,pool5,conv6,conv7)")
      ->capture_default_str();
  app.add_option("--window-seconds", s.window_seconds, "window length over the feature time axis")
      ->capture_default_str()
      ->check(soundnet::app::number_in(1e-3, 10));
  app.add_option("--clip-seconds", s.clip_seconds, "the seconds a clip's features cover (with --features DIR)")
      ->capture_default_str()
      ->check(soundnet::app::number_in(1e-3, 1e6));
  app.add_option("--cache", s.cache, "a folder caching features per (weights, layer, clip)");
  app.add_option("--seed", s.seed, "the random initialisation of --weights random")->capture_default_str();
  app.add_option("--c", s.c, "the SVM's C (the authors: 0.01); default: cross-validated on the training folds")
      ->check(soundnet::app::number_in(1e-9, 1e9));
  app.add_option("--folds", s.folds, "the folds must be 1..K, each with clips (default: the folds present)")
      ->check(soundnet::app::integer_at_least(2));
  app.add_option("--out", s.out, "a folder for results.json, confusion.csv, per_class.csv, confusion.png (per layer)");
  auto* sup = app.add_flag("--supervised", s.supervised,
                           "train --arch from random initialisation with cross-entropy on the training folds\n"
                           "(the paper's Table 5 'scratch init' baseline) instead of an SVM on features")
                  ->excludes(features)
                  ->excludes(weights);
  app.add_option("--epochs", s.epochs, "with --supervised: passes over the training folds")
      ->capture_default_str()
      ->check(soundnet::app::integer_at_least(1));
  app.add_option("--batch", s.batch, "with --supervised: clips per step")
      ->capture_default_str()
      ->check(soundnet::app::integer_at_least(2));
  app.add_option("--lr", s.lr, "with --supervised: Adam's learning rate")
      ->capture_default_str()
      ->check(soundnet::app::number_in(1e-9, 10));
  soundnet::app::add_device_option(app, s.device);
  soundnet::app::add_math_option(app, s.math);
  soundnet::app::add_threads_option(app, s.threads);
  (void)sup;
  return soundnet::app::run(app, argc, argv, [&] {
    soundnet::app::check_math(s.device, s.math);
    if (!s.features.empty())
      return std::filesystem::is_directory(s.features) ? evaluate_feature_folder(s) : evaluate_feature_matrix(s);
    if (s.supervised) {
      if (s.audio.empty() || s.arch.empty()) throw usage_error("--supervised needs --arch and --audio");
      soundnet::app::apply_threads(s.threads);
      if (s.arch == "soundnet8") return soundnet::app::with_device(s.device, supervised_on<soundnet::soundnet8<1000, 0>>{s});
      if (s.arch == "soundnet5") return soundnet::app::with_device(s.device, supervised_on<soundnet::soundnet5<1000, 0>>{s});
      throw usage_error("--arch must be soundnet8 or soundnet5, got '" + s.arch + "'");
    }
    if (s.weights.empty() || s.audio.empty() || s.arch.empty())
      throw usage_error("give --features F.npy, or --arch, --weights and --audio (or --supervised)");
    soundnet::app::apply_threads(s.threads);
    return soundnet::app::with_architecture_on(s.device, s.arch, s.scenes, from_audio{s});
  });
}
