// safetensors weights and checkpoints, .npy files: round trips, bit-exact resume, and clear
// errors for missing, truncated, malformed and mismatched files.
#define BOOST_TEST_MODULE io
#include <boost/test/unit_test.hpp>

#include <soundnet/soundnet.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;
using net5 = soundnet::model<soundnet::soundnet5<>>;

namespace {

std::string data_path(const std::string& name) {
  fs::create_directories(SOUNDNET_TEST_DATA_DIR);
  return (fs::path(SOUNDNET_TEST_DATA_DIR) / name).string();
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// The message of the exception f throws (fails the test if it throws none).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const soundnet::error& e) {
    return e.what();
  }
  BOOST_FAIL("no error was raised");
  return {};
}

bool contains(const std::string& text, const std::string& part) {
  BOOST_TEST_INFO("message: " << text);
  return text.find(part) != std::string::npos;
}

xt::xtensor<float, 3> waveforms(std::size_t batch, std::size_t samples, float phase) {
  xt::xtensor<float, 3> x = xt::zeros<float>({batch, std::size_t(1), samples});
  for (std::size_t n = 0; n < batch; ++n)
    for (std::size_t i = 0; i < samples; ++i)
      x(n, 0, i) = static_cast<float>(80 * std::sin(0.013 * i + phase + n) + 10 * std::sin(0.5 * i));
  return x;
}

}  // namespace

BOOST_AUTO_TEST_CASE(weights_round_trip_exactly) {
  net5 a(1), b(2);
  const std::string path = data_path("round-trip.safetensors");
  soundnet::io::save_weights(a, path);
  soundnet::io::load_weights(b, path);
  for (std::size_t i = 0; i < a.parameters().size(); ++i) {
    const auto &p = a.parameters()[i], &q = b.parameters()[i];
    BOOST_TEST(std::equal(p.value, p.value + p.size, q.value), p.name);
  }
  const auto file = soundnet::io::read_safetensors(path);
  BOOST_TEST(file.metadata.at("architecture") == "soundnet5");
  BOOST_TEST((file.tensors.at("conv5_scenes.weight").shape == std::vector<std::size_t>{401, 256, 16}));
}

BOOST_AUTO_TEST_CASE(weight_errors_name_the_file_and_the_problem) {
  net5 net;
  const std::string good = data_path("good.safetensors");
  soundnet::io::save_weights(net, good);
  const std::string bytes = read_bytes(good);

  BOOST_TEST(contains(error_of([&] { soundnet::io::load_weights(net, data_path("absent.safetensors")); }),
                      "absent.safetensors: cannot open"));
  const std::string truncated = data_path("truncated.safetensors");
  write_bytes(truncated, bytes.substr(0, bytes.size() - 1000));
  BOOST_TEST(contains(error_of([&] { soundnet::io::load_weights(net, truncated); }), "truncated.safetensors: truncated"));
  const std::string tiny = data_path("tiny.safetensors");
  write_bytes(tiny, "abc");
  BOOST_TEST(contains(error_of([&] { soundnet::io::load_weights(net, tiny); }), "not a safetensors file"));
  const std::string garbage = data_path("garbage.safetensors");
  std::string g = bytes;
  g[8] = '#';  // the JSON header's opening brace
  write_bytes(garbage, g);
  BOOST_TEST(contains(error_of([&] { soundnet::io::load_weights(net, garbage); }), "malformed safetensors header"));

  soundnet::model<soundnet::soundnet8<>> net8;
  BOOST_TEST(contains(error_of([&] { soundnet::io::load_weights(net8, good); }),
                      "weights are for soundnet5 but the model is soundnet8"));
  soundnet::model<soundnet::soundnet5<1000, 365>> net365;
  BOOST_TEST(contains(error_of([&] { soundnet::io::load_weights(net365, good); }),
                      "'conv5_scenes.weight' has shape (401, 256, 16) but the model expects (365, 256, 16)"));

  auto tensors = soundnet::io::weight_tensors(net);
  auto without = tensors;
  without.erase(without.begin() + 2);
  const std::string missing = data_path("missing.safetensors");
  soundnet::io::write_safetensors(missing, without);
  BOOST_TEST(contains(error_of([&] { soundnet::io::load_weights(net, missing); }), "missing tensors for soundnet5: bn1.weight"));
  auto extra = tensors;
  extra.push_back({"conv9.weight", {2}, {1, 2}});
  extra.push_back({"bn1.num_batches_tracked", {}, {0}});  // PyTorch's counter: skipped
  const std::string unknown = data_path("unknown.safetensors");
  soundnet::io::write_safetensors(unknown, extra);
  BOOST_TEST(contains(error_of([&] { soundnet::io::load_weights(net, unknown); }), "does not have: conv9.weight"));
  auto nan = tensors;
  nan[0].values[5] = std::nanf("");
  const std::string with_nan = data_path("nan.safetensors");
  soundnet::io::write_safetensors(with_nan, nan);
  BOOST_TEST(contains(error_of([&] { soundnet::io::load_weights(net, with_nan); }),
                      "'conv1.weight' has a non-finite value at element 5"));
  // a failed load leaves the model as it was
  net5 fresh(9), reference(9);
  try {
    soundnet::io::load_weights(fresh, with_nan);
  } catch (const soundnet::error&) {
  }
  const auto& p = fresh.parameter_named("conv1.weight");
  BOOST_TEST(std::equal(p.value, p.value + p.size, reference.parameter_named("conv1.weight").value));
}

BOOST_AUTO_TEST_CASE(weights_from_a_float16_file_are_refused) {
  // A complete SoundNet-5 weights file, every tensor F32 except conv2.weight, stored as F16:
  // load_weights must refuse it by name (and leave the model as it was), not misread the bytes.
  net5 source(3);
  nlohmann::ordered_json header;
  header["__metadata__"] = {{"architecture", "soundnet5"}};
  std::string data;
  for (const auto& p : source.parameters()) {
    const bool half = p.name == "conv2.weight";
    const std::size_t bytes = p.size * (half ? 2 : 4);
    header[p.name] = {{"dtype", half ? "F16" : "F32"}, {"shape", p.shape}, {"data_offsets", {data.size(), data.size() + bytes}}};
    if (half) data.append(bytes, '\0');
    else data.append(reinterpret_cast<const char*>(p.value), bytes);
  }
  std::string text = header.dump();
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((text.size() >> (8 * i)) & 0xff);
  const std::string path = data_path("f16.safetensors");
  write_bytes(path, bytes + text + data);
  net5 net(9), reference(9);
  const std::string message = error_of([&] { soundnet::io::load_weights(net, path); });
  BOOST_TEST(contains(message, "f16.safetensors: tensor 'conv2.weight' has dtype F16; soundnet weights are F32"), message);
  for (std::size_t i = 0; i < net.parameters().size(); ++i) {  // unchanged
    const auto& p = net.parameters()[i];
    BOOST_TEST(std::equal(p.value, p.value + p.size, reference.parameters()[i].value), p.name);
  }
}

BOOST_AUTO_TEST_CASE(npy_reader_is_strict) {
  xt::xtensor<float, 2> a = {{1, 2, 3}, {4, 5, 6}};
  const std::string path = data_path("a.npy");
  soundnet::io::write_npy(path, a);
  const auto back = soundnet::io::read_npy<float>(path);
  BOOST_TEST((back.shape() == std::vector<std::size_t>{2, 3}));
  BOOST_TEST(back(1, 2) == 6.0f);
  const auto as_double = soundnet::io::read_npy<double>(path);
  BOOST_TEST(as_double(0, 1) == 2.0);

  const std::string bytes = read_bytes(path);
  const std::string cut = data_path("cut.npy");
  write_bytes(cut, bytes.substr(0, bytes.size() - 4));
  BOOST_TEST(contains(error_of([&] { soundnet::io::read_npy<float>(cut); }), "cut.npy: truncated"));
  const std::string magic = data_path("magic.npy");
  write_bytes(magic, "PK\x03\x04 not an npy file");
  BOOST_TEST(contains(error_of([&] { soundnet::io::read_npy<float>(magic); }), "not a .npy file"));
  std::string ints = bytes;
  ints.replace(ints.find("<f4"), 3, "<i4");
  const std::string int_path = data_path("ints.npy");
  write_bytes(int_path, ints);
  BOOST_TEST(contains(error_of([&] { soundnet::io::read_npy<float>(int_path); }), "dtype '<i4' is not supported"));
  // The same bytes in Fortran order: element (r, c) is value [c * 2 + r].
  std::string fortran = bytes;
  fortran.replace(fortran.find("False"), 5, "True ");
  const std::string f_path = data_path("fortran.npy");
  write_bytes(f_path, fortran);
  const auto f = soundnet::io::read_npy<float>(f_path);
  BOOST_TEST((f.shape() == std::vector<std::size_t>{2, 3}));
  BOOST_TEST((f(0, 0) == 1.0f && f(1, 0) == 2.0f && f(0, 1) == 3.0f && f(1, 2) == 6.0f));
  std::string odd = bytes;
  odd.replace(odd.find("False"), 5, "Maybe");
  write_bytes(f_path, odd);
  BOOST_TEST(contains(error_of([&] { soundnet::io::read_npy<float>(f_path); }), "fortran_order is 'Maybe'"));
  BOOST_TEST(contains(error_of([&] { soundnet::io::read_npy<float>(data_path("nothing.npy")); }), "cannot open"));
}

namespace {
// A version 1.0 .npy file with the header dict `dict` and `data` after it.
std::string npy_bytes(const std::string& dict, const std::string& data) {
  std::string h = dict;
  while ((10 + h.size() + 1) % 64 != 0) h += ' ';
  h += '\n';
  std::string out = "\x93NUMPY\x01";
  out += '\0';
  out += static_cast<char>(h.size() & 0xff);
  out += static_cast<char>(h.size() >> 8);
  return out + h + data;
}

// A safetensors file with the JSON header `header` and `data` after it.
std::string safetensors_bytes(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return out + header + data;
}
}  // namespace

// Headers from a hostile or damaged file: sizes are checked against the file before anything
// is allocated, so no header can make the reader allocate more than the file justifies or
// overflow a size computation (the fuzzers' findings, kept as cases).
BOOST_AUTO_TEST_CASE(hostile_headers_cannot_allocate_or_overflow) {
  const std::string path = data_path("hostile.npy");
  const std::string data(24, '\0');
  auto npy_error = [&](const std::string& shape) {
    write_bytes(path, npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }", data));
    return error_of([&] { soundnet::io::read_npy<float>(path); });
  };
  BOOST_TEST(contains(npy_error("(-1, 3)"), "malformed .npy shape"));
  BOOST_TEST(contains(npy_error("(+2, 3)"), "malformed .npy shape"));
  BOOST_TEST(contains(npy_error("(4294967296, 4294967296)"), "needs more data than the file's 24 bytes"));
  BOOST_TEST(contains(npy_error("(0, 18446744073709551615)"), "needs more data than the file's 24 bytes"));
  BOOST_TEST(contains(npy_error("(0, 99999999999999999999999999)"), "needs more data"));
  BOOST_TEST(contains(npy_error("(7,)"), "truncated: the header announces 28 bytes"));
  write_bytes(path, npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 5), }", ""));
  BOOST_TEST(soundnet::io::read_npy<float>(path).size() == 0u);  // an empty array is fine
  write_bytes(path, npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", data));
  BOOST_TEST(soundnet::io::read_npy<float>(path).size() == 6u);

  const std::string st = data_path("hostile.safetensors");
  auto st_error = [&](const std::string& header, const std::string& bytes) {
    write_bytes(st, safetensors_bytes(header, bytes));
    return error_of([&] { soundnet::io::read_safetensors(st); });
  };
  BOOST_TEST(contains(st_error(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", ""),
                      "shape larger than the file's data section"));
  BOOST_TEST(contains(st_error(R"({"a":{"dtype":"F64","shape":[0,2305843009213693952],"data_offsets":[0,0]}})", data),
                      "shape larger than the file's data section"));
  BOOST_TEST(contains(st_error(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                               R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", data),
                      "tensors overlap"));
  BOOST_TEST(contains(st_error(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[18446744073709551615,7]}})", data),
                      "truncated"));

  // A file written by soundnet carries the CRC-32 of its data: one flipped bit is found.
  soundnet::io::write_safetensors(st, {{"w", {3}, {1.0f, 2.0f, 3.0f}}});
  BOOST_TEST(soundnet::io::read_safetensors(st).values<float>("w")[2] == 3.0f);
  std::string bytes = read_bytes(st);
  bytes[bytes.size() - 2] ^= 0x04;
  write_bytes(st, bytes);
  BOOST_TEST(contains(error_of([&] { soundnet::io::read_safetensors(st); }), "hostile.safetensors: corrupt: the data section's CRC-32"));

  // A directory where a file is expected.
  BOOST_TEST(contains(error_of([&] { soundnet::io::read_npy<float>(SOUNDNET_TEST_DATA_DIR); }), "is a directory"));
  BOOST_TEST(contains(error_of([&] { soundnet::io::read_safetensors(SOUNDNET_TEST_DATA_DIR); }), "is a directory"));
}

BOOST_AUTO_TEST_CASE(crc32_is_zlibs_and_continues) {
  const std::string s = "123456789", long_text(1000, 'x');
  BOOST_TEST(soundnet::io::detail::crc32(s.data(), s.size()) == 0xCBF43926u);  // the standard check value
  const auto whole = soundnet::io::detail::crc32(long_text.data(), long_text.size());
  BOOST_TEST(soundnet::io::detail::crc32(long_text.data() + 333, 667, soundnet::io::detail::crc32(long_text.data(), 333)) == whole);
  BOOST_TEST(whole == 0x3B41C9E6u);  // zlib.crc32(b"x" * 1000)
}

// A write replaces the file whole or not at all: a failed one names the file and leaves the old.
BOOST_AUTO_TEST_CASE(a_failed_write_leaves_the_old_file) {
  const std::string path = data_path("kept.npy");
  xt::xtensor<float, 1> a = {1, 2, 3};
  soundnet::io::write_npy(path, a);
  const std::string before = read_bytes(path);
  const std::string into_missing = data_path("no-such-folder/x.npy");
  BOOST_TEST(contains(error_of([&] { soundnet::io::write_npy(into_missing, a); }), "x.npy: cannot open for writing"));
  BOOST_TEST(read_bytes(path) == before);
  BOOST_TEST(!fs::exists(path + ".tmp"));
}

BOOST_AUTO_TEST_CASE(npy_stream_writer_appends_steps) {
  const std::string path = data_path("stream.npy");
  std::remove(path.c_str());
  {
    soundnet::io::npy_stream_writer w(path, 3);
    const float a[] = {0, 1, 10, 11, 20, 21};  // (3 channels, 2 steps)
    const double b[] = {2, 12, 22};             // (3, 1)
    w.append(a, 2);
    w.append(b, 1);
    BOOST_TEST(!std::ifstream(path).good());  // not in place before close()
    w.close();
  }
  const auto back = soundnet::io::read_npy<float>(path);
  BOOST_TEST((back.shape() == std::vector<std::size_t>{3, 3}));
  for (int c = 0; c < 3; ++c)
    for (int t = 0; t < 3; ++t) BOOST_TEST(back(c, t) == float(10 * c + t));
  {
    soundnet::io::npy_stream_writer w(path, 0);  // 1-D
    const float x[] = {5, 6, 7};
    w.append(x, 3);
    w.close();
  }
  const auto v = soundnet::io::read_npy<float>(path);
  BOOST_TEST((v.shape() == std::vector<std::size_t>{3}));
  BOOST_TEST(v(2) == 7.0f);
  const std::string abandoned = data_path("abandoned.npy");
  {
    soundnet::io::npy_stream_writer w(abandoned, 2);
    const float x[] = {1, 2};
    w.append(x, 1);
  }  // destroyed without close(): nothing is left
  BOOST_TEST(!std::ifstream(abandoned).good());
  BOOST_TEST(!std::ifstream(abandoned + ".tmp").good());
  BOOST_TEST(contains(error_of([&] { soundnet::io::npy_stream_writer(data_path("no/such/dir/x.npy"), 1); }), "cannot open"));
}

BOOST_AUTO_TEST_CASE(training_resumes_bit_for_bit_from_a_checkpoint) {
  using model_t = soundnet::model<soundnet::soundnet5<5, 3>>;
  const long samples = 70000, steps = model_t::output_length(samples);
  xt::xtensor<float, 3> t_obj = xt::zeros<float>({std::size_t(2), std::size_t(5), std::size_t(steps)});
  xt::xtensor<float, 3> t_scn = xt::zeros<float>({std::size_t(2), std::size_t(3), std::size_t(steps)});
  t_obj.fill(0.2f);
  t_scn.fill(1.0f / 3);
  auto train = [&](model_t& net, soundnet::adam<float>& opt, int from, int to) {
    for (int s = from; s < to; ++s) {
      net.forward(waveforms(2, samples, static_cast<float>(s)), soundnet::mode::training);
      net.kl_loss(t_obj, t_scn);
      net.zero_grad();
      net.backward();
      opt.step();
    }
  };
  soundnet::adam_options o;
  o.lr = 3e-3;
  model_t straight(4);
  soundnet::adam<float> opt_straight(straight, o);
  train(straight, opt_straight, 0, 4);

  model_t first(4);
  soundnet::adam<float> opt_first(first, o);
  train(first, opt_first, 0, 2);
  const std::string path = data_path("checkpoint.safetensors");
  soundnet::io::save_checkpoint(first, opt_first, path, {{"note", "two steps"}});
  model_t resumed(99);  // other initial weights: all must come from the checkpoint
  soundnet::adam<float> opt_resumed(resumed);
  const auto meta = soundnet::io::load_checkpoint(resumed, opt_resumed, path);
  BOOST_TEST(meta.at("note") == "two steps");
  BOOST_TEST(opt_resumed.steps() == 2);
  BOOST_TEST(opt_resumed.options().lr == 3e-3);
  train(resumed, opt_resumed, 2, 4);
  for (std::size_t i = 0; i < straight.parameters().size(); ++i) {
    const auto &p = straight.parameters()[i], &q = resumed.parameters()[i];
    BOOST_TEST(std::memcmp(p.value, q.value, p.size * sizeof(float)) == 0, p.name);
  }
  // weights load from a checkpoint too; a weights file is not a checkpoint
  model_t plain;
  soundnet::io::load_weights(plain, path);
  const std::string weights_only = data_path("weights-only.safetensors");
  soundnet::io::save_weights(plain, weights_only);
  BOOST_TEST(contains(error_of([&] { soundnet::io::load_checkpoint(plain, opt_resumed, weights_only); }),
                      "not a soundnet checkpoint"));
}
