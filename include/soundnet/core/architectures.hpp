// The published networks: SoundNet-8 (Table 1) and SoundNet-5 (Table 2) of Aytar et al. 2016,
// with the numbers of the authors' released code (the paper's tables have typos).
#pragma once

#include "sequential.hpp"

namespace soundnet {

/// SoundNet-8. Objects/Scenes: classes of the two teacher heads (ImageNet 1000, Places2 401).
template <int Objects = 1000, int Scenes = 401>
struct soundnet8 : sequential<                             //   out kernel stride pad
                       conv1d<16, 64, 2, 32>, batch_norm, relu, max_pool1d<8, 8>,  // conv1, pool1
                       conv1d<32, 32, 2, 16>, batch_norm, relu, max_pool1d<8, 8>,  // conv2, pool2
                       conv1d<64, 16, 2, 8>, batch_norm, relu,                     // conv3
                       conv1d<128, 8, 2, 4>, batch_norm, relu,                     // conv4
                       conv1d<256, 4, 2, 2>, batch_norm, relu, max_pool1d<4, 4>,   // conv5, pool5
                       conv1d<512, 4, 2, 2>, batch_norm, relu,                     // conv6
                       conv1d<1024, 4, 2, 2>, batch_norm, relu,                    // conv7
                       two_head_conv1d<Objects, Scenes, 8, 2, 0>> {                // conv8
  static constexpr const char* name = "soundnet8";
};

/// SoundNet-5.
template <int Objects = 1000, int Scenes = 401>
struct soundnet5 : sequential<                             //   out kernel stride pad
                       conv1d<32, 64, 2, 32>, batch_norm, relu, max_pool1d<8, 8>,  // conv1, pool1
                       conv1d<64, 32, 2, 16>, batch_norm, relu, max_pool1d<8, 8>,  // conv2, pool2
                       conv1d<128, 16, 2, 8>, batch_norm, relu, max_pool1d<8, 8>,  // conv3, pool3
                       conv1d<256, 8, 2, 4>, batch_norm, relu,                     // conv4
                       two_head_conv1d<Objects, Scenes, 16, 12, 4>> {              // conv5
  static constexpr const char* name = "soundnet5";
};

}  // namespace soundnet
