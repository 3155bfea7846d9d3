/*
 * tilelang C runtime: a persistent thread pool with parallel_for, aligned allocation,
 * the AMX permission request and timers.
 *
 * Conventions: every function is prefixed tl_; nothing here calls exit() or abort().
 * Functions that can fail return an int status (TL_OK on success, a negative TL_E* code
 * otherwise) or NULL, and leave a thread-local message naming __FILE__:__LINE__ that
 * tl_last_error() returns.
 */
#ifndef TILELANG_RUNTIME_H
#define TILELANG_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TL_OK 0
#define TL_EINVAL (-1) /* a bad argument */
#define TL_ENOMEM (-2) /* an allocation failed */
#define TL_ESYS (-3)   /* the OS refused (errno text in the message) */
#define TL_EBUSY (-4)  /* not allowed from inside a running parallel_for body */

/* A loop body: runs the half-open index range [begin, end). */
typedef void (*tl_body_fn)(void *ctx, int64_t begin, int64_t end);

/*
 * Runs fn over [0, n) in chunks of `grain` indices on the pool; grain <= 0: automatic,
 * chunks that shrink as the work runs out (guided self-scheduling, the last ones of one
 * index). The calling thread participates. Every index is covered exactly once. Runs
 * inline on the caller when n <= grain (automatic: n == 1), with one thread, when nested
 * inside a body, or while the pool is busy with another caller's job. Returns TL_OK, or
 * TL_EINVAL for a NULL fn.
 */
int tl_parallel_for(tl_body_fn fn, void *ctx, int64_t n, int64_t grain);

/* Sets the pool size (n >= 1, the caller included); old workers are joined first. */
int tl_set_num_threads(int n);

/* The pool size: TILELANG_NUM_THREADS if a positive int, else the CPUs we may run on. */
int tl_get_num_threads(void);

/* `alignment` must be a power of two and a multiple of sizeof(void *). */
void *tl_aligned_alloc(size_t alignment, size_t size);
void tl_aligned_free(void *p);

/* 1 if the OS granted this process AMX tile data (Linux x86-64 only), else 0. */
int tl_request_amx(void);

/* A cheap cycle counter (TSC, cntvct_el0 or a clock) and CLOCK_MONOTONIC in ns. */
uint64_t tl_cycles(void);
int64_t tl_now_ns(void);

/* The calling thread's last error message ("" if none). */
const char *tl_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* TILELANG_RUNTIME_H */
