// The command-line programs' shared frame: CLI11 parsing, exit codes, architecture dispatch.
//
// Exit codes of every program: 0 success; 1 an input or run failed (the message names the file
// and the problem); 2 a usage error (the message and the usage on stderr).
#pragma once

#include <soundnet/soundnet.hpp>

#include <CLI/CLI.hpp>
#include <functional>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace soundnet::app {

/// A command-line usage error: the program prints it with its usage and exits with 2.
struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Parses argv with `app` and runs `body`; returns the program's exit status. Usage errors
/// (CLI11's, or usage_error thrown by body) print "<name>: <message>" and the help, and give 2;
/// any other exception prints "<name>: error: <message>" and gives 1.
int run(CLI::App& app, int argc, char** argv, const std::function<int()>& body);

/// Adds --threads N (CPU threads; default: all) and applies it before the body runs.
void add_threads_option(CLI::App& app, int& threads);
/// Applies --threads (0: leave the default).
void apply_threads(int threads);

/// Adds --arch soundnet8|soundnet5 (required) and --scenes 401|365 (default 401).
void add_architecture_options(CLI::App& app, std::string& arch, int& scenes);

/// Calls f.template operator()<Net>() for the network named by --arch and --scenes:
/// soundnet8 and soundnet5, each with 1000 object classes and 401 (Places2, as in the paper)
/// or 365 (Places365) scene classes, or 0: one head (one teacher).
template <class F>
int with_architecture(const std::string& arch, int scenes, F&& f) {
  if (scenes != 401 && scenes != 365 && scenes != 0)
    throw usage_error("--scenes must be 401 or 365, got " + std::to_string(scenes));
  if (arch == "soundnet8")
    return scenes == 401   ? f.template operator()<soundnet8<1000, 401>>()
           : scenes == 365 ? f.template operator()<soundnet8<1000, 365>>()
                           : f.template operator()<soundnet8<1000, 0>>();
  if (arch == "soundnet5")
    return scenes == 401   ? f.template operator()<soundnet5<1000, 401>>()
           : scenes == 365 ? f.template operator()<soundnet5<1000, 365>>()
                           : f.template operator()<soundnet5<1000, 0>>();
  throw usage_error("--arch must be soundnet8 or soundnet5, got '" + arch + "'");
}

/// Adds --device cpu|cuda (default cpu): the device the network runs on.
void add_device_option(CLI::App& app, std::string& device);

/// Adds --math strict|tf32|bf16 (default strict): the precision of a GPU's matrix products
/// (cuda::math; --device cuda only).
void add_math_option(CLI::App& app, std::string& math);
/// A usage error for --math other than strict without --device cuda.
void check_math(const std::string& device, const std::string& math);
/// Sets a GPU model's matrix-product precision from --math; nothing on the CPU (check_math
/// refuses anything but strict there).
template <class Model>
void apply_math(Model& net, const std::string& math) {
  using device = typename Model::device;
  if constexpr (!std::is_same_v<device, soundnet::cpu>)
    net.context().set_math(math == "tf32"   ? device::math::tf32
                           : math == "bf16" ? device::math::bf16
                                            : device::math::strict_float32);
  (void)net, (void)math;
}

/// Calls f.template operator()<Device>() for the device named by --device. "cuda" in a build
/// without the CUDA device is a usage error saying so; on a machine without a usable GPU, a
/// soundnet::error with the driver's reason. The CPU is never used in the GPU's place.
template <class F>
int with_device(const std::string& device, F&& f) {
  if (device == "cpu") return f.template operator()<soundnet::cpu>();
  if (device != "cuda") throw usage_error("--device must be cpu or cuda, got '" + device + "'");
  if constexpr (soundnet::cuda::compiled_in) {
    if (soundnet::cuda::device_count() == 0)
      throw soundnet::error("--device cuda: " + soundnet::cuda::unavailable_reason() + "; use --device cpu here");
    return f.template operator()<soundnet::cuda>();
  } else {
    throw usage_error("--device cuda: " + soundnet::cuda::unavailable_reason());
  }
}

namespace detail {
template <class F, class Device>
struct network_on {
  F& f;
  template <class Net>
  int operator()() const {
    return f.template operator()<Net, Device>();
  }
};
template <class F>
struct architecture_then {
  F& f;
  const std::string& arch;
  int scenes;
  template <class Device>
  int operator()() const {
    return with_architecture(arch, scenes, network_on<F, Device>{f});
  }
};
}  // namespace detail

/// with_device, then with_architecture: calls f.template operator()<Net, Device>().
template <class F>
int with_architecture_on(const std::string& device, const std::string& arch, int scenes, F&& f) {
  return with_device(device, detail::architecture_then<std::remove_reference_t<F>>{f, arch, scenes});
}

/// Validators with plain messages ("--top: must be at least 1, got 0").
CLI::Validator integer_at_least(long min);
CLI::Validator number_in(double lo, double hi);

/// True when `option` was given on the command line.
inline bool given(const CLI::App& app, const std::string& option) { return app.count(option) > 0; }

}  // namespace soundnet::app
