// soundnet-train: trains SoundNet to match teacher distributions by KL divergence with Adam.
//
//   soundnet-train --arch soundnet8 --dataset DIR --save OUT.safetensors [options]
//   soundnet-train --arch soundnet8 --manifest M.csv --save OUT.safetensors [options]
//
// DIR: a dataset store written by soundnet-prepare (soundnet::data). Each step takes random
// crops (--crop-seconds, default 20 s; shorter videos repeat circularly) from the training
// videos; each output step's target is the mean of each teacher's posteriors over the frames in
// its span. One output head per teacher of the store. Batches are made by background threads
// (soundnet/app/loader.hpp), deterministically from the seed. Every --validate-every steps the
// held-out videos (--validation-videos, chosen by a hash of their names) give a validation KL,
// printed next to the baseline of always predicting the training set's mean teacher
// distribution; a CSV log and (with gnuplot) a PNG plot of the losses go next to --save.
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
//
// Data-parallel (--dataset): `mpirun -np N soundnet-train ...` (or srun) trains one model on N
// processes when the program is built with MPI (SOUNDNET_WITH_MPI). --batch-size is the global
// batch: each rank loads its own B/N rows of every batch, the gradients are summed over the ranks
// (MPI all-reduce) and every rank takes the same Adam step. --sync-batch-norm computes the batch
// statistics over the global batch, so that N ranks compute what one process with the whole
// batch computes (up to rounding); without it each rank normalises its own rows and the running
// statistics are averaged. Rank 0 prints, writes the log, the plot, the checkpoints and the
// weights. A checkpoint resumes on any number of ranks that divides the batch (the batches are
// those of the global positions). docs/scaling.md.
#include <soundnet/app/cli.hpp>
#include <soundnet/app/inputs.hpp>
#include <soundnet/app/loader.hpp>
#include <soundnet/app/manifest.hpp>
#include <soundnet/app/waveform.hpp>
#ifdef SOUNDNET_TRAIN_WITH_MPI
#include <soundnet/distributed/communicator.hpp>
#ifdef SOUNDNET_DISTRIBUTED_WITH_NCCL
#include <soundnet/distributed/nccl.hpp>
#endif
#endif

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <numeric>

namespace {

using soundnet::app::usage_error;

struct settings {
  std::string arch, manifest, dataset, init, save, checkpoint, resume, dump_gradients, precision = "float32";
  std::string loss = "kl", log, plot, non_finite = "stop", device = "cpu", math = "strict";
  int scenes = 401, threads = 0, loader_threads = 2, prefetch = 4;
  long seed = 1, batch = 64, steps = 100000, crop = 0, hop = 110250, every = 0;
  long validation_videos = -1, validate_every = 100;
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, crop_seconds = 20, collective_timeout = 300;
  bool no_shuffle = false, allow_outside_paths = false, sync_batch_norm = false;
};

std::string exact(double x);

// The GPU's upload stage for a model's training batches (nothing on the CPU).
template <class Model>
auto upload_stage_for(Model& net) {
  if constexpr (std::is_same_v<typename Model::device, soundnet::cpu>) {
    (void)net;
    return nullptr;
  } else {
    return std::make_unique<typename Model::device::template upload_stage<float>>(net.context());
  }
}

// The processes training one model: this one alone, or the ranks of an MPI launch.
struct world {
  int rank = 0, size = 1;
#ifdef SOUNDNET_TRAIN_WITH_MPI
  std::unique_ptr<soundnet::distributed::communicator> comm;
  std::unique_ptr<soundnet::distributed::batch_norm_sum> batch_norm;
#endif
#if defined(SOUNDNET_TRAIN_WITH_MPI) && defined(SOUNDNET_DISTRIBUTED_WITH_NCCL)
  std::unique_ptr<soundnet::distributed::nccl_communicator> nccl;  // a GPU run's device all-reduce
  // Joins NCCL on the model's stream: from then on averages of device memory go through it.
  void use_nccl(void* stream) {
    if (comm && !nccl) nccl = std::make_unique<soundnet::distributed::nccl_communicator>(*comm, stream);
  }
  bool average_on_device(float* values, std::size_t count, const std::string& what) {
    if (!nccl) return false;
    nccl->average(values, count, what);
    return true;
  }
  // The gradients averaged as backward() completes them, layer by layer from the heads (80% of
  // the bytes) down, on NCCL's own stream beside the rest of the backward pass, in buckets of
  // at least overlap_bucket values; finish_gradients() waits for them. False without NCCL.
  static constexpr std::size_t overlap_bucket = std::size_t(1) << 20;  // 4 MB of float32
  std::size_t pending_begin = 0, pending_end = 0;                     // a bucket being gathered
  template <class Model>
  bool overlap_gradients(Model& net) {
    if (!nccl) return false;
    float* grads = net.gradients().data();
    net.on_gradients_ready([this, grads](std::size_t begin, std::size_t count) {
      if (pending_end == pending_begin) pending_end = begin + count;
      pending_begin = begin;  // ranges arrive contiguous and descending
      if (pending_end > pending_begin && (pending_end - pending_begin >= overlap_bucket || begin == 0)) {
        nccl->start_average(grads + pending_begin, pending_end - pending_begin, "the gradient all-reduce");
        pending_begin = pending_end = 0;
      }
    });
    return true;
  }
  void finish_gradients() { nccl->finish_averages("the gradient all-reduce"); }
#else
  void use_nccl(void*) {}
  bool average_on_device(float*, std::size_t, const std::string&) { return false; }
  template <class Model>
  bool overlap_gradients(Model&) { return false; }
  void finish_gradients() {}
#endif
  bool leader() const { return rank == 0; }
  bool parallel() const { return size > 1; }
  template <class T>
  void sum(T* values, std::size_t count, const std::string& what) {
#ifdef SOUNDNET_TRAIN_WITH_MPI
    if (comm) comm->sum(values, count, what);
#endif
    (void)values, (void)count, (void)what;
  }
  void barrier(const std::string& what) {
#ifdef SOUNDNET_TRAIN_WITH_MPI
    if (comm) comm->barrier(what);
#endif
    (void)what;
  }
  void at_step(long step) {
#ifdef SOUNDNET_TRAIN_WITH_MPI
    if (comm) comm->at_step(step);
#endif
    (void)step;
  }
  // Every rank must hold the same weights and statistics: their checksums are compared.
  void check_same(double checksum, long step) {
#ifdef SOUNDNET_TRAIN_WITH_MPI
    if (!comm) return;
    double lo = 0, hi = 0;
    comm->min_max(checksum, lo, hi, "the weights' checksum comparison");
    if (lo != hi)
      throw soundnet::error("after step " + std::to_string(step) + " the ranks hold different weights (checksums " +
                            exact(lo) + " to " + exact(hi) + "): their all-reduces disagreed");
#endif
    (void)checksum, (void)step;
  }
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
    {"--scenes", "scenes"},      {"--loss", "loss"},             {"--crop-seconds", "crop_seconds"},
    {"--validation-videos", "validation_videos"}, {"--sync-batch-norm", "sync_batch_norm"}};

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
  if (key == "loss") return s.loss;
  if (key == "crop_seconds") return exact(s.crop_seconds);
  if (key == "validation_videos") return std::to_string(s.validation_videos);
  if (key == "sync_batch_norm") return s.sync_batch_norm ? "1" : "0";
  throw std::logic_error("unknown recorded option " + key);
}

void set_value(settings& s, const std::string& key, const std::string& v, const std::string& path) {
  try {
    std::size_t used = 0;
    if (key == "loss") {
      s.loss = v, used = v.size();
    } else if (key == "adam_lr" || key == "adam_beta1" || key == "adam_beta2" || key == "crop_seconds") {
      const double d = std::stod(v, &used);
      (key == "adam_lr" ? s.lr : key == "adam_beta1" ? s.beta1 : key == "adam_beta2" ? s.beta2 : s.crop_seconds) = d;
    } else {
      const long n = std::stol(v, &used);
      if (key == "data_seed") s.seed = n;
      else if (key == "batch_size") s.batch = n;
      else if (key == "crop_samples") s.crop = n;
      else if (key == "shuffle") s.no_shuffle = n == 0;
      else if (key == "target_hop_samples") s.hop = n;
      else if (key == "scenes") s.scenes = static_cast<int>(n);
      else if (key == "validation_videos") s.validation_videos = n;
      else if (key == "sync_batch_norm") s.sync_batch_norm = n != 0;
    }
    if (used != v.size()) throw std::invalid_argument(v);
  } catch (const std::exception&) {
    throw soundnet::weights_error(path, "checkpoint metadata '" + key + "' is not a number: " + v);
  }
}

bool same_value(const std::string& key, const std::string& a, const std::string& b) {
  if (a == b) return true;
  try {
    return (key.rfind("adam_", 0) == 0 || key == "crop_seconds") && std::stod(a) == std::stod(b);
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
    const std::string data = s.dataset.empty() ? s.manifest : s.dataset + "/index.bin";
    const std::string now = soundnet::app::file_fingerprint(data);
    if (!now.empty() && now != fp->second)
      throw soundnet::io_error(data, "has changed since the checkpoint " + s.resume +
                                               " was written (fingerprint " + now + ", checkpoint " + fp->second +
                                               "): resuming on other data would not continue the run");
  }
}

// What every checkpoint of the run records: the options above and the data's fingerprint.
std::map<std::string, std::string> recorded_state(const settings& s, const std::string& data_file) {
  std::map<std::string, std::string> state;
  for (const auto& r : recorded_options) state[r.key] = value_of(s, r.key);
  state["manifest_fingerprint"] = soundnet::app::file_fingerprint(data_file);
  return state;
}

// --non-finite: what a NaN or an infinity in the loss or in a gradient does. The check runs
// after backward() and before the optimiser's step, so a poisoned value never reaches the
// weights, the Adam moments or a checkpoint. "stop" ends the run naming the step and the
// tensor; "skip" drops the batch (restoring the batch-norm statistics its forward moved) and
// counts it, so that a resumed run draws the same batches as an uninterrupted one.
template <class Model>
struct non_finite_guard {
  const settings& s;
  long skipped = 0, in_a_row = 0;
  std::vector<typename Model::value_type> statistics;
  static constexpr long max_in_a_row = 10;

  // Before the forward of a step.
  void before(Model& net) {
    if (s.non_finite == "skip") statistics = net.statistics_to_host();
  }
  // After backward(): true when the step may be applied.
  bool accept(Model& net, double loss, long step) {
    std::string what;
    if (!std::isfinite(loss)) what = std::string("the loss is ") + (std::isnan(loss) ? "NaN" : "infinite");
    else if (const auto name = net.non_finite_gradient(); !name.empty())
      what = "the gradient of " + name + " holds a NaN or an infinity";
    if (what.empty()) return in_a_row = 0, true;
    if (s.non_finite != "skip")
      throw soundnet::error("step " + std::to_string(step) + ": " + what +
                            "; stopped before the update, so no weights or checkpoint hold it" +
                            (s.checkpoint.empty() ? std::string() : " (the last good checkpoint is " + s.checkpoint + ")") +
                            "; --non-finite skip skips such batches, a lower --lr may avoid them");
    net.statistics_from_host(statistics);
    ++skipped, ++in_a_row;
    std::fprintf(stderr, "soundnet-train: step %ld: %s; batch skipped (%ld so far)\n", step, what.c_str(), skipped);
    if (in_a_row >= max_in_a_row)
      throw soundnet::error("step " + std::to_string(step) + ": " + std::to_string(in_a_row) +
                            " batches in a row had non-finite values (" + what + "); stopping: the run has diverged, "
                            "lower --lr");
    return false;
  }
  // The batches skipped by the run a checkpoint continues.
  void resume_from(const std::map<std::string, std::string>& meta) {
    const auto it = meta.find("skipped_batches");
    if (it == meta.end()) return;
    try {
      skipped = std::stol(it->second);
    } catch (const std::exception&) {
      throw soundnet::weights_error(s.resume, "checkpoint metadata 'skipped_batches' is not a number: " + it->second);
    }
  }
};

soundnet::adam_options adam_options_of(const settings& s) {
  soundnet::adam_options options;
  options.lr = s.lr, options.beta1 = s.beta1, options.beta2 = s.beta2;
  return options;
}

struct train {
  const settings& s;
  world& w;

  template <class Net, class Device = soundnet::cpu>
  int operator()() const {
    if (!s.dataset.empty()) {
      if (s.precision != "float32") throw usage_error("--dataset trains in float32 (--precision float32)");
      return run_dataset<Net, Device>();
    }
    if (w.parallel())
      throw usage_error("data-parallel training (" + std::to_string(w.size) + " ranks) reads a dataset store: give --dataset");
    if constexpr (Net::scenes == 0) {
      throw usage_error("the manifest mode trains two heads (objects and scenes)");
    } else {
      if (s.precision == "float32") return run<Net, float, Device>();
      if (s.precision == "float64") return run<Net, double, Device>();
    }
    throw usage_error("--precision must be float32 or float64, got '" + s.precision + "'");
  }

  template <class Net, class T, class Device>
  int run() const {
    using model_t = soundnet::model<Net, T, Device>;
    const long crop = s.crop, hop = s.hop, batch = s.batch;
    const auto seed = static_cast<std::uint64_t>(s.seed);
    const bool shuffle = !s.no_shuffle;
    if (crop && crop < model_t::min_input_length())
      throw usage_error("--crop-samples " + std::to_string(crop) + " is too short for " + Net::name +
                        ": it needs at least " + std::to_string(model_t::min_input_length()));

    // ---- the manifest, validated whole before training ----
    soundnet::app::manifest_rules rules{Net::name, Net::objects, Net::scenes, model_t::min_input_length(), crop,
                                        [](long n) { return model_t::output_length(n); }, s.allow_outside_paths};
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
    soundnet::app::apply_math(net, s.math);
    if (!s.init.empty()) soundnet::io::load_weights(net, s.init);
    soundnet::adam opt(net, adam_options_of(s));
    const auto run_state = recorded_state(s, s.manifest);
    non_finite_guard<model_t> guard{s};
    if constexpr (std::is_same_v<T, float>) {
      if (!s.resume.empty()) {
        guard.resume_from(soundnet::io::load_checkpoint(net, opt, s.resume));
        std::cerr << "resumed from " << s.resume << " at step " << opt.steps() + guard.skipped << "\n";
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
        meta["skipped_batches"] = std::to_string(guard.skipped);
        soundnet::io::save_checkpoint(net, opt, s.checkpoint, meta);
      }
    };
    for (long step = opt.steps() + guard.skipped; step < s.steps; ++step) {
      for (long i = 0; i < batch; ++i) {
        const long position = step * batch + i;
        const long epoch = position / static_cast<long>(clips.size());
        if (epoch != order_epoch) order = soundnet::app::epoch_order(clips.size(), seed, epoch, shuffle), order_epoch = epoch;
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
      guard.before(net);
      net.forward(x, soundnet::mode::training);
      const double loss = net.kl_loss(t_obj, t_scn);
      net.zero_grad();
      net.backward();
      if (step == 0 && !s.dump_gradients.empty()) dump_gradients(net, s.dump_gradients);
      if (guard.accept(net, loss, step + 1)) opt.step();
      std::printf("step %ld/%ld loss %.8f\n", step + 1, s.steps, loss);
      std::fflush(stdout);
      if (!s.checkpoint.empty() && s.every && (step + 1) % s.every == 0 && step + 1 < s.steps) save_checkpoint(step + 1);
    }
    if (!s.checkpoint.empty()) save_checkpoint(std::max(opt.steps() + guard.skipped, 0L));
    soundnet::io::save_weights(net, s.save);
    return 0;
  }

  // ---- training from a dataset store --------------------------------------------------

  // Loss and d loss / d logits of one head (logits rows c_begin.. of (N, c_total, T)) for the
  // "l2" loss: the squared distance between softmax(logits) and the target, summed over
  // classes, mean over batch and time (the paper's Table 5 compares it with KL).
  static double l2_head(const float* logits, long n, long c_total, long c_begin, long c, long t, const float* target,
                        float* grad) {
    double loss = 0;
    const double divisor = double(n) * double(t);
    std::vector<double> p(static_cast<std::size_t>(c)), g(static_cast<std::size_t>(c));
    for (long i = 0; i < n; ++i)
      for (long j = 0; j < t; ++j) {
        auto at = [&](long k) { return (i * c_total + c_begin + k) * t + j; };
        double m = -1e300, z = 0, pg = 0;
        for (long k = 0; k < c; ++k) m = std::max(m, double(logits[at(k)]));
        for (long k = 0; k < c; ++k) z += (p[std::size_t(k)] = std::exp(double(logits[at(k)]) - m));
        for (long k = 0; k < c; ++k) {
          p[std::size_t(k)] /= z;
          const double d = p[std::size_t(k)] - target[(i * c + k) * t + j];
          loss += d * d / divisor;
          g[std::size_t(k)] = 2 * d / divisor;
          pg += p[std::size_t(k)] * g[std::size_t(k)];
        }
        for (long k = 0; k < c; ++k) grad[at(k)] = static_cast<float>(p[std::size_t(k)] * (g[std::size_t(k)] - pg));
      }
    return loss;
  }

  // KL(target || q) for a fixed prediction q (the baseline), same averaging.
  static double kl_constant(const std::vector<double>& q, long n, long c, long t, const float* target) {
    double loss = 0;
    for (long i = 0; i < n; ++i)
      for (long j = 0; j < t; ++j)
        for (long k = 0; k < c; ++k) {
          const double y = target[(i * c + k) * t + j];
          if (y > 0) loss += y * (std::log(y) - std::log(std::max(q[std::size_t(k)], 1e-30)));
        }
    return loss / (double(n) * double(t));
  }

  template <class Net, class Device>
  int run_dataset() const {
    using model_t = soundnet::model<Net, float, Device>;
    using tensor = xt::xtensor<float, 3>;
    const soundnet::data::store_reader store(s.dataset);
    const auto& layout = store.layout();
    if (layout.sample_rate != soundnet::audio_format::sample_rate)
      throw soundnet::io_error(s.dataset, "holds audio at " + std::to_string(layout.sample_rate) + " Hz; SoundNet reads " +
                                              std::to_string(soundnet::audio_format::sample_rate) + " Hz");
    const long crop = std::lround(s.crop_seconds * layout.sample_rate);
    if (crop < model_t::min_input_length())
      throw usage_error("--crop-seconds " + std::to_string(s.crop_seconds) + " is too short for " + Net::name +
                        ": it needs at least " + std::to_string(double(model_t::min_input_length()) / layout.sample_rate) + " s");
    const long steps_out = model_t::output_length(crop);
    const long batch = s.batch;
    if (batch % w.size != 0)
      throw usage_error("--batch-size " + std::to_string(batch) + " is not a multiple of the " + std::to_string(w.size) +
                        " ranks: each rank takes an equal part of every batch");
    const long local = batch / w.size;  // this rank's rows of each batch

    // the split: validation videos by the hash of their names, the rest for training
    const std::size_t n_val = static_cast<std::size_t>(s.validation_videos);
    if (store.size() < n_val + 1)
      throw usage_error("--validation-videos " + std::to_string(n_val) + " leaves no training video: the store holds " +
                        std::to_string(store.size()));
    const auto val = store.validation_set(n_val);
    std::vector<std::size_t> train_set;
    for (std::size_t i = 0, v = 0; i < store.size(); ++i)
      if (v < val.size() && val[v] == i) ++v;
      else train_set.push_back(i);
    const auto baseline_q = soundnet::app::mean_distribution(store, train_set);

    if constexpr (!std::is_same_v<Device, soundnet::cpu>)
      if (w.parallel()) select_gpu(w);  // before the model: its memory goes to that GPU
    model_t net(static_cast<std::uint64_t>(s.seed));
    soundnet::app::apply_math(net, s.math);
    if (!s.init.empty()) soundnet::io::load_weights(net, s.init);
    soundnet::adam opt(net, adam_options_of(s));
    if constexpr (!std::is_same_v<Device, soundnet::cpu>)
      if (w.parallel()) w.use_nccl(net.context().stream());
    const bool overlapped = w.overlap_gradients(net);  // NCCL: the gradient all-reduce beside backward()
    auto run_state = recorded_state(s, s.dataset + "/index.bin");
    run_state["ranks"] = std::to_string(w.size);
    non_finite_guard<model_t> guard{s};
    if (!s.resume.empty()) {
      const auto meta = soundnet::io::load_checkpoint(net, opt, s.resume);
      guard.resume_from(meta);
      if (w.leader()) {
        std::cerr << "resumed from " << s.resume << " at step " << opt.steps() + guard.skipped << "\n";
        const auto ranks = meta.find("ranks");
        const std::string then = ranks == meta.end() ? "1" : ranks->second;
        if (then != std::to_string(w.size))
          std::fprintf(stderr, "soundnet-train: the checkpoint was written by %s rank(s), this run has %d: the same global "
                       "batches are split into %d part(s)%s\n", then.c_str(), w.size, w.size,
                       s.sync_batch_norm ? " (synchronised batch norm: the same computation up to rounding)"
                                         : "; without --sync-batch-norm batch norm now sees the clips of another part size");
      }
    }
#ifdef SOUNDNET_TRAIN_WITH_MPI
    if (w.parallel() && s.sync_batch_norm) net.synchronise_batch_norm(w.batch_norm.get());
#endif
    if (w.leader())
      std::fprintf(stderr, "soundnet-train: %s, %zu teacher(s), %zu training and %zu validation videos, %ld-sample crops (%ld output steps)%s\n",
                   Net::name, layout.teachers.size(), train_set.size(), val.size(), crop, steps_out,
                   w.parallel() ? (", " + std::to_string(w.size) + " ranks x " + std::to_string(local) + " clips, batch norm " +
                                   (s.sync_batch_norm ? "synchronised" : "per rank")).c_str() : "");

    // validation: the first crop of each held-out video (repeated circularly), in eval mode, by
    // the model's own KL (its gradient is not used)
    std::vector<tensor> val_targets;
    for (const auto& t : layout.teachers)
      val_targets.push_back(xt::zeros<float>({std::size_t(1), std::size_t(t.classes), std::size_t(steps_out)}));
    auto validate = [&](double& baseline) {
      double loss = 0, base = 0;
      if (val.empty()) return baseline = NAN, double(NAN);
      std::vector<std::vector<float>> targets;
      tensor x = xt::zeros<float>({std::size_t(1), std::size_t(1), std::size_t(crop)});
      for (std::size_t i = static_cast<std::size_t>(w.rank); i < val.size(); i += static_cast<std::size_t>(w.size)) {
        const auto v = val[i];  // each rank its share of the held-out videos
        store.read_audio(v, 0, crop, x.data());
        soundnet::app::crop_targets(store, v, 0, crop, steps_out, targets);
        for (std::size_t t = 0; t < targets.size(); ++t) {
          std::copy(targets[t].begin(), targets[t].end(), val_targets[t].data());
          base += kl_constant(baseline_q[t], 1, layout.teachers[t].classes, steps_out, targets[t].data());
        }
        net.forward(x, soundnet::mode::inference);
        if constexpr (Net::scenes == 0) loss += net.kl_loss(val_targets[0]);
        else loss += net.kl_loss(val_targets[0], val_targets[1]);
      }
      double sums[2] = {loss, base};
      w.sum(sums, 2, "the validation losses' all-reduce");
      loss = sums[0], base = sums[1];
      baseline = base / double(val.size());
      return loss / double(val.size());
    };

    const std::string log_path = s.log.empty() ? s.save + ".log.csv" : s.log;
    const std::string plot_path = s.plot.empty() ? s.save + ".loss.png" : s.plot;
    std::ofstream log;  // rank 0's
    if (w.leader()) {
      for (const auto& file : {s.save, s.checkpoint, log_path, plot_path}) {  // the folders they go in
        const auto folder = std::filesystem::path(file).parent_path();
        if (!file.empty() && !folder.empty()) soundnet::app::make_directory(folder.string());
      }
      const bool continue_log = opt.steps() > 0 && std::filesystem::exists(log_path) && std::filesystem::file_size(log_path) > 0;
      log.open(log_path, continue_log ? std::ios::app : std::ios::trunc);  // a resumed run continues its log
      if (!log) throw soundnet::io_error(log_path, "cannot write the training log");
      if (!continue_log) log << "step,train_loss,train_baseline_kl,validation_kl,validation_baseline_kl,seconds\n";
    }

    soundnet::app::batch_loader loader(store, train_set, batch, crop, steps_out, static_cast<std::uint64_t>(s.seed),
                                       !s.no_shuffle, s.loader_threads, s.prefetch, w.rank * local, local);
    tensor x = xt::zeros<float>({std::size_t(local), std::size_t(1), std::size_t(crop)});
    // On a GPU the batches go through pinned memory and a copy stream of their own
    // (cuda::upload_stage): each upload overlaps the previous step's backward pass and Adam step.
    auto stage = upload_stage_for(net);
    std::vector<tensor> targets;
    for (const auto& t : layout.teachers)
      targets.push_back(xt::zeros<float>({std::size_t(local), std::size_t(t.classes), std::size_t(steps_out)}));
    auto save_checkpoint = [&](long step) {
      w.check_same(checksum(net), step);
      if (!w.leader()) return;
      auto meta = run_state;
      meta["data_position"] = std::to_string(step * batch);
      meta["skipped_batches"] = std::to_string(guard.skipped);
      soundnet::io::save_checkpoint(net, opt, s.checkpoint, meta);
    };
    const auto start = std::chrono::steady_clock::now();
    const long first = opt.steps() + guard.skipped;
    double train_sum = 0, train_base = 0;
    long train_count = 0;
    const auto gradients = net.gradients();
    const auto statistics = net.statistics();
    std::vector<double> step_seconds, reduce_seconds;  // each step's time, and its all-reduces' (docs/scaling.md)
    using clock = std::chrono::steady_clock;
    for (long step = first; step < s.steps; ++step) {
      const auto step_start = clock::now();
      w.at_step(step + 1);
      auto b = loader.get(step);
      if constexpr (std::is_same_v<Device, soundnet::cpu>) std::copy(b.audio.begin(), b.audio.end(), x.data());
      else std::copy(b.audio.begin(), b.audio.end(), stage->host(b.audio.size()));  // waits for the last upload
      for (std::size_t t = 0; t < targets.size(); ++t) std::copy(b.targets[t].begin(), b.targets[t].end(), targets[t].data());
      loader.recycle(std::move(b));
      guard.before(net);
      if constexpr (std::is_same_v<Device, soundnet::cpu>) {
        net.forward(x, soundnet::mode::training);
      } else {  // the copy runs beside what the GPU still has queued (the last step's backward and Adam)
        net.forward_device(stage->upload(x.size()), local, crop, soundnet::mode::training);
      }
      double loss = 0;
      net.zero_grad();
      if (s.loss == "kl") {
        if constexpr (Net::scenes == 0) loss = net.kl_loss(targets[0]);
        else loss = net.kl_loss(targets[0], targets[1]);
        net.backward();
      } else {
        const tensor logits = head_logits(net);
        tensor grad = xt::zeros<float>(logits.shape());
        long c_begin = 0;
        for (std::size_t t = 0; t < targets.size(); ++t) {
          const long c = layout.teachers[t].classes;
          loss += l2_head(logits.data(), local, Net::objects + Net::scenes, c_begin, c, steps_out, targets[t].data(), grad.data());
          c_begin += c;
        }
        net.backward(grad);
      }
      double base = 0;
      for (std::size_t t = 0; t < targets.size(); ++t)  // the baseline on the same crops
        base += kl_constant(baseline_q[t], local, layout.teachers[t].classes, steps_out, targets[t].data());
      if (w.parallel()) {  // each rank's loss is the mean over its rows: the batch's is their mean
        const auto reduce_start = clock::now();
        double sums[2] = {loss, base};
        w.sum(sums, 2, "the loss all-reduce");
        loss = sums[0] / w.size, base = sums[1] / w.size;
        if (overlapped) w.finish_gradients();
        else mean_over_ranks(net, gradients, "the gradient all-reduce");
        if (!s.sync_batch_norm)  // each rank's running statistics are of its own rows: their mean
          mean_over_ranks(net, statistics, "the batch-norm running statistics' all-reduce");
        reduce_seconds.push_back(std::chrono::duration<double>(clock::now() - reduce_start).count());
      }
      if (step == 0 && !s.dump_gradients.empty() && w.leader()) dump_gradients(net, s.dump_gradients);  // the batch's
      const bool accepted = guard.accept(net, loss, step + 1);
      if (accepted) {
        opt.step();
        train_sum += loss, ++train_count;
        train_base += base;
      }
      step_seconds.push_back(std::chrono::duration<double>(clock::now() - step_start).count());
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const double rate = double(step + 1 - first) / std::max(seconds, 1e-9);
      const long left = static_cast<long>((s.steps - step - 1) / std::max(rate, 1e-9));
      if (w.leader()) {
        std::printf("step %ld/%ld loss %.8f (%.2f steps/s, ETA %ld:%02ld:%02ld)\n", step + 1, s.steps, loss, rate,
                    left / 3600, left / 60 % 60, left % 60);
        std::fflush(stdout);
      }
      const bool last = step + 1 == s.steps;
      if ((s.validate_every > 0 && (step + 1) % s.validate_every == 0) || last) {
        double baseline = 0;
        const double v = validate(baseline);
        const double mean_train = train_sum / double(train_count), mean_base = train_base / double(train_count);
        if (w.leader()) std::printf("at step %ld: training %s %.6f (baseline KL %.6f); validation KL %.6f (baseline %.6f); "
                    "baseline: always predicting the training set's mean teacher distribution\n",
                    step + 1, s.loss.c_str(), mean_train, mean_base, v, baseline);
        std::fflush(stdout);
        if (w.leader()) log << step + 1 << ',' << mean_train << ',' << mean_base << ',' << v << ',' << baseline << ',' << seconds << '\n'
            << std::flush;
        train_sum = 0, train_base = 0, train_count = 0;
      }
      if (!s.checkpoint.empty() && s.every && (step + 1) % s.every == 0 && !last) save_checkpoint(step + 1);
    }
    if (!s.checkpoint.empty()) save_checkpoint(std::max(opt.steps() + guard.skipped, 0L));
    else w.check_same(checksum(net), s.steps);
    if (!w.leader()) {
      w.barrier("the end of the run (rank 0 writing the weights)");  // no rank waits in MPI_Finalize without a timeout
      return 0;
    }
    soundnet::io::save_weights(net, s.save);
    log.close();
    const std::string plotted = plot_losses(log_path, plot_path, s.loss);
    std::fprintf(stderr, "soundnet-train: weights %s%s%s, log %s, %s; the loader kept the optimiser waiting %.2f s\n",
                 s.save.c_str(), s.checkpoint.empty() ? "" : ", checkpoint ", s.checkpoint.c_str(), log_path.c_str(),
                 plotted.c_str(), loader.waited_seconds());
    if (!step_seconds.empty())
      std::fprintf(stderr, "soundnet-train: median step %.4f s (forward, backward, %sAdam; without validation)%s\n",
                   median(step_seconds), w.parallel() ? "all-reduces, " : "",
                   w.parallel() ? (", of which the all-reduces " + fixed4(median(reduce_seconds)) + " s (" +
                                   std::to_string(gradients.size() * sizeof(float)) + " bytes of gradients)").c_str() : "");
    w.barrier("the end of the run (rank 0 writing the weights)");
    return 0;
  }

  // One GPU per rank: the rank's place on its node (the launcher's local rank) modulo the GPUs
  // it sees; CUDA_VISIBLE_DEVICES set per rank (one GPU each) gives GPU 0 to every rank.
  template <class Device = soundnet::cuda>
  static void select_gpu(const world& w) {
    long local = -1;
    for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID", "PMIX_LOCAL_RANK"})
      if (const char* v = std::getenv(name); v && *v) {
        local = std::strtol(v, nullptr, 10);
        break;
      }
    if (local < 0) local = w.rank;
    if constexpr (Device::compiled_in) Device::use_device(static_cast<int>(local % Device::device_count()));
  }

  static double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  }
  static std::string fixed4(double x) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.4f", x);
    return buf;
  }

  // The values of a span of the model's device memory, on the host (the span itself on the CPU).
  template <class Model>
  static std::vector<float> on_host(Model& net, soundnet::device_span<float> span) {
    std::vector<float> host(span.size());
    soundnet::ops<typename Model::device, float>::copy_to_host(net.context(), span.data(), long(span.size()), host.data());
    return host;
  }

  // values = their mean over the ranks (summed through MPI on the host: a GPU's values go there
  // and back; an NCCL all-reduce on the device is the next step, docs/scaling.md).
  template <class Model>
  void mean_over_ranks(Model& net, soundnet::device_span<float> values, const char* what) const {
    const float scale = 1.0f / static_cast<float>(w.size);
    if constexpr (std::is_same_v<typename Model::device, soundnet::cpu>) {
      w.sum(values.data(), values.size(), what);
      for (std::size_t i = 0; i < values.size(); ++i) values.data()[i] *= scale;
    } else {
      if (w.average_on_device(values.data(), values.size(), what)) return;  // NCCL
      auto host = on_host(net, values);
      w.sum(host.data(), host.size(), what);
      for (auto& v : host) v *= scale;
      soundnet::ops<typename Model::device, float>::copy_from_host(net.context(), host.data(), long(host.size()), values.data());
    }
  }

  // A checksum of the weights and running statistics (equal on every rank of a run).
  template <class Model>
  static double checksum(Model& net) {
    double sum = 0;
    const auto p = on_host(net, net.parameter_arena()), st = on_host(net, net.statistics());
    for (std::size_t i = 0; i < p.size(); ++i) sum += double(p[i]) * double(i % 1021 + 1);
    for (std::size_t i = 0; i < st.size(); ++i) sum += double(st[i]) * double(i % 1019 + 1);
    return sum;
  }

  // The logits of every head, (N, classes of all heads, T), of the last forward.
  template <class Model>
  static xt::xtensor<float, 3> head_logits(const Model& net) {
    if constexpr (Model::scenes == 0) return net.object_logits();
    else return xt::concatenate(xt::xtuple(net.object_logits(), net.scene_logits()), 1);
  }

  // Draws the log's losses with gnuplot (a Debian program) when it is there.
  // Returns what happened, for the summary line.
  static std::string plot_losses(const std::string& csv, const std::string& png, const std::string& loss) {
    if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) return "no loss plot (gnuplot is missing; Debian: gnuplot-nox)";
    const std::string script =
        "set terminal pngcairo size 900,520; set output '" + png + "'; set datafile separator ','; "
        "set key autotitle columnhead; set xlabel 'step'; set ylabel 'loss'; set grid; "
        "set title 'SoundNet training'; "
        "plot '" + csv + "' using 1:2 with linespoints lc 1 title 'training " + loss + "', "
        "'' using 1:3 with lines dashtype 2 lc 1 title 'training baseline KL (mean teacher distribution)', "
        "'' using 1:4 with linespoints lc 2 title 'validation KL', "
        "'' using 1:5 with lines dashtype 2 lc 2 title 'validation baseline KL'";
    FILE* g = popen("gnuplot 2>/dev/null", "w");
    if (!g) return "no loss plot (gnuplot could not be started)";
    std::fputs(script.c_str(), g);
    std::fputs("\n", g);
    return pclose(g) == 0 ? "loss plot " + png : "no loss plot (gnuplot failed on " + csv + ")";
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
  static void dump_gradients(Model& net, const std::string& path) {
    using T = typename Model::value_type;
    std::vector<soundnet::io::named_tensor> grads;
    for (const auto& p : net.parameters()) {
      if (!p.trainable()) continue;
      std::vector<T> host(p.size);
      soundnet::ops<typename Model::device, T>::copy_to_host(net.context(), p.grad, long(p.size), host.data());
      grads.push_back({p.name, p.shape, std::vector<float>(host.begin(), host.end())});
    }
    soundnet::io::write_safetensors(path, grads, {{"architecture", Model::architecture()}, {"content", "gradients"}});
  }
};

}  // namespace

int main(int argc, char** argv) {
  settings s;
  CLI::App app{"Trains SoundNet to match teacher distributions (KL divergence, Adam).\n"
               "Dataset: a store written by soundnet-prepare (one output head per teacher).\n"
               "Manifest: a CSV with header audio,objects,scenes; paths relative to the CSV: a waveform .npy\n"
               "(samples,) and teacher distributions .npy (T, classes), one row per output step.",
               "soundnet-train"};
  soundnet::app::add_architecture_options(app, s.arch, s.scenes);
  auto* dataset = app.add_option("--dataset", s.dataset, "the dataset store (soundnet-prepare's output)");
  auto* manifest = app.add_option("--manifest", s.manifest, "the training manifest (CSV)")->excludes(dataset);
  app.add_option("--crop-seconds", s.crop_seconds, "--dataset: seconds of audio per training crop")
      ->capture_default_str()
      ->check(soundnet::app::number_in(0.01, 3600))
      ->needs(dataset);
  auto* validation = app.add_option("--validation-videos", s.validation_videos,
                                    "--dataset: videos held out for validation (default: 5%, at least 1 of 2 or more)")
                         ->check(soundnet::app::integer_at_least(0))
                         ->needs(dataset);
  (void)validation;
  app.add_option("--validate-every", s.validate_every, "--dataset: validation every N steps (and at the end)")
      ->capture_default_str()
      ->check(soundnet::app::integer_at_least(0))
      ->needs(dataset);
  app.add_option("--loss", s.loss, "--dataset: kl (the paper's) or l2 (softmax against target, squared)")
      ->capture_default_str()
      ->check(CLI::IsMember({"kl", "l2"}))
      ->needs(dataset);
  app.add_option("--log", s.log, "--dataset: the CSV log of losses (default: SAVE.log.csv)")->needs(dataset);
  app.add_option("--plot", s.plot, "--dataset: the PNG plot of the losses (default: SAVE.loss.png; needs gnuplot)")->needs(dataset);
  app.add_option("--loader-threads", s.loader_threads, "--dataset: threads making batches ahead of the optimiser")
      ->capture_default_str()
      ->check(soundnet::app::integer_at_least(0));
  app.add_option("--prefetch", s.prefetch, "--dataset: batches kept ready")
      ->capture_default_str()
      ->check(soundnet::app::integer_at_least(1));
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
  app.add_option("--dump-gradients", s.dump_gradients,
                 "write the first step's gradients (safetensors; of the whole batch in a data-parallel run)");
  auto* checkpoint = app.add_option("--checkpoint", s.checkpoint, "write a checkpoint here at the end (and every K steps)");
  app.add_option("--checkpoint-every", s.every, "write the checkpoint every K steps")
      ->check(soundnet::app::integer_at_least(1))
      ->needs(checkpoint);
  app.add_option("--resume", s.resume, "continue the run of this checkpoint (its options apply)")->excludes(init);
  app.add_flag("--allow-outside-paths", s.allow_outside_paths,
               "--manifest: let rows name files outside the manifest's folder (absolute paths, '..')");
  app.add_option("--non-finite", s.non_finite,
                 "a NaN or Inf in the loss or a gradient: stop (naming the step and tensor) or skip the batch")
      ->capture_default_str()
      ->check(CLI::IsMember({"stop", "skip"}));
  app.add_flag("--sync-batch-norm", s.sync_batch_norm,
               "--dataset under mpirun/srun: batch statistics over the global batch (N ranks then compute what one "
               "process with the whole batch computes); default: each rank's own rows")
      ->needs(dataset);
  app.add_option("--collective-timeout", s.collective_timeout,
                 "--dataset under mpirun/srun: seconds a rank waits for the others in an all-reduce before naming the "
                 "missing ranks and stopping the run")
      ->capture_default_str()
      ->check(soundnet::app::number_in(1, 86400));
  app.add_option("--precision", s.precision, "float32, or float64 for numerical studies (no checkpoints)")
      ->capture_default_str();
  soundnet::app::add_device_option(app, s.device);
  soundnet::app::add_math_option(app, s.math);
  soundnet::app::add_threads_option(app, s.threads);
  return soundnet::app::run(app, argc, argv, [&] {
    soundnet::app::check_math(s.device, s.math);
    if (s.precision == "float64" && s.math != "strict")
      throw usage_error("--math " + s.math + " applies to float32 (--precision float64 computes in float64)");
    if (s.precision == "float64" && (!s.checkpoint.empty() || !s.resume.empty()))
      throw usage_error("checkpoints hold float32 models: --checkpoint/--resume need --precision float32");
    if (s.dataset.empty() && s.manifest.empty()) throw usage_error("give --dataset DIR or --manifest CSV");
    if (!s.dataset.empty()) {  // the heads follow the store's teachers
      const soundnet::data::store_reader store(s.dataset);
      const auto& t = store.layout().teachers;
      if (t[0].classes != 1000 || t.size() > 2 || (t.size() == 2 && t[1].classes != 401 && t[1].classes != 365))
        throw soundnet::io_error(s.dataset, "its teachers have " + std::to_string(t[0].classes) +
                                                (t.size() > 1 ? " and " + std::to_string(t[1].classes) : std::string()) +
                                                " classes; the networks built in are one head of 1000 classes, or two "
                                                "of 1000 and 401 or 365");
      if (soundnet::app::given(app, "--scenes")) throw usage_error("--scenes: with --dataset the heads follow the store's teachers");
      s.scenes = t.size() == 2 ? t[1].classes : 0;
      if (s.validation_videos < 0)
        s.validation_videos = store.size() >= 2 ? std::max<long>(1, std::lround(0.05 * double(store.size()))) : 0;
    }
    world w;
#ifdef SOUNDNET_TRAIN_WITH_MPI
    if (soundnet::distributed::launched()) {
      w.comm = std::make_unique<soundnet::distributed::communicator>(s.collective_timeout, "soundnet-train");
      w.rank = w.comm->rank(), w.size = w.comm->size();
      w.batch_norm = std::make_unique<soundnet::distributed::batch_norm_sum>(*w.comm);
      std::fprintf(stderr, "soundnet-train: %s\n", w.comm->name().c_str());
    }
#endif
    try {
      if (!s.resume.empty()) resolve_resume(app, s);
      soundnet::app::apply_threads(s.threads);
      return soundnet::app::with_architecture_on(s.device, s.arch, s.scenes, train{s, w});
    } catch (const std::exception& e) {
#ifdef SOUNDNET_TRAIN_WITH_MPI
      // one rank's error stops them all (the others would wait in the next all-reduce)
      if (w.parallel()) w.comm->abort(e.what(), dynamic_cast<const usage_error*>(&e) ? 2 : 1);
#endif
      throw;
    }
  });
}
