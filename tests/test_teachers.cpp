// soundnet::teachers against ../shared/teachers/expected_top5.tsv: the two real teachers (ONNX
// + JSON spec) on the test images, preprocessed the way the table's "cv2_area" rows were
// (OpenCV imread, INTER_AREA resize, then the spec), give the same top-5 classes and
// probabilities. Spec errors name the file.
#define BOOST_TEST_MODULE teachers
#include <boost/test/unit_test.hpp>

#include <soundnet/core/error.hpp>
#include <soundnet/teachers/teacher.hpp>

#include <opencv2/imgcodecs.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>

namespace fs = std::filesystem;

namespace {

const std::string shared = SOUNDNET_SHARED_DIR;

struct have_teachers {
  boost::test_tools::assertion_result operator()(boost::unit_test::test_unit_id) const {
    boost::test_tools::assertion_result r(fs::exists(shared + "/teachers/expected_top5.tsv"));
    if (!r) r.message() << "SKIPPED: " << shared << "/teachers is absent (the shared reference data)";
    return r;
  }
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string part; std::getline(ss, part, sep);) out.push_back(part);
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(both_teachers_reproduce_the_expected_top5, *boost::unit_test::precondition(have_teachers())) {
  soundnet::teachers::teacher imagenet = soundnet::teachers::teacher::load(shared + "/teachers/imagenet_squeezenet1.1.json");
  soundnet::teachers::teacher places = soundnet::teachers::teacher::load(shared + "/teachers/places365_squeezenet_bn.json");
  BOOST_TEST(imagenet.info().classes == 1000);
  BOOST_TEST(places.info().classes == 365);
  BOOST_TEST(imagenet.info().labels.size() == 1000u);
  std::ifstream in(shared + "/teachers/expected_top5.tsv");
  std::size_t checked = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#' || line.rfind("image\t", 0) == 0) continue;
    const auto f = split(line, '\t');
    BOOST_REQUIRE(f.size() >= 5u);
    if (f[2] != "cv2_area") continue;  // the PIL rows use another resize
    const auto idx = split(f[3], ','), prob = split(f[4], ',');
    cv::Mat img = cv::imread(shared + "/teachers/test_images/" + f[0], cv::IMREAD_COLOR | cv::IMREAD_IGNORE_ORIENTATION);
    BOOST_REQUIRE(!img.empty());
    BOOST_REQUIRE(img.isContinuous());
    auto& t = f[1] == "imagenet" ? imagenet : places;
    // two images in one batch (the same twice): batching must not change a row
    const soundnet::teachers::image_view view{img.cols, img.rows, img.ptr<std::uint8_t>()};
    const auto p = t.classify({view, view});
    const int c = t.info().classes;
    std::vector<int> order(static_cast<std::size_t>(c));
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + 5, order.end(), [&](int a, int b) { return p[std::size_t(a)] > p[std::size_t(b)]; });
    BOOST_TEST_CONTEXT(f[0] << " " << f[1]) {
      for (int k = 0; k < 5; ++k) {
        BOOST_TEST(order[std::size_t(k)] == std::stoi(idx[std::size_t(k)]));
        // the table prints 6 decimals
        BOOST_TEST(std::abs(p[std::size_t(order[std::size_t(k)])] - std::stod(prob[std::size_t(k)])) < 2e-5);
      }
      for (int k = 0; k < c; ++k) BOOST_TEST(p[std::size_t(k)] == p[std::size_t(c + k)]);
      BOOST_TEST(std::accumulate(p.begin(), p.begin() + c, 0.0) == 1.0, boost::test_tools::tolerance(1e-4));
    }
    ++checked;
  }
  BOOST_TEST(checked >= 10u);  // 5 images x 2 teachers
}

BOOST_AUTO_TEST_CASE(bad_specs_are_reported_with_the_file, *boost::unit_test::precondition(have_teachers())) {
  const auto dir = fs::temp_directory_path() / ("soundnet-test-teachers-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto expect = [&](const std::string& json, const std::string& fragment) {
    const auto path = (dir / "t.json").string();
    std::ofstream(path) << json;
    BOOST_CHECK_EXCEPTION(soundnet::teachers::teacher::load(path), soundnet::io_error, [&](const soundnet::io_error& e) {
      const std::string w = e.what();
      BOOST_TEST_MESSAGE(w);
      return w.find(fragment) != std::string::npos;
    });
  };
  const std::string model = fs::absolute(shared + "/teachers/imagenet_squeezenet1.1.onnx").string();
  expect("{", "malformed teacher spec");
  expect(R"({"model": "missing.onnx", "input_size": [227, 227], "classes": 1000})", "missing.onnx");
  expect(R"({"model": "x.onnx", "input_size": [227, 227], "resize": [200, 200], "crop": {"size": [227, 227]}, "classes": 3})",
         "the crop does not fit");
  expect(R"({"model": "x.onnx", "input_size": [227, 227], "classes": 3, "channel_order": "GBR"})", "channel_order");
  // integers that are not (nlohmann's get<int> would cast 2e27 with undefined behaviour)
  expect(R"({"model": "x.onnx", "input_size": [227, 227], "classes": 2e27})", "'classes' must be an integer, not 2e+27");
  expect(R"({"model": "x.onnx", "input_size": [227.5, 227], "classes": 3})", "'input_size' must be an integer");
  expect(R"({"model": "x.onnx", "input_size": 227, "classes": 3000000000})", "'classes' is out of range: 3000000000");
  expect(R"({"model": "x.onnx", "input_size": [227, 227], "resize": [256, 256], "crop": {"size": 227, "offset_yx": [-9e99, 0]}, "classes": 3})",
         "'crop.offset_yx' must be an integer");
  // files outside the spec's folder are refused unless allowed
  expect(R"({"model": "../m.onnx", "input_size": [227, 227], "classes": 3})", "names '../m.onnx', outside its folder");
  expect(R"({"model": "/etc/m.onnx", "input_size": [227, 227], "classes": 3})", "names '/etc/m.onnx', outside its folder");
  expect(R"({"model": "m.onnx", "input_size": [227, 227], "classes": 3, "labels": "a/../../l.txt"})", "outside its folder");
  {
    const auto path = (dir / "t.json").string();
    std::ofstream(path) << R"({"model": "../elsewhere.onnx", "input_size": [227, 227], "classes": 3})";
    const auto sp = soundnet::teachers::spec::load(path, true);  // allowed: the model is looked for there
    BOOST_TEST(sp.model.find("../elsewhere.onnx") != std::string::npos);
  }
  // a model whose output is not the spec's class count
  fs::copy_file(model, dir / "m.onnx", fs::copy_options::overwrite_existing);
  {
    const auto path = (dir / "t.json").string();
    std::ofstream(path) << R"({"model": "m.onnx", "input_size": [227, 227], "mean": [104, 117, 123], "classes": 10})";
    auto t = soundnet::teachers::teacher::load(path);
    std::vector<std::uint8_t> px(64 * 48 * 3, 100);
    BOOST_CHECK_EXCEPTION(t.classify({{64, 48, px.data()}}), soundnet::io_error, [](const soundnet::io_error& e) {
      return std::string(e.what()).find("1000 values per image; the spec says 10 classes") != std::string::npos;
    });
  }
  fs::remove_all(dir);
}
