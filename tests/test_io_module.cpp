// <soundnet/io.hpp> on its own (CMake target soundnet::io): npy and safetensors without the
// networks, Eigen or OpenMP.
#define BOOST_TEST_MODULE io_module
#include <boost/test/unit_test.hpp>

#include <soundnet/io.hpp>

#if defined(EIGEN_WORLD_VERSION) || defined(SOUNDNET_INSIDE_SOUNDNET)
#error "soundnet/io.hpp pulled in Eigen or the rest of the library"
#endif
#ifdef _OPENMP
#error "soundnet::io must build without OpenMP"
#endif

#include <filesystem>

BOOST_AUTO_TEST_CASE(npy_and_safetensors_without_the_library) {
  const auto dir = std::filesystem::path(SOUNDNET_TEST_DATA_DIR);
  std::filesystem::create_directories(dir);
  xt::xtensor<float, 2> a = {{1, 2, 3}, {4, 5, 6}};
  soundnet::io::write_npy((dir / "module.npy").string(), a);
  const auto back = soundnet::io::read_npy<float>((dir / "module.npy").string());
  BOOST_TEST(back(1, 2) == 6.0f);
  soundnet::io::write_safetensors((dir / "module.safetensors").string(), {{"w", {2}, {1.5f, -2.0f}}}, {{"k", "v"}});
  const auto file = soundnet::io::read_safetensors((dir / "module.safetensors").string());
  BOOST_TEST(file.values<float>("w")[1] == -2.0f);
  BOOST_TEST(file.metadata.at("k") == "v");
  BOOST_TEST(soundnet::audio_format::sample_rate == 22050);
}
