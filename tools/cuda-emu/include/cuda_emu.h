// cuda_emu.h: the CUDA C++ dialect for g++ (C++17, x86-64), so that a CUDA source module compiles
// into a shared library the stand-in's JIT (src/jit.rs) loads and launches on the CPU.
//
// The JIT force-includes this header (-include cuda_emu.h) before the module's source, as nvcc and
// NVRTC implicitly do with their runtime headers, and appends one CUDA_EMU_REGISTER(name) line per
// extern "C" __global__ kernel it found (see cuda_emu_kernels below).
//
// How a block runs (all of it on one OS thread; blocks run one after another unless the JIT
// spreads them over several OS threads):
// - Each CUDA thread is a plain call of the kernel from a "runner" loop on a fiber stack. A kernel
//   that never calls __syncthreads() therefore costs one call per thread and two stack switches
//   per block: the fast path.
// - When thread t calls __syncthreads(), its fiber stack becomes t's own: t is parked there and a
//   fresh runner fiber goes on with threads t+1, t+2, ... So a block's threads get stacks only
//   when they wait, whichever thread waits first (no guess from thread 0 alone).
// - When every thread has either returned or is waiting, the waiting threads are released in
//   order (a barrier episode). A thread that has returned no longer counts (as on Volta and later:
//   dfdx's reductions let threads i >= numel return before the barrier, and threads of a shorter
//   chunk return while the others still loop). Two rules catch divergent barriers; breaking one
//   aborts the process with the kernel's name, the block, the threads and the lines:
//   - the threads waiting in an episode are all at the same __syncthreads() (by source line);
//   - at the block's first episode, the threads that returned without reaching it are the
//     block's last ones (a tail `if (i >= n) return;`), so `if (threadIdx.x % 2 == 0)
//     __syncthreads();` aborts while dfdx's early exits pass.
// - __shared__ is `static thread_local`: a block's threads share one OS thread, hence one copy.
//   The module's thread-local memory (all of it __shared__ variables apart from this header's
//   own state) is filled with 0xFF bytes (a NaN in every float format) before the first block of
//   each launch, and before every block of a kernel that has waited at a barrier. (A __shared__
//   variable that no code ever writes may still read as 0: g++ folds its loads.)
// - CUDA_EMU_SCHED=reverse starts a block's threads, and the grid's blocks, last first;
//   CUDA_EMU_SCHED=random in an order drawn from CUDA_EMU_SEED (default 1; the same seed, the
//   same order). A result that changes with the order shows a race (shared memory read before
//   the barrier that should order it, or a float sum by atomics whose order matters).
// - CUDA_EMU_STACK_KIB sets each fiber's stack (default 256 KiB, reserved lazily, with a guard
//   page below it).
//
// Not provided: warp functions (__shfl*, __ballot*, __syncwarp), `extern __shared__`
// (dynamic shared memory), textures, cooperative groups; the fiber switch is x86-64 only.
#ifndef CUDA_EMU_H
#define CUDA_EMU_H

// __CUDA_ARCH__ is an H100's, so dfdx's compatibility.cuh takes its sm_80+ branches.
#define __CUDA_ARCH__ 900
#define CUDA_EMU 1

#ifdef __CUDA_EMU_SCAN__
// Scan mode (g++ -E): only what finding the kernels needs. __global__ leaves a token the JIT
// looks for in the preprocessed text, so kernels defined through macros are found too.
#define __global__ __cuda_emu_global__
#define __device__
#define __host__
#define __forceinline__
#define __shared__
#define __constant__
#define __managed__
#define __launch_bounds__(...)
#else

#if !defined(__x86_64__)
#error "cuda-emu: the fiber switch is written for x86-64"
#endif

#include <assert.h>
#include <dlfcn.h>
#include <limits.h>
#include <link.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <cmath>
#include <utility>

#if defined(__SANITIZE_ADDRESS__)
// Built with CUDA_EMU_CXXFLAGS=-fsanitize=address: every stack switch is announced to ASan.
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define CUDA_EMU_ASAN 1
#endif

#define __CUDACC__ 1

// ---------------------------------------------------------------------------------------------
// Qualifiers
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __shared__ static thread_local
#define __constant__
#define __managed__
#define __launch_bounds__(...)

// ---------------------------------------------------------------------------------------------
// Vector types and the built-in indices
struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1)
        : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};
struct int2 { int x, y; };
struct int3 { int x, y, z; };
struct int4 { int x, y, z, w; };
struct uint2 { unsigned int x, y; };
struct uint4 { unsigned int x, y, z, w; };
struct float2 { float x, y; };
struct float3 { float x, y, z; };
struct float4 { float x, y, z, w; };
struct double2 { double x, y; };
static inline int2 make_int2(int x, int y) { return int2{x, y}; }
static inline int3 make_int3(int x, int y, int z) { return int3{x, y, z}; }
static inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return uint3{x, y, z}; }
static inline float2 make_float2(float x, float y) { return float2{x, y}; }
static inline float3 make_float3(float x, float y, float z) { return float3{x, y, z}; }
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
static inline double2 make_double2(double x, double y) { return double2{x, y}; }

static constexpr int warpSize = 32;

// Per OS thread, hence per fiber: the scheduler rewrites threadIdx on every switch.
static thread_local uint3 threadIdx;
static thread_local uint3 blockIdx;
static thread_local dim3 blockDim;
static thread_local dim3 gridDim;

// ---------------------------------------------------------------------------------------------
// The fiber switch: saves the callee-saved registers on the current stack, stores its stack
// pointer in *save and continues on `to`'s stack (System V: the caller-saved registers are the
// caller's business, so a call is a complete switch).
extern "C" void cuda_emu_switch(void **save, void *to) __attribute__((visibility("hidden")));
asm(R"(
    .text
    .p2align 4
    .hidden cuda_emu_switch
    .type cuda_emu_switch,@function
cuda_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size cuda_emu_switch, .-cuda_emu_switch

    .p2align 4
    .hidden cuda_emu_fiber_start
    .type cuda_emu_fiber_start,@function
cuda_emu_fiber_start:
    movq %r12, %rdi
    callq *%r13
    ud2
    .size cuda_emu_fiber_start, .-cuda_emu_fiber_start
)");
extern "C" void cuda_emu_fiber_start() __attribute__((visibility("hidden")));

namespace cuda_emu {

// What the JIT passes to a kernel's launcher (mirrored by `LaunchArgs` in src/jit.rs).
struct LaunchArgs {
    unsigned int grid[3], block[3];
    void **params;                 // cuLaunchKernel's kernelParams
    unsigned long long *next_block; // shared by the OS threads running this launch
    unsigned long long total_blocks;
    const char *kernel;            // for messages
    unsigned long long waited;     // out: threads that waited at a barrier (fibers parked)
    unsigned long long episodes;   // out: barrier episodes released
};

enum { MAX_THREADS = 1024 };
enum { FORWARD, REVERSE, RANDOM };

// splitmix64: the random orders' numbers, a function of (seed, what is ordered).
static inline unsigned long long mix(unsigned long long x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

struct Fiber {
    void *sp;
    uint3 idx;      // the CUDA thread it runs (or last ran)
    unsigned t;     // idx as a linear index in the block
    int site;       // the __syncthreads() line it waits at
    int pred;       // its predicate (__syncthreads_count/_and/_or)
};

struct Block {
    const char *kernel;
    void (*runner)(Block *); // entry of a fresh runner fiber
    void *kernel_args;
    unsigned int n, next;    // threads in the block; the next one to start
    bool linear;             // blockDim.y == blockDim.z == 1
    int sched;               // CUDA_EMU_SCHED: FORWARD, REVERSE or RANDOM
    unsigned long long seed; // CUDA_EMU_SEED
    unsigned short order[MAX_THREADS]; // RANDOM: the order threads start in this block
    Fiber *current;
    void *sched_sp;
    unsigned int nfibers;
    unsigned int nwait, nready, ready_pos;
    unsigned long long waited, episodes;
    unsigned count;          // the released episode's count of true predicates
    Fiber fibers[MAX_THREADS + 1];
    unsigned short wait[MAX_THREADS], ready[MAX_THREADS];
    char *stacks[MAX_THREADS + 1];
    size_t stack_size;
    // This OS thread's copy of the module's thread-local memory (for the 0xFF fill).
    char *tls_lo;
    size_t tls_len;
    bool tls_known;
    // The OS thread's own stack (the scheduler's), for ASan.
    void *os_stack;
    size_t os_stack_size;
};

// This module's scheduler on this OS thread (allocated on first launch, freed at thread exit).
static thread_local Block *tls_block;

static pthread_key_t block_key;
static pthread_once_t block_key_once = PTHREAD_ONCE_INIT;

static void free_block(void *p) {
    Block *b = static_cast<Block *>(p);
    for (unsigned i = 0; i <= MAX_THREADS; i++)
        if (b->stacks[i]) {
#ifdef CUDA_EMU_ASAN
            // Frames of fibers that ended by switching away are still poisoned.
            __asan_unpoison_memory_region(b->stacks[i] + 4096, b->stack_size);
#endif
            munmap(b->stacks[i], b->stack_size + 4096);
        }
    free(b);
}

static void make_block_key() { pthread_key_create(&block_key, free_block); }

static Block *block() {
    if (!tls_block) {
        Block *b = static_cast<Block *>(calloc(1, sizeof(Block)));
        if (!b) {
            fprintf(stderr, "cuda-emu: out of memory for a block scheduler\n");
            abort();
        }
        size_t kib = 256;
        if (const char *s = getenv("CUDA_EMU_STACK_KIB")) kib = strtoul(s, nullptr, 10);
        if (kib < 16) kib = 16;
        kib = (kib + 3) / 4 * 4; // whole pages, so that stack tops stay page-aligned
        b->stack_size = kib * 1024;
        const char *sched = getenv("CUDA_EMU_SCHED");
        b->sched = !sched                         ? FORWARD
                   : strcmp(sched, "reverse") == 0 ? REVERSE
                   : strcmp(sched, "random") == 0  ? RANDOM
                                                   : FORWARD;
        const char *seed = getenv("CUDA_EMU_SEED");
        b->seed = seed ? strtoull(seed, nullptr, 10) : 1;
#ifdef CUDA_EMU_ASAN
        pthread_attr_t attr;
        if (pthread_getattr_np(pthread_self(), &attr) == 0) {
            pthread_attr_getstack(&attr, &b->os_stack, &b->os_stack_size);
            pthread_attr_destroy(&attr);
        }
#endif
        pthread_once(&block_key_once, make_block_key);
        pthread_setspecific(block_key, b);
        tls_block = b;
    }
    return tls_block;
}

[[noreturn]] static void die(const Block *b, const char *what) {
    fprintf(stderr, "cuda-emu: kernel `%s`, block (%u, %u, %u): %s\n", b->kernel, blockIdx.x,
            blockIdx.y, blockIdx.z, what);
    fflush(stderr);
    abort();
}

// A fresh fiber on stack `i` that will run b->runner(b).
static void start_fiber(Block *b, unsigned i) {
    if (!b->stacks[i]) {
        void *m = mmap(nullptr, b->stack_size + 4096, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
        if (m == MAP_FAILED) die(b, "cannot map a fiber stack");
        mprotect(m, 4096, PROT_NONE); // guard page below the stack
        b->stacks[i] = static_cast<char *>(m);
    }
#ifdef CUDA_EMU_ASAN
    // The stack's last fiber ended by switching away: its frames' redzones are still poisoned.
    __asan_unpoison_memory_region(b->stacks[i] + 4096, b->stack_size);
#endif
    // cuda_emu_switch pops r15, r14, r13, r12, rbx, rbp and returns into cuda_emu_fiber_start,
    // which calls r13(r12) with the stack 16-byte aligned at the call, as the ABI wants: `top` is
    // page-aligned and sp + 7 slots = top - 16.
    void **top = reinterpret_cast<void **>(b->stacks[i] + 4096 + b->stack_size);
    void **sp = top - 9;
    sp[0] = nullptr;                                          // r15
    sp[1] = nullptr;                                          // r14
    sp[2] = reinterpret_cast<void *>(b->runner);              // r13
    sp[3] = b;                                                // r12
    sp[4] = nullptr;                                          // rbx
    sp[5] = nullptr;                                          // rbp (ends frame-pointer walks)
    sp[6] = reinterpret_cast<void *>(&cuda_emu_fiber_start);  // return address
    sp[7] = sp[8] = nullptr;
    b->fibers[i].sp = sp;
}

// Switches from the current stack (its pointer saved in *save) to fiber `to` (-1: the
// scheduler, on the OS thread's stack). `dying`: the current fiber is never resumed.
static inline void jump(Block *b, void **save, int to, bool dying = false) {
    // Other threads of the block run before this call returns: no value of memory (a __shared__
    // array above all, whose address never escapes) may be kept in a register across it.
    asm volatile("" ::: "memory");
    void *sp = to < 0 ? b->sched_sp : b->fibers[to].sp;
#ifdef CUDA_EMU_ASAN
    const void *bottom = to < 0 ? b->os_stack : b->stacks[to] + 4096;
    const size_t size = to < 0 ? b->os_stack_size : b->stack_size;
    void *fake = nullptr;
    __sanitizer_start_switch_fiber(dying ? nullptr : &fake, bottom, size);
    cuda_emu_switch(save, sp);
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
    (void)dying;
    cuda_emu_switch(save, sp);
#endif
    asm volatile("" ::: "memory");
}

static inline uint3 thread_index(const Block *b, unsigned t) {
    if (b->linear) return uint3{t, 0, 0};
    return uint3{t % blockDim.x, (t / blockDim.x) % blockDim.y, t / (blockDim.x * blockDim.y)};
}

// Leaves the current fiber (its stack pointer saved in *save): to the next released thread, or
// back to the block's scheduler.
static void leave(Block *b, void **save, bool dying = false) {
    if (b->ready_pos < b->nready) {
        const unsigned i = b->ready[b->ready_pos++];
        Fiber *g = &b->fibers[i];
        b->current = g;
        threadIdx = g->idx;
        jump(b, save, int(i), dying);
    } else {
        jump(b, save, -1, dying);
    }
}

// __syncthreads(): park this thread until every thread of the block waits or has returned;
// returns how many of the waiting threads passed a true `pred`.
static unsigned sync_threads(int site, int pred = 0) {
    Block *b = tls_block;
    if (!b || !b->current) {
        fprintf(stderr, "cuda-emu: __syncthreads() called outside a kernel\n");
        abort();
    }
    Fiber *f = b->current;
    f->idx = threadIdx;
    f->t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    f->site = site;
    f->pred = pred != 0;
    b->wait[b->nwait++] = static_cast<unsigned short>(f - b->fibers);
    b->waited++;
    if (b->next < b->n) {
        // Threads not yet started: a fresh runner goes on with them.
        unsigned i = b->nfibers++;
        start_fiber(b, i);
        b->current = &b->fibers[i];
        jump(b, &f->sp, int(i));
    } else {
        leave(b, &f->sp);
    }
    // Released: b->count is this episode's until every thread released has waited again.
    return b->count;
}

// Runs threads b->next, b->next + 1, ... of the block as plain calls of K::thread. (The
// thread-local's address is taken once: the fiber never changes OS threads.)
template <class K> static void runner(Block *b) {
#ifdef CUDA_EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#endif
    K *k = static_cast<K *>(b->kernel_args);
    uint3 *const tid = &threadIdx;
    while (b->next < b->n) {
        const unsigned i = b->next++;
        const unsigned t =
            b->sched == FORWARD ? i : b->sched == REVERSE ? b->n - 1 - i : b->order[i];
        *tid = thread_index(b, t);
        k->thread();
    }
    void *done;
    leave(b, &done, true);
    __builtin_unreachable();
}

// The module's thread-local memory on this OS thread: its __shared__ variables, and this
// header's own thread-locals (which the fill steps around).
struct TlsQuery {
    void *base;
    char *lo;
    size_t len;
};

static int find_tls(struct dl_phdr_info *info, size_t, void *data) {
    TlsQuery *q = static_cast<TlsQuery *>(data);
    if (reinterpret_cast<void *>(info->dlpi_addr) != q->base) return 0;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_TLS) {
            q->lo = static_cast<char *>(info->dlpi_tls_data);
            q->len = info->dlpi_phdr[i].p_memsz;
        }
    return 1;
}

static void fill_shared(Block *b) {
    if (!b->tls_known) {
        b->tls_known = true;
        Dl_info self;
        TlsQuery q = {nullptr, nullptr, 0};
        if (dladdr(reinterpret_cast<void *>(&find_tls), &self)) {
            q.base = self.dli_fbase;
            threadIdx.x = 0; // so that this thread's copy exists
            dl_iterate_phdr(find_tls, &q);
        }
        // This header's own thread-locals take 56 bytes: fill only when there is more.
        if (q.len > 64) {
            b->tls_lo = q.lo;
            b->tls_len = q.len;
        }
    }
    if (!b->tls_lo) return;
    // Fill around this header's own thread-locals (sorted by address).
    struct Keep {
        char *at;
        size_t len;
    } keep[] = {{reinterpret_cast<char *>(&threadIdx), sizeof threadIdx},
                {reinterpret_cast<char *>(&blockIdx), sizeof blockIdx},
                {reinterpret_cast<char *>(&blockDim), sizeof blockDim},
                {reinterpret_cast<char *>(&gridDim), sizeof gridDim},
                {reinterpret_cast<char *>(&tls_block), sizeof tls_block}};
    const unsigned nkeep = sizeof keep / sizeof keep[0];
    for (unsigned i = 1; i < nkeep; i++)
        for (unsigned j = i; j > 0 && keep[j - 1].at > keep[j].at; j--) std::swap(keep[j - 1], keep[j]);
    char *at = b->tls_lo, *const end = b->tls_lo + b->tls_len;
    for (const Keep &k : keep) {
        if (k.at < at || k.at >= end) continue;
        memset(at, 0xff, k.at - at);
        at = k.at + k.len;
    }
    if (at < end) memset(at, 0xff, end - at);
}

// Runs one block (blockIdx set) to completion.
static void run_block(Block *b) {
    if (b->sched == RANDOM) {
        // Fisher-Yates, drawn from (seed, block): the same block gets the same order whichever
        // OS thread runs it.
        unsigned long long r = mix(b->seed ^ mix(blockIdx.x + ((unsigned long long)blockIdx.y << 32) +
                                                 ((unsigned long long)blockIdx.z << 48)));
        for (unsigned i = 0; i < b->n; i++) b->order[i] = (unsigned short)i;
        for (unsigned i = b->n - 1; i > 0; i--) {
            r = mix(r);
            const unsigned j = (unsigned)(r % (i + 1));
            std::swap(b->order[i], b->order[j]);
        }
    }
    b->next = 0;
    b->nfibers = 1;
    b->nwait = b->nready = b->ready_pos = 0;
    start_fiber(b, 0);
    b->current = &b->fibers[0];
    jump(b, &b->sched_sp, 0);
    // Every thread has started, and each has returned or waits at a barrier.
    bool first_episode = true;
    while (b->nwait) {
        const Fiber *first = &b->fibers[b->wait[0]];
        // Before the first barrier, the threads that returned must be the block's last ones
        // (a tail `if (i >= n) return;`, as dfdx's reductions have): the waiting threads are
        // then exactly 0, 1, ..., nwait - 1, so none has an index of nwait or more.
        for (unsigned i = 0; first_episode && i < b->nwait; i++) {
            const Fiber *f = &b->fibers[b->wait[i]];
            if (f->t >= b->nwait) {
                bool seen[MAX_THREADS] = {};
                for (unsigned j = 0; j < b->nwait; j++) seen[b->fibers[b->wait[j]].t] = true;
                unsigned missing = 0;
                while (seen[missing]) missing++;
                char msg[320];
                snprintf(msg, sizeof msg,
                         "divergent __syncthreads(): thread %u (linear index) returned without "
                         "reaching the barrier at line %d that thread (%u, %u, %u) waits at "
                         "(only a block's last threads may return before its first barrier)",
                         missing, f->site, f->idx.x, f->idx.y, f->idx.z);
                die(b, msg);
            }
        }
        first_episode = false;
        for (unsigned i = 1; i < b->nwait; i++) {
            const Fiber *f = &b->fibers[b->wait[i]];
            if (f->site != first->site) {
                char msg[256];
                snprintf(msg, sizeof msg,
                         "divergent __syncthreads(): thread (%u, %u, %u) waits at line %d, "
                         "thread (%u, %u, %u) at line %d",
                         first->idx.x, first->idx.y, first->idx.z, first->site, f->idx.x,
                         f->idx.y, f->idx.z, f->site);
                die(b, msg);
            }
        }
        // Release them in the order they arrived: phase one starts threads in order and every
        // release resumes them in that order, so the wait list stays in thread order.
        unsigned short *w = b->wait;
        unsigned n = b->nwait;
        b->count = 0;
        for (unsigned i = 0; i < n; i++) b->count += b->fibers[w[i]].pred;
        memcpy(b->ready, w, n * sizeof *w);
        b->nready = n;
        b->ready_pos = 0;
        b->nwait = 0;
        b->episodes++;
        leave(b, &b->sched_sp);
    }
    b->current = nullptr;
}

// The per-kernel launcher: the parameters unpacked once per launch (each params[i] points to a
// value of the i-th parameter's type; exactly sizeof that type is read, as the driver does),
// then every block of the grid share `next_block` hands to this OS thread.
template <size_t I, class T> struct Slot {
    T value;
};
template <class Seq, class... A> struct Params;
template <size_t... I, class... A>
struct Params<std::index_sequence<I...>, A...> : Slot<I, A>... {
    explicit Params(void **p) {
        (memcpy(&static_cast<Slot<I, A> &>(*this).value, p[I], sizeof(A)), ...);
    }
    template <class F> void call(F f) const { f(static_cast<const Slot<I, A> &>(*this).value...); }
};

template <auto F> struct Launcher;
template <class... A, void (*F)(A...)> struct Launcher<F> {
    static constexpr size_t arity = sizeof...(A);
    // Each parameter's size: what a deferred launch copies out of kernelParams at enqueue time.
    static constexpr size_t sizes[sizeof...(A) + 1] = {sizeof(A)..., 0};
    Params<std::index_sequence_for<A...>, A...> params;
    explicit Launcher(void **p) : params(p) {}
    void thread() const { params.call(F); }

    static int run(LaunchArgs *la) {
        Launcher k(la->params);
        Block *b = block();
        b->kernel = la->kernel;
        b->runner = &runner<Launcher>;
        b->kernel_args = &k;
        b->n = la->block[0] * la->block[1] * la->block[2];
        b->linear = la->block[1] == 1 && la->block[2] == 1;
        b->waited = b->episodes = 0;
        blockDim = dim3(la->block[0], la->block[1], la->block[2]);
        gridDim = dim3(la->grid[0], la->grid[1], la->grid[2]);
        const unsigned long long gx = la->grid[0], gxy = gx * la->grid[1];
        const unsigned long long total = la->total_blocks;
        // RANDOM: blocks in the order i -> (a * i + c) mod total, a bijection when a and total
        // are coprime; drawn from (seed, total), so every OS thread of the launch agrees.
        unsigned long long a = 1, c = 0;
        if (b->sched == RANDOM && total > 1) {
            unsigned long long r = mix(b->seed ^ mix(total));
            c = r % total;
            a = (mix(r) % total) | 1;
            auto gcd = [](unsigned long long x, unsigned long long y) {
                while (y) {
                    const unsigned long long t = x % y;
                    x = y;
                    y = t;
                }
                return x;
            };
            while (gcd(a, total) != 1) a = (a + 2) % total;
        }
        bool first = true;
        for (;;) {
            unsigned long long i = __atomic_fetch_add(la->next_block, 1, __ATOMIC_RELAXED);
            if (i >= la->total_blocks) break;
            if (b->sched == REVERSE) i = total - 1 - i;
            if (b->sched == RANDOM) i = (unsigned long long)(((unsigned __int128)a * i + c) % total);
            blockIdx = uint3{unsigned(i % gx), unsigned((i / gx) % la->grid[1]), unsigned(i / gxy)};
            if (first || b->waited) fill_shared(b);
            first = false;
            run_block(b);
        }
        la->waited = b->waited;
        la->episodes = b->episodes;
        return 0;
    }
};

struct Kernel {
    const char *name;
    int (*launch)(LaunchArgs *);
    size_t params; // how many kernelParams entries launch reads
    const size_t *sizes; // and the size of each
};

} // namespace cuda_emu

#define __syncthreads() ((void)::cuda_emu::sync_threads(__LINE__))
#define __syncthreads_count(pred) ((int)::cuda_emu::sync_threads(__LINE__, (pred)))
#define __syncthreads_and(pred) ((int)(::cuda_emu::sync_threads(__LINE__, !(pred)) == 0))
#define __syncthreads_or(pred) ((int)(::cuda_emu::sync_threads(__LINE__, (pred)) != 0))
#define __threadfence() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define __threadfence_block() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define __threadfence_system() __atomic_thread_fence(__ATOMIC_SEQ_CST)

// What the JIT appends after the module's source: the table it reads with dlsym.
#define CUDA_EMU_TABLE_BEGIN                                                                  \
    extern "C" __attribute__((visibility("default"))) const int cuda_emu_abi = 2;            \
    extern "C" __attribute__((visibility("default"))) const ::cuda_emu::Kernel               \
        cuda_emu_kernels[] = {
#define CUDA_EMU_REGISTER(name)                                                               \
    {#name, &::cuda_emu::Launcher<&name>::run, ::cuda_emu::Launcher<&name>::arity,          \
     ::cuda_emu::Launcher<&name>::sizes},
#define CUDA_EMU_TABLE_END                                                                    \
    { nullptr, nullptr, 0, nullptr }                                                          \
    }                                                                                         \
    ;

// ---------------------------------------------------------------------------------------------
// min and max, as CUDA declares them for device code.
#define CUDA_EMU_MINMAX(R, A, B)                                                              \
    static inline R min(A a, B b) { return (R)a < (R)b ? (R)a : (R)b; }                      \
    static inline R max(A a, B b) { return (R)a > (R)b ? (R)a : (R)b; }
CUDA_EMU_MINMAX(int, int, int)
CUDA_EMU_MINMAX(unsigned int, unsigned int, unsigned int)
CUDA_EMU_MINMAX(unsigned int, int, unsigned int)
CUDA_EMU_MINMAX(unsigned int, unsigned int, int)
CUDA_EMU_MINMAX(long, long, long)
CUDA_EMU_MINMAX(unsigned long, unsigned long, unsigned long)
CUDA_EMU_MINMAX(unsigned long, long, unsigned long)
CUDA_EMU_MINMAX(unsigned long, unsigned long, long)
CUDA_EMU_MINMAX(long long, long long, long long)
CUDA_EMU_MINMAX(unsigned long long, unsigned long long, unsigned long long)
CUDA_EMU_MINMAX(unsigned long long, long long, unsigned long long)
CUDA_EMU_MINMAX(unsigned long long, unsigned long long, long long)
#undef CUDA_EMU_MINMAX
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
static inline double min(double a, double b) { return fmin(a, b); }
static inline double max(double a, double b) { return fmax(a, b); }
static inline double min(float a, double b) { return fmin(a, b); }
static inline double max(float a, double b) { return fmax(a, b); }
static inline double min(double a, float b) { return fmin(a, b); }
static inline double max(double a, float b) { return fmax(a, b); }

// ---------------------------------------------------------------------------------------------
// Bit casts and conversions
static inline float __int_as_float(int v) { float f; memcpy(&f, &v, 4); return f; }
static inline int __float_as_int(float v) { int i; memcpy(&i, &v, 4); return i; }
static inline float __uint_as_float(unsigned int v) { float f; memcpy(&f, &v, 4); return f; }
static inline unsigned int __float_as_uint(float v) { unsigned int i; memcpy(&i, &v, 4); return i; }
static inline double __longlong_as_double(long long v) { double d; memcpy(&d, &v, 8); return d; }
static inline long long __double_as_longlong(double v) { long long i; memcpy(&i, &v, 8); return i; }
static inline int __double2hiint(double v) { return int(__double_as_longlong(v) >> 32); }
static inline int __double2loint(double v) { return int(__double_as_longlong(v)); }
static inline double __hiloint2double(int hi, int lo) {
    return __longlong_as_double((long long)(((unsigned long long)(unsigned)hi << 32) | (unsigned)lo));
}
static inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
static inline int __float2int_rz(float x) { return (int)x; }
static inline int __float2int_rd(float x) { return (int)floorf(x); }
static inline int __float2int_ru(float x) { return (int)ceilf(x); }
static inline unsigned int __float2uint_rn(float x) { return (unsigned int)nearbyintf(x); }
static inline unsigned int __float2uint_rz(float x) { return (unsigned int)x; }
static inline long long __float2ll_rn(float x) { return (long long)nearbyintf(x); }
static inline long long __float2ll_rz(float x) { return (long long)x; }
static inline float __int2float_rn(int x) { return (float)x; }
static inline float __uint2float_rn(unsigned int x) { return (float)x; }
static inline float __ll2float_rn(long long x) { return (float)x; }
static inline int __double2int_rn(double x) { return (int)nearbyint(x); }
static inline int __double2int_rz(double x) { return (int)x; }
static inline float __double2float_rn(double x) { return (float)x; }
static inline double __int2double_rn(int x) { return (double)x; }

// ---------------------------------------------------------------------------------------------
// Math: the fast intrinsics are the plain functions (on the CPU there is no faster one).
// glibc declares these (its internal aliases) without exporting them: define them here.
#define CUDA_EMU_GLIBC_ALIAS(R, NAME, PARAMS, BODY)                                           \
    __attribute__((visibility("hidden"))) R NAME PARAMS noexcept { BODY; }
CUDA_EMU_GLIBC_ALIAS(float, __expf, (float x), return expf(x))
CUDA_EMU_GLIBC_ALIAS(float, __exp10f, (float x), return exp10f(x))
CUDA_EMU_GLIBC_ALIAS(float, __logf, (float x), return logf(x))
CUDA_EMU_GLIBC_ALIAS(float, __log2f, (float x), return log2f(x))
CUDA_EMU_GLIBC_ALIAS(float, __log10f, (float x), return log10f(x))
CUDA_EMU_GLIBC_ALIAS(float, __sinf, (float x), return sinf(x))
CUDA_EMU_GLIBC_ALIAS(float, __cosf, (float x), return cosf(x))
CUDA_EMU_GLIBC_ALIAS(float, __tanf, (float x), return tanf(x))
CUDA_EMU_GLIBC_ALIAS(void, __sincosf, (float x, float *s, float *c), *s = sinf(x); *c = cosf(x))
CUDA_EMU_GLIBC_ALIAS(float, __powf, (float x, float y), return powf(x, y))
#undef CUDA_EMU_GLIBC_ALIAS
static inline float __fdividef(float x, float y) { return x / y; }
static inline float fdividef(float x, float y) { return x / y; }
static inline float __frcp_rn(float x) { return 1.0f / x; }
static inline float __fsqrt_rn(float x) { return sqrtf(x); }
static inline float __frsqrt_rn(float x) { return 1.0f / sqrtf(x); }
static inline float __fadd_rn(float x, float y) { return x + y; }
static inline float __fsub_rn(float x, float y) { return x - y; }
static inline float __fmul_rn(float x, float y) { return x * y; }
static inline float __fdiv_rn(float x, float y) { return x / y; }
static inline float __fmaf_rn(float x, float y, float z) { return fmaf(x, y, z); }
static inline double __dadd_rn(double x, double y) { return x + y; }
static inline double __dmul_rn(double x, double y) { return x * y; }
static inline double __fma_rn(double x, double y, double z) { return fma(x, y, z); }
static inline double __drcp_rn(double x) { return 1.0 / x; }
static inline double __dsqrt_rn(double x) { return sqrt(x); }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
static inline float rcbrtf(float x) { return 1.0f / cbrtf(x); }
static inline double rcbrt(double x) { return 1.0 / cbrt(x); }
static inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
static inline float saturate(float x) { return __saturatef(x); }
static inline float sinpif(float x) { return sinf(float(M_PI) * x); }
static inline float cospif(float x) { return cosf(float(M_PI) * x); }
static inline double sinpi(double x) { return sin(M_PI * x); }
static inline double cospi(double x) { return cos(M_PI * x); }
static inline float normcdff(float x) { return 0.5f * erfcf(-x * float(M_SQRT1_2)); }
static inline double normcdf(double x) { return 0.5 * erfc(-x * M_SQRT1_2); }

// Integer intrinsics
static inline int __popc(unsigned int x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
static inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline int __ffsll(long long x) { return __builtin_ffsll(x); }
static inline unsigned int __brev(unsigned int x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
    return __builtin_bswap32(x);
}
static inline int __mulhi(int x, int y) { return int(((long long)x * y) >> 32); }
static inline unsigned int __umulhi(unsigned int x, unsigned int y) {
    return unsigned(((unsigned long long)x * y) >> 32);
}
static inline long long __mul64hi(long long x, long long y) { return (long long)(((__int128)x * y) >> 64); }
static inline unsigned long long __umul64hi(unsigned long long x, unsigned long long y) {
    return (unsigned long long)(((unsigned __int128)x * y) >> 64);
}
static inline int __mul24(int x, int y) { return x * y; }
static inline unsigned int __umul24(unsigned int x, unsigned int y) { return x * y; }
template <class T> static inline T __ldg(const T *p) { return *p; }

// ---------------------------------------------------------------------------------------------
// Atomics (relaxed, as CUDA's are; real atomics, so blocks may run on several OS threads).
#define CUDA_EMU_ATOMIC_INT(T)                                                                \
    static inline T atomicAdd(T *p, T v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); } \
    static inline T atomicSub(T *p, T v) { return __atomic_fetch_sub(p, v, __ATOMIC_RELAXED); } \
    static inline T atomicExch(T *p, T v) { return __atomic_exchange_n(p, v, __ATOMIC_RELAXED); } \
    static inline T atomicAnd(T *p, T v) { return __atomic_fetch_and(p, v, __ATOMIC_RELAXED); } \
    static inline T atomicOr(T *p, T v) { return __atomic_fetch_or(p, v, __ATOMIC_RELAXED); }  \
    static inline T atomicXor(T *p, T v) { return __atomic_fetch_xor(p, v, __ATOMIC_RELAXED); } \
    static inline T atomicCAS(T *p, T expected, T desired) {                                  \
        __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_RELAXED,           \
                                    __ATOMIC_RELAXED);                                        \
        return expected;                                                                      \
    }                                                                                         \
    static inline T atomicMax(T *p, T v) {                                                    \
        T old = __atomic_load_n(p, __ATOMIC_RELAXED);                                         \
        while (old < v && !__atomic_compare_exchange_n(p, &old, v, true, __ATOMIC_RELAXED,    \
                                                       __ATOMIC_RELAXED)) {                   \
        }                                                                                     \
        return old;                                                                           \
    }                                                                                         \
    static inline T atomicMin(T *p, T v) {                                                    \
        T old = __atomic_load_n(p, __ATOMIC_RELAXED);                                         \
        while (old > v && !__atomic_compare_exchange_n(p, &old, v, true, __ATOMIC_RELAXED,    \
                                                       __ATOMIC_RELAXED)) {                   \
        }                                                                                     \
        return old;                                                                           \
    }
CUDA_EMU_ATOMIC_INT(int)
CUDA_EMU_ATOMIC_INT(unsigned int)
CUDA_EMU_ATOMIC_INT(long long)
CUDA_EMU_ATOMIC_INT(unsigned long long)
#undef CUDA_EMU_ATOMIC_INT
static inline unsigned short atomicCAS(unsigned short *p, unsigned short expected,
                                       unsigned short desired) {
    __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return expected;
}
static inline unsigned int atomicInc(unsigned int *p, unsigned int limit) {
    unsigned int old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(p, &old, old >= limit ? 0 : old + 1, true,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    return old;
}
static inline unsigned int atomicDec(unsigned int *p, unsigned int limit) {
    unsigned int old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(p, &old, (old == 0 || old > limit) ? limit : old - 1,
                                        true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    return old;
}

namespace cuda_emu {
// A read-modify-write of a floating-point value through a CAS loop on its bits.
template <class T, class Bits, class Op> static inline T atomic_float(T *p, Op op) {
    Bits *q = reinterpret_cast<Bits *>(p);
    Bits old = __atomic_load_n(q, __ATOMIC_RELAXED), next;
    T cur;
    do {
        memcpy(&cur, &old, sizeof(T));
        T val = op(cur);
        memcpy(&next, &val, sizeof(T));
    } while (!__atomic_compare_exchange_n(q, &old, next, true, __ATOMIC_RELAXED,
                                          __ATOMIC_RELAXED));
    memcpy(&cur, &old, sizeof(T));
    return cur;
}
} // namespace cuda_emu

static inline float atomicAdd(float *p, float v) {
    return cuda_emu::atomic_float<float, unsigned int>(p, [v](float x) { return x + v; });
}
static inline double atomicAdd(double *p, double v) {
    return cuda_emu::atomic_float<double, unsigned long long>(p, [v](double x) { return x + v; });
}
static inline float atomicSub(float *p, float v) {
    return cuda_emu::atomic_float<float, unsigned int>(p, [v](float x) { return x - v; });
}
static inline float atomicExch(float *p, float v) {
    unsigned int bits = __float_as_uint(v);
    return __uint_as_float(__atomic_exchange_n(reinterpret_cast<unsigned int *>(p), bits,
                                               __ATOMIC_RELAXED));
}
static inline float atomicMax(float *p, float v) {
    return cuda_emu::atomic_float<float, unsigned int>(p, [v](float x) { return fmaxf(x, v); });
}
static inline float atomicMin(float *p, float v) {
    return cuda_emu::atomic_float<float, unsigned int>(p, [v](float x) { return fminf(x, v); });
}
static inline double atomicMax(double *p, double v) {
    return cuda_emu::atomic_float<double, unsigned long long>(p, [v](double x) { return fmax(x, v); });
}
static inline double atomicMin(double *p, double v) {
    return cuda_emu::atomic_float<double, unsigned long long>(p, [v](double x) { return fmin(x, v); });
}

#endif // __CUDA_EMU_SCAN__
#endif // CUDA_EMU_H
