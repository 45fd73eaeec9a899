#include <soundnet/app/loader.hpp>

#include <soundnet/soundnet.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

namespace soundnet::app {

std::vector<long> epoch_order(std::size_t n, std::uint64_t seed, long epoch, bool shuffle) {
  std::vector<long> order(n);
  std::iota(order.begin(), order.end(), 0L);
  if (!shuffle || n == 0) return order;
  normal_generator g(seed ^ (0xD1B54A32D192ED03ULL * static_cast<std::uint64_t>(epoch + 1)));
  for (std::size_t i = n - 1; i > 0; --i) std::swap(order[i], order[g.next() % (i + 1)]);
  return order;
}

void crop_targets(const data::store_reader& store, std::size_t video, long start, long crop, long steps,
                  std::vector<std::vector<float>>& out) {
  const auto& layout = store.layout();
  const auto& r = store.record(video);
  const int columns = layout.frame_columns();
  const float* rows = store.frames(video);
  const double sr = layout.sample_rate, duration = double(r.samples) / sr;
  if (r.frames == 0 || r.samples == 0)  // a store written by other means than soundnet-prepare may hold one
    throw io_error(store.directory(), "video " + std::to_string(video) + " (" + store.key(video) + ") has " +
                                          (r.frames == 0 ? "no frames" : "no audio") + ": it gives no training targets");
  out.resize(layout.teachers.size());
  std::vector<double> weight(r.frames), sum;
  for (long s = 0; s < steps; ++s) {
    const double a = (double(start) + double(s) * double(crop) / double(steps)) / sr;
    const double b = (double(start) + double(s + 1) * double(crop) / double(steps)) / sr;
    double total = 0;
    for (std::uint32_t f = 0; f < r.frames; ++f) {  // times the frame is shown inside [a, b), the video repeating
      const double tf = std::clamp(double(rows[std::size_t(f) * columns]), 0.0, duration);
      weight[f] = std::ceil((b - tf) / duration) - std::ceil((a - tf) / duration);
      total += weight[f];
    }
    if (total <= 0) {  // no frame inside the span: the one nearest its middle (circularly)
      const double mid = std::fmod((a + b) / 2, duration);
      std::uint32_t best = 0;
      double best_d = 1e300;
      for (std::uint32_t f = 0; f < r.frames; ++f) {
        double d = std::abs(double(rows[std::size_t(f) * columns]) - mid);
        d = std::min(d, duration - d);
        if (d < best_d) best_d = d, best = f;
      }
      std::fill(weight.begin(), weight.end(), 0.0);
      weight[best] = total = 1;
    }
    // the weighted mean of the rows of the frames in the span (few: about 5 at 1 frame/s)
    sum.assign(std::size_t(columns), 0.0);
    for (std::uint32_t f = 0; f < r.frames; ++f)
      if (weight[f] != 0) {
        const float* row = rows + std::size_t(f) * columns;
        for (int c = 1; c < columns; ++c) sum[std::size_t(c)] += weight[f] * row[c];
      }
    int column = 1;
    for (std::size_t t = 0; t < layout.teachers.size(); ++t) {
      const int classes = layout.teachers[t].classes;
      out[t].resize(std::size_t(classes) * std::size_t(steps));
      for (int c = 0; c < classes; ++c)
        out[t][std::size_t(c) * std::size_t(steps) + std::size_t(s)] = static_cast<float>(sum[std::size_t(column + c)] / total);
      column += classes;
    }
  }
}

std::vector<std::vector<double>> mean_distribution(const data::store_reader& store, const std::vector<std::size_t>& videos) {
  const auto& layout = store.layout();
  const int columns = layout.frame_columns();
  std::vector<std::vector<double>> mean;
  for (const auto& t : layout.teachers) mean.emplace_back(std::size_t(t.classes), 0.0);
  double frames = 0;
  for (auto v : videos) {
    const float* rows = store.frames(v);
    for (std::uint32_t f = 0; f < store.record(v).frames; ++f, frames += 1) {
      int column = 1;
      for (std::size_t t = 0; t < mean.size(); ++t) {
        for (std::size_t c = 0; c < mean[t].size(); ++c) mean[t][c] += rows[std::size_t(f) * columns + column + c];
        column += static_cast<int>(mean[t].size());
      }
    }
  }
  for (auto& m : mean)
    for (auto& x : m) x /= std::max(frames, 1.0);
  return mean;
}

batch_loader::batch_loader(const data::store_reader& store, std::vector<std::size_t> videos, long batch, long crop,
                           long steps, std::uint64_t seed, bool shuffle, int threads, int prefetch, long first,
                           long rows)
    : store_(store), videos_(std::move(videos)), batch_(batch), crop_(crop), steps_(steps), first_(first),
      rows_(rows < 0 ? batch : rows), seed_(seed), shuffle_(shuffle), prefetch_(std::max(1, prefetch)) {
  if (videos_.empty()) throw error("no training videos");
  if (first_ < 0 || rows_ < 1 || first_ + rows_ > batch_)
    throw error("rows " + std::to_string(first_) + ".." + std::to_string(first_ + rows_ - 1) + " are not in a batch of " +
                std::to_string(batch_));
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { work(); });
}

batch_loader::~batch_loader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  space_.notify_all();
  for (auto& t : threads_) t.join();
}

void batch_loader::recycle(training_batch&& b) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (pool_.size() < static_cast<std::size_t>(prefetch_ + 2)) pool_.push_back(std::move(b));
}

training_batch batch_loader::make(long k) {
  training_batch b;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!pool_.empty()) b = std::move(pool_.back()), pool_.pop_back();
  }
  b.index = k;
  b.audio.resize(std::size_t(rows_ * crop_));  // every value is written below
  const auto& layout = store_.layout();
  b.targets.resize(layout.teachers.size());
  for (std::size_t t = 0; t < layout.teachers.size(); ++t)
    b.targets[t].resize(std::size_t(rows_) * std::size_t(layout.teachers[t].classes) * std::size_t(steps_));
  const long n = static_cast<long>(videos_.size());
  long epoch = -1;
  std::vector<long> order;
  std::vector<std::vector<float>> targets;
  for (long j = 0; j < rows_; ++j) {
    const long position = k * batch_ + first_ + j;
    if (position / n != epoch) epoch = position / n, order = epoch_order(videos_.size(), seed_, epoch, shuffle_);
    const std::size_t video = videos_[std::size_t(order[std::size_t(position % n)])];
    const long samples = static_cast<long>(store_.record(video).samples);
    normal_generator pick(seed_ * 0x9E3779B97F4A7C15ULL + static_cast<std::uint64_t>(position) + 1);
    const long choices = samples >= crop_ ? samples - crop_ + 1 : samples;
    const long start = static_cast<long>(pick.next() % static_cast<std::uint64_t>(choices));
    store_.read_audio(video, start, crop_, b.audio.data() + j * crop_);
    crop_targets(store_, video, start, crop_, steps_, targets);
    for (std::size_t t = 0; t < targets.size(); ++t)
      std::copy(targets[t].begin(), targets[t].end(), b.targets[t].begin() + long(j) * long(targets[t].size()));
  }
  return b;
}

void batch_loader::work() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    space_.wait(lock, [&] { return stop_ || next_to_make_ < next_to_take_ + prefetch_; });
    if (stop_) return;
    const long k = next_to_make_++;
    lock.unlock();
    training_batch b = make(k);
    lock.lock();
    if (k >= next_to_take_) done_[k] = std::move(b);
    ready_.notify_all();
  }
}

training_batch batch_loader::get(long k) {
  if (threads_.empty()) return make(k);
  std::unique_lock<std::mutex> lock(mutex_);
  if (k != next_to_take_) {  // the first call, or a jump: start making from k
    done_.erase(done_.begin(), done_.lower_bound(k));
    next_to_take_ = k;
    next_to_make_ = std::max(next_to_make_, k);
    space_.notify_all();
  }
  const auto t0 = std::chrono::steady_clock::now();
  bool waited = false;
  while (!done_.count(k)) {
    if (next_to_make_ <= k) {  // no thread has taken it yet: make it here
      next_to_make_ = k + 1;
      lock.unlock();
      training_batch b = make(k);
      lock.lock();
      done_[k] = std::move(b);
      break;
    }
    waited = true;
    ready_.wait(lock);
  }
  if (waited) waited_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  training_batch b = std::move(done_[k]);
  done_.erase(k);
  next_to_take_ = k + 1;
  space_.notify_all();
  return b;
}

}  // namespace soundnet::app
