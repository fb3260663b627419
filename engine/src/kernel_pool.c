/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The engine's forward thread pool and CPU feature detection.
 *
 * Workers are created on first use and live for the process. A layer takes
 * tens of microseconds, so waking workers through a condition variable each
 * time would cost as much as the work: workers spin briefly on a generation
 * counter after each job and only then sleep. They spin only while forwards
 * are running back to back, so they do not hold a core against OpenBLAS
 * (which the forward path does not use when these kernels are active). */
#include "internal.h"
#include "kernel.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#define POOL_MAX 64
/* Spin iterations (each a pause, ~40-140 cycles) before a worker sleeps or
 * the caller yields its core: long enough to bridge the gap between layers,
 * short enough not to starve other processes on a busy machine. */
#define SPIN_ITERS 2000

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
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

/* ---------------------------------------------------------------- pool */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t wake;
    atomic_uint gen;       /* bumped once per job */
    atomic_int pending;    /* worker parts still running */
    atomic_flag busy;      /* a caller owns the pool */
    int nworkers;
    dl_task_fn fn;
    void *arg;
    int nparts;
} pool_t;

static pool_t g_pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, ATOMIC_FLAG_INIT,
                        0, NULL, NULL, 0};

typedef struct {
    int id;        /* part index, 1.. */
    unsigned gen0; /* generation when created: the next job is new */
} worker_arg;

static worker_arg g_wargs[POOL_MAX];

static void *worker(void *p)
{
    const int id = ((worker_arg *)p)->id;
    pool_t *pl = &g_pool;
    unsigned seen = ((worker_arg *)p)->gen0;
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
        if (id < pl->nparts) pl->fn(pl->arg, id, pl->nparts);
        atomic_fetch_sub_explicit(&pl->pending, 1, memory_order_acq_rel);
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
        int i = pl->nworkers;
        g_wargs[i].id = i + 1;
        g_wargs[i].gen0 = atomic_load_explicit(&pl->gen, memory_order_relaxed);
        if (pthread_attr_init(&at) != 0) break;
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &at, worker, &g_wargs[i]);
        pthread_attr_destroy(&at);
        if (rc != 0) break;
        pl->nworkers++;
    }
    return pl->nworkers;
}

int dl_parallel_parts(size_t work, size_t grain)
{
    int nt = dl_get_num_threads();
    if (nt > POOL_MAX + 1) nt = POOL_MAX + 1;
    if (grain < 1) grain = 1;
    size_t by_work = work / grain;
    if (by_work < 1) by_work = 1;
    return by_work < (size_t)nt ? (int)by_work : nt;
}

void dl_parallel(int nparts, dl_task_fn fn, void *arg)
{
    pool_t *pl = &g_pool;
    int nt = dl_get_num_threads();
    if (nparts > nt) nparts = nt;
    if (nparts > POOL_MAX + 1) nparts = POOL_MAX + 1;
    if (nparts <= 1 || atomic_flag_test_and_set_explicit(&pl->busy, memory_order_acquire)) {
        for (int p = 0; p < (nparts > 1 ? nparts : 1); p++) fn(arg, p, nparts > 1 ? nparts : 1);
        return;
    }
    int have = ensure_workers(nparts - 1);
    if (nparts > have + 1) nparts = have + 1; /* thread creation failed: fewer parts */
    pl->fn = fn;
    pl->arg = arg;
    pl->nparts = nparts;
    /* every worker acknowledges every job (idle ones just decrement) */
    atomic_store_explicit(&pl->pending, have, memory_order_relaxed);
    pthread_mutex_lock(&pl->mu);
    atomic_fetch_add_explicit(&pl->gen, 1, memory_order_acq_rel);
    pthread_cond_broadcast(&pl->wake);
    pthread_mutex_unlock(&pl->mu);
    fn(arg, 0, nparts);
    for (int spins = 0; atomic_load_explicit(&pl->pending, memory_order_acquire) > 0; spins++) {
        if (spins < SPIN_ITERS) cpu_relax();
        else sched_yield(); /* a worker is descheduled: let it run */
    }
    atomic_flag_clear_explicit(&pl->busy, memory_order_release);
}
