// soundnet-predict: the object and scene categories SoundNet hears in audio files.
//
//   soundnet-predict --arch soundnet8 --weights W.safetensors [--top 5] [--json]
//                    [--scenes 401|365] [--labels-objects F] [--labels-scenes F] [--tile-to S] FILE...
//
// FILE: an audio or video file (with FFmpeg) or a waveform .npy. For each output step (one per
// Net::output_stride() samples, about 6 s for SoundNet-8) and for the whole clip (the mean of
// the steps' probabilities): the top-k object and scene categories with their probabilities.
// Audio files are decoded and processed in chunks (soundnet::feature_stream): memory stays
// bounded for files of any length.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <numeric>

#include "stream_input.hpp"

namespace fs = std::filesystem;

namespace {

const char* usage =
    "usage: soundnet-predict --arch soundnet8|soundnet5 --weights W.safetensors [--top K] [--json]\n"
    "                        [--scenes 401|365] [--labels-objects FILE] [--labels-scenes FILE]\n"
    "                        [--tile-to SECONDS] [--threads N] FILE...\n"
    "  FILE      audio or video files (any format FFmpeg reads) or waveform .npy files\n"
    "  --top     categories listed per step and per clip (default 5)\n"
    "  --json    one JSON document on stdout instead of text\n"
    "  --labels-objects, --labels-scenes: one category name per line, in class order (default:\n"
    "            the bundled ImageNet list and the Places2-401 or Places365 list)\n";

// Category names: "n01440764 tench, Tinca tinca" -> "tench, Tinca tinca";
// "/a/abbey" or "/a/airfield 0" -> "abbey", "airfield".
std::vector<std::string> read_labels(const std::string& path, std::size_t classes) {
  std::ifstream in(path);
  if (!in) throw soundnet::io_error(path, "cannot open label file");
  std::vector<std::string> names;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    if (line[0] == '/') {
      line = line.substr(3);
      const auto space = line.rfind(' ');
      if (space != std::string::npos && line.find_first_not_of("0123456789", space + 1) == std::string::npos)
        line = line.substr(0, space);
    } else if (line.size() > 10 && line[0] == 'n' && line[9] == ' ') {
      line = line.substr(10);
    }
    names.push_back(line);
  }
  if (names.size() != classes)
    throw soundnet::io_error(path, "has " + std::to_string(names.size()) + " categories; the network has " +
                                       std::to_string(classes));
  return names;
}

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

// The bundled label files: in the source tree for a build, in share/soundnet/labels when installed.
std::string labels_folder() {
  const fs::path source = fs::path(SOUNDNET_EXAMPLE_DATA) / "labels";
  if (fs::is_directory(source)) return source.string() + "/";
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  const fs::path installed = exe.parent_path().parent_path() / "share" / "soundnet" / "labels";
  return installed.string() + "/";
}

struct predict {
  const cli::args& a;

  template <class Net>
  int operator()() const {
    soundnet::model<Net> net;
    soundnet::io::load_weights(net, a.str("--weights"));
    const std::string data = labels_folder();
    const auto objects = read_labels(a.str("--labels-objects", data + "categories_imagenet.txt"), Net::objects);
    const auto scenes = read_labels(
        a.str("--labels-scenes", data + (Net::scenes == 365 ? "categories_places365.txt" : "categories_places2_soundnet401.txt")),
        Net::scenes);
    const std::size_t k = static_cast<std::size_t>(a.integer("--top", 5, 1));
    const double tile_to = a.real("--tile-to", 0.0);
    if (tile_to < 0) throw cli::usage_error("--tile-to must not be negative");
    const long min_samples = std::max<long>(Net::min_input_length(), std::lround(tile_to * 22050));
    const double step_seconds = Net::output_stride() / 22050.0;

    // The two heads, streamed: memory stays bounded for files of any length.
    const auto& outputs = net.output_names();
    soundnet::feature_stream<soundnet::model<Net>> stream(net, {outputs[outputs.size() - 2], outputs.back()});
    nlohmann::json all = nlohmann::json::array();
    long failed = 0;
    for (const auto& file : a.positional()) {
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
        const long n = cli::stream_file(file, min_samples, stream, sink, [](double) {});
        const std::size_t steps = per_step.size();
        for (auto& v : sum_o) v /= static_cast<double>(steps);
        for (auto& v : sum_s) v /= static_cast<double>(steps);
        nlohmann::json result = {{"file", file},
                                 {"duration_s", n / 22050.0},
                                 {"step_s", step_seconds},
                                 {"clip", {{"objects", top(sum_o, objects, k)}, {"scenes", top(sum_s, scenes, k)}}},
                                 {"steps", per_step}};
        if (a.has("--json")) {
          all.push_back(result);
        } else {
          std::cout << file << " (" << std::fixed << std::setprecision(1) << n / 22050.0 << " s)\n"
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
    if (a.has("--json")) std::cout << all.dump(2) << "\n";
    if (failed) std::cerr << "soundnet-predict: " << failed << " of " << a.positional().size() << " files failed\n";
    return failed ? 1 : 0;
  }
};

}  // namespace

int main(int argc, char** argv) {
  try {
    const cli::args a(argc, argv,
                      {"--arch", "--weights", "--top", "--scenes", "--labels-objects", "--labels-scenes", "--tile-to",
                       "--threads"},
                      {"--json"});
    if (a.help()) {
      std::cout << usage;
      return 0;
    }
    if (a.positional().empty()) throw cli::usage_error("no input files");
    soundnet::set_num_threads(static_cast<int>(a.integer("--threads", soundnet::num_threads(), 1)));
    return cli::with_architecture(a.str("--arch"), a.integer("--scenes", 401, 1), predict{a});
  } catch (const cli::usage_error& e) {
    std::cerr << "soundnet-predict: " << e.what() << "\n" << usage;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "soundnet-predict: error: " << e.what() << "\n";
    return 1;
  }
}
