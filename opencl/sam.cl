/* sam.cl - the kernels of the SAM model's OpenCL backend (cl_sam.c):
 * a tiled SGEMM (row major, CBLAS semantics, batched), layer norm per row,
 * exact (erf) GELU, and the pieces of attention: decomposed relative
 * position terms, row softmax.  Every operand is a buffer plus an offset in
 * floats, so that weights can stay in one device buffer per tensor. */

/* ---------------------------------------------------------------- SGEMM
 * C = alpha op(A) op(B) + beta C for M x N, inner K; C is not read when
 * beta == 0.  Work-groups of 16 x 16 items compute 64 x 64 tiles of C, each
 * item 4 x 4 values (rows ty + 16 r, columns tx + 16 c); tiles of op(A)
 * (64 x 16) and op(B) (16 x 64) pass through local memory, loaded with the
 * fast index of each matrix's storage running along the work-items.
 * Batches (global dimension 2): batch z adds (z / zdiv) * s1 + (z % zdiv) * s2
 * to each operand's offset (attention: batch index, head index). */
#define TM 64
#define TN 64
#define TK 16

#define A_N(i, p) A[(size_t)(i) * lda + (p)]
#define A_T(i, p) A[(size_t)(p) * lda + (i)]
#define B_N(p, j) B[(size_t)(p) * ldb + (j)]
#define B_T(p, j) B[(size_t)(j) * ldb + (p)]

#define GEMM(NAME, LA, AP_FAST, LB, BP_FAST)                                                   \
__kernel __attribute__((reqd_work_group_size(16, 16, 1))) void                                 \
NAME(int M, int N, int K, float alpha, float beta,                                             \
     __global const float *A, ulong aoff, int lda, ulong as1, ulong as2,                       \
     __global const float *B, ulong boff, int ldb, ulong bs1, ulong bs2,                       \
     __global float *C, ulong coff, int ldc, ulong cs1, ulong cs2, int zdiv)                   \
{                                                                                              \
	__local float As[TK][TM + 1];                                                          \
	__local float Bs[TK][TN + 1];                                                          \
	int tx = (int)get_local_id(0), ty = (int)get_local_id(1), tid = ty * 16 + tx;          \
	int j0 = (int)get_group_id(0) * TN, i0 = (int)get_group_id(1) * TM;                    \
	ulong z = get_global_id(2), zq = z / (ulong)zdiv, zr = z % (ulong)zdiv;                \
	float acc[4][4];                                                                       \
	A += aoff + zq * as1 + zr * as2;                                                       \
	B += boff + zq * bs1 + zr * bs2;                                                       \
	C += coff + zq * cs1 + zr * cs2;                                                       \
	for (int r = 0; r < 4; r++)                                                            \
		for (int c = 0; c < 4; c++)                                                    \
			acc[r][c] = 0.0f;                                                      \
	for (int k0 = 0; k0 < K; k0 += TK) {                                                   \
		for (int r = 0; r < 4; r++) {                                                  \
			int l = tid + 256 * r, i, p, j, q;                                     \
			if (AP_FAST) { p = l % TK; i = l / TK; } else { i = l % TM; p = l / TM; } \
			As[p][i] = i0 + i < M && k0 + p < K ? LA(i0 + i, k0 + p) : 0.0f;       \
			if (BP_FAST) { q = l % TK; j = l / TK; } else { j = l % TN; q = l / TN; } \
			Bs[q][j] = j0 + j < N && k0 + q < K ? LB(k0 + q, j0 + j) : 0.0f;       \
		}                                                                              \
		barrier(CLK_LOCAL_MEM_FENCE);                                                  \
		for (int p = 0; p < TK; p++) {                                                 \
			float a[4], b[4];                                                      \
			for (int r = 0; r < 4; r++)                                            \
				a[r] = As[p][ty + 16 * r];                                     \
			for (int c = 0; c < 4; c++)                                            \
				b[c] = Bs[p][tx + 16 * c];                                     \
			for (int r = 0; r < 4; r++)                                            \
				for (int c = 0; c < 4; c++)                                    \
					acc[r][c] = fma(a[r], b[c], acc[r][c]);                \
		}                                                                              \
		barrier(CLK_LOCAL_MEM_FENCE);                                                  \
	}                                                                                      \
	for (int r = 0; r < 4; r++) {                                                          \
		int i = i0 + ty + 16 * r;                                                      \
		if (i >= M)                                                                    \
			continue;                                                              \
		for (int c = 0; c < 4; c++) {                                                  \
			int j = j0 + tx + 16 * c;                                              \
			if (j >= N)                                                            \
				continue;                                                      \
			__global float *o = C + (size_t)i * ldc + j;                           \
			*o = beta == 0.0f ? alpha * acc[r][c] : alpha * acc[r][c] + beta * *o; \
		}                                                                              \
	}                                                                                      \
}

GEMM(gemm_nn, A_N, 1, B_N, 0)
GEMM(gemm_nt, A_N, 1, B_T, 1)
GEMM(gemm_tn, A_T, 0, B_N, 0)
GEMM(gemm_tt, A_T, 0, B_T, 1)

/* ---------------------------------------------------------------- rows
 * one work-group of 64 items per row */
#define RW 64

inline float
wg_sum(__local float *red, float v)
{
	int l = (int)get_local_id(0);
	red[l] = v;
	barrier(CLK_LOCAL_MEM_FENCE);
	for (int s = RW / 2; s > 0; s >>= 1) {
		if (l < s)
			red[l] += red[l + s];
		barrier(CLK_LOCAL_MEM_FENCE);
	}
	v = red[0];
	barrier(CLK_LOCAL_MEM_FENCE);
	return v;
}

inline float
wg_max(__local float *red, float v)
{
	int l = (int)get_local_id(0);
	red[l] = v;
	barrier(CLK_LOCAL_MEM_FENCE);
	for (int s = RW / 2; s > 0; s >>= 1) {
		if (l < s)
			red[l] = fmax(red[l], red[l + s]);
		barrier(CLK_LOCAL_MEM_FENCE);
	}
	v = red[0];
	barrier(CLK_LOCAL_MEM_FENCE);
	return v;
}

/* y[r] = (x[r] - mean) / sqrt(var + eps) * w + b over d values; y may be x */
__kernel __attribute__((reqd_work_group_size(RW, 1, 1))) void
layernorm(__global float *y, ulong yoff, __global const float *x, ulong xoff, int d,
          __global const float *w, ulong woff, __global const float *b, ulong boff, float eps)
{
	__local float red[RW];
	int l = (int)get_local_id(0);
	size_t r = get_group_id(0);
	float s = 0.0f, mean, inv;

	x += xoff + r * (size_t)d;
	y += yoff + r * (size_t)d;
	w += woff;
	b += boff;
	for (int i = l; i < d; i += RW)
		s += x[i];
	mean = wg_sum(red, s) / (float)d;
	s = 0.0f;
	for (int i = l; i < d; i += RW)
		s += (x[i] - mean) * (x[i] - mean);
	inv = 1.0f / sqrt(wg_sum(red, s) / (float)d + eps);
	for (int i = l; i < d; i += RW)
		y[i] = (x[i] - mean) * inv * w[i] + b[i];
}

/* exact GELU in place */
__kernel void
gelu(__global float *x, ulong xoff, ulong n)
{
	size_t i = get_global_id(0);
	if (i >= n)
		return;
	float v = x[xoff + i];
	x[xoff + i] = 0.5f * v * (1.0f + erf(v * 0.70710678118654752f));
}

/* decomposed relative positions: for batch zl (= b * heads + h, b from the
 * offset qoff on), query row i0 + i and key position kk along one axis,
 *   out[(zl * nq + i) * g + kk] = q . R[qpos - kk + g - 1]
 * where qpos = (i0 + i) / gw (axis 0, rows) or (i0 + i) % gw (axis 1). */
__kernel void
relpos(__global const float *Q, ulong qoff, int ldq, ulong bsq, int heads, int hd, int nq, int i0, int gw,
       __global const float *R, ulong roff, int g, int axis, __global float *out)
{
	int kk = (int)get_global_id(0), i = (int)get_global_id(1);
	size_t zl = get_global_id(2);
	if (kk >= g || i >= nq)
		return;
	int qi = i0 + i, qp = axis ? qi % gw : qi / gw;
	__global const float *q = Q + qoff + (zl / (size_t)heads) * bsq + (size_t)qi * ldq + (zl % (size_t)heads) * hd;
	__global const float *rr = R + roff + (size_t)(qp - kk + g - 1) * hd;
	float s = 0.0f;
	for (int e = 0; e < hd; e++)
		s = fma(q[e], rr[e], s);
	out[(zl * (size_t)nq + i) * g + kk] = s;
}

/* row r of S (nk values): add rh[r * gh + k / gw] + rw[r * gw + k % gw]
 * (rel != 0) and the attention bias of the row's head and query (hasb != 0:
 * row r is query i0 + r % nqb of head (r / nqb) % heads; bias is heads x nq
 * x nk from boff), then softmax */
__kernel __attribute__((reqd_work_group_size(RW, 1, 1))) void
softmax_rel(__global float *S, int nk, __global const float *rh, __global const float *rw, int gh, int gw, int rel,
            __global const float *bias, ulong boff, int hasb, int heads, int nqb, int nq, int i0)
{
	__local float red[RW];
	int l = (int)get_local_id(0);
	size_t r = get_group_id(0);
	__global float *s = S + r * (size_t)nk;
	float mx = -INFINITY, sum = 0.0f, inv;

	if (hasb) {
		size_t h = (r / (size_t)nqb) % (size_t)heads, qi = (size_t)i0 + r % (size_t)nqb;
		__global const float *b = bias + boff + (h * (size_t)nq + qi) * (size_t)nk;
		for (int k = l; k < nk; k += RW)
			s[k] += b[k];
	}

	if (rel) {
		rh += r * (size_t)gh;
		rw += r * (size_t)gw;
		for (int k = l; k < nk; k += RW)
			s[k] += rh[k / gw] + rw[k % gw];
	}
	for (int k = l; k < nk; k += RW)
		mx = fmax(mx, s[k]);
	mx = wg_max(red, mx);
	for (int k = l; k < nk; k += RW) {
		float e = exp(s[k] - mx);
		s[k] = e;
		sum += e;
	}
	inv = 1.0f / wg_sum(red, sum);
	for (int k = l; k < nk; k += RW)
		s[k] *= inv;
}

/* ---------------------------------------------------------------- SGEMM for CPU devices
 * On a CPU (PoCL) the work-group loops of the tiled kernel above run as
 * scalar code; these two vectorise inside each work-item instead, reading
 * straight from memory (the caches do what local memory does on a GPU).
 * Same arguments and batches as above.
 * gemm_nt_v: C = A B^T, both with the inner index fastest: each item a 4 x 4
 * block of C as 16 dot products in float8 lanes.
 * gemm_nn_v: C = A B, B's rows along C's columns: each item 8 rows x 16
 * columns of C (float16 lanes, A's values broadcast). */
__kernel void
gemm_nt_v(int M, int N, int K, float alpha, float beta,
          __global const float *A, ulong aoff, int lda, ulong as1, ulong as2,
          __global const float *B, ulong boff, int ldb, ulong bs1, ulong bs2,
          __global float *C, ulong coff, int ldc, ulong cs1, ulong cs2, int zdiv)
{
	int j0 = (int)get_global_id(0) * 4, i0 = (int)get_global_id(1) * 4;
	ulong z = get_global_id(2), zq = z / (ulong)zdiv, zr = z % (ulong)zdiv;
	__global const float *a[4], *b[4];
	float8 acc[4][4];
	float s[4][4];
	int p = 0;

	if (i0 >= M || j0 >= N)
		return;
	A += aoff + zq * as1 + zr * as2;
	B += boff + zq * bs1 + zr * bs2;
	C += coff + zq * cs1 + zr * cs2;
	for (int r = 0; r < 4; r++) {
		a[r] = A + (size_t)min(i0 + r, M - 1) * lda;
		b[r] = B + (size_t)min(j0 + r, N - 1) * ldb;
		for (int c = 0; c < 4; c++)
			acc[r][c] = (float8)(0.0f);
	}
	for (; p + 8 <= K; p += 8) {
		float8 av[4], bv[4];
		for (int r = 0; r < 4; r++) {
			av[r] = vload8(0, a[r] + p);
			bv[r] = vload8(0, b[r] + p);
		}
		for (int r = 0; r < 4; r++)
			for (int c = 0; c < 4; c++)
				acc[r][c] = fma(av[r], bv[c], acc[r][c]);
	}
	for (int r = 0; r < 4; r++)
		for (int c = 0; c < 4; c++) {
			float8 v = acc[r][c];
			float4 h = v.lo + v.hi;
			float t = (h.x + h.y) + (h.z + h.w);
			for (int q = p; q < K; q++)
				t = fma(a[r][q], b[c][q], t);
			s[r][c] = t;
		}
	for (int r = 0; r < 4 && i0 + r < M; r++)
		for (int c = 0; c < 4 && j0 + c < N; c++) {
			__global float *o = C + (size_t)(i0 + r) * ldc + j0 + c;
			*o = beta == 0.0f ? alpha * s[r][c] : alpha * s[r][c] + beta * *o;
		}
}

__kernel void
gemm_nn_v(int M, int N, int K, float alpha, float beta,
          __global const float *A, ulong aoff, int lda, ulong as1, ulong as2,
          __global const float *B, ulong boff, int ldb, ulong bs1, ulong bs2,
          __global float *C, ulong coff, int ldc, ulong cs1, ulong cs2, int zdiv)
{
	int j0 = (int)get_global_id(0) * 16, i0 = (int)get_global_id(1) * 8;
	ulong z = get_global_id(2), zq = z / (ulong)zdiv, zr = z % (ulong)zdiv;
	__global const float *a[8];
	float16 acc[8];

	if (i0 >= M || j0 >= N)
		return;
	A += aoff + zq * as1 + zr * as2;
	B += boff + zq * bs1 + zr * bs2;
	C += coff + zq * cs1 + zr * cs2;
	for (int r = 0; r < 8; r++) {
		a[r] = A + (size_t)min(i0 + r, M - 1) * lda;
		acc[r] = (float16)(0.0f);
	}
	if (j0 + 16 <= N) {
		for (int p = 0; p < K; p++) {
			float16 bv = vload16(0, B + (size_t)p * ldb + j0);
			for (int r = 0; r < 8; r++)
				acc[r] = fma((float16)(a[r][p]), bv, acc[r]);
		}
	} else {
		for (int p = 0; p < K; p++) {
			float t[16];
			for (int c = 0; c < 16; c++)
				t[c] = j0 + c < N ? B[(size_t)p * ldb + j0 + c] : 0.0f;
			float16 bv = vload16(0, t);
			for (int r = 0; r < 8; r++)
				acc[r] = fma((float16)(a[r][p]), bv, acc[r]);
		}
	}
	for (int r = 0; r < 8 && i0 + r < M; r++) {
		float t[16];
		vstore16(acc[r], 0, t);
		for (int c = 0; c < 16 && j0 + c < N; c++) {
			__global float *o = C + (size_t)(i0 + r) * ldc + j0 + c;
			*o = beta == 0.0f ? alpha * t[c] : alpha * t[c] + beta * *o;
		}
	}
}

/* ---------------------------------------------------------------- the resident encoder
 * The steps between products that the model code does on the host, so that
 * the ViT encoder's activations stay on the device (cl_sam.c, cl_encode). */

/* patch embedding's im2col: cols (T x K, K = 3 P P in (c, kh, kw) order) from
 * the image (3 x S x S); item (ch P + kh, t) copies P values */
__kernel void
patch_im2col(__global float *cols, __global const float *img, int S, int P, int G)
{
	int rr = (int)get_global_id(0), t = (int)get_global_id(1), K = 3 * P * P;
	if (rr >= 3 * P || t >= G * G)
		return;
	int ch = rr / P, kh = rr % P, ty = t / G, tx = t % G;
	__global const float *src = img + ((size_t)ch * S + (size_t)ty * P + kh) * S + (size_t)tx * P;
	__global float *dst = cols + (size_t)t * K + (size_t)rr * P;
	for (int kw = 0; kw < P; kw++)
		dst[kw] = src[kw];
}

/* x (T x E) += b[e] + pos[t][e] */
__kernel void
patch_pos(__global float *x, __global const float *b, ulong boff, __global const float *pos, ulong poff, int E,
          ulong n)
{
	size_t i = get_global_id(0);
	if (i >= n)
		return;
	x[i] += b[boff + i % (size_t)E] + pos[poff + i];
}

/* y (rows x n from yoff) += alpha b (n from boff) on every row */
__kernel void
bias_rows(__global float *y, ulong yoff, int n, ulong total, __global const float *b, ulong boff, float alpha)
{
	size_t i = get_global_id(0);
	if (i >= total)
		return;
	y[yoff + i] += alpha * b[boff + i % (size_t)n];
}

/* x += y over n values */
__kernel void
add_to(__global float *x, __global const float *y, ulong n)
{
	size_t i = get_global_id(0);
	if (i < n)
		x[i] += y[i];
}

/* windows of w x w tokens (nwx x nwx of them, the grid zero-padded to
 * nwx w): token ti of window wi <- grid token (gy, gx); item (e, wi w w + ti) */
__kernel void
win_part(__global float *dst, __global const float *src, int G, int w, int nwx, int E)
{
	int e = (int)get_global_id(0), p = (int)get_global_id(1), ww = w * w;
	if (e >= E || p >= nwx * nwx * ww)
		return;
	int wi = p / ww, ti = p % ww, gy = (wi / nwx) * w + ti / w, gx = (wi % nwx) * w + ti % w;
	dst[(size_t)p * E + e] = gy < G && gx < G ? src[((size_t)gy * G + gx) * E + e] : 0.0f;
}

/* and back: x (grid tokens) += the windows' token; item (e, t) */
__kernel void
win_unpart_add(__global float *x, __global const float *src, int G, int w, int nwx, int E)
{
	int e = (int)get_global_id(0), t = (int)get_global_id(1);
	if (e >= E || t >= G * G)
		return;
	int gy = t / G, gx = t % G, wi = (gy / w) * nwx + gx / w, ti = (gy % w) * w + gx % w;
	x[(size_t)t * E + e] += src[((size_t)wi * w * w + ti) * E + e];
}

/* the neck's 3x3 im2col (pad 1): cols (T x 9C, (ch, kh, kw) order) from n0
 * (T x C); item (ch, t) writes its 9 values */
__kernel void
im2col3(__global float *cols, __global const float *n0, int G, int C)
{
	int ch = (int)get_global_id(0), t = (int)get_global_id(1);
	if (ch >= C || t >= G * G)
		return;
	int y = t / G, x = t % G;
	__global float *d = cols + (size_t)t * 9 * C + (size_t)ch * 9;
	for (int kh = 0; kh < 3; kh++)
		for (int kw = 0; kw < 3; kw++) {
			int sy = y + kh - 1, sx = x + kw - 1;
			d[kh * 3 + kw] = sy < 0 || sy >= G || sx < 0 || sx >= G ? 0.0f : n0[((size_t)sy * G + sx) * C + ch];
		}
}

/* emb (C x T) <- x (T x C); item (t, ch) */
__kernel void
to_chw(__global float *emb, __global const float *x, int T, int C)
{
	int t = (int)get_global_id(0), ch = (int)get_global_id(1);
	if (t < T && ch < C)
		emb[(size_t)ch * T + t] = x[(size_t)t * C + ch];
}

/* ---------------------------------------------------------------- the resident decoder
 * The mask decoder's image side on the device (cl_sam.c, dec_*). */

/* y = a + b over n values (b from boff: a declared constant) */
__kernel void
add3(__global float *y, __global const float *a, __global const float *b, ulong boff, ulong n)
{
	size_t i = get_global_id(0);
	if (i < n)
		y[i] = a[i] + b[boff + i];
}

/* scores of image tokens (rows of S, nq of them) over prompt tokens: a row
 * holds heads groups of nk, group h gets c[h nk + r] on its value r, then
 * softmax over the group; item (i, h) */
__kernel void
softmax_groups(__global float *S, int nk, int nq, int heads, __global const float *c)
{
	int i = (int)get_global_id(0), h = (int)get_global_id(1);
	if (i >= nq)
		return;
	__global float *s = S + ((size_t)i * heads + h) * nk;
	__global const float *ch = c + (size_t)h * nk;
	float mx = -INFINITY, sum = 0.0f, inv;
	for (int r = 0; r < nk; r++) {
		float v = s[r] + ch[r];
		s[r] = v;
		mx = fmax(mx, v);
	}
	for (int r = 0; r < nk; r++) {
		float e = exp(s[r] - mx);
		s[r] = e;
		sum += e;
	}
	inv = 1.0f / sum;
	for (int r = 0; r < nk; r++)
		s[r] *= inv;
}

/* a transposed 2x2 convolution of stride 2 after its product: u (2G x 2G x
 * cq) from y (G x G tokens of 4 cq values in (kh, kw, out) order) + b (from
 * boff); item (o, kh 2 + kw, t) */
__kernel void
up_shuffle(__global float *u, __global const float *y, __global const float *b, ulong boff, int G, int cq)
{
	int o = (int)get_global_id(0), k = (int)get_global_id(1), t = (int)get_global_id(2);
	if (o >= cq || t >= G * G)
		return;
	int ty = t / G, tx = t % G, kh = k / 2, kw = k % 2;
	u[((size_t)(2 * ty + kh) * 2 * G + 2 * tx + kw) * cq + o] = y[((size_t)t * 4 + k) * cq + o] + b[boff + o];
}

/* ---------------------------------------------------------------- fused attention
 * O = softmax(scale Q K^T (+ relative positions) (+ bias)) V without the
 * scores: each work-item one query row of one (batch, head), keys in tiles
 * of FK through local memory (shared by the FQ rows of a work-group), with a
 * running maximum and sum (online softmax) rescaling the row's accumulator
 * once per tile.  Rows i0 .. i0 + nqc - 1 of batches from qoff on (global
 * dimension 1: b * heads + h); rh, rw as relpos writes them for these rows
 * ((z * nqc + i - i0) * g + kk); bias as softmax_rel reads it.  hd <= HDMAX. */
#define FQ 32
#define FK 16
#define HDMAX 128

__kernel __attribute__((reqd_work_group_size(FQ, 1, 1))) void
attn_fused(__global const float *Q, ulong qoff, int ldq, ulong bsq, __global const float *K, ulong koff, int ldk,
           ulong bsk, __global const float *V, ulong voff, int ldv, ulong bsv, __global float *O, ulong ooff, int ldo,
           ulong bso, int nq, int nk, int heads, int hd, float scale, int i0, int nqc,
           __global const float *rh, __global const float *rw, int gh, int gw, int rel,
           __global const float *bias, ulong boff, int hasb)
{
	__local float Ks[FK][HDMAX], Vs[FK][HDMAX];
	int l = (int)get_local_id(0), il = (int)get_group_id(0) * FQ + l, i = i0 + il, live = il < nqc;
	size_t z = get_global_id(1), b = z / (size_t)heads, h = z % (size_t)heads;
	float q[HDMAX], acc[HDMAX], sc[FK], m = -INFINITY, sum = 0.0f;

	Q += qoff + b * bsq + h * (size_t)hd + (size_t)(live ? i : 0) * ldq;
	K += koff + b * bsk + h * (size_t)hd;
	V += voff + b * bsv + h * (size_t)hd;
	for (int e = 0; e < hd; e++) {
		q[e] = live ? Q[e] : 0.0f;
		acc[e] = 0.0f;
	}
	if (rel) {
		rh += (z * (size_t)nqc + (size_t)(live ? il : 0)) * gh;
		rw += (z * (size_t)nqc + (size_t)(live ? il : 0)) * gw;
	}
	if (hasb)
		bias += boff + (h * (size_t)nq + (size_t)(live ? i : 0)) * (size_t)nk;
	for (int j0 = 0; j0 < nk; j0 += FK) {
		int nt = nk - j0 < FK ? nk - j0 : FK;
		for (int x = l; x < nt * hd; x += FQ) {
			int r = x / hd, e = x % hd;
			Ks[r][e] = K[(size_t)(j0 + r) * ldk + e];
			Vs[r][e] = V[(size_t)(j0 + r) * ldv + e];
		}
		barrier(CLK_LOCAL_MEM_FENCE);
		if (live) {
			float mt = m;
			for (int r = 0; r < nt; r++) {
				float s = 0.0f;
				for (int e = 0; e < hd; e++)
					s = fma(q[e], Ks[r][e], s);
				s *= scale;
				int j = j0 + r;
				if (rel)
					s += rh[j / gw] + rw[j % gw];
				if (hasb)
					s += bias[j];
				sc[r] = s;
				mt = fmax(mt, s);
			}
			float corr = exp(m - mt);
			sum *= corr;
			for (int e = 0; e < hd; e++)
				acc[e] *= corr;
			for (int r = 0; r < nt; r++) {
				float p = exp(sc[r] - mt);
				sum += p;
				for (int e = 0; e < hd; e++)
					acc[e] = fma(p, Vs[r][e], acc[e]);
			}
			m = mt;
		}
		barrier(CLK_LOCAL_MEM_FENCE);
	}
	if (live) {
		float inv = 1.0f / sum;
		O += ooff + b * bso + h * (size_t)hd + (size_t)i * ldo;
		for (int e = 0; e < hd; e++)
			O[e] = acc[e] * inv;
	}
}
