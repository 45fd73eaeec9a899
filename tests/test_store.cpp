// soundnet::data: the dataset store written, reopened, recovered after an interrupted append,
// read at random, split by video and verified by its checksums. (tests/data/check_store.py
// reads a store with numpy alone.)
#define BOOST_TEST_MODULE store
#include <boost/test/unit_test.hpp>

#include <soundnet/data/store.hpp>
#include <soundnet/core/error.hpp>

#include <cmath>
#include <cstddef>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace soundnet::data;

namespace {

store_layout two_teachers() {
  store_layout l;
  l.frame_rate = 1.0;
  l.teachers = {{"objects", 3, {"a", "b", "c"}}, {"scenes", 2, {}}};
  l.shard_bytes = 4000;  // small: several shards
  return l;
}

std::string fresh_dir(const std::string& name) {
  const auto dir = fs::temp_directory_path() / ("soundnet-test-store-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  return dir.string();
}

std::vector<float> wave(std::size_t n, float f) {
  std::vector<float> w(n);
  for (std::size_t i = 0; i < n; ++i) w[i] = std::round(400.0f * std::sin(f * float(i)) * 64.0f) / 64.0f;  // int16-exact, beyond +-256
  return w;
}

std::vector<float> frame_rows(std::size_t frames, float seed) {
  std::vector<float> r;
  for (std::size_t i = 0; i < frames; ++i) {
    r.push_back(float(i));
    r.insert(r.end(), {0.2f + seed, 0.3f, 0.5f - seed, 0.9f, 0.1f});
  }
  return r;
}

std::uintmax_t file_size(const std::string& p) { return fs::file_size(p); }

}  // namespace

BOOST_AUTO_TEST_CASE(written_videos_read_back_exactly_across_shards) {
  const auto dir = fresh_dir("roundtrip");
  {
    store_writer w(dir, two_teachers());
    for (int v = 0; v < 5; ++v) {
      const auto a = wave(900 + 100 * std::size_t(v), 0.01f * float(v + 1));
      const auto f = frame_rows(2 + std::size_t(v), 0.01f * float(v));
      w.append("video" + std::to_string(v) + ".mp4", a.data(), a.size(), f.data(), 2 + std::size_t(v));
    }
    BOOST_TEST(w.size() == 5u);
  }
  store_reader r(dir);
  BOOST_TEST(r.size() == 5u);
  BOOST_TEST(r.layout().frame_columns() == 6);
  BOOST_TEST(r.layout().teachers[0].labels.size() == 3u);
  BOOST_TEST(r.record(4).shard > 0u);  // 4,000-byte shards: the videos spread over several
  for (int v = 0; v < 5; ++v) {
    const auto a = wave(900 + 100 * std::size_t(v), 0.01f * float(v + 1));
    const auto f = frame_rows(2 + std::size_t(v), 0.01f * float(v));
    BOOST_TEST(r.key(std::size_t(v)) == "video" + std::to_string(v) + ".mp4");
    std::vector<float> got(a.size());
    r.read_audio(std::size_t(v), 0, long(a.size()), got.data());
    BOOST_TEST(got == a, boost::test_tools::per_element());
    BOOST_REQUIRE(r.record(std::size_t(v)).frames == 2u + unsigned(v));
    const float* rows = r.frames(std::size_t(v));
    BOOST_TEST(std::vector<float>(rows, rows + f.size()) == f, boost::test_tools::per_element());
  }
  BOOST_TEST(r.verify().empty());
  fs::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(crops_past_the_end_repeat_the_video_circularly) {
  const auto dir = fresh_dir("circular");
  const std::vector<float> a = {1, 2, 3, 4, 5};
  {
    store_writer w(dir, two_teachers());
    const auto f = frame_rows(1, 0);
    w.append("short", a.data(), a.size(), f.data(), 1);
  }
  store_reader r(dir);
  std::vector<float> got(12);
  r.read_audio(0, 3, 12, got.data());
  const std::vector<float> want = {4, 5, 1, 2, 3, 4, 5, 1, 2, 3, 4, 5};
  BOOST_TEST(got == want, boost::test_tools::per_element());
  fs::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(an_interrupted_append_leaves_no_entry_and_the_store_goes_on) {
  const auto dir = fresh_dir("interrupted");
  const auto a = wave(500, 0.02f);
  const auto f = frame_rows(3, 0.05f);
  {
    store_writer w(dir, two_teachers());
    w.append("first", a.data(), a.size(), f.data(), 3);
  }
  // What a writer killed in the middle of its second append leaves: data past the last record,
  // a key line without its record, half a record.
  const std::string audio = dir + "/shard-00000.audio", frames = dir + "/shard-00000.frames";
  { std::ofstream(audio, std::ios::app | std::ios::binary) << std::string(300, 'x'); }
  { std::ofstream(frames, std::ios::app | std::ios::binary) << std::string(40, 'y'); }
  { std::ofstream(dir + "/videos.tsv", std::ios::app) << "second\n"; }
  { std::ofstream(dir + "/index.bin", std::ios::app | std::ios::binary) << std::string(30, '\0'); }
  {
    store_reader r(dir);  // a reader sees the committed entry only
    BOOST_TEST(r.size() == 1u);
    BOOST_TEST(r.verify().empty());
  }
  {
    store_writer w(dir, two_teachers());  // recovery drops the leftovers
    BOOST_TEST(w.size() == 1u);
    BOOST_TEST(!w.contains("second"));
    BOOST_TEST(file_size(audio) == 1000u);
    BOOST_TEST(file_size(dir + "/index.bin") == 64u);
    w.append("second", a.data(), a.size(), f.data(), 3);
  }
  store_reader r(dir);
  BOOST_TEST(r.size() == 2u);
  BOOST_TEST(r.key(1) == "second");
  BOOST_TEST(r.verify().empty());
  fs::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(the_validation_split_follows_the_videos_not_their_order) {
  const auto d1 = fresh_dir("split1"), d2 = fresh_dir("split2");
  const auto a = wave(100, 0.1f);
  const auto f = frame_rows(1, 0);
  std::vector<std::string> keys;
  for (int i = 0; i < 20; ++i) keys.push_back("clip" + std::to_string(i));
  {
    store_writer w1(d1, two_teachers()), w2(d2, two_teachers());
    for (std::size_t i = 0; i < keys.size(); ++i) {
      w1.append(keys[i], a.data(), a.size(), f.data(), 1);
      w2.append(keys[keys.size() - 1 - i], a.data(), a.size(), f.data(), 1);
    }
  }
  store_reader r1(d1), r2(d2);
  std::vector<std::string> v1, v2;
  for (auto i : r1.validation_set(4)) v1.push_back(r1.key(i));
  for (auto i : r2.validation_set(4)) v2.push_back(r2.key(i));
  std::sort(v1.begin(), v1.end()), std::sort(v2.begin(), v2.end());
  BOOST_TEST(v1.size() == 4u);
  BOOST_TEST(v1 == v2, boost::test_tools::per_element());
  fs::remove_all(d1), fs::remove_all(d2);
}

BOOST_AUTO_TEST_CASE(damage_is_reported_naming_the_file) {
  const auto dir = fresh_dir("damage");
  const auto a = wave(400, 0.03f);
  const auto f = frame_rows(2, 0.1f);
  {
    store_writer w(dir, two_teachers());
    w.append("one", a.data(), a.size(), f.data(), 2);
    BOOST_CHECK_THROW(w.append("one", a.data(), a.size(), f.data(), 2), soundnet::io_error);  // twice
    BOOST_CHECK_THROW(w.append("tab\tkey", a.data(), a.size(), f.data(), 2), soundnet::io_error);
    auto bad = a;
    bad[7] = std::nanf("");
    BOOST_CHECK_THROW(w.append("nan", bad.data(), bad.size(), f.data(), 2), soundnet::io_error);
    BOOST_CHECK_EXCEPTION((store_writer{dir, two_teachers()}), soundnet::io_error, [](const soundnet::io_error& e) {
      return std::string(e.what()).find("another program is writing") != std::string::npos;
    });
  }
  auto other = two_teachers();
  other.teachers[1].classes = 5;
  BOOST_CHECK_EXCEPTION((store_writer{dir, other}), soundnet::io_error, [](const soundnet::io_error& e) {
    return std::string(e.what()).find("holds objects (3), scenes (2)") != std::string::npos;
  });
  {  // flip one byte of the audio: verify names the shard and the video
    std::fstream io(dir + "/shard-00000.audio", std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(10);
    io.put('\x7f');
  }
  store_reader r(dir);
  const auto problems = r.verify();
  BOOST_REQUIRE(problems.size() == 1u);
  BOOST_TEST(problems[0].find("shard-00000.audio") != std::string::npos);
  BOOST_TEST(problems[0].find("one") != std::string::npos);
  fs::resize_file(dir + "/shard-00000.frames", 8);  // truncated: the read says so
  store_reader r2(dir);
  BOOST_CHECK_EXCEPTION(r2.frames(0), soundnet::io_error, [](const soundnet::io_error& e) {
    return std::string(e.what()).find("truncated") != std::string::npos;
  });
  BOOST_CHECK_THROW(store_reader{dir + "/missing"}, soundnet::io_error);
  fs::remove_all(dir);
}

// An index record that no writer makes (a hostile or damaged index) is refused when the store
// is opened, naming the index and the record: it can neither make the reader map absurd sizes
// nor read int16 or float32 data misaligned.
BOOST_AUTO_TEST_CASE(a_damaged_index_is_refused_before_any_read) {
  const auto dir = fresh_dir("hostile-index");
  const auto a = wave(400, 0.03f);
  const auto f = frame_rows(2, 0.1f);
  {
    store_writer w(dir, two_teachers());
    w.append("one", a.data(), a.size(), f.data(), 2);
    w.append("two", a.data(), a.size(), f.data(), 2);
  }
  std::string original;
  {
    std::ifstream in(dir + "/index.bin", std::ios::binary);
    original.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  auto with = [&](std::size_t offset, std::uint64_t value, std::size_t bytes) {
    std::string changed = original;
    std::memcpy(&changed[64 + offset], &value, bytes);  // the second record
    std::ofstream(dir + "/index.bin", std::ios::binary | std::ios::trunc) << changed;
    try {
      store_reader r(dir);
    } catch (const soundnet::io_error& e) {
      return std::string(e.what());
    }
    return std::string("opened");
  };
  const auto shard = with(offsetof(index_record, shard), 0x80000000u, 4);
  BOOST_TEST_INFO(shard);
  BOOST_TEST((shard.find("index.bin") != std::string::npos && shard.find("record 1 names shard 2147483648") != std::string::npos));
  BOOST_TEST(with(offsetof(index_record, audio_offset), 801, 8).find("odd audio offset") != std::string::npos);
  BOOST_TEST(with(offsetof(index_record, frames_offset), 2, 8).find("not a multiple of 4") != std::string::npos);
  BOOST_TEST(with(offsetof(index_record, samples), 0, 8).find("no audio samples") != std::string::npos);
  BOOST_TEST(with(offsetof(index_record, samples), ~0ull / 2, 8).find("past any file") != std::string::npos);
  BOOST_TEST(with(offsetof(index_record, frames_offset), ~0ull - 3, 8).find("past any file") != std::string::npos);
  BOOST_TEST(with(0, 0, 0) == "opened");
  fs::remove_all(dir);
}

// dataset.json with numbers that are not integers where integers belong: named, never cast.
BOOST_AUTO_TEST_CASE(a_damaged_dataset_json_is_named) {
  const auto dir = fresh_dir("damaged-json");
  const auto a = wave(400, 0.03f);
  const auto f = frame_rows(2, 0.1f);
  { store_writer(dir, two_teachers()).append("one", a.data(), a.size(), f.data(), 2); }
  std::string original;
  {
    std::ifstream in(dir + "/dataset.json");
    original.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  auto with = [&](const std::string& from, const std::string& to) {
    std::string changed = original;
    const auto at = changed.find(from);
    BOOST_REQUIRE(at != std::string::npos);
    changed.replace(at, from.size(), to);
    std::ofstream(dir + "/dataset.json", std::ios::trunc) << changed;
    try {
      store_reader r(dir);
    } catch (const soundnet::io_error& e) {
      return std::string(e.what());
    }
    return std::string("opened");
  };
  const auto rate = with("\"sample_rate\": 22050", "\"sample_rate\": 2e27");
  BOOST_TEST_INFO(rate);
  BOOST_TEST((rate.find("dataset.json") != std::string::npos && rate.find("'sample_rate' must be an integer") != std::string::npos));
  BOOST_TEST(with("\"classes\": 3", "\"classes\": 3.5").find("'classes' must be an integer") != std::string::npos);
  BOOST_TEST(with("\"classes\": 3", "\"classes\": 4294967296").find("'classes' is out of range") != std::string::npos);
  BOOST_TEST(with("\"classes\": 3", "\"classes\": 3") == "opened");
  fs::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(crc32_is_zlibs) {
  const std::string s = "123456789";
  BOOST_TEST(crc32(s.data(), s.size()) == 0xCBF43926u);  // the standard check value
}
