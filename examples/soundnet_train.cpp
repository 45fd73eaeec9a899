// soundnet-train: trains SoundNet to match teacher distributions by KL divergence with Adam.
//
//   soundnet-train --arch soundnet8 [--init W.safetensors | --seed N] --manifest M.csv
//                  --batch-size B --steps S [--lr 1e-3] [--beta1 0.9] [--beta2 0.999]
//                  [--no-shuffle] [--crop-samples N] [--dump-gradients G.safetensors]
//                  --save OUT.safetensors [--checkpoint C [--checkpoint-every K]] [--resume C]
//
// M.csv: header "audio,objects,scenes"; each row names (relative to the csv) a waveform .npy
// (float32, scaled) and the teachers' distributions as .npy of shape (T, classes).
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>
#include <sstream>

#include "cli.hpp"

namespace fs = std::filesystem;

namespace {

const char* usage =
    "usage: soundnet-train --arch soundnet8|soundnet5 [--init W.safetensors | --seed N] --manifest M.csv\n"
    "                      --batch-size B --steps S [--lr 0.001] [--beta1 0.9] [--beta2 0.999]\n"
    "                      [--no-shuffle] [--crop-samples N] [--target-hop-samples 110250]\n"
    "                      [--dump-gradients G.safetensors] --save OUT.safetensors\n"
    "                      [--checkpoint C [--checkpoint-every K]] [--resume C] [--scenes 401|365] [--threads N]\n"
    "                      [--precision float32|float64]\n"
    "  M.csv        header audio,objects,scenes; paths relative to the csv: a waveform .npy (samples,)\n"
    "               and teacher distributions .npy (T, classes), one row per output step\n"
    "  --seed       initialisation (without --init) and data order / crops; default 1\n"
    "  --crop-samples  train on random crops of N samples (offsets are multiples of --target-hop-samples,\n"
    "               the audio covered by one target row); without it clips are used whole\n"
    "  --precision  float64 trains in double precision (for numerical studies; no checkpoints)\n";

struct clip {
  std::string audio, objects, scenes;
  long samples = 0, target_rows = 0;
};

// Splits one CSV line; fields may be double-quoted.
std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (c == '"') {
      if (quoted && i + 1 < line.size() && line[i + 1] == '"') out.back() += '"', ++i;
      else quoted = !quoted;
    } else if (c == ',' && !quoted) {
      out.emplace_back();
    } else if (c != '\r') {
      out.back() += c;
    }
  }
  return out;
}

// (T, classes) distributions, checked.
xt::xarray<float> read_targets(const std::string& path, long classes, const char* head) {
  auto t = soundnet::io::read_npy<float>(path);
  if (t.dimension() != 2 || static_cast<long>(t.shape(1)) != classes) {
    std::string s;
    for (auto d : t.shape()) s += (s.empty() ? "" : ", ") + std::to_string(d);
    throw soundnet::io_error(path, std::string(head) + " targets must have shape (steps, " + std::to_string(classes) +
                                       "); got (" + s + ")");
  }
  for (std::size_t i = 0; i < t.size(); ++i)
    if (!std::isfinite(t.data()[i]) || t.data()[i] < 0)
      throw soundnet::io_error(path, std::string(head) + " targets must be finite and non-negative (element " +
                                         std::to_string(i) + ")");
  return t;
}

struct train {
  const cli::args& a;

  template <class Net>
  int operator()() const {
    const std::string precision = a.str("--precision", "float32");
    if (precision == "float32") return run<Net, float>();
    if (precision == "float64") {
      if (a.has("--checkpoint") || a.has("--resume"))
        throw cli::usage_error("checkpoints hold float32 models: --checkpoint/--resume need --precision float32");
      return run<Net, double>();
    }
    throw cli::usage_error("--precision must be float32 or float64, got '" + precision + "'");
  }

  template <class Net, class T>
  int run() const {
    using model_t = soundnet::model<Net, T>;
    const std::string manifest = a.str("--manifest");
    const long batch = a.integer("--batch-size", 64, 1);
    const long steps = a.integer("--steps", 1, 0);
    const long crop = a.integer("--crop-samples", 0, 1);
    const long hop = a.integer("--target-hop-samples", 110250, 1);
    const std::uint64_t seed = static_cast<std::uint64_t>(a.integer("--seed", 1, 0));
    const bool shuffle = !a.has("--no-shuffle");
    if (crop && crop < model_t::min_input_length())
      throw cli::usage_error("--crop-samples " + std::to_string(crop) + " is too short for " + Net::name +
                             ": it needs at least " + std::to_string(model_t::min_input_length()));
    const std::string save = a.str("--save");

    // ---- the manifest, validated whole before training ----
    const auto clips = read_manifest<Net>(manifest, crop, hop);
    if (!crop) {
      for (const auto& c : clips)
        if (c.samples != clips[0].samples)
          throw soundnet::io_error(manifest, "clips differ in length (" + c.audio + " has " + std::to_string(c.samples) +
                                                 " samples, " + clips[0].audio + " has " +
                                                 std::to_string(clips[0].samples) +
                                                 "); a batch needs equal lengths: use --crop-samples N");
    }

    // ---- model and optimiser ----
    model_t net(seed);
    if (a.has("--init")) soundnet::io::load_weights(net, a.str("--init"));
    soundnet::adam_options options;
    options.lr = a.real("--lr", 1e-3);
    options.beta1 = a.real("--beta1", 0.9);
    options.beta2 = a.real("--beta2", 0.999);
    soundnet::adam opt(net, options);
    const std::map<std::string, std::string> run_state = {
        {"data_seed", std::to_string(seed)}, {"batch_size", std::to_string(batch)},
        {"crop_samples", std::to_string(crop)}, {"shuffle", shuffle ? "1" : "0"}};
    if constexpr (std::is_same_v<T, float>) if (a.has("--resume")) {
      const std::string resume = a.str("--resume");
      const auto meta = soundnet::io::load_checkpoint(net, opt, resume);
      for (const auto& [key, value] : run_state) {
        const auto it = meta.find(key);
        if (it == meta.end() || it->second != value)
          throw soundnet::io_error(resume, "checkpoint was written with " + key + " = " +
                                               (it == meta.end() ? std::string("?") : it->second) + ", this run has " +
                                               value + "; resuming needs the same value");
      }
      std::cerr << "resumed from " << resume << " at step " << opt.steps() << "\n";
    }

    const long out_len = model_t::output_length(crop ? crop : clips[0].samples);
    const long len = crop ? crop : clips[0].samples;
    xt::xtensor<T, 3> x = xt::zeros<T>({std::size_t(batch), std::size_t(1), std::size_t(len)});
    xt::xtensor<T, 3> t_obj = xt::zeros<T>({std::size_t(batch), std::size_t(Net::objects), std::size_t(out_len)});
    xt::xtensor<T, 3> t_scn = xt::zeros<T>({std::size_t(batch), std::size_t(Net::scenes), std::size_t(out_len)});
    const long every = a.integer("--checkpoint-every", 0, 1);

    std::vector<long> order;
    long order_epoch = -1;
    for (long step = opt.steps(); step < steps; ++step) {
      for (long i = 0; i < batch; ++i) {
        const long position = step * batch + i;
        const long epoch = position / static_cast<long>(clips.size());
        if (epoch != order_epoch) order = epoch_order(clips.size(), seed, epoch, shuffle), order_epoch = epoch;
        const clip& c = clips[order[position % clips.size()]];
        long offset = 0;
        if (crop) {  // a multiple of hop such that audio and targets cover the crop
          const long by_audio = (c.samples - crop) / hop, by_targets = c.target_rows - out_len;
          const long choices = std::min(by_audio, by_targets) + 1;
          soundnet::normal_generator pick(seed * 0x9E3779B97F4A7C15ULL + static_cast<std::uint64_t>(position) + 1);
          offset = static_cast<long>(pick.next() % static_cast<std::uint64_t>(choices));
        }
        fill_row<Net, T>(c, offset, hop, len, out_len, i, x, t_obj, t_scn);
      }
      net.forward(x, soundnet::mode::training);
      const double loss = net.kl_loss(t_obj, t_scn);
      if (!std::isfinite(loss)) throw soundnet::error("loss is not finite at step " + std::to_string(step + 1));
      net.zero_grad();
      net.backward();
      if (step == 0 && a.has("--dump-gradients")) dump_gradients(net, a.str("--dump-gradients"));
      opt.step();
      std::printf("step %ld/%ld loss %.8f\n", step + 1, steps, loss);
      std::fflush(stdout);
      if constexpr (std::is_same_v<T, float>)
        if (a.has("--checkpoint") && every && (step + 1) % every == 0 && step + 1 < steps)
          soundnet::io::save_checkpoint(net, opt, a.str("--checkpoint"), run_state);
    }
    if constexpr (std::is_same_v<T, float>)
      if (a.has("--checkpoint")) soundnet::io::save_checkpoint(net, opt, a.str("--checkpoint"), run_state);
    soundnet::io::save_weights(net, save);
    return 0;
  }

  template <class Net>
  static std::vector<clip> read_manifest(const std::string& manifest, long crop, long hop) {
    std::ifstream in(manifest);
    if (!in) throw soundnet::io_error(manifest, "cannot open manifest");
    std::string line;
    if (!std::getline(in, line)) throw soundnet::io_error(manifest, "empty manifest (expected header audio,objects,scenes)");
    const auto header = split_csv(line);
    if (header != std::vector<std::string>{"audio", "objects", "scenes"})
      throw soundnet::io_error(manifest, "header must be 'audio,objects,scenes', got '" + line + "'");
    const fs::path base = fs::path(manifest).parent_path();
    std::vector<clip> clips;
    std::string failures;
    long row = 1, failed = 0;
    while (std::getline(in, line)) {
      ++row;
      if (line.empty() || line == "\r") continue;
      const auto f = split_csv(line);
      try {
        if (f.size() != 3)
          throw soundnet::io_error(manifest, "row " + std::to_string(row) + " has " + std::to_string(f.size()) +
                                                 " fields, expected 3");
        clip c{(base / f[0]).string(), (base / f[1]).string(), (base / f[2]).string()};
        c.samples = static_cast<long>(cli::read_waveform(c.audio).size());
        const auto to = read_targets(c.objects, Net::objects, "object");
        const auto ts = read_targets(c.scenes, Net::scenes, "scene");
        if (to.shape(0) != ts.shape(0))
          throw soundnet::io_error(c.scenes, "has " + std::to_string(ts.shape(0)) + " steps but " + c.objects + " has " +
                                                 std::to_string(to.shape(0)));
        c.target_rows = static_cast<long>(to.shape(0));
        const long need = soundnet::model<Net>::output_length(crop ? crop : c.samples);
        if (crop) {
          if (c.samples < crop)
            throw soundnet::io_error(c.audio, "has " + std::to_string(c.samples) + " samples, shorter than --crop-samples " +
                                                  std::to_string(crop));
          if (c.target_rows < need)
            throw soundnet::io_error(c.objects, "has " + std::to_string(c.target_rows) + " steps; a crop of " +
                                                    std::to_string(crop) + " samples needs " + std::to_string(need));
        } else {
          if (c.samples < soundnet::model<Net>::min_input_length())
            throw soundnet::io_error(c.audio, "has " + std::to_string(c.samples) + " samples; " + Net::name +
                                                  " needs at least " +
                                                  std::to_string(soundnet::model<Net>::min_input_length()));
          if (c.target_rows != need)
            throw soundnet::io_error(c.objects, "has " + std::to_string(c.target_rows) + " steps but " + Net::name +
                                                    " gives " + std::to_string(need) + " output steps for " +
                                                    std::to_string(c.samples) + " samples");
        }
        (void)hop;
        clips.push_back(std::move(c));
      } catch (const soundnet::error& e) {
        failures += std::string("  ") + e.what() + "\n";
        ++failed;
      }
    }
    if (failed)
      throw soundnet::io_error(manifest, std::to_string(failed) + " bad row(s):\n" + failures.substr(0, failures.size() - 1));
    if (clips.empty()) throw soundnet::io_error(manifest, "no clips");
    return clips;
  }

  static std::vector<long> epoch_order(std::size_t n, std::uint64_t seed, long epoch, bool shuffle) {
    std::vector<long> order(n);
    std::iota(order.begin(), order.end(), 0L);
    if (!shuffle) return order;
    soundnet::normal_generator g(seed ^ (0xD1B54A32D192ED03ULL * static_cast<std::uint64_t>(epoch + 1)));
    for (std::size_t i = n - 1; i > 0; --i) std::swap(order[i], order[g.next() % (i + 1)]);
    return order;
  }

  template <class Net, class T>
  static void fill_row(const clip& c, long offset, long hop, long len, long out_len, long i, xt::xtensor<T, 3>& x,
                       xt::xtensor<T, 3>& t_obj, xt::xtensor<T, 3>& t_scn) {
    const auto wave = cli::read_waveform(c.audio);
    std::copy(wave.begin() + offset * hop, wave.begin() + offset * hop + len, x.data() + i * len);
    const auto to = read_targets(c.objects, Net::objects, "object");
    const auto ts = read_targets(c.scenes, Net::scenes, "scene");
    for (long t = 0; t < out_len; ++t) {  // (T, C) rows -> (C, T)
      for (long k = 0; k < Net::objects; ++k) t_obj(i, k, t) = to(offset + t, k);
      for (long k = 0; k < Net::scenes; ++k) t_scn(i, k, t) = ts(offset + t, k);
    }
  }

  template <class Model>
  static void dump_gradients(const Model& net, const std::string& path) {
    std::vector<soundnet::io::named_tensor> grads;
    for (const auto& p : net.parameters())
      if (p.trainable()) grads.push_back({p.name, p.shape, std::vector<float>(p.grad, p.grad + p.size)});
    soundnet::io::write_safetensors(path, grads, {{"architecture", Model::architecture()}, {"content", "gradients"}});
  }
};

}  // namespace

int main(int argc, char** argv) {
  try {
    const cli::args a(argc, argv,
                      {"--arch", "--init", "--seed", "--manifest", "--batch-size", "--steps", "--lr", "--beta1", "--beta2",
                       "--crop-samples", "--target-hop-samples", "--dump-gradients", "--save", "--checkpoint",
                       "--checkpoint-every", "--resume", "--scenes", "--threads", "--precision"},
                      {"--no-shuffle"});
    if (a.help()) {
      std::cout << usage;
      return 0;
    }
    if (!a.positional().empty()) throw cli::usage_error("unexpected argument '" + a.positional()[0] + "'");
    if (a.has("--init") && a.has("--resume")) throw cli::usage_error("--init and --resume exclude each other");
    soundnet::set_num_threads(static_cast<int>(a.integer("--threads", soundnet::num_threads(), 1)));
    return cli::with_architecture(a.str("--arch"), a.integer("--scenes", 401, 1), train{a});
  } catch (const cli::usage_error& e) {
    std::cerr << "soundnet-train: " << e.what() << "\n" << usage;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "soundnet-train: error: " << e.what() << "\n";
    return 1;
  }
}
