// Collective operations over the ranks of a group, for host buffers.
//
// Every reduction here is deterministic: the result has the same bits on
// every rank and depends only on the inputs and the group size, never on
// timing or the MPI library's choice of algorithm (DESIGN.md: no
// reductions whose order decides results). A sum over ranks is
// ((x₀ + x₁) + x₂) + … in rank order, element by element.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace dyt::parallel {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // data[i] ← Σ over ranks of data[i], in rank order, on every rank.
  virtual void allreduce_sum(float* data, size_t n) = 0;
  virtual void allreduce_sum(double* data, size_t n) = 0;
  // The largest `value` over the ranks (e.g. "has any rank been asked to stop").
  virtual int64_t allreduce_max(int64_t value) = 0;
  virtual void barrier() = 0;
  // Ends every rank of the group with `code` (after an error on one rank,
  // which would otherwise leave the others waiting in a collective).
  [[noreturn]] virtual void abort(int code) = 0;
};

// The group of one process: every collective is the identity.
class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void allreduce_sum(float*, size_t) override {}
  void allreduce_sum(double*, size_t) override {}
  int64_t allreduce_max(int64_t value) override { return value; }
  void barrier() override {}
  [[noreturn]] void abort(int code) override;
};

}  // namespace dyt::parallel
