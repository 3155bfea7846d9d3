/*
 * tilelang C runtime; see runtime.h for the API and its conventions.
 *
 * The pool: `nthreads - 1` persistent workers plus the calling thread. A caller that
 * wins `run_lock` publishes a job (body, range, chunk size) under a new ticket; workers
 * notice the ticket (spinning briefly, else asleep on `wake_cv`), enter the job, claim
 * chunks from an atomic counter until none are left, and leave. When the caller runs
 * out of chunks it closes the job, so a late worker (asleep, or descheduled on a busy
 * machine) skips it instead of being waited for, and then waits only for the workers
 * inside to leave: after tl_parallel_for returns, no worker touches the job. Callers
 * that cannot get the pool (nested in a body, or the pool is busy) run inline instead.
 */
#define _GNU_SOURCE
#include "runtime.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__linux__)
#include <sched.h>
#include <sys/syscall.h>
#endif

#define TL_MAX_THREADS 1024
/* How long a waiter spins before sleeping: 0.5 ms. Consecutive calls from Python are more than
   50 us apart (argument checks, dispatch), so with a 50 us spin the workers were asleep at every
   call, and on the dev VM waking them took long enough that the caller ran most jobs alone:
   M = 1 x 4096 x 4096 at 2 threads measured 0.44-0.54x NumPy with 50 us, 0.98-0.99x with 0.5 ms
   (benchmarks.matmul's decode row). OpenMP runtimes spin as long or longer by default. */
#define TL_SPIN_NS 500000
/* An automatic grain is guided self-scheduling: each chunk is this share of what is left,
   1 / (TL_GUIDED_SHARE * threads), at least one index. The first chunks are long (few claims,
   neighbouring indices on one thread) and the last ones single, so a thread that runs slower
   (a busy VM) leaves at most one index behind. The fixed chunks before, n / (4 * threads),
   left up to a quarter of a thread's share. One-off on AMD Zen 3, 2 threads, in one process
   against them (medians of 11 interleaved rounds, two runs): ops.matmul M = 64, K = N = 4096
   (32 programs) 1.07x, 1.04x; N = 11008 1.09x; n = 1600 (40) 1.03x, 1.05x; n = 3000 1.04x; n =
   512-4096 and M = 16 1.00-1.02x; bfloat16 M = 1 1.12x; quantize_fp8 of 2048 x 2048 1.07x;
   causal attention (8 heads of 2048 x 64) 1.00x. */
#define TL_GUIDED_SHARE 2

/* ------------------------------------------------------------------ errors */

static _Thread_local char t_error[512];

#define TL_FAIL(code, ...) tl_fail((code), __FILE__, __LINE__, __VA_ARGS__)

/* Records "file:line: message" as this thread's last error and returns `code`. */
static int tl_fail(int code, const char *file, int line, const char *fmt, ...) {
    int off = snprintf(t_error, sizeof t_error, "%s:%d: ", file, line);
    if (off < 0 || (size_t)off >= sizeof t_error) return code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t_error + off, sizeof t_error - (size_t)off, fmt, ap);
    va_end(ap);
    return code;
}

const char *tl_last_error(void) { return t_error; }

/* Thread-safe strerror (glibc's strerror_r is the GNU variant under _GNU_SOURCE). */
static const char *errno_text(int err, char *buf, size_t len) {
#if defined(__GLIBC__)
    return strerror_r(err, buf, len);
#else
    return strerror_r(err, buf, len) == 0 ? buf : "unknown error";
#endif
}

/* ------------------------------------------------------------------ timers */

int64_t tl_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

uint64_t tl_cycles(void) {
#if defined(__x86_64__) || defined(__i386__)
    return __builtin_ia32_rdtsc();
#elif defined(__aarch64__)
    uint64_t ticks;
    __asm__ volatile("mrs %0, cntvct_el0" : "=r"(ticks));
    return ticks;
#else
    return (uint64_t)tl_now_ns();
#endif
}

/* A hint to the core that we are busy-waiting. */
static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield" ::: "memory");
#endif
}

/* ------------------------------------------------------------ allocation */

void *tl_aligned_alloc(size_t alignment, size_t size) {
    if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0) {
        TL_FAIL(TL_EINVAL, "aligned_alloc: alignment %zu is not a power of two >= %zu",
                alignment, sizeof(void *));
        return NULL;
    }
    void *p = NULL;
    int err = posix_memalign(&p, alignment, size ? size : 1); /* size 0: a unique pointer */
    if (err != 0) {
        char buf[128];
        TL_FAIL(TL_ENOMEM, "aligned_alloc(%zu, %zu) failed: %s", alignment, size,
                errno_text(err, buf, sizeof buf));
        return NULL;
    }
    return p;
}

void tl_aligned_free(void *p) { free(p); }

/* ------------------------------------------------------------------- AMX */

#define TL_ARCH_REQ_XCOMP_PERM 0x1023
#define TL_XFEATURE_XTILEDATA 18

static atomic_int g_amx = -1; /* -1: not asked yet, else the answer */

static int ask_os_for_amx(void) {
#if defined(__linux__) && defined(__x86_64__)
    if (syscall(SYS_arch_prctl, TL_ARCH_REQ_XCOMP_PERM, TL_XFEATURE_XTILEDATA) == 0) return 1;
    char buf[128];
    TL_FAIL(TL_ESYS, "arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA) refused: %s",
            errno_text(errno, buf, sizeof buf));
    return 0;
#else
    TL_FAIL(TL_ESYS, "AMX is only requested on Linux x86-64");
    return 0;
#endif
}

int tl_request_amx(void) {
    int state = atomic_load(&g_amx);
    if (state < 0) {
        state = ask_os_for_amx(); /* a racing second ask gets the same answer */
        atomic_store(&g_amx, state);
    }
    return state;
}

/* ------------------------------------------------------------ pool state */

typedef struct tl_job {
    tl_body_fn fn;
    void *ctx;
    int64_t n;
    int64_t grain; /* indices per chunk, or 0: guided, (n - next) / share of them (at least 1) */
    int64_t share;
    atomic_int_fast64_t next; /* the first unclaimed index */
} tl_job;

/* g_pool.entry packs the current job's ticket (high 32 bits), whether the job still
   admits workers (TL_OPEN) and how many workers are inside it (the low 31 bits). */
#define TL_OPEN ((uint64_t)1 << 31)
#define TL_INSIDE_MASK (TL_OPEN - 1)

static inline unsigned ticket_of(uint64_t entry) { return (unsigned)(entry >> 32); }

static struct {
    pthread_mutex_t run_lock;  /* held by the caller whose job owns the pool */
    pthread_mutex_t mu;        /* pairs with the two condition variables */
    pthread_cond_t wake_cv;    /* idle workers sleep here */
    pthread_cond_t done_cv;    /* the caller sleeps here until workers leave */
    atomic_uint_fast64_t entry;
    atomic_int stop;           /* tells workers to exit */
    atomic_int sleepers;       /* workers asleep (or about to be) on wake_cv */
    atomic_int caller_asleep;  /* the caller is asleep (or about to be) on done_cv */
    int started, nworkers;     /* guarded by run_lock */
    pthread_t *workers;
    tl_job job;
} g_pool = {
    .run_lock = PTHREAD_MUTEX_INITIALIZER,
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .wake_cv = PTHREAD_COND_INITIALIZER,
    .done_cv = PTHREAD_COND_INITIALIZER,
};

static atomic_int g_nthreads;          /* the configured size, first set by init_once */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static _Thread_local int t_in_job;     /* nonzero while this thread runs pool chunks */

/* ---------------------------------------------------------- thread count */

static int affinity_cpu_count(void) {
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
#endif
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > TL_MAX_THREADS ? TL_MAX_THREADS : (int)n;
}

static int default_num_threads(void) {
    const char *env = getenv("TILELANG_NUM_THREADS");
    if (env != NULL && *env != '\0') {
        char *end;
        errno = 0;
        long n = strtol(env, &end, 10);
        if (errno == 0 && *end == '\0' && n >= 1 && n <= TL_MAX_THREADS) return (int)n;
    }
    return affinity_cpu_count();
}

static void pool_after_fork_child(void);

static void init_once(void) {
    atomic_store(&g_nthreads, default_num_threads());
    pthread_atfork(NULL, NULL, pool_after_fork_child);
}

int tl_get_num_threads(void) {
    pthread_once(&g_once, init_once);
    return atomic_load_explicit(&g_nthreads, memory_order_relaxed);
}

/* ------------------------------------------------------------ worker side */

/* Claims and runs chunks of `job` until none are left. */
static void run_chunks(tl_job *job) {
    int64_t begin = atomic_load_explicit(&job->next, memory_order_relaxed);
    while (begin < job->n) {
        int64_t left = job->n - begin;
        int64_t size = job->grain ? job->grain : left / job->share;
        if (size < 1) size = 1;
        int64_t end = size >= left ? job->n : begin + size; /* (no overflow) */
        /* on failure `begin` becomes the first unclaimed index another thread left */
        if (atomic_compare_exchange_weak_explicit(&job->next, &begin, end, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            job->fn(job->ctx, begin, end);
            begin = atomic_load_explicit(&job->next, memory_order_relaxed);
        }
    }
}

/* Spins briefly, then sleeps, until a ticket other than `seen` or a stop; returns it. */
static unsigned wait_for_ticket(unsigned seen) {
    int64_t deadline = tl_now_ns() + TL_SPIN_NS;
    for (unsigned i = 1;; i++) {
        unsigned ticket = ticket_of(atomic_load(&g_pool.entry));
        if (ticket != seen || atomic_load(&g_pool.stop)) return ticket;
        if (i % 64 == 0 && tl_now_ns() > deadline) break;
        cpu_relax();
    }
    /* Count ourselves asleep before the last check: publish_job stores the ticket, then
       reads sleepers (all seq_cst), so one of us sees the other: no lost wake-up. */
    pthread_mutex_lock(&g_pool.mu);
    atomic_fetch_add(&g_pool.sleepers, 1);
    while (ticket_of(atomic_load(&g_pool.entry)) == seen && !atomic_load(&g_pool.stop))
        pthread_cond_wait(&g_pool.wake_cv, &g_pool.mu);
    atomic_fetch_sub(&g_pool.sleepers, 1);
    unsigned ticket = ticket_of(atomic_load(&g_pool.entry));
    pthread_mutex_unlock(&g_pool.mu);
    return ticket;
}

/* Enters job `ticket` if it is still the current one and open; returns 1 if we did. */
static int enter_job(unsigned ticket) {
    uint64_t e = atomic_load(&g_pool.entry);
    while (ticket_of(e) == ticket && (e & TL_OPEN))
        if (atomic_compare_exchange_weak(&g_pool.entry, &e, e + 1)) return 1;
    return 0;
}

/* Leaves the current job; the last worker out of a closed job wakes a sleeping caller
   (the same handshake as wait_for_ticket, on the inside count and caller_asleep). */
static void leave_job(void) {
    uint64_t e = atomic_fetch_sub(&g_pool.entry, 1) - 1;
    if ((e & (TL_OPEN | TL_INSIDE_MASK)) != 0 || !atomic_load(&g_pool.caller_asleep)) return;
    pthread_mutex_lock(&g_pool.mu);
    pthread_cond_broadcast(&g_pool.done_cv);
    pthread_mutex_unlock(&g_pool.mu);
}

static void *worker_main(void *arg) {
    unsigned seen = (unsigned)(uintptr_t)arg; /* the ticket when we were created */
    t_in_job = 1; /* parallel_for called from a body on this thread runs inline */
    for (;;) {
        seen = wait_for_ticket(seen);
        if (atomic_load(&g_pool.stop)) return NULL;
        if (!enter_job(seen)) continue; /* already closed: the caller did without us */
        run_chunks(&g_pool.job);
        leave_job();
    }
}

/* ------------------------------------------------------------ caller side */

/* Fills in the job and opens it under a new ticket, waking sleeping workers. */
static void publish_job(tl_body_fn fn, void *ctx, int64_t n, int64_t grain) {
    tl_job *job = &g_pool.job;
    job->fn = fn;
    job->ctx = ctx;
    job->n = n;
    job->grain = grain;
    job->share = (int64_t)TL_GUIDED_SHARE * (g_pool.nworkers + 1);
    atomic_store_explicit(&job->next, 0, memory_order_relaxed);
    uint64_t ticket = ticket_of(atomic_load(&g_pool.entry)) + 1u;
    atomic_store(&g_pool.entry, (ticket << 32) | TL_OPEN); /* nobody inside yet */
    if (atomic_load(&g_pool.sleepers) == 0) return;
    pthread_mutex_lock(&g_pool.mu);
    pthread_cond_broadcast(&g_pool.wake_cv);
    pthread_mutex_unlock(&g_pool.mu);
}

/* Closes the job to latecomers, then waits for the workers inside to leave. */
static void close_job(void) {
    uint64_t e = atomic_fetch_and(&g_pool.entry, ~TL_OPEN);
    int64_t deadline = tl_now_ns() + TL_SPIN_NS;
    for (unsigned i = 1; (e & TL_INSIDE_MASK) != 0; i++) {
        if (i % 64 == 0 && tl_now_ns() > deadline) break;
        cpu_relax();
        e = atomic_load(&g_pool.entry);
    }
    if ((e & TL_INSIDE_MASK) == 0) return;
    pthread_mutex_lock(&g_pool.mu);
    atomic_store(&g_pool.caller_asleep, 1);
    while ((atomic_load(&g_pool.entry) & TL_INSIDE_MASK) != 0)
        pthread_cond_wait(&g_pool.done_cv, &g_pool.mu);
    atomic_store(&g_pool.caller_asleep, 0);
    pthread_mutex_unlock(&g_pool.mu);
}

/* ------------------------------------------------------- starting/stopping */

/* Blocks asynchronous signals in the threads we create (they inherit our mask), so
   signals keep going to the application's threads; faults stay deliverable. */
static void block_async_signals(sigset_t *old) {
    sigset_t set;
    sigfillset(&set);
    int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT};
    for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++) sigdelset(&set, faults[i]);
    pthread_sigmask(SIG_BLOCK, &set, old);
}

/* Creates `nthreads - 1` workers (under run_lock). If the OS refuses some, the pool
   runs with the ones it got: the caller always participates, so work is never lost. */
static void pool_start(int nthreads) {
    g_pool.started = 1;
    g_pool.nworkers = 0;
    g_pool.workers = calloc((size_t)nthreads, sizeof(pthread_t));
    if (g_pool.workers == NULL) return;
    void *seen = (void *)(uintptr_t)ticket_of(atomic_load(&g_pool.entry));
    sigset_t old;
    block_async_signals(&old);
    for (int i = 0; i < nthreads - 1; i++) {
        if (pthread_create(&g_pool.workers[i], NULL, worker_main, seen) != 0) break;
        g_pool.nworkers++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* Stops and joins the workers (under run_lock, so no job is running). */
static void pool_stop(void) {
    if (!g_pool.started) return;
    pthread_mutex_lock(&g_pool.mu);
    atomic_store(&g_pool.stop, 1);
    pthread_cond_broadcast(&g_pool.wake_cv);
    pthread_mutex_unlock(&g_pool.mu);
    for (int i = 0; i < g_pool.nworkers; i++) pthread_join(g_pool.workers[i], NULL);
    free(g_pool.workers);
    g_pool.workers = NULL;
    g_pool.nworkers = 0;
    g_pool.started = 0;
    atomic_store(&g_pool.stop, 0);
}

/* In a forked child only the forking thread exists: forget the parent's workers and
   reset the locks (another parent thread may have held them), so the child's first
   parallel_for starts a fresh pool instead of waiting on workers that are not there. */
static void pool_after_fork_child(void) {
    g_pool.run_lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
    g_pool.mu = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
    g_pool.wake_cv = (pthread_cond_t)PTHREAD_COND_INITIALIZER;
    g_pool.done_cv = (pthread_cond_t)PTHREAD_COND_INITIALIZER;
    free(g_pool.workers);
    g_pool.workers = NULL;
    g_pool.nworkers = 0;
    g_pool.started = 0;
    atomic_store(&g_pool.entry, 0);
    atomic_store(&g_pool.stop, 0);
    atomic_store(&g_pool.sleepers, 0);
    atomic_store(&g_pool.caller_asleep, 0);
}

int tl_set_num_threads(int n) {
    if (n < 1 || n > TL_MAX_THREADS)
        return TL_FAIL(TL_EINVAL, "set_num_threads: %d is not in [1, %d]", n, TL_MAX_THREADS);
    if (t_in_job)
        return TL_FAIL(TL_EBUSY, "set_num_threads: called from inside a parallel_for body");
    pthread_once(&g_once, init_once);
    pthread_mutex_lock(&g_pool.run_lock); /* waits for a running job to finish */
    if (n != atomic_load(&g_nthreads)) pool_stop(); /* restarted lazily at the new size */
    atomic_store(&g_nthreads, n);
    pthread_mutex_unlock(&g_pool.run_lock);
    return TL_OK;
}

/* ------------------------------------------------------------ parallel_for */

/* Runs the job on the pool; the caller holds run_lock. */
static void run_on_pool(tl_body_fn fn, void *ctx, int64_t n, int64_t grain) {
    if (!g_pool.started) pool_start(atomic_load(&g_nthreads));
    if (g_pool.nworkers == 0) {
        fn(ctx, 0, n);
        return;
    }
    publish_job(fn, ctx, n, grain);
    t_in_job = 1;
    run_chunks(&g_pool.job);
    t_in_job = 0;
    close_job();
}

int tl_parallel_for(tl_body_fn fn, void *ctx, int64_t n, int64_t grain) {
    if (n <= 0) return TL_OK;
    if (fn == NULL) return TL_FAIL(TL_EINVAL, "parallel_for: fn is NULL");
    if (grain < 0) grain = 0; /* automatic: guided */
    /* Inline: one chunk, one thread, or nested in a body (the launch-overhead path). */
    if (n <= (grain ? grain : 1) || tl_get_num_threads() == 1 || t_in_job) {
        fn(ctx, 0, n);
        return TL_OK;
    }
    /* The pool is busy with another caller's job: do ours serially rather than wait. */
    if (pthread_mutex_trylock(&g_pool.run_lock) != 0) {
        fn(ctx, 0, n);
        return TL_OK;
    }
    run_on_pool(fn, ctx, n, grain);
    pthread_mutex_unlock(&g_pool.run_lock);
    return TL_OK;
}
