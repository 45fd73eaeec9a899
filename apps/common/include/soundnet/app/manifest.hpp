// The training manifest of soundnet-train: a CSV with header audio,objects,scenes; each row
// names (relative to the CSV) a waveform .npy (float32, 22,050 Hz, scaled by 256) and the
// teachers' distributions as .npy of shape (T, classes), one row per network output step.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>
#include <xtensor/xarray.hpp>

namespace soundnet::app {

/// Splits one CSV line; fields may be double-quoted ("" is a quote inside quotes).
std::vector<std::string> split_csv(const std::string& line);

/// A row of a dataset's metadata CSV (ESC-50's meta/esc50.csv format).
struct meta_row {
  std::string filename;
  int fold = 0, target = 0;
};

/// Reads a metadata CSV: a header with (at least) the columns filename, fold and target, then
/// one row per clip. Throws io_error naming the file and the row for anything malformed.
std::vector<meta_row> read_meta(const std::string& path);

/// (T, classes) teacher distributions, checked: finite and non-negative. Throws io_error
/// naming the file.
xt::xarray<float> read_targets(const std::string& path, long classes, const char* head);

struct training_clip {
  std::string audio, objects, scenes;
  long samples = 0, target_rows = 0;
};

/// What a manifest must fit: the network's classes and lengths, and the crop (0: whole clips).
struct manifest_rules {
  std::string arch;
  long objects = 0, scenes = 0, min_input_length = 0, crop = 0;
  std::function<long(long)> output_length;  // output steps for an input of n samples
  bool allow_outside_paths = false;         // rows may name files outside the manifest's folder
};

/// Reads and validates the whole manifest before training: every bad row is reported (one
/// line each, naming the file and the problem) in one io_error. Rows name files relative to
/// the manifest, in its folder or below unless rules.allow_outside_paths.
std::vector<training_clip> read_training_manifest(const std::string& path, const manifest_rules& rules);

/// A 64-bit fingerprint (FNV-1a) of a file's bytes, "" when it cannot be read: checkpoints
/// record the manifest's, so that a resumed run on other data is refused.
std::string file_fingerprint(const std::string& path);

}  // namespace soundnet::app
