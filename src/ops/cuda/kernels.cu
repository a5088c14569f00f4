// Device kernels of the conv, pooling and batch-norm ops (src/ops/*/cuda_kernel.rs), compiled once per
// device at run time with NVRTC, so they include no headers. Every kernel is a grid-stride loop
// over the elements it writes and gathers what it needs (batch norm's sums go in two steps):
// no atomics, so results are deterministic. Buffer layouts are row-major and stated above each
// kernel; `P = OH * OW`, `N = B * P`.

struct ConvGeom {
    int batch, channels;      // B, C (the input's channels)
    int h, w, oh, ow;         // input and output planes
    int kh, kw, sh, sw, ph, pw, dh, dw;
};

// Batch norm's sizes and settings for the kernels that finish its statistics.
struct BnStep {
    int batch, channels, plane;
    int shares;               // S: the blocks each channel's sums are split over
    double eps, momentum;
};

struct PoolGeom {
    int planes, h, w, oh, ow, kh, kw, sh, sw, ph, pw;
    int kind;                 // 0: max, 1: average (padded zeros counted)
};

#define GRID_STRIDE(i, n)                                                          \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)(n); \
         i += (size_t)blockDim.x * gridDim.x)

__device__ float exp_(float v) { return expf(v); }
__device__ double exp_(double v) { return exp(v); }
__device__ float tanh_(float v) { return tanhf(v); }
__device__ double tanh_(double v) { return tanh(v); }
__device__ float neg_inf(float) { return __int_as_float(0xff800000); }
__device__ double neg_inf(double) { return __longlong_as_double(0xfff0000000000000ULL); }

// act: 0 identity, 1 relu, 2 sigmoid, 3 tanh (the order of `Activation`)
template <typename T> __device__ T activate(int act, T v) {
    switch (act) {
    case 1: return v > T(0) ? v : T(0);
    case 2: return T(1) / (T(1) + exp_(-v));
    case 3: return tanh_(v);
    default: return v;
    }
}

// The activation's derivative in terms of its output y.
template <typename T> __device__ T activation_grad(int act, T y) {
    switch (act) {
    case 1: return y > T(0) ? T(1) : T(0);
    case 2: return y * (T(1) - y);
    case 3: return T(1) - y * y;
    default: return T(1);
    }
}

// x: (B, C, H, W) -> cols: (C*KH*KW, N); reads outside the input are zeros (padding).
template <typename T> __device__ void im2col(const ConvGeom g, const T *x, T *cols) {
    const size_t p = (size_t)g.oh * g.ow, n = g.batch * p;
    GRID_STRIDE(i, (size_t)g.channels * g.kh * g.kw * n) {
        const size_t q = i % n, r = i / n;
        const int b = q / p, pos = q % p, oy = pos / g.ow, ox = pos % g.ow;
        const int kx = r % g.kw, ky = (r / g.kw) % g.kh, c = r / ((size_t)g.kw * g.kh);
        const int iy = oy * g.sh - g.ph + ky * g.dh, ix = ox * g.sw - g.pw + kx * g.dw;
        const bool inside = iy >= 0 && iy < g.h && ix >= 0 && ix < g.w;
        cols[i] = inside ? x[(((size_t)b * g.channels + c) * g.h + iy) * g.w + ix] : T(0);
    }
}

// dx: (B, C, H, W) += the sum of the entries of dcols: (C*KH*KW, N) that im2col copied each
// input element to.
template <typename T> __device__ void col2im(const ConvGeom g, const T *dcols, T *dx) {
    const size_t p = (size_t)g.oh * g.ow, n = g.batch * p;
    GRID_STRIDE(i, (size_t)g.batch * g.channels * g.h * g.w) {
        const int ix = i % g.w, iy = (i / g.w) % g.h;
        const size_t bc = i / ((size_t)g.w * g.h);
        const int c = bc % g.channels, b = bc / g.channels;
        T sum = T(0);
        for (int ky = 0; ky < g.kh; ky++) {
            const int y = iy + g.ph - ky * g.dh;
            if (y < 0 || y % g.sh != 0 || y / g.sh >= g.oh) continue;
            for (int kx = 0; kx < g.kw; kx++) {
                const int xx = ix + g.pw - kx * g.dw;
                if (xx < 0 || xx % g.sw != 0 || xx / g.sw >= g.ow) continue;
                const size_t row = ((size_t)c * g.kh + ky) * g.kw + kx;
                sum += dcols[row * n + b * p + (y / g.sh) * g.ow + xx / g.sw];
            }
        }
        dx[i] += sum;
    }
}

// y: (B, O, P) = [y +] act(z + bias), z: (O, N), bias: (O) or null.
template <typename T>
__device__ void bias_act(const T *z, const T *bias, T *y, int batch, int channels, int plane,
                         int act, int accumulate) {
    GRID_STRIDE(i, (size_t)batch * channels * plane) {
        const int pos = i % plane, o = (i / plane) % channels, b = i / ((size_t)plane * channels);
        T v = z[((size_t)o * batch + b) * plane + pos];
        if (bias) v += bias[o];
        v = activate(act, v);
        y[i] = accumulate ? y[i] + v : v;
    }
}

// gz: (O, N) = gy * act'(y), gy and y: (B, O, P); y is not read for the identity.
template <typename T>
__device__ void act_grad(const T *gy, const T *y, T *gz, int batch, int channels, int plane,
                         int act) {
    GRID_STRIDE(i, (size_t)channels * batch * plane) {
        const int pos = i % plane, b = (i / plane) % batch, o = i / ((size_t)plane * batch);
        const size_t src = ((size_t)b * channels + o) * plane + pos;
        gz[i] = act == 0 ? gy[src] : gy[src] * activation_grad(act, y[src]);
    }
}

// y: (B, O, P) += bias: (O).
template <typename T>
__device__ void add_bias(T *y, const T *bias, int batch, int channels, int plane) {
    GRID_STRIDE(i, (size_t)batch * channels * plane) {
        y[i] += bias[(i / plane) % channels];
    }
}

// db: (O) += g: (B, O, P) summed over B and P. One block of 256 threads per channel.
template <typename T>
__device__ void channel_sum(const T *g, T *db, int batch, int channels, int plane) {
    __shared__ T part[256];
    const int o = blockIdx.x;
    T s = T(0);
    for (size_t i = threadIdx.x; i < (size_t)batch * plane; i += blockDim.x) {
        s += g[((i / plane) * channels + o) * plane + i % plane];
    }
    part[threadIdx.x] = s;
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k /= 2) {
        if (threadIdx.x < k) part[threadIdx.x] += part[threadIdx.x + k];
        __syncthreads();
    }
    if (threadIdx.x == 0) db[o] += part[0];
}

// Batch norm over (B, C, P) data: channel c's statistics are over its N = B * P values. Sums
// run in double (as the CPU kernel's do) and in two steps, so that no atomics are needed and
// results are deterministic: grid (C, S), block (c, s) sums its share of channel c into
// part: (C, S, 2); then one thread per channel adds its S shares.

// Index of the i-th of channel c's N values.
__device__ size_t chan_at(size_t i, int c, int channels, int plane) {
    return ((i / plane) * channels + c) * plane + i % plane;
}

// The block's sums of a and b (one each per thread, 256 threads) into out[0], out[1].
__device__ void block_sum2(double a, double b, double *out) {
    __shared__ double sa[256], sb[256];
    sa[threadIdx.x] = a;
    sb[threadIdx.x] = b;
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k /= 2) {
        if (threadIdx.x < k) {
            sa[threadIdx.x] += sa[threadIdx.x + k];
            sb[threadIdx.x] += sb[threadIdx.x + k];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        out[0] = sa[0];
        out[1] = sb[0];
    }
}

// This block's share of the thread (s, j) strided values of channel c: i = (s * 256 + j) + k * S * 256.
#define SHARE_LOOP(i, n)                                                                   \
    for (size_t i = (size_t)blockIdx.y * blockDim.x + threadIdx.x; i < (n);               \
         i += (size_t)gridDim.y * blockDim.x)

// part: (C, S, 2) = per share, the sums of (x - k) and (x - k)^2 with k = x[0, c, 0]: the shift
// keeps the one-pass variance free of cancellation when the mean is large against the spread.
template <typename T>
__device__ void bn_stat_parts(const T *x, double *part, int batch, int channels, int plane) {
    const int c = blockIdx.x;
    const size_t n = (size_t)batch * plane;
    const double k = (double)x[(size_t)c * plane];
    double s1 = 0, s2 = 0;
    SHARE_LOOP(i, n) {
        const double d = (double)x[chan_at(i, c, channels, plane)] - k;
        s1 += d;
        s2 += d * d;
    }
    block_sum2(s1, s2, part + ((size_t)c * gridDim.y + blockIdx.y) * 2);
}

// One thread per channel: stats: (C, 2) = mean, 1 / sqrt(var + eps) (the biased variance), and
// the running statistics moved towards the batch's as PyTorch does, into new_rm, new_rv:
// (1 - momentum) * running + momentum * stat, with the unbiased variance (N / (N - 1)).
template <typename T>
__device__ void bn_stat_finish(const BnStep g, const double *part, const T *x, const T *rm,
                               const T *rv, double *stats, T *new_rm, T *new_rv) {
    GRID_STRIDE(c, g.channels) {
        double s1 = 0, s2 = 0;
        for (int s = 0; s < g.shares; s++) {
            s1 += part[(c * g.shares + s) * 2];
            s2 += part[(c * g.shares + s) * 2 + 1];
        }
        const double n = (double)g.batch * g.plane;
        const double mean = (double)x[c * g.plane] + s1 / n;
        double var = (s2 - s1 * s1 / n) / n;
        if (var < 0) var = 0;
        stats[2 * c] = mean;
        stats[2 * c + 1] = 1.0 / sqrt(var + g.eps);
        const double unbias = n > 1 ? n / (n - 1) : 1.0;
        const double m = g.momentum;
        new_rm[c] = (T)((1 - m) * (double)rm[c] + m * mean);
        new_rv[c] = (T)((1 - m) * (double)rv[c] + m * var * unbias);
    }
}

// Training: y: (B, C, P) = x * a + s with a = istd * gamma, s = beta - mean * a (as the CPU
// kernel rounds them), then max(0, y) when relu is 1.
template <typename T>
__device__ void bn_apply(const T *x, const double *stats, const T *gamma, const T *beta, T *y,
                         int batch, int channels, int plane, int relu) {
    GRID_STRIDE(i, (size_t)batch * channels * plane) {
        const int c = (i / plane) % channels;
        const T a = (T)stats[2 * c + 1] * gamma[c];
        const T s = beta[c] - (T)stats[2 * c] * a;
        const T v = x[i] * a + s;
        y[i] = relu && !(v > T(0)) ? T(0) : v;
    }
}

// Inference: y = x * a + s with a = gamma / sqrt(rv + eps), s = beta - rm * a (worked out in
// double, as on the CPU), then max(0, y) when relu is 1.
template <typename T>
__device__ void bn_infer(const T *x, const T *gamma, const T *beta, const T *rm, const T *rv,
                         T *y, int batch, int channels, int plane, double eps, int relu) {
    GRID_STRIDE(i, (size_t)batch * channels * plane) {
        const int c = (i / plane) % channels;
        const double ad = (double)gamma[c] / sqrt((double)rv[c] + eps);
        const T a = (T)ad, s = (T)((double)beta[c] - (double)rm[c] * ad);
        const T v = x[i] * a + s;
        y[i] = relu && !(v > T(0)) ? T(0) : v;
    }
}

// The gradient at the normalised value: dz = dy, or 0 where the fused ReLU's output y is 0
// (y null: no ReLU).
template <typename T> __device__ double bn_dz(const T *dy, const T *y, size_t at) {
    return y && !(y[at] > T(0)) ? 0.0 : (double)dy[at];
}

// part: (C, S, 2) = per share, the sums of dz and dz * xhat, xhat = (x - mean) * istd.
template <typename T>
__device__ void bn_grad_parts(const T *dy, const T *x, const T *y, const double *stats,
                              double *part, int batch, int channels, int plane) {
    const int c = blockIdx.x;
    const size_t n = (size_t)batch * plane;
    const double mean = stats[2 * c], istd = stats[2 * c + 1];
    double s1 = 0, s2 = 0;
    SHARE_LOOP(i, n) {
        const size_t at = chan_at(i, c, channels, plane);
        const double dz = bn_dz(dy, y, at);
        s1 += dz;
        s2 += dz * ((double)x[at] - mean) * istd;
    }
    block_sum2(s1, s2, part + ((size_t)c * gridDim.y + blockIdx.y) * 2);
}

// One thread per channel: sums: (C, 2) = the totals of the shares; dbeta[c] += sum dz,
// dgamma[c] += sum dz * xhat.
template <typename T>
__device__ void bn_grad_finish(const double *part, int shares, double *sums, T *dgamma,
                               T *dbeta, int channels) {
    GRID_STRIDE(c, channels) {
        double s1 = 0, s2 = 0;
        for (int s = 0; s < shares; s++) {
            s1 += part[(c * shares + s) * 2];
            s2 += part[(c * shares + s) * 2 + 1];
        }
        sums[2 * c] = s1;
        sums[2 * c + 1] = s2;
        dbeta[c] += (T)s1;
        dgamma[c] += (T)s2;
    }
}

// dx: (B, C, P) += gamma * istd * (dz - mean(dz) - xhat * mean(dz * xhat)).
template <typename T>
__device__ void bn_grad_input(const T *dy, const T *x, const T *y, const double *stats,
                              const T *gamma, const double *sums, T *dx, int batch,
                              int channels, int plane) {
    const double n = (double)batch * plane;
    GRID_STRIDE(i, (size_t)batch * channels * plane) {
        const int c = (i / plane) % channels;
        const double mean = stats[2 * c], istd = stats[2 * c + 1];
        const double xhat = ((double)x[i] - mean) * istd;
        const double g = (double)gamma[c] * istd *
                         (bn_dz(dy, y, i) - sums[2 * c] / n - xhat * sums[2 * c + 1] / n);
        dx[i] += (T)g;
    }
}

// y = max(a + b, 0), all of length n (a residual block's end).
template <typename T>
__device__ void add_relu(const T *a, const T *b, T *y, size_t n) {
    GRID_STRIDE(i, n) {
        const T v = a[i] + b[i];
        y[i] = v > T(0) ? v : T(0);
    }
}

// d += g where y > 0 (add_relu's gradient for either input).
template <typename T>
__device__ void relu_grad_add(const T *g, const T *y, T *d, size_t n) {
    GRID_STRIDE(i, n) {
        if (y[i] > T(0)) d[i] += g[i];
    }
}

// out: (planes, OH, OW) = the pooled x: (planes, H, W); arg (max only, or null): each maximum's
// position in its plane. The first maximum wins and a NaN beats everything, as on the CPU.
template <typename T>
__device__ void pool_fwd(const PoolGeom g, const T *x, T *out, unsigned *arg) {
    const T inv = T(1) / T(g.kh * g.kw);
    GRID_STRIDE(i, (size_t)g.planes * g.oh * g.ow) {
        const int ox = i % g.ow, oy = (i / g.ow) % g.oh;
        const T *src = x + (i / ((size_t)g.ow * g.oh)) * g.h * g.w;
        const int y0 = oy * g.sh - g.ph, x0 = ox * g.sw - g.pw;
        const int ya = max(y0, 0), yb = min(y0 + g.kh, g.h);
        const int xa = max(x0, 0), xb = min(x0 + g.kw, g.w);
        if (g.kind == 0) {
            T best = neg_inf(T(0));
            int at = ya * g.w + xa;
            for (int y = ya; y < yb; y++)
                for (int xx = xa; xx < xb; xx++) {
                    const T v = src[y * g.w + xx];
                    if (v > best || (v != v && best == best)) {
                        best = v;
                        at = y * g.w + xx;
                    }
                }
            out[i] = best;
            if (arg) arg[i] = at;
        } else {
            T s = T(0);
            for (int y = ya; y < yb; y++)
                for (int xx = xa; xx < xb; xx++) s += src[y * g.w + xx];
            out[i] = s * inv;
        }
    }
}

// dx: (planes, H, W) += the gradient of pool_fwd for gout: (planes, OH, OW); arg as saved by
// pool_fwd (max only).
template <typename T>
__device__ void pool_bwd(const PoolGeom g, const T *gout, const unsigned *arg, T *dx) {
    const T inv = T(1) / T(g.kh * g.kw);
    GRID_STRIDE(i, (size_t)g.planes * g.h * g.w) {
        const int ix = i % g.w, iy = (i / g.w) % g.h;
        const size_t plane = i / ((size_t)g.w * g.h), here = (size_t)iy * g.w + ix;
        // the outputs whose windows hold (iy, ix): oy * sh - ph <= iy < oy * sh - ph + kh
        const int ay = iy + g.ph - g.kh + 1, ax = ix + g.pw - g.kw + 1;
        const int oy0 = ay <= 0 ? 0 : (ay + g.sh - 1) / g.sh;
        const int ox0 = ax <= 0 ? 0 : (ax + g.sw - 1) / g.sw;
        const int oy1 = min(g.oh - 1, (iy + g.ph) / g.sh);
        const int ox1 = min(g.ow - 1, (ix + g.pw) / g.sw);
        T s = T(0);
        for (int oy = oy0; oy <= oy1; oy++)
            for (int ox = ox0; ox <= ox1; ox++) {
                const size_t o = (plane * g.oh + oy) * g.ow + ox;
                if (g.kind != 0) s += gout[o] * inv;
                else if (arg[o] == here) s += gout[o];
            }
        dx[i] += s;
    }
}

#define KERNELS(T, S)                                                                         \
    extern "C" __global__ void im2col_##S(const ConvGeom g, const T *x, T *cols) {            \
        im2col(g, x, cols);                                                                   \
    }                                                                                         \
    extern "C" __global__ void col2im_##S(const ConvGeom g, const T *dcols, T *dx) {          \
        col2im(g, dcols, dx);                                                                 \
    }                                                                                         \
    extern "C" __global__ void bias_act_##S(const T *z, const T *bias, T *y, int b, int c,    \
                                            int p, int act, int acc) {                        \
        bias_act(z, bias, y, b, c, p, act, acc);                                              \
    }                                                                                         \
    extern "C" __global__ void act_grad_##S(const T *gy, const T *y, T *gz, int b, int c,     \
                                            int p, int act) {                                 \
        act_grad(gy, y, gz, b, c, p, act);                                                    \
    }                                                                                         \
    extern "C" __global__ void add_bias_##S(T *y, const T *bias, int b, int c, int p) {       \
        add_bias(y, bias, b, c, p);                                                           \
    }                                                                                         \
    extern "C" __global__ void channel_sum_##S(const T *g, T *db, int b, int c, int p) {      \
        channel_sum(g, db, b, c, p);                                                          \
    }                                                                                         \
    extern "C" __global__ void bn_stat_parts_##S(const T *x, double *part, int b, int c,      \
                                                 int p) {                                     \
        bn_stat_parts(x, part, b, c, p);                                                      \
    }                                                                                         \
    extern "C" __global__ void bn_stat_finish_##S(const BnStep g, const double *part,         \
                                                  const T *x, const T *rm, const T *rv,       \
                                                  double *stats, T *new_rm, T *new_rv) {      \
        bn_stat_finish(g, part, x, rm, rv, stats, new_rm, new_rv);                            \
    }                                                                                         \
    extern "C" __global__ void bn_apply_##S(const T *x, const double *stats, const T *gamma,  \
                                            const T *beta, T *y, int b, int c, int p,         \
                                            int relu) {                                       \
        bn_apply(x, stats, gamma, beta, y, b, c, p, relu);                                    \
    }                                                                                         \
    extern "C" __global__ void bn_infer_##S(const T *x, const T *gamma, const T *beta,        \
                                            const T *rm, const T *rv, T *y, int b, int c,     \
                                            int p, double eps, int relu) {                    \
        bn_infer(x, gamma, beta, rm, rv, y, b, c, p, eps, relu);                              \
    }                                                                                         \
    extern "C" __global__ void bn_grad_parts_##S(const T *dy, const T *x, const T *y,         \
                                                 const double *stats, double *part, int b,    \
                                                 int c, int p) {                              \
        bn_grad_parts(dy, x, y, stats, part, b, c, p);                                        \
    }                                                                                         \
    extern "C" __global__ void bn_grad_finish_##S(const double *part, int shares,             \
                                                  double *sums, T *dgamma, T *dbeta, int c) { \
        bn_grad_finish(part, shares, sums, dgamma, dbeta, c);                                 \
    }                                                                                         \
    extern "C" __global__ void bn_grad_input_##S(const T *dy, const T *x, const T *y,         \
                                                 const double *stats, const T *gamma,         \
                                                 const double *sums, T *dx, int b, int c,     \
                                                 int p) {                                     \
        bn_grad_input(dy, x, y, stats, gamma, sums, dx, b, c, p);                             \
    }                                                                                         \
    extern "C" __global__ void add_relu_##S(const T *a, const T *b, T *y, size_t n) {         \
        add_relu(a, b, y, n);                                                                 \
    }                                                                                         \
    extern "C" __global__ void relu_grad_add_##S(const T *g, const T *y, T *d, size_t n) {    \
        relu_grad_add(g, y, d, n);                                                            \
    }                                                                                         \
    extern "C" __global__ void pool_fwd_##S(const PoolGeom g, const T *x, T *out,             \
                                            unsigned *arg) {                                  \
        pool_fwd(g, x, out, arg);                                                             \
    }                                                                                         \
    extern "C" __global__ void pool_bwd_##S(const PoolGeom g, const T *gout,                  \
                                            const unsigned *arg, T *dx) {                     \
        pool_bwd(g, gout, arg, dx);                                                           \
    }

KERNELS(float, f32)
KERNELS(double, f64)
