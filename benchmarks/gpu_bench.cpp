// soundnet-gpu-bench: the CUDA device on one GPU. benchmarks/gpu.sh runs it beside the PyTorch
// peer (benchmarks/torch_gpu_peer.py) and prints one table (benchmarks/gpu_table.py).
//
//   soundnet-gpu-bench [--repeats 10] [--batch 64] [--json out.json] [--cases peaks,ops,train,infer,layers]
//
// Cases (SoundNet-8, 20 s clips of 441,000 samples, float32 storage):
//   peaks   the card's measured ceilings: a 1 GiB device-to-device copy (bytes read + written)
//           and a 8192^3 cuBLAS SGEMM, strict float32 and TF32
//   ops     each SoundNet-sized case of tests/op_cases.hpp alone (batch 1)
//   train   one training step (forward in training mode, KL loss of both heads, backward, Adam)
//           at --batch, strict float32, TF32 and bf16 GEMMs; waveforms from host memory each step, and the
//           upload alone; consecutive float32 steps fed through cuda::upload_stage (as
//           soundnet-train feeds a GPU) and from a resident device buffer; the projection of
//           the paper's 100,000 iterations
//   infer   inference (fused blocks): throughput at --batch, latency at batch 1
//   layers  one training step's forward and backward per layer (the device waits after each)
// Times: the median of --repeats after a warm-up, the device synchronised before each clock.
#include <soundnet/soundnet.hpp>

#include <CLI/CLI.hpp>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "../tests/op_cases.hpp"

namespace {

using net = soundnet::soundnet8<>;
using gpu_model = soundnet::model<net, float, soundnet::cuda>;
constexpr long clip = 441000;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}
void check(cublasStatus_t e, const char* what) {
  if (e != CUBLAS_STATUS_SUCCESS) throw std::runtime_error(std::string(what) + ": " + cublasGetStatusName(e));
}

// Seconds of f() (which must leave the device idle when it returns), median of `repeats`.
double timed(int repeats, const std::function<void()>& f) {
  f();  // warm-up: module load, handles, scratch growth
  std::vector<double> t;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return median(t);
}

struct report {
  std::ostringstream json;
  bool first = true;
  void add(const std::string& name, const std::string& fields) {
    json << (first ? "" : ",\n") << "  \"" << name << "\": {" << fields << "}";
    first = false;
  }
};

std::string field(const char* k, double v) {
  std::ostringstream s;
  s << "\"" << k << "\": " << v;
  return s.str();
}

xt::xtensor<float, 3> waves(std::size_t n) {
  xt::xtensor<float, 3> x = xt::empty<float>({n, std::size_t(1), std::size_t(clip)});
  soundnet::normal_generator g(5);
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(60 * std::sin(0.03 * double(i % clip)) + g(0, 20));
  return x;
}

xt::xtensor<float, 3> distributions(std::size_t n, std::size_t classes, std::size_t steps, std::uint64_t seed) {
  xt::xtensor<float, 3> p = xt::empty<float>({n, classes, steps});
  soundnet::normal_generator g(seed);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < steps; ++j) {
      double s = 0;
      for (std::size_t k = 0; k < classes; ++k) s += (p(i, k, j) = static_cast<float>(std::exp(g(0, 1))));
      for (std::size_t k = 0; k < classes; ++k) p(i, k, j) = static_cast<float>(p(i, k, j) / s);
    }
  return p;
}

void peaks(int repeats, report& out) {
  const std::size_t bytes = std::size_t(1) << 30;
  void *a = nullptr, *b = nullptr;
  check(cudaMalloc(&a, bytes), "cudaMalloc");
  check(cudaMalloc(&b, bytes), "cudaMalloc");
  check(cudaMemset(a, 1, bytes), "cudaMemset");
  const double copy = timed(repeats, [&] {
    check(cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice), "cudaMemcpy");
    check(cudaDeviceSynchronize(), "sync");
  });
  check(cudaFree(a), "cudaFree");
  check(cudaFree(b), "cudaFree");
  const double bandwidth = 2.0 * bytes / copy;
  std::printf("peak: device copy %.0f GB/s (read + write)\n", bandwidth / 1e9);
  const int n = 8192;
  float *x = nullptr, *y = nullptr, *z = nullptr;
  check(cudaMalloc(&x, sizeof(float) * n * n), "cudaMalloc");
  check(cudaMalloc(&y, sizeof(float) * n * n), "cudaMalloc");
  check(cudaMalloc(&z, sizeof(float) * n * n), "cudaMalloc");
  check(cudaMemset(x, 0x3c, sizeof(float) * n * n), "cudaMemset");  // 0.0116: not zeros
  check(cudaMemset(y, 0x3c, sizeof(float) * n * n), "cudaMemset");
  cublasHandle_t h;
  check(cublasCreate(&h), "cublasCreate");
  double rate[2] = {};
  for (int m = 0; m < 2; ++m) {
    check(cublasSetMathMode(h, m ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
    const float one = 1, zero = 0;
    const double s = timed(repeats, [&] {
      check(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, x, n, y, n, &zero, z, n), "cublasSgemm");
      check(cudaDeviceSynchronize(), "sync");
    });
    rate[m] = 2.0 * n * n * double(n) / s;
    std::printf("peak: SGEMM %d^3 %s %.1f TFLOP/s\n", n, m ? "TF32" : "float32", rate[m] / 1e12);
  }
  cublasDestroy(h);
  cudaFree(x), cudaFree(y), cudaFree(z);
  out.add("peaks", field("copy_bytes_per_s", bandwidth) + ", " + field("sgemm_flops", rate[0]) + ", " +
                       field("tf32_flops", rate[1]));
}

void op_cases(int repeats, report& out) {
  using namespace soundnet::testing;
  op_runner<soundnet::cuda, float> run;
  std::printf("%-40s %10s %10s\n", "op case (batch 1)", "ms", "GFLOP/s");
  std::string fields;
  for (const auto& o : soundnet::testing::op_cases()) {
    if (!o.large) continue;
    const auto in = make_inputs(o, 1);
    std::vector<double> t;
    run.forward(o, in, &t, repeats);
    std::printf("%-40s %10.3f %10.1f\n", o.name.c_str(), 1e3 * median(t), o.flops() / median(t) / 1e9);
    fields += (fields.empty() ? "" : ", ") + field(o.name.c_str(), median(t));
  }
  out.add("ops", fields);
}

// Bytes a training step must move at least: every activation written once by forward and read
// once by backward, its gradient written and read once (float32); parameters, gradients and the
// two Adam moments read and written once.
double training_bytes(long batch, double params) {
  const auto lengths = net::lengths(clip);
  double values = 0;
  for (std::size_t i = 1; i <= net::size; ++i) values += double(batch) * net::channels[i] * lengths[i];
  return 4.0 * (4 * values + 8 * params);
}

const char* kind_name(soundnet::layer_kind k) {
  switch (k) {
    case soundnet::layer_kind::conv1d: return "conv1d";
    case soundnet::layer_kind::batch_norm: return "batch_norm";
    case soundnet::layer_kind::relu: return "relu";
    case soundnet::layer_kind::max_pool1d: return "max_pool1d";
    case soundnet::layer_kind::two_head_conv1d: return "two_head_conv1d";
  }
  return "?";
}

void train(int repeats, long batch, report& out) {
  const double flops = 3.0 * net::forward_flops(clip) * batch;  // forward + backward (2x)
  const auto x = waves(std::size_t(batch));
  const long steps = net::output_length(clip);
  const auto po = distributions(std::size_t(batch), net::objects, std::size_t(steps), 1);
  const auto ps = distributions(std::size_t(batch), net::scenes, std::size_t(steps), 2);
  for (int m = 0; m < 3; ++m) {
    gpu_model model(1);
    if (m) model.context().set_math(m == 1 ? soundnet::cuda::math::tf32 : soundnet::cuda::math::bf16);
    if (m == 0) std::printf("GPU: %s\n", model.context().device_name().c_str());
    soundnet::adam<float, soundnet::cuda> optimiser(model);
    const double step = timed(repeats, [&] {
      model.forward(x, soundnet::mode::training);
      model.zero_grad();
      model.kl_loss(po, ps);
      model.backward();
      optimiser.step();
      model.context().synchronize();
    });
    const char* name = m == 2 ? "train8_bf16" : m ? "train8_tf32" : "train8_float32";
    std::printf("%s batch %ld: step %.1f ms, %.1f TFLOP/s, 100,000 steps %.1f min\n", name, batch, 1e3 * step,
                flops / step / 1e12, step * 1e5 / 60);
    out.add(name, field("seconds", step) + ", " + field("flops", flops) + ", " + field("batch", double(batch)) + ", " +
                      field("bytes_floor", training_bytes(batch, double(model.parameter_arena().size()))));
  }
  // Consecutive training steps in float32 (no wait between them but the loss's), fed as
  // soundnet-train feeds a GPU: each batch written to pinned memory and uploaded on the stage's
  // copy stream beside the previous step's backward pass and Adam step; and, for comparison,
  // from a device buffer that already holds the batch (the upload's floor: none).
  {
    gpu_model model(1);
    soundnet::adam<float, soundnet::cuda> optimiser(model);
    soundnet::cuda::upload_stage<float> stage(model.context());
    soundnet::cuda::buffer<float> resident;
    resident.resize(x.size());
    soundnet::ops<soundnet::cuda, float>::copy_from_host(model.context(), x.data(), long(x.size()), resident.data());
    constexpr int steps_per_sample = 4;
    for (const bool staged : {true, false}) {
      const double s = timed(std::max(3, repeats / 2), [&] {
        for (int i = 0; i < steps_per_sample; ++i) {
          const float* input = resident.data();
          if (staged) {
            std::copy(x.begin(), x.end(), stage.host(x.size()));
            input = stage.upload(x.size());
          }
          model.forward_device(input, batch, clip, soundnet::mode::training);
          model.zero_grad();
          model.kl_loss(po, ps);
          model.backward();
          optimiser.step();
        }
        model.context().synchronize();
      }) / steps_per_sample;
      const char* name = staged ? "train8_float32_staged" : "train8_float32_resident";
      std::printf("%s batch %ld: %.1f ms a step (%d steps in a row)\n", name, batch, 1e3 * s, steps_per_sample);
      out.add(name, field("seconds", s) + ", " + field("batch", double(batch)));
    }
  }
  // The upload of the waveforms alone (pageable host memory), included in the step above.
  soundnet::cuda::context ctx;
  soundnet::cuda::buffer<float> dst;
  dst.resize(x.size());
  const double upload = timed(repeats, [&] {
    soundnet::ops<soundnet::cuda, float>::copy_from_host(ctx, x.data(), long(x.size()), dst.data());
    ctx.synchronize();
  });
  std::printf("upload of %ld clips from pageable memory: %.1f ms\n", batch, 1e3 * upload);
  out.add("upload", field("seconds", upload) + ", " + field("bytes", 4.0 * double(x.size())));
}

void infer(int repeats, long batch, report& out) {
  for (long b : {batch, 1L}) {
    gpu_model model(1);
    const auto x = waves(std::size_t(b));
    const double s = timed(repeats, [&] {
      model.forward(x);
      model.context().synchronize();
    });
    const std::string name = "infer8_b" + std::to_string(b);
    std::printf("%s: %.2f ms, %.0f clips/s, %.1f TFLOP/s\n", name.c_str(), 1e3 * s, b / s,
                net::forward_flops(clip) * b / s / 1e12);
    out.add(name, field("seconds", s) + ", " + field("flops", net::forward_flops(clip) * double(b)) + ", " +
                      field("batch", double(b)));
  }
}

void layers(long batch, report& out) {
  gpu_model model(1);
  const auto x = waves(std::size_t(batch));
  const long steps = net::output_length(clip);
  const auto po = distributions(std::size_t(batch), net::objects, std::size_t(steps), 1);
  const auto ps = distributions(std::size_t(batch), net::scenes, std::size_t(steps), 2);
  model.set_layer_timing(true);
  for (int r = 0; r < 2; ++r) {  // the second pass is timed (scratch already grown)
    model.forward(x, soundnet::mode::training);
    model.zero_grad();
    model.kl_loss(po, ps);
    model.backward();
  }
  std::printf("%-6s %-28s %10s %10s\n", "layer", "", "fwd ms", "bwd ms");
  std::string fields;
  for (std::size_t i = 0; i < net::size; ++i) {
    const char* name = kind_name(net::kinds[i]);
    std::printf("%-6zu %-28s %10.3f %10.3f\n", i, name, 1e3 * model.layer_seconds()[i],
                1e3 * model.layer_backward_seconds()[i]);
    fields += (fields.empty() ? "" : ", ") + std::string("\"") + std::to_string(i) + " " + name +
              "\": [" + std::to_string(model.layer_seconds()[i]) + ", " + std::to_string(model.layer_backward_seconds()[i]) + "]";
  }
  out.add("layers", fields);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("soundnet's CUDA device on this GPU: ceilings, op cases, SoundNet-8 training and inference");
  int repeats = 10;
  long batch = 64;
  std::string json, cases = "peaks,ops,train,infer,layers";
  app.add_option("--repeats", repeats, "timed runs after a warm-up (medians)")->check(CLI::Range(1, 1000));
  app.add_option("--batch", batch, "clips of 20 s per training step and inference batch")->check(CLI::Range(1, 4096));
  app.add_option("--json", json, "write the figures to this file");
  app.add_option("--cases", cases, "comma-separated: peaks, ops, train, infer, layers");
  CLI11_PARSE(app, argc, argv);
  if (soundnet::cuda::device_count() == 0) {
    std::fprintf(stderr, "soundnet-gpu-bench: %s\n", soundnet::cuda::unavailable_reason().c_str());
    return 2;
  }
  report out;
  // The figures so far, after every case: a time limit that stops a later case keeps them.
  auto save = [&] {
    if (json.empty()) return true;
    std::ofstream f(json);
    f << "{\n" << out.json.str() << "\n}\n";
    if (!f) std::fprintf(stderr, "soundnet-gpu-bench: cannot write %s\n", json.c_str());
    return static_cast<bool>(f);
  };
  try {
    std::stringstream list(cases);
    for (std::string c; std::getline(list, c, ',');) {
      if (c == "peaks") peaks(repeats, out);
      else if (c == "ops") op_cases(repeats, out);
      else if (c == "train") train(repeats, batch, out);
      else if (c == "infer") infer(repeats, batch, out);
      else if (c == "layers") layers(batch, out);
      else throw std::runtime_error("unknown case '" + c + "' (peaks, ops, train, infer, layers)");
      if (!save()) return 1;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "soundnet-gpu-bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
