// soundnet::data: the dataset store (POSIX files, memory maps; nlohmann-json for dataset.json).
#include <soundnet/data/store.hpp>

#include <soundnet/core/error.hpp>
#define SOUNDNET_INSIDE_IO
#include <soundnet/io/files.hpp>
#include <soundnet/io/json.hpp>
#undef SOUNDNET_INSIDE_IO

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <mutex>
#include <numeric>
#include <sstream>
#include <unordered_set>

namespace soundnet::data {

namespace {

constexpr const char* format_name = "soundnet-dataset-1";

std::string system_error() { return std::strerror(errno); }

std::string shard_name(const std::string& dir, std::uint32_t shard, const char* ext) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "/shard-%05u.%s", shard, ext);
  return dir + buf;
}

// A file descriptor that closes itself.
struct fd_handle {
  int fd = -1;
  std::string path;
  fd_handle() = default;
  fd_handle(const std::string& p, int flags, mode_t mode = 0644) : path(p) {
    fd = ::open(p.c_str(), flags | O_CLOEXEC, mode);
    if (fd < 0) throw io_error(p, "cannot open: " + system_error());
  }
  fd_handle(fd_handle&& o) noexcept : fd(o.fd), path(std::move(o.path)) { o.fd = -1; }
  fd_handle& operator=(fd_handle&& o) noexcept {
    if (this != &o) {
      reset();
      fd = o.fd, path = std::move(o.path), o.fd = -1;
    }
    return *this;
  }
  ~fd_handle() { reset(); }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  std::uint64_t size() const {
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw io_error(path, "cannot stat: " + system_error());
    return static_cast<std::uint64_t>(st.st_size);
  }
  void write_at(const void* data, std::size_t bytes, std::uint64_t offset) const {
    const char* p = static_cast<const char*>(data);
    while (bytes > 0) {
      const ssize_t n = ::pwrite(fd, p, bytes, static_cast<off_t>(offset));
      if (n < 0) {
        if (errno == EINTR) continue;
        throw io_error(path, "cannot write: " + system_error());
      }
      p += n, bytes -= static_cast<std::size_t>(n), offset += static_cast<std::uint64_t>(n);
    }
  }
  void sync() const {
    if (::fdatasync(fd) != 0) throw io_error(path, "cannot flush to disk: " + system_error());
  }
  void truncate(std::uint64_t bytes) const {
    if (::ftruncate(fd, static_cast<off_t>(bytes)) != 0) throw io_error(path, "cannot truncate: " + system_error());
  }
};

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw io_error(path, "cannot open: " + system_error());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

nlohmann::json layout_json(const store_layout& l) {
  nlohmann::json teachers = nlohmann::json::array();
  for (const auto& t : l.teachers) teachers.push_back({{"name", t.name}, {"classes", t.classes}, {"labels", t.labels}});
  return {{"format", format_name},
          {"sample_rate", l.sample_rate},
          {"audio_scale", l.audio_scale},
          {"frame_rate", l.frame_rate},
          {"teachers", teachers},
          {"shard_bytes", l.shard_bytes},
          {"audio", "int16 little-endian; waveform = value * audio_scale"},
          {"frames", "float32 little-endian rows: time in seconds, then each teacher's posteriors in order"},
          {"frame_columns", l.frame_columns()},
          {"index_dtype",
           nlohmann::json::array({{"shard", "<u4"}, {"frames", "<u4"}, {"audio_offset", "<u8"}, {"samples", "<u8"},
                                  {"frames_offset", "<u8"}, {"audio_crc32", "<u4"}, {"frames_crc32", "<u4"},
                                  {"key_hash", "<u8"}, {"reserved", "<u8", 2}})}};
}

store_layout parse_layout(const std::string& path) {
  store_layout l;
  try {
    const auto j = nlohmann::json::parse(read_text(path));
    if (j.value("format", std::string()) != format_name)
      throw io_error(path, std::string("not a soundnet dataset (format is not ") + format_name + ")");
    l.sample_rate = io::detail::json_integer<int>(j.at("sample_rate"), path, "sample_rate");
    l.frame_rate = j.at("frame_rate").get<double>();
    l.audio_scale = j.at("audio_scale").get<double>();
    l.shard_bytes = io::detail::json_integer<std::uint64_t>(j.at("shard_bytes"), path, "shard_bytes");
    for (const auto& t : j.at("teachers")) {
      teacher_info ti;
      ti.name = t.at("name").get<std::string>();
      ti.classes = io::detail::json_integer<int>(t.at("classes"), path, "classes");
      ti.labels = t.value("labels", std::vector<std::string>());
      if (ti.classes <= 0) throw io_error(path, "teacher " + ti.name + " has no classes");
      l.teachers.push_back(std::move(ti));
    }
  } catch (const nlohmann::json::exception& e) {
    throw io_error(path, std::string("malformed: ") + e.what());
  }
  if (l.sample_rate <= 0 || !(l.frame_rate > 0) || !(l.audio_scale > 0) || l.teachers.empty())
    throw io_error(path, "malformed: needs a positive sample rate and frame rate and at least one teacher");
  return l;
}

std::vector<index_record> read_index(const std::string& path, std::uint64_t* bytes_on_disk = nullptr) {
  std::vector<index_record> records;
  std::ifstream in(path, std::ios::binary);
  if (!in) return records;
  in.seekg(0, std::ios::end);
  const auto size = static_cast<std::uint64_t>(in.tellg());
  if (bytes_on_disk) *bytes_on_disk = size;
  in.seekg(0);
  records.resize(size / sizeof(index_record));
  if (!records.empty() && !in.read(reinterpret_cast<char*>(records.data()),
                                   static_cast<std::streamsize>(records.size() * sizeof(index_record))))
    throw io_error(path, "cannot read the index");
  return records;
}

// Every record must describe bytes a shard can hold: a damaged or hostile index cannot make a
// reader map absurd sizes, overflow an offset or read int16/float32 data misaligned.
void check_records(const std::string& path, const std::vector<index_record>& records, const store_layout& layout) {
  const std::uint64_t row = 4ull * static_cast<std::uint64_t>(layout.frame_columns());
  const std::uint64_t max = std::numeric_limits<std::uint64_t>::max();
  for (std::size_t i = 0; i < records.size(); ++i) {
    const auto& r = records[i];
    std::string bad;
    if (r.shard >= records.size()) bad = "names shard " + std::to_string(r.shard) + " of a store of " + std::to_string(records.size()) + " records";
    else if (r.samples == 0) bad = "has no audio samples";
    else if (r.audio_offset % 2 != 0) bad = "has an odd audio offset";
    else if (r.frames_offset % 4 != 0) bad = "has a frames offset that is not a multiple of 4";
    else if (r.samples > (max - r.audio_offset) / 2) bad = "has an audio range past any file";
    else if (r.frames_offset > max - std::uint64_t(r.frames) * row) bad = "has a frames range past any file";
    if (!bad.empty()) throw io_error(path, "record " + std::to_string(i) + " " + bad + ": the index is damaged");
  }
}

std::vector<std::string> read_keys(const std::string& path, std::size_t count, std::uint64_t* used_bytes = nullptr) {
  std::vector<std::string> keys;
  std::ifstream in(path, std::ios::binary);
  std::string line;
  std::uint64_t used = 0;
  while (keys.size() < count && std::getline(in, line)) {
    if (in.eof()) break;  // a last line without its newline: not committed
    used += line.size() + 1;
    keys.push_back(line);
  }
  if (keys.size() < count)
    throw io_error(path, "lists " + std::to_string(keys.size()) + " videos but index.bin has " + std::to_string(count) +
                             " records: the store is damaged");
  if (used_bytes) *used_bytes = used;
  return keys;
}

bool same_teachers(const store_layout& a, const store_layout& b) {
  if (a.teachers.size() != b.teachers.size()) return false;
  for (std::size_t i = 0; i < a.teachers.size(); ++i)
    if (a.teachers[i].name != b.teachers[i].name || a.teachers[i].classes != b.teachers[i].classes) return false;
  return true;
}

std::string describe(const store_layout& l) {
  std::string s;
  for (const auto& t : l.teachers) s += (s.empty() ? "" : ", ") + t.name + " (" + std::to_string(t.classes) + ")";
  return s + " at " + std::to_string(l.sample_rate) + " Hz, " + std::to_string(l.frame_rate) + " frames/s";
}

}  // namespace

int store_layout::frame_columns() const {
  int c = 1;
  for (const auto& t : teachers) c += t.classes;
  return c;
}

std::uint32_t crc32(const void* data, std::size_t bytes, std::uint32_t crc) {
  return io::detail::crc32(data, bytes, crc);
}

std::uint64_t fnv1a64(const std::string& s) {
  std::uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001B3ull;
  return h;
}

// ---- writer ------------------------------------------------------------------------------

struct store_writer::state {
  std::string dir;
  store_layout layout;
  fd_handle lock, index, keys, audio, frames;
  std::vector<index_record> records;
  std::unordered_set<std::string> known;
  std::uint32_t shard = 0;
  std::uint64_t audio_end = 0, frames_end = 0;  // committed bytes of the current shard
  std::uint64_t clipped = 0;
};

store_writer::store_writer(const std::string& dir, const store_layout& layout) : s_(std::make_unique<state>()) {
  auto& s = *s_;
  s.dir = dir;
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) throw io_error(dir, "cannot create the directory: " + system_error());
  s.lock = fd_handle(dir + "/.lock", O_RDWR | O_CREAT);
  if (::flock(s.lock.fd, LOCK_EX | LOCK_NB) != 0)
    throw io_error(dir, "another program is writing to this store (its .lock is held)");

  const std::string meta = dir + "/dataset.json";
  if (::access(meta.c_str(), F_OK) == 0) {
    s.layout = parse_layout(meta);
    if (!same_teachers(s.layout, layout) || s.layout.sample_rate != layout.sample_rate ||
        s.layout.frame_rate != layout.frame_rate || s.layout.audio_scale != layout.audio_scale)
      throw io_error(dir, "holds " + describe(s.layout) + "; this run prepares " + describe(layout) +
                              ": use another directory for other teachers or rates");
  } else {
    if (layout.teachers.empty()) throw io_error(dir, "a store needs at least one teacher");
    s.layout = layout;
    io::detail::write_file(meta, layout_json(layout).dump(2) + "\n");
  }

  // Recover: drop an incomplete trailing record, keys past the records, data past the last record.
  std::uint64_t index_bytes = 0;
  s.records = read_index(dir + "/index.bin", &index_bytes);
  check_records(dir + "/index.bin", s.records, s.layout);
  s.index = fd_handle(dir + "/index.bin", O_RDWR | O_CREAT);
  if (index_bytes != s.records.size() * sizeof(index_record)) s.index.truncate(s.records.size() * sizeof(index_record));
  std::uint64_t key_bytes = 0;
  const auto keys = read_keys(dir + "/videos.tsv", s.records.size(), &key_bytes);
  s.keys = fd_handle(dir + "/videos.tsv", O_RDWR | O_CREAT);
  if (s.keys.size() != key_bytes) s.keys.truncate(key_bytes);
  s.known.insert(keys.begin(), keys.end());
  for (const auto& r : s.records) {
    if (r.shard > s.shard) s.shard = r.shard, s.audio_end = 0, s.frames_end = 0;
    if (r.shard == s.shard) {
      s.audio_end = std::max(s.audio_end, r.audio_offset + r.samples * 2);
      s.frames_end = std::max<std::uint64_t>(s.frames_end, r.frames_offset + std::uint64_t(r.frames) * 4 *
                                                                            std::uint64_t(s.layout.frame_columns()));
    }
  }
  s.audio = fd_handle(shard_name(dir, s.shard, "audio"), O_RDWR | O_CREAT);
  s.frames = fd_handle(shard_name(dir, s.shard, "frames"), O_RDWR | O_CREAT);
  if (s.audio.size() != s.audio_end) s.audio.truncate(s.audio_end);
  if (s.frames.size() != s.frames_end) s.frames.truncate(s.frames_end);
}

store_writer::~store_writer() = default;

const store_layout& store_writer::layout() const { return s_->layout; }
std::size_t store_writer::size() const { return s_->records.size(); }
bool store_writer::contains(const std::string& key) const { return s_->known.count(key) != 0; }
std::uint64_t store_writer::clipped() const { return s_->clipped; }

void store_writer::append(const std::string& key, const float* waveform, std::size_t samples, const float* frames,
                          std::size_t frames_count) {
  auto& s = *s_;
  if (key.empty() || key.find_first_of("\t\n\r") != std::string::npos)
    throw io_error(s.dir, "a video key must be non-empty without tabs or newlines: '" + key + "'");
  if (s.known.count(key)) throw io_error(s.dir, "already holds " + key);
  if (samples == 0) throw io_error(key, "has no audio samples to store");
  const std::size_t columns = static_cast<std::size_t>(s.layout.frame_columns());
  std::vector<std::int16_t> pcm(samples);
  std::uint64_t clipped = 0;
  for (std::size_t i = 0; i < samples; ++i) {
    const float v = waveform[i];
    if (!std::isfinite(v)) throw io_error(key, "audio sample " + std::to_string(i) + " is not finite");
    const double q = std::nearbyint(static_cast<double>(v) / s.layout.audio_scale);
    clipped += q < -32768.0 || q > 32767.0;
    pcm[i] = static_cast<std::int16_t>(std::clamp(q, -32768.0, 32767.0));
  }
  for (std::size_t i = 0; i < frames_count * columns; ++i)
    if (!std::isfinite(frames[i])) throw io_error(key, "frame value " + std::to_string(i) + " is not finite");

  if (s.audio_end > 0 && s.audio_end + samples * 2 > s.layout.shard_bytes) {  // start a new shard
    ++s.shard;
    s.audio = fd_handle(shard_name(s.dir, s.shard, "audio"), O_RDWR | O_CREAT | O_TRUNC);
    s.frames = fd_handle(shard_name(s.dir, s.shard, "frames"), O_RDWR | O_CREAT | O_TRUNC);
    s.audio_end = s.frames_end = 0;
  }
  index_record r{};
  r.shard = s.shard;
  r.frames = static_cast<std::uint32_t>(frames_count);
  r.audio_offset = s.audio_end;
  r.samples = samples;
  r.frames_offset = s.frames_end;
  r.audio_crc32 = crc32(pcm.data(), samples * 2);
  const std::size_t frame_bytes = frames_count * columns * sizeof(float);
  r.frames_crc32 = crc32(frames, frame_bytes);
  r.key_hash = fnv1a64(key);

  // data, then the key, then the record: each flushed before the next is written
  s.audio.write_at(pcm.data(), samples * 2, r.audio_offset);
  s.frames.write_at(frames, frame_bytes, r.frames_offset);
  s.audio.sync();
  s.frames.sync();
  const std::string line = key + "\n";
  s.keys.write_at(line.data(), line.size(), s.keys.size());
  s.keys.sync();
  s.index.write_at(&r, sizeof r, s.records.size() * sizeof(index_record));
  s.index.sync();
  s.audio_end += samples * 2;
  s.frames_end += frame_bytes;
  s.records.push_back(r);
  s.known.insert(key);
  s.clipped += clipped;
}

// ---- reader ------------------------------------------------------------------------------

namespace {
struct mapping {
  void* data = nullptr;
  std::size_t bytes = 0;
  mapping() = default;
  mapping(const std::string& path, std::uint64_t need) {
    fd_handle f(path, O_RDONLY);
    bytes = static_cast<std::size_t>(f.size());
    if (bytes < need)
      throw io_error(path, "is " + std::to_string(bytes) + " bytes, but the index needs " + std::to_string(need) +
                               ": the shard is truncated");
    if (bytes > 0) {
      data = ::mmap(nullptr, bytes, PROT_READ, MAP_SHARED, f.fd, 0);
      if (data == MAP_FAILED) data = nullptr, throw io_error(path, "cannot map: " + system_error());
    }
  }
  mapping(mapping&& o) noexcept : data(o.data), bytes(o.bytes) { o.data = nullptr, o.bytes = 0; }
  mapping& operator=(mapping&& o) noexcept {
    std::swap(data, o.data), std::swap(bytes, o.bytes);
    return *this;
  }
  ~mapping() {
    if (data) ::munmap(data, bytes);
  }
};
}  // namespace

struct store_reader::state {
  std::string dir;
  store_layout layout;
  std::vector<index_record> records;
  std::vector<std::string> keys;
  std::vector<std::uint64_t> audio_need, frames_need;  // per shard: bytes the index uses
  mutable std::vector<mapping> audio, frames;
  mutable std::vector<std::once_flag> mapped;

  void map(std::uint32_t shard) const {
    std::call_once(mapped[shard], [&] {
      audio[shard] = mapping(shard_name(dir, shard, "audio"), audio_need[shard]);
      frames[shard] = mapping(shard_name(dir, shard, "frames"), frames_need[shard]);
    });
  }
};

store_reader::store_reader(const std::string& dir) : s_(std::make_unique<state>()) {
  auto& s = *s_;
  s.dir = dir;
  const std::string meta = dir + "/dataset.json";
  if (::access(meta.c_str(), F_OK) != 0) throw io_error(dir, "is not a soundnet dataset (no dataset.json)");
  s.layout = parse_layout(meta);
  s.records = read_index(dir + "/index.bin");
  check_records(dir + "/index.bin", s.records, s.layout);
  s.keys = read_keys(dir + "/videos.tsv", s.records.size());
  const std::uint64_t row = 4ull * static_cast<std::uint64_t>(s.layout.frame_columns());
  std::uint32_t shards = 0;
  for (const auto& r : s.records) shards = std::max(shards, r.shard + 1);
  s.audio_need.assign(shards, 0), s.frames_need.assign(shards, 0);
  for (const auto& r : s.records) {
    s.audio_need[r.shard] = std::max(s.audio_need[r.shard], r.audio_offset + r.samples * 2);
    s.frames_need[r.shard] = std::max(s.frames_need[r.shard], r.frames_offset + r.frames * row);
  }
  s.audio.resize(shards), s.frames.resize(shards);
  s.mapped = std::vector<std::once_flag>(shards);
}

store_reader::~store_reader() = default;
store_reader::store_reader(store_reader&&) noexcept = default;

const std::string& store_reader::directory() const { return s_->dir; }
const store_layout& store_reader::layout() const { return s_->layout; }
std::size_t store_reader::size() const { return s_->records.size(); }
const index_record& store_reader::record(std::size_t i) const { return s_->records.at(i); }
const std::string& store_reader::key(std::size_t i) const { return s_->keys.at(i); }

void store_reader::read_audio(std::size_t i, long start, long n, float* out) const {
  const auto& r = record(i);
  s_->map(r.shard);
  const auto* pcm = reinterpret_cast<const std::int16_t*>(static_cast<const char*>(s_->audio[r.shard].data) + r.audio_offset);
  const long len = static_cast<long>(r.samples);
  long pos = ((start % len) + len) % len;
  const float scale = static_cast<float>(s_->layout.audio_scale);
  for (long done = 0; done < n;) {
    const long take = std::min(n - done, len - pos);
    for (long j = 0; j < take; ++j) out[done + j] = static_cast<float>(pcm[pos + j]) * scale;
    done += take, pos = 0;
  }
}

const float* store_reader::frames(std::size_t i) const {
  const auto& r = record(i);
  s_->map(r.shard);
  return reinterpret_cast<const float*>(static_cast<const char*>(s_->frames[r.shard].data) + r.frames_offset);
}

std::vector<std::size_t> store_reader::validation_set(std::size_t count) const {
  std::vector<std::size_t> order(size());
  std::iota(order.begin(), order.end(), std::size_t(0));
  count = std::min(count, order.size());
  std::partial_sort(order.begin(), order.begin() + static_cast<long>(count), order.end(), [&](std::size_t a, std::size_t b) {
    const auto ha = s_->records[a].key_hash, hb = s_->records[b].key_hash;
    return ha != hb ? ha < hb : s_->keys[a] < s_->keys[b];
  });
  order.resize(count);
  std::sort(order.begin(), order.end());
  return order;
}

std::vector<std::string> store_reader::verify() const {
  std::vector<std::string> problems;
  const std::size_t row = 4u * static_cast<std::size_t>(s_->layout.frame_columns());
  for (std::size_t i = 0; i < size(); ++i) {
    const auto& r = record(i);
    try {
      s_->map(r.shard);
    } catch (const io_error& e) {
      problems.push_back(e.what());
      continue;
    }
    const char* a = static_cast<const char*>(s_->audio[r.shard].data) + r.audio_offset;
    const char* f = static_cast<const char*>(s_->frames[r.shard].data) + r.frames_offset;
    if (crc32(a, r.samples * 2) != r.audio_crc32)
      problems.push_back(shard_name(s_->dir, r.shard, "audio") + ": the audio of " + key(i) + " fails its CRC-32");
    if (crc32(f, r.frames * row) != r.frames_crc32)
      problems.push_back(shard_name(s_->dir, r.shard, "frames") + ": the frames of " + key(i) + " fail their CRC-32");
  }
  return problems;
}

}  // namespace soundnet::data
