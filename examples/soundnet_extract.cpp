// soundnet-extract: SoundNet features of waveforms and audio files.
//
//   soundnet-extract --arch soundnet8 --weights W.safetensors --input-npy X.npy
//                    (--layer NAME | --all-layers) --out PATH
//   soundnet-extract --arch soundnet8 --weights W.safetensors [--layer pool5] [--pool mean|max]
//                    [--tile-to SECONDS] [--chunk-seconds S] (FILE | DIR)... [--list LIST] --out PATH
//
// X.npy: one float32 waveform, 22,050 Hz, already scaled to [-256, 256], shape (samples,).
// Audio/video files (with FFmpeg) are decoded to that form as they are read and processed in
// chunks (soundnet::feature_stream): memory is bounded by the chunk, not the file, and the
// features equal those of one forward over the whole file. Output: (C, T) float32 .npy, one
// per input (PATH/<file name>.npy, written step by step in Fortran order), or with --pool one
// matrix (files, C) in PATH and the file names of its rows in PATH.txt.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include "stream_input.hpp"

namespace fs = std::filesystem;

namespace {

const char* usage =
    "usage: soundnet-extract --arch soundnet8|soundnet5 --weights W.safetensors --input-npy X.npy\n"
    "                        (--layer NAME | --all-layers) --out PATH\n"
    "       soundnet-extract --arch soundnet8|soundnet5 --weights W.safetensors [--layer NAME] [--pool mean|max]\n"
    "                        [--tile-to SECONDS] [--chunk-seconds S] [--list LIST] (FILE | DIR)... --out PATH\n"
    "                        [--scenes 401|365] [--threads N]\n"
    "  X.npy      float32 waveform (samples,) at 22,050 Hz scaled to [-256, 256]\n"
    "  FILE, DIR  audio or video files (any format FFmpeg reads) or waveform .npy files, or folders of\n"
    "             them; --list: a file naming one input per line (relative to the list's folder)\n"
    "  --layer    a read-out point: conv1_linear, bn1, conv1, pool1, ..., conv8_objects, conv8_scenes\n"
    "             (default for audio input: pool5 for soundnet8, pool3 for soundnet5)\n"
    "  --pool     mean or max over time: one row per file in the matrix PATH (names in PATH.txt)\n"
    "  --tile-to  repeat shorter clips circularly to this many seconds (default: the network's\n"
    "             minimum input, 9.5 s for soundnet8; the authors' evaluation uses 10)\n"
    "  --chunk-seconds  audio is processed in chunks of about this length (default 60): memory stays\n"
    "             bounded for files of any length, and the features equal those of the whole file\n"
    "  --out      the .npy file (--input-npy --layer, or --pool) or a folder for <name>.npy files\n";

// Audio inputs: files as given, folders' regular files (sorted, not recursive), list entries.
std::vector<std::string> collect_inputs(const cli::args& a, std::vector<std::string>& failures) {
  std::vector<std::string> files;
  auto add = [&](const std::string& p) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<std::string> found;
      fs::directory_iterator it(p, ec), end;
      if (ec) {
        failures.push_back(p + ": cannot read directory: " + ec.message());
        return;
      }
      for (; it != end; it.increment(ec)) {
        if (ec) {
          failures.push_back(p + ": cannot read directory: " + ec.message());
          break;
        }
        const auto name = it->path().filename().string();
        if (!name.empty() && name[0] != '.' && it->is_regular_file(ec)) found.push_back(it->path().string());
      }
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else {
      files.push_back(p);  // a missing file is reported when it is read
    }
  };
  for (const auto& p : a.positional()) add(p);
  if (a.has("--list")) {
    const std::string list = a.str("--list");
    std::ifstream in(list);
    if (!in) throw soundnet::io_error(list, "cannot open list file");
    const fs::path base = fs::path(list).parent_path();
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty() || line[0] == '#') continue;
      add(fs::path(line).is_absolute() ? line : (base / line).string());
    }
  }
  return files;
}

// A one-line progress report on stderr, when stderr is a terminal: files done, the share of
// the current file (for long files), the rate and the estimated time left.
class progress {
 public:
  explicit progress(std::size_t total) : total_(total), on_(isatty(fileno(stderr)) != 0) {}
  void update(std::size_t done, double fraction = 0, const std::string& current = "") {
    if (!on_) return;
    const auto now = std::chrono::steady_clock::now();
    if (done != done_) {  // a file finished: the time per file so far
      done_ = done;
      finished_at_ = now;
    }
    if (done < total_ && now - last_ < std::chrono::milliseconds(200)) return;
    last_ = now;
    auto seconds = [](auto d) { return std::chrono::duration<double>(d).count(); };
    const double per_file = done > 0 ? seconds(finished_at_ - start_) / done : 0;
    // The current file from its own pace, the files after it at the average pace so far.
    const double in_file = seconds(now - finished_at_);
    const double current_left = fraction > 0 ? in_file * (1 - fraction) / fraction : per_file;
    const std::size_t after = done < total_ ? total_ - done - 1 : 0;
    const long eta = static_cast<long>(std::lround(done < total_ ? current_left + after * per_file : 0));
    std::fprintf(stderr, "\r\033[K[%zu/%zu] ", done, total_);
    if (fraction > 0) std::fprintf(stderr, "%s %d%%, ", current.c_str(), static_cast<int>(100 * fraction));
    const double elapsed = seconds(now - start_);
    std::fprintf(stderr, "%.2f files/s, ETA %ld:%02ld:%02ld ", elapsed > 0 ? (done + fraction) / elapsed : 0.0, eta / 3600,
                 eta / 60 % 60, eta % 60);
    if (done == total_) std::fputc('\n', stderr);
  }
  void message(const std::string& line) {  // a line that must not mix with the progress line
    std::cerr << (on_ ? "\r\033[K" : "") << line << "\n";
  }

 private:
  std::size_t total_, done_ = 0;
  bool on_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now(), finished_at_ = start_, last_{};
};

struct extract {
  const cli::args& a;

  template <class Net>
  int operator()() const {
    soundnet::model<Net> net;
    const bool audio_mode = !a.has("--input-npy");
    std::string layer = a.str("--layer", "");
    if (layer.empty() && audio_mode && !a.has("--all-layers")) layer = net.has_output("pool5") ? "pool5" : "pool3";
    if (!layer.empty() && !net.has_output(layer)) {
      std::string known;
      for (const auto& n : net.output_names()) known += " " + n;
      throw cli::usage_error("unknown layer '" + layer + "' for " + Net::name + "; known:" + known);
    }
    soundnet::io::load_weights(net, a.str("--weights"));
    return audio_mode ? from_audio(net, layer) : from_npy(net, layer);
  }

  // Writes the (C, T) read-out of clip 0 of the last forward.
  template <class Model>
  static void write_layer(Model& net, const std::string& name, const std::string& path) {
    const auto features = net.output(name);  // (1, C, T)
    xt::xtensor<float, 2> ct = xt::view(features, 0, xt::all(), xt::all());
    soundnet::io::write_npy(path, ct);
  }

  template <class Model>
  void run(Model& net, const std::vector<float>& wave, const std::string& input, const std::string& layer) const {
    const bool all = a.has("--all-layers") || net.inside_fused_block(layer);
    try {
      net.forward(wave.data(), 1, static_cast<long>(wave.size()), soundnet::mode::inference,
                  all ? soundnet::keep::all : soundnet::keep::block_outputs);
    } catch (const soundnet::shape_error& e) {
      throw soundnet::io_error(input, e.what());
    }
  }

  template <class Model>
  int from_npy(Model& net, const std::string& layer) const {
    if (!a.positional().empty() || a.has("--list")) throw cli::usage_error("give --input-npy or audio files, not both");
    if (a.has("--layer") == a.has("--all-layers")) throw cli::usage_error("give exactly one of --layer NAME and --all-layers");
    const std::string input = a.str("--input-npy");
    run(net, cli::read_waveform(input), input, layer);
    const std::string out = a.str("--out");
    if (a.has("--all-layers")) {
      make_directory(out);
      for (const auto& name : net.output_names()) write_layer(net, name, (fs::path(out) / (name + ".npy")).string());
    } else {
      write_layer(net, layer, out);
    }
    return 0;
  }

  template <class Model>
  int from_audio(Model& net, const std::string& layer) const {
#ifndef SOUNDNET_EXAMPLES_WITH_FFMPEG
    (void)net, (void)layer;
    throw cli::usage_error("this soundnet-extract was built without FFmpeg: audio files cannot be read; "
                           "decode them with another tool to .npy and use --input-npy");
#else
    const std::string pool = a.str("--pool", "");
    if (!pool.empty() && pool != "mean" && pool != "max") throw cli::usage_error("--pool must be mean or max");
    if (!pool.empty() && a.has("--all-layers")) throw cli::usage_error("--pool takes one --layer, not --all-layers");
    const double tile_to = a.real("--tile-to", 0.0);
    if (!(tile_to >= 0) || tile_to > 3600) throw cli::usage_error("--tile-to must be between 0 and 3600 seconds");
    const double chunk_seconds = a.real("--chunk-seconds", 60.0);
    if (!(chunk_seconds > 0) || chunk_seconds > 3600) throw cli::usage_error("--chunk-seconds must be between 0 and 3600");
    const long min_samples = std::max<long>(Model::min_input_length(), std::lround(tile_to * 22050));
    std::vector<std::string> failures;
    const auto files = collect_inputs(a, failures);
    const std::size_t inputs = files.size() + failures.size();  // unreadable folders count as inputs
    if (files.empty() && failures.empty()) throw cli::usage_error("no input files");
    const std::string out = a.str("--out");
    if (pool.empty()) make_directory(out);

    const std::vector<std::string> names = a.has("--all-layers") ? net.output_names() : std::vector<std::string>{layer};
    soundnet::feature_stream<Model> stream(net, names, std::lround(chunk_seconds * 22050));
    std::vector<std::vector<float>> rows;
    std::vector<std::string> row_names;
    progress bar(files.size());
    for (const auto& f : failures) bar.message("soundnet-extract: " + f);
    std::size_t done = 0;
    for (const auto& file : files) {
      try {
        const std::string stem = fs::path(file).filename().string();
        // Writers (one .npy per read-out, written as the steps arrive) or pooling accumulators.
        std::vector<std::unique_ptr<soundnet::io::npy_stream_writer>> writers;
        if (pool.empty()) {
          const fs::path dir = a.has("--all-layers") ? fs::path(out) / stem : fs::path(out);
          if (a.has("--all-layers")) make_directory(dir.string());
          for (std::size_t j = 0; j < names.size(); ++j)
            writers.push_back(std::make_unique<soundnet::io::npy_stream_writer>(
                (dir / ((a.has("--all-layers") ? names[j] : stem) + ".npy")).string(), stream.channels(j)));
        }
        std::vector<double> acc(static_cast<std::size_t>(stream.channels(0)), pool == "max" ? -INFINITY : 0.0);
        long steps = 0;
        auto sink = [&](std::size_t j, long, const xt::xtensor<float, 2>& block) {
          const long n = static_cast<long>(block.shape(1));
          if (pool.empty()) return writers[j]->append(block.data(), n);
          for (std::size_t c = 0; c < acc.size(); ++c)
            for (long t = 0; t < n; ++t)
              acc[c] = pool == "max" ? std::max(acc[c], double(block(c, t))) : acc[c] + block(c, t);
          steps += n;
        };
        cli::stream_file(file, min_samples, stream, sink, [&](double fraction) { bar.update(done, fraction, stem); });
        for (auto& w : writers) w->close();
        if (!pool.empty()) {
          std::vector<float> row(acc.size());
          for (std::size_t c = 0; c < acc.size(); ++c) row[c] = static_cast<float>(pool == "max" ? acc[c] : acc[c] / steps);
          rows.push_back(std::move(row));
          row_names.push_back(file);
        }
      } catch (const std::exception& e) {
        failures.push_back(e.what());
        bar.message(std::string("soundnet-extract: ") + e.what());
      }
      bar.update(++done);
    }
    if (!pool.empty() && !rows.empty()) {
      xt::xtensor<float, 2> matrix = xt::empty<float>({rows.size(), rows[0].size()});
      for (std::size_t r = 0; r < rows.size(); ++r) std::copy(rows[r].begin(), rows[r].end(), &matrix(r, 0));
      soundnet::io::write_npy(out, matrix);
      std::ofstream list(out + ".txt");
      for (const auto& n : row_names) list << n << "\n";
      if (!list) throw soundnet::io_error(out + ".txt", "cannot write the row names");
    }
    if (!failures.empty())
      std::cerr << "soundnet-extract: " << failures.size() << " of " << inputs << " inputs failed\n";
    return failures.empty() ? 0 : 1;
#endif
  }

  static void make_directory(const std::string& path) {
    std::error_code ec;
    fs::create_directories(path, ec);
    if (ec || !fs::is_directory(path))
      throw soundnet::io_error(path, "cannot create output directory" + (ec ? ": " + ec.message() : std::string()));
  }
};

}  // namespace

int main(int argc, char** argv) {
  try {
    const cli::args a(argc, argv,
                      {"--arch", "--weights", "--input-npy", "--layer", "--out", "--scenes", "--threads", "--pool",
                       "--tile-to", "--list", "--chunk-seconds"},
                      {"--all-layers"});
    if (a.help()) {
      std::cout << usage;
      return 0;
    }
    if (a.has("--layer") && a.has("--all-layers")) throw cli::usage_error("give exactly one of --layer NAME and --all-layers");
    if (!a.has("--input-npy") && a.positional().empty() && !a.has("--list"))
      throw cli::usage_error("no input: give --input-npy X.npy, audio files or folders, or --list");
    soundnet::set_num_threads(static_cast<int>(a.integer("--threads", soundnet::num_threads(), 1)));
    return cli::with_architecture(a.str("--arch"), a.integer("--scenes", 401, 1), extract{a});
  } catch (const cli::usage_error& e) {
    std::cerr << "soundnet-extract: " << e.what() << "\n" << usage;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "soundnet-extract: error: " << e.what() << "\n";
    return 1;
  }
}
