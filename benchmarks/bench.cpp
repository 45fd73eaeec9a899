// soundnet-bench: soundnet against LibTorch, side by side in one process.
//
//   soundnet-bench [--threads 2] [--repeats 7] [--cases infer8_b1,...] [--json out.json]
//   soundnet-bench --memory CASE --impl ours|libtorch     (one run; prints the peak RSS)
//
// Cases: gemm_peak; ops (each SoundNet-sized op case alone, tests/op_cases.hpp); infer8_b1, infer8_b16, infer5_b1, infer5_b16 (20 s clips, eval mode);
// train8_b8 (one KL + Adam step on 8 clips of 20 s); layers8_b1, layers5_b1 (each block alone).
// Each repeat runs ours then LibTorch, so both see the same machine state; medians are
// reported. Figures: seconds, GFLOP/s (convolution FLOPs, Net::forward_flops), and the ratio.
#include <soundnet/soundnet.hpp>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "torch_soundnet.hpp"
#include "../tests/op_cases.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
constexpr long clip = 441000;  // 20 s

double seconds(const std::function<void()>& f) {
  const auto t0 = clock_type::now();
  f();
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

long peak_rss_kib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

xt::xtensor<float, 3> waves(std::size_t n) {
  xt::xtensor<float, 3> x = xt::empty<float>({n, std::size_t(1), std::size_t(clip)});
  soundnet::normal_generator g(5);
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(60 * std::sin(0.03 * (i % clip)) + g(0, 20));
  return x;
}

torch::Tensor to_torch(const xt::xtensor<float, 3>& x) {
  return torch::from_blob(const_cast<float*>(x.data()),
                          {long(x.shape(0)), long(x.shape(1)), long(x.shape(2))}, torch::kFloat32)
      .clone();
}

// Copies our weights into the peer so both compute the same function.
template <class Model>
void copy_weights(Model& ours, peer::SoundNet& theirs) {
  torch::NoGradGuard guard;
  auto params = theirs->named_parameters();
  auto buffers = theirs->named_buffers();
  for (const auto& p : ours.parameters()) {
    torch::Tensor* dst = params.find(p.name);
    if (!dst) dst = buffers.find(p.name);
    if (!dst) throw std::runtime_error("peer has no tensor " + p.name);
    std::copy(p.value, p.value + p.size, dst->data_ptr<float>());
  }
}

struct result {
  std::string name;
  double ours = 0, theirs = 0, flops = 0;  // medians (s), FLOPs per run
};

struct options {
  int threads = 2, repeats = 7;
  std::vector<std::string> cases;
  std::string json;
};

// Runs `ours` and `theirs` alternately `repeats` times after one warm-up each.
result side_by_side(const std::string& name, double flops, int repeats, const std::function<void()>& ours,
                    const std::function<void()>& theirs) {
  ours();
  theirs();
  std::vector<double> a, b;
  for (int r = 0; r < repeats; ++r) {
    a.push_back(seconds(ours));
    b.push_back(seconds(theirs));
  }
  return {name, median(a), median(b), flops};
}

double gemm_peak(int repeats, int threads) {
  using matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic>;
  const int n = 2048;
  Eigen::setNbThreads(threads);  // soundnet runs Eigen on one thread; the peak uses them all
  matrix a = matrix::Random(n, n), b = matrix::Random(n, n), c(n, n);
  c.noalias() = a * b;
  std::vector<double> t;
  for (int r = 0; r < repeats; ++r) t.push_back(seconds([&] { c.noalias() = a * b; }));
  soundnet::set_num_threads(threads);
  return 2.0 * n * n * n / median(t);
}

// Each SoundNet-sized case of the shared operation list (tests/op_cases.hpp), forward alone,
// float32, on the active kernels: ms and GFLOP/s (convolutions). No peer: LibTorch's per-op
// figures are in the layer cases.
void op_cases(int repeats) {
  using namespace soundnet::testing;
  op_runner<soundnet::cpu, float> run;
  std::printf("%-40s %10s %10s   (kernels: %s)\n", "op case", "ms", "GFLOP/s", soundnet::name(soundnet::active_cpu_kernels()));
  for (const auto& o : soundnet::testing::op_cases()) {
    if (!o.large) continue;
    const auto in = make_inputs(o, 1);
    std::vector<double> t;
    run.forward(o, in, &t, repeats);
    std::printf("%-40s %10.2f %10.1f\n", o.name.c_str(), 1e3 * median(t), o.flops() / median(t) / 1e9);
  }
}

template <class Net>
result inference(const std::string& name, std::size_t batch, int repeats) {
  soundnet::model<Net> ours(1);
  peer::SoundNet theirs(Net::name);
  theirs->eval();
  copy_weights(ours, theirs);
  const auto x = waves(batch);
  const auto tx = to_torch(x);
  return side_by_side(name, Net::forward_flops(clip) * batch, repeats, [&] { ours.forward(x); },
                      [&] {
                        torch::InferenceMode guard;
                        theirs->forward(tx);
                      });
}

result training(std::size_t batch, int repeats) {
  using Net = soundnet::soundnet8<>;
  soundnet::model<Net> ours(1);
  soundnet::adam opt(ours);
  peer::SoundNet theirs("soundnet8");
  copy_weights(ours, theirs);
  theirs->train();
  torch::optim::Adam topt(theirs->parameters(), torch::optim::AdamOptions(1e-3).betas({0.9, 0.999}).eps(1e-8));
  const auto x = waves(batch);
  const auto tx = to_torch(x);
  xt::xtensor<float, 3> t_obj = xt::ones<float>({batch, std::size_t(1000), std::size_t(4)}) / 1000.0f;
  xt::xtensor<float, 3> t_scn = xt::ones<float>({batch, std::size_t(401), std::size_t(4)}) / 401.0f;
  const auto tt_obj = to_torch(t_obj), tt_scn = to_torch(t_scn);
  // forward + backward: 3x the forward FLOPs (the input gradient of conv1 is not needed: ~2.6x)
  return side_by_side(
      "train8_b" + std::to_string(batch), 3 * Net::forward_flops(clip) * batch, repeats,
      [&] {
        ours.forward(x, soundnet::mode::training);
        ours.kl_loss(t_obj, t_scn);
        ours.zero_grad();
        ours.backward();
        opt.step();
      },
      [&] {
        auto loss = theirs->kl_loss(theirs->forward(tx), tt_obj, tt_scn);
        topt.zero_grad();
        loss.backward();
        topt.step();
      });
}

// Each block (conv + BN + ReLU (+ pool); the heads) alone, eval mode, batch 1: ours from the
// model's per-layer timing of whole forward passes, LibTorch block by block.
template <class Net>
std::vector<result> layers(const std::string& tag, int repeats) {
  constexpr std::size_t blocks = Net::block[Net::size - 1];
  soundnet::model<Net> ours(1);
  ours.set_layer_timing(true);
  peer::SoundNet theirs(Net::name);
  theirs->eval();
  copy_weights(ours, theirs);
  const auto x = waves(1);
  const auto tx = to_torch(x);
  // ours: per-layer times of whole forward passes, summed per block
  std::vector<std::vector<double>> our_blocks(blocks), their_blocks(blocks);
  for (int r = 0; r <= repeats; ++r) {
    ours.forward(x);
    std::vector<double> block(blocks, 0.0);
    for (std::size_t i = 0; i < Net::size; ++i) block[Net::block[i] - 1] += ours.layer_seconds()[i];
    torch::InferenceMode guard;
    auto h = tx;
    for (std::size_t b = 0; b < blocks; ++b) {
      torch::Tensor next;
      const double s = seconds([&] { next = theirs->block(b, h); });
      if (r > 0) their_blocks[b].push_back(s), our_blocks[b].push_back(block[b]);
      h = next;
    }
  }
  std::vector<result> out;
  const auto flops = Net::layer_flops(clip);
  for (std::size_t b = 0; b < blocks; ++b) {
    double block_flops = 0;
    for (std::size_t i = 0; i < Net::size; ++i)
      if (Net::block[i] == int(b + 1)) block_flops += flops[i];
    out.push_back({tag + "_conv" + std::to_string(b + 1), median(our_blocks[b]), median(their_blocks[b]), block_flops});
  }
  return out;
}

int memory(const std::string& which, const std::string& impl) {
  const long before = peak_rss_kib();
  const std::size_t batch = which == "infer8_b16" ? 16 : 1;
  const auto x = waves(batch);
  long ready = 0;
  if (impl == "ours") {
    soundnet::model<soundnet::soundnet8<>> net(1);
    ready = peak_rss_kib();
    net.forward(x);
  } else {
    peer::SoundNet net("soundnet8");
    net->eval();
    const auto tx = to_torch(x);
    ready = peak_rss_kib();
    torch::InferenceMode guard;
    net->forward(tx);
  }
  std::printf("{\"case\": \"%s\", \"impl\": \"%s\", \"rss_start_kib\": %ld, \"rss_ready_kib\": %ld, \"rss_peak_kib\": %ld}\n",
              which.c_str(), impl.c_str(), before, ready, peak_rss_kib());
  return 0;
}

}  // namespace

int main(int argc, char** argv) try {
  options o;
  std::string memory_case, impl = "ours";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&] {
      if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
      return std::string(argv[++i]);
    };
    if (a == "--threads") o.threads = std::stoi(value());
    else if (a == "--repeats") o.repeats = std::stoi(value());
    else if (a == "--json") o.json = value();
    else if (a == "--memory") memory_case = value();
    else if (a == "--impl") impl = value();
    else if (a == "--cases") {
      std::stringstream ss(value());
      for (std::string c; std::getline(ss, c, ',');) o.cases.push_back(c);
    } else throw std::invalid_argument("unknown option " + a);
  }
  soundnet::set_num_threads(o.threads);
  torch::set_num_threads(o.threads);
  at::set_num_interop_threads(1);
  if (!memory_case.empty()) return memory(memory_case, impl);
  if (o.cases.empty())
    o.cases = {"gemm_peak", "infer8_b1", "infer8_b16", "infer5_b1", "infer5_b16", "train8_b8", "layers8_b1", "layers5_b1"};

  std::vector<result> results;
  double peak = 0;
  for (const auto& c : o.cases) {
    std::cerr << "running " << c << "...\n";
    if (c == "gemm_peak") peak = gemm_peak(o.repeats, o.threads);
    else if (c == "ops") op_cases(o.repeats);
    else if (c == "infer8_b1") results.push_back(inference<soundnet::soundnet8<>>(c, 1, o.repeats));
    else if (c == "infer8_b16") results.push_back(inference<soundnet::soundnet8<>>(c, 16, std::max(3, o.repeats / 2)));
    else if (c == "infer5_b1") results.push_back(inference<soundnet::soundnet5<>>(c, 1, o.repeats));
    else if (c == "infer5_b16") results.push_back(inference<soundnet::soundnet5<>>(c, 16, std::max(3, o.repeats / 2)));
    else if (c == "train8_b8") results.push_back(training(8, std::max(3, o.repeats / 2)));
    else if (c == "layers8_b1") for (auto& r : layers<soundnet::soundnet8<>>("layer8", o.repeats)) results.push_back(r);
    else if (c == "layers5_b1") for (auto& r : layers<soundnet::soundnet5<>>("layer5", o.repeats)) results.push_back(r);
    else throw std::invalid_argument("unknown case " + c);
  }
  std::ostringstream json;
  json << "{\"threads\": " << o.threads << ", \"repeats\": " << o.repeats << ", \"gemm_peak_flops\": " << peak
       << ", \"results\": [";
  std::printf("%-16s %12s %12s %9s %12s %10s\n", "case", "ours ms", "LibTorch ms", "speed-up", "ours GFLOP/s",
              "% of peak");
  for (std::size_t i = 0; i < results.size(); ++i) {
    const auto& r = results[i];
    const double rate = r.flops / r.ours;
    std::printf("%-16s %12.2f %12.2f %8.2fx %12.1f %9.1f%%\n", r.name.c_str(), 1e3 * r.ours, 1e3 * r.theirs,
                r.theirs / r.ours, rate / 1e9, peak > 0 ? 100 * rate / peak : 0.0);
    json << (i ? ", " : "") << "{\"case\": \"" << r.name << "\", \"ours_s\": " << r.ours << ", \"libtorch_s\": " << r.theirs
         << ", \"flops\": " << r.flops << "}";
  }
  if (peak > 0) std::printf("measured float32 GEMM peak (Eigen, 2048^3, %d threads): %.1f GFLOP/s\n", o.threads, peak / 1e9);
  json << "]}\n";
  if (!o.json.empty()) {
    std::ofstream out(o.json);
    out << json.str();
  }
  return 0;
} catch (const std::exception& e) {
  std::cerr << "soundnet-bench: error: " << e.what() << "\n";
  return 1;
}
