// feature_stream: chunked read-outs of long waveforms against one forward over the whole
// waveform, at every read-out, for many lengths, chunk sizes and push sizes; bounded memory;
// errors.
#define BOOST_TEST_MODULE stream
#include <boost/test/unit_test.hpp>

#include <soundnet/soundnet.hpp>
#include <xtensor/xview.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <vector>

using soundnet::soundnet5;
using soundnet::soundnet8;

namespace {

// Weights that keep activations at a useful scale through every layer (He-style conv weights,
// random batch-norm affine parameters and statistics), so that a wrong sample anywhere shows in
// the deepest read-out. Every tensor of the model is set: the count is checked.
template <class Model>
void lively_weights(Model& net, std::uint64_t seed) {
  soundnet::normal_generator rng(seed);
  std::size_t set = 0;
  auto ends_with = [](const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  for (auto& p : net.parameters()) {
    using T = typename Model::value_type;
    const bool bn = p.name.rfind("bn", 0) == 0;
    if (!bn && ends_with(p.name, ".weight")) {  // convolution (C_out, C_in, K)
      const double fan_in = double(p.shape[1]) * p.shape[2];
      for (std::size_t i = 0; i < p.size; ++i) p.value[i] = T(rng(0, 1) * std::sqrt(2.0 / fan_in));
    } else if (bn && ends_with(p.name, ".weight")) {  // gamma
      for (std::size_t i = 0; i < p.size; ++i) p.value[i] = T(1 + 0.3 * rng(0, 1));
    } else if (ends_with(p.name, "running_var")) {
      for (std::size_t i = 0; i < p.size; ++i) p.value[i] = T(0.5 + std::abs(rng(0, 1)));
    } else if (ends_with(p.name, "running_mean") || ends_with(p.name, ".bias")) {  // conv bias, beta, mean
      for (std::size_t i = 0; i < p.size; ++i) p.value[i] = T(0.1 * rng(0, 1));
    } else {
      continue;
    }
    ++set;
  }
  BOOST_REQUIRE_EQUAL(set, net.parameters().size());
}

template <class T>
std::vector<T> waveform(long n, std::uint64_t seed) {
  soundnet::normal_generator rng(seed);
  std::vector<T> x(static_cast<std::size_t>(n));
  for (long i = 0; i < n; ++i) x[i] = T(40 * rng(0, 1) + 60 * std::sin(0.01 * i) * std::sin(3e-5 * i));
  return x;
}

// The read-outs of one forward over the whole waveform.
template <class Model>
std::map<std::string, xt::xtensor<typename Model::value_type, 3>> whole(Model& net, const std::vector<typename Model::value_type>& x,
                                                                       soundnet::keep k) {
  net.forward(x.data(), 1, static_cast<long>(x.size()), soundnet::mode::inference, k);
  std::map<std::string, xt::xtensor<typename Model::value_type, 3>> out;
  for (const auto& name : net.output_names())
    if (k == soundnet::keep::all || !net.inside_fused_block(name)) out[name] = net.output(name);
  return out;
}

// Streams x in pieces of the given sizes (cycled) and assembles each read-out (C, T).
template <class Model>
std::vector<xt::xtensor<typename Model::value_type, 2>> streamed(soundnet::feature_stream<Model>& s,
                                                                 const std::vector<typename Model::value_type>& x,
                                                                 const std::vector<long>& pieces) {
  using T = typename Model::value_type;
  std::vector<std::vector<std::vector<T>>> rows(s.outputs().size());
  for (std::size_t j = 0; j < rows.size(); ++j) rows[j].resize(static_cast<std::size_t>(s.channels(j)));
  auto sink = [&](std::size_t j, long first, const xt::xtensor<T, 2>& block) {
    for (std::size_t c = 0; c < block.shape(0); ++c) {
      BOOST_REQUIRE_EQUAL(static_cast<long>(rows[j][c].size()), first);  // blocks arrive in order, no gaps
      rows[j][c].insert(rows[j][c].end(), &block(c, 0), &block(c, 0) + block.shape(1));
    }
  };
  long at = 0;
  for (std::size_t i = 0; at < static_cast<long>(x.size()); ++i) {
    const long n = std::min(pieces[i % pieces.size()], static_cast<long>(x.size()) - at);
    s.push(x.data() + at, n, sink);
    at += n;
  }
  s.finish(sink);
  std::vector<xt::xtensor<T, 2>> out;
  for (auto& r : rows) {
    xt::xtensor<T, 2> m = xt::empty<T>({r.size(), r.empty() ? std::size_t(0) : r[0].size()});
    for (std::size_t c = 0; c < r.size(); ++c) std::copy(r[c].begin(), r[c].end(), &m(c, 0));
    out.push_back(std::move(m));
  }
  return out;
}

// Largest |a - b| over the largest |b| (or 1).
template <class T>
double relative_difference(const xt::xtensor<T, 2>& a, const xt::xtensor<T, 3>& b) {
  BOOST_REQUIRE_EQUAL(a.shape(0), b.shape(1));
  BOOST_REQUIRE_EQUAL(a.shape(1), b.shape(2));
  double diff = 0, scale = 1;
  for (std::size_t c = 0; c < a.shape(0); ++c)
    for (std::size_t t = 0; t < a.shape(1); ++t) {
      diff = std::max(diff, std::abs(double(a(c, t)) - double(b(0, c, t))));
      scale = std::max(scale, std::abs(double(b(0, c, t))));
    }
  return diff / scale;
}

template <class Model>
void check_equal_to_whole(Model& net, long samples, long chunk, const std::vector<long>& pieces,
                          const std::vector<std::string>& names, double tolerance) {
  using T = typename Model::value_type;
  const auto x = waveform<T>(samples, static_cast<std::uint64_t>(samples));
  bool inside = false;
  for (const auto& n : names) inside = inside || net.inside_fused_block(n);
  const auto reference = whole(net, x, inside ? soundnet::keep::all : soundnet::keep::block_outputs);
  soundnet::feature_stream<Model> s(net, names, chunk);
  const auto got = streamed(s, x, pieces);
  const auto lengths = Model::network::lengths(samples);
  for (std::size_t j = 0; j < names.size(); ++j) {
    BOOST_TEST_CONTEXT(Model::architecture() << " " << names[j] << ", " << samples << " samples, chunk " << chunk) {
      BOOST_TEST(static_cast<long>(got[j].shape(1)) == lengths[net.output_depth(names[j])]);
      const double d = relative_difference(got[j], reference.at(names[j]));
      BOOST_TEST(d <= tolerance);
      if (std::getenv("SOUNDNET_TEST_VERBOSE"))
        BOOST_TEST_MESSAGE(Model::architecture() << " " << names[j] << " " << samples << "/" << chunk << ": " << d);
    }
  }
}

}  // namespace

// Under a sanitizer (SOUNDNET_TEST_UNDER_SANITIZER: ten- to thirty-fold slower arithmetic)
// the same checks run on shorter audio and fewer chunk sizes.
#ifdef SOUNDNET_TEST_UNDER_SANITIZER
constexpr bool under_sanitizer = true;
#else
constexpr bool under_sanitizer = false;
#endif

BOOST_AUTO_TEST_CASE(streaming_equals_the_whole_forward_at_every_read_out_in_double) {
  // float64: any misplaced sample shows far above rounding (1e-10 of the scale).
  soundnet::model<soundnet8<>, double> net8;
  lively_weights(net8, 3);
  const long min8 = soundnet8<>::min_input_length();
  const auto lengths = under_sanitizer ? std::vector<long>{min8 + 1, 3 * min8 + 12345} : std::vector<long>{min8, min8 + 1, 3 * min8 + 12345};
  const auto chunks = under_sanitizer ? std::vector<long>{1L, 300000L} : std::vector<long>{1L, 50000L, 300000L};
  for (long samples : lengths)
    for (long chunk : chunks)
      check_equal_to_whole(net8, samples, chunk, {4097, 1, 100000}, net8.output_names(), 1e-10);

  soundnet::model<soundnet5<>, double> net5;
  lively_weights(net5, 4);
  const long min5 = soundnet5<>::min_input_length();
  for (long chunk : {1L, 70000L})
    check_equal_to_whole(net5, 2 * min5 + 777, chunk, {65536}, net5.output_names(), 1e-10);
}

BOOST_AUTO_TEST_CASE(streaming_single_read_outs_in_float) {
  soundnet::model<soundnet8<>> net;
  lively_weights(net, 5);
  const long samples = (under_sanitizer ? 25 : 60) * 22050 + 4321;  // a minute (25 s), 20 s chunks
  for (const char* name : {"pool5", "conv7", "conv1", "bn2", "conv1_linear", "conv8_scenes"})
    check_equal_to_whole(net, samples, 20 * 22050, {22050}, {name}, 1e-5);
  check_equal_to_whole(net, samples, 20 * 22050, {22050}, {"pool1", "pool5", "conv6"}, 1e-5);
}

BOOST_AUTO_TEST_CASE(a_waveform_within_one_chunk_is_bit_identical_to_the_whole_forward) {
  soundnet::model<soundnet8<>> net;
  lively_weights(net, 6);
  const auto x = waveform<float>(12 * 22050, 9);
  const auto reference = whole(net, x, soundnet::keep::block_outputs);
  soundnet::feature_stream<decltype(net)> s(net, {"pool5", "conv8_objects"}, 60 * 22050);
  const auto got = streamed(s, x, {1000});
  BOOST_TEST(relative_difference(got[0], reference.at("pool5")) == 0.0);
  BOOST_TEST(relative_difference(got[1], reference.at("conv8_objects")) == 0.0);
}

BOOST_AUTO_TEST_CASE(memory_is_bounded_by_the_chunk_not_the_waveform) {
  soundnet::model<soundnet8<>> net;
  lively_weights(net, 7);
  const long chunk = 10 * 22050;
  long held[2] = {0, 0}, largest[2] = {0, 0}, steps[2] = {0, 0};
  const long minutes[2] = {under_sanitizer ? 1 : 2, under_sanitizer ? 4 : 20};
  for (int r = 0; r < 2; ++r) {
    soundnet::feature_stream<decltype(net)> s(net, {"pool5"}, chunk);
    const auto piece = waveform<float>(22050, 11);
    auto sink = [&](std::size_t, long, const xt::xtensor<float, 2>& b) { steps[r] += static_cast<long>(b.shape(1)); };
    for (long i = 0; i < minutes[r] * 60; ++i) {
      s.push(piece.data(), static_cast<long>(piece.size()), sink);
      held[r] = std::max(held[r], s.samples_held());
    }
    largest[r] = s.max_chunk_samples();
    s.finish(sink);
    BOOST_TEST(steps[r] == soundnet8<>::lengths(minutes[r] * 60 * 22050)[net.output_depth("pool5")]);
  }
  // The chunk plus the receptive field and the minimum input; the same for 2 and 20 minutes.
  const long bound = chunk + 2 * soundnet8<>::min_input_length();
  BOOST_TEST(largest[0] <= bound);
  BOOST_TEST(largest[1] == largest[0]);
  // Samples held: at most the next chunk plus one push; the phase of the pushes against the
  // chunk grid moves it by less than one pool5 step.
  BOOST_TEST(held[0] <= bound + 22050);
  BOOST_TEST(held[1] <= held[0] + soundnet::feature_stream<decltype(net)>(net, {"pool5"}).output_stride(0));
}

BOOST_AUTO_TEST_CASE(stream_errors_are_clear) {
  soundnet::model<soundnet5<>> net;
  BOOST_CHECK_THROW(soundnet::feature_stream<decltype(net)>(net, {}), soundnet::error);
  BOOST_CHECK_THROW(soundnet::feature_stream<decltype(net)>(net, {"pool9"}), soundnet::error);
  BOOST_CHECK_THROW(soundnet::feature_stream<decltype(net)>(net, {"pool3", "pool3"}), soundnet::error);
  BOOST_CHECK_THROW(soundnet::feature_stream<decltype(net)>(net, {"pool3"}, 0), soundnet::error);

  soundnet::feature_stream<decltype(net)> s(net, {"pool3"}, 22050);
  auto ignore = [](std::size_t, long, const xt::xtensor<float, 2>&) {};
  std::vector<float> x(1000, 1.0f);
  s.push(x.data(), 1000, ignore);
  x[17] = std::nanf("");
  try {
    s.push(x.data(), 1000, ignore);
    BOOST_FAIL("NaN accepted");
  } catch (const soundnet::shape_error& e) {
    BOOST_TEST(std::string(e.what()).find("sample 1017") != std::string::npos, e.what());
  }
  soundnet::feature_stream<decltype(net)> t(net, {"pool3"}, 22050);
  t.push(x.data(), 10, ignore);
  try {
    t.finish(ignore);
    BOOST_FAIL("a 10-sample waveform accepted");
  } catch (const soundnet::shape_error& e) {
    BOOST_TEST(std::string(e.what()).find("too short") != std::string::npos, e.what());
  }
  BOOST_TEST(t.samples() == 0);  // reset for the next waveform
}

BOOST_AUTO_TEST_CASE(forward_to_stops_at_the_read_out) {
  soundnet::model<soundnet8<>> net;
  lively_weights(net, 8);
  const auto x = waveform<float>(soundnet8<>::min_input_length() + 999, 2);
  const auto reference = whole(net, x, soundnet::keep::all);
  net.forward_to(x.data(), 1, static_cast<long>(x.size()), "bn3");
  const auto bn3 = net.output("bn3");
  BOOST_TEST(xt::view(bn3, 0) == xt::view(reference.at("bn3"), 0));
  BOOST_CHECK_THROW(net.output("conv4"), soundnet::error);
  const auto middle = net.output("bn3", 5, 7);  // a range of steps
  BOOST_TEST(xt::view(middle, 0) == xt::view(reference.at("bn3"), 0, xt::all(), xt::range(5, 12)));
  BOOST_CHECK_THROW(net.output("bn3", 5, static_cast<long>(bn3.shape(2))), soundnet::error);
  BOOST_CHECK_THROW(net.kl_loss(xt::zeros<float>({1, 1000, 1}), xt::zeros<float>({1, 401, 1})), soundnet::error);
  BOOST_TEST(net.output_depth("conv1") == 3u);
  BOOST_TEST(net.output_channels("conv8_scenes") == 401);
}
