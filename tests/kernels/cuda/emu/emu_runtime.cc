// The host emulator's scheduler (see emu.h), its checks (emu_options.h) and
// the CUDA runtime calls the ops, tests and benchmark make, on host memory.
// Linked instead of libcudart. $DYT_EMU_SMS sets the multiprocessor count
// reported (default 4), which shapes the persistent grids and so the
// reduction layout.
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "tests/kernels/cuda/emu/emu.h"

namespace emu {

uint3 g_thread, g_block;
dim3 g_block_dim, g_grid_dim;

namespace {

struct Thread {
  ucontext_t ctx;
  bool done = false;
  bool at_warp_barrier = false;  // stopped at __syncwarp (else at __syncthreads or done)
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

// Arrays already poisoned in the running block (a handful per kernel).
std::vector<void*> shared_seen;
uint64_t launches = 0;  // with the seed, the block and the interval: fixes each shuffle

Options read_options() {
  Options o;
  if (const char* e = std::getenv("DYT_EMU_ORDER")) {
    const std::string v = e;
    if (v == "forward") o.order = Order::kForward;
    else if (v == "reverse") o.order = Order::kReverse;
    else if (v == "shuffle") o.order = Order::kShuffle;
    else {
      std::fprintf(stderr, "emu: DYT_EMU_ORDER=%s: expected forward, reverse or shuffle\n", e);
      std::exit(2);
    }
  }
  if (const char* e = std::getenv("DYT_EMU_SEED")) {
    char* end = nullptr;
    o.seed = std::strtoull(e, &end, 10);
    if (end == e || *end != '\0') {
      std::fprintf(stderr, "emu: DYT_EMU_SEED=%s: expected an unsigned integer\n", e);
      std::exit(2);
    }
  }
  return o;
}

void trampoline() {
  (*body)();
  threads[current].done = true;
  swapcontext(&threads[current].ctx, &scheduler);
  die("a finished thread was resumed");
}

}  // namespace

Options& options() {
  static Options o = read_options();
  return o;
}

std::string describe_options() {
  const Options& o = options();
  const char* order = o.order == Order::kForward   ? "forward"
                      : o.order == Order::kReverse ? "reverse"
                                                   : "shuffle";
  return std::string("DYT_EMU_ORDER=") + order + " DYT_EMU_SEED=" + std::to_string(o.seed) +
         (o.poison_shared ? "" : " (shared memory not poisoned)") +
         (o.check_pointers ? "" : " (pointers not checked)");
}

void syncthreads() {
  threads[current].at_warp_barrier = false;
  swapcontext(&threads[current].ctx, &scheduler);
}
void syncwarp() {
  threads[current].at_warp_barrier = true;
  swapcontext(&threads[current].ctx, &scheduler);
}

void shared_decl(void* p, size_t bytes) {
  if (std::find(shared_seen.begin(), shared_seen.end(), p) != shared_seen.end()) return;
  shared_seen.push_back(p);
  if (options().poison_shared) std::memset(p, 0xff, bytes);
}

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
  const Options& opt = options();
  std::vector<long> order(nt), warp_order;
  std::vector<std::vector<long>> warp_lanes((nt + 31) / 32);
  std::mt19937_64 shuffler;
  const uint64_t launch = ++launches;
  for (unsigned bz = 0; bz < cfg.grid.z; ++bz)
    for (unsigned by = 0; by < cfg.grid.y; ++by)
      for (unsigned bx = 0; bx < cfg.grid.x; ++bx) {
        g_block = make_uint3(bx, by, bz);
        shared_seen.clear();
        if (opt.order == Order::kShuffle) {
          // One stream per (seed, launch, block): each interval's permutation
          // is the next draw, so a run replays from DYT_EMU_SEED alone.
          std::seed_seq seq{opt.seed, opt.seed >> 32, launch, uint64_t{bx}, uint64_t{by}, uint64_t{bz}};
          shuffler.seed(seq);
        }
        for (Thread& t : threads) {
          t.done = false;
          t.at_warp_barrier = false;
          t.exchanges = 0;
          t.ctx = blank;
          t.ctx.uc_stack.ss_sp = t.stack.data();
          t.ctx.uc_stack.ss_size = t.stack.size();
          t.ctx.uc_link = nullptr;
          makecontext(&t.ctx, trampoline, 0);
        }
        // Rounds (block barrier intervals): every live thread runs to its
        // next __syncthreads or its end, in the order the options ask for,
        // warp by warp (warps in the order of their first thread); a warp
        // whose lanes all stop at __syncwarp runs its next warp interval
        // before the next warp starts.
        for (;;) {
          long live = 0, finished_this_round = 0;
          for (long k = 0; k < nt; ++k) order[k] = opt.order == Order::kReverse ? nt - 1 - k : k;
          if (opt.order == Order::kShuffle) std::shuffle(order.begin(), order.end(), shuffler);
          // Bucket the order by warp (warps in the order of their first thread).
          warp_order.clear();
          for (auto& lanes : warp_lanes) lanes.clear();
          for (long i : order) {
            if (warp_lanes[i / 32].empty()) warp_order.push_back(i / 32);
            warp_lanes[i / 32].push_back(i);
          }
          for (long w : warp_order) {
            for (;;) {
              long at_warp = 0, at_block = 0, ended = 0;
              for (long i : warp_lanes[w]) {
                Thread& t = threads[i];
                if (t.done) continue;
                current = static_cast<int>(i);
                g_thread = make_uint3(i % cfg.block.x, (i / cfg.block.x) % cfg.block.y,
                                      i / (cfg.block.x * cfg.block.y));
                swapcontext(&scheduler, &t.ctx);
                if (t.done) ++ended;
                else if (t.at_warp_barrier) ++at_warp;
                else ++at_block;
              }
              if (at_warp == 0) {
                live += at_block;
                finished_this_round += ended;
                break;
              }
              if (at_block > 0 || ended > 0)
                die("__syncwarp reached by some lanes of a warp while others reached "
                    "__syncthreads or exited");
            }
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
struct Allocation {
  void* mapping;
  size_t length;  // of the mapping, guard pages included
  size_t bytes;   // asked for
};
std::map<const char*, Allocation> g_maps;  // by user pointer
int g_streams = 0;
int sms() {
  const char* e = std::getenv("DYT_EMU_SMS");
  return e ? std::max(1, std::atoi(e)) : 4;
}
}  // namespace

namespace emu {

// A pointer argument must be null or lie in [start, start + bytes) of a live
// allocation (its start also when 0 bytes were asked for).
void check_device_pointer(const char* site, const char* kernel, int index, const void* p) {
  if (!p || !options().check_pointers) return;
  const char* q = static_cast<const char*>(p);
  std::string where;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    auto it = g_maps.upper_bound(q);
    if (it != g_maps.begin()) {
      --it;
      const size_t off = static_cast<size_t>(q - it->first);
      if (off < it->second.bytes || off == 0) return;
      if (off - it->second.bytes < 65536)  // near: an index past the end, not a stray pointer
        where = ", " + std::to_string(off - it->second.bytes) + " bytes past the end of the " +
              std::to_string(it->second.bytes) + "-byte allocation before it";
    }
  }
  std::fprintf(stderr,
               "emu: %s: launch of %s: pointer argument %d (%p) is not in any device "
               "allocation (cudaMalloc'd by the emulator)%s; a host pointer or a freed buffer?\n",
               site, kernel, index, p, where.c_str());
  std::abort();
}

}  // namespace emu

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
  g_maps[user] = {m, len, n};
  *p = user;
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  std::lock_guard<std::mutex> lock(g_mu);
  auto it = g_maps.find(static_cast<const char*>(p));
  if (it == g_maps.end()) return cudaErrorInvalidValue;
  munmap(it->second.mapping, it->second.length);
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
cudaError_t cudaMemsetAsync(void* d, int v, size_t n, cudaStream_t) { return cudaMemset(d, v, n); }
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cudaErrorInvalidDevice; }
// The emulated GPU's memory: 16 GiB, or $DYT_EMU_GPU_BYTES (to test what a
// run does when it would not fit); free = total, since the emulator's
// allocations are host memory.
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  const char* env = std::getenv("DYT_EMU_GPU_BYTES");
  const size_t total = env ? static_cast<size_t>(std::strtoull(env, nullptr, 10)) : size_t{16} << 30;
  *free_bytes = *total_bytes = total;
  return cudaSuccess;
}
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
  p->major = 9;  // reports itself as the sm_90 the kernels are built for
  p->minor = 0;
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
