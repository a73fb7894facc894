// Collective operations over the ranks of a group. The buffers are host
// memory for every backend whose device_buffers() is false (MPI, the single
// process); the NCCL backend (nccl_communicator.h) takes device pointers.
//
// Every reduction here is deterministic: the result has the same bits on
// every rank and depends only on the inputs and the group size, never on
// timing or the MPI library's choice of algorithm (DESIGN.md: no
// reductions whose order decides results). A sum over ranks is
// ((x₀ + x₁) + x₂) + … in rank order, element by element — the same order in
// allreduce_sum and reduce_scatter_sum, so a reduce-scatter gives bit for bit
// the slice of the all-reduce (what makes ZeRO-1 match plain dp exactly).
//
// Every communicator counts the calls and bytes of each kind of collective
// it has run since its creation (stats()); the convention is in
// docs/parallel.md and in the *_traffic functions below, which the planner
// uses to predict the same figures.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace dyt::parallel {

enum class Collective : int {
  allreduce_sum,
  reduce_scatter_sum,
  allgather,
  allreduce_max,
  barrier,
  broadcast,
  reduce_sum,
};
inline constexpr int kCollectiveKinds = 7;
const char* collective_name(Collective c);

// What this rank sent to and received from the other ranks of its group.
struct Traffic {
  uint64_t calls = 0, bytes_sent = 0, bytes_received = 0;
  Traffic& operator+=(const Traffic& o);
  Traffic& operator-=(const Traffic& o);
  bool operator==(const Traffic&) const = default;
};

struct CommStats {
  std::array<Traffic, kCollectiveKinds> kind{};
  const Traffic& operator[](Collective c) const { return kind[static_cast<int>(c)]; }
  Traffic total() const;
  // One step's traffic: stats() after it minus stats() before it.
  CommStats operator-(const CommStats& earlier) const;
};

// The counting convention: the logical payload of one call between this rank
// and the others of a group of p, whatever algorithm the library runs
// underneath (a tree or a relaying all-gather moves more; none moves less).
// Copies a rank keeps for itself are not counted. Each is one call.
//  - reduce-scatter of p·c elements: every rank sends the p−1 chunks it does
//    not own and receives p−1 copies of its own: (p−1)·c elements each way.
//  - all-gather of c per rank: (p−1)·c elements each way.
//  - all-reduce of n elements = reduce-scatter then all-gather over p
//    near-equal chunks, rank r owning [n·r/p, n·(r+1)/p) (size c_r): each
//    way (n − c_r) + (p−1)·c_r elements; when p divides n that is
//    2·(p−1)/p·n, a ring all-reduce's figure, and over the group it is
//    always 2·(p−1)·n.
//  - all-reduce of the max of one int64: (p−1)·8 bytes each way.
//  - barrier: no bytes.
//  - broadcast of b bytes from root: the root sends (p−1)·b and receives
//    nothing; every other rank receives b and sends nothing (the one
//    collective whose sent and received differ).
//  - reduce (sum onto root) of n elements: every other rank sends its n and
//    receives nothing; the root receives (p−1)·n and sends nothing. Over
//    the group that is (p−1)·n, a reduce-scatter's total for the same n.
Traffic allreduce_traffic(size_t n, size_t elem_bytes, int p, int rank);
Traffic reduce_scatter_traffic(size_t count_per_rank, size_t elem_bytes, int p);
Traffic allgather_traffic(size_t count_per_rank, size_t elem_bytes, int p);
Traffic allreduce_max_traffic(int p);
Traffic broadcast_traffic(size_t bytes, int p, int rank, int root);
Traffic reduce_traffic(size_t n, size_t elem_bytes, int p, int rank, int root);

// The public collectives check their arguments (std::invalid_argument
// naming the call and the argument), run the backend's do_* and count the
// call; backends implement only the do_*s, so every backend (MPI, the single
// process, NCCL later) counts by the same convention.
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // True when the buffers of the float/double collectives and broadcast are
  // device memory (NCCL), false when they are host memory. The trainer asks
  // this to pass its device buffers directly instead of staging through the
  // host.
  virtual bool device_buffers() const { return false; }

  // data[i] ← Σ over ranks of data[i], in rank order, on every rank.
  void allreduce_sum(float* data, size_t n);
  void allreduce_sum(double* data, size_t n);
  // in holds size()·count_per_rank elements on every rank; rank r gets
  // out[i] = Σ over ranks of in[r·count_per_rank + i], in rank order.
  // in and out must not overlap.
  void reduce_scatter_sum(const float* in, float* out, size_t count_per_rank);
  void reduce_scatter_sum(const double* in, double* out, size_t count_per_rank);
  // out[r·count_per_rank + i] = rank r's in[i], on every rank. in and out
  // must not overlap.
  void allgather(const float* in, float* out, size_t count_per_rank);
  void allgather(const double* in, double* out, size_t count_per_rank);
  // The same for 16-bit words (bf16 bits, moved as they are: ZeRO-1's
  // working copy), counted at 2 bytes per element.
  void allgather(const uint16_t* in, uint16_t* out, size_t count_per_rank);
  // data[i] on rank `root` ← Σ over ranks of data[i], in rank order (the
  // all-reduce's bits); the other ranks' data is left as it was. In place,
  // so a rank's own block of a flat buffer can receive it (the overlapped
  // ZeRO-1 reduction: each bucket lies in one rank's partition). A root
  // outside [0, size()) is refused.
  void reduce_sum(float* data, size_t n, int root);
  // The largest `value` over the ranks (e.g. "has any rank been asked to stop").
  int64_t allreduce_max(int64_t value);
  void barrier();
  // The `bytes` bytes at data on rank `root` are copied to data on every
  // rank (e.g. an NCCL id made on one rank). Every rank passes the same
  // bytes and root; a root outside [0, size()) is refused
  // (std::invalid_argument naming it and the group size).
  void broadcast(void* data, size_t bytes, int root);
  // Ends every rank of the job with `code` (after an error on one rank,
  // which would otherwise leave the others waiting in a collective).
  [[noreturn]] virtual void abort(int code) = 0;

  // The groups that the ranks of this communicator form by colour: every rank
  // calls it (it is collective over this group), and gets the communicator of
  // the ranks that passed its colour (>= 0), ordered by key and then by rank
  // here. A virtual rather than a free factory because only the backend can
  // reach its handle (an MPI_Comm here, an NCCL id later) to derive another;
  // the caller never downcasts. The new communicator's counters start at zero,
  // and it must be destroyed before the session that made its parent ends.
  // Splitting is set-up, so it is not counted.
  virtual std::unique_ptr<Communicator> split(int colour, int key) = 0;

  const CommStats& stats() const { return stats_; }

 protected:
  virtual void do_allreduce_sum(float* data, size_t n) = 0;
  virtual void do_allreduce_sum(double* data, size_t n) = 0;
  virtual void do_reduce_scatter_sum(const float* in, float* out, size_t count_per_rank) = 0;
  virtual void do_reduce_scatter_sum(const double* in, double* out, size_t count_per_rank) = 0;
  virtual void do_allgather(const float* in, float* out, size_t count_per_rank) = 0;
  virtual void do_allgather(const double* in, double* out, size_t count_per_rank) = 0;
  virtual void do_allgather(const uint16_t* in, uint16_t* out, size_t count_per_rank) = 0;
  virtual int64_t do_allreduce_max(int64_t value) = 0;
  virtual void do_barrier() = 0;
  virtual void do_broadcast(void* data, size_t bytes, int root) = 0;
  virtual void do_reduce_sum(float* data, size_t n, int root) = 0;

 private:
  template <class T>
  void allreduce_sum_counted(T* data, size_t n);
  template <class T>
  void reduce_scatter_counted(const T* in, T* out, size_t count_per_rank);
  template <class T>
  void allgather_counted(const T* in, T* out, size_t count_per_rank);
  void count(Collective c, const Traffic& t);
  CommStats stats_;
};

// The group of one process: every collective is the identity (a copy where
// input and output differ), and every split is again a group of one.
class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  [[noreturn]] void abort(int code) override;
  std::unique_ptr<Communicator> split(int colour, int key) override;

 protected:
  void do_allreduce_sum(float*, size_t) override {}
  void do_allreduce_sum(double*, size_t) override {}
  void do_reduce_scatter_sum(const float* in, float* out, size_t count) override;
  void do_reduce_scatter_sum(const double* in, double* out, size_t count) override;
  void do_allgather(const float* in, float* out, size_t count) override;
  void do_allgather(const double* in, double* out, size_t count) override;
  void do_allgather(const uint16_t* in, uint16_t* out, size_t count) override;
  int64_t do_allreduce_max(int64_t value) override { return value; }
  void do_barrier() override {}
  void do_broadcast(void*, size_t, int) override {}
  void do_reduce_sum(float*, size_t, int) override {}
};

}  // namespace dyt::parallel
