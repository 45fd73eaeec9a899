// Shared helpers of the example programs: strict flag parsing and architecture dispatch.
#pragma once

#include <soundnet/soundnet.hpp>
#include <xtensor/xview.hpp>

#include <cstdlib>
#include <iostream>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace cli {

/// A command-line usage error: the program prints it with its usage and exits with 2.
struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Parses --flag value and --switch arguments against the known ones.
class args {
 public:
  args(int argc, char** argv, const std::set<std::string>& with_value, const std::set<std::string>& switches) {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "-h" || a == "--help") {
        help_ = true;
        continue;
      }
      if (switches.count(a)) {
        values_[a] = "1";
      } else if (with_value.count(a)) {
        if (i + 1 >= argc) throw usage_error(a + " needs a value");
        values_[a] = argv[++i];
      } else if (a.rfind("--", 0) == 0) {
        throw usage_error("unknown option " + a);
      } else {
        positional_.push_back(a);
      }
    }
  }

  bool help() const { return help_; }
  bool has(const std::string& k) const { return values_.count(k) > 0; }
  const std::vector<std::string>& positional() const { return positional_; }

  std::string str(const std::string& k) const {
    const auto it = values_.find(k);
    if (it == values_.end()) throw usage_error("missing required option " + k);
    return it->second;
  }
  std::string str(const std::string& k, const std::string& fallback) const { return has(k) ? str(k) : fallback; }

  long integer(const std::string& k, long fallback, long min_value) const {
    if (!has(k)) return fallback;
    const std::string s = str(k);
    std::size_t used = 0;
    long v = 0;
    try {
      v = std::stol(s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != s.size() || s.empty()) throw usage_error(k + " needs an integer, got '" + s + "'");
    if (v < min_value) throw usage_error(k + " must be at least " + std::to_string(min_value) + ", got " + s);
    return v;
  }

  double real(const std::string& k, double fallback) const {
    if (!has(k)) return fallback;
    const std::string s = str(k);
    std::size_t used = 0;
    double v = 0;
    try {
      v = std::stod(s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != s.size() || s.empty()) throw usage_error(k + " needs a number, got '" + s + "'");
    return v;
  }

 private:
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
  bool help_ = false;
};

/// Calls f.template operator()<Net>() for the network named by --arch and --scenes.
/// Supported: soundnet8 and soundnet5, each with 1000 object classes and 401 (Places2, as in
/// the paper) or 365 (Places365) scene classes.
template <class F>
int with_architecture(const std::string& arch, long scenes, F&& f) {
  if (scenes != 401 && scenes != 365) throw usage_error("--scenes must be 401 or 365, got " + std::to_string(scenes));
  if (arch == "soundnet8") {
    return scenes == 401 ? f.template operator()<soundnet::soundnet8<1000, 401>>()
                         : f.template operator()<soundnet::soundnet8<1000, 365>>();
  }
  if (arch == "soundnet5") {
    return scenes == 401 ? f.template operator()<soundnet::soundnet5<1000, 401>>()
                         : f.template operator()<soundnet::soundnet5<1000, 365>>();
  }
  throw usage_error("--arch must be soundnet8 or soundnet5, got '" + arch + "'");
}

/// Reads a waveform .npy (float32 or float64; shape (samples,) or (1, samples)).
inline std::vector<float> read_waveform(const std::string& path) {
  const auto a = soundnet::io::read_npy<float>(path);
  const bool ok = a.dimension() == 1 || (a.dimension() == 2 && a.shape(0) == 1);
  if (!ok) {
    std::string s;
    for (auto d : a.shape()) s += (s.empty() ? "" : ", ") + std::to_string(d);
    throw soundnet::io_error(path, "a waveform must have shape (samples,) or (1, samples); got (" + s + ")");
  }
  if (a.size() == 0) throw soundnet::io_error(path, "the waveform is empty");
  return std::vector<float>(a.data(), a.data() + a.size());
}

/// Repeats a clip circularly until it has at least `samples` samples (the authors' evaluation
/// repeats short clips to 10 s this way).
inline void tile_circularly(std::vector<float>& wave, long samples) {
  const std::size_t n = wave.size();
  if (n == 0 || static_cast<long>(n) >= samples) return;
  wave.resize(static_cast<std::size_t>(samples));
  for (std::size_t i = n; i < wave.size(); ++i) wave[i] = wave[i % n];
}

}  // namespace cli
