// The host emulator's scheduler (see emu.h) and the CUDA runtime calls the
// ops, tests and benchmark make, on host memory. Linked instead of libcudart.
// $DYT_EMU_SMS sets the multiprocessor count reported (default 4), which
// shapes the persistent grids and so the reduction layout.
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <vector>

#include "tests/kernels/cuda/emu/emu.h"

namespace emu {

uint3 g_thread, g_block;
dim3 g_block_dim, g_grid_dim;

namespace {

struct Thread {
  ucontext_t ctx;
  bool done = false;
  int exchanges = 0;  // its count of exchanges so far: picks the buffer
  std::vector<char> stack;
};
std::vector<Thread> threads;
ucontext_t scheduler;
int current = -1;
const std::function<void()>* body = nullptr;
std::vector<double> exchange_buf[2];

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "emu: %s\n", what);
  std::abort();
}

void trampoline() {
  (*body)();
  threads[current].done = true;
  swapcontext(&threads[current].ctx, &scheduler);
  die("a finished thread was resumed");
}

}  // namespace

void syncthreads() { swapcontext(&threads[current].ctx, &scheduler); }

// One barrier per exchange: every thread makes the same sequence of
// exchanges, alternating between two buffers, so a buffer is written again
// only after the next barrier, which every thread passes after reading it.
double exchange(double v, int src) {
  std::vector<double>& buf = exchange_buf[threads[current].exchanges++ & 1];
  buf[current] = v;
  syncthreads();
  return buf[src];
}

void run(const Cfg& cfg, const std::function<void()>& b) {
  body = &b;
  g_grid_dim = cfg.grid;
  g_block_dim = cfg.block;
  const long nt = static_cast<long>(cfg.block.x) * cfg.block.y * cfg.block.z;
  if (nt <= 0 || nt > 1024) die("block of more than 1024 threads");
  if (cfg.grid.x == 0 || cfg.grid.y == 0 || cfg.grid.z == 0) die("empty grid");
  if (cfg.grid.y > 65535 || cfg.grid.z > 65535) die("grid.y or grid.z above 65535");
  threads.resize(nt);
  exchange_buf[0].assign(nt, 0.0);
  exchange_buf[1].assign(nt, 0.0);
  for (Thread& t : threads)
    if (t.stack.empty()) t.stack.resize(128 * 1024);
  static ucontext_t blank;  // one getcontext (a system call) per process, copied per thread
  static const bool have_blank = (getcontext(&blank) == 0) || (die("getcontext failed"), false);
  (void)have_blank;
  for (unsigned bz = 0; bz < cfg.grid.z; ++bz)
    for (unsigned by = 0; by < cfg.grid.y; ++by)
      for (unsigned bx = 0; bx < cfg.grid.x; ++bx) {
        g_block = make_uint3(bx, by, bz);
        for (Thread& t : threads) {
          t.done = false;
          t.exchanges = 0;
          t.ctx = blank;
          t.ctx.uc_stack.ss_sp = t.stack.data();
          t.ctx.uc_stack.ss_size = t.stack.size();
          t.ctx.uc_link = nullptr;
          makecontext(&t.ctx, trampoline, 0);
        }
        // Rounds: every live thread runs to its next barrier or its end.
        for (;;) {
          long live = 0, finished_this_round = 0;
          for (long i = 0; i < nt; ++i) {
            Thread& t = threads[i];
            if (t.done) continue;
            current = static_cast<int>(i);
            g_thread = make_uint3(i % cfg.block.x, (i / cfg.block.x) % cfg.block.y,
                                  i / (cfg.block.x * cfg.block.y));
            swapcontext(&scheduler, &t.ctx);
            if (t.done) ++finished_this_round;
            else ++live;
          }
          if (live == 0) break;
          if (finished_this_round > 0)
            die("__syncthreads reached by some threads of a block while others had exited");
        }
      }
}

}  // namespace emu

// ---- the runtime API on host memory --------------------------------------------------------

namespace {
std::mutex g_mu;
std::map<void*, std::pair<void*, size_t>> g_maps;  // user pointer -> (mapping, length)
int g_streams = 0;
int sms() {
  const char* e = std::getenv("DYT_EMU_SMS");
  return e ? std::max(1, std::atoi(e)) : 4;
}
}  // namespace

extern "C" {

// The allocation ends where a PROT_NONE page begins (start 16-byte aligned),
// and a PROT_NONE page precedes it; fresh memory is all-ones bits (NaN).
cudaError_t cudaMalloc(void** p, size_t n) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t body = (std::max<size_t>(n, 1) + 15) / 16 * 16;
  const size_t data_pages = (body + page - 1) / page;
  const size_t len = (data_pages + 2) * page;
  char* m = static_cast<char*>(mmap(nullptr, len, PROT_READ | PROT_WRITE,
                                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (m == MAP_FAILED) return cudaErrorMemoryAllocation;
  mprotect(m, page, PROT_NONE);
  mprotect(m + (data_pages + 1) * page, page, PROT_NONE);
  char* user = m + (data_pages + 1) * page - body;
  std::memset(user, 0xff, body);
  std::lock_guard<std::mutex> lock(g_mu);
  g_maps[user] = {m, len};
  *p = user;
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  std::lock_guard<std::mutex> lock(g_mu);
  auto it = g_maps.find(p);
  if (it == g_maps.end()) return cudaErrorInvalidValue;
  munmap(it->second.first, it->second.second);
  g_maps.erase(it);
  return cudaSuccess;
}
cudaError_t cudaMallocAsync(void** p, size_t n, cudaStream_t) { return cudaMalloc(p, n); }
cudaError_t cudaFreeAsync(void* p, cudaStream_t) { return cudaFree(p); }
cudaError_t cudaMemcpy(void* d, const void* s, size_t n, cudaMemcpyKind) {
  std::memcpy(d, s, n);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind k, cudaStream_t) {
  return cudaMemcpy(d, s, n, k);
}
cudaError_t cudaMemset(void* d, int v, size_t n) {
  std::memset(d, v, n);
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int) {
  *v = a == cudaDevAttrMultiProcessorCount ? sms() : 0;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int) {
  std::memset(p, 0, sizeof *p);
  std::strcpy(p->name, "host emulator");
  p->multiProcessorCount = sms();
  p->l2CacheSize = 1 << 20;
  return cudaSuccess;
}
cudaError_t cudaGetLastError() { return cudaSuccess; }
const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    default: return "cudaError(emulated)";
  }
}
const char* cudaGetErrorString(cudaError_t) { return "(host emulator)"; }
cudaError_t cudaStreamCreate(cudaStream_t* s) {
  *s = reinterpret_cast<cudaStream_t>(static_cast<intptr_t>(++g_streams) * 16);
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamIsCapturing(cudaStream_t, cudaStreamCaptureStatus* s) {
  *s = cudaStreamCaptureStatusNone;
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* e) {
  *e = reinterpret_cast<cudaEvent_t>(new int(0));
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete reinterpret_cast<int*>(e);
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t, cudaEvent_t) {
  *ms = 1.0f;
  return cudaSuccess;
}

}  // extern "C"
