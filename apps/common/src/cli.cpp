#include <soundnet/app/cli.hpp>

#include <iostream>

namespace soundnet::app {

int run(CLI::App& app, int argc, char** argv, const std::function<int()>& body) {
  const std::string name = app.get_name();
  try {
    try {
      app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
      std::cout << app.help();
      return 0;
    } catch (const CLI::ParseError& e) {
      throw usage_error(e.what());
    }
    return body();
  } catch (const usage_error& e) {
    std::cerr << name << ": " << e.what() << "\n" << app.help();
    return 2;
  } catch (const std::exception& e) {
    std::cerr << name << ": error: " << e.what() << "\n";
    return 1;
  }
}

CLI::Validator integer_at_least(long min) {
  return CLI::Validator(
      [min](std::string& text) -> std::string {
        std::size_t used = 0;
        long v = 0;
        try {
          v = std::stol(text, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (text.empty() || used != text.size()) return "needs an integer, got '" + text + "'";
        if (v < min) return "must be at least " + std::to_string(min) + ", got " + text;
        return "";
      },
      "INTEGER >= " + std::to_string(min));
}

CLI::Validator number_in(double lo, double hi) {
  return CLI::Validator(
      [lo, hi](std::string& text) -> std::string {
        std::size_t used = 0;
        double v = 0;
        try {
          v = std::stod(text, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (text.empty() || used != text.size()) return "needs a number, got '" + text + "'";
        if (!(v >= lo && v <= hi)) return "must be between " + CLI::detail::to_string(lo) + " and " +
                                          CLI::detail::to_string(hi) + ", got " + text;
        return "";
      },
      "NUMBER in [" + CLI::detail::to_string(lo) + ", " + CLI::detail::to_string(hi) + "]");
}

void add_threads_option(CLI::App& app, int& threads) {
  app.add_option("--threads", threads, "CPU threads (default: all; results do not depend on it)")
      ->check(integer_at_least(1));
}

void add_device_option(CLI::App& app, std::string& device) {
  app.add_option("--device", device,
                 std::string("the device the network runs on: cpu, or cuda (a GPU; ") +
                     (soundnet::cuda::compiled_in ? "this build has the CUDA device" : "not in this build") + ")")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda"}));
}

void add_math_option(CLI::App& app, std::string& math) {
  app.add_option("--math", math,
                 "with --device cuda, the precision of the convolutions' matrix products: strict (float32), tf32 or "
                 "bf16 (tensor cores; storage, sums and weights stay float32)")
      ->capture_default_str()
      ->check(CLI::IsMember({"strict", "tf32", "bf16"}));
}

void check_math(const std::string& device, const std::string& math) {
  if (math != "strict" && device != "cuda")
    throw usage_error("--math " + math + " sets a GPU's matrix products: it needs --device cuda (the CPU computes in "
                      "float32)");
}

void apply_threads(int threads) {
  if (threads > 0) soundnet::set_num_threads(threads);
}

void add_architecture_options(CLI::App& app, std::string& arch, int& scenes) {
  app.add_option("--arch", arch, "soundnet8 or soundnet5")->required();
  app.add_option("--scenes", scenes, "classes of the scene head: 401 (Places2, the paper) or 365 (Places365)")
      ->capture_default_str();
}

}  // namespace soundnet::app
