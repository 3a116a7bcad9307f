// CPU kernels of the G2G layer's fast path (float32). Built at first use by g2gnet/kernels/native.py
// with one g++ call (no torch headers: about a second), loaded with ctypes (argument types read from
// the extern "C" prototypes at the end of this file), and called only from g2gnet/kernels, which
// checks dtype, shape, stride and device of every tensor before its pointer reaches this file.
//
// Layout: training activations are *transposed*, [features, Bp] with a row stride ld >= Bp (Bp = the
// batch padded to a multiple of 16, pad columns zero). Each nonzero weight then touches one contiguous
// row of Bp floats: vector FMAs from cache instead of a gather over the batch. The sparse products work
// in batch chunks so that the chunk of the dense operand stays in a core's L2 while all rows stream
// through it. The inter-group part of a layer is either CSR (element-wise masks) or BSR with T x T
// tiles stored row-major (tiled masks); rows and columns are in group-sorted order. The inference
// kernel (small batches) works on the untransposed input instead (see there).
//
// Vectors are the target's own width (VW floats: 16 with AVX-512, 8 with AVX/AVX2, else 4), and the
// register blocks are sized to its register file (32 or 16 vector registers): a block that does not
// fit spills every accumulator to the stack on each nonzero, which costs ten times the FMA. OpenMP
// resolves to the libgomp torch already loaded, so both share one thread pool. Threads own static row
// ranges and never wait on each other (robust when cores are shared).

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include <algorithm>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(__AVX__)
#include <immintrin.h>
#endif

#if defined(__AVX512F__)
#define VW 16
#define REGS 32
#elif defined(__AVX__)
#define VW 8
#define REGS 16
#else
#define VW 4
#define REGS 16
#endif

typedef float vf __attribute__((vector_size(VW * 4)));
typedef float vfu __attribute__((vector_size(VW * 4), aligned(4), may_alias));  // unaligned access

static inline vf vload(const float* p) { return *(const vfu*)p; }
static inline void vstore(float* p, vf v) { *(vfu*)p = v; }
// s in every lane. (Not `(vf){} + s`: that is 0 + s, a scalar add the compiler must keep (it turns -0 into
// +0) plus a register shuffle, and the zero vector takes a register: in the BSR block it left too few
// for the operands, which were then reloaded for every row, 16 loads per 12 FMAs.)
static inline vf vbcast(float s) {
#if VW == 16
    return (vf){s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s};
#elif VW == 8
    return (vf){s, s, s, s, s, s, s, s};
#else
    return (vf){s, s, s, s};
#endif
}
// ReLU as torch.relu computes it: NaN stays NaN (a NaN compares false), -0.0 stays -0.0.
static inline vf relu_v(vf v) { return v < vbcast(0.f) ? vbcast(0.f) : v; }

// Keeps v in a register: a vector that several FMAs read is then loaded once (GCC otherwise folds
// the load into every FMA, and a 4-row block reloads each operand 4 times: load-bound, not FMA-bound).
static inline void in_register(vf& v) {
#if defined(__x86_64__) || defined(__i386__)
    __asm__("" : "+x"(v));
#else
    (void)v;
#endif
}
// The sum of a vector's lanes as a tree of halves (log2 VW dependent adds, not VW - 1: at batch 1 the
// inference kernel reduces twice per output row, and a serial chain cost ~30 cycles a row).
static inline float hsum(vf v) {
#if VW == 16
    typedef float h8 __attribute__((vector_size(32)));
    const h8 s8 = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) + __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
#elif VW == 8
    const vf s8 = v;
#endif
#if VW >= 8
    typedef float h4 __attribute__((vector_size(16)));
    const h4 s4 = __builtin_shufflevector(s8, s8, 0, 1, 2, 3) + __builtin_shufflevector(s8, s8, 4, 5, 6, 7);
#else
    const vf s4 = v;
#endif
    typedef float h2 __attribute__((vector_size(8)));
    const h2 s2 = __builtin_shufflevector(s4, s4, 0, 1) + __builtin_shufflevector(s4, s4, 2, 3);
    return s2[0] + s2[1];
}

// Every loop over a register block is unrolled, so that its accumulators live in registers (an
// array that stays an array lives on the stack).
#define UNROLL _Pragma("GCC unroll 16")

// Vectors per register block of each kernel (accumulators + operands fit the register file).
// CSR rows: NV accumulators in one or two chains (csr_chains). BSR: 4 rows x NV accumulators and NV
// operand vectors. With 16 registers, 8 vectors in one chain beat 4 in two (1.07x at 2048 wide: half
// the passes over the weights, 8 FMAs in flight either way), and 4 x 3 beat 4 x 2 (1.15x with tiles).
#if REGS == 32
#define CSR_NV_DEFAULT 8
#define BSR_NV_DEFAULT 4
#else
#define CSR_NV_DEFAULT 8
#define BSR_NV_DEFAULT 3
#endif
#ifndef CSR_NV
#define CSR_NV CSR_NV_DEFAULT
#endif
#ifndef BSR_NV
#define BSR_NV BSR_NV_DEFAULT
#endif
#define SDDMM_NV 4        // SDDMM: NV gradient vectors + VW accumulators
// BSR product: tiles per pass over a tile row (0: all in one pass), so that a pass's activation rows
// (BSR_KC x T rows of a batch block) stay in L1 while the row's quads run through them (2-8: within
// noise of each other, 1.03-1.07x faster than one pass at 2048 wide).
#ifndef BSR_KC
#define BSR_KC 4
#endif
#define BSR_RB 4          // BSR SDDMM: RB x CB tile entries at once (VW accumulators)
#define BSR_CB (VW / 4)

// Software prefetch distance (nonzeros) of the CSR product: a nonzero's activation row is a random
// row of an L2-resident block, which no hardware prefetcher predicts; fetching it PD nonzeros ahead
// hides the L2 latency (-15% at 2048 wide on Zen 4). The SDDMM has none: there the extra load-port
// work cost more than it saved (measured).
#ifndef PD
#define PD 16
#endif

// ---- VW dot products at once, reduced with a shuffle tree (VW - 1 adds instead of VW hsums) ----------
// reduce(a) returns lane L = sum of a[SLOT[L]] (SLOT: bit reversal of the lane index): accumulate
// nonzero m into slot SLOT[m].
#if VW == 16
static const int SLOT[16] = {0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15};
static inline vf reduce(const vf* a) {
    vf b[8], c[4], d[2];
    UNROLL
    for (int i = 0; i < 8; ++i)
        b[i] = __builtin_shufflevector(a[2*i], a[2*i+1], 0,1,2,3,4,5,6,7, 16,17,18,19,20,21,22,23)
             + __builtin_shufflevector(a[2*i], a[2*i+1], 8,9,10,11,12,13,14,15, 24,25,26,27,28,29,30,31);
    UNROLL
    for (int i = 0; i < 4; ++i)
        c[i] = __builtin_shufflevector(b[2*i], b[2*i+1], 0,1,2,3, 16,17,18,19, 8,9,10,11, 24,25,26,27)
             + __builtin_shufflevector(b[2*i], b[2*i+1], 4,5,6,7, 20,21,22,23, 12,13,14,15, 28,29,30,31);
    UNROLL
    for (int i = 0; i < 2; ++i)
        d[i] = __builtin_shufflevector(c[2*i], c[2*i+1], 0,1, 16,17, 4,5, 20,21, 8,9, 24,25, 12,13, 28,29)
             + __builtin_shufflevector(c[2*i], c[2*i+1], 2,3, 18,19, 6,7, 22,23, 10,11, 26,27, 14,15, 30,31);
    return __builtin_shufflevector(d[0], d[1], 0,16, 2,18, 4,20, 6,22, 8,24, 10,26, 12,28, 14,30)
         + __builtin_shufflevector(d[0], d[1], 1,17, 3,19, 5,21, 7,23, 9,25, 11,27, 13,29, 15,31);
}
#elif VW == 8
static const int SLOT[8] = {0, 4, 2, 6, 1, 5, 3, 7};
static inline vf reduce(const vf* a) {
    vf b[4], c[2];
    UNROLL
    for (int i = 0; i < 4; ++i)  // [a(2i) half sums | a(2i+1) half sums]
        b[i] = __builtin_shufflevector(a[2*i], a[2*i+1], 0,1,2,3, 8,9,10,11)
             + __builtin_shufflevector(a[2*i], a[2*i+1], 4,5,6,7, 12,13,14,15);
    UNROLL
    for (int i = 0; i < 2; ++i)
        c[i] = __builtin_shufflevector(b[2*i], b[2*i+1], 0,1, 8,9, 4,5, 12,13)
             + __builtin_shufflevector(b[2*i], b[2*i+1], 2,3, 10,11, 6,7, 14,15);
    return __builtin_shufflevector(c[0], c[1], 0,8, 2,10, 4,12, 6,14)
         + __builtin_shufflevector(c[0], c[1], 1,9, 3,11, 5,13, 7,15);
}
#else
static const int SLOT[4] = {0, 1, 2, 3};
static inline vf reduce(const vf* a) {
    const vf b0 = __builtin_shufflevector(a[0], a[1], 0,1,4,5) + __builtin_shufflevector(a[0], a[1], 2,3,6,7);
    const vf b1 = __builtin_shufflevector(a[2], a[3], 0,1,4,5) + __builtin_shufflevector(a[2], a[3], 2,3,6,7);
    return __builtin_shufflevector(b0, b1, 0,2,4,6) + __builtin_shufflevector(b0, b1, 1,3,5,7);
}
#endif

// ---- CSR rows: y = init + bias + sum_k vals[k] * X[cols[k]] over NV vectors of the batch ------------
// Two chains of NV accumulators while both fit the register file (with the two weights), else one:
// either way at least 8 FMAs are in flight, which covers their latency.
constexpr bool csr_two_chains(int nv) { return 2 * nv + 2 <= REGS; }

template <int NV, typename I>
static inline void csr_row(int64_t kb, int64_t ke, const I* cols, const float* vals, const float* X,
                           int64_t ldx, const float* src, float addb, float* y, int relu) {
    vf a[NV], b[NV];
    UNROLL
    for (int j = 0; j < NV; ++j) {
        a[j] = (src ? vload(src + VW * j) : vbcast(0.f)) + vbcast(addb);
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
            UNROLL
            for (int j = 0; j < NV * VW; j += 16) { __builtin_prefetch(p0 + j, 0, 3); __builtin_prefetch(p1 + j, 0, 3); }
        }
#endif
        const vf w0 = vbcast(vals[k]), w1 = vbcast(vals[k + 1]);
        UNROLL
        for (int j = 0; j < NV; ++j) {
            a[j] += w0 * vload(x0 + VW * j);
            if constexpr (csr_two_chains(NV)) b[j] += w1 * vload(x1 + VW * j);
            else a[j] += w1 * vload(x1 + VW * j);
        }
    }
    if (k < ke) {
        const float* x0 = X + (int64_t)cols[k] * ldx;
        const vf w0 = vbcast(vals[k]);
        UNROLL
        for (int j = 0; j < NV; ++j) a[j] += w0 * vload(x0 + VW * j);
    }
    UNROLL
    for (int j = 0; j < NV; ++j) {
        const vf v = csr_two_chains(NV) ? a[j] + b[j] : a[j];
        vstore(y + VW * j, relu ? relu_v(v) : v);
    }
}

// CALL(N) (a macro of the caller's) for a batch chunk's register block of nv vectors, 1 <= nv <= CSR_NV,
// N a constant. (A generic lambda instead changed GCC's inlining: 0.93-0.99x on the CSR products.)
#if CSR_NV > 4
#define CSR_BLOCKS(nv) switch (nv) { case 1: CALL(1); break; case 2: CALL(2); break; case 3: CALL(3); break; \
    case 4: CALL(4); break; case 5: CALL(5); break; case 6: CALL(6); break; case 7: CALL(7); break;           \
    default: CALL(CSR_NV); break; }
#else
#define CSR_BLOCKS(nv) switch (nv) { case 1: CALL(1); break; case 2: CALL(2); break; case 3: CALL(3); break; \
    default: CALL(CSR_NV); break; }
#endif

// Y[dst[r]] = init[r] + bias[dst[r]] + (CSR row r) @ X for r < nrows (dst, init, bias optional), in
// passes over at most `chunk` batch columns (the caller's L2 budget) and the register block's width;
// relu = 1: ReLU applied as the rows are stored (a stack's hidden layer: no second pass over Y).
template <typename I>
static void csr_spmm(int64_t nrows, int64_t Bp, int64_t chunk, const int64_t* rowptr, const I* cols,
                     const float* vals, const float* X, int64_t ldx, const float* init, int64_t ldi,
                     const float* bias, const int64_t* dst, float* Y, int64_t ldy, int relu, int nthreads) {
    const int64_t width = chunk < CSR_NV * VW ? chunk : CSR_NV * VW;
    #pragma omp parallel num_threads(nthreads)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        const int64_t r0 = nrows * t / nt, r1 = nrows * (t + 1) / nt;
        for (int64_t c0 = 0; c0 < Bp;) {
            const int64_t nv = (Bp - c0 < width ? Bp - c0 : width) / VW;
            for (int64_t r = r0; r < r1; ++r) {
                const int64_t d = dst ? dst[r] : r;
                float* y = Y + d * ldy + c0;
                const float* src = init ? init + r * ldi + c0 : 0;
                const float addb = bias ? bias[d] : 0.f;
                const int64_t kb = rowptr[r], ke = rowptr[r + 1];
#define CALL(N) csr_row<N>(kb, ke, cols, vals, X + c0, ldx, src, addb, y, relu)
                CSR_BLOCKS(nv);
#undef CALL
            }
            c0 += nv * VW;
        }
    }
}

// Where thread t of nt starts in rows [0, n] split by their entries (ptr: a row pointer): the first row
// before which share t / nt of all entries lie. Tile rows hold a random number of tiles (a binomial
// count): split by count of rows, one thread had up to ~5% more work than the other (by entries: the
// tile products 1.03-1.07x at 2048 wide, tiles 32; the whole layer within noise).
// extra: entries every row holds besides its own (a BSR row's dense block tiles).
static inline int64_t split_rows(const int64_t* ptr, int64_t n, int t, int nt, int64_t extra = 0) {
    if (t <= 0) return 0;
    if (t >= nt) return n;
    const int64_t goal = (ptr[n] - ptr[0] + extra * n) * t / nt;
    int64_t lo = 0, hi = n;  // the first row r with ptr[r] - ptr[0] + extra * r >= goal
    while (lo < hi) {
        const int64_t mid = (lo + hi) / 2;
        if (ptr[mid] - ptr[0] + extra * mid < goal) lo = mid + 1; else hi = mid;
    }
    return lo;
}

// ---- BSR rows: 4 output rows share every loaded X vector (4 FMAs per load) --------------------------
// A tile row's entries: first its dense diagonal block (when the layer has one), read from the blocks'
// own storage as nb virtual tiles, then its stored tiles. Weight (i, c) of the 4-row slab starting at
// row q of a tile is w[(q + i) * si + c * sc]: a stored tile as stored is (T, 1), transposed (1, T) (the
// input gradient, no copy of the values); a block row-major [rows, K] is (K, 1), transposed (1, rows).
struct BsrRow {
    const int32_t* tcols;  // stored tiles: tile column (tile row's own range of trowptr)
    const int32_t* tidx;   // stored index of each tile (NULL: the t-th)
    const float* tvals;    // stored tiles' values, T x T each
    int si, sc;            // strides of a stored tile's weights
    const float* wb;       // the block's weights at this tile row's first row (NULL: no block)
    int64_t sib, scb;      // strides of the block's weights
    int64_t xb;            // the block's first activation row
    int64_t nb;            // the block's virtual tiles (its columns / T)
};

template <int NV>
static inline void bsr_rows4(int64_t r0, int64_t c0, int64_t vb, int64_t ve, int64_t t0, int first, int relu,
                             const BsrRow& row, int T, const float* X, int64_t ldx, const float* init, int64_t ldi,
                             const float* bias, const int64_t* dst, float* Y, int64_t ldy) {
    const int q = (int)(r0 % T);
    vf a[4][NV];
    UNROLL
    for (int i = 0; i < 4; ++i) {
        const int64_t d = dst ? dst[r0 + i] : r0 + i;
        UNROLL
        for (int j = 0; j < NV; ++j) {
            if (!first) {  // a later pass over this row's tiles: go on from what the last one stored
                a[i][j] = vload(Y + d * ldy + c0 + VW * j);
                continue;
            }
            a[i][j] = init ? vload(init + (r0 + i) * ldi + c0 + VW * j) : vbcast(0.f);
            if (bias) a[i][j] += vbcast(bias[d]);
        }
    }
    for (int64_t v = vb; v < ve; ++v) {  // virtual tile v: a block tile (v < nb) or stored tile t0 + v - nb
        const float* xt;
        const float* wt;
        int64_t si, sc;
        if (v < row.nb) {
            xt = X + (row.xb + v * T) * ldx + c0;
            wt = row.wb + v * T * row.scb;
            si = row.sib, sc = row.scb;
        } else {
            const int64_t t = t0 + v - row.nb;
            xt = X + (int64_t)row.tcols[t] * T * ldx + c0;
            wt = row.tvals + (row.tidx ? row.tidx[t] : t) * T * T;
            si = row.si, sc = row.sc;
        }
        for (int c = 0; c < T; ++c) {
            vf xv[NV];
            UNROLL
            for (int j = 0; j < NV; ++j) {
                xv[j] = vload(xt + (int64_t)c * ldx + VW * j);
                in_register(xv[j]);
            }
            UNROLL
            for (int i = 0; i < 4; ++i) {
                const vf w = vbcast(wt[(q + i) * si + c * sc]);
                UNROLL
                for (int j = 0; j < NV; ++j) a[i][j] += w * xv[j];
            }
        }
    }
    UNROLL
    for (int i = 0; i < 4; ++i) {
        const int64_t d = dst ? dst[r0 + i] : r0 + i;
        UNROLL
        for (int j = 0; j < NV; ++j) vstore(Y + d * ldy + c0 + VW * j, relu ? relu_v(a[i][j]) : a[i][j]);
    }
}

// ---- SDDMM: out[k] (+)= sum_c A[r, c] * X[cols[k], c] over NV vectors of the batch ----------------------
template <int NV, typename I>
static inline void sddmm_row(int64_t r, int64_t c0, int first, const int64_t* rowptr, const I* cols,
                             const float* A, int64_t lda, const float* X, int64_t ldx, float* out) {
    vf g[NV];
    UNROLL
    for (int j = 0; j < NV; ++j) g[j] = vload(A + r * lda + c0 + VW * j);
    int64_t k = rowptr[r];
    const int64_t e = rowptr[r + 1];
    for (; k + VW <= e; k += VW) {
        vf acc[VW];
        UNROLL
        for (int m = 0; m < VW; ++m) {
            const float* x = X + (int64_t)cols[k + m] * ldx + c0;
            vf s = g[0] * vload(x);
            UNROLL
            for (int j = 1; j < NV; ++j) s += g[j] * vload(x + VW * j);
            acc[SLOT[m]] = s;
        }
        const vf s = reduce(acc);
        vstore(out + k, first ? s : vload(out + k) + s);
    }
    for (; k < e; ++k) {
        const float* x = X + (int64_t)cols[k] * ldx + c0;
        vf s = g[0] * vload(x);
        UNROLL
        for (int j = 1; j < NV; ++j) s += g[j] * vload(x + VW * j);
        out[k] = first ? hsum(s) : out[k] + hsum(s);
    }
}

// out[k] = dot(A[row of k], X[cols[k]]) over the batch, for every CSR entry k (the weight gradient).
template <typename I>
static void csr_sddmm(int64_t nrows, int64_t Bp, const int64_t* rowptr, const I* cols, const float* A,
                      int64_t lda, const float* X, int64_t ldx, float* out, int nthreads) {
    // Batch chunks (X's chunk stays in L2), static row ranges per thread, no barrier: a thread owns
    // the outputs of its rows across all chunks.
    #pragma omp parallel num_threads(nthreads)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        const int64_t r0 = nrows * t / nt, r1 = nrows * (t + 1) / nt;
        for (int64_t c0 = 0; c0 < Bp; c0 += SDDMM_NV * VW) {
            const int nv = (int)((Bp - c0 < SDDMM_NV * VW ? Bp - c0 : SDDMM_NV * VW) / VW);
            const int first = c0 == 0;
            for (int64_t r = r0; r < r1; ++r) {
#define CALL(N) sddmm_row<N>(r, c0, first, rowptr, cols, A, lda, X, ldx, out)
                switch (nv) { case 1: CALL(1); break; case 2: CALL(2); break; case 3: CALL(3); break; default: CALL(4); }
#undef CALL
            }
        }
    }
}

// The transposed pattern of a CSR: each entry's row, and (each array not null) its value and its place
// within its CSR row (the row's k-th entry: place rowptr[row] + k), colptr = its column starts. Thread
// t owns a range of columns and builds it TR_CB columns at a time (TR_CB / 2 with three arrays to
// write): one pass over the rows moves every row's entries of
// those columns (a row's columns ascend, so a cursor per row resumes where the last block stopped), so
// each entry is read once and the writes go to TR_CB column streams that stay in L1 (a pass over all
// columns at once wrote to every column's stream: at 4096 wide 8192 lines in flight, out of L2).
#ifndef TR_CB
#define TR_CB 256
#endif
// Rows ahead whose next entries a block's pass prefetches: each row's segment of a block is a short
// run that no hardware prefetcher predicts (the rows are ~n_out / 8 entries apart). Cold caches,
// interleaved A/B of the transposition alone (benchmarks/transpose_ab.py): 1.05-1.09x at 2048 wide,
// 1.36-1.54x at 4096, within noise at 1024; a 4096 layer's forward + backward 1.03x.
#ifndef TR_PD
#define TR_PD 4
#endif
template <typename I>
static void csr_transpose(int64_t nrows, int64_t ncols, const int64_t* rowptr, const I* cols, const float* vals,
                          const int64_t* colptr, I* t_rows, float* t_vals, I* t_off, int nthreads) {
    #pragma omp parallel num_threads(nthreads)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        const int64_t c0 = ncols * t / nt, c1 = ncols * (t + 1) / nt;
        if (c0 < c1) {
            int64_t* cur = new int64_t[nrows + TR_CB];
            int64_t* wpos = cur + nrows;
            for (int64_t r = 0; r < nrows; ++r)  // each row's first entry in a column >= c0
                cur[r] = std::lower_bound(cols + rowptr[r], cols + rowptr[r + 1], c0) - cols;
            // Three arrays' streams: half as many columns a pass (rows, values and 4-byte places: 2048
            // wide, cold caches, 1.9-3.0 ms against 2.8-3.8 with all TR_CB; 4096: 9.3-11.6 against
            // 14.9-16.6; with two arrays TR_CB / 2 was within noise or slower).
            const int64_t cb = t_vals && t_off ? TR_CB / 2 : TR_CB;
            for (int64_t b0 = c0; b0 < c1; b0 += cb) {
                const int64_t b1 = b0 + cb < c1 ? b0 + cb : c1;
                for (int64_t c = b0; c < b1; ++c) wpos[c - b0] = colptr[c];
                for (int64_t r = 0; r < nrows; ++r) {
                    if (TR_PD > 0 && r + TR_PD < nrows) {
                        const int64_t kp = cur[r + TR_PD];
                        __builtin_prefetch(cols + kp);
                        if (t_vals) {
                            __builtin_prefetch(vals + kp);
                            __builtin_prefetch(vals + kp + 16);  // a segment spans ~2 lines of values
                        }
                    }
                    int64_t k = cur[r];
                    const int64_t e = rowptr[r + 1];
                    for (; k < e && cols[k] < b1; ++k) {
                        const int64_t pos = wpos[cols[k] - b0]++;
                        t_rows[pos] = (I)r;
                        if (t_vals) t_vals[pos] = vals[k];
                        if (t_off) t_off[pos] = (I)(k - rowptr[r]);
                    }
                    cur[r] = k;
                }
            }
            delete[] cur;
        }
    }
}

// The values in the order of a transposed pattern that a layout keeps (rows and places within them, from
// csr_transpose): t_vals[k] = vals[rowptr[t_rows[k]] + t_off[k]]. Consecutive entries of a column sit in
// rows ~n_out / 8 entries apart, a line each that no hardware prefetcher predicts: the place GA_PD entries
// ahead is asked for (2048 and 4096 wide, 2 threads, as fractions of a dense matmul: none 0.10, 32
// 0.07-0.08, 64 0.05-0.06, 128 0.05-0.06; the transposition it replaces at every backward 0.13-0.24).
#ifndef GA_PD
#define GA_PD 128
#endif
// Entry k's place in the CSR (its row's start plus its place within the row): what a kept transposed
// pattern stores instead of a 4-byte place.
template <typename I>
static inline int64_t csr_place(const int64_t* rowptr, const I* t_rows, const I* t_off, int64_t k) {
    return rowptr[t_rows[k]] + t_off[k];
}
template <typename I>
static void csr_gather(int64_t n, const I* t_rows, const I* t_off, const int64_t* rowptr, const float* vals,
                       float* t_vals, int nthreads) {
    #pragma omp parallel num_threads(nthreads)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        const int64_t k0 = n * t / nt, k1 = n * (t + 1) / nt;
        int64_t k = k0;
        for (; k + GA_PD < k1; ++k) {
            __builtin_prefetch(vals + csr_place(rowptr, t_rows, t_off, k + GA_PD));
            t_vals[k] = vals[csr_place(rowptr, t_rows, t_off, k)];
        }
        for (; k < k1; ++k) t_vals[k] = vals[csr_place(rowptr, t_rows, t_off, k)];
    }
}

// ---- Both gradients of the inter part in one pass: the input gradient and the weight gradient ----------
// Rows of the transposed pattern (input features i); entry k = weight (o, i) = t_vals[k], at CSR place
// p_k = rowptr[o_k] + t_off[k]:
//   gX[dst[i]] = init[i] + sum_k t_vals[k] * A[o_k]   (A: the output gradient, [out, Bp])
//   gv[p_k] = dot(A[o_k], X[i])                        (X: the layer's input, [in, Bp])
// Both read the same row A[o_k], so it is loaded once for two FMAs: the two products apart loaded an
// L2 line of A (input gradient) and one of X (weight gradient) per entry and batch vector. Each row takes
// its batch chunks one after another (NV vectors: gX's chunk in registers); X's row and the entries'
// partial dot products (a vector each, summed over the chunks in a row scratch) stay in L1; the row's dot
// products are then reduced VW at a time. Threads own rows split by entries: each gX row and each gv
// entry has one writer. In one process against the two products apart (benchmarks/grads_ab.py, 2
// threads, batch 256, results/bench/cpu/grads-ab.txt, two runs): the two with their transposition
// 1.10-1.16x, 1.22-1.25x, 1.16-1.18x at 1024, 2048, 4096 wide; a layer's forward + backward 1.06-1.07x,
// 1.11-1.13x, 1.06-1.07x. Batch chunks outer (the output gradient's chunk in L2, VW entries reduced per
// chunk), 4-vector chunks, blocks of rows with chunks outer, and prefetching the next chunk's lines were
// slower (grads-tried.txt); so was gathering each row's weights in the kernel (from the places, before
// the row's chunks: 0.69 of a dense matmul against 0.58 at 2048; in the first chunk's pass: 0.73).
template <int NV, typename I>
static inline void grads_row_chunk(int64_t kb, int64_t ke, int first, const I* t_rows, const float* t_vals,
                                   const float* A, int64_t lda, const float* x, const float* src, float* y, vf* scr) {
    vf acc[NV];
    UNROLL
    for (int j = 0; j < NV; ++j) acc[j] = src ? vload(src + VW * j) : vbcast(0.f);
    for (int64_t k = kb; k < ke; ++k) {
        const float* a = A + (int64_t)t_rows[k] * lda;
#if PD > 0
        if (k + PD < ke) {
            const float* p = A + (int64_t)t_rows[k + PD] * lda;
            UNROLL
            for (int j = 0; j < NV * VW; j += 16) __builtin_prefetch(p + j, 0, 3);
        }
#endif
        const vf w = vbcast(t_vals[k]);
        vf s0 = vbcast(0.f), s1 = vbcast(0.f);  // two chains: the dot product's FMAs wait on each other
        UNROLL
        for (int j = 0; j < NV; ++j) {
            vf aj = vload(a + VW * j);
            in_register(aj);  // one load for both FMAs
            acc[j] += w * aj;
            if (j & 1) s1 += vload(x + VW * j) * aj; else s0 += vload(x + VW * j) * aj;
        }
        scr[k - kb] = first ? s0 + s1 : scr[k - kb] + s0 + s1;
    }
    UNROLL
    for (int j = 0; j < NV; ++j) vstore(y + VW * j, acc[j]);
}

template <typename I>
static void csr_grads(int64_t nrows, int64_t Bp, const int64_t* t_rowptr, const I* t_rows, const I* t_off,
                      const int64_t* rowptr, const float* t_vals, const float* A, int64_t lda, const float* X,
                      int64_t ldx, const float* init, int64_t ldi, const int64_t* dst, float* Y, int64_t ldy,
                      float* gv, int nthreads) {
    #pragma omp parallel num_threads(nthreads)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        const int64_t r0 = split_rows(t_rowptr, nrows, t, nt), r1 = split_rows(t_rowptr, nrows, t + 1, nt);
        int64_t most = 0;
        for (int64_t r = r0; r < r1; ++r) most = std::max(most, t_rowptr[r + 1] - t_rowptr[r]);
        vf* scr = new vf[most + 1];  // (C++17: aligned to the vector)
        for (int64_t r = r0; r < r1; ++r) {
            const int64_t kb = t_rowptr[r], ke = t_rowptr[r + 1];
            float* y = Y + (dst ? dst[r] : r) * ldy;
            for (int64_t c0 = 0; c0 < Bp;) {
                const int64_t nv = (Bp - c0 < CSR_NV * VW ? Bp - c0 : CSR_NV * VW) / VW;
                const float* src = init ? init + r * ldi + c0 : 0;
#define CALL(N) grads_row_chunk<N>(kb, ke, c0 == 0, t_rows, t_vals, A + c0, lda, X + r * ldx + c0, src, y + c0, scr)
                CSR_BLOCKS(nv);
#undef CALL
                c0 += nv * VW;
            }
            int64_t k = kb;
            for (; k + VW <= ke; k += VW) {
                vf a[VW];
                UNROLL
                for (int m = 0; m < VW; ++m) a[SLOT[m]] = scr[k - kb + m];
                const vf s = reduce(a);
                UNROLL
                for (int m = 0; m < VW; ++m) gv[csr_place(rowptr, t_rows, t_off, k + m)] = s[m];
            }
            for (; k < ke; ++k) gv[csr_place(rowptr, t_rows, t_off, k)] = hsum(scr[k - kb]);
        }
        delete[] scr;
    }
}

// ---- Inference at small batches (B <= 16): one pass over the packed weights ------------------------
// At batch 1 the cost is the bytes of the weights (dense blocks + values + indices), so every weight is
// read once, and the input (a few KB) is what stays in L1: weight-stationary, one output row at a time
// with all B samples in registers. Two copies of the sorted input: rows [B, n_in] (contiguous along
// the input: dot products with block rows and tile rows) and columns [n_in, NB] (the B samples of one
// input together: one load per nonzero of the CSR part). Rows are split statically over the threads.
// The dot product of w and x (n floats) as a vector of partial sums (lane 0 takes the scalar tail): four
// chains (one would wait on each FMA's latency), reduced with other rows' vectors (reduce) by the caller.
static inline vf dot_vec(const float* w, const float* x, int64_t n) {
    vf a0 = vbcast(0.f), a1 = a0, a2 = a0, a3 = a0;
    int64_t c = 0;
    for (; c + 4 * VW <= n; c += 4 * VW) {
        a0 += vload(w + c) * vload(x + c); a1 += vload(w + c + VW) * vload(x + c + VW);
        a2 += vload(w + c + 2 * VW) * vload(x + c + 2 * VW); a3 += vload(w + c + 3 * VW) * vload(x + c + 3 * VW);
    }
    for (; c + VW <= n; c += VW) a0 += vload(w + c) * vload(x + c);
    vf s = (a0 + a1) + (a2 + a3);
    float t = 0.f;
    for (; c < n; ++c) t += w[c] * x[c];
    s[0] += t;
    return s;
}

typedef uint8_t vb __attribute__((vector_size(VW)));
typedef uint8_t vbu __attribute__((vector_size(VW), aligned(1), may_alias));

// VW mask bytes (0/1) as floats. With AVX2 one widening and one conversion; GCC made the generic
// conversion eight scalar ones, whose registers pushed an accumulator of the masked block row to the stack.
static inline vf mask_vec(const uint8_t* m) {
#if defined(__AVX2__) && VW == 8
    return (vf)_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)m)));
#else
    return __builtin_convertvector(*(const vbu*)m, vf);
#endif
}

// acc[b] += sum_c w[c] (m[c]) x[b * ldx + c] for b < NB: one block row against all samples at once
// (NB independent chains; the row is read once). m: the block's mask bytes (0/1), or null.
template <int NB>
static inline void block_row(const float* w, const uint8_t* m, const float* x, int64_t ldx, int64_t n, float* acc) {
    vf a[NB];
    UNROLL
    for (int b = 0; b < NB; ++b) a[b] = vbcast(0.f);
    int64_t c = 0;
    // Two loops, not one with the mask test inside: there the mask's conversion took registers and one
    // accumulator went through the stack on every step (NB = 8: a store and reload in its FMA chain).
    if (m) {
        for (; c + VW <= n; c += VW) {
            const vf wv = vload(w + c) * mask_vec(m + c);
            UNROLL
            for (int b = 0; b < NB; ++b) a[b] += wv * vload(x + b * ldx + c);
        }
    } else {
        for (; c + VW <= n; c += VW) {
            const vf wv = vload(w + c);
            UNROLL
            for (int b = 0; b < NB; ++b) a[b] += wv * vload(x + b * ldx + c);
        }
    }
    UNROLL
    for (int b = 0; b < NB; ++b) {
        float s = hsum(a[b]);
        for (int64_t k = c; k < n; ++k) s += (m ? m[k] : 1) * w[k] * x[b * ldx + k];
        acc[b] += s;
    }
}

#if defined(__AVX2__)
// x[c[0..8)] as a vector (batch 1): the x values loaded one by one (AVX2 gathers were slower here: 0.88x
// on Zen 3).
template <typename I>
static inline __m256 gather8(const float* x, const I* c) {
    const __m128 lo = _mm_set_ps(x[c[3]], x[c[2]], x[c[1]], x[c[0]]);
    const __m128 hi = _mm_set_ps(x[c[7]], x[c[6]], x[c[5]], x[c[4]]);
    return _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
}

// int16 indices: four per 64-bit load, taken apart with shifts (the load ports, not the ALUs, are the
// limit here: 11 loads per 8 nonzeros instead of 17).
template <>
inline __m256 gather8<int16_t>(const float* x, const int16_t* c) {
    uint64_t u, v;
    memcpy(&u, c, 8);
    memcpy(&v, c + 4, 8);
    const __m128 lo = _mm_set_ps(x[(uint16_t)(u >> 48)], x[(uint16_t)(u >> 32)], x[(uint16_t)(u >> 16)], x[(uint16_t)u]);
    const __m128 hi = _mm_set_ps(x[(uint16_t)(v >> 48)], x[(uint16_t)(v >> 32)], x[(uint16_t)(v >> 16)], x[(uint16_t)v]);
    return _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
}

// sum_k vals[k] * x[cols[k]] for kb <= k < ke (batch 1) as a vector of partial sums, reduced with other
// rows' vectors by the caller. A row's last < 8 nonzeros are one masked vector while 8 entries from kb on
// exist (nnz: the entries in all): the next row's indices are valid, and the lanes past ke are zeroed
// after the gather (a serial scalar tail cost ~10 cycles a row, at ~135 nonzeros a row).
template <typename I>
static inline vf sparse_vec(int64_t kb, int64_t ke, int64_t nnz, const I* cols, const float* vals, const float* x) {
    __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
    int64_t k = kb;
    for (; k + 16 <= ke; k += 16) {
        a = _mm256_fmadd_ps(_mm256_loadu_ps(vals + k), gather8(x, cols + k), a);
        b = _mm256_fmadd_ps(_mm256_loadu_ps(vals + k + 8), gather8(x, cols + k + 8), b);
    }
    if (k + 8 <= ke) {
        a = _mm256_fmadd_ps(_mm256_loadu_ps(vals + k), gather8(x, cols + k), a);
        k += 8;
    }
    float t = 0.f;
    if (k < ke && k + 8 <= nnz) {
        const __m256 m = _mm256_castsi256_ps(
            _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(ke - k)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
        b = _mm256_fmadd_ps(_mm256_and_ps(_mm256_loadu_ps(vals + k), m), _mm256_and_ps(gather8(x, cols + k), m), b);
    } else {
        for (; k < ke; ++k) t += vals[k] * x[cols[k]];
    }
    a = _mm256_add_ps(a, b);
#if VW == 8
    vf s = (vf)a;
#else  // an AVX-512 build: the 8 floats in the low half
    typedef float h8 __attribute__((vector_size(32)));
    const h8 a8 = (h8)a, z8 = {};
    vf s = __builtin_shufflevector(a8, z8, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
#endif
    s[0] += t;
    return s;
}
#else
template <typename I>
static inline vf sparse_vec(int64_t kb, int64_t ke, int64_t, const I* cols, const float* vals, const float* x) {
    float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f;  // four chains: the adds' latency is not the limit
    int64_t k = kb;
    for (; k + 4 <= ke; k += 4) {
        a0 += vals[k] * x[cols[k]]; a1 += vals[k + 1] * x[cols[k + 1]];
        a2 += vals[k + 2] * x[cols[k + 2]]; a3 += vals[k + 3] * x[cols[k + 3]];
    }
    for (; k < ke; ++k) a0 += vals[k] * x[cols[k]];
    vf s = vbcast(0.f);
    s[0] = (a0 + a1) + (a2 + a3);
    return s;
}
#endif

// acc[VW * j + b] += (a[j] + c[j])[b]: two chains of whole vectors into the per-sample sums.
template <int NV>
static inline void add_chains(const vf* a, const vf* c, float* acc) {
    UNROLL
    for (int j = 0; j < NV; ++j) {
        const vf t = a[j] + c[j];
        UNROLL
        for (int b = 0; b < VW; ++b) acc[VW * j + b] += t[b];
    }
}

// Independent accumulator chains for NV-vector sums: at least four FMAs in flight (two chains of one
// vector each waited on the FMA latency: 0.5 nonzeros a cycle).
constexpr int chains(int nv) { return nv >= 2 ? 2 : 4; }

// acc[VW * j + b] += (sum over the CH chains a[h][j])[b].
template <int CH, int NV>
static inline void add_all_chains(vf (*a)[NV], float* acc) {
    UNROLL
    for (int h = 2; h < CH; ++h)
        UNROLL
        for (int j = 0; j < NV; ++j) a[h & 1][j] += a[h][j];
    add_chains<NV>(a[0], a[1], acc);
}

// Four samples in a 128-bit vector (below the vector width: NB = 3 or 4).
typedef float v4 __attribute__((vector_size(16)));
typedef float v4u __attribute__((vector_size(16), aligned(4), may_alias));
static inline v4 v4fma(v4 a, float w, const float* x) { return a + ((v4){} + w) * *(const v4u*)x; }
static inline void add_v4(v4 a0, v4 a1, v4 a2, v4 a3, float* acc) {
    const v4 t = (a0 + a1) + (a2 + a3);
    UNROLL
    for (int b = 0; b < 4; ++b) acc[b] += t[b];
}

// acc[b] += sum_k vals[k] * xc[cols[k] * NB + b] for b < NB: two chains; in whole vectors when NB
// is a multiple of the vector width (NB scalar sums would not stay in registers).
template <int NB, typename I>
static inline void csr_samples(int64_t k, int64_t e, const I* cols, const float* vals, const float* xc, float* acc) {
    if constexpr (NB % VW == 0) {
        constexpr int NV = NB / VW, CH = chains(NV);
        vf a[CH][NV];
        UNROLL
        for (int h = 0; h < CH; ++h)
            UNROLL
            for (int j = 0; j < NV; ++j) a[h][j] = vbcast(0.f);
        for (; k + CH <= e; k += CH)
            UNROLL
            for (int h = 0; h < CH; ++h) {
                const vf w = vbcast(vals[k + h]);
                const float* x0 = xc + (int64_t)cols[k + h] * NB;
                UNROLL
                for (int j = 0; j < NV; ++j) a[h][j] += w * vload(x0 + VW * j);
            }
        for (; k < e; ++k) {
            const vf w = vbcast(vals[k]);
            const float* x0 = xc + (int64_t)cols[k] * NB;
            UNROLL
            for (int j = 0; j < NV; ++j) a[0][j] += w * vload(x0 + VW * j);
        }
        add_all_chains<CH, NV>(a, acc);
    } else if constexpr (NB == 4) {  // four chains of 128-bit vectors
        v4 a0 = {}, a1 = {}, a2 = {}, a3 = {};
        for (; k + 4 <= e; k += 4) {
            a0 = v4fma(a0, vals[k], xc + (int64_t)cols[k] * 4);
            a1 = v4fma(a1, vals[k + 1], xc + (int64_t)cols[k + 1] * 4);
            a2 = v4fma(a2, vals[k + 2], xc + (int64_t)cols[k + 2] * 4);
            a3 = v4fma(a3, vals[k + 3], xc + (int64_t)cols[k + 3] * 4);
        }
        for (; k < e; ++k) a0 = v4fma(a0, vals[k], xc + (int64_t)cols[k] * 4);
        add_v4(a0, a1, a2, a3, acc);
#if defined(__SSE2__)
    } else if constexpr (NB == 2) {  // two samples: one 64-bit load into the low half of a vector
        __m128 a0 = _mm_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
#define X2(j) _mm_castpd_ps(_mm_load_sd((const double*)(xc + (int64_t)cols[j] * 2)))
        for (; k + 4 <= e; k += 4) {
            a0 = _mm_add_ps(a0, _mm_mul_ps(_mm_set1_ps(vals[k]), X2(k)));
            a1 = _mm_add_ps(a1, _mm_mul_ps(_mm_set1_ps(vals[k + 1]), X2(k + 1)));
            a2 = _mm_add_ps(a2, _mm_mul_ps(_mm_set1_ps(vals[k + 2]), X2(k + 2)));
            a3 = _mm_add_ps(a3, _mm_mul_ps(_mm_set1_ps(vals[k + 3]), X2(k + 3)));
        }
        for (; k < e; ++k) a0 = _mm_add_ps(a0, _mm_mul_ps(_mm_set1_ps(vals[k]), X2(k)));
#undef X2
        const __m128 t = _mm_add_ps(_mm_add_ps(a0, a1), _mm_add_ps(a2, a3));
        acc[0] += _mm_cvtss_f32(t);
        acc[1] += _mm_cvtss_f32(_mm_shuffle_ps(t, t, 1));
#endif
    } else {
        float a[NB], c[NB];
        UNROLL
        for (int b = 0; b < NB; ++b) a[b] = c[b] = 0.f;
        for (; k + 1 < e; k += 2) {
            const float w0 = vals[k], w1 = vals[k + 1];
            const float* x0 = xc + (int64_t)cols[k] * NB;
            const float* x1 = xc + (int64_t)cols[k + 1] * NB;
            UNROLL
            for (int b = 0; b < NB; ++b) { a[b] += w0 * x0[b]; c[b] += w1 * x1[b]; }
        }
        if (k < e) {
            const float w0 = vals[k];
            const float* x0 = xc + (int64_t)cols[k] * NB;
            UNROLL
            for (int b = 0; b < NB; ++b) a[b] += w0 * x0[b];
        }
        UNROLL
        for (int b = 0; b < NB; ++b) acc[b] += a[b] + c[b];
    }
}

// acc[b] += sum_c w[c] * xc[c * NB + b] for c < T, b < NB: row q of one T x T tile against all samples
// (xc: the tile's first input, samples together), two chains of whole vectors when NB allows.
template <int NB>
static inline void tile_samples(const float* w, const float* xc, int T, float* acc) {
    if constexpr (NB % VW == 0) {
        constexpr int NV = NB / VW, CH = chains(NV);
        vf a[CH][NV];
        UNROLL
        for (int h = 0; h < CH; ++h)
            UNROLL
            for (int j = 0; j < NV; ++j) a[h][j] = vbcast(0.f);
        for (int k = 0; k < T; k += CH)  // T % 4 == 0
            UNROLL
            for (int h = 0; h < CH; ++h) {
                const vf wk = vbcast(w[k + h]);
                const float* x0 = xc + (int64_t)(k + h) * NB;
                UNROLL
                for (int j = 0; j < NV; ++j) a[h][j] += wk * vload(x0 + VW * j);
            }
        add_all_chains<CH, NV>(a, acc);
    } else if constexpr (NB == 4) {  // four chains of 128-bit vectors
        v4 a0 = {}, a1 = {}, a2 = {}, a3 = {};
        for (int k = 0; k < T; k += 4) {  // T % 4 == 0
            a0 = v4fma(a0, w[k], xc + (int64_t)k * 4);
            a1 = v4fma(a1, w[k + 1], xc + (int64_t)(k + 1) * 4);
            a2 = v4fma(a2, w[k + 2], xc + (int64_t)(k + 2) * 4);
            a3 = v4fma(a3, w[k + 3], xc + (int64_t)(k + 3) * 4);
        }
        add_v4(a0, a1, a2, a3, acc);
#if defined(__SSE2__)
    } else if constexpr (NB == 2) {  // two samples: four inputs' pairs in two 128-bit loads
        __m128 a0 = _mm_setzero_ps(), a1 = a0;
        for (int k = 0; k < T; k += 4) {  // lanes: (k, b0) (k, b1) (k+1, b0) (k+1, b1), ...
            const __m128 w01 = _mm_set_ps(w[k + 1], w[k + 1], w[k], w[k]);
            const __m128 w23 = _mm_set_ps(w[k + 3], w[k + 3], w[k + 2], w[k + 2]);
            a0 = _mm_add_ps(a0, _mm_mul_ps(w01, _mm_loadu_ps(xc + (int64_t)k * 2)));
            a1 = _mm_add_ps(a1, _mm_mul_ps(w23, _mm_loadu_ps(xc + (int64_t)k * 2 + 4)));
        }
        const __m128 t = _mm_add_ps(a0, a1);  // (b0, b1, b0, b1)
        const __m128 u = _mm_add_ps(t, _mm_movehl_ps(t, t));
        acc[0] += _mm_cvtss_f32(u);
        acc[1] += _mm_cvtss_f32(_mm_shuffle_ps(u, u, 1));
#endif
    } else {
        float a[NB];
        UNROLL
        for (int b = 0; b < NB; ++b) a[b] = 0.f;
        for (int k = 0; k < T; ++k) {
            const float wk = w[k];
            UNROLL
            for (int b = 0; b < NB; ++b) a[b] += wk * xc[(int64_t)k * NB + b];
        }
        UNROLL
        for (int b = 0; b < NB; ++b) acc[b] += a[b];
    }
}

// acc[b] += sum over the tiles t0 <= t < t1 of row q of tile t . xr[b, its T inputs] for b < NB, T a
// multiple of VW: the samples' rows (contiguous along the input) against the weight row, per VW inputs
// one load of weights and NB of inputs for NB full-width FMAs, the NB vector sums kept across the row's
// tiles and reduced once. (tile_samples, on the samples-together copy, spends a broadcast and a load on
// every input and sample vector: with tiles of 32 this is 1.15-1.67x faster at batch 2-16 at 4096 wide,
// 1.14-1.56x at 2048, results/bench/cpu/infer-tiles-ab.txt; where infer_rows uses it, below.) Two chains
// per sample below 8 samples: at least 8 FMAs in flight.
template <int NB, typename I>
static inline void tile_rows(const float* vals, const I* cols, int64_t t0, int64_t t1, int T, int64_t q,
                             const float* xr, int64_t ldr, float* acc) {
    constexpr int CH = NB < 8 ? 2 : 1;
    vf a[CH][NB];
    UNROLL
    for (int h = 0; h < CH; ++h)
        UNROLL
        for (int b = 0; b < NB; ++b) a[h][b] = vbcast(0.f);
    for (int64_t t = t0; t < t1; ++t) {
        const float* w = vals + t * T * T + q * T;
        const float* x = xr + (int64_t)cols[t] * T;
        int c = 0;
        for (; c + CH * VW <= T; c += CH * VW)
            UNROLL
            for (int h = 0; h < CH; ++h) {
                const vf wv = vload(w + c + VW * h);
                UNROLL
                for (int b = 0; b < NB; ++b) a[h][b] += wv * vload(x + b * ldr + c + VW * h);
            }
        if (c < T) {  // CH = 2 and T an odd multiple of VW
            const vf wv = vload(w + c);
            UNROLL
            for (int b = 0; b < NB; ++b) a[0][b] += wv * vload(x + b * ldr + c);
        }
    }
    UNROLL
    for (int b = 0; b < NB; ++b) acc[b] += hsum(CH == 2 ? a[0][b] + a[CH - 1][b] : a[0][b]);
}

// Whether infer_rows takes a tile row against NB samples' input rows (tile_rows) rather than the
// samples-together copy (tile_samples): where the copy ran part-width vectors (NB below the width) or
// a tile has 4 vectors per row. Narrower tiles at 8-16 samples keep the copy, whose tile is one
// contiguous run: a 4096 layer's tile row of 16 x 16 tiles reads more than L1 holds, and 8 separate
// lines per tile then miss where the copy's run streams (batch 8 0.83x with the input rows; tiles 32,
// two lines per sample, 1.37-1.40x faster with them).
static inline bool tiles_by_rows(int64_t NB, int64_t T) { return T % VW == 0 && (NB < VW || T >= 4 * VW); }

// Batch 1: VW rows at a time, each row's sums (block row, tiles or CSR entries) kept as one vector and
// the VW vectors reduced together (reduce: VW - 1 shuffles and adds instead of a tree per row and part).
template <typename I>
static void infer_rows1(int64_t r0, int64_t r1, int64_t og, int64_t ig, const float* intra, const uint8_t* bmask,
                        int T, const int64_t* rowptr, const I* cols, int64_t nnz, const float* vals,
                        const float* bias, const int64_t* out_perm, const float* x, float* y) {
    for (int64_t r = r0; r < r1; r += VW) {
        const int n = r1 - r < VW ? (int)(r1 - r) : VW;
        vf a[VW];
        UNROLL
        for (int m = 0; m < VW; ++m) a[m] = vbcast(0.f);
        for (int m = 0; m < n; ++m) {
            const int64_t row = r + m;
            vf s = vbcast(0.f);
            if (og) {
                const int64_t g = row / og;
                if (bmask) {
                    float t = 0.f;
                    block_row<1>(intra + row * ig, bmask + row * ig, x + g * ig, 0, ig, &t);
                    s[0] = t;
                } else {
                    s = dot_vec(intra + row * ig, x + g * ig, ig);
                }
            }
            if (T) {
                const int64_t tr = row / T, q = row - tr * T;
                for (int64_t t = rowptr[tr]; t < rowptr[tr + 1]; ++t)
                    s += dot_vec(vals + t * T * T + q * T, x + (int64_t)cols[t] * T, T);
            } else {
                s += sparse_vec(rowptr[row], rowptr[row + 1], nnz, cols, vals, x);
            }
            a[SLOT[m]] = s;
        }
        const vf sums = reduce(a);
        for (int m = 0; m < n; ++m) {
            const int64_t d = out_perm ? out_perm[r + m] : r + m;
            y[d] = sums[m] + (bias ? bias[d] : 0.f);
        }
    }
}

template <int NB, typename I>
static void infer_rows(int64_t B, int64_t r0, int64_t r1, int64_t n_in, int64_t og, int64_t ig, const float* intra,
                       const uint8_t* bmask, int T, const int64_t* rowptr, const I* cols, const float* vals,
                       const float* bias, const int64_t* out_perm, const float* xr, int64_t ldr, const float* xc,
                       float* y, int64_t ldy) {
    for (int64_t r = r0; r < r1; ++r) {
        float acc[NB];
        UNROLL
        for (int b = 0; b < NB; ++b) acc[b] = 0.f;
        if (og) {  // the ensemble's dense block row (NB = 16 in two halves: 16 chains would spill)
            const int64_t g = r / og;
            const uint8_t* m = bmask ? bmask + r * ig : 0;
            if (NB <= 8 || REGS == 32) {
                block_row<NB <= 8 || REGS == 32 ? NB : 8>(intra + r * ig, m, xr + g * ig, ldr, ig, acc);
            } else {
                block_row<8>(intra + r * ig, m, xr + g * ig, ldr, ig, acc);
                block_row<8>(intra + r * ig, m, xr + 8 * ldr + g * ig, ldr, ig, acc + 8);
            }
        }
        if (T) {  // tiles: row q of every tile of the tile row, a dot with T contiguous inputs
            const int64_t tr = r / T, q = r - tr * T;
            if (tiles_by_rows(NB, T)) {  // (NB = 16 in halves: 16 chains would spill)
                if constexpr (NB <= 8 || REGS == 32) {
                    tile_rows<NB>(vals, cols, rowptr[tr], rowptr[tr + 1], T, q, xr, ldr, acc);
                } else {
                    tile_rows<8>(vals, cols, rowptr[tr], rowptr[tr + 1], T, q, xr, ldr, acc);
                    tile_rows<8>(vals, cols, rowptr[tr], rowptr[tr + 1], T, q, xr + 8 * ldr, ldr, acc + 8);
                }
            } else {
                for (int64_t t = rowptr[tr]; t < rowptr[tr + 1]; ++t) {
                    const float* w = vals + t * T * T + q * T;
                    const int64_t c0 = (int64_t)cols[t] * T;
                    tile_samples<NB>(w, xc + c0 * NB, T, acc);
                }
            }
        } else {
            csr_samples<NB>(rowptr[r], rowptr[r + 1], cols, vals, xc, acc);
        }
        const int64_t d = out_perm ? out_perm[r] : r;
        const float bb = bias ? bias[d] : 0.f;
        for (int b = 0; b < NB && b < B; ++b) y[b * ldy + d] = acc[b] + bb;
    }
}

// g where the ReLU's output m[k] (if m) is > 0, else 0: the ReLU's backward as torch's threshold_backward
// computes it (m NaN: g), applied by the gathers as they copy a gradient.
static inline float relu_grad(float g, const float* m, int64_t k) { return m && m[k] <= 0.f ? 0.f : g; }

#ifndef GATHER_T8
#define GATHER_T8 1
#endif
#if defined(__AVX__) && GATHER_T8
// out[p[j], b] = x[b * sb + j] (p = the inverse of perm, or the identity), zero for B <= b < ldo, through
// relu_grad with m (x's strides) if given: the transposed gather of g2g_gather_t with contiguous source
// columns. The source is read in 8 x 8 blocks (8 rows of the batch, 8 consecutive columns: whole
// vectors; m's vectors compared as relu_grad compares), transposed in registers and
// written as 8-float pieces of the destination rows, which each thread fills front to back. Reading
// the source column by column in perm's order instead touched a separate cache line for every
// element (perm is random for the random grouping).
static inline void transpose8(__m256* r) {
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20); r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20); r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31); r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31); r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

static void gather_t8(const float* x, const float* m, int64_t B, int64_t sb, const int64_t* perm, int64_t n,
                      float* out, int64_t ldo, int nthreads) {
    int64_t* inv = perm ? (int64_t*)malloc(sizeof(int64_t) * n) : 0;
    if (perm)
        for (int64_t i = 0; i < n; ++i) inv[perm[i]] = i;
    const int64_t nb = n / 8 * 8, bb = B / 8 * 8;
    #pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t j0 = 0; j0 < n; j0 += 8) {
        int64_t dst[8];
        const int64_t w = j0 + 8 <= n ? 8 : n - j0;
        for (int c = 0; c < w; ++c) dst[c] = inv ? inv[j0 + c] : j0 + c;
        if (j0 < nb) {
            for (int64_t b0 = 0; b0 < bb; b0 += 8) {
                __m256 r[8];
                for (int k = 0; k < 8; ++k) r[k] = _mm256_loadu_ps(x + (b0 + k) * sb + j0);
                if (m)
                    for (int k = 0; k < 8; ++k)
                        r[k] = _mm256_andnot_ps(_mm256_cmp_ps(_mm256_loadu_ps(m + (b0 + k) * sb + j0),
                                                              _mm256_setzero_ps(), _CMP_LE_OQ), r[k]);
                transpose8(r);
                for (int c = 0; c < 8; ++c) _mm256_storeu_ps(out + dst[c] * ldo + b0, r[c]);
            }
        }
        for (int c = 0; c < w; ++c) {  // the batch tail (B % 8), the column tail (n % 8), the zero padding
            float* o = out + dst[c] * ldo;
            for (int64_t b = j0 < nb ? bb : 0; b < B; ++b) o[b] = relu_grad(x[b * sb + j0 + c], m, b * sb + j0 + c);
            memset(o + B, 0, (ldo - B) * sizeof(float));
        }
    }
    free(inv);
}
#endif

extern "C" {

// The CSR kernels take their column indices as int16 (index_bytes = 2: up to 32767 columns, half the
// index traffic) or int32.
void g2g_csr_spmm(int64_t nrows, int64_t Bp, int64_t chunk, const int64_t* rowptr, const void* cols,
                  int index_bytes, const float* vals, const float* X, int64_t ldx, const float* init, int64_t ldi,
                  const float* bias, const int64_t* dst, float* Y, int64_t ldy, int relu, int nthreads) {
    if (index_bytes == 2)
        csr_spmm(nrows, Bp, chunk, rowptr, (const int16_t*)cols, vals, X, ldx, init, ldi, bias, dst, Y, ldy, relu, nthreads);
    else
        csr_spmm(nrows, Bp, chunk, rowptr, (const int32_t*)cols, vals, X, ldx, init, ldi, bias, dst, Y, ldy, relu, nthreads);
}

void g2g_csr_sddmm(int64_t nrows, int64_t Bp, const int64_t* rowptr, const void* cols, int index_bytes,
                   const float* A, int64_t lda, const float* X, int64_t ldx, float* out, int nthreads) {
    if (index_bytes == 2)
        csr_sddmm(nrows, Bp, rowptr, (const int16_t*)cols, A, lda, X, ldx, out, nthreads);
    else
        csr_sddmm(nrows, Bp, rowptr, (const int32_t*)cols, A, lda, X, ldx, out, nthreads);
}

void g2g_csr_transpose(int64_t nrows, int64_t ncols, const int64_t* rowptr, const void* cols, int index_bytes,
                       const float* vals, const int64_t* colptr, void* t_rows, float* t_vals, void* t_off,
                       int nthreads) {
    if (index_bytes == 2)
        csr_transpose(nrows, ncols, rowptr, (const int16_t*)cols, vals, colptr, (int16_t*)t_rows, t_vals,
                      (int16_t*)t_off, nthreads);
    else
        csr_transpose(nrows, ncols, rowptr, (const int32_t*)cols, vals, colptr, (int32_t*)t_rows, t_vals,
                      (int32_t*)t_off, nthreads);
}

// t_vals[k] = vals[rowptr[t_rows[k]] + t_off[k]]: the values in the order of a transposed pattern (rows and
// places within them from g2g_csr_transpose).
void g2g_csr_gather(int64_t n, const void* t_rows, const void* t_off, int index_bytes, const int64_t* rowptr,
                    const float* vals, float* t_vals, int nthreads) {
    if (index_bytes == 2)
        csr_gather(n, (const int16_t*)t_rows, (const int16_t*)t_off, rowptr, vals, t_vals, nthreads);
    else
        csr_gather(n, (const int32_t*)t_rows, (const int32_t*)t_off, rowptr, vals, t_vals, nthreads);
}

// Y[dst[r]] = init[r] + (transposed CSR row r) @ A and gv[p_k] = dot(A[t_rows[k]], X[r]) for every entry k
// of row r, p_k = rowptr[t_rows[k]] + t_off[k] (see csr_grads); t_rowptr/t_rows/t_off from g2g_csr_transpose,
// t_vals from it or g2g_csr_gather.
void g2g_csr_grads(int64_t nrows, int64_t Bp, const int64_t* t_rowptr, const void* t_rows, const void* t_off,
                   int index_bytes, const int64_t* rowptr, const float* t_vals, const float* A, int64_t lda,
                   const float* X, int64_t ldx, const float* init, int64_t ldi, const int64_t* dst, float* Y,
                   int64_t ldy, float* gv, int nthreads) {
    if (index_bytes == 2)
        csr_grads(nrows, Bp, t_rowptr, (const int16_t*)t_rows, (const int16_t*)t_off, rowptr, t_vals, A, lda, X, ldx,
                  init, ldi, dst, Y, ldy, gv, nthreads);
    else
        csr_grads(nrows, Bp, t_rowptr, (const int32_t*)t_rows, (const int32_t*)t_off, rowptr, t_vals, A, lda, X, ldx,
                  init, ldi, dst, Y, ldy, gv, nthreads);
}

// The same with T x T tiles (T % 4 == 0). transposed = 0: tile rows are output rows (trowptr/tcols by
// tile row, tidx NULL: tile t is the t-th stored). transposed = 1: the input gradient, tiles by tile
// column (trowptr/tcols of the transposed pattern, tidx = stored index of each tile). blk: the layer's
// dense diagonal blocks (og, ig multiples of T) as this product sees them, [G, rpg, K] (forward: [G, og,
// ig]; transposed: [G, ig, og]), group g at blk + g * og * ig, entry (r, c) of a group at r * bsr + c * bsc;
// computed in the same pass as the tiles (NULL: none): one store per output row instead of a batched
// matmul's result read back as init (the forward product of a 2048-wide layer with 32 x 32 tiles
// 1.00-1.07x; the input gradient's, its transposed blocks read across rows, 0.97x: the layer
// passes blocks to the forward only, benchmarks/fused_blocks_ab.py).
void g2g_bsr_spmm(int64_t nrows, int64_t Bp, int T, int transposed, const int64_t* trowptr,
                  const int32_t* tcols, const int32_t* tidx, const float* tvals, const float* blk, int64_t og,
                  int64_t ig, int64_t bsr, int64_t bsc, const float* X, int64_t ldx, const float* init, int64_t ldi,
                  const float* bias, const int64_t* dst, float* Y, int64_t ldy, int relu, int nthreads) {
    // A block row of this product has K columns; this product's rows come rpg to a group.
    const int64_t rpg = transposed ? ig : og, K = transposed ? og : ig;
    const int64_t nb = blk ? K / T : 0;
    #pragma omp parallel num_threads(nthreads)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        const int64_t qpt = T / 4;  // quads per tile row
        const int64_t q0 = split_rows(trowptr, nrows / T, t, nt, nb) * qpt;
        const int64_t q1 = split_rows(trowptr, nrows / T, t + 1, nt, nb) * qpt;
        for (int64_t qb = q0; qb < q1;) {
            const int64_t tr = qb / qpt, qe = (tr + 1) * qpt < q1 ? (tr + 1) * qpt : q1;
            const int64_t t0 = trowptr[tr], n = nb + trowptr[tr + 1] - t0;
            BsrRow row{tcols, tidx, tvals, transposed ? 1 : T, transposed ? T : 1, nullptr, 0, 0, 0, nb};
            if (blk) {
                const int64_t g = tr * T / rpg, r = tr * T - g * rpg;  // group, first row inside it
                row.wb = blk + g * og * ig + r * bsr;
                row.sib = bsr;
                row.scb = bsc;
                row.xb = g * K;
            }
            // The row's tiles in passes of at most BSR_KC (equal shares). A pass's tiles stay in cache
            // while every batch block runs through them (batch blocks outside, the weights were read
            // from L3 once per block: 1.10-1.15x slower), and a block's activation rows stay in L1
            // while the row's quads run through them.
            const int64_t passes = BSR_KC > 0 && n > BSR_KC ? (n + BSR_KC - 1) / BSR_KC : 1;
            for (int64_t p = 0; p < passes; ++p) {
                const int64_t vb = n * p / passes, ve = n * (p + 1) / passes;
                for (int64_t c0 = 0; c0 < Bp; c0 += BSR_NV * VW) {
                    const int nv = (int)((Bp - c0 < BSR_NV * VW ? Bp - c0 : BSR_NV * VW) / VW);
                    for (int64_t q = qb; q < qe; ++q) {
#define CALL(N) bsr_rows4<N>(4 * q, c0, vb, ve, t0, p == 0, relu && p == passes - 1, row, T, X, ldx, init, ldi, bias, dst, Y, ldy)
                        switch (nv) {
                            case 1: CALL(1); break;
#if BSR_NV > 2
                            case 2: CALL(2); break;
                            case 3: CALL(3); break;
#endif
                            default: CALL(BSR_NV); break;
                        }
#undef CALL
                    }
                }
            }
            qb = qe;
        }
    }
}

// The weight gradient of tiles: out[t*T*T + q*T + c] = dot(A[tr*T + q], X[tcols[t]*T + c]) over the
// batch, BSR_RB rows x BSR_CB columns of a tile at a time (VW accumulators, one shuffle-tree reduce).
void g2g_bsr_sddmm(int64_t ntrows, int64_t Bp, int T, const int64_t* trowptr, const int32_t* tcols,
                   const float* A, int64_t lda, const float* X, int64_t ldx, float* out, int nthreads) {
    #pragma omp parallel num_threads(nthreads)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        const int64_t tr0 = split_rows(trowptr, ntrows, t, nt), tr1 = split_rows(trowptr, ntrows, t + 1, nt);
        const int64_t nv = Bp / VW;
        for (int64_t tr = tr0; tr < tr1; ++tr)
            for (int64_t k = trowptr[tr]; k < trowptr[tr + 1]; ++k) {
                const float* xt = X + (int64_t)tcols[k] * T * ldx;
                const float* at = A + tr * T * lda;
                float* o = out + k * T * T;
                for (int q = 0; q < T; q += BSR_RB)
                    for (int c = 0; c < T; c += BSR_CB) {
                        vf acc[VW];
                        UNROLL
                        for (int m = 0; m < VW; ++m) acc[m] = vbcast(0.f);
                        for (int64_t v = 0; v < nv; ++v) {
                            vf a[BSR_RB], x[BSR_CB];
                            UNROLL
                            for (int i = 0; i < BSR_RB; ++i) {
                                a[i] = vload(at + (int64_t)(q + i) * lda + VW * v);
                                in_register(a[i]);
                            }
                            UNROLL
                            for (int j = 0; j < BSR_CB; ++j) {
                                x[j] = vload(xt + (int64_t)(c + j) * ldx + VW * v);
                                in_register(x[j]);
                            }
                            UNROLL
                            for (int i = 0; i < BSR_RB; ++i)
                                UNROLL
                                for (int j = 0; j < BSR_CB; ++j) acc[SLOT[BSR_CB * i + j]] += a[i] * x[j];
                        }
                        const vf r = reduce(acc);
                        UNROLL
                        for (int i = 0; i < BSR_RB; ++i)
                            UNROLL
                            for (int j = 0; j < BSR_CB; ++j) o[(q + i) * T + c + j] = r[BSR_CB * i + j];
                    }
            }
    }
}

// The floats per vector of this build (*out): every kernel takes the batch columns Bp in multiples of it
// (kernels/ops.py pads the batch to one).
void g2g_vector_width(int64_t* out) { *out = VW; }

// out[i, b] = x[b * sb + perm[i] * si] for b < B, 0 for B <= b < ldo (gather + transpose; perm optional);
// with relu_out (x's strides): 0 where relu_out's element is <= 0 (relu_grad: a ReLU's backward fused into the copy).
void g2g_gather_t(const float* x, const float* relu_out, int64_t B, int64_t sb, int64_t si, const int64_t* perm,
                  int64_t n, float* out, int64_t ldo, int nthreads) {
#if defined(__AVX__) && GATHER_T8
    if (si == 1 && sb != 1 && B >= 8 && n >= 8) {
        gather_t8(x, relu_out, B, sb, perm, n, out, ldo, nthreads);
        return;
    }
#endif
    #pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t i0 = 0; i0 < n; i0 += 16) {
        const int64_t i1 = i0 + 16 < n ? i0 + 16 : n;
        if (sb == 1) {  // x is itself a transposed view: row copies
            for (int64_t i = i0; i < i1; ++i) {
                const int64_t k = (perm ? perm[i] : i) * si;
                float* o = out + i * ldo;
                if (relu_out)
                    for (int64_t b = 0; b < B; ++b) o[b] = relu_grad(x[k + b], relu_out, k + b);
                else
                    memcpy(o, x + k, B * sizeof(float));
                memset(o + B, 0, (ldo - B) * sizeof(float));
            }
            continue;
        }
        for (int64_t b0 = 0; b0 < B; b0 += 16) {  // 16x16 blocks: both sides stay in L1
            const int64_t b1 = b0 + 16 < B ? b0 + 16 : B;
            for (int64_t i = i0; i < i1; ++i) {
                const int64_t k = (perm ? perm[i] : i) * si;
                float* o = out + i * ldo;
                for (int64_t b = b0; b < b1; ++b) o[b] = relu_grad(x[k + b * sb], relu_out, k + b * sb);
            }
        }
        for (int64_t i = i0; i < i1; ++i) memset(out + i * ldo + B, 0, (ldo - B) * sizeof(float));
    }
}

// The arguments of g2g_infer as one struct: eager inference binds everything but the tensors of a call
// once per layout, and a call then costs one pointer through ctypes instead of 21 conversions. relu = 1:
// a ReLU after the product, on y while it is in L1 (as torch.relu: NaN stays NaN). (No comments inside
// the struct: kernels/native.py reads its fields from this text.)
struct g2g_infer_args {
    int64_t B;
    const float* x;
    int64_t ldx;
    const int64_t* in_perm;
    int64_t n_out;
    int64_t n_in;
    int64_t og;
    int64_t ig;
    const float* intra;
    const uint8_t* block_mask;
    int64_t T;
    const int64_t* rowptr;
    const void* cols;
    int64_t index_bytes;
    const float* vals;
    const float* bias;
    const int64_t* out_perm;
    float* y;
    int64_t ldy;
    float* work;
    int64_t nthreads;
    int64_t relu;
};

void g2g_infer(int64_t B, const float* x, int64_t ldx, const int64_t* in_perm, int64_t n_out, int64_t n_in,
               int64_t og, int64_t ig, const float* intra, const uint8_t* block_mask, int T, const int64_t* rowptr,
               const void* cols, int index_bytes, const float* vals, const float* bias, const int64_t* out_perm,
               float* y, int64_t ldy, float* work, int nthreads);

void g2g_infer_call(const struct g2g_infer_args* a) {
    g2g_infer(a->B, a->x, a->ldx, a->in_perm, a->n_out, a->n_in, a->og, a->ig, a->intra, a->block_mask, (int)a->T,
              a->rowptr, a->cols, (int)a->index_bytes, a->vals, a->bias, a->out_perm, a->y, a->ldy, a->work,
              (int)a->nthreads);
    if (a->relu)
        for (int64_t b = 0; b < a->B; ++b) {
            float* y = a->y + b * a->ldy;
            for (int64_t i = 0; i < a->n_out; ++i) y[i] = y[i] < 0.f ? 0.f : y[i];
        }
}

// Layers in turn, each list[i] as g2g_infer_call (list[i + 1]->x is list[i]->y): a model's hidden
// blocks served in one call, so no Python runs between the kernels (at batch 1 the Python between
// layers finds its objects evicted by the weights the kernel streamed, and cost as much as the kernels).
void g2g_infer_chain(const struct g2g_infer_args* const* list, int64_t n) {
    for (int64_t i = 0; i < n; ++i) g2g_infer_call(list[i]);
}

// y[b, out_perm[r]] = bias + (blocks + inter part) @ x[b, in_perm] for b < B <= 16, r < n_out: the
// inference kernel. x [B, n_in] and y [B, n_out] with row strides ldx, ldy; work: 16 * (2 * n_in + 16)
// floats of scratch (the sorted rows are 16 floats apart beyond n_in: at a multiple of 4 KB, the
// samples' rows of a block row share L1 sets and evict each other, 3x slower at batch 8). og = 0: no
// blocks; T = 0: CSR (cols int16 or int32 by index_bytes), else tiles.
void g2g_infer(int64_t B, const float* x, int64_t ldx, const int64_t* in_perm, int64_t n_out, int64_t n_in,
               int64_t og, int64_t ig, const float* intra, const uint8_t* block_mask, int T, const int64_t* rowptr,
               const void* cols, int index_bytes, const float* vals, const float* bias, const int64_t* out_perm,
               float* y, int64_t ldy, float* work, int nthreads) {
    const int NB = B <= 1 ? 1 : B <= 2 ? 2 : B <= 4 ? 4 : B <= 8 ? 8 : 16;
    const int64_t ldr = n_in + 16;
    float* xr = work;             // [B, n_in] with row stride ldr, sorted inputs
    float* xc = work + 16 * ldr;  // [n_in, NB], sorted inputs, samples together (zero-padded)
    for (int64_t b = 0; b < B; ++b)
        for (int64_t i = 0; i < n_in; ++i) xr[b * ldr + i] = x[b * ldx + (in_perm ? in_perm[i] : i)];
    // The rows from B to NB are read too (whole register blocks; their sums are not stored): zeros, not
    // what an earlier call left in the workspace (a NaN there costs nothing, a denormal would).
    for (int64_t b = B; b < NB; ++b) memset(xr + b * ldr, 0, n_in * sizeof(float));
    // The samples-together copy, for infer_rows' CSR part and its tiles that do not take the input
    // rows (batch 1, infer_rows1, reads the input rows alone): not built where nothing reads it.
    if (NB > 1 && !(T && tiles_by_rows(NB, T)))
        for (int64_t i = 0; i < n_in; ++i)
            UNROLL
            for (int b = 0; b < NB; ++b) xc[i * NB + b] = b < B ? xr[b * ldr + i] : 0.f;
    #pragma omp parallel num_threads(nthreads)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        // Tiles are rows of T: split on tile-row boundaries; else any row.
        const int64_t unit = T ? T : 1, units = n_out / unit;
        const int64_t r0 = units * t / nt * unit, r1 = units * (t + 1) / nt * unit;
#define ROWS(N, I) infer_rows<N, I>(B, r0, r1, n_in, og, ig, intra, block_mask, T, rowptr, (const I*)cols, vals, \
                                    bias, out_perm, xr, ldr, xc, y, ldy)
#define BY_INDEX(N) if (index_bytes == 2) ROWS(N, int16_t); else ROWS(N, int32_t)
        const int64_t nnz = T ? 0 : rowptr[n_out];
        switch (NB) {
            case 1:
                if (index_bytes == 2 && !T)
                    infer_rows1<int16_t>(r0, r1, og, ig, intra, block_mask, T, rowptr, (const int16_t*)cols, nnz, vals,
                                         bias, out_perm, xr, y);
                else
                    infer_rows1<int32_t>(r0, r1, og, ig, intra, block_mask, T, rowptr, (const int32_t*)cols, nnz, vals,
                                         bias, out_perm, xr, y);
                break;
            case 2: BY_INDEX(2); break;
            case 4: BY_INDEX(4); break;
            case 8: BY_INDEX(8); break;
            default: BY_INDEX(16); break;
        }
#undef BY_INDEX
#undef ROWS
    }
}

}  // extern "C"
