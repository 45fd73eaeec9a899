// Bugs planted on purpose, built only in sanitizer builds: each sanitizer job must report its
// bug and fail, which shows that the job is live (a sanitizer that silently did nothing would
// leave the suite green). The bugs sit behind a volatile index so the compiler cannot see them.
#include <soundnet/io.hpp>

#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

volatile int planted_index = 0;

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "heap-buffer-overflow") {  // soundnet's CRC-32 reads one byte past a buffer
    std::vector<char> bytes(64, 'x');
    const auto crc = soundnet::io::detail::crc32(bytes.data(), bytes.size() + 1 + planted_index);
    std::printf("%u\n", crc);
  } else if (mode == "use-after-free") {
    auto* v = new std::vector<float>(16, 1.0f);
    float* p = v->data();
    delete v;
    std::printf("%f\n", p[planted_index]);
  } else if (mode == "signed-overflow") {
    volatile int big = std::numeric_limits<int>::max() - planted_index;
    const int sum = big + 1;
    std::printf("%d\n", sum);
  } else if (mode == "data-race") {
    long counter = 0;
    std::thread a([&] { for (int i = 0; i < 100000; ++i) ++counter; });
    std::thread b([&] { for (int i = 0; i < 100000; ++i) ++counter; });
    a.join(), b.join();
    std::printf("%ld\n", counter);
  } else {
    std::fprintf(stderr, "usage: planted_bugs heap-buffer-overflow|use-after-free|signed-overflow|data-race\n");
    return 2;
  }
  return 0;
}
