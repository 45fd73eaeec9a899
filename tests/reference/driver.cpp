// soundnet-reference: the library alone, driven by the PyTorch reference checks
// (check_against_torch.py, check_pretrained_conv1.py), so that they test the library and not the
// command-line programs (which need not be built).
//
//   soundnet-reference extract --arch A --weights W --input-npy X (--all-layers | --layer L) --out O
//       every read-out (O a folder of <name>.npy) or one (fused where it can be) as (C, T) .npy
//   soundnet-reference train --arch A --init W --manifest M --batch-size B --steps S
//       [--lr --beta1 --beta2] [--precision float32|float64] [--dump-gradients G] --save W
//       M: CSV audio,objects,scenes (clips of one length; targets (T, classes)); batches take the
//       rows in order; prints "step i/S loss L"; G: the first step's gradients
#include <soundnet/soundnet.hpp>
#include <xtensor/xview.hpp>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

namespace fs = std::filesystem;

namespace {

struct options {
  std::string arch, weights, input, layer, out, init, manifest, save, gradients, precision = "float32";
  bool all_layers = false;
  long batch = 1, steps = 1;
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999;
};

template <class F>
int with_arch(const std::string& arch, F&& f) {
  if (arch == "soundnet8") return f.template operator()<soundnet::soundnet8<>>();
  if (arch == "soundnet5") return f.template operator()<soundnet::soundnet5<>>();
  throw std::invalid_argument("--arch must be soundnet8 or soundnet5");
}

std::vector<float> waveform(const std::string& path) {
  const auto a = soundnet::io::read_npy<float>(path);
  return std::vector<float>(a.data(), a.data() + a.size());
}

struct extract {
  const options& o;
  template <class Net>
  int operator()() const {
    soundnet::model<Net> net;
    soundnet::io::load_weights(net, o.weights);
    const auto x = waveform(o.input);
    const bool all = o.all_layers || net.inside_fused_block(o.layer);
    net.forward(x.data(), 1, static_cast<long>(x.size()), soundnet::mode::inference,
                all ? soundnet::keep::all : soundnet::keep::block_outputs);
    auto write = [&](const std::string& name, const std::string& path) {
      xt::xtensor<float, 2> ct = xt::view(net.output(name), 0, xt::all(), xt::all());
      soundnet::io::write_npy(path, ct);
    };
    if (o.all_layers) {
      fs::create_directories(o.out);
      for (const auto& name : net.output_names()) write(name, (fs::path(o.out) / (name + ".npy")).string());
    } else {
      write(o.layer, o.out);
    }
    return 0;
  }
};

struct train {
  const options& o;
  template <class Net>
  int operator()() const {
    return o.precision == "float64" ? run<Net, double>() : run<Net, float>();
  }

  template <class Net, class T>
  int run() const {
    std::ifstream in(o.manifest);
    if (!in) throw soundnet::io_error(o.manifest, "cannot open manifest");
    const fs::path base = fs::path(o.manifest).parent_path();
    std::vector<std::array<std::string, 3>> rows;
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      std::array<std::string, 3> r;
      std::size_t a = line.find(','), b = line.find(',', a + 1);
      r[0] = (base / line.substr(0, a)).string(), r[1] = (base / line.substr(a + 1, b - a - 1)).string(),
      r[2] = (base / line.substr(b + 1)).string();
      rows.push_back(r);
    }
    soundnet::model<Net, T> net;
    soundnet::io::load_weights(net, o.init);
    soundnet::adam opt(net, {o.lr, o.beta1, o.beta2, 1e-8});
    const long samples = static_cast<long>(waveform(rows[0][0]).size()), steps = net.output_length(samples);
    xt::xtensor<T, 3> x = xt::zeros<T>({std::size_t(o.batch), std::size_t(1), std::size_t(samples)});
    xt::xtensor<T, 3> to = xt::zeros<T>({std::size_t(o.batch), std::size_t(Net::objects), std::size_t(steps)});
    xt::xtensor<T, 3> ts = xt::zeros<T>({std::size_t(o.batch), std::size_t(Net::scenes), std::size_t(steps)});
    for (long step = 0; step < o.steps; ++step) {
      for (long i = 0; i < o.batch; ++i) {
        const auto& r = rows[(step * o.batch + i) % rows.size()];
        const auto w = waveform(r[0]);
        std::copy(w.begin(), w.end(), &x(i, 0, 0));
        const auto a = soundnet::io::read_npy<T>(r[1]), b = soundnet::io::read_npy<T>(r[2]);  // (T, classes)
        for (long t = 0; t < steps; ++t) {
          for (long k = 0; k < Net::objects; ++k) to(i, k, t) = a(t, k);
          for (long k = 0; k < Net::scenes; ++k) ts(i, k, t) = b(t, k);
        }
      }
      net.forward(x, soundnet::mode::training);
      const double loss = net.kl_loss(to, ts);
      net.zero_grad();
      net.backward();
      if (step == 0 && !o.gradients.empty()) {
        std::vector<soundnet::io::named_tensor> g;
        for (const auto& p : net.parameters())
          if (p.trainable()) g.push_back({p.name, p.shape, std::vector<float>(p.grad, p.grad + p.size)});
        soundnet::io::write_safetensors(o.gradients, g, {{"content", "gradients"}});
      }
      opt.step();
      std::printf("step %ld/%ld loss %.8f\n", step + 1, o.steps, loss);
    }
    soundnet::io::save_weights(net, o.save);
    return 0;
  }
};

}  // namespace

int main(int argc, char** argv) {
  options o;
  CLI::App app{"soundnet-reference: the library for the reference checks", "soundnet-reference"};
  app.require_subcommand(1);
  auto* ex = app.add_subcommand("extract", "read-outs of one waveform");
  ex->add_option("--arch", o.arch)->required();
  ex->add_option("--weights", o.weights)->required();
  ex->add_option("--input-npy", o.input)->required();
  ex->add_option("--layer", o.layer);
  ex->add_flag("--all-layers", o.all_layers);
  ex->add_option("--out", o.out)->required();
  auto* tr = app.add_subcommand("train", "steps of KL + Adam on a manifest");
  tr->add_option("--arch", o.arch)->required();
  tr->add_option("--init", o.init)->required();
  tr->add_option("--manifest", o.manifest)->required();
  tr->add_option("--batch-size", o.batch);
  tr->add_option("--steps", o.steps);
  tr->add_option("--lr", o.lr);
  tr->add_option("--beta1", o.beta1);
  tr->add_option("--beta2", o.beta2);
  tr->add_option("--precision", o.precision);
  tr->add_option("--dump-gradients", o.gradients);
  tr->add_option("--save", o.save)->required();
  CLI11_PARSE(app, argc, argv);
  try {
    if (*ex) return with_arch(o.arch, extract{o});
    return with_arch(o.arch, train{o});
  } catch (const std::exception& e) {
    std::cerr << "soundnet-reference: error: " << e.what() << "\n";
    return 1;
  }
}
