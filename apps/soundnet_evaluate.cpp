// soundnet-evaluate: the paper's evaluation of sound features on a k-fold dataset (ESC-50, ESC-10,
// ...): a linear SVM (liblinear -s 1 -B 1, one-vs-rest) per fold, trained on the other folds.
//
//   soundnet-evaluate --features F.npy --meta M.csv [--c C] [--folds K] [--out DIR]
//   soundnet-evaluate --arch soundnet8 --weights W.safetensors --audio DIR --meta M.csv
//                     [--layers pool5,conv6] [--window-seconds 1] [--cache DIR] [--c C] [--out DIR]
//
// The second form is the authors' protocol (../shared/README.md section 1): each clip of M.csv
// (its audio in DIR: the filename, or its stem with any extension) is repeated circularly to
// 10 s, SoundNet's features at each layer are cut into windows of --window-seconds of feature
// time steps at every position (a window's row: its steps' features side by side), the SVM is
// trained on the training folds' windows, and a test clip's score is the mean of its windows'
// decision values. Features are cached per (weights, layer, clip) in --cache, so other C values
// or layers cost only the SVM. --weights random: the paper's random initialisation (--seed).
//
// F.npy: (N, D) float32 or float64, row i the features of the clip in row i of M.csv. M.csv: a
// header with (at least) the columns filename, fold and target (ESC-50's meta/esc50.csv format).
// Without --c, C is chosen per test fold by leave-one-fold-out on the training folds only, from
// the grid 0.001, 0.01, 0.1, 1, 10. Prints the per-fold and mean accuracy (the last line is
// "mean accuracy: 0.xxxx"); --out DIR also gets results.json (everything), confusion.csv and
// per_class.csv, and confusion.png when gnuplot is there.
#include <soundnet/app/cli.hpp>
#include <soundnet/app/manifest.hpp>
#include <soundnet/app/progress.hpp>
#include <soundnet/app/waveform.hpp>
#include <soundnet/eval/svm.hpp>

#include <nlohmann/json.hpp>
#include <xtensor/xview.hpp>

#include <chrono>
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
  std::string features, meta, out, arch, weights, audio, layers = "pool5", cache;
  double c = 0, window_seconds = 1.0;
  int folds = 0, scenes = 401, threads = 0;
  long seed = 1;
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

// Prints the per-fold results, writes --out; returns the mean accuracy.
double report(const settings& s, const soundnet::eval::evaluation& ev, bool cross_validated, const std::string& out,
              const nlohmann::json& about) {
  for (const auto& f : ev.folds)
    std::printf("fold %d: %ld of %ld correct, accuracy %s (C %g%s)\n", f.fold, f.correct, f.clips,
                fixed(f.accuracy()).c_str(), f.c, cross_validated ? ", cross-validated on the training folds" : "");
  std::fflush(stdout);
  if (!out.empty()) {
    std::filesystem::create_directories(out);
    nlohmann::json j = about;
    j["meta"] = s.meta, j["svm"] = "liblinear -s 1 -B 1, one-vs-rest";
    j["liblinear"] = soundnet::eval::liblinear_version();
    j["c"] = cross_validated ? nlohmann::json("cross-validated") : nlohmann::json(s.c);
    if (cross_validated) j["c_grid"] = ev.c_grid;
    j["mean_accuracy"] = ev.mean_accuracy;
    for (const auto& f : ev.folds)
      j["folds"].push_back({{"fold", f.fold}, {"clips", f.clips}, {"correct", f.correct}, {"accuracy", f.accuracy()}, {"c", f.c}});
    j["classes"] = ev.classes, j["class_accuracy"] = ev.class_accuracy, j["confusion"] = ev.confusion;
    std::ofstream(out + "/results.json") << j.dump(2) << "\n";
    std::ofstream confusion(out + "/confusion.csv"), share(out + "/confusion_share.csv"), per_class(out + "/per_class.csv");
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
    const bool png = plot_confusion(out + "/confusion_share.csv", out + "/confusion.png", ev.classes.size());
    std::fprintf(stderr, "soundnet-evaluate: results.json, confusion.csv, per_class.csv%s in %s\n",
                 png ? ", confusion.png" : " (no confusion.png: gnuplot is missing)", out.c_str());
    std::fflush(stderr);
  }
  return ev.mean_accuracy;
}

soundnet::eval::evaluation_options options_of(const settings& s) {
  soundnet::eval::evaluation_options o;
  o.cross_validate_c = s.c <= 0;
  if (s.c > 0) o.svm.c = s.c;
  o.folds = s.folds;
  return o;
}

int evaluate_features(const settings& s) {
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

// The audio of a metadata row: DIR/filename, else DIR/<stem>.<any extension> (ESC-10's folders
// keep ESC-50's stems with their own extension).
std::string audio_of(const std::string& dir, const std::string& filename, const std::map<std::string, std::string>& by_stem) {
  const std::string exact = dir + "/" + filename;
  if (std::filesystem::exists(exact)) return exact;
  const auto it = by_stem.find(std::filesystem::path(filename).stem().string());
  return it != by_stem.end() ? it->second : exact;
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

  template <class Net>
  int operator()() const {
    constexpr long clip_samples = 10L * soundnet::audio_format::sample_rate;  // the authors' 10 s
    soundnet::model<Net> net(static_cast<std::uint64_t>(s.seed));
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
    std::map<std::string, std::string> by_stem;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(s.audio, ec))
      if (e.is_regular_file()) by_stem.emplace(e.path().stem().string(), e.path().string());
    if (ec) throw soundnet::io_error(s.audio, "cannot read the audio folder: " + ec.message());
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
      soundnet::eval::feature_set data;
      const long channels = static_cast<long>(feats[l][0].shape()[0]), steps = static_cast<long>(feats[l][0].shape()[1]);
      const long window = std::max(1L, std::lround(s.window_seconds * double(steps) / 10.0));
      if (window > steps)
        throw usage_error("--window-seconds " + std::to_string(s.window_seconds) + " is longer than the 10 s clips");
      data.dim = channels * window;
      for (std::size_t i = 0; i < meta.size(); ++i) {
        const auto& f = feats[l][i];
        for (long t = 0; t + window <= steps; ++t) {  // every position; a row: the window's steps side by side
          for (long k = 0; k < window; ++k)
            for (long c = 0; c < channels; ++c) data.rows.push_back(f(std::size_t(c), std::size_t(t + k)));
          data.row_clip.push_back(static_cast<long>(i));
        }
        data.clip_fold.push_back(meta[i].fold);
        data.clip_class.push_back(meta[i].target);
        data.clip_name.push_back(meta[i].filename + " (row " + std::to_string(i + 2) + " of " + s.meta + ")");
      }
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

}  // namespace

int main(int argc, char** argv) {
  settings s;
  CLI::App app{"Evaluates sound features the paper's way: a linear SVM per fold (liblinear -s 1 -B 1, one-vs-rest),\n"
               "on precomputed features (--features) or on SoundNet's features of audio clips (--weights, --audio).",
               "soundnet-evaluate"};
  auto* features = app.add_option("--features", s.features, "(clips, features) .npy, row i for row i of --meta");
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
  app.add_option("--cache", s.cache, "a folder caching features per (weights, layer, clip)");
  app.add_option("--seed", s.seed, "the random initialisation of --weights random")->capture_default_str();
  app.add_option("--c", s.c, "the SVM's C (the authors: 0.01); default: cross-validated on the training folds")
      ->check(soundnet::app::number_in(1e-9, 1e9));
  app.add_option("--folds", s.folds, "the folds must be 1..K, each with clips (default: the folds present)")
      ->check(soundnet::app::integer_at_least(2));
  app.add_option("--out", s.out, "a folder for results.json, confusion.csv, per_class.csv, confusion.png (per layer)");
  soundnet::app::add_threads_option(app, s.threads);
  (void)weights;
  return soundnet::app::run(app, argc, argv, [&] {
    if (!s.features.empty()) return evaluate_features(s);
    if (s.weights.empty() || s.audio.empty() || s.arch.empty())
      throw usage_error("give --features F.npy, or --arch, --weights and --audio");
    soundnet::app::apply_threads(s.threads);
    return soundnet::app::with_architecture(s.arch, s.scenes, from_audio{s});
  });
}
