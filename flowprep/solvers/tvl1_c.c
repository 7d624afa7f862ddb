/* TV-L1 on the CPU in C (flowprep/solvers/tvl1_c.py builds it with the machine's compiler at first use and
   calls it through ctypes): the inner iterations as one fused loop, a warp's bicubic sampling and data term,
   and the pyramids' linear resize. The arithmetic is tvl1_torch's, in float32, without fused multiply-adds
   (-ffp-contract=off), so the flow is the torch path's to rounding. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#define FLT_EPS 1.1920928955078125e-07f

/* u += thresholding + theta * div(p) at pixels [x0, x1) of one row; left/up: p one column left and one row up
   (offset pointers, or zeros at the border), so that the loop has no branch and vectorises. Returns the
   squared change of u over those pixels. */
static inline float row_u(float *restrict u0, float *restrict u1, const float *restrict px0,
                          const float *restrict px1, const float *restrict left0, const float *restrict left1,
                          const float *restrict py0, const float *restrict py1, const float *restrict up0,
                          const float *restrict up1, const float *restrict g0, const float *restrict g1,
                          const float *restrict gsq, const float *restrict rc, int x0, int x1, float l_t,
                          float theta) {
    float err = 0.0f;
    #pragma omp simd reduction(+:err)
    for (int x = x0; x < x1; x++) {
        const float a = u0[x], b = u1[x], s = gsq[x];
        const float rho = rc[x] + (g0[x] * a + g1[x] * b), lg = l_t * s;
        const float fi = rho < -lg ? l_t : (rho > lg ? -l_t : (s > FLT_EPS ? -rho / s : 0.0f));
        const float d0 = (px0[x] - left0[x]) + (py0[x] - up0[x]);
        const float d1 = (px1[x] - left1[x]) + (py1[x] - up1[x]);
        const float na = (a + fi * g0[x]) + theta * d0, nb = (b + fi * g1[x]) + theta * d1;
        err += (na - a) * (na - a) + (nb - b) * (nb - b);
        u0[x] = na;
        u1[x] = nb;
    }
    return err;
}

/* p = (p + taut * grad u) / (1 + taut * |grad u|) at pixels [x0, x1) of one row; right/down: u one column
   right and one row down (or u itself, a zero difference, at the border). One reciprocal, two products: the
   dividers are this loop's bottleneck (1.16x; an ulp from the torch step's two divisions) */
static inline void row_p(const float *restrict u, const float *restrict right, const float *restrict down,
                         float *restrict px, float *restrict py, int x0, int x1, float taut) {
    #pragma omp simd
    for (int x = x0; x < x1; x++) {
        const float ux = right[x] - u[x], uy = down[x] - u[x];
        const float inv = 1.0f / (1.0f + taut * sqrtf(ux * ux + uy * uy));
        px[x] = (px[x] + taut * ux) * inv;
        py[x] = (py[x] + taut * uy) * inv;
    }
}

static void p_rows(const float *u, float *px, float *py, long n, int h, int w, int y, float taut) {
    for (int c = 0; c < 2; c++) {
        const long r = c * n + (long)y * w;
        const float *down = y < h - 1 ? u + r + w : u + r;
        row_p(u + r, u + r + 1, down, px + r, py + r, 0, w - 1, taut);
        row_p(u + r, u + r, down, px + r, py + r, w - 1, w, taut);
    }
}

/* One inner iteration, both updates in one sweep: row y of u (which reads p's rows y - 1 and y, not yet
   updated), then row y - 1 of p (which reads u's rows y - 1 and y, both updated): each array is read once
   per iteration while its rows are in cache. Returns the squared change of u. */
static double iteration(float *u, float *px, float *py, const float *g, const float *gsq, const float *rc,
                       const float *zeros, int h, int w, float l_t, float theta, float taut) {
    const long n = (long)h * w;
    double err = 0.0;  /* rows summed in double: the stopping test compares it with a threshold */
    for (int y = 0; y < h; y++) {
        const long r = (long)y * w;
        const float *up0 = y > 0 ? py + r - w : zeros, *up1 = y > 0 ? py + n + r - w : zeros;
        /* column 0: nothing to its left; the rest: the column before */
        err += row_u(u + r, u + n + r, px + r, px + n + r, zeros, zeros, py + r, py + n + r, up0, up1, g + r,
                     g + n + r, gsq + r, rc + r, 0, 1, l_t, theta);
        err += row_u(u + r, u + n + r, px + r, px + n + r, px + r - 1, px + n + r - 1, py + r, py + n + r, up0,
                     up1, g + r, g + n + r, gsq + r, rc + r, 1, w, l_t, theta);
        if (y > 0) p_rows(u, px, py, n, h, w, y - 1, taut);
    }
    p_rows(u, px, py, n, h, w, h - 1, taut);
    return err;
}

/* One inner run for each active pair of a batch (B, 2, H, W float32, contiguous), in place: at most `iters`
   iterations, a pair stopping after the iteration whose squared update of u is not above scaled_eps (the rule
   of tvl1_torch: OpenCV's). active[b]: 1 while a pair iterates, 0 once it stopped. steps[0]: the most
   iterations a pair ran. Returns the pairs left, or -1 if out of memory. */
int tvl1_inner(float *u, float *px, float *py, const float *g, const float *gsq, const float *rc,
               uint8_t *active, int b, int h, int w, int iters, float l_t, float theta, float taut,
               float scaled_eps, int32_t *steps) {
    const long n = (long)h * w;
    float *zeros = calloc((size_t)w, sizeof(float));
    if (!zeros) return -1;
    int left = 0;
    for (int k = 0; k < b; k++) {
        if (!active[k]) continue;
        float *uk = u + 2 * n * k, *pxk = px + 2 * n * k, *pyk = py + 2 * n * k;
        int it = 0, on = 1;
        while (on && it < iters) {
            const double err = iteration(uk, pxk, pyk, g + 2 * n * k, gsq + n * k, rc + n * k, zeros, h, w, l_t,
                                        theta, taut);
            on = err > scaled_eps;
            it++;
        }
        if (it > steps[0]) steps[0] = it;
        active[k] = (uint8_t)on;
        left += on;
    }
    free(zeros);
    return left;
}

/* ---- the data term of a warp: I1 and its gradients sampled bicubically at x + u, in one pass ---- */

#define LANES 16  /* pixels per vectorised block */

/* Keys' cubic convolution weights, a = -0.75 (cv::remap INTER_CUBIC, grid_sample's bicubic), for fraction t */
static inline void cubic_weights(float t, float *c0, float *c1, float *c2, float *c3) {
    const float a = -0.75f, t1 = t + 1.0f, t2 = 1.0f - t, t3 = t2 + 1.0f;
    *c0 = ((a * t1 - 5.0f * a) * t1 + 8.0f * a) * t1 - 4.0f * a;
    *c1 = ((a + 2.0f) * t - (a + 3.0f)) * t * t + 1.0f;
    *c2 = ((a + 2.0f) * t2 - (a + 3.0f)) * t2 * t2 + 1.0f;
    *c3 = ((a * t3 - 5.0f * a) * t3 + 8.0f * a) * t3 - 4.0f * a;
}

/* one value from the 4x4 taps at p (rows `stride` apart) with the weights of pixel x; every path computes
   this same expression, so a pixel's value does not depend on the path it took */
static inline float bicubic(const float *p, long stride, const float *restrict cw, int x, int w) {
    float r[4];
    for (int j = 0; j < 4; j++, p += stride)
        r[j] = ((cw[x] * p[0] + cw[w + x] * p[1]) + cw[2 * w + x] * p[2]) + cw[3 * w + x] * p[3];
    return ((cw[4 * w + x] * r[0] + cw[5 * w + x] * r[1]) + cw[6 * w + x] * r[2]) + cw[7 * w + x] * r[3];
}

/* bicubic() from the 5x5 taps at p: the pixel's own 4x4 are those from (sx, sy) (0 or 1), the rest weigh 0;
   the same roundings as bicubic() on the 4x4 (x + 0 * p = x), so a block whose pixels' corners differ by one
   still loads its taps as contiguous vectors */
static inline float bicubic5(const float *p, long stride, const float *restrict cw, int x, int w, int sx, int sy) {
    const float c0 = cw[x], c1 = cw[w + x], c2 = cw[2 * w + x], c3 = cw[3 * w + x];
    const float d0 = cw[4 * w + x], d1 = cw[5 * w + x], d2 = cw[6 * w + x], d3 = cw[7 * w + x];
    const float a0 = sx ? 0.0f : c0, a1 = sx ? c0 : c1, a2 = sx ? c1 : c2, a3 = sx ? c2 : c3, a4 = sx ? c3 : 0.0f;
    const float b0 = sy ? 0.0f : d0, b1 = sy ? d0 : d1, b2 = sy ? d1 : d2, b3 = sy ? d2 : d3, b4 = sy ? d3 : 0.0f;
    float r[5];
    for (int j = 0; j < 5; j++, p += stride)
        r[j] = (((a0 * p[0] + a1 * p[1]) + a2 * p[2]) + a3 * p[3]) + a4 * p[4];
    return (((b0 * r[0] + b1 * r[1]) + b2 * r[2]) + b3 * r[3]) + b4 * r[4];
}

/* the three sources (planes n apart) at pixel x of a row, from the taps' corner (cx, cy); near the border the
   taps are copied first, zeros outside the image (BORDER_CONSTANT) */
static void sample_one(const float *src, long n, int h, int w, int cx, int cy, const float *cw, int x,
                       float *out) {
    if (cx >= 0 && cy >= 0 && cx <= w - 4 && cy <= h - 4) {
        for (int c = 0; c < 3; c++) out[c] = bicubic(src + c * n + (long)cy * w + cx, w, cw, x, w);
        return;
    }
    float taps[3][16];
    for (int j = 0; j < 4; j++)
        for (int i = 0; i < 4; i++) {
            const int yy = cy + j, xx = cx + i, in = yy >= 0 && yy < h && xx >= 0 && xx < w;
            for (int c = 0; c < 3; c++) taps[c][4 * j + i] = in ? src[c * n + (long)yy * w + xx] : 0.0f;
        }
    for (int c = 0; c < 3; c++) out[c] = bicubic(taps[c], 4, cw, x, w);
}

/* The data term for one row y. Pass 1 (vectorised): each pixel's taps' corner and weights. Pass 2: a block of
   LANES pixels whose corners are one offset from x (the flow is smooth: most blocks) reads its taps as
   contiguous vectors; the others go pixel by pixel. */
static void data_row(const float *src, long n, int h, int w, int y, const float *u0, const float *u1,
                     const float *im, float *g0, float *g1, float *sq, float *r, float *cw, int *corner) {
    const float wmax = (float)w + 2.0f, hmax = (float)h + 2.0f;
    #pragma omp simd
    for (int x = 0; x < w; x++) {
        /* far outside (or NaN), every tap is outside: clamp to where that is still so, for a safe (int) */
        float fx = (float)x + u0[x], fy = (float)y + u1[x];
        fx = fx > -3.0f ? fx : -3.0f;
        fx = fx < wmax ? fx : wmax;
        fy = fy > -3.0f ? fy : -3.0f;
        fy = fy < hmax ? fy : hmax;
        /* floor by truncation (floorf does not vectorise with trapping math), exact within the clamp */
        const float tx = (float)(int)fx, ty = (float)(int)fy;
        const float flx = tx > fx ? tx - 1.0f : tx, fly = ty > fy ? ty - 1.0f : ty;
        cubic_weights(fx - flx, cw + x, cw + w + x, cw + 2 * w + x, cw + 3 * w + x);
        cubic_weights(fy - fly, cw + 4 * w + x, cw + 5 * w + x, cw + 6 * w + x, cw + 7 * w + x);
        corner[x] = (int)flx - 1 - x;  /* column offset of the taps' corner */
        corner[w + x] = (int)fly - 1;
    }
    for (int x0 = 0; x0 < w; x0 += LANES) {
        const int x1 = x0 + LANES < w ? x0 + LANES : w;
        int dlo = corner[x0], dhi = dlo, elo = corner[w + x0], ehi = elo;
        for (int x = x0 + 1; x < x1; x++) {
            dlo = corner[x] < dlo ? corner[x] : dlo;
            dhi = corner[x] > dhi ? corner[x] : dhi;
            elo = corner[w + x] < elo ? corner[w + x] : elo;
            ehi = corner[w + x] > ehi ? corner[w + x] : ehi;
        }
        /* a full block whose taps' corners are at most one apart: contiguous vector loads of 4x4 taps (one
           corner) or 5x5 (two), all of them inside the image (a tap of weight 0 is still read) */
        const int one = dhi == dlo && ehi == elo, span = one ? 4 : 5;
        if (x1 - x0 == LANES && dhi - dlo <= 1 && ehi - elo <= 1 && x0 + dlo >= 0 && x1 - 1 + dlo + span <= w
            && elo >= 0 && elo + span <= h) {
            const float *s = src + (long)elo * w + dlo;
            if (one) {
                #pragma omp simd
                for (int x = x0; x < x1; x++) {
                    g0[x] = bicubic(s + n + x, w, cw, x, w);
                    g1[x] = bicubic(s + 2 * n + x, w, cw, x, w);
                    const float i1w = bicubic(s + x, w, cw, x, w);
                    sq[x] = g0[x] * g0[x] + g1[x] * g1[x];
                    r[x] = i1w - (g0[x] * u0[x] + g1[x] * u1[x]) - im[x];
                }
            } else {
                #pragma omp simd
                for (int x = x0; x < x1; x++) {
                    const int sx = corner[x] - dlo, sy = corner[w + x] - elo;
                    g0[x] = bicubic5(s + n + x, w, cw, x, w, sx, sy);
                    g1[x] = bicubic5(s + 2 * n + x, w, cw, x, w, sx, sy);
                    const float i1w = bicubic5(s + x, w, cw, x, w, sx, sy);
                    sq[x] = g0[x] * g0[x] + g1[x] * g1[x];
                    r[x] = i1w - (g0[x] * u0[x] + g1[x] * u1[x]) - im[x];
                }
            }
            continue;
        }
        for (int x = x0; x < x1; x++) {
            float v[3];
            sample_one(src, n, h, w, x + corner[x], corner[w + x], cw, x, v);
            g0[x] = v[1];
            g1[x] = v[2];
            sq[x] = v[1] * v[1] + v[2] * v[2];
            r[x] = v[0] - (v[1] * u0[x] + v[2] * u1[x]) - im[x];
        }
    }
}

/* For each pair of a batch: I1w, I1wx, I1wy = src (B, 3, H, W: I1 and its gradients) at (x + u1, y + u2); then
   g = (I1wx, I1wy) (B, 2, H, W), gsq = |g|^2 and rc = I1w - g.u - I0 (B, H, W): tvl1_torch's _data_term.
   Returns 0, or -1 if out of memory. */
int tvl1_data(const float *i0, const float *src, const float *u, float *g, float *gsq, float *rc, int b, int h,
              int w) {
    const long n = (long)h * w;
    float *cw = malloc(sizeof(float) * 8 * (size_t)w);
    int *corner = malloc(sizeof(int) * 2 * (size_t)w);
    if (!cw || !corner) { free(cw); free(corner); return -1; }
    for (int k = 0; k < b; k++)
        for (int y = 0; y < h; y++) {
            const long o = n * k + (long)y * w, o2 = 2 * n * k + (long)y * w;
            data_row(src + 3 * n * k, n, h, w, y, u + o2, u + o2 + n, i0 + o, g + o2, g + o2 + n, gsq + o, rc + o,
                     cw, corner);
        }
    free(cw);
    free(corner);
    return 0;
}

/* ---- cv::resize INTER_LINEAR of `planes` planes (hi, wi) -> (ho, wo): rows, then columns ---- */

/* from each output row's and column's two source indices and weights (tvl1_torch.linear_taps), in the order of
   tvl1_torch.resize_linear (the rows' weights first). Returns 0, or -1 if out of memory. */
int tvl1_resize(const float *in, float *out, int planes, int hi, int wi, int ho, int wo, const int *ylo,
                const int *yhi, const float *wylo, const float *wyhi, const int *xlo, const int *xhi,
                const float *wxlo, const float *wxhi) {
    float *row = malloc(sizeof(float) * (size_t)wi);
    if (!row) return -1;
    for (int k = 0; k < planes; k++)
        for (int i = 0; i < ho; i++) {
            const float *a = in + ((long)k * hi + ylo[i]) * wi, *b = in + ((long)k * hi + yhi[i]) * wi;
            const float wa = wylo[i], wb = wyhi[i];
            float *o = out + ((long)k * ho + i) * wo;
            #pragma omp simd
            for (int j = 0; j < wi; j++) row[j] = wa * a[j] + wb * b[j];
            for (int j = 0; j < wo; j++) o[j] = wxlo[j] * row[xlo[j]] + wxhi[j] * row[xhi[j]];
        }
    free(row);
    return 0;
}
