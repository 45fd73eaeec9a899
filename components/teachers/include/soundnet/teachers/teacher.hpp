// soundnet::teachers — pretrained vision networks exported to ONNX, run with OpenCV's DNN
// module, each described by a JSON preprocessing spec (the format of docs/teachers.md):
//
//   auto t = soundnet::teachers::teacher::load("imagenet_squeezenet1.1.json");
//   std::vector<float> p = t.classify({{width, height, bgr_pixels}});   // (images x classes)
//
// A compiled component (CMake target soundnet::teachers, built where OpenCV's DNN module is
// found; option SOUNDNET_WITH_OPENCV): this header names no OpenCV type.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace soundnet::teachers {

/// A teacher's preprocessing spec (the JSON file; paths in it are relative to it).
struct spec {
  std::string name;          // "name" in the JSON, else the file name without .json
  std::string model;         // the ONNX file
  std::string input = "image", output = "prob";
  int input_width = 0, input_height = 0;    // the network's input
  int resize_width = 0, resize_height = 0;  // the image is first resized (squashed) to this
  int crop_x = 0, crop_y = 0;               // then cropped to the input size from here
  bool bgr = true;                          // channel order the network wants
  float mean[3] = {0, 0, 0};                // per channel, in the network's channel order
  std::vector<float> mean_image;            // or a mean image (3 x input_height x input_width)
  float scale = 1;                          // x = (pixel - mean) * scale
  bool output_is_softmax = true;            // else a softmax is applied to the output
  int classes = 0;
  std::vector<std::string> labels;          // one per class (the labels file's lines)

  /// Reads and checks a spec; throws soundnet::io_error naming the file and the problem. The
  /// files it names (model, labels, mean image) must lie in its folder or below unless
  /// `allow_outside_paths`: an absolute path or a ".." is refused.
  static spec load(const std::string& json_path, bool allow_outside_paths = false);
};

/// An 8-bit BGR image: `height` rows of `width` pixels, 3 bytes each, rows packed.
struct image_view {
  int width = 0, height = 0;
  const std::uint8_t* bgr = nullptr;
};

/// One teacher, ready to classify. Not thread-safe: one per thread, or calls in turn.
class teacher {
 public:
  static teacher load(const std::string& json_path, bool allow_outside_paths = false);
  explicit teacher(spec s);
  ~teacher();
  teacher(teacher&&) noexcept;
  teacher& operator=(teacher&&) noexcept;

  const spec& info() const;
  /// The network's input for one image, after the spec's resize (OpenCV INTER_AREA), crop,
  /// channel order, mean and scale: 3 x input_height x input_width floats.
  std::vector<float> preprocess(const image_view& img) const;
  /// Softmax posteriors for a batch of images, row by row: images.size() x classes floats.
  std::vector<float> classify(const std::vector<image_view>& images);

 private:
  struct state;
  std::unique_ptr<state> s_;
};

/// Threads OpenCV uses inside each forward (process-wide): n > 0, or its default for n <= 0.
/// A program that runs several teachers at once in its own threads sets 1.
void set_threads(int n);

/// The OpenCV version this component was built with.
std::string opencv_version();

}  // namespace soundnet::teachers
