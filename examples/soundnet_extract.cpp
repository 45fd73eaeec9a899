// soundnet-extract: SoundNet features of a waveform.
//
//   soundnet-extract --arch soundnet8 --weights W.safetensors --input-npy X.npy
//                    (--layer NAME | --all-layers) --out PATH
//
// X.npy: one float32 waveform, 22,050 Hz, already scaled to [-256, 256], shape (samples,).
// Writes (C, T) float32 .npy: PATH itself with --layer, PATH/<layer>.npy with --all-layers.
#include <filesystem>
#include <iostream>

#include "cli.hpp"

namespace {

const char* usage =
    "usage: soundnet-extract --arch soundnet8|soundnet5 --weights W.safetensors --input-npy X.npy\n"
    "                        (--layer NAME | --all-layers) --out PATH\n"
    "                        [--scenes 401|365] [--threads N]\n"
    "  X.npy     float32 waveform (samples,) at 22,050 Hz scaled to [-256, 256]\n"
    "  --layer   a read-out point: conv1_linear, bn1, conv1, pool1, ..., conv8_objects, conv8_scenes\n"
    "  --out     the .npy file (with --layer) or a directory for <layer>.npy files (--all-layers)\n";

struct extract {
  const cli::args& a;

  template <class Net>
  int operator()() const {
    soundnet::model<Net> net;
    const std::string layer = a.str("--layer", "");
    if (!layer.empty() && !net.has_output(layer)) {
      std::string known;
      for (const auto& n : net.output_names()) known += " " + n;
      throw cli::usage_error("unknown layer '" + layer + "' for " + Net::name + "; known:" + known);
    }
    soundnet::io::load_weights(net, a.str("--weights"));
    const std::string input = a.str("--input-npy");
    const auto wave = cli::read_waveform(input);
    const long samples = static_cast<long>(wave.size());
    try {
      const bool all = a.has("--all-layers") || net.inside_fused_block(layer);
      net.forward(wave.data(), 1, samples, soundnet::mode::inference,
                  all ? soundnet::keep::all : soundnet::keep::block_outputs);
    } catch (const soundnet::shape_error& e) {
      throw soundnet::io_error(input, e.what());
    }
    const std::string out = a.str("--out");
    auto write = [&](const std::string& name, const std::string& path) {
      auto features = net.output(name);  // (1, C, T)
      xt::xtensor<float, 2> ct = xt::view(features, 0, xt::all(), xt::all());
      soundnet::io::write_npy(path, ct);
    };
    if (a.has("--all-layers")) {
      std::error_code ec;
      std::filesystem::create_directories(out, ec);
      if (ec || !std::filesystem::is_directory(out))
        throw soundnet::io_error(out, "cannot create output directory" + (ec ? ": " + ec.message() : std::string()));
      for (const auto& name : net.output_names()) write(name, (std::filesystem::path(out) / (name + ".npy")).string());
    } else {
      write(layer, out);
    }
    return 0;
  }
};

}  // namespace

int main(int argc, char** argv) {
  try {
    const cli::args a(argc, argv, {"--arch", "--weights", "--input-npy", "--layer", "--out", "--scenes", "--threads"},
                      {"--all-layers"});
    if (a.help()) {
      std::cout << usage;
      return 0;
    }
    if (!a.positional().empty()) throw cli::usage_error("unexpected argument '" + a.positional()[0] + "'");
    if (a.has("--layer") == a.has("--all-layers")) throw cli::usage_error("give exactly one of --layer NAME and --all-layers");
    soundnet::set_num_threads(static_cast<int>(a.integer("--threads", soundnet::num_threads(), 1)));
    return cli::with_architecture(a.str("--arch"), a.integer("--scenes", 401, 1), extract{a});
  } catch (const cli::usage_error& e) {
    std::cerr << "soundnet-extract: " << e.what() << "\n" << usage;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "soundnet-extract: error: " << e.what() << "\n";
    return 1;
  }
}
