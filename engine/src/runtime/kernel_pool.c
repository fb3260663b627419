/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The engine's forward thread pool and CPU feature detection.
 *
 * Workers are created on first use and live for the process. A layer takes
 * tens of microseconds, so waking workers through a condition variable each
 * time would cost as much as the work: workers spin briefly on a generation
 * counter after each job and only then sleep. They spin only while forwards
 * are running back to back, so they do not hold a core against OpenBLAS
 * (which the forward path does not use when these kernels are active). */
#include "runtime/runtime.h"
#include "runtime/kernel.h"

#include <cblas.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define POOL_MAX 64
/* Spin iterations (each a pause, ~40-140 cycles) before a worker sleeps or
 * the caller yields its core: long enough to bridge the gap between layers,
 * short enough not to starve other processes on a busy machine. */
#define SPIN_ITERS 20000

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* ---------------------------------------------------------------- thread count */

/* The engine's one thread count (dl_set_num_threads in dermlens.h): the size
 * of this pool, OpenBLAS's thread count, and the worker count of dataset
 * decoding, depthwise backward and the classic baselines. Here, at the bottom
 * of the runtime, so that nothing below the executor calls up into exec.c. */
static int g_threads = 0;
/* Set on a thread that runs its own share of a larger job (an ensemble's
 * members explained side by side): its kernels run serially there, without
 * touching the count every other thread sees. */
static _Thread_local int tl_serial = 0;

int dl_thread_serial(int on)
{
    int was = tl_serial;
    tl_serial = on;
    return was;
}

/* OpenBLAS (pthreads build) starts its threads when the library loads, and
 * they spin (sched_yield) for about 0.1 s after that and after every
 * threaded call before they sleep. At the start of a process that is just
 * when the first images are classified (a plug-in run, a CLI call): on two
 * cores the spinner takes the core the engine's second thread needs (batch
 * 1 on 2 threads measured 4.9 ms instead of 3.2 in a fresh process). The
 * forward does not use BLAS where the engine's own kernels run, so its
 * threads are stopped here; OpenBLAS starts them again by itself at the
 * next call that needs them (its exec_blas checks). Weak: other BLAS
 * builds lack the symbol, and then nothing is done. */
extern int blas_thread_shutdown_(void) __attribute__((weak));

void dl_set_num_threads(int n)
{
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    g_threads = n;
    openblas_set_num_threads(n);
    if (blas_thread_shutdown_) blas_thread_shutdown_();
}

int dl_get_num_threads(void)
{
    if (tl_serial) return 1;
    if (g_threads <= 0) dl_set_num_threads(0);
    return g_threads;
}

/* ---------------------------------------------------------------- ISA */

static int g_forced = -1;

int dl_cpu_level(void)
{
    static int detected = -1;
    if (detected < 0) {
        int lvl = DL_ISA_PORTABLE;
#if defined(__x86_64__) && defined(__GNUC__)
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) lvl = DL_ISA_AVX2;
        if (lvl == DL_ISA_AVX2 && __builtin_cpu_supports("avx512f")) lvl = DL_ISA_AVX512;
#endif
        detected = lvl;
    }
    return g_forced >= 0 && g_forced < detected ? g_forced : detected;
}

void dl_cpu_level_force(int level)
{
    g_forced = level;
}

const char *dl_cpu_isa_name(void)
{
    switch (dl_cpu_level()) {
    case DL_ISA_AVX512: return "avx512";
    case DL_ISA_AVX2: return "avx2";
    default: return "portable";
    }
}

size_t dl_cpu_l2_bytes(void)
{
    static size_t l2;
    if (!l2) {
        long v = -1;
#ifdef _SC_LEVEL2_CACHE_SIZE
        v = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
        if (v <= 0) { /* sysconf knows no size here (e.g. some VMs): sysfs */
            FILE *f = fopen("/sys/devices/system/cpu/cpu0/cache/index2/size", "r");
            char buf[32];
            if (f && fgets(buf, sizeof buf, f)) {
                char *end;
                v = strtol(buf, &end, 10);
                v *= *end == 'M' ? 1 << 20 : *end == 'K' ? 1 << 10 : 1;
            }
            if (f) fclose(f);
        }
        l2 = v >= (1 << 16) ? (size_t)v : (size_t)1 << 20; /* unknown: 1 MiB */
    }
    return l2;
}

/* ---------------------------------------------------------------- pool */

/* Work hand-off. A job's parts are claimed from `claim`, a 64-bit word holding
 * the job's generation (bits 40-63), its part count (bits 32-39) and a bit
 * per claimed part (bits 0-31), by the caller and by any worker that is
 * awake. The caller claims parts too, so it never depends on a worker waking
 * up: a worker that is descheduled or misses a wake-up only means the caller
 * runs more parts itself (an earlier design that waited for every worker to
 * acknowledge every job hung once in GIMP with the worker asleep). Each
 * thread first claims its own part (the caller part 0, worker w part w):
 * consecutive layers split the same way then find their input rows in the
 * cache of the core that wrote them, instead of whichever core claimed
 * first (measured: a 1x1 then a depthwise on 14x14 took 10 us more on 2
 * threads than the two alone). A part computes the same values whichever
 * thread runs it, so results do not depend on who ran what. */
#define CLAIM_PARTS_MAX 32
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t wake;
    atomic_uint gen;          /* bumped once per job (sleep/wake only) */
    _Atomic uint64_t claim;   /* (generation << 32) | (nparts << 16) | next part */
    atomic_int done;          /* parts finished in the current job */
    atomic_int running;       /* workers inside a part (caller waits for 0) */
    atomic_flag busy;         /* a caller owns the pool */
    int nworkers;
    dl_task_fn fn;
    void *arg;
    int nparts;
} pool_t;

static pool_t g_pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, ATOMIC_FLAG_INIT,
                        0, NULL, NULL, 0};

/* Claim one part of job `gen`, part `own` if it is still free; -1 when the
 * job has none left or a newer job began. */
static int claim_part(pool_t *pl, uint32_t gen, int own)
{
    uint64_t c = atomic_load_explicit(&pl->claim, memory_order_acquire);
    for (;;) {
        if ((uint32_t)(c >> 40) != (gen & 0xffffffu)) return -1;
        int n = (int)((c >> 32) & 0xff);
        uint32_t all = n >= 32 ? 0xffffffffu : (1u << n) - 1u, free_ = ~(uint32_t)c & all;
        if (!free_) return -1;
        int p = own < n && (free_ >> own & 1u) ? own : __builtin_ctz(free_);
        if (atomic_compare_exchange_weak_explicit(&pl->claim, &c, c | (uint64_t)1 << p, memory_order_acq_rel,
                                                  memory_order_acquire))
            return p;
    }
}

static void *worker(void *p)
{
    const int own = (int)(intptr_t)p; /* this worker's part: 1, 2, ... */
    pool_t *pl = &g_pool;
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&pl->gen, memory_order_acquire)) == seen) {
            if (++spins < SPIN_ITERS) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&pl->mu);
            while ((g = atomic_load_explicit(&pl->gen, memory_order_acquire)) == seen)
                pthread_cond_wait(&pl->wake, &pl->mu);
            pthread_mutex_unlock(&pl->mu);
            break;
        }
        seen = g;
        /* Announce before claiming, so the caller cannot return (and reuse
         * fn/arg) between our claim and our part. */
        atomic_fetch_add_explicit(&pl->running, 1, memory_order_acq_rel);
        for (int part; (part = claim_part(pl, g, own)) >= 0;) {
            pl->fn(pl->arg, part, pl->nparts);
            atomic_fetch_add_explicit(&pl->done, 1, memory_order_acq_rel);
        }
        atomic_fetch_sub_explicit(&pl->running, 1, memory_order_acq_rel);
    }
    return NULL;
}

/* Make sure at least n workers exist; returns how many do. Caller owns busy. */
static int ensure_workers(int n)
{
    pool_t *pl = &g_pool;
    if (n > POOL_MAX) n = POOL_MAX;
    while (pl->nworkers < n) {
        pthread_t t;
        pthread_attr_t at;
        if (pthread_attr_init(&at) != 0) break;
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &at, worker, (void *)(intptr_t)(pl->nworkers + 1));
        pthread_attr_destroy(&at);
        if (rc != 0) break;
        pl->nworkers++;
    }
    return pl->nworkers;
}

int dl_parallel_parts(size_t work, size_t grain)
{
    int nt = dl_get_num_threads();
    if (nt > CLAIM_PARTS_MAX) nt = CLAIM_PARTS_MAX;
    if (grain < 1) grain = 1;
    size_t by_work = work / grain;
    if (by_work < 1) by_work = 1;
    return by_work < (size_t)nt ? (int)by_work : nt;
}

void dl_part_range(size_t n, size_t align, int part, int nparts, size_t *i0, size_t *i1)
{
    size_t blocks = (n + align - 1) / align;
    size_t b0 = blocks * (size_t)part / (size_t)nparts, b1 = blocks * (size_t)(part + 1) / (size_t)nparts;
    *i0 = b0 * align < n ? b0 * align : n;
    *i1 = b1 * align < n ? b1 * align : n;
}

void dl_parallel(int nparts, dl_task_fn fn, void *arg)
{
    pool_t *pl = &g_pool;
    int nt = dl_get_num_threads();
    if (nparts > nt) nparts = nt;
    if (nparts > CLAIM_PARTS_MAX) nparts = CLAIM_PARTS_MAX;
    if (nparts <= 1 || atomic_flag_test_and_set_explicit(&pl->busy, memory_order_acquire)) {
        for (int p = 0; p < (nparts > 1 ? nparts : 1); p++) fn(arg, p, nparts > 1 ? nparts : 1);
        return;
    }
    ensure_workers(nparts - 1);
    /* No worker from the previous job may still be between claim and part. */
    for (int spins = 0; atomic_load_explicit(&pl->running, memory_order_acquire) > 0; spins++) {
        if (spins < SPIN_ITERS) cpu_relax();
        else sched_yield();
    }
    pl->fn = fn;
    pl->arg = arg;
    pl->nparts = nparts;
    atomic_store_explicit(&pl->done, 0, memory_order_relaxed);
    pthread_mutex_lock(&pl->mu);
    uint32_t g = atomic_fetch_add_explicit(&pl->gen, 1, memory_order_acq_rel) + 1;
    atomic_store_explicit(&pl->claim, (uint64_t)(g & 0xffffffu) << 40 | (uint64_t)nparts << 32, memory_order_release);
    pthread_cond_broadcast(&pl->wake);
    pthread_mutex_unlock(&pl->mu);
    for (int part; (part = claim_part(pl, g, 0)) >= 0;) {
        fn(arg, part, nparts);
        atomic_fetch_add_explicit(&pl->done, 1, memory_order_acq_rel);
    }
    /* Every part is claimed; wait only for parts a running worker holds. */
    for (int spins = 0; atomic_load_explicit(&pl->done, memory_order_acquire) < nparts; spins++) {
        if (spins < SPIN_ITERS) cpu_relax();
        else sched_yield();
    }
    atomic_flag_clear_explicit(&pl->busy, memory_order_release);
}
