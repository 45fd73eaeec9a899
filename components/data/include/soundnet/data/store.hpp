// soundnet::data — the dataset store: videos prepared for training (their audio and the
// teachers' posteriors on their frames), built for the paper's scale (2 million videos, a year
// of audio) and read at random by the training loader.
//
// A store is a directory (the layout is documented in docs/dataset.md):
//   dataset.json           what the store holds: sample rate, frame rate, the teachers (name,
//                          classes, labels), the record layout
//   index.bin              one 64-byte record per video (little-endian; `index_record` below):
//                          its shard, where its audio and frames are, their lengths and CRC-32s
//   videos.tsv             one line per record, in the same order: the video's key (its path)
//   shard-NNNNN.audio      int16 samples of many videos, back to back (value / 64 is the SoundNet
//                          waveform, 22,050 Hz mono x256: twice the range of full-scale PCM,
//                          since decoded lossy audio overshoots it)
//   shard-NNNNN.frames     float32 rows of (1 + sum of the teachers' classes): the frame's time
//                          in seconds, then each teacher's softmax posteriors, teacher by teacher
//
// Appending is crash-safe: a video's audio and frames are written and flushed before its key
// and then its index record, so a record only ever points at complete data; opening a store
// drops whatever an interrupted writer left after the last record. One writer at a time (a lock
// file); any number of readers, which map the shards and read any crop without the rest.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace soundnet::data {

/// A teacher as the store records it.
struct teacher_info {
  std::string name;
  int classes = 0;
  std::vector<std::string> labels;  // empty, or one per class
};

/// What a store holds, fixed when it is created.
struct store_layout {
  int sample_rate = 22050;
  double audio_scale = 1.0 / 64;  // waveform = int16 value * audio_scale ([-512, 512))
  double frame_rate = 1.0;        // frames per second the teachers saw
  std::vector<teacher_info> teachers;
  std::uint64_t shard_bytes = 1ull << 30;  // a shard's audio file grows to about this, then a new shard starts

  int frame_columns() const;       // 1 + sum of the teachers' classes
};

/// One index.bin record (64 bytes, little-endian; numpy dtype in docs/dataset.md).
struct index_record {
  std::uint32_t shard;
  std::uint32_t frames;           // rows in the shard's .frames file
  std::uint64_t audio_offset;     // bytes into the shard's .audio file
  std::uint64_t samples;          // int16 samples
  std::uint64_t frames_offset;    // bytes into the shard's .frames file
  std::uint32_t audio_crc32;      // CRC-32 (IEEE, zlib's) of the audio bytes
  std::uint32_t frames_crc32;     // of the frames bytes
  std::uint64_t key_hash;         // FNV-1a 64 of the key: the train/validation split
  std::uint64_t reserved[2];
};
static_assert(sizeof(index_record) == 64, "index records are 64 bytes");

/// CRC-32 (IEEE 802.3 polynomial, as zlib's crc32 and Python's zlib.crc32).
std::uint32_t crc32(const void* data, std::size_t bytes, std::uint32_t crc = 0);
/// FNV-1a, 64 bits.
std::uint64_t fnv1a64(const std::string& s);

/// Appends videos to a store (creating it when the directory has none). Throws
/// soundnet::io_error naming the file for every failure.
class store_writer {
 public:
  /// Opens `dir` for appending; creates the store with `layout` when absent. An existing store
  /// must have the same teachers (names and classes), sample rate and frame rate.
  store_writer(const std::string& dir, const store_layout& layout);
  ~store_writer();
  store_writer(const store_writer&) = delete;
  store_writer& operator=(const store_writer&) = delete;

  const store_layout& layout() const;
  /// Videos in the store.
  std::size_t size() const;
  /// Whether a video with this key is in the store (a prepared video is skipped).
  bool contains(const std::string& key) const;
  /// Samples clamped to the int16 range by this writer's appends.
  std::uint64_t clipped() const;

  /// Appends one video: its waveform (SoundNet scale, stored as int16 after rounding to
  /// layout().audio_scale; beyond the int16 range it is clamped and counted in clipped()), and its frames, `frames` rows of layout().frame_columns() floats (time first).
  /// Returns when the data are on disk. Keys hold no tab or newline.
  void append(const std::string& key, const float* waveform, std::size_t samples, const float* frames,
              std::size_t frames_count);

 private:
  struct state;
  std::unique_ptr<state> s_;
};

/// Reads a store: the index in memory, the shards mapped on first use.
class store_reader {
 public:
  explicit store_reader(const std::string& dir);
  ~store_reader();
  store_reader(store_reader&&) noexcept;

  const std::string& directory() const;
  const store_layout& layout() const;
  std::size_t size() const;
  const index_record& record(std::size_t i) const;
  const std::string& key(std::size_t i) const;

  /// n samples of video i from sample `start`, as SoundNet waveform values, repeating the
  /// video circularly where the crop runs past its end (the paper's treatment of short clips).
  void read_audio(std::size_t i, long start, long n, float* out) const;
  /// Video i's frame rows: record(i).frames rows of layout().frame_columns() floats.
  const float* frames(std::size_t i) const;

  /// The validation videos: the `count` with the smallest key hashes (a split by video that
  /// does not depend on the order the videos were added in). Sorted indices.
  std::vector<std::size_t> validation_set(std::size_t count) const;

  /// Recomputes every record's CRC-32s; returns the problems found, one line each (empty: all good).
  std::vector<std::string> verify() const;

 private:
  struct state;
  std::unique_ptr<state> s_;
};

}  // namespace soundnet::data
