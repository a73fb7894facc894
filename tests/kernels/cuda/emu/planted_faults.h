// Small kernels with planted faults (planted_faults.cu), compiled for the
// host emulator only, and the host functions that launch them on device
// buffers: test_emu_checks.cc shows each of the emulator's checks catching
// its fault (docs/cuda_kernels.md).
#pragma once

namespace emu_planted {

// out[t] = in[t − 1] (out[0] = 0) through shared memory, one block of n
// threads (n ≤ 1024); `barrier` false drops the __syncthreads between the
// write and the read. The reader's writer has a lower index, so the fault is
// invisible when threads run in index order.
void shift_through_shared(const float* in, float* out, int n, bool barrier);

// out[b] = Σ in[b·n .. b·n + n) by warp leaders' partials in shared memory,
// `blocks` blocks of n threads (a multiple of 32, ≤ 1024); `read_all_slots`
// true plants the fault: the sum reads all 32 slots though only n/32 were
// written this block.
void block_sums(const float* in, float* out, int n, int blocks, bool read_all_slots);

// out[i] = 2·in[i] for i < n: a plain kernel, to be handed a host pointer.
void scale_by_two(const float* in, float* out, int n);

}  // namespace emu_planted
