// soundnet: SoundNet (Aytar, Vondrick, Torralba, NeurIPS 2016) as a header-only C++ library.
//
//   #include <soundnet/soundnet.hpp>
//
//   soundnet::model<soundnet::soundnet8<>> net;            // CPU, float32, seeded init
//   soundnet::io::load_weights(net, "soundnet8.safetensors");
//   xt::xtensor<float, 3> wave = ...;                      // (N, 1, samples), scaled to [-256, 256]
//   auto pool5 = net.features(wave, "pool5");              // (N, 256, T)
//
//   soundnet::model<soundnet::soundnet8<>, float, soundnet::cuda> gpu;  // with soundnet::cuda
//
// See README.md for the API at a glance and docs/design.md for the architecture.
#pragma once

#define SOUNDNET_INSIDE_SOUNDNET

#include "version.hpp"
#include "core/audio.hpp"
#include "core/error.hpp"
#include "core/layers.hpp"
#include "core/sequential.hpp"
#include "core/architectures.hpp"
#include "core/random.hpp"
#include "backend/device.hpp"
#include "backend/cpu/device.hpp"
#include "backend/cpu/kernels.hpp"
#include "backend/cpu/ops.hpp"
#if defined(SOUNDNET_WITH_CUDA)  // defined by linking soundnet::cuda (components/cuda)
#include <soundnet/backend/cuda/device.hpp>
#else
#include "backend/cuda_unavailable.hpp"
#endif
#include "core/runtime_layers.hpp"
#include "model.hpp"
#include "stream.hpp"
#include "adam.hpp"
#include "io.hpp"
#include "io/weights.hpp"

#undef SOUNDNET_INSIDE_SOUNDNET
