// soundnet-extract: SoundNet features of waveforms and audio files.
//
//   soundnet-extract --arch soundnet8 --weights W.safetensors --input-npy X.npy
//                    (--layer NAME | --all-layers) --out PATH
//   soundnet-extract --arch soundnet8 --weights W.safetensors [--layer pool5] [--pool mean|max]
//                    [--tile-to SECONDS] [--chunk-seconds S] (FILE | DIR)... [--list LIST] --out PATH
//   --device cuda: the network on a GPU (a build with the CUDA device)
//
// X.npy: one float32 waveform, 22,050 Hz, already scaled to [-256, 256], shape (samples,).
// Audio/video files (with FFmpeg) are decoded to that form as they are read and processed in
// chunks (soundnet::feature_stream): memory is bounded by the chunk, not the file, and the
// features equal those of one forward over the whole file. Output: (C, T) float32 .npy, one
// per input (PATH/<file name>.npy, written step by step in Fortran order), or with --pool one
// matrix (files, C) in PATH and the file names of its rows in PATH.txt.
#include <soundnet/app/cli.hpp>
#include <soundnet/app/inputs.hpp>
#include <soundnet/app/progress.hpp>
#include <soundnet/app/waveform.hpp>
#include <xtensor/xview.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

namespace fs = std::filesystem;

namespace {

using soundnet::app::usage_error;

struct settings {
  std::string arch, weights, input_npy, layer, out, pool, list, device = "cpu", math = "strict";
  std::vector<std::string> inputs;
  int scenes = 401, threads = 0;
  bool all_layers = false;
  double tile_to = 0, chunk_seconds = 60;
};

struct extract {
  const settings& s;

  template <class Net, class Device = soundnet::cpu>
  int operator()() const {
    soundnet::model<Net, float, Device> net;
    soundnet::app::apply_math(net, s.math);
    const bool audio_mode = s.input_npy.empty();
    std::string layer = s.layer;
    if (layer.empty() && audio_mode && !s.all_layers) layer = net.has_output("pool5") ? "pool5" : "pool3";
    if (!layer.empty() && !net.has_output(layer)) {
      std::string known;
      for (const auto& n : net.output_names()) known += " " + n;
      throw usage_error("unknown layer '" + layer + "' for " + Net::name + "; known:" + known);
    }
    soundnet::io::load_weights(net, s.weights);
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
  int from_npy(Model& net, const std::string& layer) const {
    if (!s.inputs.empty() || !s.list.empty()) throw usage_error("give --input-npy or audio files, not both");
    if (s.layer.empty() == !s.all_layers) throw usage_error("give exactly one of --layer NAME and --all-layers");
    const auto wave = soundnet::app::read_waveform(s.input_npy);
    const bool all = s.all_layers || net.inside_fused_block(layer);
    try {
      net.forward(wave.data(), 1, static_cast<long>(wave.size()), soundnet::mode::inference,
                  all ? soundnet::keep::all : soundnet::keep::block_outputs);
    } catch (const soundnet::shape_error& e) {
      throw soundnet::io_error(s.input_npy, e.what());
    }
    if (s.all_layers) {
      soundnet::app::make_directory(s.out);
      for (const auto& name : net.output_names()) write_layer(net, name, (fs::path(s.out) / (name + ".npy")).string());
    } else {
      write_layer(net, layer, s.out);
    }
    return 0;
  }

  template <class Model>
  int from_audio(Model& net, const std::string& layer) const {
    const std::string& pool = s.pool;
    if (!pool.empty() && s.all_layers) throw usage_error("--pool takes one --layer, not --all-layers");
    const long min_samples =
        std::max<long>(Model::min_input_length(), soundnet::audio_format::samples(s.tile_to));
    std::vector<std::string> failures;
    const auto files = soundnet::app::collect_inputs(s.inputs, s.list, failures);
    const std::size_t inputs = files.size() + failures.size();  // unreadable folders count as inputs
    if (files.empty() && failures.empty()) throw usage_error("no input files");
    if (pool.empty()) soundnet::app::make_directory(s.out);

    const std::vector<std::string> names = s.all_layers ? net.output_names() : std::vector<std::string>{layer};
    soundnet::feature_stream<Model> stream(net, names, soundnet::audio_format::samples(s.chunk_seconds));
    std::vector<std::vector<float>> rows;
    std::vector<std::string> row_names;
    soundnet::app::progress bar(files.size());
    for (const auto& f : failures) bar.message("soundnet-extract: " + f);
    std::size_t done = 0;
    for (const auto& file : files) {
      try {
        const std::string stem = fs::path(file).filename().string();
        // Writers (one .npy per read-out, written as the steps arrive) or pooling accumulators.
        std::vector<std::unique_ptr<soundnet::io::npy_stream_writer>> writers;
        if (pool.empty()) {
          const fs::path dir = s.all_layers ? fs::path(s.out) / stem : fs::path(s.out);
          if (s.all_layers) soundnet::app::make_directory(dir.string());
          for (std::size_t j = 0; j < names.size(); ++j)
            writers.push_back(std::make_unique<soundnet::io::npy_stream_writer>(
                (dir / ((s.all_layers ? names[j] : stem) + ".npy")).string(), stream.channels(j)));
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
        soundnet::app::stream_file(file, min_samples, stream, sink,
                                   [&](double fraction) { bar.update(done, fraction, stem); });
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
      soundnet::io::write_npy(s.out, matrix);
      std::ofstream list(s.out + ".txt");
      for (const auto& n : row_names) list << n << "\n";
      if (!list) throw soundnet::io_error(s.out + ".txt", "cannot write the row names");
    }
    if (!failures.empty())
      std::cerr << "soundnet-extract: " << failures.size() << " of " << inputs << " inputs failed\n";
    return failures.empty() ? 0 : 1;
  }
};

}  // namespace

int main(int argc, char** argv) {
  settings s;
  CLI::App app{"SoundNet features of waveforms (.npy) and of audio and video files (any format FFmpeg reads).\n"
               "Output: (C, T) float32 .npy per input and read-out, or with --pool one matrix (files, C).",
               "soundnet-extract"};
  soundnet::app::add_architecture_options(app, s.arch, s.scenes);
  app.add_option("--weights", s.weights, "weights (safetensors)")->required();
  app.add_option("--out", s.out, "the .npy file (--input-npy --layer, or --pool) or a folder for <name>.npy files")
      ->required();
  app.add_option("--input-npy", s.input_npy, "one float32 waveform (samples,) at 22,050 Hz scaled to [-256, 256]");
  app.add_option("inputs", s.inputs, "audio or video files, waveform .npy files, or folders of them");
  app.add_option("--list", s.list, "a file naming one input per line (relative to the list's folder)");
  app.add_option("--layer", s.layer,
                 "a read-out point: conv1_linear, bn1, conv1, pool1, ..., conv8_objects, conv8_scenes "
                 "(default for audio input: pool5 for soundnet8, pool3 for soundnet5)");
  app.add_flag("--all-layers", s.all_layers, "every read-out point");
  app.add_option("--pool", s.pool, "mean or max over time: one row per file in the matrix --out (names in <out>.txt)")
      ->check(CLI::IsMember({"mean", "max"}));
  app.add_option("--tile-to", s.tile_to,
                 "repeat shorter clips circularly to this many seconds (default: the network's minimum input, "
                 "9.5 s for soundnet8; the authors' evaluation uses 10)")
      ->check(soundnet::app::number_in(0.0, 3600.0));
  app.add_option("--chunk-seconds", s.chunk_seconds,
                 "audio is processed in chunks of about this length: memory stays bounded for files of any "
                 "length, and the features equal those of the whole file")
      ->capture_default_str()
      ->check(soundnet::app::number_in(0.01, 3600.0));
  soundnet::app::add_device_option(app, s.device);
  soundnet::app::add_math_option(app, s.math);
  soundnet::app::add_threads_option(app, s.threads);
  return soundnet::app::run(app, argc, argv, [&] {
    soundnet::app::check_math(s.device, s.math);
    if (!s.layer.empty() && s.all_layers) throw usage_error("give exactly one of --layer NAME and --all-layers");
    if (s.input_npy.empty() && s.inputs.empty() && s.list.empty())
      throw usage_error("no input: give --input-npy X.npy, audio files or folders, or --list");
    if (s.input_npy.empty() && !soundnet::app::with_media()) {
      bool all_npy = s.list.empty();
      for (const auto& f : s.inputs) all_npy = all_npy && fs::path(f).extension() == ".npy";
      if (!all_npy)
        throw usage_error("this soundnet-extract was built without FFmpeg (soundnet::media): audio files cannot be "
                          "read; decode them with another tool to .npy");
    }
    soundnet::app::apply_threads(s.threads);
    return soundnet::app::with_architecture_on(s.device, s.arch, s.scenes, extract{s});
  });
}
