// Network types, shapes, read-outs, initialisation, batching, errors and Adam.
#define BOOST_TEST_MODULE model
#include <boost/test/unit_test.hpp>

#include <soundnet/soundnet.hpp>
#include <xtensor/xview.hpp>

#include <cmath>
#include <limits>
#include <set>

using soundnet::soundnet5;
using soundnet::soundnet8;

// ---- compile-time shapes: ../shared/README.md section 1, for 441,000 samples (20 s) --------
using shape8 = soundnet8<>::shape_for<441000>;
static_assert(shape8::lengths[1] == 220501, "conv1");     // Table 1 prints 220,050: a typo
static_assert(shape8::lengths[4] == 27562, "pool1");      // Table 1 prints 27,506: a typo
static_assert(shape8::lengths[5] == 13782, "conv2");
static_assert(shape8::lengths[8] == 1722, "pool2");
static_assert(shape8::lengths[9] == 862, "conv3");
static_assert(shape8::lengths[12] == 432, "conv4");
static_assert(shape8::lengths[15] == 217, "conv5");
static_assert(shape8::lengths[18] == 54, "pool5");
static_assert(shape8::lengths[19] == 28, "conv6");
static_assert(shape8::lengths[22] == 15, "conv7");
static_assert(shape8::output_length == 4, "conv8");
using shape5 = soundnet5<>::shape_for<441000>;
static_assert(shape5::lengths[1] == 220501 && shape5::lengths[4] == 27562 && shape5::lengths[5] == 13782 &&
                  shape5::lengths[8] == 1722 && shape5::lengths[9] == 862 && shape5::lengths[12] == 107 &&
                  shape5::lengths[13] == 54 && shape5::output_length == 4,
              "SoundNet-5 lengths (Table 2 repeats Table 1's row by mistake)");
static_assert(soundnet8<>::channels[soundnet8<>::size] == 1401 && soundnet8<1000, 365>::channels[24] == 1024,
              "heads are template parameters");
// 2 x multiply-adds of the convolutions, summed by hand from the lengths above
static_assert(soundnet8<>::forward_flops(441000) ==
                  2.0 * (16.0 * 1 * 64 * 220501 + 32.0 * 16 * 32 * 13782 + 64.0 * 32 * 16 * 862 + 128.0 * 64 * 8 * 432 +
                         256.0 * 128 * 4 * 217 + 512.0 * 256 * 4 * 28 + 1024.0 * 512 * 4 * 15 + 1401.0 * 1024 * 8 * 4),
              "SoundNet-8 forward FLOPs (about 1.26 GFLOP)");
static_assert(soundnet8<>::output_stride() == 2 * 8 * 2 * 8 * 2 * 2 * 2 * 4 * 2 * 2 * 2 &&
                  soundnet5<>::output_stride() == 2 * 8 * 2 * 8 * 2 * 8 * 2 * 12,
              "samples between output steps");
static_assert(soundnet8<>::output_length(soundnet8<>::min_input_length()) == 1 &&
                  soundnet8<>::output_length(soundnet8<>::min_input_length() - 1) == 0,
              "the minimum input length is exact");

BOOST_AUTO_TEST_CASE(read_out_names_follow_the_paper) {
  soundnet::model<soundnet8<>> net8;
  std::set<std::string> names(net8.output_names().begin(), net8.output_names().end());
  for (const char* n : {"conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "conv7", "pool1", "pool2", "pool5",
                        "conv8_objects", "conv8_scenes", "conv1_linear", "bn1"})
    BOOST_TEST(names.count(n) == 1u, n);
  BOOST_TEST(names.count("pool3") == 0u);
  soundnet::model<soundnet5<>> net5;
  std::set<std::string> names5(net5.output_names().begin(), net5.output_names().end());
  for (const char* n : {"conv1", "conv4", "pool1", "pool2", "pool3", "conv5_objects", "conv5_scenes"})
    BOOST_TEST(names5.count(n) == 1u, n);
}

BOOST_AUTO_TEST_CASE(parameter_names_and_shapes_match_a_pytorch_state_dict) {
  soundnet::model<soundnet8<1000, 365>> net;
  const auto& p = net.parameters();
  BOOST_TEST(p.size() == 7u * 6u + 4u);
  BOOST_TEST(p.front().name == "conv1.weight");
  BOOST_TEST((p.front().shape == std::vector<std::size_t>{16, 1, 64}));
  BOOST_TEST((net.parameter_named("conv7.weight").shape == std::vector<std::size_t>{1024, 512, 4}));
  BOOST_TEST((net.parameter_named("bn3.running_var").shape == std::vector<std::size_t>{64}));
  BOOST_TEST(!net.parameter_named("bn3.running_var").trainable());
  BOOST_TEST((net.parameter_named("conv8_scenes.weight").shape == std::vector<std::size_t>{365, 1024, 8}));
  BOOST_TEST((net.parameter_named("conv8_objects.bias").shape == std::vector<std::size_t>{1000}));
  BOOST_CHECK_THROW(net.parameter_named("conv9.weight"), soundnet::error);
}

BOOST_AUTO_TEST_CASE(initialisation_follows_the_paper_and_is_seeded) {
  soundnet::model<soundnet8<>> a(7), b(7), c(8);
  const auto& w = a.parameter_named("conv7.weight");
  double sum = 0, sq = 0;
  for (std::size_t i = 0; i < w.size; ++i) sum += w.value[i], sq += double(w.value[i]) * w.value[i];
  const double mean = sum / w.size, stddev = std::sqrt(sq / w.size - mean * mean);
  BOOST_TEST(std::abs(mean) < 1e-4);
  BOOST_TEST(std::abs(stddev - 0.01) < 1e-4);  // 2M draws
  const auto& gamma = a.parameter_named("bn7.weight");
  double gsum = 0;
  for (std::size_t i = 0; i < gamma.size; ++i) gsum += gamma.value[i];
  BOOST_TEST(std::abs(gsum / gamma.size - 1.0) < 0.01);
  for (const char* zero : {"conv3.bias", "bn3.bias", "bn3.running_mean", "conv8_scenes.bias"}) {
    const auto& z = a.parameter_named(zero);
    BOOST_TEST(std::all_of(z.value, z.value + z.size, [](float v) { return v == 0.0f; }), zero);
  }
  const auto& rv = a.parameter_named("bn3.running_var");
  BOOST_TEST(std::all_of(rv.value, rv.value + rv.size, [](float v) { return v == 1.0f; }));
  BOOST_TEST(std::equal(w.value, w.value + w.size, b.parameter_named("conv7.weight").value));
  BOOST_TEST(!std::equal(w.value, w.value + w.size, c.parameter_named("conv7.weight").value));
}

namespace {
xt::xtensor<float, 3> waveforms(std::size_t batch, std::size_t samples) {
  xt::xtensor<float, 3> x = xt::zeros<float>({batch, std::size_t(1), samples});
  for (std::size_t n = 0; n < batch; ++n)
    for (std::size_t i = 0; i < samples; ++i)
      x(n, 0, i) = static_cast<float>(100 * std::sin(0.01 * i * (n + 1)) + 20 * std::sin(0.37 * i + n));
  return x;
}
}  // namespace

BOOST_AUTO_TEST_CASE(a_batch_equals_its_clips_one_by_one_in_inference) {
  soundnet::model<soundnet5<>> net(3);
  const auto x = waveforms(2, 70000);
  const auto both = net.features(x, "conv4");
  for (std::size_t n = 0; n < 2; ++n) {
    xt::xtensor<float, 3> one = xt::view(x, xt::range(n, n + 1), xt::all(), xt::all());
    const auto single = net.features(one, "conv4");
    double diff = 0, norm = 0;
    for (std::size_t i = 0; i < single.size(); ++i) {
      const double d = single.data()[i] - both.data()[n * single.size() + i];
      diff += d * d, norm += double(single.data()[i]) * single.data()[i];
    }
    BOOST_TEST(std::sqrt(diff / norm) < 1e-6);
  }
}

namespace {
// Runs only where the thread count can change (OpenMP): elsewhere the test is reported as
// skipped, not passed.
struct threads_can_change {
  boost::test_tools::assertion_result operator()(boost::unit_test::test_unit_id) const {
    const int before = soundnet::num_threads();
    soundnet::set_num_threads(before == 3 ? 2 : 3);
    const bool changed = soundnet::num_threads() != before;
    soundnet::set_num_threads(before);
    boost::test_tools::assertion_result r(changed);
    if (!changed) r.message() << "built without OpenMP: the thread count cannot change";
    return r;
  }
};

// Parameters, gradients and losses of three training steps (SoundNet-8, batch 3, chunked and
// whole-batch convolutions both reached) with `threads` threads.
std::pair<std::vector<float>, std::vector<double>> three_steps(int threads) {
  soundnet::set_num_threads(threads);
  soundnet::model<soundnet8<>> net(17);
  soundnet::adam opt(net);
  const auto x = waveforms(3, 250000);
  const long steps = net.output_length(250000);
  xt::xtensor<float, 3> t_obj = xt::ones<float>({std::size_t(3), std::size_t(1000), std::size_t(steps)}) / 1000.0f;
  xt::xtensor<float, 3> t_scn = xt::ones<float>({std::size_t(3), std::size_t(401), std::size_t(steps)}) / 401.0f;
  for (long j = 0; j < steps; ++j) t_obj(0, 7, j) += 1.0f, t_scn(2, 9, j) += 1.0f;
  std::vector<double> losses;
  for (int i = 0; i < 3; ++i) {
    net.forward(x, soundnet::mode::training);
    losses.push_back(net.kl_loss(t_obj, t_scn));
    net.zero_grad();
    net.backward();
    opt.step();
  }
  const auto p = net.parameter_arena(), g = net.gradients(), s = net.statistics();
  std::vector<float> state(p.data(), p.data() + p.size());
  state.insert(state.end(), g.data(), g.data() + g.size());
  state.insert(state.end(), s.data(), s.data() + s.size());
  return {state, losses};
}
}  // namespace

BOOST_AUTO_TEST_CASE(training_is_bit_identical_for_any_thread_count,
                     *boost::unit_test::precondition(threads_can_change())) {
  // The backward's reductions sum in an order fixed by the shapes, never by the thread count,
  // so a run resumed with another --threads value continues exactly.
  const int before = soundnet::num_threads();
  const auto one = three_steps(1), two = three_steps(2), three = three_steps(3);
  soundnet::set_num_threads(before);
  BOOST_TEST(one.second == two.second, boost::test_tools::per_element());
  BOOST_TEST(one.second == three.second, boost::test_tools::per_element());
  std::size_t differ2 = 0, differ3 = 0;
  for (std::size_t i = 0; i < one.first.size(); ++i) {
    differ2 += one.first[i] != two.first[i];
    differ3 += one.first[i] != three.first[i];
  }
  BOOST_TEST(differ2 == 0u);
  BOOST_TEST(differ3 == 0u);
}

BOOST_AUTO_TEST_CASE(inference_is_bit_identical_for_any_thread_count,
                     *boost::unit_test::precondition(threads_can_change())) {
  const int before = soundnet::num_threads();
  soundnet::model<soundnet5<>> net(3);
  const auto x = waveforms(2, 70000);
  soundnet::set_num_threads(1);
  const auto one = net.features(x, "conv5_objects");
  soundnet::set_num_threads(2);
  const auto two = net.features(x, "conv5_objects");
  soundnet::set_num_threads(before);
  BOOST_TEST(one == two);
}

BOOST_AUTO_TEST_CASE(bad_input_gets_a_clear_error) {
  soundnet::model<soundnet8<>> net;
  const long min = net.min_input_length();
  try {
    net.forward(waveforms(1, min - 1));
    BOOST_FAIL("a too-short input was accepted");
  } catch (const soundnet::shape_error& e) {
    BOOST_TEST(std::string(e.what()).find("at least " + std::to_string(min) + " samples") != std::string::npos);
  }
  auto x = waveforms(1, min);
  x(0, 0, 1234) = std::nanf("");
  try {
    net.forward(x);
    BOOST_FAIL("NaN was accepted");
  } catch (const soundnet::shape_error& e) {
    BOOST_TEST(std::string(e.what()).find("sample 1234") != std::string::npos);
  }
  xt::xtensor<float, 3> stereo = xt::zeros<float>({std::size_t(1), std::size_t(2), std::size_t(min)});
  BOOST_CHECK_THROW(net.forward(stereo), soundnet::shape_error);
  BOOST_CHECK_THROW(net.output("pool1"), soundnet::error);  // no forward yet
  net.forward(waveforms(1, min));
  BOOST_CHECK_THROW(net.output("pool3"), soundnet::error);
  BOOST_CHECK_THROW(net.backward(), soundnet::error);  // no loss yet
  xt::xtensor<float, 3> wrong = xt::zeros<float>({std::size_t(1), std::size_t(1000), std::size_t(2)});
  xt::xtensor<float, 3> scenes = xt::zeros<float>({std::size_t(1), std::size_t(401), std::size_t(1)});
  BOOST_CHECK_THROW(net.kl_loss(wrong, scenes), soundnet::shape_error);
}

BOOST_AUTO_TEST_CASE(adam_follows_pytorch_formulation) {
  // An independent scalar implementation of torch.optim.Adam, three steps.
  soundnet::model<soundnet5<3, 2>, double> net(5);
  soundnet::adam_options o;
  o.lr = 0.01, o.beta1 = 0.8, o.beta2 = 0.99, o.eps = 1e-3;
  soundnet::adam opt(net, o);
  auto& p = net.parameter_named("conv2.weight");
  const double start = p.value[7];
  double value = start, m = 0, v = 0;
  const double grads[] = {0.3, -0.05, 0.002};
  for (int step = 1; step <= 3; ++step) {
    net.zero_grad();
    p.grad[7] = grads[step - 1];
    opt.step();
    m = o.beta1 * m + (1 - o.beta1) * grads[step - 1];
    v = o.beta2 * v + (1 - o.beta2) * grads[step - 1] * grads[step - 1];
    const double mhat = m / (1 - std::pow(o.beta1, step)), vhat = v / (1 - std::pow(o.beta2, step));
    value -= o.lr * mhat / (std::sqrt(vhat) + o.eps);
    BOOST_TEST(p.value[7] == value, boost::test_tools::tolerance(1e-12));
  }
  BOOST_TEST(opt.steps() == 3);
  BOOST_CHECK_THROW((soundnet::adam(net, soundnet::adam_options{-1.0})), soundnet::error);
}

BOOST_AUTO_TEST_CASE(training_reduces_the_loss_on_a_fixed_batch) {
  soundnet::model<soundnet5<4, 3>> net(11);
  soundnet::adam opt(net);
  const auto x = waveforms(2, 70000);
  const long steps = net.output_length(70000);
  xt::xtensor<float, 3> t_obj = xt::zeros<float>({std::size_t(2), std::size_t(4), std::size_t(steps)});
  xt::xtensor<float, 3> t_scn = xt::zeros<float>({std::size_t(2), std::size_t(3), std::size_t(steps)});
  for (long j = 0; j < steps; ++j) t_obj(0, 1, j) = t_obj(1, 3, j) = t_scn(0, 0, j) = t_scn(1, 2, j) = 1.0f;
  double first = 0, last = 0;
  for (int i = 0; i < 30; ++i) {
    net.forward(x, soundnet::mode::training);
    last = net.kl_loss(t_obj, t_scn);
    if (i == 0) first = last;
    net.zero_grad();
    net.backward();
    opt.step();
  }
  BOOST_TEST_MESSAGE("loss " << first << " -> " << last);
  BOOST_TEST(last < 0.5 * first);
}

// The gradient-ready calls (what a data-parallel run overlaps its all-reduces with): one per
// layer, from the arena's end down to 0, each range's values already final when it is reported,
// every trainable tensor inside the range of one call.
BOOST_AUTO_TEST_CASE(gradient_ranges_are_reported_final_from_the_last_layer_down) {
  soundnet::model<soundnet8<4, 3>> net(5);
  const long samples = net.min_input_length() + 3000;
  const auto x = waveforms(2, std::size_t(samples));
  const long steps = net.output_length(samples);
  xt::xtensor<float, 3> t_obj = xt::ones<float>({std::size_t(2), std::size_t(4), std::size_t(steps)}) / 4.0f;
  xt::xtensor<float, 3> t_scn = xt::ones<float>({std::size_t(2), std::size_t(3), std::size_t(steps)}) / 3.0f;
  struct call {
    std::size_t begin, count;
    std::vector<float> values;  // the range's gradients when it was reported
  };
  std::vector<call> calls;
  const auto grads = net.gradients();
  net.on_gradients_ready([&](std::size_t begin, std::size_t count) {
    calls.push_back({begin, count, std::vector<float>(grads.data() + begin, grads.data() + begin + count)});
  });
  net.forward(x, soundnet::mode::training);
  net.kl_loss(t_obj, t_scn);
  net.zero_grad();
  net.backward();
  BOOST_REQUIRE_EQUAL(calls.size(), (soundnet8<4, 3>::size));
  std::size_t end = grads.size();
  for (const auto& c : calls) {
    BOOST_TEST(c.begin + c.count == end);  // contiguous, descending
    end = c.begin;
    const bool final = std::equal(c.values.begin(), c.values.end(), grads.data() + c.begin);
    BOOST_TEST(final, "the range at " << c.begin << " changed after it was reported");
  }
  BOOST_TEST(end == 0u);
  BOOST_TEST(calls.front().count > 4u * 1024 * 8);  // the last layer (the heads) comes first
  for (const auto& p : net.parameters()) {
    if (!p.trainable()) continue;
    const auto in = std::count_if(calls.begin(), calls.end(), [&](const call& c) {
      return p.offset >= c.begin && p.offset + p.size <= c.begin + c.count;
    });
    BOOST_TEST(in == 1, p.name);
  }
  // turned off, no call
  net.on_gradients_ready({});
  calls.clear();
  net.backward();
  BOOST_TEST(calls.empty());
}

BOOST_AUTO_TEST_CASE(fused_inference_equals_the_layer_by_layer_path) {
  soundnet::model<soundnet8<>> net(21);
  const auto x = waveforms(2, 230000);
  net.forward(x, soundnet::mode::inference, soundnet::keep::all);
  std::vector<xt::xtensor<float, 3>> full;
  std::vector<std::string> names;
  for (const auto& name : net.output_names())
    if (!net.inside_fused_block(name)) full.push_back(net.output(name)), names.push_back(name);
  BOOST_TEST(names.size() == 7u + 3u + 2u);
  net.forward(x);  // fused
  for (std::size_t i = 0; i < names.size(); ++i) {
    const auto fused = net.output(names[i]);
    double diff = 0, norm = 0;
    for (std::size_t j = 0; j < fused.size(); ++j) {
      const double d = double(fused.data()[j]) - full[i].data()[j];
      diff += d * d, norm += double(full[i].data()[j]) * full[i].data()[j];
    }
    BOOST_TEST_INFO(names[i]);
    BOOST_TEST(std::sqrt(diff / norm) < 1e-5);
  }
  BOOST_TEST(net.inside_fused_block("bn3"));
  BOOST_TEST(!net.inside_fused_block("conv3"));
  BOOST_CHECK_THROW(net.output("conv3_linear"), soundnet::error);
  xt::xtensor<float, 3> t_obj = xt::ones<float>({std::size_t(2), std::size_t(1000), std::size_t(1)}) / 1000.0f;
  xt::xtensor<float, 3> t_scn = xt::ones<float>({std::size_t(2), std::size_t(401), std::size_t(1)}) / 401.0f;
  net.kl_loss(t_obj, t_scn);                             // the logits are there
  BOOST_CHECK_THROW(net.backward(), soundnet::error);    // the activations are not
}

// The supervised loss against its definition, computed here from the logits in long double:
// -log softmax over the first `classes` logits at the label, mean over batch and steps; its
// gradient reaches the weights exactly as the hand-made logit gradient (softmax - one-hot) / (N T)
// on those logits, zero on the head's other logits and on the second head.
BOOST_AUTO_TEST_CASE(cross_entropy_is_its_definition_on_the_first_classes) {
  using net_t = soundnet5<12, 5>;
  const int classes = 7;
  const std::vector<int> labels = {3, 0, 6};
  const auto x = waveforms(3, 170000);  // several output steps: the mean over them is checked too
  soundnet::model<net_t> a(5), b(5);
  a.forward(x, soundnet::mode::training);
  b.forward(x, soundnet::mode::training);
  const double loss = a.cross_entropy_loss(labels, classes);
  const auto z = a.object_logits();  // (3, 12, T)
  const long n = 3, t = static_cast<long>(z.shape(2));
  BOOST_REQUIRE_GE(t, 2);
  long double want = 0;
  xt::xtensor<float, 3> grad = xt::zeros<float>({std::size_t(3), std::size_t(12 + 5), std::size_t(t)});
  for (long i = 0; i < n; ++i)
    for (long j = 0; j < t; ++j) {
      long double zmax = -1e300L, se = 0;
      for (int k = 0; k < classes; ++k) zmax = std::max<long double>(zmax, z(i, k, j));
      for (int k = 0; k < classes; ++k) se += std::exp(static_cast<long double>(z(i, k, j)) - zmax);
      const long double lse = zmax + std::log(se);
      want -= static_cast<long double>(z(i, labels[std::size_t(i)], j)) - lse;
      for (int k = 0; k < classes; ++k)
        grad(i, k, j) = static_cast<float>(
            (std::exp(static_cast<long double>(z(i, k, j)) - lse) - (k == labels[std::size_t(i)] ? 1.0L : 0.0L)) /
            static_cast<long double>(n * t));
    }
  want /= static_cast<long double>(n * t);
  BOOST_TEST(std::abs(loss - static_cast<double>(want)) <= 1e-6 * std::abs(static_cast<double>(want)) + 1e-9,
             "loss " << loss << " against " << static_cast<double>(want));
  a.zero_grad();
  a.backward();
  b.cross_entropy_loss(labels, classes);  // b's forward state as a's, then the hand-made gradient
  b.zero_grad();
  b.backward(grad);
  const auto sa = a.gradients(), sb = b.gradients();  // host memory on the CPU backend
  const std::vector<float> ga(sa.data(), sa.data() + sa.size()), gb(sb.data(), sb.data() + sb.size());
  BOOST_REQUIRE_EQUAL(ga.size(), gb.size());
  double worst = 0, scale = 0;
  for (std::size_t i = 0; i < ga.size(); ++i)
    worst = std::max(worst, double(std::abs(ga[i] - gb[i]))), scale = std::max(scale, double(std::abs(gb[i])));
  BOOST_TEST(worst <= 1e-5 * scale, "largest gradient difference " << worst << " of " << scale);
  // a label outside the classes, a wrong count, too many classes: errors
  BOOST_CHECK_THROW(a.cross_entropy_loss({3, 0, 7}, classes), soundnet::error);
  BOOST_CHECK_THROW(a.cross_entropy_loss({3, 0}, classes), soundnet::error);
  BOOST_CHECK_THROW(a.cross_entropy_loss(labels, 13), soundnet::error);
}

// 16-bit PCM in: the same features as the float waveform sample / 32768 * 256, bit for bit
// (the scale is a power of two), in both modes; too short is refused.
BOOST_AUTO_TEST_CASE(pcm16_input_equals_its_scaled_float_waveform) {
  soundnet::model<soundnet5<>> a(4), b(4);
  const long batch = 2, n = soundnet5<>::min_input_length() + 3000;
  std::vector<std::int16_t> pcm(std::size_t(batch * n));
  soundnet::normal_generator g(8);
  for (auto& v : pcm) v = static_cast<std::int16_t>(std::clamp(g(0, 6000), -32768.0, 32767.0));
  pcm[0] = -32768, pcm[1] = 32767;
  xt::xtensor<float, 3> x = xt::empty<float>({std::size_t(batch), std::size_t(1), std::size_t(n)});
  for (std::size_t i = 0; i < pcm.size(); ++i) x.data()[i] = static_cast<float>(pcm[i]) / 32768.0f * 256.0f;
  for (auto m : {soundnet::mode::inference, soundnet::mode::training}) {
    a.forward_pcm16(pcm.data(), batch, n, m, soundnet::keep::all);
    b.forward(x, m, soundnet::keep::all);
    for (const char* name : {"conv1_linear", "pool3", "conv5_objects"}) {
      const auto ya = a.output(name), yb = b.output(name);
      BOOST_TEST(std::equal(ya.begin(), ya.end(), yb.begin(), yb.end()), name);
    }
  }
  BOOST_CHECK_THROW(a.forward_pcm16(pcm.data(), 1, soundnet5<>::min_input_length() - 1), soundnet::shape_error);
  BOOST_CHECK_THROW(a.forward_pcm16(pcm.data(), 0, n), soundnet::shape_error);
}

// non_finite_gradient(): "" while every gradient is finite; the first tensor (state-dict order)
// holding a NaN or an infinity otherwise; all_finite over the arena and over any span.
BOOST_AUTO_TEST_CASE(a_non_finite_gradient_is_named_by_its_tensor) {
  soundnet::model<soundnet5<>> net(2);
  BOOST_TEST(net.non_finite_gradient() == "");  // no gradients yet
  net.zero_grad();
  BOOST_TEST(net.non_finite_gradient() == "");
  auto& bn3 = net.parameter_named("bn3.weight");
  auto& conv5 = net.parameter_named("conv5_objects.weight");
  conv5.grad[conv5.size - 1] = std::numeric_limits<float>::infinity();
  BOOST_TEST(net.non_finite_gradient() == "conv5_objects.weight");
  bn3.grad[3] = std::nanf("");
  BOOST_TEST(net.non_finite_gradient() == "bn3.weight");  // the first in state-dict order
  net.zero_grad();
  BOOST_TEST(net.non_finite_gradient() == "");
  using O = soundnet::ops<soundnet::cpu, float>;
  std::vector<float> v(200000, 1.0f);
  BOOST_TEST(O::all_finite(net.context(), v.data(), long(v.size())));
  v[123456] = -std::numeric_limits<float>::infinity();
  BOOST_TEST(!O::all_finite(net.context(), v.data(), long(v.size())));
  BOOST_TEST(O::all_finite(net.context(), v.data(), 123456));
}
