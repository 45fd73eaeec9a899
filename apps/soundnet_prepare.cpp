// soundnet-prepare: videos -> (audio, teachers' posteriors on their frames) in a dataset store.
//
//   soundnet-prepare --teacher T.json [--teacher T2.json] --out DIR (VIDEO | FOLDER)... [--list LIST]
//                    [--frame-rate 1] [--jobs N] [--batch 16] [--min-seconds 1]
//
// Each video's audio track is decoded to the SoundNet waveform (22,050 Hz mono, x256), its
// frames are sampled at --frame-rate (default 1 per second, as the authors extracted them), each
// teacher classifies the frames in batches, and the video goes into the store (soundnet::data)
// with its posteriors and their times. --jobs videos are prepared at once (each job has its own
// decoders and teachers). Videos already in the store are skipped, so an interrupted run is
// resumed by running it again; an entry is written whole or not at all. A video without an
// audio track, without a video stream, too short, or corrupt is reported on one line and
// skipped; the summary and the exit status (1 when any failed) say how many.
#include <soundnet/app/cli.hpp>
#include <soundnet/app/inputs.hpp>
#include <soundnet/app/progress.hpp>
#include <soundnet/data/store.hpp>
#include <soundnet/media/audio.hpp>
#include <soundnet/media/video.hpp>
#include <soundnet/teachers/teacher.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <thread>

namespace fs = std::filesystem;

namespace {

using soundnet::app::usage_error;

struct settings {
  std::vector<std::string> teachers, inputs;
  std::string out, list;
  double frame_rate = 1.0, min_seconds = 1.0;
  int jobs = 0, batch = 16;
  bool allow_outside_paths = false;
};

// A video's key in the store: its absolute, normalised path.
std::string key_of(const std::string& path) {
  std::error_code ec;
  const auto abs = fs::absolute(path, ec);
  return (ec ? fs::path(path) : abs).lexically_normal().string();
}

struct prepared {
  std::vector<float> audio, frames;
  std::size_t frame_count = 0;
  double decode_seconds = 0, teacher_seconds = 0;
};

// One job's tools: its own teachers (OpenCV nets are not shared between threads).
struct worker {
  std::vector<soundnet::teachers::teacher> teachers;
  int columns = 1;

  prepared run(const std::string& path, const settings& s) {
    using clock = std::chrono::steady_clock;
    prepared p;
    const auto t0 = clock::now();
    soundnet::media::audio_reader audio(path);  // "has no audio stream", corrupt or truncated data
    std::vector<float> piece(1 << 16);
    while (std::size_t n = audio.read(piece.data(), piece.size())) p.audio.insert(p.audio.end(), piece.begin(), piece.begin() + long(n));
    const double seconds = double(p.audio.size()) / soundnet::audio_format::sample_rate;
    if (seconds < s.min_seconds)
      throw soundnet::io_error(path, "too short: " + std::to_string(seconds) + " s of audio, less than --min-seconds " +
                                         std::to_string(s.min_seconds));
    soundnet::media::frame_reader video(path, s.frame_rate);  // "has no video stream"
    std::vector<soundnet::media::video_frame> frames;
    for (soundnet::media::video_frame f; video.next(f);) frames.push_back(std::move(f));
    if (frames.empty()) throw soundnet::io_error(path, "its video stream has no decodable frame");
    const auto t1 = clock::now();
    p.frame_count = frames.size();
    p.frames.assign(frames.size() * std::size_t(columns), 0.0f);
    for (std::size_t i = 0; i < frames.size(); ++i) p.frames[i * std::size_t(columns)] = static_cast<float>(frames[i].time);
    int column = 1;
    for (auto& t : teachers) {
      const int classes = t.info().classes;
      for (std::size_t b = 0; b < frames.size(); b += std::size_t(s.batch)) {
        std::vector<soundnet::teachers::image_view> views;
        for (std::size_t i = b; i < std::min(frames.size(), b + std::size_t(s.batch)); ++i)
          views.push_back({frames[i].width, frames[i].height, frames[i].bgr.data()});
        const auto probs = t.classify(views);
        for (std::size_t i = 0; i < views.size(); ++i)
          std::copy(probs.begin() + long(i) * classes, probs.begin() + long(i + 1) * classes,
                    p.frames.begin() + long((b + i) * std::size_t(columns)) + column);
      }
      column += classes;
    }
    const auto t2 = clock::now();
    p.decode_seconds = std::chrono::duration<double>(t1 - t0).count();
    p.teacher_seconds = std::chrono::duration<double>(t2 - t1).count();
    return p;
  }
};

int prepare(const settings& s) {
  // teachers first: a bad spec is the run's error, before any video is touched
  std::vector<soundnet::teachers::spec> specs;
  for (const auto& path : s.teachers) specs.push_back(soundnet::teachers::spec::load(path, s.allow_outside_paths));
  for (std::size_t i = 0; i < specs.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (specs[i].name == specs[j].name) throw usage_error("two teachers are named '" + specs[i].name + "'");
  soundnet::data::store_layout layout;
  layout.frame_rate = s.frame_rate;
  for (const auto& sp : specs) layout.teachers.push_back({sp.name, sp.classes, sp.labels});
  soundnet::data::store_writer store(s.out, layout);

  std::vector<std::string> failures;
  const auto inputs = soundnet::app::collect_inputs(s.inputs, s.list, failures);
  std::vector<std::string> todo;
  std::size_t skipped = 0;
  for (const auto& in : inputs) {
    if (store.contains(key_of(in))) ++skipped;
    else todo.push_back(in);
  }
  const int jobs = std::max(1, std::min<int>(s.jobs > 0 ? s.jobs : int(std::thread::hardware_concurrency()), int(todo.size())));
  soundnet::teachers::set_threads(jobs > 1 ? 1 : 0);  // 0: OpenCV's default  // jobs in parallel, or OpenCV's own threads for one job
  std::vector<worker> workers(static_cast<std::size_t>(jobs));
  for (auto& w : workers) {
    for (const auto& sp : specs) w.teachers.emplace_back(sp);
    w.columns = layout.frame_columns();
  }

  soundnet::app::progress bar(todo.size(), "videos");
  for (const auto& f : failures) bar.message("soundnet-prepare: " + f);
  std::mutex mutex;  // the store, the counters, the progress line
  std::atomic<std::size_t> next{0};
  std::size_t done = 0, added = 0, failed = failures.size();
  double media_seconds = 0, decode_seconds = 0, teacher_seconds = 0;
  const auto start = std::chrono::steady_clock::now();
  auto job = [&](worker& w) {
    for (std::size_t i; (i = next++) < todo.size();) {
      const std::string& path = todo[i];
      try {
        prepared p = w.run(path, s);
        std::lock_guard<std::mutex> lock(mutex);
        store.append(key_of(path), p.audio.data(), p.audio.size(), p.frames.data(), p.frame_count);
        ++added;
        media_seconds += double(p.audio.size()) / soundnet::audio_format::sample_rate;
        decode_seconds += p.decode_seconds, teacher_seconds += p.teacher_seconds;
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(mutex);
        bar.message(std::string("soundnet-prepare: skipped: ") + e.what());
        ++failed;
      }
      std::lock_guard<std::mutex> lock(mutex);
      bar.update(++done);
    }
  };
  std::vector<std::thread> threads;
  for (int j = 1; j < jobs; ++j) threads.emplace_back(job, std::ref(workers[std::size_t(j)]));
  if (!todo.empty()) job(workers[0]);
  for (auto& t : threads) t.join();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::fprintf(stderr,
               "soundnet-prepare: %zu added, %zu already in the store, %zu failed; the store holds %zu videos (%s)\n",
               added, skipped, failed, store.size(), s.out.c_str());
  if (store.clipped() > 0)
    std::fprintf(stderr, "soundnet-prepare: %llu samples beyond the store's int16 range were clamped\n",
                 static_cast<unsigned long long>(store.clipped()));
  if (added > 0)
    std::fprintf(stderr,
                 "soundnet-prepare: %.1f s of video in %.1f s with %d jobs: %.1f s of video per second; summed over the jobs, "
                 "decoding %.1f s, teachers %.1f s\n",
                 media_seconds, wall, jobs, media_seconds / std::max(wall, 1e-9), decode_seconds, teacher_seconds);
  return failed > 0 ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  settings s;
  CLI::App app{"Prepares videos for training: audio and the vision teachers' posteriors on their frames, into a dataset store.",
               "soundnet-prepare"};
  app.add_option("--teacher", s.teachers, "a teacher's JSON spec (ONNX model, preprocessing, labels); repeat for several")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--out", s.out, "the dataset directory (created, or appended to)")->required();
  app.add_option("inputs", s.inputs, "video files or folders of videos");
  app.add_option("--list", s.list, "a file listing videos, one per line (relative to its folder)");
  app.add_flag("--allow-outside-paths", s.allow_outside_paths,
               "let a teacher spec name files outside its folder (absolute paths, '..')");
  app.add_option("--frame-rate", s.frame_rate, "frames per second given to the teachers")
      ->capture_default_str()
      ->check(soundnet::app::number_in(1e-3, 120));
  app.add_option("--min-seconds", s.min_seconds,
                 "skip videos with less audio than this (shorter ones are repeated circularly in training crops)")
      ->capture_default_str()
      ->check(soundnet::app::number_in(0, 1e6));
  app.add_option("--jobs", s.jobs, "videos prepared at once (default: one per core)")->check(soundnet::app::integer_at_least(0));
  app.add_option("--batch", s.batch, "frames per teacher forward")->capture_default_str()->check(soundnet::app::integer_at_least(1));
  return soundnet::app::run(app, argc, argv, [&] {
    if (s.inputs.empty() && s.list.empty()) throw usage_error("no videos: give files or folders, or --list");
    return prepare(s);
  });
}
