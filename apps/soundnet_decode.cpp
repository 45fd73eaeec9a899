// soundnet-decode: audio or video files to SoundNet waveforms (.npy float32, mono, 22,050 Hz,
// scaled by 256), as soundnet-extract and soundnet-train read them.
//
//   soundnet-decode [--start S] [--duration D] --out-dir DIR FILE...
//
// Writes DIR/<file name>.npy for each FILE, as the audio is decoded (memory stays bounded for
// files of any length). A file that cannot be decoded gets one line on stderr naming it and the
// reason; the others are still written; the exit status is 1 if any failed.
#include <soundnet/app/cli.hpp>
#include <soundnet/app/inputs.hpp>
#include <soundnet/media/audio.hpp>

#include <filesystem>
#include <iostream>

int main(int argc, char** argv) {
  soundnet::media::decode_options o;
  std::string out_dir;
  std::vector<std::string> files;
  CLI::App app{"Decodes any audio or video file FFmpeg reads to DIR/<file name>.npy: float32, mono, 22,050 Hz,\n"
               "scaled by 256.",
               "soundnet-decode"};
  app.add_option("--out-dir", out_dir, "the output folder")->required();
  app.add_option("files", files, "audio or video files")->required();
  app.add_option("--start", o.start, "seconds to skip")->check(soundnet::app::number_in(0.0, 1e9));
  app.add_option("--duration", o.duration, "seconds to decode (default: to the end)")->check(soundnet::app::number_in(1e-6, 1e9));
  return soundnet::app::run(app, argc, argv, [&] {
    soundnet::app::make_directory(out_dir);
    long failed = 0;
    for (const auto& file : files) {
      try {
        soundnet::media::audio_reader input(file, o);
        soundnet::io::npy_stream_writer out(
            (std::filesystem::path(out_dir) / (std::filesystem::path(file).filename().string() + ".npy")).string(), 0);
        std::vector<float> piece(1 << 16);
        while (const std::size_t n = input.read(piece.data(), piece.size())) out.append(piece.data(), static_cast<long>(n));
        out.close();
      } catch (const std::exception& e) {
        std::cerr << "soundnet-decode: " << e.what() << "\n";
        ++failed;
      }
    }
    if (failed) std::cerr << "soundnet-decode: " << failed << " of " << files.size() << " files failed\n";
    return failed ? 1 : 0;
  });
}
