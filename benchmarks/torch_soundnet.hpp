// The peer: SoundNet-8/5 in LibTorch (torch::nn), with the same layers and shapes as soundnet.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace peer {

struct block_spec {
  int out, kernel, stride, padding, pool;  // pool 0: none
};

inline std::vector<block_spec> blocks(const std::string& arch) {
  if (arch == "soundnet8")
    return {{16, 64, 2, 32, 8}, {32, 32, 2, 16, 8}, {64, 16, 2, 8, 0},  {128, 8, 2, 4, 0},
            {256, 4, 2, 2, 4},  {512, 4, 2, 2, 0},  {1024, 4, 2, 2, 0}, {-1, 8, 2, 0, 0}};
  return {{32, 64, 2, 32, 8}, {64, 32, 2, 16, 8}, {128, 16, 2, 8, 8}, {256, 8, 2, 4, 0}, {-1, 16, 12, 4, 0}};
}

struct SoundNetImpl : torch::nn::Module {
  std::vector<block_spec> spec;
  std::vector<torch::nn::Conv1d> convs;
  std::vector<torch::nn::BatchNorm1d> bns;
  torch::nn::Conv1d objects{nullptr}, scenes{nullptr};

  explicit SoundNetImpl(const std::string& arch) : spec(blocks(arch)) {
    int c = 1;
    for (std::size_t i = 0; i < spec.size(); ++i) {
      const auto& b = spec[i];
      const auto opts = [&](int out) {
        return torch::nn::Conv1dOptions(c, out, b.kernel).stride(b.stride).padding(b.padding);
      };
      if (b.out < 0) {
        objects = register_module("conv" + std::to_string(i + 1) + "_objects", torch::nn::Conv1d(opts(1000)));
        scenes = register_module("conv" + std::to_string(i + 1) + "_scenes", torch::nn::Conv1d(opts(401)));
        break;
      }
      convs.push_back(register_module("conv" + std::to_string(i + 1), torch::nn::Conv1d(opts(b.out))));
      bns.push_back(register_module("bn" + std::to_string(i + 1), torch::nn::BatchNorm1d(b.out)));
      c = b.out;
    }
  }

  /// Runs block `i` (conv, BN, ReLU, pool) or, for i == blocks, the heads.
  torch::Tensor block(std::size_t i, torch::Tensor x) {
    if (i == convs.size()) return torch::cat({objects(x), scenes(x)}, 1);
    x = torch::relu(bns[i](convs[i](x)));
    if (spec[i].pool) x = torch::max_pool1d(x, spec[i].pool, spec[i].pool);
    return x;
  }

  torch::Tensor forward(torch::Tensor x) {
    for (std::size_t i = 0; i <= convs.size(); ++i) x = block(i, x);
    return x;
  }

  /// The KL loss of soundnet::model::kl_loss: sum over heads of mean over (batch, time).
  torch::Tensor kl_loss(const torch::Tensor& logits, const torch::Tensor& t_obj, const torch::Tensor& t_scn) {
    const auto n = logits.size(0), t = logits.size(2);
    auto lo = torch::log_softmax(logits.narrow(1, 0, 1000), 1);
    auto ls = torch::log_softmax(logits.narrow(1, 1000, 401), 1);
    return (torch::kl_div(lo, t_obj, at::Reduction::Sum) + torch::kl_div(ls, t_scn, at::Reduction::Sum)) / double(n * t);
  }
};
TORCH_MODULE(SoundNet);

}  // namespace peer
