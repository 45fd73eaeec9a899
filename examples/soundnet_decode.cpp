// soundnet-decode: audio or video files to SoundNet waveforms (.npy float32, mono, 22,050 Hz,
// scaled by 256), as soundnet-extract and soundnet-train read them.
//
//   soundnet-decode [--start S] [--duration D] --out-dir DIR FILE...
//
// Writes DIR/<file name>.npy for each FILE, as the audio is decoded (memory stays bounded for
// files of any length). A file that cannot be decoded gets one line on
// stderr naming it and the reason; the others are still written; the exit status is 1 if any
// failed.
#include <filesystem>
#include <iostream>

#include "audio/decode.hpp"
#include "cli.hpp"

namespace {
const char* usage =
    "usage: soundnet-decode [--start S] [--duration D] --out-dir DIR FILE...\n"
    "  decodes any audio or video file FFmpeg reads to DIR/<file name>.npy: float32, mono, 22,050 Hz,\n"
    "  scaled by 256\n";
}

int main(int argc, char** argv) {
  try {
    const cli::args a(argc, argv, {"--start", "--duration", "--out-dir"}, {});
    if (a.help()) {
      std::cout << usage;
      return 0;
    }
    if (a.positional().empty()) throw cli::usage_error("no input files");
    audio::decode_options o;
    o.start = a.real("--start", 0.0);
    o.duration = a.real("--duration", -1.0);
    if (o.start < 0) throw cli::usage_error("--start must not be negative");
    if (a.has("--duration") && !(o.duration > 0)) throw cli::usage_error("--duration must be positive");
    const std::filesystem::path dir = a.str("--out-dir");
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (!std::filesystem::is_directory(dir)) throw soundnet::io_error(dir.string(), "cannot create output directory");
    long failed = 0;
    for (const auto& file : a.positional()) {
      try {
        audio::reader input(file, o);
        soundnet::io::npy_stream_writer out((dir / (std::filesystem::path(file).filename().string() + ".npy")).string(), 0);
        std::vector<float> piece(1 << 16);
        while (const std::size_t n = input.read(piece.data(), piece.size())) out.append(piece.data(), static_cast<long>(n));
        out.close();
      } catch (const std::exception& e) {
        std::cerr << "soundnet-decode: " << e.what() << "\n";
        ++failed;
      }
    }
    if (failed) std::cerr << "soundnet-decode: " << failed << " of " << a.positional().size() << " files failed\n";
    return failed ? 1 : 0;
  } catch (const cli::usage_error& e) {
    std::cerr << "soundnet-decode: " << e.what() << "\n" << usage;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "soundnet-decode: error: " << e.what() << "\n";
    return 1;
  }
}
