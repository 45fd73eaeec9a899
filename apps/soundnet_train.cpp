// soundnet-train: trains SoundNet to match teacher distributions by KL divergence with Adam.
//
//   soundnet-train --arch soundnet8 --manifest M.csv --save OUT.safetensors [options]
//
// M.csv: header "audio,objects,scenes"; each row names (relative to the csv) a waveform .npy
// (float32, scaled) and the teachers' distributions as .npy of shape (T, classes), one row per
// network output step (SoundNet-8: one per 65,536 samples, 2.97 s).
//
// Checkpoints record everything a resumed run depends on: weights, Adam moments and step, the
// data seed and position, the options that shape the computation, and the manifest's
// fingerprint. --resume takes those from the checkpoint; a flag given with it that contradicts
// the checkpoint is an error. Results do not depend on --threads, so a run may resume with
// another thread count and continue bit for bit.
#include <soundnet/app/cli.hpp>
#include <soundnet/app/manifest.hpp>
#include <soundnet/app/waveform.hpp>

#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>
#include <numeric>

namespace {

using soundnet::app::usage_error;

struct settings {
  std::string arch, manifest, init, save, checkpoint, resume, dump_gradients, precision = "float32";
  int scenes = 401, threads = 0;
  long seed = 1, batch = 64, steps = 100000, crop = 0, hop = 110250, every = 0;
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999;
  bool no_shuffle = false;
};

// The options a checkpoint records, under their metadata keys.
struct recorded {
  const char* flag;
  const char* key;
};
const recorded recorded_options[] = {
    {"--seed", "data_seed"},     {"--batch-size", "batch_size"}, {"--crop-samples", "crop_samples"},
    {"--no-shuffle", "shuffle"}, {"--target-hop-samples", "target_hop_samples"},
    {"--lr", "adam_lr"},         {"--beta1", "adam_beta1"},      {"--beta2", "adam_beta2"},
    {"--scenes", "scenes"}};

std::string exact(double x) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}

// The value of a recorded option in a run's settings, as the checkpoint writes it.
std::string value_of(const settings& s, const std::string& key) {
  if (key == "data_seed") return std::to_string(s.seed);
  if (key == "batch_size") return std::to_string(s.batch);
  if (key == "crop_samples") return std::to_string(s.crop);
  if (key == "shuffle") return s.no_shuffle ? "0" : "1";
  if (key == "target_hop_samples") return std::to_string(s.hop);
  if (key == "adam_lr") return exact(s.lr);
  if (key == "adam_beta1") return exact(s.beta1);
  if (key == "adam_beta2") return exact(s.beta2);
  if (key == "scenes") return std::to_string(s.scenes);
  throw std::logic_error("unknown recorded option " + key);
}

void set_value(settings& s, const std::string& key, const std::string& v, const std::string& path) {
  try {
    std::size_t used = 0;
    if (key == "adam_lr" || key == "adam_beta1" || key == "adam_beta2") {
      const double d = std::stod(v, &used);
      (key == "adam_lr" ? s.lr : key == "adam_beta1" ? s.beta1 : s.beta2) = d;
    } else {
      const long n = std::stol(v, &used);
      if (key == "data_seed") s.seed = n;
      else if (key == "batch_size") s.batch = n;
      else if (key == "crop_samples") s.crop = n;
      else if (key == "shuffle") s.no_shuffle = n == 0;
      else if (key == "target_hop_samples") s.hop = n;
      else if (key == "scenes") s.scenes = static_cast<int>(n);
    }
    if (used != v.size()) throw std::invalid_argument(v);
  } catch (const std::exception&) {
    throw soundnet::weights_error(path, "checkpoint metadata '" + key + "' is not a number: " + v);
  }
}

bool same_value(const std::string& key, const std::string& a, const std::string& b) {
  if (a == b) return true;
  try {
    return key.rfind("adam_", 0) == 0 && std::stod(a) == std::stod(b);
  } catch (const std::exception&) {
    return false;
  }
}

// --resume: options not given are taken from the checkpoint; a given one that differs is an error.
void resolve_resume(const CLI::App& app, settings& s) {
  const auto meta = soundnet::io::read_safetensors_metadata(s.resume);  // the header only
  const auto format = meta.find("format");
  if (format == meta.end() || format->second != "soundnet-checkpoint-1")
    throw soundnet::weights_error(s.resume, "not a soundnet checkpoint (metadata 'format' is not soundnet-checkpoint-1)");
  if (const auto arch = meta.find("architecture"); arch != meta.end() && arch->second != s.arch)
    throw usage_error("--arch " + s.arch + " contradicts the checkpoint " + s.resume + ", written by " + arch->second);
  for (const auto& r : recorded_options) {
    const auto it = meta.find(r.key);
    if (it == meta.end()) continue;  // a checkpoint of an older version: the flag's own value stands
    if (soundnet::app::given(app, r.flag)) {
      const std::string mine = value_of(s, r.key);
      if (!same_value(r.key, mine, it->second))
        throw usage_error(std::string(r.flag) + " (" + r.key + " = " + mine + ") contradicts the checkpoint " + s.resume +
                          ", written with " + r.key + " = " + it->second +
                          "; leave the flag out to continue the run as it was");
    } else {
      set_value(s, r.key, it->second, s.resume);
    }
  }
  if (const auto fp = meta.find("manifest_fingerprint"); fp != meta.end()) {
    const std::string now = soundnet::app::file_fingerprint(s.manifest);
    if (!now.empty() && now != fp->second)
      throw soundnet::io_error(s.manifest, "has changed since the checkpoint " + s.resume +
                                               " was written (fingerprint " + now + ", checkpoint " + fp->second +
                                               "): resuming on other data would not continue the run");
  }
}

struct train {
  const settings& s;

  template <class Net>
  int operator()() const {
    if (s.precision == "float32") return run<Net, float>();
    if (s.precision == "float64") return run<Net, double>();
    throw usage_error("--precision must be float32 or float64, got '" + s.precision + "'");
  }

  template <class Net, class T>
  int run() const {
    using model_t = soundnet::model<Net, T>;
    const long crop = s.crop, hop = s.hop, batch = s.batch;
    const auto seed = static_cast<std::uint64_t>(s.seed);
    const bool shuffle = !s.no_shuffle;
    if (crop && crop < model_t::min_input_length())
      throw usage_error("--crop-samples " + std::to_string(crop) + " is too short for " + Net::name +
                        ": it needs at least " + std::to_string(model_t::min_input_length()));

    // ---- the manifest, validated whole before training ----
    soundnet::app::manifest_rules rules{Net::name, Net::objects, Net::scenes, model_t::min_input_length(), crop,
                                        [](long n) { return model_t::output_length(n); }};
    const auto clips = soundnet::app::read_training_manifest(s.manifest, rules);
    if (!crop)
      for (const auto& c : clips)
        if (c.samples != clips[0].samples)
          throw soundnet::io_error(s.manifest, "clips differ in length (" + c.audio + " has " +
                                                   std::to_string(c.samples) + " samples, " + clips[0].audio + " has " +
                                                   std::to_string(clips[0].samples) +
                                                   "); a batch needs equal lengths: use --crop-samples N");

    // ---- model and optimiser ----
    model_t net(seed);
    if (!s.init.empty()) soundnet::io::load_weights(net, s.init);
    soundnet::adam_options options;
    options.lr = s.lr, options.beta1 = s.beta1, options.beta2 = s.beta2;
    soundnet::adam opt(net, options);
    std::map<std::string, std::string> run_state;
    for (const auto& r : recorded_options) run_state[r.key] = value_of(s, r.key);
    run_state["manifest_fingerprint"] = soundnet::app::file_fingerprint(s.manifest);
    if constexpr (std::is_same_v<T, float>) {
      if (!s.resume.empty()) {
        soundnet::io::load_checkpoint(net, opt, s.resume);
        std::cerr << "resumed from " << s.resume << " at step " << opt.steps() << "\n";
      }
    }

    const long len = crop ? crop : clips[0].samples;
    const long out_len = model_t::output_length(len);
    xt::xtensor<T, 3> x = xt::zeros<T>({std::size_t(batch), std::size_t(1), std::size_t(len)});
    xt::xtensor<T, 3> t_obj = xt::zeros<T>({std::size_t(batch), std::size_t(Net::objects), std::size_t(out_len)});
    xt::xtensor<T, 3> t_scn = xt::zeros<T>({std::size_t(batch), std::size_t(Net::scenes), std::size_t(out_len)});

    std::vector<long> order;
    long order_epoch = -1;
    auto save_checkpoint = [&](long step) {
      if constexpr (std::is_same_v<T, float>) {
        auto meta = run_state;
        meta["data_position"] = std::to_string(step * batch);  // clips drawn so far
        soundnet::io::save_checkpoint(net, opt, s.checkpoint, meta);
      }
    };
    for (long step = opt.steps(); step < s.steps; ++step) {
      for (long i = 0; i < batch; ++i) {
        const long position = step * batch + i;
        const long epoch = position / static_cast<long>(clips.size());
        if (epoch != order_epoch) order = epoch_order(clips.size(), seed, epoch, shuffle), order_epoch = epoch;
        const auto& c = clips[order[position % clips.size()]];
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
      if (step == 0 && !s.dump_gradients.empty()) dump_gradients(net, s.dump_gradients);
      opt.step();
      std::printf("step %ld/%ld loss %.8f\n", step + 1, s.steps, loss);
      std::fflush(stdout);
      if (!s.checkpoint.empty() && s.every && (step + 1) % s.every == 0 && step + 1 < s.steps) save_checkpoint(step + 1);
    }
    if (!s.checkpoint.empty()) save_checkpoint(std::max(opt.steps(), 0L));
    soundnet::io::save_weights(net, s.save);
    return 0;
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
  static void fill_row(const soundnet::app::training_clip& c, long offset, long hop, long len, long out_len, long i,
                       xt::xtensor<T, 3>& x, xt::xtensor<T, 3>& t_obj, xt::xtensor<T, 3>& t_scn) {
    const auto wave = soundnet::app::read_waveform(c.audio);
    std::copy(wave.begin() + offset * hop, wave.begin() + offset * hop + len, x.data() + i * len);
    const auto to = soundnet::app::read_targets(c.objects, Net::objects, "object");
    const auto ts = soundnet::app::read_targets(c.scenes, Net::scenes, "scene");
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
  settings s;
  CLI::App app{"Trains SoundNet to match teacher distributions (KL divergence, Adam).\n"
               "Manifest: a CSV with header audio,objects,scenes; paths relative to the CSV: a waveform .npy\n"
               "(samples,) and teacher distributions .npy (T, classes), one row per output step.",
               "soundnet-train"};
  soundnet::app::add_architecture_options(app, s.arch, s.scenes);
  app.add_option("--manifest", s.manifest, "the training manifest (CSV)")->required();
  app.add_option("--save", s.save, "where the trained weights go (safetensors)")->required();
  auto* init = app.add_option("--init", s.init, "start from these weights instead of the paper's initialisation");
  app.add_option("--seed", s.seed, "initialisation (without --init), data order and crops")->capture_default_str();
  app.add_option("--batch-size", s.batch, "clips per step")->capture_default_str()->check(soundnet::app::integer_at_least(1));
  app.add_option("--steps", s.steps, "total optimiser steps (a resumed run continues to this count)")
      ->capture_default_str()
      ->check(soundnet::app::integer_at_least(0));
  app.add_option("--lr", s.lr, "Adam learning rate")->capture_default_str();
  app.add_option("--beta1", s.beta1, "Adam beta1")->capture_default_str();
  app.add_option("--beta2", s.beta2, "Adam beta2")->capture_default_str();
  app.add_flag("--no-shuffle", s.no_shuffle, "take the clips in manifest order (default: a seeded shuffle per epoch)");
  app.add_option("--crop-samples", s.crop,
                 "train on random crops of N samples (offsets are multiples of --target-hop-samples); "
                 "default 0: whole clips")
      ->check(soundnet::app::integer_at_least(0));
  app.add_option("--target-hop-samples", s.hop, "the audio covered by one target row")
      ->capture_default_str()
      ->check(soundnet::app::integer_at_least(1));
  app.add_option("--dump-gradients", s.dump_gradients, "write the first step's gradients (safetensors)");
  auto* checkpoint = app.add_option("--checkpoint", s.checkpoint, "write a checkpoint here at the end (and every K steps)");
  app.add_option("--checkpoint-every", s.every, "write the checkpoint every K steps")
      ->check(soundnet::app::integer_at_least(1))
      ->needs(checkpoint);
  app.add_option("--resume", s.resume, "continue the run of this checkpoint (its options apply)")->excludes(init);
  app.add_option("--precision", s.precision, "float32, or float64 for numerical studies (no checkpoints)")
      ->capture_default_str();
  soundnet::app::add_threads_option(app, s.threads);
  return soundnet::app::run(app, argc, argv, [&] {
    if (s.precision == "float64" && (!s.checkpoint.empty() || !s.resume.empty()))
      throw usage_error("checkpoints hold float32 models: --checkpoint/--resume need --precision float32");
    if (!s.resume.empty()) resolve_resume(app, s);
    soundnet::app::apply_threads(s.threads);
    return soundnet::app::with_architecture(s.arch, s.scenes, train{s});
  });
}
