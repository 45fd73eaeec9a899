// soundnet's file formats without the networks: .npy arrays (a strict reader, a writer and a
// writer whose last axis grows block by block) and safetensors files. Needs xtensor and
// nlohmann-json only: no Eigen, no OpenMP (CMake target soundnet::io).
//
//   #include <soundnet/io.hpp>
//   auto features = soundnet::io::read_npy<float>("pool5.npy");
//   auto file = soundnet::io::read_safetensors("soundnet8.safetensors");
//
// Loading weights into a model (io/weights.hpp) comes with <soundnet/soundnet.hpp>.
#pragma once

#define SOUNDNET_INSIDE_IO

#include "version.hpp"
#include "core/audio.hpp"
#include "core/error.hpp"
#include "io/npy.hpp"
#include "io/safetensors.hpp"
#include "io/json.hpp"

#undef SOUNDNET_INSIDE_IO
