// One list of operation cases, shared by every test and benchmark of the op table:
//   test_gradients   each small case in double against central finite differences
//   test_ops         each case in float (fused epilogue and direct conv1 kernel included)
//                    against the same case in double on the CPU
//   a CUDA backend   each case on the device against the CPU (same runner, Device = cuda)
//   soundnet-bench   --ops: each SoundNet-shaped case timed alone
//
// A case names an operation and its shapes. op_runner<Device, T> builds its inputs from a seed
// (identical values for every Device and T: drawn in double on the host), runs the forward and
// the backward through ops<Device, T>, and returns host results in double.
#pragma once

#include <soundnet/soundnet.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace soundnet::testing {

enum class op_kind { conv1d, conv1d_bn_relu, batch_norm_train, batch_norm_eval, relu, max_pool, softmax_kl, adam };

struct op_case {
  std::string name;
  op_kind kind;
  long n = 1, c = 1, t = 1;                             // input (n, c, t)
  long c_out = 0, kernel = 1, stride = 1, padding = 0;  // convolution, max-pool
  long c_total = 0, c_begin = 0;                        // softmax_kl: logits (n, c_total, t), head [c_begin, c_begin + c)
  bool large = false;                                   // a SoundNet layer at full size: no finite differences

  long t_out() const {
    if (kind == op_kind::conv1d || kind == op_kind::conv1d_bn_relu) return (t + 2 * padding - kernel) / stride + 1;
    if (kind == op_kind::max_pool) return (t - kernel) / stride + 1;
    return t;
  }
  conv_geometry geometry() const { return {n, c, t, c_out, kernel, stride, padding, t_out()}; }
  bool convolution() const { return kind == op_kind::conv1d || kind == op_kind::conv1d_bn_relu; }
  /// Floating-point operations of the forward (convolutions: 2 per multiply-add; others 0).
  double flops() const { return convolution() ? 2.0 * n * c_out * c * kernel * t_out() : 0.0; }
};

/// How far a result is from a reference: relative L2 error, largest error, largest reference
/// value. A non-finite result is infinitely far (NaN never passes).
struct error_measure {
  double rel_l2 = 0, max_abs = 0, scale = 0;
};

inline error_measure compare(const std::vector<double>& got, const std::vector<double>& want) {
  error_measure e;
  if (got.size() != want.size()) return {INFINITY, INFINITY, 0};
  double num = 0, den = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return {INFINITY, INFINITY, 0};
    const double d = got[i] - want[i];
    num += d * d, den += want[i] * want[i];
    e.max_abs = std::max(e.max_abs, std::abs(d));
    e.scale = std::max(e.scale, std::abs(want[i]));
  }
  e.rel_l2 = std::sqrt(num / std::max(den, 1e-300));
  return e;
}

namespace detail {
inline op_case conv(std::string name, op_kind k, long n, long c, long t, long c_out, long kernel, long stride,
                    long padding, bool large = false) {
  op_case o{std::move(name), k, n, c, t};
  o.c_out = c_out, o.kernel = kernel, o.stride = stride, o.padding = padding, o.large = large;
  return o;
}
}  // namespace detail

/// The cases: small ones that reach every branch of every op (checked by finite differences),
/// then SoundNet-8's layers for a 20 s clip, batch 1 (float against double, benchmarks).
inline std::vector<op_case> op_cases() {
  using detail::conv;
  std::vector<op_case> v;
  // convolution: strides, paddings wider than the kernel, kernel > input, one input channel
  // (the direct kernel: c_in 1, c_out a multiple of 16), several chunks of columns and clips
  v.push_back(conv("conv1d 3->4 k5 s2 p2 t17", op_kind::conv1d, 2, 3, 17, 4, 5, 2, 2));
  v.push_back(conv("conv1d 2->3 k4 s3 p0 t20", op_kind::conv1d, 2, 2, 20, 3, 4, 3, 0));
  v.push_back(conv("conv1d 1->2 k8 s1 p4 t9", op_kind::conv1d, 2, 1, 9, 2, 8, 1, 4));
  v.push_back(conv("conv1d 2->2 k3 s2 p5 t6", op_kind::conv1d, 2, 2, 6, 2, 3, 2, 5));
  v.push_back(conv("conv1d 1->16 k64 s2 p32 t300 (direct)", op_kind::conv1d, 2, 1, 300, 16, 64, 2, 32));
  v.push_back(conv("conv1d 2->3 k4 s2 p2 t2100 (4 clips)", op_kind::conv1d, 4, 2, 2100, 3, 4, 2, 2));
  // float: the packed kernels over several chunks, the last one a partial sliver, rows not a
  // multiple of the register block (double: Eigen)
  v.push_back(conv("conv1d 2->5 k8 s2 p4 t200 (packed chunks)", op_kind::conv1d, 2, 2, 200, 5, 8, 2, 4));
  v.push_back(conv("conv1d_bn_relu 2->5 k8 s2 p4 t200 (packed chunks)", op_kind::conv1d_bn_relu, 2, 2, 200, 5, 8, 2, 4));
  v.push_back(conv("conv1d_bn_relu 3->4 k5 s2 p2 t17", op_kind::conv1d_bn_relu, 2, 3, 17, 4, 5, 2, 2));
  v.push_back(conv("conv1d_bn_relu 1->16 k64 s2 p32 t300 (direct)", op_kind::conv1d_bn_relu, 2, 1, 300, 16, 64, 2, 32));
  v.push_back({"batch_norm_train n2 c3 t11", op_kind::batch_norm_train, 2, 3, 11});
  v.push_back({"batch_norm_eval n2 c3 t11", op_kind::batch_norm_eval, 2, 3, 11});
  v.push_back({"relu n2 c3 t23", op_kind::relu, 2, 3, 23});
  v.push_back(conv("max_pool k4 s3 t23", op_kind::max_pool, 1, 3, 23, 0, 4, 3, 0));
  v.push_back(conv("max_pool k8 s8 t70 (vectorised)", op_kind::max_pool, 2, 3, 70, 0, 8, 8, 0));
  op_case kl{"softmax_kl n2 head 5 of 7 t3", op_kind::softmax_kl, 2, 5, 3};
  kl.c_total = 7, kl.c_begin = 2;
  v.push_back(kl);
  v.push_back({"adam 1000", op_kind::adam, 1, 1, 1000});
  // SoundNet-8, 20 s, batch 1 (lengths from the paper's Table 1, corrected)
  v.push_back(conv("soundnet8 conv1 (direct)", op_kind::conv1d_bn_relu, 1, 1, 441000, 16, 64, 2, 32, true));
  v.push_back(conv("soundnet8 conv2", op_kind::conv1d_bn_relu, 1, 16, 27562, 32, 32, 2, 16, true));
  v.push_back(conv("soundnet8 conv3", op_kind::conv1d_bn_relu, 1, 32, 1722, 64, 16, 2, 8, true));
  v.push_back(conv("soundnet8 conv4", op_kind::conv1d_bn_relu, 1, 64, 862, 128, 8, 2, 4, true));
  v.push_back(conv("soundnet8 conv5", op_kind::conv1d_bn_relu, 1, 128, 432, 256, 4, 2, 2, true));
  v.push_back(conv("soundnet8 conv6", op_kind::conv1d_bn_relu, 1, 256, 54, 512, 4, 2, 2, true));
  v.push_back(conv("soundnet8 conv7", op_kind::conv1d_bn_relu, 1, 512, 28, 1024, 4, 2, 2, true));
  v.push_back(conv("soundnet8 conv8", op_kind::conv1d, 1, 1024, 15, 1401, 8, 2, 0, true));
  v.push_back(conv("soundnet8 conv2 (training)", op_kind::conv1d, 1, 16, 27562, 32, 32, 2, 16, true));
  v.push_back({"soundnet8 bn1 (training)", op_kind::batch_norm_train, 1, 16, 220501, 0, 1, 1, 0, 0, 0, true});
  v.push_back(conv("soundnet8 pool1", op_kind::max_pool, 1, 16, 220501, 0, 8, 8, 0, true));
  op_case heads{"soundnet8 KL (both heads' objects)", op_kind::softmax_kl, 8, 1000, 4};
  heads.c_total = 1401, heads.c_begin = 0, heads.large = true;
  v.push_back(heads);
  v.push_back({"soundnet8 adam (whole arena)", op_kind::adam, 1, 1, 14'400'000, 0, 1, 1, 0, 0, 0, true});
  return v;
}

/// Deterministic pseudo-random values in double (the same for every device and precision).
inline std::vector<double> draw(std::size_t n, std::uint64_t seed, double mean = 0, double sd = 1) {
  normal_generator g(seed);
  std::vector<double> v(n);
  for (auto& x : v) x = g(mean, sd);
  return v;
}

/// A case's inputs: named host tensors in double; `differentiable` lists those the backward
/// returns gradients of.
struct op_inputs {
  std::map<std::string, std::vector<double>> tensors;
  std::vector<std::string> differentiable;
};

inline op_inputs make_inputs(const op_case& o, std::uint64_t seed = 1) {
  op_inputs in;
  auto& t = in.tensors;
  const std::size_t x_size = std::size_t(o.n) * o.c * o.t;
  switch (o.kind) {
    case op_kind::conv1d:
    case op_kind::conv1d_bn_relu: {
      const double fan_in = double(o.c) * o.kernel;
      t["x"] = draw(x_size, seed, 0, 1);
      t["w"] = draw(std::size_t(o.c_out) * o.c * o.kernel, seed + 1, 0, 1 / std::sqrt(fan_in));
      t["b"] = draw(o.c_out, seed + 2, 0, 0.1);
      in.differentiable = {"x", "w", "b"};
      if (o.kind == op_kind::conv1d_bn_relu) {  // inference only: no backward
        t["gamma"] = draw(o.c_out, seed + 3, 1, 0.2);
        t["beta"] = draw(o.c_out, seed + 4, 0, 0.2);
        t["mean"] = draw(o.c_out, seed + 5, 0, 0.3);
        t["var"] = draw(o.c_out, seed + 6, 0, 0.5);
        for (auto& v : t["var"]) v = 0.5 + std::abs(v);
        in.differentiable.clear();
      }
      break;
    }
    case op_kind::batch_norm_train:
    case op_kind::batch_norm_eval:
      t["x"] = draw(x_size, seed, 0.5, 2);
      t["gamma"] = draw(o.c, seed + 1, 1, 0.3);
      t["beta"] = draw(o.c, seed + 2, 0, 0.3);
      t["mean"] = draw(o.c, seed + 3, 0, 0.3);
      t["var"] = std::vector<double>(o.c, 1.5);
      in.differentiable = {"x", "gamma", "beta"};
      break;
    case op_kind::relu:
    case op_kind::max_pool:
      t["x"] = draw(x_size, seed, 0, 1);
      for (auto& v : t["x"]) v += v > 0 ? 0.05 : -0.05;  // away from the ReLU kink
      in.differentiable = {"x"};
      break;
    case op_kind::softmax_kl: {
      t["logits"] = draw(std::size_t(o.n) * o.c_total * o.t, seed, 0, 2);
      auto p = draw(x_size, seed + 1, 0, 1);
      for (long i = 0; i < o.n; ++i)
        for (long j = 0; j < o.t; ++j) {
          double s = 0;
          for (long k = 0; k < o.c; ++k) s += (p[(i * o.c + k) * o.t + j] = std::exp(p[(i * o.c + k) * o.t + j]));
          for (long k = 0; k < o.c; ++k) p[(i * o.c + k) * o.t + j] /= s;
        }
      p[o.t] = 0;  // a zero target probability contributes nothing (0 log 0 = 0)
      t["targets"] = p;
      in.differentiable = {"logits"};
      break;
    }
    case op_kind::adam:
      t["param"] = draw(x_size, seed, 0, 0.1);
      t["grad"] = draw(x_size, seed + 1, 0, 0.01);
      t["m"] = draw(x_size, seed + 2, 0, 0.001);
      t["v"] = draw(x_size, seed + 3, 0, 0.001);
      for (auto& v : t["v"]) v = v * v;
      break;
  }
  return in;
}

/// Runs cases through ops<Device, T>, with host inputs and results in double.
template <class Device, class T>
class op_runner {
 public:
  using O = ops<Device, T>;
  using buffer = typename Device::template buffer<T>;

  /// The forward (for adam: the updated parameters, then m and v, after 2 steps). With `times`,
  /// the operation itself (inputs already on the device) runs `repeats` more times and each
  /// run's seconds are appended (soundnet-bench --cases ops).
  std::vector<double> forward(const op_case& o, const op_inputs& in, std::vector<double>* times = nullptr,
                              int repeats = 0) {
    const auto& t = in.tensors;
    auto exec = [&](auto&& op) {
      op();
      wait();
      for (int r = 0; times && r < repeats; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        op();
        wait();
        times->push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
    };
    switch (o.kind) {
      case op_kind::conv1d: {
        auto x = up(t.at("x")), w = up(t.at("w")), b = up(t.at("b"));
        buffer y = make(o.n * o.c_out * o.t_out());
        exec([&] { O::conv1d_forward(ctx_, x.data(), w.data(), b.data(), y.data(), o.geometry()); });
        return down(y);
      }
      case op_kind::conv1d_bn_relu: {
        auto x = up(t.at("x")), w = up(t.at("w")), b = up(t.at("b")), gamma = up(t.at("gamma")), beta = up(t.at("beta")),
             mean = up(t.at("mean")), var = up(t.at("var"));
        buffer y = make(o.n * o.c_out * o.t_out());
        exec([&] {
          O::conv1d_bn_relu_forward(ctx_, x.data(), w.data(), b.data(), gamma.data(), beta.data(), mean.data(),
                                    var.data(), 1e-5, y.data(), o.geometry());
        });
        return down(y);
      }
      case op_kind::batch_norm_train:
      case op_kind::batch_norm_eval: {
        auto x = up(t.at("x")), gamma = up(t.at("gamma")), beta = up(t.at("beta")), mean = up(t.at("mean")),
             var = up(t.at("var"));
        buffer y = make(o.n * o.c * o.t), saved_mean = make(o.c), saved_invstd = make(o.c);
        exec([&] {
          if (o.kind == op_kind::batch_norm_train)  // the running statistics change: results too
            O::batch_norm_forward_train(ctx_, x.data(), o.n, o.c, o.t, gamma.data(), beta.data(), 1e-5, 0.1,
                                        mean.data(), var.data(), saved_mean.data(), saved_invstd.data(), y.data());
          else
            O::batch_norm_forward_eval(ctx_, x.data(), o.n, o.c, o.t, gamma.data(), beta.data(), mean.data(),
                                       var.data(), 1e-5, y.data());
        });
        auto out = down(y);
        if (o.kind == op_kind::batch_norm_train)
          for (auto* b : {&mean, &var, &saved_mean, &saved_invstd})
            for (double v : down(*b)) out.push_back(v);
        return out;
      }
      case op_kind::relu: {
        auto x = up(t.at("x"));
        buffer y = make(o.n * o.c * o.t);
        exec([&] { O::relu_forward(ctx_, x.data(), y.data(), o.n * o.c * o.t); });
        return down(y);
      }
      case op_kind::max_pool: {
        auto x = up(t.at("x"));
        buffer y = make(o.n * o.c * o.t_out());
        exec([&] { O::max_pool_forward(ctx_, x.data(), o.n * o.c, o.t, o.kernel, o.stride, o.t_out(), y.data(), nullptr); });
        return down(y);
      }
      case op_kind::softmax_kl: {
        auto z = up(t.at("logits")), p = up(t.at("targets"));
        double loss = 0;
        exec([&] {
          loss = O::softmax_kl(ctx_, z.data(), o.n, o.c_total, o.c_begin, o.c, o.t, p.data(), double(o.n * o.t), nullptr);
        });
        return {loss};
      }
      case op_kind::adam: {
        auto p = up(t.at("param")), g = up(t.at("grad")), m = up(t.at("m")), v = up(t.at("v"));
        for (long step = 1; step <= 2; ++step)
          O::adam_update(ctx_, p.data(), g.data(), m.data(), v.data(), static_cast<long>(p.size()), 1e-3, 0.9, 0.999,
                         1e-8, step);
        if (times)
          exec([&] {
            O::adam_update(ctx_, p.data(), g.data(), m.data(), v.data(), static_cast<long>(p.size()), 1e-3, 0.9, 0.999,
                           1e-8, 3);
          });
        auto out = down(p);
        for (auto* b : {&m, &v})
          for (double x : down(*b)) out.push_back(x);
        return out;
      }
    }
    return {};
  }

  /// Gradients of sum(dy * forward) with respect to each differentiable input.
  std::map<std::string, std::vector<double>> backward(const op_case& o, const op_inputs& in,
                                                      const std::vector<double>& dy_host) {
    const auto& t = in.tensors;
    std::map<std::string, std::vector<double>> out;
    auto dy = up(dy_host);
    switch (o.kind) {
      case op_kind::conv1d: {
        auto x = up(t.at("x")), w = up(t.at("w"));
        buffer dx = make(x.size()), dw = zeros(w.size()), db = zeros(o.c_out);
        O::conv1d_backward(ctx_, x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data(), o.geometry());
        out["x"] = down(dx), out["w"] = down(dw), out["b"] = down(db);
        break;
      }
      case op_kind::batch_norm_train:
      case op_kind::batch_norm_eval: {
        auto x = up(t.at("x")), gamma = up(t.at("gamma")), beta = up(t.at("beta")), mean = up(t.at("mean")),
             var = up(t.at("var"));
        buffer y = make(x.size()), saved_mean = make(o.c), saved_invstd = make(o.c);
        const bool training = o.kind == op_kind::batch_norm_train;
        if (training) {
          O::batch_norm_forward_train(ctx_, x.data(), o.n, o.c, o.t, gamma.data(), beta.data(), 1e-5, 0.1, mean.data(),
                                      var.data(), saved_mean.data(), saved_invstd.data(), y.data());
        } else {
          O::copy(ctx_, mean.data(), o.c, saved_mean.data());
          O::batch_norm_invstd(ctx_, var.data(), o.c, 1e-5, saved_invstd.data());
        }
        buffer dx = make(x.size()), dgamma = zeros(o.c), dbeta = zeros(o.c);
        O::batch_norm_backward(ctx_, x.data(), dy.data(), o.n, o.c, o.t, gamma.data(), saved_mean.data(),
                               saved_invstd.data(), training, dx.data(), dgamma.data(), dbeta.data());
        out["x"] = down(dx), out["gamma"] = down(dgamma), out["beta"] = down(dbeta);
        break;
      }
      case op_kind::relu: {
        auto x = up(t.at("x"));
        buffer y = make(x.size()), dx = make(x.size());
        O::relu_forward(ctx_, x.data(), y.data(), static_cast<long>(x.size()));
        O::relu_backward(ctx_, y.data(), dy.data(), dx.data(), static_cast<long>(x.size()));
        out["x"] = down(dx);
        break;
      }
      case op_kind::max_pool: {
        auto x = up(t.at("x"));
        const long rows = o.n * o.c;
        buffer y = make(rows * o.t_out()), dx = make(x.size());
        typename Device::template buffer<std::int32_t> argmax;
        argmax.resize(static_cast<std::size_t>(rows * o.t_out()));
        O::max_pool_forward(ctx_, x.data(), rows, o.t, o.kernel, o.stride, o.t_out(), y.data(), argmax.data());
        O::max_pool_backward(ctx_, dy.data(), argmax.data(), rows, o.t, o.t_out(), dx.data());
        out["x"] = down(dx);
        break;
      }
      case op_kind::softmax_kl: {  // the loss is a scalar: dy holds one value
        auto z = up(t.at("logits")), p = up(t.at("targets"));
        buffer grad = zeros(z.size());
        O::softmax_kl(ctx_, z.data(), o.n, o.c_total, o.c_begin, o.c, o.t, p.data(), double(o.n * o.t), grad.data());
        auto g = down(grad);
        for (auto& v : g) v *= dy_host.at(0);
        out["logits"] = g;
        break;
      }
      default:
        break;
    }
    return out;
  }

  typename Device::context& context() { return ctx_; }

 private:
  // An asynchronous device (a GPU) finishes the queued work before a clock is read.
  template <class C, class = void>
  struct synchronizes : std::false_type {};
  template <class C>
  struct synchronizes<C, std::void_t<decltype(std::declval<const C&>().synchronize())>> : std::true_type {};
  void wait() {
    if constexpr (synchronizes<typename Device::context>::value) ctx_.synchronize();
  }

  buffer make(std::size_t n) {
    buffer b;
    b.resize(n);
    return b;
  }
  buffer zeros(std::size_t n) {
    buffer b = make(n);
    O::fill(ctx_, b.data(), static_cast<long>(n), T(0));
    return b;
  }
  buffer up(const std::vector<double>& host) {
    std::vector<T> h(host.begin(), host.end());
    buffer b = make(h.size());
    O::copy_from_host(ctx_, h.data(), static_cast<long>(h.size()), b.data());
    return b;
  }
  std::vector<double> down(buffer& b) {
    std::vector<T> h(b.size());
    O::copy_to_host(ctx_, b.data(), static_cast<long>(b.size()), h.data());
    return std::vector<double>(h.begin(), h.end());
  }

  typename Device::context ctx_;
};

/// The size of a case's forward result.
inline std::size_t forward_size(const op_case& o) {
  switch (o.kind) {
    case op_kind::conv1d:
    case op_kind::conv1d_bn_relu: return std::size_t(o.n) * o.c_out * o.t_out();
    case op_kind::max_pool: return std::size_t(o.n) * o.c * o.t_out();
    case op_kind::softmax_kl: return 1;
    default: return std::size_t(o.n) * o.c * o.t;
  }
}

}  // namespace soundnet::testing
