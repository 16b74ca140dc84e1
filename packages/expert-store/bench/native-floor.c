// What native code gets out of this machine on the expert store's benchmark pattern: the floor
// under our wasm kernels. `pnpm bench:native` (needs gcc; not part of the build or the tests).
//
// N = 1024^2 rows, d = 256: two tables (u, v) with Adam moments, 6 GiB in all, pre-faulted. Per
// step and table: lazy Adam over U = 63,529 distinct random rows (the "uniform" pattern of
// bench/store.ts), and a gather of 65,536 random rows into a contiguous buffer. Compiled with
// -O3 -march=native (AVX2 here: 8-wide, twice the width of wasm SIMD), with and without
// software prefetch 4 rows ahead and transparent huge pages (madvise), neither of which
// WebAssembly offers. Medians of 10 steps after 2 warm-up steps, one thread.
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

enum { N = 1 << 20, D = 256, U = 63529, LOOKUPS = 65536, STEPS = 12, WARMUP = 2 };

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static float *table(int huge) {
  size_t bytes = (size_t)N * D * sizeof(float);
  float *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    perror("mmap");
    exit(1);
  }
  if (huge) madvise(p, bytes, MADV_HUGEPAGE);
  memset(p, 1, bytes);
  return p;
}

static unsigned seed = 12345;
static unsigned next(void) { return seed = seed * 1664525u + 1013904223u; }
static int by_value(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

/** U distinct random rows, ascending (as SparseAdam visits them). */
static void distinct_rows(int *rows, unsigned char *seen) {
  memset(seen, 0, N);
  for (int u = 0; u < U;) {
    int r = (next() >> 8) % N;
    if (!seen[r]) seen[r] = 1, rows[u++] = r;
  }
  qsort(rows, U, sizeof(int), by_value);
}

static double median(double *x, int n) {
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++)
      if (x[j] < x[i]) {
        double t = x[i];
        x[i] = x[j];
        x[j] = t;
      }
  return x[n / 2];
}

static double adam_ms(int huge, int ahead) {
  float *w[2], *m[2], *v[2];
  for (int t = 0; t < 2; t++) w[t] = table(huge), m[t] = table(huge), v[t] = table(huge);
  float *g = malloc((size_t)U * D * sizeof(float));
  for (size_t i = 0; i < (size_t)U * D; i++) g[i] = (float)(i % 7) * 1e-3f;
  int *rows = malloc(U * sizeof(int));
  unsigned char *seen = malloc(N);
  double times[STEPS - WARMUP];
  for (int step = 0; step < STEPS; step++) {
    distinct_rows(rows, seen);
    double t0 = now_ms();
    for (int t = 0; t < 2; t++) {
      float *W = w[t], *M = m[t], *V = v[t];
      for (int s = 0; s < U; s++) {
        if (ahead && s + ahead < U) {
          size_t o = (size_t)rows[s + ahead] * D;
          for (int j = 0; j < D; j += 16) __builtin_prefetch(W + o + j, 1), __builtin_prefetch(M + o + j, 1), __builtin_prefetch(V + o + j, 1);
        }
        size_t o = (size_t)rows[s] * D;
        const float *gs = g + (size_t)s * D;
        for (int j = 0; j < D; j++) {
          float gj = gs[j];
          float mj = 0.9f * M[o + j] + 0.1f * gj;
          float vj = 0.999f * V[o + j] + 0.001f * gj * gj;
          M[o + j] = mj;
          V[o + j] = vj;
          W[o + j] = 0.99999f * W[o + j] - 1e-3f * mj / (sqrtf(vj) * 1.5f + 1e-8f);
        }
      }
    }
    if (step >= WARMUP) times[step - WARMUP] = now_ms() - t0;
  }
  for (int t = 0; t < 2; t++) {
    size_t bytes = (size_t)N * D * sizeof(float);
    munmap(w[t], bytes), munmap(m[t], bytes), munmap(v[t], bytes);
  }
  free(g), free(rows), free(seen);
  return median(times, STEPS - WARMUP);
}

static double gather_ms(int ahead) {
  float *w[2] = {table(0), table(0)};
  float *out = malloc((size_t)LOOKUPS * D * sizeof(float));
  memset(out, 0, (size_t)LOOKUPS * D * sizeof(float));
  int *idx = malloc(LOOKUPS * sizeof(int));
  double times[STEPS - WARMUP];
  for (int step = 0; step < STEPS; step++) {
    for (int i = 0; i < LOOKUPS; i++) idx[i] = (next() >> 8) % N;
    double t0 = now_ms();
    for (int t = 0; t < 2; t++) {
      for (int i = 0; i < LOOKUPS; i++) {
        if (ahead && i + ahead < LOOKUPS) {
          const float *p = w[t] + (size_t)idx[i + ahead] * D;
          for (int j = 0; j < D; j += 16) __builtin_prefetch(p + j);
        }
        memcpy(out + (size_t)i * D, w[t] + (size_t)idx[i] * D, D * sizeof(float));
      }
    }
    if (step >= WARMUP) times[step - WARMUP] = now_ms() - t0;
  }
  munmap(w[0], (size_t)N * D * sizeof(float)), munmap(w[1], (size_t)N * D * sizeof(float));
  free(out), free(idx);
  return median(times, STEPS - WARMUP);
}

int main(void) {
  printf("native floor, N = %d, d = %d, one thread (medians of %d steps)\n\n", N, D, STEPS - WARMUP);
  printf("| operation, both tables | plain | prefetch 4 rows ahead | prefetch + huge pages |\n|---|---|---|---|\n");
  double a0 = adam_ms(0, 0), a1 = adam_ms(0, 4), a2 = adam_ms(1, 4);
  printf("| lazy Adam, %d distinct rows / table, ms | %.1f | %.1f | %.1f |\n", U, a0, a1, a2);
  double g0 = gather_ms(0), g1 = gather_ms(4);
  printf("| gather %d random rows / table, ms | %.1f | %.1f | - |\n", LOOKUPS, g0, g1);
  return 0;
}
