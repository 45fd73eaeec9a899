// Training batches from a dataset store (soundnet::data): random crops with targets aligned to
// the network's output steps, made by background threads ahead of the optimiser.
//
// Batch k is a pure function of (seed, k): clip j of batch k is position p = k * batch + j of
// an endless sequence that visits the training videos in a seeded shuffle per epoch; its crop
// starts at a seeded random sample (anywhere in a video shorter than the crop, which is then
// repeated circularly). So the batches do not depend on the thread count or on timing, and a
// run resumed at step k continues with batch k.
#pragma once

#include <soundnet/data/store.hpp>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace soundnet::app {

/// The order of the `n` training items in `epoch`: a seeded shuffle (or 0..n-1), shared by the
/// manifest and the dataset modes of soundnet-train.
std::vector<long> epoch_order(std::size_t n, std::uint64_t seed, long epoch, bool shuffle);

/// One batch: waveforms (batch, crop) and, per teacher, targets (batch, classes, steps).
struct training_batch {
  long index = -1;
  std::vector<float> audio;
  std::vector<std::vector<float>> targets;
};

/// Each output step's target for a crop of video i starting at sample `start`: for each
/// teacher, the mean of its posteriors over the frames shown during that step's span of the
/// crop (frames repeated with the video where the crop wraps around it; the frame nearest the
/// span's middle when none falls inside). out: per teacher, classes x steps (row-major).
void crop_targets(const data::store_reader& store, std::size_t video, long start, long crop, long steps,
                  std::vector<std::vector<float>>& out);

/// The mean of every training frame's posteriors, per teacher: the baseline prediction.
std::vector<std::vector<double>> mean_distribution(const data::store_reader& store, const std::vector<std::size_t>& videos);

class batch_loader {
 public:
  /// Batches of `batch` crops of `crop` samples from `videos` of `store`, `steps` output steps
  /// each; `threads` background threads keep up to `prefetch` batches ready. A data-parallel
  /// rank loads its own part of each batch: rows first .. first + rows - 1 (rows < 0: all).
  batch_loader(const data::store_reader& store, std::vector<std::size_t> videos, long batch, long crop, long steps,
               std::uint64_t seed, bool shuffle, int threads, int prefetch, long first = 0, long rows = -1);
  ~batch_loader();

  /// Batch k (batches are asked for in increasing order, starting anywhere).
  training_batch get(long k);
  /// Makes batch k (what the threads run; also usable directly).
  training_batch make(long k);
  /// Gives a used batch's memory back for the next ones (a batch of 64 crops of 20 s is 113 MB:
  /// fresh memory every step would be page-faulted in every step).
  void recycle(training_batch&& b);
  /// Seconds get() waited for a batch that was not ready yet, in total.
  double waited_seconds() const { return waited_; }

 private:
  void work();

  const data::store_reader& store_;
  std::vector<std::size_t> videos_;
  long batch_, crop_, steps_, first_, rows_;
  std::uint64_t seed_;
  bool shuffle_;
  int prefetch_;
  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable ready_, space_;
  std::map<long, training_batch> done_;
  std::vector<training_batch> pool_;  // recycled batches (guarded by mutex_)
  long next_to_make_ = 0, next_to_take_ = 0;
  bool stop_ = false;
  double waited_ = 0;
};

}  // namespace soundnet::app
