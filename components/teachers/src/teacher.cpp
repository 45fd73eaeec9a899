// soundnet::teachers: ONNX vision teachers through OpenCV's DNN module (OpenCV 4.6).
#include <soundnet/teachers/teacher.hpp>

#include <soundnet/core/error.hpp>
#include <soundnet/io.hpp>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/dnn.hpp>
#include <opencv2/imgproc.hpp>

#include <cmath>
#include <fstream>
#include <sstream>

namespace soundnet::teachers {

namespace {

std::string directory_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash + 1);
}

std::string stem_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  if (name.size() > 5 && name.compare(name.size() - 5, 5, ".json") == 0) name.resize(name.size() - 5);
  return name;
}

// [width, height] (as PIL's Image.resize takes it); a square size may be one number.
void size_field(const nlohmann::json& j, const char* key, int& w, int& h, const std::string& path) {
  const auto& v = j.at(key);
  if (v.is_number_integer()) {
    w = h = io::detail::json_integer<int>(v, path, key);
  } else if (v.is_array() && v.size() == 2) {
    w = io::detail::json_integer<int>(v[0], path, key);
    h = io::detail::json_integer<int>(v[1], path, key);
  } else {
    throw io_error(path, std::string("'") + key + "' must be [width, height]");
  }
  if (w <= 0 || h <= 0) throw io_error(path, std::string("'") + key + "' must be positive");
}

}  // namespace

spec spec::load(const std::string& path, bool allow_outside_paths) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw io_error(path, "cannot open the teacher spec");
  std::ostringstream text;
  text << in.rdbuf();
  spec s;
  const std::string dir = directory_of(path);
  try {
    const auto j = nlohmann::json::parse(text.str());
    s.name = j.value("name", stem_of(path));
    s.model = io::detail::inside_folder(dir, j.at("model").get<std::string>(), path, allow_outside_paths);
    s.input = j.value("input", s.input);
    s.output = j.value("output", s.output);
    if (const auto layout = j.value("layout", std::string("NCHW")); layout != "NCHW")
      throw io_error(path, "layout " + layout + " is not supported (NCHW only)");
    size_field(j, "input_size", s.input_width, s.input_height, path);
    if (j.contains("resize") && !j["resize"].is_null()) size_field(j, "resize", s.resize_width, s.resize_height, path);
    else s.resize_width = s.input_width, s.resize_height = s.input_height;
    if (j.contains("crop") && !j["crop"].is_null()) {
      const auto& c = j["crop"];
      int cw = 0, ch = 0;
      size_field(c, "size", cw, ch, path);
      if (cw != s.input_width || ch != s.input_height) throw io_error(path, "the crop size must equal input_size");
      if (c.contains("offset_yx")) {
        s.crop_y = io::detail::json_integer<int>(c["offset_yx"].at(0), path, "crop.offset_yx");
        s.crop_x = io::detail::json_integer<int>(c["offset_yx"].at(1), path, "crop.offset_yx");
      } else {  // centred
        s.crop_y = (s.resize_height - ch) / 2, s.crop_x = (s.resize_width - cw) / 2;
      }
    } else if (s.resize_width != s.input_width || s.resize_height != s.input_height) {
      throw io_error(path, "resize differs from input_size but no crop is given");
    }
    if (s.crop_x < 0 || s.crop_y < 0 || s.crop_x + s.input_width > s.resize_width ||
        s.crop_y + s.input_height > s.resize_height)
      throw io_error(path, "the crop does not fit in the resized image");
    const std::string order = j.value("channel_order", std::string("BGR"));
    if (order != "BGR" && order != "RGB") throw io_error(path, "channel_order must be BGR or RGB, not " + order);
    s.bgr = order == "BGR";
    if (j.contains("mean") && !j["mean"].is_null()) {
      const auto m = j["mean"].get<std::vector<float>>();
      if (m.size() != 3) throw io_error(path, "'mean' must have 3 values (in channel_order)");
      for (int c = 0; c < 3; ++c) s.mean[c] = m[static_cast<std::size_t>(c)];
    }
    if (j.contains("mean_image") && !j["mean_image"].is_null()) {
      const std::string file = io::detail::inside_folder(dir, j["mean_image"].get<std::string>(), path, allow_outside_paths);
      const auto m = io::read_npy<float>(file);
      if (m.dimension() != 3 || m.shape()[0] != 3 || long(m.shape()[1]) != s.input_height ||
          long(m.shape()[2]) != s.input_width)
        throw io_error(file, "the mean image must be [3, " + std::to_string(s.input_height) + ", " +
                                 std::to_string(s.input_width) + "] (channel_order, after the crop)");
      s.mean_image.assign(m.begin(), m.end());
    }
    s.scale = j.value("scale", 1.0f);
    s.output_is_softmax = j.value("output_is_softmax", true);
    s.classes = io::detail::json_integer<int>(j.at("classes"), path, "classes");
    if (s.classes <= 0) throw io_error(path, "'classes' must be positive");
    if (j.contains("labels") && !j["labels"].is_null()) {
      const std::string file = io::detail::inside_folder(dir, j["labels"].get<std::string>(), path, allow_outside_paths);
      std::ifstream lf(file);
      if (!lf) throw io_error(file, "cannot open the teacher's labels");
      for (std::string line; std::getline(lf, line);)
        if (!line.empty()) s.labels.push_back(line);
      if (static_cast<int>(s.labels.size()) != s.classes)
        throw io_error(file, "has " + std::to_string(s.labels.size()) + " labels; the spec says " +
                                 std::to_string(s.classes) + " classes");
    }
  } catch (const nlohmann::json::exception& e) {
    throw io_error(path, std::string("malformed teacher spec: ") + e.what());
  } catch (const io_error&) {
    throw;
  }
  return s;
}

struct teacher::state {
  spec s;
  cv::dnn::Net net;
};

teacher teacher::load(const std::string& json_path, bool allow_outside_paths) {
  return teacher(spec::load(json_path, allow_outside_paths));
}

teacher::teacher(spec s) : s_(std::make_unique<state>()) {
  cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_ERROR);
  s_->s = std::move(s);
  try {
    s_->net = cv::dnn::readNetFromONNX(s_->s.model);
  } catch (const cv::Exception& e) {
    throw io_error(s_->s.model, std::string("OpenCV cannot read this ONNX model: ") + e.err);
  }
  if (s_->net.empty()) throw io_error(s_->s.model, "OpenCV read an empty network");
  s_->net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
  s_->net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
}

teacher::~teacher() = default;
teacher::teacher(teacher&&) noexcept = default;
teacher& teacher::operator=(teacher&&) noexcept = default;

const spec& teacher::info() const { return s_->s; }

std::vector<float> teacher::preprocess(const image_view& img) const {
  const spec& s = s_->s;
  if (img.width <= 0 || img.height <= 0 || !img.bgr) throw error("teacher " + s.name + ": an empty image");
  const cv::Mat src(img.height, img.width, CV_8UC3, const_cast<std::uint8_t*>(img.bgr));
  cv::Mat resized;
  cv::resize(src, resized, cv::Size(s.resize_width, s.resize_height), 0, 0, cv::INTER_AREA);
  const long hw = long(s.input_width) * s.input_height;
  std::vector<float> x(static_cast<std::size_t>(3 * hw));
  for (int y = 0; y < s.input_height; ++y) {
    const std::uint8_t* row = resized.ptr<std::uint8_t>(s.crop_y + y) + 3 * s.crop_x;
    for (int xx = 0; xx < s.input_width; ++xx)
      for (int c = 0; c < 3; ++c) {  // c: the network's channel; BGR pixels
        const int from = s.bgr ? c : 2 - c;
        const long at = c * hw + long(y) * s.input_width + xx;
        const float mean = s.mean_image.empty() ? s.mean[c] : s.mean_image[static_cast<std::size_t>(at)];
        x[static_cast<std::size_t>(at)] = (static_cast<float>(row[3 * xx + from]) - mean) * s.scale;
      }
  }
  return x;
}

std::vector<float> teacher::classify(const std::vector<image_view>& images) {
  const spec& s = s_->s;
  if (images.empty()) return {};
  const int n = static_cast<int>(images.size());
  const int sizes[4] = {n, 3, s.input_height, s.input_width};
  cv::Mat blob(4, sizes, CV_32F);
  const std::size_t per = static_cast<std::size_t>(3) * s.input_height * s.input_width;
  for (int i = 0; i < n; ++i) {
    const auto x = preprocess(images[static_cast<std::size_t>(i)]);
    std::copy(x.begin(), x.end(), blob.ptr<float>() + static_cast<std::size_t>(i) * per);
  }
  cv::Mat out;
  try {
    s_->net.setInput(blob, s.input);
    out = s_->net.forward(s.output);
  } catch (const cv::Exception& e) {
    throw io_error(s.model, std::string("the forward pass failed: ") + e.err);
  }
  if (out.total() != static_cast<std::size_t>(n) * static_cast<std::size_t>(s.classes))
    throw io_error(s.model, "gives " + std::to_string(out.total() / std::max(1, n)) + " values per image; the spec says " +
                                std::to_string(s.classes) + " classes");
  cv::Mat flat = out.reshape(1, 1);
  if (flat.type() != CV_32F) flat.convertTo(flat, CV_32F);
  std::vector<float> p(flat.ptr<float>(), flat.ptr<float>() + flat.total());
  for (int i = 0; i < n; ++i) {
    float* row = p.data() + static_cast<std::size_t>(i) * s.classes;
    if (!s.output_is_softmax) {
      float m = row[0];
      for (int k = 1; k < s.classes; ++k) m = std::max(m, row[k]);
      double z = 0;
      for (int k = 0; k < s.classes; ++k) z += std::exp(double(row[k] - m));
      for (int k = 0; k < s.classes; ++k) row[k] = static_cast<float>(std::exp(double(row[k] - m)) / z);
    }
    for (int k = 0; k < s.classes; ++k)
      if (!std::isfinite(row[k])) throw io_error(s.model, "gave a non-finite posterior");
  }
  return p;
}

void set_threads(int n) { cv::setNumThreads(n > 0 ? n : -1); }

std::string opencv_version() { return CV_VERSION; }

}  // namespace soundnet::teachers
