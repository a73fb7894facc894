// Run under mpirun -np 3 (CTest trainer_checkpoint.mpi_save): the collective
// save across real processes, agreeing through first_error over MPI:
//  - every rank writes its rows of a [6, 4] tensor and its part of a [5]
//    one; the committed checkpoint holds one file per rank and reads back
//    whole, bit for bit;
//  - rank 1 fails to write (a tensor name the format refuses): every rank
//    throws CheckpointError carrying "rank 1: " and rank 1's message, and
//    none waits; step 2 is not committed, no .tmp is left, step 1 is still
//    the latest.
// Prints PASS on rank 0; every rank exits 1 on any difference.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "parallel/mpi_communicator.h"
#include "trainer/rank_errors.h"

namespace {

namespace ck = dyt::checkpoint;
namespace fs = std::filesystem;

int bad = 0;
void fail(int rank, const std::string& what) {
  ++bad;
  std::fprintf(stderr, "rank %d: %s\n", rank, what.c_str());
}

float value(int tensor, int64_t i) { return static_cast<float>(tensor * 100 + i) * 0.25f - 7.0f; }

}  // namespace

int main(int argc, char** argv) {
  dyt::parallel::MpiSession session(&argc, &argv);
  dyt::parallel::MpiCommunicator comm;
  const int rank = comm.rank(), n = comm.size();
  // One root for the job, named by rank 0's pid (shared through a sum).
  double pid = rank == 0 ? static_cast<double>(::getpid()) : 0.0;
  comm.allreduce_sum(&pid, 1);
  const std::string root = (fs::temp_directory_path() / ("dyt_mpi_save_" + std::to_string(static_cast<long>(pid)))).string();
  const std::vector<ck::TensorShape> tensors = {{"m", {6, 4}}, {"v", {5}}};
  const ck::Agree agree = [&](const std::string& e) { return dyt::trainer::first_error(comm, e); };

  // Rows [2r, 2r+2) of m; v by ranks 0 (3 elements) and 2 (2 elements).
  std::vector<float> rows, part;
  for (int64_t i = 0; i < 8; ++i) rows.push_back(value(0, rank * 8 + i));
  std::vector<ck::PieceRef> pieces = {{"m", {{2 * rank, 0}, {2, 4}}, rows.data()}};
  if (rank != 1) {
    const int64_t b = rank == 0 ? 0 : 3, e = rank == 0 ? 3 : 5;
    for (int64_t i = b; i < e; ++i) part.push_back(value(1, i));
    pieces.push_back({"v", {{b}, {e - b}}, part.data()});
  }
  try {
    const std::string dir = ck::save_checkpoint(root, {1, 1, 0, 0}, "cfg", tensors, pieces, rank, n, 2, agree);
    const ck::Checkpoint c = ck::load_checkpoint(dir);
    if (c.files() != 3) fail(rank, "expected 3 rank files, the checkpoint has " + std::to_string(c.files()));
    const std::vector<float> m = c.read_all("m"), v = c.read_all("v");
    for (int64_t i = 0; i < 24; ++i)
      if (m[i] != value(0, i)) fail(rank, "m[" + std::to_string(i) + "] differs");
    for (int64_t i = 0; i < 5; ++i)
      if (v[i] != value(1, i)) fail(rank, "v[" + std::to_string(i) + "] differs");
  } catch (const std::exception& e) {
    fail(rank, std::string("the save failed: ") + e.what());
  }

  if (rank == 1) pieces[0].tensor = "m@bad";
  try {
    ck::save_checkpoint(root, {2, 2, 0, 0}, "cfg", tensors, pieces, rank, n, 2, agree);
    fail(rank, "a save with a failing rank succeeded");
  } catch (const ck::CheckpointError& e) {
    const std::string what = e.what();
    if (what.rfind("rank 1: ", 0) != 0 || what.find("rank-00001.safetensors") == std::string::npos)
      fail(rank, "the error does not carry rank 1's: " + what);
  }
  comm.barrier();
  if (rank == 0) {
    std::vector<std::string> left;
    for (const auto& d : fs::directory_iterator(root)) left.push_back(d.path().filename());
    if (left != std::vector<std::string>{"step-00000001"}) fail(rank, "after the failed save the root holds more than step 1");
    fs::remove_all(root);
  }
  const int64_t any = comm.allreduce_max(bad);
  if (rank == 0 && any == 0) std::printf("PASS\n");
  return any ? 1 : 0;
}
