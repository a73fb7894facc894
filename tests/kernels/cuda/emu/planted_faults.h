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

// out[t] = in[(t + 32) % n] through shared memory, one block of n threads
// (n a multiple of 32, ≥ 64): every reader is in another warp than its
// writer. `block_barrier` false plants the fault: __syncwarp instead of
// __syncthreads between the write and the read.
void shift_across_warps(const float* in, float* out, int n, bool block_barrier);

// c = bf16(a)·bf16(b) (16×16, row-major, fp32 sums) by one warp through
// nvcuda::wmma; the result goes to shared memory and every lane copies out
// 8 elements, mostly stored by other lanes. Planted faults: `sync` false
// drops the __syncwarp between the store and the reads; lda ≠ 16 (not a
// multiple of 8 elements) breaks wmma's ldm rule.
void wmma_product(const float* a, const float* b, float* c, unsigned lda, bool sync);

// out[i] = 2·in[i] for i < n: a plain kernel, to be handed a host pointer.
void scale_by_two(const float* in, float* out, int n);

}  // namespace emu_planted
