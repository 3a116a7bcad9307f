// CPU kernels of the G2G layer's fast path (float32). Built at first use by g2gnet/kernels/native.py
// with one g++ call (no torch headers: about a second), loaded with ctypes, and called only from the
// torch.library custom ops of g2gnet/kernels/ops.py, which check dtype, shape, stride and device of
// every tensor before its pointer reaches this file.
//
// Layout: activations are *transposed*, [features, Bp] with a row stride ld >= Bp (Bp = the batch
// padded to a multiple of 16, pad columns zero). Each nonzero weight then touches one contiguous row
// of Bp floats: Bp/16 vector FMAs from cache instead of a gather over the batch. The sparse products
// work in batch chunks so that the chunk of the dense operand stays in a core's L2 while all rows
// stream through it. The inter-group part of a layer is either CSR (element-wise masks) or BSR with
// T x T tiles stored row-major (tiled masks); rows and columns are in group-sorted order.
//
// Vectors use GCC's vector extension (16 floats): AVX-512 where the target has it, otherwise GCC
// splits them into AVX2/SSE operations. OpenMP resolves to the libgomp torch already loaded, so both
// share one thread pool. Threads own static row ranges and never wait on each other (robust when
// cores are shared).

#include <stdint.h>
#include <string.h>
#include <omp.h>

typedef float v16 __attribute__((vector_size(64), aligned(4)));

static inline v16 vload(const float* p) { v16 v; memcpy(&v, p, 64); return v; }
static inline void vstore(float* p, v16 v) { memcpy(p, &v, 64); }
static inline v16 vbcast(float s) { return (v16){s,s,s,s,s,s,s,s,s,s,s,s,s,s,s,s}; }
static inline float hsum(v16 v) { float s = 0.f; for (int i = 0; i < 16; ++i) s += v[i]; return s; }

enum { CHUNK = 64 };  // batch columns per pass of the BSR and SDDMM kernels

// Software prefetch distance (nonzeros) of the CSR product: a nonzero's activation row is a random
// row of an L2-resident block, which no hardware prefetcher predicts; fetching it PD nonzeros ahead
// hides the L2 latency (-15% at 2048 wide on Zen 4). The SDDMM has none: there the extra load-port
// work cost more than it saved (measured).
#ifndef PD
#define PD 16
#endif

#define DISPATCH_NV(nv, CALL) \
    switch (nv) { case 1: CALL(1); break; case 2: CALL(2); break; case 3: CALL(3); break; default: CALL(4); }

// ---- CSR rows: y = init + bias + sum_k vals[k] * X[cols[k]] over one batch chunk -------------------
template <int NV, typename I>
static inline void csr_row(int64_t kb, int64_t ke, const I* cols, const float* vals, const float* X,
                           int64_t ldx, const float* src, float addb, float* y) {
    v16 a[NV], b[NV];
    for (int j = 0; j < NV; ++j) {
        a[j] = (src ? vload(src + 16 * j) : vbcast(0.f)) + vbcast(addb);
        b[j] = vbcast(0.f);
    }
    int64_t k = kb;
    for (; k + 1 < ke; k += 2) {  // two independent accumulator chains
        const float* x0 = X + (int64_t)cols[k] * ldx;
        const float* x1 = X + (int64_t)cols[k + 1] * ldx;
#if PD > 0
        if (k + PD + 1 < ke) {
            const float* p0 = X + (int64_t)cols[k + PD] * ldx;
            const float* p1 = X + (int64_t)cols[k + PD + 1] * ldx;
            for (int j = 0; j < NV; ++j) { __builtin_prefetch(p0 + 16 * j, 0, 3); __builtin_prefetch(p1 + 16 * j, 0, 3); }
        }
#endif
        const v16 w0 = vbcast(vals[k]), w1 = vbcast(vals[k + 1]);
        for (int j = 0; j < NV; ++j) { a[j] += w0 * vload(x0 + 16 * j); b[j] += w1 * vload(x1 + 16 * j); }
    }
    if (k < ke) {
        const float* x0 = X + (int64_t)cols[k] * ldx;
        const v16 w0 = vbcast(vals[k]);
        for (int j = 0; j < NV; ++j) a[j] += w0 * vload(x0 + 16 * j);
    }
    for (int j = 0; j < NV; ++j) vstore(y + 16 * j, a[j] + b[j]);
}

// ---- BSR rows: 4 output rows share every loaded X vector (4 FMAs per load) --------------------------
// Weight (i, c) of the 4-row slab starting at row q of a tile is wt[(q + i) * si + c * sc]: (T, 1) reads
// the tile as stored, (1, T) reads it transposed (the input gradient, no copy of the values).
template <int NV>
static inline void bsr_rows4(int64_t r0, int64_t c0, const int64_t* trowptr, const int32_t* tcols,
                             const int32_t* tidx, const float* tvals, int T, int si, int sc, const float* X,
                             int64_t ldx, const float* init, int64_t ldi, const float* bias, const int64_t* dst,
                             float* Y, int64_t ldy) {
    const int64_t tr = r0 / T;
    const int q = (int)(r0 - tr * T);
    v16 a[4][NV];
    for (int i = 0; i < 4; ++i) {
        const int64_t d = dst ? dst[r0 + i] : r0 + i;
        for (int j = 0; j < NV; ++j) {
            a[i][j] = init ? vload(init + (r0 + i) * ldi + c0 + 16 * j) : vbcast(0.f);
            if (bias) a[i][j] += vbcast(bias[d]);
        }
    }
    for (int64_t t = trowptr[tr]; t < trowptr[tr + 1]; ++t) {
        const float* xt = X + (int64_t)tcols[t] * T * ldx + c0;
        const int64_t tile = tidx ? tidx[t] : t;
        const float* wt = tvals + tile * T * T;
        for (int c = 0; c < T; ++c) {
            v16 xv[NV];
            for (int j = 0; j < NV; ++j) xv[j] = vload(xt + (int64_t)c * ldx + 16 * j);
            for (int i = 0; i < 4; ++i) {
                const v16 w = vbcast(wt[(q + i) * si + c * sc]);
                for (int j = 0; j < NV; ++j) a[i][j] += w * xv[j];
            }
        }
    }
    for (int i = 0; i < 4; ++i) {
        const int64_t d = dst ? dst[r0 + i] : r0 + i;
        for (int j = 0; j < NV; ++j) vstore(Y + d * ldy + c0 + 16 * j, a[i][j]);
    }
}

// ---- 16 dot products at once, reduced with a shuffle tree (15 adds instead of 16 hsums) -------------
static inline v16 reduce16(const v16* a) {
    v16 b[8], c[4], d[2];
    for (int i = 0; i < 8; ++i)
        b[i] = __builtin_shufflevector(a[2*i], a[2*i+1], 0,1,2,3,4,5,6,7, 16,17,18,19,20,21,22,23)
             + __builtin_shufflevector(a[2*i], a[2*i+1], 8,9,10,11,12,13,14,15, 24,25,26,27,28,29,30,31);
    for (int i = 0; i < 4; ++i)
        c[i] = __builtin_shufflevector(b[2*i], b[2*i+1], 0,1,2,3, 16,17,18,19, 8,9,10,11, 24,25,26,27)
             + __builtin_shufflevector(b[2*i], b[2*i+1], 4,5,6,7, 20,21,22,23, 12,13,14,15, 28,29,30,31);
    for (int i = 0; i < 2; ++i)
        d[i] = __builtin_shufflevector(c[2*i], c[2*i+1], 0,1, 16,17, 4,5, 20,21, 8,9, 24,25, 12,13, 28,29)
             + __builtin_shufflevector(c[2*i], c[2*i+1], 2,3, 18,19, 6,7, 22,23, 10,11, 26,27, 14,15, 30,31);
    return __builtin_shufflevector(d[0], d[1], 0,16, 2,18, 4,20, 6,22, 8,24, 10,26, 12,28, 14,30)
         + __builtin_shufflevector(d[0], d[1], 1,17, 3,19, 5,21, 7,23, 9,25, 11,27, 13,29, 15,31);
}
// reduce16 returns lane L = sum of a[SLOT[L]]: accumulate nonzero L into slot SLOT[L].
static const int SLOT[16] = {0,8,4,12,2,10,6,14,1,9,5,13,3,11,7,15};

// out[k] (+)= sum_c A[r, c] * X[cols[k], c] over one batch chunk (sampled dense-dense product).
template <int NV, typename I>
static inline void sddmm_row(int64_t r, int64_t c0, int first, const int64_t* rowptr, const I* cols,
                             const float* A, int64_t lda, const float* X, int64_t ldx, float* out) {
    v16 g[NV];
    for (int j = 0; j < NV; ++j) g[j] = vload(A + r * lda + c0 + 16 * j);
    int64_t k = rowptr[r];
    const int64_t e = rowptr[r + 1];
    for (; k + 16 <= e; k += 16) {
        v16 acc[16];
        for (int m = 0; m < 16; ++m) {
            const float* x = X + (int64_t)cols[k + m] * ldx + c0;
            v16 s = g[0] * vload(x);
            for (int j = 1; j < NV; ++j) s += g[j] * vload(x + 16 * j);
            acc[SLOT[m]] = s;
        }
        const v16 s = reduce16(acc);
        vstore(out + k, first ? s : vload(out + k) + s);
    }
    for (; k < e; ++k) {
        const float* x = X + (int64_t)cols[k] * ldx + c0;
        v16 s = g[0] * vload(x);
        for (int j = 1; j < NV; ++j) s += g[j] * vload(x + 16 * j);
        out[k] = first ? hsum(s) : out[k] + hsum(s);
    }
}

// Y[dst[r]] = init[r] + bias[dst[r]] + (CSR row r) @ X for r < nrows (dst, init, bias optional).
template <typename I>
static void csr_spmm(int64_t nrows, int64_t Bp, int64_t chunk, const int64_t* rowptr, const I* cols,
                     const float* vals, const float* X, int64_t ldx, const float* init, int64_t ldi,
                     const float* bias, const int64_t* dst, float* Y, int64_t ldy, int nthreads) {
    #pragma omp parallel num_threads(nthreads)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        const int64_t r0 = nrows * t / nt, r1 = nrows * (t + 1) / nt;
        for (int64_t c0 = 0; c0 < Bp;) {
            int64_t nv = (Bp - c0 < chunk ? Bp - c0 : chunk) / 16;
            nv = nv >= 16 ? 16 : nv >= 8 ? 8 : nv >= 4 ? 4 : nv;
            for (int64_t r = r0; r < r1; ++r) {
                const int64_t d = dst ? dst[r] : r;
                float* y = Y + d * ldy + c0;
                const float* src = init ? init + r * ldi + c0 : 0;
                const float addb = bias ? bias[d] : 0.f;
                const int64_t kb = rowptr[r], ke = rowptr[r + 1];
                switch (nv) {
                    case 1: csr_row<1>(kb, ke, cols, vals, X + c0, ldx, src, addb, y); break;
                    case 2: csr_row<2>(kb, ke, cols, vals, X + c0, ldx, src, addb, y); break;
                    case 3: csr_row<3>(kb, ke, cols, vals, X + c0, ldx, src, addb, y); break;
                    case 4: csr_row<4>(kb, ke, cols, vals, X + c0, ldx, src, addb, y); break;
                    case 8: csr_row<8>(kb, ke, cols, vals, X + c0, ldx, src, addb, y); break;
                    default: csr_row<16>(kb, ke, cols, vals, X + c0, ldx, src, addb, y); break;
                }
            }
            c0 += nv * 16;
        }
    }
}

// out[k] = dot(A[row of k], X[cols[k]]) over the batch, for every CSR entry k (the weight gradient).
template <typename I>
static void csr_sddmm(int64_t nrows, int64_t Bp, const int64_t* rowptr, const I* cols, const float* A,
                      int64_t lda, const float* X, int64_t ldx, float* out, int nthreads) {
    // Batch chunks of 64 columns (X's chunk stays in L2), static row ranges per thread, no barrier:
    // a thread owns the outputs of its rows across all chunks.
    #pragma omp parallel num_threads(nthreads)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        const int64_t r0 = nrows * t / nt, r1 = nrows * (t + 1) / nt;
        for (int64_t c0 = 0; c0 < Bp; c0 += CHUNK) {
            const int nv = (int)((Bp - c0 < CHUNK ? Bp - c0 : CHUNK) / 16);
            const int first = c0 == 0;
            for (int64_t r = r0; r < r1; ++r) {
#define CALL(N) sddmm_row<N>(r, c0, first, rowptr, cols, A, lda, X, ldx, out)
                DISPATCH_NV(nv, CALL)
#undef CALL
            }
        }
    }
}

// The transposed pattern of a CSR, with its values: a counting sort by column. Thread t owns a
// range of columns and scans all rows in order, so rows stay ascending inside every column.
template <typename I>
static void csr_transpose(int64_t nrows, int64_t ncols, const int64_t* rowptr, const I* cols, const float* vals,
                          const int64_t* colptr, I* t_rows, float* t_vals, int nthreads) {
    #pragma omp parallel num_threads(nthreads)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        const int64_t c0 = ncols * t / nt, c1 = ncols * (t + 1) / nt;
        int64_t* cursor = new int64_t[c1 - c0 + 1];
        for (int64_t c = c0; c < c1; ++c) cursor[c - c0] = colptr[c];
        for (int64_t r = 0; r < nrows; ++r)
            for (int64_t k = rowptr[r]; k < rowptr[r + 1]; ++k) {
                const int64_t c = cols[k];
                if (c < c0 || c >= c1) continue;
                const int64_t pos = cursor[c - c0]++;
                t_rows[pos] = (I)r;
                t_vals[pos] = vals[k];
            }
        delete[] cursor;
    }
}

extern "C" {

// The CSR kernels take their column indices as int16 (index_bytes = 2: up to 32767 columns, half the
// index traffic) or int32.
void g2g_csr_spmm(int64_t nrows, int64_t Bp, int64_t chunk, const int64_t* rowptr, const void* cols,
                  int index_bytes, const float* vals, const float* X, int64_t ldx, const float* init, int64_t ldi,
                  const float* bias, const int64_t* dst, float* Y, int64_t ldy, int nthreads) {
    if (index_bytes == 2)
        csr_spmm(nrows, Bp, chunk, rowptr, (const int16_t*)cols, vals, X, ldx, init, ldi, bias, dst, Y, ldy, nthreads);
    else
        csr_spmm(nrows, Bp, chunk, rowptr, (const int32_t*)cols, vals, X, ldx, init, ldi, bias, dst, Y, ldy, nthreads);
}

void g2g_csr_sddmm(int64_t nrows, int64_t Bp, const int64_t* rowptr, const void* cols, int index_bytes,
                   const float* A, int64_t lda, const float* X, int64_t ldx, float* out, int nthreads) {
    if (index_bytes == 2)
        csr_sddmm(nrows, Bp, rowptr, (const int16_t*)cols, A, lda, X, ldx, out, nthreads);
    else
        csr_sddmm(nrows, Bp, rowptr, (const int32_t*)cols, A, lda, X, ldx, out, nthreads);
}

void g2g_csr_transpose(int64_t nrows, int64_t ncols, const int64_t* rowptr, const void* cols, int index_bytes,
                       const float* vals, const int64_t* colptr, void* t_rows, float* t_vals, int nthreads) {
    if (index_bytes == 2)
        csr_transpose(nrows, ncols, rowptr, (const int16_t*)cols, vals, colptr, (int16_t*)t_rows, t_vals, nthreads);
    else
        csr_transpose(nrows, ncols, rowptr, (const int32_t*)cols, vals, colptr, (int32_t*)t_rows, t_vals, nthreads);
}

// The same with T x T tiles (T % 4 == 0). transposed = 0: tile rows are output rows (trowptr/tcols by
// tile row, tidx NULL: tile t is the t-th stored). transposed = 1: the input gradient, tiles by tile
// column (trowptr/tcols of the transposed pattern, tidx = stored index of each tile).
void g2g_bsr_spmm(int64_t nrows, int64_t Bp, int T, int transposed, const int64_t* trowptr,
                  const int32_t* tcols, const int32_t* tidx, const float* tvals, const float* X, int64_t ldx,
                  const float* init, int64_t ldi, const float* bias, const int64_t* dst, float* Y, int64_t ldy,
                  int nthreads) {
    const int si = transposed ? 1 : T, sc = transposed ? T : 1;
    #pragma omp parallel num_threads(nthreads)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        const int64_t quads = nrows / 4;
        const int64_t q0 = quads * t / nt, q1 = quads * (t + 1) / nt;
        for (int64_t c0 = 0; c0 < Bp; c0 += CHUNK) {
            const int nv = (int)((Bp - c0 < CHUNK ? Bp - c0 : CHUNK) / 16);
            for (int64_t q = q0; q < q1; ++q) {
#define CALL(N) bsr_rows4<N>(4 * q, c0, trowptr, tcols, tidx, tvals, T, si, sc, X, ldx, init, ldi, bias, dst, Y, ldy)
                DISPATCH_NV(nv, CALL)
#undef CALL
            }
        }
    }
}

// The weight gradient of tiles: out[t*T*T + q*T + c] = dot(A[tr*T + q], X[tcols[t]*T + c]) over the
// batch, 4 rows x 4 columns of a tile at a time (16 accumulators, 8 vector loads per 16 FMAs).
void g2g_bsr_sddmm(int64_t ntrows, int64_t Bp, int T, const int64_t* trowptr, const int32_t* tcols,
                   const float* A, int64_t lda, const float* X, int64_t ldx, float* out, int nthreads) {
    #pragma omp parallel num_threads(nthreads)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        const int64_t tr0 = ntrows * t / nt, tr1 = ntrows * (t + 1) / nt;
        const int64_t nv = Bp / 16;
        for (int64_t tr = tr0; tr < tr1; ++tr)
            for (int64_t k = trowptr[tr]; k < trowptr[tr + 1]; ++k) {
                const float* xt = X + (int64_t)tcols[k] * T * ldx;
                const float* at = A + tr * T * lda;
                float* o = out + k * T * T;
                for (int q = 0; q < T; q += 4)
                    for (int c = 0; c < T; c += 4) {
                        v16 acc[16];
                        for (int m = 0; m < 16; ++m) acc[m] = vbcast(0.f);
                        for (int64_t v = 0; v < nv; ++v) {
                            v16 a[4], x[4];
                            for (int i = 0; i < 4; ++i) a[i] = vload(at + (int64_t)(q + i) * lda + 16 * v);
                            for (int j = 0; j < 4; ++j) x[j] = vload(xt + (int64_t)(c + j) * ldx + 16 * v);
                            for (int i = 0; i < 4; ++i)
                                for (int j = 0; j < 4; ++j) acc[SLOT[4 * i + j]] += a[i] * x[j];
                        }
                        const v16 r = reduce16(acc);
                        for (int i = 0; i < 4; ++i)
                            for (int j = 0; j < 4; ++j) o[(q + i) * T + c + j] = r[4 * i + j];
                    }
            }
    }
}

// out[i, b] = x[b * sb + perm[i] * si] for b < B, 0 for B <= b < ldo (gather + transpose; perm optional).
void g2g_gather_t(const float* x, int64_t B, int64_t sb, int64_t si, const int64_t* perm, int64_t n,
                  float* out, int64_t ldo, int nthreads) {
    #pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t i0 = 0; i0 < n; i0 += 16) {
        const int64_t i1 = i0 + 16 < n ? i0 + 16 : n;
        if (sb == 1) {  // x is itself a transposed view: row copies
            for (int64_t i = i0; i < i1; ++i) {
                memcpy(out + i * ldo, x + (perm ? perm[i] : i) * si, B * sizeof(float));
                memset(out + i * ldo + B, 0, (ldo - B) * sizeof(float));
            }
            continue;
        }
        for (int64_t b0 = 0; b0 < B; b0 += 16) {  // 16x16 blocks: both sides stay in L1
            const int64_t b1 = b0 + 16 < B ? b0 + 16 : B;
            for (int64_t i = i0; i < i1; ++i) {
                const float* src = x + (perm ? perm[i] : i) * si;
                float* o = out + i * ldo;
                for (int64_t b = b0; b < b1; ++b) o[b] = src[b * sb];
            }
        }
        for (int64_t i = i0; i < i1; ++i) memset(out + i * ldo + B, 0, (ldo - B) * sizeof(float));
    }
}

}  // extern "C"
