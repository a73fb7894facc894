// dyt-bench-checkpoint [N] [RANKS] [DIR]: what a rank of another layout pays
// to load its block of a sharded checkpoint. RANKS ranks save the rows of
// an N × N fp32 tensor (a column-parallel layout); then a reader takes
// (a) a block of N/RANKS whole rows (one file's piece: the same cut) and
// (b) a block of N/RANKS columns (a row-parallel block: a strided run in
// every row of every file), each through a fresh mapping. Prints the times
// and this process's resident memory after each read, split into anonymous
// memory (the block itself) and mapped file pages (page cache: clean,
// shared, reclaimable), from /proc/self/statm. docs/checkpoints.md.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"

namespace {

using Clock = std::chrono::steady_clock;
namespace ck = dyt::checkpoint;

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Resident anonymous and file-backed MiB (statm: resident, shared pages).
std::pair<double, double> rss_mib() {
  std::ifstream f("/proc/self/statm");
  long size = 0, resident = 0, shared = 0;
  f >> size >> resident >> shared;
  const double page = static_cast<double>(::sysconf(_SC_PAGESIZE)) / (1 << 20);
  return {(resident - shared) * page, shared * page};
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t n = argc > 1 ? std::atoll(argv[1]) : 8192;
  const int ranks = argc > 2 ? std::atoi(argv[2]) : 4;
  const std::string root = argc > 3 ? argv[3] : (std::filesystem::temp_directory_path() / "dyt_bench_checkpoint").string();
  if (n <= 0 || ranks <= 0 || n % ranks != 0) {
    std::fprintf(stderr, "usage: dyt-bench-checkpoint [N] [RANKS] [DIR], RANKS dividing N\n");
    return 2;
  }
  const int64_t rows = n / ranks;
  std::filesystem::remove_all(root);
  auto t = Clock::now();
  ck::begin_save(root, 1, 1);
  for (int r = 0; r < ranks; ++r) {
    std::vector<float> block(static_cast<size_t>(rows * n));
    for (size_t i = 0; i < block.size(); ++i) block[i] = static_cast<float>(i % 977) + static_cast<float>(r);
    ck::write_rank_file(root, 1, r, {{"w", {{r * rows, 0}, {rows, n}}, block.data()}});
  }
  ck::commit_save(root, {1, 1, 0, 0}, "", {{"w", {n, n}}}, ranks, 1);
  const double save_s = since(t);
  const double mib = static_cast<double>(n * n) * 4 / (1 << 20);
  std::printf("saved [%lld, %lld] fp32 (%.0f MiB) as %d rank files in %.2f s (fsync included)\n",
              static_cast<long long>(n), static_cast<long long>(n), mib, ranks, save_s);
  for (const bool by_rows : {true, false}) {
    const auto [anon0, file0] = rss_mib();
    t = Clock::now();
    const ck::Checkpoint c = ck::load_checkpoint(root + "/step-00000001");
    const double open_s = since(t);
    std::vector<float> out(static_cast<size_t>(rows * n));
    t = Clock::now();
    if (by_rows) c.read("w", {{rows, 0}, {rows, n}}, out.data());
    else c.read("w", {{0, rows}, {n, rows}}, out.data());
    const double read_s = since(t);
    const auto [anon1, file1] = rss_mib();
    std::printf("%-28s open %.3f s, read %.3f s (%.0f MiB): resident +%.0f MiB anonymous, +%.0f MiB mapped file pages\n",
                by_rows ? "rows (one file's piece):" : "columns (strided, all files):", open_s, read_s, mib / ranks,
                anon1 - anon0, file1 - file0);
  }
  std::filesystem::remove_all(root);
  return 0;
}
