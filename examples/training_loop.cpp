// A training loop on the library API: SoundNet-5 learns to match teacher distributions (here two
// made-up ones: the teachers of soundnet-train come from vision networks) by KL divergence and
// Adam, on random crops of the bundled clip. Prints the loss every 5 steps; saves a checkpoint.
#include <soundnet/soundnet.hpp>

#include <iostream>

int main(int argc, char** argv) try {
  const std::string clip_path = argc > 1 ? argv[1] : SOUNDNET_EXAMPLE_DATA "/esc10-dog-1-100032-A.npy";
  using net_t = soundnet::model<soundnet::soundnet5<>>;  // 1000 object and 401 scene classes
  net_t net(/*seed=*/7);
  soundnet::adam opt(net, {/*lr=*/1e-3, /*beta1=*/0.9});  // the paper's settings

  const auto clip = soundnet::io::read_npy<float>(clip_path);  // (samples,), 22,050 Hz, x256
  const std::size_t batch = 2, crop = net_t::min_input_length() + 4096, steps = net_t::output_length(crop);
  if (clip.size() < crop) throw soundnet::io_error(clip_path, "shorter than one crop");
  xt::xtensor<float, 3> x = xt::empty<float>({batch, std::size_t(1), crop});
  xt::xtensor<float, 3> objects = xt::zeros<float>({batch, std::size_t(1000), steps});  // (N, classes, steps)
  xt::xtensor<float, 3> scenes = xt::zeros<float>({batch, std::size_t(401), steps});
  for (std::size_t i = 0; i < batch; ++i)
    for (std::size_t t = 0; t < steps; ++t) {
      objects(i, 207, t) = 0.7f, objects(i, 208, t) = 0.3f;  // "golden retriever", "Labrador retriever"
      scenes(i, 100 + i, t) = 1.0f;
    }

  soundnet::normal_generator rng(1);
  double first = 0, last = 0;
  for (int step = 1; step <= 30; ++step) {
    for (std::size_t i = 0; i < batch; ++i) {  // a random crop of the clip per row
      const std::size_t start = rng.next() % (clip.size() - crop + 1);
      std::copy(clip.data() + start, clip.data() + start + crop, &x(i, 0, 0));
    }
    net.forward(x, soundnet::mode::training);        // batch statistics
    const double loss = net.kl_loss(objects, scenes);  // mean over batch and steps, summed over heads
    net.zero_grad();
    net.backward();
    opt.step();
    if (step % 5 == 0) std::cout << "step " << step << " loss " << loss << "\n";
    (step == 1 ? first : last) = loss;
  }
  soundnet::io::save_checkpoint(net, opt, "training-loop.ckpt.safetensors");
  std::cout << "checkpoint: training-loop.ckpt.safetensors\n";
  return last < first ? 0 : 1;  // the loss fell (ctest runs this example)
} catch (const std::exception& e) {
  std::cerr << "soundnet-training-loop: error: " << e.what() << "\n";
  return 1;
}
