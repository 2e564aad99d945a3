/* One step of FuseUNet's multistep solve, forward and backward, as one pass over memory (nnunet_fuse/ode/native.py
 * builds this file with the system C compiler and calls it through ctypes).
 *
 * The same terms, in the same order, as the PyTorch operations of fused_solve.py (_forward_step_torch,
 * _backward_step_torch), which make one pass over memory per operation; equal to rounding (PyTorch's vectorised add
 * may fuse a multiply-add). Plain C99, no PyTorch or Python headers;
 * every array is contiguous and n elements long, masks are bytes 0/1 (torch.bool). Elements are processed in blocks
 * that stay in the L1 cache, each sum term over a whole block, so that the compiler vectorises the loops; blocks are
 * shared out by OpenMP (built with -fopenmp, the library links libgomp.so.1, which resolves to the one PyTorch has
 * loaded: the same thread pool and thread count as PyTorch's own operations).
 */
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define BLOCK 512
#define PARALLEL_BLOCKS _Pragma("omp parallel for schedule(static) if (n >= 65536)")

#define DEFINE_KERNELS(T, SUFFIX)                                                                                  \
                                                                                                                   \
/* max(g, z) as torch.maximum: NaN if either is NaN */                                                             \
static inline T maximum_##SUFFIX(T g, T z) { return (g > z || g != g) ? g : z; }                                  \
                                                                                                                   \
/* z_predicted = z + sum_j ab[j] hist[j]   (j < q, newest first);                                                  \
 * last step (g NULL): z_out = z_predicted;                                                                        \
 * otherwise, with a corrector (n_am > 0): mask_p = g > z_predicted,                                               \
 *     z_out = z + am[0] max(g, z_predicted) + sum_{j>=1} am[j] hist[j-1];                                         \
 * without: z_out = z_predicted; then f_out = max(g, z_out), mask_c = g > z_out.                                   \
 * z_out may be z; masks may be NULL (no autograd). */                                                             \
void forward_step_##SUFFIX(long n, const T *z, int q, const T *const *hist, const T *ab, const T *g, int n_am,      \
                           const T *am, T *z_out, T *f_out, uint8_t *mask_p, uint8_t *mask_c)                      \
{                                                                                                                  \
    PARALLEL_BLOCKS                                                                                                \
    for (long s = 0; s < n; s += BLOCK) {                                                                          \
        T predicted[BLOCK], next[BLOCK];                                                                           \
        const long m = n - s < BLOCK ? n - s : BLOCK;                                                              \
        const T *zs = z + s;                                                                                       \
        for (long b = 0; b < m; b++) predicted[b] = zs[b] + ab[0] * hist[0][s + b];                                \
        for (int j = 1; j < q; j++) {                                                                              \
            const T c = ab[j], *hj = hist[j] + s;                                                                  \
            for (long b = 0; b < m; b++) predicted[b] += c * hj[b];                                                \
        }                                                                                                          \
        if (!g) {                                                                                                  \
            for (long b = 0; b < m; b++) z_out[s + b] = predicted[b];                                              \
            continue;                                                                                              \
        }                                                                                                          \
        const T *gs = g + s;                                                                                       \
        if (n_am > 0) {                                                                                            \
            if (mask_p)                                                                                            \
                for (long b = 0; b < m; b++) mask_p[s + b] = gs[b] > predicted[b];                                 \
            for (long b = 0; b < m; b++) next[b] = zs[b] + am[0] * maximum_##SUFFIX(gs[b], predicted[b]);          \
            for (int j = 1; j < n_am; j++) {                                                                       \
                const T c = am[j], *hj = hist[j - 1] + s;                                                          \
                for (long b = 0; b < m; b++) next[b] += c * hj[b];                                                 \
            }                                                                                                      \
        } else {                                                                                                   \
            for (long b = 0; b < m; b++) next[b] = predicted[b];                                                   \
        }                                                                                                          \
        for (long b = 0; b < m; b++) {                                                                             \
            z_out[s + b] = next[b];                                                                                \
            f_out[s + b] = maximum_##SUFFIX(gs[b], next[b]);                                                       \
        }                                                                                                          \
        if (mask_c)                                                                                                \
            for (long b = 0; b < m; b++) mask_c[s + b] = gs[b] > next[b];                                          \
    }                                                                                                              \
}                                                                                                                  \
                                                                                                                   \
/* The adjoints of one step, y_adjoint (ya) updated in place:                                                      \
 * ya = grad (fresh) or ya + grad (grad may be NULL);                                                              \
 * if f_adj (the adjoint of f = max(g, -y) at the corrected state; with mask_c): g_adj = mask_c f_adj,             \
 *     ya = ya + g_adj - f_adj;                                                                                    \
 * if mask_p (corrector): through = mask_p ya, g_adj += scale through, p = through - ya; else p = ya;              \
 * for each history adjoint j: adj[j] = (fresh[j] ? 0 : adj[j]) + ca[j] ya + cp[j] p, a zero coefficient          \
 *     meaning no such term;                                                                                       \
 * with a corrector, finally ya += scale p. g_adj is written where f_adj is given. */                              \
void backward_step_##SUFFIX(long n, T *ya, const T *grad, int ya_fresh, const T *f_adj, const uint8_t *mask_c,     \
                            const uint8_t *mask_p, T scale, T *g_adj, int n_adj, T *const *adj,                    \
                            const int *adj_fresh, const T *ca, const T *cp)                                        \
{                                                                                                                  \
    PARALLEL_BLOCKS                                                                                                \
    for (long s = 0; s < n; s += BLOCK) {                                                                          \
        T y[BLOCK], p[BLOCK], ga[BLOCK];                                                                           \
        const long m = n - s < BLOCK ? n - s : BLOCK;                                                              \
        if (ya_fresh)                                                                                              \
            for (long b = 0; b < m; b++) y[b] = grad[s + b];                                                       \
        else if (grad)                                                                                             \
            for (long b = 0; b < m; b++) y[b] = ya[s + b] + grad[s + b];                                           \
        else                                                                                                       \
            for (long b = 0; b < m; b++) y[b] = ya[s + b];                                                         \
        if (f_adj) {                                                                                               \
            const T *fs = f_adj + s;                                                                               \
            for (long b = 0; b < m; b++) {                                                                         \
                ga[b] = (T)mask_c[s + b] * fs[b];                                                                  \
                y[b] = (y[b] + ga[b]) - fs[b];                                                                     \
            }                                                                                                      \
        }                                                                                                          \
        if (mask_p) {                                                                                              \
            for (long b = 0; b < m; b++) {                                                                         \
                const T through = (T)mask_p[s + b] * y[b];                                                         \
                ga[b] += scale * through;                                                                          \
                p[b] = through - y[b];                                                                             \
            }                                                                                                      \
        } else {                                                                                                   \
            for (long b = 0; b < m; b++) p[b] = y[b];                                                              \
        }                                                                                                          \
        if (f_adj)                                                                                                 \
            for (long b = 0; b < m; b++) g_adj[s + b] = ga[b];                                                     \
        for (int j = 0; j < n_adj; j++) {                                                                          \
            T *as = adj[j] + s;                                                                                    \
            const T c = ca[j], d = cp[j];                                                                          \
            if (adj_fresh[j] && c != 0)                                                                            \
                for (long b = 0; b < m; b++) as[b] = c * y[b];                                                     \
            else if (c != 0)                                                                                       \
                for (long b = 0; b < m; b++) as[b] += c * y[b];                                                    \
            if (adj_fresh[j] && c == 0)                                                                            \
                for (long b = 0; b < m; b++) as[b] = d * p[b];                                                     \
            else if (d != 0)                                                                                       \
                for (long b = 0; b < m; b++) as[b] += d * p[b];                                                    \
        }                                                                                                          \
        if (mask_p)                                                                                                \
            for (long b = 0; b < m; b++) ya[s + b] = y[b] + scale * p[b];                                          \
        else                                                                                                       \
            for (long b = 0; b < m; b++) ya[s + b] = y[b];                                                         \
    }                                                                                                              \
}

DEFINE_KERNELS(float, f32)
DEFINE_KERNELS(double, f64)

/* The threads a parallel step would use: PyTorch's torch.get_num_threads() where the runtime is PyTorch's; 1 serial */
int openmp_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
