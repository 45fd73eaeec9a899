// soundnet-predict: the object and scene categories SoundNet hears in audio files.
//
//   soundnet-predict --arch soundnet8 --weights W.safetensors [--top 5] [--json]
//                    [--scenes 401|365] [--labels-objects F] [--labels-scenes F] [--tile-to S] FILE...
//
// FILE: an audio or video file (with FFmpeg) or a waveform .npy. For each output step (one per
// Net::output_stride() samples: 65,536, 2.97 s, for SoundNet-8) and for the whole clip (the mean of
// the steps' probabilities): the top-k object and scene categories with their probabilities.
// Audio files are decoded and processed in chunks (soundnet::feature_stream): memory stays
// bounded for files of any length.
#include <soundnet/app/cli.hpp>
#include <soundnet/app/labels.hpp>
#include <soundnet/app/waveform.hpp>

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>

namespace {

using soundnet::app::usage_error;

struct settings {
  std::string arch, weights, labels_objects, labels_scenes, device = "cpu", math = "strict";
  std::vector<std::string> files;
  int scenes = 401, threads = 0;
  long top = 5;
  bool json = false;
  double tile_to = 0;
};

// softmax over the classes of a block of logits (classes, steps) at step t
std::vector<double> softmax(const xt::xtensor<float, 2>& logits, std::size_t t) {
  std::vector<double> p(logits.shape(0));
  double m = -INFINITY, s = 0;
  for (std::size_t k = 0; k < p.size(); ++k) m = std::max(m, double(logits(k, t)));
  for (std::size_t k = 0; k < p.size(); ++k) s += (p[k] = std::exp(logits(k, t) - m));
  for (auto& v : p) v /= s;
  return p;
}

nlohmann::json top(const std::vector<double>& p, const std::vector<std::string>& names, std::size_t k) {
  std::vector<std::size_t> order(p.size());
  std::iota(order.begin(), order.end(), 0);
  k = std::min(k, p.size());
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](auto a, auto b) { return p[a] > p[b]; });
  nlohmann::json out = nlohmann::json::array();
  for (std::size_t i = 0; i < k; ++i) out.push_back({{"index", order[i]}, {"name", names[order[i]]}, {"p", p[order[i]]}});
  return out;
}

std::string text(const nlohmann::json& categories) {
  std::ostringstream s;
  for (std::size_t i = 0; i < categories.size(); ++i)
    s << (i ? ", " : "") << categories[i]["name"].get<std::string>() << " " << std::fixed << std::setprecision(3)
      << categories[i]["p"].get<double>();
  return s.str();
}

struct predict {
  const settings& s;

  template <class Net, class Device = soundnet::cpu>
  int operator()() const {
    using model_t = soundnet::model<Net, float, Device>;
    model_t net;
    soundnet::app::apply_math(net, s.math);
    soundnet::io::load_weights(net, s.weights);
    const std::string data = soundnet::app::labels_folder(SOUNDNET_EXAMPLE_DATA);
    const auto objects = soundnet::app::read_labels(
        s.labels_objects.empty() ? data + "categories_imagenet.txt" : s.labels_objects, Net::objects);
    const auto scenes = soundnet::app::read_labels(
        !s.labels_scenes.empty() ? s.labels_scenes
                                 : data + (Net::scenes == 365 ? "categories_places365.txt" : "categories_places2_soundnet401.txt"),
        Net::scenes);
    const std::size_t k = static_cast<std::size_t>(s.top);
    const long min_samples = std::max<long>(Net::min_input_length(), soundnet::audio_format::samples(s.tile_to));
    const double step_seconds = soundnet::audio_format::seconds(Net::output_stride());

    // The two heads, streamed: memory stays bounded for files of any length.
    const auto& outputs = net.output_names();
    soundnet::feature_stream<model_t> stream(net, {outputs[outputs.size() - 2], outputs.back()});
    nlohmann::json all = nlohmann::json::array();
    long failed = 0;
    for (const auto& file : s.files) {
      try {
        std::vector<double> sum_o(Net::objects, 0.0), sum_s(Net::scenes, 0.0);
        nlohmann::json per_step = nlohmann::json::array();
        // Both heads' blocks arrive together, objects first, for the same steps.
        auto sink = [&](std::size_t head, long first, const xt::xtensor<float, 2>& block) {
          for (std::size_t t = 0; t < block.shape(1); ++t) {
            const auto p = softmax(block, t);
            auto& sum = head == 0 ? sum_o : sum_s;
            for (std::size_t c = 0; c < p.size(); ++c) sum[c] += p[c];
            if (head == 0)
              per_step.push_back({{"start_s", (first + static_cast<long>(t)) * step_seconds}, {"objects", top(p, objects, k)}});
            else
              per_step[static_cast<std::size_t>(first) + t]["scenes"] = top(p, scenes, k);
          }
        };
        const long n = soundnet::app::stream_file(file, min_samples, stream, sink, [](double) {});
        const std::size_t steps = per_step.size();
        for (auto& v : sum_o) v /= static_cast<double>(steps);
        for (auto& v : sum_s) v /= static_cast<double>(steps);
        nlohmann::json result = {{"file", file},
                                 {"duration_s", soundnet::audio_format::seconds(n)},
                                 {"step_s", step_seconds},
                                 {"clip", {{"objects", top(sum_o, objects, k)}, {"scenes", top(sum_s, scenes, k)}}},
                                 {"steps", per_step}};
        if (s.json) {
          all.push_back(result);
        } else {
          std::cout << file << " (" << std::fixed << std::setprecision(1) << soundnet::audio_format::seconds(n) << " s)\n"
                    << "  clip    objects: " << text(result["clip"]["objects"]) << "\n"
                    << "          scenes:  " << text(result["clip"]["scenes"]) << "\n";
          for (std::size_t t = 0; t < steps; ++t)
            std::cout << "  " << std::setw(5) << std::setprecision(1) << t * step_seconds << " s objects: "
                      << text(per_step[t]["objects"]) << "\n          scenes:  " << text(per_step[t]["scenes"]) << "\n";
        }
      } catch (const std::exception& e) {
        std::cerr << "soundnet-predict: " << e.what() << "\n";
        ++failed;
      }
    }
    if (s.json) std::cout << all.dump(2) << "\n";
    if (failed) std::cerr << "soundnet-predict: " << failed << " of " << s.files.size() << " files failed\n";
    return failed ? 1 : 0;
  }
};

}  // namespace

int main(int argc, char** argv) {
  settings s;
  CLI::App app{"The object and scene categories SoundNet hears in audio files: the top-k per output step and\n"
               "for the whole clip (the mean of the steps' probabilities).",
               "soundnet-predict"};
  soundnet::app::add_architecture_options(app, s.arch, s.scenes);
  app.add_option("--weights", s.weights, "weights (safetensors)")->required();
  app.add_option("files", s.files, "audio or video files (any format FFmpeg reads) or waveform .npy files")->required();
  app.add_option("--top", s.top, "categories listed per step and per clip")->capture_default_str()->check(soundnet::app::integer_at_least(1));
  app.add_flag("--json", s.json, "one JSON document on stdout instead of text");
  app.add_option("--labels-objects", s.labels_objects, "one category name per line, in class order (default: ImageNet)");
  app.add_option("--labels-scenes", s.labels_scenes, "the same for scenes (default: Places2-401 or Places365)");
  app.add_option("--tile-to", s.tile_to, "repeat shorter clips circularly to this many seconds")
      ->check(soundnet::app::number_in(0.0, 3600.0));
  soundnet::app::add_device_option(app, s.device);
  soundnet::app::add_math_option(app, s.math);
  soundnet::app::add_threads_option(app, s.threads);
  return soundnet::app::run(app, argc, argv, [&] {
    soundnet::app::check_math(s.device, s.math);
    soundnet::app::apply_threads(s.threads);
    return soundnet::app::with_architecture_on(s.device, s.arch, s.scenes, predict{s});
  });
}
