// The CUDA kernels' index arithmetic (components/cuda/.../indexing.hpp), checked on the CPU
// where no GPU is needed: im2col + a plain product, col2im as a gather, the per-channel
// reduction's segments and element order, the max-pool backward's runs and the im2col chunk
// plan, each against the CPU device's operations in double (independent code) on every
// case of the shared op list that uses it.
#define BOOST_TEST_MODULE cuda_indexing
#include "boost_test.hpp"

#include <soundnet/backend/cuda/indexing.hpp>

#include <cmath>
#include <set>
#include <vector>

#include "op_cases.hpp"

using namespace soundnet::testing;
namespace ix = soundnet::cuda_backend::index;

namespace {

double rel_l2(const std::vector<double>& a, const std::vector<double>& b) {
  BOOST_REQUIRE_EQUAL(a.size(), b.size());
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) num += (a[i] - b[i]) * (a[i] - b[i]), den += b[i] * b[i];
  return std::sqrt(num / std::max(den, 1e-300));
}

// The GPU's convolution, done on the host with its index functions: im2col chunks (of the
// planned size), a plain product, the bias; and its input gradient, dcols = w^T dy gathered.
struct host_conv {
  const soundnet::conv_geometry g;
  long rows() const { return g.c_in * g.kernel; }

  std::vector<double> forward(const std::vector<double>& x, const std::vector<double>& w, const std::vector<double>& b,
                              long budget) const {
    std::vector<double> y(std::size_t(g.n * g.c_out * g.t_out));
    const auto plan = ix::plan_chunks(g.n, rows(), g.t_out, budget);
    for (long n0 = 0; n0 < g.n; n0 += plan.clips)
      for (long t0 = 0; t0 < g.t_out; t0 += plan.columns) {
        const long clips = std::min(plan.clips, g.n - n0), width = std::min(plan.columns, g.t_out - t0);
        const auto cols = im2col(x, n0, clips, t0, width);
        for (long c = 0; c < clips; ++c)
          for (long o = 0; o < g.c_out; ++o)
            for (long j = 0; j < width; ++j) {
              double acc = 0;
              for (long r = 0; r < rows(); ++r) acc += w[o * rows() + r] * cols[(c * rows() + r) * width + j];
              y[((n0 + c) * g.c_out + o) * g.t_out + t0 + j] = acc + b[o];
            }
      }
    return y;
  }

  std::vector<double> input_gradient(const std::vector<double>& w, const std::vector<double>& dy, long budget) const {
    std::vector<double> dx(std::size_t(g.n * g.c_in * g.t_in), 0.0);
    const auto plan = ix::plan_chunks(g.n, rows(), g.t_out, budget);
    for (long n0 = 0; n0 < g.n; n0 += plan.clips)
      for (long t0 = 0; t0 < g.t_out; t0 += plan.columns) {
        const long clips = std::min(plan.clips, g.n - n0), width = std::min(plan.columns, g.t_out - t0);
        std::vector<double> dcols(std::size_t(clips * rows() * width));
        for (long c = 0; c < clips; ++c)
          for (long r = 0; r < rows(); ++r)
            for (long j = 0; j < width; ++j) {
              double acc = 0;
              for (long o = 0; o < g.c_out; ++o) acc += w[o * rows() + r] * dy[((n0 + c) * g.c_out + o) * g.t_out + t0 + j];
              dcols[(c * rows() + r) * width + j] = acc;
            }
        for (long c = 0; c < clips; ++c)  // the gather, as col2im_kernel runs it
          for (long ch = 0; ch < g.c_in; ++ch)
            for (long i = 0; i < g.t_in; ++i) {
              const double* d = dcols.data() + c * rows() * width + ch * g.kernel * width;
              double acc = 0;
              ix::for_each_tap(i, g.kernel, g.stride, g.padding, t0, t0 + width,
                               [&](long k, long t) { acc += d[k * width + (t - t0)]; });
              dx[((n0 + c) * g.c_in + ch) * g.t_in + i] += acc;
            }
      }
    return dx;
  }

  std::vector<double> im2col(const std::vector<double>& x, long n0, long clips, long t0, long width) const {
    std::vector<double> cols(std::size_t(clips * rows() * width));
    for (long e = 0; e < static_cast<long>(cols.size()); ++e) {  // as im2col_kernel
      const auto p = ix::im2col_at(e, g.kernel, rows(), width);
      const long src = ix::conv_source(t0 + p.column, p.tap, g.stride, g.padding);
      cols[std::size_t(e)] = src >= 0 && src < g.t_in ? x[((n0 + p.clip) * g.c_in + p.channel) * g.t_in + src] : 0.0;
    }
    return cols;
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(im2col_and_the_col2im_gather_reproduce_the_cpu_convolution) {
  op_runner<soundnet::cpu, double> cpu;
  int checked = 0;
  for (const auto& o : op_cases()) {
    if (o.large || o.kind != op_kind::conv1d) continue;
    const auto in = make_inputs(o, 3);
    const host_conv h{o.geometry()};
    const auto dy = draw(forward_size(o), 9);
    const auto y_cpu = cpu.forward(o, in);
    const auto dx_cpu = cpu.backward(o, in, dy).at("x");
    // one chunk, then chunks of a few clips, then chunks of a few columns
    for (long budget : {1L << 30, h.rows() * o.t_out(), h.rows() * 3, 1L}) {
      BOOST_TEST_CONTEXT(o.name << ", chunk budget " << budget) {
        BOOST_TEST(rel_l2(h.forward(in.tensors.at("x"), in.tensors.at("w"), in.tensors.at("b"), budget), y_cpu) < 1e-13);
        BOOST_TEST(rel_l2(h.input_gradient(in.tensors.at("w"), dy, budget), dx_cpu) < 1e-13);
      }
    }
    ++checked;
  }
  BOOST_TEST(checked >= 5);
}

// The direct kernel of one-input-channel convolutions (conv1), tile by tile as the GPU runs it:
// the staged window with its zero padding, each output reading first + j * stride + k.
BOOST_AUTO_TEST_CASE(the_direct_kernel_tiles_reproduce_the_cpu_convolution) {
  op_runner<soundnet::cpu, double> cpu;
  int checked = 0;
  for (const auto& o : op_cases()) {
    if (o.c != 1 || !o.convolution()) continue;
    const auto g = o.geometry();
    const auto in = make_inputs(o, 4);
    const auto& x = in.tensors.at("x");
    const auto& w = in.tensors.at("w");
    op_case linear = o;  // the kernel computes conv(x, w); the bias (and a batch norm) follow
    linear.kind = op_kind::conv1d;
    auto zero_bias = in;
    zero_bias.tensors["b"].assign(std::size_t(o.c_out), 0.0);
    const auto want = cpu.forward(linear, zero_bias);
    for (long tile : {1L, 7L, 256L}) {
      std::vector<double> y(std::size_t(g.n * g.c_out * g.t_out), NAN);
      for (long clip = 0; clip < g.n; ++clip)
        for (long t0 = 0; t0 < g.t_out; t0 += tile) {
          const auto win = ix::direct_window(t0, tile, g.kernel, g.stride, g.padding);
          std::vector<double> xs(std::size_t(win.span));
          for (long i = 0; i < win.span; ++i) {
            const long src = win.first + i;
            xs[std::size_t(i)] = src >= 0 && src < g.t_in ? x[std::size_t(clip * g.t_in + src)] : 0.0;
          }
          const long width = std::min(tile, g.t_out - t0);
          for (long oc = 0; oc < g.c_out; ++oc)
            for (long j = 0; j < width; ++j) {
              double acc = 0;
              for (long k = 0; k < g.kernel; ++k) acc += w[std::size_t(oc * g.kernel + k)] * xs[std::size_t(j * g.stride + k)];
              y[std::size_t((clip * g.c_out + oc) * g.t_out + t0 + j)] = acc;
            }
        }
      BOOST_TEST(rel_l2(y, want) < 1e-13, o.name << ", tile " << tile);  // NaN (a step not written) fails
    }
    ++checked;
  }
  BOOST_TEST(checked >= 4);
}

BOOST_AUTO_TEST_CASE(chunk_plans_cover_every_clip_and_column_within_the_budget) {
  for (long n : {1L, 3L, 64L})
    for (long rows : {1L, 64L, 8192L})
      for (long t_out : {1L, 15L, 220500L})
        for (long budget : {1L, 1000L, 32L << 20}) {
          const auto p = ix::plan_chunks(n, rows, t_out, budget);
          BOOST_TEST(p.columns >= 1);
          BOOST_TEST(p.columns <= t_out);
          BOOST_TEST(p.clips >= 1);
          BOOST_TEST(p.clips <= n);
          BOOST_TEST((p.clips == 1 || p.columns == t_out));  // several clips only with whole rows
          BOOST_TEST((p.clips * rows * p.columns <= budget || (p.clips == 1 && (p.columns == 1 || rows * p.columns <= budget))));
        }
}

BOOST_AUTO_TEST_CASE(segments_cover_the_range_in_order) {
  for (long total : {0L, 1L, 7L, 8192L, 14112064L})
    for (long segments : {1L, 3L, 1024L}) {
      long next = 0;
      for (long s = 0; s < segments; ++s) {
        const auto r = ix::segment(s, segments, total);
        BOOST_TEST(r.begin == next);
        BOOST_TEST(r.end >= r.begin);
        BOOST_TEST(r.end - r.begin <= total / segments + 1);
        next = r.end;
      }
      BOOST_TEST(next == total);
    }
}

BOOST_AUTO_TEST_CASE(channel_elements_visit_each_value_of_the_channel_once) {
  const long n = 3, c = 4, t = 5;
  std::set<long> seen;
  for (long ch = 0; ch < c; ++ch)
    for (long j = 0; j < n * t; ++j) {
      const long e = ix::channel_element(j, ch, c, t);
      BOOST_TEST((e / t) % c == ch);
      seen.insert(e);
    }
  BOOST_TEST(static_cast<long>(seen.size()) == n * c * t);
}

// The GPU's max-pool backward (runs of windows sharing a maximum, each written by its first
// window) against the CPU's scatter, on the op cases and on ties and overlapping windows.
BOOST_AUTO_TEST_CASE(max_pool_backward_by_runs_equals_the_cpu_scatter) {
  using O = soundnet::ops<soundnet::cpu, double>;
  soundnet::cpu::context ctx;
  struct shape {
    long rows, t_in, kernel, stride;
  };
  int checked = 0;
  for (const auto& s : {shape{3, 23, 4, 3}, shape{6, 70, 8, 8}, shape{2, 50, 5, 1}, shape{2, 41, 7, 2}}) {
    for (bool ties : {false, true}) {
      const long t_out = (s.t_in - s.kernel) / s.stride + 1;
      auto x = draw(std::size_t(s.rows * s.t_in), 4);
      if (ties)
        for (auto& v : x) v = std::round(v);  // many equal values: first-maximum rule and long runs
      const auto dy = draw(std::size_t(s.rows * t_out), 5);
      std::vector<double> y(std::size_t(s.rows * t_out)), dx_cpu(x.size()), dx_runs(x.size(), 0.0);
      std::vector<std::int32_t> argmax(y.size());
      O::max_pool_forward(ctx, x.data(), s.rows, s.t_in, s.kernel, s.stride, t_out, y.data(), argmax.data());
      O::max_pool_backward(ctx, dy.data(), argmax.data(), s.rows, s.t_in, t_out, dx_cpu.data());
      std::vector<int> writes(x.size(), 0);
      for (long r = 0; r < s.rows; ++r)
        for (long t = 0; t < t_out; ++t) {  // as max_pool_backward_kernel
          const std::int32_t* a = argmax.data() + r * t_out;
          if (!ix::pool_run_starts(a, t)) continue;
          double acc = 0;
          for (long u = t; u < t_out && a[u] == a[t]; ++u) acc += dy[std::size_t(r * t_out + u)];
          dx_runs[std::size_t(r * s.t_in + a[t])] = acc;
          ++writes[std::size_t(r * s.t_in + a[t])];
        }
      BOOST_TEST(dx_runs == dx_cpu, boost::test_tools::per_element());
      BOOST_TEST(*std::max_element(writes.begin(), writes.end()) == 1);  // no two threads write one input
      ++checked;
    }
  }
  BOOST_TEST(checked == 8);
}
